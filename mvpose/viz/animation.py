"""3D skeleton motion: an animation (MP4, or GIF with Pillow) and a static strip of key frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvpose.skeleton import Skeleton
from mvpose.viz.images import to_numpy
from mvpose.viz.plot3d import SkeletonPlot3D, cube_limits
from mvpose.viz.video import VideoWriter

__all__ = ["write_skeleton_animation", "skeleton_strip"]


def _sequence(points_mm, name: str) -> np.ndarray:
    x = to_numpy(points_mm, np.float64)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected (T, J, 3) mm, got shape {tuple(x.shape)}")
    return x


def write_skeleton_animation(
    path,
    points_mm,
    skeleton: str | Skeleton | None,
    *,
    fps: float = 30.0,
    gt_mm=None,
    frame_numbers: Sequence[int] | None = None,
    title: str | None = None,
    size_px: int = 560,
    up: str = "z",
    follow: bool = False,
    elev: float = 15.0,
    azim: float = -60.0,
    turn_deg_per_s: float = 0.0,
) -> Path:
    """Animate a 3D skeleton sequence into ``path`` (``.mp4``; ``.gif`` needs Pillow; another suffix
    writes a folder of PNG frames).

    Args:
        points_mm: ``(T, J, 3)`` world mm (numpy or torch); NaN joints are left out.
        skeleton: joint set.
        fps: frame rate of the file.
        gt_mm: ``(T, J, 3)`` ground truth drawn dashed, or ``None``.
        frame_numbers: ``(T,)`` numbers shown in the title (default ``0 .. T-1``).
        title: text before the frame number.
        size_px: side of the (square) picture.
        up: the world's up axis (``"z"`` for mvpose studios).
        follow: the view follows the subject (a cube of fixed size centred on each pose); default: one
            fixed cube holding the whole sequence (the subject moves through it).
        elev, azim: view angles (degrees); ``turn_deg_per_s`` turns the camera about the vertical.

    Returns:
        the path written.
    """
    X = _sequence(points_mm, "points_mm")
    G = None if gt_mm is None else _sequence(gt_mm, "gt_mm")
    if G is not None and G.shape != X.shape:
        raise ValueError(f"gt_mm: expected the shape of points_mm {X.shape}, got {G.shape}")
    T, J = X.shape[:2]
    if T == 0:
        raise ValueError("points_mm: no frames")
    numbers = np.arange(T) if frame_numbers is None else np.asarray(frame_numbers)
    if follow:
        centres, half = cube_limits(X, G)  # one cube size: the largest pose extent
    else:
        centre, half = cube_limits(X[None], None if G is None else G[None])
        centres = np.broadcast_to(centre, (T, 3))
    plot = SkeletonPlot3D(skeleton, J, 1, with_gt=G is not None, size_px=size_px, up=up, elev=elev, azim=azim)
    with VideoWriter(path, fps) as w:
        for t in range(T):
            if turn_deg_per_s:
                plot.axes[0].view_init(elev=elev, azim=azim + turn_deg_per_s * t / fps)
            label = f"{title + '  ' if title else ''}frame {int(numbers[t])}"
            img = plot.render(
                X[t], None if G is None else G[t], titles=label, limits=(centres[t : t + 1], half)
            )
            w.write(img, number=int(numbers[t]))
    return Path(path)


def skeleton_strip(
    points_mm,
    skeleton: str | Skeleton | None,
    *,
    num: int = 6,
    frame_numbers: Sequence[int] | None = None,
    gt_mm=None,
    size_px: int = 320,
    up: str = "z",
    title: str | None = None,
) -> np.ndarray:
    """A static picture of ``num`` evenly spaced frames of a sequence side by side (one scale for all),
    skipping frames without any 3D joint. Returns uint8 RGB."""
    X = _sequence(points_mm, "points_mm")
    numbers = np.arange(len(X)) if frame_numbers is None else np.asarray(frame_numbers)
    good = np.flatnonzero(np.isfinite(X).all(-1).any(-1))
    if good.size == 0:
        raise ValueError("points_mm: no frame has a finite 3D joint")
    pick = good[np.unique(np.linspace(0, good.size - 1, min(num, good.size)).round().astype(np.int64))]
    G = None if gt_mm is None else _sequence(gt_mm, "gt_mm")[pick]
    titles = [f"frame {int(numbers[t])}" for t in pick]
    plot = SkeletonPlot3D(skeleton, X.shape[1], len(pick), with_gt=G is not None, size_px=size_px, up=up)
    return plot.render(X[pick], G, titles=titles, suptitle=title)
