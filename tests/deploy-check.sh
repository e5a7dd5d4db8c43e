#!/usr/bin/env bash
# Post-deployment checks against any running `slm serve` (or another
# OpenAI-compatible server):
#
#   tests/deploy-check.sh ENDPOINT KEY
#   make check-deployment ENDPOINT=https://host:8443/v1 KEY=sk-...
#
# ENDPOINT is the base URL clients use (ending in /v1). KEY may also be given
# as "@FILE" (read from FILE) so it stays out of argv; SLM_CACERT names a CA
# file for a self-signed certificate. Checks: HTTPS reachable, /health, 401
# without a key, 200 with the key, the model listed, a chat completion, a
# streaming chat completion. Prints one line per check; exit 1 if any failed.
set -u
ENDPOINT=${1:?usage: deploy-check.sh ENDPOINT KEY}
KEY=${2:?usage: deploy-check.sh ENDPOINT KEY}
case $KEY in @*) KEY=$(head -n 1 "${KEY#@}") ;; esac
BASE=${ENDPOINT%/}
ROOT=${BASE%/v1}
TIMEOUT=${DEPLOY_CHECK_TIMEOUT:-60}
CURL=(curl -sS --max-time "$TIMEOUT")
[ -n "${SLM_CACERT:-}" ] && CURL+=(--cacert "$SLM_CACERT")
HDR=$(mktemp) BODY=$(mktemp) AUTH=$(mktemp)
trap 'rm -f "$HDR" "$BODY" "$AUTH"' EXIT
# The key goes to curl through a 0600 file, never through argv.
chmod 600 "$AUTH"
printf 'Authorization: Bearer %s\n' "$KEY" >"$AUTH"
failed=0

check() { # NAME OK(0/1) DETAIL
  if [ "$2" -eq 0 ]; then echo "ok   - $1"; else echo "FAIL - $1: $3"; failed=1; fi
}
# req METHOD URL [KEY] [BODY]: sets $code, body in $BODY
req() {
  local args=("${CURL[@]}" -o "$BODY" -w '%{http_code}' -X "$1" "$2")
  [ -n "${3:-}" ] && args+=(-H "@$AUTH")
  [ -n "${4:-}" ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
  code=$("${args[@]}" 2>"$HDR") || code=000
}

case $BASE in
  https://*) req GET "$ROOT/health"; [ "$code" != 000 ]; check "HTTPS reachable" $? "$(cat "$HDR")" ;;
  *) echo "warn - $BASE is not HTTPS" ;;
esac
req GET "$ROOT/health"
[ "$code" = 200 ] && grep -q '"ok"' "$BODY"; check "/health is 200 ok" $? "status $code"
req GET "$BASE/models"
[ "$code" = 401 ]; check "401 without a key" $? "status $code"
req GET "$BASE/models" key
[ "$code" = 200 ]; check "200 with the key" $? "status $code"
MODEL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"][0]["id"])' "$BODY" 2>/dev/null)
[ -n "$MODEL" ]; check "a model is listed" $? "$(head -c 200 "$BODY")"
req POST "$BASE/chat/completions" key \
  "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hi\"}],\"max_tokens\":8}"
[ "$code" = 200 ] && python3 -c '
import json,sys
r=json.load(open(sys.argv[1]))
assert r["object"]=="chat.completion"
assert isinstance(r["choices"][0]["message"]["content"],str)
assert r["usage"]["total_tokens"]==r["usage"]["prompt_tokens"]+r["usage"]["completion_tokens"]
' "$BODY" 2>/dev/null
check "chat completion" $? "status $code $(head -c 200 "$BODY")"
req POST "$BASE/chat/completions" key \
  "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hi\"}],\"max_tokens\":8,\"stream\":true}"
[ "$code" = 200 ] && grep -q '^data: {' "$BODY" && tail -n 2 "$BODY" | grep -q '^data: \[DONE\]'
check "streaming chat completion" $? "status $code $(head -c 200 "$BODY")"
exit $failed
