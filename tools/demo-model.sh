#!/usr/bin/env bash
# Makes the offline demo model (a small llama-shaped model with random
# weights and a BPE vocabulary trained on the built-in corpus) if it is not
# there yet. usage: tools/demo-model.sh SLM_BINARY OUTPUT.gguf
set -eu
bin=$1 out=$2
[ -f "$out" ] && exit 0
mkdir -p "$(dirname "$out")"
echo "demo-model: writing $out (random weights: its text is gibberish by design)" >&2
"$bin" mkmodel --preset demo --type q8_0 "$out"
