"""Pose accuracy metrics: the MPJPE family, PCK/AUC, PCP and per-group tables.

Every function takes ``pred`` and ``target`` of shape ``(*, J, 3)`` in millimetres (torch
tensors; numpy arrays are converted) and an optional ``mask`` of shape ``(*, J)`` (bool, True =
valid joint; it broadcasts). Masked joints are left out of every mean and of every alignment; a
sample without a valid joint gives NaN, never an exception. NaNs in unmasked joints are *not*
masked implicitly: they propagate (pass ``mask=torch.isfinite(target).all(-1)`` for missing
ground truth).

``reduction`` is one of:

* ``"mean"``: a 0-d tensor, the mean over every valid joint of every sample (joint-weighted);
* ``"sample"``: ``(*,)``, the mean over the valid joints of each sample (NaN if none);
* ``"none"``: ``(*, J)``, the per-joint values, NaN where masked.

Alignment conventions (``root`` selects the joint, e.g. 0 for ``h36m17``, 6 for ``h36m17_lt``,
14 for ``mpi3dhp17``):

* :func:`mpjpe` with ``root=None`` is the absolute error (no alignment); with ``root=r`` both
  poses are translated so that joint ``r`` is at the origin ("relative" MPJPE, Human3.6M
  protocol #1). The root joint then counts with error 0, as in the usual 17-joint averages. A
  sample whose root is masked has no valid joint.
* :func:`p_mpjpe` aligns each prediction to its target with the similarity transform (rotation,
  translation, scale; reflections excluded) that minimises the squared error over the valid
  joints (Procrustes, Human3.6M protocol #2). No ``root`` is needed.
* :func:`n_mpjpe` rescales the (optionally root-centred) prediction by the least-squares scale
  ``<pred, target> / <pred, pred>`` (Rhodin et al. 2018).
* :func:`pck` and :func:`auc` follow the MPI-INF-3DHP evaluation script: a joint is correct when
  its error is strictly below the threshold (150 mm for PCK); AUC is the mean PCK over the 31
  thresholds 0, 5, ..., 150 mm. They are returned in percent. The 3DHP protocol uses
  root-relative poses (pass ``root``).

Example:
    >>> target = torch.zeros(4, 17, 3)
    >>> mpjpe(target + torch.tensor([3.0, 4.0, 0.0]), target)
    tensor(5.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch

__all__ = [
    "AUC_THRESHOLDS_MM",
    "mpjpe",
    "p_mpjpe",
    "n_mpjpe",
    "mpjve",
    "procrustes_align",
    "pck",
    "auc",
    "pcp",
    "per_group",
    "summarize",
    "format_table",
]

Reduction = Literal["mean", "sample", "none"]
ArrayLike = torch.Tensor | np.ndarray

#: The 31 thresholds of the MPI-INF-3DHP AUC, in mm: 0, 5, ..., 150.
AUC_THRESHOLDS_MM: tuple[float, ...] = tuple(5.0 * i for i in range(31))


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _as_float(x: ArrayLike, like: torch.Tensor | None = None) -> torch.Tensor:
    t = torch.as_tensor(x, device=None if like is None else like.device)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


def _prepare(
    pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None, root: int | None, min_ndim: int = 2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensors of one dtype/device, a full bool mask ``(*, J)``, and root-centring if asked."""
    pred = _as_float(pred)
    target = _as_float(target, pred)
    dtype = torch.promote_types(pred.dtype, target.dtype)
    pred, target = pred.to(dtype), target.to(dtype)
    if pred.shape != target.shape or pred.ndim < min_ndim:
        raise ValueError(
            f"pred and target must have the same shape (*, J, C) with at least {min_ndim} dims, "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if mask is None:
        valid = torch.ones(pred.shape[:-1], dtype=torch.bool, device=pred.device)
    else:
        valid = torch.as_tensor(mask, device=pred.device).bool()
        try:
            valid = valid.expand(pred.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(valid.shape)} does not broadcast to {tuple(pred.shape[:-1])}"
            ) from None
    if root is not None:
        j = pred.shape[-2]
        if not -j <= root < j:
            raise ValueError(f"root index {root} out of range for {j} joints")
        pred = pred - pred[..., root : root + 1, :]
        target = target - target[..., root : root + 1, :]
        valid = valid & valid[..., root : root + 1]
    return pred, target, valid


def _reduce(values: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce ``(*, J)`` values over the valid entries (see the module docstring)."""
    if reduction == "none":
        return values.masked_fill(~valid, float("nan"))
    zeroed = torch.where(valid, values, torch.zeros_like(values))
    if reduction == "sample":
        return zeroed.sum(-1) / valid.sum(-1).to(values.dtype)
    if reduction == "mean":
        return zeroed.sum() / valid.sum().to(values.dtype)
    raise ValueError(f"reduction must be 'mean', 'sample' or 'none', got {reduction!r}")


# --------------------------------------------------------------------------------------------------
# the MPJPE family
# --------------------------------------------------------------------------------------------------


def mpjpe(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    root: int | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Mean per-joint position error (Euclidean), absolute or root-relative.

    Args:
        pred: ``(*, J, 3)`` predicted joints, mm.
        target: ``(*, J, 3)`` ground truth, mm.
        mask: ``(*, J)`` bool, True for joints to evaluate.
        root: None for the absolute error; a joint index to centre both poses on it first.
        reduction: ``"mean"`` (0-d), ``"sample"`` ``(*,)`` or ``"none"`` ``(*, J)``.

    Returns:
        Error in mm.

    Example:
        >>> gt = torch.zeros(2, 17, 3)
        >>> mpjpe(gt + 10.0, gt, root=0)
        tensor(0.)
    """
    pred, target, valid = _prepare(pred, target, mask, root)
    return _reduce(torch.linalg.vector_norm(pred - target, dim=-1), valid, reduction)


def procrustes_align(
    pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, *, scale: bool = True
) -> torch.Tensor:
    """Align each predicted pose to its target with the best similarity (or rigid) transform.

    Finds, per sample, ``s, R, t`` minimising ``sum_valid |s R p_j + t - q_j|^2`` with ``R`` a
    proper rotation (Umeyama's solution: one batched SVD of the cross-covariance; where
    ``det(U V^T) < 0`` the last singular vector is flipped so that no reflection is returned).
    The solve runs in float64.

    Args:
        pred: ``(*, J, C)`` predicted joints (C = 3 usually; any C works), mm.
        target: ``(*, J, C)`` ground truth, mm.
        mask: ``(*, J)`` bool; only valid joints drive the fit.
        scale: False for a rigid fit (``s = 1``).

    Returns:
        ``(*, J, C)`` aligned prediction in pred's dtype; every joint (masked ones too) is
        transformed. All NaN for a sample without a valid joint or with a non-finite valid joint.
        A prediction collapsed to one point gets ``s = 0`` (it lands on the target centroid).

    Example:
        >>> q = torch.randn(5, 17, 3)
        >>> torch.allclose(procrustes_align(2.0 * q + 1.0, q), q, atol=1e-5)
        True
    """
    pred, target, valid = _prepare(pred, target, mask, None)
    out_dtype = pred.dtype
    p, q = pred.double(), target.double()
    w = valid[..., None]
    n = valid.sum(-1).to(p.dtype)[..., None, None]  # (*, 1, 1)
    p0 = torch.where(w, p, torch.zeros_like(p))
    q0 = torch.where(w, q, torch.zeros_like(q))
    mu_p = p0.sum(-2, keepdim=True) / n.clamp(min=1)
    mu_q = q0.sum(-2, keepdim=True) / n.clamp(min=1)
    pc = torch.where(w, p0 - mu_p, torch.zeros_like(p))
    qc = torch.where(w, q0 - mu_q, torch.zeros_like(q))
    cov = qc.transpose(-1, -2) @ pc  # (*, C, C): sum_j q_j p_j^T
    ok = torch.isfinite(cov).all(-1).all(-1) & (n[..., 0, 0] > 0)
    cov = torch.where(ok[..., None, None], cov, torch.zeros_like(cov))
    u, sv, vh = torch.linalg.svd(cov)
    d = torch.ones_like(sv)
    d[..., -1] = torch.where(torch.linalg.det(u @ vh) < 0, -1.0, 1.0)
    rot = (u * d[..., None, :]) @ vh
    if scale:
        var_p = (pc * pc).sum((-1, -2))
        s = torch.where(var_p > 0, (sv * d).sum(-1) / var_p.clamp(min=1e-300), torch.zeros_like(var_p))
    else:
        s = torch.ones_like(sv[..., 0])
    aligned = s[..., None, None] * ((p - mu_p) @ rot.transpose(-1, -2)) + mu_q
    aligned = aligned.masked_fill(~ok[..., None, None], float("nan"))
    return aligned.to(out_dtype)


def p_mpjpe(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    scale: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """MPJPE after Procrustes alignment (Human3.6M protocol #2, "PA-MPJPE").

    Args:
        pred, target: ``(*, J, 3)``, mm.
        mask: ``(*, J)`` bool; the fit and the mean use the valid joints only.
        scale: False for a rigid (rotation + translation) alignment.
        reduction: see :func:`mpjpe`.

    Returns:
        Error in mm. The alignment minimises the *squared* error, so the aligned root-mean-square
        error never exceeds the unaligned one (absolute or root-relative); the mean of the
        (unsquared) distances usually drops too, but not always: a pose that is exact except for
        one far-off joint can score a higher P-MPJPE than MPJPE.
    """
    pred, target, valid = _prepare(pred, target, mask, None)
    aligned = procrustes_align(pred, target, valid, scale=scale)
    return mpjpe(aligned, target, valid, reduction=reduction)


def n_mpjpe(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    root: int | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """MPJPE after the least-squares scale alignment of Rhodin et al. (2018).

    With ``p``, ``q`` the (root-centred when ``root`` is given) poses, the prediction is scaled
    by ``s = <p, q> / <p, p>`` over the valid joints of each sample, then compared with ``q``.
    Pass ``root`` unless the poses already are root-relative.

    Args:
        pred, target: ``(*, J, 3)``, mm.
        mask: ``(*, J)`` bool.
        root: joint to centre on first (None: use the poses as given).
        reduction: see :func:`mpjpe`.

    Returns:
        Error in mm.
    """
    p, q, valid = _prepare(pred, target, mask, root)
    w = valid[..., None]
    pz = torch.where(w, p, torch.zeros_like(p))
    qz = torch.where(w, q, torch.zeros_like(q))
    num = (pz * qz).sum((-1, -2))
    den = (pz * pz).sum((-1, -2))
    s = torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny), torch.zeros_like(den))
    return _reduce(torch.linalg.vector_norm(s[..., None, None] * p - q, dim=-1), valid, reduction)


def mpjve(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    root: int | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Mean per-joint velocity error: MPJPE of the first differences along time.

    Args:
        pred, target: ``(*, T, J, 3)`` sequences, mm.
        mask: ``(*, T, J)`` bool; a velocity is valid when the joint is valid in both frames.
        root: joint to centre on first (None: absolute velocities).
        reduction: ``"mean"`` (0-d), ``"sample"`` ``(*, T-1)`` (per frame pair) or ``"none"``
            ``(*, T-1, J)``.

    Returns:
        Error in mm per frame (divide by the frame period for mm/s). NaN when ``T < 2``.
    """
    p, q, valid = _prepare(pred, target, mask, root, min_ndim=3)
    vel_err = torch.linalg.vector_norm(torch.diff(p, dim=-3) - torch.diff(q, dim=-3), dim=-1)
    return _reduce(vel_err, valid[..., 1:, :] & valid[..., :-1, :], reduction)


# --------------------------------------------------------------------------------------------------
# PCK / AUC / PCP
# --------------------------------------------------------------------------------------------------


def pck(
    pred: ArrayLike,
    target: ArrayLike,
    threshold_mm: float = 150.0,
    mask: ArrayLike | None = None,
    *,
    root: int | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """3D percentage of correct keypoints: joints whose error is ``< threshold_mm``.

    Args:
        pred, target: ``(*, J, 3)``, mm.
        threshold_mm: distance threshold in mm (150 in the MPI-INF-3DHP protocol).
        mask: ``(*, J)`` bool.
        root: joint to centre on first; the 3DHP protocol is root-relative (pelvis).
        reduction: ``"mean"``, ``"sample"`` or ``"none"`` (per joint: 100 or 0, NaN if masked).

    Returns:
        PCK in percent (0..100).
    """
    p, q, valid = _prepare(pred, target, mask, root)
    err = torch.linalg.vector_norm(p - q, dim=-1)
    return _reduce((err < threshold_mm).to(err.dtype) * 100.0, valid, reduction)


def auc(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    root: int | None = None,
    thresholds_mm: Sequence[float] = AUC_THRESHOLDS_MM,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Area under the PCK curve: the mean of :func:`pck` over ``thresholds_mm``.

    The default thresholds are MPI-INF-3DHP's 0, 5, ..., 150 mm (31 values). Computed in one
    broadcast comparison; for ``"none"`` each joint gets the percentage of thresholds it passes.

    Args:
        pred, target: ``(*, J, 3)``, mm.
        mask: ``(*, J)`` bool.
        root: joint to centre on first (the 3DHP protocol is root-relative).
        thresholds_mm: thresholds in mm.
        reduction: see :func:`mpjpe`.

    Returns:
        AUC in percent (0..100).
    """
    p, q, valid = _prepare(pred, target, mask, root)
    err = torch.linalg.vector_norm(p - q, dim=-1)
    thr = torch.as_tensor(thresholds_mm, dtype=err.dtype, device=err.device)
    passed = (err[..., None] < thr).to(err.dtype).mean(-1) * 100.0
    return _reduce(passed, valid, reduction)


def pcp(
    pred: ArrayLike,
    target: ArrayLike,
    limbs: Sequence[tuple[int, int]],
    mask: ArrayLike | None = None,
    *,
    alpha: float = 0.5,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Percentage of correct parts, as in the multi-view benchmarks (Campus, Shelf).

    A limb ``(a, b)`` is correct when the mean of its two endpoint errors is at most ``alpha``
    times its ground-truth length: ``(|p_a - q_a| + |p_b - q_b|) / 2 <= alpha |q_a - q_b|``.

    Args:
        pred, target: ``(*, J, 3)``, mm.
        limbs: ``L`` pairs of joint indices (e.g. ``Skeleton.limbs``).
        mask: ``(*, J)`` bool; a limb is valid when both endpoints are.
        alpha: tolerance as a fraction of the limb length.
        reduction: over limbs: ``"mean"``, ``"sample"`` ``(*,)`` or ``"none"`` ``(*, L)``.

    Returns:
        PCP in percent (0..100).
    """
    p, q, valid = _prepare(pred, target, mask, None)
    idx = torch.as_tensor(limbs, dtype=torch.long, device=p.device).reshape(-1, 2)
    err = torch.linalg.vector_norm(p - q, dim=-1)
    a, b = idx[:, 0], idx[:, 1]
    length = torch.linalg.vector_norm(q[..., a, :] - q[..., b, :], dim=-1)
    ok = (0.5 * (err[..., a] + err[..., b]) <= alpha * length).to(err.dtype) * 100.0
    return _reduce(ok, valid[..., a] & valid[..., b], reduction)


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------


def _group_means(
    values: torch.Tensor, groups: Sequence | np.ndarray | torch.Tensor
) -> tuple[list, torch.Tensor, torch.Tensor]:
    """NaN-ignoring per-group means of ``values (N, M)``.

    Returns (sorted labels, ``(G, M)`` means, ``(G, M)`` counts of finite values); one
    ``index_add_`` per statistic, no loop over samples.
    """
    if isinstance(groups, torch.Tensor):
        groups = groups.detach().cpu().numpy()
    labels, inverse = np.unique(
        np.asarray(groups if isinstance(groups, np.ndarray) else list(groups)), return_inverse=True
    )
    inverse = inverse.reshape(-1)
    if inverse.shape[0] != values.shape[0]:
        raise ValueError(f"{values.shape[0]} values but {inverse.shape[0]} group labels")
    inv = torch.as_tensor(inverse, dtype=torch.long, device=values.device)
    ok = ~torch.isnan(values)
    shape = (len(labels), values.shape[1])
    sums = values.new_zeros(shape).index_add_(0, inv, torch.where(ok, values, torch.zeros_like(values)))
    counts = values.new_zeros(shape).index_add_(0, inv, ok.to(values.dtype))
    return [lab.item() if hasattr(lab, "item") else lab for lab in labels], sums / counts, counts


def per_group(errors: ArrayLike, groups: Sequence | np.ndarray | torch.Tensor) -> dict:
    """Mean of per-sample values within each group label.

    Args:
        errors: ``(N,)`` per-sample values (e.g. ``mpjpe(..., reduction="sample")``); NaNs are
            ignored.
        groups: ``N`` labels (strings or numbers), e.g. the action of each sample.

    Returns:
        ``{label: mean}`` with labels sorted; NaN for a group without a finite value.

    Example:
        >>> per_group(torch.tensor([1.0, 3.0, 10.0]), ["walk", "walk", "sit"])
        {'sit': 10.0, 'walk': 2.0}
    """
    values = _as_float(errors).reshape(-1, 1)
    labels, means, _ = _group_means(values, groups)
    return {lab: float(m) for lab, m in zip(labels, means[:, 0].tolist())}


def summarize(
    pred: ArrayLike,
    target: ArrayLike,
    actions: Sequence | None = None,
    subjects: Sequence | None = None,
    mask: ArrayLike | None = None,
    *,
    root: int | None = 0,
    pck_threshold_mm: float = 150.0,
) -> dict:
    """The standard table: overall metrics and per-action / per-subject breakdowns.

    Metrics (per sample, then averaged with every sample weighing the same; without a mask this
    equals the per-joint mean):

    * ``MPJPE``: root-relative MPJPE, mm (absolute if ``root`` is None);
    * ``MPJPE-abs``: absolute MPJPE, mm;
    * ``P-MPJPE``: after Procrustes alignment, mm;
    * ``N-MPJPE``: after root-centring and scale alignment, mm;
    * ``PCK@<t>``: root-relative PCK at ``pck_threshold_mm``, %;
    * ``AUC``: root-relative AUC over 0..150 mm, %;
    * ``N``: number of samples.

    Args:
        pred, target: ``(N, J, 3)``, mm.
        actions: ``N`` action labels, or None.
        subjects: ``N`` subject labels, or None.
        mask: ``(N, J)`` bool.
        root: root joint index (0 = pelvis in ``h36m17``; 6 for ``h36m17_lt``; 14 for
            ``mpi3dhp17``).
        pck_threshold_mm: PCK threshold.

    Returns:
        ``{"overall": {metric: value}, "per_action": {action: {...}}, "action_mean": {...},
        "per_subject": {subject: {...}}}``; the action entries only when ``actions`` is given
        (``action_mean`` is the mean over actions, the "Avg" column of Human3.6M tables), the
        subject entry only when ``subjects`` is given. Values are Python floats (``N``: int).
    """
    p, q, valid = _prepare(pred, target, mask, None)
    if p.ndim != 3:
        raise ValueError(f"summarize expects (N, J, 3) poses, got {tuple(p.shape)}")
    kw = {"reduction": "sample"}
    columns = {
        "MPJPE": mpjpe(p, q, valid, root=root, **kw),
        "MPJPE-abs": mpjpe(p, q, valid, **kw),
        "P-MPJPE": p_mpjpe(p, q, valid, **kw),
        "N-MPJPE": n_mpjpe(p, q, valid, root=root, **kw),
        f"PCK@{pck_threshold_mm:g}": pck(p, q, pck_threshold_mm, valid, root=root, **kw),
        "AUC": auc(p, q, valid, root=root, **kw),
    }
    names = list(columns)
    table = torch.stack([columns[k] for k in names], dim=-1)  # (N, M)
    n = table.shape[0]

    with_size = torch.cat([table, torch.zeros_like(table[:, :1])], dim=-1)  # last column counts samples

    def rows(groups: Sequence) -> dict:
        labels, means, counts = _group_means(with_size, groups)
        return {
            lab: {**dict(zip(names, m[:-1])), "N": int(c[-1])}
            for lab, m, c in zip(labels, means.tolist(), counts.tolist())
        }

    overall = dict(zip(names, torch.nanmean(table, dim=0).tolist())) if n else dict.fromkeys(names, math.nan)
    out: dict = {"overall": {**overall, "N": n}}
    if actions is not None:
        out["per_action"] = rows(actions)
        per = torch.tensor([[r[k] for k in names] for r in out["per_action"].values()], dtype=table.dtype)
        mean = torch.nanmean(per, dim=0) if len(per) else torch.full((len(names),), math.nan)
        out["action_mean"] = {**dict(zip(names, mean.tolist())), "N": n}
    if subjects is not None:
        out["per_subject"] = rows(subjects)
    return out


def _fmt(v, precision: int) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    try:
        return f"{float(v):.{precision}f}"
    except (TypeError, ValueError):
        return str(v)


def format_table(table: Mapping, precision: int = 1) -> str:
    """Render a :func:`summarize` result (or ``{row: {column: value}}`` / ``{row: value}``) as text.

    For a :func:`summarize` result: one row per action, the mean over actions, one row per
    subject, and the overall row, separated by rules.

    Example:
        >>> print(format_table({"walk": {"MPJPE": 40.0}, "sit": {"MPJPE": 52.5}}))
        group  MPJPE
        ------------
        walk    40.0
        sit     52.5
    """
    sections: list[list[tuple[str, Mapping]]] = []
    if "overall" in table and isinstance(table["overall"], Mapping):
        if "per_action" in table:
            sections.append([(str(k), v) for k, v in table["per_action"].items()])
            if "action_mean" in table:
                sections.append([("mean over actions", table["action_mean"])])
        if "per_subject" in table:
            sections.append([(str(k), v) for k, v in table["per_subject"].items()])
        sections.append([("all samples", table["overall"])])
    else:
        sections.append([(str(k), v if isinstance(v, Mapping) else {"value": v}) for k, v in table.items()])
    columns: list[str] = []
    for sec in sections:
        for _, row in sec:
            columns += [c for c in row if c not in columns]
    label_w = max([len("group")] + [len(lab) for sec in sections for lab, _ in sec])
    cells = [[_fmt(row.get(c, ""), precision) for c in columns] for sec in sections for _, row in sec]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    header = "  ".join([f"{'group':<{label_w}}"] + [f"{c:>{w}}" for c, w in zip(columns, widths)])
    rule = "-" * len(header)
    lines = [header]
    k = 0
    for sec in sections:
        lines.append(rule)
        for lab, _ in sec:
            lines.append("  ".join([f"{lab:<{label_w}}"] + [f"{x:>{w}}" for x, w in zip(cells[k], widths)]))
            k += 1
    return "\n".join(lines)
