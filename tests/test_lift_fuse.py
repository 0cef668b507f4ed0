"""Per-view lifting fused across views (mvpose.pipeline.lift_fuse) with oracle lifters and a trained one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvpose.calib import ring_rig
from mvpose.data.sequences import project_world
from mvpose.engine.sequence_data import motion_world_positions
from mvpose.pipeline.lift_fuse import LiftFuse, fit_translation, fuse_root_relative


@pytest.fixture(scope="module")
def scene():
    rig = ring_rig(num_cameras=4, start_angle_deg=30.0)  # with lens distortion
    _, world = motion_world_positions("procedural:3", 50.0, 60)
    px = np.stack(project_world(world, rig, distort=True), 1)  # (T, V, J, 2)
    cam = rig.to(dtype=torch.float64).world_to_camera(torch.from_numpy(world)).numpy()  # (T, V, J, 3)
    rel_cam = cam - cam[:, :, :1]
    return rig, world, px, rel_cam


def oracle(rel_cam: np.ndarray, per_view_error=None):
    """A lifter returning each view's true root-relative pose (metres), views in call order."""
    calls = iter(range(rel_cam.shape[1]))

    def lift(inputs, fps):
        v = next(calls)
        out = rel_cam[:, v].copy()
        if per_view_error is not None:
            out = out + per_view_error[v]
        return out / 1000.0

    return lift


def test_exact_lifts_and_detections_give_the_true_poses(scene):
    rig, world, px, rel_cam = scene
    out = LiftFuse(oracle(rel_cam))(px, rig, fps=50.0)
    np.testing.assert_allclose(out.points_world_mm, world, atol=1e-6)
    np.testing.assert_allclose(out.trajectory_mm, world[:, 0], atol=1e-6)
    assert np.nanmax(out.reprojection_px) < 1e-6
    np.testing.assert_allclose(out.per_view_mm[:, 2], world - world[:, :1], atol=1e-6)  # world axes


def test_fusion_averages_depth_errors_of_the_views(scene):
    rig, world, px, rel_cam = scene
    rng = np.random.default_rng(0)
    T, V, J, _ = rel_cam.shape
    err = np.zeros((V, T, J, 3))
    err[..., 2] = rng.normal(0, 60, (V, T, J))  # each view wrong along its own optical axis
    err[:, :, 0] = 0.0  # root-relative
    out = LiftFuse(oracle(rel_cam, err))(px, rig, fps=50.0)
    rel_gt = world - world[:, :1]
    single = np.linalg.norm(out.per_view_mm - rel_gt[:, None], axis=-1)[..., 1:].mean((0, 2))  # per view
    fused = np.linalg.norm(out.root_relative_mm - rel_gt, axis=-1)[:, 1:].mean()
    assert fused < 0.6 * single.min(), (fused, single)
    # the trajectory fit uses the detections: the placed pose is no worse than its shape error
    placed = np.linalg.norm(out.lifted_world_mm - world, axis=-1).mean()
    assert placed < 1.5 * fused
    # exact detections in 4 views: the correction pulls every joint onto them
    corrected = np.linalg.norm(out.points_world_mm - world, axis=-1).mean()
    assert corrected < 0.1 * placed, (corrected, placed)


def test_correction_weighs_detections_against_the_lifted_prior(scene):
    from mvpose.pipeline.lift_fuse import correct_with_detections

    rig, world, px, _ = scene
    rng = np.random.default_rng(2)
    prior = world + rng.normal(0, 50, world.shape)
    noisy = px + rng.normal(0, 3.0, px.shape)
    X, err = correct_with_detections(torch.from_numpy(prior), torch.from_numpy(noisy), rig)
    e_prior = np.linalg.norm(prior - world, axis=-1).mean()
    e4 = np.linalg.norm(X.numpy() - world, axis=-1).mean()
    dlt = rig.to(dtype=torch.float64).triangulate(torch.from_numpy(noisy)).numpy()
    e_dlt = np.linalg.norm(dlt - world, axis=-1).mean()
    assert e4 < min(0.3 * e_prior, 1.1 * e_dlt), (e4, e_prior, e_dlt)
    assert np.nanmedian(err.numpy()) < 4.0
    # one view only: the joint moves within that view's image plane, its depth stays the prior's
    one = noisy.copy()
    one[:, 1:] = np.nan
    X1, _ = correct_with_detections(torch.from_numpy(prior), torch.from_numpy(one), rig)
    e1 = np.linalg.norm(X1.numpy() - world, axis=-1).mean()
    assert e1 < e_prior
    c = rig.centers()[0].double().numpy()
    ray = lambda p: np.linalg.norm(p - c, axis=-1)  # noqa: E731
    np.testing.assert_allclose(ray(X1.numpy()), ray(prior), rtol=0.02)
    # no view and no prior: NaN
    none = np.full_like(noisy, np.nan)
    prior_nan = prior.copy()
    prior_nan[0, 0] = np.nan
    X0, _ = correct_with_detections(torch.from_numpy(prior_nan), torch.from_numpy(none), rig)
    assert np.isnan(X0[0, 0].numpy()).all() and np.allclose(X0[1:].numpy(), prior[1:])


def test_a_wrong_view_is_dropped_and_missing_views_are_tolerated(scene):
    rig, world, px, rel_cam = scene
    T, V, J, _ = rel_cam.shape
    err = np.zeros((V, T, J, 3))
    err[1, :, 1:] = 400.0  # view 1's lifter is far off
    px = px.copy()
    px[10:30, 2:] = np.nan  # views 2, 3 see nothing for 20 frames
    px[40:45, 1:] = np.nan  # only view 0 sees frames 40-44: monocular placement
    conf = np.ones((T, V, J))
    out = LiftFuse(oracle(rel_cam, err))(px, rig, conf, fps=50.0)
    np.testing.assert_allclose(out.root_relative_mm[:10], (world - world[:, :1])[:10], atol=1e-6)
    assert not out.views_used[:10, 1, 1:].any() and out.views_used[:10, 0].all()
    # frames 10-29: views 0 and 1 left, 400 mm apart: no majority, the mean is used
    assert np.isfinite(out.points_world_mm).all()
    np.testing.assert_allclose(out.points_world_mm[40:45], world[40:45], atol=1e-6)
    assert np.isnan(out.per_view_mm[40:45, 1:]).all()


def test_translation_fit_resists_detection_outliers(scene):
    rig, world, px, _ = scene
    rng = np.random.default_rng(1)
    noisy = px + rng.normal(0, 2.0, px.shape)
    noisy[:, 0, 3] += 300.0  # one joint of view 0 far off in every frame
    rel = torch.from_numpy(world - world[:, :1])
    tau, err = fit_translation(rel, torch.from_numpy(noisy), rig)
    d = np.linalg.norm(tau.numpy() - world[:, 0], axis=-1)
    assert d.mean() < 8.0, d.mean()
    assert err[:, 0, 3].min() > 200 and np.nanmedian(err.numpy()) < 4.0
    # without reweighting the outlier pulls the fit
    tau0, _ = fit_translation(rel, torch.from_numpy(noisy), rig, iterations=0)
    assert np.linalg.norm(tau0.numpy() - world[:, 0], axis=-1).mean() > 2 * d.mean()


def test_fuse_weights_and_empty_joints():
    x = torch.zeros(1, 3, 2, 3)
    x[0, 0, :, 0], x[0, 1, :, 0], x[0, 2, :, 0] = 0.0, 30.0, 1000.0
    w = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [1.0, 0.0]]])
    fused, used = fuse_root_relative(x, w, outlier_mm=200.0)
    assert fused[0, 0, 0].item() == pytest.approx(20.0)  # (0 * 1 + 30 * 2) / 3; 1000 dropped
    assert used[0, :, 0].tolist() == [True, True, False]
    assert torch.isnan(fused[0, 1]).all()  # no view with weight


def test_bad_inputs_are_clear_errors(scene):
    rig, _, px, rel_cam = scene
    f = LiftFuse(oracle(rel_cam))
    with pytest.raises(ValueError, match="expected"):
        f(px[:, :3], rig)
    with pytest.raises(ValueError, match="confidences"):
        f(px, rig, np.ones((3, 4)))
    import dataclasses

    with pytest.raises(ValueError, match="image sizes"):
        f(px, dataclasses.replace(rig, image_size=None))


def test_from_checkpoint_runs_a_trained_lifter_and_rejects_a_refiner(tmp_path):
    from mvpose.engine.sequence import SequenceTrainer
    from mvpose.engine.sequence_config import load_sequence_config

    common = [
        "model.videopose3d.filter_widths=[3, 3]",
        "model.videopose3d.channels=32",
        "data.source=motion",
        "data.motion.rig=4",
        "data.motion.procedural_train=2",
        "data.motion.procedural_test=1",
        "data.motion.procedural_frames=60",
        "data.batch_size=32",
        "train.max_steps=3",
        "train.threads_per_process=1",
        "log.progress=false",
        "log.tensorboard=false",
    ]
    SequenceTrainer(
        load_sequence_config(None, [f"out_dir={tmp_path / 'l'}", "data.input=2d", *common])
    ).train()
    fuser = LiftFuse.from_checkpoint(tmp_path / "l" / "checkpoints" / "last.pth")
    rig = ring_rig(num_cameras=4, start_angle_deg=45.0)
    _, world = motion_world_positions("procedural:5", 50.0, 40)
    px = np.stack(project_world(world, rig), 1)
    out = fuser(px, rig, fps=50.0)
    assert out.points_world_mm.shape == (40, 17, 3) and np.isfinite(out.points_world_mm).all()
    SequenceTrainer(
        load_sequence_config(
            None, [f"out_dir={tmp_path / 'r'}", "data.input=3d", "data.input_3d=noise_model", *common]
        )
    ).train()
    with pytest.raises(ValueError, match="refiner"):
        LiftFuse.from_checkpoint(tmp_path / "r" / "checkpoints" / "last.pth")
