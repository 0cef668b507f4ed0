"""Shared builders for geometry tests: random but realistic rigs and points (float64, mm, px)."""

from __future__ import annotations

import math

import torch

from mvpose.geometry import CameraRig


def look_at(
    center: torch.Tensor, target: torch.Tensor, up=(0.0, 0.0, 1.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera ``R, t`` of a camera at ``center`` looking at ``target`` (Z-up world)."""
    z = torch.nn.functional.normalize(target - center, dim=-1)
    x = torch.nn.functional.normalize(
        torch.linalg.cross(z, torch.tensor(up, dtype=z.dtype).expand_as(z)), dim=-1
    )
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z], dim=-2)
    return R, -(R @ center[..., None])[..., 0]


def ring_rig(
    num_views: int = 4,
    radius: float = 4000.0,
    height: float = 1800.0,
    distortion: float = 1.0,
    seed: int = 0,
    model: str = "opencv",
) -> CameraRig:
    """Cameras on a jittered ring looking at (0, 0, 1000) mm, 1920x1080, scaled OpenCV-like distortion."""
    g = torch.Generator().manual_seed(seed)
    ang = torch.arange(num_views, dtype=torch.float64) * 2 * math.pi / num_views
    ang = ang + 0.2 * torch.rand(num_views, generator=g, dtype=torch.float64)
    centers = torch.stack(
        [radius * torch.cos(ang), radius * torch.sin(ang), height + 300 * torch.rand(num_views, generator=g)],
        -1,
    )
    target = torch.tensor([0.0, 0.0, 1000.0], dtype=torch.float64) + 100 * torch.randn(
        num_views, 3, generator=g, dtype=torch.float64
    )
    R, t = look_at(centers, target)
    f = 1100 + 200 * torch.rand(num_views, generator=g, dtype=torch.float64)
    K = torch.zeros(num_views, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = f, f * (1 + 0.01 * torch.rand(num_views, generator=g, dtype=torch.float64))
    K[:, 0, 2] = 960 + 20 * torch.randn(num_views, generator=g, dtype=torch.float64)
    K[:, 1, 2] = 540 + 20 * torch.randn(num_views, generator=g, dtype=torch.float64)
    K[:, 2, 2] = 1.0
    base = torch.tensor([-0.15, 0.08, 0.002, -0.001, -0.01], dtype=torch.float64)
    dist = distortion * base * (1 + 0.2 * torch.randn(num_views, 5, generator=g, dtype=torch.float64))
    size = torch.tensor([[1920, 1080]] * num_views)
    return CameraRig(K=K, R=R, t=t, dist=dist, image_size=size, distortion_model=model)


def random_points(*shape: int, seed: int = 1) -> torch.Tensor:
    """World points ``(*shape, 3)`` mm in a person-sized volume around (0, 0, 1000)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([400.0, 400.0, 700.0], dtype=torch.float64)
    return torch.randn(*shape, 3, generator=g, dtype=torch.float64) * scale + torch.tensor([0.0, 0.0, 1000.0])
