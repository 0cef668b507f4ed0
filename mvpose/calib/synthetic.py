"""Synthetic studio rigs: cameras on a ring looking at a common point (Z-up world, mm).

``ring_rig()`` with its defaults is the rig of ``calib/example_studio.toml``; the synthetic capture
studio builds its cameras with it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from mvpose.geometry.camera import CameraRig

__all__ = ["ring_rig", "look_at"]


def look_at(centre: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)):
    """World-to-camera ``(R (3, 3), t (3,))`` of an OpenCV camera at ``centre`` looking at ``target``.

    The camera's x axis points right, y down (towards ``-up`` in the image), z forward; units are
    those of ``centre`` (mm in mvpose). ``up`` must not be parallel to the viewing direction.
    """
    C = np.asarray(centre, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - C
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    n = np.linalg.norm(x)
    if n < 1e-9:
        raise ValueError(f"look_at: up {tuple(up)} is parallel to the viewing direction")
    x /= n
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ C


def ring_rig(
    num_cameras: int = 8,
    radius_mm: float = 4000.0,
    height_mm: float = 2000.0,
    target_mm: Sequence[float] = (0.0, 0.0, 1000.0),
    image_size: tuple[int, int] = (1920, 1080),
    focal_px: float = 1400.0,
    dist: Sequence[float] = (-0.08, 0.03, 0.0, 0.0, 0.0),
    start_angle_deg: float = 0.0,
    names: Sequence[str] | None = None,
) -> CameraRig:
    """``num_cameras`` identical cameras evenly spaced on a horizontal ring, all aimed at ``target_mm``.

    Camera ``i`` sits at ``(r cos a_i, r sin a_i, height_mm)`` with
    ``a_i = start_angle_deg + 360 i / num_cameras`` (counter-clockwise seen from above, Z up), and
    looks at ``target_mm``. Intrinsics: square pixels of focal ``focal_px``, principal point at the
    image centre ``((w - 1) / 2, (h - 1) / 2)``, OpenCV ``dist = [k1, k2, p1, p2, k3]`` (mild barrel
    by default). Deterministic: no randomness.

    Returns:
        a float64 :class:`CameraRig` named ``cam_01`` ... with ``image_size`` set.

    Example:
        >>> rig = ring_rig()
        >>> rig.K.shape, rig.names[0]
        (torch.Size([8, 3, 3]), 'cam_01')
    """
    if num_cameras < 1:
        raise ValueError(f"ring_rig: num_cameras must be >= 1, got {num_cameras}")
    w, h = (int(v) for v in image_size)
    K = np.array([[focal_px, 0.0, (w - 1) / 2], [0.0, focal_px, (h - 1) / 2], [0.0, 0.0, 1.0]])
    Rs, ts = [], []
    for i in range(num_cameras):
        a = math.radians(start_angle_deg + 360.0 * i / num_cameras)
        R, t = look_at((radius_mm * math.cos(a), radius_mm * math.sin(a), height_mm), target_mm)
        Rs.append(R)
        ts.append(t)
    if names is None:
        width = max(2, len(str(num_cameras)))
        names = [f"cam_{i + 1:0{width}d}" for i in range(num_cameras)]
    d = np.asarray(dist, dtype=np.float64)
    return CameraRig(
        K=torch.from_numpy(np.repeat(K[None], num_cameras, axis=0)),
        R=torch.from_numpy(np.stack(Rs)),
        t=torch.from_numpy(np.stack(ts)),
        dist=torch.from_numpy(np.repeat(d[None], num_cameras, axis=0)),
        names=tuple(names),
        image_size=torch.tensor([[w, h]] * num_cameras, dtype=torch.int64),
        meta={
            "source": (
                f"mvpose.calib.ring_rig(num_cameras={num_cameras}, radius_mm={radius_mm}, "
                f"height_mm={height_mm}, target_mm={tuple(target_mm)}, image_size={(w, h)}, "
                f"focal_px={focal_px}, dist={tuple(d.tolist())}, start_angle_deg={start_angle_deg})"
            ),
            "world": "Z up, mm",
        },
    )
