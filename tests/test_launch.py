"""launch.sh builds the right torchrun command for one node, many nodes, SLURM and the CPU."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch.sh"


def _dry(env: dict[str, str], *args: str) -> str:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM", "NNODES", "NODE_RANK", "MASTER", "NPROC"))
    }
    res = subprocess.run(
        ["bash", str(LAUNCH), "configs/synthetic/volumetric.yaml", *args],
        env={**base, "DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_single_node_gpus():
    cmd = _dry({"GPUS": "8"}, "--resume")
    assert cmd.startswith("torchrun --standalone --nnodes=1 --nproc_per_node=8 ")
    assert cmd.endswith("train.py --config configs/synthetic/volumetric.yaml --resume")


def test_cpu_fallback():
    cmd = _dry({"GPUS": "0", "NPROC": "2"})
    assert "--nproc_per_node=2" in cmd and "--standalone" in cmd


def test_multi_node():
    cmd = _dry(
        {"GPUS": "4", "NNODES": "3", "NODE_RANK": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"}
    )
    for part in (
        "--nnodes=3",
        "--node_rank=2",
        "--nproc_per_node=4",
        "--master_addr=10.0.0.1",
        "--master_port=1234",
    ):
        assert part in cmd, cmd
    assert "--standalone" not in cmd


def test_multi_node_needs_master():
    res = subprocess.run(
        ["bash", str(LAUNCH), "c.yaml"],
        env={"PATH": os.environ["PATH"], "DRY_RUN": "1", "NNODES": "2", "GPUS": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode != 0 and "MASTER_ADDR" in res.stderr


def test_slurm():
    env = {"GPUS": "4", "SLURM_JOB_ID": "777", "SLURM_JOB_NUM_NODES": "2", "MASTER_ADDR": "gpu01"}
    cmd = _dry(env, "--set", "optim.lr=1e-4")
    assert cmd.startswith("srun --nodes=2 --ntasks-per-node=1")
    for part in (
        "torchrun --nnodes=2",
        "--nproc_per_node=4",
        "--rdzv_id=777",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=gpu01:29500",
        "--set optim.lr=1e-4",
    ):
        assert part in cmd, cmd


@pytest.mark.parametrize("args", [[]])
def test_usage_without_config(args):
    res = subprocess.run(["bash", str(LAUNCH), *args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "NNODES" in res.stdout
