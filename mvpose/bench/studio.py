"""``mvpose bench studio``: frames per second of studio triangulation + temporal filter, against a
Pose2Sim-style loop run in the same process.

Scene: 4 cameras on a ring (``mvpose.calib.ring_rig``), the example's walking subject (17 joints),
2 px detection noise, confidences uniform in [0.5, 1], 5 % of the keypoints missing; with and
without lens distortion.

* **ours**: :func:`mvpose.pipeline.triangulate.triangulate_frames` (undistortion, the batched
  weighted DLT, reprojection errors of every detection; ``dlt`` and ``robust``) on the whole take,
  then a zero-phase Butterworth (4th order, 6 Hz at 60 fps: ``mvpose.filters.butterworth`` when
  present, else scipy's ``sosfiltfilt``).
* **reference**: the per-frame, per-joint loop of Pose2Sim's triangulation written plainly:
  keypoints below the likelihood threshold dropped, ``cv2.undistortPoints`` per camera and frame
  when the lens distorts, the confidence-weighted DLT by ``numpy.linalg.svd`` of one ``(2 V, 4)``
  matrix per joint, the mean reprojection error over the cameras, and while it exceeds 15 px,
  the camera subsets with one (then two) cameras fewer, keeping the best; then the same filter.

Timings: best of ``repeats`` interleaved rounds (each contender sees the same machine load); ours
single-threaded (``torch.set_num_threads(1)``: these problems are small per operation) and with the
default thread count. Frames per second count whole frames (4 views x 17 joints).
"""

from __future__ import annotations

import itertools
import json
import math
import platform
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

__all__ = ["main", "run_benchmark", "format_report", "reference_pose2sim", "ours"]

FPS = 60.0
CUTOFF_HZ, ORDER = 6.0, 4
LIKELIHOOD_THRESHOLD = 0.3
ERROR_THRESHOLD_PX = 15.0


def _scene(num_frames: int, distortion: bool, seed: int):
    """Rig, detections ``(V, T, J, 3)`` (x px, y px, confidence; NaN = missing), GT ``(T, J, 3)``."""
    from mvpose.calib import ring_rig
    from mvpose.pipeline.example import walking_person

    rig = ring_rig(num_cameras=4)
    if not distortion:
        rig = replace(rig, dist=None)
    gt = walking_person(num_frames)  # (T, 17, 3) mm, 30 fps motion (the speed does not matter here)
    rng = np.random.default_rng(seed)
    px = rig.project(torch.from_numpy(gt)).numpy().transpose(1, 0, 2, 3)  # (V, T, J, 2)
    px = px + rng.normal(0.0, 2.0, px.shape)
    conf = rng.uniform(0.5, 1.0, px.shape[:-1])
    kp = np.concatenate([px, conf[..., None]], -1)
    kp[rng.random(px.shape[:-1]) < 0.05] = np.nan
    return rig.to(dtype=torch.float64), kp, gt


def _filter(points: np.ndarray) -> np.ndarray:
    """Butterworth low-pass of ``(T, J, 3)`` along time (mvpose.filters if present, else scipy)."""
    try:
        from mvpose.filters import butterworth
    except ImportError:
        from mvpose.pipeline.triangulate import _butterworth_scipy

        return _butterworth_scipy(points, FPS, CUTOFF_HZ, ORDER)
    return butterworth(points, FPS, cutoff_hz=CUTOFF_HZ, order=ORDER)


def ours(rig, kp: np.ndarray, method: str = "dlt") -> np.ndarray:
    """Triangulation engine of ``mvpose triangulate`` / ``infer`` on the whole take, then the filter."""
    from mvpose.pipeline.triangulate import triangulate_frames

    X, err, used = triangulate_frames(
        rig, kp, method=method, min_confidence=LIKELIHOOD_THRESHOLD, threshold_px=ERROR_THRESHOLD_PX
    )
    return _filter(X)


def _weighted_dlt(P: np.ndarray, xy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One point: ``P (n, 3, 4)``, ``xy (n, 2)``, ``w (n,)`` -> ``(3,)`` by SVD of the stacked rows."""
    A = np.concatenate(
        [(P[:, 0] - xy[:, :1] * P[:, 2]) * w[:, None], (P[:, 1] - xy[:, 1:] * P[:, 2]) * w[:, None]]
    )
    _, _, vt = np.linalg.svd(A)
    q = vt[-1]
    return q[:3] / q[3]


def _mean_error(P: np.ndarray, xy: np.ndarray, X: np.ndarray) -> float:
    x = P @ np.append(X, 1.0)
    return float(np.mean(np.hypot(x[:, 0] / x[:, 2] - xy[:, 0], x[:, 1] / x[:, 2] - xy[:, 1])))


def reference_pose2sim(rig, kp: np.ndarray, filter_output: bool = True) -> np.ndarray:
    """The Pose2Sim-style loop of the module docstring: ``kp (V, T, J, 3)`` -> ``(T, J, 3)`` mm."""
    import cv2

    V, T, J, _ = kp.shape
    P = rig.projection_matrices().numpy()
    K, dist = rig.K.numpy(), rig.dist.numpy()
    distorted = bool(np.any(dist != 0))
    out = np.full((T, J, 3), np.nan)
    for t in range(T):
        xy = kp[:, t, :, :2]
        if distorted:  # per camera, as the per-frame code undistorts each camera's keypoints
            xy = np.stack(
                [
                    cv2.undistortPoints(xy[v].reshape(-1, 1, 2), K[v], dist[v], P=K[v]).reshape(-1, 2)
                    for v in range(V)
                ]
            )
        for j in range(J):
            like = np.nan_to_num(kp[:, t, j, 2])
            cams = [v for v in range(V) if like[v] >= LIKELIHOOD_THRESHOLD]
            if len(cams) < 2:
                continue
            X = _weighted_dlt(P[cams], xy[cams, j], like[cams])
            err = _mean_error(P[cams], xy[cams, j], X)
            drop = 1
            while err > ERROR_THRESHOLD_PX and len(cams) - drop >= 2:
                best = (err, X)
                for sub in itertools.combinations(cams, len(cams) - drop):
                    s = list(sub)
                    Xs = _weighted_dlt(P[s], xy[s, j], like[s])
                    es = _mean_error(P[s], xy[s, j], Xs)
                    if es < best[0]:
                        best = (es, Xs)
                err, X = best
                drop += 1
            out[t, j] = X
    return _filter(out) if filter_output else out


def _best_time(fn, min_time: float) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / n


def run_benchmark(
    out: Path | None = None,
    repeats: int = 5,
    seed: int = 0,
    frames: int = 6000,
    reference_frames: int = 300,
    min_time: float = 0.3,
) -> dict:
    """Time ours against the reference (module docstring); write JSON to ``out`` when given."""
    default_threads = torch.get_num_threads()
    report = {
        "benchmark": "studio",
        "machine": {
            "platform": platform.platform(),
            "torch_threads": default_threads,
            "torch": torch.__version__,
        },
        "frames": frames,
        "reference_frames": reference_frames,
        "views": 4,
        "joints": 17,
        "filter": f"butterworth order {ORDER}, {CUTOFF_HZ:g} Hz at {FPS:g} fps",
        "cases": {},
    }
    for distortion in (False, True):
        rig, kp, gt = _scene(frames, distortion, seed)
        kp_ref = kp[:, :reference_frames]
        case = {}
        # agreement on the same frames (before the filter)
        from mvpose.pipeline.triangulate import triangulate_frames

        X_dlt = triangulate_frames(rig, kp_ref, method="dlt", min_confidence=LIKELIHOOD_THRESHOLD)[0]
        X_ref = reference_pose2sim(rig, kp_ref, filter_output=False)
        ok = np.isfinite(X_dlt).all(-1) & np.isfinite(X_ref).all(-1)
        case["dlt_vs_reference_median_mm"] = float(np.median(np.linalg.norm(X_dlt - X_ref, axis=-1)[ok]))
        case["reference_mpjpe_mm"] = float(np.nanmean(np.linalg.norm(X_ref - gt[:reference_frames], axis=-1)))
        case["dlt_mpjpe_mm"] = float(np.nanmean(np.linalg.norm(X_dlt - gt[:reference_frames], axis=-1)))
        contenders = {
            "reference": (partial(reference_pose2sim, rig, kp_ref), reference_frames, None),
            "dlt_1thread": (partial(ours, rig, kp, "dlt"), frames, 1),
            "dlt": (partial(ours, rig, kp, "dlt"), frames, default_threads),
            "robust_1thread": (partial(ours, rig, kp, "robust"), frames, 1),
        }
        best = dict.fromkeys(contenders, math.inf)
        for fn, _, threads in contenders.values():  # warm-up
            torch.set_num_threads(threads or default_threads)
            fn()
        for _ in range(max(1, repeats)):
            for name, (fn, n, threads) in contenders.items():
                torch.set_num_threads(threads or default_threads)
                try:
                    best[name] = min(best[name], _best_time(fn, min_time) / n)
                finally:
                    torch.set_num_threads(default_threads)
        for name, t in best.items():
            case[f"{name}_frames_per_s"] = 1.0 / t
        for name in contenders:
            if name != "reference":
                case[f"{name}_vs_reference"] = best["reference"] / best[name]
        report["cases"]["distortion" if distortion else "pinhole"] = case
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict) -> str:
    lines = [
        f"Studio triangulation + filter: {report['views']} cameras x {report['joints']} joints, "
        f"{report['frames']} frames (reference: {report['reference_frames']}); {report['filter']}; "
        f"default torch threads {report['machine']['torch_threads']}",
        f"  {'case':<11} {'contender':<16} {'frames/s':>12} {'x reference':>12}",
    ]
    for case, c in report["cases"].items():
        for name in ("reference", "dlt_1thread", "dlt", "robust_1thread"):
            ratio = c.get(f"{name}_vs_reference", 1.0)
            lines.append(f"  {case:<11} {name:<16} {c[f'{name}_frames_per_s']:12,.0f} {ratio:12.1f}")
        lines.append(
            f"  {case:<11} DLT vs reference: median {c['dlt_vs_reference_median_mm']:.2e} mm apart; MPJPE "
            f"{c['dlt_mpjpe_mm']:.1f} mm (ours), {c['reference_mpjpe_mm']:.1f} mm (reference)"
        )
    return "\n".join(lines)


def main(args) -> int:
    """``mvpose bench studio`` (args: ``out``, ``repeats``, ``seed``)."""
    report = run_benchmark(
        out=getattr(args, "out", None), repeats=getattr(args, "repeats", 5), seed=getattr(args, "seed", 0)
    )
    print(format_report(report))
    if getattr(args, "out", None):
        print(f"JSON written to {args.out}")
    return 0
