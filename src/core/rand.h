/*
 * rand.h - deterministic pseudo-random numbers (xoshiro256**) and OS entropy.
 *
 * struct slm_rng is caller storage; the same seed gives the same sequence on
 * every machine (models made by slm mkmodel and sampling with --seed depend on
 * it). Not thread-safe per state: one state per thread. slm_random_bytes reads
 * getrandom(2) and is for keys and default seeds.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct slm_rng {
    uint64_t s[4];
};

void slm_rng_seed(struct slm_rng *r, uint64_t seed);
uint64_t slm_rng_next(struct slm_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float slm_rng_float(struct slm_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t slm_rng_below(struct slm_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
float slm_rng_normal(struct slm_rng *r);
/* Fills p with n bytes from the kernel's CSPRNG. */
SLM_NODISCARD int slm_random_bytes(void *p, size_t n);
