"""``mvpose infer``: the Pose2Sim demo against Pose2Sim's own 3D, sync offsets and frame ranges on the
example capture, multi-person mode, and videos through a stand-in multi-view model.

Figures (docs/infer.md): on the Pose2Sim demo the default robust+refine gives a median reprojection
error of 9.8 px (p90 19.3) and lies 8.8 mm (median) from Pose2Sim's TRC, 4.7 mm after the same
Butterworth filter (4th order, 6 Hz) as Pose2Sim's; over the same confident detections, our joints
reproject with a median of 11.2 px (p90 23.5), the TRC's with 11.0 px (p90 28.9).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_cli_triangulate import read_trc_world_mm

from mvpose.calib import load_rig, ring_rig
from mvpose.commands import infer
from mvpose.geometry.triangulation import triangulate_dlt
from mvpose.pipeline.detections import load_detections
from mvpose.pipeline.example import write_example
from mvpose.pipeline.triangulate import read_result
from mvpose.pipeline.videos import infer_videos

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO = DATA / "pose2sim_demo"
needs_demo = pytest.mark.skipif(not DEMO.is_dir(), reason=f"Pose2Sim demo not found at {DEMO}")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_cli(capsys, *args) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="mvpose")
    infer.register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["infer", *map(str, args), "-q"])
    code = ns.func(ns)
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> dict[str, Path]:
    return write_example(tmp_path_factory.mktemp("example"), seed=1, num_frames=30)


def _mpjpe(points, gt) -> float:
    return float(np.nanmean(np.linalg.norm(points - gt, axis=-1)))


# ------------------------------------------------------------------------------------ Pose2Sim demo
@needs_demo
def test_pose2sim_demo_against_trc(tmp_path, capsys, request):
    show = request.config.getoption("capture") == "no"  # pytest -s prints the figures
    calib = DEMO / "calibration" / "Calib_qualisys.toml"
    code, out = run_cli(
        capsys,
        "--calib",
        calib,
        "--detections",
        DEMO / "pose",
        "--skeleton",
        "body25b",
        "--out",
        tmp_path / "a.npz",
    )
    assert code == 0 and "reprojection error: median" in out and "rejected" in out
    res = read_result(tmp_path / "a.npz")
    o = res.overall()
    assert 9.0 < o["median_error_px"] < 10.6 and o["p90_error_px"] < 21.0  # measured 9.8 / 19.3
    names, trc = read_trc_world_mm(DEMO / "pose-3d" / "Balancing_for_IK.trc")
    idx = [res.joint_names.index(n) for n in names]
    d = np.linalg.norm(res.points_3d_mm[:, idx] - trc, axis=-1)
    assert np.nanmedian(d) < 10.0  # 8.8 mm
    per_marker = np.nanmedian(d, axis=0)
    assert per_marker.max() < 25.0  # right_shoulder 19.8 mm is the farthest
    # Pose2Sim's TRC reprojected through the same calibration onto the same detections
    rig = load_rig(calib).to(dtype=torch.float64)
    det = load_detections(DEMO / "pose", "body25b")
    V, T = det.num_views, det.num_frames
    pi = res.person_index.T  # (V, T)
    sub = det.keypoints[np.arange(V)[:, None], np.arange(T)[None], np.clip(pi, 0, None)][:, :, idx]
    ok = (pi >= 0)[..., None] & (np.nan_to_num(sub[..., 2]) >= 0.3)

    def reproj(points):
        px = rig.project(torch.from_numpy(points)).numpy().transpose(1, 0, 2, 3)
        return np.linalg.norm(px - sub[..., :2], axis=-1)

    e_ours, e_trc = reproj(res.points_3d_mm[:, idx]), reproj(trc)
    both = ok & np.isfinite(e_ours) & np.isfinite(e_trc)
    assert both.sum() > 8000
    med_ours, med_trc = np.median(e_ours[both]), np.median(e_trc[both])
    p90_ours, p90_trc = np.percentile(e_ours[both], 90), np.percentile(e_trc[both], 90)
    if show:  # the figures of docs/infer.md
        with capsys.disabled():
            print(f"\n{both.sum()} detections: ours {med_ours:.2f} / {p90_ours:.2f} px (median / p90)")
            print(f"TRC {med_trc:.2f} / {p90_trc:.2f} px")
            print(
                f"distance to the TRC: median {np.nanmedian(d):.1f} mm, p90 {np.nanpercentile(d, 90):.1f} mm"
            )
            print(f"{'marker':<16}{'mm':>6}{'ours px':>8}{'TRC px':>8}")
            for m, n in enumerate(names):
                eo = np.nanmedian(np.where(both, e_ours, np.nan)[:, :, m])
                et = np.nanmedian(np.where(both, e_trc, np.nan)[:, :, m])
                print(f"{n:<16}{per_marker[m]:6.1f}{eo:8.1f}{et:8.1f}")
    assert abs(med_ours - med_trc) < 1.0 and p90_ours < p90_trc  # 11.2 vs 11.0; 23.5 vs 28.9
    # with Pose2Sim's filter (Butterworth, 4th order, 6 Hz at 60 fps) the 3D is closer still
    code, out = run_cli(
        capsys,
        "--calib",
        calib,
        "--detections",
        DEMO / "pose",
        "--skeleton",
        "body25b",
        "--out",
        tmp_path / "f.json",
        "--filter",
        "butterworth:cutoff_hz=6,order=4",
        "--fps",
        60,
    )
    assert code == 0 and "butterworth" in out
    filt = read_result(tmp_path / "f.json")
    assert filt.settings["filter"]["spec"] == "butterworth:cutoff_hz=6,order=4"
    d_f = np.linalg.norm(filt.points_3d_mm[:, idx] - trc, axis=-1)
    if show:
        with capsys.disabled():
            print(f"filtered: median {np.nanmedian(d_f):.1f} mm, p90 {np.nanpercentile(d_f, 90):.1f} mm")
            print("per marker:", " ".join(f"{n}={v:.1f}" for n, v in zip(names, np.nanmedian(d_f, axis=0))))
    assert np.nanmedian(d_f) < 6.0  # 4.7 mm


# ------------------------------------------------------------------------------------ example capture
def _shift_camera(src: Path, dst: Path, camera: str, shift: int) -> None:
    """Copy the detections, renaming ``camera``'s file of frame f to frame f + shift."""
    shutil.copytree(src, dst)
    cam = dst / camera
    files = sorted(cam.glob("*.json"))
    for f in files:
        f.rename(f.with_suffix(".tmp"))
    for f in files:
        stem, num = f.stem.rsplit(".", 1)
        f.with_suffix(".tmp").rename(cam / f"{stem}.{int(num) + shift:04d}.json")


def test_sync_offsets_and_frames(example, tmp_path, capsys):
    gt = np.load(example["ground_truth"])
    _shift_camera(example["detections"], tmp_path / "pose", "cam03_json", 3)
    out = tmp_path / "r.npz"
    # without the offset, camera 3 sees the subject 3 frames late: its views disagree
    code, _ = run_cli(
        capsys, "--calib", example["calibration"], "--detections", tmp_path / "pose", "--out", out
    )
    late = read_result(out)
    assert code == 0 and late.num_frames == 33
    # with it (named by the calibration camera), frames line up again; the overlap is 0..29
    code, text = run_cli(
        capsys,
        "--calib",
        example["calibration"],
        "--detections",
        tmp_path / "pose",
        "--out",
        out,
        "--sync-offsets",
        "cam_03=3",
        "--skeleton",
        "h36m17",
    )
    res = read_result(out)
    assert code == 0 and res.frame_indices.tolist() == list(range(30))
    assert res.settings["sync_offsets"] == {"cam_03": 3}
    assert _mpjpe(res.points_3d_mm, gt) < 6.0
    cam3 = res.camera_names.index("cam_03")
    used = late.camera_stats["used_fraction"][cam3], res.camera_stats["used_fraction"][cam3]
    errs = _mpjpe(late.points_3d_mm[:30], gt), _mpjpe(res.points_3d_mm, gt)
    print(f"cam_03 used fraction {used}, MPJPE {errs} mm (late, synced)")
    assert res.camera_stats["used_fraction"][cam3] > late.camera_stats["used_fraction"][cam3] + 0.15
    assert _mpjpe(res.points_3d_mm, gt) < _mpjpe(late.points_3d_mm[:30], gt) - 1.0
    # the detection folder name works as well; --frames takes frame numbers, stop excluded
    code, _ = run_cli(
        capsys,
        "--calib",
        example["calibration"],
        "--detections",
        tmp_path / "pose",
        "--out",
        out,
        "--sync-offsets",
        "cam03_json=3",
        "--frames",
        "5:25",
    )
    part = read_result(out)
    assert part.frame_indices.tolist() == list(range(5, 25))
    np.testing.assert_allclose(part.points_3d_mm, res.points_3d_mm[5:25], atol=1e-6, equal_nan=True)


def test_bad_options(example, tmp_path, capsys):
    base = [
        "--calib",
        example["calibration"],
        "--detections",
        example["detections"],
        "--out",
        tmp_path / "x.npz",
    ]
    with pytest.raises(ValueError, match="CAMERA=FRAMES"):
        run_cli(capsys, *base, "--sync-offsets", "cam_01:3")
    with pytest.raises(KeyError, match="cam_07"):
        run_cli(capsys, *base, "--sync-offsets", "cam_07=1")
    with pytest.raises(ValueError, match="selects no frame"):
        run_cli(capsys, *base, "--frames", "100:200")
    with pytest.raises(ValueError, match="--multi-person"):
        run_cli(capsys, *base, "--max-people", "2")
    with pytest.raises(ValueError, match="--videos"):
        run_cli(capsys, *base, "--checkpoint", tmp_path / "c.pt")
    with pytest.raises(ValueError, match="unknown filter|needs mvpose.filters"):
        run_cli(capsys, *base, "--filter", "kalman")
    assert not (tmp_path / "x.npz").exists()


def test_multi_person_cli(example, tmp_path, capsys):
    gt = np.load(example["ground_truth"])
    code, out = run_cli(
        capsys,
        "--calib",
        example["calibration"],
        "--detections",
        example["detections"],
        "--out",
        tmp_path / "mp.npz",
        "--skeleton",
        "h36m17",
        "--multi-person",
    )
    assert code == 0 and "tracks" in out
    res = read_result(tmp_path / "mp.npz")
    assert res.points_3d_mm.ndim == 4  # (T, N, J, 3)
    errs = [_mpjpe(res.points_3d_mm[:, n], gt) for n in range(res.num_tracks)]
    subject = int(np.argmin(errs))
    assert errs[subject] < 6.0
    assert np.isfinite(res.points_3d_mm[:, subject]).all(-1).any(-1).all()  # one track, every frame


# ------------------------------------------------------------------------------------ videos
class BlobModel:
    """Stand-in multi-view model: the intensity-weighted centre of the bright blob in each view,
    triangulated with the given projection matrices (one joint)."""

    def __call__(self, images, proj_matrices, root=None):
        B, V, _, S, _ = images.shape
        lum = images.double().sum(2)  # (B, V, S, S)
        w = (lum - lum.amin((-1, -2), keepdim=True) - 1.0).clamp(min=0) ** 2
        ys, xs = torch.meshgrid(
            torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64), indexing="ij"
        )
        tot = w.sum((-1, -2))
        uv = torch.stack([(w * xs).sum((-1, -2)) / tot, (w * ys).sum((-1, -2)) / tot], -1)  # (B, V, 2)
        conf = (tot > 0).double()[..., None]
        return {"keypoints_3d": triangulate_dlt(uv[:, :, None], proj_matrices.double(), conf)}


def _write_videos(folder: Path, rig, X: np.ndarray, extra: dict[int, int] | None = None) -> list[Path]:
    """One lossless video per camera with a Gaussian blob at the (distorted) projection of
    ``X (T, 3)``; ``extra[v]`` blank frames are put first in camera v (it started early)."""
    folder.mkdir(parents=True, exist_ok=True)
    px = rig.project(torch.from_numpy(X[:, None])).numpy()[:, :, 0]  # (T, V, 2)
    w, h = (int(s) for s in rig.image_size[0])
    ys, xs = np.mgrid[0:h, 0:w]
    paths = []
    for v, name in enumerate(rig.names):
        path = folder / f"{name}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 30, (w, h))
        for _ in range((extra or {}).get(v, 0)):
            writer.write(np.zeros((h, w, 3), np.uint8))
        for t in range(len(X)):
            g = 255 * np.exp(-((xs - px[t, v, 0]) ** 2 + (ys - px[t, v, 1]) ** 2) / (2 * 2.5**2))
            writer.write(np.repeat(g.astype(np.uint8)[..., None], 3, -1))
        writer.release()
        paths.append(path)
    return paths


def test_infer_videos_stand_in_model(tmp_path):
    rig = ring_rig(
        3,
        radius_mm=3000.0,
        target_mm=(0.0, 0.0, 1000.0),
        image_size=(320, 240),
        focal_px=300.0,
        dist=(-0.12, 0.03, 0.001, 0.0, 0.0),
    )
    t = np.arange(12) / 12.0
    X = np.stack([300 * np.sin(2 * t), 250 * np.cos(3 * t), 1000 + 200 * t], -1)
    # camera 2 started 2 frames early; camera 1's video is 3 frames shorter
    paths = _write_videos(tmp_path / "v", rig, X, extra={1: 2})
    short = _write_videos(tmp_path / "s", rig.select([0]), X[:9])[0]
    shutil.move(short, tmp_path / "v" / "cam_01.avi")
    res = infer_videos(
        rig,
        paths,
        BlobModel(),
        image_size=96,
        crop_px=96,
        batch_size=4,
        sync_offsets={"cam_02": 2},
        progress=False,
    )
    assert any("cam_01.avi" in w and "shortest" in w for w in res.warnings), res.warnings
    assert res.num_frames == 9 and res.frame_indices.tolist() == list(range(9))
    err = np.linalg.norm(res.points_3d_mm[:, 0] - X[:9], axis=-1)
    print("video blob 3D error (mm):", np.round(err, 2))
    assert err.max() < 3.0  # undistortion, crops that follow the subject, and K updates agree
    assert res.camera_stats["frames_skipped"].tolist() == [0, 2, 0]
    # crops resized 2x down (K scaled; cv2's half-pixel offset of 0.25 px stays)
    res2 = infer_videos(
        rig,
        paths,
        BlobModel(),
        image_size=64,
        crop_px=128,
        batch_size=5,
        sync_offsets={"cam_02": 2},
        frames=(2, 8),
        progress=False,
    )
    assert res2.frame_indices.tolist() == list(range(2, 8))
    assert np.linalg.norm(res2.points_3d_mm[:, 0] - X[2:8], axis=-1).max() < 12.0
    # camera names that match nothing: both sides are listed
    bad = [p.with_name(f"view{i}.avi") for i, p in enumerate(paths)] + [tmp_path / "v" / "extra.avi"]
    for p, b in zip(paths + [paths[0]], bad):
        shutil.copy(p, b)
    with pytest.raises(ValueError, match="cam_01"):
        infer_videos(rig, bad, BlobModel(), progress=False)


@pytest.mark.slow  # builds and saves a ResNet-18 model (about 7 s of CPU)
def test_videos_cli_with_checkpoint(tmp_path, capsys):
    """The whole --videos path: an (untrained) algebraic model saved as an mvpose checkpoint, read
    by mvpose.engine.load_model; its config gives the input size."""
    pytest.importorskip("mvpose.engine")
    from mvpose.calib import save_rig
    from mvpose.engine.build import build_model
    from mvpose.engine.checkpoint import save_checkpoint
    from mvpose.engine.config import ExperimentConfig, config_to_dict

    cfg = ExperimentConfig()
    cfg.model.kind, cfg.model.num_layers, cfg.data.image_size = "algebraic", 18, 128
    torch.manual_seed(0)
    net = build_model(cfg)
    ckpt = save_checkpoint(
        tmp_path / "alg.pt", {"config": config_to_dict(cfg), "model": net.state_dict(), "step": 0}
    )
    rig = ring_rig(3, radius_mm=3000.0, image_size=(160, 120), focal_px=150.0)
    calib = save_rig(rig, tmp_path / "calib.json")
    X = np.stack([np.zeros(5), np.zeros(5), np.linspace(900, 1100, 5)], -1)
    _write_videos(tmp_path / "v", rig, X)
    args = ["--calib", calib, "--videos", tmp_path / "v", "--checkpoint", ckpt, "--out", tmp_path / "o.npz"]
    code, out = run_cli(
        capsys, *args, "--device", "cpu", "--batch-size", 2, "--skeleton", "h36m17_lt", "--frames", "1:4"
    )
    assert code == 0 and "input 128 px from 120 px crops" in out
    res = read_result(tmp_path / "o.npz")
    assert res.points_3d_mm.shape == (3, 17, 3) and res.frame_indices.tolist() == [1, 2, 3]
    assert res.skeleton == "h36m17_lt" and res.settings["checkpoint"] == str(ckpt)
    assert np.isfinite(res.points_3d_mm).all()
    with pytest.raises(ValueError, match="--checkpoint"):
        run_cli(capsys, "--calib", calib, "--videos", tmp_path / "v", "--out", tmp_path / "o.npz")
