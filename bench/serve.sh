#!/usr/bin/env bash
# serve.sh - `slm serve` under load: aggregate tokens/s with 1, 2 and 4
# concurrent streams, and the latency the server adds to a request against the
# engine doing the same work directly (issue 4; target: under 1 ms). A
# benchmark, not a test: it asserts nothing about speed.
#
# How to run it: on a quiet machine, from the repository root,
#     make -j2 && bench/serve.sh
# It takes about 2 minutes with the defaults below (plus a few minutes once to
# make the model if build/bench has none). It builds build/bench/serve_load
# from bench/serve_load.c (a small C client over plain HTTP or OpenSSL, linked
# with build/rel/libslm.a to run the engine itself), starts `slm serve` on
# 127.0.0.1 with --port 0 (a free port), a throw-away state directory and API
# key, runs the measurements one after another (never two at once), prints a
# markdown table and writes it into bench/RESULTS.md between the markers
# serve:table:begin and serve:table:end (the prose around them is kept). Raw
# key=value lines land in build/bench/serve.raw.txt.
#
# What is measured (see bench/RESULTS.md for how to read it):
#   1. streams: the model below with --parallel 4; for 1, 2 and 4 clients, each
#      sends BENCH_R streaming /v1/completions requests back to back on its own
#      kept-alive connection (prompt of BENCH_P token ids, max_tokens BENCH_N,
#      temperature 0, ignore_eos, TLS): aggregate generated tokens/s,
#      per-stream tokens/s, time to first token, request latency.
#   2. added latency: one client sends requests one after another
#      (BENCH_LAT_P prompt tokens, BENCH_LAT_N generated), non-streaming and
#      streaming, on a kept-alive connection and (streaming) on a new
#      connection per request, over HTTPS and plain HTTP, timed at the client;
#      before each, the client does the same work with the engine in its own
#      process (model_decode + the sampler, a context with the server's
#      threads, size and slots) while the server idles; "added" is the median
#      of the per-pair differences. On the tiny preset (engine work ~0.5 ms, so
#      nearly all of a request is the server's) and on the model. One run
#      streams as an HTTP/1.0 client, whose stream ends with the connection.
#   3. requests without engine work (/health, /v1/models, /tokenize): the
#      HTTP + TLS + auth + JSON round trip, kept-alive and on new connections.
#
# serve_load reads each response as its head says (chunked, Content-Length or
# up to the close, strictly) and keeps the connection unless the head says
# Connection: close; each result line counts connections and responses by
# framing, and the table's "Connections" line sums them, so a server that
# stopped keeping streams alive shows there.
#
# Settings (environment):
#   BENCH_MODEL=FILE     model for 1 and the second half of 2 (default
#                        build/bench/qwen2.5-0.5b-q8_0.gguf, made with
#                        `slm mkmodel --preset qwen2.5-0.5b` + `slm quantize ... q8_0`
#                        as bench/run.sh does)
#   BENCH_THREADS=N      engine threads (slm serve -t and the client's engine);
#                        default: the CPUs less one, at least 1
#   BENCH_STREAMS="1 2 4" BENCH_P=128 BENCH_N=64 BENCH_R=4
#   BENCH_LAT_P=32 BENCH_LAT_N=16 BENCH_LAT_R=20 BENCH_TINY_R=200 BENCH_RTT_R=2000
#   BENCH_CTX=1024       context per slot (server and engine)
#   SLM=build/rel/slm    the binary
#   BENCH_NO_RESULTS=1   print the table only, leave bench/RESULTS.md alone
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
slm=${SLM:-build/rel/slm}
out=build/bench
# One core is left to the server's I/O thread and to this client (on 2 cores
# they would otherwise take time slices from the engine's synchronised threads).
n_cpu=$(nproc)
threads=${BENCH_THREADS:-$(( n_cpu > 1 ? n_cpu - 1 : 1 ))}
streams=${BENCH_STREAMS:-"1 2 4"}
np=${BENCH_P:-128} nn=${BENCH_N:-64} nr=${BENCH_R:-4}
lp=${BENCH_LAT_P:-32} ln=${BENCH_LAT_N:-16} lr=${BENCH_LAT_R:-20}
tr=${BENCH_TINY_R:-200} rr=${BENCH_RTT_R:-2000}
ctx=${BENCH_CTX:-1024}
slots=4
model=${BENCH_MODEL:-$out/qwen2.5-0.5b-q8_0.gguf}
load=$out/serve_load
raw=$out/serve.raw.txt
mkdir -p "$out"

if [ ! -x "$slm" ] || [ ! -f build/rel/libslm.a ]; then make -s -j2 all; fi
# The load generator: the project's warning flags and hardening, against libslm.a.
if [ ! -x "$load" ] || [ bench/serve_load.c -nt "$load" ] || [ build/rel/libslm.a -nt "$load" ]; then
  echo "serve.sh: building $load" >&2
  read -r -a libs <<<"$(pkg-config --libs libseccomp openssl 2>/dev/null || echo -lseccomp -lssl -lcrypto)"
  cc -std=c17 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes \
    -Wmissing-prototypes -Wvla -Wimplicit-fallthrough -Wnull-dereference -Werror \
    -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fstack-clash-protection -fcf-protection -fPIE \
    -Isrc -o "$load" bench/serve_load.c build/rel/libslm.a -pie -Wl,-z,relro,-z,now \
    -lm -lpthread "${libs[@]}"
fi

if [ -z "${BENCH_MODEL:-}" ] && [ ! -f "$model" ]; then
  f16=$out/qwen2.5-0.5b-f16.gguf
  [ -f "$f16" ] || "$slm" mkmodel --preset qwen2.5-0.5b --type f16 "$f16"
  "$slm" quantize "$f16" "$model" q8_0
fi
[ -f "$model" ] || { echo "serve.sh: no model $model (set BENCH_MODEL)" >&2; exit 1; }
tiny=$out/serve-tiny.gguf
[ -f "$tiny" ] || "$slm" mkmodel --preset tiny "$tiny" >/dev/null

tmp=$(mktemp -d "${TMPDIR:-/tmp}/slm-serve-bench-XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
(umask 077 && printf 'sk-bench-%s\n' "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" >"$tmp/key")
: >"$raw"

# Each run of serve_load gets its own range of prompt indices, so no prompt
# ever shares a prefix with an earlier one (the prefix cache stays cold).
first=0
# run LABEL ARGS...: runs serve_load, tags its result line with LABEL.
run() {
  local label=$1 line
  shift
  first=$((first + 10000))
  line=$("$load" --first "$first" "$@") || { echo "serve.sh: failed: serve_load $*" >&2; exit 1; }
  echo "label=$label $line" | tee -a "$raw" >&2
}

# start_server MODEL CTX [ARGS...]: slm serve on a free port; sets $port and $conn.
start_server() {
  local m=$1 c=$2
  shift 2
  "$slm" serve -m "$m" --port 0 --state-dir "$tmp/state" --api-key-file "$tmp/key" \
    -np "$slots" -t "$threads" -c "$c" -n "$(( nn > ln ? nn : ln ))" "$@" \
    >"$tmp/serve.out" 2>"$tmp/serve.err" &
  server_pid=$!
  port=
  for _ in $(seq 1 600); do
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/serve.err" >&2; echo "serve.sh: slm serve exited" >&2; exit 1; }
    port=$(sed -n 's#.*endpoint: *https\{0,1\}://127.0.0.1:\([0-9]*\)/v1.*#\1#p' "$tmp/serve.out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "serve.sh: slm serve did not print its endpoint" >&2; exit 1; }
  conn=(--port "$port" --key-file "$tmp/key")
  grep -q 'endpoint: *https:' "$tmp/serve.out" && conn+=(--cacert "$tmp/state/tls/cert.pem" --resume)
  for _ in $(seq 1 300); do
    "$load" "${conn[@]}" rtt --health -r 1 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "serve.sh: /health never answered 200" >&2
  exit 1
}

stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || { echo "serve.sh: slm serve exited with $?" >&2; cat "$tmp/serve.err" >&2; exit 1; }
  server_pid=
}

# The engine in serve_load's process, shaped like the server's (slm serve -t -c -np).
eng_tiny=(-m "$tiny" -t "$threads" --ctx-size 512 --slots "$slots")
eng_model=(-m "$model" -t "$threads" --ctx-size "$ctx" --slots "$slots")

echo "serve.sh: tiny model, HTTPS" >&2
start_server "$tiny" 512
run rtt_health_tls "${conn[@]}" rtt --health -r "$rr"
run rtt_models_tls "${conn[@]}" rtt --models -r "$rr"
run rtt_tokenize_tls "${conn[@]}" rtt --tokenize -r "$rr"
# Full handshakes: the same connection without --resume.
run rtt_models_tls_new --port "$port" --key-file "$tmp/key" --cacert "$tmp/state/tls/cert.pem" \
  rtt --models --new-conn -r "$((rr / 10))"
run rtt_models_tls_resumed "${conn[@]}" rtt --models --new-conn -r "$((rr / 10))"
run tiny_tls "${conn[@]}" complete -p "$lp" -n "$ln" -r "$tr" "${eng_tiny[@]}"
run tiny_tls_sse "${conn[@]}" complete -p "$lp" -n "$ln" -r "$tr" --sse "${eng_tiny[@]}"
run tiny_tls_sse_new "${conn[@]}" --new-conn complete -p "$lp" -n "$ln" -r "$tr" --sse "${eng_tiny[@]}"
stop_server

echo "serve.sh: tiny model, plain HTTP (--insecure-http)" >&2
start_server "$tiny" 512 --insecure-http
run rtt_models_http "${conn[@]}" rtt --models -r "$rr"
run rtt_models_http_new "${conn[@]}" rtt --models --new-conn -r "$((rr / 10))"
run tiny_http "${conn[@]}" complete -p "$lp" -n "$ln" -r "$tr" "${eng_tiny[@]}"
run tiny_http_sse "${conn[@]}" complete -p "$lp" -n "$ln" -r "$tr" --sse "${eng_tiny[@]}"
run tiny_http_sse_new "${conn[@]}" --new-conn complete -p "$lp" -n "$ln" -r "$tr" --sse "${eng_tiny[@]}"
run tiny_http10_sse "${conn[@]}" --http1.0 complete -p "$lp" -n "$ln" -r "$tr" --sse "${eng_tiny[@]}"
stop_server

echo "serve.sh: $model, HTTPS, --parallel $slots" >&2
start_server "$model" "$ctx"
run model_tls "${conn[@]}" complete -p "$lp" -n "$ln" -r "$lr" "${eng_model[@]}"
run model_tls_sse "${conn[@]}" complete -p "$lp" -n "$ln" -r "$lr" --sse "${eng_model[@]}"
for c in $streams; do
  run "streams_$c" "${conn[@]}" stream -c "$c" -r "$nr" -p "$np" -n "$nn"
done
stop_server

# The engine's own ceiling for c streams: one step of c sequences is a batch
# of c tokens, so `slm bench` pp<c> (c > 1) and tg (c = 1) at the streams'
# depth are the most the server could deliver (no sampling, no prompts).
echo "serve.sh: slm bench ceiling" >&2
pl=$(for c in $streams; do [ "$c" -gt 1 ] && printf '%s,' "$c"; done)
"$slm" bench -m "$model" -p "${pl%,}${pl:+,}0" -n "$nn" -d "$np" -t "$threads" -r 3 --json >"$out/serve.ceiling.json"
ceiling() {
  jq -r --argjson c "$1" '.[] | select(($c == 1 and .n_gen > 0) or ($c > 1 and .n_prompt == $c)) | .avg_ts * 100 | round / 100' "$out/serve.ceiling.json" | head -n 1
}

# ---- the table ----
# v LABEL KEY: a value from the raw lines.
v() { awk -v l="label=$1" -v k="$2" '$1 == l { for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) print a[2] } }' "$raw"; }
# f2 X: two decimals.
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
# dist LABEL KEY: "median (p10 to p90)".
dist() { awk -v m="$(v "$1" "$2_med")" -v a="$(v "$1" "$2_p10")" -v b="$(v "$1" "$2_p90")" 'BEGIN { printf "%.2f (%.2f to %.2f)", m, a, b }'; }
cached=$(awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^cached=/) { split($i, a, "="); s += a[2] } } END { print s + 0 }' "$raw")
# sum KEY LABEL-REGEX: KEY summed over the raw lines whose label matches.
sum() { awk -v k="$1" -v re="^label=($2)\$" '$1 ~ re { for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) s += a[2] } } END { print s + 0 }' "$raw"; }
ka='streams_[0-9]+|tiny_tls_sse|tiny_http_sse|model_tls_sse'
nc='.*_new|.*_resumed|tiny_http10_sse'
mname=$(basename "$model" .gguf)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
cmd="BENCH_THREADS=$threads BENCH_P=$np BENCH_N=$nn BENCH_R=$nr BENCH_LAT_P=$lp BENCH_LAT_N=$ln BENCH_LAT_R=$lr BENCH_TINY_R=$tr BENCH_RTT_R=$rr BENCH_CTX=$ctx bench/serve.sh"
[ -n "${BENCH_MODEL:-}" ] && cmd="BENCH_MODEL=$BENCH_MODEL $cmd"
[ "$streams" != "1 2 4" ] && cmd="BENCH_STREAMS=\"$streams\" $cmd"

table=$out/serve.table.md
{
  echo "<!-- serve:table:begin (written by bench/serve.sh; do not edit by hand) -->"
  echo "Run on $(date -u +%Y-%m-%d): $cpu, $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r); $(openssl version | cut -d' ' -f1-2)."
  echo "Command: \`$cmd\`; \`slm serve --parallel $slots -t $threads -c $ctx\`, TLS with session resumption unless marked HTTP."
  echo "Prompt tokens served from the prefix cache in all runs: $cached (0: every request did its full prompt work)."
  echo "Connections: the kept-alive streaming runs (streams, and the rows marked kept alive) read $(sum body_chunked "$ka") chunked and $(sum body_close "$ka") close-delimited streams on $(sum conns "$ka") connections; the runs with a new connection per request opened $(sum conns "$nc") ($(sum resumed "$nc") with a resumed TLS session) and read $(sum body_chunked "$nc") chunked, $(sum body_close "$nc") close-delimited and $(sum body_length "$nc") Content-Length bodies."
  echo
  echo "Streams ($mname, streaming /v1/completions, $np prompt tokens, $nn generated, $nr requests per stream, back to back; median (p10 to p90)):"
  echo
  echo "| streams | aggregate tokens/s | engine ceiling, tokens/s | per-stream tokens/s | time to first token, ms | request latency, ms |"
  echo "|---|---|---|---|---|---|"
  for c in $streams; do
    l=streams_$c
    echo "| $c | $(f2 "$(v "$l" agg_tps)") | $(f2 "$(ceiling "$c")") | $(dist "$l" stream_tps) | $(dist "$l" ttft_ms) | $(dist "$l" latency_ms) |"
  done
  echo
  echo "Added latency (one client, one request after another, $lp prompt tokens, $ln generated, each paired with the engine doing the same work in the client's process just before; median (p10 to p90) in ms; added: the per-pair differences server - engine):"
  echo
  echo "| model | request | transport | server | engine directly | added |"
  echo "|---|---|---|---|---|---|"
  for row in "tiny tiny_tls non-streaming HTTPS, kept alive" \
             "tiny tiny_tls_sse streaming HTTPS, kept alive (chunked)" \
             "tiny tiny_tls_sse_new streaming HTTPS, new connection each (resumed TLS session)" \
             "tiny tiny_http non-streaming HTTP, kept alive" \
             "tiny tiny_http_sse streaming HTTP, kept alive (chunked)" \
             "tiny tiny_http_sse_new streaming HTTP, new connection each" \
             "tiny tiny_http10_sse streaming HTTP/1.0, new connection each (stream ends with the close)" \
             "model model_tls non-streaming HTTPS, kept alive" \
             "model model_tls_sse streaming HTTPS, kept alive (chunked)"; do
    read -r which l kind trans <<<"$row"
    name=$([ "$which" = tiny ] && echo "tiny preset" || echo "$mname")
    echo "| $name | $kind | $trans | $(dist "$l" ms) | $(dist "$l" engine_ms) | $(dist "$l" added_ms) |"
  done
  echo
  echo "Requests without engine work (tiny preset; round trip at the client, microseconds):"
  echo
  echo "| request | transport | median | p10 | p90 | p99 |"
  echo "|---|---|---|---|---|---|"
  for row in "rtt_health_tls GET /health|HTTPS, kept alive" \
             "rtt_models_tls GET /v1/models|HTTPS, kept alive" \
             "rtt_tokenize_tls POST /tokenize|HTTPS, kept alive" \
             "rtt_models_http GET /v1/models|HTTP, kept alive" \
             "rtt_models_tls_new GET /v1/models|HTTPS, new connection, full handshake" \
             "rtt_models_tls_resumed GET /v1/models|HTTPS, new connection, resumed session" \
             "rtt_models_http_new GET /v1/models|HTTP, new connection"; do
    l=${row%% *}
    rest=${row#* }
    echo "| ${rest%%|*} | ${rest#*|} | $(v "$l" us_med) | $(v "$l" us_p10) | $(v "$l" us_p90) | $(v "$l" us_p99) |"
  done
  echo "<!-- serve:table:end -->"
} >"$table"

res=bench/RESULTS.md
if [ -z "${BENCH_NO_RESULTS:-}" ] && [ -f "$res" ]; then
  if grep -q 'serve:table:begin' "$res"; then
    awk -v tbl="$table" '
      /serve:table:begin/ { while ((getline l < tbl) > 0) print l; skip = 1; next }
      /serve:table:end/ { skip = 0; next }
      !skip { print }' "$res" >"$res.tmp" && mv "$res.tmp" "$res"
  elif ! grep -q 'serve:begin' "$res"; then
    {
      echo
      echo "<!-- serve:begin -->"
      echo "## Server: \`bench/serve.sh\` (throughput and added latency of \`slm serve\`)"
      echo
      cat "$table"
      echo "<!-- serve:end -->"
    } >>"$res"
  else
    echo "serve.sh: $res has serve:begin but no serve:table:begin; table left in $table" >&2
  fi
fi
cat "$table"
