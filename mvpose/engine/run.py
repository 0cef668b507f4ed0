"""Entry points behind ``train.py`` and ``mvpose eval``: parse, train or evaluate, print paths."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mvpose.engine.config import ConfigError, ExperimentConfig, load_config

__all__ = ["train_parser", "main", "evaluate_checkpoint"]

log = logging.getLogger("mvpose.train")


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train or evaluate an mvpose multi-view model (under torchrun for several processes).",
    )
    p.add_argument("--config", type=Path, default=None, help="YAML config (configs/...)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=1e-4 (repeatable)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue from <out_dir>/checkpoints/last.pth, or from the given checkpoint",
    )
    p.add_argument("--eval", action="store_true", help="only evaluate (the checkpoint given or last.pth)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint to evaluate (with --eval)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def evaluate_checkpoint(cfg: ExperimentConfig, checkpoint: str | Path | None = None) -> dict | None:
    """Evaluate a trained checkpoint on the config's validation set (all ranks); rank 0 writes
    ``results_eval.json`` beside the run and returns the metrics."""
    from mvpose.engine import distributed as D
    from mvpose.engine.build import build_datasets, load_model
    from mvpose.engine.evaluate import evaluate, format_results, write_results
    from mvpose.engine.task import MultiViewTask

    path = Path(checkpoint) if checkpoint else Path(cfg.out_dir) / "checkpoints" / "last.pth"
    info = D.init_distributed(cfg.train.device, cfg.train.threads_per_process)
    model = load_model(path, map_location=info.device).to(info.device)
    cfg.model = model.config.model  # the architecture is the checkpoint's
    _, val = build_datasets(cfg)
    metrics, _ = evaluate(
        model, MultiViewTask(cfg), val, info, cfg.data.val_batch_size, cfg.data.num_workers, cfg.log.progress
    )
    if info.is_main:
        out = write_results(
            Path(cfg.out_dir) / "results_eval.json", {"checkpoint": str(path), "metrics": metrics}
        )
        print(format_results(metrics))
        print(f"results: {out}")
    D.barrier()
    return metrics


def _task_of(path: Path, overrides: list[str]) -> str:
    """The config's ``task`` (``multiview`` by default), ``--set task=...`` included."""
    from mvpose.engine.config import read_config_dict

    task = read_config_dict(path).get("task", "multiview")
    for item in overrides:
        if item.split("=", 1)[0].strip() == "task":
            task = item.split("=", 1)[1].strip()
    return task


def main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.config is not None and _task_of(args.config, args.overrides) == "sequence":
            from mvpose.engine.sequence import main_sequence  # the temporal stage's own schema and loop

            return main_sequence(args)
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"train.py: error: {exc}")
        return 2
    from mvpose.engine.loop import train_or_evaluate
    from mvpose.engine.trainer import Trainer

    return train_or_evaluate(args, cfg, evaluate_checkpoint, Trainer)
