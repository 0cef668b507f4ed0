import numpy as np
import pytest
import torch
from fixture_helpers import fixture_io
from kornia.geometry.subpix import spatial_expectation2d, spatial_softmax2d

from mvpose.geometry.softargmax import soft_argmax_2d, soft_argmax_3d


def test_2d_peak_is_found_in_xy_cell_indices():
    h = torch.full((2, 3, 5, 7), -1.0)  # non-square: H=5, W=7
    peaks = [(6, 0), (0, 4), (3, 2)]  # (x, y)
    for j, (x, y) in enumerate(peaks):
        h[:, j, y, x] = 1.0
    xy, p = soft_argmax_2d(h)  # multiplier 100: effectively one-hot
    assert xy.shape == (2, 3, 2) and p.shape == h.shape
    torch.testing.assert_close(xy, torch.tensor(peaks, dtype=torch.float32).expand(2, 3, 2))
    torch.testing.assert_close(p.sum((-1, -2)), torch.ones(2, 3))


def test_2d_expectation_and_relu_variant():
    h = torch.zeros(1, 4, 4)
    h[0, 1, 2], h[0, 1, 3] = 1.0, 3.0  # row 1, columns 2 and 3
    xy, p = soft_argmax_2d(h, multiplier=1.0, softmax=False)
    torch.testing.assert_close(xy, torch.tensor([[2.75, 1.0]]))
    torch.testing.assert_close(p, h)  # relu(multiplier * h), not normalised (the reference's return value)
    xy, p = soft_argmax_2d(torch.zeros(1, 3, 5), multiplier=100.0)  # flat map: the centre
    torch.testing.assert_close(xy, torch.tensor([[2.0, 1.0]]))
    torch.testing.assert_close(p, torch.full((1, 3, 5), 1 / 15))


def test_2d_batch_dims_gradients_and_kornia():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 3, 4, 6, 5, generator=g, dtype=torch.float64) * 0.05
    xy, p = soft_argmax_2d(h)
    for i in range(2):
        for v in range(3):
            torch.testing.assert_close(soft_argmax_2d(h[i, v])[0], xy[i, v])
    k = spatial_expectation2d(
        spatial_softmax2d(h.flatten(0, 1), temperature=0.01), normalized_coordinates=False
    )
    torch.testing.assert_close(k.view_as(xy), xy, atol=1e-9, rtol=0)
    torch.autograd.gradcheck(
        lambda t: soft_argmax_2d(t, multiplier=3.0)[0], (h[0, 0, :1, :3, :4].clone().requires_grad_(),)
    )
    torch.autograd.gradcheck(
        lambda t: soft_argmax_2d(t, multiplier=3.0, softmax=False)[0],
        ((h[0, 0, :1, :3, :4].abs() + 0.1).requires_grad_(),),
    )


def test_2d_matches_learnable_triangulation_fixture():
    io = fixture_io("learnable_triangulation_alg")
    xy, p = soft_argmax_2d(torch.from_numpy(io["heatmaps"]), multiplier=100.0)
    np.testing.assert_allclose(p.numpy(), io["heatmaps_softmax"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(xy.numpy(), io["keypoints_2d_heatmap"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(xy.numpy() * 4, io["keypoints_2d"], atol=4e-5, rtol=0)  # cell i -> pixel 4 i


def _grid(n=5, lo=-100.0, hi=100.0):
    t = torch.linspace(lo, hi, n, dtype=torch.float64)
    return torch.stack(torch.meshgrid(t, t + 1000.0, t * 2.0, indexing="ij"), -1)  # (n, n, n, 3)


def test_3d_on_a_constructed_world_grid():
    grid = _grid()
    v = torch.full((2, 5, 5, 5), -50.0, dtype=torch.float64)
    v[0, 4, 2, 1] = 50.0
    v[1] = 0.0  # flat: the grid's mean
    xyz, p = soft_argmax_3d(v, grid)
    torch.testing.assert_close(xyz[0], grid[4, 2, 1])
    torch.testing.assert_close(xyz[1], grid.reshape(-1, 3).mean(0))
    torch.testing.assert_close(p.sum((-1, -2, -3)), torch.ones(2, dtype=torch.float64))
    # a rotated grid: the result follows the grid's coordinates, not the voxel indices
    R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(soft_argmax_3d(v, grid @ R.T)[0], xyz @ R.T)
    with pytest.raises(ValueError, match="coord_volumes"):
        soft_argmax_3d(v, grid[:4])


def test_3d_batch_dims_and_gradients():
    g = torch.Generator().manual_seed(1)
    grids = torch.stack([_grid(4), _grid(4, -300.0, 50.0)])  # (B=2, 4, 4, 4, 3)
    v = torch.randn(2, 3, 4, 4, 4, generator=g, dtype=torch.float64)
    xyz, _ = soft_argmax_3d(v, grids, multiplier=2.0)
    assert xyz.shape == (2, 3, 3)
    for b in range(2):
        torch.testing.assert_close(soft_argmax_3d(v[b], grids[b], multiplier=2.0)[0], xyz[b])
    # one grid shared by a (B, V) batch
    xyz2, _ = soft_argmax_3d(v[:, None].expand(2, 2, 3, 4, 4, 4), grids[0])
    torch.testing.assert_close(xyz2[:, 1], soft_argmax_3d(v, grids[0])[0])
    torch.autograd.gradcheck(
        lambda t: soft_argmax_3d(t, grids[:1, :2, :2, :3])[0],
        (v[:1, :1, :2, :2, :3].clone().requires_grad_(),),
    )


def test_3d_matches_learnable_triangulation_vol_fixture():
    io = fixture_io("learnable_triangulation_vol")
    vol, coords = torch.from_numpy(io["volumes"]), torch.from_numpy(io["coord_volumes"])
    # the stored volumes are already probabilities: ReLU without renormalisation gives sum p * coord
    xyz, _ = soft_argmax_3d(vol, coords, softmax=False)
    np.testing.assert_allclose(xyz.numpy(), io["keypoints_3d"], atol=0.05, rtol=0)
    # softmax of log-probabilities gives the same probabilities back
    xyz, p = soft_argmax_3d(vol.double().log(), coords.double())
    np.testing.assert_allclose(p.numpy(), io["volumes"], atol=1e-7, rtol=0)
    np.testing.assert_allclose(xyz.numpy(), io["keypoints_3d"], atol=0.05, rtol=0)
