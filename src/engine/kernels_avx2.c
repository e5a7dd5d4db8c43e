/*
 * kernels_avx2.c - AVX2 kernels (AVX2, FMA, F16C, BMI2).
 *
 * Compiled with its own -m flags (Makefile KFLAGS_AVX2) and only called after
 * kernels.c has checked CPUID and XCR0. Same structure as kernels_avx512.c:
 * register tiles of R weight rows x C activation columns with one 8-lane f32
 * accumulator per pair and one horizontal sum at the end; the tiles are
 * smaller (16 vector registers). Integer products use vpmaddubsw (u8 x s8
 * pairs) and vpmaddwd (x 1 or x the 16-bit sub-block scales), so integer
 * parts are exact. Q8_0 weights use the sign trick (|w| and sign(x, w)),
 * which requires activations in [-127, 127]: from_float never writes -128.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "engine/kernels_int.h"

#define INLINE static inline __attribute__((always_inline))

/* Largest tile (float and 32-block types use 2 x 4, k-quants 2 x 2). */
#define RT 2
#define CT 4

INLINE float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Loads k < 8 floats, zero-filling the rest. */
INLINE __m256 load_tail_f32(const float *p, size_t k)
{
    float tmp[8] = { 0 };

    memcpy(tmp, p, k * sizeof(float));
    return _mm256_loadu_ps(tmp);
}

INLINE __m256 load_f16(const uint8_t *p, size_t i)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
}

INLINE __m256 load_tail_f16(const uint8_t *p, size_t i, size_t k)
{
    uint16_t tmp[8] = { 0 };

    memcpy(tmp, (const uint16_t *)p + i, k * sizeof(uint16_t));
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp));
}

/* bf16 -> f32 is a 16-bit shift: exact. */
INLINE __m256 load_bf16(const uint8_t *p, size_t i)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));

    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

INLINE __m256 load_tail_bf16(const uint8_t *p, size_t i, size_t k)
{
    uint16_t tmp[8] = { 0 };

    memcpy(tmp, (const uint16_t *)p + i, k * sizeof(uint16_t));
    return load_bf16((const uint8_t *)tmp, 0);
}

/* ======================= float tiles ======================= */

/* kind: 0 f32, 1 f16, 2 bf16. */
INLINE __m256 load_kind(const int kind, const uint8_t *p, size_t i)
{
    if (kind == 0) return _mm256_loadu_ps((const float *)p + i);
    if (kind == 1) return load_f16(p, i);
    return load_bf16(p, i);
}

INLINE __m256 load_kind_tail(const int kind, const uint8_t *p, size_t i, size_t k)
{
    if (kind == 0) return load_tail_f32((const float *)p + i, k);
    if (kind == 1) return load_tail_f16(p, i, k);
    return load_tail_bf16(p, i, k);
}

INLINE void tile_float(const int R, const int C, const int kind, size_t n, const uint8_t *w,
                       size_t ws, const uint8_t *x, size_t xs, float *y, size_t ys)
{
    __m256 acc[RT][CT];
    size_t i = 0;

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 xv[CT];

        for (int c = 0; c < C; c++)
            xv[c] = load_kind(kind, x + c * xs, i);
        for (int r = 0; r < R; r++) {
            __m256 wv = load_kind(kind, w + r * ws, i);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (i < n) {
        __m256 xv[CT];

        for (int c = 0; c < C; c++)
            xv[c] = load_kind_tail(kind, x + c * xs, i, n - i);
        for (int r = 0; r < R; r++) {
            __m256 wv = load_kind_tail(kind, w + r * ws, i, n - i);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = hsum8(acc[r][c]);
}

INLINE void tile_f32(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                     const uint8_t *x, size_t xs, float *y, size_t ys)
{
    tile_float(R, C, 0, n, w, ws, x, xs, y, ys);
}

INLINE void tile_f16(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                     const uint8_t *x, size_t xs, float *y, size_t ys)
{
    tile_float(R, C, 1, n, w, ws, x, xs, y, ys);
}

INLINE void tile_bf16(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    tile_float(R, C, 2, n, w, ws, x, xs, y, ys);
}

/* ======================= Q8_0 and Q4_0 against Q8_0 ======================= */

/* One 32-element block: signed weights, |w| for vpmaddubsw, sign(x, w) per column. */
/* 32 bits -> 32 bytes, 0x10 where the bit is set (bit j -> byte j). */
INLINE __m256i bits_to_0x10(uint32_t h)
{
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf), bit);

    return _mm256_and_si256(_mm256_cmpeq_epi8(b, bit), _mm256_set1_epi8(0x10));
}

/* Kinds of 32-element weight blocks. */
enum { K32_Q8_0, K32_Q4_0, K32_Q5_0 };

INLINE void tile_q32(const int R, const int C, const int kind, size_t n, const uint8_t *w,
                     size_t ws, const uint8_t *x, size_t xs, float *y, size_t ys)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[RT][CT];

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / QK8_0; ib++) {
        __m256i ws8[RT], wa[RT];
        float wd[RT];

        for (int r = 0; r < R; r++) {
            if (kind == K32_Q4_0) {
                const struct block_q4_0 *b = (const struct block_q4_0 *)(w + r * ws) + ib;
                __m128i v = _mm_loadu_si128((const __m128i *)b->qs);
                __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v),
                                             _mm256_set1_epi8(0x0F));

                ws8[r] = _mm256_sub_epi8(q, _mm256_set1_epi8(8));
                wd[r] = h2f(b->d);
            } else if (kind == K32_Q5_0) {
                const struct block_q5_0 *b = (const struct block_q5_0 *)(w + r * ws) + ib;
                __m128i v = _mm_loadu_si128((const __m128i *)b->qs);
                __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v),
                                             _mm256_set1_epi8(0x0F));
                uint32_t qh;

                memcpy(&qh, b->qh, 4);
                q = _mm256_or_si256(q, bits_to_0x10(qh));
                ws8[r] = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
                wd[r] = h2f(b->d);
            } else {
                const struct block_q8_0 *b = (const struct block_q8_0 *)(w + r * ws) + ib;

                ws8[r] = _mm256_loadu_si256((const __m256i *)b->qs);
                wd[r] = h2f(b->d);
            }
            wa[r] = _mm256_abs_epi8(ws8[r]);
        }
        for (int c = 0; c < C; c++) {
            const struct block_q8_0 *b = (const struct block_q8_0 *)(x + c * xs) + ib;
            __m256i xq = _mm256_loadu_si256((const __m256i *)b->qs);
            float xd = h2f(b->d);

            for (int r = 0; r < R; r++) {
                __m256i p = _mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(xq, ws8[r]));
                __m256i s = _mm256_madd_epi16(p, ones);

                acc[r][c] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(wd[r] * xd), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = hsum8(acc[r][c]);
}

INLINE void tile_q8_0(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    tile_q32(R, C, K32_Q8_0, n, w, ws, x, xs, y, ys);
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

/* ======================= Q5_1 against Q8_1 ======================= */

/*
 * Q5_1 x Q8_1 (the reference is kernels__vec_dot_q5_1; ggml_vec_dot_q5_1_q8_1):
 * per block s += d_w d_x * sum(q x) + m_w s_x with s_x = d_x * sum(x) stored
 * in the Q8_1 block. The five-bit values q (0..31) carry no offset, so
 * vpmaddubsw takes them unsigned as they are (|pair sum| <= 2 * 31 * 128:
 * no saturation). The minimum term m_w s_x goes into lane 0 of the same
 * accumulator (wm holds m_w in lane 0, zeros elsewhere).
 * W (nr, n) Q5_1 rows ws bytes apart @ X (nc, n) Q8_1 rows xs bytes apart.
 */
INLINE void tile_q5_1(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    const __m256i ones = _mm256_set1_epi16(1), m0f = _mm256_set1_epi8(0x0F);
    __m256 acc[RT][CT];

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / QK5_1; ib++) {
        __m256i wq[RT];
        __m256 wm[RT];
        float wd[RT];

        for (int r = 0; r < R; r++) {
            const struct block_q5_1 *b = (const struct block_q5_1 *)(w + r * ws) + ib;
            __m128i v = _mm_loadu_si128((const __m128i *)b->qs);
            uint32_t qh;

            memcpy(&qh, b->qh, 4);
            wq[r] = _mm256_or_si256(
                _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), m0f), bits_to_0x10(qh));
            wd[r] = h2f(b->d);
            wm[r] = _mm256_set_m128(_mm_setzero_ps(), _mm_set_ss(h2f(b->m)));
        }
        for (int c = 0; c < C; c++) {
            const struct block_q8_1 *b = (const struct block_q8_1 *)(x + c * xs) + ib;
            __m256i xq = _mm256_loadu_si256((const __m256i *)b->qs);
            __m256 xsum = _mm256_set1_ps(h2f(b->s));
            float xd = h2f(b->d);

            for (int r = 0; r < R; r++) {
                __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(wq[r], xq), ones);

                acc[r][c] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(wd[r] * xd), acc[r][c]);
                acc[r][c] = _mm256_fmadd_ps(wm[r], xsum, acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = hsum8(acc[r][c]);
}

/* ======================= k-quants against Q8_K ======================= */

INLINE void k4_scales(const uint8_t *s, uint8_t sc[8], uint8_t m[8])
{
    uint32_t u0, u1, u2, v[4];

    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    v[0] = u0 & 0x3f3f3f3f;
    v[1] = (u2 & 0x0f0f0f0f) | ((u0 >> 2) & 0x30303030);
    v[2] = u1 & 0x3f3f3f3f;
    v[3] = ((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 2) & 0x30303030);
    memcpy(sc, v, 8);
    memcpy(m, v + 2, 8);
}

/*
 * Q4_K / Q5_K: for each 64-element pair j, the low and high nibbles of
 * qs[32j .. 32j + 31] times x[64j ..] and x[64j + 32 ..], vpmaddwd with the
 * broadcast sub-block scale; mins via vpmaddwd of (m, m) pairs with bsums.
 */
INLINE void tile_k45(const int R, const int C, const int is_q5, size_t n, const uint8_t *w,
                     size_t ws, const uint8_t *x, size_t xs, float *y, size_t ys)
{
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    __m256 acc[RT][CT];

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / QK_K; ib++) {
        const uint8_t *qs[RT], *qh[RT];
        uint8_t sc[RT][8], m[RT][8];
        float d[RT], dmin[RT];
        __m256i isum[RT][CT];

        for (int r = 0; r < R; r++) {
            if (is_q5) {
                const struct block_q5_k *b = (const struct block_q5_k *)(w + r * ws) + ib;

                qs[r] = b->qs;
                qh[r] = b->qh;
                k4_scales(b->scales, sc[r], m[r]);
                d[r] = h2f(b->d);
                dmin[r] = h2f(b->dmin);
            } else {
                const struct block_q4_k *b = (const struct block_q4_k *)(w + r * ws) + ib;

                qs[r] = b->qs;
                qh[r] = NULL;
                k4_scales(b->scales, sc[r], m[r]);
                d[r] = h2f(b->d);
                dmin[r] = h2f(b->dmin);
            }
            for (int c = 0; c < C; c++)
                isum[r][c] = _mm256_setzero_si256();
        }
        for (int j = 0; j < 4; j++) {
            for (int r = 0; r < R; r++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(qs[r] + 32 * j));
                __m256i lo = _mm256_and_si256(v, m0f);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
                __m256i s0 = _mm256_set1_epi16(sc[r][2 * j]);
                __m256i s1 = _mm256_set1_epi16(sc[r][2 * j + 1]);

                if (is_q5) {
                    __m256i hb = _mm256_loadu_si256((const __m256i *)qh[r]);
                    __m256i b0 = _mm256_set1_epi8((char)(1 << (2 * j)));
                    __m256i b1 = _mm256_set1_epi8((char)(2 << (2 * j)));
                    __m256i k16 = _mm256_set1_epi8(16);

                    lo = _mm256_or_si256(
                        lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, b0), b0), k16));
                    hi = _mm256_or_si256(
                        hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, b1), b1), k16));
                }
                for (int c = 0; c < C; c++) {
                    const struct block_q8_k *b = (const struct block_q8_k *)(x + c * xs) + ib;
                    __m256i x0 = _mm256_loadu_si256((const __m256i *)(b->qs + 64 * j));
                    __m256i x1 = _mm256_loadu_si256((const __m256i *)(b->qs + 64 * j + 32));
                    __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), s0);
                    __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), s1);

                    isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_add_epi32(p0, p1));
                }
            }
        }
        for (int r = 0; r < R; r++) {
            __m128i m8 = _mm_loadl_epi64((const __m128i *)m[r]);
            __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));

            for (int c = 0; c < C; c++) {
                const struct block_q8_k *b = (const struct block_q8_k *)(x + c * xs) + ib;
                __m256i ms = _mm256_madd_epi16(m16, _mm256_loadu_si256((const __m256i *)b->bsums));

                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]),
                                            _mm256_set1_ps(b->d * d[r]), acc[r][c]);
                acc[r][c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(b->d * dmin[r]),
                                             acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = hsum8(acc[r][c]);
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
 * Q6_K: chunk t (elements 32t .. 32t + 31) of half h = t / 4 takes the low
 * or high nibbles of ql[64h ..] or ql[64h + 32 ..] and two bits of
 * qh[32h ..]; its two groups of 16 use scales[2t] and scales[2t + 1].
 */
INLINE __m256i k6_chunk(const struct block_q6_k *b, int t)
{
    const __m256i m0f = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    int h = t / 4, k = t % 4;
    __m256i l = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (k & 1)));
    __m256i hb = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    __m256i lo, hi;

    lo = k < 2 ? _mm256_and_si256(l, m0f) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m0f);
    switch (k) {
    case 0:
        hi = _mm256_slli_epi16(hb, 4);
        break;
    case 1:
        hi = _mm256_slli_epi16(hb, 2);
        break;
    case 2:
        hi = hb;
        break;
    default:
        hi = _mm256_srli_epi16(hb, 2);
        break;
    }
    return _mm256_or_si256(lo, _mm256_and_si256(hi, m30));
}

INLINE void tile_q6_k(const int R, const int C, size_t n, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys)
{
    __m256 acc[RT][CT];

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / QK_K; ib++) {
        const struct block_q6_k *bw[RT];
        __m256i isum[RT][CT];

        for (int r = 0; r < R; r++) {
            bw[r] = (const struct block_q6_k *)(w + r * ws) + ib;
            for (int c = 0; c < C; c++)
                isum[r][c] = _mm256_setzero_si256();
        }
        for (int t = 0; t < 8; t++) {
            for (int r = 0; r < R; r++) {
                __m256i q = k6_chunk(bw[r], t);
                __m256i sc = _mm256_set_m128i(_mm_set1_epi16(bw[r]->scales[2 * t + 1]),
                                              _mm_set1_epi16(bw[r]->scales[2 * t]));

                for (int c = 0; c < C; c++) {
                    const struct block_q8_k *b = (const struct block_q8_k *)(x + c * xs) + ib;
                    __m256i xv = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * t));

                    isum[r][c] = _mm256_add_epi32(
                        isum[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), sc));
                }
            }
        }
        for (int r = 0; r < R; r++) {
            __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bw[r]->scales));
            float d = h2f(bw[r]->d);

            for (int c = 0; c < C; c++) {
                const struct block_q8_k *b = (const struct block_q8_k *)(x + c * xs) + ib;
                __m256i corr = _mm256_slli_epi32(
                    _mm256_madd_epi16(s16, _mm256_loadu_si256((const __m256i *)b->bsums)), 5);
                __m256i is = _mm256_sub_epi32(isum[r][c], corr);

                acc[r][c] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(b->d * d), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[c * ys + r] = hsum8(acc[r][c]);
}

/* ======================= vec_dot and gemm entry points ======================= */

#define TILE_CASE(T, R, C)                      \
    case (R)*8 + (C):                           \
        tile_##T(R, C, n, w, ws, x, xs, y, ys); \
        break;

#define CASES_2x4(T)   \
    TILE_CASE(T, 1, 1) \
    TILE_CASE(T, 1, 2) \
    TILE_CASE(T, 1, 3) \
    TILE_CASE(T, 1, 4) \
    TILE_CASE(T, 2, 1) \
    TILE_CASE(T, 2, 2) \
    TILE_CASE(T, 2, 3) \
    TILE_CASE(T, 2, 4)

#define CASES_2x2(T)   \
    TILE_CASE(T, 1, 1) \
    TILE_CASE(T, 1, 2) \
    TILE_CASE(T, 2, 1) \
    TILE_CASE(T, 2, 2)

#define DEFINE_KERNELS(T, TR, TC)                                                                  \
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
            CASES_##TR##x##TC(T) default : break;                                                  \
        }                                                                                          \
    }                                                                                              \
    static void gemm_##T(size_t n, const void *w, size_t ws, size_t nr, const void *x, size_t xs,  \
                         size_t nc, float *y, size_t ys)                                           \
    {                                                                                              \
        /* One or two columns: one row per tile, so the weights stream in                          \
         * order (see kernels_avx512.c's gemm; with AVX2 (SLM_CPU=avx2 on the                      \
         * Zen 5) 2 columns gained 28 -> 40 t/s, 4 and 8 columns lost). */                         \
        const size_t rt = nc <= 2 ? 1 : TR;                                                        \
        for (size_t r0 = 0; r0 < nr; r0 += rt) {                                                   \
            size_t rn = nr - r0 < rt ? nr - r0 : rt;                                               \
            for (size_t c0 = 0; c0 < nc; c0 += TC) {                                               \
                size_t cn = nc - c0 < TC ? nc - c0 : TC;                                           \
                tiles_##T(rn, cn, n, (const uint8_t *)w + r0 * ws, ws,                             \
                          (const uint8_t *)x + c0 * xs, xs, y + c0 * ys + r0, ys);                 \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_KERNELS(f32, 2, 4)
DEFINE_KERNELS(f16, 2, 4)
DEFINE_KERNELS(bf16, 2, 4)
DEFINE_KERNELS(q8_0, 2, 4)
DEFINE_KERNELS(q4_0, 2, 4)
DEFINE_KERNELS(q5_0, 2, 4)
DEFINE_KERNELS(q5_1, 2, 4)
DEFINE_KERNELS(q4_k, 2, 2)
DEFINE_KERNELS(q5_k, 2, 2)
DEFINE_KERNELS(q6_k, 2, 2)

/* ======================= activation conversion ======================= */

/* Lanes holding NaN or infinity: x - x is NaN exactly for those. */
INLINE int any_nonfinite(__m256 v)
{
    __m256 z = _mm256_sub_ps(v, v);

    return _mm256_movemask_ps(_mm256_cmp_ps(z, z, _CMP_UNORD_Q));
}

INLINE __m256 abs8(__m256 v)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

INLINE float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 int32 (each in [-128, 127]) -> 8 bytes at p. */
INLINE void store_i8x8(int8_t *p, __m256i q)
{
    __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));

    _mm_storel_epi64((__m128i *)p, _mm_packs_epi16(w16, w16));
}

static void from_float_f32(const float *x, void *y, size_t n)
{
    memcpy(y, x, n * sizeof(float));
}

static void f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        uint16_t tmp[8];

        _mm_storeu_si128((__m128i *)tmp,
                         _mm256_cvtps_ph(load_tail_f32(x + i, n - i), _MM_FROUND_TO_NEAREST_INT));
        memcpy(y + i, tmp, (n - i) * sizeof(uint16_t));
    }
}

static void from_float_f16(const float *x, void *y, size_t n)
{
    f32_to_f16(x, y, n);
}

/* Round to nearest even with integer operations; NaN made quiet (as f32_to_bf16). */
INLINE __m128i cvt_bf16(__m256 v)
{
    __m256i b = _mm256_castps_si256(v);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(b, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd)), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(64));

    r = _mm256_blendv_epi8(r, q, nan);
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

static void from_float_bf16(const float *x, void *vy, size_t n)
{
    uint16_t *y = vy;
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), cvt_bf16(_mm256_loadu_ps(x + i)));
    if (i < n) {
        uint16_t tmp[8];

        _mm_storeu_si128((__m128i *)tmp, cvt_bf16(load_tail_f32(x + i, n - i)));
        memcpy(y + i, tmp, (n - i) * sizeof(uint16_t));
    }
}

/*
 * One block of 32 activations to 8 bits: d = amax / 127 (F16 in *dh, f32 in
 * *d), q = round(x * 127 / amax), and with sum != NULL the sum of the q.
 * 127 / amax, not 1 / d: the multiplier llama.cpp's x86 code uses, so
 * activations round to the same integers and greedy runs agree. Returns
 * false, having written nothing, if the block holds a NaN or an infinity.
 */
INLINE bool quant_block_q8(const float *x, int8_t *qs, uint16_t *dh, float *d, int32_t *sum)
{
    __m256 v[4], vmax = _mm256_setzero_ps(), vid;
    __m256i qsum = _mm256_setzero_si256();
    int bad = 0;
    float amax, id;

    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_loadu_ps(x + 8 * j);
        bad |= any_nonfinite(v[j]);
        vmax = _mm256_max_ps(vmax, abs8(v[j]));
    }
    if (bad) return false;
    amax = hmax8(vmax);
    *d = amax / 127;
    id = amax != 0.0f ? 127.0f / amax : 0.0f;
    if (isinf(id)) id = 0.0f;
    *dh = _cvtss_sh(*d, _MM_FROUND_TO_NEAREST_INT);
    vid = _mm256_set1_ps(id);
    for (int j = 0; j < 4; j++) {
        /* |q| <= 127: the int32 sum is the sum of the stored bytes. */
        __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], vid));

        store_i8x8(qs + 8 * j, q);
        if (sum != NULL) qsum = _mm256_add_epi32(qsum, q);
    }
    if (sum != NULL) {
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(qsum), _mm256_extracti128_si256(qsum, 1));

        s4 = _mm_hadd_epi32(s4, s4);
        s4 = _mm_hadd_epi32(s4, s4);
        *sum = _mm_cvtsi128_si32(s4);
    }
    return true;
}

static void from_float_q8_0(const float *x, void *vy, size_t n)
{
    struct block_q8_0 *y = vy;

    for (size_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float d;

        if (!quant_block_q8(x, y[i].qs, &y[i].d, &d, NULL)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = 0x7e00;
        }
    }
}

/*
 * Q8_1: Q8_0 plus s = f16(d * sum(q)) with the f32 d; the same bytes as
 * kernels__from_float_q8_1 (kernels_int.h).
 */
static void from_float_q8_1(const float *x, void *vy, size_t n)
{
    struct block_q8_1 *y = vy;

    for (size_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float d;
        int32_t sum;

        if (!quant_block_q8(x, y[i].qs, &y[i].d, &d, &sum)) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = 0x7e00;
            y[i].s = 0x7e00;
            continue;
        }
        y[i].s = _cvtss_sh((float)sum * d, _MM_FROUND_TO_NEAREST_INT);
    }
}

static void from_float_q8_k(const float *x, void *vy, size_t n)
{
    struct block_q8_k *y = vy;
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);

    for (size_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 vmax = _mm256_setzero_ps(), vis;
        int bad = 0;
        float amax, iscale;

        for (int j = 0; j < QK_K / 8; j++) {
            __m256 v = _mm256_loadu_ps(x + 8 * j);

            bad |= any_nonfinite(v);
            vmax = _mm256_max_ps(vmax, abs8(v));
        }
        memset(&y[i], 0, sizeof(y[i]));
        if (bad) {
            y[i].d = NAN;
            continue;
        }
        amax = hmax8(vmax);
        iscale = 127.f / amax;
        if (amax == 0.0f || isinf(iscale)) continue;
        vis = _mm256_set1_ps(iscale);
        for (int g = 0; g < QK_K / 16; g++) {
            __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * g), vis));
            __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * g + 8), vis));
            __m256i s;
            __m128i s4;

            q0 = _mm256_min_epi32(_mm256_max_epi32(q0, lo), hi);
            q1 = _mm256_min_epi32(_mm256_max_epi32(q1, lo), hi);
            store_i8x8(y[i].qs + 16 * g, q0);
            store_i8x8(y[i].qs + 16 * g + 8, q1);
            s = _mm256_add_epi32(q0, q1);
            s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_hadd_epi32(s4, s4);
            s4 = _mm_hadd_epi32(s4, s4);
            y[i].bsums[g] = (int16_t)_mm_cvtsi128_si32(s4);
        }
        y[i].d = 1 / iscale;
    }
}

/* ======================= f32 helpers ======================= */

static float dot_f32(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < n) s1 = _mm256_fmadd_ps(load_tail_f32(a + i, n - i), load_tail_f32(b + i, n - i), s1);
    return hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static void vec_dot_f32_fast(size_t n, float *s, const void *w, const void *x)
{
    *s = dot_f32(w, x, n);
}

/* 1 x 1 tiles are latency-bound on one accumulator: four chains instead. */
INLINE void dot_4acc(const int kind, size_t n, float *s, const uint8_t *a, const uint8_t *b)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_kind(kind, a, i), load_kind(kind, b, i), s0);
        s1 = _mm256_fmadd_ps(load_kind(kind, a, i + 8), load_kind(kind, b, i + 8), s1);
        s2 = _mm256_fmadd_ps(load_kind(kind, a, i + 16), load_kind(kind, b, i + 16), s2);
        s3 = _mm256_fmadd_ps(load_kind(kind, a, i + 24), load_kind(kind, b, i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(load_kind(kind, a, i), load_kind(kind, b, i), s0);
    if (i < n)
        s1 = _mm256_fmadd_ps(load_kind_tail(kind, a, i, n - i), load_kind_tail(kind, b, i, n - i),
                             s1);
    *s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static void vec_dot_f16_fast(size_t n, float *s, const void *w, const void *x)
{
    dot_4acc(1, n, s, w, x);
}

static void vec_dot_bf16_fast(size_t n, float *s, const void *w, const void *x)
{
    dot_4acc(2, n, s, w, x);
}

static float dot_f32_f16(const float *a, const uint16_t *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_f16((const uint8_t *)b, i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load_f16((const uint8_t *)b, i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_f16((const uint8_t *)b, i), s0);
    if (i < n)
        s1 = _mm256_fmadd_ps(load_tail_f32(a + i, n - i),
                             load_tail_f16((const uint8_t *)b, i, n - i), s1);
    return hsum8(_mm256_add_ps(s0, s1));
}

static void axpy_f32(size_t n, float a, const float *x, float *y)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] = fmaf(a, x[i], y[i]);
}

static void axpy_f16(size_t n, float a, const uint16_t *x, float *y)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            y + i, _mm256_fmadd_ps(va, load_f16((const uint8_t *)x, i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] = fmaf(a, _cvtsh_ss(x[i]), y[i]);
}

/*
 * Accumulates like llama.cpp's ggml_vec_dot_f16 on AVX2: 4 accumulators of
 * 8 lanes over steps of 32, accumulators (0 + 2) and (1 + 3) added, then the
 * two; the last 8-lane sum (hsum8) may round differently from ggml's hadd
 * pair. The tail in double.
 */
static float dot_f16(const uint16_t *a, const uint16_t *b, size_t n)
{
    const uint8_t *pa = (const uint8_t *)a, *pb = (const uint8_t *)b;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t n32 = n & ~(size_t)31;
    double sum;

    for (size_t i = 0; i < n32; i += 32) {
        s0 = _mm256_fmadd_ps(load_f16(pa, i), load_f16(pb, i), s0);
        s1 = _mm256_fmadd_ps(load_f16(pa, i + 8), load_f16(pb, i + 8), s1);
        s2 = _mm256_fmadd_ps(load_f16(pa, i + 16), load_f16(pb, i + 16), s2);
        s3 = _mm256_fmadd_ps(load_f16(pa, i + 24), load_f16(pb, i + 24), s3);
    }
    sum = (double)hsum8(_mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3)));
    for (size_t i = n32; i < n; i++)
        sum += (double)(h2f(a[i]) * h2f(b[i]));
    return (float)sum;
}

static void scale_f16(size_t n, float s, uint16_t *y)
{
    __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_mul_ps(load_f16((const uint8_t *)y, i), vs),
                                         _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = _cvtss_sh(h2f(y[i]) * s, _MM_FROUND_TO_NEAREST_INT);
}

static void mad_f16(size_t n, float a, const uint16_t *x, uint16_t *y)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_fmadd_ps(load_f16((const uint8_t *)x, i), va,
                                                         load_f16((const uint8_t *)y, i)),
                                         _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = _cvtss_sh(fmaf(h2f(x[i]), a, h2f(y[i])), _MM_FROUND_TO_NEAREST_INT);
}

static void f16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, load_f16((const uint8_t *)x, i));
    for (; i < n; i++)
        y[i] = _cvtsh_ss(x[i]);
}

/* ======================= SwiGLU ======================= */

/* 2^e for integer-valued e in [-126, 127], built in the exponent field: exact. */
INLINE __m256 pow2i(__m256 e)
{
    __m256i k = _mm256_add_epi32(_mm256_cvtps_epi32(e), _mm256_set1_epi32(127));

    return _mm256_castsi256_ps(_mm256_slli_epi32(k, 23));
}

/*
 * kernels__expf_poly on 8 lanes, the same operations in the same order.
 * ldexpf(j, n) (one rounding, also into the subnormals) without AVX-512's
 * vscalefps: j * 2^(n - n1) is exact (j is near 1 and |n - n1| <= 66), then
 * one product with 2^n1, n1 = n clamped to [-126, 127], rounds once.
 */
INLINE __m256 expf_poly8(__m256 x)
{
    const __m256 shift = _mm256_set1_ps(0x1.8p23f), lim = _mm256_set1_ps(192.0f);
    __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift), shift);
    __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    __m256 u = _mm256_mul_ps(b, b);
    __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
            _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
    /* Clamped first so that lanes replaced below (|n| > 192, NaN) stay in range. */
    __m256 nc = _mm256_min_ps(_mm256_max_ps(n, _mm256_set1_ps(-192.0f)), lim);
    __m256 n1 = _mm256_min_ps(_mm256_max_ps(nc, _mm256_set1_ps(-126.0f)), _mm256_set1_ps(127.0f));
    __m256 r = _mm256_mul_ps(_mm256_mul_ps(j, pow2i(_mm256_sub_ps(nc, n1))), pow2i(n1));
    __m256 big = _mm256_cmp_ps(abs8(n), lim, _CMP_GT_OQ);

    if (_mm256_movemask_ps(big) == 0) return r;
    /* |n| > 192: infinity for n > 0, else 0 (NaN lanes are not big: j is NaN). */
    return _mm256_blendv_ps(
        r,
        _mm256_and_ps(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(INFINITY)),
        big);
}

/*
 * kernel_ops.swiglu: g[i] = g[i] / (1 + exp(-g[i])) * u[i], the bits of
 * kernels__swiglu: expf_poly8 on the first n - n % 16 elements, the rest by
 * kernels__swiglu itself (fewer than 16: the C library's expf).
 */
static void swiglu(size_t n, float *g, const float *u)
{
    size_t head = n - n % 16;

    for (size_t i = 0; i < head; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = expf_poly8(_mm256_sub_ps(_mm256_setzero_ps(), x));

        _mm256_storeu_ps(g + i,
                         _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e)),
                                       _mm256_loadu_ps(u + i)));
    }
    kernels__swiglu(n - head, g + head, u + head);
}

const struct kernel_ops kernels_avx2 = {
    .name = "avx2",
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
    .dot_f32 = dot_f32,
    .dot_f32_f16 = dot_f32_f16,
    .axpy_f32 = axpy_f32,
    .axpy_f16 = axpy_f16,
    .dot_f16 = dot_f16,
    .scale_f16 = scale_f16,
    .mad_f16 = mad_f16,
    .f32_to_f16 = f32_to_f16,
    .swiglu = swiglu,
    .f16_to_f32 = f16_to_f32,
};
