#!/usr/bin/env bash
# Mutation testing (mutmut) of the numpy chip core and of the crop
# transform; see tests/MUTATION.md. Slow (about an hour on 2 cores): not
# part of `make test` or CI. Run it before and after touching the core.
#
#   bash tools/mutation.sh [chips|crop|all]     # or: make mutation
#
# Each target runs in a fresh copy of mmsniper/ and tests/ under
# $MUTATION_DIR (default work_dirs/mutation/<target>), with only the fast
# tests of that code: tests/test_chips for mmsniper/chips/, the two crop
# test files for chip_crop.py. Results: <target>/results.txt (mutmut's list
# of the mutants not killed) and <target>/survivors.diff (their diffs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
OUT=${MUTATION_DIR:-$ROOT/work_dirs/mutation}
CHILDREN=${MUTATION_CHILDREN:-2}
WHAT=${1:-all}

run_target() {
  local name=$1 only=$2
  shift 2
  local dir=$OUT/$name
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$ROOT/mmsniper" "$ROOT/tests" "$ROOT/setup.cfg" "$dir/"
  find "$dir" -name __pycache__ -prune -exec rm -rf {} +
  # Error messages are wording, not behaviour: statements that build an
  # exception or a warning are not mutated (their conditions are).
  {
    echo
    echo '[mutmut]'
    echo 'source_paths = mmsniper'
    echo "only_mutate = $only"
    echo 'do_not_mutate_patterns ='
    echo '    ^\s*raise \w+\('
    echo '    ^\s*raise self\._error\('
    echo '    ^\s*warnings\.warn\('
    echo 'use_git_change_detection = false'
    # mutmut's limit is wall time, (estimated + constant) x multiplier.
    # Its defaults (1 s, x15) turn fast crop survivors into false timeouts
    # on a loaded machine and let an endless loop in the chip core (tests:
    # about 55 s) run 14 minutes.
    echo 'timeout_constant = 30'
    echo 'timeout_multiplier = 4'
    # The mutated copy imports mutmut's trampolines: the tests that read
    # the source for its imports (pure numpy) cannot pass there.
    echo 'pytest_add_cli_args ='
    echo '    -p'
    echo '    mutation_plugin'
    echo '    -k'
    echo '    not pure_numpy'
    echo 'pytest_add_cli_args_test_selection ='
    printf '    %s\n' "$@"
  } >> "$dir/setup.cfg"
  echo "[mutation] $name: mutating $only with $*" \
       "($CHILDREN workers, log $dir/run.log)"
  (cd "$dir" && PYTHONPATH="$dir/tests" nice -n 19 "$PY" -m mutmut run \
     --max-children "$CHILDREN" > run.log 2>&1) || {
    echo "[mutation] $name: mutmut failed, see $dir/run.log" >&2
    return 1
  }
  (cd "$dir" && "$PY" -m mutmut results --all true > all.txt 2>&1 || true)
  (cd "$dir" && "$PY" -m mutmut results > results.txt 2>&1 || true)
  (cd "$dir" && while read -r mutant _; do
     mutant=${mutant%:}
     [ -n "$mutant" ] && "$PY" -m mutmut show "$mutant" && echo
   done < results.txt > survivors.diff 2>&1 || true)
  "$PY" - "$dir/all.txt" <<'PYEOF'
import collections, sys
counts = collections.Counter(
    line.rsplit(':', 1)[1].strip() for line in open(sys.argv[1])
    if ':' in line)
checked = sum(counts.values()) - counts['not checked']
detected = counts['killed'] + counts['timeout']
print(f'[mutation] {dict(counts)}; detected (killed + timeout) '
      f'{detected}/{checked} checked = {100 * detected / max(checked, 1):.1f} %')
PYEOF
}

case $WHAT in
  chips|all)
    run_target chips 'mmsniper/chips/*' tests/test_chips ;;&
  crop|all)
    run_target crop mmsniper/datasets/transforms/chip_crop.py \
      tests/test_datasets/test_transforms/test_chip_crop.py \
      tests/test_datasets/test_transforms/test_chip_crop_mutants.py ;;
  chips) ;;
  *) echo "usage: $0 [chips|crop|all]" >&2; exit 2 ;;
esac
