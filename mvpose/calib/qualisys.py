"""Qualisys QTM calibration export (``.qca.txt``, XML), read only.

Per ``<camera serial=...>``:

* ``<transform x y z r11 .. r33>``: camera centre ``C`` in world mm, and ``M`` mapping world axes
  to Qualisys camera axes, whose y and z point opposite to OpenCV's:
  ``R = diag(1, -1, -1) @ M``, ``t = -R @ C``.
* ``<intrinsic>`` in 1/64-pixel sensor units: ``fx = focalLengthU / 64``, ``fy = focalLengthV / 64``,
  ``cx = centerPointU / 64 - fov_video.left``, ``cy = centerPointV / 64 - fov_video.top``; skew is
  ``skew / 64``.
* ``<fov_video left top right bottom>`` (inclusive pixel bounds): image size
  ``(right - left + 1, bottom - top + 1)``.
* Distortion ``radialDistortion1..3``, ``tangentalDistortion1..2``. How they scale is not
  documented. Pose2Sim's converter divides them by 64 and drops k3; that is the default here
  (``qca_distortion_scale=1/64``, ``qca_keep_k3=False``), so the rig equals Pose2Sim's TOML of the
  same file. ``qca_distortion_scale=1.0`` reads the coefficients as stored (the Pose2Sim demo's
  detections cannot tell which is right: see docs/calibration.md).

Cameras with a non-zero ``viewrotation`` (images rotated by QTM) are refused.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from mvpose.calib._common import (
    CalibrationError,
    CameraRecord,
    build_rig,
    check_intrinsics,
    check_rotation,
    number,
    refuse_subject,
)

_FLIP = np.diag([1.0, -1.0, -1.0])


def read(path, subject=None, qca_distortion_scale: float = 1 / 64, qca_keep_k3: bool = False):
    """Read a Qualisys ``.qca.txt``; see the module docstring for the conventions and keywords."""
    refuse_subject(path, subject)
    scale = number(path, "qca_distortion_scale", qca_distortion_scale)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise CalibrationError(path, None, f"not valid XML ({e}); expected a Qualisys .qca.txt") from None
    if root.tag != "calibration":
        raise CalibrationError(path, None, f"expected a <calibration> root element, got <{root.tag}>")
    cams = root.findall("./cameras/camera")
    if not cams:
        raise CalibrationError(path, "cameras", "no <camera> elements found")
    records = []
    for i, cam in enumerate(cams):
        name = cam.get("serial") or f"cam_{i + 1:02d}"
        f = f"camera[serial={name}]"

        def attr(elem_name: str, key: str, f=f, cam=cam):
            el = cam.find(elem_name)
            if el is None:
                raise CalibrationError(path, f"{f}/{elem_name}", "missing element")
            if key not in el.attrib:
                raise CalibrationError(path, f"{f}/{elem_name}@{key}", "missing attribute")
            return number(path, f"{f}/{elem_name}@{key}", el.get(key))

        rot = cam.get("viewrotation", "0")
        if number(path, f"{f}@viewrotation", rot) != 0:
            raise CalibrationError(
                path,
                f"{f}@viewrotation",
                f"rotated camera views ({rot} degrees) are not supported; expected 0",
            )
        M = np.array([[attr("transform", f"r{r}{c}") for c in (1, 2, 3)] for r in (1, 2, 3)])
        C = np.array([attr("transform", k) for k in ("x", "y", "z")])
        R = check_rotation(path, f"{f}/transform@r11..r33", _FLIP @ M)
        t = -R @ C
        left, top = attr("fov_video", "left"), attr("fov_video", "top")
        right, bottom = attr("fov_video", "right"), attr("fov_video", "bottom")
        size = (int(right - left + 1), int(bottom - top + 1))
        if size[0] <= 0 or size[1] <= 0:
            raise CalibrationError(
                path, f"{f}/fov_video", f"expected right >= left and bottom >= top, got {size}"
            )
        intr = cam.find("intrinsic")
        skew = number(path, f"{f}/intrinsic@skew", intr.get("skew", 0)) if intr is not None else 0.0
        K = np.array(
            [
                [
                    attr("intrinsic", "focalLengthU") / 64,
                    skew / 64,
                    attr("intrinsic", "centerPointU") / 64 - left,
                ],
                [0.0, attr("intrinsic", "focalLengthV") / 64, attr("intrinsic", "centerPointV") / 64 - top],
                [0.0, 0.0, 1.0],
            ]
        )
        check_intrinsics(path, f"{f}/intrinsic@focalLengthU,V", K)
        k1, k2, k3 = (attr("intrinsic", f"radialDistortion{j}") for j in (1, 2, 3))
        p1, p2 = (attr("intrinsic", f"tangentalDistortion{j}") for j in (1, 2))
        dist = np.array([k1, k2, p1, p2, k3 if qca_keep_k3 else 0.0]) * scale
        extra = {"active": cam.get("active"), "avg_residual": cam.get("avg-residual")}
        records.append(
            CameraRecord(name, K, R, t, dist, size, {k: v for k, v in extra.items() if v is not None})
        )
    meta = {"qca_distortion_scale": scale, "qca_keep_k3": bool(qca_keep_k3)}
    return build_rig(path, records, fmt="qualisys", meta=meta)
