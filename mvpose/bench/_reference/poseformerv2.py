"""PoseFormerV2's reference forward pass (``PoseTransformerV2``), written plainly for benchmarking.

Structure as in the reference (fixture README ``poseformerv2``): timm-style ViT blocks with the
attention computed explicitly (``softmax(q @ k^T * scale) @ v`` after a fused ``qkv`` linear and a
reshape/permute), one ``nn.Module`` per operation, LayerNorm ``eps=1e-6`` (head: 1e-5), and the DCT
of torch_dct (unnormalised DCT-II, ``norm=None``) computed as that package does it: Makhoul's
reordering and one FFT per call, over the whole window and then truncated to the kept coefficients;
the frequency MLP applies it (and its inverse) to a permuted copy of its tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mvpose.models.temporal.poseformerv2 import _REF_NAMES, PoseFormerV2, _rename

__all__ = ["dct_fft", "idct_fft", "ReferencePoseFormerV2", "from_ours"]


def dct_fft(x: Tensor) -> Tensor:
    """Unnormalised DCT-II over the last axis by one FFT (Makhoul): ``X_k = 2 sum_n x_n cos(pi k (2n+1)/2N)``.

    The even samples in order, then the odd ones reversed, are Fourier transformed; coefficient ``k`` is
    the real part of ``V_k exp(-i pi k / 2N)``, doubled.
    """
    N = x.shape[-1]
    flat = x.contiguous().view(-1, N)
    v = torch.cat([flat[:, ::2], flat[:, 1::2].flip([1])], dim=1)
    spec = torch.view_as_real(torch.fft.fft(v, dim=1))
    angle = -torch.arange(N, dtype=x.dtype, device=x.device)[None, :] * math.pi / (2 * N)
    out = spec[:, :, 0] * torch.cos(angle) - spec[:, :, 1] * torch.sin(angle)
    return (2 * out).view(x.shape)


def idct_fft(X: Tensor) -> Tensor:
    """Inverse of :func:`dct_fft` over the last axis via one inverse real FFT (Makhoul's inverse)."""
    N = X.shape[-1]
    flat = X.contiguous().view(-1, N) / 2
    # spectrum of the reordered sequence: (X_k - i X_{N-k}) exp(i pi k / 2N), X_N = 0
    im = torch.cat([flat[:, :1] * 0, -flat.flip([1])[:, :-1]], dim=1)
    angle = torch.arange(N, dtype=X.dtype, device=X.device)[None, :] * math.pi / (2 * N)
    c, s = torch.cos(angle), torch.sin(angle)
    spec = torch.stack([flat * c - im * s, flat * s + im * c], dim=2)
    v = torch.fft.irfft(torch.view_as_complex(spec), n=N, dim=1)
    out = v.new_zeros(v.shape)
    out[:, ::2] += v[:, : N - N // 2]
    out[:, 1::2] += v.flip([1])[:, : N // 2]
    return out.view(X.shape)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class FreqMlp(Mlp):
    """:class:`Mlp` between a DCT and an inverse DCT over the token axis (on permuted copies)."""

    def forward(self, x: Tensor) -> Tensor:
        x = dct_fft(x.permute(0, 2, 1)).permute(0, 2, 1).contiguous()
        x = super().forward(x)
        return idct_fft(x.permute(0, 2, 1)).permute(0, 2, 1).contiguous()


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, qk_scale: float | None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop, self.proj, self.proj_drop = nn.Dropout(0.0), nn.Linear(dim, dim), nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(B, N, C)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, qk_scale: float | None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale)
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MixedBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, qk_scale: float | None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale)
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp1 = Mlp(dim, int(dim * mlp_ratio))
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp2 = FreqMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        f = x.shape[1]
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x1 = x[:, : f // 2] + self.drop_path(self.mlp1(self.norm2(x[:, : f // 2])))
        x2 = x[:, f // 2 :] + self.drop_path(self.mlp2(self.norm3(x[:, f // 2 :])))
        return torch.cat((x1, x2), dim=1)


class ReferencePoseFormerV2(nn.Module):
    """``PoseTransformerV2`` (reference parameter names): ``(B, F, J, C) -> (B, 1, J, 3)``."""

    def __init__(self, num_frame, num_joints, in_chans, embed_dim_ratio, depth, num_heads, mlp_ratio,
                 qkv_bias, qk_scale, frames_kept, coeffs_kept):  # fmt: skip
        super().__init__()
        dim = embed_dim_ratio * num_joints
        self.num_frame_kept, self.num_coeff_kept = frames_kept, coeffs_kept
        self.Joint_embedding = nn.Linear(in_chans, embed_dim_ratio)
        self.Freq_embedding = nn.Linear(in_chans * num_joints, dim)
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, num_joints, embed_dim_ratio))
        self.Temporal_pos_embed = nn.Parameter(torch.zeros(1, frames_kept, dim))
        self.Temporal_pos_embed_ = nn.Parameter(torch.zeros(1, coeffs_kept, dim))
        self.pos_drop = nn.Dropout(0.0)
        args = (num_heads, mlp_ratio, qkv_bias, qk_scale)
        self.Spatial_blocks = nn.ModuleList(Block(embed_dim_ratio, *args) for _ in range(depth))
        self.blocks = nn.ModuleList(MixedBlock(dim, *args) for _ in range(depth))
        self.Spatial_norm = nn.LayerNorm(embed_dim_ratio, eps=1e-6)
        self.Temporal_norm = nn.LayerNorm(dim, eps=1e-6)
        self.weighted_mean = nn.Conv1d(coeffs_kept, 1, kernel_size=1)
        self.weighted_mean_ = nn.Conv1d(frames_kept, 1, kernel_size=1)
        self.head = nn.Sequential(nn.LayerNorm(dim * 2), nn.Linear(dim * 2, num_joints * 3))

    def spatial_features(self, x: Tensor) -> Tensor:
        b, f, p, _ = x.shape
        n = self.num_frame_kept
        index = torch.arange((f - 1) // 2 - n // 2, (f - 1) // 2 + n // 2 + 1)
        x = self.Joint_embedding(x[:, index].view(b * n, p, -1))
        x += self.Spatial_pos_embed
        x = self.pos_drop(x)
        for blk in self.Spatial_blocks:
            x = blk(x)
        x = self.Spatial_norm(x)
        return x.reshape(b, n, -1)  # '(b f) p c -> b f (p c)'

    def temporal_features(self, x: Tensor, spatial: Tensor) -> Tensor:
        b = x.shape[0]
        k = self.num_coeff_kept
        x = dct_fft(x.permute(0, 2, 3, 1))[:, :, :, :k]
        x = self.Freq_embedding(x.permute(0, 3, 1, 2).contiguous().view(b, k, -1))
        spatial += self.Temporal_pos_embed
        x += self.Temporal_pos_embed_
        x = torch.cat((x, spatial), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.Temporal_norm(x)

    def forward(self, x: Tensor) -> Tensor:
        b, _, p, _ = x.shape
        x_ = x.clone()
        x = self.temporal_features(x_, self.spatial_features(x))
        k = self.num_coeff_kept
        x = torch.cat((self.weighted_mean(x[:, :k]), self.weighted_mean_(x[:, k:])), dim=-1)
        return self.head(x).view(b, 1, p, -1)


def from_ours(model: PoseFormerV2) -> ReferencePoseFormerV2:
    """The reference network with ``model``'s weights (our names mapped to the reference's), eval mode."""
    blk = model.spatial_blocks[0]
    default_scale = (blk.attn.qkv.in_features // blk.attn.num_heads) ** -0.5
    ref = ReferencePoseFormerV2(
        num_frame=model.num_frame,
        num_joints=model.num_joints,
        in_chans=model.in_chans,
        embed_dim_ratio=model.spatial_pos.shape[-1],
        depth=len(model.mixed_blocks),
        num_heads=blk.attn.num_heads,
        mlp_ratio=blk.mlp.fc1.out_features / blk.mlp.fc1.in_features,
        qkv_bias=blk.attn.qkv.bias is not None,
        qk_scale=None if blk.attn.scale == default_scale else blk.attn.scale,
        frames_kept=model.frames_kept,
        coeffs_kept=model.coeffs_kept,
    )
    ref.load_state_dict({_rename(k, _REF_NAMES): v for k, v in model.state_dict().items()})
    return ref.eval()
