import json

import numpy as np
import pytest
import torch
from fixture_helpers import fixture_config, fixture_dir

from mvpose.models.backbone import (
    ConfidenceHead,
    PoseResNet,
    feature_head,
    load_pose_resnet_backbone,
    pose_resnet,
    pose_resnet18,
    pose_resnet50,
    pose_resnet152,
    pose_resnet_config_from_state_dict,
)


def _manifest(name: str) -> list:
    return json.loads((fixture_dir(name) / "manifest.json").read_text())["tensors"]


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tiny(num_joints=17, **kwargs) -> PoseResNet:
    """A small pose-ResNet (one BasicBlock per stage, 32-channel deconvs): the loading rules are the same."""
    return PoseResNet("basic", (1, 1, 1, 1), num_joints, deconv_channels=(32, 32, 32), **kwargs)


def test_shapes_and_heads():
    net = pose_resnet18(
        num_joints=5, alg_confidences=True, vol_confidences=True, vol_confidences_dim=7
    ).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 128, 160))
    assert out.heatmaps.shape == (1, 5, 32, 40)
    assert out.features.shape == (1, 256, 32, 40)
    assert out.alg_confidences.shape == (1, 5) and out.vol_confidences.shape == (1, 7)
    assert ((out.alg_confidences > 0) & (out.alg_confidences < 1)).all()
    assert feature_head(256, 32)(out.features).shape == (1, 32, 32, 40)
    bare = _tiny(5).eval()
    with torch.no_grad():
        out = bare(torch.randn(1, 3, 64, 64))
    assert (
        out.heatmaps.shape == (1, 5, 16, 16) and out.alg_confidences is None and out.vol_confidences is None
    )
    with pytest.raises(ValueError, match="at least 4x4"):
        ConfidenceHead(512, 3)(torch.randn(1, 512, 2, 2))


def test_state_dict_matches_reference_layouts():
    """Keys, shapes and order of the three learnable-triangulation-family fixtures' backbones."""
    alg = _manifest("learnable_triangulation_alg")
    with torch.device("meta"):
        net, plain, vol = (
            pose_resnet18(17, alg_confidences=True),
            pose_resnet18(17),
            pose_resnet18(17, vol_confidences=True),
        )
    sd = net.state_dict()
    assert ["backbone." + k for k in sd] == [n for n, _, _ in alg]  # same keys in the same order
    assert all(list(sd[n[len("backbone.") :]].shape) == s for n, s, _ in alg)
    for name in ("learnable_triangulation_vol", "contextpose"):
        ref = {n: s for n, s, _ in _manifest(name)}
        own = {"backbone." + k: list(v.shape) for k, v in plain.state_dict().items()}
        own |= {"process_features." + k: list(v.shape) for k, v in feature_head(256, 32).state_dict().items()}
        assert own == {n: s for n, s in ref.items() if n.split(".")[0] in ("backbone", "process_features")}
    # vol_confidences: same head as alg_confidences with 32 outputs; 3,812,384 parameters at R18 (vol README)
    keys = {k for k in vol.state_dict() if k.startswith("vol_confidences.")}
    assert {k.rsplit(".", 1)[0] for k in keys} == {
        f"vol_confidences.{m}"
        for m in ("features.0", "features.1", "features.4", "features.5", "head.0", "head.2", "head.4")
    }
    assert _count(vol.vol_confidences) == 3_812_384
    assert vol.vol_confidences.head[4].out_features == 32


def test_published_parameter_counts():
    cfg = fixture_config("learnable_triangulation_alg")["published_param_counts"]
    with torch.device("meta"):
        plain = pose_resnet152(17)
        conf = pose_resnet152(17, alg_confidences=True)
        r18 = pose_resnet18(17, alg_confidences=True)
    assert _count(plain) == cfg["algebraic_parts"]["backbone_without_alg_head"] == 68_635_473
    assert _count(conf) == cfg["algebraic"]["parameters"] == 79_521_890
    assert _count(conf.alg_confidences) == cfg["algebraic_parts"]["alg_confidences_head"]
    assert (
        _count(r18) == fixture_config("learnable_triangulation_alg")["fixture"]["param_counts"]["parameters"]
    )
    assert _count(feature_head(256, 32)) == cfg["volumetric_parts"]["process_features"]


def test_architecture_variants():
    with torch.device("meta"):
        r50 = pose_resnet50(17)
        caffe = pose_resnet(50, 17, style="caffe")
        r18 = pose_resnet18()
    assert r50.layer2[0].conv2.stride == (2, 2) and r50.layer2[0].conv1.stride == (1, 1)
    assert caffe.layer2[0].conv1.stride == (2, 2) and caffe.layer2[0].conv2.stride == (1, 1)
    assert r50.out_channels == 2048 and r18.out_channels == 512
    cfg = pose_resnet_config_from_state_dict(r50.state_dict())
    assert cfg["block"] == "bottleneck" and cfg["layers"] == (3, 4, 6, 3) and cfg["num_layers"] == 50
    assert (
        cfg["deconv_channels"] == (256,) * 3
        and cfg["deconv_kernels"] == (4,) * 3
        and not cfg["alg_confidences"]
    )
    with pytest.raises(ValueError, match="num_layers"):
        pose_resnet(26)
    small = PoseResNet("basic", (1, 1, 1, 1), 3, deconv_channels=(64, 32), deconv_kernels=(4, 2))
    assert small(torch.zeros(1, 3, 64, 64)).heatmaps.shape == (1, 3, 8, 8)


def _msra_file(path, num_joints=16, extra=True):
    """A pose-ResNet file in MSRA's checkpoint.pth.tar layout (DataParallel keys, numpy perf)."""
    src = _tiny(num_joints)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    sd = {"module." + k: v for k, v in src.state_dict().items()}
    if extra:
        sd["module.fc.weight"] = torch.zeros(3, 3)
    torch.save({"epoch": 140, "model": "pose_resnet", "state_dict": sd, "perf": np.float64(0.71)}, path)
    return src


def test_backbone_only_loading_msra_layout(tmp_path):
    src = _msra_file(tmp_path / "checkpoint.pth.tar")
    net = _tiny(17, alg_confidences=True)
    head_before = {k: v.clone() for k, v in net.alg_confidences.state_dict().items()}
    report = load_pose_resnet_backbone(net, tmp_path / "checkpoint.pth.tar")
    own, ref = net.state_dict(), src.state_dict()
    for k in ref:
        if not k.startswith("final_layer"):
            assert torch.equal(own[k], ref[k]), k
    # other joint count: re-initialised, the first 16 filters copied
    assert sorted(report.reinitialised) == ["final_layer.bias", "final_layer.weight"]
    assert torch.equal(own["final_layer.weight"][:16], ref["final_layer.weight"])
    assert own["final_layer.bias"][16] == 0 and own["final_layer.weight"][16].abs().sum() > 0
    # the confidence head never comes from a backbone file
    assert all(torch.equal(net.alg_confidences.state_dict()[k], v) for k, v in head_before.items())
    assert any(k.startswith("alg_confidences.") for k in report.missing)
    assert report.skipped == ["fc.weight (not in the model)"]


def test_backbone_only_loading_bare_and_builder(tmp_path):
    src = pose_resnet18(17)
    torch.save(src.state_dict(), tmp_path / "bare.pth")
    net = pose_resnet18(17, pretrained=tmp_path / "bare.pth")  # the builder reads a local file
    assert all(torch.equal(net.state_dict()[k], v) for k, v in src.state_dict().items())

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = _tiny(17, alg_confidences=True)

    src = _tiny(17)
    torch.save(src.state_dict(), tmp_path / "tiny.pth")
    model = Model()
    report = load_pose_resnet_backbone(model, tmp_path / "tiny.pth")
    assert not report.skipped and not report.reinitialised
    assert report.missing and all(k.startswith("alg_confidences.") for k in report.missing)
    assert torch.equal(model.backbone.conv1.weight, src.conv1.weight)


def test_backbone_only_loading_errors(tmp_path):
    net = _tiny()
    whole = {"module.backbone." + k: v for k, v in net.state_dict().items()}
    torch.save(whole, tmp_path / "whole.pth")
    with pytest.raises(ValueError, match=r"whole\.pth.*no key fits"):
        load_pose_resnet_backbone(net, tmp_path / "whole.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(ValueError, match=r"tensor\.pth"):
        load_pose_resnet_backbone(net, tmp_path / "tensor.pth")
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_pose_resnet_backbone(net, tmp_path / "nothere.pth")
    with pytest.raises(TypeError, match="PoseResNet"):
        load_pose_resnet_backbone(torch.nn.Linear(2, 2), tmp_path / "tensor.pth")
