"""Image transforms: crop boxes, crop + resize against the camera update, normalisation, undistortion."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mvpose.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_and_resize,
    crop_image,
    denormalize_image,
    normalize_image,
    square_bbox,
    undistort_frame,
    undistortion_maps,
)
from mvpose.geometry import CameraRig

SHARED = Path(__file__).resolve().parents[2] / "shared"
LT_ALG = SHARED / "fixtures" / "official" / "learnable_triangulation_alg" / "io.npz"
H36M_CAMERAS = SHARED / "data" / "h36m_cameras" / "cameras.h5"


def _lt_square_then_scale(box, scale):
    """LT's get_square_bbox then scale_bbox, written out with Python ints (the oracle)."""
    left, upper, right, lower = box
    width, height = right - left, lower - upper
    if width > height:
        yc = (upper + lower) // 2
        upper = yc - width // 2
        lower = upper + width
    elif height > width:
        xc = (left + right) // 2
        left = xc - height // 2
        right = left + height
    width, height = right - left, lower - upper
    xc, yc = (right + left) // 2, (lower + upper) // 2
    nw, nh = int(scale * width), int(scale * height)
    nl, nu = xc - nw // 2, yc - nh // 2
    return [nl, nu, nl + nw, nu + nh]


def test_square_bbox_matches_lt_integer_rules():
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(200):
        l, t = rng.integers(-50, 900, 2)
        w, h = rng.integers(1, 600, 2)
        boxes.append([int(l), int(t), int(l + w), int(t + h)])
    for scale in (1.0, 1.2, 1.5, 0.8):
        got = square_bbox(boxes, scale)
        assert got.dtype == np.int64 and got.shape == (200, 4)
        want = [_lt_square_then_scale(b, scale) for b in boxes]
        np.testing.assert_array_equal(got, want)
        sides = got[:, 2:] - got[:, :2]
        assert (sides[:, 0] == sides[:, 1]).all()
    square = np.array([[10, 20, 110, 120], [11, 20, 112, 121]])
    np.testing.assert_array_equal(square_bbox(square), square)  # LT's labels stay as they are
    np.testing.assert_array_equal(square_bbox(torch.tensor([10.2, 20.7, 30.1, 59.9])), [0, 20, 40, 60])
    with pytest.raises(ValueError, match="scale"):
        square_bbox([0, 0, 1, 1], 0.0)
    with pytest.raises(ValueError, match=r"\(\*, 4\)"):
        square_bbox([0, 0, 1])


def test_crop_pads_with_zeros_and_checks_boxes():
    img = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3) + 1
    out = crop_image(img, [-2, -1, 3, 4])
    assert out.shape == (5, 5, 3)
    assert (out[:1] == 0).all() and (out[:, :2] == 0).all()
    np.testing.assert_array_equal(out[1:, 2:], img[:4, :3])
    assert (crop_image(img, [10, 10, 14, 13]) == 0).all()  # entirely outside
    with pytest.raises(ValueError, match="integer"):
        crop_and_resize(img, [0.5, 0, 4, 4], (8, 8))
    with pytest.raises(ValueError, match="empty"):
        crop_and_resize(img, [3, 0, 3, 4], (8, 8))


@pytest.mark.parametrize("box_side,out", [(512, 128), (300, 256), (250, 181), (100, 100), (128, 192)])
def test_crop_and_resize_agrees_with_camera_update(box_side, out):
    """A blob centred at (u, v) of the frame lands where rig.crop(box).resize(out) puts (u, v):
    within 0.5 |1 - s| px (cv2's half-pixel offset, kept for parity with LT), so within 0.5 px for
    s < 2. (A blob, not a single pixel: a downscale quantises a lone pixel to the output grid.)"""
    rng = np.random.default_rng(box_side)
    H, W = 700, 900
    K = torch.tensor([[1100.0, 0.0, 455.3], [0.0, 1098.0, 340.8], [0.0, 0.0, 1.0]], dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)[None]
    rig = CameraRig(K=K[None], R=eye, t=torch.zeros(1, 3, dtype=torch.float64))
    s = out / box_side
    bound = 0.5 * abs(1 - s) + 0.03
    sigma = max(1.5, 1.5 / s)
    ys, xs = np.mgrid[:H, :W]
    for _ in range(6):
        left, top = int(rng.integers(-100, W - box_side + 100)), int(rng.integers(-100, H - box_side + 100))
        box = [left, top, left + box_side, top + box_side]
        m = int(4 * sigma) + 2
        u = rng.uniform(max(left, 0) + m, min(left + box_side, W) - m)
        v = rng.uniform(max(top, 0) + m, min(top + box_side, H) - m)
        blob = 250.0 * np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * sigma**2))
        img = np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, -1)
        crop = crop_and_resize(img, box, (out, out)).astype(np.float64)[..., 0]
        cy, cx = np.mgrid[: crop.shape[0], : crop.shape[1]]
        cu, cv = (crop * cx).sum() / crop.sum(), (crop * cy).sum() / crop.sum()
        new = rig.crop(torch.tensor([box], dtype=torch.float64)).resize((out, out))
        assert new.image_size.tolist() == [[out, out]]
        p = new.K[0] @ torch.linalg.inv(K) @ torch.tensor([u, v, 1.0], dtype=torch.float64)
        du, dv = cu - float(p[0]), cv - float(p[1])
        assert abs(du) < bound and abs(dv) < bound, (du, dv, bound)
        # the offset is cv2's (i + 0.5) s - 0.5 versus K's i s
        assert abs(du - 0.5 * (s - 1)) < 0.03 and abs(dv - 0.5 * (s - 1)) < 0.03


def test_camera_update_reproduces_lt_fixture_projections():
    """LT's fixture: cameras cropped to `bboxes_ltrb` and resized to 128 give `proj_matrices`."""
    if not LT_ALG.is_file():
        pytest.skip(f"fixture not found: {LT_ALG}")
    d = np.load(LT_ALG)
    K = torch.from_numpy(d["cameras_K_full"]).double()
    R = torch.from_numpy(d["cameras_R"]).double()
    t = torch.from_numpy(d["cameras_t"][..., 0]).double()
    for b in range(d["bboxes_ltrb"].shape[0]):
        box = torch.from_numpy(square_bbox(d["bboxes_ltrb"][b])).double()
        rig = CameraRig(K=K, R=R, t=t).crop(box).resize((128, 128))
        np.testing.assert_allclose(
            rig.projection_matrices().numpy(), d["proj_matrices"][b], rtol=2e-6, atol=1e-3
        )


def test_normalize_standard_and_round_trip():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (2, 3, 5, 7, 3), dtype=np.uint8)
    x = normalize_image(rgb)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (2, 3, 3, 5, 7)
    for c in range(3):
        want = (rgb[..., c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        np.testing.assert_allclose(x[..., c, :, :], want, atol=1e-5)
    np.testing.assert_array_equal(denormalize_image(x), rgb)
    xt = normalize_image(torch.from_numpy(rgb))
    assert isinstance(xt, torch.Tensor) and xt.dtype == torch.float32
    np.testing.assert_array_equal(xt.numpy(), x)
    np.testing.assert_array_equal(denormalize_image(xt).numpy(), rgb)
    bgr = rgb[..., ::-1]
    np.testing.assert_array_equal(normalize_image(bgr, order="bgr"), x)
    np.testing.assert_array_equal(denormalize_image(x, order="bgr"), bgr)
    with pytest.raises(ValueError, match="order"):
        normalize_image(rgb, order="hsv")
    with pytest.raises(ValueError, match="H, W, 3"):
        normalize_image(rgb[..., :2])


def test_lt_bgr_quirk_matches_the_reference_fixture():
    if not LT_ALG.is_file():
        pytest.skip(f"fixture not found: {LT_ALG}")
    d = np.load(LT_ALG)
    bgr = d["images_uint8_bgr"]
    x = normalize_image(bgr, order="bgr", lt_bgr_quirk=True)
    np.testing.assert_allclose(x, d["images"], atol=2e-6)
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    np.testing.assert_array_equal(normalize_image(rgb, lt_bgr_quirk=True), x)  # dataset path: RGB in
    np.testing.assert_array_equal(denormalize_image(x, order="bgr", lt_bgr_quirk=True), bgr)
    # channel 0 of the quirk is blue with the red statistics; the standard input differs
    assert not np.allclose(normalize_image(rgb), x)


def _dots(shape, points, radius=3.0):
    img = np.full(shape, 25, np.uint8)
    for u, v in points:
        cv2.circle(
            img,
            (int(round(u * 16)), int(round(v * 16))),
            int(radius * 16),
            (255, 255, 255),
            -1,
            cv2.LINE_AA,
            4,
        )
    return img


def _centroid(img, u, v, r=6):
    g = img[..., 1].astype(np.float64) if img.ndim == 3 else img.astype(np.float64)
    x0, y0 = int(round(u)), int(round(v))
    win = g[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1] - 25.0
    win = np.clip(win, 0, None)
    ys, xs = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
    return (win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()


def test_undistort_frame_moves_dots_to_pinhole_projections():
    if not H36M_CAMERAS.is_file():
        pytest.skip(f"shared data not found: {H36M_CAMERAS}")
    from mvpose.calib import load_rig

    rig = load_rig(H36M_CAMERAS, subject="S9")
    assert rig.distortion_model == "h36m"
    v = rig.index("55011271")
    W, H = rig.image_size[v].tolist()
    # points spread over the frame (towards the corners, where the distortion is largest)
    uu, vv = np.meshgrid(np.linspace(80, W - 80, 6), np.linspace(80, H - 80, 6))
    und = torch.from_numpy(np.stack([uu.ravel(), vv.ravel()], -1))
    cam = rig.select([v])
    raw = cam.distort_points(und[None])[0].numpy()
    frame = _dots((H, W, 3), raw)
    out = undistort_frame(frame, rig, view=v)
    assert out.shape == frame.shape and out.dtype == np.uint8
    err = [np.hypot(*(np.array(_centroid(out, *p)) - p)) for p in und.numpy()]
    assert max(err) < 0.25, max(err)
    # the distorted frame itself is off by more than a pixel somewhere: the test has teeth
    assert max(np.hypot(*(raw - und.numpy()).T)) > 1.0
    maps = undistortion_maps(cam, (W, H))
    np.testing.assert_array_equal(undistort_frame(frame, cam, maps=maps), out)
