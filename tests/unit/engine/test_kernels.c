/*
 * test_kernels.c - every SIMD kernel against the scalar reference (E01, E02),
 * and the run-time selection (SLM_CPU).
 *
 * A table this CPU cannot run is skipped. Data: weights are random Gaussian
 * rows (with outliers) quantized by the reference quantizer, activations are
 * converted by the scalar from_float (from_float itself is compared bit for
 * bit). Buffers start at offsets that are multiples of the element alignment
 * but not of any vector width, and gemm strides are padded so that rows
 * alternate alignment.
 *
 * Tolerances (docs/internals/kernels.md):
 *  - f32, f16, bf16 dot products: |simd - ref| <= 1e-5 * sum |w_i x_i|
 *    (+1e-30 absolute: AVX-512 BF16 flushes subnormals). The reference sums
 *    in double; 1e-5 covers float accumulation over 8-16 lanes of n <= 4096.
 *  - quantized dot products: the integer parts are exact on every path, so
 *    the only differences are float roundings of the per-block terms and the
 *    order they are summed in: |simd - ref| <= (n_blocks + 20) * FLT_EPSILON
 *    * B, where B = sum_i |x_i| * (largest magnitude any intermediate weight
 *    term of element i can have: |d| * 128 for Q8_0, |d| * 32 for Q4_0,
 *    |d sc| * 16 + |dmin m| for Q4_K, |d sc| * 32 + |dmin m| for Q5_K,
 *    |d sc| * 64 for Q6_K, |d| * 48 for Q5_0, |d| * 32 + |m| for Q5_1). That is
 *    a rounding-error bound, not a fudge factor.
 *  - from_float, f32_to_f16, f16_to_f32: identical bytes.
 *  - axpy: |simd - ref| <= 2 * FLT_EPSILON * (|a x_i| + |y_i|) (FMA vs mul+add).
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/rand.h"
#include "engine/kernels.h"
#include "engine/kernels_int.h"
#include "engine/quant.h"
#include "harness/t.h"

static const enum tensor_type weight_types[] = {
    TENSOR_TYPE_F32,  TENSOR_TYPE_F16,  TENSOR_TYPE_BF16, TENSOR_TYPE_Q8_0, TENSOR_TYPE_Q4_0,
    TENSOR_TYPE_Q5_0, TENSOR_TYPE_Q5_1, TENSOR_TYPE_Q4_K, TENSOR_TYPE_Q5_K, TENSOR_TYPE_Q6_K,
};

static const struct kernel_ops *table_or_skip(const char *name)
{
    const struct kernel_ops *k = kernels_get_named(name);

    if (k == NULL) SKIP("this CPU (or OS) cannot run these kernels");
    return k;
}

/* Alignment the C types of t need (f32 values and Q8_K's float d: 4). */
static size_t type_align(enum tensor_type t)
{
    return (t == TENSOR_TYPE_F32 || t == TENSOR_TYPE_Q8_K) ? 4 : 2;
}

static size_t row_bytes(enum tensor_type t, size_t n)
{
    uint64_t sz;

    ASSERT_OK(tensor_row_size(t, n, &sz));
    return (size_t)sz;
}

static size_t block_of(enum tensor_type t)
{
    return tensor_type_get(t)->block_size;
}

/* A weight-like float row: Gaussian, some outliers, a few exact zeros. */
static void fill_floats(struct slm_rng *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) {
        float v = slm_rng_normal(r) * scale;

        if (slm_rng_below(r, 97) == 0) v *= 8;
        if (slm_rng_below(r, 113) == 0) v = 0;
        x[i] = v;
    }
}

/* n_rows rows of weights of type t, stride bytes apart. */
static void make_weights(struct slm_rng *r, enum tensor_type t, size_t n, size_t n_rows, uint8_t *w,
                         size_t stride)
{
    float *f = slm_xmalloc((n + 1) * sizeof(float));

    for (size_t i = 0; i < n_rows; i++) {
        fill_floats(r, f, n, 0.05f);
        ASSERT_OK(quant_quantize_row(t, f, w + i * stride, n));
    }
    slm_free(f);
}

/* n_cols activation columns of type kernels_vec_dot_type(t), via scalar from_float. */
static void make_acts(struct slm_rng *r, enum tensor_type vt, size_t n, size_t n_cols, uint8_t *x,
                      size_t stride)
{
    float *f = slm_xmalloc((n + 1) * sizeof(float));

    for (size_t i = 0; i < n_cols; i++) {
        fill_floats(r, f, n, 1.0f);
        kernels_scalar.from_float[vt](f, x + i * stride, n);
    }
    slm_free(f);
}

static float h2f(const uint8_t *p)
{
    uint16_t h;

    memcpy(&h, p, 2);
    return fp16_to_f32(h);
}

/*
 * Per-element bound of the weight terms the kernels form (see the file
 * comment), decoded from the block layout of quant.h.
 */
static void weight_mag(enum tensor_type t, const uint8_t *w, size_t n, float *m)
{
    float *tmp = slm_xmalloc((n + 1) * sizeof(float));

    switch (t) {
    case TENSOR_TYPE_F32:
    case TENSOR_TYPE_F16:
    case TENSOR_TYPE_BF16:
        ASSERT_OK(quant_dequantize_row(t, w, tmp, n));
        for (size_t i = 0; i < n; i++)
            m[i] = fabsf(tmp[i]);
        break;
    case TENSOR_TYPE_Q8_0:
    case TENSOR_TYPE_Q4_0:
        for (size_t i = 0; i < n; i++) {
            size_t bsz = t == TENSOR_TYPE_Q8_0 ? 34 : 18;

            m[i] = fabsf(h2f(w + (i / 32) * bsz)) * (t == TENSOR_TYPE_Q8_0 ? 128 : 32);
        }
        break;
    case TENSOR_TYPE_Q5_0:
        for (size_t i = 0; i < n; i++)
            m[i] = fabsf(h2f(w + (i / 32) * 22)) * 48;
        break;
    case TENSOR_TYPE_Q5_1:
        for (size_t i = 0; i < n; i++)
            m[i] = fabsf(h2f(w + (i / 32) * 24)) * 32 + fabsf(h2f(w + (i / 32) * 24 + 2));
        break;
    case TENSOR_TYPE_Q4_K:
    case TENSOR_TYPE_Q5_K:
        for (size_t i = 0; i < n; i++) {
            size_t bsz = t == TENSOR_TYPE_Q4_K ? 144 : 176;
            const uint8_t *b = w + (i / 256) * bsz, *s = b + 4;
            int j = (int)(i % 256) / 32, sc, mn;

            if (j < 4) {
                sc = s[j] & 63;
                mn = s[j + 4] & 63;
            } else {
                sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
                mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            }
            m[i] = fabsf(h2f(b)) * (float)sc * (t == TENSOR_TYPE_Q4_K ? 16 : 32) +
                   fabsf(h2f(b + 2)) * (float)mn;
        }
        break;
    case TENSOR_TYPE_Q6_K:
        for (size_t i = 0; i < n; i++) {
            const uint8_t *b = w + (i / 256) * 210;

            m[i] = fabsf(h2f(b + 208)) * (float)abs((int8_t)b[192 + (i % 256) / 16]) * 64;
        }
        break;
    default:
        t_fail(__FILE__, __LINE__, "no magnitude rule for %s", tensor_type_name(t));
    }
    slm_free(tmp);
}

/* The tolerance of one dot product of w (type t) with x (its activation type). */
static double dot_tolerance(enum tensor_type t, const uint8_t *w, const uint8_t *x, size_t n)
{
    enum tensor_type vt = kernels_vec_dot_type(t);
    float *xf = slm_xmalloc((n + 1) * sizeof(float)), *m = slm_xmalloc((n + 1) * sizeof(float));
    double b = 0;

    ASSERT_OK(quant_dequantize_row(vt, x, xf, n));
    weight_mag(t, w, n, m);
    for (size_t i = 0; i < n; i++)
        b += (double)fabsf(xf[i]) * m[i];
    slm_free(xf);
    slm_free(m);
    if (t == TENSOR_TYPE_F32 || t == TENSOR_TYPE_F16 || t == TENSOR_TYPE_BF16)
        return 1e-5 * b + 1e-30;
    return (double)(n / block_of(t) + 20) * FLT_EPSILON * b + 1e-30;
}

static void expect_close(const char *what, enum tensor_type t, size_t n, float got, float want,
                         double tol)
{
    if (isnan(want) || isnan(got)) {
        if (!(isnan(want) && isnan(got)))
            t_fail(__FILE__, __LINE__, "%s %s n=%zu: got %.9g, want %.9g", what,
                   tensor_type_name(t), n, (double)got, (double)want);
        return;
    }
    if (!(fabs((double)got - (double)want) <= tol))
        t_fail(__FILE__, __LINE__, "%s %s n=%zu: got %.9g, want %.9g (tolerance %.3g)", what,
               tensor_type_name(t), n, (double)got, (double)want, tol);
}

/* ---- vec_dot ---- */

static void check_vec_dot(const char *name)
{
    const struct kernel_ops *k = table_or_skip(name);
    static const size_t nblocks[] = { 0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33 };
    static const size_t nfloat[] = {
        0,  1,  2,  3,  5,   7,   8,   9,   15,  16,  17,  31,   32,
        33, 63, 64, 65, 127, 129, 255, 256, 257, 300, 511, 1000, 4096
    };
    struct slm_rng r;

    slm_rng_seed(&r, 11);
    for (size_t ti = 0; ti < SLM_ARRAY_LEN(weight_types); ti++) {
        enum tensor_type t = weight_types[ti], vt = kernels_vec_dot_type(t);
        int is_float = block_of(t) == 1;
        size_t count = is_float ? SLM_ARRAY_LEN(nfloat) : SLM_ARRAY_LEN(nblocks);

        ASSERT_NOT_NULL(k->vec_dot[t]);
        for (size_t si = 0; si < count; si++) {
            size_t n = is_float ? nfloat[si] : nblocks[si] * block_of(t);
            size_t ow = 16 + type_align(t), ox = 16 + type_align(vt);
            uint8_t *wb = slm_xmalloc(row_bytes(t, n) + 64);
            uint8_t *xb = slm_xmalloc(row_bytes(vt, n) + 64);
            float got = -1, want = -2;

            make_weights(&r, t, n, 1, wb + ow, 0);
            make_acts(&r, vt, n, 1, xb + ox, 0);
            kernels_scalar.vec_dot[t](n, &want, wb + ow, xb + ox);
            k->vec_dot[t](n, &got, wb + ow, xb + ox);
            if (n == 0) ASSERT(got == 0.0f && want == 0.0f);
            expect_close("vec_dot", t, n, got, want, dot_tolerance(t, wb + ow, xb + ox, n));
            slm_free(wb);
            slm_free(xb);
        }
    }
}

TEST(kernels_avx2_vec_dot_matches_scalar)
{
    check_vec_dot("avx2");
}

TEST(kernels_avx512_vec_dot_matches_scalar)
{
    check_vec_dot("avx512");
}

/* ---- gemm ---- */

#define GEMM_MAX 257

static void check_gemm_type(const struct kernel_ops *k, enum tensor_type t, size_t n,
                            struct slm_rng *r)
{
    static const size_t rows_a[] = { 1,  2,  3,  4,  5,  6,  7,   8,   9,   12,  13,
                                     16, 17, 31, 33, 64, 65, 127, 129, 255, 256, 257 };
    static const size_t cols_a[] = { 1, 2, 3, 4, 5, 7, 8, 9 };
    static const size_t rows_b[] = { 1, 2, 3, 5 };
    static const size_t cols_b[] = { 15, 16, 17, 31, 33, 64, 65, 127, 128, 129, 255, 256, 257 };
    enum tensor_type vt = kernels_vec_dot_type(t);
    size_t ws = row_bytes(t, n) + type_align(t), xs = row_bytes(vt, n) + type_align(vt);
    uint8_t *wb = slm_xmalloc(GEMM_MAX * ws + 64), *xb = slm_xmalloc(GEMM_MAX * xs + 64);
    uint8_t *w = wb + 16 + type_align(t), *x = xb + 16 + type_align(vt);
    float *ref = slm_xmalloc(GEMM_MAX * GEMM_MAX * sizeof(float));
    double *tol = slm_xmalloc(GEMM_MAX * GEMM_MAX * sizeof(double));
    float *y = slm_xmalloc((GEMM_MAX + 3) * GEMM_MAX * sizeof(float));

    make_weights(r, t, n, GEMM_MAX, w, ws);
    make_acts(r, vt, n, GEMM_MAX, x, xs);
    kernels_scalar.gemm[t](n, w, ws, GEMM_MAX, x, xs, GEMM_MAX, ref, GEMM_MAX);
    for (size_t c = 0; c < GEMM_MAX; c++) {
        for (size_t rr = 0; rr < GEMM_MAX; rr++) {
            float one;

            /* The scalar gemm is the scalar vec_dot, element by element. */
            kernels_scalar.vec_dot[t](n, &one, w + rr * ws, x + c * xs);
            ASSERT(memcmp(&one, &ref[c * GEMM_MAX + rr], sizeof(one)) == 0);
            tol[c * GEMM_MAX + rr] = dot_tolerance(t, w + rr * ws, x + c * xs, n);
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        const size_t *rows = pass ? rows_b : rows_a, *cols = pass ? cols_b : cols_a;
        size_t n_rows = pass ? SLM_ARRAY_LEN(rows_b) : SLM_ARRAY_LEN(rows_a);
        size_t n_cols = pass ? SLM_ARRAY_LEN(cols_b) : SLM_ARRAY_LEN(cols_a);

        for (size_t ri = 0; ri < n_rows; ri++) {
            for (size_t ci = 0; ci < n_cols; ci++) {
                size_t nr = rows[ri], nc = cols[ci], ys = nr + 3;

                for (size_t i = 0; i < ys * nc; i++)
                    y[i] = NAN;
                k->gemm[t](n, w, ws, nr, x, xs, nc, y, ys);
                for (size_t c = 0; c < nc; c++) {
                    for (size_t rr = 0; rr < ys; rr++) {
                        if (rr >= nr) {
                            ASSERT(isnan(y[c * ys + rr])); /* padding untouched */
                            continue;
                        }
                        expect_close("gemm", t, n, y[c * ys + rr], ref[c * GEMM_MAX + rr],
                                     tol[c * GEMM_MAX + rr]);
                    }
                }
            }
        }
    }
    /* No rows or no columns: nothing is written. */
    y[0] = NAN;
    k->gemm[t](n, w, ws, 0, x, xs, 5, y, 1);
    k->gemm[t](n, w, ws, 5, x, xs, 0, y, 1);
    ASSERT(isnan(y[0]));
    slm_free(wb);
    slm_free(xb);
    slm_free(ref);
    slm_free(tol);
    slm_free(y);
}

static void check_gemm(const char *name)
{
    const struct kernel_ops *k = table_or_skip(name);
    struct slm_rng r;

    slm_rng_seed(&r, 5);
    for (size_t ti = 0; ti < SLM_ARRAY_LEN(weight_types); ti++) {
        enum tensor_type t = weight_types[ti];

        ASSERT_NOT_NULL(k->gemm[t]);
        if (block_of(t) == 1) {
            check_gemm_type(k, t, 37, &r); /* vector tails */
            check_gemm_type(k, t, 64, &r);
        } else if (block_of(t) == 32) {
            check_gemm_type(k, t, 96, &r); /* a pair and a single block */
        } else {
            check_gemm_type(k, t, 512, &r);
        }
    }
}

TEST(kernels_avx2_gemm_matches_scalar)
{
    check_gemm("avx2");
}

TEST(kernels_avx512_gemm_matches_scalar)
{
    check_gemm("avx512");
}

TEST(kernels_scalar_gemm_rows_and_columns)
{
    /* The reference gemm on a tiny hand-checked F32 case. */
    const float w[6] = { 1, 2, 3, 4, 5, 6 };  /* 2 rows of 3 */
    const float x[6] = { 1, 0, -1, 2, 2, 2 }; /* 2 columns of 3 */
    float y[4];

    kernels_scalar.gemm[TENSOR_TYPE_F32](3, w, 12, 2, x, 12, 2, y, 2);
    ASSERT(y[0] == -2.0f && y[1] == -2.0f && y[2] == 12.0f && y[3] == 30.0f);
}

/* ---- from_float ---- */

/* Gaussian data with special values planted in some blocks. */
static void fill_specials(struct slm_rng *r, float *x, size_t n)
{
    static const uint32_t special[] = {
        0x7fc00000u, 0xff800001u, 0x7f800000u, 0xff800000u, 0x00000001u,
        0x80000001u, 0x007fffffu, 0x80000000u, 0x7f7fffffu, 0x00800000u,
    };

    for (size_t i = 0; i < n; i++)
        x[i] = slm_rng_normal(r);
    for (size_t i = 0; i < n; i += 1 + slm_rng_below(r, 300)) {
        uint32_t u = special[slm_rng_below(r, SLM_ARRAY_LEN(special))];

        memcpy(&x[i], &u, sizeof(u));
    }
    /* A block of zeros and a block of subnormals where there is room. */
    if (n >= 768) {
        memset(x + 256, 0, 256 * sizeof(float));
        for (size_t i = 512; i < 768; i++) {
            uint32_t u = (uint32_t)slm_rng_below(r, 0x800000) | (i % 2 ? 0x80000000u : 0);

            memcpy(&x[i], &u, sizeof(u));
        }
    }
}

static void check_from_float(const char *name)
{
    const struct kernel_ops *k = table_or_skip(name);
    static const enum tensor_type act[] = { TENSOR_TYPE_F32,  TENSOR_TYPE_F16,  TENSOR_TYPE_BF16,
                                            TENSOR_TYPE_Q8_0, TENSOR_TYPE_Q8_1, TENSOR_TYPE_Q8_K };
    struct slm_rng r;
    float *x = slm_xmalloc(2048 * sizeof(float) + 64);
    uint8_t *a = slm_xmalloc(8192 + 64), *b = slm_xmalloc(8192 + 64);

    slm_rng_seed(&r, 9);
    for (size_t ti = 0; ti < SLM_ARRAY_LEN(act); ti++) {
        enum tensor_type t = act[ti];
        size_t bs = block_of(t);

        ASSERT_NOT_NULL(k->from_float[t]);
        for (size_t n = 0; n <= 2048;
             n += bs == 1 ? (n < 70 ? 1 : 489) : bs * (n < 4 * bs ? 1 : 3)) {
            float *xs = x + 1; /* 4-byte aligned, not 8 */
            size_t sz = row_bytes(t, n), off = 16 + type_align(t);

            fill_specials(&r, xs, n);
            memset(a, 0x5a, 8192 + 64);
            memset(b, 0x5a, 8192 + 64);
            kernels_scalar.from_float[t](xs, a + off, n);
            k->from_float[t](xs, b + off, n);
            if (memcmp(a, b, 8192 + 64) != 0)
                t_fail(__FILE__, __LINE__, "from_float %s n=%zu: bytes differ from scalar",
                       tensor_type_name(t), n);
            ASSERT(sz <= 8192);
        }
    }
    slm_free(x);
    slm_free(a);
    slm_free(b);
}

TEST(kernels_avx2_from_float_bit_identical)
{
    check_from_float("avx2");
}

TEST(kernels_avx512_from_float_bit_identical)
{
    check_from_float("avx512");
}

TEST(kernels_scalar_from_float_formats)
{
    float x[256];
    struct block_q8_0 q0;
    struct block_q8_k qk;

    for (int i = 0; i < 256; i++)
        x[i] = (float)(i - 100) * 0.5f; /* amax 78 at i = 255 */
    kernels_scalar.from_float[TENSOR_TYPE_Q8_0](x, &q0, 32);
    ASSERT_EQ_INT(q0.d, f32_to_fp16(50.0f / 127));
    ASSERT_EQ_INT(q0.qs[0], -127);
    ASSERT_EQ_INT(q0.qs[31], (int)rintf(-34.5f * (127 / 50.0f)));
    kernels_scalar.from_float[TENSOR_TYPE_Q8_K](x, &qk, 256);
    ASSERT_EQ_INT(qk.qs[255], 127);
    for (int g = 0; g < 16; g++) {
        int s = 0;

        for (int l = 0; l < 16; l++)
            s += qk.qs[16 * g + l];
        ASSERT_EQ_INT(qk.bsums[g], s);
    }
    x[7] = NAN;
    kernels_scalar.from_float[TENSOR_TYPE_Q8_K](x, &qk, 256);
    ASSERT(isnan(qk.d) && qk.qs[0] == 0 && qk.bsums[3] == 0);
}

/*
 * Q8_1 activations and the Q5_1 product against values worked out here,
 * not against another table: the block x[i] = (i - 100) / 2, i < 32 (amax
 * 50) has d = f16(50 / 127), q = rint(x * (127 / 50)), s = f16(sum(q) *
 * (50 / 127)) with the f32 scale; a block holding NaN has d = s = NaN and
 * zero quants. A Q5_1 row dotted with Q8_1 activations equals the dot of the
 * dequantized rows (in double) up to the f16 rounding of each block's s
 * (2^-11 relative, 2^-25 absolute where s is subnormal) times |m| and the
 * float rounding bound of dot_tolerance.
 */
static void check_q8_1_q5_1(const char *name)
{
    const struct kernel_ops *k = name ? table_or_skip(name) : &kernels_scalar;
    const size_t n = 512;
    struct block_q8_1 b[2];
    struct block_q5_1 *w = slm_xmalloc(n / QK5_1 * sizeof(*w));
    struct block_q8_1 *xq = slm_xmalloc(n / QK8_1 * sizeof(*xq));
    float x[64], *f = slm_xmalloc(n * sizeof(float)), *wf = slm_xmalloc(n * sizeof(float));
    float *xf = slm_xmalloc(n * sizeof(float)), got;
    struct slm_rng r;
    double want = 0, tol;
    int sum = 0;

    for (int i = 0; i < 64; i++)
        x[i] = (float)(i - 100) * 0.5f;
    x[40] = NAN;
    memset(b, 0x5a, sizeof(b));
    k->from_float[TENSOR_TYPE_Q8_1](x, b, 64);
    ASSERT_EQ_INT(b[0].d, f32_to_fp16(50.0f / 127));
    for (int j = 0; j < 32; j++) {
        int q = (int)rintf(x[j] * (127.0f / 50.0f));

        ASSERT_EQ_INT(b[0].qs[j], q);
        sum += q;
    }
    ASSERT_EQ_INT(b[0].qs[0], -127);
    ASSERT_EQ_INT(b[0].s, f32_to_fp16((float)sum * (50.0f / 127)));
    ASSERT_EQ_INT(b[1].d, 0x7e00);
    ASSERT_EQ_INT(b[1].s, 0x7e00);
    for (int j = 0; j < 32; j++)
        ASSERT_EQ_INT(b[1].qs[j], 0);

    slm_rng_seed(&r, 23);
    for (int round = 0; round < 20; round++) {
        fill_floats(&r, f, n, 0.05f);
        if (round % 2) /* all-positive rows: large minimums */
            for (size_t i = 0; i < n; i++)
                f[i] = fabsf(f[i]);
        ASSERT_OK(quant_quantize_row(TENSOR_TYPE_Q5_1, f, w, n));
        fill_floats(&r, f, n, 1.0f);
        k->from_float[TENSOR_TYPE_Q8_1](f, xq, n);
        ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q5_1, w, wf, n));
        ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q8_1, xq, xf, n));
        want = 0;
        for (size_t i = 0; i < n; i++)
            want += (double)wf[i] * xf[i];
        tol = dot_tolerance(TENSOR_TYPE_Q5_1, (const uint8_t *)w, (const uint8_t *)xq, n);
        for (size_t ib = 0; ib < n / QK5_1; ib++)
            tol += fabs((double)fp16_to_f32(w[ib].m)) *
                   (fabs((double)fp16_to_f32(xq[ib].s)) * 0x1p-11 + 0x1p-25);
        k->vec_dot[TENSOR_TYPE_Q5_1](n, &got, w, xq);
        expect_close("q5_1 dot vs dequantized", TENSOR_TYPE_Q5_1, n, got, (float)want, tol);
        k->gemm[TENSOR_TYPE_Q5_1](n, w, 0, 1, xq, 0, 1, &got, 1);
        expect_close("q5_1 gemm vs dequantized", TENSOR_TYPE_Q5_1, n, got, (float)want, tol);
    }
    slm_free(w);
    slm_free(xq);
    slm_free(f);
    slm_free(wf);
    slm_free(xf);
}

TEST(kernels_scalar_q8_1_q5_1_worked_values)
{
    check_q8_1_q5_1(NULL);
}

TEST(kernels_avx2_q8_1_q5_1_worked_values)
{
    check_q8_1_q5_1("avx2");
}

TEST(kernels_avx512_q8_1_q5_1_worked_values)
{
    check_q8_1_q5_1("avx512");
}

/*
 * Repacked weights (kernel_ops.pack / gemm_packed): for Q8_0 the packed
 * product must equal the same table's unpacked gemm bit for bit below 32
 * columns (decode and short prompts keep llama.cpp's rounding); every type
 * must be within the quantized
 * dot tolerance of the scalar reference for every shape, with rows in whole
 * groups, column counts that exercise every tile width and their tails, and
 * the padding of y untouched. The packed copy has exactly the rows' bytes.
 */
static void check_packed_type(const struct kernel_ops *k, enum tensor_type t, size_t n,
                              struct slm_rng *r)
{
    static const size_t rows[] = { 16, 48, 80 };
    static const size_t cols[] = { 1, 2, 3, 5, 16, 31, 32, 33, 39, 40, 46, 64, 71 };
    enum tensor_type vt = kernels_vec_dot_type(t);
    size_t ws = row_bytes(t, n), xs = row_bytes(vt, n) + type_align(vt), nr_max = 80, nc_max = 71;
    uint8_t *w = slm_xmalloc(nr_max * ws), *pk = slm_xmalloc(nr_max * ws + 8);
    uint8_t *xb = slm_xmalloc(nc_max * xs + 64), *x = xb + 16 + type_align(vt);
    float *ref = slm_xmalloc(nr_max * nc_max * sizeof(float));
    float *un = slm_xmalloc((nr_max + 3) * nc_max * sizeof(float));
    float *y = slm_xmalloc((nr_max + 3) * nc_max * sizeof(float));

    make_weights(r, t, n, nr_max, w, ws);
    make_acts(r, vt, n, nc_max, x, xs);
    memset(pk + nr_max * ws, 0x5a, 8);
    k->pack[t](w, ws, nr_max, pk);
    for (size_t i = 0; i < 8; i++)
        ASSERT_EQ_INT(pk[nr_max * ws + i], 0x5a);
    /* Every row unpacks to its bytes in the file layout, and no further. */
    ASSERT_NOT_NULL(k->unpack[t]);
    for (size_t rr = 0; rr < nr_max; rr++) {
        memset(y, 0x5a, ws + 8);
        k->unpack[t](pk + (rr - rr % KERNELS_PACK_ROWS) * ws, ws, rr % KERNELS_PACK_ROWS, y);
        ASSERT(memcmp(y, w + rr * ws, ws) == 0);
        ASSERT_EQ_INT(((uint8_t *)y)[ws], 0x5a);
    }
    kernels_scalar.gemm[t](n, w, ws, nr_max, x, xs, nc_max, ref, nr_max);
    for (size_t ri = 0; ri < SLM_ARRAY_LEN(rows); ri++)
        for (size_t ci = 0; ci < SLM_ARRAY_LEN(cols); ci++) {
            size_t nr = rows[ri], nc = cols[ci], ys = nr + 3;

            for (size_t i = 0; i < ys * nc; i++)
                y[i] = NAN;
            k->gemm_packed[t](n, pk, ws, nr, x, xs, nc, y, ys);
            k->gemm[t](n, w, ws, nr, x, xs, nc, un, ys);
            for (size_t c = 0; c < nc; c++)
                for (size_t rr = 0; rr < ys; rr++) {
                    float got = y[c * ys + rr];

                    if (rr >= nr) {
                        ASSERT(isnan(got));
                        continue;
                    }
                    expect_close("gemm_packed", t, n, got, ref[c * nr_max + rr],
                                 dot_tolerance(t, w + rr * ws, x + c * xs, n));
                    if (t == TENSOR_TYPE_Q8_0 && nc < 32 &&
                        memcmp(&got, &un[c * ys + rr], sizeof(got)) != 0)
                        t_fail(__FILE__, __LINE__,
                               "gemm_packed %s n %zu: %zu columns, row %zu col %zu: %.9g, "
                               "unpacked %.9g (must be bit-identical)",
                               tensor_type_name(t), n, nc, rr, c, (double)got,
                               (double)un[c * ys + rr]);
                }
        }
    /* A group in the middle: rows 16..47 of the packed matrix. */
    k->gemm_packed[t](n, pk + 16 * ws, ws, 32, x, xs, 3, y, 32);
    for (size_t c = 0; c < 3; c++)
        for (size_t rr = 0; rr < 32; rr++)
            expect_close("gemm_packed offset", t, n, y[c * 32 + rr], ref[c * nr_max + 16 + rr],
                         dot_tolerance(t, w + (16 + rr) * ws, x + c * xs, n));
    slm_free(w);
    slm_free(pk);
    slm_free(xb);
    slm_free(ref);
    slm_free(un);
    slm_free(y);
}

TEST(kernels_avx512_packed_gemm_matches_scalar)
{
    const struct kernel_ops *k = table_or_skip("avx512");
    struct slm_rng r;
    size_t n_packed = 0;

    slm_rng_seed(&r, 41);
    for (size_t ti = 0; ti < SLM_ARRAY_LEN(weight_types); ti++) {
        enum tensor_type t = weight_types[ti];

        if (k->pack[t] == NULL) continue;
        ASSERT_NOT_NULL(k->gemm_packed[t]);
        /* Floats and 32-element blocks: 256, 1024, 288; super-blocks: 2 and 7. */
        check_packed_type(k, t, block_of(t) <= 32 ? 256 : 2 * block_of(t), &r);
        check_packed_type(k, t, block_of(t) <= 32 ? 1024 : 7 * block_of(t), &r);
        /* Not a multiple of 128: the F16 kernel's partial chunk. */
        if (block_of(t) <= 32) check_packed_type(k, t, 288, &r);
        n_packed++;
    }
    ASSERT(n_packed >= 1); /* Q8_0 at least */
}

/*
 * The F16 and BF16 packers (vectorised transposes) against the layouts of
 * kernels_avx512_float.c written out here element by element:
 *   F16:  element k of row r of group g at g * 16 * n + k * 16 + r
 *   BF16: element k of row r of group g at g * 16 * n + (k / 2) * 32 + 2 r + k % 2
 * on random 16-bit patterns (every byte is copied, whatever it encodes),
 * for the row lengths the loader passes (multiples of 32) and two it never
 * passes (the element-by-element tails), source rows not 64-byte aligned,
 * nothing written past the packed rows and the source left unchanged.
 * Every row also unpacks back to its bytes.
 */
static void check_pack_16bit(const struct kernel_ops *k, enum tensor_type t, size_t n, size_t nr,
                             struct slm_rng *r)
{
    size_t ws = n * sizeof(uint16_t), total = n * nr;
    uint16_t *src = slm_xmalloc(total * sizeof(uint16_t) + 64), *w = src + 1;
    uint16_t *copy = slm_xmalloc(total * sizeof(uint16_t) + 2);
    uint16_t *want = slm_xmalloc(total * sizeof(uint16_t) + 2);
    uint16_t *got = slm_xmalloc(total * sizeof(uint16_t) + 64), *row = slm_xmalloc(ws + 64);

    for (size_t i = 0; i < total; i++)
        w[i] = (uint16_t)slm_rng_next(r);
    memcpy(copy, w, total * sizeof(uint16_t));
    for (size_t g = 0; g < nr; g += KERNELS_PACK_ROWS)
        for (size_t rr = 0; rr < KERNELS_PACK_ROWS; rr++)
            for (size_t e = 0; e < n; e++) {
                size_t at = t == TENSOR_TYPE_F16 ? e * KERNELS_PACK_ROWS + rr
                                                 : (e / 2) * 2 * KERNELS_PACK_ROWS + 2 * rr + e % 2;

                want[g * n + at] = w[(g + rr) * n + e];
            }
    memset(got, 0x5a, total * sizeof(uint16_t) + 64);
    k->pack[t](w, ws, nr, got);
    for (size_t i = 0; i < total; i++)
        if (got[i] != want[i])
            t_fail(__FILE__, __LINE__,
                   "pack %s n %zu rows %zu: halfword %zu (group %zu, offset %zu) is 0x%04x, "
                   "want 0x%04x",
                   tensor_type_name(t), n, nr, i, i / (KERNELS_PACK_ROWS * n),
                   i % (KERNELS_PACK_ROWS * n), got[i], want[i]);
    for (size_t i = 0; i < 64; i++)
        ASSERT_EQ_INT(((uint8_t *)(got + total))[i], 0x5a);
    ASSERT(memcmp(copy, w, total * sizeof(uint16_t)) == 0);
    for (size_t rr = 0; rr < nr; rr++) {
        memset(row, 0x5a, ws + 64);
        k->unpack[t](got + (rr - rr % KERNELS_PACK_ROWS) * n, ws, rr % KERNELS_PACK_ROWS, row);
        if (memcmp(row, w + rr * n, ws) != 0)
            t_fail(__FILE__, __LINE__, "unpack %s n %zu: row %zu differs from its source",
                   tensor_type_name(t), n, rr);
        ASSERT_EQ_INT(((uint8_t *)row)[ws], 0x5a);
    }
    slm_free(src);
    slm_free(copy);
    slm_free(want);
    slm_free(got);
    slm_free(row);
}

TEST(kernels_avx512_pack_matches_reference)
{
    const struct kernel_ops *k = table_or_skip("avx512");
    static const size_t ns[] = { 32, 64, 96, 896, 2048, 2, 16, 40, 98 };
    static const size_t nrs[] = { 16, 32, 48 };
    static const enum tensor_type types[] = { TENSOR_TYPE_F16, TENSOR_TYPE_BF16 };
    struct slm_rng r;

    slm_rng_seed(&r, 77);
    for (size_t ti = 0; ti < SLM_ARRAY_LEN(types); ti++) {
        ASSERT_NOT_NULL(k->pack[types[ti]]);
        ASSERT_NOT_NULL(k->unpack[types[ti]]);
        for (size_t i = 0; i < SLM_ARRAY_LEN(ns); i++)
            for (size_t j = 0; j < SLM_ARRAY_LEN(nrs); j++)
                check_pack_16bit(k, types[ti], ns[i], nrs[j], &r);
    }
}

/* ---- f32 helpers ---- */

static void check_helpers(const char *name)
{
    const struct kernel_ops *k = table_or_skip(name);
    struct slm_rng r;
    float *a = slm_xmalloc(4200 * sizeof(float)), *b = slm_xmalloc(4200 * sizeof(float));
    float *y1 = slm_xmalloc(4200 * sizeof(float)), *y2 = slm_xmalloc(4200 * sizeof(float));
    uint16_t *h = slm_xmalloc(4200 * sizeof(uint16_t)), *h2 = slm_xmalloc(65536 * 2 + 16);
    float *f1 = slm_xmalloc(65536 * sizeof(float) + 16), *f2 = slm_xmalloc(65536 * 4 + 16);

    slm_rng_seed(&r, 13);
    for (size_t n = 0; n <= 4099; n += n < 80 ? 1 : 401) {
        float *as = a + 1, *bs = b + 3;
        uint16_t *hs = h + 1;
        double sab = 0, sah = 0;
        float alpha = slm_rng_normal(&r);

        for (size_t i = 0; i < n; i++) {
            as[i] = slm_rng_normal(&r);
            bs[i] = slm_rng_normal(&r);
            hs[i] = f32_to_fp16(slm_rng_normal(&r));
            sab += fabs((double)as[i] * bs[i]);
            sah += fabs((double)as[i] * fp16_to_f32(hs[i]));
        }
        expect_close("dot_f32", TENSOR_TYPE_F32, n, k->dot_f32(as, bs, n),
                     kernels_scalar.dot_f32(as, bs, n), 1e-5 * sab + 1e-30);
        expect_close("dot_f32_f16", TENSOR_TYPE_F16, n, k->dot_f32_f16(as, hs, n),
                     kernels_scalar.dot_f32_f16(as, hs, n), 1e-5 * sah + 1e-30);

        memcpy(y1, bs, n * sizeof(float));
        memcpy(y2, bs, n * sizeof(float));
        y1[n] = y2[n] = 42.0f;
        kernels_scalar.axpy_f32(n, alpha, as, y1);
        k->axpy_f32(n, alpha, as, y2);
        ASSERT(y2[n] == 42.0f);
        for (size_t i = 0; i < n; i++)
            expect_close("axpy_f32", TENSOR_TYPE_F32, n, y2[i], y1[i],
                         2 * FLT_EPSILON * (fabsf(alpha * as[i]) + fabsf(bs[i])));

        memcpy(y1, bs, n * sizeof(float));
        memcpy(y2, bs, n * sizeof(float));
        kernels_scalar.axpy_f16(n, alpha, hs, y1);
        k->axpy_f16(n, alpha, hs, y2);
        ASSERT(y2[n] == 42.0f);
        for (size_t i = 0; i < n; i++)
            expect_close("axpy_f16", TENSOR_TYPE_F16, n, y2[i], y1[i],
                         2 * FLT_EPSILON * (fabsf(alpha * fp16_to_f32(hs[i])) + fabsf(bs[i])));

        fill_specials(&r, as, n);
        h2[n + 1] = 0x1234;
        kernels_scalar.f32_to_f16(as, h + 1, n);
        k->f32_to_f16(as, h2 + 1, n);
        ASSERT(memcmp(h + 1, h2 + 1, n * sizeof(uint16_t)) == 0);
        ASSERT_EQ_INT(h2[n + 1], 0x1234);
    }
    /* f16 -> f32 over all 65536 values, at an offset. */
    for (uint32_t i = 0; i < 65536; i++)
        h2[i + 1] = (uint16_t)i;
    kernels_scalar.f16_to_f32(h2 + 1, f1 + 1, 65536);
    k->f16_to_f32(h2 + 1, f2 + 1, 65536);
    ASSERT(memcmp(f1 + 1, f2 + 1, 65536 * sizeof(float)) == 0);
    k->f16_to_f32(h2 + 1, f2 + 1, 0);
    slm_free(a);
    slm_free(b);
    slm_free(y1);
    slm_free(y2);
    slm_free(h);
    slm_free(h2);
    slm_free(f1);
    slm_free(f2);
}

TEST(kernels_avx2_helpers_match_scalar)
{
    check_helpers("avx2");
}

TEST(kernels_avx512_helpers_match_scalar)
{
    check_helpers("avx512");
}

/*
 * Decode-attention helpers over F16: dot_f16 sums like llama.cpp on each
 * instruction set, so AVX-512 must equal the scalar reference (which follows
 * the AVX-512 order) bit for bit and AVX2 within the dot tolerance; scale_f16
 * and mad_f16 round one F32 result to F16, so every table gives the same
 * bits. The reference itself is checked against a double sum.
 */
static void check_attn_f16(const char *name, bool same_order)
{
    const struct kernel_ops *k = table_or_skip(name);
    struct slm_rng r;
    uint16_t *a = slm_xmalloc(600 * sizeof(uint16_t)), *b = slm_xmalloc(600 * sizeof(uint16_t));
    uint16_t *y1 = slm_xmalloc(600 * sizeof(uint16_t)), *y2 = slm_xmalloc(600 * sizeof(uint16_t));

    slm_rng_seed(&r, 29);
    for (size_t n = 0; n <= 520; n += n < 140 ? 1 : 57) {
        uint16_t *as = a + 1, *bs = b + 3;
        double exact = 0, mag = 0;
        float s = 0.5f + slm_rng_float(&r), w = slm_rng_normal(&r);
        float ref, got;

        for (size_t i = 0; i < n; i++) {
            as[i] = f32_to_fp16(slm_rng_normal(&r));
            bs[i] = f32_to_fp16(4 * slm_rng_normal(&r));
            exact += (double)fp16_to_f32(as[i]) * fp16_to_f32(bs[i]);
            mag += fabs((double)fp16_to_f32(as[i]) * fp16_to_f32(bs[i]));
        }
        ref = kernels_scalar.dot_f16(as, bs, n);
        got = k->dot_f16(as, bs, n);
        ASSERT_NEAR(ref, exact, 1e-5 * mag + 1e-30);
        if (same_order)
            ASSERT(memcmp(&ref, &got, sizeof(float)) == 0);
        else
            expect_close("dot_f16", TENSOR_TYPE_F16, n, got, ref, 1e-5 * mag + 1e-30);

        memcpy(y1, bs, n * sizeof(uint16_t));
        memcpy(y2, bs, n * sizeof(uint16_t));
        y1[n] = y2[n] = 0x1234;
        kernels_scalar.scale_f16(n, s, y1);
        k->scale_f16(n, s, y2);
        ASSERT_EQ_INT(y2[n], 0x1234);
        ASSERT(memcmp(y1, y2, n * sizeof(uint16_t)) == 0);
        for (size_t i = 0; i < n; i++)
            ASSERT_EQ_INT(y1[i], f32_to_fp16(fp16_to_f32(bs[i]) * s));

        kernels_scalar.mad_f16(n, w, as, y1);
        k->mad_f16(n, w, as, y2);
        ASSERT_EQ_INT(y2[n], 0x1234);
        ASSERT(memcmp(y1, y2, n * sizeof(uint16_t)) == 0);
    }
    slm_free(a);
    slm_free(b);
    slm_free(y1);
    slm_free(y2);
}

/* ---- SwiGLU ---- */

/* Distance in units in the last place between two finite floats. */
static double ulp_diff(float a, double exact)
{
    double ulp = ldexp(1.0, ilogb(exact) - 23);

    return fabs((double)a - exact) / ulp;
}

TEST(kernels_expf_poly_accuracy_and_limits)
{
    double worst = 0;

    /* Every 1/1024 over the range where exp is a normal float. */
    for (float x = -87.0f; x <= 88.0f; x += 1.0f / 1024) {
        double d = ulp_diff(kernels__expf_poly(x), exp((double)x));

        if (d > worst) worst = d;
    }
    ASSERT(worst <= 2.5); /* measured: 2.18 ulp near x = 82 */
    ASSERT(worst > 0.0);  /* an approximation, not the C library */
    ASSERT_EQ_INT(kernels__expf_poly(0.0f) == 1.0f, 1);
    ASSERT(isnan(kernels__expf_poly(NAN)));
    ASSERT(kernels__expf_poly(-INFINITY) == 0.0f);
    ASSERT(isinf(kernels__expf_poly(INFINITY)) && kernels__expf_poly(INFINITY) > 0);
    ASSERT(kernels__expf_poly(-200.0f) == 0.0f);
    ASSERT(isinf(kernels__expf_poly(100.0f)));
    /* Results below FLT_MIN are rounded once (subnormals), not flushed. */
    ASSERT(kernels__expf_poly(-100.0f) > 0.0f && kernels__expf_poly(-100.0f) < FLT_MIN);
    ASSERT(ulp_diff(kernels__expf_poly(88.5f), exp(88.5)) <= 2.0);
}

/*
 * A dense sweep against the scalar table, bit for bit: a one-ulp change in
 * one coefficient of the exp polynomial changes about one SwiGLU output in
 * a thousand, which the few hundred random points of check_swiglu can miss.
 * Half the points lie evenly in [-16, 16], half in [-110, 110] (the
 * overflow and underflow ranges of the exponential).
 */
#define SWIGLU_SWEEP 65536

static void check_swiglu_sweep(const struct kernel_ops *k, const char *name)
{
    float *g = slm_xmalloc(SWIGLU_SWEEP * sizeof(float)),
          *u = slm_xmalloc(SWIGLU_SWEEP * sizeof(float));
    float *a = slm_xmalloc(SWIGLU_SWEEP * sizeof(float)),
          *b = slm_xmalloc(SWIGLU_SWEEP * sizeof(float));
    struct slm_rng r;
    size_t n_diff = 0, first = 0;

    slm_rng_seed(&r, 78);
    for (size_t i = 0; i < SWIGLU_SWEEP; i++) {
        float span = i < SWIGLU_SWEEP / 2 ? 16.0f : 110.0f;
        size_t half = SWIGLU_SWEEP / 2, j = i % half;

        g[i] = -span + 2 * span * (float)j / (float)half;
        u[i] = slm_rng_float(&r) * 4 - 2;
    }
    memcpy(a, g, SWIGLU_SWEEP * sizeof(float));
    memcpy(b, g, SWIGLU_SWEEP * sizeof(float));
    k->swiglu(SWIGLU_SWEEP, a, u);
    kernels__swiglu(SWIGLU_SWEEP, b, u);
    for (size_t i = 0; i < SWIGLU_SWEEP; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) == 0) continue;
        if (n_diff++ == 0) first = i;
    }
    if (n_diff != 0)
        t_fail(__FILE__, __LINE__,
               "%s swiglu sweep: %zu of %d differ, first x %.9g: %.9g, scalar %.9g", name, n_diff,
               SWIGLU_SWEEP, (double)g[first], (double)a[first], (double)b[first]);
    slm_free(g);
    slm_free(u);
    slm_free(a);
    slm_free(b);
}

/*
 * Every table's swiglu gives the scalar table's bits (so decode, prompt
 * batches and SLM_CPU=scalar agree), the first n - n % 16 elements use the
 * approximation and the tail the C library, and the result is SiLU * up
 * within a few ulp of the exact value; non-finite inputs follow IEEE.
 */
static void check_swiglu(const char *name)
{
    static const size_t ns[] = { 1, 7, 15, 16, 17, 31, 32, 48, 100, 1024 };
    static const float special[] = { 0.0f,   -0.0f,   1e-30f,   -1e-30f,   88.0f,
                                     -88.0f, 89.0f,   -89.0f,   -104.0f,   104.0f,
                                     300.0f, -300.0f, INFINITY, -INFINITY, NAN };
    const struct kernel_ops *k = table_or_skip(name);
    float *g = slm_xmalloc(1024 * sizeof(float)), *u = slm_xmalloc(1024 * sizeof(float));
    float *a = slm_xmalloc(1024 * sizeof(float)), *b = slm_xmalloc(1024 * sizeof(float));
    struct slm_rng r;

    slm_rng_seed(&r, 77);
    for (size_t ni = 0; ni < SLM_ARRAY_LEN(ns); ni++) {
        size_t n = ns[ni], head = n - n % 16;

        for (size_t i = 0; i < n; i++) {
            g[i] = slm_rng_float(&r) * 24 - 12;
            u[i] = slm_rng_float(&r) * 4 - 2;
        }
        for (size_t i = 0; i < SLM_ARRAY_LEN(special) && i < n; i++)
            g[(i * 7) % n] = special[i];
        memcpy(a, g, n * sizeof(float));
        memcpy(b, g, n * sizeof(float));
        k->swiglu(n, a, u);
        kernels__swiglu(n, b, u);
        for (size_t i = 0; i < n; i++) {
            float x = g[i],
                  want = x / (1.0f + (i < head ? kernels__expf_poly(-x) : expf(-x))) * u[i];
            double exact = (double)x / (1.0 + exp(-(double)x)) * u[i];

            if (memcmp(&a[i], &b[i], sizeof(float)) != 0 ||
                memcmp(&b[i], &want, sizeof(float)) != 0)
                t_fail(__FILE__, __LINE__,
                       "%s swiglu n %zu [%zu]: x %.9g: %.9g, scalar %.9g, want %.9g", name, n, i,
                       (double)x, (double)a[i], (double)b[i], (double)want);
            if (isfinite(x) && fabs(exact) > 1e-30)
                ASSERT(fabs(b[i] - exact) <= 1e-6 * fabs(exact) + 1e-38);
        }
    }
    slm_free(g);
    slm_free(u);
    slm_free(a);
    slm_free(b);
    check_swiglu_sweep(k, name);
}

TEST(kernels_scalar_swiglu_reference)
{
    check_swiglu("scalar");
}

TEST(kernels_avx2_swiglu_matches_scalar)
{
    check_swiglu("avx2");
}

TEST(kernels_avx512_swiglu_matches_scalar)
{
    check_swiglu("avx512");
}

TEST(kernels_avx2_attention_f16_matches_scalar)
{
    check_attn_f16("avx2", false);
}

TEST(kernels_avx512_attention_f16_matches_scalar_bitwise)
{
    check_attn_f16("avx512", true);
}

/*
 * attn_tile against attention computed in double from the same F16 keys and
 * values: several head sizes, row counts up to KERNELS_ATTN_ROWS, rows with
 * different causal lengths (some ending before later key tiles, lengths
 * that are and are not multiples of the tile), scores large enough that the
 * running maximum changes between tiles. Tolerance: 2e-6 of the largest |V|
 * (F32 sums of at most a few hundred terms, the exp to ~1 ulp; measured
 * worst 1.2e-7, T_VERBOSE=1 prints it).
 */
static void check_attn_tile(const char *name)
{
    const struct kernel_ops *k = table_or_skip(name);
    static const size_t hds[] = { 16, 48, 64, 80, 128 };
    static const size_t nrs[] = { 1, 3, 4, 7, 64 };
    struct slm_rng r;

    double worst = 0;

    if (k->attn_tile == NULL) SKIP("no attn_tile in this table");
    slm_rng_seed(&r, 31);
    for (size_t ih = 0; ih < sizeof(hds) / sizeof(hds[0]); ih++)
        for (size_t ir = 0; ir < sizeof(nrs) / sizeof(nrs[0]); ir++) {
            size_t hd = hds[ih], nr = nrs[ir], n_max = 1 + slm_rng_below(&r, 200);
            uint16_t *K = slm_xmalloc(n_max * hd * sizeof(uint16_t));
            uint16_t *V = slm_xmalloc(n_max * hd * sizeof(uint16_t));
            float *qs = slm_xmalloc(nr * hd * sizeof(float));
            float *outs = slm_xmalloc(nr * (hd + 1) * sizeof(float));
            float *work = slm_aligned_alloc(64, kernels_attn_work_floats(hd) * sizeof(float));
            const float *q[KERNELS_ATTN_ROWS];
            float *out[KERNELS_ATTN_ROWS];
            int32_t n[KERNELS_ATTN_ROWS];
            double vmax = 0, *sc = slm_xmalloc(n_max * sizeof(double));
            float scale = 1.0f / sqrtf((float)hd);

            ASSERT(work != NULL);
            for (size_t i = 0; i < n_max * hd; i++) {
                K[i] = f32_to_fp16(2 * slm_rng_normal(&r));
                V[i] = f32_to_fp16(slm_rng_normal(&r));
                if (fabs(fp16_to_f32(V[i])) > vmax) vmax = fabs(fp16_to_f32(V[i]));
            }
            for (size_t row = 0; row < nr; row++) {
                for (size_t i = 0; i < hd; i++)
                    qs[row * hd + i] = slm_rng_normal(&r);
                q[row] = qs + row * hd;
                out[row] = outs + row * (hd + 1);
                out[row][hd] = 42.0f;
                /* The last row always reaches n_max; the others anywhere. */
                n[row] = row + 1 == nr ? (int32_t)n_max : (int32_t)(1 + slm_rng_below(&r, n_max));
            }
            k->attn_tile(hd, nr, q, out, n, K, V, scale, work);
            for (size_t row = 0; row < nr; row++) {
                double mx = -INFINITY, l = 0;

                ASSERT(out[row][hd] == 42.0f);
                for (int32_t j = 0; j < n[row]; j++) {
                    double dot = 0;

                    for (size_t i = 0; i < hd; i++)
                        dot += (double)q[row][i] * fp16_to_f32(K[(size_t)j * hd + i]);
                    sc[j] = dot * scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int32_t j = 0; j < n[row]; j++)
                    l += exp(sc[j] - mx);
                for (size_t i = 0; i < hd; i++) {
                    double want = 0;

                    for (int32_t j = 0; j < n[row]; j++)
                        want += exp(sc[j] - mx) / l * fp16_to_f32(V[(size_t)j * hd + i]);
                    if (fabs(out[row][i] - want) / vmax > worst)
                        worst = fabs(out[row][i] - want) / vmax;
                    if (fabs(out[row][i] - want) > 2e-6 * vmax)
                        t_fail(__FILE__, __LINE__,
                               "%s attn_tile hd %zu nr %zu row %zu (n %d) dim %zu: %.9g, want %.9g",
                               name, hd, nr, row, n[row], i, (double)out[row][i], want);
                }
            }
            slm_free(sc);
            slm_free(work);
            if (t_env("T_VERBOSE", NULL) != NULL) fprintf(stderr, "# worst %.3g\n", worst);
            slm_free(outs);
            slm_free(qs);
            slm_free(V);
            slm_free(K);
        }
}

TEST(kernels_avx512_attn_tile_matches_double_reference)
{
    check_attn_tile("avx512");
}

/* ---- E02: NaN, infinity, subnormals ---- */

static void check_nonfinite(const char *name)
{
    const struct kernel_ops *k = name ? table_or_skip(name) : &kernels_scalar;
    struct slm_rng r;

    slm_rng_seed(&r, 17);
    for (size_t ti = 0; ti < SLM_ARRAY_LEN(weight_types); ti++) {
        enum tensor_type t = weight_types[ti], vt = kernels_vec_dot_type(t);
        size_t n = 512, ox = 16 + type_align(vt);
        uint8_t *w = slm_xmalloc(row_bytes(t, n) + 64), *xb = slm_xmalloc(row_bytes(vt, n) + 64);
        float f[512], got, want;

        make_weights(&r, t, n, 1, w + 16 + type_align(t), 0);
        /* A NaN activation makes the dot product NaN on every path. */
        fill_floats(&r, f, n, 1.0f);
        f[300] = NAN;
        k->from_float[vt](f, xb + ox, n);
        k->vec_dot[t](n, &got, w + 16 + type_align(t), xb + ox);
        ASSERT(isnan(got));
        /* Subnormal activations: finite, and equal to the reference within tolerance. */
        for (size_t i = 0; i < n; i++)
            f[i] = (float)(i % 17) * 1e-41f;
        kernels_scalar.from_float[vt](f, xb + ox, n);
        kernels_scalar.vec_dot[t](n, &want, w + 16 + type_align(t), xb + ox);
        k->vec_dot[t](n, &got, w + 16 + type_align(t), xb + ox);
        ASSERT(isfinite(got) && isfinite(want));
        ASSERT(fabsf(got - want) <= 1e-30f);
        slm_free(w);
        slm_free(xb);
    }
}

TEST(kernels_scalar_nonfinite_inputs_defined)
{
    check_nonfinite(NULL);
}

TEST(kernels_avx2_nonfinite_inputs_defined)
{
    check_nonfinite("avx2");
}

TEST(kernels_avx512_nonfinite_inputs_defined)
{
    check_nonfinite("avx512");
}

/* ---- selection ---- */

TEST(kernels_vec_dot_types)
{
    ASSERT_EQ_INT(kernels_vec_dot_type(TENSOR_TYPE_F32), TENSOR_TYPE_F32);
    ASSERT_EQ_INT(kernels_vec_dot_type(TENSOR_TYPE_BF16), TENSOR_TYPE_BF16);
    ASSERT_EQ_INT(kernels_vec_dot_type(TENSOR_TYPE_Q4_0), TENSOR_TYPE_Q8_0);
    ASSERT_EQ_INT(kernels_vec_dot_type(TENSOR_TYPE_Q5_0), TENSOR_TYPE_Q8_0);
    ASSERT_EQ_INT(kernels_vec_dot_type(TENSOR_TYPE_Q5_1), TENSOR_TYPE_Q8_1);
    ASSERT_EQ_INT(kernels_vec_dot_type(TENSOR_TYPE_Q6_K), TENSOR_TYPE_Q8_K);
    ASSERT_EQ_INT(kernels_vec_dot_type(TENSOR_TYPE_Q2_K), TENSOR_TYPE_COUNT);
    ASSERT_EQ_INT(kernels_vec_dot_type(TENSOR_TYPE_Q8_K), TENSOR_TYPE_COUNT);
}

TEST(kernels_scalar_forced_by_env)
{
    ASSERT_OK(setenv("SLM_CPU", "scalar", 1));
    ASSERT_EQ_STR(kernels_get()->name, "scalar");
    ASSERT(kernels_get() == &kernels_scalar);
}

static const char *best_name(void)
{
    if (kernels_get_named("avx512") != NULL) return "avx512";
    if (kernels_get_named("avx2") != NULL) return "avx2";
    return "scalar";
}

TEST(kernels_default_is_best_available)
{
    ASSERT_OK(unsetenv("SLM_CPU"));
    ASSERT_EQ_STR(kernels_get()->name, best_name());
    ASSERT_NOT_NULL(kernels_get_named("scalar"));
    ASSERT_NULL(kernels_get_named("sse9"));
    ASSERT_NULL(kernels_get_named(NULL));
}

TEST(kernels_unknown_env_value_falls_back)
{
    ASSERT_OK(setenv("SLM_CPU", "avx1024", 1));
    ASSERT_EQ_STR(kernels_get()->name, best_name());
}

TEST(kernels_unavailable_env_value_falls_back)
{
    /* Meaningful on a CPU without AVX-512 (e.g. under qemu -cpu qemu64). */
    if (kernels_get_named("avx512") != NULL) SKIP("this CPU has every path");
    ASSERT_OK(setenv("SLM_CPU", "avx512", 1));
    ASSERT_EQ_STR(kernels_get()->name, best_name());
}

TEST(kernels_cpu_features_consistent)
{
    const struct cpu_features *f = cpu_features_get();

    ASSERT(f == cpu_features_get());
    if (f->avx512f) ASSERT(f->avx2 && f->avx);
    if (f->avx2) ASSERT(f->avx);
    if (kernels_get_named("avx512") != NULL)
        ASSERT(f->avx512vnni && f->avx512bf16 && f->avx512bw && f->avx512vl);
}

TEST(kernels_selected_path_is_expected)
{
    /* tests/integration/test_cpu.sh sets SLM_KERNELS_EXPECT (e.g. under qemu64). */
    const char *want = getenv("SLM_KERNELS_EXPECT");

    if (want == NULL) SKIP("SLM_KERNELS_EXPECT not set");
    ASSERT_EQ_STR(kernels_get()->name, want);
}
