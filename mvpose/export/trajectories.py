"""The container every writer takes and every reader returns: 3D joint trajectories in mm."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Trajectories", "UNITS_MM", "unit_scale"]

#: millimetres per unit, for the units a file may be written in
UNITS_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


def unit_scale(units: str, where: str = "units") -> float:
    """Millimetres per ``units`` (``"mm"``, ``"cm"``, ``"m"``); ValueError naming ``where`` otherwise."""
    key = str(units).strip().lower()
    if key not in UNITS_MM:
        raise ValueError(f"{where}: unknown units {units!r}; expected one of {', '.join(UNITS_MM)}")
    return UNITS_MM[key]


@dataclass(frozen=True, eq=False)
class Trajectories:
    """3D positions of named joints over time, in the mvpose world frame.

    Attributes:
        points_mm: ``(T, J, 3)`` float64 positions in mm; NaN where a joint is missing.
        joint_names: ``J`` unique names.
        fps: frame rate (Hz).
        frame_indices: ``(T,)`` int64 frame numbers (default ``0..T-1``); the time of a frame is
            ``frame_index / fps``.
        skeleton: joint set name from :mod:`mvpose.skeleton` (``None`` if unknown).
        filled: ``(T, J)`` bool, True where a position was interpolated (gap filling), or ``None``.
        meta: free-form JSON-serialisable information (source, filter settings, ...).
    """

    points_mm: np.ndarray = field(repr=False)
    joint_names: tuple[str, ...]
    fps: float
    frame_indices: np.ndarray | None = field(default=None, repr=False)
    skeleton: str | None = None
    filled: np.ndarray | None = field(default=None, repr=False)
    meta: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        pts = np.asarray(self.points_mm, dtype=np.float64)
        names = tuple(str(n) for n in self.joint_names)
        if pts.ndim != 3 or pts.shape[-1] != 3:
            raise ValueError(f"Trajectories: points_mm must be (T, J, 3), got {pts.shape}")
        T, J = pts.shape[:2]
        if len(names) != J:
            raise ValueError(f"Trajectories: {len(names)} joint names for {J} joints")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Trajectories: joint names used twice: {', '.join(dup)}")
        fps = float(self.fps)
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"Trajectories: fps must be a positive number, got {self.fps}")
        fi = np.arange(T, dtype=np.int64) if self.frame_indices is None else np.asarray(self.frame_indices)
        if fi.shape != (T,):
            raise ValueError(f"Trajectories: frame_indices must be ({T},), got {fi.shape}")
        if fi.size and (fi.dtype.kind not in "iu" and not np.array_equal(fi, np.round(fi))):
            raise ValueError("Trajectories: frame_indices must be whole numbers")
        filled = self.filled
        if filled is not None:
            filled = np.asarray(filled, dtype=bool)
            if filled.shape != (T, J):
                raise ValueError(f"Trajectories: filled must be ({T}, {J}), got {filled.shape}")
        pts = np.where(np.isfinite(pts).all(-1, keepdims=True), pts, np.nan)  # a joint is all or nothing
        object.__setattr__(self, "points_mm", pts)
        object.__setattr__(self, "joint_names", names)
        object.__setattr__(self, "fps", fps)
        object.__setattr__(self, "frame_indices", fi.astype(np.int64))
        object.__setattr__(self, "filled", filled)
        object.__setattr__(self, "skeleton", None if not self.skeleton else str(self.skeleton))
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def num_frames(self) -> int:
        return self.points_mm.shape[0]

    @property
    def num_joints(self) -> int:
        return self.points_mm.shape[1]

    @property
    def times_s(self) -> np.ndarray:
        """``(T,)`` time of each frame, ``frame_index / fps`` (s)."""
        return self.frame_indices / self.fps

    @property
    def missing(self) -> np.ndarray:
        """``(T, J)`` bool, True where a joint has no position."""
        return np.isnan(self.points_mm[..., 0])

    def replace(self, **changes) -> Trajectories:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def select(self, names) -> Trajectories:
        """The joints called ``names``, in that order (KeyError naming the missing ones)."""
        names = [str(n) for n in names]
        missing = [n for n in names if n not in self.joint_names]
        if missing:
            raise KeyError(f"no joint(s) {', '.join(missing)}; the joints are: {', '.join(self.joint_names)}")
        idx = [self.joint_names.index(n) for n in names]
        return self.replace(
            points_mm=self.points_mm[:, idx],
            joint_names=tuple(names),
            filled=None if self.filled is None else self.filled[:, idx],
        )

    @classmethod
    def from_result(cls, result, fps: float, **meta) -> Trajectories:
        """Wrap a :class:`~mvpose.pipeline.triangulate.TriangulationResult` (it has no frame rate)."""
        return cls(
            result.points_3d_mm,
            tuple(result.joint_names),
            fps,
            frame_indices=result.frame_indices,
            skeleton=result.skeleton,
            meta={"source": "mvpose triangulate", "method": result.settings.get("method"), **meta},
        )
