"""Batching of the multi-view sample dicts (docs/datasets.md) and the per-sample camera rig of a batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from mvpose.geometry.camera import CameraRig

__all__ = ["collate_multiview", "rig_from_batch"]


def _collate_values(key: str, values: list):
    first = values[0]
    if isinstance(first, torch.Tensor):
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) != 1:
            raise ValueError(
                f"collate_multiview: key {key!r} has different shapes across the samples: {sorted(shapes)}; "
                "every sample of a batch must have the same number of views, joints and crop size"
            )
        return torch.stack(values)
    if isinstance(first, np.ndarray):
        return _collate_values(key, [torch.from_numpy(np.asarray(v)) for v in values])
    if isinstance(first, bool | np.bool_):
        return torch.tensor([bool(v) for v in values])
    if isinstance(first, int | np.integer):
        return torch.tensor([int(v) for v in values], dtype=torch.int64)
    if isinstance(first, float | np.floating):
        return torch.tensor([float(v) for v in values], dtype=torch.float64)
    if isinstance(first, Mapping):
        return {k: _collate_values(f"{key}.{k}", [v[k] for v in values]) for k in first}
    return list(values)  # strings, lists of names, None, anything else: kept per sample


def collate_multiview(samples: Sequence[Mapping]) -> dict:
    """Stack a list of multi-view samples into a batch (a ``collate_fn`` for ``DataLoader``).

    Tensors (and numpy arrays) are stacked along a new leading batch dimension ``B``; Python ints
    (``frame``, ``index``) become int64 tensors ``(B,)``, floats float64 and bools bool tensors;
    strings (``subject``, ``action``) and lists (``camera_names``) are kept as lists of length
    ``B``. All samples must have the same keys.

    Example:
        >>> loader = DataLoader(dataset, batch_size=8, collate_fn=collate_multiview)  # doctest: +SKIP
    """
    samples = list(samples)
    if not samples:
        raise ValueError("collate_multiview: no samples")
    keys = list(samples[0])
    for i, s in enumerate(samples[1:], start=1):
        if set(s) != set(keys):
            diff = sorted(set(s) ^ set(keys))
            raise ValueError(f"collate_multiview: sample {i} has other keys than sample 0 (differ: {diff})")
    return {k: _collate_values(k, [s[k] for s in samples]) for k in keys}


def rig_from_batch(batch: Mapping) -> CameraRig:
    """The per-sample camera rig ``(B, V, ...)`` of a collated batch (or ``(V, ...)`` of one sample).

    ``K, R, t, dist`` come from the batch (float64, crop pixels); ``image_size`` is the crops'
    ``(W, H)`` from ``images``; camera names are the batch's when every sample has the same
    names (else ``cam0..``). The rig's projection matrices map world mm to the pixels of
    ``batch["images"]``, the frame of ``batch["keypoints_2d"]``.
    """
    for k in ("K", "R", "t"):
        if k not in batch:
            raise KeyError(f"rig_from_batch: the batch has no {k!r}; expected a multi-view sample batch")
    K = torch.as_tensor(batch["K"])
    names = batch.get("camera_names")
    if names is not None and len(names) and not isinstance(names[0], str):  # a batch: list of lists
        names = names[0] if all(list(n) == list(names[0]) for n in names) else None
    if names is not None and len(set(names)) != len(names):
        names = None
    size = None
    images = batch.get("images")
    if isinstance(images, torch.Tensor) and images.ndim >= 4:
        V = K.shape[-3]
        size = torch.tensor([images.shape[-1], images.shape[-2]], dtype=torch.int64).expand(V, 2).clone()
    return CameraRig(
        K=K,
        R=torch.as_tensor(batch["R"]),
        t=torch.as_tensor(batch["t"]),
        dist=torch.as_tensor(batch["dist"]) if batch.get("dist") is not None else None,
        names=tuple(names) if names is not None else None,
        image_size=size,
    )
