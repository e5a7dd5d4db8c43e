/*
 * kernels.c - picks the kernel table for this CPU, once.
 *
 * Order of preference: avx512 (F, BW, VL, DQ, VNNI, BF16, VBMI: every flag
 * kernels_avx512.c is compiled with), avx2 (AVX2, FMA, F16C, BMI2), scalar.
 * SLM_CPU=scalar|avx2|avx512 asks for one path; a path this CPU cannot run,
 * or an unknown name, gets a warning on stderr and the best available one.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels_int.h"

static bool can_avx2(const struct cpu_features *f)
{
    return f->avx && f->avx2 && f->fma && f->f16c && f->bmi2;
}

static bool can_avx512(const struct cpu_features *f)
{
    return can_avx2(f) && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq &&
           f->avx512vnni && f->avx512bf16 && f->avx512vbmi;
}

/*
 * Returns the table called name if this CPU can run it, NULL otherwise
 * (also for unknown names). Returns borrowed (static storage).
 */
const struct kernel_ops *kernels_get_named(const char *name)
{
    const struct cpu_features *f = cpu_features_get();

    if (name == NULL) return NULL;
    if (strcmp(name, "scalar") == 0) return &kernels_scalar;
    if (strcmp(name, "avx2") == 0) return can_avx2(f) ? &kernels_avx2 : NULL;
    if (strcmp(name, "avx512") == 0) return can_avx512(f) ? &kernels_avx512 : NULL;
    return NULL;
}

static const struct kernel_ops *best(void)
{
    const struct kernel_ops *k = kernels_get_named("avx512");

    if (k == NULL) k = kernels_get_named("avx2");
    return k != NULL ? k : &kernels_scalar;
}

static const struct kernel_ops *selected;
static pthread_once_t selected_once = PTHREAD_ONCE_INIT;

static void select_once(void)
{
    const char *want = getenv("SLM_CPU");

    selected = best();
    if (want == NULL || want[0] == '\0') return;
    if (strcmp(want, "scalar") != 0 && strcmp(want, "avx2") != 0 && strcmp(want, "avx512") != 0) {
        fprintf(stderr, "slm: warning: SLM_CPU='%s' is not one of scalar, avx2, avx512; using %s\n",
                want, selected->name);
        return;
    }
    if (kernels_get_named(want) == NULL) {
        fprintf(stderr,
                "slm: warning: SLM_CPU=%s: this CPU (or OS) does not support it; using %s\n", want,
                selected->name);
        return;
    }
    selected = kernels_get_named(want);
}

/*
 * Returns the kernel table for this process: chosen on the first call
 * (thread-safe) from the CPU's features and SLM_CPU. Returns borrowed, never
 * NULL.
 */
const struct kernel_ops *kernels_get(void)
{
    (void)pthread_once(&selected_once, select_once);
    return selected;
}

/*
 * Returns the activation type that weights of type t are dotted with (the
 * argument of from_float and the x of vec_dot/gemm), or TENSOR_TYPE_COUNT if
 * no kernel takes t as weights.
 */
enum tensor_type kernels_vec_dot_type(enum tensor_type t)
{
    switch (t) {
    case TENSOR_TYPE_F32:
    case TENSOR_TYPE_F16:
    case TENSOR_TYPE_BF16:
        return t;
    case TENSOR_TYPE_Q8_0:
    case TENSOR_TYPE_Q4_0:
    case TENSOR_TYPE_Q5_0:
        return TENSOR_TYPE_Q8_0;
    case TENSOR_TYPE_Q5_1:
        return TENSOR_TYPE_Q8_1;
    case TENSOR_TYPE_Q4_K:
    case TENSOR_TYPE_Q5_K:
    case TENSOR_TYPE_Q6_K:
        return TENSOR_TYPE_Q8_K;
    default:
        return TENSOR_TYPE_COUNT;
    }
}

void kernels_attend_f16(const struct kernel_ops *k, size_t hd, const float *q, float *out, size_t n,
                        const uint16_t *K, const uint16_t *V, float scale, float *work)
{
    float *scores = work, mx = -INFINITY, l = 0.0f;
    uint16_t *q16 = (uint16_t *)(scores + KERNELS_ATTEND_CHUNK); /* q rounded to F16 [hd] */
    uint16_t *acc = q16 + hd;                                    /* the F16 accumulator [hd] */

    k->f32_to_f16(q, q16, hd);
    memset(acc, 0, hd * sizeof(uint16_t));
    for (size_t j0 = 0; j0 < n; j0 += KERNELS_ATTEND_CHUNK) {
        size_t cnt = n - j0 < KERNELS_ATTEND_CHUNK ? n - j0 : KERNELS_ATTEND_CHUNK;

        for (size_t j = 0; j < cnt; j++)
            scores[j] = k->dot_f16(q16, K + (j0 + j) * hd, hd) * scale;
        for (size_t j = 0; j < cnt; j++) {
            float s = scores[j], ms = 1.0f, w = 1.0f;

            if (s > mx) {
                ms = expf(mx - s); /* 0 on the first position */
                mx = s;
                k->scale_f16(hd, ms, acc);
            } else {
                w = expf(s - mx);
            }
            k->mad_f16(hd, w, V + (j0 + j) * hd, acc);
            l = fmaf(l, ms, w);
        }
    }
    k->f16_to_f32(acc, out, hd);
    if (l > 0.0f) {
        float inv = 1.0f / l;

        for (size_t i = 0; i < hd; i++)
            out[i] *= inv;
    }
}
