/*
 * sched.h - the engine's scheduler: slots, continuous batching, prefix cache.
 *
 * One engine thread owns a model context with n_slots sequences. Requests are
 * queued by any thread (sched_submit); the engine thread assigns them to free
 * slots and, every step, runs ONE model_decode over a batch holding the next
 * token of every generating slot plus a chunk of the prompt of slots still
 * reading theirs (chunked prefill, so running streams keep flowing while a
 * long prompt is processed). Before a prompt is processed, the slot whose
 * cached tokens share the longest prefix with it is chosen (agents resend
 * their whole conversation every turn) and only the rest is decoded; idle
 * slots are reused least-recently-used first, so a sub-agent does not evict
 * the main conversation's prefix while another slot is free.
 *
 * Slot choice: a free slot whose cache shares a prefix with the prompt at
 * least as long as the part it would discard is a hit (longest wins, ties
 * least recently used); otherwise an empty slot, else the least recently
 * used one. If another slot (even a busy one) shares a longer prefix, that
 * prefix is copied from it (model_seq_cp). At least the last prompt token is
 * always decoded. docs/internals/sched.md has the details.
 *
 * Results are reported through the request's callback, called ON THE ENGINE
 * THREAD: it must only copy the event and hand it off (the server posts it to
 * its event loop's queue); it must not block or call back into sched. After
 * SCHED_EVENT_DONE nothing more is reported for that request. Per request:
 * STARTED once when it gets a slot, then TOKEN per generated token, then
 * DONE. A request cancelled while still queued gets only DONE (CANCELED).
 *
 * Ending: EOG when the model draws an end-of-generation token (that token is
 * neither reported nor counted); LENGTH after n_predict tokens, or when the
 * last token has no position left in the slot's context (a prompt of P
 * tokens can get at most n_ctx - P + 1); CANCELED (err SLM_ECANCELED) within
 * one step of sched_cancel or at sched_free; ERROR (err, msg) if the forward
 * pass fails or no sampler can be allocated. ignore_eos follows llama.cpp:
 * end-of-generation tokens get logit -inf, so they are never drawn.
 *
 * Ownership: sched_new borrows the model (must outlive the scheduler) and
 * returns new; sched_free cancels everything, reports DONE for every request
 * and joins the engine thread. sched_submit copies the prompt.
 * Thread safety: sched_submit, sched_cancel and sched_get_stats may be called
 * from any thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/model.h"
#include "engine/sample.h"

/* A zero field means its default. */
struct sched_params {
    uint32_t n_slots;     /* parallel sequences; default 4 */
    uint32_t n_ctx;       /* positions per slot; 0: model's, capped at 8192 */
    uint32_t n_batch;     /* tokens per decode step; default 512; >= n_slots */
    uint32_t n_threads;   /* 0: physical cores */
    uint32_t n_queue_max; /* waiting requests before SLM_ELIMIT; default 64; at most
                             SLM_LIMIT_SCHED_QUEUE */
};

struct sched_params sched_params_default(void);

enum sched_event_type {
    SCHED_EVENT_STARTED, /* prompt accepted: n_prompt, n_cached known */
    SCHED_EVENT_TOKEN,   /* one generated token */
    SCHED_EVENT_DONE     /* the end: finish says why; counts are final */
};

enum sched_finish {
    SCHED_FINISH_NONE = 0,
    SCHED_FINISH_EOG,      /* the model ended its turn (finish_reason "stop") */
    SCHED_FINISH_LENGTH,   /* n_predict or the context was reached ("length") */
    SCHED_FINISH_CANCELED, /* sched_cancel or shutdown */
    SCHED_FINISH_ERROR     /* see err and msg */
};

struct sched_event {
    enum sched_event_type type;
    uint64_t id;
    tok_id token;             /* TOKEN */
    enum sched_finish finish; /* DONE */
    uint32_t n_prompt;
    uint32_t n_cached; /* prompt tokens reused from the prefix cache */
    uint32_t n_generated;
    uint64_t t_prompt_ns; /* time spent on the prompt */
    uint64_t t_gen_ns;    /* time spent generating */
    int err;
    char msg[SLM_DIAG_MSG_MAX];
};

typedef void sched_event_fn(void *arg, const struct sched_event *ev);

/*
 * Constrained decoding (tool_choice "required"/named): a per-request token
 * filter, called ON THE ENGINE THREAD while the request runs, never after
 * its DONE. allow says whether token id may be generated now when at most
 * n_left more tokens may follow it (the budget left by n_predict and the
 * context), so the filter can steer towards a complete output in time;
 * the sampler asks it about the best candidates only (sample.h). accept
 * reports each generated token, in order; it returns true when the output
 * is complete: the token is reported, then the request ends with DONE/EOG.
 * If allow refuses every token of the vocabulary the request ends with
 * DONE/ERROR. The arg must stay valid until DONE.
 */
typedef bool sched_allow_fn(void *arg, tok_id id, uint32_t n_left);
typedef bool sched_accept_fn(void *arg, tok_id id);

struct sched_constraint {
    sched_allow_fn *allow; /* NULL: no constraint */
    sched_accept_fn *accept;
    void *arg;
};

struct sched_request {
    const tok_id *prompt; /* copied; 1 .. sched_n_ctx tokens, ids < n_vocab */
    size_t n_prompt;
    struct sampler_params sampling;
    int32_t n_predict; /* most tokens to generate; < 0: until EOG or the context ends;
                          0: read (and cache) the prompt only */
    bool ignore_eos;
    sched_event_fn *cb;
    void *cb_arg;
    struct sched_constraint constraint; /* zero: none */
};

struct sched;

/* Returns new in *out; SLM_EINVAL (n_batch < n_slots), SLM_ELIMIT (a limit),
 * SLM_ENOMEM, SLM_EIO (no thread) with a message in d. */
SLM_NODISCARD int sched_new(struct model *m, const struct sched_params *p, struct sched **out,
                            struct slm_diag *d);
void sched_free(struct sched *s);

/*
 * Queues a request; stores its id. SLM_ELIMIT when the queue is full (the
 * server answers 429/503 with Retry-After), SLM_ERANGE when the prompt alone
 * does not fit a slot's context (400 context_length_exceeded), SLM_EINVAL for
 * invalid token ids, an empty prompt, a NULL callback or bad sampling
 * parameters, SLM_ECANCELED during sched_free, SLM_ENOMEM. Nothing is
 * reported for a request that was refused (then *id is 0). Ids start at 1.
 */
SLM_NODISCARD int sched_submit(struct sched *s, const struct sched_request *r, uint64_t *id,
                               struct slm_diag *d);
/* Cancels a request (queued or running); DONE/CANCELED follows within one step. */
void sched_cancel(struct sched *s, uint64_t id);

struct sched_stats {
    uint32_t n_slots;
    uint32_t n_slots_busy;
    uint32_t n_queued;
    uint32_t n_ctx;           /* per slot */
    uint64_t n_kv_used;       /* cached positions over all slots */
    uint64_t n_prompt_tokens; /* totals since start */
    uint64_t n_prompt_cached;
    uint64_t n_generated_tokens;
    uint64_t t_prompt_ns;
    uint64_t t_gen_ns;
    uint64_t n_requests_done;
    uint64_t n_decode_steps;
};

/* Copies the counters; busy slots and KV use are as of the last step or finish. */
void sched_get_stats(struct sched *s, struct sched_stats *out);
/* Tokens a prompt may have at most (the per-slot context). */
uint32_t sched_n_ctx(const struct sched *s);
