"""Differentiable soft-argmax (integral regression) over 2D heatmaps and over 3D world-coordinate grids.

Conventions (those of learnable triangulation, Iskakov et al. 2019, which its weights were trained with):

* 2D: the maps are first multiplied by ``multiplier`` (100 in the published configs), then turned into
  probabilities by a softmax over all ``H * W`` cells (or, with ``softmax=False``, by a ReLU, the
  expectation then being divided by the mass). Coordinates are ``(x, y) = (sum p * column, sum p * row)``
  in **cell indices**: cell centres at integers, ``0 .. W-1`` and ``0 .. H-1``. The learnable-triangulation
  models scale them to image pixels by ``image_size / heatmap_size`` with no half-cell offset.
* 3D: the volumes are multiplied by ``multiplier``, softmaxed over all ``D * H * W`` voxels (or ReLU'd,
  and then **not** renormalised, as the reference does), and the expectation is taken over a grid of
  world coordinates ``(*, D, H, W, 3)`` (mm), so the result is in world mm whatever the grid's spacing,
  origin or rotation.

kornia's ``spatial_softmax2d`` + ``spatial_expectation2d(normalized_coordinates=False)`` compute the same
2D quantity, but with ``x / temperature`` instead of ``x * multiplier`` and another summation order (so
agreement to float32 rounding, not bit for bit), with 4-D inputs only and without the ReLU variant; the
few lines below keep the reference's exact arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["soft_argmax_2d", "soft_argmax_3d"]


def soft_argmax_2d(
    heatmaps: Tensor, multiplier: float = 100.0, softmax: bool = True
) -> tuple[Tensor, Tensor]:
    """Soft-argmax of heatmaps: expected ``(x, y)`` cell coordinates and the probability maps.

    Args:
        heatmaps: ``(*, J, H, W)`` raw heatmaps (any leading dimensions).
        multiplier: factor applied before the softmax (inverse temperature); learnable triangulation's
            ``heatmap_multiplier`` (100 in its configs).
        softmax: softmax over the ``H * W`` cells (default); ``False``: ReLU, and the expectation is
            normalised by the mass of each map (NaN for an all-zero map).

    Returns:
        ``coords (*, J, 2)``: ``(x, y)`` in heatmap cell indices (cell centres at integers), same dtype;
        ``probabilities (*, J, H, W)``: the softmax maps (``softmax=False``: ``relu(multiplier * heatmaps)``,
        not normalised, as the reference returns them).

    Example:
        >>> h = torch.full((1, 4, 6), -1.0); h[0, 3, 2] = 1.0
        >>> xy, p = soft_argmax_2d(h)
        >>> xy
        tensor([[2., 3.]])
    """
    if heatmaps.ndim < 3:
        raise ValueError(
            f"soft_argmax_2d: heatmaps must have shape (*, J, H, W), got {tuple(heatmaps.shape)}"
        )
    H, W = heatmaps.shape[-2:]
    flat = (heatmaps * multiplier).flatten(-2)
    p = (F.softmax(flat, dim=-1) if softmax else F.relu(flat)).unflatten(-1, (H, W))
    mass_x, mass_y = p.sum(-2), p.sum(-1)  # (*, J, W), (*, J, H)
    x = (mass_x * torch.arange(W, dtype=p.dtype, device=p.device)).sum(-1)
    y = (mass_y * torch.arange(H, dtype=p.dtype, device=p.device)).sum(-1)
    if not softmax:
        x, y = x / mass_x.sum(-1), y / mass_y.sum(-1)
    return torch.stack([x, y], dim=-1), p


def soft_argmax_3d(
    volumes: Tensor, coord_volumes: Tensor, multiplier: float = 1.0, softmax: bool = True
) -> tuple[Tensor, Tensor]:
    """Soft-argmax of volumes over a grid of world coordinates.

    Args:
        volumes: ``(*, J, D, H, W)`` raw volumes (e.g. the V2V output).
        coord_volumes: ``(*, D, H, W, 3)`` world coordinates (mm) of every voxel; its leading
            dimensions broadcast with those of ``volumes``. Volume axes ``D, H, W`` are the grid's
            axes, whatever world directions they point to (learnable triangulation: world x, y, z).
        multiplier: factor applied before the softmax (the reference's ``volume_multiplier``, 1.0).
        softmax: softmax over the ``D * H * W`` voxels (default); ``False``: ReLU and **no**
            renormalisation (the reference's behaviour): pass volumes that already sum to one.

    Returns:
        ``coords (*, J, 3)`` world mm (``sum p * coord``); ``probabilities (*, J, D, H, W)``.

    Example:
        >>> g = torch.stack(torch.meshgrid(*[torch.linspace(-100.0, 100.0, 5)] * 3, indexing="ij"), -1)
        >>> v = torch.full((1, 5, 5, 5), -50.0); v[0, 4, 2, 1] = 50.0
        >>> soft_argmax_3d(v, g)[0]
        tensor([[100.,   0., -50.]])
    """
    if volumes.ndim < 4:
        raise ValueError(
            f"soft_argmax_3d: volumes must have shape (*, J, D, H, W), got {tuple(volumes.shape)}"
        )
    grid = volumes.shape[-3:]
    if coord_volumes.ndim < 4 or coord_volumes.shape[-4:] != (*grid, 3):
        raise ValueError(
            f"soft_argmax_3d: coord_volumes must have shape (*, {grid[0]}, {grid[1]}, {grid[2]}, 3) to match "
            f"volumes {tuple(volumes.shape)}, got {tuple(coord_volumes.shape)}"
        )
    flat = (volumes * multiplier).flatten(-3)
    p = F.softmax(flat, dim=-1) if softmax else F.relu(flat)
    coords = p @ coord_volumes.flatten(-4, -2).to(p.dtype)  # (*, J, N) @ (*, N, 3)
    return coords, p.unflatten(-1, grid)
