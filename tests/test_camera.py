import cv2
import numpy as np
import pytest
import torch
from geometry_helpers import random_points, ring_rig

from mvpose.geometry import CameraRig
from mvpose.geometry import distortion as D
from mvpose.geometry import rotations as rot


def _cv2_project(rig: CameraRig, v: int, X: torch.Tensor) -> np.ndarray:
    rvec, _ = cv2.Rodrigues(rig.R[v].numpy())
    out, _ = cv2.projectPoints(
        X.reshape(-1, 3).numpy(), rvec, rig.t[v].numpy(), rig.K[v].numpy(), rig.dist[v].numpy()
    )
    return out.reshape(*X.shape[:-1], 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_project_matches_cv2(seed):
    rig = ring_rig(5, seed=seed, distortion=1.5)
    X = random_points(3, 17, seed=seed)
    uv = rig.project(X)
    assert uv.shape == (3, 5, 17, 2)
    for v in range(5):
        np.testing.assert_allclose(uv[:, v].numpy(), _cv2_project(rig, v, X), atol=1e-3, rtol=0)


def test_project_batched_rig_equals_per_sample():
    rigs = [ring_rig(3, seed=s) for s in range(4)]
    batched = CameraRig(
        K=torch.stack([r.K for r in rigs]),
        R=torch.stack([r.R for r in rigs]),
        t=torch.stack([r.t for r in rigs]),
        dist=torch.stack([r.dist for r in rigs]),
    )
    X = random_points(4, 9)
    uv = batched.project(X)
    assert uv.shape == (4, 3, 9, 2)
    for b, r in enumerate(rigs):
        torch.testing.assert_close(uv[b], r.project(X[b]), atol=1e-9, rtol=0)
    # a plain rig broadcasts over a batch of points
    assert rigs[0].project(X).shape == (4, 3, 9, 2)


def test_undistort_matches_cv2_and_inverts_distortion():
    rig = ring_rig(4, seed=3, distortion=1.0)
    X = random_points(200, seed=4)
    uv = rig.project(X)  # (4, 200, 2) distorted pixels
    und = rig.undistort_points(uv)
    for v in range(4):
        ref = cv2.undistortPoints(
            uv[v].numpy().reshape(-1, 1, 2), rig.K[v].numpy(), rig.dist[v].numpy(), P=rig.K[v].numpy()
        )
        np.testing.assert_allclose(und[v].numpy(), ref.reshape(-1, 2), atol=1e-2, rtol=0)
    # exact inverse: undistorted pixels equal the pinhole projection
    torch.testing.assert_close(und, rig.project(X, distort=False), atol=1e-7, rtol=0)
    torch.testing.assert_close(rig.distort_points(und), uv, atol=1e-7, rtol=0)


def test_undistort_strong_distortion_matches_cv2_iterative():
    rig = ring_rig(2, seed=5, distortion=2.5)
    uv = rig.project(random_points(300, seed=6))
    und = rig.undistort_points(uv)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    for v in range(2):
        K, d = rig.K[v].numpy(), rig.dist[v].numpy()
        ref = cv2.undistortPoints(uv[v].numpy().reshape(-1, 1, 2), K, d, None, None, K, crit)
        np.testing.assert_allclose(und[v].numpy(), ref.reshape(-1, 2), atol=1e-2, rtol=0)


def test_distortion_matches_kornia_for_opencv_model():
    from kornia.geometry.calibration import distort_points

    rig = ring_rig(3, seed=7)
    X = random_points(50, seed=8)
    ideal = rig.project(X, distort=False)
    ours = rig.distort_points(ideal)
    for v in range(3):
        theirs = distort_points(ideal[v], rig.K[v], rig.dist[v])
        torch.testing.assert_close(ours[v], theirs, atol=1e-6, rtol=0)


def _h36m_reference(xy: np.ndarray, k: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Human3.6M's radial/tangential formula, written as in the data README."""
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tan = p[0] * y + p[1] * x
    return np.stack([x * (radial + tan) + p[1] * r2, y * (radial + tan) + p[0] * r2], -1)


def test_h36m_distortion_formula_and_differs_from_opencv():
    g = np.random.default_rng(0)
    xy = g.uniform(-0.4, 0.4, size=(100, 2))
    k = np.array([-0.207, 0.248, -0.003])
    p = np.array([-0.0014, -0.00098])
    dist = torch.tensor([k[0], k[1], p[0], p[1], k[2]], dtype=torch.float64)
    ours = D.distort(torch.from_numpy(xy), dist, "h36m").numpy()
    np.testing.assert_allclose(ours, _h36m_reference(xy, k, p), atol=1e-15)
    opencv = D.distort(torch.from_numpy(xy), dist, "opencv").numpy()
    assert np.abs(opencv - ours).max() > 1e-5
    back = D.undistort(torch.from_numpy(ours), dist, "h36m")
    np.testing.assert_allclose(back.numpy(), xy, atol=1e-12)


@pytest.mark.parametrize("model", ["opencv", "h36m"])
def test_projection_jacobian_matches_autograd(model):
    rig = ring_rig(3, seed=9, distortion=1.5, model=model)
    X = random_points(4, seed=10)
    uv, jac = rig.project_with_jacobian(X)
    torch.testing.assert_close(uv, rig.project(X), atol=1e-9, rtol=0)
    auto = torch.autograd.functional.jacobian(lambda Y: rig.project(Y), X)  # (V, J, 2, J, 3)
    diag = torch.stack([auto[:, j, :, j, :] for j in range(X.shape[0])], 1)
    torch.testing.assert_close(jac, diag, atol=1e-8, rtol=1e-8)


def test_world_camera_round_trip_and_centres():
    rig = ring_rig(4, seed=11)
    X = random_points(2, 6)
    Xc = rig.world_to_camera(X)
    torch.testing.assert_close(rig.camera_to_world(Xc), X[:, None].expand(2, 4, 6, 3), atol=1e-9, rtol=0)
    C = rig.centers()
    torch.testing.assert_close(
        (rig.R @ C[..., None])[..., 0] + rig.t, torch.zeros(4, 3, dtype=torch.float64), atol=1e-9, rtol=0
    )
    P = rig.projection_matrices()
    Xh = torch.cat([X, torch.ones_like(X[..., :1])], -1)
    x = torch.einsum("vij,bnj->bvni", P, Xh)
    torch.testing.assert_close(x[..., :2] / x[..., 2:], rig.project(X, distort=False), atol=1e-9, rtol=0)


def test_crop_resize_scale_update_intrinsics():
    rig = ring_rig(3, seed=12)
    X = random_points(10, seed=13)
    uv = rig.project(X)
    boxes = torch.tensor(
        [[100.0, 50.0, 900.0, 850.0], [0.0, 0.0, 1000.0, 1000.0], [500.0, 20.0, 1300.0, 820.0]]
    )
    cropped = rig.crop(boxes)
    torch.testing.assert_close(cropped.project(X), uv - boxes[:, None, :2].double(), atol=1e-9, rtol=0)
    assert cropped.image_size.tolist() == [[800, 800], [1000, 1000], [800, 800]]
    resized = cropped.resize((256, 256))
    scale = 256 / (boxes[:, 2:] - boxes[:, :2]).double()
    torch.testing.assert_close(
        resized.project(X), (uv - boxes[:, None, :2].double()) * scale[:, None], atol=1e-9, rtol=0
    )
    assert resized.image_size.tolist() == [[256, 256]] * 3
    half = rig.scale(0.5)
    torch.testing.assert_close(half.project(X), uv * 0.5, atol=1e-9, rtol=0)
    assert half.image_size.tolist() == [[960, 540]] * 3


def test_select_and_errors():
    rig = ring_rig(4)
    rig = CameraRig(rig.K, rig.R, rig.t, rig.dist, names=["a", "b", "c", "d"], image_size=rig.image_size)
    sub = rig.select(["c", "a"])
    assert sub.names == ("c", "a")
    torch.testing.assert_close(sub.K, rig.K[[2, 0]])
    with pytest.raises(KeyError, match="cameras are"):
        rig.index("z")
    with pytest.raises(ValueError, match="R must have"):
        CameraRig(K=rig.K, R=rig.R[:2], t=rig.t)
    with pytest.raises(ValueError, match="distortion_model"):
        CameraRig(K=rig.K, R=rig.R, t=rig.t, distortion_model="fisheye")
    with pytest.raises(ValueError, match="unique"):
        CameraRig(K=rig.K, R=rig.R, t=rig.t, names=["a", "a", "b", "c"])
    four = CameraRig(K=rig.K, R=rig.R, t=rig.t, dist=rig.dist[:, :4])  # anipose's 4 coefficients
    assert four.dist.shape == (4, 5) and bool((four.dist[:, 4] == 0).all())


def test_rotation_conversions_round_trip():
    g = torch.Generator().manual_seed(0)
    aa = torch.randn(100, 3, generator=g, dtype=torch.float64)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(100, 1, generator=g, dtype=torch.float64) * 3.0
    R = rot.axis_angle_to_matrix(aa)
    ref = np.stack([cv2.Rodrigues(a)[0] for a in aa.numpy()])
    np.testing.assert_allclose(R.numpy(), ref, atol=1e-12)
    torch.testing.assert_close(rot.matrix_to_axis_angle(R), aa, atol=1e-9, rtol=0)
    torch.testing.assert_close(rot.quaternion_to_matrix(rot.matrix_to_quaternion(R)), R, atol=1e-9, rtol=0)
    torch.testing.assert_close(rot.rotation_6d_to_matrix(rot.matrix_to_rotation_6d(R)), R, atol=1e-9, rtol=0)
    for order in ("xyz", "zyx", "yxz", "zxy"):
        torch.testing.assert_close(
            rot.euler_to_matrix(rot.matrix_to_euler(R, order), order), R, atol=1e-9, rtol=0
        )
    noisy = R + 1e-3 * torch.randn(100, 3, 3, generator=g, dtype=torch.float64)
    Rn = rot.nearest_rotation(noisy)
    torch.testing.assert_close(
        Rn @ Rn.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3), atol=1e-12, rtol=0
    )
    assert bool((torch.det(Rn) > 0).all())
