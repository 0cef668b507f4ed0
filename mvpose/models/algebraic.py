"""Algebraic triangulation (Iskakov et al., "Learnable Triangulation of Human Pose", ICCV 2019).

Per view, a pose-ResNet gives heatmaps and (optionally) per-joint confidences; a soft-argmax turns
the heatmaps into 2D joints; a confidence-weighted DLT over the views gives the 3D joints::

    images (B, V, 3, H, W) --pose-ResNet--> heatmaps (B, V, J, h, w), raw confidences (B, V, J)
    soft-argmax(heatmap_multiplier * heatmaps) -> (x, y) cells -> * (W / w, H / h) -> keypoints_2d px
    confidences = raw / sum_views(raw) + 1e-5
    weighted DLT (float64) with the input-frame projection matrices -> keypoints_3d (B, J, 3) mm

Conventions kept from the reference so that its weights apply unchanged: heatmap cell ``i`` maps to
image pixel ``4 i`` (no half-cell offset), the normalisation adds ``1e-5`` after dividing, and the
images are what its data pipeline makes (BGR channel order with the RGB ImageNet statistics:
``mvpose.data.transforms.normalize_image(..., order="bgr", lt_bgr_quirk=True)``). Differences: the DLT
runs in float64 (:func:`mvpose.geometry.triangulate_dlt`; the reference's float32 SVD is 0.1 mm away),
and missing views can be masked out (``view_mask``).

``triangulation="ransac"`` is the paper's RANSAC baseline: 2D joints are the heatmaps' argmax cells
(scaled to pixels the same way, as the reference's ``RANSACTriangulationNet`` does), triangulated by
:func:`mvpose.geometry.triangulate_robust` (threshold 15 px, the reference's
``reprojection_error_epsilon``). Instead of the reference's 10 random view pairs and SciPy Huber
refinement, that function scores every subset of views deterministically and refines the winner by
Gauss-Newton on its inliers. Not differentiable through the 2D joints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from mvpose.geometry.softargmax import soft_argmax_2d
from mvpose.geometry.triangulation import triangulate_dlt, triangulate_robust
from mvpose.models._checkpoint import load_state_dict_strict
from mvpose.models.backbone import (
    PoseResNet,
    _tensor_dict,
    _torch_load,
    load_pose_resnet_backbone,
    pose_resnet,
    pose_resnet_config_from_state_dict,
)

__all__ = ["AlgebraicTriangulationNet", "AlgebraicOutput", "load_official_algebraic"]

TRIANGULATION_MODES = ("dlt", "ransac")


class AlgebraicOutput(dict):
    """Outputs of :class:`AlgebraicTriangulationNet`: a dict (the multi-view models' shared forward
    contract) whose keys also read as attributes. The first four are the reference's return tuple:

    * ``keypoints_3d (B, J, 3)`` float64 mm, world frame; NaN where fewer than two usable views;
    * ``keypoints_2d (B, V, J, 2)`` px of the input images; NaN for missing views;
    * ``heatmaps (B, V, J, h, w)`` soft-argmax probabilities (the reference returns these);
    * ``confidences (B, V, J)`` DLT weights: raw / sum over present views + 1e-5; 0 for missing views;
    * ``heatmaps_raw (B, V, J, h, w)`` backbone output before the multiplier and softmax;
    * ``keypoints_2d_heatmap (B, V, J, 2)`` (x, y) in heatmap cells;
    * ``confidences_raw (B, V, J)`` sigmoid outputs of the confidence head (ones without it);
    * ``inliers (B, V, J)`` views used by ``ransac`` (None for ``dlt``).
    """

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class AlgebraicTriangulationNet(nn.Module):
    """Learnable algebraic triangulation: pose-ResNet heatmaps, soft-argmax, confidence-weighted DLT.

    Args:
        num_layers: backbone depth (18, 34, 50, 101, 152; published: 152).
        num_joints: joints ``J`` (published: 17, Human3.6M in the reference's order).
        use_confidences: learn per-view, per-joint confidences (the ``alg_confidences`` head); without
            it every view weighs the same (the reference's ``alg_no_conf``).
        heatmap_multiplier: inverse softmax temperature (100).
        heatmap_softmax: softmax (True) or ReLU-normalised heatmaps in the soft-argmax.
        triangulation: ``"dlt"`` (the model) or ``"ransac"`` (the RANSAC baseline, see the module doc).
        ransac_threshold_px: inlier threshold of ``"ransac"`` in input-image pixels.
        image_shape: ``(H, W)`` the model expects (the reference's ``image_shape``); only checked.
        backbone: a ready :class:`PoseResNet` instead of building one from ``num_layers`` and
            ``num_joints`` (it must have the ``alg_confidences`` head iff ``use_confidences``).
        pretrained_backbone: a local pose-ResNet file for the backbone (:func:`load_pose_resnet_backbone`).

    Shape:
        ``images (B, V, 3, H, W)``, ``proj_matrices (B, V, 3, 4)`` world mm -> input-image px (e.g.
        ``rig_from_batch(batch).projection_matrices()``), ``root`` (ignored: no cuboid), keyword
        ``view_mask (B, V)`` bool or None -> :class:`AlgebraicOutput` (a dict).

    Example:
        >>> net = AlgebraicTriangulationNet(18, 17).eval()
        >>> out = net(torch.zeros(1, 4, 3, 128, 128), P)  # doctest: +SKIP
        >>> out["keypoints_3d"].shape  # doctest: +SKIP
        torch.Size([1, 17, 3])
    """

    def __init__(
        self,
        num_layers: int = 152,
        num_joints: int = 17,
        *,
        use_confidences: bool = True,
        heatmap_multiplier: float = 100.0,
        heatmap_softmax: bool = True,
        triangulation: str = "dlt",
        ransac_threshold_px: float = 15.0,
        image_shape: Sequence[int] | None = None,
        backbone: PoseResNet | None = None,
        pretrained_backbone: str | Path | None = None,
    ) -> None:
        super().__init__()
        if triangulation not in TRIANGULATION_MODES:
            raise ValueError(f"triangulation must be one of {TRIANGULATION_MODES}, got {triangulation!r}")
        if backbone is None:
            backbone = pose_resnet(num_layers, num_joints, alg_confidences=use_confidences)
        elif backbone.has_alg_confidences != use_confidences:
            raise ValueError(
                f"use_confidences={use_confidences} but the backbone "
                f"{'has' if backbone.has_alg_confidences else 'lacks'} the alg_confidences head"
            )
        self.backbone = backbone
        if pretrained_backbone is not None:
            load_pose_resnet_backbone(self.backbone, pretrained_backbone)
        self.use_confidences = use_confidences
        self.heatmap_multiplier = float(heatmap_multiplier)
        self.heatmap_softmax = bool(heatmap_softmax)
        self.triangulation = triangulation
        self.ransac_threshold_px = float(ransac_threshold_px)
        self.image_shape = tuple(int(s) for s in image_shape) if image_shape is not None else None

    @property
    def num_joints(self) -> int:
        return self.backbone.num_joints

    def forward(
        self,
        images: Tensor,
        proj_matrices: Tensor,
        root: Tensor | None = None,
        *,
        view_mask: Tensor | None = None,
    ) -> AlgebraicOutput:
        """Triangulate the joints of ``B`` multi-view samples.

        Args:
            images: ``(B, V, 3, H, W)`` normalised crops (see the module doc for the channel order).
            proj_matrices: ``(B, V, 3, 4)`` projection matrices into the pixels of ``images``.
            root: accepted for the shared multi-view forward contract and ignored (the algebraic
                model has no cuboid; it is the one that *provides* the root to volumetric models).
            view_mask: ``(B, V)`` bool, False for a missing view: the backbone skips it, its weights are 0
                and the confidences are normalised over the present views (as if it had been dropped).

        Returns:
            :class:`AlgebraicOutput`.
        """
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must have shape (B, V, 3, H, W), got {tuple(images.shape)}")
        B, V, _, H, W = images.shape
        if proj_matrices.shape != (B, V, 3, 4):
            raise ValueError(
                f"proj_matrices must have shape ({B}, {V}, 3, 4), got {tuple(proj_matrices.shape)}"
            )
        if self.image_shape is not None and (H, W) != self.image_shape:
            raise ValueError(f"images are {H}x{W}, the model expects image_shape {self.image_shape}")

        flat = images.flatten(0, 1)
        present = None
        if view_mask is not None:
            if view_mask.shape != (B, V):
                raise ValueError(f"view_mask must have shape ({B}, {V}), got {tuple(view_mask.shape)}")
            view_mask = view_mask.to(device=images.device, dtype=torch.bool)
            if not bool(view_mask.all()):
                present = view_mask.flatten().nonzero().squeeze(1)
                flat = flat.index_select(0, present)
        out = self.backbone(flat)
        heatmaps, conf = out.heatmaps, out.alg_confidences
        if conf is None:
            conf = heatmaps.new_ones(heatmaps.shape[:2])
        if present is not None:  # scatter back; missing views: zero maps, zero confidence
            heatmaps = heatmaps.new_zeros(B * V, *heatmaps.shape[1:]).index_copy(0, present, heatmaps)
            conf = conf.new_zeros(B * V, conf.shape[1]).index_copy(0, present, conf)
        heatmaps = heatmaps.unflatten(0, (B, V))
        conf_raw = conf.unflatten(0, (B, V))
        h, w = heatmaps.shape[-2:]

        kp_hm, probs = soft_argmax_2d(heatmaps, self.heatmap_multiplier, self.heatmap_softmax)
        if self.triangulation == "ransac":  # the reference's RANSAC baseline: argmax cells
            cell = heatmaps.flatten(-2).argmax(-1)
            kp_hm = torch.stack([cell % w, torch.div(cell, w, rounding_mode="floor")], -1).to(heatmaps.dtype)
        keypoints_2d = kp_hm * kp_hm.new_tensor([W / w, H / h])

        confidences = conf_raw / conf_raw.sum(1, keepdim=True) + 1e-5  # the reference's normalisation
        if present is not None:
            confidences = torch.where(view_mask[..., None], confidences, 0.0)
            keypoints_2d = keypoints_2d.masked_fill(~view_mask[..., None, None], float("nan"))

        inliers = None
        if self.triangulation == "dlt":
            keypoints_3d = triangulate_dlt(keypoints_2d, proj_matrices, confidences)
        else:
            keypoints_3d, inliers = triangulate_robust(
                keypoints_2d.detach(),
                proj_matrices,
                confidences.detach(),
                threshold_px=self.ransac_threshold_px,
            )
        return AlgebraicOutput(
            keypoints_3d=keypoints_3d,
            keypoints_2d=keypoints_2d,
            heatmaps=probs,
            confidences=confidences,
            heatmaps_raw=heatmaps,
            keypoints_2d_heatmap=kp_hm,
            confidences_raw=conf_raw,
            inliers=inliers,
        )


# ----------------------------------------------------------------------------- official checkpoints
_OVERRIDES = {
    "num_layers",
    "num_joints",
    "use_confidences",
    "heatmap_multiplier",
    "heatmap_softmax",
    "image_shape",
    "style",
    "triangulation",
    "ransac_threshold_px",
}


def load_official_algebraic(path: str | Path, **overrides) -> AlgebraicTriangulationNet:
    """An :class:`AlgebraicTriangulationNet` from a learnable-triangulation checkpoint, in eval mode.

    The file is what the reference's ``train.py`` saves: a bare ``model.state_dict()``, with ``module.``
    in every key when trained under DistributedDataParallel (the published weights). As the reference
    does, ``"module."`` is removed wherever it occurs in a key, and the weights are loaded strictly.
    The file is read with ``torch.load(weights_only=True)``; a ``{"state_dict": ...}`` wrapper is also
    accepted (the reference would fail on it).

    Inferred from the keys and shapes: the ResNet depth (BasicBlock or Bottleneck from
    ``layer1.0.conv3``, block counts from the ``layerN.i`` indices), ``num_joints`` (``final_layer``),
    ``use_confidences`` (presence of ``backbone.alg_confidences``), the deconvolution channels and
    kernels and the final kernel.

    Args:
        path: the checkpoint (``weights.pth``).
        **overrides: the reference's config names: ``heatmap_multiplier`` (100.0), ``heatmap_softmax``
            (True), ``image_shape`` (checked against the input when given), ``style`` ("simple"; "caffe"
            changes no shape), and ``use_confidences``, ``num_layers``, ``num_joints``, which must agree
            with the file (else the strict load fails). mvpose's own: ``triangulation`` ("dlt" or
            "ransac"), ``ransac_threshold_px``.

    Raises:
        TypeError: for an unknown override.
        ValueError: naming the file, when it is not a state dict of this model, listing every missing,
            unexpected and mis-shaped key.
    """
    bad = sorted(set(overrides) - _OVERRIDES)
    if bad:
        raise TypeError(f"load_official_algebraic: unknown override(s) {bad}; accepted: {sorted(_OVERRIDES)}")
    path = Path(path)
    obj = _torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    sd = {k.replace("module.", ""): v for k, v in _tensor_dict(obj, path, "a model state dict").items()}
    try:
        cfg = pose_resnet_config_from_state_dict(sd, "backbone.")
    except KeyError as e:
        hint = ""
        if "final_layer.weight" in sd and "conv1.weight" in sd:
            hint = " It looks like a backbone-only pose-ResNet file: use load_pose_resnet_backbone."
        raise ValueError(
            f"{path}: not a learnable-triangulation algebraic checkpoint ({e.args[0]}); keys start with "
            f"{sorted({k.split('.')[0] for k in sd})}.{hint}"
        ) from None

    num_joints = overrides.get("num_joints", cfg["num_joints"])
    use_conf = overrides.get("use_confidences", cfg["alg_confidences"])
    style = overrides.get("style", "simple")
    if "num_layers" in overrides:
        backbone = pose_resnet(overrides["num_layers"], num_joints, alg_confidences=use_conf, style=style)
    else:
        backbone = PoseResNet(
            cfg["block"],
            cfg["layers"],
            num_joints,
            alg_confidences=use_conf,
            deconv_channels=cfg["deconv_channels"] or (256, 256, 256),
            deconv_kernels=cfg["deconv_kernels"] or (4, 4, 4),
            final_conv_kernel=cfg["final_conv_kernel"],
            style=style,
        )
    model = AlgebraicTriangulationNet(
        use_confidences=use_conf,
        heatmap_multiplier=overrides.get("heatmap_multiplier", 100.0),
        heatmap_softmax=overrides.get("heatmap_softmax", True),
        triangulation=overrides.get("triangulation", "dlt"),
        ransac_threshold_px=overrides.get("ransac_threshold_px", 15.0),
        image_shape=overrides.get("image_shape"),
        backbone=backbone,
    )
    load_state_dict_strict(
        model,
        sd,
        path,
        f"AlgebraicTriangulationNet(backbone={backbone.block} {list(backbone.layers)}, "
        f"num_joints={num_joints}, use_confidences={use_conf})",
    )
    return model.eval()
