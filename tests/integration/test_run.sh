#!/usr/bin/env bash
# slm run: deterministic greedy and seeded sampling, -n, streaming valid
# UTF-8, clear errors, SIGINT, and no SIGILL on a baseline x86-64 CPU.
. "$(dirname "$0")/lib.sh"

M=$T_TMP/tiny.gguf
"$SLM" mkmodel --preset tiny --n-ctx 65536 "$M" 2>"$T_TMP/mk.err" || cat "$T_TMP/mk.err"

need_model() { [ -f "$M" ] || fail "the tiny model was not made: $(cat "$T_TMP/mk.err")"; }

# The number of generated tokens from the statistics on stderr.
gen_tokens() { sed -n 's/.*generation *= *[0-9.]* ms \/ *\([0-9]*\) tokens.*/\1/p' "$1"; }

run_greedy_repeatable() {
  need_model
  "$SLM" run -m "$M" -p "def fibonacci(n):" -n 24 --temp 0 >"$T_TMP/a" 2>"$T_TMP/ea" || fail "run failed: $(cat "$T_TMP/ea")"
  "$SLM" run -m "$M" -p "def fibonacci(n):" -n 24 --temp 0 -t 1 >"$T_TMP/b" 2>/dev/null || fail "run -t 1 failed"
  cmp -s "$T_TMP/a" "$T_TMP/b" || fail "greedy output differs between runs: $(cat "$T_TMP/a") vs $(cat "$T_TMP/b")"
  head -c 17 "$T_TMP/a" | grep -q "^def fibonacci(n):" || fail "the prompt is not echoed first"
  [ "$(wc -c <"$T_TMP/a")" -gt 19 ] || fail "nothing was generated: $(cat "$T_TMP/a")"
}

run_seeded_sampling() {
  need_model
  o="--temp 1.5 --top-k 0 --top-p 1 --min-p 0 -n 32 --ignore-eos --no-display-prompt"
  "$SLM" run -m "$M" -p "hello" $o --seed 5 >"$T_TMP/s5a" 2>/dev/null || fail "run --seed 5 failed"
  "$SLM" run -m "$M" -p "hello" $o --seed 5 >"$T_TMP/s5b" 2>/dev/null || fail "run --seed 5 failed"
  "$SLM" run -m "$M" -p "hello" $o --seed 6 >"$T_TMP/s6" 2>/dev/null || fail "run --seed 6 failed"
  cmp -s "$T_TMP/s5a" "$T_TMP/s5b" || fail "the same seed gave different text"
  ! cmp -s "$T_TMP/s5a" "$T_TMP/s6" || fail "seeds 5 and 6 gave the same text"
  "$SLM" run -m "$M" -p "hello" $o >/dev/null 2>"$T_TMP/e" || fail "run without --seed failed"
  grep -q "seed [0-9]" "$T_TMP/e" || fail "the random seed is not reported on stderr"
}

run_n_respected() {
  need_model
  for n in 0 1 7; do
    "$SLM" run -m "$M" -p "x" -n $n --ignore-eos >/dev/null 2>"$T_TMP/e" || fail "run -n $n failed"
    [ "$(gen_tokens "$T_TMP/e")" = "$n" ] || fail "-n $n generated $(gen_tokens "$T_TMP/e"): $(cat "$T_TMP/e")"
  done
  # -n -1 stops at the context end.
  "$SLM" run -m "$M" -p "x" -n -1 -c 40 --ignore-eos >/dev/null 2>"$T_TMP/e" || fail "run -n -1 failed"
  g=$(gen_tokens "$T_TMP/e")
  [ -n "$g" ] && [ "$g" -ge 30 ] && [ "$g" -le 40 ] || fail "-n -1 -c 40 generated '$g' tokens"
}

run_file_prompt() {
  need_model
  printf 'def add(a, b):' >"$T_TMP/p.txt"
  "$SLM" run -m "$M" -f "$T_TMP/p.txt" -n 8 --temp 0 >"$T_TMP/f" 2>/dev/null || fail "run -f failed"
  "$SLM" run -m "$M" -p 'def add(a, b):' -n 8 --temp 0 >"$T_TMP/p" 2>/dev/null || fail "run -p failed"
  cmp -s "$T_TMP/f" "$T_TMP/p" || fail "-f and -p give different text"
}

run_output_is_utf8() {
  need_model
  "$SLM" run -m "$M" -p "é✓ 🙂" -n 64 --temp 3 --top-k 0 --top-p 1 --min-p 0 --seed 3 --ignore-eos \
    >"$T_TMP/u" 2>/dev/null || fail "run failed"
  iconv -f UTF-8 -t UTF-8 "$T_TMP/u" >/dev/null 2>&1 || fail "stdout is not valid UTF-8"
}

expect_exit() {
  local want_rc=$1 want_msg=$2
  shift 2
  "$SLM" run "$@" >"$T_TMP/out" 2>"$T_TMP/err"
  rc=$?
  [ $rc -eq "$want_rc" ] || fail "run $*: exit $rc, want $want_rc ($(cat "$T_TMP/err"))"
  grep -q -- "$want_msg" "$T_TMP/err" || fail "run $*: message lacks '$want_msg': $(cat "$T_TMP/err")"
}

run_usage_errors() {
  need_model
  expect_exit 2 "-n" -m "$M" -p hi -n abc
  expect_exit 2 "-n" -m "$M" -p hi -n -2
  expect_exit 2 "--top-p" -m "$M" -p hi --top-p 1.5
  expect_exit 2 "--temp" -m "$M" -p hi --temp nan
  expect_exit 2 "--temp" -m "$M" -p hi --temp -1
  expect_exit 2 "--top-k" -m "$M" -p hi --top-k -1
  expect_exit 2 "--repeat-penalty" -m "$M" -p hi --repeat-penalty 0
  expect_exit 2 "--presence-penalty" -m "$M" -p hi --presence-penalty 3
  expect_exit 2 "-t" -m "$M" -p hi -t 100000
  expect_exit 2 "unknown" -m "$M" -p hi --bogus
  expect_exit 2 "-m" -p hi
  expect_exit 2 "-p" -m "$M"
  expect_exit 2 "-p" -m "$M" -p hi -f "$T_TMP/p.txt"
  "$SLM" run --help | grep -q "usage: slm run" || fail "--help"
}

run_runtime_errors() {
  need_model
  expect_exit 1 "nope.gguf" -m "$T_TMP/nope.gguf" -p hi
  head -c 4096 /dev/urandom >"$T_TMP/junk.gguf"
  expect_exit 1 "junk.gguf" -m "$T_TMP/junk.gguf" -p hi
  [ "$(wc -l <"$T_TMP/err")" -eq 1 ] || fail "want a one-line error: $(cat "$T_TMP/err")"
  expect_exit 1 "nope.txt" -m "$M" -f "$T_TMP/nope.txt"
  # A prompt longer than the context.
  long=$(printf 'word%d ' $(seq 200))
  expect_exit 5 "context" -m "$M" -p "$long" -c 32
  grep -q "tokens" "$T_TMP/err" || fail "the message does not give the token count"
}

run_sigint_stops() {
  need_model
  # 65536 tokens take minutes: the signal comes first.
  "$SLM" run -m "$M" -p "x" -n -1 -c 65536 --ignore-eos -t 1 >"$T_TMP/o" 2>"$T_TMP/e" &
  pid=$!
  sleep 0.5
  kill -INT $pid
  wait $pid
  rc=$?
  if [ $rc -eq 0 ]; then skip "generation finished before the signal"; fi
  [ $rc -eq 130 ] || fail "exit $rc after SIGINT, want 130: $(cat "$T_TMP/e")"
  grep -q "interrupted" "$T_TMP/e" || fail "no 'interrupted' message"
  grep -q "generation" "$T_TMP/e" || fail "no statistics after SIGINT"
}

# The repack cache: the first load writes MODEL.slmpack, later loads map it,
# and the text is the same with it, without it, or where it cannot be written.
run_repack_cache() {
  need_model
  d=$T_TMP/cache
  mkdir -p "$d"
  "$SLM" mkmodel --preset tiny --type q8_0 "$d/m.gguf" 2>"$d/mk.err" || fail "mkmodel failed: $(cat "$d/mk.err")"
  o="-p def -n 12 --temp 0"
  "$SLM" run -m "$d/m.gguf" $o >"$d/a" 2>"$d/ea" || fail "run failed: $(cat "$d/ea")"
  if ! grep -q "wrote the repacked weights" "$d/ea"; then
    grep -q "(avx512 kernels)" "$d/ea" && fail "no repack cache written: $(cat "$d/ea")"
    skip "these kernels do not repack"
  fi
  [ -s "$d/m.gguf.slmpack" ] || fail "no $d/m.gguf.slmpack"
  "$SLM" run -m "$d/m.gguf" $o >"$d/b" 2>"$d/eb" || fail "second run failed: $(cat "$d/eb")"
  ! grep -q "repack" "$d/eb" || fail "the second load did not use the cache: $(cat "$d/eb")"
  SLM_REPACK_CACHE=off "$SLM" run -m "$d/m.gguf" $o >"$d/c" 2>/dev/null || fail "run with the cache off failed"
  SLM_REPACK_CACHE=/proc/no/such/dir "$SLM" run -m "$d/m.gguf" $o >"$d/e" 2>"$d/ee" ||
    fail "an unwritable cache directory failed the run: $(cat "$d/ee")"
  grep -q "packing in memory" "$d/ee" || fail "no warning about the unwritable cache: $(cat "$d/ee")"
  for x in b c e; do cmp -s "$d/a" "$d/$x" || fail "output $x differs: $(cat "$d/a") vs $(cat "$d/$x")"; done
  [ "$(ls "$d" | grep -c '^m\.gguf')" = 2 ] || fail "files left next to the model: $(ls "$d")"
  # Two first loads at once: both write a cache, one replaces the other, both are right.
  rm -f "$d/m.gguf.slmpack"
  "$SLM" run -m "$d/m.gguf" $o >"$d/p1" 2>"$d/ep1" &
  p1=$!
  "$SLM" run -m "$d/m.gguf" $o >"$d/p2" 2>"$d/ep2" || fail "concurrent run failed: $(cat "$d/ep2")"
  wait $p1 || fail "concurrent run failed: $(cat "$d/ep1")"
  for x in p1 p2; do cmp -s "$d/a" "$d/$x" || fail "concurrent output $x differs"; done
  [ "$(ls "$d" | grep -c '^m\.gguf')" = 2 ] || fail "files left after concurrent loads: $(ls "$d")"
  "$SLM" run -m "$d/m.gguf" $o >"$d/f" 2>"$d/ef" || fail "run after concurrent loads failed"
  ! grep -q "repack" "$d/ef" || fail "the cache left by concurrent loads is not used: $(cat "$d/ef")"
  cmp -s "$d/a" "$d/f" || fail "output after concurrent loads differs"
}

# The binary picks its kernels at run time: a CPU without AVX must not SIGILL.
run_no_sigill_on_qemu64() {
  need_model
  command -v qemu-x86_64 >/dev/null || skip "qemu-x86_64 (qemu-user) not installed"
  [ "${SLM_VARIANT:-rel}" = rel ] || skip "sanitizer builds do not run under qemu-user"
  qemu-x86_64 -cpu qemu64 "$SLM" run -m "$M" -p hi -n 4 >"$T_TMP/q" 2>"$T_TMP/qe"
  rc=$?
  [ $rc -eq 0 ] || fail "exit $rc under qemu64: $(tail -3 "$T_TMP/qe")"
  grep -q "scalar" "$T_TMP/qe" || echo "note: kernels in use: $(grep -o '([a-z0-9]* kernels)' "$T_TMP/qe")"
}

# t_run runs each case in a new bash: hand it the functions and variables.
export -f $(declare -F | awk '{print $3}')
export M T_TMP SLM

t_run "run: greedy output is repeatable" run_greedy_repeatable
t_run "run: the same seed repeats, another seed differs" run_seeded_sampling
t_run "run: -n is respected" run_n_respected
t_run "run: -f reads the prompt from a file" run_file_prompt
t_run "run: streamed output is valid UTF-8" run_output_is_utf8
t_run "run: usage errors exit 2 naming the option" run_usage_errors
t_run "run: missing or bad model, long prompt" run_runtime_errors
t_run "run: SIGINT stops generation cleanly" run_sigint_stops
t_run "run: the repack cache is written, used and never required" run_repack_cache
t_run "run: no SIGILL on a baseline CPU (qemu64)" run_no_sigill_on_qemu64
t_end
