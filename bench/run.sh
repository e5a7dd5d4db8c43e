#!/usr/bin/env bash
# Side-by-side engine benchmark: `slm bench` and llama.cpp's `llama-bench` on
# the same GGUF files, same threads, in one run, with the memory-bandwidth
# bound of every generation figure. Writes the table between the markers of
# bench/RESULTS.md (the prose around it is kept), the raw JSON of both engines
# and the joined rows (results.json, read by bench/plot.sh) to build/bench/,
# then runs bench/plot.sh when gnuplot is there.
#
# usage: bench/run.sh            (all models and types below)
#        bench/run.sh --rejoin   runs no engine: rebuilds the table, results.json and
#                                the plot from the JSON already in build/bench/ (it runs
#                                the bandwidth probes whose JSON is missing or was written
#                                by the older, one-pattern probe: ~4 minutes)
#   LLAMA_CPP_BIN=dir            where llama-bench is (default ../llama.cpp/build/bin);
#                                llama.cpp is built from its public source outside this
#                                repository; nothing of it is committed
#   BENCH_MODELS="qwen2.5-0.5b llama-3.2-1b"   presets of `slm mkmodel`
#   BENCH_TYPES="q4_k_m q8_0 q4_0 f16 bf16"    types made with `slm quantize` from the F16 file
#   BENCH_THREADS=2 BENCH_P=512 BENCH_N=128 BENCH_R=2
#   BENCH_ROUNDS=3               rounds per file: each round runs both engines (BENCH_R
#                                repetitions each), the order alternating from round to
#                                round (slm first, then llama.cpp first, ...). The machine's
#                                speed drifts by 10-30% over minutes (a shared VM), so the
#                                pairs of a round see the same machine: "slm / llama.cpp" is
#                                the median over rounds of the ratio of the round's means;
#                                the t/s columns pool all repetitions of all rounds
#   BENCH_SCALING=1              extra thread counts (comma list; empty: none) run for
#   BENCH_SCALING_TYPES="q4_k_m q8_0"          these types, to show thread scaling
#   BENCH_LONG=0                 1: also pp4096 and tg at depths 4096 and 16384 for
#   BENCH_LONG_TYPES=q4_k_m      these types, BENCH_LONG_R repetitions (default 1)
#   BENCH_LONG_P=4096 BENCH_LONG_D="4096 16384" BENCH_LONG_R=1
#   BENCH_BW_R=20                passes of the bandwidth probe per read pattern, memory
#                                and thread count (bench/bandwidth.c tries 18 patterns on
#                                4 KiB-page and huge-page memory, and on each file)
#   BENCH_PLOT=1                 0: skip bench/plot.sh
#   BENCH_RESULTS=bench/RESULTS.md BENCH_PNG=bench/results.png   where the table and
#                                the plot go (point them elsewhere for trial runs)
#
# What it costs on the project's 2-core machine (estimates; the first run also
# makes the files: ~1 minute per model for mkmodel and the quantizations):
#   default (2 models x 5 types, pp512+tg128 at 2 threads, r=3, plus 1 thread
#   for q4_k_m and q8_0): about 15 minutes, of which F16/BF16 are half;
#   BENCH_LONG=1 adds about 20-25 minutes per long type at BENCH_LONG_R=1
#   (mostly the 16384-token prefill, once per test in both engines, so extra
#   repetitions cost only the timed part);
#   BENCH_SCALING= saves about 4 minutes; each model or type left out saves its share.
#   The bandwidth probes take about 3 minutes of it (1 GiB twice at the start and the
#   end, each file once, 18 read patterns each).
# Short check of the script: BENCH_MODELS=qwen2.5-0.5b BENCH_TYPES=q8_0 BENCH_P=64
#   BENCH_N=16 BENCH_R=1 bench/run.sh (about a minute once the files exist).
set -eu
rejoin=0
case "${1:-}" in
  --rejoin) rejoin=1 ;;
  "") ;;
  *) echo "usage: bench/run.sh [--rejoin]   (settings through BENCH_* variables; see the header)" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
slm=${SLM:-build/rel/slm}
llama_bin=${LLAMA_CPP_BIN:-$root/../llama.cpp/build/bin}
models=${BENCH_MODELS:-"qwen2.5-0.5b llama-3.2-1b"}
types=${BENCH_TYPES:-"q4_k_m q8_0 q4_0 f16 bf16"}
threads=${BENCH_THREADS:-2}
np=${BENCH_P:-512} nn=${BENCH_N:-128} reps=${BENCH_R:-2} rounds=${BENCH_ROUNDS:-3}
scaling=${BENCH_SCALING-1}
scaling_types=${BENCH_SCALING_TYPES:-"q4_k_m q8_0"}
long=${BENCH_LONG:-0}
long_types=${BENCH_LONG_TYPES:-q4_k_m}
long_p=${BENCH_LONG_P:-4096} long_d=${BENCH_LONG_D:-"4096 16384"} long_r=${BENCH_LONG_R:-1}
bw_reps=${BENCH_BW_R:-20}
out=build/bench
mkdir -p "$out"

for tool in jq cc; do
  command -v $tool >/dev/null 2>&1 || { echo "bench: $tool is missing (tools/deps.sh installs it)" >&2; exit 1; }
done
[ -x "$slm" ] || make -s -j2 all
have_llama=1
[ -x "$llama_bin/llama-bench" ] || { echo "bench: no llama-bench in $llama_bin (set LLAMA_CPP_BIN); slm only" >&2; have_llama=0; }

# The bandwidth probe: built here with the core helpers it uses, not by make.
bw=$out/bandwidth
bw_src=(bench/bandwidth.c src/core/str.c src/core/alloc.c src/core/err.c)
if [ ! -x "$bw" ] || [ -n "$(find "${bw_src[@]}" src/core/*.h -newer "$bw" 2>/dev/null)" ]; then
  cc -std=c17 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes \
    -Wmissing-prototypes -Wvla -Wimplicit-fallthrough -Wnull-dereference -Werror -Isrc \
    "${bw_src[@]}" -lpthread -o "$bw"
fi

contains() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }
# True if a probe's JSON exists and comes from the current probe (which names the
# best read pattern); --rejoin re-runs probes whose JSON an older probe wrote.
bw_current() { [ -f "$1" ] && jq -e 'length > 0 and all(.[]; has("pattern"))' "$1" >/dev/null 2>&1; }
# "2" + "1" -> "1,2": unique thread counts, ascending.
thread_list() { echo "$1,$2" | tr -s ' ,' '\n' | grep -v '^$' | sort -nu | paste -sd, -; }

# Runs one engine on one file with the given arguments into a JSON array
# (an empty array and a warning if it fails, so one failure costs one row).
run_slm() {
  local f=$1 json=$2; shift 2
  "$slm" bench -m "$f" "$@" --json > "$json" 2> "${json%.json}.log" ||
    { echo "bench: slm bench failed on $f $* (see ${json%.json}.log)" >&2; echo '[]' > "$json"; }
}
run_llama() {
  local f=$1 json=$2; shift 2
  if [ $have_llama -eq 0 ]; then echo '[]' > "$json"; return; fi
  "$llama_bin/llama-bench" -m "$f" "$@" -o json > "$json" 2> "${json%.json}.log" ||
    { echo "bench: llama-bench failed on $f $* (see ${json%.json}.log)" >&2; echo '[]' > "$json"; }
}

# Runs both engines on one file in $rounds rounds, alternating which goes
# first, into $base.{slm,llama}.json: per test the samples of all rounds
# pooled (avg_ts, stddev_ts as the engines compute them) and "rounds", each
# round's number and mean, which join_rows pairs.
run_rounds() {
  local f=$1 base=$2; shift 2
  local r
  local -a sj=() lj=()
  for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then
      run_slm "$f" "$base.slm.r$r.json" "$@"
      run_llama "$f" "$base.llama.r$r.json" "$@"
    else
      run_llama "$f" "$base.llama.r$r.json" "$@"
      run_slm "$f" "$base.slm.r$r.json" "$@"
    fi
    sj+=("$base.slm.r$r.json") lj+=("$base.llama.r$r.json")
  done
  merge_rounds "$base.slm.json" "${sj[@]}"
  merge_rounds "$base.llama.json" "${lj[@]}"
  rm -f "${sj[@]}" "${lj[@]}"
}

# Merges the JSON arrays of rounds 1, 2, ... (in argument order) into OUT.
merge_rounds() {
  local dst=$1; shift
  local i=0 x
  for x in "$@"; do
    i=$((i + 1))
    jq -c --argjson r $i 'map(. + {round: $r})' "$x"
  done | jq -s '
    add // []
    | group_by([.n_prompt, .n_gen, .n_depth, .n_threads])
    | map(sort_by(.round)
        | (map(.samples_ts) | add) as $s
        | ($s | add / length) as $m
        | (.[0] | del(.round)) + {
            samples_ts: $s,
            avg_ts: $m,
            stddev_ts: (if ($s | length) > 1
                        then ($s | map((. - $m) * (. - $m)) | add / (length - 1) | sqrt) else 0 end),
            rounds: map({round, ts: .avg_ts})
          })' > "$dst"
}

# Bytes a generated token reads from the file (every tensor, except that the
# token embedding table is read one row per token unless it is tied to the
# output), and the KV-cache bytes per position it reads at depth (all
# layers, K and V, F16 as both engines store them by default).
weights_json() {
  "$slm" gguf info --json "$1" | jq -c '
    .metadata as $md
    | ($md["general.architecture"].value) as $a
    | def mv(k): $md["\($a).\(k)"].value;
    ([.tensors[] | select(.name == "output.weight")] | length > 0) as $untied
    | ([.tensors[] | select(.name == "token_embd.weight")][0]) as $emb
    | (mv("attention.head_count")) as $nh
    | (mv("attention.head_count_kv") // $nh) as $nkv
    | ((mv("embedding_length")) / $nh) as $hd
    | {
        weight_bytes: (.total_bytes
          - (if $untied and $emb != null then $emb.size - ($emb.size / $emb.shape[1]) else 0 end)),
        kv_bytes_per_pos: (mv("block_count") * $nkv
          * ((mv("attention.key_length") // $hd) + (mv("attention.value_length") // $hd)) * 2),
        tied: ($untied | not)
      }'
}

# Joins both engines' JSON for one file on (n_prompt, n_gen, n_depth,
# n_threads), so a test only one engine ran still gets its row, and adds the
# bound of each generation test; appends JSON lines to $rows_json.
join_rows() {
  local m=$1 t=$2 base=$out/$1-$2
  local -a ps=() pl=()
  local x
  for x in "$base.slm.json" "$base.long-pp.slm.json" "$base.long-tg.slm.json"; do [ -f "$x" ] && ps+=("$x"); done
  for x in "$base.llama.json" "$base.long-pp.llama.json" "$base.long-tg.llama.json"; do [ -f "$x" ] && pl+=("$x"); done
  [ ${#ps[@]} -gt 0 ] || ps=(/dev/null)
  [ ${#pl[@]} -gt 0 ] || pl=(/dev/null)
  jq -n -c --arg m "$m" --arg t "$t" \
    --slurpfile w "$base.weights.json" --slurpfile b "$out/bandwidth-max.json" \
    --argjson s "$(jq -s 'add // []' "${ps[@]}")" --argjson l "$(jq -s 'add // []' "${pl[@]}")" '
    def key: [.n_prompt, .n_gen, .n_depth, .n_threads];
    ($w[0]) as $w
    | ([$s[], $l[]] | map(key) | unique | sort_by(.[3], .[2], (.[0] == 0), .[0], .[1]))[] as $k
    | ([$s[] | select(key == $k)][0]) as $x
    | ([$l[] | select(key == $k)][0]) as $y
    | ([$b[0][] | select(.n_threads == $k[3])][0]) as $bw
    | ($bw.best_gbps) as $gbps
    | {
        model: $m, type: $t, n_prompt: $k[0], n_gen: $k[1], n_depth: $k[2], n_threads: $k[3],
        test: (if $k[0] > 0 then "pp\($k[0])" else "tg\($k[1])" end),
        slm_ts: $x.avg_ts, slm_sd: $x.stddev_ts, llama_ts: $y.avg_ts, llama_sd: $y.stddev_ts,
        ratio: (
          [($x.rounds // [])[] as $a | ($y.rounds // [])[] | select(.round == $a.round and .ts > 0)
           | $a.ts / .ts] | sort as $q
          | if ($q | length) > 0 then
              (if ($q | length) % 2 == 1 then $q[($q | length - 1) / 2]
               else ($q[($q | length) / 2 - 1] + $q[($q | length) / 2]) / 2 end)
            elif $x.avg_ts != null and $y.avg_ts != null and $y.avg_ts > 0 then $x.avg_ts / $y.avg_ts
            else null end),
        n_rounds: ([($x.rounds // [])[] as $a | ($y.rounds // [])[] | select(.round == $a.round)] | length),
        bandwidth_gbps: $gbps, bandwidth_pattern: (if $bw == null then null else "\($bw.pattern) \($bw.memory)" end),
        bytes_per_token: (if $k[0] == 0 then $w.weight_bytes + $w.kv_bytes_per_pos * ($k[2] + ($k[1] + 1) / 2) else null end)
      }
    | .bound_ts = (if .bytes_per_token != null and $gbps != null then $gbps * 1e9 / .bytes_per_token else null end)
  ' >> "$rows_json"
}

# Each file is also read as the engine maps it (page-cache pages), just before
# its benchmark. The bound uses, per thread count, the best of all probes of
# the run: another process on the machine only ever lowers a probe, and a low
# figure would make the bound too easy.
probe_file() {
  local f=$1 base=$2 tl=$3
  weights_json "$f" > "$base.weights.json"
  "$bw" -f "$f" -t "$tl" -r "$bw_reps" --json > "$base.bandwidth.json" ||
    cp "$out/bandwidth.json" "$base.bandwidth.json"
}

if [ $rejoin -eq 0 ] || ! bw_current "$out/bandwidth.json"; then
  echo "bench: bandwidth probe ($bw, anonymous 1 GiB, 4 KiB and huge pages)" >&2
  "$bw" -t "$(thread_list 1,2 "$threads")" -r "$bw_reps" --json > "$out/bandwidth.json"
  rm -f "$out/bandwidth-end.json"
fi

rows_json=$out/results.json.tmp
: > "$rows_json"
pairs=()
for m in $models; do
  if [ $rejoin -eq 1 ]; then
    for t in $types; do
      base=$out/$m-$t
      [ -f "$base.slm.json" ] || [ -f "$base.llama.json" ] || continue
      if [ ! -f "$base.weights.json" ] || ! bw_current "$base.bandwidth.json"; then
        probe_file "$base.gguf" "$base" "$(thread_list "$threads" "$scaling")"
      fi
      pairs+=("$m $t")
    done
    continue
  fi
  f16=$out/$m-f16.gguf
  if [ ! -f "$f16" ]; then
    echo "bench: making $f16" >&2
    "$slm" mkmodel --preset "$m" --type f16 "$f16" 2> "$out/$m-f16.mkmodel.log" ||
      { tail -n 5 "$out/$m-f16.mkmodel.log" >&2; exit 1; }
  fi
  for t in $types; do
    f=$out/$m-$t.gguf base=$out/$m-$t
    if [ ! -f "$f" ]; then
      "$slm" quantize "$f16" "$f" "$t" 2> "$base.quantize.log" ||
        { tail -n 5 "$base.quantize.log" >&2; exit 1; }
      tail -n 1 "$base.quantize.log" >&2
    fi
    tl=$threads
    if [ -n "$scaling" ] && contains "$t" "$scaling_types"; then tl=$(thread_list "$threads" "$scaling"); fi

    echo "bench: $m $t (threads $tl)" >&2
    probe_file "$f" "$base" "$tl"
    run_rounds "$f" "$base" -p "$np" -n "$nn" -t "$tl" -r "$reps"
    rm -f "$base".long-*.json
    if [ "$long" = 1 ] && contains "$t" "$long_types"; then
      echo "bench: $m $t long context (pp$long_p; tg$nn at depths $long_d)" >&2
      dl=$(echo "$long_d" | tr ' ' ',')
      run_slm "$f" "$base.long-pp.slm.json" -p "$long_p" -n 0 -t "$threads" -r "$long_r"
      run_llama "$f" "$base.long-pp.llama.json" -p "$long_p" -n 0 -t "$threads" -r "$long_r"
      run_slm "$f" "$base.long-tg.slm.json" -p 0 -n "$nn" -d "$dl" -t "$threads" -r "$long_r"
      run_llama "$f" "$base.long-tg.llama.json" -p 0 -n "$nn" -d "$dl" -t "$threads" -r "$long_r"
    fi
    pairs+=("$m $t")
  done
done
if [ $rejoin -eq 0 ]; then
  echo "bench: bandwidth probe again at the end" >&2
  "$bw" -t "$(thread_list 1,2 "$threads")" -r "$bw_reps" --json > "$out/bandwidth-end.json"
fi
probes=("$out/bandwidth.json")
bw_current "$out/bandwidth-end.json" && probes+=("$out/bandwidth-end.json")
for p in "${pairs[@]}"; do
  bw_current "$out/${p% *}-${p#* }.bandwidth.json" && probes+=("$out/${p% *}-${p#* }.bandwidth.json")
done
jq -s 'add | group_by(.n_threads) | map(max_by(.best_gbps))' "${probes[@]}" > "$out/bandwidth-max.json"
for p in "${pairs[@]}"; do join_rows "${p% *}" "${p#* }"; done
jq -s '.' "$rows_json" > "$out/results.json"
rm -f "$rows_json"
# A bound that an engine beats is no bound: say so (the probe then lacks a read
# pattern the engine uses, or the machine was busier during every probe than
# during that row).
jq -r '.[] | select(.bound_ts != null) as $r
  | [["slm", $r.slm_ts], ["llama.cpp", $r.llama_ts]][] | select(.[1] != null and .[1] > $r.bound_ts)
  | "bench: warning: \(.[0]) \($r.model) \($r.type) \($r.test) at depth \($r.n_depth), \($r.n_threads) threads: \(.[1] * 100 | round / 100) t/s is above the bound \($r.bound_ts * 10 | round / 10) t/s (\($r.bandwidth_gbps) GB/s)"
' "$out/results.json" >&2

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
commit=$(cat "$llama_bin/../../COMMIT" 2>/dev/null || git -C "$llama_bin/../.." rev-parse HEAD 2>/dev/null || echo unknown)
bw_line=$(jq -r 'map("\(.n_threads) thread\(if .n_threads > 1 then "s" else "" end) \(.best_gbps) GB/s (\(.pattern), \(.memory))") | join(", ")' "$out/bandwidth-max.json")
cmd="BENCH_THREADS=$threads BENCH_P=$np BENCH_N=$nn BENCH_R=$reps BENCH_ROUNDS=$rounds"
[ -n "$scaling" ] && cmd="$cmd BENCH_SCALING=$scaling"
[ "$long" = 1 ] && cmd="$cmd BENCH_LONG=1 BENCH_LONG_R=$long_r"
[ -n "${BENCH_MODELS:-}" ] && cmd="$cmd BENCH_MODELS=\"$models\""
[ -n "${BENCH_TYPES:-}" ] && cmd="$cmd BENCH_TYPES=\"$types\""
{
  echo "<!-- bench:begin (written by bench/run.sh; do not edit by hand) -->"
  echo "Run on $(date -u +%Y-%m-%d): $cpu, $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; llama.cpp ${commit%% *}."
  if [ $rejoin -eq 1 ]; then
    echo "Command: \`$cmd bench/run.sh --rejoin\` (the table rebuilt from the JSON of earlier runs; see the files' test_time)"
  else
    echo "Command: \`$cmd bench/run.sh\`"
  fi
  echo "Memory read bandwidth (\`build/bench/bandwidth\`: the best read pattern and pass of all probes of the run, $bw_reps passes per pattern; pattern and memory in parentheses): $bw_line; the bound is bytes read per token / this."
  echo
  echo "| model | type | threads | test | depth | slm t/s | llama.cpp t/s | slm / llama.cpp | bound t/s | slm % of bound | llama.cpp % of bound |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  jq -r '
    def f2: if . == null then "-" else (. * 100 | round / 100 | tostring) end;
    def ts(a; b): if a == null then "failed" else "\(a | f2) ± \(b | f2)" end;
    def pct(a): if a == null or .bound_ts == null then "-" else "\(a / .bound_ts * 100 | round)%" end;
    .[]
    | "| \(.model) | \(.type) | \(.n_threads) | \(.test) | \(.n_depth) | \(ts(.slm_ts; .slm_sd)) | \(ts(.llama_ts; .llama_sd)) | \(if .ratio != null then "\(.ratio | f2)x" else "-" end) | \(if .bound_ts == null then "-" else (.bound_ts * 10 | round / 10 | tostring) end) | \(pct(.slm_ts)) | \(pct(.llama_ts)) |"
  ' "$out/results.json"
  echo "<!-- bench:end -->"
} > "$out/table.md"

res=${BENCH_RESULTS:-bench/RESULTS.md}
if [ -f "$res" ] && grep -q 'bench:begin' "$res"; then
  awk -v tbl="$out/table.md" '
    /bench:begin/ { while ((getline l < tbl) > 0) print l; skip = 1; next }
    /bench:end/ { skip = 0; next }
    !skip { print }' "$res" > "$res.tmp" && mv "$res.tmp" "$res"
else
  cat "$out/table.md" >> "$res"
fi
cat "$out/table.md"
if [ "${BENCH_PLOT:-1}" = 1 ]; then
  if command -v gnuplot >/dev/null 2>&1; then
    bash bench/plot.sh "$out/results.json" "${BENCH_PNG:-bench/results.png}" || echo "bench: plot failed" >&2
  else
    echo "bench: no gnuplot (apt-get install gnuplot-nox); bench/results.png not redrawn" >&2
  fi
fi
