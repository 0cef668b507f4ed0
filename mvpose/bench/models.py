"""``mvpose bench models``: the multi-view models' hot paths against reference-style formulations.

(a) Unprojection + softmax view aggregation (B=4, V=4, C=32, 96^2 maps -> 64^3): ours,
    :func:`mvpose.models.volumetric.unproject_aggregate` (inference path: bilinear samples of all
    ``B*V`` channels-last maps by one weighted ``embedding_bag`` per slice of voxels, aggregated over
    the views slice by slice), against learnable triangulation's structure: per sample, per view, a
    projection and a ``grid_sample`` into a ``(V, C, *S)`` buffer, then the softmax aggregation of
    that sample.
(b) ContextPose's context block at the 16^3 grid, 17 joints (B=1): ours (FFT prior, see
    :func:`mvpose.models.context.limb_propagate`) against the dense-mask formulation as the reference
    caches it (``L x N x N`` float32 masks built once and kept resident; per limb endpoint the
    products ``M_l * U_j`` of shape ``(B, 3, N, N)`` summed over ``q``). Max abs difference of the
    outputs. Twice: random attention (a standard-normal input), and trained-like peaked attention
    (:func:`peaked_attention_logits`, :data:`PEAKED` times the global-attention target's logits),
    where the FFT's guard recomputes rows exactly; plus a sweep of that guard's row count over the
    peak (ours only).
(c) Forward time per frame on CPU (``torch.inference_mode``, one timed run after one warm-up at the
    demo size, a single run at paper size): volumetric, paper configuration (ResNet-152, 384^2,
    4 views, 64^3) and a demo configuration (ResNet-18, 256^2, 4 views, 32^3); as built and with
    channels-last weights (:func:`bench_forward`).

Every variant of (a) and (b) runs in a fresh Python process, ``rounds`` times alternately with its
reference (the machine's load drifts): peak memory is the increase of the process's maximum RSS
(``resource.getrusage``) over its value once the inputs exist (for the dense reference, the resident
masks count: the reference keeps them), and time is the best of ``repeats`` runs after a first one,
best over the rounds (each round's ratio is reported too).
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
import time

import torch

__all__ = [
    "run_benchmark",
    "format_report",
    "reference_unproject_aggregate",
    "dense_limb_masks",
    "peaked_attention_logits",
    "context_fallback_sweep",
]

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


#: a standing pose (H36M-17 order, mm from the pelvis, z up) for the peaked-attention case
_STANDING_POSE_MM = (
    (-130, 0, -880), (-130, 20, -440), (-130, 0, 0), (130, 0, 0), (130, 20, -440), (130, 0, -880),
    (0, 0, 0), (0, 10, 230), (0, 10, 480), (0, 30, 690), (-250, 10, -80), (-220, 0, 170),
    (-160, 0, 450), (160, 0, 450), (220, 0, 170), (250, 10, -80), (0, 80, 580),
)  # fmt: skip


def peaked_attention_logits(n: int, peak: float, cuboid_mm: float = 2500.0, offset_mm=(31.0, -20.0, 15.0)):
    """Trained-like global-attention logits ``(17, n^3)`` on the ``n^3`` context grid: ``peak`` times
    the logits of ContextPose's global-attention target (a Gaussian of ``sigma = 2`` grid spacings
    around each joint of a standing pose, the grid as the reference's target builds it for a
    ``4n``-voxel volume). A model trained with the GA loss (weight 1e6) matches the target: ``peak=1``;
    larger values are sharper."""
    spacing = 4 * cuboid_mm / (4 * n - 1)
    steps = torch.arange(n, dtype=torch.float64) * spacing - cuboid_mm / 2
    grid = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    joints = torch.tensor(_STANDING_POSE_MM, dtype=torch.float64) + torch.tensor(
        offset_mm, dtype=torch.float64
    )
    d2 = ((grid[None] - joints[:, None]) ** 2).sum(-1)
    return (-float(peak) * d2 / (2 * (2 * spacing) ** 2)).float()


def _context_inputs(n, B, seed, peak=None):
    """The block (H36M-like limb statistics) and its input ``x (B, 51, n, n, n)``: standard normal, or
    with ``peak`` the trained-like attention of :func:`peaked_attention_logits` (``atten_conv`` reads
    the first channel of every joint, which holds those logits)."""
    from mvpose.models.context import ContextAttention

    torch.manual_seed(seed)
    mean = torch.tensor([446, 454, 133, 446, 454, 133, 234, 252, 118, 115, 151, 279, 250, 151, 279, 250.0])
    std = torch.tensor([19, 22, 8, 19, 22, 8, 14, 16, 10, 9, 12, 17, 15, 12, 17, 15.0])  # H36M-like
    att = ContextAttention(limb_mean=mean, limb_std=std).eval()
    x = torch.randn(B, 51, n, n, n)
    if peak is not None:
        with torch.no_grad():
            x = 2 * x
            x.reshape(B, 17, 3, -1)[:, :, 0] = peaked_attention_logits(n, peak)
            att.atten_conv.weight.zero_()
            att.atten_conv.weight[:, 0] = 1.0
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
        att, x = _context_inputs(params["n"], params.get("B", 1), params["seed"], params.get("peak"))
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
        if name == "context_ours":
            res["exact_rows"] = att.exact_rows
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
def _interleaved(names, params: dict, rounds: int) -> dict:
    """Each variant in a fresh process, ``rounds`` times alternately (the machine's load drifts):
    the best time over the rounds (and each round's, ``round_seconds``), the first round's peak memory
    and checksum (the runs are deterministic)."""
    res: dict = {}
    for _ in range(max(1, rounds)):
        for name in names:
            r = _subprocess(name, params[name] if name in params else params["*"])
            if name not in res:
                res[name] = dict(r, round_seconds=[r["seconds"]])
            else:
                res[name]["round_seconds"].append(r["seconds"])
                res[name]["seconds"] = min(res[name]["seconds"], r["seconds"])
    return res


def bench_unprojection(B=4, V=4, C=32, hm=96, n=64, repeats=3, seed=0, threads=None, rounds=2) -> dict:
    params = {"B": B, "V": V, "C": C, "hm": hm, "n": n, "seed": seed, "repeats": repeats}
    if threads:
        params["threads"] = threads
    res = _interleaved(("unproject_ours", "unproject_reference"), {"*": params}, rounds)
    ours, ref = res["unproject_ours"], res["unproject_reference"]
    return {
        "config": {"B": B, "V": V, "C": C, "heatmap": hm, "volume": n},
        "ours": ours,
        "reference": ref,
        "speedup": ref["seconds"] / ours["seconds"],
        "round_speedups": [r / o for o, r in zip(ours["round_seconds"], ref["round_seconds"])],
        "memory_ratio": ours["peak_bytes"] / max(ref["peak_bytes"], 1),
        "checksum_rel_diff": abs(ours["out_sum"] - ref["out_sum"]) / max(abs(ref["out_sum"]), 1e-12),
    }


def bench_context(n=16, B=1, repeats=3, seed=0, threads=None, tmpdir=None, peak=None, rounds=2) -> dict:
    """Part (b); ``peak``: trained-like attention (:func:`peaked_attention_logits`), else random."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        params = {}
        for name in ("context_ours", "context_dense"):
            params[name] = {"n": n, "B": B, "seed": seed, "repeats": repeats, "out_file": str(Path(d) / name)}
            if threads:
                params[name]["threads"] = threads
            if peak is not None:
                params[name]["peak"] = float(peak)
        res = _interleaved(("context_ours", "context_dense"), params, rounds)
        a = torch.load(Path(d) / "context_ours", weights_only=True)
        b = torch.load(Path(d) / "context_dense", weights_only=True)
    ours, dense = res["context_ours"], res["context_dense"]
    return {
        "config": {
            "grid": n,
            "joints": 17,
            "B": B,
            "attention": "random" if peak is None else f"peaked x{peak:g}",
        },
        "ours": ours,
        "dense": dense,
        "speedup": dense["seconds"] / ours["seconds"],
        "round_speedups": [r / o for o, r in zip(ours["round_seconds"], dense["round_seconds"])],
        "memory_ratio": ours["peak_bytes"] / max(dense["peak_bytes"], 1),
        "max_abs_diff": float((a - b).abs().max()),
        "max_abs_out": float(b.abs().max()),
        "exact_rows": ours.get("exact_rows"),
    }


def context_fallback_sweep(n=16, peaks=(1.0, 4.0, 16.0, 64.0), seed=0, repeats=3) -> list[dict]:
    """How many prior rows the peaked-attention guard recomputes exactly, and the block's time, as the
    attention sharpens (ours only, in this process)."""
    rows = []
    for peak in peaks:
        att, x = _context_inputs(n, 1, seed, peak)
        with torch.no_grad():
            a = att.forward_details(x)["atten_global"]
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                att.forward_details(x)
                times.append(time.perf_counter() - t0)
        rows.append(
            {"peak": peak, "seconds": min(times), "max_attention": float(a.max()), **(att.exact_rows or {})}
        )
    return rows


def bench_forward(config: dict, seed: int = 0, warmup: bool = True) -> dict:
    """Seconds per frame (B=1) of the volumetric model's forward under ``torch.inference_mode``, as
    built, and with channels-last weights (``backbone.to(memory_format=torch.channels_last)``,
    ``volume_net.to(memory_format=torch.channels_last_3d)``: oneDNN's preferred layouts; the
    unprojection already returns a channels-last volume). ``warmup``: one untimed forward of each
    first; the two variants alternate."""
    import copy

    from mvpose.models.volumetric import VolumetricTriangulationNet

    torch.manual_seed(seed)
    net = VolumetricTriangulationNet(
        config["num_layers"], 17, volume_size=config["volume"], rotate_in_training=False
    ).eval()
    fast = copy.deepcopy(net)
    fast.backbone.to(memory_format=torch.channels_last)
    fast.volume_net.to(memory_format=torch.channels_last_3d)
    V, H = config["views"], config["image"]
    images = torch.randn(1, V, 3, H, H)
    _, P, _ = _unproject_inputs(1, V, 1, H, 2, seed)
    root = torch.zeros(1, 3)
    sec, out = {}, {}
    with torch.inference_mode():
        for model in (net, fast) if warmup else ():
            model(images, P, root)
        for name, model in (("plain", net), ("channels_last", fast)):
            t0 = time.perf_counter()
            out[name] = model(images, P, root)["keypoints_3d"]
            sec[name] = time.perf_counter() - t0
    assert all(torch.isfinite(k).all() for k in out.values())
    return {
        "config": dict(config),
        "seconds_per_frame": sec["plain"],
        "seconds_per_frame_channels_last": sec["channels_last"],
        "channels_last_max_abs_diff_mm": float((out["plain"] - out["channels_last"]).abs().max()),
        "threads": torch.get_num_threads(),
    }


#: the peaked-attention case of part (b): sharper than the trained target (see the benchmark doc)
PEAKED = 16.0


def run_benchmark(
    out=None,
    repeats: int = 3,
    seed: int = 0,
    paper: bool = True,
    *,
    rounds: int = 2,
    unproject: dict | None = None,
    context: dict | None = None,
    demo: dict | None = None,
) -> dict:
    """Run parts (a), (b) (random and peaked attention), (c) (module doc); ``paper=False`` skips the
    paper-size forward. ``rounds``: alternating fresh-process rounds of (a) and (b), ``repeats`` timed
    runs in each. ``unproject``/``context``/``demo`` override the sizes (the tests use tiny ones).
    ``out``: a path for the JSON report. Returns the report dict."""
    ctx = dict(context or {})
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "unprojection": bench_unprojection(repeats=repeats, seed=seed, rounds=rounds, **(unproject or {})),
        "context": bench_context(repeats=repeats, seed=seed, rounds=rounds, **ctx),
        "context_peaked": bench_context(repeats=repeats, seed=seed, rounds=rounds, peak=PEAKED, **ctx),
        "context_fallback": context_fallback_sweep(ctx.get("n", 16), seed=seed, repeats=repeats),
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


def _ratios(r: dict) -> str:
    return ", ".join(f"{x:.2f}" for x in r.get("round_speedups", []))


def _context_lines(c: dict) -> list[str]:
    cc = c["config"]
    ex = c.get("exact_rows") or {}
    lines = [
        f"(b) ContextPose block  {cc['grid']}^3, {cc['joints']} joints, B={cc['B']}, "
        f"{cc.get('attention', 'random')} attention",
        f"    {'variant':<34}{'time s':>10}{'peak MiB':>12}",
        _row("ours (FFT prior)", c["ours"]),
        _row("dense masks (reference)", c["dense"])
        + f"   (+ {c['dense']['mask_build_seconds']:.2f} s to build the masks once)",
        f"    speed-up {c['speedup']:.1f}x (rounds: {_ratios(c)}), memory ratio {c['memory_ratio']:.3f}, "
        f"max abs diff {c['max_abs_diff']:.2e} (max |out| {c['max_abs_out']:.2f})",
    ]
    if ex:
        lines.append(
            f"    exact rows: {ex['limb_rows']} of {ex['of']} (limb, voxel) rows, "
            f"{ex['whole_limbs']} whole limbs"
        )
    return lines


def format_report(report: dict) -> str:
    u = report["unprojection"]
    uc = u["config"]
    lines = [
        f"mvpose bench models  (torch {report['machine']['torch']}, {report['machine']['threads']} threads)",
        "",
        f"(a) unprojection + softmax aggregation  B={uc['B']} V={uc['V']} C={uc['C']} "
        f"{uc['heatmap']}^2 -> {uc['volume']}^3",
        f"    {'variant':<34}{'time s':>10}{'peak MiB':>12}",
        _row("ours (embedding_bag gather, sliced)", u["ours"]),
        _row("reference (loops over B, V)", u["reference"]),
        f"    speed-up {u['speedup']:.2f}x (rounds: {_ratios(u)}), memory ratio {u['memory_ratio']:.2f}, "
        f"checksum rel. diff {u['checksum_rel_diff']:.1e}",
        "",
        *_context_lines(report["context"]),
        "",
    ]
    if "context_peaked" in report:
        lines += [*_context_lines(report["context_peaked"]), ""]
    if report.get("context_fallback"):
        lines.append("    peaked-attention guard, ours only (peak: x the GA target's logits):")
        for r in report["context_fallback"]:
            lines.append(
                f"      peak {r['peak']:>5g}: max attention {r['max_attention']:.3f}, exact rows "
                f"{r.get('limb_rows', 0)}/{r.get('of', 0)}, whole limbs {r.get('whole_limbs', 0)}, "
                f"{r['seconds']:.3f} s"
            )
        lines.append("")
    lines.append("(c) volumetric forward on CPU, torch.inference_mode, B=1")
    for key, f in report["forward"].items():
        cfg = f["config"]
        lines.append(
            f"    {key:<6} ResNet-{cfg['num_layers']}, {cfg['image']}^2, {cfg['views']} views, "
            f"{cfg['volume']}^3: {f['seconds_per_frame']:.2f} s/frame; channels-last weights "
            f"{f['seconds_per_frame_channels_last']:.2f} s/frame (keypoints differ by "
            f"{f['channels_last_max_abs_diff_mm']:.1e} mm)"
        )
    return "\n".join(lines)
