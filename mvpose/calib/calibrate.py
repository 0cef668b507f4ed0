"""Calibrate a camera rig from board recordings: intrinsics, extrinsics, bundle adjustment, report.

Stages (all lengths in mm, pixels of each camera's full frame):

1. **Intrinsics** per camera: ``cv2.calibrateCamera`` on every view that shows the board (OpenCV's
   ``[k1, k2, p1, p2, k3]`` model), which also gives the board pose in each view.
2. **Extrinsics**: a frame index is an instant, so two cameras that see the board in the same frame
   give a relative pose ``T_c2_c1 = T_c2_board T_c1_board^-1``; per camera pair the candidates are
   reduced to a robust average (medoid, then the mean of its inliers) and the cameras are chained to
   the reference camera along a maximum spanning tree of shared frames.
3. **Bundle adjustment** (optional): ``scipy.optimize.least_squares`` with a sparse Jacobian over camera
   extrinsics (the reference camera is held fixed: it fixes the gauge), per-frame board poses and
   optionally the intrinsics, with an optional robust loss.

The world is the reference camera (``world="camera"``) or the board at one frame (``world="board"``:
origin at the board origin, X along the board's x, Y = -board y, Z out of the printed face).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mvpose.calib.board import (
    BoardNotFoundError,
    BoardSpec,
    CalibrateError,
    CameraDetections,
    detect_in_images,
    detect_in_video,
    list_image_folders,
    list_videos,
    parse_board,
    video_frame_count,
)
from mvpose.geometry.camera import CameraRig

__all__ = [
    "IntrinsicsResult",
    "CalibrationResult",
    "CalibrationReport",
    "calibrate_intrinsics",
    "board_poses",
    "initial_extrinsics",
    "bundle_adjust",
    "calibrate_rig",
    "detect_cameras",
    "rodrigues",
    "project_points",
    "LOSSES",
]

logger = logging.getLogger("mvpose.calib")

#: robust losses of ``scipy.optimize.least_squares`` accepted by :func:`bundle_adjust`
LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")
#: intrinsic parameters refined by the bundle adjustment, in order
INTRINSIC_NAMES = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3")


# ------------------------------------------------------------------------------------------ geometry
def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation vectors ``(*, 3)`` (radians) to matrices ``(*, 3, 3)``, as ``cv2.Rodrigues``."""
    r = np.asarray(rvec, dtype=np.float64)
    theta = np.linalg.norm(r, axis=-1)[..., None, None]
    zero = np.zeros(r.shape[:-1])
    S = np.stack(
        [
            np.stack([zero, -r[..., 2], r[..., 1]], -1),
            np.stack([r[..., 2], zero, -r[..., 0]], -1),
            np.stack([-r[..., 1], r[..., 0], zero], -1),
        ],
        -2,
    )
    small = theta < 1e-8
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta**2 / 24, (1 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * S + b * (S @ S)


def _rotvec(R: np.ndarray) -> np.ndarray:
    """Matrices ``(*, 3, 3)`` to rotation vectors ``(*, 3)`` (via ``cv2.Rodrigues`` per matrix)."""
    import cv2

    R = np.asarray(R, dtype=np.float64)
    flat = R.reshape(-1, 3, 3)
    out = np.stack([cv2.Rodrigues(np.ascontiguousarray(m))[0].reshape(3) for m in flat])
    return out.reshape(*R.shape[:-2], 3)


def project_points(points_cam: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """OpenCV projection of camera-frame points ``(N, 3)`` mm with per-point ``intrinsics (N, 9)``
    (``fx, fy, cx, cy, k1, k2, p1, p2, k3``) to pixels ``(N, 2)``."""
    x = points_cam[:, 0] / points_cam[:, 2]
    y = points_cam[:, 1] / points_cam[:, 2]
    fx, fy, cx, cy, k1, k2, p1, p2, k3 = intrinsics.T
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([fx * xd + cx, fy * yd + cy], -1)


def _intrinsic_vector(K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    return np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2], *np.asarray(dist, dtype=np.float64)[:5]])


def _K_dist(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    K = np.array([[vec[0], 0.0, vec[2]], [0.0, vec[1], vec[3]], [0.0, 0.0, 1.0]])
    return K, np.asarray(vec[4:9], dtype=np.float64).copy()


def _transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def _inverse(T: np.ndarray) -> np.ndarray:
    R, t = T[..., :3, :3], T[..., :3, 3]
    out = np.zeros_like(T)
    out[..., :3, :3] = np.swapaxes(R, -1, -2)
    out[..., :3, 3] = -(np.swapaxes(R, -1, -2) @ t[..., None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


# ------------------------------------------------------------------------------------------ results
@dataclass
class IntrinsicsResult:
    """One camera's intrinsics and the board pose in each of its views.

    ``K (3, 3)`` px, ``dist (5,)`` OpenCV; ``frames (F,)``; ``rvecs``, ``tvecs`` ``(F, 3)`` board to
    camera (rad, mm); ``rms_px``: RMS reprojection error over all corners of all views.
    """

    name: str
    K: np.ndarray
    dist: np.ndarray
    frames: np.ndarray
    rvecs: np.ndarray
    tvecs: np.ndarray
    rms_px: float
    image_size: tuple[int, int]
    num_corners: np.ndarray | None = None


@dataclass
class CalibrationReport:
    """Per-camera figures of a calibration run; :meth:`to_dict` for JSON, :meth:`format_table` to print."""

    board: str
    cameras: list[dict] = field(default_factory=list)
    reference: str | None = None
    world: str = "camera"
    world_frame: int | None = None
    bundle_adjusted: bool = False
    bundle_adjustment: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "board": self.board,
            "reference": self.reference,
            "world": self.world,
            "world_frame": self.world_frame,
            "bundle_adjusted": self.bundle_adjusted,
            "bundle_adjustment": self.bundle_adjustment,
            "cameras": self.cameras,
        }

    def write_json(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
        return path

    def format_table(self) -> str:
        cols = [
            ("camera", "name", "{}"),
            ("size", "image_size", "{0[0]}x{0[1]}"),
            ("frames", "frames_tried", "{}"),
            ("found", "frames_with_board", "{}"),
            ("fx", "fx", "{:.1f}"),
            ("fy", "fy", "{:.1f}"),
            ("intr RMS px", "intrinsics_rms_px", "{:.3f}"),
            ("shared", "frames_shared", "{}"),
            ("init RMS px", "extrinsics_init_rms_px", "{:.3f}"),
            ("BA RMS px", "bundle_adjusted_rms_px", "{:.3f}"),
        ]
        cols = [c for c in cols if any(cam.get(c[1]) is not None for cam in self.cameras)]
        rows = [[h for h, _, _ in cols]]
        for cam in self.cameras:
            rows.append([("-" if cam.get(k) is None else f.format(cam[k])) for _, k, f in cols])
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
        lines = [f"board: {self.board}"]
        if self.reference is not None:
            lines.append(
                f"reference camera: {self.reference}; world: {self.world}"
                + (f" (board at frame {self.world_frame})" if self.world == "board" else "")
                + f"; bundle adjusted: {'yes' if self.bundle_adjusted else 'no'}"
            )
        for k, r in enumerate(rows):
            lines.append(
                "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
            )
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


@dataclass
class CalibrationResult:
    """The calibrated :class:`CameraRig` (mm), the report, and the per-frame board poses
    (``board_poses``: ``{frame: (4, 4)}`` board to world, mm) of the multi-camera stage."""

    rig: CameraRig
    report: CalibrationReport
    intrinsics: dict[str, IntrinsicsResult]
    board_poses: dict[int, np.ndarray] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ intrinsics
def _too_few(det: CameraDetections, board: BoardSpec, need: int, what: str) -> CalibrateError:
    if not det.frames:
        hint = (
            "a checkerboard must be fully visible"
            if board.kind == "checkerboard"
            else "check the dictionary and, for boards printed from OpenCV < 4.6, add ':legacy'"
        )
        return BoardNotFoundError(
            f"camera {det.name!r}: board not found in any of the {det.tried} frames tried in {det.source} "
            f"({board.describe()}, spec '{board.spec()}'); check --board (COLSxROWS counts squares, "
            f"not inner corners; {hint}) and that the board is in view"
        )
    return CalibrateError(
        f"camera {det.name!r}: the board ({board.describe()}) was found in only {len(det.frames)} of the "
        f"{det.tried} frames tried in {det.source}; {what} needs at least {need}. Record more views of the "
        "board, or search more frames (--every, --max-frames)"
    )


def calibrate_intrinsics(
    det: CameraDetections, board: BoardSpec, *, min_frames: int = 4, fix_k3: bool = False
) -> IntrinsicsResult:
    """``cv2.calibrateCamera`` on every view of ``det`` (OpenCV ``[k1, k2, p1, p2, k3]``, no skew).

    Raises:
        BoardNotFoundError: the board was found in no frame.
        CalibrateError: fewer than ``min_frames`` views show the board, or OpenCV fails.
    """
    import cv2

    if len(det.frames) < max(min_frames, 1):
        raise _too_few(det, board, max(min_frames, 1), "intrinsic calibration")
    obj = board.object_points_mm
    object_points = [obj[d.ids].astype(np.float32).reshape(-1, 1, 3) for d in det.detections]
    image_points = [d.corners_px.astype(np.float32).reshape(-1, 1, 2) for d in det.detections]
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-10)
    try:
        rms, K, dist, rvecs, tvecs = cv2.calibrateCamera(
            object_points, image_points, det.image_size, None, None, flags=flags, criteria=criteria
        )
    except cv2.error as exc:
        raise CalibrateError(f"camera {det.name!r}: OpenCV calibrateCamera failed: {exc}") from None
    dist = np.asarray(dist, dtype=np.float64).reshape(-1)
    dist = np.concatenate([dist, np.zeros(max(0, 5 - dist.size))])[:5]
    if not np.isfinite(K).all() or not np.isfinite(dist).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrateError(f"camera {det.name!r}: intrinsic calibration diverged (K = {K.tolist()})")
    return IntrinsicsResult(
        name=det.name,
        K=np.asarray(K, dtype=np.float64),
        dist=dist,
        frames=np.asarray(det.frames, dtype=np.int64),
        rvecs=np.concatenate([np.asarray(r, dtype=np.float64).reshape(1, 3) for r in rvecs]),
        tvecs=np.concatenate([np.asarray(t, dtype=np.float64).reshape(1, 3) for t in tvecs]),
        rms_px=float(rms),
        image_size=tuple(det.image_size),
        num_corners=np.array([len(d.ids) for d in det.detections]),
    )


def board_poses(det: CameraDetections, board: BoardSpec, K: np.ndarray, dist: np.ndarray) -> IntrinsicsResult:
    """Board pose in every view of ``det`` for known intrinsics (``solvePnP`` IPPE, then LM refinement)."""
    import cv2

    if not det.frames:
        raise _too_few(det, board, 1, "extrinsic calibration")
    obj = board.object_points_mm
    rvecs, tvecs, sq = [], [], []
    for d in det.detections:
        o, p = obj[d.ids].reshape(-1, 1, 3), d.corners_px.reshape(-1, 1, 2)
        ok, r, t = cv2.solvePnP(o, p, K, dist, flags=cv2.SOLVEPNP_IPPE)
        if not ok:
            ok, r, t = cv2.solvePnP(o, p, K, dist, flags=cv2.SOLVEPNP_ITERATIVE)
        r, t = cv2.solvePnPRefineLM(o, p, K, dist, r, t)
        proj = cv2.projectPoints(o, r, t, K, dist)[0].reshape(-1, 2)
        sq.append(((proj - d.corners_px) ** 2).sum(-1))
        rvecs.append(r.reshape(3))
        tvecs.append(t.reshape(3))
    return IntrinsicsResult(
        name=det.name,
        K=np.asarray(K, dtype=np.float64),
        dist=np.asarray(dist, dtype=np.float64),
        frames=np.asarray(det.frames, dtype=np.int64),
        rvecs=np.stack(rvecs),
        tvecs=np.stack(tvecs),
        rms_px=float(np.sqrt(np.concatenate(sq).mean())),
        image_size=tuple(det.image_size),
        num_corners=np.array([len(d.ids) for d in det.detections]),
    )


# ------------------------------------------------------------------------------------------ extrinsics
def _robust_mean_pose(T: np.ndarray, scale_mm: float) -> np.ndarray:
    """Robust average of rigid transforms ``(n, 4, 4)``: the medoid, then the mean of its inliers."""
    R, t = T[:, :3, :3], T[:, :3, 3]
    cos = (np.einsum("kij,lij->kl", R, R) - 1) / 2
    dist = np.arccos(np.clip(cos, -1, 1)) + np.linalg.norm(t[:, None] - t[None], axis=-1) / scale_mm
    medoid = int(np.argmin(dist.sum(1)))
    d = dist[medoid]
    inl = d <= max(3 * float(np.median(d)), 1e-3)
    U, _, Vt = np.linalg.svd(R[inl].sum(0))
    Rm = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return _transform(Rm, t[inl].mean(0))


def _pose_table(res: IntrinsicsResult) -> dict[int, np.ndarray]:
    Rs = rodrigues(res.rvecs)
    return {int(f): _transform(Rs[k], res.tvecs[k]) for k, f in enumerate(res.frames)}


def initial_extrinsics(
    results: Sequence[IntrinsicsResult], board: BoardSpec, reference: int = 0, min_shared: int = 1
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Chain cameras to ``results[reference]`` through frames in which they see the board together.

    Returns:
        ``T_cam_ref (V, 4, 4)`` (reference frame to each camera, mm) and ``{frame: T_ref_board (4, 4)}``
        for every frame seen by a chained camera.

    Raises:
        CalibrateError: a camera shares fewer than ``min_shared`` frames with every chained camera.
    """
    V = len(results)
    poses = [_pose_table(r) for r in results]
    scale = board.square_mm * max(board.cols, board.rows)
    shared = np.zeros((V, V), dtype=np.int64)
    for a in range(V):
        for b in range(a + 1, V):
            shared[a, b] = shared[b, a] = len(poses[a].keys() & poses[b].keys())
    # Prim's maximum spanning tree from the reference camera (V is small)
    T = np.full((V, 4, 4), np.nan)
    T[reference] = np.eye(4)
    done = {reference}
    while len(done) < V:
        best = max(((shared[a, b], a, b) for a in done for b in range(V) if b not in done), default=(0, 0, 0))
        if best[0] < max(min_shared, 1):
            missing = [results[b].name for b in range(V) if b not in done]
            links = {
                results[b].name: {
                    results[a].name: int(shared[a, b]) for a in range(V) if a != b and shared[a, b]
                }
                for b in range(V)
                if b not in done
            }
            raise CalibrateError(
                f"cameras {missing} never see the board in the same frame as the cameras chained to the "
                f"reference {results[reference].name!r} ({sorted(results[a].name for a in done)}); at least "
                f"{max(min_shared, 1)} shared frame(s) are needed. Frames they share with other cameras: "
                f"{links}. Move the board where a chained camera and these cameras see it at the same time"
            )
        _, a, b = best
        common = sorted(poses[a].keys() & poses[b].keys())
        cand = np.stack([poses[b][f] @ _inverse(poses[a][f]) for f in common])  # T_b_a per frame
        T[b] = _robust_mean_pose(cand, scale) @ T[a]
        done.add(b)
    boards: dict[int, np.ndarray] = {}
    most: dict[int, int] = {}
    for v, r in enumerate(results):  # each frame's board pose from the camera that sees most corners
        inv = _inverse(T[v])
        for k, f in enumerate(r.frames.tolist()):
            n = int(r.num_corners[k]) if r.num_corners is not None else 0
            if f not in boards or n > most[f]:
                boards[f], most[f] = inv @ poses[v][f], n
    return T, boards


# ------------------------------------------------------------------------------------------ bundle adjustment
@dataclass
class _Observations:
    cam: np.ndarray  # (M,) camera index
    frame: np.ndarray  # (M,) index into the frame list
    points: np.ndarray  # (M, 3) board points mm
    uv: np.ndarray  # (M, 2) px


def _observations(dets: Sequence[CameraDetections], board: BoardSpec, frames: np.ndarray) -> _Observations:
    pos = {int(f): k for k, f in enumerate(frames.tolist())}
    obj = board.object_points_mm
    cam, frame, pts, uv = [], [], [], []
    for v, det in enumerate(dets):
        for f, d in zip(det.frames, det.detections, strict=True):
            if f in pos:
                cam.append(np.full(len(d.ids), v))
                frame.append(np.full(len(d.ids), pos[f]))
                pts.append(obj[d.ids])
                uv.append(d.corners_px)
    if not cam:
        return _Observations(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3)), np.zeros((0, 2)))
    return _Observations(np.concatenate(cam), np.concatenate(frame), np.concatenate(pts), np.concatenate(uv))


def _reprojection(obs: _Observations, T_cam: np.ndarray, T_board: np.ndarray, intr: np.ndarray) -> np.ndarray:
    """Residuals ``(M, 2)`` px of cameras ``T_cam (V, 4, 4)``, boards ``T_board (F, 4, 4)``, ``intr (V, 9)``.

    (``T_cam``: reference frame to camera; ``T_board``: board to reference frame; mm.)
    """
    T = T_cam[obs.cam] @ T_board[obs.frame]  # (M, 4, 4) board to camera
    Xc = (T[:, :3, :3] @ obs.points[:, :, None])[..., 0] + T[:, :3, 3]
    return project_points(Xc, intr[obs.cam]) - obs.uv


def _rms_per_camera(res: np.ndarray, cam: np.ndarray, V: int) -> np.ndarray:
    sq = (res**2).sum(-1)
    n = np.bincount(cam, minlength=V)
    s = np.bincount(cam, weights=sq, minlength=V)
    return np.where(n > 0, np.sqrt(s / np.maximum(n, 1)), np.nan)


def bundle_adjust(
    dets: Sequence[CameraDetections],
    board: BoardSpec,
    intrinsics: np.ndarray,
    T_cam: np.ndarray,
    T_board: dict[int, np.ndarray],
    *,
    reference: int = 0,
    refine_intrinsics: bool = False,
    fix_k3: bool = False,
    loss: str = "linear",
    loss_scale_px: float = 1.0,
    max_nfev: int | None = None,
    min_views: int | None = None,
    precondition: bool = True,
    tr_options: dict | None = None,
) -> dict:
    """Jointly refine camera extrinsics, per-frame board poses and optionally intrinsics.

    Args:
        dets: detections per camera (frame index = time).
        intrinsics: ``(V, 9)`` ``fx, fy, cx, cy, k1, k2, p1, p2, k3``.
        T_cam: ``(V, 4, 4)`` reference frame to camera (mm); ``T_cam[reference]`` is held fixed.
        T_board: ``{frame: (4, 4)}`` board to reference frame, the initial board poses.
        refine_intrinsics: also refine the intrinsics (``k3`` stays fixed with ``fix_k3``).
        loss, loss_scale_px: robust loss of ``least_squares`` (one of :data:`LOSSES`) and its inlier scale.
        min_views: use frames seen by at least this many cameras (default 2, or 1 with refined intrinsics).
        precondition: solve in block-whitened variables (see :func:`_block_preconditioner`); without it
            the inner LSMR solves of ``least_squares`` need hundreds of iterations per step.
        tr_options: options of the inner LSMR solver of ``least_squares`` (default ``atol = btol = 1e-12``).

    Returns:
        dict with ``T_cam (V, 4, 4)``, ``intrinsics (V, 9)``, ``T_board {frame: (4, 4)}``,
        ``rms_initial_px (V,)``, ``rms_px (V,)``, ``observations (V,)``, ``frames`` (count),
        ``cost_initial``, ``cost_final``, ``nfev``, ``status``.
    """
    from scipy.optimize import least_squares
    from scipy.sparse import csr_matrix

    if loss not in LOSSES:
        raise ValueError(f"bundle_adjust: loss must be one of {LOSSES}, got {loss!r}")
    V = len(dets)
    if min_views is None:
        min_views = 1 if refine_intrinsics else 2
    counts: dict[int, int] = {}
    for det in dets:
        for f in det.frames:
            counts[f] = counts.get(f, 0) + 1
    frames = np.array(sorted(f for f, n in counts.items() if n >= min_views and f in T_board), dtype=np.int64)
    if not len(frames):
        raise CalibrateError(f"bundle adjustment: no frame shows the board to {min_views} cameras at once")
    obs = _observations(dets, board, frames)
    F, M = len(frames), len(obs.cam)
    free_cams = np.array([v for v in range(V) if v != reference], dtype=np.int64)
    intr_idx = [k for k in range(9) if not (fix_k3 and k == 8)] if refine_intrinsics else []
    ni = len(intr_idx)
    n_cam, n_intr = 6 * len(free_cams), ni * V
    cam_col = np.full(V, -1)
    cam_col[free_cams] = np.arange(len(free_cams)) * 6

    def pack(Tc, intr, Tb) -> np.ndarray:
        parts = [np.concatenate([_rotvec(Tc[free_cams, :3, :3]), Tc[free_cams, :3, 3]], -1).ravel()]
        parts.append(intr[:, intr_idx].ravel())
        parts.append(np.concatenate([_rotvec(Tb[:, :3, :3]), Tb[:, :3, 3]], -1).ravel())
        return np.concatenate(parts)

    def unpack(x):
        Tc = T_cam.copy()
        c = x[:n_cam].reshape(-1, 6)
        Tc[free_cams, :3, :3] = rodrigues(c[:, :3])
        Tc[free_cams, :3, 3] = c[:, 3:]
        intr = intrinsics.copy()
        if ni:
            intr[:, intr_idx] = x[n_cam : n_cam + n_intr].reshape(V, ni)
        b = x[n_cam + n_intr :].reshape(F, 6)
        Tb = np.tile(np.eye(4), (F, 1, 1))
        Tb[:, :3, :3] = rodrigues(b[:, :3])
        Tb[:, :3, 3] = b[:, 3:]
        return Tc, intr, Tb

    def residuals(x):
        Tc, intr, Tb = unpack(x)
        return _reprojection(obs, Tc, Tb, intr).ravel()

    # sparsity: each observation's two rows depend on its camera (extrinsics, intrinsics) and its frame
    rows, cols = [], []
    r2 = np.stack([2 * np.arange(M), 2 * np.arange(M) + 1], -1)  # (M, 2)

    def block(mask, first_col, width):
        rr = np.repeat(r2[mask], width, axis=1)  # (m, 2 * width)
        cc = np.tile(first_col[mask][:, None] + np.arange(width), (1, 2))
        rows.append(rr.ravel())
        cols.append(cc.ravel())

    block(cam_col[obs.cam] >= 0, cam_col[obs.cam], 6)
    if ni:
        block(np.ones(M, bool), n_cam + obs.cam * ni, ni)
    block(np.ones(M, bool), n_cam + n_intr + obs.frame * 6, 6)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    n_params = n_cam + n_intr + 6 * F
    sparsity = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(2 * M, n_params))

    Tb0 = np.stack([T_board[int(f)] for f in frames])
    x0 = pack(T_cam, intrinsics, Tb0)
    f0 = residuals(x0)
    res0 = f0.reshape(M, 2)
    # parameter groups: (first column, block width, number of blocks, block of each observation or -1)
    groups = [(0, 6, len(free_cams), np.where(cam_col[obs.cam] >= 0, cam_col[obs.cam] // 6, -1))]
    if ni:
        groups.append((n_cam, ni, V, obs.cam))
    groups.append((n_cam + n_intr, 6, F, obs.frame))
    if precondition:
        # whitened variables y (x = x0 + P y); the trust region starts at the size of the residual, in y
        to_x = _block_preconditioner(residuals, x0, f0, groups)
        fun, start, x_scale = (
            (lambda y: residuals(to_x(y))),
            np.zeros_like(x0),
            max(1.0, float(np.linalg.norm(f0))),
        )
    else:
        to_x, fun, start, x_scale = (lambda x: x), residuals, x0, "jac"
    sol = least_squares(
        fun,
        start,
        jac_sparsity=sparsity,
        method="trf",
        x_scale=x_scale,
        loss=loss,
        f_scale=float(loss_scale_px),
        max_nfev=max_nfev,
        xtol=1e-10,
        ftol=1e-10,
        # tight inner solves: looser LSMR tolerances cost many more outer iterations here
        tr_options={"atol": 1e-12, "btol": 1e-12, **(tr_options or {})},
    )
    sol.x = to_x(sol.x)
    Tc, intr, Tb = unpack(sol.x)
    res = sol.fun.reshape(M, 2)
    return {
        "T_cam": Tc,
        "intrinsics": intr,
        "T_board": {int(f): Tb[k] for k, f in enumerate(frames)},
        "rms_initial_px": _rms_per_camera(res0, obs.cam, V),
        "rms_px": _rms_per_camera(res, obs.cam, V),
        "observations": np.bincount(obs.cam, minlength=V),
        "frames": int(F),
        "cost_initial": float(0.5 * (res0**2).sum()),
        "cost_final": float(sol.cost),
        "nfev": int(sol.nfev),
        "status": int(sol.status),
    }


def _block_preconditioner(fun, x0: np.ndarray, f0: np.ndarray, groups) -> Callable[[np.ndarray], np.ndarray]:
    """Block-Jacobi change of variables ``x = x0 + P y`` for the bundle adjustment.

    Each parameter block (a camera's pose, a camera's intrinsics, a frame's board pose) is whitened by the
    Cholesky factor of its diagonal block of ``J^T J`` at ``x0`` (``J`` by grouped forward differences:
    one residual evaluation per parameter index of a group, as the blocks of a group share no rows). In
    ``y`` the diagonal blocks of the normal matrix are the identity, which is what LSMR needs to converge
    in few iterations; ``P`` is block diagonal, so the Jacobian sparsity is unchanged.

    Args:
        fun: residuals ``(2 M,)`` of ``x``.
        groups: ``(first_col, width, num_blocks, block_of_obs (M,))`` per parameter group; block ``b``
            covers columns ``first_col + b * width + [0, width)``; ``-1`` marks observations that
            do not depend on the group.

    Returns:
        ``y -> x``.
    """
    M = len(f0) // 2
    maps = []
    for start, width, nb, blk in groups:
        if nb == 0 or width == 0:
            continue
        cols = start + np.arange(nb)[:, None] * width + np.arange(width)  # (nb, width)
        valid = blk >= 0
        A = np.zeros((M, 2, width))
        for k in range(width):
            x = x0.copy()
            step = 1e-6 * np.maximum(1.0, np.abs(x0[cols[:, k]]))
            x[cols[:, k]] += step
            A[valid, :, k] = (fun(x) - f0).reshape(M, 2)[valid] / step[blk[valid], None]
        G = np.zeros((nb, width, width))
        np.add.at(G, blk[valid], np.einsum("mik,mil->mkl", A[valid], A[valid]))
        trace = np.trace(G, axis1=1, axis2=2)
        G += (1e-10 * trace + 1e-12)[:, None, None] * np.eye(width)
        L = np.linalg.cholesky(G)
        maps.append((cols, np.linalg.inv(np.swapaxes(L, 1, 2))))  # x_b = x0_b + L^-T y_b

    def to_x(y: np.ndarray) -> np.ndarray:
        x = x0.copy()
        for cols, Pinv in maps:
            x[cols] += np.einsum("bkl,bl->bk", Pinv, y[cols])
        return x

    return to_x


# ------------------------------------------------------------------------------------------ driver
def detect_cameras(
    board: BoardSpec | str,
    *,
    images=None,
    videos=None,
    every: int = 1,
    max_frames: int | None = None,
    cameras: Sequence[str] | None = None,
    checkerboard_method: str = "classic",
) -> list[CameraDetections]:
    """Detect the board in every camera of ``images`` (``DIR/<camera>/*.png``, the k-th image of each
    folder is frame k) or ``videos`` (``DIR/<camera>.mp4``), searching every ``every``-th frame, at most
    ``max_frames`` per camera (the same frame indices for every camera); ``cameras`` picks some."""
    board = parse_board(board)
    if (images is None) == (videos is None):
        raise ValueError("detect_cameras: give exactly one of images= or videos=")
    found = list_image_folders(images) if images is not None else list_videos(videos)
    if cameras:
        unknown = [c for c in cameras if c not in found]
        if unknown:
            raise CalibrateError(f"cameras {unknown} not found; available: {sorted(found)}")
        found = {c: found[c] for c in cameras}
    kw = {"every": every, "max_frames": max_frames, "checkerboard_method": checkerboard_method}
    if images is not None:
        n = max(len(p) for p in found.values())
        return [detect_in_images(c, p, board, num_frames=n, **kw) for c, p in found.items()]
    n = max(video_frame_count(p) for p in found.values())
    return [detect_in_video(c, p, board, num_frames=n, **kw) for c, p in found.items()]


def calibrate_rig(
    dets: Sequence[CameraDetections],
    board: BoardSpec | str,
    *,
    intrinsics_only: bool = False,
    bundle_adjust_extrinsics: bool = True,
    reference: str | int = 0,
    world: str = "camera",
    world_frame: int | None = None,
    refine_intrinsics: bool = False,
    fix_k3: bool = False,
    loss: str = "linear",
    loss_scale_px: float = 1.0,
    min_frames: int = 4,
    min_shared: int = 1,
    known_intrinsics: CameraRig | None = None,
) -> CalibrationResult:
    """Calibrate a rig from per-camera board detections (see the module docstring for the stages).

    Args:
        dets: one :class:`CameraDetections` per camera; frame indices are instants shared by all cameras.
        board: the board (spec string or :class:`BoardSpec`); lengths come out in its mm.
        intrinsics_only: stop after the intrinsics; every camera gets ``R = I``, ``t = 0``.
        bundle_adjust_extrinsics: run the bundle adjustment after the chained initialisation.
        reference: camera (index or name) whose frame is the world (``world="camera"``) and whose
            pose is held fixed in the adjustment.
        world: ``"camera"`` or ``"board"`` (the board at ``world_frame``; default: the earliest frame
            in which the reference camera sees it).
        refine_intrinsics: let the bundle adjustment refine the intrinsics too.
        fix_k3: keep ``k3 = 0``.
        loss, loss_scale_px: robust loss of the adjustment and its scale in px.
        min_frames: fewest views per camera for its intrinsics.
        min_shared: fewest frames two chained cameras must share.
        known_intrinsics: take ``K`` and ``dist`` from this rig (by camera name) instead of calibrating.

    Returns:
        :class:`CalibrationResult` with a float64 :class:`CameraRig` named after the cameras.
    """
    board = parse_board(board)
    dets = list(dets)
    if not dets:
        raise CalibrateError("no cameras to calibrate")
    if world not in ("camera", "board"):
        raise ValueError(f"world must be 'camera' or 'board', got {world!r}")
    names = [d.name for d in dets]
    V = len(dets)
    ref = names.index(reference) if isinstance(reference, str) and reference in names else reference
    if not isinstance(ref, int) or not 0 <= ref < V:
        raise CalibrateError(f"reference camera {reference!r} not found; cameras are {names}")

    if known_intrinsics is not None and known_intrinsics.distortion_model != "opencv":
        raise CalibrateError(
            f"the intrinsics rig uses the {known_intrinsics.distortion_model!r} distortion model; "
            "calibration works with OpenCV's"
        )
    if intrinsics_only and world != "camera":
        logger.warning("world=%r is ignored with intrinsics_only (every camera gets R = I, t = 0)", world)
    results: dict[str, IntrinsicsResult] = {}
    for det in dets:
        if known_intrinsics is not None:
            if det.name not in known_intrinsics.names:
                raise CalibrateError(
                    f"camera {det.name!r} is not in the intrinsics rig "
                    f"(cameras {list(known_intrinsics.names)})"
                )
            k = known_intrinsics.index(det.name)
            size = known_intrinsics.image_size
            if size is not None and tuple(int(v) for v in size[k]) != tuple(det.image_size):
                raise CalibrateError(
                    f"camera {det.name!r}: the intrinsics rig is for {int(size[k][0])}x{int(size[k][1])} px "
                    f"images, the recordings are {det.image_size[0]}x{det.image_size[1]} px"
                )
            K = known_intrinsics.K[k].double().numpy()
            dist = known_intrinsics.dist[k].double().numpy()
            results[det.name] = board_poses(det, board, K, dist)
        else:
            results[det.name] = calibrate_intrinsics(det, board, min_frames=min_frames, fix_k3=fix_k3)
        r = results[det.name]
        logger.info(
            "camera %s: fx %.1f fy %.1f, RMS %.3f px over %d views",
            det.name,
            r.K[0, 0],
            r.K[1, 1],
            r.rms_px,
            len(r.frames),
        )
    intr = np.stack([_intrinsic_vector(results[n].K, results[n].dist) for n in names])
    report = CalibrationReport(board=board.spec())
    cams = [
        {
            "name": d.name,
            "source": d.source,
            "image_size": [int(d.image_size[0]), int(d.image_size[1])],
            "frames_tried": int(d.tried),
            "frames_with_board": len(d.frames),
            "intrinsics_rms_px": results[d.name].rms_px,
        }
        for d in dets
    ]
    T_cam = np.tile(np.eye(4), (V, 1, 1))
    T_board: dict[int, np.ndarray] = {}
    if not intrinsics_only and V > 1:
        if board.orientation_ambiguous:
            logger.warning(
                "board %s: the corner numbering of a checkerboard with COLS + ROWS even or COLS == ROWS "
                "is ambiguous under rotation, so cameras may disagree on the board pose; prefer a board "
                "with one odd and one even number of squares, or a ChArUco board",
                board.spec(),
            )
        T_cam, T_board = initial_extrinsics(
            [results[n] for n in names], board, reference=ref, min_shared=min_shared
        )
        shared_frames = [sum(1 for f in d.frames if sum(f in o.frames for o in dets) >= 2) for d in dets]
        init = _extrinsic_rms(dets, board, intr, T_cam, T_board, min_views=1 if refine_intrinsics else 2)
        for c, cam in enumerate(cams):
            cam["frames_shared"] = int(shared_frames[c])
            cam["extrinsics_init_rms_px"] = _finite(init[c])
        report.reference = names[ref]
        if bundle_adjust_extrinsics:
            ba = bundle_adjust(
                dets,
                board,
                intr,
                T_cam,
                T_board,
                reference=ref,
                refine_intrinsics=refine_intrinsics,
                fix_k3=fix_k3,
                loss=loss,
                loss_scale_px=loss_scale_px,
            )
            T_cam, intr = ba["T_cam"], ba["intrinsics"]
            T_board = {**T_board, **ba["T_board"]}
            for c, cam in enumerate(cams):
                cam["bundle_adjusted_rms_px"] = _finite(ba["rms_px"][c])
                cam["observations"] = int(ba["observations"][c])
            report.bundle_adjusted = True
            report.bundle_adjustment = {
                "frames": ba["frames"],
                "loss": loss,
                "loss_scale_px": float(loss_scale_px),
                "refine_intrinsics": bool(refine_intrinsics),
                "cost_initial": ba["cost_initial"],
                "cost_final": ba["cost_final"],
                "function_evaluations": ba["nfev"],
            }
        report.world = world
        if world == "board":
            if world_frame is None:
                seen = [f for f in dets[ref].frames if f in T_board]
                if not seen:
                    raise CalibrateError(
                        f"world='board': the reference camera {names[ref]!r} never sees the board"
                    )
                world_frame = int(min(seen))
            if int(world_frame) not in T_board:
                raise CalibrateError(
                    f"world frame {world_frame}: no camera saw the board then; frames with the board: "
                    f"{sorted(T_board)[:20]}{' ...' if len(T_board) > 20 else ''}"
                )
            report.world_frame = int(world_frame)
            # world axes: X = board x, Y = -board y, Z = -board z (out of the printed face)
            T_world_to_ref = T_board[int(world_frame)] @ np.diag([1.0, -1.0, -1.0, 1.0])
            T_cam = T_cam @ T_world_to_ref
            inv = _inverse(T_world_to_ref)
            T_board = {f: inv @ T for f, T in T_board.items()}
    elif not intrinsics_only and V == 1:
        logger.info("one camera: extrinsics are the identity (the camera is the world)")
    for c, cam in enumerate(cams):
        cam.update(dict(zip(INTRINSIC_NAMES, (float(v) for v in intr[c]), strict=True)))
    report.cameras = cams

    Ks, dists = zip(*(_K_dist(v) for v in intr), strict=True)
    overall = [c.get("bundle_adjusted_rms_px") or c.get("intrinsics_rms_px") for c in cams]
    rig = CameraRig(
        K=torch.from_numpy(np.stack(Ks)),
        R=torch.from_numpy(np.ascontiguousarray(T_cam[:, :3, :3])),
        t=torch.from_numpy(np.ascontiguousarray(T_cam[:, :3, 3])),
        dist=torch.from_numpy(np.stack(dists)),
        names=tuple(names),
        image_size=torch.tensor([list(d.image_size) for d in dets], dtype=torch.int64),
        meta={
            "source": f"mvpose calibrate, board {board.spec()}"
            + (", intrinsics only (R = I, t = 0)" if intrinsics_only else f", world = {report.world}"),
            "toml_metadata": {
                "adjusted": bool(report.bundle_adjusted),
                "error": float(np.sqrt(np.nanmean(np.square(np.asarray(overall, dtype=float))))),
            },
        },
    )
    return CalibrationResult(rig=rig, report=report, intrinsics=results, board_poses=T_board)


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _extrinsic_rms(dets, board, intr, T_cam, T_board, min_views: int = 2) -> np.ndarray:
    """RMS px per camera of the board poses ``T_board`` seen by at least ``min_views`` cameras."""
    counts: dict[int, int] = {}
    for det in dets:
        for f in det.frames:
            counts[f] = counts.get(f, 0) + 1
    frames = np.array(sorted(f for f in T_board if counts.get(f, 0) >= min_views), dtype=np.int64)
    if not len(frames):
        return np.full(len(dets), np.nan)
    obs = _observations(dets, board, frames)
    Tb = np.stack([T_board[int(f)] for f in frames])
    return _rms_per_camera(_reprojection(obs, T_cam, Tb, intr), obs.cam, len(dets))
