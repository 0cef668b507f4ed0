"""mmpose ``cameras.pkl`` files of Human3.6M and MPI-INF-3DHP, read only, with a restricted unpickler.

The pickle is never unpickled freely: :class:`RestrictedUnpickler` admits only numpy's array
reconstruction globals; anything else (``os.system``, ``builtins.eval``...) raises
:class:`CalibrationError` naming the file and the forbidden global, before it is called.

Layouts (a dict of per-camera dicts of numpy arrays):

* Human3.6M (``h36m_cameras/cameras.pkl``): keys ``(subject, camera_id)``, e.g. ``("S1",
  "54138969")``; ``R`` (3x3) CAMERA-TO-WORLD, ``T`` (3x1) camera centre in METRES, ``f``, ``c``,
  ``k`` (3x1), ``p`` (2x1), ``w``, ``h``, ``name`` ("camera1"..), ``id``. Rig: ``R_w2c = R.T``,
  ``t = -R_w2c @ (1000 T)``, ``distortion_model="h36m"``, camera names = ids.
* MPI-INF-3DHP train (``cameras_train.pkl``): keys ``"S1_Seq1_Cam0"``; ``R`` (3x3) WORLD-TO-CAMERA
  and ``T`` (3x1) world-to-camera translation in METRES (``x_cam = R X + 1000 T`` in mm), ``f``,
  ``c``, ``w``, ``h``, ``name`` ("train_cam_0"); no distortion. ``h`` reads 204 in mmpose's file
  (a slip of its converter): 2048 x 2048 is used (logged). Camera names ``cam_0``...;
  subjects ``"S1/Seq1"``, ``("S1", "Seq1")`` or ``"S1_Seq1"``.
* MPI-INF-3DHP test (``cameras_test.pkl``): keys ``"TS1"``..``"TS6"``, intrinsics only (``f``,
  ``c``, ``w``, ``h``). Each subject is a one-camera rig with ``R = I``, ``t = 0``: the test set's
  3D labels are in camera coordinates, so camera frame = world frame.
"""

from __future__ import annotations

import numpy as np

from mvpose.calib._common import (
    CalibrationError,
    CameraRecord,
    as_array,
    build_rig,
    check_intrinsics,
    check_rotation,
    image_size,
    logger,
    normalise_subject,
    pick_subject,
)
from mvpose.calib.h36m import h36m_record
from mvpose.safe_pickle import SafeUnpickler


class RestrictedUnpickler(SafeUnpickler):
    """:class:`mvpose.safe_pickle.SafeUnpickler` raising :class:`CalibrationError` (names the file)."""

    def error(self, message: str) -> Exception:
        return CalibrationError(self._path, None, message)


def load_pickle(path):
    """Unpickle ``path`` with :class:`RestrictedUnpickler`."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, path).load_checked()


def read(path, subject=None):
    """Read one rig from an mmpose ``cameras.pkl`` (Human3.6M or MPI-INF-3DHP); ``subject=`` picks it."""
    data = load_pickle(path)
    if not isinstance(data, dict) or not data:
        raise CalibrationError(path, None, f"expected a dict of cameras, got {type(data).__name__}")
    keys = list(data)
    if all(isinstance(k, tuple) and len(k) == 2 for k in keys):
        return _read_h36m(path, data, subject)
    if all(isinstance(k, str) for k in keys):
        if all("_Cam" in k for k in keys):
            return _read_3dhp_train(path, data, subject)
        if all(k.startswith("TS") for k in keys):
            return _read_3dhp_test(path, data, subject)
    raise CalibrationError(
        path,
        None,
        f"unknown camera pickle layout (keys like {keys[:3]}); expected mmpose's Human3.6M "
        "(subject, camera_id) or MPI-INF-3DHP 'S1_Seq1_Cam0' / 'TS1' keys",
    )


def _cam(path, data, key) -> dict:
    cam = data[key]
    if not isinstance(cam, dict):
        raise CalibrationError(path, str(key), "expected a dict of camera parameters")
    return cam


def _need(path, cam, f, name):
    if name not in cam:
        raise CalibrationError(path, f + name, "missing")
    return cam[name]


def _read_h36m(path, data, subject):
    subjects = sorted({k[0] for k in data}, key=lambda s: (len(s), s))
    key = pick_subject(path, subjects, subject)
    records = []
    for k in data:
        if k[0] != key:
            continue
        cam = _cam(path, data, k)
        f = f"[{k[0]!r}, {k[1]!r}]."
        cam_id = str(cam.get("id", k[1]))
        T_m = as_array(path, f + "T", _need(path, cam, f, "T"), (3,))
        size = image_size(path, f + "w/h", (_need(path, cam, f, "w"), _need(path, cam, f, "h")))
        extra = {"mmpose_name": str(cam.get("name", ""))}
        name = str(cam.get("name", ""))
        if name.startswith("camera") and name[6:].isdigit():
            extra["h36m_index"] = int(name[6:])
        rec = h36m_record(
            path,
            f,
            cam_id,
            _need(path, cam, f, "R"),
            T_m * 1000.0,
            _need(path, cam, f, "f"),
            _need(path, cam, f, "c"),
            _need(path, cam, f, "k"),
            _need(path, cam, f, "p"),
            size,
            extra,
        )
        records.append(rec)
    meta = {"subject": key, "world": "Human3.6M world, Z up, mm"}
    return build_rig(path, records, fmt="mmpose-pkl", distortion_model="h36m", meta=meta)


def _3dhp_subject(subject) -> str:
    if isinstance(subject, tuple | list) and len(subject) == 2:
        return f"{normalise_subject(subject[0])}_{subject[1]}"
    s = str(subject).replace("/", "_")
    if "_" in s:
        head, tail = s.split("_", 1)
        return f"{normalise_subject(head)}_{tail[0].upper() + tail[1:] if tail else tail}"
    return s


def _intrinsics(path, cam, f):
    fx, fy = as_array(path, f + "f", _need(path, cam, f, "f"), (2,))
    cx, cy = as_array(path, f + "c", _need(path, cam, f, "c"), (2,))
    return check_intrinsics(path, f + "f", np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]))


def _read_3dhp_train(path, data, subject):
    groups: dict[str, list[str]] = {}
    for k in data:
        seq, cam = k.rsplit("_Cam", 1)
        groups.setdefault(seq, []).append(k)
    key = pick_subject(path, list(groups), subject, normalise=_3dhp_subject)
    records, fixed = [], False
    for k in groups[key]:
        cam = _cam(path, data, k)
        f = f"[{k!r}]."
        index = int(k.rsplit("_Cam", 1)[1])
        K = _intrinsics(path, cam, f)
        R = check_rotation(path, f + "R", as_array(path, f + "R", _need(path, cam, f, "R"), (3, 3)))
        t = as_array(path, f + "T", _need(path, cam, f, "T"), (3,)) * 1000.0
        w, h = _need(path, cam, f, "w"), _need(path, cam, f, "h")
        if float(w) == 2048 and float(h) == 204:
            h, fixed = 2048, True
        size = image_size(path, f + "w/h", (w, h))
        extra = {"mpi_inf_3dhp_camera_index": index, "mmpose_name": str(cam.get("name", ""))}
        records.append(CameraRecord(f"cam_{index}", K, R, t, np.zeros(5), size, extra))
    meta = {"subject": key, "world": "MPI-INF-3DHP studio world, Y up, mm"}
    if fixed:
        meta["image_size_note"] = "mmpose's pkl stores h = 204 (a converter slip); 2048 x 2048 used"
        logger.info("%s: image height 204 read as 2048 (mmpose converter slip)", path)
    return build_rig(path, records, fmt="mmpose-pkl", meta=meta)


def _read_3dhp_test(path, data, subject):
    key = pick_subject(path, list(data), subject, normalise=lambda s: str(s).upper())
    cam = _cam(path, data, key)
    f = f"[{key!r}]."
    K = _intrinsics(path, cam, f)
    size = image_size(path, f + "w/h", (_need(path, cam, f, "w"), _need(path, cam, f, "h")))
    rec = CameraRecord(
        key, K, np.eye(3), np.zeros(3), np.zeros(5), size, {"mmpose_name": str(cam.get("name", ""))}
    )
    meta = {
        "subject": key,
        "world": "camera frame (MPI-INF-3DHP test cameras have no extrinsics; R = I, t = 0)",
    }
    return build_rig(path, [rec], fmt="mmpose-pkl", meta=meta)
