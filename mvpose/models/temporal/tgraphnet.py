"""TGraphNet: a U-shaped spatio-temporal graph convolutional network (2D or 3D sequence -> 3D sequence).

Reimplementation of ``TGraphNetSeq`` (https://github.com/Ea0011/TGraphNet), sequence to sequence.
The input is cut into *graph windows* of ``window`` consecutive frames; a window is one graph of
``window * J`` nodes (node ``k * J + j`` = joint ``j`` of frame ``k``). Every graph convolution
gathers, for each of ``num_groups`` partitions, with a learnable dense affinity ``adj_v[g]`` and sums
the partitions. Temporal context comes from "same" temporal convolutions inside each block, from
strided temporal convolutions between levels (``pool`` frames -> 1), from linear upsampling and from
the output heads::

    x (B, 81, J, C) ─ down0 ─ 81 ─ pool ─ down1 ─ 27 ─ pool ─ down2 ─ 9 ─ pool ─ bottom (3 frames)
                      │skip             │skip             │skip                     │
                      └──── + ×3 ─ up2 ─┴──── + ×3 ─ up1 ─┴──── + ×3 ─ up0 ─────────┘
            + merge0 (×27) + merge1 (×9) + merge2 (×3) ─ BN ─ post_merge ─ pose head, trajectory head

The affinity is initialised from the skeleton graph (:func:`skeleton_adjacency`) and is one
Parameter shared by every level; ``adj_e`` (:func:`bone_adjacency`) is a Parameter the reference
keeps but never uses in the forward pass (it is here for the reference's parameter set).

Tensors stay channels-last ``(B, F, J, C)``: a graph convolution is one batched product of the
``(V, V G)`` mixing matrix (``V = window * J`` nodes, ``G`` partitions) with the windows' supports, and
temporal convolutions run as ``(k, 1)`` kernels on the channels-last view ``(B, C, F, J)`` (no layout
copies). In eval mode without autograd BatchNorms are folded into the graph and temporal convolutions
(cached), with ReLU and the residual inside oneDNN's kernels (:mod:`mvpose.models.temporal._fused`).

Forward contract: ``model(x)`` with ``x (B, T, J, C)`` returns ``(B, T, J, 3)``, one pose per input
frame. ``T`` must be a multiple of ``in_frames`` (81 by default, the shortest sequence the 4-level U
accepts); longer inputs are cut into consecutive chunks of ``in_frames`` frames that are processed
independently (which is what the reference's reshapes do), so ``model.receptive_field ==
in_frames`` and every output frame depends on its whole chunk. Joint ``skeleton.root`` of the
output is the trajectory head (root position in the camera frame); the other joints come from the
pose head (root-relative). Use ``y[..., root, :] = 0`` for a purely root-relative pose.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvpose.models._checkpoint import load_state_dict_strict
from mvpose.models.temporal import _fused as fused
from mvpose.skeleton import H36M17, Skeleton

__all__ = ["TGraphNet", "tgraphnet", "load_official", "skeleton_adjacency", "bone_adjacency"]

# The reference's bone table gives the thorax->neck bone no "crosshead" (sibling) links, although
# both shoulder bones list it; this only shapes the initial value of the unused ``adj_e``.
_NO_CROSSHEAD = ("neck_nose",)


# --------------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------------


def skeleton_adjacency(skeleton: Skeleton = H36M17, window: int = 3) -> Tensor:
    """The partitioned, normalised joint affinity of one graph window.

    ``M`` joins, within each frame, bones (``skeleton.limbs``), left/right pairs
    (``skeleton.flip_indices``) and self links, and the same joint in consecutive frames; ``N =
    D^-1/2 M D^-1/2`` with ``D`` the degrees. The four partitions keep ``N`` at: self links (root),
    ``[child, parent]`` (close: each joint gathers from its parent), ``[parent, child]`` (further)
    and the left/right pairs (sym). No partition holds the temporal links: they only lower the
    weights through the degrees.

    Returns:
        ``(4, window * J, window * J)`` float32, node ``k * J + j`` = joint ``j`` of frame ``k``.
    """
    J = skeleton.num_joints
    eye = torch.eye(J)
    bones = torch.zeros(J, J)
    parents, children = zip(*skeleton.limbs)
    bones[list(children), list(parents)] = 1.0  # [child, parent]
    further = bones.T.contiguous()  # [parent, child] (kron needs contiguous inputs)
    sym = torch.zeros(J, J)
    sym[torch.arange(J), torch.tensor(skeleton.flip_indices)] = 1.0
    sym.fill_diagonal_(0.0)
    frames = torch.eye(window)
    step = torch.diag(torch.ones(window - 1), 1)
    full = torch.kron(frames, eye + bones + further + sym) + torch.kron(step + step.T, eye)
    full = full.clamp(0, 1)
    d = full.sum(0).pow(-0.5)
    normed = d[:, None] * full * d[None, :]
    parts = torch.stack([torch.kron(frames, p) for p in (eye, bones, further, sym)])
    return normed * parts


def bone_adjacency(skeleton: Skeleton = H36M17, window: int = 3) -> Tensor:
    """The reference's bone affinity (unused in the forward pass).

    Bone ``b`` is ``skeleton.limbs[b]``. Within a frame, a bone is linked to itself, its parent
    bone, its child bones and its siblings (bones from the same joint), each column divided by its
    sum; bone ``b`` in frames ``k`` and ``k + 1`` is linked with weight 1.

    Returns:
        ``(window * (J - 1), window * (J - 1))`` float32.
    """
    parent = torch.tensor([p for p, _ in skeleton.limbs])
    child = torch.tensor([c for _, c in skeleton.limbs])
    nb = len(parent)
    eye = torch.eye(nb, dtype=torch.bool)
    siblings = (parent[:, None] == parent[None, :]) & ~eye
    siblings[[skeleton.joint_names[c] in _NO_CROSSHEAD for c in child.tolist()]] = False
    links = eye | (parent[:, None] == child[None, :]) | (child[:, None] == parent[None, :]) | siblings
    links = links.float()
    links = links * links.sum(0).reciprocal()
    step = torch.diag(torch.ones(window - 1), 1)
    return (torch.kron(torch.eye(window), links) + torch.kron(step + step.T, torch.eye(nb))).clamp(0, 1)


# --------------------------------------------------------------------------------------------------
# Layers (channels-last tensors (B, F, J, C) between layers)
# --------------------------------------------------------------------------------------------------


def _bn(norm: nn.Module, x: Tensor) -> Tensor:
    """BatchNorm over the last (channel) dimension of a 4-D tensor (a channels-last view, no copy)."""
    return norm(x.movedim(-1, 1)).movedim(1, -1)


def _cl(x: Tensor) -> Tensor:
    """``(B, F, J, C)`` -> the channels-last view ``(B, C, F, J)`` (frames as height) for 2-D kernels."""
    return x.permute(0, 3, 1, 2)


def _uncl(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1)


def _kernel_ft(conv: nn.Conv2d) -> tuple[Tensor, list, list | str, list]:
    """A ``(1, k)`` conv made for ``(B, C, J, F)`` as a ``(k, 1)`` conv over :func:`_cl` views:
    ``(weight, stride, padding, dilation)``; ``"same"`` padding is made explicit for odd kernels."""
    pad = conv.padding if isinstance(conv.padding, str) else list(conv.padding[::-1])
    if pad == "same" and conv.kernel_size[1] % 2:
        pad = [conv.dilation[1] * (conv.kernel_size[1] - 1) // 2, 0]
    return conv.weight.transpose(2, 3), list(conv.stride[::-1]), pad, list(conv.dilation[::-1])


def _tconv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """Apply a ``(1, k)`` temporal conv (made for ``(B, C, J, F)``) to ``x (B, F, J, C)``, channels-last."""
    w, stride, pad, dil = _kernel_ft(conv)
    return _uncl(F.conv2d(_cl(x), w, conv.bias, stride, pad, dil))


def _upsample(x: Tensor, frames: int) -> Tensor:
    """Linear interpolation along frames with aligned corners: ``(B, F, J, C) -> (B, frames, J, C)``."""
    return _uncl(F.interpolate(_cl(x), size=(frames, x.shape[2]), mode="bilinear", align_corners=True))


def _mixing(adj: Tensor) -> Tensor:
    """``(G, V, U)`` affinities as one ``(V, U * G)`` matrix, column ``u * G + g``."""
    return adj.permute(1, 2, 0).reshape(adj.shape[1], -1)


class GraphConv(nn.Module):
    """Partitioned graph convolution: ``sum_g adj[g] @ (x @ W_g) + b``, BatchNorm, ReLU, dropout.

    ``weight (Cin, G * Cout)`` holds ``W_g`` in columns ``g * Cout : (g + 1) * Cout``. Input and output
    are ``(B, n, W, C)``: ``n`` graph windows of ``W`` nodes each; ``mix`` is :func:`_mixing` of the
    affinity (the sum over partitions and nodes is one batched matrix product per window).
    """

    def __init__(self, in_ch: int, out_ch: int, num_groups: int, dropout: float = 0.0):
        super().__init__()
        self.num_groups, self.dropout = num_groups, dropout
        self.weight = nn.Parameter(torch.empty(in_ch, num_groups * out_ch))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.norm = nn.BatchNorm2d(out_ch)
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x: Tensor, mix: Tensor) -> Tensor:
        B, n, U, _ = x.shape
        if fused.inference(self) and self.norm.running_var is not None:
            w, b = fused.cached(self, self._folded)
            support = fused.linear(x.reshape(B * n * U, -1), w, None).view(B * n, U * self.num_groups, -1)
            out = torch.baddbmm(b, mix.expand(B * n, -1, -1), support).relu_()
            return out.view(B, n, mix.shape[0], -1)
        support = (x @ self.weight).view(B, n, U * self.num_groups, -1)  # rows u * G + g
        out = mix @ support + self.bias
        return F.dropout(F.relu(_bn(self.norm, out)), self.dropout, self.training)

    def _folded(self) -> tuple[Tensor, Tensor]:
        """The eval BatchNorm folded into the weight (as a linear layer's ``(G * Cout, Cin)``) and bias."""
        scale, shift = fused.bn_affine(self.norm)
        return (self.weight * scale.repeat(self.num_groups)).T.contiguous(), torch.addcmul(
            shift, self.bias, scale
        )


class Block(nn.Module):
    """Residual block: graph conv over windows, "same" temporal conv + BatchNorm (no ReLU), + residual.

    The residual is the input, or a separate :class:`GraphConv` when the width changes.
    ``(B, F, J, Cin) -> (B, F, J, Cout)``; ``F`` a multiple of ``window``.
    """

    def __init__(self, in_ch: int, out_ch: int, num_groups: int, window: int, kernel: int, dropout: float):
        super().__init__()
        self.window = window
        self.gcn = GraphConv(in_ch, out_ch, num_groups, dropout)
        conv = nn.Conv2d(out_ch, out_ch, (1, kernel), padding="same")
        self.tcn = nn.Sequential(conv, nn.BatchNorm2d(out_ch), nn.Dropout(dropout))
        self.residual_gc = GraphConv(in_ch, out_ch, num_groups, dropout) if in_ch != out_ch else None

    def forward(self, x: Tensor, mix: Tensor) -> Tensor:
        B, F_, J, _ = x.shape
        windows = x.reshape(B, F_ // self.window, self.window * J, -1)
        res = x if self.residual_gc is None else self.residual_gc(windows, mix).reshape(B, F_, J, -1)
        h = self.gcn(windows, mix).reshape(B, F_, J, -1)
        bn = self.tcn[1]
        if fused.inference(self) and bn.running_var is not None and self.tcn[0].kernel_size[1] % 2:
            w, b, stride, pad, dil = fused.cached(self, self._folded)
            return _uncl(fused.conv(_cl(h), w, b, stride, pad, dil, other=_cl(res)))
        return self.tcn[2](_bn(bn, _tconv(self.tcn[0], h))) + res

    def _folded(self) -> tuple:
        """The temporal conv with its eval BatchNorm folded in, as a ``(k, 1)`` kernel (see _kernel_ft)."""
        conv, bn = self.tcn[0], self.tcn[1]
        scale, shift = fused.bn_affine(bn)
        w, stride, pad, dil = _kernel_ft(conv)
        return (
            (w * scale[:, None, None, None]).contiguous(),
            torch.addcmul(shift, conv.bias, scale),
            stride,
            pad,
            dil,
        )


class Pool(nn.Module):
    """Temporal downsampling ``(B, F, J, C) -> (B, F / k, J, C)``: BatchNorm, strided conv, ReLU, dropout."""

    def __init__(self, ch: int, k: int, dropout: float):
        super().__init__()
        self.dropout = dropout
        self.norm = nn.BatchNorm2d(ch)
        self.conv = nn.Conv2d(ch, ch, (1, k), stride=(1, k))

    def forward(self, x: Tensor) -> Tensor:
        if fused.inference(self) and self.norm.running_var is not None:
            w, b, stride, pad, dil = fused.cached(self, self._folded)
            return _uncl(fused.conv(_cl(x), w, b, stride, pad, dil, "relu"))
        return F.dropout(F.relu(_tconv(self.conv, _bn(self.norm, x))), self.dropout, self.training)

    def _folded(self) -> tuple:
        """The conv with the eval BatchNorm before it folded in (exact: the conv has no padding)."""
        scale, shift = fused.bn_affine(self.norm)
        w, stride, pad, dil = _kernel_ft(self.conv)
        bias = self.conv.bias + (w * shift[None, :, None, None]).sum((1, 2, 3))
        return (w * scale[None, :, None, None]).contiguous(), bias, stride, pad, dil


class STGConv(nn.Module):
    """One level of the U: ``num_blocks`` :class:`Block` s, then optionally :class:`Pool` (``pool > 0``).

    Returns ``(features, downsampled)``, both ``(B, F, J, Cout)`` / ``(B, F / pool, J, Cout)``
    (``downsampled is features`` without pooling).
    """

    def __init__(self, in_ch, out_ch, num_blocks, num_groups, window, kernel, pool, dropout):
        super().__init__()
        self.graph_stages = nn.ModuleList(
            Block(in_ch if k == 0 else out_ch, out_ch, num_groups, window, kernel, dropout)
            for k in range(num_blocks)
        )
        self.tcn = Pool(out_ch, pool, dropout) if pool else None

    def forward(self, x: Tensor, mix: Tensor) -> tuple[Tensor, Tensor]:
        for block in self.graph_stages:
            x = block(x, mix)
        return x, (x if self.tcn is None else self.tcn(x))


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


class TGraphNet(nn.Module):
    """U-shaped spatio-temporal GCN with a learnable skeleton affinity (sequence to sequence).

    Args:
        in_features: ``C``, 2 (lifting normalised 2D) or 3 (refining 3D).
        channels: width of each level, top to bottom (``len(channels)`` levels; the last is the
            bottom of the U, without pooling).
        blocks: residual blocks per encoder level (decoder, merge and post-merge levels have one).
        num_groups: affinity partitions (4: root, close, further, sym).
        window: frames per graph window.
        pool: temporal down/upsampling factor between levels.
        kernel: temporal kernel of the "same" convs in the blocks.
        head_kernel: temporal kernel of the two output heads.
        in_frames: frames per chunk; a multiple of ``window * pool ** (levels - 1)``.
        dropout: dropout rate (training only).
        skeleton: joint set; its graph initialises the affinity and its root takes the trajectory.

    Shapes: ``(B, T, J, in_features) -> (B, T, J, 3)``, ``T`` a multiple of ``in_frames``.
    """

    def __init__(
        self,
        in_features: int = 2,
        channels: Sequence[int] = (128, 128, 256, 256),
        blocks: Sequence[int] = (1, 2, 2, 2),
        num_groups: int = 4,
        window: int = 3,
        pool: int = 3,
        kernel: int = 3,
        head_kernel: int = 5,
        in_frames: int | None = None,
        dropout: float = 0.1,
        skeleton: Skeleton = H36M17,
    ):
        super().__init__()
        n = len(channels)
        min_frames = window * pool ** (n - 1)
        in_frames = min_frames if in_frames is None else int(in_frames)
        if n < 2 or len(blocks) != n:
            raise ValueError(f"TGraphNet: need >= 2 levels and a block count per level: {channels}, {blocks}")
        if in_frames % min_frames:
            raise ValueError(f"TGraphNet: in_frames={in_frames} is not a multiple of {min_frames}")
        if num_groups != 4:
            raise ValueError(f"TGraphNet: the affinity has 4 partitions, got num_groups={num_groups}")
        self.in_features, self.in_frames, self.receptive_field = in_features, in_frames, in_frames
        self.skeleton, self.root = skeleton, skeleton.root
        self.adj_v = nn.Parameter(skeleton_adjacency(skeleton, window))
        self.adj_e = nn.Parameter(bone_adjacency(skeleton, window))  # not used in forward (reference parity)

        c = [in_features, *channels]

        def level(cin: int, cout: int, num_blocks: int, p: int = 0) -> STGConv:
            return STGConv(cin, cout, num_blocks, num_groups, window, kernel, p, dropout)

        self.downsample_layers = nn.ModuleList(
            level(c[i], c[i + 1], blocks[i], pool if i < n - 1 else 0) for i in range(n)
        )
        self.upsample_layers = nn.ModuleList(level(c[n - s], c[n - 1 - s], 1) for s in range(n - 1))
        self.merging_layers = nn.ModuleList(level(c[n - 1 - s], c[1], 1) for s in range(n - 1))
        self.merge_norm = nn.BatchNorm2d(c[1])
        self.post_merge = level(c[1], c[1], 1)
        self.post_node = nn.Conv2d(c[1], 3, (1, head_kernel), padding="same")
        self.post_traj = nn.Conv2d(c[1], 3, (1, head_kernel), padding="same")

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, T, J, C)`` -> ``(B, T, J, 3)``; joint ``root`` is the trajectory head."""
        return self._forward(x, None)

    def forward_intermediates(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`forward` and the intermediates, channels last ``(B * T / in_frames, F, J, C)``.

        Keys: ``down{i}_features`` (skip), ``down{i}_downsampled``, ``bottom_features``,
        ``up{s}_stgconv``, ``up{s}_upsampled``, ``merge{s}_stgconv``, ``merge{s}_upsampled``,
        ``merge_sum``, ``merge_norm``, ``post_merge``, ``post_node`` (pose head before the root is
        replaced) and ``post_traj`` (``(.., F, 1, 3)``, the trajectory head).
        """
        feats: dict[str, Tensor] = {}
        return self._forward(x, feats), feats

    def _forward(self, x: Tensor, feats: dict[str, Tensor] | None) -> Tensor:
        if x.ndim != 4 or x.shape[2] != self.skeleton.num_joints or x.shape[3] != self.in_features:
            raise ValueError(
                f"TGraphNet: expected x of shape (B, T, {self.skeleton.num_joints}, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        B, T, J, C = x.shape
        if T % self.in_frames:
            raise ValueError(f"TGraphNet: T={T} frames is not a multiple of in_frames={self.in_frames}")
        keep = feats.__setitem__ if feats is not None else lambda k, v: None
        mix = _mixing(self.adj_v)  # (V, U * G), passed down to every graph convolution
        frames = self.in_frames
        x = x.reshape(-1, frames, J, C)

        skips = []
        for i, layer in enumerate(self.downsample_layers[:-1]):
            skip, x = layer(x, mix)
            skips.append(skip)
            keep(f"down{i}_features", skip)
            keep(f"down{i}_downsampled", x)
        x = self.downsample_layers[-1](x, mix)[0]
        keep("bottom_features", x)

        merged = []
        for s, (up, merge) in enumerate(zip(self.upsample_layers, self.merging_layers)):
            x = up(x, mix)[0]
            m = merge(x, mix)[0]
            merged.append(_upsample(m, frames))
            skip = skips[-(s + 1)]
            x_up = _upsample(x, skip.shape[1])
            keep(f"up{s}_stgconv", x)
            keep(f"up{s}_upsampled", x_up)
            keep(f"merge{s}_stgconv", m)
            keep(f"merge{s}_upsampled", merged[-1])
            x = x_up + skip
        for m in merged:
            x = x + m
        keep("merge_sum", x)
        x = _bn(self.merge_norm, x)
        keep("merge_norm", x)
        x = self.post_merge(x, mix)[0]
        keep("post_merge", x)

        r = self.root
        pose = _tconv(self.post_node, x)
        traj = _tconv(self.post_traj, x[:, :, r : r + 1])
        keep("post_node", pose)
        keep("post_traj", traj)
        y = torch.cat([pose[:, :, :r], traj, pose[:, :, r + 1 :]], dim=2)
        return y.reshape(B, T, J, 3)


def tgraphnet(in_features: int = 2, **kwargs) -> TGraphNet:
    """TGraphNet at the published configuration (``models/stgcn/root_rel`` and ``global_pos``).

    Widths 128, 128, 256, 256; blocks 1, 2, 2, 2; 4 partitions; 3-frame windows; pooling by 3;
    81-frame chunks: 3,985,450 parameters (adjacencies included) for 2D input. ``kwargs`` go to
    :class:`TGraphNet`.
    """
    return TGraphNet(in_features=in_features, **kwargs)


# --------------------------------------------------------------------------------------------------
# Reference checkpoints
# --------------------------------------------------------------------------------------------------

# the reference's hyperparameters (params.json names); the edge-related ones and learn_adj are
# accepted and unused, as in the reference on this path (use_edge_conv=false).
_REFERENCE_NAMES = {
    "dropout", "input_node_feat", "input_edge_feat", "output_node_feat", "output_edge_feat",
    "num_hidden_nodes", "num_hidden_edges", "gcn_window", "tcn_window", "in_frames", "gconv_stages",
    "aggregate", "use_residual_connections", "use_non_parametric", "use_edge_conv", "num_joints",
    "num_groups", "learn_adj",
}  # fmt: skip


def _uniform(name: str, value, path) -> int:
    values = {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}
    if len(values) != 1:
        raise ValueError(f"{path}: {name}={value}: TGraphNet supports one value for every level")
    return values.pop()


def _kernel(sd: dict[str, Tensor], key: str, default: int) -> int:
    """Temporal kernel size of a ``(1, k)`` conv weight in the state dict (``default`` if absent)."""
    return int(sd[key].shape[-1]) if key in sd else default


def _infer_config(sd: dict[str, Tensor], path) -> dict:
    """The reference hyperparameters that the state dict's keys and shapes determine."""
    if "adj_v" not in sd or "adj_e" not in sd or "downsample_layers.0.graph_stages.0.gcn.weight" not in sd:
        raise ValueError(
            f"{path}: not a TGraphNet checkpoint: expected the reference's TGraphNetSeq state dict "
            f"(keys adj_v, adj_e, downsample_layers.0.graph_stages.0.gcn.weight, ...), got keys "
            f"{sorted(sd)[:8]}{' ...' if len(sd) > 8 else ''}"
        )
    groups, nodes = sd["adj_v"].shape[:2]
    window = nodes - sd["adj_e"].shape[0]  # window * J - window * (J - 1)
    levels = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("downsample_layers."))
    stages = [
        1 + max(int(k.split(".")[3]) for k in sd if k.startswith(f"downsample_layers.{i}.graph_stages."))
        for i in range(levels)
    ]
    gcn = [sd[f"downsample_layers.{i}.graph_stages.0.gcn.weight"] for i in range(levels)]
    pools = [sd.get(f"downsample_layers.{i}.tcn.conv.weight") for i in range(levels)]
    return {
        "num_groups": int(groups),
        "num_joints": int(nodes // window),
        "gcn_window": [int(window)] * levels,
        "tcn_window": [int(p.shape[-1]) if p is not None else 3 for p in pools],
        "aggregate": [p is not None for p in pools],
        "gconv_stages": stages,
        "num_hidden_nodes": [[int(w.shape[0]), int(w.shape[1]) // int(groups)] for w in gcn],
        "input_node_feat": int(gcn[0].shape[0]),
    }


def _load_strict(model: nn.Module, sd: dict[str, Tensor], path) -> None:
    load_state_dict_strict(model, sd, path, "TGraphNet")


def load_official(path: str | Path, skeleton: Skeleton | None = None, **overrides) -> TGraphNet:
    """Load a checkpoint of the reference ``TGraphNetSeq`` (``train_seq.py`` / ``train_seq_traj.py``).

    Accepts the training script's dict (weights under ``state_dict``) or a bare state dict, with or
    without the ``module.`` prefix. The reference registers the one affinity under 12 names
    (``adj_v``, ``downsample_layers.0.adj_v``, ...; the same for ``adj_e``); the aliases must equal
    the top-level tensor and are dropped.

    Inferred from the state dict: ``num_groups``, ``gcn_window`` and ``num_joints`` (from the shapes
    of ``adj_v`` and ``adj_e``), the number of levels, ``gconv_stages``, ``num_hidden_nodes`` (and so
    the input dimension), ``aggregate`` and ``tcn_window`` (from the pooling convs) and the temporal
    kernels. Not inferable: ``in_frames`` (default: the shortest the U accepts, 81 for 4 levels)
    and ``dropout`` (default 0.1, the published value).

    Args:
        path: checkpoint file (``torch.load(weights_only=True)``).
        skeleton: joint set; default ``H36M17`` (required when the checkpoint has another number
            of joints).
        overrides: the reference's hyperparameter names (``num_hidden_nodes``, ``gconv_stages``,
            ``gcn_window``, ``tcn_window``, ``aggregate``, ``in_frames``, ``num_groups``,
            ``dropout``, ``num_joints``, ``use_residual_connections``, ...).

    Raises:
        ValueError: naming ``path``, for a file that is not such a checkpoint, unsupported options
            or keys and shapes that do not match (all missing, unexpected and mismatched listed).
    """
    unknown = sorted(set(overrides) - _REFERENCE_NAMES)
    if unknown:
        raise TypeError(f"load_official: unknown overrides {unknown}; accepted: {sorted(_REFERENCE_NAMES)}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict or a dict with 'state_dict', not {type(ckpt)}")
    sd = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, Tensor)}
    cfg = {**_infer_config(sd, path), "dropout": 0.1, "in_frames": None, **overrides}

    for name in ("adj_v", "adj_e"):
        for k in [k for k in sd if k.endswith("." + name)]:
            if not torch.equal(sd.pop(k), sd[name]):
                raise ValueError(f"{path}: {k} differs from {name}; the reference shares one tensor")
    # the reference's decoder and merge levels are ModuleList((STGConv, Upsample)): drop the ".0"
    sd = {re.sub(r"^(upsample_layers|merging_layers)\.(\d+)\.0\.", r"\1.\2.", k): v for k, v in sd.items()}

    supported = {"use_residual_connections": True, "use_non_parametric": False, "use_edge_conv": False}
    for name, ok in supported.items():
        if bool(cfg.get(name, ok)) != ok:
            raise ValueError(f"{path}: {name}={cfg[name]} is not supported (only {name}={ok})")
    aggregate = [bool(a) for a in cfg["aggregate"]]
    if aggregate != [True] * (len(aggregate) - 1) + [False]:
        raise ValueError(f"{path}: aggregate={aggregate}: the U needs pooling at every level but the bottom")
    hidden = [list(map(int, h)) for h in cfg["num_hidden_nodes"]]
    if any(hidden[i][0] != hidden[i - 1][1] for i in range(1, len(hidden))):
        raise ValueError(f"{path}: num_hidden_nodes={hidden} is not a chain of widths")
    if int(cfg["input_node_feat"]) != hidden[0][0]:
        raise ValueError(
            f"{path}: input_node_feat={cfg['input_node_feat']} but the input layer takes {hidden[0][0]}"
        )
    skeleton = skeleton if skeleton is not None else H36M17
    if int(cfg["num_joints"]) != skeleton.num_joints:
        raise ValueError(
            f"{path}: num_joints={cfg['num_joints']} but skeleton {skeleton.name!r} has "
            f"{skeleton.num_joints}; pass skeleton="
        )
    model = TGraphNet(
        in_features=hidden[0][0],
        channels=[h[1] for h in hidden],
        blocks=[int(s) for s in cfg["gconv_stages"]],
        num_groups=int(cfg["num_groups"]),
        window=_uniform("gcn_window", cfg["gcn_window"], path),
        pool=_uniform("tcn_window", [t for t, a in zip(cfg["tcn_window"], aggregate) if a], path),
        kernel=_kernel(sd, "downsample_layers.0.graph_stages.0.tcn.0.weight", 3),
        head_kernel=_kernel(sd, "post_node.weight", 5),
        in_frames=cfg["in_frames"],
        dropout=float(cfg["dropout"]),
        skeleton=skeleton,
    )
    _load_strict(model, sd, path)
    return model.eval()
