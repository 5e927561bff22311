#!/usr/bin/env bash
# SNIPER training with negative chips: the three steps of the reference
# recipe (SNIPER_SPEC.md section 3).
#
#   bash tools/train_with_negatives.sh RPN_CONFIG DET_CONFIG WORK_DIR [train.py args...]
#
#   1. train the proposal RPN on positive chips only:
#        tools/train.py RPN_CONFIG --work-dir WORK_DIR/rpn
#   2. extract its proposals on the training images (top 300 per scale after
#      NMS 0.7, scales merged, NMS 0.7 again):
#        tools/extract_proposals.py RPN_CONFIG <last RPN checkpoint> \
#            --out WORK_DIR/proposals.pkl
#   3. train the detector with negative chips mined from them:
#        tools/train.py DET_CONFIG --work-dir WORK_DIR/det --cfg-options \
#            train_dataloader.dataset.neg_proposals.file=WORK_DIR/proposals.pkl
#
# Extra arguments go to step 3 (tools/train.py of the detector).
# Re-running continues where it stopped: steps 1 and 3 resume from the last
# checkpoint of their work dir; step 2 runs with --resume --force, so it
# skips the images already extracted with the same RPN checkpoint (sha256 of
# the file) and the same settings, and computes everything else again: parts
# or a proposals.pkl of another checkpoint or other EXTRACT_ARGS are deleted
# (the tool logs a warning saying what differed). Environment variables:
#   GPUS            processes per step (default 1; > 1 uses tools/dist_*.sh)
#   PYTHON          python interpreter (default python)
#   RPN_ARGS        extra tools/train.py arguments of step 1 (word-split)
#   EXTRACT_ARGS    extra tools/extract_proposals.py arguments of step 2
#                   (word-split), e.g. "--scales 1400,2000 800,1280 480,512"
#   PORT, NNODES, NODE_RANK, MASTER_ADDR   passed to tools/dist_*.sh
#
# Example (the demo data):
#   bash tools/train_with_negatives.sh \
#       configs/sniper/rpn_r18-slim_fpn_sniper-demo_synthetic.py \
#       configs/sniper/faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py \
#       work_dirs/demo_negatives
set -euo pipefail

usage() {
    echo "usage: bash $0 RPN_CONFIG DET_CONFIG WORK_DIR [train.py args...]"
    echo "  1. train the RPN on positive chips only   -> WORK_DIR/rpn"
    echo "  2. extract its proposals (train images)   -> WORK_DIR/proposals.pkl"
    echo "  3. train the detector with negative chips -> WORK_DIR/det"
    echo "  env: GPUS (processes, default 1), PYTHON, RPN_ARGS, EXTRACT_ARGS;"
    echo "  see the header of $0 for details"
}

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
esac
if [ "$#" -lt 3 ]; then
    usage >&2
    exit 2
fi

RPN_CONFIG=$1
DET_CONFIG=$2
WORK_DIR=$3
shift 3
GPUS=${GPUS:-1}
PYTHON=${PYTHON:-python}
export PYTHON
RPN_ARGS=${RPN_ARGS:-}
EXTRACT_ARGS=${EXTRACT_ARGS:-}

for f in "$RPN_CONFIG" "$DET_CONFIG"; do
    if [ ! -f "$f" ]; then
        echo "error: config $f not found" >&2
        exit 2
    fi
done
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: GPUS must be a positive integer, got '$GPUS'" >&2
    exit 2
fi

TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
RPN_DIR="$WORK_DIR/rpn"
DET_DIR="$WORK_DIR/det"
PROPOSALS="$WORK_DIR/proposals.pkl"
mkdir -p "$WORK_DIR"

train() {  # train CONFIG WORK_DIR [args...]
    local config=$1 dir=$2
    shift 2
    local resume=()
    if [ -s "$dir/last_checkpoint" ]; then
        resume=(--resume)
    fi
    if [ "$GPUS" -gt 1 ]; then
        bash "$TOOLS_DIR/dist_train.sh" "$config" "$GPUS" --work-dir "$dir" \
            ${resume[@]+"${resume[@]}"} "$@"
    else
        "$PYTHON" "$TOOLS_DIR/train.py" "$config" --work-dir "$dir" \
            ${resume[@]+"${resume[@]}"} "$@"
    fi
}

echo "==> [1/3] training the proposal RPN: $RPN_CONFIG -> $RPN_DIR"
# shellcheck disable=SC2086
train "$RPN_CONFIG" "$RPN_DIR" $RPN_ARGS

if [ ! -s "$RPN_DIR/last_checkpoint" ]; then
    echo "error: no $RPN_DIR/last_checkpoint after step 1" >&2
    exit 1
fi
CHECKPOINT=$(cat "$RPN_DIR/last_checkpoint")
if [ ! -f "$CHECKPOINT" ]; then
    echo "error: the last RPN checkpoint $CHECKPOINT does not exist" >&2
    exit 1
fi

echo "==> [2/3] extracting proposals with $CHECKPOINT -> $PROPOSALS"
# The tool reuses only parts (and a proposals.pkl) that record this very
# checkpoint's sha256 and the same settings; --force deletes the others.
rm -f "$PROPOSALS.checkpoint"  # the stamp file of older versions
# shellcheck disable=SC2086
if [ "$GPUS" -gt 1 ]; then
    bash "$TOOLS_DIR/dist_extract_proposals.sh" "$RPN_CONFIG" "$CHECKPOINT" \
        "$GPUS" --out "$PROPOSALS" --resume --force $EXTRACT_ARGS
else
    "$PYTHON" "$TOOLS_DIR/extract_proposals.py" "$RPN_CONFIG" "$CHECKPOINT" \
        --out "$PROPOSALS" --resume --force $EXTRACT_ARGS
fi
if [ ! -s "$PROPOSALS" ]; then
    echo "error: step 2 wrote no $PROPOSALS" >&2
    exit 1
fi

echo "==> [3/3] training the detector with negative chips: $DET_CONFIG -> $DET_DIR"
train "$DET_CONFIG" "$DET_DIR" \
    --cfg-options "train_dataloader.dataset.neg_proposals.file=$PROPOSALS" "$@"
echo "==> done: detector in $DET_DIR, proposals in $PROPOSALS"
