"""Per-camera, per-joint reprojection errors and exclusions of a triangulation, as tables and a figure.

Works on anything shaped like :class:`mvpose.pipeline.triangulate.TriangulationResult`:
``reprojection_error_px (T, V, J)`` (finite for every confident detection of the subject whose joint
was triangulated), ``views_used (T, V, J)``, ``camera_names``, ``joint_names``, ``frame_indices``.
An *observation* is a finite error; it is *excluded* when the triangulation did not use it
(``views_used`` false: rejected as an outlier by the robust methods).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mvpose.viz.images import write_png

__all__ = ["ErrorTables", "error_tables", "errors_figure", "write_error_report"]


@dataclass
class ErrorTables:
    """Summary arrays of one result (``V`` cameras, ``J`` joints, ``T`` frames).

    Attributes:
        median_error_px: ``(V, J)`` median reprojection error over all observations (excluded ones
            too), NaN where there are none.
        median_used_error_px: ``(V, J)`` the same over the observations used.
        observations: ``(V, J)`` int counts; ``excluded``: ``(V, J)`` int counts.
        exclusion_rate: ``(V, J)`` ``excluded / observations`` (NaN without observations).
        camera_exclusion_rate: ``(V,)`` the same over all joints of each camera.
        frame_median_error_px: ``(T, V)`` median over the joints of each frame (all observations).
    """

    camera_names: tuple[str, ...]
    joint_names: tuple[str, ...]
    frame_indices: np.ndarray
    median_error_px: np.ndarray
    median_used_error_px: np.ndarray
    observations: np.ndarray
    excluded: np.ndarray
    exclusion_rate: np.ndarray
    camera_exclusion_rate: np.ndarray
    frame_median_error_px: np.ndarray


def _nanmedian(x: np.ndarray, axis) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN
        return np.nanmedian(x, axis=axis)


def error_tables(result) -> ErrorTables:
    """Compute :class:`ErrorTables` from a triangulation result (see the module docstring)."""
    err = np.asarray(result.reprojection_error_px, np.float64)
    used = np.asarray(result.views_used, bool)
    if err.ndim != 3 or used.shape != err.shape:
        raise ValueError(
            f"result: reprojection_error_px {err.shape} and views_used {used.shape} must both be (T, V, J)"
        )
    T, V, J = err.shape
    cams, joints = tuple(result.camera_names), tuple(result.joint_names)
    if len(cams) != V or len(joints) != J:
        raise ValueError(
            f"result: {len(cams)} camera names and {len(joints)} joint names for errors {err.shape}"
        )
    obs = np.isfinite(err)
    excl = obs & ~used
    n_obs, n_excl = obs.sum(0), excl.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_obs > 0, n_excl / n_obs, np.nan)
        cam_rate = np.where(n_obs.sum(1) > 0, n_excl.sum(1) / n_obs.sum(1), np.nan)
    return ErrorTables(
        camera_names=cams,
        joint_names=joints,
        frame_indices=np.asarray(getattr(result, "frame_indices", np.arange(T))),
        median_error_px=_nanmedian(err, 0),
        median_used_error_px=_nanmedian(np.where(used & obs, err, np.nan), 0),
        observations=n_obs,
        excluded=n_excl,
        exclusion_rate=rate,
        camera_exclusion_rate=cam_rate,
        frame_median_error_px=_nanmedian(err, 2),
    )


def _annotate(ax, values: np.ndarray, fmt: str) -> None:
    V, J = values.shape
    if V * J > 400:
        return
    finite = values[np.isfinite(values)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for v in range(V):
        for j in range(J):
            x = values[v, j]
            if np.isfinite(x):
                ax.text(
                    j,
                    v,
                    format(x, fmt),
                    ha="center",
                    va="center",
                    fontsize=5.5,
                    color="white" if x < mid else "black",
                )


def errors_figure(result, title: str | None = None, width_px: int = 1400) -> np.ndarray:
    """Four panels: median reprojection error per camera x joint, exclusion rate per camera x joint,
    exclusion rate per camera (bars, with counts), median error per frame and camera (lines).

    Returns:
        uint8 RGB ``(H, W, 3)``.
    """
    tab = error_tables(result)
    V, J = tab.median_error_px.shape
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, (width_px * 0.62) / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    gs = fig.add_gridspec(
        2, 2, width_ratios=(3, 1.2), hspace=0.55, wspace=0.18, left=0.1, right=0.97, top=0.9, bottom=0.16
    )
    for row, (values, label, fmt, cmap) in enumerate(
        (
            (
                tab.median_error_px,
                "median reprojection error (px), all confident detections",
                ".0f",
                "viridis",
            ),
            (100 * tab.exclusion_rate, "excluded from the triangulation (%)", ".0f", "magma"),
        )
    ):
        ax = fig.add_subplot(gs[row, 0])
        masked = np.ma.masked_invalid(values)
        cm = colormaps[cmap].with_extremes(bad="0.85")
        im = ax.imshow(masked, aspect="auto", cmap=cm, interpolation="nearest")
        ax.set_yticks(range(V), tab.camera_names, fontsize=7)
        ax.set_xticks(range(J), tab.joint_names, fontsize=6, rotation=60, ha="right")
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01).ax.tick_params(labelsize=6)
        _annotate(ax, values, fmt)

    ax = fig.add_subplot(gs[0, 1])
    rate = 100 * np.nan_to_num(tab.camera_exclusion_rate)
    bars = ax.bar(range(V), rate, color="tab:purple")
    ax.set_xticks(range(V), tab.camera_names, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("excluded (%)", fontsize=8)
    ax.set_title("exclusion rate per camera", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.set_ylim(0, max(5.0, rate.max() * 1.25))
    for b, n_ex, n in zip(bars, tab.excluded.sum(1), tab.observations.sum(1)):
        ax.text(
            b.get_x() + b.get_width() / 2, b.get_height(), f"{n_ex}/{n}", ha="center", va="bottom", fontsize=6
        )

    ax = fig.add_subplot(gs[1, 1])
    for v in range(V):
        ax.plot(tab.frame_indices, tab.frame_median_error_px[:, v], lw=1, label=tab.camera_names[v])
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel("median error (px)", fontsize=8)
    ax.set_title("per frame", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, frameon=False, ncol=2 if V > 4 else 1)
    if title:
        fig.suptitle(title, fontsize=11)
    canvas.draw()
    return np.array(np.asarray(canvas.buffer_rgba())[..., :3])


def write_error_report(result, out_dir, title: str | None = None) -> dict[str, Path]:
    """Write ``errors.png`` (:func:`errors_figure`) and ``errors.csv`` (one row per camera and joint:
    observations, excluded, exclusion rate, median errors) into ``out_dir``. Returns the paths."""
    out = Path(out_dir)
    tab = error_tables(result)
    png = write_png(out / "errors.png", errors_figure(result, title=title))
    path = out / "errors.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "camera",
                "joint",
                "observations",
                "excluded",
                "exclusion_rate",
                "median_error_px",
                "median_used_error_px",
            ]
        )
        for v, cam in enumerate(tab.camera_names):
            for j, joint in enumerate(tab.joint_names):
                w.writerow(
                    [
                        cam,
                        joint,
                        int(tab.observations[v, j]),
                        int(tab.excluded[v, j]),
                        _num(tab.exclusion_rate[v, j]),
                        _num(tab.median_error_px[v, j]),
                        _num(tab.median_used_error_px[v, j]),
                    ]
                )
    return {"errors_png": png, "errors_csv": path}


def _num(x: float) -> str:
    return "" if not np.isfinite(x) else f"{x:.4g}"
