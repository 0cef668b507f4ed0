"""TGraphNet's reference forward pass (``TGraphNetSeq``), written plainly for benchmarking.

As the reference computes it (fixture README ``tgraphnet``): every graph convolution multiplies the
windowed features ``(B, F/W, W*J, C)`` by the ``(C, G*C')`` weight, reshapes and transposes the
support to ``(B, F/W, G, W*J, C')``, applies the ``(G, W*J, W*J)`` affinity by a broadcast ``@`` and
sums the partitions, then BatchNorm on a ``transpose(1, -1)`` view; the blocks reshape to frames and
transpose to ``(B, C, J, F)`` for their ``(1, k)`` "same" convolution; pooling is BatchNorm ->
strided ``Conv2d`` -> ReLU; every up-sampling is an ``nn.Upsample`` (bilinear, aligned corners) module.
Parameter names are the reference's without its adjacency aliases (one ``adj_v``, one ``adj_e``); the
decoder and merge levels are ``(STGConv, Upsample)`` pairs as there (``upsample_layers.{s}.0.*``).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvpose.models.temporal.tgraphnet import TGraphNet

__all__ = ["ReferenceTGraphNet", "from_ours"]


class GCN(nn.Module):
    def __init__(self, in_features: int, out_features: int, num_groups: int):
        super().__init__()
        self.out_features, self.num_groups = out_features, num_groups
        self.weight = nn.Parameter(torch.empty(in_features, num_groups * out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.norm = nn.BatchNorm2d(out_features)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        B, T, V, _ = x.shape
        support = (x @ self.weight).reshape(B, T, V, self.num_groups, self.out_features).transpose(-3, -2)
        output = torch.sum(adj @ support, dim=-3) + self.bias
        output = self.norm(output.transpose(1, -1)).transpose(1, -1)
        return F.dropout(F.relu(output), 0.0, training=False)


class NodeTCNResidualBlock(nn.Module):
    def __init__(self, in_frames, nfeat, nhid, num_groups, kernel, joints):
        super().__init__()
        self.in_frames, self.nhid, self.joints = in_frames, nhid, joints
        self.gcn = GCN(nfeat, nhid, num_groups)
        self.tcn = nn.Sequential(
            nn.Conv2d(nhid, nhid, (1, kernel), stride=1, padding="same"),
            nn.BatchNorm2d(nhid),
            nn.Dropout(0.0),
        )
        self.residual_gc = GCN(nfeat, nhid, num_groups) if nfeat != nhid else None

    def forward(self, X: Tensor, adj: Tensor) -> Tensor:
        residual = X if self.residual_gc is None else self.residual_gc(X, adj)
        B, T, V, _ = X.shape
        X = self.gcn(X, adj).reshape(-1, self.in_frames, self.joints, self.nhid).transpose(1, -1)
        X = self.tcn(X).transpose(1, -1).reshape(B, T, V, self.nhid)
        return X + residual


class TCN(nn.Module):
    def __init__(self, channels: int, window: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, (1, window), stride=(1, window))
        self.sigma = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(self.sigma(self.conv(self.norm(x))), 0.0, training=False)


class STGConv(nn.Module):
    def __init__(self, nin, nhid, in_frames, window, num_groups, stages, kernel, pool, joints):
        super().__init__()
        self.nin, self.nhid, self.in_frames, self.joints = nin, nhid, in_frames, joints
        self.seq_len, self.nodes = in_frames // window, window * joints
        self.graph_stages = nn.ModuleList(
            NodeTCNResidualBlock(in_frames, nin if s == 0 else nhid, nhid, num_groups, kernel, joints)
            for s in range(stages)
        )
        self.tcn = TCN(nhid, pool) if pool else None

    def forward(self, X: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
        X = X.reshape(-1, self.seq_len, self.nodes, self.nin)
        X = self.graph_stages[0](X, adj).reshape(-1, self.in_frames, self.joints, self.nhid)
        for stage in self.graph_stages[1:]:
            X = stage(X.reshape(-1, self.seq_len, self.nodes, self.nhid), adj)
            X = X.reshape(-1, self.in_frames, self.joints, self.nhid)
        if self.tcn is None:
            return X, X
        return X, self.tcn(X.transpose(1, -1)).transpose(1, -1)


class ReferenceTGraphNet(nn.Module):
    """``TGraphNetSeq`` (node path, residual blocks): ``(B, F, J, C) -> (B, F, J, 3)``, ``F = in_frames``."""

    def __init__(self, model: TGraphNet):
        super().__init__()
        J, F_, G = model.skeleton.num_joints, model.in_frames, model.adj_v.shape[0]
        window = model.adj_v.shape[1] // J
        pool = model.downsample_layers[0].tcn.conv.kernel_size[1]
        kernel = model.downsample_layers[0].graph_stages[0].tcn[0].kernel_size[1]
        self.root, self.joints, self.in_frames = model.root, J, F_
        self.adj_v, self.adj_e = (
            nn.Parameter(model.adj_v.detach().clone()),
            nn.Parameter(model.adj_e.detach().clone()),
        )

        def level(src: nn.Module, frames: int, p: int) -> STGConv:
            blocks = src.graph_stages
            nin, nhid = blocks[0].gcn.weight.shape[0], blocks[0].gcn.bias.shape[0]
            return STGConv(nin, nhid, frames, window, G, len(blocks), kernel, p, J)

        n = len(model.downsample_layers)
        frames = [F_ // pool**i for i in range(n)]
        self.downsample_layers = nn.ModuleList(
            level(m, frames[i], pool if i < n - 1 else 0) for i, m in enumerate(model.downsample_layers)
        )

        def upsample(factor: int) -> nn.Upsample:
            return nn.Upsample(scale_factor=(1, factor), mode="bilinear", align_corners=True)

        self.upsample_layers = nn.ModuleList(
            nn.ModuleList([level(m, frames[n - 1 - s], 0), upsample(pool)])
            for s, m in enumerate(model.upsample_layers)
        )
        self.merging_layers = nn.ModuleList(
            nn.ModuleList([level(m, frames[n - 1 - s], 0), upsample(F_ // frames[n - 1 - s])])
            for s, m in enumerate(model.merging_layers)
        )
        c = model.merge_norm.num_features
        self.merge_norm = nn.BatchNorm2d(c)
        self.post_merge = level(model.post_merge, F_, 0)
        self.post_node = nn.Conv2d(c, 3, model.post_node.kernel_size, padding="same")
        self.post_traj = nn.Conv2d(c, 3, model.post_traj.kernel_size, padding="same")

    def forward(self, x: Tensor) -> Tensor:
        adj = self.adj_v if torch.is_grad_enabled() else self.adj_v.detach()
        skips = []
        for layer in self.downsample_layers[:-1]:
            skip, x = layer(x, adj)
            skips.append(skip)
        x, _ = self.downsample_layers[-1](x, adj)
        merged = []
        for s in range(len(self.upsample_layers)):
            up, up_sample = self.upsample_layers[s]
            merge, merge_sample = self.merging_layers[s]
            x, _ = up(x, adj)
            m, _ = merge(x, adj)
            merged.append(merge_sample(m.transpose(1, -1)).transpose(1, -1))
            x = up_sample(x.transpose(1, -1)).transpose(1, -1) + skips[-(s + 1)]
        for m in merged:
            x = x + m
        x = self.merge_norm(x.transpose(1, -1)).transpose(1, -1)
        x, _ = self.post_merge(x, adj)
        x = x.transpose(1, -1)  # (B, C, J, F)
        pose = self.post_node(x)
        traj = self.post_traj(x[:, :, self.root : self.root + 1])
        pose[:, :, self.root : self.root + 1] = traj
        return pose.transpose(1, -1)


def from_ours(model: TGraphNet) -> ReferenceTGraphNet:
    """The reference network with ``model``'s weights (same names), eval mode."""
    ref = ReferenceTGraphNet(model)
    sd = {
        re.sub(r"^(upsample_layers|merging_layers)\.(\d+)\.", r"\1.\2.0.", k): v
        for k, v in model.state_dict().items()
    }
    ref.load_state_dict(sd)
    return ref.eval()
