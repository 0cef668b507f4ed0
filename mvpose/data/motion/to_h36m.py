"""Map motion-capture skeletons to the Human3.6M 17-joint set (VideoPose3D's order).

Supported source skeletons, recognised by joint names:

* ``"cmu_asf"``: the CMU ASF/AMC skeleton as read by :func:`~mvpose.data.motion.read_amc`
  (joints are the root and bone ENDS, named by bone).
* ``"cc_rig"``: the Reallusion Character Creator rig of the CMU BVH retargets
  (``CC_Base_*`` joints), as read by :func:`~mvpose.data.motion.read_bvh`.

Each H36M joint is the mean of one or more source joints; :data:`H36M17_FROM` holds the recipe and a
note per joint saying whether it is a direct correspondence or an approximation.
"""

from __future__ import annotations

import numpy as np

from mvpose.skeleton import H36M17

from .types import Motion

__all__ = ["H36M17_NAMES", "H36M17_PARENTS", "H36M17_FROM", "detect_rig", "motion_to_h36m17", "h36m17_notes"]

H36M17_NAMES: tuple[str, ...] = H36M17.joint_names
"""Human3.6M 17 joints in VideoPose3D's order (:data:`mvpose.skeleton.H36M17`)."""

H36M17_PARENTS: tuple[int, ...] = H36M17.parents
"""Parent of each joint of :data:`H36M17_NAMES` (VideoPose3D's skeleton)."""

_EXACT = "direct: the same anatomical joint centre"

# rig -> 17 x (source joint names averaged, note)
H36M17_FROM: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "cmu_asf": (
        (
            ("lhipjoint", "rhipjoint"),
            "midpoint of the two hip centres, as H36M defines its pelvis; CMU 'root' sits about "
            "100 mm above and behind it and is not used",
        ),
        (("rhipjoint",), _EXACT + " (end of rhipjoint = right hip centre)"),
        (("rfemur",), _EXACT + " (end of rfemur = right knee)"),
        (("rtibia",), _EXACT + " (end of rtibia = right ankle)"),
        (("lhipjoint",), _EXACT + " (end of lhipjoint = left hip centre)"),
        (("lfemur",), _EXACT + " (end of lfemur = left knee)"),
        (("ltibia",), _EXACT + " (end of ltibia = left ankle)"),
        (
            ("lowerback",),
            "approximation: the lowerback/upperback junction, about 0.47 of the way from pelvis to "
            "thorax, where H36M's spine joint sits; follows the spine's bend",
        ),
        (("thorax",), "direct: end of the CMU thorax bone = base of the neck, where the clavicles start"),
        (
            ("upperneck",),
            "approximation: top of the CMU neck (skull base), about nose height; H36M's joint lies "
            "some 5-10 cm further forward (CMU has no face point)",
        ),
        (
            ("head",),
            "approximation: end of the CMU head bone, below the top of the head; H36M's head joint is "
            "near the forehead/top",
        ),
        (("lclavicle",), _EXACT + " (end of lclavicle = left shoulder)"),
        (("lhumerus",), _EXACT + " (end of lhumerus = left elbow)"),
        (
            ("lwrist",),
            "direct, by the dof layout: CMU splits the forearm into lradius (elbow flexion) and "
            "lwrist (forearm twist only, collinear, always half the radius length); the wrist is "
            "the end of lwrist, where lhand's flexion and the thumb attach, not the end of lradius",
        ),
        (("rclavicle",), _EXACT + " (end of rclavicle = right shoulder)"),
        (("rhumerus",), _EXACT + " (end of rhumerus = right elbow)"),
        (("rwrist",), "direct, as left_wrist: end of rwrist"),
    ),
    "cc_rig": (
        (
            ("CC_Base_L_Thigh", "CC_Base_R_Thigh"),
            "midpoint of the two hip joints (CC_Base_*_Thigh), as H36M defines its pelvis; "
            "CC_Base_Hip sits about 20 mm above it",
        ),
        (("CC_Base_R_Thigh",), _EXACT + " (CC_Base_R_Thigh)"),
        (("CC_Base_R_Calf",), _EXACT + " (CC_Base_R_Calf = knee)"),
        (("CC_Base_R_Foot",), _EXACT + " (CC_Base_R_Foot = ankle)"),
        (("CC_Base_L_Thigh",), _EXACT + " (CC_Base_L_Thigh)"),
        (("CC_Base_L_Calf",), _EXACT + " (CC_Base_L_Calf = knee)"),
        (("CC_Base_L_Foot",), _EXACT + " (CC_Base_L_Foot = ankle)"),
        (
            ("CC_Base_Spine02",),
            "approximation: the rig's mid-chest spine joint, about 0.52 of the way from pelvis to thorax",
        ),
        (("CC_Base_NeckTwist01",), "direct: base of the neck (CC_Base_NeckTwist01)"),
        (
            ("CC_Base_Head",),
            "approximation: the head joint at the skull base, about nose height; H36M's joint lies "
            "some 5-10 cm further forward",
        ),
        (
            ("CC_Base_L_Eye", "CC_Base_R_Eye"),
            "approximation: midpoint of the eyes (the rig has no head-top joint); about 10 cm below "
            "the top of the head",
        ),
        (("CC_Base_L_Upperarm",), _EXACT + " (CC_Base_L_Upperarm = shoulder)"),
        (("CC_Base_L_Forearm",), _EXACT + " (CC_Base_L_Forearm = elbow)"),
        (("CC_Base_L_Hand",), _EXACT + " (CC_Base_L_Hand = wrist)"),
        (("CC_Base_R_Upperarm",), _EXACT + " (CC_Base_R_Upperarm = shoulder)"),
        (("CC_Base_R_Forearm",), _EXACT + " (CC_Base_R_Forearm = elbow)"),
        (("CC_Base_R_Hand",), _EXACT + " (CC_Base_R_Hand = wrist)"),
    ),
}


def detect_rig(motion: Motion) -> str:
    """Name of the :data:`H36M17_FROM` rig whose joints ``motion`` has.

    Raises:
        ValueError: naming the motion's source, if no supported rig matches.
    """
    names = set(motion.joint_names)
    for rig, recipe in H36M17_FROM.items():
        if all(src in names for sources, _ in recipe for src in sources):
            return rig
    raise ValueError(
        f"{motion.source or 'motion'}: joints match no supported skeleton for the H36M-17 map "
        f"({sorted(H36M17_FROM)}); first joints are {list(motion.joint_names[:6])}"
    )


def h36m17_notes(rig: str) -> dict[str, str]:
    """Per-joint note (direct or approximation, and how) of the map from ``rig``, by H36M name."""
    return {name: note for name, (_, note) in zip(H36M17_NAMES, H36M17_FROM[rig])}


def motion_to_h36m17(motion: Motion, rig: str | None = None) -> np.ndarray:
    """Human3.6M-17 joint positions of a motion.

    Args:
        motion: a :class:`Motion` of a supported skeleton (see :data:`H36M17_FROM`).
        rig: the source skeleton's key in :data:`H36M17_FROM`; detected from joint names if None.

    Returns:
        ``(T, 17, 3)`` float64 positions in mm, in the motion's own world axes (``motion.up_axis``
        up; call ``motion.to_z_up()`` first for a Z-up world), joints in :data:`H36M17_NAMES` order.
    """
    rig = detect_rig(motion) if rig is None else rig
    if rig not in H36M17_FROM:
        raise ValueError(f"unknown rig {rig!r}; expected one of {sorted(H36M17_FROM)}")
    index = {n: i for i, n in enumerate(motion.joint_names)}
    # (17, J) averaging matrix: one matmul over all frames
    W = np.zeros((len(H36M17_NAMES), motion.num_joints))
    for k, (sources, _) in enumerate(H36M17_FROM[rig]):
        for s in sources:
            if s not in index:
                raise ValueError(
                    f"{motion.source or 'motion'}: no joint {s!r} needed for H36M {H36M17_NAMES[k]!r}"
                )
            W[k, index[s]] += 1.0 / len(sources)
    return np.einsum("kj,tjc->tkc", W, motion.positions_mm)
