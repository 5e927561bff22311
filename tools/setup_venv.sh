#!/usr/bin/env bash
# Create or update the project's virtual environment (idempotent).
#
#   bash tools/setup_venv.sh            # uses $VENV (default .venv)
#
# mmcv 2.1.0 is only on PyPI as source. A prebuilt wheel is taken from any
# folder in PIP_FIND_LINKS (e.g. ../shared/wheels, added automatically when
# present) or from the wheel cache; otherwise it is compiled once with its
# ops against the installed torch (about 14 min on 2 cores) and cached.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-$ROOT/.venv}
SHARED_WHEELS=${SHARED_WHEELS:-$ROOT/../shared/wheels}
WHEEL_CACHE=${MMSNIPER_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmsniper/wheels}
CONSTRAINTS=$ROOT/requirements/constraints.txt

mkdir -p "$WHEEL_CACHE"
# Setting PIP_FIND_LINKS hides pip's configured find-links: keep them.
configured_links=$("$PYTHON" -m pip config get global.find-links 2>/dev/null \
  | tr '\n' ' ' || true)
links="$WHEEL_CACHE ${PIP_FIND_LINKS:-$configured_links}"
[ -d "$SHARED_WHEELS" ] && links="$(cd "$SHARED_WHEELS" && pwd) $links"
export PIP_FIND_LINKS="$links"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup_venv] creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

echo "[setup_venv] build requirements (torch, setuptools<81, wheel, ninja)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -r "$ROOT/requirements/build.txt"

if ! "$VENV/bin/python" -c 'import mmcv, mmcv._ext' 2>/dev/null; then
  echo "[setup_venv] mmcv 2.1.0 with ops: wheel from find-links, else source build"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} CFLAGS=${CFLAGS:--g0} \
    LDFLAGS=${LDFLAGS:--s} \
    "${PIP[@]}" wheel -q --no-build-isolation --no-deps -w "$WHEEL_CACHE" \
    mmcv==2.1.0
  "${PIP[@]}" install -q --no-build-isolation -c "$CONSTRAINTS" mmcv==2.1.0
fi
"$VENV/bin/python" -c 'import mmcv._ext' || {
  echo "[setup_venv] ERROR: mmcv was installed without its compiled ops" \
       "(mmcv._ext). Remove stale mmcv wheels from $WHEEL_CACHE and rerun." >&2
  exit 1
}

echo "[setup_venv] runtime and test requirements, mmsniper (the checkout, with its configs in mmsniper/.mim)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -r "$ROOT/requirements/runtime.txt" \
  -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" install -q --no-build-isolation --no-deps --force-reinstall "$ROOT"
"$VENV/bin/python" -c 'import mmsniper, mmdet, mmcv, mmengine, torch; print(
    "[setup_venv] ready: torch", torch.__version__, "mmcv", mmcv.__version__,
    "mmengine", mmengine.__version__, "mmdet", mmdet.__version__,
    "mmsniper", mmsniper.__version__)'
