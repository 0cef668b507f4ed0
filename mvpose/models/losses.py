"""Training losses of learnable triangulation (Iskakov et al., ICCV 2019), vectorised.

Keypoints are ``(*, J, D)`` (any leading dimensions, ``D = 3`` for 3D). A validity mask
``(*, J)`` or ``(*, J, 1)`` (bool or 0/1 float) selects the joints with ground truth; masked joints
contribute nothing, even when their ground truth is NaN. As in the reference, the keypoint losses
divide by ``D * max(1, number of valid joints)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["KeypointsMAELoss", "KeypointsMSELoss", "KeypointsMSESmoothLoss", "VolumetricCELoss"]


def _validity(validity: Tensor | None, pred: Tensor) -> Tensor:
    """Validity as ``(*, J, 1)`` in ``pred``'s dtype (all ones when None)."""
    if validity is None:
        return pred.new_ones(*pred.shape[:-1], 1)
    v = torch.as_tensor(validity, device=pred.device)
    if v.shape == pred.shape[:-1]:
        v = v[..., None]
    if v.shape != (*pred.shape[:-1], 1):
        want = tuple(pred.shape[:-1])
        raise ValueError(f"keypoints validity must be {want} or {(*want, 1)}, got {tuple(v.shape)}")
    return v.to(pred.dtype)


def _masked(values: Tensor, validity: Tensor) -> Tensor:
    return torch.where(validity > 0, values * validity, torch.zeros_like(values))


def _gt(keypoints_gt: Tensor, keypoints_pred: Tensor, validity: Tensor) -> Tensor:
    """Ground truth with the masked joints replaced by the (detached) prediction, so that a NaN there
    reaches neither the loss nor the gradient."""
    gt = keypoints_gt.to(keypoints_pred)
    return torch.where(validity > 0, gt, keypoints_pred.detach())


def _normaliser(validity: Tensor, dim: int) -> Tensor:
    return dim * validity.sum().clamp_min(1.0)


class KeypointsMAELoss(nn.Module):
    """``sum |gt - pred| * valid / (D * max(1, sum valid))``: mean absolute coordinate error."""

    def forward(self, keypoints_pred: Tensor, keypoints_gt: Tensor, validity: Tensor | None = None) -> Tensor:
        v = _validity(validity, keypoints_pred)
        diff = _masked((_gt(keypoints_gt, keypoints_pred, v) - keypoints_pred).abs(), v)
        return diff.sum() / _normaliser(v, keypoints_pred.shape[-1])


class KeypointsMSELoss(nn.Module):
    """``sum (gt - pred)^2 * valid / (D * max(1, sum valid))``."""

    def forward(self, keypoints_pred: Tensor, keypoints_gt: Tensor, validity: Tensor | None = None) -> Tensor:
        v = _validity(validity, keypoints_pred)
        diff = _masked((_gt(keypoints_gt, keypoints_pred, v) - keypoints_pred) ** 2, v)
        return diff.sum() / _normaliser(v, keypoints_pred.shape[-1])


class KeypointsMSESmoothLoss(nn.Module):
    """Squared error per coordinate, softened above ``threshold``:
    ``e = (gt - pred)^2`` if ``e <= threshold`` else ``e**alpha * threshold**(1 - alpha)`` (continuous
    at the threshold); ``sum e * valid / (D * max(1, sum valid))``. Reference: threshold 400
    (20^2, in the units of the keypoints), alpha 0.1.
    """

    def __init__(self, threshold: float = 400.0, alpha: float = 0.1):
        super().__init__()
        self.threshold = float(threshold)
        self.alpha = float(alpha)

    def forward(self, keypoints_pred: Tensor, keypoints_gt: Tensor, validity: Tensor | None = None) -> Tensor:
        v = _validity(validity, keypoints_pred)
        diff = _masked((_gt(keypoints_gt, keypoints_pred, v) - keypoints_pred) ** 2, v)
        big = diff > self.threshold
        # pow on values clamped to >= threshold keeps the gradient finite on the other branch
        soft = diff.clamp_min(self.threshold) ** self.alpha * self.threshold ** (1.0 - self.alpha)
        diff = torch.where(big, soft, diff)
        return diff.sum() / _normaliser(v, keypoints_pred.shape[-1])


class VolumetricCELoss(nn.Module):
    """Cross-entropy of the soft-argmax weights at the voxel nearest to the ground truth.

    For every ``(b, j)``: the voxel of ``coord_volumes[b]`` nearest (Euclidean; first on ties)
    to ``keypoints_gt[b, j]``, loss ``-log(volumes[b, j, voxel] + eps)`` times the validity, summed
    and divided by ``B * J`` (every joint counts in the mean, valid or not, as the reference).

    Args (forward):
        coord_volumes: ``(B, X, Y, Z, 3)`` mm.
        volumes: ``(B, J, X, Y, Z)`` probabilities (the model's ``volumes``).
        keypoints_gt: ``(B, J, 3)`` mm.
        validity: ``(B, J)`` or ``(B, J, 1)`` or None.
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = float(eps)

    def forward(
        self, coord_volumes: Tensor, volumes: Tensor, keypoints_gt: Tensor, validity: Tensor | None = None
    ) -> Tensor:
        B, J = volumes.shape[:2]
        probs = volumes.reshape(B, J, -1)
        with torch.no_grad():
            coords = coord_volumes.reshape(B, 1, -1, 3)
            gt = keypoints_gt.to(coords)[:, :, None, :]
            gt = torch.nan_to_num(gt)  # a NaN ground truth (masked joint) still gets some index
            nearest = ((coords - gt) ** 2).sum(-1).argmin(-1)  # (B, J)
        picked = probs.gather(-1, nearest[..., None])  # (B, J, 1)
        v = _validity(validity, keypoints_gt)[..., :1].to(probs)
        loss = _masked(-torch.log(picked + self.eps), v)
        return loss.sum() / (B * J)
