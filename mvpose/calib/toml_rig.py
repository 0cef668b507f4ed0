"""anipose / Pose2Sim / FreeMoCap calibration TOML.

One table per camera plus an optional ``[metadata]`` table::

    [cam_01]
    name = "cam_01"
    size = [1088.0, 1920.0]                      # [width, height] px
    matrix = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    distortions = [k1, k2, p1, p2]               # OpenCV order; 5 values (k3) accepted
    rotation = [rx, ry, rz]                      # Rodrigues vector of the world-to-camera rotation
    translation = [tx, ty, tz]                   # world-to-camera t, in METRES for Pose2Sim
    fisheye = false

    [metadata]
    adjusted = false
    error = 0.0

The translation unit is whatever the calibration board was measured in: Pose2Sim writes metres
(the default here, ``translation_unit="m"``); anipose and FreeMoCap files calibrated with a board
in millimetres need ``translation_unit="mm"``. A warning is logged when the cameras sit more
than 100 units from the origin in a file read as metres. ``fisheye = true`` (anipose's fisheye
model) is not supported and raises :class:`CalibrationError`.
"""

from __future__ import annotations

import re

import numpy as np
import tomllib

from mvpose.calib._common import (
    CalibrationError,
    CameraRecord,
    as_array,
    build_rig,
    check_intrinsics,
    dist_vector,
    image_size,
    logger,
    opencv_dist_for_writing,
    refuse_subject,
    rig_arrays,
    rodrigues,
    to_rodrigues,
    unit_scale,
)


def read(path, subject=None, translation_unit: str = "m"):
    """Read an anipose/Pose2Sim TOML; ``translation_unit`` is ``"m"`` (Pose2Sim), ``"cm"`` or ``"mm"``."""
    refuse_subject(path, subject)
    scale = unit_scale(path, "translation_unit", translation_unit)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise CalibrationError(path, None, f"not valid TOML ({e})") from None
    except UnicodeDecodeError:
        raise CalibrationError(path, None, "not a UTF-8 text file; expected TOML") from None
    records = []
    for key, table in doc.items():
        if key == "metadata":
            continue
        f = f"[{key}]"
        if not isinstance(table, dict):
            raise CalibrationError(path, key, "expected a camera table [name] with matrix, distortions, ...")
        for k in ("size", "matrix", "rotation", "translation"):
            if k not in table:
                raise CalibrationError(path, f"{f}.{k}", "missing")
        if table.get("fisheye", False) not in (False, 0):
            raise CalibrationError(
                path,
                f"{f}.fisheye",
                "fisheye cameras are not supported (mvpose models pinhole + OpenCV "
                "[k1, k2, p1, p2, k3] only); expected fisheye = false",
            )
        K = check_intrinsics(path, f"{f}.matrix", as_array(path, f"{f}.matrix", table["matrix"], (3, 3)))
        R = rodrigues(path, f"{f}.rotation", table["rotation"])
        t = as_array(path, f"{f}.translation", table["translation"], (3,)) * scale
        dist = dist_vector(path, f"{f}.distortions", table.get("distortions"))
        size = image_size(path, f"{f}.size", table["size"])
        name = str(table.get("name", key))
        records.append(CameraRecord(name, K, R, t, dist, size))
    if not records:
        raise CalibrationError(path, None, "no camera tables found; expected [cam_01], [cam_02], ...")
    meta = {"translation_unit": translation_unit}
    if isinstance(doc.get("metadata"), dict):
        meta["toml_metadata"] = doc["metadata"]
    if translation_unit == "m":
        centres = [np.linalg.norm(r.R.T @ r.t) / 1000.0 for r in records]
        if np.median(centres) > 100:
            logger.warning(
                "%s: cameras lie %.0f m from the origin when the translation is read as metres; the file is "
                "probably in millimetres (pass translation_unit='mm')",
                path,
                float(np.median(centres)),
            )
    return build_rig(path, records, fmt="toml", meta=meta)


def write(rig, path, translation_unit: str = "m", allow_approximate: bool = False) -> None:
    """Write a Pose2Sim/anipose TOML (translation in ``translation_unit``, metres by default).

    Tables are named ``cam_01``, ``cam_02``... in rig order (anipose sorts tables by name, so the
    numbers are zero-padded); each table's ``name`` is the camera's name.
    """
    scale = unit_scale(path, "translation_unit", translation_unit)
    a = rig_arrays(rig, path)
    if a["image_size"] is None:
        raise CalibrationError(path, "size", "the rig has no image_size, which a calibration TOML must store")
    dist = opencv_dist_for_writing(rig, path, "a calibration TOML", allow_approximate)
    V = len(a["names"])
    width = max(2, len(str(V)))
    doc = {}
    for i, name in enumerate(a["names"]):
        d = dist[i]
        doc[f"cam_{i + 1:0{width}d}"] = {
            "name": name,
            "size": [int(v) for v in a["image_size"][i]],
            "matrix": a["K"][i].tolist(),
            "distortions": (d[:4] if d[4] == 0 else d).tolist(),
            "rotation": to_rodrigues(a["R"][i]).tolist(),
            "translation": (a["t"][i] / scale).tolist(),
            "fisheye": False,
        }
    md = rig.meta.get("toml_metadata") if isinstance(rig.meta.get("toml_metadata"), dict) else None
    doc["metadata"] = dict(md) if md else {"adjusted": False, "error": 0.0}
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumps(doc))


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        v = float(v)
        if not np.isfinite(v):
            raise ValueError(f"cannot write non-finite number {v} to TOML")
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list | tuple):
        return "[ " + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to a calibration TOML")


def _string(v: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped, the rest verbatim."""
    out = []
    for ch in v:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _string(k)


def dumps(doc: dict) -> str:
    """TOML text of ``{table: {key: value}}`` with inline arrays, laid out as Pose2Sim writes it.

    Values are booleans, numbers (``repr``: exact round trip), strings and nested lists of those;
    metadata entries of other types (sub-tables, dates) are skipped.
    """
    out = []
    for table, body in doc.items():
        out.append(f"[{_key(table)}]")
        for k, v in body.items():
            try:
                out.append(f"{_key(k)} = {_value(v)}")
            except TypeError:
                if table != "metadata":
                    raise
                logger.debug("TOML metadata entry %r of type %s not written", k, type(v).__name__)
        out.append("")
    return "\n".join(out)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
