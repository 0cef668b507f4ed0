"""``SyntheticStudio``: rendered multi-view samples of procedural (or recorded) human motion.

Each sample is the multi-view sample dict of docs/datasets.md, rendered on the fly in
``__getitem__`` from a random frame of a random motion seen by the studio's cameras. Everything
random is drawn from ``numpy.random.SeedSequence([seed, split, index])`` (one child stream per
aspect: motion and frame, placement, camera jitter, crop box, appearance and light, backgrounds
and occluders), so a sample depends only on ``(seed, split, index)`` and the constructor
arguments: never on the order of access, the process or the number of DataLoader workers.

World: millimetres, Z up, floor at ``Z = 0`` (as :func:`mvpose.calib.ring_rig` and the procedural
motions); a rig given by the user must use the same world.

Splits. ``"train"`` and ``"val"`` never share a motion: procedural motions of the train split have
even generator seeds ``2 (seed * 100000 + k)``, those of val odd ones ``2 (seed * 100000 + k) + 1``
(disjoint for any pair of dataset seeds); motion files are shuffled with the seed and the first
``val_fraction`` of them form val, the rest train. ``"all"`` uses every file (or the train
motions, for procedural ones). The per-sample streams also depend on the split.

Crops. ``crop="person"`` (default): the bounding box of the rendered body (the projected
primitives: the box a person mask gives, as Human3.6M's boxes come from its masks; with
``bbox_from="joints"`` the box of the projected joints instead), widened by ``bbox_margin_mm`` at
the pelvis depth,
optionally jittered, then made square and integer by :func:`mvpose.data.transforms.square_bbox`
with ``bbox_scale`` (Human3.6M's learnable-triangulation convention); the crop camera is
``rig.crop(box).resize(image_size)``. ``crop="full"``: the whole frame resized to ``image_size``
(``fx, cx`` and ``fy, cy`` scaled separately). Either way the image is rendered straight into the
output size with the crop camera. Crop pixels outside the camera's frame are black (as a crop
reaching beyond a real frame is zero padded) and joints there are not visible.

Lens distortion. Images are rendered with the ideal pinhole crop camera and the sample's ``dist``
is zero, as the contract requires (its images are undistorted); ``bbox`` is in the pixels of the
undistorted full frame (same ``K`` as the rig's camera). The rig's distortion concerns only the
full-frame 2D ground truth: ``dataset.sample_rig(i).project(sample["keypoints_3d"])``.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mvpose.data.synthetic import render as _r
from mvpose.data.transforms import normalize_image, square_bbox
from mvpose.geometry.camera import CameraRig
from mvpose.skeleton import H36M17, Skeleton, get_joint_map, get_skeleton

__all__ = [
    "SyntheticStudio",
    "SyntheticStudioFolder",
    "RigJitter",
    "Scene",
    "write_dataset",
    "procedural_motion_seed",
    "normalize_views",
]

_SPLITS = {"train": 0, "val": 1, "all": 2}
_PELVIS = H36M17.joint_names.index("pelvis")
_ANKLES = [H36M17.joint_names.index(n) for n in ("left_ankle", "right_ankle")]
# child streams of a sample's SeedSequence
_S_MOTION, _S_PLACE, _S_RIG, _S_BOX, _S_LOOK, _S_VIEW = range(6)


@dataclass(frozen=True, eq=False)
class Scene:
    """What one sample is rendered from (:meth:`SyntheticStudio.scene`).

    ``joints (17, 3)`` H36M17 world mm; ``crop_rig``: the pinhole crop cameras (``K`` of the crops);
    ``R (V, 3, 3)``, ``t (V, 3)``; ``boxes (V, 4)`` crop boxes in full-frame px; ``frame_boxes
    (V, 4)`` the cameras' frames in crop px (``None`` if the rig has no image size);
    ``backgrounds (V, H, W, 3)`` uint8; ``occluders`` per view.
    """

    index: int
    joints: np.ndarray
    action: str
    frame: int
    prims: _r.Primitives
    light: _r.Light
    crop_rig: CameraRig
    R: np.ndarray
    t: np.ndarray
    boxes: np.ndarray
    frame_boxes: np.ndarray | None
    backgrounds: np.ndarray
    occluders: list


@functools.lru_cache(maxsize=1)
def _normalize_lut() -> np.ndarray:
    """``(1, 256, 3)`` float32: :func:`normalize_image` of every uint8 value, per channel."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # (1, 256, 3)
    return np.ascontiguousarray(normalize_image(ramp)[:, 0, :].T[None])


def normalize_views(images: np.ndarray) -> np.ndarray:
    """:func:`mvpose.data.transforms.normalize_image` of uint8 RGB ``(V, H, W, 3)``, bit for bit,
    as a table look-up (``cv2.LUT`` of ``normalize_image`` applied to the 256 values): about 4x
    faster. Returns float32 ``(V, 3, H, W)``."""
    V, H, W, C = images.shape
    if images.dtype != np.uint8 or C != 3:
        return normalize_image(images)
    out = cv2.LUT(np.ascontiguousarray(images).reshape(V * H, W, 3), _normalize_lut())
    return np.ascontiguousarray(out.reshape(V, H, W, 3).transpose(0, 3, 1, 2))


def procedural_motion_seed(seed: int, split: str, k: int) -> int:
    """Generator seed of procedural motion ``k`` of a split (even for train, odd for val)."""
    if not 0 <= k < 100_000:
        raise ValueError(f"motion index {k} out of range [0, 100000)")
    return 2 * (int(seed) * 100_000 + int(k)) + (1 if split == "val" else 0)


class RigJitter:
    """Per-sample random perturbation of every camera: centre moved by ``N(0, position_mm)`` per
    axis, orientation turned by ``N(0, rotation_deg)`` about a random axis, focal length scaled by
    ``1 + N(0, focal_rel)`` (both ``fx`` and ``fy``)."""

    def __init__(self, position_mm: float = 100.0, rotation_deg: float = 2.0, focal_rel: float = 0.05):
        self.position_mm, self.rotation_deg, self.focal_rel = (
            float(position_mm),
            float(rotation_deg),
            float(focal_rel),
        )

    def __repr__(self) -> str:
        return f"RigJitter({self.position_mm}, {self.rotation_deg}, {self.focal_rel})"

    def apply(self, rng: np.random.Generator, K: np.ndarray, R: np.ndarray, t: np.ndarray):
        V = len(K)
        C = -np.einsum("vji,vj->vi", R, t) + rng.normal(0.0, self.position_mm, (V, 3))
        axis = rng.normal(size=(V, 3))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        ang = np.radians(rng.normal(0.0, self.rotation_deg, V))
        dR = np.stack([cv2.Rodrigues(a * w)[0] for a, w in zip(axis, ang)])
        R2 = dR @ R
        K2 = K.copy()
        s = 1.0 + rng.normal(0.0, self.focal_rel, V)
        K2[:, 0, 0] *= s
        K2[:, 1, 1] *= s
        return K2, R2, -np.einsum("vij,vj->vi", R2, C)


def _capture_centre(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Floor point ``(x, y, 0)`` under the least-squares meeting point of the optical axes."""
    C = -np.einsum("vji,vj->vi", R, t)
    d = R[:, 2, :]
    M = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    A, b = M.sum(0), (M @ C[:, :, None]).sum(0)[:, 0]
    p = np.linalg.lstsq(A, b, rcond=None)[0] if len(R) > 1 else C[0] + d[0] * 4000.0
    return np.array([p[0], p[1], 0.0])


def _load_motion_file(path) -> tuple[np.ndarray, str]:
    """``(T, 17, 3)`` H36M17 positions (Z up, mm, feet on the floor) and the action name."""
    from mvpose.data.motion import Motion, load_motion, motion_to_h36m17

    if isinstance(path, Motion):
        m, name = path, Path(path.source).stem if path.source else "motion"
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"SyntheticStudio: motion file {str(p)!r} does not exist")
        try:
            m = load_motion(p)
        except (ValueError, KeyError, OSError) as e:
            msg = str(e)
            raise ValueError(msg if str(p) in msg else f"{p}: {msg}") from e
        name = p.stem
    m = m.to_z_up()
    if tuple(m.joint_names) == H36M17.joint_names:
        pos = m.positions_mm
    else:
        try:
            pos = motion_to_h36m17(m)
        except ValueError as e:
            raise ValueError(f"{m.source or path}: cannot map to Human3.6M-17: {e}") from e
    pos = np.asarray(pos, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise ValueError(f"{m.source or path}: motion has non-finite joint positions")
    pos = pos.copy()
    pos[..., 2] -= pos[:, _ANKLES, 2].min() - 70.0  # lowest ankle 70 mm above the floor
    return pos, name


def _as_rig(rig) -> CameraRig:
    from mvpose.calib import load_rig, ring_rig

    if rig is None:
        return ring_rig(num_cameras=4, start_angle_deg=45.0)
    if isinstance(rig, int):
        return ring_rig(num_cameras=rig, start_angle_deg=45.0)
    if isinstance(rig, CameraRig):
        if len(rig.batch_shape):
            raise ValueError(
                f"SyntheticStudio: expected a plain rig (V, ...), got batch shape {tuple(rig.batch_shape)}"
            )
        return rig
    return load_rig(rig)


class SyntheticStudio(Dataset):
    """Synthetic multi-view samples (docs/datasets.md), rendered on the fly.

    Args:
        num_samples: dataset length.
        split: ``"train"``, ``"val"`` (disjoint motions) or ``"all"``.
        seed: the dataset seed; a sample depends only on ``(seed, split, index)``.
        rig: a :class:`CameraRig` (plain, ``(V, ...)``), a calibration file path
            (:func:`mvpose.calib.load_rig`), an int ``V`` for ``ring_rig(V, start_angle_deg=45)``, or
            ``None`` for ``ring_rig(num_cameras=4, start_angle_deg=45)`` (the 1920x1080, f = 1400 px
            ring of radius 4 m, cameras 2 m high, aimed at ``(0, 0, 1000)``).
        rig_jitter: per-sample camera perturbation (:class:`RigJitter`), or ``None``.
        motions: ``"procedural"`` (default, :func:`mvpose.data.motion.generate_motion`) or a list of
            BVH/AMC paths (or :class:`~mvpose.data.motion.Motion` objects) of a supported skeleton.
            Files are read, checked and mapped to H36M-17 in the constructor: a bad path raises
            ``FileNotFoundError`` / ``ValueError`` naming the file.
        num_motions: procedural motions per split (default 200 for train and ``"all"``, 50 for val).
        motion_frames, motion_fps, motion_kinds: arguments of ``generate_motion``.
        val_fraction: share of the motion files in the val split (at least one file each).
        image_size: ``(width, height)`` of the crops, or one int.
        crop: ``"person"`` or ``"full"`` (module docstring).
        bbox_from: what the crop box surrounds: ``"silhouette"`` (the drawn body, default) or
            ``"joints"`` (the projected joint centres; the limbs' volume then needs the margin).
        bbox_scale, bbox_margin_mm, bbox_jitter: crop box scale (``square_bbox``), margin around the
            silhouette or joints at the pelvis depth (default 30 mm for the silhouette, 150 mm for the
            joints), and random jitter (centre shift and side change, as fractions of the side,
            uniform in ``+-bbox_jitter``).
        skeleton: joint set of the sample (default ``"h36m17_lt"``), mapped from H36M17 with
            :func:`mvpose.skeleton.get_joint_map`.
        area_radius_mm: the pelvis is placed uniformly in a disc of this radius around the floor
            point the cameras aim at.
        random_yaw: turn each pose by a uniform random angle about the vertical through its pelvis.
        occluder_prob, max_occluders: per view, probability of 1..``max_occluders`` occluders.
        background_seed: seed of the :class:`~mvpose.data.synthetic.render.BackgroundBank`.
        antialias: anti-aliased rendering.

    Example:
        >>> ds = SyntheticStudio(num_samples=1000, split="train", seed=0)
        >>> s = ds[0]; s["images"].shape, s["keypoints_3d"].shape
        (torch.Size([4, 3, 256, 256]), torch.Size([17, 3]))
    """

    def __init__(
        self,
        num_samples: int = 10_000,
        split: str = "train",
        seed: int = 0,
        rig=None,
        rig_jitter: RigJitter | None = None,
        motions: str | Sequence = "procedural",
        num_motions: int | None = None,
        motion_frames: int = 500,
        motion_fps: float = 50.0,
        motion_kinds: Sequence[str] | None = None,
        val_fraction: float = 0.2,
        image_size: int | tuple[int, int] = (256, 256),
        crop: str = "person",
        bbox_scale: float = 1.0,
        bbox_margin_mm: float | None = None,
        bbox_from: str = "silhouette",
        bbox_jitter: float = 0.0,
        skeleton: str | Skeleton = "h36m17_lt",
        area_radius_mm: float = 1000.0,
        random_yaw: bool = True,
        occluder_prob: float = 0.3,
        max_occluders: int = 2,
        background_seed: int = 0,
        antialias: bool = True,
    ):
        if split not in _SPLITS:
            raise ValueError(f"SyntheticStudio: split must be one of {list(_SPLITS)}, got {split!r}")
        if crop not in ("person", "full"):
            raise ValueError(f"SyntheticStudio: crop must be 'person' or 'full', got {crop!r}")
        if int(num_samples) < 0:
            raise ValueError(f"SyntheticStudio: num_samples must be >= 0, got {num_samples}")
        self.num_samples, self.split, self.seed = int(num_samples), split, int(seed)
        self.rig = _as_rig(rig).to(dtype=torch.float64)
        self.rig_jitter = rig_jitter
        W, H = (image_size, image_size) if isinstance(image_size, int) else (int(x) for x in image_size)
        self.image_size = (W, H)
        self.crop, self.bbox_scale = crop, float(bbox_scale)
        if bbox_from not in ("silhouette", "joints"):
            raise ValueError(
                f"SyntheticStudio: bbox_from must be 'silhouette' or 'joints', got {bbox_from!r}"
            )
        self.bbox_from = bbox_from
        if bbox_margin_mm is None:
            bbox_margin_mm = 30.0 if bbox_from == "silhouette" else 150.0
        self.bbox_margin_mm, self.bbox_jitter = float(bbox_margin_mm), float(bbox_jitter)
        self.skeleton = get_skeleton(skeleton) if not isinstance(skeleton, Skeleton) else skeleton
        self.joint_map = get_joint_map("h36m17", self.skeleton.name)
        self.area_radius_mm, self.random_yaw = float(area_radius_mm), bool(random_yaw)
        self.occluder_prob, self.max_occluders = float(occluder_prob), int(max_occluders)
        self.background_seed, self.antialias = int(background_seed), bool(antialias)
        if crop == "full" and self.rig.image_size is None:
            raise ValueError("SyntheticStudio: crop='full' needs a rig with image_size")
        self._K = self.rig.K.numpy().copy()
        self._R = self.rig.R.numpy().copy()
        self._t = self.rig.t.numpy().copy()
        self._frame = (
            self.rig.image_size.numpy().astype(np.float64) if self.rig.image_size is not None else None
        )
        self._centre = _capture_centre(self._R, self._t)
        # build the process-wide background bank now (about 0.5 s), so that forked DataLoader
        # workers share it instead of each building its own
        _r.default_bank(self.background_seed)
        self.camera_names = list(self.rig.names)

        self._cache: dict[int, tuple[np.ndarray, tuple]] = {}
        self.motion_frames, self.motion_fps = int(motion_frames), float(motion_fps)
        if isinstance(motions, str):
            if motions != "procedural":
                raise ValueError(
                    "SyntheticStudio: motions must be 'procedural' or a list of motion files, "
                    f"got {motions!r}"
                )
            from mvpose.data.motion.procedural import MOTION_KINDS

            self.motion_kinds = tuple(motion_kinds) if motion_kinds is not None else MOTION_KINDS
            n = int(num_motions) if num_motions is not None else (50 if split == "val" else 200)
            if not 1 <= n <= 100_000:
                raise ValueError(f"SyntheticStudio: num_motions must be in [1, 100000], got {n}")
            msplit = "val" if split == "val" else "train"
            self.motion_ids: list = [procedural_motion_seed(self.seed, msplit, k) for k in range(n)]
            self._procedural = True
        else:
            items = list(motions)
            if not items:
                raise ValueError("SyntheticStudio: motions is an empty list")
            loaded = [_load_motion_file(p) for p in items]  # raises naming the file
            order = np.random.default_rng([self.seed, 0x5EED]).permutation(len(items))
            if split == "all":
                chosen = list(range(len(items)))
            else:
                if len(items) < 2:
                    raise ValueError(
                        f"SyntheticStudio: split {split!r} needs at least 2 motion files (train and val get "
                        "different files); use split='all' for one file"
                    )
                n_val = min(max(1, round(val_fraction * len(items))), len(items) - 1)
                chosen = sorted(order[:n_val].tolist() if split == "val" else order[n_val:].tolist())
            self.motion_ids = [
                str(items[i]) if not hasattr(items[i], "positions_mm") else items[i].source for i in chosen
            ]
            for k, i in enumerate(chosen):
                self._cache[k] = (loaded[i][0], ((0, loaded[i][0].shape[0], loaded[i][1]),))
            self.motion_kinds = ()
            self._procedural = False

    # ------------------------------------------------------------------------------------ helpers
    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        src = "procedural" if self._procedural else f"{len(self.motion_ids)} files"
        return (
            f"SyntheticStudio(num_samples={self.num_samples}, split={self.split!r}, seed={self.seed}, "
            f"views={len(self.camera_names)}, motions={src} x {len(self.motion_ids)}, "
            f"image_size={self.image_size}, crop={self.crop!r}, skeleton={self.skeleton.name!r})"
        )

    def _motion(self, k: int) -> tuple[np.ndarray, tuple]:
        """``(T, 17, 3)`` positions and ``((start, stop, kind), ...)`` clips of motion ``k``."""
        if k not in self._cache:
            from mvpose.data.motion import generate_motion_with_info

            info = generate_motion_with_info(
                self.motion_ids[k], self.motion_frames, self.motion_fps, self.motion_kinds
            )
            clips = tuple((c.start, c.stop, c.kind) for c in info.clips)
            self._cache[k] = (info.motion.positions_mm, clips)
        return self._cache[k]

    def _streams(self, index: int) -> list[np.random.Generator]:
        ss = np.random.SeedSequence([self.seed, _SPLITS[self.split], int(index)])
        return [np.random.default_rng(s) for s in ss.spawn(6)]

    def _check_index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(f"SyntheticStudio: index {index} out of range [0, {self.num_samples})")
        return index

    def _cameras(self, rng: np.random.Generator):
        if self.rig_jitter is None:
            return self._K, self._R, self._t
        return self.rig_jitter.apply(rng, self._K, self._R, self._t)

    def sample_rig(self, index: int) -> CameraRig:
        """The full-frame rig of sample ``index`` (jitter included, the rig's own distortion): its
        ``project(sample["keypoints_3d"])`` gives the 2D ground truth in the (distorted) frames."""
        index = self._check_index(index)
        K, R, t = self._cameras(self._streams(index)[_S_RIG])
        return CameraRig(
            K=torch.from_numpy(K.copy()),
            R=torch.from_numpy(R.copy()),
            t=torch.from_numpy(t.copy()),
            dist=self.rig.dist.clone(),
            names=self.rig.names,
            image_size=self.rig.image_size,
            distortion_model=self.rig.distortion_model,
        )

    def _pose(self, rs: list[np.random.Generator]) -> tuple[np.ndarray, str, int]:
        g = rs[_S_MOTION]
        k = int(g.integers(len(self.motion_ids)))
        pos, clips = self._motion(k)
        f = int(g.integers(pos.shape[0]))
        action = next((kind for s, e, kind in clips if s <= f < e), clips[-1][2])
        X = pos[f].copy()
        g = rs[_S_PLACE]
        pel = X[_PELVIS].copy()
        if self.random_yaw:
            a = g.uniform(0.0, 2.0 * math.pi)
            c, s = math.cos(a), math.sin(a)
            Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            X = (X - pel) @ Rz.T + pel
        r, phi = self.area_radius_mm * math.sqrt(g.random()), g.uniform(0.0, 2.0 * math.pi)
        X[:, :2] += self._centre[:2] + r * np.array([math.cos(phi), math.sin(phi)]) - pel[:2]
        return X, action, f

    # ------------------------------------------------------------------------------------ samples
    def scene(self, index: int) -> Scene:
        """Everything sample ``index`` is rendered from (pose, cameras, crops, look, occluders)."""
        index = self._check_index(index)
        rs = self._streams(index)
        X, action, frame = self._pose(rs)
        K, R, t = self._cameras(rs[_S_RIG])
        V = len(K)
        W, H = self.image_size
        g = rs[_S_LOOK]
        prims = _r.body_primitives(X, _r.sample_appearance(g))
        light = _r.sample_light(g)
        # crop boxes in (undistorted) full-frame pixels
        if self.crop == "full":
            fw, fh = self._frame[:, 0], self._frame[:, 1]
            boxes = np.stack([np.zeros(V), np.zeros(V), fw, fh], 1)
        else:
            z = np.maximum((R[:, 2] @ X[_PELVIS]) + t[:, 2], 1e-6)
            if self.bbox_from == "silhouette":
                sil = _r.silhouette_boxes(_r.project_primitives(prims, K, R, t, light))
            else:
                Xc = np.einsum("vij,nj->vni", R, X) + t[:, None]
                uv = Xc[..., :2] / Xc[..., 2:] @ K[:, :2, :2].transpose(0, 2, 1) + K[:, None, :2, 2]
                sil = np.concatenate([uv.min(1), uv.max(1)], 1)
                sil[(Xc[..., 2] <= 0).any(1)] = np.nan
            if not np.isfinite(sil).all():
                raise RuntimeError(f"SyntheticStudio: sample {index}: the person is behind a camera")
            m = self.bbox_margin_mm * 0.5 * (K[:, 0, 0] + K[:, 1, 1]) / z
            lo, hi = sil[:, :2] - m[:, None], sil[:, 2:] + m[:, None]
            if self.bbox_jitter > 0:
                g = rs[_S_BOX]
                side = (hi - lo).max(1, keepdims=True)
                shift = g.uniform(-self.bbox_jitter, self.bbox_jitter, (V, 2)) * side
                grow = g.uniform(-self.bbox_jitter, self.bbox_jitter, (V, 1)) * side / 2
                lo, hi = lo + shift - grow, hi + shift + grow
            boxes = square_bbox(np.concatenate([lo, hi], 1), self.bbox_scale).astype(np.float64)
        size = boxes[:, 2:] - boxes[:, :2]
        crig = CameraRig(
            K=torch.from_numpy(K.copy()), R=torch.from_numpy(R.copy()), t=torch.from_numpy(t.copy())
        )
        crig = crig.crop(torch.from_numpy(boxes)).resize((W, H), old_size=torch.from_numpy(size))
        sx, sy = W / size[:, 0], H / size[:, 1]
        frame_boxes = None
        if self._frame is not None:  # the camera's frame in crop px (pixel centres are integers)
            frame_boxes = np.stack(
                [
                    (-0.5 - boxes[:, 0]) * sx,
                    (-0.5 - boxes[:, 1]) * sy,
                    (self._frame[:, 0] - 0.5 - boxes[:, 0]) * sx,
                    (self._frame[:, 1] - 0.5 - boxes[:, 1]) * sy,
                ],
                1,
            )
        g = rs[_S_VIEW]
        bank = _r.default_bank(self.background_seed)
        backgrounds = np.stack([bank.sample(g, W, H) for _ in range(V)])
        kp = crig.project(torch.from_numpy(X), distort=False).numpy()  # (V, 17, 2)
        occluders = _r.sample_occluders(
            g, np.concatenate([kp.min(1), kp.max(1)], 1), self.occluder_prob, self.max_occluders
        )
        return Scene(
            index, X, action, frame, prims, light, crig, R, t, boxes, frame_boxes, backgrounds, occluders
        )

    def render_sample(self, index: int) -> tuple[np.ndarray, dict]:
        """The views as uint8 RGB ``(V, H, W, 3)`` and the sample dict without ``images``."""
        sc = self.scene(index)
        W, H = self.image_size
        V = len(sc.R)
        Kc = sc.crop_rig.K.numpy()
        images = _r.render_views(
            sc.prims,
            Kc,
            sc.R,
            sc.t,
            (W, H),
            sc.light,
            sc.backgrounds,
            sc.occluders,
            sc.frame_boxes,
            self.antialias,
        )
        vis = _r.joint_visibility(sc.prims, sc.joints, Kc, sc.R, sc.t, (W, H), sc.occluders, sc.frame_boxes)
        # to the output skeleton
        jm = self.joint_map
        X_out = jm.apply(torch.from_numpy(sc.joints))
        kp_out = sc.crop_rig.project(X_out, distort=False)
        vis_out = jm.apply_mask(torch.from_numpy(vis))
        valid = torch.isfinite(X_out).all(-1)
        u, v = kp_out[..., 0], kp_out[..., 1]
        inside = (u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5)
        sample = {
            "keypoints_3d": X_out.to(torch.float64),
            "keypoints_3d_valid": valid,
            "keypoints_2d": kp_out.to(torch.float32),
            "visibility": vis_out & inside & valid[None],
            "K": sc.crop_rig.K.clone(),
            "R": torch.from_numpy(sc.R.copy()),
            "t": torch.from_numpy(sc.t.copy()),
            "dist": torch.zeros(V, 5, dtype=torch.float64),
            "bbox": torch.from_numpy(sc.boxes.copy()),
            "view_mask": torch.ones(V, dtype=torch.bool),
            "root_3d": torch.from_numpy(sc.joints[_PELVIS].copy()),
            "subject": "synth",
            "action": sc.action,
            "frame": sc.frame,
            "camera_names": list(self.camera_names),
            "index": sc.index,
        }
        return images, sample

    def __getitem__(self, index: int) -> dict:
        images, sample = self.render_sample(index)
        return {"images": torch.from_numpy(normalize_views(images)), **sample}


# ---------------------------------------------------------------------------------------------------
# On disk
# ---------------------------------------------------------------------------------------------------

_ARRAY_KEYS = (
    "keypoints_3d",
    "keypoints_3d_valid",
    "keypoints_2d",
    "visibility",
    "K",
    "R",
    "t",
    "dist",
    "bbox",
    "view_mask",
    "root_3d",
)


class _Writer(Dataset):
    def __init__(self, ds: SyntheticStudio, root: Path, ext: str, jpeg_quality: int):
        self.ds, self.root, self.ext, self.q = ds, root, ext, jpeg_quality

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        images, sample = self.ds.render_sample(i)
        params = (
            [cv2.IMWRITE_JPEG_QUALITY, self.q] if self.ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )
        for name, img in zip(self.ds.camera_names, images):
            path = self.root / "images" / name / f"{i:06d}{self.ext}"
            if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params):
                raise OSError(f"cannot write {path}")
        return sample


def _identity(x):
    return x


def write_dataset(
    out_dir,
    num_samples: int,
    split: str = "train",
    seed: int = 0,
    image_format: str = "png",
    jpeg_quality: int = 95,
    num_workers: int = 0,
    progress: bool = True,
    **dataset_kwargs,
) -> Path:
    """Render ``SyntheticStudio(num_samples, split, seed, **dataset_kwargs)`` to a folder.

    Layout: ``images/<camera>/<index:06d>.png`` (or ``.jpg``), ``labels.npz`` (every sample key but
    ``images``, stacked: arrays ``(N, ...)``, ``subject``/``action`` ``(N,)`` str, ``frame``/``index``
    ``(N,)`` int64, ``camera_names`` ``(V,)`` str) and ``meta.json`` (format, skeleton, image size,
    the dataset's arguments). ``labels.npz`` is written last. Read it back with
    :class:`SyntheticStudioFolder`: PNG gives identical samples, JPEG identical labels.

    Args:
        out_dir: the folder (created; existing files of the same names are overwritten).
        num_workers: render in that many DataLoader worker processes (the result does not change).
        progress: show a tqdm progress bar.

    Returns:
        the folder's path.
    """
    from tqdm import tqdm

    fmt = image_format.lower().lstrip(".")
    if fmt not in ("png", "jpg", "jpeg"):
        raise ValueError(f"write_dataset: image_format must be 'png' or 'jpg', got {image_format!r}")
    ext = ".png" if fmt == "png" else ".jpg"
    ds = SyntheticStudio(num_samples=num_samples, split=split, seed=seed, **dataset_kwargs)
    root = Path(out_dir)
    for name in ds.camera_names:
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
    writer = _Writer(ds, root, ext, int(jpeg_quality))
    if num_workers > 0:
        it = torch.utils.data.DataLoader(
            writer, batch_size=None, num_workers=num_workers, collate_fn=_identity
        )
    else:
        it = (writer[i] for i in range(len(writer)))
    samples = list(tqdm(it, total=len(writer), desc=f"synth {split}", unit="sample", disable=not progress))
    labels = {
        k: np.stack([s[k].numpy() for s in samples]) if samples else np.zeros((0,)) for k in _ARRAY_KEYS
    }
    labels["subject"] = np.array([s["subject"] for s in samples], dtype=str)
    labels["action"] = np.array([s["action"] for s in samples], dtype=str)
    labels["frame"] = np.array([s["frame"] for s in samples], dtype=np.int64)
    labels["index"] = np.array([s["index"] for s in samples], dtype=np.int64)
    labels["camera_names"] = np.array(ds.camera_names, dtype=str)
    kw = {
        k: (repr(v) if not isinstance(v, int | float | str | bool | type(None)) else v)
        for k, v in dataset_kwargs.items()
    }
    meta = {
        "format": "mvpose-synthetic/1",
        "num_samples": int(num_samples),
        "split": split,
        "seed": int(seed),
        "image_format": ext[1:],
        "image_size": list(ds.image_size),
        "skeleton": ds.skeleton.name,
        "camera_names": ds.camera_names,
        "motions": [str(m) for m in ds.motion_ids],
        "dataset_kwargs": kw,
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2))
    tmp = root / "labels.tmp.npz"
    np.savez_compressed(tmp, **labels)
    os.replace(tmp, root / "labels.npz")
    return root


class SyntheticStudioFolder(Dataset):
    """A folder written by :func:`write_dataset`, as the same sample dicts (images read from disk)."""

    def __init__(self, root):
        self.root = Path(root)
        lab, meta = self.root / "labels.npz", self.root / "meta.json"
        for p in (lab, meta):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: not found; is {self.root} a folder written by write_dataset?")
        self.meta = json.loads(meta.read_text())
        if self.meta.get("format") != "mvpose-synthetic/1":
            raise ValueError(f"{meta}: format {self.meta.get('format')!r}, expected 'mvpose-synthetic/1'")
        with np.load(lab) as z:
            self.labels = {k: z[k] for k in z.files}
        missing = [
            k
            for k in (*_ARRAY_KEYS, "subject", "action", "frame", "index", "camera_names")
            if k not in self.labels
        ]
        if missing:
            raise ValueError(f"{lab}: missing arrays {missing}")
        self.camera_names = [str(n) for n in self.labels["camera_names"]]
        self.skeleton = get_skeleton(self.meta["skeleton"])
        self.image_size = tuple(self.meta["image_size"])
        self.ext = "." + self.meta["image_format"]

    def __len__(self) -> int:
        return len(self.labels["index"])

    def __getitem__(self, i: int) -> dict:
        n = len(self)
        i = int(i) + (n if int(i) < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"SyntheticStudioFolder: index {i} out of range [0, {n})")
        idx = int(self.labels["index"][i])
        imgs = []
        for name in self.camera_names:
            path = self.root / "images" / name / f"{idx:06d}{self.ext}"
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise FileNotFoundError(f"{path}: missing or unreadable image")
            imgs.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        sample = {"images": torch.from_numpy(normalize_views(np.stack(imgs)))}
        for k in _ARRAY_KEYS:
            sample[k] = torch.from_numpy(self.labels[k][i].copy())
        sample.update(
            subject=str(self.labels["subject"][i]),
            action=str(self.labels["action"][i]),
            frame=int(self.labels["frame"][i]),
            camera_names=list(self.camera_names),
            index=idx,
        )
        return sample
