"""Motion-capture readers: ASF/AMC and BVH, forward kinematics to joint positions in millimetres.

``load_motion(path)`` dispatches on the extension; ``motion_to_h36m17(motion)`` maps a supported
skeleton (CMU ASF, Character Creator BVH rig) to the Human3.6M 17-joint set.
"""

from __future__ import annotations

from pathlib import Path

from .asf_amc import CMU_FPS, AsfBone, AsfSkeleton, find_asf_for, read_amc, read_asf
from .bvh import infer_scale_to_mm, read_bvh
from .procedural import (
    BodyShape,
    ProceduralMotion,
    generate_motion,
    generate_motion_with_info,
    sample_body,
)
from .to_h36m import H36M17_FROM, H36M17_NAMES, H36M17_PARENTS, detect_rig, h36m17_notes, motion_to_h36m17
from .types import Motion

__all__ = [
    "Motion",
    "load_motion",
    "read_asf",
    "read_amc",
    "find_asf_for",
    "AsfSkeleton",
    "AsfBone",
    "CMU_FPS",
    "read_bvh",
    "infer_scale_to_mm",
    "H36M17_NAMES",
    "H36M17_PARENTS",
    "H36M17_FROM",
    "detect_rig",
    "h36m17_notes",
    "motion_to_h36m17",
    "BodyShape",
    "ProceduralMotion",
    "sample_body",
    "generate_motion",
    "generate_motion_with_info",
]


def load_motion(path: str | Path, **kw) -> Motion:
    """Read a motion file, choosing the reader by extension.

    * ``.bvh``: :func:`read_bvh` (keywords ``scale_to_mm``, ``drop_first_frame``, ...).
    * ``.amc``: :func:`read_amc`; the skeleton is ``asf=`` (a path or :class:`AsfSkeleton`), else the
      ``.asf`` in the same folder with the same subject number (:func:`find_asf_for`:
      ``07_05-walk.amc`` -> ``07-walk.asf`` or ``07.asf``). Keyword ``fps`` (default 120).

    Raises:
        FileNotFoundError: naming the file, if it (or the AMC's skeleton) does not exist.
        ValueError: for an unsupported extension, or a malformed file (naming file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such motion file")
    ext = path.suffix.lower()
    if ext == ".bvh":
        return read_bvh(path, **kw)
    if ext == ".amc":
        asf = kw.pop("asf", None)
        if asf is None:
            asf = find_asf_for(path)
        elif not isinstance(asf, AsfSkeleton) and not Path(asf).is_file():
            raise FileNotFoundError(f"{path}: skeleton asf={str(asf)!r} does not exist")
        return read_amc(path, asf, **kw)
    if ext == ".asf":
        raise ValueError(f"{path}: an ASF file is a skeleton without motion; load the .amc (asf=this file)")
    raise ValueError(f"{path}: unsupported motion format {ext!r}; expected .bvh or .amc")
