"""Studio inference on captures: read 2D detections, associate the subject across views, triangulate,
write 3D joints with per-camera reports (see docs/triangulate.md)."""

from mvpose.pipeline.association import Association, select_single_person
from mvpose.pipeline.detections import Detections, load_detections, match_cameras, read_npz, read_openpose
from mvpose.pipeline.triangulate import (
    TriangulationResult,
    format_summary,
    read_result,
    triangulate_capture,
    write_result,
)

__all__ = [
    "Association",
    "Detections",
    "TriangulationResult",
    "format_summary",
    "load_detections",
    "match_cameras",
    "read_npz",
    "read_openpose",
    "read_result",
    "select_single_person",
    "triangulate_capture",
    "write_result",
]
