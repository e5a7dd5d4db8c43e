/*
 * rand.c - xoshiro256** seeded by splitmix64, and getrandom(2).
 */
#include "core/rand.h"

#include <errno.h>
#include <math.h>
#include <sys/random.h>

/* splitmix64 step: expands a 64-bit seed into well-mixed state words. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void slm_rng_seed(struct slm_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* Returns the next 64 random bits. */
uint64_t slm_rng_next(struct slm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float slm_rng_float(struct slm_rng *r)
{
    return (float)(slm_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* Unbiased integer in [0, n) by rejection. */
uint64_t slm_rng_below(struct slm_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;

    do
        x = slm_rng_next(r);
    while (x >= limit);
    return x % n;
}

float slm_rng_normal(struct slm_rng *r)
{
    double u1 = ((double)(slm_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(slm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);

    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Fills p with n bytes of kernel randomness. */
int slm_random_bytes(void *p, size_t n)
{
    unsigned char *b = p;

    while (n > 0) {
        ssize_t got = getrandom(b, n, 0);

        if (got < 0) {
            if (errno == EINTR) continue;
            return slm_err_from_errno(errno);
        }
        b += got;
        n -= (size_t)got;
    }
    return 0;
}
