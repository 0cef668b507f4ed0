"""EasyMocap calibration: OpenCV FileStorage YAML pair ``intri.yml`` + ``extri.yml``.

``intri.yml``: ``names`` (list of camera names), ``K_<n>`` (3x3 px), ``dist_<n>`` (1x5 OpenCV
``[k1, k2, p1, p2, k3]``). ``extri.yml``: ``names``, ``R_<n>`` (Rodrigues vector), ``Rot_<n>``
(3x3), ``T_<n>`` (3x1, METRES), with ``X_cam = Rot @ X_world + T``. Both files are read and
written with ``cv2.FileStorage``.

Image size is not part of the format. The reader takes, in this order: the ``image_size=``
keyword (``(w, h)`` for every camera, or ``{name: (w, h)}``); ``W_<n>``/``H_<n>`` integers in
``intri.yml`` (mvpose writes them; EasyMocap's reader looks nodes up by name and ignores them);
otherwise it INFERS ``(round(2 cx), round(2 cy))`` from the principal point, lists those cameras
in ``rig.meta["image_size_inferred"]`` and logs it. That guess is exact only for a centred
principal point.

Cameras in ``intri.yml`` without extrinsics (or the reverse) are dropped: the rig keeps the
cameras present in both, in ``intri.yml`` order, records the dropped names in
``rig.meta["dropped_cameras"]`` and logs a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
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
    infer_image_size,
    logger,
    opencv_dist_for_writing,
    refuse_subject,
    rig_arrays,
    rodrigues,
    to_rodrigues,
)

_SUFFIXES = (".yml", ".yaml")


def pair_paths(path) -> tuple[Path, Path]:
    """``(intri, extri)`` for a folder or for either file of the pair."""
    path = Path(path)
    if path.is_dir():
        for suf in _SUFFIXES:
            intri, extri = path / f"intri{suf}", path / f"extri{suf}"
            if intri.exists() or extri.exists():
                break
    else:
        name = path.name
        if "intri" in name:
            intri, extri = path, path.with_name(name.replace("intri", "extri"))
        elif "extri" in name:
            intri, extri = path.with_name(name.replace("extri", "intri")), path
        else:
            raise CalibrationError(
                path,
                None,
                "expected an EasyMocap folder or its intri.yml / extri.yml (file name with 'intri' or "
                "'extri')",
            )
    for p in (intri, extri):
        if not p.exists():
            raise CalibrationError(
                p, None, "file not found; EasyMocap calibration needs both intri.yml and extri.yml"
            )
    return intri, extri


class _Storage:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        except (cv2.error, SystemError) as e:  # OpenCV 5 wraps its parse errors in SystemError
            err = e.__cause__ if isinstance(e, SystemError) and e.__cause__ is not None else e
            msg = str(err).strip().splitlines()[-1] if str(err).strip() else "parse error"
            raise CalibrationError(path, None, f"not a readable OpenCV FileStorage YAML ({msg})") from None
        if not self.fs.isOpened():
            raise CalibrationError(path, None, "could not open as OpenCV FileStorage YAML")

    def names(self) -> list[str]:
        node = self.fs.getNode("names")
        if node.empty() or node.isNone():
            raise CalibrationError(self.path, "names", "missing; expected the list of camera names")
        if not node.isSeq():
            raise CalibrationError(self.path, "names", "expected a list of camera names")
        out = []
        for i in range(node.size()):
            item = node.at(i)
            if item.isString():
                out.append(item.string())
            elif item.isInt():
                out.append(str(int(item.real())))
            elif item.isReal():
                out.append(repr(item.real()))
            else:
                raise CalibrationError(self.path, f"names[{i}]", "expected a camera name (string)")
        return out

    def mat(self, key: str, required: bool = True):
        node = self.fs.getNode(key)
        if node.empty() or node.isNone():
            if required:
                raise CalibrationError(self.path, key, "missing")
            return None
        if node.isMap():
            m = node.mat()
            if m is None:
                raise CalibrationError(self.path, key, "expected an opencv-matrix")
            return m
        if node.isSeq():
            vals = []
            for i in range(node.size()):
                it = node.at(i)
                if not (it.isReal() or it.isInt()):
                    raise CalibrationError(self.path, key, "expected a list of numbers")
                vals.append(it.real())
            return np.asarray(vals)
        if node.isReal() or node.isInt():
            return np.asarray([node.real()])
        raise CalibrationError(self.path, key, f"expected an opencv-matrix of numbers, got {node.string()!r}")

    def integer(self, key: str):
        node = self.fs.getNode(key)
        if node.empty() or node.isNone():
            return None
        if not (node.isInt() or node.isReal()):
            raise CalibrationError(self.path, key, "expected an integer (pixels)")
        return node.real()

    def close(self):
        self.fs.release()


def read(path, subject=None, image_size=None):
    """Read an EasyMocap ``intri.yml``/``extri.yml`` pair (``path``: the folder or either file)."""
    refuse_subject(path, subject)
    intri_path, extri_path = pair_paths(path)
    intri, extri = _Storage(intri_path), _Storage(extri_path)
    try:
        in_names, ex_names = intri.names(), extri.names()
        ex_set, in_set = set(ex_names), set(in_names)
        keep = [n for n in in_names if n in ex_set]
        dropped = [n for n in in_names if n not in ex_set] + [n for n in ex_names if n not in in_set]
        if not keep:
            raise CalibrationError(
                extri_path,
                "names",
                f"no camera has both intrinsics and extrinsics (intri: {in_names}, extri: {ex_names})",
            )
        records, inferred = [], []
        for n in keep:
            K = check_intrinsics(
                intri_path, f"K_{n}", as_array(intri_path, f"K_{n}", intri.mat(f"K_{n}"), (3, 3))
            )
            dist = dist_vector(intri_path, f"dist_{n}", intri.mat(f"dist_{n}"), allow_none=False)
            rot = extri.mat(f"Rot_{n}", required=False)
            rvec = extri.mat(f"R_{n}", required=False)
            if rot is None and rvec is None:
                raise CalibrationError(extri_path, f"Rot_{n}", "missing (and no Rodrigues R_ either)")
            if rot is not None:
                R = check_rotation(extri_path, f"Rot_{n}", as_array(extri_path, f"Rot_{n}", rot, (3, 3)))
                if rvec is not None:
                    Rv = rodrigues(extri_path, f"R_{n}", rvec)
                    err = float(np.abs(Rv - R).max())
                    if err > 1e-4:
                        raise CalibrationError(
                            extri_path,
                            f"R_{n}",
                            f"disagrees with Rot_{n} by {err:.3g}; expected the same rotation",
                        )
            else:
                R = rodrigues(extri_path, f"R_{n}", rvec)
            t = as_array(extri_path, f"T_{n}", extri.mat(f"T_{n}"), (3,)) * 1000.0
            size = _size_for(intri, n, K, image_size, inferred)
            records.append(CameraRecord(n, K, R, t, dist, size))
    finally:
        intri.close()
        extri.close()
    meta = {"intri": str(intri_path), "extri": str(extri_path)}
    if dropped:
        meta["dropped_cameras"] = dropped
        logger.warning(
            "%s: cameras %s lack intrinsics or extrinsics and were dropped; keeping %s",
            extri_path,
            dropped,
            keep,
        )
    if inferred:
        meta["image_size_inferred"] = inferred
        meta["image_size_note"] = "not stored in EasyMocap files: inferred as (round(2 cx), round(2 cy))"
        logger.info("%s: image size inferred as (2 cx, 2 cy) for cameras %s", intri_path, inferred)
    return build_rig(Path(path), records, fmt="easymocap", meta=meta)


def _size_for(intri: _Storage, name: str, K, given, inferred: list):
    if given is not None:
        if isinstance(given, Mapping):
            if name not in given:
                raise CalibrationError(
                    intri.path, "image_size", f"the image_size= mapping has no camera {name!r}"
                )
            return image_size(intri.path, f"image_size[{name!r}]", given[name])
        return image_size(intri.path, "image_size", given)
    w, h = intri.integer(f"W_{name}"), intri.integer(f"H_{name}")
    if w is not None and h is not None:
        return image_size(intri.path, f"W_{name}/H_{name}", (w, h))
    inferred.append(name)
    return infer_image_size(K)


def write(rig, path, allow_approximate: bool = False) -> None:
    """Write ``intri.yml`` and ``extri.yml`` into the folder ``path`` (created if needed).

    ``path`` may also name ``intri.yml`` or ``extri.yml``; both files go next to it. Image sizes
    are stored as ``W_<n>``/``H_<n>`` in ``intri.yml``.
    """
    path = Path(path)
    if path.suffix.lower() in _SUFFIXES:
        if not ("intri" in path.name or "extri" in path.name):
            raise CalibrationError(
                path, None, "EasyMocap calibration is a folder with intri.yml and extri.yml"
            )
        folder = path.parent
        intri_path = path.with_name(path.name.replace("extri", "intri"))
        extri_path = path.with_name(path.name.replace("intri", "extri"))
    else:
        folder = path
        intri_path, extri_path = folder / "intri.yml", folder / "extri.yml"
    a = rig_arrays(rig, path)
    dist = opencv_dist_for_writing(rig, path, "EasyMocap YAML", allow_approximate)
    names = a["names"]
    for n in names:
        if not n or not all(c.isalnum() or c in "_-" for c in n):
            raise CalibrationError(
                path,
                "names",
                f"camera name {n!r} cannot be used in EasyMocap keys (K_<name>); use letters, digits, _ -",
            )
    folder.mkdir(parents=True, exist_ok=True)
    fs = cv2.FileStorage(str(intri_path), cv2.FILE_STORAGE_WRITE)
    _write_names(fs, names)
    for i, n in enumerate(names):
        fs.write(f"K_{n}", np.ascontiguousarray(a["K"][i]))
        fs.write(f"dist_{n}", np.ascontiguousarray(dist[i].reshape(1, 5)))
        if a["image_size"] is not None:
            fs.write(f"W_{n}", int(a["image_size"][i][0]))
            fs.write(f"H_{n}", int(a["image_size"][i][1]))
    fs.release()
    fs = cv2.FileStorage(str(extri_path), cv2.FILE_STORAGE_WRITE)
    _write_names(fs, names)
    for i, n in enumerate(names):
        fs.write(f"R_{n}", np.ascontiguousarray(to_rodrigues(a["R"][i]).reshape(3, 1)))
        fs.write(f"Rot_{n}", np.ascontiguousarray(a["R"][i]))
        fs.write(f"T_{n}", np.ascontiguousarray((a["t"][i] / 1000.0).reshape(3, 1)))
    fs.release()


def _write_names(fs, names) -> None:
    fs.startWriteStruct("names", cv2.FileNode_SEQ)
    for n in names:
        fs.write("", str(n))
    fs.endWriteStruct()
