"""Learnable-triangulation losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from mvpose.models.losses import KeypointsMAELoss, KeypointsMSELoss, KeypointsMSESmoothLoss, VolumetricCELoss


def _pair():
    pred = torch.zeros(1, 2, 3)
    gt = torch.tensor([[[1.0, -2.0, 3.0], [10.0, 0.0, -30.0]]])
    return pred, gt


def test_mae():
    pred, gt = _pair()
    assert KeypointsMAELoss()(pred, gt).item() == pytest.approx((6 + 40) / (3 * 2))
    valid = torch.tensor([[True, False]])
    assert KeypointsMAELoss()(pred, gt, valid).item() == pytest.approx(6 / 3)
    assert KeypointsMAELoss()(pred, gt, valid[..., None].float()).item() == pytest.approx(6 / 3)
    # nothing valid: 0 (the reference divides by max(1, count))
    assert KeypointsMAELoss()(pred, gt, torch.zeros(1, 2)).item() == 0.0


def test_mse_and_smooth():
    pred, gt = _pair()
    assert KeypointsMSELoss()(pred, gt).item() == pytest.approx((1 + 4 + 9 + 100 + 900) / 6)
    # threshold 400: 900 is softened to 900**0.1 * 400**0.9, the rest kept
    smooth = KeypointsMSESmoothLoss(threshold=400.0, alpha=0.1)
    want = (1 + 4 + 9 + 100 + 900**0.1 * 400**0.9) / 6
    assert smooth(pred, gt).item() == pytest.approx(want, rel=1e-6)
    # another threshold/alpha; continuous at the threshold
    s2 = KeypointsMSESmoothLoss(threshold=50.0, alpha=0.5)
    assert s2(pred, gt).item() == pytest.approx((1 + 4 + 9 + 100**0.5 * 50**0.5 + 900**0.5 * 50**0.5) / 6)
    at = torch.tensor([[[math.sqrt(400.0), 0.0, 0.0]]])
    assert smooth(torch.zeros(1, 1, 3), at).item() == pytest.approx(400.0 / 3)
    assert smooth(pred, gt, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(
        (100 + 900**0.1 * 400**0.9) / 3
    )


def test_masked_nan_ground_truth_and_finite_gradients():
    pred = torch.randn(2, 4, 3, requires_grad=True)
    gt = torch.randn(2, 4, 3) * 50
    gt[0, 1] = float("nan")  # a joint without ground truth
    valid = torch.ones(2, 4, dtype=torch.bool)
    valid[0, 1] = False
    for loss_fn in (KeypointsMAELoss(), KeypointsMSELoss(), KeypointsMSESmoothLoss()):
        loss = loss_fn(pred, gt, valid)
        assert torch.isfinite(loss)
        (g,) = torch.autograd.grad(loss, pred)
        assert torch.isfinite(g).all() and torch.all(g[0, 1] == 0)
    with pytest.raises(ValueError, match="validity"):
        KeypointsMAELoss()(pred, gt, torch.ones(2, 3))


def test_volumetric_ce():
    # a 3 x 3 x 3 grid of 100 mm spacing, two joints, batch 2
    ax = torch.arange(3.0) * 100
    grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1)
    coords = grid.expand(2, 3, 3, 3, 3)
    probs = torch.softmax(torch.randn(2, 2, 27, generator=torch.Generator().manual_seed(0)), -1)
    volumes = probs.reshape(2, 2, 3, 3, 3)
    gt = torch.tensor(
        [[[10.0, 190.0, 120.0], [260.0, -40.0, 0.0]], [[100.0, 100.0, 100.0], [0.0, 0.0, 290.0]]]
    )
    idx = [[(0, 2, 1), (2, 0, 0)], [(1, 1, 1), (0, 0, 2)]]
    picked = torch.tensor([[volumes[b, j][idx[b][j]] for j in range(2)] for b in range(2)])
    want = (-torch.log(picked + 1e-6)).sum() / 4
    loss_fn = VolumetricCELoss()
    torch.testing.assert_close(loss_fn(coords, volumes, gt, torch.ones(2, 2)), want)
    # an invalid joint adds nothing but still counts in the mean over B * J (as the reference)
    valid = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    want_masked = (-torch.log(picked + 1e-6) * valid).sum() / 4
    torch.testing.assert_close(loss_fn(coords, volumes, gt, valid[..., None]), want_masked)
    gt_nan = gt.clone()
    gt_nan[0, 1] = float("nan")
    torch.testing.assert_close(loss_fn(coords, volumes, gt_nan, valid), want_masked)
    v = volumes.clone().requires_grad_(True)
    loss_fn(coords, v, gt).backward()
    assert torch.isfinite(v.grad).all() and (v.grad != 0).sum() == 4
