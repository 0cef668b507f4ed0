"""Procedural human motion on the Human3.6M 17-joint skeleton, for the synthetic capture studio.

Three layers, each usable on its own:

1. **Bodies.** :func:`sample_body` draws a :class:`BodyShape`: a stature and the segment lengths of
   a kinematic H36M-17 skeleton as fractions of it (see *Anthropometry* below).
2. **Kinematics.** Every bone has a rotation relative to its parent bone; :func:`joint_rotations`
   turns anatomical joint angles (see *Joint angles*) into those rotations and
   :func:`forward_kinematics` chains them into positions, vectorised over time.
3. **Motion.** :func:`generate_motion` strings random clips of six primitives (``walk``,
   ``turn``, ``reach``, ``squat``, ``jump``, ``idle``) into one sequence with smooth cross-fades,
   adds slow random sway, clamps every angle to its anatomical range, then places the body in the
   world with a foot-contact approximation (see *Root placement*).

World and body axes. The world is the studio's: millimetres, right-handed, **Z up**, floor at
``Z = 0``. The body frame (and every bone frame in the rest pose) has **x forward, y to the
person's left, z up**; the rest pose is standing upright, arms hanging at the sides, facing +x.
The heading ``psi`` (degrees) turns the body about world Z: the person faces
``(cos psi, sin psi, 0)``.

Anthropometry (fractions of stature H). Longitudinal ratios are Winter's segment-length figure
(D. A. Winter, *Biomechanics and Motor Control of Human Movement*, 4th ed., Wiley 2009, Fig. 4.1,
after Drillis & Contini 1966), where joint heights are ankle 0.039 H, knee 0.285 H, hip
(greater trochanter) 0.530 H, shoulder 0.818 H, elbow 0.630 H, wrist 0.485 H, chin 0.870 H,
eye 0.936 H, and breadths are shoulders (biacromial) 0.259 H and hips 0.191 H:

==================  ========  ===================================================================
ratio               nominal   derivation
==================  ========  ===================================================================
``thigh``           0.245     hip 0.530 - knee 0.285 (Winter)
``shank``           0.246     knee 0.285 - ankle 0.039 (Winter)
``upper_arm``       0.186     shoulder 0.818 - elbow 0.630 (Winter gives 0.186)
``forearm``         0.146     elbow 0.630 - wrist 0.485 (Winter gives 0.146)
``ankle_height``    0.039     ankle joint above the floor, standing (Winter)
``trunk``           0.288     hip 0.530 to shoulder 0.818 (Winter): pelvis -> spine -> thorax,
                              split 0.476 / 0.524 as in the Human3.6M mean skeleton (233 / 257 mm)
``neck``            0.075     thorax (shoulder level) to the nose (~0.888 H, between chin and eye),
                              along a bone tilted 20 deg forward (Human3.6M: 121 mm)
``head``            0.068     nose to the H36M head joint (~0.955 H, forehead / crown), tilted
                              10 deg back (Human3.6M: 115 mm)
``hip_width``       0.152     distance between the hip-joint centres: Winter's 0.191 H breadth
                              minus ~0.02 H on each side (trochanter and soft tissue lie lateral
                              of the joint centre); Human3.6M's mean skeleton has 266 mm
``shoulder_width``  0.219     distance between the shoulder-joint centres: biacromial 0.259 H
                              minus ~0.02 H on each side (modelling assumption)
==================  ========  ===================================================================

The last two rows convert surface breadths to joint-centre distances; those 0.02 H insets are a
modelling assumption, not a published figure. Per person each ratio is
``nominal * (1 + 0.03 * z)`` with ``z ~ N(0, 1)`` truncated to ``[-2, 2]`` (a 3 % coefficient of
variation), so it stays within ``nominal * (1 +- 0.06)``; bilateral segments (thigh, shank, upper
arm, forearm) then differ left/right by a factor ``1 +- d/2`` with ``|d| <= 0.01`` (at most 1 %
asymmetry). :data:`RATIO_RANGES` holds the resulting bounds (``nominal * (1 +- 0.06)``, times
``1 +- 0.005`` for bilateral segments: within +-6.6 %). Stature is
``N(1700, 90)`` mm clipped to ``[1450, 1950]``.

Joint angles (degrees; the ranges are hard limits, every generated angle is clamped to them).
Sources: American Academy of Orthopaedic Surgeons, *Joint Motion: Method of Measuring and
Recording* (1965) (as tabulated in Greene & Heckman, *The Clinical Measurement of Joint Motion*,
AAOS 1994) and Soucie et al., "Range of motion measurements: reference values and a database for
comparison studies", *Haemophilia* 17 (2011) 500-507; knee and elbow as in the mvpose brief:

==========================  =============  ==================================================
channel                     range          meaning of ``+`` (source of the bound)
==========================  =============  ==================================================
``hip_flexion``             [-30, 120]     thigh forward; extension 30 (AAOS)
``hip_abduction``           [-30, 45]      thigh away from the midline; adduction 30 (AAOS)
``hip_rotation``            [-45, 45]      internal rotation; external 45 (AAOS)
``knee_flexion``            [0, 140]       flexion only, no hyperextension (AAOS 135, Soucie ~140)
``shoulder_flexion``        [-60, 180]     arm forward / up; extension 60 (AAOS)
``shoulder_abduction``      [0, 180]       arm out to the side (AAOS); adduction blocked by the torso
``shoulder_rotation``       [-90, 70]      internal 70, external 90 (AAOS)
``elbow_flexion``           [0, 145]       flexion only (AAOS 150, Soucie ~145)
``trunk_flexion``           [-25, 80]      thoracolumbar forward bend; extension 25 (AAOS)
``trunk_lateral``           [-35, 35]      bend to the left (AAOS 35)
``trunk_rotation``          [-45, 45]      twist to the left (AAOS 45)
``neck_flexion``            [-45, 45]      chin down; extension 45 (AAOS cervical)
``neck_lateral``            [-45, 45]      ear to the left shoulder (AAOS)
``neck_rotation``           [-60, 60]      look to the left (AAOS)
``pelvis_tilt``             [-15, 45]      anterior tilt (top forward); plausibility bound
``pelvis_obliquity``        [-10, 10]      left side up; plausibility bound
``pelvis_rotation``         [-15, 15]      pelvis turned left of the heading; plausibility bound
==========================  =============  ==================================================

Sided channels exist for ``left_`` and ``right_`` with mirrored axes, so ``+`` means the same
anatomical motion on both sides. Trunk and neck angles are the total over their two bones
(``spine`` and ``thorax``; ``neck_nose`` and ``head``), half on each. The primitives stay well inside
these ranges; the clamp only guards the sum of a primitive, the cross-fades and the random sway.

Gait. Walking is built from ankle paths relative to the hip in the sagittal plane, solved by
two-link inverse kinematics: in stance the ankle moves back at exactly stride length x stride
frequency, the knee flexes for loading response, heel-off and pre-swing (~20 deg at the other
foot's heel strike, 35-42 deg at toe-off) and the heel rises where the leg cannot reach; in swing
the ankle follows a cubic Hermite curve lifted for clearance. The resulting curves have the shape
of the normative ones (Winter, *The Biomechanics and Motor Control of Human Gait*, 1991; Perry &
Burnfield, *Gait Analysis*, 2010): hip about +40 to -22 deg (thigh to pelvis), knee ~5 deg at heel
strike, 15-30 deg loading bump, ~60 deg swing peak; pelvis rising and falling ~40-50 mm per step;
duty factor 0.60-0.64; arms swing opposite to the same-side leg, the pelvis rotates and drops on the
swing side, the shoulders counter-rotate. Turning is concentrated in single support (the turn rate
is modulated by the gait phase and vanishes at heel strikes), so the body pivots on the stance foot.
Step length is 0.37-0.44 H and cadence 99-117 steps/min, so walking speed is 0.89-1.67 m/s.

Root placement (foot-contact approximation). Forward kinematics runs with the pelvis at the
origin; the world root trajectory is then built so that

* **vertical:** the lower *sole* (ankle height minus the primitive's heel lift, i.e. where a foot
  standing on its toes meets the floor; a soft minimum over both feet, 5 mm temperature) sits at
  the body's standing ankle height (0.039 H), plus the ballistic flight height during jumps. While
  standing the lowest joint is an ankle at ``ankle_height_mm .. ankle_height_mm + 4`` mm
  (~53-85 mm); while walking the lower ankle is at most ~60 mm higher (heel-off);
* **horizontal:** a supporting foot does not slide: per frame the root moves by minus the
  horizontal displacement, relative to the pelvis, of the supporting ankles, weighted by a support
  share: the foot whose sole is clearly lower (by more than ~10-20 mm) carries the body; with both
  feet down the primitive decides (walking hands the weight to the front foot at each heel strike,
  idle shifts it from side to side, other primitives share it equally). Walking speed thus follows
  from step length and cadence, turns pivot on the stance foot, a squat moves the pelvis back over
  planted feet, and during jump flights the root keeps no horizontal velocity (jumps are in place).

The root wanders freely in the horizontal plane (a 10 s walk covers ~12 m); a studio that needs the
person inside a capture volume should choose ``kinds`` or re-centre the motion.

Determinism: everything random comes from one seed (or generator); :func:`generate_motion` spawns
independent streams for the body and for the motion, so passing an explicit ``body`` keeps the
sequence of clips and their random parameters (the angles that depend on the body, such as the
leg inverse kinematics, adapt to it).

Example:
    >>> m = generate_motion(0, num_frames=500)
    >>> m.positions_mm.shape, m.up_axis, m.source
    ((500, 17, 3), 'z', 'procedural:seed=0')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mvpose.skeleton import H36M17

from .types import Motion

__all__ = [
    "BodyShape",
    "NOMINAL_RATIOS",
    "RATIO_RANGES",
    "ANGLE_CHANNELS",
    "ANGLE_LIMITS_DEG",
    "MOTION_KINDS",
    "Clip",
    "ProceduralMotion",
    "sample_body",
    "joint_rotations",
    "forward_kinematics",
    "generate_motion",
    "generate_motion_with_info",
]

RngLike = int | np.integer | np.random.Generator | torch.Generator

# --------------------------------------------------------------------------------------------------
# Anthropometry
# --------------------------------------------------------------------------------------------------

#: Nominal segment lengths as fractions of stature (see the module docstring for sources).
NOMINAL_RATIOS: dict[str, float] = {
    "thigh": 0.245,
    "shank": 0.246,
    "upper_arm": 0.186,
    "forearm": 0.146,
    "ankle_height": 0.039,
    "trunk": 0.288,
    "neck": 0.075,
    "head": 0.068,
    "hip_width": 0.152,
    "shoulder_width": 0.219,
}
_BILATERAL = ("thigh", "shank", "upper_arm", "forearm")
_RATIO_CV = 0.03  # coefficient of variation between people
_RATIO_TRUNC = 2.0  # truncation, in standard deviations
_LR_ASYM = 0.01  # max relative left/right difference
_SPREAD = _RATIO_CV * _RATIO_TRUNC

#: ``(low, high)`` bounds of every ratio key of :attr:`BodyShape.ratios` (fractions of stature):
#: ``nominal * (1 +- 0.06)``, times ``(1 +- 0.005)`` for the bilateral segments.
RATIO_RANGES: dict[str, tuple[float, float]] = {
    **{
        f"{side}_{k}": (
            NOMINAL_RATIOS[k] * (1 - _SPREAD) * (1 - _LR_ASYM / 2),
            NOMINAL_RATIOS[k] * (1 + _SPREAD) * (1 + _LR_ASYM / 2),
        )
        for k in _BILATERAL
        for side in ("left", "right")
    },
    **{k: (v * (1 - _SPREAD), v * (1 + _SPREAD)) for k, v in NOMINAL_RATIOS.items() if k not in _BILATERAL},
}

STATURE_MEAN_MM, STATURE_SD_MM, STATURE_RANGE_MM = 1700.0, 90.0, (1450.0, 1950.0)
_SPINE_SPLIT = 233.383263 / (233.383263 + 257.077681)  # pelvis->spine share of the trunk (H36M mean)
_NECK_TILT, _HEAD_TILT = math.radians(20.0), math.radians(-10.0)

_J = H36M17.num_joints
_IDX = {n: i for i, n in enumerate(H36M17.joint_names)}


@dataclass(frozen=True, eq=False)
class BodyShape:
    """Proportions of one person: stature and segment lengths as fractions of it.

    Attributes:
        stature_mm: standing height H in millimetres.
        ratios: segment length / H for the keys of :data:`RATIO_RANGES`: ``left_thigh``,
            ``right_thigh``, ``left_shank``, ``right_shank``, ``left_upper_arm``,
            ``right_upper_arm``, ``left_forearm``, ``right_forearm``, ``ankle_height``, ``trunk``,
            ``neck``, ``head``, ``hip_width``, ``shoulder_width``.
    """

    stature_mm: float
    ratios: dict[str, float] = field(repr=False)

    def __post_init__(self) -> None:
        missing = sorted(set(RATIO_RANGES) - set(self.ratios))
        if missing:
            raise ValueError(f"BodyShape: ratios lack {missing}")
        if not self.stature_mm > 0:
            raise ValueError(f"BodyShape: stature_mm must be positive, got {self.stature_mm}")
        object.__setattr__(self, "stature_mm", float(self.stature_mm))
        object.__setattr__(self, "ratios", {k: float(self.ratios[k]) for k in RATIO_RANGES})

    @classmethod
    def average(cls, stature_mm: float = STATURE_MEAN_MM) -> BodyShape:
        """The nominal (symmetric) body of the given stature."""
        ratios = {k: NOMINAL_RATIOS[k.removeprefix("left_").removeprefix("right_")] for k in RATIO_RANGES}
        return cls(stature_mm, ratios)

    def length_mm(self, key: str) -> float:
        """Length in millimetres of segment ``key`` (a key of :attr:`ratios`)."""
        return self.ratios[key] * self.stature_mm

    @property
    def ankle_height_mm(self) -> float:
        """Height of the ankle joint above the floor when standing, mm."""
        return self.length_mm("ankle_height")

    def rest_offsets_mm(self) -> np.ndarray:
        """Bone vectors of the rest pose: joint ``j`` minus its parent, in the parent bone's frame.

        Returns:
            ``(17, 3)`` float64, millimetres, body axes (x forward, y left, z up); row 0 (pelvis)
            is zero. Joint order is :data:`mvpose.skeleton.H36M17`.
        """
        L = self.length_mm
        off = np.zeros((_J, 3))
        for side, sy in (("left", 1.0), ("right", -1.0)):
            off[_IDX[f"{side}_hip"]] = (0.0, sy * L("hip_width") / 2, 0.0)
            off[_IDX[f"{side}_knee"]] = (0.0, 0.0, -L(f"{side}_thigh"))
            off[_IDX[f"{side}_ankle"]] = (0.0, 0.0, -L(f"{side}_shank"))
            off[_IDX[f"{side}_shoulder"]] = (0.0, sy * L("shoulder_width") / 2, 0.0)
            off[_IDX[f"{side}_elbow"]] = (0.0, 0.0, -L(f"{side}_upper_arm"))
            off[_IDX[f"{side}_wrist"]] = (0.0, 0.0, -L(f"{side}_forearm"))
        off[_IDX["spine"]] = (0.0, 0.0, _SPINE_SPLIT * L("trunk"))
        off[_IDX["thorax"]] = (0.0, 0.0, (1 - _SPINE_SPLIT) * L("trunk"))
        off[_IDX["neck_nose"]] = L("neck") * np.array([math.sin(_NECK_TILT), 0.0, math.cos(_NECK_TILT)])
        off[_IDX["head"]] = L("head") * np.array([math.sin(_HEAD_TILT), 0.0, math.cos(_HEAD_TILT)])
        return off

    def bone_lengths_mm(self) -> np.ndarray:
        """``(17,)`` length of the bone from each joint's parent to the joint, mm (0 for the pelvis)."""
        return np.linalg.norm(self.rest_offsets_mm(), axis=1)


def _as_rng(rng: RngLike) -> np.random.Generator:
    """A numpy generator from a seed, a numpy generator (used as is) or a torch generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=rng).item())
        return np.random.default_rng(seed)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"expected a seed (int), numpy.random.Generator or torch.Generator, got {type(rng)}")


def sample_body(rng: RngLike) -> BodyShape:
    """Draw a person's proportions around human averages.

    Stature ``~ N(1700, 90)`` mm clipped to ``[1450, 1950]``; each segment ratio
    ``nominal * (1 + 0.03 z)``, ``z ~ N(0, 1)`` truncated to ``[-2, 2]``; bilateral segments then
    scaled by ``1 + d/2`` (left) and ``1 - d/2`` (right), ``d ~ U(-0.01, 0.01)``. Every ratio lies in
    :data:`RATIO_RANGES`. Nominal values and their sources are in the module docstring.

    Args:
        rng: a seed, a ``numpy.random.Generator`` (advanced in place) or a ``torch.Generator``.

    Returns:
        A :class:`BodyShape`.

    Example:
        >>> b = sample_body(0)
        >>> 1450 <= b.stature_mm <= 1950
        True
    """
    g = _as_rng(rng)
    stature = float(np.clip(g.normal(STATURE_MEAN_MM, STATURE_SD_MM), *STATURE_RANGE_MM))
    keys = list(NOMINAL_RATIOS)
    z = np.clip(g.standard_normal(len(keys)), -_RATIO_TRUNC, _RATIO_TRUNC)
    asym = g.uniform(-_LR_ASYM, _LR_ASYM, len(_BILATERAL))
    ratios: dict[str, float] = {}
    for k, zk in zip(keys, z):
        r = NOMINAL_RATIOS[k] * (1 + _RATIO_CV * zk)
        if k in _BILATERAL:
            d = asym[_BILATERAL.index(k)]
            ratios[f"left_{k}"], ratios[f"right_{k}"] = r * (1 + d / 2), r * (1 - d / 2)
        else:
            ratios[k] = r
    return BodyShape(stature, ratios)


# --------------------------------------------------------------------------------------------------
# Joint angles and kinematics
# --------------------------------------------------------------------------------------------------

_AXIAL = (
    "pelvis_tilt",
    "pelvis_obliquity",
    "pelvis_rotation",
    "trunk_flexion",
    "trunk_lateral",
    "trunk_rotation",
    "neck_flexion",
    "neck_lateral",
    "neck_rotation",
)
_SIDED = (
    "hip_flexion",
    "hip_abduction",
    "hip_rotation",
    "knee_flexion",
    "shoulder_flexion",
    "shoulder_abduction",
    "shoulder_rotation",
    "elbow_flexion",
)
#: Names of the joint-angle channels, in the column order of the ``(T, C)`` angle arrays (degrees).
ANGLE_CHANNELS: tuple[str, ...] = _AXIAL + tuple(f"{s}_{n}" for s in ("left", "right") for n in _SIDED)

_LIMITS_AXIAL = {
    "pelvis_tilt": (-15.0, 45.0),
    "pelvis_obliquity": (-10.0, 10.0),
    "pelvis_rotation": (-15.0, 15.0),
    "trunk_flexion": (-25.0, 80.0),
    "trunk_lateral": (-35.0, 35.0),
    "trunk_rotation": (-45.0, 45.0),
    "neck_flexion": (-45.0, 45.0),
    "neck_lateral": (-45.0, 45.0),
    "neck_rotation": (-60.0, 60.0),
}
_LIMITS_SIDED = {
    "hip_flexion": (-30.0, 120.0),
    "hip_abduction": (-30.0, 45.0),
    "hip_rotation": (-45.0, 45.0),
    "knee_flexion": (0.0, 140.0),
    "shoulder_flexion": (-60.0, 180.0),
    "shoulder_abduction": (0.0, 180.0),
    "shoulder_rotation": (-90.0, 70.0),
    "elbow_flexion": (0.0, 145.0),
}
#: ``channel -> (min, max)`` in degrees: the anatomical limits (module docstring gives sources).
ANGLE_LIMITS_DEG: dict[str, tuple[float, float]] = {
    **_LIMITS_AXIAL,
    **{f"{s}_{n}": v for s in ("left", "right") for n, v in _LIMITS_SIDED.items()},
}
_CH = {n: i for i, n in enumerate(ANGLE_CHANNELS)}
_NA = len(ANGLE_CHANNELS)
# More columns ride along in the clip arrays: heading rate (deg/s), jump flight height (mm), the
# share of the body weight on the left foot when both feet are down (0..1) and the heel lift of each
# foot (mm: the ankle's height above its standing height while the toes stay on the floor).
_YAW, _FLIGHT, _SUPPORT = _NA, _NA + 1, _NA + 2
_LIFT = {"left": _NA + 3, "right": _NA + 4}
_NC = _NA + 5

_NEUTRAL = np.zeros(_NC)
for _s in ("left", "right"):
    _NEUTRAL[_CH[f"{_s}_hip_flexion"]] = 2.0
    _NEUTRAL[_CH[f"{_s}_knee_flexion"]] = 3.0
    _NEUTRAL[_CH[f"{_s}_shoulder_abduction"]] = 6.0
    _NEUTRAL[_CH[f"{_s}_elbow_flexion"]] = 12.0
_NEUTRAL[_CH["pelvis_tilt"]] = 3.0
_NEUTRAL[_SUPPORT] = 0.5


def _rot(axis: int, deg: np.ndarray) -> np.ndarray:
    """``(T, 3, 3)`` rotations by ``deg`` (degrees, ``(T,)``) about body axis 0 (x), 1 (y) or 2 (z)."""
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros((*a.shape, 3, 3))
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def _yxz(y: np.ndarray, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``R_y(y) @ R_x(x) @ R_z(z)`` for angle arrays ``(T,)`` in degrees -> ``(T, 3, 3)``."""
    return _rot(1, y) @ _rot(0, x) @ _rot(2, z)


def joint_rotations(angles_deg: np.ndarray, heading_deg: np.ndarray) -> np.ndarray:
    """Per-bone local rotations of the H36M-17 skeleton from anatomical joint angles.

    The rotation stored at joint ``j`` turns the bone that *ends* at ``j`` (from its parent to
    ``j``) relative to the parent bone's frame; at the pelvis it is the root orientation
    ``R_z(heading + pelvis_rotation) R_y(pelvis_tilt) R_x(pelvis_obliquity)``. Hips and knees
    become the rotations at ``*_knee`` and ``*_ankle``, shoulders and elbows those at ``*_elbow``
    and ``*_wrist``, trunk at ``spine`` and ``thorax`` (half each), neck at ``neck_nose`` and
    ``head`` (half each); ``*_hip`` and ``*_shoulder`` keep the identity (rigid pelvis and
    shoulder girdle). Ball joints are ``R_y(-flexion) R_x(side * abduction) R_z(-side * rotation)``
    with ``side = +1`` left, ``-1`` right; knees ``R_y(+flexion)``; elbows ``R_y(-flexion)``.

    Args:
        angles_deg: ``(T, C)`` degrees, columns :data:`ANGLE_CHANNELS`.
        heading_deg: ``(T,)`` heading in degrees (facing ``(cos, sin, 0)``).

    Returns:
        ``(T, 17, 3, 3)`` float64 rotation matrices.
    """
    a = np.asarray(angles_deg, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < _NA:
        raise ValueError(f"joint_rotations: angles_deg must be (T, {_NA}), got {a.shape}")
    T = a.shape[0]
    A = {n: a[:, i] for n, i in _CH.items()}
    R = np.broadcast_to(np.eye(3), (T, _J, 3, 3)).copy()
    R[:, 0] = (
        _rot(2, np.asarray(heading_deg, dtype=np.float64) + A["pelvis_rotation"])
        @ _rot(1, A["pelvis_tilt"])
        @ _rot(0, A["pelvis_obliquity"])
    )
    half_trunk = _yxz(A["trunk_flexion"] / 2, -A["trunk_lateral"] / 2, A["trunk_rotation"] / 2)
    R[:, _IDX["spine"]] = R[:, _IDX["thorax"]] = half_trunk
    half_neck = _yxz(A["neck_flexion"] / 2, -A["neck_lateral"] / 2, A["neck_rotation"] / 2)
    R[:, _IDX["neck_nose"]] = R[:, _IDX["head"]] = half_neck
    for side, s in (("left", 1.0), ("right", -1.0)):
        g = {n: A[f"{side}_{n}"] for n in _SIDED}
        R[:, _IDX[f"{side}_knee"]] = _yxz(-g["hip_flexion"], s * g["hip_abduction"], -s * g["hip_rotation"])
        R[:, _IDX[f"{side}_ankle"]] = _rot(1, g["knee_flexion"])
        R[:, _IDX[f"{side}_elbow"]] = _yxz(
            -g["shoulder_flexion"], s * g["shoulder_abduction"], -s * g["shoulder_rotation"]
        )
        R[:, _IDX[f"{side}_wrist"]] = _rot(1, -g["elbow_flexion"])
    return R


def forward_kinematics(
    offsets_mm: np.ndarray, rotations: np.ndarray, root_mm: np.ndarray | None = None, parents=None
) -> np.ndarray:
    """Joint positions from per-bone local rotations, vectorised over time.

    With ``F_j = F_parent(j) @ R_j`` (``F_root = R_root``), joint ``j`` is at
    ``p_j = p_parent(j) + F_j @ offsets_mm[j]`` and the root at ``root_mm``: the rotation at ``j``
    turns the bone ending at ``j`` (see :func:`joint_rotations`). Loops over joints only.

    Args:
        offsets_mm: ``(J, 3)`` rest bone vectors (:meth:`BodyShape.rest_offsets_mm`), mm.
        rotations: ``(T, J, 3, 3)`` local rotations.
        root_mm: ``(T, 3)`` root positions, mm; ``None`` puts the root at the origin.
        parents: ``J`` parent indices in topological order, ``-1`` for the root; default H36M-17.

    Returns:
        ``(T, J, 3)`` float64 positions, mm.
    """
    parents = H36M17.parents if parents is None else tuple(parents)
    off = np.asarray(offsets_mm, dtype=np.float64)
    R = np.asarray(rotations, dtype=np.float64)
    T, J = R.shape[:2]
    if off.shape != (J, 3) or len(parents) != J or R.shape[2:] != (3, 3):
        raise ValueError(
            f"forward_kinematics: offsets {off.shape}, rotations {R.shape} and {len(parents)} parents "
            "disagree; expected (J, 3), (T, J, 3, 3), J"
        )
    F: list[np.ndarray] = [np.empty(0)] * J  # per joint (T, 3, 3), contiguous (faster matmul)
    P = np.empty((T, J, 3))
    for j, p in enumerate(parents):
        Rj = np.ascontiguousarray(R[:, j])
        if p < 0:
            F[j] = Rj
            P[:, j] = 0.0 if root_mm is None else root_mm
        else:
            F[j] = F[p] @ Rj
            P[:, j] = P[:, p] + np.einsum("tik,k->ti", F[j], off[j])
    return P


# --------------------------------------------------------------------------------------------------
# Motion primitives
# --------------------------------------------------------------------------------------------------

MOTION_KINDS = ("walk", "turn", "reach", "squat", "jump", "idle")
_BLEND_S = 0.5  # cross-fade length between clips, s
_G_MM_S2 = 9810.0


def _ease(x: np.ndarray) -> np.ndarray:
    """Smootherstep on [0, 1] (C2), clamped outside."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def _pulse(t: np.ndarray, t0: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """0 -> 1 over ``[t0, t0 + rise]``, 1 for ``hold``, 1 -> 0 over ``fall`` (smootherstep edges)."""
    return _ease((t - t0) / rise) - _ease((t - t0 - rise - hold) / fall)


def _bump(ph: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Periodic Gaussian bump in gait phase (period 1) centred on ``mu``."""
    d = (ph - mu + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (d / sigma) ** 2)


@dataclass(frozen=True)
class Clip:
    """One primitive in a generated sequence.

    Attributes:
        kind: one of :data:`MOTION_KINDS`.
        start: first frame (the cross-fade with the previous clip is centred on it).
        stop: frame after the last one (the next clip's ``start``).
        params: the primitive's drawn parameters (degrees, seconds, mm, Hz).
    """

    kind: str
    start: int
    stop: int
    params: dict = field(compare=False, repr=False)


def _draw_gait(g: np.random.Generator, body: BodyShape, phase0: float | None) -> dict:
    H = body.stature_mm
    step = g.uniform(0.37, 0.44) * H  # step length; ~0.41 H at comfortable speed
    cadence = g.uniform(1.65, 1.95)  # steps per second (99-117 steps/min)
    return {
        "stride_hz": cadence / 2,
        "stride_mm": 2 * step,
        "duty": g.uniform(0.6, 0.64),  # stance share of the cycle
        "front": g.uniform(0.17, 0.21),  # ankle ahead of the hip at heel strike, fraction of the stride
        "knee_mid": g.uniform(5.0, 12.0),  # knee flexion at mid-stance, deg
        "knee_load": g.uniform(0.004, 0.01),  # loading-response shortening, fraction of the leg
        "knee_heel_off": g.uniform(15.0, 25.0),  # knee flexion at the other foot's heel strike, deg
        "knee_toe_off": g.uniform(35.0, 42.0),  # knee flexion at toe-off, deg
        "clearance": g.uniform(0.04, 0.07),  # extra swing shortening, fraction of the leg
        "phase0": g.uniform() if phase0 is None else phase0,
        "legs_mm": {
            s: (body.length_mm(f"{s}_thigh"), body.length_mm(f"{s}_shank")) for s in ("left", "right")
        },
        "arm_amp": g.uniform(8.0, 20.0),
        "elbow0": g.uniform(8.0, 20.0),
        "elbow_amp": g.uniform(5.0, 15.0),
        "pelvis_rot": g.uniform(2.0, 6.0),
        "obliquity": g.uniform(2.0, 5.0),
        "lean": g.uniform(0.0, 6.0),
        "wander_amp": g.uniform(0.0, 8.0),  # deg/s of slow heading drift
        "wander_hz": g.uniform(0.05, 0.2),
        "wander_phase": g.uniform(0, 2 * np.pi),
    }


def _leg_length(thigh: float, shank: float, knee_deg: float) -> float:
    """Hip-to-ankle distance of a leg with the knee flexed by ``knee_deg``."""
    return math.sqrt(thigh**2 + shank**2 + 2 * thigh * shank * math.cos(math.radians(knee_deg)))


def _leg_ik(x: np.ndarray, d: np.ndarray, thigh: float, shank: float) -> tuple[np.ndarray, np.ndarray]:
    """Sagittal two-link inverse kinematics.

    Args:
        x, d: ankle position relative to the hip joint, ``x`` forward and ``d`` downward, mm.
        thigh, shank: segment lengths, mm.

    Returns:
        ``(thigh angle from the vertical, forward positive; knee flexion >= 0)`` in degrees; the
        reach is clamped to a knee flexion of at least 2 degrees.
    """
    r = np.clip(np.hypot(x, d), abs(thigh - shank) + 1.0, _leg_length(thigh, shank, 2.0))
    knee = np.pi - np.arccos(np.clip((thigh**2 + shank**2 - r**2) / (2 * thigh * shank), -1.0, 1.0))
    alpha = np.arccos(np.clip((thigh**2 + r**2 - shank**2) / (2 * thigh * r), -1.0, 1.0))
    return np.degrees(np.arctan2(x, d) + alpha), np.degrees(knee)


def _softmin(a: np.ndarray, b: np.ndarray, tau: float) -> np.ndarray:
    """Smooth minimum of two arrays (at most ``tau * log 2`` below the true minimum)."""
    m = np.minimum(a, b)
    return m - tau * np.log(np.exp(-(a - m) / tau) + np.exp(-(b - m) / tau))


def _gait_leg(u: np.ndarray, height: np.ndarray, p: dict, side: str):
    """Ankle path of one leg relative to its hip over the gait cycle ``u`` in [0, 1) (0 = heel strike).

    Returns ``(x forward, d downward, heel lift)`` in mm. Stance (``u < duty``): the ankle moves back
    at the stride speed (``stride_mm`` per cycle) from ``front * stride_mm`` ahead of the hip; the
    hip stays ``height`` above the floor contact unless the knee must bend more: a minimum knee
    flexion of 2 deg rises from 25 % of the cycle to ``knee_heel_off`` at the other foot's heel
    strike (``u = 0.5``) and ``knee_toe_off`` at toe-off; the heel rises by whatever that takes
    (``lift``). In pre-swing (``0.5 <= u < duty``) the foot rolls over the toes: the ankle slows to
    rest relative to the hip. Swing: a cubic Hermite forward, tangents matching the pre-swing (0) and
    the stance speed, lifted for clearance while the heel lift fades.
    """
    thigh, shank = p["legs_mm"][side]
    leg = thigh + shank
    beta, S = p["duty"], p["stride_mm"]
    db = beta - 0.5
    x_hs = p["front"] * S
    x_to = x_hs - 0.5 * S - 0.5 * S * db

    def stance(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u1, du = np.minimum(u, 0.5), np.clip(u - 0.5, 0.0, db)
        x = x_hs - S * u1 - S * du + S / (2 * db) * du * du
        knee = 2.0 + (p["knee_heel_off"] - 2.0) * _ease((u - 0.25) / 0.25)
        knee = knee + (p["knee_toe_off"] - p["knee_heel_off"]) * _ease(du / db)
        reach2 = thigh**2 + shank**2 + 2 * thigh * shank * np.cos(np.radians(knee))
        load = p["knee_load"] * leg * _bump(u, 0.06, 0.04)
        d = _softmin(height - load, np.sqrt(np.maximum(reach2 - x * x, (0.3 * leg) ** 2)), 3.0)
        return x, d

    x, d = stance(np.minimum(u, beta))
    # heel lift keeping the sole on the floor, less an unloading share in pre-swing so that the
    # leaving foot's sole is clearly (~0.04 leg) above the floor at toe-off
    unload = 0.04 * leg * _ease(np.clip(u - 0.5, 0.0, db) / db)
    lift = np.maximum(height - d, 0.0) - unload
    sw = np.clip((u - beta) / (1.0 - beta), 0.0, 1.0)
    x_sw = (
        (-2 * sw**3 + 3 * sw**2) * x_hs
        + (2 * sw**3 - 3 * sw**2 + 1) * x_to
        - (sw**3 - sw**2) * S * (1 - beta)
    )
    _, d_hs = stance(np.zeros_like(u))
    d_sw = d + (d_hs - d) * _ease(sw / 0.6) - p["clearance"] * leg * np.sin(np.pi * sw) ** 2
    lift_sw = lift * (1.0 - _ease(sw / 0.4))
    swing = u >= beta
    return np.where(swing, x_sw, x), np.where(swing, d_sw, d), np.where(swing, lift_sw, lift)


def _gait(t: np.ndarray, p: dict, out: np.ndarray) -> None:
    """Fill ``out`` (``(n, C)``, neutral on entry) with a walking cycle at local times ``t`` (s).

    The legs follow ankle paths designed relative to the hip in the sagittal plane (:func:`_gait_leg`)
    and solved by :func:`_leg_ik`. A foot in stance moves back relative to the hip at exactly the
    stride speed, so the foot-contact root placement advances the root at step length x cadence.
    The pelvis follows an arc with its low points in double support. The support channel hands the
    body weight to the front foot at each heel strike.
    """
    c = _CH
    ph_r = p["phase0"] + p["stride_hz"] * t  # 0 = right heel strike
    tilt = 4.0 + np.cos(4 * np.pi * ph_r)
    for side, ph in (("right", ph_r), ("left", ph_r + 0.5)):
        thigh, shank = p["legs_mm"][side]
        d0 = _leg_length(thigh, shank, p["knee_mid"])
        reach = _leg_length(thigh, shank, 5.0)  # knee flexion at heel strike
        dip = max(0.0, d0 - math.sqrt(max(reach**2 - (p["front"] * p["stride_mm"]) ** 2, 1.0)))
        # pelvis height above the floor contact: lowest at the heel strikes (phases 0 and 0.5)
        height = d0 - dip * 0.5 * (1 + np.cos(4 * np.pi * ph_r))
        x, d, lift = _gait_leg(ph % 1.0, height, p, side)
        theta, knee = _leg_ik(x, d, thigh, shank)
        out[:, c[f"{side}_hip_flexion"]] = theta + tilt
        out[:, c[f"{side}_knee_flexion"]] = knee
        out[:, _LIFT[side]] = lift
        arm = np.cos(2 * np.pi * (ph - 0.9))  # +1 when the same-side thigh is furthest forward
        out[:, c[f"{side}_shoulder_flexion"]] = 2.0 - p["arm_amp"] * arm  # opposite to the thigh
        out[:, c[f"{side}_elbow_flexion"]] = p["elbow0"] + p["elbow_amp"] * (1 - arm) / 2
    u = ph_r % 1.0  # weight onto the front foot at each heel strike (over 3 % of the cycle)
    out[:, _SUPPORT] = np.where(u < 0.5, 1.0 - _ease(u / 0.03), _ease((u - 0.5) / 0.03))
    obl = -p["obliquity"] * np.sin(2 * np.pi * (ph_r + 0.1))  # swing side drops
    out[:, c["pelvis_obliquity"]] = obl
    out[:, c["left_hip_abduction"]] = -obl  # keep the thighs vertical in the frontal plane
    out[:, c["right_hip_abduction"]] = obl
    prot = p["pelvis_rot"] * np.cos(2 * np.pi * ph_r)  # right hip forward at right heel strike
    out[:, c["pelvis_rotation"]] = prot
    out[:, c["trunk_rotation"]] = -1.3 * prot  # shoulders counter-rotate
    out[:, c["pelvis_tilt"]] = tilt
    out[:, c["trunk_flexion"]] = p["lean"]
    out[:, _YAW] = p["wander_amp"] * np.sin(2 * np.pi * p["wander_hz"] * t + p["wander_phase"])
    out[:, _YAW] *= _pivot(p, t)


def _pivot(p: dict, t: np.ndarray) -> np.ndarray:
    """Gait-phase modulation of the turning rate, mean 1 and zero at each heel strike: the body turns
    about the foot in single support, so the root velocity stays continuous when support changes."""
    return 1.0 - np.cos(4 * np.pi * (p["phase0"] + p["stride_hz"] * t))


def _draw_turn(g: np.random.Generator, body: BodyShape, phase0: float | None) -> dict:
    p = _draw_gait(g, body, phase0)
    p["turn_deg"] = float(g.choice([-1.0, 1.0]) * g.uniform(60.0, 180.0))
    return p


def _turn(t: np.ndarray, p: dict, out: np.ndarray, dur: float) -> None:
    _gait(t, p, out)
    u = np.clip(t / dur, 0.0, 1.0)
    rate = p["turn_deg"] * 30 * u * u * (u - 1) ** 2 / dur  # d/dt of turn_deg * smootherstep(t / dur)
    out[:, _YAW] += rate * _pivot(p, t)
    out[:, _CH["neck_rotation"]] += 0.3 * rate  # look into the turn (~0.3 s ahead)
    out[:, _CH["trunk_rotation"]] += 0.1 * rate


def _reach_time(angle_deg: float, arm_mm: float, g: np.random.Generator) -> float:
    # smootherstep peaks at 1.875x the mean angular speed; keep the wrist below ~2.5 m/s
    return max(g.uniform(0.7, 1.3), 1.875 * math.radians(angle_deg) * arm_mm / 2500.0)


def _draw_reach(g: np.random.Generator, body: BodyShape, phase0: float | None) -> dict:
    arm = body.length_mm("left_upper_arm") + body.length_mm("left_forearm")
    flex = g.uniform(20.0, 150.0)
    p = {
        "sides": ("left", "right", "both")[g.integers(3)],
        "flex": flex,
        "abd": g.uniform(0.0, 60.0),
        "rot": g.uniform(-20.0, 40.0),
        "elbow": g.uniform(5.0, 50.0),
        "lean": g.uniform(15.0, 50.0) if flex < 70 else g.uniform(0.0, 15.0),  # reaching low: bend
        "twist": g.uniform(-25.0, 25.0),
        "lateral": g.uniform(-12.0, 12.0),
        "knee": g.uniform(0.0, 30.0),
        "t0": g.uniform(0.2, 0.5),
        "hold": g.uniform(0.3, 1.2),
    }
    p["rise"] = _reach_time(flex + p["abd"], arm, g)
    p["fall"] = _reach_time(flex + p["abd"], arm, g)
    p["duration"] = p["t0"] + p["rise"] + p["hold"] + p["fall"] + g.uniform(0.2, 0.5)
    return p


def _reach(t: np.ndarray, p: dict, out: np.ndarray) -> None:
    e = _pulse(t, p["t0"], p["rise"], p["hold"], p["fall"])
    c = _CH
    sides = ("left", "right") if p["sides"] == "both" else (p["sides"],)
    for side in sides:
        for n, v in (
            ("shoulder_flexion", p["flex"]),
            ("shoulder_abduction", p["abd"]),
            ("shoulder_rotation", p["rot"]),
            ("elbow_flexion", p["elbow"]),
        ):
            out[:, c[f"{side}_{n}"]] += e * (v - out[:, c[f"{side}_{n}"]])
    tilt = 0.4 * p["lean"]  # bend forward: 40 % at the pelvis (hips), 60 % in the spine
    out[:, c["pelvis_tilt"]] += e * tilt
    out[:, c["trunk_flexion"]] += e * (p["lean"] - tilt)
    out[:, c["trunk_rotation"]] += e * p["twist"]
    out[:, c["trunk_lateral"]] += e * p["lateral"]
    out[:, c["neck_flexion"]] += e * np.clip(0.3 * (60.0 - p["flex"]) - 0.4 * p["lean"], -40, 40)
    for side in ("left", "right"):
        out[:, c[f"{side}_knee_flexion"]] += e * p["knee"]
        out[:, c[f"{side}_hip_flexion"]] += e * (tilt + 0.5 * p["knee"])


def _draw_squat(g: np.random.Generator, body: BodyShape, phase0: float | None) -> dict:
    reps = int(g.integers(1, 3))
    p = {
        "depth": g.uniform(60.0, 120.0),
        "tilt_frac": g.uniform(0.1, 0.2),
        "lean": g.uniform(5.0, 25.0),
        "arms": g.uniform(20.0, 90.0),
        "elbow": g.uniform(5.0, 40.0),
        "t0": g.uniform(0.2, 0.5),
        "down": g.uniform(0.9, 1.6),
        "hold": g.uniform(0.2, 1.0),
        "up": g.uniform(0.9, 1.6),
        "reps": reps,
    }
    p["period"] = p["down"] + p["hold"] + p["up"] + g.uniform(0.1, 0.4)
    p["duration"] = p["t0"] + reps * p["period"] + g.uniform(0.2, 0.4)
    return p


def _crouch(out: np.ndarray, e: np.ndarray, knee: float, tilt_frac: float, lean: float) -> None:
    """Add a symmetric crouch of depth ``knee`` (deg) times envelope ``e``: shanks lean forward by
    ``0.25 knee`` (ankle dorsiflexion), the pelvis tilts by ``tilt_frac * knee``, the trunk by
    ``lean``; the head keeps the gaze roughly level."""
    tilt = tilt_frac * knee
    hip = knee - 0.25 * knee + tilt
    c = _CH
    for side in ("left", "right"):
        out[:, c[f"{side}_knee_flexion"]] += e * knee
        out[:, c[f"{side}_hip_flexion"]] += e * hip
    out[:, c["pelvis_tilt"]] += e * tilt
    out[:, c["trunk_flexion"]] += e * lean
    out[:, c["neck_flexion"]] -= e * 0.5 * (tilt + lean)


def _squat(t: np.ndarray, p: dict, out: np.ndarray) -> None:
    e = sum(_pulse(t, p["t0"] + k * p["period"], p["down"], p["hold"], p["up"]) for k in range(p["reps"]))
    _crouch(out, e, p["depth"], p["tilt_frac"], p["lean"])
    for side in ("left", "right"):
        out[:, _CH[f"{side}_shoulder_flexion"]] += e * p["arms"]
        out[:, _CH[f"{side}_elbow_flexion"]] += e * p["elbow"]


def _draw_jump(g: np.random.Generator, body: BodyShape, phase0: float | None) -> dict:
    h = g.uniform(150.0, 300.0)  # apex of the flight above standing height, mm
    p = {
        "height": h,
        "depth": g.uniform(60.0, 95.0),
        "land_depth": g.uniform(30.0, 60.0),
        "lean": g.uniform(15.0, 35.0),
        "arm_back": g.uniform(15.0, 35.0),
        "arm_up": g.uniform(50.0, 90.0),
        "toes": g.uniform(40.0, 70.0),  # heel lift at take-off (push-off through the toes), mm
        "t0": g.uniform(0.3, 0.5),
        "crouch": g.uniform(0.5, 0.7),
        "hold": g.uniform(0.05, 0.15),
        "push": g.uniform(0.26, 0.32),
        "land": g.uniform(0.18, 0.25),
        "recover": g.uniform(0.5, 0.8),
    }
    p["flight"] = 2.0 * math.sqrt(2.0 * h / _G_MM_S2)
    p["takeoff"] = p["t0"] + p["crouch"] + p["hold"] + p["push"]
    p["touchdown"] = p["takeoff"] + p["flight"]
    p["duration"] = p["touchdown"] + p["land"] + p["recover"] + g.uniform(0.3, 0.5)
    return p


def _jump(t: np.ndarray, p: dict, out: np.ndarray) -> None:
    t_push = p["takeoff"] - p["push"]
    u_push = np.clip((t - t_push) / p["push"], 0.0, 1.0)
    # crouch down (smooth), then extend accelerating (1 - u^2) so the legs are fastest at take-off
    crouch = _ease((t - p["t0"]) / p["crouch"]) * (1.0 - u_push * u_push)
    # landing: absorb fastest at touch-down (1 - (1 - u)^2), recover smoothly
    u_land = np.clip((t - p["touchdown"]) / p["land"], 0.0, 1.0)
    land = (1.0 - (1.0 - u_land) ** 2) * (1.0 - _ease((t - p["touchdown"] - p["land"]) / p["recover"]))
    tf = t - p["takeoff"]
    airborne = (tf > 0) & (tf < p["flight"])
    v0 = _G_MM_S2 * p["flight"] / 2
    _crouch(out, crouch, p["depth"], 0.15, p["lean"])
    _crouch(out, land, p["land_depth"], 0.1, 0.5 * p["lean"])
    c = _CH
    back = _pulse(t, p["t0"], p["crouch"], 0.0, p["crouch"] + p["hold"])  # arms back while crouching
    up = _pulse(t, t_push - 0.25, 0.55, 0.0, p["flight"] + 0.5)  # then swung forward-up through take-off
    arms = up * p["arm_up"] - back * p["arm_back"]
    for side in ("left", "right"):
        out[:, c[f"{side}_shoulder_flexion"]] += arms
        out[:, c[f"{side}_knee_flexion"]] += 6.0 * airborne  # slight tuck in the air
    out[:, _FLIGHT] = np.where(airborne, v0 * tf - 0.5 * _G_MM_S2 * tf * tf, 0.0)
    # onto the toes during the push (fastest at take-off), heels back down just after landing
    toes = p["toes"] * u_push * u_push * (1.0 - _ease((t - p["touchdown"]) / 0.12))
    out[:, _LIFT["left"]] = out[:, _LIFT["right"]] = toes


def _draw_idle(g: np.random.Generator, body: BodyShape, phase0: float | None) -> dict:
    return {
        "duration": g.uniform(1.5, 4.0),
        "shift_amp": g.uniform(1.0, 4.0),
        "shift_hz": g.uniform(0.1, 0.3),
        "look_amp": g.uniform(0.0, 45.0),
        "look_hz": g.uniform(0.1, 0.3),
        "elbow": g.uniform(0.0, 60.0),
        "arm": g.uniform(-10.0, 30.0),
        "phases": g.uniform(0, 2 * np.pi, 3),
    }


def _idle(t: np.ndarray, p: dict, out: np.ndarray, dur: float) -> None:
    c = _CH
    ph = p["phases"]
    wave = np.sin(2 * np.pi * p["shift_hz"] * t + ph[0])
    obl = p["shift_amp"] * wave  # weight shift: the loaded side's hip rises
    out[:, c["pelvis_obliquity"]] += obl
    out[:, _SUPPORT] = 0.5 + 0.4 * wave
    out[:, c["left_hip_abduction"]] -= obl
    out[:, c["right_hip_abduction"]] += obl
    out[:, c["trunk_lateral"]] += 0.5 * obl
    out[:, c["neck_rotation"]] += p["look_amp"] * np.sin(2 * np.pi * p["look_hz"] * t + ph[1])
    gest = _pulse(t, 0.2 * dur, 0.3 * dur, 0.1 * dur, 0.3 * dur)  # one slow arm gesture
    side = "left" if ph[2] < np.pi else "right"
    out[:, c[f"{side}_elbow_flexion"]] += gest * p["elbow"]
    out[:, c[f"{side}_shoulder_flexion"]] += gest * p["arm"]


_DRAW = {
    "walk": _draw_gait,
    "turn": _draw_turn,
    "reach": _draw_reach,
    "squat": _draw_squat,
    "jump": _draw_jump,
    "idle": _draw_idle,
}
_GAIT_KINDS = ("walk", "turn")


def _evaluate(kind: str, t: np.ndarray, p: dict, dur: float) -> np.ndarray:
    out = np.broadcast_to(_NEUTRAL, (t.shape[0], _NC)).copy()
    if kind == "walk":
        _gait(t, p, out)
    elif kind == "turn":
        _turn(t, p, out, dur)
    elif kind == "reach":
        _reach(t, p, out)
    elif kind == "squat":
        _squat(t, p, out)
    elif kind == "jump":
        _jump(t, p, out)
    else:
        _idle(t, p, out, dur)
    return out


# Slow random sway added to every channel: amplitude (deg) of a sum of three sinusoids.
_SWAY_DEG = np.zeros(_NA)
for _n, _a in {
    "pelvis_tilt": 1.0,
    "pelvis_obliquity": 0.5,
    "pelvis_rotation": 1.5,
    "trunk_flexion": 2.0,
    "trunk_lateral": 1.5,
    "trunk_rotation": 3.0,
    "neck_flexion": 5.0,
    "neck_lateral": 3.0,
    "neck_rotation": 8.0,
}.items():
    _SWAY_DEG[_CH[_n]] = _a
for _s in ("left", "right"):
    for _n, _a in {
        "hip_flexion": 1.5,
        "hip_abduction": 1.0,
        "hip_rotation": 3.0,
        "knee_flexion": 1.5,
        "shoulder_flexion": 3.0,
        "shoulder_abduction": 2.0,
        "shoulder_rotation": 5.0,
        "elbow_flexion": 4.0,
    }.items():
        _SWAY_DEG[_CH[f"{_s}_{_n}"]] = _a
_ONE_SIDED = [_CH[f"{s}_{n}"] for s in ("left", "right") for n in ("knee_flexion", "elbow_flexion")]


# --------------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ProceduralMotion:
    """A generated sequence with what produced it.

    Attributes:
        motion: the :class:`Motion` (H36M-17, ``(T, 17, 3)`` mm, Z up).
        body: the :class:`BodyShape` used.
        clips: the primitives in time order.
        angles_deg: ``(T, C)`` joint angles in degrees, columns :data:`ANGLE_CHANNELS` (after clamping).
        heading_deg: ``(T,)`` heading in degrees.
        root_mm: ``(T, 3)`` pelvis positions in mm (same as ``motion.positions_mm[:, 0]``).
        flight_mm: ``(T,)`` ballistic height added during jump flights, mm (0 on the ground).
        heel_lift_mm: ``(T, 2)`` heel lift of the left and right foot, mm: how far the ankle is above
            its standing height while that foot's toes would still touch the floor.
        support_left: ``(T,)`` share of the foot-contact anchoring on the left foot (0..1).
    """

    motion: Motion
    body: BodyShape
    clips: tuple[Clip, ...]
    angles_deg: np.ndarray = field(repr=False)
    heading_deg: np.ndarray = field(repr=False)
    root_mm: np.ndarray = field(repr=False)
    flight_mm: np.ndarray = field(repr=False)
    heel_lift_mm: np.ndarray = field(repr=False)
    support_left: np.ndarray = field(repr=False)

    def frames_of(self, kind: str, margin: int = 0) -> np.ndarray:
        """Boolean ``(T,)`` mask of the frames of clips of ``kind``, each shrunk by ``margin`` frames at
        both ends (e.g. to skip the cross-fades)."""
        mask = np.zeros(self.motion.num_frames, dtype=bool)
        for c in self.clips:
            if c.kind == kind:
                mask[max(c.start + margin, 0) : max(c.stop - margin, 0)] = True
        return mask


def _plan(g: np.random.Generator, body: BodyShape, num_frames: int, fps: float, kinds: Sequence[str]):
    clips, t, prev = [], 0.0, None
    total = num_frames / fps
    while t < total:
        kind = kinds[int(g.integers(len(kinds)))]
        phase0 = None
        if kind in _GAIT_KINDS and prev is not None and prev[0] in _GAIT_KINDS:
            pp, pdur = prev[1], prev[2]
            phase0 = (pp["phase0"] + pp["stride_hz"] * pdur) % 1.0  # keep the gait phase continuous
        p = _DRAW[kind](g, body, phase0)
        if kind in _GAIT_KINDS:
            dur = g.uniform(3.0, 6.0) if kind == "walk" else g.uniform(3.0, 5.0)
        else:
            dur = p["duration"]
        clips.append((kind, t, dur, p))
        prev = (kind, p, dur)
        t += dur
    return clips


def _sway(g: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """``(T, C_angles)`` smooth random sway: per channel three sinusoids of 0.05-0.4 Hz (amplitudes in
    ``_SWAY_DEG``)."""
    f = g.uniform(0.05, 0.4, (3, _NA))
    ph = g.uniform(0, 2 * np.pi, (3, _NA))
    w = g.dirichlet(np.ones(3), _NA).T  # (3, C) weights summing to 1 per channel
    s = np.zeros((t.shape[0], _NA))
    for k in range(3):
        s += w[k] * np.sin(2 * np.pi * f[k] * t[:, None] + ph[k])
    s *= _SWAY_DEG
    s[:, _ONE_SIDED] = np.abs(s[:, _ONE_SIDED])  # flexion-only joints: sway towards flexion
    # The legs sway together (the pelvis moves over planted feet) instead of sliding the feet apart:
    # same hip and knee flexion on both sides, mirrored abduction and rotation (both legs lean and
    # turn the same way).
    for n in ("hip_flexion", "knee_flexion"):
        s[:, _CH[f"right_{n}"]] = s[:, _CH[f"left_{n}"]]
    for n in ("hip_abduction", "hip_rotation"):
        s[:, _CH[f"right_{n}"]] = -s[:, _CH[f"left_{n}"]]
    return s


def generate_motion_with_info(
    seed: RngLike,
    num_frames: int = 500,
    fps: float = 50.0,
    kinds: Sequence[str] = MOTION_KINDS,
    body: BodyShape | None = None,
) -> ProceduralMotion:
    """:func:`generate_motion`, also returning the body, the clips, joint angles and root path.

    Args and determinism as :func:`generate_motion`.

    Returns:
        A :class:`ProceduralMotion`.
    """
    num_frames, fps = int(num_frames), float(fps)
    if num_frames < 1:
        raise ValueError(f"generate_motion: num_frames must be >= 1, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"generate_motion: fps must be positive, got {fps}")
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in MOTION_KINDS]
    if not kinds or bad:
        raise ValueError(f"generate_motion: kinds must be a non-empty subset of {MOTION_KINDS}, got {kinds}")
    if body is not None and not isinstance(body, BodyShape):
        raise TypeError(f"generate_motion: body must be a BodyShape or None, got {type(body).__name__}")
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        source = f"procedural:seed={int(seed)}"
        ss = np.random.SeedSequence(int(seed))
    else:
        source = "procedural:generator"
        ss = np.random.SeedSequence(int(_as_rng(seed).integers(2**63)))
    g_body, g_motion = (np.random.default_rng(s) for s in ss.spawn(2))
    body_draw = sample_body(g_body)  # drawn even when a body is given, so both paths use the same streams
    body = body_draw if body is None else body
    g = g_motion

    T = num_frames
    t = np.arange(T) / fps
    plan = _plan(g, body, T, fps, kinds)
    heading0 = g.uniform(-180.0, 180.0)
    sway = _sway(g, t)

    # Blend the clips: clip k has weight 1 inside [start_k, end_k], cross-fading over _BLEND_S
    # centred on each boundary (smootherstep, which sums to one with its mirror image).
    chan = np.zeros((T, _NC))
    half = _BLEND_S / 2
    clips = []
    for k, (kind, t0, dur, p) in enumerate(plan):
        lo = 0 if k == 0 else max(0, int(math.ceil((t0 - half) * fps)))
        hi = T if k == len(plan) - 1 else min(T, int(math.floor((t0 + dur + half) * fps)) + 1)
        clips.append(Clip(kind, min(T, int(round(t0 * fps))), min(T, int(round((t0 + dur) * fps))), p))
        if hi <= lo:
            continue
        tl = t[lo:hi] - t0
        w = np.ones(hi - lo)
        if k > 0:
            w *= _ease((tl + half) / _BLEND_S)
        if k < len(plan) - 1:
            w *= _ease((dur - tl + half) / _BLEND_S)
        chan[lo:hi] += w[:, None] * _evaluate(kind, tl, p, dur)

    angles = chan[:, :_NA] + sway
    lo_lim = np.array([ANGLE_LIMITS_DEG[n][0] for n in ANGLE_CHANNELS])
    hi_lim = np.array([ANGLE_LIMITS_DEG[n][1] for n in ANGLE_CHANNELS])
    angles = np.clip(angles, lo_lim, hi_lim)
    heading = heading0 + np.concatenate([[0.0], np.cumsum(0.5 * (chan[1:, _YAW] + chan[:-1, _YAW]))]) / fps
    flight = chan[:, _FLIGHT]

    # Forward kinematics with the pelvis at the origin, then place the root (module docstring).
    rel = forward_kinematics(body.rest_offsets_mm(), joint_rotations(angles, heading))
    la, ra = rel[:, _IDX["left_ankle"]], rel[:, _IDX["right_ankle"]]
    lift = np.maximum(chan[:, [_LIFT["left"], _LIFT["right"]]], 0.0)
    sole_l, sole_r = la[:, 2] - lift[:, 0], ra[:, 2] - lift[:, 1]  # where each foot meets the floor
    root = np.zeros((T, 3))
    root[:, 2] = body.ankle_height_mm - _softmin(sole_l, sole_r, 5.0) + flight
    h = np.tanh(((sole_r - sole_l) / 25.0) ** 3)  # +1: left foot clearly lower (dead zone ~ +-10 mm)
    w_left = np.clip(0.5 * (1 + h) + (1 - h * h) * (chan[:, _SUPPORT] - 0.5), 0.0, 1.0)
    wl = 0.5 * (w_left[1:] + w_left[:-1])[:, None]
    grounded = (flight[1:] <= 0.0) & (flight[:-1] <= 0.0)
    step = -(wl * np.diff(la[:, :2], axis=0) + (1 - wl) * np.diff(ra[:, :2], axis=0))
    root[1:, :2] = np.cumsum(step * grounded[:, None], axis=0)
    pos = rel + root[:, None, :]

    motion = Motion(H36M17.joint_names, H36M17.parents, pos, fps, up_axis="z", source=source)
    return ProceduralMotion(motion, body, tuple(clips), angles, heading, root, flight, lift, w_left)


def generate_motion(
    seed: RngLike,
    num_frames: int = 500,
    fps: float = 50.0,
    kinds: Sequence[str] = MOTION_KINDS,
    body: BodyShape | None = None,
) -> Motion:
    """A random, smooth, physically plausible-looking H36M-17 motion.

    Clips of the primitives in ``kinds`` (drawn uniformly, with random parameters) follow each other
    with 0.5 s cross-fades of the joint angles: ``walk`` (3-6 s, 0.89-1.67 m/s), ``turn`` (walking while the
    heading turns 60-180 deg), ``reach`` (one or both arms to a random target, bending the trunk and
    knees for low targets), ``squat`` (1-2 repetitions, 60-120 deg knee flexion), ``jump`` (crouch,
    extension, 150-300 mm ballistic flight of the root, landing), ``idle`` (weight shifts, looking
    around, a slow arm gesture). See the module docstring for the skeleton, joint limits and the
    foot-contact root placement.

    Args:
        seed: an ``int`` (recorded in ``source``), or a ``numpy.random.Generator`` /
            ``torch.Generator`` (advanced by one draw). Same seed, same arguments: identical arrays.
        num_frames: ``T``.
        fps: frames per second; primitives are defined in seconds, so any rate works.
        kinds: the primitives to draw from (a subset of :data:`MOTION_KINDS`; ``("walk",)`` gives
            pure walking; repeating a name makes it more likely).
        body: the proportions; default a body drawn with :func:`sample_body` from the seed.

    Returns:
        A :class:`Motion`: ``positions_mm`` ``(T, 17, 3)`` float64 in mm, Z up, floor at ``Z = 0``,
        joint names and parents of :data:`mvpose.skeleton.H36M17`, ``source="procedural:seed=N"``.
        The pelvis starts above the world origin; the heading at frame 0 is random.
    """
    return generate_motion_with_info(seed, num_frames, fps, kinds, body).motion
