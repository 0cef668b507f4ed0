"""MPIInf3DHPMultiView on a tiny synthetic layout: camera.calibration, annot.mat, frames or videos.

The cameras are the 8 real training cameras (shared/data/other_calibrations, via mmpose's pickle)
with intrinsics scaled by 1/4 (512 x 512 frames, to keep the test fast); the poses are the 2 real
labelled frames there. ``annot3`` is written in each camera's frame (as the dataset stores it) and
the projected joints are drawn as bright dots.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch

from mvpose.calib import load_rig
from mvpose.data import DatasetError, MPIInf3DHPMultiView, collate_multiview, rig_from_batch
from mvpose.data.mpi3dhp import MMPOSE_CAMERAS, load_3dhp_annotations
from mvpose.data.transforms import denormalize_image
from mvpose.skeleton import MPI3DHP17, MPI3DHP28, MPI3DHP28_TO_17

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "other_calibrations"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")

SIZE = 512
N_FRAMES = 3
BACKGROUND = 30


def _cameras():
    doc = json.loads((DATA / "mpi_inf_3dhp_train_cameras.mvpose.json").read_text())
    cams = {}
    for c in doc["cameras"]:
        K = np.array(c["K"], dtype=np.float64)
        K[:2] *= SIZE / 2048
        cams[int(c["mpi_inf_3dhp_camera_index"])] = (K, np.array(c["R"]), np.array(c["t"], dtype=np.float64))
    assert sorted(cams) == list(MMPOSE_CAMERAS)
    return cams


def _poses28() -> np.ndarray:
    """(2, 28, 3) world mm: the real 17 joints at their 28-joint slots, the other 11 near a parent."""
    doc = json.loads((DATA / "mpi_inf_3dhp_sample_labels.json").read_text())
    assert doc["mpi_inf_3dhp_28_joint_index"] == list(MPI3DHP28_TO_17)
    out = []
    for f in doc["frames"]:
        X17 = np.array(f["joints_3d_world_mm"], dtype=np.float64)
        X = np.full((28, 3), np.nan)
        X[list(MPI3DHP28_TO_17)] = X17
        for j in range(28):
            if np.isnan(X[j, 0]):
                p = MPI3DHP28.parents[j]
                while np.isnan(X[p, 0]):
                    p = MPI3DHP28.parents[p]
                X[j] = X[p] + np.array([15.0, -20.0, 10.0])
        out.append(X)
    return np.stack(out)


def _calibration_text(cams) -> str:
    lines = ["Skeletool Camera Calibration File V1.0"]
    for i, (K, R, t) in cams.items():
        intr = np.eye(4)
        intr[:3, :3] = K
        extr = np.eye(4)
        extr[:3, :3], extr[:3, 3] = R, t
        lines += [
            f"name          {i}",
            "  sensor      10 10",
            f"  size        {SIZE} {SIZE}",
            "  animated    0",
            "  intrinsic   " + " ".join(f"{v:.10g}" for v in intr.ravel()),
            "  extrinsic   " + " ".join(f"{v:.10g}" for v in extr.ravel()),
            "  radial      0",
        ]
    return "\n".join(lines) + "\n"


def _draw(uv):
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = (50, BACKGROUND, 70)
    for u, v in uv:
        if -50 < u < SIZE + 50 and -50 < v < SIZE + 50:
            cv2.circle(
                img, (int(round(u * 16)), int(round(v * 16))), 3 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4
            )
    return img


def _world(seq_k: int, f: int, poses) -> np.ndarray:
    return poses[(seq_k + f) % 2] + np.array([60.0 * f, 0.0, -40.0 * f])


def _write_sequence(d: Path, cams, poses, seq_k: int, mode: str, v73: bool = False):
    d.mkdir(parents=True)
    (d / "camera.calibration").write_text(_calibration_text(cams))
    annot3 = np.empty((14, 1), dtype=object)
    univ = np.empty((14, 1), dtype=object)
    annot2 = np.empty((14, 1), dtype=object)
    rng = np.random.default_rng(seq_k)
    worlds = np.stack([_world(seq_k, f, poses) for f in range(N_FRAMES)])  # (N, 28, 3)
    for c in range(14):
        if c in cams:
            K, R, t = cams[c]
            Xc = worlds @ R.T + t
            x = Xc @ K.T
            annot3[c, 0] = Xc.reshape(N_FRAMES, 84)
            annot2[c, 0] = (x[..., :2] / x[..., 2:]).reshape(N_FRAMES, 56)
        else:  # cameras absent from this calibration: junk, never read
            annot3[c, 0] = rng.normal(0, 1000, (N_FRAMES, 84))
            annot2[c, 0] = rng.normal(0, 1000, (N_FRAMES, 56))
        univ[c, 0] = annot3[c, 0] * 0.95
    frames = np.arange(N_FRAMES).reshape(-1, 1)
    if v73:
        _write_v73(d / "annot.mat", {"annot3": annot3, "univ_annot3": univ, "annot2": annot2}, frames)
    else:
        scipy.io.savemat(
            d / "annot.mat",
            {
                "annot3": annot3,
                "univ_annot3": univ,
                "annot2": annot2,
                "frames": frames,
                "cameras": np.arange(14)[None],
            },
        )
    seq = d / "imageSequence"
    seq.mkdir()
    for c in cams:
        frames_img = [_draw(annot2[c, 0][f].reshape(28, 2)[list(MPI3DHP28_TO_17)]) for f in range(N_FRAMES)]
        if mode == "images":
            (seq / f"video_{c}").mkdir()
            for f, img in enumerate(frames_img):
                cv2.imwrite(
                    str(seq / f"video_{c}" / f"img_{f + 1:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95]
                )
        else:
            w = cv2.VideoWriter(
                str(seq / f"video_{c}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (SIZE, SIZE)
            )
            assert w.isOpened()
            for img in frames_img:
                w.write(img)
            w.release()
    return worlds


def _write_v73(path, cells: dict, frames):
    """An HDF5 file laid out as MATLAB v7.3 writes one (512-byte header, cells as references)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        k = 0
        for name, cell in cells.items():
            ds = f.create_dataset(name, (1, 14), dtype=h5py.ref_dtype)
            for c in range(14):
                r = refs.create_dataset(f"r{k}", data=np.asarray(cell[c, 0]).T)
                k += 1
                ds[0, c] = r.ref
        f.create_dataset("frames", data=frames.T)
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


@pytest.fixture(scope="module")
def root3dhp(tmp_path_factory):
    root = tmp_path_factory.mktemp("3dhp")
    cams, poses = _cameras(), _poses28()
    worlds = {
        ("S1", "Seq1"): _write_sequence(root / "S1" / "Seq1", cams, poses, 0, "images"),
        ("S2", "Seq1"): _write_sequence(root / "S2" / "Seq1", cams, poses, 1, "video"),
    }
    return root, worlds


def test_sample_contract_and_28_to_17(root3dhp):
    root, worlds = root3dhp
    ds = MPIInf3DHPMultiView(root, sequences=("Seq1",), image_size=128)
    assert len(ds) == 2 * N_FRAMES and ds.skeleton is MPI3DHP17 and ds.subjects == ["S1", "S2"]
    assert ds.camera_names == [f"cam_{c}" for c in MMPOSE_CAMERAS] and ds.actions == ["Seq1"]
    s = ds[ds.index_of("S1", "Seq1", 2)]
    V, J = 8, 17
    shapes = {
        "images": ((V, 3, 128, 128), torch.float32),
        "keypoints_3d": ((J, 3), torch.float64),
        "keypoints_3d_valid": ((J,), torch.bool),
        "keypoints_2d": ((V, J, 2), torch.float32),
        "visibility": ((V, J), torch.bool),
        "K": ((V, 3, 3), torch.float64),
        "R": ((V, 3, 3), torch.float64),
        "t": ((V, 3), torch.float64),
        "dist": ((V, 5), torch.float64),
        "bbox": ((V, 4), torch.float64),
        "view_mask": ((V,), torch.bool),
        "root_3d": ((3,), torch.float64),
    }
    for k, (shape, dtype) in shapes.items():
        assert tuple(s[k].shape) == shape and s[k].dtype == dtype, k
    assert (s["subject"], s["action"], s["frame"], s["index"]) == (
        "S1",
        "Seq1",
        2,
        ds.index_of("S1", "Seq1", 2),
    )
    assert s["keypoints_3d_valid"].all() and s["view_mask"].all()
    # camera-frame annot3 back to the world, then 28 -> 17
    want = worlds[("S1", "Seq1")][2][list(MPI3DHP28_TO_17)]
    # (1e-3 mm: the real rotations are stored with 7 decimals, so R^T R = I only to ~1e-7)
    np.testing.assert_allclose(s["keypoints_3d"].numpy(), want, atol=1e-3)
    torch.testing.assert_close(s["root_3d"], s["keypoints_3d"][MPI3DHP17.index("pelvis")])
    got = ds.keypoints_3d()[ds.index_of("S2", "Seq1", 1)]
    np.testing.assert_allclose(got, worlds[("S2", "Seq1")][1][list(MPI3DHP28_TO_17)], atol=1e-3)


def _centroid(img, u, v, r=3):
    g = np.clip(img[..., 1].astype(np.float64) - BACKGROUND, 0, None)
    x0, y0 = int(round(u)), int(round(v))
    win = g[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
    ys, xs = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
    return np.array([(win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()])


@pytest.mark.parametrize("subject", ["S1", "S2"])  # pre-extracted frames, then MJPG videos
def test_projection_and_dots(root3dhp, subject):
    root, _ = root3dhp
    ds = MPIInf3DHPMultiView(root, subjects=[subject], sequences=("Seq1",), image_size=192)
    checked = 0
    for i in range(len(ds)):
        s = ds[i]
        P = s["K"] @ torch.cat([s["R"], s["t"][..., None]], -1)
        x = torch.cat([s["keypoints_3d"], torch.ones(17, 1, dtype=torch.float64)], -1) @ P.transpose(-1, -2)
        assert (x[..., :2] / x[..., 2:] - s["keypoints_2d"].double()).abs().max() < 1e-3
        rig = rig_from_batch(s)
        assert (rig.project(s["keypoints_3d"]) - s["keypoints_2d"].double()).abs().max() < 1e-3
        imgs = denormalize_image(s["images"]).numpy()
        for v in range(8):
            kp = s["keypoints_2d"][v].double().numpy()
            # crops hold the whole body with the 1.2 margin
            assert s["visibility"][v].all()
            assert (kp > 0).all() and (kp < 192).all()
            d = np.linalg.norm(kp[:, None] - kp[None], axis=-1) + np.eye(17) * 1e9
            for j in np.flatnonzero(d.min(1) > 8.0):
                x0, y0 = int(round(kp[j, 0])), int(round(kp[j, 1]))
                if (imgs[v][max(y0 - 4, 0) : y0 + 5, max(x0 - 4, 0) : x0 + 5] == 0).all(-1).any():
                    continue  # the joint is outside the camera's frame: zero padding, no dot
                assert np.linalg.norm(_centroid(imgs[v], *kp[j]) - kp[j]) < 1.5, (i, v, j)
                checked += 1
    assert checked > 30


def test_camera_selection_reference_camera_and_skeletons(root3dhp):
    root, _ = root3dhp
    base = MPIInf3DHPMultiView(root, subjects=["S1"], image_size=64, sequences=("Seq1",))
    sub = MPIInf3DHPMultiView(root, subjects=["S1"], image_size=64, sequences=("Seq1",), cameras=[8, 0])
    assert sub.camera_names == ["cam_8", "cam_0"]
    a, b = base[1], sub[1]
    torch.testing.assert_close(b["K"], a["K"][[7, 0]])
    torch.testing.assert_close(b["images"], a["images"][[7, 0]])
    np.testing.assert_allclose(
        b["keypoints_3d"].numpy(), a["keypoints_3d"].numpy(), atol=1e-3
    )  # other ref camera
    everything = MPIInf3DHPMultiView(root, subjects=["S1"], image_size=64, sequences=("Seq1",), cameras="all")
    assert everything.num_views == 8  # the test's calibration file holds the 8 real cameras
    ref = MPIInf3DHPMultiView(root, subjects=["S1"], image_size=64, sequences=("Seq1",), reference_camera=5)
    np.testing.assert_allclose(ref.keypoints_3d(), base.keypoints_3d(), atol=1e-3)
    lt = MPIInf3DHPMultiView(root, subjects=["S1"], image_size=64, sequences=("Seq1",), skeleton="h36m17_lt")
    s = lt[0]
    assert lt.skeleton.name == "h36m17_lt" and s["keypoints_3d"].shape == (17, 3)
    mpi = base[0]["keypoints_3d"]
    torch.testing.assert_close(s["root_3d"], mpi[MPI3DHP17.index("pelvis")])
    torch.testing.assert_close(
        s["keypoints_3d"][lt.skeleton.index("left_knee")], mpi[MPI3DHP17.index("left_knee")]
    )
    univ = MPIInf3DHPMultiView(
        root, subjects=["S1"], image_size=64, sequences=("Seq1",), annotation="univ_annot3"
    )
    assert not np.allclose(univ.keypoints_3d(), base.keypoints_3d())


def test_frames_indexing_and_batching(root3dhp):
    root, _ = root3dhp
    ds = MPIInf3DHPMultiView(root, sequences=("Seq1",), image_size=64, retain_every_n_frames=2)
    assert [(ds.info(i)["subject"], ds.info(i)["frame"]) for i in range(len(ds))] == [
        ("S1", 0), ("S1", 2), ("S2", 0), ("S2", 2),
    ]  # fmt: skip
    assert len(MPIInf3DHPMultiView(root, sequences=("Seq1",), image_size=64, max_frames=1)) == 2
    with pytest.raises(KeyError):
        ds.index_of("S1", "Seq1", 1)
    batch = collate_multiview([ds[0], ds[3]])
    rig = rig_from_batch(batch)
    assert rig.batch_shape == (2,) and rig.names == tuple(ds.camera_names)
    assert batch["action"] == ["Seq1", "Seq1"] and batch["frame"].tolist() == [0, 2]
    assert (rig.project(batch["keypoints_3d"]) - batch["keypoints_2d"].double()).abs().max() < 1e-3
    # videos: the same pixels as the frames of an "images" sequence would be, read via cv2
    vid = MPIInf3DHPMultiView(root, subjects=["S2"], sequences=("Seq1",), image_size=64, frames="video")
    assert vid[0]["images"].abs().sum() > 0
    with pytest.raises(FileNotFoundError, match=r"video_0/img_000001\.jpg"):
        MPIInf3DHPMultiView(root, subjects=["S2"], sequences=("Seq1",), image_size=64, frames="images")[0]


def test_v73_annotations_read_like_v5(root3dhp, tmp_path):
    root, _ = root3dhp
    cams, poses = _cameras(), _poses28()
    _write_sequence(tmp_path / "S3" / "Seq1", cams, poses, 0, "images", v73=True)
    with pytest.raises(NotImplementedError):
        scipy.io.loadmat(tmp_path / "S3" / "Seq1" / "annot.mat")  # scipy sees a v7.3 file
    a = load_3dhp_annotations(tmp_path / "S3" / "Seq1" / "annot.mat")
    b = load_3dhp_annotations(root / "S1" / "Seq1" / "annot.mat")
    assert len(a["joints"]) == len(b["joints"]) == 14
    for x, y in zip(a["joints"], b["joints"]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a["frames"], b["frames"])
    ds = MPIInf3DHPMultiView(tmp_path, image_size=64, sequences=("Seq1",))
    v5 = MPIInf3DHPMultiView(root, subjects=["S1"], image_size=64, sequences=("Seq1",))
    np.testing.assert_allclose(ds.keypoints_3d(), v5.keypoints_3d())


def test_errors_name_the_file_and_field(root3dhp, tmp_path):
    root, _ = root3dhp
    with pytest.raises(DatasetError, match=r"camera\.calibration.*cam_3.*no such camera"):
        MPIInf3DHPMultiView(root, subjects=["S1"], sequences=("Seq1",), cameras=[0, 3])
    with pytest.raises(FileNotFoundError, match="Seq2"):
        MPIInf3DHPMultiView(root, subjects=["S1"])
    d = tmp_path / "S1" / "Seq1"
    d.mkdir(parents=True)
    (d / "camera.calibration").write_text((root / "S1" / "Seq1" / "camera.calibration").read_text())
    scipy.io.savemat(d / "annot.mat", {"annot2": np.zeros((14, 1), dtype=object)})
    with pytest.raises(DatasetError, match=r"annot\.mat.*field 'annot3'.*missing"):
        MPIInf3DHPMultiView(tmp_path, sequences=("Seq1",))
    cells = np.empty((14, 1), dtype=object)
    for c in range(14):
        cells[c, 0] = np.zeros((2, 80))
    scipy.io.savemat(d / "annot.mat", {"annot3": cells})
    with pytest.raises(DatasetError, match=r"annot\.mat.*annot3\{1\}.*\(N, 84\)"):
        MPIInf3DHPMultiView(tmp_path, sequences=("Seq1",))
    (d / "annot.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DatasetError, match=r"annot\.mat"):
        load_3dhp_annotations(d / "annot.mat")
    assert load_rig(root / "S1" / "Seq1" / "camera.calibration").names[0] == "cam_0"
