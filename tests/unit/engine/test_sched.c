/*
 * test_sched.c - the scheduler against a plain model_decode loop.
 *
 * Every test writes a tiny llama model (F32, 2 layers, byte-level vocabulary)
 * with the GGUF writer and compares what the scheduler streams with an
 * independent reference: a one-sequence context decoded token by token with
 * argmax (ties: lowest id) done here. Events are collected under a mutex and
 * waited for with a condition variable and a timeout, so the tests are
 * TSan-clean themselves (run them in build/tsan too).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/rand.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/sample.h"
#include "engine/sched.h"
#include "harness/t.h"

#define N_EMBD  64u
#define N_FF    128u
#define N_LAYER 2u
#define N_HEAD  4u
#define N_HKV   2u
#define BOS_ID  257
#define EOS_ID  258
#define MAX_GEN 512
#define MAX_REQ 16
#define WAIT_S  120

/* ---- the tiny model ---- */

/* The GPT-2 byte-to-unicode mapping of byte b, UTF-8 encoded into out. */
static void byte_token(unsigned b, char out[4])
{
    unsigned cp;

    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        unsigned n = 0;
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        cp = 256 + n;
    }
    memset(out, 0, 4);
    if (cp < 0x80) {
        out[0] = (char)cp;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
    }
}

struct builder {
    struct gguf_writer *w;
    struct slm_rng rng;
    float *bufs[32];
    size_t n_bufs;
};

static void add_tensor(struct builder *b, const char *name, uint64_t ne0, uint64_t ne1, float base,
                       float scale)
{
    uint64_t ne[2] = { ne0, ne1 };
    float *f = slm_xmalloc(ne0 * ne1 * sizeof(float));

    for (uint64_t i = 0; i < ne0 * ne1; i++)
        f[i] = base + slm_rng_normal(&b->rng) * scale;
    ASSERT(b->n_bufs < SLM_ARRAY_LEN(b->bufs));
    b->bufs[b->n_bufs++] = f;
    ASSERT_OK(gguf_writer_add_tensor(b->w, name, TENSOR_TYPE_F32, ne1 > 1 ? 2 : 1, ne, f,
                                     ne0 * ne1 * sizeof(float)));
}

/* Writes the vocabulary: 256 byte tokens, one merge ("he"), BOS and EOS
 * names (eos is the eos id). Returns the number of tokens. */
static uint32_t write_vocab(struct gguf_writer *w, tok_id eos)
{
    static char bytes[256][4];
    const char *toks[259];
    int32_t types[259];
    const char *merges[1] = { "h e" };
    uint32_t n = 0;

    for (unsigned i = 0; i < 256; i++) {
        byte_token(i, bytes[i]);
        types[n] = 1;
        toks[n++] = bytes[i];
    }
    types[n] = 1;
    toks[n++] = "he";
    types[n] = 3;
    toks[n++] = "<|begin_of_text|>";
    types[n] = 3;
    toks[n++] = "<|end_of_text|>";
    ASSERT_OK(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4));
    ASSERT_OK(gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe", 9));
    ASSERT_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, n));
    ASSERT_OK(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n));
    ASSERT_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 1));
    ASSERT_OK(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", BOS_ID));
    ASSERT_OK(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos));
    return n;
}

/* Writes the test model to path; eos is the end-of-sequence id (weights do
 * not depend on it). Returns the vocabulary size. */
static uint32_t build_model(const char *path, tok_id eos)
{
    struct builder b;
    struct slm_diag d;
    char name[64];
    uint32_t n, hd = N_EMBD / N_HEAD;

    memset(&b, 0, sizeof(b));
    slm_rng_seed(&b.rng, 1234);
    b.w = gguf_writer_new();
    ASSERT_NOT_NULL(b.w);
    ASSERT_OK(gguf_writer_set_str(b.w, "general.architecture", "llama", 5));
    n = write_vocab(b.w, eos);
    ASSERT_OK(gguf_writer_set_u32(b.w, "llama.block_count", N_LAYER));
    ASSERT_OK(gguf_writer_set_u32(b.w, "llama.context_length", 512));
    ASSERT_OK(gguf_writer_set_u32(b.w, "llama.embedding_length", N_EMBD));
    ASSERT_OK(gguf_writer_set_u32(b.w, "llama.feed_forward_length", N_FF));
    ASSERT_OK(gguf_writer_set_u32(b.w, "llama.attention.head_count", N_HEAD));
    ASSERT_OK(gguf_writer_set_u32(b.w, "llama.attention.head_count_kv", N_HKV));
    ASSERT_OK(gguf_writer_set_u32(b.w, "llama.rope.dimension_count", hd));
    ASSERT_OK(gguf_writer_set_f32(b.w, "llama.rope.freq_base", 10000.0f));
    ASSERT_OK(gguf_writer_set_f32(b.w, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
    add_tensor(&b, "token_embd.weight", N_EMBD, n, 0.0f, 1.0f);
    add_tensor(&b, "output_norm.weight", N_EMBD, 1, 1.0f, 0.1f);
    /* Wide logits: greedy choices are far from ties, so batch shapes cannot flip them. */
    add_tensor(&b, "output.weight", N_EMBD, n, 0.0f, 4.0f / sqrtf((float)N_EMBD));
    /* Special tokens score 0, far below the best byte: generation never ends by
     * itself, so end-of-generation happens only where a test puts eos. */
    memset(b.bufs[b.n_bufs - 1] + (size_t)256 * N_EMBD, 0,
           (size_t)(n - 256) * N_EMBD * sizeof(float));
    for (uint32_t il = 0; il < N_LAYER; il++) {
#define NM(x) (snprintf(name, sizeof(name), "blk.%u.%s", il, x), name)
        add_tensor(&b, NM("attn_norm.weight"), N_EMBD, 1, 1.0f, 0.1f);
        add_tensor(&b, NM("attn_q.weight"), N_EMBD, N_EMBD, 0.0f, 1.0f / sqrtf((float)N_EMBD));
        add_tensor(&b, NM("attn_k.weight"), N_EMBD, (uint64_t)N_HKV * hd, 0.0f,
                   1.0f / sqrtf((float)N_EMBD));
        add_tensor(&b, NM("attn_v.weight"), N_EMBD, (uint64_t)N_HKV * hd, 0.0f,
                   1.0f / sqrtf((float)N_EMBD));
        add_tensor(&b, NM("attn_output.weight"), N_EMBD, N_EMBD, 0.0f, 1.0f / sqrtf((float)N_EMBD));
        add_tensor(&b, NM("ffn_norm.weight"), N_EMBD, 1, 1.0f, 0.1f);
        add_tensor(&b, NM("ffn_gate.weight"), N_EMBD, N_FF, 0.0f, 1.0f / sqrtf((float)N_EMBD));
        add_tensor(&b, NM("ffn_up.weight"), N_EMBD, N_FF, 0.0f, 1.0f / sqrtf((float)N_EMBD));
        add_tensor(&b, NM("ffn_down.weight"), N_FF, N_EMBD, 0.0f, 1.0f / sqrtf((float)N_FF));
#undef NM
    }
    ASSERT_OK(gguf_writer_write(b.w, path, &d));
    gguf_writer_free(b.w);
    for (size_t i = 0; i < b.n_bufs; i++)
        slm_free(b.bufs[i]);
    return n;
}

/* Builds (eos EOS_ID) and loads the test model. */
static struct model *load_model_eos(tok_id eos, const char *file)
{
    char path[512];
    struct model *m = NULL;
    struct slm_diag d = { 0 };
    int rc;

    snprintf(path, sizeof(path), "%s/%s", t_tmpdir(), file);
    build_model(path, eos);
    rc = model_load(path, &m, &d);
    if (rc < 0) t_fail(__FILE__, __LINE__, "model_load: %s: %s", slm_strerror(rc), d.msg);
    return m;
}

static struct model *load_model(void)
{
    return load_model_eos(EOS_ID, "sched.gguf");
}

/* n random ordinary tokens (bytes) from seed. */
static void make_prompt(tok_id *p, size_t n, uint64_t seed)
{
    struct slm_rng r;

    slm_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (tok_id)slm_rng_below(&r, 256);
}

/* ---- the reference: a plain model_decode loop ---- */

static tok_id argmax(const float *l, uint32_t n)
{
    tok_id best = 0;

    for (uint32_t i = 1; i < n; i++)
        if (l[i] > l[best]) best = (tok_id)i;
    return best;
}

/*
 * Generates from prompt p[0..n) with one sequence of n_ctx positions and the
 * scheduler's end rules: n_predict (< 0: none), an EOG token (not returned),
 * no position left for the last token. sp NULL: argmax; else a sampler with
 * sp. Returns the number of tokens in out.
 */
static size_t ref_generate(struct model *m, const tok_id *p, size_t n, int32_t n_predict,
                           uint32_t n_ctx, const struct sampler_params *sp, tok_id *out, size_t cap)
{
    struct model_context_params cp = model_context_params_default();
    struct model_context *c = NULL;
    struct sampler *smp = NULL;
    uint32_t n_vocab = model_get_hparams(m)->n_vocab;
    const struct tokenizer *tk = model_get_tokenizer(m);
    struct slm_diag d = { 0 };
    size_t n_out = 0, done = 0;
    int32_t pos[64], seq[64];
    bool want[64];

    cp.n_ctx = n_ctx;
    cp.n_seq = 1;
    cp.n_batch = 64;
    cp.n_threads = 1;
    ASSERT_OK(model_context_new(m, &cp, &c, &d));
    if (sp != NULL) {
        smp = sampler_new(sp, n_vocab);
        ASSERT_NOT_NULL(smp);
    }
    while (done < n) {
        size_t k = n - done < 64 ? n - done : 64;
        struct model_batch b = { k, p + done, pos, seq, want };
        for (size_t i = 0; i < k; i++) {
            pos[i] = (int32_t)(done + i);
            seq[i] = 0;
            want[i] = done + i + 1 == n;
        }
        ASSERT_OK(model_decode(c, &b, &d));
        done += k;
    }
    for (;;) {
        const float *l = model_logits(c, 0);
        tok_id t;
        int32_t ps = (int32_t)(n + n_out);
        bool w = true;
        struct model_batch b = { 1, &t, &ps, seq, &w };

        if (n_predict >= 0 && n_out >= (size_t)n_predict) break;
        ASSERT_NOT_NULL(l);
        t = smp != NULL ? sampler_sample(smp, l) : argmax(l, n_vocab);
        if (smp != NULL) sampler_accept(smp, t);
        if (tokenizer_is_eog(tk, t)) break;
        ASSERT(n_out < cap);
        out[n_out++] = t;
        if (n_predict >= 0 && n_out >= (size_t)n_predict) break;
        if ((size_t)ps >= n_ctx) break;
        seq[0] = 0;
        ASSERT_OK(model_decode(c, &b, &d));
    }
    sampler_free(smp);
    model_context_free(c);
    return n_out;
}

/* ---- collecting events ---- */

struct coll;

struct rec {
    struct coll *co;
    uint64_t ev_id; /* the id events carry */
    tok_id toks[MAX_GEN];
    size_t n_toks;
    int n_started, n_done, n_after_done, n_token_before_start;
    struct sched_event started, done;
    /* The callback blocks the engine thread at token hold_at (0: never)
     * until released: makes "cancel after k tokens" deterministic. */
    size_t hold_at;
    bool held, released;
};

struct coll {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct rec rec[MAX_REQ];
    int n_events;
};

static void coll_init(struct coll *co)
{
    pthread_condattr_t a;

    memset(co, 0, sizeof(*co));
    pthread_mutex_init(&co->mu, NULL);
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&co->cv, &a);
    pthread_condattr_destroy(&a);
    for (size_t i = 0; i < MAX_REQ; i++)
        co->rec[i].co = co;
}

static void coll_fini(struct coll *co)
{
    pthread_cond_destroy(&co->cv);
    pthread_mutex_destroy(&co->mu);
}

/* The callback: runs on the engine thread; copies under the mutex. */
static void on_event(void *arg, const struct sched_event *ev)
{
    struct rec *r = arg;
    struct coll *co = r->co;

    pthread_mutex_lock(&co->mu);
    co->n_events++;
    if (r->ev_id == 0) r->ev_id = ev->id;
    if (r->ev_id != ev->id) r->n_after_done += 1000; /* wrong id: fails the checks */
    if (r->n_done > 0) r->n_after_done++;
    switch (ev->type) {
    case SCHED_EVENT_STARTED:
        r->n_started++;
        r->started = *ev;
        break;
    case SCHED_EVENT_TOKEN:
        if (r->n_started == 0) r->n_token_before_start++;
        if (r->n_toks < MAX_GEN) r->toks[r->n_toks++] = ev->token;
        if (r->hold_at != 0 && r->n_toks == r->hold_at) {
            r->held = true;
            pthread_cond_broadcast(&co->cv);
            while (!r->released)
                pthread_cond_wait(&co->cv, &co->mu);
        }
        break;
    case SCHED_EVENT_DONE:
        r->n_done++;
        r->done = *ev;
        break;
    }
    pthread_cond_broadcast(&co->cv);
    pthread_mutex_unlock(&co->mu);
}

/* Waits (under co->mu, which the caller holds) until pred or the timeout. */
static bool wait_locked(struct coll *co, struct timespec *deadline)
{
    return pthread_cond_timedwait(&co->cv, &co->mu, deadline) == 0;
}

static struct timespec deadline_in(int seconds)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += seconds;
    return ts;
}

static void wait_done(struct rec *r)
{
    struct timespec dl = deadline_in(WAIT_S);

    pthread_mutex_lock(&r->co->mu);
    while (r->n_done == 0)
        if (!wait_locked(r->co, &dl) && r->n_done == 0) {
            pthread_mutex_unlock(&r->co->mu);
            t_fail(__FILE__, __LINE__, "timed out waiting for DONE");
        }
    pthread_mutex_unlock(&r->co->mu);
}

/* Waits until the engine thread is blocked in r's callback at hold_at. */
static void wait_held(struct rec *r)
{
    struct timespec dl = deadline_in(WAIT_S);

    pthread_mutex_lock(&r->co->mu);
    while (!r->held)
        if (!wait_locked(r->co, &dl) && !r->held) {
            pthread_mutex_unlock(&r->co->mu);
            t_fail(__FILE__, __LINE__, "timed out waiting for token %zu", r->hold_at);
        }
    pthread_mutex_unlock(&r->co->mu);
}

static void release(struct rec *r)
{
    pthread_mutex_lock(&r->co->mu);
    r->released = true;
    pthread_cond_broadcast(&r->co->cv);
    pthread_mutex_unlock(&r->co->mu);
}

/* Checks a finished request's bookkeeping: one STARTED before tokens, one
 * DONE last with the right id and count. */
static void check_done(struct rec *r, uint64_t id, enum sched_finish finish, size_t n_prompt)
{
    ASSERT_EQ_INT(r->n_done, 1);
    ASSERT_EQ_INT(r->n_after_done, 0);
    ASSERT_EQ_INT(r->n_token_before_start, 0);
    ASSERT_EQ_INT(r->ev_id, id);
    ASSERT_EQ_INT(r->done.type, SCHED_EVENT_DONE);
    ASSERT_EQ_INT(r->done.finish, finish);
    ASSERT_EQ_SIZE(r->done.n_generated, r->n_toks);
    ASSERT_EQ_SIZE(r->done.n_prompt, n_prompt);
    if (finish == SCHED_FINISH_CANCELED) ASSERT_EQ_INT(r->done.err, SLM_ECANCELED);
    if (finish != SCHED_FINISH_ERROR && finish != SCHED_FINISH_CANCELED)
        ASSERT_EQ_INT(r->done.err, 0);
}

/* ---- helpers ---- */

static struct sched *sched_make(struct model *m, uint32_t n_slots, uint32_t n_ctx, uint32_t n_batch,
                                uint32_t n_queue_max)
{
    struct sched_params p = sched_params_default();
    struct sched *s = NULL;
    struct slm_diag d = { 0 };
    int rc;

    p.n_slots = n_slots;
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_threads = 2;
    p.n_queue_max = n_queue_max;
    rc = sched_new(m, &p, &s, &d);
    if (rc < 0) t_fail(__FILE__, __LINE__, "sched_new: %s: %s", slm_strerror(rc), d.msg);
    ASSERT_EQ_INT(sched_n_ctx(s), n_ctx);
    return s;
}

static struct sched_request greedy(const tok_id *p, size_t n, int32_t n_predict, struct rec *r)
{
    struct sched_request q;

    memset(&q, 0, sizeof(q));
    q.prompt = p;
    q.n_prompt = n;
    q.sampling = sampler_params_default();
    q.sampling.temp = 0.0f;
    q.n_predict = n_predict;
    q.cb = on_event;
    q.cb_arg = r;
    return q;
}

static uint64_t submit_ok(struct sched *s, const struct sched_request *q)
{
    struct slm_diag d = { 0 };
    uint64_t id = 0;
    int rc = sched_submit(s, q, &id, &d);

    if (rc < 0) t_fail(__FILE__, __LINE__, "sched_submit: %s: %s", slm_strerror(rc), d.msg);
    ASSERT(id != 0);
    return id;
}

/* Runs one greedy request to the end; returns its record's token count. */
static size_t run_one(struct sched *s, struct rec *r, const tok_id *p, size_t n, int32_t n_predict)
{
    struct sched_request q = greedy(p, n, n_predict, r);
    uint64_t id = submit_ok(s, &q);

    wait_done(r);
    ASSERT_EQ_INT(r->ev_id, id);
    return r->n_toks;
}

static void assert_same_tokens(const tok_id *a, size_t na, const tok_id *b, size_t nb)
{
    ASSERT_EQ_SIZE(na, nb);
    for (size_t i = 0; i < na; i++)
        if (a[i] != b[i])
            t_fail(__FILE__, __LINE__, "token %zu differs: %d != %d", i, (int)a[i], (int)b[i]);
}

/* ---- tests ---- */

TEST(sched_one_slot_matches_plain_decode_loop)
{
    static const size_t lens[] = { 5, 40, 17, 1 };
    struct model *m = load_model();
    struct sched *s = sched_make(m, 1, 256, 16, 8);
    struct coll co;
    tok_id p[64], ref[64];

    coll_init(&co);
    for (size_t k = 0; k < SLM_ARRAY_LEN(lens); k++) {
        struct rec *r = &co.rec[k];
        size_t n_ref;

        make_prompt(p, lens[k], 100 + k);
        n_ref = ref_generate(m, p, lens[k], 20, 256, NULL, ref, 64);
        ASSERT_EQ_SIZE(n_ref, 20);
        run_one(s, r, p, lens[k], 20);
        check_done(r, r->ev_id, SCHED_FINISH_LENGTH, lens[k]);
        ASSERT_EQ_INT(r->n_started, 1);
        ASSERT_EQ_SIZE(r->started.n_prompt, lens[k]);
        assert_same_tokens(r->toks, r->n_toks, ref, n_ref);
        /* The greedy run must not be trivially constant, or it would prove little. */
        if (k == 1) ASSERT(ref[0] != ref[5] || ref[1] != ref[6] || ref[2] != ref[9]);
    }
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

/*
 * E04: 8 concurrent greedy requests over 4 slots (chunked prefill with
 * n_batch 32); the odd ones are cancelled at their third token (the engine
 * is held in the callback meanwhile). Survivors give exactly their
 * single-run tokens; cancelled ones end right there with a prefix of theirs.
 */
TEST(sched_concurrent_requests_equal_single_runs_with_cancellation)
{
    enum { N = 8, GEN = 24, CTX = 160 };
    struct model *m = load_model();
    struct sched *s = sched_make(m, 4, CTX, 32, 16);
    struct coll co;
    static tok_id p[N][64], ref[N][MAX_GEN];
    size_t len[N], n_ref[N];
    uint64_t id[N];

    coll_init(&co);
    for (size_t i = 0; i < N; i++) {
        len[i] = 3 + i * 7; /* 3 .. 52 tokens: several need two or more chunks */
        make_prompt(p[i], len[i], 200 + i);
        n_ref[i] = ref_generate(m, p[i], len[i], i % 2 == 0 ? GEN : -1, CTX, NULL, ref[i], MAX_GEN);
        ASSERT_EQ_SIZE(n_ref[i], i % 2 == 0 ? GEN : CTX - len[i] + 1);
    }
    for (size_t i = 0; i < N; i++) {
        struct sched_request q = greedy(p[i], len[i], i % 2 == 0 ? GEN : -1, &co.rec[i]);
        co.rec[i].hold_at = i % 2 == 1 ? 3 : 0;
        id[i] = submit_ok(s, &q);
    }
    for (size_t i = 1; i < N; i += 2) {
        wait_held(&co.rec[i]);
        sched_cancel(s, id[i]);
        release(&co.rec[i]);
    }
    for (size_t i = 0; i < N; i++)
        wait_done(&co.rec[i]);
    for (size_t i = 0; i < N; i++) {
        struct rec *r = &co.rec[i];

        if (i % 2 == 0) {
            check_done(r, id[i], SCHED_FINISH_LENGTH, len[i]);
            assert_same_tokens(r->toks, r->n_toks, ref[i], n_ref[i]);
        } else {
            check_done(r, id[i], SCHED_FINISH_CANCELED, len[i]);
            ASSERT_EQ_SIZE(r->n_toks, 3);
            ASSERT(r->n_toks < n_ref[i]);
            assert_same_tokens(r->toks, r->n_toks, ref[i], r->n_toks);
        }
        ASSERT_EQ_INT(r->n_started, 1);
    }
    sched_free(s);
    for (size_t i = 0; i < N; i++)
        ASSERT_EQ_INT(co.rec[i].n_after_done, 0);
    /* And each survivor alone through a one-slot scheduler. */
    s = sched_make(m, 1, CTX, 32, 16);
    for (size_t i = 0; i < N; i += 2) {
        struct rec *r = &co.rec[MAX_REQ - 1 - i / 2];
        run_one(s, r, p[i], len[i], GEN);
        assert_same_tokens(r->toks, r->n_toks, co.rec[i].toks, co.rec[i].n_toks);
    }
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

/* Same seed, same prompt, temperature 1: two slots at once give the same
 * tokens, equal to a plain loop with its own sampler (one sampler per slot). */
TEST(sched_seeded_sampling_is_per_slot)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 2, 128, 32, 8);
    struct sampler_params sp = sampler_params_default();
    struct coll co;
    tok_id p[20], ref[32];
    size_t n_ref;

    sp.temp = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = 42;
    coll_init(&co);
    make_prompt(p, 20, 7);
    n_ref = ref_generate(m, p, 20, 16, 128, &sp, ref, 32);
    for (int k = 0; k < 3; k++) {
        struct sched_request q = greedy(p, 20, 16, &co.rec[k]);
        q.sampling = sp;
        (void)submit_ok(s, &q);
        if (k == 1) {
            wait_done(&co.rec[0]);
            wait_done(&co.rec[1]);
        }
    }
    wait_done(&co.rec[2]);
    for (int k = 0; k < 3; k++) {
        check_done(&co.rec[k], co.rec[k].ev_id, SCHED_FINISH_LENGTH, 20);
        assert_same_tokens(co.rec[k].toks, co.rec[k].n_toks, ref, n_ref);
    }
    /* A different seed draws a different stream (the sampler was rebuilt). */
    {
        struct sched_request q = greedy(p, 20, 16, &co.rec[3]);
        bool differ = false;
        q.sampling = sp;
        q.sampling.seed = 43;
        (void)submit_ok(s, &q);
        wait_done(&co.rec[3]);
        for (size_t i = 0; i < co.rec[3].n_toks && i < n_ref; i++)
            differ |= co.rec[3].toks[i] != ref[i];
        ASSERT(differ);
    }
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

TEST(sched_cancel_queued_request)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 1, 256, 32, 8);
    struct coll co;
    tok_id p[10];
    uint64_t a, b;

    coll_init(&co);
    make_prompt(p, 10, 5);
    {
        struct sched_request qa = greedy(p, 10, -1, &co.rec[0]);
        struct sched_request qb = greedy(p, 10, 5, &co.rec[1]);
        co.rec[0].hold_at = 1; /* A holds the engine in its callback: B stays queued */
        a = submit_ok(s, &qa);
        wait_held(&co.rec[0]);
        b = submit_ok(s, &qb);
    }
    ASSERT(b > a);
    sched_cancel(s, b);
    release(&co.rec[0]);
    wait_done(&co.rec[1]);
    check_done(&co.rec[1], b, SCHED_FINISH_CANCELED, 10);
    ASSERT_EQ_INT(co.rec[1].n_started, 0);
    ASSERT_EQ_SIZE(co.rec[1].n_toks, 0);
    sched_cancel(s, 987654); /* unknown: ignored */
    sched_cancel(s, b);      /* finished: ignored */
    sched_cancel(s, a);
    wait_done(&co.rec[0]);
    /* A runs to its context end if this thread is descheduled long enough. */
    check_done(&co.rec[0], a,
               co.rec[0].n_toks == 256 - 10 + 1 ? SCHED_FINISH_LENGTH : SCHED_FINISH_CANCELED, 10);
    ASSERT(co.rec[0].n_toks >= 1);
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

/*
 * One slot: a request sharing 30 tokens with the cached prompt decodes only
 * the rest; the same prompt again reuses all but its last token and answers
 * the same; a follow-up turn (prompt + the answer + more) reuses the answer
 * too. Outputs equal the plain loop's.
 */
TEST(sched_prefix_cache_reuses_tokens_and_matches)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 1, 256, 16, 8);
    struct coll co;
    struct sched_stats st;
    tok_id pa[48], pb[40], pd[53], ref[32];
    size_t n_ref;

    coll_init(&co);
    make_prompt(pa, 48, 11);
    run_one(s, &co.rec[0], pa, 48, 8);
    ASSERT_EQ_INT(co.rec[0].started.n_cached, 0);
    n_ref = ref_generate(m, pa, 48, 8, 256, NULL, ref, 32);
    assert_same_tokens(co.rec[0].toks, co.rec[0].n_toks, ref, n_ref);

    memcpy(pb, pa, 30 * sizeof(tok_id));
    make_prompt(pb + 30, 10, 12);
    pb[30] = (pa[30] + 1) % 256;
    run_one(s, &co.rec[1], pb, 40, 8);
    ASSERT_EQ_INT(co.rec[1].started.n_cached, 30);
    ASSERT_EQ_INT(co.rec[1].done.n_cached, 30);
    n_ref = ref_generate(m, pb, 40, 8, 256, NULL, ref, 32);
    assert_same_tokens(co.rec[1].toks, co.rec[1].n_toks, ref, n_ref);

    run_one(s, &co.rec[2], pb, 40, 8);
    ASSERT_EQ_INT(co.rec[2].started.n_cached, 39);
    assert_same_tokens(co.rec[2].toks, co.rec[2].n_toks, co.rec[1].toks, co.rec[1].n_toks);

    /* Next turn: the cache holds pb and the first 7 answer tokens (the 8th was never decoded). */
    memcpy(pd, pb, 40 * sizeof(tok_id));
    memcpy(pd + 40, co.rec[2].toks, 8 * sizeof(tok_id));
    make_prompt(pd + 48, 5, 13);
    run_one(s, &co.rec[3], pd, 53, 8);
    ASSERT_EQ_INT(co.rec[3].started.n_cached, 47);
    n_ref = ref_generate(m, pd, 53, 8, 256, NULL, ref, 32);
    assert_same_tokens(co.rec[3].toks, co.rec[3].n_toks, ref, n_ref);

    sched_get_stats(s, &st);
    ASSERT_EQ_INT(st.n_requests_done, 4);
    ASSERT_EQ_INT(st.n_prompt_tokens, 48 + 40 + 40 + 53);
    ASSERT_EQ_INT(st.n_prompt_cached, 30 + 39 + 47);
    ASSERT_EQ_INT(st.n_generated_tokens, 32);
    ASSERT_EQ_INT(st.n_slots, 1);
    ASSERT_EQ_INT(st.n_ctx, 256);
    ASSERT_EQ_INT(st.n_slots_busy, 0);
    ASSERT_EQ_INT(st.n_queued, 0);
    ASSERT(st.n_decode_steps >= 32);
    ASSERT_EQ_INT(st.n_kv_used, 53 + 7);
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

/*
 * Two slots: a "sub-agent" request sharing only a short prefix with a long
 * cached conversation goes to the empty slot (copying the short prefix), so
 * the conversation's next turn still finds its whole prefix.
 */
TEST(sched_prefix_policy_keeps_long_conversation)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 2, 256, 32, 8);
    struct coll co;
    tok_id pa[60], pq[26], pd[80], ref[32];
    size_t n_ref;

    coll_init(&co);
    make_prompt(pa, 60, 21);
    run_one(s, &co.rec[0], pa, 60, 4);
    ASSERT_EQ_INT(co.rec[0].started.n_cached, 0);

    memcpy(pq, pa, 6 * sizeof(tok_id));
    make_prompt(pq + 6, 20, 22);
    pq[6] = (pa[6] + 1) % 256;
    run_one(s, &co.rec[1], pq, 26, 6);
    ASSERT_EQ_INT(co.rec[1].started.n_cached, 6); /* copied from the conversation's slot */
    n_ref = ref_generate(m, pq, 26, 6, 256, NULL, ref, 32);
    assert_same_tokens(co.rec[1].toks, co.rec[1].n_toks, ref, n_ref);

    memcpy(pd, pa, 60 * sizeof(tok_id));
    memcpy(pd + 60, co.rec[0].toks, 4 * sizeof(tok_id));
    make_prompt(pd + 64, 6, 23);
    run_one(s, &co.rec[2], pd, 70, 6);
    ASSERT_EQ_INT(co.rec[2].started.n_cached, 63);
    n_ref = ref_generate(m, pd, 70, 6, 256, NULL, ref, 32);
    assert_same_tokens(co.rec[2].toks, co.rec[2].n_toks, ref, n_ref);
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

/* A request sharing a prefix with a slot that is still generating copies
 * that prefix (model_seq_cp) instead of decoding it. */
TEST(sched_prefix_copied_from_busy_slot)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 2, 256, 32, 8);
    struct coll co;
    tok_id pa[40], pb[33], ref[32];
    static tok_id ref_a[MAX_GEN];
    size_t n_ref, n_ref_a;
    uint64_t a;

    coll_init(&co);
    make_prompt(pa, 40, 31);
    n_ref_a = ref_generate(m, pa, 40, -1, 256, NULL, ref_a, MAX_GEN);
    ASSERT_EQ_SIZE(n_ref_a, 256 - 40 + 1);
    {
        struct sched_request qa = greedy(pa, 40, -1, &co.rec[0]);
        co.rec[0].hold_at = 2;
        a = submit_ok(s, &qa);
    }
    wait_held(&co.rec[0]);
    memcpy(pb, pa, 25 * sizeof(tok_id));
    make_prompt(pb + 25, 8, 32);
    pb[25] = (pa[25] + 1) % 256;
    {
        struct sched_request qb = greedy(pb, 33, 10, &co.rec[1]);
        (void)submit_ok(s, &qb);
    }
    release(&co.rec[0]); /* pb is queued now: it starts while A still generates */
    wait_done(&co.rec[1]);
    ASSERT_EQ_INT(co.rec[1].started.n_cached, 25);
    n_ref = ref_generate(m, pb, 33, 10, 256, NULL, ref, 32);
    assert_same_tokens(co.rec[1].toks, co.rec[1].n_toks, ref, n_ref);
    /* Slot 1 was empty, so the 25 cached tokens were copied from A's slot,
     * which was generating (A has ~200 tokens to go when pb is assigned). A
     * may run to its context end meanwhile if this thread is descheduled. */
    sched_cancel(s, a);
    wait_done(&co.rec[0]);
    check_done(&co.rec[0], a,
               co.rec[0].n_toks == 256 - 40 + 1 ? SCHED_FINISH_LENGTH : SCHED_FINISH_CANCELED, 40);
    assert_same_tokens(co.rec[0].toks, co.rec[0].n_toks, ref_a, co.rec[0].n_toks);
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

TEST(sched_n_predict_and_context_end)
{
    enum { CTX = 32 };
    struct model *m = load_model();
    struct sched *s = sched_make(m, 2, CTX, 8, 8);
    struct coll co;
    tok_id p[CTX], ref[64];
    size_t n_ref;

    coll_init(&co);
    make_prompt(p, CTX, 41);
    /* n_predict 0: the prompt is read (and cached), nothing generated. */
    run_one(s, &co.rec[0], p, 10, 0);
    check_done(&co.rec[0], co.rec[0].ev_id, SCHED_FINISH_LENGTH, 10);
    ASSERT_EQ_INT(co.rec[0].n_started, 1);
    ASSERT_EQ_SIZE(co.rec[0].n_toks, 0);
    /* n_predict 5: exactly 5. */
    run_one(s, &co.rec[1], p, 10, 5);
    check_done(&co.rec[1], co.rec[1].ev_id, SCHED_FINISH_LENGTH, 10);
    ASSERT_EQ_SIZE(co.rec[1].n_toks, 5);
    ASSERT_EQ_INT(co.rec[1].started.n_cached, 9);
    /* Unlimited: positions 0..CTX-1 are decoded, so CTX - 20 + 1 tokens. */
    run_one(s, &co.rec[2], p, 20, -1);
    check_done(&co.rec[2], co.rec[2].ev_id, SCHED_FINISH_LENGTH, 20);
    ASSERT_EQ_SIZE(co.rec[2].n_toks, CTX - 20 + 1);
    n_ref = ref_generate(m, p, 20, -1, CTX, NULL, ref, 64);
    assert_same_tokens(co.rec[2].toks, co.rec[2].n_toks, ref, n_ref);
    /* A prompt that fills the context exactly still gives one token. */
    run_one(s, &co.rec[3], p, CTX, 100);
    check_done(&co.rec[3], co.rec[3].ev_id, SCHED_FINISH_LENGTH, CTX);
    ASSERT_EQ_SIZE(co.rec[3].n_toks, 1);
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

/*
 * EOG: a model whose eos is a token the greedy run produces at step k (same
 * weights, only the eos id differs) stops there with finish EOG, without
 * reporting it; with ignore_eos it never draws an EOG token and runs to
 * n_predict.
 */
TEST(sched_eog_ends_generation_unless_ignore_eos)
{
    struct model *m0 = load_model(), *m;
    struct sched *s;
    struct coll co;
    tok_id p[30], ref[64], x = TOK_NONE;
    size_t n_ref, k = 0;

    make_prompt(p, 30, 51);
    n_ref = ref_generate(m0, p, 30, 40, 256, NULL, ref, 64);
    ASSERT_EQ_SIZE(n_ref, 40);
    for (size_t i = 2; i < n_ref && x == TOK_NONE; i++) {
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            seen |= ref[j] == ref[i];
        if (!seen) {
            x = ref[i];
            k = i;
        }
    }
    ASSERT(x != TOK_NONE);
    model_free(m0);
    m = load_model_eos(x, "eog.gguf");
    ASSERT(tokenizer_is_eog(model_get_tokenizer(m), x));
    s = sched_make(m, 2, 256, 32, 8);
    coll_init(&co);
    run_one(s, &co.rec[0], p, 30, 40);
    check_done(&co.rec[0], co.rec[0].ev_id, SCHED_FINISH_EOG, 30);
    assert_same_tokens(co.rec[0].toks, co.rec[0].n_toks, ref, k);
    {
        struct sched_request q = greedy(p, 30, (int32_t)k + 5, &co.rec[1]);
        q.ignore_eos = true;
        (void)submit_ok(s, &q);
        wait_done(&co.rec[1]);
    }
    check_done(&co.rec[1], co.rec[1].ev_id, SCHED_FINISH_LENGTH, 30);
    ASSERT_EQ_SIZE(co.rec[1].n_toks, k + 5);
    assert_same_tokens(co.rec[1].toks, k, ref, k);
    for (size_t i = 0; i < co.rec[1].n_toks; i++)
        ASSERT(!tokenizer_is_eog(model_get_tokenizer(m), co.rec[1].toks[i]));
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

TEST(sched_submit_rejects_bad_requests)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 1, 64, 16, 8);
    struct coll co;
    struct slm_diag d = { 0 };
    struct sched_request q;
    tok_id p[65];
    uint64_t id = 99;
    uint32_t n_vocab = model_get_hparams(m)->n_vocab;

    coll_init(&co);
    make_prompt(p, 65, 61);
    q = greedy(p, 65, 4, &co.rec[0]);
    ASSERT_ERR(sched_submit(s, &q, &id, &d), SLM_ERANGE);
    ASSERT_EQ_INT(id, 0);
    ASSERT(strstr(d.msg, "65") != NULL && strstr(d.msg, "64") != NULL);

    q = greedy(p, 0, 4, &co.rec[0]);
    ASSERT_ERR(sched_submit(s, &q, &id, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "empty") != NULL);

    p[3] = (tok_id)n_vocab;
    q = greedy(p, 10, 4, &co.rec[0]);
    ASSERT_ERR(sched_submit(s, &q, &id, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "prompt token 3") != NULL);
    p[3] = -1;
    ASSERT_ERR(sched_submit(s, &q, &id, &d), SLM_EINVAL);
    p[3] = 0;

    q = greedy(p, 10, 4, &co.rec[0]);
    q.sampling.top_p = 1.5f;
    ASSERT_ERR(sched_submit(s, &q, &id, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "top_p") != NULL);
    q.sampling.top_p = 1.0f;
    q.sampling.temp = NAN;
    ASSERT_ERR(sched_submit(s, &q, &id, &d), SLM_EINVAL);

    q = greedy(p, 10, 4, &co.rec[0]);
    q.cb = NULL;
    ASSERT_ERR(sched_submit(s, &q, &id, &d), SLM_EINVAL);

    /* Nothing was reported for the refused ones; a good one still runs. */
    run_one(s, &co.rec[1], p, 10, 4);
    pthread_mutex_lock(&co.mu);
    ASSERT_EQ_INT(co.rec[0].n_started + co.rec[0].n_done + (int)co.rec[0].n_toks, 0);
    ASSERT_EQ_INT(co.n_events, 1 + 4 + 1);
    pthread_mutex_unlock(&co.mu);
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

struct releaser {
    struct sched *s;
    struct rec *held;
    const tok_id *p;
    int n_accepted; /* probe requests queued before shutdown began */
    pthread_mutex_t mu;
    int n_probe_done;
};

static void on_probe(void *arg, const struct sched_event *ev)
{
    struct releaser *rl = arg;

    if (ev->type != SCHED_EVENT_DONE) return;
    pthread_mutex_lock(&rl->mu);
    rl->n_probe_done++;
    pthread_mutex_unlock(&rl->mu);
}

/* Releases the held engine once sched_free has begun (sched_submit then
 * answers SLM_ECANCELED), so every request is still in flight at shutdown. */
static void *releaser_main(void *arg)
{
    struct releaser *rl = arg;
    struct sched_request q;
    int rc;

    memset(&q, 0, sizeof(q));
    q.prompt = rl->p;
    q.n_prompt = 4;
    q.sampling = sampler_params_default();
    q.n_predict = 0;
    q.cb = on_probe;
    q.cb_arg = rl;
    for (;;) {
        uint64_t id;
        rc = sched_submit(rl->s, &q, &id, NULL);
        if (rc == SLM_ECANCELED) break;
        if (rc == 0) rl->n_accepted++;
        usleep(1000);
    }
    release(rl->held);
    return NULL;
}

/* Frees s while r holds the engine: the hold ends only once shutdown began. */
static void free_while_held(struct sched *s, struct rec *r, const tok_id *p)
{
    struct releaser rl;
    pthread_t th;

    memset(&rl, 0, sizeof(rl));
    rl.s = s;
    rl.held = r;
    rl.p = p;
    pthread_mutex_init(&rl.mu, NULL);
    ASSERT_EQ_INT(pthread_create(&th, NULL, releaser_main, &rl), 0);
    sched_free(s);
    pthread_join(th, NULL);
    ASSERT_EQ_INT(rl.n_probe_done, rl.n_accepted);
    pthread_mutex_destroy(&rl.mu);
}

/* A full queue refuses with SLM_ELIMIT; sched_free then reports DONE for
 * the running request and every queued one. */
TEST(sched_queue_full_and_free_reports_done_for_all)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 1, 256, 32, 2);
    struct coll co;
    struct slm_diag d = { 0 };
    struct sched_stats st;
    tok_id p[12];
    uint64_t id[4];

    coll_init(&co);
    make_prompt(p, 12, 71);
    co.rec[0].hold_at = 1; /* the engine waits in A's callback: B and C stay queued */
    for (int i = 0; i < 3; i++) {
        struct sched_request q = greedy(p, 12, -1, &co.rec[i]);
        id[i] = submit_ok(s, &q);
        if (i == 0) wait_held(&co.rec[0]);
    }
    {
        struct sched_request q = greedy(p, 12, -1, &co.rec[3]);
        ASSERT_ERR(sched_submit(s, &q, &id[3], &d), SLM_ELIMIT);
        ASSERT(strstr(d.msg, "queue full") != NULL);
        ASSERT_EQ_INT(id[3], 0);
    }
    sched_get_stats(s, &st);
    ASSERT_EQ_INT(st.n_queued, 2);
    ASSERT_EQ_INT(st.n_slots_busy, 1);
    free_while_held(s, &co.rec[0], p);
    for (int i = 0; i < 3; i++) {
        check_done(&co.rec[i], id[i], SCHED_FINISH_CANCELED, 12);
        ASSERT_EQ_INT(co.rec[i].n_started, i == 0 ? 1 : 0);
    }
    ASSERT(co.rec[0].n_toks >= 1);
    ASSERT_EQ_INT(co.rec[3].n_done + co.rec[3].n_started, 0);
    coll_fini(&co);
    model_free(m);
}

/* sched_free with slots mid-prompt and mid-generation and a queue. */
TEST(sched_free_with_requests_in_flight)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 3, 512, 8, 16);
    struct coll co;
    static tok_id p[200];
    uint64_t id[8];

    coll_init(&co);
    make_prompt(p, 200, 81);
    co.rec[0].hold_at = 1;
    for (int i = 0; i < 8; i++) {
        struct sched_request q = greedy(p + i, 200 - (size_t)i * 20, -1, &co.rec[i]);
        id[i] = submit_ok(s, &q);
    }
    wait_held(&co.rec[0]);
    free_while_held(s, &co.rec[0], p);
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ_INT(co.rec[i].n_done, 1);
        ASSERT_EQ_INT(co.rec[i].n_after_done, 0);
        ASSERT_EQ_INT(co.rec[i].ev_id, id[i]);
        ASSERT_EQ_INT(co.rec[i].done.finish, SCHED_FINISH_CANCELED);
        /* 1 and 2 get a slot unless A reached its hold before they were submitted. */
        if (i == 0 || i >= 3) ASSERT_EQ_INT(co.rec[i].n_started, i == 0 ? 1 : 0);
        ASSERT(co.rec[i].n_started <= 1);
    }
    coll_fini(&co);
    model_free(m);
}

TEST(sched_new_rejects_bad_params)
{
    struct model *m = load_model();
    struct sched_params p = sched_params_default();
    struct sched *s = (struct sched *)&p;
    struct slm_diag d = { 0 };

    p.n_slots = 8;
    p.n_batch = 4;
    ASSERT_ERR(sched_new(m, &p, &s, &d), SLM_EINVAL);
    ASSERT_NULL(s);
    ASSERT(strstr(d.msg, "n_batch 4") != NULL && strstr(d.msg, "n_slots 8") != NULL);
    p = sched_params_default();
    p.n_queue_max = SLM_LIMIT_SCHED_QUEUE + 1;
    ASSERT_ERR(sched_new(m, &p, &s, &d), SLM_ELIMIT);
    p = sched_params_default();
    p.n_slots = SLM_LIMIT_SEQUENCES + 1;
    p.n_batch = SLM_LIMIT_SEQUENCES + 1;
    p.n_ctx = 16;
    ASSERT_ERR(sched_new(m, &p, &s, &d), SLM_ELIMIT);
    /* Defaults: n_ctx 0 is the model's (512 here). */
    p = sched_params_default();
    p.n_slots = 1;
    p.n_threads = 1;
    ASSERT_OK(sched_new(m, &p, &s, &d));
    ASSERT_EQ_INT(sched_n_ctx(s), 512);
    sched_free(s);
    sched_free(NULL);
    model_free(m);
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* An idle scheduler sleeps: no CPU burnt while nothing is queued. */
TEST(sched_idle_uses_no_cpu)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 2, 128, 32, 8);
    struct coll co;
    tok_id p[8];
    uint64_t c0, c1;

    coll_init(&co);
    make_prompt(p, 8, 91);
    run_one(s, &co.rec[0], p, 8, 4);
    usleep(200 * 1000); /* the pool's workers stop spinning */
    c0 = cpu_ns();
    usleep(500 * 1000);
    c1 = cpu_ns();
    if (c1 - c0 > 50 * 1000000ull)
        t_fail(__FILE__, __LINE__, "idle scheduler used %.1f ms of CPU in 500 ms",
               (double)(c1 - c0) / 1e6);
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

/* Every allocation of sched_new and sched_submit may fail: a clean
 * SLM_ENOMEM (LeakSanitizer checks nothing leaks); a sampler that cannot be
 * built ends the request with ERROR, and the scheduler keeps working. */
TEST(sched_survives_allocation_failures)
{
    struct model *m = load_model();
    struct sched_params p = sched_params_default();
    struct sched *s = NULL;
    struct slm_diag d = { 0 };
    struct coll co;
    tok_id toks[6];
    uint64_t id;
    int rc = -1;

    p.n_slots = 2;
    p.n_ctx = 64;
    p.n_batch = 16;
    p.n_threads = 2;
    for (uint64_t n = 1; n < 10000 && rc < 0; n++) {
        slm_alloc_fail_at(n);
        rc = sched_new(m, &p, &s, &d);
        slm_alloc_fail_at(0);
        if (rc < 0) {
            ASSERT_NULL(s);
            ASSERT(d.msg[0] != '\0');
        }
    }
    ASSERT_OK(rc);
    coll_init(&co);
    make_prompt(toks, 6, 101);
    for (uint64_t n = 1; n <= 2; n++) {
        struct sched_request q = greedy(toks, 6, 3, &co.rec[0]);
        slm_alloc_fail_at(n);
        ASSERT_ERR(sched_submit(s, &q, &id, &d), SLM_ENOMEM);
        slm_alloc_fail_at(0);
        ASSERT_EQ_INT(id, 0);
    }
    {
        /* Allocation 1: the request, 2: the prompt, 3: the new sampler (seed 5
         * differs from the slot's sampler, so it is rebuilt). */
        struct sched_request q = greedy(toks, 6, 3, &co.rec[1]);
        q.sampling.seed = 5;
        slm_alloc_fail_at(3);
        (void)submit_ok(s, &q);
        wait_done(&co.rec[1]);
        slm_alloc_fail_at(0);
    }
    check_done(&co.rec[1], co.rec[1].ev_id, SCHED_FINISH_ERROR, 6);
    ASSERT_EQ_INT(co.rec[1].done.err, SLM_ENOMEM);
    ASSERT(strstr(co.rec[1].done.msg, "sampler") != NULL);
    run_one(s, &co.rec[2], toks, 6, 3);
    check_done(&co.rec[2], co.rec[2].ev_id, SCHED_FINISH_LENGTH, 6);
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}

/* ---- constrained decoding (sched_constraint) ---- */

struct cons {
    int mod;        /* allow ids divisible by mod (0: none) */
    size_t stop_at; /* accept says complete at this many tokens */
    size_t n_accepted;
    uint32_t n_left[MAX_GEN]; /* n_left of the first question about each token */
    bool asked[MAX_GEN];
};

static bool cons_allow(void *arg, tok_id id, uint32_t n_left)
{
    struct cons *c = arg;

    if (c->n_accepted < MAX_GEN && !c->asked[c->n_accepted]) {
        c->asked[c->n_accepted] = true;
        c->n_left[c->n_accepted] = n_left;
    }
    return c->mod > 0 && id % c->mod == 0;
}

static bool cons_accept(void *arg, tok_id id)
{
    struct cons *c = arg;

    (void)id;
    return ++c->n_accepted >= c->stop_at;
}

/* Greedy over the ids divisible by mod, decoded here token by token. */
static size_t ref_masked(struct model *m, const tok_id *p, size_t n, int mod, size_t n_out,
                         tok_id *out)
{
    struct model_context_params cp = model_context_params_default();
    struct model_context *c = NULL;
    uint32_t n_vocab = model_get_hparams(m)->n_vocab;
    struct slm_diag d = { 0 };
    int32_t pos[64], seq[64] = { 0 };
    bool want[64];
    struct model_batch b = { n, p, pos, seq, want };

    ASSERT(n <= 64);
    cp.n_ctx = 256;
    cp.n_seq = 1;
    cp.n_batch = 64;
    cp.n_threads = 1;
    ASSERT_OK(model_context_new(m, &cp, &c, &d));
    for (size_t i = 0; i < n; i++) {
        pos[i] = (int32_t)i;
        want[i] = i + 1 == n;
    }
    ASSERT_OK(model_decode(c, &b, &d));
    for (size_t k = 0; k < n_out; k++) {
        const float *l = model_logits(c, 0);
        tok_id best = TOK_NONE;
        int32_t ps = (int32_t)(n + k);
        bool w = true;
        struct model_batch one = { 1, &out[k], &ps, seq, &w };

        for (uint32_t i = 0; i < n_vocab; i += (uint32_t)mod)
            if (best == TOK_NONE || l[i] > l[best]) best = (tok_id)i;
        out[k] = best;
        if (k + 1 < n_out) ASSERT_OK(model_decode(c, &one, &d));
    }
    model_context_free(c);
    return n_out;
}

TEST(sched_constraint_filters_tokens_and_ends_when_complete)
{
    struct model *m = load_model();
    struct sched *s = sched_make(m, 2, 256, 32, 8);
    struct coll co;
    struct cons c1 = { .mod = 3, .stop_at = 6 }, c2 = { .mod = 0, .stop_at = 100 };
    tok_id p[20], ref[8];
    struct sched_request q;

    make_prompt(p, 20, 77);
    coll_init(&co);
    q = greedy(p, 20, 10, &co.rec[0]);
    q.constraint.allow = cons_allow;
    q.constraint.accept = cons_accept;
    q.constraint.arg = &c1;
    (void)submit_ok(s, &q);
    wait_done(&co.rec[0]);
    /* complete after 6 tokens: DONE/EOG although n_predict is 10 */
    check_done(&co.rec[0], co.rec[0].ev_id, SCHED_FINISH_EOG, 20);
    ASSERT_EQ_SIZE(co.rec[0].n_toks, 6);
    ASSERT_EQ_SIZE(c1.n_accepted, 6);
    ref_masked(m, p, 20, 3, 6, ref);
    assert_same_tokens(co.rec[0].toks, 6, ref, 6);
    /* the budget after each token: n_predict - k - 1 */
    for (size_t k = 0; k < 6; k++) {
        ASSERT(c1.asked[k]);
        ASSERT_EQ_INT(c1.n_left[k], 10 - (int)k - 1);
    }
    /* a filter that allows nothing ends the request with an error */
    q = greedy(p, 20, 10, &co.rec[1]);
    q.constraint.allow = cons_allow;
    q.constraint.accept = cons_accept;
    q.constraint.arg = &c2;
    (void)submit_ok(s, &q);
    wait_done(&co.rec[1]);
    ASSERT_EQ_INT(co.rec[1].done.finish, SCHED_FINISH_ERROR);
    ASSERT(strstr(co.rec[1].done.msg, "constrained decoding") != NULL);
    ASSERT_EQ_SIZE(co.rec[1].n_toks, 0);
    sched_free(s);
    coll_fini(&co);
    model_free(m);
}
