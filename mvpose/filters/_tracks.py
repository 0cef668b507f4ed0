"""Array plumbing shared by the filters: numpy/torch in and out, one row per track, finite runs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["as_tracks", "finite_runs", "apply_on_finite_runs", "is_tensor", "to_like"]


def is_tensor(x) -> bool:
    """True for a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch")


def to_like(arr: np.ndarray, like):
    """``arr`` as a contiguous numpy array, or as a tensor with ``like``'s dtype and device."""
    arr = np.ascontiguousarray(arr)
    if not is_tensor(like):
        return arr
    import torch

    return torch.from_numpy(arr).to(dtype=like.dtype, device=like.device)


def as_tracks(points, name: str = "points") -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    """Copy ``points (*, T, J, C)`` into a C-contiguous float64 ``(N, T)`` array, one row per track.

    ``N = prod(*) * J * C``: every coordinate of every joint is a track along time, stored
    contiguously (what scipy's filters want for ``axis=-1``).

    Args:
        points: numpy array or torch tensor, at least 3 dimensions, time at axis ``-3``.
        name: how the argument is named in error messages.

    Returns:
        ``(x, restore)``: ``restore(y)`` turns an ``(N, T)`` result back into the input's shape and
        type (same numpy dtype, or a tensor of the same dtype and device).
    """
    arr = points.detach().cpu().double().numpy() if is_tensor(points) else np.asarray(points)
    if arr.ndim < 3:
        raise ValueError(f"{name}: expected (*, T, J, 3) with time at axis -3, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    out_dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
    moved = np.moveaxis(arr, -3, -1)  # (*, J, C, T)
    shape = moved.shape
    x = np.array(moved.reshape(-1, shape[-1]), dtype=np.float64, order="C")

    def restore(y: np.ndarray):
        out = np.moveaxis(np.asarray(y).reshape(shape), -1, -3).astype(out_dtype, copy=False)
        return to_like(out, points)

    return x, restore


def finite_runs(ok: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Runs of True along time, grouped by their frame span.

    Args:
        ok: ``(N, T)`` bool, True where a sample is usable.

    Returns:
        ``[(start, stop, rows), ...]``: frames ``start:stop`` are True in every track of ``rows``
        (int array) and the run is maximal there. Tracks that share a span share one entry, so the
        usual case (every joint seen in the same frames) is one entry.
    """
    N, T = ok.shape
    if ok.all():
        return [(0, T, np.arange(N))]
    pad = np.zeros((N, 1), np.int8)
    d = np.diff(np.concatenate([pad, ok.astype(np.int8), pad], axis=1), axis=1)  # (N, T + 1)
    s_row, s_t = np.nonzero(d == 1)  # sorted by row, then time: starts and stops pair up
    _, e_t = np.nonzero(d == -1)
    if s_t.size == 0:
        return []
    keys = s_t.astype(np.int64) * (T + 1) + e_t
    uniq, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(s_row[order], np.cumsum(np.bincount(inverse, minlength=uniq.size))[:-1])
    return [(int(k // (T + 1)), int(k % (T + 1)), rows) for k, rows in zip(uniq, groups)]


def apply_on_finite_runs(x: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``fn`` to every NaN-free run of ``x (N, T)`` (tracks sharing a span in one call).

    ``fn`` maps a ``(k, n)`` block (``k`` tracks, ``n`` consecutive frames) to an array of the same
    shape. NaN samples stay NaN; the common no-gap case is a single call on the whole array.
    """
    runs = finite_runs(np.isfinite(x))
    if len(runs) == 1 and runs[0][1] - runs[0][0] == x.shape[1] and runs[0][2].size == x.shape[0]:
        return fn(x)
    out = np.full_like(x, np.nan)
    for start, stop, rows in runs:
        if rows.size == x.shape[0]:
            out[:, start:stop] = fn(x[:, start:stop])
        else:
            out[rows, start:stop] = fn(x[rows, start:stop])
    return out
