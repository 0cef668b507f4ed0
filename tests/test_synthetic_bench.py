"""``mvpose bench data`` runs end to end (a tiny budget: a smoke test, not a measurement)."""

from __future__ import annotations

import json

from mvpose.bench.data import format_report, run_benchmark


def test_bench_data_smoke(tmp_path):
    rep = run_benchmark(out=tmp_path / "bench.json", num_views=2, image_size=128, seconds=0.05, num_scenes=1)
    for k in ("render_views_per_s", "getitem_samples_per_s", "reference_views_per_s", "speedup_vs_reference"):
        assert rep[k] > 0
    assert rep["silhouette_iou_mean"] > 0.9
    assert json.loads((tmp_path / "bench.json").read_text())["num_views"] == 2
    text = format_report(rep)
    assert "views/s" in text and "speed-up" in text
