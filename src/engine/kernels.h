/*
 * kernels.h - the compute kernels and their run-time selection.
 *
 * One table of function pointers per instruction set: kernels_scalar.c is the
 * reference every other must match (tests/unit/engine/test_kernels.c),
 * kernels_avx2.c and kernels_avx512.c are compiled with their own -m flags and
 * only ever called after CPUID (cpu.c) says the CPU and the OS support them,
 * so one binary runs on any x86-64. SLM_CPU=scalar|avx2|avx512 forces a path
 * (a path the CPU lacks is refused with a message, falling back to the best
 * available).
 *
 * Matrix products pair each weight type with an activation type (ggml's
 * vec_dot_type): activations are converted once per row with from_float and
 * then dotted with many weight rows.
 *   F32 -> F32, F16 -> F16, BF16 -> BF16, Q8_0, Q4_0 and Q5_0 -> Q8_0,
 *   Q5_1 -> Q8_1,
 *   Q4_K, Q5_K and Q6_K -> Q8_K.
 *
 * Thread safety: the tables are immutable; kernels are reentrant.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/quant.h"

struct cpu_features {
    bool sse42, avx, avx2, fma, f16c, bmi2;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16, avx512vbmi;
    bool avx_vnni;
};

/* Detects the CPU's and the OS's support (XGETBV) once; returns borrowed. */
const struct cpu_features *cpu_features_get(void);

/*
 * s = sum over i < n of w[i] * x[i]; w of type t, x of kernels_vec_dot_type(t);
 * n a multiple of both block sizes.
 */
typedef void kernel_vec_dot_fn(size_t n, float *s, const void *w, const void *x);
/* Converts n floats to the activation type; n a multiple of its block size. */
typedef void kernel_from_float_fn(const float *x, void *y, size_t n);
/*
 * A tile of a matrix product: for r < n_rows and c < n_cols,
 *   y[c * y_stride + r] = dot(w + r * w_stride, x + c * x_stride) over n elements.
 * Strides are in bytes for w and x, in floats for y.
 */
typedef void kernel_gemm_fn(size_t n, const void *w, size_t w_stride, size_t n_rows, const void *x,
                            size_t x_stride, size_t n_cols, float *y, size_t y_stride);

/*
 * Repacking at load time (kernels_avx512.c): weight rows of type t rewritten
 * into groups of KERNELS_PACK_ROWS interleaved rows that take exactly the
 * bytes the rows took (so row r0, a multiple of the group, starts at
 * r0 * row_bytes in both layouts). pack converts n_rows (a multiple of the
 * group) rows of row_bytes bytes; gemm_packed is gemm over packed rows, with
 * w at a group start and n_rows a multiple of the group.
 */
#define KERNELS_PACK_ROWS 16
typedef void kernel_pack_fn(const void *w, size_t row_bytes, size_t n_rows, void *out);
/*
 * The inverse for one row: writes row r (< KERNELS_PACK_ROWS) of the packed
 * group at group back in the file layout (row_bytes bytes), so a packed
 * matrix that is also the token embedding table can be looked up.
 */
typedef void kernel_unpack_fn(const void *group, size_t row_bytes, size_t r, void *row);

struct kernel_ops {
    const char *name; /* "scalar", "avx2", "avx512" */
    kernel_vec_dot_fn *vec_dot[TENSOR_TYPE_COUNT];
    kernel_from_float_fn *from_float[TENSOR_TYPE_COUNT];
    kernel_gemm_fn *gemm[TENSOR_TYPE_COUNT];
    /* NULL for types this table does not repack. */
    kernel_pack_fn *pack[TENSOR_TYPE_COUNT];
    kernel_unpack_fn *unpack[TENSOR_TYPE_COUNT];
    kernel_gemm_fn *gemm_packed[TENSOR_TYPE_COUNT];
    /* f32 helpers for attention and the elementwise parts. */
    float (*dot_f32)(const float *a, const float *b, size_t n);
    /* dot of f32 a with f16 b (attention scores over an F16 KV cache) */
    float (*dot_f32_f16)(const float *a, const uint16_t *b, size_t n);
    /* y[i] += a * x[i] */
    void (*axpy_f32)(size_t n, float a, const float *x, float *y);
    /* y[i] += a * x[i], x in f16 (attention values from an F16 KV cache) */
    void (*axpy_f16)(size_t n, float a, const uint16_t *x, float *y);
    /*
     * Decode attention over an F16 KV cache, the way llama.cpp's flash
     * attention does it (so the rounding is the same): the query rounded to
     * F16, scores by dot_f16, the output accumulated in F16.
     * dot_f16: sum of a[i] * b[i], a and b F16, in the order of the table's
     * instruction set (every product is exact in F32).
     * scale_f16: y[i] = f16(y[i] * s).  mad_f16: y[i] = f16(fma(x[i], a, y[i])).
     */
    float (*dot_f16)(const uint16_t *a, const uint16_t *b, size_t n);
    void (*scale_f16)(size_t n, float s, uint16_t *y);
    void (*mad_f16)(size_t n, float a, const uint16_t *x, uint16_t *y);
    /*
     * Causal attention of nr query rows sharing one KV head, in F32 (prompt
     * processing): for r < nr,
     *   out[r] = sum over j < n[r] of softmax_j(q[r] . K[j] * scale) V[j],
     * K and V [n_max][hd] F16 rows; hd a multiple of 16, nr <= KERNELS_ATTN_ROWS;
     * work: kernels_attn_work_floats(hd) floats, 64-byte aligned. NULL in
     * tables without one (the caller then goes row by row with dot_f32_f16).
     */
    void (*attn_tile)(size_t hd, size_t nr, const float *const *q, float *const *out,
                      const int32_t *n, const uint16_t *K, const uint16_t *V, float scale,
                      float *work);
    /*
     * Decode attention of nr query heads that read one KV head over the same
     * n positions (n >= 1), each head's output the bits of model_decode.c's
     * one-head path (attend_f16, llama.cpp's one-row flash attention): q
     * rounded to F16; score j = dot_f16(q, K[j]) * scale; a per-position
     * online softmax with the C library's expf; the F16 accumulator scaled
     * by expf(old max - new max) on a new maximum and v * w added, each
     * rounded to F16; at the end times 1 / sum (left as is if the sum is
     * not > 0). K and V [n][hd] F16 rows; hd a multiple of 64,
     * nr <= KERNELS_DECODE_ROWS; work: kernels_decode_work_floats(hd)
     * floats, 64-byte aligned. NULL in tables without one (the caller then
     * goes head by head with dot_f16, scale_f16 and mad_f16).
     */
    void (*attn_decode)(size_t hd, size_t nr, const float *const *q, float *const *out, size_t n,
                        const uint16_t *K, const uint16_t *V, float scale, float *work);
    /*
     * SwiGLU in place: g[i] = g[i] / (1 + exp(-g[i])) * u[i], rounded the
     * way llama.cpp's CPU backend rounds it (its AVX-512 build): the first
     * n - n % 16 elements with the exp approximation of kernels__expf_poly,
     * the rest with the C library's expf. Every table gives the same bits.
     */
    void (*swiglu)(size_t n, float *g, const float *u);
    /* y[i] = f16(x[i]) and back, n elements */
    void (*f32_to_f16)(const float *x, uint16_t *y, size_t n);
    void (*f16_to_f32)(const uint16_t *x, float *y, size_t n);
};

/* Query rows per attn_tile call, and key positions per inner tile. */
#define KERNELS_ATTN_ROWS 64
#define KERNELS_ATTN_KV   64

/* Floats of scratch attn_tile needs for head dimension hd. */
static inline size_t kernels_attn_work_floats(size_t hd)
{
    return 2 * hd * KERNELS_ATTN_KV + KERNELS_ATTN_ROWS * (KERNELS_ATTN_KV + 2);
}

/* Query heads per attn_decode call, and positions per inner block. */
#define KERNELS_DECODE_ROWS 8
#define KERNELS_DECODE_KV   16

/* Floats of scratch attn_decode needs for head dimension hd. */
static inline size_t kernels_decode_work_floats(size_t hd)
{
    return (2 * KERNELS_DECODE_KV + 2 * KERNELS_DECODE_ROWS) * hd +
           2 * KERNELS_DECODE_ROWS * KERNELS_DECODE_KV;
}

/* Positions per score block of kernels_attend_f16, and its scratch floats. */
#define KERNELS_ATTEND_CHUNK 64
static inline size_t kernels_attend_f16_floats(size_t hd)
{
    return KERNELS_ATTEND_CHUNK + hd;
}

/*
 * Decode attention of one query head with table k's F16 helpers, the path
 * attn_decode reproduces for many heads at once (see there): q rounded to
 * F16; scores dot_f16(q, K[j]) * scale, KERNELS_ATTEND_CHUNK at a time; per
 * position the online softmax with the C library's expf, scale_f16 of the
 * F16 accumulator on a new maximum and mad_f16 of V[j]; at the end times
 * 1 / sum if the sum is > 0. work: kernels_attend_f16_floats(hd) floats.
 */
void kernels_attend_f16(const struct kernel_ops *k, size_t hd, const float *q, float *out, size_t n,
                        const uint16_t *K, const uint16_t *V, float scale, float *work);

/* The activation type weights of type t are multiplied with; COUNT if none. */
enum tensor_type kernels_vec_dot_type(enum tensor_type t);

/* The selected table (SLM_CPU honoured); returns borrowed, never NULL. */
const struct kernel_ops *kernels_get(void);
/* The table for name if this CPU can run it, else NULL. */
const struct kernel_ops *kernels_get_named(const char *name);

/* The tables (defined in kernels_*.c; callers use kernels_get). */
extern const struct kernel_ops kernels_scalar;
extern const struct kernel_ops kernels_avx2;
extern const struct kernel_ops kernels_avx512;
