"""Writers and readers of 3D motion for studio tools: JSON, NPZ, TRC, C3D, BVH.

Everything goes through :class:`Trajectories` (``(T, J, 3)`` mm in the mvpose world, joint names,
fps, frame indices). :func:`write` and :func:`read` pick the format from the suffix (or
``format=``); each format's own functions take its options:

=======  =====================================  ======================================  ============
format   writer                                 reader                                  default units
=======  =====================================  ======================================  ============
json     :func:`write_json` (mvpose layout)     :func:`read_json`                       mm
npz      :func:`write_npz`                      :func:`read_npz`                        mm
trc      :func:`write_trc` (OpenSim, Pose2Sim)  :func:`read_trc` (also Pose2Sim's)      m
c3d      :func:`write_c3d` (``c3d`` package)    :func:`read_c3d`                        mm
bvh      :func:`write_bvh` (rotations solved)   :func:`read_bvh_trajectories`           cm
=======  =====================================  ======================================  ============

See docs/export.md for layouts, axis conventions and what each format can and cannot express.
"""

from __future__ import annotations

from pathlib import Path

from .bvh import BvhSolution, guess_skeleton, read_bvh_trajectories, solve_bvh, tpose_directions, write_bvh
from .c3d_file import read_c3d, write_c3d
from .mvpose_files import read_json, read_npz, write_json, write_npz
from .trajectories import UNITS_MM, Trajectories
from .trc import joint_names_from_markers, pose2sim_marker_name, read_trc, write_trc

__all__ = [
    "FORMATS",
    "DEFAULT_UNITS",
    "BvhSolution",
    "Trajectories",
    "UNITS_MM",
    "format_of",
    "guess_skeleton",
    "joint_names_from_markers",
    "pose2sim_marker_name",
    "read",
    "read_bvh_trajectories",
    "read_c3d",
    "read_json",
    "read_npz",
    "read_trc",
    "solve_bvh",
    "tpose_directions",
    "write",
    "write_bvh",
    "write_c3d",
    "write_json",
    "write_npz",
    "write_trc",
]

FORMATS = ("json", "npz", "trc", "c3d", "bvh")
#: units each format is written in unless told otherwise
DEFAULT_UNITS = {"json": "mm", "npz": "mm", "trc": "m", "c3d": "mm", "bvh": "cm"}
_WRITERS = {"json": write_json, "npz": write_npz, "trc": write_trc, "c3d": write_c3d, "bvh": write_bvh}
_READERS = {
    "json": read_json,
    "npz": read_npz,
    "trc": read_trc,
    "c3d": read_c3d,
    "bvh": read_bvh_trajectories,
}


def format_of(path, format: str | None = None) -> str:
    """``format`` if given, else the format named by ``path``'s suffix; ValueError if neither is known."""
    fmt = (format or Path(path).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(
            f"'{path}': unknown motion format {fmt or '(no suffix)'!r}; expected one of {', '.join(FORMATS)}"
        )
    return fmt


def write(path, traj: Trajectories, format: str | None = None, **options):
    """Write ``traj`` to ``path`` in ``format`` (default: from the suffix); ``options`` go to the
    format's writer (``units``, ``axes``, ``skeleton``, ...). Returns the writer's result (the path,
    or the :class:`BvhSolution` for BVH)."""
    fmt = format_of(path, format)
    options.setdefault("units", DEFAULT_UNITS[fmt])
    return _WRITERS[fmt](path, traj, **options)


def read(path, format: str | None = None, **options) -> Trajectories:
    """Read ``path`` (format from the suffix unless given) into :class:`Trajectories`."""
    return _READERS[format_of(path, format)](path, **options)
