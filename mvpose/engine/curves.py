"""Learning curves from runs' ``history.jsonl``: training loss / MPJPE and validation MPJPE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["read_history", "plot_learning_curves"]


def read_history(run_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{tag: {"step": (n,), metric: (n,)}}`` from ``<run_dir>/history.jsonl`` (a resumed run's
    repeated steps keep their last value)."""
    path = Path(run_dir) / "history.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no history.jsonl in {run_dir} (is it an mvpose training run folder?)")
    rows: dict[str, dict[int, dict]] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}, line {n}: not JSON") from None
        rows.setdefault(r.pop("tag"), {})[int(r["step"])] = r
    out = {}
    for tag, by_step in rows.items():
        steps = sorted(by_step)
        keys = sorted({k for r in by_step.values() for k in r if k != "step"})
        out[tag] = {"step": np.array(steps)}
        out[tag].update({k: np.array([by_step[s].get(k, np.nan) for s in steps], dtype=float) for k in keys})
    return out


def plot_learning_curves(runs: dict[str, str | Path], out: str | Path, smooth: int = 5) -> Path:
    """One PNG: training keypoint MPJPE (running mean over ``smooth`` logs) and validation MPJPE
    against the step, one colour per run (``{label: run_dir}``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_t, ax_v = fig.subplots(1, 2)
    for i, (label, run) in enumerate(runs.items()):
        h = read_history(run)
        color = f"C{i}"
        if "train" in h and "mpjpe_mm" in h["train"]:
            y = h["train"]["mpjpe_mm"]
            k = max(1, min(smooth, len(y)))
            ys = np.convolve(y, np.ones(k) / k, mode="valid")
            ax_t.plot(h["train"]["step"][k - 1 :], ys, color=color, label=label)
        if "val" in h:
            ax_v.plot(h["val"]["step"], h["val"]["MPJPE"], "o-", color=color, label=label)
    ax_t.set(title="training batches: MPJPE (mm)", xlabel="step", ylabel="mm")
    ax_v.set(title="held-out motions: root-relative MPJPE (mm)", xlabel="step", ylabel="mm")
    for ax in (ax_t, ax_v):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
