/*
 * api_int.h - internals shared by the files of src/api (openai.c,
 * metrics.c). Everything here runs on the loop thread.
 */
#pragma once

#include <stdint.h>

#include "api/api.h"
#include "chat/chat.h"
#include "core/buf.h"
#include "core/json.h"

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
};

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
 * calls), and tool_calls [{id, type, function: {name, arguments}}] with
 * arguments as a JSON string.
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
    struct api_tool_call *calls;
    size_t n_calls, cap_calls;
};

void api__tool_msg_init(struct api_tool_msg *m);
void api__tool_msg_fini(struct api_tool_msg *m);
/* chat_delta_cb: returns 0, SLM_ENOMEM or SLM_ELIMIT. */
SLM_NODISCARD int api__tool_msg_add(void *arg, const struct chat_delta *d);
void api__tool_msg_write(struct json_writer *w, const struct api_tool_msg *m);
void api__tool_delta_write(struct json_writer *w, const struct chat_delta *d);
