"""Image transforms of the multi-view datasets: crop boxes, crop + resize, ImageNet normalisation,
undistortion of whole frames.

Pixel convention. A pixel's centre has integer coordinates: pixel ``(i, j)`` (column, row) covers
``[i - 0.5, i + 0.5) x [j - 0.5, j + 0.5)``, the convention of ``K`` in OpenCV and in
learnable-triangulation (LT). Boxes are ``(left, top, right, bottom)`` with integer values and
half-open ranges: the box covers pixel columns ``left .. right - 1`` and rows ``top .. bottom - 1``,
so its size is ``(right - left, bottom - top)``.

Crop and resize are LT's, so that official checkpoints see the images they were trained on:
an integer crop (pixel ``(left, top)`` becomes pixel ``(0, 0)``, zeros outside the frame), then
``cv2.resize`` with ``INTER_AREA``. The camera update is :meth:`mvpose.geometry.CameraRig.crop`
then :meth:`~mvpose.geometry.CameraRig.resize`: ``cx -= left``, ``cy -= top``, then ``fx, cx`` times
``s_x = w_out / w_box`` and ``fy, cy`` times ``s_y = h_out / h_box`` (pixel centre ``i`` maps to
``i * s``, no half-pixel term). ``cv2.resize`` itself maps the centre of input pixel ``i`` to
``(i + 0.5) s - 0.5``, so the image content sits ``0.5 (s - 1)`` px from where ``K`` puts it
(``-0.375`` px for LT's 512 -> 128 crops; less than 0.5 px for any downscale). We keep that
offset on purpose: removing it would shift every input of an official model by a fraction of a
pixel. Tests bound it (``tests/test_data_transforms.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from mvpose.geometry import distortion as _distortion

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "square_bbox",
    "crop_image",
    "crop_and_resize",
    "normalize_image",
    "denormalize_image",
    "undistortion_maps",
    "undistort_frame",
]

#: ImageNet channel statistics in RGB order (on images scaled to [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------ boxes
def square_bbox(bbox_ltrb, scale: float = 1.0) -> np.ndarray:
    """Square, scaled, integer crop box(es) around ``bbox_ltrb``.

    Follows LT's ``get_square_bbox`` then ``scale_bbox`` (integer arithmetic with floor division):

    1. non-integer coordinates are rounded outwards (``floor`` left/top, ``ceil`` right/bottom);
    2. the shorter side is stretched to the longer one about its centre:
       ``c = (a + b) // 2``, ``a' = c - L // 2``, ``b' = a' + L``;
    3. the box is scaled about its centre: ``L' = int(scale * L)``, same formula.

    An integer square box with ``scale=1`` comes back unchanged (LT's labels hold such boxes and
    LT's Human3.6M configs use ``scale_bbox: 1.0``).

    Args:
        bbox_ltrb: ``(*, 4)`` ``(left, top, right, bottom)`` px (array-like or tensor).
        scale: side multiplier (``> 0``).

    Returns:
        ``(*, 4)`` int64 numpy array.

    Example:
        >>> square_bbox([10, 20, 30, 60]).tolist()
        [0, 20, 40, 60]
        >>> square_bbox([0, 20, 40, 60], scale=1.5).tolist()
        [-10, 10, 50, 70]
    """
    if scale <= 0:
        raise ValueError(f"square_bbox: scale must be positive, got {scale}")
    if isinstance(bbox_ltrb, torch.Tensor):
        bbox_ltrb = bbox_ltrb.detach().cpu().numpy()
    b = np.asarray(bbox_ltrb, dtype=np.float64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"square_bbox: expected boxes (*, 4) (left, top, right, bottom), got {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError("square_bbox: boxes must be finite")
    left, top = np.floor(b[..., 0]).astype(np.int64), np.floor(b[..., 1]).astype(np.int64)
    right, bottom = np.ceil(b[..., 2]).astype(np.int64), np.ceil(b[..., 3]).astype(np.int64)
    w, h = right - left, bottom - top
    side = np.maximum(w, h)
    cx, cy = (left + right) // 2, (top + bottom) // 2
    # stretch the shorter side (an already square box is left as it is)
    left = np.where(w < side, cx - side // 2, left)
    top = np.where(h < side, cy - side // 2, top)
    if scale != 1.0:
        cx, cy = (2 * left + side) // 2, (2 * top + side) // 2
        side = (scale * side.astype(np.float64)).astype(np.int64)
        left, top = cx - side // 2, cy - side // 2
    return np.stack([left, top, left + side, top + side], axis=-1)


def _int_box(bbox_ltrb) -> tuple[int, int, int, int]:
    if isinstance(bbox_ltrb, torch.Tensor):
        bbox_ltrb = bbox_ltrb.detach().cpu().numpy()
    b = np.asarray(bbox_ltrb, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise ValueError(f"expected one finite box (left, top, right, bottom), got {bbox_ltrb!r}")
    if np.any(b != np.round(b)):
        raise ValueError(
            f"crop boxes must have integer coordinates (the K update and the pixel grid must agree), "
            f"got {b.tolist()}; use square_bbox() to make one"
        )
    left, top, right, bottom = (int(v) for v in b)
    if right <= left or bottom <= top:
        raise ValueError(f"empty crop box {[left, top, right, bottom]}")
    return left, top, right, bottom


# ------------------------------------------------------------------------------------------------ crops
def crop_image(image: np.ndarray, bbox_ltrb) -> np.ndarray:
    """Integer crop ``(h_box, w_box, C)``; the parts of the box outside the image are zeros.

    Pixel ``(left, top)`` of ``image`` becomes pixel ``(0, 0)`` of the crop (LT's ``crop_image``).
    """
    left, top, right, bottom = _int_box(bbox_ltrb)
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"crop_image: expected an image (H, W[, C]), got shape {image.shape}")
    H, W = image.shape[:2]
    out = np.zeros((bottom - top, right - left, *image.shape[2:]), dtype=image.dtype)
    x0, x1 = max(left, 0), min(right, W)
    y0, y1 = max(top, 0), min(bottom, H)
    if x0 < x1 and y0 < y1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def crop_and_resize(
    image: np.ndarray,
    bbox_ltrb,
    out_size: tuple[int, int] | int,
    interpolation: int = cv2.INTER_AREA,
) -> np.ndarray:
    """Crop ``image`` to an integer box and resize the crop to ``out_size = (w, h)``.

    The box may extend past the image (zero padding). The result matches
    ``rig.crop(box).resize(out_size)`` up to cv2's half-pixel offset ``0.5 (s - 1)`` px (see the
    module docstring): a pixel at ``(u, v)`` of the frame appears at ``((u - left) s_x, (v - top)
    s_y)`` of the crop within ``0.5 |1 - s|`` px.

    Args:
        image: ``(H, W, 3)`` (or ``(H, W)``) uint8 frame.
        bbox_ltrb: ``(left, top, right, bottom)`` px, integer values.
        out_size: ``(w, h)`` px of the result, or one int for a square.
        interpolation: cv2 flag; LT uses ``cv2.INTER_AREA``.

    Returns:
        ``(h, w, 3)`` array of ``image``'s dtype.
    """
    w, h = (out_size, out_size) if isinstance(out_size, int) else (int(out_size[0]), int(out_size[1]))
    if w <= 0 or h <= 0:
        raise ValueError(f"crop_and_resize: out_size must be positive (w, h), got {out_size}")
    crop = crop_image(image, bbox_ltrb)
    if crop.shape[1] == w and crop.shape[0] == h:
        return crop
    return cv2.resize(crop, (w, h), interpolation=interpolation)


# -------------------------------------------------------------------------------------- normalisation
def _check_order(order: str) -> None:
    if order not in ("rgb", "bgr"):
        raise ValueError(f"order must be 'rgb' or 'bgr', got {order!r}")


def normalize_image(images, *, order: str = "rgb", lt_bgr_quirk: bool = False):
    """uint8 images ``(*, H, W, 3)`` to float32 network input ``(*, 3, H, W)``.

    Standard (default): the channels are put in RGB order and each is mapped to
    ``(x / 255 - mean_c) / std_c`` with the ImageNet statistics of that colour.

    ``lt_bgr_quirk=True`` reproduces learnable-triangulation (and ContextPose): they feed the BGR
    images ``cv2.imread`` returns and subtract the RGB-ordered constants position by position, so
    channel 0 (blue) gets the red mean/std. The output's channels are then B, G, R.

    Args:
        images: uint8 numpy array or tensor ``(*, H, W, 3)``.
        order: channel order of ``images``: ``"rgb"`` (default) or ``"bgr"`` (as from cv2).
        lt_bgr_quirk: reproduce LT's BGR-with-RGB-statistics input.

    Returns:
        float32 ``(*, 3, H, W)``, a tensor for a tensor input, a numpy array for a numpy input.
    """
    _check_order(order)
    is_tensor = isinstance(images, torch.Tensor)
    x = images if is_tensor else torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"normalize_image: expected images (*, H, W, 3), got shape {tuple(x.shape)}")
    want = "bgr" if lt_bgr_quirk else "rgb"
    if order != want:
        x = x.flip(-1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device)
    out = ((x.to(torch.float32) / 255.0 - mean) / std).movedim(-1, -3).contiguous()
    return out if is_tensor else out.numpy()


def denormalize_image(images, *, order: str = "rgb", lt_bgr_quirk: bool = False):
    """Inverse of :func:`normalize_image`: float ``(*, 3, H, W)`` to uint8 ``(*, H, W, 3)`` in
    channel order ``order`` (values rounded and clipped to [0, 255])."""
    _check_order(order)
    is_tensor = isinstance(images, torch.Tensor)
    x = images if is_tensor else torch.from_numpy(np.asarray(images))
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"denormalize_image: expected images (*, 3, H, W), got shape {tuple(x.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device)
    x = x.to(torch.float32).movedim(-3, -1)
    out = ((x * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    have = "bgr" if lt_bgr_quirk else "rgb"
    if order != have:
        out = out.flip(-1)
    out = out.contiguous()
    return out if is_tensor else out.numpy()


# --------------------------------------------------------------------------------------- undistortion
def _one_camera(camera, view: int):
    """``(K (3, 3), dist (5,), model)`` float64 numpy from a rig (``view``) or a dict."""
    if isinstance(camera, dict):
        K = np.asarray(camera["K"], dtype=np.float64).reshape(3, 3)
        dist = np.zeros(5) if camera.get("dist") is None else np.asarray(camera["dist"], np.float64)
        return K, dist.reshape(-1), camera.get("distortion_model", "opencv")
    if len(camera.batch_shape):
        raise ValueError(
            f"undistort_frame: expected a plain rig (V, ...), got batch {tuple(camera.batch_shape)}"
        )
    K = camera.K[view].detach().cpu().double().numpy()
    dist = camera.dist[view].detach().cpu().double().numpy()
    return K, dist, camera.distortion_model


def undistortion_maps(camera, image_size: tuple[int, int], view: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps ``(map_x, map_y)`` (float32 ``(h, w)``) that undistort frames of one camera.

    The undistorted image keeps the camera's ``K`` (as LT's ``undistort-h36m.py`` does): output
    pixel ``(u, v)`` takes the input at the distorted position of ``K^-1 (u, v, 1)``.

    Args:
        camera: a :class:`~mvpose.geometry.CameraRig` (camera ``view`` is used, with the rig's
            ``distortion_model``: ``"h36m"`` for Human3.6M) or a dict ``{"K", "dist",
            "distortion_model"}``.
        image_size: ``(w, h)`` of the frames.
    """
    K, dist, model = _one_camera(camera, view)
    w, h = int(image_size[0]), int(image_size[1])
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    y = (v - cy) / fy
    x = (u - cx - s * y) / fx
    xy = torch.from_numpy(np.stack([x, y], -1))
    xyd = _distortion.distort(xy, torch.from_numpy(dist), model).numpy()
    map_x = fx * xyd[..., 0] + s * xyd[..., 1] + cx
    map_y = fy * xyd[..., 1] + cy
    return map_x.astype(np.float32), map_y.astype(np.float32)


def undistort_frame(
    image: np.ndarray,
    camera,
    view: int = 0,
    interpolation: int = cv2.INTER_CUBIC,
    maps: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Remove lens distortion from a full frame; the result has the same size and the same ``K``.

    This is the step that turns Human3.6M's ``imageSequence`` frames into the
    ``imageSequence-undistorted`` frames the multi-view datasets read (LT's ``undistort-h36m.py``
    does the same with Human3.6M's own distortion formula and ``cv2.INTER_CUBIC``). Pixels whose
    source lies outside the frame are black.

    Args:
        image: ``(H, W[, C])`` frame.
        camera: :class:`~mvpose.geometry.CameraRig` (``camera.select([view])`` or a rig and
            ``view``), e.g. ``mvpose.calib.load_rig("cameras.h5", subject="S1")``, whose
            ``distortion_model`` is ``"h36m"``; or a dict ``{"K", "dist", "distortion_model"}``.
        view: which camera of the rig.
        interpolation: cv2 interpolation flag.
        maps: precomputed :func:`undistortion_maps` (reuse them across the frames of a camera).

    Example:
        >>> rig = load_rig("cameras.h5", subject="S1")  # doctest: +SKIP
        >>> out = undistort_frame(cv2.imread(path), rig, view=rig.index("54138969"))  # doctest: +SKIP
    """
    image = np.asarray(image)
    if maps is None:
        maps = undistortion_maps(camera, (image.shape[1], image.shape[0]), view)
    map_x, map_y = maps
    if map_x.shape != image.shape[:2]:
        raise ValueError(f"undistort_frame: maps are {map_x.shape} but the image is {image.shape[:2]}")
    return cv2.remap(image, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
