"""Datasets and data utilities: the multi-view sample contract (docs/datasets.md), transforms, batching."""

from mvpose.data.collate import collate_multiview, rig_from_batch
from mvpose.data.h36m import DatasetError, Human36MMultiView, load_h36m_labels
from mvpose.data.mpi3dhp import MPIInf3DHPMultiView
from mvpose.data.transforms import (
    crop_and_resize,
    denormalize_image,
    normalize_image,
    square_bbox,
    undistort_frame,
)

__all__ = [
    "collate_multiview",
    "rig_from_batch",
    "DatasetError",
    "Human36MMultiView",
    "load_h36m_labels",
    "MPIInf3DHPMultiView",
    "crop_and_resize",
    "denormalize_image",
    "normalize_image",
    "square_bbox",
    "undistort_frame",
]
