"""Human3.6M, multi-view, in learnable-triangulation's preprocessed layout.

Layout (what LT's ``mvn/datasets/human36m_preprocessing`` scripts produce; data/README.md says how
to build it)::

    <root>/processed/<subject>/<action>/imageSequence-undistorted/<camera>/img_%06d.jpg
    <root>/extra/human36m-multiview-labels-GTbboxes.npy

Frame files are numbered from 1: the labels' ``frame_idx`` is the 0-based index of the frame in the
original 50 fps video and its image is ``img_{frame_idx + 1:06d}.jpg`` (LT's ``human36m.py`` opens
``'img_%06d.jpg' % (frame_idx + 1)``; its labels script sets ``frame_idx = int(name[4:-4]) - 1``).
The h36m-fetch version LT used kept every 5th video frame (img_000001, img_000006, ...).

The labels file is ``np.save`` of a dict (LT's ``generate-labels-npy-multiview.py``):

==================  =====================================================================
``subject_names``   list of str, ``['S1', 'S5', 'S6', 'S7', 'S8', 'S9', 'S11']``
``camera_names``    list of str, ``['54138969', '55011271', '58860488', '60457274']``
``action_names``    list of str, ``['Directions-1', 'Directions-2', ..., 'WalkingTogether-2']``
``cameras``         structured array ``(n_subjects, n_cameras)``: ``R`` float32 (3, 3)
                    world-to-camera, ``t`` float32 (3, 1) mm (``x_cam = R X + t``), ``K`` float32
                    (3, 3) px, ``dist`` float32 (5,) = Human3.6M ``[k1, k2, p0, p1, k3]``
``table``           structured array ``(N,)``: ``subject_idx`` int8, ``action_idx`` int8,
                    ``frame_idx`` int16, ``keypoints`` float32 (17, 3) world mm in LT's joint
                    order (:data:`~mvpose.skeleton.H36M17_LT`), ``bbox_by_camera_tlbr`` int16
                    (n_cameras, 4) ``(top, left, bottom, right)`` px, already square; all zeros
                    means the view is missing (LT's labels have it for camera 54138969 of
                    ``S11/Directions-2``, whose frames are absent)
==================  =====================================================================

The file is read with a restricted unpickler (numpy arrays, dtypes and plain containers only),
never with ``np.load(allow_pickle=True)``. The images are undistorted (LT's ``undistort-h36m.py``
or :func:`mvpose.data.transforms.undistort_frame`), so each sample's ``dist`` is zero and
``keypoints_2d = K [R | t] X`` exactly.

Sources checked (learnable-triangulation-pytorch, ``mvn/datasets/human36m.py``,
``mvn/datasets/human36m_preprocessing/{generate-labels-npy-multiview,undistort-h36m}.py`` and its
README; anibali/h36m-fetch ``process_all.py``): the field names, dtypes and shapes above, TLBR
order, ``t`` in mm (``-R @ T`` of 3d-pose-baseline's ``cameras.h5``), 1-based file numbers, the
train/val subjects and the damaged sequences (``S9/Greeting-2``, ``S9/SittingDown-2``,
``S9/Waiting-1``, excluded by LT's dataset unless ``with_damaged_actions=True``; LT's published
volumetric configs set it to true). No real labels file was available here: the tests build a small
one in this layout from the real Human3.6M cameras.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mvpose.data.transforms import crop_and_resize, normalize_image, square_bbox, undistort_frame
from mvpose.errors import FileFieldError
from mvpose.geometry.camera import CameraRig
from mvpose.safe_pickle import SafeUnpickler
from mvpose.skeleton import H36M17_LT, Skeleton

__all__ = [
    "DatasetError",
    "Human36MMultiView",
    "load_h36m_labels",
    "load_restricted",
    "undistort_frame",
    "TRAIN_SUBJECTS",
    "VAL_SUBJECTS",
    "DAMAGED_SEQUENCES",
    "CAMERA_NAMES",
]

logger = logging.getLogger("mvpose.data")

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
VAL_SUBJECTS = ("S9", "S11")
#: Sequences whose ground truth LT's dataset drops (``with_damaged_actions=False``, its default).
DAMAGED_SEQUENCES = (("S9", "Greeting-2"), ("S9", "SittingDown-2"), ("S9", "Waiting-1"))
CAMERA_NAMES = ("54138969", "55011271", "58860488", "60457274")
DEFAULT_LABELS = Path("extra") / "human36m-multiview-labels-GTbboxes.npy"


class DatasetError(FileFieldError):
    """A dataset file is missing a field or is malformed; names the file and the field."""

    file_label = "file"


# ------------------------------------------------------------------------------------- safe loading
class _Unpickler(SafeUnpickler):
    def error(self, message: str) -> Exception:
        return DatasetError(self._path, None, message)


def _unpickle(f, path):
    return _Unpickler(f, path).load_checked()


def _read_npy_header(f, version):
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    reader = getattr(np.lib.format, "_read_array_header", None)
    if reader is None:  # pragma: no cover
        raise ValueError(f"unsupported .npy version {version}")
    return reader(f, version)


def load_restricted(path):
    """Load a ``.npy`` / ``.npz`` / pickle file without running arbitrary pickled code.

    ``.npy`` holding an object array (``np.save`` of a dict, as LT's labels) and plain pickles (LT's
    ``results.pkl``) are unpickled with a restricted unpickler that resolves only numpy's array
    reconstruction globals; anything else (``os.system``, ``builtins.eval``...) raises
    :class:`DatasetError` before it is called. A 0-d object array is unwrapped (``.item()``).
    ``.npz`` files are read with ``allow_pickle=False`` into a dict of arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(6)
        f.seek(0)
        if head.startswith(b"PK"):
            try:
                with np.load(f, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            except ValueError as e:
                raise DatasetError(
                    path, None, f"unreadable .npz (object arrays are not accepted): {e}"
                ) from None
        if head == b"\x93NUMPY":
            version = np.lib.format.read_magic(f)
            try:
                _, _, dtype = _read_npy_header(f, version)
            except ValueError as e:
                raise DatasetError(path, None, f"malformed .npy header ({e})") from None
            if not dtype.hasobject:
                f.seek(0)
                return np.load(f, allow_pickle=False)
            obj = _unpickle(f, path)
        else:
            obj = _unpickle(f, path)
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 0:
        obj = obj.item()
    return obj


# -------------------------------------------------------------------------------------------- labels
_TABLE_FIELDS = ("subject_idx", "action_idx", "frame_idx", "keypoints", "bbox_by_camera_tlbr")
_CAMERA_FIELDS = {"R": (3, 3), "t": (3,), "K": (3, 3), "dist": (5,)}


def _names(path, labels, key) -> list[str]:
    value = labels[key]
    try:
        names = [str(v.decode() if isinstance(v, bytes) else v) for v in list(value)]
    except TypeError:
        raise DatasetError(path, key, f"expected a list of names, got {type(value).__name__}") from None
    if not names:
        raise DatasetError(path, key, "empty; expected a list of names")
    if len(set(names)) != len(names):
        raise DatasetError(path, key, f"names must be unique, got {names}")
    return names


def _structured(path, labels, key, fields) -> np.ndarray:
    arr = labels[key]
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None:
        raise DatasetError(
            path,
            key,
            f"expected a numpy structured array with fields {list(fields)}, got {type(arr).__name__}",
        )
    missing = [f for f in fields if f not in arr.dtype.names]
    if missing:
        raise DatasetError(
            path, f"{key}[{missing[0]!r}]", f"missing; the array has fields {list(arr.dtype.names)}"
        )
    return arr


def load_h36m_labels(path) -> dict:
    """Read and check LT's multi-view labels file (layout in the module docstring).

    Returns:
        dict with ``subject_names``, ``camera_names``, ``action_names`` (lists of str), ``R``
        ``(S, C, 3, 3)``, ``t`` ``(S, C, 3)`` mm, ``K`` ``(S, C, 3, 3)``, ``dist`` ``(S, C, 5)``
        (float64), ``subject_idx``, ``action_idx``, ``frame_idx`` ``(N,)`` int64, ``keypoints``
        ``(N, 17, 3)`` float64 world mm and ``bbox_tlbr`` ``(N, C, 4)`` int64.

    Raises:
        FileNotFoundError: no such file.
        DatasetError: not the expected dict, or a field missing or malformed (names the file and
            the field).
    """
    path = Path(path)
    labels = load_restricted(path)
    if not isinstance(labels, dict):
        raise DatasetError(
            path,
            None,
            f"expected a dict saved with np.save (LT's generate-labels-npy-multiview.py), got "
            f"{type(labels).__name__}",
        )
    for key in ("subject_names", "camera_names", "action_names", "cameras", "table"):
        if key not in labels:
            raise DatasetError(path, key, f"missing; the file has keys {sorted(map(str, labels))}")
    out = {k: _names(path, labels, k) for k in ("subject_names", "camera_names", "action_names")}
    S, C = len(out["subject_names"]), len(out["camera_names"])
    cams = _structured(path, labels, "cameras", _CAMERA_FIELDS)
    if cams.shape != (S, C):
        raise DatasetError(path, "cameras", f"expected shape ({S} subjects, {C} cameras), got {cams.shape}")
    for name, shape in _CAMERA_FIELDS.items():
        value = np.asarray(cams[name], dtype=np.float64)
        if value.shape[2:] != shape and not (name == "t" and value.shape[2:] == (3, 1)):
            raise DatasetError(
                path, f"cameras[{name!r}]", f"expected per-camera shape {shape}, got {value.shape[2:]}"
            )
        if not np.isfinite(value).all():
            raise DatasetError(path, f"cameras[{name!r}]", "expected finite numbers")
        out[name] = value.reshape(S, C, *shape)
    table = _structured(path, labels, "table", _TABLE_FIELDS)
    if table.ndim != 1:
        raise DatasetError(path, "table", f"expected a 1-D table, got shape {table.shape}")
    kp = np.asarray(table["keypoints"], dtype=np.float64)
    if kp.shape[1:] != (17, 3):
        raise DatasetError(path, "table['keypoints']", f"expected (N, 17, 3) world mm, got {kp.shape}")
    bb = np.asarray(table["bbox_by_camera_tlbr"], dtype=np.int64)
    if bb.shape[1:] != (C, 4):
        raise DatasetError(
            path, "table['bbox_by_camera_tlbr']", f"expected (N, {C}, 4) TLBR boxes, got {bb.shape}"
        )
    out["keypoints"], out["bbox_tlbr"] = kp, bb
    for key, n in (("subject_idx", S), ("action_idx", len(out["action_names"])), ("frame_idx", None)):
        idx = np.asarray(table[key]).astype(np.int64)
        if idx.shape != (len(table),):
            raise DatasetError(
                path, f"table[{key!r}]", f"expected one integer per row, got shape {idx.shape}"
            )
        if len(idx) and (idx.min() < 0 or (n is not None and idx.max() >= n)):
            bound = f"[0, {n})" if n is not None else ">= 0"
            raise DatasetError(
                path, f"table[{key!r}]", f"values must be in {bound}, got {idx.min()}..{idx.max()}"
            )
        out[key] = idx
    return out


# ------------------------------------------------------------------------------------ predictions
def _load_root_predictions(path, root_joint: int) -> np.ndarray:
    """``(N, 3)`` float64 roots from LT's ``results.pkl`` (``{'keypoints_3d', 'indexes'}``, rows put
    in ``indexes`` order as LT does) or an ``.npy``/``.npz`` of ``(N, J, 3)`` joints or ``(N, 3)`` roots."""
    obj = load_restricted(path)
    indexes = None
    if isinstance(obj, dict):
        key = next((k for k in ("keypoints_3d", "root_3d", "root") if k in obj), None)
        if key is None:
            raise DatasetError(path, "keypoints_3d", f"missing; the file has keys {sorted(map(str, obj))}")
        preds = obj[key]
        indexes = obj.get("indexes")
    else:
        preds, key = obj, None
    try:
        preds = np.asarray(preds, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(path, key, "expected an array of 3D predictions (mm)") from None
    if indexes is not None:
        indexes = np.asarray(indexes).reshape(-1)
        if len(indexes) != len(preds):
            raise DatasetError(path, "indexes", f"{len(indexes)} indexes for {len(preds)} predictions")
        preds = preds[np.argsort(indexes, kind="stable")]
    if preds.ndim == 3 and preds.shape[-1] == 3:
        if not 0 <= root_joint < preds.shape[1]:
            raise DatasetError(
                path, key, f"predictions have {preds.shape[1]} joints; the root is joint {root_joint}"
            )
        return preds[:, root_joint]
    if preds.ndim == 2 and preds.shape[-1] == 3:
        return preds
    raise DatasetError(path, key, f"expected (N, J, 3) joints or (N, 3) roots in mm, got shape {preds.shape}")


def _resolve(names: Sequence[str], wanted, what: str, allow_prefix: bool = False) -> list[int]:
    """Indices of ``wanted`` (names or integer indices) among ``names``; unknown ones raise."""
    if isinstance(wanted, str | int):
        wanted = [wanted]
    out: list[int] = []
    for w in wanted:
        if isinstance(w, int | np.integer):
            if not 0 <= int(w) < len(names):
                raise ValueError(f"{what} index {w} out of range; there are {len(names)}: {list(names)}")
            out.append(int(w))
            continue
        w = str(w)
        if w in names:
            out.append(names.index(w))
        elif allow_prefix and any(n.rsplit("-", 1)[0] == w for n in names):
            out.extend(i for i, n in enumerate(names) if n.rsplit("-", 1)[0] == w)
        else:
            raise ValueError(f"unknown {what} {w!r}; known: {list(names)}")
    return list(dict.fromkeys(out))


def _image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    w, h = (int(v) for v in image_size)
    if w <= 0 or h <= 0:
        raise ValueError(f"image_size must be positive (w, h), got {image_size}")
    return w, h


def read_rgb(path: Path, what: str) -> np.ndarray:
    """``cv2.imread`` as RGB uint8; a missing or unreadable file raises naming it and ``what``."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path} ({what})")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(path, None, f"unreadable image ({what})")
    return np.ascontiguousarray(image[..., ::-1])


def build_views(
    images: list[np.ndarray | None],
    boxes: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    keypoints_3d: np.ndarray,
    keypoints_valid: np.ndarray,
    image_size: tuple[int, int],
    interpolation: int,
    lt_bgr_quirk: bool,
) -> dict:
    """The per-view tensors of a sample (shared by the real datasets).

    ``images[v]`` is an RGB frame or ``None`` (missing view); ``boxes (V, 4)`` integer LTRB crop
    boxes; ``K, R, t`` full-frame cameras ``(V, ...)``. Missing views get zeros and
    ``view_mask = False``. ``visibility``: the joint is valid, in front of the camera and projects
    inside the crop, ``[-0.5, w - 0.5) x [-0.5, h - 0.5)`` (pixel centres at integers).
    """
    V, J = len(images), keypoints_3d.shape[0]
    w, h = image_size
    present = np.array([im is not None for im in images], dtype=bool)
    out = {
        "images": torch.zeros(V, 3, h, w, dtype=torch.float32),
        "keypoints_2d": torch.zeros(V, J, 2, dtype=torch.float32),
        "visibility": torch.zeros(V, J, dtype=torch.bool),
        "K": torch.zeros(V, 3, 3, dtype=torch.float64),
        "R": torch.zeros(V, 3, 3, dtype=torch.float64),
        "t": torch.zeros(V, 3, dtype=torch.float64),
        "dist": torch.zeros(V, 5, dtype=torch.float64),
        "bbox": torch.zeros(V, 4, dtype=torch.float64),
        "view_mask": torch.from_numpy(present.copy()),
    }
    idx = np.flatnonzero(present)
    if len(idx) == 0:
        return out
    crops = np.stack([crop_and_resize(images[v], boxes[v], (w, h), interpolation) for v in idx])
    out["images"][idx] = torch.from_numpy(normalize_image(crops, lt_bgr_quirk=lt_bgr_quirk))
    box = torch.from_numpy(boxes[idx].astype(np.float64))
    rig = CameraRig(K=torch.from_numpy(K[idx]), R=torch.from_numpy(R[idx]), t=torch.from_numpy(t[idx]))
    rig = rig.crop(box).resize((w, h), old_size=box[:, 2:] - box[:, :2])
    X = torch.from_numpy(keypoints_3d)
    uv = rig.project(X, distort=False)
    depth = rig.world_to_camera(X)[..., 2]
    inside = (uv[..., 0] >= -0.5) & (uv[..., 0] < w - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] < h - 0.5)
    vis = inside & (depth > 0) & torch.from_numpy(keypoints_valid)[None]
    out["keypoints_2d"][idx] = torch.nan_to_num(uv).to(torch.float32)
    out["visibility"][idx] = vis
    out["K"][idx], out["R"][idx], out["t"][idx] = rig.K, rig.R, rig.t
    out["bbox"][idx] = box
    return out


# ---------------------------------------------------------------------------------------- dataset
class Human36MMultiView(Dataset):
    """Human3.6M multi-view samples (docs/datasets.md contract) from LT's preprocessed layout.

    Args:
        root: dataset root holding ``processed/`` (and ``extra/``); a ``processed`` folder itself
            is accepted too.
        labels_path: the labels ``.npy``; default ``<root>/extra/human36m-multiview-labels-GTbboxes.npy``.
        split: ``"train"`` (S1, S5, S6, S7, S8), ``"val"`` (S9, S11) or ``"all"``.
        image_size: crop size ``(w, h)`` px or one int (LT's ``image_shape`` is ``(h, w)``).
        scale_bbox: crop box side multiplier about the box centre (LT: 1.0 for Human3.6M); the
            labels' boxes go through :func:`~mvpose.data.transforms.square_bbox`.
        subjects, actions: keep only these (names; an action without trial suffix, e.g.
            ``"Walking"``, selects both trials).
        cameras: keep only these cameras (names or label indices), in this order.
        ignore_cameras: drop these cameras (names or indices 0..3, as LT's ``ignore_cameras``).
        retain_every_n_frames: keep every n-th sample of the selection (LT thins only its test
            set this way: ``retain_every_n_frames_in_test``).
        exclude_damaged: drop :data:`DAMAGED_SEQUENCES` from any split (LT's
            ``with_damaged_actions=False``, which LT applies to its test set, where S9 is).
        root_prediction_file: precomputed 3D predictions placing the volumetric cuboid; ``root_3d``
            becomes their pelvis (joint 6) instead of the ground-truth pelvis. Accepted: LT's
            ``results.pkl`` (``{'keypoints_3d': (N, 17, 3), 'indexes': (N,)}``, rows sorted by
            ``indexes``) or ``.npy``/``.npz`` with ``(N, 17, 3)`` or ``(N, 3)``. Row ``i`` belongs
            to sample ``i`` of the split in LT's order (table order, ``exclude_damaged`` applied,
            before the subject/action filters), either every sample or every
            ``retain_every_n_frames``-th one (as LT slices its predictions).
        image_folder: per-sequence image folder (``"imageSequence"`` reads distorted frames:
            the sample's ``K`` would then be wrong by the lens distortion; not recommended).
        crop: crop to the labels' boxes (False: resize the whole frame, as LT's ``crop=False``).
        lt_bgr_quirk: feed BGR images with RGB-ordered statistics, as LT does (see
            :func:`~mvpose.data.transforms.normalize_image`); for official checkpoints.
        interpolation: cv2 flag of the resize (LT: ``cv2.INTER_AREA``).
    """

    skeleton: Skeleton = H36M17_LT

    def __init__(
        self,
        root,
        labels_path=None,
        *,
        split: str | None = "train",
        image_size: int | tuple[int, int] = 256,
        scale_bbox: float = 1.0,
        subjects: Iterable[str] | None = None,
        actions: Iterable[str] | None = None,
        cameras: Iterable[str | int] | None = None,
        ignore_cameras: Iterable[str | int] = (),
        retain_every_n_frames: int = 1,
        exclude_damaged: bool = True,
        root_prediction_file=None,
        image_folder: str = "imageSequence-undistorted",
        crop: bool = True,
        lt_bgr_quirk: bool = False,
        interpolation: int = cv2.INTER_AREA,
    ):
        self.root = Path(root)
        self.images_root = self.root / "processed" if (self.root / "processed").is_dir() else self.root
        base = (
            self.root if self.images_root != self.root else self.root.parent
        )  # extra/ sits beside processed/
        self.labels_path = Path(labels_path) if labels_path is not None else base / DEFAULT_LABELS
        self.image_size = _image_size(image_size)
        if scale_bbox <= 0:
            raise ValueError(f"scale_bbox must be positive, got {scale_bbox}")
        if int(retain_every_n_frames) < 1:
            raise ValueError(f"retain_every_n_frames must be >= 1, got {retain_every_n_frames}")
        self.scale_bbox = float(scale_bbox)
        self.image_folder = image_folder
        self.crop = bool(crop)
        self.lt_bgr_quirk = bool(lt_bgr_quirk)
        self.interpolation = interpolation
        self.split = "all" if split is None else split

        lab = load_h36m_labels(self.labels_path)
        self._labels = lab
        subj_names, act_names, cam_names = lab["subject_names"], lab["action_names"], lab["camera_names"]

        # views
        views = (
            list(range(len(cam_names))) if cameras is None else _resolve(cam_names, list(cameras), "camera")
        )
        dropped = set(_resolve(cam_names, list(ignore_cameras), "camera")) if ignore_cameras else set()
        self._views = [v for v in views if v not in dropped]
        if not self._views:
            raise ValueError("no cameras left after `cameras` / `ignore_cameras`")

        # split (LT's order: table order), damaged sequences
        s_idx, a_idx = lab["subject_idx"], lab["action_idx"]
        split_subjects = {"train": TRAIN_SUBJECTS, "val": VAL_SUBJECTS, "all": None}
        if self.split not in split_subjects:
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        mask = np.ones(len(s_idx), dtype=bool)
        if split_subjects[self.split] is not None:
            keep = [subj_names.index(s) for s in split_subjects[self.split] if s in subj_names]
            mask &= np.isin(s_idx, keep)
        if exclude_damaged:
            for subj, act in DAMAGED_SEQUENCES:
                if subj in subj_names and act in act_names:
                    mask &= ~((s_idx == subj_names.index(subj)) & (a_idx == act_names.index(act)))
        base_rows = np.flatnonzero(mask)

        # filters, thinning
        sel = np.ones(len(base_rows), dtype=bool)
        if subjects is not None:
            sel &= np.isin(s_idx[base_rows], _resolve(subj_names, list(subjects), "subject"))
        if actions is not None:
            sel &= np.isin(a_idx[base_rows], _resolve(act_names, list(actions), "action", allow_prefix=True))
        n = int(retain_every_n_frames)
        self._rows = base_rows[sel][::n]
        if len(self._rows) == 0:
            raise ValueError(
                f"{self.labels_path}: no samples left for split={self.split!r}, subjects={subjects}, "
                f"actions={actions} (labels hold subjects {subj_names})"
            )

        # root predictions
        self.root_prediction_file = root_prediction_file
        self._pred_root: np.ndarray | None = None
        if root_prediction_file is not None:
            roots = _load_root_predictions(root_prediction_file, self.skeleton.root)
            per_row = np.full((len(s_idx), 3), np.nan)
            if len(roots) == len(base_rows):
                per_row[base_rows] = roots
            elif len(roots) == len(base_rows[::n]):
                per_row[base_rows[::n]] = roots
            else:
                raise DatasetError(
                    root_prediction_file,
                    None,
                    f"{len(roots)} predictions, but split {self.split!r} of {self.labels_path} has "
                    f"{len(base_rows)} samples ({len(base_rows[::n])} with retain_every_n_frames={n}, "
                    f"exclude_damaged={exclude_damaged}); expected one prediction per sample of the split",
                )
            self._pred_root = per_row[self._rows]
            missing = int(np.isnan(self._pred_root).any(-1).sum())
            if missing:
                raise DatasetError(
                    root_prediction_file,
                    None,
                    f"no prediction for {missing} selected samples: the predictions cover every "
                    f"{n}-th sample of the whole split, which the subject/action filters do not keep aligned",
                )
        self._lookup: dict[tuple[str, str, int], int] | None = None

    # ------------------------------------------------------------------ indexing
    def __len__(self) -> int:
        return len(self._rows)

    @property
    def camera_names(self) -> list[str]:
        """Names of the cameras of every sample, in view order."""
        return [self._labels["camera_names"][v] for v in self._views]

    @property
    def num_views(self) -> int:
        return len(self._views)

    @property
    def subjects(self) -> list[str]:
        """Subjects present in the selection (labels order)."""
        present = set(self._labels["subject_idx"][self._rows].tolist())
        return [s for i, s in enumerate(self._labels["subject_names"]) if i in present]

    @property
    def actions(self) -> list[str]:
        """Actions (with trial suffix, e.g. ``"Walking-1"``) present in the selection (labels order)."""
        present = set(self._labels["action_idx"][self._rows].tolist())
        return [a for i, a in enumerate(self._labels["action_names"]) if i in present]

    def info(self, index: int) -> dict:
        """``{"subject", "action", "frame"}`` of sample ``index`` (no image is read)."""
        row = self._rows[index]
        lab = self._labels
        return {
            "subject": lab["subject_names"][lab["subject_idx"][row]],
            "action": lab["action_names"][lab["action_idx"][row]],
            "frame": int(lab["frame_idx"][row]),
        }

    def index_of(self, subject: str, action: str, frame: int) -> int:
        """Dataset index of ``(subject, action, frame)`` (``frame`` = the labels' 0-based ``frame_idx``)."""
        if self._lookup is None:
            lab = self._labels
            self._lookup = {
                (
                    lab["subject_names"][lab["subject_idx"][r]],
                    lab["action_names"][lab["action_idx"][r]],
                    int(lab["frame_idx"][r]),
                ): i
                for i, r in enumerate(self._rows)
            }
        try:
            return self._lookup[(str(subject), str(action), int(frame))]
        except KeyError:
            raise KeyError(
                f"no sample ({subject!r}, {action!r}, frame {frame}) in this dataset selection"
            ) from None

    def indices_of(self, subject: str | None = None, action: str | None = None) -> np.ndarray:
        """Dataset indices of a subject and/or action (an action without trial matches both trials)."""
        lab = self._labels
        m = np.ones(len(self._rows), dtype=bool)
        if subject is not None:
            m &= lab["subject_idx"][self._rows] == _resolve(lab["subject_names"], subject, "subject")[0]
        if action is not None:
            m &= np.isin(lab["action_idx"][self._rows], _resolve(lab["action_names"], action, "action", True))
        return np.flatnonzero(m)

    def keypoints_3d(self) -> np.ndarray:
        """Ground truth of every sample ``(N, 17, 3)`` float64 world mm, in dataset order."""
        return self._labels["keypoints"][self._rows].copy()

    def image_path(self, index: int, camera: str) -> Path:
        """Path of one view's frame."""
        i = self.info(index)
        return (
            self.images_root
            / i["subject"]
            / i["action"]
            / self.image_folder
            / camera
            / f"img_{i['frame'] + 1:06d}.jpg"
        )

    # ------------------------------------------------------------------ samples
    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = int(index) % len(self)
        lab, row = self._labels, self._rows[index]
        info = self.info(index)
        s = lab["subject_idx"][row]
        kp = lab["keypoints"][row]
        valid = np.isfinite(kp).all(-1)
        names = self.camera_names
        images: list[np.ndarray | None] = []
        boxes = np.zeros((len(self._views), 4), dtype=np.int64)
        for j, v in enumerate(self._views):
            top, left, bottom, right = lab["bbox_tlbr"][row, v]
            if right <= left or bottom <= top:  # LT's convention: an empty box marks a missing view
                images.append(None)
                continue
            path = self.image_path(index, names[j])
            what = f"subject {info['subject']}, action {info['action']}, camera {names[j]}"
            what += f", frame {info['frame']}"
            image = read_rgb(path, what)
            images.append(image)
            if self.crop:
                boxes[j] = square_bbox([left, top, right, bottom], self.scale_bbox)
            else:
                boxes[j] = (0, 0, image.shape[1], image.shape[0])
        sample = build_views(
            images,
            boxes,
            lab["K"][s, self._views],
            lab["R"][s, self._views],
            lab["t"][s, self._views],
            kp,
            valid,
            self.image_size,
            self.interpolation,
            self.lt_bgr_quirk,
        )
        if self._pred_root is not None:
            root = torch.from_numpy(self._pred_root[index].copy())
        else:
            root = torch.from_numpy(kp[self.skeleton.root].copy())
        return {
            "images": sample["images"],
            "keypoints_3d": torch.from_numpy(np.nan_to_num(kp)),
            "keypoints_3d_valid": torch.from_numpy(valid),
            "keypoints_2d": sample["keypoints_2d"],
            "visibility": sample["visibility"],
            "K": sample["K"],
            "R": sample["R"],
            "t": sample["t"],
            "dist": sample["dist"],
            "bbox": sample["bbox"],
            "view_mask": sample["view_mask"],
            "root_3d": root,
            "subject": info["subject"],
            "action": info["action"],
            "frame": info["frame"],
            "camera_names": list(names),
            "index": index,
        }

    def __repr__(self) -> str:
        return (
            f"Human36MMultiView(split={self.split!r}, samples={len(self)}, views={self.camera_names}, "
            f"image_size={self.image_size}, labels='{self.labels_path}')"
        )
