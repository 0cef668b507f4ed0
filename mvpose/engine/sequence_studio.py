"""Contiguous synthetic-studio sequences through a multi-view model: the inputs of the hybrid
(multi-view per frame, then temporal refinement).

:class:`SequenceStudio` is a :class:`~mvpose.data.synthetic.SyntheticStudio` whose sample ``i`` is frame
``start + i`` of one procedural motion, placed once for the whole sequence (one yaw about the vertical,
the sequence's mean pelvis moved to the point the cameras aim at, so the person walks through the
capture area) and rendered with one look, background and occluder set. :func:`studio_predictions`
runs a trained multi-view checkpoint (:func:`mvpose.engine.load_model`) frame by frame on such
sequences and returns its 3D next to the ground truth, in Human3.6M-17 order (VideoPose3D's), world mm.
:func:`studio_sequence_data` builds the refiner's clips from them (``data.source: studio``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from mvpose.data.synthetic import SyntheticStudio
from mvpose.engine.sequence_config import SequenceExperimentConfig
from mvpose.engine.sequence_data import Clip, SequenceData
from mvpose.engine.sequence_noise import NoiseModel3D, fit_noise_model
from mvpose.skeleton import H36M17, get_joint_map

__all__ = ["SequenceStudio", "studio_predictions", "studio_sequence_data"]


class SequenceStudio(SyntheticStudio):
    """Frames ``[start, start + frames)`` of the one procedural motion of ``(seed, split)``.

    Args:
        start, frames: the frames rendered (``start + frames <= motion_frames``).
        **kwargs: :class:`SyntheticStudio` arguments (``seed``, ``split``, ``rig``, ``motion_frames``,
            ``image_size``...); ``num_samples`` and ``num_motions`` are set here.
    """

    def __init__(self, start: int, frames: int, **kwargs):
        kwargs.update(num_samples=int(frames), num_motions=1, motions="procedural")
        super().__init__(**kwargs)
        self.start = int(start)
        if self.start < 0 or self.start + self.num_samples > self.motion_frames:
            raise ValueError(
                f"SequenceStudio: frames [{start}, {start + frames}) outside the motion's "
                f"{self.motion_frames}"
            )
        pos, _ = self._motion(0)
        g = np.random.default_rng([self.seed, 0xA11, {"train": 0, "val": 1, "all": 2}[self.split]])
        a = g.uniform(0.0, 2.0 * math.pi) if self.random_yaw else 0.0
        self._Rz = np.array(
            [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]]
        )
        pelvis = pos[self.start : self.start + self.num_samples, H36M17.root] @ self._Rz.T
        self._offset = np.array([*(self._centre[:2] - pelvis[:, :2].mean(0)), 0.0])
        self._frame_now = self.start

    def _streams(self, index: int):
        return super()._streams(0)  # one placement, look and background for the whole sequence

    def scene(self, index: int):
        self._frame_now = self.start + self._check_index(index)
        return super().scene(index)

    def _pose(self, rs):
        pos, clips = self._motion(0)
        f = self._frame_now
        action = next((kind for s, e, kind in clips if s <= f < e), clips[-1][2])
        return pos[f] @ self._Rz.T + self._offset, action, f


def _studio_kwargs(model_cfg, occluder_prob: float) -> dict:
    s = model_cfg.data.synthetic
    return dict(
        rig=s.calib if s.calib else s.rig,
        image_size=model_cfg.data.image_size,
        occluder_prob=occluder_prob,
        bbox_jitter=0.0,
    )


@torch.no_grad()
def studio_predictions(
    checkpoint: str | Path,
    seeds: list[int],
    split: str,
    frames: int,
    motion_frames: int | None = None,
    batch_size: int = 4,
    occluder_prob: float = 0.0,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Run a multi-view checkpoint on rendered sequences (one per seed, frames ``[0, frames)``).

    Returns ``{"pred", "gt"}`` ``(S, T, 17, 3)`` world mm in H36M-17 order and ``"seconds"`` (the time
    spent rendering and predicting).
    """
    import time

    from torch.utils.data import DataLoader

    from mvpose.data.collate import collate_multiview
    from mvpose.engine.build import load_model
    from mvpose.engine.task import MultiViewTask, batch_to_device

    t0 = time.perf_counter()
    model = load_model(checkpoint, map_location=device).to(device)
    task = MultiViewTask(model.config)
    preds, gts = [], []
    jmap = None
    for seed in seeds:
        ds = SequenceStudio(
            0,
            frames,
            seed=int(seed),
            split=split,
            motion_frames=motion_frames or frames,
            **_studio_kwargs(model.config, occluder_prob),
        )
        jmap = jmap or get_joint_map(ds.skeleton.name, H36M17.name)
        p, g = [], []
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_multiview):
            batch = batch_to_device(batch, torch.device(device))
            out = task.forward(model, batch)
            p.append(out["keypoints_3d"].double().cpu())
            g.append(batch["keypoints_3d"].double().cpu())
        preds.append(jmap.apply(torch.cat(p)).numpy())
        gts.append(jmap.apply(torch.cat(g)).numpy())
    return {"pred": np.stack(preds), "gt": np.stack(gts), "seconds": np.array(time.perf_counter() - t0)}


def _fit_and_test(cfg: SequenceExperimentConfig) -> dict[str, np.ndarray]:
    """The model's predictions on the fit (train split) and test (val split) sequences, cached."""
    from mvpose.data.sequences import load_npz, save_npz
    from mvpose.engine import distributed as D

    s = cfg.data.studio
    path = Path(s.cache) if s.cache else Path(cfg.out_dir) / "studio_3d.npz"
    meta = "|".join(
        str(v)
        for v in (Path(s.checkpoint).resolve(), s.fit_sequences, s.test_sequences, s.sequence_frames)
        + (s.seed, s.occluder_prob)
    )
    fresh = not path.is_file() or str(load_npz(path).get("meta")) != meta
    if fresh and D.is_main():
        common = dict(frames=s.sequence_frames, batch_size=s.batch_size, occluder_prob=s.occluder_prob)
        fit = studio_predictions(
            s.checkpoint, [s.seed * 1000 + k for k in range(s.fit_sequences)], "train", **common
        )
        test = studio_predictions(
            s.checkpoint, [s.seed * 1000 + k for k in range(s.test_sequences)], "val", **common
        )
        save_npz(
            path,
            meta=np.array(meta),
            fit_pred=fit["pred"],
            fit_gt=fit["gt"],
            test_pred=test["pred"],
            test_gt=test["gt"],
            seconds=np.array(float(fit["seconds"] + test["seconds"])),
        )
    D.barrier()
    return load_npz(path)


def studio_sequence_data(cfg: SequenceExperimentConfig) -> SequenceData:
    """Refiner clips of ``data.source: studio``
    (see :class:`~mvpose.engine.sequence_config.StudioDataConfig`)."""
    from mvpose.data.motion import generate_motion
    from mvpose.data.sequences import motion_to_world_h36m17
    from mvpose.engine.sequence_data import turn_about_vertical

    s = cfg.data.studio
    z = _fit_and_test(cfg)
    noise = (
        fit_noise_model(cfg.data.noise_3d.fit_from)
        if cfg.data.noise_3d.fit_from
        else NoiseModel3D.fit(z["fit_pred"], z["fit_gt"])
    )
    train = [
        Clip(("studio", f"fit_{k}", "model"), p, g, fps=50.0)
        for k, (p, g) in enumerate(zip(z["fit_pred"], z["fit_gt"]))
    ]
    for k in range(s.procedural_train):
        seed = 2 * (s.seed * 100_000 + 50_000 + k)  # even: the train split's side, away from the fit seeds
        world = motion_to_world_h36m17(generate_motion(seed, s.procedural_frames, 50.0))
        world = turn_about_vertical(world, float(np.random.default_rng([s.seed, k]).uniform(0.0, 360.0)))
        x = noise.apply(world, np.random.default_rng([cfg.data.noise_3d.seed, 0, k]))
        train.append(Clip(("studio", f"procedural_{seed}", "noise_model"), x, world, fps=50.0))
    test = [
        Clip(("studio", f"test_{k}", "model"), p, g, fps=50.0)
        for k, (p, g) in enumerate(zip(z["test_pred"], z["test_gt"]))
    ]
    info = {"studio_cache_seconds": float(z.get("seconds", np.nan))}
    return SequenceData(train, test, H36M17, H36M17.flip_indices, noise, info)
