"""Offline zero-phase smoothing of 3D trajectories: Butterworth low-pass and Savitzky-Golay.

Both take ``(*, T, J, 3)`` positions (numpy or torch; the same type comes back), filter every
coordinate track along time, and work on NaN-free runs only: a NaN stays NaN and the samples on
either side of a gap are filtered as separate segments. Every run sharing the same frame span is
filtered in one scipy call, so the usual no-gap case is a single call on the whole ``(J*3, T)``
array (one contiguous row per coordinate track).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ._tracks import apply_on_finite_runs, as_tracks

__all__ = ["butterworth", "savgol"]


def _check_fps(fps: float) -> float:
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number of frames per second, got {fps}")
    return fps


def butterworth(points, fps: float, cutoff_hz: float = 6.0, order: int = 4):
    """Zero-phase Butterworth low-pass (forward-backward, ``scipy.signal.sosfiltfilt``).

    Args:
        points: ``(*, T, J, 3)`` positions (mm), NaN where missing; numpy or torch.
        fps: frame rate (Hz).
        cutoff_hz: cut-off frequency (Hz), ``0 < cutoff_hz < fps / 2``.
        order: order of the whole zero-phase filter, even: a Butterworth of order ``order / 2`` runs
            forward and backward (the biomechanics convention, also Pose2Sim's: "4th order, 6 Hz").
            At ``cutoff_hz`` the gain is 0.5 (-6 dB; each pass gives -3 dB).

    Returns:
        Filtered positions, same shape and type. Each NaN-free run is filtered on its own with odd
        extension at both ends (``padlen`` shortened to ``n - 1`` for runs shorter than scipy's
        default of ``3 * (2 * sections + 1)`` samples).
    """
    fps = _check_fps(fps)
    if not 0 < float(cutoff_hz) < fps / 2:
        raise ValueError(f"cutoff_hz must be in (0, fps / 2 = {fps / 2:g}), got {cutoff_hz}")
    if int(order) != order or order < 2 or order % 2:
        raise ValueError(f"order must be an even integer >= 2 (order / 2 per pass), got {order}")
    sos = signal.butter(int(order) // 2, float(cutoff_hz), btype="low", fs=fps, output="sos")
    default_pad = 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum())))

    def run(seg: np.ndarray) -> np.ndarray:
        n = seg.shape[1]
        if n < 2:
            return seg
        return signal.sosfiltfilt(sos, seg, axis=-1, padlen=min(default_pad, n - 1))

    x, restore = as_tracks(points)
    return restore(apply_on_finite_runs(x, run))


def savgol(points, window: int = 11, polyorder: int = 3):
    """Savitzky-Golay smoothing (``scipy.signal.savgol_filter``, ``mode="interp"``).

    Args:
        points: ``(*, T, J, 3)`` positions, NaN where missing; numpy or torch.
        window: window length in frames, odd, ``> polyorder``.
        polyorder: degree of the local polynomial.

    Returns:
        Smoothed positions, same shape and type. A NaN-free run shorter than ``window`` uses the
        longest odd window that fits it; a run of ``polyorder`` frames or fewer is left as is.
    """
    window, polyorder = int(window), int(polyorder)
    if polyorder < 0:
        raise ValueError(f"polyorder must be >= 0, got {polyorder}")
    if window % 2 == 0 or window <= polyorder:
        raise ValueError(f"window must be an odd number of frames > polyorder ({polyorder}), got {window}")

    def run(seg: np.ndarray) -> np.ndarray:
        n = seg.shape[1]
        w = min(window, n if n % 2 else n - 1)
        if w <= polyorder:
            return seg
        return signal.savgol_filter(seg, w, polyorder, axis=-1, mode="interp")

    x, restore = as_tracks(points)
    return restore(apply_on_finite_runs(x, run))
