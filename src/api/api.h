/*
 * api.h - the OpenAI-compatible API of `slm serve`: the route table and its
 * endpoints (/health, /v1/models, /v1/chat/completions, /v1/completions,
 * /tokenize, /detokenize, /apply-template, /metrics), API keys, CORS and
 * Prometheus metrics.
 *
 * Errors always have OpenAI's shape {"error":{"message","type","param",
 * "code"}}: 400 naming the field for malformed JSON or a bad value, 401
 * without a valid key, 404/405 for unknown routes and methods, 400 with
 * code "context_length_exceeded" and "maximum context length" in the
 * message for a prompt that does not fit, 503 with Retry-After when the
 * scheduler's queue is full. max_tokens is lowered to what fits the context.
 *
 * Threading: everything runs on the server's loop thread; the scheduler's
 * callbacks (engine thread) only copy their event and post it to the loop.
 *
 * Ownership: api_new borrows every object in struct api_params (they must
 * outlive the api) and returns new. API keys: api_keys_* below; keys are
 * kept as SHA-256 digests only and compared with CRYPTO_memcmp over every
 * stored key, and they never reach a log line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/chat.h"
#include "core/buf.h"
#include "core/err.h"
#include "engine/model.h"
#include "engine/sched.h"
#include "http/router.h"
#include "http/server.h"

/* ---- API keys (keys.c) ---- */

/* Prefix of generated keys; a generated key is this plus 64 hex digits (256 bits). */
#define API_KEY_PREFIX   "sk-slm-"
/* Shortest and longest key accepted from a file or the environment. */
#define API_KEY_LEN_MIN  16u
#define API_KEY_LEN_MAX  256u
/* Bytes of a generated key plus its NUL. */
#define API_KEY_GEN_SIZE 72u

struct api_keys;

/* Returns new (empty set), or NULL on ENOMEM. */
struct api_keys *api_keys_new(void);
void api_keys_free(struct api_keys *k);
/*
 * Adds key[0..len) (borrows). Keys are 16 to 256 printable ASCII characters
 * without spaces: SLM_EINVAL otherwise (the message never contains the key).
 */
SLM_NODISCARD int api_keys_add(struct api_keys *k, const char *key, size_t len, struct slm_diag *d);
/*
 * Adds every key of path: one key per line, blank lines and lines starting
 * with '#' ignored. The file must be a regular file, not readable or
 * writable by group or others (SLM_EPERM: "chmod 600 FILE"), at most 1 MiB,
 * and hold at least one key. Errors name the file and the line.
 */
SLM_NODISCARD int api_keys_load_file(struct api_keys *k, const char *path, struct slm_diag *d);
/* Writes a new random key "sk-slm-<64 hex>" into out[API_KEY_GEN_SIZE]. */
SLM_NODISCARD int api_keys_generate(char out[API_KEY_GEN_SIZE]);
/* True if key[0..len) is one of the set (constant time in the key's bytes). */
bool api_keys_verify(const struct api_keys *k, const char *key, size_t len);
size_t api_keys_count(const struct api_keys *k);

/* ---- the API ---- */

struct api_params {
    struct model *model;              /* borrowed */
    struct sched *sched;              /* borrowed */
    struct http_server *server;       /* borrowed: its loop receives engine events */
    const struct api_keys *keys;      /* borrowed; never NULL */
    const struct chat_template *tmpl; /* borrowed; NULL: /v1/chat/completions answers 500 */
    /* The source of tmpl when it is not the model's own (--chat-template-file),
     * borrowed: the tool-call format, Devstral's [ARGS] and <think> are
     * detected from the template in use. NULL: the model's
     * tokenizer.chat_template (and vocabulary) decide. */
    const char *tmpl_src;
    size_t tmpl_src_len;
    const char *alias;               /* model id in /v1/models and responses */
    int32_t n_predict_max;           /* server-wide cap on generated tokens; < 0: none */
    const char *const *cors_origins; /* allowed Origin values (exact match) */
    size_t n_cors_origins;
};

struct api;

SLM_NODISCARD int api_new(const struct api_params *p, struct api **out, struct slm_diag *d);
/* Frees the api; requests still in flight must have ended (api_n_active() == 0). */
void api_free(struct api *a);
/* The server's handler (http_handler_fn): arg is the struct api. */
void api_handle(void *arg, struct http_exchange *ex);
/* Cancels every request in flight (graceful shutdown); each still ends with
 * its DONE event, which sends a final error event or a 503. */
void api_cancel_all(struct api *a);
/* Requests in flight (submitted to the scheduler, not yet done). */
size_t api_n_active(const struct api *a);
/* Returns borrowed: the route table (static). */
const struct route *api_routes(size_t *n);
