"""VideoPose3D's reference forward pass (``TemporalModel`` of ``common/model.py``), for benchmarking.

As the reference computes it (fixture README ``videopose3d``): ``view`` and ``permute`` to
``(B, J*D, T)``, dilated ``Conv1d`` (no bias) -> ``BatchNorm1d`` -> ``ReLU`` -> ``Dropout`` per layer,
the residual a slice of the block input, and a biased 1x1 ``shrink`` convolution; BatchNorm is applied
as its own layer (not folded into the convolutions).
"""

from __future__ import annotations

from torch import Tensor, nn

from mvpose.models.temporal.videopose3d import TemporalModel

__all__ = ["ReferenceVideoPose3D", "from_ours"]


class ReferenceVideoPose3D(nn.Module):
    """``TemporalModel`` (reference names): ``(B, T, J_in, D) -> (B, T - R + 1, J_out, 3)``."""

    def __init__(self, num_joints_in, in_features, num_joints_out, filter_widths, causal, channels):
        super().__init__()
        self.num_joints_out = num_joints_out
        self.drop, self.relu = nn.Dropout(0.0), nn.ReLU(inplace=True)
        self.pad, self.causal_shift = [filter_widths[0] // 2], [filter_widths[0] // 2 if causal else 0]
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.shrink = nn.Conv1d(channels, num_joints_out * 3, 1)
        self.expand_conv = nn.Conv1d(num_joints_in * in_features, channels, filter_widths[0], bias=False)
        layers_conv, layers_bn = [], []
        next_dilation = filter_widths[0]
        for w in filter_widths[1:]:
            self.pad.append((w - 1) * next_dilation // 2)
            self.causal_shift.append(w // 2 * next_dilation if causal else 0)
            layers_conv.append(nn.Conv1d(channels, channels, w, dilation=next_dilation, bias=False))
            layers_bn.append(nn.BatchNorm1d(channels, momentum=0.1))
            layers_conv.append(nn.Conv1d(channels, channels, 1, dilation=1, bias=False))
            layers_bn.append(nn.BatchNorm1d(channels, momentum=0.1))
            next_dilation *= w
        self.layers_conv, self.layers_bn = nn.ModuleList(layers_conv), nn.ModuleList(layers_bn)

    def forward(self, x: Tensor) -> Tensor:
        sz = x.shape[:3]
        x = x.view(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i in range(len(self.pad) - 1):
            pad, shift = self.pad[i + 1], self.causal_shift[i + 1]
            res = x[:, :, pad + shift : x.shape[2] - pad + shift]
            x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        x = self.shrink(x).permute(0, 2, 1)
        return x.reshape(sz[0], -1, self.num_joints_out, 3)


def from_ours(model: TemporalModel) -> ReferenceVideoPose3D:
    """The reference network with ``model``'s weights (same names), eval mode."""
    if model.dense:
        raise ValueError("the reference benchmark covers the dilated model only (dense=False)")
    ref = ReferenceVideoPose3D(
        model.num_joints_in,
        model.in_features,
        model.num_joints_out,
        model.filter_widths,
        model.causal,
        model.channels,
    )
    ref.load_state_dict(model.state_dict())
    return ref.eval()
