"""`mvpose triangulate` / `mvpose example` as a new user runs them, on the Pose2Sim demo and the example.

Figures for the Pose2Sim demo (../shared/data/pose2sim_demo/README.txt): an independent DLT gets a
median reprojection error of 12.9 px and lies 11.6 mm (median) from Pose2Sim's own TRC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvpose.cli import main
from mvpose.pipeline.triangulate import read_result

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO = DATA / "pose2sim_demo"
needs_demo = pytest.mark.skipif(not DEMO.is_dir(), reason=f"Pose2Sim demo not found at {DEMO}")

# TRC marker -> BODY_25B joint name (README: "TRC layout").
_SIDES = {"R": "right_", "L": "left_"}
_PARTS = {
    "Hip": "hip",
    "Knee": "knee",
    "Ankle": "ankle",
    "BigToe": "big_toe",
    "SmallToe": "small_toe",
    "Heel": "heel",
    "Shoulder": "shoulder",
    "Elbow": "elbow",
    "Wrist": "wrist",
}
_CENTRE = {"Neck": "neck", "Head": "head_top", "Nose": "nose"}


def _joint_name(marker: str) -> str:
    return _CENTRE.get(marker) or _SIDES[marker[0]] + _PARTS[marker[1:]]


def read_trc_world_mm(path: Path) -> tuple[list[str], np.ndarray]:
    """Marker names and ``(T, M, 3)`` world mm: (X, Y, Z)_trc = (Y, Z, X)_world / 1000."""
    lines = path.read_text().splitlines()
    names = [n for n in lines[3].split("\t")[2:] if n.strip()]
    rows = [r.split("\t") for r in lines[5:] if r.strip()]
    xyz = np.array([[float(x) for x in r[2 : 2 + 3 * len(names)]] for r in rows]).reshape(len(rows), -1, 3)
    return [_joint_name(n) for n in names], 1000.0 * xyz[..., [2, 0, 1]]


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(map(str, args)))
    out = capsys.readouterr()
    return code, out.out, out.err


def _used_errors(result) -> np.ndarray:
    e = result.reprojection_error_px[result.views_used]
    return e[np.isfinite(e)]


@needs_demo
@pytest.mark.parametrize("calib", ["calibration/Calib_qualisys.toml", "calibration/Calib.qca.txt"])
def test_pose2sim_demo(calib, tmp_path, capsys):
    names, trc = read_trc_world_mm(DEMO / "pose-3d" / "Balancing_for_IK.trc")
    figures, report = {}, []
    for method in ("dlt", "robust+refine"):
        out = tmp_path / f"{method}.npz"
        args = [
            "triangulate",
            "--calib",
            DEMO / calib,
            "--detections",
            DEMO / "pose",
            "--skeleton",
            "body25b",
        ]
        code, stdout, _ = _run(capsys, *args, "--out", out, "--method", method, "-q")
        assert code == 0
        assert "cam_01" in stdout and "reprojection error: median" in stdout and str(out) in stdout
        res = read_result(out)
        assert res.points_3d_mm.shape == (100, 25, 3) and res.frame_indices.tolist() == list(range(100))
        err = _used_errors(res)
        idx = [res.joint_names.index(n) for n in names]
        dist = np.linalg.norm(res.points_3d_mm[:, idx] - trc, axis=-1)  # frame# 1..100 = JSON 0..99
        figures[method] = (np.median(err), np.percentile(err, 90), np.nanmedian(dist))
        report.append(
            f"{calib} {method}: reprojection median {figures[method][0]:.2f} px, "
            f"p90 {figures[method][1]:.2f} px "
            f"over {err.size} observations; median distance to the TRC {figures[method][2]:.1f} mm "
            f"({np.isfinite(dist).sum()} marker-frames)"
        )
    print("\n".join(report))  # after the last capsys.readouterr(), so that -s shows it
    for method in figures:
        assert figures[method][2] < 25.0, method
    assert 8.0 <= figures["dlt"][0] <= 14.0
    assert figures["robust+refine"][0] <= figures["dlt"][0]


@needs_demo
def test_pose2sim_demo_user_errors(tmp_path, capsys):
    base = ["triangulate", "--calib", DEMO / "calibration.json", "--out", tmp_path / "p.npz", "-q"]
    code, _, err = _run(capsys, *base, "--detections", DEMO / "pose")
    assert code == 2 and "--skeleton body25b" in err  # 25 keypoints: BODY_25 or BODY_25B?
    code, _, err = _run(capsys, *base, "--detections", tmp_path / "missing", "--skeleton", "body25b")
    assert code == 2 and "missing" in err
    code, _, err = _run(
        capsys, *base, "--detections", DEMO / "pose", "--skeleton", "body25b", "--subject", "S1"
    )
    assert code == 2 and "calibration.json" in err
    assert not (tmp_path / "p.npz").exists()


def test_example_then_triangulate(tmp_path, capsys):
    out = tmp_path / "runs" / "example"
    code, stdout, _ = _run(capsys, "example", "--out", out, "--frames", "30")
    assert code == 0 and "calibration.toml" in stdout
    code, stdout, _ = _run(
        capsys,
        "triangulate", "--calib", out / "calibration.toml", "--detections", out / "pose",
        "--skeleton", "h36m17", "--out", out / "points3d.npz", "-q",
    )  # fmt: skip
    assert code == 0
    summary = stdout
    res = read_result(out / "points3d.npz")
    gt = np.load(out / "ground_truth_3d_mm.npy")
    mpjpe = float(np.nanmean(np.linalg.norm(res.points_3d_mm - gt, axis=-1)))
    assert mpjpe < 15.0
    # Seven camera folders for a six-camera calibration: a clear error naming both sides.
    (out / "pose" / "cam07_json").mkdir()
    (out / "pose" / "cam07_json" / "cam07.0000.json").write_text('{"people": []}')
    code, _, err = _run(
        capsys,
        "triangulate", "--calib", out / "calibration.toml", "--detections", out / "pose",
        "--skeleton", "h36m17", "--out", out / "p.json", "-q",
    )  # fmt: skip
    assert code == 2 and "cam07_json" in err and "cam_06" in err
    print(f"{summary}\nexample MPJPE: {mpjpe:.2f} mm")
