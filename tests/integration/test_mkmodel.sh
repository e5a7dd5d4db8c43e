#!/usr/bin/env bash
# slm mkmodel: deterministic output, the shapes and keys the loader reads,
# every tensor type, and clear usage errors.
. "$(dirname "$0")/lib.sh"

M=$T_TMP/tiny.gguf
"$SLM" mkmodel --preset tiny "$M" 2>"$T_TMP/mk.err" || { cat "$T_TMP/mk.err"; }

# Same options -> same bytes; another seed -> other bytes.
mk_deterministic() {
  [ -f "$M" ] || fail "the tiny model was not made"
  "$SLM" mkmodel --preset tiny "$T_TMP/again.gguf" || fail "second mkmodel failed"
  a=$(sha256sum <"$M") b=$(sha256sum <"$T_TMP/again.gguf")
  [ "$a" = "$b" ] || fail "two runs differ: $a vs $b"
  "$SLM" mkmodel --preset tiny --seed 1 "$T_TMP/seed1.gguf" || fail "mkmodel --seed 1 failed"
  c=$(sha256sum <"$T_TMP/seed1.gguf")
  [ "$a" != "$c" ] || fail "--seed 1 gave the same bytes as seed 0"
}

# Reads a metadata value or a tensor shape from slm gguf info --json.
info_json() { "$SLM" gguf info --json "$1"; }

mk_shape_in_info() {
  command -v jq >/dev/null || skip "jq not installed"
  "$SLM" mkmodel --arch qwen2 --n-embd 96 --n-layer 3 --n-head 6 --n-head-kv 2 --n-ff 160 \
    --n-vocab 400 --n-ctx 1024 --rope-base 1e6 --tied --type f16 "$T_TMP/q.gguf" ||
    fail "mkmodel with a custom shape failed"
  info_json "$T_TMP/q.gguf" >"$T_TMP/q.json" || fail "slm gguf info --json failed"
  j=$T_TMP/q.json
  kv() { jq -r --arg k "$1" '(.metadata // .kv // {})[$k] | if type == "object" then .value else . end' "$j"; }
  [ "$(kv general.architecture)" = qwen2 ] || fail "architecture: $(kv general.architecture)"
  [ "$(kv qwen2.embedding_length)" = 96 ] || fail "embedding_length: $(kv qwen2.embedding_length)"
  [ "$(kv qwen2.block_count)" = 3 ] || fail "block_count"
  [ "$(kv qwen2.attention.head_count)" = 6 ] || fail "head_count"
  [ "$(kv qwen2.attention.head_count_kv)" = 2 ] || fail "head_count_kv"
  [ "$(kv qwen2.feed_forward_length)" = 160 ] || fail "feed_forward_length"
  [ "$(kv qwen2.context_length)" = 1024 ] || fail "context_length"
  [ "$(kv general.file_type)" = 1 ] || fail "file_type $(kv general.file_type) (want 1, MOSTLY_F16)"
  tn() { jq -r --arg n "$1" '.tensors[] | select(.name == $n) | "\(.type) \(.shape | map(tostring) | join("x"))"' "$j"; }
  [ "$(tn token_embd.weight)" = "f16 96x400" ] || fail "token_embd: $(tn token_embd.weight)"
  [ "$(tn blk.2.attn_k.weight)" = "f16 96x32" ] || fail "attn_k: $(tn blk.2.attn_k.weight)"
  [ "$(tn blk.0.attn_q.bias)" = "f32 96" ] || fail "attn_q.bias: $(tn blk.0.attn_q.bias)"
  [ "$(tn blk.0.ffn_down.weight)" = "f16 160x96" ] || fail "ffn_down: $(tn blk.0.ffn_down.weight)"
  [ -z "$(tn output.weight)" ] || fail "a tied model has no output.weight"
  n=$(jq '.tensors | length' "$j")
  # 2 global (token_embd, output_norm) + 3 x (2 norms, q k v o, 3 biases, 3 ffn) = 2 + 36.
  [ "$n" = 38 ] || fail "tensor count $n, want 38"
  [ "$(kv tokenizer.ggml.model)" = gpt2 ] || fail "tokenizer.ggml.model: $(kv tokenizer.ggml.model)"
}

# Every --type writes a model that slm run loads and decodes.
mk_every_type_runs() {
  for t in f32 f16 bf16 q8_0 q4_0 q4_k q5_k q6_k; do
    "$SLM" mkmodel --n-embd 256 --n-head 4 --n-head-kv 2 --n-ff 256 --n-layer 1 --type "$t" \
      "$T_TMP/$t.gguf" 2>"$T_TMP/err" || { cat "$T_TMP/err"; fail "mkmodel --type $t failed"; }
    "$SLM" run -m "$T_TMP/$t.gguf" -p "hello" -n 3 --temp 0 >"$T_TMP/out" 2>"$T_TMP/err" ||
      { cat "$T_TMP/err"; fail "run on --type $t failed"; }
  done
}

mk_arches_run() {
  for a in llama mistral3 qwen2 qwen3; do
    "$SLM" mkmodel --arch "$a" "$T_TMP/$a.gguf" || fail "mkmodel --arch $a failed"
    "$SLM" run -m "$T_TMP/$a.gguf" -p "def f(x):" -n 4 --temp 0 >/dev/null 2>"$T_TMP/err" ||
      { cat "$T_TMP/err"; fail "run on --arch $a failed"; }
  done
}

mk_corpus_changes_vocab() {
  printf 'the quick brown fox jumps over the lazy dog. %.0s' $(seq 200) >"$T_TMP/corpus.txt"
  "$SLM" mkmodel --corpus "$T_TMP/corpus.txt" "$T_TMP/c1.gguf" || fail "mkmodel --corpus failed"
  "$SLM" mkmodel --corpus "$T_TMP/corpus.txt" "$T_TMP/c2.gguf" || fail "mkmodel --corpus failed"
  cmp -s "$T_TMP/c1.gguf" "$T_TMP/c2.gguf" || fail "--corpus output is not deterministic"
  ! cmp -s "$M" "$T_TMP/c1.gguf" || fail "--corpus made the same file as the built-in corpus"
}

expect_usage() {
  local want=$1
  shift
  "$SLM" mkmodel "$@" >"$T_TMP/out" 2>"$T_TMP/err"
  rc=$?
  [ $rc -eq 2 ] || fail "mkmodel $*: exit $rc, want 2"
  grep -q -- "$want" "$T_TMP/err" || fail "mkmodel $*: message does not name $want: $(cat "$T_TMP/err")"
}

mk_usage_errors() {
  expect_usage "--n-head" --n-head 3 "$T_TMP/x.gguf"
  expect_usage "--n-head-kv" --n-head-kv 3 "$T_TMP/x.gguf"
  expect_usage "--n-embd" --n-embd abc "$T_TMP/x.gguf"
  expect_usage "--n-layer" --n-layer 0 "$T_TMP/x.gguf"
  expect_usage "--n-vocab" --n-vocab 10 "$T_TMP/x.gguf"
  expect_usage "--type" --type q3_k "$T_TMP/x.gguf"
  expect_usage "--arch" --arch gpt2 "$T_TMP/x.gguf"
  expect_usage "--preset" --preset huge "$T_TMP/x.gguf"
  expect_usage "--seed" --seed -1 "$T_TMP/x.gguf"
  expect_usage "output" --preset tiny
  expect_usage "unknown" --bogus "$T_TMP/x.gguf"
  [ ! -e "$T_TMP/x.gguf" ] || fail "a usage error wrote a file"
  "$SLM" mkmodel --help | grep -q "usage: slm mkmodel" || fail "--help"
}

mk_runtime_errors() {
  "$SLM" mkmodel --corpus "$T_TMP/nope.txt" "$T_TMP/x.gguf" 2>"$T_TMP/err"
  [ $? -eq 1 ] || fail "missing --corpus: want exit 1"
  grep -q "nope.txt" "$T_TMP/err" || fail "message does not name the corpus file"
  "$SLM" mkmodel "$T_TMP/no/such/dir/x.gguf" 2>"$T_TMP/err"
  [ $? -eq 1 ] || fail "unwritable output: want exit 1"
  [ "$(wc -l <"$T_TMP/err")" -eq 1 ] || fail "want a one-line error: $(cat "$T_TMP/err")"
  ls "$T_TMP" | grep -q '\.tmp' && fail "a temporary file was left behind"
  true
}

# llama.cpp loads what we write (when its tools are built on this machine).
mk_llama_cpp_loads() {
  bin=${LLAMA_CPP_BIN:-/work/llama.cpp/build/bin}
  [ -x "$bin/llama-simple" ] || skip "llama.cpp's llama-simple not built"
  "$bin/llama-simple" -m "$M" -n 4 "hello" >"$T_TMP/out" 2>"$T_TMP/err" ||
    { tail -5 "$T_TMP/err"; fail "llama-simple could not run our model"; }
}

# t_run runs each case in a new bash: hand it the functions and variables.
export -f $(declare -F | awk '{print $3}')
export M T_TMP SLM

t_run "mkmodel: same options give the same bytes" mk_deterministic
t_run "mkmodel: gguf info shows the requested shape" mk_shape_in_info
t_run "mkmodel: every --type loads and runs" mk_every_type_runs
t_run "mkmodel: every --arch loads and runs" mk_arches_run
t_run "mkmodel: --corpus trains another vocabulary" mk_corpus_changes_vocab
t_run "mkmodel: usage errors exit 2 naming the option" mk_usage_errors
t_run "mkmodel: runtime errors exit 1 and leave nothing" mk_runtime_errors
t_run "mkmodel: llama.cpp loads the output" mk_llama_cpp_loads
t_end
