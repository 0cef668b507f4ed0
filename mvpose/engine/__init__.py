"""Training and evaluation: configs, DDP, the loop and its hooks, checkpoints, logging, evaluation.

``torchrun train.py --config configs/....yaml`` drives :class:`Trainer`; ``load_model(checkpoint)``
rebuilds a trained model for inference. See docs/training.md.
"""

from mvpose.engine.build import build_datasets, build_model, build_optimizer, build_scheduler, load_model
from mvpose.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mvpose.engine.config import ConfigError, ExperimentConfig, apply_overrides, config_to_dict, load_config

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ExperimentConfig",
    "apply_overrides",
    "build_datasets",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "config_to_dict",
    "load_checkpoint",
    "load_config",
    "load_model",
    "save_checkpoint",
]
