"""mvpose-rig JSON (``"format": "mvpose-rig/1"``), mvpose's own layout; also our "OpenCV-style JSON".

Layout (millimetres, ``x_cam = R @ X_world + t``)::

    {"format": "mvpose-rig/1", "units": "mm", "source": "...",
     "cameras": [{"name": "cam_01", "image_size": [w, h], "K": 3x3, "dist": [k1, k2, p1, p2, k3],
                  "distortion_model": "opencv", "R": 3x3, "t": [tx, ty, tz]}, ...]}

or several rigs in one file: ``{"format": ..., "rigs": {"S1": {"cameras": [...]}, ...}}`` (read
one with ``subject=``). A Human3.6M camera has ``"distortion_model": "h36m"``, ``"dist": null``
and ``"radial": [k1, k2, k3]``, ``"tangential": [p[0], p[1]]`` (stored order); a ``dist`` list with
``"distortion_model": "h36m"`` (``[k1, k2, p[0], p[1], k3]``) is read too. Other per-camera keys
(``type``, ``h36m_index``...) are kept in ``rig.meta["cameras"][name]`` and written back.
``"units"`` may be ``"mm"`` (default), ``"cm"`` or ``"m"``; files are always written in mm.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from mvpose.calib._common import (
    CalibrationError,
    CameraRecord,
    as_array,
    build_rig,
    check_intrinsics,
    check_rotation,
    dist_vector,
    image_size,
    pick_subject,
    refuse_subject,
    rig_arrays,
    unit_scale,
)

FORMAT_TAG = "mvpose-rig/1"
_CORE_KEYS = {"name", "image_size", "K", "dist", "distortion_model", "R", "t", "radial", "tangential"}
_MODELS = ("opencv", "h36m")


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CalibrationError(path, None, f"not valid JSON ({e})") from None
    except UnicodeDecodeError:
        raise CalibrationError(path, None, "not a UTF-8 text file; expected JSON") from None


def read(path, subject=None):
    """Read an mvpose-rig/1 JSON file (one rig, or one of several with ``subject=``)."""
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise CalibrationError(
            path, None, f"expected a JSON object at the top level, got {type(doc).__name__}"
        )
    tag = doc.get("format")
    if tag is not None and (not isinstance(tag, str) or not tag.startswith("mvpose-rig/")):
        raise CalibrationError(path, "format", f"expected '{FORMAT_TAG}', got {tag!r}")
    if tag is not None and tag != FORMAT_TAG:
        raise CalibrationError(
            path, "format", f"unsupported version {tag!r}; this mvpose reads '{FORMAT_TAG}'"
        )
    scale = unit_scale(path, "units", doc.get("units", "mm"))
    meta = {}
    if isinstance(doc.get("source"), str):
        meta["source"] = doc["source"]
    if "rigs" in doc:
        rigs = doc["rigs"]
        if not isinstance(rigs, dict) or not rigs:
            raise CalibrationError(path, "rigs", "expected an object mapping subject names to rigs")
        key = pick_subject(path, list(rigs), subject)
        body, prefix = rigs[key], f"rigs.{key}."
        meta["subject"] = key
        if not isinstance(body, dict):
            raise CalibrationError(path, f"rigs.{key}", "expected an object with a 'cameras' list")
    else:
        refuse_subject(path, subject)
        body, prefix = doc, ""
    cams = body.get("cameras")
    if not isinstance(cams, list) or not cams:
        raise CalibrationError(
            path, prefix + "cameras", "missing or empty; expected a list of camera objects"
        )
    records, models = [], []
    for i, cam in enumerate(cams):
        f = f"{prefix}cameras[{i}]"
        if not isinstance(cam, dict):
            raise CalibrationError(path, f, f"expected a camera object, got {type(cam).__name__}")
        rec, model = _read_camera(path, f, cam, scale)
        records.append(rec)
        models.append(model)
    if len(set(models)) != 1:
        raise CalibrationError(
            path,
            prefix + "cameras[*].distortion_model",
            f"all cameras of a rig must share one model, got {models}",
        )
    return build_rig(path, records, fmt="mvpose-json", distortion_model=models[0], meta=meta)


def _read_camera(path, f: str, cam: dict, scale: float) -> tuple[CameraRecord, str]:
    if "name" not in cam:
        raise CalibrationError(path, f"{f}.name", "missing; expected the camera's name")
    name = str(cam["name"])
    model = cam.get("distortion_model", "opencv")
    if model not in _MODELS:
        raise CalibrationError(path, f"{f}.distortion_model", f"expected one of {_MODELS}, got {model!r}")
    for key in ("K", "R", "t"):
        if key not in cam:
            raise CalibrationError(path, f"{f}.{key}", "missing")
    K = check_intrinsics(path, f"{f}.K", as_array(path, f"{f}.K", cam["K"], (3, 3)))
    R = check_rotation(path, f"{f}.R", as_array(path, f"{f}.R", cam["R"], (3, 3)))
    t = as_array(path, f"{f}.t", cam["t"], (3,)) * scale
    if model == "h36m" and cam.get("dist") is None:
        if "radial" not in cam or "tangential" not in cam:
            raise CalibrationError(
                path,
                f"{f}.radial",
                "a Human3.6M camera with 'dist': null needs 'radial' [k1, k2, k3] and 'tangential' [p0, p1]",
            )
        k = as_array(path, f"{f}.radial", cam["radial"], (3,))
        p = as_array(path, f"{f}.tangential", cam["tangential"], (2,))
        dist = np.array([k[0], k[1], p[0], p[1], k[2]])
    else:
        dist = dist_vector(path, f"{f}.dist", cam.get("dist"))
    size = (
        image_size(path, f"{f}.image_size", cam["image_size"]) if cam.get("image_size") is not None else None
    )
    extra = {k: v for k, v in cam.items() if k not in _CORE_KEYS}
    return CameraRecord(name, K, R, t, dist, size, extra), model


def _camera_dict(a: dict, i: int) -> dict:
    name = a["names"][i]
    cam = {"name": name}
    if a["image_size"] is not None:
        cam["image_size"] = [int(v) for v in a["image_size"][i]]
    cam["K"] = a["K"][i].tolist()
    d = a["dist"][i]
    if a["distortion_model"] == "h36m":
        cam["dist"] = None
        cam["distortion_model"] = "h36m"
        cam["radial"] = [float(d[0]), float(d[1]), float(d[4])]
        cam["tangential"] = [float(d[2]), float(d[3])]
    else:
        cam["dist"] = d.tolist()
        cam["distortion_model"] = a["distortion_model"]
    cam["R"] = a["R"][i].tolist()
    cam["t"] = a["t"][i].tolist()
    for k, v in a["extras"].get(name, {}).items():
        if k not in cam and _jsonable(v):
            cam[k] = v
    return cam


def _jsonable(v) -> bool:
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def _rig_body(rig, path) -> dict:
    a = rig_arrays(rig, path)
    return {"cameras": [_camera_dict(a, i) for i in range(len(a["names"]))]}


def write(rig, path, source: str | None = None, allow_approximate: bool = False) -> None:
    """Write one rig, or a mapping ``{subject: rig}`` as a multi-rig file, in mm.

    Both distortion models are stored exactly (``allow_approximate`` is accepted and unused).
    """
    doc = {"format": FORMAT_TAG, "units": "mm"}
    if isinstance(rig, Mapping):
        if not rig:
            raise CalibrationError(path, "rigs", "nothing to write: the mapping of rigs is empty")
        first = next(iter(rig.values()))
        src = source or _source_of(first)
        if src:
            doc["source"] = src
        doc["rigs"] = {str(k): _rig_body(r, path) for k, r in rig.items()}
    else:
        src = source or _source_of(rig)
        if src:
            doc["source"] = src
        doc.update(_rig_body(rig, path))
    text = json.dumps(doc, indent=1, allow_nan=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def _source_of(rig) -> str | None:
    meta = getattr(rig, "meta", {}) or {}
    if isinstance(meta.get("source"), str):
        return meta["source"]
    if meta.get("file") and meta.get("format"):
        return f"converted by mvpose from {meta['format']} file {meta['file']}"
    return None


def is_mvpose_json(doc) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("format"), str)
        and doc["format"].startswith("mvpose-rig")
    )
