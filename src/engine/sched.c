/*
 * sched.c - the engine thread: request queue, slots, continuous batching,
 * chunked prefill, the prefix cache and cancellation (see sched.h and
 * docs/internals/sched.md).
 *
 * Threads. Any thread calls sched_submit, sched_cancel and sched_get_stats;
 * they only touch the fields marked "protected by mu" and never wait for the
 * model. The engine thread owns the model context, the samplers, the batch
 * arrays and every slot's cache bookkeeping; it takes mu at the top of each
 * step (to collect cancellations, move queued requests into free slots and
 * publish the statistics) and when a request finishes, never across a
 * model_decode or a callback. With no work it sleeps on the condition
 * variable `wake` (no polling).
 *
 * A request's life: queued (s->q_head list) -> bound to a slot (slot->req,
 * both under mu, so sched_cancel can always find it) -> PROMPT (chunks of the
 * uncached prompt go into the batches) -> GEN (one token per step) -> DONE,
 * after which the slot is idle but keeps its KV cache and the list of the
 * tokens in it for the next request.
 */
#include "engine/sched.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/str.h"

/* n_ctx when the caller passes 0: the model's, but not more than this. */
#define SCHED_N_CTX_DEFAULT_MAX 8192u

struct sched_req {
    uint64_t id;
    tok_id *prompt; /* owned copy */
    uint32_t n_prompt;
    struct sampler_params sampling;
    int32_t n_predict;
    bool ignore_eos;
    sched_event_fn *cb;
    void *cb_arg;
    struct sched_constraint constraint;
    bool canceled;          /* protected by mu */
    struct sched_req *next; /* queue link; protected by mu */
};

enum slot_state {
    SLOT_IDLE = 0,
    SLOT_PROMPT, /* decoding the uncached part of the prompt */
    SLOT_GEN     /* one token per step */
};

struct sched_slot {
    int32_t seq;
    /* Protected by mu (written by the engine under mu, read by sched_cancel). */
    struct sched_req *req;
    /* Everything below belongs to the engine thread. */
    enum slot_state state;
    tok_id *cache;    /* [n_ctx] the tokens in this sequence's KV cache, in order */
    uint32_t n_cache; /* == model_seq_len(seq) between steps */
    uint64_t last_used;
    uint64_t start_order; /* prompt chunks are scheduled oldest request first */
    /* Pending KV operation of a fresh assignment (run outside mu). */
    bool fresh;
    int32_t copy_src; /* slot to copy the prefix from, or -1 */
    uint32_t n_keep;  /* prompt tokens reused */
    /* Request progress. */
    uint32_t n_prompt_done; /* prompt tokens in the cache */
    uint32_t n_generated;
    tok_id next_tok; /* sampled, not yet decoded (GEN) */
    int32_t out_row; /* logits row in the current batch, -1 if none */
    uint32_t n_in_batch;
    uint64_t t_start_ns, t_first_ns;
    bool cancel; /* seen canceled at the top of this step */
    struct sampler *smp;
    struct sampler_params smp_params;
};

struct sched {
    struct model *m;
    struct model_context *ctx;
    const struct tokenizer *tok;
    uint32_t n_vocab, n_ctx, n_batch, n_slots, n_queue_max;
    struct sched_slot *slots;
    /* Engine-thread scratch, sized at creation. */
    tok_id *b_tok;
    int32_t *b_pos, *b_seq;
    bool *b_logits;
    float *logits_buf; /* [n_vocab] for ignore_eos masking */
    tok_id *eog;       /* the vocabulary's end-of-generation ids */
    size_t n_eog;
    uint32_t *order; /* [n_slots] slot indices sorted for chunk scheduling */
    uint64_t use_clock, start_clock;
    uint64_t n_steps; /* published to stats.n_decode_steps under mu */

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    /* Protected by mu. */
    struct sched_req *q_head, *q_tail;
    uint32_t n_queued;
    uint64_t next_id;
    bool stopping;
    struct sched_stats stats;
};

struct sched_params sched_params_default(void)
{
    struct sched_params p;

    memset(&p, 0, sizeof(p));
    p.n_slots = 4;
    p.n_ctx = 0;
    p.n_batch = 512;
    p.n_threads = 0;
    p.n_queue_max = 64;
    return p;
}

/* ---- events ---- */

/* Reports one event for req with slot's counters (slot may be NULL: queued). */
static void emit(const struct sched_slot *slot, const struct sched_req *req,
                 enum sched_event_type type, tok_id token, enum sched_finish finish, int err,
                 const char *msg)
{
    struct sched_event ev;
    uint64_t now;

    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.id = req->id;
    ev.token = type == SCHED_EVENT_TOKEN ? token : TOK_NONE;
    ev.finish = finish;
    ev.n_prompt = req->n_prompt;
    ev.err = err;
    if (msg != NULL) snprintf(ev.msg, sizeof(ev.msg), "%s", msg);
    if (slot != NULL) {
        ev.n_cached = slot->n_keep;
        ev.n_generated = slot->n_generated;
        now = slm_now_ns();
        if (slot->t_first_ns != 0) {
            ev.t_prompt_ns = slot->t_first_ns - slot->t_start_ns;
            ev.t_gen_ns = now - slot->t_first_ns;
        } else if (type == SCHED_EVENT_DONE) {
            ev.t_prompt_ns = now - slot->t_start_ns;
        }
    }
    req->cb(req->cb_arg, &ev);
}

static void req_free(struct sched_req *r)
{
    if (r == NULL) return;
    slm_free(r->prompt);
    slm_free(r);
}

/*
 * Ends slot's request: unbinds it under mu (sched_cancel may be looking at
 * slot->req) and adds its totals to the statistics, then reports DONE (so a
 * client that saw DONE also sees the counts) and frees it. The slot keeps
 * its cache.
 */
static void slot_finish(struct sched *s, struct sched_slot *slot, enum sched_finish finish, int err,
                        const char *msg)
{
    struct sched_req *req = slot->req;
    uint64_t now = slm_now_ns();
    uint64_t t_prompt, t_gen, kv = 0;

    t_prompt = (slot->t_first_ns != 0 ? slot->t_first_ns : now) - slot->t_start_ns;
    t_gen = slot->t_first_ns != 0 ? now - slot->t_first_ns : 0;
    for (uint32_t i = 0; i < s->n_slots; i++)
        kv += s->slots[i].n_cache;
    pthread_mutex_lock(&s->mu);
    slot->req = NULL;
    if (s->stats.n_slots_busy > 0) s->stats.n_slots_busy--;
    s->stats.n_kv_used = kv;
    s->stats.n_decode_steps = s->n_steps;
    s->stats.n_requests_done++;
    s->stats.n_prompt_tokens += req->n_prompt;
    s->stats.n_prompt_cached += slot->n_keep;
    s->stats.n_generated_tokens += slot->n_generated;
    s->stats.t_prompt_ns += t_prompt;
    s->stats.t_gen_ns += t_gen;
    pthread_mutex_unlock(&s->mu);
    emit(slot, req, SCHED_EVENT_DONE, TOK_NONE, finish, err, msg);
    slot->state = SLOT_IDLE;
    slot->fresh = false;
    slot->last_used = ++s->use_clock;
    req_free(req);
}

/* ---- slot choice and the prefix cache ---- */

/* Length of the common prefix of a[0..na) and b[0..nb). */
static uint32_t common_prefix(const tok_id *a, uint32_t na, const tok_id *b, uint32_t nb)
{
    uint32_t n = na < nb ? na : nb, i = 0;

    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* Cached tokens of slot usable for req: the common prefix, leaving at least
 * the last prompt token to decode (its logits give the first token). */
static uint32_t usable_prefix(const struct sched_slot *slot, const struct sched_req *req)
{
    uint32_t n = common_prefix(slot->cache, slot->n_cache, req->prompt, req->n_prompt);

    return n < req->n_prompt ? n : req->n_prompt - 1;
}

/*
 * Picks the free slot for req (called under mu, engine thread). A free slot
 * whose cache shares a prefix with the prompt at least as long as the part
 * it would throw away is a hit; the longest hit wins (ties: least recently
 * used). Without a hit an empty slot is taken, else the least recently used
 * one, so one unrelated request (a sub-agent) does not evict another
 * conversation's long prefix while a cheaper slot is free. Returns -1 if no
 * slot is free.
 */
static int32_t choose_slot(const struct sched *s, const struct sched_req *req)
{
    int32_t best_hit = -1, best_free = -1;
    uint32_t best_lcp = 0;

    for (uint32_t i = 0; i < s->n_slots; i++) {
        const struct sched_slot *sl = &s->slots[i];
        uint32_t lcp;

        if (sl->req != NULL) continue;
        lcp = usable_prefix(sl, req);
        if (lcp > 0 && 2 * (uint64_t)lcp >= sl->n_cache) {
            if (best_hit < 0 || lcp > best_lcp ||
                (lcp == best_lcp && sl->last_used < s->slots[best_hit].last_used)) {
                best_hit = (int32_t)i;
                best_lcp = lcp;
            }
        }
        if (best_free < 0) {
            best_free = (int32_t)i;
        } else {
            const struct sched_slot *bf = &s->slots[best_free];
            bool empty = sl->n_cache == 0, bf_empty = bf->n_cache == 0;
            if ((empty && !bf_empty) || (empty == bf_empty && sl->last_used < bf->last_used))
                best_free = (int32_t)i;
        }
    }
    return best_hit >= 0 ? best_hit : best_free;
}

/*
 * Binds req to a free slot (under mu): chooses the slot, and the slot (any
 * state, other than the chosen one) whose cache shares the longest prefix
 * with the prompt. If that beats the chosen slot's own prefix, the prefix is
 * copied from there (model_seq_cp, e.g. parallel requests with the same
 * system prompt). Updates the cache bookkeeping now so that later choices in
 * the same round see it; the KV operation itself runs in slot_start, in the
 * same order, outside mu. Returns false if no slot is free.
 */
static bool assign(struct sched *s, struct sched_req *req)
{
    int32_t di = choose_slot(s, req), src = -1;
    struct sched_slot *dst;
    uint32_t keep;

    if (di < 0) return false;
    dst = &s->slots[di];
    keep = usable_prefix(dst, req);
    for (uint32_t i = 0; i < s->n_slots; i++) {
        uint32_t lcp;

        if ((int32_t)i == di) continue;
        lcp = usable_prefix(&s->slots[i], req);
        if (lcp > keep) {
            keep = lcp;
            src = (int32_t)i;
        }
    }
    if (src >= 0) memcpy(dst->cache, s->slots[src].cache, (size_t)keep * sizeof(tok_id));
    dst->n_cache = keep;
    dst->req = req;
    dst->fresh = true;
    dst->copy_src = src;
    dst->n_keep = keep;
    dst->n_prompt_done = keep;
    dst->n_generated = 0;
    dst->state = SLOT_PROMPT;
    dst->start_order = ++s->start_clock;
    dst->last_used = ++s->use_clock;
    dst->t_start_ns = slm_now_ns();
    dst->t_first_ns = 0;
    dst->cancel = false;
    return true;
}

/*
 * True if a sampler made with a can serve b after sampler_reset: the same
 * parameters and the same fixed seed, or both greedy (temp 0 draws nothing,
 * so the seed does not matter).
 */
static bool params_same(const struct sampler_params *a, const struct sampler_params *b)
{
    bool seed_ok = (a->seed == b->seed && a->seed != SAMPLER_SEED_RANDOM) ||
                   (a->temp <= 0.0f && b->temp <= 0.0f);

    return seed_ok && a->temp == b->temp && a->top_k == b->top_k && a->top_p == b->top_p &&
           a->min_p == b->min_p && a->repeat_penalty == b->repeat_penalty &&
           a->repeat_last_n == b->repeat_last_n && a->presence_penalty == b->presence_penalty &&
           a->frequency_penalty == b->frequency_penalty;
}

/*
 * Prepares a freshly assigned slot (engine thread, outside mu): the KV
 * operation chosen by assign, the sampler (reset if the parameters are
 * unchanged, else rebuilt: sample.h has no way to re-parameterise one), the
 * penalty window primed with the prompt's tail, and STARTED (then DONE/ERROR
 * if no sampler can be made).
 */
static void slot_start(struct sched *s, struct sched_slot *slot)
{
    struct sched_req *req = slot->req;
    int32_t window;
    uint32_t first;
    int rc;

    slot->fresh = false;
    if (slot->copy_src >= 0) {
        rc = model_seq_cp(s->ctx, slot->copy_src, slot->seq, (int32_t)slot->n_keep);
        if (rc < 0) {
            /* Cannot happen (assign checked the lengths); stay safe: start cold. */
            log_write(LOG_LEVEL_WARN, "sched: prefix copy from slot %d failed: %s", slot->copy_src,
                      slm_strerror(rc));
            slot->n_keep = slot->n_prompt_done = slot->n_cache = 0;
            model_seq_rm(s->ctx, slot->seq, 0, -1);
        }
    } else {
        model_seq_rm(s->ctx, slot->seq, (int32_t)slot->n_keep, -1);
    }
    SLM_ASSERT(model_seq_len(s->ctx, slot->seq) == (int32_t)slot->n_cache);
    if (slot->smp != NULL && params_same(&slot->smp_params, &req->sampling)) {
        sampler_reset(slot->smp);
    } else {
        struct sampler *smp = sampler_new(&req->sampling, s->n_vocab);
        if (smp == NULL) {
            emit(slot, req, SCHED_EVENT_STARTED, TOK_NONE, SCHED_FINISH_NONE, 0, NULL);
            slot_finish(s, slot, SCHED_FINISH_ERROR, SLM_ENOMEM, "out of memory for a sampler");
            return;
        }
        sampler_free(slot->smp);
        slot->smp = smp;
        slot->smp_params = req->sampling;
    }
    /* Only the last repeat_last_n accepted tokens matter to the penalties. */
    window = req->sampling.repeat_last_n;
    first = window > 0 && (uint32_t)window < req->n_prompt ? req->n_prompt - (uint32_t)window : 0;
    for (uint32_t i = first; i < req->n_prompt; i++)
        sampler_accept(slot->smp, req->prompt[i]);
    emit(slot, req, SCHED_EVENT_STARTED, TOK_NONE, SCHED_FINISH_NONE, 0, NULL);
}

/* ---- one step ---- */

/* Orders slot indices by start_order (oldest request first). */
static void sort_by_start(const struct sched *s, uint32_t *idx, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint32_t v = idx[i], j = i;
        while (j > 0 && s->slots[idx[j - 1]].start_order > s->slots[v].start_order) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

/* Appends one token of slot to the batch. */
static void batch_add(struct sched *s, size_t *n, struct sched_slot *slot, tok_id t, bool logits)
{
    s->b_tok[*n] = t;
    s->b_pos[*n] = (int32_t)(slot->n_cache + slot->n_in_batch);
    s->b_seq[*n] = slot->seq;
    s->b_logits[*n] = logits;
    (*n)++;
    slot->n_in_batch++;
}

/*
 * Fills the batch: the pending token of every generating slot first (so
 * streams keep flowing), then prompt chunks, oldest request first, up to
 * n_batch tokens. Returns the number of tokens.
 */
static size_t build_batch(struct sched *s)
{
    size_t n = 0;
    uint32_t n_rows = 0, n_prompt = 0;

    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct sched_slot *sl = &s->slots[i];

        sl->n_in_batch = 0;
        sl->out_row = -1;
        if (sl->req == NULL) continue;
        if (sl->state == SLOT_GEN) {
            sl->out_row = (int32_t)n_rows++;
            batch_add(s, &n, sl, sl->next_tok, true);
        } else if (sl->state == SLOT_PROMPT) {
            s->order[n_prompt++] = i;
        }
    }
    sort_by_start(s, s->order, n_prompt);
    for (uint32_t k = 0; k < n_prompt && n < s->n_batch; k++) {
        struct sched_slot *sl = &s->slots[s->order[k]];
        uint32_t left = sl->req->n_prompt - sl->n_prompt_done;
        size_t room = s->n_batch - n;
        uint32_t take = left < room ? left : (uint32_t)room;

        for (uint32_t j = 0; j < take; j++) {
            bool last = sl->n_prompt_done + j + 1 == sl->req->n_prompt;
            if (last) sl->out_row = (int32_t)n_rows++;
            batch_add(s, &n, sl, sl->req->prompt[sl->n_prompt_done + j], last);
        }
    }
    return n;
}

/* A constrained request's filter with the budget of the token being drawn. */
struct filter_ctx {
    const struct sched_constraint *c;
    uint32_t n_left;
};

static bool filter_allow(void *arg, tok_id id)
{
    const struct filter_ctx *f = arg;

    return f->c->allow(f->c->arg, id, f->n_left);
}

/* Tokens that may still follow the one being drawn now. */
static uint32_t tokens_left_after(const struct sched *s, const struct sched_slot *slot)
{
    const struct sched_req *req = slot->req;
    uint32_t n = s->n_ctx > slot->n_cache ? s->n_ctx - slot->n_cache : 0;

    if (req->n_predict >= 0) {
        uint32_t p = (uint32_t)req->n_predict > slot->n_generated + 1
                         ? (uint32_t)req->n_predict - slot->n_generated - 1
                         : 0;
        if (p < n) n = p;
    }
    return n;
}

/*
 * Samples the next token of slot from its logits row and reports it; ends
 * the request on EOG, n_predict, a full context, or a complete constrained
 * output.
 */
static void slot_sample(struct sched *s, struct sched_slot *slot)
{
    const struct sched_req *req = slot->req;
    const float *logits;
    tok_id t;

    if (req->n_predict >= 0 && slot->n_generated >= (uint32_t)req->n_predict) {
        slot_finish(s, slot, SCHED_FINISH_LENGTH, 0, NULL);
        return;
    }
    logits = model_logits(s->ctx, (size_t)slot->out_row);
    if (SLM_UNLIKELY(logits == NULL)) {
        /* Cannot happen: build_batch asked for this row. */
        slot_finish(s, slot, SCHED_FINISH_ERROR, SLM_EINTERNAL, "no logits for a sequence");
        return;
    }
    if (req->ignore_eos && s->n_eog > 0) {
        /* llama.cpp's ignore_eos: end-of-generation tokens can never be drawn. */
        memcpy(s->logits_buf, logits, (size_t)s->n_vocab * sizeof(float));
        for (size_t i = 0; i < s->n_eog; i++)
            s->logits_buf[s->eog[i]] = -INFINITY;
        logits = s->logits_buf;
    }
    if (req->constraint.allow != NULL) {
        struct filter_ctx fc = { &req->constraint, tokens_left_after(s, slot) };

        t = sampler_sample_filtered(slot->smp, logits, filter_allow, &fc);
        if (t == TOK_NONE) {
            slot_finish(s, slot, SCHED_FINISH_ERROR, SLM_EINVAL,
                        "constrained decoding: no token of the vocabulary can continue the output");
            return;
        }
    } else {
        t = sampler_sample(slot->smp, logits);
    }
    sampler_accept(slot->smp, t);
    if (slot->t_first_ns == 0) slot->t_first_ns = slm_now_ns();
    if (!req->ignore_eos && tokenizer_is_eog(s->tok, t)) {
        slot_finish(s, slot, SCHED_FINISH_EOG, 0, NULL);
        return;
    }
    slot->n_generated++;
    emit(slot, req, SCHED_EVENT_TOKEN, t, SCHED_FINISH_NONE, 0, NULL);
    if (req->constraint.accept != NULL && req->constraint.accept(req->constraint.arg, t)) {
        slot_finish(s, slot, SCHED_FINISH_EOG, 0, NULL);
        return;
    }
    /* Length: n_predict reached, or no position left to decode t at. */
    if ((req->n_predict >= 0 && slot->n_generated >= (uint32_t)req->n_predict) ||
        slot->n_cache >= s->n_ctx) {
        slot_finish(s, slot, SCHED_FINISH_LENGTH, 0, NULL);
    } else {
        slot->next_tok = t;
        slot->state = SLOT_GEN;
    }
}

/* Runs one batched forward step over every busy slot and samples. */
static void step(struct sched *s)
{
    struct model_batch b;
    struct slm_diag d;
    size_t n = build_batch(s);
    int rc;

    if (n == 0) return;
    s->n_steps++;
    memset(&b, 0, sizeof(b));
    b.n_tokens = n;
    b.tokens = s->b_tok;
    b.pos = s->b_pos;
    b.seq = s->b_seq;
    b.logits = s->b_logits;
    slm_diag_clear(&d);
    rc = model_decode(s->ctx, &b, &d);
    if (rc < 0) {
        /* Nothing changed in the cache; end every request of the batch. */
        log_write(LOG_LEVEL_ERROR, "sched: model_decode of %zu tokens failed: %s", n, d.msg);
        for (uint32_t i = 0; i < s->n_slots; i++) {
            struct sched_slot *sl = &s->slots[i];
            if (sl->req != NULL && sl->n_in_batch > 0)
                slot_finish(s, sl, SCHED_FINISH_ERROR, rc, d.msg);
        }
        return;
    }
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct sched_slot *sl = &s->slots[i];

        if (sl->req == NULL || sl->n_in_batch == 0) continue;
        if (sl->state == SLOT_GEN) {
            sl->cache[sl->n_cache] = sl->next_tok;
        } else {
            memcpy(sl->cache + sl->n_cache, sl->req->prompt + sl->n_prompt_done,
                   (size_t)sl->n_in_batch * sizeof(tok_id));
            sl->n_prompt_done += sl->n_in_batch;
        }
        sl->n_cache += sl->n_in_batch;
        if (sl->out_row >= 0) slot_sample(s, sl);
    }
}

/* ---- the engine thread ---- */

/* Under mu: removes canceled requests from the queue into *dead, marks
 * canceled running slots, publishes the statistics. */
static void collect_locked(struct sched *s, struct sched_req **dead)
{
    struct sched_req **pp = &s->q_head, *prev = NULL;
    uint64_t kv = 0;
    uint32_t busy = 0;

    while (*pp != NULL) {
        struct sched_req *r = *pp;
        if (r->canceled || s->stopping) {
            *pp = r->next;
            if (s->q_tail == r) s->q_tail = prev;
            s->n_queued--;
            s->stats.n_requests_done++;
            r->next = *dead;
            *dead = r;
        } else {
            prev = r;
            pp = &r->next;
        }
    }
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct sched_slot *sl = &s->slots[i];
        if (sl->req != NULL) {
            busy++;
            if (sl->req->canceled || s->stopping) sl->cancel = true;
        }
        kv += sl->n_cache;
    }
    s->stats.n_slots_busy = busy;
    s->stats.n_queued = s->n_queued;
    s->stats.n_kv_used = kv;
    s->stats.n_decode_steps = s->n_steps;
}

/* Under mu: moves queued requests into free slots, oldest first. */
static void assign_locked(struct sched *s)
{
    while (s->q_head != NULL) {
        struct sched_req *r = s->q_head;
        if (!assign(s, r)) break;
        s->q_head = r->next;
        if (s->q_head == NULL) s->q_tail = NULL;
        r->next = NULL;
        s->n_queued--;
    }
    s->stats.n_queued = s->n_queued;
}

static bool any_busy(const struct sched *s)
{
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].req != NULL) return true;
    return false;
}

static void *engine_main(void *arg)
{
    struct sched *s = arg;
    bool stopping = false;

    while (!stopping) {
        struct sched_req *dead = NULL;

        pthread_mutex_lock(&s->mu);
        for (;;) {
            collect_locked(s, &dead);
            if (s->stopping) break;
            assign_locked(s);
            if (dead != NULL || any_busy(s)) break;
            pthread_cond_wait(&s->wake, &s->mu);
        }
        stopping = s->stopping;
        s->stats.n_slots_busy = 0;
        for (uint32_t i = 0; i < s->n_slots; i++)
            s->stats.n_slots_busy += s->slots[i].req != NULL;
        pthread_mutex_unlock(&s->mu);

        while (dead != NULL) {
            struct sched_req *r = dead;
            dead = r->next;
            emit(NULL, r, SCHED_EVENT_DONE, TOK_NONE, SCHED_FINISH_CANCELED, SLM_ECANCELED, NULL);
            req_free(r);
        }
        /* Fresh assignments in the order assign made them (KV ops depend on it). */
        for (;;) {
            struct sched_slot *first = NULL;
            for (uint32_t i = 0; i < s->n_slots; i++) {
                struct sched_slot *sl = &s->slots[i];
                if (sl->req != NULL && sl->fresh &&
                    (first == NULL || sl->start_order < first->start_order))
                    first = sl;
            }
            if (first == NULL) break;
            slot_start(s, first);
        }
        for (uint32_t i = 0; i < s->n_slots; i++) {
            struct sched_slot *sl = &s->slots[i];
            if (sl->req != NULL && sl->cancel)
                slot_finish(s, sl, SCHED_FINISH_CANCELED, SLM_ECANCELED, NULL);
        }
        if (!stopping) step(s);
    }
    return NULL;
}

/* ---- the public API ---- */

/* Frees everything of s except the thread (not started or joined). */
static void sched_destroy(struct sched *s)
{
    if (s->slots != NULL) {
        for (uint32_t i = 0; i < s->n_slots; i++) {
            sampler_free(s->slots[i].smp);
            slm_free(s->slots[i].cache);
            req_free(s->slots[i].req);
        }
    }
    while (s->q_head != NULL) {
        struct sched_req *r = s->q_head;
        s->q_head = r->next;
        req_free(r);
    }
    slm_free(s->slots);
    slm_free(s->b_tok);
    slm_free(s->b_pos);
    slm_free(s->b_seq);
    slm_free(s->b_logits);
    slm_free(s->logits_buf);
    slm_free(s->eog);
    slm_free(s->order);
    model_context_free(s->ctx);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    slm_free(s);
}

/* Fills s->eog with the vocabulary's end-of-generation ids. */
static int collect_eog(struct sched *s)
{
    size_t n = 0;

    for (uint32_t i = 0; i < s->n_vocab; i++)
        n += tokenizer_is_eog(s->tok, (tok_id)i);
    s->eog = slm_calloc(n > 0 ? n : 1, sizeof(tok_id));
    if (s->eog == NULL) return SLM_ENOMEM;
    for (uint32_t i = 0; i < s->n_vocab; i++)
        if (tokenizer_is_eog(s->tok, (tok_id)i)) s->eog[s->n_eog++] = (tok_id)i;
    return 0;
}

/* Allocates the engine's scratch and the slots. */
static int alloc_state(struct sched *s, struct slm_diag *d)
{
    struct sampler_params sp = sampler_params_default();

    sp.seed = 0; /* a placeholder until the first request; no OS entropy needed */
    s->slots = slm_calloc(s->n_slots, sizeof(*s->slots));
    s->b_tok = slm_calloc(s->n_batch, sizeof(*s->b_tok));
    s->b_pos = slm_calloc(s->n_batch, sizeof(*s->b_pos));
    s->b_seq = slm_calloc(s->n_batch, sizeof(*s->b_seq));
    s->b_logits = slm_calloc(s->n_batch, sizeof(*s->b_logits));
    s->logits_buf = slm_calloc(s->n_vocab, sizeof(float));
    s->order = slm_calloc(s->n_slots, sizeof(*s->order));
    if (s->slots == NULL || s->b_tok == NULL || s->b_pos == NULL || s->b_seq == NULL ||
        s->b_logits == NULL || s->logits_buf == NULL || s->order == NULL || collect_eog(s) < 0)
        goto nomem;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct sched_slot *sl = &s->slots[i];
        sl->seq = (int32_t)i;
        sl->copy_src = -1;
        sl->out_row = -1;
        sl->cache = slm_calloc(s->n_ctx, sizeof(tok_id));
        sl->smp = sampler_new(&sp, s->n_vocab);
        sl->smp_params = sp;
        if (sl->cache == NULL || sl->smp == NULL) goto nomem;
    }
    return 0;
nomem:
    return slm_diag_set(d, SLM_ENOMEM, "out of memory for the scheduler's %u slots", s->n_slots);
}

/*
 * Creates the scheduler: a model context with p->n_slots sequences of
 * p->n_ctx positions, the slots, and the engine thread. Borrows m (it must
 * outlive the scheduler). Returns 0 and new in *out, or SLM_EINVAL/
 * SLM_ELIMIT for bad parameters, SLM_ENOMEM, SLM_EIO if the thread cannot
 * start, with a message in d.
 */
int sched_new(struct model *m, const struct sched_params *p, struct sched **out, struct slm_diag *d)
{
    const struct model_hparams *hp = model_get_hparams(m);
    struct sched_params def = sched_params_default();
    struct model_context_params cp = model_context_params_default();
    struct sched *s;
    sigset_t all, old;
    int rc;

    *out = NULL;
    s = slm_calloc(1, sizeof(*s));
    if (s == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory for the scheduler");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    s->m = m;
    s->tok = model_get_tokenizer(m);
    s->n_vocab = hp->n_vocab;
    s->next_id = 1;
    s->n_slots = p->n_slots != 0 ? p->n_slots : def.n_slots;
    s->n_batch = p->n_batch != 0 ? p->n_batch : def.n_batch;
    s->n_queue_max = p->n_queue_max != 0 ? p->n_queue_max : def.n_queue_max;
    s->n_ctx = p->n_ctx;
    if (s->n_ctx == 0)
        s->n_ctx =
            hp->n_ctx_train < SCHED_N_CTX_DEFAULT_MAX ? hp->n_ctx_train : SCHED_N_CTX_DEFAULT_MAX;
    if (s->n_batch < s->n_slots) {
        rc = slm_diag_set(d, SLM_EINVAL,
                          "n_batch %u is smaller than n_slots %u: every generating slot adds one "
                          "token per step; raise the batch size or lower the slots",
                          s->n_batch, s->n_slots);
        goto fail;
    }
    if (s->n_queue_max > SLM_LIMIT_SCHED_QUEUE) {
        rc = slm_diag_set(d, SLM_ELIMIT, "queue size %u exceeds the limit %u", s->n_queue_max,
                          SLM_LIMIT_SCHED_QUEUE);
        goto fail;
    }
    if (s->n_ctx < 2) {
        rc = slm_diag_set(d, SLM_EINVAL, "context size %u is too small (at least 2)", s->n_ctx);
        goto fail;
    }
    cp.n_ctx = s->n_ctx;
    cp.n_seq = s->n_slots;
    cp.n_batch = s->n_batch;
    cp.n_threads = p->n_threads;
    cp.n_outputs = s->n_slots; /* one logits row per slot and step at most */
    if ((rc = model_context_new(m, &cp, &s->ctx, d)) < 0) goto fail;
    s->n_ctx = model_context_n_ctx(s->ctx);
    if ((rc = alloc_state(s, d)) < 0) goto fail;
    s->stats.n_slots = s->n_slots;
    s->stats.n_ctx = s->n_ctx;
    /* The engine thread takes no signals: they belong to the event loop. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&s->thread, NULL, engine_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        rc = slm_diag_set(d, SLM_EIO, "cannot start the engine thread: %s",
                          slm_strerror(slm_err_from_errno(rc)));
        goto fail;
    }
    s->thread_started = true;
    *out = s;
    return 0;
fail:
    sched_destroy(s);
    return rc;
}

/*
 * Stops the engine thread: every queued and running request ends with
 * DONE/CANCELED (reported on the engine thread before this returns), then
 * joins it and frees everything. NULL is a no-op. Must not be called from a
 * callback.
 */
void sched_free(struct sched *s)
{
    if (s == NULL) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    sched_destroy(s);
}

/*
 * Validates and queues r (see sched.h); the prompt is copied. Stores the new
 * request's id (ids start at 1) in *id.
 */
int sched_submit(struct sched *s, const struct sched_request *r, uint64_t *id, struct slm_diag *d)
{
    struct sched_req *q;
    size_t bytes;
    int rc;

    *id = 0;
    if (r->cb == NULL) return slm_diag_set(d, SLM_EINVAL, "request has no callback");
    if (r->n_prompt == 0 || r->prompt == NULL)
        return slm_diag_set(d, SLM_EINVAL, "prompt is empty: at least one token is needed");
    if (r->n_prompt > s->n_ctx)
        return slm_diag_set(d, SLM_ERANGE,
                            "prompt of %zu tokens exceeds the context of %u tokens per slot; "
                            "shorten the prompt or raise the context size",
                            r->n_prompt, s->n_ctx);
    for (size_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || (uint32_t)r->prompt[i] >= s->n_vocab)
            return slm_diag_set(d, SLM_EINVAL, "prompt token %zu: id %d outside 0..%u", i,
                                (int)r->prompt[i], s->n_vocab - 1);
    if ((rc = sampler_params_check(&r->sampling, d)) < 0) return rc;
    if (!slm_mul_size(r->n_prompt, sizeof(tok_id), &bytes))
        return slm_diag_set(d, SLM_ERANGE, "prompt of %zu tokens is too large", r->n_prompt);
    q = slm_calloc(1, sizeof(*q));
    if (q != NULL) q->prompt = slm_malloc(bytes);
    if (q == NULL || q->prompt == NULL) {
        req_free(q);
        return slm_diag_set(d, SLM_ENOMEM, "out of memory for a prompt of %zu tokens", r->n_prompt);
    }
    memcpy(q->prompt, r->prompt, bytes);
    q->n_prompt = (uint32_t)r->n_prompt;
    q->sampling = r->sampling;
    q->n_predict = r->n_predict;
    q->ignore_eos = r->ignore_eos;
    q->cb = r->cb;
    q->cb_arg = r->cb_arg;
    q->constraint = r->constraint;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        rc = slm_diag_set(d, SLM_ECANCELED, "the scheduler is shutting down");
    } else if (s->n_queued >= s->n_queue_max) {
        rc = slm_diag_set(d, SLM_ELIMIT,
                          "queue full: %u requests are waiting (n_queue_max); retry later",
                          s->n_queued);
    } else {
        rc = 0;
        q->id = s->next_id++;
        if (s->q_tail != NULL)
            s->q_tail->next = q;
        else
            s->q_head = q;
        s->q_tail = q;
        s->n_queued++;
        s->stats.n_queued = s->n_queued;
        *id = q->id;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) req_free(q);
    return rc;
}

/*
 * Marks request id canceled, whether queued or running, and wakes the
 * engine, which reports DONE/CANCELED at the top of its next step. Unknown
 * or finished ids are ignored.
 */
void sched_cancel(struct sched *s, uint64_t id)
{
    bool found = false;

    pthread_mutex_lock(&s->mu);
    for (struct sched_req *r = s->q_head; r != NULL && !found; r = r->next) {
        if (r->id == id) {
            r->canceled = true;
            found = true;
        }
    }
    for (uint32_t i = 0; i < s->n_slots && !found; i++) {
        struct sched_req *r = s->slots[i].req;
        if (r != NULL && r->id == id) {
            r->canceled = true;
            found = true;
        }
    }
    if (found) pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
}

/* Copies the statistics (busy slots, queue and KV use are as of the last step). */
void sched_get_stats(struct sched *s, struct sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->n_queued = s->n_queued;
    pthread_mutex_unlock(&s->mu);
}

uint32_t sched_n_ctx(const struct sched *s)
{
    return s->n_ctx;
}
