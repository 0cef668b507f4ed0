"""Triangulate a capture: calibration + per-camera 2D detections -> 3D joints (mm), with reports.

``triangulate_capture`` reads (or takes) a :class:`~mvpose.geometry.camera.CameraRig` and
:class:`~mvpose.pipeline.detections.Detections`, matches their cameras, picks the subject in every
frame (:func:`~mvpose.pipeline.association.select_single_person`) and triangulates chunks of frames
with :meth:`CameraRig.triangulate`. ``write_result`` saves ``.npz`` or ``.json``; ``read_result``
reads either back; ``format_summary`` prints the per-camera report. See docs/triangulate.md.
"""

from __future__ import annotations

import json
import logging
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mvpose.geometry.camera import CameraRig
from mvpose.geometry.triangulation import METHODS, reprojection_error, triangulate
from mvpose.pipeline.association import select_single_person
from mvpose.pipeline.detections import Detections, load_detections, match_cameras
from mvpose.skeleton import Skeleton, get_skeleton

__all__ = [
    "TriangulationResult",
    "triangulate_capture",
    "resolve_inputs",
    "triangulate_frames",
    "camera_statistics",
    "prepare_detections",
    "temporal_filter",
    "write_result",
    "read_result",
    "format_summary",
]

logger = logging.getLogger(__name__)

FORMAT = "mvpose-triangulation/1"
#: integer camera statistics (the others are floats)
_INT_STATS = ("frames_detected", "views_dropped", "frames_missing")
UNITS = {"points_3d": "mm", "reprojection_error": "px"}
_STATS = (
    "frames_detected",
    "detected_fraction",
    "used_fraction",
    "median_error_px",
    "p90_error_px",
    "views_dropped",
    "rejected_fraction",
    "frames_missing",
)


@dataclass
class TriangulationResult:
    """3D joints of one capture and how they were obtained.

    Attributes:
        points_3d_mm: ``(T, J, 3)`` float64 world coordinates in mm; NaN where not triangulated.
        reprojection_error_px: ``(T, V, J)`` px between the projected 3D joint (with lens
            distortion) and the raw detection, for every confident detection (also those the
            robust methods rejected: see ``views_used``); NaN where missing or not triangulated.
        views_used: ``(T, V, J)`` bool, the observations the 3D joint was solved from.
        person_index: ``(T, V)`` int64, the detected person chosen as the subject (-1: none).
        joint_names, camera_names: ``J`` and ``V`` names (calibration camera names).
        frame_indices: ``(T,)`` frame numbers of the detections.
        skeleton: keypoint set name (``None`` if unknown).
        camera_stats: per camera ``(V,)`` arrays: ``frames_detected`` (frames where the subject has
            a confident keypoint), ``detected_fraction`` and ``used_fraction`` (of ``T * J``),
            ``median_error_px`` and ``p90_error_px`` (over used observations), ``views_dropped``
            (frames where people were detected but none was consistent with the other views),
            ``rejected_fraction`` (share of the subject's confident detections not used) and
            ``frames_missing`` (frames without any detection: no file, unreadable, nobody seen);
            see :func:`camera_statistics`.
        settings: the options and inputs (paths, method, thresholds, camera mapping).
        warnings: problems met (files, frames, cameras).
    """

    points_3d_mm: np.ndarray
    reprojection_error_px: np.ndarray
    views_used: np.ndarray
    person_index: np.ndarray
    joint_names: tuple[str, ...]
    camera_names: tuple[str, ...]
    frame_indices: np.ndarray
    skeleton: str | None
    camera_stats: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.points_3d_mm.shape[0]

    def overall(self) -> dict[str, float]:
        """Overall figures: median / p90 / mean reprojection error (px) over used observations,
        the median over all confident detections (rejected outliers included), number of
        observations, fraction of joints triangulated, frames with a camera missing the subject,
        frames without any 3D joint."""
        err = self.reprojection_error_px[self.views_used]
        err = err[np.isfinite(err)]
        err_all = self.reprojection_error_px[np.isfinite(self.reprojection_error_px)]
        finite = np.isfinite(self.points_3d_mm).all(-1)
        detected = (self.person_index >= 0) if self.person_index.size else np.zeros((0, 0), bool)
        return {
            "median_error_px": float(np.median(err)) if err.size else float("nan"),
            "p90_error_px": float(np.percentile(err, 90)) if err.size else float("nan"),
            "mean_error_px": float(err.mean()) if err.size else float("nan"),
            "observations": int(err.size),
            "median_error_all_px": float(np.median(err_all)) if err_all.size else float("nan"),
            "detections": int(err_all.size),
            "joints_triangulated": float(finite.mean()) if finite.size else 0.0,
            "frames_missing_camera": int((~detected).any(-1).sum()) if detected.size else 0,
            "frames_without_3d": int((~finite.any(-1)).sum()) if finite.size else 0,
        }


def _load_rig(calib, subject) -> CameraRig:
    if isinstance(calib, CameraRig):
        return calib
    from mvpose.calib import load_rig

    return load_rig(calib, subject=subject)


def _nanpercentile(x: np.ndarray, q: float, axis) -> np.ndarray:
    """Percentile over the non-NaN values along ``axis`` (NaN where there are none, silently)."""
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(x, q, axis=axis)


def resolve_inputs(
    calib, detections, skeleton: str | Skeleton | None = None, subject=None
) -> tuple[CameraRig, Detections, dict[str, str], str, list[str]]:
    """Read the calibration and the detections and match their cameras.

    Returns:
        ``(rig, det, mapping, how, warnings)``: the float64 rig of the detection cameras in the
        detections' order, the detections (``skeleton`` applied), ``{detection name: calibration
        name}``, how the names were matched, and the warnings so far.

    Raises:
        ValueError / FileNotFoundError: bad inputs, cameras that cannot be matched (both sides listed),
        fewer than two cameras.
    """
    rig = _load_rig(calib, subject).to(dtype=torch.float64)
    if isinstance(detections, Detections):
        det = detections
        if skeleton is not None:
            sk = get_skeleton(skeleton)
            if sk.num_joints != det.num_joints:
                raise ValueError(
                    f"skeleton {sk.name!r} has {sk.num_joints} joints but the detections "
                    f"({', '.join(str(p) for p in det.source[:1]) or 'given'}) have {det.num_joints}"
                )
            if det.skeleton != sk.name:
                det = Detections(
                    det.keypoints,
                    det.camera_names,
                    det.frame_indices,
                    det.source,
                    sk.name,
                    None,
                    list(det.warnings),
                )
    else:
        det = load_detections(detections, skeleton)
    if not np.isfinite(det.keypoints[..., 2]).any():
        src = ", ".join(str(p) for p in det.source[:1]) or "given"
        raise ValueError(
            f"detections ({src}): no keypoint detected in any camera or frame; nothing to triangulate"
        )
    warnings = list(det.warnings)
    index, how = match_cameras(det.camera_names, rig.names)
    mapping = {d: rig.names[i] for d, i in zip(det.camera_names, index)}
    logger.info("cameras matched %s: %s", how, ", ".join(f"{d} -> {r}" for d, r in mapping.items()))
    if how.startswith("by sorted order"):
        warnings.append(
            "detection cameras matched to calibration cameras by sorted order (names do not match): "
            + ", ".join(f"{d} -> {r}" for d, r in mapping.items())
        )
    unused = [n for i, n in enumerate(rig.names) if i not in index]
    if unused:
        warnings.append(f"calibration cameras without detections (ignored): {', '.join(unused)}")
    if det.num_views < 2:
        raise ValueError(
            f"need detections from at least 2 cameras to triangulate, got {det.num_views} "
            f"({det.camera_names})"
        )
    return rig.select(index), det, mapping, how, warnings


def undistort_points(rig: CameraRig, points_px: torch.Tensor, max_iterations: int = 8) -> torch.Tensor:
    """``rig.undistort_points`` for a plain (unbatched) rig, faster on CPU for the OpenCV model.

    Same Newton iteration as :func:`mvpose.geometry.distortion.undistort`, written out on the two
    coordinates (no stacked 2x2 Jacobians), from one fixed-point step of the radial part, stopping
    once every step is below 1e-7 (normalised units: the error left is about its square; 2 to 3
    iterations for usual lenses). Other models and batched rigs use
    ``rig.undistort_points``. ``points_px (*, V, J, 2)`` -> undistorted px, NaN stays NaN.
    """
    if not rig.has_distortion:
        return points_px.to(rig.dtype)
    if rig.distortion_model != "opencv" or len(rig.batch_shape):
        return rig.undistort_points(points_px)
    K, d = rig.K[:, None], rig.dist[:, None]  # (V, 1, ...) against (*, V, J)
    fx, fy, cx, cy, skew = K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 0, 1]
    k1, k2, p1, p2, k3 = d.unbind(-1)
    px = points_px.to(rig.dtype)
    yd = (px[..., 1] - cy) / fy
    xd = (px[..., 0] - cx - skew * yd) / fx
    # per-view constants of the distortion polynomial and its derivatives
    one, p1_2, p2_2, p1_6, p2_6 = torch.ones_like(k1), 2 * p1, 2 * p2, 6 * p1, 6 * p2
    k1_2, k2_4, k3_6 = 2 * k1, 4 * k2, 6 * k3
    # start from one fixed-point step of the radial part (saves about one Newton iteration)
    r2d = torch.addcmul(xd * xd, yd, yd)
    inv = torch.addcmul(one, torch.addcmul(k1, torch.addcmul(k2, k3, r2d), r2d), r2d).reciprocal_()
    x, y = xd * inv, yd * inv
    for _ in range(max_iterations):
        x2, y2, xy = x * x, y * y, x * y
        r2 = x2 + y2
        radial = torch.addcmul(one, torch.addcmul(k1, torch.addcmul(k2, k3, r2), r2), r2)
        g2 = torch.addcmul(k1_2, torch.addcmul(k2_4, k3_6, r2), r2)  # 2 d radial / d r2
        ex = torch.addcmul(-xd, x, radial).addcmul_(p2, r2).addcmul_(p1_2, xy).addcmul_(p2_2, x2)
        ey = torch.addcmul(-yd, y, radial).addcmul_(p1, r2).addcmul_(p2_2, xy).addcmul_(p1_2, y2)
        j00 = torch.addcmul(radial, g2, x2).addcmul_(p1_2, y).addcmul_(p2_6, x)
        j11 = torch.addcmul(radial, g2, y2).addcmul_(p2_2, x).addcmul_(p1_6, y)
        j01 = (g2 * xy).addcmul_(p1_2, x).addcmul_(p2_2, y)  # the Jacobian is symmetric for this model
        det = torch.addcmul(j00 * j11, j01, j01, value=-1.0)
        det = torch.where(det.abs() > 1e-12, det, one)  # singular (far outside the lens): no step
        dx = torch.addcmul(j11 * ex, j01, ey, value=-1.0).div_(det)
        dy = torch.addcmul(j00 * ey, j01, ex, value=-1.0).div_(det)
        x, y = x - dx, y - dy
        # quadratic convergence: after a step below 1e-7 the error is about its square
        if not bool((dx.abs() + dy.abs()).nan_to_num(0.0).gt(1e-7).any()):
            break
    return torch.stack([fx * x + skew * y + cx, fy * y + cy], -1)


def reprojection_errors(rig: CameraRig, points_mm: torch.Tensor, points_px: torch.Tensor) -> torch.Tensor:
    """``rig.reprojection_error`` for a plain rig, faster on CPU for the OpenCV model: the distance
    ``(*, V, J)`` px between ``points_mm (*, J, 3)`` projected with distortion and the raw
    ``points_px (*, V, J, 2)``, with the projection written out on the two coordinates."""
    if rig.distortion_model != "opencv" or len(rig.batch_shape):
        return rig.reprojection_error(points_mm, points_px)
    V = rig.num_views
    X = points_mm.to(rig.dtype)
    lead, J = X.shape[:-2], X.shape[-2]
    Rt = torch.cat([rig.R, rig.t[..., None]], -1).reshape(3 * V, 4)  # rows (v, i)
    Xc = torch.addmm(Rt[:, 3], X.reshape(-1, 3), Rt[:, :3].T).view(-1, J, V, 3)  # (N, J, V, 3)
    Xc = Xc.permute(3, 0, 2, 1)  # (3, N, V, J)
    z = Xc[2].reciprocal()
    x, y = Xc[0] * z, Xc[1] * z
    K, d = rig.K[:, None], rig.dist[:, None]  # (V, 1, ...)
    k1, k2, p1, p2, k3 = d.unbind(-1)
    x2, y2, xy = x * x, y * y, x * y
    r2 = x2 + y2
    radial = torch.addcmul(torch.ones_like(k1), torch.addcmul(k1, torch.addcmul(k2, k3, r2), r2), r2)
    xd = (x * radial).addcmul_(p2, r2).addcmul_(2 * p1, xy).addcmul_(2 * p2, x2)
    yd = (y * radial).addcmul_(p1, r2).addcmul_(2 * p2, xy).addcmul_(2 * p1, y2)
    px = points_px.to(rig.dtype).reshape(-1, V, J, 2)
    u = (xd * K[..., 0, 0]).addcmul_(K[..., 0, 1], yd).add_(K[..., 0, 2]).sub_(px[..., 0])
    v = (yd * K[..., 1, 1]).add_(K[..., 1, 2]).sub_(px[..., 1])
    return torch.hypot(u, v).view(*lead, V, J)


def triangulate_frames(
    rig: CameraRig,
    keypoints: np.ndarray,
    *,
    method: str = "robust+refine",
    min_confidence: float = 0.3,
    threshold_px: float = 15.0,
    generator: torch.Generator | None = None,
    undistorted: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The triangulation engine of ``mvpose triangulate`` / ``mvpose infer``, batched over frames.

    Args:
        rig: the ``V`` cameras (float64).
        keypoints: ``(V, T, J, 3)`` raw (distorted) x px, y px, confidence; NaN = missing.
        method, threshold_px: see :func:`mvpose.geometry.triangulation.triangulate`.
        min_confidence: keypoints below it get weight 0 (the weight is the confidence above).
        undistorted: ``(V, T, J, 2)`` the keypoints already undistorted (``rig.undistort_points``),
            to skip that step (the costly part with lens distortion) when the caller has them.

    Returns:
        ``X (T, J, 3)`` mm (NaN: fewer than two usable views), ``err (T, V, J)`` px between the
        projection (with distortion) and every confident detection (NaN elsewhere), ``used (T, V, J)``.
    """
    px = torch.from_numpy(np.ascontiguousarray(keypoints[..., :2].transpose(1, 0, 2, 3)))  # (T, V, J, 2)
    c = torch.from_numpy(np.ascontiguousarray(keypoints[..., 2].transpose(1, 0, 2)))
    w = torch.where(c >= min_confidence, c, 0.0).nan_to_num(0.0)
    if undistorted is None:
        uv = undistort_points(rig, px)
    else:
        uv = torch.from_numpy(np.ascontiguousarray(undistorted.transpose(1, 0, 2, 3)))
    # what CameraRig.triangulate does after undistorting
    P = rig.projection_matrices()
    X, used = triangulate(
        uv,
        P,
        w,
        method=method,
        threshold_px=threshold_px,
        return_views=True,
        rig=rig,
        points_2d_raw=px,
        generator=generator,
    )
    finite = torch.isfinite(X).all(-1).unsqueeze(-2)
    used = used & finite & (w > 0)
    err = reprojection_errors(rig, X, px) if rig.has_distortion else reprojection_error(X, px, P)
    err = torch.where((w > 0) & finite, err, float("nan"))
    return X.numpy(), err.numpy(), used.numpy()


def camera_statistics(
    conf: np.ndarray,
    err: np.ndarray,
    used: np.ndarray,
    min_confidence: float,
    dropped: np.ndarray | None = None,
    frames_missing: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-camera figures ``(V,)`` of one subject.

    Args:
        conf: ``(V, T, J)`` the subject's confidences (NaN where not detected or no person chosen).
        err, used: ``(T, V, J)`` from :func:`triangulate_frames`.
        dropped: ``(V,)`` frames where people were seen but none was the subject (default 0).
        frames_missing: ``(V,)`` frames where the camera has no detection at all (no or unreadable
            file, nobody detected; default 0).

    Returns:
        ``frames_detected``, ``detected_fraction``, ``used_fraction``, ``rejected_fraction`` (of the
        confident detections, the share not used: outlier views, or no second view), ``median_error_px``,
        ``p90_error_px``, ``views_dropped``, ``frames_missing``.
    """
    V, T, J = conf.shape
    detected = np.nan_to_num(conf, nan=0.0) >= max(min_confidence, 1e-12)
    denom = max(1, T * J)
    err_v = np.where(used, err, np.nan).transpose(1, 0, 2).reshape(V, -1)
    n_det = detected.sum((1, 2))
    n_used = (used.transpose(1, 0, 2) & detected).sum((1, 2))
    zeros = np.zeros(V, np.int64)
    return {
        "frames_detected": detected.any(-1).sum(-1).astype(np.int64),
        "detected_fraction": n_det / denom,
        "used_fraction": used.sum((0, 2)) / denom,
        "rejected_fraction": np.where(n_det > 0, 1.0 - n_used / np.maximum(n_det, 1), np.nan),
        "median_error_px": _nanpercentile(err_v, 50, axis=1),
        "p90_error_px": _nanpercentile(err_v, 90, axis=1),
        "views_dropped": zeros if dropped is None else np.asarray(dropped, np.int64),
        "frames_missing": zeros if frames_missing is None else np.asarray(frames_missing, np.int64),
    }


def camera_warnings(stats: dict[str, np.ndarray], names, det_names, num_frames: int) -> list[str]:
    """Warnings about cameras from :func:`camera_statistics`: no detection, few used, often dropped."""
    out = []
    for v, name in enumerate(names):
        label = f"camera {name} ({det_names[v]})"
        if stats["frames_detected"][v] == 0:
            out.append(f"{label}: no detection of the subject in any frame")
        elif stats["used_fraction"][v] < 0.25 * max(stats["detected_fraction"][v], 1e-9):
            out.append(
                f"{label}: only {100 * stats['used_fraction'][v]:.0f}% of joints used although "
                f"{100 * stats['detected_fraction'][v]:.0f}% detected: check its calibration"
            )
        if stats["views_dropped"][v] > 0.2 * num_frames:
            out.append(
                f"{label}: in {stats['views_dropped'][v]} frames no detected person agreed with the "
                "other cameras"
            )
        missing = int(stats.get("frames_missing", np.zeros(len(names)))[v])
        if 0 < missing and stats["frames_detected"][v] > 0:
            out.append(f"{label}: no detection at all in {missing} of {num_frames} frames")
    return out


def frames_without_detections(keypoints: np.ndarray) -> np.ndarray:
    """``(V,)`` frames where a camera of ``keypoints (V, T, P, J, 3)`` has no keypoint at all."""
    return (~np.isfinite(keypoints[..., 2]).any((2, 3))).sum(1).astype(np.int64)


def triangulate_capture(
    calib,
    detections,
    skeleton: str | Skeleton | None = None,
    method: str = "robust+refine",
    min_confidence: float = 0.3,
    threshold_px: float = 15.0,
    subject=None,
    progress: bool = True,
    chunk_frames: int = 256,
    association_threshold_px: float = 50.0,
) -> TriangulationResult:
    """Triangulate every frame of a capture.

    Args:
        calib: calibration file (anything :func:`mvpose.calib.load_rig` reads) or a ``CameraRig``.
        detections: a folder of per-camera OpenPose JSON folders, an ``.npz``, or :class:`Detections`.
        skeleton: keypoint set of the detections (required for 25 keypoints: body25 / body25b).
        method: ``"dlt"``, ``"robust"``, ``"refine"`` or ``"robust+refine"``.
        min_confidence: keypoints below this confidence are not used (weight = confidence above).
        threshold_px: outlier threshold of the robust methods (reprojection error, px).
        subject: which rig of a calibration file holding several.
        progress: show a progress bar.
        chunk_frames: frames triangulated per batch (bounds memory).
        association_threshold_px: a camera's person is rejected as not the subject when the median
            reprojection error of its joints exceeds this (px).

    Returns:
        :class:`TriangulationResult` (shapes ``(T, J, 3)``, ``(T, V, J)``).

    Raises:
        ValueError / FileNotFoundError: bad inputs (the message names the file, field or option).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if not min_confidence >= 0:
        raise ValueError(f"min_confidence must be >= 0, got {min_confidence}")
    if not threshold_px > 0:
        raise ValueError(f"threshold_px must be > 0, got {threshold_px}")
    if int(chunk_frames) < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    rig, det, mapping, how, warnings = resolve_inputs(calib, detections, skeleton, subject)
    V, T, P, J = det.num_views, det.num_frames, det.num_persons, det.num_joints

    kp_all = det.keypoints
    warnings += _check_image_bounds(kp_all, rig, min_confidence)

    X_all = np.full((T, J, 3), np.nan)
    err_all = np.full((T, V, J), np.nan)
    used_all = np.zeros((T, V, J), bool)
    person_all = np.full((T, V), -1, np.int64)
    dropped = np.zeros(V, np.int64)
    non_first = np.zeros(V, np.int64)
    ambiguous = 0
    ref = None
    generator = torch.Generator().manual_seed(0)
    chunk = int(chunk_frames)
    with tqdm(total=T, desc="triangulate", unit="frame", disable=not progress, leave=False) as bar:
        for s in range(0, T, chunk):  # I/O-level chunks; each chunk is one batched solve
            e = min(T, s + chunk)
            kp, info = select_single_person(
                kp_all[:, s:e],
                rig,
                min_confidence=min_confidence,
                threshold_px=association_threshold_px,
                reference_centroid=ref,
                return_info=True,
            )
            ref = info.reference_centroid
            person_all[s:e] = info.person_index
            if info.scheme != "single":
                conf = kp_all[:, s:e, :, :, 2]
                seen = ((conf >= min_confidence).sum(-1) >= 3).any(-1).T  # (Tc, V) someone detected
                dropped += (seen & (info.person_index < 0)).sum(0)
                non_first += (info.person_index > 0).sum(0)
                ambiguous += int(info.ambiguous.sum())
            X_all[s:e], err_all[s:e], used_all[s:e] = triangulate_frames(
                rig,
                kp,
                method=method,
                min_confidence=min_confidence,
                threshold_px=threshold_px,
                generator=generator,
            )
            bar.update(e - s)

    # Per-camera statistics.
    sub_conf = np.take_along_axis(kp_all[..., 2], np.clip(person_all.T, 0, None)[:, :, None, None], axis=2)[
        :, :, 0
    ]  # (V, T, J)
    sub_conf = np.where(person_all.T[..., None] >= 0, sub_conf, np.nan)
    stats = camera_statistics(
        sub_conf, err_all, used_all, min_confidence, dropped, frames_without_detections(kp_all)
    )
    warnings += camera_warnings(stats, rig.names, det.camera_names, T)
    detected = np.nan_to_num(sub_conf, nan=0.0) >= max(min_confidence, 1e-12)
    n_det, n_used = int(detected.sum()), int(used_all.sum())
    if method.startswith("robust") and n_det and n_used < 0.8 * n_det:
        warnings.append(
            f"the robust method rejected {100 * (1 - n_used / n_det):.0f}% of the confident detections as "
            f"outliers (reprojection error above --threshold-px {threshold_px:g}); if the DLT error of this "
            "calibration is "
            "close to the threshold (see --method dlt), a larger threshold keeps more views"
        )
    settings = {
        "method": method,
        "min_confidence": float(min_confidence),
        "threshold_px": float(threshold_px),
        "association_threshold_px": float(association_threshold_px),
        "chunk_frames": chunk,
        "calibration": str(calib)
        if not isinstance(calib, CameraRig)
        else str(rig.meta.get("source", "CameraRig")),
        "subject": None if subject is None else str(subject),
        "detections": str(detections)
        if not isinstance(detections, Detections)
        else [str(p) for p in det.source],
        "camera_mapping": {d: r for d, r in mapping.items()},
        "camera_matching": how,
        "detection_cameras": list(det.camera_names),
        "max_persons": int(P),
        "frames_subject_not_first": {r: int(n) for r, n in zip(rig.names, non_first)},
        "frames_ambiguous": int(ambiguous),
    }
    return TriangulationResult(
        X_all,
        err_all,
        used_all,
        person_all,
        tuple(det.joint_names),
        tuple(rig.names),
        np.asarray(det.frame_indices, np.int64),
        det.skeleton,
        stats,
        settings,
        warnings,
    )


def _check_image_bounds(kp: np.ndarray, rig: CameraRig, min_confidence: float) -> list[str]:
    """Warn about cameras whose confident keypoints fall outside the calibrated image size."""
    if rig.image_size is None:
        return []
    size = rig.image_size.cpu().numpy().astype(np.float64)  # (V, 2)
    xy, c = kp[..., :2], kp[..., 2]
    ok = np.nan_to_num(c, nan=0.0) >= min_confidence
    lo, hi = -0.05 * size, 1.05 * size
    out = ((xy < lo[:, None, None, None]) | (xy > hi[:, None, None, None])).any(-1) & ok
    n_ok = ok.sum((1, 2, 3))
    frac = out.sum((1, 2, 3)) / np.maximum(n_ok, 1)
    msgs = []
    for v in np.flatnonzero(frac > 0.05):
        msgs.append(
            f"camera {rig.names[v]}: {100 * frac[v]:.0f}% of its keypoints lie outside the calibrated image "
            f"{int(size[v, 0])}x{int(size[v, 1])} px: wrong camera order, or images resized after "
            "calibration?"
        )
        logger.warning(msgs[-1])
    return msgs


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def _null_nan(a: np.ndarray):
    """Nested lists with NaN -> None (JSON null)."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        return a.tolist()
    obj = a.astype(object)
    obj[~np.isfinite(a)] = None
    return obj.tolist()


def write_result(result: TriangulationResult, path) -> Path:
    """Write ``result`` to ``path``: ``.npz`` (arrays + names) or ``.json`` (the same as lists,
    NaN as null, with a ``units`` block). Returns the path written (atomic write). A
    :class:`~mvpose.pipeline.multiperson.MultiPersonResult` is written by its own writer (the same
    layout with a track axis)."""
    if not isinstance(result, TriangulationResult):
        from mvpose.pipeline.multiperson import MultiPersonResult, write_multiperson_result

        if isinstance(result, MultiPersonResult):
            return write_multiperson_result(result, path)
        raise TypeError(f"write_result: expected a TriangulationResult, got {type(result).__name__}")
    return _write_result_file(result, path, FORMAT)


def _write_result_file(result, path, fmt: str, extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write a single- or multi-person ``result`` to ``.npz`` or ``.json`` (atomic), its ``format``
    field ``fmt``; ``extra`` arrays (the track ids) follow ``person_index`` in the ``.npz`` and
    ``frame_indices`` in the ``.json``. Returns the path."""
    from mvpose.export._io import atomic_write  # imported on use: mvpose.export is slow to import

    extra = extra or {}
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".json"):
        raise ValueError(f"output '{path}': unknown format {suffix or '(no suffix)'!r}; use .npz or .json")
    overall = result.overall()
    if suffix == ".npz":
        arrays = {
            "points_3d_mm": result.points_3d_mm,
            "reprojection_error_px": result.reprojection_error_px,
            "views_used": result.views_used,
            "person_index": result.person_index,
            **extra,
            "frame_indices": result.frame_indices,
            "joint_names": np.asarray(result.joint_names, dtype=str),
            "camera_names": np.asarray(result.camera_names, dtype=str),
            "skeleton": np.asarray(result.skeleton or "", dtype=str),
            "warnings": np.asarray(result.warnings, dtype=str).reshape(-1),
            "settings_json": np.asarray(json.dumps(result.settings)),
            "overall_json": np.asarray(json.dumps(overall)),
            "units_json": np.asarray(json.dumps(UNITS)),
            "format": np.asarray(fmt),
        }
        arrays.update({f"camera_{k}": np.asarray(v) for k, v in result.camera_stats.items()})

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
    else:
        doc = {
            "format": fmt,
            "units": UNITS,
            "skeleton": result.skeleton,
            "joint_names": list(result.joint_names),
            "camera_names": list(result.camera_names),
            "frame_indices": result.frame_indices.tolist(),
            **{k: np.asarray(v).tolist() for k, v in extra.items()},
            "points_3d_mm": _null_nan(result.points_3d_mm),
            "reprojection_error_px": _null_nan(result.reprojection_error_px),
            "views_used": result.views_used.astype(bool).tolist(),
            "person_index": result.person_index.tolist(),
            "camera_stats": {k: _null_nan(v) for k, v in result.camera_stats.items()},
            "overall": {
                k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in overall.items()
            },
            "settings": result.settings,
            "warnings": list(result.warnings),
        }

        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f, allow_nan=False)

    atomic_write(path, write)
    return path


def _from_json_array(x, dtype=np.float64) -> np.ndarray:
    """Lists from JSON (null -> NaN for floats)."""
    return np.asarray(x, dtype=dtype)


def _file_format(path: Path) -> str | None:
    """The ``format`` field of a result file (``None`` if unreadable or absent)."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return str(z["format"]) if "format" in z.files else None
        if path.suffix.lower() == ".json":
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            return doc.get("format") if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None
    return None


def prepare_detections(
    det: Detections,
    rig_names=None,
    sync_offsets: dict[str, int] | None = None,
    frames: tuple[int | None, int | None] = (None, None),
) -> Detections:
    """Apply ``--sync-offsets`` (camera names of the detections or of the calibration ``rig_names``)
    and ``--frames (start, stop)`` to detections (see :func:`~mvpose.pipeline.detections.shift_cameras`)."""
    from mvpose.pipeline.detections import camera_index, select_frames, shift_cameras

    if sync_offsets:
        aliases = None
        if rig_names is not None:
            index, _ = match_cameras(det.camera_names, rig_names)
            aliases = [rig_names[i] for i in index]
        off = {camera_index(k, det.camera_names, aliases): int(v) for k, v in sync_offsets.items()}
        det = shift_cameras(det, off)
    return select_frames(det, *frames)


def _read_result_file(path: Path, fmt: str | None, int_stats: tuple[str, ...]) -> dict:
    """The fields of a file written by :func:`_write_result_file`, as keyword arguments of
    :class:`TriangulationResult` (plus ``track_ids`` for a multi-person file, whose arrays have a
    person axis after time). ``fmt``: the ``format`` the file must have (None: not checked in
    ``.npz``); ``int_stats``: the integer camera statistics."""
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if fmt is not None and ("format" not in z.files or str(z["format"]) != fmt):
                raise ValueError(f"result file '{path}': field 'format' is not {fmt!r}")
            fields = {
                "points_3d_mm": z["points_3d_mm"],
                "reprojection_error_px": z["reprojection_error_px"],
                "views_used": z["views_used"].astype(bool),
                "person_index": z["person_index"],
                "joint_names": tuple(str(n) for n in z["joint_names"]),
                "camera_names": tuple(str(n) for n in z["camera_names"]),
                "frame_indices": z["frame_indices"],
                "skeleton": str(z["skeleton"]) or None,
                "camera_stats": {
                    k[len("camera_") :]: z[k]
                    for k in z.files
                    if k.startswith("camera_") and k != "camera_names"
                },
                "settings": json.loads(str(z["settings_json"])),
                "warnings": [str(w) for w in z["warnings"]],
            }
            if "track_ids" in z.files:
                fields["track_ids"] = z["track_ids"]
            return fields
    if path.suffix.lower() == ".json":
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if doc.get("format") != fmt:
            raise ValueError(
                f"result file '{path}': field 'format' is {doc.get('format')!r}, expected {fmt!r}"
            )
        T, V, J = len(doc["frame_indices"]), len(doc["camera_names"]), len(doc["joint_names"])
        lead = (T, len(doc["track_ids"])) if "track_ids" in doc else (T,)
        fields = {
            "points_3d_mm": _from_json_array(doc["points_3d_mm"]).reshape(*lead, J, 3),
            "reprojection_error_px": _from_json_array(doc["reprojection_error_px"]).reshape(*lead, V, J),
            "views_used": np.asarray(doc["views_used"], dtype=bool).reshape(*lead, V, J),
            "person_index": np.asarray(doc["person_index"], dtype=np.int64).reshape(*lead, V),
            "joint_names": tuple(doc["joint_names"]),
            "camera_names": tuple(doc["camera_names"]),
            "frame_indices": np.asarray(doc["frame_indices"], dtype=np.int64),
            "skeleton": doc.get("skeleton"),
            "camera_stats": {
                k: _from_json_array(v, np.int64 if k in int_stats else np.float64)
                for k, v in doc.get("camera_stats", {}).items()
            },
            "settings": doc.get("settings", {}),
            "warnings": list(doc.get("warnings", [])),
        }
        if "track_ids" in doc:
            fields["track_ids"] = np.asarray(doc["track_ids"], dtype=np.int64)
        return fields
    raise ValueError(f"result file '{path}': unknown format; expected .npz or .json")


def read_result(path) -> TriangulationResult:
    """Read a result written by :func:`write_result` (``.npz`` or ``.json``; a multi-person file
    gives a :class:`~mvpose.pipeline.multiperson.MultiPersonResult`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"result file '{path}' not found")
    if _file_format(path) == "mvpose-multiperson/1":
        from mvpose.pipeline.multiperson import read_multiperson_result

        return read_multiperson_result(path)
    fields = _read_result_file(path, None if path.suffix.lower() == ".npz" else FORMAT, _INT_STATS)
    fields.pop("track_ids", None)
    return TriangulationResult(**fields)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def _fmt(x: float, spec: str = ".1f") -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, spec)


def format_summary(result: TriangulationResult, max_warnings: int = 10) -> str:
    """A compact text report: one row per camera, overall figures, warnings."""
    T, V, J = result.reprojection_error_px.shape if result.reprojection_error_px.ndim == 3 else (0, 0, 0)
    s = result.camera_stats
    o = result.overall()
    det_names = result.settings.get("detection_cameras", list(result.camera_names))
    fi = result.frame_indices
    frames = f"{T} frames" + (f" ({fi[0]}..{fi[-1]})" if T else "")
    lines = [
        f"triangulated {frames}, {V} cameras, {J} joints"
        f"{f' ({result.skeleton})' if result.skeleton else ''}, method {result.settings.get('method', '?')}",
        "",
        f"{'camera':<12} {'detections':<14} {'frames':>7} {'missing':>8} {'detected':>9} {'used':>7} "
        f"{'rejected':>9} {'median px':>10} {'p90 px':>8}",
    ]
    for v, name in enumerate(result.camera_names):
        src = det_names[v] if v < len(det_names) else ""
        missing = int(s["frames_missing"][v]) if "frames_missing" in s else 0
        rejected = s["rejected_fraction"][v] if "rejected_fraction" in s else float("nan")
        lines.append(
            f"{name:<12} {src:<14} {int(s['frames_detected'][v]):>7d} {missing:>8d} "
            f"{100 * s['detected_fraction'][v]:>8.1f}% {100 * s['used_fraction'][v]:>6.1f}% "
            f"{_fmt(100 * rejected):>8}% {_fmt(s['median_error_px'][v]):>10} {_fmt(s['p90_error_px'][v]):>8}"
        )
    lines += [
        "",
        f"reprojection error: median {_fmt(o['median_error_px'])} px, p90 {_fmt(o['p90_error_px'])} px, "
        f"mean {_fmt(o['mean_error_px'])} px over {o['observations']} observations used; "
        f"median {_fmt(o['median_error_all_px'])} px over all {o['detections']} confident detections",
        f"joints triangulated: {100 * o['joints_triangulated']:.1f}% of {T * J}; frames with a camera "
        "missing the "
        f"subject: {o['frames_missing_camera']}; frames without any 3D joint: {o['frames_without_3d']}",
    ]
    nf = result.settings.get("frames_subject_not_first", {})
    picked = {k: v for k, v in nf.items() if v}
    if result.settings.get("max_persons", 1) > 1:
        extra = ", ".join(f"{k}: {v}" for k, v in picked.items()) if picked else "none"
        lines.append(
            f"association: up to {result.settings['max_persons']} people per image; frames where the subject "
            f"was not the first person listed: {extra}; ambiguous frames: "
            f"{result.settings.get('frames_ambiguous', 0)}"
        )
    if result.warnings:
        lines += ["", f"warnings ({len(result.warnings)}):"]
        lines += [f"  - {w}" for w in result.warnings[:max_warnings]]
        if len(result.warnings) > max_warnings:
            lines.append(f"  ... and {len(result.warnings) - max_warnings} more")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Temporal filter hook
# ------------------------------------------------------------------------------------------------


def parse_filter_spec(spec: str) -> tuple[str, dict]:
    """``"butterworth:cutoff_hz=6,order=4"`` -> ``("butterworth", {"cutoff_hz": 6, "order": 4})``.

    Values are read as int, else float, else kept as text."""
    name, _, rest = str(spec).partition(":")
    params: dict = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--filter {spec!r}: bad parameter {item!r}; expected NAME[:KEY=VALUE,...]")
        for cast in (int, float, str):
            try:
                params[key.strip()] = cast(value.strip())
                break
            except ValueError:
                continue
    return name.strip().lower(), params


def _butterworth_scipy(points: np.ndarray, fps: float, cutoff_hz: float = 6.0, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth low-pass along axis 0 of ``points (T, ...)`` (``order / 2`` per pass),
    on every NaN-free run long enough for ``sosfiltfilt``'s padding; other values are kept."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(max(1, int(order) // 2), float(cutoff_hz), btype="low", fs=float(fps), output="sos")
    T = points.shape[0]
    flat = points.reshape(T, -1)
    out = flat.copy()
    pad = 3 * (2 * len(sos) + 1)
    ok = np.isfinite(flat)
    if ok.all():
        return sosfiltfilt(sos, flat, axis=0).reshape(points.shape) if T > pad else points.copy()
    for c in np.flatnonzero(ok.any(0)):  # columns with gaps: each finite run on its own
        edges = np.flatnonzero(np.diff(np.r_[0, ok[:, c].astype(np.int8), 0]))
        for s, e in zip(edges[::2], edges[1::2]):
            if e - s > pad:
                out[s:e, c] = sosfiltfilt(sos, flat[s:e, c])
    return out.reshape(points.shape)


def temporal_filter(points_mm: np.ndarray, spec: str, fps: float | None, joint_names=None):
    """The ``--filter`` hook: smooth 3D joints over time.

    Runs :func:`mvpose.filters.smooth_trajectories` (gap filling, then the named filter) when the
    ``mvpose.filters`` package is available; without it, only ``butterworth`` is offered (scipy's
    ``sosfiltfilt`` on NaN-free runs, no gap filling).

    Args:
        points_mm: ``(T, J, 3)`` or ``(T, N, J, 3)`` (tracks on axis 1).
        spec: ``NAME[:KEY=VALUE,...]``, e.g. ``butterworth:cutoff_hz=6,order=4`` or
            ``oneeuro:min_cutoff=1,beta=0.01`` (the filter's own parameters, plus ``max_gap`` and
            ``interpolation`` of the gap filling).
        fps: frame rate (Hz), needed by ``butterworth`` and ``oneeuro``.

    Returns:
        ``(smoothed, message)``: same shape as ``points_mm``, and a one-line description.
    """
    name, params = parse_filter_spec(spec)
    pts = np.asarray(points_mm, dtype=np.float64)
    tracks = pts.ndim == 4
    x = np.moveaxis(pts, 1, 0) if tracks else pts  # (*, T, J, 3)
    try:
        from mvpose import filters
    except ImportError:  # the classic filters are an optional part
        filters = None
    if filters is not None:
        out, report = filters.smooth_trajectories(x, fps=fps, filter=name, joint_names=joint_names, **params)
        msg = (
            f"filter {spec}: {report.frames_filled} joint-frames interpolated in gaps of <= {report.max_gap}"
        )
    elif name == "butterworth":
        if fps is None:
            raise ValueError("--filter butterworth needs the frame rate: pass --fps")
        out = _butterworth_scipy(np.moveaxis(x, -3, 0), fps, **params)
        out = np.moveaxis(out, 0, -3)
        msg = f"filter {spec} (scipy sosfiltfilt; mvpose.filters is not installed: no gap filling)"
    else:
        raise ValueError(f"--filter {name!r} needs mvpose.filters, which is not available; use butterworth")
    out = np.asarray(out, dtype=np.float64)
    return (np.moveaxis(out, 0, 1) if tracks else out), msg
