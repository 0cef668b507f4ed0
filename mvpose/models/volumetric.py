"""Volumetric triangulation (Iskakov et al., ICCV 2019, "Learnable Triangulation of Human Pose").

Pipeline per sample: backbone features of every view -> ``process_features`` (1x1 conv to
``volume_features_dim`` channels) -> unprojection into a cuboid of side ``cuboid_side`` mm
around a root point, sampled at ``volume_size**3`` voxel centres (one ``grid_sample`` over all
``B*V`` views) -> aggregation over views -> V2V -> 3D soft-argmax over the voxel coordinates.

Frames and units: world frame, millimetres. Projection matrices ``P = K [R | t]`` map world mm to
pixels of the network input images; the model rescales them to the feature-map frame.
Volumes are ``(B, C, X, Y, Z)`` with axes 2, 3, 4 along the cuboid's x, y, z (world axes when
unrotated), and ``coord_volumes`` ``(B, X, Y, Z, 3)`` hold each voxel's world coordinate.

Reference behaviour reproduced (the ``learnable_triangulation_vol`` fixture README lists it):

* corner-aligned grid: voxel ``i`` at ``root - side/2 + i * side/(D-1)``;
* in training the grid rotates about the root by a uniform random angle about the vertical axis
  (``z`` for ``kind="mpii"``/Human3.6M, ``y`` for ``kind="coco"``/CMU), counter-clockwise;
* the feature-frame matrices are ``diag(w/W, h/H, 1) P`` (no half-pixel term);
* voxels with projective depth ``<= 0`` sample zero; off-map samples are zero (bilinear with
  partial weights at the border); those zeros take part in the aggregation;
* the pixel -> ``[-1, 1]`` mapping with ``align_corners=True``, see :data:`GRID_CONVENTIONS`;
* aggregation ``softmax`` is a softmax over views of each sampled value (not a confidence);
  ``conf`` weights each view's volume by the backbone's per-channel volume confidences,
  ``conf_norm`` by those confidences normalised over views.

Beyond the reference: missing views (``view_mask``) are dropped from every aggregation, so a
masked view gives exactly the result of removing it, and any number of views works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvpose.geometry.camera import CameraRig
from mvpose.geometry.rotations import rotation_about_axis
from mvpose.geometry.softargmax import soft_argmax_3d
from mvpose.models._checkpoint import load_state_dict_strict
from mvpose.models.backbone import (
    PoseResNet,
    _tensor_dict,
    _torch_load,
    feature_head,
    pose_resnet,
    pose_resnet_config_from_state_dict,
)
from mvpose.models.v2v import V2VModel

__all__ = [
    "AGGREGATION_METHODS",
    "GRID_CONVENTIONS",
    "cuboid_coord_volumes",
    "random_vertical_rotations",
    "heatmap_projection_matrices",
    "project_to_grid",
    "unproject_features",
    "unproject_aggregate",
    "normalise_confidences",
    "aggregate_volumes",
    "VolumetricOutput",
    "VolumetricTriangulationNet",
    "predict_root",
    "load_official_volumetric",
]

AGGREGATION_METHODS = ("sum", "max", "softmax", "conf", "conf_norm")

#: How a feature-frame pixel ``(x, y)`` becomes a ``grid_sample`` coordinate (``align_corners=True``,
#: so ``g = -1`` is the centre of cell 0 and ``g = 1`` the centre of the last cell) on an ``h x w`` map:
#:
#: * ``"size"`` (default): ``gx = 2 (x / w - 0.5)``, ``gy = 2 (y / h - 0.5)``: learnable
#:   triangulation's normalisation by the size, so ``x`` is sampled at cell ``x (w - 1) / w``. This
#:   is what the official weights were trained with (square maps); here each axis uses its own size.
#: * ``"reference"``: the reference verbatim, ``gx = 2 (x / h - 0.5)``, ``gy = 2 (y / w - 0.5)``:
#:   on non-square maps x is divided by the height and y by the width. Identical to ``"size"``
#:   on square maps.
#: * ``"exact"``: ``gx = 2 x / (w - 1) - 1``, ``gy = 2 y / (h - 1) - 1``: a point at pixel ``x``
#:   samples cell ``x`` (ContextPose's convention on square maps).
#: * ``"contextpose"``: ContextPose verbatim, ``gx = 2 (x / (h - 1) - 0.5)``,
#:   ``gy = 2 (y / (w - 1) - 0.5)``; identical to ``"exact"`` on square maps.
GRID_CONVENTIONS = ("size", "reference", "exact", "contextpose")

#: root joints (averaged) and vertical axis per reference ``kind``
_KINDS = {"mpii": ((6,), "z"), "coco": ((11, 12), "y")}
_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


# --------------------------------------------------------------------------------------------- cuboid
def cuboid_coord_volumes(
    root: Tensor, side: float, size: int, rotation: Tensor | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """World coordinates of the voxel centres of a cube of side ``side`` mm centred at ``root``.

    Corner-aligned: ``size`` points per axis from ``root - side/2`` to ``root + side/2`` (spacing
    ``side / (size - 1)``), tensor axes ``(i, j, k)`` along x, y, z ('ij' indexing). With
    ``rotation``, the offsets from the root are rotated: ``coord = root + R @ offset``.

    Args:
        root: ``(*, 3)`` mm.
        side: cube side in mm.
        size: voxels per axis ``D``.
        rotation: optional ``(*, 3, 3)``.
        dtype: output dtype (default: ``root``'s floating dtype); computed in float64.

    Returns:
        ``(*, D, D, D, 3)`` mm.

    Example:
        >>> cuboid_coord_volumes(torch.zeros(3), 2.0, 3)[0, 0, :, 2]
        tensor([-1.,  0.,  1.])
    """
    if root.shape[-1] != 3:
        raise ValueError(f"cuboid_coord_volumes: root must be (*, 3), got {tuple(root.shape)}")
    if size < 2:
        raise ValueError(f"cuboid_coord_volumes: size must be >= 2, got {size}")
    out_dtype = dtype or (root.dtype if root.is_floating_point() else torch.float32)
    steps = torch.arange(size, dtype=torch.float64, device=root.device) * (float(side) / (size - 1))
    steps = steps - float(side) / 2
    offsets = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), dim=-1)  # (D, D, D, 3)
    root64 = root.to(torch.float64)[..., None, None, None, :]
    if rotation is None:
        return (root64 + offsets).to(out_dtype)
    R = rotation.to(torch.float64)[..., None, None, None, :, :]
    return (root64 + (R @ offsets[..., None])[..., 0]).to(out_dtype)


def random_vertical_rotations(
    batch: int, axis: str = "z", generator: torch.Generator | None = None, device=None, dtype=torch.float64
) -> Tensor:
    """``(batch, 3, 3)`` counter-clockwise rotations about ``axis`` by angles uniform in ``[0, 2 pi)``
    (the reference's training augmentation of the cuboid)."""
    if axis not in _AXES:
        raise ValueError(f"random_vertical_rotations: axis must be one of {sorted(_AXES)}, got {axis!r}")
    gen_device = generator.device if generator is not None else device
    theta = torch.rand(batch, generator=generator, dtype=torch.float64, device=gen_device) * (2 * math.pi)
    theta = theta.to(device)
    return rotation_about_axis(theta, torch.tensor(_AXES[axis], dtype=torch.float64, device=device)).to(dtype)


# ------------------------------------------------------------------------------------- unprojection
def heatmap_projection_matrices(
    proj_matrices: Tensor, image_hw: Sequence[int], heatmap_hw: Sequence[int]
) -> Tensor:
    """Rescale ``P (*, 3, 4)`` from an ``H x W`` image to an ``h x w`` feature map:
    ``diag(w/W, h/H, 1) P``, the reference's ``update_after_resize`` (no half-pixel term)."""
    (H, W), (h, w) = image_hw, heatmap_hw
    scale = proj_matrices.new_tensor([w / W, h / H, 1.0])
    return proj_matrices * scale[:, None]


def project_to_grid(
    proj_matrices: Tensor, points: Tensor, heatmap_hw: Sequence[int], convention: str = "size"
) -> tuple[Tensor, Tensor]:
    """``grid_sample`` coordinates of world points in every view.

    Args:
        proj_matrices: ``(*, V, 3, 4)`` feature-frame projection matrices.
        points: ``(*, N, 3)`` world mm.
        heatmap_hw: feature map ``(h, w)``.
        convention: one of :data:`GRID_CONVENTIONS`.

    Returns:
        ``grid (*, V, N, 2)`` (x, y) in ``[-1, 1]`` units (clamped to ``[-4, 4]``: further out is
        off-map either way; points behind a camera are set off-map), and ``valid (*, V, N)``:
        projective depth ``> 0``.
    """
    gx, gy, valid = _project_planar(proj_matrices, points, heatmap_hw, convention)
    return torch.stack([gx, gy], -1), valid


def _project_planar(
    proj_matrices: Tensor, points: Tensor, heatmap_hw: Sequence[int], convention: str
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`project_to_grid` with the coordinates apart: ``gx, gy, valid`` each ``(*, V, N)``
    (contiguous along the points). The projection is one batched matmul ``(*, 3V, 3) @ (*, 3, N)``
    for all views, in float64 for lower precisions: the products of float32 numbers are exact there,
    so the rounded result does not depend on the matmul's summation order (which changes with the
    shapes: a slice of the points projects exactly as the whole)."""
    if convention not in GRID_CONVENTIONS:
        raise ValueError(f"unknown grid convention {convention!r}; expected one of {GRID_CONVENTIONS}")
    h, w = (int(s) for s in heatmap_hw)
    wide = torch.promote_types(points.dtype, torch.float64)
    P = proj_matrices.to(points.dtype).to(wide)
    V = P.shape[-3]
    M = P[..., :3].reshape(*P.shape[:-3], 3 * V, 3)
    xyz = (M @ points.to(wide).transpose(-1, -2)).unflatten(-2, (V, 3)) + P[..., 3, None]  # (*, V, 3, N)
    x, y, z = xyz.to(points.dtype).unbind(-2)
    valid = z > 0
    z = torch.where(z == 0, torch.ones_like(z), z)
    u, v = x / z, y / z
    size = {"size": (w, h), "reference": (h, w), "exact": (w - 1, h - 1), "contextpose": (h - 1, w - 1)}
    sx, sy = (u.new_tensor(float(d)) for d in size[convention])
    if convention == "exact":
        gx, gy = 2 * u / sx - 1, 2 * v / sy - 1
    else:
        gx, gy = 2 * (u / sx - 0.5), 2 * (v / sy - 0.5)
    gx, gy = (g.nan_to_num_(nan=-4.0, posinf=4.0, neginf=-4.0).clamp_(-4.0, 4.0) for g in (gx, gy))
    return gx.masked_fill_(~valid, -4.0), gy.masked_fill_(~valid, -4.0), valid


def unproject_features(
    features: Tensor,
    proj_matrices: Tensor,
    coord_volumes: Tensor,
    convention: str = "size",
    view_mask: Tensor | None = None,
) -> Tensor:
    """Sample every view's feature map at the projections of the voxel centres.

    One bilinear ``grid_sample`` (zero padding, ``align_corners=True``) over all ``B*V`` maps.
    Voxels behind a camera (projective depth ``<= 0``) and masked views give zeros.

    Args:
        features: ``(B, V, C, h, w)``.
        proj_matrices: ``(B, V, 3, 4)`` in the pixel frame of the feature maps.
        coord_volumes: ``(B, X, Y, Z, 3)`` world mm.
        convention: pixel -> grid mapping, see :data:`GRID_CONVENTIONS`.
        view_mask: optional ``(B, V)`` bool, views present.

    Returns:
        ``(B, V, C, X, Y, Z)`` per-view volumes.
    """
    B, V, C, h, w = features.shape
    vol_shape = coord_volumes.shape[1:4]
    if coord_volumes.shape[0] != B or proj_matrices.shape[:2] != (B, V):
        raise ValueError(
            f"unproject_features: features {tuple(features.shape)}, proj_matrices "
            f"{tuple(proj_matrices.shape)} and coord_volumes {tuple(coord_volumes.shape)} disagree on B, V"
        )
    grid = _sampling_grid(features, proj_matrices, coord_volumes, convention, view_mask)
    return _sample(features, grid).reshape(B, V, C, *vol_shape)


def _sampling_grid(features, proj_matrices, coord_volumes, convention, view_mask) -> Tensor:
    """``(B, V, N, 2)`` grid_sample coordinates (masked views and voxels behind a camera off-map)."""
    B, V, C, h, w = features.shape
    grid, _ = project_to_grid(proj_matrices, coord_volumes.reshape(B, -1, 3), (h, w), convention)
    if view_mask is not None:
        grid = torch.where(view_mask.to(torch.bool)[:, :, None, None], grid, torch.full_like(grid, -4.0))
    return grid.to(features.dtype)


def _sample(features: Tensor, grid: Tensor) -> Tensor:
    """One bilinear ``grid_sample`` of all ``B*V`` maps at ``grid (B, V, n, 2)``: ``(B, V, C, n)``."""
    B, V, C, h, w = features.shape
    sampled = F.grid_sample(
        features.reshape(B * V, C, h, w),
        grid.reshape(B * V, 1, -1, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )  # (B*V, C, 1, n)
    return sampled.reshape(B, V, C, -1)


def unproject_aggregate(
    features: Tensor,
    proj_matrices: Tensor,
    coord_volumes: Tensor,
    method: str = "softmax",
    convention: str = "size",
    view_mask: Tensor | None = None,
    confidences: Tensor | None = None,
    chunk_elems: int | None = None,
) -> Tensor:
    """:func:`unproject_features` then :func:`aggregate_volumes`, identical results, without holding
    every view's volume at once: the voxels are processed in slices (each slice sampled from all
    ``B*V`` maps, then aggregated over the views), so the per-view volumes never exceed
    ``chunk_elems`` samples (``B * V * C * slice``).

    Without autograd (inference) the bilinear samples are taken by :func:`_gather_bilinear` (one
    weighted ``embedding_bag`` over channels-last maps: each corner fetches ``C`` contiguous values,
    where ``grid_sample`` gathers every channel separately), in small slices whose per-view volumes
    stay in the CPU cache (``chunk_elems`` None: ``2**19``); the result is then a view in
    ``torch.channels_last_3d`` memory format (values identical; ``.contiguous()`` if a caller needs
    it). With autograd (a gradient to ``features`` or ``confidences``) the slices use ``grid_sample``
    (differentiable in the grid too; ``chunk_elems`` None: everything at once, as autograd would keep
    every slice anyway). Returns ``(B, C, X, Y, Z)``.
    """
    B, V, C, h, w = features.shape
    vol_shape = coord_volumes.shape[1:4]
    N = math.prod(vol_shape)
    if coord_volumes.shape[0] != B or proj_matrices.shape[:2] != (B, V):
        raise ValueError(
            f"unproject_aggregate: features {tuple(features.shape)}, proj_matrices "
            f"{tuple(proj_matrices.shape)} and coord_volumes {tuple(coord_volumes.shape)} disagree on B, V"
        )
    grad = torch.is_grad_enabled() and (
        features.requires_grad or (confidences is not None and confidences.requires_grad)
    )
    if not grad:
        return _unproject_aggregate_gather(
            features, proj_matrices, coord_volumes, method, convention, view_mask, confidences, chunk_elems
        )
    if chunk_elems is None:
        chunk_elems = B * V * C * N
    step = max(1, min(N, int(chunk_elems) // max(1, B * V * C)))
    grid = _sampling_grid(features, proj_matrices, coord_volumes, convention, view_mask)
    if step >= N:
        return aggregate_volumes(_sample(features, grid), method, view_mask, confidences).reshape(
            B, C, *vol_shape
        )
    parts = [
        aggregate_volumes(_sample(features, grid[:, :, i : i + step]), method, view_mask, confidences)
        for i in range(0, N, step)
    ]
    return torch.cat(parts, -1).reshape(B, C, *vol_shape)


#: voxel-slice sizes of the inference path: the per-view samples of one slice (``B*V*C*slice``
#: values, 2 MiB in float32, so that the aggregation runs in the CPU cache) and the projected points
#: of one block of slices (``B*V*block``, amortising the per-call cost of the projection)
_GATHER_SLICE_ELEMS = 2**19
_GATHER_BLOCK_POINTS = 2**18


class _BilinearTable:
    """Every view's feature map as one channels-last table with a zero border, for
    :func:`_gather_bilinear`: ``table (B*V*(h+3)*(w+3), C)``, map ``(b, v)`` padded by one zero row and
    column before and two after, so that the four corners of any point with a corner on the map
    (``-1 <= x0 <= w - 1``, ``-1 <= y0 <= h - 1``) and of the stand-in for off-map points
    (``x0, y0 = w, h``: four zeros) are rows of the table."""

    def __init__(self, features: Tensor):
        B, V, C, h, w = features.shape
        dev = features.device
        padded = F.pad(features.reshape(B * V, C, h, w), (1, 2, 1, 2))  # (B*V, C, h+3, w+3)
        self.table = padded.permute(0, 2, 3, 1).reshape(-1, C)
        self.hw, self.row_len = (h, w), w + 3
        # table row of pixel (0, 0) of every map, and the off-map stand-in relative to it
        self.origin = (torch.arange(B * V, device=dev) * ((h + 3) * (w + 3)) + (w + 4)).reshape(B, V, 1)
        self.offmap = float(h * (w + 3) + w)
        self.corner_offsets = torch.tensor([0, 1, w + 3, w + 4], device=dev)


def _scratch(buffers: dict, name: str, shape: Sequence[int], like: Tensor, dtype=None) -> Tensor:
    """A reusable uninitialised buffer ``buffers[name]`` of ``shape`` (fresh pages cost a fault each:
    the inference path reuses its per-slice and per-block buffers)."""
    buf = buffers.get(name)
    dtype = like.dtype if dtype is None else dtype
    if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
        buf = buffers[name] = like.new_empty(tuple(shape), dtype=dtype)
    return buf


def _bilinear_corners(
    table: _BilinearTable, gx: Tensor, gy: Tensor, buffers: dict | None = None
) -> tuple[Tensor, Tensor]:
    """Table rows ``(*, B, V, n, 4)`` (int64) and weights ``(*, B, V, n, 4)`` of the corners (nw, ne,
    sw, se) of the ``grid_sample`` coordinates ``gx, gy (*, B, V, n)``, with ``grid_sample``'s
    arithmetic (``align_corners=True``: ``x = (g + 1) (w - 1) / 2``, ``x0 = floor(x)``, corner weights
    ``1 - (x - x0)`` and ``x - x0``). A point without a corner on the map reads four zeros of the
    border. The grid must be finite (:func:`project_to_grid` clamps it to ``[-4, 4]``)."""
    buffers = {} if buffers is None else buffers
    h, w = table.hw
    x, y = gx.add(1).mul_((w - 1) / 2), gy.add(1).mul_((h - 1) / 2)  # cell coordinates
    x0, y0 = x.floor(), y.floor()
    inside = (x0 >= -1) & (x0 <= w - 1) & (y0 >= -1) & (y0 <= h - 1)
    row = torch.addcmul(x0, y0, x0.new_tensor(float(table.row_len)))  # small integers: exact
    row = torch.where(inside, row, table.offmap).long().add_(table.origin).reshape(-1, 1)
    rows = _scratch(buffers, "rows", (row.shape[0], 4), row)
    torch.add(row, table.corner_offsets, out=rows)
    x1w, y1w = x.sub_(x0).reshape(-1), y.sub_(y0).reshape(-1)
    x0w, y0w = 1 - x1w, 1 - y1w
    weights = _scratch(buffers, "weights", (row.shape[0], 4), x1w)
    for k, (yw, xw) in enumerate(((y0w, x0w), (y0w, x1w), (y1w, x0w), (y1w, x1w))):  # corners, not views
        torch.mul(yw, xw, out=weights[:, k])
    shape = (*gx.shape, 4)
    return rows.reshape(shape), weights.reshape(shape)


def _gather_bilinear(table: _BilinearTable, rows: Tensor, weights: Tensor) -> Tensor:
    """Bilinear samples ``(B, V, n, C)`` at corners ``rows``, ``weights`` ``(B, V, n, 4)``: one weighted
    ``embedding_bag`` (``mode="sum"``) over all ``B*V*n`` points, each corner a contiguous row of ``C``
    values (``grid_sample`` gathers every channel separately). Equals ``grid_sample`` (bilinear, zero
    padding, ``align_corners=True``) at the same grid."""
    B, V, n, _ = rows.shape
    out = F.embedding_bag(
        rows.reshape(-1, 4), table.table, per_sample_weights=weights.reshape(-1, 4), mode="sum"
    )
    return out.reshape(B, V, n, -1)


def _softmax_bound(dtype: torch.dtype, views: int) -> float:
    """``M`` such that for samples ``|s| <= M`` the unshifted ``exp(s)`` neither overflows (``views``
    terms ``exp(s) * s``) nor leaves the normal range: the softmax over views needs no max shift."""
    fi = torch.finfo(dtype)
    big = math.log(fi.max)
    return min(big - math.log(max(views, 1)) - math.log(big) - 1.0, -math.log(fi.tiny) - 1.0)


def _unproject_aggregate_gather(
    features, proj_matrices, coord_volumes, method, convention, view_mask, confidences, chunk_elems
) -> Tensor:
    """The inference path of :func:`unproject_aggregate`. Blocks of ``k`` slices of voxels are
    projected at once (grid ``(k, B, V, slice)``), their corner rows and weights computed, then every
    slice sampled (``(B, V, slice, C)``, channels last) and aggregated over the views into the
    channels-last output ``(B, N, C)``: returned as its ``(B, C, X, Y, Z)`` view."""
    B, V, C, h, w = features.shape
    vol_shape = coord_volumes.shape[1:4]
    N = math.prod(vol_shape)
    if method not in AGGREGATION_METHODS:
        raise ValueError(
            f"unknown volume_aggregation_method {method!r}; expected one of {AGGREGATION_METHODS}"
        )
    chunk = _GATHER_SLICE_ELEMS if chunk_elems is None else int(chunk_elems)
    step = max(1, min(N, chunk // max(1, B * V * C)))
    k_max = max(1, _GATHER_BLOCK_POINTS // max(1, B * V * step))
    table = _BilinearTable(features)
    points = coord_volumes.reshape(B, N, 3)
    mask = None if view_mask is None else view_mask.to(torch.bool)
    # samples are convex combinations of features: below the bound, the softmax needs no max shift
    unshifted = method == "softmax" and mask is None and features.numel() > 0
    unshifted = unshifted and float(features.abs().amax()) <= _softmax_bound(features.dtype, V)
    buffers: dict = {}
    out = features.new_empty(B, N, C)  # channels last: every slice is a contiguous block per sample
    i = 0
    while i < N:
        k = min(k_max, (N - i) // step) or 1
        n = min(step, N - i)
        pts = points[:, i : i + k * n].reshape(B, k, n, 3).transpose(0, 1)  # (k, B, n, 3)
        gx, gy, _ = _project_planar(proj_matrices, pts, (h, w), convention)  # (k, B, V, n)
        if mask is not None:
            gx, gy = gx.masked_fill(~mask[:, :, None], -4.0), gy.masked_fill(~mask[:, :, None], -4.0)
        rows, weights = _bilinear_corners(table, gx.to(features.dtype), gy.to(features.dtype), buffers)
        for j in range(k):
            s = _gather_bilinear(table, rows[j], weights[j])
            dest = out[:, i : i + n]
            if unshifted:
                _softmax_aggregate_unshifted(s, dest, buffers)
            else:
                dest.copy_(_aggregate_channels_last(s, method, mask, confidences))
            i += n
    return out.transpose(1, 2).unflatten(2, tuple(vol_shape))  # (B, C, X, Y, Z), channels_last_3d


def _softmax_aggregate_unshifted(s: Tensor, out: Tensor, buffers: dict) -> None:
    """Softmax aggregation of ``s (B, V, n, C)`` into ``out (B, n, C)`` when ``|s|`` is below
    :func:`_softmax_bound`: ``sum_v e^s_v s_v / sum_v e^s_v`` directly (the shift by the maximum
    only guards the range), in reusable buffers."""
    e = torch.exp(s, out=_scratch(buffers, "exp", s.shape, s))
    den = torch.sum(e, 1, out=_scratch(buffers, "den", out.shape, s))
    num = torch.sum(e.mul_(s), 1, out=_scratch(buffers, "num", out.shape, s))
    torch.div(num, den, out=out)


def _aggregate_channels_last(s: Tensor, method: str, mask: Tensor | None, confidences: Tensor | None):
    """:func:`aggregate_volumes` of samples ``s (B, V, n, C)`` (channels last): ``(B, n, C)``."""
    if method == "softmax" and mask is None:
        return (torch.softmax(s, dim=1) * s).sum(1)
    return aggregate_volumes(s.transpose(2, 3), method, mask, confidences).transpose(1, 2)


def normalise_confidences(vol_confidences: Tensor, view_mask: Tensor | None = None) -> Tensor:
    """Volume confidences ``(B, V, C)`` divided by their sum over the present views (``conf_norm``);
    masked views get 0."""
    c = vol_confidences
    if view_mask is not None:
        c = torch.where(view_mask.to(torch.bool)[:, :, None], c, torch.zeros_like(c))
    total = c.sum(1, keepdim=True)
    return c / torch.where(total == 0, torch.ones_like(total), total)


def aggregate_volumes(
    volumes: Tensor,
    method: str = "softmax",
    view_mask: Tensor | None = None,
    confidences: Tensor | None = None,
) -> Tensor:
    """Aggregate per-view volumes ``(B, V, C, *S)`` over the views into ``(B, C, *S)``.

    Methods (per sample, channel and voxel, over the present views ``v``):

    * ``sum``: ``sum_v s_v``; ``max``: ``max_v s_v``;
    * ``softmax``: ``sum_v softmax_v(s)_v * s_v``;
    * ``conf``: ``sum_v c[b, v, ch] * s_v`` with ``confidences (B, V, C)``;
    * ``conf_norm``: the same with ``c`` divided by its sum over the present views.

    A masked view (``view_mask[b, v] = False``) is left out entirely, so the result equals that of
    dropping it; a sample without any view gives zeros.
    """
    if method not in AGGREGATION_METHODS:
        raise ValueError(
            f"unknown volume_aggregation_method {method!r}; expected one of {AGGREGATION_METHODS}"
        )
    B, V = volumes.shape[:2]
    extra = (1,) * (volumes.ndim - 2)
    mask = None if view_mask is None else view_mask.to(torch.bool).reshape(B, V, *extra)
    if method.startswith("conf"):
        if confidences is None:
            raise ValueError(f"aggregation {method!r} needs confidences (B, V, C)")
        c = confidences.to(volumes.dtype)
        if method == "conf_norm":
            c = normalise_confidences(c, view_mask)
        elif view_mask is not None:
            c = torch.where(view_mask.to(torch.bool)[:, :, None], c, torch.zeros_like(c))
        c = c.reshape(*c.shape, *(1,) * (volumes.ndim - 3))
        vols = volumes if mask is None else torch.where(mask, volumes, torch.zeros_like(volumes))
        return (c * vols).sum(1)
    if method == "sum":
        return (volumes if mask is None else torch.where(mask, volumes, torch.zeros_like(volumes))).sum(1)
    if mask is None:
        if method == "max":
            return volumes.amax(1)
        return (torch.softmax(volumes, dim=1) * volumes).sum(1)
    low = torch.finfo(volumes.dtype).min
    logits = torch.where(mask, volumes, torch.full_like(volumes, low))
    if method == "max":
        out = logits.amax(1)
        return torch.where(mask.any(1), out, torch.zeros_like(out))
    weights = torch.softmax(logits, dim=1)
    return (weights * torch.where(mask, volumes, torch.zeros_like(volumes))).sum(1)


# ------------------------------------------------------------------------------------------- model
class VolumetricTriangulationNet(nn.Module):
    """Learnable triangulation's volumetric model.

    Args:
        num_layers: pose-ResNet depth (18, 34, 50, 101, 152; published: 152), when no ``backbone``.
        num_joints: joints ``J``.
        volume_aggregation_method: one of :data:`AGGREGATION_METHODS` (published: ``softmax``); the
            ``conf*`` methods add the backbone's ``vol_confidences`` head.
        volume_size: voxels per axis ``D`` (a multiple of 32 for the default V2V; published 64).
        cuboid_side: cube side in mm (2500).
        volume_multiplier: logits scale before the 3D softmax (1.0).
        volume_softmax: softmax (True) or ReLU weights in the soft-argmax.
        volume_features_dim: channels after ``process_features``, the V2V input (32).
        kind: ``"mpii"`` (root joint 6, vertical axis z: Human3.6M) or ``"coco"`` (mean of joints 11
            and 12, axis y: CMU Panoptic), as the reference.
        root_source: the cuboid centre in :meth:`forward_batch`: ``"batch"`` (``batch["root_3d"]``:
            the ground-truth pelvis, or the dataset's per-frame prediction file, see
            ``root_prediction_file`` of the datasets), ``"gt"`` (the root joint(s) of
            ``batch["keypoints_3d"]``, the reference's ``use_gt_pelvis``) or ``"algebraic"``
            (``root_model`` run end to end on the same batch).
        root_model: for ``"algebraic"``: e.g. an :class:`~mvpose.models.algebraic.AlgebraicTriangulationNet`,
            called as ``root_model(images, proj_matrices, view_mask=view_mask)``, returning keypoints
            ``(B, J, 3)`` (or a tuple / mapping with ``keypoints_3d`` first); run in eval mode without
            gradients. A submodule (its weights are part of this model's state dict).
        root_joints: joint indices averaged into the root (default from ``kind``).
        grid_convention: pixel -> ``grid_sample`` mapping, see :data:`GRID_CONVENTIONS`.
        rotate_in_training: rotate the cuboid randomly about the vertical axis in training mode.
        generator: ``torch.Generator`` for those rotations.
        backbone: a ready :class:`~mvpose.models.backbone.PoseResNet` (or any module returning
            ``(heatmaps, features, alg_conf, vol_conf)``) instead of building one.
        volume_net: a V2V replacement (a variant with a block inside, e.g. ContextPose's).

    Shape:
        ``images (B, V, 3, H, W)``, cameras (rig or ``P (B, V, 3, 4)``), ``root (B, 3)`` mm,
        ``view_mask (B, V)`` -> :class:`VolumetricOutput` (a dict).

    Example:
        >>> net = VolumetricTriangulationNet(18, 17, volume_size=32).eval()
        >>> out = net(images, P, root)  # doctest: +SKIP
        >>> out["keypoints_3d"].shape  # doctest: +SKIP
        torch.Size([1, 17, 3])
    """

    def __init__(
        self,
        num_layers: int = 152,
        num_joints: int = 17,
        *,
        volume_aggregation_method: str = "softmax",
        volume_size: int = 64,
        cuboid_side: float = 2500.0,
        volume_multiplier: float = 1.0,
        volume_softmax: bool = True,
        volume_features_dim: int = 32,
        kind: str = "mpii",
        root_source: str = "batch",
        root_model: nn.Module | None = None,
        root_joints: Sequence[int] | None = None,
        grid_convention: str = "size",
        rotate_in_training: bool = True,
        generator: torch.Generator | None = None,
        backbone: nn.Module | None = None,
        volume_net: nn.Module | None = None,
    ):
        super().__init__()
        if volume_aggregation_method not in AGGREGATION_METHODS:
            raise ValueError(
                f"unknown volume_aggregation_method {volume_aggregation_method!r}; "
                f"expected one of {AGGREGATION_METHODS}"
            )
        if kind not in _KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(_KINDS)}")
        if root_source not in ROOT_SOURCES:
            raise ValueError(f"unknown root_source {root_source!r}; expected one of {ROOT_SOURCES}")
        if root_source == "algebraic" and root_model is None:
            raise ValueError("root_source='algebraic' needs a root_model")
        if grid_convention not in GRID_CONVENTIONS:
            raise ValueError(
                f"unknown grid_convention {grid_convention!r}; expected one of {GRID_CONVENTIONS}"
            )
        use_conf = volume_aggregation_method.startswith("conf")
        if backbone is None:
            backbone = pose_resnet(
                num_layers, num_joints, vol_confidences=use_conf, vol_confidences_dim=volume_features_dim
            )
        elif isinstance(backbone, PoseResNet) and backbone.has_vol_confidences != use_conf:
            raise ValueError(
                f"volume_aggregation_method={volume_aggregation_method!r} but the backbone "
                f"{'has' if backbone.has_vol_confidences else 'lacks'} the vol_confidences head"
            )
        self.num_joints = int(num_joints)
        self.volume_aggregation_method = volume_aggregation_method
        self.volume_size = int(volume_size)
        self.cuboid_side = float(cuboid_side)
        self.volume_multiplier = float(volume_multiplier)
        self.volume_softmax = bool(volume_softmax)
        self.kind = kind
        self.root_joints = tuple(int(j) for j in root_joints) if root_joints is not None else _KINDS[kind][0]
        self.rotation_axis = _KINDS[kind][1]
        self.root_source = root_source
        self.grid_convention = grid_convention
        self.rotate_in_training = bool(rotate_in_training)
        self.generator = generator

        self.backbone = backbone
        final = getattr(backbone, "final_layer", None)
        if isinstance(final, nn.Module):  # the reference freezes the (unused) heatmap layer
            for p in final.parameters():
                p.requires_grad_(False)
        self.process_features = feature_head(getattr(backbone, "feature_channels", 256), volume_features_dim)
        self.volume_net = volume_net if volume_net is not None else V2VModel(volume_features_dim, num_joints)
        self.root_model = root_model

    # ----------------------------------------------------------------------------- stages
    def run_backbone(self, images: Tensor, view_mask: Tensor | None = None):
        """Backbone + ``process_features`` on ``(B, V, 3, H, W)``; missing views are skipped (so that
        training-mode BatchNorm never sees them) and come back as zeros.

        Returns:
            ``heatmaps (B, V, J, h, w)``, processed ``features (B, V, C, h, w)``, volume confidences
            ``(B, V, C)`` or None.
        """
        B, V = images.shape[:2]
        flat = images.flatten(0, 1)
        present = None
        if view_mask is not None and not bool(view_mask.all()):
            present = view_mask.flatten().nonzero().squeeze(1)
            flat = flat.index_select(0, present)
        out = self.backbone(flat)
        if isinstance(out, Mapping):
            heatmaps, feats, vol_conf = out["heatmaps"], out["features"], out.get("vol_confidences")
        else:
            heatmaps, feats = out[0], out[1]
            vol_conf = out[3] if len(out) > 3 else None
        feats = self.process_features(feats)
        results = [heatmaps, feats, vol_conf]
        for i, x in enumerate(results):
            if x is None:
                continue
            if present is not None:
                x = x.new_zeros(B * V, *x.shape[1:]).index_copy(0, present, x)
            results[i] = x.unflatten(0, (B, V))
        return tuple(results)

    def root_from_keypoints(self, keypoints_3d: Tensor) -> Tensor:
        """The cuboid centre ``(*, 3)`` from joints ``(*, J, 3)``: the mean of :attr:`root_joints`."""
        return keypoints_3d[..., list(self.root_joints), :3].mean(-2)

    def build_cuboids(self, root: Tensor, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """Cuboids around ``root (B, 3)`` mm: ``coord_volumes (B, D, D, D, 3)``, ``cuboid_position``
        (corner before rotation, ``root - side/2``), ``cuboid_sides`` ``(B, 3)`` and
        ``cuboid_rotations (B, 3, 3)`` (identity unless training with ``rotate_in_training``)."""
        B = root.shape[0]
        if self.training and self.rotate_in_training:
            rot = random_vertical_rotations(B, self.rotation_axis, self.generator, device=root.device)
        else:
            rot = torch.eye(3, dtype=torch.float64, device=root.device).expand(B, 3, 3)
        root64 = root.detach().to(torch.float64)
        return {
            "coord_volumes": cuboid_coord_volumes(
                root64, self.cuboid_side, self.volume_size, rot, dtype=dtype
            ),
            "cuboid_position": root64 - self.cuboid_side / 2,
            "cuboid_sides": torch.full_like(root64, self.cuboid_side),
            "cuboid_rotations": rot,
        }

    def lift(
        self,
        features: Tensor,
        proj_matrices_heatmap: Tensor,
        coord_volumes: Tensor,
        view_mask: Tensor | None = None,
        vol_confidences: Tensor | None = None,
    ) -> Tensor:
        """Unproject processed features ``(B, V, C, h, w)`` into ``coord_volumes`` and aggregate over
        the views: ``(B, C, D, D, D)``, the V2V input."""
        return unproject_aggregate(
            features,
            proj_matrices_heatmap,
            coord_volumes,
            self.volume_aggregation_method,
            self.grid_convention,
            view_mask,
            vol_confidences,
        )

    def forward_features(
        self,
        features: Tensor,
        proj_matrices_heatmap: Tensor,
        root: Tensor,
        view_mask: Tensor | None = None,
        vol_confidences: Tensor | None = None,
    ) -> VolumetricOutput:
        """Everything after ``process_features``: cuboids, unprojection, aggregation, V2V, soft-argmax.

        Args:
            features: ``(B, V, C, h, w)`` processed features.
            proj_matrices_heatmap: ``(B, V, 3, 4)`` in the feature-map pixel frame.
            root: ``(B, 3)`` mm, the cuboid centres.
            view_mask: ``(B, V)`` bool or None.
            vol_confidences: ``(B, V, C)`` raw head outputs, for ``conf``/``conf_norm``.
        """
        out = VolumetricOutput(self.build_cuboids(root, dtype=features.dtype))
        out["volumes_unprojected"] = self.lift(
            features, proj_matrices_heatmap, out["coord_volumes"], view_mask, vol_confidences
        )
        logits = self.volume_net(out["volumes_unprojected"])
        if isinstance(logits, tuple):  # a V2V variant with extras (ContextPose's attention)
            logits, out["volume_net_extras"] = logits
        out["volumes_logits"] = logits
        out["keypoints_3d"], out["volumes"] = soft_argmax_3d(
            logits, out["coord_volumes"], self.volume_multiplier, self.volume_softmax
        )
        out["base_points"] = root
        return out

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        images: Tensor,
        cameras: CameraRig | Tensor,
        root: Tensor | None = None,
        *,
        view_mask: Tensor | None = None,
    ) -> VolumetricOutput:
        """Volumetric triangulation of ``B`` multi-view samples (the multi-view forward contract:
        ``model(images, proj_matrices, root=None)`` -> dict with ``keypoints_3d``, ``volumes``,
        ``coord_volumes``).

        Args:
            images: ``(B, V, 3, H, W)`` normalised crops (the reference's BGR quirk, see
                :mod:`mvpose.models.algebraic`).
            cameras: the crops' rig (``(B, V)`` or ``(V,)`` cameras; distortion is ignored: the crops
                are undistorted) or projection matrices ``(B, V, 3, 4)`` into ``images`` pixels.
            root: ``(B, 3)`` mm cuboid centres; None runs ``root_model``.
            view_mask: ``(B, V)`` bool, False for a missing view (left out of the backbone and of
                the aggregation: the result equals that without the view).

        Returns:
            :class:`VolumetricOutput`.
        """
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must have shape (B, V, 3, H, W), got {tuple(images.shape)}")
        B, V = images.shape[:2]
        P = self._projection_matrices(cameras, B, V).to(images.device)
        if view_mask is not None:
            if view_mask.shape != (B, V):
                raise ValueError(f"view_mask must have shape ({B}, {V}), got {tuple(view_mask.shape)}")
            view_mask = view_mask.to(device=images.device, dtype=torch.bool)
        if root is None:
            if self.root_model is None:
                raise ValueError("VolumetricTriangulationNet: no root given and no root_model to predict it")
            root = self._root_from_model(images, P, view_mask)
        if root.shape != (B, 3):
            raise ValueError(f"root must have shape ({B}, 3), got {tuple(root.shape)}")
        heatmaps, features, vol_conf = self.run_backbone(images, view_mask)
        P_h = heatmap_projection_matrices(P, images.shape[-2:], features.shape[-2:]).to(features.dtype)
        out = self.forward_features(features, P_h, root.to(images.device), view_mask, vol_conf)
        if vol_conf is not None and self.volume_aggregation_method == "conf_norm":
            vol_conf = normalise_confidences(vol_conf, view_mask)  # what the reference returns
        out.update(heatmaps=heatmaps, features=features, vol_confidences=vol_conf, proj_matrices_heatmap=P_h)
        return out

    def forward_batch(self, batch: Mapping) -> VolumetricOutput:
        """Run on a collated multi-view batch (docs/datasets.md); the root as ``root_source`` says."""
        from mvpose.data.collate import rig_from_batch

        images = batch["images"]
        P = rig_from_batch(batch).projection_matrices().to(images.device)
        view_mask = batch.get("view_mask")
        root = None
        if self.root_source == "batch":
            root = torch.as_tensor(batch["root_3d"])
        elif self.root_source == "gt":
            root = self.root_from_keypoints(torch.as_tensor(batch["keypoints_3d"]))
        if root is not None:
            root = root.to(images.device)
        return self(images, P, root, view_mask=view_mask)

    # ----------------------------------------------------------------------------- helpers
    @staticmethod
    def _projection_matrices(cameras: CameraRig | Tensor, B: int, V: int) -> Tensor:
        if isinstance(cameras, CameraRig):
            if cameras.num_views != V:
                raise ValueError(f"the rig has {cameras.num_views} cameras, the images {V} views")
            P = cameras.projection_matrices()
        else:
            P = torch.as_tensor(cameras)
        if P.shape[-3:] != (V, 3, 4) or P.ndim not in (3, 4) or (P.ndim == 4 and P.shape[0] not in (1, B)):
            raise ValueError(f"projection matrices must be ({B}, {V}, 3, 4), got {tuple(P.shape)}")
        return P.expand(B, V, 3, 4)

    def _root_from_model(self, images: Tensor, P: Tensor, view_mask: Tensor | None) -> Tensor:
        return predict_root(self.root_model, images, P, self.root_joints, view_mask)


def predict_root(
    root_model: nn.Module,
    images: Tensor,
    proj_matrices: Tensor,
    root_joints: Sequence[int],
    view_mask: Tensor | None = None,
) -> Tensor:
    """Cuboid centres ``(B, 3)`` mm from a root predictor (e.g. the algebraic model): the mean of its
    ``keypoints_3d`` at ``root_joints``. Run in eval mode without gradients (a fixed predictor: no
    batch statistics, no running-stat updates), its training flag restored afterwards."""
    was_training = root_model.training
    root_model.eval()
    try:
        with torch.no_grad():
            out = root_model(images, proj_matrices, view_mask=view_mask)
    finally:
        root_model.train(was_training)
    if isinstance(out, Mapping):
        out = out["keypoints_3d"]
    elif isinstance(out, tuple | list):
        out = out[0]
    return out[..., list(root_joints), :3].mean(-2).detach()


class VolumetricOutput(dict):
    """What :class:`VolumetricTriangulationNet` returns (a dict; keys in the reference's order first):

    * ``keypoints_3d (B, J, 3)`` mm, world frame;
    * ``features (B, V, C, h, w)``: ``process_features`` output (zeros for missing views);
    * ``volumes (B, J, D, D, D)``: soft-argmax weights (softmax of ``volume_multiplier * logits``);
    * ``vol_confidences (B, V, C)`` (normalised over views for ``conf_norm``) or None;
    * ``cuboid_position``, ``cuboid_sides`` ``(B, 3)`` mm (the reference's ``cuboids``),
      ``cuboid_rotations (B, 3, 3)``; ``coord_volumes (B, D, D, D, 3)`` mm;
    * ``base_points (B, 3)`` mm, the roots;
    * ``heatmaps (B, V, J, h, w)`` raw backbone heatmaps (unused); ``proj_matrices_heatmap (B, V, 3, 4)``;
    * ``volumes_unprojected (B, C, D, D, D)`` (V2V input), ``volumes_logits (B, J, D, D, D)`` (V2V
      output), and ``volume_net_extras`` when the V2V returns some.
    """

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


ROOT_SOURCES = ("batch", "gt", "algebraic")


# ----------------------------------------------------------------------------- official checkpoints
_OVERRIDES = {
    "volume_aggregation_method",
    "volume_size",
    "cuboid_side",
    "volume_multiplier",
    "volume_softmax",
    "use_gt_pelvis",
    "kind",
    "num_layers",
    "num_joints",
    "style",
    "heatmap_multiplier",  # in the reference's volumetric configs but unused by the model
    "heatmap_softmax",
    # mvpose's own
    "root_source",
    "grid_convention",
}


def load_official_volumetric(path, **overrides) -> VolumetricTriangulationNet:
    """A :class:`VolumetricTriangulationNet` from a learnable-triangulation checkpoint, in eval mode.

    The file is what the reference's ``train.py`` saves: a bare ``model.state_dict()``, with
    ``module.`` in every key under DistributedDataParallel (the published weights). As the reference,
    ``"module."`` is removed wherever it occurs in a key (``str.replace``) and the load is strict.
    Read with ``torch.load(weights_only=True)``; a ``{"state_dict": ...}`` wrapper is accepted.

    Inferred from the keys and shapes: the backbone (depth, joints, deconvolutions; presence of
    ``backbone.vol_confidences``, which selects ``conf`` aggregation when none is given),
    ``volume_features_dim`` and the backbone feature channels (``process_features.0.weight``), and
    the joint count of the V2V (``volume_net.output_layer``).

    Args:
        path: the checkpoint (``weights.pth``).
        **overrides: the reference's config names (``model.*``): ``volume_aggregation_method``
            (``softmax``, or ``conf`` with the head), ``volume_size`` (64), ``cuboid_side`` (2500.0),
            ``volume_multiplier`` (1.0), ``volume_softmax`` (True), ``use_gt_pelvis`` (False: the
            root comes from ``batch["root_3d"]``; True: from ``batch["keypoints_3d"]``), ``kind``
            ("mpii"), ``num_layers``/``num_joints`` (must agree with the file), ``style``;
            ``heatmap_multiplier``/``heatmap_softmax`` are accepted and unused, as in the reference.
            mvpose's: ``root_source`` ("batch", "gt", "algebraic": attach ``model.root_model``),
            ``grid_convention`` (see :data:`GRID_CONVENTIONS`, default "size").

    Raises:
        TypeError: for an unknown override.
        ValueError: naming the file, when it is not a volumetric state dict or does not fit the model,
            listing every missing, unexpected and mis-shaped key.
    """
    from pathlib import Path

    bad = sorted(set(overrides) - _OVERRIDES)
    if bad:
        raise TypeError(
            f"load_official_volumetric: unknown override(s) {bad}; accepted: {sorted(_OVERRIDES)}"
        )
    path = Path(path)
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    sd = {k.replace("module.", ""): v for k, v in _tensor_dict(obj, path, "a model state dict").items()}
    pf = sd.get("process_features.0.weight")
    try:
        cfg = pose_resnet_config_from_state_dict(sd, "backbone.")
        if pf is None or "volume_net.output_layer.weight" not in sd:
            raise KeyError("no process_features.0.weight / volume_net.output_layer.weight")
    except KeyError as e:
        raise ValueError(
            f"{path}: not a learnable-triangulation volumetric checkpoint ({e.args[0]}); keys start with "
            f"{sorted({k.split('.')[0] for k in sd})}"
        ) from None

    num_joints = int(overrides.get("num_joints", sd["volume_net.output_layer.weight"].shape[0]))
    method = overrides.get("volume_aggregation_method", "conf" if cfg["vol_confidences"] else "softmax")
    use_conf = str(method).startswith("conf")
    dim, feat_ch = int(pf.shape[0]), int(pf.shape[1])
    style = overrides.get("style", "simple")
    if "num_layers" in overrides:
        backbone = pose_resnet(
            overrides["num_layers"], cfg["num_joints"], vol_confidences=use_conf,
            vol_confidences_dim=cfg["vol_confidences_dim"], style=style,
        )  # fmt: skip
    else:
        backbone = PoseResNet(
            cfg["block"],
            cfg["layers"],
            cfg["num_joints"],
            vol_confidences=use_conf,
            vol_confidences_dim=cfg["vol_confidences_dim"],
            deconv_channels=cfg["deconv_channels"] or (256, 256, 256),
            deconv_kernels=cfg["deconv_kernels"] or (4, 4, 4),
            final_conv_kernel=cfg["final_conv_kernel"],
            style=style,
        )
    root_source = overrides.get("root_source", "gt" if overrides.get("use_gt_pelvis", False) else "batch")
    model = VolumetricTriangulationNet(
        num_joints=num_joints,
        volume_aggregation_method=method,
        volume_size=int(overrides.get("volume_size", 64)),
        cuboid_side=float(overrides.get("cuboid_side", 2500.0)),
        volume_multiplier=float(overrides.get("volume_multiplier", 1.0)),
        volume_softmax=bool(overrides.get("volume_softmax", True)),
        volume_features_dim=dim,
        kind=overrides.get("kind", "mpii"),
        root_source="batch" if root_source == "algebraic" else root_source,
        grid_convention=overrides.get("grid_convention", "size"),
        backbone=backbone,
    )
    model.root_source = root_source  # "algebraic": the caller attaches model.root_model
    if model.process_features[0].in_channels != feat_ch:
        model.process_features = feature_head(feat_ch, dim)
    load_state_dict_strict(
        model,
        sd,
        path,
        f"VolumetricTriangulationNet(backbone={backbone.block} {list(backbone.layers)}, "
        f"num_joints={num_joints}, volume_aggregation_method={method!r}, volume_features_dim={dim})",
    )
    return model.eval()
