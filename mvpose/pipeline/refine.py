"""The multi-view + temporal hybrid: refine per-frame 3D (triangulation, or an algebraic/volumetric
model's output) with a temporal refiner.

A pose sequence ``(T, J, 3)`` world mm is split into a root-relative pose and a trajectory:

* the **pose** goes through a refiner trained by the sequence engine (``task: sequence``, ``input: 3d``:
  VideoPose3D / SRNet / TGraphNet ... on 3D inputs). With ``model.prefilter_hz`` the input is first
  cleaned (samples farther than ``prefilter_outlier_mm`` from a 5-frame running median replaced by
  it) and low-passed (zero-phase Butterworth), and the network predicts a correction of that;
* the **trajectory** is estimated separately: the same cleaning and low-pass on the input, and the
  translation that fits the refined pose to it (least squares over all joints, so the root's own
  noise is averaged with the other joints').

The refiner learns what the per-frame errors look like from training sequences that carry them: the
real outputs of the multi-view model on rendered sequences, triangulations of noisy detections, or
ground truth plus a :class:`NoiseModel3D` fitted to the model's own errors (per-joint bias and
covariance, AR(1) temporal correlation, outliers; :meth:`NoiseModel3D.fit` on ``(prediction, GT)``
pairs). ``configs/synthetic/seq_hybrid.yaml`` runs the whole chain on the synthetic studio:
renders -> backbone -> volumetric model -> noise model -> refiner training -> scoring before/after.

Example:
    >>> path = "runs/synthetic_seq_hybrid/checkpoints/last.pth"
    >>> refiner = TemporalRefiner.from_checkpoint(path)  # doctest: +SKIP
    >>> refined = refiner(points_world_mm)  # (T, 17, 3) -> (T, 17, 3)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mvpose.engine.sequence_noise import NoiseModel3D, fit_noise_model

__all__ = [
    "NoiseModel3D",
    "fit_noise_model",
    "smooth_root_trajectory",
    "TemporalRefiner",
    "absolute_errors",
    "score_refinement",
]


def smooth_root_trajectory(
    root_mm: np.ndarray, fps: float, cutoff_hz: float = 6.0, outlier_mm: float = 150.0, median_frames: int = 5
) -> np.ndarray:
    """A root trajectory ``(T, 3)`` mm cleaned of outliers (farther than ``outlier_mm`` from the running
    median of ``median_frames``) and low-passed (zero-phase Butterworth, 4th order, ``cutoff_hz``)."""
    from mvpose.engine.sequence_data import robust_lowpass

    x = np.asarray(root_mm, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"smooth_root_trajectory: expected (T, 3) mm, got {x.shape}")
    return robust_lowpass(x, fps, cutoff_hz, outlier_mm, median_frames)


class TemporalRefiner:
    """Refine world ``(T, J, 3)`` mm sequences with a trained sequence checkpoint (module doc).

    Args:
        model, task: a refiner and its :class:`~mvpose.engine.sequence_models.SequenceTask`
            (:func:`mvpose.engine.sequence.load_temporal_model`).
        fps: frame rate of the sequences (for the trajectory filter).
        root_cutoff_hz, root_outlier_mm: the trajectory: outlier rejection and low-pass of the input
            (default cut-off: the refiner's ``model.prefilter_hz``, else 6 Hz) to which the refined
            pose is fitted by a translation (least squares over the joints).
        trajectory: ``"fit"`` (above) or ``"root"``: the cleaned, low-passed root joint itself, when the
            per-frame root is much better than the other joints (a volumetric model centred on a
            known root).
        tta: average with the mirrored sequence (default: the checkpoint's evaluation setting).
    """

    def __init__(
        self,
        model,
        task,
        fps: float = 50.0,
        root_cutoff_hz: float | None = None,
        root_outlier_mm: float = 150.0,
        tta: bool | None = None,
        trajectory: str = "fit",
    ):
        if not task.refine:
            raise ValueError("TemporalRefiner: the checkpoint is a lifter (2D input), not a 3D refiner")
        self.model, self.task, self.fps = model, task, float(fps)
        if root_cutoff_hz is None:  # the refiner's own pre-filter cut-off, else 6 Hz
            root_cutoff_hz = task.cfg.model.prefilter_hz or 6.0
        self.root_cutoff_hz, self.root_outlier_mm, self.tta = float(root_cutoff_hz), root_outlier_mm, tta
        if trajectory not in ("fit", "root"):
            raise ValueError(f"TemporalRefiner: trajectory must be 'fit' or 'root', got {trajectory!r}")
        self.trajectory_mode = trajectory

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", **kwargs) -> TemporalRefiner:
        from mvpose.engine.sequence import load_temporal_model

        model, task = load_temporal_model(path, device)
        return cls(model, task, **kwargs)

    def pose(self, points_mm: np.ndarray) -> np.ndarray:
        """The refined root-relative pose ``(T, J, 3)`` mm (root row 0 or the refiner's)."""
        x = np.asarray(points_mm, dtype=np.float64)
        from mvpose.engine.sequence_data import fill_nan_time

        return self.task.predict(self.model, fill_nan_time(x), self.tta, fps=self.fps) * 1000.0

    def trajectory(self, points_mm: np.ndarray, pose_mm: np.ndarray) -> np.ndarray:
        """The root trajectory ``(T, 3)`` mm that places the refined root-relative ``pose_mm``: the
        translation fitting it (least squares over all joints, ``"fit"``) to the cleaned, low-passed
        input, or that input's root joint (``"root"``)."""
        from mvpose.engine.sequence_data import robust_lowpass

        if self.trajectory_mode == "root":
            r = self.task.root
            return robust_lowpass(points_mm[:, r], self.fps, self.root_cutoff_hz, self.root_outlier_mm)
        smooth = robust_lowpass(points_mm, self.fps, self.root_cutoff_hz, self.root_outlier_mm)
        return (smooth - pose_mm).mean(axis=1)

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        """``(T, J, 3)`` world mm (NaN allowed: interpolated over time first) -> refined ``(T, J, 3)``."""
        x = np.asarray(points_mm, dtype=np.float64)
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ValueError(f"TemporalRefiner: expected (T, J, 3) mm, got {x.shape}")
        from mvpose.engine.sequence_data import fill_nan_time

        x = fill_nan_time(x)
        rel = self.pose(x)
        rel = rel - rel[:, self.task.root : self.task.root + 1]
        return rel + self.trajectory(x, rel)[:, None]


def absolute_errors(pred_mm: np.ndarray, gt_mm: np.ndarray, root: int = 0) -> dict[str, float]:
    """``MPJPE`` (absolute), ``MPJPE-rel`` (root-relative), ``MPJVE`` (absolute velocities), ``root``
    (trajectory error) in mm, over sequences ``(..., T, J, 3)``."""
    from mvpose.metrics import mpjpe, mpjve

    p = torch.as_tensor(np.asarray(pred_mm, dtype=np.float64))
    q = torch.as_tensor(np.asarray(gt_mm, dtype=np.float64))
    ok = torch.isfinite(p).all(-1) & torch.isfinite(q).all(-1)
    p, q = torch.nan_to_num(p), torch.nan_to_num(q)
    return {
        "MPJPE": float(mpjpe(p, q, ok)),
        "MPJPE-rel": float(mpjpe(p, q, ok, root=root)),
        "MPJVE": float(mpjve(p, q, ok)),
        "root": float((p[..., root, :] - q[..., root, :]).norm(dim=-1)[ok[..., root]].mean()),
    }


def _frame_weighted(seqs: list[np.ndarray], gts: list[np.ndarray], root: int) -> dict[str, float]:
    per = [absolute_errors(s, g, root) for s, g in zip(seqs, gts)]
    n = np.array([len(s) for s in seqs], dtype=np.float64)
    out = {k: float(np.average([p[k] for p in per], weights=n)) for k in per[0] if k != "MPJVE"}
    out["MPJVE"] = float(np.average([p["MPJVE"] for p in per], weights=n - 1))  # never across clips
    return out


def score_refinement(refiner: TemporalRefiner, clips) -> dict:
    """Absolute errors (:func:`absolute_errors`, frame-weighted over ``clips``, velocities within each
    clip) of the per-frame input (``before``), of the refiner (``after``) and of its classical part
    alone (``filter_only``: the same cleaning and low-pass on every joint, no network), and the
    ratios ``mpjpe_reduction`` (1 - after / before) and ``mpjve_ratio`` (before / after).

    ``clips``: :class:`~mvpose.engine.sequence_data.Clip` with world 3D ``inputs`` and ``target`` mm.
    """
    from mvpose.engine.sequence_data import robust_lowpass

    r = refiner.task.root
    gts = [c.target for c in clips]
    before = _frame_weighted([c.inputs for c in clips], gts, r)
    after = _frame_weighted([refiner(c.inputs) for c in clips], gts, r)
    filt = [
        robust_lowpass(c.inputs, refiner.fps, refiner.root_cutoff_hz, refiner.root_outlier_mm) for c in clips
    ]
    return {
        "before": before,
        "after": after,
        "filter_only": _frame_weighted(filt, gts, r),
        "filter_cutoff_hz": refiner.root_cutoff_hz,
        "mpjpe_reduction": 1.0 - after["MPJPE"] / before["MPJPE"],
        "mpjve_ratio": before["MPJVE"] / after["MPJVE"],
        "frames": int(sum(c.num_frames for c in clips)),
    }
