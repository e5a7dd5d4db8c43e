/*
 * kernels_int.h - internals shared by kernels.c and kernels_*.c.
 *
 * The activation formats produced by from_float (kernels.h) are defined here
 * once, in words, so that every instruction set produces the same bytes
 * (tests/unit/engine/test_kernels.c compares them bit for bit):
 *   F16, BF16: round to nearest even (f32_to_fp16, f32_to_bf16 of quant.h).
 *   Q8_0: per block of 32, amax = max |x|, d = amax / 127, id = 1 / d (0 if
 *         d == 0 or 1 / d overflows), q = round-half-even(x * id) (|q| <= 127),
 *         stored d = f16(d).
 *   Q8_1: as Q8_0, plus s = f16(d * sum(q)) with the f32 d (as ggml).
 *   Q8_K: per block of 256, amax = max |x|, iscale = 127 / amax; if amax is
 *         0 or iscale overflows the block is zero; else q = round-half-even(x * iscale) clamped to
 *         [-127, 127], d = 1 / iscale, bsums[g] = sum of q[16g .. 16g + 15].
 *   A block holding NaN or an infinity gets d = NaN and zero quants (and
 *   bsums), so that every dot product with it is NaN (E02).
 * These differ from llama.cpp's weight quantizers on purpose (half-even
 * rounding vectorises exactly; the positive Q8_K scale avoids a sign tie);
 * weights go through quant_quantize_row instead.
 *
 * Only kernels_avx2.c and kernels_avx512.c may contain AVX instructions;
 * this header is plain C.
 */
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/kernels.h"

/*
 * The scalar table's Q5_1 weights (only produced by llama-quantize's
 * fallback for rows that 256 does not divide) and their Q8_1 activations:
 * the references the SIMD tables' own kernels are tested against.
 */
void kernels__vec_dot_q5_1(size_t n, float *s, const void *w, const void *x);
void kernels__gemm_q5_1(size_t n, const void *w, size_t w_stride, size_t n_rows, const void *x,
                        size_t x_stride, size_t n_cols, float *y, size_t y_stride);
void kernels__from_float_q8_1(const float *x, void *y, size_t n);

/*
 * Repacked F16 and BF16 weights for the AVX-512 table
 * (kernels_avx512_float.c; the layouts are described there).
 */
void kernels__avx512_pack_f16(const void *w, size_t ws, size_t nr, void *out);
void kernels__avx512_unpack_f16(const void *group, size_t ws, size_t r, void *row);
void kernels__avx512_gemm_packed_f16(size_t n, const void *w, size_t ws, size_t nr, const void *x,
                                     size_t xs, size_t nc, float *y, size_t ys);
void kernels__avx512_pack_bf16(const void *w, size_t ws, size_t nr, void *out);
void kernels__avx512_unpack_bf16(const void *group, size_t ws, size_t r, void *row);
void kernels__avx512_gemm_packed_bf16(size_t n, const void *w, size_t ws, size_t nr, const void *x,
                                      size_t xs, size_t nc, float *y, size_t ys);

/*
 * y[i] = expf(x[i]) for 16 floats the way the AVX-512 attn_decode computes
 * it (kernels_avx512.c; test hook: must equal the C library's expf).
 * Returns whether the vector lanes are in use: false if the run-time check
 * found that this C library's expf rounds differently (then every lane
 * calls expf).
 */
bool kernels__avx512_expf16(const float *x, float *y);

/*
 * exp(x) as ARM's optimized-routines compute it in single precision (and
 * llama.cpp's CPU backend after them, for SiLU): x = n ln2 + b with n
 * rounded to an integer by the 1.5 * 2^23 shift and ln2 split in two, then
 * 2^n times a degree-5 polynomial in b (that routine's published minimax
 * coefficients), every step in float with fused multiply-adds. Matching
 * this operation for operation is what makes the SwiGLU activations, and
 * through their 8-bit quantization the logits, equal llama.cpp's bits
 * (docs/internals/engine.md). The vector versions must give these bits.
 * Within 2.2 ulp of exp(x) (measured over [-87, 88]; the test allows 2.5);
 * 0 below about -103.9, infinity above 88.7.
 */
static inline float kernels__expf_poly(float x)
{
    const float shift = 0x1.8p23f;
    float z = fmaf(x, 0x1.715476p+0f, shift), n = z - shift;
    float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x)), u = b * b;
    float j = fmaf(
        fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
        u, fmaf(0x1.ffffecp-1f, b, 1.0f));

    if (isnan(n)) return n;
    if (fabsf(n) > 192.0f) return n > 0.0f ? INFINITY : 0.0f;
    return ldexpf(j, (int)n);
}

/* kernel_ops.swiglu with kernels__expf_poly one element at a time. */
void kernels__swiglu(size_t n, float *g, const float *u);

/* The gemm of kernels.h done one vec_dot at a time (the scalar reference). */
void kernels__gemm_by_vec_dot(kernel_vec_dot_fn *dot, size_t n, const void *w, size_t w_stride,
                              size_t n_rows, const void *x, size_t x_stride, size_t n_cols,
                              float *y, size_t y_stride);

/* Unpacks the eight 6-bit scales and mins of a Q4_K/Q5_K block. */
static inline void kernels__k4_scales(const uint8_t *q, uint8_t sc[8], uint8_t m[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
        sc[j + 4] = (uint8_t)((q[j + 8] & 0xF) | ((q[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}
