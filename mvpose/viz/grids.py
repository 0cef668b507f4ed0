"""Pictures of one multi-view sample: reprojections and heatmaps per view, and the prediction vs
ground-truth PNG the training engine leaves behind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps

from mvpose.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mvpose.skeleton import Skeleton
from mvpose.viz.draw2d import draw_skeleton_2d
from mvpose.viz.images import fit_height, put_label, tile_images, to_numpy, to_uint8_images, write_png
from mvpose.viz.plot3d import skeleton_3d_figure

__all__ = ["reprojection_grid", "heatmap_grid", "pred_vs_gt_png", "colorize"]


def _views(x, name: str, V: int, J: int | None = None) -> np.ndarray | None:
    if x is None:
        return None
    a = to_numpy(x, np.float64)
    if a.ndim != 3 or a.shape[0] != V or a.shape[-1] != 2 or (J is not None and a.shape[1] != J):
        want = f"({V}, {'J' if J is None else J}, 2)"
        raise ValueError(f"{name}: expected {want} px, got shape {tuple(a.shape)}")
    return a


def reprojection_grid(
    images,
    pred_px,
    gt_px=None,
    skeleton: str | Skeleton | None = "h36m17_lt",
    *,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    bgr: bool = False,
    labels: Sequence[str] | None = None,
    cols: int | None = None,
    visible=None,
) -> np.ndarray:
    """Every view with the predicted 2D joints (solid) and the ground truth (dashed, paler) drawn on it.

    Args:
        images: ``(V, H, W, 3)`` uint8, or ``(V, 3, H, W)`` float normalised network input (numpy or torch).
        pred_px: ``(V, J, 2)`` predicted joints in pixels of ``images`` (e.g. the 3D prediction projected).
        gt_px: ``(V, J, 2)`` ground truth, or ``None``.
        skeleton: joint set.
        mean, std, bgr: how float images were normalised (see :func:`~mvpose.viz.images.to_uint8_images`;
            ``bgr=True`` for learnable-triangulation's BGR input).
        labels: one text per view (default ``view 0`` ...).
        cols: views per row (default all in one row).
        visible: ``(V, J)`` bool of the ground truth, hidden joints hollow.

    Returns:
        uint8 RGB grid (tiles separated by 2 px white lines).
    """
    imgs = to_uint8_images(images, mean=mean, std=std, bgr=bgr)
    if imgs.ndim != 4:
        raise ValueError(f"images: expected (V, H, W, 3) or (V, 3, H, W), got shape {imgs.shape}")
    V = imgs.shape[0]
    pred = _views(pred_px, "pred_px", V)
    gt = _views(gt_px, "gt_px", V, pred.shape[1])
    vis = None if visible is None else to_numpy(visible).astype(bool).reshape(V, -1)
    if labels is not None and len(labels) != V:
        raise ValueError(f"labels: expected {V} texts, got {len(labels)}")
    tiles = []
    for v in range(V):
        img = imgs[v]
        if gt is not None:
            img = draw_skeleton_2d(img, gt[v], skeleton, visible=None if vis is None else vis[v], dashed=True)
        img = draw_skeleton_2d(img, pred[v], skeleton)
        tiles.append(put_label(img, labels[v] if labels is not None else f"view {v}"))
    return tile_images(tiles, cols=cols)


def colorize(values: np.ndarray, cmap: str = "inferno", vmin: float | None = None, vmax: float | None = None):
    """Scalars ``(*)`` to uint8 RGB ``(*, 3)`` with a matplotlib colormap (NaN -> black)."""
    v = np.asarray(values, np.float64)
    lo = np.nanmin(v) if vmin is None else vmin
    hi = np.nanmax(v) if vmax is None else vmax
    t = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    out = lut[np.rint(np.nan_to_num(t) * 255).astype(np.int64)]
    out[~np.isfinite(v)] = 0
    return out


def _unit(h: np.ndarray) -> np.ndarray:
    """Min-max scaled to [0, 1] over the last two axes (a flat map becomes 0)."""
    lo = h.min((-2, -1), keepdims=True)
    hi = h.max((-2, -1), keepdims=True)
    return (h - lo) / np.maximum(hi - lo, 1e-12)


def heatmap_grid(
    heatmaps,
    images=None,
    *,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    bgr: bool = False,
    joint_names: Sequence[str] | None = None,
    alpha: float = 0.6,
    tile_px: int = 96,
) -> np.ndarray:
    """Heatmaps as a picture.

    With ``images``: one tile per view, the maximum over joints (each heatmap scaled to [0, 1] first)
    resized to the image and blended over it. Without: a joints x views table (a row per view, a
    column per joint), each heatmap scaled to [0, 1] on its own.

    Args:
        heatmaps: ``(V, J, h, w)`` (numpy or torch; any real values, e.g. logits or softmax).
        images: ``(V, H, W, 3)`` uint8 or ``(V, 3, H, W)`` normalised float, or ``None``.
        mean, std, bgr: how float images were normalised (:func:`~mvpose.viz.images.to_uint8_images`).
        joint_names: column labels of the table (default the joint index).
        alpha: heatmap opacity over the image.
        tile_px: tile height of the table, px.

    Returns:
        uint8 RGB image.
    """
    hm = to_numpy(heatmaps, np.float32)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps: expected (V, J, h, w), got shape {tuple(hm.shape)}")
    V, J, h, w = hm.shape
    hm = _unit(np.nan_to_num(hm))
    if images is not None:
        imgs = to_uint8_images(images, mean=mean, std=std, bgr=bgr)
        if imgs.ndim != 4 or imgs.shape[0] != V:
            raise ValueError(f"images: expected {V} views, got shape {imgs.shape}")
        H, W = imgs.shape[1:3]
        tiles = []
        for v in range(V):
            m = cv2.resize(hm[v].max(0), (W, H), interpolation=cv2.INTER_LINEAR)
            a = (alpha * m)[..., None]
            tile = (imgs[v] * (1 - a) + colorize(m, vmin=0.0, vmax=1.0) * a).round().astype(np.uint8)
            tiles.append(put_label(tile, f"view {v}"))
        return tile_images(tiles)
    tw = max(8, int(round(tile_px * w / h)))
    table = colorize(hm, vmin=0.0, vmax=1.0)  # (V, J, h, w, 3)
    tiles = []
    for v in range(V):
        for j in range(J):
            tile = cv2.resize(table[v, j], (tw, tile_px), interpolation=cv2.INTER_NEAREST)
            name = joint_names[j] if joint_names is not None else str(j)
            tiles.append(put_label(tile, f"v{v} {name}", scale=0.3))
    return tile_images(tiles, cols=J, pad_px=1)


def pred_vs_gt_png(
    path,
    images,
    pred_px,
    gt_px,
    pred_mm,
    gt_mm,
    skeleton: str | Skeleton | None = "h36m17_lt",
    title: str | None = None,
    *,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    bgr: bool = False,
    labels: Sequence[str] | None = None,
    up: str = "z",
) -> Path:
    """One PNG: the 3D prediction vs the ground truth (with MPJPE in the title) beside the
    reprojections into every view (two rows when there are more than 3 views).

    Args:
        path: output PNG (folders are created; written atomically).
        images, pred_px, gt_px: as :func:`reprojection_grid` (``gt_px`` may be ``None``).
        pred_mm, gt_mm: ``(J, 3)`` world mm (``gt_mm`` may be ``None``).
        skeleton, mean, std, bgr, labels: as :func:`reprojection_grid`.
        title: over the 3D plot.
        up: the world's up axis.

    Returns:
        the path written.
    """
    imgs = to_uint8_images(images, mean=mean, std=std, bgr=bgr)
    V = imgs.shape[0]
    grid = reprojection_grid(imgs, pred_px, gt_px, skeleton, labels=labels, cols=V if V <= 3 else -(-V // 2))
    p, g = to_numpy(pred_mm, np.float64), None if gt_mm is None else to_numpy(gt_mm, np.float64)
    text = title or ""
    if g is not None:
        err = np.linalg.norm(p - g, axis=-1)
        if np.isfinite(err).any():
            text = f"{text}  MPJPE {np.nanmean(err):.1f} mm".strip()
    side = max(grid.shape[0], 360)
    fig = skeleton_3d_figure(p, g, skeleton, title=text or None, size_px=side, up=up)
    grid = fit_height(grid, side) if grid.shape[0] != side else grid
    return write_png(path, np.concatenate([fig, grid], 1))
