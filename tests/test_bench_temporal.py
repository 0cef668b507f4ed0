"""``mvpose bench temporal``: smoke run on tiny configurations (reference == ours, report keys), the reference
reimplementations against the official fixtures, and the fused inference paths' weight caches."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from fixture_helpers import fixture_config, fixture_io, materialise_checkpoint

from mvpose.bench import temporal
from mvpose.bench._reference import FROM_OURS
from mvpose.bench._reference.poseformerv2 import dct_fft, idct_fft
from mvpose.models.temporal.poseformerv2 import PoseFormerV2, dct_matrix, idct_matrix
from mvpose.models.temporal.pstmo import PSTMO
from mvpose.models.temporal.srnet import SRNet
from mvpose.models.temporal.tgraphnet import TGraphNet
from mvpose.models.temporal.videopose3d import TemporalModel


def tiny_specs() -> dict[str, temporal.Spec]:
    S = temporal.Spec
    return {
        "videopose3d": S(
            "VP3D tiny", lambda: TemporalModel(filter_widths=(3, 3), channels=32), "videopose3d", 11
        ),
        "poseformerv2": S(
            "PF2 tiny",
            lambda: PoseFormerV2(num_frame=9, frames_kept=3, coeffs_kept=5, depth=2, embed_dim_ratio=8),
            "poseformerv2",
            9,
            published_mflops=1.0,
        ),
        "pstmo": S(
            "P-STMO tiny", lambda: PSTMO(frames=9, layers=2, channel=32, d_hid=64), "pstmo", 9
        ),  # [1, 3, 3]
        "srnet": S("SRNet tiny", lambda: SRNet(filter_widths=(3, 3), channels=64), "srnet", 11),
        "tgraphnet": S("TGraphNet tiny", lambda: TGraphNet(channels=(8, 8, 16, 16)), "tgraphnet", 81),
    }


def test_smoke_tiny_configs(tmp_path):
    out = tmp_path / "temporal.json"
    specs = tiny_specs()
    n_pstmo = sum(p.numel() for p in specs["pstmo"].build().parameters())
    specs["pstmo"] = temporal.Spec("P-STMO tiny", specs["pstmo"].build, "pstmo", 9, published_params=n_pstmo)
    report = temporal.run_benchmark(out, repeats=2, seed=3, batch=3, threads=1, specs=specs)
    assert set(report) == {"machine", "tolerance", "models"} and report["machine"]["threads"] == 1
    assert list(report["models"]) == list(specs)
    for name, e in report["models"].items():
        assert e["outputs_match"] and e["max_abs_diff"] <= 1e-4, name
        assert e["max_abs_out"] > 1e-2, name  # perturbed weights: the comparison is not between zeros
        assert len(e["time_ms"]["ours"]) == len(e["speedup_rounds"]) == 2
        assert e["speedup"] == pytest.approx(e["time_ms"]["reference_best"] / e["time_ms"]["ours_best"])
        assert min(e["speedup_rounds"]) <= e["speedup_median_round"] <= max(e["speedup_rounds"])
        assert e["params"]["ours"] == sum(p.numel() for p in specs[name].build().parameters())
        f = e["flops_per_sample"]
        assert f["total"] > 0 and f["gmac"] == f["total"] / 2e9 and f["reference_total"] > 0
        rate = report["machine"]["matmul_gflops"] * 1e9
        assert e["floor_ms"] == pytest.approx(f["total"] * 3 / rate * 1e3)  # batch 3
        assert e["max_speedup_at_floor"] == pytest.approx(e["time_ms"]["reference_best"] / e["floor_ms"])
    assert report["models"]["pstmo"]["params"]["match"] and "meets_target" in report["models"]["pstmo"]
    # the CPU flash-attention kernel is counted (2 x 2 L^2 D per layer): 2 + 2 layers at 9 tokens, 1 at 3
    by_op = report["models"]["pstmo"]["flops_per_sample"]["by_op"]
    assert by_op["aten._scaled_dot_product_flash_attention_for_cpu"] == 4 * 32 * (4 * 9 * 9 + 3 * 3)
    assert (
        json.loads(out.read_text())["models"]["srnet"]["max_abs_diff"]
        == report["models"]["srnet"]["max_abs_diff"]
    )
    text = temporal.format_report(report)
    assert report["models"]["poseformerv2"]["flops_per_sample"]["published_convention"]["linear"] > 0
    for key in (
        "PF2 tiny",
        "TGraphNet tiny",
        "speed-up",
        "MFLOP/sample",
        "target 1.5x",
        "LayerNorm",
        "floor ms",
    ):
        assert key in text


def test_main_and_unknown_model(monkeypatch, capsys):
    monkeypatch.setattr(temporal, "default_specs", tiny_specs)
    args = argparse.Namespace(out=None, repeats=1, seed=0, data=None, models=["videopose3d"])
    assert temporal.main(args) == 0
    assert "VP3D tiny" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown temporal model"):
        temporal.run_benchmark(models=["nope"], specs=tiny_specs())


def test_flop_count_poseformerv2_published_convention():
    """The published 1,054.8 MFLOPs of PoseFormerV2 243/27/27 = 2 x its Linear multiply-adds + 2 per LayerNorm
    element, attention left out (mvpose.bench.temporal's doc); FlopCounterMode counts attention too."""
    from mvpose.models.temporal.poseformerv2 import poseformerv2

    model = poseformerv2("243/27/27").eval()
    x = torch.zeros(1, 243, 17, 2)
    layers = temporal.layer_flops(model, x)
    assert layers["linear"] == 1_054_004_352 and round(layers["total"] / 1e5) / 10 == 1054.8
    flops = temporal.count_flops(model, x)
    assert flops["by_op"]["aten._scaled_dot_product_flash_attention_for_cpu"] == 29_376_000
    assert flops["total"] == pytest.approx(1_090.23e6, rel=1e-6)


def test_dct_by_fft_equals_matrix():
    x = torch.randn(3, 5, 27, dtype=torch.float64)
    torch.testing.assert_close(dct_fft(x), x @ dct_matrix(27).T)
    torch.testing.assert_close(idct_fft(x), x @ idct_matrix(27).T)
    y = torch.randn(4, 8, dtype=torch.float64)  # even length
    torch.testing.assert_close(idct_fft(dct_fft(y)), y)


def test_inference_cache_follows_weight_changes():
    """The fused paths cache folded weights: load_state_dict and in-place updates must invalidate them."""
    torch.manual_seed(0)
    a, b = (temporal.perturb(PSTMO(frames=9, layers=1, channel=16, d_hid=32, dropout=0.0), s) for s in (1, 2))
    x = torch.randn(2, 9, 17, 2)
    with torch.no_grad():
        y_a = a(x)
        a.load_state_dict(b.state_dict())
        torch.testing.assert_close(a(x), b(x))
        assert not torch.allclose(a(x), y_a)
        a.encoder.bn_1.running_var.mul_(2)
        b.encoder.bn_1.running_var.mul_(2)
        a.transformer.layers[0].norm1.a_2.add_(0.5)
        b.transformer.layers[0].norm1.a_2.add_(0.5)
        torch.testing.assert_close(a(x), b(x))
    a.train(), b.train()  # training mode: batch statistics, no cache (FCBlock's dropout: same seeds)
    torch.manual_seed(5)
    y_a = a(x)
    torch.manual_seed(5)
    torch.testing.assert_close(y_a, b(x))


def _perturbed(model):
    return temporal.perturb(model, 7)


@pytest.mark.parametrize("name", list(tiny_specs()))
def test_fused_inference_equals_autograd_path(name):
    """Eval mode with autograd (plain layers) and without (fused, cached) give the same outputs."""
    spec = tiny_specs()[name]
    model = _perturbed(spec.build())
    x = torch.randn(2, spec.frames, 17, 2)
    y_grad = model(x)
    with torch.inference_mode():
        y_fused = model(x)
        y_ref = FROM_OURS[spec.reference](model)(x)
    torch.testing.assert_close(y_fused, y_grad.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y_ref, y_fused, rtol=1e-5, atol=1e-5)


# the official fixtures: (load_official kwargs, input key, output key)
FIXTURES = {
    "videopose3d": ({}, "input_2d_full", "output_full"),
    "poseformerv2": ({"number_of_frames": 27}, "input_2d", "output"),
    "pstmo": ({}, "input_2d", "output_centre"),
    "srnet": ({}, "input_2d_full", "output_full"),
    "tgraphnet": ({}, "input_2d", "output"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FIXTURES))
def test_reference_reimplementation_matches_official_fixture(name, tmp_path):
    """The plain reference forward passes reproduce the official implementations' outputs (the models'
    own parity tests do the same for mvpose's forward)."""
    import importlib

    fixture_config(name)  # skips when the fixtures are absent
    kwargs, key_in, key_out = FIXTURES[name]
    model = importlib.import_module(f"mvpose.models.temporal.{name}").load_official(
        materialise_checkpoint(name, tmp_path), **kwargs
    )
    io = fixture_io(name)
    with torch.no_grad():
        y = FROM_OURS[name](model)(torch.from_numpy(io[key_in]))
    np.testing.assert_allclose(y.numpy(), io[key_out], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_one_window_shortcut_equals_dilated(causal):
    """Inference on exactly one receptive field computes the strided twin: same outputs as the dilated
    network (autograd path) for VideoPose3D and SRNet, causal or not."""
    for model in (
        TemporalModel(filter_widths=(3, 3, 3), channels=32, causal=causal),
        SRNet(filter_widths=(3, 3), channels=64, causal=causal),
    ):
        model = _perturbed(model)
        x = torch.randn(3, model.receptive_field, 17, 2)
        y_dilated = model(x).detach()
        with torch.inference_mode():
            y = model(x)
        assert y.shape == (3, 1, 17, 3)
        torch.testing.assert_close(y, y_dilated, rtol=1e-5, atol=1e-5)
