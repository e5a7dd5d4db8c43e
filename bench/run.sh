#!/usr/bin/env bash
# Side-by-side engine benchmark: `slm bench` and llama.cpp's `llama-bench` on
# the same GGUF files, same threads, in one run. Writes the table between the
# markers of bench/RESULTS.md (the prose around it is kept) and the raw JSON
# to build/bench/.
#
# usage: bench/run.sh            (all models and types below)
#   LLAMA_CPP_BIN=dir            where llama-bench is (default ../llama.cpp/build/bin);
#                                llama.cpp is built from its public source outside this
#                                repository; nothing of it is committed
#   BENCH_MODELS="qwen2.5-0.5b llama-3.2-1b"   presets of `slm mkmodel`
#   BENCH_TYPES="q4_k_m q8_0"    types made with `slm quantize` from the F16 file
#   BENCH_THREADS=2 BENCH_P=512 BENCH_N=128 BENCH_R=3
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
slm=${SLM:-build/rel/slm}
llama_bin=${LLAMA_CPP_BIN:-$root/../llama.cpp/build/bin}
models=${BENCH_MODELS:-"qwen2.5-0.5b llama-3.2-1b"}
types=${BENCH_TYPES:-"q4_k_m q8_0"}
threads=${BENCH_THREADS:-2}
np=${BENCH_P:-512} nn=${BENCH_N:-128} reps=${BENCH_R:-3}
out=build/bench
mkdir -p "$out"

[ -x "$slm" ] || make -s all
have_llama=1
[ -x "$llama_bin/llama-bench" ] || { echo "bench: no llama-bench in $llama_bin (set LLAMA_CPP_BIN); slm only" >&2; have_llama=0; }

rows=$out/rows.md
: > "$rows"
for m in $models; do
  f16=$out/$m-f16.gguf
  [ -f "$f16" ] || "$slm" mkmodel --preset "$m" --type f16 "$f16"
  for t in $types; do
    f=$out/$m-$t.gguf
    [ -f "$f" ] || "$slm" quantize "$f16" "$f" "$t"
    echo "bench: $m $t" >&2
    "$slm" bench -m "$f" -p "$np" -n "$nn" -t "$threads" -r "$reps" --json > "$out/$m-$t.slm.json"
    if [ $have_llama -eq 1 ]; then
      "$llama_bin/llama-bench" -m "$f" -p "$np" -n "$nn" -t "$threads" -r "$reps" -o json \
        > "$out/$m-$t.llama.json" 2>"$out/$m-$t.llama.log"
    else
      echo '[]' > "$out/$m-$t.llama.json"
    fi
    jq -r --arg m "$m" --arg t "$t" --slurpfile l "$out/$m-$t.llama.json" '
      .[] as $s
      | ($l[0][] | select(.n_prompt == $s.n_prompt and .n_gen == $s.n_gen)) as $r
      | (if $s.n_prompt > 0 then "pp\($s.n_prompt)" else "tg\($s.n_gen)" end) as $test
      | "| \($m) | \($t) | \($s.n_threads) | \($test) | \($s.avg_ts*100|round/100) ± \($s.stddev_ts*100|round/100) | \($r.avg_ts*100|round/100) ± \($r.stddev_ts*100|round/100) | \(($s.avg_ts / $r.avg_ts)*100|round/100)x |"
    ' "$out/$m-$t.slm.json" >> "$rows" || true
  done
done

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
commit=$(cat "$llama_bin/../../COMMIT" 2>/dev/null || echo unknown)
{
  echo "<!-- bench:begin (written by bench/run.sh; do not edit by hand) -->"
  echo "Run on $(date -u +%Y-%m-%d): $cpu, $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; llama.cpp ${commit%% *}."
  echo "Command: \`BENCH_THREADS=$threads BENCH_P=$np BENCH_N=$nn BENCH_R=$reps bench/run.sh\`"
  echo
  echo "| model | type | threads | test | slm t/s | llama.cpp t/s | slm / llama.cpp |"
  echo "|---|---|---|---|---|---|---|"
  cat "$rows"
  echo "<!-- bench:end -->"
} > "$out/table.md"

res=bench/RESULTS.md
if [ -f "$res" ] && grep -q 'bench:begin' "$res"; then
  awk -v tbl="$out/table.md" '
    /bench:begin/ { while ((getline l < tbl) > 0) print l; skip = 1; next }
    /bench:end/ { skip = 0; next }
    !skip { print }' "$res" > "$res.tmp" && mv "$res.tmp" "$res"
else
  cat "$out/table.md" >> "$res"
fi
cat "$out/table.md"
