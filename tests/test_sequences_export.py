"""export_sequences: motions through a rig -> VideoPose3D npz, exact projections and detector noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mvpose.calib import load_rig, ring_rig
from mvpose.data.sequences import (
    NoiseConfig,
    SequenceSet,
    add_detector_noise,
    export_sequences,
    load_npz,
    read_positions_2d,
)
from mvpose.geometry.camera import CameraRig
from mvpose.skeleton import H36M17

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AMC = DATA / "cmu_mocap" / "asf_amc" / "16_24.amc"


def _check_projection(paths, rig, tol=1e-6):
    ss = SequenceSet.from_npz(paths["positions_3d"], paths["positions_2d"])
    r = ss.rig("S1")
    for k in ("K", "R", "t", "dist"):
        torch.testing.assert_close(getattr(r, k), getattr(rig, k), rtol=0, atol=0)
    n = 0
    for it in ss.items():
        proj = rig.project(torch.from_numpy(it.positions_world))[:, it.camera_index].numpy()
        assert it.keypoints_2d.shape == proj.shape and np.isfinite(it.keypoints_2d).all()
        assert np.abs(it.keypoints_2d - proj).max() < tol
        # and through the camera frame: pinhole + distortion of R X + t
        xc = it.positions_camera
        assert (xc[..., 2] > 0).all()
        n += 1
    return ss, n


def test_export_procedural_round_trip(tmp_path):
    rig = ring_rig(4)
    paths = export_sequences([3, "procedural:4"], rig, tmp_path / "synth.npz", num_frames=120, fps=50.0)
    assert paths["positions_3d"].name == "data_3d_synth.npz"
    assert paths["positions_2d"].name == "data_2d_synth_gt.npz"
    assert load_npz(paths["positions_3d"])["positions_3d"]["S1"]["procedural_3"].shape == (120, 32, 3)
    ss, n = _check_projection(paths, rig)
    assert n == 8 and ss.actions("S1") == ["procedural_3", "procedural_4"]
    assert ss.fps_of("S1", "procedural_3") == 50.0
    _, meta, conf = read_positions_2d(paths["positions_2d"])
    assert meta["layout_name"] == "h36m" and meta["num_joints"] == 17 and conf is None
    assert meta["keypoints_symmetry"] == [list(H36M17.left_indices), list(H36M17.right_indices)]
    json_rig = load_rig(paths["rig"])
    torch.testing.assert_close(json_rig.K, rig.K)
    # the world is in metres in the file and centred on the rig
    m = load_npz(paths["positions_3d"])["positions_3d"]["S1"]["procedural_4"]
    assert 0.5 < np.abs(m).max() < 10 and np.abs(m[:, 0, :2].mean(0)).max() < 1e-9
    # windows straight from the export
    ds = ss.windows(receptive_field=27, chunk_length=8, flip_augment=True)
    b = next(ds.batches(4))
    assert b["input"].shape == (4, 34, 17, 2) and b["target"].shape == (4, 8, 17, 3)
    assert b["input"].abs().max() < 2


@pytest.mark.skipif(not AMC.is_file(), reason="CMU mocap sample not present")
def test_export_cmu_amc_round_trip(tmp_path):
    rig = ring_rig(3)
    paths = export_sequences({"veer_left": AMC}, rig, tmp_path / "data_3d_cmu", fps=60.0, subject="S7")
    ss = SequenceSet.from_npz(paths["positions_3d"], paths["positions_2d"])
    assert ss.subjects() == ["S7"] and ss.actions("S7") == ["veer_left"]
    it = ss.items()[0]
    assert it.num_frames == 149  # 297 frames at 120 fps -> 60 fps
    for it in ss.items():
        proj = rig.project(torch.from_numpy(it.positions_world))[:, it.camera_index].numpy()
        assert np.abs(it.keypoints_2d - proj).max() < 1e-6
    # Z up: the head is above the ankles
    w = it.positions_world
    assert (w[:, H36M17.index("head"), 2] > w[:, H36M17.index("left_ankle"), 2] + 1000).all()


def test_export_errors(tmp_path):
    rig = ring_rig(2)
    with pytest.raises(FileNotFoundError, match="missing.bvh"):
        export_sequences([tmp_path / "missing.bvh"], rig, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="image_size"):
        export_sequences([0], CameraRig(rig.K, rig.R, rig.t), tmp_path / "x.npz", num_frames=5)
    with pytest.raises(ValueError, match="given twice"):
        export_sequences([0, 0], rig, tmp_path / "x.npz", num_frames=5)
    with pytest.raises(ValueError, match="swap_rate"):
        NoiseConfig(swap_rate=0.9, swap_run_frames=2)
    with pytest.raises(ValueError, match="drop_mode"):
        NoiseConfig(drop_mode="zero")


def _clean(T=20000, seed=0):
    g = np.random.default_rng(seed)
    return g.uniform(100, 1800, size=(T, 17, 2))


def test_noise_gaussian_and_outliers():
    x = _clean()
    cfg = NoiseConfig(sigma_px=3.0, outlier_rate=0.05, outlier_px=200.0, seed=1)
    noisy, conf, info = add_detector_noise(x, cfg)
    err = np.linalg.norm(noisy - x, axis=-1)
    inl = ~info["outlier"]
    assert abs((noisy - x)[inl].std() - 3.0) < 0.05
    assert abs(info["outlier"].mean() - 0.05) < 0.005
    assert abs((err > 100 - 6 * 3.0).mean() - 0.05) < 0.005  # outliers moved by 100..200 px
    assert err[info["outlier"]].max() < 200 + 6 * 3.0
    assert (conf == 1).all() and not info["swapped"].any() and not info["dropped"].any()
    noisy2, _, _ = add_detector_noise(x, cfg)
    np.testing.assert_array_equal(noisy, noisy2)  # same seed, same noise
    assert not np.array_equal(noisy, add_detector_noise(x, NoiseConfig(sigma_px=3.0, seed=2))[0])


def test_noise_swaps_in_runs():
    x = _clean()
    cfg = NoiseConfig(swap_rate=0.1, swap_run_frames=5.0, seed=3)
    noisy, _, info = add_detector_noise(x, cfg)
    pairs, sw = info["pairs"], info["swapped"]
    assert sorted(map(tuple, pairs.tolist())) == sorted(
        (min(a, b), max(a, b)) for a, b in zip(H36M17.left_indices, H36M17.right_indices)
    )
    assert abs(sw.mean() - 0.1) < 0.015
    # the data agree with the mask: swapped cells hold the partner's clean position
    a, b = pairs[:, 0], pairs[:, 1]
    is_sw = np.all(noisy[:, a] == x[:, b], -1) & np.all(noisy[:, b] == x[:, a], -1)
    np.testing.assert_array_equal(is_sw, sw)
    centre = [j for j in range(17) if H36M17.flip_indices[j] == j]
    np.testing.assert_array_equal(noisy[:, centre], x[:, centre])
    # mean run length
    d = np.diff(
        np.concatenate([np.zeros((1, sw.shape[1]), bool), sw, np.zeros((1, sw.shape[1]), bool)]).astype(int),
        axis=0,
    )
    runs = (d == 1).sum()
    assert abs(sw.sum() / runs - 5.0) < 0.5


@pytest.mark.parametrize("mode", ["nan", "confidence"])
def test_noise_drops(mode):
    x = _clean()
    noisy, conf, info = add_detector_noise(x, NoiseConfig(drop_rate=0.08, drop_mode=mode, seed=4))
    assert abs(info["dropped"].mean() - 0.08) < 0.005
    np.testing.assert_array_equal(conf == 0, info["dropped"])
    if mode == "nan":
        np.testing.assert_array_equal(np.isnan(noisy).any(-1), info["dropped"])
    else:
        np.testing.assert_array_equal(noisy, x)


def test_export_with_noise_deterministic(tmp_path):
    rig = ring_rig(4)
    cfg = NoiseConfig(
        sigma_px=2.0, outlier_rate=0.02, swap_rate=0.05, drop_rate=0.05, drop_mode="confidence", seed=9
    )
    p1 = export_sequences([1], rig, tmp_path / "a" / "n.npz", noise=cfg, num_frames=400)
    p2 = export_sequences([1], rig, tmp_path / "b" / "n.npz", noise=cfg, num_frames=400)
    assert p1["positions_2d"].name == "data_2d_n_noisy.npz"
    k1, m1, c1 = read_positions_2d(p1["positions_2d"])
    k2, _, c2 = read_positions_2d(p2["positions_2d"])
    for v in range(4):
        np.testing.assert_array_equal(k1["S1"]["procedural_1"][v], k2["S1"]["procedural_1"][v])
        np.testing.assert_array_equal(c1["S1"]["procedural_1"][v], c2["S1"]["procedural_1"][v])
    assert m1["mvpose"]["noise"] == cfg.to_dict()
    conf = np.stack(c1["S1"]["procedural_1"])
    assert abs((conf == 0).mean() - 0.05) < 0.02
    clean = export_sequences([1], rig, tmp_path / "c" / "n.npz", num_frames=400)
    kc, _, _ = read_positions_2d(clean["positions_2d"])
    err = np.linalg.norm(np.stack(k1["S1"]["procedural_1"]) - np.stack(kc["S1"]["procedural_1"]), axis=-1)
    assert 1.5 < np.median(err) < 4.0  # ~ sigma * sqrt(pi / 2) for the 2D error of N(0, 2^2) per axis
    p3 = export_sequences(
        [1], rig, tmp_path / "d" / "n.npz", noise=NoiseConfig(sigma_px=2.0, seed=10), num_frames=400
    )
    assert not np.array_equal(
        read_positions_2d(p3["positions_2d"])[0]["S1"]["procedural_1"][0], k1["S1"]["procedural_1"][0]
    )
