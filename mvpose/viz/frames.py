"""Choosing frames of a result: ``a:b[:step]`` ranges of frame numbers."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["select_frames", "slice_result"]


def select_frames(frame_indices, spec: str | None) -> np.ndarray:
    """Positions of the frames whose *numbers* lie in ``spec``.

    Args:
        frame_indices: ``(T,)`` frame numbers (e.g. ``result.frame_indices``).
        spec: ``"a:b"`` (numbers ``a <= n < b``, either side may be empty), ``"a:b:step"`` (every
            ``step``-th selected frame), a single number ``"n"``, or ``None`` / ``""`` for all.

    Returns:
        ``(F,)`` int64 positions, in order. ``ValueError`` for a malformed spec or an empty selection.

    Example:
        >>> select_frames(np.arange(10, 20), "12:15").tolist()
        [2, 3, 4]
    """
    fi = np.asarray(frame_indices, np.int64).reshape(-1)
    if spec is None or str(spec).strip() == "":
        return np.arange(len(fi))
    parts = str(spec).strip().split(":")
    try:
        nums = [None if p.strip() == "" else int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--frames {spec!r}: expected a:b or a:b:step with integer frame numbers") from None
    if len(nums) == 1:
        if nums[0] is None:
            raise ValueError(f"--frames {spec!r}: expected a:b, a:b:step or one frame number")
        lo, hi, step = nums[0], nums[0] + 1, 1
    elif len(nums) in (2, 3):
        lo, hi = nums[0], nums[1]
        step = 1 if len(nums) == 2 or nums[2] is None else nums[2]
    else:
        raise ValueError(f"--frames {spec!r}: expected a:b or a:b:step")
    if step < 1:
        raise ValueError(f"--frames {spec!r}: step must be >= 1")
    keep = np.ones(len(fi), bool)
    if lo is not None:
        keep &= fi >= lo
    if hi is not None:
        keep &= fi < hi
    pos = np.flatnonzero(keep)[::step]
    if pos.size == 0:
        have = f"{fi.min()}..{fi.max()}" if fi.size else "none"
        raise ValueError(f"--frames {spec!r} selects no frame (the result has frame numbers {have})")
    return pos


def slice_result(result, positions: np.ndarray):
    """A copy of a triangulation result (dataclass) keeping only ``positions`` along time."""
    p = np.asarray(positions, np.int64)
    return dataclasses.replace(
        result,
        points_3d_mm=np.asarray(result.points_3d_mm)[p],
        reprojection_error_px=np.asarray(result.reprojection_error_px)[p],
        views_used=np.asarray(result.views_used)[p],
        person_index=np.asarray(result.person_index)[p],
        frame_indices=np.asarray(result.frame_indices)[p],
    )
