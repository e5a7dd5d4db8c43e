#!/usr/bin/env bash
# Greedy generations of slm and llama.cpp, token for token, on the same GGUF
# files: prints, per file and prompt, how many of N tokens agree and, where
# they part, both engines' top-2 logit margins at that step (a margin near 0
# is a tie within rounding).
#
# usage: bench/compare.sh MODEL.gguf... (default: demo models made here)
#   LLAMA_CPP_DIR=dir   a llama.cpp source tree with a CPU build in dir/build
#                       (built outside this repository; see bench/RESULTS.md)
#   COMPARE_N=64        tokens per prompt
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
llama=${LLAMA_CPP_DIR:-$root/../llama.cpp}
n=${COMPARE_N:-64}
out=build/compare
mkdir -p "$out"
[ -f "$llama/include/llama.h" ] || { echo "compare: no llama.cpp at $llama (set LLAMA_CPP_DIR)" >&2; exit 1; }
make -s all
cc -O2 -o "$out/greedy_llama" bench/compare/greedy_llama.c -I"$llama/include" -I"$llama/ggml/include" \
  -L"$llama/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$llama/build/bin"
cc -O2 -std=c17 -D_GNU_SOURCE -Isrc -o "$out/greedy_slm" bench/compare/greedy_slm.c build/rel/libslm.a \
  -lm -lpthread -lseccomp -lssl -lcrypto
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  for t in f16 q8_0 q4_k; do
    [ -f "$out/demo-$t.gguf" ] || build/rel/slm mkmodel --preset demo --type "$t" "$out/demo-$t.gguf" 2>/dev/null
    models+=("$out/demo-$t.gguf")
  done
fi
prompts=("def fibonacci(n):" "The quick brown fox" "int main(void) {" "Hello"
         "import numpy as np" "#include <stdio.h>" "SELECT * FROM users WHERE")
echo "| model | prompt | agree | margins where they part (slm / llama.cpp) |"
echo "|---|---|---|---|"
for m in "${models[@]}"; do
  for p in "${prompts[@]}"; do
    "$out/greedy_slm" "$m" "$p" "$n" > "$out/s.txt"
    "$out/greedy_llama" "$m" "$p" "$n" 2>/dev/null > "$out/l.txt"
    paste "$out/s.txt" "$out/l.txt" | awk -v m="$(basename "$m")" -v p="$p" -v n="$n" '
      !done && $1 == $3 { k++ }
      !done && $1 != $3 { done = 1; where = sprintf("step %d: %s / %s", NR, $2, $4) }
      END { printf "| %s | `%s` | %d/%d | %s |\n", m, p, k, n, (done ? where : "") }'
  done
done
