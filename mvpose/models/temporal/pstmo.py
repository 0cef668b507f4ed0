"""P-STMO: pre-trained spatial temporal many-to-one model (Shan et al., ECCV 2022), reimplemented.

Two networks share a front end, trained in two stages:

* :class:`PSTMOPretrain` (stage I, *masked pose modelling*): some frames are hidden from the encoder
  (temporal mask) and in every frame some joints' 2D inputs are replaced by a learned token (spatial
  mask); an encoder sees the visible frames only and a narrower decoder reconstructs the whole 2D
  sequence (a masked autoencoder over time).
* :class:`PSTMO` (stage II, the lifter): the same front end (per-frame spatial encoder + vanilla
  transformer over all frames, "VTE") followed by a strided transformer ("STE") that shrinks the time
  axis to the centre frame (many-to-one), with two heads: the centre frame (the model's output) and one
  pose per input frame (an auxiliary training target). :func:`transfer_pretrained` carries the stage-I
  weights over.

Architecture, on ``x (B, T, J, C)`` (``T = frames``, ``C = in_channels``; features ``j * C + c``):

* spatial encoder (``encoder``, an FCBlock): ``Conv1d(J*C -> 2*channel, k=1) -> BN -> LeakyReLU(0.2)``,
  one residual block ``x + [Conv1d -> BN -> LReLU -> Conv1d -> BN -> LReLU](x)`` at ``2*channel``, then
  ``Conv1d(2*channel -> channel)``: one ``channel``-vector per frame.
* ``+ pos_embedding (1, T, channel)``, then ``layers`` pre-norm transformer layers (``transformer``):
  ``x + MHA(LN(x))`` and ``x + W2(ReLU(W1(LN(x))))`` (``channel -> d_hid -> channel``), 8 heads.
* ``head_seq``: ``BN1d -> Conv1d(channel -> 3*J_out)`` per frame (output index ``j * 3 + c``).
* strided reducer (``reducer``, one layer per entry of ``stride_num``): layer ``i`` adds
  ``reduce_pos_embeddings[i][:, :L]`` (tables for the first three layers only), then
  ``x + MHA(LN(x))``, then ``x[:, ::s] + FFN(LN(x))`` with ``FFN = Conv1d(k1) -> ReLU -> Conv1d(k3,
  stride s, zero padding 1)``; ``T -> ceil(T / s)`` per layer (27 -> 9 -> 3 -> 1, 243 -> ... -> 1).
* ``head_centre``: as ``head_seq``, on the reducer output.

Numerical quirks of the reference kept here (they change outputs well above float noise):
LayerNorm is ``a_2 * (x - mean) / (std + 1e-6) + b_2`` with the *unbiased* std and eps on the std;
each transformer owns a final LayerNorm that the reference never applies (kept, unused, so that
checkpoints load strictly and parameter counts match); positional embeddings of the reducer exist for
its first three layers only; the decoder of the pre-training model works in *token order* (visible
frames first, then masked frames, each ascending), and the spatial mask token replaces raw 2D inputs.

In eval mode without autograd the network runs fused (:mod:`mvpose.models.temporal._fused`): BatchNorms
and LayerNorm affines folded into the neighbouring matrix products (weights cached until a parameter
changes), q/k/v in one product, bias, activations and residuals inside oneDNN's kernels, the strided
convolutions as one product over zero-padded windows; the same numbers up to float rounding.
:meth:`PSTMO.forward` computes the centre head only (the full-sequence head is a training target).

Parameter names are mvpose's; :func:`convert_official_state_dict` maps the reference's
(``Transformer.model.*`` -> ``transformer.*``, ``Transformer_reduce.model.*`` -> ``reducer.*``,
``Transformer_dec.model.*`` -> ``decoder.*``, ``self_attn.linears.{0,1,2,3}`` -> ``attn.{q,k,v,out}``,
``sublayer.{0,1}.norm`` -> ``norm{1,2}``, ``feed_forward`` -> ``ffn``, ``fcn``/``fcn_1``/``fcn_dec`` ->
``head_centre``/``head_seq``/``head``, ``encoder_LN`` -> ``encoder_norm``, ``dec_pos_embedding`` ->
``decoder_pos_embedding``, ``Transformer_reduce.model.pos_embedding_k`` -> ``reduce_pos_embeddings.{k-1}``).

Published configurations (reference ``README``; ``stride_num`` from ``common/opt.py`` by ``frames``):

=====================  ======  ======  =======  =====  ===================================
model                  frames  layers  channel  d_hid  stage-I masking (``-tmr``, ``-smn``)
=====================  ======  ======  =======  =====  ===================================
P-STMO-S, H36M CPN     243     3       256      512    0.8, 2
P-STMO-S, H36M GT 2D   243     3       256      512    0.8, 7
P-STMO, H36M CPN       243     4       256      512    0.6, 3
P-STMO-S, 3DHP         81      3       256      512    0.7, 2
P-STMO-S, in the wild  243     3       256      512    0.8, 2
=====================  ======  ======  =======  =====  ===================================

Human3.6M models train on every 2nd frame (``-tds 2``: data loading only). Stage-I masking draws,
per batch (shared by the batch), exactly ``int(T * temporal_mask_rate)`` masked frames and, in every
frame, ``spatial_mask_num`` distinct joints among the first ``J - 1`` (the reference's
``random.sample(range(0, 16), smn)`` for 17 joints: the last joint is never masked), see
:func:`draw_masks`. The decoder is ``channel // dec_dim_shrink`` wide (``dec_dim_shrink = 2``) with FFN
``d_hid // 2`` and ``layers - 1`` layers.

Example:
    >>> model = pstmo_s(frames=27).eval()
    >>> centre, seq = model.forward_with_sequence(torch.zeros(4, 27, 17, 2))
    >>> centre.shape, seq.shape, model.receptive_field
    (torch.Size([4, 1, 17, 3]), torch.Size([4, 27, 17, 3]), 27)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvpose.models.temporal import _fused as fused
from mvpose.models.temporal._fused import bn_affine, cached, inference

__all__ = [
    "PSTMO",
    "PSTMOPretrain",
    "pstmo_s",
    "pstmo",
    "pstmo_pretrain",
    "STRIDE_NUM",
    "PUBLISHED_MASKING",
    "draw_masks",
    "transfer_pretrained",
    "convert_official_state_dict",
    "load_official",
]

#: ``stride_num`` of the reference (``common/opt.py``) for each supported ``frames``.
STRIDE_NUM: dict[int, list[int]] = {
    9: [1, 3, 3],
    27: [3, 3, 3],
    81: [3, 3, 3, 3],
    243: [3, 3, 3, 3, 3],
    351: [3, 9, 13],
}

#: Stage-I masking of the published models: ``(temporal_mask_rate, spatial_mask_num)``.
PUBLISHED_MASKING: dict[str, tuple[float, int]] = {
    "h36m_cpn_pstmo_s": (0.8, 2),
    "h36m_gt_pstmo_s": (0.8, 7),
    "h36m_cpn_pstmo": (0.6, 3),
    "3dhp_pstmo_s": (0.7, 2),
    "in_the_wild_pstmo_s": (0.8, 2),
}


class LayerNorm(nn.Module):
    """The reference's LayerNorm: ``a_2 * (x - mean) / (std + eps) + b_2``, unbiased std, eps on the std."""

    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__()
        self.a_2 = nn.Parameter(torch.ones(features))
        self.b_2 = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, -1, keepdim=True)  # unbiased
        return torch.addcmul(self.b_2, (x - mean) / (var.sqrt() + self.eps), self.a_2)

    def normalized(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(h, r)`` with ``forward(x) == a_2 * h * r + b_2``: ``h = (x - mean) / std_biased`` (one fused
        ``layer_norm`` pass) and a per-row factor ``r (..., 1)``, so that a following linear layer can take
        ``a_2``/``b_2`` into its weights (:func:`_fold_norm`)."""
        n = x.shape[-1]
        h, _, rstd = torch.native_layer_norm(x, (n,), None, None, 1e-30)
        # std_unbiased = sqrt(n / (n - 1)) / rstd, so r = 1 / (rstd * (std_unbiased + eps)):
        return h, (rstd * self.eps + math.sqrt(n / (n - 1))).reciprocal_()


def _fold_norm(norm: LayerNorm, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """``linear(a_2 * h + b_2) == linear'(h)``: the weight and bias of ``linear'``."""
    return weight * norm.a_2, torch.addmv(bias, weight, norm.b_2)


def _uses_batch_stats(bn: nn.BatchNorm1d) -> bool:
    return bn.training or bn.running_mean is None


def _fold_linear_bn(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """``BN(conv(x)) == linear(x)`` for a 1x1 ``conv`` and an eval-mode ``bn``: ``(weight, bias)``."""
    scale, shift = bn_affine(bn)
    return conv.weight.squeeze(-1) * scale[:, None], torch.addcmul(shift, conv.bias, scale)


def _fold_bn_linear(bn: nn.BatchNorm1d, conv: nn.Conv1d) -> tuple[Tensor, Tensor]:
    """``conv(BN(x)) == linear(x)`` for an eval-mode ``bn`` and a 1x1 ``conv``: ``(weight, bias)``."""
    scale, shift = bn_affine(bn)
    w = conv.weight.squeeze(-1)
    return w * scale, torch.addmv(conv.bias, w, shift)


def _linear_bn(x: Tensor, conv: nn.Conv1d, bn: nn.BatchNorm1d) -> Tensor:
    """``BN(conv(x))`` for a 1x1 ``conv`` on rows ``x (N, C_in)`` (eval BatchNorm folded into the weights)."""
    if _uses_batch_stats(bn):
        return bn(F.linear(x, conv.weight.squeeze(-1), conv.bias))
    return F.linear(x, *_fold_linear_bn(conv, bn))


class MultiHeadAttention(nn.Module):
    """Self-attn ``(B, L, D) -> (B, L, D)``: q, k, v, out ``Linear(D, D)``; softmax(q k^T / sqrt(d_k)).

    q, k and v are computed by one matrix product (their weights stacked)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"width {d_model} is not divisible by {num_heads} heads")
        self.num_heads, self.dropout = num_heads, dropout
        self.q, self.k, self.v, self.out = (nn.Linear(d_model, d_model) for _ in range(4))

    def qkv_params(self) -> tuple[Tensor, Tensor]:
        """``(weight (3D, D), bias (3D,))`` of q, k, v stacked."""
        w = torch.cat([self.q.weight, self.k.weight, self.v.weight])
        return w, torch.cat([self.q.bias, self.k.bias, self.v.bias])

    def attend(self, qkv: Tensor, B: int, L: int) -> Tensor:
        """Rows ``qkv (B * L, 3D)`` -> attention output before ``out``, rows ``(B * L, D)``."""
        q, k, v = qkv.view(B, L, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return y.transpose(1, 2).reshape(B * L, -1)

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        y = self.attend(F.linear(x.reshape(B * L, D), *self.qkv_params()), B, L)
        return self.out(y).view(B, L, D)


class FeedForward(nn.Module):
    """``w_2(ReLU(w_1(x)))`` on ``(B, L, D)``; with ``stride``: Conv1d k1, then Conv1d k3 (stride, pad 1)."""

    def __init__(self, d_model: int, d_hid: int, dropout: float, stride: int | None = None):
        super().__init__()
        self.strided = stride is not None
        if self.strided:
            self.w_1 = nn.Conv1d(d_model, d_hid, kernel_size=1)
            self.w_2 = nn.Conv1d(d_hid, d_model, kernel_size=3, stride=stride, padding=1)
        else:
            self.w_1, self.w_2 = nn.Linear(d_model, d_hid), nn.Linear(d_hid, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.strided:
            return self.w_2(self.dropout(F.relu(self.w_1(x.transpose(1, 2))))).transpose(1, 2)
        return self.w_2(self.dropout(F.relu(self.w_1(x))))

    def windows(self, z: Tensor) -> Tensor:
        """Input of the strided ``w_2`` as rows of zero-padded windows: ``z (B, L, d_hid)`` ->
        ``(B * L', 3 d_hid)``, column ``tap * d_hid + channel`` (``w_2`` is then one matrix product)."""
        zp = F.pad(z, (0, 0, 1, 1)).unfold(1, 3, self.w_2.stride[0])  # (B, L', d_hid, 3)
        return zp.transpose(2, 3).reshape(-1, 3 * z.shape[-1])


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer ``(B, L, D) -> (B, ceil(L / stride), D)``.

    ``x + MHA(LN(x))`` then ``x[:, ::stride] + FFN(LN(x))`` (the strided shortcut is the reference's
    ``MaxPool1d(1, stride)``; ``stride=None`` is the plain layer with a Linear FFN). In eval mode without
    autograd the layer runs fused: the LayerNorms' affine parameters folded into the following matrix
    products, q/k/v in one GEMM, bias, ReLU and residuals inside the GEMM kernels and the strided
    convolution as one GEMM over zero-padded windows (weights prepared once, see :mod:`._fused`).
    """

    def __init__(self, d_model: int, d_hid: int, num_heads: int, dropout: float, stride: int | None = None):
        super().__init__()
        self.stride = stride or 1
        self.attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.ffn = FeedForward(d_model, d_hid, dropout, stride)
        self.norm1, self.norm2 = LayerNorm(d_model), LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if inference(self):
            return self._fused(x)
        x = x + self.dropout(self.attn(self.norm1(x)))
        return x[:, :: self.stride] + self.dropout(self.ffn(self.norm2(x)))

    def _fused_params(self) -> tuple[Tensor, ...]:
        w1 = self.ffn.w_1.weight.flatten(1)
        w2 = self.ffn.w_2.weight
        if self.ffn.strided:  # (D, d_hid, 3) -> (D, 3 d_hid), column tap * d_hid + channel
            w2 = w2.permute(0, 2, 1).reshape(w2.shape[0], -1)
        return (
            *_fold_norm(self.norm1, *self.attn.qkv_params()),
            *_fold_norm(self.norm2, w1, self.ffn.w_1.bias),
            self.attn.out.weight,
            w2.contiguous(),
        )

    def _fused(self, x: Tensor) -> Tensor:
        w_qkv, b_qkv, w_1, b_1, w_out, w_2 = cached(self, self._fused_params)
        B, L, D = x.shape
        rows = x.reshape(B * L, D)
        h, r = self.norm1.normalized(rows)
        y = self.attn.attend(fused.linear(h.mul_(r), w_qkv, b_qkv), B, L)
        rows = fused.linear_add(y, rows, w_out, self.attn.out.bias)
        h, r = self.norm2.normalized(rows)
        z = fused.linear(h.mul_(r), w_1, b_1, "relu")
        if self.ffn.strided:
            z = self.ffn.windows(z.view(B, L, -1))
            rows = rows.view(B, L, D)[:, :: self.stride].reshape(-1, D)
        return fused.linear_add(z, rows, w_2, self.ffn.w_2.bias).view(B, -1, D)


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` (one per entry of ``strides``, ``None`` = plain layer).

    ``norm`` is the reference's final LayerNorm, present in its checkpoints but never applied.
    """

    def __init__(
        self, strides: Sequence[int | None], d_model: int, d_hid: int, num_heads: int, dropout: float
    ):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, d_hid, num_heads, dropout, s) for s in strides)
        self.norm = LayerNorm(d_model)  # unused (reference quirk)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class ResidualBlock(nn.Module):
    """``x + [Conv1d(k1) -> BN -> LeakyReLU(0.2) -> Dropout] x 2`` on rows ``(N, D)`` (frames as rows)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.w1, self.batch_norm1 = nn.Conv1d(width, width, 1), nn.BatchNorm1d(width)
        self.w2, self.batch_norm2 = nn.Conv1d(width, width, 1), nn.BatchNorm1d(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dropout(F.leaky_relu(_linear_bn(x, self.w1, self.batch_norm1), 0.2, inplace=True))
        return x + self.dropout(F.leaky_relu(_linear_bn(y, self.w2, self.batch_norm2), 0.2, inplace=True))


class FCBlock(nn.Module):
    """Per-frame spatial encoder ``(B, T, J*C) -> (B, T, channel)`` (the reference's ``FCBlock``).

    Its 1x1 convolutions run as matrix products over the ``B * T`` frames; in eval mode the BatchNorms are
    folded into them."""

    def __init__(self, in_features: int, channel: int, dropout: float = 0.1, blocks: int = 1):
        super().__init__()
        self.fc_1, self.bn_1 = nn.Conv1d(in_features, 2 * channel, 1), nn.BatchNorm1d(2 * channel)
        self.layers = nn.ModuleList(ResidualBlock(2 * channel, dropout) for _ in range(blocks))
        self.fc_2 = nn.Conv1d(2 * channel, channel, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        x = x.reshape(B * T, -1)
        if inference(self) and not _uses_batch_stats(self.bn_1):
            return self._fused(x).view(B, T, -1)
        x = self.dropout(F.leaky_relu(_linear_bn(x, self.fc_1, self.bn_1), 0.2, inplace=True))
        for layer in self.layers:
            x = layer(x)
        return F.linear(x, self.fc_2.weight.squeeze(-1), self.fc_2.bias).view(B, T, -1)

    def _fused_params(self) -> tuple[Tensor, ...]:
        folded = [*_fold_linear_bn(self.fc_1, self.bn_1)]
        for blk in self.layers:
            folded += [*_fold_linear_bn(blk.w1, blk.batch_norm1), *_fold_linear_bn(blk.w2, blk.batch_norm2)]
        return (*folded, self.fc_2.weight.squeeze(-1), self.fc_2.bias)

    def _fused(self, x: Tensor) -> Tensor:
        p = cached(self, self._fused_params)
        x = fused.linear(x, p[0], p[1], "leaky_relu", 0.2)
        for i in range(len(self.layers)):
            w_a, b_a, w_b, b_b = p[2 + 4 * i : 6 + 4 * i]
            y = fused.linear(x, w_a, b_a, "leaky_relu", 0.2)
            x = fused.linear(y, w_b, b_b, "leaky_relu", 0.2).add_(x)
        return fused.linear(x, p[-2], p[-1])


def _head(channel: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm1d(channel, momentum=0.1), nn.Conv1d(channel, out_features, 1))


def _apply_head(head: nn.Sequential, x: Tensor, joints: int) -> Tensor:
    """``(B, L, D) -> (B, L, J, c)`` through ``head`` (BN, 1x1 conv) with output index ``j * c + channel``."""
    B, L, D = x.shape
    bn, conv = head[0], head[1]
    if _uses_batch_stats(bn):
        y = F.linear(bn(x.reshape(B * L, D)), conv.weight.squeeze(-1), conv.bias)
    elif inference(head):
        y = fused.linear(x.reshape(B * L, D), *cached(head, lambda: _fold_bn_linear(bn, conv)))
    else:
        y = F.linear(x.reshape(B * L, D), *_fold_bn_linear(bn, conv))
    return y.view(B, L, joints, -1)


def _check_input(x: Tensor, frames: int, joints: int, channels: int, name: str) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != (frames, joints, channels):
        raise ValueError(
            f"{name}: expected input (B, {frames}, {joints}, {channels}) (B, frames, joints, in_channels), "
            f"got {tuple(x.shape)}"
        )


class PSTMO(nn.Module):
    """P-STMO lifter (stage II): ``(B, T, J, C) -> (B, 1, J_out, 3)``, the centre frame.

    Args (the reference's option names): ``frames`` (``T``, the receptive field, odd), ``layers`` (VTE
    depth: 3 for P-STMO-S, 4 for P-STMO), ``channel``, ``d_hid`` (FFN width), ``stride_num`` (one
    stride per reducer layer; default :data:`STRIDE_NUM` ``[frames]``), ``n_joints``, ``out_joints``,
    ``in_channels`` (2 lifting, 3 refinement), ``out_channels`` (3), ``num_heads`` (8), ``dropout``.

    ``forward(x)`` returns the centre frame (index ``(T - 1) // 2``) ``(B, T_out, J_out, 3)`` with
    ``T_out = 1`` for every configuration of :data:`STRIDE_NUM` (the reducer's output length in
    general). :meth:`forward_with_sequence` also returns the full-sequence head ``(B, T, J_out, 3)``
    (used in training: ``mpjpe(seq) + mpjpe(centre)``); :meth:`forward_intermediates` every stage.
    Outputs are in the units of the training targets (metres, camera frame, root-relative for the
    reference; its evaluation zeroes the root joint afterwards). Input 2D is normalised screen
    coordinates (:func:`mvpose.data.sequences.flip.normalize_screen_coordinates`).
    """

    def __init__(
        self,
        frames: int = 243,
        layers: int = 3,
        channel: int = 256,
        d_hid: int = 512,
        stride_num: Sequence[int] | None = None,
        n_joints: int = 17,
        out_joints: int | None = None,
        in_channels: int = 2,
        out_channels: int = 3,
        num_heads: int = 8,
        dropout: float = 0.1,
    ):
        super().__init__()
        if stride_num is None:
            if frames not in STRIDE_NUM:
                raise ValueError(f"no default stride_num for frames={frames}; pass stride_num explicitly")
            stride_num = STRIDE_NUM[frames]
        self.frames, self.stride_num = int(frames), [int(s) for s in stride_num]
        self.n_joints, self.out_joints = n_joints, out_joints or n_joints
        self.in_channels, self.out_channels = in_channels, out_channels
        self.encoder = FCBlock(in_channels * n_joints, channel)
        self.pos_embedding = nn.Parameter(torch.randn(1, frames, channel))
        self.transformer = TransformerEncoder([None] * layers, channel, d_hid, num_heads, dropout)
        n_pos = min(3, len(self.stride_num))
        self.reduce_pos_embeddings = nn.ParameterList(torch.randn(1, frames, channel) for _ in range(n_pos))
        self.reducer = TransformerEncoder(self.stride_num, channel, d_hid, num_heads, dropout)
        self.head_centre = _head(channel, out_channels * self.out_joints)
        self.head_seq = _head(channel, out_channels * self.out_joints)

    @property
    def receptive_field(self) -> int:
        return self.frames

    def forward_intermediates(self, x: Tensor, sequence: bool = True) -> dict[str, Tensor]:
        """Every stage of the forward pass on ``x (B, T, J, C)``.

        Returns a dict: ``encoder_out`` and ``transformer_out`` ``(B, T, channel)``,
        ``reduce_layer{i}_out`` ``(B, L_i, channel)``, ``output_seq (B, T, J_out, 3)`` (only with
        ``sequence``) and ``output_centre (B, T_out, J_out, 3)`` (the fixture's names).
        """
        _check_input(x, self.frames, self.n_joints, self.in_channels, type(self).__name__)
        out = {"encoder_out": self.encoder(x.flatten(2))}
        h = out["transformer_out"] = self.transformer(out["encoder_out"] + self.pos_embedding)
        if sequence:
            out["output_seq"] = _apply_head(self.head_seq, h, self.out_joints)
        for i, layer in enumerate(self.reducer.layers):
            if i < len(self.reduce_pos_embeddings):
                h = h + self.reduce_pos_embeddings[i][:, : h.shape[1]]
            h = out[f"reduce_layer{i}_out"] = layer(h)
        out["output_centre"] = _apply_head(self.head_centre, h, self.out_joints)
        return out

    def forward_with_sequence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(centre (B, T_out, J_out, 3), seq (B, T, J_out, 3))`` for ``x (B, T, J, C)``."""
        out = self.forward_intermediates(x)
        return out["output_centre"], out["output_seq"]

    def forward(self, x: Tensor) -> Tensor:
        """Centre-frame 3D pose ``(B, T_out, J_out, 3)`` (``T_out = 1``) for ``x (B, T, J, C)`` (the
        full-sequence head is skipped: see :meth:`forward_with_sequence`)."""
        return self.forward_intermediates(x, sequence=False)["output_centre"]


def draw_masks(
    frames: int,
    n_joints: int,
    temporal_mask_rate: float,
    spatial_mask_num: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Stage-I masks as the reference's ``run.py`` draws them for a batch.

    Returns ``temporal_mask (T,)`` bool with exactly ``int(T * temporal_mask_rate)`` True (masked) frames
    at random positions, and ``spatial_mask (T, J)`` bool with exactly ``spatial_mask_num`` True joints
    per frame, drawn without replacement among joints ``0 .. J - 2`` (the last joint is never masked, as
    in the reference). Deterministic given ``generator`` (CPU).

    Example:
        >>> tm, sm = draw_masks(27, 17, 0.8, 2, torch.Generator().manual_seed(0))
        >>> int(tm.sum()), sm.sum(1).unique().tolist(), bool(sm[:, 16].any())
        (21, [2], False)
    """
    if not 0 <= spatial_mask_num <= n_joints - 1:
        raise ValueError(f"spatial_mask_num must lie in [0, {n_joints - 1}], got {spatial_mask_num}")
    n_masked = int(frames * temporal_mask_rate)
    temporal = torch.zeros(frames, dtype=torch.bool)
    temporal[torch.randperm(frames, generator=generator)[:n_masked]] = True
    picks = torch.rand(frames, n_joints - 1, generator=generator).argsort(-1)[:, :spatial_mask_num]
    spatial = torch.zeros(frames, n_joints, dtype=torch.bool).scatter_(1, picks, True)
    return temporal, spatial


class PSTMOPretrain(nn.Module):
    """P-STMO masked pose modelling (stage I): reconstruct ``(B, T, J, C)`` 2D sequences from masked ones.

    Args: as :class:`PSTMO` (``frames``, ``layers``, ``channel``, ``d_hid``, ``n_joints``,
    ``out_joints``, ``in_channels``, ``num_heads``, ``dropout``), plus ``temporal_mask_rate`` and
    ``spatial_mask_num`` (used when :meth:`forward` draws the masks itself; see
    :data:`PUBLISHED_MASKING`), ``dec_dim_shrink`` (decoder width ``channel // dec_dim_shrink``, FFN
    ``d_hid // dec_dim_shrink``) and ``decoder_layers`` (default ``layers - 1``).

    ``forward(x, temporal_mask, spatial_mask)`` returns the reconstruction ``(B, T, J_out, C)`` in
    **frame order**; the reference's raw output is in token order (visible frames first), see
    :meth:`forward_intermediates`. Masks: ``temporal_mask (T,)`` or ``(B, T)`` bool, True = frame hidden
    from the encoder (the same number of masked frames in every sample); ``spatial_mask (T, J)`` or
    ``(B, T, J)`` bool, True = the joint's input replaced by ``spatial_mask_token``. Missing masks are
    drawn by :func:`draw_masks` (one pair per call, shared by the batch, as the reference does per
    batch) from ``generator``. The reference's loss is ``mpjpe(reconstruction, input)`` over all frames.
    """

    def __init__(
        self,
        frames: int = 243,
        layers: int = 3,
        channel: int = 256,
        d_hid: int = 512,
        n_joints: int = 17,
        out_joints: int | None = None,
        in_channels: int = 2,
        temporal_mask_rate: float = 0.8,
        spatial_mask_num: int = 2,
        dec_dim_shrink: int = 2,
        decoder_layers: int | None = None,
        num_heads: int = 8,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.frames, self.n_joints, self.out_joints = int(frames), n_joints, out_joints or n_joints
        self.in_channels = in_channels
        self.temporal_mask_rate, self.spatial_mask_num = temporal_mask_rate, spatial_mask_num
        dec = channel // dec_dim_shrink
        decoder_layers = layers - 1 if decoder_layers is None else decoder_layers
        self.encoder = FCBlock(in_channels * n_joints, channel)
        self.pos_embedding = nn.Parameter(torch.randn(1, frames, channel))
        self.transformer = TransformerEncoder([None] * layers, channel, d_hid, num_heads, dropout)
        self.encoder_norm = LayerNorm(channel)
        self.encoder_to_decoder = nn.Linear(channel, dec, bias=False)
        self.decoder_pos_embedding = nn.Parameter(torch.randn(1, frames, dec))
        self.mask_token = nn.Parameter(torch.randn(1, 1, dec))
        self.spatial_mask_token = nn.Parameter(torch.randn(1, 1, in_channels))
        self.decoder = TransformerEncoder(
            [None] * decoder_layers, dec, d_hid // dec_dim_shrink, num_heads, dropout
        )
        self.head = _head(dec, in_channels * self.out_joints)

    @property
    def receptive_field(self) -> int:
        return self.frames

    def forward_intermediates(
        self,
        x: Tensor,
        temporal_mask: Tensor | None = None,
        spatial_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Every stage on ``x (B, T, J, C)`` (masks as in the class doc; drawn when ``None``).

        Returns a dict: ``temporal_mask (B, T)``, ``spatial_mask (B, T, J)``, ``token_order (B, T)``
        (frame of each decoder token: visible ascending, then masked ascending), ``masked_input (B, T,
        J, C)``, ``encoder_visible_features (B, T_vis, channel)`` (before ``encoder_norm``),
        ``decoder_input`` and ``decoder_output`` ``(B, T, channel // 2)`` (token order), ``output``
        ``(B, T, J_out, C)`` (token order, the reference's return value) and ``output_frame_order``.
        """
        _check_input(x, self.frames, self.n_joints, self.in_channels, type(self).__name__)
        B, T, J, C = x.shape
        if temporal_mask is None or spatial_mask is None:
            tm, sm = draw_masks(T, J, self.temporal_mask_rate, self.spatial_mask_num, generator)
            temporal_mask = tm if temporal_mask is None else temporal_mask
            spatial_mask = sm if spatial_mask is None else spatial_mask
        tm = torch.as_tensor(temporal_mask, device=x.device).bool().expand(B, T)
        sm = torch.as_tensor(spatial_mask, device=x.device).bool().expand(B, T, J)
        n_masked = tm.sum(1)
        if (n_masked != n_masked[0]).any():
            raise ValueError(f"every sample needs the same number of masked frames, got {n_masked.tolist()}")
        n_vis = T - int(n_masked[0])
        order = torch.argsort(tm.long(), dim=1, stable=True)  # visible frames first, both ascending

        out = {"temporal_mask": tm, "spatial_mask": sm, "token_order": order}
        out["masked_input"] = torch.where(sm[..., None], self.spatial_mask_token.to(x.dtype), x)
        feat = self.encoder(out["masked_input"].flatten(2)) + self.pos_embedding
        visible = order[:, :n_vis, None].expand(-1, -1, feat.shape[-1])
        feat = out["encoder_visible_features"] = self.transformer(feat.gather(1, visible))
        tokens = torch.cat(
            [self.encoder_to_decoder(self.encoder_norm(feat)), self.mask_token.expand(B, T - n_vis, -1)], 1
        )
        pos = self.decoder_pos_embedding.expand(B, -1, -1)
        tokens = out["decoder_input"] = tokens + pos.gather(1, order[..., None].expand(-1, -1, pos.shape[-1]))
        out["decoder_output"] = self.decoder(tokens)
        rec = out["output"] = _apply_head(self.head, out["decoder_output"], self.out_joints)
        inverse = torch.argsort(order, dim=1)[:, :, None, None].expand_as(rec)
        out["output_frame_order"] = rec.gather(1, inverse)
        return out

    def forward(
        self,
        x: Tensor,
        temporal_mask: Tensor | None = None,
        spatial_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Reconstruction ``(B, T, J_out, C)`` in frame order (masks drawn from ``generator`` if ``None``)."""
        return self.forward_intermediates(x, temporal_mask, spatial_mask, generator)["output_frame_order"]


def pstmo_s(**kwargs) -> PSTMO:
    """P-STMO-S: 243 frames, 3 VTE layers, channel 256, d_hid 512 (6,482,278 parameters)."""
    return PSTMO(**{"frames": 243, "layers": 3, "channel": 256, "d_hid": 512, **kwargs})


def pstmo(**kwargs) -> PSTMO:
    """P-STMO: 243 frames, 4 VTE layers, channel 256, d_hid 512 (7,009,382 parameters)."""
    return PSTMO(**{"frames": 243, "layers": 4, "channel": 256, "d_hid": 512, **kwargs})


def pstmo_pretrain(**kwargs) -> PSTMOPretrain:
    """Stage-I model of P-STMO-S: 243 frames, 3 layers, masking 0.8 / 2 joints (2,656,036 parameters)."""
    cfg = {"frames": 243, "layers": 3, "channel": 256, "d_hid": 512}
    return PSTMOPretrain(**{**cfg, "temporal_mask_rate": 0.8, "spatial_mask_num": 2, **kwargs})


# ---------------------------------------------------------------------------------------------------------
# Reference checkpoints and the stage I -> stage II transfer

_RENAMES = [
    (r"^Transformer\.pos_embedding$", "pos_embedding"),
    (r"^Transformer\.model\.", "transformer."),
    (r"^Transformer_reduce\.model\.pos_embedding_(\d+)$", lambda m: f"reduce_pos_embeddings.{int(m[1]) - 1}"),
    (r"^Transformer_reduce\.model\.", "reducer."),
    (r"^Transformer_dec\.model\.", "decoder."),
    (r"\.self_attn\.linears\.(\d)\.", lambda m: f".attn.{('q', 'k', 'v', 'out')[int(m[1])]}."),
    (r"\.sublayer\.(\d)\.norm\.", lambda m: f".norm{int(m[1]) + 1}."),
    (r"\.feed_forward\.", ".ffn."),
    (r"^fcn\.", "head_centre."),
    (r"^fcn_1\.", "head_seq."),
    (r"^fcn_dec\.", "head."),
    (r"^encoder_LN\.", "encoder_norm."),
    (r"^dec_pos_embedding$", "decoder_pos_embedding"),
]


def _rename(key: str) -> str:
    for pattern, repl in _RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def convert_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The reference's ``Model`` / ``Model_MAE`` state dict (``module.`` prefix optional) in mvpose's names.

    Keys already in mvpose's names pass through unchanged.
    """
    return {_rename(k.removeprefix("module.")): v for k, v in state_dict.items()}


def _read_state_dict(path) -> dict[str, Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(ckpt, Mapping) and not all(isinstance(v, Tensor) for v in ckpt.values()):
        for key in ("state_dict", "model", "model_state_dict", "trans", "MAE"):
            if isinstance(ckpt.get(key), Mapping):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, Mapping) or not ckpt or not all(isinstance(v, Tensor) for v in ckpt.values()):
        raise ValueError(
            f"{path}: expected a P-STMO state dict (run.py's bare `torch.save(model.state_dict())`, "
            "keys `module.encoder.*`, `module.Transformer.*`, ...)"
        )
    return convert_official_state_dict(ckpt)


def _load_strict(model: nn.Module, sd: Mapping[str, Tensor], where: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{where}: checkpoint does not match {type(model).__name__} (mvpose names)\n"
            f"  missing keys: {missing}\n  unexpected keys: {unexpected}\n  shape mismatches: {shapes}"
        )
    model.load_state_dict(sd, strict=True)


def transfer_pretrained(pretrained: nn.Module | Mapping[str, Tensor] | str | Path, model: PSTMO) -> list[str]:
    """Stage I -> stage II (the reference's ``run.py --MAE_reload 1``): copy shared weights into ``model``.

    ``pretrained`` is a :class:`PSTMOPretrain`, its state dict, a reference ``Model_MAE`` state dict
    (``module.`` prefix optional) or a path to one. Every entry whose (mvpose) name also exists in
    ``model`` is copied: the spatial encoder ``encoder.*`` (BatchNorm statistics included), the VTE
    ``pos_embedding`` and ``transformer.*`` (with its unused final norm). Dropped: the decoder and its
    tokens (``mask_token``, ``spatial_mask_token``, ``decoder_pos_embedding``, ``encoder_norm``,
    ``encoder_to_decoder``, ``decoder.*``, ``head.*``); the reducer and both heads of ``model`` keep their
    values. Shapes must agree (same ``frames``, ``layers``, ``channel``, ``d_hid``, joints, channels).
    Returns the copied names.
    """
    if isinstance(pretrained, (str, Path)):
        where, sd = str(pretrained), _read_state_dict(pretrained)
    else:
        sd = pretrained.state_dict() if isinstance(pretrained, nn.Module) else pretrained
        where, sd = "pretrained weights", convert_official_state_dict(sd)
    own = model.state_dict()
    shared = {k: v for k, v in sd.items() if k in own}
    bad = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in shared.items()
        if v.shape != own[k].shape
    ]
    if bad or not shared:
        why = f"shape mismatches {bad}" if bad else "no weight in common"
        raise ValueError(f"{where}: cannot transfer into {type(model).__name__}: {why}")
    with torch.no_grad():
        for k, v in shared.items():
            own[k].copy_(v)
    return list(shared)


_OPTION_ALIASES = {"transformer_heads": "num_heads"}


def _count(sd: Mapping[str, Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m[1] for k in sd if (m := pat.match(k))})


def load_official(path, pretrain: bool | None = None, **overrides) -> PSTMO | PSTMOPretrain:
    """Build and load a reference P-STMO checkpoint (``Model`` of ``run.py``, or ``Model_MAE`` of ``--MAE``).

    Accepts the reference's layout (a bare state dict saved from ``nn.DataParallel``: ``module.`` keys),
    a bare state dict without the prefix, or one under ``state_dict`` / ``model``. ``pretrain`` selects
    the model; ``None`` infers it (``mask_token`` present -> :class:`PSTMOPretrain`).

    Inferred from the weights: ``frames``, ``channel`` (``pos_embedding``), ``layers``, ``d_hid``,
    ``n_joints`` / ``in_channels`` (``fc_1``; stage II assumes ``n_joints == out_joints`` to split
    ``J * C``, else ``in_channels=2``), ``out_joints``, the number of reducer layers and, for stage I,
    ``in_channels`` (``spatial_mask_token``), ``decoder_layers`` and ``dec_dim_shrink``. ``stride_num``
    comes from :data:`STRIDE_NUM` (``[3] * n`` when ``3 ** n == frames``); ``num_heads`` is 8 and stage I's
    masking defaults to 0.8 / 2. ``overrides`` use the reference's names (``frames``, ``layers``,
    ``channel``, ``d_hid``, ``stride_num``, ``n_joints``, ``out_joints``, ``in_channels``,
    ``out_channels``, ``transformer_heads`` or ``num_heads``, ``temporal_mask_rate``,
    ``spatial_mask_num``, ``dec_dim_shrink``, ``decoder_layers``, ``dropout``; ``stride_num`` and
    ``out_channels`` are ignored for stage I, as ``Model_MAE`` ignores them). Loading is strict; a
    mismatch raises ``ValueError`` naming the file and listing missing, unexpected and mis-shaped keys.
    The model is returned in eval mode (``.train()`` to fine-tune it).
    """
    sd = _read_state_dict(path)
    is_pretrain = "mask_token" in sd or any(k.startswith("decoder.") for k in sd)
    if pretrain is not None and bool(pretrain) != is_pretrain:
        found = "a stage-I (Model_MAE)" if is_pretrain else "a stage-II (Model)"
        raise ValueError(f"{path}: pretrain={pretrain} but the file holds {found} checkpoint")
    required = ["pos_embedding", "encoder.fc_1.weight", "transformer.layers.0.ffn.w_1.weight"]
    required += (
        ["head.1.weight", "mask_token", "spatial_mask_token"] if is_pretrain else ["head_centre.1.weight"]
    )
    if missing := [k for k in required if k not in sd]:
        raise ValueError(f"{path}: not a P-STMO checkpoint; missing {missing} (mvpose names)")
    overrides = {_OPTION_ALIASES.get(k, k): v for k, v in overrides.items()}
    _, frames, channel = sd["pos_embedding"].shape
    fc_in = sd["encoder.fc_1.weight"].shape[1]
    cfg = {
        "frames": frames,
        "channel": channel,
        "layers": _count(sd, "transformer.layers."),
        "d_hid": sd["transformer.layers.0.ffn.w_1.weight"].shape[0],
    }
    if is_pretrain:
        c = overrides.get("in_channels", sd["spatial_mask_token"].shape[-1])
        cfg.update(in_channels=c, n_joints=fc_in // c, out_joints=sd["head.1.weight"].shape[0] // c)
        cfg["decoder_layers"] = _count(sd, "decoder.layers.")
        cfg["dec_dim_shrink"] = channel // sd["mask_token"].shape[-1]
        cls = PSTMOPretrain
        for unused in ("stride_num", "out_channels"):  # options of run.py that Model_MAE ignores
            overrides.pop(unused, None)
    else:
        out_joints = sd["head_centre.1.weight"].shape[0] // overrides.get("out_channels", 3)
        c = fc_in // out_joints if fc_in % out_joints == 0 and fc_in // out_joints in (2, 3) else 2
        c = overrides.get("in_channels", fc_in // overrides["n_joints"] if "n_joints" in overrides else c)
        cfg.update(in_channels=c, n_joints=fc_in // c, out_joints=out_joints)
        n_reduce = _count(sd, "reducer.layers.")
        stride = STRIDE_NUM.get(overrides.get("frames", frames))
        if stride is None or len(stride) != n_reduce:
            stride = [3] * n_reduce if 3**n_reduce == frames else None
        if stride is None and "stride_num" not in overrides:
            raise ValueError(
                f"{path}: cannot infer stride_num for frames={frames} with {n_reduce} reducer layers; "
                "pass stride_num=[...]"
            )
        cfg["stride_num"] = stride
        cls = PSTMO
    cfg.update(overrides)
    try:
        model = cls(**cfg)
    except TypeError as e:
        raise TypeError(f"{path}: bad override for {cls.__name__}: {e}") from None
    _load_strict(model, sd, str(path))
    return model.eval()
