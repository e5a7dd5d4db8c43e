#!/usr/bin/env bash
# Load time of slm and llama.cpp on the files bench/run.sh made: `slm run`'s
# "load time" (open, checks, tokenizer, repacking; the weights' pages are
# faulted in later, during the first tokens, in both engines) in three
# states, and llama-completion's "load time" (which includes its warm-up
# decode) on the same file. The model files are in the page cache (read just
# before), so this is the time a restart takes, not a cold disk read.
#
# usage: bench/load.sh [FILE.gguf ...]   (default: every build/bench/*.gguf)
#   LLAMA_CPP_BIN=dir   where llama-completion is (default ../llama.cpp/build/bin)
#   LOAD_R=3            loads per state; the median is printed
# Prints a Markdown table: file, slm first load (packs and writes the repack
# cache), slm with the cache, slm packing in memory (SLM_REPACK_CACHE=off),
# llama.cpp. Deletes and remakes each file's .slmpack.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
slm=${SLM:-build/rel/slm}
llama_bin=${LLAMA_CPP_BIN:-$root/../llama.cpp/build/bin}
reps=${LOAD_R:-3}
[ -x "$slm" ] || make -s -j2 all
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(build/bench/*.gguf)

# Milliseconds of one load: "load time = N ms" of the command's stderr.
slm_ms() {
  "$slm" run -m "$1" -p hi -n 1 --temp 0 2>&1 >/dev/null | sed -n 's/.*load time *= *\([0-9.]*\) ms.*/\1/p'
}
llama_ms() {
  [ -x "$llama_bin/llama-completion" ] || { echo "-"; return; }
  "$llama_bin/llama-completion" -m "$1" -p hi -n 1 --temp 0 -no-cnv 2>&1 </dev/null |
    sed -n 's/.*load time *= *\([0-9.]*\) ms.*/\1/p' | head -n 1
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'; }
# Runs "$@" (printing ms) $reps times; the median.
med() {
  local i
  for i in $(seq 1 "$reps"); do "$@"; done | median
}
first_ms() {
  rm -f "$1.slmpack"
  slm_ms "$1"
}

echo "| file | slm first load (writes the cache) ms | slm, cache mapped ms | slm, packing in memory ms | llama.cpp ms |"
echo "|---|---|---|---|---|"
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "load: no $f" >&2; exit 1; }
  cat "$f" > /dev/null
  a=$(med first_ms "$f")
  b=$(med slm_ms "$f")
  c=$(SLM_REPACK_CACHE=off med slm_ms "$f")
  l=$(med llama_ms "$f")
  echo "| $(basename "$f" .gguf) | $a | $b | $c | $l |"
done
