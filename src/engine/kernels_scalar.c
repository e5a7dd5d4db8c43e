/*
 * kernels_scalar.c - the reference kernels: plain C, any CPU.
 *
 * Every SIMD table is tested against this one (test_kernels.c). The integer
 * parts of the quantized dot products are exact (int32); floating-point sums
 * of f32/f16/bf16 products accumulate in double so the reference is at least
 * as accurate as any vector order. The per-block formulas follow llama.cpp's
 * ggml_vec_dot_*_generic functions (ggml-cpu/quants.c).
 */
#include <math.h>
#include <string.h>

#include "engine/kernels_int.h"

/* ---- float vectors ---- */

/* s = sum w[i] * x[i], f32 x f32. */
static void vec_dot_f32(size_t n, float *s, const void *w, const void *x)
{
    const float *a = w, *b = x;
    double sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += (double)a[i] * b[i];
    *s = (float)sum;
}

static uint16_t load_u16(const void *p, size_t i)
{
    uint16_t v;

    memcpy(&v, (const uint8_t *)p + 2 * i, sizeof(v));
    return v;
}

/* s = sum w[i] * x[i], f16 x f16. */
static void vec_dot_f16(size_t n, float *s, const void *w, const void *x)
{
    double sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += (double)fp16_to_f32(load_u16(w, i)) * fp16_to_f32(load_u16(x, i));
    *s = (float)sum;
}

/* s = sum w[i] * x[i], bf16 x bf16. */
static void vec_dot_bf16(size_t n, float *s, const void *w, const void *x)
{
    double sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += (double)bf16_to_f32(load_u16(w, i)) * bf16_to_f32(load_u16(x, i));
    *s = (float)sum;
}

/* ---- 32-element blocks against Q8_0 ---- */

/*
 * Q8_0 x Q8_0 in the order llama.cpp's x86 code adds (ggml_vec_dot_q8_0_q8_0
 * and the tinyBLAS Q8_0 gemm use the same one): eight float lanes, lane k
 * taking fma(d_w * d_x, isum_k, lane) block after block, where isum_k is the
 * exact integer sum of elements 4k..4k+3 of the block; at the end the lanes
 * are added ((l4 + l0) + (l6 + l2)) + ((l5 + l1) + (l7 + l3)). Every SIMD
 * table reproduces this bit for bit, so Q8_0 models give llama.cpp's logits
 * to the last bit of these products (chaotic amplification of last-bit
 * differences is what made greedy runs part).
 */
static void vec_dot_q8_0(size_t n, float *s, const void *w, const void *x)
{
    const struct block_q8_0 *a = w, *b = x;
    float lane[8] = { 0 };

    for (size_t i = 0; i < n / QK8_0; i++) {
        float d = fp16_to_f32(a[i].d) * fp16_to_f32(b[i].d);

        for (int k = 0; k < 8; k++) {
            int isum = 0;

            for (int j = 4 * k; j < 4 * k + 4; j++)
                isum += a[i].qs[j] * b[i].qs[j];
            lane[k] = fmaf(d, (float)isum, lane[k]);
        }
    }
    *s = ((lane[4] + lane[0]) + (lane[6] + lane[2])) + ((lane[5] + lane[1]) + (lane[7] + lane[3]));
}

/* Q4_0 x Q8_0: per block isum = sum (q_w - 8) * q_x. */
static void vec_dot_q4_0(size_t n, float *s, const void *w, const void *x)
{
    const struct block_q4_0 *a = w;
    const struct block_q8_0 *b = x;
    float sum = 0;

    for (size_t i = 0; i < n / QK4_0; i++) {
        int isum = 0;

        for (int j = 0; j < QK4_0 / 2; j++) {
            isum += ((a[i].qs[j] & 0xF) - 8) * b[i].qs[j];
            isum += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + QK4_0 / 2];
        }
        sum += (float)isum * (fp16_to_f32(a[i].d) * fp16_to_f32(b[i].d));
    }
    *s = sum;
}

/* Q5_0 x Q8_0: per block isum = sum (q_w - 16) * q_x, q_w with its fifth bit from qh. */
static void vec_dot_q5_0(size_t n, float *s, const void *w, const void *x)
{
    const struct block_q5_0 *a = w;
    const struct block_q8_0 *b = x;
    float sum = 0;

    for (size_t i = 0; i < n / QK5_0; i++) {
        uint32_t qh;
        int isum = 0;

        memcpy(&qh, a[i].qh, sizeof(qh));
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = (a[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (a[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;

            isum += (q0 - 16) * b[i].qs[j] + (q1 - 16) * b[i].qs[j + QK5_0 / 2];
        }
        sum += (float)isum * (fp16_to_f32(a[i].d) * fp16_to_f32(b[i].d));
    }
    *s = sum;
}

/*
 * Q5_1 x Q8_1: per block s += d_w * d_x * sum q_w * q_x + m_w * s_x, where
 * s_x = d_x * sum q_x (ggml_vec_dot_q5_1_q8_1).
 */
void kernels__vec_dot_q5_1(size_t n, float *s, const void *w, const void *x)
{
    const struct block_q5_1 *a = w;
    const struct block_q8_1 *b = x;
    float sum = 0;

    for (size_t i = 0; i < n / QK5_1; i++) {
        uint32_t qh;
        int isum = 0;

        memcpy(&qh, a[i].qh, sizeof(qh));
        for (int j = 0; j < QK5_1 / 2; j++) {
            int q0 = (a[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (a[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;

            isum += q0 * b[i].qs[j] + q1 * b[i].qs[j + QK5_1 / 2];
        }
        sum += (fp16_to_f32(a[i].d) * fp16_to_f32(b[i].d)) * (float)isum +
               fp16_to_f32(a[i].m) * fp16_to_f32(b[i].s);
    }
    *s = sum;
}

/* ---- k-quants against Q8_K ---- */

/*
 * Q4_K x Q8_K: per super-block
 *   s += d_x * d_w * sum_j sc_j * (sum_{e in j} q_e * x_e)
 *      - d_x * dmin_w * sum_j m_j * (bsums of sub-block j).
 */
static void vec_dot_q4_k(size_t n, float *s, const void *w, const void *x)
{
    const struct block_q4_k *a = w;
    const struct block_q8_k *b = x;
    float sum = 0;

    for (size_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];
        int isum = 0, msum = 0;

        kernels__k4_scales(a[i].scales, sc, m);
        for (int j = 0; j < 4; j++) {
            int s0 = 0, s1 = 0;

            for (int l = 0; l < 32; l++) {
                s0 += (a[i].qs[32 * j + l] & 0xF) * b[i].qs[64 * j + l];
                s1 += (a[i].qs[32 * j + l] >> 4) * b[i].qs[64 * j + 32 + l];
            }
            isum += sc[2 * j] * s0 + sc[2 * j + 1] * s1;
        }
        for (int j = 0; j < 8; j++)
            msum += m[j] * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        sum += b[i].d * fp16_to_f32(a[i].d) * (float)isum -
               b[i].d * fp16_to_f32(a[i].dmin) * (float)msum;
    }
    *s = sum;
}

/* Q5_K x Q8_K: as Q4_K with the fifth bit from qh. */
static void vec_dot_q5_k(size_t n, float *s, const void *w, const void *x)
{
    const struct block_q5_k *a = w;
    const struct block_q8_k *b = x;
    float sum = 0;

    for (size_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];
        int isum = 0, msum = 0;

        kernels__k4_scales(a[i].scales, sc, m);
        for (int j = 0; j < 4; j++) {
            int s0 = 0, s1 = 0;

            for (int l = 0; l < 32; l++) {
                int q0 = (a[i].qs[32 * j + l] & 0xF) | (((a[i].qh[l] >> (2 * j)) & 1) << 4);
                int q1 = (a[i].qs[32 * j + l] >> 4) | (((a[i].qh[l] >> (2 * j + 1)) & 1) << 4);

                s0 += q0 * b[i].qs[64 * j + l];
                s1 += q1 * b[i].qs[64 * j + 32 + l];
            }
            isum += sc[2 * j] * s0 + sc[2 * j + 1] * s1;
        }
        for (int j = 0; j < 8; j++)
            msum += m[j] * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        sum += b[i].d * fp16_to_f32(a[i].d) * (float)isum -
               b[i].d * fp16_to_f32(a[i].dmin) * (float)msum;
    }
    *s = sum;
}

/* Q6_K x Q8_K: s += d_x * d_w * sum_g sc_g * sum_{e in g} (q_e - 32) * x_e. */
static void vec_dot_q6_k(size_t n, float *s, const void *w, const void *x)
{
    const struct block_q6_k *a = w;
    const struct block_q8_k *b = x;
    float sum = 0;

    for (size_t i = 0; i < n / QK_K; i++) {
        int8_t q[QK_K];
        int isum = 0;

        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a[i].ql + 64 * h, *qh = a[i].qh + 32 * h;

            for (int l = 0; l < 32; l++) {
                q[128 * h + l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                q[128 * h + l + 32] =
                    (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                q[128 * h + l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                q[128 * h + l + 96] =
                    (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int gsum = 0;

            for (int l = 0; l < 16; l++)
                gsum += q[16 * g + l] * b[i].qs[16 * g + l];
            isum += a[i].scales[g] * gsum;
        }
        sum += b[i].d * fp16_to_f32(a[i].d) * (float)isum;
    }
    *s = sum;
}

/* ---- activation conversion (formats defined in kernels_int.h) ---- */

static void from_float_f32(const float *x, void *y, size_t n)
{
    memcpy(y, x, n * sizeof(float));
}

static void from_float_f16(const float *x, void *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h = f32_to_fp16(x[i]);

        memcpy((uint8_t *)y + 2 * i, &h, sizeof(h));
    }
}

static void from_float_bf16(const float *x, void *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h = f32_to_bf16(x[i]);

        memcpy((uint8_t *)y + 2 * i, &h, sizeof(h));
    }
}

/* Round half to even for |v| <= 2^22 (the callers guarantee |v| <= 127.x). */
static inline int round_even(float v)
{
    return (int)rintf(v);
}

static void from_float_q8_0(const float *x, void *vy, size_t n)
{
    struct block_q8_0 *y = vy;

    for (size_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0, d, id;
        int finite = 1;

        for (int j = 0; j < QK8_0; j++) {
            finite &= isfinite(x[j]) != 0;
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
        }
        if (!finite) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = 0x7e00;
            continue;
        }
        d = amax / 127;
        /* 127 / amax, not 1 / d: the multiplier llama.cpp's x86 code uses, so
         * activations round to the same integers and greedy runs agree. */
        id = amax != 0.0f ? 127.0f / amax : 0.0f;
        if (isinf(id)) id = 0.0f; /* amax subnormal: the f16 scale is 0 anyway */
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++)
            y[i].qs[j] = (int8_t)round_even(x[j] * id);
    }
}

void kernels__from_float_q8_1(const float *x, void *vy, size_t n)
{
    struct block_q8_1 *y = vy;

    for (size_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float amax = 0, d, id;
        int finite = 1, sum = 0;

        for (int j = 0; j < QK8_1; j++) {
            finite &= isfinite(x[j]) != 0;
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
        }
        if (!finite) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = 0x7e00;
            y[i].s = 0x7e00;
            continue;
        }
        d = amax / 127;
        /* 127 / amax, not 1 / d: the multiplier llama.cpp's x86 code uses, so
         * activations round to the same integers and greedy runs agree. */
        id = amax != 0.0f ? 127.0f / amax : 0.0f;
        if (isinf(id)) id = 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)round_even(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = f32_to_fp16((float)sum * d);
    }
}

static void from_float_q8_k(const float *x, void *vy, size_t n)
{
    struct block_q8_k *y = vy;

    for (size_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0, iscale;
        int finite = 1;

        for (int j = 0; j < QK_K; j++) {
            finite &= isfinite(x[j]) != 0;
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
        }
        memset(&y[i], 0, sizeof(y[i]));
        if (!finite) {
            y[i].d = NAN;
            continue;
        }
        iscale = 127.f / amax;
        if (amax == 0.0f || isinf(iscale)) continue; /* zero, or so small that d would be 0 */
        for (int j = 0; j < QK_K; j++) {
            int v = round_even(x[j] * iscale);

            y[i].qs[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;

            for (int l = 0; l < 16; l++)
                sum += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- gemm by vec_dot ---- */

/*
 * y[c * y_stride + r] = dot(row r of w, column c of x) for every r < n_rows,
 * c < n_cols: the reference tile every SIMD gemm must match.
 */
void kernels__gemm_by_vec_dot(kernel_vec_dot_fn *dot, size_t n, const void *w, size_t w_stride,
                              size_t n_rows, const void *x, size_t x_stride, size_t n_cols,
                              float *y, size_t y_stride)
{
    for (size_t c = 0; c < n_cols; c++) {
        for (size_t r = 0; r < n_rows; r++)
            dot(n, &y[c * y_stride + r], (const uint8_t *)w + r * w_stride,
                (const uint8_t *)x + c * x_stride);
    }
}

#define GEMM_BY_DOT(name, dot)                                                                \
    static void name(size_t n, const void *w, size_t ws, size_t nr, const void *x, size_t xs, \
                     size_t nc, float *y, size_t ys)                                          \
    {                                                                                         \
        kernels__gemm_by_vec_dot(dot, n, w, ws, nr, x, xs, nc, y, ys);                        \
    }

GEMM_BY_DOT(gemm_f32, vec_dot_f32)
GEMM_BY_DOT(gemm_f16, vec_dot_f16)
GEMM_BY_DOT(gemm_bf16, vec_dot_bf16)
GEMM_BY_DOT(gemm_q8_0, vec_dot_q8_0)
GEMM_BY_DOT(gemm_q4_0, vec_dot_q4_0)
GEMM_BY_DOT(gemm_q5_0, vec_dot_q5_0)
GEMM_BY_DOT(gemm_q4_k, vec_dot_q4_k)
GEMM_BY_DOT(gemm_q5_k, vec_dot_q5_k)
GEMM_BY_DOT(gemm_q6_k, vec_dot_q6_k)

void kernels__gemm_q5_1(size_t n, const void *w, size_t ws, size_t nr, const void *x, size_t xs,
                        size_t nc, float *y, size_t ys)
{
    kernels__gemm_by_vec_dot(kernels__vec_dot_q5_1, n, w, ws, nr, x, xs, nc, y, ys);
}

/* ---- f32 helpers ---- */

static float dot_f32(const float *a, const float *b, size_t n)
{
    double sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += (double)a[i] * b[i];
    return (float)sum;
}

static float dot_f32_f16(const float *a, const uint16_t *b, size_t n)
{
    double sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += (double)a[i] * fp16_to_f32(b[i]);
    return (float)sum;
}

static void axpy_f32(size_t n, float a, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void axpy_f16(size_t n, float a, const uint16_t *x, float *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * fp16_to_f32(x[i]);
}

/*
 * a . b for F16 a and b (every product exact in F32), summed in the order of
 * the AVX-512 kernel (llama.cpp's ggml_vec_dot_f16 on AVX-512): 64 lanes,
 * lane i accumulating elements i, i + 64, ...; lanes (i, i + 32) and
 * (i + 16, i + 48) added, then the two results, then the 16 lanes halved
 * three times (the _mm512_reduce_add_ps tree); the tail beyond a multiple of
 * 64 in double. So this reference and the AVX-512 kernel agree bit for bit.
 */
static float dot_f16(const uint16_t *a, const uint16_t *b, size_t n)
{
    float acc[64] = { 0 }, v[16];
    size_t n64 = n & ~(size_t)63;
    double sum;

    for (size_t blk = 0; blk < n64; blk += 64)
        for (size_t i = 0; i < 64; i++)
            acc[i] += fp16_to_f32(a[blk + i]) * fp16_to_f32(b[blk + i]);
    for (size_t i = 0; i < 16; i++)
        v[i] = (acc[i] + acc[i + 32]) + (acc[i + 16] + acc[i + 48]);
    for (size_t i = 0; i < 8; i++)
        v[i] += v[i + 8];
    for (size_t i = 0; i < 4; i++)
        v[i] += v[i + 4];
    sum = (double)((v[0] + v[2]) + (v[1] + v[3]));
    for (size_t i = n64; i < n; i++)
        sum += (double)(fp16_to_f32(a[i]) * fp16_to_f32(b[i]));
    return (float)sum;
}

static void scale_f16(size_t n, float s, uint16_t *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] = f32_to_fp16(fp16_to_f32(y[i]) * s);
}

static void mad_f16(size_t n, float a, const uint16_t *x, uint16_t *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] = f32_to_fp16(fmaf(fp16_to_f32(x[i]), a, fp16_to_f32(y[i])));
}

static void f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = f32_to_fp16(x[i]);
}

static void f16_to_f32(const uint16_t *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = fp16_to_f32(x[i]);
}

void kernels__swiglu(size_t n, float *g, const float *u)
{
    size_t head = n - n % 16;

    for (size_t i = 0; i < n; i++) {
        float x = g[i], e = i < head ? kernels__expf_poly(0.0f - x) : expf(-x);

        g[i] = x / (1.0f + e) * u[i];
    }
}

const struct kernel_ops kernels_scalar = {
    .name = "scalar",
    .vec_dot = {
        [TENSOR_TYPE_F32] = vec_dot_f32,
        [TENSOR_TYPE_F16] = vec_dot_f16,
        [TENSOR_TYPE_BF16] = vec_dot_bf16,
        [TENSOR_TYPE_Q8_0] = vec_dot_q8_0,
        [TENSOR_TYPE_Q4_0] = vec_dot_q4_0,
        [TENSOR_TYPE_Q5_0] = vec_dot_q5_0,
        [TENSOR_TYPE_Q5_1] = kernels__vec_dot_q5_1,
        [TENSOR_TYPE_Q4_K] = vec_dot_q4_k,
        [TENSOR_TYPE_Q5_K] = vec_dot_q5_k,
        [TENSOR_TYPE_Q6_K] = vec_dot_q6_k,
    },
    .from_float = {
        [TENSOR_TYPE_F32] = from_float_f32,
        [TENSOR_TYPE_F16] = from_float_f16,
        [TENSOR_TYPE_BF16] = from_float_bf16,
        [TENSOR_TYPE_Q8_0] = from_float_q8_0,
        [TENSOR_TYPE_Q8_1] = kernels__from_float_q8_1,
        [TENSOR_TYPE_Q8_K] = from_float_q8_k,
    },
    .gemm = {
        [TENSOR_TYPE_F32] = gemm_f32,
        [TENSOR_TYPE_F16] = gemm_f16,
        [TENSOR_TYPE_BF16] = gemm_bf16,
        [TENSOR_TYPE_Q8_0] = gemm_q8_0,
        [TENSOR_TYPE_Q4_0] = gemm_q4_0,
        [TENSOR_TYPE_Q5_0] = gemm_q5_0,
        [TENSOR_TYPE_Q5_1] = kernels__gemm_q5_1,
        [TENSOR_TYPE_Q4_K] = gemm_q4_k,
        [TENSOR_TYPE_Q5_K] = gemm_q5_k,
        [TENSOR_TYPE_Q6_K] = gemm_q6_k,
    },
    .dot_f32 = dot_f32,
    .dot_f32_f16 = dot_f32_f16,
    .axpy_f32 = axpy_f32,
    .axpy_f16 = axpy_f16,
    .dot_f16 = dot_f16,
    .scale_f16 = scale_f16,
    .mad_f16 = mad_f16,
    .f32_to_f16 = f32_to_f16,
    .swiglu = kernels__swiglu,
    .f16_to_f32 = f16_to_f32,
};
