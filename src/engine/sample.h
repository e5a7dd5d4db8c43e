/*
 * sample.h - choosing the next token from logits.
 *
 * The chain, in llama.cpp's order: repetition/presence/frequency penalties
 * over the last repeat_last_n accepted tokens, top-k, top-p, min-p,
 * temperature, then a draw from the distribution with the sampler's own
 * seeded PRNG. temp <= 0 is greedy (argmax; ties go to the lowest id).
 * The same seed and the same logits give the same tokens on every machine.
 *
 * Penalties follow llama.cpp: a token seen c > 0 times in the window has its
 * logit divided by repeat_penalty if positive (multiplied if <= 0), then
 * lowered by c * frequency_penalty + presence_penalty. They apply in greedy
 * mode too. top-p and min-p measure probabilities before temperature. NaN
 * logits count as -inf.
 *
 * Ownership: sampler_new returns new (sampler_free). Not thread-safe: one
 * sampler per sequence. sampler_sample borrows the logits and does not
 * modify them; it allocates nothing (scratch is sized at creation).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/tokenizer.h"

struct sampler_params {
    float temp;              /* default 0.8; 0 greedy; >= 0 */
    int32_t top_k;           /* default 40; 0 off; >= 0 */
    float top_p;             /* default 0.95; 1 off; [0, 1] */
    float min_p;             /* default 0.05; 0 off; [0, 1] */
    float repeat_penalty;    /* default 1.0 (off); (0, SAMPLER_PENALTY_MAX] */
    int32_t repeat_last_n;   /* default 64; 0 off; [0, SLM_LIMIT_CONTEXT] */
    float presence_penalty;  /* default 0; [-2, 2] (OpenAI's range) */
    float frequency_penalty; /* default 0; [-2, 2] */
    uint64_t seed;           /* default SAMPLER_SEED_RANDOM: drawn from the OS */
};

#define SAMPLER_SEED_RANDOM UINT64_MAX
#define SAMPLER_PENALTY_MAX 100.0f

struct sampler_params sampler_params_default(void);
/*
 * Checks every field's range (NaN and infinities are refused everywhere);
 * SLM_EINVAL with a message naming the field, e.g. "top_p must be in [0, 1],
 * got 1.5".
 */
SLM_NODISCARD int sampler_params_check(const struct sampler_params *p, struct slm_diag *d);

struct sampler;

/*
 * Returns new, or NULL on ENOMEM, n_vocab 0 or > SLM_LIMIT_VOCAB, or params
 * that sampler_params_check refuses. SAMPLER_SEED_RANDOM draws a seed from the
 * OS (sampler_get_seed tells which).
 */
struct sampler *sampler_new(const struct sampler_params *p, size_t n_vocab);
void sampler_free(struct sampler *s);
/* Returns the chosen token id for logits[0..n_vocab). */
tok_id sampler_sample(struct sampler *s, const float *logits);

/*
 * Constrained decoding: a filter says whether token id may be drawn now
 * (true) or not. Called on the sampler's thread, a few times per token.
 */
typedef bool sampler_filter_fn(void *arg, tok_id id);

/* Candidates at most that sampler_sample_filtered asks the filter about in
 * sampling mode (the best ones by logit). */
#define SAMPLER_FILTER_MAX 1024u

/*
 * Like sampler_sample, but only tokens the filter allows can be drawn; the
 * others count as logit -inf. Greedy: the argmax is asked first, then the
 * rest in descending logit order (a heap over the vocabulary, built only
 * when the argmax is refused) until one is allowed. Sampling: the usual
 * chain runs first; its survivors are asked in descending order (at most
 * SAMPLER_FILTER_MAX of them) and the draw is among the allowed ones with
 * their probabilities renormalised; if none is allowed, the best allowed
 * token of the whole vocabulary is taken as in greedy mode. Cost: O(n_vocab)
 * as for sampler_sample plus O(k log n_vocab) filter calls for the k
 * refused tokens. Returns TOK_NONE if the filter allows no token at all.
 */
tok_id sampler_sample_filtered(struct sampler *s, const float *logits, sampler_filter_fn *ok,
                               void *arg);
/* Records an accepted token (prompt tokens too) for the penalties; ids
 * outside [0, n_vocab) are ignored. */
void sampler_accept(struct sampler *s, tok_id id);
/* Forgets the accepted tokens and restarts the PRNG from the seed. */
void sampler_reset(struct sampler *s);
/* The seed in use (the drawn one for SAMPLER_SEED_RANDOM). */
uint64_t sampler_get_seed(const struct sampler *s);
