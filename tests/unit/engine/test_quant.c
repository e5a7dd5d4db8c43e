/*
 * test_quant.c - tensor types, f16/bf16 conversions and the block formats
 * (src/engine/quant.c, quant_types.c).
 *
 * Dequantization is checked against blocks built by hand from the format
 * description (quant.h, ggml-common.h), not against our own quantizer; the
 * quantizers against golden hashes of llama.cpp's reference quantizers
 * (quantize_row_*_ref through ggml_quantize_chunk, computed once with
 * libggml-base) and against per-type error bounds; the conversions
 * exhaustively against straightforward reference implementations.
 */
#include <float.h>
#include <math.h>

#include "core/alloc.h"
#include "core/rand.h"
#include "engine/quant.h"
#include "harness/t.h"

static uint32_t f2u(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    return u;
}

static float u2f(uint32_t u)
{
    float f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

/* IEEE half -> double, straight from the definition. */
static double ref_half(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;

    if (e == 0)
        v = ldexp(m, -24);
    else if (e == 31)
        v = m == 0 ? INFINITY : NAN;
    else
        v = ldexp(1024 + m, e - 25);
    return sign ? -v : v;
}

TEST(quant_f16_to_f32_exhaustive)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_f32((uint16_t)h);
        double r = ref_half((uint16_t)h);

        if (isnan(r)) {
            /* NaN keeps sign and payload and becomes quiet (as vcvtph2ps). */
            ASSERT(isnan(f));
            ASSERT_EQ_INT(f2u(f), ((h & 0x8000u) << 16) | 0x7fc00000u | ((h & 0x3ffu) << 13));
        } else {
            ASSERT(f == r);
            ASSERT_EQ_INT(signbit(f) != 0, (h >> 15) != 0);
        }
    }
}

/* Nearest half by search over the ordered positive halves, ties to even. */
static uint16_t ref_f32_to_half(float f)
{
    double a = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    uint32_t lo = 0, hi = 0x7c00;

    if (isnan(f)) return (uint16_t)(sign | 0x7e00);
    /* Largest half <= a (0x7c00 is infinity, above every finite a). */
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;

        if (ref_half((uint16_t)mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    if (ref_half((uint16_t)lo) == a) return (uint16_t)(sign | lo);
    {
        /* Above 65504 the next "value" is 65536 for rounding purposes. */
        double up = lo == 0x7bff ? 65536.0 : ref_half((uint16_t)(lo + 1));
        double dl = a - ref_half((uint16_t)lo), du = up - a;

        if (dl < du || (dl == du && (lo & 1) == 0)) return (uint16_t)(sign | lo);
        return (uint16_t)(sign | (lo + 1));
    }
}

TEST(quant_f32_to_f16_exhaustive_halves_and_midpoints)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_f32((uint16_t)h);

        if (isnan(f)) {
            uint16_t back = f32_to_fp16(f);

            ASSERT(isnan(fp16_to_f32(back)));
            ASSERT_EQ_INT(back & 0x8000, h & 0x8000);
            continue;
        }
        ASSERT_EQ_INT(f32_to_fp16(f), h);
        /* The midpoint to the next half up in magnitude and its neighbours. */
        if ((h & 0x7fff) < 0x7c00) {
            double up = (h & 0x7fff) == 0x7bff ? 65536.0 : fabs(ref_half((uint16_t)(h + 1)));
            double mid = (fabs((double)f) + up) / 2;
            float m = (float)(signbit(f) ? -mid : mid);

            ASSERT((double)fabsf(m) == mid); /* midpoints fit in a float */
            ASSERT_EQ_INT(f32_to_fp16(m), ref_f32_to_half(m));
            ASSERT_EQ_INT(f32_to_fp16(nextafterf(m, 0)), ref_f32_to_half(nextafterf(m, 0)));
            ASSERT_EQ_INT(f32_to_fp16(nextafterf(m, copysignf(INFINITY, m))),
                          ref_f32_to_half(nextafterf(m, copysignf(INFINITY, m))));
        }
    }
    ASSERT_EQ_INT(f32_to_fp16(65520.0f), 0x7c00);
    ASSERT_EQ_INT(f32_to_fp16(nextafterf(65520.0f, 0)), 0x7bff);
    ASSERT_EQ_INT(f32_to_fp16(1e30f), 0x7c00);
    ASSERT_EQ_INT(f32_to_fp16(-INFINITY), 0xfc00);
    ASSERT_EQ_INT(f32_to_fp16(1e-30f), 0);
    ASSERT_EQ_INT(f32_to_fp16(-0.0f), 0x8000);
}

TEST(quant_f32_to_f16_random_against_reference)
{
    struct slm_rng r;

    slm_rng_seed(&r, 7);
    for (int i = 0; i < 300000; i++) {
        /* Random bits restricted to the exponents near the half range. */
        uint32_t u = (uint32_t)slm_rng_next(&r);
        uint32_t e = 96 + (uint32_t)slm_rng_below(&r, 52);
        float f = u2f((u & 0x807fffffu) | (e << 23));

        ASSERT_EQ_INT(f32_to_fp16(f), ref_f32_to_half(f));
    }
}

TEST(quant_bf16_exhaustive)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bf16_to_f32((uint16_t)h);

        ASSERT_EQ_INT(f2u(f), h << 16);
        if (isnan(f)) {
            ASSERT(isnan(bf16_to_f32(f32_to_bf16(f))));
            continue;
        }
        ASSERT_EQ_INT(f32_to_bf16(f), h);
        /* f + half an ulp: ties to even; one bit more: rounds up (away from zero). */
        if ((h & 0x7fff) < 0x7f80) {
            uint32_t mid = (h << 16) | 0x8000u;
            uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;

            ASSERT_EQ_INT(f32_to_bf16(u2f(mid)), even);
            ASSERT_EQ_INT(f32_to_bf16(u2f(mid + 1)), (uint16_t)(h + 1));
            ASSERT_EQ_INT(f32_to_bf16(u2f(mid - 1)), (uint16_t)h);
        }
    }
    /* A signalling NaN becomes quiet, keeping its sign. */
    ASSERT_EQ_INT(f32_to_bf16(u2f(0x7f800001u)), 0x7fc0);
    ASSERT_EQ_INT(f32_to_bf16(u2f(0xff800001u)), 0xffc0);
}

TEST(quant_type_table)
{
    enum tensor_type t;
    uint64_t sz;

    ASSERT_EQ_STR(tensor_type_name(TENSOR_TYPE_Q4_K), "q4_K");
    ASSERT_EQ_STR(tensor_type_name(4), "unknown");
    ASSERT_NULL(tensor_type_get(TENSOR_TYPE_COUNT));
    ASSERT_OK(tensor_type_from_name("Q6_K", &t));
    ASSERT_EQ_INT(t, TENSOR_TYPE_Q6_K);
    ASSERT_ERR(tensor_type_from_name("q7_k", &t), SLM_ENOTFOUND);
    ASSERT_OK(tensor_row_size(TENSOR_TYPE_Q4_K, 4096, &sz));
    ASSERT_EQ_SIZE(sz, 16 * 144);
    ASSERT_OK(tensor_row_size(TENSOR_TYPE_Q5_0, 64, &sz));
    ASSERT_EQ_SIZE(sz, 44);
    ASSERT_ERR(tensor_row_size(TENSOR_TYPE_Q4_K, 100, &sz), SLM_EINVAL);
    ASSERT_ERR(tensor_row_size(TENSOR_TYPE_F32, UINT64_MAX, &sz), SLM_ERANGE);
}

/* ---- dequantization of hand-built blocks ---- */

TEST(quant_dequant_q8_0_q4_0_hand_blocks)
{
    struct block_q8_0 b8;
    struct block_q4_0 b4;
    float y[32];

    b8.d = 0x3800; /* 0.5 */
    for (int j = 0; j < 32; j++)
        b8.qs[j] = (int8_t)(j * 8 - 128);
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q8_0, &b8, y, 32));
    for (int j = 0; j < 32; j++)
        ASSERT(y[j] == 0.5f * (float)(j * 8 - 128));

    b4.d = 0xc000; /* -2.0 */
    for (int j = 0; j < 16; j++)
        b4.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q4_0, &b4, y, 32));
    for (int j = 0; j < 16; j++) {
        ASSERT(y[j] == -2.0f * (float)(j - 8));
        ASSERT(y[j + 16] == -2.0f * (float)(15 - j - 8));
    }
}

TEST(quant_dequant_q5_0_q5_1_hand_blocks)
{
    struct block_q5_0 b0;
    struct block_q5_1 b1;
    uint32_t qh = 0xA5C3F00Fu;
    float y[32];

    b0.d = 0x3c00; /* 1.0 */
    memcpy(b0.qh, &qh, 4);
    for (int j = 0; j < 16; j++)
        b0.qs[j] = (uint8_t)((j * 7 % 16) | ((j * 3 % 16) << 4));
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q5_0, &b0, y, 32));
    for (int j = 0; j < 16; j++) {
        int q0 = (j * 7 % 16) | (int)((qh >> j) & 1) << 4;
        int q1 = (j * 3 % 16) | (int)((qh >> (j + 16)) & 1) << 4;

        ASSERT(y[j] == (float)(q0 - 16));
        ASSERT(y[j + 16] == (float)(q1 - 16));
    }

    b1.d = 0x3800; /* 0.5 */
    b1.m = 0xbc00; /* -1.0 */
    memcpy(b1.qh, &qh, 4);
    memcpy(b1.qs, b0.qs, 16);
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q5_1, &b1, y, 32));
    for (int j = 0; j < 16; j++) {
        int q0 = (j * 7 % 16) | (int)((qh >> j) & 1) << 4;
        int q1 = (j * 3 % 16) | (int)((qh >> (j + 16)) & 1) << 4;

        ASSERT(y[j] == 0.5f * (float)q0 - 1.0f);
        ASSERT(y[j + 16] == 0.5f * (float)q1 - 1.0f);
    }
}

/* Packs 6-bit scales and mins as the format describes (quant.h). */
static void pack_k4(const int sc[8], const int m[8], uint8_t out[12])
{
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

TEST(quant_dequant_q4_k_q5_k_hand_blocks)
{
    static const int sc[8] = { 1, 2, 63, 17, 48, 33, 5, 60 };
    static const int m[8] = { 0, 63, 7, 40, 16, 1, 50, 31 };
    struct block_q4_k b4;
    struct block_q5_k b5;
    float y[256];

    b4.d = 0x3400;    /* 0.25 */
    b4.dmin = 0x3800; /* 0.5 */
    pack_k4(sc, m, b4.scales);
    for (int i = 0; i < 128; i++)
        b4.qs[i] = (uint8_t)((i * 5 % 16) | ((i * 11 % 16) << 4));
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q4_K, &b4, y, 256));
    for (int e = 0; e < 256; e++) {
        int pair = e / 64, l = e % 32, hi = (e % 64) >= 32, sub = e / 32;
        int byte = b4.qs[32 * pair + l], q = hi ? byte >> 4 : byte & 15;

        ASSERT(y[e] == 0.25f * (float)(sc[sub] * q) - 0.5f * (float)m[sub]);
    }

    b5.d = b4.d;
    b5.dmin = b4.dmin;
    memcpy(b5.scales, b4.scales, 12);
    memcpy(b5.qs, b4.qs, 128);
    for (int l = 0; l < 32; l++)
        b5.qh[l] = (uint8_t)(l * 37 + 11);
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q5_K, &b5, y, 256));
    for (int e = 0; e < 256; e++) {
        int pair = e / 64, l = e % 32, hi = (e % 64) >= 32, sub = e / 32;
        int byte = b5.qs[32 * pair + l], q = hi ? byte >> 4 : byte & 15;

        q |= ((b5.qh[l] >> (2 * pair + hi)) & 1) << 4;
        ASSERT(y[e] == 0.25f * (float)(sc[sub] * q) - 0.5f * (float)m[sub]);
    }
}

TEST(quant_dequant_q6_k_q8_k_hand_blocks)
{
    struct block_q6_k b6;
    struct block_q8_k b8;
    float y[256];

    b6.d = 0x3000; /* 0.125 */
    for (int g = 0; g < 16; g++)
        b6.scales[g] = (int8_t)(g * 17 - 128);
    for (int i = 0; i < 128; i++)
        b6.ql[i] = (uint8_t)(i * 29 + 3);
    for (int i = 0; i < 64; i++)
        b6.qh[i] = (uint8_t)(i * 53 + 7);
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q6_K, &b6, y, 256));
    for (int e = 0; e < 256; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        int lb = b6.ql[64 * h + 32 * (k & 1) + l];
        int low = k < 2 ? lb & 15 : lb >> 4;
        int q = low | (((b6.qh[32 * h + l] >> (2 * k)) & 3) << 4);

        ASSERT(y[e] == 0.125f * (float)(b6.scales[e / 16] * (q - 32)));
    }

    b8.d = 0.375f;
    for (int i = 0; i < 256; i++)
        b8.qs[i] = (int8_t)(i - 128);
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q8_K, &b8, y, 256));
    for (int i = 0; i < 256; i++)
        ASSERT(y[i] == 0.375f * (float)(i - 128));
}

TEST(quant_bad_arguments)
{
    float x[64] = { 0 };
    uint8_t out[256];

    ASSERT_ERR(quant_quantize_row(TENSOR_TYPE_Q8_0, x, out, 33), SLM_EINVAL);
    ASSERT_ERR(quant_dequantize_row(TENSOR_TYPE_Q4_K, out, x, 32), SLM_EINVAL);
    ASSERT_ERR(quant_quantize_row(TENSOR_TYPE_Q2_K, x, out, 256), SLM_EUNSUPPORTED);
    ASSERT_ERR(quant_dequantize_row(TENSOR_TYPE_IQ4_XS, out, x, 256), SLM_EUNSUPPORTED);
    ASSERT_ERR(quant_quantize_row((enum tensor_type)4, x, out, 32), SLM_EUNSUPPORTED);
    ASSERT(!quant_can_quantize(TENSOR_TYPE_COUNT));
    ASSERT_OK(quant_quantize_row(TENSOR_TYPE_Q8_0, x, out, 0));
}

/* ---- quantizers ---- */

/* The deterministic row the golden hashes were computed from. */
static void golden_input(float *x, int n)
{
    uint32_t s = 12345;

    for (int i = 0; i < n; i++) {
        float u, v;

        s = s * 1664525u + 1013904223u;
        u = (float)(s >> 8) / 16777216.0f;
        v = (u - 0.5f) * 2.0f;
        x[i] = v * v * v * 0.5f + ((i % 61) == 0 ? 0.75f : 0.0f) - 0.01f * (float)(i % 7);
    }
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

TEST(quant_bit_identical_to_llama_cpp_reference)
{
    /* FNV-1a of ggml_quantize_chunk(type, golden row of 1024, no imatrix). */
    static const struct {
        enum tensor_type t;
        size_t size;
        uint64_t hash;
    } gold[] = {
        { TENSOR_TYPE_Q8_0, 1088, 0x0b502cb678b36edaull },
        { TENSOR_TYPE_Q4_0, 576, 0xb521b09298cb09ecull },
        { TENSOR_TYPE_Q5_0, 704, 0xc38ba44e5d81c247ull },
        { TENSOR_TYPE_Q5_1, 768, 0xd1e89ed6235fc7f6ull },
        { TENSOR_TYPE_Q4_K, 576, 0x9f0ae5454dfd6845ull },
        { TENSOR_TYPE_Q5_K, 704, 0xc780da6961d92cacull },
        { TENSOR_TYPE_Q6_K, 840, 0x062b4d6995a94959ull },
        { TENSOR_TYPE_F16, 2048, 0x69b47aab9b4e2b30ull },
        { TENSOR_TYPE_BF16, 2048, 0x08a0d31705181617ull },
    };
    float x[1024];
    uint8_t out[4096];

    golden_input(x, 1024);
    for (size_t i = 0; i < SLM_ARRAY_LEN(gold); i++) {
        uint64_t sz;

        ASSERT_OK(tensor_row_size(gold[i].t, 1024, &sz));
        ASSERT_EQ_SIZE(sz, gold[i].size);
        memset(out, 0xAA, sizeof(out));
        ASSERT_OK(quant_quantize_row(gold[i].t, x, out, 1024));
        if (fnv1a(out, gold[i].size) != gold[i].hash)
            t_fail(__FILE__, __LINE__, "%s: output differs from llama.cpp's reference quantizer",
                   tensor_type_name(gold[i].t));
    }
}

/* RMS of the reconstruction error relative to the RMS of the input. */
static double rel_rmse(enum tensor_type t, const float *x, size_t n)
{
    uint8_t *q = slm_xmalloc(n * 2);
    float *y = slm_xmalloc(n * sizeof(float));
    double se = 0, sx = 0;

    ASSERT_OK(quant_quantize_row(t, x, q, n));
    ASSERT_OK(quant_dequantize_row(t, q, y, n));
    for (size_t i = 0; i < n; i++) {
        se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        sx += (double)x[i] * x[i];
    }
    slm_free(q);
    slm_free(y);
    return sqrt(se / sx);
}

TEST(quant_roundtrip_error_bounds)
{
    enum { N = 256 * 64 };
    float *x = slm_xmalloc(N * sizeof(float));
    struct slm_rng r;
    double e[TENSOR_TYPE_COUNT];
    /*
     * Bounds on Gaussian data, about 1.25 x what this quantizer (bit-identical
     * to llama.cpp's) measures: f16 0.00021, bf16 0.0017, q8_0 0.0054,
     * q4_0 0.086, q5_0 0.043, q5_1 0.038, q4_K 0.071, q5_K 0.036, q6_K 0.018,
     * q8_K 0.0071. They agree with the formats: a uniform rounding error of
     * step / sqrt(12) with step = amax / 127 (Q8_0, amax ~ 2.3 sigma over 32),
     * amax / 8 (Q4_0), amax / 16 (Q5_0). Per-element bounds are checked in
     * quant_per_element_bounds_32_blocks.
     */
    static const struct {
        enum tensor_type t;
        double max_rel_rmse;
    } bound[] = {
        { TENSOR_TYPE_F16, 0.00027 }, { TENSOR_TYPE_BF16, 0.0021 }, { TENSOR_TYPE_Q8_0, 0.0068 },
        { TENSOR_TYPE_Q4_0, 0.108 },  { TENSOR_TYPE_Q5_0, 0.054 },  { TENSOR_TYPE_Q5_1, 0.048 },
        { TENSOR_TYPE_Q4_K, 0.089 },  { TENSOR_TYPE_Q5_K, 0.045 },  { TENSOR_TYPE_Q6_K, 0.022 },
        { TENSOR_TYPE_Q8_K, 0.0089 },
    };

    slm_rng_seed(&r, 42);
    for (int i = 0; i < N; i++)
        x[i] = slm_rng_normal(&r) * 0.02f;
    for (size_t i = 0; i < SLM_ARRAY_LEN(bound); i++) {
        e[bound[i].t] = rel_rmse(bound[i].t, x, N);
        if (!(e[bound[i].t] <= bound[i].max_rel_rmse))
            t_fail(__FILE__, __LINE__, "%s: relative rmse %.5f over %.5f",
                   tensor_type_name(bound[i].t), e[bound[i].t], bound[i].max_rel_rmse);
    }
    ASSERT(e[TENSOR_TYPE_Q6_K] < e[TENSOR_TYPE_Q5_K]);
    ASSERT(e[TENSOR_TYPE_Q5_K] < e[TENSOR_TYPE_Q4_K]);
    ASSERT(e[TENSOR_TYPE_Q8_0] < e[TENSOR_TYPE_Q6_K]);
    slm_free(x);
}

TEST(quant_per_element_bounds_32_blocks)
{
    enum { N = 32 * 200 };
    float x[N], y[N];
    uint8_t q[N * 2];
    struct slm_rng r;

    slm_rng_seed(&r, 3);
    for (int i = 0; i < N; i++)
        x[i] = (slm_rng_float(&r) - 0.5f) * (float)(1 + i % 5);
    /* Q8_0: |err| <= amax / 254 plus the f16 rounding of d (2^-11 relative). */
    ASSERT_OK(quant_quantize_row(TENSOR_TYPE_Q8_0, x, q, N));
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q8_0, q, y, N));
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;

        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[32 * b + j]));
        for (int j = 0; j < 32; j++)
            ASSERT(fabsf(y[32 * b + j] - x[32 * b + j]) <= amax * (1.0f / 254 + 1.0f / 2048));
    }
    /* Q4_0: d = max / -8; the value opposite to max clamps at 7: |err| <= amax / 8. */
    ASSERT_OK(quant_quantize_row(TENSOR_TYPE_Q4_0, x, q, N));
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_Q4_0, q, y, N));
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;

        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[32 * b + j]));
        for (int j = 0; j < 32; j++)
            ASSERT(fabsf(y[32 * b + j] - x[32 * b + j]) <= amax * (1.0f / 8 + 1.0f / 1024));
    }
}

/* ---- E02: non-finite and subnormal input ---- */

TEST(quant_nonfinite_blocks_become_nan_and_are_reported)
{
    static const enum tensor_type types[] = { TENSOR_TYPE_Q8_0, TENSOR_TYPE_Q4_0, TENSOR_TYPE_Q5_0,
                                              TENSOR_TYPE_Q5_1, TENSOR_TYPE_Q4_K, TENSOR_TYPE_Q5_K,
                                              TENSOR_TYPE_Q6_K, TENSOR_TYPE_Q8_K };
    const float bad[] = { NAN, INFINITY, -INFINITY };
    float x[512], y[512], clean[256];
    uint8_t q[1024], q2[1024];

    for (int i = 0; i < 512; i++)
        x[i] = sinf((float)i * 0.37f);
    for (size_t ti = 0; ti < SLM_ARRAY_LEN(types); ti++) {
        const struct tensor_type_traits *tt = tensor_type_get(types[ti]);
        size_t bs = tt->block_size, tsz = tt->type_size;

        for (size_t k = 0; k < SLM_ARRAY_LEN(bad); k++) {
            float xx[512];

            memcpy(xx, x, sizeof(xx));
            xx[bs + 3] = bad[k]; /* in the second block */
            ASSERT_ERR(quant_quantize_row(types[ti], xx, q, 2 * bs), SLM_ERANGE);
            ASSERT_OK(quant_dequantize_row(types[ti], q, y, 2 * bs));
            for (size_t i = 0; i < bs; i++)
                ASSERT(isnan(y[bs + i]));
            /* The first block is exactly what it is on its own. */
            memcpy(clean, x, bs * sizeof(float));
            ASSERT_OK(quant_quantize_row(types[ti], clean, q2, bs));
            ASSERT_EQ_MEM(q, q2, tsz);
        }
    }
    /* f16/bf16 keep NaN and infinity as such. */
    x[5] = NAN;
    x[6] = -INFINITY;
    ASSERT_OK(quant_quantize_row(TENSOR_TYPE_F16, x, q, 8));
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_F16, q, y, 8));
    ASSERT(isnan(y[5]) && y[6] == -INFINITY);
    ASSERT_OK(quant_quantize_row(TENSOR_TYPE_BF16, x, q, 8));
    ASSERT_OK(quant_dequantize_row(TENSOR_TYPE_BF16, q, y, 8));
    ASSERT(isnan(y[5]) && y[6] == -INFINITY);
}

TEST(quant_subnormal_and_zero_input_is_defined)
{
    static const enum tensor_type types[] = { TENSOR_TYPE_Q8_0, TENSOR_TYPE_Q4_0, TENSOR_TYPE_Q5_0,
                                              TENSOR_TYPE_Q5_1, TENSOR_TYPE_Q4_K, TENSOR_TYPE_Q5_K,
                                              TENSOR_TYPE_Q6_K, TENSOR_TYPE_Q8_K, TENSOR_TYPE_F16,
                                              TENSOR_TYPE_BF16 };
    float x[256], y[256];
    uint8_t q[1024];

    for (int pattern = 0; pattern < 3; pattern++) {
        for (int i = 0; i < 256; i++) {
            if (pattern == 0)
                x[i] = 0.0f;
            else if (pattern == 1)
                x[i] = u2f((uint32_t)(i * 2654435761u) & 0x807fffffu); /* subnormals */
            else
                x[i] = (i % 3 == 0) ? FLT_MIN * (float)(i - 128) : 0.0f;
        }
        for (size_t ti = 0; ti < SLM_ARRAY_LEN(types); ti++) {
            ASSERT_OK(quant_quantize_row(types[ti], x, q, 256));
            ASSERT_OK(quant_dequantize_row(types[ti], q, y, 256));
            for (int i = 0; i < 256; i++)
                ASSERT(isfinite(y[i]) && fabsf(y[i]) <= 1e-30f);
        }
    }
}
