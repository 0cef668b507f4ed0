"""``mvpose bench triangulation``: speed and accuracy of the triangulators, against references
run in the same process.

Speed: ``triangulate(method="dlt")`` on B=64 frames x 17 joints x 4 views against a reference
that solves one SVD per point in Python loops over samples and joints (the structure of
learnable triangulation's ``triangulate_batch_of_points``, written here in float64), plus the
robust and refine methods. The reference and the methods are timed in interleaved rounds, and
the best round of each counts.

Accuracy: CMU motion capture (ASF/AMC, mapped to Human3.6M-17) placed in the Human3.6M capture
volume and projected through the real Human3.6M cameras (their own distortion model), with
Gaussian pixel noise (sigma = 2 and 5 px), with and without 5% outlier detections (50-150 px
off). Beside each error stands the Cramér-Rao floor of the noise level: for every point, the
linearised covariance ``sigma^2 (J^T J)^-1`` of the full camera model at the true point, whose
expected error norm is estimated by sampling (fixed seed). The robust methods run with
``threshold_px = 4 sigma`` (the noise level is known here; the library default of 15 px is for
real detections). Two oracle rows show what is achievable with the outliers known: DLT and
refinement on the true inliers only.
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mvpose.geometry import CameraRig, triangulate

__all__ = ["run_benchmark", "format_report", "reference_loop_dlt", "default_data_root"]

CMU_TAKES = (
    ("07_05-walk.amc", "07-walk.asf"),
    ("09_06-run.amc", "09-run.asf"),
    ("16_24.amc", "16.asf"),
    ("131_04-dance.amc", "131-dance.asf"),
)
H36M_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")


def default_data_root() -> Path:
    """``../shared/data`` next to the working directory or next to the repository."""
    repo = Path(__file__).resolve().parents[2]
    for cand in (
        Path.cwd() / ".." / "shared" / "data",
        repo.parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
    ):
        if cand.is_dir():
            return cand.resolve()
    raise FileNotFoundError(
        "shared data folder not found (looked for ../shared/data next to the working directory and the "
        "repository); pass --data DIR"
    )


def reference_loop_dlt(points_2d: torch.Tensor, proj: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-point SVD in Python loops.

    ``points_2d (B, V, J, 2)``, ``proj (V, 3, 4)``, ``weights (B, V, J)`` -> ``(B, J, 3)``."""
    B, V, J, _ = points_2d.shape
    out = torch.empty(B, J, 3, dtype=torch.float64)
    for b in range(B):
        for j in range(J):
            uv = points_2d[b, :, j]  # (V, 2)
            A = proj[:, 2:3, :].expand(V, 2, 4) * uv[:, :, None] - proj[:, :2, :]
            A = A * weights[b, :, j].view(V, 1, 1)
            _, _, vh = torch.linalg.svd(A.reshape(-1, 4))
            x = vh[-1]
            out[b, j] = x[:3] / x[3]
    return out


def _timeit(fn, repeats: int, min_time: float = 0.2) -> float:
    """Best seconds per call over ``repeats`` rounds (each round runs at least ``min_time`` s)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        best = min(best, dt / n)
    return best


def _load_cmu_h36m(data_root: Path, stride: int = 4) -> list[np.ndarray]:
    from mvpose.data.motion import motion_to_h36m17, read_amc, read_asf

    folder = data_root / "cmu_mocap" / "asf_amc"
    takes = []
    for amc, asf in CMU_TAKES:
        motion = read_amc(folder / amc, read_asf(folder / asf)).to_z_up()
        takes.append(motion_to_h36m17(motion)[::stride])
    return takes


def _capture_centre(rig: CameraRig) -> torch.Tensor:
    """Least-squares meeting point of the optical axes (mm), at floor height 0."""
    C = rig.centers()
    d = rig.R[:, 2, :]  # optical axes in world coordinates
    eye = torch.eye(3, dtype=C.dtype)
    A = (eye - d[:, :, None] * d[:, None, :]).sum(0)
    b = ((eye - d[:, :, None] * d[:, None, :]) @ C[:, :, None]).sum(0)
    p = torch.linalg.solve(A, b)[:, 0]
    p[2] = 0.0
    return p


def _scenes(data_root: Path, seed: int) -> tuple[list[CameraRig], list[torch.Tensor]]:
    """One (rig, poses) pair per CMU take, each take in a different Human3.6M subject's rig."""
    from mvpose.calib import load_rig

    takes = _load_cmu_h36m(data_root)
    rigs, poses = [], []
    for i, take in enumerate(takes):
        rig = load_rig(
            data_root / "h36m_cameras" / "cameras.h5", subject=H36M_SUBJECTS[i % len(H36M_SUBJECTS)]
        )
        X = torch.from_numpy(take).to(torch.float64)
        # centre the take's root path on the capture area (keeps its own motion and height)
        root_xy = X[:, 0, :2].mean(0)
        offset = _capture_centre(rig)
        offset[:2] -= root_xy
        rigs.append(rig)
        poses.append(X + offset)
    return rigs, poses


def _cramer_rao(rig: CameraRig, X: torch.Tensor, sigma: float, samples: int, gen: torch.Generator) -> dict:
    """Expected error norm and RMS of the efficient estimator at noise ``sigma`` px."""
    _, jac = rig.project_with_jacobian(X)  # (T, V, J, 2, 3)
    info = torch.einsum("tvjri,tvjrk->tjik", jac, jac) / sigma**2
    cov = torch.linalg.inv(info)
    L = torch.linalg.cholesky(cov)
    z = torch.randn(samples, *cov.shape[:-1], generator=gen, dtype=torch.float64)
    e = (L @ z[..., None])[..., 0].norm(dim=-1)  # (S, T, J)
    return {
        "mean_mm": float(e.mean()),
        "rms_mm": float(cov.diagonal(dim1=-2, dim2=-1).sum(-1).mean().sqrt()),
    }


METHODS = ("dlt", "robust", "refine", "robust+refine")
ORACLES = ("oracle dlt", "oracle refine")
ROBUST_THRESHOLD_SIGMAS = 4.0


def _noisy(
    uv: torch.Tensor, sigma: float, outlier_rate: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy detections and the mask ``(*, V, J)`` of the outliers among them."""
    noisy = uv + sigma * torch.randn(uv.shape, generator=gen, dtype=uv.dtype)
    hit = torch.zeros(uv.shape[:-1], dtype=torch.bool)
    if outlier_rate > 0:
        hit = torch.rand(uv.shape[:-1], generator=gen, dtype=uv.dtype) < outlier_rate
        r = 50.0 + 100.0 * torch.rand(uv.shape[:-1], generator=gen, dtype=uv.dtype)
        a = 2 * math.pi * torch.rand(uv.shape[:-1], generator=gen, dtype=uv.dtype)
        off = torch.stack([r * torch.cos(a), r * torch.sin(a)], -1)
        noisy = noisy + hit[..., None] * off
    return noisy, hit


def _estimate(rig: CameraRig, noisy: torch.Tensor, outliers: torch.Tensor, method: str, threshold_px: float):
    if method == "oracle dlt":
        return rig.triangulate(noisy, (~outliers).to(torch.float64))
    if method == "oracle refine":
        return rig.triangulate(noisy, (~outliers).to(torch.float64), method="refine")
    kwargs = {"threshold_px": threshold_px} if method.startswith("robust") else {}
    return rig.triangulate(noisy, method=method, **kwargs)


def accuracy(data_root: Path, seed: int = 0, methods=METHODS + ORACLES) -> list[dict]:
    rigs, poses = _scenes(data_root, seed)
    rows = []
    for sigma in (2.0, 5.0):
        threshold_px = ROBUST_THRESHOLD_SIGMAS * sigma
        for outliers in (0.0, 0.05):
            gen = torch.Generator().manual_seed(seed + int(sigma * 10) + int(outliers * 1000))
            errs = {m: [] for m in methods}
            floors, floor_rms, n_points = [], [], 0
            for rig, X in zip(rigs, poses):
                uv = rig.project(X)  # (T, V, J, 2) raw (distorted) pixels
                noisy, hit = _noisy(uv, sigma, outliers, gen)
                for m in methods:
                    Xm = _estimate(rig, noisy, hit, m, threshold_px)
                    errs[m].append((Xm - X).norm(dim=-1).flatten())
                cr = _cramer_rao(rig, X, sigma, samples=64, gen=gen)
                n = X.shape[0] * X.shape[1]
                floors.append(cr["mean_mm"] * n)
                floor_rms.append(cr["rms_mm"] ** 2 * n)
                n_points += n
            floor = sum(floors) / n_points
            row = {
                "sigma_px": sigma,
                "outlier_rate": outliers,
                "robust_threshold_px": threshold_px,
                "points": n_points,
                "cramer_rao_mean_mm": floor,
                "cramer_rao_rms_mm": math.sqrt(sum(floor_rms) / n_points),
            }
            for m in methods:
                e = torch.cat(errs[m])
                ok = torch.isfinite(e)
                row[f"{m}_mean_mm"] = float(e[ok].mean())
                row[f"{m}_rms_mm"] = float(e[ok].pow(2).mean().sqrt())
                row[f"{m}_vs_floor"] = float(e[ok].mean()) / floor
                row[f"{m}_nan"] = int((~ok).sum())
            rows.append(row)
    return rows


def speed(seed: int = 0, repeats: int = 5, batch: int = 64, joints: int = 17, views: int = 4) -> dict:
    """Throughput on a synthetic 4-camera ring (the numbers do not depend on the scene)."""
    from mvpose.calib import ring_rig

    gen = torch.Generator().manual_seed(seed)
    rig = ring_rig(num_cameras=views)
    P = rig.projection_matrices()
    X = torch.randn(batch, joints, 3, generator=gen, dtype=torch.float64) * 300 + torch.tensor(
        [0.0, 0.0, 1000.0]
    )
    uv = rig.project(X, distort=False) + 2.0 * torch.randn(
        batch, views, joints, 2, generator=gen, dtype=torch.float64
    )
    w = 0.5 + 0.5 * torch.rand(batch, views, joints, generator=gen, dtype=torch.float64)
    n = batch * joints
    out = {"batch": batch, "joints": joints, "views": views, "torch_threads": torch.get_num_threads()}
    with torch.inference_mode():
        ours = triangulate(uv, P, w, method="dlt")
        ref = reference_loop_dlt(uv, P, w)
        out["dlt_max_abs_diff_mm"] = float((ours - ref).abs().max())
        # Interleaved rounds (reference, then each method), best round of each: every contender
        # sees the same machine load, so the ratios hold on a busy machine too.
        fns = {"reference": lambda: reference_loop_dlt(uv, P, w)}
        fns.update({m: (lambda m=m: triangulate(uv, P, w, method=m)) for m in METHODS})
        best = dict.fromkeys(fns, math.inf)
        for _ in range(repeats):
            for name, fn in fns.items():
                t = _timeit(fn, repeats=1, min_time=0.5 if name == "reference" else 0.2)
                best[name] = min(best[name], t)
        t_ref = best["reference"]
        out["reference_loop_points_per_s"] = n / t_ref
        for method in METHODS:
            out[f"{method}_points_per_s"] = n / best[method]
            out[f"{method}_vs_reference_loop"] = t_ref / best[method]
    return out


def run_benchmark(
    data_root: Path | None = None, out: Path | None = None, repeats: int = 5, seed: int = 0
) -> dict:
    """Run the speed and accuracy parts; write JSON to ``out`` when given."""
    data_root = Path(data_root) if data_root is not None else default_data_root()
    report = {
        "benchmark": "triangulation",
        "machine": {
            "platform": platform.platform(),
            "cpus": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "speed": speed(seed=seed, repeats=repeats),
        "accuracy": accuracy(data_root, seed=seed),
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict) -> str:
    s = report["speed"]
    lines = [
        f"Triangulation speed: B={s['batch']} x J={s['joints']} x V={s['views']}, "
        f"{s['torch_threads']} threads",
        f"  {'method':16s} {'points/s':>12s} {'x ref loop':>11s}",
        f"  {'reference loop':16s} {s['reference_loop_points_per_s']:12,.0f} {1.0:11.1f}",
    ]
    for m in METHODS:
        lines.append(f"  {m:16s} {s[f'{m}_points_per_s']:12,.0f} {s[f'{m}_vs_reference_loop']:11.1f}")
    lines.append(f"  dlt vs reference loop: max |diff| = {s['dlt_max_abs_diff_mm']:.2e} mm")
    lines.append("")
    lines.append(
        "Accuracy on CMU mocap through the Human3.6M cameras (mean error, mm; ratio to Cramér-Rao floor)"
    )
    acc = report["accuracy"]
    methods = [m for m in METHODS + ORACLES if f"{m}_mean_mm" in acc[0]]
    thr = ", ".join(
        f"{r['robust_threshold_px']:g} px at sigma {r['sigma_px']:g}" for r in acc if r["outlier_rate"] == 0
    )
    lines.append(
        f"  robust threshold: {ROBUST_THRESHOLD_SIGMAS:g} sigma ({thr}); oracles: the true inliers only"
    )
    head = f"  {'sigma':>5s} {'outl.':>5s} {'CR floor':>8s} " + " ".join(f"{m:>18s}" for m in methods)
    lines.append(head)
    for r in acc:
        cells = " ".join(f"{r[f'{m}_mean_mm']:8.2f} ({r[f'{m}_vs_floor']:5.3f}x)" for m in methods)
        lines.append(
            f"  {r['sigma_px']:5.1f} {r['outlier_rate']:5.2f} {r['cramer_rao_mean_mm']:8.2f} {cells}"
        )
    nans = [
        f"{m} {r[f'{m}_nan']} at sigma {r['sigma_px']:g}/{r['outlier_rate']:g}"
        for r in acc
        for m in methods
        if r[f"{m}_nan"]
    ]
    if nans:
        lines.append("  NaN points (not triangulated, left out of the means): " + "; ".join(nans))
    return "\n".join(lines)
