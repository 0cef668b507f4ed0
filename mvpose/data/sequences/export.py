"""Export motions seen through a camera rig as VideoPose3D npz files, with detector-like 2D noise.

:func:`export_sequences` takes motions (BVH/AMC files, :class:`~mvpose.data.motion.Motion` objects or
procedural seeds), maps them to H36M-17 in a Z-up world, projects them through a
:class:`~mvpose.geometry.camera.CameraRig` (lens distortion included) and writes

* ``data_3d_<name>.npz``: ``positions_3d[subject][action]`` world positions in metres, expanded to
  Human3.6M's 32 joints by default (see :func:`~.npz.h36m17_to_32`);
* ``data_2d_<name>_<detector>.npz``: ``positions_2d[subject][action]`` = one ``(T, 17, 2)`` pixel array
  per camera (float64), ``metadata`` (VideoPose3D's keys plus ``mvpose``: the rig, fps and noise);
* ``data_rig_<name>.json``: the rig (mvpose JSON, :func:`mvpose.calib.save_rig`).

The names follow VideoPose3D's ``run.py -d <name> -k <detector>`` convention.

Detector noise (:class:`NoiseConfig`, :func:`add_detector_noise`), applied per camera in this order:

1. **left/right swaps**: for every left/right joint pair (from ``flip_indices``) and camera, a
   two-state Markov chain over frames marks runs of swapped frames; runs last ``swap_run_frames``
   frames on average (geometric lengths) and a fraction ``swap_rate`` of all (frame, pair) cells is
   swapped on average (the chain starts in its stationary distribution). In a swapped cell the two
   joints exchange their positions.
2. **Gaussian jitter**: ``N(0, sigma_px^2)`` independently on u and v of every joint.
3. **outliers**: each (frame, joint) with probability ``outlier_rate`` is moved by an offset of uniform
   direction and length uniform in ``[outlier_px / 2, outlier_px]``.
4. **dropped joints**: each (frame, joint) with probability ``drop_rate`` is lost: with
   ``drop_mode="nan"`` its coordinates become NaN (mvpose's missing-data convention); with
   ``drop_mode="confidence"`` it keeps its (noisy) coordinates and gets confidence 0 in the file's
   ``confidence_2d`` key (VideoPose3D itself reads neither NaN-free masks nor confidences: train it on
   ``"confidence"`` files or filter NaNs first).

Joints behind a camera are NaN (confidence 0) whatever the noise. Everything is deterministic: the
stream of camera ``v`` of motion ``i`` is ``numpy.random.default_rng([seed, i, v])``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mvpose.geometry.camera import CameraRig
from mvpose.skeleton import H36M17

from .npz import VP3D_H36M_METADATA, write_positions_2d, write_positions_3d
from .sets import project_world, rig_to_metadata

__all__ = ["NoiseConfig", "add_detector_noise", "export_sequences", "motion_to_world_h36m17"]

logger = logging.getLogger("mvpose.data.sequences")

_DROP_MODES = ("nan", "confidence")


@dataclass(frozen=True)
class NoiseConfig:
    """Detector-like 2D noise (see the module docstring for the model).

    Args:
        sigma_px: standard deviation of the Gaussian jitter per coordinate, pixels.
        outlier_rate: probability that a (frame, joint) is an outlier.
        outlier_px: outlier magnitude; offsets have length uniform in ``[outlier_px / 2, outlier_px]``.
        swap_rate: mean fraction of (frame, left/right pair) cells swapped, in ``[0, 1)``.
        swap_run_frames: mean length of a run of swapped frames (>= 1).
        drop_rate: probability that a (frame, joint) is dropped.
        drop_mode: ``"nan"`` (coordinates NaN) or ``"confidence"`` (confidence 0, coordinates kept).
        seed: the noise seed.
    """

    sigma_px: float = 0.0
    outlier_rate: float = 0.0
    outlier_px: float = 100.0
    swap_rate: float = 0.0
    swap_run_frames: float = 5.0
    drop_rate: float = 0.0
    drop_mode: str = "nan"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("sigma_px", "outlier_px"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"NoiseConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("outlier_rate", "drop_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"NoiseConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        if not self.swap_run_frames >= 1:
            raise ValueError(f"NoiseConfig.swap_run_frames must be >= 1, got {self.swap_run_frames}")
        hi = self.swap_run_frames / (1 + self.swap_run_frames)
        if not 0 <= self.swap_rate <= hi:
            raise ValueError(
                f"NoiseConfig.swap_rate must lie in [0, L / (1 + L)] = [0, {hi:.3f}] for runs of mean length "
                f"L = {self.swap_run_frames}, got {self.swap_rate}"
            )
        if self.drop_mode not in _DROP_MODES:
            raise ValueError(f"NoiseConfig.drop_mode must be one of {_DROP_MODES}, got {self.drop_mode!r}")

    @property
    def is_clean(self) -> bool:
        """True when the configuration adds no noise at all."""
        return self.sigma_px == 0 and self.outlier_rate == 0 and self.swap_rate == 0 and self.drop_rate == 0

    def to_dict(self) -> dict:
        return asdict(self)


def _swap_runs(rng: np.random.Generator, T: int, rate: float, mean_run: float) -> np.ndarray:
    """``(T,)`` bool: a stationary two-state Markov chain, on-fraction ``rate``, mean on-run ``mean_run``."""
    if rate <= 0 or T == 0:
        return np.zeros(T, dtype=bool)
    p_off = 1.0 / mean_run  # leave a swap run
    p_on = min(1.0, rate * p_off / (1.0 - rate))  # start one
    state = bool(rng.random() < rate)
    lengths, states, total = [], [], 0
    while total < T:
        n = 16 + int(2 * T * p_on * p_off / (p_on + p_off))
        on = rng.geometric(p_off, n)
        off = rng.geometric(p_on, n)
        pair = np.stack([on, off] if state else [off, on], 1).reshape(-1)
        lengths.append(pair)
        states.append(np.tile([state, not state], n))
        total += int(pair.sum())
    return np.repeat(np.concatenate(states), np.concatenate(lengths))[:T]


def add_detector_noise(
    keypoints_px: np.ndarray,
    config: NoiseConfig,
    rng: np.random.Generator | int | Sequence[int] | None = None,
    flip_indices: Sequence[int] = H36M17.flip_indices,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Detector-like noise on one camera's clean keypoints (model in the module docstring).

    Args:
        keypoints_px: ``(T, J, 2)`` clean pixels (NaN = not visible).
        config: the noise.
        rng: a numpy ``Generator`` or a seed for ``default_rng``; default ``config.seed``.
        flip_indices: the joint permutation that defines the left/right pairs.

    Returns:
        ``(noisy (T, J, 2), confidence (T, J), info)`` with ``info`` masks ``swapped (T, P)`` (pairs in
        ``info["pairs"] (P, 2)``), ``outlier (T, J)`` and ``dropped (T, J)``.
    """
    x = np.array(keypoints_px, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != 2:
        raise ValueError(f"add_detector_noise: expected (T, J, 2) pixels, got {x.shape}")
    T, J, _ = x.shape
    g = (
        rng
        if isinstance(rng, np.random.Generator)
        else np.random.default_rng(config.seed if rng is None else rng)
    )
    pairs = np.array([(j, int(f)) for j, f in enumerate(flip_indices) if j < int(f)], dtype=np.int64).reshape(
        -1, 2
    )
    swapped = (
        np.stack([_swap_runs(g, T, config.swap_rate, config.swap_run_frames) for _ in pairs], 1)
        if len(pairs)
        else np.zeros((T, 0), dtype=bool)
    )
    if swapped.any():
        a, b = pairs[:, 0], pairs[:, 1]
        xa, xb = x[:, a].copy(), x[:, b].copy()
        m = swapped[..., None]
        x[:, a] = np.where(m, xb, xa)
        x[:, b] = np.where(m, xa, xb)
    if config.sigma_px > 0:
        x += g.normal(0.0, config.sigma_px, size=x.shape)
    outlier = (
        g.random((T, J)) < config.outlier_rate if config.outlier_rate > 0 else np.zeros((T, J), dtype=bool)
    )
    if outlier.any():
        n = int(outlier.sum())
        ang = g.uniform(0.0, 2 * np.pi, n)
        rad = g.uniform(0.5, 1.0, n) * config.outlier_px
        x[outlier] += np.stack([np.cos(ang), np.sin(ang)], -1) * rad[:, None]
    dropped = g.random((T, J)) < config.drop_rate if config.drop_rate > 0 else np.zeros((T, J), dtype=bool)
    conf = np.where(np.isnan(x).any(-1), 0.0, 1.0)
    if config.drop_mode == "nan":
        x[dropped] = np.nan
    conf[dropped] = 0.0
    return x, conf, {"pairs": pairs, "swapped": swapped, "outlier": outlier, "dropped": dropped}


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------

_PROC = re.compile(r"^(?:procedural|seed)[:=](?:seed=)?(-?\d+)$")


def motion_to_world_h36m17(motion, center: bool = True) -> np.ndarray:
    """A :class:`~mvpose.data.motion.Motion` as ``(T, 17, 3)`` H36M-17 world mm, Z up.

    The motion is turned Z-up (:meth:`Motion.to_z_up`) and mapped to H36M-17 (procedural motions
    already are); with ``center`` it is shifted horizontally so that the mean pelvis position over
    the sequence lies above the world origin (heights are kept).
    """
    from mvpose.data.motion import motion_to_h36m17

    m = motion.to_z_up()
    if tuple(m.joint_names) == tuple(H36M17.joint_names):
        pos = m.positions_mm.copy()
    else:
        pos = motion_to_h36m17(m)
    if center:
        c = np.nanmean(pos[:, H36M17.root, :2], axis=0)
        pos[..., :2] -= c
    return pos


def _load_spec(spec, fps: float | None, num_frames: int):
    """``(default action name, Motion)`` of one motion spec."""
    from mvpose.data.motion import Motion, generate_motion, load_motion

    if isinstance(spec, Motion):
        name = Path(spec.source).stem if spec.source else "motion"
        m = spec
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        name = f"procedural_{int(spec)}"
        return name, generate_motion(seed=int(spec), num_frames=num_frames, fps=50.0 if fps is None else fps)
    elif isinstance(spec, str) and _PROC.match(spec.strip()):
        s = int(_PROC.match(spec.strip()).group(1))
        return f"procedural_{s}", generate_motion(
            seed=s, num_frames=num_frames, fps=50.0 if fps is None else fps
        )
    else:
        path = Path(spec)
        name, m = path.stem, load_motion(path)
    if fps is not None and abs(m.fps - fps) > 1e-9:
        m = m.resample(fps)
    return name, m


def _dataset_name(out_npz) -> tuple[Path, str]:
    out = Path(out_npz)
    name = out.name[: -len(".npz")] if out.name.endswith(".npz") else out.name
    for prefix in ("data_3d_", "data_2d_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if not name:
        raise ValueError(f"export_sequences: cannot derive a dataset name from {str(out_npz)!r}")
    return out.parent, name


def export_sequences(
    motions,
    rig: CameraRig | str | Path,
    out_npz: str | Path,
    *,
    noise: NoiseConfig | None = None,
    fps: float | None = None,
    subject: str = "S1",
    num_frames: int = 500,
    center: bool = True,
    distort: bool = True,
    detector: str | None = None,
    joints32: bool = True,
    write_rig: bool = True,
) -> dict[str, Path]:
    """Motions seen through ``rig`` -> VideoPose3D npz files (see the module docstring).

    Args:
        motions: a sequence of motion specs, or ``{action: spec}`` / ``{(subject, action): spec}``.
            A spec is a ``.bvh``/``.amc`` path (an AMC's ``.asf`` is found next to it), a
            :class:`~mvpose.data.motion.Motion`, an ``int`` procedural seed, or a string
            ``"procedural:N"``. Default action names: the file stem, ``procedural_N``.
        rig: a :class:`CameraRig` with ``image_size``, or a calibration file for
            :func:`mvpose.calib.load_rig`.
        out_npz: names the outputs: its folder and its stem ``<name>`` (a leading ``data_3d_`` /
            ``data_2d_`` and a trailing ``.npz`` are stripped): ``<folder>/data_3d_<name>.npz``,
            ``<folder>/data_2d_<name>_<detector>.npz``, ``<folder>/data_rig_<name>.json``.
        noise: detector noise for the 2D (:class:`NoiseConfig`); None = exact projections.
        fps: resample file motions to this rate (linear interpolation); procedural motions are
            generated at it (default 50).
        subject: the subject of list entries and plain action keys.
        num_frames: length of procedural motions.
        center: shift each motion horizontally so its mean pelvis lies above the world origin.
        distort: apply the rig's lens distortion when projecting.
        detector: the ``<detector>`` part of the 2D file name; default ``"gt"`` without noise,
            ``"noisy"`` with.
        joints32: write the 3D expanded to Human3.6M's 32 joints (VideoPose3D's loader expects 32).
        write_rig: also write the rig as mvpose JSON.

    Returns:
        ``{"positions_3d": path, "positions_2d": path, "rig": path}`` (``"rig"`` only if written).

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable motion or calibration file (naming it),
            a rig without ``image_size``, duplicate action names.
    """
    if not isinstance(rig, CameraRig):
        from mvpose.calib import load_rig

        rig = load_rig(rig)
    if rig.image_size is None:
        raise ValueError("export_sequences: the rig has no image_size; VideoPose3D normalises by (w, h)")
    if len(rig.batch_shape):
        raise ValueError(f"export_sequences: expected a plain rig, got batch shape {tuple(rig.batch_shape)}")
    noise = noise if noise is not None and not noise.is_clean else None
    folder, name = _dataset_name(out_npz)
    detector = detector or ("gt" if noise is None else "noisy")

    entries = list(motions.items()) if isinstance(motions, Mapping) else [(None, m) for m in motions]
    if not entries:
        raise ValueError("export_sequences: no motions given")
    world: dict[str, dict[str, np.ndarray]] = {}
    kps: dict[str, dict[str, list[np.ndarray]]] = {}
    conf: dict[str, dict[str, list[np.ndarray]]] = {}
    rates: dict[str, dict[str, float]] = {}
    for i, (key, spec) in enumerate(entries):
        default_action, motion = _load_spec(spec, fps, num_frames)
        if isinstance(key, tuple):
            s, a = str(key[0]), str(key[1])
        else:
            s, a = subject, default_action if key is None else str(key)
        if a in world.get(s, {}):
            raise ValueError(
                f"export_sequences: action {a!r} of subject {s!r} given twice; name them with a dict"
            )
        pos = motion_to_world_h36m17(motion, center)
        views = project_world(pos, rig, distort)
        cams, cams_conf = [], []
        for v, px in enumerate(views):
            if noise is None:
                c = np.where(np.isnan(px).any(-1), 0.0, 1.0)
            else:
                px, c, _ = add_detector_noise(px, noise, np.random.default_rng([noise.seed, i, v]))
            cams.append(px)
            cams_conf.append(c)
        world.setdefault(s, {})[a] = pos
        kps.setdefault(s, {})[a] = cams
        conf.setdefault(s, {})[a] = cams_conf
        rates.setdefault(s, {})[a] = float(motion.fps)
        logger.info(
            "export_sequences: %s/%s: %d frames at %g fps, %d cameras", s, a, len(pos), motion.fps, len(views)
        )

    meta = dict(VP3D_H36M_METADATA)
    meta["mvpose"] = {
        "cameras": {s: rig_to_metadata(rig) for s in kps},
        "fps": rates,
        "noise": None if noise is None else noise.to_dict(),
        "distort": bool(distort),
    }
    paths = {
        "positions_3d": write_positions_3d(folder / f"data_3d_{name}.npz", world, joints32=joints32),
        "positions_2d": write_positions_2d(
            folder / f"data_2d_{name}_{detector}.npz",
            kps,
            meta,
            confidence=conf if noise is not None and noise.drop_mode == "confidence" else None,
        ),
    }
    if write_rig:
        from mvpose.calib import save_rig

        paths["rig"] = save_rig(rig, folder / f"data_rig_{name}.json")
    return paths
