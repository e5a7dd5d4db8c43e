/*
 * sample.h - choosing the next token from logits.
 *
 * The chain, in llama.cpp's order: repetition/presence/frequency penalties
 * over the last repeat_last_n accepted tokens, top-k, top-p, min-p,
 * temperature, then a draw from the distribution with the sampler's own
 * seeded PRNG. temp <= 0 is greedy (argmax; ties go to the lowest id).
 * The same seed and the same logits give the same tokens on every machine.
 *
 * Ownership: sampler_new returns new (sampler_free). Not thread-safe: one
 * sampler per sequence. sampler_sample borrows the logits and does not
 * modify them; it allocates nothing (scratch is sized at creation).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/tokenizer.h"

struct sampler_params {
    float temp;              /* default 0.8; <= 0 greedy */
    int32_t top_k;           /* default 40; <= 0 off */
    float top_p;             /* default 0.95; 1 off */
    float min_p;             /* default 0.05; 0 off */
    float repeat_penalty;    /* default 1.0 (off) */
    int32_t repeat_last_n;   /* default 64 */
    float presence_penalty;  /* default 0 */
    float frequency_penalty; /* default 0 */
    uint64_t seed;           /* default: random (SAMPLER_SEED_RANDOM) */
};

#define SAMPLER_SEED_RANDOM UINT64_MAX

struct sampler_params sampler_params_default(void);
/* Checks every field's range; SLM_EINVAL with a message naming the field. */
SLM_NODISCARD int sampler_params_check(const struct sampler_params *p, struct slm_diag *d);

struct sampler;

struct sampler *sampler_new(const struct sampler_params *p, size_t n_vocab); /* NULL: ENOMEM */
void sampler_free(struct sampler *s);
/* Returns the chosen token id for logits[0..n_vocab). */
tok_id sampler_sample(struct sampler *s, const float *logits);
/* Records an accepted token (prompt tokens too) for the penalties. */
void sampler_accept(struct sampler *s, tok_id id);
void sampler_reset(struct sampler *s);
