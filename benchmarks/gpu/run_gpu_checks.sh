#!/usr/bin/env bash
# The one script to run on the GPU machine (issue 12, item 5), from the repo
# root, with the folder made by benchmarks/gpu/prepare_carry.sh carried:
#
#   device tool: run(command="bash benchmarks/gpu/run_gpu_checks.sh",
#                    carry=["work_dirs/gpu_carry"], timeout_s=595)
#
# That machine has no internet and no mmcv (Python 3.12, torch 2.11 + CUDA
# 13, nvcc 13.0). In order, each step with its own time limit inside one
# overall budget (GPU_CHECKS_BUDGET_S, default 570 s):
#   1. install the carried wheels offline (mmengine, mmdet, pycocotools, ...)
#   2. generate the synthetic data (tools/generate_demo_data.py), in the
#      background while mmcv builds
#   3. build mmcv 2.1.0 from the carried sdist with CUDA ops for this GPU's
#      architecture only (TORCH_CUDA_ARCH_LIST from torch, MAX_JOBS = nproc,
#      CFLAGS=-g0), log in $OUT/mmcv_build.log; then a smoke test of its CUDA
#      nms and RoIAlign. On failure the exact error and what it would take
#      go to $OUT/gpu_results.md, and the checks run with torchvision's nms
#      and RoIAlign in place of mmcv's ops (benchmarks/gpu/mmcv_ext_fallback.py)
#   4. benchmarks/gpu/gpu_checks.py, one process per check, most important
#      first: amp (fp16 training), chips_vs_full, autofocus
# Results: $OUT/gpu_results.md and .json, $OUT/run.log (everything),
# $OUT/mmcv_build.log, $OUT/mmcv_build.json.
#
# GPU_CHECKS_DRY_RUN=1 runs the same flow on a CPU with the current
# environment (PYTHON=...): no wheel install, the sdist unpacked and patched
# but not built, gpu_checks.py --device cpu --dry-run on tiny data.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/work_dirs/gpu_out}
CARRY=${GPU_CARRY:-$ROOT/work_dirs/gpu_carry}
PY=${PYTHON:-python3}
BUILD_DIR=${MMCV_BUILD_DIR:-/tmp/mmsniper_mmcv_build}
DATA=${GPU_DATA:-/tmp/mmsniper_gpu_data}
DRY=${GPU_CHECKS_DRY_RUN:-0}
# per-check caps (s); a CPU dry run is slower than the GPU run
declare -A CAP=([amp]=100 [chips_vs_full]=150 [autofocus]=150)
declare -A RESERVE=([amp]=120 [chips_vs_full]=60 [autofocus]=0)
if [ "$DRY" = 1 ]; then
  BUDGET=${GPU_CHECKS_BUDGET_S:-2400}
  CAP=([amp]=400 [chips_vs_full]=700 [autofocus]=700)
  CHECK_ARGS=(--device cpu --dry-run)
  DATA_ARGS=(--num-train 2 --num-val 2 --min-size 600 --max-size 800)
else
  BUDGET=${GPU_CHECKS_BUDGET_S:-570}
  CHECK_ARGS=(--device cuda)
  DATA_ARGS=(--num-train 24 --num-val 8)
fi
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1

log() { echo "[run_gpu_checks +${SECONDS}s] $*"; }
# seconds for a step: its own cap, but never past the budget minus `reserve`
limit() {  # limit CAP RESERVE
  local left=$(( BUDGET - SECONDS - $2 ))
  (( left < $1 )) && echo $(( left > 5 ? left : 5 )) || echo "$1"
}

log "budget ${BUDGET} s; OUT=$OUT"
nvidia-smi -L || true
$PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch",
  torch.__version__, "cuda", torch.version.cuda, "gpu",
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
command -v nvcc >/dev/null && nvcc --version | tail -2
log "$(nproc) CPU cores"

# ---- 1. wheels, offline -------------------------------------------------
[ -d "$CARRY/wheels" ] || { log "ERROR: $CARRY/wheels missing: run" \
  "benchmarks/gpu/prepare_carry.sh here and carry work_dirs/gpu_carry"; exit 2; }
if [ "$DRY" = 1 ]; then
  log "dry run: not installing $(ls "$CARRY"/wheels | wc -l) wheels"
else
  timeout "$(limit 90 400)" $PY -m pip install -q --no-index --no-deps \
    --no-cache-dir "$CARRY"/wheels/*.whl || log "WARNING: wheel install failed"
fi
if [ "$DRY" != 1 ] && ! $PY -c 'import pkg_resources' 2>/dev/null; then
  log "setuptools without pkg_resources: installing the carried setuptools<81"
  timeout 60 $PY -m pip install -q --no-index --no-deps --no-cache-dir \
    "$CARRY"/setuptools/setuptools-*.whl || log "WARNING: setuptools failed"
fi
$PY -c 'import cv2, mmengine, mmdet, pycocotools, shapely, terminaltables
print("imports ok: cv2", cv2.__version__, "mmengine", mmengine.__version__,
      "mmdet", mmdet.__version__)' 2>&1 | grep -v Warning

# ---- 2. data, in the background -----------------------------------------
log "generating data in $DATA (background)"
( timeout 240 $PY tools/generate_demo_data.py --out-dir "$DATA" \
    "${DATA_ARGS[@]}" --workers 4 > "$OUT/data.txt" 2>&1 ) &
DATA_PID=$!

# ---- 3. mmcv 2.1.0 with CUDA ops ----------------------------------------
ARCH=$($PY -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' \
  2>/dev/null || echo none)
JOBS=$(nproc)
# torch's own search (CUDA_HOME, nvcc on PATH, /usr/local/cuda), logged
TORCH_CUDA_HOME=$($PY -c 'from torch.utils.cpp_extension import CUDA_HOME
print(CUDA_HOME)' 2>/dev/null)
rm -rf "$BUILD_DIR" && mkdir -p "$BUILD_DIR"
tar xzf "$CARRY"/sdist/mmcv-2.1.0.tar.gz -C "$BUILD_DIR"
SRC="$BUILD_DIR/mmcv-2.1.0"
PATCHES=""
TORCH_INC=$($PY -c 'import torch.utils.cpp_extension as c; print(c.include_paths()[0])')
if [ ! -f "$TORCH_INC/THC/THCAtomics.cuh" ]; then
  # torch dropped the THC shim: its atomics live in ATen/cuda/Atomic.cuh
  grep -rl 'THC/THCAtomics.cuh' "$SRC/mmcv/ops/csrc" | xargs -r sed -i \
    's#<THC/THCAtomics.cuh>#<ATen/cuda/Atomic.cuh>#'
  PATCHES="THC/THCAtomics.cuh -> ATen/cuda/Atomic.cuh"
fi
BUILD_T=$(limit 420 200)
log "building mmcv 2.1.0: TORCH_CUDA_ARCH_LIST=$ARCH MAX_JOBS=$JOBS" \
    "CUDA_HOME (torch's)=${TORCH_CUDA_HOME:-?} limit ${BUILD_T} s"
start=$SECONDS
if [ "$DRY" = 1 ]; then
  echo "dry run: not built (sources in $SRC, patches: ${PATCHES:-none})" \
    > "$OUT/mmcv_build.log"
  rc=0
else
  MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$ARCH MAX_JOBS=$JOBS \
    CFLAGS=-g0 timeout -k 10 "$BUILD_T" $PY -m pip install -v --no-index \
    --no-deps --no-build-isolation --no-cache-dir "$SRC" \
    > "$OUT/mmcv_build.log" 2>&1
  rc=$?
fi
BUILD_S=$(( SECONDS - start ))
STATUS=ok
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then STATUS=timeout
elif [ $rc -ne 0 ]; then STATUS=failed
fi
[ "$DRY" = 1 ] && STATUS=dry_run_not_built
if [ $STATUS = ok ]; then
  # smoke test: the compiled CUDA nms and RoIAlign on the GPU
  timeout 60 $PY - >> "$OUT/mmcv_build.log" 2>&1 <<'PYEOF' || STATUS=smoke_test_failed
import torch
from mmcv.ops import RoIAlign, nms
boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]],
                     device='cuda')
scores = torch.tensor([0.9, 0.8, 0.7], device='cuda')
_, keep = nms(boxes, scores, 0.5)
assert keep.tolist() == [0, 2], keep
feats = torch.randn(1, 4, 16, 16, device='cuda', requires_grad=True)
rois = torch.tensor([[0., 1, 1, 9, 9]], device='cuda')
out = RoIAlign((7, 7), 1.0, 0, aligned=True)(feats, rois)
out.sum().backward()
assert out.shape == (1, 4, 7, 7) and feats.grad.abs().sum() > 0
print('mmcv CUDA ops smoke test: ok')
PYEOF
fi
log "mmcv build: $STATUS in ${BUILD_S} s (rc $rc)"
STATUS=$STATUS BUILD_S=$BUILD_S ARCH=$ARCH JOBS=$JOBS PATCHES=$PATCHES \
  BUILD_LIMIT=$BUILD_T $PY - "$OUT" <<'PYEOF'
import json, os, re, sys
out = sys.argv[1]
with open(os.path.join(out, 'mmcv_build.log'), errors='replace') as f:
    log = f.read().splitlines()
status = os.environ['STATUS']
errors = [l for l in log if re.search(r'error|Error|ERROR|undefined', l)]
tail = '\n'.join((errors[:40] + ['...'] if errors else []) + log[-40:])
text = '\n'.join(log)
if status == 'ok' or status.startswith('dry_run'):
    take = ''
elif status == 'timeout':
    take = ('more time: the build was stopped after its limit of '
            f"{os.environ['BUILD_LIMIT']} s; run it alone in one call, or "
            'build the wheel (pip wheel) once on such a machine and carry it')
elif "No module named 'pkg_resources'" in text:
    take = 'setuptools<81 (carried in work_dirs/gpu_carry/setuptools)'
elif 'unsupported GNU version' in text:
    take = ('a host compiler nvcc 13 supports (NVCC_CCBIN), or '
            'MMCV_CUDA_ARGS=-allow-unsupported-compiler')
elif re.search(r'thrust|cub::|cuda/std', text):
    take = ('a patch of the files named above for CUDA 13 (CCCL 3 removed '
            'deprecated thrust/cub APIs), or a torch built with CUDA 12')
else:
    take = ('a patch of the files named in the errors above; mmcv 2.2.0 '
            'is no way out (mmdet 3.3.0 refuses mmcv >= 2.2.0)')
json.dump(dict(status=status, seconds=int(os.environ['BUILD_S']),
               arch=os.environ['ARCH'], jobs=os.environ['JOBS'],
               patches=os.environ['PATCHES'], would_take=take,
               log_tail=tail if take else ''),
          open(os.path.join(out, 'mmcv_build.json'), 'w'), indent=2)
PYEOF
if [ $STATUS != ok ] && [ "$DRY" != 1 ]; then
  export MMSNIPER_MMCV_EXT_FALLBACK=1
  # mmcv's Python code from the sources when pip installed nothing
  $PY -c 'import mmcv' 2>/dev/null || \
    export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
  log "checks run with torchvision's nms / RoIAlign in place of mmcv's ops"
fi

# ---- 4. the checks, most important first --------------------------------
wait $DATA_PID || log "WARNING: data generation failed (see data.txt)"
tail -3 "$OUT/data.txt"
for check in amp chips_vs_full autofocus; do
  t=$(limit "${CAP[$check]}" "${RESERVE[$check]}")
  log "check $check (limit $t s)"
  timeout -k 10 "$t" $PY benchmarks/gpu/gpu_checks.py --checks "$check" \
    "${CHECK_ARGS[@]}" --data-root "$DATA" --out-dir "$OUT" \
    --mmcv-build "$OUT/mmcv_build.json"
  rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    $PY benchmarks/gpu/gpu_checks.py --out-dir "$OUT" \
      --note-error "$check=stopped at its time limit of $t s"
  fi
  log "check $check: rc $rc"
done
log "done in ${SECONDS} s"
cat "$OUT/gpu_results.md"
