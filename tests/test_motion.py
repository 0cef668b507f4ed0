"""Motion-capture readers (ASF/AMC, BVH), forward kinematics and the H36M-17 map, on the CMU takes in
../shared/data/cmu_mocap (see its README.txt for the figures checked here)."""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mvpose.data.motion import (
    H36M17_NAMES,
    H36M17_PARENTS,
    Motion,
    detect_rig,
    find_asf_for,
    h36m17_notes,
    load_motion,
    motion_to_h36m17,
    read_amc,
    read_asf,
    read_bvh,
)

DATA = Path(__file__).parents[2] / "shared" / "data" / "cmu_mocap"
ASF_AMC = DATA / "asf_amc"
BVH = DATA / "bvh_iclone_ccrig"

needs_data = pytest.mark.skipif(
    not ASF_AMC.is_dir() or not BVH.is_dir(),
    reason=f"CMU mocap sample data not found at {DATA} (shared data folder absent)",
)

AMC_FRAMES = {"07_05-walk": 517, "09_06-run": 141, "16_24": 297, "131_04-dance": 1086}  # README table
BVH_FRAMES = {"002_01": 171, "002_03": 86, "002_04": 241, "005_16": 263, "006_03": 264, "007_05": 259}
BVH_JOINTS = {"002_01": 101, "002_03": 101}  # RL_BoneRoot above CC_Base_Hip; the others have 100


@functools.cache
def amc(name: str) -> Motion:
    return load_motion(ASF_AMC / f"{name}.amc")


@functools.cache
def bvh(name: str, drop_first_frame: bool = True) -> Motion:
    return read_bvh(BVH / f"{name}.bvh", drop_first_frame=drop_first_frame)


def bone_lengths(m: Motion) -> np.ndarray:
    """(T, J-1) distance of every non-root joint to its parent, mm."""
    par = np.array(m.parents)
    child = np.flatnonzero(par >= 0)
    return np.linalg.norm(m.positions_mm[:, child] - m.positions_mm[:, par[child]], axis=-1)


def horizontal_speed(m: Motion, joint: int = 0) -> float:
    """Horizontal (x, z) path length of a joint over the take / duration, m/s (Y-up motion)."""
    xz = m.positions_mm[:, joint][:, [0, 2]]
    return float(np.linalg.norm(np.diff(xz, axis=0), axis=1).sum() / m.duration_s / 1000.0)


def similarity_fit_2d(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    """Best ``dst ~ s R src + t`` (least squares, 2D): scale and per-point residual norms."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    X, Y = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(Y.T @ X)
    d = np.diag([1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ d @ Vt
    s = float((S * np.diag(d)).sum() / (X**2).sum())
    res = Y - s * X @ R.T
    return s, np.linalg.norm(res, axis=1)


# ---------------------------------------------------------------------------------------------------
# Motion container


def test_motion_container_ops():
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(121, 3, 3)) * 100
    m = Motion(("a", "b", "c"), (-1, 0, 1), pos, fps=120.0, up_axis="y", source="x")
    assert (m.num_frames, m.num_joints) == (121, 3)
    z = m.to_z_up()
    assert z.up_axis == "z"
    np.testing.assert_allclose(z.positions_mm[..., 2], pos[..., 1])  # old up is the new up
    np.testing.assert_allclose(z.positions_mm[..., 1], -pos[..., 2])
    # rigid: distances preserved, and it is a rotation (no mirroring)
    np.testing.assert_allclose(bone_lengths(z), bone_lengths(m))
    e = np.eye(3)[None]
    zz = Motion(("a", "b", "c"), (-1, 0, 0), e, fps=1.0, up_axis="y").to_z_up().positions_mm[0]
    assert np.isclose(np.linalg.det(zz), 1.0)
    assert z.to_z_up() is z
    r = m.resample(60)
    assert r.num_frames == 61 and r.fps == 60.0
    np.testing.assert_allclose(r.positions_mm, pos[::2])
    r3 = m.resample(40)  # 120 -> 40 exact: every third frame
    np.testing.assert_allclose(r3.positions_mm, pos[::3])
    up = m.slice(0, 3).resample(240)
    np.testing.assert_allclose(up.positions_mm[1], (pos[0] + pos[1]) / 2)
    s = m.slice(10, 20)
    assert s.num_frames == 10 and np.array_equal(s.positions_mm, pos[10:20])
    with pytest.raises(ValueError, match="parent"):
        Motion(("a", "b"), (-1, 5), pos[:, :2], fps=10.0)
    with pytest.raises(ValueError, match="positions_mm"):
        Motion(("a", "b"), (-1, 0), pos, fps=10.0)


# ---------------------------------------------------------------------------------------------------
# ASF / AMC


@needs_data
def test_amc_frames_joints_fps():
    for name, frames in AMC_FRAMES.items():
        m = amc(name)
        assert m.num_frames == frames, name
        assert m.num_joints == 31 and m.joint_names[0] == "root" and m.parents[0] == -1
        assert m.fps == 120.0 and m.up_axis == "y"
        assert m.positions_mm.dtype == np.float64


@needs_data
def test_find_asf_by_subject():
    assert find_asf_for(ASF_AMC / "07_05-walk.amc").name == "07-walk.asf"
    assert find_asf_for(ASF_AMC / "16_24.amc").name == "16.asf"
    assert find_asf_for(ASF_AMC / "131_04-dance.amc").name == "131-dance.asf"


@needs_data
def test_amc_bone_lengths_constant_and_equal_to_asf():
    for name in AMC_FRAMES:
        m = amc(name)
        L = bone_lengths(m)
        assert np.ptp(L, axis=0).max() < 1e-6, name
        skel = read_asf(find_asf_for(ASF_AMC / f"{name}.amc"))
        expect = np.array([skel.lengths_mm()[n] for n in m.joint_names[1:]])
        np.testing.assert_allclose(L[0], expect, rtol=1e-9)
    # one ASF unit is 1/0.45 inch
    skel = read_asf(ASF_AMC / "07-walk.asf")
    assert skel.mm_per_unit == pytest.approx(25.4 / 0.45)


@needs_data
def test_amc_feet_on_floor_and_root_height():
    for name in AMC_FRAMES:
        y = amc(name).positions_mm[..., 1]
        assert -80.0 <= y.min() <= 30.0, (name, y.min())  # README: -0.06 .. 0.01 m
    root_y = amc("07_05-walk").positions_mm[:, 0, 1]
    assert 850 < root_y.min() and root_y.max() < 1020  # README: 0.88-0.99 m


@needs_data
def test_amc_root_speeds():
    assert horizontal_speed(amc("07_05-walk")) == pytest.approx(0.97, rel=0.10)
    assert horizontal_speed(amc("09_06-run")) == pytest.approx(3.61, rel=0.10)


# ---------------------------------------------------------------------------------------------------
# BVH


@needs_data
def test_bvh_frames_joints_units():
    for name, frames in BVH_FRAMES.items():
        full = read_bvh(BVH / f"{name}.bvh", include_end_sites=False)
        assert full.num_frames == frames and full.fps == 60.0, name
        assert full.num_joints == BVH_JOINTS.get(name, 100)
        m = bvh(name)
        assert m.num_frames == frames - 1
        assert m.num_joints == full.num_joints + 41  # 41 End Sites
        cols = [m.index(n) for n in full.joint_names]
        assert all(m.joint_names[j].endswith("_end") for j in set(range(m.num_joints)) - set(cols))
        np.testing.assert_array_equal(m.positions_mm[:, cols], full.positions_mm[1:])
    # centimetres inferred: the same as giving 10 mm per unit; T-pose hips about 1.05 m high
    cm = read_bvh(BVH / "007_05.bvh", scale_to_mm=10.0)
    inferred = bvh("007_05", False)
    np.testing.assert_array_equal(cm.positions_mm, inferred.positions_mm)
    assert 1000 < inferred.positions_mm[0, inferred.index("CC_Base_Hip"), 1] < 1100


@needs_data
def test_bvh_bone_lengths_constant():
    for name in BVH_FRAMES:
        L = bone_lengths(bvh(name, False))
        assert np.ptp(L, axis=0).max() < 1e-6, name


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bvh_channel_orders_and_end_sites(tmp_path):
    # root with rotations before positions, a child with 6 channels in X Y Z rotation order
    f = _write(
        tmp_path / "t.bvh",
        """HIERARCHY
ROOT A
{
  OFFSET 0 0 0
  CHANNELS 6 Yrotation Xposition Yposition Zposition Xrotation Zrotation
  JOINT B
  {
    OFFSET 0 2 0
    CHANNELS 6 Xrotation Yrotation Zrotation Xposition Yposition Zposition
    End Site
    {
      OFFSET 0 0 3
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
0 1 2 3 0 0   0 0 0 0 0 0
90 1 2 3 0 90   90 0 0 0 1 0
""",
    )
    m = read_bvh(f, scale_to_mm=1.0)
    assert m.joint_names == ("A", "B", "B_end") and m.parents == (-1, 0, 1) and m.fps == 2.0
    np.testing.assert_allclose(m.positions_mm[0], [[1, 2, 3], [1, 4, 3], [1, 4, 6]], atol=1e-12)

    def rot(axis, deg):
        from mvpose.data.motion.types import axis_rotation

        return axis_rotation(axis, np.deg2rad(deg))

    RA = rot("y", 90) @ rot("z", 90)  # channel order Y then (X=0) then Z
    pB = np.array([1, 2, 3]) + RA @ np.array([0, 3, 0])  # offset (0,2,0) + position channels (0,1,0)
    pE = pB + RA @ rot("x", 90) @ np.array([0, 0, 3])
    np.testing.assert_allclose(m.positions_mm[1], [[1, 2, 3], pB, pE], atol=1e-9)
    assert read_bvh(f, scale_to_mm=1.0, include_end_sites=False).joint_names == ("A", "B")


# ---------------------------------------------------------------------------------------------------
# Same take in both formats


@needs_data
def test_07_05_bvh_matches_amc():
    b, a = bvh("007_05"), amc("07_05-walk")
    hip = b.positions_mm[:, b.index("CC_Base_Hip")]
    root = a.positions_mm[::2, 0][: len(hip)]  # BVH frame k (T-pose dropped) <-> AMC frame 2k
    assert len(root) == len(hip) == 258
    s, res = similarity_fit_2d(hip[:, [0, 2]], root[:, [0, 2]])
    rms = float(np.sqrt((res**2).mean()))
    assert rms < 30.0, rms  # README: 9 mm
    assert s == pytest.approx(0.862, abs=0.02)  # the avatar is larger than subject 7
    assert np.corrcoef(hip[:, 1], root[:, 1])[0, 1] > 0.98  # README: 0.995
    # resampling the AMC to 60 fps gives the same frames
    np.testing.assert_allclose(a.resample(60).positions_mm[: len(hip), 0], root)


# ---------------------------------------------------------------------------------------------------
# Human3.6M-17


def test_h36m_names():
    assert H36M17_NAMES == (
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist",
        "right_shoulder", "right_elbow", "right_wrist",
    )  # fmt: skip
    assert len(H36M17_PARENTS) == 17
    for rig in ("cmu_asf", "cc_rig"):
        notes = h36m17_notes(rig)
        assert list(notes) == list(H36M17_NAMES) and all(notes.values())
        assert "approximation" in notes["head"] and "approximation" in notes["spine"]


# adult human ranges, mm, of joint-centre distances (wider than the brief's, which the ASF lengths
# themselves exceed: subject 7's left femur is 391 mm, subject 16's forearm 318 mm)
LIMB_RANGES = {
    "thigh": (370.0, 520.0),
    "shin": (370.0, 520.0),
    "upper_arm": (230.0, 340.0),
    "forearm": (240.0, 330.0),
}
LIMBS = {
    "thigh": [("right_hip", "right_knee"), ("left_hip", "left_knee")],
    "shin": [("right_knee", "right_ankle"), ("left_knee", "left_ankle")],
    "upper_arm": [("right_shoulder", "right_elbow"), ("left_shoulder", "left_elbow")],
    "forearm": [("right_elbow", "right_wrist"), ("left_elbow", "left_wrist")],
}


def _check_h36m(m: Motion, rig: str) -> None:
    assert detect_rig(m) == rig
    h = motion_to_h36m17(m)
    assert h.shape == (m.num_frames, 17, 3) and np.isfinite(h).all()
    ix = {n: i for i, n in enumerate(H36M17_NAMES)}

    def dist(a, b):
        return np.linalg.norm(h[:, ix[a]] - h[:, ix[b]], axis=-1)

    for limb, pairs in LIMBS.items():
        lo, hi = LIMB_RANGES[limb]
        sides = [dist(a, b) for a, b in pairs]
        for d in sides:
            assert np.ptp(d) < 1e-6  # rigid limbs
            assert lo <= d.mean() <= hi, (m.source, limb, d.mean())
        assert abs(sides[0].mean() / sides[1].mean() - 1) < 0.08, (m.source, limb)  # left/right symmetry
    assert 120 <= dist("left_hip", "right_hip").mean() <= 320
    np.testing.assert_allclose(h[:, 0], (h[:, ix["left_hip"]] + h[:, ix["right_hip"]]) / 2)
    # upright over the take: head above thorax above pelvis above knees above ankles (Y up)
    y = h[..., 1]
    order = ["head", "thorax", "spine", "pelvis"]
    for upper, lower in zip(order, order[1:]):
        assert (y[:, ix[upper]] > y[:, ix[lower]]).mean() > 0.99, (m.source, upper, lower)
    low_ankle = np.minimum(y[:, ix["left_ankle"]], y[:, ix["right_ankle"]])
    assert np.median(y[:, ix["pelvis"]] - low_ankle) > 600, m.source  # standing leg mostly straight


@needs_data
def test_h36m_from_amc():
    for name in AMC_FRAMES:
        _check_h36m(amc(name), "cmu_asf")


@needs_data
def test_h36m_from_cc_rig_bvh():
    for name in BVH_FRAMES:
        _check_h36m(bvh(name), "cc_rig")


def test_h36m_unknown_rig():
    m = Motion(("a",), (-1,), np.zeros((2, 1, 3)), fps=1.0, source="foo.bvh")
    with pytest.raises(ValueError, match="foo.bvh"):
        motion_to_h36m17(m)


# ---------------------------------------------------------------------------------------------------
# Malformed files


def _line_of(path: Path):
    return re.escape(str(path)) + r":\d+"


@needs_data
def test_amc_truncated_frame(tmp_path):
    src = (ASF_AMC / "07_05-walk.amc").read_text().splitlines()
    cut = _write(tmp_path / "07_05-walk.amc", "\n".join(src[:-5]) + "\n")  # last frame lacks 5 bones
    shutil.copy(ASF_AMC / "07-walk.asf", tmp_path / "07-walk.asf")
    with pytest.raises(ValueError, match=_line_of(cut) + ".*frame 517 lacks"):
        load_motion(cut)
    half = _write(tmp_path / "07_05-walk.amc", "\n".join(src[:-1]) + "\n" + src[-1].rsplit(" ", 1)[0] + "\n")
    with pytest.raises(ValueError, match=_line_of(half) + ".*expected"):
        load_motion(half)


@needs_data
def test_amc_unknown_bone(tmp_path):
    text = (ASF_AMC / "16_24.amc").read_text().replace("lhand ", "lpaw ", 1)
    bad = _write(tmp_path / "16_24.amc", text)
    with pytest.raises(ValueError, match=_line_of(bad) + ".*unknown bone 'lpaw'"):
        read_amc(bad, ASF_AMC / "16.asf")


@needs_data
def test_amc_missing_asf_names_file(tmp_path):
    lone = tmp_path / "99_01-jump.amc"
    shutil.copy(ASF_AMC / "16_24.amc", lone)
    with pytest.raises(FileNotFoundError, match=re.escape(str(lone))):
        load_motion(lone)
    assert load_motion(lone, asf=ASF_AMC / "16.asf").num_frames == 297


@needs_data
def test_bvh_bad_channel_count(tmp_path):
    text = (BVH / "007_05.bvh").read_text()
    lines = text.splitlines()
    k = next(i for i, s in enumerate(lines) if "CC_Base_Pelvis" in s) + 3  # its CHANNELS line
    assert "CHANNELS 3" in lines[k]
    lines[k] = lines[k].replace("CHANNELS 3", "CHANNELS 4")
    bad = _write(tmp_path / "bad.bvh", "\n".join(lines))
    with pytest.raises(ValueError, match=re.escape(f"{bad}:{k + 1}:") + ".*CHANNELS 4"):
        read_bvh(bad)
    lines = text.splitlines()
    lines[-1] = lines[-1].rsplit(" ", 3)[0]  # last frame short of 3 values
    short = _write(tmp_path / "short.bvh", "\n".join(lines))
    with pytest.raises(ValueError, match=re.escape(f"{short}:{len(lines)}:") + ".*declares 303 channels"):
        read_bvh(short)


def test_bvh_unknown_units(tmp_path):
    f = _write(
        tmp_path / "tiny.bvh",
        "HIERARCHY\nROOT A\n{\nOFFSET 0 0 0\nCHANNELS 3 Xposition Yposition Zposition\n"
        "End Site\n{\nOFFSET 0 10 0\n}\n}\nMOTION\nFrames: 1\nFrame Time: 0.1\n0 0 0\n",
    )
    with pytest.raises(ValueError, match="scale_to_mm"):
        read_bvh(f)
    assert read_bvh(f, scale_to_mm="in").positions_mm[0, 1, 1] == pytest.approx(254.0)


def test_load_motion_bad_extension(tmp_path):
    f = _write(tmp_path / "x.c3d", "")
    with pytest.raises(ValueError, match=re.escape(str(f))):
        load_motion(f)
