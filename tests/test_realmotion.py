"""``mvpose bench realmotion``: CMU motion through the real Human3.6M cameras (data, split, report)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(
    not (DATA / "cmu_mocap").is_dir() or not (DATA / "h36m_cameras").is_dir(),
    reason="../shared/data/cmu_mocap or h36m_cameras not found",
)


def _configs(tmp_path):
    from mvpose.bench.realmotion import _configs

    return _configs(DATA, tmp_path, seed=0, steps=None)


def test_configs_hold_out_whole_takes(tmp_path):
    lifter, refiner = _configs(tmp_path)
    for cfg in (lifter, refiner):
        m = cfg.data.motion
        assert all(Path(p).is_file() for p in m.train_motions + m.test_motions) and Path(m.rig).is_file()
        takes = lambda paths: {Path(p).stem.split("-")[0].lstrip("0") for p in paths}  # noqa: E731
        assert not takes(m.train_motions) & takes(m.test_motions)  # 07_05 and its retarget 007_05 too
        assert not set(m.train_subjects) & set(m.test_subjects)
    assert (
        lifter.data.input == "2d" and refiner.data.input == "3d" and refiner.data.input_3d == "triangulated"
    )


def _small(cfg, sigma=None):
    m = cfg.data.motion
    m.train_motions, m.test_motions = m.train_motions[:1], [p for p in m.test_motions if "09_06" in p]
    m.train_subjects, m.test_subjects, m.test_yaws_deg, m.yaw_copies = ["S1"], ["S9"], [90.0], 1
    if sigma is not None:
        cfg.data.noise_2d.sigma_px = sigma
        cfg.data.noise_2d.outlier_rate = cfg.data.noise_2d.swap_rate = 0.0
    return cfg


def test_clean_detections_triangulate_to_the_motion(tmp_path):
    from mvpose.engine.sequence_data import build_sequence_data

    _, refiner = _configs(tmp_path)
    d = build_sequence_data(_small(refiner, sigma=0.0))
    c = d.test[0]
    assert c.key == ("S9", "09_06-run 90deg", "triangulated") and c.num_frames == 59  # 141 frames at 120 Hz
    np.testing.assert_allclose(c.inputs, c.target, atol=1e-3)  # through the Human3.6M distortion model
    assert 700 < c.target[:, 0, 2].mean() < 1200  # the pelvis above the floor (Z up, mm)


def test_noisy_detections_give_realistic_triangulation_and_lifting_inputs(tmp_path):
    from mvpose.engine.sequence_data import build_sequence_data

    lifter, refiner = _configs(tmp_path)
    d = build_sequence_data(_small(refiner))
    err = np.linalg.norm(d.test[0].inputs - d.test[0].target, axis=-1)
    assert 10 < np.median(err) < 40 and err.max() > 100  # jitter, plus outliers and left/right swaps
    lift = build_sequence_data(_small(lifter))
    assert len(lift.test) == 4 and {c.key[2] for c in lift.test} == {
        "54138969",
        "55011271",
        "58860488",
        "60457274",
    }
    for c in lift.test:
        assert np.abs(c.inputs).max() < 2.0  # normalised screen coordinates (the runner leaves the frame)
        assert (c.target[..., 2] > 2000).all()  # camera frame, in front of the camera


def test_lift_fuse_scoring_with_an_oracle_lifter_recovers_the_motion(tmp_path):
    """Clean detections and a lifter returning each clip's true pose: the grouping of clips into
    takes, the pixels rebuilt from the normalised inputs and the world ground truth all line up."""
    from types import SimpleNamespace

    from mvpose.bench.realmotion import score_lift_fuse
    from mvpose.engine.sequence_data import build_sequence_data

    lifter_cfg, _ = _configs(tmp_path)
    cfg = _small(lifter_cfg, sigma=0.0)
    cfg.data.motion.test_yaws_deg = [0.0, 90.0]
    data = build_sequence_data(cfg)

    def predict(model, x, fps=None):
        (c,) = [c for c in data.test if np.allclose(c.inputs, x, atol=1e-9)]
        return (c.target - c.target[:, :1]) / 1000.0

    lifter = SimpleNamespace(task=SimpleNamespace(predict=predict, root=0), model=None, data=data)
    rep = score_lift_fuse(lifter, cfg)
    assert rep["takes"] == 2 and rep["frames"] == 2 * 59
    assert rep["per_frame_lifted"]["MPJPE"] < 1e-3 and rep["per_frame_corrected"]["MPJPE"] < 1e-3
    assert rep["single_view_MPJPE_rel"] < 1e-6
    assert rep["per_frame_dlt"]["MPJPE"] < 1e-2


def test_format_report():
    from mvpose.bench.realmotion import format_report

    row = {"MPJPE": 30.0, "MPJPE-rel": 40.0, "MPJVE": 45.0, "root": 25.0}
    rep = {
        "lifting": {
            "steps": 10,
            "seconds": 1.0,
            "MPJPE": 80.0,
            "P-MPJPE": 60.0,
            "MPJVE": 10.0,
            "test_frames": 9,
        },
        "triangulation_refinement": {
            "steps": 10,
            "seconds": 1.0,
            "test_frames": 9,
            "before": row,
            "filter_only": {**row, "MPJPE": 20.0},
            "after": {**row, "MPJPE": 15.0, "MPJVE": 5.0},
            "filter_cutoff_hz": 4.0,
            "mpjpe_reduction": 0.5,
            "mpjve_ratio": 9.0,
            "targets_met": True,
        },
    }
    text = format_report(rep)
    assert "P1 80.0 mm" in text and "MPJPE -50.0 %" in text and "met" in text and "filter only (4 Hz)" in text


@pytest.mark.slow
def test_bench_runs_end_to_end(tmp_path, capsys):
    from mvpose.bench import realmotion

    args = argparse.Namespace(data=DATA, out=tmp_path / "rep.json", seed=0, repeats=1, steps=20)
    assert realmotion.main(args) == 0
    import json

    rep = json.loads((tmp_path / "rep.json").read_text())
    assert (
        rep["triangulation_refinement"]["after"]["MPJVE"] < rep["triangulation_refinement"]["before"]["MPJVE"]
    )
    assert "lifting" in capsys.readouterr().out
