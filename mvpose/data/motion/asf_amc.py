"""Acclaim ASF skeletons and AMC motions (the CMU Graphics Lab motion-capture format).

Conventions (those of the Acclaim format and the CMU database):

* ASF ``:units length L`` means lengths are inches times ``L``: one ASF unit is ``25.4 / L`` mm
  (CMU files say ``length 0.45``: 1 unit = 56.44 mm). Root translations in the AMC use the same
  unit. Angles are degrees unless the ASF says ``angle rad`` / the AMC says ``:RADIANS``.
* Each bone has a ``direction`` (unit vector in the world frame at rest), a ``length``, an
  ``axis a1 a2 a3 ORDER`` giving its local frame ``C`` at rest and a ``dof`` list. Euler angles
  are applied in the order written: ``axis ax ay az XYZ`` gives ``C = Rz(az) Ry(ay) Rx(ax)``, and
  AMC values for ``dof rx ry rz`` give ``L = Rz(rz) Ry(ry) Rx(rx)``.
* Forward kinematics: ``M_bone = M_parent C L C^T`` and
  ``p_bone_end = p_parent_end + length * M_bone @ direction``; the root has
  ``M_root = C_root L_root C_root^T`` from its AMC angles (``order``) and its ``axis`` /
  ``orientation`` (zero in CMU files), and ``p_root = (tx, ty, tz)`` from the AMC, taken as absolute
  (the ASF root ``position`` is read but not added; it is zero in CMU files).

Joints of the resulting :class:`Motion` are the root plus the END of every bone, named by the bone
(so ``"lfemur"`` is the left knee, ``"lhipjoint"`` the left hip centre), as CMU joints are bone ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .types import Motion, axis_rotation

__all__ = ["AsfBone", "AsfSkeleton", "read_asf", "read_amc", "find_asf_for", "CMU_FPS"]

CMU_FPS = 120.0
"""Frame rate of CMU AMC files (AMC files do not store one)."""

_ROT_DOFS = ("rx", "ry", "rz")
_ROOT_CHANNELS = ("tx", "ty", "tz", "rx", "ry", "rz")


@dataclass(frozen=True, eq=False)
class AsfBone:
    """One ASF bone.

    Attributes:
        name: bone name.
        parent: parent bone name, ``"root"`` for bones attached to the root.
        direction: ``(3,)`` unit vector, world frame at rest (normalised on read).
        length: length in ASF units (see :attr:`AsfSkeleton.mm_per_unit`).
        axis: ``(3,)`` Euler angles of the bone's local frame at rest, in radians.
        axis_order: the order the ``axis`` angles apply in, e.g. ``"XYZ"`` (``C = Rz Ry Rx``).
        dof: the bone's AMC channels in file order, each ``"rx"``, ``"ry"`` or ``"rz"``.
    """

    name: str
    parent: str
    direction: np.ndarray = field(repr=False)
    length: float
    axis: np.ndarray = field(repr=False)
    axis_order: str
    dof: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class AsfSkeleton:
    """A parsed ASF file.

    Attributes:
        name: the ``:name`` field.
        bones: bones in topological order (every parent before its children).
        root_order: AMC channel order of the root, e.g. ``("tx", "ty", "tz", "rx", "ry", "rz")``.
        root_axis: Euler order of the root rotation, e.g. ``"XYZ"``.
        root_position: ``(3,)`` ASF root position, ASF units (read, not used by the kinematics).
        root_orientation: ``(3,)`` ASF root orientation, radians, in ``root_axis`` order.
        mm_per_unit: millimetres per ASF length unit (``25.4 / length``).
        angle_unit: ``"deg"`` or ``"rad"`` as declared in ``:units``.
        source: the file path.
    """

    name: str
    bones: tuple[AsfBone, ...]
    root_order: tuple[str, ...]
    root_axis: str
    root_position: np.ndarray = field(repr=False)
    root_orientation: np.ndarray = field(repr=False)
    mm_per_unit: float
    angle_unit: str
    source: str

    @property
    def bone_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bones)

    @property
    def joint_names(self) -> tuple[str, ...]:
        """``"root"`` then the bone names: the joints of a :class:`Motion` read with this skeleton."""
        return ("root", *self.bone_names)

    @property
    def parents(self) -> tuple[int, ...]:
        """Parent index of every joint in :attr:`joint_names` (``-1`` for the root)."""
        index = {n: i for i, n in enumerate(self.joint_names)}
        return (-1, *(index[b.parent] for b in self.bones))

    def bone(self, name: str) -> AsfBone:
        for b in self.bones:
            if b.name == name:
                return b
        raise KeyError(f"{self.source}: no bone named {name!r}")

    def lengths_mm(self) -> dict[str, float]:
        """Bone lengths in millimetres, by bone name."""
        return {b.name: b.length * self.mm_per_unit for b in self.bones}


def _euler_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """``(*, 3)`` angles (radians, matched to ``order``'s letters) -> ``(*, 3, 3)``.

    The rotation about ``order[0]`` applies first: ``"XYZ"`` gives ``Rz @ Ry @ Rx``.
    """
    R = axis_rotation(order[0], angles[..., 0])
    for k in range(1, 3):
        R = axis_rotation(order[k], angles[..., k]) @ R
    return R


class _Lines:
    """Non-empty, comment-free lines of a text file, with 1-based line numbers for errors."""

    def __init__(self, path: Path):
        self.path = path
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ValueError(f"{path}: cannot read file ({e})") from e
        self.items: list[tuple[int, str]] = []
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if line:
                self.items.append((n, line))

    def error(self, lineno: int | None, msg: str) -> ValueError:
        where = f"{self.path}:{lineno}" if lineno is not None else f"{self.path}"
        return ValueError(f"{where}: {msg}")


def _floats(lines: _Lines, lineno: int, tokens: list[str], n: int, what: str) -> np.ndarray:
    if len(tokens) != n:
        raise lines.error(lineno, f"{what}: expected {n} numbers, got {len(tokens)} ({' '.join(tokens)!r})")
    try:
        return np.array([float(t) for t in tokens])
    except ValueError:
        raise lines.error(lineno, f"{what}: expected numbers, got {' '.join(tokens)!r}") from None


def read_asf(path: str | Path) -> AsfSkeleton:
    """Read an Acclaim ASF skeleton.

    Args:
        path: the ``.asf`` file.

    Returns:
        An :class:`AsfSkeleton` with bones in topological order (parents first, depth-first in the
        order of the ``:hierarchy`` section).

    Raises:
        ValueError: naming the file and line, for a missing section, a malformed field, a dof other
            than ``rx``/``ry``/``rz``, or a hierarchy that names an unknown bone or misses one.
    """
    path = Path(path)
    lines = _Lines(path)
    name, units = "", {"mass": 1.0, "length": 1.0, "angle": "deg"}
    root = {"order": ["tx", "ty", "tz", "rx", "ry", "rz"], "axis": "XYZ", "position": np.zeros(3)}
    root_orient = np.zeros(3)
    raw_bones: list[dict] = []
    children: dict[str, list[str]] = {}
    child_line: dict[str, int] = {}
    parent_line: dict[str, int] = {}
    section, bone = None, None
    seen_sections = set()
    for n, line in lines.items:
        tokens = line.split()
        key = tokens[0].lower()
        if line.startswith(":"):
            section = key[1:]
            seen_sections.add(section)
            if section == "name":
                name = " ".join(tokens[1:])
            elif section == "units" and len(tokens) > 1:  # one-line form ":units length 0.45"
                units[tokens[1].lower()] = tokens[2] if len(tokens) > 2 else ""
            continue
        if section == "units":
            if len(tokens) != 2:
                raise lines.error(n, f"units: expected 'NAME VALUE', got {line!r}")
            units[key] = tokens[1]
        elif section == "root":
            if key == "order":
                order = [t.lower() for t in tokens[1:]]
                if sorted(order) != sorted(_ROOT_CHANNELS):
                    raise lines.error(n, f"root order must list TX TY TZ RX RY RZ once each, got {line!r}")
                root["order"] = order
            elif key == "axis":
                if len(tokens) != 2 or sorted(tokens[1].upper()) != ["X", "Y", "Z"]:
                    raise lines.error(n, f"root axis must be a permutation of XYZ, got {line!r}")
                root["axis"] = tokens[1].upper()
            elif key == "position":
                root["position"] = _floats(lines, n, tokens[1:], 3, "root position")
            elif key == "orientation":
                root_orient = _floats(lines, n, tokens[1:], 3, "root orientation")
        elif section == "bonedata":
            if key == "begin":
                bone = {"line": n, "dof": (), "axis": np.zeros(3), "axis_order": "XYZ"}
            elif key == "end":
                if bone is None:
                    raise lines.error(n, "'end' without 'begin' in :bonedata")
                for req in ("name", "direction", "length"):
                    if req not in bone:
                        raise lines.error(bone["line"], f"bone has no {req!r}")
                raw_bones.append(bone)
                bone = None
            elif bone is None:
                raise lines.error(n, f"bone field outside begin/end: {line!r}")
            elif key == "name":
                bone["name"] = tokens[1]
            elif key == "direction":
                bone["direction"] = _floats(lines, n, tokens[1:], 3, "direction")
            elif key == "length":
                bone["length"] = float(_floats(lines, n, tokens[1:], 1, "length")[0])
            elif key == "axis":
                bone["axis"] = _floats(lines, n, tokens[1:4], 3, "axis")
                order = tokens[4].upper() if len(tokens) > 4 else "XYZ"
                if sorted(order) != ["X", "Y", "Z"]:
                    raise lines.error(n, f"axis order must be a permutation of XYZ, got {order!r}")
                bone["axis_order"] = order
            elif key == "dof":
                dof = tuple(t.lower() for t in tokens[1:])
                bad = [d for d in dof if d not in _ROT_DOFS]
                if bad or len(set(dof)) != len(dof):
                    raise lines.error(n, f"unsupported dof list {line!r}: only rx, ry, rz, each once")
                bone["dof"] = dof
            # id, limits, bodymass, cofmass: not needed for kinematics
        elif section == "hierarchy":
            if key in ("begin", "end"):
                continue
            for c in tokens[1:]:
                if c in child_line:
                    raise lines.error(n, f"bone {c!r} has two parents (first at line {child_line[c]})")
                child_line[c] = n
            parent_line.setdefault(tokens[0], n)
            children.setdefault(tokens[0], []).extend(tokens[1:])
    for req in ("bonedata", "hierarchy"):
        if req not in seen_sections:
            raise lines.error(None, f"no :{req} section; is this an ASF file?")
    if bone is not None:
        raise lines.error(bone["line"], "bone 'begin' without 'end' (file truncated?)")

    angle_unit = str(units["angle"]).lower()
    if angle_unit not in ("deg", "rad"):
        raise lines.error(None, f"units: angle must be 'deg' or 'rad', got {angle_unit!r}")
    to_rad = np.pi / 180.0 if angle_unit == "deg" else 1.0
    try:
        length_unit = float(units["length"])
    except ValueError:
        raise lines.error(None, f"units: length must be a number, got {units['length']!r}") from None
    if not length_unit > 0:
        raise lines.error(None, f"units: length must be positive, got {length_unit}")

    by_name: dict[str, dict] = {}
    for b in raw_bones:
        if b["name"] in by_name or b["name"] == "root":
            raise lines.error(b["line"], f"duplicate bone name {b['name']!r}")
        by_name[b["name"]] = b
    for parent, kids in children.items():
        if parent != "root" and parent not in by_name:
            raise lines.error(parent_line[parent], f"hierarchy names unknown bone {parent!r}")
        for c in kids:
            if c not in by_name:
                raise lines.error(child_line[c], f"hierarchy names unknown bone {c!r}")

    ordered: list[AsfBone] = []
    stack = [("root", c) for c in reversed(children.get("root", []))]
    while stack:
        parent, c = stack.pop()
        b = by_name[c]
        d = b["direction"]
        norm = np.linalg.norm(d)
        if b["length"] != 0 and not norm > 0:
            raise lines.error(b["line"], f"bone {c!r} has a zero direction")
        ordered.append(
            AsfBone(
                name=c,
                parent=parent,
                direction=d / norm if norm > 0 else d,
                length=b["length"],
                axis=b["axis"] * to_rad,
                axis_order=b["axis_order"],
                dof=b["dof"],
            )
        )
        stack.extend((c, k) for k in reversed(children.get(c, [])))
    missing = [n for n in by_name if n not in {b.name for b in ordered}]
    if missing:
        raise lines.error(by_name[missing[0]]["line"], f"bones not reachable from root: {missing}")

    return AsfSkeleton(
        name=name,
        bones=tuple(ordered),
        root_order=tuple(root["order"]),
        root_axis=root["axis"],
        root_position=np.asarray(root["position"], dtype=np.float64),
        root_orientation=root_orient * to_rad,
        mm_per_unit=25.4 / length_unit,
        angle_unit=angle_unit,
        source=str(path),
    )


def _parse_amc(lines: _Lines, skeleton: AsfSkeleton) -> tuple[np.ndarray, dict[str, np.ndarray], bool]:
    """AMC values: root ``(T, 6)`` in ``root_order``, bone ``(T, len(dof))`` by name, degrees flag."""
    ndof = {b.name: len(b.dof) for b in skeleton.bones}
    ndof["root"] = 6
    expected = [n for n, k in ndof.items() if k > 0]
    col = {}  # bone -> column offset into the per-frame value vector
    width = 0
    for n in expected:
        col[n] = width
        width += ndof[n]

    degrees = True
    frames: list[np.ndarray] = []
    frame_lines: list[int] = []
    current: np.ndarray | None = None
    seen: set[str] = set()
    first_number = 1

    def close_frame() -> None:
        if current is None:
            return
        if len(seen) != len(expected):
            missing = [n for n in expected if n not in seen]
            raise lines.error(
                frame_lines[-1],
                f"frame {len(frames) + 1} lacks {len(missing)} bone(s) {missing[:5]} (truncated frame?)",
            )
        frames.append(current)

    for n, line in lines.items:
        if line.startswith(":"):
            key = line.split()[0].upper()
            if key == ":RADIANS":
                degrees = False
            elif key == ":DEGREES":
                degrees = True
            continue
        tokens = line.split()
        if len(tokens) == 1 and tokens[0].isdigit():
            close_frame()
            number = int(tokens[0])
            if frame_lines and number != first_number + len(frames):
                raise lines.error(n, f"frame number {number}, expected {first_number + len(frames)}")
            if not frame_lines:
                first_number = number
            frame_lines.append(n)
            current = np.empty(width)
            seen = set()
            continue
        bone = tokens[0]
        if current is None:
            raise lines.error(n, f"data before the first frame number: {line!r}")
        if bone not in ndof:
            raise lines.error(n, f"unknown bone {bone!r} (not in {skeleton.source})")
        if bone in seen:
            raise lines.error(n, f"bone {bone!r} twice in one frame")
        k = ndof[bone]
        current[col[bone] : col[bone] + k] = _floats(lines, n, tokens[1:], k, f"bone {bone!r}")
        seen.add(bone)
    close_frame()
    if not frames:
        raise lines.error(None, "no frames")
    values = np.stack(frames)
    root = values[:, col["root"] : col["root"] + 6]
    bones = {n: values[:, col[n] : col[n] + ndof[n]] for n in expected if n != "root"}
    return root, bones, degrees


def read_amc(path: str | Path, skeleton: AsfSkeleton | str | Path, fps: float = CMU_FPS) -> Motion:
    """Read an AMC motion and run forward kinematics for all frames at once.

    Args:
        path: the ``.amc`` file (``:FULLY-SPECIFIED``; ``:DEGREES`` or ``:RADIANS``).
        skeleton: its :class:`AsfSkeleton`, or the path of the ``.asf`` file.
        fps: frame rate (AMC files do not store one; CMU captures are 120 fps).

    Returns:
        A :class:`Motion` with ``J = 1 + number of bones`` joints (``"root"``, then each bone's end
        named by the bone, in the skeleton's topological order), positions ``(T, J, 3)`` in mm in the
        file's world axes (Y up for CMU, floor at y = 0), ``up_axis="y"``.

    Raises:
        ValueError: naming the file and line, for an unknown bone, a frame missing bones (e.g. a
            truncated file), a line with the wrong number of values or non-numeric values.
    """
    if not isinstance(skeleton, AsfSkeleton):
        skeleton = read_asf(skeleton)
    path = Path(path)
    lines = _Lines(path)
    root_vals, bone_vals, degrees = _parse_amc(lines, skeleton)
    T = root_vals.shape[0]
    to_rad = np.pi / 180.0 if degrees else 1.0
    mm = skeleton.mm_per_unit

    order = skeleton.root_order
    trans = np.stack([root_vals[:, order.index(c)] for c in ("tx", "ty", "tz")], axis=-1) * mm
    rot_channels = [c for c in order if c.startswith("r")]  # rotations in the order they apply
    L = np.broadcast_to(np.eye(3), (T, 3, 3))
    for c in rot_channels:
        L = axis_rotation(c[1], root_vals[:, order.index(c)] * to_rad) @ L
    C = _euler_matrix(skeleton.root_orientation, skeleton.root_axis)
    M_root = C @ L @ C.T

    J = 1 + len(skeleton.bones)
    pos = np.empty((T, J, 3))
    pos[:, 0] = trans
    rot = {"root": M_root}
    index = {"root": 0}
    for j, b in enumerate(skeleton.bones, start=1):
        C = _euler_matrix(b.axis, b.axis_order)
        if b.dof:
            L = axis_rotation(b.dof[0][1], bone_vals[b.name][:, 0] * to_rad)
            for k in range(1, len(b.dof)):
                L = axis_rotation(b.dof[k][1], bone_vals[b.name][:, k] * to_rad) @ L
            M = rot[b.parent] @ (C @ L @ C.T)
        else:
            M = rot[b.parent]
        rot[b.name] = M
        index[b.name] = j
        pos[:, j] = pos[:, index[b.parent]] + (b.length * mm) * (M @ b.direction)
    return Motion(
        joint_names=skeleton.joint_names,
        parents=skeleton.parents,
        positions_mm=pos,
        fps=fps,
        up_axis="y",
        source=str(path),
    )


def find_asf_for(amc_path: str | Path) -> Path:
    """The ``.asf`` next to an ``.amc`` file, matched by subject number.

    ``07_05-walk.amc`` -> the ``.asf`` in the same folder whose name starts with subject ``07``
    (``07.asf``, ``07-walk.asf``; ``7.asf`` also matches). With several candidates, one sharing the
    AMC's suffix (``-walk``) or named exactly after the subject wins.

    Raises:
        FileNotFoundError: naming the AMC file and the folder searched, when none (or no unique one)
            is found.
    """
    amc_path = Path(amc_path)
    folder = amc_path.parent
    stem = amc_path.stem
    same = folder / (stem + ".asf")
    if same.is_file():
        return same
    m = re.match(r"([^_\-.\s]+)(?:_[^\-.\s]*)?(.*)$", stem)
    subject, suffix = (m.group(1), m.group(2)) if m else (stem, "")

    def same_subject(s: str) -> bool:
        return s == subject or (s.isdigit() and subject.isdigit() and int(s) == int(subject))

    cands = []
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.suffix.lower() != ".asf" or not p.is_file():
            continue
        m2 = re.match(r"([^_\-.\s]+)(.*)$", p.stem)
        if m2 and same_subject(m2.group(1)):
            cands.append((p, m2.group(2)))
    if len(cands) == 1:
        return cands[0][0]
    for p, rest in cands:
        if rest == "" or (suffix and rest == suffix):
            return p
    if not cands:
        raise FileNotFoundError(
            f"{amc_path}: no ASF skeleton for subject {subject!r} in {folder} "
            f"(looked for {subject}.asf or {subject}-*.asf / {subject}_*.asf); pass asf=PATH"
        )
    raise FileNotFoundError(
        f"{amc_path}: several ASF skeletons for subject {subject!r} in {folder}: "
        f"{[p.name for p, _ in cands]}; pass asf=PATH"
    )
