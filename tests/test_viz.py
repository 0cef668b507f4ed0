"""mvpose.viz and `mvpose viz`: pixels land where the joints project, files are written and read back.

The colour checks read the pixel at a joint's position: joints are filled discs of the side colour
(left blue, right red, centre grey), drawn anti-aliased but exact at their centre.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mvpose.calib import ring_rig
from mvpose.data.transforms import normalize_image
from mvpose.pipeline.detections import Detections
from mvpose.pipeline.triangulate import TriangulationResult, write_result
from mvpose.skeleton import H36M17
from mvpose.viz import (
    VideoWriter,
    draw_skeleton_2d,
    error_tables,
    heatmap_grid,
    pred_vs_gt_png,
    read_frames,
    render_overlay,
    reprojection_grid,
    select_frames,
    skeleton_3d_figure,
    to_uint8_images,
    write_error_report,
)
from mvpose.viz.overlay import project_result
from mvpose.viz.plot3d import SkeletonPlot3D, cube_limits
from mvpose.viz.style import CENTRE_RGB, LEFT_RGB, REJECTED_RGB, RIGHT_RGB, pale

DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "pose2sim_demo"
LK, RK, PELVIS = H36M17.index("left_knee"), H36M17.index("right_knee"), H36M17.index("pelvis")


def _close(pixel, rgb, tol: int = 12) -> bool:
    return bool(np.abs(np.asarray(pixel, int) - np.asarray(rgb, int)).max() <= tol)


def _pose_px(width: int = 100, height: int = 120) -> np.ndarray:
    """An upright H36M17 pose in image pixels (person facing the viewer: its left on the image right)."""
    s = np.array([width / 100, height / 120])
    pts = {
        "pelvis": (50, 60), "right_hip": (40, 60), "right_knee": (38, 85), "right_ankle": (38, 110),
        "left_hip": (60, 60), "left_knee": (62, 85), "left_ankle": (62, 110), "spine": (50, 45),
        "thorax": (50, 30), "neck_nose": (50, 22), "head": (50, 12), "left_shoulder": (65, 30),
        "left_elbow": (75, 45), "left_wrist": (82, 58), "right_shoulder": (35, 30), "right_elbow": (25, 45),
        "right_wrist": (18, 58),
    }  # fmt: skip
    return np.array([pts[n] for n in H36M17.joint_names], np.float64) * s


def _standing_pose_mm() -> np.ndarray:
    """An upright H36M17 pose (Z up, mm) at the origin of a ring rig's floor, in the y-z plane (facing +x)."""
    p = _pose_px()
    return np.stack([np.zeros(len(p)), (50 - p[:, 0]) * 12, (120 - p[:, 1]) * 14], -1)


# ------------------------------------------------------------------------------------------------ 2D
def test_draw_skeleton_2d_colours_sides_and_leaves_input_alone():
    img = np.zeros((120, 100, 3), np.uint8)
    pts = _pose_px()
    pts[H36M17.index("head")] = np.nan
    out = draw_skeleton_2d(img, torch.from_numpy(pts), "h36m17")
    assert out.shape == img.shape and out.dtype == np.uint8 and not img.any()
    for j, rgb in ((LK, LEFT_RGB), (RK, RIGHT_RGB), (PELVIS, CENTRE_RGB)):
        x, y = np.rint(pts[j]).astype(int)
        assert _close(out[y, x], rgb), (H36M17.joint_names[j], out[y, x])
    # the thigh (hip -> knee) is drawn in the knee's side colour halfway along
    mid = np.rint((pts[LK] + pts[H36M17.index("left_hip")]) / 2).astype(int)
    assert _close(out[mid[1], mid[0]], LEFT_RGB, tol=40)
    # the NaN head and its limb are not drawn: nothing above the neck
    neck_y = int(pts[H36M17.index("neck_nose")][1])
    assert not out[: neck_y - 6].any()
    # one colour for everything, and hollow + dashed ground truth in the paler tint
    single = draw_skeleton_2d(img, pts, "h36m17", color=(0, 255, 0))
    x, y = np.rint(pts[LK]).astype(int)
    assert _close(single[y, x], (0, 255, 0))
    gt = draw_skeleton_2d(img, pts, "h36m17", dashed=True)
    assert (gt.max(-1) > 0).sum() < 0.8 * (out.max(-1) > 0).sum()  # dashes and rings cover less
    assert (np.abs(gt.astype(int) - pale(LEFT_RGB, 0.35)).max(-1) < 12).any()


def test_draw_skeleton_2d_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        draw_skeleton_2d(np.zeros((10, 10, 3), np.float32), np.zeros((17, 2)), "h36m17")
    with pytest.raises(ValueError, match="17 joints"):
        draw_skeleton_2d(np.zeros((10, 10, 3), np.uint8), np.zeros((16, 2)), "h36m17")
    far = draw_skeleton_2d(np.zeros((10, 10, 3), np.uint8), np.full((17, 2), 1e12), "h36m17")
    assert not far.any()


def test_to_uint8_images_undoes_the_normalisation_and_the_bgr_quirk():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
    for x in (normalize_image(rgb), normalize_image(torch.from_numpy(rgb))):
        assert np.abs(to_uint8_images(x).astype(int) - rgb).max() <= 1
    quirk = normalize_image(rgb, lt_bgr_quirk=True)  # BGR channels with RGB statistics
    assert np.abs(to_uint8_images(quirk, bgr=True).astype(int) - rgb).max() <= 1
    assert np.array_equal(to_uint8_images(rgb), rgb)
    unit = to_uint8_images(np.full((3, 4, 4), 0.5, np.float32), mean=None, std=None)
    assert unit.shape == (4, 4, 3) and (unit == 128).all()


def test_reprojection_grid_draws_each_view_in_its_tile():
    V, H, W = 3, 120, 100
    imgs = normalize_image(np.full((V, H, W, 3), 90, np.uint8))
    pred = np.stack([_pose_px() + [4 * v, 0] for v in range(V)])
    gt = pred + [0, 6]
    grid = reprojection_grid(torch.from_numpy(imgs), pred, gt, "h36m17", labels=["a", "b", "c"])
    assert grid.dtype == np.uint8 and grid.shape == (H + 4, V * (W + 2) + 2, 3)
    for v in range(V):
        x, y = np.rint(pred[v, RK]).astype(int) + [2 + v * (W + 2), 2]
        assert _close(grid[y, x], RIGHT_RGB), v
    assert _close(grid[2 + H - 3, 2 + 3], (90, 90, 90), tol=2)  # the image shows through
    two_rows = reprojection_grid(imgs, pred, None, "h36m17", cols=2)
    assert two_rows.shape == (2 * (H + 2) + 2, 2 * (W + 2) + 2, 3)
    with pytest.raises(ValueError, match="pred_px"):
        reprojection_grid(imgs, pred[:2], None, "h36m17")


def test_heatmap_grid_peaks_where_the_heatmaps_peak():
    V, J, h, w = 2, 3, 16, 16
    yy, xx = np.mgrid[0:h, 0:w]
    hm = np.zeros((V, J, h, w), np.float32)
    hm[0, 1] = np.exp(-((xx - 4) ** 2 + (yy - 10) ** 2) / 2.0)
    hm[1, 2] = np.exp(-((xx - 12) ** 2 + (yy - 3) ** 2) / 2.0)
    imgs = np.zeros((V, 64, 64, 3), np.uint8)
    over = heatmap_grid(torch.from_numpy(hm), imgs)
    assert over.shape == (64 + 4, 2 * 66 + 2, 3)
    tile0 = over[2:66, 2:66].sum(-1)
    y, x = np.unravel_index(np.argmax(tile0[20:]), tile0[20:].shape)  # skip the label
    assert abs(x - (4 * 4 + 1.5)) <= 3 and abs(y + 20 - (10 * 4 + 1.5)) <= 3
    table = heatmap_grid(hm, tile_px=32)
    assert table.shape == (V * 33 + 1, J * 33 + 1, 3)


# ------------------------------------------------------------------------------------------------ 3D
def test_skeleton_3d_figure_shapes_and_colours():
    pose = _standing_pose_mm()
    img = skeleton_3d_figure(pose, skeleton="h36m17", size_px=200)
    assert img.shape == (200, 200, 3) and img.dtype == np.uint8

    def near(im, rgb):
        return (np.abs(im.astype(int) - rgb).max(-1) < 30).sum()

    assert near(img, LEFT_RGB) > 20 and near(img, RIGHT_RGB) > 20
    row = skeleton_3d_figure(
        torch.from_numpy(np.stack([pose, pose + 500])),
        np.stack([pose, pose]) + 50,
        "h36m17",
        ["a", "b"],
        size_px=160,
    )
    assert row.shape == (160, 320, 3)
    pose_nan = pose.copy()
    pose_nan[3:] = np.nan
    assert skeleton_3d_figure(pose_nan, skeleton="h36m17", size_px=120, up="-y").shape == (120, 120, 3)
    with pytest.raises(ValueError, match="17 joints"):
        skeleton_3d_figure(pose[:5], skeleton="h36m17")


def test_skeleton_3d_figure_is_upright():
    """With the world's up axis vertical the legs are drawn below the arms; ``up="-z"`` flips them."""
    pose = _standing_pose_mm()
    legs, arms = pose.copy(), pose.copy()
    lower = [H36M17.index(n) for n in H36M17.joint_names if n.endswith(("hip", "knee", "ankle"))]
    arms[lower] = np.nan
    legs[[j for j in range(17) if j not in lower]] = np.nan

    def mean_row(img):
        rows = np.nonzero(np.abs(img.astype(int) - LEFT_RGB).max(-1) < 30)[0]
        return rows.mean()

    for up, legs_below in (("z", True), ("-z", False)):
        plot = SkeletonPlot3D("h36m17", 17, size_px=200, up=up)
        limits = cube_limits(pose[None])
        assert (
            mean_row(plot.render(legs, limits=limits)) > mean_row(plot.render(arms, limits=limits))
        ) == legs_below


def test_pred_vs_gt_png_is_written_and_readable(tmp_path):
    V, H, W = 4, 96, 80
    imgs = np.full((V, H, W, 3), 120, np.uint8)
    px = np.stack([_pose_px(W, H)] * V)
    pose = _standing_pose_mm()
    path = pred_vs_gt_png(tmp_path / "sub" / "p.png", imgs, px, px + 2, pose, pose + 10, "h36m17", "epoch 3")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] == 360 and img.shape[1] > 360


# --------------------------------------------------------------------------------------------- video
def test_video_writer_mp4_gif_and_frames_round_trip(tmp_path):
    frames = [np.full((47, 63, 3), 20 * i, np.uint8) for i in range(7)]  # odd size: padded for MPEG-4
    with VideoWriter(tmp_path / "v.mp4", fps=12) as w:
        for f in frames:
            w.write(f)
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 7 and cap.get(cv2.CAP_PROP_FPS) == 12
    got = dict(read_frames(tmp_path / "v.mp4", [2, 5, 9]))
    assert got[2].shape == (48, 64, 3) and got[9] is None
    assert abs(float(got[2][8:40, 8:56].mean()) - 40) < 4 and abs(float(got[5][8:40, 8:56].mean()) - 100) < 4
    with VideoWriter(tmp_path / "v.gif", fps=10) as w:
        for f in frames:
            w.write(f)
    from PIL import Image

    assert Image.open(tmp_path / "v.gif").n_frames == 7
    with VideoWriter(tmp_path / "pngs", fps=10) as w:
        w.write(frames[1], number=42)
    assert cv2.imread(str(tmp_path / "pngs" / "frame_000042.png")) is not None
    w = VideoWriter(tmp_path / "bad.mp4")
    w.write(frames[0])
    with pytest.raises(ValueError, match="first was"):
        w.write(np.zeros((10, 10, 3), np.uint8))


# ------------------------------------------------------------------------------------------- studio
def _result(T: int = 4):
    """A result of ``T`` frames seen by 3 cameras of 320 x 240 px, its rig, the projections (T, V, J, 2)."""
    rig = ring_rig(
        3, radius_mm=3500, height_mm=1000, target_mm=(0, 0, 900), image_size=(320, 240), focal_px=220
    )
    X = np.stack([_standing_pose_mm() + [30 * t, 0, 0] for t in range(T)])
    px = rig.project(torch.from_numpy(X)).numpy()
    err = np.full((T, 3, 17), 2.0)
    err[:, 1, :5] = 40.0
    used = err < 10
    err[0, 2, 0] = np.nan
    r = TriangulationResult(
        X,
        err,
        used,
        np.zeros((T, 3), np.int64),
        H36M17.joint_names,
        rig.names,
        np.arange(10, 10 + T),
        "h36m17",
    )
    return r, rig, px


def test_error_tables_and_report(tmp_path):
    r, _, _ = _result()
    tab = error_tables(r)
    assert tab.median_error_px.shape == (3, 17)
    assert tab.median_error_px[1, 0] == 40.0 and tab.median_error_px[0, 0] == 2.0
    assert tab.observations[2, 0] == 3 and tab.observations[0, 0] == 4
    np.testing.assert_allclose(tab.camera_exclusion_rate, [0, 5 / 17, 0])
    assert tab.exclusion_rate[1, :5].tolist() == [1.0] * 5
    paths = write_error_report(r, tmp_path)
    img = cv2.imread(str(paths["errors_png"]))
    assert img is not None and img.shape[1] == 1400
    rows = paths["errors_csv"].read_text().splitlines()
    assert len(rows) == 1 + 3 * 17 and rows[1 + 17].startswith("cam_02,pelvis,4,4,1,40")


def test_overlay_on_blank_canvas_puts_joints_where_they_project(tmp_path):
    r, rig, px = _result()
    kp = np.concatenate([px, np.ones(px.shape[:-1] + (1,))], -1).transpose(1, 0, 2, 3)  # (V, T, J, 3)
    kp[1, :, LK, :2] = [30.0, 200.0]  # camera 2 saw the left knee somewhere else; it was rejected
    r.views_used[:, 1, LK] = False
    det = Detections(kp, ["cam_01", "cam_02", "cam_03"], np.arange(10, 14), skeleton="h36m17")
    paths = render_overlay(
        r, rig, tmp_path, detections=det, frames=np.array([1, 2]), fmt="png", max_size=None
    )
    assert sorted(paths) == ["cam_01", "cam_02", "cam_03"]
    for v, cam in enumerate(r.camera_names):
        files = sorted(paths[cam].iterdir())
        assert [f.name for f in files] == ["frame_000011.png", "frame_000012.png"]
        img = cv2.imread(str(files[1]))[..., ::-1]
        assert img.shape == (240, 320, 3)
        for j, rgb in ((LK, LEFT_RGB), (RK, RIGHT_RGB)):
            x, y = np.rint(px[2, v, j]).astype(int)
            if not r.views_used[2, v, j] and np.allclose(kp[v, 2, j, :2], px[2, v, j]):
                rgb = REJECTED_RGB  # a rejected detection on the joint: crossed out
            assert _close(img[y, x], rgb, tol=20), (cam, H36M17.joint_names[j], img[y, x])
    img = cv2.imread(str(paths["cam_02"] / "frame_000012.png"))[..., ::-1]
    assert _close(img[200, 30], REJECTED_RGB, tol=40)
    mp4 = render_overlay(r, rig, tmp_path / "mp4", max_size=160, mosaic=True)
    cap = cv2.VideoCapture(str(mp4["mosaic"]))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 4 and cv2.VideoCapture(str(mp4["cam_01"])).get(cv2.CAP_PROP_FRAME_WIDTH) == 160
    with pytest.raises(ValueError, match="do not include"):
        render_overlay(r, ring_rig(2), tmp_path)


def test_select_frames():
    fi = np.arange(100, 110)
    assert select_frames(fi, "102:105").tolist() == [2, 3, 4]
    assert select_frames(fi, ":102").tolist() == [0, 1]
    assert select_frames(fi, "::4").tolist() == [0, 4, 8]
    assert select_frames(fi, "107").tolist() == [7]
    assert len(select_frames(fi, None)) == 10
    for bad in ("a:b", "1:2:0", "500:600"):
        with pytest.raises(ValueError, match="--frames"):
            select_frames(fi, bad)


def test_cli_viz_errors_and_animation(tmp_path, capsys):
    from mvpose.commands import viz

    r, _, _ = _result(T=5)
    write_result(r, tmp_path / "r.npz")
    parser = argparse.ArgumentParser(prog="mvpose")
    viz.register(parser.add_subparsers(dest="command", required=True))
    for argv in (
        ["viz", "errors", "--result", tmp_path / "r.npz", "--out", tmp_path / "o"],
        ["viz", "animation", "--result", tmp_path / "r.npz", "--out", tmp_path / "o", "--frames", "11:",
         "--size", "160"],
    ):  # fmt: skip
        args = parser.parse_args(list(map(str, argv)))
        assert args.func(args) == 0
    assert "errors_png" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(tmp_path / "o" / "skeleton_3d.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 4  # frames 11..14
    assert cv2.imread(str(tmp_path / "o" / "skeleton_3d.png")) is not None


@pytest.mark.skipif(not DEMO.is_dir(), reason=f"Pose2Sim demo not found at {DEMO}")
def test_overlay_on_the_pose2sim_demo_videos(tmp_path):
    from mvpose.calib import load_rig
    from mvpose.pipeline.detections import load_detections
    from mvpose.pipeline.triangulate import triangulate_capture

    det = load_detections(DEMO / "pose", "body25b")
    det = Detections(det.keypoints[:, :3], det.camera_names, det.frame_indices[:3], skeleton="body25b")
    rig = load_rig(DEMO / "calibration" / "Calib_qualisys.toml")
    r = triangulate_capture(rig, det, progress=False)
    paths = render_overlay(r, rig, tmp_path, videos=DEMO / "videos", fmt="png", max_size=480)
    px = project_result(r, rig)
    neck = r.joint_names.index("neck")
    for v, cam in enumerate(r.camera_names):
        img = cv2.imread(str(paths[cam] / "frame_000002.png"))[..., ::-1]
        assert img.shape[0] == 480 and img.shape[1] in (270, 272)
        x, y = np.rint(px[2, v, neck] * 0.25).astype(int)
        assert _close(img[y, x], CENTRE_RGB, tol=40), (cam, img[y, x])
