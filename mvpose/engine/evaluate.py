"""Sharded evaluation: each rank runs a disjoint slice of the set, rank 0 gathers and scores.

The slices are ``range(rank, N, world)`` without padding, and predictions are re-ordered by
dataset index before scoring, so the metrics do not depend on the number of processes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from mvpose.data.collate import collate_multiview
from mvpose.engine.distributed import DistInfo, all_gather_objects
from mvpose.engine.task import MultiViewTask, batch_to_device, unwrap
from mvpose.metrics import format_table, summarize

__all__ = ["predict_shard", "evaluate", "score_predictions", "write_results", "format_results"]


def predict_shard(
    model: nn.Module,
    task: MultiViewTask,
    dataset,
    info: DistInfo,
    batch_size: int,
    num_workers: int = 0,
    progress: bool = False,
    keep_example: bool = True,
) -> dict:
    """Predictions of this rank's slice: ``index (n,)``, ``pred``/``gt (n, J, 3)`` mm, ``valid``,
    ``subject``, ``action``; plus ``example`` (the first batch's first sample, for pictures)."""
    indices = list(range(info.rank, len(dataset), info.world_size))
    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_multiview,
    )
    net = unwrap(model)
    was_training = net.training
    net.eval()
    parts: dict[str, list] = {k: [] for k in ("index", "pred", "gt", "valid", "subject", "action")}
    example = None
    with torch.no_grad():
        for batch in tqdm(loader, desc="eval", disable=not (progress and info.is_main), leave=False):
            batch = batch_to_device(batch, info.device)
            out = task.forward(net, batch)
            pred = out["keypoints_3d"].detach().double().cpu()
            gt = batch["keypoints_3d"].double().cpu()
            valid = batch.get("keypoints_3d_valid", torch.ones(gt.shape[:2], dtype=torch.bool)).cpu()
            parts["index"].append(batch["index"].cpu())
            parts["pred"].append(pred)
            parts["gt"].append(gt)
            parts["valid"].append(valid & torch.isfinite(gt).all(-1))
            parts["subject"] += list(batch.get("subject", ["?"] * len(pred)))
            parts["action"] += list(batch.get("action", ["?"] * len(pred)))
            if example is None and keep_example:
                example = _example(batch, out)
    net.train(was_training)
    res = {k: (torch.cat(v) if k in ("index", "pred", "gt", "valid") and v else v) for k, v in parts.items()}
    res["example"] = example
    return res


def _example(batch: dict, out: dict) -> dict:
    """The first sample of a batch, on CPU: images, prediction/GT in mm and reprojected (px), heatmaps."""
    from mvpose.data.collate import rig_from_batch

    P = rig_from_batch(batch).projection_matrices()[0].double().cpu()  # (V, 3, 4)

    def project(x):  # (J, 3) mm -> (V, J, 2) px
        h = torch.cat([x, torch.ones_like(x[:, :1])], -1) @ P.transpose(-1, -2)
        return (h[..., :2] / h[..., 2:]).float()

    ex = {
        "images": batch["images"][0].cpu(),
        "pred_mm": out["keypoints_3d"][0].detach().double().cpu(),
        "gt_mm": batch["keypoints_3d"][0].double().cpu(),
    }
    ex["pred_px"], ex["gt_px"] = project(ex["pred_mm"]), project(ex["gt_mm"])
    if isinstance(out.get("heatmaps"), torch.Tensor):
        ex["heatmaps"] = out["heatmaps"][0].detach().float().cpu()
    return ex


def score_predictions(shards: list[dict], protocol: str = "h36m", root_joint: int = 6) -> dict:
    """Merge rank shards (ordered by dataset index) and compute the metric tables
    (:func:`mvpose.metrics.summarize`: MPJPE relative and absolute, P-MPJPE, N-MPJPE, PCK@150, AUC,
    per action and per subject)."""
    index = torch.cat([s["index"] for s in shards])
    order = torch.argsort(index)
    cat = {k: torch.cat([s[k] for s in shards])[order] for k in ("pred", "gt", "valid")}
    subjects = np.concatenate([np.asarray(s["subject"], dtype=object) for s in shards])[order.numpy()]
    actions = np.concatenate([np.asarray(s["action"], dtype=object) for s in shards])[order.numpy()]
    if len(torch.unique(index)) != len(index):
        raise RuntimeError("evaluation shards overlap: a sample was scored twice")
    table = summarize(
        cat["pred"],
        cat["gt"],
        actions=list(actions),
        subjects=list(subjects),
        mask=cat["valid"],
        root=root_joint,
        pck_threshold_mm=150.0,
    )
    table["protocol"] = protocol
    return table


def evaluate(
    model,
    task: MultiViewTask,
    dataset,
    info: DistInfo,
    batch_size: int,
    num_workers: int = 0,
    progress: bool = False,
) -> tuple[dict | None, dict | None]:
    """Score ``model`` on ``dataset`` over all ranks. Returns ``(metrics, example)`` on rank 0 and
    ``(None, None)`` elsewhere."""
    shard = predict_shard(model, task, dataset, info, batch_size, num_workers, progress)
    example = shard.pop("example")
    shards = all_gather_objects(shard)
    if not info.is_main:
        return None, None
    cfg = task.cfg
    return score_predictions(shards, cfg.eval.protocol, cfg.eval.root_joint), example


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_results(path: str | Path, results: dict) -> Path:
    """JSON with NaN written as null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(results), indent=2) + "\n")
    return path


def format_results(metrics: dict) -> str:
    """The printed table: per action, mean over actions, per subject, all samples."""
    return format_table({k: v for k, v in metrics.items() if isinstance(v, dict)})
