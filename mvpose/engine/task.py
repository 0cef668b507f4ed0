"""The multi-view training task: how a batch goes through a model and what the loss is.

``MultiViewTask`` knows the three model kinds (algebraic, volumetric, contextpose) and the losses
of their papers: the keypoint criterion on ``scale_keypoints_3d``-scaled mm, learnable
triangulation's volumetric cross-entropy, ContextPose's global-attention loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mvpose.engine.config import ExperimentConfig

__all__ = ["MultiViewTask", "batch_to_device"]


def batch_to_device(batch: Mapping, device: torch.device) -> dict:
    """Tensors of a collated batch moved to ``device`` (non-blocking); the rest as is."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


class MultiViewTask:
    """Forward and loss of a multi-view model on a batch of the dataset contract (docs/datasets.md)."""

    def __init__(self, cfg: ExperimentConfig):
        from mvpose.models.losses import (
            KeypointsMAELoss,
            KeypointsMSELoss,
            KeypointsMSESmoothLoss,
            VolumetricCELoss,
        )

        self.cfg = cfg
        c = cfg.loss
        self.criterion = {
            "mae": KeypointsMAELoss(),
            "mse": KeypointsMSELoss(),
            "mse_smooth": KeypointsMSESmoothLoss(c.mse_smooth_threshold),
        }[c.criterion]
        self.volumetric_ce = VolumetricCELoss()

    def root(self, batch: Mapping) -> Tensor:
        """Cuboid centres ``(B, 3)`` mm: the batch's ``root_3d`` or the GT root joint(s)."""
        if self.cfg.model.root_source == "gt":
            return batch["keypoints_3d"][:, self.cfg.eval.root_joint]
        return batch["root_3d"]

    def forward(self, model: nn.Module, batch: Mapping) -> dict:
        """Run ``model`` (possibly DDP-wrapped) on a batch already on its device."""
        from mvpose.data.collate import rig_from_batch

        images = batch["images"]
        P = rig_from_batch(batch).projection_matrices().to(device=images.device, dtype=torch.float32)
        view_mask = batch.get("view_mask")
        kind = self.cfg.model.kind
        if kind == "algebraic":
            return model(images, P, view_mask=view_mask)
        root = None if self.cfg.model.root_source == "algebraic" else self.root(batch).to(images.device)
        return model(images, P, root, view_mask=view_mask)

    def loss(self, out: Mapping, batch: Mapping, step: int) -> tuple[Tensor, dict[str, float]]:
        """Total loss and its components (floats, for logging)."""
        c = self.cfg.loss
        gt = batch["keypoints_3d"]
        pred = out["keypoints_3d"]
        valid = batch.get("keypoints_3d_valid")
        if valid is None:
            valid = torch.ones(gt.shape[:-1], dtype=torch.bool, device=gt.device)
        valid = valid & torch.isfinite(gt).all(-1)
        s = c.scale_keypoints_3d
        loss = self.criterion(pred * s, gt.to(pred.dtype) * s, valid.to(pred.dtype)[..., None])
        parts = {"keypoints": float(loss.detach())}
        if c.volumetric_ce_weight > 0 and "volumes" in out:
            ce = self.volumetric_ce(out["coord_volumes"], out["volumes"], gt, valid.to(pred.dtype)[..., None])
            loss = loss + c.volumetric_ce_weight * ce
            parts["volumetric_ce"] = float(ce.detach())
        if c.global_attention_weight > 0 and "atten_global" in out and self._attention_on(step):
            from mvpose.models.context import global_attention_loss, global_attention_target

            m = self.cfg.model
            target = global_attention_target(
                gt.to(pred.dtype),
                out["base_points"].to(pred.dtype),
                m.cuboid_side,
                m.volume_size,
                context_size=round(out["atten_global"].shape[-1] ** (1 / 3)),
            )
            ga = global_attention_loss(out["atten_global"], target)
            loss = loss + c.global_attention_weight * ga
            parts["global_attention"] = float(ga.detach())
        parts["total"] = float(loss.detach())
        return loss, parts

    def _attention_on(self, step: int) -> bool:
        c = self.cfg.loss
        return step >= c.attention_loss_start and (
            c.attention_loss_end is None or step < c.attention_loss_end
        )
