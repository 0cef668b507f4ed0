"""Protocols of the temporal stage: Human3.6M P1 / P2 / MPJVE per action and subject, MPI-INF-3DHP
PCK / AUC over the valid frames, P-STMO stage I's reconstruction error.

Every function takes per-clip results ``{"key": (subject, action, camera), "pred": (T, J, 3) mm,
"target": (T, J, 3) mm, "valid": (T,) bool or None}`` with root-relative poses (the target's root row
0; the prediction as the model gives it, or with its root set to 0, see ``eval.zero_root``).

* **P1** (MPJPE): mean joint distance without re-centring (VideoPose3D's ``mpjpe`` on root-relative
  poses: a predicted root away from 0 counts at the root joint).
* **P2** (P-MPJPE): after the similarity Procrustes alignment of each frame.
* **MPJVE**: mean distance of the first differences over time (per clip, mm per frame).

Per action: VideoPose3D's grouping (``"Walking 1"`` and ``"Walking"`` are one action: the name up to
the first space); every frame weighs the same inside a group; ``action_mean`` is the mean over
actions (the "Avg" that papers report), ``overall`` the mean over all frames.
"""

from __future__ import annotations

import numpy as np
import torch

from mvpose.metrics import format_table, mpjpe, mpjve, p_mpjpe, per_group

__all__ = ["score_h36m", "score_3dhp", "score_reconstruction", "format_sequence_metrics", "action_label"]


def action_label(action: str) -> str:
    """VideoPose3D's action group: the name up to the first space (``"Walking 1"`` -> ``"Walking"``)."""
    return str(action).split(" ")[0]


def _frame_errors(r: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame P1, P2 (NaN on invalid frames), per frame MPJVE (frames 1..T-1; NaN at 0) and valid."""
    p = torch.as_tensor(np.asarray(r["pred"], dtype=np.float64))
    q = torch.as_tensor(np.asarray(r["target"], dtype=np.float64))
    T = p.shape[0]
    v = np.ones(T, bool) if r.get("valid") is None else np.asarray(r["valid"], bool)
    vm = torch.as_tensor(v)[:, None].expand(T, p.shape[1])
    e1 = mpjpe(p, q, vm, reduction="sample").numpy()
    e2 = p_mpjpe(p, q, vm, reduction="sample").numpy()
    ev = np.full(T, np.nan)
    if T > 1:
        ev[1:] = mpjve(p, q, vm, reduction="sample").numpy()
    return e1, e2, ev, v


def score_h36m(results: list[dict]) -> dict:
    """``{"overall": {...}, "per_action": {...}, "action_mean": {...}, "per_subject": {...}}`` with
    columns ``MPJPE`` (P1), ``P-MPJPE`` (P2), ``MPJVE`` (mm) and ``N`` (scored frames)."""
    cols: dict[str, list] = {"MPJPE": [], "P-MPJPE": [], "MPJVE": []}
    actions, subjects = [], []
    for r in results:
        e1, e2, ev, v = _frame_errors(r)
        cols["MPJPE"].append(np.where(v, e1, np.nan))
        cols["P-MPJPE"].append(np.where(v, e2, np.nan))
        cols["MPJVE"].append(ev)
        actions += [action_label(r["key"][1])] * len(e1)
        subjects += [str(r["key"][0])] * len(e1)
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    n_valid = np.isfinite(cat["MPJPE"])

    def rows(groups: list) -> dict:
        labels = sorted(set(groups))
        g = np.asarray(groups, dtype=object)
        out = {lab: {} for lab in labels}
        for k, vals in cat.items():
            for lab, m in per_group(torch.from_numpy(vals), groups).items():
                out[lab][k] = m
        for lab in labels:
            out[lab]["N"] = int(n_valid[g == lab].sum())
        return out

    overall = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in cat.items()}
    overall["N"] = int(n_valid.sum())
    out = {"overall": overall}
    if results:
        out["per_action"] = rows(actions)
        per = out["per_action"].values()
        out["action_mean"] = {k: float(np.nanmean([r[k] for r in per])) for k in cat}
        out["action_mean"]["N"] = overall["N"]
        out["per_subject"] = rows(subjects)
    return out


def score_3dhp(results: list[dict], root: int) -> dict:
    """MPI-INF-3DHP PCK@150 / AUC / MPJPE over the valid frames, per test sequence (the clip's subject,
    ``TS1``..``TS6``) and pooled (:func:`mvpose.data.sequences.evaluate_3dhp`)."""
    from mvpose.data.sequences import evaluate_3dhp

    pred = np.concatenate([r["pred"] for r in results])
    target = np.concatenate([r["target"] for r in results])
    valid = np.concatenate(
        [np.ones(len(r["pred"]), bool) if r.get("valid") is None else r["valid"] for r in results]
    )
    seqs = [str(r["key"][0]) for r in results for _ in range(len(r["pred"]))]
    table = evaluate_3dhp(pred, target, valid, sequences=seqs, root=root)
    h36m = score_h36m(results)  # P2 / MPJVE as well
    table["overall"]["P-MPJPE"] = h36m["overall"]["P-MPJPE"]
    table["overall"]["MPJVE"] = h36m["overall"]["MPJVE"]
    return table


def score_reconstruction(results: list[dict]) -> dict:
    """P-STMO stage I: mean 2D reconstruction error (px) per action and overall (``"error"`` arrays)."""
    err = np.concatenate([r["error"] for r in results])
    actions = [action_label(r["key"][1]) for r in results for _ in range(len(r["error"]))]
    per = per_group(torch.from_numpy(err), actions)
    return {
        "overall": {"reconstruction_px": float(err.mean()), "N": int(err.size)},
        "per_action": {a: {"reconstruction_px": v} for a, v in per.items()},
    }


def format_sequence_metrics(metrics: dict) -> str:
    """The printed table (per action, mean over actions, per subject, all frames; 3DHP per sequence)."""
    if "per_sequence" in metrics:
        rows = {**metrics["per_sequence"], "all (valid frames)": metrics["overall"]}
        return format_table(rows)
    return format_table({k: v for k, v in metrics.items() if isinstance(v, dict) and k != "per_sequence"})
