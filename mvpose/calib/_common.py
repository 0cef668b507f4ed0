"""Shared pieces of the calibration readers and writers: the error type, field checks, rig assembly.

Every reader turns its file into a list of :class:`CameraRecord` (numpy, float64, millimetres,
world-to-camera ``x_cam = R @ X + t``) and calls :func:`build_rig`. Every check names the file and
the field (in the file's own vocabulary, e.g. ``[cam_01].matrix`` or ``K_2``) and says what was
expected, as DESIGN.md asks of errors at a file boundary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mvpose.errors import FileFieldError
from mvpose.geometry.camera import CameraRig

logger = logging.getLogger("mvpose.calib")

#: Largest accepted ``max |R R^T - I|`` for a stored rotation (files round to 6-7 decimals).
ROTATION_TOLERANCE = 1e-4

UNIT_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


class CalibrationError(FileFieldError):
    """A calibration file is missing, malformed or unsupported.

    The message names the file and, where one is at fault, the field, and says what was expected.
    ``path`` and ``field`` are kept as attributes.
    """

    file_label = "calibration file"


@dataclass
class CameraRecord:
    """One camera as read from a file, already in mvpose conventions (mm, world-to-camera)."""

    name: str
    K: np.ndarray  # (3, 3) px
    R: np.ndarray  # (3, 3) world to camera
    t: np.ndarray  # (3,) mm
    dist: np.ndarray  # (5,)
    image_size: tuple[int, int] | None = None  # (w, h)
    extra: dict = field(default_factory=dict)  # per-camera keys kept in meta["cameras"][name]


# ---------------------------------------------------------------------------------------- field checks
def as_array(path, fld: str, value, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape``.

    A vector shape ``(n,)`` also accepts ``(n, 1)`` and ``(1, n)`` (column vectors are common).
    """
    if value is None:
        raise CalibrationError(path, fld, f"missing; expected {_shape_words(shape)}")
    if isinstance(value, str | bytes):
        raise CalibrationError(path, fld, f"expected {_shape_words(shape)}, got the string {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(
            path, fld, f"expected {_shape_words(shape)} of numbers, got {value!r}"
        ) from None
    if len(shape) == 1 and arr.ndim == 2 and 1 in arr.shape and arr.size == shape[0]:
        arr = arr.reshape(shape)
    if arr.shape != shape:
        raise CalibrationError(path, fld, f"expected {_shape_words(shape)}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise CalibrationError(path, fld, f"expected finite numbers, got {arr.tolist()}")
    return arr


def _shape_words(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"a list of {shape[0]} numbers"
    return "a " + "x".join(str(s) for s in shape) + " matrix"


def check_intrinsics(path, fld: str, K: np.ndarray) -> np.ndarray:
    """K must be upper triangular with bottom row (0, 0, 1) and positive focal lengths."""
    if abs(K[2, 0]) > 1e-9 or abs(K[2, 1]) > 1e-9 or abs(K[2, 2] - 1.0) > 1e-9 or abs(K[1, 0]) > 1e-9:
        raise CalibrationError(
            path, fld, f"expected an intrinsic matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}"
        )
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(path, fld, f"expected positive focal lengths fx, fy, got {K[0, 0]}, {K[1, 1]}")
    return K


def check_rotation(path, fld: str, R: np.ndarray, tol: float = ROTATION_TOLERANCE) -> np.ndarray:
    """R must be a proper rotation to ``tol`` (kept as stored: rounding is not corrected)."""
    err = float(np.abs(R @ R.T - np.eye(3)).max())
    if err > tol:
        raise CalibrationError(
            path, fld, f"expected a rotation matrix (orthonormal to {tol:g}), got max |R R^T - I| = {err:.3g}"
        )
    if np.linalg.det(R) <= 0:
        raise CalibrationError(path, fld, "expected a rotation matrix (det +1), got a reflection (det -1)")
    return R


def rodrigues(path, fld: str, value) -> np.ndarray:
    """Rodrigues vector (radians) to a rotation matrix, as ``cv2.Rodrigues`` does."""
    from mvpose.geometry.rotations import axis_angle_to_matrix

    rvec = as_array(path, fld, value, (3,))
    return axis_angle_to_matrix(torch.from_numpy(rvec)).numpy()


def to_rodrigues(R: np.ndarray) -> np.ndarray:
    """Rotation ``(3, 3)`` to a Rodrigues vector ``(3,)`` (radians, angle in [0, pi])."""
    from mvpose.geometry.rotations import matrix_to_axis_angle, nearest_rotation

    Rt = torch.from_numpy(np.ascontiguousarray(R, dtype=np.float64))
    if float((Rt @ Rt.T - torch.eye(3, dtype=Rt.dtype)).abs().max()) > 1e-12:
        Rt = nearest_rotation(Rt)  # rounded matrices: write the closest rotation
    return matrix_to_axis_angle(Rt).numpy()


def dist_vector(path, fld: str, value, *, allow_none: bool = True) -> np.ndarray:
    """Distortion coefficients as 5 numbers (4 are padded with k3 = 0; trailing zeros beyond 5 dropped)."""
    if value is None and allow_none:
        return np.zeros(5)
    if value is None or isinstance(value, str | bytes):
        raise CalibrationError(path, fld, f"expected 4 or 5 distortion coefficients, got {value!r}")
    try:
        d = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise CalibrationError(path, fld, f"expected 4 or 5 distortion coefficients, got {value!r}") from None
    if not np.isfinite(d).all():
        raise CalibrationError(path, fld, f"expected finite numbers, got {d.tolist()}")
    if d.size in (0, 4, 5):
        return np.concatenate([d, np.zeros(5 - d.size)])
    if d.size > 5 and not d[5:].any():
        return d[:5].copy()
    raise CalibrationError(
        path,
        fld,
        f"expected 4 or 5 coefficients [k1, k2, p1, p2(, k3)] (OpenCV's 5-coefficient model), got {d.size}"
        + (" with non-zero rational/thin-prism terms, which mvpose does not model" if d.size > 5 else ""),
    )


def image_size(path, fld: str, value) -> tuple[int, int]:
    """``(width, height)`` as two positive integers (integral floats accepted)."""
    if value is None or isinstance(value, str | bytes):
        raise CalibrationError(path, fld, f"expected [width, height] in pixels, got {value!r}")
    try:
        s = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise CalibrationError(path, fld, f"expected [width, height] in pixels, got {value!r}") from None
    if s.size != 2 or not np.isfinite(s).all() or (s <= 0).any() or (np.abs(s - np.round(s)) > 1e-6).any():
        raise CalibrationError(path, fld, f"expected [width, height] as two positive integers, got {value!r}")
    return int(round(s[0])), int(round(s[1]))


def number(path, fld: str, value) -> float:
    if isinstance(value, bool) or value is None:
        raise CalibrationError(path, fld, f"expected a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(path, fld, f"expected a number, got {value!r}") from None
    if not math.isfinite(v):
        raise CalibrationError(path, fld, f"expected a finite number, got {value!r}")
    return v


def unit_scale(path, fld: str, unit: str) -> float:
    """Millimetres per file unit for ``"m"``, ``"cm"`` or ``"mm"``."""
    try:
        return UNIT_TO_MM[unit]
    except (KeyError, TypeError):
        raise CalibrationError(
            path, fld, f"expected a length unit in {sorted(UNIT_TO_MM)}, got {unit!r}"
        ) from None


def infer_image_size(K: np.ndarray) -> tuple[int, int]:
    """Image size guessed from the principal point: ``(round(2 cx), round(2 cy))``."""
    return int(round(2 * K[0, 2])), int(round(2 * K[1, 2]))


# ---------------------------------------------------------------------------------------- rigs
def build_rig(path, cams: Sequence[CameraRecord], *, fmt: str, distortion_model: str = "opencv", meta=None):
    """Stack checked camera records into a float64 :class:`CameraRig`.

    ``meta`` gets ``file`` (the path read), ``format`` and ``cameras`` (per-camera extras by name).
    """
    if not cams:
        raise CalibrationError(path, None, "no cameras found; expected at least one")
    names = [c.name for c in cams]
    seen = set()
    for n in names:
        if n in seen:
            raise CalibrationError(path, "name", f"camera names must be unique, {n!r} appears twice")
        seen.add(n)
    sizes = [c.image_size for c in cams]
    if any(s is None for s in sizes) and not all(s is None for s in sizes):
        missing = [c.name for c in cams if c.image_size is None]
        raise CalibrationError(path, "image_size", f"missing for cameras {missing} while others have one")
    meta = dict(meta or {})
    meta.setdefault("file", str(path))
    meta.setdefault("format", fmt)
    extras = {c.name: dict(c.extra) for c in cams if c.extra}
    if extras:
        meta["cameras"] = extras
    return CameraRig(
        K=torch.from_numpy(np.stack([c.K for c in cams])),
        R=torch.from_numpy(np.stack([c.R for c in cams])),
        t=torch.from_numpy(np.stack([c.t for c in cams])),
        dist=torch.from_numpy(np.stack([c.dist for c in cams])),
        names=tuple(names),
        image_size=None if sizes[0] is None else torch.tensor(sizes, dtype=torch.int64),
        distortion_model=distortion_model,
        meta=meta,
    )


def rig_arrays(rig: CameraRig, path) -> dict:
    """The rig's fields as float64 numpy arrays for a writer (plain rigs only)."""
    if not isinstance(rig, CameraRig):
        raise CalibrationError(path, None, f"expected a CameraRig to write, got {type(rig).__name__}")
    if len(rig.batch_shape):
        raise CalibrationError(
            path,
            None,
            f"cannot write a batched rig (batch shape {tuple(rig.batch_shape)}); write one rig at a time",
        )
    r = rig.to(device="cpu", dtype=torch.float64)
    return {
        "K": r.K.numpy(),
        "R": r.R.numpy(),
        "t": r.t.numpy(),
        "dist": r.dist.numpy(),
        "names": list(r.names),
        "image_size": None if r.image_size is None else r.image_size.numpy().astype(int),
        "distortion_model": r.distortion_model,
        "extras": dict(r.meta.get("cameras", {})) if isinstance(r.meta.get("cameras"), Mapping) else {},
    }


def opencv_dist_for_writing(rig: CameraRig, path, fmt: str, allow_approximate: bool) -> np.ndarray:
    """OpenCV coefficients of ``rig``; an ``h36m`` rig is refused unless ``allow_approximate``."""
    d = rig.dist.detach().cpu().to(torch.float64).numpy()
    if rig.distortion_model == "opencv":
        return d
    if rig.distortion_model == "h36m":
        if not allow_approximate:
            raise CalibrationError(
                path,
                "distortion_model",
                f"the rig uses Human3.6M's distortion model, which {fmt} cannot store (it knows only "
                "OpenCV's); save to mvpose JSON to keep it exactly, or pass allow_approximate=True to write "
                "OpenCV P1 = p[0], P2 = p[1] (about 0.1-0.3 px off near the image border)",
            )
        logger.warning(
            "%s: writing Human3.6M distortion as OpenCV [k1, k2, P1=p[0], P2=p[1], k3]; the tangential terms "
            "are approximate (no exact OpenCV equivalent)",
            path,
        )
        return d
    raise CalibrationError(
        path, "distortion_model", f"cannot write distortion model {rig.distortion_model!r}"
    )


def normalise_subject(subject) -> str:
    """``1``, ``"1"``, ``"S1"``, ``"s1"``, ``"subject1"`` -> ``"S1"``; other strings are returned as given."""
    if isinstance(subject, bool):
        raise TypeError(f"subject must be a string or an integer, got {subject!r}")
    if isinstance(subject, int | np.integer):
        return f"S{int(subject)}"
    s = str(subject).strip()
    low = s.lower()
    for prefix in ("subject", "s"):
        if low.startswith(prefix) and low[len(prefix) :].isdigit():
            return f"S{int(low[len(prefix) :])}"
    if s.isdigit():
        return f"S{int(s)}"
    return s


def pick_subject(path, available: Sequence[str], subject, normalise=normalise_subject) -> str:
    """The rig key for ``subject`` among ``available``; a clear error when absent or not given."""
    avail = list(available)
    if subject is None:
        if len(avail) == 1:
            return avail[0]
        raise CalibrationError(
            path, "subject", f"the file holds {len(avail)} rigs; pass subject= one of {avail}"
        )
    key = normalise(subject)
    if key in avail:
        return key
    if str(subject) in avail:
        return str(subject)
    raise CalibrationError(path, "subject", f"no rig for subject {subject!r}; the file holds {avail}")


def refuse_subject(path, subject) -> None:
    if subject is not None:
        raise CalibrationError(
            path, "subject", f"the file holds a single rig; subject={subject!r} does not apply"
        )


def as_path(path) -> Path:
    return Path(path).expanduser()
