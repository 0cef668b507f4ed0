"""V2V: the volumetric encoder-decoder of V2V-PoseNet (Moon et al., CVPR 2018) as used by learnable
triangulation (Iskakov et al., ICCV 2019) on the aggregated feature volume.

Volumes are ``(B, C, X, Y, Z)``. Module and attribute names follow the reference checkpoints
(``volume_net.front_layers.*``, ``volume_net.encoder_decoder.{encoder_res,skip_res,mid_res,
decoder_res,decoder_upsample}<i>.*``, ``volume_net.back_layers.*``, ``volume_net.output_layer.*``),
so the reference state dicts load unchanged.

The encoder-decoder is built from a channel list, and its bottleneck (``mid_res``) is any module:
ContextPose builds its shallower V2V with its context-attention block there, e.g.::

    V2VModel(32, 17,
             front_layers=nn.Sequential(Basic3DBlock(32, 17, 3), Res3DBlock(17, 34)),
             encoder_decoder=EncoderDecoder((34, 51, 51), mid=ContextAttentionBlock(...)),
             back_layers=nn.Sequential())

A ``mid`` module may return ``(x, extras)``; the encoder-decoder and the model then return
``(output, extras)`` (attention maps for a loss, say).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Basic3DBlock", "Res3DBlock", "Pool3DBlock", "Upsample3DBlock", "EncoderDecoder", "V2VModel"]

#: channels of learnable triangulation's encoder-decoder: input, then the output of each of 5 levels
LT_ENCODER_CHANNELS = (32, 64, 128, 128, 128, 128)


class Basic3DBlock(nn.Module):
    """Conv3d (bias, 'same' padding for odd kernels) + BatchNorm3d + ReLU: ``block.{0,1}``."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(in_planes, out_planes, kernel_size, stride=1, padding=(kernel_size - 1) // 2),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class Res3DBlock(nn.Module):
    """``relu(BN(conv3(relu(BN(conv3(x))))) + skip(x))``; ``skip`` is the identity when the channel
    count is kept, else BN(conv1x1(x)). Keys ``res_branch.{0,1,3,4}``, ``skip_con.{0,1}``."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.res_branch = nn.Sequential(
            nn.Conv3d(in_planes, out_planes, 3, stride=1, padding=1),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_planes, out_planes, 3, stride=1, padding=1),
            nn.BatchNorm3d(out_planes),
        )
        if in_planes == out_planes:
            self.skip_con = nn.Sequential()
        else:
            self.skip_con = nn.Sequential(
                nn.Conv3d(in_planes, out_planes, 1, stride=1, padding=0), nn.BatchNorm3d(out_planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.res_branch(x) + self.skip_con(x), inplace=True)


class Pool3DBlock(nn.Module):
    """Max pooling with kernel = stride = ``pool_size`` (no parameters)."""

    def __init__(self, pool_size: int):
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(x, kernel_size=self.pool_size, stride=self.pool_size)


class Upsample3DBlock(nn.Module):
    """ConvTranspose3d(k=2, s=2, bias) + BatchNorm3d + ReLU: doubles each spatial size."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 2, stride: int = 2):
        super().__init__()
        if kernel_size != 2 or stride != 2:
            raise ValueError("Upsample3DBlock: only kernel_size=2, stride=2 is supported")
        self.block = nn.Sequential(
            nn.ConvTranspose3d(
                in_planes, out_planes, kernel_size, stride=stride, padding=0, output_padding=0
            ),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class EncoderDecoder(nn.Module):
    """U-shaped hourglass with ``L = len(channels) - 1`` levels.

    Level ``i`` (1-based): ``skip_res<i> = Res(c[i-1], c[i-1])`` on the input, ``encoder_pool<i>``
    (max-pool 2), ``encoder_res<i> = Res(c[i-1], c[i])``. Then ``mid_res`` (default
    ``Res(c[L], c[L])``). Back up, for ``i = L..1``: ``decoder_res<i> = Res(c[i], c[i])``,
    ``decoder_upsample<i> = Up(c[i], c[i-1])``, plus the skip of level ``i``.
    Every spatial size must be divisible by ``2**L``.

    Args:
        channels: ``(c0, c1, ..., cL)``; learnable triangulation uses ``(32, 64, 128, 128, 128, 128)``.
        mid: bottleneck module on ``(B, cL, ...)`` (default ``Res3DBlock(cL, cL)``). It may return a
            tensor or ``(tensor, extras)``.
    """

    def __init__(self, channels: Sequence[int] = LT_ENCODER_CHANNELS, mid: nn.Module | None = None):
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        if len(self.channels) < 2:
            raise ValueError(f"EncoderDecoder: need at least two channel counts, got {self.channels}")
        c = self.channels
        self.levels = len(c) - 1
        for i in range(1, self.levels + 1):
            setattr(self, f"encoder_pool{i}", Pool3DBlock(2))
            setattr(self, f"encoder_res{i}", Res3DBlock(c[i - 1], c[i]))
        self.mid_res = mid if mid is not None else Res3DBlock(c[-1], c[-1])
        for i in range(self.levels, 0, -1):
            setattr(self, f"decoder_res{i}", Res3DBlock(c[i], c[i]))
            setattr(self, f"decoder_upsample{i}", Upsample3DBlock(c[i], c[i - 1], 2, 2))
        for i in range(1, self.levels + 1):
            setattr(self, f"skip_res{i}", Res3DBlock(c[i - 1], c[i - 1]))

    def forward(self, x: Tensor):
        factor = 2**self.levels
        if any(s % factor for s in x.shape[2:]):
            raise ValueError(
                f"EncoderDecoder: spatial size {tuple(x.shape[2:])} must be divisible by {factor} "
                f"({self.levels} max-pools by 2)"
            )
        skips = []
        for i in range(1, self.levels + 1):
            skips.append(getattr(self, f"skip_res{i}")(x))
            x = getattr(self, f"encoder_pool{i}")(x)
            x = getattr(self, f"encoder_res{i}")(x)
        x = self.mid_res(x)
        extras = None
        if isinstance(x, tuple):
            x, extras = x[0], (x[1] if len(x) == 2 else x[1:])
        for i in range(self.levels, 0, -1):
            x = getattr(self, f"decoder_res{i}")(x)
            x = getattr(self, f"decoder_upsample{i}")(x)
            x = x + skips[i - 1]
        return x if extras is None else (x, extras)


class V2VModel(nn.Module):
    """Volume-to-volume network: ``front_layers -> encoder_decoder -> back_layers -> output_layer``.

    Default layers (learnable triangulation): front = Basic(in, 16, k7), Res(16, 32), Res(32, 32),
    Res(32, 32); the 5-level :class:`EncoderDecoder`; back = Res(32, 32), Basic(32, 32, k1),
    Basic(32, 32, k1); ``output_layer`` = Conv3d(32, out, 1) with bias.

    Args:
        input_channels: channels of the input volume (the unprojected features).
        output_channels: one per joint.
        front_layers, encoder_decoder, back_layers: replacements for a variant (see the module
            docstring); the output layer reads ``encoder_decoder.channels[0]`` channels.

    Shapes:
        ``(B, input_channels, X, Y, Z) -> (B, output_channels, X, Y, Z)`` (raw logits), with
        ``X, Y, Z`` divisible by ``2**levels`` (32 for the default). If the encoder-decoder's mid
        block returns extras, the result is ``(logits, extras)``.

    Example:
        >>> net = V2VModel(32, 17).eval()
        >>> net(torch.randn(1, 32, 32, 32, 32)).shape
        torch.Size([1, 17, 32, 32, 32])
    """

    def __init__(
        self,
        input_channels: int,
        output_channels: int,
        *,
        front_layers: nn.Module | None = None,
        encoder_decoder: EncoderDecoder | None = None,
        back_layers: nn.Module | None = None,
    ):
        super().__init__()
        if front_layers is None:
            front_layers = nn.Sequential(
                Basic3DBlock(input_channels, 16, 7),
                Res3DBlock(16, 32),
                Res3DBlock(32, 32),
                Res3DBlock(32, 32),
            )
        self.front_layers = front_layers
        self.encoder_decoder = encoder_decoder if encoder_decoder is not None else EncoderDecoder()
        width = self.encoder_decoder.channels[0]
        if back_layers is None:
            back_layers = nn.Sequential(
                Res3DBlock(width, width), Basic3DBlock(width, width, 1), Basic3DBlock(width, width, 1)
            )
        self.back_layers = back_layers
        self.output_layer = nn.Conv3d(width, output_channels, kernel_size=1, stride=1, padding=0)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference initialisation: Xavier-normal conv weights, zero biases (BN at defaults)."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d | nn.ConvTranspose3d):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor):
        x = self.front_layers(x)
        x = self.encoder_decoder(x)
        extras = None
        if isinstance(x, tuple):
            x, extras = x
        x = self.output_layer(self.back_layers(x))
        return x if extras is None else (x, extras)
