"""What the multi-view :class:`~mvpose.engine.trainer.Trainer` and the temporal
:class:`~mvpose.engine.sequence.SequenceTrainer` share: run setup, the optimizer step (AMP, clipping),
checkpoint state, atomic save on rank 0 with every rank's RNG, exact resume, DDP wrapping, hooks,
buffer sync before evaluation, and ``train.py``'s train-or-evaluate flow.

A subclass of :class:`TrainLoop` calls :meth:`~TrainLoop._setup_run` first, builds its model,
optimizer and scheduler, then calls :meth:`~TrainLoop._setup_state` and
:meth:`~TrainLoop._resume_or_seed`; it may add checkpoint keys in ``_extra_state()``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from mvpose.engine import distributed as D
from mvpose.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mvpose.engine.config import config_to_dict, git_revision
from mvpose.engine.logger import RunLogger
from mvpose.engine.task import unwrap

__all__ = ["TrainLoop", "print_run_outputs", "train_or_evaluate"]

log = logging.getLogger("mvpose.train")


class TrainLoop:
    """Base of the trainers: state, checkpoints, resume and hooks (module doc)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    # ------------------------------------------------------------------------------ setup
    def _setup_run(self, cfg, hooks) -> None:
        """``cfg``, ``out_dir``, the process group (``info``, ``device``) and the hooks."""
        self.cfg = cfg
        self.out_dir = Path(cfg.out_dir)
        self.info = D.init_distributed(cfg.train.device, cfg.train.threads_per_process)
        self.device = self.info.device
        self.hooks = list(hooks)

    def _setup_state(self) -> None:
        """AMP (GPU only), the grad scaler, the counters, the git revision and the logger."""
        self.amp = bool(self.cfg.train.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.git = git_revision()
        self.logger = RunLogger(self.out_dir, enabled=self.info.is_main, tensorboard=self.cfg.log.tensorboard)

    def _resume_or_seed(self, resume: bool | str | Path) -> None:
        """Resume from ``last.pth`` (``True``) or a given checkpoint; else seed this rank's own
        stream (augmentation, dropout, masks) from ``train.seed``."""
        if resume:
            self._resume(self.checkpoint_path if resume is True else Path(resume))
        else:
            torch.manual_seed(self.cfg.train.seed + 1000 * self.info.rank)

    def _wrap_ddp(self, net: nn.Module, find_unused: bool = False) -> nn.Module:
        """``net`` in :class:`DistributedDataParallel` under several processes, else itself."""
        if not self.info.distributed:
            return net
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids, find_unused_parameters=find_unused)

    # ------------------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / "last.pth"

    def _extra_state(self) -> dict:
        """Checkpoint keys of a subclass."""
        return {}

    def _state(self) -> dict:
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.info.world_size,
            "config": config_to_dict(self.cfg),
            **self._extra_state(),
            "git": self.git,
        }

    def save(self, path: Path | None = None) -> Path:
        """Every rank's RNG state is gathered; rank 0 writes the checkpoint atomically."""
        rngs = D.all_gather_objects(rng_state())
        path = path or self.checkpoint_path
        if self.info.is_main:
            save_checkpoint(path, {**self._state(), "rng": rngs})
        D.barrier()
        return path

    def _resume(self, path: Path) -> None:
        """Weights, optimizer, scheduler, scaler, counters and this rank's RNG from ``path``; RNG
        streams are re-seeded (with a warning) if it was written by another number of processes."""
        state = load_checkpoint(path, map_location=self.device)
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        rngs = state.get("rng") or []
        if len(rngs) == self.info.world_size:
            set_rng_state(rngs[self.info.rank])
        else:
            log.warning(
                "%s was written by %d processes, this run has %d: RNG streams are re-seeded",
                path,
                len(rngs),
                self.info.world_size,
            )
            torch.manual_seed(self.cfg.train.seed + 1000 * self.info.rank + self.step)
        if self.info.is_main:
            log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.epoch)

    # ------------------------------------------------------------------------------ loop pieces
    def _call_hooks(self, name: str, *args) -> None:
        for h in self.hooks:
            fn = getattr(h, name, None)
            if fn is not None:
                fn(self, *args)

    def _optimizer_step(self, loss: torch.Tensor, parts: dict[str, float]) -> None:
        """Backward (scaled under AMP), gradient clipping at ``optim.grad_clip`` (its norm into
        ``parts["grad_norm"]``), optimizer and scheduler step."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            parts["grad_norm"] = float(
                nn.utils.clip_grad_norm_(unwrap(self.model).parameters(), self.cfg.optim.grad_clip)
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    def _progress(self, total: int) -> tqdm:
        """The training bar (rank 0, ``log.progress``), starting at the current step."""
        return tqdm(
            total=total,
            initial=self.step,
            desc="train",
            disable=not (self.info.is_main and self.cfg.log.progress),
        )

    def _sync_buffers(self) -> None:
        """Rank 0's buffers (BatchNorm statistics, the saved ones) on every rank before scoring."""
        D.broadcast_buffers(unwrap(self.model))

    def _end_training(self) -> dict | None:
        """Final checkpoint and evaluation, ``after_train`` hooks, logger closed; the metrics."""
        self.save()
        metrics = self.validate(final=True)
        self._call_hooks("after_train")
        self.logger.close()
        return metrics

    def validate(self, final: bool = False) -> dict | None:  # pragma: no cover - subclasses
        raise NotImplementedError

    def _write_config(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resolved = {**config_to_dict(self.cfg), "git": self.git}
        (self.out_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))


def print_run_outputs(trainer: TrainLoop) -> None:
    """Where a finished run left its logs, checkpoint, results (and picture) and config."""
    out = Path(trainer.cfg.out_dir)
    print("\nrun outputs:")
    print(f"  TensorBoard logs: {out / 'tensorboard'}  (tensorboard --logdir {out / 'tensorboard'})")
    print(f"  checkpoint:       {trainer.checkpoint_path}")
    print(f"  results:          {trainer.results_path}")
    if getattr(trainer, "png_path", None) is not None:
        print(f"  picture:          {trainer.png_path}")
    print(f"  config:           {out / 'config.yaml'}")


def train_or_evaluate(args, cfg, evaluate, make_trainer) -> int:
    """``train.py``'s flow once the config is loaded: ``evaluate(cfg, args.checkpoint)`` with
    ``--eval``, else ``make_trainer(cfg, resume=args.resume).train()`` and the outputs printed on
    rank 0; the process group is torn down in any case. Returns the exit status."""
    try:
        if args.eval:
            evaluate(cfg, args.checkpoint)
            return 0
        trainer = make_trainer(cfg, resume=args.resume)
        trainer.train()
        if trainer.info.is_main:
            print_run_outputs(trainer)
        return 0
    finally:
        D.cleanup()
