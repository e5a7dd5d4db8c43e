/*
 * attn_decode.c - time per (query head, cached position) of the decode
 * attention: the AVX-512 table's attn_decode (all query heads of a KV head
 * in one call) against the one-head path it replaced (per position: the
 * table's dot_f16, the C library's expf, scale_f16, mad_f16), on the same
 * keys and values, one thread.
 *
 *   usage: attn_decode [HEAD_DIM [HEADS [POSITIONS [COPIES]]]]
 *          (default 64 7 4096 1: Qwen2.5-0.5B's shape, 7 query heads per KV
 *          head; COPIES > 1 cycles through that many K/V caches, so that
 *          they come from memory rather than the caches)
 *
 * Both paths run in turns, 5 rounds; each prints its best round (noise on a
 * shared machine only slows a round down). The outputs of both are compared
 * bit for bit first: a path that computed something else would not count.
 *
 * Built against the release library (make builds build/rel/libslm.a):
 *   cc -std=c17 -D_GNU_SOURCE -O2 -Isrc bench/attn_decode.c build/rel/libslm.a \
 *      -lm -lpthread -o build/bench/attn_decode
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rand.h"
#include "core/str.h"
#include "engine/kernels.h"
#include "engine/quant.h"

struct setup {
    size_t hd, nr, n, copies;
    float *q, *out;
    uint16_t *K, *V;
    float *work;
};

/* The one-head path (kernels_attend_f16) for head h of copy c. */
static void one_head(const struct kernel_ops *k, const struct setup *s, size_t c, size_t h,
                     float scale, float *work, float *out)
{
    kernels_attend_f16(k, s->hd, s->q + h * s->hd, out, s->n, s->K + c * s->n * s->hd,
                       s->V + c * s->n * s->hd, scale, work);
}

static void run_new(const struct kernel_ops *k, const struct setup *s, size_t c, float scale)
{
    const float *q[KERNELS_DECODE_ROWS];
    float *out[KERNELS_DECODE_ROWS];

    for (size_t h = 0; h < s->nr; h++) {
        q[h] = s->q + h * s->hd;
        out[h] = s->out + h * s->hd;
    }
    k->attn_decode(s->hd, s->nr, q, out, s->n, s->K + c * s->n * s->hd, s->V + c * s->n * s->hd,
                   scale, s->work);
}

static size_t arg(int argc, char **argv, int i, size_t def, size_t lo, size_t hi)
{
    uint64_t v;

    if (argc <= i) return def;
    if (slm_parse_u64(argv[i], &v) < 0 || v < lo || v > hi) {
        fprintf(stderr, "attn_decode: argument %d must be a number from %zu to %zu, not '%s'\n", i,
                lo, hi, argv[i]);
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    const struct kernel_ops *k = kernels_get_named("avx512");
    struct setup s;
    struct slm_rng r;
    float scale, *want;
    float ohwork[KERNELS_ATTEND_CHUNK + 512];
    double best_new = 1e30, best_old = 1e30;
    size_t reps;

    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf(
            "usage: attn_decode [HEAD_DIM [HEADS [POSITIONS [COPIES]]]] (default 64 7 4096 1)\n");
        return 0;
    }
    if (k == NULL || k->attn_decode == NULL) {
        fprintf(stderr, "attn_decode: this CPU cannot run the AVX-512 kernels\n");
        return 1;
    }
    s.hd = arg(argc, argv, 1, 64, 64, 512);
    s.nr = arg(argc, argv, 2, 7, 1, KERNELS_DECODE_ROWS);
    s.n = arg(argc, argv, 3, 4096, 1, 1u << 20);
    s.copies = arg(argc, argv, 4, 1, 1, 256);
    if (s.hd % 64 != 0) {
        fprintf(stderr, "attn_decode: HEAD_DIM must be a multiple of 64\n");
        return 2;
    }
    scale = 1.0f / sqrtf((float)s.hd);
    s.q = slm_xmalloc(s.nr * s.hd * sizeof(float));
    s.out = slm_xmalloc(s.nr * s.hd * sizeof(float));
    want = slm_xmalloc(s.nr * s.hd * sizeof(float));
    s.K = slm_xmalloc(s.copies * s.n * s.hd * sizeof(uint16_t));
    s.V = slm_xmalloc(s.copies * s.n * s.hd * sizeof(uint16_t));
    s.work = slm_aligned_alloc(64, kernels_decode_work_floats(s.hd) * sizeof(float));
    if (s.work == NULL) return 1;
    slm_rng_seed(&r, 1);
    for (size_t i = 0; i < s.nr * s.hd; i++)
        s.q[i] = 2.0f * slm_rng_normal(&r);
    for (size_t i = 0; i < s.copies * s.n * s.hd; i++) {
        s.K[i] = f32_to_fp16(slm_rng_normal(&r));
        s.V[i] = f32_to_fp16(slm_rng_normal(&r));
    }
    run_new(k, &s, 0, scale);
    for (size_t h = 0; h < s.nr; h++)
        one_head(k, &s, 0, h, scale, ohwork, want + h * s.hd);
    if (memcmp(want, s.out, s.nr * s.hd * sizeof(float)) != 0) {
        fprintf(stderr, "attn_decode: the two paths differ\n");
        return 1;
    }
    reps = (size_t)(4e7 / ((double)s.n * (double)s.nr)) + 1;
    for (int round = 0; round < 5; round++) {
        uint64_t t0 = slm_now_ns(), t1, t2;

        for (size_t i = 0; i < reps; i++)
            run_new(k, &s, i % s.copies, scale);
        t1 = slm_now_ns();
        for (size_t i = 0; i < reps; i++)
            for (size_t h = 0; h < s.nr; h++)
                one_head(k, &s, i % s.copies, h, scale, ohwork, want + h * s.hd);
        t2 = slm_now_ns();
        if ((double)(t1 - t0) < best_new) best_new = (double)(t1 - t0);
        if ((double)(t2 - t1) < best_old) best_old = (double)(t2 - t1);
    }
    best_new /= (double)reps * (double)s.n * (double)s.nr;
    best_old /= (double)reps * (double)s.n * (double)s.nr;
    printf("head_dim %zu, %zu heads, %zu positions, %zu cop%s: attn_decode %.2f ns, one head at a "
           "time %.2f ns per head and position (%.2fx)\n",
           s.hd, s.nr, s.n, s.copies, s.copies == 1 ? "y" : "ies", best_new, best_old,
           best_old / best_new);
    slm_free(s.q);
    slm_free(s.out);
    slm_free(want);
    slm_free(s.K);
    slm_free(s.V);
    slm_free(s.work);
    return 0;
}
