/*
 * kernels_avx512_float.c - repacked F16 and BF16 weights (AVX-512 table).
 *
 * Compiled with KFLAGS_AVX512 like kernels_avx512.c and reached only through
 * its table. A group of KERNELS_PACK_ROWS (16) rows of n elements is stored
 * element-interleaved so that one load gives the same position of all 16
 * rows, and a product with an activation element broadcast gives 16 row
 * partial sums in 16 lanes, with no horizontal sum:
 *   F16:  element k of row r at [k][r]            (16 halves per k)
 *   BF16: element k of row r at [k / 2][r][k % 2] (pairs for vdpbf16ps)
 * A group takes exactly its rows' bytes. n is a multiple of 32.
 *
 * The activations arrive in the table's vec_dot type (F16 for F16 weights,
 * BF16 for BF16 weights), rounded where llama.cpp rounds them.
 */
#include <immintrin.h>
#include <string.h>

#include "engine/kernels_int.h"

void kernels__avx512_pack_f16(const void *w, size_t ws, size_t nr, void *out)
{
    size_t n = ws / sizeof(uint16_t);
    uint16_t *o = out;

    for (size_t g = 0; g < nr; g += KERNELS_PACK_ROWS) {
        const uint16_t *src = (const uint16_t *)((const uint8_t *)w + g * ws);

        for (size_t k = 0; k < n; k++)
            for (size_t r = 0; r < KERNELS_PACK_ROWS; r++)
                *o++ = src[r * n + k];
    }
}

void kernels__avx512_unpack_f16(const void *group, size_t ws, size_t r, void *row)
{
    const uint16_t *in = group;
    uint16_t *dst = row;

    for (size_t k = 0; k < ws / sizeof(uint16_t); k++)
        dst[k] = in[k * KERNELS_PACK_ROWS + r];
}

void kernels__avx512_pack_bf16(const void *w, size_t ws, size_t nr, void *out)
{
    size_t n = ws / sizeof(uint16_t);
    uint16_t *o = out;

    for (size_t g = 0; g < nr; g += KERNELS_PACK_ROWS) {
        const uint16_t *src = (const uint16_t *)((const uint8_t *)w + g * ws);

        for (size_t k = 0; k < n; k += 2)
            for (size_t r = 0; r < KERNELS_PACK_ROWS; r++) {
                *o++ = src[r * n + k];
                *o++ = src[r * n + k + 1];
            }
    }
}

void kernels__avx512_unpack_bf16(const void *group, size_t ws, size_t r, void *row)
{
    const uint16_t *in = group;
    uint16_t *dst = row;

    for (size_t k = 0; k < ws / sizeof(uint16_t); k += 2) {
        dst[k] = in[k * KERNELS_PACK_ROWS + 2 * r];
        dst[k + 1] = in[k * KERNELS_PACK_ROWS + 2 * r + 1];
    }
}

void kernels__avx512_gemm_packed_f16(size_t n, const void *w, size_t ws, size_t nr, const void *x,
                                     size_t xs, size_t nc, float *y, size_t ys)
{
    for (size_t g = 0; g < nr; g += KERNELS_PACK_ROWS) {
        const uint16_t *pw = (const uint16_t *)((const uint8_t *)w + g * ws);

        for (size_t c = 0; c < nc; c++) {
            const uint16_t *xc = (const uint16_t *)((const uint8_t *)x + c * xs);
            __m512 acc = _mm512_setzero_ps();

            for (size_t k = 0; k < n; k++) {
                __m512 wv = _mm512_cvtph_ps(
                    _mm256_loadu_si256((const __m256i *)(pw + k * KERNELS_PACK_ROWS)));

                acc = _mm512_fmadd_ps(wv, _mm512_set1_ps(_cvtsh_ss(xc[k])), acc);
            }
            _mm512_storeu_ps(y + c * ys + g, acc);
        }
    }
}

void kernels__avx512_gemm_packed_bf16(size_t n, const void *w, size_t ws, size_t nr, const void *x,
                                      size_t xs, size_t nc, float *y, size_t ys)
{
    for (size_t g = 0; g < nr; g += KERNELS_PACK_ROWS) {
        const uint16_t *pw = (const uint16_t *)((const uint8_t *)w + g * ws);

        for (size_t c = 0; c < nc; c++) {
            const uint8_t *xc = (const uint8_t *)x + c * xs;
            __m512 acc = _mm512_setzero_ps();

            for (size_t k = 0; k < n; k += 2) {
                int32_t pair;

                memcpy(&pair, xc + k * sizeof(uint16_t), sizeof(pair));
                acc =
                    _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(pw + k * KERNELS_PACK_ROWS),
                                     (__m512bh)_mm512_set1_epi32(pair));
            }
            _mm512_storeu_ps(y + c * ys + g, acc);
        }
    }
}
