"""Broken captures through ``mvpose infer``: each case gives a clear message or a per-joint mask and
per-camera statistics, never a crash halfway."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mvpose.calib import ring_rig
from mvpose.commands import infer
from mvpose.pipeline.example import write_example
from mvpose.pipeline.triangulate import read_result
from mvpose.pipeline.videos import infer_videos


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> dict[str, Path]:
    return write_example(tmp_path_factory.mktemp("example"), seed=2, num_frames=24)


@pytest.fixture
def pose(example, tmp_path) -> Path:
    """A private copy of the example's detections, to break."""
    return Path(shutil.copytree(example["detections"], tmp_path / "pose"))


def run(capsys, example, detections, tmp_path, *extra):
    parser = argparse.ArgumentParser(prog="mvpose")
    infer.register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "out.npz"
    ns = parser.parse_args(
        ["infer", "--calib", str(example["calibration"]), "--detections", str(detections), "--out", str(out)]
        + ["--skeleton", "h36m17", "-q", *map(str, extra)]
    )
    assert ns.func(ns) == 0
    return read_result(out), capsys.readouterr().out


def _mpjpe(points, gt) -> float:
    return float(np.nanmean(np.linalg.norm(points - gt, axis=-1)))


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_camera_without_any_detection(example, pose, tmp_path, capsys, mode):
    for f in (pose / "cam06_json").iterdir():
        f.unlink()
    extra = ["--multi-person"] if mode == "multi" else []
    res, out = run(capsys, example, pose, tmp_path, *extra)
    v = res.camera_names.index("cam_06")
    assert res.camera_stats["frames_missing"][v] == 24
    assert any("cam_06" in w and ("no detection" in w or "no person" in w) for w in res.warnings), (
        res.warnings
    )
    assert "cam_06" in out
    gt = np.load(example["ground_truth"])
    if mode == "single":
        assert _mpjpe(res.points_3d_mm, gt) < 8.0  # the other five cameras carry on
    else:  # the subject's track (a bystander may have one too)
        assert min(_mpjpe(res.points_3d_mm[:, n], gt) for n in range(res.num_tracks)) < 8.0
    assert not res.views_used[..., v, :].any()


def test_corrupt_and_missing_files(example, pose, tmp_path, capsys):
    bad = sorted((pose / "cam02_json").glob("*.json"))[3:6]
    bad[0].write_text("{not json")
    bad[1].write_text(json.dumps({"people": [{"pose_keypoints_2d": [1, 2]}]}))  # wrong count
    bad[2].write_bytes(b"\xff\xfe\x00garbage")
    gone = sorted((pose / "cam04_json").glob("*.json"))[10:12]
    for f in gone:
        f.unlink()
    res, out = run(capsys, example, pose, tmp_path)
    for f in bad:
        assert any(f.name in w for w in res.warnings), f.name
    assert any("cam04_json" in w and "no file for 2" in w for w in res.warnings)
    stats = res.camera_stats
    assert stats["frames_missing"][res.camera_names.index("cam_02")] == 3
    assert stats["frames_missing"][res.camera_names.index("cam_04")] == 2
    assert res.num_frames == 24 and np.isfinite(res.points_3d_mm).all(-1).mean() > 0.95
    assert not res.views_used[3:6, res.camera_names.index("cam_02")].any()
    assert "missing" in out  # the per-camera table has the column


def test_nan_values_are_masked_per_joint(example, pose, tmp_path, capsys):
    # NaN / null / Infinity inside OpenPose lists (json accepts NaN and Infinity literals)
    for k, f in enumerate(sorted((pose / "cam01_json").glob("*.json"))[:8]):
        doc = json.loads(f.read_text())
        for person in doc["people"]:
            kp = person["pose_keypoints_2d"]
            kp[3 * 5] = [float("nan"), None, float("inf")][k % 3]  # x of joint 5
            kp[3 * 7 + 2] = float("nan")  # confidence of joint 7
        f.write_text(json.dumps(doc))
    res, _ = run(capsys, example, pose, tmp_path)
    v = res.camera_names.index("cam_01")
    assert not res.views_used[:8, v, [5, 7]].any() and res.views_used[:8, v, 0].any()
    assert np.isfinite(res.points_3d_mm[:8, [5, 7]]).all()  # the other cameras still see them
    # NPZ with NaN rows and a camera entirely NaN
    with np.load(example["detections_npz"]) as z:
        kp, names = z["keypoints"].copy(), z["camera_names"]
    kp[2, :, 4] = np.nan
    kp[5] = np.nan
    np.savez(tmp_path / "d.npz", keypoints=kp, camera_names=names)
    res, _ = run(capsys, example, tmp_path / "d.npz", tmp_path)
    assert any("cam_06" in w and "no detection at all" in w for w in res.warnings)
    assert not res.views_used[:, 2, 4].any() and not res.views_used[:, 5].any()
    assert np.isfinite(res.points_3d_mm).all(-1).mean() > 0.97


def test_camera_names_mismatch(example, pose, tmp_path, capsys):
    # different names, same count: matched by sorted order, with a warning listing the mapping
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for i, d in enumerate(sorted(pose.iterdir())):
        shutil.copytree(d, renamed / f"view{chr(ord('a') + i)}")
    res, _ = run(capsys, example, renamed, tmp_path)
    assert any("sorted order" in w and "viewa -> cam_01" in w for w in res.warnings)
    # different names and counts: an error naming both sides, before any work
    shutil.copytree(renamed / "viewa", renamed / "viewz")
    with pytest.raises(ValueError) as e:
        run(capsys, example, renamed, tmp_path)
    msg = str(e.value)
    assert "viewz" in msg and "cam_06" in msg and "7 detection cameras" in msg
    # a single detection camera cannot be triangulated
    one = tmp_path / "one"
    one.mkdir()
    shutil.copytree(pose / "cam01_json", one / "cam01_json")
    with pytest.raises(ValueError, match="at least 2 cameras"):
        run(capsys, example, one, tmp_path)
    # nobody anywhere
    empty = tmp_path / "empty"
    for d in pose.iterdir():
        (empty / d.name).mkdir(parents=True)
        (empty / d.name / "f.0000.json").write_text('{"people": []}')
    with pytest.raises(ValueError, match="no keypoint detected in any camera"):
        run(capsys, example, empty, tmp_path)


class _CentreModel:
    def __call__(self, images, proj_matrices, root=None):
        return {"keypoints_3d": torch.zeros(images.shape[0], 2, 3, dtype=torch.float64)}


def test_videos_short_and_unreadable(tmp_path):
    rig = ring_rig(2, image_size=(64, 48), focal_px=60.0)
    folder = tmp_path / "v"
    folder.mkdir()
    for name, n in (("cam_01", 7), ("cam_02", 5)):
        w = cv2.VideoWriter(str(folder / f"{name}.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 25, (64, 48))
        for _ in range(n):
            w.write(np.zeros((48, 64, 3), np.uint8))
        w.release()
    paths = sorted(folder.glob("*.avi"))
    res = infer_videos(rig, paths, _CentreModel(), image_size=32, batch_size=3, progress=False)
    assert res.num_frames == 5 and res.camera_stats["frames_read"].tolist() == [5, 5]
    assert any("cam_02.avi (5 frames)" in w for w in res.warnings), res.warnings
    (folder / "cam_02.avi").write_text("not a video")
    with pytest.raises(ValueError, match="cam_02.avi"):
        infer_videos(rig, paths, _CentreModel(), progress=False)
    with pytest.raises(FileNotFoundError, match="cam_03.avi"):
        infer_videos(rig, [paths[0], folder / "cam_03.avi"], _CentreModel(), progress=False)
