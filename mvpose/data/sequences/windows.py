"""Temporal windows for the temporal stage, with VideoPose3D's generator semantics (reimplemented).

Training: :class:`WindowDataset` (a map-style ``Dataset``; :meth:`WindowDataset.batches` is the plain
generator, :class:`WindowBatches` the ``IterableDataset``) cuts every sequence into chunks the way
VideoPose3D's ``ChunkedGenerator`` does:

* receptive field ``rf`` (odd), ``pad = (rf - 1) // 2``; ``causal_shift`` = ``pad`` for a causal model,
  else 0 (any value in ``[0, pad]`` is accepted);
* a sequence of ``T`` frames is split into ``n = ceil(T / chunk_length)`` chunks of ``chunk_length``
  target frames, centred: chunk ``k`` covers frames ``[b_k, b_k + chunk_length)`` with
  ``b_k = k * chunk_length - (n * chunk_length - T) // 2`` (the overhang is split between both ends);
* the input window of a chunk is frames ``[b_k - pad - causal_shift, b_k + chunk_length + pad -
  causal_shift)`` (``chunk_length + rf - 1`` frames), so target frame ``b_k + j`` sits at input index
  ``pad + causal_shift + j`` (the centre of its receptive field, or its last frame when causal);
* frames outside ``[0, T)`` are edge-replicated (``np.pad(..., "edge")``), for inputs and targets alike;
* ``stride`` (VideoPose3D's ``--downsample``) first keeps frames ``stride_offset::stride`` of every
  sequence (inputs, targets together); windows are then cut from the downsampled sequences;
* with ``flip_augment`` every chunk appears twice (VideoPose3D's ``augment``): as is, then mirrored:
  x of the input negated and its joints swapped (``flip_indices``), the same for the target
  (``target_flip_indices``), and the camera mirrored (:func:`~mvpose.data.sequences.flip.mirror_rig`).
  Inputs must therefore be centred coordinates: normalised 2D (2D -> 3D lifting) or camera-frame 3D
  (3D -> 3D refinement); the input dimension ``D`` is whatever the arrays hold;
* window order is VideoPose3D's (per sequence: its chunks, then their flipped copies); shuffling
  draws a permutation from a seed (and epoch) or a ``torch.Generator``.

Evaluation: :func:`iter_sequences` is VideoPose3D's ``UnchunkedGenerator``: each whole sequence,
edge-padded by ``(pad + causal_shift, pad - causal_shift)`` frames, with the flipped copy as a second
batch row when ``flip_augment``; :func:`flip_average` is ``run.py``'s test-time augmentation (model on
both copies, un-flip the second output, mean).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from mvpose.geometry.camera import CameraRig
from mvpose.skeleton import H36M17

from .flip import flip_pose, mirror_rig

__all__ = [
    "WindowDataset",
    "WindowBatches",
    "chunk_starts",
    "pad_sequence",
    "iter_sequences",
    "flip_average",
]


def _check_rf(receptive_field: int, causal: bool, causal_shift: int | None) -> tuple[int, int]:
    rf = int(receptive_field)
    if rf < 1 or rf % 2 == 0:
        raise ValueError(f"receptive_field must be a positive odd number (e.g. 27, 81, 243), got {rf}")
    pad = (rf - 1) // 2
    shift = (pad if causal else 0) if causal_shift is None else int(causal_shift)
    if not 0 <= shift <= pad:
        raise ValueError(f"causal_shift must lie in [0, pad={pad}], got {shift}")
    return pad, shift


def chunk_starts(num_frames: int, chunk_length: int) -> np.ndarray:
    """First target frame of each chunk of a ``num_frames`` sequence (VideoPose3D's centred tiling).

    Example:
        >>> chunk_starts(10, 4)  # 3 chunks of 4 cover 12 frames: one frame of overhang per end
        array([-1,  3,  7])
    """
    n = (int(num_frames) + chunk_length - 1) // chunk_length
    offset = (n * chunk_length - int(num_frames)) // 2
    return np.arange(n) * chunk_length - offset


def _to_tensor(x, dtype, what: str, i: int) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).to(dtype)
    if t.ndim != 3:
        raise ValueError(f"{what}[{i}]: expected a (T, J, D) array, got shape {tuple(t.shape)}")
    if t.shape[0] < 1:
        raise ValueError(f"{what}[{i}]: empty sequence")
    return t


class WindowDataset(Dataset):
    """Chunked windows over a list of sequences (VideoPose3D's ``ChunkedGenerator``, see the module doc).

    Args:
        inputs: ``S`` sequences ``(T_i, J, D)`` (numpy or torch): normalised 2D (``D = 2``) or
            camera-frame 3D (``D = 3``), or any centred per-joint features whose channel 0 is x.
        targets: ``S`` sequences ``(T_i, J_t, D_t)`` (e.g. camera-frame 3D mm) or ``None``.
        receptive_field: ``rf``, odd; ``pad = (rf - 1) // 2``.
        chunk_length: target frames per window (1 for single-frame models).
        causal: causal model (``causal_shift = pad``); ``causal_shift`` overrides it.
        stride: keep every ``stride``-th frame (from ``stride_offset``) before windowing.
        flip_augment: add the mirrored copy of every window.
        flip_indices, target_flip_indices: joint permutations for inputs and targets (default
            :data:`~mvpose.skeleton.H36M17`'s; the target's defaults to the input's).
        cameras: ``S`` one-view :class:`~mvpose.geometry.camera.CameraRig` (with ``image_size``), or
            ``None``; each sample then carries its camera (mirrored for flipped windows).
        ids: ``S`` labels of the sequences, e.g. ``(subject, action, camera)``; kept in ``sequence_ids``.
        dtype: dtype of the returned input/target tensors.

    A sample (``dataset[i]``) is a dict of tensors: ``input (chunk_length + rf - 1, J, D)``,
    ``target (chunk_length, J_t, D_t)`` and ``target_valid (chunk_length,)`` (False on edge-replicated
    frames) when targets are given, ``flip ()`` bool, ``seq ()`` and ``start ()`` (first target
    frame, in downsampled frames), and ``camera`` (dict ``K (3, 3)``, ``R (3, 3)``, ``t (3,)``,
    ``dist (5,)``, ``image_size (2,)``) when cameras are given. :meth:`batches` yields the same
    dict with a leading batch dimension.

    Example:
        >>> ds = WindowDataset([np.zeros((100, 17, 2))], [np.zeros((100, 17, 3))], receptive_field=27)
        >>> len(ds), ds[0]["input"].shape, ds[0]["target"].shape
        (100, torch.Size([27, 17, 2]), torch.Size([1, 17, 3]))
    """

    def __init__(
        self,
        inputs: Sequence,
        targets: Sequence | None = None,
        *,
        receptive_field: int = 243,
        chunk_length: int = 1,
        causal: bool = False,
        causal_shift: int | None = None,
        stride: int = 1,
        stride_offset: int = 0,
        flip_augment: bool = False,
        flip_indices: Sequence[int] | None = H36M17.flip_indices,
        target_flip_indices: Sequence[int] | None = None,
        cameras: Sequence[CameraRig] | None = None,
        ids: Sequence | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        self.pad, self.causal_shift = _check_rf(receptive_field, causal, causal_shift)
        self.receptive_field = int(receptive_field)
        self.chunk_length = int(chunk_length)
        if self.chunk_length < 1:
            raise ValueError(f"chunk_length must be >= 1, got {chunk_length}")
        self.stride, self.stride_offset = int(stride), int(stride_offset)
        if self.stride < 1 or not 0 <= self.stride_offset < self.stride:
            raise ValueError(
                f"need stride >= 1 and 0 <= stride_offset < stride, got {stride}, {stride_offset}"
            )
        if len(inputs) == 0:
            raise ValueError("WindowDataset: no sequences")
        xs = [_to_tensor(x, dtype, "inputs", i) for i, x in enumerate(inputs)]
        J, D = xs[0].shape[1:]
        for i, x in enumerate(xs):
            if x.shape[1:] != (J, D):
                raise ValueError(
                    f"inputs[{i}]: shape {tuple(x.shape)} differs from inputs[0]'s (T, {J}, {D})"
                )
        ys = None
        if targets is not None:
            if len(targets) != len(xs):
                raise ValueError(f"{len(xs)} input sequences but {len(targets)} target sequences")
            ys = [_to_tensor(y, dtype, "targets", i) for i, y in enumerate(targets)]
            for i, (x, y) in enumerate(zip(xs, ys)):
                if y.shape[0] != x.shape[0] or y.shape[1:] != ys[0].shape[1:]:
                    raise ValueError(
                        f"targets[{i}]: shape {tuple(y.shape)}; expected {x.shape[0]} frames (inputs[{i}]) "
                        f"and the joints/channels of targets[0] {tuple(ys[0].shape[1:])}"
                    )
        sl = slice(self.stride_offset, None, self.stride)
        xs = [x[sl] for x in xs]
        ys = [y[sl] for y in ys] if ys is not None else None
        if any(x.shape[0] == 0 for x in xs):
            raise ValueError(f"a sequence has no frame left after stride {stride}, offset {stride_offset}")
        self.flip_augment = bool(flip_augment)
        self.flip_indices = tuple(range(J)) if flip_indices is None else tuple(int(i) for i in flip_indices)
        if len(self.flip_indices) != J:
            raise ValueError(f"flip_indices has {len(self.flip_indices)} entries for {J} input joints")
        tfi = self.flip_indices if target_flip_indices is None else tuple(int(i) for i in target_flip_indices)
        if ys is not None and len(tfi) != ys[0].shape[1]:
            raise ValueError(f"target_flip_indices has {len(tfi)} entries for {ys[0].shape[1]} target joints")
        self.target_flip_indices = tfi

        self.lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.long)
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths
        self._x = torch.cat(xs)
        self._y = torch.cat(ys) if ys is not None else None
        self.sequence_ids = list(ids) if ids is not None else list(range(len(xs)))
        if len(self.sequence_ids) != len(xs):
            raise ValueError(f"{len(self.sequence_ids)} ids for {len(xs)} sequences")

        seq, start, flip = [], [], []
        for i, T in enumerate(self.lengths.tolist()):
            b = torch.from_numpy(chunk_starts(T, self.chunk_length))
            for f in (False, True) if self.flip_augment else (False,):
                seq.append(torch.full_like(b, i))
                start.append(b)
                flip.append(torch.full(b.shape, f))
        self._seq, self._start, self._flip = torch.cat(seq), torch.cat(start), torch.cat(flip)

        self._cams = None
        if cameras is not None:
            if len(cameras) != len(xs):
                raise ValueError(f"{len(cameras)} cameras for {len(xs)} sequences")
            self._cams = _camera_table(cameras)

    # ------------------------------------------------------------------ structure
    def __len__(self) -> int:
        return self._seq.numel()

    @property
    def num_sequences(self) -> int:
        return self.lengths.numel()

    @property
    def input_length(self) -> int:
        """Frames per input window: ``chunk_length + receptive_field - 1``."""
        return self.chunk_length + 2 * self.pad

    def windows(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(seq, start, flip)`` of every window, in dataset order."""
        return self._seq.clone(), self._start.clone(), self._flip.clone()

    def sequence(self, i: int, which: str = "input") -> Tensor:
        """The (downsampled) ``input`` or ``target`` sequence ``i``, ``(T_i, J, D)``."""
        data = self._x if which == "input" else self._y
        o, n = int(self.offsets[i]), int(self.lengths[i])
        return data[o : o + n]

    # ------------------------------------------------------------------ sampling
    def gather(self, indices) -> dict:
        """Batch of the windows ``indices`` (vectorised; no Python loop over the batch)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        seq, start, flip = self._seq[idx], self._start[idx], self._flip[idx]
        T, off = self.lengths[seq][:, None], self.offsets[seq][:, None]
        first = start[:, None] - self.pad - self.causal_shift
        rel = first + torch.arange(self.input_length)
        x = self._x[torch.minimum(rel.clamp(min=0), T - 1) + off]
        out = {"input": x, "flip": flip, "seq": seq, "start": start}
        if self._y is not None:
            rel = start[:, None] + torch.arange(self.chunk_length)
            out["target"] = self._y[torch.minimum(rel.clamp(min=0), T - 1) + off]
            out["target_valid"] = (rel >= 0) & (rel < T)
        if flip.any():
            out["input"][flip] = flip_pose(x[flip], self.flip_indices)
            if self._y is not None:
                out["target"][flip] = flip_pose(out["target"][flip], self.target_flip_indices)
        if self._cams is not None:
            f = flip.long()
            out["camera"] = {k: v[f, seq] for k, v in self._cams.items()}
        return out

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        b = self.gather([i % len(self)])
        return {
            k: ({kk: vv[0] for kk, vv in v.items()} if isinstance(v, dict) else v[0]) for k, v in b.items()
        }

    def order(
        self, shuffle: bool = True, seed: int = 0, epoch: int = 0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Window order of one epoch: ``arange`` or a permutation.

        The permutation comes from ``generator`` when given (it advances), else from a generator
        seeded by ``(seed, epoch)``: the same seed and epoch give the same order on every machine.
        """
        n = len(self)
        if not shuffle:
            return torch.arange(n)
        if generator is None:
            state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
        return torch.randperm(n, generator=generator)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[dict]:
        """Plain generator of batches (dicts as :meth:`gather`) for one epoch; see :meth:`order`.

        The last batch is smaller unless ``drop_last`` (VideoPose3D keeps it).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = self.order(shuffle, seed, epoch, generator)
        n = len(order) - (len(order) % batch_size if drop_last else 0)
        for s in range(0, n, batch_size):
            yield self.gather(order[s : s + batch_size])

    # ------------------------------------------------------------------ outputs
    def reassemble(self, outputs, indices=None) -> list[Tensor]:
        """Put per-window outputs back into sequences.

        Args:
            outputs: ``(N, chunk_length, ...)`` outputs of the windows ``indices`` (default: every
                non-flipped window, in dataset order; flipped windows must be un-flipped first).
            indices: ``N`` window indices.

        Returns:
            ``S`` tensors ``(T_i, ...)`` (downsampled frames); frames no window covers are NaN.
        """
        outputs = torch.as_tensor(outputs)
        idx = torch.nonzero(~self._flip).squeeze(1) if indices is None else torch.as_tensor(indices).long()
        if outputs.shape[:2] != (idx.numel(), self.chunk_length):
            raise ValueError(
                f"outputs have shape {tuple(outputs.shape)}; "
                f"expected ({idx.numel()}, {self.chunk_length}, ...)"
            )
        dt = outputs.dtype if outputs.is_floating_point() else torch.float64
        full = torch.full((int(self.lengths.sum()), *outputs.shape[2:]), float("nan"), dtype=dt)
        seq, start = self._seq[idx], self._start[idx]
        rel = start[:, None] + torch.arange(self.chunk_length)
        ok = (rel >= 0) & (rel < self.lengths[seq][:, None])
        full[(rel + self.offsets[seq][:, None])[ok]] = outputs[ok].to(dt)
        return list(torch.split(full, self.lengths.tolist()))


def _camera_table(cameras: Sequence[CameraRig]) -> dict[str, Tensor]:
    """``{name: (2, S, ...)}``: row 0 the cameras, row 1 their mirror images."""
    rows = {k: [[], []] for k in ("K", "R", "t", "dist", "image_size")}
    for i, cam in enumerate(cameras):
        if not isinstance(cam, CameraRig) or cam.num_views != 1 or len(cam.batch_shape):
            raise ValueError(f"cameras[{i}]: expected a one-view CameraRig, got {cam!r}")
        if cam.image_size is None:
            raise ValueError(f"cameras[{i}]: the camera has no image_size (needed to mirror it)")
        for r, c in enumerate((cam, mirror_rig(cam))):
            for k in rows:
                rows[k][r].append(getattr(c, k)[0])
    return {k: torch.stack([torch.stack(v[0]), torch.stack(v[1])]) for k, v in rows.items()}


class WindowBatches(IterableDataset):
    """An ``IterableDataset`` of batches of a :class:`WindowDataset` (use ``DataLoader(batch_size=None)``).

    Each epoch's order is :meth:`WindowDataset.order` ``(shuffle, seed, epoch)``; call
    :meth:`set_epoch` between epochs. With several loader workers, worker ``k`` yields batches
    ``k, k + n, ...``, so together they yield every batch once.
    """

    def __init__(
        self,
        dataset: WindowDataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ):
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), bool(shuffle)
        self.seed, self.drop_last, self.epoch = int(seed), bool(drop_last), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        k, n = (0, 1) if info is None else (info.id, info.num_workers)
        it = self.dataset.batches(
            self.batch_size, self.shuffle, self.seed, self.epoch, drop_last=self.drop_last
        )
        for b, batch in enumerate(it):
            if b % n == k:
                yield batch


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def pad_sequence(x, pad: int, causal_shift: int = 0, time_dim: int = -3):
    """Edge-replicate ``x`` along time: ``pad + causal_shift`` frames before, ``pad - causal_shift`` after.

    ``x`` is a numpy array or tensor with time at ``time_dim`` (default ``(*, T, J, D)``); the result
    has ``T + 2 pad`` frames, as VideoPose3D's ``UnchunkedGenerator`` builds its input.
    """
    left, right = pad + causal_shift, pad - causal_shift
    if left < 0 or right < 0:
        raise ValueError(f"pad_sequence: causal_shift {causal_shift} outside [-pad, pad] (pad={pad})")
    T = x.shape[time_dim]
    idx = np.clip(np.arange(-left, T + right), 0, T - 1)
    if isinstance(x, Tensor):
        return x.index_select(time_dim, torch.as_tensor(idx, device=x.device))
    return np.take(x, idx, axis=time_dim)


def iter_sequences(
    inputs: Sequence,
    targets: Sequence | None = None,
    *,
    receptive_field: int = 243,
    causal: bool = False,
    causal_shift: int | None = None,
    stride: int = 1,
    flip_augment: bool = True,
    flip_indices: Sequence[int] = H36M17.flip_indices,
    dtype: torch.dtype = torch.float32,
) -> Iterator[dict]:
    """Whole sequences for evaluation (VideoPose3D's ``UnchunkedGenerator``).

    Yields, per sequence ``i``: ``{"seq": i, "input": (B, T + rf - 1, J, D), "target": (1, T, J_t, D_t)}``
    with ``B = 2`` when ``flip_augment`` (row 1 mirrored as in :func:`~.flip.flip_pose`) else 1.
    The input is edge-padded by :func:`pad_sequence`; a valid-convolution model returns ``T`` frames.
    Targets are not flipped (VideoPose3D evaluates against the first row only).
    """
    pad, shift = _check_rf(receptive_field, causal, causal_shift)
    for i, x in enumerate(inputs):
        x = _to_tensor(x, dtype, "inputs", i)[::stride]
        xp = pad_sequence(x, pad, shift)[None]
        if flip_augment:
            xp = torch.cat([xp, flip_pose(xp, flip_indices)])
        out = {"seq": i, "input": xp}
        if targets is not None:
            out["target"] = _to_tensor(targets[i], dtype, "targets", i)[::stride][None]
        yield out


def flip_average(
    model_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    flip_indices: Sequence[int] = H36M17.flip_indices,
    output_flip_indices: Sequence[int] | None = None,
) -> Tensor:
    """Test-time flip augmentation (VideoPose3D's ``evaluate``): mean of ``f(x)`` and ``unflip(f(flip(x)))``.

    Args:
        model_fn: maps a batch ``(2B, ...)`` to outputs ``(2B, ..., J_out, D_out)`` whose channel 0 is x
            (camera-frame 3D for a lifter or refiner).
        x: ``(B, ..., J, D)`` centred inputs (normalised 2D or camera-frame 3D).
        flip_indices: the input's joint permutation; ``output_flip_indices`` the output's (default: the
            same).

    Returns:
        ``(B, ..., J_out, D_out)``. The model runs once, on ``cat([x, flip(x)])``; the second half of
        its output is mirrored back (x negated, joints swapped) and averaged with the first. For a
        mirror-equivariant ``model_fn`` the result is ``model_fn(x)``.
    """
    x = torch.as_tensor(x)
    B = x.shape[0]
    y = model_fn(torch.cat([x, flip_pose(x, flip_indices)]))
    ofi = flip_indices if output_flip_indices is None else output_flip_indices
    return torch.stack([y[:B], flip_pose(y[B:], ofi)]).mean(0)
