"""VideoPose3D (TemporalModel, TemporalModelOptimized1f): reference parity, forward contract, loading."""

import zipfile

import numpy as np
import pytest
import torch
from fixture_helpers import fixture_config, fixture_io, materialise_checkpoint

from mvpose.data.sequences import flip_average, flip_pose, pad_sequence
from mvpose.models.temporal.videopose3d import (
    TemporalModel,
    TemporalModelOptimized1f,
    load_official,
    videopose3d_27f,
    videopose3d_81f,
    videopose3d_243f,
)
from mvpose.skeleton import H36M17

NAME = "videopose3d"
TOL = dict(atol=1e-5, rtol=1e-5)  # the fixture README's recommendation for float32


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return materialise_checkpoint(NAME, tmp_path_factory.mktemp(NAME))


@pytest.fixture(scope="module")
def io():
    return {k: torch.from_numpy(v) for k, v in fixture_io(NAME).items()}


def close(actual, expected):
    torch.testing.assert_close(actual, expected, **TOL)


def test_config_matches_reference_flips():
    cfg = fixture_config(NAME)
    flip = list(range(17))
    for a, b in zip(cfg["kps_left"], cfg["kps_right"]):
        flip[a], flip[b] = b, a
    assert tuple(flip) == H36M17.flip_indices
    assert cfg["joints_left"] == cfg["kps_left"] and cfg["joints_right"] == cfg["kps_right"]


@torch.no_grad()
def test_parity_outputs_and_intermediates(ckpt, io):
    cfg = fixture_config(NAME)
    model = load_official(ckpt)
    assert not model.training
    assert list(model.filter_widths) == cfg["filter_widths"] and model.channels == cfg["channels"]
    assert (model.num_joints_in, model.in_features, model.num_joints_out) == (17, 2, 17)
    assert (model.receptive_field, model.pad, model.causal_shift) == (cfg["receptive_field"], cfg["pad"], 0)
    out, inter = model.forward_intermediates(io["input_2d_full"])
    close(out, io["output_full"])
    assert len(inter) == 11
    for k, v in inter.items():
        close(v, io[f"inter_full_{k}"])
    close(model(io["input_2d_full"]), io["output_full"])
    close(model(io["input_2d_rf"]), io["output_rf"])


@torch.no_grad()
def test_parity_optimized1f_shares_weights(ckpt, io):
    model = load_official(ckpt)
    fast = TemporalModelOptimized1f.from_model(model)
    assert fast.expand_conv.weight is model.expand_conv.weight
    assert fast.layers_bn[3].running_var is model.layers_bn[3].running_var
    assert list(fast.state_dict()) == list(model.state_dict())  # the reference's key order too
    close(fast(io["input_2d_windows"]), io["output_opt1f_windows"])
    close(fast(io["input_2d_rf"]), io["output_opt1f_rf"])
    copy = TemporalModelOptimized1f.from_model(model, share=False)
    assert copy.expand_conv.weight is not model.expand_conv.weight
    close(copy(io["input_2d_rf"]), io["output_opt1f_rf"])


@torch.no_grad()
def test_parity_causal(ckpt, io):
    model = load_official(ckpt, causal=True)
    assert model.causal_shift == 13
    close(model(io["input_2d_full"]), io["output_causal_full"])
    fast = TemporalModelOptimized1f.from_model(model)
    close(fast(io["input_2d_windows"]), io["output_causal_opt1f_windows"])


@pytest.mark.parametrize("causal", [False, True])
@torch.no_grad()
def test_parity_flip_averaged_evaluation(ckpt, io, causal):
    pre = "causal_" if causal else ""
    model = load_official(ckpt, causal=causal)
    seq = io["input_2d_seq"][None]  # (1, 20, 17, 2), unpadded
    padded = pad_sequence(seq, model.pad, model.causal_shift, time_dim=1)
    batch = torch.cat([padded, flip_pose(padded, H36M17.flip_indices)])  # UnchunkedGenerator's batch
    torch.testing.assert_close(batch, io[f"{pre}tta_input_batch"], atol=0, rtol=0)
    close(model(batch), io[f"{pre}tta_raw_output"])
    close(flip_average(model, padded, H36M17.flip_indices)[0], io[f"{pre}tta_output"])
    close(model.predict(seq, H36M17.flip_indices)[0], io[f"{pre}tta_output"])
    assert model.predict(seq).shape == (1, 20, 17, 3)


@pytest.mark.parametrize("causal", [False, True])
@torch.no_grad()
def test_refinement_input_and_frame_alignment(causal):
    torch.manual_seed(0)
    model = TemporalModel(17, 3, 17, filter_widths=(3, 3), channels=32, causal=causal).eval()
    rf, pad = model.receptive_field, model.pad
    x = torch.randn(2, 20, 17, 3)
    y = model(x)
    assert y.shape == (2, 20 - rf + 1, 17, 3)
    # output t is computed from the window t .. t + rf - 1 alone
    for t in (0, 5, 11):
        close(model(x[:, t : t + rf])[:, 0], y[:, t])
    # output t belongs to input frame t + pad (centre) or t + 2 pad (causal: the window's last frame)
    frame = model.predict(x)  # edge-padded: output t belongs to input frame t
    close(frame[:, pad + model.causal_shift : pad + model.causal_shift + y.shape[1]], y)
    # one output per non-overlapping window for the strided twin
    fast = TemporalModelOptimized1f.from_model(model)
    close(fast(x[:, : 2 * rf]), y[:, [0, rf]])
    # whole-sequence prediction: edge padding, T frames in, T out
    assert model.predict(x).shape == x.shape
    with pytest.raises(ValueError, match="multiple of the receptive field"):
        fast(x[:, : rf + 1])
    with pytest.raises(ValueError, match="shorter than the receptive field"):
        model(x[:, : rf - 1])
    with pytest.raises(ValueError, match=r"expected input \(B, T, 17, 3\)"):
        model(x[..., :2])


def test_causal_model_ignores_the_future():
    torch.manual_seed(1)
    model = TemporalModel(5, 2, 5, filter_widths=(3, 3, 3), channels=16, causal=True).eval()
    x = torch.randn(1, 40, 5, 2)
    y = model.predict(x)
    x[:, 25:] += 1.0
    with torch.no_grad():
        close(model.predict(x)[:, :25], y[:, :25])


def _save_run_py_layout(sd, path, numpy1_names=False, **extra):
    """A checkpoint as VideoPose3D's run.py writes it (numpy RandomState, optimizer, model_traj)."""
    obj = {
        "epoch": 80,
        "lr": 1e-3,
        "random_state": np.random.RandomState(1234).get_state(),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]},
        "model_pos": sd,
        "model_traj": None,
        "random_state_semi": None,
        **extra,
    }
    torch.save(obj, path)
    if numpy1_names:  # as a file pickled with numpy 1.x names the array constructor
        with zipfile.ZipFile(path) as z:
            files = {n: z.read(n) for n in z.namelist()}
        with zipfile.ZipFile(path, "w") as z:
            for n, data in files.items():
                z.writestr(n, data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    return path


@pytest.mark.parametrize("numpy1_names", [False, True])
def test_load_run_py_layouts_and_inference(tmp_path, numpy1_names):
    torch.manual_seed(2)
    pos = TemporalModel(16, 3, 16, filter_widths=(3, 5), channels=24)  # refinement, 15 frames
    traj = TemporalModel(16, 3, 1, filter_widths=(3, 5), channels=24)
    sd = {f"module.{k}": v for k, v in pos.state_dict().items()}
    path = _save_run_py_layout(sd, tmp_path / "vp.bin", numpy1_names, model_traj=traj.state_dict())
    m = load_official(path)
    assert (m.num_joints_in, m.in_features, m.num_joints_out) == (16, 3, 16)
    assert (m.filter_widths, m.channels, m.receptive_field, m.drop.p) == ((3, 5), 24, 15, 0.25)
    x = torch.randn(2, 15, 16, 3)
    with torch.no_grad():
        close(m(x), pos.eval()(x))
    t = load_official(path, checkpoint_key="model_traj", num_joints_in=16, dropout=0.0)
    assert (t.num_joints_in, t.in_features, t.num_joints_out, t.drop.p) == (16, 3, 1, 0.0)
    torch.save(pos.state_dict(), tmp_path / "bare.pth")  # a bare state dict
    assert load_official(tmp_path / "bare.pth", architecture="3,5").filter_widths == (3, 5)


def test_load_dense_checkpoint(tmp_path):
    dense = TemporalModel(17, 2, 17, filter_widths=(3, 3, 3), channels=16, dense=True)
    assert dense.layers_conv[2].kernel_size == (19,)
    torch.save({"model_pos": dense.state_dict()}, tmp_path / "dense.pth")
    m = load_official(tmp_path / "dense.pth", dense=True)
    assert m.dense and m.filter_widths == (3, 3, 3) and m.receptive_field == 27


def test_load_errors(tmp_path, ckpt):
    with pytest.raises(ValueError, match=r"videopose3d\.pth.*shape mismatches.*layers_conv\.2\.weight"):
        load_official(ckpt, filter_widths=[3, 3, 5])
    other = {"model_pos": {"conv1.weight": torch.zeros(4, 3, 3, 3)}, "epoch": 1}
    torch.save(other, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth: not a VideoPose3D"):
        load_official(tmp_path / "other.pth")
    sd = torch.load(ckpt, weights_only=True)["model_pos"]
    sd = {k: v for k, v in sd.items() if not k.startswith("layers_bn.3")} | {"extra.weight": torch.zeros(1)}
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"broken\.pth.*missing keys.*layers_bn\.3\.bias.*unexpected.*extra"):
        load_official(tmp_path / "broken.pth")
    torch.save({"epoch": 3, "optimizer": {}}, tmp_path / "nopos.pth")
    with pytest.raises(ValueError, match="no 'model_pos' entry"):
        load_official(tmp_path / "nopos.pth")
    with pytest.raises(ValueError, match="'model_traj' is None"):
        load_official(_save_run_py_layout(sd, tmp_path / "t.bin"), checkpoint_key="model_traj")
    with pytest.raises(TypeError, match="unknown override"):
        load_official(ckpt, kernel_size=3)


def test_published_parameter_counts(ckpt):
    cfg = fixture_config(NAME)
    builders = {"27_frames": videopose3d_27f, "81_frames": videopose3d_81f, "243_frames": videopose3d_243f}
    with torch.device("meta"):  # counts only, nothing allocated
        for name, pub in cfg["published_param_counts"].items():
            c = pub["config"]
            model = builders[name](num_joints_in=c["num_joints_in"], in_features=c["in_features"])
            assert model.receptive_field == c["receptive_field"]
            assert list(model.filter_widths) == [int(w) for w in c["architecture"].split(",")]
            assert sum(p.numel() for p in model.parameters()) == pub["param_count"], name
    fixture_model = load_official(ckpt)
    sd = torch.load(ckpt, weights_only=True)["model_pos"]
    n = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert sum(p.numel() for p in fixture_model.parameters()) == n
