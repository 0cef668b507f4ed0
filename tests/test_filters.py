"""Temporal filters and gap filling (mvpose.filters): values against scipy and the 1-euro paper's
equations, NaN handling, the gap report, numpy/torch in and out, and throughput."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import signal

from mvpose.filters import (
    butterworth,
    fill_gaps,
    find_gaps,
    one_euro,
    savgol,
    smooth_trajectories,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CMU_BVH = DATA / "cmu_mocap" / "bvh_iclone_ccrig" / "007_05.bvh"


def _walk(T: int = 300, J: int = 4, seed: int = 0) -> np.ndarray:
    """Smooth synthetic trajectories (T, J, 3) mm: a few sines per coordinate."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None] / 60.0
    f = rng.uniform(0.2, 1.5, (1, J, 3))
    return 300.0 * np.sin(2 * math.pi * f * t + rng.uniform(0, 6, (1, J, 3))) + rng.uniform(
        -500, 500, (1, J, 3)
    )


def _one_euro_reference(x: np.ndarray, fps, min_cutoff, beta, d_cutoff) -> np.ndarray:
    """Casiez et al. 2012, the paper's pseudo-code, one scalar signal at a time (NaN-free)."""

    def alpha(cutoff):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * fps)

    out = np.empty_like(x)
    for c in range(x.shape[1]):
        x_hat, dx_hat = None, 0.0
        for i, xi in enumerate(x[:, c]):
            if x_hat is None:
                x_hat = xi
            else:
                dx = (xi - x_hat) * fps
                dx_hat = alpha(d_cutoff) * dx + (1 - alpha(d_cutoff)) * dx_hat
                a = alpha(min_cutoff + beta * abs(dx_hat))
                x_hat = a * xi + (1 - a) * x_hat
            out[i, c] = x_hat
    return out


# --------------------------------------------------------------------------------------------
# Butterworth and Savitzky-Golay
# --------------------------------------------------------------------------------------------


def test_butterworth_is_scipy_zero_phase_of_half_order():
    x = _walk() + np.random.default_rng(1).normal(0, 5, (300, 4, 3))
    y = butterworth(x, fps=60, cutoff_hz=6, order=4)
    sos = signal.butter(2, 6, fs=60, output="sos")
    ref = signal.sosfiltfilt(sos, x, axis=0)
    np.testing.assert_allclose(y, ref, atol=1e-9)
    # gain: 1 Hz passes, 20 Hz is removed, -6 dB at the cut-off (two -3 dB passes)
    t = np.arange(2000)[:, None, None] / 60.0
    for hz, gain in ((1.0, 1.0), (6.0, 0.5), (20.0, 0.0)):
        s = np.sin(2 * math.pi * hz * t)
        out = butterworth(s, 60, 6, 4)
        amplitude = np.sqrt(2 * np.mean(out[200:1400] ** 2))  # 1200 frames: whole periods
        assert amplitude == pytest.approx(gain, abs=0.01)


def test_butterworth_filters_nan_free_runs_separately_and_keeps_nan():
    x = _walk(200, 3)
    x[50:60, 1] = np.nan  # one joint missing
    x[120:125, :] = np.nan  # every joint missing
    y = butterworth(x, 60, 6, 4)
    assert np.array_equal(np.isnan(y), np.isnan(x))
    sos = signal.butter(2, 6, fs=60, output="sos")
    for a, b in ((0, 50), (60, 120), (125, 200)):
        np.testing.assert_allclose(y[a:b, 1], signal.sosfiltfilt(sos, x[a:b, 1], axis=0), atol=1e-9)
    np.testing.assert_allclose(y[0:120, 0], signal.sosfiltfilt(sos, x[0:120, 0], axis=0), atol=1e-9)
    # runs shorter than scipy's default padding still filter, a single sample is kept
    short = np.full((20, 1, 3), np.nan)
    short[2:7] = _walk(5, 1)
    short[10] = 1.0
    out = butterworth(short, 60, 6, 4)
    assert np.isfinite(out[2:7]).all() and np.array_equal(out[10], short[10])


def test_savgol_matches_scipy_and_keeps_polynomials():
    x = _walk()
    np.testing.assert_allclose(
        savgol(x, 11, 3), signal.savgol_filter(x, 11, 3, axis=0, mode="interp"), atol=1e-9
    )
    t = np.arange(50.0)[:, None, None]
    cubic = 0.01 * t**3 - 0.5 * t**2 + 3 * t + np.zeros((1, 2, 3))
    np.testing.assert_allclose(savgol(cubic, 9, 3), cubic, atol=1e-8)
    cubic[20:23] = np.nan
    out = savgol(cubic, 9, 3)  # runs of 20 and 27 frames, filtered separately
    assert np.isnan(out[20:23]).all()
    np.testing.assert_allclose(out[:20], cubic[:20], atol=1e-8)
    tiny = np.full((10, 1, 3), np.nan)
    tiny[0:3] = [[[1.0, 2.0, 3.0]]]
    assert np.array_equal(savgol(tiny, 9, 3)[0:3], tiny[0:3])  # 3 frames <= polyorder: kept


# --------------------------------------------------------------------------------------------
# One-euro
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.01])
def test_one_euro_matches_the_paper(beta):
    x = _walk(150, 2) + np.random.default_rng(2).normal(0, 3, (150, 2, 3))
    y = one_euro(x, fps=60, min_cutoff=1.2, beta=beta, d_cutoff=1.0)
    ref = _one_euro_reference(x.reshape(150, -1), 60, 1.2, beta, 1.0).reshape(x.shape)
    np.testing.assert_allclose(y, ref, atol=1e-9)


def test_one_euro_behaviour_gaps_and_joint_speed():
    const = np.full((40, 2, 3), 7.0)
    np.testing.assert_allclose(one_euro(const, 30), const)
    # beta = 0: a plain exponential smoother with alpha(min_cutoff)
    step = np.zeros((10, 1, 1))
    step[1:] = 1.0
    a = 1.0 / (1.0 + 30.0 / (2 * math.pi * 2.0))
    np.testing.assert_allclose(
        one_euro(step, 30, min_cutoff=2.0, beta=0.0)[1:, 0, 0], 1 - (1 - a) ** np.arange(1, 10)
    )
    # a gap restarts the filter: NaN stays NaN and the first sample after it is passed through
    x = _walk(100, 2)
    x[40:45, 0] = np.nan
    y = one_euro(x, 60)
    assert np.array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_allclose(y[45, 0], x[45, 0])
    np.testing.assert_allclose(y[45:, 0], one_euro(x[45:, 0:1], 60)[:, 0], atol=1e-9)
    np.testing.assert_allclose(y[:, 1], one_euro(x[:, 1:2], 60)[:, 0], atol=1e-9)
    # joint speed: every coordinate of a joint uses the 3D speed; equal to the per-coordinate
    # filter when only one coordinate moves
    one_axis = np.zeros((80, 1, 3))
    one_axis[:, 0, 1] = _walk(80, 1)[:, 0, 0]
    np.testing.assert_allclose(one_euro(one_axis, 60, joint_speed=True), one_euro(one_axis, 60), atol=1e-9)
    moving = _walk(80, 2)
    assert not np.allclose(one_euro(moving, 60, beta=0.05, joint_speed=True), one_euro(moving, 60, beta=0.05))


def test_filters_keep_type_dtype_and_batch_dims():
    x = _walk(64, 3)
    for fn in (lambda a: butterworth(a, 60), lambda a: savgol(a), lambda a: one_euro(a, 60)):
        y32 = fn(x.astype(np.float32))
        assert isinstance(y32, np.ndarray) and y32.dtype == np.float32 and y32.shape == x.shape
        yt = fn(torch.from_numpy(x).float())
        assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32
        np.testing.assert_allclose(yt.numpy(), fn(x), rtol=1e-5, atol=1e-3)
        batch = np.stack([x, x[::-1].copy()])  # (B, T, J, 3): time is axis -3
        yb = fn(batch)
        np.testing.assert_allclose(yb[0], fn(x), atol=1e-9)
        np.testing.assert_allclose(yb[1], fn(x[::-1].copy()), atol=1e-9)
    with pytest.raises(ValueError, match="cutoff_hz"):
        butterworth(x, 60, cutoff_hz=30)
    with pytest.raises(ValueError, match="even"):
        butterworth(x, 60, order=3)
    with pytest.raises(ValueError, match="odd"):
        savgol(x, window=10)
    with pytest.raises(ValueError, match="fps"):
        one_euro(x, 0)
    with pytest.raises(ValueError, match="time at axis -3"):
        butterworth(np.zeros((10, 3)), 60)


# --------------------------------------------------------------------------------------------
# Gap filling
# --------------------------------------------------------------------------------------------


def test_fill_gaps_exact_on_polynomials_and_report():
    t = np.arange(60.0)[:, None, None]
    lin = 2.0 * t + np.array([[[1.0, -3.0, 5.0]]]) * np.ones((1, 3, 1))
    cub = 0.002 * t**3 - 0.1 * t**2 + t + np.zeros((1, 3, 3))
    holes = np.zeros((60, 3), bool)
    holes[10:14, 0] = True  # 4 frames: filled
    holes[30:50, 0] = True  # 20 frames: too long
    holes[0:3, 1] = True  # at the start
    holes[57:, 2] = True  # at the end
    holes[20, 2] = True  # 1 frame: filled
    for method, truth in (("linear", lin), ("cubic", cub), ("pchip", lin), ("akima", lin)):
        x = np.where(holes[..., None], np.nan, truth)
        y, report = fill_gaps(x, max_gap=10, method=method, joint_names=["a", "b", "c"])
        np.testing.assert_allclose(y[10:14, 0], truth[10:14, 0], atol=1e-6)
        np.testing.assert_allclose(y[20, 2], truth[20, 2], atol=1e-6)
        unfilled = np.zeros((60, 3), bool)
        unfilled[30:50, 0] = unfilled[0:3, 1] = unfilled[57:, 2] = True
        assert np.array_equal(np.isnan(y).any(-1), unfilled)
    gaps = {(g.joint, g.start): g for g in report.gaps}
    assert len(report.gaps) == 5
    assert gaps[(0, 10)].length == 4 and gaps[(0, 10)].filled and gaps[(0, 10)].reason == "filled"
    assert gaps[(0, 30)].length == 20 and not gaps[(0, 30)].filled
    assert gaps[(0, 30)].reason == "longer than max_gap"
    assert gaps[(1, 0)].reason == "at the start" and gaps[(2, 57)].reason == "at the end"
    assert report.frames_filled == 5 and report.frames_missing == 26
    assert [g.start for g in report.for_joint("a")] == [10, 30]
    mask = report.filled_mask()
    assert mask.sum() == 5 and mask[10:14, 0].all() and mask[20, 2]
    text = report.format(frame_indices=np.arange(100, 160))
    assert "130-149 (longer than max_gap)" in text and "100-102 (at the start)" in text
    assert report.to_dict()["gaps"][0] == {
        "joint": 0,
        "start": 10,
        "length": 4,
        "filled": True,
        "reason": "filled",
    }


def test_fill_gaps_joint_level_nan_batch_torch_and_no_data():
    x = _walk(40, 3)
    x[5, 0, 1] = np.nan  # one coordinate: the whole joint is missing
    x[:, 2] = np.nan  # never seen
    y, report = fill_gaps(x, max_gap=0)
    assert np.isnan(y[5, 0]).all() and np.isfinite(y[:, 1]).all()
    assert {g.reason for g in report.gaps} == {"longer than max_gap", "no data"}
    assert find_gaps(x, max_gap=3).gaps[0].reason == "filled" and not find_gaps(x).gaps[0].filled
    batch = np.stack([x, _walk(40, 3, seed=5)])
    yb, rb = fill_gaps(torch.from_numpy(batch).float(), max_gap=3, method="linear")
    assert isinstance(yb, torch.Tensor) and yb.dtype == torch.float32 and yb.shape == batch.shape
    assert {(g.batch, g.joint) for g in rb.gaps} == {((0,), 0), ((0,), 2)}
    assert torch.isfinite(yb[0, 5, 0]).all() and torch.isfinite(yb[1]).all()
    with pytest.raises(ValueError, match="interpolation"):
        fill_gaps(x, method="quadratic")
    with pytest.raises(ValueError, match="max_gap"):
        fill_gaps(x, max_gap=-1)


def test_smooth_trajectories_fills_then_filters():
    x = _walk(200, 2) + np.random.default_rng(3).normal(0, 4, (200, 2, 3))
    x[50:55, 0] = np.nan
    x[100:150, 1] = np.nan
    y, report = smooth_trajectories(x, 60, "butterworth", max_gap=10, cutoff_hz=8)
    assert np.isfinite(y[50:55, 0]).all() and np.isnan(y[100:150, 1]).all()
    filled, _ = fill_gaps(x, 10)
    np.testing.assert_allclose(y, butterworth(filled, 60, 8), atol=1e-9)
    assert report.frames_filled == 5 and report.frames_missing == 50
    with pytest.raises(ValueError, match="fps"):
        smooth_trajectories(x, None, "oneeuro")
    with pytest.raises(ValueError, match="unknown filter"):
        smooth_trajectories(x, 60, "kalman")


@pytest.mark.skipif(not CMU_BVH.is_file(), reason=f"CMU BVH not found at {CMU_BVH}")
def test_filters_denoise_real_motion():
    """CMU walk (H36M-17 joints) with 10 mm noise: each filter brings the error well down."""
    from mvpose.data.motion import load_motion, motion_to_h36m17

    motion = load_motion(CMU_BVH, drop_first_frame=True)
    clean = motion_to_h36m17(motion)  # (T, 17, 3) mm, 60 fps
    noisy = clean + np.random.default_rng(0).normal(0, 10.0, clean.shape)
    rmse = {"noisy": np.sqrt(((noisy - clean) ** 2).mean())}
    rmse["butterworth"] = np.sqrt(((butterworth(noisy, 60, 6, 4) - clean) ** 2).mean())
    rmse["savgol"] = np.sqrt(((savgol(noisy, 15, 3) - clean) ** 2).mean())
    rmse["oneeuro"] = np.sqrt(((one_euro(noisy, 60) - clean) ** 2).mean())  # causal: lags a little
    assert rmse["noisy"] == pytest.approx(10.0, rel=0.05)
    assert rmse["butterworth"] < 5.0 and rmse["savgol"] < 5.0 and rmse["oneeuro"] < 8.0, rmse


def _fps(fn, x, repeats=3) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return x.shape[0] / best


def test_vectorised_filters_beat_the_studio_target():
    """T = 10,000 frames x 17 joints: well above 20,000 frames/s (no per-joint Python loops)."""
    x = _walk(10_000, 17)
    x[5000:5004, 3] = np.nan
    for fn in (lambda a: butterworth(a, 60), savgol, lambda a: fill_gaps(a, 10)[0]):
        assert _fps(fn, x) > 20_000


@pytest.mark.slow
def test_one_euro_throughput():
    assert _fps(lambda a: one_euro(a, 60), _walk(10_000, 17)) > 20_000
