#!/usr/bin/env bash
# slm serve, chat-API behaviour beyond the basics (docs/api.md): forced tool
# calls (tool_choice "required" and named) on a random-weight model that never
# calls a tool by itself, checked with curl+jq and the official openai npm
# client; reasoning_content for a template that opens <think>; SSE keep-alive
# comments before the first token.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
export T_TMP

MODEL=$T_TMP/tiny.gguf
DEMO=$T_TMP/demo.gguf
NPM_DIR=$PWD/build/npm-openai
"$SLM" mkmodel --preset tiny "$MODEL" >/dev/null 2>&1 || { echo "mkmodel failed"; exit 1; }
# ~30M parameters: a 1,000-token prompt takes a good fraction of a second.
"$SLM" mkmodel --preset demo "$DEMO" >/dev/null 2>&1 || { echo "mkmodel demo failed"; exit 1; }
command -v jq >/dev/null || { echo "jq is needed (apt-get install jq)"; exit 1; }

# A Qwen3-style template whose generation prompt opens the think block.
cat >"$T_TMP/think.jinja" <<'TPL'
{% for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
<think>
{% endif %}
TPL

# A Hermes/Qwen-style template for the tiny model, whose own template is
# Llama 3 style: with --chat-template-file the tool-call format follows it.
cat >"$T_TMP/hermes.jinja" <<'TPL'
{%- if tools %}<|im_start|>system
# Tools
<tools>
{% for t in tools %}{{ t | tojson }}
{% endfor %}</tools>
Call a function as <tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}
{%- for m in messages %}<|im_start|>{{ m.role }}
{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}
</tool_call>{% endfor %}{% else %}{{ m.content }}{% endif %}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}
TPL

# start_server NAME MODEL [ENV=VALUE...] -- [serve args]: starts a server in
# the background; its url, pid, state (key, certificate) go to $T_TMP/NAME.
start_server() {
  local name=$1 model=$2 dir=$T_TMP/$1 port envs=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  mkdir -p "$dir"
  env "${envs[@]}" "$SLM" serve -m "$model" --port 0 --state-dir "$dir/state" -t 1 "$@" \
    >"$dir/out" 2>"$dir/err" &
  echo $! >"$dir/pid"
  for _ in $(seq 1 200); do grep -q 'endpoint:' "$dir/out" 2>/dev/null && break; sleep 0.1; done
  port=$(sed -n 's#.*endpoint: *https://127.0.0.1:\([0-9]*\)/v1.*#\1#p' "$dir/out")
  [ -n "$port" ] || { cat "$dir/out" "$dir/err"; echo "server $name did not start"; exit 1; }
  echo "https://127.0.0.1:$port" >"$dir/url"
}
start_server main "$MODEL" -- --alias chat-test -np 2 --n-predict 256
start_server think "$MODEL" -- --chat-template-file "$T_TMP/think.jinja" -np 1 --n-predict 64
start_server slow "$DEMO" SLM_SSE_KEEPALIVE_MS=20 -- -np 1 -c 2048 --n-predict 8
start_server hermes "$MODEL" -- --chat-template-file "$T_TMP/hermes.jinja" -np 1 --n-predict 64
trap 'for d in main think slow hermes; do kill -TERM $(cat "$T_TMP/$d/pid") 2>/dev/null; done; rm -rf "$T_TMP"' EXIT

# post NAME PATH JSON: authenticated POST to server NAME, body to stdout.
post() {
  local dir=$T_TMP/$1
  curl -sS -N --max-time 60 --cacert "$dir/state/tls/cert.pem" \
    -H "Authorization: Bearer $(head -n 1 "$dir/state/api-key")" \
    -H 'Content-Type: application/json' "$(cat "$dir/url")$2" --data-binary "$3"
}
# sse_json FILE: the JSON of every data: event but [DONE], one per line.
sse_json() { sed -n 's/^data: //p' "$1" | grep -v '^\[DONE\]$'; }

TOOLS='[{"type":"function","function":{"name":"get_weather","description":"weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
        {"type":"function","function":{"name":"read_file","parameters":{"type":"object","properties":{"path":{"type":"string"}}}}}]'
MSGS='[{"role":"user","content":"What is the weather in Paris?"}]'

# check_call JSON_MESSAGE [NAME]: one tool call with valid JSON object arguments.
check_call() {
  local m=$1 want=$2 name args
  [ "$(jq -r '.tool_calls | length' <<<"$m")" = 1 ] || fail "not one tool call: $m"
  [ "$(jq -r '.content' <<<"$m")" = null ] || fail "content next to the call: $m"
  [ "$(jq -r '.tool_calls[0].type' <<<"$m")" = function ] || fail "type: $m"
  jq -e '.tool_calls[0].id | test("^call_[A-Za-z0-9]{24}$")' <<<"$m" >/dev/null || fail "id: $m"
  name=$(jq -r '.tool_calls[0].function.name' <<<"$m")
  case $name in get_weather | read_file) ;; *) fail "name '$name' is not a tool" ;; esac
  [ -z "$want" ] || [ "$name" = "$want" ] || fail "name '$name', expected '$want'"
  args=$(jq -r '.tool_calls[0].function.arguments' <<<"$m")
  jq -e 'type == "object"' <<<"$args" >/dev/null || fail "arguments are not a JSON object: $args"
  python3 -c 'import json,sys; json.loads(sys.argv[1])' "$args" || fail "python refuses $args"
}

t_required() {
  local seed r
  for seed in 1 2 3 4 5; do
    r=$(post main /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,\"tool_choice\":\"required\",
      \"max_tokens\":60,\"temperature\":1.0,\"top_k\":0,\"top_p\":1,\"min_p\":0,\"seed\":$seed}") || fail "curl"
    [ "$(jq -r '.choices[0].finish_reason' <<<"$r")" = tool_calls ] || fail "finish: $r"
    check_call "$(jq -c '.choices[0].message' <<<"$r")"
    [ "$(jq -r '.usage.completion_tokens' <<<"$r")" -le 60 ] || fail "over max_tokens: $r"
  done
  # The same request without tool_choice: the random model answers with text.
  r=$(post main /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,\"max_tokens\":20,\"temperature\":0}")
  [ "$(jq -r '.choices[0].message.tool_calls // "none"' <<<"$r")" = none ] ||
    fail "the model called a tool on its own (the test's premise is wrong): $r"
}

t_named() {
  local r
  r=$(post main /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,
    \"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"read_file\"}},\"max_tokens\":40,\"temperature\":0}")
  [ "$(jq -r '.choices[0].finish_reason' <<<"$r")" = tool_calls ] || fail "finish: $r"
  check_call "$(jq -c '.choices[0].message' <<<"$r")" read_file
  # a budget that leaves room for only "{}" still gives a valid call
  r=$(post main /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,
    \"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},\"max_tokens\":2}")
  check_call "$(jq -c '.choices[0].message' <<<"$r")" get_weather
  [ "$(jq -r '.choices[0].message.tool_calls[0].function.arguments' <<<"$r")" = '{}' ] || fail "$r"
}

t_stream() {
  local f=$T_TMP/stream.txt j first args
  post main /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,\"tool_choice\":\"required\",
    \"max_tokens\":60,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"seed\":7}" >"$f" || fail curl
  [ "$(tail -n 2 "$f" | head -n 1)" = 'data: [DONE]' ] || fail "no [DONE]: $(tail -n 3 "$f")"
  j=$(sse_json "$f")
  first=$(jq -c 'select(.choices[0].delta.tool_calls) | .choices[0].delta.tool_calls[0]' <<<"$j" | head -n 1)
  [ -n "$first" ] || fail "no tool-call delta: $j"
  jq -e '.index == 0 and .type == "function" and (.id | startswith("call_")) and
         (.function.name == "get_weather" or .function.name == "read_file")' <<<"$first" >/dev/null ||
    fail "first delta: $first"
  args=$(jq -r 'select(.choices[0].delta.tool_calls) | .choices[0].delta.tool_calls[0].function.arguments' <<<"$j" | tr -d '\n')
  jq -e 'type == "object"' <<<"$args" >/dev/null || fail "arguments: $args"
  [ "$(jq -r 'select(.choices[0].finish_reason) | .choices[0].finish_reason' <<<"$j")" = tool_calls ] ||
    fail "finish: $j"
  [ -z "$(jq -r 'select(.choices[0].delta.content) | .choices[0].delta.content' <<<"$j")" ] ||
    fail "content next to the call: $j"
  jq -e 'select(.usage) | .usage.completion_tokens <= 60' <<<"$j" >/dev/null || fail "usage: $j"
}

t_errors() {
  local r
  r=$(post main /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,\"tool_choice\":\"required\",\"max_tokens\":3}")
  [ "$(jq -r '.error.param' <<<"$r")" = max_tokens ] || fail "small budget: $r"
  jq -e '.error.message | test("at least [0-9]+ generated tokens")' <<<"$r" >/dev/null || fail "$r"
  r=$(post main /v1/chat/completions "{\"messages\":$MSGS,\"tool_choice\":\"required\"}")
  [ "$(jq -r '.error.param' <<<"$r")" = tool_choice ] || fail "required without tools: $r"
  r=$(post main /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,
    \"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}}")
  jq -e '.error.param == "tool_choice.function.name"' <<<"$r" >/dev/null || fail "unknown name: $r"
}

t_reasoning() {
  local r s f=$T_TMP/think.txt j rc
  r=$(post think /v1/chat/completions "{\"messages\":$MSGS,\"max_tokens\":24,\"temperature\":0}")
  rc=$(jq -r '.choices[0].message.reasoning_content' <<<"$r")
  [ -n "$rc" ] && [ "$rc" != null ] || fail "no reasoning_content: $r"
  [ "$(jq -r '.choices[0].message.content' <<<"$r")" = "" ] || fail "content outside </think>: $r"
  # The stream carries the same text as delta.reasoning_content.
  post think /v1/chat/completions "{\"messages\":$MSGS,\"max_tokens\":24,\"temperature\":0,\"stream\":true}" >"$f"
  j=$(sse_json "$f")
  s=$(jq -j 'select(.choices[0].delta.reasoning_content) | .choices[0].delta.reasoning_content' <<<"$j")
  [ "$s" = "$rc" ] || fail "streamed reasoning '$s' != '$rc'"
  [ -z "$(jq -j 'select(.choices[0].delta.content) | .choices[0].delta.content' <<<"$j")" ] ||
    fail "streamed content: $j"
  # A forced call closes the think block first: the call is the answer.
  r=$(post think /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,\"tool_choice\":\"required\",\"max_tokens\":60}")
  check_call "$(jq -c '.choices[0].message' <<<"$r")"
  [ "$(jq -r '.choices[0].message.reasoning_content // "none"' <<<"$r")" = none ] || fail "reasoning: $r"
}

t_keepalive() {
  local f=$T_TMP/ka.txt first long n
  # About 1,000 prompt tokens on the demo model: several 20 ms intervals
  # (0.5 s here; a quarter of that under the sanitizers, which are 5-10x slower).
  local words=1000
  [ "${SLM_VARIANT:-rel}" = rel ] || words=250
  long=$(printf 'word %.0s' $(seq 1 $words))
  post slow /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}],
    \"max_tokens\":4,\"stream\":true}" >"$f" || fail curl
  first=$(grep -v '^$' "$f" | head -n 1)
  [ "$first" = ': keep-alive' ] || fail "first line: '$first'"
  n=$(sed -n '/^data: /q;p' "$f" | grep -c '^: keep-alive$')
  [ "$n" -ge 2 ] || fail "only $n comment(s) before the first data line"
  # comments stop once tokens flow: none after the first data line
  [ "$(sed -n '/^data: /,$p' "$f" | grep -c '^: keep-alive')" = 0 ] || fail "comment after data"
  [ "$(tail -n 2 "$f" | head -n 1)" = 'data: [DONE]' ] || fail "no [DONE]"
  # a non-streaming request gets no comments (its body is one JSON object)
  post slow /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}],
    \"max_tokens\":2}" | jq -e '.object == "chat.completion"' >/dev/null || fail "non-stream"
}

# n_tokens NAME TEXT [ADD_BOS]: tokens of TEXT on server NAME (special tokens
# parsed; BOS added unless ADD_BOS is false: the template wrote it).
n_tokens() {
  post "$1" /tokenize "$(jq -nc --arg c "$2" --argjson b "${3:-true}" '{content: $c, add_special: $b}')" |
    jq '.tokens | length'
}

# The tool-call format follows the template in use: the forced call's opening
# appended to the prompt (and counted in usage.prompt_tokens) is Hermes'
# "<tool_call>" with --chat-template-file hermes.jinja, Llama 3's JSON with
# the model's own template; the reply is parsed in that format.
t_template_format() {
  local named p r n_h n_l f=$T_TMP/hermes.sse j first
  grep -q 'tool calls: hermes format' "$T_TMP/hermes/err" || fail "hermes: $(grep 'tool calls' "$T_TMP/hermes/err")"
  grep -q 'tool calls: llama3 format' "$T_TMP/main/err" || fail "main: $(grep 'tool calls' "$T_TMP/main/err")"
  grep -q '<think> reasoning: yes' "$T_TMP/think/err" || fail "think: $(grep 'tool calls' "$T_TMP/think/err")"
  grep -q '<think> reasoning: no' "$T_TMP/hermes/err" || fail "hermes think: $(grep 'tool calls' "$T_TMP/hermes/err")"
  named='{"type":"function","function":{"name":"get_weather"}}'
  # /apply-template renders the file's format, tools included.
  # (a "#" keeps the prompt's final newline from $(...))
  p=$(post hermes /apply-template "{\"messages\":$MSGS,\"tools\":$TOOLS}" | jq -j '.prompt + "#"')
  p=${p%#}
  case $p in "<|im_start|>system"$'\n'"# Tools"$'\n'"<tools>"$'\n''{"type": "function", "function": {"name": "get_weather"'*) ;;
    *) fail "hermes prompt: $p" ;; esac
  case $p in *"<|im_start|>user"$'\n'"What is the weather in Paris?<|im_end|>"$'\n'"<|im_start|>assistant"$'\n') ;;
    *) fail "hermes prompt end: $p" ;; esac
  n_h=$(n_tokens hermes "$p<tool_call>"$'\n''{"name": "get_weather", "arguments": ')
  n_l=$(n_tokens hermes "$p"'{"name": "get_weather", "parameters": ')
  [ "$n_h" != "$n_l" ] || fail "the two openings tokenize alike: $n_h"
  r=$(post hermes /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,\"tool_choice\":$named,\"max_tokens\":40}")
  [ "$(jq -r '.choices[0].finish_reason' <<<"$r")" = tool_calls ] || fail "finish: $r"
  check_call "$(jq -c '.choices[0].message' <<<"$r")" get_weather
  [ "$(jq -r '.usage.prompt_tokens' <<<"$r")" = "$n_h" ] ||
    fail "prompt_tokens $(jq -r '.usage.prompt_tokens' <<<"$r"): Hermes opening $n_h, Llama 3 opening $n_l"
  # The model's own (Llama 3) template on the main server: the Llama 3 opening.
  p=$(post main /apply-template "{\"messages\":$MSGS,\"tools\":$TOOLS}" | jq -j '.prompt + "#"')
  p=${p%#}
  case $p in *"<|start_header_id|>assistant<|end_header_id|>"*) ;; *) fail "main prompt: $p" ;; esac
  n_l=$(n_tokens main "$p"'{"name": "get_weather", "parameters": ' false)
  r=$(post main /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,\"tool_choice\":$named,\"max_tokens\":40}")
  check_call "$(jq -c '.choices[0].message' <<<"$r")" get_weather
  [ "$(jq -r '.usage.prompt_tokens' <<<"$r")" = "$n_l" ] || fail "main prompt_tokens: $r (want $n_l)"
  # required, several tools, streamed on the Hermes server: id/type/name first, JSON arguments.
  post hermes /v1/chat/completions "{\"messages\":$MSGS,\"tools\":$TOOLS,\"tool_choice\":\"required\",
    \"max_tokens\":60,\"stream\":true,\"seed\":3}" >"$f" || fail curl
  j=$(sse_json "$f")
  first=$(jq -c 'select(.choices[0].delta.tool_calls) | .choices[0].delta.tool_calls[0]' <<<"$j" | head -n 1)
  jq -e '.type == "function" and (.id | startswith("call_")) and (.function.name | IN("get_weather", "read_file"))' \
    <<<"$first" >/dev/null || fail "first delta: $first"
  jq -e 'select(.choices[0].delta.tool_calls) | .choices[0].delta.tool_calls[0].function.arguments' <<<"$j" |
    jq -rs 'join("")' | jq -e 'type == "object"' >/dev/null || fail "arguments: $j"
  [ "$(jq -r 'select(.choices[0].finish_reason) | .choices[0].finish_reason' <<<"$j")" = tool_calls ] || fail "finish: $j"
}

t_npm_client() {
  command -v node >/dev/null || skip "node not installed"
  mkdir -p "$NPM_DIR"
  t_lock "$NPM_DIR"
  if [ ! -d "$NPM_DIR/node_modules/openai" ]; then
    cp tests/integration/openai_client/package.json tests/integration/openai_client/package-lock.json "$NPM_DIR/"
    (cd "$NPM_DIR" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$T_TMP/npm.log" 2>&1 ||
      skip "npm ci failed (no registry?): $(tail -n 3 "$T_TMP/npm.log")"
  fi
  cp tests/integration/openai_client/chat_test.mjs "$NPM_DIR/chat_test.mjs"
  SLM_BASE_URL=$(cat "$T_TMP/main/url")/v1 SLM_API_KEY_FILE=$T_TMP/main/state/api-key \
    NODE_EXTRA_CA_CERTS=$T_TMP/main/state/tls/cert.pem timeout 90 node "$NPM_DIR/chat_test.mjs" ||
    fail "openai client checks failed"
}

t_shutdown() {
  local d
  for d in main think slow hermes; do
    kill -TERM "$(cat "$T_TMP/$d/pid")"
    wait "$(cat "$T_TMP/$d/pid")" 2>/dev/null
  done
  for d in main think slow hermes; do
    grep -qi 'sanitizer\|runtime error' "$T_TMP/$d/err" && fail "$d: $(cat "$T_TMP/$d/err")"
  done
  true
}

t_run "tool_choice required: a valid call every time (non-stream)" t_required
t_run "tool_choice named: that function, even with a tiny budget" t_named
t_run "tool_choice required, streamed: id/type/name first, JSON arguments" t_stream
t_run "forced calls: errors name the field" t_errors
t_run "reasoning_content for a template that opens <think>" t_reasoning
t_run "SSE keep-alive comments before the first token" t_keepalive
t_run "--chat-template-file decides the tool-call format (Hermes on a Llama 3 model)" t_template_format
t_run "openai npm client: forced tool calls, stream and not" t_npm_client
t_run "servers shut down cleanly" t_shutdown
t_end
