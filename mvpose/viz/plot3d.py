"""3D skeleton plots rendered off-screen (matplotlib ``Figure`` + Agg canvas, never pyplot windows).

:class:`SkeletonPlot3D` keeps one figure and updates its lines, so an animation renders each frame
without rebuilding the axes; :func:`skeleton_3d_figure` is the one-call version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mvpose.skeleton import Skeleton
from mvpose.viz.images import to_numpy
from mvpose.viz.style import LEFT_RGB, RIGHT_RGB, as_skeleton, joint_colours, pale, side_of_joints

__all__ = ["SkeletonPlot3D", "skeleton_3d_figure", "cube_limits", "UP_AXES"]

#: plotted (x, y, z) from world (x, y, z) for each world "up" direction: proper rotations (no mirror),
#: so left and right stay where they are; and the axis labels.
UP_AXES: dict[str, tuple[np.ndarray, tuple[str, str, str]]] = {
    "z": (np.eye(3), ("x", "y", "z")),
    "y": (np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]), ("z", "x", "y")),
    "-y": (np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]), ("x", "z", "-y")),
    "-z": (np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]), ("x", "-y", "-z")),
}


def _as_poses(x, name: str) -> np.ndarray:
    a = to_numpy(x, np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"{name}: expected (J, 3) or (N, J, 3) mm, got shape {tuple(a.shape)}")
    return a


def cube_limits(*poses: np.ndarray | None, margin: float = 0.1, min_half_mm: float = 300.0):
    """Centres ``(N, 3)`` and one shared half side (mm) of cubes holding each panel's poses.

    Args:
        poses: arrays ``(N, J, 3)`` (or ``(N, T, J, 3)``: a cube holding the whole sequence), NaN allowed;
            ``None`` entries are skipped.

    Every panel gets a cube of the same size (the largest pose extent, plus ``margin``), centred on
    its own poses, so all panels share one scale and each axis has the same mm per pixel.
    """
    arrs = [np.asarray(p, np.float64) for p in poses if p is not None]
    N = arrs[0].shape[0]
    pts = np.concatenate([a.reshape(N, -1, 3) for a in arrs], 1)  # (N, M, 3)
    finite = np.isfinite(pts).all(-1, keepdims=True)
    lo = np.where(finite, pts, np.inf).min(1)
    hi = np.where(finite, pts, -np.inf).max(1)
    empty = ~np.isfinite(lo).all(-1)
    lo[empty], hi[empty] = -min_half_mm, min_half_mm
    centre = (lo + hi) / 2
    half = max(min_half_mm, float((hi - lo).max()) / 2 * (1 + margin))
    return centre, half


class SkeletonPlot3D:
    """A reusable off-screen figure of ``num_panels`` 3D skeletons side by side.

    Args:
        skeleton: joint set (limbs and sides); ``None`` plots the joints only.
        num_joints: ``J`` (checked against the skeleton).
        num_panels: ``N`` panels in one row.
        with_gt: also draw a ground truth (dashed, paler) in each panel.
        size_px: ``(width, height)`` of one panel, or one int.
        up: the world's up direction, ``"z"`` (mvpose studios, Human3.6M), ``"y"``, ``"-y"`` (camera
            frames) or ``"-z"``; it is drawn vertical.
        elev, azim: matplotlib view angles (degrees).

    Example:
        >>> plot = SkeletonPlot3D("h36m17", 17)
        >>> plot.render(np.random.rand(17, 3) * 1000).shape
        (480, 480, 3)
    """

    def __init__(
        self,
        skeleton: str | Skeleton | None,
        num_joints: int,
        num_panels: int = 1,
        with_gt: bool = False,
        size_px: int | tuple[int, int] = 480,
        up: str = "z",
        elev: float = 15.0,
        azim: float = -60.0,
        dpi: int = 100,
    ) -> None:
        if up not in UP_AXES:
            raise ValueError(f"up must be one of {', '.join(UP_AXES)}, got {up!r}")
        self.skeleton = as_skeleton(skeleton, num_joints)
        self.num_joints, self.num_panels, self.with_gt = int(num_joints), int(num_panels), bool(with_gt)
        self.rotation, labels = UP_AXES[up]
        w, h = (size_px, size_px) if isinstance(size_px, int) else size_px
        self.figure = Figure(figsize=(w * num_panels / dpi, h / dpi), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        self.figure.subplots_adjust(left=0.0, right=1.0, bottom=0.04, top=0.92, wspace=0.02)
        J = self.num_joints
        sides = side_of_joints(self.skeleton, J)
        colours = joint_colours(self.skeleton, J, dark_centre=True) / 255.0
        limbs = np.asarray(self.skeleton.limbs if self.skeleton is not None else [], np.int64).reshape(-1, 2)
        self.limbs = limbs
        self.axes, self.pred_lines, self.gt_lines, self.pred_dots, self.gt_dots = [], [], [], [], []
        side_rgb = {s: colours[sides == s][0] if (sides == s).any() else colours[0] for s in (-1, 0, 1)}
        pale_rgb = {s: np.asarray(pale(c * 255, 0.45)) / 255.0 for s, c in side_rgb.items()}
        limb_side = sides[limbs[:, 1]]
        for n in range(num_panels):
            ax = self.figure.add_subplot(1, num_panels, n + 1, projection="3d")
            ax.view_init(elev=elev, azim=azim)
            ax.set_box_aspect((1, 1, 1), zoom=1.15 if h >= 400 else 0.95)
            ax.set_xlabel(f"{labels[0]} (mm)", fontsize=7, labelpad=-6)
            ax.set_ylabel(f"{labels[1]} (mm)", fontsize=7, labelpad=-6)
            ax.set_zlabel(f"{labels[2]} (mm)", fontsize=7, labelpad=-6)
            ax.tick_params(labelsize=6, pad=-3)
            for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
                axis.set_major_locator(MaxNLocator(4))
            if with_gt:
                self.gt_lines.append(
                    [ax.plot([], [], [], "--", color=pale_rgb[s], lw=1.6)[0] for s in limb_side]
                )
                self.gt_dots.append(
                    {s: ax.plot([], [], [], "o", ms=3, mfc="none", color=pale_rgb[s])[0] for s in (-1, 0, 1)}
                )
            self.pred_lines.append(
                [ax.plot([], [], [], "-", color=side_rgb[s], lw=2.2)[0] for s in limb_side]
            )
            self.pred_dots.append(
                {s: ax.plot([], [], [], "o", ms=3.5, color=side_rgb[s])[0] for s in (-1, 0, 1)}
            )
            ax.title.set_fontsize(9)
            self.axes.append(ax)
        self.sides = sides
        for artist in self._moving():  # drawn over a cached background (see render)
            artist.set_animated(True)
        self._key = None
        self._background = None
        handles = [
            Line2D([], [], color=np.asarray(c) / 255.0, lw=2, label=lab)
            for c, lab in ((LEFT_RGB, "left"), (RIGHT_RGB, "right"))
        ]
        if with_gt:
            handles.append(Line2D([], [], color="0.5", lw=1.5, ls="--", label="ground truth"))
        if self.skeleton is not None:
            self.axes[0].legend(handles=handles, loc="upper left", fontsize=6, frameon=False)
        self._suptitle = None

    def _moving_of(self, n: int) -> list:
        """The artists of panel ``n`` that change from frame to frame: lines, joints, title."""
        gt = self.gt_lines[n] + list(self.gt_dots[n].values()) if self.with_gt else []
        return gt + self.pred_lines[n] + list(self.pred_dots[n].values()) + [self.axes[n].title]

    def _moving(self) -> list:
        return [a for n in range(len(self.axes)) for a in self._moving_of(n)]

    def _set(self, lines, dots, pose: np.ndarray) -> None:
        p = pose @ self.rotation.T
        for ln, (a, b) in zip(lines, self.limbs):
            seg = p[[a, b]]
            ln.set_data_3d(seg[:, 0], seg[:, 1], seg[:, 2])
        for s, dot in dots.items():
            q = p[self.sides == s]
            dot.set_data_3d(q[:, 0], q[:, 1], q[:, 2])

    def render(
        self,
        pred_mm,
        gt_mm=None,
        titles: str | Sequence[str] | None = None,
        limits: tuple[np.ndarray, float] | None = None,
        suptitle: str | None = None,
    ) -> np.ndarray:
        """Draw the poses and return the picture.

        Args:
            pred_mm: ``(N, J, 3)`` (or ``(J, 3)`` for one panel), world mm; NaN joints are left out.
            gt_mm: the same shape, when the plot was made ``with_gt``.
            titles: one title per panel (a single string for one panel).
            limits: ``(centres (N, 3), half_mm)`` world cubes (default :func:`cube_limits` of these poses).
            suptitle: a title over all panels.

        Returns:
            uint8 RGB ``(H, W, 3)``.
        """
        pred = _as_poses(pred_mm, "pred_mm")
        gt = None if gt_mm is None else _as_poses(gt_mm, "gt_mm")
        N, J = self.num_panels, self.num_joints
        if pred.shape[:2] != (N, J):
            raise ValueError(f"pred_mm: expected ({N}, {J}, 3), got {pred.shape}")
        if gt is not None and gt.shape != pred.shape:
            raise ValueError(f"gt_mm: expected the shape of pred_mm {pred.shape}, got {gt.shape}")
        if gt is not None and not self.with_gt:
            raise ValueError("gt_mm given but the plot was made without with_gt")
        if isinstance(titles, str):
            titles = [titles] * N if N == 1 else None
        if titles is not None and len(titles) != N:
            raise ValueError(f"titles: expected {N}, got {len(titles)}")
        centres, half = cube_limits(pred, gt) if limits is None else limits
        centres = np.broadcast_to(np.asarray(centres, np.float64), (N, 3))
        for n, ax in enumerate(self.axes):
            self._set(self.pred_lines[n], self.pred_dots[n], pred[n])
            if self.with_gt:
                g = gt[n] if gt is not None else np.full((J, 3), np.nan)
                self._set(self.gt_lines[n], self.gt_dots[n], g)
            ax.title.set_text("" if titles is None else str(titles[n]))
        # The axes, panes, ticks and legend only change with the cubes, the view or the suptitle:
        # they are drawn once into a cached background and the moving artists are drawn over it.
        key = (centres.tobytes(), float(half), tuple((ax.elev, ax.azim) for ax in self.axes), suptitle)
        if key != self._key:
            for n, ax in enumerate(self.axes):
                c = centres[n] @ self.rotation.T
                ax.set_xlim(c[0] - half, c[0] + half)
                ax.set_ylim(c[1] - half, c[1] + half)
                ax.set_zlim(c[2] - half, c[2] + half)
            if suptitle is not None or self._suptitle is not None:
                self._suptitle = self.figure.suptitle(suptitle or "", fontsize=10, y=0.995)
                self.figure.subplots_adjust(top=0.84 if suptitle else 0.92)
            self.canvas.draw()
            self._background, self._key = self.canvas.copy_from_bbox(self.figure.bbox), key
        else:
            self.canvas.restore_region(self._background)
        for n, ax in enumerate(self.axes):
            for artist in self._moving_of(n):  # ground truth first, prediction on top (mplot3d does not
                ax.draw_artist(artist)  # depth-sort lines either)
        return np.array(np.asarray(self.canvas.buffer_rgba())[..., :3])


def skeleton_3d_figure(
    pred_mm,
    gt_mm=None,
    skeleton: str | Skeleton | None = "h36m17_lt",
    title: str | Sequence[str] | None = None,
    *,
    size_px: int | tuple[int, int] = 480,
    up: str = "z",
    elev: float = 15.0,
    azim: float = -60.0,
) -> np.ndarray:
    """A 3D plot of one pose or a row of ``N`` poses: prediction solid, ground truth dashed and paler,
    left blue, right red, equal scales on the three axes (one scale for all panels), ``up`` vertical.

    Args:
        pred_mm: ``(J, 3)`` or ``(N, J, 3)`` world mm (numpy or torch); NaN joints are left out.
        gt_mm: ground truth of the same shape, or ``None``.
        skeleton: joint set of the poses.
        title: a string (over the whole figure; the panel title for one pose), or ``N`` panel titles.
        size_px: ``(width, height)`` of one panel, or one int.
        up: the world's up axis (see :class:`SkeletonPlot3D`).

    Returns:
        uint8 RGB ``(H, N * W, 3)``.

    Example:
        >>> skeleton_3d_figure(np.zeros((2, 17, 3)), skeleton="h36m17", size_px=200).shape
        (200, 400, 3)
    """
    pred = _as_poses(pred_mm, "pred_mm")
    plot = SkeletonPlot3D(
        skeleton,
        pred.shape[1],
        pred.shape[0],
        with_gt=gt_mm is not None,
        size_px=size_px,
        up=up,
        elev=elev,
        azim=azim,
    )
    panel_titles = title if (title is not None and not isinstance(title, str)) else None
    if isinstance(title, str) and pred.shape[0] == 1:
        panel_titles, title = [title], None
    return plot.render(pred, gt_mm, titles=panel_titles, suptitle=title if isinstance(title, str) else None)
