"""triangulate_capture on the package's own example: accuracy, outputs, robustness to broken inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mvpose.calib import load_rig
from mvpose.pipeline.detections import load_detections
from mvpose.pipeline.example import write_example
from mvpose.pipeline.triangulate import format_summary, read_result, triangulate_capture, write_result


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> dict[str, Path]:
    return write_example(tmp_path_factory.mktemp("example"), seed=0, num_frames=40)


def mpjpe(result, gt) -> float:
    return float(np.nanmean(np.linalg.norm(result.points_3d_mm - gt, axis=-1)))


def test_example_round_trip(example):
    gt = np.load(example["ground_truth"])
    assert gt.shape == (40, 17, 3)
    res = triangulate_capture(example["calibration"], example["detections"], "h36m17", progress=False)
    err = mpjpe(res, gt)
    print(f"example MPJPE (OpenPose folders, robust+refine): {err:.2f} mm")
    assert err < 15.0
    assert res.points_3d_mm.shape == (40, 17, 3) and res.reprojection_error_px.shape == (40, 6, 17)
    assert np.isfinite(res.points_3d_mm).mean() > 0.99
    assert res.camera_names == tuple(f"cam_{v:02d}" for v in range(1, 7))
    # The bystander is listed first in cam_01: the subject is person 1 there in every frame.
    assert (res.person_index[:, 0] == 1).all() and (res.person_index[:, 2:] == 0).all()
    assert res.settings["camera_matching"] == "by camera number"
    # Reprojection errors exist wherever views were used (and for rejected detections); small at 1.5 px noise.
    assert (np.isfinite(res.reprojection_error_px) >= res.views_used).all()
    assert res.overall()["median_error_px"] < 3.0
    # The NPZ of the subject alone gives the same quality.
    res2 = triangulate_capture(
        example["calibration"], example["detections_npz"], progress=False, method="dlt"
    )
    assert res2.skeleton == "h36m17"
    print(f"example MPJPE (NPZ, dlt): {mpjpe(res2, gt):.2f} mm")
    assert mpjpe(res2, gt) < 15.0


def test_methods_and_chunks(example):
    rig = load_rig(example["calibration"])
    det = load_detections(example["detections"], "h36m17")
    gt = np.load(example["ground_truth"])
    full = triangulate_capture(rig, det, method="robust", progress=False)
    chunked = triangulate_capture(rig, det, method="robust", progress=False, chunk_frames=7)
    np.testing.assert_allclose(chunked.points_3d_mm, full.points_3d_mm, equal_nan=True)
    np.testing.assert_array_equal(chunked.views_used, full.views_used)
    for method in ("dlt", "refine", "robust+refine"):
        res = triangulate_capture(rig, det, method=method, progress=False)
        assert mpjpe(res, gt) < 15.0, method
        assert res.settings["method"] == method
    with pytest.raises(ValueError, match="unknown method"):
        triangulate_capture(rig, det, method="magic")
    with pytest.raises(ValueError, match=r"skeleton 'body25' has 25 joints .*detections\.npz.* 17"):
        triangulate_capture(rig, load_detections(example["detections_npz"]), skeleton="body25")


def test_outputs_read_back(example, tmp_path):
    res = triangulate_capture(example["calibration"], example["detections"], "h36m17", progress=False)
    res.points_3d_mm[3, 4] = np.nan  # make sure NaN survives both formats
    for suffix in (".npz", ".json"):
        out = write_result(res, tmp_path / "sub" / f"points{suffix}")
        assert out.exists()
        back = read_result(out)
        np.testing.assert_array_equal(back.points_3d_mm, res.points_3d_mm)
        np.testing.assert_array_equal(back.reprojection_error_px, res.reprojection_error_px)
        np.testing.assert_array_equal(back.views_used, res.views_used)
        np.testing.assert_array_equal(back.person_index, res.person_index)
        np.testing.assert_array_equal(back.frame_indices, res.frame_indices)
        assert back.joint_names == res.joint_names and back.camera_names == res.camera_names
        assert back.skeleton == "h36m17" and back.settings == json.loads(json.dumps(res.settings))
        assert back.warnings == res.warnings
        assert set(back.camera_stats) == set(res.camera_stats)
        for k, v in res.camera_stats.items():
            np.testing.assert_array_equal(back.camera_stats[k], v)
    doc = json.loads((tmp_path / "sub" / "points.json").read_text())
    assert doc["units"] == {"points_3d": "mm", "reprojection_error": "px"}
    assert doc["points_3d_mm"][3][4] == [None, None, None]
    with pytest.raises(ValueError, match=r"\.npz or \.json"):
        write_result(res, tmp_path / "points.csv")
    assert not list(tmp_path.glob("**/*.tmp"))


def test_summary(example):
    res = triangulate_capture(example["calibration"], example["detections"], "h36m17", progress=False)
    text = format_summary(res)
    print(text)
    for name in res.camera_names:
        assert name in text
    assert "median" in text and "p90" in text and "joints triangulated" in text
    assert "cam_01: 40" in text  # the subject was never first in cam_01's list


def test_broken_capture_still_written(example, tmp_path):
    pose = shutil.copytree(example["detections"], tmp_path / "pose")
    (pose / "cam03_json" / "cam03.0005.json").write_text("{not json")
    (pose / "cam05_json" / "cam05.0009.json").unlink()
    for f in (pose / "cam06_json").iterdir():
        f.unlink()
    res = triangulate_capture(example["calibration"], pose, "h36m17", progress=False)
    out = write_result(res, tmp_path / "points.json")
    assert read_result(out).points_3d_mm.shape == (40, 17, 3)
    assert np.isfinite(res.points_3d_mm).mean() > 0.95
    assert (
        not res.views_used[:, 5].any() and not res.views_used[5, 2].any() and not res.views_used[9, 4].any()
    )
    text = format_summary(res)
    assert "cam03.0005.json" in text and "cam06_json" in text
    assert res.camera_stats["frames_detected"][5] == 0
    assert res.overall()["frames_missing_camera"] == 40


def test_npz_with_nan(example, tmp_path):
    with np.load(example["detections_npz"]) as z:
        kp, names = z["keypoints"].copy(), z["camera_names"]
    rng = np.random.default_rng(0)
    kp[rng.random(kp.shape[:-1]) < 0.2] = np.nan
    kp[3] = np.nan  # a whole camera missing
    np.savez(tmp_path / "d.npz", keypoints=kp, camera_names=names)
    res = triangulate_capture(example["calibration"], tmp_path / "d.npz", "h36m17", progress=False)
    assert mpjpe(res, np.load(example["ground_truth"])) < 15.0
    assert np.isfinite(res.points_3d_mm).mean() > 0.95
    assert any("cam_04" in w for w in res.warnings)
    write_result(res, tmp_path / "out.npz")


def test_camera_mismatch_names_both_sides(example, tmp_path):
    pose = shutil.copytree(example["detections"], tmp_path / "pose")
    shutil.copytree(pose / "cam01_json", pose / "cam07_json")
    with pytest.raises(ValueError) as e:
        triangulate_capture(example["calibration"], pose, "h36m17", progress=False)
    msg = str(e.value)
    assert "cam07_json" in msg and "cam_06" in msg
    # Folders without numbers but as many as the calibration cameras: matched by order, with a warning.
    shutil.rmtree(pose / "cam07_json")
    for v in range(1, 7):
        (pose / f"cam{v:02d}_json").rename(pose / f"view{'abcdef'[v - 1]}")
    res = triangulate_capture(example["calibration"], pose, "h36m17", progress=False)
    assert res.settings["camera_mapping"]["viewa"] == "cam_01"
    assert any("sorted order" in w for w in res.warnings)


def test_example_is_deterministic(tmp_path):
    a = write_example(tmp_path / "a", seed=5, num_frames=3)
    b = write_example(tmp_path / "b", seed=5, num_frames=3)
    for key in ("calibration", "ground_truth"):
        assert a[key].read_bytes() == b[key].read_bytes()
    for f in sorted(a["detections"].rglob("*.json")):
        assert f.read_bytes() == (b["detections"] / f.relative_to(a["detections"])).read_bytes()
    assert set(a) == {"calibration", "detections", "detections_npz", "ground_truth", "readme"}
