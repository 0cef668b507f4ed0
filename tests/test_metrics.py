"""Tests for mvpose.metrics against hand-computed cases and independent references."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial import procrustes as scipy_procrustes
from scipy.spatial.transform import Rotation

from mvpose.metrics import (
    AUC_THRESHOLDS_MM,
    auc,
    format_table,
    mpjpe,
    mpjve,
    n_mpjpe,
    p_mpjpe,
    pck,
    pcp,
    per_group,
    procrustes_align,
    summarize,
)
from mvpose.skeleton import H36M17


def _poses(n=8, j=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, j, 3, generator=g, dtype=torch.float64) * 300.0


def _rotations(n, seed=1):
    return torch.as_tensor(Rotation.random(n, random_state=seed).as_matrix())


def _similar(q, seed=1, reflect=False):
    """A rotated (optionally reflected), scaled, translated copy of q."""
    r = _rotations(q.shape[0], seed)
    if reflect:
        r = r @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    s = torch.linspace(0.5, 2.0, q.shape[0], dtype=torch.float64)[:, None, None]
    t = torch.tensor([120.0, -40.0, 3500.0], dtype=torch.float64)
    return s * (q @ r.transpose(-1, -2)) + t, r


def _umeyama_numpy(p, q):
    """Independent per-sample reference: similarity alignment of p (J,3) onto q (J,3)."""
    mp, mq = p.mean(0), q.mean(0)
    pc, qc = p - mp, q - mq
    u, s, vt = np.linalg.svd(qc.T @ pc)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, d]) @ vt
    scale = (s * [1.0, 1.0, d]).sum() / (pc**2).sum()
    return scale * pc @ r.T + mq


# ------------------------------------------------------------------------------------------------
# MPJPE family
# ------------------------------------------------------------------------------------------------


def test_translation_offset_gives_exact_mpjpe():
    q = _poses()
    p = q + torch.tensor([30.0, 40.0, 0.0], dtype=torch.float64)
    assert mpjpe(p, q).item() == pytest.approx(50.0, abs=1e-9)
    assert torch.allclose(mpjpe(p, q, reduction="sample"), torch.full((8,), 50.0, dtype=torch.float64))
    assert mpjpe(p, q, reduction="none").shape == (8, 17)
    assert mpjpe(p, q, root=0).item() == pytest.approx(0.0, abs=1e-9)  # relative MPJPE removes it
    assert p_mpjpe(p, q).item() == pytest.approx(0.0, abs=1e-8)


def test_root_relative_hand_case():
    q = torch.zeros(1, 3, 3)
    p = torch.tensor([[[10.0, 0, 0], [10.0, 0, 0], [10.0, 3.0, 4.0]]])
    assert mpjpe(p, q).item() == pytest.approx((10 + 10 + math.sqrt(125)) / 3)
    assert mpjpe(p, q, root=0).item() == pytest.approx(5.0 / 3)
    assert mpjpe(p, q, root=0, reduction="none")[0].tolist() == pytest.approx([0.0, 0.0, 5.0])


@pytest.mark.parametrize("reflect", [False, True])
def test_similar_copy_has_zero_p_mpjpe(reflect):
    q = _poses()
    p, _ = _similar(q, reflect=reflect)
    assert mpjpe(p, q).item() > 100.0
    if reflect:
        # reflections are not allowed: a mirrored pose keeps a clear error
        assert p_mpjpe(p, q).item() > 10.0
        # ... but aligning the mirrored copy onto the mirror of q is exact
        m = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
        assert p_mpjpe(p, q @ m).item() == pytest.approx(0.0, abs=1e-8)
    else:
        assert p_mpjpe(p, q).item() == pytest.approx(0.0, abs=1e-8)
        torch.testing.assert_close(procrustes_align(p, q), q)


def test_reflection_fix_returns_a_proper_rotation():
    # A nearly planar, mirrored target: the unconstrained orthogonal fit would be a reflection.
    q = _poses(n=16, seed=3)
    p = q * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64) + torch.randn_like(q)
    aligned = procrustes_align(p, q, scale=False)
    pc = p - p.mean(-2, keepdim=True)
    ac = aligned - aligned.mean(-2, keepdim=True)
    r = torch.linalg.lstsq(pc, ac).solution.transpose(-1, -2)  # aligned = pc @ R^T
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(16, 3, 3))
    assert (torch.linalg.det(r) > 0).all()


def test_procrustes_matches_numpy_and_scipy():
    q = _poses(n=5, seed=4)
    p, _ = _similar(q, seed=5)
    p = p + torch.randn_like(p, dtype=torch.float64) * 40.0
    aligned = procrustes_align(p, q)
    for i in range(5):
        ref = _umeyama_numpy(p[i].numpy(), q[i].numpy())
        np.testing.assert_allclose(aligned[i].numpy(), ref, atol=1e-8)
        # scipy standardises both sets (centred, unit Frobenius norm) and reports the residual
        _, _, disparity = scipy_procrustes(q[i].numpy(), p[i].numpy())
        qc = q[i] - q[i].mean(0)
        ours = ((aligned[i] - q[i]) ** 2).sum() / (qc**2).sum()
        assert ours.item() == pytest.approx(disparity, rel=1e-8)


def test_rigid_alignment_keeps_scale():
    q = _poses(n=3)
    r = _rotations(3, seed=7)
    p = 2.0 * (q @ r.transpose(-1, -2))
    assert p_mpjpe(p, q, scale=False).item() > 10.0
    assert p_mpjpe(p / 2.0, q, scale=False).item() == pytest.approx(0.0, abs=1e-8)


def test_alignment_never_increases_the_squared_error():
    # Procrustes minimises the sum of squared errors; the identity and the root translation
    # are candidates, so the aligned RMS error is never larger (holds for any data).
    g = torch.Generator().manual_seed(11)
    q = torch.randn(500, 17, 3, generator=g, dtype=torch.float64) * 200
    p = torch.randn(500, 17, 3, generator=g, dtype=torch.float64) * 200
    aligned = procrustes_align(p, q)
    sse = ((aligned - q) ** 2).sum((-1, -2))
    assert (sse <= ((p - q) ** 2).sum((-1, -2)) + 1e-6).all()
    rel_p, rel_q = p - p[:, :1], q - q[:, :1]
    assert (sse <= ((rel_p - rel_q) ** 2).sum((-1, -2)) + 1e-6).all()


def test_p_mpjpe_below_mpjpe_on_random_noisy_poses():
    q = _poses(n=400, seed=12)
    p, _ = _similar(q, seed=13)
    p = p + torch.randn(p.shape, generator=torch.Generator().manual_seed(14), dtype=torch.float64) * 60
    pa = p_mpjpe(p, q, reduction="sample")
    assert (pa <= mpjpe(p, q, reduction="sample")).all()
    assert (pa <= mpjpe(p, q, root=0, reduction="sample")).all()
    # For the mean of unsquared distances this is not a theorem: one far-off joint is a counterexample.
    q1 = _poses(n=1, seed=15)
    p1 = q1.clone()
    p1[0, 3] += 1000.0
    assert p_mpjpe(p1, q1).item() > mpjpe(p1, q1).item()


def test_n_mpjpe_of_scaled_copy_is_zero():
    q = _poses()
    p = 1.3 * q
    assert n_mpjpe(p, q).item() == pytest.approx(0.0, abs=1e-9)
    assert mpjpe(p, q).item() > 10.0
    shifted = 0.7 * q + torch.tensor([10.0, 20.0, 30.0], dtype=torch.float64)
    assert n_mpjpe(shifted, q, root=0).item() == pytest.approx(0.0, abs=1e-9)
    assert n_mpjpe(shifted, q).item() > 1.0  # without centring the offset remains
    # hand case: s = <p,q>/<p,p> with p = (1,0,0), q = (2,1,0): s = 2, error |(2,0,0)-(2,1,0)| = 1
    p1 = torch.tensor([[[1.0, 0.0, 0.0]]])
    q1 = torch.tensor([[[2.0, 1.0, 0.0]]])
    assert n_mpjpe(p1, q1).item() == pytest.approx(1.0)


def test_mpjve():
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 10, 17, 3, generator=g, dtype=torch.float64) * 100
    assert mpjve(q + 25.0, q).item() == pytest.approx(0.0, abs=1e-12)
    p = q.clone()
    p[:, 5] += torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64)  # a jump at one frame
    # velocities differ by 5 mm/frame at the two frame pairs around frame 5, out of 9 pairs
    assert mpjve(p, q).item() == pytest.approx(5.0 * 2 / 9)
    assert mpjve(p, q, reduction="none").shape == (2, 9, 17)
    assert mpjve(p, q, reduction="sample").shape == (2, 9)
    mask = torch.ones(2, 10, 17, dtype=torch.bool)
    mask[:, 5] = False
    assert mpjve(p, q, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(mpjve(q[:, :1], q[:, :1]).item())


# ------------------------------------------------------------------------------------------------
# PCK / AUC / PCP
# ------------------------------------------------------------------------------------------------


def _with_errors(errors):
    """Poses whose per-joint errors are exactly ``errors`` (along x)."""
    e = torch.as_tensor(errors, dtype=torch.float64)
    q = torch.zeros(*e.shape, 3, dtype=torch.float64)
    p = q.clone()
    p[..., 0] = e
    return p, q


def test_pck_of_known_errors():
    p, q = _with_errors([[0.0, 50.0, 149.9, 150.0, 200.0]])
    assert pck(p, q).item() == pytest.approx(60.0)  # 150 itself is not below the threshold
    assert pck(p, q, 50.0).item() == pytest.approx(20.0)
    assert pck(p, q, reduction="none")[0].tolist() == [100.0, 100.0, 100.0, 0.0, 0.0]
    assert pck(p, q, 1000.0).item() == pytest.approx(100.0)


def test_auc_of_known_errors():
    assert len(AUC_THRESHOLDS_MM) == 31 and AUC_THRESHOLDS_MM[-1] == 150.0
    # every error 75 mm: correct at thresholds 80..150 (strictly below), 15 of 31
    p, q = _with_errors(torch.full((3, 17), 75.0))
    assert auc(p, q).item() == pytest.approx(100.0 * 15 / 31)
    # 72.5 mm: thresholds 75..150, 16 of 31
    p, q = _with_errors(torch.full((3, 17), 72.5))
    assert auc(p, q).item() == pytest.approx(100.0 * 16 / 31)
    p, q = _with_errors(torch.zeros(2, 17))
    assert auc(p, q).item() == pytest.approx(100.0 * 30 / 31)  # 0 is not below 0
    p, q = _with_errors(torch.full((2, 17), 500.0))
    assert auc(p, q).item() == 0.0
    # AUC is the mean of PCK over the thresholds
    p = _poses(n=20, seed=2)
    q = p + torch.randn_like(p) * 60
    curve = torch.stack([pck(p, q, t) for t in AUC_THRESHOLDS_MM])
    assert auc(p, q).item() == pytest.approx(curve.mean().item())


def test_pcp():
    q = torch.tensor([[[0.0, 0, 0], [100.0, 0, 0], [200.0, 0, 0]]])
    p = q.clone()
    p[0, 2, 1] = 120.0  # endpoint error 120; limb (1,2) mean error 60 > 50, limb (0,1) exact
    assert pcp(p, q, [(0, 1), (1, 2)]).item() == pytest.approx(50.0)
    assert pcp(p, q, [(0, 1), (1, 2)], alpha=0.6).item() == pytest.approx(100.0)
    assert pcp(p, q, H36M17.limbs[:0] + ((0, 1),)).item() == 100.0


# ------------------------------------------------------------------------------------------------
# masks, batching, inputs
# ------------------------------------------------------------------------------------------------

METRICS = {
    "mpjpe": lambda p, q, m, **kw: mpjpe(p, q, m, **kw),
    "mpjpe_rel": lambda p, q, m, **kw: mpjpe(p, q, m, root=0, **kw),
    "p_mpjpe": lambda p, q, m, **kw: p_mpjpe(p, q, m, **kw),
    "n_mpjpe": lambda p, q, m, **kw: n_mpjpe(p, q, m, root=0, **kw),
    "pck": lambda p, q, m, **kw: pck(p, q, 150.0, m, root=0, **kw),
    "auc": lambda p, q, m, **kw: auc(p, q, m, root=0, **kw),
}


@pytest.mark.parametrize("name", list(METRICS))
def test_masked_joints_do_not_affect_results(name):
    fn = METRICS[name]
    q = _poses(n=6, seed=21)
    p = q + torch.randn(q.shape, generator=torch.Generator().manual_seed(22), dtype=torch.float64) * 50
    mask = torch.ones(6, 17, dtype=torch.bool)
    mask[:, [3, 10, 16]] = False
    mask[2, 5] = False
    ref = fn(p, q, mask, reduction="sample")
    # garbage (even NaN) in masked joints changes nothing
    p2, q2 = p.clone(), q.clone()
    p2[~mask] = float("nan")
    q2[~mask] = 1e6
    torch.testing.assert_close(fn(p2, q2, mask, reduction="sample"), ref)
    # and equals evaluating the valid joints only (sample 2 has a different set)
    keep = [j for j in range(17) if j not in (3, 10, 16)]
    for i in (0, 2):
        sel = [j for j in keep if mask[i, j]]
        torch.testing.assert_close(
            fn(p[i : i + 1, sel], q[i : i + 1, sel], None, reduction="sample")[0], ref[i]
        )
    none = fn(p2, q2, mask, reduction="none")
    assert torch.isnan(none[~mask]).all() and not torch.isnan(none[mask]).any()


@pytest.mark.parametrize("name", list(METRICS))
def test_sample_without_valid_joints_is_nan(name):
    fn = METRICS[name]
    q = _poses(n=3, seed=23)
    p = q + 10.0
    mask = torch.ones(3, 17, dtype=torch.bool)
    mask[1] = False
    per_sample = fn(p, q, mask, reduction="sample")
    assert torch.isnan(per_sample[1]) and not torch.isnan(per_sample[[0, 2]]).any()
    assert not torch.isnan(fn(p, q, mask)).item()
    assert torch.isnan(fn(p, q, torch.zeros(3, 17, dtype=torch.bool))).item()


def test_masked_root_invalidates_the_relative_sample():
    q = _poses(n=2)
    mask = torch.ones(2, 17, dtype=torch.bool)
    mask[0, 0] = False
    out = mpjpe(q + 1.0, q, mask, root=0, reduction="sample")
    assert torch.isnan(out[0]) and out[1].item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("name", list(METRICS))
def test_batched_equals_looped(name):
    fn = METRICS[name]
    q = _poses(n=12, seed=31).reshape(3, 4, 17, 3)
    p = q + torch.randn(q.shape, generator=torch.Generator().manual_seed(32), dtype=torch.float64) * 80
    batched = fn(p, q, None, reduction="sample")
    assert batched.shape == (3, 4)
    looped = torch.stack([torch.stack([fn(p[a, b], q[a, b], None) for b in range(4)]) for a in range(3)])
    torch.testing.assert_close(batched, looped)


def test_numpy_and_float32_inputs():
    q = _poses(n=4).numpy()
    p = q + np.array([3.0, 4.0, 0.0])
    out = mpjpe(p, q)
    assert isinstance(out, torch.Tensor) and out.item() == pytest.approx(5.0)
    p32, q32 = torch.as_tensor(p, dtype=torch.float32), torch.as_tensor(q, dtype=torch.float32)
    assert p_mpjpe(p32, q32).dtype == torch.float32
    assert procrustes_align(p32, q32).dtype == torch.float32
    assert mpjpe(p, q, np.ones((4, 17), dtype=bool)).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="same shape"):
        mpjpe(p[:, :16], q)
    with pytest.raises(ValueError, match="reduction"):
        mpjpe(p, q, reduction="sum")
    with pytest.raises(ValueError, match="broadcast"):
        mpjpe(p, q, np.ones((3, 17), dtype=bool))


def test_degenerate_alignment_is_nan_not_an_exception():
    q = _poses(n=3)
    p = q.clone()
    p[1] = float("nan")  # unmasked NaN: that sample is NaN, the others are fine
    out = p_mpjpe(p, q, reduction="sample")
    assert torch.isnan(out[1]) and (out[[0, 2]] < 1e-6).all()
    collapsed = torch.zeros(1, 17, 3, dtype=torch.float64)
    aligned = procrustes_align(collapsed, q[:1])
    torch.testing.assert_close(aligned, q[:1].mean(-2, keepdim=True).expand(1, 17, 3))


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------


def test_per_group():
    out = per_group(torch.tensor([1.0, 3.0, 10.0, float("nan")]), ["walk", "walk", "sit", "sit"])
    assert out == {"sit": 10.0, "walk": 2.0}
    out = per_group(np.array([1.0, 2.0, 4.0]), np.array([9, 11, 9]))
    assert out == {9: 2.5, 11: 2.0}
    with pytest.raises(ValueError):
        per_group(torch.ones(3), ["a", "b"])


def test_summarize_and_format_table():
    q = _poses(n=6, seed=41)
    p = q + torch.tensor([0.0, 0.0, 30.0], dtype=torch.float64)
    p[3:] += torch.randn(3, 17, 3, generator=torch.Generator().manual_seed(42), dtype=torch.float64) * 20
    actions = ["Walk", "Walk", "Walk", "Sit", "Sit", "Eat"]
    s = summarize(p, q, actions, subjects=["S9", "S9", "S11", "S11", "S11", "S11"])
    overall = s["overall"]
    assert overall["N"] == 6
    assert overall["MPJPE-abs"] == pytest.approx(mpjpe(p, q).item())
    assert overall["MPJPE"] == pytest.approx(mpjpe(p, q, root=0).item())
    assert overall["P-MPJPE"] == pytest.approx(p_mpjpe(p, q).item())
    assert overall["PCK@150"] == pytest.approx(pck(p, q, root=0).item())
    assert overall["AUC"] == pytest.approx(auc(p, q, root=0).item())
    assert set(s["per_action"]) == {"Walk", "Sit", "Eat"}
    walk = s["per_action"]["Walk"]
    assert walk["N"] == 3 and walk["MPJPE-abs"] == pytest.approx(30.0) and walk["MPJPE"] == pytest.approx(0.0)
    mean_over_actions = np.mean([s["per_action"][a]["MPJPE"] for a in ("Walk", "Sit", "Eat")])
    assert s["action_mean"]["MPJPE"] == pytest.approx(mean_over_actions)
    assert s["per_subject"]["S9"]["N"] == 2
    text = format_table(s)
    for word in ("Walk", "Sit", "Eat", "S11", "mean over actions", "all samples", "P-MPJPE", "AUC"):
        assert word in text
    assert format_table({"a": 1.25, "b": 2.0}, precision=2).splitlines()[-1].split() == ["b", "2.00"]


def test_summarize_with_mask_and_no_groups():
    q = _poses(n=4, seed=43)
    mask = torch.ones(4, 17, dtype=torch.bool)
    mask[0] = False
    s = summarize(q + 5.0, q, mask=mask)
    assert set(s) == {"overall"}
    assert s["overall"]["MPJPE-abs"] == pytest.approx(5.0 * math.sqrt(3))
    assert s["overall"]["N"] == 4
