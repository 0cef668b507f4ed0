"""MPI-INF-3DHP in P-STMO's npz layout (``data_train_3dhp.npz``, ``data_test_3dhp.npz``), and its PCK/AUC.

P-STMO's conversion scripts (``data_to_npz_3dhp.py``, ``data_to_npz_3dhp_test.py``; also shipped with
PoseFormerV2's ``mpi_inf_3dhp/common/`` and MotionAGFormer's ``data/preprocess/``) write one key,
``data``, a dict stored by ``np.savez_compressed`` as a pickled 0-d object array:

``data_train_3dhp.npz``
    ``data["S<k> Seq<m>"] = [{camera: {"data_2d": (T, 17, 2), "data_3d": (T, 17, 3)}}, fps]``:
    subject and sequence joined by one space; the cameras are the strings ``"0", "1", "2", "4", "5",
    "6", "7", "8"`` (the 8 chest-height cameras); ``fps`` is 25 or 50; ``T`` is the per-sequence
    frame count (the annotation rows are cut to it). ``data_2d`` is ``annot2`` in pixels of the
    camera's 2048 x 2048 frame; ``data_3d`` is ``univ_annot3`` (the "universal", height-normalised
    skeleton) in that camera's frame, **mm**. Both are the 28 annotated joints reduced with
    :data:`~mvpose.skeleton.MPI3DHP28_TO_17`, i.e. :data:`~mvpose.skeleton.MPI3DHP17` order (the test
    set's order; pelvis = joint 14), not Human3.6M's.
``data_test_3dhp.npz``
    ``data["TS<k>"] = {"data_2d": (T, 17, 2), "data_3d": (T, 17, 3), "valid": (T,)}`` for TS1..TS6
    (``annot2``, ``univ_annot3`` and ``valid_frame`` of ``annot_data.mat``, squeezed): the same joint
    order and units, pixels of 2048 x 2048 frames for TS1-TS4 (studio) and 1920 x 1080 for TS5-TS6
    (outdoor); ``valid`` is 0/1 per frame and only valid frames are evaluated.

There are no cameras (intrinsics, extrinsics) in either file: 3D is camera-frame only, and the sets
hold it as :attr:`~mvpose.data.sequences.SequenceItem.positions_camera` with ``positions_world`` and
``rig`` left ``None``. Files are read through :func:`~mvpose.data.sequences.load_npz` (restricted
unpickler: a file that carries code is refused before anything runs).

Evaluation (:func:`evaluate_3dhp`) follows P-STMO's MATLAB scorer (``3dhp_test/test_util``:
``mpii_test_predictions_py.m``, ``mpii_evaluate_errors.m``, ``mpii_compute_3d_pck.m``): valid frames
only; both poses root-relative (pelvis, joint 14); the error of a joint is its Euclidean distance;
PCK counts errors strictly below 150 mm, AUC averages PCK over the 31 thresholds 0, 5, ..., 150 mm
(:func:`mvpose.metrics.pck`, :func:`mvpose.metrics.auc` compute exactly that); the "Total" columns
average over the joints of the PCK groups (P-STMO's groups leave out pelvis, spine and head: 14
joints; the 17-joint variant of the groups is ``joints="all"``); per sequence, and overall over the
frames of all sequences pooled. MPJPE averages all 17 joints (the root counts with error 0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvpose.metrics import AUC_THRESHOLDS_MM, auc, mpjpe, pck
from mvpose.skeleton import MPI3DHP17, MPI3DHP28_TO_17

from .npz import SequenceFileError, load_npz
from .sets import SequenceItem
from .windows import WindowDataset

__all__ = [
    "MPI3DHP_TRAIN_CAMERAS",
    "MPI3DHP_TRAIN_IMAGE_SIZE",
    "MPI3DHP_TEST_IMAGE_SIZES",
    "MPI3DHP_PCK_JOINTS",
    "MPI3DHPItem",
    "MPI3DHPSequences",
    "read_3dhp_npz",
    "read_3dhp_train_npz",
    "read_3dhp_test_npz",
    "evaluate_3dhp",
]

#: The cameras P-STMO's training file holds (``cam_set``), as the strings it uses for keys.
MPI3DHP_TRAIN_CAMERAS: tuple[str, ...] = ("0", "1", "2", "4", "5", "6", "7", "8")
#: ``(w, h)`` of the training cameras' frames (P-STMO normalises the training 2D with it).
MPI3DHP_TRAIN_IMAGE_SIZE: tuple[int, int] = (2048, 2048)
#: ``(w, h)`` of each test sequence's frames: studio TS1-TS4, outdoor TS5-TS6.
MPI3DHP_TEST_IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "TS1": (2048, 2048),
    "TS2": (2048, 2048),
    "TS3": (2048, 2048),
    "TS4": (2048, 2048),
    "TS5": (1920, 1080),
    "TS6": (1920, 1080),
}
#: Joints of the PCK/AUC "Total", as :data:`~mvpose.skeleton.MPI3DHP17` indices: ``"pstmo"`` is the
#: groups of P-STMO's scorer (head top, neck, shoulders, elbows, wrists, hips, knees, ankles: 14
#: joints), ``"all"`` the 17-joint groups (adds head, spine and pelvis, whose root-relative error is 0).
MPI3DHP_PCK_JOINTS: dict[str, tuple[int, ...]] = {
    "pstmo": tuple(range(14)),
    "all": tuple(range(17)),
}

_LAYOUT_TRAIN = (
    "data = {'S<k> Seq<m>': [{camera: {'data_2d': (T, 17, 2) px, 'data_3d': (T, 17, 3) mm}}, fps]}"
)
_LAYOUT_TEST = "data = {'TS<k>': {'data_2d': (T, 17, 2) px, 'data_3d': (T, 17, 3) mm, 'valid': (T,)}}"
_UNITS = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


@dataclass(frozen=True, eq=False)
class MPI3DHPItem(SequenceItem):
    """One ``(subject, action, camera)`` sequence of a P-STMO 3DHP file (a :class:`SequenceItem`).

    Training items are ``("S1", "Seq1", "0")`` ...; test items ``("TS1", "test", "0")`` ...
    ``camera_index`` is the dataset's camera number (``int(camera)``). ``keypoints_2d`` ``(T, 17, 2)``
    px and ``positions_camera`` ``(T, 17, 3)`` mm (``univ_annot3``) are float64, in
    :data:`~mvpose.skeleton.MPI3DHP17` order; ``positions_world``, ``rig`` and ``confidence`` are
    ``None``.

    Attributes:
        valid: ``(T,)`` bool, the frames to evaluate (all True for training items).
        fps: frames per second (training files store it; ``None`` for the test sequences).
    """

    valid: np.ndarray = None  # type: ignore[assignment]
    fps: float | None = None


class MPI3DHPSequences:
    """The sequences of one P-STMO 3DHP npz file: :class:`MPI3DHPItem` per (subject, action, camera).

    Mirrors :class:`~mvpose.data.sequences.SequenceSet`'s ``subjects`` / ``actions`` / ``items`` /
    ``windows``; build it with :func:`read_3dhp_npz` (or the train/test readers).

    Attributes:
        split: ``"train"`` or ``"test"``.
        path: the file read (or None).
        skeleton: :data:`~mvpose.skeleton.MPI3DHP17`.
    """

    def __init__(self, items: Sequence[MPI3DHPItem], split: str, path=None):
        self._items = list(items)
        self.split = split
        self.path = None if path is None else Path(path)
        self.skeleton = MPI3DHP17

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        frames = sum(it.num_frames for it in self._items)
        return f"MPI3DHPSequences(split={self.split!r}, sequences={len(self)}, frames={frames})"

    def subjects(self) -> list[str]:
        return sorted({it.subject for it in self._items}, key=_natural)

    def actions(self, subject: str) -> list[str]:
        return sorted({it.action for it in self._items if it.subject == subject}, key=_natural)

    def items(
        self,
        subjects: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
        cameras: Sequence[int | str] | None = None,
    ) -> list[MPI3DHPItem]:
        """The items, in file order (subjects, sequences and cameras in natural order), filtered."""
        cams = None if cameras is None else {str(c) for c in cameras}
        return [
            it
            for it in self._items
            if (subjects is None or it.subject in subjects)
            and (actions is None or it.action in actions)
            and (cams is None or it.camera in cams)
        ]

    def windows(
        self,
        input: str = "2d",
        *,
        root_relative: bool = True,
        subjects: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
        cameras: Sequence[int | str] | None = None,
        **kwargs,
    ) -> WindowDataset:
        """A :class:`~mvpose.data.sequences.WindowDataset` of the items (as P-STMO trains).

        Args:
            input: ``"2d"`` (keypoints normalised with each item's image size) or ``"3d"``
                (camera-frame mm).
            root_relative: targets as P-STMO keeps them: the pelvis (joint 14) holds the camera-frame
                root trajectory, every other joint is relative to it (mm).
            **kwargs: :class:`WindowDataset` options; ``flip_indices`` and ``target_flip_indices``
                default to :data:`~mvpose.skeleton.MPI3DHP17`'s (P-STMO's left/right lists).

        Windows cover every frame; for the test set evaluate valid frames only (:func:`evaluate_3dhp`
        on whole-sequence outputs, e.g. from :meth:`WindowDataset.reassemble`).
        """
        items = self.items(subjects, actions, cameras)
        if not items:
            raise ValueError("MPI3DHPSequences.windows: no sequences selected")
        if input == "2d":
            xs = [it.normalised_2d() for it in items]
        elif input == "3d":
            xs = [it.positions_camera for it in items]
        else:
            raise ValueError(f"input must be '2d' or '3d', got {input!r}")
        root = self.skeleton.root
        ys = []
        for it in items:
            y = it.positions_camera.copy()
            if root_relative:
                keep = np.arange(y.shape[1]) != root
                y[:, keep] -= y[:, root : root + 1]
            ys.append(y)
        kwargs.setdefault("flip_indices", self.skeleton.flip_indices)
        kwargs.setdefault("target_flip_indices", self.skeleton.flip_indices)
        return WindowDataset(xs, ys, ids=[it.key for it in items], **kwargs)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def _natural(s: str):
    """Sort key: digits compare as numbers (``S2 < S10``, ``"2" < "10"``)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(s))]


def _unit_scale(unit: str) -> float:
    if unit not in _UNITS:
        raise ValueError(f"unit must be one of {sorted(_UNITS)}, got {unit!r}")
    return _UNITS[unit]


def _as_list(obj) -> Any:
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        return obj.item() if obj.ndim == 0 else list(obj)
    return obj


def _field(path, key: str, entry: Mapping, name: str, layout: str):
    if name not in entry:
        raise SequenceFileError(
            path, f"{key}[{name!r}]", f"missing; expected {layout}; the entry holds {sorted(map(str, entry))}"
        )
    return entry[name]


def _array(path, key: str, obj, channels: int, what: str) -> np.ndarray:
    arr = np.asarray(_as_list(obj))
    if arr.ndim != 3 or arr.shape[-1] != channels or not np.issubdtype(arr.dtype, np.number):
        raise SequenceFileError(
            path, key, f"expected a numeric (T, 17, {channels}) array ({what}), got {arr.dtype} {arr.shape}"
        )
    if arr.shape[1] == 28:  # the 28 annotated joints: reduce as the conversion scripts do
        arr = arr[:, MPI3DHP28_TO_17]
    elif arr.shape[1] != 17:
        raise SequenceFileError(
            path, key, f"expected 17 joints (MPI-INF-3DHP test order) or 28, got {arr.shape[1]}"
        )
    return arr.astype(np.float64)


def _pair(path, key: str, entry: Mapping, layout: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    k2, k3 = f"{key}['data_2d']", f"{key}['data_3d']"
    kp = _array(path, k2, _field(path, key, entry, "data_2d", layout), 2, "pixels")
    x3 = _array(path, k3, _field(path, key, entry, "data_3d", layout), 3, "camera-frame univ_annot3")
    if kp.shape[0] != x3.shape[0]:
        raise SequenceFileError(path, k2, f"{kp.shape[0]} frames of 2D but {x3.shape[0]} of 3D ({k3})")
    return kp, x3 * scale


def _data(path, layout: str) -> Mapping:
    data = _as_list(load_npz(path, required=("data",), layout=layout)["data"])
    if not isinstance(data, Mapping):
        raise SequenceFileError(path, "data", f"expected a dict ({layout}), got {type(data).__name__}")
    return data


def read_3dhp_train_npz(
    path, *, unit: str = "mm", image_size: tuple[int, int] | None = None
) -> MPI3DHPSequences:
    """Read P-STMO's ``data_train_3dhp.npz``.

    Args:
        path: the file.
        unit: unit of ``data_3d`` in the file (P-STMO's: ``"mm"``; ``"cm"``, ``"m"`` are scaled to mm).
        image_size: ``(w, h)`` of every camera, default :data:`MPI3DHP_TRAIN_IMAGE_SIZE`.

    Returns:
        :class:`MPI3DHPSequences` (``split="train"``): one item per ``(subject, sequence, camera)``,
        all frames valid, ``fps`` from the file.

    Raises:
        FileNotFoundError, SequenceFileError: naming the file and the key, e.g.
            ``data['S1 Seq1'][0]['0']['data_3d']``.
    """
    return _train_set(_data(path, _LAYOUT_TRAIN), path, unit=unit, image_size=image_size)


def _train_set(data: Mapping, path, *, unit: str = "mm", image_size=None) -> MPI3DHPSequences:
    scale = _unit_scale(unit)
    size = tuple(int(v) for v in (image_size or MPI3DHP_TRAIN_IMAGE_SIZE))
    items = []
    for name in sorted(data, key=_natural):
        key = f"data[{name!r}]"
        parts = str(name).split()
        if len(parts) != 2:
            raise SequenceFileError(path, key, "expected a key 'S<k> Seq<m>' (subject, space, sequence)")
        entry = _as_list(data[name])
        fps = None
        if isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], Mapping):
            cams, fps = entry[0], (entry[1] if len(entry) > 1 else None)
            ckey = f"{key}[0]"
        elif isinstance(entry, Mapping) and "valid" in entry:
            raise SequenceFileError(
                path,
                key,
                f"this is a test-set entry (it has 'valid'); read the file with read_3dhp_test_npz. "
                f"Expected {_LAYOUT_TRAIN}",
            )
        elif isinstance(entry, Mapping):
            cams, ckey = entry, key
        else:
            raise SequenceFileError(
                path, key, f"expected [{{camera: {{'data_2d', 'data_3d'}}}}, fps], got {type(entry).__name__}"
            )
        try:
            fps = None if fps is None else float(np.asarray(fps).item())
        except (TypeError, ValueError):
            raise SequenceFileError(
                path, f"{key}[1]", f"expected the frame rate (a number), got {fps!r}"
            ) from None
        for cam in sorted(cams, key=_natural):
            camkey = f"{ckey}[{cam!r}]"
            entry_c = cams[cam]
            if not isinstance(entry_c, Mapping):
                raise SequenceFileError(
                    path,
                    camkey,
                    f"expected a dict with 'data_2d' and 'data_3d', got {type(entry_c).__name__}",
                )
            kp, x3 = _pair(path, camkey, entry_c, _LAYOUT_TRAIN, scale)
            cam_s = str(cam)
            items.append(
                MPI3DHPItem(
                    subject=parts[0],
                    action=parts[1],
                    camera=cam_s,
                    camera_index=int(cam_s) if cam_s.isdigit() else len(items),
                    keypoints_2d=kp,
                    confidence=None,
                    positions_world=None,
                    positions_camera=x3,
                    image_size=size,
                    rig=None,
                    valid=np.ones(kp.shape[0], dtype=bool),
                    fps=fps,
                )
            )
    return MPI3DHPSequences(items, "train", path)


def read_3dhp_test_npz(
    path, *, unit: str = "mm", image_sizes: Mapping[str, tuple[int, int]] | None = None
) -> MPI3DHPSequences:
    """Read P-STMO's ``data_test_3dhp.npz``.

    Args:
        path: the file.
        unit: unit of ``data_3d`` in the file (P-STMO's: ``"mm"``).
        image_sizes: ``{sequence: (w, h)}``, default :data:`MPI3DHP_TEST_IMAGE_SIZES`; a sequence
            absent from both gets ``image_size=None``.

    Returns:
        :class:`MPI3DHPSequences` (``split="test"``): items ``(TS<k>, "test", "0")`` with the
        per-frame ``valid`` mask (``valid != 0``).

    Raises:
        FileNotFoundError, SequenceFileError: naming the file and the key (``data['TS1']['valid']``).
    """
    return _test_set(_data(path, _LAYOUT_TEST), path, unit=unit, image_sizes=image_sizes)


def _test_set(data: Mapping, path, *, unit: str = "mm", image_sizes=None) -> MPI3DHPSequences:
    scale = _unit_scale(unit)
    sizes = {**MPI3DHP_TEST_IMAGE_SIZES, **(image_sizes or {})}
    items = []
    for name in sorted(data, key=_natural):
        key = f"data[{name!r}]"
        entry = _as_list(data[name])
        if not isinstance(entry, Mapping):
            hint = (
                " (this looks like the training file: read it with read_3dhp_train_npz)"
                if isinstance(entry, (list, tuple))
                else ""
            )
            raise SequenceFileError(
                path,
                key,
                f"expected a dict {{'data_2d', 'data_3d', 'valid'}}, got {type(entry).__name__}{hint}",
            )
        kp, x3 = _pair(path, key, entry, _LAYOUT_TEST, scale)
        vkey = f"{key}['valid']"
        valid = np.asarray(_as_list(_field(path, key, entry, "valid", _LAYOUT_TEST)))
        if not (np.issubdtype(valid.dtype, np.number) or valid.dtype == bool):
            raise SequenceFileError(path, vkey, f"expected 0/1 flags per frame, got {valid.dtype}")
        valid = valid.reshape(-1) if valid.size == kp.shape[0] else valid
        if valid.shape != (kp.shape[0],):
            raise SequenceFileError(
                path, vkey, f"expected one flag per frame, shape ({kp.shape[0]},), got {valid.shape}"
            )
        size = sizes.get(str(name))
        items.append(
            MPI3DHPItem(
                subject=str(name),
                action="test",
                camera="0",
                camera_index=0,
                keypoints_2d=kp,
                confidence=None,
                positions_world=None,
                positions_camera=x3,
                image_size=None if size is None else (int(size[0]), int(size[1])),
                rig=None,
                valid=valid != 0,
                fps=None,
            )
        )
    return MPI3DHPSequences(items, "test", path)


def read_3dhp_npz(path, split: str = "auto", **kwargs) -> MPI3DHPSequences:
    """Read a P-STMO 3DHP file; ``split`` ``"train"``, ``"test"`` or ``"auto"`` (from the entries:
    a ``valid`` flag array means the test layout). ``kwargs`` go to the reader."""
    if split not in ("auto", "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'auto', got {split!r}")
    layout = {"train": _LAYOUT_TRAIN, "test": _LAYOUT_TEST}.get(split, f"{_LAYOUT_TRAIN} or {_LAYOUT_TEST}")
    data = _data(path, layout)
    if split == "auto":
        first = _as_list(next(iter(data.values()), None))
        split = "test" if isinstance(first, Mapping) and "valid" in first else "train"
    return (_train_set if split == "train" else _test_set)(data, path, **kwargs)


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def _label(it: MPI3DHPItem, split: str) -> str:
    return it.subject if split == "test" else "/".join(it.key)


def _from_set(pred, target: MPI3DHPSequences):
    items = target.items()
    if isinstance(pred, Mapping):
        seqs = []
        for it in items:
            for k in (it.key, it.subject, "/".join(it.key)):
                if k in pred:
                    seqs.append(pred[k])
                    break
            else:
                raise KeyError(f"evaluate_3dhp: no prediction for {it.key} (keys tried: subject, key)")
    else:
        seqs = list(pred)
        if len(seqs) != len(items):
            raise ValueError(f"evaluate_3dhp: {len(seqs)} predicted sequences for {len(items)} items")
    preds, targets, valids, labels = [], [], [], []
    for it, p in zip(items, seqs):
        p = torch.as_tensor(np.asarray(p) if not isinstance(p, torch.Tensor) else p)
        if p.shape != it.positions_camera.shape:
            raise ValueError(
                f"evaluate_3dhp: prediction for {it.key} has shape {tuple(p.shape)}, expected "
                f"{it.positions_camera.shape} (all frames; invalid ones are skipped)"
            )
        preds.append(p.detach().cpu().to(torch.float64))
        targets.append(torch.from_numpy(it.positions_camera))
        valids.append(torch.from_numpy(it.valid))
        labels += [_label(it, target.split)] * it.num_frames
    return torch.cat(preds), torch.cat(targets), torch.cat(valids), labels


def evaluate_3dhp(
    pred,
    target,
    valid=None,
    *,
    sequences: Sequence | None = None,
    joints: str | Sequence[int] = "pstmo",
    root: int = MPI3DHP17.root,
    pck_threshold_mm: float = 150.0,
    thresholds_mm: Sequence[float] = AUC_THRESHOLDS_MM,
) -> dict:
    """MPI-INF-3DHP PCK / AUC / MPJPE over valid frames, per sequence and overall (P-STMO's protocol).

    Both poses are made root-relative (``root``, the pelvis); the error of a joint is its distance in
    mm. PCK (%) counts errors ``< pck_threshold_mm``; AUC (%) is the mean PCK over ``thresholds_mm``
    (0, 5, ..., 150); both average the ``joints`` of every valid frame (:func:`mvpose.metrics.pck`,
    :func:`mvpose.metrics.auc`). MPJPE (mm) averages all joints (the root counts with 0).
    ``overall`` pools the valid frames of all sequences (frame-weighted, the scorer's "All" row).

    Scale. The ground truth of P-STMO's files is ``univ_annot3``, the skeleton rescaled to the
    dataset's universal height; models trained on these files predict that scale, and the published
    3DHP numbers compare against it. A prediction in the person's true metric scale (e.g. from
    calibrated multi-view triangulation) belongs against ``annot3`` (not in these files) or must be
    rescaled first; compared with ``univ_annot3`` as is, its error includes the scale difference.

    Args:
        pred: ``(N, 17, 3)`` mm; or, with ``target`` an :class:`MPI3DHPSequences`, one ``(T, 17, 3)``
            array per item (a list in ``target.items()`` order, or a dict keyed by ``"TS1"`` /
            ``item.key``), covering every frame.
        target: ``(N, 17, 3)`` mm, or an :class:`MPI3DHPSequences` (its ``valid`` masks are used).
        valid: ``(N,)`` bool frames to evaluate (None: all); must be None with a set.
        sequences: ``N`` sequence labels for the per-sequence rows (None: only ``overall``).
        joints: ``"pstmo"`` (14 joints, P-STMO's groups), ``"all"`` (17), or indices.
        root: root joint index (14 in :data:`~mvpose.skeleton.MPI3DHP17`).
        pck_threshold_mm, thresholds_mm: the PCK threshold and the AUC thresholds.

    Returns:
        ``{"overall": {"PCK", "AUC", "MPJPE", "frames"}, "per_sequence": {label: {...}},
        "joints": [names], "root": name}``; values are floats (NaN without a valid frame).

    Example:
        >>> test = read_3dhp_test_npz("data_test_3dhp.npz")           # doctest: +SKIP
        >>> evaluate_3dhp({it.subject: model(it) for it in test.items()}, test)["overall"]  # +SKIP
    """
    if isinstance(target, MPI3DHPSequences):
        if valid is not None or sequences is not None:
            raise ValueError("evaluate_3dhp: valid and sequences come from the set; pass None")
        p, q, v, sequences = _from_set(pred, target)
        names = target.skeleton.joint_names
    else:
        p = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred)
        q = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
        p, q = p.detach().cpu().to(torch.float64), q.detach().cpu().to(torch.float64)
        if p.shape != q.shape or p.ndim != 3 or p.shape[-1] != 3:
            raise ValueError(
                f"evaluate_3dhp: pred and target must be (N, J, 3), got {tuple(p.shape)}, {tuple(q.shape)}"
            )
        n = p.shape[0]
        v = torch.ones(n, dtype=torch.bool) if valid is None else torch.as_tensor(np.asarray(valid)).bool()
        if v.shape != (n,):
            raise ValueError(f"evaluate_3dhp: valid must have shape ({n},), got {tuple(v.shape)}")
        if sequences is not None and len(sequences) != n:
            raise ValueError(f"evaluate_3dhp: {len(sequences)} sequence labels for {n} frames")
        names = MPI3DHP17.joint_names if p.shape[1] == 17 else tuple(f"joint{j}" for j in range(p.shape[1]))
    J = p.shape[1]
    sel_idx = MPI3DHP_PCK_JOINTS[joints] if isinstance(joints, str) else tuple(int(j) for j in joints)
    if not sel_idx or not all(0 <= j < J for j in sel_idx):
        raise ValueError(f"evaluate_3dhp: joints must index [0, {J}), got {joints!r}")
    if not 0 <= root < J:
        raise ValueError(f"evaluate_3dhp: root {root} out of range for {J} joints")
    sel = torch.zeros(J, dtype=torch.bool)
    sel[list(sel_idx)] = True
    # Root-relative first: the PCK joints may exclude the root, which metrics' ``root=`` would mask.
    p = p - p[:, root : root + 1]
    q = q - q[:, root : root + 1]
    mask = v[:, None] & sel[None, :]
    per_frame = {
        "PCK": pck(p, q, pck_threshold_mm, mask, reduction="sample"),
        "AUC": auc(p, q, mask, thresholds_mm=thresholds_mm, reduction="sample"),
        "MPJPE": mpjpe(p, q, v[:, None], reduction="sample"),
    }

    def row(m: torch.Tensor) -> dict:
        k = int(m.sum())
        out = {name: (float(x[m].mean()) if k else float("nan")) for name, x in per_frame.items()}
        return {**out, "frames": k}

    result: dict = {
        "overall": row(v),
        "joints": [names[j] for j in sel_idx],
        "root": names[root],
    }
    if sequences is not None:
        labels = np.asarray([str(s) for s in sequences])
        result["per_sequence"] = {
            lab: row(v & torch.from_numpy(labels == lab))
            for lab in sorted(set(labels.tolist()), key=_natural)
        }
    return result
