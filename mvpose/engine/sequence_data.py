"""Sequences for the temporal stage's engine: training and test clips from every data source.

A :class:`Clip` is one sequence seen by one camera (lifting: normalised 2D in, camera-frame 3D out) or
one multi-view sequence (refinement: 3D in, 3D out, world or camera frame), with absolute targets in
mm; the task makes them root-relative. :func:`build_sequence_data` reads the config's source:

* ``h36m_npz``: VideoPose3D's files through :class:`~mvpose.data.sequences.SequenceSet` (rigs from
  ``data.cameras`` per subject, else from the file's metadata);
* ``3dhp_npz``: P-STMO's MPI-INF-3DHP files (the test set keeps its ``valid`` frames);
* ``motion``: BVH/AMC takes and procedural motions through a rig, with detector-like 2D noise
  (:func:`~mvpose.data.sequences.add_detector_noise`), lifted per camera or triangulated
  (``CameraRig.triangulate``) for refinement;
* ``studio``: the synthetic studio through a multi-view model (:mod:`.sequence_studio`).

Refinement inputs from ground truth get the 3D noise model (:mod:`.sequence_noise`). Every random
draw is seeded: the same config gives the same clips in every process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mvpose.engine.sequence_config import SequenceExperimentConfig
from mvpose.engine.sequence_noise import NoiseModel3D, fit_noise_model
from mvpose.skeleton import H36M17, MPI3DHP17, Skeleton

__all__ = [
    "Clip",
    "SequenceData",
    "build_sequence_data",
    "fill_nan_time",
    "robust_lowpass",
    "motion_world_positions",
    "turn_about_vertical",
]


@dataclass
class Clip:
    """One sequence: ``inputs (T, J, D)`` (normalised 2D, or 3D mm), ``target (T, J, 3)`` mm absolute,
    ``valid (T,)`` frames to score, ``key`` (subject, action, camera), ``image_width`` px (2D inputs)."""

    key: tuple[str, str, str]
    inputs: np.ndarray
    target: np.ndarray | None
    valid: np.ndarray | None = None
    image_width: float | None = None
    fps: float | None = None

    @property
    def num_frames(self) -> int:
        return int(self.inputs.shape[0])


@dataclass
class SequenceData:
    """Training and test clips, their joint set and the left/right permutation of the inputs."""

    train: list[Clip]
    test: list[Clip]
    skeleton: Skeleton = H36M17
    input_flip: tuple[int, ...] = H36M17.flip_indices
    noise_model: NoiseModel3D | None = None
    info: dict = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        clips = self.train or self.test
        return int(clips[0].inputs.shape[-1])


def fill_nan_time(x: np.ndarray) -> np.ndarray:
    """``(T, J, D)`` with NaN entries linearly interpolated along time (edges held); an all-NaN
    column becomes 0. Networks cannot take NaN; missing detections become plausible values."""
    x = np.array(x, dtype=np.float64)
    if np.isfinite(x).all():
        return x
    T = x.shape[0]
    cols = x.reshape(T, -1)
    t = np.arange(T)
    for c in np.nonzero(~np.isfinite(cols).all(0))[0]:  # only the columns with gaps
        ok = np.isfinite(cols[:, c])
        cols[:, c] = np.interp(t, t[ok], cols[ok, c]) if ok.any() else 0.0
    return cols.reshape(x.shape)


def robust_lowpass(
    points_mm: np.ndarray, fps: float, cutoff_hz: float, outlier_mm: float = 150.0, median_frames: int = 5
) -> np.ndarray:
    """``(T, J, 3)`` (or ``(T, 3)``) positions: samples farther than ``outlier_mm`` from the running
    median of ``median_frames`` frames are replaced by it, then a zero-phase 4th-order Butterworth
    low-pass at ``cutoff_hz`` (``mvpose.filters.butterworth``); ``cutoff_hz`` 0 or >= fps / 2: median
    cleaning only."""
    from scipy.ndimage import median_filter

    from mvpose.filters import butterworth

    x = np.array(points_mm, dtype=np.float64)
    flat = x.ndim == 2
    if flat:
        x = x[:, None]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"robust_lowpass: expected (T, J, 3) or (T, 3) mm, got {np.shape(points_mm)}")
    if x.shape[0] >= 3:
        med = median_filter(x, size=(min(median_frames, x.shape[0]), 1, 1), mode="nearest")
        far = np.linalg.norm(x - med, axis=-1) > outlier_mm
        x[far] = med[far]
        if cutoff_hz and cutoff_hz < fps / 2:
            x = butterworth(x, fps, cutoff_hz)
    return x[:, 0] if flat else x


def _downsample(clips: list[Clip], step: int) -> list[Clip]:
    if step == 1:
        return clips
    return [
        Clip(
            c.key,
            c.inputs[::step],
            None if c.target is None else c.target[::step],
            None if c.valid is None else c.valid[::step],
            c.image_width,
            None if c.fps is None else c.fps / step,
        )
        for c in clips
    ]


def _action_ok(action: str, prefixes: list[str]) -> bool:
    return not prefixes or any(action.startswith(p) for p in prefixes)


def _noise_model(cfg: SequenceExperimentConfig, J: int) -> NoiseModel3D:
    n = cfg.data.noise_3d
    if n.fit_from:
        return fit_noise_model(n.fit_from)
    return NoiseModel3D.isotropic(J, n.std_mm, n.bias_mm, n.rho, n.outlier_rate, n.outlier_mm)


def _refine_inputs(
    cfg, clips_gt: list[np.ndarray], split: int, model: NoiseModel3D | None
) -> list[np.ndarray]:
    """3D inputs of the refinement clips from their ground truth (``gt`` or ``noise_model``)."""
    if cfg.data.input_3d == "gt":
        return [g.copy() for g in clips_gt]
    seed = cfg.data.noise_3d.seed
    return [model.apply(g, np.random.default_rng([seed, split, i])) for i, g in enumerate(clips_gt)]


# ------------------------------------------------------------------------------------ h36m npz
def _h36m_clips(cfg: SequenceExperimentConfig) -> SequenceData:
    from mvpose.calib import load_rig
    from mvpose.data.sequences import SequenceSet

    d = cfg.data
    root = Path(d.root)
    path_3d = root / f"data_3d_{d.dataset}.npz"
    path_2d = root / f"data_2d_{d.dataset}_{d.keypoints}.npz"
    subjects = list(dict.fromkeys([*d.subjects_train, *d.subjects_test]))
    rigs = {s: load_rig(d.cameras, subject=s) for s in subjects} if d.cameras else None
    ss = SequenceSet.from_npz(path_3d, path_2d if d.input == "2d" else None, rigs=rigs)
    missing = [s for s in subjects if s not in ss.subjects()]
    if missing:
        from mvpose.data.sequences import SequenceFileError

        raise SequenceFileError(path_3d, "positions_3d", f"subjects {missing} are not in the file")
    model = _noise_model(cfg, H36M17.num_joints) if d.input == "3d" and d.input_3d == "noise_model" else None

    def clips(subjects: list[str], split: int) -> list[Clip]:
        items = [
            it
            for s in subjects
            for it in ss.items([s], [a for a in ss.actions(s) if _action_ok(a, d.actions)])
            if it.positions_camera is not None
        ]
        if not items:
            raise ValueError(
                f"{path_3d}: no sequence for subjects {subjects} and actions {d.actions or 'all'}"
            )
        gt = [it.positions_camera for it in items]
        if d.input == "2d":
            xs = [fill_nan_time(it.normalised_2d()) for it in items]
        else:
            xs = _refine_inputs(cfg, gt, split, model)
        return [
            Clip(it.key, x, g, None, None if it.image_size is None else float(it.image_size[0]))
            for it, x, g in zip(items, xs, gt)
        ]

    return SequenceData(
        _downsample(clips(d.subjects_train, 0), d.downsample),
        _downsample(clips(d.subjects_test, 1), d.downsample),
        ss.skeleton,
        tuple(ss.flip_indices),
        model,
        {"path_3d": str(path_3d), "path_2d": str(path_2d)},
    )


# ------------------------------------------------------------------------------------- 3dhp npz
def _3dhp_clips(cfg: SequenceExperimentConfig) -> SequenceData:
    from mvpose.data.sequences import read_3dhp_test_npz, read_3dhp_train_npz

    d = cfg.data
    root = Path(d.root)
    model = (
        _noise_model(cfg, MPI3DHP17.num_joints) if d.input == "3d" and d.input_3d == "noise_model" else None
    )

    def clips(seqs, split: int) -> list[Clip]:
        items = seqs.items()
        gt = [it.positions_camera for it in items]
        xs = (
            [fill_nan_time(it.normalised_2d()) for it in items]
            if d.input == "2d"
            else _refine_inputs(cfg, gt, split, model)
        )
        return [
            Clip(
                it.key,
                x,
                g,
                None if it.valid is None else np.asarray(it.valid, bool),
                float(it.image_size[0]),
                it.fps,
            )
            for it, x, g in zip(items, xs, gt)
        ]

    train = clips(read_3dhp_train_npz(root / "data_train_3dhp.npz"), 0)
    test = clips(read_3dhp_test_npz(root / "data_test_3dhp.npz"), 1)
    return SequenceData(
        _downsample(train, d.downsample),
        _downsample(test, d.downsample),
        MPI3DHP17,
        MPI3DHP17.flip_indices,
        model,
    )


# --------------------------------------------------------------------------------------- motion
def motion_world_positions(spec: str, fps: float, num_frames: int = 300) -> tuple[str, np.ndarray]:
    """``(name, (T, 17, 3) world mm)`` of a motion spec: a BVH/AMC path or ``"procedural:SEED"``; Z up,
    H36M-17, the mean pelvis above the origin, resampled to ``fps``. The CMU retargets with a
    Character Creator rig start with a T-pose frame, which is dropped."""
    from mvpose.data.motion import detect_rig, generate_motion, load_motion
    from mvpose.data.sequences import motion_to_world_h36m17

    if spec.startswith("procedural:"):
        seed = int(spec.split(":", 1)[1])
        return f"procedural_{seed}", motion_to_world_h36m17(generate_motion(seed, num_frames, fps))
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"motion file '{path}' does not exist")
    m = load_motion(path)
    if path.suffix.lower() == ".bvh" and detect_rig(m) == "cc_rig":
        m = m.slice(1)
    if abs(m.fps - fps) > 1e-9:
        m = m.resample(fps)
    return path.stem, motion_to_world_h36m17(m)


def turn_about_vertical(world: np.ndarray, deg: float) -> np.ndarray:
    """Turn about the vertical axis through the origin (where the motion's mean pelvis is)."""
    a = math.radians(deg)
    R = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return world @ R.T


def _rigs(m, subjects: list[str]):
    from mvpose.calib import load_rig, ring_rig

    if isinstance(m.rig, int):
        return [("synth", ring_rig(num_cameras=m.rig, start_angle_deg=45.0))]
    if subjects:
        return [(s, load_rig(m.rig, subject=s)) for s in subjects]
    return [(Path(m.rig).stem, load_rig(m.rig))]


def _motion_clips(cfg: SequenceExperimentConfig) -> SequenceData:
    from mvpose.data.sequences import (
        NoiseConfig,
        add_detector_noise,
        normalize_screen_coordinates,
        project_world,
    )

    d, m = cfg.data, cfg.data.motion
    n2 = d.noise_2d
    noise = NoiseConfig(
        n2.sigma_px, n2.outlier_rate, n2.outlier_px, n2.swap_rate, n2.swap_run_frames, n2.drop_rate
    )
    model = _noise_model(cfg, H36M17.num_joints) if d.input == "3d" and d.input_3d == "noise_model" else None

    def motions(paths: list[str], n_proc: int, parity: int) -> list[tuple[str, np.ndarray]]:
        specs = list(paths) + [f"procedural:{2 * (m.seed * 100_000 + k) + parity}" for k in range(n_proc)]
        out = []
        for spec in specs:
            name, world = motion_world_positions(spec, m.fps, m.procedural_frames)
            L = m.clip_frames or world.shape[0]
            for c in range(0, world.shape[0], L):
                if world.shape[0] - c >= min(L, 2):
                    out.append((f"{name}/{c // L:02d}" if m.clip_frames else name, world[c : c + L]))
        return out

    def clips(paths, n_proc, subjects, split: int) -> list[Clip]:
        takes = motions(paths, n_proc, split)
        rigs = _rigs(m, subjects)
        out: list[Clip] = []
        for i, (name, world0) in enumerate(takes):
            if split == 0:
                g = np.random.default_rng([m.seed, 7, i])
                yaws = [0.0] + list(g.uniform(0.0, 360.0, max(m.yaw_copies, 1) - 1))
            else:
                yaws = list(m.test_yaws_deg)
            for k, yaw in enumerate(yaws):
                world = turn_about_vertical(world0, yaw)
                action = f"{name} {yaw:.0f}deg" if split else f"{name} copy{k}"
                for r, (subject, rig) in enumerate(rigs):
                    if d.input == "3d" and d.input_3d != "triangulated":
                        x = world.copy()
                        if model is not None:  # a distinct draw per (take, copy, rig)
                            x = model.apply(world, np.random.default_rng([d.noise_3d.seed, split, i, k, r]))
                        out.append(Clip((subject, action, "world"), x, world, fps=m.fps))
                        continue
                    px = project_world(world, rig, distort=True)  # [(T, J, 2)] per camera
                    noisy = [
                        add_detector_noise(p, noise, np.random.default_rng([n2.seed, split, i, k, r, v]))[0]
                        if not noise.is_clean
                        else p
                        for v, p in enumerate(px)
                    ]
                    if d.input == "3d":  # triangulated noisy 2D, world frame
                        uv = torch.from_numpy(np.stack(noisy, 1))  # (T, V, J, 2)
                        X = rig.to(dtype=torch.float64).triangulate(uv, method=m.triangulation).numpy()
                        out.append(
                            Clip((subject, action, "triangulated"), fill_nan_time(X), world, fps=m.fps)
                        )
                        continue
                    cam = rig.to(dtype=torch.float64).world_to_camera(torch.from_numpy(world)).numpy()
                    for v, p in enumerate(noisy):
                        w, h = (float(s) for s in rig.image_size[v].tolist())
                        x = fill_nan_time(normalize_screen_coordinates(p, w, h))
                        out.append(Clip((subject, action, rig.names[v]), x, cam[:, v], None, w, m.fps))
        if not out:
            raise ValueError(f"data.motion: no {'test' if split else 'training'} motion given")
        return out

    return SequenceData(
        clips(m.train_motions, m.procedural_train, m.train_subjects, 0),
        clips(m.test_motions, m.procedural_test, m.test_subjects or m.train_subjects, 1),
        H36M17,
        H36M17.flip_indices,
        model,
    )


def build_sequence_data(cfg: SequenceExperimentConfig) -> SequenceData:
    """Training and test clips of the config's source (module doc)."""
    src = cfg.data.source
    if src == "h36m_npz":
        return _h36m_clips(cfg)
    if src == "3dhp_npz":
        return _3dhp_clips(cfg)
    if src == "motion":
        return _motion_clips(cfg)
    from mvpose.engine.sequence_studio import studio_sequence_data

    return studio_sequence_data(cfg)
