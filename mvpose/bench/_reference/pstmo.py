"""P-STMO's reference forward pass (``Model`` of ``model/stmo.py``), written plainly for benchmarking.

Structure as in the reference (fixture README ``pstmo``): the FCBlock encoder of 1x1 ``Conv1d``
layers; the vanilla transformer (VTE) and the strided one (STE) in the "annotated transformer" style:
``clones`` of an encoder layer made of two sublayer connections ``x + dropout(sublayer(LN(x)))``, the
LayerNorm written out (``a_2 (x - mean) / (std + eps) + b_2``, unbiased std), attention from four
``Linear`` layers with the scores computed explicitly (``softmax(q k^T / sqrt(d_k)) v``), the strided
layers' shortcut a ``MaxPool1d(1, stride)`` and their FFN two ``Conv1d`` on a permuted copy. The input
is taken as ``run.py`` feeds it, ``(B, 2, T, J, 1)``, and both heads run (the reference always returns
the centre frame and the full sequence).
"""

from __future__ import annotations

import copy
import math
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvpose.models.temporal.pstmo import PSTMO

__all__ = ["ReferencePSTMO", "from_ours", "to_reference_names"]


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


class LayerNorm(nn.Module):
    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__()
        self.a_2, self.b_2, self.eps = (
            nn.Parameter(torch.ones(features)),
            nn.Parameter(torch.zeros(features)),
            eps,
        )

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a_2 * (x - mean) / (std + self.eps) + self.b_2


def attention(query: Tensor, key: Tensor, value: Tensor, dropout: nn.Module) -> tuple[Tensor, Tensor]:
    d_k = query.size(-1)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(d_k)
    p_attn = dropout(F.softmax(scores, dim=-1))
    return torch.matmul(p_attn, value), p_attn


class MultiHeadedAttention(nn.Module):
    def __init__(self, h: int, d_model: int):
        super().__init__()
        self.d_k, self.h = d_model // h, h
        self.linears = _clones(nn.Linear(d_model, d_model), 4)
        self.dropout = nn.Dropout(0.0)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        nbatches = query.size(0)
        query, key, value = [
            lin(x).view(nbatches, -1, self.h, self.d_k).transpose(1, 2)
            for lin, x in zip(self.linears, (query, key, value))
        ]
        x, self.attn = attention(query, key, value, self.dropout)
        x = x.transpose(1, 2).contiguous().view(nbatches, -1, self.h * self.d_k)
        return self.linears[-1](x)


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.gelu, self.dropout = nn.ReLU(), nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.dropout(self.gelu(self.w_1(x))))


class StridedFeedForward(PositionwiseFeedForward):
    def __init__(self, d_model: int, d_ff: int, stride: int):
        nn.Module.__init__(self)
        self.w_1 = nn.Conv1d(d_model, d_ff, kernel_size=1, stride=1)
        self.w_2 = nn.Conv1d(d_ff, d_model, kernel_size=3, stride=stride, padding=1)
        self.gelu, self.dropout = nn.ReLU(), nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 1)
        return self.w_2(self.dropout(self.gelu(self.w_1(x)))).permute(0, 2, 1)


class SublayerConnection(nn.Module):
    def __init__(self, size: int, stride: int | None = None):
        super().__init__()
        self.norm, self.dropout = LayerNorm(size), nn.Dropout(0.0)
        self.pooling = nn.MaxPool1d(1, stride) if stride else None

    def forward(self, x: Tensor, sublayer) -> Tensor:
        if self.pooling is not None and self.pooling.stride != 1:
            res = self.pooling(x.permute(0, 2, 1)).permute(0, 2, 1)
            return res + self.dropout(sublayer(self.norm(x)))
        return x + self.dropout(sublayer(self.norm(x)))


class EncoderLayer(nn.Module):
    def __init__(self, size: int, self_attn: nn.Module, feed_forward: nn.Module, stride: int | None = None):
        super().__init__()
        self.self_attn, self.feed_forward, self.size = self_attn, feed_forward, size
        self.sublayer = nn.ModuleList([SublayerConnection(size), SublayerConnection(size, stride)])

    def forward(self, x: Tensor) -> Tensor:
        x = self.sublayer[0](x, lambda x: self.self_attn(x, x, x))
        return self.sublayer[1](x, self.feed_forward)


class Encoder(nn.Module):
    """``layers`` and a final ``norm`` that is never applied (reference quirk)."""

    def __init__(self, layers: list[nn.Module], size: int, length: int = 0, n_pos: int = 0):
        super().__init__()
        self.layers, self.norm = nn.ModuleList(layers), LayerNorm(size)
        for i in range(n_pos):  # strided encoder: positional tables of its first layers
            self.register_parameter(f"pos_embedding_{i + 1}", nn.Parameter(torch.randn(1, length, size)))
        self.n_pos = n_pos

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            if i < self.n_pos:
                x += getattr(self, f"pos_embedding_{i + 1}")[:, : x.shape[1]]
            x = layer(x)
        return x


class Transformer(nn.Module):
    def __init__(self, n_layers, d_model, d_ff, h, length, strides=None):
        super().__init__()
        if strides is None:
            self.pos_embedding = nn.Parameter(torch.randn(1, length, d_model))
            ff = PositionwiseFeedForward(d_model, d_ff)
            layer = EncoderLayer(d_model, MultiHeadedAttention(h, d_model), ff)
            self.model = Encoder([copy.deepcopy(layer) for _ in range(n_layers)], d_model)
        else:
            self.pos_embedding = None
            layers = [
                EncoderLayer(
                    d_model, MultiHeadedAttention(h, d_model), StridedFeedForward(d_model, d_ff, s), s
                )
                for s in strides
            ]
            self.model = Encoder(layers, d_model, length, min(3, len(strides)))

    def forward(self, x: Tensor) -> Tensor:
        if self.pos_embedding is not None:
            x += self.pos_embedding
        return self.model(x)


class Linear(nn.Module):
    """The FCBlock's residual block (1x1 convolutions, BatchNorm, LeakyReLU 0.2)."""

    def __init__(self, size: int):
        super().__init__()
        self.relu, self.dropout = nn.LeakyReLU(0.2, inplace=True), nn.Dropout(0.0)
        self.w1, self.batch_norm1 = nn.Conv1d(size, size, kernel_size=1), nn.BatchNorm1d(size)
        self.w2, self.batch_norm2 = nn.Conv1d(size, size, kernel_size=1), nn.BatchNorm1d(size)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dropout(self.relu(self.batch_norm1(self.w1(x))))
        y = self.dropout(self.relu(self.batch_norm2(self.w2(y))))
        return x + y


class FCBlock(nn.Module):
    def __init__(self, channel_in: int, channel_out: int, linear_size: int, block_num: int):
        super().__init__()
        self.block_num = block_num
        self.fc_1 = nn.Conv1d(channel_in, linear_size, kernel_size=1)
        self.bn_1 = nn.BatchNorm1d(linear_size, momentum=0.1)
        self.layers = nn.ModuleList(Linear(linear_size) for _ in range(block_num))
        self.fc_2 = nn.Conv1d(linear_size, channel_out, kernel_size=1)
        self.dropout, self.lrelu = nn.Dropout(0.0), nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(self.lrelu(self.bn_1(self.fc_1(x))))
        for i in range(self.block_num):
            x = self.layers[i](x)
        return self.fc_2(x)


class ReferencePSTMO(nn.Module):
    """``Model`` (reference parameter names); ``forward`` takes ``(B, T, J, C)``, returns the centre
    frame ``(B, 1, J_out, 3)`` (``forward_both``: the reference's ``(centre, seq)``, its own layout)."""

    def __init__(
        self, frames, layers, channel, d_hid, stride_num, n_joints, out_joints, in_channels, heads=8
    ):
        super().__init__()
        self.num_joints_out = out_joints
        self.encoder = FCBlock(in_channels * n_joints, channel, 2 * channel, 1)
        self.Transformer = Transformer(layers, channel, d_hid, heads, frames)
        self.Transformer_reduce = Transformer(len(stride_num), channel, d_hid, heads, frames, stride_num)
        self.fcn = nn.Sequential(nn.BatchNorm1d(channel, momentum=0.1), nn.Conv1d(channel, 3 * out_joints, 1))
        self.fcn_1 = nn.Sequential(
            nn.BatchNorm1d(channel, momentum=0.1), nn.Conv1d(channel, 3 * out_joints, 1)
        )

    def forward_both(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, T, J, 1)`` -> ``(centre (B, 3, T_out, J, 1), seq (B, 3, T, J, 1))``."""
        x = x[:, :, :, :, 0].permute(0, 2, 3, 1).contiguous()
        x_shape = x.shape
        x = x.view(x.shape[0], x.shape[1], -1).permute(0, 2, 1).contiguous()
        x = self.encoder(x).permute(0, 2, 1).contiguous()
        x = self.Transformer(x)
        seq = self.fcn_1(x.permute(0, 2, 1).contiguous())
        seq = seq.view(x_shape[0], self.num_joints_out, -1, seq.shape[2]).permute(0, 2, 3, 1).contiguous()
        x = self.Transformer_reduce(x)
        x = self.fcn(x.permute(0, 2, 1).contiguous())
        x = x.view(x_shape[0], self.num_joints_out, -1, x.shape[2]).permute(0, 2, 3, 1).contiguous()
        return x.unsqueeze(-1), seq.unsqueeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, J, C)`` -> centre ``(B, 1, J_out, 3)``, with run.py's layout conversions."""
        N, _, J, C = x.shape
        centre, _ = self.forward_both(x.view(N, -1, J, C, 1).permute(0, 3, 1, 2, 4))
        return centre.permute(0, 2, 3, 4, 1).reshape(N, -1, self.num_joints_out, 3)


# mvpose name -> reference name (the inverse of mvpose.models.temporal.pstmo's conversion)
_TO_REFERENCE = [
    (r"^pos_embedding$", "Transformer.pos_embedding"),
    (r"^reduce_pos_embeddings\.(\d+)$", lambda m: f"Transformer_reduce.model.pos_embedding_{int(m[1]) + 1}"),
    (r"^transformer\.", "Transformer.model."),
    (r"^reducer\.", "Transformer_reduce.model."),
    (r"\.attn\.(q|k|v|out)\.", lambda m: f".self_attn.linears.{'qkvo'.index(m[1][0])}."),
    (r"\.norm(\d)\.", lambda m: f".sublayer.{int(m[1]) - 1}.norm."),
    (r"\.ffn\.", ".feed_forward."),
    (r"^head_centre\.", "fcn."),
    (r"^head_seq\.", "fcn_1."),
]


def to_reference_names(key: str) -> str:
    """An mvpose P-STMO (stage II) state-dict key in the reference's naming."""
    for pattern, repl in _TO_REFERENCE:
        key = re.sub(pattern, repl, key)
    return key


def from_ours(model: PSTMO) -> ReferencePSTMO:
    """The reference network with ``model``'s weights, eval mode."""
    layer = model.transformer.layers[0]
    ref = ReferencePSTMO(
        frames=model.frames,
        layers=len(model.transformer.layers),
        channel=model.pos_embedding.shape[-1],
        d_hid=layer.ffn.w_1.out_features,
        stride_num=model.stride_num,
        n_joints=model.n_joints,
        out_joints=model.out_joints,
        in_channels=model.in_channels,
        heads=layer.attn.num_heads,
    )
    ref.load_state_dict({to_reference_names(k): v for k, v in model.state_dict().items()})
    return ref.eval()
