"""Per-view lifting, fused across views with the extrinsics: the other multi-view + temporal hybrid.

Each camera's 2D sequence ``(T, J, 2)`` px goes through a temporal lifter (a ``task: sequence``
checkpoint with ``input: 2d``: VideoPose3D, PoseFormerV2, P-STMO, SRNet, TGraphNet), which predicts a
root-relative pose in that camera's frame. Then:

1. **rotation into world axes**: a root-relative vector ``d_cam`` is ``R d_world``, so
   ``d_world = R^T d_cam`` (the translation drops out);
2. **fusion across views** (:func:`fuse_root_relative`): per joint and frame, views farther than
   ``outlier_mm`` from the per-coordinate median of the views are dropped (a view whose detections
   went wrong), the rest averaged, weighted by the joint's 2D confidence in that view;
3. **trajectory** (:func:`fit_translation`): the translation ``tau`` of the fused pose that best
   explains every view's detections of every joint: the DLT equations of ``X_j = Y_j + tau`` (``Y``
   the fused root-relative pose) are linear in ``tau``; they are solved per frame, the rows scaled by
   the inverse depth so that the residuals are pixels, with Huber reweighting of the reprojection
   errors (a few iterations). One view suffices (the pose's known size fixes the depth), more average;
4. **correction with the detections** (:func:`correct_with_detections`, on by default): every joint
   moved to what the detections say, the placed lifted pose as a Gaussian prior: where views agree
   their triangulation, where one view sees the joint a move within its image plane, where none does
   the lifted position.

Unlike triangulation, the lifter gives every joint of every frame, even where only one view (or none,
briefly) sees it. Where a view's errors are depth errors along its rays, the other views see them as
lateral ones and the fusion averages them down; errors of the pose itself, alike in every view,
remain: the correction with the detections is what removes those (docs/temporal_training.md).

Example:
    >>> fuser = LiftFuse.from_checkpoint("runs/realmotion_lifter/checkpoints/last.pth")  # doctest: +SKIP
    >>> out = fuser(points_px, rig, confidences)  # (T, V, J, 2) px -> out.points_world_mm (T, J, 3)
    ... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mvpose.geometry import CameraRig

__all__ = [
    "LiftFuse",
    "LiftFuseResult",
    "fuse_root_relative",
    "fit_translation",
    "correct_with_detections",
    "camera_to_world_axes",
]


def camera_to_world_axes(rel_camera: Tensor, rig: CameraRig) -> Tensor:
    """Root-relative poses in each camera's frame ``(..., V, J, 3)`` to world axes (same shape):
    ``d_world = R^T d_camera`` per view (row vectors: ``d_camera @ R``)."""
    return rel_camera @ rig.R.to(rel_camera)


def fuse_root_relative(
    rel_world: Tensor, weights: Tensor | None = None, outlier_mm: float = 200.0
) -> tuple[Tensor, Tensor]:
    """Fuse per-view root-relative poses (world axes) across views.

    Args:
        rel_world: ``(T, V, J, 3)`` mm; NaN where a view has no prediction.
        weights: ``(T, V, J)`` (2D confidences; 0 excludes), default 1.
        outlier_mm: views farther than this from the per-coordinate median of the views are dropped
            (when at least one view is left within it).

    Returns:
        ``(T, J, 3)`` mm (NaN where no view has the joint) and the views used ``(T, V, J)`` bool.
    """
    T, V, J, _ = rel_world.shape
    w = torch.ones(T, V, J, dtype=rel_world.dtype) if weights is None else weights.to(rel_world)
    ok = torch.isfinite(rel_world).all(-1) & torch.isfinite(w) & (w > 0)
    x = torch.where(ok[..., None], rel_world, torch.nan)
    med = x.nanmedian(dim=1, keepdim=True).values  # (T, 1, J, 3)
    near = ok & ((x - med).norm(dim=-1) <= outlier_mm)
    used = torch.where(near.any(1, keepdim=True), near, ok)
    wu = torch.where(used, w, torch.zeros_like(w))
    total = wu.sum(1)  # (T, J)
    fused = (wu[..., None] * torch.nan_to_num(x)).sum(1) / total[..., None]
    return torch.where((total > 0)[..., None], fused, torch.nan), used


class _Detections:
    """The DLT rows of raw detections ``(T, V, J, 2)`` px and their reweighting by reprojection.

    Row ``a`` of view ``v``, joint ``j`` (``u p3 - p1`` and ``v p3 - p2`` of the projection matrix)
    satisfies ``a . [X; 1] = 0`` for the true point ``X``; scaled by ``1 / depth`` its residual is
    the reprojection error in pixels (undistorted).
    """

    def __init__(self, points_px: Tensor, rig: CameraRig, weights: Tensor | None, huber_px: float):
        dt = torch.float64
        r = rig.to(dtype=dt)
        uv = r.undistort_points(points_px.to(dt))  # (T, V, J, 2)
        w = torch.ones(uv.shape[:-1], dtype=dt) if weights is None else weights.to(dt)
        self.ok = torch.isfinite(uv).all(-1) & torch.isfinite(w) & (w > 0)
        self.w = torch.where(self.ok, w, torch.zeros_like(w))
        self.uv = torch.nan_to_num(uv)
        self.P = r.projection_matrices()  # (V, 3, 4)
        self.A = self.uv[..., None] * self.P[:, None, 2:3, :] - self.P[:, None, :2, :]  # (T, V, J, 2, 4)
        self.huber_px = huber_px

    def reprojection(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Points ``(T, J, 3)`` mm -> reprojection errors ``(T, V, J)`` px (NaN: unobserved) and
        the row weights of the next round: confidence x Huber / depth^2 (0 behind a camera)."""
        Xh = torch.cat([X, torch.ones_like(X[..., :1])], -1)  # (T, J, 4)
        proj = Xh[:, None] @ self.P.transpose(-1, -2)  # (T, V, J, 3)
        depth = proj[..., 2]
        front = self.ok & (depth > 0)
        err = torch.where(front, (proj[..., :2] / depth[..., None] - self.uv).norm(dim=-1), torch.nan)
        huber = torch.where(err > self.huber_px, self.huber_px / err, torch.ones_like(err))
        scale = torch.where(front, self.w * huber / depth.clamp_min(1e-6) ** 2, torch.zeros_like(err))
        return err, scale


def _solve(N: Tensor, rhs: Tensor, solvable: Tensor) -> Tensor:
    """Batched ``N x = rhs`` (``(..., 3, 3)``, ``(..., 3)``); NaN where not ``solvable`` or singular."""
    solvable = solvable & (torch.linalg.det(N).abs() > 1e-12 * N.diagonal(0, -2, -1).prod(-1).abs())
    eye = torch.eye(3, dtype=N.dtype).expand_as(N)
    x = torch.linalg.solve(torch.where(solvable[..., None, None], N, eye), rhs)
    return torch.where(solvable[..., None], x, torch.nan)


def fit_translation(
    rel_world: Tensor,
    points_px: Tensor,
    rig: CameraRig,
    weights: Tensor | None = None,
    iterations: int = 4,
    huber_px: float = 10.0,
) -> tuple[Tensor, Tensor]:
    """The per-frame translation ``tau`` that places a root-relative pose in the world.

    Args:
        rel_world: ``(T, J, 3)`` mm, root-relative, world axes (NaN joints are skipped).
        points_px: ``(T, V, J, 2)`` raw (distorted) detections px; NaN = missing.
        rig: the ``V`` cameras.
        weights: ``(T, V, J)`` confidences (0 excludes), default 1.
        iterations: reweighting rounds (inverse depth and Huber weights from the previous ``tau``).
        huber_px: Huber threshold on the reprojection error.

    Returns:
        ``tau (T, 3)`` mm (NaN for frames with fewer than two observations or a singular system) and
        the final reprojection errors ``(T, V, J)`` px (NaN where not observed).
    """
    Y = rel_world.to(torch.float64)
    d = _Detections(points_px, rig, weights, huber_px)
    known = torch.isfinite(Y).all(-1)[:, None]  # (T, 1, J)
    ok = d.ok & known
    Yh = torch.nan_to_num(Y)
    Yh1 = torch.cat([Yh, torch.ones_like(Yh[..., :1])], -1)[:, None, :, :, None]  # (T, 1, J, 4, 1)
    M, b = d.A[..., :3], -(d.A @ Yh1)[..., 0]  # a[:3] . tau = -a . [Y; 1]
    scale = torch.where(ok, d.w, torch.zeros_like(d.w))  # first round: confidence only
    for it in range(iterations + 1):
        sM = scale[..., None, None] * M
        N = (sM.transpose(-1, -2) @ M).sum((1, 2))  # (T, 3, 3)
        rhs = (sM * b[..., None]).sum((-2, 1, 2))  # (T, 3)
        tau = _solve(N, rhs, ok.sum((1, 2)) >= 2)
        err, new = d.reprojection(Yh + tau[:, None])
        err = torch.where(known, err, torch.nan)
        if it == iterations:
            break
        new = torch.where(known, new, torch.zeros_like(new))
        # a frame whose fit failed (no valid depth) keeps its previous weights
        scale = torch.where((new.sum((1, 2)) > 0)[:, None, None], new, scale)
    return tau, err


def correct_with_detections(
    points_world: Tensor,
    points_px: Tensor,
    rig: CameraRig,
    weights: Tensor | None = None,
    sigma_px: float = 5.0,
    sigma_prior_mm: float = 50.0,
    iterations: int = 3,
    huber_px: float = 10.0,
) -> tuple[Tensor, Tensor]:
    """Move every joint towards what the detections say, the lifted position as a prior.

    Per frame and joint, ``X`` minimises ``sum_v w ||reprojection_v(X) - u_v||^2 / sigma_px^2 +
    ||X - X_prior||^2 / sigma_prior_mm^2`` (the DLT rows scaled by the inverse depth, Huber on the
    reprojection errors, ``iterations`` reweighting rounds): where several views agree this is their
    triangulation, where one view sees the joint it moves it along that view's image plane only,
    where none does it stays the prior.

    Args:
        points_world: ``(T, J, 3)`` mm, the prior (NaN: no prior, then two views are needed).
        points_px, rig, weights, huber_px: as :func:`fit_translation`.
        sigma_px: detection noise; sigma_prior_mm: error of the prior (per axis).

    Returns:
        ``(T, J, 3)`` mm and the reprojection errors ``(T, V, J)`` px.
    """
    X0 = points_world.to(torch.float64)
    d = _Detections(points_px, rig, weights, huber_px)
    has_prior = torch.isfinite(X0).all(-1)  # (T, J)
    lam = torch.where(has_prior, 1.0 / sigma_prior_mm**2, 0.0)[..., None]  # (T, J, 1)
    prior = torch.nan_to_num(X0)
    M, c = d.A[..., :3], -d.A[..., 3]  # a[:3] . X = -a[3]
    eye = torch.eye(3, dtype=torch.float64)
    scale = d.w / d.A[..., 0, :3].norm(dim=-1).clamp_min(1e-12) ** 2  # rough first pixel scaling
    _, scale_prior = d.reprojection(prior)
    scale = torch.where(has_prior[:, None], scale_prior, scale)
    for it in range(iterations + 1):
        sM = (scale / sigma_px**2)[..., None, None] * M
        N = (sM.transpose(-1, -2) @ M).sum(1) + lam[..., None] * eye  # (T, J, 3, 3)
        rhs = (sM * c[..., None]).sum((-2, 1)) + lam * prior  # (T, J, 3)
        X = _solve(N, rhs, has_prior | (d.ok.sum(1) >= 2))
        err, new = d.reprojection(X)
        if it == iterations:
            break
        scale = torch.where((new.sum(1) > 0)[:, None], new, scale)
    return X, err


@dataclass
class LiftFuseResult:
    """Output of :class:`LiftFuse` (all mm, world frame unless said).

    Attributes:
        points_world_mm: ``(T, J, 3)`` the result: ``lifted_world_mm`` corrected with the detections
            (:func:`correct_with_detections`), or ``lifted_world_mm`` itself when that is off.
        lifted_world_mm: ``(T, J, 3)`` the fused lifted pose placed by the fitted trajectory.
        root_relative_mm: ``(T, J, 3)`` fused root-relative pose, world axes.
        trajectory_mm: ``(T, 3)`` the fitted translation (the root's position).
        per_view_mm: ``(T, V, J, 3)`` each view's lifted root-relative pose, world axes (NaN: view
            without detections).
        views_used: ``(T, V, J)`` views kept by the fusion.
        reprojection_px: ``(T, V, J)`` reprojection error of ``points_world_mm`` on the detections
            (NaN: not observed).
    """

    points_world_mm: np.ndarray
    lifted_world_mm: np.ndarray
    root_relative_mm: np.ndarray
    trajectory_mm: np.ndarray
    per_view_mm: np.ndarray
    views_used: np.ndarray
    reprojection_px: np.ndarray


class LiftFuse:
    """Lift every view with a temporal lifter, fuse across views, place with the detections.

    Args:
        lifter: ``f(inputs (T, J, 2), fps) -> (T, J, 3)`` metres, root-relative, camera frame, where
            ``inputs`` are VideoPose3D's normalised screen coordinates of the raw (distorted) pixels;
            :meth:`from_checkpoint` builds it from a sequence checkpoint.
        root: index of the root joint of the lifter's skeleton.
        min_confidence: detections below are treated as missing (the lifter sees them interpolated
            over time, the fusion and the trajectory ignore them).
        outlier_mm, huber_px, iterations: :func:`fuse_root_relative` and :func:`fit_translation`.
        trajectory_cutoff_hz: optional low-pass (zero-phase Butterworth after outlier rejection) of
            the trajectory; ``None`` keeps the per-frame fit.
        sigma_px, sigma_prior_mm: :func:`correct_with_detections` of the placed pose (detection noise,
            error of the lifted pose); ``sigma_prior_mm=None`` keeps the lifted pose as placed.
    """

    def __init__(
        self,
        lifter: Callable[[np.ndarray, float | None], np.ndarray],
        root: int = 0,
        min_confidence: float = 0.0,
        outlier_mm: float = 200.0,
        huber_px: float = 10.0,
        iterations: int = 4,
        trajectory_cutoff_hz: float | None = None,
        sigma_px: float = 5.0,
        sigma_prior_mm: float | None = 50.0,
    ):
        self.lifter, self.root = lifter, int(root)
        self.min_confidence, self.outlier_mm = float(min_confidence), float(outlier_mm)
        self.huber_px, self.iterations = float(huber_px), int(iterations)
        self.trajectory_cutoff_hz = trajectory_cutoff_hz
        self.sigma_px, self.sigma_prior_mm = float(sigma_px), sigma_prior_mm

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "cpu", tta: bool | None = None, **kwargs
    ) -> LiftFuse:
        """A lifter trained by the sequence engine (``task: sequence``, ``input: 2d``)."""
        from mvpose.engine.sequence import load_temporal_model

        model, task = load_temporal_model(path, device)
        if task.refine:
            raise ValueError(f"{path}: a 3D refiner, not a 2D lifter (LiftFuse needs input: 2d)")

        def lift(inputs: np.ndarray, fps: float | None) -> np.ndarray:
            return task.predict(model, inputs, tta=tta, fps=fps)

        return cls(lift, root=task.root, **kwargs)

    def __call__(
        self, points_px, rig: CameraRig, confidences=None, fps: float | None = None
    ) -> LiftFuseResult:
        """``points_px (T, V, J, 2)`` raw pixels of ``rig``'s ``V`` cameras (NaN = missing),
        ``confidences (T, V, J)`` optional -> :class:`LiftFuseResult` (:meth:`lift_views`, then
        :meth:`fuse_views`)."""
        lifted = self.lift_views(points_px, rig, confidences, fps)
        return self.fuse_views(lifted, points_px, rig, confidences, fps)

    def _inputs(self, points_px, rig: CameraRig, confidences) -> tuple[np.ndarray, np.ndarray]:
        """Checked float64 pixels (NaN where missing or below ``min_confidence``) and confidences
        (0 there)."""
        px = np.asarray(points_px, dtype=np.float64)
        if px.ndim != 4 or px.shape[-1] != 2 or px.shape[1] != rig.num_views:
            raise ValueError(f"LiftFuse: expected (T, {rig.num_views}, J, 2) pixels, got {px.shape}")
        if rig.image_size is None:
            raise ValueError(
                "LiftFuse: the rig has no image sizes (the lifter's inputs are normalised by them)"
            )
        T, V, J, _ = px.shape
        conf = np.ones((T, V, J)) if confidences is None else np.asarray(confidences, dtype=np.float64)
        if conf.shape != (T, V, J):
            raise ValueError(
                f"LiftFuse: confidences {conf.shape} do not match the pixels (T, V, J) = {(T, V, J)}"
            )
        seen = np.isfinite(px).all(-1) & (conf > self.min_confidence) & np.isfinite(conf)
        return np.where(seen[..., None], px, np.nan), np.where(seen, conf, 0.0)

    def lift_views(self, points_px, rig: CameraRig, confidences=None, fps: float | None = None) -> np.ndarray:
        """Each camera's sequence through the lifter: ``(T, V, J, 3)`` mm, root-relative, in that
        camera's frame (NaN for a view's frames without any detection). Arguments as ``__call__``."""
        from mvpose.data.sequences import normalize_screen_coordinates
        from mvpose.engine.sequence_data import fill_nan_time

        px, conf = self._inputs(points_px, rig, confidences)
        seen = conf > 0
        T, V, J, _ = px.shape
        size = rig.image_size.double().numpy()
        per_view = np.full((T, V, J, 3), np.nan)
        for v in range(V):  # one whole-sequence forward per camera
            if not seen[:, v].any():
                continue
            w, h = size[v]
            x = fill_nan_time(normalize_screen_coordinates(px[:, v], w, h))
            per_view[:, v] = 1000.0 * np.asarray(self.lifter(x, fps), dtype=np.float64)
        per_view[~seen.any(-1)] = np.nan  # frames where a view sees nothing
        return per_view

    def fuse_views(
        self, lifted_camera_mm, points_px, rig: CameraRig, confidences=None, fps: float | None = None
    ) -> LiftFuseResult:
        """The geometry after the lifter: ``lifted_camera_mm (T, V, J, 3)`` (:meth:`lift_views`) rotated
        into world axes, fused, placed and corrected with the detections (module doc)."""
        px, conf = self._inputs(points_px, rig, confidences)
        r = rig.to(dtype=torch.float64)
        rel = camera_to_world_axes(torch.as_tensor(np.asarray(lifted_camera_mm, dtype=np.float64)), r)
        rel = rel - rel[..., self.root : self.root + 1, :]
        px_t, conf_t = torch.from_numpy(px), torch.from_numpy(conf)
        fused, used = fuse_root_relative(rel, conf_t, self.outlier_mm)
        tau, err = fit_translation(fused, px_t, r, conf_t, self.iterations, self.huber_px)
        if self.trajectory_cutoff_hz and fps:
            from mvpose.engine.sequence_data import robust_lowpass

            tau = torch.from_numpy(robust_lowpass(tau.numpy(), fps, self.trajectory_cutoff_hz, 150.0))
        placed = fused + tau[:, None]
        final = placed
        if self.sigma_prior_mm is not None:
            final, err = correct_with_detections(
                placed, px_t, r, conf_t, self.sigma_px, self.sigma_prior_mm, huber_px=self.huber_px
            )
        elif self.trajectory_cutoff_hz and fps:
            err = _Detections(px_t, r, conf_t, self.huber_px).reprojection(placed)[0]
        return LiftFuseResult(
            points_world_mm=final.numpy(),
            lifted_world_mm=placed.numpy(),
            root_relative_mm=fused.numpy(),
            trajectory_mm=tau.numpy(),
            per_view_mm=rel.numpy(),
            views_used=used.numpy(),
            reprojection_px=err.numpy(),
        )
