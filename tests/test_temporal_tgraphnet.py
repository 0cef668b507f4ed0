"""TGraphNet: parity with the reference fixture (outputs, intermediates, graphs), contract, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixture_helpers import fixture_config, fixture_io, materialise_checkpoint

from mvpose.data.sequences import flip_average
from mvpose.models.temporal.tgraphnet import (
    TGraphNet,
    bone_adjacency,
    load_official,
    skeleton_adjacency,
    tgraphnet,
)
from mvpose.skeleton import H36M17, H36M17_LT

NAME = "tgraphnet"
FEATURES = [
    *(f"down{i}_{k}" for i in range(3) for k in ("features", "downsampled")),
    "bottom_features",
    *(f"{p}{s}_{k}" for s in range(3) for p in ("up", "merge") for k in ("stgconv", "upsampled")),
    *("merge_sum", "merge_norm", "post_merge", "post_node", "post_traj"),
]


@pytest.fixture(scope="module")
def io():
    return fixture_io(NAME)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return materialise_checkpoint(NAME, tmp_path_factory.mktemp("tgraphnet"))


@pytest.fixture(scope="module")
def run(ckpt, io):
    model = load_official(ckpt)
    with torch.no_grad():
        y, feats = model.forward_intermediates(torch.from_numpy(io["input_2d"]))
    return model, y.numpy(), {k: v.numpy() for k, v in feats.items()}


def _close(a, b, atol):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)


# ------------------------------------------------------------------------------------------------ graphs


def test_graphs_equal_reference(io):
    # built from mvpose.skeleton.H36M17 (parents, flips), equal to the reference's hard-coded graph
    np.testing.assert_array_equal(skeleton_adjacency(H36M17, 3).numpy(), io["graph_adj_v"])
    np.testing.assert_array_equal(bone_adjacency(H36M17, 3).numpy(), io["graph_adj_e"])
    model = TGraphNet(channels=(4, 4, 8, 8))
    np.testing.assert_array_equal(model.adj_v.detach().numpy(), io["graph_adj_v"])
    assert model.adj_v.requires_grad and model.adj_e.requires_grad


def test_graph_follows_joint_order():
    # the same graph in learnable-triangulation's joint order is the permuted H36M17 graph
    perm = torch.tensor([H36M17.index(n) for n in H36M17_LT.joint_names])
    nodes = torch.cat([perm + 17 * k for k in range(3)])
    a, b = skeleton_adjacency(H36M17, 3), skeleton_adjacency(H36M17_LT, 3)
    torch.testing.assert_close(b, a[:, nodes][:, :, nodes], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ parity


def test_output_parity(run, io):
    model, y, _ = run
    _close(y, io["output"], 1e-4)
    _close(y[:, :, :1], io["output_traj"], 1e-4)
    root_rel = y.copy()
    root_rel[:, :, model.root] = 0
    _close(root_rel, io["output_root_relative"], 1e-4)
    _close(y[:, 25:56], io["output_center31"], 1e-4)


@pytest.mark.parametrize("key", FEATURES)
def test_intermediate_parity(run, io, key):
    _close(run[2][key], io["feat_" + key], 5e-5)


def test_dense_affinity_parity(ckpt, io, tmp_path):
    # every alias of adj_v replaced by a dense "learned" affinity: all entries are used
    obj = torch.load(ckpt, weights_only=True)
    dense = torch.from_numpy(io["adj_v_dense"])
    for k in obj["state_dict"]:
        if k == "adj_v" or k.endswith(".adj_v"):
            obj["state_dict"][k] = dense.clone()
    torch.save(obj, tmp_path / "dense.pth")
    with torch.no_grad():
        y = load_official(tmp_path / "dense.pth")(torch.from_numpy(io["input_2d"]))
    _close(y.numpy(), io["output_dense_adj"], 1e-4)


def test_bare_state_dict_with_module_prefix(ckpt, run, io, tmp_path):
    sd = torch.load(ckpt, weights_only=True)["state_dict"]
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "bare.pth")
    model = load_official(tmp_path / "bare.pth")
    with torch.no_grad():
        y = model(torch.from_numpy(io["input_2d"]))
    np.testing.assert_array_equal(y.numpy(), run[1])
    # mvpose's own state dict (no aliases, no ".0" levels) loads too
    torch.save(model.state_dict(), tmp_path / "own.pth")
    assert load_official(tmp_path / "own.pth").in_frames == 81


# ------------------------------------------------------------------------------------------------ contract


def test_contract_refinement_and_chunks():
    torch.manual_seed(0)
    model = TGraphNet(in_features=3, channels=(8, 8, 16, 16), blocks=(1, 2, 1, 1)).eval()
    assert model.receptive_field == model.in_frames == 81
    x = torch.randn(2, 162, 17, 3)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 162, 17, 3)
        # chunks of in_frames are independent
        torch.testing.assert_close(y[:, 81:], model(x[:, 81:]), rtol=1e-5, atol=1e-5)
        assert flip_average(model, x).shape == (2, 162, 17, 3)
    with pytest.raises(ValueError, match="multiple of in_frames"):
        model(x[:, :80])
    with pytest.raises(ValueError, match=r"\(B, T, 17, 3\)"):
        model(x[..., :2])


def test_affinity_is_learnable_and_dense():
    model = TGraphNet(channels=(4, 4, 8, 8)).train()
    model(torch.randn(2, 81, 17, 2)).square().mean().backward()
    grad = model.adj_v.grad
    assert grad is not None and (grad[model.adj_v.detach() == 0] != 0).any()


def test_published_parameter_counts():
    cfg = fixture_config(NAME)
    for pub in cfg["published_param_counts"].values():
        c = pub["config"]
        model = TGraphNet(
            in_features=c["num_hidden_nodes"][0][0],
            channels=[h[1] for h in c["num_hidden_nodes"]],
            blocks=c["gconv_stages"],
            num_groups=c["num_groups"],
            in_frames=c["in_frames"],
        )
        n = sum(p.numel() for p in model.parameters())
        assert n == pub["params"]
        assert n - model.adj_v.numel() - model.adj_e.numel() == pub["params_excluding_adjacency"]
    assert sum(p.numel() for p in tgraphnet().parameters()) == 3_985_450


# ------------------------------------------------------------------------------------------------ loading


def test_overrides(ckpt):
    model = load_official(ckpt, in_frames=162, dropout=0.0, learn_adj=True, num_hidden_edges=[[2, 32]])
    assert model.in_frames == 162 and model(torch.zeros(1, 162, 17, 2)).shape == (1, 162, 17, 3)
    with pytest.raises(TypeError, match="unknown overrides"):
        load_official(ckpt, layers=3)
    with pytest.raises(ValueError, match="use_edge_conv"):
        load_official(ckpt, use_edge_conv=True)
    with pytest.raises(
        ValueError, match=r"shape mismatches \(checkpoint vs model\) \[.*downsample_layers\.0\.graph_stages"
    ):
        load_official(ckpt, num_hidden_nodes=[[2, 8], [8, 16], [16, 32], [32, 32]])


def test_wrong_checkpoint(ckpt, tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"state_dict": {"layer.weight": torch.zeros(3)}}, bad)
    with pytest.raises(ValueError, match="other.pth: not a TGraphNet checkpoint"):
        load_official(bad)
    sd = torch.load(ckpt, weights_only=True)["state_dict"]
    sd.pop("post_traj.weight")
    sd["extra.bias"] = torch.zeros(3)
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"broken.pth: .*missing keys \['post_traj.weight'\].*'extra.bias'"):
        load_official(tmp_path / "broken.pth")
