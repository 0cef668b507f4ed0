"""Pose-ResNet ("Simple Baselines", Xiao et al., ECCV 2018) and the heads learnable triangulation adds to it.

Architecture (torchvision's ResNet body, then three deconvolutions and a 1x1 heatmap layer)::

    images (N, 3, H, W)
    conv1 7x7/2 -> bn1 -> relu -> maxpool 3x3/2 -> layer1..layer4      (N, C4, H/32, W/32)
      |- alg_confidences: ConfidenceHead(C4 -> J)          (optional)  (N, J) in (0, 1)
      |- vol_confidences: ConfidenceHead(C4 -> 32)         (optional)  (N, 32) in (0, 1)
    deconv_layers: 3 x [ConvTranspose2d(k=4, s=2, p=1, no bias) -> BN -> ReLU], 256 channels
                                                                        features (N, 256, H/4, W/4)
    final_layer: Conv2d(256 -> J, 1x1, bias)                            heatmaps (N, J, H/4, W/4)

``C4`` is 512 for ResNet-18/34 (BasicBlock) and 2048 for ResNet-50/101/152 (Bottleneck). The module
names are those of the reference implementations (MSRA's ``PoseResNet`` and learnable triangulation's
``pose_resnet.py``), so their state dicts load as they are: ``conv1``, ``bn1``, ``layer1..4`` (torchvision's
block layout: ``conv1..3``, ``bn1..3``, ``downsample.{0,1}``), ``alg_confidences.{features.{0,1,4,5},
head.{0,2,4}}``, ``vol_confidences.*``, ``deconv_layers.{0,1,3,4,6,7}``, ``final_layer``. The volumetric
models' unprojection features come from :func:`feature_head`, which those models register as their own
top-level ``process_features`` (the reference's key is ``process_features.0.*``, outside the backbone).

Weights: builders never download. ``pretrained=PATH`` reads a local MSRA / learnable-triangulation
pose-ResNet file with :func:`load_pose_resnet_backbone` (the reference's lenient rules); whole-model
checkpoints are loaded by the model's own ``load_official_*`` function.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

__all__ = [
    "RESNET_SPECS",
    "ConfidenceHead",
    "PoseResNet",
    "PoseResNetOutput",
    "BackboneLoadReport",
    "pose_resnet",
    "pose_resnet18",
    "pose_resnet34",
    "pose_resnet50",
    "pose_resnet101",
    "pose_resnet152",
    "feature_head",
    "load_pose_resnet_backbone",
    "pose_resnet_config_from_state_dict",
]

logger = logging.getLogger(__name__)

#: depth -> (block kind, blocks per stage), as torchvision and the reference define them
RESNET_SPECS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_BLOCKS = {"basic": tv_resnet.BasicBlock, "bottleneck": tv_resnet.Bottleneck}
# ConvTranspose2d padding and output padding per kernel size (stride 2 doubles the size)
_DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


class ConfidenceHead(nn.Module):
    """Per-image confidences from the last ResNet stage (the reference's ``GlobalAveragePoolingHead``).

    ``features``: Conv2d(C, 512, 3, p=1) -> BN -> MaxPool2d(2) -> ReLU -> Conv2d(512, 256, 3, p=1) -> BN ->
    MaxPool2d(2) -> ReLU; spatial mean; ``head``: Linear(256, 512) -> ReLU -> Linear(512, 256) -> ReLU ->
    Linear(256, n) -> sigmoid.

    Args:
        in_channels: channels of the layer4 map (512 or 2048).
        num_outputs: outputs per image (joints for ``alg_confidences``, feature channels for
            ``vol_confidences``).

    Shape:
        ``(N, in_channels, h, w)`` with ``h, w >= 4`` (an input image of about 128 px or more)
        -> ``(N, num_outputs)`` in (0, 1).
    """

    def __init__(self, in_channels: int, num_outputs: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 512, 3, stride=1, padding=1),
            nn.BatchNorm2d(512),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(512, 256, 3, stride=1, padding=1),
            nn.BatchNorm2d(256),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.Linear(256, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, num_outputs),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] < 4 or x.shape[-1] < 4:
            raise ValueError(
                f"ConfidenceHead: the layer4 map is {tuple(x.shape[-2:])}, it must be at least 4x4 "
                "(two 2x max-pools): use input images of at least 128x128 px"
            )
        return self.head(self.features(x).flatten(2).mean(-1))


class PoseResNetOutput(NamedTuple):
    """What :class:`PoseResNet` returns (the reference's tuple order)."""

    heatmaps: Tensor  #: (N, J, H/4, W/4) raw ``final_layer`` output
    features: Tensor  #: (N, 256, H/4, W/4) last deconvolution output
    alg_confidences: Tensor | None  #: (N, J) in (0, 1), or None without that head
    vol_confidences: Tensor | None  #: (N, vol_confidences_dim) in (0, 1), or None


class PoseResNet(nn.Module):
    """Pose-ResNet: a torchvision ResNet body, three deconvolutions and a 1x1 heatmap layer.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50 and deeper).
        layers: residual blocks per stage, e.g. ``(3, 8, 36, 3)`` for ResNet-152 (see ``RESNET_SPECS``).
        num_joints: heatmap channels ``J``.
        alg_confidences: add the per-joint confidence head of the algebraic model.
        vol_confidences: add the per-feature-channel confidence head of the volumetric ``conf`` models.
        vol_confidences_dim: outputs of that head (the reference hard-codes 32, its feature channels).
        deconv_channels: output channels of each deconvolution (the reference: 3 x 256).
        deconv_kernels: their kernel sizes (4, 3 or 2; the reference: 3 x 4).
        final_conv_kernel: kernel of ``final_layer`` (1, or 3 with padding 1).
        style: ``"simple"`` (stride in the 3x3 conv of a bottleneck, torchvision's and the published
            models') or ``"caffe"`` (stride in its first 1x1 conv, the reference's ``Bottleneck_CAFFE``).

    Shape:
        ``(N, 3, H, W)`` -> :class:`PoseResNetOutput` with heatmaps and features at ``(H/4, W/4)``
        (``H/32 * 8`` exactly: 128 -> 32, 384 -> 96).

    Example:
        >>> net = pose_resnet18(num_joints=17, alg_confidences=True).eval()
        >>> out = net(torch.zeros(2, 3, 128, 128))
        >>> out.heatmaps.shape, out.features.shape, out.alg_confidences.shape
        (torch.Size([2, 17, 32, 32]), torch.Size([2, 256, 32, 32]), torch.Size([2, 17]))
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        num_joints: int = 17,
        *,
        alg_confidences: bool = False,
        vol_confidences: bool = False,
        vol_confidences_dim: int = 32,
        deconv_channels: Sequence[int] = (256, 256, 256),
        deconv_kernels: Sequence[int] = (4, 4, 4),
        final_conv_kernel: int = 1,
        style: str = "simple",
    ) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"PoseResNet: block must be one of {sorted(_BLOCKS)}, got {block!r}")
        if style not in ("simple", "caffe"):
            raise ValueError(f"PoseResNet: style must be 'simple' or 'caffe', got {style!r}")
        if len(deconv_channels) != len(deconv_kernels) or not deconv_channels:
            raise ValueError("PoseResNet: deconv_channels and deconv_kernels need the same (non-zero) length")
        if any(k not in _DECONV_PADDING for k in deconv_kernels):
            raise ValueError(f"PoseResNet: deconv kernels must be 2, 3 or 4, got {tuple(deconv_kernels)}")
        if final_conv_kernel not in (1, 3):
            raise ValueError(f"PoseResNet: final_conv_kernel must be 1 or 3, got {final_conv_kernel}")
        self.block, self.layers, self.num_joints, self.style = (
            block,
            tuple(int(n) for n in layers),
            num_joints,
            style,
        )
        self.deconv_channels, self.deconv_kernels = tuple(deconv_channels), tuple(deconv_kernels)

        body = tv_resnet.ResNet(
            _BLOCKS[block], list(self.layers), num_classes=1
        )  # weights=None: nothing loaded
        self.conv1, self.bn1, self.relu, self.maxpool = body.conv1, body.bn1, body.relu, body.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            body.layer1,
            body.layer2,
            body.layer3,
            body.layer4,
        )
        if style == "caffe" and block == "bottleneck":
            for stage in (self.layer2, self.layer3, self.layer4):
                first = stage[0]
                first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)
        c4 = 512 * _BLOCKS[block].expansion
        self.out_channels = c4
        # registration order = the reference's, so that state_dict() lists keys in its order
        if alg_confidences:
            self.alg_confidences = ConfidenceHead(c4, num_joints)
        if vol_confidences:
            self.vol_confidences = ConfidenceHead(c4, vol_confidences_dim)

        deconvs: list[nn.Module] = []
        inplanes = c4
        for planes, kernel in zip(self.deconv_channels, self.deconv_kernels):
            padding, output_padding = _DECONV_PADDING[kernel]
            deconvs += [
                nn.ConvTranspose2d(inplanes, planes, kernel, 2, padding, output_padding, bias=False),
                nn.BatchNorm2d(planes),
                nn.ReLU(inplace=True),
            ]
            inplanes = planes
        self.deconv_layers = nn.Sequential(*deconvs)
        self.final_layer = nn.Conv2d(inplanes, num_joints, final_conv_kernel, padding=final_conv_kernel // 2)
        self.feature_channels = inplanes

        # Xiao et al.'s initialisation of the new layers (the ResNet body keeps torchvision's)
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    @property
    def has_alg_confidences(self) -> bool:
        return hasattr(self, "alg_confidences")

    @property
    def has_vol_confidences(self) -> bool:
        return hasattr(self, "vol_confidences")

    def forward(self, x: Tensor) -> PoseResNetOutput:
        """``x (N, 3, H, W)`` normalised images -> :class:`PoseResNetOutput`."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        alg = self.alg_confidences(x) if self.has_alg_confidences else None
        vol = self.vol_confidences(x) if self.has_vol_confidences else None
        features = self.deconv_layers(x)
        return PoseResNetOutput(self.final_layer(features), features, alg, vol)


def feature_head(in_channels: int = 256, out_channels: int = 32) -> nn.Sequential:
    """The volumetric models' unprojection feature head: ``Sequential(Conv2d(in, out, 1) with bias)``.

    Register it as ``self.process_features`` of the volumetric model (beside ``self.backbone``): the
    reference's keys are ``process_features.0.{weight,bias}``. Input: :attr:`PoseResNetOutput.features`
    ``(N, 256, h, w)``; output ``(N, volume_features_dim, h, w)``.
    """
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1))


def pose_resnet(
    num_layers: int,
    num_joints: int = 17,
    *,
    alg_confidences: bool = False,
    vol_confidences: bool = False,
    pretrained: str | Path | None = None,
    **kwargs,
) -> PoseResNet:
    """Pose-ResNet of depth ``num_layers`` (18, 34, 50, 101, 152).

    Args:
        num_layers: ResNet depth (the reference's ``model.backbone.num_layers``).
        num_joints: heatmap channels.
        alg_confidences, vol_confidences: add those heads (see :class:`PoseResNet`).
        pretrained: a local pose-ResNet file (MSRA ``checkpoint.pth.tar``, learnable triangulation's
            ``pose_resnet_4.5_pixels_human36m.pth``...) loaded with :func:`load_pose_resnet_backbone`.
            Nothing is ever downloaded.
        **kwargs: other :class:`PoseResNet` arguments (``style``, ``deconv_channels``...).
    """
    if num_layers not in RESNET_SPECS:
        raise ValueError(f"pose_resnet: num_layers must be one of {sorted(RESNET_SPECS)}, got {num_layers}")
    block, layers = RESNET_SPECS[num_layers]
    model = PoseResNet(
        block, layers, num_joints, alg_confidences=alg_confidences, vol_confidences=vol_confidences, **kwargs
    )
    if pretrained is not None:
        load_pose_resnet_backbone(model, pretrained)
    return model


def pose_resnet18(num_joints: int = 17, **kwargs) -> PoseResNet:
    """Pose-ResNet-18 (BasicBlock, layer4 512 channels). See :func:`pose_resnet`."""
    return pose_resnet(18, num_joints, **kwargs)


def pose_resnet34(num_joints: int = 17, **kwargs) -> PoseResNet:
    """Pose-ResNet-34 (BasicBlock, layer4 512 channels). See :func:`pose_resnet`."""
    return pose_resnet(34, num_joints, **kwargs)


def pose_resnet50(num_joints: int = 17, **kwargs) -> PoseResNet:
    """Pose-ResNet-50 (Bottleneck, layer4 2048 channels). See :func:`pose_resnet`."""
    return pose_resnet(50, num_joints, **kwargs)


def pose_resnet101(num_joints: int = 17, **kwargs) -> PoseResNet:
    """Pose-ResNet-101 (Bottleneck). See :func:`pose_resnet`."""
    return pose_resnet(101, num_joints, **kwargs)


def pose_resnet152(num_joints: int = 17, **kwargs) -> PoseResNet:
    """Pose-ResNet-152 (Bottleneck), learnable triangulation's published backbone. See :func:`pose_resnet`."""
    return pose_resnet(152, num_joints, **kwargs)


# ----------------------------------------------------------------------------- checkpoint files
def _torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)`` on CPU; numpy scalars and dtypes (MSRA's ``perf`` entry) are
    allowed, nothing else is unpickled. Errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    safe = [
        np.dtype,
        np.ndarray,
        type(np.dtype(np.float64)),
        type(np.dtype(np.float32)),
        type(np.dtype(np.int64)),
    ]
    core = getattr(np, "_core", None) or np.core
    safe += [core.multiarray.scalar, core.multiarray._reconstruct]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: not a plain tensor checkpoint (it holds Python objects that "
            f"torch.load(weights_only=True) refuses to unpickle): {e}"
        ) from None


def _tensor_dict(obj: object, path: Path, what: str) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path}: expected {what} (a dict of tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(
            f"{path}: expected {what} (a dict of tensors); these entries are not tensors: {bad[:10]}"
        )
    return dict(obj)


class BackboneLoadReport(NamedTuple):
    """What :func:`load_pose_resnet_backbone` did (keys without the ``module.`` prefix)."""

    loaded: list[str]  #: copied as they are
    reinitialised: list[
        str
    ]  #: ``final_layer`` with another joint count: re-initialised, first filters copied
    skipped: list[str]  #: file keys not used, with the reason
    missing: list[str]  #: model keys the file did not provide (they keep their initialisation)


def load_pose_resnet_backbone(model_or_backbone: nn.Module, path: str | Path) -> BackboneLoadReport:
    """Load a pose-ResNet file into a :class:`PoseResNet` (or a model's ``.backbone``), leniently.

    The reference's rules (``pose_resnet.get_pose_net`` with ``init_weights``): take ``obj["state_dict"]``
    when the file has one (MSRA ``checkpoint.pth.tar``), else the file itself; remove ``"module."`` from
    every key (``str.replace``, anywhere in the key); copy a key when its name exists in the pose-ResNet
    and the shape matches. ``final_layer.weight``/``.bias`` with another joint count are re-initialised
    (Xavier uniform / zeros) and their first ``min(J_file, J_model)`` filters copied. Everything else is
    skipped and reported; model parameters the file lacks (the confidence heads, always) keep their
    initialisation. The file is read with ``torch.load(weights_only=True)``.

    Args:
        model_or_backbone: a :class:`PoseResNet`, or a model whose ``backbone`` is one.
        path: the checkpoint file.

    Returns:
        a :class:`BackboneLoadReport`; skipped keys are also logged.

    Raises:
        ValueError: naming the file, when it is not a dict of tensors or when not a single key fits
            (e.g. a whole-model checkpoint with ``backbone.`` keys: load those with the model's loader).
    """
    backbone = model_or_backbone
    if not isinstance(backbone, PoseResNet):
        backbone = getattr(model_or_backbone, "backbone", None)
    if not isinstance(backbone, PoseResNet):
        raise TypeError(
            f"load_pose_resnet_backbone: expected a PoseResNet or a model with a PoseResNet .backbone, "
            f"got {type(model_or_backbone).__name__}"
        )
    path = Path(path)
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    sd = _tensor_dict(obj, path, "a pose-ResNet state dict")
    own = backbone.state_dict()
    new: dict[str, Tensor] = {}
    loaded, reinit, skipped = [], [], []
    for key, value in sd.items():
        name = key.replace("module.", "")
        target = own.get(name)
        if target is not None and value.shape == target.shape:
            new[name] = value
            loaded.append(name)
        elif (
            target is not None
            and name in ("final_layer.weight", "final_layer.bias")
            and (value.shape[1:] == target.shape[1:])
        ):
            out = torch.zeros_like(target)
            if name.endswith("weight"):
                nn.init.xavier_uniform_(out)
            n = min(out.shape[0], value.shape[0])
            out[:n] = value[:n].to(out.dtype)
            new[name] = out
            reinit.append(name)
        else:
            why = (
                "not in the model"
                if target is None
                else f"shape {tuple(value.shape)} vs {tuple(target.shape)}"
            )
            skipped.append(f"{name} ({why})")
    if not new:
        raise ValueError(
            f"{path}: no key fits the pose-ResNet (expected names like 'conv1.weight', "
            f"'layer1.0.conv1.weight', 'final_layer.weight'; the file has e.g. {list(sd)[:3]}). "
            "A whole-model checkpoint ('backbone.*' keys) is loaded by the model's own loader, "
            "e.g. load_official_algebraic."
        )
    missing = sorted(set(own) - set(new))
    if reinit:
        logger.info("%s: re-initialised %s (other joint count), first filters copied", path, reinit)
    if skipped:
        logger.warning("%s: %d keys not loaded: %s", path, len(skipped), skipped)
    backbone.load_state_dict(new, strict=False)
    return BackboneLoadReport(loaded, reinit, skipped, missing)


def pose_resnet_config_from_state_dict(sd: Mapping[str, Tensor], prefix: str = "") -> dict:
    """:class:`PoseResNet` arguments inferred from a state dict's keys and shapes.

    Args:
        sd: state dict (already without ``module.``).
        prefix: the backbone's key prefix, e.g. ``"backbone."`` in a whole-model checkpoint.

    Returns:
        ``{"block", "layers", "num_joints", "alg_confidences", "vol_confidences", "vol_confidences_dim",
        "deconv_channels", "deconv_kernels", "final_conv_kernel", "num_layers"}``: Bottleneck when
        ``layer1.0.conv3`` exists, the block counts from the ``layerN.i`` indices, ``num_layers`` the
        matching depth (None for a non-standard count), the joints from ``final_layer``, the heads from
        their presence. ``style`` (simple or caffe) changes no shape and cannot be inferred.

    Raises:
        KeyError: without ``final_layer.weight`` or ``layer1.*`` keys (the strict load reports other gaps).
    """
    keys = [k[len(prefix) :] for k in sd if k.startswith(prefix)]
    if "final_layer.weight" not in keys or not any(k.startswith("layer1.") for k in keys):
        raise KeyError(f"no {prefix}final_layer.weight or {prefix}layer1.*: not a pose-ResNet state dict")
    block = "bottleneck" if "layer1.0.conv3.weight" in keys else "basic"
    layers = []
    for stage in range(1, 5):
        head = f"layer{stage}."
        idx = {int(k[len(head) :].split(".", 1)[0]) for k in keys if k.startswith(head)}
        layers.append(max(idx) + 1 if idx else 0)
    deconv = sorted(
        (int(k.split(".")[1]), sd[prefix + k].shape)
        for k in keys
        if k.startswith("deconv_layers.") and k.endswith(".weight") and sd[prefix + k].ndim == 4
    )
    final = sd[prefix + "final_layer.weight"]
    vol = prefix + "vol_confidences.head.4.weight"
    num_layers = next((d for d, spec in RESNET_SPECS.items() if spec == (block, tuple(layers))), None)
    return {
        "block": block,
        "layers": tuple(layers),
        "num_joints": int(final.shape[0]),
        "alg_confidences": "alg_confidences.head.4.weight" in keys,
        "vol_confidences": vol in sd,
        "vol_confidences_dim": int(sd[vol].shape[0]) if vol in sd else 32,
        "deconv_channels": tuple(int(s[1]) for _, s in deconv),
        "deconv_kernels": tuple(int(s[-1]) for _, s in deconv),
        "final_conv_kernel": int(final.shape[-1]),
        "num_layers": num_layers,
    }
