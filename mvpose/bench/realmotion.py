"""``mvpose bench realmotion``: the temporal stage on real motion seen by real cameras.

CMU motion capture (ASF/AMC takes and the BVH retargets of ``../shared/data/cmu_mocap``), mapped to
Human3.6M-17 and placed in the Human3.6M capture volume, is projected through the published
Human3.6M cameras (``h36m_cameras/h36m_cameras.json``, their own distortion model) and corrupted with
detector-like 2D noise (:func:`mvpose.data.sequences.add_detector_noise`: jitter, outliers,
left/right swaps). Training takes are seen by the cameras of S1, S5-S8; three other takes (walk, run,
jump) through those of S9 and S11 are the only ones scored.

1. **Lifting**: a small VideoPose3D (``configs/sequence/realmotion_lifter.yaml``) trained on the
   training takes' noisy 2D, per camera; P1 / P2 / MPJVE on the held-out takes.
   **Per-view lifting fused across views** (:class:`mvpose.pipeline.lift_fuse.LiftFuse`): the same
   lifter on each of the 4 views of a held-out take, the root-relative poses rotated into world axes
   and fused, placed by the translation that best reprojects onto the detections; absolute errors,
   beside the per-frame DLT of the same detections.
2. **Refinement of per-frame triangulation**: the 4 views' noisy 2D triangulated frame by frame
   (:func:`mvpose.geometry.triangulate`, DLT, through ``CameraRig.triangulate``), then refined by a
   small VideoPose3D on 3D inputs (``configs/sequence/realmotion_refiner.yaml``) trained on the
   triangulations of the training takes; the root trajectory is cleaned separately
   (:class:`mvpose.pipeline.refine.TemporalRefiner`). MPJPE and MPJVE (absolute, world) before and
   after; the targets are a >= 25 % lower MPJPE and a >= 3x lower MPJVE.

Both models train on CPU in a few minutes (one thread per process, as fastest on a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["run_benchmark", "format_report", "main", "TARGET_MPJPE_REDUCTION", "TARGET_MPJVE_RATIO"]

TARGET_MPJPE_REDUCTION = 0.25
TARGET_MPJVE_RATIO = 3.0
_REPO = Path(__file__).resolve().parents[2]


def _configs(data_root: Path, out_root: Path, seed: int, steps: int | None):
    from mvpose.engine.sequence_config import load_sequence_config

    def load(name: str):
        path = _REPO / "configs" / "sequence" / name
        cfg = load_sequence_config(
            path, [f"out_dir={out_root / path.stem}", f"train.seed={seed}", "log.tensorboard=false"]
        )
        m = cfg.data.motion

        def fix(p: str) -> str:  # the configs' ../shared/data paths, moved to data_root
            shared = "../shared/data"
            return str(data_root / Path(p).relative_to(shared)) if p.startswith(shared) else p

        m.train_motions = [fix(p) for p in m.train_motions]
        m.test_motions = [fix(p) for p in m.test_motions]
        m.rig = fix(m.rig) if isinstance(m.rig, str) else m.rig
        if steps:
            cfg.train.max_steps = steps
        return cfg

    return load("realmotion_lifter.yaml"), load("realmotion_refiner.yaml")


def run_benchmark(data_root: Path, out_root: Path, seed: int = 0, steps: int | None = None) -> dict:
    """Train both models and score them (module doc); returns the report."""
    from mvpose.engine.sequence import SequenceTrainer
    from mvpose.pipeline.refine import TemporalRefiner, score_refinement

    lifter_cfg, refiner_cfg = _configs(data_root, out_root, seed, steps)
    report: dict = {"data": str(data_root), "seed": seed}

    t0 = time.perf_counter()
    lifter = SequenceTrainer(lifter_cfg)
    m = lifter.train()
    o = m["overall"]
    report["lifting"] = {
        "MPJPE": o["MPJPE"],
        "P-MPJPE": o["P-MPJPE"],
        "MPJVE": o["MPJVE"],
        "per_action_MPJPE": {k: v["MPJPE"] for k, v in m["per_action"].items()},
        "train_clips": len(lifter.data.train),
        "test_clips": len(lifter.data.test),
        "test_frames": o["N"],
        "steps": lifter.step,
        "seconds": time.perf_counter() - t0,
    }

    report["lift_fuse"] = score_lift_fuse(lifter, lifter_cfg)

    t0 = time.perf_counter()
    refiner = SequenceTrainer(refiner_cfg)
    rm = refiner.train()
    report["refiner_root_relative"] = {"input": rm["input_baseline"], "refined": rm["overall"]}
    r = TemporalRefiner(refiner.model, refiner.task, fps=refiner_cfg.data.motion.fps)
    score = score_refinement(r, refiner.data.test)
    red, ratio = score["mpjpe_reduction"], score["mpjve_ratio"]
    report["triangulation_refinement"] = {
        **score,
        "targets": {"mpjpe_reduction": TARGET_MPJPE_REDUCTION, "mpjve_ratio": TARGET_MPJVE_RATIO},
        "targets_met": bool(red >= TARGET_MPJPE_REDUCTION and ratio >= TARGET_MPJVE_RATIO),
        "train_clips": len(refiner.data.train),
        "test_clips": len(refiner.data.test),
        "test_frames": score["frames"],
        "steps": refiner.step,
        "seconds": time.perf_counter() - t0,
    }
    return report


def score_lift_fuse(lifter, cfg) -> dict:
    """Per-view lifting + fusion on the lifter's held-out clips, grouped by (subject, take): absolute
    errors of the fused lifted pose as placed (trajectory per frame, and low-passed at 6 Hz), of the
    same corrected with the detections (:func:`~mvpose.pipeline.lift_fuse.correct_with_detections`),
    of the per-frame DLT of the same detections, and the root-relative error of each view's lifting
    alone (world axes)."""
    import numpy as np
    import torch

    from mvpose.data.sequences import image_coordinates
    from mvpose.engine.sequence_data import _rigs, fill_nan_time
    from mvpose.pipeline.lift_fuse import LiftFuse
    from mvpose.pipeline.refine import _frame_weighted

    m = cfg.data.motion
    rigs = dict(_rigs(m, m.test_subjects or m.train_subjects))
    task, model = lifter.task, lifter.model
    groups: dict[tuple[str, str], list] = {}
    for c in lifter.data.test:
        groups.setdefault(c.key[:2], []).append(c)

    def lift(x, fps):
        return task.predict(model, x, fps=fps)

    fusers = {
        "per_frame": LiftFuse(lift, task.root),
        "lowpass_6hz": LiftFuse(lift, task.root, trajectory_cutoff_hz=6.0),
    }
    preds = {f"{k}_{w}": [] for k in fusers for w in ("lifted", "corrected")}
    dlt, gts, single = [], [], []
    for (subject, _), clips in groups.items():
        rig = rigs[subject].to(dtype=torch.float64)
        by_name = {c.key[2]: c for c in clips}
        clips = [by_name[n] for n in rig.names]
        size = rig.image_size.double().numpy()
        px = np.stack([image_coordinates(c.inputs, *size[v]) for v, c in enumerate(clips)], 1)
        cam = torch.from_numpy(np.stack([c.target for c in clips], 1))
        gt = rig.camera_to_world(cam)[:, 0].numpy()
        gts.append(gt)
        lifted = fusers["per_frame"].lift_views(px, rig, fps=m.fps)  # the same lifts for both
        for k, f in fusers.items():
            out = f.fuse_views(lifted, px, rig, fps=m.fps)
            preds[f"{k}_lifted"].append(out.lifted_world_mm)
            preds[f"{k}_corrected"].append(out.points_world_mm)
        rel_gt = gt - gt[:, task.root : task.root + 1]
        single.append(np.linalg.norm(out.per_view_mm - rel_gt[:, None], axis=-1).mean((0, 2)))
        dlt.append(fill_nan_time(rig.triangulate(torch.from_numpy(px)).numpy()))
    return {
        **{k: _frame_weighted(v, gts, task.root) for k, v in preds.items()},
        "per_frame_dlt": _frame_weighted(dlt, gts, task.root),
        "single_view_MPJPE_rel": float(np.mean(single)),
        "takes": len(gts),
        "frames": int(sum(len(g) for g in gts)),
    }


def format_report(rep: dict) -> str:
    li, tr = rep["lifting"], rep["triangulation_refinement"]
    b, a, f = tr["before"], tr["after"], tr["filter_only"]
    lines = [
        "real motion (CMU) through the Human3.6M cameras, detector-like 2D noise; held-out takes only",
        f"lifting (VideoPose3D 27f, {li['steps']} steps, {li['seconds']:.0f} s): "
        f"P1 {li['MPJPE']:.1f} mm, P2 {li['P-MPJPE']:.1f} mm, MPJVE {li['MPJVE']:.2f} mm/frame "
        f"({li['test_frames']} frames)",
        *_lift_fuse_lines(rep.get("lift_fuse")),
        f"triangulation refinement (VideoPose3D 27f on 3D, {tr['steps']} steps, {tr['seconds']:.0f} s), "
        f"{tr['test_frames']} frames:",
        f"  {'':22s}{'MPJPE':>8s}{'root-rel':>10s}{'MPJVE':>8s}{'root':>8s}",
        f"  {'per-frame DLT':22s}{b['MPJPE']:8.1f}{b['MPJPE-rel']:10.1f}{b['MPJVE']:8.2f}{b['root']:8.1f}",
        f"  {'filter only (' + format(tr['filter_cutoff_hz'], 'g') + ' Hz)':22s}{f['MPJPE']:8.1f}"
        f"{f['MPJPE-rel']:10.1f}{f['MPJVE']:8.2f}{f['root']:8.1f}",
        f"  {'refined':22s}{a['MPJPE']:8.1f}{a['MPJPE-rel']:10.1f}{a['MPJVE']:8.2f}{a['root']:8.1f}",
        f"  MPJPE -{100 * tr['mpjpe_reduction']:.1f} % (target >= {100 * TARGET_MPJPE_REDUCTION:.0f} %), "
        f"MPJVE / {tr['mpjve_ratio']:.2f} (target >= {TARGET_MPJVE_RATIO:.0f}x): "
        f"{'met' if tr['targets_met'] else 'NOT met'}",
    ]
    return "\n".join(lines)


def _lift_fuse_lines(lf: dict | None) -> list[str]:
    if not lf:
        return []
    rows = [
        ("per-frame DLT", lf["per_frame_dlt"]),
        ("lift + fuse", lf["per_frame_lifted"]),
        ("  trajectory 6 Hz", lf["lowpass_6hz_lifted"]),
        ("  + 2D correction", lf["per_frame_corrected"]),
        ("  6 Hz + 2D correction", lf["lowpass_6hz_corrected"]),
    ]
    return [
        f"per-view lifting fused across the 4 views ({lf['frames']} frames; one view alone: "
        f"{lf['single_view_MPJPE_rel']:.1f} mm root-relative):",
        f"  {'':22s}{'MPJPE':>8s}{'root-rel':>10s}{'MPJVE':>8s}{'root':>8s}",
        *(
            f"  {n:22s}{e['MPJPE']:8.1f}{e['MPJPE-rel']:10.1f}{e['MPJVE']:8.2f}{e['root']:8.1f}"
            for n, e in rows
        ),
    ]


def main(args: argparse.Namespace) -> int:
    """``mvpose bench realmotion [--data DIR] [--out FILE] [--seed N]``: train, score, print, write JSON."""
    from mvpose.bench.triangulation import default_data_root

    data = Path(args.data) if getattr(args, "data", None) else None
    try:
        data = data or default_data_root()
    except FileNotFoundError as exc:
        print(f"bench realmotion: {exc}")
        return 2
    if not (data / "cmu_mocap").is_dir() or not (data / "h36m_cameras").is_dir():
        print(f"bench realmotion: {data} has no cmu_mocap/ or h36m_cameras/ folder")
        return 2
    out = Path(args.out) if getattr(args, "out", None) else None
    work = (out.parent if out else Path("runs")) / "bench_realmotion"
    rep = run_benchmark(
        data, work, seed=int(getattr(args, "seed", 0) or 0), steps=getattr(args, "steps", None)
    )
    print(format_report(rep))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rep, indent=2) + "\n")
        print(f"report: {out}")
    return 0
