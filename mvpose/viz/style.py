"""Colours and sizes shared by every picture: left side blue, right side red, centre neutral.

All colours are RGB tuples (0-255); images are RGB everywhere in :mod:`mvpose.viz` and converted to
BGR only when OpenCV writes a file.
"""

from __future__ import annotations

import numpy as np

from mvpose.skeleton import Skeleton, get_skeleton

__all__ = [
    "LEFT_RGB",
    "RIGHT_RGB",
    "CENTRE_RGB",
    "CENTRE_DARK_RGB",
    "DETECTION_RGB",
    "REJECTED_RGB",
    "as_skeleton",
    "side_of_joints",
    "joint_colours",
    "pale",
    "line_thickness_px",
]

#: prediction colours of the left joints / limbs (blue), the right ones (red) and the centre ones
#: (light grey on photos, dark grey on the white background of the 3D plots).
LEFT_RGB: tuple[int, int, int] = (30, 120, 255)
RIGHT_RGB: tuple[int, int, int] = (240, 40, 40)
CENTRE_RGB: tuple[int, int, int] = (235, 235, 235)
CENTRE_DARK_RGB: tuple[int, int, int] = (60, 60, 60)
#: raw 2D detections used by the triangulation (yellow rings) and those it rejected (magenta crosses).
DETECTION_RGB: tuple[int, int, int] = (255, 215, 0)
REJECTED_RGB: tuple[int, int, int] = (255, 0, 255)


def as_skeleton(skeleton: str | Skeleton | None, num_joints: int | None = None) -> Skeleton | None:
    """``get_skeleton(skeleton)`` (``None`` stays ``None``), checked against ``num_joints``."""
    if skeleton is None:
        return None
    sk = get_skeleton(skeleton)
    if num_joints is not None and sk.num_joints != num_joints:
        raise ValueError(f"skeleton {sk.name!r} has {sk.num_joints} joints but the points have {num_joints}")
    return sk


def side_of_joints(skeleton: Skeleton | None, num_joints: int) -> np.ndarray:
    """``(J,)`` int8: -1 left, +1 right, 0 centre (all 0 without a skeleton)."""
    side = np.zeros(num_joints, np.int8)
    if skeleton is not None:
        side[list(skeleton.left_indices)] = -1
        side[list(skeleton.right_indices)] = 1
    return side


def joint_colours(skeleton: Skeleton | None, num_joints: int, dark_centre: bool = False) -> np.ndarray:
    """``(J, 3)`` uint8 RGB colour of each joint: left blue, right red, centre grey."""
    palette = np.array([LEFT_RGB, CENTRE_DARK_RGB if dark_centre else CENTRE_RGB, RIGHT_RGB], np.uint8)
    return palette[side_of_joints(skeleton, num_joints) + 1]


def pale(rgb, amount: float = 0.55) -> tuple[int, int, int]:
    """``rgb`` mixed with white (``amount`` of white): the ground-truth tint of a prediction colour."""
    c = np.asarray(rgb, np.float64)
    return tuple(int(round(v)) for v in c + (255.0 - c) * amount)


def line_thickness_px(height: int, width: int) -> int:
    """Limb thickness for an image of this size (2 px at 256 px, 5 px at 1080 px)."""
    return max(2, int(round(min(height, width) / 220)))
