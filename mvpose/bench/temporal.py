"""``mvpose bench temporal``: the temporal models' CPU forward pass against their reference formulations.

For each model at its published configuration (batch 64, 2 threads, ``torch.inference_mode``): mvpose's
forward and a plain reimplementation of the reference's forward pass (:mod:`mvpose.bench._reference`,
the same weights mapped onto the reference's names) are timed in interleaved rounds (the order
alternates every round); the report gives every round, the best and median times, the speed-up of the
best rounds, the per-round ratios and their median (a target counts as met when both reach it), and
the max abs difference of the two outputs on the benchmark input. BatchNorm statistics, normalisation
affines and zero-initialised weights are perturbed first (seeded) so that the comparison exercises
every parameter.

The **matrix-product floor** of each model is its counted FLOPs per batch at this machine's float32
matrix-product rate, measured in the same run (:func:`matmul_rate`: the best of a few ``torch.mm`` of
PoseFormerV2's largest shape); ``ref ms / floor ms`` bounds the speed-up any float32 implementation
of the same arithmetic can reach against that reference.

Parameter counts are compared with the published ones. FLOPs are counted with
:class:`torch.utils.flop_counter.FlopCounterMode` on one sample through mvpose's forward: 2 FLOPs per
multiply-add of the matrix products, convolutions and attention (the CPU flash-attention kernel is
registered here; elementwise ops, softmax and FFTs are not counted). PoseFormerV2's published
1,054.8 M is FLOPs in that sense restricted to its layers: 2 x the multiply-adds of its ``Linear``
layers (1,054.0 M) plus 2 per LayerNorm element (0.8 M); its attention matrix products (29.4 M) are
left out, and MACs would be half (about 527 M).
"""

from __future__ import annotations

import gc
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "default_specs",
    "Spec",
    "perturb",
    "run_benchmark",
    "format_report",
    "count_flops",
    "layer_flops",
    "matmul_rate",
    "main",
]

TOLERANCE = 1e-4  # max abs difference accepted between mvpose's and the reference's outputs
TARGET_SPEEDUP = {"poseformerv2": 1.5, "pstmo": 1.5}  # issue 6 targets (best rounds, batch 64, 2 threads)


@dataclass(frozen=True)
class Spec:
    """One benchmarked model: ``build()`` gives mvpose's network; ``reference`` names the builder in
    :data:`mvpose.bench._reference.FROM_OURS`; input ``(batch, frames, joints, 2)``."""

    label: str
    build: Callable[[], nn.Module]
    reference: str
    frames: int
    joints: int = 17
    published_params: int | None = None
    published_mflops: float | None = None


def default_specs() -> dict[str, Spec]:
    """The published configurations benchmarked by default (the model modules are imported here)."""
    from mvpose.models.temporal.poseformerv2 import poseformerv2
    from mvpose.models.temporal.pstmo import pstmo, pstmo_s
    from mvpose.models.temporal.srnet import srnet_243f
    from mvpose.models.temporal.tgraphnet import tgraphnet
    from mvpose.models.temporal.videopose3d import videopose3d_243f

    return {
        "videopose3d": Spec("VideoPose3D 243 (3,3,3,3,3; 1024 ch)", videopose3d_243f, "videopose3d", 243,
                            published_params=16_952_371),
        "poseformerv2": Spec("PoseFormerV2 243/27/27", lambda: poseformerv2("243/27/27"), "poseformerv2", 243,
                             published_params=14_381_899, published_mflops=1054.8),
        "pstmo_s": Spec("P-STMO-S 243 (3 layers)", pstmo_s, "pstmo", 243, published_params=6_482_278),
        "pstmo": Spec("P-STMO 243 (4 layers)", pstmo, "pstmo", 243, published_params=7_009_382),
        "srnet": Spec("SRNet 243 (5 groups, multiply)", srnet_243f, "srnet", 243, published_params=3_612_067),
        "tgraphnet": Spec("TGraphNet (81-frame chunks)", tgraphnet, "tgraphnet", 81,
                          published_params=3_985_450),
    }  # fmt: skip


# ------------------------------------------------------------------------------------------ helpers
def perturb(model: nn.Module, seed: int) -> nn.Module:
    """Seeded, in place: BatchNorm statistics and affines, LayerNorm affines and all-zero parameters
    (e.g. SRNet's gate convolutions, PoseFormerV2's positional embeddings) get random values, so that
    equal outputs mean equal use of every parameter. Returns ``model`` in eval mode."""
    g = torch.Generator().manual_seed(seed)

    def rand(t: Tensor, scale: float, offset: float = 0.0) -> Tensor:
        return torch.randn(t.shape, generator=g, dtype=t.dtype) * scale + offset

    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
                mod.running_mean.copy_(rand(mod.running_mean, 0.1))
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("a_2",) or (leaf == "weight" and p.ndim == 1):  # norm scales
                p.copy_(rand(p, 0.1, 1.0))
            elif leaf in ("b_2",) or (leaf == "bias" and p.ndim == 1 and not p.any()) or not p.any():
                p.copy_(rand(p, 0.02))
    return model.eval()


def count_flops(model: nn.Module, x: Tensor) -> dict:
    """FLOPs of ``model(x)`` (2 per multiply-add) by :class:`FlopCounterMode`: ``{"total", "by_op"}``."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    from mvpose.models.temporal._fused import onednn_available

    def cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(q, k, v)

    def onednn_linear(x, *args, out_shape=None, **kwargs) -> int:  # (x, [other,] w, b, ...)
        return 2 * math.prod(out_shape) * x[-1]

    def onednn_conv(*args, out_shape=None, **kwargs) -> int:
        # (x, w, b, padding, stride, dilation, groups, attr, ...) or (x, other, w, b, ..., groups, attr, ...)
        w = args[1] if isinstance(args[7], str) else args[2]
        return 2 * math.prod(out_shape) * math.prod(w[1:])

    mapping = {
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa,
        torch.ops.mkldnn._linear_pointwise: onednn_linear,  # the fused inference kernels (models' _fused)
        torch.ops.mkldnn._convolution_pointwise: onednn_conv,
    }
    onednn_available()  # probe the fused kernels outside the count
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter, torch.inference_mode():
        model(x)
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts()["Global"].items() if v}
    return {"total": int(counter.get_total_flops()), "by_op": by_op}


def layer_flops(model: nn.Module, x: Tensor) -> dict[str, int]:
    """The per-layer convention of PoseFormerV2's published FLOPs, counted with forward hooks on the
    module-by-module (autograd) path of ``model(x)``: ``{"linear": 2 x multiply-adds of the nn.Linear
    layers, "layernorm": 2 per LayerNorm output element, "total"}``; attention products are not layers."""
    counts = {"linear": 0, "layernorm": 0}

    def hook(mod: nn.Module, inp, out: Tensor) -> None:
        if isinstance(mod, nn.Linear):
            counts["linear"] += 2 * mod.in_features * out.numel()
        else:
            counts["layernorm"] += 2 * out.numel()

    hooks = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.LayerNorm))
    ]
    try:
        with torch.enable_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return {**counts, "total": counts["linear"] + counts["layernorm"]}


def _time(fn: Callable[[], Tensor]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _interleaved(ours: nn.Module, ref: nn.Module, x: Tensor, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per call of ``ours(x)`` and ``ref(x)`` over ``repeats`` rounds, alternating the order."""
    t_ours, t_ref = [], []
    for r in range(repeats):
        if r % 2 == 0:
            t_ours.append(_time(lambda: ours(x)))
            t_ref.append(_time(lambda: ref(x)))
        else:
            t_ref.append(_time(lambda: ref(x)))
            t_ours.append(_time(lambda: ours(x)))
    return t_ours, t_ref


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def matmul_rate(rounds: int = 7) -> float:
    """This machine's float32 matrix-product rate in FLOP/s at the current thread count: the best of
    ``rounds`` ``(3456, 544) @ (544, 1632)`` products (PoseFormerV2's qkv projection at batch 64)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3456, 544, generator=g), torch.randn(544, 1632, generator=g)
    torch.mm(a, b)
    best = min(_time(lambda: torch.mm(a, b)) for _ in range(rounds))
    return 2.0 * 3456 * 544 * 1632 / best


def bench_model(
    name: str, spec: Spec, batch: int, repeats: int, seed: int, rate: float | None = None
) -> dict:
    """Time, compare and count one model (module doc); returns its report entry."""
    from mvpose.bench._reference import FROM_OURS

    torch.manual_seed(seed)
    ours = perturb(spec.build(), seed)
    ref = FROM_OURS[spec.reference](ours)
    x = torch.randn(batch, spec.frames, spec.joints, 2, generator=torch.Generator().manual_seed(seed)) * 0.5
    params = sum(p.numel() for p in ours.parameters())
    flops = count_flops(ours, x[:1])
    flops["reference_total"] = count_flops(ref, x[:1])["total"]
    if spec.published_mflops is not None:
        flops["published_convention"] = layer_flops(ours, x[:1])
    with torch.inference_mode():
        y_ours, y_ref = ours(x), ref(x)  # also the warm-up
        diff = (y_ours - y_ref).abs().max().item()
        t_ours, t_ref = _interleaved(ours, ref, x, repeats)
    ref = None  # the references of the big models hold GB of temporaries until collected
    gc.collect()
    entry = {
        "label": spec.label,
        "config": {"batch": batch, "frames": spec.frames, "joints": spec.joints, "repeats": repeats},
        "params": {"ours": params, "published": spec.published_params},
        "flops_per_sample": {
            **flops,
            "gmac": flops["total"] / 2e9,
            "published_mflops": spec.published_mflops,
        },
        "time_ms": {
            "ours": [t * 1e3 for t in t_ours],
            "reference": [t * 1e3 for t in t_ref],
            "ours_best": min(t_ours) * 1e3,
            "reference_best": min(t_ref) * 1e3,
            "ours_median": statistics.median(t_ours) * 1e3,
            "reference_median": statistics.median(t_ref) * 1e3,
        },
        "speedup": min(t_ref) / min(t_ours),
        "speedup_rounds": [b / a for a, b in zip(t_ours, t_ref)],
        "speedup_median_round": statistics.median(b / a for a, b in zip(t_ours, t_ref)),
        "floor_ms": None if rate is None else flops["total"] * batch / rate * 1e3,
        "max_abs_diff": diff,
        "max_abs_out": y_ref.abs().max().item(),
        "outputs_match": diff <= TOLERANCE,
    }
    if rate is not None:
        entry["max_speedup_at_floor"] = entry["time_ms"]["reference_best"] / entry["floor_ms"]
    entry["params"]["match"] = spec.published_params is None or params == spec.published_params
    if spec.reference in TARGET_SPEEDUP:
        entry["target_speedup"] = TARGET_SPEEDUP[spec.reference]
        entry["meets_target"] = (
            min(entry["speedup"], entry["speedup_median_round"]) >= entry["target_speedup"]
        )
    return entry


def run_benchmark(
    out=None,
    repeats: int = 5,
    seed: int = 0,
    *,
    batch: int = 64,
    threads: int = 2,
    models: list[str] | None = None,
    specs: dict[str, Spec] | None = None,
) -> dict:
    """Benchmark ``models`` (default: all of ``specs``, default :func:`default_specs`) at ``batch`` with
    ``threads`` CPU threads and ``repeats`` interleaved rounds each; ``out``: a path for the JSON report."""
    specs = default_specs() if specs is None else specs
    names = list(specs) if models is None else list(models)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown temporal model(s) {unknown}; choose from {sorted(specs)}")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rate = matmul_rate()
        report = {
            "machine": {
                "matmul_gflops": rate / 1e9,
                "platform": platform.platform(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "loadavg_before": _loadavg(),
            },
            "tolerance": TOLERANCE,
            "models": {n: bench_model(n, specs[n], batch, repeats, seed, rate) for n in names},
        }
        report["machine"]["loadavg_after"] = _loadavg()
    finally:
        torch.set_num_threads(old_threads)
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"mvpose bench temporal  (torch {m['torch']}, {m['threads']} threads, load average "
        f"{m['loadavg_before']} -> {m['loadavg_after']}; float32 matrix products "
        f"{m.get('matmul_gflops', float('nan')):.0f} GFLOP/s)",
        f"{'model':<38}{'ours ms':>9}{'ref ms':>9}{'speed-up':>9}{'median':>8}  {'rounds':<22}"
        f"{'max |diff|':>11}"
        f"{'params':>12}{'published':>12}{'GFLOP/sample (ref)':>20}{'floor ms':>10}",
    ]
    for e in report["models"].values():
        t, f, p = e["time_ms"], e["flops_per_sample"], e["params"]
        rounds = ",".join(f"{r:.2f}" for r in e["speedup_rounds"])
        flag = "" if e["outputs_match"] else " MISMATCH"
        target = (
            f"  (target {e['target_speedup']}x: {'met' if e['meets_target'] else 'NOT met'})"
            if ("target_speedup" in e)
            else ""
        )
        if "target_speedup" in e and not e["meets_target"] and e.get("max_speedup_at_floor"):
            target += f" (bound by the matrix products alone: {e['max_speedup_at_floor']:.2f}x)"
        published = "-" if p["published"] is None else f"{p['published']:,}"
        lines.append(
            f"{e['label']:<38}{t['ours_best']:>9.0f}{t['reference_best']:>9.0f}"
            f"{e['speedup']:>8.2f}x{e['speedup_median_round']:>7.2f}x  "
            f"{rounds:<22}{e['max_abs_diff']:>11.1e}{p['ours']:>12,}{published:>12}"
            f"{f['total'] / 1e9:>11.3f} ({f['reference_total'] / 1e9:.3f})"
            f"{_floor(e):>10}{flag}{target}"
        )
    pf = [e for e in report["models"].values() if e["flops_per_sample"]["published_mflops"]]
    for e in pf:
        f = e["flops_per_sample"]
        conv = f["published_convention"]
        lines.append(
            f"{e['label']}: {f['total'] / 1e6:,.1f} MFLOP/sample (FlopCounterMode, 2 per multiply-add; "
            f"{f['gmac'] * 1e3:,.1f} M MACs). Published {f['published_mflops']:,} M = FLOPs of the layers "
            f"only: 2 x Linear multiply-adds {conv['linear'] / 1e6:,.1f} M + 2 per LayerNorm element "
            f"{conv['layernorm'] / 1e6:,.1f} M = {conv['total'] / 1e6:,.1f} M (attention products left out)"
        )
    return "\n".join(lines)


def _floor(e: dict) -> str:
    return "-" if e.get("floor_ms") is None else f"{e['floor_ms']:.0f}"


def main(args) -> int:
    """``mvpose bench temporal``: ``args.out``, ``args.repeats``, ``args.seed`` (``args.models``: optional
    list of names). Prints the report; returns 1 when an output comparison fails, else 0."""
    report = run_benchmark(
        out=getattr(args, "out", None),
        repeats=int(getattr(args, "repeats", 5) or 5),
        seed=int(getattr(args, "seed", 0) or 0),
        models=getattr(args, "models", None),
    )
    print(format_report(report))
    return 0 if all(e["outputs_match"] for e in report["models"].values()) else 1
