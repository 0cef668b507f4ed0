"""Two-process gloo DDP under torchrun on the tiny config: the loss falls, the ranks end with
identical parameters, and validation metrics do not depend on the number of processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _torchrun(nproc: int, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    # a fixed set of 4 training samples seen again and again: the loss must fall
    _torchrun(
        2,
        str(HERE / "ddp_check.py"),
        str(out),
        "12",
        "data.train_samples=4",
        "optim.lr=2e-3",
        "data.val_samples=7",
    )
    return out


def test_two_rank_parameters_identical(ddp_run):
    a = torch.load(ddp_run / "rank0.pt", weights_only=True)
    b = torch.load(ddp_run / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_loss_decreases(ddp_run):
    rows = [json.loads(x) for x in (ddp_run / "history.jsonl").read_text().splitlines()]
    loss = [r["keypoints"] for r in rows if r["tag"] == "train"]
    assert len(loss) == 12
    first, last = sum(loss[:3]) / 3, sum(loss[-3:]) / 3
    assert last < 0.8 * first, loss


def test_validation_does_not_depend_on_rank_count(ddp_run):
    ckpt = ddp_run / "checkpoints" / "last.pth"
    results = {}
    for n in (1, 2):
        out = ddp_run / f"eval{n}"
        overrides = [f"out_dir={out}", "data.val_samples=7"]  # odd: the shards are unequal
        tiny = [x for x in _tiny(ddp_run) if not x.startswith(("out_dir=", "data.val_samples="))]
        sets = [a for o in (*tiny, *overrides) for a in ("--set", o)]
        _torchrun(n, "train.py", "--eval", "--checkpoint", str(ckpt), *sets)
        results[n] = json.loads((out / "results_eval.json").read_text())["metrics"]
    assert results[1]["overall"]["N"] == results[2]["overall"]["N"] == 7
    trained = json.loads((ddp_run / "results.json").read_text())[
        "metrics"
    ]  # scored by the 2 ranks in training
    for k, v in results[1]["overall"].items():
        assert results[2]["overall"][k] == pytest.approx(v, rel=1e-9, abs=1e-9), k
        assert trained["overall"][k] == pytest.approx(v, rel=1e-9, abs=1e-9), k


def _tiny(out: Path) -> list[str]:
    from engine_helpers import tiny_overrides

    return tiny_overrides(out)
