/*
 * quant_types.c - the tensor type table and scalar f16/bf16 conversions.
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "engine/quant.h"

_Static_assert(sizeof(struct block_q8_0) == 34, "block_q8_0 layout");
_Static_assert(sizeof(struct block_q4_0) == 18, "block_q4_0 layout");
_Static_assert(sizeof(struct block_q5_0) == 22, "block_q5_0 layout");
_Static_assert(sizeof(struct block_q5_1) == 24, "block_q5_1 layout");
_Static_assert(sizeof(struct block_q8_1) == 36, "block_q8_1 layout");
_Static_assert(sizeof(struct block_q4_k) == 144, "block_q4_k layout");
_Static_assert(sizeof(struct block_q5_k) == 176, "block_q5_k layout");
_Static_assert(sizeof(struct block_q6_k) == 210, "block_q6_k layout");
_Static_assert(sizeof(struct block_q8_k) == 292, "block_q8_k layout");

/* Block sizes and bytes per block of every type GGUF files may name. */
static const struct tensor_type_traits traits[TENSOR_TYPE_COUNT] = {
    [TENSOR_TYPE_F32] = { "f32", 1, 4, true },
    [TENSOR_TYPE_F16] = { "f16", 1, 2, true },
    [TENSOR_TYPE_Q4_0] = { "q4_0", 32, 18, true },
    [TENSOR_TYPE_Q4_1] = { "q4_1", 32, 20, false },
    [TENSOR_TYPE_Q5_0] = { "q5_0", 32, 22, true },
    [TENSOR_TYPE_Q5_1] = { "q5_1", 32, 24, true },
    [TENSOR_TYPE_Q8_0] = { "q8_0", 32, 34, true },
    [TENSOR_TYPE_Q8_1] = { "q8_1", 32, 36, false },
    [TENSOR_TYPE_Q2_K] = { "q2_K", 256, 84, false },
    [TENSOR_TYPE_Q3_K] = { "q3_K", 256, 110, false },
    [TENSOR_TYPE_Q4_K] = { "q4_K", 256, 144, true },
    [TENSOR_TYPE_Q5_K] = { "q5_K", 256, 176, true },
    [TENSOR_TYPE_Q6_K] = { "q6_K", 256, 210, true },
    [TENSOR_TYPE_Q8_K] = { "q8_K", 256, 292, false },
    [TENSOR_TYPE_IQ2_XXS] = { "iq2_xxs", 256, 66, false },
    [TENSOR_TYPE_IQ2_XS] = { "iq2_xs", 256, 74, false },
    [TENSOR_TYPE_IQ3_XXS] = { "iq3_xxs", 256, 98, false },
    [TENSOR_TYPE_IQ1_S] = { "iq1_s", 256, 50, false },
    [TENSOR_TYPE_IQ4_NL] = { "iq4_nl", 32, 18, false },
    [TENSOR_TYPE_IQ3_S] = { "iq3_s", 256, 110, false },
    [TENSOR_TYPE_IQ2_S] = { "iq2_s", 256, 82, false },
    [TENSOR_TYPE_IQ4_XS] = { "iq4_xs", 256, 136, false },
    [TENSOR_TYPE_I8] = { "i8", 1, 1, false },
    [TENSOR_TYPE_I16] = { "i16", 1, 2, false },
    [TENSOR_TYPE_I32] = { "i32", 1, 4, false },
    [TENSOR_TYPE_I64] = { "i64", 1, 8, false },
    [TENSOR_TYPE_F64] = { "f64", 1, 8, false },
    [TENSOR_TYPE_IQ1_M] = { "iq1_m", 256, 56, false },
    [TENSOR_TYPE_BF16] = { "bf16", 1, 2, true },
    [TENSOR_TYPE_TQ1_0] = { "tq1_0", 256, 54, false },
    [TENSOR_TYPE_TQ2_0] = { "tq2_0", 256, 66, false },
    [TENSOR_TYPE_MXFP4] = { "mxfp4", 32, 17, false },
};

const struct tensor_type_traits *tensor_type_get(uint32_t t)
{
    if (t >= TENSOR_TYPE_COUNT || traits[t].name == NULL) return NULL;
    return &traits[t];
}

const char *tensor_type_name(uint32_t t)
{
    const struct tensor_type_traits *tt = tensor_type_get(t);

    return tt != NULL ? tt->name : "unknown";
}

int tensor_type_from_name(const char *name, enum tensor_type *out)
{
    for (uint32_t t = 0; t < TENSOR_TYPE_COUNT; t++) {
        if (traits[t].name != NULL && strcasecmp(traits[t].name, name) == 0) {
            *out = (enum tensor_type)t;
            return 0;
        }
    }
    return SLM_ENOTFOUND;
}

int tensor_row_size(enum tensor_type t, uint64_t n, uint64_t *out)
{
    const struct tensor_type_traits *tt = tensor_type_get((uint32_t)t);

    if (tt == NULL || n % tt->block_size != 0) return SLM_EINVAL;
    if (__builtin_mul_overflow(n / tt->block_size, (uint64_t)tt->type_size, out)) return SLM_ERANGE;
    return 0;
}

/* IEEE binary16 -> binary32, exact for every input including subnormals; NaN quiet. */
float fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    float f;

    if (exp == 0x1f) {
        /* Infinity, or NaN made quiet as vcvtph2ps does (payload kept). */
        bits = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        /* Subnormal: value is mant * 2^-24. */
        f = (float)mant * 0x1p-24f;
        return sign ? -f : f;
    }
    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* binary32 -> binary16 with round-to-nearest-even; overflow gives infinity. */
uint16_t f32_to_fp16(float f)
{
    uint32_t bits, sign, exp, mant;
    uint16_t h;

    memcpy(&bits, &f, sizeof(bits));
    sign = (bits >> 16) & 0x8000;
    exp = (bits >> 23) & 0xff;
    mant = bits & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant != 0 ? 0x200 | (mant >> 13) : 0));
    if (exp > 142) return (uint16_t)(sign | 0x7c00);
    if (exp < 113) {
        /* Result is subnormal or zero: shift the implicit-1 mantissa. */
        uint32_t shift, m, half, rest;

        if (exp < 102) return (uint16_t)sign;
        m = mant | 0x800000;
        shift = 126 - exp;
        h = (uint16_t)(m >> shift);
        rest = m & ((1u << shift) - 1);
        half = 1u << (shift - 1);
        if (rest > half || (rest == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    h = (uint16_t)(((exp - 112) << 10) | (mant >> 13));
    if ((mant & 0x1fff) > 0x1000 || ((mant & 0x1fff) == 0x1000 && (h & 1)))
        h++; /* may carry into the exponent, which is the correct rounding */
    return (uint16_t)(sign | h);
}

float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;

    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* binary32 -> bfloat16, round-to-nearest-even, NaN kept quiet (as ggml). */
uint16_t f32_to_bf16(float f)
{
    uint32_t bits;

    memcpy(&bits, &f, sizeof(bits));
    if ((bits & 0x7fffffff) > 0x7f800000) return (uint16_t)((bits >> 16) | 64);
    return (uint16_t)((bits + (0x7fff + ((bits >> 16) & 1))) >> 16);
}
