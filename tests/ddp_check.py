"""Worker for tests/test_engine_ddp.py, run under torchrun: trains the tiny config and saves every
rank's final parameters (``rank<r>.pt``), so the test can check that DDP kept them identical."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_helpers import tiny_config  # noqa: E402

from mvpose.engine.distributed import cleanup  # noqa: E402
from mvpose.engine.trainer import Trainer  # noqa: E402


class SaveRankParameters:
    def after_train(self, trainer):
        # parameters only: BatchNorm running statistics are rank 0's, broadcast at every forward
        params = {k: v.detach().cpu() for k, v in trainer.model.named_parameters()}
        torch.save(params, Path(trainer.cfg.out_dir) / f"rank{trainer.info.rank}.pt")


if __name__ == "__main__":
    out, steps = Path(sys.argv[1]), int(sys.argv[2])
    extra = sys.argv[3:]
    try:
        Trainer(tiny_config(out, steps=steps, extra=extra), hooks=[SaveRankParameters()]).train()
    finally:
        cleanup()
