"""SRNet: skeleton-derived groups, parity with the reference fixture, checkpoint loading, contract."""

from __future__ import annotations

import pytest
import torch
from fixture_helpers import fixture_config, fixture_dir, fixture_io, materialise_checkpoint

from mvpose.data.sequences import flip_pose
from mvpose.models.temporal.srnet import SRNet, load_official, split_groups, srnet_1f, srnet_243f
from mvpose.skeleton import BODY25, H36M17, H36M17_LT, MPI3DHP17

NAME = "srnet"
ATOL = RTOL = 1e-5  # the fixture README's recommendation (float32 vs float64 of the reference: ~3e-7)
FLIP = H36M17.flip_indices


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return materialise_checkpoint(NAME, tmp_path_factory.mktemp(NAME))


@pytest.fixture(scope="module")
def models(ckpt):
    """The fixture checkpoint loaded as the evaluation model and as its causal twin."""
    return load_official(ckpt), load_official(ckpt, causal=True)


@pytest.fixture(scope="module")
def io():
    return {k: torch.from_numpy(v) for k, v in fixture_io(NAME).items()}


def _close(ours, ref, what):
    err = (ours - ref).abs().max().item()
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    assert torch.allclose(ours, ref, atol=ATOL, rtol=RTOL), f"{what}: max |diff| {err:.2e}"


# ------------------------------------------------------------------ groups from the skeleton


def test_groups_derived_from_skeleton_equal_the_reference():
    cfg = fixture_config(NAME)
    groups = split_groups(H36M17, 5)
    assert groups == ((0, 1, 2, 3), (0, 4, 5, 6), (0, 7, 8, 9, 10), (0, 11, 12, 13), (0, 14, 15, 16))
    channels = [[2 * j + c for j in g for c in (0, 1)] for g in groups]
    assert channels == cfg["conv_seq_input_channels"]
    assert list(H36M17.parents) == cfg["skeleton_parents_17"]
    # the reference's other choices (group_index.get_input): 3 = legs / torso / arms, 2 = lower / upper
    assert split_groups(H36M17, 3) == (tuple(range(7)), (0, 7, 8, 9, 10), (0, *range(11, 17)))
    assert split_groups(H36M17, 2) == (tuple(range(8)), (0, *range(8, 17)))
    # derived, not listed: the other H36M order and other joint sets get the same body parts
    names = [[H36M17.joint_names[j] for j in g] for g in groups]
    lt_names = sorted(sorted(H36M17_LT.joint_names[j] for j in g) for g in split_groups(H36M17_LT, 5))
    assert lt_names == sorted(sorted(n) for n in names)
    for sk in (MPI3DHP17, BODY25):
        for group in (2, 3, 5):
            gs = split_groups(sk, group)
            assert len(gs) == group and all(g[0] == sk.root for g in gs)
            assert sorted(j for g in gs for j in g[1:]) == [j for j in range(sk.num_joints) if j != sk.root]


def test_group_channel_split_matches_reference():
    cfg = fixture_config(NAME)
    model = SRNet(filter_widths=(3, 3, 3))
    sd = model.state_dict()
    assert [sd[f"expand_conv.group_conv.{g}.weight"].shape[0] for g in range(5)] == cfg[
        "group_out_channels_hidden"
    ]
    assert [sd[f"final_layer.group_conv.{g}.weight"].shape[0] for g in range(5)] == cfg[
        "group_out_channels_final"
    ]
    for layer, sizes in cfg["gate_in_channels"].items():
        key = layer.replace("layers_conv", "layers_conv.") if layer[-1].isdigit() else layer
        got = [sd[f"{key}.get_part_info.m_conv.{g}.weight"].shape[1] for g in range(5)]
        assert got == sizes, layer


# ------------------------------------------------------------------ parity with the fixture


def test_state_dict_layout_is_the_reference_one():
    import json

    manifest = json.loads((fixture_dir(NAME) / "manifest.json").read_text())
    assert manifest["layout"]["path"] == ["model_pos"]
    own = SRNet(filter_widths=(3, 3, 3)).state_dict()
    assert [(k, list(v.shape)) for k, v in own.items()] == [(n, s) for n, s, _ in manifest["tensors"]]


def test_parity_full_and_intermediates(models, io):
    model = models[0]
    assert model.filter_widths == (3, 3, 3) and model.receptive_field == 27
    assert (model.group, model.recombine, model.in_features, model.channels) == (5, "multiply", 2, 1024)
    with torch.no_grad():
        y, inter = model.forward_intermediates(io["input_2d_full"])
        _close(y, io["output_full"], "output_full")
        layers = ["expand_conv", *(f"layers_conv{k}" for k in range(4)), "final_layer"]
        assert sorted(inter) == sorted(layers)
        for layer in layers:
            for k in ("out", "gate_conv", "gate_logit"):
                _close(inter[layer][k], io[f"inter_full_{layer}_{k}"], f"{layer} {k}")
        _close(model(io["input_2d_rf"]), io["output_rf"], "output_rf")


def test_parity_strided_causal_and_flip_average(models, io):
    model, causal = models
    assert causal.causal and causal.causal_shift == 13
    with torch.no_grad():
        _close(causal(io["input_2d_full"]), io["output_causal_full"], "output_causal_full")
        try:
            for m, key in ((model, "output_opt1f_windows"), (causal, "output_causal_opt1f_windows")):
                m.strided = True  # TemporalModelOptimized1f: same weights, strided convolutions
                _close(m(io["input_2d_windows"]), io[key], key)
            _close(model(io["input_2d_rf"]), io["output_opt1f_rf"], "output_opt1f_rf")
        finally:
            model.strided = causal.strided = False
        for m, pre in ((model, ""), (causal, "causal_")):
            # the reference's UnchunkedGenerator batch: edge-padded sequence and its mirror
            batch = io[f"{pre}tta_input_batch"]
            _close(m(batch), io[f"{pre}tta_raw_output"], f"{pre}tta_raw_output")
            # predict = the same padding + mvpose.data.sequences.flip_average
            _close(m.predict(io["input_2d_seq"][None], FLIP)[0], io[f"{pre}tta_output"], f"{pre}tta_output")
    torch.testing.assert_close(flip_pose(batch[:1], FLIP), batch[1:], rtol=0, atol=0)


# ------------------------------------------------------------------ loading


def test_load_layouts_and_overrides(ckpt, io, tmp_path):
    sd = torch.load(ckpt, weights_only=True)["model_pos"]
    torch.save(sd, tmp_path / "bare.pth")
    torch.save({"model_pos": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, tmp_path / "ddp.pth")
    x = io["input_2d_rf"]
    with torch.no_grad():
        _close(load_official(tmp_path / "bare.pth")(x), io["output_rf"], "bare state dict")
        m = load_official(tmp_path / "ddp.pth", architecture="3,3,3", split="others", split_modulation=True)
        _close(m(x), io["output_rf"], "module. prefix, overrides")
    assert not m.training
    with pytest.raises(TypeError, match="unknown override"):
        load_official(ckpt, kernel=3)
    with pytest.raises(ValueError, match="split='others'"):
        load_official(ckpt, split="all")


def test_wrong_checkpoint_errors(ckpt, tmp_path):
    sd = torch.load(ckpt, weights_only=True)["model_pos"]
    broken = {k: v for k, v in sd.items() if "layers_conv.1.get_part_info.m_conv.2" not in k}
    broken["extra.weight"] = torch.zeros(1)
    torch.save({"model_pos": broken}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="broken.pth") as e:
        load_official(tmp_path / "broken.pth")
    msg = str(e.value)
    assert "layers_conv.1.get_part_info.m_conv.2.weight" in msg and "extra.weight" in msg
    with pytest.raises(ValueError, match="shape mismatches.*layers_conv.0.group_conv.0.weight"):
        load_official(ckpt, filter_widths=[5, 5, 5])
    torch.save({"model_pos": {"expand_conv.weight": torch.zeros(1024, 34, 3)}}, tmp_path / "vp3d.pth")
    with pytest.raises(ValueError, match="vp3d.pth: not an SRNet state dict"):
        load_official(tmp_path / "vp3d.pth")
    torch.save({"epoch": 1, "model_traj": {}}, tmp_path / "nopos.pth")
    with pytest.raises(ValueError, match="nopos.pth: no 'model_pos'"):
        load_official(tmp_path / "nopos.pth")


# ------------------------------------------------------------------ contract


def test_refinement_input_and_other_options(tmp_path):
    torch.manual_seed(0)
    model = SRNet(in_features=3, filter_widths=(3, 3), channels=128).eval()
    x = torch.randn(2, 12, 17, 3)
    assert model(x).shape == (2, 12 - 9 + 1, 17, 3) and model.receptive_field == 9
    torch.save({"model_pos": model.state_dict()}, tmp_path / "r.pth")
    loaded = load_official(tmp_path / "r.pth")
    assert (loaded.in_features, loaded.filter_widths, loaded.channels) == (3, (3, 3), 128)
    torch.testing.assert_close(loaded(x), model(x))
    for group, recombine in ((3, "add"), (2, "concat")):
        m = SRNet(filter_widths=(3, 3), channels=96, group=group, recombine=recombine).eval()
        torch.save(m.state_dict(), tmp_path / "g.pth")
        m2 = load_official(tmp_path / "g.pth")
        assert (m2.group, m2.recombine) == (group, recombine)
        x2 = torch.randn(1, 9, 17, 2)
        torch.testing.assert_close(m2(x2), m(x2))
    base = SRNet(filter_widths=(1, 1, 1), channels=64).eval()  # norm "lcn": the 2D input is added to X, Y
    lcn = SRNet(filter_widths=(1, 1, 1), channels=64, norm="lcn").eval()
    lcn.load_state_dict(base.state_dict())
    x2 = torch.randn(2, 4, 17, 2)
    torch.testing.assert_close(lcn(x2), base(x2) + torch.cat([x2, torch.zeros(2, 4, 17, 1)], -1))
    other = SRNet(MPI3DHP17, filter_widths=(3,), channels=64)
    assert other(torch.randn(2, 5, 17, 2)).shape == (2, 3, 17, 3)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(2, 12, 17, 2))
    with pytest.raises(ValueError, match="receptive field"):
        model(torch.randn(2, 8, 17, 3))
    model.strided = True
    with pytest.raises(ValueError, match="not a multiple of 9"):
        model(torch.randn(2, 12, 17, 3))
    with pytest.raises(ValueError, match="group=1"):
        SRNet(group=1)


def test_training_step_reaches_the_gates():
    torch.manual_seed(0)
    model = SRNet(filter_widths=(3, 3), channels=64, strided=True, dropout=0.1).train()
    assert torch.all(model.expand_conv.get_part_info.m_conv[0].weight == 0)  # the reference's init
    model(torch.randn(4, 9, 17, 2)).square().mean().backward()
    gates = model.layers_conv[0].get_part_info.m_conv
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in gates)
    assert model.layers_conv[0].get_part_info.layers_bn[0].num_batches_tracked.item() == 1


def test_published_parameter_counts():
    counts = fixture_config(NAME)["published_param_counts"]
    for builder, key in ((srnet_243f, "243_frames"), (srnet_1f, "single_frame")):
        model = builder()
        assert model.receptive_field == counts[key]["config"]["receptive_field"]
        assert sum(p.numel() for p in model.parameters()) == counts[key]["param_count"]
