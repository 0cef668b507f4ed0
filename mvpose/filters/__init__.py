"""Temporal filters and gap filling for 3D joint trajectories ``(*, T, J, 3)`` in mm.

Every function takes numpy arrays or torch tensors and returns the same type (dtype and device
kept), computes in float64, and is NaN-aware: filters run on NaN-free runs only and NaN stays NaN.

* :func:`butterworth`: zero-phase Butterworth low-pass (``sosfiltfilt``), cut-off in Hz.
* :func:`savgol`: Savitzky-Golay smoothing.
* :func:`one_euro`: the causal, speed-adaptive 1-euro filter (Casiez et al. 2012).
* :func:`fill_gaps` / :func:`find_gaps`: interpolate gaps of at most ``max_gap`` frames; a
  :class:`GapReport` lists every gap (joint, start, length, filled or why not).
* :func:`smooth_trajectories`: fill, then filter, in one call (what ``mvpose export`` runs).

See docs/export.md for the measured throughput.
"""

from __future__ import annotations

from .gaps import INTERPOLATIONS, Gap, GapReport, fill_gaps, find_gaps
from .one_euro import one_euro
from .zero_phase import butterworth, savgol

__all__ = [
    "FILTERS",
    "INTERPOLATIONS",
    "Gap",
    "GapReport",
    "butterworth",
    "fill_gaps",
    "find_gaps",
    "one_euro",
    "savgol",
    "smooth_trajectories",
]

#: filter names of :func:`smooth_trajectories` and ``mvpose export --filter``
FILTERS = ("none", "butterworth", "savgol", "oneeuro")


def smooth_trajectories(
    points,
    fps: float | None = None,
    filter: str = "butterworth",
    max_gap: int = 10,
    interpolation: str = "cubic",
    joint_names=None,
    **params,
):
    """Fill short gaps, then filter: the usual clean-up of triangulated 3D joints.

    Args:
        points: ``(*, T, J, 3)`` positions (mm), NaN where missing; numpy or torch.
        fps: frame rate (Hz); required by ``"butterworth"`` and ``"oneeuro"``.
        filter: one of :data:`FILTERS`.
        max_gap, interpolation: see :func:`fill_gaps`.
        joint_names: ``J`` names for the report.
        **params: the filter's own arguments (``cutoff_hz``, ``order``; ``window``, ``polyorder``;
            ``min_cutoff``, ``beta``, ``d_cutoff``, ``joint_speed``).

    Returns:
        ``(smoothed, report)``: same shape and type as ``points``; NaN where gaps stayed unfilled.
    """
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; expected one of {', '.join(FILTERS)}")
    if filter in ("butterworth", "oneeuro") and fps is None:
        raise ValueError(f"filter {filter!r} needs the frame rate (fps)")
    filled, report = fill_gaps(points, max_gap=max_gap, method=interpolation, joint_names=joint_names)
    if filter == "none":
        if params:
            raise ValueError(f"filter 'none' takes no parameters, got {sorted(params)}")
        return filled, report
    if filter == "butterworth":
        return butterworth(filled, fps, **params), report
    if filter == "savgol":
        return savgol(filled, **params), report
    return one_euro(filled, fps, **params), report
