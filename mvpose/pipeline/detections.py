"""Per-camera 2D detections: OpenPose JSON folders and NPZ arrays, read into one :class:`Detections`.

Layouts read:

* **OpenPose JSON** (also what Pose2Sim consumes): a folder holding one sub-folder per camera
  (``pose/cam1_json``, ``pose/cam2_json``, ...), one file per frame whose name ends with the frame
  number (``cam01.0042.json``, ``video_000000000042_keypoints.json``). Each file is
  ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...]}, ...]}`` in pixels of the
  full image; a keypoint ``(0, 0, 0)`` was not detected. Frames are matched across cameras by
  that trailing number.
* **NPZ**: an array ``(V, T, J, 3)`` (x px, y px, confidence) under the key ``keypoints`` (or
  the file's only array), optionally ``(V, T, P, J, 3)`` with several persons, plus optional
  ``camera_names (V,)``, ``frame_indices (T,)`` and ``skeleton``.

Problems inside a capture never stop the reading: an unreadable file, a wrong keypoint count or a
frame missing in one camera leaves that camera's frame NaN, logs a warning naming the file and is
counted in :attr:`Detections.warnings`. Problems with the capture as a whole (no camera folder,
unknown layout, a 25-keypoint set that could be BODY_25 or BODY_25B) raise ``ValueError`` naming the
path and what was expected.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mvpose.skeleton import Skeleton, available_skeletons, get_skeleton

__all__ = [
    "Detections",
    "load_detections",
    "read_openpose",
    "read_npz",
    "resolve_skeleton",
    "match_cameras",
    "camera_number",
    "camera_index",
    "parse_sync_offsets",
    "parse_frame_range",
    "shift_cameras",
    "select_frames",
]

logger = logging.getLogger(__name__)

#: How many individual warnings of one kind are logged before they are only counted.
MAX_LOGGED = 5


@dataclass
class Detections:
    """2D keypoints of every camera and frame, several persons per frame.

    Attributes:
        keypoints: ``(V, T, P, J, 3)`` float64 numpy: x px, y px (full image, distorted: as
            the detector saw it), confidence. Missing keypoints, missing persons (padding up to
            ``P``, the most persons in any frame) and missing frames are NaN in all three.
        camera_names: ``V`` names (the camera folder names, or the NPZ's ``camera_names``).
        frame_indices: ``(T,)`` int64 frame numbers (from the file names for OpenPose).
        source: where each camera's data came from (one path per camera folder, or the NPZ).
        skeleton: name of the keypoint set (``mvpose.skeleton``), ``None`` when unknown.
        joint_names: ``J`` names (``joint_00`` ... when the skeleton is unknown).
        warnings: human-readable problems met while reading (files, frames, counts).
    """

    keypoints: np.ndarray
    camera_names: tuple[str, ...]
    frame_indices: np.ndarray
    source: tuple[Path, ...] = ()
    skeleton: str | None = None
    joint_names: tuple[str, ...] | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        kp = self.keypoints
        if not isinstance(kp, np.ndarray):  # torch tensors and lists
            kp = kp.detach().cpu().numpy() if hasattr(kp, "detach") else np.asarray(kp)
        kp = np.asarray(kp, dtype=np.float64)
        if kp.ndim == 4:
            kp = kp[:, :, None]
        if kp.ndim != 5 or kp.shape[-1] != 3:
            raise ValueError(f"Detections: keypoints must have shape (V, T, P, J, 3), got {kp.shape}")
        self.keypoints = _mask_missing(kp)
        V, T, _, J, _ = kp.shape
        self.camera_names = tuple(str(n) for n in self.camera_names)
        if len(self.camera_names) != V:
            raise ValueError(f"Detections: {len(self.camera_names)} camera names for {V} cameras")
        fi = np.arange(T) if self.frame_indices is None else np.asarray(self.frame_indices)
        self.frame_indices = fi.astype(np.int64).reshape(-1)
        if len(self.frame_indices) != T:
            raise ValueError(f"Detections: {len(self.frame_indices)} frame indices for {T} frames")
        self.source = tuple(Path(p) for p in self.source)
        if self.joint_names is None:
            self.joint_names = (
                get_skeleton(self.skeleton).joint_names
                if self.skeleton
                else tuple(f"joint_{j:02d}" for j in range(J))
            )
        self.joint_names = tuple(self.joint_names)
        if len(self.joint_names) != J:
            raise ValueError(f"Detections: {len(self.joint_names)} joint names for {J} keypoints")

    @property
    def num_views(self) -> int:
        return self.keypoints.shape[0]

    @property
    def num_frames(self) -> int:
        return self.keypoints.shape[1]

    @property
    def num_persons(self) -> int:
        return self.keypoints.shape[2]

    @property
    def num_joints(self) -> int:
        return self.keypoints.shape[3]

    def select_cameras(self, index: Sequence[int]) -> Detections:
        """The detections of a subset (or reordering) of the cameras."""
        idx = list(index)
        return Detections(
            self.keypoints[idx],
            tuple(self.camera_names[i] for i in idx),
            self.frame_indices,
            tuple(self.source[i] for i in idx) if len(self.source) == self.num_views else self.source,
            self.skeleton,
            self.joint_names,
            list(self.warnings),
        )


def _mask_missing(kp: np.ndarray) -> np.ndarray:
    """NaN in x, y and c wherever the keypoint is not a detection: (0, 0, 0), c <= 0 or non-finite."""
    bad = ~np.isfinite(kp).all(-1) | ~(kp[..., 2] > 0)
    if bad.any():
        kp = kp.copy()
        kp[bad] = np.nan
    return kp


# ------------------------------------------------------------------------------------------------
# Warnings: log the first few of each kind, count the rest
# ------------------------------------------------------------------------------------------------


class _Report:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.counts: Counter[str] = Counter()

    def warn(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= MAX_LOGGED:
            logger.warning(message)
        self.messages.append(message)

    def summary(self, what: dict[str, str]) -> list[str]:
        """One line per kind seen; ``what`` maps kinds to a phrase for the count."""
        lines = []
        for kind, n in self.counts.items():
            line = f"{n} {what.get(kind, kind)}"
            if n > MAX_LOGGED:
                logger.warning("... %s in all (%d not shown above)", line, n - MAX_LOGGED)
            lines.append(line)
        return lines


# ------------------------------------------------------------------------------------------------
# Skeleton from the keypoint count
# ------------------------------------------------------------------------------------------------


def resolve_skeleton(num_keypoints: int, skeleton: str | Skeleton | None, source: Path | str) -> str | None:
    """Name of the keypoint set of detections with ``num_keypoints`` per person.

    A given ``skeleton`` must have that many joints. Without one: 17 keypoints are taken as COCO-17
    (the usual detector output; say ``--skeleton h36m17`` for Human3.6M-ordered detections), 25
    are refused because BODY_25 and BODY_25B have the same count and different orders, another
    count matching exactly one built-in set takes that set, and anything else gets generic joint
    names (returns ``None``).
    """
    if skeleton is not None:
        try:
            sk = get_skeleton(skeleton)
        except KeyError as e:
            raise ValueError(f"{source}: {e.args[0]}") from None
        if sk.num_joints != num_keypoints:
            raise ValueError(
                f"{source}: the detections have {num_keypoints} keypoints per person but skeleton "
                f"{sk.name!r} has {sk.num_joints}; pass the keypoint set the detector produced"
            )
        return sk.name
    if num_keypoints == 25:
        raise ValueError(
            f"{source}: 25 keypoints per person fit both OpenPose BODY_25 and BODY_25B, whose joint orders "
            "differ; pass the set explicitly: --skeleton body25 (OpenPose's default model) or "
            "--skeleton body25b"
            " (the BODY_25B model, used e.g. by Pose2Sim)"
        )
    if num_keypoints == 17:
        logger.info(
            "%s: 17 keypoints per person, taken as COCO-17 (pass --skeleton h36m17 / h36m17_lt / mpi3dhp17 "
            "if the detector used another order)",
            source,
        )
        return "coco17"
    fits = [n for n in available_skeletons() if get_skeleton(n).num_joints == num_keypoints]
    if len(fits) == 1:
        logger.info("%s: %d keypoints per person, taken as %s", source, num_keypoints, fits[0])
        return fits[0]
    logger.warning(
        "%s: %d keypoints per person match no single known skeleton (%s); using generic joint names",
        source,
        num_keypoints,
        ", ".join(f"{n} ({get_skeleton(n).num_joints})" for n in available_skeletons()),
    )
    return None


# ------------------------------------------------------------------------------------------------
# OpenPose JSON folders
# ------------------------------------------------------------------------------------------------

_TRAILING_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _natural_key(name: str):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name)]


def _frame_number(path: Path) -> int | None:
    m = _TRAILING_NUMBER.search(path.name[: -len(".json")])
    return int(m.group(1)) if m else None


def _camera_folders(folder: Path) -> list[Path]:
    """Sub-folders holding JSON files (or nothing at all: a camera without detections), naturally sorted."""
    dirs = []
    for d in sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: _natural_key(p.name),
    ):
        has_json = any(f.suffix.lower() == ".json" for f in d.iterdir())
        if has_json or not any(d.iterdir()):
            dirs.append(d)
        else:
            logger.debug("%s: no JSON files, not a camera folder; skipped", d)
    return dirs


def _read_openpose_file(path: Path) -> list[np.ndarray]:
    """Flat ``pose_keypoints_2d`` arrays of the people in one file; raises ValueError on bad content."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not readable as JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("people"), list):
        raise ValueError("expected an object with a 'people' list (OpenPose format)")
    people = []
    for i, person in enumerate(doc["people"]):
        kp = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if kp is None:
            raise ValueError(f"people[{i}] has no 'pose_keypoints_2d'")
        try:
            arr = np.asarray(kp, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"people[{i}].pose_keypoints_2d is not a list of numbers") from None
        if arr.ndim != 1 or arr.size % 3:
            raise ValueError(f"people[{i}].pose_keypoints_2d has {arr.size} numbers, expected 3 per keypoint")
        people.append(arr)
    return people


def read_openpose(folder, skeleton: str | Skeleton | None = None) -> Detections:
    """Read a folder of per-camera OpenPose JSON folders (see the module docstring).

    Args:
        folder: the folder holding one sub-folder per camera (``cam1_json``, ...).
        skeleton: keypoint set of the detections; see :func:`resolve_skeleton` for the default.

    Returns:
        :class:`Detections` with ``P`` = the most persons with at least one detected keypoint in
        any (camera, frame); people without any detected keypoint are dropped.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: no camera sub-folder, no JSON file at all, or an ambiguous/incompatible keypoint set.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"detections folder '{folder}' not found")
    if not folder.is_dir():
        raise ValueError(f"'{folder}': expected a folder of per-camera OpenPose JSON folders or an .npz file")
    cams = _camera_folders(folder)
    if not cams:
        loose = sorted(folder.glob("*.json"))
        hint = (
            f" It holds {len(loose)} JSON files directly: put each camera's files in its own sub-folder."
            if loose
            else ""
        )
        raise ValueError(
            f"detections folder '{folder}': no camera sub-folder found; expected one sub-folder of OpenPose "
            f"JSON files per camera (e.g. {folder}/cam1_json/cam01.0000.json).{hint}"
        )
    report = _Report()
    # Pass 1: parse every file into flat per-person arrays.
    parsed: list[dict[int, list[np.ndarray] | None]] = []
    files_of: list[dict[int, Path]] = []
    for cam in cams:
        per_frame: dict[int, list[np.ndarray] | None] = {}
        files: dict[int, Path] = {}
        json_files = sorted(
            (f for f in cam.iterdir() if f.suffix.lower() == ".json"), key=lambda p: _natural_key(p.name)
        )
        if not json_files:
            report.warn("empty", f"{cam}: no JSON files; camera '{cam.name}' has no detections (all NaN)")
        for f in json_files:
            n = _frame_number(f)
            if n is None:
                report.warn("noframe", f"{f}: no frame number at the end of the file name; file skipped")
                continue
            if n in per_frame:
                report.warn("duplicate", f"{f}: frame {n} already read from {files[n].name}; file skipped")
                continue
            files[n] = f
            try:
                per_frame[n] = _read_openpose_file(f)
            except ValueError as e:
                per_frame[n] = None
                report.warn("corrupt", f"{f}: {e}; frame {n} of camera '{cam.name}' left empty (NaN)")
        parsed.append(per_frame)
        files_of.append(files)
    frames = sorted(set().union(*[p.keys() for p in parsed]))
    if not frames:
        raise ValueError(
            f"detections folder '{folder}': no readable OpenPose JSON file in {[c.name for c in cams]}"
        )
    # Keypoint count: from the skeleton, else the most common count.
    counts = Counter(a.size // 3 for p in parsed for people in p.values() if people for a in people)
    if skeleton is not None:
        try:
            J = get_skeleton(skeleton).num_joints
        except KeyError as e:
            raise ValueError(f"{folder}: {e.args[0]}") from None
    elif counts:
        J = counts.most_common(1)[0][0]
    else:
        raise ValueError(f"detections folder '{folder}': no person in any file; nothing to triangulate")
    if counts and J not in counts:
        raise ValueError(
            f"detections folder '{folder}': skeleton {get_skeleton(skeleton).name!r} has {J} keypoints "
            "but the "
            f"files hold {dict(counts)} (keypoints: persons)"
        )
    skel_name = resolve_skeleton(J, skeleton, folder)
    # Pass 2: keep people of the right size with at least one detected keypoint.
    frame_pos = {n: i for i, n in enumerate(frames)}
    kept: list[tuple[int, int, np.ndarray]] = []  # (camera, frame position, (P_f, J, 3))
    max_p = 1
    for v, per_frame in enumerate(parsed):
        for n, people in per_frame.items():
            if not people:
                continue
            sizes = {a.size // 3 for a in people}
            if sizes != {J}:
                report.warn(
                    "count",
                    f"{files_of[v][n]}: {sorted(sizes)} keypoints per person, expected {J}"
                    f"{f' ({skel_name})' if skel_name else ''}; frame {n} of camera '{cams[v].name}' "
                    "left empty (NaN)",
                )
                continue
            arr = np.stack(people).reshape(len(people), J, 3)
            arr = arr[(arr[..., 2] > 0).any(-1)]
            if len(arr):
                kept.append((v, frame_pos[n], arr))
                max_p = max(max_p, len(arr))
    kp = np.full((len(cams), len(frames), max_p, J, 3), np.nan)
    for v, t, arr in kept:
        kp[v, t, : len(arr)] = arr
    # Frames missing in some cameras (but present in others).
    for v, cam in enumerate(cams):
        missing = [n for n in frames if n not in parsed[v]]
        if parsed[v] and missing:
            shown = ", ".join(str(n) for n in missing[:10]) + (", ..." if len(missing) > 10 else "")
            report.warn(
                "missing",
                f"{cam}: no file for {len(missing)} of {len(frames)} frames (frames {shown}); "
                "those frames are NaN for this camera",
            )
        elif parsed[v] and not any(parsed[v].values()):
            report.warn("nobody", f"{cam}: no person detected in any of its {len(parsed[v])} files")
    summary = report.summary(
        {
            "corrupt": "unreadable or malformed JSON file(s)",
            "count": "file(s) with the wrong keypoint count",
            "missing": "camera(s) missing some frame files",
            "empty": "camera folder(s) without JSON files",
            "nobody": "camera(s) without any detected person",
            "noframe": "file(s) without a frame number",
            "duplicate": "file(s) repeating a frame number",
        }
    )
    if summary:
        logger.warning("%s: %s", folder, "; ".join(summary))
    logger.info(
        "%s: %d cameras (%s), %d frames (%d..%d), up to %d person(s) per frame, %d keypoints%s",
        folder,
        len(cams),
        ", ".join(c.name for c in cams),
        len(frames),
        frames[0],
        frames[-1],
        max_p,
        J,
        f" ({skel_name})" if skel_name else "",
    )
    return Detections(
        kp,
        tuple(c.name for c in cams),
        np.asarray(frames, dtype=np.int64),
        tuple(cams),
        skel_name,
        None,
        report.messages,
    )


# ------------------------------------------------------------------------------------------------
# NPZ
# ------------------------------------------------------------------------------------------------


def read_npz(path, skeleton: str | Skeleton | None = None) -> Detections:
    """Read an ``.npz`` of keypoints ``(V, T, J, 3)`` (or ``(V, T, P, J, 3)``, or ``(..., 2)`` without
    confidences, taken as 1); optional ``camera_names``, ``frame_indices``, ``skeleton``. NaN marks
    missing keypoints."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"detections file '{path}' not found")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # zip errors, bad headers, pickled object arrays
        raise ValueError(f"detections file '{path}': not a readable .npz ({e})") from None
    with npz:
        keys = list(npz.files)
        if "keypoints" in keys:
            key = "keypoints"
        else:
            arrays = [k for k in keys if npz[k].ndim >= 4]
            if len(arrays) != 1:
                raise ValueError(
                    f"detections file '{path}': expected an array 'keypoints' of shape (V, T, J, 3); "
                    f"found keys {keys}"
                )
            key = arrays[0]
        try:
            kp = np.asarray(npz[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"detections file '{path}': field '{key}' is not numeric") from None
        extra = {k: npz[k] for k in ("camera_names", "frame_indices", "skeleton") if k in keys}
    if kp.ndim not in (4, 5) or kp.shape[-1] not in (2, 3):
        raise ValueError(
            f"detections file '{path}': field '{key}' has shape {kp.shape}; expected (V, T, J, 3) "
            "(cameras, frames, keypoints, [x px, y px, confidence]) or (V, T, P, J, 3)"
        )
    if kp.shape[-1] == 2:
        kp = np.concatenate([kp, np.where(np.isfinite(kp).all(-1, keepdims=True), 1.0, np.nan)], -1)
    if kp.ndim == 4:
        kp = kp[:, :, None]
    V, T = kp.shape[:2]
    names = (
        [str(n) for n in np.asarray(extra["camera_names"]).reshape(-1)] if "camera_names" in extra else None
    )
    if names is not None and len(names) != V:
        raise ValueError(
            f"detections file '{path}': field 'camera_names' has {len(names)} names but '{key}' has V = {V} "
            f"cameras (shape {kp.shape}; expected (V, T, J, 3))"
        )
    if names is None:
        names = [f"cam{v + 1}" for v in range(V)]
    frames = np.asarray(extra["frame_indices"]).reshape(-1) if "frame_indices" in extra else np.arange(T)
    if len(frames) != T:
        raise ValueError(
            f"detections file '{path}': field 'frame_indices' has {len(frames)} entries for T = {T}"
        )
    if skeleton is None and "skeleton" in extra and str(extra["skeleton"]):
        skeleton = str(extra["skeleton"])
    skel_name = resolve_skeleton(kp.shape[3], skeleton, path)
    report = _Report()
    nonfinite = ~np.isfinite(kp).all(-1)
    if nonfinite.any():
        logger.info("%s: %.1f%% of the keypoints are NaN (missing)", path, 100.0 * nonfinite.mean())
    for v in np.flatnonzero(nonfinite.all(axis=(1, 2, 3))):
        report.warn("nobody", f"{path}: camera '{names[v]}' has no detection at all (all NaN)")
    return Detections(kp, tuple(names), frames, (path,), skel_name, None, report.messages)


def load_detections(path, skeleton: str | Skeleton | None = None) -> Detections:
    """Read detections from a folder of per-camera OpenPose JSON folders or an ``.npz`` file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"detections '{path}' not found (expected a folder of camera folders or an .npz)"
        )
    if path.is_dir():
        return read_openpose(path, skeleton)
    if path.suffix.lower() == ".npz":
        return read_npz(path, skeleton)
    if path.suffix.lower() == ".json":
        raise ValueError(
            f"detections '{path}' is a single JSON file; pass the folder holding one sub-folder of OpenPose "
            f"JSON files per camera (e.g. {path.parent.parent})"
        )
    raise ValueError(
        f"detections '{path}': unknown format; expected a folder of OpenPose JSON folders or an .npz"
    )


# ------------------------------------------------------------------------------------------------
# Detection cameras <-> calibration cameras
# ------------------------------------------------------------------------------------------------


def camera_number(name: str) -> str | None:
    """The camera number in a name, for matching: digits only, leading zeros stripped
    (``cam1_json`` and ``cam_01`` both give ``"1"``); ``None`` without digits."""
    digits = re.sub(r"\D", "", name)
    return (digits.lstrip("0") or "0") if digits else None


def _plain(name: str) -> str:
    return re.sub(r"[_\-.]?json$", "", name.lower())


def match_cameras(detection_names: Sequence[str], rig_names: Sequence[str]) -> tuple[list[int], str]:
    """Index of the calibration camera of each detection camera, and how they were matched.

    Rules, in order: identical names (case-insensitive, a ``_json`` suffix ignored); the same
    camera number (:func:`camera_number`, e.g. ``cam1_json`` <-> ``cam_01``), each number unique on
    both sides; else, when both sides have the same count, sorted (natural) order. Calibration
    cameras without detections are left out. Anything else raises ``ValueError`` listing both sides.
    """
    det, rig = list(detection_names), list(rig_names)
    rig_plain = [_plain(n) for n in rig]
    if all(_plain(n) in rig_plain for n in det) and len({_plain(n) for n in det}) == len(det):
        return [rig_plain.index(_plain(n)) for n in det], "by name"
    dnum = [camera_number(n) for n in det]
    rnum = [camera_number(n) for n in rig]
    if None not in dnum and len(set(dnum)) == len(dnum) and all(rnum.count(k) == 1 for k in dnum):
        return [rnum.index(k) for k in dnum], "by camera number"
    if len(det) == len(rig):
        det_order = sorted(range(len(det)), key=lambda i: _natural_key(det[i]))
        rig_order = sorted(range(len(rig)), key=lambda i: _natural_key(rig[i]))
        index = [0] * len(det)
        for d, r in zip(det_order, rig_order):
            index[d] = r
        return index, "by sorted order (names do not match)"
    raise ValueError(
        f"cannot match the {len(det)} detection cameras {det} to the {len(rig)} calibration cameras {rig}: "
        "names/numbers differ and the counts differ; rename the camera folders after the calibration cameras "
        "(e.g. cam1_json for cam_01) or use a calibration with the same cameras"
    )


def camera_index(key: str, names: Sequence[str], aliases: Sequence[str] | None = None) -> int:
    """Index of the camera called ``key`` among ``names`` (or their ``aliases``, e.g. the calibration
    names of detection folders): same name (case-insensitive, ``_json`` ignored), else the same camera
    number if exactly one camera has it. ``KeyError`` lists the known names otherwise."""
    for cands in (names, aliases or ()):
        plain = [_plain(n) for n in cands]
        if _plain(key) in plain:
            return plain.index(_plain(key))
    num = camera_number(key)
    if num is not None:
        hits = {i for i, n in enumerate(names) if camera_number(n) == num}
        hits |= {i for i, n in enumerate(aliases or ()) if camera_number(n) == num}
        if len(hits) == 1:
            return hits.pop()
    known = list(names) + [a for a in (aliases or ()) if a not in names]
    raise KeyError(f"unknown camera {key!r}; cameras are {known}")


def parse_sync_offsets(text: str | None) -> dict[str, int]:
    """``"cam1=3,cam2=-1"`` -> ``{"cam1": 3, "cam2": -1}`` (integer frame offsets per camera).

    Raises ValueError naming the bad item."""
    out: dict[str, int] = {}
    if not text:
        return out
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = int(value)
        except ValueError:
            raise ValueError(
                f"--sync-offsets: bad item {item!r}; expected CAMERA=FRAMES (an integer), e.g. cam2=3,cam4=-1"
            ) from None
    return out


def parse_frame_range(text: str | None) -> tuple[int | None, int | None]:
    """``"a:b"`` -> ``(a, b)`` (frame numbers, ``b`` excluded; either may be empty);
    ``"a"`` -> ``(a, a + 1)``."""
    if text is None or str(text).strip() in ("", ":"):
        return None, None
    a, sep, b = str(text).partition(":")
    try:
        start = int(a) if a.strip() else None
        stop = int(b) if b.strip() else None
    except ValueError:
        raise ValueError(
            f"--frames: bad range {text!r}; expected START:STOP frame numbers, e.g. 0:100"
        ) from None
    if not sep:
        stop = start + 1  # a single frame
    if start is not None and stop is not None and stop <= start:
        raise ValueError(f"--frames: empty range {text!r} (STOP must be larger than START)")
    return start, stop


def shift_cameras(det: Detections, offsets: dict[int, int]) -> Detections:
    """Apply per-camera frame offsets: frame ``f`` of the result holds camera ``v``'s frame
    ``f + offsets[v]`` (a camera that started recording ``k`` frames early has offset ``k``).

    The result keeps the frames where every camera lies inside its recorded range (the overlap);
    frame numbers are on the timeline of the cameras with offset 0. Missing frames stay NaN.

    Args:
        det: detections; ``offsets`` maps camera indices to integer frame offsets (others: 0).

    Raises:
        ValueError: the offsets leave no frame common to all cameras.
    """
    V = det.num_views
    off = np.zeros(V, np.int64)
    for v, k in offsets.items():
        off[int(v)] = int(k)
    if not off.any():
        return det
    fi = det.frame_indices
    lo, hi = int(fi.min()), int(fi.max())
    start, stop = lo - int(off.min()), hi - int(off.max()) + 1  # capture frames every camera covers
    if stop <= start:
        raise ValueError(
            f"sync offsets {dict(zip(det.camera_names, off.tolist()))} leave no frame seen by every camera "
            f"(frames {lo}..{hi})"
        )
    frames = np.arange(start, stop)
    pos = np.full(hi - lo + 1, -1, np.int64)
    pos[fi - lo] = np.arange(len(fi))
    src = pos[frames[None, :] + off[:, None] - lo]  # (V, T') position in det, -1: no file
    kp = det.keypoints[np.arange(V)[:, None], np.clip(src, 0, None)]
    kp = np.where((src >= 0)[:, :, None, None, None], kp, np.nan)
    warnings = list(det.warnings)
    dropped = len(fi) - len(frames)
    if dropped > 0:
        msg = (
            f"sync offsets {', '.join(f'{n}={k:+d}' for n, k in zip(det.camera_names, off) if k)}: "
            f"{len(frames)} frames ({start}..{stop - 1}) are seen by every camera; {dropped} dropped"
        )
        logger.info(msg)
        warnings.append(msg)
    return Detections(kp, det.camera_names, frames, det.source, det.skeleton, det.joint_names, warnings)


def select_frames(det: Detections, start: int | None = None, stop: int | None = None) -> Detections:
    """Frames whose number lies in ``[start, stop)`` (``None``: unbounded); ValueError if none does."""
    fi = det.frame_indices
    keep = np.ones(len(fi), bool)
    if start is not None:
        keep &= fi >= start
    if stop is not None:
        keep &= fi < stop
    if not keep.any():
        raise ValueError(
            f"--frames {'' if start is None else start}:{'' if stop is None else stop} selects no frame; "
            f"the detections hold frames {fi.min()}..{fi.max()}"
            if len(fi)
            else "the detections hold no frame"
        )
    if keep.all():
        return det
    return Detections(
        det.keypoints[:, keep],
        det.camera_names,
        fi[keep],
        det.source,
        det.skeleton,
        det.joint_names,
        list(det.warnings),
    )
