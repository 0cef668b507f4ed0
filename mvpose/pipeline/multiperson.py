"""Several people: match detections across views, triangulate each person, track people over time.

Per frame (docs/infer.md, "Multi-person"), batched over all frames except the two greedy choices:

1. **Affinity.** For every pair of views ``(a, b)`` and every pair of detected people ``(p in a,
   q in b)``: the median, over their joints confident in both, of the symmetric epipolar distance
   ``(d(x_b, F x_a) + d(x_a, F^T x_b)) / 2`` (px, undistorted points, ``F`` from the calibration):
   one tensor computation for all frames, view pairs and people pairs. Fewer than ``min_joints``
   shared joints give no affinity.
2. **Candidates.** Every pair below ``epipolar_threshold_px`` seeds a person: its two-view skeleton
   (weighted DLT) is projected into the other views, and each takes its person closest to it
   (median reprojection error below ``reprojection_threshold_px``). Duplicates are merged; each
   candidate is solved by DLT over all its views, and a view whose median error exceeds the
   threshold leaves it.
3. **Clustering.** Candidates are taken greedily, most views first (then the lowest mean error), so
   that every detection belongs to one person at most (one person per view and cluster). People
   left out join a chosen cluster lacking their view if its 3D reprojects onto them. Each chosen
   cluster is triangulated with the engine of ``mvpose triangulate``
   (:func:`~mvpose.pipeline.triangulate.triangulate_frames`, ``method``); clusters with fewer than
   ``min_views`` views or ``min_joints`` 3D joints are rejected, and ``max_people`` keeps the best
   supported people of a frame.
4. **Tracking** (:func:`track_people`): Hungarian assignment (``scipy.optimize.linear_sum_assignment``)
   of the frame's people to live tracks on the mean 3D joint distance, gated at
   ``max_distance_mm``; an unmatched person starts a track, a track unseen for more than
   ``max_missing`` frames ends, tracks seen in fewer than ``min_track_frames`` frames are dropped.
"""

from __future__ import annotations

import itertools
import logging
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from mvpose.geometry.camera import CameraRig
from mvpose.pipeline.detections import Detections
from mvpose.pipeline.triangulate import (
    _read_result_file,
    _write_result_file,
    frames_without_detections,
    resolve_inputs,
    triangulate_frames,
    undistort_points,
)
from mvpose.skeleton import Skeleton

__all__ = [
    "MultiPersonResult",
    "fundamental_matrices",
    "epipolar_affinity",
    "select_clusters",
    "track_people",
    "associate_people",
    "infer_people",
    "write_multiperson_result",
    "read_multiperson_result",
    "format_multiperson_summary",
]

logger = logging.getLogger(__name__)

FORMAT = "mvpose-multiperson/1"
#: Elements of the largest (frames x view pairs x people x people x joints) block computed at once.
_BLOCK_ELEMENTS = 4_000_000


@dataclass
class MultiPersonResult:
    """3D joints of the tracked people of a capture.

    Attributes:
        points_3d_mm: ``(T, N, J, 3)`` world mm of the ``N`` tracks; NaN where a track is absent.
        reprojection_error_px: ``(T, N, V, J)`` px, projection (with distortion) vs. the raw
            detection, for every confident detection of the track's people (NaN elsewhere).
        views_used: ``(T, N, V, J)`` bool, the observations each 3D joint was solved from.
        person_index: ``(T, N, V)`` int64, the detected person of each view that belongs to the
            track (-1: none).
        track_ids: ``(N,)`` int64 track numbers (in order of first appearance, from 0).
        joint_names, camera_names, frame_indices, skeleton: as :class:`TriangulationResult`.
        camera_stats: per camera ``(V,)``: ``people_detected`` (detections with at least
            ``min_joints`` confident joints, over all frames), ``people_assigned`` (of those, the
            ones that belong to a track), ``assigned_fraction``, ``median_error_px``,
            ``p90_error_px`` (over used observations), ``frames_missing`` (frames without any
            detection).
        settings, warnings: options, inputs and problems met.
    """

    points_3d_mm: np.ndarray
    reprojection_error_px: np.ndarray
    views_used: np.ndarray
    person_index: np.ndarray
    track_ids: np.ndarray
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

    @property
    def num_tracks(self) -> int:
        return self.points_3d_mm.shape[1]

    def overall(self) -> dict[str, float]:
        """Tracks, people per frame, median / p90 reprojection error (px) over used observations."""
        err = self.reprojection_error_px[self.views_used]
        err = err[np.isfinite(err)]
        present = np.isfinite(self.points_3d_mm).all(-1).any(-1)  # (T, N)
        return {
            "tracks": int(self.num_tracks),
            "mean_people_per_frame": float(present.sum(1).mean()) if present.size else 0.0,
            "max_people_per_frame": int(present.sum(1).max()) if present.size else 0,
            "median_error_px": float(np.median(err)) if err.size else float("nan"),
            "p90_error_px": float(np.percentile(err, 90)) if err.size else float("nan"),
            "observations": int(err.size),
        }


# ------------------------------------------------------------------------------------------------
# Geometry of view pairs
# ------------------------------------------------------------------------------------------------


def _skew(v: torch.Tensor) -> torch.Tensor:
    """``(*, 3)`` -> cross-product matrices ``(*, 3, 3)``."""
    z = torch.zeros_like(v[..., 0])
    return torch.stack(
        [z, -v[..., 2], v[..., 1], v[..., 2], z, -v[..., 0], -v[..., 1], v[..., 0], z], -1
    ).reshape(*v.shape, 3)


def fundamental_matrices(rig: CameraRig, pairs: torch.Tensor) -> torch.Tensor:
    """Fundamental matrices ``(Q, 3, 3)`` of view pairs ``pairs (Q, 2)`` (``a, b``): for the
    undistorted pixels ``x_a, x_b`` of one world point, ``x_b^T F x_a = 0``.

    ``F = K_b^-T [t]_x R K_a^-1`` with the relative pose ``R = R_b R_a^T``, ``t = t_b - R t_a``."""
    a, b = pairs[:, 0], pairs[:, 1]
    R = rig.R[b] @ rig.R[a].transpose(-1, -2)
    t = rig.t[b] - (R @ rig.t[a][..., None])[..., 0]
    Kinv = torch.linalg.inv(rig.K)
    return Kinv[b].transpose(-1, -2) @ _skew(t) @ R @ Kinv[a]


def _view_pairs(V: int, device=None) -> torch.Tensor:
    return torch.tensor(list(itertools.combinations(range(V), 2)), dtype=torch.long, device=device).reshape(
        -1, 2
    )


def epipolar_affinity(uv: torch.Tensor, F: torch.Tensor, pairs: torch.Tensor, min_joints: int = 3):
    """Symmetric epipolar distance between every pair of people of every pair of views.

    Args:
        uv: ``(T, V, P, J, 2)`` undistorted px; NaN where a keypoint is missing or not confident.
        F: ``(Q, 3, 3)`` fundamental matrices of ``pairs (Q, 2)`` (see :func:`fundamental_matrices`).
        min_joints: joints two people must share (confident in both) to get an affinity.

    Returns:
        ``(T, Q, P, P)`` float64: median over the shared joints of
        ``(d(x_b, F x_a) + d(x_a, F^T x_b)) / 2`` px (row: person of view ``a``, column: of ``b``);
        ``inf`` with fewer than ``min_joints`` shared joints.
    """
    T, V, P, J, _ = uv.shape
    x = torch.cat([uv, torch.ones_like(uv[..., :1])], -1)  # (T, V, P, J, 3)
    xa, xb = x[:, pairs[:, 0]], x[:, pairs[:, 1]]  # (T, Q, P, J, 3)
    lb = torch.einsum("qij,tqpkj->tqpki", F, xa)  # epipolar lines in b of the points of a
    la = torch.einsum("qji,tqpkj->tqpki", F, xb)  # lines in a of the points of b (F^T x_b)
    # numerators for every (p in a, q in b): |l_b(p) . x_b(q)|, |x_a(p) . l_a(q)|
    nb = torch.einsum("tqpki,tqrki->tqprk", lb, xb).abs() / lb[..., :2].norm(dim=-1)[:, :, :, None]
    na = torch.einsum("tqpki,tqrki->tqprk", xa, la).abs() / la[..., :2].norm(dim=-1)[:, :, None]
    d = 0.5 * (nb + na)  # (T, Q, P, P, J), NaN where either keypoint is missing
    shared = torch.isfinite(d).sum(-1)
    med = torch.nanmedian(d, dim=-1).values if J else d.sum(-1)
    return torch.where(shared >= min_joints, med, float("inf"))


# ------------------------------------------------------------------------------------------------
# Clusters across views
# ------------------------------------------------------------------------------------------------


def select_clusters(frame: np.ndarray, sel: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Greedy choice of disjoint clusters, best ``score`` first, within each frame.

    Args:
        frame: ``(C,)`` frame of each candidate cluster.
        sel: ``(C, V)`` person index per view (-1: none).
        score: ``(C,)``, higher is better.

    Returns:
        ``(C,)`` bool: the chosen clusters; no detection (frame, view, person) is in two of them.
    """
    C, V = sel.shape
    chosen = np.zeros(C, bool)
    taken: set[tuple[int, int, int]] = set()
    for c in np.lexsort((-score, frame)):
        dets = [(int(frame[c]), v, int(sel[c, v])) for v in range(V) if sel[c, v] >= 0]
        if any(d in taken for d in dets):
            continue
        taken.update(dets)
        chosen[c] = True
    return chosen


def _seeds(uv, present, pairs, F, min_joints, threshold_px, progress):
    """Pairs of detections of two views whose epipolar affinity is below ``threshold_px``:
    ``frame, view a, view b, person a, person b``, ``(H,)`` each."""
    T, V, P, J, _ = uv.shape
    block = max(1, _BLOCK_ELEMENTS // max(1, len(pairs) * P * P * J))
    out = [np.zeros((5, 0), np.int64)]
    pres = torch.from_numpy(present.transpose(1, 0, 2))  # (T, V, P)
    for s in tqdm(range(0, T, block), desc="associate", disable=not progress, leave=False):
        cost = epipolar_affinity(uv[s : s + block], F, pairs, min_joints)  # (Tb, Q, P, P)
        pb = pres[s : s + block]
        ok = pb[:, pairs[:, 0]][..., :, None] & pb[:, pairs[:, 1]][..., None, :] & (cost < threshold_px)
        t, q, p, r = ok.nonzero(as_tuple=True)
        out.append(
            np.stack([(t + s).numpy(), pairs[q, 0].numpy(), pairs[q, 1].numpy(), p.numpy(), r.numpy()])
        )
    return np.concatenate(out, 1)


def _complete(kp, present, rig, frame, sel, X, min_confidence, threshold_px):
    """Every view a cluster lacks takes its present person whose keypoints lie closest to the
    cluster's 3D reprojection (median error below ``threshold_px``)."""
    C, V = sel.shape
    if C == 0:
        return sel
    proj = rig.project(torch.from_numpy(X)).numpy()  # (C, V, J, 2)
    obs = kp[:, frame].transpose(1, 0, 2, 3, 4)  # (C, V, P, J, 3)
    ok = np.nan_to_num(obs[..., 2], nan=0.0) >= min_confidence
    e = np.where(ok, np.linalg.norm(proj[:, :, None] - obs[..., :2], axis=-1), np.nan)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(e, axis=-1)  # (C, V, P)
    cand = present[:, frame].transpose(1, 0, 2) & (med < threshold_px) & (sel[:, :, None] < 0)
    best = np.where(cand, med, np.inf).argmin(-1)
    return np.where(cand.any(-1), best, sel)


# ------------------------------------------------------------------------------------------------
# Per-frame people: clusters, triangulated and checked
# ------------------------------------------------------------------------------------------------


@dataclass
class _People:
    """Accepted clusters of all frames: ``frame (C,)``, ``sel (C, V)``, ``X (C, J, 3)``,
    ``err``/``used`` ``(C, V, J)``."""

    frame: np.ndarray
    sel: np.ndarray
    X: np.ndarray
    err: np.ndarray
    used: np.ndarray


def _gather(kp: np.ndarray, frame: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """``kp (V, T, P, J, C)`` at clusters ``(frame (K,), sel (K, V))`` -> ``(V, K, J, C)``."""
    V = kp.shape[0]
    out = kp[np.arange(V)[:, None], frame[None, :], np.clip(sel.T, 0, None)]
    return np.where((sel.T >= 0)[..., None, None], out, np.nan)


def _solve(rig, kp, uv, frame, sel, method, min_confidence, threshold_px, generator):
    """Triangulate clusters (``uv``: the undistorted ``kp``); per view median reprojection error
    over confident joints ``(C, V)``."""
    X, err, used = triangulate_frames(
        rig,
        _gather(kp, frame, sel),
        method=method,
        min_confidence=min_confidence,
        threshold_px=threshold_px,
        generator=generator,
        undistorted=_gather(uv, frame, sel),
    )
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(err, axis=-1)  # (C, V)
    return X, err, used, med


def associate_people(
    keypoints: np.ndarray,
    rig: CameraRig,
    *,
    min_confidence: float = 0.3,
    min_joints: int = 5,
    min_views: int = 2,
    epipolar_threshold_px: float = 30.0,
    reprojection_threshold_px: float = 30.0,
    max_people: int | None = None,
    method: str = "robust+refine",
    threshold_px: float = 25.0,
    progress: bool = False,
    chunk: int = 4096,
) -> _People:
    """Steps 1-3 of the module docstring on ``keypoints (V, T, P, J, 3)`` (raw px, confidence)."""
    V, T, P, J, _ = keypoints.shape
    kp = keypoints
    conf = np.nan_to_num(kp[..., 2], nan=0.0)
    ok = np.isfinite(kp).all(-1) & (conf >= min_confidence)  # (V, T, P, J)
    present = ok.sum(-1) >= min_joints  # (V, T, P)
    rig = rig.to(dtype=torch.float64)
    pairs = _view_pairs(V)
    F = fundamental_matrices(rig, pairs)
    px = torch.from_numpy(np.ascontiguousarray(kp[..., :2].transpose(1, 0, 2, 3, 4)))  # (T, V, P, J, 2)
    uv = undistort_points(rig, px.flatten(2, 3)).view(T, V, P, J, 2)
    uv_np = uv.numpy().transpose(1, 0, 2, 3, 4)  # (V, T, P, J, 2)
    uv = torch.where(torch.from_numpy(ok.transpose(1, 0, 2, 3))[..., None], uv, float("nan"))
    frame, va, vb, pa, pb = _seeds(uv, present, pairs, F, min_joints, epipolar_threshold_px, progress)
    gen = torch.Generator().manual_seed(0)
    dlt = ("dlt", min_confidence, threshold_px, gen)
    sel = np.full((len(frame), V), -1, np.int64)
    h = np.arange(len(frame))
    sel[h, va], sel[h, vb] = pa, pb
    # each seed: a two-view skeleton, completed by the other views' closest people
    for s in range(0, len(frame), chunk):
        f, sl = frame[s : s + chunk], sel[s : s + chunk]
        X2 = _solve(rig, kp, uv_np, f, sl, *dlt)[0]
        sel[s : s + chunk] = _complete(kp, present, rig, f, sl, X2, min_confidence, reprojection_threshold_px)
    if len(frame):  # several seeds give the same cluster
        _, first = np.unique(np.concatenate([frame[:, None], sel], 1), axis=0, return_index=True)
        first = np.sort(first)
        frame, sel = frame[first], sel[first]
    # candidates scored by DLT: a view that disagrees with its cluster's 3D leaves it
    C = len(frame)
    if C == 0:
        e = np.zeros((0, V, J))
        return _People(frame, sel, np.zeros((0, J, 3)), e, e.astype(bool))
    X, err = np.full((C, J, 3), np.nan), np.full((C, V, J), np.nan)
    used, med = np.zeros((C, V, J), bool), np.full((C, V), np.nan)
    for s in range(0, C, chunk):
        c = slice(s, s + chunk)
        X[c], err[c], used[c], med[c] = _solve(rig, kp, uv_np, frame[c], sel[c], *dlt)
    bad = (sel >= 0) & ~(med < reprojection_threshold_px)
    if bad.any():
        sel = np.where(bad, -1, sel)
        redo = np.flatnonzero(bad.any(1))
        X[redo], err[redo], used[redo], med[redo] = _solve(rig, kp, uv_np, frame[redo], sel[redo], *dlt)
    n_views = ((used.sum(-1) >= min_joints) & (sel >= 0)).sum(-1)
    n_joints = np.isfinite(X).all(-1).sum(-1)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        mean_err = np.nanmean(np.where(used, err, np.nan).reshape(C, -1), axis=1)
    valid = (n_views >= min_views) & (n_joints >= min_joints)
    # most views first, then the lowest mean reprojection error
    score = n_views * 1e6 - np.nan_to_num(mean_err, nan=1e5)
    idx = np.flatnonzero(valid)[select_clusters(frame[valid], sel[valid], score[valid])]
    frame, sel, X = frame[idx], sel[idx], X[idx]
    # people left out are tried against the clusters lacking their view
    sel, _ = _adopt(kp, present, rig, frame, sel, X, min_confidence, reprojection_threshold_px)
    if len(frame) == 0:
        e = np.zeros((0, V, J))
        return _People(frame, sel, X, e, e.astype(bool))
    # the chosen people, with the full method
    X, err, used, med = _solve(rig, kp, uv_np, frame, sel, method, min_confidence, threshold_px, gen)
    n_views = ((used.sum(-1) >= min_joints) & (sel >= 0)).sum(-1)
    n_joints = np.isfinite(X).all(-1).sum(-1)
    keep = (n_views >= min_views) & (n_joints >= min_joints)
    if max_people is not None:
        keep &= _rank_within_frame(frame, n_views * (J + 1) + n_joints) < max_people
    frame, sel, X, err, used = frame[keep], sel[keep], X[keep], err[keep], used[keep]
    return _People(frame, sel, X, err, used)


def _rank_within_frame(frame: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Rank ``(C,)`` of each cluster within its frame by decreasing ``score`` (0: best)."""
    order = np.lexsort((-score, frame))
    rank = np.empty(len(frame), np.int64)
    f = frame[order]
    start = np.r_[0, np.flatnonzero(np.diff(f)) + 1]
    pos = np.arange(len(f)) - np.repeat(start, np.diff(np.r_[start, len(f)]))
    rank[order] = pos
    return rank


def _adopt(kp, present, rig, frame, sel, X, min_confidence, threshold_px):
    """Give each unclustered person (present, in no cluster) to the cluster lacking its view whose
    3D reprojects onto it best (median error below ``threshold_px``); one person per (cluster, view).
    Returns the new ``sel`` and the mask of changed clusters."""
    V, T, P, J, _ = kp.shape
    C = len(frame)
    taken = np.zeros((V, T, P), bool)
    cv, cc = np.nonzero(sel.T >= 0)
    taken[cv, frame[cc], sel.T[cv, cc]] = True
    free = present & ~taken  # (V, T, P)
    changed = np.zeros(C, bool)
    if not free.any() or C == 0:
        return sel, changed
    proj = rig.project(torch.from_numpy(X)).numpy()  # (C, V, J, 2)
    obs = kp[:, frame].transpose(1, 0, 2, 3, 4)  # (C, V, P, J, 3)
    ok = np.nan_to_num(obs[..., 2], nan=0.0) >= min_confidence
    e = np.linalg.norm(proj[:, :, None] - obs[..., :2], axis=-1)
    e = np.where(ok, e, np.nan)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(e, axis=-1)  # (C, V, P)
    cand = (sel[:, :, None] < 0) & free[:, frame].transpose(1, 0, 2) & (med < threshold_px)
    cand &= ok.sum(-1) >= 3
    if not cand.any():
        return sel, changed
    sel = sel.copy()
    c_i, v_i, p_i = np.nonzero(cand)
    order = np.argsort(med[c_i, v_i, p_i], kind="stable")
    used_det: set[tuple[int, int, int]] = set()
    for k in order:  # best first; a detection joins one cluster, a cluster gets one person per view
        c, v, p = int(c_i[k]), int(v_i[k]), int(p_i[k])
        key = (v, int(frame[c]), p)
        if key in used_det or sel[c, v] >= 0:
            continue
        sel[c, v] = p
        used_det.add(key)
        changed[c] = True
    return sel, changed


# ------------------------------------------------------------------------------------------------
# Tracking
# ------------------------------------------------------------------------------------------------


def _pose_distance(A: np.ndarray, B: np.ndarray, min_joints: int = 3) -> np.ndarray:
    """Mean distance (mm) over the joints finite in both, ``A (M, J, 3)`` x ``B (N, J, 3)`` -> ``(M, N)``;
    the centroid distance where fewer than ``min_joints`` joints are shared."""
    d = np.linalg.norm(A[:, None] - B[None], axis=-1)  # (M, N, J)
    shared = np.isfinite(d)
    n = shared.sum(-1)
    mean = np.where(shared, d, 0.0).sum(-1) / np.maximum(n, 1)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        ca, cb = np.nanmean(A, axis=1), np.nanmean(B, axis=1)
    cen = np.linalg.norm(ca[:, None] - cb[None], axis=-1)
    out = np.where(n >= min_joints, mean, cen)
    return np.where(np.isfinite(out), out, np.inf)


def track_people(
    frame: np.ndarray,
    points: np.ndarray,
    num_frames: int,
    *,
    max_distance_mm: float = 500.0,
    max_missing: int = 10,
    min_track_frames: int = 1,
) -> np.ndarray:
    """Link per-frame people into tracks.

    Args:
        frame: ``(C,)`` frame position of each person (0 .. ``num_frames`` - 1).
        points: ``(C, J, 3)`` mm.
        max_distance_mm: a person joins a track only if the mean joint distance to the track's
            last pose is below this.
        max_missing: a track unseen for more than this many frames ends.
        min_track_frames: tracks seen in fewer frames are dropped (their people get -1).

    Returns:
        ``(C,)`` int64 track of each person (0, 1, ... in order of first appearance; -1: dropped).
    """
    C = len(frame)
    track = np.full(C, -1, np.int64)
    last_pose: list[np.ndarray] = []
    last_seen: list[int] = []
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(num_frames + 1))
    for t in range(num_frames):
        idx = order[bounds[t] : bounds[t + 1]]
        if not len(idx):
            continue
        live = [k for k in range(len(last_pose)) if t - last_seen[k] <= max_missing + 1]
        assigned = np.full(len(idx), -1, np.int64)
        if live:
            cost = _pose_distance(np.stack([last_pose[k] for k in live]), points[idx])
            big = 1e12
            r, c = linear_sum_assignment(np.where(cost < max_distance_mm, cost, big))
            ok = cost[r, c] < max_distance_mm
            assigned[c[ok]] = np.asarray(live)[r[ok]]
        for i, k in zip(idx, assigned):
            if k < 0:
                k = len(last_pose)
                last_pose.append(points[i])
                last_seen.append(t)
            else:
                # keep the last known position of joints missing in this frame
                last_pose[k] = np.where(np.isfinite(points[i]), points[i], last_pose[k])
                last_seen[k] = t
            track[i] = k
    if min_track_frames > 1 and C:
        counts = np.bincount(track[track >= 0], minlength=len(last_pose))
        short = counts < min_track_frames
        track = np.where((track >= 0) & ~short[np.clip(track, 0, None)], track, -1)
    # renumber in order of first appearance
    kept = np.unique(track[track >= 0])
    first = np.array([frame[track == k].min() for k in kept], np.int64)
    new = np.full(max(len(last_pose), 1), -1, np.int64)
    new[kept[np.argsort(first, kind="stable")]] = np.arange(len(kept))
    return np.where(track >= 0, new[np.clip(track, 0, None)], -1)


# ------------------------------------------------------------------------------------------------
# The whole capture
# ------------------------------------------------------------------------------------------------


def infer_people(
    calib,
    detections,
    skeleton: str | Skeleton | None = None,
    *,
    method: str = "robust+refine",
    min_confidence: float = 0.3,
    threshold_px: float = 25.0,
    min_joints: int = 5,
    min_views: int = 2,
    epipolar_threshold_px: float = 30.0,
    reprojection_threshold_px: float = 30.0,
    max_people: int | None = None,
    max_distance_mm: float = 500.0,
    max_missing: int = 10,
    min_track_frames: int = 1,
    subject=None,
    progress: bool = True,
) -> MultiPersonResult:
    """Multi-person inference on a capture: association across views, triangulation, tracking.

    Args:
        calib, detections, skeleton, subject: as :func:`~mvpose.pipeline.triangulate.triangulate_capture`.
        method, threshold_px, min_confidence: the triangulation of each person (same engine).
        min_joints: confident joints a detection needs to take part; 3D joints a person needs.
        min_views: views a person needs.
        epipolar_threshold_px, reprojection_threshold_px: see the module docstring (the defaults
            suit 1-2k px images; on Shelf, PCP is the same within 0.2 points from 20 to 30 px).
        max_people: at most this many people per frame (the best supported).
        max_distance_mm, max_missing, min_track_frames: see :func:`track_people`.

    Returns:
        :class:`MultiPersonResult`.
    """
    if max_people is not None and int(max_people) < 1:
        raise ValueError(f"max_people must be >= 1, got {max_people}")
    if int(min_views) < 2:
        raise ValueError(f"min_views must be >= 2, got {min_views}")
    rig, det, mapping, how, warnings = resolve_inputs(calib, detections, skeleton, subject)
    V, T, P, J = det.num_views, det.num_frames, det.num_persons, det.num_joints
    kp = det.keypoints
    people = associate_people(
        kp,
        rig,
        min_confidence=min_confidence,
        min_joints=min_joints,
        min_views=min_views,
        epipolar_threshold_px=epipolar_threshold_px,
        reprojection_threshold_px=reprojection_threshold_px,
        max_people=max_people,
        method=method,
        threshold_px=threshold_px,
        progress=progress,
    )
    track = track_people(
        people.frame,
        people.X,
        T,
        max_distance_mm=max_distance_mm,
        max_missing=max_missing,
        min_track_frames=min_track_frames,
    )
    N = int(track.max()) + 1 if len(track) and track.max() >= 0 else 0
    X = np.full((T, N, J, 3), np.nan)
    err = np.full((T, N, V, J), np.nan)
    used = np.zeros((T, N, V, J), bool)
    person = np.full((T, N, V), -1, np.int64)
    k = track >= 0
    f, n = people.frame[k], track[k]
    X[f, n], err[f, n], used[f, n], person[f, n] = people.X[k], people.err[k], people.used[k], people.sel[k]
    # per-camera figures
    conf = np.nan_to_num(kp[..., 2], nan=0.0)
    present = ((conf >= min_confidence) & np.isfinite(kp).all(-1)).sum(-1) >= min_joints  # (V, T, P)
    assigned = np.zeros_like(present)
    tt, nn, vv = np.nonzero(person >= 0)
    assigned[vv, tt, person[tt, nn, vv]] = True
    n_det = present.sum((1, 2))
    n_ass = (assigned & present).sum((1, 2))
    err_v = np.where(used, err, np.nan).transpose(2, 0, 1, 3).reshape(V, -1)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        med, p90 = np.nanpercentile(err_v, 50, axis=1), np.nanpercentile(err_v, 90, axis=1)
    stats = {
        "people_detected": n_det.astype(np.int64),
        "people_assigned": n_ass.astype(np.int64),
        "assigned_fraction": np.where(n_det > 0, n_ass / np.maximum(n_det, 1), np.nan),
        "median_error_px": med,
        "p90_error_px": p90,
        "frames_missing": frames_without_detections(kp),
    }
    for v, name in enumerate(rig.names):
        label = f"camera {name} ({det.camera_names[v]})"
        if n_det[v] == 0:
            warnings.append(f"{label}: no person detected in any frame")
        elif n_ass[v] < 0.25 * n_det[v]:
            warnings.append(
                f"{label}: only {n_ass[v]} of its {n_det[v]} detected people agree with the other cameras: "
                "check its calibration"
            )
    if N == 0:
        warnings.append("no person was seen consistently by two cameras in any frame")
    settings = {
        "mode": "multi-person",
        "method": method,
        "min_confidence": float(min_confidence),
        "threshold_px": float(threshold_px),
        "min_joints": int(min_joints),
        "min_views": int(min_views),
        "epipolar_threshold_px": float(epipolar_threshold_px),
        "reprojection_threshold_px": float(reprojection_threshold_px),
        "max_people": None if max_people is None else int(max_people),
        "max_distance_mm": float(max_distance_mm),
        "max_missing": int(max_missing),
        "min_track_frames": int(min_track_frames),
        "calibration": str(calib) if not isinstance(calib, CameraRig) else str(rig.meta.get("source", "")),
        "detections": str(detections)
        if not isinstance(detections, Detections)
        else [str(p) for p in det.source],
        "camera_mapping": dict(mapping),
        "camera_matching": how,
        "detection_cameras": list(det.camera_names),
        "max_persons_detected": int(P),
    }
    return MultiPersonResult(
        X,
        err,
        used,
        person,
        np.arange(N, dtype=np.int64),
        tuple(det.joint_names),
        tuple(rig.names),
        np.asarray(det.frame_indices, np.int64),
        det.skeleton,
        stats,
        settings,
        warnings,
    )


# ------------------------------------------------------------------------------------------------
# Files and report
# ------------------------------------------------------------------------------------------------


def write_multiperson_result(result: MultiPersonResult, path) -> Path:
    """Write ``.npz`` or ``.json`` (the layout of ``write_result``, with a track axis ``N`` after
    the frame axis and ``track_ids``); atomic."""
    return _write_result_file(result, path, FORMAT, {"track_ids": result.track_ids})


_INT_STATS = ("people_detected", "people_assigned", "frames_missing")


def read_multiperson_result(path) -> MultiPersonResult:
    """Read a file written by :func:`write_multiperson_result`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"result file '{path}' not found")
    return MultiPersonResult(**_read_result_file(path, FORMAT, _INT_STATS))


def _fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, spec)


def format_multiperson_summary(result: MultiPersonResult, max_warnings: int = 10) -> str:
    """Per-camera table, tracks (frames seen, views, error) and warnings."""
    T, N, V, J = result.reprojection_error_px.shape
    s, o = result.camera_stats, result.overall()
    det_names = result.settings.get("detection_cameras", list(result.camera_names))
    lines = [
        f"multi-person: {T} frames, {V} cameras, {J} joints"
        f"{f' ({result.skeleton})' if result.skeleton else ''}: {N} tracks, "
        f"{o['mean_people_per_frame']:.2f} people per frame on average (at most {o['max_people_per_frame']})",
        "",
        f"{'camera':<12} {'detections':<14} {'missing':>8} {'people':>8} {'assigned':>9} {'median px':>10} "
        f"{'p90 px':>8}",
    ]
    for v, name in enumerate(result.camera_names):
        lines.append(
            f"{name:<12} {det_names[v] if v < len(det_names) else '':<14} {int(s['frames_missing'][v]):>8d} "
            f"{int(s['people_detected'][v]):>8d} {_fmt(100 * s['assigned_fraction'][v]):>8}% "
            f"{_fmt(s['median_error_px'][v]):>10} {_fmt(s['p90_error_px'][v]):>8}"
        )
    lines += ["", f"{'track':>6} {'frames':>7} {'first':>6} {'last':>6} {'views':>6} {'median px':>10}"]
    present = np.isfinite(result.points_3d_mm).all(-1).any(-1)  # (T, N)
    for n in range(N):
        f = np.flatnonzero(present[:, n])
        views = (result.person_index[f, n] >= 0).sum(-1).mean() if len(f) else float("nan")
        e = result.reprojection_error_px[:, n][result.views_used[:, n]]
        e = e[np.isfinite(e)]
        first, last = (
            (int(result.frame_indices[f[0]]), int(result.frame_indices[f[-1]])) if len(f) else (-1, -1)
        )
        lines.append(
            f"{int(result.track_ids[n]):>6d} {len(f):>7d} {first:>6d} {last:>6d} {_fmt(views):>6} "
            f"{_fmt(float(np.median(e)) if e.size else float('nan')):>10}"
        )
    lines.append(
        f"\nreprojection error: median {_fmt(o['median_error_px'])} px, p90 {_fmt(o['p90_error_px'])} px "
        f"over {o['observations']} observations used"
    )
    if result.warnings:
        lines += ["", f"warnings ({len(result.warnings)}):"]
        lines += [f"  - {w}" for w in result.warnings[:max_warnings]]
        if len(result.warnings) > max_warnings:
            lines.append(f"  ... and {len(result.warnings) - max_warnings} more")
    return "\n".join(lines)
