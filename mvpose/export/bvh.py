"""BVH export: joint rotations solved from 3D joint positions on an :mod:`mvpose.skeleton` tree.

The hierarchy is the skeleton's tree (root first, children in joint order), restricted to the joints
present in the data (a joint may be absent only with all its descendants, e.g. eyes and ears).

* **Rest pose.** Each joint's OFFSET is its bone's median length over the take times a T-pose
  direction (BVH axes: Y up, facing +Z, the body's left along +X): legs straight down, arms out
  to the sides, spine and head up, feet forward (:func:`tpose_directions`; a joint name no rule
  knows takes its bone's median direction in the data).
* **Rotations.** Parents first, every joint gets the local rotation that carries its rest bone(s)
  onto the observed ones, expressed in the parent's rotated frame: with one child, the minimal
  rotation (swing) of the rest direction onto the observed direction (twist left as the parent's);
  with two children or more, the rotation that best aligns all child directions at once (weighted
  Kabsch, weights = bone lengths), which also fixes the twist. Leaves get no rotation.
* **Branches.** One rotation cannot follow children that move relative to each other (shoulders
  against the neck, hips against the spine). ``branches="split"`` (default) hangs each child of a
  branching joint from its own zero-length joint ``<parent>_to_<child>`` whose swing takes up that
  remainder, so every bone direction is exact; ``branches="kabsch"`` keeps the skeleton's joints
  only (a cleaner rig, cm-level errors at non-rigid branches).
* **Channels.** The root has ``Xposition Yposition Zposition`` (absolute, OFFSET 0) and every joint
  three rotation channels in ``euler_order`` (default ``Zrotation Xrotation Yrotation``: local
  rotation ``Rz @ Rx @ Ry``), in degrees, unwrapped over time (no 360-degree jumps).
* **Axes.** The file is Y-up: a Z-up world (``up_axis="z"``) is written as ``(x, z, -y)``, the
  inverse of :meth:`mvpose.data.motion.Motion.to_z_up`, so ``read_bvh(...).to_z_up()`` gives world
  coordinates back.
* **Units.** ``cm`` by default (``mm`` and ``m`` too); :func:`mvpose.data.motion.read_bvh` infers
  them from the skeleton's size.
* **What is exact.** With ``branches="split"`` every bone direction is reproduced; positions are
  exact (to the file's rounding) when bone lengths are constant. BVH OFFSETs are constant, so when
  the data's bone lengths vary from frame to frame (triangulated joints do, by 10-35 mm std on
  Pose2Sim's demo), each bone keeps its median length and a joint is off by at most the sum of
  its chain's length deviations. ``stretch=True`` adds position channels carrying each bone's
  length change (exact positions; not every animation tool honours non-root translations).
  :attr:`BvhSolution.errors_mm` holds the per-frame error of every joint.
* **Missing joints.** BVH cannot say "missing": a frame where a rotation cannot be solved (a joint
  or all its children NaN) holds the nearest solvable frame's rotation (and root position), and is
  flagged in :attr:`BvhSolution.held`. Fill gaps first (:func:`mvpose.filters.fill_gaps`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch

from mvpose.data.motion.types import Z_UP_FROM
from mvpose.geometry.rotations import euler_to_matrix, matrix_to_euler
from mvpose.skeleton import Skeleton, available_skeletons, get_skeleton

from ._io import atomic_write, existing_file
from .trajectories import Trajectories, unit_scale

__all__ = [
    "BvhSolution",
    "solve_bvh",
    "write_bvh",
    "read_bvh_trajectories",
    "tpose_directions",
    "guess_skeleton",
    "bvh_axes",
]

_UP, _DOWN = (0.0, 1.0, 0.0), (0.0, -1.0, 0.0)
_TRUNK_TOP = ("neck", "thorax", "spine", "spine2", "spine3", "spine4")
_AXIAL = (*_TRUNK_TOP, "neck_nose", "head", "head_top", "pelvis", "mid_hip")


def bvh_axes(up_axis: str) -> np.ndarray:
    """Rotation ``A (3, 3)`` taking world coordinates (``up_axis`` up) to the Y-up BVH frame."""
    if up_axis not in Z_UP_FROM:
        raise ValueError(f"up_axis must be 'x', 'y' or 'z', got {up_axis!r}")
    return Z_UP_FROM["y"].T @ Z_UP_FROM[up_axis]


def _side(name: str) -> tuple[float, str]:
    for prefix, s in (("left_", 1.0), ("right_", -1.0)):
        if name.startswith(prefix):
            return s, name[len(prefix) :]
    return 0.0, name


def _tpose_direction(name: str, parent: str) -> tuple[float, float, float] | None:
    """T-pose direction parent -> joint in BVH axes (Y up, facing +Z, left +X), or None if unknown."""
    s, part = _side(name)
    ps, ppart = _side(parent)
    lateral = (s, 0.0, 0.0)
    if part == "hip":
        if ppart == "hip":  # COCO-17: right_hip hangs from left_hip
            return ((s - ps) / 2, 0.0, 0.0)
        return (0.3 * s, -1.0, 0.0) if ppart in _TRUNK_TOP else lateral
    if part in ("knee", "ankle"):
        return _DOWN
    if part == "heel":
        return (0.0, -1.0, -0.6)
    if part in ("big_toe", "toe", "foot"):
        return (0.0, -0.4, 1.0)
    if part == "small_toe":
        return (s, 0.0, -0.2)
    if part == "shoulder":
        return _UP if ppart == "hip" else lateral
    if part in ("clavicle", "elbow", "wrist", "hand"):
        return lateral
    if part == "nose":
        return (-0.5 * ps, 1.0, 0.3) if ps else (0.0, 1.0, 0.5)
    if part == "eye":
        return (s, 1.0, -0.5)
    if part == "ear":
        return (0.6 * s, 0.0, -1.0)
    if part in _AXIAL:
        return _UP
    return None


def tpose_directions(joint_names, parents) -> list[np.ndarray | None]:
    """Unit T-pose bone directions (BVH axes) for every joint (``None`` for the root and for names
    no rule knows)."""
    out: list[np.ndarray | None] = []
    for j, p in enumerate(parents):
        d = None if p < 0 else _tpose_direction(joint_names[j], joint_names[p])
        out.append(None if d is None else np.asarray(d) / np.linalg.norm(d))
    return out


def guess_skeleton(joint_names) -> Skeleton:
    """The built-in skeleton that holds all ``joint_names`` (Pose2Sim marker names accepted) with
    the fewest joints not in the data; ValueError if none does."""
    from .trc import joint_names_from_markers

    best = None
    for name in available_skeletons():
        sk = get_skeleton(name)
        names = set(joint_names_from_markers(joint_names, sk.joint_names))
        if not names <= set(sk.joint_names):
            continue
        extra = sk.num_joints - len(names)
        if (best is None or extra < best[0]) and _subtree(sk, names, strict=False) is not None:
            best = (extra, sk)
    if best is None:
        raise ValueError(
            f"no built-in skeleton holds the joints {', '.join(joint_names)}; pass a skeleton "
            f"({', '.join(available_skeletons())})"
        )
    return best[1]


def _subtree(sk: Skeleton, present, strict: bool = True):
    """Depth-first order (root first) of the skeleton's joints in ``present``; None or ValueError
    when a present joint's parent (or the root) is absent."""
    present = set(present)
    if sk.joint_names[sk.root] not in present:
        if strict:
            raise ValueError(f"skeleton {sk.name!r}: the data has no root joint {sk.joint_names[sk.root]!r}")
        return None
    for j, nm in enumerate(sk.joint_names):
        p = sk.parents[j]
        if nm in present and p >= 0 and sk.joint_names[p] not in present:
            if strict:
                raise ValueError(
                    f"skeleton {sk.name!r}: joint {nm!r} is in the data but its parent {sk.joint_names[p]!r} "
                    "is not; BVH needs every joint's chain to the root"
                )
            return None
    order: list[int] = []
    stack = [sk.root]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed([c for c in sk.children(j) if sk.joint_names[c] in present]))
    return order


@dataclass
class BvhSolution:
    """A skeleton animation solved from positions (BVH axes, mm, degrees).

    Attributes:
        joint_names: ``N`` joints in file (depth-first) order: the skeleton's joints, plus the
            zero-length ``<parent>_to_<child>`` joints of ``branches="split"``.
        parents: ``N`` parent indices into ``joint_names`` (-1 for the root).
        offsets_mm: ``(N, 3)`` rest offsets (bone vector from the parent), BVH axes.
        root_mm: ``(T, 3)`` root positions, BVH axes.
        euler_deg: ``(T, N, 3)`` local rotation angles in ``euler_order`` (degrees).
        euler_order: e.g. ``"zxy"``: local rotation ``Rz(a0) @ Rx(a1) @ Ry(a2)``.
        errors_mm: ``(T, K)`` distance between the file's forward kinematics and the input, for the
            ``K`` ``skeleton_joints`` (NaN where the input is missing).
        held: ``(T, N)`` bool, True where a rotation (or the root position) could not be solved
            and the nearest solved frame's was used.
        axes: ``(3, 3)`` rotation world -> BVH axes.
        skeleton_joints: the ``K`` skeleton joints written, in file order.
        virtual: ``(N,)`` bool, True for the split joints.
        stretch_mm: ``(T, N, 3)`` position channels of ``stretch=True`` (root: zeros), else None.
        notes: remarks (joints with no T-pose rule, joints of the data not in the skeleton, ...).
    """

    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets_mm: np.ndarray
    root_mm: np.ndarray
    euler_deg: np.ndarray
    euler_order: str
    errors_mm: np.ndarray
    held: np.ndarray
    axes: np.ndarray
    skeleton_joints: tuple[str, ...] = ()
    virtual: np.ndarray | None = None
    stretch_mm: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def error_summary(self) -> dict[str, dict[str, float]]:
        """Per joint: median, p95 and max FK error (mm) over the frames where the input exists."""
        out = {}
        for k, name in enumerate(self.skeleton_joints):
            e = self.errors_mm[:, k]
            e = e[np.isfinite(e)]
            out[name] = {
                "median_mm": float(np.median(e)) if e.size else float("nan"),
                "p95_mm": float(np.percentile(e, 95)) if e.size else float("nan"),
                "max_mm": float(e.max()) if e.size else float("nan"),
            }
        return out


def _skew(v: np.ndarray) -> np.ndarray:
    z = np.zeros(v.shape[:-1])
    return np.stack(
        [
            np.stack([z, -v[..., 2], v[..., 1]], -1),
            np.stack([v[..., 2], z, -v[..., 0]], -1),
            np.stack([-v[..., 1], v[..., 0], z], -1),
        ],
        -2,
    )


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minimal rotations ``(T, 3, 3)`` taking unit ``a`` to unit ``b`` (both ``(T, 3)``)."""
    c = np.einsum("ti,ti->t", a, b)
    v = np.cross(a, b)
    K = _skew(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        R = np.eye(3) + K + (K @ K) / (1.0 + c)[:, None, None]
    flip = c < -1.0 + 1e-9  # opposite: half turn about any axis perpendicular to a
    if flip.any():
        af = a[flip]
        e = np.eye(3)[np.argmin(np.abs(af), axis=-1)]
        n = np.cross(af, e)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        R[flip] = 2.0 * n[:, :, None] * n[:, None, :] - np.eye(3)
    return R


def _kabsch(d: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations minimising ``sum_c w_c |R d_c - v_c|^2``.

    Args:
        d: ``(K, 3)`` unit rest directions; v: ``(T, K, 3)`` unit targets; w: ``(T, K)`` weights.

    Returns:
        ``(R (T, 3, 3), ok (T,))``; ``ok`` is False where the weighted directions span a line
        (twist undetermined).
    """
    H = np.einsum("tk,ki,tkj->tij", w, d, v)
    U, S, Vt = np.linalg.svd(H)
    sign = np.sign(np.linalg.det(Vt.transpose(0, 2, 1) @ U.transpose(0, 2, 1)))
    D = np.broadcast_to(np.eye(3), H.shape).copy()
    D[:, 2, 2] = np.where(sign == 0, 1.0, sign)
    R = Vt.transpose(0, 2, 1) @ D @ U.transpose(0, 2, 1)
    ok = S[:, 1] > 1e-6 * np.maximum(S[:, 0], 1e-300)
    return R, ok


def _hold(x: np.ndarray, ok: np.ndarray, default) -> np.ndarray:
    """Replace ``x[t]`` where not ``ok[t]`` by the nearest ``ok`` frame's (``default`` if none)."""
    if ok.all():
        return x
    out = x.copy()
    if not ok.any():
        out[:] = default
        return out
    T = len(ok)
    t = np.arange(T)
    prev = np.maximum.accumulate(np.where(ok, t, -1))
    nxt = np.minimum.accumulate(np.where(ok, t, T)[::-1])[::-1]
    use_prev = (prev >= 0) & ((nxt >= T) | (t - prev <= nxt - t))
    src = np.where(use_prev, prev, nxt)
    out[~ok] = x[src[~ok]]
    return out


def _euler_channels(order: str) -> list[str]:
    order = order.lower()
    if sorted(order) != ["x", "y", "z"]:
        raise ValueError(f"euler_order must be a permutation of 'xyz' (e.g. 'zxy'), got {order!r}")
    return [f"{a.upper()}rotation" for a in order]


def _forward(offsets: np.ndarray, parents, root: np.ndarray, R_local: np.ndarray, shift=None) -> np.ndarray:
    """Positions ``(T, K, 3)`` from offsets ``(K, 3)``, root ``(T, 3)``, rotations ``(T, K, 3, 3)``
    and optional position channels ``shift (T, K, 3)`` added to the offsets (parents first), as
    :func:`mvpose.data.motion.read_bvh` computes them."""
    T, K = R_local.shape[:2]
    pos = np.empty((T, K, 3))
    glob = np.empty_like(R_local)
    for k, p in enumerate(parents):
        if p < 0:
            pos[:, k], glob[:, k] = root, R_local[:, k]
        else:
            off = offsets[k] if shift is None else offsets[k] + shift[:, k]
            pos[:, k] = pos[:, p] + np.einsum("tij,tj->ti", glob[:, p], np.broadcast_to(off, (T, 3)))
            glob[:, k] = glob[:, p] @ R_local[:, k]
    return pos


BRANCHES = ("split", "kabsch")


def _nodes(names, parents, split: bool):
    """Output joints: ``(name, parent node, joint k, virtual)`` in depth-first order.

    With ``split``, every child ``c`` of a joint ``p`` with several children hangs from its own
    zero-length joint ``p_to_c`` at ``p`` (``virtual``), so each child bone gets its own rotation.
    """
    K = len(names)
    children = [[c for c in range(K) if parents[c] == k] for k in range(K)]
    nodes: list[tuple[str, int, int, bool]] = []

    def emit(k: int, parent: int) -> None:
        me = len(nodes)
        nodes.append((names[k], parent, k, False))
        for c in children[k]:
            if split and len(children[k]) > 1:
                nodes.append((f"{names[k]}_to_{names[c]}", me, c, True))
                emit(c, len(nodes) - 1)
            else:
                emit(c, me)

    emit(0, -1)
    taken = {n for n in names}
    for name, _, _, virtual in nodes:
        if virtual and name in taken:
            raise ValueError(
                f"cannot add the BVH joint {name!r}: the skeleton already has a joint of that name"
            )
    return nodes


def solve_bvh(
    traj: Trajectories,
    skeleton=None,
    up_axis: str = "z",
    euler_order: str = "zxy",
    branches: str = "split",
    stretch: bool = False,
) -> BvhSolution:
    """Solve rest offsets and per-frame joint rotations from ``traj`` (see the module docstring).

    Args:
        traj: positions (mm, world axes); names must be the skeleton's (Pose2Sim marker names are
            mapped).
        skeleton: a :class:`Skeleton` or name; default ``traj.skeleton``, else :func:`guess_skeleton`.
        up_axis: the world's up axis.
        euler_order: rotation channel order, a permutation of ``"xyz"``.
        branches: ``"split"`` (default): below a joint with several children each child hangs from
            its own zero-length joint ``<parent>_to_<child>`` whose rotation aligns that bone
            exactly (the parent keeps the best-fit rotation of all of them, so the split joints
            carry only the non-rigid remainder); ``"kabsch"``: skeleton joints only, one best-fit
            rotation per branching joint.
        stretch: add ``Xposition Yposition Zposition`` channels to every non-root joint holding
            the change of its bone length along the bone (a displacement added to the OFFSET, as
            :func:`mvpose.data.motion.read_bvh` reads it), so positions are exact even when bone
            lengths vary. Many animation tools ignore or reinterpret non-root translations.

    Returns:
        :class:`BvhSolution`. Loops over joints (the kinematic chain), vectorised over frames.
    """
    from .trc import joint_names_from_markers

    _euler_channels(euler_order)
    if branches not in BRANCHES:
        raise ValueError(f"branches must be one of {', '.join(BRANCHES)}, got {branches!r}")
    A = bvh_axes(up_axis)
    sk = get_skeleton(skeleton) if skeleton is not None else None
    if sk is None:
        sk = get_skeleton(traj.skeleton) if traj.skeleton else guess_skeleton(traj.joint_names)
    data_names = joint_names_from_markers(traj.joint_names, sk.joint_names)
    order = _subtree(sk, data_names)
    notes = []
    extra = [n for n in data_names if n not in sk.joint_names]
    if extra:
        notes.append(f"joints not in skeleton {sk.name} (not written): {', '.join(extra)}")
    names = tuple(sk.joint_names[j] for j in order)
    pos_k = {j: k for k, j in enumerate(order)}
    parents = tuple(-1 if sk.parents[j] < 0 else pos_k[sk.parents[j]] for j in order)
    col = [data_names.index(n) for n in names]
    P = traj.points_mm[:, col] @ A.T  # (T, K, 3) BVH axes
    T, K = P.shape[:2]
    if T == 0:
        raise ValueError("BVH export needs at least one frame")

    # rest pose: median bone lengths along T-pose directions
    offsets = np.zeros((K, 3))
    lengths = np.full((T, K), np.nan)
    dirs = tpose_directions(names, parents)
    for k, p in enumerate(parents):
        if p < 0:
            continue
        bone = P[:, k] - P[:, p]
        lengths[:, k] = np.linalg.norm(bone, axis=-1)
        ok = np.isfinite(lengths[:, k]) & (lengths[:, k] > 0)
        if not ok.any():
            raise ValueError(f"joint {names[k]!r} is never seen together with its parent {names[p]!r}")
        if dirs[k] is None:
            m = np.median(bone[ok] / lengths[ok, k, None], axis=0)
            dirs[k] = m / np.linalg.norm(m)
            notes.append(
                f"no T-pose rule for {names[k]!r}: rest direction = its median direction in the take"
            )
        offsets[k] = np.median(lengths[ok, k]) * dirs[k]

    nodes = _nodes(names, parents, branches == "split")
    N = len(nodes)
    node_parents = tuple(n[1] for n in nodes)
    node_joint = np.array([n[2] for n in nodes])
    virtual = np.array([n[3] for n in nodes])
    # the joint whose position a node sits at, and the joints whose directions drive its rotation
    at = np.where(virtual, [parents[k] for k in node_joint], node_joint)
    drivers = []
    for i, (_, _, k, v) in enumerate(nodes):
        if v:
            drivers.append([k])
        else:
            drivers.append([node_joint[c] for c in range(N) if node_parents[c] == i])
    node_offsets = np.where(virtual[:, None], 0.0, offsets[node_joint])

    R_local = np.broadcast_to(np.eye(3), (T, N, 3, 3)).copy()
    held = np.zeros((T, N), bool)
    glob = np.empty_like(R_local)
    for i, pn in enumerate(node_parents):
        Mp = glob[:, pn] if pn >= 0 else np.broadcast_to(np.eye(3), (T, 3, 3))
        ch = drivers[i]
        if ch:
            bones = P[:, ch] - P[:, at[i] : at[i] + 1]  # (T, C, 3) world bones in BVH axes
            v = np.einsum("tji,tcj->tci", Mp, bones)  # in the parent's rotated frame
            n = np.linalg.norm(v, axis=-1)
            seen = np.isfinite(n) & (n > 0)
            v = np.where(seen[..., None], v / np.where(seen, n, 1.0)[..., None], 0.0)
            d = offsets[ch] / np.linalg.norm(offsets[ch], axis=-1, keepdims=True)
            w = np.where(seen, np.linalg.norm(offsets[ch], axis=-1), 0.0)
            solved = seen.any(1)
            if len(ch) == 1:
                R = _swing(np.broadcast_to(d[0], (T, 3)), v[:, 0])
                ok = solved
            else:
                R, ok = _kabsch(d, v, w)
                ok &= solved
                single = solved & ~ok  # one usable child (or collinear ones): swing on the heaviest
                if single.any():
                    best = np.argmax(w[single], axis=1)
                    R[single] = _swing(d[best], v[single, best])
                    ok = solved
            R_local[:, i] = _hold(R, ok, np.eye(3))
            held[:, i] = ~ok
        glob[:, i] = Mp @ R_local[:, i]

    root_ok = np.isfinite(P[:, 0]).all(-1)
    root = _hold(P[:, 0], root_ok, 0.0)
    held[:, 0] |= ~root_ok
    stretch_mm = None
    if stretch:  # displacement along the rest bone: offset * (length / rest length - 1)
        rest = np.linalg.norm(offsets, axis=-1)
        ratio = np.where(rest > 0, lengths / np.where(rest > 0, rest, 1.0), 1.0)
        ratio = np.stack([_hold(ratio[:, k], np.isfinite(ratio[:, k]), 1.0) for k in range(K)], 1)
        stretch_mm = np.where(virtual[None, :, None], 0.0, (ratio[:, node_joint] - 1.0)[..., None])
        stretch_mm = stretch_mm * node_offsets
        stretch_mm[:, 0] = 0.0
    angles = matrix_to_euler(torch.from_numpy(R_local), euler_order).numpy()
    angles = np.unwrap(angles, axis=0)
    # what the file encodes: rotations rebuilt from the angles, forward kinematics as readers do
    R_file = euler_to_matrix(torch.from_numpy(angles), euler_order).numpy()
    fk = _forward(node_offsets, node_parents, root, R_file, stretch_mm)
    errors = np.full((T, K), np.nan)
    real = np.flatnonzero(~virtual)
    errors[:, node_joint[real]] = np.linalg.norm(fk[:, real] - P[:, node_joint[real]], axis=-1)
    return BvhSolution(
        joint_names=tuple(n[0] for n in nodes),
        parents=node_parents,
        offsets_mm=node_offsets,
        root_mm=root,
        euler_deg=np.degrees(angles),
        euler_order=euler_order.lower(),
        errors_mm=errors,
        held=held,
        axes=A,
        skeleton_joints=names,
        virtual=virtual,
        stretch_mm=stretch_mm,
        notes=notes,
    )


def _hierarchy(sol: BvhSolution, scale: float, end_site_mm: float) -> str:
    rot = " ".join(_euler_channels(sol.euler_order))
    pos = "Xposition Yposition Zposition"
    lines = ["HIERARCHY"]
    children = [[c for c, q in enumerate(sol.parents) if q == k] for k in range(len(sol.parents))]

    def fmt(v):
        return " ".join(f"{x:.6f}" for x in v)

    def emit(k: int, depth: int) -> None:
        pad = "\t" * depth
        if sol.parents[k] < 0:
            lines.extend([f"ROOT {sol.joint_names[k]}", pad + "{", pad + f"\tOFFSET {fmt((0.0, 0.0, 0.0))}"])
            lines.append(pad + f"\tCHANNELS 6 {pos} {rot}")
        else:
            lines.extend([pad + f"JOINT {sol.joint_names[k]}", pad + "{"])
            lines.append(pad + f"\tOFFSET {fmt(sol.offsets_mm[k] / scale)}")
            lines.append(
                pad + (f"\tCHANNELS 6 {pos} {rot}" if sol.stretch_mm is not None else f"\tCHANNELS 3 {rot}")
            )
        for c in children[k]:
            emit(c, depth + 1)
        if not children[k]:
            off = sol.offsets_mm[k]
            norm = np.linalg.norm(off)
            tip = off / norm * end_site_mm if norm > 0 else np.array([0.0, end_site_mm, 0.0])
            lines.extend(
                [pad + "\tEnd Site", pad + "\t{", pad + f"\t\tOFFSET {fmt(tip / scale)}", pad + "\t}"]
            )
        lines.append(pad + "}")

    emit(0, 0)
    return "\n".join(lines) + "\n"


def write_bvh(
    path,
    traj: Trajectories,
    skeleton=None,
    units: str = "cm",
    up_axis: str = "z",
    euler_order: str = "zxy",
    branches: str = "split",
    stretch: bool = False,
    end_site_mm: float = 50.0,
) -> BvhSolution:
    """Solve (:func:`solve_bvh`) and write a BVH file.

    Args:
        path: output ``.bvh``.
        traj: positions (mm, world axes).
        skeleton: :class:`Skeleton` or name (default ``traj.skeleton`` or a guess).
        units: ``"cm"`` (default), ``"mm"`` or ``"m"`` for OFFSETs and positions.
        up_axis: the world's up axis (the file is Y-up).
        euler_order: rotation channel order.
        branches, stretch: see :func:`solve_bvh`.
        end_site_mm: length of the End Site added to every leaf joint, along its bone.

    Returns:
        The :class:`BvhSolution` written (with per-joint FK errors).
    """
    scale = unit_scale(units)
    for n in traj.joint_names:
        if not n or any(ch.isspace() for ch in n) or any(ch in n for ch in "{}"):
            raise ValueError(f"joint name {n!r} cannot be written in BVH (no spaces or braces)")
    sol = solve_bvh(
        traj, skeleton, up_axis=up_axis, euler_order=euler_order, branches=branches, stretch=stretch
    )
    T, N = sol.euler_deg.shape[:2]
    if sol.stretch_mm is None:
        motion = np.concatenate([sol.root_mm / scale, sol.euler_deg.reshape(T, -1)], axis=1)
    else:  # every joint: 3 positions then 3 rotations; the root's positions are absolute
        trans = sol.stretch_mm.copy()
        trans[:, 0] = sol.root_mm
        motion = np.concatenate([trans / scale, sol.euler_deg], axis=2).reshape(T, 6 * N)
    buf = io.StringIO()
    buf.write(_hierarchy(sol, scale, float(end_site_mm)))
    buf.write(f"MOTION\nFrames: {T}\nFrame Time: {1.0 / traj.fps:.8f}\n")
    np.savetxt(buf, motion, fmt="%.6f", delimiter=" ")

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(buf.getvalue())

    atomic_write(path, write)
    return sol


def read_bvh_trajectories(path, up_axis: str = "z", units="infer") -> Trajectories:
    """Read a BVH (:func:`mvpose.data.motion.read_bvh`, End Sites dropped) into world axes.

    Args:
        path: the ``.bvh``.
        up_axis: the world's up axis to convert the Y-up file into (``"y"`` keeps file axes).
        units: file units (``"mm"``, ``"cm"``, ``"m"``, mm per unit, or ``"infer"``).
    """
    from mvpose.data.motion import read_bvh

    path = existing_file(path, "BVH file")
    motion = read_bvh(path, scale_to_mm=units, include_end_sites=False, up_axis="y")
    A = bvh_axes(up_axis)
    return Trajectories(
        motion.positions_mm @ A,  # world = A^T bvh, row vectors
        motion.joint_names,
        motion.fps,
        meta={"source": str(path)},
    )
