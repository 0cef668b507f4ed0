"""Motion exports (mvpose.export) and `mvpose export`: every format written and read back, Pose2Sim's
own TRC read and rewritten with the same header, BVH rotations checked by forward kinematics
through mvpose's BVH reader."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mvpose.data.motion import read_bvh
from mvpose.errors import FileFieldError
from mvpose.export import (
    Trajectories,
    joint_names_from_markers,
    pose2sim_marker_name,
    read,
    read_bvh_trajectories,
    read_c3d,
    read_json,
    read_npz,
    read_trc,
    tpose_directions,
    write,
    write_bvh,
    write_c3d,
    write_json,
    write_npz,
    write_trc,
)
from mvpose.export.bvh import bvh_axes
from mvpose.geometry.rotations import euler_to_matrix
from mvpose.skeleton import BODY25B, H36M17, get_skeleton

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
P2S_TRC = DATA / "pose2sim_demo" / "pose-3d" / "Balancing_for_IK.trc"
CMU_BVH = DATA / "cmu_mocap" / "bvh_iclone_ccrig" / "007_05.bvh"
needs_p2s = pytest.mark.skipif(not P2S_TRC.is_file(), reason=f"Pose2Sim demo TRC not found at {P2S_TRC}")
needs_cmu = pytest.mark.skipif(not CMU_BVH.is_file(), reason=f"CMU BVH not found at {CMU_BVH}")


def _traj(T: int = 30, J: int = 4, seed: int = 0, holes: bool = True) -> Trajectories:
    rng = np.random.default_rng(seed)
    pts = rng.normal(0, 800, (T, J, 3)) + [0, 0, 1000]
    filled = np.zeros((T, J), bool)
    if holes:
        pts[3:6, 1] = np.nan
        pts[10, :] = np.nan
        filled[7:9, 2] = True
    names = ("right_hip", "left_knee", "neck", "head_top", "x5", "x6")[:J]
    return Trajectories(
        pts,
        names,
        60.0,
        frame_indices=np.arange(100, 100 + T),
        skeleton="body25b",
        filled=filled,
        meta={"note": "test"},
    )


def _assert_same(a: Trajectories, b: Trajectories, atol: float, names=None):
    assert b.joint_names == (names or a.joint_names)
    assert b.fps == pytest.approx(a.fps)
    assert np.array_equal(b.frame_indices, a.frame_indices)
    assert np.array_equal(np.isnan(b.points_mm), np.isnan(a.points_mm))
    np.testing.assert_allclose(b.points_mm, a.points_mm, atol=atol, equal_nan=True)


# --------------------------------------------------------------------------------------------
# JSON, NPZ
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("units", ["mm", "m"])
def test_json_and_npz_round_trip(tmp_path, units):
    tr = _traj()
    for ext, writer, reader, atol in (
        ("json", write_json, read_json, 1e-3),
        ("npz", write_npz, read_npz, 1e-9),
    ):
        path = writer(tmp_path / f"m.{ext}", tr, units=units)
        back = reader(path)
        _assert_same(tr, back, atol=atol if units == "mm" else 1.0 if ext == "json" else 1e-9)
        assert (
            back.skeleton == "body25b"
            and np.array_equal(back.filled, tr.filled)
            and back.meta == {"note": "test"}
        )
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["format"] == "mvpose-motion/1" and doc["units"] == units and doc["fps"] == 60.0
    frame = doc["frames"][3]
    assert frame["frame"] == 103 and frame["time"] == pytest.approx(103 / 60) and frame["points"][1] is None
    assert all(p is None for p in doc["frames"][10]["points"])


def test_json_npz_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "format": "mvpose-motion/1",
                "units": "mm",
                "fps": 30,
                "joint_names": ["a"],
                "frames": [{"frame": 0, "points": [[1, 2]]}],
            }
        )
    )
    with pytest.raises(FileFieldError, match=r"bad.json.*frames\[0\]\.points\[0\]"):
        read_json(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(FileFieldError, match="format"):
        read_json(bad)
    np.savez(tmp_path / "bad.npz", format=np.asarray("mvpose-motion/1"), points=np.zeros((2, 1, 3)))
    with pytest.raises(FileFieldError, match="'units'"):
        read_npz(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "none.trc")
    with pytest.raises(ValueError, match="unknown motion format"):
        write(tmp_path / "x.fbx", _traj())


# --------------------------------------------------------------------------------------------
# TRC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("units", "axes", "names"), [("m", "opensim", "joint"), ("mm", "world", "pose2sim")])
def test_trc_round_trip(tmp_path, units, axes, names):
    tr = _traj()
    path = write_trc(tmp_path / "m.trc", tr, units=units, axes=axes, marker_names=names)
    back = read_trc(path, axes=axes)
    expected = tr.joint_names if names == "joint" else ("RHip", "LKnee", "Neck", "Head")
    _assert_same(tr, back, atol=1e-4, names=expected)
    assert joint_names_from_markers(back.joint_names, BODY25B.joint_names) == tr.joint_names
    rows = path.read_text().splitlines()
    assert rows[5].startswith("1\t0\t") is False and rows[5].startswith("101\t")  # Frame# = index + 1
    assert rows[5 + 3].split("\t")[5:8] == ["", "", ""]  # missing marker: empty cells
    if axes == "opensim":  # (X, Y, Z)_trc = (Y, Z, X)_world in metres
        x, y, z = (float(v) for v in rows[5].split("\t")[2:5])
        np.testing.assert_allclose([z, x, y], tr.points_mm[0, 0] / 1000, atol=1e-8)


@needs_p2s
def test_trc_reads_pose2sim_and_writes_the_same_layout(tmp_path):
    p2s = read_trc(P2S_TRC)
    assert p2s.num_frames == 100 and p2s.num_joints == 21 and p2s.fps == 60.0
    assert p2s.joint_names[:3] == ("RHip", "RKnee", "RAnkle") and np.array_equal(
        p2s.frame_indices, np.arange(100)
    )
    # first row, RHip: (X, Y, Z) = (-0.06499776880731584, 0.9015132201416929, -1.4005735926016618) m
    np.testing.assert_allclose(
        p2s.points_mm[0, 0], [-1400.5735926016618, -64.99776880731584, 901.5132201416929]
    )
    # the subject stands on the calibration's Z-up ground: feet low, head high
    z = p2s.points_mm[..., 2]
    assert (
        np.median(z[:, p2s.joint_names.index("Head")])
        > np.median(z[:, p2s.joint_names.index("RHeel")]) + 1200
    )
    names = joint_names_from_markers(p2s.joint_names, BODY25B.joint_names)
    assert names[12:15] == ("neck", "head_top", "nose")
    ours = write_trc(tmp_path / "ours.trc", p2s.replace(joint_names=names), marker_names="pose2sim")
    theirs_lines, ours_lines = P2S_TRC.read_text().splitlines(), ours.read_text().splitlines()
    assert ours_lines[0].split("\t")[:3] == theirs_lines[0].split("\t")[:3]
    assert ours_lines[1:5] == theirs_lines[1:5]  # keys, values, marker names, X1 Y1 Z1 ...
    theirs = np.array([[float(v) for v in r.split("\t")] for r in theirs_lines[5:]])
    mine = np.array([[float(v) for v in r.split("\t")] for r in ours_lines[5:]])
    assert np.array_equal(mine[:, 0], theirs[:, 0])  # Frame#
    np.testing.assert_allclose(mine[:, 1], theirs[:, 1] - 1 / 60, atol=1e-9)  # our Time starts at 0
    np.testing.assert_allclose(mine[:, 2:], theirs[:, 2:], atol=1e-8)


def test_trc_errors_name_the_field(tmp_path):
    path = write_trc(tmp_path / "m.trc", _traj())
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("\t4\tm\t", "\t5\tm\t")
    (tmp_path / "bad.trc").write_text("\n".join(lines))
    with pytest.raises(FileFieldError, match=r"bad.trc.*'NumMarkers'"):
        read_trc(tmp_path / "bad.trc")
    (tmp_path / "bad.trc").write_text("\n".join(lines[:-1]).replace("\t5\tm\t", "\t4\tm\t"))
    with pytest.raises(FileFieldError, match="'NumFrames'"):
        read_trc(tmp_path / "bad.trc")
    assert (
        pose2sim_marker_name("left_small_toe") == "LSmallToe"
        and pose2sim_marker_name("head", ["head"]) == "Head"
    )
    assert pose2sim_marker_name("head_top", ["head", "head_top"]) == "HeadTop"


# --------------------------------------------------------------------------------------------
# C3D
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("units", ["mm", "m"])
def test_c3d_round_trip(tmp_path, units):
    import c3d

    tr = _traj()
    path = write_c3d(tmp_path / "m.c3d", tr, units=units)
    back = read_c3d(path)
    _assert_same(tr, back, atol=5e-4 * np.nanmax(np.abs(tr.points_mm)) / 1000 + 1e-3)  # float32
    assert back.meta["c3d_units"] == units
    with warnings.catch_warnings(), open(path, "rb") as f:
        warnings.simplefilter("ignore")
        reader = c3d.Reader(f)
        assert reader.point_rate == 60.0 and reader.first_frame == 101 and reader.frame_count == 30
        assert reader.get("POINT:Y_SCREEN").string_value.strip() == "+Z"
        frames = [p.copy() for _, p, _ in reader.read_frames(check_nan=False)]
    assert frames[4][1, 3] == -1 and np.array_equal(frames[4][1, :3], [0, 0, 0])  # missing: zeros, -1
    assert frames[0][1, 3] == 0 and frames[0][1, 4] == 0


# --------------------------------------------------------------------------------------------
# BVH
# --------------------------------------------------------------------------------------------


def _rigid_motion(skeleton: str, T: int = 120, seed: int = 0, vary_mm: float = 0.0) -> Trajectories:
    """Forward kinematics of smooth random joint rotations on the T-pose rest skeleton (Z-up world).
    Children of a branching joint keep their rest arrangement; ``vary_mm`` wobbles bone lengths."""
    sk = get_skeleton(skeleton)
    rng = np.random.default_rng(seed)
    dirs = tpose_directions(sk.joint_names, sk.parents)
    length = rng.uniform(60, 450, sk.num_joints)
    t = np.arange(T)[:, None, None] / 60.0
    angles = 0.7 * np.sin(
        2 * np.pi * rng.uniform(0.2, 1.0, (1, sk.num_joints, 3)) * t
        + rng.uniform(0, 6, (1, sk.num_joints, 3))
    )
    R = euler_to_matrix(torch.from_numpy(angles), "xyz").numpy()
    wobble = 1.0 + vary_mm / length * np.sin(2 * np.pi * rng.uniform(0.5, 2.0, sk.num_joints) * t[:, :, 0])
    pos, glob = np.zeros((T, sk.num_joints, 3)), np.zeros_like(R)
    done = {sk.root}
    pos[:, sk.root] = np.stack([300 * np.sin(t[:, 0, 0]), 900 + 0 * t[:, 0, 0], 100 * t[:, 0, 0]], -1)
    glob[:, sk.root] = R[:, sk.root]
    while len(done) < sk.num_joints:
        for j, p in enumerate(sk.parents):
            if j not in done and p in done:
                pos[:, j] = pos[:, p] + glob[:, p] @ (length[j] * dirs[j]) * wobble[:, j, None]
                glob[:, j] = glob[:, p] @ R[:, j]
                done.add(j)
    return Trajectories(pos @ bvh_axes("z"), sk.joint_names, 60.0, skeleton=sk.name)  # BVH axes -> world


def _read_back(path, names) -> np.ndarray:
    """Joint positions from mvpose's BVH reader (its own forward kinematics), in the Z-up world."""
    motion = read_bvh(path, scale_to_mm="infer", include_end_sites=False).to_z_up()
    return motion.positions_mm[:, [motion.index(n) for n in names]]


@pytest.mark.parametrize(
    ("skeleton", "branches", "order"),
    [
        ("h36m17", "kabsch", "zxy"),
        ("h36m17", "split", "zyx"),
        ("body25b", "kabsch", "xyz"),
        ("coco17", "split", "zxy"),
    ],
)
def test_bvh_forward_kinematics_reproduces_rigid_motion(tmp_path, skeleton, branches, order):
    tr = _rigid_motion(skeleton)
    sol = write_bvh(tmp_path / "m.bvh", tr, branches=branches, euler_order=order)
    err = np.linalg.norm(_read_back(tmp_path / "m.bvh", tr.joint_names) - tr.points_mm, axis=-1)
    assert err.max() < 1e-3, err.max()  # < 1 um: rounding of the text file only
    assert np.nanmax(sol.errors_mm) < 1e-6 and not sol.held.any()
    text = (tmp_path / "m.bvh").read_text()
    rot = " ".join(f"{a.upper()}rotation" for a in order)
    assert f"CHANNELS 6 Xposition Yposition Zposition {rot}" in text and f"CHANNELS 3 {rot}" in text
    n_split = int(sol.virtual.sum())
    assert text.count("JOINT ") + 1 == get_skeleton(skeleton).num_joints + n_split
    assert (n_split > 0) == (branches == "split")
    back = read_bvh_trajectories(tmp_path / "m.bvh")
    assert back.fps == 60.0 and set(tr.joint_names) <= set(back.joint_names)


def test_bvh_varying_bone_lengths(tmp_path):
    """Bone lengths that change over time: constant OFFSETs cannot follow them (the error is what
    the solution reports); stretch channels can (exact)."""
    tr = _rigid_motion("h36m17", vary_mm=15.0, seed=1)
    sol = write_bvh(tmp_path / "m.bvh", tr)
    err = np.linalg.norm(_read_back(tmp_path / "m.bvh", tr.joint_names) - tr.points_mm, axis=-1)
    np.testing.assert_allclose(
        err, sol.errors_mm[:, [sol.skeleton_joints.index(n) for n in tr.joint_names]], atol=1e-3
    )
    # directions are exact, so a joint is off by at most its chain's length deviations from the median
    parents = H36M17.parents
    length = np.linalg.norm(tr.points_mm[:, 1:] - tr.points_mm[:, list(parents[1:])], axis=-1)
    deviation = np.concatenate([np.zeros((tr.num_frames, 1)), np.abs(length - np.median(length, 0))], 1)
    bound = np.zeros_like(err)
    for j in range(1, 17):
        k = j
        while k != 0:
            bound[:, j] += deviation[:, k]
            k = parents[k]
    assert np.median(err) > 1.0 and (err <= bound + 1e-3).all()
    sol = write_bvh(tmp_path / "s.bvh", tr, stretch=True)
    err = np.linalg.norm(_read_back(tmp_path / "s.bvh", tr.joint_names) - tr.points_mm, axis=-1)
    assert (
        err.max() < 1e-3 and "CHANNELS 6 Xposition" in (tmp_path / "s.bvh").read_text().split("JOINT", 2)[1]
    )


@needs_cmu
def test_bvh_of_real_motion_split_vs_kabsch(tmp_path):
    """CMU walk mapped to H36M-17 (bones constant to 1 mm): one rotation at the thorax cannot follow
    the shoulders relative to the neck (cm errors); split joints can (mm)."""
    from mvpose.data.motion import load_motion, motion_to_h36m17

    motion = load_motion(CMU_BVH, drop_first_frame=True).to_z_up()
    tr = Trajectories(motion_to_h36m17(motion), H36M17.joint_names, motion.fps, skeleton="h36m17")
    errors = {}
    for branches in ("kabsch", "split"):
        write_bvh(tmp_path / f"{branches}.bvh", tr, branches=branches, units="m")
        errors[branches] = np.linalg.norm(
            _read_back(tmp_path / f"{branches}.bvh", tr.joint_names) - tr.points_mm, axis=-1
        )
    assert errors["split"].max() < 5.0 and np.median(errors["split"]) < 0.5
    assert np.percentile(errors["kabsch"], 95) > 30.0


@needs_p2s
def test_bvh_from_pose2sim_trc_with_gaps(tmp_path):
    tr = read_trc(P2S_TRC)  # Pose2Sim marker names, 21 of BODY_25B's joints (no eyes, ears)
    pts = tr.points_mm.copy()
    pts[40:43, tr.joint_names.index("LWrist")] = np.nan
    sol = write_bvh(tmp_path / "m.bvh", tr.replace(points_mm=pts), stretch=True)
    assert sol.skeleton_joints[0] == "neck" and "left_eye" not in sol.skeleton_joints
    assert sol.held[40:43].any() and not sol.held[:40].any()
    names = joint_names_from_markers(tr.joint_names, BODY25B.joint_names)
    err = np.linalg.norm(_read_back(tmp_path / "m.bvh", names) - pts, axis=-1)
    assert np.nanmax(err) < 1e-3  # exact with split joints and stretch channels
    no_knee = tr.select([n for n in tr.joint_names if n != "RKnee"])
    with pytest.raises(ValueError, match="'right_ankle' is in the data but its parent 'right_knee' is not"):
        write_bvh(tmp_path / "x.bvh", no_knee, skeleton="body25b")
    with pytest.raises(ValueError, match="no built-in skeleton"):
        write_bvh(tmp_path / "x.bvh", no_knee)


# --------------------------------------------------------------------------------------------
# mvpose export
# --------------------------------------------------------------------------------------------


def _cli(argv) -> int:
    from mvpose.commands import export

    parser = argparse.ArgumentParser(prog="mvpose")
    export.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", *map(str, argv)])
    return args.func(args)


def _result_file(tmp_path) -> Path:
    from mvpose.pipeline.triangulate import TriangulationResult, write_result

    tr = _rigid_motion("h36m17", T=80)
    pts = tr.points_mm.copy()
    pts[20:24, 5] = np.nan  # short gap: filled
    pts[50:70, 13] = np.nan  # long gap: reported
    T, V, J = 80, 2, 17
    res = TriangulationResult(
        points_3d_mm=pts,
        reprojection_error_px=np.zeros((T, V, J)),
        views_used=np.ones((T, V, J), bool),
        person_index=np.zeros((T, V), np.int64),
        joint_names=H36M17.joint_names,
        camera_names=("cam_01", "cam_02"),
        frame_indices=np.arange(T),
        skeleton="h36m17",
        settings={"method": "dlt"},
    )
    return write_result(res, tmp_path / "points3d.npz")


@pytest.mark.parametrize("fmt", ["json", "npz", "trc", "c3d", "bvh"])
def test_cli_export(tmp_path, capsys, fmt):
    src = _result_file(tmp_path)
    out = tmp_path / f"out.{fmt}"
    assert (
        _cli([src, "--fps", 50, "--out", out, "--filter", "butterworth", "--cutoff-hz", 8, "--max-gap", 5])
        == 0
    )
    text = capsys.readouterr().out
    assert (
        "filled 1 (4 joint-frames" in text and "left_wrist" in text and "50-69 (longer than max_gap)" in text
    )
    assert f"written to {out} ({fmt}" in text
    if fmt == "bvh":
        assert "forward kinematics vs input" in text
        return
    back = read(out)
    assert back.fps == 50.0 and back.num_frames == 80
    names = joint_names_from_markers(back.joint_names, H36M17.joint_names)
    assert names == H36M17.joint_names
    assert np.isfinite(back.points_mm[20:24, 5]).all() and np.isnan(back.points_mm[50:70, 13]).all()
    if fmt in ("json", "npz"):
        assert back.filled[20:24, 5].all() and back.filled.sum() == 4
        assert back.meta["export"]["filter"] == "butterworth"


def test_cli_export_needs_fps_and_reads_motion_files(tmp_path, capsys):
    src = _result_file(tmp_path)
    with pytest.raises(ValueError, match="--fps"):
        _cli([src, "--out", tmp_path / "x.trc"])
    write_trc(tmp_path / "in.trc", _traj(holes=False))
    assert (
        _cli([tmp_path / "in.trc", "--out", tmp_path / "o.json", "--filter", "oneeuro", "--units", "m"]) == 0
    )
    back = read_json(tmp_path / "o.json")
    assert back.fps == 60.0 and back.joint_names == _traj().joint_names
    assert "filter: oneeuro" in capsys.readouterr().out
