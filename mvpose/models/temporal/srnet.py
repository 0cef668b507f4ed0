"""SRNet (Zeng et al., ECCV 2020): VideoPose3D's temporal network with split-and-recombine layers.

The joints are split into body-part groups (for ``group=5``: right leg, left leg, torso/head, left arm,
right arm, each with the root prepended), and every convolution of VideoPose3D's dilated TCN becomes a
:class:`SRConv`: one convolution per group over that group's channels only, recombined with a
low-dimensional signal computed from all the *other* groups' channels::

    (B, T, J, D) -> per group g: the (root, joints of g) coordinates -> channel blocks x_0 .. x_{G-1}
    expand SRConv(k=w, dilation 1) -> BN -> LeakyReLU(0.01) -> Dropout
    block i = 1..n-1 (dilation d_i = w^i):
        x = skip(x) + Drop(LReLU(BN(SRConv 1x1(Drop(LReLU(BN(SRConv(k=w, dilation d_i)(x))))))))
    final SRConv 1x1 -> per group 3 channels per joint (+1 spare channel in the last group)
    -> keep the root from group 0 and every other joint from its own group -> (B, T_out, J, 3)

SRConv with kernel ``K``, dilation ``d`` and the reference's ``recombine`` operator, for group ``g``::

    o_g    = all input channels except block g                      ("split others")
    s_g    = Conv1d(o_g -> K, kernel K, dilation d, with bias)(o_g)  (B, K, T'): one value per tap
    gate_g = sigmoid(BN_g(s_g))  "multiply" | LeakyReLU(s_g) "add" | LeakyReLU(s_g) "concat"
    y_g[t] = sum_k W_g[:, :, k] @ (x_g[t + k d] * gate_g[k, t])     "multiply" (gate per tap, shared
                                                                     by the group's channels)
             sum_k W_g[:, :, k] @ (x_g[t + k d] + gate_g[k, t])     "add"
             sum_k W_g[:, :, k] @ [x_g[t + k d]; m_g[t, k]]          "concat": one more input channel,
                                                                     m_g = gate_g's (K, T') memory as (T', K)
    output = concat_g y_g (no bias anywhere in the group convolutions, the final layer included)

The groups are derived from the skeleton (:func:`split_groups`), not listed by hand; for Human3.6M-17 they
are the reference's (``group`` 2, 3 or 5; ``group=1`` has no "other" joints and the reference cannot build
it). Hidden channels are split between groups in proportion to the first layer's group widths, with the
reference's rounding (``int(n_g / n * C)``, the remainder to the last group: 195, 195, 243, 195, 196 of 1024).

Every convolution is valid (unpadded): ``T`` input frames give ``T_out = T - R + 1`` outputs, with
``R = receptive_field = w ** len(filter_widths)``; output ``t`` is the pose of input frame ``t + pad``
(``pad = (R - 1) / 2``) or, with ``causal=True`` (same weights, skips shifted), of frame ``t + 2 pad``.
``strided=True`` is the reference's ``TemporalModelOptimized1f`` (its training model, same state dict):
stride-``w`` convolutions instead of dilated ones, one output per ``R`` frames.

Checkpoints of the reference's ``run.py`` (``{"model_pos": state_dict, "epoch", "lr", ...}``) load with
:func:`load_official`; the state dict keys are the reference's (``expand_conv.group_conv.g.weight``,
``expand_conv.get_part_info.m_conv.g.*``, ``expand_conv.get_part_info.layers_bn.g.*``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvpose.data.sequences.windows import flip_average, pad_sequence
from mvpose.models._checkpoint import load_state_dict_strict
from mvpose.models.temporal._fused import inference
from mvpose.skeleton import H36M17, Skeleton, get_skeleton

__all__ = [
    "SRNet",
    "SRConv",
    "split_groups",
    "srnet_1f",
    "srnet_27f",
    "srnet_81f",
    "srnet_243f",
    "load_official",
]

RECOMBINE = ("multiply", "add", "concat")


# --------------------------------------------------------------------------------------------------
# Groups from the skeleton
# --------------------------------------------------------------------------------------------------


def split_groups(skeleton: Skeleton | str = H36M17, group: int = 5) -> tuple[tuple[int, ...], ...]:
    """Joint groups of SRNet's split, derived from the kinematic tree and the left/right names.

    A *limb* is a lateral joint (``left_*`` / ``right_*``) hanging from a centre joint, with all its
    descendants; limbs hanging from the root are legs, the others arms. The centre joints other than
    the root form the torso. Groups:

    * ``5``: right leg, left leg, torso, left arm, right arm (limbs of one side and kind merged);
    * ``3``: legs, torso, arms;
    * ``2``: lower body and upper body: the subtree of the lowest common ancestor of the arms'
      attachment joints (H36M's thorax) is the upper body, the rest the lower body;
    * ``1``: every joint (not usable with SRNet's "others" split: there are no other joints).

    Every group starts with the root, then its joints in index order; groups are ordered by their
    first non-root joint. For :data:`~mvpose.skeleton.H36M17` and ``group=5``:
    ``((0, 1, 2, 3), (0, 4, 5, 6), (0, 7, 8, 9, 10), (0, 11, 12, 13), (0, 14, 15, 16))``.

    Raises:
        ValueError: ``group`` not in (1, 2, 3, 5), or a body part missing from the skeleton.
    """
    sk = get_skeleton(skeleton)
    if group not in (1, 2, 3, 5):
        raise ValueError(f"group must be 1, 2, 3 or 5 (the reference's choices), got {group}")
    par, root, J = sk.parents, sk.root, sk.num_joints
    lateral = [nm.split("_")[0] if nm.startswith(("left_", "right_")) else "" for nm in sk.joint_names]

    def depth(j: int) -> int:
        return 0 if j == root else 1 + depth(par[j])

    part: list = [None] * J  # "torso" or (kind, side) per non-root joint, parents first
    for j in sorted(range(J), key=depth):
        if j == root:
            continue
        if part[par[j]] not in (None, "torso"):
            part[j] = part[par[j]]  # inside a limb
        elif lateral[j]:
            part[j] = ("leg" if par[j] == root else "arm", lateral[j])
        else:
            part[j] = "torso"
    if group == 5:
        key = part
    elif group == 3:
        key = [p if p in (None, "torso") else p[0] for p in part]
    elif group == 2:
        arms = [j for j in range(J) if part[j] not in (None, "torso") and part[j][0] == "arm"]
        tops = {par[j] for j in arms if part[par[j]] == "torso"}  # the arms' attachment joints
        if not tops:
            raise ValueError(f"skeleton {sk.name!r}: no arm found to split the upper body (group=2)")
        lca = max(set.intersection(*(_ancestors(t, par, root) for t in tops)), key=depth)
        in_upper = [lca in _ancestors(j, par, root) for j in range(J)]
        key = ["upper" if up else "lower" for up in in_upper]
    else:
        key = ["all"] * J
    labels = {k for j, k in enumerate(key) if j != root}
    if len(labels) != group:
        raise ValueError(
            f"skeleton {sk.name!r}: group={group} needs {group} body parts, found {sorted(map(str, labels))}"
        )
    groups = [tuple(j for j in range(J) if j != root and key[j] == lab) for lab in labels]
    return tuple((root, *g) for g in sorted(groups))


def _ancestors(j: int, parents: Sequence[int], root: int) -> set[int]:
    out = {j}
    while j != root:
        j = parents[j]
        out.add(j)
    return out


def _split_channels(sizes: Sequence[int], channels: int) -> list[int]:
    """The reference's split of ``channels`` in proportion to ``sizes`` (floor; remainder to the last)."""
    total = sum(sizes)
    out = [int(s / total * channels) for s in sizes[:-1]]
    return [*out, channels - sum(out)]


# --------------------------------------------------------------------------------------------------
# Split-and-recombine convolution
# --------------------------------------------------------------------------------------------------


class SRConv(nn.Module):
    """Split-and-recombine temporal convolution (the reference's ``FlexGroupLayer``, split "others").

    Args:
        in_sizes: channels of each input group; the input is their concatenation, in order.
        out_sizes: output channels of each group.
        kernel_size: temporal width ``K`` (taps); dilation and stride are chosen per call.
        recombine: ``"multiply"`` (the paper's), ``"add"`` or ``"concat"`` (module doc).

    Shapes: ``(B, sum(in_sizes), T) -> (B, sum(out_sizes), T')``, ``T' = (T - (K - 1) d - 1) // s + 1``.
    Parameters (the reference's names): ``group_conv.g.weight (out_g, in_g [+1 concat], K)``,
    ``get_part_info.m_conv.g.{weight (K, sum(in_sizes) - in_g, K), bias (K,)}`` and, for "multiply",
    ``get_part_info.layers_bn.g`` (BatchNorm1d(K)).
    """

    def __init__(
        self, in_sizes: Sequence[int], out_sizes: Sequence[int], kernel_size: int, recombine: str = "multiply"
    ):
        super().__init__()
        if recombine not in RECOMBINE:
            raise ValueError(f"recombine must be one of {RECOMBINE}, got {recombine!r}")
        if len(in_sizes) < 2 or len(in_sizes) != len(out_sizes):
            raise ValueError(f"need >= 2 groups and one output size per group, got {in_sizes}, {out_sizes}")
        self.kernel_size, self.recombine = int(kernel_size), recombine
        K, C, extra = self.kernel_size, sum(in_sizes), int(recombine == "concat")
        ends = np.cumsum(in_sizes).tolist()
        self.blocks = tuple(zip([0, *ends[:-1]], ends))
        self.group_conv = nn.ModuleList(
            nn.Conv1d(i + extra, o, K, bias=False) for i, o in zip(in_sizes, out_sizes)
        )
        self.get_part_info = nn.Module()  # container named as in the reference's state dict
        if recombine == "multiply":
            self.get_part_info.layers_bn = nn.ModuleList(nn.BatchNorm1d(K, momentum=0.1) for _ in in_sizes)
        self.get_part_info.m_conv = nn.ModuleList(nn.Conv1d(C - i, K, K) for i in in_sizes)
        for conv in self.get_part_info.m_conv:
            nn.init.zeros_(conv.weight)  # reference init: gates start constant
        group_of = torch.repeat_interleave(torch.arange(len(in_sizes)), torch.tensor(list(in_sizes)))
        self.register_buffer("channel_group", group_of, persistent=False)

    def _gate_weight(self) -> tuple[Tensor, Tensor]:
        """All gate convolutions as one over the whole input: zeros over each group's own block."""
        ws = []
        for conv, (a, b) in zip(self.get_part_info.m_conv, self.blocks):
            w = conv.weight
            ws.append(torch.cat([w[:, :a], w.new_zeros(w.shape[0], b - a, w.shape[2]), w[:, a:]], 1))
        return torch.cat(ws), torch.cat([conv.bias for conv in self.get_part_info.m_conv])

    def forward(self, x: Tensor, stride: int = 1, dilation: int = 1, record: dict | None = None) -> Tensor:
        """``x (B, C_in, T)`` -> ``(B, C_out, T')``; ``record`` receives ``gate_conv`` and ``gate_logit``
        ``(B, G, K, T')`` (the gate convolutions, and after the gate BatchNorm for "multiply") and ``out``."""
        B, G, K = x.shape[0], len(self.blocks), self.kernel_size
        w, bias = self._gate_weight()
        s = F.conv1d(x, w, bias, stride=stride, dilation=dilation).unflatten(1, (G, -1))  # (B, G, K', T')
        taps = x.unfold(2, (K - 1) * dilation + 1, stride)[..., ::dilation]  # (B, C_in, T', K)
        logit = s
        if self.recombine == "multiply":
            logit = torch.stack([bn(s[:, g]) for g, bn in enumerate(self.get_part_info.layers_bn)], 1)
            taps = taps * torch.sigmoid(logit).transpose(2, 3)[:, self.channel_group]
        elif self.recombine == "add":
            taps = taps + F.leaky_relu(s, 0.01).transpose(2, 3)[:, self.channel_group]
        else:  # concat: the (K, T') gate memory read as (T', K) (the reference's view), one more channel
            m = F.leaky_relu(s, 0.01).reshape(B, G, 1, -1, K)
        ys = []
        for g, (conv, (a, b)) in enumerate(zip(self.group_conv, self.blocks)):
            xg = taps[:, a:b] if self.recombine != "concat" else torch.cat([taps[:, a:b], m[:, g]], 1)
            ys.append(torch.einsum("bctk,ock->bot", xg, conv.weight))
        y = torch.cat(ys, 1)
        if record is not None:
            record.update(gate_conv=s, gate_logit=logit, out=y)
        return y


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------


class SRNet(nn.Module):
    """SRNet's temporal model (the reference's ``TemporalModel`` with FlexGroupLayers; module doc).

    Args:
        skeleton: the joint set (default :data:`~mvpose.skeleton.H36M17`); inputs and outputs have its
            ``J`` joints, and the groups come from its tree (:func:`split_groups`).
        in_features: ``D``, 2 (lifting normalised 2D) or 3 (refining camera-frame 3D).
        filter_widths: equal odd widths, e.g. ``(3, 3, 3)``: 27 frames (the reference uses
            ``filter_widths[0]`` as every layer's kernel, so unequal widths cannot work there).
        causal: only past frames (skips shifted; same parameters).
        dropout: dropout after every LeakyReLU (the reference's ``run.py`` default is 0).
        channels: hidden width (the reference works only above 1000 channels: use 1024).
        group: 2, 3 or 5 body-part groups.
        recombine: ``"multiply"``, ``"add"`` or ``"concat"``.
        norm: the reference's ``--norm``; ``"lcn"`` adds the input ``(x, y)`` of each output frame to the
            output ``(X, Y)``; ``"base"``, ``"proj"``, ``"weak_proj"`` change nothing in the model.
        strided: the ``TemporalModelOptimized1f`` form (attribute, may be switched): stride-``w``
            convolutions, ``T`` a multiple of ``R`` and one output per ``R`` frames.

    Shapes: ``(B, T, J, D) -> (B, T - R + 1, J, 3)`` (strided: ``(B, k R, J, D) -> (B, k, J, 3)``),
    ``R = receptive_field``; output ``t`` belongs to input frame ``t + pad`` (``t + 2 pad`` if causal).

    Example:
        >>> model = SRNet(filter_widths=(3, 3, 3)).eval()
        >>> model(torch.zeros(2, 30, 17, 2)).shape, model.receptive_field, model.groups[2]
        (torch.Size([2, 4, 17, 3]), 27, (0, 7, 8, 9, 10))
    """

    def __init__(
        self,
        skeleton: Skeleton | str = H36M17,
        in_features: int = 2,
        filter_widths: Sequence[int] = (3, 3, 3, 3, 3),
        causal: bool = False,
        dropout: float = 0.0,
        channels: int = 1024,
        group: int = 5,
        recombine: str = "multiply",
        norm: str = "base",
        strided: bool = False,
    ):
        super().__init__()
        widths = tuple(int(w) for w in filter_widths)
        if not widths or widths[0] < 1 or widths[0] % 2 == 0 or len(set(widths)) != 1:
            raise ValueError(f"filter_widths must be equal odd positive integers, got {list(filter_widths)}")
        if group == 1:
            raise ValueError("group=1 leaves no 'other' joints to recombine (the reference cannot build it)")
        if norm not in ("base", "proj", "weak_proj", "lcn"):
            raise ValueError(f"norm must be 'base', 'proj', 'weak_proj' or 'lcn', got {norm!r}")
        self.skeleton = get_skeleton(skeleton)
        self.groups = split_groups(self.skeleton, group)
        self.num_joints, self.in_features, self.channels = (
            self.skeleton.num_joints,
            int(in_features),
            channels,
        )
        self.filter_widths, self.causal, self.strided = widths, bool(causal), bool(strided)
        self.group, self.recombine, self.norm = group, recombine, norm
        K, n = widths[0], len(widths)
        self.dilations = tuple(K**i for i in range(n))
        self.receptive_field = K**n
        self.pad = (self.receptive_field - 1) // 2
        self.causal_shift = self.pad if self.causal else 0  # evaluation padding, as in VideoPose3D

        D = self.in_features
        sizes = [len(g) * D for g in self.groups]
        hidden = [_split_channels(sizes, channels)]
        for _ in range(2 * (n - 1)):
            hidden.append(_split_channels(hidden[-1], channels))
        final = [3 * len(g) for g in self.groups]
        final[-1] += 1  # the reference's 3 (J + G - 1) + 1 outputs: a spare channel in the last group
        # registration order gives the reference's state-dict order
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.expand_conv = SRConv(sizes, hidden[0], K, recombine)
        self.final_layer = SRConv(hidden[-1], final, 1, recombine)
        self.layers_conv, self.layers_bn = nn.ModuleList(), nn.ModuleList()
        for i in range(2 * (n - 1)):  # [dilated conv, 1x1 conv] per block
            self.layers_conv.append(SRConv(hidden[i], hidden[i + 1], K if i % 2 == 0 else 1, recombine))
            self.layers_bn.append(nn.BatchNorm1d(channels, momentum=0.1))
        self.relu, self.drop = nn.LeakyReLU(0.01), nn.Dropout(dropout)

        in_index = [j * D + c for g in self.groups for j in g for c in range(D)]
        out_index = [0] * (3 * self.num_joints)  # output channel of (joint, xyz): root from group 0 only
        start = 0
        for gi, (g, size) in enumerate(zip(self.groups, final)):
            for k, j in enumerate(g):
                if gi == 0 or k > 0:
                    out_index[3 * j : 3 * j + 3] = range(start + 3 * k, start + 3 * k + 3)
            start += size
        self.register_buffer("in_index", torch.tensor(in_index), persistent=False)
        self.register_buffer("out_index", torch.tensor(out_index), persistent=False)

    def set_bn_momentum(self, momentum: float) -> None:
        """Set the momentum of ``expand_bn`` and ``layers_bn`` (the reference decays it during training);
        as in the reference, the gate BatchNorms keep theirs (0.1)."""
        for bn in (self.expand_bn, *self.layers_bn):
            bn.momentum = momentum

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[2:] != (self.num_joints, self.in_features):
            raise ValueError(
                f"SRNet: expected input (B, T, {self.num_joints}, {self.in_features}), got {tuple(x.shape)}"
            )
        R = self.receptive_field
        if x.shape[1] < R:
            raise ValueError(f"SRNet: {x.shape[1]} frames < receptive field {R} (pad, e.g. with predict())")
        if self.strided and x.shape[1] % R:
            raise ValueError(f"SRNet (strided): {x.shape[1]} frames is not a multiple of {R}")

    def _layers(self, x: Tensor, record: dict | None, strided: bool) -> Tensor:
        """``(B, C_in, T)`` (group-ordered channels) -> ``(B, 3 (J + G - 1) + 1, T_out)``; ``strided``: the
        ``TemporalModelOptimized1f`` computation."""

        def conv(name: str, layer: SRConv, h: Tensor, dilation: int) -> Tensor:
            rec = None if record is None else record.setdefault(name, {})
            if strided:
                return layer(h, stride=layer.kernel_size, record=rec)
            return layer(h, dilation=dilation, record=rec)

        K = self.filter_widths[0]
        x = self.drop(self.relu(self.expand_bn(conv("expand_conv", self.expand_conv, x, 1))))
        for i in range(len(self.filter_widths) - 1):
            d = self.dilations[i + 1]
            if strided:
                res = x[:, :, (K // 2 if self.causal else 0) + K // 2 :: K]
            else:
                pad, shift = (K - 1) * d // 2, (K // 2 * d if self.causal else 0)
                res = x[:, :, pad + shift : x.shape[2] - pad + shift]
            for k, dk in ((2 * i, d), (2 * i + 1, 1)):
                x = self.drop(
                    self.relu(self.layers_bn[k](conv(f"layers_conv{k}", self.layers_conv[k], x, dk)))
                )
            x = res + x
        return conv("final_layer", self.final_layer, x, 1)

    def _run(self, x: Tensor, record: dict | None) -> Tensor:
        self._check(x)
        B, T = x.shape[:2]
        # one receptive field (one output) in inference: the strided computation is the same function
        # on the frames that output needs (15x fewer multiply-adds at 243 frames)
        strided = self.strided or (record is None and inference(self) and T == self.receptive_field)
        y = self._layers(x.reshape(B, T, -1)[..., self.in_index].transpose(1, 2), record, strided)
        y = y.transpose(1, 2)[..., self.out_index].reshape(B, -1, self.num_joints, 3)
        if self.norm == "lcn":  # output frame t belongs to input frame start + t * step
            step = self.receptive_field if self.strided else 1
            xy = x[:, self.pad + self.causal_shift :: step][:, : y.shape[1], :, :2]
            y = torch.cat([y[..., :2] + xy, y[..., 2:]], -1)
        return y

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, T, J, D)`` (normalised 2D or camera-frame 3D) -> ``(B, T_out, J, 3)`` (class doc)."""
        return self._run(x, None)

    def forward_intermediates(self, x: Tensor) -> tuple[Tensor, dict[str, dict[str, Tensor]]]:
        """:meth:`forward` plus, per layer (``expand_conv``, ``layers_conv{k}``, ``final_layer``), a dict
        with ``out (B, C, T_i)`` (the SRConv output, before BatchNorm), ``gate_conv`` and ``gate_logit``
        ``(B, G, K, T_i)`` (the gate convolution, and after the gate BatchNorm for "multiply")."""
        record: dict = {}
        return self._run(x, record), record

    @torch.no_grad()
    def predict(self, x: Tensor, flip_indices: Sequence[int] | None = None) -> Tensor:
        """Whole-sequence prediction as the reference's ``evaluate()`` (call ``.eval()`` first).

        ``x (B, L, J, D)`` unpadded -> ``(B, L, J, 3)``: edge-padded by ``pad + causal_shift`` frames before
        and ``pad - causal_shift`` after; with ``flip_indices`` (e.g. ``H36M17.flip_indices``) averaged with
        the mirrored sequence (test-time augmentation). Not for the strided form.
        """
        x = pad_sequence(x, self.pad, self.causal_shift, time_dim=1)
        return self(x) if flip_indices is None else flip_average(self, x, flip_indices)


def _build(widths: Sequence[int], kwargs: dict) -> SRNet:
    return SRNet(**{"filter_widths": widths, **kwargs})


def srnet_1f(**kwargs) -> SRNet:
    """Single-frame model (widths 1,1,1; 1024 channels; 899,029 parameters for H36M-17 in 2D)."""
    return _build((1, 1, 1), kwargs)


def srnet_27f(**kwargs) -> SRNet:
    """27-frame model (widths 3,3,3; 1024 channels; 1,829,515 parameters)."""
    return _build((3, 3, 3), kwargs)


def srnet_81f(**kwargs) -> SRNet:
    """81-frame model (widths 3,3,3,3; 1024 channels; 2,720,791 parameters)."""
    return _build((3, 3, 3, 3), kwargs)


def srnet_243f(**kwargs) -> SRNet:
    """243-frame model (widths 3,3,3,3,3; 1024 channels; 3,612,067 parameters): the paper's main model."""
    return _build((3, 3, 3, 3, 3), kwargs)


# --------------------------------------------------------------------------------------------------
# Reference checkpoints
# --------------------------------------------------------------------------------------------------

# the reference's argument names; the flags it has but that must keep their defaults here
_OVERRIDES = (
    "filter_widths",
    "architecture",
    "channels",
    "causal",
    "dropout",
    "group",
    "recombine",
    "norm",
    "in_features",
    "num_joints_in",
    "num_joints_out",
    "skeleton",
)
_FIXED = dict(
    split="others",
    split_modulation=True,
    dense=False,
    modulation=False,
    group_modulation=False,
    channelwise=False,
    mean_func=False,
    ups_mean=False,
    repeat_concat=False,
)


def _torch_load(path: Path):
    """``torch.load(weights_only=True)``, allowing the numpy arrays of ``run.py``'s ``random_state``."""
    core = np._core if hasattr(np, "_core") else np.core
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), core.multiarray._reconstruct]
    allowed.append((core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"))
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def _state_dict(obj, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, dict) and "model_pos" in obj:
        obj = obj["model_pos"]
    elif isinstance(obj, dict) and obj and not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: no 'model_pos' entry (top-level keys: {sorted(map(str, obj))})")
    if not isinstance(obj, dict) or not obj:
        raise ValueError(
            f"{path}: expected a state dict or run.py's checkpoint dict, got {type(obj).__name__}"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def _infer(sd: dict[str, Tensor], path: Path, overrides: dict) -> dict:
    """SRNet arguments from the state-dict keys and shapes, then ``overrides``."""
    try:
        channels = int(sd["expand_bn.weight"].shape[0])
        first = [
            sd[f"expand_conv.group_conv.{g}.weight"]
            for g in range(len(sd))
            if f"expand_conv.group_conv.{g}.weight" in sd
        ]
        K, h0 = int(first[0].shape[-1]), int(first[0].shape[0])
        final_in = int(sd["final_layer.group_conv.0.weight"].shape[1])
    except (KeyError, IndexError) as e:
        raise ValueError(
            f"{path}: not an SRNet state dict (expand_bn / expand_conv.group_conv / final_layer: missing {e})"
        ) from e
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("layers_conv.")}) // 2
    if any(".get_part_info.layers_bn." in k for k in sd):
        recombine = "multiply"
    else:
        recombine = "concat" if final_in == h0 + 1 else "add"
    hp = dict(filter_widths=[K] * (n_blocks + 1), channels=channels, group=len(first), recombine=recombine)
    hp.update(causal=False, dropout=0.0, norm="base", skeleton=H36M17)
    if "architecture" in overrides:
        overrides["filter_widths"] = [int(w) for w in str(overrides.pop("architecture")).split(",")]
    hp.update(
        {k: v for k, v in overrides.items() if k not in ("in_features", "num_joints_in", "num_joints_out")}
    )
    sk = get_skeleton(hp["skeleton"])
    for name in ("num_joints_in", "num_joints_out"):
        if name in overrides and int(overrides[name]) != sk.num_joints:
            raise ValueError(
                f"{name}={overrides[name]} but the skeleton {sk.name!r} has {sk.num_joints} joints "
                "(SRNet outputs the joints it reads; pass skeleton=...)"
            )
    n_in = sum(int(w.shape[1]) for w in first) - (len(first) if recombine == "concat" else 0)
    try:
        n_slots = sum(len(g) for g in split_groups(sk, int(hp["group"])))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    hp["in_features"] = int(overrides.get("in_features", n_in // n_slots))
    return hp


def load_official(path, **overrides) -> SRNet:
    """An :class:`SRNet` from a checkpoint of the reference (Split-and-Recombine-Net), in eval mode.

    Args:
        path: a file written by the reference's ``run.py`` (``{"model_pos": state_dict, "epoch", "lr",
            ...}``) or a bare state dict; a ``module.`` key prefix is removed.
        **overrides: the reference's hyperparameter names: ``filter_widths`` (or ``architecture``,
            ``"3,3,3"``), ``channels``, ``group``, ``recombine``, ``causal`` (default False), ``dropout`` (0),
            ``norm`` ("base"), ``in_features``, ``num_joints_in`` / ``num_joints_out`` (checked against the
            skeleton), and mvpose's ``skeleton`` (default H36M-17). The reference flags ``split``
            ("others"), ``split_modulation`` (True), ``dense``, ``modulation``, ``group_modulation``,
            ``channelwise``, ``mean_func``, ``ups_mean``, ``repeat_concat`` (False) are accepted only at
            those values (the reference's SRNet).

    Inferred from the state dict: ``channels`` (``expand_bn``), ``group`` (number of group convolutions),
    ``filter_widths`` (the kernel and the number of blocks), ``recombine`` (gate BatchNorms: "multiply";
    one extra group input channel: "concat"; else "add") and ``in_features`` (the first layer's group
    widths over the skeleton's group sizes). ``causal``, ``dropout`` and ``norm`` change no shape.

    Raises:
        ValueError: naming the file, on a layout that is not SRNet's, an unsupported flag, or with every
        missing, unexpected and mis-shaped key when the state dict does not fit the model.
    """
    bad = sorted(set(overrides) - set(_OVERRIDES) - set(_FIXED))
    if bad:
        raise TypeError(f"load_official: unknown override(s) {bad}; accepted: {[*_OVERRIDES, *_FIXED]}")
    for k, v in _FIXED.items():
        if k in overrides and overrides.pop(k) != v:
            raise ValueError(f"load_official: only {k}={v!r} is supported (the reference's SRNet)")
    path = Path(path)
    sd = _state_dict(_torch_load(path), path)
    model = SRNet(**_infer(sd, path, dict(overrides)))
    load_state_dict_strict(
        model,
        sd,
        path,
        f"SRNet(filter_widths={list(model.filter_widths)}, channels={model.channels}, group={model.group}, "
        f"recombine={model.recombine!r}, in_features={model.in_features})",
    )
    return model.eval()
