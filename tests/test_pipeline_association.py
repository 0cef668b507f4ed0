"""Single-person association: the subject is found whatever the list order, bystanders are dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mvpose.pipeline.association import select_single_person
from mvpose.pipeline.example import example_rig, walking_person

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO = DATA / "pose2sim_demo"


def _observe(points: np.ndarray, rig, rng, noise=1.5) -> np.ndarray:
    """``(V, T, J, 3)`` detections of ``points (T, J, 3)``: noisy pixels, confidence 0.6-1."""
    px = rig.project(torch.from_numpy(points)).numpy().transpose(1, 0, 2, 3)
    px = px + rng.normal(0, noise, px.shape)
    return np.concatenate([px, rng.uniform(0.6, 1.0, px.shape[:-1] + (1,))], -1)


def _scene(T=40, seed=0):
    rng = np.random.default_rng(seed)
    rig = example_rig()
    subject = walking_person(T)
    other = walking_person(T, radius_mm=2600.0, speed_mm_s=-600.0)  # another walker, further out
    return rng, rig, subject, _observe(subject, rig, rng), _observe(other, rig, rng)


@pytest.mark.parametrize("max_combinations", [1024, 1])  # exhaustive, pairwise
def test_bystander_first_in_some_views(max_combinations):
    rng, rig, subject, det_s, det_b = _scene()
    V, T, J, _ = det_s.shape
    kp = np.full((V, T, 2, J, 3), np.nan)
    kp[:, :, 0] = det_s
    # The bystander is seen by views 0, 1, 2 only, listed first in view 0 and in random frames of view 1.
    swap = np.zeros((V, T), bool)
    swap[0] = True
    swap[1] = rng.random(T) < 0.5
    kp[:3, :, 1] = det_b[:3]
    kp[swap] = kp[swap][:, ::-1]
    # The subject is not detected in view 2 in frames 10-19: only the bystander is there.
    kp[2, 10:20, 0] = np.nan
    out, info = select_single_person(kp, rig, return_info=True, max_combinations=max_combinations)
    assert info.scheme == ("exhaustive" if max_combinations > 1 else "pairwise")
    expected = np.where(swap.T, 1, 0)
    expected[10:20, 2] = -1  # the bystander alone in view 2 is rejected
    np.testing.assert_array_equal(info.person_index, expected)
    assert out.shape == (V, T, J, 3)
    np.testing.assert_array_equal(
        out[:, :, :, :2], np.where(expected.T[..., None, None] >= 0, det_s[..., :2], np.nan)
    )
    assert info.num_views[:10].tolist() == [6] * 10 and info.num_views[10:20].tolist() == [5] * 10
    assert np.nanmax(info.error_px) < 5.0


def test_two_people_everywhere_keeps_one_identity():
    # Two people seen equally well by every camera, in random list order: a tie in every frame,
    # broken by continuity: the same person all along.
    rng, rig, subject, det_s, det_b = _scene(T=30, seed=3)
    V, T, J, _ = det_s.shape
    kp = np.stack([det_s, det_b], 2)
    swap = rng.random((V, T)) < 0.5
    kp[swap] = kp[swap][:, ::-1]
    out, info = select_single_person(kp, rig, return_info=True)
    identity = info.person_index ^ swap.T.astype(int)  # 0: the subject, 1: the other walker
    assert (identity == identity[0, 0]).all()
    assert info.ambiguous.all()
    # The chunked call continues with the identity of the previous chunk.
    _, info2 = select_single_person(
        kp[:, 15:], rig, return_info=True, reference_centroid=info.centroid_mm[14]
    )
    np.testing.assert_array_equal(info2.person_index, info.person_index[15:])


def test_single_person_passthrough_and_torch():
    rng, rig, subject, det_s, _ = _scene(T=5)
    kp = torch.from_numpy(det_s[:, :, None])
    out, info = select_single_person(kp, rig, return_info=True)
    assert isinstance(out, torch.Tensor) and out.shape == (6, 5, 17, 3)
    assert info.scheme == "single" and (info.person_index == 0).all()
    with pytest.raises(ValueError, match=r"\(V, T, P, J, 3\)"):
        select_single_person(det_s, rig)


@pytest.mark.skipif(not DEMO.is_dir(), reason=f"Pose2Sim demo not found at {DEMO}")
def test_pose2sim_demo_with_reversed_lists():
    from mvpose.calib import load_rig
    from mvpose.pipeline.detections import load_detections

    det = load_detections(DEMO / "pose", "body25b")
    rig = load_rig(DEMO / "calibration.json")
    _, info = select_single_person(det.keypoints, rig, return_info=True)
    # The subject is person 0 of every list here (checked against the 2D detections of cam3/cam4,
    # which see nobody else); all four views agree in every frame.
    assert (info.person_index == 0).all() and (info.num_views == 4).all()
    # Reverse the people of cam1 and cam2 (padding first): the subject is now last.
    kp = det.keypoints.copy()
    kp[:2] = kp[:2, :, ::-1]
    _, info = select_single_person(kp, rig, return_info=True)
    np.testing.assert_array_equal(info.person_index[:, :2], kp.shape[2] - 1)
    np.testing.assert_array_equal(info.person_index[:, 2:], 0)
