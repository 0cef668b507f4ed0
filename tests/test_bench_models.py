"""``mvpose bench models`` smoke run at tiny sizes: the report's keys, and ours agreeing with the
reference formulations (unprojection checksum, dense ContextPose masks with random and peaked attention)."""

from __future__ import annotations

import json

import torch

from mvpose.bench.models import format_report, peaked_attention_logits, run_benchmark


def test_bench_models_smoke(tmp_path):
    out = tmp_path / "report.json"
    report = run_benchmark(
        out=out,
        repeats=1,
        paper=False,
        rounds=1,
        unproject={"B": 2, "V": 2, "C": 4, "hm": 24, "n": 16},
        context={"n": 8},
        demo={"num_layers": 18, "image": 128, "views": 2, "volume": 32},
    )
    assert set(report) == {
        "machine",
        "unprojection",
        "context",
        "context_peaked",
        "context_fallback",
        "forward",
    }
    for part in ("unprojection", "context", "context_peaked"):
        assert {"speedup", "memory_ratio", "config", "round_speedups"} <= set(report[part])
        assert len(report[part]["round_speedups"]) == 1
    u, c, p = report["unprojection"], report["context"], report["context_peaked"]
    for r in (u["ours"], u["reference"], c["ours"], c["dense"], p["ours"], p["dense"]):
        assert r["seconds"] > 0 and r["peak_bytes"] >= 0
    assert u["checksum_rel_diff"] < 1e-5
    for r in (c, p):
        assert r["max_abs_diff"] < 1e-4 * max(1.0, r["max_abs_out"])
        assert (
            set(r["exact_rows"]) == {"limb_rows", "whole_limbs", "of"} and r["exact_rows"]["of"] == 16 * 512
        )
    assert p["config"]["attention"].startswith("peaked")
    sweep = report["context_fallback"]
    assert [r["peak"] for r in sweep] == [1.0, 4.0, 16.0, 64.0]
    assert sweep[-1]["max_attention"] > sweep[0]["max_attention"]  # sharper with the peak
    demo = report["forward"]["demo"]
    assert set(report["forward"]) == {"demo"} and demo["seconds_per_frame"] > 0
    assert demo["seconds_per_frame_channels_last"] > 0 and demo["channels_last_max_abs_diff_mm"] < 0.1
    assert json.loads(out.read_text())["context"]["max_abs_diff"] == c["max_abs_diff"]
    text = format_report(report)
    for key in (
        "(a)",
        "(b)",
        "(c)",
        "speed-up",
        "memory ratio",
        "s/frame",
        "peaked",
        "exact rows",
        "channels-last",
    ):
        assert key in text


def test_peaked_attention_logits_peak_at_the_joints():
    logits = peaked_attention_logits(16, 1.0)
    assert logits.shape == (17, 16**3)
    a = torch.softmax(logits, -1)
    # the GA target's width: sigma = 2 spacings; the pelvis (6) sits near the grid centre
    spacing = 4 * 2500.0 / 63
    centre = torch.tensor([31.0, -20.0, 15.0]) + 1250.0
    idx = torch.stack(torch.unravel_index(a[6].argmax(), (16, 16, 16))).float() * spacing
    assert float((idx - centre).abs().max()) <= spacing / 2 + 1e-3
    assert float(a[6].max()) < 0.05 < float(torch.softmax(16 * logits[6], -1).max())
