"""mvpose's own motion files: JSON (readable, ``null`` for missing joints) and NPZ (arrays).

JSON layout (``"format": "mvpose-motion/1"``)::

    {"format": "mvpose-motion/1", "units": "mm", "fps": 60.0, "skeleton": "body25b",
     "joint_names": ["nose", ...], "num_frames": 100,
     "frames": [{"frame": 0, "time": 0.0, "points": [[x, y, z], null, ...],
                 "filled": [false, true, ...]},              # only when known
                ...],
     "meta": {...}}

``points`` has one entry per joint, ``null`` where the joint is missing; ``time`` is
``frame / fps`` in seconds. NPZ holds the same as arrays: ``points (T, J, 3)`` (NaN where missing)
in ``units``, ``joint_names``, ``fps``, ``frame_indices``, ``skeleton``, ``filled (T, J)`` (when
known), ``meta_json`` and ``format``. Both are read back by :func:`read_json` / :func:`read_npz`.
"""

from __future__ import annotations

import json

import numpy as np

from mvpose.errors import FileFieldError

from ._io import atomic_write, existing_file
from .trajectories import Trajectories, unit_scale

__all__ = ["FORMAT", "write_json", "read_json", "write_npz", "read_npz"]

FORMAT = "mvpose-motion/1"


def write_json(path, traj: Trajectories, units: str = "mm", decimals: int = 4):
    """Write ``traj`` as mvpose JSON; coordinates rounded to ``decimals`` places of ``units``."""
    scale = unit_scale(units)
    pts = np.round(traj.points_mm / scale, int(decimals))
    obj = pts.astype(object)
    obj[np.isnan(pts)] = None
    rows = obj.tolist()  # (T, J, 3) lists with None
    frames = []
    times = np.round(traj.times_s, 9).tolist()
    filled = None if traj.filled is None else traj.filled.tolist()
    for t, (fi, ts) in enumerate(zip(traj.frame_indices.tolist(), times)):
        pts_t = [None if p[0] is None else p for p in rows[t]]
        frame = {"frame": fi, "time": ts, "points": pts_t}
        if filled is not None:
            frame["filled"] = filled[t]
        frames.append(frame)
    doc = {
        "format": FORMAT,
        "units": units,
        "fps": traj.fps,
        "skeleton": traj.skeleton,
        "joint_names": list(traj.joint_names),
        "num_frames": traj.num_frames,
        "frames": frames,
        "meta": traj.meta,
    }

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, allow_nan=False, separators=(",", ":"))

    return atomic_write(path, write)


def _field(doc: dict, key: str, path, kind=None):
    if key not in doc:
        raise FileFieldError(path, key, "missing")
    value = doc[key]
    if kind is not None and not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise FileFieldError(path, key, f"expected {want}, got {type(value).__name__}")
    return value


def read_json(path) -> Trajectories:
    """Read a file written by :func:`write_json` (FileFieldError naming the field if malformed)."""
    path = existing_file(path, "motion JSON")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise FileFieldError(path, None, f"not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise FileFieldError(path, "format", f"is {got!r}, expected {FORMAT!r}")
    names = _field(doc, "joint_names", path, list)
    frames = _field(doc, "frames", path, list)
    try:
        scale = unit_scale(_field(doc, "units", path, str))
    except ValueError as e:
        raise FileFieldError(path, "units", str(e)) from None
    J, T = len(names), len(frames)
    pts = np.full((T, J, 3), np.nan)
    filled = np.zeros((T, J), bool) if T and all("filled" in f for f in frames) else None
    index = np.empty(T, np.int64)
    for t, fr in enumerate(frames):
        where = f"frames[{t}]"
        if not isinstance(fr, dict) or "points" not in fr or "frame" not in fr:
            raise FileFieldError(path, where, "expected an object with 'frame' and 'points'")
        p = fr["points"]
        if not isinstance(p, list) or len(p) != J:
            raise FileFieldError(path, f"{where}.points", f"expected {J} points (one per joint name)")
        for j, q in enumerate(p):
            if q is None:
                continue
            if not isinstance(q, list) or len(q) != 3 or any(v is None for v in q):
                raise FileFieldError(path, f"{where}.points[{j}]", f"expected [x, y, z] or null, got {q!r}")
            pts[t, j] = q
        index[t] = int(fr["frame"])
        if filled is not None:
            if len(fr["filled"]) != J:
                raise FileFieldError(path, f"{where}.filled", f"expected {J} booleans")
            filled[t] = fr["filled"]
    fps = _field(doc, "fps", path, (int, float))
    try:
        return Trajectories(
            pts * scale,
            tuple(names),
            fps,
            frame_indices=index,
            skeleton=doc.get("skeleton"),
            filled=filled,
            meta=doc.get("meta") or {},
        )
    except ValueError as e:
        raise FileFieldError(path, None, str(e)) from None


def write_npz(path, traj: Trajectories, units: str = "mm"):
    """Write ``traj`` as a compressed NPZ (no pickled objects: strings are unicode arrays)."""
    scale = unit_scale(units)
    arrays = {
        "format": np.asarray(FORMAT),
        "points": traj.points_mm / scale,
        "units": np.asarray(units),
        "fps": np.asarray(traj.fps),
        "joint_names": np.asarray(traj.joint_names, dtype=str),
        "frame_indices": traj.frame_indices,
        "skeleton": np.asarray(traj.skeleton or ""),
        "meta_json": np.asarray(json.dumps(traj.meta)),
    }
    if traj.filled is not None:
        arrays["filled"] = traj.filled

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def read_npz(path) -> Trajectories:
    """Read a file written by :func:`write_npz` (never unpickles)."""
    path = existing_file(path, "motion NPZ")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise FileFieldError(path, None, f"not a readable NPZ ({e})") from None
    with z:
        if "format" not in z.files or str(z["format"]) != FORMAT:
            got = str(z["format"]) if "format" in z.files else None
            raise FileFieldError(path, "format", f"is {got!r}, expected {FORMAT!r}")
        for key in ("points", "units", "fps", "joint_names", "frame_indices"):
            if key not in z.files:
                raise FileFieldError(path, key, "missing")
        try:
            scale = unit_scale(str(z["units"]))
            return Trajectories(
                z["points"] * scale,
                tuple(str(n) for n in z["joint_names"]),
                float(z["fps"]),
                frame_indices=z["frame_indices"],
                skeleton=str(z["skeleton"]) if "skeleton" in z.files else None,
                filled=z["filled"] if "filled" in z.files else None,
                meta=json.loads(str(z["meta_json"])) if "meta_json" in z.files else {},
            )
        except ValueError as e:
            raise FileFieldError(path, None, str(e)) from None
