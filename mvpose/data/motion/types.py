"""The :class:`Motion` container shared by the motion-capture readers, and their small numpy helpers.

A :class:`Motion` holds world positions of a skeleton's joints over time, in millimetres, in the
axes of the file it came from (``up_axis`` says which axis points up). It does not hold rotations:
the readers run forward kinematics once and keep the positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Motion", "axis_rotation", "Z_UP_FROM"]

# Rotations that bring a right-handed frame with the given up axis to a right-handed Z-up frame,
# as matrices acting on column vectors: p_zup = Z_UP_FROM[up] @ p.
#   "y": (x, y, z) -> (x, -z, y)   a +90 degree rotation about X (forward -Z becomes +Y)
#   "x": (x, y, z) -> (y, z, x)    a cyclic permutation of the axes
#   "z": identity
Z_UP_FROM: dict[str, np.ndarray] = {
    "y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
    "x": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
    "z": np.eye(3),
}


def axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices about one coordinate axis (right-hand rule, column vectors).

    Args:
        axis: ``"x"``, ``"y"`` or ``"z"`` (case-insensitive).
        angle: ``(*)`` angles in radians.

    Returns:
        ``(*, 3, 3)`` float64 rotation matrices.

    Example:
        >>> axis_rotation("z", np.array(np.pi / 2)) @ np.array([1.0, 0.0, 0.0])  # doctest: +SKIP
        array([0., 1., 0.])
    """
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((*angle.shape, 3, 3))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis.lower()]
    k = 3 - i - j
    out[..., k, k] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


@dataclass(frozen=True, eq=False)
class Motion:
    """Joint positions of one skeleton over time.

    Attributes:
        joint_names: ``J`` joint names, as in the source file.
        parents: ``J`` parent indices, ``-1`` for a root; every parent comes before its children.
        positions_mm: ``(T, J, 3)`` float64 world positions in millimetres, in the source's axes.
        fps: frames per second.
        up_axis: ``"x"``, ``"y"`` or ``"z"``: the world axis pointing up (``"y"`` for CMU files).
        source: path of the file the motion was read from (empty if none).
    """

    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    positions_mm: np.ndarray = field(repr=False)
    fps: float
    up_axis: str = "y"
    source: str = ""

    def __post_init__(self) -> None:
        names, parents = tuple(self.joint_names), tuple(int(p) for p in self.parents)
        pos = np.asarray(self.positions_mm, dtype=np.float64)
        if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[1] != len(names):
            raise ValueError(
                f"Motion({self.source!r}): positions_mm must be (T, {len(names)}, 3), got {pos.shape}"
            )
        if len(parents) != len(names):
            raise ValueError(f"Motion({self.source!r}): {len(names)} joint names but {len(parents)} parents")
        for j, p in enumerate(parents):
            if not -1 <= p < j:
                raise ValueError(
                    f"Motion({self.source!r}): joint {j} ({names[j]!r}) has parent {p}; "
                    "expected -1 or an earlier joint"
                )
        up = str(self.up_axis).lower()
        if up not in Z_UP_FROM:
            raise ValueError(
                f"Motion({self.source!r}): up_axis must be 'x', 'y' or 'z', got {self.up_axis!r}"
            )
        if not float(self.fps) > 0:
            raise ValueError(f"Motion({self.source!r}): fps must be positive, got {self.fps}")
        object.__setattr__(self, "joint_names", names)
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "positions_mm", pos)
        object.__setattr__(self, "up_axis", up)
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "source", str(self.source))

    @property
    def num_frames(self) -> int:
        """Number of frames ``T``."""
        return self.positions_mm.shape[0]

    @property
    def num_joints(self) -> int:
        """Number of joints ``J``."""
        return self.positions_mm.shape[1]

    @property
    def duration_s(self) -> float:
        """Time from the first to the last frame, in seconds."""
        return (self.num_frames - 1) / self.fps

    def index(self, name: str) -> int:
        """Index of the joint called ``name``; ``KeyError`` naming the source if absent."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"{self.source or 'motion'}: no joint named {name!r}") from None

    def to_z_up(self) -> Motion:
        """The same motion in a right-handed Z-up world (``up_axis="z"``).

        A rigid rotation, no mirroring: Y-up ``(x, y, z)`` becomes ``(x, -z, y)`` (a +90 degree
        rotation about X); X-up ``(x, y, z)`` becomes ``(y, z, x)``; Z-up is returned unchanged.
        Source axes are assumed right-handed, as they are in ASF/AMC and BVH.
        """
        if self.up_axis == "z":
            return self
        pos = self.positions_mm @ Z_UP_FROM[self.up_axis].T
        return replace(self, positions_mm=pos, up_axis="z")

    def resample(self, fps: float) -> Motion:
        """Linearly interpolate positions to a new frame rate.

        New frames lie at times ``k / fps`` for ``0 <= k / fps <= duration_s`` (the first frame is
        kept; the last one only if it falls on the new grid). With an integer ratio, e.g. 120 to 60,
        this picks every second frame exactly.

        Args:
            fps: the new frame rate, > 0.

        Returns:
            A :class:`Motion` with ``T' = floor(duration_s * fps) + 1`` frames.
        """
        fps = float(fps)
        if not fps > 0:
            raise ValueError(f"resample: fps must be positive, got {fps}")
        T = self.num_frames
        n = int(np.floor((T - 1) / self.fps * fps + 1e-9)) + 1
        src = np.arange(n) * (self.fps / fps)  # fractional source frame of each new frame
        i0 = np.clip(np.floor(src + 1e-9).astype(np.int64), 0, T - 1)
        i1 = np.minimum(i0 + 1, T - 1)
        w = np.clip(src - i0, 0.0, 1.0)[:, None, None]
        pos = (1.0 - w) * self.positions_mm[i0] + w * self.positions_mm[i1]
        return replace(self, positions_mm=pos, fps=fps)

    def slice(self, start: int | None = None, stop: int | None = None) -> Motion:
        """Frames ``start:stop`` (Python slice semantics, negative indices allowed)."""
        pos = self.positions_mm[start:stop]
        if pos.shape[0] == 0:
            raise ValueError(f"slice({start}, {stop}) of {self.num_frames} frames is empty")
        return replace(self, positions_mm=pos.copy())
