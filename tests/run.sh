#!/usr/bin/env bash
# Runs the unit tests and the integration tests of one build variant and
# writes their summary lines to build/summary-VARIANT-*.txt.
# usage: tests/run.sh BUILD_DIR VARIANT
set -u
build=$1 variant=$2
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
mult=1
[ "$variant" = rel ] || mult=4
export T_TIMEOUT_MULT=$mult
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

echo "== unit tests ($variant)"
"$build/unit_tests" | tee "build/summary-$variant-unit.txt.tmp"
unit_rc=${PIPESTATUS[0]}
tail -n 1 "build/summary-$variant-unit.txt.tmp" > "build/summary-$variant-unit.txt"
rm -f "build/summary-$variant-unit.txt.tmp"

echo "== integration tests ($variant)"
SLM="$root/$build/slm" SLM_VARIANT=$variant tests/integration/run.sh | tee "build/summary-$variant-integ.txt.tmp"
integ_rc=${PIPESTATUS[0]}
tail -n 1 "build/summary-$variant-integ.txt.tmp" > "build/summary-$variant-integ.txt"
rm -f "build/summary-$variant-integ.txt.tmp"

[ "$unit_rc" -eq 0 ] && [ "$integ_rc" -eq 0 ]
