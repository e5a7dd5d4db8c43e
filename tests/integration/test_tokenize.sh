#!/usr/bin/env bash
# slm tokenize: output format, options, exit codes, vocabulary-only files,
# malformed files, and the vocabulary that bpe_train_gguf writes (through
# slm mkmodel when it exists).
. "$(dirname "$0")/lib.sh"
export SLM T_TMP
REF=$(cd "$(dirname "$0")/../reference" && pwd)
export REF

# A vocabulary-only GGUF (no tensors) written by our reference converter's
# GGUF writer from a tiny hand-made tokenizer.json-like vocabulary.
make_vocab() {
  command -v node >/dev/null || skip "node is not installed"
  node - "$T_TMP/tiny.gguf" <<'JS'
const { writeFileSync } = require('node:fs');
const str = (s) => { const b = Buffer.from(s, 'utf8'); const l = Buffer.alloc(8); l.writeBigUInt64LE(BigInt(b.length)); return Buffer.concat([l, b]); };
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const kv = [];
const add = (k, t, v) => kv.push(Buffer.concat([str(k), u32(t), v]));
const bytesToUnicode = () => {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const map = new Array(256); let n = 0;
  for (let b = 0; b < 256; b++) map[b] = bs.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + n++);
  return map;
};
const m = bytesToUnicode();
const tokens = [...m, 'he', 'll', 'hell', 'hello', 'Ġw', 'or', 'Ġwor', 'Ġworl', 'Ġworld', '<|begin_of_text|>', '<|eot_id|>'];
const types = tokens.map((t, i) => (i >= tokens.length - 2 ? 3 : 1));
const merges = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'Ġwor l', 'Ġworl d'];
add('general.architecture', 8, str('llama'));
add('tokenizer.ggml.model', 8, str('gpt2'));
add('tokenizer.ggml.pre', 8, str('llama-bpe'));
add('tokenizer.ggml.tokens', 9, Buffer.concat([u32(8), u64(tokens.length), ...tokens.map(str)]));
const tb = Buffer.alloc(4 * types.length); types.forEach((t, i) => tb.writeInt32LE(t, 4 * i));
add('tokenizer.ggml.token_type', 9, Buffer.concat([u32(5), u64(types.length), tb]));
add('tokenizer.ggml.merges', 9, Buffer.concat([u32(8), u64(merges.length), ...merges.map(str)]));
add('tokenizer.ggml.bos_token_id', 4, u32(tokens.length - 2));
add('tokenizer.ggml.eos_token_id', 4, u32(tokens.length - 1));
add('tokenizer.ggml.add_bos_token', 7, Buffer.from([1]));
const body = Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(kv.length), ...kv]);
writeFileSync(process.argv[2], Buffer.concat([body, Buffer.alloc((32 - body.length % 32) % 32)]));
JS
}

case_format() {
  make_vocab
  out=$("$SLM" tokenize -m "$T_TMP/tiny.gguf" "hello world") || fail "exit $?"
  expected=$(printf "%6d -> '%s'\n" 265 '<|begin_of_text|>' 259 hello 264 ' world')
  [ "$out" = "$expected" ] || fail "got: $out"
}

case_ids_and_options() {
  make_vocab
  [ "$("$SLM" tokenize -m "$T_TMP/tiny.gguf" --ids "hello world")" = "265 259 264" ] || fail "--ids"
  [ "$("$SLM" tokenize -m "$T_TMP/tiny.gguf" --ids --no-bos "hello world")" = "259 264" ] || fail "--no-bos"
  [ "$("$SLM" tokenize -m "$T_TMP/tiny.gguf" --ids --no-bos "a<|eot_id|>")" = "97 266" ] || fail "parse special"
  out=$("$SLM" tokenize -m "$T_TMP/tiny.gguf" --ids --no-bos --no-parse-special "a<|eot_id|>")
  case " $out " in *" 266 "*) fail "control token from plain text: $out" ;; esac
  printf 'hello\nhello world\n' > "$T_TMP/in.txt"
  [ "$("$SLM" tokenize -m "$T_TMP/tiny.gguf" --ids --no-bos -f "$T_TMP/in.txt")" = "259 10 259 264 10" ] || fail "-f"
  [ "$(printf 'hello' | "$SLM" tokenize -m "$T_TMP/tiny.gguf" --ids -)" = "265 259" ] || fail "stdin"
  [ "$("$SLM" tokenize -m "$T_TMP/tiny.gguf" --lines --no-bos -f "$T_TMP/in.txt")" = "$(printf '259\n259 264')" ] || fail "--lines"
  # Invalid UTF-8 never fails.
  printf 'a\xff\xc0b' | "$SLM" tokenize -m "$T_TMP/tiny.gguf" --ids - >/dev/null || fail "invalid utf-8"
}

case_usage_errors() {
  "$SLM" tokenize --help | grep -q "usage: slm tokenize" || fail "--help"
  "$SLM" tokenize "text" 2>/dev/null; [ $? -eq 2 ] || fail "no -m should be exit 2"
  "$SLM" tokenize -m x.gguf 2>/dev/null; [ $? -eq 2 ] || fail "no text should be exit 2"
  "$SLM" tokenize -m x.gguf --bogus t 2>/dev/null; [ $? -eq 2 ] || fail "bad option should be exit 2"
  "$SLM" tokenize -m x.gguf -p a b 2>/dev/null; [ $? -eq 2 ] || fail "text twice should be exit 2"
}

case_runtime_errors() {
  make_vocab
  "$SLM" tokenize -m "$T_TMP/missing.gguf" hi 2>"$T_TMP/err"; [ $? -eq 1 ] || fail "missing file: exit"
  printf 'not a gguf file at all' > "$T_TMP/junk.gguf"
  "$SLM" tokenize -m "$T_TMP/junk.gguf" hi 2>"$T_TMP/err"; [ $? -eq 1 ] || fail "junk: exit"
  grep -q "slm tokenize:" "$T_TMP/err" || fail "junk: message: $(cat "$T_TMP/err")"
  # Corrupt one merge so that it names an unknown token: a G13 message.
  node -e '
    const fs = require("fs"); const p = process.argv[1];
    const b = fs.readFileSync(p); const i = b.indexOf(Buffer.from("Ġworl d"));
    b.write("Ġworl q", i); fs.writeFileSync(p + ".bad", b);' "$T_TMP/tiny.gguf"
  "$SLM" tokenize -m "$T_TMP/tiny.gguf.bad" hi 2>"$T_TMP/err"; [ $? -eq 1 ] || fail "bad merge: exit"
  grep -q "tokenizer.ggml.merges\[8\]" "$T_TMP/err" || fail "bad merge: message: $(cat "$T_TMP/err")"
  "$SLM" tokenize -m "$T_TMP/tiny.gguf" -f "$T_TMP/nope.txt" 2>/dev/null; [ $? -eq 1 ] || fail "missing text file"
}

case_mkmodel_vocabulary() {
  "$SLM" mkmodel --preset tiny --n-vocab 4096 "$T_TMP/m.gguf" >/dev/null 2>"$T_TMP/err" ||
    skip "slm mkmodel failed: $(head -c 200 "$T_TMP/err")"
  out=$("$SLM" tokenize -m "$T_TMP/m.gguf" --ids "def fibonacci(n):<|eot_id|>") || fail "tokenize"
  set -- $out
  [ "$1" = 4088 ] || fail "bos: $out"
  [ "${!#}" = 4092 ] || fail "eot: $out"
  [ $# -lt 12 ] || fail "the trained vocabulary does not compress: $out"
  # No control token from plain text.
  out=$("$SLM" tokenize -m "$T_TMP/m.gguf" --ids --no-bos --no-parse-special "<|eot_id|>")
  for id in $out; do [ "$id" -lt 4088 ] || fail "control token $id from plain text"; done
}

export -f $(declare -F | awk '{print $3}')

t_run "tokenize prints id -> 'piece' lines" case_format
t_run "tokenize --ids, --no-bos, --no-parse-special, -f, stdin, --lines" case_ids_and_options
t_run "tokenize usage errors exit 2" case_usage_errors
t_run "tokenize runtime errors exit 1 with a message" case_runtime_errors
t_run "tokenize reads the vocabulary slm mkmodel trains" case_mkmodel_vocabulary
t_end
