#!/usr/bin/env bash
# Launch mvpose training with torchrun on one node, many nodes, SLURM, or the CPU.
#
#   ./launch.sh CONFIG [train.py arguments...]        e.g. ./launch.sh configs/h36m/vol_softmax.yaml --resume
#
# Environment (all optional):
#   NPROC        processes per node (default: the GPUs of the node; on a CPU-only node 2, or 1 with one core)
#   NNODES       nodes (default 1; under SLURM: SLURM_JOB_NUM_NODES)
#   NODE_RANK    this node's rank, multi-node without SLURM (default 0)
#   MASTER_ADDR  rendezvous host (default localhost; under SLURM: the job's first node)
#   MASTER_PORT  rendezvous port (default 29500)
#   GPUS         override the GPU count detection (nvidia-smi)
#   DRY_RUN=1    print the command instead of running it
#   MVPOSE_NO_SLURM=1  inside a SLURM allocation, launch on this node only (no srun)
#
# One node:      NPROC=8 ./launch.sh configs/h36m/vol_softmax.yaml
# Many nodes:    on every node: NNODES=4 NODE_RANK=<i> MASTER_ADDR=<node0> ./launch.sh CONFIG
# SLURM:         in an sbatch script with --nodes=N --ntasks-per-node=1 --gpus-per-node=G:
#                ./launch.sh CONFIG   (one torchrun per node through srun, c10d rendezvous on the first node)
# CPU:           ./launch.sh configs/synthetic/volumetric.yaml   (gloo; one torch thread per core)
set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
CONFIG=$1
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

gpu_count() {
    if [[ -n "${GPUS:-}" ]]; then echo "$GPUS"; return; fi
    if command -v nvidia-smi > /dev/null 2>&1; then
        nvidia-smi -L 2> /dev/null | grep -c '^GPU' || true
    else
        echo 0
    fi
}

NGPU=$(gpu_count)
if [[ "$NGPU" -gt 0 ]]; then
    NPROC=${NPROC:-$NGPU}
else
    CORES=$(getconf _NPROCESSORS_ONLN 2> /dev/null || echo 1)
    NPROC=${NPROC:-$((CORES >= 2 ? 2 : 1))}
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((CORES / NPROC > 0 ? CORES / NPROC : 1))}
fi
MASTER_PORT=${MASTER_PORT:-29500}

TRAIN=("$HERE/train.py" --config "$CONFIG" "$@")

if [[ -n "${SLURM_JOB_ID:-}" && "${MVPOSE_NO_SLURM:-0}" != 1 ]]; then
    NNODES=${NNODES:-${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}}
    if [[ -z "${MASTER_ADDR:-}" ]]; then
        if command -v scontrol > /dev/null 2>&1 && [[ -n "${SLURM_JOB_NODELIST:-}" ]]; then
            MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
        else
            MASTER_ADDR=${SLURMD_NODENAME:-localhost}
        fi
    fi
    CMD=(srun --nodes="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1
        torchrun --nnodes="$NNODES" --nproc_per_node="$NPROC"
        --rdzv_id="$SLURM_JOB_ID" --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT"
        "${TRAIN[@]}")
elif [[ "${NNODES:-1}" -gt 1 ]]; then
    : "${MASTER_ADDR:?multi-node needs MASTER_ADDR (the host of node 0)}"
    : "${NODE_RANK:?multi-node needs NODE_RANK (0..NNODES-1)}"
    CMD=(torchrun --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$NPROC"
        --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" "${TRAIN[@]}")
else
    CMD=(torchrun --standalone --nnodes=1 --nproc_per_node="$NPROC" "${TRAIN[@]}")
fi

if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "${CMD[*]}"
else
    exec "${CMD[@]}"
fi
