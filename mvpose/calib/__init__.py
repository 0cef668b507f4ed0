"""Calibration files: read every supported family into a :class:`~mvpose.geometry.camera.CameraRig`.

``load_rig(path, subject=None, **kw)`` detects the format (name, then content) unless
``format=`` names it; ``save_rig(rig, path, format=None)`` writes mvpose JSON, Pose2Sim/anipose
TOML or EasyMocap YAML. Inside, everything is millimetres and ``x_cam = R @ X_world + t``; units
and conventions of each family are converted at the file boundary. Malformed files raise
:class:`CalibrationError` naming the file and the field. Format table: docs/calibration.md.
"""

from mvpose.calib._common import CalibrationError
from mvpose.calib.io import FORMATS, Format, detect_format, load_rig, save_rig
from mvpose.calib.synthetic import look_at, ring_rig

__all__ = [
    "CalibrationError",
    "FORMATS",
    "Format",
    "detect_format",
    "load_rig",
    "save_rig",
    "ring_rig",
    "look_at",
]

# `mvpose calibrate`: boards, detection, intrinsics/extrinsics/bundle adjustment (docs/calibrate.md)
from mvpose.calib.board import BoardNotFoundError, BoardSpec, CalibrateError, parse_board  # noqa: E402
from mvpose.calib.calibrate import CalibrationResult, calibrate_rig, detect_cameras  # noqa: E402

__all__ += [
    "BoardSpec",
    "parse_board",
    "CalibrateError",
    "BoardNotFoundError",
    "detect_cameras",
    "calibrate_rig",
    "CalibrationResult",
]
