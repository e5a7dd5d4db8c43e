#!/usr/bin/env bash
# slm quantize: the per-tensor type choices of llama-quantize (docs/quantize.md),
# general.file_type, determinism across thread counts, and every failure path
# (unknown type, bad arguments, unreadable or malformed input, NaN weights,
# requantizing, unwritable output).
. "$(dirname "$0")/lib.sh"

A=$T_TMP/a.gguf # llama, 256 wide, 8 layers, untied output, f16
B=$T_TMP/b.gguf # qwen2, 320 wide (not a multiple of 256), tied, bf16
"$SLM" mkmodel --arch llama --n-embd 256 --n-layer 8 --n-head 4 --n-head-kv 2 --n-ff 512 \
  --n-vocab 512 --untied --type f16 "$A" 2>"$T_TMP/mk.err" || cat "$T_TMP/mk.err" >&2
"$SLM" mkmodel --arch qwen2 --n-embd 320 --n-layer 4 --n-head 5 --n-head-kv 1 --n-ff 864 \
  --n-vocab 512 --tied --type bf16 "$B" 2>>"$T_TMP/mk.err" || cat "$T_TMP/mk.err" >&2

# types FILE: "name type" per tensor, then "file_type N", from slm gguf info --json.
types() {
  "$SLM" gguf info --json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for t in d["tensors"]:
    print(t["name"], t["type"])
ft = d["metadata"].get("general.file_type")
print("file_type", ft["value"] if isinstance(ft, dict) else ft)
'
}

# expect FILE NAME TYPE...: each NAME has TYPE.
expect() {
  local f=$1 list
  shift
  list=$(types "$f") || fail "slm gguf info --json $f failed"
  while [ $# -gt 0 ]; do
    got=$(printf '%s\n' "$list" | awk -v n="$1" '$1 == n { print $2 }')
    [ "$got" = "$2" ] || fail "$(basename "$f"): $1 is '$got', want '$2'"
    shift 2
  done
}

need_models() {
  [ -f "$A" ] && [ -f "$B" ] || fail "slm mkmodel did not make the input models: $(cat "$T_TMP/mk.err")"
}

q() { "$SLM" quantize "$@" 2>"$T_TMP/q.err" || fail "slm quantize $* failed: $(cat "$T_TMP/q.err")"; }

# Q4_K_M: attn_v and ffn_down of layers 0, 3, 6, 7 (use_more_bits for 8 layers) get Q6_K,
# output Q6_K, token_embd (untied) stays the default Q4_K, norms keep f32.
quant_q4_k_m_mix() {
  need_models
  q "$A" "$T_TMP/a.q4km" q4_k_m
  expect "$T_TMP/a.q4km" file_type 15 output.weight q6_K token_embd.weight q4_K \
    blk.0.attn_v.weight q6_K blk.1.attn_v.weight q4_K blk.2.attn_v.weight q4_K \
    blk.3.attn_v.weight q6_K blk.6.attn_v.weight q6_K blk.7.attn_v.weight q6_K \
    blk.0.ffn_down.weight q6_K blk.1.ffn_down.weight q4_K blk.3.ffn_down.weight q6_K \
    blk.5.ffn_down.weight q4_K blk.7.ffn_down.weight q6_K blk.4.attn_q.weight q4_K \
    blk.4.attn_k.weight q4_K blk.4.ffn_gate.weight q4_K blk.4.ffn_up.weight q4_K \
    blk.4.attn_output.weight q4_K blk.4.attn_norm.weight f32 output_norm.weight f32
  grep -q "blk.3.attn_v.weight" "$T_TMP/q.err" || fail "no progress line on stderr"
}

# Q4_K_S: the first 4 attn_v and the first n_layer/8 ffn_down get Q5_K.
quant_q4_k_s_mix() {
  need_models
  q "$A" "$T_TMP/a.q4ks" q4_k_s
  expect "$T_TMP/a.q4ks" file_type 14 output.weight q6_K blk.0.attn_v.weight q5_K \
    blk.3.attn_v.weight q5_K blk.4.attn_v.weight q4_K blk.0.ffn_down.weight q5_K \
    blk.1.ffn_down.weight q4_K blk.7.ffn_down.weight q4_K blk.2.attn_q.weight q4_K
}

quant_q5_k_mixes() {
  need_models
  q "$A" "$T_TMP/a.q5km" q5_k_m
  expect "$T_TMP/a.q5km" file_type 17 blk.0.attn_v.weight q6_K blk.1.attn_v.weight q5_K \
    blk.6.ffn_down.weight q6_K blk.4.ffn_down.weight q5_K blk.4.ffn_up.weight q5_K \
    output.weight q6_K
  q "$A" "$T_TMP/a.q5ks" q5_k_s
  expect "$T_TMP/a.q5ks" file_type 16 blk.0.attn_v.weight q5_K blk.0.ffn_down.weight q5_K \
    output.weight q6_K token_embd.weight q5_K
}

quant_uniform_types() {
  need_models
  q "$A" "$T_TMP/a.q6k" q6_k
  expect "$T_TMP/a.q6k" file_type 18 output.weight q6_K blk.0.attn_v.weight q6_K \
    token_embd.weight q6_K blk.0.attn_norm.weight f32
  q "$A" "$T_TMP/a.q80" Q8_0
  expect "$T_TMP/a.q80" file_type 7 output.weight q8_0 blk.5.ffn_down.weight q8_0
  q "$A" "$T_TMP/a.q40" q4_0
  expect "$T_TMP/a.q40" file_type 2 output.weight q6_K blk.5.ffn_down.weight q4_0 \
    token_embd.weight q4_0
  q "$A" "$T_TMP/a.bf16" bf16
  expect "$T_TMP/a.bf16" file_type 32 output.weight bf16 blk.0.attn_norm.weight f32
  q "$A" "$T_TMP/a.f32" f32
  expect "$T_TMP/a.f32" file_type 0 output.weight f32 blk.1.ffn_up.weight f32
  q "$T_TMP/a.bf16" "$T_TMP/a.f16" f16
  expect "$T_TMP/a.f16" file_type 1 output.weight f16 blk.1.ffn_up.weight f16
}

# 320 columns: Q4_K falls back to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0 (llama.cpp's
# tensor_type_fallback); the tied token_embd is treated as the output (Q8_0 here).
# With 4 layers use_more_bits picks layers 2 and 3 for Q6_K (-> Q8_0).
quant_fallback_types() {
  need_models
  q "$B" "$T_TMP/b.q4km" q4_k_m
  expect "$T_TMP/b.q4km" file_type 15 token_embd.weight q8_0 blk.0.attn_q.weight q5_0 \
    blk.0.attn_v.weight q5_0 blk.2.attn_v.weight q8_0 blk.3.attn_v.weight q8_0 \
    blk.0.ffn_down.weight q5_0 blk.3.ffn_down.weight q8_0 blk.0.attn_q.bias f32 \
    blk.0.attn_norm.weight f32
  grep -q "not a multiple of 256" "$T_TMP/q.err" || fail "no fallback warning"
  q "$B" "$T_TMP/b.q5ks" q5_k_s
  expect "$T_TMP/b.q5ks" blk.0.attn_q.weight q5_1 blk.2.ffn_up.weight q5_1
}

# Same input -> same bytes, whatever the thread count.
quant_deterministic() {
  need_models
  q --threads 1 "$A" "$T_TMP/d1" q4_k_m
  q -t 3 "$A" "$T_TMP/d3" q4_k_m
  cmp -s "$T_TMP/d1" "$T_TMP/d3" || fail "--threads 1 and --threads 3 differ"
}

# The quantized models still load and answer (when slm run exists), including
# the fallback types Q5_0, Q5_1 and Q8_0 of the 320-wide model.
quant_output_runs() {
  need_models
  "$SLM" run --help >/dev/null 2>&1 || skip "slm run not built"
  q "$A" "$T_TMP/r.q4km" q4_k_m
  q "$B" "$T_TMP/r.b.q4km" q4_k_m
  q "$B" "$T_TMP/r.b.q5ks" q5_k_s
  for m in r.q4km r.b.q4km r.b.q5ks; do
    "$SLM" run -m "$T_TMP/$m" -n 4 -p "hello" >"$T_TMP/run.out" 2>"$T_TMP/run.err" ||
      fail "slm run on $m failed: $(tail -3 "$T_TMP/run.err")"
  done
}

quant_usage_errors() {
  "$SLM" quantize --help | grep -q "q4_k_m" || fail "--help does not list the types"
  "$SLM" quantize "$A" "$T_TMP/x" q3_k_m 2>"$T_TMP/e"
  [ $? -eq 2 ] || fail "unknown type: want exit 2"
  grep -q "q4_k_m" "$T_TMP/e" && grep -q "q3_k_m" "$T_TMP/e" || fail "message: $(cat "$T_TMP/e")"
  "$SLM" quantize "$A" "$T_TMP/x" 2>/dev/null
  [ $? -eq 2 ] || fail "two arguments: want exit 2"
  "$SLM" quantize --threads 0 "$A" "$T_TMP/x" q8_0 2>/dev/null
  [ $? -eq 2 ] || fail "--threads 0: want exit 2"
  "$SLM" quantize --bogus "$A" "$T_TMP/x" q8_0 2>/dev/null
  [ $? -eq 2 ] || fail "unknown option: want exit 2"
  [ ! -e "$T_TMP/x" ] || fail "an output file appeared after a usage error"
}

quant_bad_input() {
  "$SLM" quantize "$T_TMP/missing.gguf" "$T_TMP/x" q8_0 2>"$T_TMP/e"
  [ $? -eq 1 ] || fail "missing input: want exit 1"
  head -c 1000 /dev/urandom >"$T_TMP/junk.gguf"
  "$SLM" quantize "$T_TMP/junk.gguf" "$T_TMP/x" q8_0 2>"$T_TMP/e"
  [ $? -eq 1 ] || fail "junk input: want exit 1"
  grep -q "junk.gguf" "$T_TMP/e" || fail "the message does not name the file: $(cat "$T_TMP/e")"
  need_models
  head -c 100000 "$A" >"$T_TMP/trunc.gguf"
  "$SLM" quantize "$T_TMP/trunc.gguf" "$T_TMP/x" q8_0 2>/dev/null
  [ $? -eq 1 ] || fail "truncated input: want exit 1"
  [ ! -e "$T_TMP/x" ] || fail "an output file appeared for bad input"
}

quant_refuses_requantize() {
  need_models
  q "$A" "$T_TMP/rq.q80" q8_0
  "$SLM" quantize "$T_TMP/rq.q80" "$T_TMP/x" q4_k_m 2>"$T_TMP/e"
  [ $? -eq 1 ] || fail "requantizing: want exit 1"
  grep -q "requantizing" "$T_TMP/e" || fail "message: $(cat "$T_TMP/e")"
  [ ! -e "$T_TMP/x" ] || fail "an output file appeared"
}

quant_unwritable_output() {
  need_models
  "$SLM" quantize "$A" "$T_TMP/no/such/dir/x.gguf" q8_0 2>"$T_TMP/e"
  [ $? -eq 1 ] || fail "unwritable output: want exit 1"
  [ -z "$(ls "$T_TMP" | grep '\.tmp\.')" ] || fail "a temporary file was left behind"
}

# A weight holding NaN: llama-quantize refuses such data too.
quant_nan_weights() {
  python3 - "$T_TMP/nan.gguf" <<'EOF' || fail "could not write the NaN model"
import struct, sys
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = [("general.architecture", 8, s("llama")), ("llama.block_count", 4, struct.pack("<I", 1))]
rows, cols = 4, 256
vals = [0.01 * ((i * 7) % 13 - 6) for i in range(rows * cols)]
vals[300] = float("nan")
data = struct.pack("<%df" % len(vals), *vals)
out = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv))
for k, t, v in kv:
    out += s(k) + struct.pack("<I", t) + v
out += s("blk.0.attn_q.weight") + struct.pack("<I", 2) + struct.pack("<QQ", cols, rows)
out += struct.pack("<IQ", 0, 0)
out += b"\0" * ((32 - len(out) % 32) % 32) + data
open(sys.argv[1], "wb").write(out)
EOF
  "$SLM" quantize "$T_TMP/nan.gguf" "$T_TMP/x" q4_k_m 2>"$T_TMP/e"
  [ $? -eq 1 ] || fail "NaN weights: want exit 1 ($(cat "$T_TMP/e"))"
  grep -q "row 1 holds NaN" "$T_TMP/e" || fail "message: $(cat "$T_TMP/e")"
  "$SLM" quantize "$T_TMP/nan.gguf" "$T_TMP/y" f16 2>"$T_TMP/e" ||
    fail "f16 keeps NaN as NaN and should succeed: $(cat "$T_TMP/e")"
}

export -f $(declare -F | awk '{print $3}')
export A B T_TMP SLM

t_run "q4_k_m mix matches llama.cpp's rules" quant_q4_k_m_mix
t_run "q4_k_s mix" quant_q4_k_s_mix
t_run "q5_k_m and q5_k_s mixes" quant_q5_k_mixes
t_run "uniform types and file_type" quant_uniform_types
t_run "fallback types for 320 columns" quant_fallback_types
t_run "deterministic across thread counts" quant_deterministic
t_run "quantized model runs" quant_output_runs
t_run "usage errors exit 2" quant_usage_errors
t_run "unreadable or malformed input exits 1" quant_bad_input
t_run "requantizing is refused" quant_refuses_requantize
t_run "unwritable output exits 1, nothing left behind" quant_unwritable_output
t_run "NaN weights are refused" quant_nan_weights
t_end
