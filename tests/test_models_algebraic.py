import numpy as np
import pytest
import torch
from fixture_helpers import fixture_config, fixture_io, materialise_checkpoint

from mvpose.data.transforms import normalize_image
from mvpose.geometry.triangulation import triangulate_dlt, triangulate_robust
from mvpose.models.algebraic import AlgebraicTriangulationNet, load_official_algebraic
from mvpose.models.backbone import PoseResNet

NAME = "learnable_triangulation_alg"
# the fixture README's suggested tolerances
ATOL = {
    "heatmaps": 2e-5,
    "heatmaps_softmax": 2e-4,
    "keypoints_2d_heatmap": 2e-3,
    "keypoints_2d": 5e-3,
    "alg_confidences_raw": 1e-4,
    "alg_confidences": 1e-4,
    "keypoints_3d": 0.5,
    "keypoints_3d_dlt_float64": 0.05,
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return materialise_checkpoint(NAME, tmp_path_factory.mktemp("alg"))


@pytest.fixture(scope="module")
def io():
    return fixture_io(NAME)


@pytest.fixture(scope="module")
def model(ckpt):
    return load_official_algebraic(ckpt)


@pytest.fixture(scope="module")
def outputs(model, io):
    with torch.no_grad():
        return model(torch.from_numpy(io["images"]), torch.from_numpy(io["proj_matrices"]))


def _compare(out, io) -> dict[str, float]:
    ours = {
        "heatmaps": out.heatmaps_raw,
        "heatmaps_softmax": out.heatmaps,
        "keypoints_2d_heatmap": out.keypoints_2d_heatmap,
        "keypoints_2d": out.keypoints_2d,
        "alg_confidences_raw": out.confidences_raw,
        "alg_confidences": out.confidences,
        "keypoints_3d": out.keypoints_3d,
        "keypoints_3d_dlt_float64": out.keypoints_3d,
    }
    diffs = {}
    for key, value in ours.items():
        assert value.shape == io[key].shape, key
        diffs[key] = float(np.abs(value.double().numpy() - io[key]).max())
        assert diffs[key] <= ATOL[key], (key, diffs[key], ATOL[key])
    return diffs


def test_inferred_hyperparameters(model):
    assert not model.training
    bb = model.backbone
    assert (bb.block, bb.layers, bb.num_joints) == ("basic", (2, 2, 2, 2), 17)
    assert (bb.deconv_channels, bb.deconv_kernels, bb.final_layer.kernel_size) == (
        (256,) * 3,
        (4,) * 3,
        (1, 1),
    )
    assert model.use_confidences and bb.has_alg_confidences and not bb.has_vol_confidences
    assert (model.heatmap_multiplier, model.heatmap_softmax, model.triangulation) == (100.0, True, "dlt")
    cfg = fixture_config(NAME)
    assert sum(p.numel() for p in model.parameters()) == cfg["fixture"]["param_counts"]["parameters"]


def test_parity_with_reference(outputs, io):
    """Every output and intermediate of the fixture, fed the fixture's own (contiguous) input tensor."""
    _compare(outputs, io)
    assert outputs.keypoints_3d.dtype == torch.float64 and outputs.inliers is None


def test_parity_from_uint8_bgr_crops(model, io):
    """The reference's input path: BGR crops normalised with the RGB statistics, channels-last in memory."""
    images = normalize_image(torch.from_numpy(io["images_uint8_bgr"]), order="bgr", lt_bgr_quirk=True)
    np.testing.assert_allclose(images.numpy(), io["images"], atol=1e-6, rtol=0)
    channels_last = (
        images.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    )  # as prepare_batch makes it
    with torch.no_grad():
        out = model(channels_last, torch.from_numpy(io["proj_matrices"]))
    _compare(out, io)


def test_dlt_on_fixture_keypoints(io):
    """Our float64 DLT on the reference's own 2D keypoints and confidences."""
    P = torch.from_numpy(io["proj_matrices"])
    X = triangulate_dlt(torch.from_numpy(io["keypoints_2d"]), P, torch.from_numpy(io["alg_confidences"]))
    np.testing.assert_allclose(X.numpy(), io["keypoints_3d_dlt_float64"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(X.numpy(), io["keypoints_3d"], atol=0.2, rtol=0)  # reference float32 SVD
    X = triangulate_dlt(
        torch.from_numpy(io["dlt_check_keypoints_2d"]), P, torch.from_numpy(io["dlt_check_confidences"])
    )
    np.testing.assert_allclose(X.numpy(), io["keypoints_3d_gt"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(X.numpy(), io["dlt_check_keypoints_3d"], atol=0.2, rtol=0)


def test_overrides(ckpt, io, outputs):
    model = load_official_algebraic(ckpt, heatmap_multiplier=50.0, image_shape=(128, 128))
    assert model.heatmap_multiplier == 50.0 and model.image_shape == (128, 128)
    with torch.no_grad():
        out = model(torch.from_numpy(io["images"][:1, :2]), torch.from_numpy(io["proj_matrices"][:1, :2]))
    torch.testing.assert_close(out.heatmaps_raw, outputs.heatmaps_raw[:1, :2], atol=2e-5, rtol=0)
    assert (out.keypoints_2d - outputs.keypoints_2d[:1, :2]).abs().max() > 0.1  # softer maps
    with pytest.raises(ValueError, match="image_shape"):
        model(torch.zeros(1, 2, 3, 160, 128), torch.zeros(1, 2, 3, 4))
    with pytest.raises(TypeError, match="unknown override"):
        load_official_algebraic(ckpt, volume_size=64)


def test_ransac_baseline(ckpt, io, outputs):
    model = load_official_algebraic(ckpt, triangulation="ransac", ransac_threshold_px=15.0)
    P = torch.from_numpy(io["proj_matrices"][:1])
    with torch.no_grad():
        out = model(torch.from_numpy(io["images"][:1]), P)
    cells = outputs.heatmaps_raw[:1].flatten(-2).argmax(-1)
    expected = torch.stack([cells % 32, cells // 32], -1).float() * 4.0  # argmax cell i -> pixel 4 i
    torch.testing.assert_close(out.keypoints_2d, expected)
    assert out.inliers.shape == (1, 4, 17) and out.inliers.dtype == torch.bool
    X, inl = triangulate_robust(expected, P, out.confidences, threshold_px=15.0)
    torch.testing.assert_close(out.keypoints_3d, X, equal_nan=True)
    assert torch.equal(out.inliers, inl)


def _rewrite(src, dst, edit):
    sd = torch.load(src, weights_only=True)
    edit(sd)
    torch.save(sd, dst)
    return dst


def test_wrong_checkpoint_raises_clear_error(ckpt, tmp_path):
    def edit(sd):
        sd["module.backbone.extra.weight"] = torch.zeros(1)
        del sd["module.backbone.layer1.0.conv1.weight"]
        sd["module.backbone.alg_confidences.head.4.bias"] = torch.zeros(3)

    bad = _rewrite(ckpt, tmp_path / "bad.pth", edit)
    with pytest.raises(ValueError) as err:
        load_official_algebraic(bad)
    msg = str(err.value)
    assert "bad.pth" in msg and "backbone.layer1.0.conv1.weight" in msg and "backbone.extra.weight" in msg
    assert "backbone.alg_confidences.head.4.bias: (3,) vs (17,)" in msg
    # a checkpoint with the confidence head cannot load into the alg_no_conf model
    with pytest.raises(ValueError, match=r"unexpected keys \['backbone.alg_confidences"):
        load_official_algebraic(ckpt, use_confidences=False)
    # a backbone-only pose-ResNet file is pointed to the right loader
    only = _rewrite(
        ckpt,
        tmp_path / "pose_resnet.pth",
        lambda sd: sd.update({k.replace("module.backbone.", ""): sd.pop(k) for k in list(sd)}),
    )
    with pytest.raises(ValueError, match=r"pose_resnet\.pth.*load_pose_resnet_backbone"):
        load_official_algebraic(only)
    torch.save({"epoch": torch.tensor(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth"):
        load_official_algebraic(tmp_path / "other.pth")


def test_missing_view_equals_dropping_it(model, io, outputs):
    images, P = torch.from_numpy(io["images"]), torch.from_numpy(io["proj_matrices"])
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[0, 2] = False
    with torch.no_grad():
        masked = model(images, P, view_mask=mask)
        dropped = model(images[:1, [0, 1, 3]], P[:1, [0, 1, 3]])
    torch.testing.assert_close(masked.keypoints_3d[:1], dropped.keypoints_3d, atol=1e-3, rtol=0)
    torch.testing.assert_close(masked.confidences[:1, [0, 1, 3]], dropped.confidences, atol=1e-6, rtol=0)
    assert (masked.confidences[0, 2] == 0).all() and masked.keypoints_2d[0, 2].isnan().all()
    assert (masked.heatmaps_raw[0, 2] == 0).all()
    # the other sample is untouched
    torch.testing.assert_close(masked.keypoints_3d[1], outputs.keypoints_3d[1], atol=1e-3, rtol=0)
    torch.testing.assert_close(masked.confidences[1], outputs.confidences[1], atol=1e-6, rtol=0)
    # a sample with a single view left: NaN joints (and a mask), no error
    mask[1, 1:] = False
    with torch.no_grad():
        single = model(images, P, view_mask=mask)
    assert single.keypoints_3d[1].isnan().all() and torch.isfinite(single.keypoints_3d[0]).all()
    assert (single.confidences[1, 1:] == 0).all() and torch.isfinite(single.confidences).all()


def test_published_model_size_and_no_conf_variant():
    with torch.device("meta"):
        published = AlgebraicTriangulationNet(152, 17)
        no_conf = AlgebraicTriangulationNet(152, 17, use_confidences=False)
    cfg = fixture_config(NAME)["published_param_counts"]["algebraic"]
    assert sum(p.numel() for p in published.parameters()) == cfg["parameters"] == 79_521_890
    sd = published.state_dict()
    assert (len(sd), sum(v.numel() for v in sd.values())) == (
        cfg["state_dict_tensors"],
        cfg["state_dict_elements"],
    )
    assert sum(p.numel() for p in no_conf.parameters()) == 68_635_473
    assert not no_conf.backbone.has_alg_confidences
    with pytest.raises(ValueError, match="alg_confidences"):
        AlgebraicTriangulationNet(backbone=PoseResNet("basic", (1, 1, 1, 1), 3), use_confidences=True)


def test_training_gradients_and_uniform_weights():
    torch.manual_seed(0)
    bb = PoseResNet("basic", (1, 1, 1, 1), 4, alg_confidences=True, deconv_channels=(32, 32, 32))
    model = AlgebraicTriangulationNet(backbone=bb, use_confidences=True).train()
    f, c = 150.0, 64.0
    K = torch.tensor([[f, 0, c], [0, f, c], [0, 0, 1.0]])
    P = []
    for angle in (0.0, 1.2, 2.5):
        s, co = np.sin(angle), np.cos(angle)
        R = torch.tensor([[co, 0, -s], [0, 1.0, 0], [s, 0, co]], dtype=torch.float32)
        P.append(K @ torch.cat([R, torch.tensor([[0.0], [0.0], [3000.0]])], 1))
    P = torch.stack(P)[None]
    out = model(torch.randn(1, 3, 3, 128, 128), P)
    assert out.keypoints_3d.shape == (1, 4, 3) and torch.isfinite(out.keypoints_3d).all()
    out.keypoints_3d.sum().backward()
    assert bb.conv1.weight.grad.abs().sum() > 0 and bb.alg_confidences.head[4].weight.grad.abs().sum() > 0
    no_conf = AlgebraicTriangulationNet(backbone=PoseResNet("basic", (1, 1, 1, 1), 4), use_confidences=False)
    with torch.no_grad():
        out = no_conf.eval()(torch.randn(1, 3, 3, 128, 128), P)
    torch.testing.assert_close(out.confidences, torch.full((1, 3, 4), 1 / 3 + 1e-5))
    torch.testing.assert_close(out.confidences_raw, torch.ones(1, 3, 4))
