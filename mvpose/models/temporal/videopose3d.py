"""VideoPose3D (Pavllo et al., CVPR 2019): a dilated temporal convolutional network that lifts 2D keypoint
sequences to 3D (``D = 2``) or refines 3D sequences (``D = 3``).

Architecture, for odd filter widths ``W = (w_0, ..., w_{n-1})`` and ``C`` channels::

    (B, T, J, D) -> (B, J*D, T)                        channel = D*joint + coordinate
    Conv1d(J*D -> C, k=w_0) -> BN -> ReLU -> Dropout
    block i = 1..n-1 (dilation d_i = w_0 * ... * w_{i-1}):
        x = skip(x) + Drop(ReLU(BN(Conv1d 1x1(Drop(ReLU(BN(Conv1d(k=w_i, dilation d_i)(x))))))))
    Conv1d(C -> 3*J_out, 1, bias) -> (B, T_out, J_out, 3)

Only the last 1x1 convolution has a bias; ReLU comes before the residual add and nothing follows it. Every
convolution is *valid* (unpadded) and the skip path is a slice of its input, so the receptive field is
``R = w_0 * ... * w_{n-1}`` (27, 81, 243 for 3, 4, 5 widths of 3) and ``T`` input frames give
``T_out = T - R + 1`` outputs. Output frame ``t`` is the pose of input frame ``t + pad`` (``pad = (R-1)/2``,
the centre of its window) or, with ``causal=True`` (the same weights, the skip slice shifted to the window's
end), of input frame ``t + 2*pad``: a causal model sees only the past. :meth:`TemporalModel.predict`
edge-pads a whole sequence so that ``T`` frames give ``T`` outputs (VideoPose3D's evaluation), with
optional test-time flip averaging.

:class:`TemporalModelOptimized1f` is the training variant: the same state dict, but each temporal
convolution has stride = width and no dilation, so it computes one output per non-overlapping ``R``-frame
window (VideoPose3D trains it on single-frame targets, then copies its weights into the evaluation model).

In eval mode without autograd every BatchNorm is folded into its convolution (cached) and the ReLU runs
inside oneDNN's convolution kernel (:mod:`mvpose.models.temporal._fused`).

Checkpoints of the reference (``run.py``: ``{"epoch", "lr", "random_state", "optimizer", "model_pos",
"model_traj", ...}``) load with :func:`load_official`, which infers the hyperparameters from the shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mvpose.data.sequences.windows import flip_average, pad_sequence
from mvpose.models._checkpoint import load_state_dict_strict
from mvpose.models.temporal import _fused as fused
from mvpose.models.temporal._fused import bn_affine, cached, inference

__all__ = [
    "TemporalModel",
    "TemporalModelOptimized1f",
    "videopose3d_27f",
    "videopose3d_81f",
    "videopose3d_243f",
    "load_official",
]


class _TemporalBase(nn.Module):
    """Layers and forward pass shared by both variants; subclasses choose the convolutions and the skips."""

    def __init__(
        self,
        num_joints_in: int,
        in_features: int,
        num_joints_out: int,
        filter_widths: Sequence[int],
        causal: bool,
        dropout: float,
        channels: int,
        dense: bool,
    ):
        super().__init__()
        widths = tuple(int(w) for w in filter_widths)
        if not widths or any(w < 1 or w % 2 == 0 for w in widths):
            raise ValueError(f"filter_widths must be odd positive integers, got {list(filter_widths)}")
        self.num_joints_in, self.in_features = int(num_joints_in), int(in_features)
        self.num_joints_out, self.channels = int(num_joints_out), int(channels)
        self.filter_widths, self.causal, self.dense = widths, bool(causal), bool(dense)
        self.dilations = tuple(math.prod(widths[:i]) for i in range(len(widths)))
        self.receptive_field = math.prod(widths)
        self.pad = (self.receptive_field - 1) // 2
        # evaluation pads pad + causal_shift frames on the left, pad - causal_shift on the right
        self.causal_shift = self.pad if self.causal else 0

        # registration order gives the reference's state-dict order (expand_bn, shrink, expand_conv, layers_*)
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.shrink = nn.Conv1d(channels, num_joints_out * 3, 1)
        self.expand_conv = self._conv(num_joints_in * in_features, 0)
        self.layers_conv, self.layers_bn = nn.ModuleList(), nn.ModuleList()
        for i in range(1, len(widths)):  # [dilated conv, 1x1 conv] per block
            self.layers_conv.extend([self._conv(channels, i), nn.Conv1d(channels, channels, 1, bias=False)])
            self.layers_bn.extend([nn.BatchNorm1d(channels, momentum=0.1) for _ in range(2)])
        self.relu, self.drop = nn.ReLU(), nn.Dropout(dropout)
        self._skips = [self._skip(i) for i in range(1, len(widths))]  # (start, cut at end, step)

    def _conv(self, in_channels: int, i: int) -> nn.Conv1d:
        raise NotImplementedError

    def _skip(self, i: int) -> tuple[int, int, int]:
        raise NotImplementedError

    def set_bn_momentum(self, momentum: float) -> None:
        """Set the momentum of every BatchNorm (VideoPose3D decays it during training)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.momentum = momentum

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[2:] != (self.num_joints_in, self.in_features):
            raise ValueError(
                f"{type(self).__name__}: expected input (B, T, {self.num_joints_in}, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[1] < self.receptive_field:
            raise ValueError(
                f"{type(self).__name__}: {x.shape[1]} frames is shorter than the receptive field "
                f"{self.receptive_field} (pad the sequence, e.g. with predict())"
            )

    def _fused_params(self) -> tuple[Tensor, ...]:
        """Every (convolution, BatchNorm) pair as one convolution: ``(weight, bias)`` per pair."""
        out = []
        for conv, bn in zip((self.expand_conv, *self.layers_conv), (self.expand_bn, *self.layers_bn)):
            scale, shift = bn_affine(bn)
            out += [conv.weight * scale[:, None, None], shift]
        return tuple(out)

    def _run_fused(self, x: Tensor) -> Tensor:
        """:meth:`_run` in eval mode without autograd: BatchNorms folded into the convolutions (cached),
        ReLU inside the convolution kernels. A dilated model given exactly one receptive field (one
        output frame) computes only the frames that output needs: each temporal convolution strided by
        its width instead of dilated, skips strided alike (the reference's ``TemporalModelOptimized1f``,
        equal up to rounding; 15x fewer multiply-adds at 243 frames)."""
        p = cached(self, self._fused_params)
        convs = (self.expand_conv, *self.layers_conv)
        one_window = not self.dense and x.shape[2] == self.receptive_field and isinstance(self, TemporalModel)
        skips = [_strided_skip(w, self.causal) for w in self.filter_widths[1:]] if one_window else self._skips

        def conv_relu(i: int, h: Tensor) -> Tensor:
            c = convs[i]
            stride, dilation = (
                (c.kernel_size, (1,)) if one_window and c.kernel_size[0] > 1 else (c.stride, c.dilation)
            )
            return fused.conv(h, p[2 * i], p[2 * i + 1], stride, c.padding, dilation, "relu")

        x = conv_relu(0, x)
        for i, (start, cut, step) in enumerate(skips):
            res = x[:, :, start : x.shape[2] - cut : step]
            x = conv_relu(2 * i + 2, conv_relu(2 * i + 1, x)).add_(res)
        return self.shrink(x)

    def _run(self, x: Tensor, record: dict[str, Tensor] | None = None) -> Tensor:
        """The forward pass; ``record`` (if given) collects the intermediates named below."""
        self._check(x)
        B, T = x.shape[:2]
        x = x.reshape(B, T, -1).transpose(1, 2)  # (B, J*D, T), channel = D*joint + coordinate
        if record is None and inference(self) and self.expand_bn.running_var is not None:
            return self._run_fused(x).transpose(1, 2).reshape(B, -1, self.num_joints_out, 3)

        def conv_bn(name: str, conv: nn.Module, bn: nn.Module, h: Tensor) -> Tensor:
            h = conv(h)
            if record is not None:
                record[name.format("conv")] = h
            h = bn(h)
            if record is not None:
                record[name.format("bn")] = h
            return self.drop(self.relu(h))

        x = conv_bn("expand_{}", self.expand_conv, self.expand_bn, x)
        for i, (start, cut, step) in enumerate(self._skips):
            res = x[:, :, start : x.shape[2] - cut : step]
            for k in (2 * i, 2 * i + 1):
                x = conv_bn(f"layers_{{}}{k}", self.layers_conv[k], self.layers_bn[k], x)
            x = res + x
        if record is not None:
            record["shrink_in"] = x
        return self.shrink(x).transpose(1, 2).reshape(B, -1, self.num_joints_out, 3)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, T, J_in, D)`` (normalised 2D or camera 3D) -> ``(B, T_out, J_out, 3)`` (see the class)."""
        return self._run(x)

    def forward_intermediates(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`forward` plus the intermediates, each ``(B, C, T_i)`` (channels first, as in the reference).

        Keys: ``expand_conv``, ``expand_bn``, ``layers_conv{k}``, ``layers_bn{k}`` (convolution, then its
        BatchNorm, before ReLU; ``k = 2i`` the dilated and ``2i+1`` the 1x1 convolution of block ``i+1``) and
        ``shrink_in`` (the input of the last layer, after the last residual add).
        """
        record: dict[str, Tensor] = {}
        return self._run(x, record), record


class TemporalModel(_TemporalBase):
    """VideoPose3D's dilated temporal convolutional network (evaluation form; any sequence length).

    Args:
        num_joints_in, in_features: input joints ``J_in`` and coordinates ``D`` (2: lifting, 3: refinement).
        num_joints_out: output joints ``J_out`` (3D each); 1 for VideoPose3D's trajectory model.
        filter_widths: odd temporal widths, e.g. ``(3, 3, 3, 3, 3)`` (243 frames).
        causal: use only past frames (the skip slices end at the window's last frame); no parameter changes.
        dropout: dropout probability after every ReLU.
        channels: ``C``, the width of every hidden layer.
        dense: dense (undilated) convolutions of width ``(w_i - 1) * d_i + 1`` instead of dilated ones.

    Shapes: ``(B, T, J_in, D) -> (B, T - R + 1, J_out, 3)``, ``R = receptive_field = prod(filter_widths)``;
    output ``t`` belongs to input frame ``t + pad`` (``t + 2 * pad`` when causal), ``pad = (R - 1) // 2``.

    Example:
        >>> model = TemporalModel(17, 2, 17, filter_widths=(3, 3, 3), channels=64).eval()
        >>> model(torch.zeros(4, 30, 17, 2)).shape, model.receptive_field
        (torch.Size([4, 4, 17, 3]), 27)
    """

    def __init__(
        self,
        num_joints_in: int = 17,
        in_features: int = 2,
        num_joints_out: int = 17,
        filter_widths: Sequence[int] = (3, 3, 3, 3, 3),
        causal: bool = False,
        dropout: float = 0.25,
        channels: int = 1024,
        dense: bool = False,
    ):
        super().__init__(
            num_joints_in, in_features, num_joints_out, filter_widths, causal, dropout, channels, dense
        )

    def _conv(self, in_channels: int, i: int) -> nn.Conv1d:
        w, d = self.filter_widths[i], self.dilations[i]
        if self.dense:
            return nn.Conv1d(in_channels, self.channels, (w - 1) * d + 1, bias=False)
        return nn.Conv1d(in_channels, self.channels, w, dilation=d, bias=False)

    def _skip(self, i: int) -> tuple[int, int, int]:
        pad = (self.filter_widths[i] - 1) * self.dilations[i] // 2
        shift = pad if self.causal else 0  # slice [pad + shift, T - pad + shift)
        return pad + shift, pad - shift, 1

    @torch.no_grad()
    def predict(
        self,
        x: Tensor,
        flip_indices: Sequence[int] | None = None,
        output_flip_indices: Sequence[int] | None = None,
    ) -> Tensor:
        """Whole-sequence prediction as VideoPose3D's ``evaluate()`` computes it (call ``.eval()`` first).

        Args:
            x: ``(B, L, J_in, D)`` unpadded sequences (centred coordinates: normalised 2D or camera 3D).
            flip_indices: the input joints' left/right permutation (e.g. ``H36M17.flip_indices``) to
                average with the mirrored sequence (test-time augmentation; ``None``: no flip).
            output_flip_indices: the output joints' permutation (default: ``flip_indices``).

        Returns:
            ``(B, L, J_out, 3)``: the input is edge-padded by ``pad + causal_shift`` frames before and
            ``pad - causal_shift`` after, so output ``t`` belongs to frame ``t``.
        """
        x = pad_sequence(x, self.pad, self.causal_shift, time_dim=1)
        if flip_indices is None:
            return self(x)
        return flip_average(self, x, flip_indices, output_flip_indices)


class TemporalModelOptimized1f(_TemporalBase):
    """VideoPose3D's strided training variant: :class:`TemporalModel`'s state dict, one output per window.

    Every temporal convolution has stride = width and no dilation, and the skip of block ``i`` keeps
    every ``w_i``-th frame (from ``w_i // 2``, or ``w_i - 1`` when causal). ``T`` must be a multiple of
    ``R``: ``(B, k * R, J_in, D) -> (B, k, J_out, 3)``, output ``j`` equal (up to rounding) to
    :class:`TemporalModel` on frames ``[j R, (j + 1) R)``. Dense convolutions are not supported (as in the
    reference). :meth:`from_model` builds one that shares the parameters of a :class:`TemporalModel`.
    """

    def __init__(
        self,
        num_joints_in: int = 17,
        in_features: int = 2,
        num_joints_out: int = 17,
        filter_widths: Sequence[int] = (3, 3, 3, 3, 3),
        causal: bool = False,
        dropout: float = 0.25,
        channels: int = 1024,
    ):
        super().__init__(
            num_joints_in, in_features, num_joints_out, filter_widths, causal, dropout, channels, False
        )

    def _conv(self, in_channels: int, i: int) -> nn.Conv1d:
        w = self.filter_widths[i]
        return nn.Conv1d(in_channels, self.channels, w, stride=w, bias=False)

    def _skip(self, i: int) -> tuple[int, int, int]:
        return _strided_skip(self.filter_widths[i], self.causal)

    def _check(self, x: Tensor) -> None:
        super()._check(x)
        if x.shape[1] % self.receptive_field:
            raise ValueError(
                f"TemporalModelOptimized1f: {x.shape[1]} frames is not a multiple of the receptive field "
                f"{self.receptive_field} (use TemporalModel for sliding windows)"
            )

    @classmethod
    def from_model(cls, model: TemporalModel, share: bool = True) -> TemporalModelOptimized1f:
        """The strided twin of ``model`` (same hyperparameters; parameters and buffers shared, or copied)."""
        if model.dense:
            raise ValueError("TemporalModelOptimized1f has no dense variant")
        twin = cls(
            model.num_joints_in,
            model.in_features,
            model.num_joints_out,
            model.filter_widths,
            model.causal,
            model.drop.p,
            model.channels,
        )
        twin.load_state_dict(model.state_dict(keep_vars=share), assign=share)
        return twin.train(model.training)


def _strided_skip(w: int, causal: bool) -> tuple[int, int, int]:
    """Skip slice ``(start, cut at end, step)`` of a block of width ``w`` when the frames are strided
    (not scaled by the dilation)."""
    return (w // 2 if causal else 0) + w // 2, 0, w


def _build(widths: Sequence[int], kwargs: dict) -> TemporalModel:
    return TemporalModel(**{"filter_widths": widths, "channels": 1024, **kwargs})


def videopose3d_27f(**kwargs) -> TemporalModel:
    """27-frame model (widths 3,3,3; 1024 channels; 8,555,571 parameters for 17 -> 17 joints in 2D)."""
    return _build((3, 3, 3), kwargs)


def videopose3d_81f(**kwargs) -> TemporalModel:
    """81-frame model (widths 3,3,3,3; 1024 channels; 12,753,971 parameters)."""
    return _build((3, 3, 3, 3), kwargs)


def videopose3d_243f(**kwargs) -> TemporalModel:
    """243-frame model (widths 3,3,3,3,3; 1024 channels; 16,952,371 parameters): the paper's main model."""
    return _build((3, 3, 3, 3, 3), kwargs)


# --------------------------------------------------------------------------------------------------
# Reference checkpoints
# --------------------------------------------------------------------------------------------------

_OVERRIDES = (
    "filter_widths architecture channels num_joints_in in_features num_joints_out causal dropout dense"
)
_OVERRIDES = tuple(_OVERRIDES.split())


def _torch_load(path: Path):
    """``torch.load(weights_only=True)``, allowing the numpy arrays of ``run.py``'s ``random_state``."""
    reconstruct = (
        np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    )
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), reconstruct]
    allowed.append((reconstruct, "numpy.core.multiarray._reconstruct"))  # pickled by numpy < 2
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def _state_dict(obj, path: Path, key: str) -> dict[str, Tensor]:
    if isinstance(obj, dict) and key in obj:
        obj = obj[key]
        if obj is None:
            raise ValueError(f"{path}: checkpoint entry {key!r} is None (no such model was saved)")
    elif isinstance(obj, dict) and obj and not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: no {key!r} entry (top-level keys: {sorted(map(str, obj))})")
    if not isinstance(obj, dict) or not obj:
        raise ValueError(
            f"{path}: expected a state dict or run.py's checkpoint dict, got {type(obj).__name__}"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def _infer(sd: dict[str, Tensor], path: Path, overrides: dict) -> dict:
    """TemporalModel arguments from the state-dict shapes, then ``overrides``."""
    try:
        channels, in_ch, w0 = sd["expand_conv.weight"].shape
        out_ch = sd["shrink.weight"].shape[0]
    except (KeyError, ValueError) as e:
        raise ValueError(
            f"{path}: not a VideoPose3D TemporalModel state dict (expand_conv/shrink: {e})"
        ) from e
    if out_ch % 3:
        raise ValueError(f"{path}: shrink.weight has {out_ch} output channels, not 3 per joint")
    j_out = int(overrides.get("num_joints_out", out_ch // 3))
    if "num_joints_in" in overrides:
        j_in = int(overrides["num_joints_in"])
        feat = int(overrides.get("in_features", in_ch // j_in))
    elif "in_features" in overrides:
        feat = int(overrides["in_features"])
        j_in = in_ch // feat
    elif in_ch % j_out == 0 and in_ch // j_out in (2, 3):
        j_in, feat = j_out, in_ch // j_out  # same joints in and out (the common case)
    else:
        j_in, feat = (in_ch // 2, 2) if in_ch % 2 == 0 else (in_ch // 3, 3)
    dense = bool(overrides.get("dense", False))
    widths, i = [int(w0)], 0
    while f"layers_conv.{2 * i}.weight" in sd:  # the dilated convolution of each block
        k = int(sd[f"layers_conv.{2 * i}.weight"].shape[-1])
        widths.append((k - 1) // math.prod(widths) + 1 if dense else k)
        i += 1
    if "architecture" in overrides:
        widths = [int(w) for w in str(overrides["architecture"]).split(",")]
    widths = list(overrides.get("filter_widths", widths))
    return dict(
        num_joints_in=j_in,
        in_features=feat,
        num_joints_out=j_out,
        filter_widths=widths,
        causal=bool(overrides.get("causal", False)),
        dropout=float(overrides.get("dropout", 0.25)),
        channels=int(overrides.get("channels", channels)),
        dense=dense,
    )


def load_official(path, *, checkpoint_key: str = "model_pos", **overrides) -> TemporalModel:
    """A :class:`TemporalModel` from a VideoPose3D checkpoint, in eval mode.

    Args:
        path: a file written by VideoPose3D's ``run.py`` (``{"epoch", "lr", "random_state", "optimizer",
            "model_pos", "model_traj", ...}``) or a bare state dict; a ``module.`` key prefix is removed.
        checkpoint_key: the entry holding the state dict (``"model_traj"`` for the trajectory model).
        **overrides: the reference's own hyperparameter names: ``filter_widths`` (or ``architecture``,
            ``"3,3,3"``), ``channels``, ``num_joints_in``, ``in_features``, ``num_joints_out``,
            ``causal`` (default False), ``dropout`` (0.25), ``dense`` (False).

    Inferred from the shapes: ``channels`` and ``filter_widths`` (kernel sizes; with ``dense=True`` the
    widths behind the dense kernels), ``num_joints_out`` (``shrink``), and ``num_joints_in * in_features``
    (``expand_conv``), split as ``num_joints_in = num_joints_out`` when that gives 2 or 3 features (else
    pass one of them). ``causal``, ``dropout`` and ``dense`` change no shape: pass them if needed.
    :meth:`TemporalModelOptimized1f.from_model` gives the strided training twin.

    Raises:
        ValueError: naming the file, on a layout that is not VideoPose3D's, or with every missing,
        unexpected and mis-shaped key when the state dict does not fit the model.
    """
    bad = sorted(set(overrides) - set(_OVERRIDES))
    if bad:
        raise TypeError(f"load_official: unknown override(s) {bad}; accepted: {list(_OVERRIDES)}")
    path = Path(path)
    sd = _state_dict(_torch_load(path), path, checkpoint_key)
    model = TemporalModel(**_infer(sd, path, overrides))
    load_state_dict_strict(
        model,
        sd,
        path,
        f"TemporalModel(filter_widths={list(model.filter_widths)}, channels={model.channels}, "
        f"dense={model.dense})",
    )
    return model.eval()
