"""The multi-view + temporal hybrid: the 3D noise model, the refiner, the studio sequences."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mvpose.engine.sequence import SequenceTrainer
from mvpose.engine.sequence_config import load_sequence_config
from mvpose.pipeline.refine import NoiseModel3D, TemporalRefiner, absolute_errors, smooth_root_trajectory

sys.path.insert(0, str(Path(__file__).parent))


def test_noise_model_fit_recovers_bias_std_correlation_and_outliers(tmp_path):
    rng = np.random.default_rng(0)
    J = 17
    true = NoiseModel3D(
        bias=rng.uniform(-20, 20, (J, 3)),
        cov=np.stack([np.diag(rng.uniform(5, 15, 3) ** 2) for _ in range(J)]),
        rho=np.full(J, 0.6),
        outlier_rate=np.full(J, 0.02),
        outlier_mm=np.full(J, 200.0),
    )
    gt = rng.normal(0, 300, (20, 200, J, 3))
    pred = gt + true.sample((20, 200), rng)
    fit = NoiseModel3D.fit(pred, gt)
    np.testing.assert_allclose(fit.bias, true.bias, atol=1.5)
    np.testing.assert_allclose(fit.std_mm, true.std_mm, rtol=0.06)
    np.testing.assert_allclose(fit.rho, 0.6, atol=0.05)
    np.testing.assert_allclose(fit.outlier_rate.mean(), 0.02, atol=0.004)
    np.testing.assert_allclose(fit.outlier_mm.mean(), 200.0, rtol=0.1)
    # round trip through a file
    assert np.allclose(NoiseModel3D.load(fit.save(tmp_path / "noise.npz")).cov, fit.cov)


def test_noise_model_sampling_is_seeded_and_correlated():
    m = NoiseModel3D.isotropic(17, std_mm=10.0, bias_mm=5.0, rho=0.9)
    a, b = m.sample((3, 500), 7), m.sample((3, 500), 7)
    assert a.shape == (3, 500, 17, 3) and np.array_equal(a, b)
    assert abs(a.mean() - 5.0) < 1.5 and abs(a.std() - 10.0) < 1.5
    e = a - 5.0
    lag1 = (e[:, 1:] * e[:, :-1]).mean() / (e**2).mean()
    assert 0.85 < lag1 < 0.95
    with pytest.raises(ValueError, match="rho"):
        NoiseModel3D.isotropic(17, 10.0, rho=1.0)


def test_smooth_root_trajectory_removes_spikes_and_jitter():
    rng = np.random.default_rng(1)
    t = np.arange(200) / 50.0
    truth = np.stack([1000 * t, 300 * np.sin(t), np.full_like(t, 900.0)], 1)
    noisy = truth + rng.normal(0, 15, truth.shape)
    noisy[50] += [400.0, 0.0, 0.0]
    out = smooth_root_trajectory(noisy, fps=50.0, cutoff_hz=4.0)
    err_in = np.linalg.norm(noisy - truth, axis=1)
    err_out = np.linalg.norm(out - truth, axis=1)
    assert err_out[50] < 30 and err_out.mean() < 0.6 * err_in.mean()


def test_refiner_reduces_the_error_of_noisy_3d(tmp_path):
    cfg = load_sequence_config(
        None,
        [
            f"out_dir={tmp_path}",
            "model.videopose3d.filter_widths=[3, 3]",
            "model.videopose3d.channels=64",
            "model.videopose3d.dropout=0.0",
            "data.source=motion",
            "data.input=3d",
            "data.input_3d=noise_model",
            "data.noise_3d.std_mm=25",
            "data.noise_3d.outlier_rate=0.02",
            "model.prefilter_hz=8.0",
            "data.motion.procedural_train=4",
            "data.motion.procedural_test=1",
            "data.motion.procedural_frames=120",
            "data.motion.yaw_copies=2",
            "data.batch_size=64",
            "optim.lr=2e-3",
            "train.max_steps=80",
            "train.log_every=20",
            "train.threads_per_process=1",
            "log.progress=false",
            "log.tensorboard=false",
        ],
    )
    tr = SequenceTrainer(cfg)
    untrained = tr.task.build().eval()  # a refiner starts as the identity on its (pre-filtered) input
    c = tr.data.test[0]
    from mvpose.engine.sequence_data import robust_lowpass

    pre = robust_lowpass(c.inputs, 50.0, 8.0)
    np.testing.assert_allclose(
        tr.task.predict(untrained, c.inputs, fps=50.0) * 1000, pre - pre[:, :1], atol=1e-3
    )
    m = tr.train()
    assert m["overall"]["MPJPE"] < 0.8 * m["input_baseline"]["MPJPE"]  # root-relative, scored by the engine
    refiner = TemporalRefiner(tr.model, tr.task, fps=50.0)
    before, after = absolute_errors(c.inputs, c.target), absolute_errors(refiner(c.inputs), c.target)
    filt = absolute_errors(pre, c.target)
    assert after["MPJPE"] < 0.8 * before["MPJPE"] and after["MPJVE"] < 0.5 * before["MPJVE"]
    assert after["MPJPE-rel"] < filt["MPJPE-rel"]  # the network improves on its pre-filtered input
    # the same refiner from its checkpoint
    again = TemporalRefiner.from_checkpoint(tmp_path / "checkpoints" / "last.pth")
    np.testing.assert_allclose(again(c.inputs), refiner(c.inputs), atol=1e-6)


def test_refiner_rejects_a_lifter(tmp_path):
    cfg = load_sequence_config(None, [f"out_dir={tmp_path}"])
    from mvpose.engine.sequence_data import Clip, SequenceData
    from mvpose.engine.sequence_models import SequenceTask

    task = SequenceTask(cfg, SequenceData([Clip(("s", "a", "c"), np.zeros((5, 17, 2)), None)], []))
    with pytest.raises(ValueError, match="lifter"):
        TemporalRefiner(None, task)


def test_sequence_studio_renders_contiguous_frames_of_one_motion():
    from mvpose.engine.sequence_studio import SequenceStudio
    from mvpose.skeleton import H36M17, get_joint_map

    ds = SequenceStudio(3, 4, seed=5, split="val", motion_frames=20, rig=2, image_size=32, occluder_prob=0.0)
    jm = get_joint_map(ds.skeleton.name, H36M17.name)
    X = np.stack([jm.apply(ds[i]["keypoints_3d"]).numpy() for i in range(4)])
    motion, _ = ds._motion(0)
    ref = motion[3:7]
    # one rigid placement (a yaw and a shift) for the whole sequence
    A = X.reshape(-1, 3) - X.reshape(-1, 3).mean(0)
    B = ref.reshape(-1, 3) - ref.reshape(-1, 3).mean(0)
    U, _, Vt = np.linalg.svd(B.T @ A)
    R = (U @ Vt).T
    np.testing.assert_allclose(B @ R.T, A, atol=1e-6)
    np.testing.assert_allclose(R[2], [0, 0, 1], atol=1e-9)  # about the vertical
    assert ds[0]["images"].shape == (2, 3, 32, 32)


def _tiny_multiview_checkpoint(tmp_path: Path) -> Path:
    from engine_helpers import tiny_config

    from mvpose.engine.build import build_model
    from mvpose.engine.checkpoint import save_checkpoint
    from mvpose.engine.config import config_to_dict

    cfg = tiny_config(tmp_path / "mv", "volumetric", extra=["data.synthetic.rig=2"])
    torch.manual_seed(0)
    return save_checkpoint(
        tmp_path / "mv.pth",
        {"model": build_model(cfg).state_dict(), "step": 0, "config": config_to_dict(cfg)},
    )


@pytest.mark.slow  # renders 15 frames through a tiny volumetric model: 6 s idle, 30 s on a loaded machine
def test_hybrid_runs_end_to_end_from_a_multiview_checkpoint(tmp_path):
    from mvpose.engine.sequence_studio import studio_predictions

    ckpt = _tiny_multiview_checkpoint(tmp_path)
    z = studio_predictions(ckpt, [0], "train", frames=3, batch_size=3)
    assert z["pred"].shape == z["gt"].shape == (1, 3, 17, 3)
    cfg = load_sequence_config(
        None,
        [
            f"out_dir={tmp_path / 'hybrid'}",
            "model.videopose3d.filter_widths=[3]",
            "model.videopose3d.channels=16",
            "data.source=studio",
            "data.input=3d",
            "data.input_3d=model",
            f"data.studio.checkpoint={ckpt}",
            "data.studio.fit_sequences=3",
            "data.studio.test_sequences=1",
            "data.studio.sequence_frames=3",
            "data.studio.procedural_train=1",
            "data.studio.procedural_frames=20",
            "data.batch_size=16",
            "train.max_steps=2",
            "train.threads_per_process=1",
            "log.progress=false",
            "log.tensorboard=false",
        ],
    )
    tr = SequenceTrainer(cfg)
    m = tr.train()
    assert (tmp_path / "hybrid" / "studio_3d.npz").is_file()
    assert tr.data.noise_model is not None and len(tr.data.train) == 4 and len(tr.data.test) == 1
    assert np.isfinite(m["overall"]["MPJPE"]) and "input_baseline" in m
