"""Limb-length statistics: computation, h5 layout, the fixture's file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvpose.data.limb_stats import compute_limb_stats, read_limb_stats_h5, write_limb_stats_h5
from mvpose.skeleton import H36M17_LT_LIMBS
from tests.fixture_helpers import fixture_dir, fixture_io


def _skeleton(lengths: np.ndarray) -> np.ndarray:
    """A pose whose limbs have the given lengths: walk the limb list, placing each new joint."""
    kp = np.full((17, 3), np.nan)
    kp[6] = 0.0
    todo = list(enumerate(H36M17_LT_LIMBS))
    rng = np.random.default_rng(0)
    while todo:
        for item in list(todo):
            l, (a, b) = item
            if np.isfinite(kp[a, 0]) ^ np.isfinite(kp[b, 0]):
                known, new = (a, b) if np.isfinite(kp[a, 0]) else (b, a)
                d = rng.normal(size=3)
                kp[new] = kp[known] + lengths[l] * d / np.linalg.norm(d)
                todo.remove(item)
    return kp


def test_compute_limb_stats_known_skeleton():
    base = np.arange(16) * 10.0 + 100.0
    poses = np.stack([_skeleton(base), _skeleton(base + 20.0), _skeleton(base - 20.0)])
    mean, std = compute_limb_stats(torch.tensor(poses), H36M17_LT_LIMBS)
    assert mean.dtype == torch.float64 and mean.shape == (16,)
    np.testing.assert_allclose(mean.numpy(), base, atol=1e-9)
    np.testing.assert_allclose(std.numpy(), np.full(16, np.sqrt(800.0 / 3)), atol=1e-9)  # population std


def test_compute_limb_stats_skips_invalid_and_nan():
    base = np.full(16, 300.0)
    poses = np.stack([_skeleton(base), _skeleton(base * 2)])
    poses[1, 0] = np.nan  # right ankle missing in frame 1: limb 0 uses frame 0 only
    mean, std = compute_limb_stats(poses)
    assert mean[0] == pytest.approx(300.0) and std[0] == pytest.approx(0.0)
    assert mean[1] == pytest.approx(450.0)
    validity = np.ones((2, 17))
    validity[1, 2] = 0  # right hip invalid in frame 1: limbs (1,2) and (2,6)
    mean, _ = compute_limb_stats(poses, validity=validity)
    assert (
        mean[1] == pytest.approx(300.0)
        and mean[2] == pytest.approx(300.0)
        and mean[6] == pytest.approx(450.0)
    )
    with pytest.raises(ValueError, match="keypoints_3d"):
        compute_limb_stats(np.zeros((17, 3)))


def test_h5_round_trip(tmp_path):
    import h5py

    mean, std = np.linspace(100, 400, 16), np.linspace(5, 20, 16)
    path = write_limb_stats_h5(tmp_path / "sub" / "mean_and_std_limb_length.h5", mean, std)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["mean", "std"]
        assert f["mean"].dtype == np.float64 and f["mean"].shape == (16,)
    m, s = read_limb_stats_h5(path)
    np.testing.assert_array_equal(m.numpy(), mean)
    np.testing.assert_array_equal(s.numpy(), std)
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        read_limb_stats_h5(tmp_path / "nothere.h5")
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("mean", data=mean)
    with pytest.raises(ValueError, match="bad.h5.*std"):
        read_limb_stats_h5(tmp_path / "bad.h5")


def test_read_fixture_limb_file():
    m, s = read_limb_stats_h5(fixture_dir("contextpose") / "mean_and_std_limb_length.h5")
    io = fixture_io("contextpose")
    np.testing.assert_array_equal(m.float().numpy(), io["limb_mean"])
    np.testing.assert_array_equal(s.float().numpy(), io["limb_std"])
    assert io["limb_pairs"].tolist() == [list(p) for p in H36M17_LT_LIMBS]


def test_limb_stats_cli_synthetic(tmp_path):
    from mvpose.cli import main
    from mvpose.data.limb_stats import read_limb_stats_h5

    out = tmp_path / "limbs.h5"
    assert main(["data", "limb-stats", "--source", "synthetic", "--num-motions", "2", "--out", str(out)]) == 0
    mean, std = read_limb_stats_h5(out)
    assert mean.shape == (16,) and std.shape == (16,)
    # plausible human limb lengths (mm) and non-negative spread
    assert float(mean.min()) > 80.0 and float(mean.max()) < 600.0 and float(std.min()) >= 0.0
    assert main(["data", "limb-stats", "--source", "h36m", "--out", str(out)]) == 2  # needs --path
