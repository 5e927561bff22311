#!/usr/bin/env bash
# Testing on a Slurm cluster: srun starts one tools/test.py process per GPU
# (--launcher slurm: mmengine reads the ranks from the SLURM_* variables).
#
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#   bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT \
#       [tools/test.py options...]
#
# Environment variables:
#   GPUS           processes (= GPUs) in all                (default 8)
#   GPUS_PER_NODE  processes (= GPUs) per node              (default 8)
#   CPUS_PER_TASK  CPU cores per process (dataloader)       (default 5)
#   SRUN_ARGS      extra srun options, split on whitespace  (default none)
#   PYTHON         python interpreter                       (default python)
# For fewer than 8 GPUs set both, e.g. GPUS=4 GPUS_PER_NODE=4.
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5]" \
        "[SRUN_ARGS=...] bash $0 PARTITION JOB_NAME CONFIG CHECKPOINT" \
        "[test.py args...]" >&2
    exit 2
fi

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}

for var in GPUS GPUS_PER_NODE CPUS_PER_TASK; do
    if ! [[ "${!var}" =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: $var must be a positive integer, got '${!var}'" >&2
        exit 2
    fi
done

TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(dirname "$TOOLS_DIR")
# word-split SRUN_ARGS without glob expansion
read -r -a SRUN_EXTRA <<< "$SRUN_ARGS"

PYTHONPATH="${REPO_ROOT}${PYTHONPATH:+:${PYTHONPATH}}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_EXTRA[@]+"${SRUN_EXTRA[@]}"} \
    "$PYTHON" -u "$TOOLS_DIR/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher=slurm \
    "${@:5}"
