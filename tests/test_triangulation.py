import cv2
import numpy as np
import pytest
import torch
from geometry_helpers import random_points, ring_rig

from mvpose.geometry import project_pinhole, reprojection_error, triangulate, triangulate_dlt, triangulate_robust


def _svd_dlt(uv: np.ndarray, P: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One point: weighted homogeneous DLT by numpy SVD (the per-point reference)."""
    rows = []
    for v in range(len(P)):
        rows.append(w[v] * (uv[v, 0] * P[v, 2] - P[v, 0]))
        rows.append(w[v] * (uv[v, 1] * P[v, 2] - P[v, 1]))
    _, _, vt = np.linalg.svd(np.stack(rows))
    return vt[-1, :3] / vt[-1, 3]


@pytest.mark.parametrize("views", [2, 3, 5, 8])
def test_noise_free_recovery(views):
    rig = ring_rig(views, seed=views)
    X = random_points(7, 17, seed=views)
    uv = rig.project(X, distort=False)
    Xr = triangulate_dlt(uv, rig.projection_matrices())
    assert Xr.shape == (7, 17, 3) and Xr.dtype == torch.float64
    assert (Xr - X).norm(dim=-1).max() < 1e-6
    # through the rig, with distortion: undistort, then DLT
    Xd = rig.triangulate(rig.project(X))
    assert (Xd - X).norm(dim=-1).max() < 1e-6
    for method in ("robust", "refine", "robust+refine"):
        assert (rig.triangulate(rig.project(X), method=method) - X).norm(dim=-1).max() < 1e-6


def test_matches_cv2_triangulate_points_two_views():
    rig = ring_rig(2, seed=3)
    X = random_points(500, seed=4)
    P = rig.projection_matrices()
    g = torch.Generator().manual_seed(0)
    uv = project_pinhole(X, P) + 2.0 * torch.randn(2, 500, 2, generator=g, dtype=torch.float64)
    ours = triangulate_dlt(uv, P)
    Xh = cv2.triangulatePoints(P[0].numpy(), P[1].numpy(), uv[0].numpy().T, uv[1].numpy().T)
    ref = (Xh[:3] / Xh[3]).T
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6, rtol=0)


def test_batched_equals_looped_weighted_svd():
    rig = ring_rig(4, seed=5)
    X = random_points(6, 17, seed=6)
    P = rig.projection_matrices()
    g = torch.Generator().manual_seed(1)
    uv = project_pinhole(X, P) + 3.0 * torch.randn(6, 4, 17, 2, generator=g, dtype=torch.float64)
    w = torch.rand(6, 4, 17, generator=g, dtype=torch.float64) + 0.05
    ours = triangulate_dlt(uv, P, w)
    ref = np.stack(
        [
            np.stack([_svd_dlt(uv[b, :, j].numpy(), P.numpy(), w[b, :, j].numpy()) for j in range(17)])
            for b in range(6)
        ]
    )
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6, rtol=0)
    # a per-sample rig (batched projection matrices) gives the same answer
    ours_b = triangulate_dlt(uv, P.expand(6, 4, 3, 4), w)
    torch.testing.assert_close(ours_b, ours, atol=1e-9, rtol=0)


def test_outlier_magnitudes_still_match_svd():
    """Far-off detections make the smallest eigenvalue large: the solver must still equal SVD."""
    rig = ring_rig(4, seed=7)
    P = rig.projection_matrices()
    X = random_points(300, seed=8)
    g = torch.Generator().manual_seed(2)
    uv = project_pinhole(X, P) + 150.0 * torch.randn(4, 300, 2, generator=g, dtype=torch.float64)
    ours = triangulate_dlt(uv, P).numpy()
    w = np.ones(4)
    ref = np.stack([_svd_dlt(uv[:, j].numpy(), P.numpy(), w) for j in range(300)])
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


def test_zero_or_nan_weight_ignores_view_and_too_few_views_give_nan():
    rig = ring_rig(4, seed=9)
    P = rig.projection_matrices()
    X = random_points(5, seed=10)
    g = torch.Generator().manual_seed(3)
    uv = project_pinhole(X, P) + torch.randn(4, 5, 2, generator=g, dtype=torch.float64)
    w = torch.ones(4, 5, dtype=torch.float64)
    w[1, 0] = 0.0
    w[2, 1] = float("nan")
    uv[3, 2] = float("nan")
    full = triangulate_dlt(uv, P, w)
    for j, drop in ((0, 1), (1, 2), (2, 3)):
        keep = [v for v in range(4) if v != drop]
        sub = triangulate_dlt(uv[keep][:, j : j + 1], P[keep])
        torch.testing.assert_close(full[j : j + 1], sub, atol=1e-9, rtol=0)
    w2 = w.clone()
    w2[:3, 4] = 0.0  # one usable view left
    out = triangulate_dlt(uv, P, w2)
    assert torch.isnan(out[4]).all() and torch.isfinite(out[:2]).all()
    empty = triangulate(torch.full((4, 3, 2), float("nan")), P, method="robust+refine")
    assert torch.isnan(empty).all()


def test_gradcheck_float64():
    rig = ring_rig(3, seed=11)
    P = rig.projection_matrices()
    X = random_points(2, 3, seed=12)
    uv = (project_pinhole(X, P) + 0.5).requires_grad_(True)
    w = (torch.rand(2, 3, 3, dtype=torch.float64) + 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: triangulate_dlt(a, P, b), (uv, w), eps=1e-6, atol=1e-5)


def test_robust_rejects_outlier_view():
    rig = ring_rig(5, seed=13)
    X = random_points(40, 17, seed=14)
    g = torch.Generator().manual_seed(4)
    uv = rig.project(X) + 1.0 * torch.randn(40, 5, 17, 2, generator=g, dtype=torch.float64)
    bad = torch.zeros(40, 5, 17, dtype=torch.bool)
    bad[:, 2, ::3] = True  # view 2 wrong on every third joint
    bad[::2, 4, 1::3] = True
    uv = uv + bad[..., None] * torch.tensor([120.0, -90.0], dtype=torch.float64)
    err_dlt = (rig.triangulate(uv) - X).norm(dim=-1)
    Xr, used = rig.triangulate(uv, method="robust", return_views=True)
    err_rob = (Xr - X).norm(dim=-1)
    assert err_dlt[bad.any(1)].mean() > 20.0
    assert err_rob.mean() < 4.0 and err_rob.max() < 15.0
    assert not (used & bad).any()
    assert used[~bad].float().mean() > 0.99


def test_robust_with_many_views_samples_pairs_deterministically():
    rig = ring_rig(12, seed=15)
    X = random_points(3, 5, seed=16)
    uv = rig.project(X, distort=False)
    P = rig.projection_matrices()
    a, _ = triangulate_robust(uv, P, max_pairs=20, generator=torch.Generator().manual_seed(0))
    b, _ = triangulate_robust(uv, P, max_pairs=20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert (a - X).norm(dim=-1).max() < 1e-6


def test_refine_lowers_reprojection_error_with_distortion():
    rig = ring_rig(4, seed=17, distortion=2.0)
    X = random_points(64, 17, seed=18)
    g = torch.Generator().manual_seed(5)
    uv = rig.project(X) + 3.0 * torch.randn(64, 4, 17, 2, generator=g, dtype=torch.float64)
    X_dlt = rig.triangulate(uv)
    X_ref = rig.triangulate(uv, method="refine")
    cost = lambda Y: (rig.reprojection_error(Y, uv) ** 2).sum(-2)  # noqa: E731
    assert bool((cost(X_ref) <= cost(X_dlt) + 1e-9).all())
    assert cost(X_ref).mean() < cost(X_dlt).mean()
    # first-order optimality: the gradient of the cost vanishes at the refined point
    Y = X_ref.clone().requires_grad_(True)
    cost(Y).sum().backward()
    assert Y.grad.norm(dim=-1).max() < 1e-6 * cost(X_ref).max()


def test_refine_pinhole_without_rig():
    rig = ring_rig(3, seed=19)
    P = rig.projection_matrices()
    X = random_points(20, seed=20)
    g = torch.Generator().manual_seed(6)
    uv = project_pinhole(X, P) + 2.0 * torch.randn(3, 20, 2, generator=g, dtype=torch.float64)
    Xd = triangulate(uv, P, method="dlt")
    Xr = triangulate(uv, P, method="refine")
    e = lambda Y: (reprojection_error(Y, uv, P) ** 2).sum(0)  # noqa: E731
    assert bool((e(Xr) <= e(Xd) + 1e-9).all())


def test_bad_shapes_and_method_raise():
    P = ring_rig(2).projection_matrices()
    with pytest.raises(ValueError, match="proj"):
        triangulate(torch.zeros(3, 5, 2), P)
    with pytest.raises(ValueError, match="method"):
        triangulate(torch.zeros(2, 5, 2), P, method="magic")
    with pytest.raises(ValueError, match="weights"):
        triangulate(torch.zeros(2, 5, 2), P, torch.ones(2, 4))
