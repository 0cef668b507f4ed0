"""ContextPose (Ma et al., CVPR 2021, "Context Modeling in 3D Human Pose Estimation: A Unified
Perspective"): a pictorial-structure context-attention block inside the volumetric V2V.

The block works on the V2V bottleneck ``x (B, 3J, *S)`` (``N = prod(S)`` voxels, joint ``j`` owns the
channel block ``c(j) = [3j, 3j + 3)``):

1. ``X = W_pi(x)`` (grouped 1x1x1 conv), ``g = atten_conv(x)`` (grouped 1x1x1 conv, one channel per
   joint), global attention ``a_j = softmax_voxels(g_j)``;
2. ``U_j = X_c(j) * a_j``; pooled ``S_j = sum_q U_j(q)``;
3. limb prior: grid points ``r_p = delta * index`` with ``delta = cuboid_size / (m - 1)`` per axis,
   ``e_l(p, q) = -(|r_p - r_q| - mu_l)^2 / (2 T sigma_l^2 + 0.1)``, ``M_l = softmax_q(e_l)``;
4. for limb ``l = (j0, j1)`` and each endpoint ``j``:
   ``P_lj(p) = sum_q M_l[p, q] U_j(q) / sum_q M_l[p, q] a_j(q)``;
5. joint ``k`` sees ``F_k``: for each joint ``m``, ``P_lm`` if ``m`` is a neighbour of ``k`` through limb
   ``l``, else the pooled ``S_m`` (``k``'s own block is ``S_k``); ``out = concat_k conv_k(F_k) + X``.

Speed and memory. The reference caches the dense prior ``(L, N, N)`` (1 GiB at the published 16^3
grid) and materialises ``M_l * U_j`` products. Here the prior is never materialised: ``e_l`` depends
only on the offset ``q - p``, so ``M_l @ v`` is a 3D convolution of ``v`` (and of ones, for the row
sums) with ``exp(e_l(d) - max e_l)``; :func:`limb_propagate` computes it with zero-padded float64
FFTs (``O(L K m^3 log m)``). Two precision guards keep it equal to the dense formula: a limb whose
centre rows reach only logits far below the global maximum (a limb longer than half the cuboid) is
computed by exact per-row softmax rows, built a chunk at a time (``chunk_elems``, the backward
rebuilds them); and the rows whose attention mass ``M_l a`` is tiny next to the channel's largest
(peaked attention, below the FFT's absolute precision) are recomputed exactly (:data:`RELATIVE_FLOOR`),
per (limb, voxel) pair, the row's logits gathered from the table of ``e_l`` at every offset.
``F_k`` is not materialised either: only neighbour blocks vary over voxels, so
``conv_k(F_k) = W_k S + sum_{m ~ k} W_k[:, c(m)] (P_lm - S_m)``.

Volumes are ``(B, C, X, Y, Z)``, flattened in C order. Units: mm. State-dict names follow the
reference (``volume_net.encoder_decoder.mid_res.atten_conv.{W_pi, atten_conv, convlist.k}``,
``mid_res.res_branch.{0, 2, 3}``) so its checkpoints load unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvpose.skeleton import H36M17_LT_LIMBS

__all__ = [
    "DEFAULT_CHUNK_ELEMS",
    "limb_prior_logits",
    "limb_prior_rows",
    "limb_propagate",
    "LIMB_PROPAGATE_METHODS",
    "FFT_MAX_ROW_DEFICIT",
    "ContextAttention",
    "ContextResBlock",
    "context_v2v",
    "global_attention_target",
    "global_attention_loss",
    "ContextPoseNet",
    "load_official_contextpose",
]

#: default bound on the number of prior entries built at once (``L * rows * N``): 32 MiB in float32
DEFAULT_CHUNK_ELEMS = 2**23
_PRIOR_EPS = 0.1  # the reference's only epsilon, in the exponent's denominator


# --------------------------------------------------------------------------------------- limb prior
def _grid_index(grid_shape: Sequence[int], device) -> Tensor:
    """``(N, 3)`` int64 voxel indices, C order."""
    axes = [torch.arange(int(s), device=device) for s in grid_shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(axes))


def _grid_spacing(grid_shape: Sequence[int], cuboid_size: float) -> Tensor:
    """Per-axis spacing of the prior's grid: ``cuboid_size / (m - 1)`` (the reference's quirk: not
    the true spacing of the pooled voxels)."""
    return torch.tensor([float(cuboid_size) / max(int(s) - 1, 1) for s in grid_shape], dtype=torch.float64)


def limb_prior_logits(
    distance: Tensor, limb_mean: Tensor, limb_std: Tensor, temperature: float = 1500.0
) -> Tensor:
    """``e_l = -(d - mu_l)^2 / (2 T sigma_l^2 + 0.1)`` for every limb.

    Args:
        distance: ``(*)`` distances in mm.
        limb_mean, limb_std: ``(L,)`` mm.

    Returns:
        ``(L, *)`` in ``distance``'s dtype.
    """
    shape = (-1,) + (1,) * distance.ndim
    mu = limb_mean.to(distance).reshape(shape)
    den = (2.0 * float(temperature)) * limb_std.to(distance).reshape(shape) ** 2 + _PRIOR_EPS
    return -((distance.unsqueeze(0) - mu) ** 2) / den


def limb_prior_rows(
    rows: Tensor,
    grid_shape: Sequence[int],
    limb_mean: Tensor,
    limb_std: Tensor,
    cuboid_size: float = 2500.0,
    temperature: float = 1500.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Rows ``p`` of the dense limb prior ``M_l[p, :]`` (exactly the reference's values).

    Args:
        rows: ``(c,)`` flat (C-order) voxel indices ``p``.
        grid_shape: the context grid ``(m0, m1, m2)``.
        limb_mean, limb_std: ``(L,)`` mm.
        cuboid_size: cube side in mm (grid spacing ``cuboid_size / (m - 1)``).
        temperature: ``T``.

    Returns:
        ``(L, c, N)``, each row a softmax over ``q``.
    """
    device = rows.device
    idx = _grid_index(grid_shape, device)
    spacing = _grid_spacing(grid_shape, cuboid_size).to(device)
    offsets = (idx[rows][:, None, :] - idx[None, :, :]).to(torch.float64) * spacing  # (c, N, 3)
    distance = torch.linalg.vector_norm(offsets, dim=-1).to(dtype)
    logits = limb_prior_logits(distance, limb_mean, limb_std, temperature)
    return torch.softmax(logits, dim=-1)


def _rows_per_chunk(n_limbs: int, n_vox: int, chunk_elems: int) -> int:
    return max(1, min(n_vox, int(chunk_elems) // max(1, n_limbs * n_vox)))


class _PriorTable:
    """The prior as a function of voxel offsets: ``e_l`` only depends on ``(|di|, |dj|, |dk|)``, so a
    table of ``L * N`` logits replaces the ``L * N^2`` mask, and the rows of a chunk are gathered from it.

    Row ``p`` of the unnormalised prior is ``exp(e_l(p, q) - max_q e_l(p, q))``, exactly the numerator
    of the dense softmax. The row maximum comes from a cumulative maximum of the table over the box
    of offsets that row ``p`` reaches; when it equals the table's global maximum for every row (the
    usual case: limbs shorter than half the cuboid), the table is exponentiated once.
    """

    def __init__(self, grid_shape, limb_mean, limb_std, cuboid_size, temperature, dtype, device):
        self.shape = tuple(int(m) for m in grid_shape)
        m0, m1, m2 = self.shape
        spacing = _grid_spacing(self.shape, cuboid_size).to(device)
        axes = [
            torch.arange(m, device=device, dtype=torch.float64) * spacing[i] for i, m in enumerate(self.shape)
        ]
        d2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
        e = limb_prior_logits(d2.sqrt().to(dtype), limb_mean, limb_std, temperature)  # (L, m0, m1, m2)
        L = e.shape[0]
        cm = e.cummax(1).values.cummax(2).values.cummax(3).values
        reach = [
            torch.maximum(torch.arange(m, device=device), m - 1 - torch.arange(m, device=device))
            for m in self.shape
        ]
        rowmax = cm[:, reach[0][:, None, None], reach[1][None, :, None], reach[2][None, None, :]].reshape(
            L, -1
        )
        gmax = e.reshape(L, -1).amax(1, keepdim=True)
        self.exact_global = bool((rowmax == gmax).all())
        if self.exact_global:
            self.table, self.rowmax = torch.exp(e.reshape(L, -1) - gmax), None
        else:
            self.table, self.rowmax = e.reshape(L, -1), rowmax
        # symmetric extension over signed offsets: ext[u] = table[|u - (m - 1)|]; the window of ext
        # starting at p is row p with its columns reversed on every axis (a strided view, no gather)
        tab = self.table.reshape(L, m0, m1, m2)
        ext = tab
        for dim, m in zip((1, 2, 3), self.shape):
            ext = torch.cat([ext.flip(dim).narrow(dim, 0, m - 1), ext], dim)
        self.windows = ext.unfold(1, m0, 1).unfold(2, m1, 1).unfold(3, m2, 1)  # (L, m0, m1, m2, m0, m1, m2)

    def blocks(self, chunk_rows: int):
        """Yield ``(start, stop, K_rev)``: unnormalised rows ``p in [start, stop)`` with columns in
        reversed voxel order, ``(L, stop - start, N)``."""
        m0, m1, m2 = self.shape
        L, N = self.table.shape[0], m0 * m1 * m2
        lines = max(1, min(m1, chunk_rows // m2))
        for i in range(m0):
            for j in range(0, m1, lines):
                j1 = min(m1, j + lines)
                start, stop = (i * m1 + j) * m2, (i * m1 + j1) * m2
                K = self.windows[:, i, j:j1].reshape(L, stop - start, N)
                if self.rowmax is not None:
                    K = torch.exp(K - self.rowmax[:, start:stop, None])
                yield start, stop, K


def _flip_voxels(values: Tensor, shape) -> Tensor:
    L, N, C = values.shape
    return values.reshape(L, *shape, C).flip(1, 2, 3).reshape(L, N, C)


def _propagate(
    values: Tensor, table: _PriorTable, row_sum: Tensor, chunk_elems: int, transpose: bool
) -> Tensor:
    """``M_l @ values[l]`` (or ``M_l^T @ values[l]``) with ``M_l = K_l / row_sum_l``, ``K`` built in chunks.

    ``values``: ``(L, N, C)``; ``row_sum``: ``(L, N)``.
    """
    L, N, _ = values.shape
    step = _rows_per_chunk(L, N, chunk_elems)
    if transpose:
        values = values / row_sum[..., None]
        out = torch.zeros_like(values)
        for start, stop, K in table.blocks(step):
            out += K.transpose(1, 2) @ values[:, start:stop]
        return _flip_voxels(out, table.shape)
    rev = _flip_voxels(values, table.shape)
    out = values.new_empty(L, N, values.shape[-1])
    for start, stop, K in table.blocks(step):
        out[:, start:stop] = K @ rev
    return out / row_sum[..., None]


class _LimbPropagate(torch.autograd.Function):
    """``M_l @ values[l]`` with the prior rows rebuilt in backward (nothing ``O(N^2)`` is saved)."""

    @staticmethod
    def forward(ctx, values, grid_shape, limb_mean, limb_std, cuboid_size, temperature, chunk_elems):
        table = _PriorTable(
            grid_shape, limb_mean, limb_std, cuboid_size, temperature, values.dtype, values.device
        )
        L, N, _ = values.shape
        # row sums of K ride along as an extra column of ones
        ones = values.new_ones(L, N, 1)
        raw = _propagate(torch.cat([values, ones], -1), table, values.new_ones(L, N), chunk_elems, False)
        row_sum = raw[..., -1]
        ctx.table, ctx.row_sum, ctx.chunk_elems = table, row_sum, chunk_elems
        return raw[..., :-1] / row_sum[..., None]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        grad = _propagate(grad_out.contiguous(), ctx.table, ctx.row_sum, ctx.chunk_elems, transpose=True)
        return grad, None, None, None, None, None, None


#: the FFT path serves a limb when every row's largest logit is within this of the limb's global
#: maximum: the stabilised kernel ``exp(e - max e)`` then keeps every row's largest entry above
#: ``e^-7 ~ 1e-3``, so float64's precision is not spent on an underflowing row
FFT_MAX_ROW_DEFICIT = 7.0
LIMB_PROPAGATE_METHODS = ("auto", "fft", "chunked")


def _offset_logits(grid_shape, limb_mean, limb_std, cuboid_size, temperature, device) -> Tensor:
    """``e_l`` at every absolute offset ``(|di|, |dj|, |dk|)``: ``(L, m0, m1, m2)`` float64."""
    spacing = _grid_spacing(grid_shape, cuboid_size).to(device)
    axes = [
        torch.arange(m, device=device, dtype=torch.float64) * spacing[i] for i, m in enumerate(grid_shape)
    ]
    d2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    return limb_prior_logits(d2.sqrt(), limb_mean.to(torch.float64), limb_std.to(torch.float64), temperature)


def _row_deficit(e: Tensor) -> Tensor:
    """``(L,)``: ``max_all e_l - min_p max_q e_l(p, q)``, how far the worst row's maximum lies below
    the global one. Row ``p`` reaches the offsets ``|d_i| <= max(p_i, m_i - 1 - p_i)``; the smallest
    reach is the centre row's, and a cumulative maximum over the offset box gives its maximum."""
    cm = e.cummax(1).values.cummax(2).values.cummax(3).values
    r = [(m - 1) - (m - 1) // 2 for m in e.shape[1:]]
    return e.flatten(1).amax(1) - cm[:, r[0], r[1], r[2]]


def _fft_kernel(e: Tensor, sizes: Sequence[int], dtype: torch.dtype) -> Tensor:
    """The circular kernel ``k[s] = exp(e(|d|) - max e)`` for signed offsets ``d = s`` or ``s - S``
    (``|d| <= m - 1``; zero elsewhere): ``(L, S0, S1, S2)``, float64. The exponential is taken in
    ``dtype``, as the dense formula does, so entries that underflow there are zero here too (the
    reference's float32 prior is exactly 0 beyond ~104 below the row maximum)."""
    k = torch.exp((e - e.flatten(1).amax(1)[:, None, None, None]).to(dtype)).to(torch.float64)
    for dim, (m, S) in enumerate(zip(e.shape[1:], sizes), start=1):
        s = torch.arange(S, device=e.device)
        a = torch.minimum(s, S - s)
        k = k.index_select(dim, a.clamp(max=m - 1))
        k = k * (a < m).to(k.dtype).reshape((-1,) + (1,) * (3 - dim))
    return k


def _rfft3(x: Tensor, sizes: Sequence[int]) -> Tensor:
    """``rfftn`` over the last three axes, zero-padded to ``sizes``."""
    return torch.fft.rfftn(x, s=sizes, dim=(-3, -2, -1))


def _irfft3_crop(f: Tensor, sizes: Sequence[int], shape: Sequence[int]) -> Tensor:
    """``irfftn(f, s=sizes)[..., :m0, :m1, :m2]``, cropping after each axis (pruned inverse)."""
    f = torch.fft.ifft(f, dim=-3)[..., : shape[0], :, :]
    f = torch.fft.ifft(f, dim=-2)[..., : shape[1], :]
    return torch.fft.irfft(f, n=sizes[2], dim=-1)[..., : shape[2]]


def _propagate_fft(values: Tensor, grid_shape: Sequence[int], e: Tensor) -> Tensor:
    """``M_l @ values[l]`` as a 3D convolution (the prior depends only on ``q - p`` and is even in
    every axis), by float64 FFTs zero-padded to ``2m`` per axis (no wrap-around: offsets span
    ``2m - 1``). The row sums are the kernel convolved with ones."""
    L, N, C = values.shape
    shape = tuple(int(m) for m in grid_shape)
    sizes = [2 * m for m in shape]
    kf = torch.fft.rfftn(_fft_kernel(e, sizes, values.dtype), dim=(-3, -2, -1))  # (L, S0, S1, S2/2+1)
    v = values.to(torch.float64).transpose(1, 2).reshape(L, C, *shape)
    ones = v.new_ones(L, 1, *shape)
    num = _irfft3_crop(_rfft3(v, sizes) * kf[:, None], sizes, shape).reshape(L, C, N)
    den = _irfft3_crop(_rfft3(ones, sizes) * kf[:, None], sizes, shape).reshape(L, 1, N)
    return (num / den).transpose(1, 2).to(values.dtype)


#: rows whose attention mass ``(M_l a)_p`` is below this fraction of the channel's largest are
#: recomputed exactly by :class:`ContextAttention` (the FFT's relative error there would exceed ~1e-7)
RELATIVE_FLOOR = 1e-8


def _exact_limb_rows(
    values, limbs, rows, grid_shape, limb_mean, limb_std, cuboid_size, temperature, chunk_elems
):
    """``(M_l @ values[l])[p]`` for the pairs ``(l, p) = (limbs[f], rows[f])``: ``(F, K)``, from the exact
    prior rows (the dense formula's float softmax in ``values``' dtype, as :func:`limb_prior_rows`).

    A row's logits are gathered from the table of ``e_l`` at every absolute offset (``L * N``
    entries, the distances computed as :func:`limb_prior_rows` does, bit for bit),
    at most ``chunk_elems`` row entries at a time; each row meets its own limb's values (a batched
    ``(1, N) @ (N, K)`` product)."""
    L, N, K = values.shape
    shape = tuple(int(m) for m in grid_shape)
    _, m1, m2 = shape
    dev = values.device
    spacing = _grid_spacing(shape, cuboid_size).to(dev)
    ijk = _grid_index(shape, dev)  # (N, 3); also every absolute offset, in the same C order
    dist = torch.linalg.vector_norm(ijk.to(torch.float64) * spacing, dim=-1)  # bits as limb_prior_rows
    table = limb_prior_logits(dist.to(values.dtype), limb_mean, limb_std, temperature).reshape(-1)  # (L*N,)
    out = values.new_empty(limbs.numel(), K)
    step = max(1, int(chunk_elems) // max(1, N * (K + 1)))
    for i in range(0, limbs.numel(), step):
        lim, p = limbs[i : i + step], ijk[rows[i : i + step]]  # (f,), (f, 3)
        d = [(p[:, a, None] - torch.arange(m, device=dev)).abs() for a, m in enumerate(shape)]
        offset = (d[0] * (m1 * m2))[:, :, None, None] + (d[1] * m2)[:, None, :, None] + d[2][:, None, None, :]
        logits = table[(offset.reshape(-1, N) + (lim * N)[:, None])]  # (f, N)
        M = torch.softmax(logits, dim=-1)
        out[i : i + step] = (M[:, None, :] @ values.index_select(0, lim))[:, 0]
    return out


def _replace_rows_exactly(prop: Tensor, values: Tensor, bad: Tensor, args: tuple) -> tuple[Tensor, dict]:
    """``prop (L, N, K)`` with the rows flagged in ``bad (L, N)`` recomputed by the exact prior rows:
    per limb and row (:func:`_exact_limb_rows`); a limb with more than a quarter of its rows flagged
    is recomputed whole by the chunked exact method. ``args``: ``limb_propagate``'s after ``values``.
    Also returns ``{"limb_rows": flagged (limb, row) pairs, "whole_limbs": limbs redone whole}``."""
    L, N, _ = values.shape
    counts = bad.sum(1)
    whole = counts > N // 4
    stats = {"limb_rows": int(counts.sum()), "whole_limbs": int(whole.sum())}
    if not stats["limb_rows"]:
        return prop, stats
    if stats["whole_limbs"]:
        li = whole.nonzero().squeeze(1)
        grid, mean, std, *rest = args
        exact = limb_propagate(values[li], grid, mean[li], std[li], *rest, method="chunked")
        prop = prop.index_copy(0, li, exact)
        bad = bad & ~whole[:, None]
    limbs, rows = bad.nonzero().unbind(1)
    if limbs.numel():
        flat = prop.reshape(L * N, -1)
        flat = flat.index_copy(0, limbs * N + rows, _exact_limb_rows(values, limbs, rows, *args))
        prop = flat.reshape(prop.shape)
    return prop, stats


def limb_propagate(
    values: Tensor,
    grid_shape: Sequence[int],
    limb_mean: Tensor,
    limb_std: Tensor,
    cuboid_size: float = 2500.0,
    temperature: float = 1500.0,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    method: str = "auto",
) -> Tensor:
    """``out[l, p, :] = sum_q M_l[p, q] values[l, q, :]`` without materialising ``M``.

    ``M_l[p, q] = exp(e_l(q - p)) / sum_q' exp(e_l(q' - p))`` depends on the offset only, so
    ``M_l @ v`` is a correlation of ``v`` (and of ones, for the row sums) with the kernel
    ``exp(e_l(d) - c_l)`` over ``d in (-(m-1) .. m-1)^3``: ``method="fft"`` computes it with float64
    FFTs (``c_l`` the global maximum of ``e_l``; exact in exact arithmetic, since a softmax ignores a
    constant shift). The dense formula shifts each row by its own maximum instead; with the global
    shift a row whose reachable logits all lie far below ``c_l`` (a limb longer than the offsets the
    central voxels reach) would lose precision, so ``"auto"`` sends such limbs (row deficit
    ``> FFT_MAX_ROW_DEFICIT``) to ``"chunked"``: the exact per-row softmax, rows built
    ``chunk_elems`` entries at a time (dense flops, bounded memory). Precision of the FFT path:
    absolute error ``~1e-15 * max|values|`` per channel (float64 FFT), then cast to ``values``' dtype.

    Args:
        values: ``(L, N, K)``, ``N = prod(grid_shape)`` voxels in C order.
        grid_shape: context grid ``(m0, m1, m2)``.
        limb_mean, limb_std: ``(L,)`` mm.
        cuboid_size, temperature: see :func:`limb_prior_rows`.
        chunk_elems: ``"chunked"``: at most this many prior entries exist at once (``L * rows * N``).
        method: ``"auto"``, ``"fft"`` or ``"chunked"``.

    Returns:
        ``(L, N, K)`` in ``values``' dtype. Differentiable in ``values`` (autograd through the FFTs;
        the chunked backward rebuilds the rows).
    """
    L, N, _ = values.shape
    if N != math.prod(int(s) for s in grid_shape) or limb_mean.shape != (L,) or limb_std.shape != (L,):
        raise ValueError(
            f"limb_propagate: values {tuple(values.shape)}, grid {tuple(grid_shape)}, limb_mean "
            f"{tuple(limb_mean.shape)}, limb_std {tuple(limb_std.shape)} disagree"
        )
    if method not in LIMB_PROPAGATE_METHODS:
        raise ValueError(f"limb_propagate: method must be one of {LIMB_PROPAGATE_METHODS}, got {method!r}")
    grid_shape = tuple(int(s) for s in grid_shape)

    def chunked(idx=None):
        v, mu, sd = (
            (values, limb_mean, limb_std) if idx is None else (values[idx], limb_mean[idx], limb_std[idx])
        )
        return _LimbPropagate.apply(v, grid_shape, mu, sd, cuboid_size, temperature, chunk_elems)

    if method == "chunked" or L == 0:
        return chunked()
    e = _offset_logits(grid_shape, limb_mean, limb_std, cuboid_size, temperature, values.device)
    if method == "fft":
        return _propagate_fft(values, grid_shape, e)
    use_fft = _row_deficit(e) <= FFT_MAX_ROW_DEFICIT
    if bool(use_fft.all()):
        return _propagate_fft(values, grid_shape, e)
    if not bool(use_fft.any()):
        return chunked()
    fi, ci = use_fft.nonzero().squeeze(1), (~use_fft).nonzero().squeeze(1)
    out = torch.cat([_propagate_fft(values[fi], grid_shape, e[fi]), chunked(ci)])
    order = torch.cat([fi, ci]).argsort()
    return out[order]


# ------------------------------------------------------------------------------------ the block
class ContextAttention(nn.Module):
    """ContextPose's context-attention op (the reference's ``atten_conv`` module of ``mid_res``).

    Args:
        num_joints: ``J`` (17).
        channels_per_joint: channels of each joint's block (3; the input has ``3J = 51``).
        limbs: ``L`` joint pairs (ContextPose's 16 limbs of :data:`H36M17_LT_LIMBS`).
        limb_mean, limb_std: ``(L,)`` limb-length statistics in mm
            (:func:`mvpose.data.limb_stats.read_limb_stats_h5`); default: 1 m +- 0.1 m placeholders
            (set real ones before use).
        cuboid_size: cube side in mm (prior spacing ``cuboid_size / (m - 1)``).
        temperature: ``T`` of the prior.
        chunk_elems: memory bound of the prior, see :func:`limb_propagate`.
        prior_method: ``"auto"`` (FFT; exact per-row recomputation where it would lose precision),
            ``"fft"`` or ``"chunked"`` (the exact per-row softmax, dense flops): see :func:`limb_propagate`.

    Shapes:
        ``x (B, 3J, *S) -> (out (B, 3J, *S), atten_global (B, J, N))``; :meth:`forward_details`
        returns every intermediate.

    After a forward, ``exact_rows`` tells what the peaked-attention guard did (None with
    ``"chunked"``): ``{"limb_rows": (limb, voxel) rows recomputed exactly, "whole_limbs": limbs
    recomputed whole (more than a quarter of their rows flagged), "of": L * N}``.
    """

    def __init__(
        self,
        num_joints: int = 17,
        channels_per_joint: int = 3,
        limbs: Sequence[Sequence[int]] = H36M17_LT_LIMBS,
        limb_mean: Tensor | None = None,
        limb_std: Tensor | None = None,
        cuboid_size: float = 2500.0,
        temperature: float = 1500.0,
        chunk_elems: int = DEFAULT_CHUNK_ELEMS,
        prior_method: str = "auto",
    ):
        super().__init__()
        if prior_method not in LIMB_PROPAGATE_METHODS:
            raise ValueError(f"prior_method must be one of {LIMB_PROPAGATE_METHODS}, got {prior_method!r}")
        self.prior_method = prior_method
        self.exact_rows: dict | None = None
        J, c = int(num_joints), int(channels_per_joint)
        C = J * c
        self.num_joints, self.channels_per_joint = J, c
        self.cuboid_size, self.temperature, self.chunk_elems = (
            float(cuboid_size),
            float(temperature),
            chunk_elems,
        )
        self.convlist = nn.ModuleList([nn.Conv3d(C, c, 1, bias=False) for _ in range(J)])
        self.W_pi = nn.Conv3d(C, C, 1, groups=J, bias=False)
        self.atten_conv = nn.Conv3d(C, J, 1, groups=J, bias=False)
        pairs = torch.as_tensor(limbs, dtype=torch.long).reshape(-1, 2)
        if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= J):
            raise ValueError(f"ContextAttention: limb indices must be in [0, {J}), got {pairs.tolist()}")
        keys = {tuple(sorted(p)) for p in pairs.tolist()}
        if len(keys) != len(pairs) or any(a == b for a, b in keys):
            raise ValueError("ContextAttention: every neighbour pair must occur in exactly one limb")
        L = len(pairs)
        self.register_buffer("limbs", pairs, persistent=False)
        mean = torch.full((L,), 1000.0) if limb_mean is None else torch.as_tensor(limb_mean)
        std = torch.full((L,), 100.0) if limb_std is None else torch.as_tensor(limb_std)
        self.register_buffer("limb_mean", torch.zeros(L), persistent=False)
        self.register_buffer("limb_std", torch.ones(L), persistent=False)
        self.set_limb_stats(mean, std)

    def set_limb_stats(self, limb_mean: Tensor, limb_std: Tensor) -> None:
        """Set the ``(L,)`` limb-length mean and std (mm; float32 like the reference; extra entries of
        a longer file are ignored, as the reference uses the first ``L``)."""
        L = self.limbs.shape[0]
        mean, std = torch.as_tensor(limb_mean).reshape(-1), torch.as_tensor(limb_std).reshape(-1)
        if mean.numel() < L or std.numel() < L:
            raise ValueError(
                f"ContextAttention: need {L} limb statistics, got mean {mean.numel()}, std {std.numel()}"
            )
        self.limb_mean.copy_(mean[:L].to(torch.float32))
        self.limb_std.copy_(std[:L].to(torch.float32))

    def _check(self, x: Tensor) -> None:
        C = self.num_joints * self.channels_per_joint
        if x.ndim != 5 or x.shape[1] != C:
            raise ValueError(f"ContextAttention: expected (B, {C}, X, Y, Z), got {tuple(x.shape)}")

    def _propagated(self, U: Tensor, a: Tensor, grid_shape) -> Tensor:
        """``P (B, L, 2, c, N)``: the propagated features of both endpoints of every limb."""
        B, J, c, N = U.shape
        j0, j1 = self.limbs[:, 0], self.limbs[:, 1]
        # per limb and endpoint: c feature channels then the attention channel
        vals = torch.stack(
            [torch.cat([U[:, j], a[:, j, None]], dim=2) for j in (j0, j1)], dim=2
        )  # (B,L,2,c+1,N)
        L = vals.shape[1]
        flat = vals.permute(1, 4, 0, 2, 3).reshape(L, N, B * 2 * (c + 1))
        mean, std = self.limb_mean.to(flat.dtype), self.limb_std.to(flat.dtype)
        args = (grid_shape, mean, std, self.cuboid_size, self.temperature, self.chunk_elems)
        prop = limb_propagate(flat, *args, method=self.prior_method)
        self.exact_rows = None
        if self.prior_method != "chunked":
            # the FFT's error is absolute (~1e-15 of a channel's largest value): rows whose attention
            # mass M_l a is tiny next to the channel's largest would lose their ratio, so they are
            # recomputed exactly (per-row softmax, as the dense formula)
            den = prop.detach()[..., c :: c + 1]  # (L, N, B * 2)
            bad = ~(den >= RELATIVE_FLOOR * den.amax(1, keepdim=True)).all(2)  # (L, N); NaN too
            prop, stats = _replace_rows_exactly(prop, flat, bad, args)
            self.exact_rows = dict(stats, of=L * N)
        prop = prop.reshape(L, N, B, 2, c + 1).permute(2, 0, 3, 4, 1)  # (B, L, 2, c+1, N)
        return prop[:, :, :, :c] / prop[:, :, :, c:]

    def forward_details(self, x: Tensor, propagate=None) -> dict[str, Tensor]:
        """Every intermediate: ``x_pi (B, 3J, *S)``, ``atten_logits (B, J, *S)``, ``atten_global
        (B, J, N)``, ``pooled (B, J, 3)``, ``propagated (B, L, 2, 3, N)`` (endpoint 0 then 1 of each
        limb), ``conv_out (B, 3J, *S)``, ``out (B, 3J, *S)``. ``propagate(U (B, J, c, N), a (B, J, N),
        grid) -> P`` replaces the prior step (the benchmark plugs the dense reference in there)."""
        self._check(x)
        B, _, *grid = x.shape
        J, c = self.num_joints, self.channels_per_joint
        N = math.prod(grid)
        X = self.W_pi(x)
        g = self.atten_conv(x)
        a = torch.softmax(g.reshape(B, J, N), dim=-1)
        U = X.reshape(B, J, c, N) * a[:, :, None]
        S = U.sum(-1)  # (B, J, c)
        P = (propagate or self._propagated)(U, a, grid)  # (B, L, 2, c, N)
        W = torch.stack([conv.weight.reshape(c, J, c) for conv in self.convlist])  # (k, out, m, in)
        base = torch.einsum("komi,bmi->bko", W, S)  # (B, J, c): every block pooled
        j0, j1 = self.limbs[:, 0], self.limbs[:, 1]
        # joint j1 sees P_{l, j0}; joint j0 sees P_{l, j1}; minus the pooled term they replace
        d0 = P[:, :, 0] - S[:, j0, :, None]
        d1 = P[:, :, 1] - S[:, j1, :, None]
        corr = torch.einsum("loi,blin->blon", W[j1, :, j0], d0)
        corr1 = torch.einsum("loi,blin->blon", W[j0, :, j1], d1)
        conv = base[..., None].expand(B, J, c, N)
        conv = conv.index_add(1, j1, corr).index_add(1, j0, corr1)
        conv = conv.reshape(B, J * c, *grid)
        return {
            "x_pi": X,
            "atten_logits": g,
            "atten_global": a,
            "pooled": S,
            "propagated": P,
            "conv_out": conv,
            "out": conv + X,
        }

    def joint_features(self, details: dict[str, Tensor], joint: int) -> Tensor:
        """``F_k (B, 3J, *S)`` for output joint ``k`` from :meth:`forward_details` (for inspection: the
        forward never builds it)."""
        P, S = details["propagated"], details["pooled"]
        B, J, c = S.shape
        N = P.shape[-1]
        Fk = S[..., None].expand(B, J, c, N).clone()
        for l, (j0, j1) in enumerate(self.limbs.tolist()):
            if j1 == joint:
                Fk[:, j0] = P[:, l, 0]
            elif j0 == joint:
                Fk[:, j1] = P[:, l, 1]
        return Fk.reshape(B, J * c, *details["x_pi"].shape[2:])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d = self.forward_details(x)
        return d["out"], d["atten_global"]


class ContextResBlock(nn.Module):
    """The attention residual block at the V2V bottleneck (the reference's ``mid_res``):
    ``r = atten_conv(x)``; ``r = BN(conv3(relu(BN(r))))`` (``res_branch.{0,1,2,3}``);
    ``out = relu(r + x)``. Returns ``(out, atten_global)``."""

    def __init__(self, channels: int = 51, **attention_kwargs):
        super().__init__()
        self.atten_conv = ContextAttention(**attention_kwargs)
        self.res_branch = nn.Sequential(
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, stride=1, padding=1),
            nn.BatchNorm3d(channels),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r, atten = self.atten_conv(x)
        return F.relu(self.res_branch(r) + x), atten


def context_v2v(input_channels: int = 32, num_joints: int = 17, **attention_kwargs) -> nn.Module:
    """ContextPose's V2V: front = [Basic(in, J, k3), Res(J, 2J)], a 2-level encoder-decoder with
    channels ``(2J, 3J, 3J)`` and :class:`ContextResBlock` at the bottleneck, no back layers,
    ``output_layer`` Conv3d(2J, J, 1). Returns ``(logits (B, J, *S), atten_global (B, J, N'))``
    with ``N' = prod(S) / 64``; ``S`` divisible by 4."""
    from mvpose.models.v2v import Basic3DBlock, EncoderDecoder, Res3DBlock, V2VModel

    J = int(num_joints)
    mid = ContextResBlock(3 * J, num_joints=J, **attention_kwargs)
    return V2VModel(
        input_channels,
        J,
        front_layers=nn.Sequential(Basic3DBlock(input_channels, J, 3), Res3DBlock(J, 2 * J)),
        encoder_decoder=EncoderDecoder((2 * J, 3 * J, 3 * J), mid=mid),
        back_layers=nn.Sequential(),
    )


# --------------------------------------------------------------------------- global attention loss
def global_attention_target(
    keypoints_gt: Tensor,
    root: Tensor,
    cuboid_size: float = 2500.0,
    volume_size: int = 16,
    context_size: int | None = None,
) -> Tensor:
    """The reference's target of the global attention: a Gaussian around each true joint.

    Auxiliary grid (the reference's quirk): ``m`` points per axis from the main cuboid's corner
    ``root - cuboid_size/2`` with spacing ``f * cuboid_size / (n - 1)`` (``f = n / m`` the pooling
    factor, i.e. the pooled voxel spacing, but not centred on the pooled voxels), unrotated;
    ``sigma = 2 * spacing``; target ``= softmax_q(-|r_q - gt_j|^2 / (2 sigma^2))``.

    Args:
        keypoints_gt: ``(B, J, 3)`` mm.
        root: ``(B, 3)`` cuboid centres, mm.
        cuboid_size: side in mm; volume_size: ``n``; context_size: ``m`` (default ``n // 4``).

    Returns:
        ``(B, J, m^3)`` in ``keypoints_gt``'s dtype (computed in float64).
    """
    n = int(volume_size)
    m = int(context_size) if context_size is not None else n // 4
    spacing = (n / m) * float(cuboid_size) / (n - 1)
    steps = torch.arange(m, dtype=torch.float64, device=root.device) * spacing
    grid = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    corner = root.to(torch.float64) - float(cuboid_size) / 2
    pts = corner[:, None, :] + grid  # (B, m^3, 3)
    sigma = 2.0 * spacing
    d2 = ((pts[:, None] - keypoints_gt.to(torch.float64)[:, :, None]) ** 2).sum(-1)  # (B, J, m^3)
    return torch.softmax(-d2 / (2 * sigma**2), dim=-1).to(keypoints_gt.dtype)


def global_attention_loss(atten_global: Tensor, target: Tensor) -> Tensor:
    """GA loss: mean over all entries of ``(target - atten_global)^2`` (weight 1e6 in the reference)."""
    return ((target - atten_global) ** 2).mean()


# ------------------------------------------------------------------------------ the whole model
class ContextPoseNet(nn.Module):
    """Volumetric triangulation with ContextPose's V2V (the reference's ``VolumetricTriangulationNet``).

    Modules: ``backbone`` (pose-ResNet), ``process_features`` (1x1 conv 256 -> 32), ``volume_net``
    (:func:`context_v2v`). Forward as the reference in eval mode: features of every view, cuboid of
    side ``cuboid_size`` around ``root`` with ``volume_size^3`` voxels, unprojection, softmax view
    aggregation, V2V, 3D soft-argmax.

    Args:
        backbone: a :class:`mvpose.models.backbone.PoseResNet`.
        num_joints, volume_features_dim, cuboid_size, volume_size, volume_multiplier,
        volume_aggregation_method, image_shape, heatmap_shape: the reference's config values.
        root_model: predicts the cuboid centre when ``forward`` gets no ``root`` (e.g. an
            :class:`~mvpose.models.algebraic.AlgebraicTriangulationNet`; run in eval mode, no gradients).
        root_joints: joints averaged into the root from ``root_model``'s keypoints (6: the pelvis).
        attention_kwargs: :class:`ContextAttention` arguments (limb statistics, temperature,
            ``prior_method``...).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_joints: int = 17,
        volume_features_dim: int = 32,
        cuboid_size: float = 2500.0,
        volume_size: int = 64,
        volume_multiplier: float = 1.0,
        volume_aggregation_method: str = "softmax",
        image_shape: Sequence[int] = (384, 384),
        heatmap_shape: Sequence[int] = (96, 96),
        deconv_channels: int = 256,
        root_model: nn.Module | None = None,
        root_joints: Sequence[int] = (6,),
        **attention_kwargs,
    ):
        super().__init__()
        from mvpose.models.backbone import feature_head

        self.backbone = backbone
        self.process_features = feature_head(deconv_channels, volume_features_dim)
        self.volume_net = context_v2v(
            volume_features_dim, num_joints, cuboid_size=cuboid_size, **attention_kwargs
        )
        self.num_joints, self.cuboid_size, self.volume_size = num_joints, float(cuboid_size), int(volume_size)
        self.volume_multiplier, self.aggregation = float(volume_multiplier), volume_aggregation_method
        self.image_shape, self.heatmap_shape = tuple(image_shape), tuple(heatmap_shape)
        self.root_model, self.root_joints = root_model, tuple(int(j) for j in root_joints)

    @property
    def context(self) -> ContextAttention:
        return self.volume_net.encoder_decoder.mid_res.atten_conv

    def forward(
        self,
        images: Tensor,
        proj_matrices,
        root: Tensor | None = None,
        coord_volumes: Tensor | None = None,
        *,
        view_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The multi-view forward contract: ``model(images, proj_matrices, root=None)``.

        Args:
            images: ``(B, V, 3, H, W)`` normalised network input.
            proj_matrices: ``(B, V, 3, 4)`` in the input-image pixel frame (or a
                :class:`~mvpose.geometry.camera.CameraRig` of the crops).
            root: ``(B, 3)`` cuboid centres, mm; None asks ``root_model`` (e.g. the algebraic model).
            coord_volumes: optional ``(B, n, n, n, 3)`` voxel coordinates (default: the unrotated
                corner-aligned cuboid around ``root``).
            view_mask: optional ``(B, V)`` bool; a missing view is left out of the aggregation.

        Returns:
            dict with ``keypoints_3d (B, J, 3)`` mm, ``volumes``, ``volumes_logits (B, J, n, n, n)``,
            ``atten_global (B, J, (n/4)^3)``, ``coord_volumes``, ``features``, ``heatmaps``,
            ``unprojected_volumes``, ``base_points (B, 3)``.
        """
        from mvpose.models.volumetric import (
            VolumetricTriangulationNet,
            cuboid_coord_volumes,
            heatmap_projection_matrices,
            predict_root,
            unproject_aggregate,
        )

        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must have shape (B, V, 3, H, W), got {tuple(images.shape)}")
        B, V = images.shape[:2]
        P = VolumetricTriangulationNet._projection_matrices(proj_matrices, B, V).to(images.device)
        if view_mask is not None:
            if view_mask.shape != (B, V):
                raise ValueError(f"view_mask must have shape ({B}, {V}), got {tuple(view_mask.shape)}")
            view_mask = view_mask.to(device=images.device, dtype=torch.bool)
        if root is None and coord_volumes is None:
            if self.root_model is None:
                raise ValueError("ContextPoseNet: no root given and no root_model to predict it")
            root = predict_root(self.root_model, images, P, self.root_joints, view_mask)
        out = self.backbone(images.reshape(B * V, *images.shape[2:]))
        feats = self.process_features(out.features)
        feats = feats.reshape(B, V, *feats.shape[1:])
        heatmaps = out.heatmaps.reshape(B, V, *out.heatmaps.shape[1:])
        if coord_volumes is None:
            if root.shape != (B, 3):
                raise ValueError(f"root must have shape ({B}, 3), got {tuple(root.shape)}")
            coord_volumes = cuboid_coord_volumes(
                root.to(images.device), self.cuboid_size, self.volume_size, dtype=torch.float32
            )
        h, w = feats.shape[-2:]
        P_h = heatmap_projection_matrices(P, images.shape[-2:], (h, w))
        volumes_in = unproject_aggregate(
            feats, P_h, coord_volumes, self.aggregation, "contextpose", view_mask
        )
        logits, atten = self.volume_net(volumes_in)
        vol = torch.softmax(logits.reshape(B, self.num_joints, -1) * self.volume_multiplier, dim=-1)
        kp = vol @ coord_volumes.reshape(B, -1, 3).to(vol.dtype)
        return {
            "keypoints_3d": kp,
            "volumes": vol.reshape(logits.shape),
            "volumes_logits": logits,
            "atten_global": atten,
            "coord_volumes": coord_volumes,
            "features": feats,
            "heatmaps": heatmaps,
            "unprojected_volumes": volumes_in,
            "base_points": root,
        }


def load_official_contextpose(path: str | Path, **overrides) -> ContextPoseNet:
    """Build :class:`ContextPoseNet` from an official ContextPose checkpoint (DDP ``module.`` state dict).

    Inferred from the state dict: backbone depth and joints, ``volume_features_dim``,
    ``num_joints``. Overrides (reference names): ``limb_length_path`` (the h5 file; default
    ``mean_and_std_limb_length.h5`` next to the checkpoint) or ``limb_mean``/``limb_std``,
    ``cuboid_size`` (2500), ``volume_size`` (64), ``temperature`` (1500), ``volume_multiplier`` (1),
    ``volume_aggregation_method`` (softmax), ``image_shape``, ``heatmap_shape``, ``chunk_elems``.
    Loading is strict: missing or unexpected keys raise an error naming the file.
    """
    from mvpose.data.limb_stats import read_limb_stats_h5
    from mvpose.models.backbone import PoseResNet, pose_resnet_config_from_state_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (a dict of tensors)")
    sd = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}
    if "process_features.0.weight" not in sd or "volume_net.output_layer.weight" not in sd:
        raise ValueError(
            f"{path}: not a ContextPose volumetric checkpoint (no process_features / volume_net keys)"
        )
    known = {
        "limb_length_path", "limb_mean", "limb_std", "cuboid_size", "volume_size", "temperature",
        "volume_multiplier", "volume_aggregation_method", "image_shape", "heatmap_shape", "chunk_elems",
    }  # fmt: skip
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(
            f"load_official_contextpose: unknown overrides {sorted(unknown)}; expected {sorted(known)}"
        )
    if "limb_mean" in overrides or "limb_std" in overrides:
        mean, std = torch.as_tensor(overrides["limb_mean"]), torch.as_tensor(overrides["limb_std"])
    else:
        h5 = Path(overrides.get("limb_length_path", path.with_name("mean_and_std_limb_length.h5")))
        mean, std = read_limb_stats_h5(h5)
    bb_sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    bb_cfg = pose_resnet_config_from_state_dict(bb_sd)
    bb_cfg.pop("num_layers")
    num_joints = sd["volume_net.output_layer.weight"].shape[0]
    w = sd["process_features.0.weight"]
    model = ContextPoseNet(
        PoseResNet(**bb_cfg),
        num_joints=num_joints,
        volume_features_dim=w.shape[0],
        deconv_channels=w.shape[1],
        cuboid_size=float(overrides.get("cuboid_size", 2500.0)),
        volume_size=int(overrides.get("volume_size", 64)),
        volume_multiplier=float(overrides.get("volume_multiplier", 1.0)),
        volume_aggregation_method=overrides.get("volume_aggregation_method", "softmax"),
        image_shape=overrides.get("image_shape", (384, 384)),
        heatmap_shape=overrides.get("heatmap_shape", (96, 96)),
        temperature=float(overrides.get("temperature", 1500.0)),
        chunk_elems=int(overrides.get("chunk_elems", DEFAULT_CHUNK_ELEMS)),
        limb_mean=mean,
        limb_std=std,
    )
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"{path}: the checkpoint does not match the ContextPose model "
            f"(missing keys: {result.missing_keys}; unexpected keys: {result.unexpected_keys})"
        )
    return model.eval()
