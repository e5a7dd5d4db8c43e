#!/usr/bin/env bash
# slm serve: the real binary on 127.0.0.1 (any free port) with a tiny model,
# driven by curl, openssl s_client and small python clients: TLS, auth on
# every route of the router table, the OpenAI endpoints, errors, streaming,
# stop strings, concurrency, client disconnects and graceful shutdown.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
# lib.sh sets T_TMP before its set -a: export it so the cases see it.
export T_TMP

MODEL=$T_TMP/tiny.gguf
STATE=$T_TMP/state
OUT=$T_TMP/serve.out
ERR=$T_TMP/serve.err
"$SLM" mkmodel --preset tiny "$MODEL" >/dev/null 2>&1 || { echo "mkmodel failed"; exit 1; }

# The server runs for the whole script; its exit status lands in $T_TMP/exit.
( "$SLM" serve -m "$MODEL" --port 0 --state-dir "$STATE" --alias tiny-test -np 4 -t 1 \
    --n-predict -1 --cors-origin https://app.example >"$OUT" 2>"$ERR"; echo $? >"$T_TMP/exit" ) &
for _ in $(seq 1 200); do
  grep -q 'endpoint:' "$OUT" 2>/dev/null && break
  sleep 0.1
done
PORT=$(sed -n 's#.*endpoint: *https://127.0.0.1:\([0-9]*\)/v1.*#\1#p' "$OUT")
SERVER_PID=$(pgrep -f "serve -m $MODEL" | head -n 1)
[ -n "$PORT" ] && [ -n "$SERVER_PID" ] || { cat "$OUT" "$ERR"; echo "server did not start"; exit 1; }
URL=https://127.0.0.1:$PORT
CA=$STATE/tls/cert.pem
KEY=$(head -n 1 "$STATE/api-key")
AUTH=$T_TMP/auth.hdr
printf 'Authorization: Bearer %s\n' "$KEY" >"$AUTH"
chmod 600 "$AUTH"

# c ARGS...: curl against the server (certificate trusted, 20 s cap).
c() { curl -sS --max-time 20 --cacert "$CA" "$@"; }
# status METHOD PATH [curl args]: prints the HTTP status.
status() { local m=$1 p=$2; shift 2; c -o /dev/null -w '%{http_code}' -X "$m" "$URL$p" "$@"; }
# post PATH JSON: authenticated POST, body to stdout.
post() { c -H "@$AUTH" -H 'Content-Type: application/json' "$URL$1" --data-binary "$2"; }
# py EXPR-SCRIPT: runs python with stdin as JSON in variable r.
pyj() { python3 -c "import json,sys; r=json.load(sys.stdin); $1"; }

wait_health() {
  for _ in $(seq 1 100); do
    [ "$(status GET /health)" = 200 ] && return 0
    sleep 0.1
  done
  fail "/health never answered 200"
}

t_start() {
  wait_health
  grep -q 'API key:     sk-slm-' "$OUT" || fail "the generated key was not printed"
  [ "$(stat -c %a "$STATE/api-key")" = 600 ] || fail "api-key is not 0600"
  [ "$(stat -c %a "$STATE/serve-report.txt")" = 600 ] || fail "report is not 0600"
  [ "$(stat -c %a "$STATE")" = 700 ] || fail "state dir is not 0700"
  grep -q "curl --cacert $CA" "$STATE/serve-report.txt" || fail "no curl line in the report"
  grep -q "$KEY" "$ERR" && fail "the key reached the log"
  true
}

t_https_health() {
  local b
  b=$(c "$URL/health") || fail "curl over HTTPS failed"
  [ "$b" = '{"status":"ok"}' ] || fail "health body: $b"
  # Without the certificate trusted, curl must refuse it.
  curl -sS --max-time 5 "$URL/health" >/dev/null 2>&1 && fail "untrusted certificate accepted"
  openssl x509 -in "$CA" -noout -text | grep -q 'IP Address:127.0.0.1' || fail "no IP SAN"
}

t_auth_every_route() {
  local routes n=0 m p need s
  routes=$("$SLM" serve --list-routes) || fail "--list-routes failed"
  [ "$(echo "$routes" | grep -c ' key$')" -ge 8 ] || fail "route table too small: $routes"
  while read -r m p need; do
    n=$((n + 1))
    s=$(status "$m" "$p")
    if [ "$need" = key ]; then
      [ "$s" = 401 ] || fail "$m $p without key: $s"
      s=$(status "$m" "$p" -H "Authorization: Bearer sk-slm-wrong-key-000000000000")
      [ "$s" = 401 ] || fail "$m $p with a wrong Bearer key: $s"
      s=$(status "$m" "$p" -H "x-api-key: sk-slm-wrong-key-000000000000")
      [ "$s" = 401 ] || fail "$m $p with a wrong x-api-key: $s"
      s=$(status "$m" "$p" -H "Authorization: Basic dXNlcjpwYXNz")
      [ "$s" = 401 ] || fail "$m $p with Basic auth: $s"
      s=$(status "$m" "$p" -H "Authorization: Bearer ")
      [ "$s" = 401 ] || fail "$m $p with an empty Bearer: $s"
      if [ "$m" = GET ]; then
        s=$(status "$m" "$p" -H "@$AUTH")
        [ "$s" = 200 ] || fail "$m $p with the key: $s"
        s=$(status "$m" "$p" -H "x-api-key: $KEY")
        [ "$s" = 200 ] || fail "$m $p with x-api-key: $s"
      else
        # With the key, an empty body is a 400 (not 401, not 5xx).
        s=$(status "$m" "$p" -H "@$AUTH")
        [ "$s" = 400 ] || fail "$m $p with the key and no body: $s"
      fi
    else
      [ "$s" = 200 ] || fail "$m $p (open) without key: $s"
    fi
  done <<<"$routes"
  c "$URL/v1/models" | pyj 'e=r["error"]; assert e["type"]=="authentication_error" and e["code"]=="invalid_api_key" and "param" in e, r'
}

t_errors() {
  local b
  [ "$(status GET /v1/nope -H "@$AUTH")" = 404 ] || fail "unknown route not 404"
  c "$URL/v1/nope" -H "@$AUTH" | pyj 'assert "message" in r["error"] and r["error"]["type"]'
  [ "$(status DELETE /v1/models -H "@$AUTH")" = 405 ] || fail "DELETE not 405"
  c -i -X DELETE "$URL/v1/models" -H "@$AUTH" | grep -qi '^Allow: GET' || fail "405 without Allow"
  b=$(post /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],')
  echo "$b" | pyj 'assert "invalid JSON" in r["error"]["message"] and "column" in r["error"]["message"], r'
  b=$(post /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}')
  echo "$b" | pyj 'e=r["error"]; assert e["param"]=="temperature" and "temperature" in e["message"], r'
  for f in '"temperature":3' '"top_p":1.5' '"top_p":-0.1' '"max_tokens":0' '"max_tokens":1.5' \
           '"n":2' '"top_k":-1' '"presence_penalty":2.5' '"seed":"x"' '"stream":"yes"' \
           '"stop":7' '"stop":["a",1]' '"min_p":1e308'; do
    name=${f%%\":*}; name=${name#\"}
    b=$(post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],$f}")
    echo "$b" | pyj "e=r['error']; assert e['param'] in ('$name','stop') and '$name' in e['message'], r" ||
      fail "$f: $b"
  done
  b=$(post /v1/chat/completions '{"messages":[{"role":"usr","content":"hi"}]}')
  echo "$b" | pyj 'assert r["error"]["param"]=="messages[0].role", r'
  b=$(post /v1/chat/completions '{"messages":[]}')
  echo "$b" | pyj 'assert r["error"]["param"]=="messages", r'
  b=$(post /v1/chat/completions '[1,2]')
  echo "$b" | pyj 'assert "JSON object" in r["error"]["message"], r'
  # Body over the 8 MiB limit: 413 before the body is read.
  s=$(head -c 9000000 /dev/zero | tr '\0' 'a' |
      c -o /dev/null -w '%{http_code}' -H "@$AUTH" -H 'Expect:' --data-binary @- "$URL/v1/completions")
  [ "$s" = 413 ] || fail "9 MB body: $s"
  [ "$(status GET /health)" = 200 ] || fail "server unhealthy after errors"
}

t_models() {
  c -H "@$AUTH" "$URL/v1/models" |
    pyj 'd=r["data"]; assert r["object"]=="list" and d[0]["id"]=="tiny-test" and d[0]["context_length"]==512, r'
}

t_chat() {
  post /v1/chat/completions '{"model":"tiny-test","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"Hello"}]}],"max_tokens":12,"temperature":0}' |
    pyj '
u=r["usage"]; ch=r["choices"][0]
assert r["object"]=="chat.completion" and r["id"].startswith("chatcmpl-") and r["model"]=="tiny-test", r
assert ch["message"]["role"]=="assistant" and isinstance(ch["message"]["content"],str), r
assert ch["finish_reason"] in ("stop","length"), r
assert u["completion_tokens"]<=12 and u["prompt_tokens"]>5, u
assert u["total_tokens"]==u["prompt_tokens"]+u["completion_tokens"], u
assert "cached_tokens" in u["prompt_tokens_details"], u'
}

t_chat_stream() {
  local f=$T_TMP/stream.txt
  post /v1/chat/completions '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":10,"stream":true,"stream_options":{"include_usage":true}}' >"$f"
  [ "$(tail -n 2 "$f" | head -n 1)" = 'data: [DONE]' ] || fail "no [DONE] at the end"
  python3 - "$f" <<'EOF' || fail "bad stream: $(head -c 600 "$f")"
import json, sys
ev = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
assert ev[-1] == "[DONE]"
chunks = [json.loads(e) for e in ev[:-1]]
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
fin = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
assert len(fin) == 1 and fin[0]["choices"][0]["finish_reason"] in ("stop", "length")
last = chunks[-1]
assert last["choices"] == [] and last["usage"]["completion_tokens"] <= 10
assert all(c["usage"] is None for c in chunks[:-1])
EOF
  c -i -H "@$AUTH" "$URL/v1/chat/completions" -d '{"messages":[{"role":"user","content":"x"}],"max_tokens":2,"stream":true}' |
    grep -qi '^Content-Type: text/event-stream' || fail "stream content type"
}

t_completions() {
  post /v1/completions '{"prompt":"def fibonacci(n):","max_tokens":8,"temperature":0}' |
    pyj 'c=r["choices"][0]; assert r["object"]=="text_completion" and isinstance(c["text"],str) and r["usage"]["completion_tokens"]<=8, r'
  # Fill-in-the-middle: the tiny model has FIM tokens.
  post /v1/completions '{"prompt":"def f(x):\n    ","suffix":"\n    return y","max_tokens":4}' |
    pyj 'assert r["choices"][0]["finish_reason"] in ("stop","length"), r'
  # Token-id prompt.
  post /v1/completions '{"prompt":[104,344,108],"max_tokens":3}' | pyj 'assert r["usage"]["prompt_tokens"]==3, r'
  post /v1/completions '{"prompt":[104,99999],"max_tokens":3}' | pyj 'assert r["error"]["param"]=="prompt", r'
  post /v1/completions '{"prompt":"x","max_tokens":3,"stream":true}' | tail -n 2 | head -n 1 | grep -qx 'data: \[DONE\]' ||
    fail "completion stream"
}

t_tokenize_roundtrip() {
  local toks text
  toks=$(post /tokenize '{"content":"hello world, fn main() { }"}' | pyj 'print(json.dumps(r["tokens"]))')
  [ -n "$toks" ] || fail "no tokens"
  text=$(post /detokenize "{\"tokens\":$toks}" | pyj 'print(r["content"])')
  [ "$text" = "hello world, fn main() { }" ] || fail "round trip gave '$text'"
  post /tokenize '{"content":"ab","with_pieces":true}' | pyj 'assert "".join(p["piece"] for p in r["tokens"])=="ab", r'
  post /detokenize '{"tokens":[-1]}' | pyj 'assert r["error"]["param"]=="tokens[0]", r'
  post /tokenize '{"content":5}' | pyj 'assert r["error"]["param"]=="content", r'
  post /apply-template '{"messages":[{"role":"user","content":"hi"}]}' |
    pyj 'p=r["prompt"]; assert "hi" in p and "assistant" in p, r'
}

t_context_length() {
  local big
  big=$(python3 -c 'import json; print(json.dumps({"messages":[{"role":"user","content":"hello "*700}]}))')
  s=$(post /v1/chat/completions "$big" | pyj 'e=r["error"]; assert e["code"]=="context_length_exceeded" and "maximum context length" in e["message"], r; print("ok")')
  [ "$s" = ok ] || fail "no context_length_exceeded"
  [ "$(c -o /dev/null -w '%{http_code}' -H "@$AUTH" "$URL/v1/chat/completions" --data-binary "$big")" = 400 ] ||
    fail "not 400"
  # max_tokens beyond the context is lowered, not refused.
  post /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":32000,"stream":false,"ignore_eos":true}' |
    pyj 'u=r["usage"]; assert u["prompt_tokens"]+u["completion_tokens"]<=512 and r["choices"][0]["finish_reason"]=="length", r'
}

t_stop_strings() {
  # Greedy output is deterministic: take a piece of it as the stop string.
  local req='"messages":[{"role":"user","content":"Hello"}],"max_tokens":40,"temperature":0,"ignore_eos":true'
  export FULL STOP
  FULL=$(post /v1/chat/completions "{$req}" | pyj 'print(json.dumps(r["choices"][0]["message"]["content"]))')
  STOP=$(python3 -c 'import json,os; t=json.loads(os.environ["FULL"]); print(json.dumps(t[len(t)//2:len(t)//2+3]))')
  post /v1/chat/completions "{$req,\"stop\":[$STOP]}" | pyj '
import os
full=json.loads(os.environ["FULL"]); stop=json.loads(os.environ["STOP"])
want=full[:full.index(stop)]
c=r["choices"][0]
assert c["message"]["content"]==want and c["finish_reason"]=="stop", (c, want, stop)'
  post /v1/chat/completions "{$req,\"stop\":$STOP,\"stream\":true}" | python3 -c '
import json,os,sys
full=json.loads(os.environ["FULL"]); stop=json.loads(os.environ["STOP"])
ev=[json.loads(l[6:]) for l in sys.stdin.read().split("\n") if l.startswith("data: {")]
text="".join(e["choices"][0]["delta"].get("content") or "" for e in ev if e["choices"])
assert text==full[:full.index(stop)], (text, full, stop)
assert ev[-1]["choices"][0]["finish_reason"]=="stop"'
}

t_metrics() {
  local m
  m=$(c -H "@$AUTH" "$URL/metrics")
  for name in llamacpp:prompt_tokens_total llamacpp:tokens_predicted_total \
      llamacpp:requests_processing llamacpp:kv_cache_usage_ratio vllm:prefix_cache_hits_total \
      'slm_http_requests_total{code="200"}' 'slm_http_requests_total{code="401"}'; do
    echo "$m" | grep -q "^$name " || fail "metric $name missing"
  done
  echo "$m" | awk '/^llamacpp:tokens_predicted_total /{exit !($2 > 0)}' || fail "no tokens counted"
}

t_tls_versions() {
  echo | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_1 >/dev/null 2>&1 &&
    fail "TLS 1.1 accepted"
  echo | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_2 -CAfile "$CA" 2>/dev/null |
    grep -q 'Verify return code: 0' || fail "TLS 1.2 with the CA did not verify"
  echo | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 2>/dev/null |
    grep -q 'TLSv1.3' || fail "no TLS 1.3"
  [ "$(status GET /health)" = 200 ] || fail "unhealthy after TLS probes"
}

t_cors() {
  local h
  h=$(c -i -X OPTIONS "$URL/v1/chat/completions" -H 'Origin: https://app.example' \
      -H 'Access-Control-Request-Method: POST')
  echo "$h" | head -n 1 | grep -q ' 204' || fail "preflight: $(echo "$h" | head -n 1)"
  echo "$h" | grep -qi '^Access-Control-Allow-Origin: https://app.example' || fail "no ACAO"
  [ "$(status OPTIONS /v1/chat/completions -H 'Origin: https://evil.example')" = 403 ] ||
    fail "unknown origin not refused"
  c -i -H "@$AUTH" -H 'Origin: https://evil.example' "$URL/v1/models" |
    grep -qi '^Access-Control-Allow-Origin' && fail "ACAO for an unknown origin"
  true
}

t_keepalive() {
  # Two requests on one connection: curl reports one connect.
  local n
  n=$(c -H "@$AUTH" -o /dev/null -o /dev/null -w '%{num_connects}\n' "$URL/health" "$URL/v1/models" | paste -sd' ')
  [ "$n" = "1 0" ] || fail "connection not reused: $n"
}

# Streams are chunked on a kept-alive HTTP/1.1 connection (as llama-server's):
# curl reuses the connection for a second stream; a raw TLS client checks the
# framing byte by byte (RFC 9112 7.1: hex sizes that add up to the data, CRLFs,
# the last chunk "0", nothing after it), two streams and a plain request on one
# socket, and that HTTP/1.0 and "Connection: close" streams end with the
# connection instead.
t_stream_keepalive() {
  local d='{"messages":[{"role":"user","content":"hi"}],"max_tokens":6,"stream":true}' n f
  n=$(c -v -H "@$AUTH" -H 'Content-Type: application/json' --data-binary "$d" \
        -o "$T_TMP/ka1.sse" -o "$T_TMP/ka2.sse" -w '%{num_connects}\n' \
        "$URL/v1/chat/completions" "$URL/v1/chat/completions" 2>"$T_TMP/ka.v" | paste -sd' ')
  [ "$n" = "1 0" ] || fail "connection not reused for the second stream: $n; $(grep -i 'connect\|close' "$T_TMP/ka.v")"
  grep -q 'Re-using existing connection' "$T_TMP/ka.v" || fail "curl did not re-use the connection"
  grep -qi '^< Transfer-Encoding: chunked' "$T_TMP/ka.v" || fail "no chunked head"
  grep -qi '^< Connection: close' "$T_TMP/ka.v" && fail "stream head says Connection: close"
  for f in ka1 ka2; do
    tail -n 2 "$T_TMP/$f.sse" | head -n 1 | grep -qx 'data: \[DONE\]' || fail "$f: $(tail -c 300 "$T_TMP/$f.sse")"
  done
  python3 - "$PORT" "$CA" "$KEY" <<'PY' || fail "raw chunked checks failed"
import json, re, socket, ssl, sys
port, ca, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)

def conn():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="127.0.0.1")
    return s, bytearray()

def need(s, buf, n):
    while len(buf) < n:
        d = s.recv(65536)
        assert d, "connection closed after %d bytes: %r" % (len(buf), bytes(buf[-200:]))
        buf += d

def line(s, buf):
    while b"\r\n" not in buf:
        need(s, buf, len(buf) + 1)
    i = buf.index(b"\r\n")
    l = bytes(buf[:i]); del buf[:i + 2]
    return l

def request(s, path, body, version="1.1", extra=""):
    b = json.dumps(body).encode()
    s.sendall(("POST %s HTTP/%s\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n%s\r\n" % (path, version, key, len(b), extra)).encode() + b)

def head(s, buf):
    status = line(s, buf)
    h = {}
    while True:
        l = line(s, buf)
        if not l: return status, h
        k, v = l.split(b":", 1)
        h[k.strip().lower().decode()] = v.strip().decode()

def chunked(s, buf):
    data, sizes = bytearray(), []
    while True:
        l = line(s, buf)
        assert re.fullmatch(rb"[0-9a-f]+", l), "bad chunk-size line %r" % l
        n = int(l, 16)
        if n == 0:
            assert line(s, buf) == b"", "trailer or missing final CRLF"
            return bytes(data), sizes
        need(s, buf, n + 2)
        assert buf[n:n + 2] == b"\r\n", "chunk of %d not followed by CRLF: %r" % (n, bytes(buf[n:n + 8]))
        data += buf[:n]; del buf[:n + 2]; sizes.append(n)

def events(data):
    assert data.endswith(b"data: [DONE]\n\n"), data[-100:]
    ev = [e for e in data.decode().split("\n\n") if e]
    for e in ev[:-1]:
        assert e.startswith("data: {"), e
        json.loads(e[6:])
    return ev

chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": True}
comp = {"prompt": "x", "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}}
s, buf = conn()
for path, body in (("/v1/chat/completions", chat), ("/v1/completions", comp), ("/v1/chat/completions", chat)):
    request(s, path, body)
    st, h = head(s, buf)
    assert st == b"HTTP/1.1 200 OK", st
    assert h.get("transfer-encoding") == "chunked" and "content-length" not in h, h
    assert h.get("content-type") == "text/event-stream" and h.get("connection", "") != "close", h
    data, sizes = chunked(s, buf)
    assert sum(sizes) == len(data) and len(sizes) >= 3, sizes
    events(data)
    assert not buf, "bytes after the last chunk: %r" % bytes(buf)
# A plain request on the same connection still works.
request(s, "/tokenize", {"content": "hi"})
st, h = head(s, buf)
assert st == b"HTTP/1.1 200 OK" and "content-length" in h, (st, h)
need(s, buf, int(h["content-length"]))
assert json.loads(bytes(buf[:int(h["content-length"])]))["tokens"]
s.close()
# Connection: close: still chunked (a visible end), then the server closes.
s, buf = conn()
request(s, "/v1/chat/completions", chat, extra="Connection: close\r\n")
st, h = head(s, buf)
assert h.get("transfer-encoding") == "chunked" and h.get("connection") == "close", h
events(chunked(s, buf)[0])
assert s.recv(100) == b"" and not buf, "not closed after Connection: close"
s.close()
# HTTP/1.0: no chunked coding; the body ends with the connection.
s, buf = conn()
request(s, "/v1/chat/completions", chat, version="1.0", extra="Connection: keep-alive\r\n")
st, h = head(s, buf)
assert "transfer-encoding" not in h and h.get("connection") == "close", h
while True:
    d = s.recv(65536)
    if not d: break
    buf += d
events(bytes(buf))
s.close()
PY
}

t_concurrent_streams() {
  local i pids=()
  for i in 1 2 3 4 5 6; do
    post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"stream $i\"}],\"max_tokens\":24,\"stream\":true}" >"$T_TMP/cs$i" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || fail "a stream failed"; done
  for i in 1 2 3 4 5 6; do
    tail -n 2 "$T_TMP/cs$i" | head -n 1 | grep -qx 'data: \[DONE\]' || fail "stream $i: $(tail -c 300 "$T_TMP/cs$i")"
  done
}

t_disconnect() {
  # A client reads the first event of a long stream and hangs up.
  python3 - "$PORT" "$CA" "$KEY" <<'EOF' || fail "disconnecting client failed"
import json, socket, ssl, sys
port, ca, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for _ in range(3):
    ctx = ssl.create_default_context(cafile=ca)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1")
    body = json.dumps({"messages": [{"role": "user", "content": "go"}], "max_tokens": 400,
                       "ignore_eos": True, "stream": True}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while b"data: " not in got:
        d = s.recv(4096)
        assert d, "closed early"
        got += d
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    s.close()
EOF
  [ "$(status GET /health)" = 200 ] || fail "server not healthy after disconnects"
  post /v1/chat/completions '{"messages":[{"role":"user","content":"still there?"}],"max_tokens":4}' |
    pyj 'assert r["choices"][0]["finish_reason"], r'
}

t_tools() {
  local b tools call
  tools='"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]'
  call='{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}'
  # Validation: each bad field is named.
  for f in '"tools":{}|tools' '"tools":[1]|tools[0]' '"tools":[{"type":"fn","function":{"name":"a"}}]|tools[0].type' \
           '"tools":[{"type":"function"}]|tools[0].function' '"tools":[{"type":"function","function":{"name":""}}]|tools[0].function.name' \
           '"tools":[{"type":"function","function":{"name":"a","parameters":"x"}}]|tools[0].function.parameters' \
           '"tool_choice":"maybe"|tool_choice' '"tool_choice":3|tool_choice' \
           '"tool_choice":{"type":"function","function":{"name":"nope"}}|tool_choice.function.name' \
           '"tool_choice":{"type":"x"}|tool_choice.type'; do
    b=$(post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],${f%|*}}")
    echo "$b" | pyj "e=r['error']; assert e['param']=='${f#*|}' and '${f#*|}' in e['message'], r" || fail "$f: $b"
  done
  b=$(post /v1/chat/completions '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":{}}]}')
  echo "$b" | pyj 'assert r["error"]["param"]=="messages[1].tool_calls", r' || fail "tool_calls object: $b"
  # Requests with tools succeed; the reply goes through the tool-call parser.
  for ch in '"auto"' '"required"' '"none"' '{"type":"function","function":{"name":"get_weather"}}'; do
    post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],$tools,\"tool_choice\":$ch,\"max_tokens\":8}" |
      pyj 'c=r["choices"][0]; assert c["finish_reason"] in ("stop","length","tool_calls"), r; m=c["message"]; assert m["role"]=="assistant" and ("tool_calls" in m or isinstance(m["content"], str)), r' ||
      fail "tool_choice $ch"
  done
  post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],$tools,\"max_tokens\":8,\"stream\":true}" >"$T_TMP/tools.sse"
  tail -n 2 "$T_TMP/tools.sse" | head -n 1 | grep -qx 'data: \[DONE\]' || fail "tools stream not ended: $(tail -c 300 "$T_TMP/tools.sse")"
  grep '^data: {' "$T_TMP/tools.sse" | sed 's/^data: //' | python3 -c '
import json,sys
ch=[json.loads(l) for l in sys.stdin]
fin=[c["choices"][0]["finish_reason"] for c in ch if c["choices"]]
assert fin[-1] in ("stop","length","tool_calls"), fin
assert all(f is None for f in fin[:-1]), fin' || fail "tools stream chunks"
  [ "$(status GET /health)" = 200 ] || fail "server unhealthy after tool requests"
}

# A second server with --chat-template-file: a template that shows the tools
# and applies |tojson to tool-call arguments, as Llama 3.1 and Mistral do.
t_tools_template() {
  local out=$T_TMP/serve3.out tf=$T_TMP/tools.jinja port pid tools call
  cat >"$tf" <<'JINJA'
{%- if tools %}TOOLS {{ tools | tojson }}
{% endif %}
{%- for m in messages %}<{{ m.role }}>
{%- if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}
{%- else %}{{ m.content }}{% if m.tool_call_id %} ({{ m.tool_call_id }}){% endif %}{% endif %}</{{ m.role }}>
{% endfor %}
{%- if add_generation_prompt %}<assistant>{% endif %}
JINJA
  "$SLM" serve -m "$MODEL" --port 0 --state-dir "$STATE" --chat-template-file "$tf" -t 1 --n-predict 4 \
    >"$out" 2>"$T_TMP/serve3.err" &
  pid=$!
  for _ in $(seq 1 100); do grep -q endpoint: "$out" && break; sleep 0.1; done
  port=$(sed -n 's#.*endpoint: *https://127.0.0.1:\([0-9]*\)/v1.*#\1#p' "$out")
  [ -n "$port" ] || { kill -TERM $pid; fail "second server did not start: $(cat "$T_TMP/serve3.err")"; }
  p3() { c -H "@$AUTH" -H 'Content-Type: application/json' "https://127.0.0.1:$port$1" --data-binary "$2"; }
  tools='"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]'
  call='{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}'
  local ok=1
  # The tools reach the template; the call's arguments string arrives as an object.
  p3 /apply-template "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},$call,{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"}],$tools}" |
    pyj '
p=r["prompt"]
assert p.startswith("TOOLS [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather now\""), p
assert "<assistant>CALL get_weather {\"city\": \"Paris\"}</assistant>" in p, p
assert "<tool>sunny (call_1)</tool>" in p and p.endswith("<assistant>"), p' || ok=0
  # Arguments that are not a JSON object stay the string they were.
  p3 /apply-template '{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"not json"}}]}]}' |
    pyj 'assert "CALL f \"not json\"" in r["prompt"], r' || ok=0
  # tool_choice none: the tools are not offered; without tools there is no TOOLS line.
  p3 /apply-template "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],$tools,\"tool_choice\":\"none\"}" |
    pyj 'assert "TOOLS" not in r["prompt"], r' || ok=0
  p3 /apply-template "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],$tools,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}}" |
    pyj 'assert "TOOLS" in r["prompt"], r' || ok=0
  # A chat request with tools on this server: 200 with a valid finish reason.
  p3 /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},$call,{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"}],$tools}" |
    pyj 'assert r["choices"][0]["finish_reason"] in ("stop","length","tool_calls"), r' || ok=0
  kill -TERM $pid; wait $pid || fail "second server exit $?"
  grep -q 'AddressSanitizer\|runtime error' "$T_TMP/serve3.err" && fail "sanitizer: $(grep -m3 'Sanitizer\|runtime error' "$T_TMP/serve3.err")"
  [ $ok = 1 ] || fail "template checks failed (see above)"
}

t_sigterm() {
  local f=$T_TMP/term.txt
  post /v1/chat/completions '{"messages":[{"role":"user","content":"long"}],"max_tokens":450,"ignore_eos":true,"stream":true}' >"$f" &
  local cp=$!
  sleep 0.2
  kill -TERM "$SERVER_PID"
  for _ in $(seq 1 150); do [ -f "$T_TMP/exit" ] && break; sleep 0.1; done
  [ -f "$T_TMP/exit" ] || fail "server still running 15 s after SIGTERM: $(ps -o pid,stat,cmd -p "$SERVER_PID"; tail -n 5 "$ERR")"
  [ "$(cat "$T_TMP/exit")" = 0 ] || fail "exit status $(cat "$T_TMP/exit"); $(tail -n 5 "$ERR")"
  wait "$cp"
  tail -n 2 "$f" | head -n 1 | grep -qx 'data: \[DONE\]' || fail "stream not ended cleanly: $(tail -c 300 "$f")"
  grep -q 'ERROR\|AddressSanitizer\|runtime error' "$ERR" && fail "errors in the log: $(grep -m3 'ERROR\|Sanitizer\|runtime error' "$ERR")"
  true
}

t_restart_reuses_state() {
  local fp1 fp2 out=$T_TMP/serve2.out
  fp1=$(openssl x509 -in "$CA" -noout -fingerprint)
  "$SLM" serve -m "$MODEL" --port 0 --state-dir "$STATE" >"$out" 2>"$T_TMP/serve2.err" &
  local pid=$!
  for _ in $(seq 1 100); do grep -q endpoint: "$out" && break; sleep 0.1; done
  kill -TERM $pid; wait $pid || fail "second server exit $?"
  fp2=$(openssl x509 -in "$CA" -noout -fingerprint)
  [ "$fp1" = "$fp2" ] || fail "certificate regenerated"
  grep -q 'sk-slm-' "$out" && fail "stored key printed again"
  grep -q "API key:     \$(cat $STATE/api-key)" "$out" || fail "no key hint: $(cat "$out")"
  # Bad options: usage errors with exit 2; a key file readable by others: refused.
  "$SLM" serve >/dev/null 2>&1; [ $? = 2 ] || fail "no model: not exit 2"
  "$SLM" serve -m "$MODEL" --port 99999 >/dev/null 2>&1; [ $? = 2 ] || fail "bad port: not exit 2"
  "$SLM" serve --help | grep -q -- '--api-key-file' || fail "--help"
  echo "sk-test-0123456789abcdef" >"$T_TMP/keys"; chmod 644 "$T_TMP/keys"
  "$SLM" serve -m "$MODEL" --port 0 --state-dir "$STATE" --api-key-file "$T_TMP/keys" 2>"$T_TMP/e3" >/dev/null &&
    fail "0644 key file accepted"
  grep -q 'chmod 600' "$T_TMP/e3" || fail "no chmod hint: $(cat "$T_TMP/e3")"
  grep -q 'sk-test' "$T_TMP/e3" && fail "key in the error message"
  true
}

t_run "server starts, key generated 0600, report written" t_start
t_run "HTTPS with the generated certificate" t_https_health
t_run "401 on every keyed route of the router table" t_auth_every_route
t_run "404, 405, malformed JSON, wrong types name the field, 413" t_errors
t_run "/v1/models lists the alias" t_models
t_run "chat completion with usage" t_chat
t_run "chat completion streaming (SSE, include_usage, [DONE])" t_chat_stream
t_run "completions, FIM suffix, token prompts" t_completions
t_run "tokenize/detokenize round trip, apply-template" t_tokenize_roundtrip
t_run "context_length_exceeded; max_tokens lowered" t_context_length
t_run "stop strings (whole and streamed)" t_stop_strings
t_run "tools, tool_choice: validation, requests, streams" t_tools
t_run "tools and tool_calls reach the template (--chat-template-file)" t_tools_template
t_run "metrics in Prometheus text" t_metrics
t_run "TLS 1.1 refused, 1.2 and 1.3 served" t_tls_versions
t_run "CORS preflight and origins" t_cors
t_run "keep-alive reuses the connection" t_keepalive
t_run "streams: chunked, connection reused (curl, raw TLS), HTTP/1.0 and close" t_stream_keepalive
t_run "several concurrent streams" t_concurrent_streams
t_run "client disconnects mid-stream; server keeps serving" t_disconnect
t_run "deploy-check.sh against the server" bash -c "SLM_CACERT=$CA tests/deploy-check.sh $URL/v1 @$STATE/api-key"
t_run "SIGTERM during a stream: clean end, exit 0" t_sigterm
t_run "restart reuses key and certificate; bad options" t_restart_reuses_state
t_end
