"""The schema of ``task: sequence`` configs: temporal lifting (2D -> 3D) and refinement (3D -> 3D).

Loaded like every mvpose config (:func:`mvpose.engine.config.load_config` with
``cls=SequenceExperimentConfig``): strict YAML, ``base:`` chains, ``--set a.b=value``. Model
hyperparameters keep the reference implementations' own names (as the fixtures' ``config.json``
spell them: VideoPose3D's ``filter_widths``/``channels``, PoseFormerV2's ``number_of_frames``/
``number_of_kept_frames``/``number_of_kept_coeffs``, P-STMO's ``frames``/``layers``/``channel``/
``d_hid``/``temporal_mask_rate``, TGraphNet's ``num_hidden_nodes``/``gconv_stages``...).

The defaults of each model section are that model's published configuration; the training schedule
of each paper is in its configs under ``configs/sequence/`` (sources in docs/temporal_training.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mvpose.engine.config import ConfigError, LogConfig

__all__ = [
    "MODEL_KINDS",
    "VideoPose3DConfig",
    "PoseFormerV2Config",
    "PSTMOConfig",
    "SRNetConfig",
    "TGraphNetConfig",
    "SeqModelConfig",
    "Noise2DConfig",
    "Noise3DConfig",
    "MotionDataConfig",
    "StudioDataConfig",
    "SeqDataConfig",
    "SeqOptimConfig",
    "SeqLossConfig",
    "SeqTrainConfig",
    "SeqEvalConfig",
    "SequenceExperimentConfig",
    "load_sequence_config",
    "check_sequence_config",
]

MODEL_KINDS = ("videopose3d", "poseformerv2", "pstmo", "pstmo_pretrain", "srnet", "tgraphnet")


# ------------------------------------------------------------------------------------------ models
@dataclass
class VideoPose3DConfig:
    """VideoPose3D ``run.py`` (Pavllo et al. 2019): ``-arc``, ``-ch``, ``-drop``, ``--causal``,
    ``--dense``."""

    filter_widths: list[int] = field(default_factory=lambda: [3, 3, 3, 3, 3])
    channels: int = 1024
    dropout: float = 0.25
    causal: bool = False
    dense: bool = False
    #: train the evaluation model itself instead of the strided ``TemporalModelOptimized1f`` twin
    disable_optimizations: bool = False


@dataclass
class PoseFormerV2Config:
    """PoseFormerV2 ``run_poseformer.py`` (Zhao et al. 2023): ``-frame``, ``-frame-kept``,
    ``-coeff-kept``..."""

    number_of_frames: int = 243
    number_of_kept_frames: int = 27
    number_of_kept_coeffs: int = 27
    depth: int = 4
    embed_dim_ratio: int = 32
    num_heads: int = 8
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    dropout: float = 0.0
    drop_path_rate: float = 0.1  # the training model's (the evaluation copy has 0; same weights)


@dataclass
class PSTMOConfig:
    """P-STMO ``run.py`` / ``common/opt.py`` (Shan et al. 2022): both stages (``-f``, ``--layers``,
    ``--channel``, ``--d_hid``, ``-tmr``, ``-smn``); ``stride_num`` None: P-STMO's table by frames."""

    frames: int = 243
    layers: int = 3
    channel: int = 256
    d_hid: int = 512
    stride_num: list[int] | None = None
    transformer_heads: int = 8
    dropout: float = 0.1
    # stage I (masked pose modelling)
    temporal_mask_rate: float = 0.8
    spatial_mask_num: int = 2
    dec_dim_shrink: int = 2
    decoder_layers: int | None = None


@dataclass
class SRNetConfig:
    """SRNet ``run.py`` (Zeng et al. 2020): ``-arc``, ``-ch``, ``--group``, ``--recombine``, ``--norm``."""

    filter_widths: list[int] = field(default_factory=lambda: [3, 3, 3, 3, 3])
    channels: int = 1024
    dropout: float = 0.0
    causal: bool = False
    group: int = 5
    recombine: Literal["multiply", "add", "concat"] = "multiply"
    norm: Literal["base", "proj", "weak_proj", "lcn"] = "base"
    disable_optimizations: bool = False


@dataclass
class TGraphNetConfig:
    """TGraphNet ``params.json`` (``models/stgcn/root_rel``); the first input width follows the data."""

    num_hidden_nodes: list[list[int]] = field(
        default_factory=lambda: [[2, 128], [128, 128], [128, 256], [256, 256]]
    )
    gconv_stages: list[int] = field(default_factory=lambda: [1, 2, 2, 2])
    gcn_window: list[int] = field(default_factory=lambda: [3, 3, 3, 3])
    tcn_window: list[int] = field(default_factory=lambda: [3, 3, 3, 3])
    in_frames: int = 81
    num_groups: int = 4
    dropout: float = 0.1


@dataclass
class SeqModelConfig:
    """The temporal model: ``kind`` and its section (the other sections are ignored)."""

    kind: Literal["videopose3d", "poseformerv2", "pstmo", "pstmo_pretrain", "srnet", "tgraphnet"] = (
        "videopose3d"
    )
    #: refinement (3D input): the network predicts a correction added to the input pose
    residual: bool = True
    #: refinement: the 3D input is first cleaned and low-passed at this cut-off (Hz; 0: raw input), see
    #: :func:`mvpose.engine.sequence_data.robust_lowpass`; the network learns a correction of that
    prefilter_hz: float = 0.0
    prefilter_outlier_mm: float = 150.0
    #: pstmo: an mvpose ``pstmo_pretrain`` checkpoint whose encoder is transferred (P-STMO's
    #: ``--MAE_reload 1 --previous_dir``)
    pretrained: str | None = None
    #: a reference checkpoint (``mvpose.models.from_official``) to start from
    official_checkpoint: str | None = None
    videopose3d: VideoPose3DConfig = field(default_factory=VideoPose3DConfig)
    poseformerv2: PoseFormerV2Config = field(default_factory=PoseFormerV2Config)
    pstmo: PSTMOConfig = field(default_factory=PSTMOConfig)
    srnet: SRNetConfig = field(default_factory=SRNetConfig)
    tgraphnet: TGraphNetConfig = field(default_factory=TGraphNetConfig)


# -------------------------------------------------------------------------------------------- data
@dataclass
class Noise2DConfig:
    """Detector-like 2D noise (:class:`mvpose.data.sequences.NoiseConfig`), for motion sources."""

    sigma_px: float = 0.0
    outlier_rate: float = 0.0
    outlier_px: float = 100.0
    swap_rate: float = 0.0
    swap_run_frames: float = 5.0
    drop_rate: float = 0.0
    seed: int = 0


@dataclass
class Noise3DConfig:
    """The 3D noise of refinement inputs (:class:`mvpose.engine.sequence_noise.NoiseModel3D`):
    fitted from ``(prediction, GT)`` pairs in ``fit_from`` (an npz with ``pred`` and ``gt`` arrays
    ``(S, T, J, 3)`` mm, e.g. a multi-view model's outputs), or the parameters below."""

    fit_from: str | None = None
    bias_mm: float = 0.0
    std_mm: float = 20.0
    rho: float = 0.0  # lag-1 temporal correlation of the Gaussian part
    outlier_rate: float = 0.0
    outlier_mm: float = 100.0
    seed: int = 0


@dataclass
class MotionDataConfig:
    """Motion-capture / procedural sequences seen through a rig (``source: motion``).

    Training and test motions never mix: ``train_motions``/``procedural_train`` (even procedural
    seeds) train, ``test_motions``/``procedural_test`` (odd seeds) are scored."""

    train_motions: list[str] = field(default_factory=list)  # BVH / AMC paths
    test_motions: list[str] = field(default_factory=list)
    procedural_train: int = 0  # procedural motions added to the training set
    procedural_test: int = 0
    procedural_frames: int = 300
    fps: float = 50.0
    #: an int V (``ring_rig(V)``, the synthetic studio's ring) or a calibration file
    rig: int | str = 4
    #: subjects of a calibration file with several (e.g. Human3.6M's): their rigs train / test
    train_subjects: list[str] = field(default_factory=list)
    test_subjects: list[str] = field(default_factory=list)
    yaw_copies: int = 1  # copies of each training motion turned by random yaws (first one as is)
    test_yaws_deg: list[float] = field(default_factory=lambda: [0.0])
    clip_frames: int = 0  # cut motions into clips of this many frames (0: whole motions)
    triangulation: Literal["dlt", "robust", "refine", "robust+refine"] = "dlt"
    seed: int = 0


@dataclass
class StudioDataConfig:
    """Per-frame 3D of a multi-view model on rendered synthetic-studio sequences (``source: studio``).

    Rig, crop size and joint set are the checkpoint's (its stored config). ``fit_sequences``
    train-split sequences give the ``(prediction, GT)`` pairs the noise model is fitted on (they also
    train, as they are); the refiner trains on ``procedural_train`` more train-split motions with
    sampled noise; ``test_sequences`` val-split sequences (rendered, run through the model) are scored."""

    checkpoint: str | None = None  # an mvpose multi-view checkpoint (mvpose.engine.load_model)
    fit_sequences: int = 4
    test_sequences: int = 2
    sequence_frames: int = 100
    procedural_train: int = 32
    procedural_frames: int = 300
    occluder_prob: float = 0.0
    batch_size: int = 4  # frames per multi-view forward
    seed: int = 0
    cache: str | None = None  # npz of the model's per-frame predictions (default <out_dir>/studio_3d.npz)


@dataclass
class SeqDataConfig:
    """Where sequences come from, what the model sees and how training windows are cut.

    Sources: ``h36m_npz`` (VideoPose3D's ``<root>/data_3d_<dataset>.npz`` and
    ``data_2d_<dataset>_<keypoints>.npz``, cameras from ``cameras``), ``3dhp_npz`` (P-STMO's
    ``<root>/data_train_3dhp.npz`` / ``data_test_3dhp.npz``), ``motion`` (:class:`MotionDataConfig`)
    or ``studio`` (:class:`StudioDataConfig`). ``input: 2d`` lifts normalised 2D; ``3d`` refines 3D
    (``input_3d``: ground truth, ground truth plus ``noise_3d``, triangulated noisy 2D (motion) or
    the multi-view model's output (studio)).
    """

    source: Literal["h36m_npz", "3dhp_npz", "motion", "studio"] = "motion"
    input: Literal["2d", "3d"] = "2d"
    input_3d: Literal["gt", "noise_model", "triangulated", "model"] = "noise_model"
    root: str | None = None
    dataset: str = "h36m"
    keypoints: str = "cpn_ft_h36m_dbb"
    cameras: str | None = None  # calibration with the subjects' cameras (e.g. Human3.6M's cameras.h5)
    subjects_train: list[str] = field(default_factory=lambda: ["S1", "S5", "S6", "S7", "S8"])
    subjects_test: list[str] = field(default_factory=lambda: ["S9", "S11"])
    actions: list[str] = field(default_factory=list)  # action-name prefixes; empty: all
    downsample: int = 1  # VideoPose3D's --downsample: keep every n-th frame
    t_downsample: int = 1  # P-STMO's -tds: windows sample every n-th frame (every frame still a target)
    data_augmentation: bool = True  # training-time flips
    chunk_length: int = 1  # target frames per training window (VideoPose3D's --stride; TGraphNet 5)
    batch_size: int = 1024  # windows per step and process
    motion: MotionDataConfig = field(default_factory=MotionDataConfig)
    studio: StudioDataConfig = field(default_factory=StudioDataConfig)
    noise_2d: Noise2DConfig = field(default_factory=Noise2DConfig)
    noise_3d: Noise3DConfig = field(default_factory=Noise3DConfig)


# ---------------------------------------------------------------------------------- optimisation
@dataclass
class SeqOptimConfig:
    """Per-epoch schedules of the papers: ``lr * lr_decay ** epoch``, and P-STMO's extra
    ``lr_decay_large`` every ``large_decay_epoch`` epochs (instead of ``lr_decay`` that epoch)."""

    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    lr_decay: float = 0.95
    lr_decay_large: float = 0.5
    large_decay_epoch: int = 0  # 0: off
    weight_decay: float = 0.0
    amsgrad: bool = True
    #: VideoPose3D's BatchNorm momentum, decayed exponentially over the epochs; None: left alone
    bn_momentum_initial: float | None = None
    bn_momentum_final: float = 0.001
    grad_clip: float = 0.0


@dataclass
class SeqLossConfig:
    """MPJPE on root-relative poses (metres, as the references), plus P-STMO's full-sequence term and a
    first-difference (velocity) term (TGraphNet's motion loss)."""

    sequence_weight: float = 1.0  # pstmo: mpjpe(all frames) + mpjpe(centre)
    velocity_weight: float = 0.0


@dataclass
class SeqTrainConfig:
    epochs: int = 80
    max_steps: int = 0  # >0: train this many steps instead of `epochs` epochs (short runs)
    val_every_epochs: int = 1  # 0: only at the end
    checkpoint_every: int = 0  # steps (a checkpoint is also written at every epoch end); 0: off
    log_every: int = 50
    amp: bool = True  # on GPU only
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads_per_process: int = 0


@dataclass
class SeqEvalConfig:
    """``protocol``: ``h36m`` (P1, P2, MPJVE per action / subject), ``3dhp`` (PCK, AUC over the
    valid frames, :func:`mvpose.data.sequences.evaluate_3dhp`), ``auto`` (by the data source)."""

    protocol: Literal["auto", "h36m", "3dhp"] = "auto"
    test_time_augmentation: bool = True
    batch_size: int = 512  # windows per forward (fixed-window models)
    eval_chunk: int = 31  # sequence-to-sequence models (TGraphNet): centre frames kept per window
    #: set the predicted root joint to 0 before scoring; None: the model's reference convention
    zero_root: bool | None = None


@dataclass
class SequenceExperimentConfig:
    """A temporal-stage run (``task: sequence``)."""

    task: Literal["sequence"] = "sequence"
    name: str = "sequence"
    out_dir: str = "runs/sequence"
    model: SeqModelConfig = field(default_factory=SeqModelConfig)
    data: SeqDataConfig = field(default_factory=SeqDataConfig)
    optim: SeqOptimConfig = field(default_factory=SeqOptimConfig)
    loss: SeqLossConfig = field(default_factory=SeqLossConfig)
    train: SeqTrainConfig = field(default_factory=SeqTrainConfig)
    eval: SeqEvalConfig = field(default_factory=SeqEvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


def check_sequence_config(
    cfg: SequenceExperimentConfig, source: str = "<config>"
) -> SequenceExperimentConfig:
    """Cross-field checks the types cannot express; raises :class:`ConfigError` naming the key."""
    m, d = cfg.model, cfg.data
    if m.kind == "pstmo_pretrain" and d.input != "2d":
        raise ConfigError(source, "data.input", "pstmo_pretrain reconstructs 2D sequences: use input 2d")
    if d.batch_size < 1:
        raise ConfigError(source, "data.batch_size", f"must be >= 1, got {d.batch_size}")
    if d.chunk_length < 1:
        raise ConfigError(source, "data.chunk_length", f"must be >= 1, got {d.chunk_length}")
    if d.downsample < 1 or d.t_downsample < 1:
        raise ConfigError(source, "data.downsample", "downsample and t_downsample must be >= 1")
    if m.kind == "tgraphnet":
        n = m.tgraphnet.in_frames
        if (n - d.chunk_length) % 2:
            raise ConfigError(
                source,
                "data.chunk_length",
                f"TGraphNet windows of in_frames={n} need an odd chunk_length (context split evenly)",
            )
        if cfg.eval.eval_chunk < 1 or (n - cfg.eval.eval_chunk) % 2:
            raise ConfigError(source, "eval.eval_chunk", f"must be odd and <= in_frames={n}")
    elif d.chunk_length != 1 and m.kind in ("poseformerv2", "pstmo", "pstmo_pretrain"):
        raise ConfigError(source, "data.chunk_length", f"{m.kind} predicts one frame per window: use 1")
    if d.source == "h36m_npz" and not d.root:
        raise ConfigError(source, "data.root", "the folder of data_3d_<dataset>.npz / data_2d_*.npz")
    if d.source == "3dhp_npz" and not d.root:
        raise ConfigError(source, "data.root", "the folder of data_train_3dhp.npz / data_test_3dhp.npz")
    if d.source == "motion" and d.motion.clip_frames < 0:
        raise ConfigError(source, "data.motion.clip_frames", "must be >= 0")
    if d.input == "3d" and d.input_3d == "triangulated" and d.source != "motion":
        raise ConfigError(source, "data.input_3d", "'triangulated' needs data.source: motion")
    if d.input == "3d" and d.input_3d == "model" and d.source != "studio":
        raise ConfigError(source, "data.input_3d", "'model' needs data.source: studio")
    if d.source == "studio" and (d.input != "3d" or d.input_3d != "model"):
        raise ConfigError(
            source, "data.input", "source studio refines the model's 3D: input 3d, input_3d model"
        )
    if d.source == "studio" and not d.studio.checkpoint:
        raise ConfigError(source, "data.studio.checkpoint", "an mvpose multi-view checkpoint is required")
    if cfg.train.epochs < 1 and cfg.train.max_steps < 1:
        raise ConfigError(source, "train.epochs", "need epochs >= 1 or max_steps >= 1")
    return cfg


def load_sequence_config(path, overrides=()) -> SequenceExperimentConfig:
    """:func:`~mvpose.engine.config.load_config` into :class:`SequenceExperimentConfig`, checked."""
    from mvpose.engine.config import load_config

    cfg = load_config(path, overrides, cls=SequenceExperimentConfig)
    return check_sequence_config(cfg, str(path) if path is not None else "<defaults>")
