"""PoseFormerV2: parity with the reference fixture ``poseformerv2``, contract and checkpoint errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from fixture_helpers import fixture_config, fixture_io, materialise_checkpoint

from mvpose.data.sequences import flip_average, flip_indices_from_symmetry, flip_pose
from mvpose.models.temporal.poseformerv2 import (
    _REF_NAMES,
    PoseFormerV2,
    _rename,
    dct_matrix,
    idct_matrix,
    load_official,
    poseformerv2,
)
from mvpose.skeleton import H36M17

NAME = "poseformerv2"
TOL = dict(rtol=1e-5, atol=5e-5)  # the fixture README's recommendation (fp32 vs fp64 of the reference)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return materialise_checkpoint(NAME, tmp_path_factory.mktemp(NAME))


@pytest.fixture(scope="module")
def io():
    return fixture_io(NAME)


@pytest.fixture(scope="module")
def model(ckpt):
    return load_official(ckpt, number_of_frames=fixture_config(NAME)["number_of_frames"])


def _close(a, b, what, atol=TOL["atol"]):
    a = a.detach().double().numpy() if isinstance(a, torch.Tensor) else a
    np.testing.assert_allclose(a, b, rtol=TOL["rtol"], atol=atol, err_msg=what)


def test_config_inferred(model):
    cfg = fixture_config(NAME)
    assert (model.num_frame, model.frames_kept, model.coeffs_kept) == (27, 3, 5)
    assert (model.num_joints, model.in_chans, len(model.mixed_blocks)) == (17, 2, cfg["depth"])
    assert model.receptive_field == cfg["number_of_frames"]
    assert sum(p.numel() for p in model.parameters()) == cfg["fixture_param_count"]


def test_parity_outputs_and_intermediates(model, io):
    cap = {}

    def keep(name):
        return lambda mod, inp, out: cap.setdefault(name, []).append(out.detach().clone())

    hooks = [model.joint_embed.register_forward_hook(keep("joint_embedding"))]
    hooks += [model.freq_embed.register_forward_hook(keep("freq_embedding"))]
    hooks += [b.register_forward_hook(keep("spatial_block_out")) for b in model.spatial_blocks]
    hooks += [b.register_forward_hook(keep("mixed_block_out")) for b in model.mixed_blocks]
    hooks += [model.spatial_norm.register_forward_hook(keep("frame_tokens"))]
    hooks += [model.temporal_norm.register_forward_hook(keep("temporal_tokens_normed"))]
    hooks += [model.head.register_forward_pre_hook(lambda mod, inp: keep("pooled")(mod, None, inp[0]))]
    x = torch.from_numpy(io["input_2d"])
    try:  # with autograd: the module-by-module path (inference runs the mixed blocks on token-major rows)
        y = model(x).detach()
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        y_fused = model(x)

    assert y.shape == y_fused.shape == (2, 1, 17, 3)
    _close(y, io["output"], "output", atol=1e-4)
    _close(y, io["output"], "output")
    _close(y_fused, io["output"], "output (fused inference)")
    for k in ("joint_embedding", "freq_embedding", "temporal_tokens_normed", "pooled"):
        _close(cap[k][0], io[k], k)
    _close(cap["frame_tokens"][0].reshape(2, 3, -1), io["frame_tokens"], "frame_tokens")
    for k in ("spatial_block_out", "mixed_block_out"):
        _close(torch.stack(cap[k]), io[k], k)

    # the unnormalised DCT-II over the frame axis (torch_dct, norm=None), and its exact inverse
    coeffs = torch.einsum("kt,btjc->bkjc", dct_matrix(27), x.double())
    _close(coeffs, io["dct_coeffs_all"], "dct_coeffs_all")
    _close(coeffs[:, :5], io["dct_coeffs"], "dct_coeffs")
    torch.testing.assert_close(idct_matrix(8) @ dct_matrix(8), torch.eye(8, dtype=torch.float64))
    assert io["kept_frame_index"].tolist() == [12, 13, 14]


def test_parity_flip_average(model, io):
    perm = flip_indices_from_symmetry(io["joints_left"], io["joints_right"], 17)
    assert perm == H36M17.flip_indices
    x = torch.from_numpy(io["input_2d"])
    np.testing.assert_array_equal(flip_pose(x, perm).numpy(), io["input_2d_flip"])
    with torch.no_grad():
        _close(model(torch.from_numpy(io["input_2d_flip"])), io["output_flip_raw"], "output_flip_raw")
        y = flip_average(model, x, perm)
    _close(y, io["output_tta"], "output_tta", atol=1e-4)
    _close(y, io["output_tta"], "output_tta")


def test_parity_float64(ckpt, io):
    m = load_official(ckpt, number_of_frames=27).double()
    with torch.no_grad():
        y = m(torch.from_numpy(io["input_2d"]).double())
    np.testing.assert_allclose(y.numpy(), io["output_float64"], rtol=0, atol=1e-5)


def test_layouts_and_number_of_frames_warning(ckpt, io, model, tmp_path):
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["model_pos"]
    bare = tmp_path / "bare.pth"
    torch.save({k.removeprefix("module."): v for k, v in sd.items()}, bare)
    with pytest.warns(UserWarning, match="number_of_frames"):
        m = load_official(bare)  # 3 kept frames: 27 or 81 frames, not in the weights
    assert m.receptive_field == 27 and not m.training
    x = torch.from_numpy(io["input_2d"])
    with torch.no_grad():
        torch.testing.assert_close(m(x), model(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_official(ckpt, num_frame=81, num_heads=8).receptive_field == 81


def test_wrong_checkpoints(ckpt, tmp_path):
    obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    sd = dict(obj["model_pos"])
    del sd["module.blocks.1.mlp2.fc1.bias"]
    sd["module.extra.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.pth"
    torch.save({**obj, "model_pos": sd}, bad)
    listing = r"bad\.pth.*\n.*'blocks\.1\.mlp2\.fc1\.bias'.*\n.*'module\.extra\.weight'"
    with pytest.raises(ValueError, match=listing):
        load_official(bad, number_of_frames=27)
    with pytest.raises(ValueError, match=r"shape mismatches: \['module\.Temporal_pos_embed \(1, 3, 544\)"):
        load_official(ckpt, number_of_frames=27, number_of_kept_frames=5)
    with pytest.raises(TypeError, match="unknown override"):
        load_official(ckpt, frames=27)
    torch.save({"epoch": 3, "lr": 1e-4}, bad)
    with pytest.raises(ValueError, match=r"bad\.pth: expected a PoseFormerV2 state dict"):
        load_official(bad)


def test_refinement_contract_and_inference(tmp_path):
    torch.manual_seed(0)
    kw = dict(num_joints=16, in_chans=3, embed_dim_ratio=8, depth=3, mlp_ratio=1.5)
    m = PoseFormerV2(num_frame=9, frames_kept=3, coeffs_kept=4, **kw)
    with torch.no_grad():
        m.frame_pos.normal_(), m.freq_pos.normal_(), m.spatial_pos.normal_()
    m.eval()
    x = torch.randn(4, 9, 16, 3)
    with torch.no_grad():
        y = m(x)
        assert y.shape == (4, 1, 16, 3) and m.receptive_field == 9
        assert m(torch.randn(2, 15, 16, 3)).shape == (2, 1, 16, 3)  # other window lengths run
    with pytest.raises(ValueError, match=r"\(B, F, 16, 3\)"):
        m(torch.randn(2, 9, 16, 2))
    with pytest.raises(ValueError, match="odd"):
        PoseFormerV2(frames_kept=2)
    # a reference-layout checkpoint of it: every hyperparameter but the frames and heads is inferred
    path = tmp_path / "refine.pth"
    ref_sd = {"module." + _rename(k, _REF_NAMES): v for k, v in m.state_dict().items()}
    torch.save({"model_pos": ref_sd, "epoch": 1}, path)
    m2 = load_official(path, number_of_frames=9, num_heads=8)
    assert (m2.num_joints, m2.in_chans, len(m2.spatial_blocks), m2.coeffs_kept) == (16, 3, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(m2(x), y)


def test_published_param_counts():
    for entry in fixture_config(NAME)["published_param_counts"]:
        c = entry["config"]
        variant = f"{c['number_of_frames']}/{c['number_of_kept_frames']}/{c['number_of_kept_coeffs']}"
        names = ("depth", "embed_dim_ratio", "num_joints", "num_heads", "mlp_ratio", "qkv_bias", "qk_scale")
        kw = {k: c[k] for k in names}
        with torch.device("meta"):
            m = poseformerv2(variant, **kw)
        assert sum(p.numel() for p in m.parameters()) == entry["param_count"], entry["label"]
