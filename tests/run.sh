#!/usr/bin/env bash
# Runs the unit tests and the integration tests of one build variant and
# writes their summary lines to build/summary-VARIANT-*.txt.
# usage: tests/run.sh BUILD_DIR VARIANT [unit|integ]  (both when not given)
#
# TEST_JOBS (default: the number of CPUs) unit tests and integration scripts
# run at a time; each one's output is still printed in one piece.
set -u
build=$1 variant=$2 part=${3:-both}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
jobs=${TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || jobs=1
mult=1
[ "$variant" = rel ] || mult=4
export T_TIMEOUT_MULT=$mult
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# stage_time NAME: prints the wall time of the stage that started at $t0.
stage_time() { echo "# $1: $(( ($(date +%s%N) - t0) / 1000000000 )) s"; }

# unit: the unit tests, T_JOBS at a time.
unit() {
  echo "== unit tests ($variant)"
  t0=$(date +%s%N)
  T_JOBS=$jobs "$build/unit_tests" | tee "build/summary-$variant-unit.txt.tmp"
  unit_rc=${PIPESTATUS[0]}
  tail -n 1 "build/summary-$variant-unit.txt.tmp" > "build/summary-$variant-unit.txt"
  rm -f "build/summary-$variant-unit.txt.tmp"
  stage_time "unit tests ($variant)"
}

# integ: the integration scripts, T_INTEG_JOBS at a time.
integ() {
  echo "== integration tests ($variant)"
  t0=$(date +%s%N)
  SLM="$root/$build/slm" SLM_VARIANT=$variant T_INTEG_JOBS=$jobs tests/integration/run.sh |
    tee "build/summary-$variant-integ.txt.tmp"
  integ_rc=${PIPESTATUS[0]}
  tail -n 1 "build/summary-$variant-integ.txt.tmp" > "build/summary-$variant-integ.txt"
  rm -f "build/summary-$variant-integ.txt.tmp"
  stage_time "integration tests ($variant)"
}

unit_rc=0 integ_rc=0
case $part in
  unit) unit ;;
  integ) integ ;;
  both) unit; integ ;;
  *) echo "usage: tests/run.sh BUILD_DIR VARIANT [unit|integ]" >&2; exit 2 ;;
esac
[ "$unit_rc" -eq 0 ] && [ "$integ_rc" -eq 0 ]
