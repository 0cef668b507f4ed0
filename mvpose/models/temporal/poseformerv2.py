"""PoseFormerV2 (Zhao et al., CVPR 2023): a frequency-domain transformer lifter.

A window of ``F`` frames ``(B, F, J, C)`` is summarised by two kinds of tokens:

* ``coeffs_kept`` **frequency tokens**: the lowest DCT-II coefficients of the whole window over time
  (each one a ``J * C`` vector), embedded by a linear layer;
* ``frames_kept`` **frame tokens**: the central frames, each encoded by a spatial transformer over its
  joints (joint embedding to ``embed_dim_ratio`` channels, ``depth`` ViT blocks), flattened to
  ``J * embed_dim_ratio`` channels.

Both go through ``depth`` mixed blocks (attention over all tokens; the first half of the tokens takes a
plain MLP, the second half an MLP applied in the DCT domain of the token axis), are pooled by two
learned weighted means and regressed to the 3D pose of the centre frame ``(F - 1) // 2``: the output
is ``(B, 1, J, 3)`` (``T_out = 1``) and the receptive field is ``F = num_frame`` frames.

Faithful to the reference implementation (``PoseTransformerV2``), quirks included: the DCT is
torch_dct's unnormalised DCT-II (``X_k = 2 sum_n x_n cos(pi k (2n + 1) / 2N)``, here a matrix product);
the mixed blocks split their tokens at ``T // 2``, not at the frequency/frame boundary; LayerNorm
``eps = 1e-6`` except in the head (1e-5). :func:`load_official` reads the reference's checkpoints.

In eval mode without autograd the blocks run fused (:mod:`mvpose.models.temporal._fused`): bias, GELU
and residual additions inside oneDNN's matrix-product kernels, and the temporal tokens kept as
token-major rows ``(T * B, dim)`` so that the two halves of every mixed block are contiguous and each
DCT (the inverse one with its residual) and each weighted mean is a single matrix product; the same
numbers up to float rounding (``mvpose bench temporal``). On that path hooks on the mixed blocks and on
``freq_embed`` do not fire and ``temporal_norm`` sees the rows: inspect intermediates with autograd on.
"""

from __future__ import annotations

import inspect
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvpose.models.temporal import _fused as fused

__all__ = ["PoseFormerV2", "poseformerv2", "load_official", "dct_matrix", "idct_matrix", "VARIANTS"]

# published configurations, "frames/kept frames/kept coefficients" (depth 4, embed_dim_ratio 32)
VARIANTS = {
    "27/1/3": (27, 1, 3),
    "27/3/3": (27, 3, 3),
    "81/1/3": (81, 1, 3),
    "81/3/3": (81, 3, 3),
    "81/9/9": (81, 9, 9),
    "243/27/27": (243, 27, 27),
}


def dct_matrix(n: int, num_coeffs: int | None = None) -> Tensor:
    """``(k, n)`` float64 matrix of torch_dct's unnormalised DCT-II: ``X = D @ x``.

    ``D[k, i] = 2 cos(pi k (2i + 1) / (2n))`` (``scipy.fft.dct(x, type=2, norm=None)``); ``k`` defaults
    to ``n`` (all coefficients), fewer rows keep the lowest frequencies.
    """
    k = torch.arange(n if num_coeffs is None else num_coeffs, dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64)
    return 2 * torch.cos(math.pi * k[:, None] * (2 * i + 1) / (2 * n))


def idct_matrix(n: int) -> Tensor:
    """``(n, n)`` float64 inverse of :func:`dct_matrix` (torch_dct's ``idct``, norm None).

    ``x_i = X_0 / (2n) + (1 / n) sum_{k >= 1} X_k cos(pi k (2i + 1) / (2n))``.
    """
    m = dct_matrix(n).T / (2 * n)
    m[:, 0] /= 2
    return m


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``p`` (training)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Mlp(nn.Module):
    """``fc1 -> GELU (erf) -> dropout -> fc2 -> dropout`` over the last axis."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))

    def fused_residual(self, x: Tensor, h: Tensor) -> Tensor:
        """Inference: ``x + self(h)``, bias, GELU and the residual inside the kernels."""
        g = fused.linear(h, self.fc1.weight, self.fc1.bias, "gelu")
        return fused.linear_add(g, x, self.fc2.weight, self.fc2.bias)


class FreqMlp(Mlp):
    """:class:`Mlp` in the DCT domain of the token axis: ``idct(mlp(dct(x)))`` on ``(B, num_tokens, dim)``."""

    def __init__(self, dim: int, hidden: int, num_tokens: int, drop: float = 0.0):
        super().__init__(dim, hidden, drop)
        self.register_buffer("dct", dct_matrix(num_tokens).float(), persistent=False)
        self.register_buffer("idct", idct_matrix(num_tokens).float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.idct @ super().forward(self.dct @ x)

    def fused_residual_rows(self, x: Tensor, h: Tensor, B: int) -> Tensor:
        """Inference on token-major rows ``(num_tokens * B, dim)``: ``x + self(h)``, the DCTs one matrix
        product each (the inverse one with the residual), bias and GELU inside the linear kernels."""
        n = len(x) // B
        g = fused.linear((self.dct @ h.view(n, -1)).view(n * B, -1), self.fc1.weight, self.fc1.bias, "gelu")
        y = fused.linear(g, self.fc2.weight, self.fc2.bias)
        return torch.addmm(x.view(n, -1), self.idct, y.view(n, -1)).view(n * B, -1)


class Attention(nn.Module):
    """Multi-head self-attention over ``(B, N, dim)`` tokens (qkv in one linear layer)."""

    def __init__(self, dim, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend(self, qkv: Tensor, B: int, N: int) -> Tensor:
        """``qkv (B, N, 3C)`` (or rows) -> the heads' outputs before ``proj``, ``(B, N, C)``."""
        C = qkv.shape[-1] // 3
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        p = self.attn_drop if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=self.scale)
        return x.transpose(1, 2).reshape(B, N, C)

    def forward(self, x: Tensor) -> Tensor:
        B, N, _ = x.shape
        return self.proj_drop(self.proj(self.attend(self.qkv(x), B, N)))

    def fused_residual(self, x: Tensor, h: Tensor) -> Tensor:
        """Inference: ``x + attn(h)`` (``h`` the normalised ``x``), bias and residual in the kernels."""
        o = self.attend(fused.linear(h, self.qkv.weight, self.qkv.bias), *x.shape[:2])
        return fused.linear_add(o, x, self.proj.weight, self.proj.bias)

    def fused_residual_rows(self, x: Tensor, h: Tensor, B: int) -> Tensor:
        """:meth:`fused_residual` on token-major rows ``(N * B, C)`` (row ``t * B + b``)."""
        N, C = len(x) // B, x.shape[-1]
        qkv = fused.linear(h, self.qkv.weight, self.qkv.bias).view(N, B, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 1, 3, 0, 4)  # (B, heads, N, head_dim) views
        o = F.scaled_dot_product_attention(q, k, v, scale=self.scale).permute(2, 0, 1, 3).reshape(N * B, C)
        return fused.linear_add(o, x, self.proj.weight, self.proj.bias)


class Block(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor) -> Tensor:
        if fused.inference(self):
            x = self.attn.fused_residual(x, self.norm1(x))
            return self.mlp.fused_residual(x, self.norm2(x))
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MixedBlock(nn.Module):
    """Attention over all ``T`` tokens; then tokens ``[:T//2]`` take the plain ``mlp1`` (after ``norm2``)
    and tokens ``[T//2:]`` the frequency MLP ``mlp2`` (after ``norm3``). ``(B, T, dim) -> (B, T, dim)``."""

    def __init__(self, dim, num_tokens, num_heads, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp1 = Mlp(dim, int(dim * mlp_ratio), drop)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp2 = FreqMlp(dim, int(dim * mlp_ratio), num_tokens - num_tokens // 2, drop)

    def forward(self, x: Tensor) -> Tensor:
        if fused.inference(self):
            B, T, C = x.shape
            y = self.fused_rows(x.transpose(0, 1).reshape(T * B, C), B)
            return y.view(T, B, C).transpose(0, 1)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        a, b = x[:, : x.shape[1] // 2], x[:, x.shape[1] // 2 :]
        a = a + self.drop_path(self.mlp1(self.norm2(a)))
        b = b + self.drop_path(self.mlp2(self.norm3(b)))
        return torch.cat([a, b], 1)

    def fused_rows(self, x: Tensor, B: int) -> Tensor:
        """Inference on token-major rows ``x (T * B, dim)`` (row ``t * B + b``): the two halves of the
        tokens are contiguous blocks, each DCT one matrix product; returns the same layout."""
        x = self.attn.fused_residual_rows(x, self.norm1(x), B)
        half = len(x) // B // 2 * B
        a, b = x[:half], x[half:]
        a = self.mlp1.fused_residual(a, self.norm2(a))
        return torch.cat([a, self.mlp2.fused_residual_rows(b, self.norm3(b), B)])


class PoseFormerV2(nn.Module):
    """PoseFormerV2 lifter (or refiner): ``(B, F, J, C) -> (B, 1, J, 3)``, the centre frame.

    Args:
        num_frame: ``F``, frames of the input window (the receptive field); the DCT is taken over the
            window actually given, so other lengths run too (as in the reference).
        num_joints: ``J``.
        in_chans: ``C``, 2 (normalised 2D, lifting) or 3 (3D, refinement).
        embed_dim_ratio: spatial channels per joint; the temporal width is ``J * embed_dim_ratio``.
        depth: number of spatial blocks and of mixed blocks.
        num_heads, mlp_ratio, qkv_bias, qk_scale: transformer settings (both branches).
        frames_kept: central frames encoded as frame tokens (odd).
        coeffs_kept: lowest DCT coefficients kept as frequency tokens (``None``: ``frames_kept``).
        drop_rate, attn_drop_rate, drop_path_rate: dropout, attention dropout, stochastic depth (the
            reference trains with ``drop_path_rate = 0.1``; all inactive in eval mode).

    Example:
        >>> m = poseformerv2("27/3/3").eval()
        >>> m(torch.zeros(2, 27, 17, 2)).shape, m.receptive_field
        (torch.Size([2, 1, 17, 3]), 27)
    """

    def __init__(
        self,
        num_frame: int = 243,
        num_joints: int = 17,
        in_chans: int = 2,
        embed_dim_ratio: int = 32,
        depth: int = 4,
        num_heads: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        frames_kept: int = 27,
        coeffs_kept: int | None = 27,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
    ):
        super().__init__()
        coeffs_kept = coeffs_kept or frames_kept
        if frames_kept < 1 or frames_kept % 2 == 0:
            raise ValueError(f"frames_kept must be odd (central frames around the centre), got {frames_kept}")
        if max(frames_kept, coeffs_kept) > num_frame:
            raise ValueError(
                f"frames_kept {frames_kept} / coeffs_kept {coeffs_kept} exceed num_frame {num_frame}"
            )
        self.num_frame, self.num_joints, self.in_chans = num_frame, num_joints, in_chans
        self.frames_kept, self.coeffs_kept = frames_kept, coeffs_kept
        dim = embed_dim_ratio * num_joints
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        common = dict(num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale)
        common.update(drop=drop_rate, attn_drop=attn_drop_rate)

        self.joint_embed = nn.Linear(in_chans, embed_dim_ratio)
        self.freq_embed = nn.Linear(in_chans * num_joints, dim)
        self.spatial_pos = nn.Parameter(torch.zeros(1, num_joints, embed_dim_ratio))
        self.frame_pos = nn.Parameter(torch.zeros(1, frames_kept, dim))
        self.freq_pos = nn.Parameter(torch.zeros(1, coeffs_kept, dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.spatial_blocks = nn.ModuleList(Block(embed_dim_ratio, drop_path=p, **common) for p in dpr)
        T = frames_kept + coeffs_kept
        self.mixed_blocks = nn.ModuleList(MixedBlock(dim, T, drop_path=p, **common) for p in dpr)
        self.spatial_norm = nn.LayerNorm(embed_dim_ratio, eps=1e-6)
        self.temporal_norm = nn.LayerNorm(dim, eps=1e-6)
        self.freq_pool = nn.Conv1d(coeffs_kept, 1, 1)  # learned weighted means over tokens
        self.frame_pool = nn.Conv1d(frames_kept, 1, 1)
        self.head = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, num_joints * 3))
        self.register_buffer("dct", dct_matrix(num_frame, coeffs_kept).float(), persistent=False)

    @property
    def receptive_field(self) -> int:
        """Frames of input per output frame (``num_frame``); the output is the centre one."""
        return self.num_frame

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, F, J, C)`` 2D (or 3D) -> ``(B, 1, J, 3)``: the pose of frame ``(F - 1) // 2``."""
        if x.ndim != 4 or x.shape[2:] != (self.num_joints, self.in_chans):
            raise ValueError(f"expected (B, F, {self.num_joints}, {self.in_chans}), got {tuple(x.shape)}")
        B, T, J, C = x.shape
        n, k = self.frames_kept, self.coeffs_kept
        if T < max(n, k):
            raise ValueError(f"need at least {max(n, k)} frames (frames_kept, coeffs_kept), got {T}")

        # frame tokens: spatial transformer on the n central frames
        c = (T - 1) // 2
        s = self.joint_embed(x[:, c - n // 2 : c + n // 2 + 1].reshape(B * n, J, C))
        s = self.pos_drop(s + self.spatial_pos)
        for blk in self.spatial_blocks:
            s = blk(s)
        s = self.spatial_norm(s).reshape(B, n, -1)  # (B, n, J * ratio), joint-major

        # frequency tokens: lowest k DCT-II coefficients over the window
        D = self.dct if T == self.num_frame else dct_matrix(T, k).to(x)
        if fused.inference(self):
            return self._temporal_fused(x, s, D)
        f = self.freq_embed(torch.einsum("kt,btjc->bkjc", D, x).reshape(B, k, J * C))

        t = torch.cat([f + self.freq_pos, s + self.frame_pos], 1)  # frequency tokens first
        for blk in self.mixed_blocks:
            t = blk(t)
        t = self.temporal_norm(t)  # weighted means of each kind of token -> (B, 1, 2 * dim)
        pooled = torch.cat([_pool(self.freq_pool, t[:, :k]), _pool(self.frame_pool, t[:, k:])], -1)
        return self.head(pooled).view(B, 1, J, 3)

    def _temporal_fused(self, x: Tensor, s: Tensor, D: Tensor) -> Tensor:
        """Inference from the frame tokens ``s (B, n, dim)`` on: the tokens as token-major rows
        ``(T * B, dim)`` through the mixed blocks (:meth:`MixedBlock.fused_rows`; the blocks' module hooks
        do not fire), the weighted means one matrix product per kind of token."""
        B, _, J, C = x.shape
        k = self.coeffs_kept
        coeffs = torch.einsum("kt,btjc->kbjc", D, x).reshape(k * B, J * C)
        f = fused.linear(coeffs, self.freq_embed.weight, self.freq_embed.bias).view(k, B, -1)
        t = torch.cat([f, s.transpose(0, 1)])  # (T, B, dim), frequency tokens first
        t += torch.cat([self.freq_pos, self.frame_pos], 1).transpose(0, 1)
        t = t.view(-1, t.shape[-1])
        for blk in self.mixed_blocks:
            t = blk.fused_rows(t, B)
        t = self.temporal_norm(t).view(-1, B * t.shape[-1])

        def pool(conv: nn.Conv1d, rows: Tensor) -> Tensor:  # (tokens, B * dim) -> (B, 1, dim)
            w = conv.weight.view(1, 1, -1)
            return torch.baddbmm(conv.bias.view(1, 1, 1), w, rows.view(1, len(rows), -1)).view(B, 1, -1)

        pooled = torch.cat([pool(self.freq_pool, t[:k]), pool(self.frame_pool, t[k:])], -1)
        return self.head(pooled).view(B, 1, J, 3)


def _pool(conv: nn.Conv1d, tokens: Tensor) -> Tensor:
    """The 1x1 ``Conv1d`` over the token axis as a matrix product: ``(B, T, C) -> (B, 1, C)``."""
    weight = conv.weight.view(1, 1, -1).expand(len(tokens), -1, -1)
    return torch.baddbmm(conv.bias.view(1, 1, 1), weight, tokens)


def poseformerv2(variant: str = "243/27/27", **kwargs) -> PoseFormerV2:
    """A published configuration, ``"frames/kept frames/kept coefficients"`` (see :data:`VARIANTS`):
    depth 4, ``embed_dim_ratio`` 32, 8 heads, MLP ratio 2; ``kwargs`` override any constructor argument
    (e.g. ``num_joints``, ``in_chans=3`` for refinement). Randomly initialised."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown PoseFormerV2 variant {variant!r}; choose from {sorted(VARIANTS)}")
    f, n, k = VARIANTS[variant]
    return PoseFormerV2(**{"num_frame": f, "frames_kept": n, "coeffs_kept": k, **kwargs})


# ---------------------------------------------------------------- reference checkpoints
# first component of the reference's state-dict names -> ours
_NAMES = {
    "Joint_embedding": "joint_embed",
    "Freq_embedding": "freq_embed",
    "Spatial_pos_embed": "spatial_pos",
    "Temporal_pos_embed": "frame_pos",
    "Temporal_pos_embed_": "freq_pos",
    "Spatial_blocks": "spatial_blocks",
    "blocks": "mixed_blocks",
    "Spatial_norm": "spatial_norm",
    "Temporal_norm": "temporal_norm",
    "weighted_mean": "freq_pool",
    "weighted_mean_": "frame_pool",
    "head": "head",
}
_REF_NAMES = {v: k for k, v in _NAMES.items()}
# override names: the reference's (config.json / argparse and constructor) and ours -> constructor argument
_OVERRIDES = {
    "number_of_frames": "num_frame",
    "number_of_kept_frames": "frames_kept",
    "number_of_kept_coeffs": "coeffs_kept",
    **{a: a for a in inspect.signature(PoseFormerV2).parameters},
}


def _rename(key: str, table: dict) -> str:
    head, _, rest = key.partition(".")
    return table.get(head, head) + ("." + rest if rest else "")


def _infer_config(sd: dict[str, Tensor]) -> dict:
    """Constructor arguments readable from the shapes of a (renamed) state dict."""
    cfg = {}
    if "spatial_pos" in sd:
        cfg["num_joints"], cfg["embed_dim_ratio"] = sd["spatial_pos"].shape[1:]
    if "joint_embed.weight" in sd:
        cfg["in_chans"] = sd["joint_embed.weight"].shape[1]
    if "frame_pos" in sd:
        cfg["frames_kept"] = sd["frame_pos"].shape[1]
    if "freq_pos" in sd:
        cfg["coeffs_kept"] = sd["freq_pos"].shape[1]
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("mixed_blocks.")}
    if blocks:
        cfg["depth"] = max(blocks) + 1
    w = sd.get("mixed_blocks.0.mlp1.fc1.weight")
    if w is not None:
        ratio = w.shape[0] / w.shape[1]
        cfg["mlp_ratio"] = ratio if int(w.shape[1] * ratio) == w.shape[0] else (w.shape[0] + 0.5) / w.shape[1]
    if any(k.endswith("attn.qkv.weight") for k in sd):
        cfg["qkv_bias"] = any(k.endswith("attn.qkv.bias") for k in sd)
    return cfg


def load_official(path: str | Path, **overrides) -> PoseFormerV2:
    """Load a checkpoint of the reference implementation (``run_poseformer.py``) in eval mode.

    Accepts the reference's layout (``{'model_pos': state_dict, 'epoch', ...}``, keys prefixed with
    ``module.`` by ``nn.DataParallel``), or a bare state dict, with or without the prefix. Inferred from
    the shapes: ``num_joints``, ``embed_dim_ratio``, ``in_chans``, ``depth``, ``mlp_ratio``, ``qkv_bias``,
    ``number_of_kept_frames`` and ``number_of_kept_coeffs``. Not stored in the weights: ``num_heads``
    (default 8) and ``number_of_frames`` (the receptive field: 243 for 27 kept frames, 81 for 9, else 27
    with a warning, as the published models with 1 or 3 kept frames exist for 27 and 81 frames).

    Overrides use the reference's names (``number_of_frames``, ``number_of_kept_frames``,
    ``number_of_kept_coeffs``, ``depth``, ``embed_dim_ratio``, ``num_heads``, ``mlp_ratio``, ``qkv_bias``,
    ``qk_scale``, ``num_joints``, ``in_chans``, ``drop_path_rate``...) or the constructor's
    (``num_frame``, ``frames_kept``, ``coeffs_kept``). Loading is strict: missing, unexpected or
    mis-shaped tensors raise a ``ValueError`` naming the file.
    """
    unknown = sorted(set(overrides) - set(_OVERRIDES))
    if unknown:
        raise TypeError(
            f"load_official: unknown override(s) {unknown}; expected some of {sorted(_OVERRIDES)}"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model_pos"), dict):
        ckpt = ckpt["model_pos"]
    if not isinstance(ckpt, dict) or not ckpt or not all(isinstance(v, Tensor) for v in ckpt.values()):
        raise ValueError(f"{path}: expected a PoseFormerV2 state dict or {{'model_pos': state_dict, ...}}")
    orig = {_rename(k.removeprefix("module."), _NAMES): k for k in ckpt}
    sd = {k: ckpt[o] for k, o in orig.items()}

    cfg = {"num_heads": 8, "drop_path_rate": 0.0, **_infer_config(sd)}
    cfg.update({_OVERRIDES[k]: v for k, v in overrides.items()})
    if "num_frame" not in cfg:  # the published 27/27 and 9/9 models are 243 and 81 frames; others: 27 or 81
        n = cfg.get("frames_kept", 27)
        cfg["num_frame"] = {27: 243, 9: 81}.get(n, max(27, n, cfg.get("coeffs_kept") or 0))
        if n not in (27, 9):
            warnings.warn(
                f"{path}: number_of_frames is not stored in the checkpoint; assuming {cfg['num_frame']} "
                f"({n} kept frames: the published models have 27 or 81); pass number_of_frames to be sure",
                stacklevel=2,
            )
    model = PoseFormerV2(**cfg)

    own = model.state_dict()
    missing = [_rename(k, _REF_NAMES) for k in own if k not in sd]
    unexpected = [orig[k] for k in sd if k not in own]
    shapes = [
        f"{orig[k]} {tuple(v.shape)} (model expects {tuple(own[k].shape)})"
        for k, v in sd.items()
        if k in own and v.shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{path}: not a PoseFormerV2 checkpoint for {cfg}:\n  missing: {missing}\n"
            f"  unexpected: {unexpected}\n  shape mismatches: {shapes}"
        )
    model.load_state_dict(sd)
    return model.eval()
