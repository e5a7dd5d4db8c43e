/*
 * api_int.h - internals shared by the files of src/api (openai.c,
 * metrics.c). Everything here runs on the loop thread.
 */
#pragma once

#include <stdint.h>

#include "api/api.h"

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
};

/* Index of status in api_counters.requests and its label. */
size_t api__status_slot(int status);
const char *api__status_label(size_t slot);
/* Appends the Prometheus text exposition of a's metrics to out. */
SLM_NODISCARD int api__metrics_write(struct api *a, struct slm_buf *out);
