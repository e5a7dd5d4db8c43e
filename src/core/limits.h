/*
 * limits.h - every limit in one place (sqliteLimit.h).
 *
 * Each entry gives the default and why. Runtime configuration may lower a
 * limit, never raise it past the value here.
 */
#pragma once

/* ---- GGUF model files ---- */

/* Key/value pairs in one file: real models have < 100; 1<<16 is generous. */
#define SLM_LIMIT_GGUF_KV          (1u << 16)
/* Tensors in one file: a 123B model has ~ 1,000; 1<<16 leaves room for MoE experts. */
#define SLM_LIMIT_GGUF_TENSORS     (1u << 16)
/* Bytes of one string (key, value or array element). Chat templates reach
 * ~40 KiB; 16 MiB bounds a hostile length without refusing any real file. */
#define SLM_LIMIT_GGUF_STR         (16u << 20)
/* Bytes of one key (GGUF keys are short dotted names). */
#define SLM_LIMIT_GGUF_KEY         256u
/* Elements of one array (vocabularies reach 262,144; merges ~ 500,000). */
#define SLM_LIMIT_GGUF_ARRAY       (1u << 24)
/* Dimensions of a tensor (GGML_MAX_DIMS). */
#define SLM_LIMIT_GGUF_DIMS        4u
/* Bytes of a tensor name (GGML_MAX_NAME is 64). */
#define SLM_LIMIT_GGUF_TENSOR_NAME 64u
/* Largest general.alignment accepted (a power of two). */
#define SLM_LIMIT_GGUF_ALIGNMENT   (1u << 16)

/* ---- model hyper-parameters ---- */

/* Transformer layers (the largest llama-family models have ~ 126). */
#define SLM_LIMIT_LAYERS   512u
/* Vocabulary entries (Gemma: 262,144). */
#define SLM_LIMIT_VOCAB    (1u << 20)
/* Context length in tokens (Devstral/Qwen: 131,072 to 262,144). */
#define SLM_LIMIT_CONTEXT  (1u << 20)
/* Embedding width. */
#define SLM_LIMIT_EMBD     (1u << 16)
/* Attention heads. */
#define SLM_LIMIT_HEADS    1024u
/* Head dimension. */
#define SLM_LIMIT_HEAD_DIM 1024u

/* ---- tokens and generation ---- */

/* Tokens in one prompt. */
#define SLM_LIMIT_PROMPT_TOKENS SLM_LIMIT_CONTEXT
/* Bytes of one token piece. */
#define SLM_LIMIT_TOKEN_BYTES   1024u
/* Threads of one engine pool. */
#define SLM_LIMIT_THREADS       512u

/* ---- JSON ---- */

/* Nesting depth of JSON documents (T08). */
#define SLM_LIMIT_JSON_DEPTH 64u
/* Bytes of one JSON document (same as the HTTP body cap). */
#define SLM_LIMIT_JSON_BYTES (8u << 20)

/* ---- generic output ---- */

/* Bytes of a --json document printed by the CLI. */
#define SLM_LIMIT_CLI_OUTPUT (256u << 20)

/* ---- HTTP/1.1 and JSON parsing (src/http, src/core/json_parse.c) ---- */

/* Bytes of the request head (request line + headers + CRLFs): 16 KiB, like
 * nginx's large_client_header_buffers; over it -> 431. Hard maximum 64 KiB. */
#define SLM_LIMIT_HTTP_HEADER_BYTES      (16u << 10)
/* Bytes of one header line (name + value): 8 KiB -> 431 (RELIABILITY H03). */
#define SLM_LIMIT_HTTP_HEADER_LINE       (8u << 10)
/* Header fields in one request (or chunked trailer): 100 -> 431. */
#define SLM_LIMIT_HTTP_HEADERS           100u
/* Bytes of the request target: 8 KiB -> 414. */
#define SLM_LIMIT_HTTP_URI               (8u << 10)
/* Bytes of a request body (after de-chunking): 8 MiB -> 413. Prompts of
 * 128k tokens are ~ 600 KiB of JSON; 8 MiB leaves room for images as URLs. */
#define SLM_LIMIT_HTTP_BODY              (8u << 20)
/* Bytes of one chunk-size line (size + extensions): 4 KiB -> 400. */
#define SLM_LIMIT_HTTP_CHUNK_LINE        (4u << 10)
/* Chunked framing overhead (size lines, extensions, CRLFs, trailers) may
 * exceed the data bytes by at most this much (h2o's chunk-overhead rule):
 * a 1 MiB body sent as 1-byte chunks is refused after ~ 16 K chunks. */
#define SLM_LIMIT_HTTP_CHUNK_OVERHEAD    (64u << 10)
/* Deadlines in milliseconds (RELIABILITY H04): the whole request head (and
 * the TLS handshake) must arrive within 10 s of accept or of the previous
 * response, whatever the drip rate; a body may be idle 30 s; an idle
 * keep-alive connection is closed after 60 s. */
#define SLM_LIMIT_HTTP_HEAD_TIMEOUT_MS   10000u
#define SLM_LIMIT_HTTP_BODY_IDLE_MS      30000u
#define SLM_LIMIT_HTTP_KEEPALIVE_IDLE_MS 60000u
/* Bytes of decoded JSON DOM memory (values, members, strings) per document:
 * 64 MiB bounds an 8 MiB body of tiny values ("[0,0,0,...]" needs ~ 12x). */
#define SLM_LIMIT_JSON_MEM               (64u << 20)
/* Characters of one JSON number literal (longer -> error, not a slow strtod). */
#define SLM_LIMIT_JSON_NUMBER            512u

/* ---- engine contexts (src/engine/model_decode.c) ---- */

/* Sequences (server slots) of one model context: 1,024 bounds the KV index
 * arrays; memory is bounded separately by the KV cache size. */
#define SLM_LIMIT_SEQUENCES 1024u
/* Tokens of one model_decode batch (llama.cpp's default n_batch is 2,048;
 * 65,536 keeps every scratch size far from overflow). */
#define SLM_LIMIT_BATCH     65536u

/* ---- sandbox (slm sandbox, src/sandbox/) ---- */

/* Memory of one sandbox: default 1 GiB (a compiler or a test suite fits), at
 * most 64 GiB. Enforced by the cgroup; RLIMIT_DATA is the floor. */
#define SLM_LIMIT_SANDBOX_MEMORY           (1ull << 30)
#define SLM_LIMIT_SANDBOX_MEMORY_MAX       (64ull << 30)
/* Processes and threads of one sandbox: default 256 (make -j plus a test
 * runner), at most 65,536. */
#define SLM_LIMIT_SANDBOX_PIDS             256u
#define SLM_LIMIT_SANDBOX_PIDS_MAX         65536u
/* Wall-clock seconds of one command: default 60, at most one day. */
#define SLM_LIMIT_SANDBOX_WALL_S           60u
#define SLM_LIMIT_SANDBOX_WALL_S_MAX       86400u
/* Captured bytes per stream (stdout, stderr): default 1 MiB, at most 64 MiB;
 * the rest is read and dropped, and the result says "truncated". */
#define SLM_LIMIT_SANDBOX_OUTPUT           (1u << 20)
#define SLM_LIMIT_SANDBOX_OUTPUT_MAX       (64u << 20)
/* tmpfs sizes: /tmp 256 MiB, $HOME 64 MiB, /output 64 MiB, /dev/shm 64 MiB;
 * each at most 16 GiB (tmpfs pages count against the memory limit). */
#define SLM_LIMIT_SANDBOX_TMP              (256ull << 20)
#define SLM_LIMIT_SANDBOX_HOME             (64ull << 20)
#define SLM_LIMIT_SANDBOX_OUTDIR           (64ull << 20)
#define SLM_LIMIT_SANDBOX_SHM              (64ull << 20)
#define SLM_LIMIT_SANDBOX_TMPFS_MAX        (16ull << 30)
/* Files (and directories) in /output: default 10,000, at most 1,000,000; the
 * tmpfs inode cap makes creation fail with ENOSPC, the copy-out checks again. */
#define SLM_LIMIT_SANDBOX_OUTPUT_FILES     10000u
#define SLM_LIMIT_SANDBOX_OUTPUT_FILES_MAX 1000000u
/* Directory depth followed when copying /output out. */
#define SLM_LIMIT_SANDBOX_OUTPUT_DEPTH     32u
/* Extra environment entries (--env, --setenv) and argv entries. */
#define SLM_LIMIT_SANDBOX_ENV              128u
#define SLM_LIMIT_SANDBOX_ARGV             4096u
/* Bytes of one path given to the sandbox (project, output, workdir, binds). */
#define SLM_LIMIT_SANDBOX_PATH             4096u
/* Extra read-only binds (--ro-bind). */
#define SLM_LIMIT_SANDBOX_BINDS            32u

/* ---- tokenizer ---- */

/* Bytes of text slm tokenize reads from a file or stdin: 64 MiB. */
#define SLM_LIMIT_TOKENIZE_INPUT (64u << 20)

/* ---- chat templates (src/chat) ---- */

/* Bytes of one template source: real chat templates are < 64 KiB; 4 MiB
 * leaves room and makes 1 MiB of junk a syntax error, not a limit error. */
#define SLM_LIMIT_TEMPLATE_BYTES      (4u << 20)
/* Bytes of one compiled template (syntax tree and constants). */
#define SLM_LIMIT_TEMPLATE_MEM        (64u << 20)
/* Nesting depth of the syntax tree (expressions and blocks): deeper is
 * refused at compile time, so rendering never recurses deeper than this. */
#define SLM_LIMIT_TEMPLATE_DEPTH      128u
/* Nested macro calls during one render (Jinja2 stops at Python's 1,000). */
#define SLM_LIMIT_TEMPLATE_CALL_DEPTH 32u
/* Evaluation steps of one render: a 10,000-message conversation takes about
 * 2 M; 50 M stops a hostile loop within about a second. */
#define SLM_LIMIT_TEMPLATE_STEPS      50000000u
/* Bytes of memory one render may allocate (values, strings): a 600 KiB
 * conversation needs a few MiB. */
#define SLM_LIMIT_TEMPLATE_RENDER_MEM (64u << 20)
/* Bytes of one rendered prompt (a 1 M-token prompt is ~ 4 MiB of text). */
#define SLM_LIMIT_TEMPLATE_OUTPUT     (32u << 20)
/* Elements of range(): Jinja2's sandbox MAX_RANGE. */
#define SLM_LIMIT_TEMPLATE_RANGE      100000u
/* Bytes of text a tool-call parser holds back while deciding. */
#define SLM_LIMIT_TOOLCALL_BYTES      (1u << 20)

/* ---- scheduler (src/engine/sched.c) ---- */

/* Requests waiting for a free slot (sched n_queue_max): default 64, at most
 * 65,536; each holds a copy of its prompt, so the queue bounds memory too. */
#define SLM_LIMIT_SCHED_QUEUE 65536u

/* ---- OpenAI API streaming (src/api/openai_chat.c) ---- */

/* Milliseconds between SSE keep-alive comments (": keep-alive") sent on a
 * stream while its prompt waits or is processed and no token went out yet:
 * default 5 s (well under the 30-60 s idle timeouts of common proxies and
 * clients), at most 10 minutes. The environment variable
 * SLM_SSE_KEEPALIVE_MS overrides it (tests use a few milliseconds). */
#define SLM_LIMIT_SSE_KEEPALIVE_MS     5000u
#define SLM_LIMIT_SSE_KEEPALIVE_MS_MAX 600000u
