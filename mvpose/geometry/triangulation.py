"""Batched multi-view triangulation: weighted DLT, robust (view-pair consensus), refinement.

All solves run in float64 on whole batches: no Python loops over batch, views or joints.

Shapes: ``points_2d (*, V, J, 2)`` px, ``proj (*, V, 3, 4)`` (``P = K [R | t]``, mm to px),
``weights (*, V, J)``; leading dimensions broadcast. A view whose weight is 0 or NaN, or whose
point is NaN, is ignored for that joint; a joint seen by fewer than two usable views gives NaN.

Weights scale the DLT rows (as learnable triangulation does with its confidences), so they act
like inverse standard deviations: :func:`refine_points` minimises ``sum_v w_v^2 |r_v|^2``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "METHODS",
    "triangulate",
    "triangulate_dlt",
    "triangulate_robust",
    "refine_points",
    "project_pinhole",
    "project_pinhole_with_jacobian",
    "reprojection_error",
]

METHODS = ("dlt", "robust", "refine", "robust+refine")


def _prepare(points_2d: Tensor, proj: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Float64, broadcast; returns ``uv (*,V,J,2)`` (0 where unusable), ``P (*,V,3,4)``,
    ``w (*,V,J)`` (0 where unusable) and ``valid (*,V,J)``."""
    if points_2d.shape[-1] != 2 or points_2d.ndim < 3:
        raise ValueError(f"points_2d must have shape (*, V, J, 2), got {tuple(points_2d.shape)}")
    if proj.shape[-2:] != (3, 4) or proj.shape[-3] != points_2d.shape[-3]:
        raise ValueError(
            f"proj must have shape (*, V, 3, 4) with V={points_2d.shape[-3]}, got {tuple(proj.shape)}"
        )
    uv = points_2d.to(torch.float64)
    P = proj.to(device=uv.device, dtype=torch.float64)
    if weights is None:
        w = torch.ones((), dtype=torch.float64, device=uv.device).expand(uv.shape[:-1])
    else:
        w = weights.to(device=uv.device, dtype=torch.float64)
        if w.shape[-2:] != uv.shape[-3:-1]:
            raise ValueError(
                f"weights must have shape (*, V, J) = (*, {tuple(uv.shape[-3:-1])}), got {tuple(w.shape)}"
            )
    batch = torch.broadcast_shapes(uv.shape[:-3], P.shape[:-3], w.shape[:-2])
    uv = uv.expand(*batch, *uv.shape[-3:])
    w = w.expand(*batch, *w.shape[-2:])
    # One finiteness test covers u, v and w; a NaN/inf anywhere, or w <= 0, drops the observation.
    valid = torch.isfinite(w * (uv[..., 0] + uv[..., 1])) & (w > 0)
    return uv.nan_to_num(0.0, 0.0, 0.0), P, w.nan_to_num(0.0, 0.0, 0.0) * valid, valid


# Symmetric 3x3 matrices in "structure of arrays" form: the 6 entries (00, 01, 02, 11, 12, 22)
# stacked on dim 0, the points on the remaining dims. Each helper below is a handful of whole-array
# ops, whatever the number of points: on CPU, small-tensor op overhead is what costs.
_COF = torch.tensor([3, 2, 1, 0, 1, 0, 5, 4, 4, 5, 2, 3, 4, 1, 2, 2, 0, 1, 4, 5, 3, 2, 4, 1])
_FULL = torch.tensor([0, 1, 2, 1, 3, 4, 2, 4, 5])
# Entries of the symmetric 4x4 normal matrix kept, in this order: M3 as (00, 01, 02, 11, 12, 22),
# then m = (03, 13, 23), then c = 33 (row-major flat indices).
_SYM4 = (0, 1, 2, 5, 6, 10, 3, 7, 11, 15)


def _index(t: Tensor, device: torch.device) -> Tensor:
    return t if device.type == "cpu" else t.to(device)


def _adj6(S6: Tensor) -> tuple[Tensor, Tensor]:
    """Adjugate ``(3, 3, *)`` and determinant ``(*)`` of symmetric matrices ``S6 (6, *)``."""
    g = S6.index_select(0, _index(_COF, S6.device)).unflatten(0, (4, 6))
    cof = g[0] * g[1] - g[2] * g[3]
    det = (S6[:3] * cof[:3]).sum(0)
    return cof.index_select(0, _index(_FULL, S6.device)).unflatten(0, (3, 3)), det


def _mv(adj: Tensor, x: Tensor) -> Tensor:
    """``adj (3, 3, *) @ x (3, *)`` -> ``(3, *)``."""
    return (adj * x.unsqueeze(0)).sum(1)


def _inv_sym3(S: Tensor) -> Tensor:
    """Inverse of symmetric ``S (*, 3, 3)`` by cofactors (closed form, batched, differentiable)."""
    S6 = torch.stack([S[..., 0, 0], S[..., 0, 1], S[..., 0, 2], S[..., 1, 1], S[..., 1, 2], S[..., 2, 2]])
    adj, det = _adj6(S6)
    return adj.movedim(0, -1).movedim(0, -1) / det[..., None, None]


def _matvec(A: Tensor, x: Tensor) -> Tensor:
    return (A @ x.unsqueeze(-1)).squeeze(-1)


def _smallest_eigvec_dehomogenised(M: Tensor) -> tuple[Tensor, Tensor]:
    """DLT solution from the normal matrix ``M (10, *)`` (its unique entries in ``_SYM4`` order).

    Returns ``X (3, *)`` and ``converged (*)``, with ``(X, 1)`` proportional to the eigenvector of
    the smallest eigenvalue of the symmetric PSD ``M``: the homogeneous least-squares (SVD) DLT
    solution.

    With ``M = [[M3, m], [m^T, c]]`` the eigenpair satisfies ``X(l) = -(M3 - l I)^-1 m`` and the
    secular equation ``f(l) = c - l + m.X(l) = 0``, ``f'(l) = -(1 + |X(l)|^2)``. Expanding
    ``(M3 - l I)^-1`` in powers of ``l`` with ``X0 = -M3^-1 m``, ``y1 = M3^-1 X0``,
    ``y2 = M3^-1 y1`` and the symmetry of ``M3`` gives the quartic
    ``f(l) ~ f0 - l (1 + |X0|^2) - l^2 X0.y1 - l^3 |y1|^2 - l^4 y1.y2``, whose root Newton finds
    from ``l = 0`` (where ``f >= 0``: the Schur complement). Then ``X`` is solved exactly at
    that ``l``, and one exact Newton step on ``f`` with a last solve removes the truncation
    error. The smallest eigenvalue lies far below those of ``M3`` (their ratio is the squared
    noise-to-baseline ratio), so this matches an SVD of the DLT matrix to rounding for
    well-posed points. Points where it does not converge (``converged`` False: extreme noise,
    degenerate geometry) are left to the caller, which solves them by SVD.
    """
    S6, m, cc = M[:6], M[6:9], M[9]
    adj, det = _adj6(S6)
    x0 = -_mv(adj, m) / det
    y1 = _mv(adj, x0) / det
    y2 = _mv(adj, y1) / det
    f0 = cc + (m * x0).sum(0)
    g1 = 1 + (x0 * x0).sum(0)
    g2 = (x0 * y1).sum(0)
    g3 = (y1 * y1).sum(0)
    g4 = (y1 * y2).sum(0)
    lam = f0 / g1
    for _ in range(2):
        fl = f0 - lam * (g1 + lam * (g2 + lam * (g3 + lam * g4)))
        lam = lam + fl / (g1 + lam * (2 * g2 + lam * (3 * g3 + lam * 4 * g4)))
    diag = torch.zeros_like(S6[:, :1])
    diag[[0, 3, 5]] = 1.0
    for _ in range(2):
        adj_l, det_l = _adj6(S6 - lam * diag)
        x = -_mv(adj_l, m) / det_l
        norm2 = 1 + (x * x).sum(0)
        step = (cc - lam + (m * x).sum(0)) / norm2
        lam = lam + step
    # Converged: the last Newton step is negligible (relative to the eigenvalue, or at the
    # rounding floor of f, which sums terms of size c), the eigenvalue is the smallest (M3 - lam I
    # stays positive definite) and everything is finite.
    tol = 1e-7 * lam.abs() + 1e-12 * cc / norm2
    converged = (step.abs() <= tol) & (det_l > 0) & (adj_l[0, 0] > 0) & (det.abs() > 0) & torch.isfinite(lam)
    return x, converged


def _dlt_svd(uv: Tensor, P: Tensor, w: Tensor) -> Tensor:
    """Reference path: SVD of the weighted DLT matrix per point. ``uv (N, V, 2)``, ``P (N, V, 3, 4)``,
    ``w (N, V)`` -> ``(N, 3)``. Used for the rare points where the fast solver does not converge."""
    A = (uv[..., :, None] * P[..., 2:3, :] - P[..., :2, :]) * w[..., None, None]
    _, _, vh = torch.linalg.svd(A.flatten(-3, -2))
    x = vh[..., -1, :]
    return x[..., :3] / x[..., 3:]


def _normal_matrix(uv: Tensor, P: Tensor, w: Tensor) -> Tensor:
    """``A^T A`` as ``(10, *, J)`` (its unique entries in ``_SYM4`` order) of the weighted
    DLT rows ``w (u P3 - P1)``, ``w (v P3 - P2)``.

    Expanded per view as ``w^2 [(u^2 + v^2) P3 P3^T - u S31 - v S32 + P1 P1^T + P2 P2^T]`` with
    ``Sij = Pi Pj^T + Pj Pi^T``: one matrix product of per-view 4x4 terms with per-(view, joint)
    coefficients. Pixel coordinates are first centred on each view's principal point
    (``u' = u - cx``, ``P1' = P1 - cx P3``), which leaves every row unchanged and limits
    cancellation.
    """
    p3 = P[..., 2, :3]
    centre = (P[..., :2, :3] * p3[..., None, :]).sum(-1) / (p3 * p3).sum(-1, keepdim=True)  # (*, V, 2)
    P12 = P[..., :2, :] - centre[..., None] * P[..., 2:3, :]
    P1, P2, P3 = P12[..., 0, :], P12[..., 1, :], P[..., 2, :]

    sym = torch.tensor(_SYM4, device=P.device)

    def outer(x: Tensor, y: Tensor) -> Tensor:
        return (x[..., :, None] * y[..., None, :]).flatten(-2).index_select(-1, sym)

    terms = torch.stack(
        [outer(P3, P3), -(outer(P3, P1) + outer(P1, P3)), -(outer(P3, P2) + outer(P2, P3)),
         outer(P1, P1) + outer(P2, P2)],
        dim=-1,
    )  # (*, V, 10, 4)
    terms = terms.transpose(-3, -2).flatten(-2)  # (*, 10, 4V)
    u = uv[..., 0] - centre[..., 0:1]
    v = uv[..., 1] - centre[..., 1:2]
    w2 = w * w
    wu, wv = w2 * u, w2 * v
    coef = torch.stack([wu * u + wv * v, wu, wv, w2], dim=-2).flatten(-3, -2)  # (*, 4V, J)
    if terms.ndim == 2:
        # One rig for the whole batch: a single GEMM over all (sample, joint) columns.
        cols = coef.movedim(-2, 0).reshape(coef.shape[-2], -1)
        return (terms @ cols).reshape(10, *coef.shape[:-2], coef.shape[-1])
    return (terms @ coef).movedim(-2, 0)


def triangulate_dlt(points_2d: Tensor, proj: Tensor, weights: Tensor | None = None) -> Tensor:
    """Confidence-weighted linear triangulation (homogeneous DLT, the SVD solution) in float64.

    Args:
        points_2d: ``(*, V, J, 2)`` px in the frame of ``proj`` (undistorted).
        proj: ``(*, V, 3, 4)`` projection matrices.
        weights: ``(*, V, J)`` confidences (row weights); ``None`` means all ones.

    Returns:
        ``(*, J, 3)`` float64 mm; NaN where fewer than two usable views.

    Example:
        >>> P = torch.eye(3, 4).expand(2, 3, 4).clone(); P[1, 0, 3] = -1.0
        >>> X = torch.tensor([[0.5, 0.2, 4.0]])
        >>> uv = project_pinhole(X, P)
        >>> torch.allclose(triangulate_dlt(uv, P), X.double())
        True
    """
    uv, P, w, valid = _prepare(points_2d, proj, weights)
    X, converged = _smallest_eigvec_dehomogenised(_normal_matrix(uv, P, w))
    X = X.movedim(0, -1)
    enough = valid.sum(-2) >= 2
    redo = enough & ~converged
    if bool(redo.any()):
        idx = redo.nonzero(as_tuple=True)  # (*batch, j) indices of the points to solve by SVD
        b_idx, j_idx = idx[:-1], idx[-1]
        uv_r = uv.movedim(-2, -3)[idx]  # (N, V, 2)
        w_r = w.movedim(-1, -2)[idx]
        P_r = P.expand(*uv.shape[:-3], *P.shape[-3:])[b_idx]
        X = X.index_put(idx, _dlt_svd(uv_r, P_r, w_r))
    return X.masked_fill(~enough[..., None], float("nan"))


def project_pinhole(points_3d: Tensor, proj: Tensor) -> Tensor:
    """Project ``points_3d (*, J, 3)`` with ``proj (*, V, 3, 4)`` to pixels ``(*, V, J, 2)``."""
    P = proj.to(points_3d.dtype) if points_3d.is_floating_point() else proj
    Xh = torch.cat([points_3d, torch.ones_like(points_3d[..., :1])], -1).unsqueeze(-3)
    x = Xh @ P.transpose(-1, -2)
    return x[..., :2] / x[..., 2:3]


def project_pinhole_with_jacobian(points_3d: Tensor, proj: Tensor) -> tuple[Tensor, Tensor]:
    """Pixels ``(*, V, J, 2)`` and their Jacobian wrt the 3D point ``(*, V, J, 2, 3)``."""
    P = proj.to(points_3d.dtype)
    Xh = torch.cat([points_3d, torch.ones_like(points_3d[..., :1])], -1).unsqueeze(-3)
    x = Xh @ P.transpose(-1, -2)
    z = x[..., 2:3]
    uv = x[..., :2] / z
    P_ = P[..., None, :, :3]  # (*, V, 1, 3, 3)
    jac = (P_[..., :2, :] - uv[..., :, None] * P_[..., 2:3, :]) / z[..., None]
    return uv, jac


def reprojection_error(points_3d: Tensor, points_2d: Tensor, proj: Tensor) -> Tensor:
    """Pixel distance ``(*, V, J)`` between ``points_3d (*, J, 3)`` projected by ``proj`` and
    ``points_2d (*, V, J, 2)`` (NaN where either is NaN). For raw pixels of distorted cameras
    use :meth:`mvpose.geometry.CameraRig.reprojection_error`."""
    return (project_pinhole(points_3d.to(torch.float64), proj) - points_2d.to(torch.float64)).norm(dim=-1)


def _view_pairs(V: int, max_pairs: int | None, generator: torch.Generator | None, device) -> Tensor:
    pairs = torch.tensor(list(itertools.combinations(range(V), 2)), dtype=torch.long, device=device)
    if max_pairs is not None and len(pairs) > max_pairs:
        pick = torch.randperm(len(pairs), generator=generator)[:max_pairs]
        pairs = pairs[pick.to(device)]
    return pairs


def triangulate_robust(
    points_2d: Tensor,
    proj: Tensor,
    weights: Tensor | None = None,
    threshold_px: float = 15.0,
    max_pairs: int | None = 200,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Outlier-rejecting triangulation by view-pair consensus (MSAC over all pairs), batched.

    Every pair of views (all of them, or ``max_pairs`` drawn with ``generator`` when there are
    more) proposes a point; each proposal is scored in every usable view by its reprojection
    error: most inliers (error < ``threshold_px``) first, then the smallest truncated squared
    error. The best proposal's inliers are triangulated together (weighted DLT), the inlier set
    is recomputed from that point, and the point is solved once more.

    Args:
        points_2d: ``(*, V, J, 2)`` undistorted px in the frame of ``proj``.
        proj: ``(*, V, 3, 4)``.
        weights: ``(*, V, J)`` or ``None``.
        threshold_px: inlier threshold on the reprojection error.

    Returns:
        points ``(*, J, 3)`` mm (NaN where no two views agree) and inlier mask ``(*, V, J)``.
    """
    uv, P, w, valid = _prepare(points_2d, proj, weights)
    V = uv.shape[-3]
    pairs = _view_pairs(V, max_pairs, generator, uv.device)  # (H, 2)
    # Hypotheses: (*, H, 2, J, 2) points, (*, H, 2, 3, 4) matrices.
    uv_h = uv[..., pairs, :, :]
    w_h = w[..., pairs, :]
    X_h = triangulate_dlt(uv_h, P[..., pairs, :, :], w_h)  # (*, H, J, 3)
    err = reprojection_error(X_h, uv.unsqueeze(-4), P.unsqueeze(-4))  # (*, H, V, J)
    thr2 = float(threshold_px) ** 2
    valid_h = valid.unsqueeze(-3)
    inl = valid_h & (err < threshold_px)
    cost = torch.where(valid_h, (err * err).clamp(max=thr2).nan_to_num(thr2), 0.0).sum(-2) / thr2  # (*, H, J)
    score = inl.sum(-2) * float(V + 1) - cost
    score = torch.where(torch.isfinite(X_h).all(-1), score, float("-inf"))
    best = score.argmax(dim=-2, keepdim=True)  # (*, 1, J)
    inliers = inl.gather(-3, best.unsqueeze(-2).expand(*inl.shape[:-3], 1, V, inl.shape[-1])).squeeze(-3)
    X = triangulate_dlt(uv, P, w * inliers)
    for _ in range(1):  # one re-estimation of the inlier set from the consensus point
        e = reprojection_error(X, uv, P)
        inliers = valid & (e < threshold_px)
        X = triangulate_dlt(uv, P, w * inliers)
    ok = inliers.sum(-2) >= 2
    X = torch.where(ok[..., None], X, float("nan"))
    return X, inliers & ok[..., None, :]


def _lm_normal_equations(res: Tensor, jac: Tensor, w2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``H = sum w^2 J^T J (*, J, 3, 3)``, ``g = sum w^2 J^T r (*, J, 3)``, cost ``(*, J)``."""
    wj = jac * w2[..., None, None]
    H = torch.einsum("...vjri,...vjrk->...jik", wj, jac)
    g = torch.einsum("...vjri,...vjr->...ji", wj, res)
    cost = (w2 * (res * res).sum(-1)).sum(-2)
    return H, g, cost


def refine_points(
    points_3d: Tensor,
    points_2d: Tensor,
    project_fn: Callable[[Tensor], tuple[Tensor, Tensor]],
    weights: Tensor | None = None,
    iterations: int = 10,
    damping: float = 1e-6,
) -> Tensor:
    """Batched Levenberg-Marquardt on the weighted reprojection error of each point.

    Minimises ``sum_v w_v^2 |project_fn(X)_v - x_v|^2`` independently for every point (3
    unknowns), with a per-point damping that grows when a step does not lower the cost.

    Args:
        points_3d: initial points ``(*, J, 3)`` mm (NaN stays NaN).
        points_2d: observations ``(*, V, J, 2)`` px in the frame of ``project_fn``.
        project_fn: ``X (*, J, 3) -> (pixels (*, V, J, 2), d pixels / d X (*, V, J, 2, 3))``; e.g.
            ``CameraRig.project_with_jacobian`` (with distortion) or a pinhole from matrices.
        weights: ``(*, V, J)``; unusable observations (NaN, weight 0) are ignored.

    Returns:
        refined points ``(*, J, 3)`` float64.
    """
    x_obs = points_2d.to(torch.float64)
    w = torch.ones(x_obs.shape[:-1], dtype=torch.float64, device=x_obs.device) if weights is None else weights
    w = w.to(device=x_obs.device, dtype=torch.float64)
    valid = torch.isfinite(x_obs).all(-1) & torch.isfinite(w) & (w > 0)
    w2 = torch.where(valid, w * w, 0.0)
    x_obs = torch.where(valid[..., None], x_obs, 0.0)
    X = points_3d.to(torch.float64)
    finite = torch.isfinite(X).all(-1, keepdim=True)
    X = torch.where(finite, X, 0.0)

    def evaluate(Xq: Tensor):
        uv, jac = project_fn(Xq)
        uv, jac = uv.to(torch.float64), jac.to(torch.float64)
        res = torch.where(valid[..., None], uv - x_obs, 0.0)
        jac = torch.where(valid[..., None, None], jac, 0.0)
        return _lm_normal_equations(res.nan_to_num(), jac.nan_to_num(), w2)

    H, g, cost = evaluate(X)
    mu = torch.full_like(cost, damping)
    for _ in range(iterations):
        diag = H.diagonal(dim1=-2, dim2=-1)
        Hd = H + torch.diag_embed(diag * mu[..., None] + 1e-12)
        step = _matvec(_inv_sym3(Hd), g)
        X_new = X - step.nan_to_num()
        H_new, g_new, cost_new = evaluate(X_new)
        better = cost_new < cost
        X = torch.where(better[..., None], X_new, X)
        H = torch.where(better[..., None, None], H_new, H)
        g = torch.where(better[..., None], g_new, g)
        cost = torch.where(better, cost_new, cost)
        mu = torch.where(better, mu * 0.1, mu * 10.0).clamp(1e-12, 1e12)
    return torch.where(finite, X, float("nan"))


def triangulate(
    points_2d: Tensor,
    proj: Tensor,
    weights: Tensor | None = None,
    method: str = "dlt",
    *,
    threshold_px: float = 15.0,
    iterations: int = 10,
    return_views: bool = False,
    rig=None,
    points_2d_raw: Tensor | None = None,
    generator: torch.Generator | None = None,
):
    """Triangulate joints seen by several calibrated views.

    Methods:
        ``"dlt"``: confidence-weighted homogeneous DLT (one batched float64 solve).
        ``"robust"``: view-pair consensus rejecting outlier views (:func:`triangulate_robust`).
        ``"refine"``: DLT, then Levenberg-Marquardt on the reprojection error (with the lens
        distortion when called through :meth:`CameraRig.triangulate`).
        ``"robust+refine"``: robust, then refinement on its inliers.

    Args:
        points_2d: ``(*, V, J, 2)`` px (undistorted, in the frame of ``proj``).
        proj: ``(*, V, 3, 4)``.
        weights: ``(*, V, J)`` or ``None``; 0/NaN marks a missing observation.
        threshold_px: inlier threshold of the robust methods.
        iterations: LM iterations of the refine methods.
        return_views: also return the mask of views used ``(*, V, J)``.
        rig, points_2d_raw: set by ``CameraRig.triangulate`` so refinement uses the full
            camera model on the raw (distorted) pixels.

    Returns:
        ``(*, J, 3)`` float64 mm, NaN where fewer than two usable views; with ``return_views``
        a tuple ``(points, views_used)``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown triangulation method {method!r}; expected one of {METHODS}")
    if method.startswith("robust"):
        X, used = triangulate_robust(points_2d, proj, weights, threshold_px=threshold_px, generator=generator)
    else:
        uv, P, w, used = _prepare(points_2d, proj, weights)
        X = triangulate_dlt(uv, P, w)
        used = used & torch.isfinite(X).all(-1).unsqueeze(-2)
    if method.endswith("refine"):
        w = used.to(torch.float64)
        if weights is not None:
            w = w * weights.to(torch.float64).nan_to_num(0.0)
        if rig is not None:
            X = refine_points(X, points_2d_raw, rig.project_with_jacobian, w, iterations=iterations)
        else:
            P64 = proj.to(torch.float64)
            X = refine_points(X, points_2d, lambda Y: project_pinhole_with_jacobian(Y, P64), w, iterations=iterations)
    return (X, used) if return_views else X
