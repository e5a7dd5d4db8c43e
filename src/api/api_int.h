/*
 * api_int.h - internals shared by the files of src/api: openai.c (routes,
 * dispatch, life cycle, simple endpoints), openai_request.c (request
 * parsing and errors), openai_chat.c (generation requests in flight,
 * streaming), openai_constrain.c (forced tool calls), metrics.c.
 * Everything here runs on the loop thread, except the constraint's
 * allow/accept callbacks (engine thread, see sched.h).
 */
#pragma once

#include <stdarg.h>
#include <stdint.h>

#include "api/api.h"
#include "core/limits.h"
#include "chat/chat.h"
#include "core/buf.h"
#include "core/json.h"

/* Stop strings per request and bytes per stop string. */
#define API_STOP_MAX       16u
#define API_STOP_BYTES_MAX 512u
/* Bytes of generated text kept per request. */
#define API_TEXT_MAX       SLM_LIMIT_HTTP_BODY
/* Bytes of a JSON response or of one stream chunk. */
#define API_RESP_MAX       (2u * SLM_LIMIT_HTTP_BODY)
/* Bytes of a rendered chat prompt. */
#define API_PROMPT_MAX     SLM_LIMIT_HTTP_BODY
/* Tool calls per reply. */
#define API_TOOL_CALLS_MAX 128u
/* Reported as system_fingerprint. */
#define SLM_API_VERSION    "0.1.0"
/* Environment variable that overrides SLM_LIMIT_SSE_KEEPALIVE_MS (tests). */
#define API_KEEPALIVE_ENV  "SLM_SSE_KEEPALIVE_MS"

/* Status codes counted separately in /metrics; others go to "other". */
#define API_STATUS_SLOTS 12

struct api_counters {
    uint64_t requests[API_STATUS_SLOTS]; /* by api__status_slot */
    uint64_t completions_ok;
    uint64_t completions_failed;
    uint64_t streams_active;
    uint64_t canceled; /* by client disconnect or shutdown */
    uint64_t context_exceeded;
    uint64_t queue_full;
    uint64_t auth_failed;
};

struct api_req;

struct api {
    struct api_params p;
    struct http_loop *loop;
    const struct tokenizer *tok;
    uint32_t n_ctx;
    bool add_bos;                     /* the tokenizer adds BOS on its own */
    tok_id fim_pre, fim_suf, fim_mid; /* TOK_NONE when absent */
    char bos_text[64], eos_text[64];
    int64_t created; /* start time, for /v1/models */
    uint64_t t_start_ns;
    struct api_req *active; /* requests in flight */
    size_t n_active;
    struct api_counters c;
    enum chat_toolcall_format tc_fmt; /* tool-call format of the model's replies */
    bool mistral_args;                /* Mistral calls as name[ARGS]{...} (Devstral) */
    bool thinks;                      /* the template or vocabulary knows <think> */
    uint64_t keepalive_ms;            /* SSE comment interval before the first token */
};

enum api_kind { API_KIND_CHAT, API_KIND_COMPLETION };

enum api_tool_choice {
    API_TOOL_CHOICE_AUTO,
    API_TOOL_CHOICE_NONE,
    API_TOOL_CHOICE_REQUIRED,
    API_TOOL_CHOICE_NAMED
};

/* Validated generation parameters (api__parse_gen). */
struct api_gen_params {
    bool stream, include_usage, ignore_eos;
    int64_t max_tokens; /* -1: not given */
    struct sampler_params sp;
    const struct json_value *stop;
};

/* What rendering a chat learned about tools (api__render_chat). */
struct api_chat_info {
    bool parse_tools; /* the reply goes through the tool-call parser */
    enum api_tool_choice choice;
    const struct json_value *tools; /* borrowed from the request; NULL: none offered */
    const struct json_value *name;  /* NAMED: the function name (a JSON string) */
};

struct api_constraint;

/* How a generation request is answered (api__submit). */
struct api_submit_opts {
    bool parse_tools;
    bool think;        /* split <think> reasoning into reasoning_content */
    bool think_inside; /* the prompt ends inside <think> */
    /* Text the reply starts with (a forced tool-call opening; not generated,
     * not counted), and the constraint that finishes it (takes). */
    const char *seed;
    size_t seed_len;
    struct api_constraint *constraint;
};

/* ---- openai_request.c ---- */

void api__count_status(struct api *a, int status);
void api__respond(struct api *a, struct http_exchange *ex, int status, const char *ctype,
                  const char *body, size_t len);
/* Writes OpenAI's error object into w (the value of "error"). */
void api__write_error_obj(struct json_writer *w, const char *type, const char *param,
                          const char *code, const char *msg);
/* Answers {"error":{...}} with status (WWW-Authenticate on 401, Retry-After on 429/503). */
void api__error(struct api *a, struct http_exchange *ex, int status, const char *param,
                const char *code, const char *fmt, ...) SLM_PRINTF(6, 7);
/* Answers 200 with the JSON in b, or 500 if the writer failed. */
void api__respond_json(struct api *a, struct http_exchange *ex, struct json_writer *w,
                       struct slm_buf *b);
/* Answers 400 naming param with d's message. */
void api__bad_field(struct api *a, struct http_exchange *ex, const char *param,
                    const struct slm_diag *d);
/* Returns new: the body as a JSON object, or NULL after answering 400/503. */
struct json_doc *api__parse_body(struct api *a, struct http_exchange *ex);
/* Tokenizes text into a new array (*out, slm_free). */
SLM_NODISCARD int api__tokenize(const struct api *a, const char *text, size_t len, unsigned flags,
                                tok_id **out, size_t *n);
/* Prepends BOS when the model wants one and the prompt lacks it. */
SLM_NODISCARD int api__ensure_bos(const struct api *a, tok_id **toks, size_t *n);
/*
 * Renders the chat prompt for root's messages (and tools) into out and
 * fills info (may be NULL; its pointers borrow from root). Returns 0, or
 * answers the error itself and returns < 0.
 */
int api__render_chat(struct api *a, struct http_exchange *ex, const struct json_value *root,
                     bool add_generation_prompt, struct slm_buf *out, struct api_chat_info *info);
int api__opt_bool(const struct json_value *root, const char *key, bool *out, struct slm_diag *d,
                  const char **param);
/* Validates the fields shared by chat and completions. */
int api__parse_gen(const struct api *a, const struct json_value *root, struct api_gen_params *g,
                   struct slm_diag *d, const char **param);

/* ---- openai_chat.c ---- */

/*
 * Checks the context, builds and submits a generation request (takes toks
 * and o->constraint; borrows the rest). Answers errors itself. On success
 * the request lives until its DONE event.
 */
void api__submit(struct api *a, struct http_exchange *ex, enum api_kind kind,
                 const struct api_gen_params *g, struct api_submit_opts *o, tok_id *toks,
                 size_t n_toks);
/* POST /v1/chat/completions. */
void api__h_chat(void *arg, struct http_exchange *ex);

/* ---- openai_constrain.c: forced tool calls ---- */

/*
 * A forced tool call (tool_choice "required" or named) for the model's
 * tool-call format: the opening text appended to the prompt (and seen by
 * the tool-call parser as the reply's start), a token filter that lets
 * the model write only what completes a valid call, and the closing text
 * added after it. name NULL: the model chooses among tools' names (its
 * tokens are constrained to them); else that function is called. Returns
 * 0 and new in *out, SLM_EINVAL (d: a tool name the format cannot carry),
 * SLM_ENOMEM. tools and name are borrowed for the call only.
 */
SLM_NODISCARD int api__constraint_new(const struct api *a, const struct json_value *tools,
                                      const struct json_value *name, struct api_constraint **out,
                                      struct slm_diag *d);
void api__constraint_free(struct api_constraint *c);
/* Returns borrowed: the opening text (valid while c lives). */
const char *api__constraint_prefix(const struct api_constraint *c, size_t *len);
/* Returns borrowed: the closing text, to add once the call is complete. */
const char *api__constraint_suffix(const struct api_constraint *c, size_t *len);
/* Fewest tokens the generated part needs (a budget below it cannot finish). */
size_t api__constraint_min_tokens(const struct api_constraint *c);
/* True once accept saw the call complete (read after DONE only). */
bool api__constraint_done(const struct api_constraint *c);
/* The scheduler's callbacks (sched.h), arg is the constraint. Engine thread. */
bool api__constraint_allow(void *arg, tok_id id, uint32_t n_left);
bool api__constraint_accept(void *arg, tok_id id);

/* Index of status in api_counters.requests and its label. */
size_t api__status_slot(int status);
const char *api__status_label(size_t slot);
/* Appends the Prometheus text exposition of a's metrics to out. */
SLM_NODISCARD int api__metrics_write(struct api *a, struct slm_buf *out);

/*
 * Tool calls in responses. A tool-call parser (chat.h) reports content and
 * tool-call deltas; these turn them into OpenAI's JSON.
 *
 * struct api_tool_msg collects the deltas of a whole reply (non-streaming):
 * api__tool_msg_add is a chat_delta_cb whose arg is the api_tool_msg; it
 * copies what it is given (the delta is borrowed). api__tool_msg_write
 * writes the "message" object: role, content (null when the reply is only
 * calls), reasoning_content (when there was any), and tool_calls [{id, type, function: {name,
 * arguments}}] with arguments as a JSON string.
 *
 * api__tool_delta_write writes the members of one streamed "delta" object:
 * {"content": text} for content, and for a call {"tool_calls": [{"index",
 * then on the call's first delta "id", "type": "function", "function":
 * {"name", "arguments": ""}; on later deltas "function": {"arguments":
 * fragment}}]}.
 */
struct api_tool_call {
    char id[64];
    struct slm_buf name;
    struct slm_buf args;
};

struct api_tool_msg {
    struct slm_buf content;
    struct slm_buf reasoning; /* written as reasoning_content when not empty */
    struct api_tool_call *calls;
    size_t n_calls, cap_calls;
};

void api__tool_msg_init(struct api_tool_msg *m);
void api__tool_msg_fini(struct api_tool_msg *m);
/* chat_delta_cb: returns 0, SLM_ENOMEM or SLM_ELIMIT. */
SLM_NODISCARD int api__tool_msg_add(void *arg, const struct chat_delta *d);
void api__tool_msg_write(struct json_writer *w, const struct api_tool_msg *m);
void api__tool_delta_write(struct json_writer *w, const struct chat_delta *d);
