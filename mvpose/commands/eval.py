"""``mvpose eval``: score a trained checkpoint on its validation set (or another config's)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from mvpose.engine.checkpoint import load_checkpoint
    from mvpose.engine.config import apply_overrides, config_from_dict, load_config
    from mvpose.engine.distributed import cleanup
    from mvpose.engine.run import evaluate_checkpoint

    if args.config is not None:
        cfg = load_config(args.config, args.overrides)
    else:  # the run's own config, stored in the checkpoint
        stored = load_checkpoint(args.checkpoint)["config"]
        cfg = config_from_dict(apply_overrides(stored, args.overrides), f"{args.checkpoint} (stored config)")
    if args.out_dir is not None:
        cfg.out_dir = str(args.out_dir)
    try:
        evaluate_checkpoint(cfg, args.checkpoint)
    finally:
        cleanup()
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained checkpoint (MPJPE, P-MPJPE, per action/subject; 3DHP PCK/AUC)",
        description="Evaluate an mvpose training checkpoint on the validation set of its stored config "
        "(or of --config). Writes <out_dir>/results_eval.json and prints the table. Under torchrun "
        "the set is sharded over the processes.",
    )
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--config", type=Path, default=None, help="config to take the data from (default: stored)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out-dir", type=Path, default=None, help="where results_eval.json goes")
    p.set_defaults(func=_run)
