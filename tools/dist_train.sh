#!/usr/bin/env bash
# Multi-process training with torchrun (python -m torch.distributed.run).
#
#   bash tools/dist_train.sh CONFIG GPUS [tools/train.py options...]
#
# GPUS is the number of processes on this node (one per GPU; on a CPU-only
# machine, processes that use the gloo backend). Environment variables:
#   NNODES       number of nodes                    (default 1)
#   NODE_RANK    rank of this node                  (default 0)
#   MASTER_ADDR  address of the rank-0 node         (default 127.0.0.1)
#   PORT         rendezvous port on MASTER_ADDR     (default 29500)
#   PYTHON       python interpreter                 (default python)
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: bash $0 CONFIG GPUS [train.py args...]" >&2
    exit 2
fi

CONFIG=$1
GPUS=$2
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
    "$TOOLS_DIR/train.py" \
    "$CONFIG" \
    --launcher pytorch \
    "${@:3}"
