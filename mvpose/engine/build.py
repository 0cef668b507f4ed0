"""Builders from an :class:`~mvpose.engine.config.ExperimentConfig`: model, datasets, optimizer with
parameter groups, learning-rate schedule. Plain functions, no registries."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from mvpose.engine.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig

__all__ = ["build_model", "build_datasets", "build_optimizer", "build_scheduler", "load_model"]

_OFFICIAL_KIND = {"algebraic": "lt_algebraic", "volumetric": "lt_volumetric", "contextpose": "contextpose"}


def _limb_stats(cfg: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    from mvpose.data.limb_stats import limb_stats_from_source, read_limb_stats_h5

    if cfg.model.limb_stats:
        return read_limb_stats_h5(cfg.model.limb_stats)
    if cfg.data.dataset == "synthetic":
        mean, std, _ = limb_stats_from_source("synthetic", num_motions=32, seed=cfg.data.synthetic.seed)
        return mean, std
    if cfg.data.dataset == "h36m" and cfg.data.labels:
        mean, std, _ = limb_stats_from_source(
            "h36m", cfg.data.labels, subjects=tuple(cfg.data.train_subjects)
        )
        return mean, std
    raise ValueError("model.limb_stats: give the mean_and_std_limb_length.h5 of the training data")


def _root_model(m: ModelConfig) -> nn.Module | None:
    if m.root_source != "algebraic":
        return None
    if not m.root_checkpoint:
        raise ValueError(
            "model.root_source=algebraic needs model.root_checkpoint (an algebraic mvpose checkpoint)"
        )
    return load_model(m.root_checkpoint)


def build_model(cfg: ExperimentConfig) -> nn.Module:
    """The multi-view model the config names, initialised from ``official_checkpoint`` or
    ``pretrained_backbone`` when given."""
    from mvpose.models.algebraic import AlgebraicTriangulationNet
    from mvpose.models.backbone import load_pose_resnet_backbone, pose_resnet
    from mvpose.models.context import ContextPoseNet
    from mvpose.models.v2v import EncoderDecoder, V2VModel
    from mvpose.models.volumetric import VolumetricTriangulationNet

    m = cfg.model
    if m.official_checkpoint:
        from mvpose.models import from_official

        overrides = {}
        if m.kind == "volumetric":
            overrides = dict(volume_size=m.volume_size, cuboid_side=m.cuboid_side)
        return from_official(_OFFICIAL_KIND[m.kind], m.official_checkpoint, **overrides)
    size = cfg.data.image_size
    deconv = (m.deconv_channels,) * 3
    if m.kind == "algebraic":
        net = AlgebraicTriangulationNet(
            m.num_layers,
            m.num_joints,
            backbone=pose_resnet(
                m.num_layers, m.num_joints, alg_confidences=m.use_confidences, deconv_channels=deconv
            ),
            use_confidences=m.use_confidences,
            heatmap_multiplier=m.heatmap_multiplier,
            heatmap_softmax=m.heatmap_softmax,
        )
    elif m.kind == "volumetric":
        net = VolumetricTriangulationNet(
            m.num_layers,
            m.num_joints,
            volume_aggregation_method=m.volume_aggregation_method,
            volume_size=m.volume_size,
            cuboid_side=m.cuboid_side,
            volume_multiplier=m.volume_multiplier,
            volume_softmax=m.volume_softmax,
            volume_features_dim=m.volume_features_dim,
            root_source=m.root_source,
            root_model=_root_model(m),
            rotate_in_training=m.rotate_in_training,
            backbone=pose_resnet(
                m.num_layers,
                m.num_joints,
                vol_confidences=m.volume_aggregation_method.startswith("conf"),
                vol_confidences_dim=m.volume_features_dim,
                deconv_channels=deconv,
            ),
            volume_net=V2VModel(
                m.volume_features_dim, m.num_joints, encoder_decoder=EncoderDecoder(tuple(m.v2v_channels))
            ),
        )
    else:
        mean, std = _limb_stats(cfg)
        net = ContextPoseNet(
            pose_resnet(m.num_layers, m.num_joints, deconv_channels=deconv),
            num_joints=m.num_joints,
            deconv_channels=m.deconv_channels,
            volume_features_dim=m.volume_features_dim,
            cuboid_size=m.cuboid_side,
            volume_size=m.volume_size,
            volume_multiplier=m.volume_multiplier,
            volume_aggregation_method=m.volume_aggregation_method,
            image_shape=(size, size),
            heatmap_shape=(size // 4, size // 4),
            root_model=_root_model(m),
            limb_mean=mean,
            limb_std=std,
            temperature=m.temperature,
        )
        for prm in net.backbone.final_layer.parameters():  # the heatmap head is unused (DDP needs this)
            prm.requires_grad_(False)
    if m.pretrained_backbone:
        load_pose_resnet_backbone(net.backbone, m.pretrained_backbone)
    return net


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu", eval_mode: bool = True
) -> nn.Module:
    """A trained model from an mvpose training checkpoint (its config rebuilds the architecture)."""
    from mvpose.engine.checkpoint import load_checkpoint
    from mvpose.engine.config import config_from_dict
    from mvpose.models._checkpoint import load_state_dict_strict

    state = load_checkpoint(path, map_location)
    cfg = config_from_dict(state["config"], f"{path} (stored config)")
    cfg.model.official_checkpoint = None
    cfg.model.pretrained_backbone = None
    net = build_model(cfg)
    load_state_dict_strict(net, state["model"], path, f"the {cfg.model.kind} model of its config")
    net.config = cfg
    return net.eval() if eval_mode else net


def build_datasets(cfg: ExperimentConfig):
    """``(train, val)`` multi-view datasets (docs/datasets.md sample contract)."""
    d: DataConfig = cfg.data
    if d.dataset == "synthetic":
        from mvpose.data.synthetic import SyntheticStudio

        s = d.synthetic
        common = dict(
            seed=s.seed,
            rig=s.calib if s.calib else s.rig,
            motions=s.motions if s.motions != ["procedural"] else "procedural",
            motion_frames=s.motion_frames,
            val_fraction=s.val_fraction,
            image_size=d.image_size,
            occluder_prob=s.occluder_prob,
            bbox_jitter=s.bbox_jitter,
        )
        train = SyntheticStudio(
            num_samples=d.train_samples, split="train", num_motions=s.num_motions, **common
        )
        val = SyntheticStudio(num_samples=d.val_samples, split="val", num_motions=s.val_num_motions, **common)
        return train, val
    if d.dataset == "h36m":
        from mvpose.data.h36m import Human36MMultiView

        if not d.root:
            raise ValueError("data.root: the Human3.6M folder (see data/README.md)")
        common = dict(image_size=d.image_size, exclude_damaged=not d.with_damaged_actions)
        train = Human36MMultiView(
            d.root,
            d.labels,
            split="train",
            subjects=d.train_subjects or None,
            root_prediction_file=d.root_predictions_train,
            **common,
        )
        val = Human36MMultiView(
            d.root,
            d.labels,
            split="val",
            subjects=d.val_subjects or None,
            root_prediction_file=d.root_predictions_val,
            retain_every_n_frames=d.val_every_n_frames,
            **common,
        )
        return train, val
    from mvpose.data.mpi3dhp import MPIInf3DHPMultiView

    if not d.root:
        raise ValueError("data.root: the MPI-INF-3DHP folder")
    train = MPIInf3DHPMultiView(d.root, subjects=d.train_subjects or None, image_size=d.image_size)
    val = MPIInf3DHPMultiView(
        d.root,
        subjects=d.val_subjects or None,
        image_size=d.image_size,
        retain_every_n_frames=d.val_every_n_frames,
    )
    return train, val


def _is_volume_param(name: str) -> bool:
    return not name.startswith(("backbone.", "root_model."))


def build_optimizer(model: nn.Module, o: OptimConfig) -> torch.optim.Optimizer:
    """Parameter groups: ``backbone`` at ``lr``, the rest (process_features, volume_net) at
    ``volume_lr`` (or ``lr``); frozen parameters and the root model are left out."""
    named = [
        (n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("root_model.")
    ]
    vol_lr = o.volume_lr if o.volume_lr is not None else o.lr
    groups = [
        {"name": "backbone", "lr": o.lr, "params": [p for n, p in named if not _is_volume_param(n)]},
        {"name": "volume", "lr": vol_lr, "params": [p for n, p in named if _is_volume_param(n)]},
    ]
    groups = [g for g in groups if g["params"]]
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=o.weight_decay)
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=o.weight_decay)
    return torch.optim.SGD(groups, momentum=o.momentum, weight_decay=o.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, o: OptimConfig, max_steps: int):
    """A per-step ``LambdaLR``: linear warm-up, then constant / step / multistep / cosine."""

    def factor(step: int) -> float:
        f = 1.0
        if o.warmup_steps and step < o.warmup_steps:
            f = (step + 1) / o.warmup_steps
        if o.scheduler == "step":
            f *= o.gamma ** (step // max(1, o.step_size))
        elif o.scheduler == "multistep":
            f *= o.gamma ** sum(step >= m for m in o.milestones)
        elif o.scheduler == "cosine":
            f *= 0.5 * (1.0 + math.cos(math.pi * min(step, max_steps) / max(1, max_steps)))
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
