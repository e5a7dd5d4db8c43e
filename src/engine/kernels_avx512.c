/*
 * kernels_avx512.c - AVX-512 kernels (F, BW, VL, DQ, VNNI, BF16, VBMI).
 *
 * Compiled with its own -m flags (Makefile KFLAGS_AVX512) and only called
 * after kernels.c has checked CPUID and XCR0. Results match
 * kernels_scalar.c within the tolerances of docs/internals/kernels.md.
 *
 * Every matrix kernel is one register tile, tile_<type>(R, C, ...), that
 * computes R weight rows x C activation columns: the weights of a block are
 * unpacked once per row and reused for every column, each (row, column)
 * pair keeps a 16-lane f32 accumulator for the whole row, and the only
 * horizontal sum is at the end. vec_dot is the 1 x 1 tile; gemm walks the
 * matrix in RT x CT tiles (rows outer, so the tile's weights stay in L1
 * while the columns stream) and dispatches edge tiles to smaller constant
 * shapes so every loop is unrolled at compile time.
 *
 * Integer products use VNNI: vpdpbusd (u8 x s8, 4-way) for Q8_0 and Q4_0,
 * vpmaddubsw + vpdpwssd (u8 x s8 pairs, then x 16-bit sub-block scales) for
 * the k-quants, so integer parts are exact.
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "engine/kernels_int.h"

#define INLINE static inline __attribute__((always_inline))

/* Tile shape of the gemm kernels. */
#define RT 4
#define CT 4

INLINE float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* Mask of the low k (< 16 or < 32) lanes. */
INLINE __mmask16 mask16(size_t k)
{
    return (__mmask16)((1u << k) - 1);
}

INLINE __mmask32 mask32(size_t k)
{
    return (__mmask32)((1ull << k) - 1);
}

/* ======================= float tiles ======================= */

/* F32: y[c][r] = sum_i w_r[i] * x_c[i]. */
INLINE void tile_f32(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                     const uint8_t *x, size_t xs, float *y, size_t ys)
{
    __m512 acc[RT][CT];
    size_t i = 0;

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        __m512 xv[CT];

        for (int c = 0; c < C; c++)
            xv[c] = _mm512_loadu_ps((const float *)(x + c * xs) + i);
        for (int r = 0; r < R; r++) {
            __m512 wv = _mm512_loadu_ps((const float *)(w + r * ws) + i);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (i < n) {
        __mmask16 m = mask16(n - i);
        __m512 xv[CT];

        for (int c = 0; c < C; c++)
            xv[c] = _mm512_maskz_loadu_ps(m, (const float *)(x + c * xs) + i);
        for (int r = 0; r < R; r++) {
            __m512 wv = _mm512_maskz_loadu_ps(m, (const float *)(w + r * ws) + i);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = _mm512_reduce_add_ps(acc[r][c]);
}

INLINE __m512 load_f16(const uint8_t *p, size_t i)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
}

INLINE __m512 load_f16_mask(const uint8_t *p, size_t i, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
}

/* F16: as F32 with both operands converted by vcvtph2ps (exact). */
INLINE void tile_f16(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                     const uint8_t *x, size_t xs, float *y, size_t ys)
{
    __m512 acc[RT][CT];
    size_t i = 0;

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        __m512 xv[CT];

        for (int c = 0; c < C; c++)
            xv[c] = load_f16(x + c * xs, i);
        for (int r = 0; r < R; r++) {
            __m512 wv = load_f16(w + r * ws, i);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (i < n) {
        __mmask16 m = mask16(n - i);
        __m512 xv[CT];

        for (int c = 0; c < C; c++)
            xv[c] = load_f16_mask(x + c * xs, i, m);
        for (int r = 0; r < R; r++) {
            __m512 wv = load_f16_mask(w + r * ws, i, m);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/*
 * BF16: vdpbf16ps, 32 products per instruction. The products are exact in
 * f32; the instruction treats subnormal inputs and results as zero.
 */
INLINE void tile_bf16(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    __m512 acc[RT][CT];
    size_t i = 0;

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        __m512i xv[CT];

        for (int c = 0; c < C; c++)
            xv[c] = _mm512_loadu_si512((const uint16_t *)(x + c * xs) + i);
        for (int r = 0; r < R; r++) {
            __m512i wv = _mm512_loadu_si512((const uint16_t *)(w + r * ws) + i);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)wv, (__m512bh)xv[c]);
        }
    }
    if (i < n) {
        __mmask32 m = mask32(n - i);
        __m512i xv[CT];

        for (int c = 0; c < C; c++)
            xv[c] = _mm512_maskz_loadu_epi16(m, (const uint16_t *)(x + c * xs) + i);
        for (int r = 0; r < R; r++) {
            __m512i wv = _mm512_maskz_loadu_epi16(m, (const uint16_t *)(w + r * ws) + i);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)wv, (__m512bh)xv[c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* ========== Q8_0, Q4_0 and Q5_0 against Q8_0, Q5_1 against Q8_1 ========== */

/*
 * Two 32-element blocks per 512-bit register: lanes 0-7 of every int32
 * result belong to the first block, lanes 8-15 to the second. Weights are
 * made unsigned (Q8_0: w + 128; Q4_0: the raw nibble q = w + 8; Q5_0: the
 * raw five bits q = w + 16) for
 * vpdpbusd, and the offset times sum(x) is subtracted by starting the dot
 * product from -offset * sum(x), computed once per column. Q5_1's five
 * bits q (0..31) carry no offset; its minimum m enters per block as
 * m_w * s_x (s_x = d_x * sum(x) of the Q8_1 block, ggml_vec_dot_q5_1_q8_1),
 * added to lane 0 (first block) and lane 8 (second).
 */

/* The quants of two blocks (b1 NULL: one) as 64 bytes. */
INLINE __m512i load_qs_pair(const int8_t *b0, const int8_t *b1)
{
    __m256i lo = _mm256_loadu_si256((const __m256i *)b0);

    if (b1 == NULL) return _mm512_zextsi256_si512(lo);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256((const __m256i *)b1),
                              1);
}

/* Per-lane scale: d0 in lanes 0-7, d1 in lanes 8-15. */
INLINE __m512 pair_scale(float d0, float d1)
{
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

/* The nibbles of two blocks (qs1 NULL: one) as 64 bytes in element order. */
INLINE __m512i load_nibbles(const uint8_t *qs0, const uint8_t *qs1)
{
    /* [q0 | q1] -> [q0, q0, q1, q1] by 128-bit lanes -> nibbles lo, hi, lo, hi. */
    const __m512i shift = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                            0x0004000400040004LL, 0x0004000400040004LL);
    __m128i lo = _mm_loadu_si128((const __m128i *)qs0);
    __m256i v = qs1 != NULL ? _mm256_inserti128_si256(_mm256_castsi128_si256(lo),
                                                      _mm_loadu_si128((const __m128i *)qs1), 1)
                            : _mm256_zextsi128_si256(lo);
    __m512i t = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
                                         _mm512_castsi256_si512(v));

    return _mm512_and_si512(_mm512_srlv_epi16(t, shift), _mm512_set1_epi8(0x0F));
}

/*
 * The five-bit values of two Q5_0/Q5_1 blocks (qs1 NULL: one): the nibbles
 * plus 16 where the block's qh has bit j (element j) set, one mask bit per
 * byte lane.
 */
INLINE __m512i load_q5(const uint8_t *qs0, const uint8_t *qh0, const uint8_t *qs1,
                       const uint8_t *qh1)
{
    uint32_t h0, h1 = 0;
    __m512i q = load_nibbles(qs0, qs1);

    memcpy(&h0, qh0, 4);
    if (qh1 != NULL) memcpy(&h1, qh1, 4);
    return _mm512_mask_add_epi8(q, _cvtu64_mask64(h0 | (uint64_t)h1 << 32), q,
                                _mm512_set1_epi8(16));
}

/* Kinds of 32-element weight blocks, by the offset that makes them unsigned. */
enum { K32_Q8_0, K32_Q4_0, K32_Q5_0, K32_Q5_1 };

/* The activation block ib of a column: Q8_1 for Q5_1, else Q8_0. */
INLINE const uint8_t *x_block(const int kind, const uint8_t *xc, size_t ib)
{
    return xc + ib * (kind == K32_Q5_1 ? sizeof(struct block_q8_1) : sizeof(struct block_q8_0));
}

INLINE const int8_t *x_qs(const int kind, const uint8_t *b)
{
    return (const int8_t *)b +
           (kind == K32_Q5_1 ? offsetof(struct block_q8_1, qs) : offsetof(struct block_q8_0, qs));
}

/* An f16 field of a block (d and, in Q8_1, s), by byte offset. */
INLINE float h2f_at(const uint8_t *b, size_t off)
{
    uint16_t h;

    memcpy(&h, b + off, sizeof(h));
    return h2f(h);
}

/* One pair (or, with two == 0, the last single block) of a Q8_0/Q4_0/Q5_0/Q5_1 tile. */
INLINE void q32_pair(const int R, const int C, const int kind, const int two, size_t ib,
                     const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, __m512 acc[RT][CT])
{
    const __m512i koff = _mm512_set1_epi8(kind == K32_Q4_0   ? 8
                                          : kind == K32_Q5_0 ? 16
                                                             : (char)0x80);
    __m512i wq[RT];
    __m512 wd[RT], wm[RT];

    for (int r = 0; r < R; r++) {
        if (kind == K32_Q4_0) {
            const struct block_q4_0 *b = (const struct block_q4_0 *)(w + r * ws) + ib;

            wq[r] = load_nibbles(b[0].qs, two ? b[1].qs : NULL);
            wd[r] = pair_scale(h2f(b[0].d), two ? h2f(b[1].d) : 0.0f);
        } else if (kind == K32_Q5_0) {
            const struct block_q5_0 *b = (const struct block_q5_0 *)(w + r * ws) + ib;

            wq[r] = load_q5(b[0].qs, b[0].qh, two ? b[1].qs : NULL, two ? b[1].qh : NULL);
            wd[r] = pair_scale(h2f(b[0].d), two ? h2f(b[1].d) : 0.0f);
        } else if (kind == K32_Q5_1) {
            const struct block_q5_1 *b = (const struct block_q5_1 *)(w + r * ws) + ib;

            wq[r] = load_q5(b[0].qs, b[0].qh, two ? b[1].qs : NULL, two ? b[1].qh : NULL);
            wd[r] = pair_scale(h2f(b[0].d), two ? h2f(b[1].d) : 0.0f);
            wm[r] = pair_scale(h2f(b[0].m), two ? h2f(b[1].m) : 0.0f);
        } else {
            const struct block_q8_0 *b = (const struct block_q8_0 *)(w + r * ws) + ib;

            wq[r] = _mm512_xor_si512(load_qs_pair(b[0].qs, two ? b[1].qs : NULL), koff);
            wd[r] = pair_scale(h2f(b[0].d), two ? h2f(b[1].d) : 0.0f);
        }
    }
    for (int c = 0; c < C; c++) {
        const uint8_t *b0 = x_block(kind, x + c * xs, ib), *b1 = x_block(kind, x + c * xs, ib + 1);
        __m512i xq = load_qs_pair(x_qs(kind, b0), two ? x_qs(kind, b1) : NULL);
        __m512i neg = kind == K32_Q5_1
                          ? _mm512_setzero_si512()
                          : _mm512_sub_epi32(_mm512_setzero_si512(),
                                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), koff, xq));
        __m512 xd = pair_scale(h2f_at(b0, 0), two ? h2f_at(b1, 0) : 0.0f);
        __m512 xsum = kind == K32_Q5_1
                          ? pair_scale(h2f_at(b0, offsetof(struct block_q8_1, s)),
                                       two ? h2f_at(b1, offsetof(struct block_q8_1, s)) : 0.0f)
                          : _mm512_setzero_ps();

        for (int r = 0; r < R; r++) {
            __m512i s = _mm512_dpbusd_epi32(neg, wq[r], xq);

            acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(wd[r], xd), acc[r][c]);
            if (kind == K32_Q5_1) acc[r][c] = _mm512_mask3_fmadd_ps(wm[r], xsum, acc[r][c], 0x0101);
        }
    }
}

INLINE void tile_q32(const int R, const int C, const int kind, size_t n, const uint8_t *w,
                     size_t ws, const uint8_t *x, size_t xs, float *y, size_t ys)
{
    const size_t nb = n / QK8_0;
    __m512 acc[RT][CT];
    size_t ib = 0;

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (; ib + 2 <= nb; ib += 2)
        q32_pair(R, C, kind, 1, ib, w, ws, x, xs, acc);
    if (ib < nb) q32_pair(R, C, kind, 0, ib, w, ws, x, xs, acc);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* The eight lanes of one half added as llama.cpp's hsum_float_8 does. */
INLINE float hsum8_ggml(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));

    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/*
 * Q8_0 x Q8_0 in llama.cpp's order of additions (see kernels_scalar.c's
 * vec_dot_q8_0): each (row, column) pair has eight float lanes, lane k
 * accumulating fma(d_w * d_x, sum of elements 4k..4k+3, lane) block after
 * block. A 512-bit register holds two pairs: the low half row 2p, the high
 * half row 2p + 1, both against the same activation block broadcast to both
 * halves. Weights are made unsigned (w + 128) for vpdpbusd and 128 * sum(x)
 * is subtracted through the accumulator's start value, so every lane's
 * integer is exact. Tile: R <= RT rows (in (R + 1) / 2 pairs) x C <= CT.
 */
INLINE void tile_q8_0(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    const int P = (R + 1) / 2;
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    __m512 acc[(RT + 1) / 2][CT];

    for (int p = 0; p < P; p++)
        for (int c = 0; c < C; c++)
            acc[p][c] = _mm512_setzero_ps();
    for (size_t ib = 0; ib < n / QK8_0; ib++) {
        __m512i wq[(RT + 1) / 2];
        __m512 wd[(RT + 1) / 2];

        for (int p = 0; p < P; p++) {
            const struct block_q8_0 *b0 = (const struct block_q8_0 *)(w + 2 * p * ws) + ib;
            const int two = 2 * p + 1 < R;
            const struct block_q8_0 *b1 =
                two ? (const struct block_q8_0 *)(w + (2 * p + 1) * ws) + ib : NULL;
            __m256i lo = _mm256_loadu_si256((const __m256i *)b0->qs);
            __m256i hi = two ? _mm256_loadu_si256((const __m256i *)b1->qs) : _mm256_setzero_si256();


            wq[p] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), k80);
            wd[p] = pair_scale(h2f(b0->d), two ? h2f(b1->d) : 0.0f);
        }
        for (int c = 0; c < C; c++) {
            const struct block_q8_0 *b = (const struct block_q8_0 *)(x + c * xs) + ib;
            __m512i xq = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b->qs));
            __m512i neg = _mm512_sub_epi32(_mm512_setzero_si512(),
                                           _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, xq));
            __m512 xd = _mm512_set1_ps(h2f(b->d));

            for (int p = 0; p < P; p++) {
                __m512i s = _mm512_dpbusd_epi32(neg, wq[p], xq);

                acc[p][c] =
                    _mm512_fmadd_ps(_mm512_mul_ps(wd[p], xd), _mm512_cvtepi32_ps(s), acc[p][c]);
            }
        }
    }
    for (int p = 0; p < P; p++) {
        for (int c = 0; c < C; c++) {
            y[c * ys + 2 * p] = hsum8_ggml(_mm512_castps512_ps256(acc[p][c]));
            if (2 * p + 1 < R)
                y[c * ys + 2 * p + 1] = hsum8_ggml(_mm512_extractf32x8_ps(acc[p][c], 1));
        }
    }
}

INLINE void tile_q4_0(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    tile_q32(R, C, K32_Q4_0, n, w, ws, x, xs, y, ys);
}

INLINE void tile_q5_0(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    tile_q32(R, C, K32_Q5_0, n, w, ws, x, xs, y, ys);
}

INLINE void tile_q5_1(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    tile_q32(R, C, K32_Q5_1, n, w, ws, x, xs, y, ys);
}

/* ======================= k-quants against Q8_K ======================= */

/*
 * A super-block of 256 weights is unpacked into four registers of 64
 * unsigned bytes in element order. vpmaddubsw multiplies them with the
 * activations (s16 sums of pairs, no saturation: 63 * 127 * 2 < 32767) and
 * vpdpwssd multiplies those pairs by the 16-bit sub-block scale of their
 * lanes and accumulates in int32.
 */

/* The six-bit scales and mins of Q4_K/Q5_K as 8 bytes each. */
INLINE void k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *m)
{
    uint32_t u0, u1, u2, sc_hi, m_hi;

    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    sc_hi = (u2 & 0x0f0f0f0f) | ((u0 >> 2) & 0x30303030);
    m_hi = ((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 2) & 0x30303030);
    *sc = (u0 & 0x3f3f3f3f) | (uint64_t)sc_hi << 32;
    *m = (u1 & 0x3f3f3f3f) | (uint64_t)m_hi << 32;
}

/* Word index vector: lanes 0-15 = a, lanes 16-31 = b. */
INLINE __m512i idx_halves(short a, short b)
{
    return _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(a), _mm512_set1_epi16(b));
}

/* Weights of one Q4_K/Q5_K super-block, unpacked for the dot products. */
struct k4_row {
    __m512i q[4];  /* elements 64k .. 64k + 63, values 0..31 */
    __m512i sc[4]; /* 16-bit scales: lanes 0-15 sub-block 2k, 16-31 2k + 1 */
    __m256i m16;   /* mins, each twice: pairs with the 16 bsums */
    float d, dmin;
};

INLINE void k4_prep(const uint8_t *qs, const uint8_t *scales, uint16_t d, uint16_t dmin,
                    const uint8_t *qh, struct k4_row *p)
{
    const __m512i shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    const __m512i m0f = _mm512_set1_epi8(0x0F);
    uint64_t sc, m;
    __m512i sc16;
    __m128i m8;

    for (int k = 0; k < 4; k++) {
        __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * k)));

        p->q[k] = _mm512_and_si512(_mm512_srlv_epi16(v, shift), m0f);
    }
    if (qh != NULL) {
        __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh));

        for (int k = 0; k < 4; k++) {
            __m512i sel = _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull,
                                                 _mm512_set1_epi8((char)(1 << (2 * k))),
                                                 _mm512_set1_epi8((char)(2 << (2 * k))));
            __mmask64 hm = _mm512_test_epi8_mask(hb, sel);

            p->q[k] = _mm512_mask_add_epi8(p->q[k], hm, p->q[k], _mm512_set1_epi8(16));
        }
    }
    k4_scales(scales, &sc, &m);
    sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
    for (int k = 0; k < 4; k++)
        p->sc[k] = _mm512_permutexvar_epi16(idx_halves((short)(2 * k), (short)(2 * k + 1)), sc16);
    m8 = _mm_cvtsi64_si128((long long)m);
    p->m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
    p->d = h2f(d);
    p->dmin = h2f(dmin);
}

INLINE __m512 k4_col(const struct k4_row *p, const struct block_q8_k *b, __m512 acc)
{
    __m512i is = _mm512_setzero_si512();
    __m256i ms;

    for (int k = 0; k < 4; k++) {
        __m512i xv = _mm512_loadu_si512(b->qs + 64 * k);

        is = _mm512_dpwssd_epi32(is, _mm512_maddubs_epi16(p->q[k], xv), p->sc[k]);
    }
    ms = _mm256_madd_epi16(p->m16, _mm256_loadu_si256((const __m256i *)b->bsums));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_set1_ps(b->d * p->d), acc);
    return _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(ms)),
                            _mm512_set1_ps(b->d * p->dmin), acc);
}

/* Q4_K (is_q5 = 0) or Q5_K (is_q5 = 1) x Q8_K. */
INLINE void tile_k45(const int R, const int C, const int is_q5, size_t n, const uint8_t *w,
                     size_t ws, const uint8_t *x, size_t xs, float *y, size_t ys)
{
    __m512 acc[RT][CT];

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (size_t ib = 0; ib < n / QK_K; ib++) {
        for (int r = 0; r < R; r++) {
            struct k4_row p;

            if (is_q5) {
                const struct block_q5_k *b = (const struct block_q5_k *)(w + r * ws) + ib;

                k4_prep(b->qs, b->scales, b->d, b->dmin, b->qh, &p);
            } else {
                const struct block_q4_k *b = (const struct block_q4_k *)(w + r * ws) + ib;

                k4_prep(b->qs, b->scales, b->d, b->dmin, NULL, &p);
            }
            for (int c = 0; c < C; c++)
                acc[r][c] = k4_col(&p, (const struct block_q8_k *)(x + c * xs) + ib, acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = _mm512_reduce_add_ps(acc[r][c]);
}

INLINE void tile_q4_k(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    tile_k45(R, C, 0, n, w, ws, x, xs, y, ys);
}

INLINE void tile_q5_k(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    tile_k45(R, C, 1, n, w, ws, x, xs, y, ys);
}

/*
 * Q6_K: four registers of 6-bit values 0..63 (the -32 offset is applied as
 * -32 * sum_g sc_g * bsum_g), 16-bit scales per group of 16.
 */
struct k6_row {
    __m512i q[4];
    __m512i sc[4]; /* lanes 8g' .. 8g' + 7 hold the scale of group 4k + g' */
    __m256i sc16;  /* the 16 scales, pairs with the 16 bsums */
    float d;
};

INLINE void k6_prep(const struct block_q6_k *b, struct k6_row *p)
{
    const __m512i m0f = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i sh_lo =
        _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(4), _mm512_set1_epi16(2));
    const __m512i sh_hi =
        _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    __m512i s16;

    for (int h = 0; h < 2; h++) {
        __m512i l = _mm512_loadu_si512(b->ql + 64 * h);
        __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));

        /* elements 128h + 0..63: low nibbles, qh bits 0-1 (first half) and 2-3 */
        p->q[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m0f),
                                      _mm512_and_si512(_mm512_sllv_epi16(hb, sh_lo), m30));
        /* elements 128h + 64..127: high nibbles, qh bits 4-5 and 6-7 */
        p->q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m0f),
                                          _mm512_and_si512(_mm512_srlv_epi16(hb, sh_hi), m30));
    }
    p->sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    s16 = _mm512_castsi256_si512(p->sc16);
    for (int k = 0; k < 4; k++) {
        __m512i idx = _mm512_mask_blend_epi16(
            0xFFFF0000u,
            _mm512_mask_blend_epi16(0xFF00, _mm512_set1_epi16((short)(4 * k)),
                                    _mm512_set1_epi16((short)(4 * k + 1))),
            _mm512_mask_blend_epi16(0xFF000000u, _mm512_set1_epi16((short)(4 * k + 2)),
                                    _mm512_set1_epi16((short)(4 * k + 3))));

        p->sc[k] = _mm512_permutexvar_epi16(idx, s16);
    }
    p->d = h2f(b->d);
}

INLINE __m512 k6_col(const struct k6_row *p, const struct block_q8_k *b, __m512 acc)
{
    __m512i is = _mm512_setzero_si512();
    __m256i corr;

    for (int k = 0; k < 4; k++) {
        __m512i xv = _mm512_loadu_si512(b->qs + 64 * k);

        is = _mm512_dpwssd_epi32(is, _mm512_maddubs_epi16(p->q[k], xv), p->sc[k]);
    }
    corr = _mm256_slli_epi32(
        _mm256_madd_epi16(p->sc16, _mm256_loadu_si256((const __m256i *)b->bsums)), 5);
    is = _mm512_sub_epi32(is, _mm512_zextsi256_si512(corr));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_set1_ps(b->d * p->d), acc);
}

INLINE void tile_q6_k(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    __m512 acc[RT][CT];

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (size_t ib = 0; ib < n / QK_K; ib++) {
        for (int r = 0; r < R; r++) {
            struct k6_row p;

            k6_prep((const struct block_q6_k *)(w + r * ws) + ib, &p);
            for (int c = 0; c < C; c++)
                acc[r][c] = k6_col(&p, (const struct block_q8_k *)(x + c * xs) + ib, acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* ======================= vec_dot and gemm entry points ======================= */

#define TILE_CASE(T, R, C)                      \
    case (R)*8 + (C):                           \
        tile_##T(R, C, n, w, ws, x, xs, y, ys); \
        break;

/*
 * One-column products (decode) with a kernel of their own: Q8_0, one row at
 * a time in 256-bit registers, exactly llama.cpp's sequence per row (|w| and
 * sign(x, w) for vpdpbusd, eight lanes, fma per block, its horizontal sum),
 * so the bits equal the scalar reference and the weights stream in order.
 * The other types return false and use their tiles with one row per tile.
 */
static bool gemv_q8_0(size_t n, const void *w, size_t ws, size_t nr, const void *x, float *y)
{
    const struct block_q8_0 *bx = x;

    for (size_t r = 0; r < nr; r++) {
        const struct block_q8_0 *bw = (const struct block_q8_0 *)((const uint8_t *)w + r * ws);
        __m256 acc = _mm256_setzero_ps();

        for (size_t ib = 0; ib < n / QK8_0; ib++) {
            __m256i qw = _mm256_loadu_si256((const __m256i *)bw[ib].qs);
            __m256i qx = _mm256_loadu_si256((const __m256i *)bx[ib].qs);
            __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qw, qw),
                                            _mm256_sign_epi8(qx, qw));
            __m256 d = _mm256_set1_ps(h2f(bw[ib].d) * h2f(bx[ib].d));

            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
        }
        y[r] = hsum8_ggml(acc);
    }
    return true;
}

#define GEMV_NONE(T)                                                                          \
    static inline bool gemv_##T(size_t n, const void *w, size_t ws, size_t nr, const void *x, \
                                float *y)                                                     \
    {                                                                                         \
        (void)n, (void)w, (void)ws, (void)nr, (void)x, (void)y;                               \
        return false;                                                                         \
    }
GEMV_NONE(f32)

static float dot_f16(const uint16_t *a, const uint16_t *b, size_t n);
static void vec_dot_bf16_fast(size_t n, float *s, const void *w, const void *x);

/*
 * One-column F16 and BF16 products: rows one after another with four
 * accumulator chains (the 1 x 1 tile has one, and decode of a 2-byte type
 * waited on its latency: 65% of the bandwidth bound against llama.cpp's
 * 93%; software prefetch on top made it slower). F16 sums exactly like llama.cpp's
 * ggml_vec_dot_f16 (dot_f16); BF16 uses vdpbf16ps in four chains.
 */
static bool gemv_f16(size_t n, const void *w, size_t ws, size_t nr, const void *x, float *y)
{
    for (size_t r = 0; r < nr; r++)
        y[r] = dot_f16((const uint16_t *)((const uint8_t *)w + r * ws), x, n);
    return true;
}

static bool gemv_bf16(size_t n, const void *w, size_t ws, size_t nr, const void *x, float *y)
{
    for (size_t r = 0; r < nr; r++) {
        vec_dot_bf16_fast(n, y + r, (const uint8_t *)w + r * ws, x);
    }
    return true;
}
GEMV_NONE(q4_0)
GEMV_NONE(q5_0)
GEMV_NONE(q5_1)
GEMV_NONE(q4_k)
GEMV_NONE(q5_k)
GEMV_NONE(q6_k)

#define DEFINE_KERNELS(T)                                                                          \
    static                                                                                         \
        __attribute__((unused)) void vec_dot_##T(size_t n, float *s, const void *w, const void *x) \
    {                                                                                              \
        tile_##T(1, 1, n, w, 0, x, 0, s, 0);                                                       \
    }                                                                                              \
    static __attribute__((noinline)) void tiles_##T(size_t rn, size_t cn, size_t n,                \
                                                    const uint8_t *w, size_t ws, const uint8_t *x, \
                                                    size_t xs, float *y, size_t ys)                \
    {                                                                                              \
        switch (rn * 8 + cn) {                                                                     \
            TILE_CASE(T, 1, 1)                                                                     \
            TILE_CASE(T, 1, 2)                                                                     \
            TILE_CASE(T, 1, 3)                                                                     \
            TILE_CASE(T, 1, 4)                                                                     \
            TILE_CASE(T, 2, 1)                                                                     \
            TILE_CASE(T, 2, 2)                                                                     \
            TILE_CASE(T, 2, 3)                                                                     \
            TILE_CASE(T, 2, 4)                                                                     \
            TILE_CASE(T, 3, 1)                                                                     \
            TILE_CASE(T, 3, 2)                                                                     \
            TILE_CASE(T, 3, 3)                                                                     \
            TILE_CASE(T, 3, 4)                                                                     \
            TILE_CASE(T, 4, 1)                                                                     \
            TILE_CASE(T, 4, 2)                                                                     \
            TILE_CASE(T, 4, 3)                                                                     \
            TILE_CASE(T, 4, 4)                                                                     \
        default:                                                                                   \
            break;                                                                                 \
        }                                                                                          \
    }                                                                                              \
    static void gemm_##T(size_t n, const void *w, size_t ws, size_t nr, const void *x, size_t xs,  \
                         size_t nc, float *y, size_t ys)                                           \
    {                                                                                              \
        /* Up to 8 columns (decode, a few parallel streams): rows one after                        \
         * another, so the weights stream sequentially, which the hardware                         \
         * prefetcher follows at full memory bandwidth; interleaved rows run at                    \
         * a third of it. Measured (Llama-3.2-1B Q4_K_M, 2 threads): 2 columns                     \
         * 28 -> 64 t/s, 4 columns 47 -> 91 t/s; from 16 columns on the                            \
         * 4-row tiles are faster (compute, not memory, bound). */                                 \
        const size_t rt = nc <= 8 ? 1 : RT;                                                        \
        if (nc == 1 && gemv_##T(n, w, ws, nr, x, y)) return;                                       \
        for (size_t r0 = 0; r0 < nr; r0 += rt) {                                                   \
            size_t rn = nr - r0 < rt ? nr - r0 : rt;                                               \
            for (size_t c0 = 0; c0 < nc; c0 += CT) {                                               \
                size_t cn = nc - c0 < CT ? nc - c0 : CT;                                           \
                tiles_##T(rn, cn, n, (const uint8_t *)w + r0 * ws, ws,                             \
                          (const uint8_t *)x + c0 * xs, xs, y + c0 * ys + r0, ys);                 \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_KERNELS(f32)
DEFINE_KERNELS(f16)
DEFINE_KERNELS(bf16)
DEFINE_KERNELS(q8_0)
DEFINE_KERNELS(q4_0)
DEFINE_KERNELS(q5_0)
DEFINE_KERNELS(q5_1)
DEFINE_KERNELS(q4_k)
DEFINE_KERNELS(q5_k)
DEFINE_KERNELS(q6_k)

/*
 * Software prefetch for one-column (decode) kernels over packed weights:
 * they read each line with little work on it, and the hardware streamer
 * alone falls behind (measured on Q4_K: 28 -> 45 t/s). Fetches the bytes
 * about 4 KiB ahead; prefetches never fault past the buffer's end.
 */
INLINE void prefetch_ahead(const void *p, size_t bytes)
{
    for (size_t off = 0; off < bytes; off += 64)
        _mm_prefetch((const char *)p + 4096 + off, _MM_HINT_T0);
}

/*
 * The packed layout of a block type: per block, each header field (offset,
 * size) of the 16 rows side by side, then each 4-byte chunk of the 16 rows
 * side by side (n_chunks chunks from q_off). The pk_* structs below spell
 * out the result.
 */
struct pack_field {
    uint8_t off, size;
};

struct pack_layout {
    size_t bsize, nf, q_off, n_chunks;
    struct pack_field f[17];
};

/* Packs nr rows (a multiple of 16) of ws bytes into groups of 16 rows. */
static void pack_rows(const struct pack_layout *L, const void *w, size_t ws, size_t nr, void *out)
{
    size_t nb = ws / L->bsize;
    uint8_t *o = out;

    for (size_t g = 0; g < nr; g += KERNELS_PACK_ROWS)
        for (size_t ib = 0; ib < nb; ib++) {
            const uint8_t *src = (const uint8_t *)w + g * ws + ib * L->bsize;

            for (size_t i = 0; i < L->nf; i++)
                for (size_t r = 0; r < KERNELS_PACK_ROWS; r++, o += L->f[i].size)
                    memcpy(o, src + r * ws + L->f[i].off, L->f[i].size);
            for (size_t k = 0; k < L->n_chunks; k++)
                for (size_t r = 0; r < KERNELS_PACK_ROWS; r++, o += 4)
                    memcpy(o, src + r * ws + L->q_off + 4 * k, 4);
        }
}

/* Row r of the group at group, back in the file layout (ws bytes). */
static void unpack_row(const struct pack_layout *L, const void *group, size_t ws, size_t r,
                       void *row)
{
    const uint8_t *in = group;
    uint8_t *dst = row;

    for (size_t ib = 0; ib < ws / L->bsize; ib++, in += KERNELS_PACK_ROWS * L->bsize) {
        const uint8_t *p = in;

        for (size_t i = 0; i < L->nf; i++) {
            memcpy(dst + ib * L->bsize + L->f[i].off, p + r * L->f[i].size, L->f[i].size);
            p += KERNELS_PACK_ROWS * L->f[i].size;
        }
        for (size_t k = 0; k < L->n_chunks; k++, p += KERNELS_PACK_ROWS * 4)
            memcpy(dst + ib * L->bsize + L->q_off + 4 * k, p + r * 4, 4);
    }
}

/* ======================= packed Q8_0 (16 interleaved rows) ======================= */

/*
 * One 32-element block of a group of 16 rows: the rows' scales, then chunk
 * k (elements 4k .. 4k + 3) of row r at q[k][r], so one 512-bit load holds
 * a chunk of all 16 rows and vpdpbusd against the activation's chunk k
 * broadcast gives 16 row partial sums in 16 lanes, with no horizontal sum.
 * 544 bytes = 16 x sizeof(struct block_q8_0): the group takes its rows'
 * bytes. The weights stay signed; the activation chunk is made unsigned
 * (x + 128, by xor) and 128 * (sum of the weight chunk), from one more
 * vpdpbusd per chunk, is subtracted, so the integer sums are exact.
 */
struct pk_q8_0 {
    uint16_t d[KERNELS_PACK_ROWS];
    int8_t q[QK8_0 / 4][KERNELS_PACK_ROWS][4];
};


INLINE __m512i bcast_chunk_u8(const int8_t *qs, size_t k)
{
    int32_t v;

    memcpy(&v, qs + 4 * k, 4);
    return _mm512_xor_si512(_mm512_set1_epi32(v), _mm512_set1_epi8((char)0x80));
}

/*
 * 16 rows x one column in llama.cpp's order (as tile_q8_0): lane r of acc[k]
 * accumulates fma(d_w * d_x, sum of elements 4k .. 4k + 3, .) block after
 * block for row r, and the eight lanes of a row are summed like hsum8_ggml.
 * Decode and small batches use it, so their bits do not change with packing.
 */
static void pk_q8_0_exact(size_t nb, const struct pk_q8_0 *pw, const struct block_q8_0 *bx,
                          float *y)
{
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    __m512 acc[QK8_0 / 4];

    for (int k = 0; k < QK8_0 / 4; k++)
        acc[k] = _mm512_setzero_ps();
    for (size_t ib = 0; ib < nb; ib++) {
        const struct pk_q8_0 *b = pw + ib;
        __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b->d)),
                                  _mm512_set1_ps(h2f(bx[ib].d)));

        prefetch_ahead(b, sizeof(*b));
        for (int k = 0; k < QK8_0 / 4; k++) {
            __m512i wk = _mm512_loadu_si512(b->q[k]);
            __m512i s =
                _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                     bcast_chunk_u8(bx[ib].qs, (size_t)k), wk),
                                 _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, wk));

            acc[k] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(s), acc[k]);
        }
    }
    _mm512_storeu_ps(
        y,
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[4], acc[0]), _mm512_add_ps(acc[6], acc[2])),
                      _mm512_add_ps(_mm512_add_ps(acc[5], acc[1]), _mm512_add_ps(acc[7], acc[3]))));
}

/*
 * 16 rows x C columns for batches: one integer sum per (row, column, block)
 * (exact), one fma per block; each weight chunk is loaded once for the C
 * columns.
 */
INLINE void pk_q8_0_fast(const int C, size_t nb, const struct pk_q8_0 *pw, const uint8_t *x,
                         size_t xs, float *y, size_t ys)
{
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    __m512 acc[8];

    for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    for (size_t ib = 0; ib < nb; ib++) {
        const struct pk_q8_0 *b = pw + ib;
        __m512i is[8], wc = _mm512_setzero_si512();
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b->d));

        for (int c = 0; c < C; c++)
            is[c] = _mm512_setzero_si512();
        for (int k = 0; k < QK8_0 / 4; k++) {
            __m512i wk = _mm512_loadu_si512(b->q[k]);

            wc = _mm512_dpbusd_epi32(wc, k80, wk);
            for (int c = 0; c < C; c++) {
                const struct block_q8_0 *bx = (const struct block_q8_0 *)(x + c * xs) + ib;

                is[c] = _mm512_dpbusd_epi32(is[c], bcast_chunk_u8(bx->qs, (size_t)k), wk);
            }
        }
        for (int c = 0; c < C; c++) {
            const struct block_q8_0 *bx = (const struct block_q8_0 *)(x + c * xs) + ib;
            __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(h2f(bx->d)));

            acc[c] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(_mm512_sub_epi32(is[c], wc)), acc[c]);
        }
    }
    for (int c = 0; c < C; c++)
        _mm512_storeu_ps(y + c * ys, acc[c]);
}

/* ======================= packed Q4_0 (16 interleaved rows) ======================= */

/*
 * As pk_q8_0: chunk k holds bytes 4k .. 4k + 3 of the 16 rows' nibbles, so
 * one load gives elements 4k .. 4k + 3 (low nibbles) and 16 + 4k .. 16 + 4k
 * + 3 (high nibbles) of 16 rows. The nibbles (0..15) are vpdpbusd's
 * unsigned operand against the signed activation, and 8 * (sum of the
 * activation chunk) is subtracted. 288 bytes = 16 x sizeof(struct block_q4_0).
 */
struct pk_q4_0 {
    uint16_t d[KERNELS_PACK_ROWS];
    uint8_t q[QK4_0 / 8][KERNELS_PACK_ROWS][4];
};


INLINE __m512i bcast_chunk_s8(const int8_t *qs, size_t k)
{
    int32_t v;

    memcpy(&v, qs + 4 * k, 4);
    return _mm512_set1_epi32(v);
}

/* ======================= packed Q5_0 (16 interleaved rows) ======================= */

/*
 * As pk_q4_0 plus the fifth bits: qh[r] is row r's 32 high bits (bit i for
 * element i), one 512-bit load for the 16 rows. For a nibble chunk of
 * elements e .. e + 3 the bits e .. e + 3 of each lane become bit 4 of its
 * four bytes (byte 0 of the shifted dword copied to all four bytes, tested
 * against 1, 2, 4, 8). Values 0..31 against the signed activation, minus
 * 16 * (sum of the activation chunk). 352 bytes = 16 x 22.
 */
struct pk_q5_0 {
    uint16_t d[KERNELS_PACK_ROWS];
    uint32_t qh[KERNELS_PACK_ROWS];
    uint8_t q[QK5_0 / 8][KERNELS_PACK_ROWS][4];
};


/* Bit 4 set in byte i of each lane where bit e + i of the lane's qh is set. */
INLINE __m512i q5_bits(__m512i qh, unsigned e)
{
    const __m512i byte0 =
        _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12));
    __m512i t = _mm512_shuffle_epi8(_mm512_srli_epi32(qh, e), byte0);
    __mmask64 m = _mm512_test_epi8_mask(t, _mm512_set1_epi32(0x08040201));

    return _mm512_maskz_mov_epi8(m, _mm512_set1_epi8(16));
}

/*
 * Q4_0 (five = 0) and Q5_0 (five = 1) x C columns, one exact integer sum per
 * block (see pk_q8_0_fast): the nibbles (plus bit 4 for Q5_0) are the
 * unsigned operand, and 8 (16) * (sum of the activation chunk) is subtracted.
 */
/*
 * Q5_1 as Q5_0 plus the rows' f16 minimums: 384 bytes = 16 x 24. Its
 * values q (0..31) need no offset: a row's dot with a Q8_1 block is
 * d_w d_x sum(q x) + m_w s_x, s_x the block's d_x sum(x).
 */
struct pk_q5_1 {
    uint16_t d[KERNELS_PACK_ROWS], m[KERNELS_PACK_ROWS];
    uint32_t qh[KERNELS_PACK_ROWS];
    uint8_t q[QK5_1 / 8][KERNELS_PACK_ROWS][4];
};

/* The nibble types of pk_nib_fast. */
enum { NIB_Q4_0, NIB_Q5_0, NIB_Q5_1 };

/*
 * 16 rows x C (<= 8) columns of Q4_0, Q5_0 (against Q8_0 activations) or
 * Q5_1 (against Q8_1).
 */
INLINE void pk_nib_fast(const int C, const int kind, size_t nb, const void *pw, const uint8_t *x,
                        size_t xs, float *y, size_t ys)
{
    const int five = kind != NIB_Q4_0, offset = kind != NIB_Q5_1;
    const __m512i m0f = _mm512_set1_epi8(0x0F), koff = _mm512_set1_epi8(five ? 16 : 8);
    const size_t bsize = kind == NIB_Q5_1   ? sizeof(struct pk_q5_1)
                         : kind == NIB_Q5_0 ? sizeof(struct pk_q5_0)
                                            : sizeof(struct pk_q4_0);
    const size_t xbsize = offset ? sizeof(struct block_q8_0) : sizeof(struct block_q8_1);
    const size_t xq_off =
        offset ? offsetof(struct block_q8_0, qs) : offsetof(struct block_q8_1, qs);
    __m512 acc[8];

    for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    for (size_t ib = 0; ib < nb; ib++) {
        const uint8_t *b = (const uint8_t *)pw + ib * bsize;
        const struct pk_q4_0 *b4 = (const struct pk_q4_0 *)b;
        const struct pk_q5_0 *b5 = (const struct pk_q5_0 *)b;
        const struct pk_q5_1 *b51 = (const struct pk_q5_1 *)b;
        const uint16_t *dp = kind == NIB_Q5_1 ? b51->d : kind == NIB_Q5_0 ? b5->d : b4->d;
        __m512i is[8], cs[8];
        __m512i qh = !five              ? _mm512_setzero_si512()
                     : kind == NIB_Q5_1 ? _mm512_loadu_si512(b51->qh)
                                        : _mm512_loadu_si512(b5->qh);
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dp));

        if (C == 1) prefetch_ahead(b, bsize);
        for (int c = 0; c < C; c++)
            is[c] = cs[c] = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) {
            __m512i v = _mm512_loadu_si512(kind == NIB_Q5_1   ? b51->q[k]
                                           : kind == NIB_Q5_0 ? b5->q[k]
                                                              : b4->q[k]);
            __m512i lo = _mm512_and_si512(v, m0f);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f);

            if (five) {
                lo = _mm512_or_si512(lo, q5_bits(qh, 4u * (unsigned)k));
                hi = _mm512_or_si512(hi, q5_bits(qh, 16u + 4u * (unsigned)k));
            }
            for (int c = 0; c < C; c++) {
                const int8_t *xq = (const int8_t *)(x + c * xs + ib * xbsize + xq_off);
                __m512i xl = bcast_chunk_s8(xq, (size_t)k);
                __m512i xh = bcast_chunk_s8(xq, (size_t)k + 4);

                is[c] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(is[c], lo, xl), hi, xh);
                if (offset)
                    cs[c] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(cs[c], koff, xl), koff, xh);
            }
        }
        for (int c = 0; c < C; c++) {
            const uint8_t *bx = x + c * xs + ib * xbsize;
            uint16_t dx, sx;
            __m512 dd;

            memcpy(&dx, bx, sizeof(dx));
            dd = _mm512_mul_ps(dw, _mm512_set1_ps(h2f(dx)));
            acc[c] =
                _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(_mm512_sub_epi32(is[c], cs[c])), acc[c]);
            if (!offset) {
                memcpy(&sx, bx + offsetof(struct block_q8_1, s), sizeof(sx));
                acc[c] =
                    _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b51->m)),
                                    _mm512_set1_ps(h2f(sx)), acc[c]);
            }
        }
    }
    for (int c = 0; c < C; c++)
        _mm512_storeu_ps(y + c * ys, acc[c]);
}

INLINE void pk_q4_0_fast(const int C, size_t nb, const struct pk_q4_0 *pw, const uint8_t *x,
                         size_t xs, float *y, size_t ys)
{
    pk_nib_fast(C, NIB_Q4_0, nb, pw, x, xs, y, ys);
}

INLINE void pk_q5_0_fast(const int C, size_t nb, const struct pk_q5_0 *pw, const uint8_t *x,
                         size_t xs, float *y, size_t ys)
{
    pk_nib_fast(C, NIB_Q5_0, nb, pw, x, xs, y, ys);
}

INLINE void pk_q5_1_fast(const int C, size_t nb, const struct pk_q5_1 *pw, const uint8_t *x,
                         size_t xs, float *y, size_t ys)
{
    pk_nib_fast(C, NIB_Q5_1, nb, pw, x, xs, y, ys);
}

/* ======================= packed Q4_K (16 interleaved rows) ======================= */

/*
 * One super-block (256 elements) of 16 rows, 2304 bytes = 16 x 144:
 *   d[16], dmin[16]         the rows' f16 scales
 *   sc[3][16]               dword i of each row's 12 bytes of six-bit scales
 *                           and mins, so k4_scales' bit operations run on
 *                           16 rows at once
 *   q[4][8][16][4]          for 64-element group j, chunk k: bytes 32j + 4k ..
 *                           + 3 of the 16 rows: low nibbles are elements
 *                           64j + 4k .. (sub-block 2j), high nibbles 64j + 32
 *                           + 4k .. (sub-block 2j + 1)
 * Per (row, column) the integer sums of each sub-block are exact (vpdpbusd,
 * nibbles unsigned), times the sub-block scale (vpmulld), summed over the
 * super-block; the mins go with the activation's bsums.
 */
struct pk_q4_k {
    uint16_t d[KERNELS_PACK_ROWS], dmin[KERNELS_PACK_ROWS];
    uint32_t sc[3][KERNELS_PACK_ROWS];
    uint8_t q[4][8][KERNELS_PACK_ROWS][4];
};


/*
 * Q5_K, the same with the fifth bits: 2816 bytes = 16 x 176, the header as
 * Q4_K's, then qh[8][16][4] (bytes 4k .. 4k + 3 of each row's 32 qh bytes:
 * bit 2j of byte l is the fifth bit of element 64j + l, bit 2j + 1 that of
 * 64j + 32 + l), then q as Q4_K's. Values 0..31, still unsigned for vpdpbusd.
 */
struct pk_q5_k {
    uint16_t d[KERNELS_PACK_ROWS], dmin[KERNELS_PACK_ROWS];
    uint32_t sc[3][KERNELS_PACK_ROWS];
    uint8_t qh[8][KERNELS_PACK_ROWS][4];
    uint8_t q[4][8][KERNELS_PACK_ROWS][4];
};

/* Sub-block scales and mins of 16 rows: sc[s], m[s] as 32-bit lanes. */
INLINE void pk_k_scales(const uint32_t (*s)[KERNELS_PACK_ROWS], __m512i sc[8], __m512i m[8])
{
    const __m512i m3f = _mm512_set1_epi32(0x3f3f3f3f), m0f = _mm512_set1_epi32(0x0f0f0f0f);
    const __m512i m30 = _mm512_set1_epi32(0x30303030), mff = _mm512_set1_epi32(0xff);
    __m512i u0 = _mm512_loadu_si512(s[0]), u1 = _mm512_loadu_si512(s[1]);
    __m512i u2 = _mm512_loadu_si512(s[2]);
    __m512i sl = _mm512_and_si512(u0, m3f), ml = _mm512_and_si512(u1, m3f);
    __m512i sh =
        _mm512_or_si512(_mm512_and_si512(u2, m0f), _mm512_and_si512(_mm512_srli_epi32(u0, 2), m30));
    __m512i mh = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m0f),
                                 _mm512_and_si512(_mm512_srli_epi32(u1, 2), m30));

    for (int i = 0; i < 4; i++) {
        sc[i] = _mm512_and_si512(_mm512_srli_epi32(sl, 8 * i), mff);
        sc[i + 4] = _mm512_and_si512(_mm512_srli_epi32(sh, 8 * i), mff);
        m[i] = _mm512_and_si512(_mm512_srli_epi32(ml, 8 * i), mff);
        m[i + 4] = _mm512_and_si512(_mm512_srli_epi32(mh, 8 * i), mff);
    }
}

/* 16-bit lanes shifted left by s (right by -s); s a constant after inlining. */
INLINE __m512i shift16(__m512i v, int s)
{
    return s >= 0 ? _mm512_slli_epi16(v, (unsigned)s) : _mm512_srli_epi16(v, (unsigned)-s);
}

/* 16 rows x C (<= 4) columns of Q4_K or (five) Q5_K against Q8_K activations. */
INLINE void pk_k45_fast(const int C, const int five, size_t nb, const void *pw, const uint8_t *x,
                        size_t xs, float *y, size_t ys)
{
    const __m512i m0f = _mm512_set1_epi8(0x0F), m10 = _mm512_set1_epi8(0x10);
    const size_t bsize = five ? sizeof(struct pk_q5_k) : sizeof(struct pk_q4_k);
    __m512 acc[4];

    for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    for (size_t ib = 0; ib < nb; ib++) {
        const struct pk_q4_k *b = (const struct pk_q4_k *)((const uint8_t *)pw + ib * bsize);
        const struct pk_q5_k *b5 = (const struct pk_q5_k *)b;
        __m512i sc[8], mn[8], isum[4], msum[4];

        if (C == 1) prefetch_ahead(b, bsize);
        pk_k_scales(five ? b5->sc : b->sc, sc, mn);
        for (int c = 0; c < C; c++) {
            const struct block_q8_k *bx = (const struct block_q8_k *)(x + c * xs) + ib;

            isum[c] = _mm512_setzero_si512();
            msum[c] = _mm512_setzero_si512();
            for (int s = 0; s < 8; s++)
                msum[c] = _mm512_add_epi32(
                    msum[c], _mm512_mullo_epi32(mn[s], _mm512_set1_epi32(bx->bsums[2 * s] +
                                                                         bx->bsums[2 * s + 1])));
        }
        for (int j = 0; j < 4; j++) {
            /* Two accumulator chains per (column, half) when there are few
             * columns, so vpdpbusd's latency overlaps (decode). */
            const int A = C <= 2 ? 2 : 1;
            __m512i al[4][2], ah[4][2];

            for (int c = 0; c < C; c++)
                for (int a = 0; a < A; a++)
                    al[c][a] = ah[c][a] = _mm512_setzero_si512();
            for (int k = 0; k < 8; k++) {
                __m512i v = _mm512_loadu_si512(five ? b5->q[j][k] : b->q[j][k]);
                __m512i lo = _mm512_and_si512(v, m0f);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f);
                const int a = k % A;

                if (five) {
                    /* Bits 2j and 2j + 1 of each qh byte moved to bit 4, then
                     * lo | (moved & 0x10) in one vpternlogd (0xF8: A | B & C). */
                    __m512i h = _mm512_loadu_si512(b5->qh[k]);

                    lo = _mm512_ternarylogic_epi32(lo, shift16(h, 4 - 2 * j), m10, 0xF8);
                    hi = _mm512_ternarylogic_epi32(hi, shift16(h, 3 - 2 * j), m10, 0xF8);
                }

                for (int c = 0; c < C; c++) {
                    const struct block_q8_k *bx = (const struct block_q8_k *)(x + c * xs) + ib;

                    al[c][a] = _mm512_dpbusd_epi32(al[c][a], lo,
                                                   bcast_chunk_s8(bx->qs + 64 * j, (size_t)k));
                    ah[c][a] = _mm512_dpbusd_epi32(ah[c][a], hi,
                                                   bcast_chunk_s8(bx->qs + 64 * j + 32, (size_t)k));
                }
            }
            for (int c = 0; c < C; c++) {
                __m512i l = al[c][0], h = ah[c][0];

                if (A == 2) {
                    l = _mm512_add_epi32(l, al[c][1]);
                    h = _mm512_add_epi32(h, ah[c][1]);
                }
                isum[c] = _mm512_add_epi32(isum[c],
                                           _mm512_add_epi32(_mm512_mullo_epi32(l, sc[2 * j]),
                                                            _mm512_mullo_epi32(h, sc[2 * j + 1])));
            }
        }
        {
            __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b->d));
            __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b->dmin));

            for (int c = 0; c < C; c++) {
                const struct block_q8_k *bx = (const struct block_q8_k *)(x + c * xs) + ib;
                __m512 dx = _mm512_set1_ps(bx->d);

                acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(isum[c]), acc[c]);
                acc[c] =
                    _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dx), _mm512_cvtepi32_ps(msum[c]), acc[c]);
            }
        }
    }
    for (int c = 0; c < C; c++)
        _mm512_storeu_ps(y + c * ys, acc[c]);
}

INLINE void pk_q4_k_fast(const int C, size_t nb, const struct pk_q4_k *pw, const uint8_t *x,
                         size_t xs, float *y, size_t ys)
{
    pk_k45_fast(C, 0, nb, pw, x, xs, y, ys);
}

INLINE void pk_q5_k_fast(const int C, size_t nb, const struct pk_q5_k *pw, const uint8_t *x,
                         size_t xs, float *y, size_t ys)
{
    pk_k45_fast(C, 1, nb, pw, x, xs, y, ys);
}


/* ======================= packed Q6_K (16 interleaved rows) ======================= */

/*
 * One super-block of 16 rows, 3360 bytes = 16 x 210:
 *   d[16]                  the rows' f16 scales
 *   sc[16][16]             sub-block (16 elements) scale s of row r at sc[s][r]
 *   ql[2][2][8][16][4]     half h, part p, chunk k: bytes 64h + 32p + 4k .. + 3
 *   qh[2][8][16][4]        half h, chunk k: bytes 32h + 4k .. + 3
 * For half h and chunk k (l = 4k .. 4k + 3), with A = ql part 0, B = part 1,
 * H = qh, the six-bit values (0..63) of elements 128h + l + {0, 32, 64, 96}
 * are (A & 15) | (H & 3) << 4, (B & 15) | (H >> 2 & 3) << 4, A >> 4 |
 * (H >> 4 & 3) << 4 and B >> 4 | (H >> 6) << 4, in sub-blocks 8h + k / 4 +
 * {0, 2, 4, 6}. The value is q - 32: the sums use q (vpdpbusd's unsigned
 * operand) and subtract 32 * sum over sub-blocks of scale * bsum (vpdpwssd
 * on scale pairs and the activation's bsum pairs).
 */
struct pk_q6_k {
    uint16_t d[KERNELS_PACK_ROWS];
    int8_t sc[QK_K / 16][KERNELS_PACK_ROWS];
    uint8_t ql[2][2][8][KERNELS_PACK_ROWS][4];
    uint8_t qh[2][8][KERNELS_PACK_ROWS][4];
};


/* 16 rows x C (<= 4) columns against Q8_K activations. */
INLINE void pk_q6_k_fast(const int C, size_t nb, const struct pk_q6_k *pw, const uint8_t *x,
                         size_t xs, float *y, size_t ys)
{
    const __m512i m0f = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    __m512 acc[4];

    for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    for (size_t ib = 0; ib < nb; ib++) {
        const struct pk_q6_k *b = pw + ib;
        __m512i isum[4], comp[4];

        if (C == 1) prefetch_ahead(b, sizeof(*b));
        for (int c = 0; c < C; c++) {
            isum[c] = comp[c] = _mm512_setzero_si512();
        }
        /* 32 * sum over sub-blocks of scale * bsum, two sub-blocks a step. */
        for (int i = 0; i < 8; i++) {
            __m512i se = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->sc[2 * i]));
            __m512i so = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->sc[2 * i + 1]));
            __m512i pair = _mm512_or_si512(_mm512_and_si512(se, _mm512_set1_epi32(0xffff)),
                                           _mm512_slli_epi32(so, 16));

            for (int c = 0; c < C; c++) {
                const struct block_q8_k *bx = (const struct block_q8_k *)(x + c * xs) + ib;
                int32_t bp;

                memcpy(&bp, bx->bsums + 2 * i, 4);
                comp[c] = _mm512_dpwssd_epi32(comp[c], pair, _mm512_set1_epi32(bp));
            }
        }
        for (int h = 0; h < 2; h++)
            for (int kk = 0; kk < 8; kk += 4) {
                __m512i dp[4][4];

                for (int c = 0; c < C; c++)
                    for (int p = 0; p < 4; p++)
                        dp[c][p] = _mm512_setzero_si512();
                for (int k = kk; k < kk + 4; k++) {
                    __m512i A = _mm512_loadu_si512(b->ql[h][0][k]);
                    __m512i B = _mm512_loadu_si512(b->ql[h][1][k]);
                    __m512i H = _mm512_loadu_si512(b->qh[h][k]);
                    __m512i q[4];

                    q[0] = _mm512_or_si512(_mm512_and_si512(A, m0f),
                                           _mm512_and_si512(_mm512_slli_epi16(H, 4), m30));
                    q[1] = _mm512_or_si512(_mm512_and_si512(B, m0f),
                                           _mm512_and_si512(_mm512_slli_epi16(H, 2), m30));
                    q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(A, 4), m0f),
                                           _mm512_and_si512(H, m30));
                    q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(B, 4), m0f),
                                           _mm512_and_si512(_mm512_srli_epi16(H, 2), m30));
                    for (int c = 0; c < C; c++) {
                        const struct block_q8_k *bx = (const struct block_q8_k *)(x + c * xs) + ib;

                        for (int p = 0; p < 4; p++)
                            dp[c][p] = _mm512_dpbusd_epi32(
                                dp[c][p], q[p],
                                bcast_chunk_s8(bx->qs + 128 * h + 32 * p, (size_t)k));
                    }
                }
                for (int p = 0; p < 4; p++) {
                    __m512i scv = _mm512_cvtepi8_epi32(
                        _mm_loadu_si128((const __m128i *)b->sc[8 * h + kk / 4 + 2 * p]));

                    for (int c = 0; c < C; c++)
                        isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(dp[c][p], scv));
                }
            }
        {
            __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b->d));

            for (int c = 0; c < C; c++) {
                const struct block_q8_k *bx = (const struct block_q8_k *)(x + c * xs) + ib;
                __m512i tot = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(comp[c], 5));

                acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(bx->d)),
                                         _mm512_cvtepi32_ps(tot), acc[c]);
            }
        }
    }
    for (int c = 0; c < C; c++)
        _mm512_storeu_ps(y + c * ys, acc[c]);
}


/*
 * The packed gemm of a k-quant: groups of 16 rows, tiles of 4/2/1 columns
 * (the Q4_K and Q6_K file-layout kernels do not follow llama.cpp's rounding,
 * so there is no exact variant).
 */
#define DEFINE_PACKED_K(T)                                                                    \
    static void gemm_packed_##T(size_t n, const void *w, size_t ws, size_t nr, const void *x, \
                                size_t xs, size_t nc, float *y, size_t ys)                    \
    {                                                                                         \
        const uint8_t *xb = x;                                                                \
        size_t nb = n / QK_K;                                                                 \
                                                                                              \
        for (size_t g = 0; g < nr; g += KERNELS_PACK_ROWS) {                                  \
            const struct pk_##T *pw = (const struct pk_##T *)((const uint8_t *)w + g * ws);   \
            size_t c = 0;                                                                     \
                                                                                              \
            for (; c + 4 <= nc; c += 4)                                                       \
                pk_##T##_fast(4, nb, pw, xb + c * xs, xs, y + c * ys + g, ys);                \
            if (c + 2 <= nc) {                                                                \
                pk_##T##_fast(2, nb, pw, xb + c * xs, xs, y + c * ys + g, ys);                \
                c += 2;                                                                       \
            }                                                                                 \
            if (c < nc) pk_##T##_fast(1, nb, pw, xb + c * xs, xs, y + c * ys + g, ys);        \
        }                                                                                     \
    }

DEFINE_PACKED_K(q4_k)
DEFINE_PACKED_K(q5_k)
DEFINE_PACKED_K(q6_k)

/* Columns below this go through pk_q8_0_exact (llama.cpp's rounding). */
#define PK_EXACT_COLS 32

/* The layouts above: each block's header fields, then its quants in chunks. */
static const struct pack_layout layout_q8_0 = { sizeof(struct block_q8_0),
                                                1,
                                                2,
                                                QK8_0 / 4,
                                                { { 0, 2 } } };
static const struct pack_layout layout_q4_0 = { sizeof(struct block_q4_0),
                                                1,
                                                2,
                                                QK4_0 / 8,
                                                { { 0, 2 } } };
static const struct pack_layout layout_q5_0 = { sizeof(struct block_q5_0),
                                                2,
                                                6,
                                                QK5_0 / 8,
                                                { { 0, 2 }, { 2, 4 } } };
/* d, dmin, the three dwords of scales; the nibbles in order [j][k]. */
static const struct pack_layout layout_q4_k = {
    sizeof(struct block_q4_k),
    5,
    16,
    QK_K / 8,
    { { 0, 2 }, { 2, 2 }, { 4, 4 }, { 8, 4 }, { 12, 4 } }
};
static const struct pack_layout layout_q5_1 = { sizeof(struct block_q5_1),
                                                3,
                                                8,
                                                QK5_1 / 8,
                                                { { 0, 2 }, { 2, 2 }, { 4, 4 } } };
/* As Q4_K; qh (32 bytes) and qs follow each other, so one run of chunks. */
static const struct pack_layout layout_q5_k = {
    sizeof(struct block_q5_k),
    5,
    16,
    (32 + QK_K / 2) / 4,
    { { 0, 2 }, { 2, 2 }, { 4, 4 }, { 8, 4 }, { 12, 4 } }
};
/* d, the 16 scale bytes; ql then qh in order, which is [h][p][k] then [h][k]. */
static const struct pack_layout layout_q6_k = { sizeof(struct block_q6_k),
                                                17,
                                                0,
                                                QK_K * 3 / 16,
                                                { { 208, 2 },
                                                  { 192, 1 },
                                                  { 193, 1 },
                                                  { 194, 1 },
                                                  { 195, 1 },
                                                  { 196, 1 },
                                                  { 197, 1 },
                                                  { 198, 1 },
                                                  { 199, 1 },
                                                  { 200, 1 },
                                                  { 201, 1 },
                                                  { 202, 1 },
                                                  { 203, 1 },
                                                  { 204, 1 },
                                                  { 205, 1 },
                                                  { 206, 1 },
                                                  { 207, 1 } } };

_Static_assert(sizeof(struct pk_q8_0) == 16 * sizeof(struct block_q8_0), "pk_q8_0");
_Static_assert(sizeof(struct pk_q4_0) == 16 * sizeof(struct block_q4_0), "pk_q4_0");
_Static_assert(sizeof(struct pk_q5_0) == 16 * sizeof(struct block_q5_0), "pk_q5_0");
_Static_assert(sizeof(struct pk_q4_k) == 16 * sizeof(struct block_q4_k), "pk_q4_k");
_Static_assert(sizeof(struct pk_q5_1) == 16 * sizeof(struct block_q5_1), "pk_q5_1");
_Static_assert(sizeof(struct pk_q5_k) == 16 * sizeof(struct block_q5_k), "pk_q5_k");
_Static_assert(sizeof(struct pk_q6_k) == 16 * sizeof(struct block_q6_k), "pk_q6_k");

#define DEFINE_PACKER(T)                                                      \
    static void pack_##T(const void *w, size_t ws, size_t nr, void *out)      \
    {                                                                         \
        pack_rows(&layout_##T, w, ws, nr, out);                               \
    }                                                                         \
    static void unpack_##T(const void *group, size_t ws, size_t r, void *row) \
    {                                                                         \
        unpack_row(&layout_##T, group, ws, r, row);                           \
    }

DEFINE_PACKER(q8_0)
DEFINE_PACKER(q4_0)
DEFINE_PACKER(q5_0)
DEFINE_PACKER(q5_1)
DEFINE_PACKER(q4_k)
DEFINE_PACKER(q5_k)
DEFINE_PACKER(q6_k)

/*
 * The packed gemm of type T: groups of 16 rows; with EXACT, below
 * PK_EXACT_COLS columns one column at a time in llama.cpp's rounding (Q8_0,
 * whose file-layout kernels round like llama.cpp; the Q4_0 ones do not),
 * else tiles of 8/4/2/1 columns.
 */
#define DEFINE_PACKED(T, QK, EXACT)                                                           \
    static void gemm_packed_##T(size_t n, const void *w, size_t ws, size_t nr, const void *x, \
                                size_t xs, size_t nc, float *y, size_t ys)                    \
    {                                                                                         \
        const uint8_t *xb = x;                                                                \
        size_t nb = n / (QK);                                                                 \
                                                                                              \
        for (size_t g = 0; g < nr; g += KERNELS_PACK_ROWS) {                                  \
            const struct pk_##T *pw = (const struct pk_##T *)((const uint8_t *)w + g * ws);   \
            size_t c = 0;                                                                     \
                                                                                              \
            if ((EXACT) && nc < PK_EXACT_COLS) {                                              \
                for (; c < nc; c++)                                                           \
                    pk_##T##_exact(nb, pw, (const struct block_q8_0 *)(xb + c * xs),          \
                                   y + c * ys + g);                                           \
                continue;                                                                     \
            }                                                                                 \
            for (; c + 8 <= nc; c += 8)                                                       \
                pk_##T##_fast(8, nb, pw, xb + c * xs, xs, y + c * ys + g, ys);                \
            if (c + 4 <= nc) {                                                                \
                pk_##T##_fast(4, nb, pw, xb + c * xs, xs, y + c * ys + g, ys);                \
                c += 4;                                                                       \
            }                                                                                 \
            if (c + 2 <= nc) {                                                                \
                pk_##T##_fast(2, nb, pw, xb + c * xs, xs, y + c * ys + g, ys);                \
                c += 2;                                                                       \
            }                                                                                 \
            if (c < nc) pk_##T##_fast(1, nb, pw, xb + c * xs, xs, y + c * ys + g, ys);        \
        }                                                                                     \
    }

/* Never called: Q4_0 has no exact variant (DEFINE_PACKED's EXACT is 0). */
static void pk_q4_0_exact(size_t nb, const struct pk_q4_0 *pw, const struct block_q8_0 *bx,
                          float *y)
{
    (void)nb, (void)pw, (void)bx, (void)y;
}

DEFINE_PACKED(q8_0, QK8_0, 1)
DEFINE_PACKED(q4_0, QK4_0, 0)

/* Never called, as pk_q4_0_exact. */
static void pk_q5_0_exact(size_t nb, const struct pk_q5_0 *pw, const struct block_q8_0 *bx,
                          float *y)
{
    (void)nb, (void)pw, (void)bx, (void)y;
}

DEFINE_PACKED(q5_0, QK5_0, 0)

/* Never called, as pk_q4_0_exact. */
static void pk_q5_1_exact(size_t nb, const struct pk_q5_1 *pw, const struct block_q8_0 *bx,
                          float *y)
{
    (void)nb, (void)pw, (void)bx, (void)y;
}

DEFINE_PACKED(q5_1, QK5_1, 0)

/* ======================= activation conversion ======================= */

/* Lanes holding NaN or an infinity. */
INLINE __mmask16 nonfinite(__m512 v)
{
    return _mm512_fpclass_ps_mask(v, 0x01 | 0x08 | 0x10 | 0x80);
}

static void from_float_f32(const float *x, void *y, size_t n)
{
    memcpy(y, x, n * sizeof(float));
}

INLINE __m256i cvt_f16(__m512 v)
{
    return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static void f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;

    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i), cvt_f16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = mask16(n - i);

        _mm256_mask_storeu_epi16(y + i, m, cvt_f16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void from_float_f16(const float *x, void *y, size_t n)
{
    f32_to_f16(x, y, n);
}

/* Round to nearest even with integer operations; NaN made quiet (as f32_to_bf16). */
INLINE __m256i cvt_bf16(__m512 v)
{
    __m512i b = _mm512_castps_si512(v);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
    __mmask16 nan = _mm512_fpclass_ps_mask(v, 0x01 | 0x80);

    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(b, 16), _mm512_set1_epi32(64));
    return _mm512_cvtepi32_epi16(r);
}

static void from_float_bf16(const float *x, void *vy, size_t n)
{
    uint16_t *y = vy;
    size_t i = 0;

    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i), cvt_bf16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = mask16(n - i);

        _mm256_mask_storeu_epi16(y + i, m, cvt_bf16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/*
 * One block of 32 as Q8_0 (kernels_int.h): stores the quants, sets *d to
 * the f32 scale amax / 127 and *sum to the sum of the quants, and returns
 * true; a block holding NaN or an infinity gets zero quants and false (the
 * caller stores d = NaN).
 */
INLINE bool q8_block(const float *x, int8_t *qs, float *d, int *sum)
{
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    float id;
    __m512 vid;
    __m512i q0, q1;

    if ((nonfinite(v0) | nonfinite(v1)) != 0) {
        memset(qs, 0, QK8_0);
        return false;
    }
    *d = amax / 127;
    /* 127 / amax, not 1 / d: the multiplier llama.cpp's x86 code uses, so
     * activations round to the same integers and greedy runs agree. */
    id = amax != 0.0f ? 127.0f / amax : 0.0f;
    if (isinf(id)) id = 0.0f;
    vid = _mm512_set1_ps(id);
    q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
    q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(q1));
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    return true;
}

INLINE uint16_t f2h(float v)
{
    return _cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT);
}

static void from_float_q8_0(const float *x, void *vy, size_t n)
{
    struct block_q8_0 *y = vy;

    for (size_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float d;
        int sum;

        y[i].d = q8_block(x, y[i].qs, &d, &sum) ? f2h(d) : 0x7e00;
    }
}

/* Q8_1: Q8_0 plus s = f16(sum(q) * d) with the f32 d (kernels__from_float_q8_1). */
static void from_float_q8_1(const float *x, void *vy, size_t n)
{
    struct block_q8_1 *y = vy;

    for (size_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float d;
        int sum;

        if (q8_block(x, y[i].qs, &d, &sum)) {
            y[i].d = f2h(d);
            y[i].s = f2h((float)sum * d);
        } else {
            y[i].d = y[i].s = 0x7e00;
        }
    }
}

static void from_float_q8_k(const float *x, void *vy, size_t n)
{
    struct block_q8_k *y = vy;
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);

    for (size_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m512 vmax = _mm512_setzero_ps(), vis;
        __mmask16 bad = 0;
        float amax, iscale;

        for (int j = 0; j < QK_K / 16; j++) {
            __m512 v = _mm512_loadu_ps(x + 16 * j);

            bad |= nonfinite(v);
            vmax = _mm512_max_ps(vmax, _mm512_abs_ps(v));
        }
        memset(&y[i], 0, sizeof(y[i]));
        if (bad != 0) {
            y[i].d = NAN;
            continue;
        }
        amax = _mm512_reduce_max_ps(vmax);
        iscale = 127.f / amax;
        if (amax == 0.0f || isinf(iscale)) continue;
        vis = _mm512_set1_ps(iscale);
        for (int j = 0; j < QK_K / 16; j++) {
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * j), vis));

            q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            _mm_storeu_si128((__m128i *)(y[i].qs + 16 * j), _mm512_cvtepi32_epi8(q));
            y[i].bsums[j] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[i].d = 1 / iscale;
    }
}

/* ======================= f32 helpers ======================= */

static float dot_f32(const float *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;

    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = mask16(n - i);

        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static float dot_f32_f16(const float *a, const uint16_t *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), load_f16((const uint8_t *)b, i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), load_f16((const uint8_t *)b, i + 16), s1);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), load_f16((const uint8_t *)b, i), s0);
    if (i < n) {
        __mmask16 m = mask16(n - i);

        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
                             load_f16_mask((const uint8_t *)b, i, m), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void vec_dot_f32_fast(size_t n, float *s, const void *w, const void *x)
{
    *s = dot_f32(w, x, n);
}

/* 1 x 1 tiles are latency-bound on one accumulator: four chains instead. */
static void vec_dot_f16_fast(size_t n, float *s, const void *w, const void *x)
{
    const uint8_t *a = w, *b = x;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;

    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(load_f16(a, i), load_f16(b, i), s0);
        s1 = _mm512_fmadd_ps(load_f16(a, i + 16), load_f16(b, i + 16), s1);
        s2 = _mm512_fmadd_ps(load_f16(a, i + 32), load_f16(b, i + 32), s2);
        s3 = _mm512_fmadd_ps(load_f16(a, i + 48), load_f16(b, i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(load_f16(a, i), load_f16(b, i), s0);
    if (i < n) {
        __mmask16 m = mask16(n - i);

        s1 = _mm512_fmadd_ps(load_f16_mask(a, i, m), load_f16_mask(b, i, m), s1);
    }
    *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static void vec_dot_bf16_fast(size_t n, float *s, const void *w, const void *x)
{
    const uint16_t *a = w, *b = x;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;

#define DP(acc, off)                                                         \
    acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(a + i + (off)), \
                           (__m512bh)_mm512_loadu_si512(b + i + (off)))
    for (; i + 128 <= n; i += 128) {
        DP(s0, 0);
        DP(s1, 32);
        DP(s2, 64);
        DP(s3, 96);
    }
    for (; i + 32 <= n; i += 32)
        DP(s0, 0);
#undef DP
    if (i < n) {
        __mmask32 m = mask32(n - i);

        s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_maskz_loadu_epi16(m, a + i),
                              (__m512bh)_mm512_maskz_loadu_epi16(m, b + i));
    }
    *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static void axpy_f32(size_t n, float a, const float *x, float *y)
{
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;

    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i,
                         _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = mask16(n - i);

        _mm512_mask_storeu_ps(
            y + i, m,
            _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static void axpy_f16(size_t n, float a, const uint16_t *x, float *y)
{
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;

    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(
            y + i, _mm512_fmadd_ps(va, load_f16((const uint8_t *)x, i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = mask16(n - i);

        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(va, load_f16_mask((const uint8_t *)x, i, m),
                                              _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* As llama.cpp's ggml_vec_dot_f16 on AVX-512 (see kernels_scalar.c). */
static float dot_f16(const uint16_t *a, const uint16_t *b, size_t n)
{
    const uint8_t *pa = (const uint8_t *)a, *pb = (const uint8_t *)b;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t n64 = n & ~(size_t)63;
    double sum;

    for (size_t i = 0; i < n64; i += 64) {
        s0 = _mm512_fmadd_ps(load_f16(pa, i), load_f16(pb, i), s0);
        s1 = _mm512_fmadd_ps(load_f16(pa, i + 16), load_f16(pb, i + 16), s1);
        s2 = _mm512_fmadd_ps(load_f16(pa, i + 32), load_f16(pb, i + 32), s2);
        s3 = _mm512_fmadd_ps(load_f16(pa, i + 48), load_f16(pb, i + 48), s3);
    }
    sum = (double)_mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s2), _mm512_add_ps(s1, s3)));
    for (size_t i = n64; i < n; i++)
        sum += (double)(h2f(a[i]) * h2f(b[i]));
    return (float)sum;
}

INLINE void store_f16(uint16_t *p, __m512 v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

INLINE void store_f16_mask(uint16_t *p, __m512 v, __mmask16 m)
{
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

static void scale_f16(size_t n, float s, uint16_t *y)
{
    __m512 vs = _mm512_set1_ps(s);
    size_t i = 0;

    for (; i + 16 <= n; i += 16)
        store_f16(y + i, _mm512_mul_ps(load_f16((const uint8_t *)y, i), vs));
    if (i < n) {
        __mmask16 m = mask16(n - i);

        store_f16_mask(y + i, _mm512_mul_ps(load_f16_mask((const uint8_t *)y, i, m), vs), m);
    }
}

static void mad_f16(size_t n, float a, const uint16_t *x, uint16_t *y)
{
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;

    for (; i + 16 <= n; i += 16)
        store_f16(y + i, _mm512_fmadd_ps(load_f16((const uint8_t *)x, i), va,
                                         load_f16((const uint8_t *)y, i)));
    if (i < n) {
        __mmask16 m = mask16(n - i);

        store_f16_mask(y + i,
                       _mm512_fmadd_ps(load_f16_mask((const uint8_t *)x, i, m), va,
                                       load_f16_mask((const uint8_t *)y, i, m)),
                       m);
    }
}

static void f16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;

    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, load_f16((const uint8_t *)x, i));
    if (i < n) {
        __mmask16 m = mask16(n - i);

        _mm512_mask_storeu_ps(y + i, m, load_f16_mask((const uint8_t *)x, i, m));
    }
}

/* ======================= prompt attention (attn_tile) ======================= */

/*
 * e^x for x <= 0, to about 1 ulp: x = k ln2 + r with |r| <= ln2 / 2 (ln2 in
 * two parts so k ln2 is exact), e^r by its Taylor series to r^7 (truncation
 * below 1e-8 relative), times 2^k by vscalefps. Below -88 the result is 0 or
 * subnormal; callers mask positions that must be exactly 0.
 */
INLINE __m512 exp_neg(__m512 x)
{
    __m512 k, r, p;

    x = _mm512_max_ps(x, _mm512_set1_ps(-88.0f));
    k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.428606765330187e-06f), r);
    p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

/* Transposes the 16 x 16 matrix whose rows are r[0..15], in place. */
INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];

    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 2; i++)
        for (int m = 0; m < 4; m++) {
            t[8 * i + m] = _mm512_shuffle_f32x4(r[8 * i + m], r[8 * i + 4 + m], 0x88);
            t[8 * i + 4 + m] = _mm512_shuffle_f32x4(r[8 * i + m], r[8 * i + 4 + m], 0xdd);
        }
    for (int m = 0; m < 8; m++) {
        r[m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88);
        r[8 + m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0xdd);
    }
}

/* kt[d][j] = K[j][d] for j < cnt, 0 for cnt <= j < KERNELS_ATTN_KV. */
static void attn_load_kt(size_t hd, size_t cnt, const uint16_t *K, float *kt)
{
    for (size_t pb = 0; pb < KERNELS_ATTN_KV; pb += 16)
        for (size_t db = 0; db < hd; db += 16) {
            __m512 r[16];

            for (size_t i = 0; i < 16; i++)
                r[i] = pb + i < cnt ? _mm512_cvtph_ps(_mm256_loadu_si256(
                                          (const __m256i *)(K + (pb + i) * hd + db)))
                                    : _mm512_setzero_ps();
            transpose16(r);
            for (size_t i = 0; i < 16; i++)
                _mm512_store_ps(kt + (db + i) * KERNELS_ATTN_KV + pb, r[i]);
        }
}

/* S[r][j] = (q[r] . K[j]) * scale for R rows and the tile's 64 positions. */
INLINE void attn_qk(const int R, size_t hd, const float *const *q, const float *kt, float scale,
                    float *S)
{
    __m512 acc[4][4];

    for (int r = 0; r < R; r++)
        for (int p = 0; p < 4; p++)
            acc[r][p] = _mm512_setzero_ps();
    for (size_t d = 0; d < hd; d++) {
        const float *kd = kt + d * KERNELS_ATTN_KV;
        __m512 kv[4];

        for (int p = 0; p < 4; p++)
            kv[p] = _mm512_load_ps(kd + 16 * p);
        for (int r = 0; r < R; r++) {
            __m512 qb = _mm512_set1_ps(q[r][d]);

            for (int p = 0; p < 4; p++)
                acc[r][p] = _mm512_fmadd_ps(qb, kv[p], acc[r][p]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int p = 0; p < 4; p++)
            _mm512_store_ps(S + r * KERNELS_ATTN_KV + 16 * p,
                            _mm512_mul_ps(acc[r][p], _mm512_set1_ps(scale)));
}

/* out[r][d0 .. d0 + 16 W) += sum over j < cnt of P[r][j] * vf[j][...]. */
INLINE void attn_pv(const int R, const int W, size_t hd, size_t d0, size_t cnt, const float *P,
                    const float *vf, float *const *out)
{
    __m512 acc[4][4];

    for (int r = 0; r < R; r++)
        for (int w = 0; w < W; w++)
            acc[r][w] = _mm512_loadu_ps(out[r] + d0 + 16 * w);
    for (size_t j = 0; j < cnt; j++) {
        const float *vj = vf + j * hd + d0;
        __m512 vv[4];

        for (int w = 0; w < W; w++)
            vv[w] = _mm512_load_ps(vj + 16 * w);
        for (int r = 0; r < R; r++) {
            __m512 pb = _mm512_set1_ps(P[r * KERNELS_ATTN_KV + j]);

            for (int w = 0; w < W; w++)
                acc[r][w] = _mm512_fmadd_ps(pb, vv[w], acc[r][w]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int w = 0; w < W; w++)
            _mm512_storeu_ps(out[r] + d0 + 16 * w, acc[r][w]);
}

/* The four row counts as compile-time constants. */
#define ATTN_ROWS_SWITCH(R, CALL) \
    switch (R) {                  \
    case 1:                       \
        CALL(1);                  \
        break;                    \
    case 2:                       \
        CALL(2);                  \
        break;                    \
    case 3:                       \
        CALL(3);                  \
        break;                    \
    default:                      \
        CALL(4);                  \
        break;                    \
    }

/*
 * Online softmax over one tile for row r: new maximum, rescaling of the
 * output row and the sum, S row replaced by the weights (0 past the row's
 * last position or the tile's end).
 */
static void attn_softmax_row(size_t hd, size_t valid, float *S, float *M, float *L, float *out)
{
    __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    __mmask16 m[4];
    float mnew;

    for (int p = 0; p < 4; p++) {
        size_t lo = 16 * (size_t)p;

        m[p] = valid >= lo + 16 ? (__mmask16)0xffff : valid > lo ? mask16(valid - lo) : 0;
        mx = _mm512_mask_max_ps(mx, m[p], mx, _mm512_load_ps(S + lo));
    }
    mnew = _mm512_reduce_max_ps(mx);
    if (mnew > *M) {
        float corr = expf(*M - mnew); /* 0 on the first tile */
        __m512 vc = _mm512_set1_ps(corr);

        for (size_t i = 0; i < hd; i += 16)
            _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(out + i), vc));
        *L *= corr;
        *M = mnew;
    }
    for (int p = 0; p < 4; p++) {
        __m512 e = _mm512_maskz_mov_ps(
            m[p], exp_neg(_mm512_sub_ps(_mm512_load_ps(S + 16 * p), _mm512_set1_ps(*M))));

        sum = _mm512_add_ps(sum, e);
        _mm512_store_ps(S + 16 * p, e);
    }
    *L += _mm512_reduce_add_ps(sum);
}

static void attn_tile(size_t hd, size_t nr, const float *const *q, float *const *out,
                      const int32_t *n, const uint16_t *K, const uint16_t *V, float scale,
                      float *work)
{
    float *kt = work, *vf = kt + hd * KERNELS_ATTN_KV, *S = vf + KERNELS_ATTN_KV * hd;
    float *M = S + KERNELS_ATTN_ROWS * KERNELS_ATTN_KV, *L = M + KERNELS_ATTN_ROWS;
    size_t n_max = 0;

    for (size_t r = 0; r < nr; r++) {
        M[r] = -INFINITY;
        L[r] = 0.0f;
        memset(out[r], 0, hd * sizeof(float));
        if ((size_t)n[r] > n_max) n_max = (size_t)n[r];
    }
    for (size_t j0 = 0; j0 < n_max; j0 += KERNELS_ATTN_KV) {
        size_t cnt = n_max - j0 < KERNELS_ATTN_KV ? n_max - j0 : KERNELS_ATTN_KV;

        attn_load_kt(hd, cnt, K + j0 * hd, kt);
        f16_to_f32(V + j0 * hd, vf, cnt * hd);
        for (size_t rb = 0; rb < nr; rb += 4) {
#define QK(R) attn_qk(R, hd, q + rb, kt, scale, S + rb * KERNELS_ATTN_KV)
            ATTN_ROWS_SWITCH(nr - rb, QK)
#undef QK
        }
        for (size_t r = 0; r < nr; r++) {
            size_t valid = (size_t)n[r] > j0 ? (size_t)n[r] - j0 : 0;

            if (valid > cnt) valid = cnt;
            if (valid == 0)
                memset(S + r * KERNELS_ATTN_KV, 0, KERNELS_ATTN_KV * sizeof(float));
            else
                attn_softmax_row(hd, valid, S + r * KERNELS_ATTN_KV, M + r, L + r, out[r]);
        }
        for (size_t rb = 0; rb < nr; rb += 4) {
            size_t d0 = 0;

            for (; d0 + 64 <= hd; d0 += 64) {
#define PV(R) attn_pv(R, 4, hd, d0, cnt, S + rb * KERNELS_ATTN_KV, vf, out + rb)
                ATTN_ROWS_SWITCH(nr - rb, PV)
#undef PV
            }
            for (; d0 < hd; d0 += 16) {
#define PV(R) attn_pv(R, 1, hd, d0, cnt, S + rb * KERNELS_ATTN_KV, vf, out + rb)
                ATTN_ROWS_SWITCH(nr - rb, PV)
#undef PV
            }
        }
    }
    for (size_t r = 0; r < nr; r++) {
        __m512 inv = _mm512_set1_ps(L[r] > 0.0f ? 1.0f / L[r] : 0.0f);

        for (size_t i = 0; i < hd; i += 16)
            _mm512_storeu_ps(out[r] + i, _mm512_mul_ps(_mm512_loadu_ps(out[r] + i), inv));
    }
}


/* ======================= decode attention (attn_decode) ======================= */

/*
 * The C library's expf on 16 lanes, to the bit. glibc (2.28 on) computes
 * e^x for |x| < 88 as 2^(k/32) * 2^(r/32) with k = round(x * 32 / ln2) and
 * r = x * 32 / ln2 - k: a 32-entry table of 2^(i/32) (as double, with i << 47
 * taken off the bits so that adding k << 47 scales by 2^(k div 32)), a
 * degree-3 polynomial in double, one rounding to float at the end. Its FMA
 * build (what runs on every CPU with AVX-512) fuses exactly the steps fused
 * below, so every lane is what expf returns. The table holds the correctly
 * rounded powers and the polynomial the library's coefficients: equality
 * with expf is checked once at run time (expf_lanes_check) and by a test
 * over millions of inputs. Like expf, the lanes from -0x1.9d1d9ep6
 * (log 2^-149) down to -88 take the same path (subnormal results); below
 * -0x1.9fe368p6 (log 2^-150, and -inf) the result is 0; the few others
 * (NaN, 88 and above, the sliver between the two logs) call expf itself.
 */
static const uint64_t exp2_32_table[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

/* expf of 8 lanes in [-0x1.9d1d9ep6, 88) (others: anything; the caller replaces them). */
INLINE __m256 expf8_lanes(__m256 x)
{
    const __m512d inv = _mm512_set1_pd(0x1.71547652b82fep+5), shift = _mm512_set1_pd(0x1.8p52);
    const __m512i *tab = (const __m512i *)exp2_32_table;
    __m512d xd = _mm512_cvtps_pd(x), kd, r, p, y;
    __m512i ki, lo, hi, t;

    kd = _mm512_fmadd_pd(inv, xd, shift);
    ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, shift);
    r = _mm512_fmsub_pd(inv, xd, kd);
    lo = _mm512_permutex2var_epi64(_mm512_loadu_si512(tab), ki, _mm512_loadu_si512(tab + 1));
    hi = _mm512_permutex2var_epi64(_mm512_loadu_si512(tab + 2), ki, _mm512_loadu_si512(tab + 3));
    t = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)), lo, hi);
    t = _mm512_add_epi64(t, _mm512_slli_epi64(ki, 47));
    p = _mm512_fmadd_pd(r, _mm512_set1_pd(0x1.c6af84b912394p-20),
                        _mm512_set1_pd(0x1.ebfce50fac4f3p-13));
    y = _mm512_fmadd_pd(r, _mm512_set1_pd(0x1.62e42ff0c52d6p-6), _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(p, _mm512_mul_pd(r, r), y);
    return _mm512_cvtpd_ps(_mm512_mul_pd(y, _mm512_castsi512_pd(t)));
}

/* expf on 16 lanes: the vector path where it is exact, the library elsewhere. */
INLINE __m512 expf16(__m512 x, bool lanes_ok)
{
    __mmask16 fast = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-0x1.9d1d9ep6f), _CMP_GE_OQ) &
                     _mm512_cmp_ps_mask(x, _mm512_set1_ps(88.0f), _CMP_LT_OQ);
    __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-0x1.9fe368p6f), _CMP_LT_OQ);
    __mmask16 slow = lanes_ok ? (__mmask16) ~(fast | zero) : (__mmask16)0xffff;
    __m512 e = _mm512_setzero_ps();

    if (lanes_ok && fast != 0)
        e = _mm512_maskz_mov_ps(
            fast, _mm512_insertf32x8(_mm512_castps256_ps512(expf8_lanes(_mm512_castps512_ps256(x))),
                                     expf8_lanes(_mm512_extractf32x8_ps(x, 1)), 1));
    if (slow != 0) {
        float xs[16], es[16];

        _mm512_storeu_ps(xs, x);
        _mm512_storeu_ps(es, e);
        for (int i = 0; i < 16; i++)
            if (slow >> i & 1) es[i] = expf(xs[i]);
        e = _mm512_loadu_ps(es);
    }
    return e;
}

static bool expf_lanes_same;
static pthread_once_t expf_lanes_once = PTHREAD_ONCE_INIT;

/* Whether expf8_lanes agrees with this process's expf on a spread of inputs. */
static void expf_lanes_check(void)
{
    bool same = true;

    for (int i = 0; i < 2048 && same; i += 16) {
        float xs[16], es[16];

        for (int l = 0; l < 16; l++)
            xs[l] = -87.99f + (float)(i + l) * (95.0f / 2048.0f) + (float)l * 1e-3f;
        _mm512_storeu_ps(es, expf16(_mm512_loadu_ps(xs), true));
        for (int l = 0; l < 16; l++) {
            float want = expf(xs[l]);

            same = same && memcmp(&want, &es[l], sizeof(float)) == 0;
        }
    }
    expf_lanes_same = same;
}

/* Test hook: expf16 with the run-time check applied (kernels_int.h). */
bool kernels__avx512_expf16(const float *x, float *y)
{
    (void)pthread_once(&expf_lanes_once, expf_lanes_check);
    _mm512_storeu_ps(y, expf16(_mm512_loadu_ps(x), expf_lanes_same));
    return expf_lanes_same;
}

/* x rounded to F16 and back. */
INLINE __m512 round_f16(__m512 x)
{
    return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
}

/*
 * Lane j of the result is _mm512_reduce_add_ps(t[j]) to the bit: the same
 * pairs added at every level (lanes i and i + 8, then i and i + 4, i and
 * i + 2, i and i + 1), for 16 vectors at once.
 */
INLINE __m512 reduce_add16(const __m512 t[16])
{
    __m512 u[8], w[4], z[2];

    for (int i = 0; i < 8; i++)
        u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xee));
    for (int i = 0; i < 4; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xdd));
    for (int i = 0; i < 2; i++)
        z[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* Lane 4 p + q now holds t[4 q + p]'s sum. */
    return _mm512_permutexvar_ps(
        _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0),
        _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(2, 0, 2, 0)),
                      _mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(3, 1, 3, 1))));
}

/*
 * Scores of one query row against the block's cnt keys (kf [16][HD] F32),
 * lane j = dot_f16(q, K[j]): per key four chains over the 64-element steps,
 * folded (0 + 2) + (1 + 3), then reduce_add16. Lanes from cnt on are 0.
 */
INLINE __m512 decode_scores(const size_t HD, const float *qf, const float *kf, size_t cnt)
{
    __m512 t[16];

    for (size_t j = 0; j < 16; j++) {
        __m512 s[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                        _mm512_setzero_ps() };

        if (j < cnt)
            for (size_t i = 0; i < HD; i += 64)
                for (int m = 0; m < 4; m++)
                    s[m] = _mm512_fmadd_ps(_mm512_loadu_ps(qf + i + 16 * m),
                                           _mm512_loadu_ps(kf + j * HD + i + 16 * m), s[m]);
        t[j] = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3]));
    }
    return reduce_add16(t);
}

/*
 * Adds the block's cnt value rows (vf [16][hd] F32) to the F16 accumulators
 * of H heads (acc [H][hd]): per position and head, the accumulator times
 * ms (if not 1) rounded to F16, then v * w + acc rounded to F16. With H and
 * HD constants the H * HD / 16 accumulators stay in registers for the whole
 * block; the chains of different heads and lanes overlap.
 */
INLINE void decode_acc_regs(const int H, const size_t HD, size_t cnt, const float *vf,
                            const float *ms, const float *wt, float *acc)
{
    __m512 a[24];

    for (int h = 0; h < H; h++)
        for (size_t d = 0; d < HD / 16; d++)
            a[h * (HD / 16) + d] = _mm512_loadu_ps(acc + h * HD + 16 * d);
    for (size_t j = 0; j < cnt; j++) {
        for (int h = 0; h < H; h++) {
            float msj = ms[h * KERNELS_DECODE_KV + j];

            if (msj != 1.0f)
                for (size_t d = 0; d < HD / 16; d++)
                    a[h * (HD / 16) + d] =
                        round_f16(_mm512_mul_ps(a[h * (HD / 16) + d], _mm512_set1_ps(msj)));
        }
        for (size_t d = 0; d < HD / 16; d++) {
            __m512 v = _mm512_loadu_ps(vf + j * HD + 16 * d);

            for (int h = 0; h < H; h++)
                a[h * (HD / 16) + d] = round_f16(_mm512_fmadd_ps(
                    v, _mm512_set1_ps(wt[h * KERNELS_DECODE_KV + j]), a[h * (HD / 16) + d]));
        }
    }
    for (int h = 0; h < H; h++)
        for (size_t d = 0; d < HD / 16; d++)
            _mm512_storeu_ps(acc + h * HD + 16 * d, a[h * (HD / 16) + d]);
}

/* The same for any hd and nr, the accumulators in memory. */
static void decode_acc_mem(size_t hd, size_t nr, size_t cnt, const float *vf, const float *ms,
                           const float *wt, float *acc)
{
    for (size_t j = 0; j < cnt; j++) {
        for (size_t r = 0; r < nr; r++) {
            float msj = ms[r * KERNELS_DECODE_KV + j];

            if (msj != 1.0f)
                for (size_t i = 0; i < hd; i += 16) {
                    float *a = acc + r * hd + i;

                    _mm512_storeu_ps(
                        a, round_f16(_mm512_mul_ps(_mm512_loadu_ps(a), _mm512_set1_ps(msj))));
                }
        }
        for (size_t i = 0; i < hd; i += 16) {
            __m512 v = _mm512_loadu_ps(vf + j * hd + i);

            for (size_t r = 0; r < nr; r++) {
                float *a = acc + r * hd + i;

                _mm512_storeu_ps(
                    a, round_f16(_mm512_fmadd_ps(v, _mm512_set1_ps(wt[r * KERNELS_DECODE_KV + j]),
                                                 _mm512_loadu_ps(a))));
            }
        }
    }
}

/*
 * decode_acc_regs over the nr heads in even groups of at most 6 (head
 * dimension 64) or 3 (128), so that a group's accumulators fit in 24
 * registers; other head dimensions go through memory.
 */
static void decode_accumulate(size_t hd, size_t nr, size_t cnt, const float *vf, const float *ms,
                              const float *wt, float *acc)
{
    size_t most = hd == 64 ? 6 : hd == 128 ? 3 : 0, groups, per;

    if (most == 0) {
        decode_acc_mem(hd, nr, cnt, vf, ms, wt, acc);
        return;
    }
    groups = (nr + most - 1) / most;
    per = (nr + groups - 1) / groups;
    for (size_t r = 0; r < nr; r += per) {
        size_t h = nr - r < per ? nr - r : per;
        const float *m = ms + r * KERNELS_DECODE_KV, *w = wt + r * KERNELS_DECODE_KV;
        float *a = acc + r * hd;

#define ACC64(H)  decode_acc_regs(H, 64, cnt, vf, m, w, a)
#define ACC128(H) decode_acc_regs(H, 128, cnt, vf, m, w, a)
        if (hd == 64) {
            switch (h) {
            case 1:
                ACC64(1);
                break;
            case 2:
                ACC64(2);
                break;
            case 3:
                ACC64(3);
                break;
            case 4:
                ACC64(4);
                break;
            case 5:
                ACC64(5);
                break;
            default:
                ACC64(6);
                break;
            }
        } else {
            switch (h) {
            case 1:
                ACC128(1);
                break;
            case 2:
                ACC128(2);
                break;
            default:
                ACC128(3);
                break;
            }
        }
#undef ACC64
#undef ACC128
    }
}

/*
 * The decode attention of kernels.h: the heads' scores for a block of 16
 * positions at once, the online softmax per position (the scan over the
 * block is scalar, its exponentials one expf16 per head), then the F16
 * accumulators of all heads updated position by position, each value row
 * converted once for all heads. Per head and position the operations and
 * their order are attend_f16's (model_decode.c), so the bits are too.
 */
static void attn_decode(size_t hd, size_t nr, const float *const *q, float *const *out, size_t n,
                        const uint16_t *K, const uint16_t *V, float scale, float *work)
{
    float *kf = work, *vf = kf + KERNELS_DECODE_KV * hd, *qf = vf + KERNELS_DECODE_KV * hd;
    float *acc = qf + KERNELS_DECODE_ROWS * hd, *ms = acc + KERNELS_DECODE_ROWS * hd;
    float *wt = ms + KERNELS_DECODE_ROWS * KERNELS_DECODE_KV;
    float M[KERNELS_DECODE_ROWS], L[KERNELS_DECODE_ROWS];
    unsigned grew[KERNELS_DECODE_ROWS];
    bool lanes_ok;

    (void)pthread_once(&expf_lanes_once, expf_lanes_check);
    lanes_ok = expf_lanes_same;
    for (size_t r = 0; r < nr; r++) {
        for (size_t i = 0; i < hd; i += 16) {
            _mm512_storeu_ps(qf + r * hd + i, round_f16(_mm512_loadu_ps(q[r] + i)));
            _mm512_storeu_ps(acc + r * hd + i, _mm512_setzero_ps());
        }
        M[r] = -INFINITY;
        L[r] = 0.0f;
    }
    for (size_t j0 = 0; j0 < n; j0 += KERNELS_DECODE_KV) {
        size_t cnt = n - j0 < KERNELS_DECODE_KV ? n - j0 : KERNELS_DECODE_KV;

        f16_to_f32(K + j0 * hd, kf, cnt * hd);
        f16_to_f32(V + j0 * hd, vf, cnt * hd);
        for (size_t r = 0; r < nr; r++) {
            __m512 sv = hd == 64    ? decode_scores(64, qf + r * hd, kf, cnt)
                        : hd == 128 ? decode_scores(128, qf + r * hd, kf, cnt)
                                    : decode_scores(hd, qf + r * hd, kf, cnt);

            _mm512_storeu_ps(ms + r * KERNELS_DECODE_KV, _mm512_mul_ps(sv, _mm512_set1_ps(scale)));
            grew[r] = 0;
        }
        /* The heads' running maxima side by side, position by position. */
        for (size_t j = 0; j < cnt; j++)
            for (size_t r = 0; r < nr; r++) {
                float sj = ms[r * KERNELS_DECODE_KV + j];

                if (sj > M[r]) {
                    wt[r * KERNELS_DECODE_KV + j] = M[r] - sj;
                    M[r] = sj;
                    grew[r] |= 1u << j;
                } else {
                    wt[r * KERNELS_DECODE_KV + j] = sj - M[r];
                }
            }
        /* e = expf(argument): ms = e, w = 1 where the maximum grew, else ms = 1, w = e. */
        for (size_t r = 0; r < nr; r++) {
            __mmask16 g = (__mmask16)grew[r], used = mask16(cnt);
            __m512 e = expf16(_mm512_maskz_loadu_ps(used, wt + r * KERNELS_DECODE_KV), lanes_ok);

            _mm512_storeu_ps(ms + r * KERNELS_DECODE_KV,
                             _mm512_mask_blend_ps(g, _mm512_set1_ps(1.0f), e));
            _mm512_storeu_ps(wt + r * KERNELS_DECODE_KV,
                             _mm512_mask_blend_ps(g, e, _mm512_set1_ps(1.0f)));
        }
        for (size_t j = 0; j < cnt; j++)
            for (size_t r = 0; r < nr; r++)
                L[r] = fmaf(L[r], ms[r * KERNELS_DECODE_KV + j], wt[r * KERNELS_DECODE_KV + j]);
        decode_accumulate(hd, nr, cnt, vf, ms, wt, acc);
    }
    for (size_t r = 0; r < nr; r++) {
        /* Times 1 / sum, or left as is (times 1) if the sum is not > 0. */
        __m512 inv = _mm512_set1_ps(L[r] > 0.0f ? 1.0f / L[r] : 1.0f);

        for (size_t i = 0; i < hd; i += 16)
            _mm512_storeu_ps(out[r] + i, _mm512_mul_ps(_mm512_loadu_ps(acc + r * hd + i), inv));
    }
}

/* ======================= SwiGLU ======================= */

/* kernels__expf_poly on 16 lanes, the same operations in the same order. */
INLINE __m512 expf_poly(__m512 x)
{
    const __m512 shift = _mm512_set1_ps(0x1.8p23f);
    __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), shift), shift);
    __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    __m512 u = _mm512_mul_ps(b, b);
    __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
            _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    __m512 r = _mm512_scalef_ps(j, n);
    __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);

    if (big == 0) return r;
    r = _mm512_mask_mov_ps(r, big & _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_GT_OQ),
                           _mm512_set1_ps(INFINITY));
    return _mm512_mask_mov_ps(r, big & _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
                              _mm512_setzero_ps());
}

static void swiglu(size_t n, float *g, const float *u)
{
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(g + i);
        __m512 e = expf_poly(_mm512_sub_ps(_mm512_setzero_ps(), x));

        _mm512_storeu_ps(g + i,
                         _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e)),
                                       _mm512_loadu_ps(u + i)));
    }
    kernels__swiglu(n - i, g + i, u + i); /* under 16 left: the C library's expf */
}

const struct kernel_ops kernels_avx512 = {
    .name = "avx512",
    .vec_dot = {
        [TENSOR_TYPE_F32] = vec_dot_f32_fast, /* 4 accumulators beat the 1 x 1 tile */
        [TENSOR_TYPE_F16] = vec_dot_f16_fast,
        [TENSOR_TYPE_BF16] = vec_dot_bf16_fast,
        [TENSOR_TYPE_Q8_0] = vec_dot_q8_0,
        [TENSOR_TYPE_Q4_0] = vec_dot_q4_0,
        [TENSOR_TYPE_Q5_0] = vec_dot_q5_0,
        [TENSOR_TYPE_Q5_1] = vec_dot_q5_1,
        [TENSOR_TYPE_Q4_K] = vec_dot_q4_k,
        [TENSOR_TYPE_Q5_K] = vec_dot_q5_k,
        [TENSOR_TYPE_Q6_K] = vec_dot_q6_k,
    },
    .from_float = {
        [TENSOR_TYPE_F32] = from_float_f32,
        [TENSOR_TYPE_F16] = from_float_f16,
        [TENSOR_TYPE_BF16] = from_float_bf16,
        [TENSOR_TYPE_Q8_0] = from_float_q8_0,
        [TENSOR_TYPE_Q8_1] = from_float_q8_1,
        [TENSOR_TYPE_Q8_K] = from_float_q8_k,
    },
    .gemm = {
        [TENSOR_TYPE_F32] = gemm_f32,
        [TENSOR_TYPE_F16] = gemm_f16,
        [TENSOR_TYPE_BF16] = gemm_bf16,
        [TENSOR_TYPE_Q8_0] = gemm_q8_0,
        [TENSOR_TYPE_Q4_0] = gemm_q4_0,
        [TENSOR_TYPE_Q5_0] = gemm_q5_0,
        [TENSOR_TYPE_Q5_1] = gemm_q5_1,
        [TENSOR_TYPE_Q4_K] = gemm_q4_k,
        [TENSOR_TYPE_Q5_K] = gemm_q5_k,
        [TENSOR_TYPE_Q6_K] = gemm_q6_k,
    },
    .pack = { [TENSOR_TYPE_F16] = kernels__avx512_pack_f16,
              [TENSOR_TYPE_BF16] = kernels__avx512_pack_bf16,
              [TENSOR_TYPE_Q8_0] = pack_q8_0,
              [TENSOR_TYPE_Q4_0] = pack_q4_0,
              [TENSOR_TYPE_Q5_0] = pack_q5_0,
              [TENSOR_TYPE_Q5_1] = pack_q5_1,
              [TENSOR_TYPE_Q4_K] = pack_q4_k,
              [TENSOR_TYPE_Q5_K] = pack_q5_k,
              [TENSOR_TYPE_Q6_K] = pack_q6_k },
    .unpack = { [TENSOR_TYPE_F16] = kernels__avx512_unpack_f16,
                [TENSOR_TYPE_BF16] = kernels__avx512_unpack_bf16,
                [TENSOR_TYPE_Q8_0] = unpack_q8_0,
                [TENSOR_TYPE_Q4_0] = unpack_q4_0,
                [TENSOR_TYPE_Q5_0] = unpack_q5_0,
                [TENSOR_TYPE_Q5_1] = unpack_q5_1,
                [TENSOR_TYPE_Q4_K] = unpack_q4_k,
                [TENSOR_TYPE_Q5_K] = unpack_q5_k,
                [TENSOR_TYPE_Q6_K] = unpack_q6_k },
    .gemm_packed = { [TENSOR_TYPE_F16] = kernels__avx512_gemm_packed_f16,
                     [TENSOR_TYPE_BF16] = kernels__avx512_gemm_packed_bf16,
                     [TENSOR_TYPE_Q8_0] = gemm_packed_q8_0,
                     [TENSOR_TYPE_Q4_0] = gemm_packed_q4_0,
                     [TENSOR_TYPE_Q5_0] = gemm_packed_q5_0,
                     [TENSOR_TYPE_Q5_1] = gemm_packed_q5_1,
                     [TENSOR_TYPE_Q4_K] = gemm_packed_q4_k,
                     [TENSOR_TYPE_Q5_K] = gemm_packed_q5_k,
                     [TENSOR_TYPE_Q6_K] = gemm_packed_q6_k },
    .dot_f32 = dot_f32,
    .dot_f32_f16 = dot_f32_f16,
    .axpy_f32 = axpy_f32,
    .axpy_f16 = axpy_f16,
    .dot_f16 = dot_f16,
    .scale_f16 = scale_f16,
    .mad_f16 = mad_f16,
    .attn_tile = attn_tile,
    .attn_decode = attn_decode,
    .f32_to_f16 = f32_to_f16,
    .swiglu = swiglu,
    .f16_to_f32 = f16_to_f32,
};
