"""Image plumbing for the pictures: tensors to uint8 RGB, undoing the network normalisation, tiling,
labels and PNG writing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mvpose.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["to_numpy", "to_uint8_images", "tile_images", "put_label", "fit_height", "write_png"]


def to_numpy(x, dtype=None) -> np.ndarray:
    """A numpy copy-free view of ``x`` (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x if dtype is None else x.astype(dtype, copy=False)


def to_uint8_images(
    images,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    bgr: bool = False,
) -> np.ndarray:
    """Images as uint8 RGB ``(*, H, W, 3)``.

    Args:
        images: uint8 ``(*, H, W, 3)`` (as is), or float ``(*, 3, H, W)`` network input
            (``(*, H, W, 3)`` float is accepted too); numpy or torch.
        mean, std: per-channel statistics the float images were normalised with
            (``(x / 255 - mean) / std``; default ImageNet); ``None`` means floats in ``[0, 1]``.
            They are applied position by position, as the normalisation did.
        bgr: the channels are in B, G, R order (learnable-triangulation's input: BGR images
            normalised with the RGB-ordered statistics, ``normalize_image(..., lt_bgr_quirk=True)``,
            or BGR uint8 images from ``cv2``); they are flipped to RGB.

    Returns:
        ``(*, H, W, 3)`` uint8 RGB, C-contiguous (a new array: drawing on it never touches ``images``).
    """
    x = to_numpy(images)
    if x.ndim < 3:
        raise ValueError(f"images: expected (*, H, W, 3) uint8 or (*, 3, H, W) float, got shape {x.shape}")
    channels_last = x.shape[-1] == 3 and not (x.shape[-3] == 3 and x.dtype != np.uint8)
    if not channels_last:
        if x.shape[-3] != 3:
            raise ValueError(
                f"images: expected 3 channels in (*, 3, H, W) or (*, H, W, 3), got shape {x.shape}"
            )
        x = np.moveaxis(x, -3, -1)
    if x.dtype == np.uint8:
        out = np.array(x, copy=True)
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if (mean is None) != (std is None):
            raise ValueError("images: give both mean and std, or neither (floats in [0, 1])")
        if mean is not None:
            x = x * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
        out = np.clip(np.rint(np.nan_to_num(x) * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"images: expected uint8 or float, got {x.dtype}")
    if bgr:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` resized to ``height`` px keeping its aspect ratio (area interpolation to shrink)."""
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, int(round(w * height / h)))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def tile_images(
    tiles: Sequence[np.ndarray], cols: int | None = None, pad_px: int = 2, background=(255, 255, 255)
) -> np.ndarray:
    """A grid of uint8 RGB tiles, row-major; tiles of other sizes are resized to the first one's.

    Args:
        tiles: ``N`` images ``(H, W, 3)``.
        cols: tiles per row (default all in one row).
        pad_px: gap between tiles and around the grid.

    Returns:
        ``(rows * (H + pad) + pad, cols * (W + pad) + pad, 3)`` uint8.
    """
    if len(tiles) == 0:
        raise ValueError("tile_images: no tiles")
    h, w = tiles[0].shape[:2]
    cols = len(tiles) if cols is None else max(1, min(int(cols), len(tiles)))
    rows = -(-len(tiles) // cols)
    grid = np.empty((rows * (h + pad_px) + pad_px, cols * (w + pad_px) + pad_px, 3), np.uint8)
    grid[:] = np.asarray(background, np.uint8)
    for i, t in enumerate(tiles):
        if t.shape[:2] != (h, w):
            t = cv2.resize(t, (w, h), interpolation=cv2.INTER_AREA)
        r, c = divmod(i, cols)
        y, x = pad_px + r * (h + pad_px), pad_px + c * (w + pad_px)
        grid[y : y + h, x : x + w] = t
    return grid


def put_label(image: np.ndarray, text: str, org=None, scale: float | None = None, color=(255, 255, 255)):
    """Write ``text`` on ``image`` in place (white on a dark outline), top-left by default;
    the font scales with the image (0.4 at 256 px)."""
    h, w = image.shape[:2]
    scale = max(0.35, min(h, w) / 640) if scale is None else scale
    th = max(1, int(round(scale * 2)))
    (_, th_px), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, th)
    org = (int(4 * scale / 0.4), int(th_px + 6 * scale / 0.4)) if org is None else tuple(int(v) for v in org)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), th + 2, cv2.LINE_AA)
    cv2.putText(
        image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in color), th, cv2.LINE_AA
    )
    return image


def write_png(path, image_rgb: np.ndarray) -> Path:
    """Write a uint8 RGB ``(H, W, 3)`` image to ``path`` (PNG or any suffix cv2 encodes), atomically;
    folders are created. Returns the path."""
    path = Path(path)
    img = np.asarray(image_rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"write_png '{path}': expected uint8 (H, W, 3), got {img.dtype} {img.shape}")
    suffix = path.suffix.lower() or ".png"
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(img[..., ::-1]))
    if not ok:
        raise ValueError(f"write_png '{path}': OpenCV cannot encode {suffix!r} images")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # umask permissions
    try:
        with open(tmp, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
