"""The temporal stage's training and evaluation (``task: sequence`` configs; ``train.py`` dispatches here).

``SequenceTrainer(cfg).train()`` trains a lifter (2D -> 3D) or refiner (3D -> 3D) on the clips of
:func:`~mvpose.engine.sequence_data.build_sequence_data` with the guarantees of the multi-view
:class:`~mvpose.engine.trainer.Trainer`, and its pieces: DDP under ``torchrun`` (gloo on CPU, nccl on
GPU), per-epoch shuffles seeded by ``(train.seed, epoch)`` and sharded over the processes, exact resume
(the interrupted epoch's order is rebuilt, the batches done are skipped and every RNG is restored),
atomic checkpoints (``<out_dir>/checkpoints/last.pth``, written every ``checkpoint_every`` steps and
at each epoch end), TensorBoard and ``history.jsonl`` (:class:`~mvpose.engine.logger.RunLogger`), AMP
on GPU, gradient clipping, and evaluation sharded by clip and gathered on rank 0.

Schedules are per epoch as in the papers: ``lr * lr_decay ** e`` (P-STMO: ``lr_decay_large`` every
``large_decay_epoch``-th epoch), VideoPose3D's BatchNorm momentum ``m0 * exp(-e / E * log(m0 / m1))``.
Training windows are VideoPose3D's (:class:`~mvpose.data.sequences.WindowDataset`, flips included);
``data.batch_size`` windows per process and step.

``main_sequence(args)`` is ``train.py``'s entry for these configs; ``evaluate_sequence_checkpoint``
scores a checkpoint (``train.py --eval`` / ``mvpose eval``) and ``load_temporal_model`` rebuilds one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mvpose.engine import distributed as D
from mvpose.engine.checkpoint import load_checkpoint
from mvpose.engine.config import ConfigError, config_from_dict
from mvpose.engine.evaluate import write_results
from mvpose.engine.loop import TrainLoop, train_or_evaluate
from mvpose.engine.sequence_config import (
    SequenceExperimentConfig,
    check_sequence_config,
    load_sequence_config,
)
from mvpose.engine.sequence_data import SequenceData, build_sequence_data
from mvpose.engine.sequence_eval import format_sequence_metrics, score_3dhp, score_h36m, score_reconstruction
from mvpose.engine.sequence_models import SequenceTask
from mvpose.engine.task import unwrap

__all__ = [
    "SequenceTrainer",
    "main_sequence",
    "evaluate_sequence",
    "evaluate_sequence_checkpoint",
    "load_temporal_model",
    "lr_factor",
]

log = logging.getLogger("mvpose.train")


def lr_factor(cfg: SequenceExperimentConfig, epoch: int) -> float:
    """Learning-rate factor after ``epoch`` completed epochs (VideoPose3D / P-STMO / TGraphNet decays)."""
    o = cfg.optim
    f = 1.0
    for e in range(1, int(epoch) + 1):
        f *= o.lr_decay_large if o.large_decay_epoch and e % o.large_decay_epoch == 0 else o.lr_decay
    return f


def _bn_momentum(cfg: SequenceExperimentConfig, epoch: int) -> float | None:
    o = cfg.optim
    if o.bn_momentum_initial is None:
        return None
    m0, m1 = o.bn_momentum_initial, o.bn_momentum_final
    return m0 * math.exp(-epoch / max(cfg.train.epochs, 1) * math.log(m0 / m1))


def _protocol(cfg: SequenceExperimentConfig) -> str:
    if cfg.model.kind == "pstmo_pretrain":
        return "reconstruction"
    if cfg.eval.protocol != "auto":
        return cfg.eval.protocol
    return "3dhp" if cfg.data.source == "3dhp_npz" else "h36m"


def predict_clips(
    model: nn.Module, task: SequenceTask, clips, info: D.DistInfo, progress: bool = False
) -> list[dict]:
    """This rank's share of the clips (``range(rank, N, world)``), predicted: per clip ``index``,
    ``key``, ``pred``/``target`` (T, J, 3) mm root-relative, ``valid``; P-STMO stage I: ``error`` px."""
    net = unwrap(model)
    was = net.training
    net.eval()
    out = []
    idx = list(range(info.rank, len(clips), info.world_size))
    for i in tqdm(idx, desc="eval", disable=not (progress and info.is_main), leave=False):
        c = clips[i]
        r = {"index": i, "key": tuple(c.key), "valid": c.valid}
        if task.kind == "pstmo_pretrain":
            r["error"] = task.reconstruction_error_px(net, c)
        else:
            r["pred"] = task.predict(net, c.inputs, fps=c.fps) * 1000.0
            r["target"] = task.model_targets(c.target).astype(np.float64) * 1000.0
            if task.refine:  # the per-frame input, scored the same way (the baseline refinement improves on)
                r["input"] = task.model_targets(c.inputs).astype(np.float64) * 1000.0  # raw, unfiltered
        out.append(r)
    net.train(was)
    return out


def evaluate_sequence(model: nn.Module, task: SequenceTask, clips, info: D.DistInfo, progress: bool = False):
    """Score ``model`` on ``clips`` over all ranks: ``(metrics, results)`` on rank 0, ``(None, None)``
    elsewhere; results are ordered by clip."""
    shard = predict_clips(model, task, clips, info, progress)
    gathered = D.all_gather_objects(shard)
    if not info.is_main:
        return None, None
    results = sorted((r for s in gathered for r in s), key=lambda r: r["index"])
    proto = _protocol(task.cfg)
    if proto == "reconstruction":
        metrics = score_reconstruction(results)
    elif proto == "3dhp":
        metrics = score_3dhp(results, task.root)
    else:
        metrics = score_h36m(results)
    if task.refine and proto != "reconstruction":
        base = [{**r, "pred": r["input"]} for r in results]
        metrics["input_baseline"] = (score_3dhp(base, task.root) if proto == "3dhp" else score_h36m(base))[
            "overall"
        ]
    metrics["protocol"] = proto
    metrics["test_time_augmentation"] = bool(task.cfg.eval.test_time_augmentation)
    return metrics, results


def _main_metric(metrics: dict) -> tuple[str, float]:
    o = metrics["overall"]
    for k in ("MPJPE", "reconstruction_px"):
        if k in o:
            return k, o[k]
    return "PCK", o.get("PCK", float("nan"))


def _print_metrics(metrics: dict) -> None:
    """The metrics table, and for a refiner its input (per frame) against the refined output."""
    print(format_sequence_metrics(metrics))
    if "input_baseline" in metrics:
        print(
            format_sequence_metrics(
                {"input (per frame)": metrics["input_baseline"], "refined": metrics["overall"]}
            )
        )


class SequenceTrainer(TrainLoop):
    """One training run of a temporal model (module doc).

    Args:
        cfg: the resolved config.
        resume: continue from ``<out_dir>/checkpoints/last.pth`` (True) or a given checkpoint.
        data: :class:`SequenceData` to use instead of building it from ``cfg.data``.
        hooks: objects with any of ``before_train(t)``, ``after_step(t, parts)``,
            ``after_eval(t, metrics)``, ``after_train(t)``.
    """

    def __init__(
        self, cfg: SequenceExperimentConfig, resume=False, data: SequenceData | None = None, hooks=()
    ):
        self._setup_run(cfg, hooks)
        self.data = data if data is not None else build_sequence_data(cfg)
        self.task = SequenceTask(cfg, self.data)
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        self.model = self.task.build().to(self.device)
        self.train_net = self.task.training_module(self.model).to(self.device)
        self.windows, self.target_windows = self.task.training_windows(self.data.train)
        o = cfg.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt(params, lr=o.lr, weight_decay=o.weight_decay, amsgrad=o.amsgrad)
        per_rank = len(self.windows) // self.info.world_size
        if per_rank < 1:
            raise ValueError(f"{len(self.windows)} training windows for {self.info.world_size} processes")
        self.steps_per_epoch = math.ceil(per_rank / cfg.data.batch_size)
        self.total_steps = (
            cfg.train.max_steps if cfg.train.max_steps > 0 else cfg.train.epochs * self.steps_per_epoch
        )
        spe = self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(cfg, s // spe))
        self._setup_state()
        self.results_path: Path | None = None
        self.metrics: dict | None = None
        self._resume_or_seed(resume)  # else per-rank dropout / mask streams
        # P-STMO keeps the reference's never-applied final LayerNorms, TGraphNet its unused adj_e
        unused = cfg.model.kind in ("pstmo", "pstmo_pretrain", "tgraphnet")
        self.ddp = self._wrap_ddp(self.train_net, find_unused=unused)

    # ------------------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {
            "input_dim": self.task.input_dim,
            "skeleton": self.data.skeleton.name,
            "input_flip": list(self.task.in_flip),
        }

    # ------------------------------------------------------------------------------ data
    def _epoch_indices(self) -> torch.Tensor:
        """This rank's windows of the current epoch (a seeded permutation, sharded like
        ``DistributedSampler``: every ``world``-th from ``rank``, the tail dropped)."""
        order = self.windows.order(True, self.cfg.train.seed, self.epoch)
        n = (len(order) // self.info.world_size) * self.info.world_size
        return order[self.info.rank : n : self.info.world_size]

    def _batch(self, idx: torch.Tensor) -> dict:
        b = self.windows.gather(idx)
        batch = {"input": b["input"].to(self.device, non_blocking=True)}
        if "target" in b:
            batch["target"] = b["target"].to(self.device, non_blocking=True)
        if self.target_windows is not None:
            batch["target_window"] = self.target_windows.gather(idx)["input"].to(
                self.device, non_blocking=True
            )
        return batch

    # ------------------------------------------------------------------------------ loop
    def train_step(self, batch: dict) -> dict[str, float]:
        self.ddp.train()
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()
        with autocast:
            out = self.ddp(batch["input"])
            loss, parts = self.task.loss(out, batch)
        self._optimizer_step(loss, parts)
        return parts

    def _set_epoch_state(self) -> None:
        m = _bn_momentum(self.cfg, self.epoch)
        if m is not None and hasattr(self.model, "set_bn_momentum"):
            self.model.set_bn_momentum(m)

    def train(self) -> dict | None:
        """Run to the last step; returns the final metrics (rank 0)."""
        c = self.cfg.train
        if self.info.is_main:
            self._write_config()
            log.info(
                "%d training clips -> %d windows, %d test clips; %d steps/epoch, %d steps",
                len(self.data.train),
                len(self.windows),
                len(self.data.test),
                self.steps_per_epoch,
                self.total_steps,
            )
        self._call_hooks("before_train")
        bar = self._progress(self.total_steps)
        bs = self.cfg.data.batch_size
        t0, n0 = time.perf_counter(), self.step
        while self.step < self.total_steps:
            self._set_epoch_state()
            mine = self._epoch_indices()
            for b in range(self.batch_in_epoch, self.steps_per_epoch):
                parts = self.train_step(self._batch(mine[b * bs : (b + 1) * bs]))
                self.step += 1
                self.batch_in_epoch = b + 1
                bar.update(1)
                self._call_hooks("after_step", parts)
                if self.step % c.log_every == 0 or self.step == self.total_steps:
                    rate = (self.step - n0) * bs * self.info.world_size / (time.perf_counter() - t0)
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.logger.scalars(
                        "train", {**parts, "lr": lr, "windows_per_s": rate, "epoch": self.epoch}, self.step
                    )
                    bar.set_postfix(loss=f"{parts['total']:.4g}")
                if (
                    c.checkpoint_every
                    and self.step % c.checkpoint_every == 0
                    and self.step < self.total_steps
                ):
                    self.save()
                if self.step >= self.total_steps:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
                if self.step < self.total_steps:
                    if c.val_every_epochs and self.epoch % c.val_every_epochs == 0:
                        self.validate()
                    self.save()
        bar.close()
        self.train_time_s = time.perf_counter() - t0
        return self._end_training()

    def validate(self, final: bool = False) -> dict | None:
        self._sync_buffers()  # every shard is scored with rank 0's (saved) BatchNorm statistics
        metrics, _ = evaluate_sequence(
            self.model, self.task, self.data.test, self.info, self.cfg.log.progress
        )
        if self.info.is_main:
            name, value = _main_metric(metrics)
            o = metrics["overall"]
            self.logger.scalars("val", {k: v for k, v in o.items() if isinstance(v, float)}, self.step)
            log.info("step %d (epoch %d): test %s %.2f", self.step, self.epoch, name, value)
            if final:
                self._finish(metrics)
        self.metrics = metrics
        self._call_hooks("after_eval", metrics)
        return metrics

    def _finish(self, metrics: dict) -> None:
        results = {
            "name": self.cfg.name,
            "model": self.cfg.model.kind,
            "input": self.cfg.data.input,
            "step": self.step,
            "epoch": self.epoch,
            "world_size": self.info.world_size,
            "train_time_s": getattr(self, "train_time_s", None),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "git": self.git,
            "checkpoint": str(self.checkpoint_path),
            "metrics": metrics,
        }
        self.results_path = write_results(self.out_dir / "results.json", results)
        _print_metrics(metrics)


# ---------------------------------------------------------------------------------- checkpoints
def load_temporal_model(path: str | Path, map_location="cpu", data: SequenceData | None = None):
    """``(model, task)`` from a sequence checkpoint: the architecture from its stored config, the
    weights loaded strictly, in eval mode. ``task`` predicts whole clips (:meth:`SequenceTask.predict`)."""
    from mvpose.engine.sequence_data import SequenceData as _SD
    from mvpose.models._checkpoint import load_state_dict_strict
    from mvpose.skeleton import get_skeleton

    state = load_checkpoint(path, map_location)
    cfg = check_sequence_config(
        config_from_dict(state["config"], f"{path} (stored config)", SequenceExperimentConfig), str(path)
    )
    cfg.model.official_checkpoint = None
    cfg.model.pretrained = None
    if data is None:  # only the joint set, the input width and flips matter to the task
        sk = get_skeleton(state.get("skeleton", "h36m17"))
        dim = int(state.get("input_dim", 3 if cfg.data.input == "3d" else 2))
        from mvpose.engine.sequence_data import Clip

        dummy = Clip(("", "", ""), np.zeros((1, sk.num_joints, dim), np.float32), None)
        data = _SD([dummy], [], sk, tuple(state.get("input_flip", sk.flip_indices)))
    task = SequenceTask(cfg, data)
    model = task.build()
    load_state_dict_strict(model, state["model"], path, f"the {cfg.model.kind} model of its config")
    model.config = cfg
    return model.eval(), task


def evaluate_sequence_checkpoint(
    cfg: SequenceExperimentConfig, checkpoint: str | Path | None = None
) -> dict | None:
    """Score a checkpoint on the config's test clips (all ranks); rank 0 writes
    ``<out_dir>/results_eval.json``, prints the table and returns the metrics."""
    path = Path(checkpoint) if checkpoint else Path(cfg.out_dir) / "checkpoints" / "last.pth"
    info = D.init_distributed(cfg.train.device, cfg.train.threads_per_process)
    stored = load_checkpoint(path, "cpu")["config"]
    cfg.model = config_from_dict(stored, f"{path} (stored config)", SequenceExperimentConfig).model
    data = build_sequence_data(cfg)
    model, _ = load_temporal_model(path, info.device, data)
    task = SequenceTask(cfg, data)  # this config's evaluation settings (flips, batch size)
    metrics, _ = evaluate_sequence(model.to(info.device), task, data.test, info, cfg.log.progress)
    if info.is_main:
        out = write_results(
            Path(cfg.out_dir) / "results_eval.json", {"checkpoint": str(path), "metrics": metrics}
        )
        _print_metrics(metrics)
        print(f"results: {out}")
    D.barrier()
    return metrics


def main_sequence(args) -> int:
    """``train.py`` for ``task: sequence`` configs (``args``: ``config``, ``overrides``, ``resume``,
    ``eval``, ``checkpoint``, ``verbose``). Returns the exit status (2 for a config error)."""
    try:
        cfg = load_sequence_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"train.py: error: {exc}")
        return 2
    return train_or_evaluate(args, cfg, evaluate_sequence_checkpoint, SequenceTrainer)
