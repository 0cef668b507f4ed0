"""Volumetric triangulation: cuboids, unprojection, aggregation, the whole model against the
learnable-triangulation fixture, views and masks, official checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fixture_helpers import fixture_config, fixture_io, materialise_checkpoint
from torch import nn

from mvpose.geometry.softargmax import soft_argmax_3d
from mvpose.models.backbone import PoseResNetOutput
from mvpose.models.v2v import Basic3DBlock, EncoderDecoder, V2VModel
from mvpose.models.volumetric import (
    AGGREGATION_METHODS,
    GRID_CONVENTIONS,
    VolumetricTriangulationNet,
    _bilinear_corners,
    _BilinearTable,
    _gather_bilinear,
    aggregate_volumes,
    cuboid_coord_volumes,
    heatmap_projection_matrices,
    load_official_volumetric,
    project_to_grid,
    random_vertical_rotations,
    unproject_aggregate,
    unproject_features,
)

NAME = "learnable_triangulation_vol"


@pytest.fixture(scope="module")
def io():
    return {k: torch.from_numpy(v) for k, v in fixture_io(NAME).items()}


# ----------------------------------------------------------------------------------------- cuboid
def test_coord_volumes_match_fixture(io):
    coords = cuboid_coord_volumes(io["root"], 2500.0, 32, dtype=torch.float32)
    assert coords.shape == (2, 32, 32, 32, 3) and coords.dtype == torch.float32
    torch.testing.assert_close(coords, io["coord_volumes"], atol=1e-3, rtol=0)
    # corner-aligned: first voxel at root - side/2, last at root + side/2
    torch.testing.assert_close(coords[:, 0, 0, 0].double(), io["cuboid_position"], atol=1e-3, rtol=0)
    torch.testing.assert_close(
        coords[:, -1, -1, -1].double(), io["cuboid_position"] + 2500.0, atol=1e-3, rtol=0
    )


def test_training_rotation_about_vertical_axis():
    root = torch.tensor([[100.0, -200.0, 900.0], [0.0, 0.0, 1000.0]], dtype=torch.float64)
    net = VolumetricTriangulationNet(
        backbone=_FakeBackbone(), num_joints=3, volume_size=8, volume_net=_tiny_v2v(3), kind="mpii"
    )
    plain = net.build_cuboids(root, torch.float64)["coord_volumes"]
    net.train()
    net.generator = torch.Generator().manual_seed(0)
    a = net.build_cuboids(root, torch.float64)
    net.generator = torch.Generator().manual_seed(0)
    b = net.build_cuboids(root, torch.float64)
    torch.testing.assert_close(a["coord_volumes"], b["coord_volumes"])  # reproducible with a generator
    rot, coords = a["cuboid_rotations"], a["coord_volumes"]
    assert not torch.allclose(rot, torch.eye(3, dtype=rot.dtype).expand_as(rot))
    # rotation about z: the z coordinates and the distances to the root are unchanged, the root is fixed
    torch.testing.assert_close(coords[..., 2], plain[..., 2])
    rel, rel0 = coords - root[:, None, None, None], plain - root[:, None, None, None]
    torch.testing.assert_close(rel.norm(dim=-1), rel0.norm(dim=-1))
    torch.testing.assert_close(rot[:, 2], torch.tensor([0.0, 0.0, 1.0], dtype=rot.dtype).expand(2, 3))
    # counter-clockwise: the x axis goes to (cos t, sin t, 0)
    theta = torch.atan2(rot[:, 1, 0], rot[:, 0, 0])
    torch.testing.assert_close(rot[:, 0, 1], -torch.sin(theta))
    # coco: about y
    Ry = random_vertical_rotations(4, "y", torch.Generator().manual_seed(1))
    torch.testing.assert_close(Ry[:, 1], torch.tensor([0.0, 1.0, 0.0], dtype=Ry.dtype).expand(4, 3))


# ------------------------------------------------------------------------------------ unprojection
def test_heatmap_projection_matrices_match_fixture(io):
    P = heatmap_projection_matrices(io["proj_matrices"], (128, 128), (32, 32))
    torch.testing.assert_close(P, io["proj_matrices_heatmap"], atol=0, rtol=0)
    P = heatmap_projection_matrices(torch.ones(3, 4), (100, 200), (25, 40))  # H, W = 100, 200 -> 25 x 40
    torch.testing.assert_close(P[:, 0], torch.tensor([0.2, 0.25, 1.0]))


@pytest.mark.parametrize(("method", "key"), [("softmax", ""), ("sum", "sum_")])
def test_unprojection_parity(io, method, key):
    per_view = unproject_features(io["features"], io["proj_matrices_heatmap"], io["coord_volumes"])
    vol = aggregate_volumes(per_view, method)
    assert vol.shape == (2, 32, 32, 32, 32)
    ref = io[f"{key}volumes_unprojected_sub"]
    torch.testing.assert_close(vol[:, :, ::4, ::4, ::4], ref, atol=5e-4, rtol=0)


def test_nonsquare_reference_convention_parity(io):
    """The reference divides x by the height and y by the width: ``grid_convention="reference"``."""
    per_view = unproject_features(
        io["nonsquare_features"], io["nonsquare_proj_matrices"], io["nonsquare_coord_volumes"], "reference"
    )
    torch.testing.assert_close(
        aggregate_volumes(per_view, "sum"), io["nonsquare_volumes_sum"], atol=1e-5, rtol=0
    )
    # the fixed convention differs on this 8 x 12 map (x > 8 no longer lands past the last column)
    fixed = unproject_features(
        io["nonsquare_features"], io["nonsquare_proj_matrices"], io["nonsquare_coord_volumes"], "size"
    )
    assert (aggregate_volumes(fixed, "sum") - io["nonsquare_volumes_sum"]).abs().max() > 0.1


def _bilinear(fmap: np.ndarray, ix: float, iy: float) -> np.ndarray:
    """Bilinear sample of ``fmap (C, h, w)`` at cell coordinates (zeros outside)."""
    C, h, w = fmap.shape
    x0, y0 = math.floor(ix), math.floor(iy)
    out = np.zeros(C)
    for dx in (0, 1):
        for dy in (0, 1):
            x, y = x0 + dx, y0 + dy
            wgt = (1 - abs(ix - x)) * (1 - abs(iy - y))
            if 0 <= x < w and 0 <= y < h:
                out += wgt * fmap[:, y, x]
    return out


def _points_at_pixels(pixels: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """World points seen at ``pixels (N, 2)`` by the camera P = [I | 0]."""
    return torch.cat([pixels * depth[:, None], depth[:, None]], -1)


def test_nonsquare_point_samples_the_right_feature():
    """A point projecting to feature pixel (u, v) samples cell (u, v) ("exact") or the reference's
    (u (w-1)/w, v (h-1)/h) ("size"); rows and columns are never swapped; behind the camera gives 0."""
    g = torch.Generator().manual_seed(3)
    h, w, C = 6, 11, 4
    feats = torch.randn(1, 1, C, h, w, generator=g, dtype=torch.float64)
    pixels = torch.tensor([[0.0, 0.0], [10.0, 5.0], [3.0, 2.0], [7.25, 4.5], [9.9, 0.3], [2.0, 5.0]])
    pixels = pixels.double()
    depth = torch.linspace(500.0, 4000.0, len(pixels), dtype=torch.float64)
    pts = _points_at_pixels(pixels, depth)
    pts = torch.cat([pts, -pts[:1]])  # the last point is behind the camera (projects onto (0, 0) too)
    P = torch.eye(3, 4, dtype=torch.float64).expand(1, 1, 3, 4)
    coords = pts.reshape(1, -1, 1, 1, 3)
    f = feats[0, 0].numpy()
    exact = unproject_features(feats, P, coords, "exact")[0, 0, :, :, 0, 0].T.numpy()
    size = unproject_features(feats, P, coords, "size")[0, 0, :, :, 0, 0].T.numpy()
    for i, (u, v) in enumerate(pixels.tolist()):
        np.testing.assert_allclose(exact[i], _bilinear(f, u, v), atol=1e-10)
        np.testing.assert_allclose(size[i], _bilinear(f, u * (w - 1) / w, v * (h - 1) / h), atol=1e-10)
    np.testing.assert_allclose(exact[1], f[:, 5, 10], atol=1e-10)  # integer pixel: that very feature
    np.testing.assert_allclose(exact[2], f[:, 2, 3], atol=1e-10)
    assert np.all(exact[-1] == 0) and np.all(size[-1] == 0)
    _, valid = project_to_grid(P, pts[None], (h, w))
    assert valid[0, 0].tolist() == [True] * len(pixels) + [False]


# ------------------------------------------------------------------------- inference unprojection path
def _ring_inputs(B, V, C, h, w, n, seed=0, dtype=torch.float32):
    """Features, feature-frame matrices of a camera ring (one camera looking away: every voxel behind
    it) and a cuboid that overflows the maps (off-map and border samples)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, V, C, h, w, generator=g, dtype=dtype)
    Ps = []
    for v in range(V):
        a = 2 * math.pi * v / V
        cam = torch.tensor([3000 * math.cos(a), 3000 * math.sin(a), 1000.0], dtype=torch.float64)
        fwd = -cam / cam.norm() * (-1 if v == V - 1 else 1)
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        right = right / right.norm()
        R = torch.stack([right, torch.linalg.cross(fwd, right), fwd])
        K = torch.tensor([[w * 1.2, 0, w / 2], [0, w * 1.2, h / 2], [0, 0, 1]], dtype=torch.float64)
        Ps.append(K @ torch.cat([R, -(R @ cam)[:, None]], 1))
    P = torch.stack(Ps).expand(B, V, 3, 4).to(dtype)
    root = torch.randn(B, 3, generator=g, dtype=torch.float64) * 200
    return feats, P, cuboid_coord_volumes(root, 3000.0, n, dtype=dtype)


@pytest.mark.parametrize("convention", GRID_CONVENTIONS)
def test_inference_unprojection_equals_grid_sample(convention):
    """Without autograd, unproject_aggregate samples with one embedding_bag over channels-last maps:
    the same values as grid_sample + aggregate_volumes for every aggregation, mask, slice size and
    dtype, on non-square maps with off-map, border and behind-camera voxels."""
    feats, P, coords = _ring_inputs(2, 4, 6, 9, 13, 10)
    conf = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[True, False, True, True], [True, True, True, True]])
    grid, valid = project_to_grid(P, coords.reshape(2, -1, 3), (9, 13), convention)
    assert not valid[:, -1].any() and valid[:, 0].all()  # the last camera sees nothing
    assert ((grid.abs() > 1) & (grid.abs() < 1.3)).any()  # partly off-map border samples
    for method in AGGREGATION_METHODS:
        for m in (None, mask):
            want = aggregate_volumes(unproject_features(feats, P, coords, convention, m), method, m, conf)
            for chunk in (None, 100, 4 * 6 * 77):
                with torch.no_grad():
                    got = unproject_aggregate(feats, P, coords, method, convention, m, conf, chunk)
                torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-6)
    with torch.no_grad():  # large values: the softmax takes the max-shifted path
        big = unproject_aggregate(feats * 60, P, coords, "softmax", convention)
    want = aggregate_volumes(unproject_features(feats * 60, P, coords, convention), "softmax")
    torch.testing.assert_close(big, want, atol=1e-4, rtol=1e-6)
    f64, P64, c64 = _ring_inputs(1, 3, 4, 7, 5, 6, seed=2, dtype=torch.float64)
    with torch.no_grad():
        got = unproject_aggregate(f64, P64, c64, "softmax", convention)
    want = aggregate_volumes(unproject_features(f64, P64, c64, convention), "softmax")
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_inference_unprojection_layout_and_gradient_path():
    """The inference path returns a (B, C, X, Y, Z) channels_last_3d view (no transposition copy); with
    autograd the grid_sample path runs and gives the same values and gradients."""
    feats, P, coords = _ring_inputs(2, 3, 5, 8, 8, 6)
    with torch.no_grad():
        fast = unproject_aggregate(feats, P, coords)
    assert fast.shape == (2, 5, 6, 6, 6) and fast.is_contiguous(memory_format=torch.channels_last_3d)
    leaf = feats.clone().requires_grad_(True)
    slow = unproject_aggregate(leaf, P, coords)
    assert slow.is_contiguous()
    torch.testing.assert_close(fast, slow.detach(), atol=2e-6, rtol=1e-6)
    (g,) = torch.autograd.grad(slow.square().sum(), leaf)
    want = aggregate_volumes(unproject_features(leaf, P, coords), "softmax")
    (g2,) = torch.autograd.grad(want.square().sum(), leaf)
    torch.testing.assert_close(g, g2)


def test_bilinear_gather_matches_grid_sample_bitwise():
    """Corner rows and weights reproduce grid_sample's arithmetic exactly (align_corners=True, zero
    padding), at cell centres, borders, half a cell outside and far outside the map."""
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(1, 2, 3, 5, 7, generator=g)
    xs = torch.tensor([-1.0, -1.2, -1.0 - 1 / 6 + 1e-6, 1.0, 1.0 + 1 / 6 - 1e-6, 1.2, 0.3, -4.0, 4.0, 0.0])
    gx = torch.cat([xs, torch.rand(50, generator=g) * 2.6 - 1.3]).expand(1, 2, -1).contiguous()
    gy = torch.cat([xs.flip(0), torch.rand(50, generator=g) * 2.6 - 1.3]).expand(1, 2, -1).contiguous()
    table = _BilinearTable(feats)
    rows, weights = _bilinear_corners(table, gx, gy)
    ours = _gather_bilinear(table, rows, weights)  # (1, 2, n, C)
    ref = torch.nn.functional.grid_sample(
        feats.reshape(2, 3, 5, 7), torch.stack([gx, gy], -1).reshape(2, 1, -1, 2), align_corners=True
    ).reshape(1, 2, 3, -1)
    assert torch.equal(ours.transpose(2, 3), ref)
    assert torch.equal(ours[0, :, 7:9], torch.zeros_like(ours[0, :, 7:9]))  # far outside: zero


def test_projection_of_a_slice_equals_the_slice_of_the_projection():
    """project_to_grid projects in float64 (exact products), so any slicing of the points gives the
    same bits as the whole volume: the sliced unprojection equals the whole one."""
    feats, P, coords = _ring_inputs(2, 3, 4, 9, 11, 12)
    pts = coords.reshape(2, -1, 3)
    whole, _ = project_to_grid(P, pts, (9, 11))
    for n in (1, 7, 100):
        part, _ = project_to_grid(P, pts[:, 5 : 5 + n], (9, 11))
        assert torch.equal(part, whole[:, :, 5 : 5 + n])
    blocks = pts[:, : 14 * 3].reshape(2, 14, 3, 3).transpose(0, 1)  # (k, B, n, 3) leading dims
    part, _ = project_to_grid(P, blocks, (9, 11))
    assert torch.equal(part, whole[:, :, : 14 * 3].reshape(2, 3, 14, 3, 2).transpose(0, 2).transpose(1, 2))


# ------------------------------------------------------------------------------------- aggregation
def test_aggregation_hand_computed():
    s = torch.tensor([[[[1.0, 0.0]], [[3.0, 0.0]], [[-1.0, 2.0]]]])  # (B=1, V=3, C=1, N=2)
    conf = torch.tensor([[[0.5], [1.0], [2.0]]])  # (1, 3, C=1)
    assert aggregate_volumes(s, "sum").tolist() == [[[3.0, 2.0]]]
    assert aggregate_volumes(s, "max").tolist() == [[[3.0, 2.0]]]
    e = torch.tensor([math.e, math.e**3, math.e**-1])
    soft0 = float((e / e.sum() * torch.tensor([1.0, 3.0, -1.0])).sum())
    soft1 = 2.0 * math.exp(2) / (2 + math.exp(2))
    torch.testing.assert_close(aggregate_volumes(s, "softmax"), torch.tensor([[[soft0, soft1]]]))
    torch.testing.assert_close(aggregate_volumes(s, "conf", confidences=conf), torch.tensor([[[1.5, 4.0]]]))
    torch.testing.assert_close(
        aggregate_volumes(s, "conf_norm", confidences=conf), torch.tensor([[[1.5 / 3.5, 4.0 / 3.5]]])
    )
    with pytest.raises(ValueError, match="unknown volume_aggregation_method"):
        aggregate_volumes(s, "mean")
    with pytest.raises(ValueError, match="confidences"):
        aggregate_volumes(s, "conf")


@pytest.mark.parametrize("method", AGGREGATION_METHODS)
def test_masked_view_equals_dropping_it(method):
    g = torch.Generator().manual_seed(0)
    vols = torch.randn(2, 4, 3, 5, 5, 5, generator=g)
    conf = torch.rand(2, 4, 3, generator=g)
    mask = torch.tensor([[True, False, True, True], [False, False, True, False]])
    got = aggregate_volumes(vols, method, mask, conf)
    for b in range(2):
        keep = mask[b].nonzero().squeeze(1)
        want = aggregate_volumes(vols[b : b + 1, keep], method, None, conf[b : b + 1, keep])
        torch.testing.assert_close(got[b : b + 1], want)
    none = aggregate_volumes(vols, method, torch.zeros(2, 4, dtype=torch.bool), conf)
    assert torch.equal(none, torch.zeros_like(none))  # no view at all: zeros, not NaN


# ------------------------------------------------------------------------------ small model (fast)
class _FakeBackbone(nn.Module):
    """Stand-in for a pose-ResNet: features at 1/4 resolution, with BatchNorm (training statistics)."""

    feature_channels = 256

    def __init__(self, joints: int = 3, conf_dim: int | None = None):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 256, 4, stride=4), nn.BatchNorm2d(256))
        self.final_layer = nn.Conv2d(256, joints, 1)
        self.conf = nn.Linear(3, conf_dim) if conf_dim else None

    def forward(self, x):
        f = self.body(x)
        vol = torch.sigmoid(self.conf(x.mean((2, 3)))) if self.conf is not None else None
        return PoseResNetOutput(self.final_layer(f), f, None, vol)


def _tiny_v2v(joints: int) -> V2VModel:
    return V2VModel(
        32,
        joints,
        front_layers=Basic3DBlock(32, 8, 3),
        encoder_decoder=EncoderDecoder((8, 8)),
        back_layers=nn.Sequential(),
    )


def _scene(B: int, V: int, H: int = 32, W: int = 48, seed: int = 0):
    """Cameras on a ring looking at the origin (z up), images, roots."""
    g = torch.Generator().manual_seed(seed)
    Ps = []
    for v in range(V):
        a = 2 * math.pi * v / V + 0.3
        C = torch.tensor([3000 * math.cos(a), 3000 * math.sin(a), 1200.0], dtype=torch.float64)
        fwd = -C / C.norm()
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        right = right / right.norm()
        down = torch.linalg.cross(fwd, right)
        R = torch.stack([right, down, fwd])
        K = torch.tensor([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]], dtype=torch.float64)
        Ps.append(K @ torch.cat([R, -(R @ C)[:, None]], 1))
    P = torch.stack(Ps).expand(B, V, 3, 4).clone()
    images = torch.randn(B, V, 3, H, W, generator=g)
    root = torch.randn(B, 3, generator=g, dtype=torch.float64) * 100
    return images, P, root


def _small_net(method="softmax", joints=3, **kw):
    torch.manual_seed(0)
    conf_dim = 32 if method.startswith("conf") else None
    return VolumetricTriangulationNet(
        backbone=_FakeBackbone(joints, conf_dim),
        num_joints=joints,
        volume_aggregation_method=method,
        volume_size=8,
        cuboid_side=2000.0,
        volume_net=_tiny_v2v(joints),
        **kw,
    )


@pytest.mark.parametrize("method", AGGREGATION_METHODS)
def test_model_masked_view_equals_dropping_it(method):
    net = _small_net(method).eval()
    images, P, root = _scene(2, 3)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    with torch.no_grad():
        out = net(images, P, root, view_mask=mask)
        dropped = net(images[:1, [0, 2]], P[:1, [0, 2]], root[:1])
        full = net(images[1:], P[1:], root[1:])
        single = net(images[:1, :1], P[:1, :1], root[:1])  # any number of views, down to one
    close = {"atol": 1e-3, "rtol": 1e-5}  # float32 mm; other batch sizes take other conv kernels
    torch.testing.assert_close(out["keypoints_3d"][:1], dropped["keypoints_3d"], **close)
    torch.testing.assert_close(out["volumes"][:1], dropped["volumes"], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(out["keypoints_3d"][1:], full["keypoints_3d"], **close)
    assert torch.isfinite(single["keypoints_3d"]).all()
    assert torch.equal(out["features"][0, 1], torch.zeros_like(out["features"][0, 1]))


def test_model_training_mode_mask_and_gradients():
    """In training mode too (batch-norm statistics, random rotation with a generator), a masked view
    equals dropping it; gradients are finite."""
    images, P, root = _scene(1, 3, seed=2)
    mask = torch.tensor([[True, True, False]])
    outs = []
    for imgs, PP, m in ((images, P, mask), (images[:, :2], P[:, :2], None)):
        net = _small_net("softmax").train()
        net.generator = torch.Generator().manual_seed(5)
        outs.append(net(imgs, PP, root, view_mask=m))
    torch.testing.assert_close(outs[0]["keypoints_3d"], outs[1]["keypoints_3d"], atol=1e-3, rtol=1e-5)
    assert not torch.allclose(outs[0]["cuboid_rotations"], torch.eye(3, dtype=torch.float64))
    outs[0]["keypoints_3d"].sum().backward()
    net = _small_net("softmax").train()
    out = net(images, P, root, view_mask=mask)
    out["keypoints_3d"].sum().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert net.backbone.final_layer.weight.grad is None  # frozen as in the reference


def test_model_outputs_and_nonsquare_images():
    net = _small_net("conf_norm").eval()
    images, P, root = _scene(2, 4, H=32, W=48)
    with torch.no_grad():
        out = net(images, P, root)
    assert out["keypoints_3d"].shape == (2, 3, 3)
    assert out["volumes"].shape == (2, 3, 8, 8, 8)
    assert out["features"].shape == (2, 4, 32, 8, 12)
    assert out["heatmaps"].shape == (2, 4, 3, 8, 12)
    assert out["coord_volumes"].shape == (2, 8, 8, 8, 3)
    assert out.vol_confidences.shape == (2, 4, 32)
    torch.testing.assert_close(out.vol_confidences.sum(1), torch.ones(2, 32))
    torch.testing.assert_close(out["volumes"].sum((2, 3, 4)), torch.ones(2, 3))
    # feature-frame matrices: x scaled by 12/48, y by 8/32
    scale = torch.tensor([12 / 48, 8 / 32, 1.0], dtype=torch.float64)[:, None]
    torch.testing.assert_close(out["proj_matrices_heatmap"], (P * scale).float())
    torch.testing.assert_close(out["base_points"], root)
    torch.testing.assert_close(out["cuboid_position"], root - 1000.0)


def test_root_sources():
    images, P, root = _scene(2, 2)
    kp = torch.randn(2, 17, 3, dtype=torch.float64) * 300
    batch = {
        "images": images,
        "K": torch.eye(3, dtype=torch.float64).expand(2, 2, 3, 3),
        "R": torch.eye(3, dtype=torch.float64).expand(2, 2, 3, 3),
        "t": torch.tensor([0.0, 0.0, 3000.0], dtype=torch.float64).expand(2, 2, 3),
        "root_3d": root,
        "keypoints_3d": kp,
        "view_mask": torch.ones(2, 2, dtype=torch.bool),
    }
    with torch.no_grad():
        out = _small_net(root_source="batch").eval().forward_batch(batch)
        torch.testing.assert_close(out["base_points"], root)
        out = _small_net(root_source="gt").eval().forward_batch(batch)
        torch.testing.assert_close(out["base_points"], kp[:, 6])
        out = _small_net(root_source="gt", kind="coco").eval().forward_batch(batch)
        torch.testing.assert_close(out["base_points"], kp[:, [11, 12]].mean(1))

        class _Alg(nn.Module):
            def forward(self, images, proj_matrices, view_mask=None):
                return (kp + 1.0, None)

        net = _small_net(root_source="algebraic", root_model=_Alg()).eval()
        torch.testing.assert_close(net.forward_batch(batch)["base_points"], kp[:, 6] + 1.0)
    with pytest.raises(ValueError, match="root_model"):
        _small_net(root_source="algebraic")


def test_root_from_algebraic_model_end_to_end():
    from mvpose.models.algebraic import AlgebraicTriangulationNet

    alg = AlgebraicTriangulationNet(18, 17, use_confidences=False).train()
    net = _small_net(root_source="algebraic", root_model=alg).train()
    images, P, _ = _scene(1, 2, H=128, W=128)
    out = net(images, P)
    with torch.no_grad():
        want = alg.eval()(images, P).keypoints_3d[:, 6]
    torch.testing.assert_close(out["base_points"], want)
    assert torch.isfinite(out["keypoints_3d"]).all()
    alg.train()
    net(images, P)
    assert alg.training and all(p.grad is None for p in alg.parameters())


# --------------------------------------------------------------------------- official checkpoint
def test_published_parameter_counts():
    pub = fixture_config(NAME)["published_param_counts"]
    with torch.device("meta"):
        net = VolumetricTriangulationNet(152, 17, volume_size=64)
    params = list(net.parameters())
    assert sum(p.numel() for p in params) == pub["volumetric"]["parameters"] == 80_588_050
    assert sum(p.numel() for p in params if p.requires_grad) == pub["volumetric"]["trainable_parameters"]
    sd = net.state_dict()
    assert len(sd) == pub["volumetric"]["state_dict_tensors"]
    assert sum(v.numel() for v in sd.values()) == pub["volumetric"]["state_dict_elements"]
    parts = pub["volumetric_parts"]
    assert sum(p.numel() for p in net.backbone.parameters()) == parts["backbone"]
    assert sum(p.numel() for p in net.process_features.parameters()) == parts["process_features"]
    # the fixture's own size (ResNet-18) and the conf head it describes
    fx = fixture_config(NAME)["fixture"]["param_counts"]
    with torch.device("meta"):
        small = VolumetricTriangulationNet(18, 17, volume_size=32)
        conf = VolumetricTriangulationNet(18, 17, volume_size=32, volume_aggregation_method="conf")
    assert sum(p.numel() for p in small.parameters()) == fx["parameters"]
    assert sum(p.numel() for p in small.parameters() if p.requires_grad) == fx["trainable_parameters"]
    assert len(small.state_dict()) == fx["state_dict_tensors"]
    extra = sum(p.numel() for p in conf.parameters()) - fx["parameters"]
    assert extra == 3_812_384


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return materialise_checkpoint(NAME, tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def official(checkpoint, io):
    """The fixture's model (softmax aggregation) and its end-to-end forward, computed once."""
    model = load_official_volumetric(checkpoint, volume_size=32)
    with torch.no_grad():
        out = model(io["images"], io["proj_matrices"], io["root"])
    return model, out


def test_v2v_parity_from_fixture_intermediates(official, io):
    """The reference's own features -> unprojection -> V2V -> soft-argmax, for softmax and sum
    aggregation (one V2V pass over both; eval-mode BatchNorm is per sample)."""
    model, _ = official
    per_view = unproject_features(io["features"], io["proj_matrices_heatmap"], io["coord_volumes"])
    vin = torch.cat([aggregate_volumes(per_view, "softmax"), aggregate_volumes(per_view, "sum")])
    with torch.no_grad():
        logits = model.volume_net(vin)
    kp, vol = soft_argmax_3d(logits, io["coord_volumes"].repeat(2, 1, 1, 1, 1), 1.0)
    torch.testing.assert_close(vol[:2], io["volumes"], atol=5e-5, rtol=0)
    torch.testing.assert_close(kp[:2], io["keypoints_3d"], atol=0.05, rtol=0)
    torch.testing.assert_close(kp[2:], io["sum_keypoints_3d"], atol=0.5, rtol=0)


def test_official_loading(official):
    model, _ = official
    assert not model.training
    assert model.volume_size == 32 and model.cuboid_side == 2500.0 and model.kind == "mpii"
    assert model.backbone.layers == (2, 2, 2, 2) and model.num_joints == 17
    assert not model.backbone.has_vol_confidences


# README tolerances (suggested atol)
_TOL = {
    "heatmaps": 3e-4,
    "features": 3e-4,
    "coord_volumes": 1e-3,
    "proj_matrices_heatmap": 0.0,
    "volumes": 5e-5,
    "keypoints_3d": 0.05,
    "root": 0.0,
}


def test_full_model_parity(official, io):
    _, out = official
    for key, atol in _TOL.items():
        ours = out["base_points"] if key == "root" else out[key]
        torch.testing.assert_close(ours.float(), io[key], atol=atol, rtol=0, msg=lambda m, k=key: f"{k}: {m}")
    torch.testing.assert_close(
        out["volumes_unprojected"][:, :, ::4, ::4, ::4], io["volumes_unprojected_sub"], atol=5e-4, rtol=0
    )
    torch.testing.assert_close(out["cuboid_position"], io["cuboid_position"], atol=1e-9, rtol=0)
    torch.testing.assert_close(out["cuboid_sides"], io["cuboid_sides"], atol=0, rtol=0)
    assert out["vol_confidences"] is None


def test_official_loading_errors(checkpoint, tmp_path):
    with pytest.raises(TypeError, match="unknown override"):
        load_official_volumetric(checkpoint, volume_sise=32)
    # conf needs the vol_confidences head the softmax checkpoint lacks (the fixture README's case)
    with pytest.raises(ValueError, match="missing keys.*backbone.vol_confidences.features.0.weight") as e:
        load_official_volumetric(checkpoint, volume_aggregation_method="conf")
    assert str(checkpoint) in str(e.value)
    from mvpose.models.official import from_official

    with pytest.raises(TypeError, match="unknown override"):
        from_official("lt_volumetric", checkpoint, cuboid_size=2000.0)
    other = tmp_path / "other.pth"
    torch.save({"module.fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ValueError, match="not a learnable-triangulation volumetric checkpoint"):
        load_official_volumetric(other)
