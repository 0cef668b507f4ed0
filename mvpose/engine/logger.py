"""Run logging on rank 0: TensorBoard scalars and images, a JSON-lines history, Python logging."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

__all__ = ["RunLogger", "example_images"]

log = logging.getLogger("mvpose.train")


def example_images(example: dict, skeleton: str = "h36m17_lt") -> dict[str, np.ndarray]:
    """Pictures of one evaluated sample (uint8 HWC): the 3D skeleton (prediction vs truth), the
    reprojections into every view, and the heatmaps when the model has them."""
    from mvpose.viz import heatmap_grid, reprojection_grid, skeleton_3d_figure

    pics = {
        "skeleton_3d": skeleton_3d_figure(example["pred_mm"].numpy(), example["gt_mm"].numpy(), skeleton),
        "reprojection": reprojection_grid(example["images"], example["pred_px"], example["gt_px"], skeleton),
    }
    if "heatmaps" in example:
        pics["heatmaps"] = heatmap_grid(example["heatmaps"], example["images"])
    return pics


class RunLogger:
    """Writes ``tensorboard/`` and ``history.jsonl`` under the run folder (rank 0 only)."""

    def __init__(self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.writer = None
        self.history = None
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.history = open(self.out_dir / "history.jsonl", "a")  # noqa: SIM115
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def scalars(self, tag: str, values: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        if self.writer is not None:
            for k, v in clean.items():
                self.writer.add_scalar(f"{tag}/{k}", v, step)
        self.history.write(json.dumps({"tag": tag, "step": step, **clean}) + "\n")
        self.history.flush()

    def images(self, tag: str, pictures: dict[str, np.ndarray], step: int) -> None:
        if not self.enabled or self.writer is None:
            return
        for k, img in pictures.items():
            self.writer.add_image(f"{tag}/{k}", img, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.history is not None:
            self.history.close()
