#!/usr/bin/env bash
# Download, on a machine with access to PyPI, everything the GPU machine of
# benchmarks/gpu/run_gpu_checks.sh lacks (it has no internet and no mmcv), into
# an ignored folder that the device tool carries with the working tree:
#
#   bash benchmarks/gpu/prepare_carry.sh            # -> work_dirs/gpu_carry
#
# What the GPU machine has (its image: Python 3.12, torch 2.11 + CUDA 13,
# nvcc 13.0, numpy, opencv-python-headless, matplotlib, scipy, pillow, pyyaml,
# rich, six, tqdm, packaging, setuptools, ninja) is not carried. Carried:
#   * the mmcv 2.1.0 source distribution (PyPI has no wheel of it), built
#     there with CUDA ops by run_gpu_checks.sh;
#   * py3 / cp312 manylinux x86_64 wheels of mmengine, mmdet, pycocotools,
#     shapely and the pure-python packages they import that the image lacks,
#     each at the version pinned in requirements/constraints.txt;
#   * a setuptools<81 wheel (mmcv 2.1.0's setup.py imports pkg_resources,
#     which setuptools 81 removed), installed there only if the image's
#     setuptools has no pkg_resources.
# Fails if the folder is over the device tool's 64 MiB carry limit (which the
# working tree shares: the script prints both).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-$ROOT/work_dirs/gpu_carry}
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
CONSTRAINTS=$ROOT/requirements/constraints.txt
LIMIT_MIB=64

pin() {  # the version pinned in constraints.txt (case-insensitive name)
  local v
  v=$(grep -i "^$1==" "$CONSTRAINTS" | head -1 | cut -d= -f3)
  [ -n "$v" ] || { echo "[prepare_carry] $1 is not pinned in $CONSTRAINTS" >&2; exit 1; }
  echo "$v"
}

# The GPU machine's image has these (device README / KINDS.md): not carried.
#   numpy matplotlib scipy six tqdm pyyaml rich pillow packaging
#   opencv-python-headless (cv2) tifffile ninja cython
WHEELS=(mmengine mmdet pycocotools shapely terminaltables termcolor addict
        yapf platformdirs)

rm -rf "$DEST"
mkdir -p "$DEST/wheels" "$DEST/sdist"
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "[prepare_carry] mmcv $(pin mmcv) source distribution"
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$DEST/sdist" \
  "mmcv==$(pin mmcv)"

PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64)
for name in "${WHEELS[@]}"; do
  ver=$(pin "$name")
  echo "[prepare_carry] $name==$ver (cp312 / py3 wheel)"
  "$PY" -m pip download -q --no-deps --only-binary :all: \
    --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
    -d "$DEST/wheels" "$name==$ver"
done
echo "[prepare_carry] setuptools<81 (pkg_resources for mmcv's setup.py)"
"$PY" -m pip download -q --no-deps --only-binary :all: \
  --python-version 3.12 -d "$DEST/setuptools" "setuptools==$(pin setuptools)"

echo "[prepare_carry] carried files:"
(cd "$DEST" && find . -type f -printf '%10s  %p\n' | sort -k2)
bytes=$(du -sb "$DEST" | cut -f1)
tree_bytes=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "[prepare_carry] $DEST: $bytes bytes ($(( bytes / 1024 )) KiB);" \
     "working tree that travels with it: $tree_bytes bytes;" \
     "together $(( (bytes + tree_bytes) / 1024 )) KiB of the ${LIMIT_MIB} MiB limit"
if [ $(( bytes + tree_bytes )) -gt $(( LIMIT_MIB * 1024 * 1024 )) ]; then
  echo "[prepare_carry] ERROR: over the device tool's ${LIMIT_MIB} MiB limit" >&2
  exit 1
fi
echo "[prepare_carry] carry: work_dirs/gpu_carry (run from the repo root)"
