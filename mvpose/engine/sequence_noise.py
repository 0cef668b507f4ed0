"""A 3D error model for training refiners: per-joint bias and covariance, AR(1) temporal correlation
and outliers, fitted from a model's own ``(prediction, ground truth)`` sequences.

For every joint ``j`` the error sequence is ``e_t = b_j + L_j u_t (+ outlier)``, where ``u_t`` is a
unit AR(1) process per axis (``u_t = rho_j u_{t-1} + sqrt(1 - rho_j^2) z_t``, ``z_t ~ N(0, I)``),
``L_j L_j^T = C_j`` the joint's error covariance, and an outlier (probability ``outlier_rate_j`` per
frame) adds a displacement of uniform direction and length uniform in
``[0.5, 1.5] * outlier_mm_j``.

Fitting (:meth:`NoiseModel3D.fit`) is robust: a residual is an outlier when its distance from the
per-axis median, scaled by the per-axis MAD (x 1.4826), exceeds ``outlier_sigma``; bias and covariance
come from the inliers, ``rho`` from pairs of consecutive inlier frames (lag-1 autocorrelation of the
standardised residuals, averaged over the axes), ``outlier_mm`` is the mean outlier distance from the
bias. Everything is vectorised over joints; units are mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["NoiseModel3D", "fit_noise_model"]


@dataclass
class NoiseModel3D:
    """Per-joint 3D error model (module doc). Arrays: ``bias (J, 3)``, ``cov (J, 3, 3)`` mm,
    ``rho (J,)``, ``outlier_rate (J,)``, ``outlier_mm (J,)``."""

    bias: np.ndarray
    cov: np.ndarray
    rho: np.ndarray
    outlier_rate: np.ndarray
    outlier_mm: np.ndarray

    def __post_init__(self) -> None:
        self.bias = np.asarray(self.bias, dtype=np.float64)
        J = self.bias.shape[0]
        self.cov = np.asarray(self.cov, dtype=np.float64)
        self.rho = np.broadcast_to(np.asarray(self.rho, dtype=np.float64), (J,)).copy()
        self.outlier_rate = np.broadcast_to(np.asarray(self.outlier_rate, dtype=np.float64), (J,)).copy()
        self.outlier_mm = np.broadcast_to(np.asarray(self.outlier_mm, dtype=np.float64), (J,)).copy()
        if self.bias.shape != (J, 3) or self.cov.shape != (J, 3, 3):
            raise ValueError(
                f"NoiseModel3D: bias (J, 3) and cov (J, 3, 3), got {self.bias.shape}, {self.cov.shape}"
            )
        if not (np.abs(self.rho) < 1).all():
            raise ValueError(f"NoiseModel3D: rho must lie in (-1, 1), got {self.rho}")
        if not ((self.outlier_rate >= 0) & (self.outlier_rate <= 1)).all():
            raise ValueError("NoiseModel3D: outlier_rate must lie in [0, 1]")

    @property
    def num_joints(self) -> int:
        return self.bias.shape[0]

    @property
    def std_mm(self) -> np.ndarray:
        """``(J, 3)`` per-axis standard deviations of the Gaussian part."""
        return np.sqrt(np.einsum("jii->ji", self.cov))

    # -------------------------------------------------------------------------------- builders
    @classmethod
    def isotropic(
        cls,
        num_joints: int,
        std_mm: float,
        bias_mm: float = 0.0,
        rho: float = 0.0,
        outlier_rate: float = 0.0,
        outlier_mm: float = 100.0,
    ) -> NoiseModel3D:
        """The same isotropic error for every joint (``bias_mm`` on every axis)."""
        J = int(num_joints)
        return cls(
            bias=np.full((J, 3), float(bias_mm)),
            cov=np.eye(3)[None].repeat(J, 0) * float(std_mm) ** 2,
            rho=np.full(J, float(rho)),
            outlier_rate=np.full(J, float(outlier_rate)),
            outlier_mm=np.full(J, float(outlier_mm)),
        )

    @classmethod
    def fit(cls, pred, gt, valid=None, outlier_sigma: float = 4.5) -> NoiseModel3D:
        """Fit to ``pred``/``gt`` sequences ``(S, T, J, 3)`` (or ``(T, J, 3)``) mm; ``valid (S, T)`` or
        ``(S, T, J)`` bool (NaN residuals are invalid too)."""
        r = np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64)
        if r.ndim == 3:
            r = r[None]
        if r.ndim != 4 or r.shape[-1] != 3:
            raise ValueError(f"NoiseModel3D.fit: expected (S, T, J, 3) sequences, got {r.shape}")
        S, T, J, _ = r.shape
        ok = np.isfinite(r).all(-1)
        if valid is not None:
            v = np.asarray(valid, dtype=bool)
            v = v.reshape(v.shape + (1,) * (3 - v.ndim)) if v.ndim < 3 else v
            ok &= np.broadcast_to(v, ok.shape)
        if ok.sum(axis=(0, 1)).min() < 8:
            raise ValueError("NoiseModel3D.fit: need at least 8 valid residuals per joint")
        flat = np.where(ok[..., None], r, np.nan).reshape(S * T, J, 3)
        med = np.nanmedian(flat, axis=0)  # (J, 3)
        mad = 1.4826 * np.nanmedian(np.abs(flat - med), axis=0)
        mad = np.maximum(mad, 1e-6)
        dist = np.linalg.norm((r - med) / mad, axis=-1)  # (S, T, J)
        inl = ok & (dist <= outlier_sigma)
        out = ok & ~inl
        w = inl[..., None].astype(np.float64)
        n = np.maximum(w.sum(axis=(0, 1)), 1.0)  # (J, 1)
        r0 = np.where(ok[..., None], r, 0.0)
        bias = (r0 * w).sum(axis=(0, 1)) / n
        c = np.where(inl[..., None], r0 - bias, 0.0)
        cov = np.einsum("stji,stjk->jik", c, c) / np.maximum(n[:, :, None] - 1, 1.0)
        std = np.sqrt(np.maximum(np.einsum("jii->ji", cov), 1e-12))
        z = c / std  # standardised inlier residuals (0 elsewhere)
        pair = (inl[:, 1:] & inl[:, :-1]).astype(np.float64)  # (S, T-1, J)
        num = (z[:, 1:] * z[:, :-1] * pair[..., None]).sum(axis=(0, 1))  # (J, 3)
        den = np.sqrt(
            (z[:, 1:] ** 2 * pair[..., None]).sum(axis=(0, 1))
            * (z[:, :-1] ** 2 * pair[..., None]).sum(axis=(0, 1))
        )
        rho = np.clip(np.where(den > 0, num / np.maximum(den, 1e-12), 0.0).mean(-1), -0.99, 0.99)
        n_ok = np.maximum(ok.sum(axis=(0, 1)), 1)
        rate = out.sum(axis=(0, 1)) / n_ok
        d_out = np.where(out, np.linalg.norm(r0 - bias, axis=-1), 0.0).sum(axis=(0, 1))
        size = np.where(out.sum(axis=(0, 1)) > 0, d_out / np.maximum(out.sum(axis=(0, 1)), 1), 100.0)
        return cls(bias=bias, cov=cov, rho=rho, outlier_rate=rate, outlier_mm=size)

    # -------------------------------------------------------------------------------- sampling
    def sample(self, shape: tuple[int, ...], rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Error sequences ``(*shape, J, 3)`` mm; ``shape`` ends with the time axis ``T``."""
        g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        shape = tuple(int(s) for s in shape)
        if not shape:
            raise ValueError("NoiseModel3D.sample: shape must include the time axis")
        J, T = self.num_joints, shape[-1]
        z = g.standard_normal((*shape, J, 3))
        a = self.rho[:, None]
        s = np.sqrt(1.0 - a**2)
        u = np.empty_like(z)
        u[..., 0, :, :] = z[..., 0, :, :]
        for t in range(1, T):  # AR(1) recursion over time, vectorised over everything else
            u[..., t, :, :] = a * u[..., t - 1, :, :] + s * z[..., t, :, :]
        L = np.linalg.cholesky(self.cov + 1e-9 * np.eye(3))
        e = np.einsum("jik,...jk->...ji", L, u) + self.bias
        if (self.outlier_rate > 0).any():
            hit = g.random((*shape, J)) < self.outlier_rate
            d = g.standard_normal((*shape, J, 3))
            d /= np.linalg.norm(d, axis=-1, keepdims=True)
            length = g.uniform(0.5, 1.5, (*shape, J)) * self.outlier_mm
            e += np.where(hit[..., None], d * length[..., None], 0.0)
        return e

    def apply(self, gt, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``gt (..., T, J, 3)`` mm plus a sampled error sequence."""
        gt = np.asarray(gt, dtype=np.float64)
        return gt + self.sample(gt.shape[:-2], rng)

    # -------------------------------------------------------------------------------- files
    def to_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k).copy() for k in ("bias", "cov", "rho", "outlier_rate", "outlier_mm")}

    def save(self, path: str | Path) -> Path:
        from mvpose.data.sequences import save_npz

        return save_npz(path, **self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> NoiseModel3D:
        from mvpose.data.sequences import load_npz

        return cls(**load_npz(path, required=("bias", "cov", "rho", "outlier_rate", "outlier_mm")))


def fit_noise_model(path: str | Path, outlier_sigma: float = 4.5) -> NoiseModel3D:
    """Fit from an npz with ``pred`` and ``gt`` ``(S, T, J, 3)`` mm (and optional ``valid``), or load
    a saved model (keys ``bias``, ``cov``...)."""
    from mvpose.data.sequences import load_npz

    path = Path(path)
    data = load_npz(path)
    if "bias" in data:
        return NoiseModel3D(**{k: data[k] for k in ("bias", "cov", "rho", "outlier_rate", "outlier_mm")})
    if "pred" not in data or "gt" not in data:
        from mvpose.data.sequences import SequenceFileError

        raise SequenceFileError(
            path, "pred", "expected arrays 'pred' and 'gt' (S, T, J, 3) mm, or a saved model"
        )
    return NoiseModel3D.fit(data["pred"], data["gt"], data.get("valid"), outlier_sigma)
