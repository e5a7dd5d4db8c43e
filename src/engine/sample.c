/*
 * sample.c - the sampler chain: penalties, top-k, top-p, min-p, temperature,
 * seeded draw (llama.cpp's default order and arithmetic).
 *
 * Candidates are (logit, id) pairs ordered by logit, ties broken by the lower
 * id, so every selection below is a total order and the same logits give the
 * same tokens on every machine. Scratch (the candidate array, the penalty
 * window and its per-token counts) is allocated in sampler_new; sampling
 * itself only reads the logits and writes that scratch.
 *
 * Cost per token: one pass over the vocabulary; top-k keeps a heap of k
 * candidates (O(n log k)); top-p without top-k heapifies the min-p survivors
 * in O(n) and pops only the tokens it keeps.
 */
#include "engine/sample.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/rand.h"
#include "core/str.h"

struct cand {
    float logit;
    tok_id id;
};

struct sampler {
    struct sampler_params p;
    size_t n_vocab;
    uint64_t seed; /* the seed in use (drawn if p.seed is SAMPLER_SEED_RANDOM) */
    struct slm_rng rng;
    struct cand *cand; /* n_vocab entries */
    /* Penalty window: the last repeat_last_n accepted ids (a ring) and counts. */
    tok_id *ring;
    size_t ring_cap, ring_len, ring_head;
    uint32_t *counts; /* n_vocab entries, NULL when the window is off */
    bool penalties_on;
};

/* The defaults of llama-cli (common_params_sampling). */
struct sampler_params sampler_params_default(void)
{
    struct sampler_params p = {
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .seed = SAMPLER_SEED_RANDOM,
    };
    return p;
}

/* Checks that v is finite and in [lo, hi]; fills d naming field otherwise. */
static int check_float(struct slm_diag *d, const char *field, float v, double lo, double hi)
{
    if (isnan(v) || isinf(v) || (double)v < lo || (double)v > hi)
        return slm_diag_set(d, SLM_EINVAL, "%s must be a number in [%g, %g], got %g", field, lo, hi,
                            (double)v);
    return 0;
}

/*
 * Validates every field (T07): returns 0, or SLM_EINVAL with a message naming
 * the first bad field and its value.
 */
int sampler_params_check(const struct sampler_params *p, struct slm_diag *d)
{
    int rc;

    if (isnan(p->temp) || isinf(p->temp) || p->temp < 0.0f)
        return slm_diag_set(d, SLM_EINVAL, "temperature must be a finite number >= 0, got %g",
                            (double)p->temp);
    if (p->top_k < 0)
        return slm_diag_set(d, SLM_EINVAL, "top_k must be >= 0 (0 turns it off), got %d",
                            (int)p->top_k);
    if ((rc = check_float(d, "top_p", p->top_p, 0.0, 1.0)) < 0) return rc;
    if ((rc = check_float(d, "min_p", p->min_p, 0.0, 1.0)) < 0) return rc;
    if (isnan(p->repeat_penalty) || isinf(p->repeat_penalty) || p->repeat_penalty <= 0.0f ||
        p->repeat_penalty > SAMPLER_PENALTY_MAX)
        return slm_diag_set(d, SLM_EINVAL, "repeat_penalty must be in (0, %g], got %g",
                            (double)SAMPLER_PENALTY_MAX, (double)p->repeat_penalty);
    if (p->repeat_last_n < 0 || (uint64_t)p->repeat_last_n > SLM_LIMIT_CONTEXT)
        return slm_diag_set(d, SLM_EINVAL, "repeat_last_n must be in [0, %u], got %d",
                            (unsigned)SLM_LIMIT_CONTEXT, (int)p->repeat_last_n);
    if ((rc = check_float(d, "presence_penalty", p->presence_penalty, -2.0, 2.0)) < 0) return rc;
    if ((rc = check_float(d, "frequency_penalty", p->frequency_penalty, -2.0, 2.0)) < 0) return rc;
    return 0;
}

/*
 * Creates a sampler for a vocabulary of n_vocab tokens. Returns new (free with
 * sampler_free), or NULL if the parameters are invalid, n_vocab is 0 or above
 * the limit, or memory runs out.
 */
struct sampler *sampler_new(const struct sampler_params *p, size_t n_vocab)
{
    struct sampler *s;

    if (p == NULL || n_vocab == 0 || n_vocab > SLM_LIMIT_VOCAB || sampler_params_check(p, NULL))
        return NULL;
    s = slm_calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = slm_calloc(n_vocab, sizeof(*s->cand));
    if (s->cand == NULL) goto fail;
    s->penalties_on =
        p->repeat_last_n > 0 &&
        (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
    if (s->penalties_on) {
        s->ring_cap = (size_t)p->repeat_last_n;
        s->ring = slm_calloc(s->ring_cap, sizeof(*s->ring));
        s->counts = slm_calloc(n_vocab, sizeof(*s->counts));
        if (s->ring == NULL || s->counts == NULL) goto fail;
    }
    s->seed = p->seed;
    if (s->seed == SAMPLER_SEED_RANDOM) {
        /* A failing getrandom still leaves a varying seed: clock and pid. */
        if (slm_random_bytes(&s->seed, sizeof(s->seed)) < 0)
            s->seed = slm_now_ns() ^ ((uint64_t)getpid() << 32);
    }
    slm_rng_seed(&s->rng, s->seed);
    return s;
fail:
    sampler_free(s);
    return NULL;
}

/* Frees s and its scratch; NULL is a no-op. */
void sampler_free(struct sampler *s)
{
    if (s == NULL) return;
    slm_free(s->cand);
    slm_free(s->ring);
    slm_free(s->counts);
    slm_free(s);
}

/* Returns the seed in use. */
uint64_t sampler_get_seed(const struct sampler *s)
{
    return s->seed;
}

/* Forgets the penalty window and restarts the PRNG from the seed. */
void sampler_reset(struct sampler *s)
{
    if (s->counts != NULL) memset(s->counts, 0, s->n_vocab * sizeof(*s->counts));
    s->ring_len = 0;
    s->ring_head = 0;
    slm_rng_seed(&s->rng, s->seed);
}

/* Records id in the penalty window, dropping the oldest entry when full. */
void sampler_accept(struct sampler *s, tok_id id)
{
    if (!s->penalties_on || id < 0 || (size_t)id >= s->n_vocab) return;
    if (s->ring_len == s->ring_cap) {
        tok_id old = s->ring[s->ring_head];

        s->counts[old]--;
        s->ring[s->ring_head] = id;
        s->ring_head = (s->ring_head + 1) % s->ring_cap;
    } else {
        s->ring[(s->ring_head + s->ring_len) % s->ring_cap] = id;
        s->ring_len++;
    }
    s->counts[id]++;
}

/* ---- candidate ordering and heaps ---- */

/* a comes before b: higher logit, or the same logit and a lower id. */
static inline bool cand_better(const struct cand *a, const struct cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static inline void cand_swap(struct cand *a, struct cand *b)
{
    struct cand t = *a;

    *a = *b;
    *b = t;
}

/* Sift-down for a heap whose root is its worst element (top-k selection). */
static void heap_worst_down(struct cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;

        if (l < n && cand_better(&h[w], &h[l])) w = l;
        if (r < n && cand_better(&h[w], &h[r])) w = r;
        if (w == i) return;
        cand_swap(&h[i], &h[w]);
        i = w;
    }
}

/* Sift-down for a heap whose root is its best element (top-p popping). */
static void heap_best_down(struct cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, b = i;

        if (l < n && cand_better(&h[l], &h[b])) b = l;
        if (r < n && cand_better(&h[r], &h[b])) b = r;
        if (b == i) return;
        cand_swap(&h[i], &h[b]);
        i = b;
    }
}

/* The logit of token i after the penalties (NaN counts as -inf). */
static inline float penalized_logit(const struct sampler *s, const float *logits, size_t i)
{
    float l = logits[i];

    if (isnan(l)) return -INFINITY;
    if (s->penalties_on && s->counts[i] > 0) {
        uint32_t c = s->counts[i];

        if (l <= 0.0f)
            l *= s->p.repeat_penalty;
        else
            l /= s->p.repeat_penalty;
        l -= (float)c * s->p.frequency_penalty + s->p.presence_penalty;
    }
    return l;
}

/* Greedy: the highest penalized logit, ties to the lowest id. */
static tok_id sample_greedy(const struct sampler *s, const float *logits)
{
    size_t best = 0;
    float best_l = penalized_logit(s, logits, 0);

    for (size_t i = 1; i < s->n_vocab; i++) {
        float l = penalized_logit(s, logits, i);

        if (l > best_l) {
            best_l = l;
            best = i;
        }
    }
    return (tok_id)best;
}

/*
 * Fills s->cand with the candidates after penalties and top-k; returns their
 * number. With top-k on, the k best are kept through a worst-at-root heap.
 */
static size_t collect_candidates(struct sampler *s, const float *logits)
{
    struct cand *c = s->cand;
    size_t n = s->n_vocab;
    size_t k = (s->p.top_k > 0 && (size_t)s->p.top_k < n) ? (size_t)s->p.top_k : n;

    if (k == n) {
        for (size_t i = 0; i < n; i++) {
            c[i].logit = penalized_logit(s, logits, i);
            c[i].id = (tok_id)i;
        }
        return n;
    }
    for (size_t i = 0; i < k; i++) {
        c[i].logit = penalized_logit(s, logits, i);
        c[i].id = (tok_id)i;
    }
    for (size_t i = k / 2; i-- > 0;)
        heap_worst_down(c, k, i);
    for (size_t i = k; i < n; i++) {
        struct cand x = { penalized_logit(s, logits, i), (tok_id)i };

        if (cand_better(&x, &c[0])) {
            c[0] = x;
            heap_worst_down(c, k, 0);
        }
    }
    return k;
}

/*
 * The best token the filter allows, over the whole vocabulary: a best-at-
 * root heap of every candidate, popped until the filter says yes (tokens
 * with logit -inf are asked too, last; refused, already asked, is not asked
 * again). TOK_NONE if it allows none.
 */
static tok_id best_allowed(struct sampler *s, const float *logits, sampler_filter_fn *ok, void *arg,
                           tok_id refused)
{
    struct cand *c = s->cand;
    size_t n = s->n_vocab;

    for (size_t i = 0; i < n; i++) {
        c[i].logit = penalized_logit(s, logits, i);
        c[i].id = (tok_id)i;
    }
    for (size_t i = n / 2; i-- > 0;)
        heap_best_down(c, n, i);
    while (n > 0) {
        tok_id id = c[0].id;

        if (id != refused && ok(arg, id)) return id;
        n--;
        cand_swap(&c[0], &c[n]);
        heap_best_down(c, n, 0);
    }
    return TOK_NONE;
}

/*
 * Keeps the survivors set[0..*m) that the filter allows, asking them best
 * first (at most SAMPLER_FILTER_MAX). Returns the allowed ones, best last,
 * at the end of the range; their count in *m.
 */
static struct cand *filter_set(struct cand *set, size_t *m, sampler_filter_fn *ok, void *arg)
{
    size_t n = *m, n_heap = n, kept = 0, asked = 0;

    for (size_t i = n / 2; i-- > 0;)
        heap_best_down(set, n, i);
    while (n_heap > 0 && asked < SAMPLER_FILTER_MAX) {
        struct cand top = set[0];

        n_heap--;
        cand_swap(&set[0], &set[n_heap]);
        heap_best_down(set, n_heap, 0);
        asked++;
        /* Slot n - 1 - kept holds a token already asked: reuse it. */
        if (ok(arg, top.id)) set[n - 1 - kept++] = top;
    }
    *m = kept;
    return set + (n - kept);
}

/*
 * The chain: penalties, top-k, top-p, min-p, temperature, draw; with a
 * filter (ok != NULL) the survivors are filtered before the draw.
 */
static tok_id sample_impl(struct sampler *s, const float *logits, sampler_filter_fn *ok, void *arg)
{
    struct cand *set = s->cand;
    size_t m, best = 0;
    float max_l;
    double sum = 0.0, target, cum;

    if (s->p.temp <= 0.0f) {
        tok_id t = sample_greedy(s, logits);

        return ok == NULL || ok(arg, t) ? t : best_allowed(s, logits, ok, arg, t);
    }

    m = collect_candidates(s, logits);
    for (size_t i = 1; i < m; i++)
        if (cand_better(&set[i], &set[best])) best = i;
    max_l = set[best].logit;
    if (!(max_l > -INFINITY)) {
        /* nothing has any probability: the lowest id */
        return ok == NULL ? set[best].id : best_allowed(s, logits, ok, arg, TOK_NONE);
    }

    /* Softmax denominator over the top-k set (probabilities before temperature). */
    for (size_t i = 0; i < m; i++)
        sum += exp((double)set[i].logit - (double)max_l);

    /* min-p: keep p_i >= min_p * p_max, i.e. logit >= max + log(min_p). */
    if (s->p.min_p > 0.0f) {
        const float min_logit = max_l + logf(s->p.min_p);
        size_t kept = 0;

        for (size_t i = 0; i < m; i++)
            if (set[i].logit >= min_logit) set[kept++] = set[i];
        m = kept; /* the best token always survives */
    }

    /*
     * top-p: the shortest best-first prefix whose probability reaches top_p.
     * min-p and top-p both keep a best-first prefix and min-p keeps the
     * probabilities top-p measured, so applying min-p first and cutting its
     * survivors gives llama.cpp's top-p-then-min-p result. The survivors form
     * a best-at-root heap; popped tokens collect at its end, best last.
     */
    if (s->p.top_p < 1.0f && m > 1) {
        size_t n_heap = m;

        for (size_t i = m / 2; i-- > 0;)
            heap_best_down(set, m, i);
        cum = 0.0;
        while (n_heap > 0) {
            cum += exp((double)set[0].logit - (double)max_l) / sum;
            n_heap--;
            cand_swap(&set[0], &set[n_heap]);
            heap_best_down(set, n_heap, 0);
            if (cum >= (double)s->p.top_p) break;
        }
        set += n_heap;
        m -= n_heap;
    }

    if (ok != NULL) {
        set = filter_set(set, &m, ok, arg);
        if (m == 0) return best_allowed(s, logits, ok, arg, TOK_NONE);
        best = m - 1;
        max_l = set[best].logit;
    }

    /* Temperature, then the draw; the best token is still in the set. */
    sum = 0.0;
    for (size_t i = 0; i < m; i++)
        sum += exp(((double)set[i].logit - (double)max_l) / (double)s->p.temp);
    target = (double)(slm_rng_next(&s->rng) >> 11) * (1.0 / 9007199254740992.0) * sum;
    cum = 0.0;
    for (size_t i = 0; i < m; i++) {
        double w = exp(((double)set[i].logit - (double)max_l) / (double)s->p.temp);

        cum += w;
        if (target < cum) return set[i].id;
        if (w > 0.0) best = i;
    }
    return set[best].id; /* rounding left target at the very end */
}

/*
 * Samples one token: penalties, top-k, top-p, min-p, temperature, draw.
 * Allocates nothing; logits are borrowed and not modified.
 */
tok_id sampler_sample(struct sampler *s, const float *logits)
{
    return sample_impl(s, logits, NULL, NULL);
}

/* Samples one token among those ok allows; see sample.h. */
tok_id sampler_sample_filtered(struct sampler *s, const float *logits, sampler_filter_fn *ok,
                               void *arg)
{
    return sample_impl(s, logits, ok, arg);
}
