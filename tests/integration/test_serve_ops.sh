#!/usr/bin/env bash
# slm serve, the operator's side: options from the command line, SLM_*
# environment variables and a config file (precedence, errors naming
# file:line:col and key, permissions, keys never in argv or the file);
# /health 503 "loading" while the model loads (made observable with the
# test-only SLM_TEST_LOAD_DELAY_MS), loading errors; the start-up report and
# its client snippets (OpenCode JSON through jq, Continue YAML through
# python3-yaml); the per-address connection cap.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
export T_TMP

MODEL=$T_TMP/tiny.gguf
"$SLM" mkmodel --preset tiny "$MODEL" >/dev/null 2>&1 || { echo "mkmodel failed"; exit 1; }

# start NAME [ARGS...]: starts `slm serve` in the background with output in
# $T_TMP/NAME.{out,err} and its status in $T_TMP/NAME.exit; sets PID and PORT
# (from the "listening on" log line, printed before the model is loaded).
start() {
  local name=$1
  shift
  rm -f "$T_TMP/$name.exit"
  ( exec "$SLM" serve -m "$MODEL" --port 0 -t 1 "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err" ) &
  PID=$!
  ( wait $PID 2>/dev/null; echo $? >"$T_TMP/$name.exit" ) &
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/.*listening on .* port \([0-9]*\) .*/\1/p' "$T_TMP/$name.err")
    [ -n "$PORT" ] && return 0
    kill -0 $PID 2>/dev/null || break
    sleep 0.1
  done
  cat "$T_TMP/$name.err" >&2
  fail "server $name did not start"
}
# ready NAME: waits for the report on stdout.
ready() {
  for _ in $(seq 1 150); do
    grep -q '^slm serve is ready' "$T_TMP/$1.out" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "server $1 never became ready: $(tail -n 5 "$T_TMP/$1.err")"
}
# stop: SIGTERM to PID; its exit status must be 0 and its log free of sanitizer reports.
stop() {
  kill -TERM $PID 2>/dev/null
  for _ in $(seq 1 150); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done
  kill -0 $PID 2>/dev/null && fail "server still running 15 s after SIGTERM"
  wait $PID 2>/dev/null
  local rc=$?
  [ $rc = 0 ] || fail "server exit status $rc"
  grep -h 'AddressSanitizer\|runtime error\|LeakSanitizer' "$T_TMP"/*.err && fail "sanitizer report"
  true
}
# section FILE NAME: the lines after "== NAME" up to the next blank line.
section() { awk -v n="== $2" 'index($0, n) == 1 {f = 1; next} f && /^$/ {exit} f' "$1"; }
# hc STATE URL [curl args]: HTTPS with the state's certificate.
hc() { local s=$1; shift; curl -sS --max-time 10 --cacert "$s/tls/cert.pem" "$@"; }

t_precedence() {
  local cfg=$T_TMP/prec.conf out
  cat >"$cfg" <<'EOF'
# all four layers meet here
alias = from-file
ctx-size = 256
parallel = 2       # kept: nobody else sets it
queue-max = 9
EOF
  chmod 600 "$cfg"
  out=$(SLM_ALIAS=from-env SLM_CTX_SIZE=300 SLM_QUEUE_MAX= \
        "$SLM" serve -m "$MODEL" --config "$cfg" --ctx-size 128 --print-config) ||
    fail "--print-config failed"
  echo "$out" | grep -qx 'ctx-size = 128  # command line' || fail "ctx-size: $out"
  echo "$out" | grep -qx 'alias = from-env  # environment SLM_ALIAS' || fail "alias: $out"
  echo "$out" | grep -qx 'parallel = 2  # config file' || fail "parallel: $out"
  echo "$out" | grep -qx 'queue-max = 9  # config file' || fail "empty env var not unset: $out"
  echo "$out" | grep -qx 'port = 8443  # default' || fail "port: $out"
  echo "$out" | grep -qx 'max-connections-per-ip = 64  # default' || fail "per-ip: $out"
  # The printed configuration is itself a valid config file.
  echo "$out" | grep -v '^model = ' >"$T_TMP/printed.conf"; chmod 600 "$T_TMP/printed.conf"
  "$SLM" serve -m "$MODEL" --config "$T_TMP/printed.conf" --print-config >/dev/null ||
    fail "printed configuration does not parse back"
  # The config file may also come from SLM_CONFIG, and SLM_MODEL names the model.
  out=$(SLM_CONFIG=$cfg SLM_MODEL=$MODEL "$SLM" serve --print-config) || fail "SLM_CONFIG"
  echo "$out" | grep -qx 'alias = from-file  # config file' || fail "SLM_CONFIG not read: $out"
  # The real server uses the merged values.
  SLM_ALIAS=from-env SLM_CTX_SIZE=300 start prec --config "$cfg" --ctx-size 128 \
    --state-dir "$T_TMP/prec-state"
  ready prec
  local key
  key=$(head -n 1 "$T_TMP/prec-state/api-key")
  hc "$T_TMP/prec-state" -H "Authorization: Bearer $key" "https://127.0.0.1:$PORT/v1/models" |
    jq -e '.data[0].id == "from-env" and .data[0].context_length == 128' >/dev/null ||
    fail "/v1/models does not show the merged configuration"
  grep -q 'model:       from-env (context 128 tokens, 2 requests at once' "$T_TMP/prec.out" ||
    fail "report: $(head -n 5 "$T_TMP/prec.out")"
  stop
}

t_config_errors() {
  local cfg=$T_TMP/bad.conf e=$T_TMP/bad.err
  # check TEXT EXIT MESSAGE: a config file holding TEXT fails with EXIT and MESSAGE.
  check() {
    printf '%b' "$1" >"$cfg"; chmod 600 "$cfg"
    "$SLM" serve -m "$MODEL" --config "$cfg" --print-config >/dev/null 2>"$e"
    local rc=$?
    [ $rc = "$2" ] || fail "'$1': exit $rc, want $2: $(cat "$e")"
    grep -qF -- "$3" "$e" || fail "'$1': message '$(cat "$e")' lacks '$3'"
    [ "$(wc -l <"$e")" = 1 ] || fail "'$1': more than one line: $(cat "$e")"
  }
  check 'port = 1\nprot = 2\n' 3 "$cfg:2:1: unknown key 'prot'"
  check 'alias = a\n# c\nalias = b\n' 3 "$cfg:3:1: duplicate key 'alias' (first set on line 1)"
  check 'parallel = 2\nnp = 3\n' 3 "$cfg:2:1: duplicate key 'parallel'"
  check 'port = 8o8o\n' 3 "$cfg:1:8: port: wants an integer from 0 to 65535, got '8o8o'"
  check 'insecure-http = sure\n' 3 "$cfg:1:17: insecure-http: wants true or false"
  check 'port 8443\n' 3 "$cfg:1:1: expected 'name = value'"
  check 'api-key = sk-secret-key-0123456789\n' 3 "$cfg:1:1: api-key is not accepted"
  grep -q 'sk-secret' "$e" && fail "the refused key was echoed"
  check 'config = /etc/x\n' 3 "config is not accepted in a config file"
  # Who may change the file: group- or world-writable is refused (like sshd).
  printf 'port = 1\n' >"$cfg"; chmod 620 "$cfg"
  "$SLM" serve -m "$MODEL" --config "$cfg" --print-config >/dev/null 2>"$e"
  [ $? = 3 ] || fail "group-writable config accepted"
  grep -q "writable by group or others (mode 620).*chmod go-w $cfg" "$e" || fail "$(cat "$e")"
  chmod 602 "$cfg"
  "$SLM" serve -m "$MODEL" --config "$cfg" --print-config >/dev/null 2>&1 && fail "0602 accepted"
  chmod 644 "$cfg"
  "$SLM" serve -m "$MODEL" --config "$cfg" --print-config >/dev/null || fail "0644 refused"
  "$SLM" serve -m "$MODEL" --config "$T_TMP/none.conf" 2>"$e"
  [ $? = 3 ] && grep -q "none.conf" "$e" || fail "missing config file: $(cat "$e")"
  # Environment: a bad value names the variable; exit 3.
  SLM_PORT=http "$SLM" serve -m "$MODEL" --print-config >/dev/null 2>"$e"
  [ $? = 3 ] || fail "bad SLM_PORT accepted"
  grep -q "environment variable SLM_PORT (--port): wants an integer" "$e" || fail "$(cat "$e")"
  # Command line: keys are refused, with the way to give one; usage errors exit 2.
  "$SLM" serve -m "$MODEL" --api-key sk-secret-key-0123456789 2>"$e"
  [ $? = 2 ] || fail "--api-key accepted"
  grep -q -- "--api-key is not accepted: .*--api-key-file" "$e" || fail "$(cat "$e")"
  grep -q 'sk-secret' "$e" && fail "the refused key was echoed"
  "$SLM" serve -m "$MODEL" --prot 1 2>&1 | grep -q "unknown option '--prot'" || fail "--prot"
  "$SLM" serve --help | grep -q 'SLM_MAX_CONNECTIONS_PER_IP' || fail "--help lacks the variables"
  true
}

t_key_not_in_argv() {
  local k=sk-test-env-key-0123456789abcdef
  SLM_API_KEY=$k start envkey --state-dir "$T_TMP/envkey-state"
  ready envkey
  tr '\0' ' ' </proc/$PID/cmdline | grep -q "$k" && fail "key in argv"
  grep -q "$k" "$T_TMP/envkey.out" "$T_TMP/envkey.err" && fail "key printed"
  hc "$T_TMP/envkey-state" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $k" \
    "https://127.0.0.1:$PORT/v1/models" | grep -qx 200 || fail "SLM_API_KEY not accepted"
  # The report points to where the key is instead of holding it.
  grep -q 'API key:     \$SLM_API_KEY' "$T_TMP/envkey.out" || fail "no hint"
  section "$T_TMP/envkey-state/serve-report.txt" OpenCode | jq -e \
    '.provider.slm.options.apiKey == "{env:SLM_API_KEY}"' >/dev/null || fail "OpenCode key ref"
  stop
}

t_loading() {
  local st=$T_TMP/load-state h
  SLM_TEST_LOAD_DELAY_MS=4000 start load --state-dir "$st"
  h=$(hc "$st" -i "https://127.0.0.1:$PORT/health") || fail "no answer while loading"
  echo "$h" | head -n 1 | grep -q '^HTTP/1.1 503' || fail "health while loading: $h"
  echo "$h" | grep -qi '^Retry-After: 1' || fail "no Retry-After: $h"
  echo "$h" | tail -n 1 | grep -qx '{"status":"loading"}' || fail "body: $h"
  hc "$st" "https://127.0.0.1:$PORT/v1/models" |
    jq -e '.error.code == "model_loading" and .error.type == "server_error"' >/dev/null ||
    fail "/v1/models while loading"
  grep -q 'slm serve is ready' "$T_TMP/load.out" && fail "report before the model loaded"
  for _ in $(seq 1 100); do
    [ "$(hc "$st" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/health")" = 200 ] && break
    sleep 0.1
  done
  [ "$(hc "$st" "https://127.0.0.1:$PORT/health")" = '{"status":"ok"}' ] || fail "never ready"
  ready load
  stop
  # SIGTERM while loading: a clean, quick exit 0.
  SLM_TEST_LOAD_DELAY_MS=60000 start load2 --state-dir "$st"
  stop
}

t_load_errors() {
  local e=$T_TMP/lerr.err
  head -c 4096 "$MODEL" >"$T_TMP/truncated.gguf"
  printf 'not a gguf file at all\n' >"$T_TMP/garbage.gguf"
  for m in "$T_TMP/truncated.gguf" "$T_TMP/garbage.gguf"; do
    timeout 30 "$SLM" serve -m "$m" --port 0 -t 1 --state-dir "$T_TMP/lerr-state" >/dev/null 2>"$e"
    local rc=$?
    [ $rc = 1 ] || fail "$m: exit $rc: $(cat "$e")"
    [ "$(grep -c '^slm serve: ' "$e")" = 1 ] || fail "$m: no one-line error: $(cat "$e")"
    grep -q "^slm serve: .*$(basename "$m")\|^slm serve: .*gguf\|^slm serve: .*magic" "$e" ||
      fail "$m: error does not say what: $(cat "$e")"
  done
  timeout 10 "$SLM" serve -m "$T_TMP/missing.gguf" --state-dir "$T_TMP/lerr-state" 2>"$e"
  [ $? = 1 ] && grep -q "cannot read .*missing.gguf" "$e" || fail "missing model: $(cat "$e")"
}

t_report() {
  local st=$T_TMP/rep-state r out key
  start rep --state-dir "$st" --alias 'rep-model'
  ready rep
  r=$st/serve-report.txt
  out=$T_TMP/rep.out
  [ "$(stat -c %a "$r")" = 600 ] || fail "report mode $(stat -c %a "$r")"
  key=$(head -n 1 "$st/api-key")
  grep -q "API key:     $key" "$out" || fail "generated key not shown once"
  section "$out" OpenCode >"$T_TMP/oc.json"
  jq -e --arg k "$key" --arg u "https://127.0.0.1:$PORT/v1" '
      .provider.slm.options.baseURL == $u and .provider.slm.options.apiKey == $k and
      .provider.slm.npm == "@ai-sdk/openai-compatible" and
      .provider.slm.models["rep-model"].limit.context == 512 and .model == "slm/rep-model"' \
    "$T_TMP/oc.json" >/dev/null || fail "OpenCode JSON: $(cat "$T_TMP/oc.json")"
  section "$out" Continue >"$T_TMP/continue.yaml"
  python3 - "$T_TMP/continue.yaml" "$key" "https://127.0.0.1:$PORT/v1" "$st/tls/cert.pem" <<'EOF' ||
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
m = c["models"][0]
assert c["schema"] == "v1" and c["name"] and c["version"], c
assert m["provider"] == "openai" and m["model"] == "rep-model", m
assert m["apiKey"] == sys.argv[2] and m["apiBase"] == sys.argv[3], m
assert "chat" in m["roles"] and m["defaultCompletionOptions"]["contextLength"] == 512, m
assert m["requestOptions"]["caBundlePath"] == sys.argv[4], m
EOF
    fail "Continue YAML: $(cat "$T_TMP/continue.yaml")"
  section "$out" Cline | grep -q "Base URL: *https://127.0.0.1:$PORT/v1" || fail "Cline"
  section "$out" Aider >"$T_TMP/aider.sh"
  grep -qx "export OPENAI_API_BASE=https://127.0.0.1:$PORT/v1" "$T_TMP/aider.sh" || fail "Aider"
  grep -qx "aider --model openai/rep-model" "$T_TMP/aider.sh" || fail "Aider model"
  grep -q "NODE_EXTRA_CA_CERTS=$st/tls/cert.pem" "$out" || fail "no NODE_EXTRA_CA_CERTS"
  grep -q "REQUESTS_CA_BUNDLE=$st/tls/cert.pem" "$out" || fail "no REQUESTS_CA_BUNDLE"
  # The curl line of the report works as printed.
  bash -c "$(grep -m1 '^  curl ' "$out") -sS" | jq -e '.choices[0].message' >/dev/null ||
    fail "the report's curl line failed"
  # The Aider lines work with the openai SDK's environment (what Aider reads).
  ( . "$T_TMP/aider.sh" 2>/dev/null || true
    curl -sS --max-time 10 --cacert "$SSL_CERT_FILE" -H "Authorization: Bearer $OPENAI_API_KEY" \
      "$OPENAI_API_BASE/models" ) | jq -e '.data[0].id == "rep-model"' >/dev/null ||
    fail "Aider's environment does not reach the server"
  stop
  # Second start: stdout no longer shows the key; the private report file still does.
  start rep2 --state-dir "$st" --alias rep-model
  ready rep2
  grep -q "$key" "$T_TMP/rep2.out" && fail "stored key printed again"
  grep -q "API key:     \$(cat $st/api-key)" "$T_TMP/rep2.out" || fail "no hint"
  section "$T_TMP/rep2.out" OpenCode | jq -e --arg f "{file:$st/api-key}" \
    '.provider.slm.options.apiKey == $f' >/dev/null || fail "stdout OpenCode key ref"
  section "$r" OpenCode | jq -e --arg k "$key" '.provider.slm.options.apiKey == $k' >/dev/null ||
    fail "report file lacks the key"
  stop
}

t_per_ip_cap() {
  # Plain HTTP (for the 503 body), cap 4 per address.
  start cap --state-dir "$T_TMP/cap-state" --insecure-http --max-connections-per-ip 4
  ready cap
  python3 - "$PORT" <<'EOF' || fail "per-address cap"
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
time.sleep(0.3)
extra = socket.create_connection(("127.0.0.1", port))
extra.settimeout(5)
data = b""
while True:
    b = extra.recv(4096)
    if not b:
        break
    data += b
assert data.startswith(b"HTTP/1.1 503 "), data
assert b"\r\nRetry-After: 1\r\n" in data and b"too many open connections" in data, data
# The held ones are served.
held[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
held[0].settimeout(5)
assert held[0].recv(4096).startswith(b"HTTP/1.1 200 "), "held connection not served"
# Closing one frees its place.
held[1].close()
time.sleep(0.3)
again = socket.create_connection(("127.0.0.1", port))
again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
again.settimeout(5)
assert again.recv(4096).startswith(b"HTTP/1.1 200 "), "place not freed"
EOF
  local key
  key=$(head -n 1 "$T_TMP/cap-state/api-key")
  curl -sS --max-time 10 -H "Authorization: Bearer $key" "http://127.0.0.1:$PORT/metrics" |
    grep -q '^slm_http_connections_refused_total [1-9]' || fail "refusal not counted"
  stop
  # The TLS default: 64 per address; 100 connections from 127.0.0.1, 36 closed at once.
  start cap2 --state-dir "$T_TMP/cap-state"
  ready cap2
  python3 - "$PORT" <<'EOF' || fail "default per-address cap over TLS"
import socket, sys, select, time
port = int(sys.argv[1])
socks = []
for _ in range(100):
    socks.append(socket.create_connection(("127.0.0.1", port)))
time.sleep(1.0)
closed = 0
for s in socks:
    r, _, _ = select.select([s], [], [], 0)
    if r:
        try:
            if s.recv(1) == b"":
                closed += 1
        except ConnectionResetError:
            closed += 1
assert closed == 36, closed
EOF
  [ "$(curl -s --max-time 5 --cacert "$T_TMP/cap-state/tls/cert.pem" "https://127.0.0.1:$PORT/health")" = '{"status":"ok"}' ] ||
    fail "server unhealthy after the flood"
  stop
}

t_run "precedence: command line > environment > config file > default" t_precedence
t_run "config errors name file:line:col and key; permissions; keys refused" t_config_errors
t_run "SLM_API_KEY: never in argv, report refers to it" t_key_not_in_argv
t_run "/health 503 loading while the model loads, then 200; SIGTERM while loading" t_loading
t_run "a bad model still exits 1 with one line" t_load_errors
t_run "report: 0600, OpenCode JSON (jq), Continue YAML (python3-yaml), Cline, Aider, curl" t_report
t_run "per-address connection cap: 503, counted, recovers; TLS default 64" t_per_ip_cap
t_end
