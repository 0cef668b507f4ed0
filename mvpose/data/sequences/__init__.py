"""VideoPose3D-style sequence data for the temporal stage: npz files, sets, windows and exports.

* :mod:`.npz`: VideoPose3D's ``data_3d_*.npz`` / ``data_2d_*.npz`` layouts, read through a restricted
  unpickler (:func:`load_npz`), written with :func:`write_positions_3d` / :func:`write_positions_2d`.
* :mod:`.sets`: :class:`SequenceSet` (world 3D, per-camera 2D, rigs; mm and pixels) and its
  per-(subject, action, camera) :class:`SequenceItem`.
* :mod:`.flip`: VideoPose3D's screen normalisation and left/right mirroring of poses and cameras.
* :mod:`.windows`: :class:`WindowDataset` / :class:`WindowBatches` (``ChunkedGenerator``),
  :func:`iter_sequences` (``UnchunkedGenerator``) and :func:`flip_average` (test-time flip).
* :mod:`.mpi3dhp_npz`: MPI-INF-3DHP in P-STMO's ``data_train_3dhp.npz`` / ``data_test_3dhp.npz``
  (:func:`read_3dhp_npz`, per-frame ``valid`` masks) and :func:`evaluate_3dhp` (PCK/AUC/MPJPE).
* :mod:`.export`: :func:`export_sequences` (motions through a rig to npz, with
  :class:`NoiseConfig` detector noise).

See docs/sequences.md.
"""

from .export import NoiseConfig, add_detector_noise, export_sequences, motion_to_world_h36m17
from .flip import (
    flip_indices_from_symmetry,
    flip_pixels,
    flip_pose,
    flip_world,
    image_coordinates,
    mirror_rig,
    normalize_screen_coordinates,
)
from .mpi3dhp_npz import (
    MPI3DHP_PCK_JOINTS,
    MPI3DHP_TEST_IMAGE_SIZES,
    MPI3DHP_TRAIN_CAMERAS,
    MPI3DHP_TRAIN_IMAGE_SIZE,
    MPI3DHPItem,
    MPI3DHPSequences,
    evaluate_3dhp,
    read_3dhp_npz,
    read_3dhp_test_npz,
    read_3dhp_train_npz,
)
from .npz import (
    H36M32_KEPT_JOINTS,
    H36M32_PARENTS,
    H36M32_PLACEHOLDER_SOURCE,
    VP3D_H36M_METADATA,
    RestrictedUnpickler,
    SequenceFileError,
    h36m17_to_32,
    h36m32_to_17,
    load_npz,
    read_positions_2d,
    read_positions_3d,
    save_npz,
    write_positions_2d,
    write_positions_3d,
)
from .sets import (
    SequenceItem,
    SequenceSet,
    project_world,
    rig_from_metadata,
    rig_to_metadata,
    world_to_camera,
)
from .windows import WindowBatches, WindowDataset, chunk_starts, flip_average, iter_sequences, pad_sequence

__all__ = [
    "NoiseConfig",
    "add_detector_noise",
    "export_sequences",
    "motion_to_world_h36m17",
    "flip_indices_from_symmetry",
    "flip_pixels",
    "flip_pose",
    "flip_world",
    "image_coordinates",
    "mirror_rig",
    "normalize_screen_coordinates",
    "MPI3DHP_PCK_JOINTS",
    "MPI3DHP_TEST_IMAGE_SIZES",
    "MPI3DHP_TRAIN_CAMERAS",
    "MPI3DHP_TRAIN_IMAGE_SIZE",
    "MPI3DHPItem",
    "MPI3DHPSequences",
    "evaluate_3dhp",
    "read_3dhp_npz",
    "read_3dhp_test_npz",
    "read_3dhp_train_npz",
    "H36M32_KEPT_JOINTS",
    "H36M32_PARENTS",
    "H36M32_PLACEHOLDER_SOURCE",
    "VP3D_H36M_METADATA",
    "RestrictedUnpickler",
    "SequenceFileError",
    "h36m17_to_32",
    "h36m32_to_17",
    "load_npz",
    "read_positions_2d",
    "read_positions_3d",
    "save_npz",
    "write_positions_2d",
    "write_positions_3d",
    "SequenceItem",
    "SequenceSet",
    "project_world",
    "rig_from_metadata",
    "rig_to_metadata",
    "world_to_camera",
    "WindowBatches",
    "WindowDataset",
    "chunk_starts",
    "flip_average",
    "iter_sequences",
    "pad_sequence",
]
