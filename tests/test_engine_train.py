"""The training loop in one process: exact resume, atomic checkpoints, evaluation against a direct
computation, TensorBoard/results outputs, ``load_model``."""

from __future__ import annotations

import json

import pytest
import torch
from engine_helpers import tiny_config

from mvpose.engine import load_checkpoint, load_model, save_checkpoint
from mvpose.engine.checkpoint import CheckpointError
from mvpose.engine.trainer import Trainer
from mvpose.metrics import mpjpe, p_mpjpe


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_matches_uninterrupted_run(tmp_path):
    full = Trainer(tiny_config(tmp_path / "full", steps=4))
    full.train()
    part = Trainer(tiny_config(tmp_path / "part", steps=2))
    part.train()
    resumed = Trainer(tiny_config(tmp_path / "part", steps=4), resume=True)
    assert resumed.step == 2
    resumed.train()
    a, b = _weights(full.model), _weights(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # the optimizer moved the weights: the comparison is not trivially between initial states
    init = Trainer(tiny_config(tmp_path / "init", steps=0)).model.state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a if a[k].is_floating_point())


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "step": 1, "config": {}})

    def crash(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise KeyboardInterrupt  # e.g. the job is killed mid-write

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "step": 2, "config": {}})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left


def test_corrupt_and_foreign_checkpoints_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x04 not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(foreign)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"format": "mvpose-checkpoint/1", "model": Evil(), "step": 0, "config": {}}, evil)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_checkpoint(evil)  # weights_only refuses arbitrary objects


def test_evaluation_matches_direct_computation_and_outputs_exist(tmp_path):
    tr = Trainer(
        tiny_config(tmp_path / "run", steps=2, extra=["log.tensorboard=true", "train.image_every=1"])
    )
    metrics = tr.train()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["metrics"]["overall"]["N"] == len(tr.val_set) == 6
    # direct: the loaded checkpoint on every validation sample, one at a time
    model = load_model(tr.checkpoint_path)
    preds, gts = [], []
    with torch.no_grad():
        for i in range(len(tr.val_set)):
            s = tr.val_set[i]
            from mvpose.data.collate import collate_multiview, rig_from_batch

            b = collate_multiview([s])
            P = rig_from_batch(b).projection_matrices().float()
            preds.append(model(b["images"], P, b["root_3d"])["keypoints_3d"][0].double())
            gts.append(s["keypoints_3d"])
    pred, gt = torch.stack(preds), torch.stack(gts)
    o = metrics["overall"]
    assert o["MPJPE-abs"] == pytest.approx(float(mpjpe(pred, gt)), rel=1e-4)
    assert o["MPJPE"] == pytest.approx(float(mpjpe(pred, gt, root=6)), rel=1e-4)
    assert o["P-MPJPE"] == pytest.approx(float(p_mpjpe(pred, gt)), rel=1e-4)
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert tr.png_path == tmp_path / "run" / "pred_vs_gt.png" and tr.png_path.stat().st_size > 10_000
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if h["tag"] == "train"] == [1, 2]
    assert load_checkpoint(tr.checkpoint_path)["config"]["model"]["kind"] == "volumetric"
    # `mvpose eval` on the checkpoint (its stored config) gives the same table
    from mvpose.cli import main as cli

    assert cli(["eval", "--checkpoint", str(tr.checkpoint_path), "--out-dir", str(tmp_path / "ev")]) == 0
    again = json.loads((tmp_path / "ev" / "results_eval.json").read_text())["metrics"]["overall"]
    assert again["MPJPE"] == pytest.approx(o["MPJPE"], rel=1e-9) and again["N"] == 6


@pytest.mark.parametrize("kind", ["algebraic", "contextpose"])
def test_other_model_kinds_train(tmp_path, kind):
    extra = {
        "contextpose": ["loss.global_attention_weight=1e6", "model.volume_size=16"],
        "algebraic": ["model.use_confidences=false"],  # its head needs >= 128 px crops
    }[kind]
    tr = Trainer(tiny_config(tmp_path / kind, kind=kind, steps=2, extra=extra))
    m = tr.train()
    assert m["overall"]["N"] == 6 and m["overall"]["MPJPE"] == m["overall"]["MPJPE"]  # finite, not NaN


@pytest.mark.parametrize("kind", ["algebraic", "volumetric", "contextpose"])
def test_every_trainable_parameter_gets_a_gradient(tmp_path, kind):
    """What DDP (find_unused_parameters=False) requires of each model kind."""
    from mvpose.data.collate import collate_multiview
    from mvpose.engine.build import build_datasets, build_model
    from mvpose.engine.task import MultiViewTask

    extra = {
        "contextpose": ["loss.global_attention_weight=1e6", "model.volume_size=16"],
        "algebraic": ["model.use_confidences=false"],
        "volumetric": [],
    }[kind]
    cfg = tiny_config(tmp_path, kind=kind, extra=extra)
    net, task = build_model(cfg).train(), MultiViewTask(cfg)
    train, _ = build_datasets(cfg)
    batch = collate_multiview([train[0], train[1]])
    loss, _ = task.loss(task.forward(net, batch), batch, step=0)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
