"""ContextPose: the context-attention block (fixture parity, chunked prior == dense prior, memory),
the global-attention loss, and the whole model from the official checkpoint."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mvpose.models.context import (
    FFT_MAX_ROW_DEFICIT,
    LIMB_PROPAGATE_METHODS,
    ContextAttention,
    ContextResBlock,
    _exact_limb_rows,
    _offset_logits,
    _PriorTable,
    _replace_rows_exactly,
    _row_deficit,
    global_attention_loss,
    global_attention_target,
    limb_prior_rows,
    limb_propagate,
    load_official_contextpose,
)
from tests.fixture_helpers import fixture_dir, fixture_io, materialise_checkpoint

NAME = "contextpose"
PREFIX = "module.volume_net.encoder_decoder.mid_res."


@pytest.fixture(scope="module")
def io():
    return fixture_io(NAME)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return materialise_checkpoint(NAME, tmp_path_factory.mktemp("ctx"))


@pytest.fixture(scope="module")
def block(io, checkpoint):
    sd = torch.load(checkpoint, weights_only=True)
    res = ContextResBlock(51, limb_mean=torch.tensor(io["limb_mean"]), limb_std=torch.tensor(io["limb_std"]))
    res.load_state_dict({k[len(PREFIX) :]: v for k, v in sd.items() if k.startswith(PREFIX)})
    return res.eval()


def _close(ours, ref, atol):
    ours = ours.detach().reshape(ref.shape).numpy()
    err = float(np.abs(ours - ref).max())
    assert err <= atol, f"max abs diff {err} > {atol}"
    return err


def _rel(ref):
    return 5e-5 * float(np.abs(ref).max())


def test_block_parity_4(io, block):
    att = block.atten_conv
    with torch.no_grad():
        d = att.forward_details(torch.tensor(io["ctx_block_in"]))
        out, a = block(torch.tensor(io["ctx_block_in"]))
    _close(d["x_pi"], io["ctx_x_pi"], _rel(io["ctx_x_pi"]))
    _close(d["atten_logits"], io["ctx_atten_global_logits"], _rel(io["ctx_atten_global_logits"]))
    _close(d["atten_global"], io["ctx_atten_global"], 2e-4)
    _close(a, io["ctx_atten_global"], 2e-4)
    _close(d["conv_out"], io["ctx_conv_out"], _rel(io["ctx_conv_out"]))
    _close(d["out"], io["ctx_atten_out"], _rel(io["ctx_atten_out"]))
    _close(out, io["ctx_block_out"], _rel(io["ctx_block_out"]))
    feats = torch.stack([att.joint_features(d, k) for k in range(17)], 1)
    _close(feats, io["ctx_joint_features"], _rel(io["ctx_joint_features"]))
    prior = limb_prior_rows(torch.arange(64), (4, 4, 4), att.limb_mean, att.limb_std, 2500.0, 1500.0)
    _close(prior, io["ctx_pairwise_prior"], 1e-6)


def test_block_parity_16(io, block):
    att = block.atten_conv
    with torch.no_grad():
        d = att.forward_details(torch.tensor(io["ctxunit16_x"]))
    _close(d["atten_global"], io["ctxunit16_atten_global"], 2e-4)
    _close(d["out"], io["ctxunit16_out"], _rel(io["ctxunit16_out"]))
    _close(att.joint_features(d, 8), io["ctxunit16_joint8_features"], _rel(io["ctxunit16_joint8_features"]))
    rows = limb_prior_rows(torch.tensor([0, 1911, 4095]), (16, 16, 16), att.limb_mean, att.limb_std)
    _close(rows[[0, 8]], io["ctxunit16_prior_rows"], 1e-6)


def _dense_prior(shape, mean, std, cuboid, temperature):
    """The reference's formula, materialised: (L, N, N) from the grid coordinates."""
    axes = [torch.arange(m, dtype=torch.float64) * (cuboid / (m - 1)) for m in shape]
    r = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    d = torch.cdist(r, r)
    e = -((d[None] - mean[:, None, None]) ** 2) / (temperature * 2 * std[:, None, None] ** 2 + 0.1)
    return torch.softmax(e, -1)


@pytest.mark.parametrize(
    "shape, mean_scale, chunk",
    [
        ((4, 4, 4), 1.0, 2**23),
        ((6, 6, 6), 1.0, 16 * 36),
        ((8, 8, 8), 1.0, 16 * 8 * 8 * 3),
        ((3, 5, 4), 1.0, 100),
        ((6, 6, 6), 6.0, 16 * 36 * 2),
    ],
)
def test_chunked_prior_equals_dense(shape, mean_scale, chunk):
    g = torch.Generator().manual_seed(0)
    L, N, C = 16, math.prod(shape), 5
    mean = (torch.rand(L, generator=g, dtype=torch.float64) * 300 + 120) * mean_scale
    std = torch.rand(L, generator=g, dtype=torch.float64) * 14 + 8
    values = torch.randn(L, N, C, generator=g, dtype=torch.float64)
    dense = _dense_prior(shape, mean, std, 2500.0, 1500.0)
    table = _PriorTable(shape, mean, std, 2500.0, 1500.0, torch.float64, "cpu")
    assert table.exact_global == (mean_scale == 1.0)  # long limbs: per-row maxima differ
    ref = dense @ values
    for method in LIMB_PROPAGATE_METHODS:
        ours = limb_propagate(values, shape, mean, std, 2500.0, 1500.0, chunk_elems=chunk, method=method)
        assert float((ours - ref).abs().max()) < 1e-6 * max(1.0, float(ref.abs().max())), method
    rows = limb_prior_rows(torch.arange(N), shape, mean, std, dtype=torch.float64)
    assert float((rows - dense).abs().max()) < 1e-7  # cdist vs offset norms
    # float32 as the network runs it
    ours32 = limb_propagate(values.float(), shape, mean.float(), std.float(), chunk_elems=chunk)
    assert float((ours32.double() - ref).abs().max()) < 1e-5 * max(1.0, float(ref.abs().max()))
    # backward recomputes the rows: M^T g
    v = values.clone().requires_grad_(True)
    grad_out = torch.randn(L, N, C, generator=g, dtype=torch.float64)
    (limb_propagate(v, shape, mean, std, chunk_elems=chunk) * grad_out).sum().backward()
    assert float((v.grad - dense.transpose(1, 2) @ grad_out).abs().max()) < 1e-7


def test_long_limb_falls_back_to_exact_rows():
    """A limb longer than the central voxels reach: with the global shift the centre rows would sit
    e^-30 below the kernel's maximum; "auto" sends that limb to the exact per-row softmax, the others
    to the FFT, and the result still equals the dense formula (values and gradients)."""
    g = torch.Generator().manual_seed(1)
    shape, N = (8, 8, 8), 512
    mean = torch.tensor([4000.0, 300.0, 1200.0], dtype=torch.float64)
    std = torch.tensor([5.0, 15.0, 20.0], dtype=torch.float64)
    deficit = _row_deficit(_offset_logits(shape, mean, std, 2500.0, 1500.0, "cpu"))
    assert float(deficit[0]) > FFT_MAX_ROW_DEFICIT and float(deficit[1:].max()) <= FFT_MAX_ROW_DEFICIT
    values = torch.randn(3, N, 4, generator=g, dtype=torch.float64, requires_grad=True)
    dense = _dense_prior(shape, mean, std, 2500.0, 1500.0)
    ours = limb_propagate(values, shape, mean, std)
    ref = dense @ values
    assert float((ours - ref).detach().abs().max()) < 1e-9 * float(ref.detach().abs().max())
    grad_out = torch.randn(3, N, 4, generator=g, dtype=torch.float64)
    g1 = torch.autograd.grad((ours * grad_out).sum(), values)[0]
    assert float((g1 - dense.transpose(1, 2) @ grad_out).abs().max()) < 1e-8
    with pytest.raises(ValueError, match="method"):
        limb_propagate(values, shape, mean, std, method="dense")


@pytest.mark.parametrize("method", LIMB_PROPAGATE_METHODS)
def test_block_peaked_attention_matches_dense(method):
    """Peaked attention (as trained): the attention mass M_l a of far rows is ~1e-30 of the largest,
    below the FFT's absolute precision; those rows are recomputed exactly, so the float32 block still
    equals a float64 dense transcription to float32 precision."""
    torch.manual_seed(0)
    mean, std = torch.rand(16) * 300 + 120, torch.rand(16) * 6 + 6
    att = ContextAttention(limb_mean=mean, limb_std=std, prior_method=method)
    x = torch.randn(1, 51, 8, 8, 8) * 15  # attention logits with a spread of ~100
    with torch.no_grad():
        d = att.forward_details(x)
        a = d["atten_global"].double()
        assert float(a.min()) < 1e-30
        U = d["x_pi"].double().reshape(1, 17, 3, -1) * a[:, :, None]
        M = _dense_prior((8, 8, 8), att.limb_mean.double(), att.limb_std.double(), 2500.0, 1500.0)
        j0, j1 = att.limbs[:, 0], att.limbs[:, 1]
        for e, j in enumerate((j0, j1)):
            ref = torch.einsum("lpq,lcq->lcp", M, U[0, j]) / torch.einsum("lpq,lq->lp", M, a[0, j])[:, None]
            err = (d["propagated"][0, :, e].double() - ref).abs().max()
            assert float(err) < 1e-5 * float(ref.abs().max()), (method, e, float(err))


def test_exact_limb_rows_equal_the_dense_rows():
    """The guard's exact rows, gathered from the offset table per (limb, voxel) pair, equal the dense
    prior's rows times the values (float64 and float32, several chunk sizes), and the replacement
    redoes a limb whole when more than a quarter of its rows are flagged."""
    g = torch.Generator().manual_seed(2)
    shape, L, K = (5, 6, 4), 6, 3
    N = math.prod(shape)
    mean = torch.rand(L, generator=g, dtype=torch.float64) * 300 + 120
    std = torch.rand(L, generator=g, dtype=torch.float64) * 10 + 6
    values = torch.randn(L, N, K, generator=g, dtype=torch.float64)
    ref = _dense_prior(shape, mean, std, 2500.0, 1500.0) @ values  # (L, N, K)
    limbs = torch.randint(0, L, (40,), generator=g)
    rows = torch.randint(0, N, (40,), generator=g)
    for chunk in (2**23, N * (K + 1) * 3, 1):
        got = _exact_limb_rows(values, limbs, rows, shape, mean, std, 2500.0, 1500.0, chunk)
        torch.testing.assert_close(got, ref[limbs, rows], atol=1e-12, rtol=1e-10)
    got32 = _exact_limb_rows(
        values.float(), limbs, rows, shape, mean.float(), std.float(), 2500.0, 1500.0, 99
    )
    M32 = limb_prior_rows(torch.arange(N), shape, mean.float(), std.float())  # the dense formula in float32
    torch.testing.assert_close(got32, (M32 @ values.float())[limbs, rows], atol=1e-6, rtol=1e-5)
    bad = torch.zeros(L, N, dtype=torch.bool)
    bad[1, : N // 4 + 1] = True  # more than a quarter: limb 1 is recomputed whole
    bad[3, [0, 7, N - 1]] = True
    prop = torch.where(bad[..., None], torch.zeros_like(ref), ref)
    args = (shape, mean, std, 2500.0, 1500.0, 2**23)
    fixed, stats = _replace_rows_exactly(prop, values, bad, args)
    assert stats == {"limb_rows": N // 4 + 4, "whole_limbs": 1}
    torch.testing.assert_close(fixed, ref, atol=1e-12, rtol=1e-10)


def test_peaked_guard_counts_rows_per_limb():
    """With trained-like, sharp attention (H36M limb statistics) the FFT prior needs exact rows only for
    the few (limb, voxel) pairs far from the attention peaks of the narrowest limbs; the statistics
    say how many, and the block (values and gradients) still equals its exact (chunked) evaluation."""
    from mvpose.bench.models import _context_inputs

    att, x = _context_inputs(8, 1, 0, peak=16.0)
    x = x.clone().requires_grad_(True)
    fft = att.forward_details(x)["out"]
    stats = att.exact_rows
    (g_fft,) = torch.autograd.grad(fft.square().sum(), x)
    att.prior_method = "chunked"
    exact = att.forward_details(x)["out"]
    (g_exact,) = torch.autograd.grad(exact.square().sum(), x)
    assert att.exact_rows is None
    assert 0 < stats["limb_rows"] < stats["of"] // 50 and stats["whole_limbs"] == 0
    err = float((fft - exact).detach().abs().max())
    assert err < 1e-5 * float(exact.detach().abs().max()), err
    assert float((g_fft - g_exact).abs().max()) < 1e-5 * float(g_exact.abs().max())


def test_block_matches_dense_formula_and_gradients():
    """The whole block against a direct transcription with the dense prior and explicit F_k."""
    torch.manual_seed(0)
    att = ContextAttention(limb_mean=torch.rand(16) * 300 + 120, limb_std=torch.rand(16) * 14 + 8).double()
    x = torch.randn(2, 51, 4, 6, 4, dtype=torch.float64, requires_grad=True)
    out, a = att(x)
    B, N = 2, 96
    X = att.W_pi(x).reshape(B, 17, 3, N)
    aa = torch.softmax(att.atten_conv(x).reshape(B, 17, N), -1)
    U = X * aa[:, :, None]
    M = _dense_prior((4, 6, 4), att.limb_mean.double(), att.limb_std.double(), 2500.0, 1500.0)
    ref = []
    for k in range(17):
        Fk = U.sum(-1, keepdim=True).expand(B, 17, 3, N).clone()
        for l, (j0, j1) in enumerate(att.limbs.tolist()):
            if k in (j0, j1):
                m = j0 if k == j1 else j1
                Fk[:, m] = (
                    torch.einsum("pq,bcq->bcp", M[l], U[:, m]) / (M[l] @ aa[:, m, :, None])[..., 0][:, None]
                )
        ref.append(att.convlist[k](Fk.reshape(B, 51, 4, 6, 4)))
    ref = torch.cat(ref, 1) + X.reshape(B, 51, 4, 6, 4)
    assert float((out - ref).detach().abs().max()) < 1e-10
    assert float((a - aa).detach().abs().max()) == 0.0
    g1 = torch.autograd.grad(out.square().sum(), [x] + list(att.parameters()))
    g2 = torch.autograd.grad(ref.square().sum(), [x] + list(att.parameters()))
    assert max(float((p - q).abs().max()) for p, q in zip(g1, g2)) < 1e-8


def test_no_dense_mask_at_16(tmp_path):
    """At 16^3 the dense prior is 16 x 4096 x 4096 float32 = 1 GiB; the block's peak RSS increase
    (fresh process) must stay far below it."""
    code = textwrap.dedent(
        """
        import resource, torch
        from mvpose.models.context import ContextAttention
        torch.set_num_threads(2)
        att = ContextAttention(limb_mean=torch.full((16,), 300.0), limb_std=torch.full((16,), 15.0))
        x = torch.randn(1, 51, 16, 16, 16)
        with torch.no_grad():
            att(x)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with torch.no_grad():
            out, _ = att(x * 2)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
        print(grown * 1024, bool(torch.isfinite(out).all()))
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(tmp_path)
    )
    grown, finite = res.stdout.split()
    assert finite == "True"
    assert int(grown) < 300 * 2**20, f"peak RSS grew by {int(grown) / 2**20:.0f} MiB"


def test_global_attention_target_and_loss(io):
    tgt = global_attention_target(torch.tensor(io["keypoints_3d_gt"]), torch.tensor(io["root"]), 2500.0, 16)
    _close(tgt, io["ga_mask_gt"], 1e-7)
    loss = global_attention_loss(torch.tensor(io["ctx_atten_global"]), tgt)
    assert float(loss) == pytest.approx(float(io["loss_global_attention"]), rel=1e-4, abs=1e-7)


def test_official_model_parity(io, checkpoint):
    h5 = fixture_dir(NAME) / "mean_and_std_limb_length.h5"
    model = load_official_contextpose(
        checkpoint, limb_length_path=h5, volume_size=16, image_shape=(128, 128), heatmap_shape=(32, 32)
    )
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 16_301_109
    with torch.no_grad():
        out = model(torch.tensor(io["images"]), torch.tensor(io["proj_matrices"]), torch.tensor(io["root"]))
    _close(out["coord_volumes"], io["coord_volumes"], 1e-3)
    _close(out["features"], io["features"], _rel(io["features"]))
    _close(out["unprojected_volumes"], io["unprojected_volumes"], _rel(io["unprojected_volumes"]))
    _close(out["volumes_logits"], io["volumes_logits"], _rel(io["volumes_logits"]))
    _close(out["volumes"], io["volumes"], 2e-4)
    _close(out["atten_global"], io["ctx_atten_global"], 2e-4)
    _close(out["keypoints_3d"], io["keypoints_3d"], 0.2)
    tgt = global_attention_target(torch.tensor(io["keypoints_3d_gt"]), torch.tensor(io["root"]), 2500.0, 16)
    assert float(global_attention_loss(out["atten_global"], tgt)) == pytest.approx(
        float(io["loss_global_attention"]), rel=1e-4, abs=1e-7
    )


def test_official_loader_errors(io, checkpoint, tmp_path):
    sd = torch.load(checkpoint, weights_only=True)
    sd.pop("module.volume_net.encoder_decoder.mid_res.atten_conv.W_pi.weight")
    sd["module.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    h5 = fixture_dir(NAME) / "mean_and_std_limb_length.h5"
    with pytest.raises(RuntimeError, match=r"bad\.pth.*W_pi\.weight.*extra\.weight"):
        load_official_contextpose(bad, limb_length_path=h5, volume_size=16)
    with pytest.raises(FileNotFoundError, match="mean_and_std_limb_length.h5"):
        load_official_contextpose(checkpoint, volume_size=16)  # no h5 beside the checkpoint
    with pytest.raises(ValueError, match="unknown overrides"):
        load_official_contextpose(checkpoint, limb_length_path=h5, bogus=1)
