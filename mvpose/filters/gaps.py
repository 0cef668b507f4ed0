"""Gap filling of 3D joint trajectories, with a report of every gap.

A joint is *missing* in a frame when any of its coordinates is NaN (it is then NaN in all of them).
A gap is a run of missing frames of one joint. ``fill_gaps`` interpolates the gaps of at most
``max_gap`` frames that have data on both sides; longer gaps, and gaps at the start or the end of
the take (that would need extrapolation), stay NaN. Every gap, filled or not, is listed in a
:class:`GapReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import interpolate

from ._tracks import is_tensor, to_like

__all__ = ["Gap", "GapReport", "find_gaps", "fill_gaps", "INTERPOLATIONS"]

#: interpolation methods of :func:`fill_gaps`
INTERPOLATIONS = ("cubic", "linear", "pchip", "akima")


@dataclass(frozen=True)
class Gap:
    """One run of missing frames of one joint.

    Attributes:
        joint: joint index ``j`` (axis ``-2`` of the positions).
        start: first missing frame (index along time, 0-based).
        length: number of missing frames.
        filled: whether :func:`fill_gaps` interpolated it.
        reason: ``"filled"``, ``"longer than max_gap"``, ``"at the start"``, ``"at the end"`` or
            ``"no data"`` (the joint is never seen).
        batch: index of the leading batch dimensions (``()`` for ``(T, J, 3)`` input).
    """

    joint: int
    start: int
    length: int
    filled: bool
    reason: str
    batch: tuple[int, ...] = ()

    @property
    def stop(self) -> int:
        """One past the last missing frame."""
        return self.start + self.length

    def to_dict(self) -> dict:
        d = {"joint": self.joint, "start": self.start, "length": self.length, "filled": self.filled}
        d["reason"] = self.reason
        if self.batch:
            d["batch"] = list(self.batch)
        return d


@dataclass(frozen=True)
class GapReport:
    """Every gap of a take, and how it was handled.

    Attributes:
        num_frames: ``T``.
        joint_names: ``J`` names (``joint_<j>`` when none were given).
        max_gap: the longest gap (frames) that was filled.
        method: interpolation method (``"none"`` when only found, not filled).
        gaps: all gaps, sorted by batch, joint and start.
    """

    num_frames: int
    joint_names: tuple[str, ...]
    max_gap: int
    method: str
    gaps: tuple[Gap, ...] = field(default_factory=tuple)

    @property
    def filled(self) -> tuple[Gap, ...]:
        return tuple(g for g in self.gaps if g.filled)

    @property
    def unfilled(self) -> tuple[Gap, ...]:
        return tuple(g for g in self.gaps if not g.filled)

    @property
    def frames_filled(self) -> int:
        """Joint-frames interpolated."""
        return sum(g.length for g in self.filled)

    @property
    def frames_missing(self) -> int:
        """Joint-frames still missing (NaN) after filling."""
        return sum(g.length for g in self.unfilled)

    def filled_mask(self) -> np.ndarray:
        """``(T, J)`` bool, True at the joint-frames that were interpolated (unbatched input)."""
        mask = np.zeros((self.num_frames, len(self.joint_names)), bool)
        for g in self.filled:
            if g.batch:
                raise ValueError("filled_mask: the report is of batched input; use the gaps' batch indices")
            mask[g.start : g.stop, g.joint] = True
        return mask

    def for_joint(self, joint: int | str) -> tuple[Gap, ...]:
        """The gaps of one joint (index or name)."""
        j = self.joint_names.index(joint) if isinstance(joint, str) else int(joint)
        return tuple(g for g in self.gaps if g.joint == j)

    def to_dict(self) -> dict:
        return {
            "num_frames": self.num_frames,
            "joint_names": list(self.joint_names),
            "max_gap": self.max_gap,
            "method": self.method,
            "frames_filled": self.frames_filled,
            "frames_missing": self.frames_missing,
            "gaps": [g.to_dict() for g in self.gaps],
        }

    def format(self, frame_indices=None, max_listed: int = 4) -> str:
        """A table, one row per joint with gaps: counts, frames filled and left, the unfilled spans.

        ``frame_indices (T,)`` prints frame numbers instead of indices along time.
        """
        fi = None if frame_indices is None else np.asarray(frame_indices)
        J = len(self.joint_names)
        head = (
            f"gaps: {len(self.gaps)} in {self.num_frames} frames x {J} joints; "
            f"filled {len(self.filled)} ({self.frames_filled} joint-frames, {self.method}, <= {self.max_gap} "
            f"frames); left {len(self.unfilled)} ({self.frames_missing} joint-frames NaN)"
        )
        if not self.gaps:
            return head
        width = max(12, *(len(n) for n in self.joint_names))
        cols = f"{'gaps':>5} {'filled':>7} {'left':>6} {'longest':>8}  unfilled spans"
        lines = [head, f"{'joint':<{width}} {cols}"]
        keyed: dict[tuple, list[Gap]] = {}
        for g in self.gaps:
            keyed.setdefault((g.batch, g.joint), []).append(g)
        for (batch, j), gs in keyed.items():
            name = self.joint_names[j] + (f" {list(batch)}" if batch else "")
            left = [g for g in gs if not g.filled]

            def span(g: Gap) -> str:
                a, b = (g.start, g.stop - 1) if fi is None else (int(fi[g.start]), int(fi[g.stop - 1]))
                return f"{a}-{b} ({g.reason})" if a != b else f"{a} ({g.reason})"

            spans = ", ".join(span(g) for g in left[:max_listed])
            if len(left) > max_listed:
                spans += f", ... {len(left) - max_listed} more"
            lines.append(
                f"{name:<{width}} {len(gs):>5} {sum(g.length for g in gs if g.filled):>7} "
                f"{sum(g.length for g in left):>6} {max(g.length for g in gs):>8}  {spans}"
            )
        return "\n".join(lines)


def _prepare(points, joint_names):
    if is_tensor(points):
        arr = points.detach().cpu().double().numpy()
    else:
        arr = np.asarray(points)
    if arr.ndim < 3:
        raise ValueError(f"points: expected (*, T, J, C) with time at axis -3, got shape {arr.shape}")
    J = arr.shape[-2]
    names = tuple(f"joint_{j}" for j in range(J)) if joint_names is None else tuple(map(str, joint_names))
    if len(names) != J:
        raise ValueError(f"joint_names: {len(names)} names for {J} joints")
    return arr, names


def _runs(missing: np.ndarray):
    """Missing runs of ``(T, M)`` bool: (column, start, stop) arrays, sorted by column then start."""
    T, M = missing.shape
    pad = np.zeros((M, 1), np.int8)
    d = np.diff(np.concatenate([pad, missing.T.astype(np.int8), pad], axis=1), axis=1)
    col, start = np.nonzero(d == 1)
    _, stop = np.nonzero(d == -1)
    return col, start, stop


def _classify(col, start, stop, T: int, max_gap: int, never_seen: np.ndarray):
    length = stop - start
    reason = np.full(col.shape, "filled", dtype=object)
    reason[length > max_gap] = "longer than max_gap"
    reason[start == 0] = "at the start"
    reason[stop == T] = "at the end"
    reason[never_seen[col]] = "no data"
    return length, reason


def _gaps(col, start, length, reason, lead_shape, J) -> tuple[Gap, ...]:
    out = []
    for c, s, n, r in zip(col.tolist(), start.tolist(), length.tolist(), reason.tolist()):
        b, j = divmod(c, J)
        batch = tuple(int(i) for i in np.unravel_index(b, lead_shape)) if lead_shape else ()
        out.append(Gap(j, s, n, r == "filled", r, batch))
    return tuple(out)


def find_gaps(points, joint_names=None, max_gap: int = 0) -> GapReport:
    """List the gaps of ``points (*, T, J, C)`` without filling anything.

    ``max_gap`` only decides which gaps would be fillable (``reason == "filled"``; ``filled`` is
    False for all of them here).
    """
    arr, names = _prepare(points, joint_names)
    T, J = arr.shape[-3], arr.shape[-2]
    missing = np.moveaxis(~np.isfinite(arr).all(-1), -2, 0).reshape(T, -1)  # (T, B*J)
    col, start, stop = _runs(missing)
    length, reason = _classify(col, start, stop, T, int(max_gap), missing.all(0))
    gaps = _gaps(col, start, length, reason, arr.shape[:-3], J)
    gaps = tuple(Gap(g.joint, g.start, g.length, False, g.reason, g.batch) for g in gaps)
    return GapReport(T, names, int(max_gap), "none", gaps)


def _interpolate(values: np.ndarray, missing: np.ndarray, fill: np.ndarray, method: str) -> np.ndarray:
    """Fill ``fill`` frames of ``values (T, M, C)`` from the frames not ``missing`` (``(T, M)`` masks).

    Linear is one vectorised pass over all tracks; the spline methods fit one spline per distinct
    pattern of missing frames (tracks that miss the same frames share it).
    """
    T, M, C = values.shape
    out = values.copy()
    cols = np.flatnonzero(fill.any(0))
    if cols.size == 0:
        return out
    if method == "linear":
        t = np.arange(T)[:, None]
        seen = ~missing[:, cols]
        prev = np.maximum.accumulate(np.where(seen, t, -1), axis=0)
        nxt = np.minimum.accumulate(np.where(seen, t, T)[::-1], axis=0)[::-1]
        ti, ci = np.nonzero(fill[:, cols])
        p, q = prev[ti, ci], nxt[ti, ci]  # fillable gaps have data on both sides
        w = ((ti - p) / (q - p))[:, None]
        c = cols[ci]
        out[ti, c] = (1.0 - w) * values[p, c] + w * values[q, c]
        return out
    make = {
        "cubic": interpolate.CubicSpline,
        "pchip": interpolate.PchipInterpolator,
        "akima": interpolate.Akima1DInterpolator,
    }[method]
    groups: dict[bytes, list[int]] = {}  # tracks with the same missing frames share one spline
    for c, key in zip(cols.tolist(), np.packbits(missing[:, cols], axis=0).T):
        groups.setdefault(key.tobytes(), []).append(c)
    for members in groups.values():
        group = np.asarray(members)
        t_seen = np.flatnonzero(~missing[:, group[0]])
        t_fill = np.flatnonzero(fill[:, group].any(1))
        y = values[np.ix_(t_seen, group)]  # (n, G, C)
        if t_seen.size < 2:
            continue
        if t_seen.size < 3 and method == "akima":
            spline = interpolate.interp1d(t_seen, y, axis=0)
        else:
            spline = make(t_seen, y, axis=0)
        ti, gi = np.nonzero(fill[np.ix_(t_fill, group)])  # this group's fillable frames only
        out[t_fill[ti], group[gi]] = spline(t_fill)[ti, gi]
    return out


def fill_gaps(points, max_gap: int = 10, method: str = "cubic", joint_names=None):
    """Interpolate short gaps of ``points (*, T, J, C)``; leave long ones NaN; report all.

    Args:
        points: positions (mm), NaN where missing; numpy or torch.
        max_gap: longest gap (frames) to fill; 0 fills nothing.
        method: ``"cubic"`` (not-a-knot cubic spline through all the joint's valid frames, as
            Pose2Sim's default), ``"linear"``, ``"pchip"`` (monotone, no overshoot) or ``"akima"``.
        joint_names: ``J`` names for the report.

    Returns:
        ``(filled, report)``: positions of the same shape and type (a joint with any NaN coordinate
        is NaN in all its coordinates), and a :class:`GapReport`.
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {method!r}; expected one of {', '.join(INTERPOLATIONS)}")
    if int(max_gap) != max_gap or max_gap < 0:
        raise ValueError(f"max_gap must be a whole number of frames >= 0, got {max_gap}")
    max_gap = int(max_gap)
    arr, names = _prepare(points, joint_names)
    T, J, C = arr.shape[-3:]
    lead = arr.shape[:-3]
    x = np.moveaxis(np.asarray(arr, np.float64), -3, 0).reshape(T, -1, C)  # (T, B*J, C)
    missing = ~np.isfinite(x).all(-1)
    x = np.where(missing[..., None], np.nan, x)
    col, start, stop = _runs(missing)
    length, reason = _classify(col, start, stop, T, max_gap, missing.all(0))
    ok = reason == "filled"
    fill = np.zeros_like(missing)
    if ok.any():
        # mark the frames of the fillable runs: +1 at start, -1 at stop, cumulative sum over time
        mark = np.zeros((T + 1, missing.shape[1]), np.int32)
        np.add.at(mark, (start[ok], col[ok]), 1)
        np.add.at(mark, (stop[ok], col[ok]), -1)
        fill = np.cumsum(mark[:-1], axis=0) > 0
        x = _interpolate(x, missing, fill, method)
    report = GapReport(T, names, max_gap, method, _gaps(col, start, length, reason, lead, J))
    out = np.moveaxis(x.reshape(T, *lead, J, C), 0, -3)
    if not is_tensor(points):
        out = out.astype(arr.dtype if arr.dtype.kind == "f" else np.float64, copy=False)
    return to_like(out, points), report
