"""Calibration writers and round trips, the synthetic ring rig, the shipped calib/ files, and the
MPI-INF-3DHP text reader on a sample written from the format description."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

from mvpose.calib import FORMATS, CalibrationError, load_rig, ring_rig, save_rig
from mvpose.geometry.camera import CameraRig
from mvpose.geometry.rotations import nearest_rotation

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


def assert_rigs_close(a, b, atol=1e-9):
    assert a.names == b.names
    assert a.distortion_model == b.distortion_model
    for f in ("K", "R", "t", "dist"):
        err = float((getattr(a, f) - getattr(b, f)).abs().max())
        assert err <= atol, f"{f} differs by {err}"
    assert (a.image_size is None) == (b.image_size is None)
    if a.image_size is not None:
        assert torch.equal(a.image_size, b.image_size)


def _sources():
    """Rigs to round-trip: synthetic ones always, real ones when the shared data is present."""
    rigs = {
        "ring": lambda: ring_rig(),
        "ring3_odd": lambda: ring_rig(3, radius_mm=2500.5, image_size=(641, 479)),
    }
    if DATA.is_dir():
        rigs.update(
            {
                "pose2sim": lambda: load_rig(DATA / "pose2sim_demo" / "calibration" / "Calib_qualisys.toml"),
                "panoptic_hd": lambda: load_rig(
                    DATA / "other_calibrations" / "calibration_160906_band1.json", types="hd"
                ),
                "trackmesh": lambda: load_rig(
                    DATA / "other_calibrations" / "easymocap_trackmesh", image_size=(1920, 1080)
                ),
                "h36m_S9": lambda: load_rig(DATA / "h36m_cameras" / "cameras.h5", subject="S9"),
                "shelf": lambda: load_rig(DATA / "shelf_campus" / "shelf.json"),
            }
        )
    return rigs


WRITABLE = {"mvpose-json": "rig.json", "toml": "rig.toml", "easymocap": "easymocap_dir"}


def test_formats_table():
    assert {n for n, f in FORMATS.items() if f.writable} == set(WRITABLE)
    assert {"qualisys", "panoptic", "h36m-h5", "3dhp", "mmpose-pkl"} <= set(FORMATS)


@pytest.mark.parametrize("fmt", list(WRITABLE))
@pytest.mark.parametrize("source", list(_sources()))
def test_round_trip(tmp_path, fmt, source):
    """load -> save -> load -> save -> load: the two loaded-from-our-files rigs agree to 1e-9, and the
    first save loses nothing beyond rounding of the format (Rodrigues for TOML)."""
    rig = _sources()[source]()
    approx = rig.distortion_model == "h36m" and fmt != "mvpose-json"
    kw = {"allow_approximate": True} if approx else {}
    p1, p2 = tmp_path / ("a_" + WRITABLE[fmt]), tmp_path / ("b_" + WRITABLE[fmt])
    save_rig(rig, p1, **kw)
    once = load_rig(p1)
    save_rig(once, p2)
    twice = load_rig(p2)
    assert_rigs_close(once, twice, atol=1e-9)
    assert once.names == rig.names and torch.equal(once.image_size, rig.image_size)
    if approx:
        assert once.distortion_model == "opencv" and torch.equal(once.dist, rig.dist)  # P1 = p[0], P2 = p[1]
        return
    if fmt == "toml":
        # R goes through a Rodrigues vector: rounded matrices (Shelf, trackmesh: ~1e-6 off) come back as
        # their nearest rotation, exact ones unchanged
        ortho = (rig.R @ rig.R.transpose(-1, -2) - torch.eye(3, dtype=rig.dtype)).abs().amax((-1, -2)) < 1e-12
        rig = replace(rig, R=torch.where(ortho[:, None, None], rig.R, nearest_rotation(rig.R)))
    assert_rigs_close(once, rig, atol=1e-9)


def test_json_keeps_h36m_model_and_extras(tmp_path):
    rig = load_rig(DATA / "h36m_cameras" / "cameras.h5", subject="S1") if DATA.is_dir() else None
    if rig is None:
        pytest.skip("shared data not found")
    save_rig(rig, tmp_path / "h.json")
    import json

    cam = json.loads((tmp_path / "h.json").read_text())["cameras"][0]
    assert cam["dist"] is None and cam["distortion_model"] == "h36m"
    assert cam["radial"] == [rig.dist[0, 0].item(), rig.dist[0, 1].item(), rig.dist[0, 4].item()]
    assert cam["tangential"] == [rig.dist[0, 2].item(), rig.dist[0, 3].item()]
    assert cam["h36m_index"] == 1 and len(cam["camera_center_world_mm"]) == 3
    back = load_rig(tmp_path / "h.json")
    assert back.meta["cameras"]["54138969"]["h36m_index"] == 1


def test_multi_rig_json(tmp_path):
    rigs = {"A": ring_rig(4), "B": ring_rig(6, radius_mm=3000)}
    save_rig(rigs, tmp_path / "multi.json")
    with pytest.raises(CalibrationError, match="subject"):
        load_rig(tmp_path / "multi.json")
    for k, r in rigs.items():
        assert_rigs_close(load_rig(tmp_path / "multi.json", subject=k), r)
    with pytest.raises(CalibrationError, match="mvpose-json"):
        save_rig(rigs, tmp_path / "multi.toml")


@needs_data
@pytest.mark.parametrize("fmt", ["toml", "easymocap"])
def test_h36m_to_opencv_formats_needs_allow_approximate(tmp_path, fmt, caplog):
    rig = load_rig(DATA / "h36m_cameras" / "cameras.h5", subject="S1")
    out = tmp_path / ("r.toml" if fmt == "toml" else "ym")
    with pytest.raises(CalibrationError) as e:
        save_rig(rig, out)
    assert (
        "distortion_model" in str(e.value)
        and "allow_approximate" in str(e.value)
        and out.name in str(e.value)
    )
    with caplog.at_level(logging.WARNING, logger="mvpose.calib"):
        save_rig(rig, out, allow_approximate=True)
    assert "approximate" in caplog.text


def test_toml_layout_is_pose2sims(tmp_path):
    rig = ring_rig(3)
    save_rig(rig, tmp_path / "c.toml")
    with open(tmp_path / "c.toml", "rb") as f:
        doc = tomllib.load(f)
    assert list(doc) == ["cam_01", "cam_02", "cam_03", "metadata"]
    cam = doc["cam_01"]
    assert cam["name"] == "cam_01" and cam["size"] == [1920, 1080] and cam["fisheye"] is False
    assert len(cam["distortions"]) == 4  # k3 = 0: Pose2Sim's four coefficients
    C = -rig.R[0].T @ rig.t[0]
    R = rig.R[0].numpy()
    assert np.allclose(-R.T @ np.array(cam["translation"]), C.numpy() / 1000.0)  # metres
    save_rig(rig, tmp_path / "mm.toml", translation_unit="mm")
    assert_rigs_close(load_rig(tmp_path / "mm.toml", translation_unit="mm"), rig)


def test_toml_in_mm_read_as_metres_warns(tmp_path, caplog):
    save_rig(ring_rig(), tmp_path / "mm.toml", translation_unit="mm")
    with caplog.at_level(logging.WARNING, logger="mvpose.calib"):
        load_rig(tmp_path / "mm.toml")
    assert "translation_unit='mm'" in caplog.text


def test_easymocap_writes_loadable_pair(tmp_path):
    import cv2

    rig = ring_rig(2)
    save_rig(rig, tmp_path / "cams")
    fs = cv2.FileStorage(str(tmp_path / "cams" / "extri.yml"), cv2.FILE_STORAGE_READ)
    T = fs.getNode("T_cam_01").mat()
    assert T.shape == (3, 1) and np.allclose(T[:, 0] * 1000.0, rig.t[0].numpy())
    assert np.allclose(cv2.Rodrigues(fs.getNode("R_cam_01").mat())[0], rig.R[0].numpy(), atol=1e-12)
    fs.release()
    # either file of the pair may be named, for reading and for writing
    save_rig(rig, tmp_path / "other" / "intri.yml")
    assert_rigs_close(load_rig(tmp_path / "other" / "extri.yml"), rig)


def test_writers_refuse_what_they_cannot_store(tmp_path):
    rig = ring_rig(2)
    no_size = CameraRig(K=rig.K, R=rig.R, t=rig.t, dist=rig.dist, names=rig.names)
    with pytest.raises(CalibrationError, match="size"):
        save_rig(no_size, tmp_path / "x.toml")
    with pytest.raises(CalibrationError, match="batched"):
        save_rig(rig.expand(2), tmp_path / "x.json")
    with pytest.raises(CalibrationError, match="read-only"):
        save_rig(rig, tmp_path / "x.h5", format="h36m-h5")
    with pytest.raises(CalibrationError, match="output format"):
        save_rig(rig, tmp_path / "x.csv")
    bad_names = CameraRig(K=rig.K, R=rig.R, t=rig.t, names=("a b", "c"), image_size=rig.image_size)
    with pytest.raises(CalibrationError, match="names"):
        save_rig(bad_names, tmp_path / "ym")
    save_rig(no_size, tmp_path / "ns.json")
    assert load_rig(tmp_path / "ns.json").image_size is None


# ----------------------------------------------------------------------------------------- ring rig
def test_ring_rig_geometry():
    rig = ring_rig()
    assert len(rig) == 8 and rig.names[0] == "cam_01" and rig.image_size.tolist() == [[1920, 1080]] * 8
    C = rig.centers()
    assert torch.allclose(C[:, 2], torch.full((8,), 2000.0, dtype=C.dtype))
    assert torch.allclose(C[:, :2].norm(dim=-1), torch.full((8,), 4000.0, dtype=C.dtype))
    # the target projects to the principal point of every camera, the origin below it
    uv = rig.project(torch.tensor([[0.0, 0.0, 1000.0], [0.0, 0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(uv[:, 0], rig.K[:, :2, 2], atol=1e-9)
    assert (uv[:, 1, 1] > uv[:, 0, 1]).all()  # world Z up -> image y down
    eye = torch.eye(3, dtype=rig.dtype)
    assert torch.allclose(rig.R @ rig.R.transpose(-1, -2), eye.expand(8, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(rig.R), torch.ones(8, dtype=rig.dtype))


# ----------------------------------------------------------------------------------------- shipped calib/
def test_example_studio_is_ring_rig():
    path = REPO / "calib" / "example_studio.toml"
    assert_rigs_close(load_rig(path), ring_rig(), atol=1e-9)


def test_shipped_h36m_json():
    path = REPO / "calib" / "h36m_cameras.json"
    for s in ("S1", "S5", "S6", "S7", "S8", "S9", "S11"):
        rig = load_rig(path, subject=s)
        assert rig.distortion_model == "h36m" and len(rig) == 4
        if DATA.is_dir():
            assert_rigs_close(rig, load_rig(DATA / "h36m_cameras" / "cameras.h5", subject=s), atol=1e-12)


# ----------------------------------------------------------------------------------------- MPI-INF-3DHP text
# Written from the layout in shared/data/other_calibrations/README.txt: camera 0 is the published
# example block (same numbers as mmpose's pickle), camera 1 that pickle's train camera 1.
SKELETOOL = """Skeletool Camera Calibration File V1.0
name          0
  sensor      10 10
  size        2048 2048
  animated    0
  intrinsic   1497.693 0 1024.704 0 0 1497.103 1051.394 0 0 0 1 0 0 0 0 1
  extrinsic   {E0}
  radial      0
name          1
  sensor      10 10
  size        2048 2048
  animated    0
  intrinsic   1495.217 0 1030.519 0 0 1495.52 1052.626 0 0 0 1 0 0 0 0 1
  extrinsic   {E1}
  radial      0
""".format(
    E0="0.9650164 0.00488022 0.262144 -562.8666 -0.004488356 -0.9993728 0.0351275 1398.138 "
    "0.262151 -0.03507521 -0.9643893 3852.623 0 0 0 1",
    E1="0.6050639 -0.02184232 0.7958773 -1429.856 -0.22647 -0.9630526 0.1457429 738.1779 "
    "0.7632883 -0.2684261 -0.587655 4897.966 0 0 0 1",
)


def test_3dhp_text(tmp_path):
    path = tmp_path / "camera.calibration"
    path.write_text(SKELETOOL)
    rig = load_rig(path)
    assert rig.names == ("cam_0", "cam_1") and rig.image_size.tolist() == [[2048, 2048]] * 2
    assert rig.K[0].tolist() == [[1497.693, 0.0, 1024.704], [0.0, 1497.103, 1051.394], [0.0, 0.0, 1.0]]
    assert rig.t[0].tolist() == [-562.8666, 1398.138, 3852.623]  # mm, as stored
    assert rig.meta["cameras"]["cam_1"] == {
        "mpi_inf_3dhp_camera_index": 1,
        "sensor": "10 10",
        "animated": "0",
    }
    if DATA.is_dir():
        pkl = load_rig(DATA / "other_calibrations" / "mpi_inf_3dhp_cameras_train.pkl", subject="S1/Seq1")
        assert_rigs_close(rig, pkl.select(["cam_0", "cam_1"]), atol=1e-9)
    # content sniffing without the usual file name
    other = tmp_path / "calib_S1"
    other.write_text(SKELETOOL)
    assert load_rig(other).names == rig.names
    bad = tmp_path / "bad.calibration"
    bad.write_text(
        SKELETOOL.replace("radial      0\nname          1", "radial      2 0.1 0.01\nname          1")
    )
    with pytest.raises(CalibrationError, match=r"bad.calibration.*camera 0.radial"):
        load_rig(bad)


def test_toml_and_json_keep_unusual_names(tmp_path):
    rig = ring_rig(3, names=('cam "A"', "ü b\\c", "tab\there"))
    for name in ("odd.toml", "odd.json"):
        save_rig(rig, tmp_path / name)
        assert_rigs_close(load_rig(tmp_path / name), rig)
