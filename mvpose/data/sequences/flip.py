"""Screen-coordinate normalisation and left/right mirroring (VideoPose3D's conventions).

Normalisation (VideoPose3D's ``normalize_screen_coordinates``): pixel ``(u, v)`` of a ``w x h``
image becomes ``(u, v) / w * 2 - (1, h / w)``: ``x`` spans ``[-1, 1]`` across the width, ``y`` keeps the
aspect ratio (``[-h/w, h/w]``), and the image centre ``(w/2, h/2)`` is the origin.

Mirroring. A horizontally mirrored sample is what a mirror-image person would look like through a
mirror-image camera. In centred coordinates it is "negate x, swap left and right joints":

* normalised 2D ``(x, y)`` -> ``(-x, y)``; in pixels ``u -> w - u`` (the same map);
* camera-frame 3D ``(X, Y, Z)`` -> ``(-X, Y, Z)``;
* joints: joint ``j`` of the mirrored pose is joint ``flip_indices[j]`` of the original.

The matching camera (:func:`mirror_rig`) keeps the image and projects the mirrored world
(:func:`flip_world`: world ``x`` negated, joints swapped) onto the mirrored pixels, distortion
included: with ``M = diag(-1, 1, 1)`` and ``A`` the pixel map ``u -> w - u``,
``K' = A K M`` (``cx -> w - cx``, skew negated), ``R' = M R M``, ``t' = M t`` (so ``R'`` is a proper
rotation) and the tangential coefficient ``dist[3]`` negated (``p2`` of OpenCV's
``[k1, k2, p1, p2, k3]``, ``p1`` of Human3.6M's ``[k1, k2, p0, p1, k3]``: the term of ``x_d`` that
does not change sign with ``x``). Every flip is an involution. VideoPose3D's own camera vector
``[fx, fy, cx, cy, k1, k2, k3, p1, p2]`` (normalised units) flips by negating ``cx`` and ``p1``
(indices 2 and 7), the same mirror for its distortion formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from mvpose.geometry.camera import CameraRig
from mvpose.skeleton import H36M17

__all__ = [
    "normalize_screen_coordinates",
    "image_coordinates",
    "flip_pose",
    "flip_pixels",
    "flip_world",
    "mirror_rig",
    "flip_indices_from_symmetry",
]


def _offset(w, h, like):
    """``(1, h / w)`` shaped ``(*, 2)`` and ``w`` shaped ``(*, 1)`` (or Python scalars)."""
    if np.ndim(w) == 0 and np.ndim(h) == 0 and not isinstance(w, torch.Tensor):
        w, h = float(w), float(h)
        off = [1.0, h / w]
        if isinstance(like, torch.Tensor):
            return w, torch.tensor(off, dtype=like.dtype, device=like.device)
        return w, np.array(off)
    if isinstance(like, torch.Tensor):
        w = torch.as_tensor(w, dtype=like.dtype, device=like.device)[..., None]
        h = torch.as_tensor(h, dtype=like.dtype, device=like.device)[..., None]
        return w, torch.cat([torch.ones_like(w), h / w], -1)
    w = np.asarray(w, dtype=np.float64)[..., None]
    h = np.asarray(h, dtype=np.float64)[..., None]
    return w, np.concatenate(np.broadcast_arrays(np.ones_like(w), h / w), -1)


def normalize_screen_coordinates(x, w, h):
    """Pixels ``(*, 2)`` -> VideoPose3D's normalised screen coordinates ``x / w * 2 - (1, h / w)``.

    Args:
        x: ``(*, 2)`` pixels (numpy or torch; NaN stays NaN).
        w, h: image width and height in pixels (scalars, or arrays broadcastable to ``x[..., 0]``).

    With scalar ``w, h`` and a numpy ``x`` the arithmetic is VideoPose3D's to the bit: ``x / w * 2`` in
    ``x``'s dtype, then the subtraction of ``(1, h / w)`` in float64 (the result is float64).

    Example:
        >>> normalize_screen_coordinates(np.array([500.0, 501.0]), 1000, 1002)
        array([0., 0.])
    """
    w, off = _offset(w, h, x)
    return x / w * 2 - off


def image_coordinates(x, w, h):
    """Inverse of :func:`normalize_screen_coordinates`: ``(x + (1, h / w)) * w / 2`` pixels."""
    w, off = _offset(w, h, x)
    return (x + off) * w / 2


def flip_indices_from_symmetry(left: Sequence[int], right: Sequence[int], num_joints: int) -> tuple[int, ...]:
    """Flip permutation from VideoPose3D's ``keypoints_symmetry = [left, right]`` lists."""
    if len(left) != len(right):
        raise ValueError(f"keypoints_symmetry: {len(left)} left joints but {len(right)} right joints")
    perm = list(range(num_joints))
    for a, b in zip(left, right):
        perm[int(a)], perm[int(b)] = int(b), int(a)
    if sorted(perm) != list(range(num_joints)):
        raise ValueError(f"keypoints_symmetry {left}, {right} is not a permutation of {num_joints} joints")
    return tuple(perm)


def flip_pose(x, flip_indices: Sequence[int] = H36M17.flip_indices, x_channel: int = 0):
    """Mirror centred poses: negate channel ``x_channel`` and swap left/right joints.

    For normalised 2D ``(*, J, 2)`` (VideoPose3D's input flip) and camera-frame 3D ``(*, J, 3)``
    (its target flip). Pixel coordinates are not centred: use :func:`flip_pixels`.

    Args:
        x: ``(*, J, D)`` numpy array or tensor.
        flip_indices: ``J`` indices (a skeleton's ``flip_indices``).
        x_channel: the channel that changes sign.

    Returns:
        a new array/tensor of the same shape; ``flip_pose(flip_pose(x))`` equals ``x``.
    """
    idx = list(flip_indices)
    if len(idx) != x.shape[-2]:
        raise ValueError(f"flip_pose: {len(idx)} flip indices for {x.shape[-2]} joints")
    out = x[..., idx, :]
    if isinstance(out, torch.Tensor):
        out = out.clone()
    out[..., x_channel] = -out[..., x_channel]
    return out


def flip_pixels(x_px, w, flip_indices: Sequence[int] = H36M17.flip_indices):
    """Mirror pixel keypoints ``(*, J, 2)`` of a ``w``-wide image: ``u -> w - u``, joints swapped.

    ``w`` is a scalar or an array broadcastable to ``x_px[..., 0, 0]`` (one width per pose, e.g. ``(V,)``
    for ``(T, V, J, 2)`` projections of a rig).

    The same map as negating x of :func:`normalize_screen_coordinates` (so it pairs with
    :func:`mirror_rig`). An involution.
    """
    idx = list(flip_indices)
    out = x_px[..., idx, :]
    if isinstance(out, torch.Tensor):
        out = out.clone()
        w = torch.as_tensor(w, dtype=out.dtype, device=out.device)
        if w.ndim:
            w = w[..., None]
    elif np.ndim(w):
        w = np.asarray(w)[..., None]
    out[..., 0] = w - out[..., 0]
    return out


def flip_world(x_world, flip_indices: Sequence[int] = H36M17.flip_indices):
    """Mirror world poses ``(*, J, 3)`` for :func:`mirror_rig`: world ``x`` negated, joints swapped."""
    return flip_pose(x_world, flip_indices, 0)


def mirror_rig(rig: CameraRig) -> CameraRig:
    """The mirror-image rig (see the module docstring); needs ``rig.image_size``. An involution.

    ``mirror_rig(rig).project(flip_world(X))`` equals ``flip_pixels(rig.project(X), w)`` (distortion
    included) and ``mirror_rig(rig).world_to_camera(flip_world(X))`` equals
    ``flip_pose(rig.world_to_camera(X))``.
    """
    if rig.image_size is None:
        raise ValueError("mirror_rig: the rig has no image_size; the mirror u -> w - u needs the width")
    dt, dev = rig.dtype, rig.device
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=dt, device=dev))
    w = rig.image_size[:, 0].to(dt)  # (V,)
    A = torch.eye(3, dtype=dt, device=dev).repeat(rig.num_views, 1, 1)
    A[:, 0, 0] = -1.0
    A[:, 0, 2] = w
    K = A @ rig.K @ M
    R = M @ rig.R @ M
    t = rig.t * torch.tensor([-1.0, 1.0, 1.0], dtype=dt, device=dev)
    dist = rig.dist.clone()
    dist[..., 3] = -dist[..., 3]
    return replace(rig, K=K, R=R, t=t, dist=dist, meta=dict(rig.meta))
