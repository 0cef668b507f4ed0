"""P-STMO's MPI-INF-3DHP npz files: layout, units, joint order, valid masks, PCK/AUC, unsafe and bad files.

The files are written here exactly as P-STMO's ``data_to_npz_3dhp.py`` / ``data_to_npz_3dhp_test.py``
write them: ``np.savez_compressed(path, data=dict)`` (a pickled 0-d object array), 28 annotated joints
reduced with ``MPI3DHP28_TO_17``, cameras as string keys, ``[cameras, fps]`` per training sequence,
``valid`` as float 0/1 flags (h5py reads MATLAB doubles).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from mvpose.data.sequences import (
    MPI3DHP_TRAIN_CAMERAS,
    MPI3DHPSequences,
    SequenceFileError,
    evaluate_3dhp,
    read_3dhp_npz,
    read_3dhp_test_npz,
    read_3dhp_train_npz,
)
from mvpose.metrics import auc, pck
from mvpose.skeleton import MPI3DHP17, MPI3DHP28, MPI3DHP28_TO_17


def _pose28(rng, T, depth=4000.0):
    """Camera-frame 28-joint poses (mm) around a pelvis at ``depth``, and their pinhole pixels."""
    x = rng.normal(0.0, 300.0, size=(T, 28, 3)) + np.array([0.0, 0.0, depth])
    px = 1500.0 * x[..., :2] / x[..., 2:] + 1024.0
    return px, x


def _write_train(path, rng, T=12):
    data, truth = {}, {}
    for seq, fps in (("S1 Seq1", 25), ("S2 Seq2", 50)):
        cams = {}
        for cam in ("0", "2", "8"):
            px, x = _pose28(rng, T)
            truth[(*seq.split(), cam)] = (px, x)
            cams[cam] = {"data_2d": px[:, MPI3DHP28_TO_17], "data_3d": x[:, MPI3DHP28_TO_17]}
        data[seq] = [cams, fps]
    np.savez_compressed(path, data=data)
    return truth


def _write_test(path, rng, lengths=None, drop=()):
    data, truth = {}, {}
    for name, T in (lengths or {"TS1": 10, "TS5": 8}).items():
        px, x = _pose28(rng, T)
        valid = np.ones(T)
        valid[[1, T - 2]] = 0.0  # two invalid frames per sequence
        entry = {"data_2d": px[:, MPI3DHP28_TO_17], "data_3d": x[:, MPI3DHP28_TO_17], "valid": valid}
        for k in drop:
            entry.pop(k)
        data[name] = entry
        truth[name] = (px[:, MPI3DHP28_TO_17], x[:, MPI3DHP28_TO_17], valid.astype(bool))
    np.savez_compressed(path, data=data)
    return truth


def test_train_layout_units_and_joint_order(tmp_path):
    path = tmp_path / "data_train_3dhp.npz"
    truth = _write_train(path, np.random.default_rng(0))
    ts = read_3dhp_train_npz(path)
    assert isinstance(ts, MPI3DHPSequences) and ts.split == "train" and len(ts) == 6
    assert ts.subjects() == ["S1", "S2"] and ts.actions("S2") == ["Seq2"]
    assert [it.camera for it in ts.items(subjects=["S1"])] == ["0", "2", "8"]
    assert set(MPI3DHP_TRAIN_CAMERAS) >= {"0", "2", "8"}
    pelvis, head_top = MPI3DHP17.index("pelvis"), MPI3DHP17.index("head_top")
    assert ts.skeleton is MPI3DHP17 and MPI3DHP17.root == pelvis == 14
    for it in ts.items():
        px, x = truth[it.key]
        # mm in, mm out (no scaling), float64, camera frame, MPI3DHP17 order
        assert it.positions_camera.dtype == np.float64 and it.keypoints_2d.dtype == np.float64
        np.testing.assert_array_equal(it.positions_camera[:, pelvis], x[:, MPI3DHP28.index("pelvis")])
        np.testing.assert_array_equal(it.positions_camera[:, head_top], x[:, MPI3DHP28.index("head_top")])
        np.testing.assert_array_equal(it.keypoints_2d, px[:, MPI3DHP28_TO_17])
        assert it.image_size == (2048, 2048) and it.valid.all() and it.camera_index == int(it.camera)
        assert it.positions_world is None and it.rig is None
    assert ts.items(subjects=["S2"])[0].fps == 50.0
    # P-STMO's left/right lists are MPI3DHP17's
    assert MPI3DHP17.left_indices == (5, 6, 7, 11, 12, 13) and MPI3DHP17.right_indices == (2, 3, 4, 8, 9, 10)
    # a file in metres is read as mm with unit="m"; 28-joint arrays are reduced like the converter
    np.savez_compressed(
        tmp_path / "m.npz",
        data={"S1 Seq1": [{"0": {"data_2d": truth[("S1", "Seq1", "0")][0], "data_3d": x / 1000.0}}, 25]},
    )
    it = read_3dhp_train_npz(tmp_path / "m.npz", unit="m").items()[0]
    np.testing.assert_allclose(it.positions_camera, x[:, MPI3DHP28_TO_17], rtol=1e-12)


def test_train_windows_are_pstmo_targets(tmp_path):
    path = tmp_path / "data_train_3dhp.npz"
    _write_train(path, np.random.default_rng(1), T=9)
    ts = read_3dhp_npz(path)  # auto-detects the training layout
    ds = ts.windows(receptive_field=3, subjects=["S1"], cameras=["2"])
    it = ts.items(subjects=["S1"], cameras=["2"])[0]
    s = ds[4]
    y = it.positions_camera[4]
    np.testing.assert_allclose(s["target"][0, 14].numpy(), y[14], rtol=1e-6)  # root trajectory
    np.testing.assert_allclose(s["target"][0, :14].numpy(), y[:14] - y[14], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(s["input"][1].numpy(), it.keypoints_2d[4] / 1024.0 - 1.0, rtol=1e-5, atol=1e-6)


def test_test_layout_valid_mask_and_image_sizes(tmp_path):
    path = tmp_path / "data_test_3dhp.npz"
    truth = _write_test(path, np.random.default_rng(2))
    ts = read_3dhp_npz(path)  # auto-detects the test layout
    assert ts.split == "test" and ts.subjects() == ["TS1", "TS5"]
    for it in ts.items():
        kp, x, valid = truth[it.subject]
        assert it.valid.dtype == bool
        np.testing.assert_array_equal(it.valid, valid)
        np.testing.assert_array_equal(it.positions_camera, x)
        np.testing.assert_array_equal(it.keypoints_2d, kp)
    ts1, ts5 = ts.items()
    assert ts1.image_size == (2048, 2048) and ts5.image_size == (1920, 1080)
    ts5_centre = dataclasses.replace(ts5, keypoints_2d=np.full((1, 17, 2), [960.0, 540.0]))
    np.testing.assert_allclose(ts5_centre.normalised_2d(), 0.0, atol=1e-12)


def test_evaluate_honours_valid_frames_and_matches_the_scorer(tmp_path):
    path = tmp_path / "data_test_3dhp.npz"
    _write_test(path, np.random.default_rng(3))
    ts = read_3dhp_test_npz(path)
    wrist = MPI3DHP17.index("left_wrist")
    preds = {}
    for it in ts.items():
        p = it.positions_camera + np.array([5.0, -7.0, 300.0])  # root-relative: translation is free
        p[:, wrist, 0] += 200.0  # one joint off by 200 mm on every frame
        p[~it.valid] = 1e6  # garbage on invalid frames must not count
        preds[it.subject] = p
    r = evaluate_3dhp(preds, ts)
    n1, n5 = (int(it.valid.sum()) for it in ts.items())
    assert r["overall"]["frames"] == n1 + n5 and r["per_sequence"]["TS1"]["frames"] == n1
    assert r["root"] == "pelvis" and len(r["joints"]) == 14 and "spine" not in r["joints"]
    np.testing.assert_allclose(r["overall"]["PCK"], 100.0 * 13 / 14)
    # AUC: an exact joint passes 30 of the 31 thresholds (0 is strict), the 200 mm one none
    np.testing.assert_allclose(r["overall"]["AUC"], 100.0 * (13 * 30 / 31) / 14)
    np.testing.assert_allclose(r["overall"]["MPJPE"], 200.0 / 17)
    r17 = evaluate_3dhp(preds, ts, joints="all")
    np.testing.assert_allclose(r17["overall"]["PCK"], 100.0 * 16 / 17)
    # without the mask the garbage frames count
    p_all = np.concatenate([preds[it.subject] for it in ts.items()])
    q_all = np.concatenate([it.positions_camera for it in ts.items()])
    assert evaluate_3dhp(p_all, q_all)["overall"]["PCK"] < r["overall"]["PCK"]
    # array form with labels == set form; per-sequence rows and a frame-weighted overall
    v_all = np.concatenate([it.valid for it in ts.items()])
    labels = sum(([it.subject] * it.num_frames for it in ts.items()), [])
    r_arr = evaluate_3dhp(torch.from_numpy(p_all), q_all, v_all, sequences=labels)
    assert r_arr["overall"] == pytest.approx(r["overall"])
    for name in ("TS1", "TS5"):
        assert r_arr["per_sequence"][name] == pytest.approx(r["per_sequence"][name])


def test_evaluate_equals_mvpose_metrics_on_valid_frames(tmp_path):
    rng = np.random.default_rng(4)
    q = rng.normal(0.0, 300.0, size=(20, 17, 3))
    p = q + rng.normal(0.0, 80.0, size=q.shape)
    valid = rng.random(20) > 0.3
    labels = ["TS1"] * 12 + ["TS6"] * 8
    r = evaluate_3dhp(p, q, valid, sequences=labels)
    pr, qr = p - p[:, 14:15], q - q[:, 14:15]
    sel = valid[:, None] & (np.arange(17) < 14)[None]
    assert r["overall"]["PCK"] == pytest.approx(float(pck(pr, qr, 150.0, sel)))
    assert r["overall"]["AUC"] == pytest.approx(float(auc(pr, qr, sel)))
    m1 = sel & (np.arange(20) < 12)[:, None]
    assert r["per_sequence"]["TS1"]["PCK"] == pytest.approx(float(pck(pr, qr, 150.0, m1)))
    w = np.array([r["per_sequence"][s]["frames"] for s in ("TS1", "TS6")])
    per = np.array([r["per_sequence"][s]["PCK"] for s in ("TS1", "TS6")])
    assert r["overall"]["PCK"] == pytest.approx(float((w * per).sum() / w.sum()))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_loading_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_test_3dhp.npz"
    np.savez(path, data=np.array({"TS1": {"valid": _Evil(marker)}}, dtype=object))
    with pytest.raises(SequenceFileError) as e:
        read_3dhp_test_npz(path)
    assert str(path) in str(e.value) and "'data'" in str(e.value) and "system" in str(e.value)
    assert not marker.exists()


def test_malformed_files_name_the_file_and_the_key(tmp_path):
    rng = np.random.default_rng(5)
    bad = tmp_path / "no_valid.npz"
    _write_test(bad, rng, drop=("valid",))
    with pytest.raises(SequenceFileError, match=r"no_valid\.npz.*data\['TS1'\]\['valid'\].*missing"):
        read_3dhp_test_npz(bad)
    no_data = tmp_path / "no_data.npz"
    np.savez(no_data, positions_3d=np.zeros(3))
    with pytest.raises(SequenceFileError, match=r"no_data\.npz.*key 'data'.*missing"):
        read_3dhp_npz(no_data)
    train = tmp_path / "data_train_3dhp.npz"
    np.savez_compressed(train, data={"S1 Seq1": [{"0": {"data_2d": np.zeros((4, 17, 2))}}, 25]})
    with pytest.raises(SequenceFileError, match=r"data\['S1 Seq1'\]\[0\]\['0'\]\['data_3d'\].*missing"):
        read_3dhp_train_npz(train)
    _write_train(train, rng)
    with pytest.raises(SequenceFileError, match="training file"):
        read_3dhp_test_npz(train)
    short = tmp_path / "short.npz"
    kp, x = np.zeros((5, 17, 2)), np.zeros((5, 17, 3))
    np.savez_compressed(short, data={"TS2": {"data_2d": kp, "data_3d": x, "valid": np.ones(4)}})
    with pytest.raises(SequenceFileError, match=r"short\.npz.*data\['TS2'\]\['valid'\].*\(5,\)"):
        read_3dhp_test_npz(short)
    joints = tmp_path / "joints.npz"
    np.savez_compressed(joints, data={"TS2": {"data_2d": kp[:, :16], "data_3d": x, "valid": np.ones(5)}})
    with pytest.raises(SequenceFileError, match=r"data\['TS2'\]\['data_2d'\].*17 joints"):
        read_3dhp_test_npz(joints)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_3dhp_npz(tmp_path / "missing.npz")
