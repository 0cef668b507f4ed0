"""``mvpose bench studio``: our batched triangulation + filter against the Pose2Sim-style loop."""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from mvpose.bench import studio


def test_reference_loop_matches_batched_dlt():
    for distortion in (False, True):
        rig, kp, gt = studio._scene(40, distortion, seed=1)
        from mvpose.pipeline.triangulate import triangulate_frames

        ours = triangulate_frames(rig, kp, method="dlt", min_confidence=studio.LIKELIHOOD_THRESHOLD)[0]
        ref = studio.reference_pose2sim(rig, kp, filter_output=False)
        ok = np.isfinite(ours).all(-1)
        assert (ok == np.isfinite(ref).all(-1)).all()
        np.testing.assert_allclose(ours[ok], ref[ok], atol=1e-6)  # mm; no camera exceeds 15 px here
        assert np.nanmean(np.linalg.norm(ours - gt, axis=-1)) < 15.0
    # a gross outlier: the reference drops the camera, as our robust method does
    kp[1, 5, 3, :2] += 200.0
    ref = studio.reference_pose2sim(rig, kp, filter_output=False)
    from mvpose.pipeline.triangulate import triangulate_frames

    rob = triangulate_frames(
        rig, kp, method="robust", min_confidence=studio.LIKELIHOOD_THRESHOLD, threshold_px=15
    )[0]
    assert np.linalg.norm(ref[5, 3] - gt[5, 3]) < 20.0 and np.linalg.norm(rob[5, 3] - gt[5, 3]) < 20.0


def test_bench_main(tmp_path, capsys, monkeypatch):
    n = torch.get_num_threads()
    full = studio.run_benchmark
    monkeypatch.setattr(
        studio,
        "run_benchmark",
        lambda **kw: full(**kw, frames=300, reference_frames=30, min_time=0.05),
    )
    ns = argparse.Namespace(out=tmp_path / "s.json", repeats=1, seed=0, data=None)
    assert studio.main(ns) == 0
    assert torch.get_num_threads() == n  # restored
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["benchmark"] == "studio" and report["frames"] == 300
    for case in ("pinhole", "distortion"):
        c = report["cases"][case]
        assert c["dlt_vs_reference_median_mm"] < 1e-6
        # the batched path is far faster than the per-joint loop, whatever the machine load
        assert c["dlt_1thread_vs_reference"] > 5.0 and c["robust_1thread_vs_reference"] > 3.0
    text = capsys.readouterr().out
    assert "reference" in text and "dlt_1thread" in text and "JSON written" in text
