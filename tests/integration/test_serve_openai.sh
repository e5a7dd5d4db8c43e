#!/usr/bin/env bash
# slm serve driven by the official openai npm client (pinned in
# tests/integration/openai_client/package.json + package-lock.json, installed
# with `npm ci` into build/npm-openai), over HTTPS with the generated
# self-signed certificate trusted through NODE_EXTRA_CA_CERTS.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
export T_TMP

NPM_DIR=$PWD/build/npm-openai
MODEL=$T_TMP/tiny.gguf
STATE=$T_TMP/state
OUT=$T_TMP/serve.out

t_install() {
  command -v node >/dev/null && command -v npm >/dev/null || skip "node or npm not installed"
  mkdir -p "$NPM_DIR"
  t_lock "$NPM_DIR"
  cp tests/integration/openai_client/package.json tests/integration/openai_client/package-lock.json \
     tests/integration/openai_client/client_test.mjs "$NPM_DIR/"
  if [ ! -d "$NPM_DIR/node_modules/openai" ] ||
     ! cmp -s "$NPM_DIR/package-lock.json" "$NPM_DIR/node_modules/.package-lock.json.src" 2>/dev/null; then
    (cd "$NPM_DIR" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$T_TMP/npm.log" 2>&1 ||
      skip "npm ci failed (no registry?): $(tail -n 3 "$T_TMP/npm.log")"
    cp "$NPM_DIR/package-lock.json" "$NPM_DIR/node_modules/.package-lock.json.src"
  fi
}

t_client() {
  [ -d "$NPM_DIR/node_modules/openai" ] || skip "openai package not installed"
  "$SLM" mkmodel --preset tiny "$MODEL" >/dev/null 2>&1 || fail "mkmodel failed"
  "$SLM" serve -m "$MODEL" --port 0 --state-dir "$STATE" -t 1 >"$OUT" 2>"$T_TMP/serve.err" &
  local pid=$! port
  for _ in $(seq 1 200); do grep -q 'endpoint:' "$OUT" 2>/dev/null && break; sleep 0.1; done
  port=$(sed -n 's#.*endpoint: *https://127.0.0.1:\([0-9]*\)/v1.*#\1#p' "$OUT")
  [ -n "$port" ] || { kill $pid; fail "server did not start: $(cat "$T_TMP/serve.err")"; }
  SLM_BASE_URL=https://127.0.0.1:$port/v1 SLM_API_KEY_FILE=$STATE/api-key \
    NODE_EXTRA_CA_CERTS=$STATE/tls/cert.pem timeout 90 node "$NPM_DIR/client_test.mjs"
  local rc=$?
  kill -TERM $pid
  wait $pid || fail "server exit status $?"
  [ $rc = 0 ] || fail "openai client checks failed"
}

t_run "install the pinned openai npm package" t_install
t_run "openai client: chat, streaming, completions, errors, usage" t_client
t_end
