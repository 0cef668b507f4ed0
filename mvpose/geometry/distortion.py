"""Lens distortion models on normalised image coordinates.

Two models share one code path. With ``x, y`` normalised coordinates (``X/Z, Y/Z``),
``r2 = x^2 + y^2`` and ``radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3``:

``"opencv"``, ``dist = [k1, k2, p1, p2, k3]`` (``cv2.projectPoints``)::

    x_d = x radial + 2 p1 x y + p2 (r2 + 2 x^2)
    y_d = y radial + p1 (r2 + 2 y^2) + 2 p2 x y

``"h36m"``, ``dist = [k1, k2, p0, p1, k3]`` with Human3.6M's tangential pair in its stored order
(3d-pose-baseline's ``project_point_radial``)::

    x_d = x radial + p0 x y + p1 (r2 + x^2)
    y_d = y radial + p1 x y + p0 (r2 + y^2)

The radial parts agree; the tangential parts have no exact OpenCV equivalent (no factor 2 on
the cross term, ``x^2`` instead of ``2 x^2``). Both are written as
``x_d = x radial + s pa x y + pb (r2 + c x^2)``, ``y_d = y radial + s pb x y + pa (r2 + c y^2)``
with ``(s, c) = (2, 2)`` for OpenCV and ``(1, 1)`` for Human3.6M, ``(pa, pb) = (dist[2], dist[3])``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MODELS", "distort", "distort_with_jacobian", "undistort"]

MODELS = ("opencv", "h36m")
_SC = {"opencv": (2.0, 2.0), "h36m": (1.0, 1.0)}


def _check_model(model: str) -> tuple[float, float]:
    try:
        return _SC[model]
    except KeyError:
        raise ValueError(f"unknown distortion model {model!r}; expected one of {MODELS}") from None


def distort_with_jacobian(xy: Tensor, dist: Tensor, model: str = "opencv") -> tuple[Tensor, Tensor]:
    """Distort normalised points and return the Jacobian of the map.

    Args:
        xy: undistorted normalised coordinates ``(*, 2)``.
        dist: coefficients ``(*, 5)`` broadcastable to ``xy``'s batch shape.
        model: ``"opencv"`` or ``"h36m"``.

    Returns:
        ``xy_d (*, 2)`` and ``d xy_d / d xy`` as ``(*, 2, 2)``.
    """
    s, c = _check_model(model)
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, pa, pb, k3 = dist.unbind(-1)
    x2, y2, xy_ = x * x, y * y, x * y
    r2 = x2 + y2
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    g = k1 + r2 * (2 * k2 + 3 * k3 * r2)  # d radial / d r2
    xd = x * radial + s * pa * xy_ + pb * (r2 + c * x2)
    yd = y * radial + s * pb * xy_ + pa * (r2 + c * y2)
    cross = 2 * xy_ * g
    j00 = radial + 2 * x2 * g + s * pa * y + 2 * (1 + c) * pb * x
    j01 = cross + s * pa * x + 2 * pb * y
    j10 = cross + s * pb * y + 2 * pa * x
    j11 = radial + 2 * y2 * g + s * pb * x + 2 * (1 + c) * pa * y
    jac = torch.stack([torch.stack([j00, j01], -1), torch.stack([j10, j11], -1)], -2)
    return torch.stack([xd, yd], -1), jac


def distort(xy: Tensor, dist: Tensor, model: str = "opencv") -> Tensor:
    """Distort normalised points ``(*, 2)`` with coefficients ``(*, 5)``; see the module docstring."""
    s, c = _check_model(model)
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, pa, pb, k3 = dist.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xy_ = x * y
    xd = x * radial + s * pa * xy_ + pb * (r2 + c * x * x)
    yd = y * radial + s * pb * xy_ + pa * (r2 + c * y * y)
    return torch.stack([xd, yd], -1)


def undistort(xy_d: Tensor, dist: Tensor, model: str = "opencv", iterations: int = 8) -> Tensor:
    """Invert :func:`distort` by Newton's method (quadratic convergence, fixed iteration count).

    Starts at ``xy_d`` and takes ``iterations`` damped Newton steps with the closed-form 2x2
    inverse of the Jacobian. Where the Jacobian is singular (far outside the calibrated field of
    view) the step is skipped, so the result stays finite. Differentiable.

    Args:
        xy_d: distorted normalised coordinates ``(*, 2)``.
        dist: coefficients ``(*, 5)`` broadcastable to ``xy_d``.

    Returns:
        undistorted normalised coordinates ``(*, 2)``.
    """
    xy = xy_d
    for _ in range(iterations):
        f, jac = distort_with_jacobian(xy, dist, model)
        r = f - xy_d
        a, b, c_, d = jac[..., 0, 0], jac[..., 0, 1], jac[..., 1, 0], jac[..., 1, 1]
        det = a * d - b * c_
        ok = det.abs() > 1e-12
        det = torch.where(ok, det, torch.ones_like(det))
        dx = (d * r[..., 0] - b * r[..., 1]) / det
        dy = (a * r[..., 1] - c_ * r[..., 0]) / det
        step = torch.stack([dx, dy], -1) * ok[..., None]
        xy = xy - step
    return xy
