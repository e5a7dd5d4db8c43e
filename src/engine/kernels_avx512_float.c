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
 *
 * gemm_packed is a set of register tiles (the gemm section below; shapes
 * and measurements in docs/internals/kernels.md). Every product is exact
 * in f32; the sums run in another order than the file-layout kernels, so
 * it matches kernels_scalar.c within the dot tolerance
 * (kernels_avx512_packed_gemm_matches_scalar).
 */
#include <immintrin.h>
#include <string.h>

#include "engine/kernels_int.h"

#define INLINE static inline __attribute__((always_inline))

/* ======================= packing ======================= */

/*
 * Packing is a transpose of a group's 16 rows by 2-byte elements (F16) or
 * 4-byte pairs of them (BF16), done in registers: 64 bytes of each row are
 * loaded (register i holds row i), transposed in four rounds of two-source
 * permutes, and stored as 16 consecutive registers, so the destination is
 * written once, front to back, and never read (it may be a shared file
 * mapping). Round b pairs registers i and i + 2^b (bit b of i clear) and
 * exchanges bit b of the register number with bit b of the lane number, so
 * after the four rounds register and lane have traded places: lane r of
 * register j is pair j of row r (BF16). For F16 round 0 also reads the 32
 * halves of a row in the lane order v = (k >> 1) | (k & 1) << 4, so that
 * afterwards lane v of register j is half 2j + (v >> 4) of row v & 15:
 * [k][r] for k = 2j and 2j + 1. Every byte is a copy, so the result is the
 * plain element-by-element transpose (kernels_avx512_pack_matches_reference).
 */

/* Permute indices of the four rounds: [round][0] for register i, [1] for i + 2^b. */
struct pack_index {
    __m512i v[4][2];
};

/*
 * Lane v of the permute of round b for the register with bit b = second
 * (over lanes lanes): it comes from register (bit b of v) of the pair, at
 * lane v with bit b replaced by second; reorder maps that lane through
 * F16's round-0 order (lane (k >> 1) | (k & 1) << 4 holds half k).
 */
static unsigned pack_lane(unsigned lanes, unsigned b, unsigned second, unsigned v, int reorder)
{
    unsigned src = second ? (v | 1u << b) : (v & ~(1u << b));

    if (reorder) src = ((src & 15u) << 1) | (src >> 4);
    return ((v >> b) & 1u) * lanes + src;
}

static void pack_index_init(struct pack_index *ix, int halves)
{
    for (unsigned b = 0; b < 4; b++)
        for (unsigned s = 0; s < 2; s++) {
            uint16_t h[32];
            uint32_t d[16];

            for (unsigned v = 0; v < 32; v++)
                h[v] = (uint16_t)pack_lane(32, b, s, v, b == 0);
            for (unsigned v = 0; v < 16; v++)
                d[v] = pack_lane(16, b, s, v, 0);
            ix->v[b][s] = halves ? _mm512_loadu_si512(h) : _mm512_loadu_si512(d);
        }
}

/* The four rounds over v[16]: by halves (F16) or by dwords (BF16 pairs). */
INLINE void pack_transpose(const int halves, const struct pack_index *ix, __m512i v[16])
{
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++)
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i & (1 << b)) continue;
            __m512i lo = v[i], hi = v[i | 1 << b];

            if (halves) {
                v[i] = _mm512_permutex2var_epi16(lo, ix->v[b][0], hi);
                v[i | 1 << b] = _mm512_permutex2var_epi16(lo, ix->v[b][1], hi);
            } else {
                v[i] = _mm512_permutex2var_epi32(lo, ix->v[b][0], hi);
                v[i | 1 << b] = _mm512_permutex2var_epi32(lo, ix->v[b][1], hi);
            }
        }
}

/*
 * Packs nr rows (a multiple of 16) of ws bytes: 32 elements of the 16 rows
 * at a time through pack_transpose, the rest (when n is not a multiple of
 * 32; the loader never asks for that) element by element.
 */
INLINE void pack_16bit(const int halves, const void *w, size_t ws, size_t nr, void *out)
{
    size_t n = ws / sizeof(uint16_t), nv = n - n % 32;
    uint16_t *o = out;
    struct pack_index ix;

    pack_index_init(&ix, halves);
    for (size_t g = 0; g < nr; g += KERNELS_PACK_ROWS) {
        const uint16_t *src = (const uint16_t *)((const uint8_t *)w + g * ws);

        for (size_t k = 0; k < nv; k += 32, o += 32 * KERNELS_PACK_ROWS) {
            __m512i v[16];

#pragma GCC unroll 16
            for (size_t r = 0; r < KERNELS_PACK_ROWS; r++)
                v[r] = _mm512_loadu_si512(src + r * n + k);
            pack_transpose(halves, &ix, v);
#pragma GCC unroll 16
            for (size_t j = 0; j < 16; j++)
                _mm512_storeu_si512(o + 32 * j, v[j]);
        }
        for (size_t k = nv; k < n; k += halves ? 1 : 2)
            for (size_t r = 0; r < KERNELS_PACK_ROWS; r++) {
                *o++ = src[r * n + k];
                if (!halves) *o++ = src[r * n + k + 1];
            }
    }
}

/* F16: element k of row r at [k][r]. */
void kernels__avx512_pack_f16(const void *w, size_t ws, size_t nr, void *out)
{
    pack_16bit(1, w, ws, nr, out);
}

/* BF16: element k of row r at [k / 2][r][k % 2]. */
void kernels__avx512_pack_bf16(const void *w, size_t ws, size_t nr, void *out)
{
    pack_16bit(0, w, ws, nr, out);
}

/*
 * Row r of a packed F16 group: half k is at k * 16 + r, one per 32 bytes.
 * Sixteen of them per gather of the dword that holds the half (the pair at
 * r & ~1, so no read leaves the group), shifted and narrowed.
 */
void kernels__avx512_unpack_f16(const void *group, size_t ws, size_t r, void *row)
{
    const uint16_t *in = group;
    uint16_t *dst = row;
    size_t n = ws / sizeof(uint16_t), k = 0;
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(KERNELS_PACK_ROWS * 2));
    const __m512i shift = _mm512_set1_epi32((int)(16 * (r & 1)));

    for (; k + 16 <= n; k += 16) {
        __m512i v = _mm512_i32gather_epi32(idx, in + k * KERNELS_PACK_ROWS + (r & ~(size_t)1), 1);

        _mm256_storeu_si256((__m256i *)(dst + k),
                            _mm512_cvtepi32_epi16(_mm512_srlv_epi32(v, shift)));
    }
    for (; k < n; k++)
        dst[k] = in[k * KERNELS_PACK_ROWS + r];
}

/* Row r of a packed BF16 group: pair p is the dword at p * 16 + r. */
void kernels__avx512_unpack_bf16(const void *group, size_t ws, size_t r, void *row)
{
    const uint16_t *in = group;
    uint16_t *dst = row;
    size_t n = ws / sizeof(uint16_t), k = 0;
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(KERNELS_PACK_ROWS * 4));

    for (; k + 32 <= n; k += 32)
        _mm512_storeu_si512(dst + k,
                            _mm512_i32gather_epi32(idx, in + k * KERNELS_PACK_ROWS + 2 * r, 1));
    for (; k < n; k += 2) {
        dst[k] = in[k * KERNELS_PACK_ROWS + 2 * r];
        dst[k + 1] = in[k * KERNELS_PACK_ROWS + 2 * r + 1];
    }
}

/* ======================= the gemm kernels ======================= */

/*
 * Register tiles: a tile computes G groups (1 or 2, i.e. 16 or 32 rows) x C
 * activation columns, with U independent accumulator sets taking turns over
 * consecutive k (U > 1 only for small tiles, whose single chains would be
 * latency-bound: decode and short batches). G * C * U <= TILE_ACCS
 * accumulators, each a 16-lane f32 vector holding the 16 rows of a group
 * for one column, stored at the end with no horizontal sum. G, C, U and PF
 * (prefetch) are compile-time constants at every call, so all loops over
 * them unroll.
 */
#define TILE_ACCS 24
/* Columns of the widest tile. */
#define TILE_COLS 16
/* F16 activations converted to f32 per chunk of this many elements. */
#define F16_KC    128
/* Software prefetch distance of the streaming (few-column) tiles. */
#define PF_AHEAD  4096
/* Tiles of up to this many columns prefetch (the larger ones reuse lines). */
#define PF_COLS   8

/* Accumulator slot of (accumulator set u, group g, column c). */
#define ACC(u, g, c) acc[((u) % U * G + (g)) * C + (c)]

INLINE void prefetch_lines(const void *p, size_t bytes)
{
    for (size_t off = 0; off < bytes; off += 64)
        _mm_prefetch((const char *)p + PF_AHEAD + off, _MM_HINT_T0);
}

/* Sums the U accumulator sets and stores the tile. */
INLINE void tile_store(const int G, const int C, const int U, __m512 *acc, float *y, size_t ys)
{
#pragma GCC unroll 32
    for (int g = 0; g < G; g++)
#pragma GCC unroll 32
        for (int c = 0; c < C; c++) {
            __m512 s = acc[g * C + c];

#pragma GCC unroll 32
            for (int u = 1; u < U; u++)
                s = _mm512_add_ps(s, acc[(u * G + g) * C + c]);
            _mm512_storeu_ps(y + (size_t)c * ys + (size_t)g * KERNELS_PACK_ROWS, s);
        }
}

/*
 * F16 tile: for each k, one vcvtph2ps of the 16 rows' halves per group and
 * G * C fmas against the activation element broadcast from xf, the tile's
 * columns converted to f32 once per chunk of F16_KC elements (the
 * accumulators stay in registers across chunks). pw is the first group,
 * the second one 16 * n elements on.
 */
INLINE void tile_f16(const int G, const int C, const int U, const int PF, size_t n,
                     const uint16_t *pw, const uint8_t *x, size_t xs, float *y, size_t ys)
{
    float xf[TILE_COLS * F16_KC] __attribute__((aligned(64)));
    const size_t gs = KERNELS_PACK_ROWS * n;
    __m512 acc[TILE_ACCS];

#pragma GCC unroll 32
    for (int i = 0; i < G * C * U; i++)
        acc[i] = _mm512_setzero_ps();
    for (size_t k0 = 0; k0 < n; k0 += F16_KC) {
        size_t kc = n - k0 < F16_KC ? n - k0 : F16_KC;
        const uint16_t *p = pw + k0 * KERNELS_PACK_ROWS;

#pragma GCC unroll 32
        for (int c = 0; c < C; c++) {
            const uint16_t *xc = (const uint16_t *)(x + (size_t)c * xs) + k0;

            for (size_t k = 0; k < kc; k += 16)
                _mm512_store_ps(xf + c * F16_KC + k,
                                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(xc + k))));
        }
        for (size_t k = 0; k < kc; k += 4, p += 4 * KERNELS_PACK_ROWS) {
            if (PF) {
#pragma GCC unroll 32
                for (int g = 0; g < G; g++)
                    prefetch_lines(p + g * gs, 4 * KERNELS_PACK_ROWS * sizeof(uint16_t));
            }
            const float *xk = xf + k;

#pragma GCC unroll 32
            for (int u = 0; u < 4; u++) {
                __m512 wv[2];

#pragma GCC unroll 32
                for (int g = 0; g < G; g++)
                    wv[g] = _mm512_cvtph_ps(_mm256_loadu_si256(
                        (const __m256i *)(p + g * gs + (size_t)u * KERNELS_PACK_ROWS)));
#pragma GCC unroll 32
                for (int c = 0; c < C; c++) {
                    __m512 xb = _mm512_set1_ps(xk[c * F16_KC + u]);

#pragma GCC unroll 32
                    for (int g = 0; g < G; g++)
                        ACC(u, g, c) = _mm512_fmadd_ps(wv[g], xb, ACC(u, g, c));
                }
            }
        }
    }
    tile_store(G, C, U, acc, y, ys);
}

/*
 * BF16 tile: per pair of elements one 512-bit load of the 16 rows' pairs
 * per group and G * C vdpbf16ps against the activation pair (4 bytes)
 * broadcast straight from x: no conversion, two products per lane.
 */
INLINE void tile_bf16(const int G, const int C, const int U, const int PF, size_t n,
                      const uint16_t *pw, const uint8_t *x, size_t xs, float *y, size_t ys)
{
    const size_t gs = KERNELS_PACK_ROWS * n;
    const uint16_t *p = pw;
    __m512 acc[TILE_ACCS];

#pragma GCC unroll 32
    for (int i = 0; i < G * C * U; i++)
        acc[i] = _mm512_setzero_ps();
    for (size_t k = 0; k < n; k += 8, p += 8 * KERNELS_PACK_ROWS) {
        if (PF) {
#pragma GCC unroll 32
            for (int g = 0; g < G; g++)
                prefetch_lines(p + g * gs, 8 * KERNELS_PACK_ROWS * sizeof(uint16_t));
        }
#pragma GCC unroll 32
        for (int u = 0; u < 4; u++) {
            __m512i wv[2];

#pragma GCC unroll 32
            for (int g = 0; g < G; g++)
                wv[g] = _mm512_loadu_si512(p + g * gs + (size_t)u * 2 * KERNELS_PACK_ROWS);
#pragma GCC unroll 32
            for (int c = 0; c < C; c++) {
                int32_t pair;

                memcpy(&pair, x + (size_t)c * xs + (k + 2 * (size_t)u) * sizeof(uint16_t),
                       sizeof(pair));
#pragma GCC unroll 32
                for (int g = 0; g < G; g++)
                    ACC(u, g, c) = _mm512_dpbf16_ps(ACC(u, g, c), (__m512bh)wv[g],
                                                    (__m512bh)_mm512_set1_epi32(pair));
            }
        }
    }
    tile_store(G, C, U, acc, y, ys);
}

/* Tile shapes: accumulator sets by tile size, prefetch for 1-2 columns. */
#define TILE_U(G, C) ((G) * (C) >= 8 ? 1 : (G) * (C) >= 4 ? 2 : 4)
#define TILE(T, G, C, c0) \
    tile_##T(G, C, TILE_U(G, C), (C) <= PF_COLS, n, pw, xb + (c0)*xs, xs, y + (c0)*ys + g, ys)

/*
 * The packed gemm of type T (f16 or bf16): rows in pairs of groups (one
 * group at an odd end) and columns in tiles of 12 (16 for a single group),
 * then tails of 8/4/2/1 columns.
 */
#define DEFINE_GEMM_PACKED(T)                                                                      \
    void kernels__avx512_gemm_packed_##T(size_t n, const void *w, size_t ws, size_t nr,            \
                                         const void *x, size_t xs, size_t nc, float *y, size_t ys) \
    {                                                                                              \
        const uint8_t *xb = x;                                                                     \
                                                                                                   \
        for (size_t g = 0; g < nr;) {                                                              \
            const uint16_t *pw = (const uint16_t *)((const uint8_t *)w + g * ws);                  \
            size_t c = 0;                                                                          \
                                                                                                   \
            if (nr - g >= 2 * KERNELS_PACK_ROWS) {                                                 \
                for (; c + 12 <= nc; c += 12)                                                      \
                    TILE(T, 2, 12, c);                                                             \
                if (c + 8 <= nc) TILE(T, 2, 8, c), c += 8;                                         \
                if (c + 4 <= nc) TILE(T, 2, 4, c), c += 4;                                         \
                if (c + 2 <= nc) TILE(T, 2, 2, c), c += 2;                                         \
                if (c < nc) TILE(T, 2, 1, c);                                                      \
                g += 2 * KERNELS_PACK_ROWS;                                                        \
                continue;                                                                          \
            }                                                                                      \
            for (; c + 16 <= nc; c += 16)                                                          \
                TILE(T, 1, 16, c);                                                                 \
            if (c + 8 <= nc) TILE(T, 1, 8, c), c += 8;                                             \
            if (c + 4 <= nc) TILE(T, 1, 4, c), c += 4;                                             \
            if (c + 2 <= nc) TILE(T, 1, 2, c), c += 2;                                             \
            if (c < nc) TILE(T, 1, 1, c);                                                          \
            g += KERNELS_PACK_ROWS;                                                                \
        }                                                                                          \
    }

DEFINE_GEMM_PACKED(f16)
DEFINE_GEMM_PACKED(bf16)
