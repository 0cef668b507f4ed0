"""The 1-euro filter (Casiez, Roussel and Vogel, CHI 2012), vectorised over joints and coordinates.

A first-order low-pass whose cut-off rises with speed: slow motion is smoothed hard (little jitter),
fast motion lightly (little lag). For every sample ``x_i`` at rate ``f`` (Hz):

    dx_i  = (x_i - x̂_{i-1}) * f                       speed estimate (mm/s)
    dx̂_i = a(d_cutoff) * dx_i + (1 - a(d_cutoff)) * dx̂_{i-1}
    fc_i  = min_cutoff + beta * |dx̂_i|                (Hz)
    x̂_i  = a(fc_i) * x_i + (1 - a(fc_i)) * x̂_{i-1}
    a(fc) = 1 / (1 + tau * f),  tau = 1 / (2 pi fc)

with ``x̂_0 = x_0`` and ``dx̂_0 = 0`` (the paper's pseudo-code, derivative taken against the previous
filtered value). It is causal (usable online) and inherently sequential: the loop runs over time
only, each step one handful of numpy operations on all ``J * 3`` tracks.
"""

from __future__ import annotations

import math

import numpy as np

from ._tracks import as_tracks

__all__ = ["one_euro"]


def one_euro(
    points,
    fps: float,
    min_cutoff: float = 1.0,
    beta: float = 0.05,
    d_cutoff: float = 1.0,
    joint_speed: bool = False,
):
    """1-euro filter of every coordinate track.

    Args:
        points: ``(*, T, J, C)`` positions (mm), NaN where missing; numpy or torch.
        fps: frame rate (Hz).
        min_cutoff: cut-off at rest (Hz); lower = less jitter, more lag at low speed.
        beta: cut-off increase per mm/s of speed (Hz per mm/s); higher = less lag when moving.
            The paper's tuning: set ``beta = 0`` and lower ``min_cutoff`` until the still pose is
            steady, then raise ``beta`` until fast moves do not lag.
        d_cutoff: cut-off (Hz) of the speed estimate (the paper uses 1 Hz).
        joint_speed: if True the cut-off of a joint follows the norm of its ``C``-dimensional
            velocity (the same cut-off for x, y and z); else each coordinate uses its own speed.

    Returns:
        Filtered positions, same shape and type. A NaN sample stays NaN and the filter restarts
        (``x̂ = x``, ``dx̂ = 0``) at the first sample after it.
    """
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number of frames per second, got {fps}")
    for name, v in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
        if not float(v) > 0:
            raise ValueError(f"{name} must be > 0 Hz, got {v}")
    if not float(beta) >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    tracks, restore = as_tracks(points)
    x = np.ascontiguousarray(tracks.T)  # (T, N): one row per frame
    T, N = x.shape
    C = int(np.shape(points)[-1])
    out = np.empty_like(x)
    if T == 0 or N == 0:
        return restore(out.T)

    k = 2.0 * math.pi / fps  # a(fc) = r / (1 + r) with r = k * fc
    r_d = k * float(d_cutoff)
    ad = r_d / (1.0 + r_d)
    bk = float(beta) * k
    # e = beta * k * dx̂ (the speed term of r), updated as e = (1 - ad) e + ad * f * beta * k * diff
    keep_d, gain = 1.0 - ad, ad * fps * bk
    one_mk = 1.0 + float(min_cutoff) * k

    e = np.zeros(N)
    diff, tmp = np.empty(N), np.empty(N)
    if joint_speed:  # coordinate c of every joint, and the joint's 1 + r broadcast over coordinates
        e_c = [e[c::C] for c in range(C)]
        speed = np.empty(N // C)
        tmp_j = tmp.reshape(-1, C)
    has_nan = not np.isfinite(x).all()
    if has_nan:
        prev, steps = np.full(N, np.nan), zip(x, out)
    else:
        out[0] = x[0]
        prev, steps = out[0], zip(x[1:], out[1:])
    for xt, ot in steps:
        np.subtract(xt, prev, out=diff)
        np.multiply(e, keep_d, out=e)
        np.multiply(diff, gain, out=tmp)
        np.add(e, tmp, out=e)
        # 1 + r = 1 + k * min_cutoff + |e|;  x̂ = x̂_prev + a * diff = x - diff / (1 + r)
        if joint_speed:
            np.abs(e_c[0], out=speed)
            for ec in e_c[1:]:
                np.hypot(speed, ec, out=speed)
            np.add(speed, one_mk, out=speed)
            tmp_j[:] = speed[:, None]
        else:
            np.abs(e, out=tmp)
            np.add(tmp, one_mk, out=tmp)
        np.divide(diff, tmp, out=tmp)
        np.subtract(xt, tmp, out=ot)
        if has_nan:  # (re)start after a gap: x̂ = x, dx̂ = 0 (NaN stays NaN)
            fresh = np.isnan(ot)
            np.copyto(ot, xt, where=fresh)
            np.copyto(e, 0.0, where=fresh)
        prev = ot
    return restore(out.T)
