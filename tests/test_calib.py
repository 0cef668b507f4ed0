"""Calibration readers on the real files of ../shared/data: every file loads, the sources agree with
the mvpose JSON conversions shipped next to them, and real labels reproject."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tomllib
import torch

from mvpose.calib import CalibrationError, detect_format, load_rig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")

H36M = DATA / "h36m_cameras"
OTHER = DATA / "other_calibrations"
P2S = DATA / "pose2sim_demo"
H36M_SUBJECTS = ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]


def assert_rigs_close(a, b, atol=1e-6, sizes=True):
    assert a.names == b.names
    assert a.distortion_model == b.distortion_model
    for f in ("K", "R", "t", "dist"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.shape == y.shape, f
        err = float((x - y).abs().max())
        assert err <= atol, f"{f} differs by {err}"
    if sizes:
        assert (a.image_size is None) == (b.image_size is None)
        if a.image_size is not None:
            assert torch.equal(a.image_size, b.image_size)


def mvpose_json_files():
    out = []
    for p in sorted(DATA.rglob("*.json")) if DATA.is_dir() else []:
        try:
            with open(p) as f:
                head = f.read(200)
        except OSError:
            continue
        if '"mvpose-rig/' in head:
            out.append(p)
    return out


# ----------------------------------------------------------------------------------------- every file loads
@pytest.mark.parametrize("path", mvpose_json_files(), ids=lambda p: p.name)
def test_every_mvpose_json_loads(path):
    with open(path) as f:
        doc = json.load(f)
    subjects = list(doc["rigs"]) if "rigs" in doc else [None]
    for s in subjects:
        rig = load_rig(path, subject=s)
        assert detect_format(path) == "mvpose-json"
        body = doc["rigs"][s] if s else doc
        assert rig.names == tuple(str(c["name"]) for c in body["cameras"])
        assert rig.dtype == torch.float64
        eye = torch.eye(3, dtype=rig.dtype)
        assert float((rig.R @ rig.R.transpose(-1, -2) - eye).abs().max()) < 1e-4


def test_multi_rig_json_needs_subject():
    with pytest.raises(CalibrationError) as e:
        load_rig(H36M / "h36m_cameras.json")
    msg = str(e.value)
    assert "h36m_cameras.json" in msg and "subject" in msg and "S11" in msg
    assert load_rig(H36M / "h36m_cameras.json", subject=9).meta["subject"] == "S9"


def test_all_files_detected():
    expected = {
        P2S / "calibration" / "Calib_qualisys.toml": "toml",
        P2S / "calibration" / "Calib.qca.txt": "qualisys",
        OTHER / "calibration_160906_band1.json": "panoptic",
        OTHER / "calibration_160906_band1.mvpose.json": "mvpose-json",
        OTHER / "easymocap_anerf": "easymocap",
        OTHER / "easymocap_trackmesh" / "extri.yml": "easymocap",
        H36M / "cameras.h5": "h36m-h5",
        H36M / "cameras.pkl": "mmpose-pkl",
        OTHER / "mpi_inf_3dhp_cameras_train.pkl": "mmpose-pkl",
    }
    for p, fmt in expected.items():
        assert detect_format(p) == fmt, p


# ----------------------------------------------------------------------------------------- Pose2Sim demo
def test_pose2sim_toml_equals_qca_and_json():
    toml = load_rig(P2S / "calibration" / "Calib_qualisys.toml")
    qca = load_rig(P2S / "calibration" / "Calib.qca.txt")
    js = load_rig(P2S / "calibration.json")
    assert toml.names == ("cam_01", "cam_02", "cam_03", "cam_04")
    assert toml.image_size.tolist() == [[1088, 1920]] * 4
    assert_rigs_close(toml, qca, atol=1e-6)  # default 1/64 scale and dropped k3: Pose2Sim's reading
    assert_rigs_close(toml, js, atol=1e-6)
    # translation: metres in the TOML, mm inside
    with open(P2S / "calibration" / "Calib_qualisys.toml", "rb") as f:
        doc = tomllib.load(f)
    assert np.allclose(toml.t[0].numpy(), np.array(doc["cam_01"]["translation"]) * 1000.0, atol=1e-9)
    # QCA camera centres are stored in mm and must come back as C = -R^T t
    assert np.allclose(
        qca.centers()[0].numpy(), [1460.2323709212087, -1909.1590482454608, 1896.5058524092062]
    )


def test_qca_undivided_distortion():
    qca = load_rig(P2S / "calibration" / "Calib.qca.txt", qca_distortion_scale=1.0)
    assert qca.meta["qca_distortion_scale"] == 1.0
    assert qca.dist[0].tolist() == pytest.approx([-0.046183, 0.139983, 0.000608, 0.00069, 0.0])
    default = load_rig(P2S / "calibration" / "Calib.qca.txt")
    assert torch.allclose(default.dist * 64, qca.dist, atol=1e-15)


def test_toml_matches_cv2_projection():
    rig = load_rig(P2S / "calibration" / "Calib_qualisys.toml")
    with open(P2S / "calibration" / "Calib_qualisys.toml", "rb") as f:
        doc = tomllib.load(f)
    rng = np.random.default_rng(0)
    X_m = rng.uniform([-1, -1, 0], [1, 1, 2], size=(50, 3))
    ours = rig.project(torch.from_numpy(X_m * 1000.0)).numpy()
    for v, key in enumerate(["cam_01", "cam_02", "cam_03", "cam_04"]):
        c = doc[key]
        ref, _ = cv2.projectPoints(
            X_m,
            np.array(c["rotation"]),
            np.array(c["translation"]),
            np.array(c["matrix"]),
            np.array(c["distortions"]),
        )
        assert np.abs(ours[v] - ref[:, 0]).max() < 1e-6


# ----------------------------------------------------------------------------------------- CMU Panoptic
def test_panoptic_equals_json_and_cv2():
    src = OTHER / "calibration_160906_band1.json"
    rig = load_rig(src)
    assert len(rig) == 520
    assert_rigs_close(rig, load_rig(OTHER / "calibration_160906_band1.mvpose.json"), atol=1e-6)
    assert rig.meta["cameras"]["00_03"] == {"type": "hd", "panel": 0, "node": 3}
    hd = load_rig(src, types=("hd",))
    assert len(hd) == 31 and hd.names[0] == "00_00" and hd.image_size[0].tolist() == [1920, 1080]
    assert set(hd.names) == {n for n in rig.names if rig.meta["cameras"][n]["type"] == "hd"}
    # world -> camera check with the source convention (cm) through cv2
    with open(src) as f:
        cams = {c["name"]: c for c in json.load(f)["cameras"]}
    X = []
    for p in sorted((OTHER / "panoptic_160906_band1_hdPose3d").glob("*.json")):
        for body in json.load(open(p))["bodies"]:
            j = np.array(body["joints19"]).reshape(-1, 4)
            X.append(j[j[:, 3] > 0, :3])
    X_cm = np.concatenate(X)
    ours = hd.project(torch.from_numpy(X_cm * 10.0)).numpy()
    depth = hd.world_to_camera(torch.from_numpy(X_cm * 10.0))[..., 2].numpy()
    for v, name in enumerate(hd.names):
        c = cams[name]
        R = np.array(c["R"])
        ref, _ = cv2.projectPoints(
            X_cm, cv2.Rodrigues(R)[0], np.array(c["t"]), np.array(c["K"]), np.array(c["distCoef"])
        )
        assert (depth[v] > 0).all()
        assert np.abs(ours[v] - ref[:, 0]).max() < 1e-6, name


# ----------------------------------------------------------------------------------------- EasyMocap
@pytest.mark.parametrize("name,size", [("easymocap_anerf", None), ("easymocap_trackmesh", (1920, 1080))])
def test_easymocap_equals_json_and_cv2(name, size):
    folder = OTHER / name
    kw = {} if size is None else {"image_size": size}
    rig = load_rig(folder, **kw)
    assert_rigs_close(rig, load_rig(folder / f"{name}.mvpose.json"), atol=1e-6)
    # any file of the pair reads the same rig
    assert_rigs_close(load_rig(folder / "intri.yml", **kw), rig, atol=0)
    assert_rigs_close(load_rig(folder / "extri.yml", **kw), rig, atol=0)
    fs_i = cv2.FileStorage(str(folder / "intri.yml"), cv2.FILE_STORAGE_READ)
    fs_e = cv2.FileStorage(str(folder / "extri.yml"), cv2.FILE_STORAGE_READ)
    g = np.stack(
        np.meshgrid(np.linspace(-1, 1, 4), np.linspace(-1, 1, 4), np.linspace(0, 1.8, 4)), -1
    ).reshape(-1, 3)
    ours = rig.project(torch.from_numpy(g * 1000.0)).numpy()
    for v, n in enumerate(rig.names):
        Rot = fs_e.getNode(f"Rot_{n}").mat()
        ref, _ = cv2.projectPoints(
            g,
            cv2.Rodrigues(Rot)[0],
            fs_e.getNode(f"T_{n}").mat(),
            fs_i.getNode(f"K_{n}").mat(),
            fs_i.getNode(f"dist_{n}").mat(),
        )
        # trackmesh's 6-decimal Rot is not exactly orthonormal; cv2's Rodrigues round trip moves pixels ~7e-3
        assert np.abs(ours[v] - ref[:, 0]).max() < (1e-6 if name == "easymocap_anerf" else 2e-2)


def test_easymocap_trackmesh_drops_and_infers(caplog):
    with caplog.at_level("WARNING", logger="mvpose.calib"):
        rig = load_rig(OTHER / "easymocap_trackmesh")
    assert rig.names == ("11", "12", "13", "15", "17", "19", "25", "27", "31", "7", "9")
    assert len(rig.meta["dropped_cameras"]) == 21 and "1" in rig.meta["dropped_cameras"]
    assert "dropped" in caplog.text
    # no size in the files: (2 cx, 2 cy) rounded, and said so in meta
    assert rig.meta["image_size_inferred"] == list(rig.names)
    assert rig.image_size[0].tolist() == [round(2 * 1002.329321), round(2 * 533.332415)]
    anerf = load_rig(OTHER / "easymocap_anerf")
    assert anerf.image_size.tolist() == [[1920, 1080]] * 6
    per_cam = load_rig(OTHER / "easymocap_anerf", image_size={n: (1280, 720) for n in anerf.names})
    assert per_cam.image_size.tolist() == [[1280, 720]] * 6 and "image_size_inferred" not in per_cam.meta


# ----------------------------------------------------------------------------------------- Human3.6M
@pytest.mark.parametrize("subject", H36M_SUBJECTS)
def test_h36m_h5_pkl_json_agree(subject):
    h5 = load_rig(H36M / "cameras.h5", subject=subject)
    pkl = load_rig(H36M / "cameras.pkl", subject=subject)
    js = load_rig(H36M / "h36m_cameras.json", subject=subject)
    assert h5.names == ("54138969", "55011271", "58860488", "60457274")
    assert h5.distortion_model == "h36m"
    assert h5.image_size.tolist() == [[1000, 1002], [1000, 1000], [1000, 1000], [1000, 1002]]
    assert_rigs_close(h5, js, atol=1e-6)
    assert_rigs_close(h5, pkl, atol=1e-6)
    # camera centres: h5 stores them (mm), the pkl in metres
    with open(H36M / "h36m_cameras.json") as f:
        cams = json.load(f)["rigs"][subject]["cameras"]
    centres = np.array([c["camera_center_world_mm"] for c in cams])
    assert np.abs(h5.centers().numpy() - centres).max() < 1e-6


def test_h36m_subject_forms_and_errors():
    a = load_rig(H36M / "cameras.h5", subject="S11")
    for s in (11, "11", "s11", "subject11"):
        assert_rigs_close(load_rig(H36M / "cameras.h5", subject=s), a, atol=0)
    for path in (H36M / "cameras.h5", H36M / "cameras.pkl"):
        with pytest.raises(CalibrationError) as e:
            load_rig(path)
        assert path.name in str(e.value) and "subject" in str(e.value) and "S9" in str(e.value)
    with pytest.raises(CalibrationError, match="S2"):
        load_rig(H36M / "cameras.h5", subject="S2")


def test_h36m_labels_reproject():
    with open(H36M / "h36m_sample_labels.json") as f:
        frames = json.load(f)["frames"]
    assert len(frames) == 4
    for fr in frames:
        rig = load_rig(H36M / "cameras.h5", subject=fr["subject"]).select([fr["camera"]])
        X = torch.tensor(fr["joints_3d_world_mm"], dtype=torch.float64)
        uv = rig.project(X)[0].numpy()
        err = np.linalg.norm(uv - np.array(fr["joints_2d_px"]), axis=-1)
        assert err.max() < 0.5 and err.max() < 1e-3, (fr["image"], err.max())
        # camera-frame labels agree with our world -> camera
        Xc = rig.world_to_camera(X)[0].numpy()
        assert np.abs(Xc - np.array(fr["joints_3d_camera_mm"])).max() < 1e-3  # labels have 4 decimals
        # OpenCV with P1 = p[0], P2 = p[1] (the approximation allow_approximate writes): within 0.3 px
        K, R, t, d = (getattr(rig, n)[0].numpy() for n in ("K", "R", "t", "dist"))
        ref, _ = cv2.projectPoints(X.numpy(), cv2.Rodrigues(R)[0], t, K, d)
        assert np.abs(ref[:, 0] - np.array(fr["joints_2d_px"])).max() < 0.3


# ----------------------------------------------------------------------------------------- MPI-INF-3DHP
def test_3dhp_pkl_equals_json_and_labels_reproject():
    pkl = OTHER / "mpi_inf_3dhp_cameras_train.pkl"
    js = load_rig(OTHER / "mpi_inf_3dhp_train_cameras.mvpose.json")
    for s in ("S1/Seq1", ("S8", "Seq2"), "S4_Seq2"):
        assert_rigs_close(load_rig(pkl, subject=s), js, atol=1e-6)
    with pytest.raises(CalibrationError, match="S1_Seq1"):
        load_rig(pkl)
    with open(OTHER / "mpi_inf_3dhp_sample_labels.json") as f:
        frames = json.load(f)["frames"]
    for fr in frames:
        rig = load_rig(pkl, subject=(fr["subject"], fr["sequence"])).select([fr["camera"]])
        uv = rig.project(torch.tensor(fr["joints_3d_world_mm"], dtype=torch.float64))[0].numpy()
        err = np.linalg.norm(uv - np.array(fr["joints_2d_px"]), axis=-1)
        assert (err < 0.01).sum() >= 14, err  # README: hips and spine are off in the labels themselves
        assert err.max() < 2.2


def test_3dhp_test_pkl_intrinsics_only():
    path = OTHER / "mpi_inf_3dhp_cameras_test.pkl"
    rig = load_rig(path, subject="TS5")
    assert rig.names == ("TS5",) and rig.image_size.tolist() == [[1920, 1080]]
    assert torch.equal(rig.R[0], torch.eye(3, dtype=torch.float64)) and not rig.t.any()
    with pytest.raises(CalibrationError, match="TS6"):
        load_rig(path)
