/*
 * test_attn_decode.c - the kernels' decode attention (attn_decode) against
 * the one-head path it replaces, bit for bit, and its expf against the C
 * library's.
 *
 * The reference is the one-head path the engine runs without attn_decode,
 * kernels_attend_f16, with the scalar table's dot_f16, scale_f16 and
 * mad_f16 (which test_kernels.c holds to llama.cpp's order and rounding)
 * and the C library's expf: one head at a time, one position at a time;
 * test_model.c checks that path against a reference of its own.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rand.h"
#include "engine/kernels.h"
#include "engine/kernels_int.h"
#include "engine/quant.h"
#include "harness/t.h"

/* The one-head path with the scalar table's helpers. */
static void ref_one_head(size_t hd, const float *q, float *out, size_t n, const uint16_t *K,
                         const uint16_t *V, float scale)
{
    float work[KERNELS_ATTEND_CHUNK + 512];

    SLM_ASSERT(kernels_attend_f16_floats(hd) <= sizeof(work) / sizeof(work[0]));
    kernels_attend_f16(&kernels_scalar, hd, q, out, n, K, V, scale, work);
}

/* Same bits, or both NaN (NaN payloads may travel differently). */
static bool same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof(float)) == 0 || (isnan(a) && isnan(b));
}

/*
 * One case: nr heads of width hd over n positions; q scaled by qs (large qs
 * gives score gaps beyond 88, where expf underflows, and frequent new
 * maxima); if rising, key j leans further along q with every position, so
 * every score is a new maximum.
 */
static void check_case(const struct kernel_ops *k, struct slm_rng *r, size_t hd, size_t nr,
                       size_t n, float qs, bool rising, float *work)
{
    float *q = slm_xmalloc(nr * hd * sizeof(float)), *got = slm_xmalloc(nr * hd * sizeof(float));
    float *want = slm_xmalloc(hd * sizeof(float));
    uint16_t *K = slm_xmalloc(n * hd * sizeof(uint16_t)),
             *V = slm_xmalloc(n * hd * sizeof(uint16_t));
    const float *qp[KERNELS_DECODE_ROWS];
    float *op[KERNELS_DECODE_ROWS];
    float scale = 1.0f / sqrtf((float)hd);

    for (size_t i = 0; i < nr * hd; i++)
        q[i] = qs * slm_rng_normal(r);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < hd; i++) {
            float kv = slm_rng_normal(r);

            if (rising) kv = q[i] * (float)(j + 1) * 0.01f + 0.01f * kv;
            K[j * hd + i] = f32_to_fp16(kv);
            V[j * hd + i] = f32_to_fp16(2.0f * slm_rng_normal(r));
        }
    for (size_t h = 0; h < nr; h++) {
        qp[h] = q + h * hd;
        op[h] = got + h * hd;
    }
    k->attn_decode(hd, nr, qp, op, n, K, V, scale, work);
    for (size_t h = 0; h < nr; h++) {
        ref_one_head(hd, q + h * hd, want, n, K, V, scale);
        for (size_t i = 0; i < hd; i++)
            if (!same_float(got[h * hd + i], want[i]))
                t_fail(__FILE__, __LINE__,
                       "attn_decode hd %zu nr %zu n %zu qs %g%s head %zu dim %zu: %a, want %a", hd,
                       nr, n, (double)qs, rising ? " rising" : "", h, i, (double)got[h * hd + i],
                       (double)want[i]);
    }
    slm_free(q);
    slm_free(got);
    slm_free(want);
    slm_free(K);
    slm_free(V);
}

TEST(kernels_avx512_attn_decode_matches_one_head_path_bitwise)
{
    const struct kernel_ops *k = kernels_get_named("avx512");
    static const size_t hds[] = { 64, 128, 256 }, nrs[] = { 1, 3, 7, 8 };
    static const size_t ns[] = { 1, 2, 15, 16, 17, 33, 300 };
    static const float qss[] = { 0.3f, 4.0f, 60.0f };
    struct slm_rng r;
    float *work;

    if (k == NULL) SKIP("this CPU (or OS) cannot run the AVX-512 kernels");
    ASSERT(k->attn_decode != NULL);
    work = slm_aligned_alloc(64, kernels_decode_work_floats(256) * sizeof(float));
    ASSERT(work != NULL);
    slm_rng_seed(&r, 41);
    for (size_t a = 0; a < sizeof(hds) / sizeof(hds[0]); a++)
        for (size_t b = 0; b < sizeof(nrs) / sizeof(nrs[0]); b++)
            for (size_t c = 0; c < sizeof(ns) / sizeof(ns[0]); c++)
                for (size_t d = 0; d < sizeof(qss) / sizeof(qss[0]); d++)
                    check_case(k, &r, hds[a], nrs[b], ns[c], qss[d], false, work);
    for (size_t c = 0; c < sizeof(ns) / sizeof(ns[0]); c++)
        check_case(k, &r, 64, 7, ns[c], 1.0f, true, work);
    check_case(k, &r, 128, 4, 2000, 2.0f, false, work);
    slm_free(work);
}

/*
 * Infinite and NaN inputs reach the library's special cases (expf of -inf
 * and NaN, the accumulator turning NaN) the same way in both paths.
 */
TEST(kernels_avx512_attn_decode_nonfinite_like_one_head_path)
{
    const struct kernel_ops *k = kernels_get_named("avx512");
    size_t hd = 64, n = 40;
    float q[2 * 64], got[2 * 64], want[64];
    uint16_t K[40 * 64], V[40 * 64];
    const float *qp[2] = { q, q + hd };
    float *op[2] = { got, got + hd };
    float *work;
    struct slm_rng r;

    if (k == NULL) SKIP("this CPU (or OS) cannot run the AVX-512 kernels");
    work = slm_aligned_alloc(64, kernels_decode_work_floats(hd) * sizeof(float));
    ASSERT(work != NULL);
    slm_rng_seed(&r, 43);
    for (int variant = 0; variant < 3; variant++) {
        for (size_t i = 0; i < 2 * hd; i++)
            q[i] = slm_rng_normal(&r);
        for (size_t i = 0; i < n * hd; i++) {
            K[i] = f32_to_fp16(slm_rng_normal(&r));
            V[i] = f32_to_fp16(slm_rng_normal(&r));
        }
        if (variant == 0) V[20 * hd + 5] = 0x7c00; /* +inf in one value */
        if (variant == 1) K[17 * hd + 3] = 0x7e00; /* NaN in one key */
        if (variant == 2) q[hd + 9] = INFINITY;    /* an infinite query */
        k->attn_decode(hd, 2, qp, op, n, K, V, 0.125f, work);
        for (size_t h = 0; h < 2; h++) {
            ref_one_head(hd, q + h * hd, want, n, K, V, 0.125f);
            for (size_t i = 0; i < hd; i++)
                if (!same_float(got[h * hd + i], want[i]))
                    t_fail(__FILE__, __LINE__, "variant %d head %zu dim %zu: %a, want %a", variant,
                           h, i, (double)got[h * hd + i], (double)want[i]);
        }
    }
    slm_free(work);
}

/* The vector expf against the C library's over a stride of all floats. */
TEST(kernels_avx512_expf16_is_the_c_library_expf)
{
    /* Infinities, NaN, and each threshold of expf with its neighbours. */
    static const float special[16] = { -INFINITY,      INFINITY,      NAN,
                                       -88.0f,         88.0f,         -0x1.9d1d9ep6f,
                                       -0x1.9d1d9cp6f, -103.5f,       -0x1.9fe368p6f,
                                       -0x1.9fe36ap6f, 0x1.62e42ep6f, 0x1.62e430p6f,
                                       -0.0f,          -1e-40f,       -104.0f,
                                       -1000.0f };
    float x[16], y[16];
    size_t checked = 0;

    if (kernels_get_named("avx512") == NULL)
        SKIP("this CPU (or OS) cannot run the AVX-512 kernels");
    /* glibc's expf (this project's C library): the vector lanes are used. */
    ASSERT(kernels__avx512_expf16(special, y));
    for (int i = 0; i < 16; i++)
        if (!same_float(y[i], expf(special[i])))
            t_fail(__FILE__, __LINE__, "expf(%a): %a, want %a", (double)special[i], (double)y[i],
                   (double)expf(special[i]));
    /* Both signs, every 61st bit pattern up to |x| = 144 (past every threshold). */
    for (uint32_t sign = 0; sign < 2; sign++)
        for (uint32_t b = 0; b < 0x43100000u;) {
            for (int i = 0; i < 16; i++, b += 61) {
                uint32_t bits = b | sign << 31;

                memcpy(&x[i], &bits, sizeof(float));
            }
            kernels__avx512_expf16(x, y);
            for (int i = 0; i < 16; i++, checked++) {
                float want = expf(x[i]);

                if (memcmp(&want, &y[i], sizeof(float)) != 0)
                    t_fail(__FILE__, __LINE__, "expf(%a): %a, want %a", (double)x[i], (double)y[i],
                           (double)want);
            }
        }
    ASSERT(checked > 30000000);
}
