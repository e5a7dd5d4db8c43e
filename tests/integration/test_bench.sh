#!/usr/bin/env bash
# slm bench: llama-bench's JSON fields and markdown table, lists, depth,
# and usage errors.
. "$(dirname "$0")/lib.sh"

M=$T_TMP/tiny.gguf
"$SLM" mkmodel --preset tiny "$M" 2>"$T_TMP/mk.err" || cat "$T_TMP/mk.err"
need_model() { [ -f "$M" ] || fail "the tiny model was not made: $(cat "$T_TMP/mk.err")"; }

bench_json_fields() {
  need_model
  command -v jq >/dev/null || skip "jq not installed"
  "$SLM" bench -m "$M" -p 16 -n 4 -r 2 -t 1 --json >"$T_TMP/b.json" 2>"$T_TMP/e" ||
    fail "bench --json failed: $(cat "$T_TMP/e")"
  jq -e 'type == "array" and length == 2' "$T_TMP/b.json" >/dev/null || fail "want an array of 2: $(cat "$T_TMP/b.json")"
  for f in build_commit cpu_info model_filename model_type model_size model_n_params n_batch \
           n_threads n_prompt n_gen n_depth test_time avg_ns stddev_ns avg_ts stddev_ts \
           samples_ns samples_ts; do
    jq -e --arg f "$f" 'all(.[]; has($f))' "$T_TMP/b.json" >/dev/null || fail "field $f missing"
  done
  jq -e '.[0].n_prompt == 16 and .[0].n_gen == 0 and .[1].n_prompt == 0 and .[1].n_gen == 4' \
    "$T_TMP/b.json" >/dev/null || fail "tests are not pp16 then tg4"
  jq -e 'all(.[]; (.samples_ns | length) == 2 and (.samples_ts | length) == 2 and .avg_ts > 0
         and .n_threads == 1 and (.avg_ns | type) == "number" and .model_n_params > 0)' \
    "$T_TMP/b.json" >/dev/null || fail "bad samples or statistics"
  # avg_ts is the mean of samples_ts, and samples_ts = 1e9 * tokens / samples_ns.
  jq -e 'all(.[]; ((.samples_ts | add / length) - .avg_ts | fabs) < 1e-6 * .avg_ts
         and ((1e9 * (.n_prompt + .n_gen) / .samples_ns[0]) - .samples_ts[0] | fabs) < 1e-6 * .samples_ts[0])' \
    "$T_TMP/b.json" >/dev/null || fail "avg_ts/samples_ts do not match samples_ns"
  "$SLM" bench -m "$M" -p 8 -n 0 -r 1 -o json | jq -e 'length == 1' >/dev/null || fail "-o json"
}

bench_markdown() {
  need_model
  "$SLM" bench -m "$M" -p 16 -n 4 -r 2 -t 1 >"$T_TMP/b.md" 2>"$T_TMP/e" || fail "bench failed: $(cat "$T_TMP/e")"
  head -1 "$T_TMP/b.md" | grep -q '^| model  *| *size | *params | backend *| threads | *test | *t/s |$' ||
    fail "header: $(head -1 "$T_TMP/b.md")"
  grep -q '| *pp16 | *[0-9.]* ± [0-9.]* |$' "$T_TMP/b.md" || fail "no pp16 row: $(cat "$T_TMP/b.md")"
  grep -q '| *tg4 | *[0-9.]* ± [0-9.]* |$' "$T_TMP/b.md" || fail "no tg4 row"
  grep -q '| CPU  *| *1 |' "$T_TMP/b.md" || fail "backend/threads columns"
}

bench_lists_and_depth() {
  need_model
  command -v jq >/dev/null || skip "jq not installed"
  "$SLM" bench -m "$M" -p 4,8 -n 0 -t 1,2 -r 1 --json >"$T_TMP/l.json" 2>"$T_TMP/e" ||
    fail "bench with lists failed: $(cat "$T_TMP/e")"
  jq -e 'length == 4 and ([.[].n_prompt] | sort) == [4,4,8,8] and ([.[].n_threads] | sort) == [1,1,2,2]' \
    "$T_TMP/l.json" >/dev/null || fail "lists: $(jq -c '[.[] | [.n_prompt, .n_threads]]' "$T_TMP/l.json")"
  "$SLM" bench -m "$M" -p 0 -n 4 -d 8 -r 1 >"$T_TMP/d.md" 2>"$T_TMP/e" || fail "bench -d failed: $(cat "$T_TMP/e")"
  grep -q 'tg4 @ d8' "$T_TMP/d.md" || fail "no 'tg4 @ d8' row: $(cat "$T_TMP/d.md")"
}

expect_exit() {
  local want_rc=$1 want_msg=$2
  shift 2
  "$SLM" bench "$@" >"$T_TMP/out" 2>"$T_TMP/err"
  rc=$?
  [ $rc -eq "$want_rc" ] || fail "bench $*: exit $rc, want $want_rc ($(cat "$T_TMP/err"))"
  grep -q -- "$want_msg" "$T_TMP/err" || fail "bench $*: message lacks '$want_msg': $(cat "$T_TMP/err")"
}

bench_errors() {
  need_model
  expect_exit 2 "-r" -m "$M" -r 0
  expect_exit 2 "-p" -m "$M" -p abc
  expect_exit 2 "-p" -m "$M" -p 4,,8
  expect_exit 2 "-t" -m "$M" -t 0
  expect_exit 2 "-o" -m "$M" -o xml
  expect_exit 2 "nothing to run" -m "$M" -p 0 -n 0
  expect_exit 2 "-m" -p 4
  expect_exit 1 "nope.gguf" -m "$T_TMP/nope.gguf" -p 4 -n 0 -r 1
  "$SLM" bench --help | grep -q "usage: slm bench" || fail "--help"
}

# The side tools of bench/ are not built by make: build them here against the
# release library so that a change to the engine's headers cannot break them
# unseen, and run each on a small case. attn_decode compares its two decode
# attention paths bit for bit before it times them (exit 1 if they differ);
# bandwidth checks every pattern's sum against a scalar one.
bench_side_tools() {
  local root lib
  root=$(cd "$(dirname "$SLM")/../.." && pwd)
  lib=$(dirname "$SLM")/libslm.a
  [ "${SLM_VARIANT:-rel}" = rel ] || skip "release build only (the tools link its library)"
  [ -f "$lib" ] && [ -f "$root/bench/attn_decode.c" ] || skip "no $lib or bench/ sources"
  cc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$root/src" "$root/bench/attn_decode.c" \
    "$lib" -lm -lpthread -lseccomp -lssl -lcrypto -o "$T_TMP/attn_decode" || fail "attn_decode does not build"
  "$T_TMP/attn_decode" --help | grep -q "usage: attn_decode" || fail "attn_decode --help"
  "$T_TMP/attn_decode" 96 2>"$T_TMP/ad.err" && fail "head_dim 96 accepted"
  grep -q "multiple of 64" "$T_TMP/ad.err" || fail "head_dim 96: $(cat "$T_TMP/ad.err")"
  "$T_TMP/attn_decode" 64 9 2>"$T_TMP/ad.err" && fail "9 heads accepted"
  grep -q "argument 2 must be a number from 1 to 8" "$T_TMP/ad.err" || fail "9 heads: $(cat "$T_TMP/ad.err")"
  if "$T_TMP/attn_decode" 64 3 100 >"$T_TMP/ad.out" 2>"$T_TMP/ad.err"; then
    grep -q "attn_decode [0-9.]* ns, one head at a time [0-9.]* ns" "$T_TMP/ad.out" ||
      fail "attn_decode output: $(cat "$T_TMP/ad.out")"
  else
    grep -q "cannot run the AVX-512 kernels" "$T_TMP/ad.err" || fail "attn_decode: $(cat "$T_TMP/ad.err")"
  fi
  cc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$root/src" "$root/bench/bandwidth.c" \
    "$root/src/core/str.c" "$root/src/core/alloc.c" "$root/src/core/err.c" -lpthread \
    -o "$T_TMP/bandwidth" || fail "bandwidth does not build"
  "$T_TMP/bandwidth" -t 1 -s 64M -r 1 -m 4k -p 1x >"$T_TMP/bw.out" 2>&1 || fail "bandwidth: $(cat "$T_TMP/bw.out")"
  grep -q "threads 1: best [0-9.]* GB/s" "$T_TMP/bw.out" || fail "bandwidth output: $(cat "$T_TMP/bw.out")"
}

# t_run runs each case in a new bash: hand it the functions and variables.
export -f $(declare -F | awk '{print $3}')
export M T_TMP SLM

t_run "bench: --json has llama-bench's fields" bench_json_fields
t_run "bench: markdown table like llama-bench" bench_markdown
t_run "bench: comma lists and depth" bench_lists_and_depth
t_run "bench: usage and runtime errors" bench_errors
t_run "bench: side tools build and run (attn_decode, bandwidth)" bench_side_tools
t_end
