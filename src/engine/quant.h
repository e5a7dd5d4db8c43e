/*
 * quant.h - tensor element types and their block layouts (GGUF/ggml).
 *
 * A GGUF tensor stores rows of ne[0] elements. Quantized types pack a row into
 * blocks of block_size elements and type_size bytes each; ne[0] must be a
 * multiple of block_size. The numbering is the file format's (ggml_type) and
 * never changes; numbers that ggml retired are not valid types.
 *
 * Block layouts we compute with (all little-endian, packed, no padding):
 *   Q8_0  (32 el, 34 B):  f16 d; int8 qs[32];                x = d * q
 *   Q4_0  (32 el, 18 B):  f16 d; u8 qs[16];                  x = d * (q - 8);
 *                         element j < 16 is qs[j] & 15, element j + 16 is qs[j] >> 4
 *   Q5_0  (32 el, 22 B):  f16 d; u8 qh[4]; u8 qs[16];        x = d * (q - 16);
 *                         nibbles as Q4_0, bit 4 of element j is bit j of the
 *                         little-endian u32 qh
 *   Q5_1  (32 el, 24 B):  f16 d; f16 m; u8 qh[4]; u8 qs[16]; x = d * q + m (q as Q5_0)
 *   Q8_1  (32 el, 36 B):  f16 d; f16 s; int8 qs[32];         x = d * q, s = d * sum(q)
 *   Q4_K (256 el, 144 B): f16 d; f16 dmin; u8 scales[12]; u8 qs[128];
 *                         8 sub-blocks of 32 with 6-bit scale and min packed in scales[]:
 *                         sub-block j < 4: sc = scales[j] & 63, m = scales[j + 4] & 63;
 *                         j >= 4: sc = (scales[j + 4] & 15) | (scales[j - 4] >> 6) << 4,
 *                                 m = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4;
 *                         x = d * sc * q - dmin * m. Elements 64i .. 64i + 31 are the
 *                         low nibbles of qs[32i .. 32i + 31], 64i + 32 .. 64i + 63 the
 *                         high nibbles.
 *   Q5_K (256 el, 176 B): f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128];
 *                         as Q4_K plus bit 4: element 64i + l (l < 32) takes bit 2i of
 *                         qh[l], element 64i + 32 + l takes bit 2i + 1
 *   Q6_K (256 el, 210 B): u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d;
 *                         x = d * scales[e / 16] * (q - 32), q 6 bits: in half h
 *                         (128 elements) and l < 32, elements 128h + 32k + l for
 *                         k = 0..3 take low bits ql[64h + l] & 15, ql[64h + 32 + l] & 15,
 *                         ql[64h + l] >> 4, ql[64h + 32 + l] >> 4 and high bits
 *                         (qh[32h + l] >> 2k) & 3
 *   Q8_K (256 el, 292 B): f32 d; int8 qs[256]; int16 bsums[16] (activations only;
 *                         bsums[g] is the sum of qs[16g .. 16g + 15])
 * F32, F16 (IEEE half), BF16 (upper 16 bits of an f32) have block size 1.
 *
 * Non-finite input (E02): quant_quantize_row encodes a block holding a NaN or
 * an infinity as a block whose scales are NaN (it decodes to NaN), finishes the
 * row and returns SLM_ERANGE; F16 and BF16 keep NaN and infinities as such.
 * Subnormal input is ordinary input.
 *
 * Thread safety: all functions are pure.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

enum tensor_type {
    TENSOR_TYPE_F32 = 0,
    TENSOR_TYPE_F16 = 1,
    TENSOR_TYPE_Q4_0 = 2,
    TENSOR_TYPE_Q4_1 = 3,
    TENSOR_TYPE_Q5_0 = 6,
    TENSOR_TYPE_Q5_1 = 7,
    TENSOR_TYPE_Q8_0 = 8,
    TENSOR_TYPE_Q8_1 = 9,
    TENSOR_TYPE_Q2_K = 10,
    TENSOR_TYPE_Q3_K = 11,
    TENSOR_TYPE_Q4_K = 12,
    TENSOR_TYPE_Q5_K = 13,
    TENSOR_TYPE_Q6_K = 14,
    TENSOR_TYPE_Q8_K = 15,
    TENSOR_TYPE_IQ2_XXS = 16,
    TENSOR_TYPE_IQ2_XS = 17,
    TENSOR_TYPE_IQ3_XXS = 18,
    TENSOR_TYPE_IQ1_S = 19,
    TENSOR_TYPE_IQ4_NL = 20,
    TENSOR_TYPE_IQ3_S = 21,
    TENSOR_TYPE_IQ2_S = 22,
    TENSOR_TYPE_IQ4_XS = 23,
    TENSOR_TYPE_I8 = 24,
    TENSOR_TYPE_I16 = 25,
    TENSOR_TYPE_I32 = 26,
    TENSOR_TYPE_I64 = 27,
    TENSOR_TYPE_F64 = 28,
    TENSOR_TYPE_IQ1_M = 29,
    TENSOR_TYPE_BF16 = 30,
    TENSOR_TYPE_TQ1_0 = 34,
    TENSOR_TYPE_TQ2_0 = 35,
    TENSOR_TYPE_MXFP4 = 39,
    TENSOR_TYPE_COUNT = 40
};

#define QK8_0        32
#define QK8_1        32
#define QK4_0        32
#define QK5_0        32
#define QK5_1        32
#define QK_K         256
#define K_SCALE_SIZE 12

/* The block structs (sizes checked by _Static_assert in quant_types.c). */
struct block_q8_0 {
    uint16_t d;
    int8_t qs[QK8_0];
};

struct block_q4_0 {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
};

struct block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
};

struct block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
};

struct block_q8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[QK8_1];
};

struct block_q4_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
};

struct block_q5_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};

struct block_q6_k {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
};

struct block_q8_k {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};

struct tensor_type_traits {
    const char *name; /* "q4_K", as llama.cpp prints it; NULL: not a type */
    uint32_t block_size;
    uint32_t type_size; /* bytes per block */
    bool supported;     /* this build can compute with it */
};

/* Returns the traits of t, or NULL if t is not a valid type number. */
const struct tensor_type_traits *tensor_type_get(uint32_t t);
/* Returns the name of t ("f32", "q4_K", ...) or "unknown". */
const char *tensor_type_name(uint32_t t);
/* Parses a name ("q8_0", "Q8_0", "q4_k", "bf16"): 0 or SLM_ENOTFOUND. */
SLM_NODISCARD int tensor_type_from_name(const char *name, enum tensor_type *out);
/*
 * Bytes of one row of n elements of type t: 0 on success, SLM_EINVAL if t is
 * invalid or n is not a multiple of the block size, SLM_ERANGE on overflow.
 */
SLM_NODISCARD int tensor_row_size(enum tensor_type t, uint64_t n, uint64_t *out);

/*
 * Scalar conversions (exact IEEE round-to-nearest-even; NaN stays NaN, made
 * quiet, payload kept: the results of F16C's vcvtph2ps/vcvtps2ph).
 */
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/*
 * Row conversion between f32 and type t (implemented in quant.c), for F32,
 * F16, BF16, Q4_0, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K, Q6_K and Q8_K.
 * quant_dequantize_row: y[0..n) = x decoded; n a multiple of the block size.
 * quant_quantize_row: the reference quantizer, bit-identical to llama.cpp's
 * imatrix-free quantize_row_*_ref (what llama-quantize writes without
 * --imatrix) for finite input. Both return SLM_EINVAL if n is not a multiple
 * of the block size, SLM_EUNSUPPORTED for other types; quant_quantize_row
 * returns SLM_ERANGE after converting a row that held NaN or infinity (see
 * above). x and y are borrowed and must not overlap.
 */
SLM_NODISCARD int quant_dequantize_row(enum tensor_type t, const void *x, float *y, size_t n);
SLM_NODISCARD int quant_quantize_row(enum tensor_type t, const float *x, void *y, size_t n);
/* True if quant_quantize_row can write type t. */
bool quant_can_quantize(enum tensor_type t);
/* f16 and bf16 rows (scalar, exact as fp16_to_f32 and friends). */
void quant_f32_to_f16_row(const float *x, uint16_t *y, size_t n);
void quant_f16_to_f32_row(const uint16_t *x, float *y, size_t n);
