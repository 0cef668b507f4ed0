"""Inference-only helpers of the temporal models' fused forward paths.

In eval mode without autograd the temporal models run "fused": normalisation layers folded into the
weights of their neighbouring matrix products, q/k/v stacked, convolutions reshaped to matrix
products, and bias, activation and residual addition computed by the matrix-product kernel itself
(oneDNN's ``mkldnn._linear_pointwise`` / ``_convolution_pointwise``, the primitives that
``torch.compile`` uses on CPU; plain ``F.linear`` + activation where they are unavailable, for other
dtypes than float32, or off the CPU). Fewer, larger kernels matter most on a loaded machine, where every
parallel region waits for its threads.

The folded weights are built once and cached on the module (:func:`cached`).

A cache entry is keyed on the identity, storage address and in-place version counter of every
parameter and buffer of the module, so ``load_state_dict``, optimiser steps, ``.to()`` and in-place
updates under ``torch.no_grad()`` all invalidate it. Writes through ``tensor.data`` bypass the version
counter: call :func:`clear_inference_cache` after such writes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "cached",
    "clear_inference_cache",
    "inference",
    "bn_affine",
    "linear",
    "linear_add",
    "conv",
    "onednn_available",
]

_ATTR = "_mvpose_inference_cache"


def inference(module: nn.Module) -> bool:
    """Eval mode without autograd: the fused paths (same numbers up to float rounding) may run."""
    return not module.training and not torch.is_grad_enabled()


def _key(module: nn.Module) -> tuple:
    return tuple((id(t), t.data_ptr(), t._version) for t in (*module.parameters(), *module.buffers()))


def cached(module: nn.Module, build: Callable[[], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """``build()`` (tensors derived from ``module``'s parameters and buffers), rebuilt only when one of
    them changed since the last call (see the module doc). Call it only when autograd is off."""
    key = _key(module)
    entry = module.__dict__.get(_ATTR)
    if entry is None or entry[0] != key:
        with torch.no_grad():
            entry = (key, tuple(build()))
        object.__setattr__(module, _ATTR, entry)
    return entry[1]


def clear_inference_cache(model: nn.Module) -> None:
    """Drop the cached fused weights of ``model`` and its submodules (after writes through ``.data``)."""
    for m in model.modules():
        m.__dict__.pop(_ATTR, None)


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """An eval-mode BatchNorm as ``x * scale + shift`` per channel: ``(scale, shift)``."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    return scale, shift if bn.bias is None else shift + bn.bias


# ------------------------------------------------------------------------------------ oneDNN kernels
_ONEDNN: bool | None = None


def onednn_available() -> bool:
    """Whether oneDNN's fused linear/convolution ops exist and compute what they should (probed once)."""
    global _ONEDNN
    if _ONEDNN is None:
        try:
            x, w, b = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
            y = torch.ops.mkldnn._linear_pointwise(x, w, b, "relu", [], "")
            z = torch.ops.mkldnn._linear_pointwise.binary(x, y, w, b, "add")
            c = torch.ops.mkldnn._convolution_pointwise(
                x[None], w[:, :2, None], b, [0], [1], [1], 1, "none", [], ""
            )
            _ONEDNN = bool((z == 6).all() and (c == 2).all() and torch.backends.mkldnn.is_available())
        except (RuntimeError, AttributeError, TypeError):
            _ONEDNN = False
    return _ONEDNN


def _use_onednn(x: Tensor) -> bool:
    return (
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and onednn_available()
    )


_ACT = {"none": ("none", [], ""), "relu": ("relu", [], ""), "gelu": ("gelu", [], "none")}


def _activation(y: Tensor, act: str, slope: float) -> Tensor:
    if act == "relu":
        return y.relu_()
    if act == "gelu":
        return F.gelu(y)
    if act == "leaky_relu":
        return F.leaky_relu(y, slope, inplace=True)
    return y


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, act: str = "none", slope: float = 0.0) -> Tensor:
    """``act(F.linear(x, weight, bias))`` in one kernel; ``act``: none, relu, gelu (erf) or leaky_relu."""
    if _use_onednn(x):
        attr, scalars, algo = ("leaky_relu", [slope], "") if act == "leaky_relu" else _ACT[act]
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, scalars, algo)
    return _activation(F.linear(x, weight, bias), act, slope)


def linear_add(x: Tensor, other: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias) + other`` in one kernel (a residual connection)."""
    if _use_onednn(x) and other.dtype == x.dtype:
        return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, bias, "add")
    return F.linear(x, weight, bias).add_(other)


def conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    act: str = "none",
    other: Tensor | None = None,
) -> Tensor:
    """``act(conv(x, weight, bias, ...))`` (1-D or 2-D, one group) in one kernel, or with ``other`` (then
    ``act`` must be none) ``conv(x, ...) + other``. Channels-last inputs stay channels-last."""
    nd = x.dim() - 2
    if _use_onednn(x):
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, padding, stride, dilation, 1, *_ACT[act]
            )
        if act == "none":
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, weight, bias, padding, stride, dilation, 1, "add", None, None, [], None
            )
    y = (F.conv1d if nd == 1 else F.conv2d)(x, weight, bias, stride, padding, dilation)
    return _activation(y if other is None else y.add_(other), act, 0.0)
