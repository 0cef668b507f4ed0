"""``mvpose eval``: score a trained checkpoint on its validation set (or another config's)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from mvpose.engine.checkpoint import load_checkpoint
    from mvpose.engine.config import apply_overrides, config_from_dict, load_config, read_config_dict
    from mvpose.engine.distributed import cleanup
    from mvpose.engine.run import evaluate_checkpoint

    stored = None
    if args.config is not None:
        task = read_config_dict(args.config).get("task", "multiview")
    else:  # the run's own config, stored in the checkpoint
        stored = load_checkpoint(args.checkpoint)["config"]
        task = stored.get("task", "multiview")
    if task == "sequence":  # the temporal stage's schema and protocols
        from mvpose.engine.sequence import evaluate_sequence_checkpoint
        from mvpose.engine.sequence_config import (
            SequenceExperimentConfig,
            check_sequence_config,
            load_sequence_config,
        )

        if stored is None:
            cfg = load_sequence_config(args.config, args.overrides)
        else:
            where = f"{args.checkpoint} (stored config)"
            cfg = config_from_dict(apply_overrides(stored, args.overrides), where, SequenceExperimentConfig)
            check_sequence_config(cfg, where)
        run = evaluate_sequence_checkpoint
    else:
        if stored is None:
            cfg = load_config(args.config, args.overrides)
        else:
            where = f"{args.checkpoint} (stored config)"
            cfg = config_from_dict(apply_overrides(stored, args.overrides), where)
        run = evaluate_checkpoint
    if args.out_dir is not None:
        cfg.out_dir = str(args.out_dir)
    try:
        run(cfg, args.checkpoint)
    finally:
        cleanup()
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained checkpoint (MPJPE, P-MPJPE, per action/subject; 3DHP PCK/AUC; "
        "MPJVE for sequence models)",
        description="Evaluate an mvpose training checkpoint on the validation set of its stored config "
        "(or of --config); a temporal model's checkpoint (task: sequence) is scored with the sequence "
        "protocols (P1, P2, MPJVE per action; 3DHP PCK/AUC). Writes <out_dir>/results_eval.json and prints "
        "the table. Under torchrun "
        "the set is sharded over the processes.",
    )
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--config", type=Path, default=None, help="config to take the data from (default: stored)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out-dir", type=Path, default=None, help="where results_eval.json goes")
    p.set_defaults(func=_run)
