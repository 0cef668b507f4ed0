"""VideoPose3D's npz layouts, read through a restricted unpickler, and written back.

Layouts (as VideoPose3D's ``prepare_data_*.py`` scripts write them with ``np.savez_compressed``):

``data_3d_<dataset>.npz``
    ``positions_3d``: ``{subject: {action: (T, 32, 3)}}`` world positions in **metres** (Human3.6M's
    32 mocap joints). Read as ``(T, 17, 3)`` **mm** in :data:`~mvpose.skeleton.H36M17` order: the
    joints :data:`H36M32_KEPT_JOINTS` VideoPose3D keeps. Arrays with 17 joints are taken as already
    reduced.
``data_2d_<dataset>_<detector>.npz``
    ``positions_2d``: ``{subject: {action: [(T, J, 2) per camera]}}`` in **pixels** of each camera's
    full frame; ``metadata``: ``{"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry":
    [left joints, right joints]}``. VideoPose3D's ``run.py`` reads only ``keypoints_symmetry`` (its
    custom-video files add ``video_metadata``). mvpose adds two optional entries that VideoPose3D
    ignores: ``metadata["mvpose"]`` (cameras per subject: ``names``, ``K``, ``R``, ``t`` (mm),
    ``dist``, ``image_size``, ``distortion_model``; ``fps``; the noise configuration of an export)
    and a top-level key ``confidence_2d`` (same nesting as ``positions_2d``, ``(T, J)`` per camera).

Why a restricted loader. Both layouts hold dicts of arrays, which ``np.savez`` stores as 0-d object
arrays, i.e. pickles; ``np.load(..., allow_pickle=True)`` would run any code a malicious file
carries. :func:`load_npz` never calls it: it opens the archive with ``allow_pickle=False``, reads
plain arrays as numpy does, and unpickles object arrays with :class:`RestrictedUnpickler`, which
resolves only numpy's array/dtype/scalar reconstruction globals and harmless containers (``set``,
``frozenset``, ``collections.OrderedDict``, ``slice``, ``complex``); plain ``dict``/``list``/
``tuple``/``str``/numbers need no globals. Anything else (``os.system``, ``builtins.eval``,
``subprocess.Popen``...) raises :class:`SequenceFileError` naming the file, the key and the global,
before anything is called.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvpose.errors import FileFieldError
from mvpose.safe_pickle import SafeUnpickler
from mvpose.skeleton import H36M17

__all__ = [
    "SequenceFileError",
    "RestrictedUnpickler",
    "H36M32_PARENTS",
    "H36M32_KEPT_JOINTS",
    "H36M32_PLACEHOLDER_SOURCE",
    "VP3D_H36M_METADATA",
    "load_npz",
    "save_npz",
    "read_positions_3d",
    "write_positions_3d",
    "read_positions_2d",
    "write_positions_2d",
    "h36m32_to_17",
    "h36m17_to_32",
]

#: Parents of Human3.6M's 32 mocap joints (the tree VideoPose3D's ``h36m_skeleton`` holds).
H36M32_PARENTS: tuple[int, ...] = (
    -1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14,
    12, 16, 17, 18, 19, 20, 19, 22, 12, 24, 25, 26, 27, 28, 27, 30,
)  # fmt: skip

#: The 17 of the 32 joints VideoPose3D keeps (it removes 4, 5, 9, 10, 11, 16, 20-24 and 28-31:
#: toes, the duplicated hip, duplicated thorax/clavicle sites and the hand/thumb sites), in
#: :data:`~mvpose.skeleton.H36M17` order: pelvis 0, right hip/knee/ankle 1-3, left hip/knee/ankle
#: 6-8, spine 12, thorax 13, neck/nose 14, head 15, left shoulder/elbow/wrist 17-19, right
#: shoulder/elbow/wrist 25-27.
H36M32_KEPT_JOINTS: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)


def _placeholder_sources() -> tuple[int, ...]:
    kept = {j: k for k, j in enumerate(H36M32_KEPT_JOINTS)}
    out = []
    for j in range(len(H36M32_PARENTS)):
        a = j
        while a not in kept:
            a = H36M32_PARENTS[a]
        out.append(kept[a])
    return tuple(out)


#: For each of the 32 joints, the :data:`~mvpose.skeleton.H36M17` joint written there by
#: :func:`h36m17_to_32`: itself for a kept joint, else its nearest kept ancestor (toes -> ankle,
#: hand sites -> wrist, duplicated hip -> pelvis, clavicle sites -> spine). Placeholders only, so
#: that VideoPose3D's own loader (which drops those joints) reads the file.
H36M32_PLACEHOLDER_SOURCE: tuple[int, ...] = _placeholder_sources()

#: VideoPose3D's metadata for Human3.6M 17-joint keypoints.
VP3D_H36M_METADATA: dict[str, Any] = {
    "layout_name": "h36m",
    "num_joints": 17,
    "keypoints_symmetry": [list(H36M17.left_indices), list(H36M17.right_indices)],
}

_LAYOUT_3D = "positions_3d = {subject: {action: (T, 32 or 17, 3) world metres}}"
_LAYOUT_2D = "positions_2d = {subject: {action: [(T, J, 2) pixels per camera]}}"


class SequenceFileError(FileFieldError):
    """A sequence file (VideoPose3D npz) is malformed, unsafe or not of the expected layout.

    The message names the file and, where one is at fault, the key, and says what was expected;
    ``path`` and ``key`` are kept as attributes.
    """

    file_label = "sequence file"
    field_label = "key"

    @property
    def key(self) -> str | None:
        """The npz key at fault (the ``field``)."""
        return self.field


# --------------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------------


class RestrictedUnpickler(SafeUnpickler):
    """:class:`mvpose.safe_pickle.SafeUnpickler` raising :class:`SequenceFileError`.

    Args:
        file: a binary file object positioned at the pickle.
        path, key: the file and npz key being read (for error messages).

    A forbidden global raises :class:`SequenceFileError` naming the file, the key and the global; it
    is never imported.
    """

    def __init__(self, file, path=None, key: str | None = None):
        super().__init__(file, path)
        self._key = key

    def error(self, message: str) -> Exception:
        return SequenceFileError(self._path, self._key, message)


def _read_member(zf: zipfile.ZipFile, member: str, path, key: str):
    with zf.open(member) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:  # (2, 0) and (3, 0) share the 4-byte header length; headers of these files are ASCII
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        if not dtype.hasobject:
            fp.seek(0)
            return np.lib.format.read_array(fp, allow_pickle=False)
        arr = RestrictedUnpickler(fp, path, key).load()
    if not isinstance(arr, np.ndarray):
        raise SequenceFileError(path, key, f"expected a pickled numpy array, got {type(arr).__name__}")
    return arr


def load_npz(path, required: Sequence[str] = (), layout: str | None = None) -> dict[str, Any]:
    """Read every array of an ``.npz`` file, unpickling object arrays with :class:`RestrictedUnpickler`.

    A 0-d object array (how ``np.savez`` stores a dict) is returned as its content (``arr.item()``).

    Args:
        path: the ``.npz`` file.
        required: keys that must be present.
        layout: a description of the expected layout, quoted when a required key is missing.

    Returns:
        ``{key: array or object}``.

    Raises:
        FileNotFoundError: naming the file, if it does not exist.
        SequenceFileError: not an npz archive, a required key missing (naming it and the layout), or a
            forbidden pickle (naming the global).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sequence file '{path}' does not exist")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise SequenceFileError(
            path, None, f"not an .npz archive ({e}); expected a file written by numpy.savez"
        ) from None
    out: dict[str, Any] = {}
    with zf:
        members = [m for m in zf.namelist() if m.endswith(".npy")]
        for m in members:
            key = m[: -len(".npy")]
            try:
                arr = _read_member(zf, m, path, key)
            except SequenceFileError:
                raise
            except (
                pickle.UnpicklingError,
                EOFError,
                ValueError,
                TypeError,
                AttributeError,
                IndexError,
                KeyError,
                OSError,
                zipfile.BadZipFile,
            ) as e:
                raise SequenceFileError(path, key, f"unreadable array ({type(e).__name__}: {e})") from None
            if arr.dtype.hasobject and arr.ndim == 0:
                arr = arr.item()
            out[key] = arr
    missing = [k for k in required if k not in out]
    if missing:
        what = f" ({layout})" if layout else ""
        raise SequenceFileError(
            path,
            missing[0],
            f"missing; expected key(s) {list(required)}{what}; the file holds {sorted(out)}",
        )
    return out


def save_npz(path, compressed: bool = True, **arrays) -> Path:
    """Write ``arrays`` to ``path`` atomically (temporary file, then rename), as ``np.savez_compressed``.

    Dict and list values are stored as object arrays (pickles), as VideoPose3D does. The path is used as
    given (no ``.npz`` is appended). Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------------------------------
# Joint sets
# --------------------------------------------------------------------------------------------------


def h36m32_to_17(positions: np.ndarray) -> np.ndarray:
    """Keep VideoPose3D's 17 joints of ``(..., 32, C)`` Human3.6M positions: ``(..., 17, C)``."""
    return np.asarray(positions)[..., H36M32_KEPT_JOINTS, :]


def h36m17_to_32(positions: np.ndarray) -> np.ndarray:
    """Expand ``(..., 17, C)`` to Human3.6M's 32 joints; dropped joints get placeholders.

    The 17 joints go to :data:`H36M32_KEPT_JOINTS`; each other joint copies its nearest kept ancestor
    (:data:`H36M32_PLACEHOLDER_SOURCE`). ``h36m32_to_17(h36m17_to_32(x))`` is ``x`` exactly.
    """
    return np.asarray(positions)[..., H36M32_PLACEHOLDER_SOURCE, :]


# --------------------------------------------------------------------------------------------------
# 3D
# --------------------------------------------------------------------------------------------------


def _as_mapping(path, key: str, obj, what: str) -> Mapping:
    if not isinstance(obj, Mapping):
        raise SequenceFileError(path, key, f"expected a dict ({what}), got {type(obj).__name__}")
    return obj


def read_positions_3d(path, *, reduce_to_17: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Read ``positions_3d`` of a VideoPose3D ``data_3d_*.npz``.

    Args:
        path: the file.
        reduce_to_17: keep VideoPose3D's 17 joints of 32-joint arrays (:data:`H36M32_KEPT_JOINTS`).

    Returns:
        ``{subject: {action: (T, J, 3)}}`` float64 world positions in **mm** (metres x 1000),
        ``J = 17`` (or 32 with ``reduce_to_17=False``, or whatever the file holds if not 32).

    Raises:
        FileNotFoundError, SequenceFileError: naming the file and the key (``positions_3d`` or
            ``positions_3d[subject][action]``).
    """
    data = load_npz(path, required=("positions_3d",), layout=_LAYOUT_3D)
    pos = _as_mapping(path, "positions_3d", data["positions_3d"], _LAYOUT_3D)
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject, actions in pos.items():
        actions = _as_mapping(path, f"positions_3d[{subject!r}]", actions, "{action: (T, J, 3) metres}")
        out[str(subject)] = {}
        for action, arr in actions.items():
            key = f"positions_3d[{subject!r}][{action!r}]"
            arr = np.asarray(arr)
            if arr.ndim != 3 or arr.shape[-1] != 3 or not np.issubdtype(arr.dtype, np.number):
                raise SequenceFileError(
                    path, key, f"expected a numeric (T, J, 3) array in metres, got {arr.dtype} {arr.shape}"
                )
            if reduce_to_17 and arr.shape[1] == 32:
                arr = h36m32_to_17(arr)
            out[str(subject)][str(action)] = arr.astype(np.float64) * 1000.0
    return out


def write_positions_3d(
    path, positions_mm: Mapping[str, Mapping[str, np.ndarray]], *, joints32: bool = True
) -> Path:
    """Write ``{subject: {action: (T, J, 3) mm}}`` world positions as VideoPose3D's ``positions_3d``.

    Args:
        path: the ``.npz`` to write (atomically).
        positions_mm: world positions in mm; stored in metres (``/ 1000``), float64.
        joints32: expand 17-joint arrays to Human3.6M's 32 joints (:func:`h36m17_to_32`), so
            VideoPose3D's ``Human36mDataset`` (which drops 15 of 32) can read the file. ``False``
            writes the arrays as given.

    Returns:
        the path.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject, actions in positions_mm.items():
        out[str(subject)] = {}
        for action, arr in actions.items():
            arr = np.asarray(arr, dtype=np.float64)
            if arr.ndim != 3 or arr.shape[-1] != 3:
                raise ValueError(
                    f"positions_3d[{subject!r}][{action!r}]: expected (T, J, 3), got {arr.shape}"
                )
            if joints32 and arr.shape[1] == 17:
                arr = h36m17_to_32(arr)
            out[str(subject)][str(action)] = arr / 1000.0
    return save_npz(path, positions_3d=out)


# --------------------------------------------------------------------------------------------------
# 2D
# --------------------------------------------------------------------------------------------------


def read_positions_2d(
    path,
) -> tuple[
    dict[str, dict[str, list[np.ndarray]]], dict[str, Any], dict[str, dict[str, list[np.ndarray]]] | None
]:
    """Read a VideoPose3D ``data_2d_*.npz``.

    Returns:
        ``(positions, metadata, confidence)``: ``positions[subject][action]`` is a list (one per camera)
        of ``(T, J, 2)`` float64 pixel arrays (NaN = missing); ``metadata`` the file's metadata dict
        (``{}`` if absent); ``confidence`` the same nesting with ``(T, J)`` scores, from the mvpose key
        ``confidence_2d`` or from a third channel ``(T, J, 3)`` of the positions, else ``None``.

    Raises:
        FileNotFoundError, SequenceFileError: naming the file and the key.
    """
    data = load_npz(path, required=("positions_2d",), layout=_LAYOUT_2D)
    pos = _as_mapping(path, "positions_2d", data["positions_2d"], _LAYOUT_2D)
    meta = data.get("metadata", {})
    if isinstance(meta, np.ndarray) and meta.dtype.hasobject and meta.size == 1:
        meta = meta.item()
    meta = dict(_as_mapping(path, "metadata", meta, "layout_name, num_joints, keypoints_symmetry"))
    conf_in = data.get("confidence_2d")
    if conf_in is not None:
        conf_in = _as_mapping(path, "confidence_2d", conf_in, "{subject: {action: [(T, J) per camera]}}")
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    conf: dict[str, dict[str, list[np.ndarray]]] = {}
    any_conf = False
    for subject, actions in pos.items():
        actions = _as_mapping(path, f"positions_2d[{subject!r}]", actions, "{action: [(T, J, 2) per camera]}")
        s = str(subject)
        out[s], conf[s] = {}, {}
        for action, cams in actions.items():
            key = f"positions_2d[{subject!r}][{action!r}]"
            if isinstance(cams, np.ndarray) and cams.dtype.hasobject:
                cams = list(cams)
            if not isinstance(cams, (list, tuple)):
                raise SequenceFileError(
                    path,
                    key,
                    f"expected a list of (T, J, 2) arrays, one per camera, got {type(cams).__name__}",
                )
            arrs, confs = [], []
            for v, a in enumerate(cams):
                a = np.asarray(a)
                if a.ndim != 3 or a.shape[-1] not in (2, 3) or not np.issubdtype(a.dtype, np.number):
                    raise SequenceFileError(
                        path,
                        f"{key}[{v}]",
                        f"expected a numeric (T, J, 2) pixel array, got {a.dtype} {a.shape}",
                    )
                arrs.append(a[..., :2].astype(np.float64))
                c = None
                if a.shape[-1] == 3:
                    c = a[..., 2].astype(np.float64)
                if conf_in is not None:
                    try:
                        c = np.asarray(conf_in[subject][action][v], dtype=np.float64)
                    except (KeyError, IndexError, TypeError):
                        raise SequenceFileError(
                            path, f"confidence_2d[{subject!r}][{action!r}][{v}]", "missing"
                        ) from None
                    if c.shape != a.shape[:2]:
                        raise SequenceFileError(
                            path,
                            f"confidence_2d[{subject!r}][{action!r}][{v}]",
                            f"expected shape {a.shape[:2]}, got {c.shape}",
                        )
                any_conf |= c is not None
                confs.append(c if c is not None else np.ones(a.shape[:2]))
            out[s][str(action)] = arrs
            conf[s][str(action)] = confs
    return out, meta, (conf if any_conf else None)


def write_positions_2d(
    path,
    positions_px: Mapping[str, Mapping[str, Sequence[np.ndarray]]],
    metadata: Mapping[str, Any] | None = None,
    *,
    confidence: Mapping[str, Mapping[str, Sequence[np.ndarray]]] | None = None,
    dtype=np.float64,
) -> Path:
    """Write ``{subject: {action: [(T, J, 2) px per camera]}}`` as VideoPose3D's ``positions_2d``.

    Args:
        path: the ``.npz`` to write (atomically).
        positions_px: pixel coordinates; NaN marks a missing joint.
        metadata: VideoPose3D's metadata dict; default :data:`VP3D_H36M_METADATA` (``num_joints`` is
            set from the arrays when missing).
        confidence: optional ``(T, J)`` scores in the same nesting, stored under ``confidence_2d``.
        dtype: storage type. VideoPose3D's own files hold float32 (and ``run.py`` computes in
            float32); the default float64 keeps exported projections exact to ~1e-12 px.
    """
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    num_joints = None
    for subject, actions in positions_px.items():
        out[str(subject)] = {}
        for action, cams in actions.items():
            arrs = []
            for v, a in enumerate(cams):
                a = np.asarray(a, dtype=dtype)
                if a.ndim != 3 or a.shape[-1] != 2:
                    raise ValueError(
                        f"positions_2d[{subject!r}][{action!r}][{v}]: expected (T, J, 2), got {a.shape}"
                    )
                num_joints = a.shape[1]
                arrs.append(a)
            out[str(subject)][str(action)] = arrs
    meta = dict(VP3D_H36M_METADATA if metadata is None else metadata)
    if "num_joints" not in meta and num_joints is not None:
        meta["num_joints"] = num_joints
    arrays: dict[str, Any] = {"positions_2d": out, "metadata": meta}
    if confidence is not None:
        arrays["confidence_2d"] = {
            str(s): {str(a): [np.asarray(c, dtype=np.float32) for c in cs] for a, cs in acts.items()}
            for s, acts in confidence.items()
        }
    return save_npz(path, **arrays)
