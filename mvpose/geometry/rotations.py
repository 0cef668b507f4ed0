"""Rotation conversions on tensors ``(*, 3)``, ``(*, 4)``, ``(*, 3, 3)``.

Axis-angle and quaternion conversions use kornia's (quaternions are ``(w, x, y, z)``);
Euler angles, the 6D representation (Zhou et al., CVPR 2019), orthonormal projection and the
vertical-axis rotation used by volumetric augmentation are here.
"""

from __future__ import annotations

import torch
from kornia.geometry import conversions as _kc
from torch import Tensor

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "euler_to_matrix",
    "matrix_to_euler",
    "rotation_6d_to_matrix",
    "matrix_to_rotation_6d",
    "rotation_about_axis",
    "nearest_rotation",
]


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues vector ``(*, 3)`` (radians) to rotation matrix ``(*, 3, 3)``; same as ``cv2.Rodrigues``."""
    shape = axis_angle.shape[:-1]
    return _kc.axis_angle_to_rotation_matrix(axis_angle.reshape(-1, 3)).reshape(*shape, 3, 3)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Rotation matrix ``(*, 3, 3)`` to Rodrigues vector ``(*, 3)`` (radians, angle in [0, pi])."""
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def quaternion_to_axis_angle(q: Tensor) -> Tensor:
    """Unit quaternion ``(*, 4)`` ``(w, x, y, z)`` to Rodrigues vector ``(*, 3)``."""
    shape = q.shape[:-1]
    q = q.reshape(-1, 4)
    q = torch.where(q[:, :1] < 0, -q, q)  # shortest rotation: angle in [0, pi]
    return _kc.quaternion_to_axis_angle(q).reshape(*shape, 3)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Quaternion ``(*, 4)`` ``(w, x, y, z)`` (normalised here) to rotation ``(*, 3, 3)``."""
    shape = q.shape[:-1]
    q = torch.nn.functional.normalize(q.reshape(-1, 4), dim=-1)
    return _kc.quaternion_to_rotation_matrix(q).reshape(*shape, 3, 3)


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """Rotation ``(*, 3, 3)`` to unit quaternion ``(*, 4)`` ``(w, x, y, z)`` with ``w >= 0``."""
    shape = R.shape[:-2]
    eps = 1e-12 if R.dtype == torch.float64 else 1e-7
    q = _kc.rotation_matrix_to_quaternion(R.reshape(-1, 3, 3).contiguous(), eps=eps)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.reshape(*shape, 4)


def _axis_rotation(axis: str, angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {
        "x": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
        "y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
        "z": ((c, -s, zero), (s, c, zero), (zero, zero, one)),
    }[axis]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def euler_to_matrix(angles: Tensor, order: str = "xyz") -> Tensor:
    """Intrinsic-order Euler angles ``(*, 3)`` (radians) to rotation ``(*, 3, 3)``.

    ``order="zyx"`` gives ``Rz(a0) @ Ry(a1) @ Rx(a2)``: the matrices multiply left to right in the
    order the axes are named, each angle taken from the same position. BVH channel orders
    (``Zrotation Yrotation Xrotation``) map directly onto this.
    """
    order = order.lower()
    if len(order) != 3 or set(order) - set("xyz"):
        raise ValueError(f"euler order must be three of 'xyz', got {order!r}")
    R = _axis_rotation(order[0], angles[..., 0])
    for i in (1, 2):
        R = R @ _axis_rotation(order[i], angles[..., i])
    return R


def matrix_to_euler(R: Tensor, order: str = "xyz") -> Tensor:
    """Inverse of :func:`euler_to_matrix` for Tait-Bryan orders (all three axes distinct)."""
    order = order.lower()
    if len(set(order)) != 3:
        raise ValueError(f"matrix_to_euler supports Tait-Bryan orders only, got {order!r}")
    i, j, k = ("xyz".index(a) for a in order)
    # R = R_i(a) R_j(b) R_k(c); sign of the permutation decides the signs below.
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    b = torch.asin((sign * R[..., i, k]).clamp(-1.0, 1.0))
    a = torch.atan2(-sign * R[..., j, k], R[..., k, k])
    c = torch.atan2(-sign * R[..., i, j], R[..., i, i])
    return torch.stack([a, b, c], dim=-1)


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """6D representation ``(*, 6)`` (first two rows, Gram-Schmidt orthonormalised) to ``(*, 3, 3)``."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def matrix_to_rotation_6d(R: Tensor) -> Tensor:
    """Rotation ``(*, 3, 3)`` to its 6D representation ``(*, 6)`` (first two rows)."""
    return R[..., :2, :].reshape(*R.shape[:-2], 6)


def rotation_about_axis(angle: Tensor, axis: Tensor) -> Tensor:
    """Rotation ``(*, 3, 3)`` by ``angle (*)`` radians about unit vector ``axis (3,)`` or ``(*, 3)``."""
    axis = torch.nn.functional.normalize(
        torch.as_tensor(axis, dtype=angle.dtype, device=angle.device), dim=-1
    )
    return axis_angle_to_matrix(axis * angle[..., None])


def nearest_rotation(M: Tensor) -> Tensor:
    """Closest rotation (Frobenius) to ``M (*, 3, 3)``: orthonormalises rounded calibration matrices."""
    U, _, Vh = torch.linalg.svd(M)
    d = torch.det(U @ Vh)
    S = torch.ones_like(M[..., 0])
    S[..., 2] = d
    return U @ torch.diag_embed(S) @ Vh
