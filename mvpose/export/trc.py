"""OpenSim marker files (``.trc``), laid out as Pose2Sim writes them, read back in the mvpose world.

Layout (tab-separated; the same five header lines as Pose2Sim's output, no blank line after them)::

    PathFileType  4  (X/Y/Z)  <file name>
    DataRate  CameraRate  NumFrames  NumMarkers  Units  OrigDataRate  OrigDataStartFrame  OrigNumFrames
    60  60  100  21  m  60  0  100
    Frame#  Time  RHip      RKnee  ...          (each name followed by two empty cells)
                  X1  Y1  Z1  X2  Y2  Z2  ...
    1  0.0  x  y  z  ...

* ``Frame#`` is ``frame_index + 1`` and ``Time`` is ``frame_index / fps`` (s). Pose2Sim writes
  ``Time = Frame# / fps`` (one frame period later); readers use ``Frame#`` and ignore ``Time``.
* Missing markers are empty cells (OpenSim reads them as NaN); ``NaN`` cells are read too.
* Units: ``m`` (default, as Pose2Sim), ``cm`` or ``mm``.
* Axes: ``axes="opensim"`` (default) turns the Z-up mvpose world into OpenSim's Y-up frame the way
  Pose2Sim does, ``(X, Y, Z)_trc = (Y, Z, X)_world``, a rotation (no mirroring) that keeps the
  calibration's X-Y ground plane as OpenSim's Z-X plane. ``axes="world"`` writes world axes as is.
  The reader applies the inverse, so Pose2Sim's own TRC comes back in calibration coordinates.
* Marker names: mvpose joint names, or ``marker_names="pose2sim"`` for Pose2Sim's (``RHip``,
  ``LBigToe``, ``Neck``, ``Head`` for ``head_top``, ...), which its OpenSim models expect.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mvpose.errors import FileFieldError

from ._io import atomic_write, existing_file
from .trajectories import Trajectories, unit_scale

__all__ = ["write_trc", "read_trc", "pose2sim_marker_name", "joint_names_from_markers", "TRC_AXES"]

#: ``axes`` choices: rotation (3x3, rows) taking world coordinates to TRC coordinates
TRC_AXES = {
    "opensim": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),  # (Y, Z, X)_world
    "world": np.eye(3),
}
_HEADER_KEYS = (
    "DataRate",
    "CameraRate",
    "NumFrames",
    "NumMarkers",
    "Units",
    "OrigDataRate",
    "OrigDataStartFrame",
    "OrigNumFrames",
)
_DECIMALS = {"m": 8, "cm": 6, "mm": 5}


def pose2sim_marker_name(joint: str, joint_names=()) -> str:
    """Pose2Sim's marker name of an mvpose joint: ``right_big_toe`` -> ``RBigToe``, ``neck`` -> ``Neck``.

    ``head_top`` becomes ``Head`` (Pose2Sim's name for BODY_25B's head keypoint) unless
    ``joint_names`` also holds a ``head`` joint.
    """
    if joint == "head_top" and "head" not in joint_names:
        return "Head"
    side = ""
    for prefix, letter in (("left_", "L"), ("right_", "R")):
        if joint.startswith(prefix):
            side, joint = letter, joint[len(prefix) :]
    return side + "".join(part[:1].upper() + part[1:] for part in joint.split("_"))


def joint_names_from_markers(markers, joint_names) -> tuple[str, ...]:
    """Map marker names (mvpose or Pose2Sim style) to the mvpose ``joint_names`` they stand for.

    A marker that already is a joint name is kept; else it is matched against
    :func:`pose2sim_marker_name` of every joint. Unmatched markers keep their name.
    """
    joint_names = tuple(joint_names)
    by_marker = {pose2sim_marker_name(j, joint_names): j for j in joint_names}
    return tuple(m if m in joint_names else by_marker.get(m, m) for m in markers)


def _marker_names(traj: Trajectories, style: str) -> tuple[str, ...]:
    if style == "joint":
        return traj.joint_names
    if style != "pose2sim":
        raise ValueError(f"marker_names must be 'joint' or 'pose2sim', got {style!r}")
    names = tuple(pose2sim_marker_name(j, traj.joint_names) for j in traj.joint_names)
    if len(set(names)) != len(names):
        raise ValueError(f"Pose2Sim marker names are not unique for joints {traj.joint_names}")
    return names


def _axes(axes: str) -> np.ndarray:
    if axes not in TRC_AXES:
        raise ValueError(f"axes must be one of {', '.join(TRC_AXES)}, got {axes!r}")
    return TRC_AXES[axes]


def write_trc(path, traj: Trajectories, units: str = "m", axes: str = "opensim", marker_names: str = "joint"):
    """Write ``traj`` as an OpenSim ``.trc`` marker file (see the module docstring for the layout).

    Args:
        path: output file.
        traj: positions (mm, mvpose world), names, fps, frame indices.
        units: ``"m"``, ``"cm"`` or ``"mm"``.
        axes: ``"opensim"`` (Z-up world to Y-up, as Pose2Sim) or ``"world"``.
        marker_names: ``"joint"`` (mvpose names) or ``"pose2sim"``.

    Returns:
        The path written (atomically).
    """
    scale = unit_scale(units)
    R = _axes(axes)
    names = _marker_names(traj, marker_names)
    T, J = traj.num_frames, traj.num_joints
    rate = f"{traj.fps:g}"
    start = int(traj.frame_indices[0]) if T else 0
    head = [
        f"PathFileType\t4\t(X/Y/Z)\t{Path(path).name}",
        "\t".join(_HEADER_KEYS),
        "\t".join(map(str, (rate, rate, T, J, units, rate, start, T))),
        "\t".join(["Frame#", "Time", *(f"{n}\t\t" for n in names)]),
        "\t".join(["", "", *(f"X{k}\tY{k}\tZ{k}" for k in range(1, J + 1))]),
    ]
    xyz = (traj.points_mm @ R.T / scale).reshape(T, 3 * J)
    dec = _DECIMALS[units]
    cells = np.char.mod(f"%.{dec}f", xyz)
    cells[np.isnan(xyz)] = ""
    frames = np.char.mod("%d", traj.frame_indices + 1)
    times = np.char.mod("%.10g", traj.times_s)
    table = np.concatenate([frames[:, None], times[:, None], cells], axis=1)
    buf = io.StringIO()
    buf.write("\n".join(head) + "\n")
    for row in table:
        buf.write("\t".join(row) + "\n")

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(buf.getvalue())

    return atomic_write(path, write)


def _number(path, field: str, text: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        raise FileFieldError(path, field, f"expected a number, got {text!r}") from None


def read_trc(path, axes: str = "opensim") -> Trajectories:
    """Read an OpenSim ``.trc`` (ours, Pose2Sim's, or any with the standard 5 header lines).

    Args:
        path: the file.
        axes: how the file's axes relate to the world (see :func:`write_trc`); ``"opensim"`` undoes
            Pose2Sim's Z-up to Y-up rotation.

    Returns:
        :class:`Trajectories` in mm and world axes; ``joint_names`` are the file's marker names (map
        Pose2Sim names to joints with :func:`joint_names_from_markers`); ``frame_indices`` are
        ``Frame# - 1``; ``fps`` is ``DataRate``.

    Raises:
        FileFieldError: naming the file and the header field or line at fault.
    """
    path = existing_file(path, "TRC file")
    R = _axes(axes)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if len(lines) < 5 or not lines[0].startswith("PathFileType"):
        raise FileFieldError(path, "PathFileType", "not a TRC file (expected 5 header lines)")
    keys, values = lines[1].split("\t"), lines[2].split("\t")
    header = {k.strip(): v.strip() for k, v in zip(keys, values)}
    for key in ("DataRate", "NumMarkers", "Units"):
        if key not in header:
            raise FileFieldError(path, key, "missing from the header (line 2-3)")
    fps = _number(path, "DataRate", header["DataRate"])
    n_markers = _number(path, "NumMarkers", header["NumMarkers"], int)
    try:
        scale = unit_scale(header["Units"])
    except ValueError as e:
        raise FileFieldError(path, "Units", str(e)) from None
    cols = lines[3].split("\t")
    if cols[:2] != ["Frame#", "Time"]:
        raise FileFieldError(path, "Frame#", f"line 4 must start with Frame#, Time; got {cols[:2]}")
    names = tuple(c.strip() for c in cols[2:] if c.strip())
    if len(names) != n_markers:
        raise FileFieldError(path, "NumMarkers", f"is {n_markers} but line 4 names {len(names)} markers")
    rows = [ln for ln in lines[5:] if ln.strip()]
    if "NumFrames" in header and _number(path, "NumFrames", header["NumFrames"], int) != len(rows):
        raise FileFieldError(path, "NumFrames", f"is {header['NumFrames']} but the file has {len(rows)} rows")
    width = 2 + 3 * n_markers
    table = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        cells = row.split("\t")
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            raise FileFieldError(path, f"line {6 + i}", f"{len(cells)} values; expected at most {width}")
        vals = [c.strip() for c in cells[:width]]
        try:
            table[i, : len(vals)] = [float(v) if v else np.nan for v in vals]
        except ValueError:
            raise FileFieldError(path, f"line {6 + i}", "non-numeric value") from None
    if np.isnan(table[:, 0]).any():
        bad = int(np.flatnonzero(np.isnan(table[:, 0]))[0])
        raise FileFieldError(path, f"line {6 + bad}", "missing Frame#")
    xyz = table[:, 2:].reshape(len(rows), n_markers, 3) * scale
    try:
        return Trajectories(
            xyz @ R,  # world = R^T trc, row vectors
            names,
            fps,
            frame_indices=table[:, 0].astype(np.int64) - 1,
            meta={"source": str(path), "trc_units": header["Units"], "trc_axes": axes},
        )
    except ValueError as e:
        raise FileFieldError(path, None, str(e)) from None
