"""``load_rig`` / ``save_rig``: pick the format from ``format=``, the file name or its content.

See docs/calibration.md for the format table, units and conventions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mvpose.calib import easymocap, h36m, mmpose_pkl, mpi3dhp, mvpose_json, panoptic, qualisys, toml_rig
from mvpose.calib._common import CalibrationError, as_path
from mvpose.geometry.camera import CameraRig

__all__ = ["Format", "FORMATS", "detect_format", "load_rig", "save_rig"]


@dataclass(frozen=True)
class Format:
    """A calibration file family: how to recognise, read and (optionally) write it."""

    name: str
    description: str
    suffixes: tuple[str, ...]
    read: Callable
    write: Callable | None = None
    multi_rig: bool = False

    @property
    def writable(self) -> bool:
        return self.write is not None


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "mvpose-json",
            "mvpose-rig/1 JSON (mm; one rig or several under 'rigs')",
            (".json",),
            mvpose_json.read,
            mvpose_json.write,
            multi_rig=True,
        ),
        Format(
            "toml",
            "anipose / Pose2Sim / FreeMoCap calibration TOML (translation in m)",
            (".toml",),
            toml_rig.read,
            toml_rig.write,
        ),
        Format(
            "easymocap",
            "EasyMocap intri.yml + extri.yml (OpenCV FileStorage, T in m)",
            (".yml", ".yaml"),
            easymocap.read,
            easymocap.write,
        ),
        Format("qualisys", "Qualisys QTM .qca.txt export (XML, mm, 1/64 px)", (".qca.txt",), qualisys.read),
        Format("panoptic", "CMU Panoptic calibration JSON (cm)", (".json",), panoptic.read),
        Format(
            "h36m-h5",
            "Human3.6M cameras.h5, 3d-pose-baseline layout (mm)",
            (".h5", ".hdf5"),
            h36m.read,
            multi_rig=True,
        ),
        Format(
            "3dhp",
            "MPI-INF-3DHP camera.calibration text (Skeletool V1.0, mm)",
            (".calibration",),
            mpi3dhp.read,
        ),
        Format(
            "mmpose-pkl",
            "mmpose cameras.pkl of Human3.6M / MPI-INF-3DHP (m), restricted unpickling",
            (".pkl", ".pickle"),
            mmpose_pkl.read,
            multi_rig=True,
        ),
    )
}


def _unknown(path, what: str) -> CalibrationError:
    return CalibrationError(
        path, None, f"{what}; known formats: {', '.join(FORMATS)} (pass format= to choose one explicitly)"
    )


def detect_format(path) -> str:
    """Name of the format of ``path`` (a file or an EasyMocap folder), from its name, then its content."""
    path = as_path(path)
    if not path.exists():
        raise CalibrationError(path, None, "file not found")
    if path.is_dir():
        if any((path / f"{n}{s}").exists() for n in ("intri", "extri") for s in (".yml", ".yaml")):
            return "easymocap"
        raise _unknown(path, "folder has no intri.yml / extri.yml, the only folder format")
    name = path.name.lower()
    if name.endswith(".qca.txt"):
        return "qualisys"
    suffix = path.suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes and suffix != ".json":
            return fmt.name
    if suffix == ".json":
        doc = mvpose_json.load_json(path)
        if mvpose_json.is_mvpose_json(doc):
            return "mvpose-json"
        if panoptic.is_panoptic(doc):
            return "panoptic"
        raise _unknown(
            path, "JSON layout not recognised (expected 'format': 'mvpose-rig/1' or a Panoptic calibration)"
        )
    with open(path, "rb") as f:
        head = f.read(512)
    stripped = head.lstrip()
    if stripped.startswith(b"<?xml") or stripped.startswith(b"<calibration"):
        return "qualisys"
    if mpi3dhp.looks_like(head):
        return "3dhp"
    if stripped.startswith(b"%YAML"):
        return "easymocap"
    if head.startswith(b"\x89HDF"):
        return "h36m-h5"
    if head[:1] == b"\x80":
        return "mmpose-pkl"
    raise _unknown(path, "format not recognised from the file name or content")


def _call(fn: Callable, fmt: str, *args, **kw):
    params = inspect.signature(fn).parameters
    bad = [k for k in kw if k not in params]
    if bad:
        takes = [p for p in params if p not in ("path", "rig", "subject")]
        raise TypeError(f"format {fmt!r} does not take keyword(s) {bad}; it takes {takes}")
    return fn(*args, **kw)


def load_rig(path, subject=None, *, format: str | None = None, **kw) -> CameraRig:
    """Read a calibration file into a float64 :class:`CameraRig` (mm, ``x_cam = R @ X + t``).

    Args:
        path: the file (or an EasyMocap folder).
        subject: which rig of a file holding several (Human3.6M ``"S1"`` or ``1``; MPI-INF-3DHP
            ``"S1/Seq1"``; a key of an mvpose JSON's ``rigs``). Without it such a file raises
            :class:`CalibrationError` listing the subjects.
        format: one of :data:`FORMATS`; detected from the name/content when omitted.
        **kw: format options: ``translation_unit`` (toml), ``image_size`` (easymocap),
            ``qca_distortion_scale`` / ``qca_keep_k3`` (qualisys), ``types`` (panoptic).

    Raises:
        CalibrationError: missing file, unknown format, malformed field (the message names the
            file and the field and says what was expected).

    Example:
        >>> rig = load_rig("calib/h36m_cameras.json", subject="S1")  # doctest: +SKIP
    """
    path = as_path(path)
    if not path.exists():
        raise CalibrationError(path, None, "file not found")
    if format is None:
        format = detect_format(path)
    if format not in FORMATS:
        raise _unknown(path, f"unknown format {format!r}")
    return _call(FORMATS[format].read, format, path, subject=subject, **kw)


def save_rig(rig, path, format: str | None = None, **kw) -> Path:
    """Write ``rig`` (or ``{subject: rig}`` for mvpose JSON) to ``path``; returns the path written.

    The format comes from ``format=`` or the suffix: ``.json`` mvpose-rig/1, ``.toml`` Pose2Sim/anipose,
    a folder (or ``intri.yml``/``extri.yml``) EasyMocap. Options: ``allow_approximate=True`` lets an
    ``h36m`` rig be written to TOML/YAML as OpenCV ``P1 = p[0], P2 = p[1]`` (logged as a warning);
    ``translation_unit`` (toml, default ``"m"``); ``source`` (json).
    """
    path = as_path(path)
    if format is None:
        suffix = path.suffix.lower()
        if suffix == ".json":
            format = "mvpose-json"
        elif suffix == ".toml":
            format = "toml"
        elif suffix in (".yml", ".yaml") or suffix == "" or path.is_dir():
            format = "easymocap"
        else:
            raise CalibrationError(
                path,
                None,
                "cannot tell the output format from the name; use .json, .toml or a folder (EasyMocap), "
                "or pass format=",
            )
    fmt = FORMATS.get(format)
    if fmt is None:
        raise _unknown(path, f"unknown format {format!r}")
    if not fmt.writable:
        writable = [n for n, f in FORMATS.items() if f.writable]
        raise CalibrationError(path, None, f"format {format!r} is read-only; mvpose writes {writable}")
    if isinstance(rig, Mapping) and format != "mvpose-json":
        raise CalibrationError(
            path, None, f"only mvpose-json holds several rigs; {format!r} takes one CameraRig"
        )
    _call(fmt.write, format, rig, path, **kw)
    return path
