"""Human36MMultiView on a tiny dataset written in learnable-triangulation's exact layout.

The test builds ``<root>/processed/<S>/<action>/imageSequence-undistorted/<camera>/img_%06d.jpg``
and ``<root>/extra/human36m-multiview-labels-GTbboxes.npy`` from the real Human3.6M cameras (S1,
S9) and real poses (shared/data/h36m_sample_labels.json), with the projected joints drawn as
bright dots, then checks the sample contract of docs/datasets.md against it.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mvpose.calib import load_rig
from mvpose.data import DatasetError, Human36MMultiView, collate_multiview, load_h36m_labels, rig_from_batch
from mvpose.data.h36m import CAMERA_NAMES
from mvpose.data.transforms import denormalize_image
from mvpose.geometry import CameraRig
from mvpose.skeleton import H36M17_LT, get_joint_map

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "h36m_cameras"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")

SUBJECTS = ["S1", "S9"]
ACTIONS = ["Directions-1", "Greeting-2"]
FRAMES = [0, 5, 10]
MISSING = ("S1", "Directions-1", 10, 3)  # (subject, action, frame, camera index) with an empty box
BACKGROUND = 25  # green level of the background
ALL = {"split": "all", "exclude_damaged": False}
KEYS = {
    "images", "keypoints_3d", "keypoints_3d_valid", "keypoints_2d", "visibility", "K", "R", "t", "dist",
    "bbox", "view_mask", "root_3d", "subject", "action", "frame", "camera_names", "index",
}  # fmt: skip


def _poses_lt() -> np.ndarray:
    doc = json.loads((DATA / "h36m_sample_labels.json").read_text())
    world = np.array([f["joints_3d_world_mm"] for f in doc["frames"]], dtype=np.float64)  # (4, 17, 3) H36M17
    return np.asarray(get_joint_map("h36m17", "h36m17_lt").apply(world))


def _square_tlbr(top, left, bottom, right):
    """LT's square_the_bbox (generate-labels-npy-multiview.py), on TLBR boxes."""
    width, height = right - left, bottom - top
    if height < width:
        c = (top + bottom) * 0.5
        top = int(round(c - width * 0.5))
        bottom = top + width
    else:
        c = (left + right) * 0.5
        left = int(round(c - height * 0.5))
        right = left + height
    return top, left, bottom, right


def _draw(shape, uv):
    img = np.empty(shape, np.uint8)
    img[:] = (70, BACKGROUND, 45)  # BGR; coloured, so that channel order matters
    for u, v in uv:
        cv2.circle(img, (int(round(u * 16)), int(round(v * 16))), 5 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
    return img


def _project(K, R, t, X):
    x = (X @ R.T + t[:, 0]) @ K.T
    return x[:, :2] / x[:, 2:3]


@pytest.fixture(scope="module")
def h36m_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("h36m")
    poses = _poses_lt()
    cams = np.empty(
        (len(SUBJECTS), 4),
        dtype=[
            ("R", np.float32, (3, 3)),
            ("t", np.float32, (3, 1)),
            ("K", np.float32, (3, 3)),
            ("dist", np.float32, 5),
        ],
    )
    sizes = {}
    for si, s in enumerate(SUBJECTS):
        rig = load_rig(DATA / "cameras.h5", subject=s)
        assert list(rig.names) == list(CAMERA_NAMES)
        for ci in range(4):
            cams[si, ci]["R"] = rig.R[ci].numpy()
            cams[si, ci]["t"] = rig.t[ci].numpy()[:, None]
            cams[si, ci]["K"] = rig.K[ci].numpy()
            cams[si, ci]["dist"] = rig.dist[ci].numpy()
            sizes[CAMERA_NAMES[ci]] = tuple(rig.image_size[ci].tolist())
    table_dtype = np.dtype(
        [
            ("subject_idx", np.int8),
            ("action_idx", np.int8),
            ("frame_idx", np.int16),
            ("keypoints", np.float32, (17, 3)),
            ("bbox_by_camera_tlbr", np.int16, (4, 4)),
        ]
    )
    rows = []
    k = 0
    for si, s in enumerate(SUBJECTS):
        for ai, a in enumerate(ACTIONS):
            for f in FRAMES:
                row = np.zeros((), dtype=table_dtype)
                X = poses[k % len(poses)] + np.array([40.0 * (k % 3), -30.0 * (k % 2), 0.0])
                k += 1
                row["subject_idx"], row["action_idx"], row["frame_idx"] = si, ai, f
                row["keypoints"] = X
                X32 = row["keypoints"].astype(np.float64)
                for ci, cam in enumerate(CAMERA_NAMES):
                    if (s, a, f, ci) == MISSING:
                        continue  # all-zero box: missing view, no image written
                    c = cams[si, ci]
                    uv = _project(
                        c["K"].astype(np.float64), c["R"].astype(np.float64), c["t"].astype(np.float64), X32
                    )
                    W, H = sizes[cam]
                    assert (uv > 20).all() and (uv[:, 0] < W - 20).all() and (uv[:, 1] < H - 20).all()
                    lo, hi = uv.min(0) - 60, uv.max(0) + 60
                    row["bbox_by_camera_tlbr"][ci] = _square_tlbr(
                        int(lo[1]), int(lo[0]), int(hi[1]), int(hi[0])
                    )
                    folder = root / "processed" / s / a / "imageSequence-undistorted" / cam
                    folder.mkdir(parents=True, exist_ok=True)
                    img = _draw((H, W, 3), uv)
                    cv2.imwrite(str(folder / f"img_{f + 1:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
                rows.append(row)
    labels = {
        "subject_names": SUBJECTS,
        "camera_names": list(CAMERA_NAMES),
        "action_names": ACTIONS,
        "cameras": cams,
        "table": np.array(rows, dtype=table_dtype),
    }
    (root / "extra").mkdir()
    np.save(root / "extra" / "human36m-multiview-labels-GTbboxes.npy", labels, allow_pickle=True)
    return root


def _labels_path(root):
    return root / "extra" / "human36m-multiview-labels-GTbboxes.npy"


# ---------------------------------------------------------------------------------------- contract
def test_sample_contract(h36m_root):
    ds = Human36MMultiView(h36m_root, **ALL, image_size=160)
    assert len(ds) == 12 and ds.skeleton is H36M17_LT
    s = ds[ds.index_of("S9", "Directions-1", 5)]
    assert set(s) == KEYS
    V, J = 4, 17
    expect = {
        "images": ((V, 3, 160, 160), torch.float32),
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
    for k, (shape, dtype) in expect.items():
        assert tuple(s[k].shape) == shape and s[k].dtype == dtype, k
    assert (s["subject"], s["action"], s["frame"]) == ("S9", "Directions-1", 5)
    assert s["camera_names"] == list(CAMERA_NAMES) and s["index"] == ds.index_of("S9", "Directions-1", 5)
    assert s["view_mask"].all() and s["keypoints_3d_valid"].all() and s["visibility"].all()
    assert (s["dist"] == 0).all()
    torch.testing.assert_close(s["root_3d"], s["keypoints_3d"][6])
    # ground truth comes through unchanged (float32 labels, float64 sample)
    lab = load_h36m_labels(_labels_path(h36m_root))
    row = np.flatnonzero((lab["subject_idx"] == 1) & (lab["action_idx"] == 0) & (lab["frame_idx"] == 5))[0]
    np.testing.assert_array_equal(s["keypoints_3d"].numpy(), lab["keypoints"][row])
    # the crop box is the labels' TLBR box in LTRB order (square, scale 1)
    np.testing.assert_array_equal(s["bbox"].numpy(), lab["bbox_tlbr"][row][:, [1, 0, 3, 2]])
    # images: normalised, values in range
    img = denormalize_image(s["images"])
    assert img.dtype == torch.uint8 and img.shape == (V, 160, 160, 3)


def test_keypoints_2d_is_the_projection_with_the_sample_cameras(h36m_root):
    ds = Human36MMultiView(h36m_root, **ALL, image_size=(192, 192))
    lab = load_h36m_labels(_labels_path(h36m_root))
    for i in range(len(ds)):
        s = ds[i]
        m = s["view_mask"]
        P = CameraRig(K=s["K"][m], R=s["R"][m], t=s["t"][m]).projection_matrices()
        Xh = torch.cat([s["keypoints_3d"], torch.ones(17, 1, dtype=torch.float64)], -1)
        x = Xh @ P.transpose(-1, -2)
        uv = x[..., :2] / x[..., 2:]
        assert (uv - s["keypoints_2d"][m].double()).abs().max() < 1e-3
        # independently: K_crop = diag(s, s, 1) (K - box shift) from the labels' float32 K
        subj = SUBJECTS.index(s["subject"])
        for v in np.flatnonzero(m.numpy()):
            left, top, right, bottom = s["bbox"][v].tolist()
            K = lab["K"][subj, v].copy()
            K[0, 2] -= left
            K[1, 2] -= top
            K = np.diag([192 / (right - left), 192 / (bottom - top), 1.0]) @ K
            np.testing.assert_allclose(s["K"][v].numpy(), K, rtol=1e-12, atol=1e-9)
            np.testing.assert_allclose(s["R"][v].numpy(), lab["R"][subj, v], atol=0)
            np.testing.assert_allclose(s["t"][v].numpy(), lab["t"][subj, v], atol=0)


def _dot_centroid(img, u, v, r=3):
    g = img[..., 1].astype(np.float64) - BACKGROUND
    x0, y0 = int(round(u)), int(round(v))
    win = np.clip(g[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1], 0, None)
    ys, xs = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
    return np.array([(win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()])


def test_bright_dots_are_where_keypoints_2d_says(h36m_root):
    ds = Human36MMultiView(h36m_root, **ALL, image_size=192)
    checked = 0
    for i in (0, 4, 7, 11):
        s = ds[i]
        imgs = denormalize_image(s["images"]).numpy()
        for v in np.flatnonzero(s["view_mask"].numpy()):
            kp = s["keypoints_2d"][v].double().numpy()
            d = np.linalg.norm(kp[:, None] - kp[None], axis=-1) + np.eye(17) * 1e9
            lonely = np.flatnonzero(d.min(1) > 9.0)
            for j in lonely:
                c = _dot_centroid(imgs[v], *kp[j])
                assert np.linalg.norm(c - kp[j]) < 1.5, (i, v, j, c, kp[j])
                checked += 1
            # the dots really are there: bright at the keypoint, dark between
            assert imgs[v][int(round(kp[6, 1])), int(round(kp[6, 0])), 1] > 150
    assert checked > 40


def test_missing_view_is_zeros(h36m_root):
    ds = Human36MMultiView(h36m_root, **ALL, image_size=128)
    s = ds[ds.index_of(*MISSING[:3])]
    v = MISSING[3]
    assert s["view_mask"].tolist() == [True, True, True, False]
    for k in ("images", "keypoints_2d", "K", "R", "t", "bbox", "visibility"):
        assert not s[k][v].any(), k
    assert s["visibility"][:v].all()


# ------------------------------------------------------------------------------ splits, indexing
def test_splits_exclusion_filters_and_indexing(h36m_root):
    train = Human36MMultiView(h36m_root, split="train", image_size=64)
    assert train.subjects == ["S1"] and len(train) == 6 and train.actions == ACTIONS
    val = Human36MMultiView(h36m_root, split="val", image_size=64)
    assert (
        val.subjects == ["S9"] and len(val) == 3 and val.actions == ["Directions-1"]
    )  # S9/Greeting-2 damaged
    with pytest.raises(KeyError, match="Greeting-2"):
        val.index_of("S9", "Greeting-2", 0)
    val_all = Human36MMultiView(h36m_root, split="val", image_size=64, exclude_damaged=False)
    assert len(val_all) == 6 and val_all.actions == ACTIONS
    assert val_all[val_all.index_of("S9", "Greeting-2", 10)]["frame"] == 10
    # S1's Greeting-2 is not damaged
    assert Human36MMultiView(h36m_root, split="all", image_size=64).index_of("S1", "Greeting-2", 0) >= 0
    assert (
        len(Human36MMultiView(h36m_root, split="all", image_size=64)) == 9
    )  # exclusion applies to "all" too

    ds = Human36MMultiView(h36m_root, **ALL, image_size=64, actions=["Greeting"], subjects=["S1"])
    assert len(ds) == 3 and {ds.info(i)["action"] for i in range(len(ds))} == {"Greeting-2"}
    ds = Human36MMultiView(h36m_root, **ALL, image_size=64, retain_every_n_frames=2)
    assert [ds.info(i)["frame"] for i in range(len(ds))] == [0, 10, 5, 0, 10, 5]
    full = Human36MMultiView(h36m_root, **ALL, image_size=64)
    idx = full.indices_of(subject="S9", action="Greeting-2")
    assert [full.info(i)["frame"] for i in idx] == FRAMES
    assert full.keypoints_3d().shape == (12, 17, 3)
    with pytest.raises(ValueError, match="unknown action"):
        Human36MMultiView(h36m_root, split="all", actions=["Dancing"])
    with pytest.raises(ValueError, match="split"):
        Human36MMultiView(h36m_root, split="test")


def test_camera_selection(h36m_root):
    ds = Human36MMultiView(h36m_root, split="val", image_size=96, ignore_cameras=[1])
    assert ds.camera_names == [CAMERA_NAMES[i] for i in (0, 2, 3)]
    s = ds[0]
    assert s["images"].shape[0] == 3 and s["camera_names"] == ds.camera_names
    ref = Human36MMultiView(h36m_root, split="val", image_size=96)[0]
    torch.testing.assert_close(s["K"], ref["K"][[0, 2, 3]])
    torch.testing.assert_close(s["images"], ref["images"][[0, 2, 3]])
    ds = Human36MMultiView(h36m_root, split="val", image_size=96, cameras=["60457274", 0])
    assert ds.camera_names == ["60457274", "54138969"]
    torch.testing.assert_close(ds[0]["keypoints_2d"], ref["keypoints_2d"][[3, 0]])


def test_scale_bbox_crop_false_and_lt_quirk(h36m_root):
    ref = Human36MMultiView(h36m_root, split="val", image_size=128)[0]
    big = Human36MMultiView(h36m_root, split="val", image_size=128, scale_bbox=1.5)[0]
    side, side_big = ref["bbox"][:, 2] - ref["bbox"][:, 0], big["bbox"][:, 2] - big["bbox"][:, 0]
    torch.testing.assert_close(side_big, torch.floor(1.5 * side))
    whole = Human36MMultiView(h36m_root, split="val", image_size=(200, 100), crop=False)[0]
    assert whole["images"].shape == (4, 3, 100, 200)
    assert whole["bbox"][0].tolist() == [0, 0, 1000, 1002] and whole["bbox"][1].tolist() == [0, 0, 1000, 1000]
    quirk = Human36MMultiView(h36m_root, split="val", image_size=128, lt_bgr_quirk=True)[0]
    np.testing.assert_array_equal(
        denormalize_image(quirk["images"], order="bgr", lt_bgr_quirk=True).numpy(),
        denormalize_image(ref["images"], order="bgr").numpy(),
    )
    assert not torch.allclose(quirk["images"], ref["images"])


# ----------------------------------------------------------------------------------- root file
def test_root_prediction_file(h36m_root, tmp_path):
    val = Human36MMultiView(h36m_root, split="val", image_size=64)
    n = len(val)
    rng = np.random.default_rng(0)
    preds = (val.keypoints_3d() + rng.normal(0, 30, (n, 17, 3))).astype(np.float32)
    order = rng.permutation(n)  # LT's results.pkl: rows in loader order, with their dataset indexes
    path = tmp_path / "results.pkl"
    with open(path, "wb") as f:
        pickle.dump({"keypoints_3d": preds[order], "indexes": order}, f)
    ds = Human36MMultiView(h36m_root, split="val", image_size=64, root_prediction_file=path)
    for i in range(n):
        s = ds[i]
        np.testing.assert_array_equal(s["root_3d"].numpy(), preds[i, 6].astype(np.float64))
        assert not torch.equal(s["root_3d"], s["keypoints_3d"][6])
    # (N, 3) roots in an .npy; predictions for every 2nd sample (as LT slices them)
    roots = preds[::2, 6]
    np.save(tmp_path / "roots.npy", roots)
    ds2 = Human36MMultiView(
        h36m_root,
        split="val",
        image_size=64,
        retain_every_n_frames=2,
        root_prediction_file=tmp_path / "roots.npy",
    )
    assert len(ds2) == len(roots)
    np.testing.assert_array_equal(ds2[1]["root_3d"].numpy(), roots[1])
    np.save(tmp_path / "short.npy", preds[:2])
    with pytest.raises(DatasetError, match=r"short\.npy.*2 predictions"):
        Human36MMultiView(h36m_root, split="val", root_prediction_file=tmp_path / "short.npy")


# -------------------------------------------------------------------------------------- errors
def _write_labels(path, labels):
    np.save(path, labels, allow_pickle=True)
    return path


def test_malformed_labels_name_the_file_and_field(h36m_root, tmp_path):
    good = np.load(_labels_path(h36m_root), allow_pickle=True).item()  # test-written file: trusted
    bad = dict(good)
    del bad["table"]
    p = _write_labels(tmp_path / "no_table.npy", bad)
    with pytest.raises(DatasetError, match=r"no_table\.npy.*field 'table'.*missing"):
        Human36MMultiView(h36m_root, p, split="all")
    t = good["table"]
    fields = [n for n in t.dtype.names if n != "keypoints"]
    bad = dict(
        good,
        table=np.array([tuple(r[n] for n in fields) for r in t], dtype=[(n, t.dtype[n]) for n in fields]),
    )
    p = _write_labels(tmp_path / "no_kp.npy", bad)
    with pytest.raises(DatasetError, match=r"no_kp\.npy.*table\['keypoints'\].*missing"):
        load_h36m_labels(p)
    p = _write_labels(tmp_path / "bad_cams.npy", dict(good, cameras=good["cameras"][:1]))
    with pytest.raises(DatasetError, match=r"bad_cams\.npy.*'cameras'.*shape"):
        load_h36m_labels(p)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(DatasetError, match=r"plain\.npy.*expected a dict"):
        load_h36m_labels(tmp_path / "plain.npy")
    with pytest.raises(FileNotFoundError, match="nothing.npy"):
        load_h36m_labels(tmp_path / "nothing.npy")


class _Evil:
    def __reduce__(self):
        return (os.getpid, ())


def test_labels_pickle_is_restricted(tmp_path):
    p = _write_labels(tmp_path / "evil.npy", {"subject_names": ["S1"], "payload": _Evil()})
    with pytest.raises(
        DatasetError, match=r"evil\.npy.*global 'posix\.getpid'|evil\.npy.*global 'os\.getpid'"
    ):
        load_h36m_labels(p)
    q = tmp_path / "evil.pkl"
    q.write_bytes(pickle.dumps({"keypoints_3d": _Evil()}))
    with pytest.raises(DatasetError, match="not allowed"):
        load_h36m_labels(q)


def test_restricted_loader_reads_old_numpy_pickles():
    """mmpose's cameras.pkl was written by an older numpy (``numpy.core.multiarray`` globals)."""
    from mvpose.data.h36m import load_restricted

    cams = load_restricted(DATA / "cameras.pkl")
    assert isinstance(cams, dict) and ("S1", "54138969") in cams
    assert cams[("S1", "54138969")]["R"].shape == (3, 3)


def test_missing_image_names_the_file(h36m_root):
    ds = Human36MMultiView(h36m_root, split="val", image_size=64)
    i = ds.index_of("S9", "Directions-1", 0)
    path = ds.image_path(i, CAMERA_NAMES[2])
    assert path == h36m_root / "processed/S9/Directions-1/imageSequence-undistorted/58860488/img_000001.jpg"
    moved = path.with_suffix(".bak")
    path.rename(moved)
    try:
        with pytest.raises(FileNotFoundError, match=r"img_000001\.jpg.*camera 58860488, frame 0"):
            ds[i]
    finally:
        moved.rename(path)


# -------------------------------------------------------------------------------------- batching
def test_collate_and_rig_from_batch(h36m_root):
    ds = Human36MMultiView(h36m_root, **ALL, image_size=96)
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_multiview)
    n = 0
    for batch in loader:
        B = len(batch["subject"])
        assert batch["images"].shape == (B, 4, 3, 96, 96) and batch["K"].shape == (B, 4, 3, 3)
        assert batch["index"].dtype == torch.int64 and batch["frame"].shape == (B,)
        assert isinstance(batch["camera_names"], list) and batch["camera_names"][0] == list(CAMERA_NAMES)
        rig = rig_from_batch(batch)
        assert rig.batch_shape == (B,) and rig.num_views == 4 and list(rig.names) == list(CAMERA_NAMES)
        assert rig.image_size.tolist() == [[96, 96]] * 4
        uv = rig.project(batch["keypoints_3d"], distort=False)  # (B, V, J, 2)
        m = batch["view_mask"]
        assert (uv[m] - batch["keypoints_2d"][m].double()).abs().max() < 1e-3
        n += B
    assert n == len(ds)
    with pytest.raises(ValueError, match="different shapes"):
        a = ds[0]
        b = Human36MMultiView(h36m_root, **ALL, image_size=64)[1]
        collate_multiview([a, b])
