"""The temporal stage's engine (``task: sequence``): configs, training, resume, protocols, dispatch."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from mvpose.engine.config import ConfigError, read_config_dict
from mvpose.engine.sequence import SequenceTrainer, load_temporal_model, lr_factor, main_sequence
from mvpose.engine.sequence_config import load_sequence_config
from mvpose.engine.sequence_data import Clip, SequenceData
from mvpose.engine.sequence_eval import score_3dhp, score_h36m
from mvpose.engine.sequence_models import SequenceTask
from mvpose.skeleton import H36M17, MPI3DHP17

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "model.videopose3d.filter_widths=[3, 3]",
    "model.videopose3d.channels=32",
    "model.srnet.filter_widths=[3, 3]",
    "model.srnet.channels=64",
    "model.poseformerv2.number_of_frames=9",
    "model.poseformerv2.number_of_kept_frames=3",
    "model.poseformerv2.number_of_kept_coeffs=3",
    "model.poseformerv2.depth=1",
    "model.poseformerv2.embed_dim_ratio=8",
    "model.pstmo.frames=9",
    "model.pstmo.stride_num=[3, 3]",
    "model.pstmo.layers=1",
    "model.pstmo.channel=32",
    "model.pstmo.d_hid=64",
    "model.tgraphnet.num_hidden_nodes=[[2, 16], [16, 16]]",
    "model.tgraphnet.gconv_stages=[1, 1]",
    "model.tgraphnet.gcn_window=[3, 3]",
    "model.tgraphnet.tcn_window=[3, 3]",
    "model.tgraphnet.in_frames=9",
    "eval.eval_chunk=3",
    "data.source=motion",
    "data.batch_size=32",
    "data.motion.procedural_train=2",
    "data.motion.procedural_test=1",
    "data.motion.procedural_frames=48",
    "data.motion.rig=2",
    "data.noise_2d.sigma_px=2.0",
    "train.epochs=1",
    "train.log_every=1",
    "train.threads_per_process=1",
    "log.progress=false",
    "log.tensorboard=false",
    "eval.batch_size=64",
]


def tiny(tmp_path: Path, *extra: str):
    return load_sequence_config(None, [f"out_dir={tmp_path}", *TINY, *extra])


# ---------------------------------------------------------------------------------------------- configs
def test_shipped_sequence_configs_load():
    paths = sorted((REPO / "configs").rglob("*.yaml"))
    seq = [p for p in paths if read_config_dict(p).get("task") == "sequence"]
    assert len(seq) >= 20
    kinds = set()
    for p in seq:
        cfg = load_sequence_config(p)
        kinds.add(cfg.model.kind)
        assert cfg.train.epochs >= 1
    assert kinds == {"videopose3d", "poseformerv2", "pstmo", "pstmo_pretrain", "srnet", "tgraphnet"}


def test_published_schedules_in_the_h36m_configs():
    vp = load_sequence_config(REPO / "configs/sequence/videopose3d_h36m_cpn.yaml")
    assert (vp.optim.lr, vp.optim.lr_decay, vp.data.batch_size, vp.train.epochs) == (1e-3, 0.95, 1024, 80)
    assert vp.model.videopose3d.filter_widths == [3, 3, 3, 3, 3] and vp.data.keypoints == "cpn_ft_h36m_dbb"
    ft = load_sequence_config(REPO / "configs/sequence/pstmo_h36m_cpn_finetune.yaml")
    assert (
        ft.model.pretrained
        and ft.optim.lr == 7e-4
        and ft.data.t_downsample == 2
        and ft.data.batch_size == 160
    )
    assert lr_factor(ft, 2) == pytest.approx(0.97**2)


def test_config_errors_name_the_key(tmp_path, capsys):
    with pytest.raises(ConfigError, match="model.videopose3d.channelz"):
        load_sequence_config(None, ["model.videopose3d.channelz=3"])
    with pytest.raises(ConfigError, match="model.kind"):
        load_sequence_config(None, ["model.kind=lstm"])
    with pytest.raises(ConfigError, match="data.input"):
        load_sequence_config(None, ["model.kind=pstmo_pretrain", "data.input=3d"])
    with pytest.raises(ConfigError, match="data.chunk_length"):
        load_sequence_config(None, ["model.kind=tgraphnet", "data.chunk_length=4"])
    with pytest.raises(ConfigError, match="data.root"):
        load_sequence_config(None, ["data.source=h36m_npz"])
    with pytest.raises(ConfigError, match="data.studio.checkpoint"):
        load_sequence_config(None, ["data.source=studio", "data.input=3d", "data.input_3d=model"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: sequence\nmodel:\n  kind: videopose3d\n  videopose3d: {channels: many}\n")
    args = argparse.Namespace(
        config=bad, overrides=[], resume=False, eval=False, checkpoint=None, verbose=False
    )
    assert main_sequence(args) == 2
    out = capsys.readouterr().out
    assert "bad.yaml" in out and "model.videopose3d.channels" in out


def test_train_py_dispatches_sequence_configs(tmp_path, capsys):
    from mvpose.engine.run import main as train_main

    cfg = tmp_path / "seq.yaml"
    cfg.write_text("task: sequence\ndata:\n  source: motion\n  motion: {rigs: 3}\n")
    assert train_main(["--config", str(cfg)]) == 2
    assert "data.motion.rigs" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- training
class _Losses:
    def __init__(self):
        self.values = []

    def after_step(self, trainer, parts):
        self.values.append(parts["total"])


def test_tiny_training_run_decreases_the_loss_and_writes_outputs(tmp_path):
    cfg = tiny(tmp_path, "train.max_steps=40", "optim.lr=3e-3", "data.batch_size=64")
    hook = _Losses()
    tr = SequenceTrainer(cfg, hooks=[hook])
    metrics = tr.train()
    assert len(hook.values) == 40
    assert np.mean(hook.values[-5:]) < 0.7 * np.mean(hook.values[:5])
    assert (tmp_path / "checkpoints" / "last.pth").is_file() and (tmp_path / "results.json").is_file()
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "history.jsonl").is_file()
    o = metrics["overall"]
    assert o["N"] == sum(c.num_frames for c in tr.data.test) and 0 < o["P-MPJPE"] < o["MPJPE"] < 1000
    # the checkpoint rebuilds the same predictions
    model, task = load_temporal_model(tmp_path / "checkpoints" / "last.pth")
    c = tr.data.test[0]
    np.testing.assert_allclose(task.predict(model, c.inputs), tr.task.predict(tr.model, c.inputs), atol=1e-6)


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def test_resume_matches_uninterrupted_run(tmp_path):
    steps = ["train.max_steps=6", "train.checkpoint_every=3", "data.batch_size=16"]
    full = SequenceTrainer(tiny(tmp_path / "full", *steps))
    full.train()
    part = SequenceTrainer(tiny(tmp_path / "part", "train.max_steps=3", "data.batch_size=16"))
    part.train()
    resumed = SequenceTrainer(tiny(tmp_path / "part", *steps), resume=True)
    assert resumed.step == 3
    resumed.train()
    a, b = _state(tmp_path / "full/checkpoints/last.pth"), _state(tmp_path / "part/checkpoints/last.pth")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("kind", ["poseformerv2", "pstmo", "srnet", "tgraphnet"])
def test_other_model_kinds_train_and_predict(tmp_path, kind):
    extra = ["data.chunk_length=3"] if kind == "tgraphnet" else []
    cfg = tiny(tmp_path, f"model.kind={kind}", "train.max_steps=2", "data.batch_size=8", *extra)
    tr = SequenceTrainer(cfg)
    m = tr.train()
    c = tr.data.test[0]
    assert tr.task.predict(tr.model, c.inputs).shape == (c.num_frames, 17, 3)
    assert np.isfinite(m["overall"]["MPJPE"])


def test_pstmo_two_stages_transfer_the_encoder(tmp_path):
    pre = SequenceTrainer(
        tiny(tmp_path / "pre", "model.kind=pstmo_pretrain", "train.max_steps=2", "data.batch_size=8")
    )
    m = pre.train()
    assert m["protocol"] == "reconstruction" and m["overall"]["reconstruction_px"] > 0
    ckpt = tmp_path / "pre/checkpoints/last.pth"
    ft = SequenceTrainer(
        tiny(tmp_path / "ft", "model.kind=pstmo", f"model.pretrained={ckpt}", "train.max_steps=1")
    )
    sd = _state(ckpt)
    own = ft.model.state_dict()
    shared = [k for k in sd if k in own]
    assert "encoder.fc_1.weight" in shared and "pos_embedding" in shared
    assert not any(k.startswith("decoder.") for k in own)
    for k in shared:
        torch.testing.assert_close(own[k].cpu(), sd[k], msg=k)


def test_refinement_uses_3d_inputs_and_reports_the_input_baseline(tmp_path):
    cfg = tiny(
        tmp_path, "data.input=3d", "data.input_3d=noise_model", "data.noise_3d.std_mm=30", "train.max_steps=2"
    )
    tr = SequenceTrainer(cfg)
    m = tr.train()
    assert tr.task.refine and tr.task.residual
    assert 25 < m["input_baseline"]["MPJPE"] < 80  # 30 mm per axis, root-relative: sqrt(2) * 30 * 1.6
    c = tr.data.test[0]
    assert c.inputs.shape == c.target.shape and c.key[2] == "world"


# -------------------------------------------------------------------------------------------- protocols
def _results(rng, n=3, T=20, J=17, root=0):
    out = []
    for i in range(n):
        tgt = rng.normal(0, 200, (T, J, 3))
        tgt -= tgt[:, root : root + 1]
        pred = tgt + rng.normal(0, 30, (T, J, 3))
        out.append(
            {
                "key": ("S9" if i < 2 else "S11", ["Walking 1", "Walking", "Eating 2"][i], "c"),
                "pred": pred,
                "target": tgt,
                "valid": None,
            }
        )
    return out


def test_h36m_protocols_match_direct_computation():
    from mvpose.metrics import p_mpjpe

    res = _results(np.random.default_rng(0))
    m = score_h36m(res)
    e1 = [np.linalg.norm(r["pred"] - r["target"], axis=-1).mean(-1) for r in res]
    ev = [
        np.linalg.norm(np.diff(r["pred"], axis=0) - np.diff(r["target"], axis=0), axis=-1).mean(-1)
        for r in res
    ]
    assert m["overall"]["MPJPE"] == pytest.approx(np.concatenate(e1).mean())
    assert m["overall"]["MPJVE"] == pytest.approx(np.concatenate(ev).mean())
    walk = np.concatenate(e1[:2]).mean()  # "Walking 1" and "Walking" are one action
    assert set(m["per_action"]) == {"Walking", "Eating"}
    assert m["per_action"]["Walking"]["MPJPE"] == pytest.approx(walk)
    assert m["action_mean"]["MPJPE"] == pytest.approx((walk + e1[2].mean()) / 2)
    assert m["per_subject"]["S11"]["MPJPE"] == pytest.approx(e1[2].mean())
    p2 = float(p_mpjpe(np.concatenate([r["pred"] for r in res]), np.concatenate([r["target"] for r in res])))
    assert m["overall"]["P-MPJPE"] == pytest.approx(p2)
    assert m["overall"]["P-MPJPE"] < m["overall"]["MPJPE"]


def test_3dhp_pck_auc_use_only_the_valid_frames():
    from mvpose.data.sequences import MPI3DHP_PCK_JOINTS

    rng = np.random.default_rng(1)
    res = _results(rng, n=2, T=30, root=14)
    res[0]["key"], res[1]["key"] = ("TS1", "test", "0"), ("TS5", "test", "0")
    for r in res:
        r["valid"] = rng.random(30) > 0.3
        r["pred"][~r["valid"]] += 5000.0  # invalid frames are garbage and must not count
    m = score_3dhp(res, root=14)
    p = np.concatenate([r["pred"][r["valid"]] for r in res])
    q = np.concatenate([r["target"][r["valid"]] for r in res])
    p, q = p - p[:, 14:15], q - q[:, 14:15]
    err = np.linalg.norm(p - q, axis=-1)[:, list(MPI3DHP_PCK_JOINTS["pstmo"])]
    assert m["overall"]["PCK"] == pytest.approx((err < 150).mean() * 100)
    thr = np.arange(0, 151, 5)
    assert m["overall"]["AUC"] == pytest.approx((err[..., None] < thr).mean() * 100)
    assert m["overall"]["frames"] == sum(int(r["valid"].sum()) for r in res)
    assert set(m["per_sequence"]) == {"TS1", "TS5"}


def test_flip_tta_is_videopose3d_averaging(tmp_path):
    cfg = tiny(tmp_path)
    x = np.random.default_rng(2).normal(0, 0.3, (12, 17, 2))
    data = SequenceData([Clip(("s", "a", "c"), x, None)], [], H36M17, H36M17.flip_indices)
    task = SequenceTask(cfg, data)
    torch.manual_seed(0)
    model = task.build().eval()
    from mvpose.data.sequences import flip_pose, pad_sequence

    xp = pad_sequence(torch.from_numpy(x).float(), task.pad, 0, time_dim=0)[None]
    with torch.no_grad():
        y = model(xp)[0]
        yf = flip_pose(model(flip_pose(xp, H36M17.flip_indices)), H36M17.flip_indices)[0]
    np.testing.assert_allclose(task.predict(model, x, tta=False), y.double().numpy(), atol=1e-6)
    np.testing.assert_allclose(task.predict(model, x, tta=True), ((y + yf) / 2).double().numpy(), atol=1e-6)
    assert not np.allclose(task.predict(model, x, tta=True), task.predict(model, x, tta=False), atol=1e-4)


def test_3dhp_clips_use_the_mpi3dhp_skeleton(tmp_path):
    from mvpose.data.sequences import save_npz

    rng = np.random.default_rng(3)

    def item(T):
        return {
            "data_2d": rng.uniform(0, 2048, (T, 17, 2)),
            "data_3d": rng.normal(0, 300, (T, 17, 3)) + [0, 0, 4000],
        }

    train = {f"S{s} Seq1": [{c: item(30) for c in ("0", "1")}, 25] for s in (1, 2)}
    test = {f"TS{k}": {**item(20), "valid": (rng.random(20) > 0.2).astype(np.float64)} for k in (1, 2)}
    save_npz(tmp_path / "data_train_3dhp.npz", data=train)
    save_npz(tmp_path / "data_test_3dhp.npz", data=test)
    cfg = tiny(
        tmp_path / "run",
        "data.source=3dhp_npz",
        f"data.root={tmp_path}",
        "train.max_steps=1",
        "data.batch_size=8",
    )
    tr = SequenceTrainer(cfg)
    m = tr.train()
    assert tr.data.skeleton is MPI3DHP17 and tr.task.root == 14
    assert m["protocol"] == "3dhp" and set(m["per_sequence"]) == {"TS1", "TS2"}
    assert m["overall"]["frames"] == sum(int(c.valid.sum()) for c in tr.data.test)


# ------------------------------------------------------------------------------------------- mvpose eval
def test_mvpose_eval_scores_a_sequence_checkpoint(tmp_path, capsys):
    from mvpose.commands import eval as eval_cmd

    tr = SequenceTrainer(tiny(tmp_path / "run", "train.max_steps=2"))
    ref = tr.train()
    parser = argparse.ArgumentParser()
    eval_cmd.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "eval",
            "--checkpoint",
            str(tmp_path / "run/checkpoints/last.pth"),
            "--out-dir",
            str(tmp_path / "ev"),
        ]
    )
    assert args.func(args) == 0
    import json

    got = json.loads((tmp_path / "ev" / "results_eval.json").read_text())["metrics"]["overall"]
    assert got["MPJPE"] == pytest.approx(ref["overall"]["MPJPE"], rel=1e-6)
    assert "MPJVE" in capsys.readouterr().out
