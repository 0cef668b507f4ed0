"""SyntheticStudio: the docs/datasets.md sample contract, geometry of the labels, determinism,
splits, DataLoader workers, visibility, the on-disk form and errors."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mvpose.calib import ring_rig
from mvpose.data.collate import collate_multiview, rig_from_batch
from mvpose.data.motion import generate_motion
from mvpose.data.synthetic import (
    RigJitter,
    SyntheticStudio,
    SyntheticStudioFolder,
    procedural_motion_seed,
    write_contact_sheet,
    write_dataset,
)
from mvpose.data.synthetic.dataset import normalize_views
from mvpose.data.transforms import normalize_image
from mvpose.skeleton import H36M17_LT

BVH = Path(__file__).parents[2] / "shared" / "data" / "cmu_mocap" / "bvh_iclone_ccrig"

CONTRACT = {
    "images": torch.float32,
    "keypoints_3d": torch.float64,
    "keypoints_3d_valid": torch.bool,
    "keypoints_2d": torch.float32,
    "visibility": torch.bool,
    "K": torch.float64,
    "R": torch.float64,
    "t": torch.float64,
    "dist": torch.float64,
    "bbox": torch.float64,
    "view_mask": torch.bool,
    "root_3d": torch.float64,
}


@functools.cache
def dataset(**kw) -> SyntheticStudio:
    kw = {"num_samples": 64, "num_motions": 6, **kw}
    return SyntheticStudio(**kw)


def assert_same(a: dict, b: dict, images: bool = True):
    assert list(a) == list(b)
    for k in a:
        if k == "images" and not images:
            continue
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def test_sample_contract():
    ds = dataset()
    s = ds[3]
    V, J = 4, 17
    assert list(s) == [
        "images",
        "keypoints_3d",
        "keypoints_3d_valid",
        "keypoints_2d",
        "visibility",
        "K",
        "R",
        "t",
        "dist",
        "bbox",
        "view_mask",
        "root_3d",
        "subject",
        "action",
        "frame",
        "camera_names",
        "index",
    ]
    shapes = {
        "images": (V, 3, 256, 256),
        "keypoints_3d": (J, 3),
        "keypoints_3d_valid": (J,),
        "keypoints_2d": (V, J, 2),
        "visibility": (V, J),
        "K": (V, 3, 3),
        "R": (V, 3, 3),
        "t": (V, 3),
        "dist": (V, 5),
        "bbox": (V, 4),
        "view_mask": (V,),
        "root_3d": (3,),
    }
    for k, dt in CONTRACT.items():
        assert isinstance(s[k], torch.Tensor) and s[k].dtype == dt and tuple(s[k].shape) == shapes[k], k
    assert s["subject"] == "synth" and s["action"] in ("walk", "turn", "reach", "squat", "jump", "idle")
    assert isinstance(s["frame"], int) and s["index"] == 3
    assert s["camera_names"] == ["cam_01", "cam_02", "cam_03", "cam_04"]
    assert ds.skeleton is H36M17_LT
    assert (s["dist"] == 0).all() and s["view_mask"].all() and s["keypoints_3d_valid"].all()
    assert torch.equal(s["root_3d"], s["keypoints_3d"][H36M17_LT.root])  # GT pelvis
    # images are ImageNet-normalised RGB
    assert -2.2 < float(s["images"].min()) and float(s["images"].max()) < 2.7
    # square integer boxes, the crop K is rig.crop(box).resize(256)
    b = s["bbox"]
    assert torch.equal(b, b.round()) and torch.equal(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    full = ds.sample_rig(3)
    assert torch.allclose(s["K"], full.crop(b).resize((256, 256), old_size=b[:, 2:] - b[:, :2]).K)
    assert torch.equal(s["R"], full.R) and torch.equal(s["t"], full.t)
    # the normalisation is normalize_image's, bit for bit
    img = np.random.default_rng(0).integers(0, 256, (2, 8, 9, 3), dtype=np.uint8)
    assert np.array_equal(normalize_views(img), normalize_image(img))


def test_reprojection_matches_keypoints_2d():
    ds = dataset(rig_jitter=RigJitter())
    batch = collate_multiview([ds[i] for i in range(6)])
    rig = rig_from_batch(batch)
    proj = rig.project(batch["keypoints_3d"])  # (B, V, J, 2)
    err = (proj - batch["keypoints_2d"].double()).norm(dim=-1)
    assert float(err.max()) < 0.5
    # the full-frame rig (with its distortion) and the bbox relate the crops to the frames
    s = ds[2]
    full = ds.sample_rig(2)
    pin = full.project(s["keypoints_3d"], distort=False)
    scale = 256.0 / (s["bbox"][:, 2:] - s["bbox"][:, :2])
    assert torch.allclose(
        (pin - s["bbox"][:, None, :2]) * scale[:, None], s["keypoints_2d"].double(), atol=1e-3
    )
    assert full.has_distortion  # ring_rig's mild barrel: only the full-frame GT sees it


def test_deterministic_by_seed_and_index():
    a = SyntheticStudio(num_samples=8, num_motions=4, seed=5)
    b = SyntheticStudio(num_samples=8, num_motions=4, seed=5)
    for i in (0, 7, 3):  # access order does not matter
        assert_same(a[i], b[i])
    assert_same(a[2], a[2])
    c = SyntheticStudio(num_samples=8, num_motions=4, seed=6)
    assert not torch.equal(a[0]["images"], c[0]["images"])
    assert not torch.equal(a[0]["keypoints_3d"], c[0]["keypoints_3d"])
    assert not torch.equal(a[0]["images"], a[1]["images"])
    v = SyntheticStudio(num_samples=8, num_motions=4, seed=5, split="val")
    assert not torch.equal(a[0]["keypoints_3d"], v[0]["keypoints_3d"])


def test_train_val_motions_disjoint(tmp_path):
    for seed in (0, 1):
        tr = SyntheticStudio(num_samples=4, split="train", seed=seed)
        va = SyntheticStudio(num_samples=4, split="val", seed=seed)
        assert len(tr.motion_ids) == 200 and len(va.motion_ids) == 50
        assert not set(tr.motion_ids) & set(va.motion_ids)
    assert procedural_motion_seed(0, "train", 3) != procedural_motion_seed(0, "val", 3)
    # no seed's train motions are another seed's val motions
    assert not {procedural_motion_seed(s, "train", k) for s in range(3) for k in range(100)} & {
        procedural_motion_seed(s, "val", k) for s in range(3) for k in range(100)
    }
    # motions given as a list: split by motion, every motion in exactly one split
    motions = [generate_motion(seed=100 + i, num_frames=40) for i in range(5)]
    tr = SyntheticStudio(num_samples=16, split="train", motions=motions, val_fraction=0.4)
    va = SyntheticStudio(num_samples=16, split="val", motions=motions, val_fraction=0.4)
    assert len(tr.motion_ids) == 3 and len(va.motion_ids) == 2
    assert sorted(tr.motion_ids + va.motion_ids) == sorted(m.source for m in motions)
    # every val sample comes from a val motion (the action of a listed motion is its source's stem)
    stems = {Path(m).stem for m in va.motion_ids}
    assert all(va[i]["action"] in stems for i in range(4))


@pytest.mark.skipif(not BVH.is_dir(), reason=f"CMU BVH sample data not found at {BVH}")
def test_motion_files_split_and_render():
    files = sorted(BVH.glob("*.bvh"))[:3]
    tr = SyntheticStudio(num_samples=4, split="train", motions=files)
    va = SyntheticStudio(num_samples=4, split="val", motions=files)
    assert not set(tr.motion_ids) & set(va.motion_ids)
    assert set(tr.motion_ids) | set(va.motion_ids) == {str(f) for f in files}
    s = tr[0]
    assert s["action"] in {f.stem for f in files}
    assert s["visibility"].float().mean() > 0.5
    assert float(s["keypoints_3d"][:, 2].min()) > 0  # on the floor, Z up


def test_dataloader_workers_equal_no_workers():
    ds = dataset()
    ds[0]  # build the background bank before the workers fork
    kw = {"batch_size": 3, "collate_fn": collate_multiview, "shuffle": False}
    b0 = list(DataLoader(torch.utils.data.Subset(ds, range(6)), num_workers=0, **kw))
    b2 = list(DataLoader(torch.utils.data.Subset(ds, range(6)), num_workers=2, **kw))
    assert len(b0) == len(b2) == 2
    for x, y in zip(b0, b2):
        assert_same(x, y)


def test_visibility_outside_crop_and_body_pixels():
    ds = dataset(bbox_scale=0.6, occluder_prob=0.5)  # a tight crop cuts off limbs
    outside_seen, body, total = 0, 0, 0
    for i in range(8):
        sc = ds.scene(i)
        images, s = ds.render_sample(i)
        kp, vis = s["keypoints_2d"].numpy(), s["visibility"].numpy()
        out = (kp[..., 0] < -0.5) | (kp[..., 0] >= 255.5) | (kp[..., 1] < -0.5) | (kp[..., 1] >= 255.5)
        outside_seen += int(out.sum())
        assert not vis[out].any()
        # a visible joint's pixel shows the body, not the background
        for v, j in zip(*np.nonzero(vis)):
            x, y = np.round(kp[v, j]).astype(int)
            total += 1
            body += int(np.abs(images[v, y, x].astype(int) - sc.backgrounds[v, y, x].astype(int)).max() > 0)
    assert outside_seen > 0
    assert body / total > 0.95


def test_occluded_joints_not_visible():
    ds = dataset(occluder_prob=1.0, max_occluders=2)
    hidden = 0
    for i in range(6):
        sc = ds.scene(i)
        _, s = ds.render_sample(i)
        kp = s["keypoints_2d"].double().numpy()
        for v, occs in enumerate(sc.occluders):
            for o in occs:
                under = o.contains(kp[v])
                hidden += int(under.sum())
                assert not s["visibility"][v][torch.from_numpy(under)].any()
    assert hidden > 0


def test_full_frame_crop_and_custom_rig():
    rig = ring_rig(num_cameras=3, image_size=(640, 480), focal_px=520.0)
    ds = SyntheticStudio(num_samples=2, num_motions=2, rig=rig, crop="full", image_size=(320, 240))
    s = ds[0]
    assert s["images"].shape == (3, 3, 240, 320)
    assert torch.equal(s["bbox"], torch.tensor([[0.0, 0.0, 640.0, 480.0]] * 3, dtype=torch.float64))
    assert torch.allclose(s["K"][:, 0, 0], torch.full((3,), 260.0, dtype=torch.float64))
    assert torch.allclose(s["K"], rig.resize((320, 240)).K)


def test_joint_boxes():
    ds = dataset(bbox_from="joints", bbox_margin_mm=0.0)
    s = ds[1]
    kp = s["keypoints_2d"]
    # the square box hugs the joints along its longer side (integer rounding: within 1.5 px)
    ext = (kp.amax(1) - kp.amin(1)).amax(-1)
    assert torch.allclose(ext.double(), torch.full((4,), 256.0, dtype=torch.float64), atol=256 * 1.5 / 200)
    with pytest.raises(ValueError, match="bbox_from"):
        SyntheticStudio(num_samples=1, bbox_from="mask")


def test_bad_motion_path_names_the_file(tmp_path):
    missing = tmp_path / "nope" / "walk.bvh"
    with pytest.raises(FileNotFoundError, match="walk.bvh"):
        SyntheticStudio(num_samples=1, motions=[missing])
    bad = tmp_path / "broken.bvh"
    bad.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0\n")
    with pytest.raises(ValueError, match="broken.bvh"):
        SyntheticStudio(num_samples=1, motions=[bad])
    with pytest.raises(ValueError, match="split"):
        SyntheticStudio(num_samples=1, split="test")


def test_write_and_read_back(tmp_path):
    kw = {"num_motions": 3, "occluder_prob": 0.5}
    root = write_dataset(tmp_path / "synth", num_samples=3, split="val", seed=2, progress=False, **kw)
    ds = SyntheticStudio(num_samples=3, split="val", seed=2, **kw)
    folder = SyntheticStudioFolder(root)
    assert len(folder) == 3 and folder.skeleton is H36M17_LT
    assert (root / "images" / "cam_01" / "000000.png").is_file()
    for i in range(3):
        assert_same(folder[i], ds[i])  # PNG: identical, images included
    jpg = write_dataset(
        tmp_path / "jpg", num_samples=2, split="val", seed=2, image_format="jpg", progress=False, **kw
    )
    fj = SyntheticStudioFolder(jpg)
    a, b = fj[1], ds[1]
    assert_same(a, b, images=False)
    assert float((a["images"] - b["images"]).abs().mean()) < 0.1
    with pytest.raises(FileNotFoundError, match="labels.npz"):
        SyntheticStudioFolder(tmp_path)


def test_contact_sheet(tmp_path):
    import cv2

    out = write_contact_sheet(tmp_path / "sheet.png", dataset(), num_samples=2)
    img = cv2.imread(str(out))
    assert img.shape == (2 * 256, 4 * 256, 3)
    out = write_contact_sheet(tmp_path / "s2.png", [dataset()[0]], tile_size=128)
    assert cv2.imread(str(out)).shape == (128, 4 * 128, 3)
