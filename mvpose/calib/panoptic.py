"""CMU Panoptic Studio calibration JSON (``calibration_<sequence>.json``), read only.

``{"calibDataSource": ..., "cameras": [{"name": "PP_NN", "type": "vga" | "hd" | "kinect-color",
"resolution": [w, h], "panel", "node", "K": 3x3, "distCoef": [k1, k2, p1, p2, k3], "R": 3x3,
"t": 3x1}]}`` with ``x_cam = R @ X_world + t`` and ``t`` in CENTIMETRES (converted to mm here).
The Panoptic world has Y pointing down. All cameras are read by default; ``types=("hd",)``
keeps the 31 HD cameras. ``type``, ``panel`` and ``node`` go to ``rig.meta["cameras"][name]``.
"""

from __future__ import annotations

from mvpose.calib._common import (
    CalibrationError,
    CameraRecord,
    as_array,
    build_rig,
    check_intrinsics,
    check_rotation,
    dist_vector,
    image_size,
    refuse_subject,
)
from mvpose.calib.mvpose_json import load_json


def is_panoptic(doc) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("cameras"), list):
        return False
    if "calibDataSource" in doc:
        return True
    first = doc["cameras"][0] if doc["cameras"] else None
    return isinstance(first, dict) and "distCoef" in first


def read(path, subject=None, types=None):
    """Read a Panoptic calibration; ``types`` (e.g. ``("hd",)``) filters by camera type."""
    refuse_subject(path, subject)
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("cameras"), list):
        raise CalibrationError(
            path, "cameras", "missing; expected a Panoptic calibration with a 'cameras' list"
        )
    if isinstance(types, str):
        types = (types,)
    wanted = None if types is None else {str(t) for t in types}
    records, seen_types = [], set()
    for i, cam in enumerate(doc["cameras"]):
        f = f"cameras[{i}]"
        if not isinstance(cam, dict):
            raise CalibrationError(path, f, "expected a camera object")
        ctype = cam.get("type")
        seen_types.add(ctype)
        if wanted is not None and ctype not in wanted:
            continue
        for k in ("name", "K", "R", "t", "resolution"):
            if k not in cam:
                raise CalibrationError(path, f"{f}.{k}", "missing")
        K = check_intrinsics(path, f"{f}.K", as_array(path, f"{f}.K", cam["K"], (3, 3)))
        R = check_rotation(path, f"{f}.R", as_array(path, f"{f}.R", cam["R"], (3, 3)))
        t = as_array(path, f"{f}.t", cam["t"], (3,)) * 10.0
        dist = dist_vector(path, f"{f}.distCoef", cam.get("distCoef"))
        size = image_size(path, f"{f}.resolution", cam["resolution"])
        extra = {k: cam[k] for k in ("type", "panel", "node") if k in cam}
        records.append(CameraRecord(str(cam["name"]), K, R, t, dist, size, extra))
    if not records:
        raise CalibrationError(
            path, "type", f"no camera of types {sorted(wanted)}; the file has {sorted(map(str, seen_types))}"
        )
    meta = {"world": "CMU Panoptic world, Y axis down, mm"}
    if isinstance(doc.get("calibDataSource"), str):
        meta["source"] = f"CMU Panoptic calibration ({doc['calibDataSource']})"
    if wanted is not None:
        meta["types"] = sorted(wanted)
    return build_rig(path, records, fmt="panoptic", meta=meta)
