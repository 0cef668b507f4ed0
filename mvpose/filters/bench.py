"""Throughput of the temporal filters (frames/s), each timed against a reference in the same run.

``python -m mvpose.filters.bench [--frames 10000] [--joints 17] [--repeats 5] [--out f.json]``
(``main(args)`` also fits ``mvpose bench``). Rows, best of ``repeats`` interleaved rounds:

* butterworth / savgol: ours (NaN-aware, gap runs) vs scipy on the whole NaN-free array (the
  floor: the ratio is our overhead);
* oneeuro: ours (vectorised over tracks) vs the paper's scalar loop, one track at a time
  (timed on ``frames // 20`` frames and scaled);
* fill_gaps (cubic, 1% of joint-frames in 3-frame gaps): ours vs one scipy spline per joint;
* studio: 4-camera DLT triangulation of the same take (``CameraRig.triangulate`` in 256-frame
  chunks, as ``mvpose triangulate``) plus each filter.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from scipy import interpolate, signal

from . import butterworth, fill_gaps, one_euro, savgol

__all__ = ["run_benchmark", "format_report", "main"]


def _motion(T: int, J: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None] / 60.0
    f = rng.uniform(0.2, 1.5, (1, J, 3))
    x = 300.0 * np.sin(2 * math.pi * f * t + rng.uniform(0, 6, (1, J, 3))) + [0.0, 0.0, 1000.0]
    return x + rng.normal(0, 5.0, x.shape)


def _one_euro_scalar(x: np.ndarray, fps: float, min_cutoff=1.0, beta=0.05, d_cutoff=1.0) -> np.ndarray:
    """The paper's pseudo-code, one scalar track at a time (the reference)."""

    def alpha(c):
        return 1.0 / (1.0 + fps / (2 * math.pi * c))

    out = np.empty_like(x)
    ad = alpha(d_cutoff)
    for c in range(x.shape[1]):
        xh, dh = x[0, c], 0.0
        out[0, c] = xh
        for i in range(1, x.shape[0]):
            xi = x[i, c]
            dh = ad * (xi - xh) * fps + (1 - ad) * dh
            a = alpha(min_cutoff + beta * abs(dh))
            xh = a * xi + (1 - a) * xh
            out[i, c] = xh
    return out


def _fill_per_joint(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    t = np.arange(x.shape[0])
    for j in range(x.shape[1]):
        miss = np.isnan(x[:, j, 0])
        if miss.any():
            out[miss, j] = interpolate.CubicSpline(t[~miss], x[~miss, j], axis=0)(t[miss])
    return out


def _best(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_benchmark(frames: int = 10_000, joints: int = 17, repeats: int = 5, seed: int = 0, out=None) -> dict:
    """Time every row (best of ``repeats`` interleaved rounds); returns frames/s and ratios."""
    fps = 60.0
    x = _motion(frames, joints, seed)
    flat = x.reshape(frames, -1)
    sos = signal.butter(2, 6.0, fs=fps, output="sos")
    holes = x.copy()
    rng = np.random.default_rng(seed + 1)
    for j, s in zip(rng.integers(0, joints, frames // 300), rng.integers(1, frames - 4, frames // 300)):
        holes[s : s + 3, j] = np.nan
    short = max(frames // 20, 10)
    rows = {
        "butterworth": (
            lambda: butterworth(x, fps, 6.0, 4),
            lambda: signal.sosfiltfilt(sos, flat, axis=0),
            1,
        ),
        "savgol": (lambda: savgol(x, 11, 3), lambda: signal.savgol_filter(flat, 11, 3, axis=0), 1),
        "oneeuro": (lambda: one_euro(x, fps), lambda: _one_euro_scalar(flat[:short], fps), frames / short),
        "fill_gaps": (lambda: fill_gaps(holes, 10), lambda: _fill_per_joint(holes), 1),
    }
    times = {name: [math.inf, math.inf] for name in rows}
    for _ in range(repeats):  # interleaved rounds
        for name, (ours, ref, scale) in rows.items():
            times[name][0] = min(times[name][0], _best(ours, 1))
            times[name][1] = min(times[name][1], _best(ref, 1) * scale)
    report = {
        "frames": frames,
        "joints": joints,
        "repeats": repeats,
        "rows": {
            n: {
                "ours_fps": frames / t[0],
                "reference_fps": frames / t[1],
                "speedup": t[1] / t[0],
                "reference": {
                    "butterworth": "scipy sosfiltfilt, whole array",
                    "savgol": "scipy savgol_filter, whole array",
                    "oneeuro": "paper's scalar loop per track",
                    "fill_gaps": "one CubicSpline per joint",
                }[n],
            }
            for n, t in times.items()
        },
    }
    report["studio"] = _studio(x, repeats, report)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1))
    return report


def _studio(x: np.ndarray, repeats: int, report: dict) -> dict:
    """4-camera DLT of the same take, alone and plus each filter (frames/s)."""
    import torch

    from mvpose.calib import ring_rig

    rig = ring_rig(num_cameras=4).to(dtype=torch.float64)
    X = torch.from_numpy(x)
    px = rig.project(X)  # (T, 4, J, 2)
    w = torch.ones(px.shape[:-1], dtype=torch.float64)

    def triangulate():  # in 256-frame chunks, as mvpose triangulate runs it
        return torch.cat(
            [rig.triangulate(px[s : s + 256], w[s : s + 256], method="dlt") for s in range(0, len(px), 256)]
        )

    with torch.inference_mode():
        t_tri = _best(triangulate, repeats)
        err = (triangulate() - X).norm(dim=-1).max().item()
    T = x.shape[0]
    out = {"triangulate_dlt_fps": T / t_tri, "triangulate_max_error_mm": err}
    for name, row in report["rows"].items():
        if name != "fill_gaps":
            out[f"dlt+{name}_fps"] = 1.0 / (t_tri / T + 1.0 / row["ours_fps"])
    return out


def format_report(report: dict) -> str:
    lines = [
        f"filters, {report['frames']} frames x {report['joints']} joints, best of {report['repeats']}:",
        f"{'filter':<12} {'ours fps':>12} {'ref fps':>12} {'speedup':>8}  reference",
    ]
    for name, r in report["rows"].items():
        fig = f"{r['ours_fps']:>12,.0f} {r['reference_fps']:>12,.0f} {r['speedup']:>7.2f}x"
        lines.append(f"{name:<12} {fig}  {r['reference']}")
    s = report["studio"]
    lines.append(f"studio (4 cameras, DLT): triangulation alone {s['triangulate_dlt_fps']:,.0f} fps")
    lines += [f"  {k[:-4]}: {v:,.0f} fps" for k, v in s.items() if k.startswith("dlt+")]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``mvpose bench``-style entry: uses ``args.repeats``, ``args.seed``, ``args.out`` (and
    ``frames`` / ``joints`` when present)."""
    report = run_benchmark(
        frames=getattr(args, "frames", 10_000) or 10_000,
        joints=getattr(args, "joints", 17) or 17,
        repeats=args.repeats,
        seed=args.seed,
        out=args.out,
    )
    print(format_report(report))
    if args.out:
        print(f"JSON written to {args.out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--joints", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    raise SystemExit(main(parser.parse_args()))
