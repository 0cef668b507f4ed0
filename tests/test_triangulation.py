import math

import cv2
import numpy as np
import pytest
import torch
from geometry_helpers import look_at, random_points, ring_rig

from mvpose.geometry import (
    CameraRig,
    project_pinhole,
    reprojection_error,
    triangulate,
    triangulate_dlt,
    triangulate_robust,
)
from mvpose.geometry.triangulation import METHODS


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


# ---------------------------------------------------------------------------------------------
# fast solver, robust consensus, refinement safety


def _h36m_like_rig() -> CameraRig:
    """Four cameras around a Human3.6M-sized capture volume with Human3.6M's own lens distortion
    (k1 ~ -0.2, k2 ~ 0.25, small negative k3: the radial polynomial folds back far outside the
    image, where a far-off point projects onto ordinary pixels again)."""
    ang = torch.tensor([0.3, 1.9, 3.5, 5.0], dtype=torch.float64)
    centers = torch.stack([4500 * torch.cos(ang), 4500 * torch.sin(ang), torch.full_like(ang, 1600.0)], -1)
    R, t = look_at(centers, torch.tensor([0.0, 0.0, 900.0], dtype=torch.float64).expand(4, 3))
    K = torch.tensor([[1145.0, 0.0, 512.0], [0.0, 1144.0, 515.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    dist = torch.tensor(
        [
            [-0.2071, 0.2478, -0.0014, -0.0010, -0.0031],
            [-0.1942, 0.2404, -0.0027, -0.0016, 0.0068],
            [-0.2083, 0.2555, -0.0008, 0.0015, -0.0025],
            [-0.1984, 0.2183, -0.0018, -0.0006, -0.0089],
        ],
        dtype=torch.float64,
    )
    return CameraRig(K=K.expand(4, 3, 3), R=R, t=t, dist=dist, distortion_model="h36m")


def _with_outliers(uv, rate, low, high, g):
    hit = torch.rand(uv.shape[:-1], generator=g, dtype=torch.float64) < rate
    r = low + (high - low) * torch.rand(uv.shape[:-1], generator=g, dtype=torch.float64)
    a = 2 * math.pi * torch.rand(uv.shape[:-1], generator=g, dtype=torch.float64)
    return uv + hit[..., None] * torch.stack([r * torch.cos(a), r * torch.sin(a)], -1), hit


def test_dlt_matches_svd_to_1e6_mm_on_distant_cameras():
    """Cameras 4.5 m away (small eigenvalue gap): the secular solver still equals SVD."""
    rig = _h36m_like_rig()
    P = rig.projection_matrices()
    X = random_points(8, 17, seed=21)
    g = torch.Generator().manual_seed(21)
    for sigma in (0.0, 2.0, 5.0):
        uv = project_pinhole(X, P) + sigma * torch.randn(8, 4, 17, 2, generator=g, dtype=torch.float64)
        w = torch.rand(8, 4, 17, generator=g, dtype=torch.float64) + 0.2
        ours = triangulate_dlt(uv, P, w)
        ref = np.stack(
            [
                np.stack([_svd_dlt(uv[b, :, j].numpy(), P.numpy(), w[b, :, j].numpy()) for j in range(17)])
                for b in range(8)
            ]
        )
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6, rtol=0)


def test_refine_never_walks_away_with_outliers_and_h36m_distortion():
    """With many gross outliers the DLT start can be far off or even behind cameras; Levenberg-
    Marquardt must then never increase the cost, never step behind a camera or past the fold of
    the distortion polynomial, and so never end much farther from the truth than its start."""
    rig = _h36m_like_rig()
    X = random_points(300, 17, seed=2)
    g = torch.Generator().manual_seed(2)
    uv = rig.project(X) + 2.0 * torch.randn(300, 4, 17, 2, generator=g, dtype=torch.float64)
    uv, _ = _with_outliers(uv, 0.2, 50.0, 400.0, g)
    X_dlt = rig.triangulate(uv)
    X_ref = rig.triangulate(uv, method="refine")
    cost = lambda Y: (rig.reprojection_error(Y, uv) ** 2).sum(-2)  # noqa: E731
    assert bool((cost(X_ref) <= cost(X_dlt) * (1 + 1e-12) + 1e-9).all())
    e_dlt, e_ref = (X_dlt - X).norm(dim=-1), (X_ref - X).norm(dim=-1)
    assert bool((e_ref <= e_dlt + 1000.0).all())
    assert e_ref.median() < e_dlt.median()
    # every point that moved is in the model's valid domain for all its views
    moved = (X_ref - X_dlt).norm(dim=-1) > 0
    _, _, valid = rig.project_with_jacobian(X_ref, return_valid=True)
    assert bool(valid.all(-2)[moved].all())


def test_refine_stays_within_1m_of_a_sane_dlt_start_with_h36m_outliers():
    """The benchmark's setting (5% outliers of 50-150 px): refinement stays close to its start."""
    rig = _h36m_like_rig()
    X = random_points(200, 17, seed=3)
    g = torch.Generator().manual_seed(7)
    uv = rig.project(X) + 2.0 * torch.randn(200, 4, 17, 2, generator=g, dtype=torch.float64)
    uv, _ = _with_outliers(uv, 0.05, 50.0, 150.0, g)
    X_dlt = rig.triangulate(uv)
    X_ref = rig.triangulate(uv, method="refine")
    sane = (X_dlt - X).norm(dim=-1) < 500.0
    assert bool(((X_ref - X_dlt).norm(dim=-1)[sane] < 1000.0).all())
    cost = lambda Y: (rig.reprojection_error(Y, uv) ** 2).sum(-2)  # noqa: E731
    assert bool((cost(X_ref) <= cost(X_dlt) * (1 + 1e-12) + 1e-9).all())


def test_project_with_jacobian_validity_mask():
    rig = _h36m_like_rig()
    X = random_points(50, seed=4)
    _, _, valid = rig.project_with_jacobian(X, return_valid=True)
    assert bool(valid.all())
    # behind camera 0, and far off its optical axis (past the fold of its distortion polynomial)
    C, R = rig.centers()[0], rig.R[0]
    behind = C - 1000.0 * R[2]
    far = C + 100.0 * R[2] + 10000.0 * R[0]
    _, _, valid = rig.project_with_jacobian(torch.stack([behind, far]), return_valid=True)
    assert not bool(valid[0, 0]) and not bool(valid[0, 1])


def test_robust_two_outlier_views_of_four():
    """Half the views wrong: the exhaustive subset consensus still finds the agreeing pair."""
    rig = ring_rig(4, seed=23)
    P = rig.projection_matrices()
    X = random_points(300, seed=24)
    g = torch.Generator().manual_seed(25)
    uv = project_pinhole(X, P) + 1.0 * torch.randn(4, 300, 2, generator=g, dtype=torch.float64)
    bad = torch.zeros(4, 300, dtype=torch.bool)
    first = torch.randint(0, 4, (300,), generator=g)
    second = (first + torch.randint(1, 4, (300,), generator=g)) % 4
    bad[first, torch.arange(300)] = True
    bad[second, torch.arange(300)] = True
    r = 80.0 + 70.0 * torch.rand(4, 300, generator=g, dtype=torch.float64)
    a = 2 * math.pi * torch.rand(4, 300, generator=g, dtype=torch.float64)
    uv = uv + bad[..., None] * torch.stack([r * torch.cos(a), r * torch.sin(a)], -1)
    Xr, used = triangulate_robust(uv, P, threshold_px=5.0)
    right = (used == ~bad).all(0)
    assert right.double().mean() > 0.9
    # two views only (opposite cameras of the ring are nearly collinear with the point): mm, not cm
    assert (Xr - X).norm(dim=-1)[right].median() < 10.0


def test_robust_without_outliers_is_the_reprojection_optimum():
    """No outliers: every view is kept and the point is the least-squares reprojection optimum
    (what refine gives), better than the DLT."""
    rig = ring_rig(4, seed=26)
    P = rig.projection_matrices()
    X = random_points(30, 17, seed=27)
    g = torch.Generator().manual_seed(28)
    uv = project_pinhole(X, P) + 2.0 * torch.randn(30, 4, 17, 2, generator=g, dtype=torch.float64)
    Xr, used = triangulate(uv, P, method="robust", return_views=True)
    assert bool(used.all())
    Xf = triangulate(uv, P, method="refine")
    assert (Xr - Xf).norm(dim=-1).max() < 1e-3
    e = lambda Y: (reprojection_error(Y, uv, P) ** 2).sum(-2)  # noqa: E731
    assert bool((e(Xf) <= e(triangulate_dlt(uv, P)) + 1e-9).all())


def test_per_sample_rigs_match_shared_rig_for_all_methods():
    rig = ring_rig(4, seed=29)
    P = rig.projection_matrices()
    X = random_points(5, 17, seed=30)
    g = torch.Generator().manual_seed(31)
    uv = project_pinhole(X, P) + 2.0 * torch.randn(5, 4, 17, 2, generator=g, dtype=torch.float64)
    uv, _ = _with_outliers(uv, 0.1, 60.0, 120.0, g)
    w = torch.rand(5, 4, 17, generator=g, dtype=torch.float64) + 0.5
    Pb = P.expand(5, 4, 3, 4)
    for method in METHODS:
        a, ua = triangulate(uv, P, w, method=method, return_views=True)
        b, ub = triangulate(uv, Pb, w, method=method, return_views=True)
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0, equal_nan=True)
        assert torch.equal(ua, ub)


def test_gradients_flow_through_robust_and_refine():
    rig = ring_rig(3, seed=32)
    P = rig.projection_matrices()
    X = random_points(2, 4, seed=33)
    uv = (project_pinhole(X, P) + 0.7).requires_grad_(True)
    w = (torch.rand(2, 3, 4, dtype=torch.float64) + 0.5).requires_grad_(True)
    for method in ("robust", "refine"):
        out = triangulate(uv, P, w, method=method)
        gu, gw = torch.autograd.grad(out.sum(), (uv, w))
        assert torch.isfinite(gu).all() and torch.isfinite(gw).all() and gu.abs().sum() > 0
    # the refined point depends on the pixels as the reprojection optimum does: a shift of all
    # pixels consistent with a 3D translation moves the point by that translation
    assert torch.autograd.gradcheck(lambda a: triangulate(a, P, method="refine"), (uv,), eps=1e-6, atol=1e-4)


def test_missing_views_and_nan_weights_in_robust_and_refine():
    rig = ring_rig(4, seed=34)
    P = rig.projection_matrices()
    X = random_points(6, seed=35)
    uv = project_pinhole(X, P).clone()
    w = torch.ones(4, 6, dtype=torch.float64)
    uv[0, 0] = float("nan")
    w[1, 1] = float("nan")
    w[2, 2] = -1.0
    w[:3, 3] = 0.0  # a single view left: NaN
    for method in METHODS:
        out, used = triangulate(uv, P, w, method=method, return_views=True)
        assert torch.isnan(out[3]).all() and not used[:, 3].any()
        keep = torch.ones(6, dtype=torch.bool)
        keep[3] = False
        assert (out[keep] - X[keep]).norm(dim=-1).max() < 1e-6
        assert not used[0, 0] and not used[1, 1] and not used[2, 2]


def test_backward_after_first_call_under_inference_mode():
    """Constants cached by a call under inference_mode must not break later backward passes."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from mvpose.geometry import triangulate\n"
        "P = torch.eye(3, 4, dtype=torch.float64).expand(2, 3, 4).clone(); P[1, 0, 3] = -1.0\n"
        "uv = torch.tensor([[[0.1, 0.05]], [[-0.15, 0.05]]], dtype=torch.float64)\n"
        "with torch.inference_mode():\n"
        "    triangulate(uv, P)\n"
        "for m in ('dlt', 'robust', 'refine'):\n"
        "    x = uv.clone().requires_grad_(True)\n"
        "    triangulate(x, P, method=m).sum().backward()\n"
        "    assert torch.isfinite(x.grad).all(), m\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
