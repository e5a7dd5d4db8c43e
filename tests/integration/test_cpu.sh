#!/usr/bin/env bash
# Run-time CPU selection (RELIABILITY E01): on a CPU without AVX (qemu's
# "qemu64" model: x86-64 baseline, no AVX, no XSAVE) every kernel test passes,
# nothing dies of SIGILL, and the scalar path is the one selected; SLM_CPU
# forces a path on this machine, and a path the CPU lacks falls back with a
# warning.
. "$(dirname "$0")/lib.sh"

UNIT=$(dirname "$SLM")/unit_tests
QEMU=$(command -v qemu-x86_64 || true)

need_qemu() {
  [ -n "$QEMU" ] || skip "qemu-x86_64 not installed (Debian package qemu-user)"
  [ -x "$UNIT" ] || skip "$UNIT not built (make build/rel/unit_tests)"
  # Sanitizer runtimes reserve shadow memory qemu-user cannot map.
  if nm "$UNIT" 2>/dev/null | grep -q __asan_init; then skip "ASan binary: run under qemu in rel only"; fi
}

# check_tap OUT: the harness summary says no failures and no test died of SIGILL.
check_tap() {
  grep -qi "illegal\|SIGILL\|signal 4" "$1" && fail "a test died of SIGILL: $(grep -i 'illegal\|signal' "$1")"
  grep -q "^not ok" "$1" && fail "failures: $(grep '^not ok' "$1")"
  grep -Eq "^[0-9]+ passed, 0 failed" "$1" || fail "no clean summary: $(tail -3 "$1")"
}

cpu_qemu64_unit_kernels_scalar() {
  need_qemu
  SLM_KERNELS_EXPECT=scalar T_FILTER=kernels_ T_TIMEOUT_MULT=10 \
    "$QEMU" -cpu qemu64 "$UNIT" >"$T_TMP/q.out" 2>&1
  check_tap "$T_TMP/q.out"
  grep -q "^ok [0-9]* - kernels_selected_path_is_expected$" "$T_TMP/q.out" ||
    fail "the selected path was not checked as scalar: $(grep selected_path "$T_TMP/q.out")"
  grep -q "kernels_avx512_vec_dot_matches_scalar # SKIP" "$T_TMP/q.out" ||
    fail "AVX-512 tests were not skipped under qemu64"
}

cpu_qemu64_quant_tests() {
  need_qemu
  T_FILTER=quant_ T_TIMEOUT_MULT=10 "$QEMU" -cpu qemu64 "$UNIT" >"$T_TMP/q.out" 2>&1
  check_tap "$T_TMP/q.out"
}

cpu_qemu64_binary_warns_and_runs() {
  need_qemu
  "$SLM" mkmodel --preset tiny --type f16 "$T_TMP/t.gguf" 2>/dev/null || skip "slm mkmodel failed"
  SLM_CPU=avx512 "$QEMU" -cpu qemu64 "$SLM" quantize "$T_TMP/t.gguf" "$T_TMP/t.q8" q8_0 \
    2>"$T_TMP/e" || fail "slm quantize under qemu64 failed: $(tail -3 "$T_TMP/e")"
  "$SLM" quantize "$T_TMP/t.gguf" "$T_TMP/n.q8" q8_0 2>/dev/null || fail "native quantize failed"
  cmp -s "$T_TMP/t.q8" "$T_TMP/n.q8" || fail "quantize under qemu64 differs from native"
  "$SLM" run --help >/dev/null 2>&1 || return 0
  SLM_CPU=avx512 "$QEMU" -cpu qemu64 "$SLM" run -m "$T_TMP/t.q8" -n 3 -p "hi" \
    >"$T_TMP/r.out" 2>"$T_TMP/r.err"
  rc=$?
  [ $rc -ne 132 ] || fail "slm run died of SIGILL under qemu64"
  [ $rc -eq 0 ] || fail "slm run under qemu64 failed ($rc): $(tail -3 "$T_TMP/r.err")"
  grep -q "SLM_CPU=avx512.*using scalar" "$T_TMP/r.err" ||
    fail "no fallback warning: $(cat "$T_TMP/r.err")"
}

cpu_env_forces_avx2_here() {
  [ -x "$UNIT" ] || skip "$UNIT not built"
  grep -qw avx2 /proc/cpuinfo || skip "this CPU has no AVX2"
  # The tests that go through the selected path (kernels_get()); the
  # kernels_{scalar,avx2,avx512}_* ones name their path and ignore SLM_CPU:
  # the unit-test stage of the same build ran them already.
  SLM_CPU=avx2 SLM_KERNELS_EXPECT=avx2 T_FILTER=kernels_ \
    T_EXCLUDE=kernels_scalar_,kernels_avx2_,kernels_avx512_ "$UNIT" >"$T_TMP/a.out" 2>&1
  check_tap "$T_TMP/a.out"
  grep -q "^ok [0-9]* - model_scalar_kernels_match_default$" "$T_TMP/a.out" ||
    fail "the model was not run on the avx2 path: $(grep -c '^ok' "$T_TMP/a.out") tests ran"
  grep -q "^ok [0-9]* - kernels_selected_path_is_expected$" "$T_TMP/a.out" ||
    fail "SLM_CPU=avx2 did not select avx2"
}

cpu_env_forces_scalar_here() {
  [ -x "$UNIT" ] || skip "$UNIT not built"
  SLM_CPU=scalar SLM_KERNELS_EXPECT=scalar T_FILTER=kernels_selected "$UNIT" >"$T_TMP/s.out" 2>&1
  check_tap "$T_TMP/s.out"
  grep -q "^ok [0-9]* - kernels_selected_path_is_expected$" "$T_TMP/s.out" ||
    fail "SLM_CPU=scalar did not select scalar"
}

export -f $(declare -F | awk '{print $3}')
export UNIT QEMU T_TMP SLM

t_run "qemu64: kernel tests pass, scalar selected, no SIGILL" cpu_qemu64_unit_kernels_scalar
t_run "qemu64: quant tests pass" cpu_qemu64_quant_tests
t_run "qemu64: slm quantize/run work, SLM_CPU=avx512 falls back" cpu_qemu64_binary_warns_and_runs
t_run "SLM_CPU=avx2 selects avx2 here" cpu_env_forces_avx2_here
t_run "SLM_CPU=scalar selects scalar here" cpu_env_forces_scalar_here
t_end
