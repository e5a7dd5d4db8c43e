#!/usr/bin/env bash
# slm gguf info: human and --json output on files written by an independent
# writer (python3 struct.pack, straight from the GGUF spec, not our C writer),
# and the one-line errors for malformed, missing and unsafe files.
. "$(dirname "$0")/lib.sh"

# mkgguf OUT [VARIANT]: writes a small valid GGUF file (or a variant of it).
#   plain   v3, 5 keys of several types, 2 tensors (f32 [4, 2], q8_0 [32])
#   v2      the same with version 2
#   v1      version field 1 (refused)
#   long    plain + a 5000-byte chat template with newlines and an ESC byte
mkgguf() {
  python3 - "$1" "${2:-plain}" <<'PY'
import struct, sys
out, variant = sys.argv[1], sys.argv[2]
def s(b): return struct.pack('<Q', len(b)) + b
def kv(key, typ, payload): return s(key.encode()) + struct.pack('<I', typ) + payload
kvs = [
    kv('general.architecture', 8, s(b'llama')),
    kv('llama.context_length', 4, struct.pack('<I', 4096)),
    kv('llama.attention.layer_norm_rms_epsilon', 6, struct.pack('<f', 1e-5)),
    kv('tokenizer.ggml.tokens', 9, struct.pack('<IQ', 8, 3) + s(b'<s>') + s(b'</s>') + s(b'hi')),
    kv('tokenizer.ggml.scores', 9, struct.pack('<IQ', 6, 3) + struct.pack('<3f', 0, -1, -2)),
]
if variant == 'long':
    tmpl = (b'{% for m in messages %}\n' * 300)[:4999] + b'\x1b'
    kvs.append(kv('tokenizer.chat_template', 8, s(tmpl)))
version = {'v2': 2, 'v1': 1}.get(variant, 3)
f32 = struct.pack('<8f', *range(8))
q8 = struct.pack('<H', 0x3c00) + bytes(range(32))            # one q8_0 block: 34 bytes
tensors = [(b'token_embd.weight', [4, 2], 0, 0, f32), (b'output.weight', [32], 8, 32, q8)]
head = b'GGUF' + struct.pack('<IQQ', version, len(tensors), len(kvs)) + b''.join(kvs)
for name, ne, typ, off, _ in tensors:
    head += s(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', n) for n in ne)
    head += struct.pack('<IQ', typ, off)
head += b'\0' * (-len(head) % 32)
data = b''
for _, _, _, off, payload in tensors:
    data += b'\0' * (off - len(data)) + payload
open(out, 'wb').write(head + data)
PY
}

G=$T_TMP/ok.gguf
mkgguf "$G"
chmod 0644 "$G"

# Runs slm gguf with stdout, stderr and status in $T_TMP/{out,err} and $rc.
run_gguf() {
  "$SLM" gguf "$@" >"$T_TMP/out" 2>"$T_TMP/err"
  rc=$?
}

# The error output is exactly one line that names the file.
one_line_naming() {
  [ "$(wc -l <"$T_TMP/err")" -eq 1 ] || { cat "$T_TMP/err"; fail "stderr is not one line"; }
  grep -qF -- "$1" "$T_TMP/err" || fail "stderr does not name $1: $(cat "$T_TMP/err")"
  [ ! -s "$T_TMP/out" ] || fail "stdout not empty on error: $(head -c 200 "$T_TMP/out")"
}

info_human() {
  run_gguf info "$G"
  [ $rc -eq 0 ] || fail "exit $rc: $(cat "$T_TMP/err")"
  grep -q '^version: *3$' "$T_TMP/out" || fail "no version line"
  grep -q '^alignment: *32$' "$T_TMP/out" || fail "no alignment line"
  grep -q '^metadata: *5 keys$' "$T_TMP/out" || fail "no key count"
  grep -q 'general.architecture *string *"llama"' "$T_TMP/out" || fail "architecture missing"
  grep -q 'llama.context_length *uint32 *4096' "$T_TMP/out" || fail "context_length missing"
  grep -q 'tokenizer.ggml.tokens *array *\[string x 3\] "<s>", "</s>", "hi"' "$T_TMP/out" ||
    fail "token array summary missing"
  grep -q 'tokenizer.ggml.scores *array *\[float32 x 3\] 0, -1, -2' "$T_TMP/out" ||
    fail "scores summary missing"
  grep -Eq '^ +0 +token_embd.weight +f32 +\[4, 2\] +0 +32$' "$T_TMP/out" || fail "tensor row 0"
  grep -Eq '^ +1 +output.weight +q8_0 +\[32\] +32 +34$' "$T_TMP/out" || fail "tensor row 1"
  grep -q '^total: 2 tensors, 40 elements, 66 bytes (f32 1, q8_0 1)$' "$T_TMP/out" ||
    fail "totals: $(grep total "$T_TMP/out")"
}

info_json() {
  command -v jq >/dev/null || skip "jq not installed"
  run_gguf info --json "$G"
  [ $rc -eq 0 ] || fail "exit $rc: $(cat "$T_TMP/err")"
  python3 -m json.tool "$T_TMP/out" >/dev/null || fail "python3 -m json.tool rejects the output"
  j=$T_TMP/out
  [ "$(jq .version "$j")" = 3 ] || fail "version"
  [ "$(jq .n_kv "$j")" = 5 ] || fail "n_kv"
  [ "$(jq .n_tensors "$j")" = 2 ] || fail "n_tensors"
  [ "$(jq .file_size "$j")" = "$(stat -c %s "$G")" ] || fail "file_size"
  [ "$(jq -r '.metadata["general.architecture"].value' "$j")" = llama ] || fail "architecture"
  [ "$(jq -r '.metadata["general.architecture"].type' "$j")" = string ] || fail "type"
  [ "$(jq '.metadata["llama.context_length"].value' "$j")" = 4096 ] || fail "context_length"
  eps=$(jq '.metadata["llama.attention.layer_norm_rms_epsilon"].value' "$j")
  python3 -c "import sys; assert abs(float(sys.argv[1]) - 1e-5) < 1e-12" "$eps" || fail "eps $eps"
  [ "$(jq -c '.metadata["tokenizer.ggml.tokens"].value' "$j")" = '["<s>","</s>","hi"]' ] ||
    fail "tokens: $(jq -c '.metadata["tokenizer.ggml.tokens"]' "$j")"
  [ "$(jq -r '.metadata["tokenizer.ggml.tokens"].element_type' "$j")" = string ] || fail "etype"
  [ "$(jq -c '.metadata["tokenizer.ggml.scores"].value' "$j")" = '[0,-1,-2]' ] || fail "scores"
  [ "$(jq -c '.tensors[0] | [.name, .type, .shape, .offset, .size]' "$j")" = \
    '["token_embd.weight","f32",[4,2],0,32]' ] || fail "tensor 0: $(jq -c '.tensors[0]' "$j")"
  [ "$(jq -c '.tensors[1] | [.name, .type, .shape, .offset, .size]' "$j")" = \
    '["output.weight","q8_0",[32],32,34]' ] || fail "tensor 1: $(jq -c '.tensors[1]' "$j")"
  [ "$(jq .total_bytes "$j")" = 66 ] || fail "total_bytes"
}

info_v2() {
  mkgguf "$T_TMP/v2.gguf" v2
  run_gguf info "$T_TMP/v2.gguf"
  [ $rc -eq 0 ] || fail "v2 refused: $(cat "$T_TMP/err")"
  grep -q '^version: *2$' "$T_TMP/out" || fail "no version 2"
}

info_v1_refused() {
  mkgguf "$T_TMP/v1.gguf" v1
  run_gguf info "$T_TMP/v1.gguf"
  [ $rc -eq 1 ] || fail "exit $rc"
  one_line_naming "$T_TMP/v1.gguf"
  grep -q 'version 1 is not supported' "$T_TMP/err" || fail "message: $(cat "$T_TMP/err")"
}

info_long_string() {
  command -v jq >/dev/null || skip "jq not installed"
  mkgguf "$T_TMP/long.gguf" long
  run_gguf info "$T_TMP/long.gguf"
  [ $rc -eq 0 ] || fail "exit $rc: $(cat "$T_TMP/err")"
  line=$(grep 'tokenizer.chat_template' "$T_TMP/out")
  [ ${#line} -lt 200 ] || fail "chat template not shortened (${#line} chars)"
  echo "$line" | grep -q '\.\.\. (5000 bytes)$' || fail "no length note: $line"
  echo "$line" | grep -qF '\n' || fail "newline not escaped: $line"
  ! grep -q $'\x1b' "$T_TMP/out" || fail "raw ESC byte on the terminal"
  run_gguf info --json "$T_TMP/long.gguf"
  [ $rc -eq 0 ] || fail "json exit $rc"
  n=$(jq -r '.metadata["tokenizer.chat_template"].value | length' "$T_TMP/out")
  [ "$n" = 5000 ] || fail "json template has $n characters, want 5000"
}

info_truncated() {
  head -c 150 "$G" >"$T_TMP/cut.gguf"
  run_gguf info "$T_TMP/cut.gguf"
  [ $rc -eq 1 ] || fail "exit $rc"
  one_line_naming "$T_TMP/cut.gguf"
  grep -q 'truncated' "$T_TMP/err" || fail "message: $(cat "$T_TMP/err")"
  # Cut inside the tensor data: the bounds check names the tensor.
  size=$(stat -c %s "$G")
  head -c $((size - 1)) "$G" >"$T_TMP/cut2.gguf"
  run_gguf info "$T_TMP/cut2.gguf"
  [ $rc -eq 1 ] || fail "exit $rc"
  one_line_naming "$T_TMP/cut2.gguf"
  grep -q "tensor 'output.weight': offset 32 + size 34 exceeds data size 65" "$T_TMP/err" ||
    fail "message: $(cat "$T_TMP/err")"
}

info_missing() {
  run_gguf info "$T_TMP/nope.gguf"
  [ $rc -eq 1 ] || fail "exit $rc"
  one_line_naming "$T_TMP/nope.gguf"
}

info_directory() {
  mkdir -p "$T_TMP/dir.gguf"
  run_gguf info "$T_TMP/dir.gguf"
  [ $rc -eq 1 ] || fail "exit $rc"
  one_line_naming "$T_TMP/dir.gguf"
  grep -q 'directory' "$T_TMP/err" || fail "message: $(cat "$T_TMP/err")"
}

info_fifo() {
  mkfifo "$T_TMP/fifo.gguf"
  # Opening a FIFO for reading would block forever: slm must refuse it at once.
  timeout 10 "$SLM" gguf info "$T_TMP/fifo.gguf" >"$T_TMP/out" 2>"$T_TMP/err"
  rc=$?
  [ $rc -eq 1 ] || fail "exit $rc (124 means it blocked)"
  one_line_naming "$T_TMP/fifo.gguf"
  grep -q 'FIFO' "$T_TMP/err" || fail "message: $(cat "$T_TMP/err")"
}

info_world_writable() {
  cp "$G" "$T_TMP/ww.gguf"
  chmod 0666 "$T_TMP/ww.gguf"
  run_gguf info "$T_TMP/ww.gguf"
  [ $rc -eq 4 ] || fail "exit $rc (want 4, permission)"
  one_line_naming "$T_TMP/ww.gguf"
  grep -q "chmod go-w" "$T_TMP/err" || fail "no chmod hint: $(cat "$T_TMP/err")"
  chmod 0664 "$T_TMP/ww.gguf"
  run_gguf info "$T_TMP/ww.gguf"
  [ $rc -eq 4 ] || fail "group-writable: exit $rc"
  chmod 0644 "$T_TMP/ww.gguf"
  run_gguf info "$T_TMP/ww.gguf"
  [ $rc -eq 0 ] || fail "after chmod go-w: exit $rc"
}

info_garbage() {
  head -c 4096 /dev/urandom >"$T_TMP/rand.gguf"
  printf 'not a model at all, just some text\n' >>"$T_TMP/rand.gguf"
  run_gguf info "$T_TMP/rand.gguf"
  [ $rc -eq 1 ] || fail "exit $rc"
  one_line_naming "$T_TMP/rand.gguf"
  grep -q 'bad magic' "$T_TMP/err" || fail "message: $(cat "$T_TMP/err")"
}

usage_help() {
  run_gguf --help
  [ $rc -eq 0 ] || fail "exit $rc"
  grep -q '^usage: slm gguf info' "$T_TMP/out" || fail "usage not on stdout"
  [ ! -s "$T_TMP/err" ] || fail "stderr not empty"
  run_gguf info --help
  [ $rc -eq 0 ] || fail "info --help exit $rc"
}

usage_errors() {
  run_gguf info --bogus "$G"
  [ $rc -eq 2 ] || fail "unknown option: exit $rc"
  grep -q "unknown option '--bogus'" "$T_TMP/err" || fail "message: $(cat "$T_TMP/err")"
  [ ! -s "$T_TMP/out" ] || fail "stdout not empty"
  run_gguf
  [ $rc -eq 2 ] || fail "no subcommand: exit $rc"
  run_gguf info
  [ $rc -eq 2 ] || fail "no FILE: exit $rc"
  run_gguf frobnicate "$G"
  [ $rc -eq 2 ] || fail "unknown subcommand: exit $rc"
  run_gguf info "$G" "$G"
  [ $rc -eq 2 ] || fail "two files: exit $rc"
}

# t_run runs each case in a new bash: hand it the functions and variables.
export -f $(declare -F | awk '{print $3}')
export G T_TMP SLM

t_run "gguf: info prints version, keys and the tensor table" info_human
t_run "gguf: info --json is valid JSON with every value" info_json
t_run "gguf: version 2 files are read" info_v2
t_run "gguf: version 1 is refused by name" info_v1_refused
t_run "gguf: long strings shortened and escaped, complete in --json" info_long_string
t_run "gguf: truncated file -> exit 1, one line naming it" info_truncated
t_run "gguf: missing file -> exit 1" info_missing
t_run "gguf: directory -> exit 1" info_directory
t_run "gguf: FIFO refused without blocking" info_fifo
t_run "gguf: group/world-writable file refused (exit 4)" info_world_writable
t_run "gguf: random bytes -> bad magic" info_garbage
t_run "gguf: --help exits 0 with usage on stdout" usage_help
t_run "gguf: usage errors exit 2" usage_errors
t_end
