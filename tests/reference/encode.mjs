#!/usr/bin/env node
// encode.mjs KIND FILE (lines|whole) - token ids from the reference package:
// "lines" prints the ids of each line of FILE (split at \n, the \n not
// included) on a line of its own; "whole" prints the ids of the whole file.
// BPE packages encode without special tokens added; the SentencePiece ones
// add BOS and the leading space, as the models do.
import { readFileSync } from 'node:fs';
import { reference } from './refs.mjs';

async function main() {
  const [kind, file, mode] = process.argv.slice(2);
  if (!kind || !file || (mode !== 'lines' && mode !== 'whole')) {
    process.stderr.write('usage: node encode.mjs KIND FILE lines|whole\n');
    process.exit(2);
  }
  const ref = await reference(kind);
  const text = readFileSync(file, 'utf8');
  const pieces = mode === 'whole' ? [text] : text.replace(/\n$/, '').split('\n');
  const out = pieces.map((p) => ref.encode(p).join(' '));
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((e) => {
  process.stderr.write(`encode: ${e.message}\n`);
  process.exit(1);
});
