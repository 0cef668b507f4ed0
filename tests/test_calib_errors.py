"""Malformed, unsupported and hostile calibration files raise CalibrationError naming file and field."""

from __future__ import annotations

import json
import os
import pickle

import cv2
import h5py
import numpy as np
import pytest

from mvpose.calib import CalibrationError, load_rig, ring_rig, save_rig


def raises(path, *fragments, **kw):
    """load_rig(path) must raise CalibrationError whose message holds the file name and every fragment."""
    with pytest.raises(CalibrationError) as e:
        load_rig(path, **kw)
    msg = str(e.value)
    assert path.name in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return e.value


# ----------------------------------------------------------------------------------------- generic
def test_missing_file(tmp_path):
    for name in ("nope.json", "nope.toml", "nope.qca.txt", "nope.pkl"):
        raises(tmp_path / name, "not found")


def test_unknown_format(tmp_path):
    p = tmp_path / "cams.xyz"
    p.write_text("hello")
    raises(p, "known formats")
    j = tmp_path / "other.json"
    j.write_text('{"cams": []}')
    raises(j, "JSON layout not recognised")
    good = tmp_path / "good.json"
    save_rig(ring_rig(2), good)
    raises(good, "unknown format", format="vicon-xcp")


def test_bad_keyword_and_subject(tmp_path):
    p = tmp_path / "r.json"
    save_rig(ring_rig(2), p)
    with pytest.raises(TypeError, match="qca_distortion_scale"):
        load_rig(p, qca_distortion_scale=1.0)
    raises(p, "subject", "single rig", subject="S1")


# ----------------------------------------------------------------------------------------- mvpose JSON
def _json_case(tmp_path, mutate, name="rig.json"):
    p = tmp_path / name
    save_rig(ring_rig(3), p)
    doc = json.loads(p.read_text())
    mutate(doc)
    p.write_text(json.dumps(doc))
    return p


JSON_CASES = {
    "missing_K": (lambda d: d["cameras"][1].pop("K"), ["cameras[1].K", "missing"]),
    "missing_name": (lambda d: d["cameras"][0].pop("name"), ["cameras[0].name", "missing"]),
    "K_shape": (
        lambda d: d["cameras"][0].__setitem__("K", [[1, 0, 0], [0, 1, 0]]),
        ["cameras[0].K", "3x3", "(2, 3)"],
    ),
    "t_shape": (lambda d: d["cameras"][2].__setitem__("t", [1, 2]), ["cameras[2].t", "3 numbers"]),
    "R_text": (lambda d: d["cameras"][0]["R"][1].__setitem__(1, "abc"), ["cameras[0].R", "numbers"]),
    "t_null": (lambda d: d["cameras"][0]["t"].__setitem__(0, None), ["cameras[0].t"]),
    "R_not_rotation": (
        lambda d: d["cameras"][1].__setitem__("R", (np.array(d["cameras"][1]["R"]) * 1.01).tolist()),
        ["cameras[1].R", "orthonormal"],
    ),
    "R_reflection": (
        lambda d: d["cameras"][1].__setitem__("R", (-np.array(d["cameras"][1]["R"])).tolist()),
        ["cameras[1].R", "det"],
    ),
    "negative_focal": (lambda d: d["cameras"][0]["K"][0].__setitem__(0, -1400.0), ["cameras[0].K", "focal"]),
    "K_bottom_row": (lambda d: d["cameras"][0]["K"][2].__setitem__(2, 0.0), ["cameras[0].K", "[0, 0, 1]"]),
    "dist_len": (
        lambda d: d["cameras"][0].__setitem__("dist", [0.1, 0.2, 0.3]),
        ["cameras[0].dist", "4 or 5"],
    ),
    "dist_rational": (
        lambda d: d["cameras"][0].__setitem__("dist", [0.1, 0, 0, 0, 0, 0.5, 0, 0]),
        ["cameras[0].dist", "rational"],
    ),
    "size_negative": (
        lambda d: d["cameras"][0].__setitem__("image_size", [-5, 10]),
        ["cameras[0].image_size"],
    ),
    "model": (
        lambda d: d["cameras"][0].__setitem__("distortion_model", "fisheye"),
        ["cameras[0].distortion_model"],
    ),
    "mixed_models": (
        lambda d: d["cameras"][0].__setitem__("distortion_model", "h36m"),
        ["distortion_model", "share one model"],
    ),
    "h36m_no_radial": (
        lambda d: d["cameras"][0].update(distortion_model="h36m", dist=None),
        ["cameras[0].radial"],
    ),
    "no_cameras": (lambda d: d.pop("cameras"), ["cameras", "missing"]),
    "version": (lambda d: d.__setitem__("format", "mvpose-rig/9"), ["format", "mvpose-rig/1"]),
    "units": (lambda d: d.__setitem__("units", "inch"), ["units", "mm"]),
    "duplicate_name": (lambda d: d["cameras"][1].__setitem__("name", "cam_01"), ["name", "unique"]),
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_malformed_json(tmp_path, case):
    mutate, fragments = JSON_CASES[case]
    raises(_json_case(tmp_path, mutate, f"{case}.json"), *fragments)


def test_invalid_json_syntax(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"format": "mvpose-rig/1", "cameras": [')
    raises(p, "not valid JSON")


def test_multi_rig_unknown_subject(tmp_path):
    p = tmp_path / "multi.json"
    save_rig({"S1": ring_rig(2), "S5": ring_rig(2)}, p)
    raises(p, "subject", "S5", "S7", subject="S7")


# ----------------------------------------------------------------------------------------- TOML
def _toml_case(tmp_path, old, new, name):
    p = tmp_path / name
    save_rig(ring_rig(2), p)
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    return p


def test_malformed_toml(tmp_path):
    raises(_toml_case(tmp_path, "matrix = ", "matrixx = ", "m.toml"), "[cam_01].matrix", "missing")
    raises(
        _toml_case(tmp_path, "fisheye = false", "fisheye = true", "f.toml"),
        "[cam_01].fisheye",
        "not supported",
    )
    raises(
        _toml_case(tmp_path, "translation = [ ", 'translation = [ "x", ', "t.toml"), "[cam_01].translation"
    )
    raises(
        _toml_case(tmp_path, "rotation = [ ", "rotation = [ 1.0, ", "r.toml"),
        "[cam_01].rotation",
        "3 numbers",
    )
    raises(_toml_case(tmp_path, "size = [ 1920, 1080]", "size = [ 1920]", "s.toml"), "[cam_01].size")
    raises(_toml_case(tmp_path, "[cam_01]", "[cam_01", "syntax.toml"), "not valid TOML")


# ----------------------------------------------------------------------------------------- EasyMocap
def _easymocap(tmp_path, name="em"):
    folder = tmp_path / name
    save_rig(ring_rig(2), folder)
    return folder


def _edit_yml(path, key, value=None):
    """Rewrite one node of an OpenCV YAML file (drop it when value is None)."""
    src = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    names = [src.getNode("names").at(i).string() for i in range(src.getNode("names").size())]
    nodes = {}
    for k in src.root().keys():
        if k == "names":
            continue
        n = src.getNode(k)
        nodes[k] = n.mat() if n.isMap() else int(n.real())
    src.release()
    if value is None:
        nodes.pop(key)
    else:
        nodes[key] = value
    dst = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    dst.startWriteStruct("names", cv2.FileNode_SEQ)
    for n in names:
        dst.write("", n)
    dst.endWriteStruct()
    for k, v in nodes.items():
        dst.write(k, v)
    dst.release()


def test_malformed_easymocap(tmp_path):
    f = _easymocap(tmp_path, "a")
    _edit_yml(f / "intri.yml", "K_cam_02")
    e = raises(f / "intri.yml", "K_cam_02", "missing")
    assert e.field == "K_cam_02"
    f = _easymocap(tmp_path, "b")
    _edit_yml(f / "extri.yml", "Rot_cam_01", np.eye(3) * 1.1)
    raises(f / "extri.yml", "Rot_cam_01", "orthonormal")
    f = _easymocap(tmp_path, "c")
    _edit_yml(f / "intri.yml", "K_cam_01", np.eye(2))
    raises(f / "intri.yml", "K_cam_01", "3x3")
    f = _easymocap(tmp_path, "d")
    _edit_yml(f / "extri.yml", "R_cam_01", np.array([[0.3], [0.0], [0.0]]))
    raises(f / "extri.yml", "R_cam_01", "disagrees with Rot_cam_01")
    f = _easymocap(tmp_path, "e")
    (f / "extri.yml").unlink()
    with pytest.raises(CalibrationError, match=r"extri\.yml.*not found"):
        load_rig(f / "intri.yml")
    bad = tmp_path / "g" / "intri.yml"
    bad.parent.mkdir()
    bad.write_text("%YAML:1.0\n---\nnames: [\n")
    (bad.parent / "extri.yml").write_text("%YAML:1.0\n---\nnames: []\n")
    raises(bad, "FileStorage")


# ----------------------------------------------------------------------------------------- Qualisys
QCA = """<?xml version='1.0' encoding='ASCII'?>
<calibration source="test">
  <cameras>
    <camera active="1" serial="cam_01" viewrotation="{rot}">
      <fov_video bottom="1919" left="0" right="1087" top="0"/>
      <transform r11="1" r12="0" r13="0" r21="0" r22="1" r23="0" r31="0" r32="0" r33="1" x="0" y="0" z="{z}"/>
      <intrinsic centerPointU="34816" centerPointV="61440" {focal} focalLengthV="107520"
        radialDistortion1="-0.046" radialDistortion2="0.13" radialDistortion3="0.01"
        skew="0" tangentalDistortion1="0.0006" tangentalDistortion2="0.0007"/>
    </camera>
  </cameras>
</calibration>
"""


def _qca(tmp_path, name, rot="0", z="-3000", focal='focalLengthU="107520"'):
    p = tmp_path / name
    p.write_text(QCA.format(rot=rot, z=z, focal=focal))
    return p


def test_qualisys_small_file(tmp_path):
    rig = load_rig(_qca(tmp_path, "ok.qca.txt"))
    assert rig.K[0].tolist() == [[1680.0, 0.0, 544.0], [0.0, 1680.0, 960.0], [0.0, 0.0, 1.0]]
    assert rig.image_size.tolist() == [[1088, 1920]]
    # Qualisys y, z flipped: identity M looks down world -z from z = -3000 ... centre comes back as stored
    assert rig.centers()[0].tolist() == pytest.approx([0.0, 0.0, -3000.0])
    assert rig.dist[0].tolist() == pytest.approx([-0.046 / 64, 0.13 / 64, 0.0006 / 64, 0.0007 / 64, 0.0])
    k3 = load_rig(_qca(tmp_path, "k3.qca.txt"), qca_distortion_scale=1.0, qca_keep_k3=True)
    assert k3.dist[0].tolist() == pytest.approx([-0.046, 0.13, 0.0006, 0.0007, 0.01])


def test_malformed_qualisys(tmp_path):
    raises(_qca(tmp_path, "nofocal.qca.txt", focal=""), "intrinsic@focalLengthU", "missing")
    raises(_qca(tmp_path, "text.qca.txt", focal='focalLengthU="abc"'), "intrinsic@focalLengthU", "number")
    raises(_qca(tmp_path, "neg.qca.txt", focal='focalLengthU="-5"'), "focal")
    raises(_qca(tmp_path, "rot.qca.txt", rot="90"), "viewrotation", "not supported")
    p = tmp_path / "broken.qca.txt"
    p.write_text("<calibration><cameras>")
    raises(p, "not valid XML")


# ----------------------------------------------------------------------------------------- Panoptic
def test_malformed_panoptic(tmp_path):
    cam = {"name": "00_00", "type": "hd", "resolution": [1920, 1080], "panel": 0, "node": 0,
           "K": [[1000, 0, 960], [0, 1000, 540], [0, 0, 1]], "distCoef": [0, 0, 0, 0, 0],
           "R": np.eye(3).tolist(), "t": [[0], [0], [300]]}  # fmt: skip
    p = tmp_path / "calibration_x.json"
    p.write_text(json.dumps({"calibDataSource": "x", "cameras": [cam]}))
    rig = load_rig(p)
    assert rig.t[0].tolist() == [0.0, 0.0, 3000.0]  # cm -> mm
    raises(p, "type", "hd", types=("vga",))
    bad = dict(cam)
    bad.pop("R")
    p.write_text(json.dumps({"calibDataSource": "x", "cameras": [bad]}))
    raises(p, "cameras[0].R", "missing")
    bad = dict(cam, distCoef=["a", 0, 0, 0, 0])
    p.write_text(json.dumps({"calibDataSource": "x", "cameras": [bad]}))
    raises(p, "cameras[0].distCoef")


# ----------------------------------------------------------------------------------------- Human3.6M h5
def _h5(path, drop=None, R=None):
    with h5py.File(path, "w") as f:
        g = f.create_group("subject1/camera1")
        g["R"] = np.eye(3) if R is None else R
        g["T"] = np.array([[0.0], [0.0], [-4000.0]])
        g["f"] = np.array([[1145.0], [1144.0]])
        g["c"] = np.array([[512.0], [515.0]])
        g["k"] = np.array([[-0.2], [0.24], [0.0]])
        g["p"] = np.array([[-0.001], [-0.001]])
        g["Name"] = np.array([[ord(c)] for c in "54138969"], dtype=np.float64)
        if drop:
            del g[drop]


def test_h36m_h5_small_and_malformed(tmp_path):
    ok = tmp_path / "ok.h5"
    _h5(ok)
    rig = load_rig(ok)  # a single subject needs no subject=
    assert rig.names == ("54138969",) and rig.image_size.tolist() == [[1000, 1002]]
    assert rig.t[0].tolist() == [0.0, 0.0, 4000.0]
    p = tmp_path / "missing.h5"
    _h5(p, drop="f")
    raises(p, "subject1/camera1/f", "missing")
    p = tmp_path / "badR.h5"
    _h5(p, R=np.ones((3, 3)))
    raises(p, "subject1/camera1/R", "orthonormal")
    p = tmp_path / "shape.h5"
    _h5(p, R=np.eye(2))
    raises(p, "subject1/camera1/R", "3x3")
    p = tmp_path / "notreally.h5"
    p.write_text("not hdf5")
    raises(p, "HDF5")


# ----------------------------------------------------------------------------------------- pickles
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_os_system_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    p = tmp_path / "cameras.pkl"
    with open(p, "wb") as f:
        pickle.dump({("S1", "54138969"): {"R": _Evil(marker)}}, f, protocol=2)
    e = raises(p, "system", "not allowed")
    assert "os.system" in str(e) or "posix.system" in str(e)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_other_globals_refused(tmp_path, protocol):
    p = tmp_path / f"evil{protocol}.pkl"
    with open(p, "wb") as f:
        pickle.dump({"TS1": {"f": eval, "c": np.zeros(2)}}, f, protocol=protocol)
    raises(p, "eval", "not allowed")  # protocol 2 names it __builtin__.eval


def test_pickle_numpy_arrays_allowed_any_protocol(tmp_path):
    cam = {"R": np.eye(3), "T": np.array([[0.0], [0.0], [4.0]]), "c": np.array([[512.0], [515.0]]),
           "f": np.array([[1145.0], [1144.0]]), "k": np.zeros((3, 1)), "p": np.zeros((2, 1)),
           "w": 1000, "h": 1002, "name": "camera1", "id": "54138969"}  # fmt: skip
    for protocol in (2, 3, 4, 5):
        p = tmp_path / f"ok{protocol}.pkl"
        with open(p, "wb") as f:
            pickle.dump({("S1", "54138969"): cam}, f, protocol=protocol)
        rig = load_rig(p)
        assert rig.t[0].tolist() == [0.0, 0.0, -4000.0]  # centre (0, 0, 4) m, identity camera-to-world
    bad = dict(cam, f=np.array([[1145.0]]))
    p = tmp_path / "short_f.pkl"
    with open(p, "wb") as f:
        pickle.dump({("S1", "54138969"): bad}, f)
    raises(p, "f", "2 numbers")
    p = tmp_path / "layout.pkl"
    with open(p, "wb") as f:
        pickle.dump({"foo": 1}, f)
    raises(p, "unknown camera pickle layout")
    p = tmp_path / "trunc.pkl"
    p.write_bytes(b"\x80\x03}q\x00(X")
    raises(p, "not a readable pickle")


# ----------------------------------------------------------------------------------------- 3DHP text
def test_malformed_3dhp(tmp_path):
    p = tmp_path / "camera.calibration"
    p.write_text("Skeletool Camera Calibration File V1.0\nname 0\n  size 2048 2048\n  intrinsic 1 0 0 0\n")
    raises(p, "camera 0.extrinsic", "missing")
    p.write_text("Something else\n")
    raises(p, "header")
    p.write_text(
        "Skeletool Camera Calibration File V1.0\nname 0\n  size 2048 2048\n"
        "  intrinsic 1500 0 1024 0 0 1500 1024 0 0 0 1 0 0 0 0 1\n  extrinsic 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0\n"
    )
    raises(p, "camera 0.extrinsic", "16 numbers")
