"""Drawing 2D skeletons and markers on uint8 RGB images with OpenCV (anti-aliased, sub-pixel)."""

from __future__ import annotations

import cv2
import numpy as np

from mvpose.skeleton import Skeleton
from mvpose.viz.images import to_numpy
from mvpose.viz.style import as_skeleton, joint_colours, line_thickness_px, pale

__all__ = ["draw_skeleton_2d", "draw_markers"]

_SHIFT = 4  # cv2 fixed-point bits: coordinates in 1/16 px
_ONE = 1 << _SHIFT


def _check_image(image) -> np.ndarray:
    img = to_numpy(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image: expected uint8 (H, W, 3), got {img.dtype} {tuple(img.shape)}")
    return img


def _inside(points: np.ndarray, height: int, width: int, margin: float) -> np.ndarray:
    """Finite points within ``margin`` image sizes of the image (drawable without int overflow)."""
    mx, my = margin * width, margin * height
    x, y = points[..., 0], points[..., 1]
    with np.errstate(invalid="ignore"):
        return np.isfinite(points).all(-1) & (x > -mx) & (x < width + mx) & (y > -my) & (y < height + my)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.rint(points * _ONE).astype(np.int32)


def _dash(a: np.ndarray, b: np.ndarray, dash_px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split segments ``a -> b`` ``(N, 2)`` into dashes (every other piece of length ``dash_px``);
    returns the dash ends ``(M, 2)`` twice and the segment of each dash ``(M,)``."""
    length = np.linalg.norm(b - a, axis=-1)
    n = np.maximum(1, np.ceil(length / dash_px).astype(np.int64))
    seg = np.repeat(np.arange(len(a)), n)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # piece index within its segment
    keep = k % 2 == 0
    seg, k = seg[keep], k[keep]
    t0 = (k / n[seg])[:, None]
    t1 = (np.minimum(k + 1, n[seg]) / n[seg])[:, None]
    d = b[seg] - a[seg]
    return a[seg] + t0 * d, a[seg] + t1 * d, seg


def draw_skeleton_2d(
    image,
    points_px,
    skeleton: str | Skeleton | None,
    color=None,
    visible=None,
    *,
    thickness: int | None = None,
    radius: int | None = None,
    dashed: bool = False,
    outline: bool = True,
) -> np.ndarray:
    """Limbs and joints of one pose on a copy of ``image``.

    Args:
        image: uint8 RGB ``(H, W, 3)`` (numpy or torch); not modified.
        points_px: ``(J, 2)`` pixels of ``image``; NaN joints are skipped with their limbs.
        skeleton: joint set (name or :class:`~mvpose.skeleton.Skeleton`) giving the limbs and
            sides; ``None`` draws the joints only.
        color: one RGB colour for everything; ``None``: left blue, right red, centre light grey.
        visible: ``(J,)`` bool; hidden joints are drawn hollow and their limbs thin.
        thickness, radius: limb width and joint radius in px (default from the image size).
        dashed: dashed limbs and hollow joints (the ground-truth style).
        outline: a dark edge under limbs and joints, so they read on any background.

    Returns:
        the drawn image, uint8 ``(H, W, 3)``.

    Example:
        >>> img = draw_skeleton_2d(np.zeros((64, 64, 3), np.uint8), np.full((17, 2), 32.0), "h36m17")
        >>> img.shape, img.dtype
        ((64, 64, 3), dtype('uint8'))
    """
    img = np.array(_check_image(image), copy=True)
    pts = to_numpy(points_px, np.float64)
    if pts.ndim != 2 or pts.shape[-1] != 2:
        raise ValueError(f"points_px: expected (J, 2), got {tuple(pts.shape)}")
    J = pts.shape[0]
    sk = as_skeleton(skeleton, J)
    vis = np.ones(J, bool) if visible is None else to_numpy(visible).astype(bool).reshape(-1)
    if vis.shape != (J,):
        raise ValueError(f"visible: expected ({J},), got {vis.shape}")
    H, W = img.shape[:2]
    th = line_thickness_px(H, W) if thickness is None else max(1, int(thickness))
    rad = max(2, int(round(1.4 * th))) if radius is None else max(1, int(radius))
    cols = (
        joint_colours(sk, J)
        if color is None
        else np.broadcast_to(np.asarray(color, np.uint8).reshape(1, 3), (J, 3))
    )
    if dashed and color is None:
        cols = np.array([pale(c, 0.35) for c in cols], np.uint8).reshape(J, 3)
    ok = _inside(pts, H, W, margin=2.0)

    if sk is not None and sk.limbs:
        limbs = np.asarray(sk.limbs, np.int64)
        limbs = limbs[ok[limbs].all(-1)]
        a, b = pts[limbs[:, 0]], pts[limbs[:, 1]]
        thin = ~vis[limbs].all(-1)
        limb_col = cols[limbs[:, 1]]  # a limb takes its child joint's side
        if dashed:
            a, b, seg = _dash(a, b, dash_px=max(4.0, 3.0 * th))
            limb_col, thin = limb_col[seg], thin[seg]
        lines = np.stack([_fixed(a), _fixed(b)], 1)  # (L, 2, 2)
        widths = np.where(thin, max(1, th // 2), th)
        groups = {}
        for i, key in enumerate(zip(map(tuple, limb_col.tolist()), widths.tolist())):
            groups.setdefault(key, []).append(i)
        if outline:
            for (_, w), idx in groups.items():
                cv2.polylines(img, list(lines[idx]), False, (0, 0, 0), w + 2, cv2.LINE_AA, _SHIFT)
        for (c, w), idx in groups.items():
            cv2.polylines(img, list(lines[idx]), False, c, w, cv2.LINE_AA, _SHIFT)

    centres = np.zeros((J, 2), np.int32)
    centres[ok] = _fixed(pts[ok])
    hollow = ~vis | dashed
    for j in np.flatnonzero(ok):
        c = tuple(int(v) for v in cols[j])
        centre = tuple(int(v) for v in centres[j])
        if hollow[j]:
            if outline:
                cv2.circle(img, centre, rad * _ONE, (0, 0, 0), max(1, th // 2) + 2, cv2.LINE_AA, _SHIFT)
            cv2.circle(img, centre, rad * _ONE, c, max(1, th // 2), cv2.LINE_AA, _SHIFT)
        else:
            if outline:
                cv2.circle(img, centre, (rad + 1) * _ONE, (0, 0, 0), -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(img, centre, rad * _ONE, c, -1, cv2.LINE_AA, _SHIFT)
    return img


def draw_markers(
    image,
    points_px,
    color,
    marker: str = "ring",
    size_px: int | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """Draw a marker at each finite point of ``points_px (N, 2)`` on ``image`` in place.

    Args:
        marker: ``"ring"`` (a circle outline), ``"cross"`` (an x) or ``"dot"``.
        size_px: marker radius in px (default from the image size: a ring just around a joint dot).

    Returns:
        ``image`` (uint8 RGB, modified in place).
    """
    img = _check_image(image)
    pts = to_numpy(points_px, np.float64).reshape(-1, 2)
    H, W = img.shape[:2]
    th = max(1, line_thickness_px(H, W) // 2) if thickness is None else int(thickness)
    r = int(round(2.4 * line_thickness_px(H, W))) if size_px is None else int(size_px)  # around a joint dot
    c = tuple(int(v) for v in color)
    ok = _inside(pts, H, W, margin=0.0)
    p = _fixed(pts[ok])
    if marker == "ring":
        for q in p:
            cv2.circle(img, tuple(int(v) for v in q), r * _ONE, (0, 0, 0), th + 2, cv2.LINE_AA, _SHIFT)
            cv2.circle(img, tuple(int(v) for v in q), r * _ONE, c, th, cv2.LINE_AA, _SHIFT)
    elif marker == "cross":
        d = int(r * _ONE * 0.8)
        segs = np.concatenate(
            [np.stack([p + [-d, -d], p + [d, d]], 1), np.stack([p + [-d, d], p + [d, -d]], 1)]
        ).astype(np.int32)
        if len(segs):
            cv2.polylines(img, list(segs), False, (0, 0, 0), th + 2, cv2.LINE_AA, _SHIFT)
            cv2.polylines(img, list(segs), False, c, th, cv2.LINE_AA, _SHIFT)
    elif marker == "dot":
        for q in p:
            cv2.circle(img, tuple(int(v) for v in q), r * _ONE, c, -1, cv2.LINE_AA, _SHIFT)
    else:
        raise ValueError(f"marker must be 'ring', 'cross' or 'dot', got {marker!r}")
    return img
