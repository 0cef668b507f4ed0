"""``mvpose bench models`` smoke run at tiny sizes: the report's keys, and the dense reference agreeing."""

from __future__ import annotations

import json

from mvpose.bench.models import format_report, run_benchmark


def test_bench_models_smoke(tmp_path):
    out = tmp_path / "report.json"
    report = run_benchmark(
        out=out,
        repeats=1,
        paper=False,
        unproject={"B": 2, "V": 2, "C": 4, "hm": 24, "n": 16},
        context={"n": 8},
        demo={"num_layers": 18, "image": 128, "views": 2, "volume": 32},
    )
    assert set(report) == {"machine", "unprojection", "context", "forward"}
    for part in ("unprojection", "context"):
        assert {"speedup", "memory_ratio", "config"} <= set(report[part])
    u, c = report["unprojection"], report["context"]
    for r in (u["ours"], u["reference"], c["ours"], c["dense"]):
        assert r["seconds"] > 0 and r["peak_bytes"] >= 0
    assert u["checksum_rel_diff"] < 1e-5
    assert c["max_abs_diff"] < 1e-4 * max(1.0, c["max_abs_out"])
    assert set(report["forward"]) == {"demo"} and report["forward"]["demo"]["seconds_per_frame"] > 0
    assert json.loads(out.read_text())["context"]["max_abs_diff"] == c["max_abs_diff"]
    text = format_report(report)
    for key in ("(a)", "(b)", "(c)", "speed-up", "memory ratio", "s/frame"):
        assert key in text
