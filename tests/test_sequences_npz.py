"""VideoPose3D npz layouts: round trips, the 32 -> 17 joint selection, the restricted loader, errors."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

from mvpose.calib import ring_rig
from mvpose.data.sequences import (
    H36M32_KEPT_JOINTS,
    VP3D_H36M_METADATA,
    SequenceFileError,
    SequenceSet,
    flip_indices_from_symmetry,
    h36m17_to_32,
    h36m32_to_17,
    load_npz,
    read_positions_2d,
    read_positions_3d,
    write_positions_2d,
    write_positions_3d,
)
from mvpose.skeleton import H36M17


def _world(rng, T=30, J=17):
    return rng.normal(0.0, 500.0, size=(T, J, 3)) + np.array([0.0, 0.0, 1000.0])


def test_3d_round_trip_mm_and_metres(tmp_path):
    rng = np.random.default_rng(0)
    data = {"S1": {"Walking": _world(rng, 30), "Sitting 1": _world(rng, 12)}, "S9": {"x": _world(rng, 5)}}
    path = write_positions_3d(tmp_path / "data_3d_t.npz", data)
    raw = load_npz(path)["positions_3d"]
    # stored as VideoPose3D does: 32 joints, metres
    assert raw["S1"]["Walking"].shape == (30, 32, 3)
    np.testing.assert_array_equal(
        raw["S1"]["Walking"][:, list(H36M32_KEPT_JOINTS)], data["S1"]["Walking"] / 1000.0
    )
    back = read_positions_3d(path)
    assert set(back) == {"S1", "S9"} and set(back["S1"]) == {"Walking", "Sitting 1"}
    for s, acts in data.items():
        for a, arr in acts.items():
            assert back[s][a].shape == arr.shape and back[s][a].dtype == np.float64
            np.testing.assert_array_equal(back[s][a], raw[s][a][:, list(H36M32_KEPT_JOINTS)] * 1000.0)
            np.testing.assert_allclose(back[s][a], arr, rtol=1e-14, atol=1e-10)
    # 17 joints as given
    p17 = write_positions_3d(tmp_path / "d17.npz", data, joints32=False)
    assert load_npz(p17)["positions_3d"]["S9"]["x"].shape == (5, 17, 3)
    np.testing.assert_allclose(read_positions_3d(p17)["S9"]["x"], data["S9"]["x"], rtol=1e-14, atol=1e-10)


def test_reads_a_file_written_the_videopose3d_way(tmp_path):
    """np.savez_compressed(positions_3d=dict) / (positions_2d=dict, metadata=dict), float32 2D."""
    rng = np.random.default_rng(1)
    pos32 = rng.normal(size=(8, 32, 3))
    np.savez_compressed(tmp_path / "data_3d_h36m.npz", positions_3d={"S1": {"Walking 1": pos32}})
    kps = [rng.uniform(0, 1000, (8, 17, 2)).astype(np.float32) for _ in range(4)]
    meta = {
        "layout_name": "h36m",
        "num_joints": 17,
        "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]],
    }
    np.savez_compressed(
        tmp_path / "data_2d_h36m_gt.npz", positions_2d={"S1": {"Walking 1": kps}}, metadata=meta
    )
    p3 = read_positions_3d(tmp_path / "data_3d_h36m.npz")
    np.testing.assert_array_equal(p3["S1"]["Walking 1"], pos32[:, list(H36M32_KEPT_JOINTS)] * 1000.0)
    p2, m, conf = read_positions_2d(tmp_path / "data_2d_h36m_gt.npz")
    assert m == meta and conf is None
    for a, b in zip(p2["S1"]["Walking 1"], kps):
        np.testing.assert_array_equal(a, b.astype(np.float64))
    # the loader agrees with numpy's unrestricted one on a benign file
    ref = np.load(tmp_path / "data_2d_h36m_gt.npz", allow_pickle=True)
    ours = load_npz(tmp_path / "data_2d_h36m_gt.npz")
    assert ours["metadata"] == ref["metadata"].item()
    # VideoPose3D's symmetry lists are H36M17's flip
    assert flip_indices_from_symmetry(*meta["keypoints_symmetry"], 17) == H36M17.flip_indices


def test_joint_selection_is_videopose3ds():
    # VideoPose3D removes these 15 of the 32 Human3.6M joints
    removed = [4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31]
    assert list(H36M32_KEPT_JOINTS) == [j for j in range(32) if j not in removed]
    x = np.arange(32)[None, :, None].repeat(3, -1).astype(float)
    np.testing.assert_array_equal(h36m32_to_17(x)[0, :, 0], H36M32_KEPT_JOINTS)
    y = np.random.default_rng(0).normal(size=(4, 17, 3))
    np.testing.assert_array_equal(h36m32_to_17(h36m17_to_32(y)), y)
    assert VP3D_H36M_METADATA["keypoints_symmetry"] == [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]


def test_2d_round_trip_identical(tmp_path):
    rng = np.random.default_rng(2)
    kps = {"S1": {"a": [rng.uniform(0, 1920, (10, 17, 2)) for _ in range(3)]}}
    kps["S1"]["a"][1][3, 4] = np.nan
    conf = {"S1": {"a": [rng.uniform(0, 1, (10, 17)).astype(np.float32) for _ in range(3)]}}
    meta = dict(VP3D_H36M_METADATA, extra={"w": 1920})
    path = write_positions_2d(tmp_path / "d2.npz", kps, meta, confidence=conf)
    back, m, c = read_positions_2d(path)
    assert m == meta
    for v in range(3):
        np.testing.assert_array_equal(back["S1"]["a"][v], kps["S1"]["a"][v])
        np.testing.assert_array_equal(c["S1"]["a"][v], conf["S1"]["a"][v])


def test_sequence_set_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    rig = ring_rig(3)
    world = {"S1": {"walk": _world(rng, 20)}}
    ss = SequenceSet(world, rigs=rig, fps=50.0).project_2d()
    p3, p2 = ss.save(tmp_path / "data_3d_x.npz", tmp_path / "data_2d_x_gt.npz")
    back = SequenceSet.from_npz(p3, p2)
    assert back.subjects() == ["S1"] and back.actions("S1") == ["walk"] and back.fps == 50.0
    assert back.camera_names("S1") == list(rig.names)
    r = back.rig("S1")
    for k in ("K", "R", "t", "dist", "image_size"):
        np.testing.assert_array_equal(getattr(r, k).numpy(), getattr(rig, k).numpy())
    for a, b in zip(back.items(), ss.items()):
        assert a.key == b.key and a.image_size == (1920, 1080)
        np.testing.assert_array_equal(a.keypoints_2d, b.keypoints_2d)
        np.testing.assert_allclose(a.positions_world, b.positions_world, rtol=1e-14, atol=1e-10)
        np.testing.assert_allclose(a.positions_camera, b.positions_camera, rtol=1e-12, atol=1e-9)
        cam = rig.R[a.camera_index].numpy() @ b.positions_world[..., None]
        np.testing.assert_allclose(a.positions_camera, cam[..., 0] + rig.t[a.camera_index].numpy(), atol=1e-9)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_loader_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    np.savez(path, positions_3d=np.array([_Evil(marker)], dtype=object))
    with pytest.raises(SequenceFileError) as e:
        read_positions_3d(path)
    msg = str(e.value)
    assert str(path) in msg and "positions_3d" in msg and "system" in msg and "not allowed" in msg
    assert not marker.exists()
    with pytest.raises(SequenceFileError):
        load_npz(path)
    assert not marker.exists()


def test_errors_name_file_and_key(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        read_positions_3d(missing)
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(SequenceFileError, match="junk.npz.*not an .npz archive"):
        read_positions_2d(junk)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, poses=np.zeros((3, 17, 3)))
    with pytest.raises(SequenceFileError) as e:
        read_positions_3d(wrong)
    assert "wrong.npz" in str(e.value) and "'positions_3d'" in str(e.value) and "metres" in str(e.value)
    with pytest.raises(SequenceFileError) as e:
        read_positions_2d(wrong)
    assert "wrong.npz" in str(e.value) and "'positions_2d'" in str(e.value)
    shape = tmp_path / "shape.npz"
    np.savez(shape, positions_3d={"S1": {"a": np.zeros((3, 17, 2))}})
    with pytest.raises(SequenceFileError, match=r"shape.npz.*positions_3d\['S1'\]\['a'\].*\(T, J, 3\)"):
        read_positions_3d(shape)
    notdict = tmp_path / "notdict.npz"
    np.savez(notdict, positions_3d=np.zeros((3, 17, 3)))
    with pytest.raises(SequenceFileError, match="notdict.npz.*positions_3d.*expected a dict"):
        read_positions_3d(notdict)
    notlist = tmp_path / "notlist.npz"
    np.savez(notlist, positions_2d={"S1": {"a": np.zeros((3, 17, 2))}}, metadata={})
    with pytest.raises(SequenceFileError, match=r"notlist.npz.*positions_2d\['S1'\]\['a'\].*one per camera"):
        read_positions_2d(notlist)
    trunc = tmp_path / "trunc.npz"
    write_positions_3d(trunc, {"S1": {"a": np.zeros((50, 17, 3))}})
    with zipfile.ZipFile(trunc) as zf:
        blob = zf.read("positions_3d.npy")
    with zipfile.ZipFile(trunc, "w") as zf:
        zf.writestr("positions_3d.npy", blob[: len(blob) // 2])
    with pytest.raises(SequenceFileError, match="trunc.npz.*positions_3d.*unreadable"):
        read_positions_3d(trunc)
