"""Batched multi-view triangulation: weighted DLT, robust (view-subset consensus), refinement.

All solves run in float64 on whole batches: no Python loops over batch, views or joints.

Shapes: ``points_2d (*, V, J, 2)`` px, ``proj (*, V, 3, 4)`` (``P = K [R | t]``, mm to px),
``weights (*, V, J)``; leading dimensions broadcast. A view whose weight is 0 or NaN, or whose
point is NaN, is ignored for that joint; a joint seen by fewer than two usable views gives NaN.

Weights scale the DLT rows (as learnable triangulation does with its confidences), so they act
like inverse standard deviations: :func:`refine_points` minimises ``sum_v w_v^2 |r_v|^2``.

Methods: the DLT solves every point's homogeneous least squares exactly (the SVD solution) with
a closed-form secular-equation solver, SVD only for the rare points where it does not converge;
the robust method finds the largest consistent subset of views (every subset for up to 6 views)
and ends with Gauss-Newton on its inliers; refinement is Levenberg-Marquardt that never raises
the cost and never steps out of the camera model's valid domain.

Implementation notes. On CPU the cost of these small problems is the fixed overhead of each
tensor operation (a few microseconds), not arithmetic, so the hot paths are written as a short,
fixed sequence of whole-batch operations in "structure of arrays" form: the entries of the
small symmetric matrices of all points are stacked on dim 0 (``(10, N)`` for a 4x4, ``(6, N)``
for a 3x3, in the order ``00 11 22 12 02 01 | 03 13 23 | 33``), so that every step is one
element-wise operation or one matrix product over all points, whatever their number. Small
problems (up to ``_SINGLE_THREAD_MAX`` observations) run single-threaded on CPU: at these sizes a
parallel region costs more than it saves, and on a loaded machine it waits a whole scheduler
time slice (milliseconds) for its second thread.
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
_F64 = torch.float64
# Unique entries of a symmetric 4x4 (row, column), in the order above.
_I = (0, 1, 2, 1, 0, 0, 0, 1, 2, 3)
_J = (0, 1, 2, 2, 2, 1, 3, 3, 3, 3)
# Cofactors of a symmetric 3x3 ``s`` in the order (00 11 22 12 02 01): ``s[a] s[b] - s[c] s[d]``.
_COF = ((1, 0, 0, 4, 5, 3), (2, 2, 1, 5, 3, 4), (3, 4, 5, 0, 1, 5), (3, 4, 5, 3, 4, 2))
# Full 3x3 (row-major) from the 6 unique entries.
_FULL = (0, 5, 4, 5, 1, 3, 4, 3, 2)


class _Consts:
    """Constant index and coefficient tensors, built once per device."""

    def __init__(self, device: torch.device) -> None:
        self.ij = torch.tensor(_I + _J, device=device)
        # Per-view normal-matrix terms from the rows (P1, P2, P3) of P for the coefficients
        # (u^2 + v^2, u, v, 1): P3 P3^T, -(P3 P1^T + P1 P3^T), -(P3 P2^T + P2 P3^T), P1 P1^T + P2 P2^T.
        C = torch.zeros(4, 3, 3, dtype=_F64)
        C[0, 2, 2] = 1.0
        C[1, 2, 0] = C[1, 0, 2] = -1.0
        C[2, 2, 1] = C[2, 1, 2] = -1.0
        C[3, 0, 0] = C[3, 1, 1] = 1.0
        # terms[s, k] = sum_ab C[k, a, b] P[a, I_s] P[b, J_s] as a map of the outer product of the
        # 12 entries of P; the fifth coefficient (1 per usable view) counts the views in row 10.
        G = torch.zeros(12, 12, 11, 5, dtype=_F64)
        for si, (i, j) in enumerate(zip(_I, _J)):
            for a in range(3):
                for b in range(3):
                    G[4 * a + i, 4 * b + j, si, :4] += C[:, a, b]
        self.terms_map = G.view(144, 55).to(device)
        bias = torch.zeros(11, 5, dtype=_F64)
        bias[10, 4] = 1.0
        self.terms_bias = bias.view(55).to(device)
        self.e4 = torch.tensor([[0.0], [0.0], [0.0], [1.0]], dtype=_F64, device=device)
        self.cof = torch.tensor(sum(_COF, ()), device=device)
        self.full = torch.tensor(_FULL, device=device)
        self.full2 = torch.tensor(_FULL + tuple(6 + i for i in _FULL), device=device)
        self.det_w = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 2.0], dtype=_F64, device=device) / 3.0
        upper = [(a, b) for a in range(4) for b in range(a, 4)]
        self.upper = torch.tensor(
            [upper.index((min(i, j), max(i, j))) for i, j in zip(_I, _J)], device=device
        )
        self.diag6 = torch.tensor([[1.0], [1.0], [1.0], [0.0], [0.0], [0.0]], dtype=_F64, device=device)
        self.zero = torch.zeros((), dtype=_F64, device=device)


_CONSTS: dict[torch.device, _Consts] = {}


def _consts(device: torch.device) -> _Consts:
    c = _CONSTS.get(device)
    if c is None:
        # Normal tensors even when the first call runs under inference_mode: inference tensors
        # cannot be saved for backward by later calls.
        with torch.inference_mode(False):
            c = _CONSTS[device] = _Consts(device)
    return c


# ----------------------------------------------------------------------------- preparation
class _Obs:
    """Observations in the internal layout.

    ``u, v (V, Bf, J)``: pixel coordinates (NaN replaced by 0); ``w (V, Bf, J)``: weights (0
    where unusable); ``valid (V, Bf, J)``: ``w > 0``; ``P``: ``(V, 3, 4)`` for one rig shared by
    the batch (``shared``) or ``(Bf, V, 3, 4)``; ``terms (..., 11, 5, V)``: per-view terms of the
    DLT normal matrix (:func:`_view_terms`); ``batch``: the broadcast leading shape (``Bf`` is its
    product). Point ``n`` of the flat ``N = Bf J`` points is sample ``n // J``, joint ``n % J``.
    """

    __slots__ = ("u", "v", "w", "P", "terms", "batch", "shared", "_valid")

    @property
    def valid(self) -> Tensor:
        if self._valid is None:
            self._valid = self.w > 0
        return self._valid


def _as64(x: Tensor, device: torch.device) -> Tensor:
    return x if (x.dtype == _F64 and x.device == device) else x.to(device=device, dtype=_F64)


def _view_terms(P: Tensor) -> Tensor:
    """Per-view terms ``(..., 11, 5, V)`` of the DLT normal matrix (see :func:`_normal_matrix`):
    quadratic in the entries of ``P``, so one product of their outer products with a constant."""
    c = _consts(P.device)
    Pf = P.reshape(-1, 12)
    terms = torch.addmm(
        c.terms_bias, (Pf[:, :, None] * Pf[:, None, :]).view(-1, 144), c.terms_map
    )  # (B V, 55)
    if P.ndim == 3:
        return terms.T.contiguous().view(11, 5, -1)
    return terms.view(-1, P.shape[-3], 55).transpose(1, 2).contiguous().view(-1, 11, 5, P.shape[-3])


def _prepare(points_2d: Tensor, proj: Tensor, weights: Tensor | None) -> _Obs:
    if points_2d.ndim < 3 or points_2d.shape[-1] != 2:
        raise ValueError(f"points_2d must have shape (*, V, J, 2), got {tuple(points_2d.shape)}")
    V, J = points_2d.shape[-3], points_2d.shape[-2]
    if proj.ndim < 3 or proj.shape[-2:] != (3, 4) or proj.shape[-3] != V:
        raise ValueError(f"proj must have shape (*, V, 3, 4) with V={V}, got {tuple(proj.shape)}")
    uv = points_2d if points_2d.dtype == _F64 else points_2d.to(_F64)
    P = _as64(proj, uv.device)
    wb: tuple[int, ...] = ()
    if weights is not None:
        w = _as64(weights, uv.device)
        if w.ndim < 2 or w.shape[-2:] != (V, J):
            raise ValueError(f"weights must have shape (*, V, J) = (*, {V}, {J}), got {tuple(w.shape)}")
        wb = w.shape[:-2]
    batch = torch.broadcast_shapes(uv.shape[:-3], P.shape[:-3], wb)
    if uv.shape[:-3] != batch:
        uv = uv.expand(*batch, V, J, 2)
    uv = uv.reshape(-1, V, J, 2)
    o = _Obs()
    o.batch = batch
    o.shared = P.ndim == 3 or all(s == 1 for s in P.shape[:-3])
    o.P = P.reshape(V, 3, 4) if o.shared else P.expand(*batch, V, 3, 4).reshape(-1, V, 3, 4)
    o.terms = _view_terms(o.P)
    # Internal layout (V, Bf, J), contiguous. Usable: finite u, v and w, and w > 0. One
    # finiteness test covers all three (t - t is 0 or NaN, and makes w NaN), then NaN and
    # negative weights become 0. The test runs on detached values, so the gradients wrt the
    # weights of unusable observations are 0, never NaN.
    uvt = uv.permute(3, 1, 0, 2).contiguous()
    ud, vd = uvt.detach() if uvt.requires_grad else uvt
    if weights is None:
        t = ud + vd
        w = ((t - t) + 1.0).nan_to_num(0.0)
    else:
        if w.shape[:-2] != batch:
            w = w.expand(*batch, V, J)
        w = w.reshape(-1, V, J).transpose(0, 1).contiguous()
        t = (ud + vd) * (w.detach() if w.requires_grad else w)
        w = (w + (t - t)).nan_to_num(0.0).clamp(min=0.0)
    o.w = w
    o._valid = None
    o.u, o.v = uvt.nan_to_num(0.0, 0.0, 0.0)
    return o


# ----------------------------------------------------------------------------- DLT
def _coef(o: _Obs, w: Tensor) -> Tensor:
    """Per-observation coefficients ``w^2 (u^2 + v^2, u, v, 1)`` and ``w > 0`` as ``(5, V, Bf, J)``."""
    wu, wv = o.u * w, o.v * w
    return torch.stack([torch.addcmul(wu * wu, wv, wv), wu * w, wv * w, w * w, w.sign()])


def _normal_matrix(o: _Obs, coef: Tensor, subsets: Tensor | None = None) -> Tensor:
    """Normal matrices ``A^T A`` of the weighted DLT rows ``w (u P3 - P1)``, ``w (v P3 - P2)``,
    SoA ``(10, N)`` (or ``(10, H N)`` for ``subsets (H, V)``: one matrix per subset of views),
    and in row 10 the number of usable views.

    Expanded per view as ``w^2 [(u^2 + v^2) P3 P3^T - u S31 - v S32 + P1 P1^T + P2 P2^T]`` with
    ``Sij = Pi Pj^T + Pj Pi^T``: one matrix product of per-view 4x4 terms with per-(view, point)
    coefficients.
    """
    K, V, Bf, J = coef.shape
    terms = o.terms  # (..., 11, 5, V)
    if subsets is not None:
        terms = (terms.unsqueeze(-3) * subsets.to(_F64)[:, None, :]).flatten(-4, -3)  # (..., 11 H, 5, V)
    R = terms.shape[-3]
    if o.shared:
        return (terms.view(R, K * V) @ coef.view(K * V, Bf * J)).view(11, -1)
    out = terms.view(Bf, R, K * V) @ coef.view(K * V, Bf, J).transpose(0, 1)  # (Bf, R, J)
    return out.view(Bf, 11, -1, J).permute(1, 2, 0, 3).reshape(11, -1)


def _solve_normal(M: Tensor) -> tuple[Tensor, Tensor]:
    """DLT solution from normal matrices ``M (10+, N)`` (SoA): ``X (3, N)`` and ``converged (N)``,
    with ``(X, 1)`` proportional to the eigenvector of the smallest eigenvalue ``l`` of the
    symmetric PSD ``M = [[S, m], [m^T, c]]``: the homogeneous least-squares (SVD) DLT solution.

    ``X(l) = -(S - l I)^-1 m`` and ``l`` is the smallest root of the secular equation
    ``f(l) = c - l + m.X(l)``, with ``f'(l) = -(1 + |X(l)|^2)``. With the adjugate identity
    ``adj(S - l I) = adj S - l (tr S I - S) + l^2 I`` and
    ``det(S - l I) = det S - l tr(adj S) + l^2 tr S - l^3``, the vector
    ``Z(l) = (adj(S - l I) m, det(S - l I))`` is a cubic in ``l`` with per-point coefficients,
    ``X = -Z[:3] / Z[3]`` and the Newton step on ``f`` is ``Z[3] (Z.(-m, c) - l Z[3]) / |Z|^2``:
    each step from ``l = 0`` (where ``f >= 0``: the Schur complement) is a handful of
    element-wise operations, and exact. The smallest eigenvalue lies far below those of ``S``
    (their ratio ``k`` is about the squared noise-to-baseline ratio), where ``f`` is nearly
    linear, so the error of ``l`` shrinks like ``k, k^3, k^7`` over three steps. ``X`` is
    evaluated after the last step, so its relative error is about the square of that step over
    the gap to the eigenvalues of ``S``. ``converged`` is False where that ratio (with a lower
    bound of the gap) is not below ``1e-6`` (extreme noise, degenerate geometry) or ``S - l I``
    may not be positive definite (``l`` not the smallest eigenvalue): the caller solves those
    by SVD.
    """
    c = _consts(M.device)
    N = M.shape[1]
    S6, m, cc, _ = M.split((6, 3, 1, M.shape[0] - 10))
    p = S6.index_select(0, c.cof).view(2, 2, 6, N).prod(1)
    cof = p[0] - p[1]
    SC = torch.cat([S6, cof])  # (12, N)
    Sm, a0 = (SC.index_select(0, c.full2).view(2, 3, 3, N) * m).sum(2)  # S m, adj(S) m
    sums = SC.view(4, 3, N).sum(1)  # tr S, ., tr adj S, .
    tr, e1 = sums[0:1], sums[2:3]
    det = c.det_w @ (S6 * cof)
    # Z(l) = A0 - l (A1 - l (A2 - l e4)), Z = (adj(S - l) m, det(S - l)); K = (-m, c)
    A0, A1, A2, K = torch.cat([a0, det[None], torch.addcmul(-Sm, tr, m), e1, m, tr, -m, cc]).view(4, 4, N)
    # three Newton steps on f from l = 0: l += d (K.Z - l d) / |Z|^2, d = Z[3]
    lam = det * (K * A0).sum(0) / (A0 * A0).sum(0)
    for _ in range(2):
        Z = _zpoly(A0, A1, A2, c.e4, lam)
        d = Z[3]
        step = d * torch.addcmul((K * Z).sum(0), lam, d, value=-1.0) / (Z * Z).sum(0)
        lam = lam + step
    Z = _zpoly(A0, A1, A2, c.e4, lam)
    X = Z[:3] / -Z[3]
    # (last step) / (gap to the spectrum of S, bounded below by det/e1 - l) < 1e-6; strict, so
    # that a singular S (det = 0) never passes
    e1 = A1[3]
    converged = step.abs() * e1 < 1e-6 * torch.addcmul(det, lam, e1, value=-1.0)
    return X, converged


def _zpoly(A0: Tensor, A1: Tensor, A2: Tensor, e4: Tensor, lam: Tensor) -> Tensor:
    """``A0 - l (A1 - l (A2 - l e4))`` (Horner)."""
    return torch.addcmul(
        A0, lam, torch.addcmul(A1, lam, torch.addcmul(A2, lam, e4, value=-1.0), value=-1.0), value=-1.0
    )


def _dlt_svd(uv: Tensor, P: Tensor, w: Tensor) -> Tensor:
    """Reference path: SVD of the weighted DLT matrix per point. ``uv (N, V, 2)``, ``P (N, V, 3, 4)``,
    ``w (N, V)`` -> ``(N, 3)``. Used for the rare points where the fast solver does not converge."""
    A = (uv[..., :, None] * P[..., 2:3, :] - P[..., :2, :]) * w[..., None, None]
    _, _, vh = torch.linalg.svd(A.flatten(-3, -2))
    x = vh[..., -1, :]
    return x[..., :3] / x[..., 3:]


def _dlt(o: _Obs, w: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Weighted DLT of prepared observations (``w (V, Bf, J)`` overrides ``o.w``):
    ``X (3, Bf J)`` (NaN where fewer than two usable views) and ``enough (Bf J)``."""
    if w is None:
        w = o.w
    M = _normal_matrix(o, _coef(o, w))
    X, converged = _solve_normal(M)
    enough = M[10] > 1.5
    ok = converged & enough
    if not bool(ok.all()):
        X = _dlt_fallback(o, X, w, enough & ~converged)
        X = X.masked_fill(~enough, float("nan"))
    return X, enough


def _dlt_fallback(o: _Obs, X: Tensor, w: Tensor, redo: Tensor) -> Tensor:
    """Solve the points ``redo (N)`` by SVD (observations of ``o``, weights ``w (V, Bf, J)``)."""
    idx = redo.nonzero()[:, 0]
    if idx.numel() == 0:
        return X
    V, Bf, J = w.shape
    b, j = idx // J, idx % J
    uv = torch.stack([o.u, o.v], -1)[:, b, j]  # (V, K, 2)
    P = o.P[None].expand(idx.numel(), V, 3, 4) if o.shared else o.P[b]
    Xs = _dlt_svd(uv.transpose(0, 1), P, w[:, b, j].T)
    return X.index_copy(1, idx, Xs.T.to(X.dtype))


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
    o = _prepare(points_2d, proj, weights)
    X, _ = _dlt(o)
    return _points_out(X, o)


def _points_out(X: Tensor, o: _Obs) -> Tensor:
    """``X (3, Bf J)`` -> ``(*batch, J, 3)``."""
    J = o.w.shape[-1]
    return X.T.reshape(*o.batch, J, 3)


def _views_out(mask: Tensor, o: _Obs) -> Tensor:
    """``(V, Bf, J)`` -> ``(*batch, V, J)``."""
    V, _, J = mask.shape
    return mask.transpose(0, 1).reshape(*o.batch, V, J)


# ----------------------------------------------------------------------------- projection
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


def _project_q(o: _Obs, X: Tensor) -> Tensor:
    """Homogeneous projections ``(V, 3, M)`` of ``X (3, M)``, ``M = H Bf J`` (columns ordered
    hypothesis, sample, joint)."""
    Q = o.P
    if o.shared:
        V = Q.shape[0]
        return torch.addmm(Q[:, :, 3].reshape(3 * V, 1), Q[:, :, :3].reshape(3 * V, 3), X).view(V, 3, -1)
    Bf, V = Q.shape[:2]
    J = o.w.shape[-1]
    Xb = X.view(3, -1, Bf, J).permute(2, 0, 1, 3).reshape(Bf, 1, 3, -1)  # (Bf, 1, 3, H J)
    x = Q[..., :3] @ Xb + Q[..., 3:]  # (Bf, V, 3, H J)
    return x.view(Bf, V, 3, -1, J).permute(1, 2, 3, 0, 4).reshape(V, 3, -1)


# ----------------------------------------------------------------------------- Gauss-Newton
def _sym3_solve(H6: Tensor, g: Tensor) -> Tensor:
    """``H^-1 g`` for symmetric ``H6 (6, N)`` (SoA) and ``g (3, N)``, by cofactors."""
    c = _consts(H6.device)
    p = H6.index_select(0, c.cof).view(2, 2, 6, -1).prod(1)
    cof = p[0] - p[1]
    det = c.det_w @ (H6 * cof)
    return (cof.index_select(0, c.full).view(3, 3, -1) * g).sum(1) / det


def _gn_terms(o: _Obs) -> Tensor:
    """Per-view terms ``(..., 10, 8 V)`` of the Gauss-Newton system of the pinhole reprojection
    error: rows ``H (6) | g (3) | cost``, columns (view, the 8 coefficients of :func:`_gn_eval`).

    With ``p = (x0, x1) / z`` the projection, ``r = p - obs`` and ``a = w / z``, the Jacobian rows
    are ``(P1 - p_u P3) / z`` and ``(P2 - p_v P3) / z``, so ``H = sum_v a^2 [(|p|^2) P3 P3^T
    - p_u S31 - p_v S32 + P1 P1^T + P2 P2^T]`` (the DLT terms, at the projection),
    ``g = sum_v a w [r_u P1 + r_v P2 - (p.r) P3]`` and ``cost = sum_v w^2 |r|^2``."""
    P3 = o.P[..., :3]  # (..., V, 3, 3)
    lead, V = P3.shape[:-3], P3.shape[-3]
    out = P3.new_zeros(*lead, 10, V, 8)
    out[..., :6, :, :4] = o.terms[..., :6, :4, :].transpose(-1, -2)
    out[..., 6:9, :, 4:7] = P3.movedim(-1, -3)  # [a, v, r] = P[v, r, a]
    out[..., 9, :, 7] = 1.0
    return out.flatten(-2)


def _gn_eval(o: _Obs, gn_terms: Tensor, obs: Tensor, w: Tensor, X: Tensor, full: bool = True):
    """Gauss-Newton system of ``sum_v w^2 |pi(P_v X) - obs_v|^2`` at ``X (3, N)`` for the pinhole
    cameras of ``o`` (``obs (V, 2, N)``, ``w (V, 1, N)``): ``HgC (10, N)`` (``H`` SoA 6, ``g`` 3,
    cost), or only the cost ``(1, N)`` when not ``full``; and the depths ``z (V, 1, N)``."""
    x = _project_q(o, X)  # (V, 3, N)
    z = x[:, 2:]
    p = x[:, :2] / z
    wr = (p - obs) * w
    k7 = (wr * wr).sum(1, keepdim=True)
    if not full:
        return k7.sum(0), z
    a = w / z
    k3 = a * a
    kp = k3 * p
    kg = a * wr
    coef = torch.cat(
        [(kp * p).sum(1, keepdim=True), kp, k3, kg, -(kg * p).sum(1, keepdim=True), k7], 1
    )  # (V, 8, N)
    V, _, N = coef.shape
    if o.shared:
        return gn_terms @ coef.view(8 * V, N), z
    Bf = gn_terms.shape[0]
    HgC = gn_terms @ coef.view(8 * V, Bf, -1).transpose(0, 1)  # (Bf, 10, J)
    return HgC.transpose(0, 1).reshape(10, N), z


def _gauss_newton_pinhole(
    o: _Obs, X: Tensor, w: Tensor, iterations: int = 2, converge: bool = False
) -> Tensor:
    """Damped Gauss-Newton on the pinhole reprojection error of ``X (3, N)`` with weights
    ``w (V, Bf, J)``. A step is kept only where it lowers the cost and keeps every used
    observation in front of its camera; otherwise the point stays and its damping grows. Runs
    ``iterations`` steps, or with ``converge`` up to ``iterations`` and stops once no step
    predicts a cost decrease above ``1e-12`` of the cost."""
    V = w.shape[0]
    c = _consts(X.device)
    gn_terms = _gn_terms(o)
    obs = torch.stack([o.u, o.v], 1).view(V, 2, -1)
    wv = w.reshape(V, 1, -1)
    unused = wv == 0
    HgC, _ = _gn_eval(o, gn_terms, obs, wv, X)
    mu = torch.full_like(X[0], 1e-9)
    for it in range(iterations):
        last = it == iterations - 1 and not converge
        g, cost = HgC[6:9], HgC[9]
        step = _sym3_solve(HgC[:6] * torch.addcmul(torch.ones_like(c.diag6), c.diag6, mu), g)
        # converged: every proposed step predicts a negligible cost decrease
        if converge and not bool(((step * g).sum(0) > 1e-12 * cost).any()):
            break
        X_new = X - step
        HgC_new, z = _gn_eval(o, gn_terms, obs, wv, X_new, full=not last)
        better = (HgC_new[-1] < cost) & ((z > 0) | unused).all(0)[0]
        X = torch.where(better, X_new, X)
        if last:
            break
        HgC = torch.where(better, HgC_new, HgC)
        mu = torch.where(better, mu * 0.1, mu * 100.0)
    return X


# ----------------------------------------------------------------------------- robust
_SUBSETS: dict[tuple[int, torch.device], Tensor] = {}


def _proper_subsets(V: int, device: torch.device) -> Tensor:
    """Every subset of at least two and at most ``V - 1`` views, as a boolean ``(H, V)`` mask."""
    key = (V, device)
    S = _SUBSETS.get(key)
    if S is None:
        rows = [[v in s for v in range(V)] for k in range(2, V) for s in itertools.combinations(range(V), k)]
        S = _SUBSETS[key] = torch.tensor(rows, dtype=torch.bool, device=device).view(-1, V)
    return S


def _view_pairs(V: int, max_pairs: int | None, generator: torch.Generator | None, device) -> Tensor:
    """View pairs (all of them, or ``max_pairs`` drawn with ``generator``) as a ``(H, V)`` mask."""
    pairs = torch.tensor(list(itertools.combinations(range(V), 2)), dtype=torch.long)
    if max_pairs is not None and len(pairs) > max_pairs:
        pairs = pairs[torch.randperm(len(pairs), generator=generator)[:max_pairs]]
    S = torch.zeros(len(pairs), V, dtype=torch.bool)
    S.scatter_(1, pairs, True)
    return S.to(device)


@torch.no_grad()
def _errors2(o: _Obs, X: Tensor) -> Tensor:
    """Squared pixel errors ``(V, M)`` of points ``X (3, M)`` (``M`` a multiple of the points of
    ``o``; inf behind a camera), without gradient (they only decide inliers)."""
    V = o.w.shape[0]
    x = _project_q(o, X)
    x0, x1, z = x.unbind(1)
    N = o.u.numel() // V
    uo, vo = o.u.reshape(V, 1, N), o.v.reshape(V, 1, N)
    ex = torch.addcmul(x0.view(V, -1, N), uo, z.view(V, -1, N), value=-1.0)
    ey = torch.addcmul(x1.view(V, -1, N), vo, z.view(V, -1, N), value=-1.0)
    zz = z * z
    e2 = torch.addcmul(ex * ex, ey, ey).view(V, -1) / zz.masked_fill_(z <= 0, 0.0)
    return e2.nan_to_num_(float("inf"))


def _select(o: _Obs, idx: Tensor) -> _Obs:
    """The sub-problem of the points ``idx`` (flat indices into ``Bf J``)."""
    V, Bf, J = o.w.shape
    b, j = idx // J, idx % J
    s = _Obs()
    s.shared, s._valid, s.batch = o.shared, None, (idx.numel(),)
    if o.shared:
        s.P, s.terms = o.P, o.terms
        s.u, s.v, s.w = (t[:, b, j].view(V, 1, -1) for t in (o.u, o.v, o.w))
    else:
        s.P, s.terms = o.P[b], o.terms[b]
        s.u, s.v, s.w = (t[:, b, j].view(V, -1, 1) for t in (o.u, o.v, o.w))
    return s


def _best_subset(s: _Obs, S: Tensor, thr2: float) -> tuple[Tensor, Tensor, Tensor]:
    """Consensus over the subsets of views ``S (H, V)`` for the points of ``s``: ``X (3, K)``,
    inliers ``(V, K)`` and ``ok (K)`` (a consistent subset of at least two views exists).

    Every subset proposes its DLT point; a subset counts only if it is consistent (all its usable
    views are inliers of its own point: error < threshold, in front of the camera). Among
    consistent subsets, closed ones come first (no other usable view is an inlier of the point;
    otherwise the larger subset is the better hypothesis, and if that one is not consistent the
    point is suspect: e.g. a pair of an inlier and an outlier that happens to lie near its
    epipolar line), then larger ones, then the smallest truncated squared error over all usable
    views (MSAC). The inliers are those of the winning point."""
    V = s.w.shape[0]
    K = s.u.numel() // V
    H = S.shape[0]
    Sf = S.to(_F64)
    Xh, _ = _solve_normal(_normal_matrix(s, _coef(s, s.w), S))  # (3, H K), approximate where not converged
    e2 = _errors2(s, Xh).view(V, H, K)
    validf = s.valid.reshape(V, 1, K).to(_F64)
    inl = torch.lt(e2, thr2, out=torch.empty_like(e2)) * validf  # float 0/1 masks: fast
    cost = (e2 * (1.0 / thr2)).clamp_(max=1.0) * validf
    own_in = (inl * Sf.T[:, :, None]).sum(0)  # (H, K)
    size = Sf @ validf.view(V, K)  # usable views in the subset
    viol = size - own_in
    extra = inl.sum(0) - own_in
    # lexicographic (at least two views, consistent, closed, size, -cost) in one float
    base = 4.0 * (V + 1) ** 2
    few = (2.0 - size).clamp(min=0.0)
    score = ((few * base + viol) * base + extra) * -base + size * (V + 1) - cost.sum(0)
    _, best = score.nan_to_num_(float("-inf"), float("-inf"), float("-inf")).max(0)  # (K,)
    X = Xh.view(3, H, K).gather(1, best.view(1, 1, K).expand(3, 1, K)).view(3, K)
    inliers = inl.gather(1, best.view(1, 1, K).expand(V, 1, K)).view(V, K) > 0
    ok = (viol.gather(0, best.view(1, K)) == 0).view(K) & (few.gather(0, best.view(1, K)) == 0).view(K)
    return X, inliers, ok


def _best_pair(s: _Obs, S: Tensor, thr2: float) -> tuple[Tensor, Tensor, Tensor]:
    """View-pair MSAC for many views: most inliers, then the smallest truncated squared error;
    then one local optimisation (DLT on the inliers, inliers recomputed from it)."""
    V = s.w.shape[0]
    K = s.u.numel() // V
    H = S.shape[0]
    Xh, _ = _solve_normal(_normal_matrix(s, _coef(s, s.w), S))
    e2 = _errors2(s, Xh).view(V, H, K)
    validf = s.valid.reshape(V, 1, K).to(_F64)
    inl = torch.lt(e2, thr2, out=torch.empty_like(e2)) * validf
    cost = (e2 * (1.0 / thr2)).clamp_(max=1.0) * validf
    score = inl.sum(0) * float(V + 1) - cost.sum(0)
    _, best = score.nan_to_num_(float("-inf"), float("-inf"), float("-inf")).max(0)
    inliers = inl.gather(1, best.view(1, 1, K).expand(V, 1, K)).view(s.w.shape) > 0
    for _ in range(2):
        X, _ = _dlt(s, s.w * inliers)
        inliers = (_errors2(s, X) < thr2).view(s.w.shape) & s.valid
    return X, inliers.view(V, K), inliers.sum(0).view(K) >= 2


def _robust(
    o: _Obs, threshold_px: float, max_pairs: int | None, generator, iterations: int = 2, converge=False
):
    """Core of :func:`triangulate_robust` on prepared observations: ``X (3, N)``, inliers
    ``(V, Bf, J)``; ends with Gauss-Newton on the inliers (see :func:`_gauss_newton_pinhole`)."""
    V, Bf, J = o.w.shape
    N = Bf * J
    thr2 = float(threshold_px) ** 2
    # 1. all usable views: done where they all agree (most points)
    X, enough = _dlt(o)
    inliers = (_errors2(o, X) < thr2).view(V, Bf, J) & o.valid
    ok = enough.view(Bf, J)
    redo = (inliers != o.valid).any(0) & ok
    # 2. the others: consensus over subsets of views (pairs for many views)
    idx = redo.view(N).nonzero()[:, 0]
    if idx.numel():
        sub = _select(o, idx)
        if V <= 6:
            X_s, inl_s, ok_s = _best_subset(sub, _proper_subsets(V, o.w.device), thr2)
        else:
            X_s, inl_s, ok_s = _best_pair(sub, _view_pairs(V, max_pairs, generator, o.w.device), thr2)
        X = X.index_copy(1, idx, X_s)
        inliers = inliers.view(V, N).index_copy(1, idx, inl_s).view(V, Bf, J)
        ok = ok.view(N).index_copy(0, idx, ok_s).view(Bf, J)
    X = _gauss_newton_pinhole(o, X, o.w * inliers, iterations, converge)
    X = X.masked_fill(~ok.view(1, N), float("nan"))
    return X, inliers & ok


def triangulate_robust(
    points_2d: Tensor,
    proj: Tensor,
    weights: Tensor | None = None,
    threshold_px: float = 15.0,
    max_pairs: int | None = 200,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Outlier-rejecting triangulation by consensus over subsets of views, batched.

    With ``V <= 6`` views every subset of at least two views is a hypothesis (11 for 4 views);
    all are solved at once (weighted DLT) and each is scored in every usable view by its
    reprojection error: the largest subset whose views are all inliers of its own point
    (error < ``threshold_px``, in front of the camera) wins, preferring subsets no other view
    agrees with, then the smallest truncated squared error over all views (MSAC). With more
    views, pairs of views are the hypotheses (all of them, or ``max_pairs`` drawn with
    ``generator``), scored by inlier count then truncated error, and the inlier set is
    re-estimated once. The point is then refined on its inliers by a few Gauss-Newton steps on the
    reprojection error (the maximum-likelihood point under Gaussian pixel noise).

    Args:
        points_2d: ``(*, V, J, 2)`` undistorted px in the frame of ``proj``.
        proj: ``(*, V, 3, 4)``.
        weights: ``(*, V, J)`` or ``None``.
        threshold_px: inlier threshold on the reprojection error (px). The default suits
            detector noise of a few pixels; about 4 sigma of the pixel noise is a good choice.

    Returns:
        points ``(*, J, 3)`` mm (NaN where no two views agree) and inlier mask ``(*, V, J)``.
    """
    o = _prepare(points_2d, proj, weights)
    X, inliers = _robust(o, threshold_px, max_pairs, generator)
    return _points_out(X, o), _views_out(inliers, o)


# ----------------------------------------------------------------------------- refinement
def refine_points(
    points_3d: Tensor,
    points_2d: Tensor,
    project_fn: Callable[[Tensor], tuple[Tensor, ...]],
    weights: Tensor | None = None,
    iterations: int = 10,
    damping: float = 1e-6,
) -> Tensor:
    """Batched Levenberg-Marquardt on the weighted reprojection error of each point.

    Minimises ``sum_v w_v^2 |project_fn(X)_v - x_v|^2`` independently for every point (3
    unknowns). A step is kept only where it lowers the cost and keeps every used observation
    valid (see ``project_fn``); otherwise the point stays and its damping grows. Iterations stop
    early once every point has converged (Gauss-Newton from a DLT start takes 2 to 4), so the
    cost never increases and a point never leaves the domain where its camera model is valid.

    Args:
        points_3d: initial points ``(*, J, 3)`` mm (NaN stays NaN).
        points_2d: observations ``(*, V, J, 2)`` px in the frame of ``project_fn``.
        project_fn: ``X (*, J, 3) -> (pixels (*, V, J, 2), d pixels / d X (*, V, J, 2, 3))``, or
            a triple with a validity mask ``(*, V, J)`` last: False where the model does not
            apply (behind the camera, outside the monotonic domain of the lens distortion); e.g.
            ``lambda X: rig.project_with_jacobian(X, return_valid=True)``.
        weights: ``(*, V, J)``; unusable observations (NaN, weight 0) are ignored.
        iterations: maximum number of iterations.
        damping: initial Levenberg-Marquardt damping (relative to the diagonal).

    Returns:
        refined points ``(*, J, 3)`` float64.
    """
    return _refine_points(points_3d, points_2d, project_fn, weights, iterations, damping)


def _refine_points(points_3d, points_2d, project_fn, weights, iterations, damping) -> Tensor:
    x_obs = points_2d.to(_F64)
    X0 = points_3d.to(_F64)
    lead = torch.broadcast_shapes(
        X0.shape[:-2], x_obs.shape[:-3], weights.shape[:-2] if weights is not None else ()
    )
    V, J = x_obs.shape[-3], x_obs.shape[-2]
    x_obs = x_obs.expand(*lead, V, J, 2)
    if weights is None:
        w = torch.ones((), dtype=_F64, device=x_obs.device).expand(*lead, V, J)
    else:
        w = _as64(weights, x_obs.device).expand(*lead, V, J)
    # 0 where unusable (NaN pixel or weight, weight <= 0), as in _prepare
    xd = x_obs.detach()
    t = (xd[..., 0] + xd[..., 1]) * w.detach()
    w = (w + (t - t)).nan_to_num(0.0).clamp(min=0.0)
    used = w > 0
    x_obs = x_obs.nan_to_num(0.0, 0.0, 0.0)
    X = X0.expand(*lead, J, 3)
    finite = torch.isfinite(X).all(-1, keepdim=True)
    X = torch.where(finite, X, 0.0)
    c = _consts(X.device)

    def evaluate(Xq: Tensor) -> tuple[Tensor, Tensor]:
        out = project_fn(Xq)
        uv, jac = out[0].to(_F64), out[1].to(_F64)
        good = torch.isfinite(uv).all(-1)
        if len(out) > 2:
            good = good & out[2]
        # weighted Jacobian rows and residuals (*, V, J, 2, 3 + 1) -> SoA (4, 2 V, *, J), then the
        # 10 unique entries of their Gram matrix: H (6), g = J^T r (3), cost (1)
        A = (torch.cat([jac, (uv - x_obs)[..., None]], -1) * w[..., None, None]).nan_to_num(0.0, 0.0, 0.0)
        A = A.movedim((-1, -4, -2), (0, 1, 2)).reshape(4, 2 * V, *lead, J)
        G = torch.cat([(A[a:] * A[a]).sum(1) for a in range(4)])  # upper triangle, row by row
        return G.index_select(0, c.upper), (good | ~used).all(-2)

    HgC, _ = evaluate(X)
    mu = torch.full_like(HgC[9], damping)
    for _ in range(iterations):
        diag = c.diag6.view(6, *([1] * mu.ndim))
        H6 = HgC[:6] * torch.addcmul(torch.ones_like(diag), diag, mu)
        g, cost = HgC[6:9], HgC[9]
        step = _sym3_solve(H6.reshape(6, -1), g.reshape(3, -1)).view(3, *mu.shape).nan_to_num(0.0, 0.0, 0.0)
        # converged: every proposed step predicts a negligible cost decrease
        if not bool(((step * g).sum(0) > 1e-10 * cost).any()):
            break
        X_new = X - step.movedim(0, -1)
        HgC_new, ok = evaluate(X_new)
        better = (HgC_new[9] < cost) & ok
        X = torch.where(better[..., None], X_new, X)
        HgC = torch.where(better, HgC_new, HgC)
        mu = torch.where(better, mu * 0.1, mu * 10.0).clamp(1e-12, 1e12)
    return torch.where(finite, X, float("nan"))


# ----------------------------------------------------------------------------- entry point
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
        ``"robust"``: consensus over subsets of views rejecting outlier views, then Gauss-Newton
        on the inliers (:func:`triangulate_robust`).
        ``"refine"``: DLT, then Levenberg-Marquardt on the reprojection error (with the lens
        distortion when called through :meth:`CameraRig.triangulate`).
        ``"robust+refine"``: robust, then refinement on its inliers.

    Args:
        points_2d: ``(*, V, J, 2)`` px (undistorted, in the frame of ``proj``).
        proj: ``(*, V, 3, 4)``.
        weights: ``(*, V, J)`` or ``None``; 0/NaN marks a missing observation.
        threshold_px: inlier threshold of the robust methods.
        iterations: maximum LM iterations of the refine methods.
        return_views: also return the mask of views used ``(*, V, J)``.
        rig, points_2d_raw: set by ``CameraRig.triangulate`` so refinement uses the full
            camera model on the raw (distorted) pixels.

    Returns:
        ``(*, J, 3)`` float64 mm, NaN where fewer than two usable views; with ``return_views``
        a tuple ``(points, views_used)``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown triangulation method {method!r}; expected one of {METHODS}")
    return _triangulate(
        points_2d,
        proj,
        weights,
        method,
        threshold_px,
        iterations,
        return_views,
        rig,
        points_2d_raw,
        generator,
    )


def _triangulate(
    points_2d, proj, weights, method, threshold_px, iterations, return_views, rig, points_2d_raw, generator
):
    o = _prepare(points_2d, proj, weights)
    if method == "robust+refine" and rig is None:
        # pinhole: refinement on the inliers is robust's own Gauss-Newton, run to convergence
        X, used = _robust(o, threshold_px, 200, generator, iterations, converge=True)
        return (_points_out(X, o), _views_out(used, o)) if return_views else _points_out(X, o)
    if method.startswith("robust"):
        X, used = _robust(o, threshold_px, 200, generator)
    else:
        X, enough = _dlt(o)
        used = None
        if return_views or method == "refine":
            V, Bf, J = o.w.shape
            used = o.valid & enough.view(1, Bf, J)
    if method.endswith("refine"):
        w = o.w * used
        Xp = _points_out(X, o)
        if rig is not None:
            project = lambda Y: rig.project_with_jacobian(Y, return_valid=True)  # noqa: E731
            X = refine_points(Xp, points_2d_raw, project, _views_out(w, o), iterations=iterations)
            X = X.reshape(-1, 3).T
        else:
            X = _gauss_newton_pinhole(o, X, w, iterations, converge=True)
    Xo = _points_out(X, o)
    return (Xo, _views_out(used, o)) if return_views else Xo
