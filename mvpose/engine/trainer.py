"""The training loop: DDP, per-step schedule, AMP on GPU, clipping, checkpoints, validation, hooks.

``Trainer(cfg).train()`` runs ``cfg.train.max_steps`` optimizer steps. Epochs are passes of a
``DistributedSampler`` (seeded by ``train.seed``, reshuffled per epoch with ``set_epoch``); a
resumed run re-creates the interrupted epoch's order and skips the batches already done, and
restores every RNG, so it continues exactly where it stopped. Hooks are objects with any of
``before_train(trainer)``, ``after_step(trainer, losses)``, ``after_eval(trainer, metrics)``,
``after_train(trainer)``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from mvpose.data.collate import collate_multiview
from mvpose.engine.build import build_datasets, build_model, build_optimizer, build_scheduler
from mvpose.engine.config import ExperimentConfig
from mvpose.engine.evaluate import evaluate, format_results, write_results
from mvpose.engine.logger import example_images
from mvpose.engine.loop import TrainLoop
from mvpose.engine.task import MultiViewTask, batch_to_device

__all__ = ["Trainer"]

log = logging.getLogger("mvpose.train")


class Trainer(TrainLoop):
    """One training run (or evaluation) of a multi-view model from a config.

    Args:
        cfg: the resolved config.
        resume: continue from ``<out_dir>/checkpoints/last.pth`` (True) or a given checkpoint path.
        hooks: extra hook objects (see the module doc).
        datasets: ``(train, val)`` to use instead of building them from ``cfg.data``.
    """

    def __init__(self, cfg: ExperimentConfig, resume: bool | str | Path = False, hooks=(), datasets=None):
        self._setup_run(cfg, hooks)
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        self.model = build_model(cfg).to(self.device)
        self.task = MultiViewTask(cfg)
        self.train_set, self.val_set = datasets if datasets is not None else build_datasets(cfg)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.max_steps)
        self._setup_state()
        # different augmentation streams per rank (cuboid rotations), from the same seed
        self._resume_or_seed(resume)
        self.ddp = self._wrap_ddp(self.model)

    # ------------------------------------------------------------------------------ data
    def _loader(self) -> DataLoader:
        d = self.cfg.data
        sampler = DistributedSampler(
            self.train_set,
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=True,
            seed=self.cfg.train.seed,
            drop_last=True,
        )
        sampler.set_epoch(self.epoch)
        order = list(sampler)[self.batch_in_epoch * d.batch_size :]
        # the loader's own generator (worker seeds): creating it must not draw from the global RNG,
        # or a resumed run (one more loader) would drift from an uninterrupted one
        gen = torch.Generator().manual_seed(self.cfg.train.seed + 7919 * self.epoch + 104729 * self.info.rank)
        return DataLoader(
            self.train_set,
            batch_size=d.batch_size,
            sampler=order,
            num_workers=d.num_workers,
            collate_fn=collate_multiview,
            drop_last=True,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            generator=gen,
        )

    # ------------------------------------------------------------------------------ loop
    def train_step(self, batch: dict) -> dict[str, float]:
        self.ddp.train()
        batch = batch_to_device(batch, self.device)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()
        with autocast:
            out = self.task.forward(self.ddp, batch)
            loss, parts = self.task.loss(out, batch, self.step)
        self._optimizer_step(loss, parts)
        with torch.no_grad():
            gt = batch["keypoints_3d"].to(out["keypoints_3d"].dtype)
            parts["mpjpe_mm"] = float((out["keypoints_3d"] - gt).norm(dim=-1).nanmean())
        return parts

    def train(self) -> dict | None:
        """Run to ``max_steps``; returns the final validation metrics (rank 0)."""
        c = self.cfg.train
        if self.info.is_main:
            self._write_config()
        self._call_hooks("before_train")
        bar = self._progress(c.max_steps)
        t0, n0 = time.perf_counter(), self.step
        while self.step < c.max_steps:
            for batch in self._loader():
                parts = self.train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                bar.update(1)
                self._call_hooks("after_step", parts)
                if self.step % c.log_every == 0 or self.step == c.max_steps:
                    rate = (
                        (self.step - n0)
                        * self.cfg.data.batch_size
                        * self.info.world_size
                        / (time.perf_counter() - t0)
                    )
                    lrs = {
                        f"lr_{g.get('name', i)}": g["lr"] for i, g in enumerate(self.optimizer.param_groups)
                    }
                    self.logger.scalars("train", {**parts, **lrs, "samples_per_s": rate}, self.step)
                    bar.set_postfix(loss=f"{parts['total']:.3g}", mpjpe=f"{parts['mpjpe_mm']:.0f}")
                if c.val_every and self.step % c.val_every == 0 and self.step < c.max_steps:
                    self.validate()
                if c.checkpoint_every and self.step % c.checkpoint_every == 0 and self.step < c.max_steps:
                    self.save()
                if self.step >= c.max_steps:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
        bar.close()
        self.train_time_s = time.perf_counter() - t0
        self.train_rate = (
            (self.step - n0) * self.cfg.data.batch_size * self.info.world_size / max(self.train_time_s, 1e-9)
        )
        return self._end_training()

    def validate(self, final: bool = False) -> dict | None:
        d = self.cfg.data
        self._sync_buffers()  # every rank scores with rank 0's (saved) statistics
        metrics, example = evaluate(
            self.ddp,
            self.task,
            self.val_set,
            self.info,
            d.val_batch_size,
            d.num_workers,
            self.cfg.log.progress,
        )
        if self.info.is_main:
            o = metrics["overall"]
            self.logger.scalars(
                "val", {"MPJPE": o["MPJPE"], "MPJPE_abs": o["MPJPE-abs"], "P_MPJPE": o["P-MPJPE"]}, self.step
            )
            log.info(
                "step %d: val MPJPE %.1f mm (abs %.1f, P-MPJPE %.1f)",
                self.step,
                o["MPJPE"],
                o["MPJPE-abs"],
                o["P-MPJPE"],
            )
            if example is not None and self.cfg.train.image_every:
                try:
                    if self.cfg.model.kind != "algebraic":  # volumetric models leave the heatmaps untrained
                        example = {k: v for k, v in example.items() if k != "heatmaps"}
                    self.logger.images("val", example_images(example, self._skeleton()), self.step)
                except ImportError:  # pictures are optional (mvpose.viz)
                    pass
            if final:
                self._finish(metrics, example)
        self._call_hooks("after_eval", metrics)
        return metrics

    # ------------------------------------------------------------------------------ outputs
    def _skeleton(self) -> str:
        sk = getattr(self.val_set, "skeleton", None)
        return getattr(sk, "name", None) or "h36m17_lt"

    def _finish(self, metrics: dict, example: dict | None) -> None:
        results = {
            "name": self.cfg.name,
            "model": self.cfg.model.kind,
            "step": self.step,
            "world_size": self.info.world_size,
            "train_time_s": getattr(self, "train_time_s", None),
            "train_samples_per_s": getattr(self, "train_rate", None),
            "git": self.git,
            "checkpoint": str(self.checkpoint_path),
            "metrics": metrics,
        }
        self.results_path = write_results(self.out_dir / "results.json", results)
        self.png_path = None
        if example is not None:
            try:
                from mvpose.viz import pred_vs_gt_png

                self.png_path = pred_vs_gt_png(
                    self.out_dir / "pred_vs_gt.png",
                    example["images"],
                    example["pred_px"],
                    example["gt_px"],
                    example["pred_mm"].numpy(),
                    example["gt_mm"].numpy(),
                    self._skeleton(),
                    f"{self.cfg.model.kind}, step {self.step}",
                )
            except ImportError:
                pass
        print(format_results(metrics))
