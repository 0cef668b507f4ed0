"""Biovision BVH motions, read into :class:`Motion` by forward kinematics over all frames at once.

Conventions:

* Channels per joint: any subset of ``Xposition Yposition Zposition Xrotation Yrotation Zrotation``
  (usually 6 on the root and 3 rotations elsewhere), each at most once, in any order. Rotations are
  degrees and compose in the order written: ``Zrotation Yrotation Xrotation`` gives the local
  rotation ``R = Rz @ Ry @ Rx`` (column vectors), i.e. intrinsic rotations in channel order.
* Forward kinematics: ``M_j = M_parent @ R_j`` and ``p_j = p_parent + M_parent @ (offset_j + t_j)``,
  where ``t_j`` holds the joint's position channels (zero when it has none). Position channels are
  thus displacements added to the OFFSET (Blender's reading); for a root with a zero OFFSET this
  is the same as taking them as absolute positions.
* ``End Site`` blocks become joints named ``<parent>_end`` (their OFFSET gives e.g. the head top or
  a finger tip) unless ``include_end_sites=False``.
* Units: BVH does not state them. ``scale_to_mm`` gives millimetres per file unit (10 for
  centimetres, 1000 for metres, 25.4 for inches), or ``"infer"`` guesses between mm, cm and m from
  the skeleton's size (see :func:`infer_scale_to_mm`). The Character Creator retargets of CMU
  takes in our shared data (``bvh_iclone_ccrig/``) are centimetres, Y up, 60 fps, first frame a
  T-pose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .types import Motion, axis_rotation

__all__ = ["read_bvh", "infer_scale_to_mm", "BVH_UNITS_MM"]

BVH_UNITS_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4}
"""Millimetres per unit for the unit names ``read_bvh(scale_to_mm=...)`` also accepts."""

_CHANNELS = ("xposition", "yposition", "zposition", "xrotation", "yrotation", "zrotation")


class _Tokens:
    """Whitespace tokens of the HIERARCHY part, with line numbers."""

    def __init__(self, path: Path, lines: list[str], stop: int):
        self.path = path
        self.toks: list[tuple[str, int]] = [
            (t, n + 1) for n in range(stop) for t in lines[n].replace("{", " { ").replace("}", " } ").split()
        ]
        self.i = 0
        self.last_line = stop

    def error(self, lineno: int | None, msg: str) -> ValueError:
        return ValueError(f"{self.path}:{lineno if lineno is not None else self.last_line}: {msg}")

    def next(self, what: str) -> tuple[str, int]:
        if self.i >= len(self.toks):
            raise self.error(self.last_line, f"hierarchy ends early, expected {what}")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, word: str) -> int:
        tok, n = self.next(repr(word))
        if tok.upper() != word.upper():
            raise self.error(n, f"expected {word!r}, got {tok!r}")
        return n

    def number(self, what: str) -> float:
        tok, n = self.next(what)
        try:
            return float(tok)
        except ValueError:
            raise self.error(n, f"{what}: expected a number, got {tok!r}") from None


def _parse_joint(tk: _Tokens, name: str, parent: int, joints: list[dict], end_sites: bool) -> None:
    """Parse ``{ OFFSET .. [CHANNELS ..] (JOINT ..|End Site ..)* }`` after a joint's name."""
    tk.expect("{")
    n = tk.expect("OFFSET")
    offset = np.array([tk.number("OFFSET x"), tk.number("OFFSET y"), tk.number("OFFSET z")])
    me = len(joints)
    joint = {"name": name, "parent": parent, "offset": offset, "channels": (), "line": n}
    joints.append(joint)
    while True:
        tok, n = tk.next("'}', CHANNELS, JOINT or End Site")
        key = tok.upper()
        if key == "}":
            return
        if key == "CHANNELS":
            count_tok, _ = tk.next("channel count")
            try:
                count = int(count_tok)
            except ValueError:
                raise tk.error(n, f"CHANNELS: expected a count, got {count_tok!r}") from None
            if not 0 <= count <= 6:
                raise tk.error(n, f"joint {name!r}: CHANNELS {count}; expected 0 to 6 channels")
            names = []
            for _ in range(count):
                c, cn = tk.next("a channel name")
                if c.lower() not in _CHANNELS:
                    raise tk.error(
                        n,
                        f"joint {name!r}: CHANNELS {count} but {len(names)} channel name(s) follow "
                        f"(then {c!r} at line {cn}); expected that many of X/Y/Z position/rotation",
                    )
                names.append(c.lower())
            if len(set(names)) != len(names):
                raise tk.error(n, f"joint {name!r}: repeated channel in {names}")
            if joint["channels"]:
                raise tk.error(n, f"joint {name!r}: two CHANNELS lines")
            joint["channels"] = tuple(names)
        elif key == "JOINT":
            child, _ = tk.next("joint name")
            _parse_joint(tk, child, me, joints, end_sites)
        elif key == "END":
            tk.expect("Site")
            tk.expect("{")
            en = tk.expect("OFFSET")
            off = np.array([tk.number("OFFSET x"), tk.number("OFFSET y"), tk.number("OFFSET z")])
            tk.expect("}")
            if end_sites:
                joints.append(
                    {"name": f"{name}_end", "parent": me, "offset": off, "channels": (), "line": en}
                )
        elif tok.lower() in _CHANNELS:
            raise tk.error(n, f"joint {name!r}: channel name {tok!r} beyond the CHANNELS count")
        else:
            raise tk.error(n, f"in joint {name!r}: unexpected {tok!r}")


def infer_scale_to_mm(offsets: np.ndarray, parents: list[int] | tuple[int, ...]) -> float:
    """Guess millimetres per BVH unit from the skeleton's size.

    The measure is the longest root-to-leaf chain (sum of OFFSET lengths), about 0.8 to 2.5 m for
    a human figure (hip to fingertip or head top, plus a root offset). A chain of 30..300 units is
    taken as centimetres, 300..3000 as millimetres and 0.3..3 as metres. Inches (and the CMU ASF
    unit) overlap centimetres and cannot be told apart: give ``scale_to_mm`` for them.

    Args:
        offsets: ``(J, 3)`` joint offsets in file units.
        parents: ``J`` parent indices (``-1`` for roots, parents first).

    Raises:
        ValueError: if the size fits none of the ranges (e.g. not a human-sized figure).
    """
    chain = np.zeros(len(parents))
    norms = np.linalg.norm(offsets, axis=-1)
    for j, p in enumerate(parents):
        chain[j] = norms[j] + (chain[p] if p >= 0 else 0.0)
    size = float(chain.max()) if len(chain) else 0.0
    for lo, scale in ((0.3, 1000.0), (30.0, 10.0), (300.0, 1.0)):
        if lo <= size < 10 * lo:
            return scale
    raise ValueError(
        f"cannot infer BVH units: longest chain is {size:g} units, not human-sized in mm, cm or m; "
        "pass scale_to_mm"
    )


def read_bvh(
    path: str | Path,
    scale_to_mm: float | str = "infer",
    drop_first_frame: bool = False,
    include_end_sites: bool = True,
    up_axis: str = "y",
) -> Motion:
    """Read a BVH file and compute world joint positions for every frame.

    Args:
        path: the ``.bvh`` file.
        scale_to_mm: millimetres per file unit (e.g. ``10.0`` for centimetres), a unit name from
            :data:`BVH_UNITS_MM` (``"mm"``, ``"cm"``, ``"m"``, ``"in"``), or ``"infer"``
            (:func:`infer_scale_to_mm`; picks centimetres for the Character Creator files here).
        drop_first_frame: drop frame 0, e.g. the T-pose prepended to the CMU retargets.
        include_end_sites: add each ``End Site`` as a joint named ``<parent>_end``.
        up_axis: the file's up axis (BVH does not say; ``"y"`` is the usual one).

    Returns:
        A :class:`Motion`: joints in file order (depth-first, parents first), positions
        ``(T, J, 3)`` mm in the file's axes, ``fps = 1 / Frame Time`` (snapped to the nearest integer
        when within 1e-4 relative, since files round the frame time: 0.016667 -> 60).

    Raises:
        ValueError: naming the file and line, for a malformed hierarchy (bad CHANNELS count or
            names, missing braces, non-numeric OFFSET), a bad MOTION header, a frame line with the
            wrong number of values, or fewer frame lines than ``Frames:`` says.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise ValueError(f"{path}: cannot read file ({e})") from e
    motion_line = next((i for i, s in enumerate(lines) if s.strip().upper() == "MOTION"), None)
    if motion_line is None:
        raise ValueError(f"{path}: no MOTION section; is this a BVH file?")

    tk = _Tokens(path, lines, motion_line)
    tok, n = tk.next("HIERARCHY")
    if tok.upper() != "HIERARCHY":
        raise tk.error(n, f"expected 'HIERARCHY', got {tok!r}")
    joints: list[dict] = []
    while tk.i < len(tk.toks):
        n = tk.expect("ROOT")
        name, _ = tk.next("root name")
        _parse_joint(tk, name, -1, joints, include_end_sites)
    if not joints:
        raise ValueError(f"{path}:{motion_line}: no ROOT joint in HIERARCHY")

    # MOTION header: "Frames: N" and "Frame Time: dt"
    header = {}
    i = motion_line + 1
    for key in ("frames", "frame time"):
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines):
            raise ValueError(f"{path}:{i}: file ends before '{key.title()}:'")
        head, _, value = lines[i].partition(":")
        if head.strip().lower() != key:
            raise ValueError(f"{path}:{i + 1}: expected '{key.title()}: <value>', got {lines[i].strip()!r}")
        try:
            header[key] = int(value) if key == "frames" else float(value)
        except ValueError:
            raise ValueError(f"{path}:{i + 1}: bad {key!r} value {value.strip()!r}") from None
        i += 1
    n_frames, frame_time = header["frames"], header["frame time"]
    if n_frames < 1 or not frame_time > 0:
        raise ValueError(f"{path}:{i}: need Frames >= 1 and Frame Time > 0, got {n_frames}, {frame_time}")

    width = sum(len(j["channels"]) for j in joints)
    data_lines = [(k + 1, s) for k, s in enumerate(lines[i:], start=i) if s.strip()]
    if len(data_lines) < n_frames:
        raise ValueError(
            f"{path}:{len(lines)}: file ends after {len(data_lines)} of {n_frames} frames (truncated?)"
        )
    if len(data_lines) > n_frames:
        raise ValueError(f"{path}:{data_lines[n_frames][0]}: more frame lines than 'Frames: {n_frames}'")
    for ln, s in data_lines:
        if len(s.split()) != width:
            raise ValueError(
                f"{path}:{ln}: frame has {len(s.split())} values; the hierarchy declares {width} channels"
            )
    try:
        values = np.array(" ".join(s for _, s in data_lines).split(), dtype=np.float64)
    except ValueError:
        for ln, s in data_lines:
            try:
                np.array(s.split(), dtype=np.float64)
            except ValueError:
                raise ValueError(f"{path}:{ln}: non-numeric value in frame line") from None
        raise
    values = values.reshape(n_frames, width)
    if drop_first_frame:
        if n_frames < 2:
            raise ValueError(f"{path}: drop_first_frame with only {n_frames} frame")
        values = values[1:]

    offsets = np.stack([j["offset"] for j in joints])
    parents = [j["parent"] for j in joints]
    if isinstance(scale_to_mm, str):
        if scale_to_mm.lower() == "infer":
            try:
                scale = infer_scale_to_mm(offsets, parents)
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from None
        elif scale_to_mm.lower() in BVH_UNITS_MM:
            scale = BVH_UNITS_MM[scale_to_mm.lower()]
        else:
            raise ValueError(
                f"{path}: scale_to_mm={scale_to_mm!r}; expected a number, 'infer' or {BVH_UNITS_MM}"
            )
    else:
        scale = float(scale_to_mm)
        if not scale > 0:
            raise ValueError(f"{path}: scale_to_mm must be positive, got {scale}")

    T = values.shape[0]
    pos = np.empty((T, len(joints), 3))
    rot = np.empty((len(joints), T, 3, 3))
    col = 0
    for j, jt in enumerate(joints):
        chans = jt["channels"]
        cols = {c: col + k for k, c in enumerate(chans)}
        col += len(chans)
        offset = np.broadcast_to(jt["offset"], (T, 3)).copy()
        for a, c in enumerate(("xposition", "yposition", "zposition")):
            if c in cols:
                offset[:, a] += values[:, cols[c]]
        R = None
        for c in chans:
            if c.endswith("rotation"):
                r = axis_rotation(c[0], np.deg2rad(values[:, cols[c]]))
                R = r if R is None else R @ r
        if R is None:
            R = np.broadcast_to(np.eye(3), (T, 3, 3))
        p = jt["parent"]
        if p < 0:
            pos[:, j] = offset * scale
            rot[j] = R
        else:
            pos[:, j] = pos[:, p] + scale * np.einsum("tab,tb->ta", rot[p], offset)
            rot[j] = rot[p] @ R

    fps = 1.0 / frame_time
    if abs(fps - round(fps)) < 1e-4 * fps:
        fps = float(round(fps))
    return Motion(
        joint_names=tuple(j["name"] for j in joints),
        parents=tuple(parents),
        positions_mm=pos,
        fps=fps,
        up_axis=up_axis,
        source=str(path),
    )
