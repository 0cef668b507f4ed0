"""Pictures: 2D skeletons on images, 3D skeleton plots, per-view grids for training logs, and the
studio pictures of a triangulated capture (reprojection overlays, 3D animations, error plots).

Everything renders off-screen (matplotlib ``Figure`` + Agg canvas, OpenCV) and returns uint8 RGB
arrays ``(H, W, 3)`` or writes files; nothing opens a window. Left joints and limbs are blue, right
ones red, predictions solid, ground truth dashed and paler. See docs/viz.md.

Library (used by the training engine):

* :func:`skeleton_3d_figure` - 3D plot of one pose or a row of poses, prediction vs ground truth;
* :func:`draw_skeleton_2d` - limbs and joints on an image;
* :func:`reprojection_grid` - every view with the 2D prediction and ground truth;
* :func:`heatmap_grid` - heatmaps over the views, or a joints x views table;
* :func:`pred_vs_gt_png` - one PNG with the 3D plot and the reprojections.

Studio (``mvpose viz``): :func:`render_overlay`, :func:`write_skeleton_animation`,
:func:`skeleton_strip`, :func:`errors_figure`, :func:`write_error_report`.
"""

from __future__ import annotations

from mvpose.viz.animation import skeleton_strip, write_skeleton_animation
from mvpose.viz.draw2d import draw_markers, draw_skeleton_2d
from mvpose.viz.errors import ErrorTables, error_tables, errors_figure, write_error_report
from mvpose.viz.frames import select_frames, slice_result
from mvpose.viz.grids import heatmap_grid, pred_vs_gt_png, reprojection_grid
from mvpose.viz.images import tile_images, to_uint8_images, write_png
from mvpose.viz.overlay import draw_overlay, project_result, render_overlay, subject_detections
from mvpose.viz.plot3d import SkeletonPlot3D, skeleton_3d_figure
from mvpose.viz.video import VideoWriter, read_frames

__all__ = [
    "skeleton_3d_figure",
    "SkeletonPlot3D",
    "draw_skeleton_2d",
    "draw_markers",
    "reprojection_grid",
    "heatmap_grid",
    "pred_vs_gt_png",
    "to_uint8_images",
    "tile_images",
    "write_png",
    "VideoWriter",
    "read_frames",
    "write_skeleton_animation",
    "skeleton_strip",
    "render_overlay",
    "project_result",
    "subject_detections",
    "draw_overlay",
    "ErrorTables",
    "error_tables",
    "errors_figure",
    "write_error_report",
    "select_frames",
    "slice_result",
]
