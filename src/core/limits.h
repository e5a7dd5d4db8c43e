/*
 * limits.h - every limit in one place (sqliteLimit.h).
 *
 * Each entry gives the default and why. Runtime configuration may lower a
 * limit, never raise it past the value here.
 */
#pragma once

/* ---- GGUF model files ---- */

/* Key/value pairs in one file: real models have < 100; 1<<16 is generous. */
#define SLM_LIMIT_GGUF_KV (1u << 16)
/* Tensors in one file: a 123B model has ~ 1,000; 1<<16 leaves room for MoE experts. */
#define SLM_LIMIT_GGUF_TENSORS (1u << 16)
/* Bytes of one string (key, value or array element). Chat templates reach
 * ~40 KiB; 16 MiB bounds a hostile length without refusing any real file. */
#define SLM_LIMIT_GGUF_STR (16u << 20)
/* Bytes of one key (GGUF keys are short dotted names). */
#define SLM_LIMIT_GGUF_KEY 256u
/* Elements of one array (vocabularies reach 262,144; merges ~ 500,000). */
#define SLM_LIMIT_GGUF_ARRAY (1u << 24)
/* Dimensions of a tensor (GGML_MAX_DIMS). */
#define SLM_LIMIT_GGUF_DIMS 4u
/* Bytes of a tensor name (GGML_MAX_NAME is 64). */
#define SLM_LIMIT_GGUF_TENSOR_NAME 64u
/* Largest general.alignment accepted (a power of two). */
#define SLM_LIMIT_GGUF_ALIGNMENT (1u << 16)

/* ---- model hyper-parameters ---- */

/* Transformer layers (the largest llama-family models have ~ 126). */
#define SLM_LIMIT_LAYERS 512u
/* Vocabulary entries (Gemma: 262,144). */
#define SLM_LIMIT_VOCAB (1u << 20)
/* Context length in tokens (Devstral/Qwen: 131,072 to 262,144). */
#define SLM_LIMIT_CONTEXT (1u << 20)
/* Embedding width. */
#define SLM_LIMIT_EMBD (1u << 16)
/* Attention heads. */
#define SLM_LIMIT_HEADS 1024u
/* Head dimension. */
#define SLM_LIMIT_HEAD_DIM 1024u

/* ---- tokens and generation ---- */

/* Tokens in one prompt. */
#define SLM_LIMIT_PROMPT_TOKENS SLM_LIMIT_CONTEXT
/* Bytes of one token piece. */
#define SLM_LIMIT_TOKEN_BYTES 1024u
/* Threads of one engine pool. */
#define SLM_LIMIT_THREADS 512u

/* ---- JSON ---- */

/* Nesting depth of JSON documents (T08). */
#define SLM_LIMIT_JSON_DEPTH 64u
/* Bytes of one JSON document (same as the HTTP body cap). */
#define SLM_LIMIT_JSON_BYTES (8u << 20)

/* ---- generic output ---- */

/* Bytes of a --json document printed by the CLI. */
#define SLM_LIMIT_CLI_OUTPUT (256u << 20)
