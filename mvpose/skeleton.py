"""Joint sets: names, kinematic trees, left/right flips and maps between sets.

A :class:`Skeleton` is a small immutable description of one joint set: the joint names in the
order the data stores them, the parent of each joint (``-1`` for the root), the permutation that
swaps left and right, and the root joint. The module defines the joint sets mvpose reads and
writes and a registry to look them up by name:

===============  ==============  ======  ================================================
constant         registry name   joints  order / root
===============  ==============  ======  ================================================
``H36M17``       ``h36m17``      17      Human3.6M, VideoPose3D's order; root pelvis (0)
``H36M17_LT``    ``h36m17_lt``   17      Human3.6M, learnable-triangulation's order;
                                         root pelvis (6)
``COCO17``       ``coco17``      17      COCO keypoints; root left_hip (11), see below
``MPI3DHP28``    ``mpi3dhp28``   28      MPI-INF-3DHP annotations; root pelvis (4)
``MPI3DHP17``    ``mpi3dhp17``   17      MPI-INF-3DHP test-set order; root pelvis (14)
``BODY25``       ``body25``      25      OpenPose BODY_25; root mid_hip (8)
``BODY25B``      ``body25b``     25      OpenPose BODY_25B; root neck (17), see below
===============  ==============  ======  ================================================

Joint names are snake_case with a ``left_`` / ``right_`` prefix for lateral joints; the flip of
every skeleton swaps exactly those prefixes and keeps the centre joints in place.

Trees for sets without a pelvis. COCO-17 has no joint on the midline of the trunk, so its tree is
rooted at ``left_hip``: right_hip hangs from left_hip, each shoulder from the hip on its side,
the nose from left_shoulder, eyes from the nose and ears from the eyes. BODY_25B has a neck but
no mid-hip, so it is rooted at ``neck`` with both hips hanging from it. These trees are only a
documented convention for drawing and walking the skeleton; to get a pelvis, map the joints to
``h36m17`` with :func:`get_joint_map`.

Maps between sets. A :class:`JointMap` writes each target joint as a weighted average of source
joints (weights sum to 1), flags the target joints that are only approximations of the target
set's landmark, and says how in a note. :func:`get_joint_map` returns the maps listed by
:func:`available_joint_maps` (and compositions of two of them through ``h36m17``).

Example:
    >>> sk = get_skeleton("H36M17")
    >>> sk.index("left_knee"), sk.parents[5], sk.flip_indices[5]
    (5, 4, 2)
    >>> jm = get_joint_map("coco17", "h36m17")
    >>> jm.apply(torch.zeros(8, 17, 3)).shape
    torch.Size([8, 17, 3])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Skeleton",
    "JointMap",
    "H36M17",
    "H36M17_LT",
    "H36M17_LT_LIMBS",
    "COCO17",
    "MPI3DHP28",
    "MPI3DHP17",
    "MPI3DHP28_TO_17",
    "BODY25",
    "BODY25B",
    "get_skeleton",
    "available_skeletons",
    "get_joint_map",
    "available_joint_maps",
]

_LEFT, _RIGHT = "left_", "right_"


# --------------------------------------------------------------------------------------------------
# Skeleton
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skeleton:
    """One joint set: names, kinematic tree, left/right permutation and root.

    Args:
        name: registry name, e.g. ``"h36m17"``.
        joint_names: ``J`` unique joint names, in storage order.
        parents: ``J`` parent indices; ``-1`` marks the root (exactly one joint).
        flip_indices: ``J`` indices, the left/right permutation: joint ``j`` of a mirrored pose
            is joint ``flip_indices[j]`` of the original. It must be an involution.
        root: index of the root joint (the one whose parent is ``-1``).

    Lists are accepted and stored as tuples. Invalid definitions raise ``ValueError`` naming
    the skeleton and the offending joint.
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    flip_indices: tuple[int, ...]
    root: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "joint_names", tuple(str(n) for n in self.joint_names))
        object.__setattr__(self, "parents", tuple(int(p) for p in self.parents))
        object.__setattr__(self, "flip_indices", tuple(int(f) for f in self.flip_indices))
        object.__setattr__(self, "root", int(self.root))
        names, parents, flip, n = self.joint_names, self.parents, self.flip_indices, len(self.joint_names)
        where = f"skeleton {self.name!r}"
        if n == 0:
            raise ValueError(f"{where}: no joints")
        if len(parents) != n or len(flip) != n:
            raise ValueError(
                f"{where}: {n} joint names but {len(parents)} parents and {len(flip)} flip indices"
            )
        seen: dict[str, int] = {}
        for j, nm in enumerate(names):
            if nm in seen:
                raise ValueError(f"{where}: joint name {nm!r} used twice (joints {seen[nm]} and {j})")
            seen[nm] = j
        bad = [j for j, p in enumerate(parents) if not -1 <= p < n or p == j]
        if bad:
            raise ValueError(
                f"{where}: joint {bad[0]} ({names[bad[0]]}) has parent {parents[bad[0]]}, "
                f"expected -1 or another index in [0, {n})"
            )
        roots = [j for j, p in enumerate(parents) if p == -1]
        if len(roots) != 1:
            raise ValueError(f"{where}: expected exactly one root (parent -1), found {roots}")
        if not 0 <= self.root < n or roots[0] != self.root:
            raise ValueError(f"{where}: root is {self.root} but the joint with parent -1 is {roots[0]}")
        for j in range(n):  # every joint must reach the root in fewer than n steps (no cycles)
            k, steps = j, 0
            while k != self.root:
                k, steps = parents[k], steps + 1
                if steps >= n:
                    raise ValueError(
                        f"{where}: joint {j} ({names[j]}) never reaches the root: the parents form a cycle"
                    )
        if sorted(flip) != list(range(n)):
            raise ValueError(f"{where}: flip_indices is not a permutation of 0..{n - 1}")
        bad = [j for j in range(n) if flip[flip[j]] != j]
        if bad:
            raise ValueError(
                f"{where}: flip_indices is not an involution: joint {bad[0]} -> {flip[bad[0]]} "
                f"-> {flip[flip[bad[0]]]}"
            )

    @classmethod
    def from_parent_names(
        cls, name: str, joint_names: tuple[str, ...] | list[str], parent_names: dict[str, str | None]
    ) -> Skeleton:
        """Build a skeleton from ``{joint: parent joint or None}``; the flip comes from the names.

        The flip swaps ``left_x`` and ``right_x`` and keeps every other joint; a lateral joint
        whose partner is missing is an error.

        Example:
            >>> Skeleton.from_parent_names("t", ["hip", "left_leg", "right_leg"],
            ...     {"hip": None, "left_leg": "hip", "right_leg": "hip"}).flip_indices
            (0, 2, 1)
        """
        joint_names = tuple(joint_names)
        idx = {nm: j for j, nm in enumerate(joint_names)}
        missing = [nm for nm in joint_names if nm not in parent_names]
        unknown = [p for p in parent_names.values() if p is not None and p not in idx]
        if missing or unknown or len(parent_names) != len(joint_names):
            raise ValueError(
                f"skeleton {name!r}: parent_names must give one parent per joint; missing {missing}, "
                f"unknown parents {unknown}"
            )
        parents = tuple(-1 if parent_names[nm] is None else idx[parent_names[nm]] for nm in joint_names)
        flip = []
        for nm in joint_names:
            other = _mirrored(nm)
            if other not in idx:
                raise ValueError(f"skeleton {name!r}: joint {nm!r} has no mirror joint {other!r}")
            flip.append(idx[other])
        roots = [j for j, p in enumerate(parents) if p == -1]
        return cls(name, joint_names, parents, tuple(flip), roots[0] if len(roots) == 1 else -1)

    @property
    def num_joints(self) -> int:
        """Number of joints ``J``."""
        return len(self.joint_names)

    @property
    def limbs(self) -> tuple[tuple[int, int], ...]:
        """``(parent, child)`` index pairs, one per non-root joint, in joint order (``J - 1`` limbs)."""
        return tuple((p, j) for j, p in enumerate(self.parents) if p >= 0)

    @property
    def left_indices(self) -> tuple[int, ...]:
        """Indices of the joints named ``left_*``, in joint order."""
        return tuple(j for j, nm in enumerate(self.joint_names) if nm.startswith(_LEFT))

    @property
    def right_indices(self) -> tuple[int, ...]:
        """Indices of the joints named ``right_*``, in joint order."""
        return tuple(j for j, nm in enumerate(self.joint_names) if nm.startswith(_RIGHT))

    def index(self, name: str) -> int:
        """Index of the joint called ``name``; ``KeyError`` listing the joint names if none is."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(
                f"skeleton {self.name!r} has no joint {name!r}; its joints are: {', '.join(self.joint_names)}"
            ) from None

    def children(self, j: int) -> tuple[int, ...]:
        """Indices of the joints whose parent is ``j``, in joint order."""
        if not 0 <= j < self.num_joints:
            raise IndexError(f"skeleton {self.name!r}: joint index {j} out of range [0, {self.num_joints})")
        return tuple(k for k, p in enumerate(self.parents) if p == j)


def _mirrored(name: str) -> str:
    if name.startswith(_LEFT):
        return _RIGHT + name[len(_LEFT) :]
    if name.startswith(_RIGHT):
        return _LEFT + name[len(_RIGHT) :]
    return name


def _sided(**chains: str | None) -> dict[str, str | None]:
    """Parent table helper: ``x="y"`` for centre joints, ``s_x="s_y"`` for both sides.

    A key starting with ``s_`` defines ``left_x -> left_y`` and ``right_x -> right_y`` (a parent
    without the ``s_`` prefix is a centre joint shared by both sides).
    """
    out: dict[str, str | None] = {}
    for child, parent in chains.items():
        if child.startswith("s_"):
            for side in (_LEFT, _RIGHT):
                p = parent
                if p is not None and p.startswith("s_"):
                    p = side + p[2:]
                out[side + child[2:]] = p
        else:
            out[child] = parent
    return out


# --------------------------------------------------------------------------------------------------
# The joint sets
# --------------------------------------------------------------------------------------------------

_H36M_PARENTS = _sided(
    pelvis=None,
    s_hip="pelvis",
    s_knee="s_hip",
    s_ankle="s_knee",
    spine="pelvis",
    thorax="spine",
    neck_nose="thorax",
    head="neck_nose",
    s_shoulder="thorax",
    s_elbow="s_shoulder",
    s_wrist="s_elbow",
)

#: Human3.6M, 17 joints in VideoPose3D's order (the 17 of the 32 mocap joints it keeps).
#: ``neck_nose`` is the mocap "Head" joint (between the neck and the nose); ``head`` is the
#: end site at the top of the head.
H36M17 = Skeleton.from_parent_names(
    "h36m17",
    (
        "pelvis",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "spine",
        "thorax",
        "neck_nose",
        "head",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
    ),
    _H36M_PARENTS,
)

#: Human3.6M, 17 joints in learnable-triangulation's (and ContextPose's) order; root pelvis = 6.
H36M17_LT = Skeleton.from_parent_names(
    "h36m17_lt",
    (
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "spine",
        "thorax",
        "head",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "neck_nose",
    ),
    _H36M_PARENTS,
)

#: learnable-triangulation's limb list for :data:`H36M17_LT`, in its order and orientation
#: (not always parent -> child). ContextPose's limb-length priors are indexed by these 16 limbs.
H36M17_LT_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1),
    (1, 2),
    (2, 6),
    (5, 4),
    (4, 3),
    (3, 6),
    (6, 7),
    (7, 8),
    (8, 16),
    (9, 16),
    (8, 12),
    (11, 12),
    (10, 11),
    (8, 13),
    (13, 14),
    (14, 15),
)

#: COCO-17 keypoints. No midline trunk joint: rooted at left_hip (see the module docstring).
COCO17 = Skeleton.from_parent_names(
    "coco17",
    (
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    {
        "left_hip": None,
        "right_hip": "left_hip",
        **_sided(s_knee="s_hip", s_ankle="s_knee", s_shoulder="s_hip", s_elbow="s_shoulder"),
        **_sided(s_wrist="s_elbow", s_eye="nose", s_ear="s_eye"),
        "nose": "left_shoulder",
    },
)

#: MPI-INF-3DHP, the 28 joints of the original annotations, in the dataset's order. The tree is
#: anatomical: pelvis -> spine -> spine2 -> spine3 -> spine4 -> neck -> head -> head_top, the
#: clavicles hang from spine4, the hips from the pelvis; hands and feet end the limbs.
MPI3DHP28 = Skeleton.from_parent_names(
    "mpi3dhp28",
    (
        "spine3",
        "spine4",
        "spine2",
        "spine",
        "pelvis",
        "neck",
        "head",
        "head_top",
        "left_clavicle",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "left_hand",
        "right_clavicle",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "right_hand",
        "left_hip",
        "left_knee",
        "left_ankle",
        "left_foot",
        "left_toe",
        "right_hip",
        "right_knee",
        "right_ankle",
        "right_foot",
        "right_toe",
    ),
    _sided(
        pelvis=None,
        spine="pelvis",
        spine2="spine",
        spine3="spine2",
        spine4="spine3",
        neck="spine4",
        head="neck",
        head_top="head",
        s_clavicle="spine4",
        s_shoulder="s_clavicle",
        s_elbow="s_shoulder",
        s_wrist="s_elbow",
        s_hand="s_wrist",
        s_hip="pelvis",
        s_knee="s_hip",
        s_ankle="s_knee",
        s_foot="s_ankle",
        s_toe="s_foot",
    ),
)

#: MPI-INF-3DHP, the 17 joints of the test set, in its order (the test set calls pelvis "root").
MPI3DHP17 = Skeleton.from_parent_names(
    "mpi3dhp17",
    (
        "head_top",
        "neck",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "spine",
        "head",
    ),
    _sided(
        pelvis=None,
        spine="pelvis",
        neck="spine",
        head="neck",
        head_top="head",
        s_shoulder="neck",
        s_elbow="s_shoulder",
        s_wrist="s_elbow",
        s_hip="pelvis",
        s_knee="s_hip",
        s_ankle="s_knee",
    ),
)

#: For each :data:`MPI3DHP17` joint, its index among the :data:`MPI3DHP28` joints.
MPI3DHP28_TO_17: tuple[int, ...] = (7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6)

_OPENPOSE_FEET = _sided(s_big_toe="s_ankle", s_small_toe="s_big_toe", s_heel="s_ankle")

#: OpenPose BODY_25, rooted at mid_hip.
BODY25 = Skeleton.from_parent_names(
    "body25",
    (
        "nose",
        "neck",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "mid_hip",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "right_eye",
        "left_eye",
        "right_ear",
        "left_ear",
        "left_big_toe",
        "left_small_toe",
        "left_heel",
        "right_big_toe",
        "right_small_toe",
        "right_heel",
    ),
    _sided(
        mid_hip=None,
        neck="mid_hip",
        nose="neck",
        s_eye="nose",
        s_ear="s_eye",
        s_shoulder="neck",
        s_elbow="s_shoulder",
        s_wrist="s_elbow",
        s_hip="mid_hip",
        s_knee="s_hip",
        s_ankle="s_knee",
    )
    | _OPENPOSE_FEET,
)

#: OpenPose BODY_25B (the first 17 keypoints are COCO's), rooted at neck (no mid-hip joint).
BODY25B = Skeleton.from_parent_names(
    "body25b",
    COCO17.joint_names
    + (
        "neck",
        "head_top",
        "left_big_toe",
        "left_small_toe",
        "left_heel",
        "right_big_toe",
        "right_small_toe",
        "right_heel",
    ),
    _sided(
        neck=None,
        nose="neck",
        head_top="nose",
        s_eye="nose",
        s_ear="s_eye",
        s_shoulder="neck",
        s_elbow="s_shoulder",
        s_wrist="s_elbow",
        s_hip="neck",
        s_knee="s_hip",
        s_ankle="s_knee",
    )
    | _OPENPOSE_FEET,
)

_SKELETONS: dict[str, Skeleton] = {
    sk.name: sk for sk in (H36M17, H36M17_LT, COCO17, MPI3DHP28, MPI3DHP17, BODY25, BODY25B)
}

SkeletonLike = str | Skeleton


def available_skeletons() -> tuple[str, ...]:
    """Registry names of the built-in joint sets."""
    return tuple(_SKELETONS)


def get_skeleton(name: SkeletonLike) -> Skeleton:
    """The built-in skeleton called ``name`` (case-insensitive); a :class:`Skeleton` is returned as is.

    Raises:
        KeyError: unknown name; the message lists the choices.
    """
    if isinstance(name, Skeleton):
        return name
    key = str(name).strip().lower()
    if key not in _SKELETONS:
        raise KeyError(f"unknown skeleton {name!r}; choices: {', '.join(_SKELETONS)}")
    return _SKELETONS[key]


# --------------------------------------------------------------------------------------------------
# Maps between joint sets
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JointMap:
    """Map from one joint set to another: each target joint is a weighted average of source joints.

    Args:
        src: source skeleton (``J_src`` joints).
        dst: target skeleton (``J_dst`` joints).
        sources: ``J_dst`` tuples of ``(source index, weight)`` pairs; the weights of a target
            joint sum to 1. An empty tuple means the target joint has no source (it comes out
            NaN and masked).
        approximate: ``J_dst`` flags; True where the target joint is not the same landmark as its
            sources (a midpoint, or a neighbouring landmark of another marker/keypoint model).
        notes: ``J_dst`` short notes saying how each approximate joint is obtained ("" if exact).

    ``apply`` and ``apply_mask`` are one batched matmul each. Lists are stored as tuples.
    """

    src: Skeleton
    dst: Skeleton
    sources: tuple[tuple[tuple[int, float], ...], ...]
    approximate: tuple[bool, ...]
    notes: tuple[str, ...]

    def __post_init__(self) -> None:
        srcs = tuple(tuple((int(i), float(w)) for i, w in s) for s in self.sources)
        object.__setattr__(self, "sources", srcs)
        object.__setattr__(self, "approximate", tuple(bool(a) for a in self.approximate))
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))
        where = f"joint map {self.src.name} -> {self.dst.name}"
        nd, ns = self.dst.num_joints, self.src.num_joints
        if not len(srcs) == len(self.approximate) == len(self.notes) == nd:
            raise ValueError(
                f"{where}: expected {nd} sources, flags and notes (one per target joint), got "
                f"{len(srcs)}, {len(self.approximate)}, {len(self.notes)}"
            )
        for j, s in enumerate(srcs):
            if any(not 0 <= i < ns for i, _ in s):
                raise ValueError(
                    f"{where}: target {self.dst.joint_names[j]} uses a source index outside [0, {ns})"
                )
            if s and abs(sum(w for _, w in s) - 1.0) > 1e-6:
                raise ValueError(
                    f"{where}: weights of target {self.dst.joint_names[j]} sum to "
                    f"{sum(w for _, w in s)}, expected 1"
                )

    @functools.cached_property
    def matrix(self) -> np.ndarray:
        """``(J_dst, J_src)`` float64 weight matrix; row ``j`` holds target joint ``j``'s weights."""
        m = np.zeros((self.dst.num_joints, self.src.num_joints))
        for j, s in enumerate(self.sources):
            for i, w in s:
                m[j, i] += w
        m.setflags(write=False)
        return m

    @property
    def is_exact(self) -> bool:
        """True when no target joint is approximate and every target joint has a source."""
        return not any(self.approximate) and all(self.sources)

    def _weights(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
        m = torch.tensor(self.matrix, dtype=dtype, device=like.device)
        return m, (m != 0).to(dtype)

    def apply(self, points: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Map joint values (positions, 2D points, any per-joint vectors) to the target set.

        Args:
            points: ``(*, J_src, C)``; numpy arrays are accepted and a numpy array comes back.

        Returns:
            ``(*, J_dst, C)``. A coordinate is NaN where a source joint used by that target joint
            is NaN in that coordinate (unused source joints never leak), and NaN for target
            joints without a source.
        """
        if isinstance(points, np.ndarray):
            return self.apply(torch.from_numpy(points)).numpy()
        if points.ndim < 2 or points.shape[-2] != self.src.num_joints:
            raise ValueError(
                f"joint map {self.src.name} -> {self.dst.name}: expected (*, {self.src.num_joints}, C), "
                f"got {tuple(points.shape)}"
            )
        m, used = self._weights(points)
        points = points.to(m.dtype)
        bad = torch.isnan(points)
        out = m @ torch.where(bad, torch.zeros_like(points), points)
        nan_in = (used @ bad.to(m.dtype)) > 0
        no_src = (used.sum(-1) == 0)[:, None]
        return out.masked_fill(nan_in | no_src, float("nan"))

    def apply_mask(self, mask: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Map a validity mask: a target joint is valid only when all its sources are.

        Args:
            mask: ``(*, J_src)`` bool (numpy accepted, numpy returned).

        Returns:
            ``(*, J_dst)`` bool; False for target joints without a source.
        """
        if isinstance(mask, np.ndarray):
            return self.apply_mask(torch.from_numpy(mask)).numpy()
        if mask.shape[-1:] != (self.src.num_joints,):
            raise ValueError(
                f"joint map {self.src.name} -> {self.dst.name}: expected a mask (*, {self.src.num_joints}), "
                f"got {tuple(mask.shape)}"
            )
        _, used = self._weights(torch.empty(0, device=mask.device, dtype=torch.float32))
        n_invalid = (~mask.bool()).to(used.dtype) @ used.T
        return (n_invalid == 0) & (used.sum(-1) > 0)

    def then(self, other: JointMap) -> JointMap:
        """Composition ``other ∘ self`` (``self.src`` -> ``other.dst``); approximations accumulate."""
        if other.src != self.dst:
            raise ValueError(
                f"cannot chain {self.src.name}->{self.dst.name} with {other.src.name}->{other.dst.name}"
            )
        m = other.matrix @ self.matrix
        sources, approx, notes = [], [], []
        for k, s in enumerate(other.sources):
            used = [j for j, _ in s]
            if not s or any(not self.sources[j] for j in used):
                sources.append(())
            else:
                nz = np.flatnonzero(np.abs(m[k]) > 1e-12)
                sources.append(tuple((int(i), float(m[k, i])) for i in nz))
            approx.append(other.approximate[k] or any(self.approximate[j] for j in used))
            parts = [self.notes[j] for j in used if self.notes[j]] + (
                [other.notes[k]] if other.notes[k] else []
            )
            notes.append("; ".join(dict.fromkeys(parts)))
        return JointMap(self.src, other.dst, tuple(sources), tuple(approx), tuple(notes))

    def describe(self) -> str:
        """One line per target joint: name, sources with weights, and the note of approximate ones."""
        lines = [f"{self.src.name} -> {self.dst.name}"]
        for j, s in enumerate(self.sources):
            srcs = " + ".join(f"{w:g}*{self.src.joint_names[i]}" for i, w in s) or "(none)"
            flag = f"  ~ {self.notes[j]}" if self.approximate[j] else ""
            lines.append(f"  {self.dst.joint_names[j]:<16} = {srcs}{flag}")
        return "\n".join(lines)


_Recipe = dict[str, tuple[dict[str, float], str]]


def _build_map(src: Skeleton, dst: Skeleton, recipe: _Recipe | None = None) -> JointMap:
    """Target joints named in ``recipe`` get ``({source name: weight}, note)`` (approximate);
    the others are copied from the source joint of the same name (exact)."""
    recipe = recipe or {}
    sources, approx, notes = [], [], []
    for nm in dst.joint_names:
        if nm in recipe:
            weights, note = recipe[nm]
            sources.append(tuple((src.index(s), w) for s, w in weights.items()))
            approx.append(True)
            notes.append(note)
        else:
            sources.append(((src.index(nm), 1.0),))
            approx.append(False)
            notes.append("")
    return JointMap(src, dst, tuple(sources), tuple(approx), tuple(notes))


def _h36m_from_3dhp() -> _Recipe:
    # The usual 3DHP <-> H36M correspondence: same index slots in the two 17-joint sets.
    return {
        "thorax": ({"neck": 1.0}, "H36M thorax ≈ 3DHP neck (base of the neck)"),
        "neck_nose": ({"head": 1.0}, "H36M neck/nose ≈ 3DHP head (the head joint, above the neck)"),
        "head": ({"head_top": 1.0}, "H36M head (head-top end site) ≈ 3DHP head_top"),
        "spine": (
            {"spine": 1.0},
            "H36M spine (mid-back) ≈ 3DHP spine (lowest spine joint, nearer the pelvis)",
        ),
    }


def _3dhp_from_h36m() -> _Recipe:
    return {
        "neck": ({"thorax": 1.0}, "3DHP neck ≈ H36M thorax"),
        "head": ({"neck_nose": 1.0}, "3DHP head ≈ H36M neck/nose"),
        "head_top": ({"head": 1.0}, "3DHP head_top ≈ H36M head (head-top end site)"),
        "spine": ({"spine": 1.0}, "3DHP spine (lowest spine joint) ≈ H36M spine (mid-back)"),
    }


_HIPS = {"left_hip": 0.5, "right_hip": 0.5}
_SHOULDERS = {"left_shoulder": 0.5, "right_shoulder": 0.5}
_EARS = {"left_ear": 0.5, "right_ear": 0.5}
_HEAD_FROM_EARS = (
    _EARS,
    "H36M head ≈ midpoint of the ears (head centre; H36M's joint is near the top of the head)",
)

_COCO_TO_H36M: _Recipe = {
    "pelvis": (
        _HIPS,
        "H36M pelvis ≈ midpoint of the COCO hips (COCO hips sit higher and wider than joint centres)",
    ),
    "spine": (
        {"left_hip": 0.25, "right_hip": 0.25, "left_shoulder": 0.25, "right_shoulder": 0.25},
        "H36M spine ≈ midpoint of the hip and shoulder midpoints",
    ),
    "thorax": (_SHOULDERS, "H36M thorax ≈ midpoint of the COCO shoulders"),
    "neck_nose": (
        {"nose": 0.5, "left_shoulder": 0.25, "right_shoulder": 0.25},
        "H36M neck/nose ≈ midpoint of the nose and the shoulder midpoint",
    ),
    "head": _HEAD_FROM_EARS,
}

_BODY25_TO_H36M: _Recipe = {
    "pelvis": ({"mid_hip": 1.0}, "H36M pelvis ≈ OpenPose mid_hip (midpoint of the visual hip keypoints)"),
    "spine": ({"mid_hip": 0.5, "neck": 0.5}, "H36M spine ≈ midpoint of OpenPose mid_hip and neck"),
    "thorax": ({"neck": 1.0}, "H36M thorax ≈ OpenPose neck (midpoint of the shoulders)"),
    "neck_nose": ({"neck": 0.5, "nose": 0.5}, "H36M neck/nose ≈ midpoint of OpenPose neck and nose"),
    "head": _HEAD_FROM_EARS,
}

_BODY25B_TO_H36M: _Recipe = {
    "pelvis": (_HIPS, "H36M pelvis ≈ midpoint of the OpenPose hips"),
    "spine": (
        {"left_hip": 0.25, "right_hip": 0.25, "neck": 0.5},
        "H36M spine ≈ midpoint of the hip midpoint and OpenPose neck",
    ),
    "thorax": ({"neck": 1.0}, "H36M thorax ≈ OpenPose neck"),
    "neck_nose": ({"neck": 0.5, "nose": 0.5}, "H36M neck/nose ≈ midpoint of OpenPose neck and nose"),
    "head": ({"head_top": 1.0}, "H36M head (head-top end site) ≈ BODY_25B head_top (top of the head)"),
}


@functools.cache
def _direct_maps() -> dict[tuple[str, str], JointMap]:
    maps = [
        _build_map(H36M17, H36M17_LT),
        _build_map(H36M17_LT, H36M17),
        _build_map(MPI3DHP28, MPI3DHP17),
        _build_map(MPI3DHP17, H36M17, _h36m_from_3dhp()),
        _build_map(H36M17, MPI3DHP17, _3dhp_from_h36m()),
        _build_map(COCO17, H36M17, _COCO_TO_H36M),
        _build_map(BODY25, H36M17, _BODY25_TO_H36M),
        _build_map(BODY25B, H36M17, _BODY25B_TO_H36M),
        _build_map(BODY25, COCO17),
        _build_map(BODY25B, COCO17),
    ]
    return {(m.src.name, m.dst.name): m for m in maps}


def available_joint_maps() -> tuple[tuple[str, str], ...]:
    """``(src, dst)`` registry-name pairs with a direct map (more are reachable through ``h36m17``)."""
    return tuple(_direct_maps())


def get_joint_map(src_name: SkeletonLike, dst_name: SkeletonLike) -> JointMap:
    """The map from joint set ``src_name`` to ``dst_name`` (names case-insensitive).

    Same set: the identity. Otherwise a direct map (see :func:`available_joint_maps`), else the
    composition of two direct maps through an intermediate set, ``h36m17`` first (e.g.
    ``coco17 -> h36m17_lt``, ``mpi3dhp28 -> h36m17``). A composed map keeps the flags and
    notes of both steps, so read its ``describe()`` before trusting it for evaluation.

    Raises:
        KeyError: unknown skeleton, or no map between the two; the message lists the maps.
    """
    src, dst = get_skeleton(src_name), get_skeleton(dst_name)
    if src == dst:
        return _build_map(src, dst)
    direct = _direct_maps()
    if (src.name, dst.name) in direct:
        return direct[(src.name, dst.name)]
    for mid in (H36M17.name, *_SKELETONS):
        a, b = direct.get((src.name, mid)), direct.get((mid, dst.name))
        if a is not None and b is not None:
            return a.then(b)
    pairs = ", ".join(f"{a}->{b}" for a, b in direct)
    raise KeyError(f"no joint map from {src.name!r} to {dst.name!r}; direct maps: {pairs}")
