"""Multi-person association, triangulation and tracking: synthetic people through the example's
distorted 6-camera ring, and the real Shelf detections (PCP protocol)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mvpose.pipeline.detections import Detections
from mvpose.pipeline.example import example_rig, walking_person
from mvpose.pipeline.multiperson import (
    _view_pairs,
    epipolar_affinity,
    format_multiperson_summary,
    fundamental_matrices,
    infer_people,
    select_clusters,
    track_people,
)
from mvpose.pipeline.triangulate import read_result, write_result

SHELF = Path(__file__).resolve().parents[2] / "shared" / "data" / "shelf_campus"
needs_shelf = pytest.mark.skipif(
    not (SHELF / "source_4d_association").is_dir(), reason=f"no Shelf at {SHELF}"
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Single-threaded torch: these batched solves are small per operation, and on a shared machine
    a second thread mostly waits (the test takes several times longer with two)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _scene(T: int = 30, seed: int = 0):
    """Three people walking circles of different radii and speeds, seen by the example's 6
    distorted cameras with 1.5 px noise; every view lists the people in a random order.
    Returns the rig, keypoints ``(V, T, 3, 17, 3)``, GT ``(T, 3, 17, 3)``."""
    rig = example_rig()
    rng = np.random.default_rng(seed)
    gt = np.stack(
        [
            walking_person(T, 1400.0, 1100.0),
            walking_person(T, 500.0, 400.0),
            walking_person(T, 2200.0, -1300.0),
        ],
        1,
    )
    px = rig.project(torch.from_numpy(gt)).numpy()  # (T, N, V, J, 2)
    px = px + rng.normal(0.0, 1.5, px.shape)
    conf = rng.uniform(0.5, 1.0, px.shape[:-1])
    kp = np.concatenate([px, conf[..., None]], -1).transpose(2, 0, 1, 3, 4)  # (V, T, N, J, 3)
    wh = rig.image_size.numpy()[:, None, None, None, :]
    kp[((kp[..., :2] < 0) | (kp[..., :2] > wh - 1)).any(-1)] = np.nan
    perm = np.argsort(rng.random(kp.shape[:3]), -1)
    return rig, np.take_along_axis(kp, perm[..., None, None], 2), gt


def _match(points: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each GT person, the track closest on average and that mean distance (mm)."""
    d = np.linalg.norm(points[:, :, None] - gt[:, None], axis=-1)  # (T, N, G, J)
    mean = np.nanmean(d, axis=(0, 3))  # (N, G)
    return mean.argmin(0), mean.min(0)


def test_epipolar_affinity_separates_people():
    rig, kp, gt = _scene(T=4)
    exact = rig.project(torch.from_numpy(gt[:, :2])).numpy()  # (T, 2, V, J, 2), people in order
    uv = rig.undistort_points(torch.from_numpy(exact.transpose(0, 2, 1, 3, 4)).flatten(2, 3))
    uv = uv.view(4, 6, 2, 17, 2)  # (T, V, P, J, 2)
    pairs = _view_pairs(6)
    cost = epipolar_affinity(uv, fundamental_matrices(rig, pairs), pairs).numpy()  # (T, Q, 2, 2)
    assert cost.shape == (4, 15, 2, 2)
    same = cost[..., [0, 1], [0, 1]]
    other = cost[..., [0, 1], [1, 0]]
    assert np.nanmax(same) < 1e-6  # exact projections lie on each other's epipolar lines
    assert np.nanmedian(other) > 50.0
    # too few shared joints: no affinity
    uv[:, 1, :, 3:] = float("nan")
    cost = epipolar_affinity(uv, fundamental_matrices(rig, pairs), pairs, min_joints=5).numpy()
    assert np.isinf(cost[:, 0]).all() and np.isfinite(cost[:, 1]).all()  # pair (0, 1) involves view 1


def test_infer_people_tracks_three_people(tmp_path):
    rig, kp, gt = _scene(T=30)
    # view 0 misses person 0 in frames 10..14; view 3 sees a ghost (a fourth, random skeleton)
    kp = np.concatenate([kp, np.full(kp[:, :, :1].shape, np.nan)], 2)
    for t in range(10, 15):
        kp[0, t, 0] = np.nan
    ghost = rig.project(torch.from_numpy(walking_person(30, 3000.0, 800.0))).numpy()[:, 3]  # (T, J, 2)
    kp[3, :, 3, :, :2], kp[3, :, 3, :, 2] = ghost, 0.9
    det = Detections(kp, rig.names, None, skeleton="h36m17")
    res = infer_people(rig, det, progress=False)
    print(format_multiperson_summary(res))
    assert res.num_tracks == 3
    track, dist = _match(res.points_3d_mm, gt)
    assert sorted(track.tolist()) == [0, 1, 2] and (dist < 10.0).all(), dist
    # identities never switch: each track stays on its person in every frame
    for n, g in enumerate(track):
        d = np.linalg.norm(res.points_3d_mm[:, g] - gt[:, n], axis=-1)
        assert np.nanmax(np.nanmedian(d, axis=-1)) < 20.0
    assert np.isfinite(res.points_3d_mm).all(-1).any(-1).all()  # everyone in every frame
    assert (res.person_index[:, :, 3] != 3).all()  # the ghost is never used
    assert res.camera_stats["assigned_fraction"][3] < 0.8 and res.camera_stats["assigned_fraction"][1] == 1.0
    assert res.overall()["median_error_px"] < 3.0
    # max_people keeps the best supported
    two = infer_people(rig, det, progress=False, max_people=2)
    assert np.isfinite(two.points_3d_mm).all(-1).any(-1).sum(1).max() == 2
    for suffix in (".npz", ".json"):
        back = read_result(write_result(res, tmp_path / f"mp{suffix}"))
        np.testing.assert_allclose(back.points_3d_mm, res.points_3d_mm, equal_nan=True)
        np.testing.assert_array_equal(back.person_index, res.person_index)
        assert back.camera_stats.keys() == res.camera_stats.keys() and back.track_ids.tolist() == [0, 1, 2]


def test_track_people_birth_death_and_gaps():
    J = 5
    a = np.zeros((J, 3))
    b = a + [2000.0, 0.0, 0.0]
    # person A in frames 0..9 and 13..19 (gap of 3), person B in 0..4 and again at 15..19 (gap 10)
    frame, pts = [], []
    for t in range(20):
        if t < 10 or t >= 13:
            frame.append(t)
            pts.append(a + [10.0 * t, 0.0, 0.0])
        if t < 5 or t >= 15:
            frame.append(t)
            pts.append(b + [0.0, 10.0 * t, 0.0])
    frame, pts = np.array(frame), np.stack(pts)
    tr = track_people(frame, pts, 20, max_missing=5)
    is_a = pts[:, 0, 0] < 1000
    assert len(set(tr[is_a])) == 1  # a gap of 3 frames keeps the track
    assert len(set(tr[~is_a])) == 2  # a gap of 10 > max_missing ends it: a new track
    assert tr.max() == 2 and tr[0] == 0
    tr2 = track_people(frame, pts, 20, max_missing=20)
    assert len(set(tr2[~is_a])) == 1
    short = track_people(frame, pts, 20, max_missing=5, min_track_frames=6)
    assert (short[~is_a] == -1).all()  # B's two tracks (5 frames each) are dropped
    assert (short[is_a] == 0).all()  # A's keeps number 0


def test_select_clusters_disjoint():
    frame = np.array([0, 0, 0, 1])
    sel = np.array([[0, 0, -1], [0, 1, 1], [1, 1, 1], [0, 0, 0]])
    chosen = select_clusters(frame, sel, np.array([1.0, 3.0, 2.0, 1.0]))
    assert chosen.tolist() == [False, True, False, True]


@needs_shelf
def test_shelf_pcp():
    """Shelf, frames 300-600, real OpenPose detections: PCP per actor (VoxelPose's matching)."""
    from mvpose.pipeline.shelf import format_shelf, run_shelf

    report = run_shelf(SHELF)
    print(format_shelf(report))
    # measured: 98.8 / 91.9 / 93.6, average 94.8 (docs/infer.md)
    assert report["average_pcp"] > 93.0
    assert report["pcp"][0] > 97.0 and report["pcp"][1] > 89.0 and report["pcp"][2] > 91.0
    assert all(report["missed"][a] == 0 for a in range(3))
    assert report["median_error_px"] < 6.0


def test_nobody_consistent(tmp_path):
    """Detections that never agree across views: no person, a warning, files still written."""
    rig, kp, gt = _scene(T=5)
    rng = np.random.default_rng(3)
    kp[..., :2] = rng.uniform(0, 1000, kp[..., :2].shape)  # noise in every view
    res = infer_people(rig, Detections(kp, rig.names, None, skeleton="h36m17"), progress=False)
    assert res.num_tracks == 0 and res.points_3d_mm.shape == (5, 0, 17, 3)
    assert any("no person was seen consistently" in w for w in res.warnings)
    assert "0 tracks" in format_multiperson_summary(res)
    back = read_result(write_result(res, tmp_path / "none.json"))
    assert back.points_3d_mm.shape == (5, 0, 17, 3)
