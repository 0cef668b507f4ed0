"""SRNet's reference forward pass (``TemporalModel`` of ``FlexGroupLayer``), written plainly for benchmarking.

As the reference computes a split-and-recombine layer (fixture README ``srnet``, split "others",
recombine "multiply"): the groups' channels are sliced and concatenated; each group's "other" channels
(everything but its own block) go through its gate ``Conv1d`` (``K`` outputs) -> BatchNorm -> sigmoid,
and the ``(B, K, T')`` gate is permuted and *repeated over the group's channels* into a full
``(B, C, T', K)`` tensor; the input is resampled at the ``T' x K`` tap positions by the "deformable"
bilinear gather (floor/ceil positions, two ``gather`` calls with expanded ``int64`` indices, weights
exactly 1 and 0 at these integer positions); the two are multiplied and each group's block is reshaped
to ``(B, c_g, T' K)`` for a stride-``K`` convolution. Only the published combination (dilated
evaluation model, split "others", recombine "multiply", norm "base") is covered.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mvpose.models.temporal.srnet import SRNet

__all__ = ["FlexGroupLayer", "ReferenceSRNet", "from_ours"]


class _PartInfo(nn.Module):
    """The gate convolutions and their BatchNorms (``get_part_info`` of the reference)."""

    def __init__(self, in_sizes, kernel_size, dilation):
        super().__init__()
        total = sum(in_sizes)
        self.layers_bn = nn.ModuleList(nn.BatchNorm1d(kernel_size, momentum=0.1) for _ in in_sizes)
        self.m_conv = nn.ModuleList(
            nn.Conv1d(total - n, kernel_size, kernel_size, dilation=dilation) for n in in_sizes
        )

    def forward(self, x_other: list[Tensor], x_self: list[Tensor]) -> Tensor:
        m_out = []
        for i in range(len(self.m_conv)):
            m1 = torch.sigmoid(self.layers_bn[i](self.m_conv[i](x_other[i])))
            m1 = m1.contiguous().permute(0, 2, 1).unsqueeze(dim=1)
            m_out.append(torch.cat([m1 for _ in range(x_self[i].size(1))], dim=1))
        return torch.cat(m_out, dim=1)


class FlexGroupLayer(nn.Module):
    """One split-and-recombine convolution: ``(B, C_in, T) -> (B, C_out, T')`` (module doc).

    ``groups``: per output group, the ``[start, end)`` channel ranges of the input that form it.
    """

    def __init__(self, groups, out_sizes, kernel_size, dilation=1):
        super().__init__()
        self.groups, self.kernel_size, self.dilation = groups, kernel_size, dilation
        in_sizes = [sum(b - a for a, b in g) for g in groups]
        self.group_conv = nn.ModuleList(
            nn.Conv1d(n, o, kernel_size, stride=kernel_size, bias=False) for n, o in zip(in_sizes, out_sizes)
        )
        self.get_part_info = _PartInfo(in_sizes, kernel_size, dilation)

    def _positions(self, w: int, dtype) -> Tensor:
        """``(1, K, T')`` float sample positions of every tap (the reference's ``p_0 + p_n``)."""
        K, d = self.kernel_size, self.dilation
        if d > 1:
            p_n, p_0 = torch.arange(0, (K - 1) * d + 1, d), torch.arange(0, w - (K - 1) * d)
        elif K > 1:
            p_n, p_0 = (
                torch.arange(-(K - 1) // 2, (K - 1) // 2 + 1),
                torch.arange((K - 1) // 2, w - (K - 1) // 2),
            )
        else:
            p_n, p_0 = torch.tensor([-1]), torch.arange(1, w + 1)
        return (p_0.reshape(1, 1, -1).repeat(1, K, 1) + p_n.reshape(1, K, 1)).to(dtype)

    def _resample(self, x: Tensor) -> Tensor:
        """``(B, C, T) -> (B, C, T', K)`` by the bilinear gather at the tap positions."""
        b, c, w = x.shape
        N = self.kernel_size
        p = self._positions(w, x.dtype).repeat(b, 1, 1).permute(0, 2, 1)  # (b, T', N)
        p = torch.clamp(p, 0, w - 1)
        q_lt = p.floor()
        q_rb = q_lt + 1
        q_t = torch.clamp(q_lt, 0, w - 1).long()
        g_t = 1 + (q_t.type_as(p) - p)
        g_b = 1 - (torch.clamp(q_rb, 0, w).long().type_as(p) - p)
        q_b = torch.clamp(q_rb, 0, w - 1).long()

        def gather(q: Tensor) -> Tensor:
            index = q.unsqueeze(dim=1).expand(-1, c, -1, -1).contiguous().view(b, c, -1)
            return x.gather(dim=-1, index=index).view(b, c, -1, N)

        return g_t.unsqueeze(dim=1) * gather(q_t) + g_b.unsqueeze(dim=1) * gather(q_b)

    def forward(self, x: Tensor) -> Tensor:
        x_self = [torch.cat([x[:, a:b] for a, b in g], dim=1) for g in self.groups]
        x_full = torch.cat(x_self, dim=1)
        x_other, v = [], 0
        for xs in x_self:
            x_other.append(torch.cat([x_full[:, :v], x_full[:, v + xs.shape[1] :]], dim=1))
            v += xs.shape[1]
        m = self.get_part_info(x_other, x_self)
        x_ = self._resample(x_full) * m
        outs, v = [], 0
        for conv, xs in zip(self.group_conv, x_self):
            x1 = x_[:, v : v + xs.shape[1]]
            v += xs.shape[1]
            b, c, w, n = x1.shape
            outs.append(conv(x1.contiguous().view(b, c, w * n)))
        return torch.cat(outs, dim=1)


class ReferenceSRNet(nn.Module):
    """The reference ``TemporalModel`` of SRNet: ``(B, T, J, D) -> (B, T - R + 1, J, 3)``."""

    def __init__(self, model: SRNet):
        super().__init__()
        K, n = model.filter_widths[0], len(model.filter_widths)
        D, J = model.in_features, model.num_joints
        self.num_joints, self.causal = J, model.causal
        first = [[[j * D + c, j * D + c + 1] for j in g for c in range(D)] for g in model.groups]

        def blocks(layer) -> list:
            return [[[a, b]] for a, b in layer.blocks]

        def outs(layer) -> list[int]:
            return [conv.out_channels for conv in layer.group_conv]

        self.relu, self.drop = nn.LeakyReLU(0.01, inplace=True), nn.Dropout(0.0)
        self.expand_bn = nn.BatchNorm1d(model.channels, momentum=0.1)
        self.expand_conv = FlexGroupLayer(first, outs(model.expand_conv), K)
        self.final_layer = FlexGroupLayer(blocks(model.final_layer), outs(model.final_layer), 1)
        convs, self.pad, self.shift = [], [K // 2], [K // 2 if model.causal else 0]
        for i in range(2 * (n - 1)):
            layer, d = model.layers_conv[i], K ** (i // 2 + 1)
            convs.append(
                FlexGroupLayer(blocks(layer), outs(layer), K if i % 2 == 0 else 1, d if i % 2 == 0 else 1)
            )
            if i % 2 == 0:
                self.pad.append((K - 1) * d // 2)
                self.shift.append(K // 2 * d if model.causal else 0)
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(nn.BatchNorm1d(model.channels, momentum=0.1) for _ in convs)
        # output channels kept: the root from group 0, every other joint from its own group
        self.keep, start, order = [], 0, []
        for gi, (g, conv) in enumerate(zip(model.groups, model.final_layer.group_conv)):
            first_kept = 0 if gi == 0 else 1
            self.keep.append([start + 3 * first_kept, start + 3 * len(g)])
            order += list(g[first_kept:])
            start += conv.out_channels
        self.order = None if order == sorted(order) else torch.tensor(order).argsort()

    def forward(self, x: Tensor) -> Tensor:
        sz = x.shape[:3]
        x = x.view(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i in range(len(self.pad) - 1):
            pad, shift = self.pad[i + 1], self.shift[i + 1]
            res = x[:, :, pad + shift : x.shape[2] - pad + shift]
            x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        y = self.final_layer(x).permute(0, 2, 1)
        y = torch.cat([y[..., a:b] for a, b in self.keep], dim=-1).view(sz[0], -1, self.num_joints, 3)
        return y if self.order is None else y[:, :, self.order]


def from_ours(model: SRNet) -> ReferenceSRNet:
    """The reference network with ``model``'s weights (same names), eval mode."""
    if model.strided or model.recombine != "multiply" or model.norm == "lcn":
        raise ValueError("the reference benchmark covers the dilated multiply model without 'lcn' only")
    ref = ReferenceSRNet(model)
    ref.load_state_dict(model.state_dict())
    return ref.eval()
