"""Detection readers: OpenPose JSON folders and NPZ, camera matching, and never crashing on bad files."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from mvpose.pipeline.detections import (
    Detections,
    camera_number,
    load_detections,
    match_cameras,
    read_npz,
    read_openpose,
)
from mvpose.pipeline.example import write_example

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO = DATA / "pose2sim_demo"


def write_openpose(folder: Path, kp: np.ndarray, names=None, pattern="{cam}.{t:04d}.json") -> Path:
    """Write ``kp (V, T, P, J, 3)`` (NaN persons skipped, NaN keypoints as 0 0 0) as OpenPose folders."""
    V, T = kp.shape[:2]
    names = names or [f"cam{v + 1}_json" for v in range(V)]
    for v in range(V):
        cam = folder / names[v]
        cam.mkdir(parents=True, exist_ok=True)
        for t in range(T):
            people = []
            for p in kp[v, t]:
                if np.isnan(p).all():
                    continue
                people.append({"person_id": [-1], "pose_keypoints_2d": np.nan_to_num(p).reshape(-1).tolist()})
            (cam / pattern.format(cam=names[v].split("_")[0], t=t)).write_text(json.dumps({"people": people}))
    return folder


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> dict[str, Path]:
    return write_example(tmp_path_factory.mktemp("example"), seed=1, num_frames=12)


def test_read_openpose_example(example):
    det = load_detections(example["detections"], "h36m17")
    assert det.keypoints.shape == (6, 12, 2, 17, 3)
    assert det.camera_names == tuple(f"cam{v:02d}_json" for v in range(1, 7))
    assert det.frame_indices.tolist() == list(range(12))
    assert det.skeleton == "h36m17" and det.joint_names[0] == "pelvis"
    # (0, 0, 0) keypoints became NaN in all three numbers; nothing is 0-confidence.
    kp = det.keypoints
    assert np.isnan(kp).any() and not (kp[..., 2] == 0).any()
    assert (np.isnan(kp).all(-1) | np.isfinite(kp).all(-1)).all()
    # Only cam01 and cam02 see two people.
    two = np.isfinite(kp[:, :, 1]).any(axis=(1, 2, 3))
    assert two.tolist() == [True, True, False, False, False, False]
    assert det.warnings == []


def test_17_keypoints_default_to_coco(example, caplog):
    with caplog.at_level(logging.INFO):
        det = load_detections(example["detections"])
    assert det.skeleton == "coco17"
    assert "--skeleton h36m17" in caplog.text


def test_bad_files_never_crash(example, tmp_path, caplog):
    pose = shutil.copytree(example["detections"], tmp_path / "pose")
    (pose / "cam03_json" / "cam03.0005.json").write_text(
        '{"people": [{"pose_keypoints_2d": [1, 2,'
    )  # corrupt
    doc = {"people": [{"pose_keypoints_2d": [100.0, 100.0, 0.9] * 18}]}  # 18 keypoints instead of 17
    (pose / "cam04_json" / "cam04.0007.json").write_text(json.dumps(doc))
    (pose / "cam05_json" / "cam05.0009.json").unlink()  # a frame missing in one camera
    (pose / "cam02_json" / "cam02.0003.json").write_text("[1, 2, 3]")  # valid JSON, wrong layout
    for f in (pose / "cam06_json").iterdir():  # a camera folder with no detections at all
        f.unlink()
    with caplog.at_level(logging.WARNING):
        det = read_openpose(pose, "h36m17")
    assert det.keypoints.shape[:2] == (6, 12)
    for v, t in ((2, 5), (3, 7), (4, 9), (1, 3)):
        assert np.isnan(det.keypoints[v, t]).all()
    assert np.isnan(det.keypoints[5]).all()
    assert np.isfinite(det.keypoints[2, 4]).any()  # the neighbours are intact
    text = "\n".join(det.warnings)
    for name in ("cam03.0005.json", "cam04.0007.json", "cam02.0003.json", "cam05_json", "cam06_json"):
        assert name in text, name
    assert "expected 17" in text and "frames 9" in text
    assert "unreadable or malformed JSON file(s)" in caplog.text  # the summary count


def test_openpose_frame_numbers_and_25_keypoints(tmp_path):
    kp = np.random.default_rng(0).uniform(10, 500, (2, 3, 1, 25, 3))
    write_openpose(tmp_path, kp, pattern="video_{t:012d}_keypoints.json")
    with pytest.raises(ValueError, match="body25b"):
        read_openpose(tmp_path)
    det = read_openpose(tmp_path, "body25")
    assert det.frame_indices.tolist() == [0, 1, 2]
    np.testing.assert_allclose(det.keypoints[:, :, 0], kp[:, :, 0])
    with pytest.raises(ValueError, match="coco17"):
        read_openpose(tmp_path, "coco17")


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_detections(tmp_path / "nowhere")
    (tmp_path / "cam01.0000.json").write_text('{"people": []}')
    with pytest.raises(ValueError, match="own sub-folder"):
        load_detections(tmp_path)
    with pytest.raises(ValueError, match="single JSON file"):
        load_detections(tmp_path / "cam01.0000.json")


def test_read_npz(tmp_path):
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 1000, (3, 5, 17, 3))
    kp[0, 2, 4] = np.nan
    kp[1] = np.nan  # a camera without any detection
    np.savez(tmp_path / "d.npz", keypoints=kp, camera_names=np.array(["a", "b", "c"]))
    det = read_npz(tmp_path / "d.npz", "h36m17")
    assert det.keypoints.shape == (3, 5, 1, 17, 3) and det.camera_names == ("a", "b", "c")
    assert np.isnan(det.keypoints[0, 2, 0, 4]).all() and np.isnan(det.keypoints[1]).all()
    assert any("'b'" in w for w in det.warnings)
    # The only array, whatever its key; no names.
    np.savez(tmp_path / "e.npz", whatever=kp[..., :2])
    det = load_detections(tmp_path / "e.npz")
    assert det.camera_names == ("cam1", "cam2", "cam3") and det.skeleton == "coco17"
    assert np.nanmax(det.keypoints[..., 2]) == 1.0
    np.savez(tmp_path / "f.npz", keypoints=kp[0])
    with pytest.raises(ValueError, match=r"f\.npz.*'keypoints'.*\(V, T, J, 3\)"):
        read_npz(tmp_path / "f.npz")
    np.savez(tmp_path / "g.npz", keypoints=kp, camera_names=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"g\.npz.*'camera_names'"):
        read_npz(tmp_path / "g.npz")
    (tmp_path / "h.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"h\.npz"):
        read_npz(tmp_path / "h.npz")


def test_match_cameras(caplog):
    assert camera_number("cam1_json") == camera_number("cam_01") == "1"
    assert camera_number("left") is None
    assert match_cameras(["cam_02", "cam_01"], ["cam_01", "cam_02"]) == ([1, 0], "by name")
    assert match_cameras(["cam2_json", "cam1_json"], ["cam_01", "cam_02", "cam_03"]) == (
        [1, 0],
        "by camera number",
    )
    idx, how = match_cameras(["left", "right"], ["A", "B"])
    assert idx == [0, 1] and how.startswith("by sorted order")
    with pytest.raises(ValueError) as e:
        match_cameras(["cam1_json", "cam2_json", "cam9_json"], ["cam_01", "cam_02"])
    assert "cam9_json" in str(e.value) and "cam_02" in str(e.value)


def test_detections_validation():
    with pytest.raises(ValueError, match=r"\(V, T, P, J, 3\)"):
        Detections(np.zeros((2, 3, 4)), ("a", "b"), None)
    with pytest.raises(ValueError, match="camera names"):
        Detections(np.zeros((2, 3, 4, 3)), ("a",), None)


@pytest.mark.skipif(not DEMO.is_dir(), reason=f"Pose2Sim demo not found at {DEMO}")
def test_pose2sim_demo_layout():
    det = load_detections(DEMO / "pose", "body25b")
    assert det.keypoints.shape == (4, 100, 3, 25, 3)
    assert det.warnings == []
    # README: 5.4 % of all entries are (0, 0, 0); cam1 has 3 people in one frame, cam3/cam4 one.
    people = np.isfinite(det.keypoints).any(axis=(-1, -2))  # (V, T, P)
    assert people.sum(-1).max(-1).tolist() == [3, 2, 1, 1]
