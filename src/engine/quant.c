/*
 * quant.c - row conversion between f32 and the GGUF block formats.
 *
 * The quantizers reproduce llama.cpp's imatrix-free reference quantizers
 * (ggml-quants.c, quantize_row_*_ref) operation for operation, so that the
 * same f32 input gives the same bytes as llama-quantize. That requires the
 * same float operations in the same order: no reassociation, no contraction
 * into FMA (this file is built without -ffast-math and, in ISO C mode, gcc
 * does not contract), and the same rounding helpers (nearest_int rounds half
 * to even like llama.cpp's magic-number trick, roundf rounds half away from
 * zero, and the Q4_0/Q5_0/Q5_1 quantizers truncate after adding 0.5).
 * The helpers below saturate and map NaN to 0 where llama.cpp would convert
 * out-of-range floats to integers (undefined behaviour in C); for finite,
 * in-range values they are identical.
 *
 * Blocks that hold NaN or an infinity are written as "NaN blocks" (all
 * scales NaN, quants zero) and the row's conversion returns SLM_ERANGE.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "engine/quant.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* llama.cpp's GROUP_MAX_EPS: a group below this is all zero. */
#define GROUP_MAX_EPS 1e-15f
/* The f16 NaN our blocks use for non-finite input (what ggml writes too). */
#define FP16_NAN      0x7e00

/*
 * Round to nearest, ties to even, as llama.cpp's nearest_int (which adds
 * 1.5 * 2^23 and reads the mantissa). Valid there for |f| <= 4194303; here
 * larger values saturate and NaN gives 0.
 */
static inline int nearest_int(float f)
{
    float v;
    int32_t i;

    if (!(fabsf(f) <= 4194303.f)) return isnan(f) ? 0 : (f > 0 ? 4194303 : -4194303);
    v = f + 12582912.f;
    memcpy(&i, &v, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

/* (int8_t)roundf(v) with saturation instead of undefined behaviour. */
static inline int8_t round_i8(float v)
{
    if (isnan(v)) return 0;
    v = roundf(v);
    if (v < -128.f) return -128;
    if (v > 127.f) return 127;
    return (int8_t)v;
}

/* (int8_t)v (truncation) with saturation instead of undefined behaviour. */
static inline int8_t trunc_i8(float v)
{
    if (isnan(v)) return 0;
    if (v <= -129.f) return -128;
    if (v >= 128.f) return 127;
    return (int8_t)v;
}

/* (uint8_t)v (truncation) with saturation instead of undefined behaviour. */
static inline uint8_t trunc_u8(float v)
{
    if (!(v > -1.f)) return 0;
    if (v >= 256.f) return 255;
    return (uint8_t)v;
}

static bool all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return false;
    }
    return true;
}

/* Sub-block j's 6-bit scale and min of a Q4_K/Q5_K block. */
static inline void k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Packs eight 6-bit scales and mins into the 12 bytes of Q4_K/Q5_K. */
static void k4_pack_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t *out)
{
    memset(out, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] = ls[j];
            out[j + 4] = lm[j];
        } else {
            out[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            out[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* ======================= 32-element formats ======================= */

static void dequant_q8_0(const struct block_q8_0 *x, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = fp16_to_f32(x[i].d);

        for (int j = 0; j < QK8_0; j++)
            y[i * QK8_0 + j] = (float)x[i].qs[j] * d;
    }
}

/* quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d). */
static bool quant_q8_0(const float *x, struct block_q8_0 *y, size_t nb)
{
    bool ok = true;

    for (size_t i = 0; i < nb; i++, x += QK8_0) {
        float amax = 0.0f, d, id;

        if (!all_finite(x, QK8_0)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = FP16_NAN;
            ok = false;
            continue;
        }
        for (int j = 0; j < QK8_0; j++)
            amax = MAX(amax, fabsf(x[j]));
        d = amax / ((1 << 7) - 1);
        id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++)
            y[i].qs[j] = round_i8(x[j] * id);
    }
    return ok;
}

static void dequant_q8_1(const struct block_q8_1 *x, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = fp16_to_f32(x[i].d);

        for (int j = 0; j < QK8_1; j++)
            y[i * QK8_1 + j] = (float)x[i].qs[j] * d;
    }
}

/* quantize_row_q8_1_ref: as Q8_0 plus s = d * sum(q). */
static bool quant_q8_1(const float *x, struct block_q8_1 *y, size_t nb)
{
    bool ok = true;

    for (size_t i = 0; i < nb; i++, x += QK8_1) {
        float amax = 0.0f, d, id;
        int sum = 0;

        if (!all_finite(x, QK8_1)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = FP16_NAN;
            y[i].s = FP16_NAN;
            ok = false;
            continue;
        }
        for (int j = 0; j < QK8_1; j++)
            amax = MAX(amax, fabsf(x[j]));
        d = amax / ((1 << 7) - 1);
        id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK8_1 / 2; j++) {
            y[i].qs[j] = round_i8(x[j] * id);
            y[i].qs[QK8_1 / 2 + j] = round_i8(x[QK8_1 / 2 + j] * id);
            sum += y[i].qs[j];
            sum += y[i].qs[QK8_1 / 2 + j];
        }
        y[i].s = f32_to_fp16((float)sum * d);
    }
    return ok;
}

static void dequant_q4_0(const struct block_q4_0 *x, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = fp16_to_f32(x[i].d);

        for (int j = 0; j < QK4_0 / 2; j++) {
            y[i * QK4_0 + j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[i * QK4_0 + j + QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* The element of largest magnitude (the first one on ties), or 0. */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;

    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* quantize_row_q4_0_ref: d = max / -8, q = min(15, (int8)(x / d + 8.5)). */
static bool quant_q4_0(const float *x, struct block_q4_0 *y, size_t nb)
{
    bool ok = true;

    for (size_t i = 0; i < nb; i++, x += QK4_0) {
        float max, d, id;

        if (!all_finite(x, QK4_0)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = FP16_NAN;
            ok = false;
            continue;
        }
        max = signed_absmax(x, QK4_0);
        d = max / -8;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            uint8_t q0 = (uint8_t)MIN(15, trunc_i8(x[j] * id + 8.5f));
            uint8_t q1 = (uint8_t)MIN(15, trunc_i8(x[QK4_0 / 2 + j] * id + 8.5f));

            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
    return ok;
}

static void dequant_q5_0(const struct block_q5_0 *x, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = fp16_to_f32(x[i].d);
        uint32_t qh;

        memcpy(&qh, x[i].qh, sizeof(qh));
        for (int j = 0; j < QK5_0 / 2; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;

            y[i * QK5_0 + j] = (float)(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
            y[i * QK5_0 + j + QK5_0 / 2] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

/* quantize_row_q5_0_ref: d = max / -16, q = min(31, (int8)(x / d + 16.5)). */
static bool quant_q5_0(const float *x, struct block_q5_0 *y, size_t nb)
{
    bool ok = true;

    for (size_t i = 0; i < nb; i++, x += QK5_0) {
        float max, d, id;
        uint32_t qh = 0;

        if (!all_finite(x, QK5_0)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = FP16_NAN;
            ok = false;
            continue;
        }
        max = signed_absmax(x, QK5_0);
        d = max / -16;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK5_0 / 2; j++) {
            uint8_t q0 = (uint8_t)MIN(31, trunc_i8(x[j] * id + 16.5f));
            uint8_t q1 = (uint8_t)MIN(31, trunc_i8(x[QK5_0 / 2 + j] * id + 16.5f));

            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)((q0 & 0x10u) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10u) >> 4) << (j + QK5_0 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof(qh));
    }
    return ok;
}

static void dequant_q5_1(const struct block_q5_1 *x, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = fp16_to_f32(x[i].d);
        float m = fp16_to_f32(x[i].m);
        uint32_t qh;

        memcpy(&qh, x[i].qh, sizeof(qh));
        for (int j = 0; j < QK5_1 / 2; j++) {
            int h0 = (int)((qh >> j) & 1) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1) << 4;

            y[i * QK5_1 + j] = (float)((x[i].qs[j] & 0x0F) | h0) * d + m;
            y[i * QK5_1 + j + QK5_1 / 2] = (float)((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

/* quantize_row_q5_1_ref: d = (max - min) / 31, m = min, q = (u8)((x - m) / d + 0.5). */
static bool quant_q5_1(const float *x, struct block_q5_1 *y, size_t nb)
{
    bool ok = true;

    for (size_t i = 0; i < nb; i++, x += QK5_1) {
        float min = FLT_MAX, max = -FLT_MAX, d, id;
        uint32_t qh = 0;

        if (!all_finite(x, QK5_1)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = FP16_NAN;
            y[i].m = FP16_NAN;
            ok = false;
            continue;
        }
        for (int j = 0; j < QK5_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        d = (max - min) / ((1 << 5) - 1);
        id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        y[i].m = f32_to_fp16(min);
        for (int j = 0; j < QK5_1 / 2; j++) {
            uint8_t q0 = trunc_u8((x[j] - min) * id + 0.5f);
            uint8_t q1 = trunc_u8((x[QK5_1 / 2 + j] - min) * id + 0.5f);

            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)((q0 & 0x10u) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10u) >> 4) << (j + QK5_1 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof(qh));
    }
    return ok;
}

/* ======================= k-quants (256 elements) ======================= */

/*
 * Scale and min of n values x with weights w on levels 0..nmax (llama.cpp's
 * make_qkx2_quants, use_mad false): start from the min/max grid, then try
 * nstep + 1 scales around it and keep the weighted least-squares best.
 * Returns the scale; *the_min = -min (>= 0); L holds the levels.
 */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    float iscale, scale, best_error = 0;

    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    iscale = nmax / (max - min);
    scale = 1 / iscale;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        float diff;

        L[i] = (uint8_t)MAX(0, MIN(nmax, l));
        diff = scale * L[i] + min - x[i];
        diff = diff * diff;
        best_error += w[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        float sum_l = 0, sum_l2 = 0, sum_xl = 0, D;

        iscale = (rmin + rdelta * is + nmax) / (max - min);
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));

            l = MAX(0, MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            float cur_error = 0;

            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];

                diff = diff * diff;
                cur_error += w[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/*
 * The common part of Q4_K and Q5_K: per sub-block of 32 a scale and min
 * (make_qkx2_quants weighted by rms + |x|), quantized to 6 bits against the
 * block maxima, then the levels recomputed from the rounded scales.
 * Writes d, dmin, scales and L[256] (levels 0..nmax).
 */
static void k45_quantize_block(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out,
                               uint16_t *dmin_out, uint8_t *scales_out, uint8_t *L)
{
    uint8_t Laux[32], ls[8], lm[8];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    float max_scale = 0, max_min = 0, inv_scale, inv_min;

    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0, av_x;

        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; j++) {
        /* llama.cpp stores into uint8_t first (wrapping), then clamps. */
        ls[j] = MIN(63, (uint8_t)nearest_int(inv_scale * scales[j]));
        lm[j] = MIN(63, (uint8_t)nearest_int(inv_min * mins[j]));
    }
    k4_pack_scales(ls, lm, scales_out);
    *d_out = f32_to_fp16(max_scale / 63.f);
    *dmin_out = f32_to_fp16(max_min / 63.f);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        float d, dm;

        k4_scale_min(j, scales_out, &sc, &m);
        d = fp16_to_f32(*d_out) * sc;
        if (d == 0.0f) continue;
        dm = fp16_to_f32(*dmin_out) * m;
        for (int ii = 0; ii < 32; ii++) {
            int l = nearest_int((x[32 * j + ii] + dm) / d);

            L[32 * j + ii] = (uint8_t)MAX(0, MIN(nmax, l));
        }
    }
}

/* quantize_row_q4_K_ref. */
static bool quant_q4_k(const float *x, struct block_q4_k *y, size_t nb)
{
    uint8_t L[QK_K];
    bool ok = true;

    for (size_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t *q = y[i].qs;

        if (!all_finite(x, QK_K)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = FP16_NAN;
            y[i].dmin = FP16_NAN;
            ok = false;
            continue;
        }
        k45_quantize_block(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int j = 0; j < QK_K; j += 64) {
            for (int l = 0; l < 32; l++)
                q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
    }
    return ok;
}

static void dequant_q4_k(const struct block_q4_k *x, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        const uint8_t *q = x[i].qs;
        float d = fp16_to_f32(x[i].d), min = fp16_to_f32(x[i].dmin);

        for (int j = 0; j < QK_K / 64; j++) {
            uint8_t sc, m;
            float d1, m1, d2, m2;

            k4_scale_min(2 * j, x[i].scales, &sc, &m);
            d1 = d * sc;
            m1 = min * m;
            k4_scale_min(2 * j + 1, x[i].scales, &sc, &m);
            d2 = d * sc;
            m2 = min * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
        }
    }
}

/* quantize_row_q5_K_ref. */
static bool quant_q5_k(const float *x, struct block_q5_k *y, size_t nb)
{
    uint8_t L[QK_K];
    bool ok = true;

    for (size_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t *qh = y[i].qh, *ql = y[i].qs;
        uint8_t m1 = 1, m2 = 2;

        if (!all_finite(x, QK_K)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = FP16_NAN;
            y[i].dmin = FP16_NAN;
            ok = false;
            continue;
        }
        k45_quantize_block(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(qh, 0, QK_K / 8);
        for (int n = 0; n < QK_K; n += 64) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[n + j], l2 = L[n + j + 32];

                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
            ql += 32;
        }
    }
    return ok;
}

static void dequant_q5_k(const struct block_q5_k *x, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        float d = fp16_to_f32(x[i].d), min = fp16_to_f32(x[i].dmin);

        for (int j = 0; j < QK_K / 64; j++) {
            uint8_t sc, m, u1 = (uint8_t)(1u << (2 * j)), u2 = (uint8_t)(2u << (2 * j));
            float d1, m1, d2, m2;

            k4_scale_min(2 * j, x[i].scales, &sc, &m);
            d1 = d * sc;
            m1 = min * m;
            k4_scale_min(2 * j + 1, x[i].scales, &sc, &m);
            d2 = d * sc;
            m2 = min * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
        }
    }
}

/*
 * Symmetric scale of n values on levels -nmax..nmax-1 (llama.cpp's
 * make_qx_quants with rmse_type 1 and no importance weights): weights x^2,
 * 19 candidate scales around nmax / max, least squares. L gets level + nmax.
 */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0, iscale, sumlx = 0, suml2 = 0, scale, best;

    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);

        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    iscale = -nmax / max;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        float w = x[i] * x[i];

        l = MAX(-nmax, MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            float w = x[i] * x[i];

            l = MAX(-nmax, MIN(nmax - 1, l));
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);

                L[i] = (int8_t)(nmax + MAX(-nmax, MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* quantize_row_q6_K_ref. */
static bool quant_q6_k(const float *x, struct block_q6_k *y, size_t nb)
{
    int8_t L[QK_K];
    float scales[QK_K / 16];
    bool ok = true;

    for (size_t i = 0; i < nb; i++, x += QK_K) {
        float max_scale = 0, max_abs_scale = 0, iscale;
        uint8_t *ql = y[i].ql, *qh = y[i].qh;

        if (!all_finite(x, QK_K)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = FP16_NAN;
            ok = false;
            continue;
        }
        for (int ib = 0; ib < QK_K / 16; ib++) {
            float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);

            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        iscale = -128.f / max_scale;
        y[i].d = f32_to_fp16(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++)
            y[i].scales[ib] = (int8_t)MIN(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < QK_K / 16; j++) {
            float d = fp16_to_f32(y[i].d) * y[i].scales[j];

            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int(x[16 * j + ii] / d);

                L[16 * j + ii] = (int8_t)(MAX(-32, MIN(31, l)) + 32);
            }
        }
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; l++) {
                uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;

                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
    return ok;
}

static void dequant_q6_k(const struct block_q6_k *x, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = fp16_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;

        for (int n = 0; n < QK_K; n += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;

                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* quantize_row_q8_K_ref: d = max / -127 (signed max), q = nearest(x / d), bsums. */
static bool quant_q8_k(const float *x, struct block_q8_k *y, size_t nb)
{
    bool ok = true;

    for (size_t i = 0; i < nb; i++, x += QK_K) {
        float max = 0, amax = 0, iscale;

        if (!all_finite(x, QK_K)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = NAN;
            ok = false;
            continue;
        }
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++)
            y[i].qs[j] = (int8_t)MAX(-128, MIN(127, nearest_int(iscale * x[j])));
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;

            for (int ii = 0; ii < 16; ii++)
                sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
    return ok;
}

static void dequant_q8_k(const struct block_q8_k *x, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        for (int j = 0; j < QK_K; j++)
            *y++ = x[i].d * x[i].qs[j];
    }
}

/* ======================= the public row functions ======================= */

void quant_f32_to_f16_row(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = f32_to_fp16(x[i]);
}

void quant_f16_to_f32_row(const uint16_t *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = fp16_to_f32(x[i]);
}

/* Number of blocks of n elements of t, or SLM_EINVAL / SLM_EUNSUPPORTED. */
static int row_blocks(enum tensor_type t, size_t n, size_t *nb)
{
    const struct tensor_type_traits *tt = tensor_type_get((uint32_t)t);

    if (!quant_can_quantize(t)) return SLM_EUNSUPPORTED;
    if (n % tt->block_size != 0) return SLM_EINVAL;
    *nb = n / tt->block_size;
    return 0;
}

bool quant_can_quantize(enum tensor_type t)
{
    switch (t) {
    case TENSOR_TYPE_F32:
    case TENSOR_TYPE_F16:
    case TENSOR_TYPE_BF16:
    case TENSOR_TYPE_Q4_0:
    case TENSOR_TYPE_Q5_0:
    case TENSOR_TYPE_Q5_1:
    case TENSOR_TYPE_Q8_0:
    case TENSOR_TYPE_Q8_1:
    case TENSOR_TYPE_Q4_K:
    case TENSOR_TYPE_Q5_K:
    case TENSOR_TYPE_Q6_K:
    case TENSOR_TYPE_Q8_K:
        return true;
    default:
        return false;
    }
}

/*
 * Decodes n elements of type t at x into y. Returns 0, SLM_EINVAL (n not a
 * multiple of the block size) or SLM_EUNSUPPORTED.
 */
int quant_dequantize_row(enum tensor_type t, const void *x, float *y, size_t n)
{
    size_t nb;
    int rc = row_blocks(t, n, &nb);

    if (rc < 0) return rc;
    switch (t) {
    case TENSOR_TYPE_F32:
        memcpy(y, x, n * sizeof(float));
        break;
    case TENSOR_TYPE_F16:
        quant_f16_to_f32_row(x, y, n);
        break;
    case TENSOR_TYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;

            memcpy(&h, (const uint8_t *)x + 2 * i, sizeof(h));
            y[i] = bf16_to_f32(h);
        }
        break;
    case TENSOR_TYPE_Q4_0:
        dequant_q4_0(x, y, nb);
        break;
    case TENSOR_TYPE_Q5_0:
        dequant_q5_0(x, y, nb);
        break;
    case TENSOR_TYPE_Q5_1:
        dequant_q5_1(x, y, nb);
        break;
    case TENSOR_TYPE_Q8_0:
        dequant_q8_0(x, y, nb);
        break;
    case TENSOR_TYPE_Q8_1:
        dequant_q8_1(x, y, nb);
        break;
    case TENSOR_TYPE_Q4_K:
        dequant_q4_k(x, y, nb);
        break;
    case TENSOR_TYPE_Q5_K:
        dequant_q5_k(x, y, nb);
        break;
    case TENSOR_TYPE_Q6_K:
        dequant_q6_k(x, y, nb);
        break;
    case TENSOR_TYPE_Q8_K:
        dequant_q8_k(x, y, nb);
        break;
    default:
        return SLM_EUNSUPPORTED;
    }
    return 0;
}

/*
 * Encodes n floats into type t with the reference quantizer. Returns 0,
 * SLM_EINVAL, SLM_EUNSUPPORTED, or SLM_ERANGE when the row held NaN or an
 * infinity (the row is still fully written; see the file comment).
 */
int quant_quantize_row(enum tensor_type t, const float *x, void *y, size_t n)
{
    size_t nb;
    bool ok = true;
    int rc = row_blocks(t, n, &nb);

    if (rc < 0) return rc;
    switch (t) {
    case TENSOR_TYPE_F32:
        memcpy(y, x, n * sizeof(float));
        break;
    case TENSOR_TYPE_F16:
        quant_f32_to_f16_row(x, y, n);
        break;
    case TENSOR_TYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = f32_to_bf16(x[i]);

            memcpy((uint8_t *)y + 2 * i, &h, sizeof(h));
        }
        break;
    case TENSOR_TYPE_Q4_0:
        ok = quant_q4_0(x, y, nb);
        break;
    case TENSOR_TYPE_Q5_0:
        ok = quant_q5_0(x, y, nb);
        break;
    case TENSOR_TYPE_Q5_1:
        ok = quant_q5_1(x, y, nb);
        break;
    case TENSOR_TYPE_Q8_0:
        ok = quant_q8_0(x, y, nb);
        break;
    case TENSOR_TYPE_Q8_1:
        ok = quant_q8_1(x, y, nb);
        break;
    case TENSOR_TYPE_Q4_K:
        ok = quant_q4_k(x, y, nb);
        break;
    case TENSOR_TYPE_Q5_K:
        ok = quant_q5_k(x, y, nb);
        break;
    case TENSOR_TYPE_Q6_K:
        ok = quant_q6_k(x, y, nb);
        break;
    case TENSOR_TYPE_Q8_K:
        ok = quant_q8_k(x, y, nb);
        break;
    default:
        return SLM_EUNSUPPORTED;
    }
    return ok ? 0 : SLM_ERANGE;
}
