"""`mvpose calibrate`: boards rendered through known cameras must be recovered.

The helpers render a board texture through a known OpenCV camera (pinhole + distortion) for several
board poses: every output pixel is undistorted (``cv2.undistortPoints``), mapped onto the board plane by
the inverse homography of the board pose and sampled from the texture (``cv2.remap``), which is the
``warpPerspective`` of the board image plus the lens distortion. Four 640x480 cameras, 10-12 poses.
"""

from __future__ import annotations

import argparse
import json
import math

import cv2
import numpy as np
import pytest

from mvpose.calib import load_rig
from mvpose.calib.board import (
    BoardNotFoundError,
    CalibrateError,
    CameraDetections,
    Detection,
    detect_board,
    frame_indices,
    iter_video_frames,
    parse_board,
)
from mvpose.calib.calibrate import (
    bundle_adjust,
    calibrate_intrinsics,
    calibrate_rig,
    detect_cameras,
    initial_extrinsics,
    rodrigues,
)
from mvpose.calib.synthetic import look_at
from mvpose.commands import calibrate as calibrate_cmd

SIZE = (640, 480)
CHECKER = "checkerboard:10x7:40"
CHARUCO = "charuco:9x7:40:26:DICT_4X4_50"


# ------------------------------------------------------------------------------------------ rendering
def board_texture(board, px_per_mm: float = 2.0) -> tuple[np.ndarray, float]:
    """The board image (white margin of one square) and the margin in mm; slightly blurred against
    aliasing."""
    m = board.square_mm
    w = int(round((board.cols * board.square_mm + 2 * m) * px_per_mm))
    h = int(round((board.rows * board.square_mm + 2 * m) * px_per_mm))
    if board.kind == "charuco":
        tex = board.opencv_board().generateImage((w, h), marginSize=int(round(m * px_per_mm)))
    else:
        v, u = np.mgrid[0:h, 0:w]
        c = np.floor(((u + 0.5) / px_per_mm - m) / board.square_mm)
        r = np.floor(((v + 0.5) / px_per_mm - m) / board.square_mm)
        inside = (c >= 0) & (c < board.cols) & (r >= 0) & (r < board.rows)
        tex = np.where(inside & ((c + r) % 2 == 0), 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(tex, (0, 0), 0.75 * px_per_mm), m


def pixel_rays(K, dist) -> np.ndarray:
    """Undistorted normalised coordinates ``(H * W, 1, 2)`` of every pixel of a camera."""
    v, u = np.mgrid[0 : SIZE[1], 0 : SIZE[0]].astype(np.float64)
    return cv2.undistortPoints(np.stack([u.ravel(), v.ravel()], -1)[:, None], K, dist)


def render(tex, margin_mm, rays, R_cb, t_cb, px_per_mm: float = 2.0) -> np.ndarray:
    """The board seen by a camera; ``R_cb, t_cb``: board to camera (mm)."""
    H = np.column_stack([R_cb[:, 0], R_cb[:, 1], t_cb])  # board plane (X, Y, 1) -> normalised image
    XY = cv2.perspectiveTransform(rays, np.linalg.inv(H)).reshape(SIZE[1], SIZE[0], 2)
    maps = ((XY + margin_mm) * px_per_mm - 0.5).astype(np.float32)
    return cv2.remap(tex, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderValue=150)


def true_cameras():
    """Four cameras on an arc 700 mm from the origin, each with its own intrinsics and distortion."""
    cams = []
    for k, (az, height, f, k1) in enumerate(
        [(-35, 350, 560, -0.15), (-12, 150, 600, -0.1), (12, 450, 540, -0.2), (35, 250, 580, -0.12)]
    ):
        a = math.radians(az)
        R, t = look_at((700 * math.sin(a), -700 * math.cos(a), height), (0, 0, 0))
        K = np.array([[f, 0, 311 + 6 * k], [0, f * 1.003, 244 - 5 * k], [0, 0, 1]])
        dist = np.array([k1, 0.06, 0.0008 * (k - 1.5), -0.0005, 0.0])
        cams.append({"name": f"cam{k}", "K": K, "dist": dist, "R": R, "t": t})
    return cams


def true_board_poses(board, n: int, seed: int):
    """Board-to-world poses facing the cameras (board z along +y), tilted up to ~45 degrees."""
    rng = np.random.default_rng(seed)
    base = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # columns: board x, y, z in the world
    centre = np.array([board.cols, board.rows, 0]) * board.square_mm / 2
    poses = []
    for _ in range(n):
        Rb = cv2.Rodrigues(rng.uniform(-1, 1, 3) * np.array([0.8, 0.3, 0.8]))[0] @ base
        poses.append((Rb, rng.uniform(-1, 1, 3) * np.array([150, 150, 100]) - Rb @ centre))
    return poses


def render_scene(spec: str, n: int, seed: int = 0):
    """``{camera: [image per frame]}``, the cameras and the board poses."""
    board = parse_board(spec)
    tex, margin = board_texture(board)
    cams, poses = true_cameras(), true_board_poses(board, n, seed)
    images = {}
    for c in cams:
        rays = pixel_rays(c["K"], c["dist"])
        images[c["name"]] = [render(tex, margin, rays, c["R"] @ Rb, c["R"] @ tb + c["t"]) for Rb, tb in poses]
    return board, cams, poses, images


def write_images(root, images) -> None:
    for name, frames in images.items():
        (root / name).mkdir(parents=True)
        for f, img in enumerate(frames):
            cv2.imwrite(str(root / name / f"{f:04d}.png"), img)


def centres_in_cam0(cams) -> np.ndarray:
    R0, t0 = cams[0]["R"], cams[0]["t"]
    return np.stack([R0 @ (-c["R"].T @ c["t"]) + t0 for c in cams])


def rig_size(centres) -> float:
    return float(np.linalg.norm(centres[:, None] - centres[None], axis=-1).max())


def assert_intrinsics(rig, cams, tol=0.01):
    for k, c in enumerate(cams):
        K = rig.K[k].numpy()
        got = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        want = np.array([c["K"][0, 0], c["K"][1, 1], c["K"][0, 2], c["K"][1, 2]])
        rel = np.abs(got - want) / want
        assert rel.max() < tol, f"{c['name']}: fx fy cx cy {got} vs {want} (relative error {rel})"


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    board, cams, poses, images = render_scene(CHECKER, n=12)
    root = tmp_path_factory.mktemp("checker")
    write_images(root / "images", images)
    return {"board": board, "cams": cams, "poses": poses, "images": images, "root": root}


@pytest.fixture(scope="module")
def checker_dets(checker):
    return detect_cameras(checker["board"], images=checker["root"] / "images")


@pytest.fixture(scope="module")
def charuco(tmp_path_factory):
    board, cams, poses, images = render_scene(CHARUCO, n=10, seed=0)
    root = tmp_path_factory.mktemp("charuco")
    write_images(root / "images", images)
    return {"board": board, "cams": cams, "poses": poses, "images": images, "root": root}


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    calibrate_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


# ------------------------------------------------------------------------------------------ board specs
def test_parse_board_specs_and_layout():
    b = parse_board("checkerboard:10x7:25")
    assert (b.kind, b.cols, b.rows, b.square_mm, b.inner_corners, b.num_corners) == (
        "checkerboard",
        10,
        7,
        25.0,
        (9, 6),
        54,
    )
    assert not b.orientation_ambiguous and parse_board("checkerboard:8x6:25").orientation_ambiguous
    assert parse_board(b.spec()) == b
    c = parse_board("charuco:7x5:40:30:4x4_50:legacy")
    assert (c.dictionary, c.legacy, c.marker_mm) == ("DICT_4X4_50", True, 30.0)
    assert parse_board(c.spec()) == c
    # the corner layout is OpenCV's ChArUco one, for both kinds
    ref = parse_board("charuco:7x5:40:30:DICT_4X4_50").opencv_board().getChessboardCorners()
    np.testing.assert_allclose(parse_board("checkerboard:7x5:40").object_points_mm, ref, atol=1e-4)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("checkerboard:9x6", "checkerboard:COLSxROWS:SQUARE_MM"),
        ("chess:9x6:20", "COLSxROWS counts squares"),
        ("checkerboard:9x6:abc", "sizes must be numbers"),
        ("checkerboard:2x6:20", "too small"),
        ("charuco:7x5:40:45:DICT_4X4_50", "smaller than the square"),
        ("charuco:7x5:40:30:DICT_9X9_1", "unknown ArUco dictionary"),
    ],
)
def test_parse_board_errors(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_board(spec)


@pytest.mark.parametrize("method", ["classic", "sb"])
def test_checkerboard_numbering_is_canonical(checker, method):
    """Every detector numbers the corners as the board does, also on a board seen upside down."""
    board, cam = checker["board"], checker["cams"][1]
    Rb, tb = checker["poses"][0]
    rvec = cv2.Rodrigues(cam["R"] @ Rb)[0]
    truth = cv2.projectPoints(board.object_points_mm, rvec, cam["R"] @ tb + cam["t"], cam["K"], cam["dist"])[
        0
    ]
    img = checker["images"]["cam1"][0]
    for upside_down in (False, True):
        det = detect_board(img[::-1, ::-1].copy() if upside_down else img, board, checkerboard_method=method)
        assert det is not None
        px = np.array([SIZE[0] - 1, SIZE[1] - 1]) - det.corners_px if upside_down else det.corners_px
        np.testing.assert_allclose(px, truth.reshape(-1, 2)[det.ids], atol=0.5)


def test_frame_indices_and_video_decoding(tmp_path):
    np.testing.assert_array_equal(frame_indices(10, every=3), [0, 3, 6, 9])
    np.testing.assert_array_equal(frame_indices(100, every=2, max_frames=5), [0, 24, 48, 74, 98])
    with pytest.raises(ValueError, match="every"):
        frame_indices(10, every=0)
    path = tmp_path / "count.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10, (32, 24), isColor=False)
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write FFV1 videos here")
    for k in range(9):
        writer.write(np.full((24, 32), 20 * k, np.uint8))
    writer.release()
    got = [
        (i, int(img[..., 0].mean().round())) for i, img in iter_video_frames(path, frame_indices(9, every=4))
    ]
    assert got == [(0, 0), (4, 80), (8, 160)]


# ------------------------------------------------------------------------------------------ recovery
def test_cli_checkerboard_recovers_the_rig(checker, tmp_path, capsys):
    """Intrinsics within 1 %, camera centres within 1 % of the rig size; TOML and JSON report written."""
    out = tmp_path / "calib.toml"
    argv = [
        "calibrate",
        "--images",
        str(checker["root"] / "images"),
        "--board",
        CHECKER,
        "--out",
        str(out),
        "--fix-k3",
    ]
    assert run_cli(argv) == 0
    table = capsys.readouterr().out
    assert "BA RMS px" in table and "cam3" in table
    rig = load_rig(out)
    cams = checker["cams"]
    assert rig.names == ("cam0", "cam1", "cam2", "cam3")
    assert rig.image_size.tolist() == [list(SIZE)] * 4
    assert_intrinsics(rig, cams)
    want = centres_in_cam0(cams)
    err = np.linalg.norm(rig.centers().numpy() - want, axis=-1)
    assert err.max() < 0.01 * rig_size(want), f"centre errors {err} mm, rig size {rig_size(want):.0f} mm"
    np.testing.assert_allclose(rig.dist[:, 0].numpy(), [c["dist"][0] for c in cams], atol=0.02)
    report = json.loads((tmp_path / "calib_report.json").read_text())
    assert report["bundle_adjusted"] and report["reference"] == "cam0"
    for cam in report["cameras"]:
        assert cam["frames_tried"] == 12 and cam["frames_with_board"] >= 6
        assert cam["intrinsics_rms_px"] < 0.2 and cam["bundle_adjusted_rms_px"] < 0.2
    # the adjustment starts from the chained initialisation and lowers the total squared error
    cams_r = report["cameras"]
    sq = [
        sum(c["observations"] * c[k] ** 2 for c in cams_r)
        for k in ("extrinsics_init_rms_px", "bundle_adjusted_rms_px")
    ]
    assert sq[1] <= sq[0]


def test_charuco_recovers_the_rig_with_refined_intrinsics(charuco):
    dets = detect_cameras(charuco["board"], images=charuco["root"] / "images")
    assert all(0 < len(d.frames) < d.tried or len(d.frames) == d.tried for d in dets)
    assert any(len(det.ids) < charuco["board"].num_corners for d in dets for det in d.detections)  # partial
    res = calibrate_rig(dets, charuco["board"], refine_intrinsics=True, fix_k3=True)
    cams = charuco["cams"]
    assert_intrinsics(res.rig, cams)
    want = centres_in_cam0(cams)
    err = np.linalg.norm(res.rig.centers().numpy() - want, axis=-1)
    assert err.max() < 0.01 * rig_size(want), f"centre errors {err} mm"
    assert res.report.bundle_adjustment["refine_intrinsics"]
    assert max(c["bundle_adjusted_rms_px"] for c in res.report.cameras) < 0.3


def test_world_board_frame(checker, checker_dets):
    """``world="board"``: the world is the board at the chosen frame, Z out of its printed face."""
    res = calibrate_rig(checker_dets, checker["board"], world="board", world_frame=3, fix_k3=True)
    Rb, tb = checker["poses"][3]
    flip = np.diag([1.0, -1.0, -1.0])
    centres = []
    for c in checker["cams"]:
        R_cw = c["R"] @ Rb @ flip  # world (board at frame 3, flipped) to camera
        t_cw = c["R"] @ tb + c["t"]
        centres.append(-R_cw.T @ t_cw)
    centres = np.stack(centres)
    err = np.linalg.norm(res.rig.centers().numpy() - centres, axis=-1)
    assert err.max() < 0.01 * rig_size(centres)
    assert (centres[:, 2] > 0).all()  # the cameras are in front of the printed face: Z > 0
    np.testing.assert_allclose(res.board_poses[3], np.diag([1.0, -1.0, -1.0, 1.0]), atol=1e-9)
    assert res.report.world == "board" and res.report.world_frame == 3


def test_known_intrinsics_only_extrinsics(checker, checker_dets):
    """``known_intrinsics=``: K and dist are kept (by camera name), only the extrinsics are solved."""
    import torch

    from mvpose.geometry.camera import CameraRig

    cams = checker["cams"][::-1]  # another order than the detections: matched by name
    known = CameraRig(
        K=torch.tensor(np.stack([c["K"] for c in cams])),
        R=torch.eye(3, dtype=torch.float64).expand(4, 3, 3),
        t=torch.zeros(4, 3, dtype=torch.float64),
        dist=torch.tensor(np.stack([c["dist"] for c in cams])),
        names=[c["name"] for c in cams],
    )
    res = calibrate_rig(checker_dets, checker["board"], known_intrinsics=known, reference="cam2")
    np.testing.assert_allclose(res.rig.K.numpy(), np.stack([c["K"] for c in checker["cams"]]))
    want = centres_in_cam0(checker["cams"])
    got = res.rig.centers().numpy()
    got_in_cam0 = (res.rig.R[0].numpy() @ got.T).T + res.rig.t[0].numpy()  # world is cam2 here
    assert np.linalg.norm(got_in_cam0 - want, axis=-1).max() < 0.005 * rig_size(want)
    assert res.report.reference == "cam2" and np.allclose(res.rig.t[2].numpy(), 0)


def test_bundle_adjustment_repairs_a_perturbed_initialisation(checker, checker_dets):
    board, cams = checker["board"], checker["cams"]
    intr = [calibrate_intrinsics(d, board, fix_k3=True) for d in checker_dets]
    vec = np.stack([[r.K[0, 0], r.K[1, 1], r.K[0, 2], r.K[1, 2], *r.dist] for r in intr])
    T_cam, T_board = initial_extrinsics(intr, board)
    rng = np.random.default_rng(3)
    bad = T_cam.copy()
    for v in range(1, 4):  # 3 degrees and 40 mm off
        axis = rng.normal(size=3)
        bad[v, :3, :3] = rodrigues(math.radians(3) * axis / np.linalg.norm(axis)) @ bad[v, :3, :3]
        bad[v, :3, 3] += 40 * rng.normal(size=3) / math.sqrt(3)
    want = centres_in_cam0(cams)
    out = bundle_adjust(checker_dets, board, vec, bad, T_board)
    assert out["rms_initial_px"][1:].min() > 3.0
    assert out["rms_px"].max() < 0.2
    C = -np.einsum("vji,vj->vi", out["T_cam"][:, :3, :3], out["T_cam"][:, :3, 3])
    assert np.linalg.norm(C - want, axis=-1).max() < 0.01 * rig_size(want)
    np.testing.assert_allclose(out["T_cam"][0], np.eye(4))  # the reference stays put
    plain = bundle_adjust(checker_dets, board, vec, bad, T_board, precondition=False)  # same optimum
    np.testing.assert_allclose(plain["T_cam"], out["T_cam"], atol=1e-3)


def test_robust_loss_resists_outlier_corners(checker, checker_dets):
    board, cams = checker["board"], checker["cams"]
    rng = np.random.default_rng(5)
    noisy = []
    for d in checker_dets:  # 3 % of the corners moved by 15-30 px
        dets = []
        for det in d.detections:
            px = det.corners_px.copy()
            hit = rng.random(len(px)) < 0.03
            px[hit] += rng.uniform(15, 30, (hit.sum(), 2)) * rng.choice([-1, 1], (hit.sum(), 2))
            dets.append(Detection(det.ids, px))
        noisy.append(CameraDetections(d.name, d.image_size, list(d.frames), dets, d.tried, d.source))
    intr = [calibrate_intrinsics(d, board, fix_k3=True) for d in checker_dets]  # clean intrinsics
    vec = np.stack([[r.K[0, 0], r.K[1, 1], r.K[0, 2], r.K[1, 2], *r.dist] for r in intr])
    T_cam, T_board = initial_extrinsics(intr, board)
    want = centres_in_cam0(cams)
    errs = {}
    for loss in ("linear", "soft_l1"):
        out = bundle_adjust(noisy, board, vec, T_cam, T_board, loss=loss, loss_scale_px=1.0)
        C = -np.einsum("vji,vj->vi", out["T_cam"][:, :3, :3], out["T_cam"][:, :3, 3])
        errs[loss] = np.linalg.norm(C - want, axis=-1).max()
    assert errs["soft_l1"] < 0.01 * rig_size(want)
    assert errs["soft_l1"] < errs["linear"]


def test_cli_videos_and_intrinsics_only(charuco, tmp_path):
    vids = tmp_path / "videos"
    vids.mkdir()
    for name, frames in charuco["images"].items():
        w = cv2.VideoWriter(
            str(vids / f"{name}.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 10, SIZE, isColor=False
        )
        if not w.isOpened():
            pytest.skip("OpenCV cannot write FFV1 videos here")
        for img in frames:
            w.write(img)
        w.release()
    out = tmp_path / "intrinsics.json"
    argv = [
        "calibrate",
        "--videos",
        str(vids),
        "--board",
        CHARUCO,
        "--out",
        str(out),
        "--intrinsics-only",
        "--fix-k3",
        "--every",
        "1",
        "--max-frames",
        "10",
        "--report",
        str(tmp_path / "r.json"),
    ]
    assert run_cli(argv) == 0
    rig = load_rig(out)
    assert rig.names == ("cam0", "cam1", "cam2", "cam3")
    np.testing.assert_allclose(rig.R.numpy(), np.broadcast_to(np.eye(3), (4, 3, 3)))
    np.testing.assert_allclose(rig.t.numpy(), 0.0)
    assert_intrinsics(rig, charuco["cams"], tol=0.02)
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["bundle_adjusted"] and [c["frames_tried"] for c in report["cameras"]] == [10] * 4


# ------------------------------------------------------------------------------------------ errors
def test_board_not_found_names_camera_frames_and_board(tmp_path):
    root = tmp_path / "images"
    (root / "left").mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(root / "left" / f"{k}.png"), np.full((120, 160), 128, np.uint8))
    dets = detect_cameras(CHECKER, images=root)
    with pytest.raises(BoardNotFoundError) as exc:
        calibrate_rig(dets, CHECKER)
    msg = str(exc.value)
    assert "'left'" in msg and "3 frames" in msg and "checkerboard 10x7 squares (9x6 inner corners)" in msg


def test_too_few_frames_and_disconnected_cameras(checker, checker_dets):
    board = checker["board"]
    d = checker_dets[1]
    few = CameraDetections(d.name, d.image_size, d.frames[:2], d.detections[:2], 12, d.source)
    with pytest.raises(CalibrateError, match=r"'cam1'.*only 2 of the 12 frames.*at least 4"):
        calibrate_intrinsics(few, board)
    # cam3's frames shifted in time: it never sees the board together with another camera
    d3 = checker_dets[3]
    alone = CameraDetections(
        d3.name, d3.image_size, [f + 100 for f in d3.frames], d3.detections, 12, d3.source
    )
    with pytest.raises(CalibrateError, match=r"cameras \['cam3'\] never see the board in the same frame"):
        calibrate_rig([*checker_dets[:3], alone], board, fix_k3=True)


def test_cli_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--images"):
        run_cli(["calibrate", "--images", str(tmp_path / "nope"), "--board", CHECKER, "--out", "x.toml"])
    (tmp_path / "empty" / "cam0").mkdir(parents=True)
    with pytest.raises(CalibrateError, match="no camera sub-folders with images"):
        run_cli(["calibrate", "--images", str(tmp_path / "empty"), "--board", CHECKER, "--out", "x.toml"])
    root = tmp_path / "sizes" / "cam0"
    root.mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), np.zeros((40, 60), np.uint8))
    cv2.imwrite(str(root / "b.png"), np.zeros((50, 60), np.uint8))
    with pytest.raises(CalibrateError, match=r"camera 'cam0': image .*b.png' is 60x50 px"):
        detect_cameras(CHECKER, images=tmp_path / "sizes")
    with pytest.raises(ValueError, match="board spec"):
        run_cli(["calibrate", "--images", str(tmp_path), "--board", "checkerboard:9", "--out", "x.toml"])


# ------------------------------------------------------------------------------------------ figures
def _figures() -> None:
    """Figures of docs/calibrate.md: ``python tests/test_calibrate.py``."""
    import time

    for spec, n, refine in ((CHECKER, 12, False), (CHARUCO, 10, False), (CHARUCO, 10, True)):
        board, cams, _, images = render_scene(spec, n)
        t0 = time.perf_counter()
        dets = []
        for c in cams:
            d = CameraDetections(c["name"], SIZE, source="rendered")
            for f, img in enumerate(images[c["name"]]):
                d.tried += 1
                det = detect_board(img, board)
                if det is not None:
                    d.frames.append(f)
                    d.detections.append(det)
            dets.append(d)
        t1 = time.perf_counter()
        res = calibrate_rig(dets, board, fix_k3=True, refine_intrinsics=refine)
        t2 = time.perf_counter()
        K = res.rig.K.numpy()
        got = np.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]], -1)
        want = np.array([[c["K"][0, 0], c["K"][1, 1], c["K"][0, 2], c["K"][1, 2]] for c in cams])
        centres = centres_in_cam0(cams)
        err = np.linalg.norm(res.rig.centers().numpy() - centres, axis=-1).max()
        ba = max(c["bundle_adjusted_rms_px"] for c in res.report.cameras)
        print(
            f"{spec} ({len(images) * n} images{', refine_intrinsics' if refine else ''}): "
            f"max |K error| {100 * (np.abs(got - want) / want).max():.2f} %, max centre error {err:.2f} mm = "
            f"{100 * err / rig_size(centres):.3f} % of the rig, BA RMS <= {ba:.3f} px; "
            f"detection {t1 - t0:.2f} s, calibration {t2 - t1:.2f} s"
        )
    # bundle adjustment alone on more frames: projected corners + 0.1 px noise, views fully in the image
    board, cams = parse_board(CHECKER), true_cameras()
    rng = np.random.default_rng(0)
    poses = true_board_poses(board, 300, seed=1)
    dets = [CameraDetections(c["name"], SIZE, source="projected") for c in cams]
    for f, (Rb, tb) in enumerate(poses):
        for d, c in zip(dets, cams):
            R, t = c["R"] @ Rb, c["R"] @ tb + c["t"]
            px = cv2.projectPoints(board.object_points_mm, cv2.Rodrigues(R)[0], t, c["K"], c["dist"])[0][:, 0]
            if R[2, 2] > 0.4 and (px > 5).all() and (px < np.array(SIZE) - 5).all():
                d.frames.append(f)
                d.detections.append(Detection(np.arange(len(px)), px + rng.normal(0, 0.1, px.shape)))
    intr = [calibrate_intrinsics(d, board, fix_k3=True) for d in dets]
    vec = np.stack([[r.K[0, 0], r.K[1, 1], r.K[0, 2], r.K[1, 2], *r.dist] for r in intr])
    T_cam, T_board = initial_extrinsics(intr, board)
    for refine in (False, True):
        for pre in (True, False):
            t0 = time.perf_counter()
            out = bundle_adjust(
                dets, board, vec, T_cam, T_board, refine_intrinsics=refine, fix_k3=True, precondition=pre
            )
            print(
                f"bundle adjustment, {out['frames']} frames, {out['observations'].sum()} corners, "
                f"refine_intrinsics={refine}, precondition={pre}: {time.perf_counter() - t0:.2f} s, "
                f"{out['nfev']} evaluations, cost {out['cost_final']:.2f}"
            )


if __name__ == "__main__":
    _figures()
