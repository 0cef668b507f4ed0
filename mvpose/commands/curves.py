"""``mvpose curves``: learning curves of one or more training runs as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from mvpose.engine.curves import plot_learning_curves

    runs = {}
    for item in args.runs:
        label, _, path = item.rpartition("=")
        runs[label or Path(path).name] = Path(path)
    print(f"learning curves: {plot_learning_curves(runs, args.out)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("curves", help="plot training/validation curves of runs (history.jsonl) into a PNG")
    p.add_argument("runs", nargs="+", help="run folders, optionally LABEL=FOLDER")
    p.add_argument("--out", type=Path, default=Path("runs/learning_curves.png"))
    p.set_defaults(func=_run)
