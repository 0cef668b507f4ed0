"""Single-person association: in every frame, pick the person of each camera that is the same body.

Detectors list the people of an image in no particular order, and bystanders appear in some
views. :func:`select_single_person` chooses, per frame, one person (or none) per camera so that the
choices agree geometrically, batched over frames; the rule is documented in docs/triangulate.md.

A *selection* assigns to each view a person index or ``-1`` (none). It is scored by triangulating
all joints of the selected persons with the weighted DLT (undistorted pixels, weights = confidences
at or above ``min_confidence``) and reprojecting them:

* a view is *active* when its person has at least ``min_joints`` confident, triangulated joints;
* a view *agrees* when the median reprojection error of those joints is below ``threshold_px``;
* a selection is *valid* when every active view agrees and at least two views are active.

The best selection of a frame has the most active views, then the lowest median reprojection error
over all its confident joints. Selections within ``tie_px`` of that error whose 3D centroids lie
more than ``tie_mm`` apart are a tie (e.g. two people seen equally well): the one closest to a
reference centroid wins. The reference is the centroid chosen at the last unambiguous frame before
it (at the start of a chunk: the previous chunk's last choice; else the next unambiguous frame;
else the first frame's choice). This keeps the whole tie-break batched over frames.

Candidate selections are every combination of (persons + none) over views when there are at most
``max_combinations`` of them; combinations holding two persons whose two-view skeleton reprojects
above ``2 * threshold_px`` in one of their views (they cannot be valid) are not triangulated.
Otherwise a pairwise scheme: each pair of (view, person) seeds a 3D skeleton by two-view DLT,
every other view takes its person closest to that skeleton (if below ``threshold_px``), and the
completed selections are scored as above.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mvpose.geometry.camera import CameraRig
from mvpose.geometry.triangulation import project_pinhole, reprojection_error, triangulate_dlt

__all__ = ["Association", "select_single_person"]

logger = logging.getLogger(__name__)

#: Elements of the largest (selections x frames x views x joints) block scored at once.
_BLOCK_ELEMENTS = 4_000_000


@dataclass
class Association:
    """Per-frame outcome of :func:`select_single_person`.

    Attributes:
        person_index: ``(T, V)`` int64, the person chosen in each view (``-1``: none).
        num_views: ``(T,)`` views used by the chosen selection (0: no valid selection).
        error_px: ``(T,)`` median reprojection error (px, undistorted) of the chosen selection.
        ambiguous: ``(T,)`` bool, frames decided by the temporal tie-break.
        centroid_mm: ``(T, 3)`` centroid of the chosen selection's DLT skeleton (NaN if none).
        reference_centroid: ``(3,)`` centroid chosen at the last frame with a choice (pass it to the
            next chunk as ``reference_centroid``).
        num_candidates: number of selections scored per frame.
        scheme: ``"exhaustive"``, ``"pairwise"`` or ``"single"`` (one person per camera: nothing to choose).
    """

    person_index: np.ndarray
    num_views: np.ndarray
    error_px: np.ndarray
    ambiguous: np.ndarray
    centroid_mm: np.ndarray
    reference_centroid: np.ndarray | None
    num_candidates: int
    scheme: str


def _nanmedian(x: Tensor, dim: int) -> Tensor:
    return torch.nanmedian(x, dim=dim).values if x.shape[dim] else x.sum(dim) * float("nan")


def _score(
    sel: Tensor, frame: Tensor, uv: Tensor, w: Tensor, proj: Tensor, threshold_px: float, min_joints: int
):
    """Score flat selections ``sel (N, V)`` of frames ``frame (N,)``.

    ``uv (T, V, P, J, 2)`` undistorted px (NaN where unusable), ``w (T, V, P, J)``. Returns
    ``active (N, V)``, ``valid (N,)``, ``num_active (N,)``, ``error (N,)`` px and ``centroid (N, 3)`` mm."""
    V = uv.shape[1]
    vi = torch.arange(V, device=uv.device)[None, :]
    idx = sel.clamp(min=0)
    uv_s = uv[frame[:, None], vi, idx]  # (N, V, J, 2)
    w_s = w[frame[:, None], vi, idx] * (sel >= 0)[..., None]
    X = triangulate_dlt(uv_s, proj, w_s)  # (N, J, 3)
    err = reprojection_error(X, uv_s, proj)  # (N, V, J)
    obs = (w_s > 0) & torch.isfinite(err)
    err = torch.where(obs, err, float("nan"))
    active = obs.sum(-1) >= min_joints
    agree = ~active | (_nanmedian(err, -1) < threshold_px)
    num_active = active.sum(-1)
    valid = agree.all(-1) & (num_active >= 2)
    error = _nanmedian(torch.where(active[..., None], err, float("nan")).flatten(-2), -1)
    finite = torch.isfinite(X).all(-1, keepdim=True)
    centroid = torch.where(finite, X, 0.0).sum(-2) / finite.sum(-2).clamp(min=1)
    centroid = torch.where(finite.any(-2), centroid, float("nan"))
    return active, valid, num_active, error, centroid


def _seeds(uv: Tensor, w: Tensor, proj: Tensor):
    """Two-view skeletons of every pair of views and every pair of their persons.

    Returns ``va, vb, pa, pb`` (``(H,)``, ``H = V (V - 1) / 2 * P^2``, pairs in
    ``itertools.combinations`` order, persons row-major) and ``X (H, T, J, 3)`` mm."""
    T, V, P = uv.shape[:3]
    dev = uv.device
    pairs = torch.tensor(list(itertools.combinations(range(V), 2)), dtype=torch.long, device=dev).reshape(
        -1, 2
    )
    pp = torch.cartesian_prod(torch.arange(P, device=dev), torch.arange(P, device=dev)).reshape(-1, 2)
    va, vb = pairs[:, 0].repeat_interleave(len(pp)), pairs[:, 1].repeat_interleave(len(pp))
    pa, pb = pp[:, 0].repeat(len(pairs)), pp[:, 1].repeat(len(pairs))
    ti = torch.arange(T, device=dev)[None, :]
    seed_uv = torch.stack(
        [uv[ti, va[:, None], pa[:, None]], uv[ti, vb[:, None], pb[:, None]]], 2
    )  # (H,T,2,J,2)
    seed_w = torch.stack([w[ti, va[:, None], pa[:, None]], w[ti, vb[:, None], pb[:, None]]], 2)
    seed_P = torch.stack([proj[va], proj[vb]], 1)[:, None]  # (H, 1, 2, 3, 4)
    X = triangulate_dlt(seed_uv, seed_P, seed_w)
    return va, vb, pa, pb, X, seed_uv, seed_w, seed_P


def _compatible(
    combos: Tensor, uv: Tensor, w: Tensor, proj: Tensor, present: Tensor, limit_px: float, min_joints: int
):
    """``(C, T)``: combination ``combos (C, V)`` passes the pairwise pre-check in each frame.

    Two chosen persons are incompatible when the two-view skeleton they give reprojects with a
    median error above ``limit_px`` in either of the two views (a selection holding them cannot
    be valid); choosing a person absent from the frame duplicates choosing none and is skipped."""
    T, V, P = uv.shape[:3]
    va, vb, pa, pb, X, seed_uv, seed_w, seed_P = _seeds(uv, w, proj)
    e = (project_pinhole(X, seed_P) - seed_uv).norm(dim=-1)  # (H, T, 2, J)
    obs = (seed_w > 0) & torch.isfinite(e)
    med = _nanmedian(torch.where(obs, e, float("nan")), -1)  # (H, T, 2)
    bad = ((med >= limit_px) & (obs.sum(-1) >= min_joints)).any(
        -1
    )  # NaN compares False: unknown = compatible
    Q = V * (V - 1) // 2
    bad = bad.reshape(Q, P, P, T)
    pairs = torch.tensor(
        list(itertools.combinations(range(V), 2)), dtype=torch.long, device=uv.device
    ).reshape(-1, 2)
    ca, cb = combos[:, pairs[:, 0]], combos[:, pairs[:, 1]]  # (C, Q)
    clash = bad[torch.arange(Q, device=uv.device)[None], ca.clamp(min=0), cb.clamp(min=0)]  # (C, Q, T)
    clash = clash & ((ca >= 0) & (cb >= 0))[..., None]
    absent = ~present.permute(1, 2, 0)[
        torch.arange(V, device=uv.device)[None], combos.clamp(min=0)
    ]  # (C, V, T)
    absent = absent & (combos >= 0)[..., None]
    return ~clash.any(1) & ~absent.any(1)


def _pairwise_candidates(
    uv: Tensor, w: Tensor, proj: Tensor, present: Tensor, threshold_px: float, min_joints: int
):
    """Selections ``(H, T, V)`` seeded by every pair of (view, person) and completed greedily:
    every other view takes its person closest to the seed's two-view skeleton (median
    reprojection error below ``threshold_px``), or none."""
    T, V, P, J, _ = uv.shape
    va, vb, pa, pb, X, *_ = _seeds(uv, w, proj)
    H = len(va)
    e = (project_pinhole(X, proj)[:, :, :, None] - uv[None]).norm(dim=-1)  # (H, T, V, P, J)
    obs = (w[None] > 0) & torch.isfinite(e)
    med = _nanmedian(torch.where(obs, e, float("nan")), -1)
    ok = (obs.sum(-1) >= min_joints) & present[None] & (med < threshold_px)
    sel = torch.where(ok.any(-1), torch.where(ok, med, float("inf")).argmin(-1), -1)
    h = torch.arange(H, device=uv.device)
    sel[h, :, va] = torch.where(present[:, va, pa].T, pa[:, None], -1)
    sel[h, :, vb] = torch.where(present[:, vb, pb].T, pb[:, None], -1)
    return sel


def select_single_person(
    keypoints,
    rig: CameraRig,
    *,
    min_confidence: float = 0.3,
    threshold_px: float = 50.0,
    min_joints: int = 3,
    tie_px: float = 5.0,
    tie_mm: float = 200.0,
    max_combinations: int = 1024,
    reference_centroid=None,
    return_info: bool = False,
):
    """Choose one person per camera and frame, consistently across views (the rule: module docstring).

    Args:
        keypoints: ``(V, T, P, J, 3)`` (x px, y px raw/distorted, confidence), numpy or torch;
            NaN marks missing keypoints and padding persons.
        rig: the ``V`` calibrated cameras, in the order of ``keypoints``.
        min_confidence: keypoints below it are ignored.
        threshold_px: a view whose person's median reprojection error exceeds it disagrees.
        min_joints: confident joints a person needs to be judged (fewer: treated as none).
        tie_px, tie_mm: what counts as a tie (see module docstring).
        max_combinations: above this many combinations, the pairwise scheme is used.
        reference_centroid: ``(3,)`` mm, the centroid chosen before this chunk (temporal tie-break).
        return_info: also return an :class:`Association`.

    Returns:
        ``(V, T, J, 3)`` keypoints of the chosen person (NaN where none), same array type as
        the input; with ``return_info`` a tuple ``(keypoints, Association)``.

    Example:
        >>> kp = np.full((4, 10, 2, 17, 3), np.nan)  # doctest: +SKIP
        >>> chosen, info = select_single_person(kp, rig, return_info=True)  # doctest: +SKIP
        >>> info.person_index.shape  # doctest: +SKIP
        (10, 4)
    """
    is_numpy = not isinstance(keypoints, Tensor)
    kp = torch.as_tensor(np.asarray(keypoints) if is_numpy else keypoints, dtype=torch.float64)
    if kp.ndim != 5 or kp.shape[-1] != 3:
        raise ValueError(
            f"select_single_person: keypoints must have shape (V, T, P, J, 3), got {tuple(kp.shape)}"
        )
    V, T, P, J, _ = kp.shape
    if rig.num_views != V:
        raise ValueError(f"select_single_person: rig has {rig.num_views} cameras, keypoints {V}")
    rig = rig.to(device=kp.device, dtype=torch.float64)
    kpT = kp.transpose(0, 1)  # (T, V, P, J, 3)
    conf = kpT[..., 2]
    w = torch.where(torch.isfinite(kpT).all(-1) & (conf >= min_confidence), conf, 0.0)
    present = (w > 0).sum(-1) >= min_joints  # (T, V, P)
    dev = kp.device
    ref = (
        None
        if reference_centroid is None
        else torch.as_tensor(reference_centroid, dtype=torch.float64, device=dev)
    )

    if P == 1 or V < 2 or T == 0:
        # Nothing to choose (one person per camera), or nothing to check it against.
        first = present.to(torch.int8).argmax(-1)
        person = torch.where(present.any(-1), first, -1)
        info = Association(
            person.cpu().numpy(),
            (person >= 0).sum(-1).cpu().numpy(),
            np.full(T, np.nan),
            np.zeros(T, bool),
            np.full((T, 3), np.nan),
            None if ref is None else ref.cpu().numpy(),
            1,
            "single",
        )
        out = kp[:, :, 0] if P == 1 else _take(kp, person.clamp(min=0), person >= 0)
        out = out.numpy() if is_numpy else out
        return (out, info) if return_info else out

    uv = rig.undistort_points(kpT[..., :2].transpose(1, 2)).transpose(1, 2)  # (T, V, P, J, 2)
    uv = torch.where(w[..., None] > 0, uv, float("nan"))
    proj = rig.projection_matrices()
    # Options per view: the persons seen in the chunk, plus none.
    seen = present.any(0)  # (V, P)
    pv = torch.where(seen.any(-1), P - seen.flip(-1).to(torch.int8).argmax(-1), 0)  # persons per view
    n_comb = int(torch.prod(pv + 1))
    if n_comb <= max_combinations:
        scheme = "exhaustive"
        options = [torch.arange(-1, int(pv[v]), device=kp.device) for v in range(V)]
        combos = torch.cartesian_prod(*options).reshape(-1, V)  # (C, V)
        S = len(combos)
        per_frame = S * V * J + (V * V * P * P * J)
    else:
        scheme = "pairwise"
        S = (V * (V - 1) // 2) * P * P
        per_frame = S * V * P * J
    block = max(1, _BLOCK_ELEMENTS // max(1, per_frame))

    valid = torch.zeros(S, T, dtype=torch.bool, device=dev)
    n_act = torch.zeros(S, T, dtype=torch.long, device=dev)
    err = torch.full((S, T), float("nan"), dtype=torch.float64, device=dev)
    cen = torch.full((S, T, 3), float("nan"), dtype=torch.float64, device=dev)
    active = torch.zeros(S, T, V, dtype=torch.bool, device=dev)
    sel_all = torch.full((S, T, V), -1, dtype=torch.long, device=dev)
    for s in range(0, T, block):  # memory-bounded blocks of frames, each fully batched
        e = min(T, s + block)
        uv_b, w_b, pr_b = uv[s:e], w[s:e], present[s:e]
        if scheme == "exhaustive":
            sel_b = combos[:, None, :].expand(S, e - s, V)
            ok = _compatible(combos, uv_b, w_b, proj, pr_b, 2.0 * threshold_px, min_joints)
        else:
            sel_b = _pairwise_candidates(uv_b, w_b, proj, pr_b, threshold_px, min_joints)
            ok = torch.ones(S, e - s, dtype=torch.bool, device=dev)
        ci, ti = ok.nonzero(as_tuple=True)
        a, v_, n_, e_, c_ = _score(sel_b[ci, ti], ti, uv_b, w_b, proj, threshold_px, min_joints)
        tt = ti + s
        active[ci, tt], valid[ci, tt], n_act[ci, tt], err[ci, tt], cen[ci, tt] = a, v_, n_, e_, c_
        sel_all[ci, tt] = sel_b[ci, ti]

    # Best selection per frame: most active views, then the lowest error.
    n_key = torch.where(valid, n_act, -1)
    best_n = n_key.max(0).values  # (T,)
    cand = valid & (n_key == best_n)
    err_c = torch.where(cand, err.nan_to_num(float("inf")), float("inf"))
    best_err, first = err_c.min(0)
    t_idx = torch.arange(T, device=dev)
    tied = cand & (err_c <= best_err + tie_px)
    c_first = cen[first, t_idx]  # (T, 3)
    ambiguous = (tied & ((cen - c_first).norm(dim=-1) > tie_mm)).any(0) & (best_n >= 2)
    # Reference centroid: the last unambiguous frame's choice before t (else the next one after it).
    good = (best_n >= 2) & ~ambiguous
    last = torch.cummax(torch.where(good, t_idx, -1), 0).values
    prev = torch.cat([last.new_full((1,), -1), last[:-1]])
    nxt = torch.flip(torch.cummin(torch.flip(torch.where(good, t_idx, T), [0]), 0).values, [0])
    ref_t = torch.where((prev >= 0)[:, None], c_first[prev.clamp(min=0)], float("nan"))
    if ref is not None:
        ref_t = torch.where(torch.isnan(ref_t), ref.to(ref_t), ref_t)
    ref_t = torch.where(torch.isnan(ref_t) & (nxt < T)[:, None], c_first[nxt.clamp(max=T - 1)], ref_t)
    # No anchor at all (every frame ambiguous): hold on to the first frame's choice.
    some = torch.nonzero(best_n >= 2).flatten()
    if len(some):
        ref_t = torch.where(torch.isnan(ref_t), c_first[some[0]], ref_t)
    dist = torch.where(tied, (cen - ref_t[None]).norm(dim=-1).nan_to_num(float("inf")), float("inf"))
    use_ref = ambiguous & torch.isfinite(dist.min(0).values)
    choice = torch.where(use_ref, dist.argmin(0), first)
    has = best_n >= 2

    person = sel_all[choice, t_idx]  # (T, V)
    person = torch.where(active[choice, t_idx] & has[:, None], person, -1)
    out = _take(kp, person.clamp(min=0), person >= 0)
    chosen_cen = torch.where(has[:, None], cen[choice, t_idx], float("nan"))
    last = torch.nonzero(has).flatten()
    new_ref = (
        chosen_cen[last[-1]].cpu().numpy() if len(last) else (None if ref is None else ref.cpu().numpy())
    )
    info = Association(
        person.cpu().numpy(),
        torch.where(has, n_act[choice, t_idx], 0).cpu().numpy(),
        torch.where(has, err[choice, t_idx], float("nan")).cpu().numpy(),
        (ambiguous & has).cpu().numpy(),
        chosen_cen.cpu().numpy(),
        new_ref,
        S,
        scheme,
    )
    out = out.numpy() if is_numpy else out
    return (out, info) if return_info else out


def _take(kp: Tensor, person: Tensor, keep: Tensor) -> Tensor:
    """``kp (V, T, P, J, 3)`` at ``person (T, V)`` -> ``(V, T, J, 3)``, NaN where not ``keep``."""
    V, T = kp.shape[:2]
    out = kp[torch.arange(V, device=kp.device)[:, None], torch.arange(T, device=kp.device)[None, :], person.T]
    return torch.where(keep.T[..., None, None], out, float("nan"))
