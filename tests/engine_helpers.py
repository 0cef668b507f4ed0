"""A tiny training config for the engine tests (ResNet-18, 64^2 crops, 3 views, 8^3 cuboid)."""

from __future__ import annotations

from pathlib import Path

from mvpose.engine.config import load_config

REPO = Path(__file__).resolve().parents[1]


def tiny_overrides(out_dir: Path, kind: str = "volumetric", steps: int = 4) -> list[str]:
    return [
        f"out_dir={out_dir}",
        f"model.kind={kind}",
        "model.deconv_channels=32",
        "model.volume_size=8",
        "model.v2v_channels=[32, 64]",
        "data.image_size=64",
        "data.train_samples=8",
        "data.val_samples=6",
        "data.batch_size=2",
        "data.val_batch_size=4",
        "data.synthetic.rig=3",
        "data.synthetic.num_motions=2",
        "data.synthetic.val_num_motions=1",
        "data.synthetic.motion_frames=40",
        "optim.lr=1e-3",
        "optim.warmup_steps=0",
        "optim.scheduler=constant",
        f"train.max_steps={steps}",
        "train.val_every=0",
        "train.checkpoint_every=2",
        "train.log_every=1",
        "train.image_every=0",
        "train.threads_per_process=1",
        "log.progress=false",
        "log.tensorboard=false",
    ]


def tiny_config(out_dir: Path, kind: str = "volumetric", steps: int = 4, extra: list[str] = ()):
    return load_config(
        REPO / "configs/synthetic/volumetric.yaml", [*tiny_overrides(out_dir, kind, steps), *extra]
    )
