"""C3D motion files through the ``c3d`` package (PyPI ``c3d==0.6.0``).

Written: one POINT per joint, labelled with the joint name, float32 coordinates in ``units``
(``mm`` by default) in world axes, ``POINT:RATE = fps``, first frame ``frame_indices[0] + 1``
(C3D counts from 1), no analog channels, ``POINT:X_SCREEN/Y_SCREEN = +X/+Z`` for a Z-up world.
Residuals: ``-1`` for a missing joint (its coordinates written as 0), ``0`` otherwise (C3D's
"computed" value: triangulated, interpolated or filtered points have no marker residual).
Read back: any C3D the package reads (integer or float storage); a negative residual is NaN.
"""

from __future__ import annotations

import warnings

import numpy as np

from mvpose.errors import FileFieldError

from ._io import atomic_write, existing_file
from .trajectories import Trajectories, unit_scale

__all__ = ["write_c3d", "read_c3d"]


def _c3d():
    try:
        import c3d
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("C3D export needs the 'c3d' package: pip install c3d==0.6.0") from e
    return c3d


def write_c3d(path, traj: Trajectories, units: str = "mm", up_axis: str = "z"):
    """Write ``traj`` as a float C3D file (see the module docstring).

    Args:
        path: output ``.c3d``.
        traj: positions (mm, world axes), joint names (point labels), fps.
        units: ``"mm"`` (default), ``"cm"`` or ``"m"`` (``POINT:UNITS``).
        up_axis: the world's up axis, recorded as ``POINT:Y_SCREEN`` (``"z"`` -> ``+Z``).

    Returns:
        The path written (atomically).
    """
    c3d = _c3d()
    scale = unit_scale(units)
    if up_axis not in ("x", "y", "z"):
        raise ValueError(f"up_axis must be 'x', 'y' or 'z', got {up_axis!r}")
    T, J = traj.num_frames, traj.num_joints
    if T == 0 or J == 0:
        raise ValueError("C3D export needs at least one frame and one joint")
    fi = traj.frame_indices
    if T > 1 and not np.all(np.diff(fi) == 1):
        warnings.warn("C3D frames are consecutive: the frame indices' holes are not kept", stacklevel=2)
    missing = traj.missing
    raw = np.zeros((T, J, 4), np.float32)  # x, y, z, residual word (the file's own frame layout)
    raw[..., :3] = np.where(missing[..., None], 0.0, traj.points_mm / scale)
    raw[..., 3] = np.where(missing, -1.0, 0.0)
    writer = c3d.Writer(point_rate=float(traj.fps), analog_rate=0.0, point_scale=-1.0, point_units=units)
    writer.set_point_labels(list(traj.joint_names))
    writer.set_start_frame(int(fi[0]) + 1 if fi[0] >= 0 else 1)
    writer.set_screen_axis("+X", "+" + ("Z" if up_axis == "z" else "Y" if up_axis == "y" else "X"))
    no_analog = np.zeros((0, 0), np.float32)
    frames = np.empty((T, 2), dtype=object)
    for t in range(T):  # the package wants (points (J, 5), analog) pairs
        pts = np.zeros((J, 5), np.float32)
        pts[:, :3], pts[:, 3] = raw[t, :, :3], raw[t, :, 3]
        frames[t, 0], frames[t, 1] = pts, no_analog
    writer.add_frames(frames)

    def write(tmp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "No analog data found"
            with open(tmp, "wb") as f:
                writer.write(f)
            # the package leaves a missing point's coordinates at its last valid values; C3D
            # readers ignore them (residual -1), but write the conventional zeros
            with open(tmp, "r+b") as f:
                f.seek(512 * (int(writer.header.data_block) - 1))
                f.write(raw.tobytes())

    return atomic_write(path, write)


def read_c3d(path) -> Trajectories:
    """Read the 3D points of a C3D file into :class:`Trajectories` (mm, the file's axes).

    ``joint_names`` are the point labels (trailing blanks removed), ``fps`` is ``POINT:RATE`` and
    ``frame_indices`` count from the file's first frame minus 1. Missing points (negative residual)
    are NaN. Raises FileFieldError naming the file and the parameter at fault.
    """
    c3d = _c3d()
    path = existing_file(path, "C3D file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with open(path, "rb") as f:
            try:
                reader = c3d.Reader(f)
            except (ValueError, AssertionError, OSError, IndexError) as e:
                raise FileFieldError(path, None, f"not a readable C3D file ({e})") from None
            labels = tuple(str(s).strip() for s in reader.point_labels)
            units_param = reader.get("POINT:UNITS")
            units = units_param.string_value.strip() if units_param is not None else "mm"
            try:
                scale = unit_scale(units)
            except ValueError as e:
                raise FileFieldError(path, "POINT:UNITS", str(e)) from None
            rate = float(reader.point_rate)
            first = int(reader.first_frame)
            frames = [p[:, :4].copy() for _, p, _ in reader.read_frames(copy=False)]
    if len(labels) != (frames[0].shape[0] if frames else len(labels)):
        raise FileFieldError(path, "POINT:LABELS", f"{len(labels)} labels for {frames[0].shape[0]} points")
    data = np.stack(frames).astype(np.float64) if frames else np.zeros((0, len(labels), 4))
    pts = np.where(data[..., 3:4] < 0, np.nan, data[..., :3] * scale)
    try:
        return Trajectories(
            pts,
            labels,
            rate,
            frame_indices=first - 1 + np.arange(len(frames)),
            meta={"source": str(path), "c3d_units": units},
        )
    except ValueError as e:
        raise FileFieldError(path, None, str(e)) from None
