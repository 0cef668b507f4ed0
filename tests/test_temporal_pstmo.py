"""P-STMO (stage II lifter and stage I masked pose modelling) against the reference fixtures."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fixture_helpers import fixture_config, fixture_io, materialise_checkpoint

from mvpose.data.sequences.windows import flip_average
from mvpose.models.temporal.pstmo import (
    PSTMO,
    PSTMOPretrain,
    convert_official_state_dict,
    draw_masks,
    load_official,
    pstmo,
    pstmo_pretrain,
    pstmo_s,
    transfer_pretrained,
)

TOL = {"rtol": 1e-5, "atol": 1e-4}


def _close(ours: torch.Tensor, ref: np.ndarray, name: str) -> None:
    ref_t = torch.from_numpy(np.asarray(ref)).to(ours.dtype)
    assert ours.shape == ref_t.shape, (name, ours.shape, ref_t.shape)
    torch.testing.assert_close(ours, ref_t, **TOL, msg=lambda m: f"{name}: {m}")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("pstmo")
    names = ("pstmo", "pstmo_pretrain")
    with ThreadPoolExecutor(2) as pool:  # two make_checkpoint.py subprocesses side by side
        return dict(zip(names, pool.map(lambda n: materialise_checkpoint(n, d), names)))


@pytest.fixture(scope="module")
def masks():
    io = fixture_io("pstmo_pretrain")
    return torch.from_numpy(io["temporal_mask"]).bool(), torch.from_numpy(io["spatial_mask"]).bool()


@torch.no_grad()
def test_finetune_parity(checkpoints):
    io, cfg = fixture_io("pstmo"), fixture_config("pstmo")
    model = load_official(checkpoints["pstmo"]).eval()
    assert isinstance(model, PSTMO) and model.receptive_field == cfg["frames"] == 27
    assert model.stride_num == cfg["stride_num"]
    assert sum(p.numel() for p in model.parameters()) == cfg["fixture_param_count"]
    x = torch.from_numpy(io["input_2d"])
    # the reference's (B, 2, T, J, 1) input is our (B, T, J, 2)
    assert np.array_equal(io["model_input"][..., 0].transpose(0, 2, 3, 1), io["input_2d"])
    out = model.forward_intermediates(x)
    for key in ["encoder_out", "transformer_out", *(f"reduce_layer{i}_out" for i in range(3))]:
        _close(out[key], io[key], key)
    _close(out["output_centre"], io["output_centre"], "output_centre")
    _close(out["output_seq"], io["output_seq"], "output_seq")
    # raw reference layout (B, 3, L, J, 1)
    _close(out["output_centre"].permute(0, 3, 1, 2)[..., None], io["output_centre_raw"], "output_centre_raw")
    _close(out["output_seq"].permute(0, 3, 1, 2)[..., None], io["output_seq_raw"], "output_seq_raw")
    centre, seq = model.forward_with_sequence(x)
    assert torch.equal(model(x), centre) and centre.shape == (2, 1, 17, 3)
    # float64 forward against the reference's float64 forward
    m64 = load_official(checkpoints["pstmo"]).double().eval()
    c64, s64 = m64.forward_with_sequence(x.double())
    _close(c64, io["output_centre_float64"], "output_centre_float64")
    _close(s64, io["output_seq_float64"], "output_seq_float64")


@torch.no_grad()
def test_finetune_flip_tta(checkpoints):
    io = fixture_io("pstmo")
    model = load_official(checkpoints["pstmo"]).eval()
    x = torch.from_numpy(io["input_2d"])
    left, right = io["joints_left"].tolist(), io["joints_right"].tolist()
    flip = list(range(17))
    for a, b in zip(left, right):
        flip[a], flip[b] = b, a
    xf = x.clone()
    xf[..., 0] *= -1
    _close(xf[:, :, flip], io["input_2d_flip"], "input_2d_flip")
    _close(flip_average(model, x, flip), io["output_centre_tta"], "output_centre_tta")
    seq = flip_average(lambda z: model.forward_with_sequence(z)[1], x, flip)
    _close(seq, io["output_seq_tta"], "output_seq_tta")


@torch.no_grad()
def test_pretrain_parity(checkpoints, masks):
    io, cfg = fixture_io("pstmo_pretrain"), fixture_config("pstmo_pretrain")
    model = load_official(checkpoints["pstmo_pretrain"]).eval()
    assert isinstance(model, PSTMOPretrain) and model.receptive_field == 27
    assert sum(p.numel() for p in model.parameters()) == cfg["fixture_param_count"]
    assert len(model.decoder.layers) == cfg["decoder_layers"]
    tm, sm = masks
    assert int(tm.sum()) == int(27 * cfg["temporal_mask_rate"])
    assert (sm.sum(1) == cfg["spatial_mask_num"]).all()
    x = torch.from_numpy(io["input_2d"])
    out = model.forward_intermediates(x, tm, sm)
    assert (out["token_order"] == torch.from_numpy(io["token_order"])).all()
    for ours, ref in [
        ("masked_input", "masked_input"),
        ("encoder_visible_features", "encoder_visible_features"),
        ("decoder_input", "decoder_input"),
        ("decoder_output", "decoder_output"),
        ("output", "output_2d"),
        ("output_frame_order", "output_2d_original_order"),
    ]:
        _close(out[ours], io[ref], ours)
    _close(out["output"].permute(0, 3, 1, 2)[..., None], io["output_raw"], "output_raw")
    _close(model(x, tm, sm), io["output_2d_original_order"], "forward")
    # the reference's loss target is the input in token order
    _close(x[:, out["token_order"][0]], io["target_2d_reordered"], "target_2d_reordered")
    # per-sample masks give the same result as shared ones
    out_b = model.forward_intermediates(x, tm.expand(2, -1), sm.expand(2, -1, -1))
    torch.testing.assert_close(out_b["output"], out["output"])
    m64 = load_official(checkpoints["pstmo_pretrain"], pretrain=True).double().eval()
    _close(m64.forward_intermediates(x.double(), tm, sm)["output"], io["output_float64"], "output_float64")


@torch.no_grad()
def test_pretrain_flip_tta(checkpoints, masks):
    io = fixture_io("pstmo_pretrain")
    model = load_official(checkpoints["pstmo_pretrain"]).eval()
    tm, sm = masks
    x = torch.from_numpy(io["input_2d"])
    # the same (unswapped) masks for the flipped copy, averaged in token order
    order = model.forward_intermediates(x, tm, sm)["token_order"][0]
    tta = flip_average(lambda z: model.forward_intermediates(z, tm, sm)["output"], x)
    _close(tta, io["output_2d_tta"], "output_2d_tta")
    _close(flip_average(lambda z: model(z, tm, sm), x)[:, order], io["output_2d_tta"], "tta frame order")


@torch.no_grad()
def test_transfer(checkpoints):
    io, cfg = fixture_io("pstmo_pretrain"), fixture_config("pstmo_pretrain")
    rule = cfg["pretrain_to_finetune_transfer"]
    x = torch.from_numpy(io["finetune_input_2d"])
    pre = load_official(checkpoints["pstmo_pretrain"])
    for source in (checkpoints["pstmo_pretrain"], pre, torch.load(checkpoints["pstmo_pretrain"])):
        model = load_official(checkpoints["pstmo"]).eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        copied = transfer_pretrained(source, model)
        assert sorted(copied) == sorted(convert_official_state_dict({k: 0 for k in rule["copied_keys"]}))
        kept = convert_official_state_dict({k: 0 for k in rule["finetune_keys_not_from_pretrain"]})
        assert all(torch.equal(model.state_dict()[k], before[k]) for k in kept)
        centre, seq = model.forward_with_sequence(x)
        _close(centre, io["finetune_after_transfer_output_centre"], "finetune_after_transfer_output_centre")
        _close(seq, io["finetune_after_transfer_output_seq"], "finetune_after_transfer_output_seq")
    with pytest.raises(ValueError, match="shape"):
        transfer_pretrained(pre, PSTMO(frames=27, layers=3, channel=64, d_hid=128))


def test_published_parameter_counts():
    cfg = fixture_config("pstmo")
    with torch.device("meta"):  # count only, no allocation
        for entry in cfg["published_param_counts"]:
            c = entry["config"]
            kw = {
                k: c[k]
                for k in ("frames", "layers", "channel", "d_hid", "stride_num", "n_joints", "out_joints")
            }
            if entry["model"] == "Model_MAE":
                kw.pop("stride_num")
                model = PSTMOPretrain(**kw)
            else:
                model = PSTMO(**kw)
            assert sum(p.numel() for p in model.parameters()) == entry["param_count"], entry["label"]
        assert sum(p.numel() for p in pstmo_s().parameters()) == 6_482_278
        assert sum(p.numel() for p in pstmo().parameters()) == 7_009_382
        assert sum(p.numel() for p in pstmo_pretrain().parameters()) == 2_656_036


def test_contract_refinement_and_joints():
    torch.manual_seed(0)
    model = PSTMO(frames=27, layers=2, channel=32, d_hid=64, n_joints=16, in_channels=3).eval()
    x = torch.randn(3, 27, 16, 3)
    with torch.no_grad():
        centre, seq = model.forward_with_sequence(x)
    assert centre.shape == (3, 1, 16, 3) and seq.shape == (3, 27, 16, 3) and model.receptive_field == 27
    model.train()
    model(x).sum().backward()  # trains
    with pytest.raises(ValueError, match=r"\(B, 27, 16, 3\)"):
        model(torch.randn(3, 27, 16, 2))
    with pytest.raises(ValueError, match="stride_num"):
        PSTMO(frames=45)
    m9 = PSTMO(frames=9, layers=1, channel=16, d_hid=32)  # stride_num [1, 3, 3]
    assert m9(torch.randn(2, 9, 17, 2)).shape == (2, 1, 17, 3)

    pre = PSTMOPretrain(frames=27, layers=2, channel=32, d_hid=64, n_joints=16, in_channels=3).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        rec = pre(x, generator=g)
        rec2 = pre(x, generator=torch.Generator().manual_seed(3))
    assert rec.shape == x.shape and torch.equal(rec, rec2)
    with pytest.raises(ValueError, match="same number"):
        pre(x, torch.stack([torch.arange(27) < 5, torch.arange(27) < 6, torch.arange(27) < 5]))


def test_draw_masks():
    tm, sm = draw_masks(243, 17, 0.8, 2, torch.Generator().manual_seed(0))
    tm2, sm2 = draw_masks(243, 17, 0.8, 2, torch.Generator().manual_seed(0))
    assert torch.equal(tm, tm2) and torch.equal(sm, sm2)
    assert int(tm.sum()) == int(243 * 0.8) == 194
    assert (sm.sum(1) == 2).all() and not sm[:, 16].any()
    with pytest.raises(ValueError):
        draw_masks(27, 17, 0.8, 17)


def test_load_official_inference_and_errors(checkpoints, tmp_path):
    sd = torch.load(checkpoints["pstmo"])
    # bare state dict without the prefix, and wrapped under "state_dict"
    torch.save({k.removeprefix("module."): v for k, v in sd.items()}, tmp_path / "bare.pth")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pth")
    for name in ("bare.pth", "wrapped.pth"):
        m = load_official(tmp_path / name, transformer_heads=8)
        assert (m.frames, len(m.transformer.layers), m.in_channels, m.n_joints) == (27, 3, 2, 17)
    with pytest.raises(ValueError, match=r"pstmo_pretrain\.pth.*stage-I"):
        load_official(checkpoints["pstmo_pretrain"], pretrain=False)
    with pytest.raises(ValueError, match=r"pstmo\.pth(.|\n)*shape mismatches: \['transformer"):
        load_official(checkpoints["pstmo"], d_hid=128)
    broken = dict(sd)
    broken.pop("module.fcn.1.bias")
    broken["module.extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"broken\.pth(.|\n)*head_centre\.1\.bias(.|\n)*extra\.weight"):
        load_official(tmp_path / "broken.pth")
    torch.save({"weights": [1, 2]}, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match=r"junk\.pth"):
        load_official(tmp_path / "junk.pth")
    torch.save({k: v for k, v in sd.items() if "Transformer." not in k}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial\.pth.*not a P-STMO"):
        load_official(tmp_path / "partial.pth")
    with pytest.raises(TypeError, match="bogus"):
        load_official(checkpoints["pstmo"], bogus=1)
