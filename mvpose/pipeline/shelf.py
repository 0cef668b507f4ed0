"""The Shelf benchmark on real OpenPose detections: people per view from 4D Association's peak and
part-affinity files, multi-person inference, and the Shelf PCP protocol.

Data: ``../shared/data/shelf_campus`` (see its README.txt): ``shelf.json`` (5 cameras),
``shelf_gt3d_mm.npz`` (frames 300-600, 4 actors, 14 Shelf joints) and
``source_4d_association/detection/<cam>.txt`` (OpenPose BODY_25 peaks with their part-affinity
scores; the ``.npz`` of peaks has no affinities, so people cannot be assembled from it).

* :func:`read_4da_detections` parses one camera's file; :func:`assemble_people` groups its peaks into
  people by greedy part-affinity matching, limb by limb (the OpenPose parsing idea: the strongest
  connections first, one per candidate and limb, people merged along shared candidates);
* :func:`body25_to_shelf` maps BODY_25 joints to the 14 Shelf joints (head joints derived, see there);
* :func:`evaluate_shelf` runs the protocol: for every GT actor and frame, the predicted person with
  the lowest MPJPE on the 14 joints is its match (VoxelPose's rule); a part is correct when the mean
  of its two endpoint errors is at most half its GT length (:func:`mvpose.metrics.pcp`); PCP per actor
  over the frames where the actor's GT exists, averaged over actors 1-3.

``python -m mvpose.pipeline.shelf [DATA_DIR]`` prints the table (docs/infer.md has the figures).
"""

from __future__ import annotations

import argparse
import sys
import warnings as _warnings
from pathlib import Path

import numpy as np

from mvpose.errors import FileFieldError
from mvpose.pipeline.detections import Detections

__all__ = [
    "SHELF_JOINTS",
    "SHELF_PARTS",
    "BODY25_PAF_LIMBS",
    "read_4da_detections",
    "assemble_people",
    "read_shelf_people",
    "body25_to_shelf",
    "evaluate_shelf",
    "run_shelf",
]

#: The 14 Shelf joints, in the dataset's order.
SHELF_JOINTS = (
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "bottom_head",
    "top_head",
)
#: The 10 parts of the protocol as (name, joint a, joint b); joint 14 is the pelvis (mid-hips).
SHELF_PARTS = (
    ("right lower leg", 0, 1),
    ("right upper leg", 1, 2),
    ("left upper leg", 3, 4),
    ("left lower leg", 4, 5),
    ("right lower arm", 6, 7),
    ("right upper arm", 7, 8),
    ("left upper arm", 9, 10),
    ("left lower arm", 10, 11),
    ("head", 12, 13),
    ("torso", 14, 12),
)
#: BODY_25 limbs (A, B) of the part-affinity matrices in 4D Association's files, in file order.
BODY25_PAF_LIMBS = (
    (1, 8), (9, 10), (10, 11), (8, 9), (8, 12), (12, 13), (13, 14), (1, 2), (2, 3), (3, 4), (2, 17),
    (1, 5), (5, 6), (6, 7), (5, 18), (1, 0), (0, 15), (0, 16), (15, 17), (16, 18), (14, 19), (19, 20),
    (14, 21), (11, 22), (22, 23), (11, 24),
)  # fmt: skip
_BODY25_JOINTS = 25
#: Shelf joint -> BODY_25 index, for the 12 limb joints.
_SHELF_FROM_BODY25 = (11, 10, 9, 12, 13, 14, 4, 3, 2, 5, 6, 7)
_NECK, _NOSE, _R_EAR, _L_EAR = 1, 0, 17, 18
#: Head joints: bottom head = neck + BOTTOM * (head centre - neck), top head = neck + TOP * (...);
#: head centre = the midpoint of the ears (else the nose). See :func:`body25_to_shelf`.
HEAD_BOTTOM, HEAD_TOP = 0.5, 1.6
SHELF_IMAGE_SIZE = (1032, 776)


class ShelfFileError(FileFieldError):
    file_label = "Shelf detection file"
    field_label = "at"


# ------------------------------------------------------------------------------------------------
# 4D Association's detection files
# ------------------------------------------------------------------------------------------------


def read_4da_detections(path, image_size: tuple[int, int] = SHELF_IMAGE_SIZE):
    """Parse one camera's ``detection/<cam>.txt`` (layout: the data README).

    Returns:
        a list over frames of ``(peaks, affinities)``: ``peaks`` is a list of 25 arrays ``(n_j, 3)``
        (x px, y px, score; coordinates scaled back from ``x / (W - 1)``), ``affinities`` a list of
        26 arrays ``(n_a, n_b)`` for :data:`BODY25_PAF_LIMBS`.

    Raises:
        FileNotFoundError, ShelfFileError: missing file, bad header or truncated content.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Shelf detection file '{path}' not found")
    try:
        tok = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as e:
        raise ShelfFileError(path, None, f"not whitespace-separated numbers ({e})") from None
    if tok.size < 2 or tok[0] != 4:
        raise ShelfFileError(path, "header", "expected '4 <frames>' (4 = BODY_25 in 4D Association's enum)")
    W, H = image_size
    i, frames = 2, []
    try:
        while len(frames) < int(tok[1]):
            peaks = []
            for _ in range(_BODY25_JOINTS):
                n = int(tok[i])
                a = tok[i + 1 : i + 1 + 3 * n].reshape(3, n).T.copy()
                i += 1 + 3 * n
                a[:, 0] *= W - 1
                a[:, 1] *= H - 1
                peaks.append(a)
            affinities = []
            for a, b in BODY25_PAF_LIMBS:
                na, nb = len(peaks[a]), len(peaks[b])
                affinities.append(tok[i : i + na * nb].reshape(na, nb))
                i += na * nb
            frames.append((peaks, affinities))
    except ValueError:
        raise ShelfFileError(path, f"frame {len(frames)}", "the file ends early (truncated?)") from None
    return frames


def assemble_people(peaks, affinities, min_affinity: float = 0.1, min_joints: int = 4) -> np.ndarray:
    """Group one image's BODY_25 peaks into people by greedy part-affinity matching.

    Limb by limb (in :data:`BODY25_PAF_LIMBS` order), the candidate connections with affinity at
    least ``min_affinity`` are taken strongest first, at most one per candidate of each end; a
    connection extends the person owning one end, joins two people that do not overlap, or starts
    a person. People with fewer than ``min_joints`` joints are dropped.

    Returns:
        ``(P, 25, 3)`` x px, y px, peak score; NaN where a person lacks the joint.
    """
    owner = [[-1] * len(p) for p in peaks]  # person owning each candidate (small: plain lists)
    people: list[list[int]] = []  # candidate index per joint, -1: none
    for (A, B), M in zip(BODY25_PAF_LIMBS, affinities):
        if M.size == 0:
            continue
        conns = sorted(
            (
                (score, a, b)
                for a, row in enumerate(M.tolist())
                for b, score in enumerate(row)
                if score >= min_affinity
            ),
            key=lambda c: -c[0],
        )
        used_a, used_b = set(), set()
        for _, a, b in conns:
            if a in used_a or b in used_b:
                continue
            used_a.add(a)
            used_b.add(b)
            pa, pb = owner[A][a], owner[B][b]
            if pa < 0 and pb < 0:
                person = [-1] * _BODY25_JOINTS
                person[A], person[B] = a, b
                owner[A][a] = owner[B][b] = len(people)
                people.append(person)
            elif pb < 0:
                if people[pa][B] < 0:
                    people[pa][B] = b
                    owner[B][b] = pa
            elif pa < 0:
                if people[pb][A] < 0:
                    people[pb][A] = a
                    owner[A][a] = pb
            elif pa != pb and not any(i >= 0 and k >= 0 for i, k in zip(people[pa], people[pb])):
                for j, k in enumerate(people[pb]):
                    if k >= 0:
                        people[pa][j] = k
                        owner[j][k] = pa
                people[pb] = [-1] * _BODY25_JOINTS
    out = np.full((len(people), _BODY25_JOINTS, 3), np.nan)
    keep = np.zeros(len(people), bool)
    for i, person in enumerate(people):
        joints = [j for j, k in enumerate(person) if k >= 0]
        if len(joints) >= min_joints:
            keep[i] = True
            for j in joints:
                out[i, j] = peaks[j][person[j]]
    return out[keep]


def read_shelf_people(data_dir, min_affinity: float = 0.1, min_joints: int = 4) -> Detections:
    """People of the 5 Shelf cameras, frames 300-600, as BODY_25 :class:`Detections`."""
    folder = Path(data_dir) / "source_4d_association" / "detection"
    per_cam = []
    for v in range(5):
        frames = read_4da_detections(folder / f"{v}.txt")
        per_cam.append([assemble_people(pk, af, min_affinity, min_joints) for pk, af in frames])
    T = len(per_cam[0])
    if any(len(c) != T for c in per_cam):
        raise ValueError(f"{folder}: the cameras hold different frame counts {[len(c) for c in per_cam]}")
    P = max(1, max(len(p) for c in per_cam for p in c))
    kp = np.full((5, T, P, _BODY25_JOINTS, 3), np.nan)
    for v, cam in enumerate(per_cam):
        for t, people in enumerate(cam):
            kp[v, t, : len(people)] = people
    return Detections(
        kp,
        tuple(f"Camera{v}" for v in range(5)),
        np.arange(300, 300 + T),
        tuple(folder / f"{v}.txt" for v in range(5)),
        "body25",
    )


# ------------------------------------------------------------------------------------------------
# Skeleton map and protocol
# ------------------------------------------------------------------------------------------------


def body25_to_shelf(points: np.ndarray) -> np.ndarray:
    """BODY_25 joints ``(*, 25, 3)`` -> the 14 Shelf joints ``(*, 14, 3)`` (mm).

    The 12 limb joints are the same landmarks. Shelf's two head joints have no BODY_25 keypoint:
    with the head centre ``c`` (midpoint of the ears, else the nose) and the neck ``n``, bottom head
    ``= n + HEAD_BOTTOM (c - n)`` and top head ``= n + HEAD_TOP (c - n)``: 0.5 (halfway up the
    neck) and 1.6 (the vertex lies about 0.6 neck-to-ear distances above the ears). A fixed rule
    from head proportions, not fitted to the benchmark's errors.
    """
    p = np.asarray(points, dtype=np.float64)
    out = np.full((*p.shape[:-2], 14, 3), np.nan)
    out[..., :12, :] = p[..., _SHELF_FROM_BODY25, :]
    ears = 0.5 * (p[..., _R_EAR, :] + p[..., _L_EAR, :])
    centre = np.where(np.isfinite(ears), ears, p[..., _NOSE, :])
    neck = p[..., _NECK, :]
    out[..., 12, :] = neck + HEAD_BOTTOM * (centre - neck)
    out[..., 13, :] = neck + HEAD_TOP * (centre - neck)
    return out


def _with_pelvis(x: np.ndarray) -> np.ndarray:
    """``(*, 14, 3)`` -> ``(*, 15, 3)`` with the mid-hips appended (the torso part's lower end)."""
    return np.concatenate([x, 0.5 * (x[..., 2:3, :] + x[..., 3:4, :])], -2)


def evaluate_shelf(pred: np.ndarray, gt: np.ndarray, present: np.ndarray, actors=(0, 1, 2)) -> dict:
    """The Shelf PCP protocol (module docstring).

    Args:
        pred: ``(T, N, 14, 3)`` predicted people in Shelf joints (mm; NaN where absent).
        gt: ``(T, A, 14, 3)`` ground truth (mm); ``present (T, A)`` where an actor's GT exists.
        actors: GT actors evaluated (0-based; the benchmark averages actors 1-3, i.e. 0, 1, 2).

    Returns:
        dict with ``pcp`` per actor (percent, 0-based keys), ``pcp_parts`` per actor (10 parts),
        ``average_pcp``, ``mpjpe_mm`` per actor (matched people, joints finite in both), ``frames``
        per actor and ``missed`` per actor (frames without any predicted person).
    """
    from mvpose.metrics import pcp

    T, N = pred.shape[:2]
    limbs = [(a, b) for _, a, b in SHELF_PARTS]
    P15, G15 = _with_pelvis(pred), _with_pelvis(gt)
    out = {"pcp": {}, "pcp_parts": {}, "mpjpe_mm": {}, "frames": {}, "missed": {}}
    for a in actors:
        frames = np.flatnonzero(present[:, a])
        g = gt[frames, a]  # (F, 14, 3)
        d = np.linalg.norm(pred[frames] - g[:, None], axis=-1)  # (F, N, 14)
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", RuntimeWarning)
            err = np.nanmean(d, axis=-1) if N else np.zeros((len(frames), 0))
        err = np.where(np.isfinite(err), err, np.inf)
        has = np.isfinite(err).any(-1) if N else np.zeros(len(frames), bool)
        best = err.argmin(-1) if N else np.zeros(len(frames), np.int64)
        mp = P15[frames, best] if N else np.full(G15[frames, a].shape, np.nan)
        mp = np.where(has[:, None, None], mp, np.nan)
        gg = G15[frames, a]
        # a missing predicted joint counts as wrong: put it far away
        mp_f = np.where(np.isfinite(mp), mp, 1e9)
        parts = pcp(mp_f, gg, limbs, reduction="none").numpy()  # (F, 10)
        out["pcp_parts"][a] = {name: float(parts[:, i].mean()) for i, (name, _, _) in enumerate(SHELF_PARTS)}
        out["pcp"][a] = float(parts.mean())
        dj = np.linalg.norm(mp[:, :14] - gg[:, :14], axis=-1)
        out["mpjpe_mm"][a] = float(np.nanmean(dj)) if np.isfinite(dj).any() else float("nan")
        out["frames"][a] = int(len(frames))
        out["missed"][a] = int((~has).sum())
    out["average_pcp"] = float(np.mean([out["pcp"][a] for a in actors]))
    return out


def run_shelf(data_dir, progress: bool = False, **infer_kw) -> dict:
    """Assemble people, run :func:`~mvpose.pipeline.multiperson.infer_people`, evaluate.

    Returns:
        :func:`evaluate_shelf`'s dict plus ``tracks``, ``mean_people_per_frame`` and
        ``median_error_px``/``p90_error_px`` (reprojection, over used observations)."""
    from mvpose.calib import load_rig
    from mvpose.pipeline.multiperson import infer_people

    data_dir = Path(data_dir)
    rig = load_rig(data_dir / "shelf.json")
    det = read_shelf_people(data_dir)
    res = infer_people(rig, det, progress=progress, **infer_kw)
    with np.load(data_dir / "shelf_gt3d_mm.npz") as z:
        gt, present, fi = z["joints3d_mm"].astype(np.float64), z["present"], z["frame_index"]
    if not np.array_equal(fi, res.frame_indices):
        raise ValueError(f"{data_dir}: GT frames {fi[0]}..{fi[-1]} differ from the detections' frames")
    out = evaluate_shelf(body25_to_shelf(res.points_3d_mm), gt, present)
    o = res.overall()
    out.update(
        tracks=o["tracks"],
        mean_people_per_frame=o["mean_people_per_frame"],
        median_error_px=o["median_error_px"],
        p90_error_px=o["p90_error_px"],
    )
    return out


def format_shelf(report: dict) -> str:
    actors = sorted(report["pcp"])
    names = [name for name, _, _ in SHELF_PARTS]
    lines = [f"{'part':<16}" + "".join(f"{f'actor {a + 1}':>10}" for a in actors)]
    for n in names:
        lines.append(f"{n:<16}" + "".join(f"{report['pcp_parts'][a][n]:>10.1f}" for a in actors))
    lines.append(f"{'PCP':<16}" + "".join(f"{report['pcp'][a]:>10.1f}" for a in actors))
    lines.append(f"{'MPJPE mm':<16}" + "".join(f"{report['mpjpe_mm'][a]:>10.1f}" for a in actors))
    counts = [f"{report['frames'][a]} ({report['missed'][a]})" for a in actors]
    lines.append(f"{'frames (missed)':<16}" + "".join(f"{c:>10}" for c in counts))
    lines.append(
        f"average PCP {report['average_pcp']:.1f}; {report['tracks']} tracks, "
        f"{report['mean_people_per_frame']:.2f} people per frame; reprojection error median "
        f"{report['median_error_px']:.1f} px, p90 {report['p90_error_px']:.1f} px"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Shelf PCP of mvpose's multi-person inference")
    parser.add_argument("data", nargs="?", default="../shared/data/shelf_campus", type=Path)
    args = parser.parse_args(argv)
    print(format_shelf(run_shelf(args.data, progress=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
