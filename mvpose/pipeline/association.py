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
more than ``tie_mm`` apart are a tie (e.g. two people seen equally well): the one closest to the
centroid chosen at the last unambiguous frame before (else after) it wins.

Candidate selections are every combination of (persons + none) over views when there are at most
``max_combinations`` of them; otherwise a pairwise scheme: each pair of (view, person) seeds a 3D
skeleton by two-view DLT, every other view takes its person closest to that skeleton (if below
``threshold_px``), and the completed selections are scored as above.
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
        reference_centroid: ``(3,)`` centroid of the last unambiguous frame (pass it to the next chunk).
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


def _gather(sel: Tensor, uv: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Selected persons' points ``(S, T, V, J, 2)`` and weights ``(S, T, V, J)`` (0 for none).

    ``sel (S, T, V)``; ``uv (T, V, P, J, 2)``; ``w (T, V, P, J)``."""
    T, V = uv.shape[:2]
    ti = torch.arange(T, device=uv.device)[None, :, None]
    vi = torch.arange(V, device=uv.device)[None, None, :]
    idx = sel.clamp(min=0)
    return uv[ti, vi, idx], w[ti, vi, idx] * (sel >= 0)[..., None]


def _score(sel: Tensor, uv: Tensor, w: Tensor, proj: Tensor, threshold_px: float, min_joints: int):
    """Score selections ``sel (S, T, V)``: returns ``active (S, T, V)``, ``valid (S, T)``,
    ``num_active (S, T)``, ``error (S, T)`` and ``centroid (S, T, 3)``."""
    uv_s, w_s = _gather(sel, uv, w)
    X = triangulate_dlt(uv_s, proj, w_s)  # (S, T, J, 3)
    err = reprojection_error(X, uv_s, proj)  # (S, T, V, J)
    obs = (w_s > 0) & torch.isfinite(err)
    err = torch.where(obs, err, float("nan"))
    active = obs.sum(-1) >= min_joints
    view_err = _nanmedian(err, -1)
    agree = ~active | (view_err < threshold_px)
    num_active = active.sum(-1)
    valid = agree.all(-1) & (num_active >= 2)
    error = _nanmedian(torch.where(active[..., None], err, float("nan")).flatten(-2), -1)
    finite = torch.isfinite(X).all(-1, keepdim=True)
    centroid = torch.where(finite, X, 0.0).sum(-2) / finite.sum(-2).clamp(min=1)
    centroid = torch.where(finite.any(-2), centroid, float("nan"))
    return active, valid, num_active, error, centroid


def _pairwise_candidates(uv: Tensor, w: Tensor, proj: Tensor, present: Tensor, threshold_px: float, min_joints: int):
    """Selections ``(H, T, V)`` seeded by every pair of (view, person) and completed greedily.

    ``uv (T, V, P, J, 2)`` undistorted px, ``w (T, V, P, J)``, ``present (T, V, P)``."""
    T, V, P, J, _ = uv.shape
    dev = uv.device
    pairs = torch.tensor(list(itertools.combinations(range(V), 2)), dtype=torch.long, device=dev)
    pp = torch.cartesian_prod(torch.arange(P, device=dev), torch.arange(P, device=dev)).reshape(-1, 2)
    va, vb = pairs[:, 0].repeat_interleave(len(pp)), pairs[:, 1].repeat_interleave(len(pp))
    pa, pb = pp[:, 0].repeat(len(pairs)), pp[:, 1].repeat(len(pairs))
    H = len(va)
    ti = torch.arange(T, device=dev)[None, :]
    seed_uv = torch.stack([uv[ti, va[:, None], pa[:, None]], uv[ti, vb[:, None], pb[:, None]]], 2)  # (H,T,2,J,2)
    seed_w = torch.stack([w[ti, va[:, None], pa[:, None]], w[ti, vb[:, None], pb[:, None]]], 2)
    X = triangulate_dlt(seed_uv, torch.stack([proj[va], proj[vb]], 1)[:, None], seed_w)  # (H, T, J, 3)
    # Every person of every view against each seed skeleton: (H, T, V, P, J).
    e = (project_pinhole(X, proj)[:, :, :, None] - uv[None]).norm(dim=-1)
    obs = (w[None] > 0) & torch.isfinite(e)
    med = _nanmedian(torch.where(obs, e, float("nan")), -1)
    ok = (obs.sum(-1) >= min_joints) & present[None] & (med < threshold_px)
    sel = torch.where(ok.any(-1), torch.where(ok, med, float("inf")).argmin(-1), -1)
    h = torch.arange(H, device=dev)
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
    """
    is_numpy = not isinstance(keypoints, Tensor)
    kp = torch.as_tensor(np.asarray(keypoints) if is_numpy else keypoints, dtype=torch.float64)
    if kp.ndim != 5 or kp.shape[-1] != 3:
        raise ValueError(f"select_single_person: keypoints must have shape (V, T, P, J, 3), got {tuple(kp.shape)}")
    V, T, P, J, _ = kp.shape
    if rig.num_views != V:
        raise ValueError(f"select_single_person: rig has {rig.num_views} cameras, keypoints {V}")
    rig = rig.to(device=kp.device, dtype=torch.float64)
    kpT = kp.transpose(0, 1)  # (T, V, P, J, 3)
    conf = kpT[..., 2]
    w = torch.where(torch.isfinite(kpT).all(-1) & (conf >= min_confidence), conf, 0.0)
    present = (w > 0).sum(-1) >= min_joints  # (T, V, P)
    ref = None if reference_centroid is None else torch.as_tensor(reference_centroid, dtype=torch.float64)

    if P == 1 or V < 2 or T == 0:
        person = torch.where(present[..., 0], 0, -1) if P == 1 else present.to(torch.int8).argmax(-1)
        if P != 1:
            person = torch.where(present.any(-1), person, -1)
        info = Association(
            person.cpu().numpy(),
            (person >= 0).sum(-1).cpu().numpy(),
            np.full(T, np.nan),
            np.zeros(T, bool),
            np.full((T, 3), np.nan),
            None if ref is None else ref.numpy(),
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
        sel_all = None
        S = len(combos)
    else:
        scheme = "pairwise"
        combos = None
        S = (V * (V - 1) // 2) * P * P
    block = max(1, _BLOCK_ELEMENTS // max(1, S * V * J * (P if scheme == "pairwise" else 1)))

    keys = {k: [] for k in ("valid", "n", "err", "cen", "active", "sel")}
    for s in range(0, T, block):  # memory-bounded blocks of frames, each fully batched
        e = min(T, s + block)
        uv_b, w_b = uv[s:e], w[s:e]
        if scheme == "exhaustive":
            sel_b = combos[:, None, :].expand(S, e - s, V)
        else:
            sel_b = _pairwise_candidates(uv_b, w_b, proj, present[s:e], threshold_px, min_joints)
        active, valid, n_act, err, cen = _score(sel_b, uv_b, w_b, proj, threshold_px, min_joints)
        for k, x in zip(keys, (valid, n_act, err, cen, active, sel_b)):
            keys[k].append(x)
    valid, n_act, err, cen, active, sel_all = (torch.cat(keys[k], 1) for k in keys)

    # Best selection per frame: most active views, then the lowest error.
    n_key = torch.where(valid, n_act, -1)
    best_n = n_key.max(0).values  # (T,)
    cand = valid & (n_key == best_n)
    err_c = torch.where(cand, err.nan_to_num(float("inf")), float("inf"))
    best_err, first = err_c.min(0)
    t_idx = torch.arange(T)
    tied = cand & (err_c <= best_err + tie_px)
    d_first = (cen - cen[first, t_idx]).norm(dim=-1)
    ambiguous = (tied & (d_first > tie_mm)).any(0) & (best_n >= 2)
    # Reference centroid: the last unambiguous frame's choice before t (else the next one after it).
    good = (best_n >= 2) & ~ambiguous
    c_first = cen[first, t_idx]  # (T, 3)
    pos = torch.where(good, t_idx, -1)
    last = torch.cummax(pos, 0).values
    prev = torch.cat([last.new_full((1,), -1), last[:-1]])
    nxt_pos = torch.where(good, t_idx, T)
    nxt = torch.flip(torch.cummin(torch.flip(nxt_pos, [0]), 0).values, [0])
    ref_t = torch.where((prev >= 0)[:, None], c_first[prev.clamp(min=0)], float("nan"))
    if ref is not None:
        ref_t = torch.where(torch.isnan(ref_t), ref.to(ref_t), ref_t)
    ref_t = torch.where(torch.isnan(ref_t) & (nxt < T)[:, None], c_first[nxt.clamp(max=T - 1)], ref_t)
    dist = (cen - ref_t[None]).norm(dim=-1)  # (S, T)
    dist = torch.where(tied, dist.nan_to_num(float("inf")), float("inf"))
    by_ref = dist.argmin(0)
    use_ref = ambiguous & torch.isfinite(dist.min(0).values)
    choice = torch.where(use_ref, by_ref, first)
    has = best_n >= 2

    person = sel_all[choice, t_idx]  # (T, V)
    person = torch.where(active[choice, t_idx] & has[:, None], person, -1)
    out = _take(kp, person.clamp(min=0), person >= 0)
    cen_c = torch.where(has[:, None], cen[choice, t_idx], float("nan"))
    last_good = torch.nonzero(good).flatten()
    new_ref = c_first[last_good[-1]].numpy() if len(last_good) else (None if ref is None else ref.numpy())
    info = Association(
        person.cpu().numpy(),
        torch.where(has, n_act[choice, t_idx], 0).cpu().numpy(),
        torch.where(has, err[choice, t_idx], float("nan")).cpu().numpy(),
        (ambiguous & has).cpu().numpy(),
        cen_c.cpu().numpy(),
        new_ref,
        S,
        scheme,
    )
    out = out.numpy() if is_numpy else out
    return (out, info) if return_info else out


def _take(kp: Tensor, person: Tensor, keep: Tensor) -> Tensor:
    """``kp (V, T, P, J, 3)`` at ``person (T, V)`` -> ``(V, T, J, 3)``, NaN where not ``keep``."""
    V, T = kp.shape[:2]
    out = kp[torch.arange(V)[:, None], torch.arange(T)[None, :], person.T]
    return torch.where(keep.T[..., None, None], out, float("nan"))
