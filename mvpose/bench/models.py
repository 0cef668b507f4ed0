"""``mvpose bench models``: the multi-view models' hot paths against reference-style formulations.

(a) Unprojection + softmax view aggregation (B=4, V=4, C=32, 96^2 maps -> 64^3): ours,
    :func:`mvpose.models.volumetric.unproject_aggregate` (one ``grid_sample`` over all ``B*V`` maps
    per slice of voxels, aggregated over the views slice by slice), against learnable triangulation's
    structure: per sample, per view, a projection and a ``grid_sample`` into a ``(V, C, *S)`` buffer, then the
    softmax aggregation of that sample.
(b) ContextPose's context block at the 16^3 grid, 17 joints (B=1): ours (FFT prior, see
    :func:`mvpose.models.context.limb_propagate`) against the dense-mask formulation as the reference
    caches it (``L x N x N`` float32 masks built once and kept resident; per limb endpoint the
    products ``M_l * U_j`` of shape ``(B, 3, N, N)`` summed over ``q``). Max abs difference of the outputs.
(c) Forward time per frame on CPU (``torch.inference_mode``, one timed run after one warm-up at the
    demo size, a single run at paper size): volumetric, paper configuration (ResNet-152, 384^2,
    4 views, 64^3) and a demo configuration (ResNet-18, 256^2, 4 views, 32^3).

Every variant of (a) and (b) runs in a fresh Python process: peak memory is the increase of the
process's maximum RSS (``resource.getrusage``) over its value once the inputs exist (for the dense
reference, the resident masks count: the reference keeps them), and time is the best of ``repeats``
runs after that first one.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
import time

import torch

__all__ = ["run_benchmark", "format_report", "reference_unproject_aggregate", "dense_limb_masks"]

PAPER = {"num_layers": 152, "image": 384, "views": 4, "volume": 64}
DEMO = {"num_layers": 18, "image": 256, "views": 4, "volume": 32}


# ------------------------------------------------------------------------------- reference variants
def reference_unproject_aggregate(features, proj_matrices, coord_volumes):
    """Learnable triangulation's ``unproject_heatmaps`` structure (softmax aggregation): loops over
    samples and views, one projection and one ``grid_sample`` per view, aggregation per sample.
    ``features (B, V, C, h, w)``, ``proj_matrices (B, V, 3, 4)`` feature-frame, ``coord_volumes
    (B, X, Y, Z, 3)`` -> ``(B, C, X, Y, Z)``."""
    import torch.nn.functional as F

    B, V, C, h, w = features.shape
    shape = coord_volumes.shape[1:4]
    out = torch.zeros(B, C, *shape, dtype=features.dtype)
    for b in range(B):
        coords = coord_volumes[b].reshape(-1, 3)
        per_view = torch.zeros(V, C, *shape, dtype=features.dtype)
        for v in range(V):
            hom = torch.cat([coords, torch.ones_like(coords[:, :1])], 1) @ proj_matrices[b, v].T
            z = hom[:, 2:]
            xy = hom[:, :2] / z
            xy[z[:, 0] <= 0] = -1.0
            grid = torch.stack([2 * (xy[:, 0] / w - 0.5), 2 * (xy[:, 1] / h - 0.5)], -1)
            sampled = F.grid_sample(
                features[b, v][None], grid.reshape(1, 1, -1, 2), align_corners=True, padding_mode="zeros"
            )
            sampled = sampled.reshape(C, *shape)
            sampled[:, (z[:, 0] <= 0).reshape(shape)] = 0.0
            per_view[v] = sampled
        weights = torch.softmax(per_view, 0)
        out[b] = (weights * per_view).sum(0)
    return out


def dense_limb_masks(att, grid_shape) -> torch.Tensor:
    """The reference's cached prior: ``(L, N, N)`` float32 row-softmax masks."""
    from mvpose.models.context import limb_prior_rows

    N = math.prod(grid_shape)
    return limb_prior_rows(
        torch.arange(N), grid_shape, att.limb_mean, att.limb_std, att.cuboid_size, att.temperature
    )


def _dense_propagate(masks):
    def propagate(U, a, grid):
        from mvpose.models.context import ContextAttention  # noqa: F401 (same module family)

        del grid
        out = []
        for lim in range(masks.shape[0]):
            ends = []
            for j in _LIMBS[lim]:
                num = (masks[lim][None, None] * U[:, j, :, None, :]).sum(-1)  # (B, c, N, N) products
                den = (masks[lim][None] * a[:, j, None, :]).sum(-1)  # (B, N, N)
                ends.append(num / den[:, None])
            out.append(torch.stack(ends, 1))
        return torch.stack(out, 1)  # (B, L, 2, c, N)

    return propagate


_LIMBS: list = []


# ------------------------------------------------------------------------- one variant, in-process
def _rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _unproject_inputs(B, V, C, hm, n, seed):
    from mvpose.models.volumetric import cuboid_coord_volumes

    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, V, C, hm, hm, generator=g)
    ang = torch.arange(V, dtype=torch.float64) * (2 * math.pi / V)
    Ps = []
    for a in ang.tolist():
        Cc = torch.tensor([4000 * math.cos(a), 4000 * math.sin(a), 1000.0], dtype=torch.float64)
        fwd = -Cc / Cc.norm()
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        right = right / right.norm()
        down = torch.linalg.cross(fwd, right)
        R = torch.stack([right, down, fwd])
        K = torch.tensor([[hm * 2.0, 0, hm / 2], [0, hm * 2.0, hm / 2], [0, 0, 1]], dtype=torch.float64)
        Ps.append(K @ torch.cat([R, -(R @ Cc)[:, None]], 1))
    P = torch.stack(Ps).expand(B, V, 3, 4).float().contiguous()
    root = torch.randn(B, 3, generator=g, dtype=torch.float64) * 100
    coords = cuboid_coord_volumes(root, 2500.0, n, dtype=torch.float32)
    return feats, P, coords


def _context_inputs(n, B, seed):
    from mvpose.models.context import ContextAttention

    torch.manual_seed(seed)
    mean = torch.tensor([446, 454, 133, 446, 454, 133, 234, 252, 118, 115, 151, 279, 250, 151, 279, 250.0])
    std = torch.tensor([19, 22, 8, 19, 22, 8, 14, 16, 10, 9, 12, 17, 15, 12, 17, 15.0])  # H36M-like
    att = ContextAttention(limb_mean=mean, limb_std=std).eval()
    x = torch.randn(B, 51, n, n, n)
    return att, x


def run_variant(name: str, params: dict) -> dict:
    """One variant in this process: ``{"seconds", "peak_bytes", "checksum"...}`` (see module doc)."""
    torch.set_num_threads(int(params.get("threads", torch.get_num_threads())))
    repeats = int(params.get("repeats", 3))
    base0, build = None, 0.0
    if name in ("unproject_ours", "unproject_reference"):
        from mvpose.models.volumetric import unproject_aggregate

        feats, P, coords = _unproject_inputs(
            params["B"], params["V"], params["C"], params["hm"], params["n"], params["seed"]
        )

        def fn():
            if name == "unproject_ours":
                return unproject_aggregate(feats, P, coords, "softmax")
            return reference_unproject_aggregate(feats, P, coords)

    elif name in ("context_ours", "context_dense"):
        att, x = _context_inputs(params["n"], params.get("B", 1), params["seed"])
        _LIMBS[:] = att.limbs.tolist()
        if name == "context_dense":
            t0 = time.perf_counter()
            base0 = _rss()
            masks = dense_limb_masks(att, (params["n"],) * 3)
            build = time.perf_counter() - t0
            prop = _dense_propagate(masks)
        else:
            prop = None

        def fn():
            return att.forward_details(x, prop)["out"]

    else:
        raise ValueError(f"unknown benchmark variant {name!r}")
    base = _rss() if base0 is None else base0
    with torch.no_grad():
        out = fn()
        peak = _rss() - base
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    res = {"seconds": min(times), "peak_bytes": peak, "out_sum": float(out.double().sum())}
    if name.startswith("context"):
        res["mask_build_seconds"] = build
        torch.save(out, params["out_file"])
    return res


def _subprocess(name: str, params: dict) -> dict:
    code = (
        "import json, sys\nfrom mvpose.bench.models import run_variant\n"
        f"print('RESULT', json.dumps(run_variant({name!r}, json.loads(sys.argv[1]))))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"benchmark variant {name} failed:\n{res.stderr[-3000:]}")
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


# ------------------------------------------------------------------------------------ the parts
def bench_unprojection(B=4, V=4, C=32, hm=96, n=64, repeats=3, seed=0, threads=None) -> dict:
    params = {"B": B, "V": V, "C": C, "hm": hm, "n": n, "seed": seed, "repeats": repeats}
    if threads:
        params["threads"] = threads
    ours = _subprocess("unproject_ours", params)
    ref = _subprocess("unproject_reference", params)
    return {
        "config": {"B": B, "V": V, "C": C, "heatmap": hm, "volume": n},
        "ours": ours,
        "reference": ref,
        "speedup": ref["seconds"] / ours["seconds"],
        "memory_ratio": ours["peak_bytes"] / max(ref["peak_bytes"], 1),
        "checksum_rel_diff": abs(ours["out_sum"] - ref["out_sum"]) / max(abs(ref["out_sum"]), 1e-12),
    }


def bench_context(n=16, B=1, repeats=3, seed=0, threads=None, tmpdir=None) -> dict:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        res = {}
        for name in ("context_ours", "context_dense"):
            params = {"n": n, "B": B, "seed": seed, "repeats": repeats, "out_file": str(Path(d) / name)}
            if threads:
                params["threads"] = threads
            res[name] = _subprocess(name, params)
        a = torch.load(Path(d) / "context_ours", weights_only=True)
        b = torch.load(Path(d) / "context_dense", weights_only=True)
    ours, dense = res["context_ours"], res["context_dense"]
    return {
        "config": {"grid": n, "joints": 17, "B": B},
        "ours": ours,
        "dense": dense,
        "speedup": dense["seconds"] / ours["seconds"],
        "memory_ratio": ours["peak_bytes"] / max(dense["peak_bytes"], 1),
        "max_abs_diff": float((a - b).abs().max()),
        "max_abs_out": float(b.abs().max()),
    }


def bench_forward(config: dict, seed: int = 0, warmup: bool = True) -> dict:
    """Seconds per frame (B=1) of the volumetric model's forward under ``torch.inference_mode``."""
    from mvpose.models.volumetric import VolumetricTriangulationNet

    torch.manual_seed(seed)
    net = VolumetricTriangulationNet(
        config["num_layers"], 17, volume_size=config["volume"], rotate_in_training=False
    ).eval()
    V, H = config["views"], config["image"]
    images = torch.randn(1, V, 3, H, H)
    _, P, _ = _unproject_inputs(1, V, 1, H, 2, seed)
    root = torch.zeros(1, 3)
    with torch.inference_mode():
        if warmup:
            net(images, P, root)
        t0 = time.perf_counter()
        out = net(images, P, root)
        sec = time.perf_counter() - t0
    assert torch.isfinite(out["keypoints_3d"]).all()
    return {"config": dict(config), "seconds_per_frame": sec, "threads": torch.get_num_threads()}


def run_benchmark(
    out=None,
    repeats: int = 3,
    seed: int = 0,
    paper: bool = True,
    *,
    unproject: dict | None = None,
    context: dict | None = None,
    demo: dict | None = None,
) -> dict:
    """Run parts (a), (b), (c) (module doc); ``paper=False`` skips the paper-size forward.
    ``unproject``/``context``/``demo`` override the sizes (the tests use tiny ones). ``out``: a path
    for the JSON report. Returns the report dict."""
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "unprojection": bench_unprojection(repeats=repeats, seed=seed, **(unproject or {})),
        "context": bench_context(repeats=repeats, seed=seed, **(context or {})),
        "forward": {"demo": bench_forward(demo or DEMO, seed)},
    }
    if paper:
        report["forward"]["paper"] = bench_forward(PAPER, seed, warmup=False)
    if out is not None:
        from pathlib import Path

        Path(out).write_text(json.dumps(report, indent=2))
    return report


def _row(label: str, r: dict) -> str:
    return f"    {label:<34}{r['seconds']:>10.3f}{r['peak_bytes'] / 2**20:>12.0f}"


def format_report(report: dict) -> str:
    u, c = report["unprojection"], report["context"]
    uc, cc = u["config"], c["config"]
    lines = [
        f"mvpose bench models  (torch {report['machine']['torch']}, {report['machine']['threads']} threads)",
        "",
        f"(a) unprojection + softmax aggregation  B={uc['B']} V={uc['V']} C={uc['C']} "
        f"{uc['heatmap']}^2 -> {uc['volume']}^3",
        f"    {'variant':<34}{'time s':>10}{'peak MiB':>12}",
        _row("ours (grid_sample over B*V, sliced)", u["ours"]),
        _row("reference (loops over B, V)", u["reference"]),
        f"    speed-up {u['speedup']:.2f}x, memory ratio {u['memory_ratio']:.2f}, "
        f"checksum rel. diff {u['checksum_rel_diff']:.1e}",
        "",
        f"(b) ContextPose block  {cc['grid']}^3, {cc['joints']} joints, B={cc['B']}",
        f"    {'variant':<34}{'time s':>10}{'peak MiB':>12}",
        _row("ours (FFT prior)", c["ours"]),
        _row("dense masks (reference)", c["dense"])
        + f"   (+ {c['dense']['mask_build_seconds']:.2f} s to build the masks once)",
        f"    speed-up {c['speedup']:.1f}x, memory ratio {c['memory_ratio']:.3f}, "
        f"max abs diff {c['max_abs_diff']:.2e} (max |out| {c['max_abs_out']:.2f})",
        "",
        "(c) volumetric forward on CPU, torch.inference_mode, B=1",
    ]
    for key, f in report["forward"].items():
        cfg = f["config"]
        lines.append(
            f"    {key:<6} ResNet-{cfg['num_layers']}, {cfg['image']}^2, {cfg['views']} views, "
            f"{cfg['volume']}^3: {f['seconds_per_frame']:.2f} s/frame"
        )
    return "\n".join(lines)
