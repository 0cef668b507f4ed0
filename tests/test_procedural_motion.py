"""Procedural motion: bodies, kinematics, primitives, foot contact, determinism and speed."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch

from mvpose.data.motion import BodyShape, Motion, generate_motion, generate_motion_with_info, sample_body
from mvpose.data.motion.procedural import (
    ANGLE_CHANNELS,
    ANGLE_LIMITS_DEG,
    MOTION_KINDS,
    NOMINAL_RATIOS,
    RATIO_RANGES,
    forward_kinematics,
    joint_rotations,
)
from mvpose.skeleton import H36M17

FPS = 50.0
J = {n: i for i, n in enumerate(H36M17.joint_names)}
BILATERAL = ("thigh", "shank", "upper_arm", "forearm")
# bone (ending at joint) -> ratio key
BONE_RATIO = {
    "right_knee": "right_thigh",
    "left_knee": "left_thigh",
    "right_ankle": "right_shank",
    "left_ankle": "left_shank",
    "right_elbow": "right_upper_arm",
    "left_elbow": "left_upper_arm",
    "right_wrist": "right_forearm",
    "left_wrist": "left_forearm",
    "neck_nose": "neck",
    "head": "head",
}
TRUNK = [J[n] for n in ("pelvis", "spine", "thorax", "neck_nose", "head", "left_hip", "right_hip")]


@functools.cache
def _info(seed: int, kinds: tuple[str, ...] = MOTION_KINDS, frames: int = 1500):
    return generate_motion_with_info(seed, frames, FPS, kinds)


def _bone_lengths(pos: np.ndarray) -> np.ndarray:
    """(T, J) distance of each joint to its parent (0 for the root)."""
    par = np.array([max(p, 0) for p in H36M17.parents])
    return np.linalg.norm(pos - pos[:, par], axis=-1)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between vectors (T, 3) in degrees."""
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _kind_mask(info, kind: str, margin_s: float = 0.3) -> np.ndarray:
    return info.frames_of(kind, margin=int(margin_s * FPS))


# ---------------------------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------------------------


def test_body_ratios_in_documented_ranges_over_many_seeds():
    bodies = [sample_body(s) for s in range(500)]
    statures = np.array([b.stature_mm for b in bodies])
    assert statures.min() >= 1450 and statures.max() <= 1950
    assert abs(statures.mean() - 1700) < 15 and 70 < statures.std() < 100
    for key, (lo, hi) in RATIO_RANGES.items():
        r = np.array([b.ratios[key] for b in bodies])
        assert r.min() >= lo and r.max() <= hi, key
        nominal = NOMINAL_RATIOS[key.removeprefix("left_").removeprefix("right_")]
        assert abs(r.mean() / nominal - 1) < 0.01, key  # centred on the published ratio
        assert r.std() > 0.01 * nominal, key  # and actually varies between people
    # Winter's figures, as documented
    assert NOMINAL_RATIOS["thigh"] == 0.245 and NOMINAL_RATIOS["shank"] == 0.246
    assert NOMINAL_RATIOS["upper_arm"] == 0.186 and NOMINAL_RATIOS["forearm"] == 0.146


def test_body_left_right_symmetric_within_one_percent():
    for s in range(300):
        b = sample_body(s)
        for seg in BILATERAL:
            left, right = b.ratios[f"left_{seg}"], b.ratios[f"right_{seg}"]
            assert abs(left - right) / (0.5 * (left + right)) <= 0.01 + 1e-12
        off = b.rest_offsets_mm()
        for side in ("hip", "shoulder"):
            np.testing.assert_allclose(off[J[f"left_{side}"]] * [1, -1, 1], off[J[f"right_{side}"]])


def test_sample_body_accepts_seed_and_generators():
    a, b = sample_body(7), sample_body(np.random.default_rng(7))
    assert a.stature_mm == b.stature_mm and a.ratios == b.ratios
    t1, t2 = sample_body(torch.Generator().manual_seed(3)), sample_body(torch.Generator().manual_seed(3))
    assert t1.ratios == t2.ratios
    assert sample_body(1).stature_mm != sample_body(2).stature_mm
    with pytest.raises(TypeError):
        sample_body(None)  # type: ignore[arg-type]


def test_rest_pose_heights_follow_winter():
    body = BodyShape.average(1700.0)
    R = np.broadcast_to(np.eye(3), (1, 17, 3, 3))
    pos = forward_kinematics(body.rest_offsets_mm(), R)[0]
    floor = pos[J["left_ankle"], 2] - body.ankle_height_mm
    h = (pos[:, 2] - floor) / 1700.0
    assert h[J["left_knee"]] == pytest.approx(0.285, abs=1e-3)
    assert h[J["left_hip"]] == pytest.approx(0.530, abs=1e-3)
    assert h[J["left_shoulder"]] == pytest.approx(0.818, abs=1e-3)
    assert h[J["left_elbow"]] == pytest.approx(0.632, abs=1e-3)
    assert h[J["left_wrist"]] == pytest.approx(0.486, abs=2e-3)
    assert 0.94 < h[J["head"]] < 0.97
    assert np.linalg.norm(pos[J["left_hip"]] - pos[J["right_hip"]]) == pytest.approx(0.152 * 1700)
    assert pos[J["left_hip"], 1] > 0 and pos[J["left_shoulder"], 1] > 0  # y points to the left


# ---------------------------------------------------------------------------------------------
# Kinematics
# ---------------------------------------------------------------------------------------------


def test_joint_angle_conventions():
    body = BodyShape.average(1700.0)
    a = np.zeros((1, len(ANGLE_CHANNELS)))
    c = {n: i for i, n in enumerate(ANGLE_CHANNELS)}
    a[0, c["left_hip_flexion"]] = 90.0  # thigh forward
    a[0, c["right_knee_flexion"]] = 90.0  # shank backward
    a[0, c["left_shoulder_abduction"]] = 90.0  # arm out to the left
    a[0, c["right_elbow_flexion"]] = 90.0  # forearm forward
    pos = forward_kinematics(body.rest_offsets_mm(), joint_rotations(a, np.zeros(1)))[0]
    thigh = pos[J["left_knee"]] - pos[J["left_hip"]]
    np.testing.assert_allclose(thigh / np.linalg.norm(thigh), [1, 0, 0], atol=1e-12)
    shank = pos[J["right_ankle"]] - pos[J["right_knee"]]
    np.testing.assert_allclose(shank / np.linalg.norm(shank), [-1, 0, 0], atol=1e-12)
    arm = pos[J["left_elbow"]] - pos[J["left_shoulder"]]
    np.testing.assert_allclose(arm / np.linalg.norm(arm), [0, 1, 0], atol=1e-12)
    fore = pos[J["right_wrist"]] - pos[J["right_elbow"]]
    np.testing.assert_allclose(fore / np.linalg.norm(fore), [1, 0, 0], atol=1e-12)
    # heading 90 deg: the body faces +Y
    a[:] = 0
    a[0, c["left_hip_flexion"]] = 90.0
    pos = forward_kinematics(body.rest_offsets_mm(), joint_rotations(a, np.array([90.0])))[0]
    thigh = pos[J["left_knee"]] - pos[J["left_hip"]]
    np.testing.assert_allclose(thigh / np.linalg.norm(thigh), [0, 1, 0], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Generated motion
# ---------------------------------------------------------------------------------------------


def test_motion_metadata():
    m = generate_motion(0, num_frames=120)
    assert isinstance(m, Motion)
    assert m.positions_mm.shape == (120, 17, 3) and m.positions_mm.dtype == np.float64
    assert m.joint_names == H36M17.joint_names and m.parents == H36M17.parents
    assert m.up_axis == "z" and m.fps == 50.0 and m.source == "procedural:seed=0"
    assert np.isfinite(m.positions_mm).all()


def test_deterministic_by_seed():
    a, b = generate_motion(11, 400), generate_motion(11, 400)
    assert np.array_equal(a.positions_mm, b.positions_mm)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert np.array_equal(generate_motion(g1, 200).positions_mm, generate_motion(g2, 200).positions_mm)
    n1, n2 = np.random.default_rng(4), np.random.default_rng(4)
    assert np.array_equal(generate_motion(n1, 200).positions_mm, generate_motion(n2, 200).positions_mm)


def test_different_seeds_differ():
    infos = [_info(s) for s in range(4)]
    for i in range(4):
        for k in range(i + 1, 4):
            assert not np.allclose(infos[i].motion.positions_mm, infos[k].motion.positions_mm)
            assert infos[i].body.stature_mm != infos[k].body.stature_mm
            assert [c.kind for c in infos[i].clips] != [c.kind for c in infos[k].clips]


def test_explicit_body_is_used_and_keeps_the_clip_sequence():
    body = BodyShape.average(1600.0)
    a = generate_motion_with_info(5, 600, body=body)
    b = generate_motion_with_info(5, 600)
    assert a.body is body
    assert [c.kind for c in a.clips] == [c.kind for c in b.clips]
    lengths = _bone_lengths(a.motion.positions_mm)
    np.testing.assert_allclose(lengths[0], body.bone_lengths_mm(), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bone_lengths_constant_and_match_the_body(seed):
    info = _info(seed)
    lengths = _bone_lengths(info.motion.positions_mm)
    assert np.abs(lengths - lengths[0]).max() < 1e-6
    np.testing.assert_allclose(lengths[0], info.body.bone_lengths_mm(), atol=1e-6)
    H = info.body.stature_mm
    for joint, key in BONE_RATIO.items():  # measured on the motion, within the documented ranges
        lo, hi = RATIO_RANGES[key]
        assert lo <= lengths[0, J[joint]] / H <= hi, key
    pos = info.motion.positions_mm[0]
    hip_w = np.linalg.norm(pos[J["left_hip"]] - pos[J["right_hip"]]) / H
    sh_w = np.linalg.norm(pos[J["left_shoulder"]] - pos[J["right_shoulder"]]) / H
    assert RATIO_RANGES["hip_width"][0] <= hip_w <= RATIO_RANGES["hip_width"][1]
    assert RATIO_RANGES["shoulder_width"][0] <= sh_w <= RATIO_RANGES["shoulder_width"][1]


def test_all_primitives_appear():
    kinds = {c.kind for s in range(3) for c in _info(s, frames=3000).clips}
    assert kinds == set(MOTION_KINDS)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_joint_angles_within_anatomical_limits(seed):
    info = _info(seed)
    for name, (lo, hi) in ANGLE_LIMITS_DEG.items():
        col = info.angles_deg[:, ANGLE_CHANNELS.index(name)]
        assert col.min() >= lo - 1e-9 and col.max() <= hi + 1e-9, name
    P = info.motion.positions_mm
    lateral = P[:, J["left_hip"]] - P[:, J["right_hip"]]
    for side in ("left", "right"):
        thigh = P[:, J[f"{side}_knee"]] - P[:, J[f"{side}_hip"]]
        shank = P[:, J[f"{side}_ankle"]] - P[:, J[f"{side}_knee"]]
        knee = _angle_deg(thigh, shank)  # 0 = straight
        assert knee.min() >= 0 and knee.max() <= 140 + 1e-6
        # the knee only bends one way: the shank swings backwards about the pelvis' left axis
        bent = knee > 5
        assert (np.sum(np.cross(thigh, shank) * lateral, -1)[bent] > 0).all()
        upper = P[:, J[f"{side}_elbow"]] - P[:, J[f"{side}_shoulder"]]
        fore = P[:, J[f"{side}_wrist"]] - P[:, J[f"{side}_elbow"]]
        elbow = _angle_deg(upper, fore)
        assert elbow.min() >= 0 and elbow.max() <= 145 + 1e-6
    # the primitives really use the range (not a motion that never bends)
    knees = _angle_deg(
        P[:, J["left_knee"]] - P[:, J["left_hip"]], P[:, J["left_ankle"]] - P[:, J["left_knee"]]
    )
    assert knees.max() > 40


def _step_mm(P: np.ndarray) -> np.ndarray:
    """(T-1, J) per-frame displacement of each joint."""
    return np.linalg.norm(np.diff(P, axis=0), axis=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smooth_walking(seed):
    info = _info(seed, ("walk", "turn"))
    step = _step_mm(info.motion.positions_mm)
    # 60 mm/frame = 3 m/s for the body; a swinging foot peaks at ~3.5x the walking speed
    # (real gait: ~4.5 m/s at 1.4 m/s), so the limbs get 130 mm/frame = 6.5 m/s
    assert step[:, TRUNK].max() < 60
    assert step.max() < 130
    acc = np.linalg.norm(np.diff(info.motion.positions_mm, 2, axis=0), axis=-1)
    assert acc[:, TRUNK].max() < 15  # no jerks: < 37 m/s^2 on the trunk


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smooth_everything(seed):
    info = _info(seed)
    step = _step_mm(info.motion.positions_mm)
    jump = info.frames_of("jump")[1:]
    assert step[~jump].max() < 130
    assert step.max() < 160  # jumps: take-off at ~2.4 m/s plus a fast arm swing
    assert step[:, TRUNK][~jump].max() < 60


@pytest.mark.parametrize("seed", range(6))
def test_walking_speed(seed):
    info = _info(seed, ("walk",), frames=1000)
    root = info.root_mm[:, :2]
    w = int(FPS)  # 1 s windows (about one stride)
    speed = np.linalg.norm(root[w:] - root[:-w], axis=-1) / (w / FPS) / 1000.0
    assert 0.8 < speed.min() and speed.max() < 1.8
    # consistent with step length x cadence of the clips
    p = info.clips[0].params
    expected = p["stride_mm"] * p["stride_hz"] / 1000.0
    clip = info.clips[0]
    inner = speed[clip.start + w // 2 : clip.stop - 3 * w // 2]
    if inner.size:
        assert abs(np.median(inner) - expected) < 0.1 * expected


@pytest.mark.parametrize("seed", range(4))
def test_feet_near_the_floor_and_planted_while_walking(seed):
    info = _info(seed, ("walk", "turn"))
    P = info.motion.positions_mm
    ankles = P[:, [J["left_ankle"], J["right_ankle"]], 2]
    lower = ankles.min(1)
    ah = info.body.ankle_height_mm
    assert lower.min() >= ah - 0.5 and lower.max() <= ah + 70
    assert P[..., 2].min() >= 0.0  # nothing under the floor
    soles = ankles - info.heel_lift_mm  # where the feet meet the floor
    assert np.abs(soles.min(1) - ah).max() < 4.0
    # a foot carrying the body does not slide
    w = info.support_left
    for k, full in ((0, (w[1:] > 0.999) & (w[:-1] > 0.999)), (1, (w[1:] < 0.001) & (w[:-1] < 0.001))):
        ankle = P[:, J[("left_ankle", "right_ankle")[k]], :2]
        slide = np.linalg.norm(np.diff(ankle, axis=0), axis=-1)[full]
        assert full.sum() > 100 and slide.max() < 0.5


@pytest.mark.parametrize("seed", range(4))
def test_standing_primitives_stay_on_the_floor(seed):
    info = _info(seed, ("idle", "reach", "squat"))
    P = info.motion.positions_mm
    lower = P[:, [J["left_ankle"], J["right_ankle"]], 2].min(1)
    ah = info.body.ankle_height_mm
    assert lower.min() >= ah - 0.5 and lower.max() <= ah + 10
    assert P[..., 2].min() >= 0.0
    # feet stay where they are: the ankles move less than 2 cm in total
    for a in ("left_ankle", "right_ankle"):
        assert np.linalg.norm(P[:, J[a], :2] - P[0, J[a], :2], axis=-1).max() < 20


@pytest.mark.parametrize("seed", range(4))
def test_jumps_lift_the_root(seed):
    info = _info(seed, ("jump",))
    z = info.root_mm[:, 2]
    jumps = [c for c in info.clips if c.stop - c.start > 0 and c.stop < len(z)]
    assert jumps
    for c in jumps:
        standing = z[c.start : c.start + 10].mean()
        assert z[c.start : c.stop].max() - standing >= 100
        assert info.flight_mm[c.start : c.stop].max() > 100
    airborne = info.flight_mm > 0
    ankles = info.motion.positions_mm[:, [J["left_ankle"], J["right_ankle"]], 2]
    assert (ankles[airborne].min(1) > info.body.ankle_height_mm + 20).any()
    # in place: the root does not travel horizontally during flights
    r = info.root_mm[:, :2]
    fly = airborne[1:] & airborne[:-1]
    assert np.abs(np.diff(r, axis=0)[fly]).max() == 0.0


def test_other_frame_rates():
    for fps in (25.0, 100.0):
        info = generate_motion_with_info(2, int(8 * fps), fps, ("walk",))
        r = info.root_mm[:, :2]
        speed = np.linalg.norm(r[-1] - r[0]) / 8.0 / 1000.0
        assert 0.8 < speed < 1.8
        assert info.motion.fps == fps


def test_invalid_arguments():
    with pytest.raises(ValueError, match="kinds"):
        generate_motion(0, 10, kinds=("walk", "run"))
    with pytest.raises(ValueError, match="kinds"):
        generate_motion(0, 10, kinds=())
    with pytest.raises(ValueError, match="num_frames"):
        generate_motion(0, 0)
    with pytest.raises(ValueError, match="fps"):
        generate_motion(0, 10, fps=0)
    with pytest.raises(TypeError):
        generate_motion(0, 10, body={"stature_mm": 1700})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        generate_motion("0", 10)  # type: ignore[arg-type]


def test_generation_speed_10k_frames():
    generate_motion(0, 100)  # warm-up
    best = np.inf
    for seed in (1, 2):
        t0 = time.perf_counter()
        m = generate_motion(seed, 10_000)
        best = min(best, time.perf_counter() - t0)
    assert m.positions_mm.shape == (10_000, 17, 3)
    assert best < 1.0, f"10k frames took {best:.3f} s"
