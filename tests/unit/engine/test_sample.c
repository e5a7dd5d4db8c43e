/*
 * test_sample.c - the sampler chain against hand-computed distributions.
 *
 * Each stage is checked by drawing N_DRAWS tokens with a fixed seed and
 * comparing the observed frequencies with probabilities computed here in
 * double precision from the definitions (llama.cpp's llama-sampler.cpp):
 * every frequency must lie within 5 standard deviations of a binomial
 * proportion, and tokens the stage removes must never be drawn.
 */
#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/rand.h"
#include "engine/sample.h"
#include "harness/t.h"

#define N_DRAWS 100000
#define MAX_V   16

/* Parameters with every stage off: plain softmax sampling at temperature 1. */
static struct sampler_params plain_params(uint64_t seed)
{
    struct sampler_params p = sampler_params_default();

    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

/* Softmax of l[0..n) at temperature t over the tokens with keep[i]. */
static void softmax_ref(const double *l, const bool *keep, size_t n, double t, double *p)
{
    double mx = -INFINITY, sum = 0.0;

    for (size_t i = 0; i < n; i++)
        if (keep[i] && l[i] > mx) mx = l[i];
    for (size_t i = 0; i < n; i++) {
        p[i] = keep[i] ? exp((l[i] - mx) / t) : 0.0;
        sum += p[i];
    }
    for (size_t i = 0; i < n; i++)
        p[i] /= sum;
}

/* Draws N_DRAWS tokens from s on logits and checks them against expected p. */
static void check_freqs(struct sampler *s, const float *logits, size_t n, const double *p)
{
    size_t hist[MAX_V] = { 0 };

    for (int i = 0; i < N_DRAWS; i++) {
        tok_id id = sampler_sample(s, logits);

        ASSERT(id >= 0 && (size_t)id < n);
        hist[id]++;
    }
    for (size_t i = 0; i < n; i++) {
        double f = (double)hist[i] / N_DRAWS;
        double sd = sqrt(p[i] * (1.0 - p[i]) / N_DRAWS);

        if (p[i] == 0.0) {
            if (hist[i] != 0)
                t_fail(__FILE__, __LINE__, "token %zu removed but drawn %zu times", i, hist[i]);
        } else if (fabs(f - p[i]) > 5.0 * sd + 1e-9) {
            t_fail(__FILE__, __LINE__, "token %zu: frequency %.5f, expected %.5f (sd %.5f)", i, f,
                   p[i], sd);
        }
    }
}

static const float logits5[5] = { 1.0f, 2.0f, 0.5f, -1.0f, 1.5f };

TEST(sample_plain_softmax_frequencies)
{
    struct sampler_params sp = plain_params(42);
    struct sampler *s = sampler_new(&sp, 5);
    double l[5], p[5];
    bool keep[5] = { true, true, true, true, true };

    ASSERT_NOT_NULL(s);
    for (int i = 0; i < 5; i++)
        l[i] = logits5[i];
    softmax_ref(l, keep, 5, 1.0, p);
    check_freqs(s, logits5, 5, p);
    sampler_free(s);
}

TEST(sample_temperature_frequencies)
{
    struct sampler_params sp = plain_params(7);
    double l[5], p[5];
    bool keep[5] = { true, true, true, true, true };
    struct sampler *s;

    for (int i = 0; i < 5; i++)
        l[i] = logits5[i];
    /* Hot: flatter than softmax. */
    sp.temp = 2.5f;
    s = sampler_new(&sp, 5);
    ASSERT_NOT_NULL(s);
    softmax_ref(l, keep, 5, 2.5, p);
    check_freqs(s, logits5, 5, p);
    sampler_free(s);
    /* Cold: sharper. */
    sp.temp = 0.3f;
    s = sampler_new(&sp, 5);
    ASSERT_NOT_NULL(s);
    softmax_ref(l, keep, 5, 0.3, p);
    check_freqs(s, logits5, 5, p);
    sampler_free(s);
}

TEST(sample_top_k_frequencies)
{
    struct sampler_params sp = plain_params(3);
    double l[5], p[5];
    /* Sorted: 1 (2.0), 4 (1.5), 0 (1.0), 2 (0.5), 3 (-1.0); k = 3. */
    bool keep[5] = { true, true, false, false, true };
    struct sampler *s;

    sp.top_k = 3;
    s = sampler_new(&sp, 5);
    ASSERT_NOT_NULL(s);
    for (int i = 0; i < 5; i++)
        l[i] = logits5[i];
    softmax_ref(l, keep, 5, 1.0, p);
    check_freqs(s, logits5, 5, p);
    sampler_free(s);
}

/* Logits whose softmax is exactly probs (up to a constant). */
static void logits_from_probs(const double *probs, size_t n, float *logits, double *l)
{
    for (size_t i = 0; i < n; i++) {
        logits[i] = (float)log(probs[i]);
        l[i] = logits[i];
    }
}

TEST(sample_top_p_frequencies)
{
    const double probs[6] = { 0.05, 0.30, 0.04, 0.50, 0.10, 0.01 };
    float logits[6];
    double l[6], p[6];
    struct sampler_params sp = plain_params(11);
    struct sampler *s;

    logits_from_probs(probs, 6, logits, l);
    /* 0.50 + 0.30 = 0.80 >= 0.75: keep tokens 3 and 1. */
    sp.top_p = 0.75f;
    s = sampler_new(&sp, 6);
    ASSERT_NOT_NULL(s);
    {
        bool keep[6] = { false, true, false, true, false, false };

        softmax_ref(l, keep, 6, 1.0, p);
    }
    ASSERT_NEAR(p[3], 0.625, 1e-6);
    check_freqs(s, logits, 6, p);
    sampler_free(s);
    /* 0.5 + 0.3 + 0.1 = 0.9 >= 0.85 but 0.8 < 0.85: three tokens. */
    sp.top_p = 0.85f;
    s = sampler_new(&sp, 6);
    ASSERT_NOT_NULL(s);
    {
        bool keep[6] = { false, true, false, true, true, false };

        softmax_ref(l, keep, 6, 1.0, p);
    }
    check_freqs(s, logits, 6, p);
    sampler_free(s);
    /*
     * top-p measures probabilities before temperature: at temperature 0.5
     * the best token alone would have 0.706 >= 0.7, but before it 0.5 < 0.7,
     * so two tokens stay, drawn with the tempered weights.
     */
    sp.top_p = 0.7f;
    sp.temp = 0.5f;
    s = sampler_new(&sp, 6);
    ASSERT_NOT_NULL(s);
    {
        bool keep[6] = { false, true, false, true, false, false };

        softmax_ref(l, keep, 6, 0.5, p);
    }
    check_freqs(s, logits, 6, p);
    sampler_free(s);
    sp.temp = 1.0f;
    /* top_p 0 keeps only the most likely token. */
    sp.top_p = 0.0f;
    s = sampler_new(&sp, 6);
    ASSERT_NOT_NULL(s);
    for (int i = 0; i < 100; i++)
        ASSERT_EQ_INT(sampler_sample(s, logits), 3);
    sampler_free(s);
}

TEST(sample_min_p_frequencies)
{
    const double probs[6] = { 0.05, 0.30, 0.04, 0.50, 0.10, 0.01 };
    float logits[6];
    double l[6], p[6];
    struct sampler_params sp = plain_params(13);
    struct sampler *s;
    /* min_p 0.15: keep p >= 0.075, i.e. 0.50, 0.30, 0.10. */
    bool keep[6] = { false, true, false, true, true, false };

    logits_from_probs(probs, 6, logits, l);
    sp.min_p = 0.15f;
    s = sampler_new(&sp, 6);
    ASSERT_NOT_NULL(s);
    softmax_ref(l, keep, 6, 1.0, p);
    check_freqs(s, logits, 6, p);
    sampler_free(s);
}

/*
 * The whole chain in llama.cpp's order: top-k 4 leaves {0.5, 0.3, 0.1,
 * 0.05}, renormalised by 0.95; top-p 0.9 needs 0.5/0.95 + 0.3/0.95 + 0.1/0.95
 * = 0.947; min-p 0.25 then drops 0.1 (< 0.25 * 0.5); temperature 0.7 last.
 */
TEST(sample_chain_order_frequencies)
{
    const double probs[6] = { 0.05, 0.30, 0.04, 0.50, 0.10, 0.01 };
    float logits[6];
    double l[6], p[6];
    struct sampler_params sp = plain_params(17);
    struct sampler *s;
    bool keep[6] = { false, true, false, true, false, false };

    logits_from_probs(probs, 6, logits, l);
    sp.top_k = 4;
    sp.top_p = 0.9f;
    sp.min_p = 0.25f;
    sp.temp = 0.7f;
    s = sampler_new(&sp, 6);
    ASSERT_NOT_NULL(s);
    softmax_ref(l, keep, 6, 0.7, p);
    check_freqs(s, logits, 6, p);
    sampler_free(s);
    /*
     * top-p measures probabilities after top-k: on the full vocabulary
     * 0.5 + 0.3 = 0.8 < 0.85 needs a third token, but after top-k 3 the
     * renormalised 0.556 + 0.333 = 0.889 >= 0.85 keeps two.
     */
    sp.top_k = 3;
    sp.top_p = 0.85f;
    sp.min_p = 0.0f;
    sp.temp = 1.0f;
    s = sampler_new(&sp, 6);
    ASSERT_NOT_NULL(s);
    softmax_ref(l, keep, 6, 1.0, p);
    check_freqs(s, logits, 6, p);
    sampler_free(s);
}

/*
 * Penalties as llama.cpp defines them: a token seen c > 0 times in the window
 * gets logit / rp if logit > 0, logit * rp if logit <= 0, then minus
 * c * freq + presence.
 */
TEST(sample_penalties_math)
{
    const float logits[4] = { 1.0f, 0.5f, -0.5f, 0.0f };
    double l[4], p[4];
    bool keep[4] = { true, true, true, true };
    struct sampler_params sp = plain_params(19);
    struct sampler *s;

    sp.repeat_penalty = 2.0f;
    sp.frequency_penalty = 0.1f;
    sp.presence_penalty = 0.2f;
    sp.repeat_last_n = 8;
    s = sampler_new(&sp, 4);
    ASSERT_NOT_NULL(s);
    sampler_accept(s, 0);
    sampler_accept(s, 2);
    sampler_accept(s, 0);
    l[0] = 1.0 / 2.0 - 2 * 0.1 - 0.2;  /* 0.1 */
    l[1] = 0.5;                        /* not seen */
    l[2] = -0.5 * 2.0 - 1 * 0.1 - 0.2; /* -1.3 */
    l[3] = 0.0;
    softmax_ref(l, keep, 4, 1.0, p);
    check_freqs(s, logits, 4, p);
    sampler_free(s);
}

TEST(sample_penalty_window_slides)
{
    const float logits[3] = { 3.0f, 2.0f, 1.0f };
    struct sampler_params sp = plain_params(1);
    struct sampler *s;

    sp.temp = 0.0f;
    sp.repeat_penalty = 10.0f;
    sp.repeat_last_n = 2;
    s = sampler_new(&sp, 3);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ_INT(sampler_sample(s, logits), 0);
    sampler_accept(s, 0); /* 0 -> 0.3 */
    ASSERT_EQ_INT(sampler_sample(s, logits), 1);
    sampler_accept(s, 1); /* window {0, 1}: 0.3, 0.2 -> 2 wins */
    ASSERT_EQ_INT(sampler_sample(s, logits), 2);
    sampler_accept(s, 2); /* window {1, 2}: 0 is free again */
    ASSERT_EQ_INT(sampler_sample(s, logits), 0);
    sampler_accept(s, -1);   /* ignored */
    sampler_accept(s, 1000); /* ignored */
    ASSERT_EQ_INT(sampler_sample(s, logits), 0);
    sampler_reset(s); /* forgets the window */
    ASSERT_EQ_INT(sampler_sample(s, logits), 0);
    sampler_free(s);
}

TEST(sample_negative_logit_penalty_multiplies)
{
    /* Token 0 at -0.4 with penalty 3 becomes -1.2, below token 1 at -1.0. */
    const float logits[2] = { -0.4f, -1.0f };
    struct sampler_params sp = plain_params(1);
    struct sampler *s;

    sp.temp = 0.0f;
    sp.repeat_penalty = 3.0f;
    s = sampler_new(&sp, 2);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ_INT(sampler_sample(s, logits), 0);
    sampler_accept(s, 0);
    ASSERT_EQ_INT(sampler_sample(s, logits), 1);
    sampler_free(s);
}

TEST(sample_greedy_ties_lowest_id)
{
    const float logits[6] = { 0.0f, 5.0f, 1.0f, 5.0f, NAN, 5.0f };
    struct sampler_params sp = plain_params(1);
    struct sampler *s;

    sp.temp = 0.0f;
    s = sampler_new(&sp, 6);
    ASSERT_NOT_NULL(s);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ_INT(sampler_sample(s, logits), 1);
    sampler_free(s);
    /* top_k 1 with a temperature is greedy too, with the same tie rule. */
    sp.temp = 1.0f;
    sp.top_k = 1;
    s = sampler_new(&sp, 6);
    ASSERT_NOT_NULL(s);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ_INT(sampler_sample(s, logits), 1);
    sampler_free(s);
}

TEST(sample_degenerate_logits)
{
    float logits[4] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    struct sampler_params sp = plain_params(5);
    struct sampler *s = sampler_new(&sp, 4);

    ASSERT_NOT_NULL(s);
    ASSERT_EQ_INT(sampler_sample(s, logits), 0);
    logits[0] = NAN;
    logits[1] = NAN;
    logits[2] = NAN;
    logits[3] = NAN;
    ASSERT_EQ_INT(sampler_sample(s, logits), 0);
    /* One finite logit among -inf and NaN always wins. */
    logits[2] = -1e30f;
    for (int i = 0; i < 100; i++)
        ASSERT_EQ_INT(sampler_sample(s, logits), 2);
    /* Extreme temperatures stay finite. */
    sampler_free(s);
    sp.temp = 1e-30f;
    s = sampler_new(&sp, 4);
    ASSERT_NOT_NULL(s);
    logits[0] = 3e38f;
    logits[1] = -3e38f;
    ASSERT_EQ_INT(sampler_sample(s, logits), 0);
    sampler_free(s);
    sp.temp = 1e30f;
    s = sampler_new(&sp, 4);
    ASSERT_NOT_NULL(s);
    for (int i = 0; i < 100; i++) {
        tok_id id = sampler_sample(s, logits);

        ASSERT(id == 0 || id == 1 || id == 2);
    }
    sampler_free(s);
}

/* A larger vocabulary: every drawn token is in the set a sort computes. */
static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;

    return (x < y) - (x > y);
}

TEST(sample_large_vocab_sets_match_sort)
{
    enum { N = 5000 };
    static float logits[N], sorted[N];
    struct slm_rng r;
    struct sampler_params sp = plain_params(23);
    struct sampler *s;
    double sum = 0.0, cum = 0.0, mx;
    float kth, topp_min;

    slm_rng_seed(&r, 99);
    for (int i = 0; i < N; i++)
        logits[i] = 3.0f * slm_rng_normal(&r);
    memcpy(sorted, logits, sizeof(logits));
    qsort(sorted, N, sizeof(float), cmp_desc);
    kth = sorted[49];
    /* top-p 0.9 over the whole vocabulary, by the definition. */
    mx = sorted[0];
    for (int i = 0; i < N; i++)
        sum += exp(sorted[i] - mx);
    topp_min = sorted[N - 1];
    for (int i = 0; i < N; i++) {
        cum += exp(sorted[i] - mx) / sum;
        if (cum >= 0.9) {
            topp_min = sorted[i];
            break;
        }
    }
    sp.top_k = 50;
    s = sampler_new(&sp, N);
    ASSERT_NOT_NULL(s);
    for (int i = 0; i < 20000; i++)
        ASSERT(logits[sampler_sample(s, logits)] >= kth);
    sampler_free(s);
    sp.top_k = 0;
    sp.top_p = 0.9f;
    s = sampler_new(&sp, N);
    ASSERT_NOT_NULL(s);
    for (int i = 0; i < 20000; i++)
        ASSERT(logits[sampler_sample(s, logits)] >= topp_min);
    sampler_free(s);
}

TEST(sample_same_seed_same_tokens)
{
    enum { N = 300, STEPS = 200 };
    static float logits[N];
    struct slm_rng r;
    struct sampler_params sp = sampler_params_default();
    struct sampler *a, *b, *c;
    tok_id seq_a[STEPS];
    int differ = 0;

    slm_rng_seed(&r, 5);
    for (int i = 0; i < N; i++)
        logits[i] = slm_rng_normal(&r);
    sp.seed = 1234;
    sp.temp = 1.5f;
    sp.top_k = 0;
    sp.min_p = 0.0f;
    sp.repeat_penalty = 1.1f;
    a = sampler_new(&sp, N);
    b = sampler_new(&sp, N);
    sp.seed = 1235;
    c = sampler_new(&sp, N);
    ASSERT(a != NULL && b != NULL && c != NULL);
    ASSERT_EQ_INT(sampler_get_seed(a), 1234);
    for (int i = 0; i < STEPS; i++) {
        tok_id x = sampler_sample(a, logits), y = sampler_sample(b, logits);
        tok_id z = sampler_sample(c, logits);

        ASSERT_EQ_INT(x, y);
        differ += x != z;
        seq_a[i] = x;
        sampler_accept(a, x);
        sampler_accept(b, y);
        sampler_accept(c, z);
    }
    ASSERT(differ > STEPS / 2);
    /* reset replays the same sequence. */
    sampler_reset(a);
    for (int i = 0; i < STEPS; i++) {
        tok_id x = sampler_sample(a, logits);

        ASSERT_EQ_INT(x, seq_a[i]);
        sampler_accept(a, x);
    }
    sampler_free(a);
    sampler_free(b);
    sampler_free(c);
}

TEST(sample_random_seed_is_reported)
{
    struct sampler_params sp = sampler_params_default();
    struct sampler *a = sampler_new(&sp, 10), *b = sampler_new(&sp, 10);

    ASSERT(a != NULL && b != NULL);
    ASSERT(sampler_get_seed(a) != sampler_get_seed(b));
    sampler_free(a);
    sampler_free(b);
}

TEST(sample_allocates_nothing)
{
    enum { N = 1000 };
    static float logits[N];
    struct sampler_params sp = sampler_params_default();
    struct sampler *s;

    for (int i = 0; i < N; i++)
        logits[i] = (float)(i % 37) * 0.1f;
    sp.seed = 9;
    sp.repeat_penalty = 1.2f;
    sp.top_k = 0;
    s = sampler_new(&sp, N);
    ASSERT_NOT_NULL(s);
    slm_alloc_fail_at(1);
    for (int i = 0; i < 50; i++)
        sampler_accept(s, sampler_sample(s, logits));
    ASSERT_EQ_INT(slm_alloc_count(), 0);
    slm_alloc_fail_at(0);
    sampler_free(s);
}

TEST(sample_new_fails_cleanly)
{
    struct sampler_params sp = sampler_params_default();

    ASSERT_NULL(sampler_new(&sp, 0));
    ASSERT_NULL(sampler_new(NULL, 10));
    sp.top_p = 2.0f;
    ASSERT_NULL(sampler_new(&sp, 10));
    sp = sampler_params_default();
    sp.repeat_penalty = 1.5f;
    for (uint64_t n = 1; n <= 4; n++) {
        slm_alloc_fail_at(n);
        ASSERT_NULL(sampler_new(&sp, 10)); /* ASan's leak check sees the rest */
    }
    slm_alloc_fail_at(0);
    sampler_free(NULL);
}

/* sampler_params_check refuses value v in field f with a message naming f. */
#define CHECK_BAD(field, v, name)                                                      \
    do {                                                                               \
        struct sampler_params p_ = sampler_params_default();                           \
        struct slm_diag d_;                                                            \
        p_.field = (v);                                                                \
        slm_diag_clear(&d_);                                                           \
        ASSERT_ERR(sampler_params_check(&p_, &d_), SLM_EINVAL);                        \
        if (strstr(d_.msg, name) == NULL)                                              \
            t_fail(__FILE__, __LINE__, "message '%s' does not name %s", d_.msg, name); \
    } while (0)

#define CHECK_GOOD(field, v)                                 \
    do {                                                     \
        struct sampler_params p_ = sampler_params_default(); \
        p_.field = (v);                                      \
        ASSERT_OK(sampler_params_check(&p_, NULL));          \
    } while (0)

TEST(sample_params_check_names_field)
{
    struct sampler_params p = sampler_params_default();

    ASSERT_OK(sampler_params_check(&p, NULL));
    CHECK_BAD(temp, -0.1f, "temperature");
    CHECK_BAD(temp, NAN, "temperature");
    CHECK_BAD(temp, INFINITY, "temperature");
    CHECK_GOOD(temp, 0.0f);
    CHECK_GOOD(temp, 1e30f);
    CHECK_BAD(top_k, -1, "top_k");
    CHECK_GOOD(top_k, 0);
    CHECK_GOOD(top_k, INT32_MAX);
    CHECK_BAD(top_p, -0.01f, "top_p");
    CHECK_BAD(top_p, 1.01f, "top_p");
    CHECK_BAD(top_p, NAN, "top_p");
    CHECK_BAD(top_p, -INFINITY, "top_p");
    CHECK_GOOD(top_p, 0.0f);
    CHECK_GOOD(top_p, 1.0f);
    CHECK_BAD(min_p, -1.0f, "min_p");
    CHECK_BAD(min_p, 1.5f, "min_p");
    CHECK_BAD(min_p, NAN, "min_p");
    CHECK_GOOD(min_p, 1.0f);
    CHECK_BAD(repeat_penalty, 0.0f, "repeat_penalty");
    CHECK_BAD(repeat_penalty, -1.0f, "repeat_penalty");
    CHECK_BAD(repeat_penalty, NAN, "repeat_penalty");
    CHECK_BAD(repeat_penalty, 1e30f, "repeat_penalty");
    CHECK_GOOD(repeat_penalty, 0.5f);
    CHECK_BAD(repeat_last_n, -1, "repeat_last_n");
    CHECK_BAD(repeat_last_n, INT32_MAX, "repeat_last_n");
    CHECK_GOOD(repeat_last_n, 0);
    CHECK_BAD(presence_penalty, 2.5f, "presence_penalty");
    CHECK_BAD(presence_penalty, NAN, "presence_penalty");
    CHECK_GOOD(presence_penalty, -2.0f);
    CHECK_BAD(frequency_penalty, -3.0f, "frequency_penalty");
    CHECK_BAD(frequency_penalty, INFINITY, "frequency_penalty");
    CHECK_GOOD(frequency_penalty, 2.0f);
    CHECK_GOOD(seed, UINT64_MAX - 1);
}

/* ---- sampler_sample_filtered ---- */

struct filt {
    const bool *allow;
    size_t n_asked;
};

static bool filt_ok(void *arg, tok_id id)
{
    struct filt *f = arg;

    f->n_asked++;
    return f->allow[id];
}

TEST(sample_filtered_greedy_takes_best_allowed_and_asks_few)
{
    enum { NV = 5000 };
    float *logits = slm_xmalloc(NV * sizeof(float));
    bool *allow = slm_xmalloc(NV * sizeof(bool));
    struct sampler_params sp = plain_params(3);
    struct sampler *s;
    struct filt f = { allow, 0 };
    struct slm_rng rng;

    slm_rng_seed(&rng, 9);
    for (size_t i = 0; i < NV; i++) {
        logits[i] = (float)slm_rng_normal(&rng);
        allow[i] = true;
    }
    sp.temp = 0.0f;
    s = sampler_new(&sp, NV);
    ASSERT_NOT_NULL(s);
    /* everything allowed: the argmax, asked once */
    {
        tok_id t = sampler_sample(s, logits);
        ASSERT_EQ_INT(sampler_sample_filtered(s, logits, filt_ok, &f), t);
        ASSERT_EQ_SIZE(f.n_asked, 1);
    }
    /* refuse the 10 best: the 11th best comes out after 11 questions */
    for (int round = 0; round < 10; round++) {
        tok_id t = sampler_sample_filtered(s, logits, filt_ok, &f);
        allow[t] = false;
    }
    {
        size_t best = SIZE_MAX;

        for (size_t i = 0; i < NV; i++)
            if (allow[i] && (best == SIZE_MAX || logits[i] > logits[best])) best = i;
        f.n_asked = 0;
        ASSERT_EQ_INT(sampler_sample_filtered(s, logits, filt_ok, &f), (int)best);
        ASSERT_EQ_SIZE(f.n_asked, 11);
    }
    /* nothing allowed: TOK_NONE after asking each token once */
    for (size_t i = 0; i < NV; i++)
        allow[i] = false;
    f.n_asked = 0;
    ASSERT_EQ_INT(sampler_sample_filtered(s, logits, filt_ok, &f), TOK_NONE);
    ASSERT_EQ_SIZE(f.n_asked, NV);
    /* only a -inf token allowed: it is still found */
    logits[7] = -INFINITY;
    allow[7] = true;
    ASSERT_EQ_INT(sampler_sample_filtered(s, logits, filt_ok, &f), 7);
    sampler_free(s);
    slm_free(logits);
    slm_free(allow);
}

TEST(sample_filtered_frequencies_renormalised)
{
    /* logits5 with token 1 (the best) and 3 refused: softmax over {0, 2, 4} */
    const bool allow[5] = { true, false, true, false, true };
    const bool keep[5] = { true, false, true, false, true };
    double l[5], p[5];
    struct sampler_params sp = plain_params(11);
    struct sampler *s;
    struct filt f = { allow, 0 };
    size_t hist[5] = { 0 };

    for (size_t i = 0; i < 5; i++)
        l[i] = logits5[i];
    softmax_ref(l, keep, 5, 0.7, p);
    sp.temp = 0.7f;
    s = sampler_new(&sp, 5);
    ASSERT_NOT_NULL(s);
    for (int i = 0; i < N_DRAWS; i++)
        hist[sampler_sample_filtered(s, logits5, filt_ok, &f)]++;
    for (size_t i = 0; i < 5; i++) {
        double fr = (double)hist[i] / N_DRAWS, sd = sqrt(p[i] * (1.0 - p[i]) / N_DRAWS);

        if (p[i] == 0.0)
            ASSERT_EQ_SIZE(hist[i], 0);
        else
            ASSERT(fabs(fr - p[i]) <= 5.0 * sd + 1e-9);
    }
    /* the filter is asked about the survivors only: top_k 2 asks at most 2 */
    sampler_free(s);
    sp.top_k = 2;
    s = sampler_new(&sp, 5);
    ASSERT_NOT_NULL(s);
    f.n_asked = 0;
    /* survivors are 1 and 4; 1 refused, so 4 every time */
    for (int i = 0; i < 100; i++)
        ASSERT_EQ_INT(sampler_sample_filtered(s, logits5, filt_ok, &f), 4);
    ASSERT_EQ_SIZE(f.n_asked, 200);
    sampler_free(s);
    /* top_k 1 keeps only the refused best: the fallback finds token 4 */
    sp.top_k = 1;
    s = sampler_new(&sp, 5);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ_INT(sampler_sample_filtered(s, logits5, filt_ok, &f), 4);
    sampler_free(s);
}
