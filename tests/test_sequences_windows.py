"""Window generator with VideoPose3D semantics: tiling, padding, causal shift, stride, flips, shuffling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mvpose.calib import ring_rig
from mvpose.data.sequences import (
    WindowBatches,
    WindowDataset,
    chunk_starts,
    flip_average,
    flip_pixels,
    flip_pose,
    flip_world,
    image_coordinates,
    iter_sequences,
    mirror_rig,
    normalize_screen_coordinates,
    pad_sequence,
)
from mvpose.geometry.camera import CameraRig
from mvpose.skeleton import H36M17

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official" / "videopose3d" / "io.npz"
FLIP = H36M17.flip_indices


def _seqs(lengths=(37, 50, 5), D=2, seed=0):
    g = np.random.default_rng(seed)
    return [g.normal(size=(T, 17, D)) for T in lengths]


def test_chunk_starts_videopose3d_tiling():
    # n = ceil(T / c) chunks, overhang split (n c - T) // 2 before the first frame
    assert chunk_starts(10, 1).tolist() == list(range(10))
    assert chunk_starts(10, 4).tolist() == [-1, 3, 7]
    assert chunk_starts(9, 4).tolist() == [-1, 3, 7]
    assert chunk_starts(8, 4).tolist() == [0, 4]
    assert chunk_starts(3, 8).tolist() == [-2]


@pytest.mark.parametrize("chunk_length", [1, 5])
@pytest.mark.parametrize("causal", [False, True])
def test_windows_reassemble_sequences(chunk_length, causal):
    xs = _seqs()
    ys = [x[..., :1].repeat(3, -1) * 10 for x in xs]
    ds = WindowDataset(
        xs, ys, receptive_field=27, chunk_length=chunk_length, causal=causal, dtype=torch.float64
    )
    pad, shift = 13, (13 if causal else 0)
    assert ds.pad == pad and ds.causal_shift == shift and ds.input_length == chunk_length + 26
    b = ds.gather(torch.arange(len(ds)))
    seq, start = b["seq"].numpy(), b["start"].numpy()
    for w in range(len(ds)):  # every input frame is the edge-clamped source frame
        x, T = xs[seq[w]], len(xs[seq[w]])
        src = np.clip(start[w] - pad - shift + np.arange(ds.input_length), 0, T - 1)
        np.testing.assert_array_equal(b["input"][w].numpy(), x[src])
        np.testing.assert_array_equal(
            b["target"][w].numpy(), ys[seq[w]][np.clip(start[w] + np.arange(chunk_length), 0, T - 1)]
        )
        valid = (start[w] + np.arange(chunk_length) >= 0) & (start[w] + np.arange(chunk_length) < T)
        np.testing.assert_array_equal(b["target_valid"][w].numpy(), valid)
    # the frames the model sees at pad + shift + j are the target frames: they tile each sequence exactly
    centre = b["input"][:, pad + shift : pad + shift + chunk_length]
    for x, y, rx, ry in zip(xs, ys, ds.reassemble(centre), ds.reassemble(b["target"])):
        np.testing.assert_array_equal(rx.numpy(), x)
        np.testing.assert_array_equal(ry.numpy(), y)
    assert len(ds) == sum(len(chunk_starts(len(x), chunk_length)) for x in xs)


def test_edge_replicate_padding_both_ends():
    x = np.arange(12, dtype=float)[:, None, None].repeat(17, 1).repeat(2, 2)
    ds = WindowDataset([x], receptive_field=9, dtype=torch.float64)
    first, last = ds[0]["input"][:, 0, 0].tolist(), ds[len(ds) - 1]["input"][:, 0, 0].tolist()
    assert first == [0.0] * 5 + [1.0, 2.0, 3.0, 4.0]
    assert last == [7.0, 8.0, 9.0, 10.0] + [11.0] * 5
    causal = WindowDataset([x], receptive_field=9, causal=True, dtype=torch.float64)
    assert causal[0]["input"][:, 0, 0].tolist() == [0.0] * 9
    assert causal[11]["input"][:, 0, 0].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    # pad_sequence: (pad + shift, pad - shift) replicated frames, numpy and torch alike
    p = pad_sequence(x, 4, 2)
    assert p.shape[0] == 12 + 8 and p[:, 0, 0].tolist() == [0.0] * 7 + list(range(1, 12)) + [11.0] * 2
    np.testing.assert_array_equal(pad_sequence(torch.from_numpy(x), 4, 2).numpy(), p)


def test_stride_downsampling_picks_frames():
    x = np.arange(40, dtype=float)[:, None, None].repeat(17, 1).repeat(2, 2)
    ds = WindowDataset(
        [x], [x[..., :1].repeat(3, -1)], receptive_field=5, stride=3, stride_offset=1, dtype=torch.float64
    )
    np.testing.assert_array_equal(ds.sequence(0)[:, 0, 0].numpy(), np.arange(1, 40, 3))
    assert len(ds) == len(range(1, 40, 3))
    s = ds[4]
    assert (
        s["input"][:, 0, 0].tolist() == [7.0, 10.0, 13.0, 16.0, 19.0] and s["target"][0, 0, 0].item() == 13.0
    )
    ev = next(iter_sequences([x], receptive_field=5, stride=2, flip_augment=False, dtype=torch.float64))
    assert ev["input"][0, :, 0, 0].tolist() == [0.0, 0.0] + list(np.arange(0, 40, 2.0)) + [38.0, 38.0]


def test_flip_is_an_involution_2d_3d_cameras():
    g = np.random.default_rng(0)
    x2, x3 = g.normal(size=(4, 17, 2)), g.normal(size=(4, 17, 3))
    for x in (x2, x3, torch.from_numpy(x3)):
        f = flip_pose(x)
        assert not np.allclose(np.asarray(f), np.asarray(x))
        np.testing.assert_array_equal(np.asarray(flip_pose(f)), np.asarray(x))
    np.testing.assert_array_equal(
        flip_pose(x3)[:, 1], x3[:, 4] * [-1, 1, 1]
    )  # right_hip <- mirrored left_hip
    px = g.uniform(0, 1920, size=(4, 17, 2))
    np.testing.assert_allclose(flip_pixels(flip_pixels(px, 1920), 1920), px, rtol=0, atol=1e-9)  # w - (w - u)
    # pixel mirror = negating normalised x
    np.testing.assert_allclose(
        normalize_screen_coordinates(flip_pixels(px, 1920), 1920, 1080),
        flip_pose(normalize_screen_coordinates(px, 1920, 1080)),
        atol=1e-12,
    )
    for model, dist in (
        ("opencv", (-0.1, 0.03, 0.002, -0.004, 0.001)),
        ("h36m", (-0.2, 0.2, -0.001, 0.003, -0.002)),
    ):
        base = ring_rig(3, dist=(0.0,) * 5)
        rig = CameraRig(
            base.K, base.R, base.t, torch.tensor(dist).expand(3, 5), base.names, base.image_size, model
        )
        m = mirror_rig(rig)
        mm = mirror_rig(m)
        for k in ("K", "R", "t", "dist"):
            torch.testing.assert_close(getattr(mm, k), getattr(rig, k), rtol=0, atol=1e-12)
        torch.testing.assert_close(torch.linalg.det(m.R), torch.ones(3, dtype=torch.float64))
        X = torch.from_numpy(g.normal(0, 300, size=(6, 17, 3)) + [0, 0, 1000.0])
        w = rig.image_size[:, 0].double()  # (V,): one width per camera of the (T, V, J, 2) projections
        torch.testing.assert_close(
            m.project(flip_world(X)), flip_pixels(rig.project(X), w), rtol=0, atol=1e-8
        )
        torch.testing.assert_close(m.world_to_camera(flip_world(X)), flip_pose(rig.world_to_camera(X)))


def test_dataset_flip_augmentation_and_cameras():
    xs, ys = _seqs((20, 9)), _seqs((20, 9), D=3, seed=1)
    rig = ring_rig(2)
    cams = [rig.select([0]), rig.select([1])]
    ds = WindowDataset(
        xs, ys, receptive_field=9, chunk_length=3, flip_augment=True, cameras=cams, dtype=torch.float64
    )
    seq, start, flip = ds.windows()
    n0 = len(chunk_starts(20, 3))
    # VideoPose3D's order: a sequence's chunks, then their flipped copies
    assert flip[:n0].tolist() == [False] * n0 and flip[n0 : 2 * n0].tolist() == [True] * n0
    assert len(ds) == 2 * (n0 + len(chunk_starts(9, 3)))
    for i in range(n0):
        a, b = ds[i], ds[n0 + i]
        torch.testing.assert_close(b["input"], flip_pose(a["input"]), rtol=0, atol=0)
        torch.testing.assert_close(b["target"], flip_pose(a["target"]), rtol=0, atol=0)
        torch.testing.assert_close(b["camera"]["K"], mirror_rig(cams[0]).K[0])
        torch.testing.assert_close(a["camera"]["R"], cams[0].R[0])
    K = ds[0]["camera"]["K"]
    assert ds[n0]["camera"]["K"][0, 2] == 1920 - K[0, 2]


def test_flip_average_of_equivariant_function():
    g = torch.Generator().manual_seed(0)
    x2 = torch.randn(3, 27, 17, 2, generator=g)

    def lift(b):  # mirror-equivariant 2D -> 3D: x odd, y and z even, joint-wise
        return torch.cat([b, b[..., :1] ** 2], -1)

    torch.testing.assert_close(flip_average(lift, x2), lift(x2))

    def refine(b):  # 3D -> 3D, mixes joints symmetrically
        return 2 * b + b.mean(-2, keepdim=True)

    x3 = torch.randn(2, 9, 17, 3, generator=g)
    torch.testing.assert_close(flip_average(refine, x3), refine(x3))
    # a non-equivariant function is changed
    assert not torch.allclose(flip_average(lambda b: b + 1.0, x3), x3 + 1.0)


def test_shuffle_is_deterministic_by_seed():
    ds = WindowDataset(_seqs((40, 30)), receptive_field=9, flip_augment=True)
    a, b = ds.order(seed=7), ds.order(seed=7)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(len(ds)))
    assert not torch.equal(a, ds.order(seed=8)) and not torch.equal(a, ds.order(seed=7, epoch=1))
    assert torch.equal(ds.order(shuffle=False), torch.arange(len(ds)))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(ds.order(generator=g1), ds.order(generator=g2))
    b1 = [x["input"] for x in ds.batches(16, seed=5)]
    b2 = [x["input"] for x in ds.batches(16, seed=5)]
    assert len(b1) == -(-len(ds) // 16) and all(torch.equal(p, q) for p, q in zip(b1, b2))
    it = WindowBatches(ds, 16, seed=5, drop_last=True)
    got = [b["seq"] * 1000 + b["start"] * 2 + b["flip"] for b in DataLoader(it, batch_size=None)]
    assert len(got) == len(it) == len(ds) // 16
    ref = [b["seq"] * 1000 + b["start"] * 2 + b["flip"] for b in ds.batches(16, seed=5, drop_last=True)]
    assert all(torch.equal(p, q) for p, q in zip(got, ref))
    it.set_epoch(1)
    assert not torch.equal(next(iter(it))["input"], b1[0])
    # map-style use with a DataLoader and its own seeded sampler
    loader = DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch["input"].shape == (8, 9, 17, 2) and batch["flip"].dtype == torch.bool


def test_input_dim_configurable_3d_refinement():
    xs = _seqs((15,), D=3)
    ds = WindowDataset(xs, xs, receptive_field=5, chunk_length=2, flip_augment=True)
    s = ds[0]
    assert s["input"].shape == (6, 17, 3) and s["target"].shape == (2, 17, 3)
    ev = next(iter_sequences(xs, xs, receptive_field=5))
    assert ev["input"].shape == (2, 19, 17, 3) and ev["target"].shape == (1, 15, 17, 3)
    torch.testing.assert_close(ev["input"][1], flip_pose(ev["input"][0]))


def test_bad_arguments():
    xs = _seqs((10,))
    with pytest.raises(ValueError, match="odd"):
        WindowDataset(xs, receptive_field=26)
    with pytest.raises(ValueError, match="targets\\[0\\].*10 frames"):
        WindowDataset(xs, [np.zeros((9, 17, 3))], receptive_field=3)
    with pytest.raises(ValueError, match="causal_shift"):
        WindowDataset(xs, receptive_field=3, causal_shift=2)
    with pytest.raises(ValueError, match="image_size"):
        rig = ring_rig(1)
        WindowDataset(xs, receptive_field=3, cameras=[CameraRig(rig.K, rig.R, rig.t)])


@pytest.mark.skipif(not FIXTURE.is_file(), reason="VideoPose3D fixture not present")
def test_matches_videopose3d_reference_fixture():
    d = np.load(FIXTURE)
    # normalisation, bit for bit (the reference casts to float32 for evaluation)
    n = normalize_screen_coordinates(d["input_2d_pixels_seq"], 1000, 1002)
    np.testing.assert_array_equal(n.astype(np.float32), d["input_2d_seq"])
    np.testing.assert_allclose(image_coordinates(n, 1000, 1002), d["input_2d_pixels_seq"], atol=1e-4)
    # UnchunkedGenerator with test-time augmentation, non-causal and causal
    for key, causal in (("tta", False), ("causal_tta", True)):
        ev = next(iter_sequences([d["input_2d_seq"]], receptive_field=27, causal=causal))
        np.testing.assert_array_equal(ev["input"].numpy(), d[f"{key}_input_batch"])
        raw = torch.from_numpy(d[f"{key}_raw_output"])

        def model(b, raw=raw, inp=ev["input"]):
            assert torch.equal(b, inp)
            return raw

        out = flip_average(model, ev["input"][:1])
        np.testing.assert_allclose(out[0].numpy(), d[f"{key}_output"], rtol=0, atol=1e-7)
    # chunked windows of one frame = the reference's sliding receptive fields (interior frames)
    ds = WindowDataset([d["input_2d_full"][0]], receptive_field=27)
    np.testing.assert_array_equal(ds.gather(torch.arange(13, 24))["input"].numpy(), d["input_2d_windows"])
