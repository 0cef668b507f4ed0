"""`SequenceSet`: the sequences of a VideoPose3D-style dataset, per subject, action and camera.

Units inside are mvpose's: world and camera-frame 3D in **mm**, 2D in **pixels** of each camera's full
frame. The set mirrors VideoPose3D's nesting: world 3D per ``(subject, action)``, 2D per
``(subject, action)`` as a list over the subject's cameras, one :class:`~mvpose.geometry.camera.CameraRig`
per subject (Human3.6M's extrinsics differ per subject). :meth:`SequenceSet.items` flattens it into one
:class:`SequenceItem` per ``(subject, action, camera)`` with camera-frame 3D computed through the rig.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvpose.geometry.camera import CameraRig
from mvpose.skeleton import COCO17, H36M17, Skeleton

from .flip import flip_indices_from_symmetry, normalize_screen_coordinates
from .npz import (
    VP3D_H36M_METADATA,
    read_positions_2d,
    read_positions_3d,
    write_positions_2d,
    write_positions_3d,
)
from .windows import WindowDataset

__all__ = ["SequenceItem", "SequenceSet", "rig_to_metadata", "rig_from_metadata", "world_to_camera"]

_LAYOUTS = {"h36m": H36M17, "coco": COCO17}


def world_to_camera(positions_world_mm: np.ndarray, rig: CameraRig) -> np.ndarray:
    """World ``(T, J, 3)`` mm to every camera's frame ``(V, T, J, 3)`` mm (float64), via ``rig``."""
    X = torch.as_tensor(np.asarray(positions_world_mm, dtype=np.float64))
    return rig.to(dtype=torch.float64).world_to_camera(X).movedim(-3, 0).cpu().numpy()


def rig_to_metadata(rig: CameraRig) -> dict[str, Any]:
    """A rig as plain numpy arrays (for ``metadata["mvpose"]["cameras"]``; mm, pixels)."""
    r = rig.to(device="cpu", dtype=torch.float64)
    out = {
        "names": list(r.names),
        "K": r.K.numpy(),
        "R": r.R.numpy(),
        "t": r.t.numpy(),
        "dist": r.dist.numpy(),
        "distortion_model": r.distortion_model,
    }
    if r.image_size is not None:
        out["image_size"] = r.image_size.numpy()
    return out


def rig_from_metadata(d: Mapping[str, Any]) -> CameraRig:
    """Inverse of :func:`rig_to_metadata`."""
    return CameraRig(
        K=torch.as_tensor(np.asarray(d["K"], dtype=np.float64)),
        R=torch.as_tensor(np.asarray(d["R"], dtype=np.float64)),
        t=torch.as_tensor(np.asarray(d["t"], dtype=np.float64)),
        dist=torch.as_tensor(np.asarray(d["dist"], dtype=np.float64)),
        names=tuple(d["names"]),
        image_size=None if d.get("image_size") is None else torch.as_tensor(np.asarray(d["image_size"])),
        distortion_model=str(d.get("distortion_model", "opencv")),
    )


@dataclass(frozen=True, eq=False)
class SequenceItem:
    """One ``(subject, action, camera)`` sequence.

    Attributes:
        subject, action, camera: names; ``camera_index`` the camera's index in the subject's list.
        keypoints_2d: ``(T, J, 2)`` pixels of the full frame (NaN = missing), or None.
        confidence: ``(T, J)`` scores of the 2D keypoints (1 if the file has none), or None.
        positions_world: ``(T, J, 3)`` world mm, or None.
        positions_camera: ``(T, J, 3)`` camera-frame mm (``R X + t``), or None (no 3D or no rig).
        image_size: ``(w, h)`` pixels, or None.
        rig: the camera as a one-view :class:`CameraRig`, or None.
    """

    subject: str
    action: str
    camera: str
    camera_index: int
    keypoints_2d: np.ndarray | None
    confidence: np.ndarray | None
    positions_world: np.ndarray | None
    positions_camera: np.ndarray | None
    image_size: tuple[int, int] | None
    rig: CameraRig | None

    @property
    def num_frames(self) -> int:
        for a in (self.keypoints_2d, self.positions_camera, self.positions_world):
            if a is not None:
                return a.shape[0]
        return 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subject, self.action, self.camera)

    def normalised_2d(self) -> np.ndarray:
        """``(T, J, 2)`` keypoints normalised as VideoPose3D does (:func:`normalize_screen_coordinates`)."""
        if self.keypoints_2d is None:
            raise ValueError(f"{self.key}: no 2D keypoints")
        if self.image_size is None:
            raise ValueError(
                f"{self.key}: the camera's image size is unknown; give the set a rig or image_sizes"
            )
        w, h = self.image_size
        return normalize_screen_coordinates(self.keypoints_2d, w, h)


class SequenceSet:
    """World 3D, per-camera 2D and cameras of subjects and actions (mm, pixels).

    Args:
        positions_world: ``{subject: {action: (T, J, 3) mm}}`` or None.
        keypoints_2d: ``{subject: {action: [(T, J, 2) px per camera]}}`` or None.
        rigs: one :class:`CameraRig` for every subject, or ``{subject: CameraRig}``, or None. Camera
            ``v`` of the 2D lists is view ``v`` of the subject's rig.
        image_sizes: ``(w, h)`` for every camera, or ``{subject: [(w, h) per camera]}``; default the
            rigs' ``image_size``.
        confidence_2d: ``(T, J)`` scores in the nesting of ``keypoints_2d``, or None.
        skeleton: the joint set (flip indices for windows).
        fps: frames per second, or ``{subject: {action: fps}}``, or None.
        metadata: VideoPose3D metadata of the 2D file (kept and written back).
    """

    def __init__(
        self,
        positions_world: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        keypoints_2d: Mapping[str, Mapping[str, Sequence[np.ndarray]]] | None = None,
        *,
        rigs: CameraRig | Mapping[str, CameraRig] | None = None,
        image_sizes: tuple[int, int] | Mapping[str, Sequence[tuple[int, int]]] | None = None,
        confidence_2d: Mapping[str, Mapping[str, Sequence[np.ndarray]]] | None = None,
        skeleton: Skeleton = H36M17,
        fps: float | Mapping | None = None,
        metadata: Mapping[str, Any] | None = None,
    ):
        self.positions_world = {
            str(s): {str(a): np.asarray(p, dtype=np.float64) for a, p in acts.items()}
            for s, acts in (positions_world or {}).items()
        }
        self.keypoints_2d = {
            str(s): {str(a): [np.asarray(c, dtype=np.float64) for c in cams] for a, cams in acts.items()}
            for s, acts in (keypoints_2d or {}).items()
        }
        self.confidence_2d = (
            None
            if confidence_2d is None
            else {
                str(s): {str(a): [np.asarray(c, dtype=np.float64) for c in cs] for a, cs in acts.items()}
                for s, acts in confidence_2d.items()
            }
        )
        self._rigs = rigs
        self._image_sizes = image_sizes
        self.skeleton = skeleton
        self.fps = fps
        self.metadata = dict(metadata) if metadata is not None else None

    # ------------------------------------------------------------------ structure
    def subjects(self) -> list[str]:
        return sorted(set(self.positions_world) | set(self.keypoints_2d))

    def actions(self, subject: str) -> list[str]:
        return sorted(set(self.positions_world.get(subject, {})) | set(self.keypoints_2d.get(subject, {})))

    def rig(self, subject: str) -> CameraRig | None:
        if isinstance(self._rigs, Mapping):
            return self._rigs.get(subject)
        return self._rigs

    def num_cameras(self, subject: str) -> int:
        rig = self.rig(subject)
        if rig is not None:
            return rig.num_views
        acts = self.keypoints_2d.get(subject, {})
        return max((len(c) for c in acts.values()), default=0)

    def camera_names(self, subject: str) -> list[str]:
        rig = self.rig(subject)
        return list(rig.names) if rig is not None else [f"cam{v}" for v in range(self.num_cameras(subject))]

    def image_size(self, subject: str, camera: int) -> tuple[int, int] | None:
        sizes = self._image_sizes
        if isinstance(sizes, Mapping):
            if subject in sizes:
                w, h = sizes[subject][camera]
                return int(w), int(h)
        elif sizes is not None:
            return int(sizes[0]), int(sizes[1])
        rig = self.rig(subject)
        if rig is not None and rig.image_size is not None:
            w, h = rig.image_size[camera].tolist()
            return int(w), int(h)
        return None

    def fps_of(self, subject: str, action: str) -> float | None:
        if isinstance(self.fps, Mapping):
            v = self.fps.get(subject, {})
            v = v.get(action) if isinstance(v, Mapping) else v
            return None if v is None else float(v)
        return None if self.fps is None else float(self.fps)

    @property
    def flip_indices(self) -> tuple[int, ...]:
        """Left/right permutation: from the metadata's ``keypoints_symmetry`` if any, else the skeleton's."""
        meta = self.metadata or {}
        sym = meta.get("keypoints_symmetry")
        if sym is not None:
            return flip_indices_from_symmetry(sym[0], sym[1], self.skeleton.num_joints)
        return self.skeleton.flip_indices

    # ------------------------------------------------------------------ items
    def items(
        self,
        subjects: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
        cameras: Sequence[int | str] | None = None,
    ) -> list[SequenceItem]:
        """One :class:`SequenceItem` per ``(subject, action, camera)``, sorted by subject and action.

        Camera-frame 3D is ``rig.world_to_camera(world)``. When a 2D track is longer than the 3D
        sequence it is cut to the 3D length, as VideoPose3D's ``run.py`` does; a shorter one is an error.
        """
        out = []
        for s in self.subjects() if subjects is None else subjects:
            rig = self.rig(s)
            names = self.camera_names(s)
            for a in self.actions(s) if actions is None else actions:
                world = self.positions_world.get(s, {}).get(a)
                kps = self.keypoints_2d.get(s, {}).get(a)
                conf = None if self.confidence_2d is None else self.confidence_2d.get(s, {}).get(a)
                if world is None and kps is None:
                    continue
                cam_pos = world_to_camera(world, rig) if world is not None and rig is not None else None
                V = len(kps) if kps is not None else (rig.num_views if rig is not None else 0)
                if kps is not None and rig is not None and len(kps) != rig.num_views:
                    raise ValueError(
                        f"{s}/{a}: {len(kps)} cameras of 2D keypoints but the rig has {rig.num_views}"
                    )
                sel = (
                    range(V)
                    if cameras is None
                    else [names.index(c) if isinstance(c, str) else int(c) for c in cameras]
                )
                for v in sel:
                    k = None if kps is None else kps[v]
                    c = None if conf is None else conf[v]
                    if k is not None and world is not None:
                        if k.shape[0] < world.shape[0]:
                            raise ValueError(
                                f"{s}/{a} camera {v}: {k.shape[0]} frames of 2D but {world.shape[0]} of 3D"
                            )
                        k = k[: world.shape[0]]
                        c = None if c is None else c[: world.shape[0]]
                    out.append(
                        SequenceItem(
                            subject=s,
                            action=a,
                            camera=names[v] if v < len(names) else f"cam{v}",
                            camera_index=v,
                            keypoints_2d=k,
                            confidence=c,
                            positions_world=world,
                            positions_camera=None if cam_pos is None else cam_pos[v],
                            image_size=self.image_size(s, v),
                            rig=None if rig is None else rig.select([v]),
                        )
                    )
        return out

    def windows(
        self,
        input: str = "2d",
        *,
        root_relative: bool = True,
        subjects: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
        cameras: Sequence[int | str] | None = None,
        **kwargs,
    ) -> WindowDataset:
        """A :class:`WindowDataset` of the items: VideoPose3D's training pairs.

        Args:
            input: ``"2d"`` (normalised keypoints, 2D -> 3D lifting) or ``"3d"`` (camera-frame mm,
                e.g. to refine; for noisy 3D inputs build :class:`WindowDataset` from your arrays).
            root_relative: targets as VideoPose3D keeps them: joint 0 the camera-frame root
                trajectory, joints ``1:`` relative to it (mm).
            **kwargs: :class:`WindowDataset` options (``receptive_field``, ``chunk_length``, ``causal``,
                ``stride``, ``flip_augment``...); ``flip_indices`` defaults to :attr:`flip_indices`.
        """
        items = self.items(subjects, actions, cameras)
        if not items:
            raise ValueError("SequenceSet.windows: no sequences selected")
        if input == "2d":
            xs = [it.normalised_2d() for it in items]
        elif input == "3d":
            xs = [it.positions_camera for it in items]
        else:
            raise ValueError(f"input must be '2d' or '3d', got {input!r}")
        ys = None
        if all(it.positions_camera is not None for it in items):
            ys = [it.positions_camera.copy() for it in items]
            if root_relative:
                for y in ys:
                    y[:, 1:] -= y[:, :1]
        elif input == "3d":
            raise ValueError("SequenceSet.windows: input '3d' needs world 3D and rigs")
        kwargs.setdefault("flip_indices", self.flip_indices)
        kwargs.setdefault("target_flip_indices", self.skeleton.flip_indices)
        cams = [it.rig for it in items] if all(it.rig is not None for it in items) else None
        kwargs.setdefault("cameras", cams)
        return WindowDataset(xs, ys, ids=[it.key for it in items], **kwargs)

    def project_2d(self, distort: bool = True) -> SequenceSet:
        """A copy whose 2D keypoints are the world 3D projected through the rigs (ground-truth 2D).

        Joints behind a camera (depth <= 0) are NaN.
        """
        kps = {}
        for s, acts in self.positions_world.items():
            rig = self.rig(s)
            if rig is None:
                raise ValueError(f"project_2d: subject {s!r} has no rig")
            kps[s] = {a: project_world(p, rig, distort) for a, p in acts.items()}
        return SequenceSet(
            self.positions_world,
            kps,
            rigs=self._rigs,
            image_sizes=self._image_sizes,
            skeleton=self.skeleton,
            fps=self.fps,
            metadata=self.metadata,
        )

    # ------------------------------------------------------------------ files
    @classmethod
    def from_npz(
        cls,
        path_3d=None,
        path_2d=None,
        *,
        rigs: CameraRig | Mapping[str, CameraRig] | None = None,
        image_sizes=None,
        skeleton: Skeleton | None = None,
    ) -> SequenceSet:
        """Read VideoPose3D files (either or both).

        Rigs come from ``rigs`` or else from the 2D file's ``metadata["mvpose"]["cameras"]`` (written
        by :func:`~.export.export_sequences`). The skeleton comes from ``skeleton`` or the metadata's
        ``layout_name`` (``"h36m"``, ``"coco"``), default H36M-17.
        """
        if path_3d is None and path_2d is None:
            raise ValueError("SequenceSet.from_npz: give path_3d, path_2d or both")
        world = read_positions_3d(path_3d) if path_3d is not None else None
        kps = meta = conf = None
        if path_2d is not None:
            kps, meta, conf = read_positions_2d(path_2d)
        mv = (meta or {}).get("mvpose", {}) or {}
        if rigs is None and "cameras" in mv:
            rigs = {str(s): rig_from_metadata(d) for s, d in mv["cameras"].items()}
        if skeleton is None:
            skeleton = _LAYOUTS.get(str((meta or {}).get("layout_name", "h36m")).lower(), H36M17)
        return cls(
            world,
            kps,
            rigs=rigs,
            image_sizes=image_sizes,
            confidence_2d=conf,
            skeleton=skeleton,
            fps=mv.get("fps"),
            metadata=meta,
        )

    def save(self, path_3d=None, path_2d=None, *, joints32: bool = True, dtype_2d=np.float64) -> list[Path]:
        """Write VideoPose3D files (3D world metres; 2D pixels with metadata, rigs and fps included)."""
        out = []
        if path_3d is not None:
            out.append(write_positions_3d(path_3d, self.positions_world, joints32=joints32))
        if path_2d is not None:
            meta = dict(self.metadata) if self.metadata is not None else dict(VP3D_H36M_METADATA)
            if self.skeleton is not H36M17 and self.metadata is None:
                meta = {
                    "layout_name": self.skeleton.name,
                    "num_joints": self.skeleton.num_joints,
                    "keypoints_symmetry": [
                        list(self.skeleton.left_indices),
                        list(self.skeleton.right_indices),
                    ],
                }
            mv = dict(meta.get("mvpose", {}) or {})
            cams = {s: rig_to_metadata(self.rig(s)) for s in self.keypoints_2d if self.rig(s) is not None}
            if cams:
                mv["cameras"] = cams
            if self.fps is not None:
                mv["fps"] = self.fps
            if mv:
                meta["mvpose"] = mv
            out.append(
                write_positions_2d(
                    path_2d, self.keypoints_2d, meta, confidence=self.confidence_2d, dtype=dtype_2d
                )
            )
        return out


def project_world(positions_world_mm: np.ndarray, rig: CameraRig, distort: bool = True) -> list[np.ndarray]:
    """World ``(T, J, 3)`` mm through ``rig``: a list over cameras of ``(T, J, 2)`` px (float64).

    Joints at or behind a camera's image plane (depth <= 0) are NaN.
    """
    r = rig.to(dtype=torch.float64)
    X = torch.as_tensor(np.asarray(positions_world_mm, dtype=np.float64))
    px = r.project(X, distort=distort)  # (T, V, J, 2)
    z = r.world_to_camera(X)[..., 2]
    px = torch.where((z > 0)[..., None], px, torch.full_like(px, float("nan")))
    return [a.numpy() for a in px.movedim(-3, 0).cpu()]
