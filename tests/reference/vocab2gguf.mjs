#!/usr/bin/env node
// vocab2gguf.mjs KIND OUT.gguf - writes the vocabulary of a reference
// tokenizer package as a vocabulary-only GGUF v3 file (no tensors) with the
// tokenizer.ggml.* keys slm reads, so that slm and the package tokenize with
// the same vocabulary. Our own converter: it writes the GGUF bytes directly.
//
//   llama3, qwen3     Hugging Face tokenizer.json -> model "gpt2", pre
//                     "llama-bpe" / "qwen2", merges, added tokens as control
//                     (special) or user-defined tokens
//   llama2, mistral   SentencePiece vocabularies of llama-tokenizer-js and
//                     mistral-tokenizer-js -> model "llama"; the packages keep
//                     merges, not scores, so a token's score is minus the rank
//                     of the first merge that makes it
import { writeFileSync } from 'node:fs';
import { reference } from './refs.mjs';

const T = { UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9 };
const TOKEN = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 };

class GgufWriter {
  constructor() {
    this.kv = [];
  }
  static str(s) {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(b.length));
    return Buffer.concat([len, b]);
  }
  static u32(v) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  }
  static u64(v) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    return b;
  }
  add(key, type, value) {
    this.kv.push(Buffer.concat([GgufWriter.str(key), GgufWriter.u32(type), value]));
  }
  string(key, s) {
    this.add(key, T.STRING, GgufWriter.str(s));
  }
  u32(key, v) {
    this.add(key, T.UINT32, GgufWriter.u32(v));
  }
  bool(key, v) {
    this.add(key, T.BOOL, Buffer.from([v ? 1 : 0]));
  }
  strings(key, arr) {
    const parts = [GgufWriter.u32(T.STRING), GgufWriter.u64(arr.length)];
    for (const s of arr) parts.push(GgufWriter.str(s));
    this.add(key, T.ARRAY, Buffer.concat(parts));
  }
  numbers(key, type, arr) {
    const b = Buffer.alloc(4 * arr.length);
    arr.forEach((v, i) => (type === T.FLOAT32 ? b.writeFloatLE(v, 4 * i) : b.writeInt32LE(v, 4 * i)));
    this.add(key, T.ARRAY, Buffer.concat([GgufWriter.u32(type), GgufWriter.u64(arr.length), b]));
  }
  bytes() {
    const head = Buffer.concat([
      Buffer.from('GGUF', 'latin1'),
      GgufWriter.u32(3),
      GgufWriter.u64(0),
      GgufWriter.u64(this.kv.length),
    ]);
    const body = Buffer.concat([head, ...this.kv]);
    const pad = (32 - (body.length % 32)) % 32;
    return Buffer.concat([body, Buffer.alloc(pad)]);
  }
}

function fromHf(ref, w) {
  const model = ref.json.model;
  let n = 0;
  for (const id of Object.values(model.vocab)) n = Math.max(n, id + 1);
  for (const t of ref.json.added_tokens) n = Math.max(n, t.id + 1);
  const tokens = new Array(n).fill(null);
  const types = new Array(n).fill(TOKEN.UNUSED);
  for (const [text, id] of Object.entries(model.vocab)) {
    tokens[id] = text;
    types[id] = TOKEN.NORMAL;
  }
  for (const t of ref.json.added_tokens) {
    tokens[t.id] = t.content;
    types[t.id] = t.special ? TOKEN.CONTROL : TOKEN.USER_DEFINED;
  }
  for (let i = 0; i < n; i++) if (tokens[i] === null) tokens[i] = `[PAD${i}]`;
  const merges = model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const idOf = (t) => {
    const s = typeof t === 'string' ? t : t && t.content;
    const i = tokens.indexOf(s);
    return i >= 0 ? i : undefined;
  };
  w.string('tokenizer.ggml.model', 'gpt2');
  w.string('tokenizer.ggml.pre', ref.kind === 'llama3' ? 'llama-bpe' : 'qwen2');
  w.strings('tokenizer.ggml.tokens', tokens);
  w.numbers('tokenizer.ggml.token_type', T.INT32, types);
  w.strings('tokenizer.ggml.merges', merges);
  const bos = idOf(ref.config.bos_token);
  const eos = idOf(ref.config.eos_token);
  if (bos !== undefined) w.u32('tokenizer.ggml.bos_token_id', bos);
  if (eos !== undefined) w.u32('tokenizer.ggml.eos_token_id', eos);
  w.bool('tokenizer.ggml.add_bos_token', bos !== undefined && ref.kind === 'llama3');
  return n;
}

function fromSpm(ref, w) {
  const tokens = ref.vocab;
  const n = tokens.length;
  const index = new Map(tokens.map((t, i) => [t, i]));
  const scores = new Array(n).fill(-1e9);
  const types = tokens.map((t, i) => {
    if (i === 0) return TOKEN.UNKNOWN;
    if (i === 1 || i === 2) return TOKEN.CONTROL;
    if (/^<0x[0-9A-F]{2}>$/.test(t)) return TOKEN.BYTE;
    return TOKEN.NORMAL;
  });
  for (let i = 0; i < n; i++) if (types[i] !== TOKEN.NORMAL || [...tokens[i]].length === 1) scores[i] = 0;
  // merges: "left right" -> priority (smaller first); the made token scores -priority.
  for (const [key, prio] of ref.merges) {
    const sp = key.indexOf(' ');
    const made = index.get(key.slice(0, sp) + key.slice(sp + 1));
    if (made !== undefined && types[made] === TOKEN.NORMAL) scores[made] = Math.max(scores[made] === 0 ? -Infinity : scores[made], -prio);
  }
  for (let i = 0; i < n; i++) if (!Number.isFinite(scores[i])) scores[i] = -1e9;
  w.string('tokenizer.ggml.model', 'llama');
  w.strings('tokenizer.ggml.tokens', tokens);
  w.numbers('tokenizer.ggml.scores', T.FLOAT32, scores);
  w.numbers('tokenizer.ggml.token_type', T.INT32, types);
  w.u32('tokenizer.ggml.unknown_token_id', 0);
  w.u32('tokenizer.ggml.bos_token_id', 1);
  w.u32('tokenizer.ggml.eos_token_id', 2);
  w.bool('tokenizer.ggml.add_bos_token', true);
  w.bool('tokenizer.ggml.add_space_prefix', true);
  return n;
}

async function main() {
  const [kind, out] = process.argv.slice(2);
  if (!kind || !out) {
    process.stderr.write('usage: node vocab2gguf.mjs llama3|qwen3|llama2|mistral OUT.gguf\n');
    process.exit(2);
  }
  const ref = await reference(kind);
  const w = new GgufWriter();
  w.string('general.architecture', 'llama');
  w.string('general.name', `${kind} vocabulary (reference test)`);
  const n = ref.family === 'hf' ? fromHf(ref, w) : fromSpm(ref, w);
  writeFileSync(out, w.bytes());
  process.stderr.write(`vocab2gguf: ${kind}: ${n} tokens -> ${out}\n`);
}

main().catch((e) => {
  process.stderr.write(`vocab2gguf: ${e.message}\n`);
  process.exit(1);
});
