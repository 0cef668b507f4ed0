"""Cameras and geometry in torch (no I/O): rigs, distortion, triangulation, rotations."""

from mvpose.geometry.camera import CameraRig
from mvpose.geometry.triangulation import (
    project_pinhole,
    refine_points,
    reprojection_error,
    triangulate,
    triangulate_dlt,
    triangulate_robust,
)

__all__ = [
    "CameraRig",
    "project_pinhole",
    "refine_points",
    "reprojection_error",
    "triangulate",
    "triangulate_dlt",
    "triangulate_robust",
]
