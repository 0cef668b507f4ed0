"""Human3.6M ``cameras.h5`` in 3d-pose-baseline's layout, read only.

``/subject<S>/camera<1..4>/{R, T, f, c, k, p, Name}`` (h5py row-major):

* ``R`` (3x3) is stored CAMERA-TO-WORLD (its columns are the camera axes in world coordinates),
  so ``R_w2c = R.T``; ``T`` (3x1) is the camera centre in world mm, so ``t = -R_w2c @ T``.
* ``f``, ``c`` focal lengths and principal point (px); ``k`` = (k1, k2, k3) radial, ``p`` = the
  tangential pair (p[0], p[1]) in Human3.6M's stored order.
* ``Name``: the camera id (54138969, 55011271, 58860488, 60457274) as ASCII codes.

The rig uses ``distortion_model="h36m"`` with ``dist = [k1, k2, p[0], p[1], k3]`` (Human3.6M's own
tangential formula, see :mod:`mvpose.geometry.distortion`). Image sizes are not in the file:
1000 x 1002 (w x h) for 54138969 and 60457274, 1000 x 1000 for the other two. The file holds one
rig per subject: pass ``subject="S1"`` (or ``1``). World: mm, Z up.
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
    pick_subject,
)

#: (width, height) of each Human3.6M camera's video, by camera id.
IMAGE_SIZES = {
    "54138969": (1000, 1002),
    "55011271": (1000, 1000),
    "58860488": (1000, 1000),
    "60457274": (1000, 1002),
}


def image_size_for(camera_id: str) -> tuple[int, int]:
    return IMAGE_SIZES.get(str(camera_id), (1000, 1000))


def h36m_record(path, f: str, name: str, R_c2w, centre_mm, fxy, cxy, k, p, size, extra) -> CameraRecord:
    """A camera from Human3.6M's stored parameters (camera-to-world R, centre in mm)."""
    Rc = as_array(path, f"{f}R", R_c2w, (3, 3))
    R = check_rotation(path, f"{f}R", Rc.T.copy())
    C = as_array(path, f"{f}T", centre_mm, (3,))
    fx, fy = as_array(path, f"{f}f", fxy, (2,))
    cx, cy = as_array(path, f"{f}c", cxy, (2,))
    K = check_intrinsics(path, f"{f}f", np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]))
    kk = as_array(path, f"{f}k", k, (3,))
    pp = as_array(path, f"{f}p", p, (2,))
    dist = np.array([kk[0], kk[1], pp[0], pp[1], kk[2]])
    extra = dict(extra)
    extra["camera_center_world_mm"] = C.tolist()
    return CameraRecord(name, K, R, -R @ C, dist, size, extra)


def read(path, subject=None):
    """Read one subject's 4 cameras from a Human3.6M ``cameras.h5`` (``subject="S1"`` or ``1``)."""
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise CalibrationError(path, None, f"not a readable HDF5 file ({e})") from None
    with h5:
        groups = {}
        for key in h5.keys():
            if key.startswith("subject") and key[len("subject") :].isdigit():
                groups[f"S{int(key[len('subject') :])}"] = key
        if not groups:
            raise CalibrationError(
                path, "subject<N>", "no subject groups; expected 3d-pose-baseline's cameras.h5 layout"
            )
        available = sorted(groups, key=lambda s: int(s[1:]))
        key = pick_subject(path, available, subject)
        grp = h5[groups[key]]
        cam_keys = sorted((c for c in grp.keys() if c.startswith("camera")), key=lambda c: int(c[6:] or 0))
        if not cam_keys:
            raise CalibrationError(path, f"{groups[key]}/camera<N>", "no camera groups")
        records = []
        for ck in cam_keys:
            f = f"{groups[key]}/{ck}/"
            cam = grp[ck]

            def get(name, cam=cam, f=f):
                if name not in cam:
                    raise CalibrationError(path, f + name, "missing dataset")
                return cam[name][()]

            name = _decode_name(path, f + "Name", get("Name"))
            rec = h36m_record(
                path,
                f,
                name,
                get("R"),
                get("T"),
                get("f"),
                get("c"),
                get("k"),
                get("p"),
                image_size_for(name),
                {"h36m_index": int(ck[6:])},
            )
            records.append(rec)
    meta = {"subject": key, "world": "Human3.6M world, Z up, mm"}
    return build_rig(path, records, fmt="h36m-h5", distortion_model="h36m", meta=meta)


def _decode_name(path, fld: str, value) -> str:
    try:
        codes = np.asarray(value).reshape(-1)
        if codes.dtype.kind in "SU":
            text = "".join(c.decode() if isinstance(c, bytes) else str(c) for c in codes)
        else:
            text = "".join(chr(int(round(float(c)))) for c in codes if int(round(float(c))) != 0)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise CalibrationError(path, fld, "expected the camera id as ASCII codes") from None
    text = text.strip()
    if not text:
        raise CalibrationError(path, fld, "empty camera id")
    return text
