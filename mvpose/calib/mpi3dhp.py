"""MPI-INF-3DHP ``camera.calibration`` text file ("Skeletool Camera Calibration File V1.0"), read only.

Layout: a header line, then one block per camera, each line ``key values...``::

    Skeletool Camera Calibration File V1.0
    name          0
      sensor      10 10
      size        2048 2048
      animated    0
      intrinsic   fx 0 cx 0  0 fy cy 0  0 0 1 0  0 0 0 1      (4x4, row-major, px)
      extrinsic   r11 r12 r13 tx  ...  0 0 0 1                 (4x4 world-to-camera, t in mm)
      radial      0
    name          1
      ...

``K`` is the top-left 3x3 of ``intrinsic``; ``R``, ``t`` come from ``extrinsic`` (mm, no unit
change). ``size`` is ``width height``. ``radial 0`` means no distortion; any other radial line is
refused (its meaning is not documented). Cameras are named ``cam_<name>`` (``cam_0`` ...), as in
our reading of mmpose's 3DHP pickle. World: mm, Y up.
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
    number,
    refuse_subject,
)

HEADER = "Skeletool Camera Calibration File"
_REQUIRED = ("size", "intrinsic", "extrinsic")


def read(path, subject=None):
    """Read an MPI-INF-3DHP ``camera.calibration``; all cameras, in file order."""
    refuse_subject(path, subject)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise CalibrationError(
            path, None, "not a text file; expected a Skeletool camera calibration"
        ) from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines or not lines[0].strip().startswith(HEADER):
        raise CalibrationError(path, "header", f"expected the first line '{HEADER} V1.0'")
    blocks: list[tuple[int, dict]] = []
    for lineno, ln in enumerate(lines[1:], start=2):
        key, *vals = ln.split()
        if key == "name":
            if len(vals) != 1:
                raise CalibrationError(path, f"line {lineno}: name", "expected one camera name")
            blocks.append((lineno, {"name": vals[0]}))
            continue
        if not blocks:
            raise CalibrationError(
                path, f"line {lineno}: {key}", "expected a 'name' line to start a camera block"
            )
        blocks[-1][1][key] = vals
    if not blocks:
        raise CalibrationError(path, "name", "no camera blocks found")
    records = []
    for lineno, b in blocks:
        name = b["name"]
        f = f"camera {name}."
        for k in _REQUIRED:
            if k not in b:
                raise CalibrationError(path, f + k, f"missing in the block starting at line {lineno}")
        nums = {k: [number(path, f + k, v) for v in b[k]] for k in ("size", "intrinsic", "extrinsic")}
        size = image_size(path, f + "size", nums["size"])
        intr = as_array(path, f + "intrinsic", nums["intrinsic"], (16,)).reshape(4, 4)
        extr = as_array(path, f + "extrinsic", nums["extrinsic"], (16,)).reshape(4, 4)
        K = check_intrinsics(path, f + "intrinsic", intr[:3, :3].copy())
        R = check_rotation(path, f + "extrinsic", extr[:3, :3].copy())
        t = extr[:3, 3].copy()
        radial = [number(path, f + "radial", v) for v in b.get("radial", ["0"])]
        if any(radial):
            raise CalibrationError(
                path,
                f + "radial",
                f"expected 'radial 0' (no distortion); other values are not supported, got {radial}",
            )
        extra = {"mpi_inf_3dhp_camera_index": int(name) if name.isdigit() else name}
        for k in ("sensor", "animated"):
            if k in b:
                extra[k] = " ".join(b[k])
        cam_name = f"cam_{name}"
        records.append(CameraRecord(cam_name, K, R, t, np.zeros(5), size, extra))
    return build_rig(path, records, fmt="3dhp", meta={"world": "MPI-INF-3DHP studio world, Y up, mm"})


def looks_like(head: bytes) -> bool:
    return head.lstrip().startswith(HEADER.encode())
