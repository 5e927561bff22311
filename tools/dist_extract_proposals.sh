#!/usr/bin/env bash
# Multi-process proposal extraction with torchrun (python -m torch.distributed.run).
#
#   bash tools/dist_extract_proposals.sh CONFIG CHECKPOINT GPUS --out FILE.pkl \
#       [tools/extract_proposals.py options...]
#
# GPUS is the number of processes on this node (one per GPU; on a CPU-only
# machine, processes that use the gloo backend). Each process handles a
# disjoint share of the images; rank 0 merges the results. Environment
# variables:
#   NNODES       number of nodes                    (default 1)
#   NODE_RANK    rank of this node                  (default 0)
#   MASTER_ADDR  address of the rank-0 node         (default 127.0.0.1)
#   PORT         rendezvous port on MASTER_ADDR     (default 29500)
#   PYTHON       python interpreter                 (default python)
set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: bash $0 CONFIG CHECKPOINT GPUS --out FILE.pkl [extract_proposals.py args...]" >&2
    exit 2
fi

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(dirname "$TOOLS_DIR")

PYTHONPATH="${REPO_ROOT}${PYTHONPATH:+:${PYTHONPATH}}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS_DIR/extract_proposals.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch \
    "${@:4}"
