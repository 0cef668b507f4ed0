"""Experiment configs: dataclasses loaded strictly from YAML, overridable with ``--set a.b=value``.

``load_config(path, overrides)`` reads a YAML file into :class:`ExperimentConfig`. Unknown keys,
wrong types and bad choices raise :class:`ConfigError` naming the file and the dotted key. A config
may start from another with ``base: other.yaml`` (a path relative to the file); its keys are
merged under the file's own. ``--set`` values are parsed as YAML scalars/lists and type-checked
like file values. ``config_to_dict`` gives the resolved config that runs and checkpoints store.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mvpose.errors import FileFieldError

__all__ = [
    "ConfigError",
    "ModelConfig",
    "SyntheticDataConfig",
    "DataConfig",
    "OptimConfig",
    "LossConfig",
    "TrainConfig",
    "EvalConfig",
    "LogConfig",
    "ExperimentConfig",
    "load_config",
    "read_config_dict",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "git_revision",
]


class ConfigError(FileFieldError):
    """A config file or override is invalid (unknown key, wrong type, bad value)."""

    file_label = "config"
    field_label = "key"


# ----------------------------------------------------------------------------------- schema
@dataclass
class ModelConfig:
    """The multi-view model. Names follow learnable triangulation / ContextPose where they exist."""

    kind: Literal["algebraic", "volumetric", "contextpose"] = "volumetric"
    num_layers: int = 18
    num_joints: int = 17
    deconv_channels: int = 256  # channels of the three deconvolutions (the papers: 256)
    #: V2V encoder-decoder channels, one level per entry after the first (learnable triangulation's:
    #: 32, 64, 128, 128, 128, 128; the volume side must be divisible by 2**levels)
    v2v_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128, 128, 128])
    #: a local pose-ResNet / MSRA backbone checkpoint (backbone-only or full), loaded before training
    pretrained_backbone: str | None = None
    #: a reference checkpoint (learnable triangulation / ContextPose layout) to start from
    official_checkpoint: str | None = None
    # algebraic
    use_confidences: bool = True
    heatmap_multiplier: float = 100.0
    heatmap_softmax: bool = True
    # volumetric / contextpose
    volume_aggregation_method: Literal["sum", "max", "conf", "conf_norm", "softmax"] = "softmax"
    volume_size: int = 64
    cuboid_side: float = 2500.0
    volume_multiplier: float = 1.0
    volume_softmax: bool = True
    volume_features_dim: int = 32
    rotate_in_training: bool = True
    #: cuboid centre: the batch's ``root_3d`` (GT pelvis or a prediction file), the GT joints, or an
    #: algebraic model run end to end (``root_checkpoint``: an mvpose checkpoint of one)
    root_source: Literal["batch", "gt", "algebraic"] = "batch"
    root_checkpoint: str | None = None
    # contextpose
    limb_stats: str | None = None  # mean_and_std_limb_length.h5; None: computed from the training set
    temperature: float = 1500.0
    att_channels: int = 51


@dataclass
class SyntheticDataConfig:
    """:class:`~mvpose.data.synthetic.SyntheticStudio` options (train and val share them)."""

    rig: int = 4  # cameras of the procedural ring
    calib: str | None = None  # or a calibration file
    motions: list[str] = field(default_factory=lambda: ["procedural"])
    num_motions: int = 24  # procedural motions of the train split
    val_num_motions: int = 8  # procedural motions of the val split (disjoint seeds)
    motion_frames: int = 300
    val_fraction: float = 0.25  # share of motion files held out (BVH/AMC)
    occluder_prob: float = 0.3
    bbox_jitter: float = 0.0
    seed: int = 0


@dataclass
class DataConfig:
    dataset: Literal["synthetic", "h36m", "3dhp"] = "synthetic"
    image_size: int = 256
    train_samples: int = 1000  # synthetic: samples per epoch
    val_samples: int = 200  # synthetic: held-out samples
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    # Human3.6M (learnable triangulation layout) / MPI-INF-3DHP
    root: str | None = None
    labels: str | None = None
    root_predictions_train: str | None = None
    root_predictions_val: str | None = None
    train_subjects: list[str] = field(default_factory=list)
    val_subjects: list[str] = field(default_factory=list)
    val_every_n_frames: int = 1
    with_damaged_actions: bool = True
    batch_size: int = 4  # per process
    val_batch_size: int = 8
    num_workers: int = 0


@dataclass
class OptimConfig:
    """Adam with parameter groups: ``lr`` for the backbone, ``volume_lr`` for process_features and
    the volume network (learnable triangulation: 1e-4 / 1e-3); ``None`` = ``lr``."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    volume_lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: Literal["constant", "step", "multistep", "cosine"] = "constant"
    milestones: list[int] = field(default_factory=list)  # steps, for "multistep"
    step_size: int = 1000  # for "step"
    gamma: float = 0.1
    warmup_steps: int = 0
    grad_clip: float = 0.0  # max gradient norm; 0: off


@dataclass
class LossConfig:
    """Keypoint loss on ``scale_keypoints_3d * mm`` (0.1 in the papers), optional volumetric CE,
    ContextPose's global-attention loss (weight 1e6, after ``attention_loss_start`` steps)."""

    criterion: Literal["mae", "mse", "mse_smooth"] = "mae"
    mse_smooth_threshold: float = 400.0
    scale_keypoints_3d: float = 0.1
    volumetric_ce_weight: float = 0.0
    global_attention_weight: float = 0.0
    attention_loss_start: int = 0
    attention_loss_end: int | None = None


@dataclass
class TrainConfig:
    max_steps: int = 1000
    val_every: int = 500  # steps; 0: only at the end
    checkpoint_every: int = 500
    log_every: int = 10
    image_every: int = 250  # TensorBoard images; 0: off
    amp: bool = True  # on GPU only
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads_per_process: int = 0  # torch.set_num_threads on CPU; 0: cores / processes


@dataclass
class EvalConfig:
    protocol: Literal["h36m", "3dhp"] = "h36m"
    root_joint: int = 6
    png_samples: int = 1  # samples in the final pred-vs-gt PNG


@dataclass
class LogConfig:
    tensorboard: bool = True
    progress: bool = True


@dataclass
class ExperimentConfig:
    """A multi-view training run. (``task: sequence`` configs use the temporal stage's schema,
    :mod:`mvpose.engine.sequence`.)"""

    task: Literal["multiview"] = "multiview"
    name: str = "experiment"
    out_dir: str = "runs/experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


# ------------------------------------------------------------------------------ conversion
def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp, where: str, source: str) -> Any:
    """``value`` checked against the annotation ``tp`` (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, source)
            except ConfigError:
                pass
        raise ConfigError(source, where, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(source, where, f"expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(source, where, f"expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_convert(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(source, where, f"expected a mapping of {tp.__name__} fields, got {value!r}")
        return _from_dict(tp, value, where, source)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, where, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, where, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(source, where, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, where, f"expected a string, got {value!r}")
        return value
    raise ConfigError(source, where, f"unsupported field type {tp!r}")


def _from_dict(cls, data: dict, prefix: str, source: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = ", ".join(f"{prefix}.{k}" if prefix else str(k) for k in unknown)
        raise ConfigError(source, where, f"unknown key; {cls.__name__} has {sorted(names)}")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k, source) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict, source: str = "<dict>", cls=None):
    """A config dataclass (default :class:`ExperimentConfig`) from a nested mapping, strictly."""
    cls = cls or ExperimentConfig
    if not isinstance(data, dict):
        raise ConfigError(source, "<top>", f"expected a mapping, got {type(data).__name__}")
    return _from_dict(cls, data, "", source)


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(path, "base", "circular 'base' chain")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(path, "<yaml>", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "<top>", f"expected a mapping, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(path, "base", f"expected a path, got {base!r}")
        data = _merge(_read_yaml(path.parent / base, (*seen, path.resolve())), data)
    return data


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...], source: str = "--set") -> dict:
    """``["a.b=value", ...]`` merged into a nested mapping; values parsed as YAML (``1e-4``,
    ``[1, 2]``, ``null``, ``true``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(source, item, "expected KEY=VALUE (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(source, key, f"cannot parse {raw!r}: {exc}") from None
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(source, key, f"{p!r} is not a section")
        node[parts[-1]] = value
    return data


def read_config_dict(path: str | Path) -> dict:
    """The raw mapping of a YAML config with its ``base:`` chain merged (not yet validated)."""
    return _read_yaml(Path(path))


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), cls=None):
    """Read ``path`` (YAML; None: the defaults) and apply ``--set`` overrides, strictly, into ``cls``
    (default :class:`ExperimentConfig`; any dataclass schema, e.g. the sequence task's)."""
    data = _read_yaml(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        config_from_dict(data, source, cls)  # file errors name the file, not --set
        data = apply_overrides(data, overrides)
        source = f"{source} with --set"
    return config_from_dict(data, source, cls)


def git_revision(path: str | Path | None = None) -> str | None:
    """The git commit of the code (``+dirty`` if modified), or None outside a checkout."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")
