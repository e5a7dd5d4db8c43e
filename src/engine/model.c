/*
 * model.c - loading llama-family models: hyper-parameters, tensors, checks.
 *
 * Every key is read with its type checked, every hyper-parameter is checked
 * against core/limits.h and against the others (G12), and every tensor the
 * forward pass will touch is looked up by name and checked for its exact
 * shape and a type the kernels can compute with (G14) before the model is
 * handed out; a tensor the forward pass would not use is refused too, so a
 * file with, say, a fused attn_qkv or an FFN bias we would silently ignore
 * cannot produce wrong text. Key names and the YaRN/temperature math follow
 * llama.cpp (src/llama-model.cpp, src/llama-context.cpp, src/models/).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "engine/kernels.h"
#include "engine/model_int.h"
#include "engine/quant.h"

/* Feed-forward width: the largest llama-family models use ~ 53,248. */
#define MODEL_MAX_FF (1u << 20)

enum arch_id { ARCH_LLAMA, ARCH_MISTRAL3, ARCH_QWEN2, ARCH_QWEN3 };

static const char *const arch_names[] = { "llama", "mistral3", "qwen2", "qwen3" };

/* ---- keys ---- */

/* Formats "<arch>.<suffix>" into buf. */
static const char *akey(char *buf, size_t cap, const struct model_hparams *hp, const char *suffix)
{
    snprintf(buf, cap, "%s.%s", hp->arch, suffix);
    return buf;
}

/* Reads a required u32 key; SLM_EFORMAT naming it if absent. */
static int key_u32_req(const struct gguf_file *f, const struct model_hparams *hp,
                       const char *suffix, uint32_t *out, struct slm_diag *d)
{
    char k[96];
    int rc = gguf_get_u32(f, akey(k, sizeof(k), hp, suffix), out, d);

    if (rc == SLM_ENOTFOUND) return slm_diag_set(d, SLM_EFORMAT, "missing key %s", k);
    return rc;
}

/* Reads an optional u32 key (out keeps its default when absent). */
static int key_u32_opt(const struct gguf_file *f, const struct model_hparams *hp,
                       const char *suffix, uint32_t *out, struct slm_diag *d)
{
    char k[96];
    int rc = gguf_get_u32(f, akey(k, sizeof(k), hp, suffix), out, d);

    return rc == SLM_ENOTFOUND ? 0 : rc;
}

/* Reads an optional f32 key and checks it is finite. */
static int key_f32_opt(const struct gguf_file *f, const struct model_hparams *hp,
                       const char *suffix, float *out, struct slm_diag *d)
{
    char k[96];
    float v;
    int rc = gguf_get_f32(f, akey(k, sizeof(k), hp, suffix), &v, d);

    if (rc == SLM_ENOTFOUND) return 0;
    if (rc < 0) return rc;
    if (!isfinite(v))
        return slm_diag_set(d, SLM_EFORMAT, "key %s: value %g is not finite", k, (double)v);
    *out = v;
    return 0;
}

/* Reads general.architecture and checks it is one we run. */
static int read_arch(const struct gguf_file *f, struct model_hparams *hp, enum arch_id *arch,
                     struct slm_diag *d)
{
    struct gguf_str s;
    int rc = gguf_get_str(f, "general.architecture", &s, d);

    if (rc == SLM_ENOTFOUND)
        return slm_diag_set(d, SLM_EFORMAT, "missing key general.architecture");
    if (rc < 0) return rc;
    for (size_t i = 0; i < SLM_ARRAY_LEN(arch_names); i++) {
        if (s.len == strlen(arch_names[i]) && memcmp(s.ptr, arch_names[i], s.len) == 0) {
            *arch = (enum arch_id)i;
            snprintf(hp->arch, sizeof(hp->arch), "%s", arch_names[i]);
            return 0;
        }
    }
    return slm_diag_set(d, SLM_EUNSUPPORTED,
                        "unsupported architecture '%.*s' (supported: llama, mistral3, qwen2, "
                        "qwen3)",
                        (int)(s.len > 64 ? 64 : s.len), s.ptr);
}

/* Reads rope.scaling.type: none (default when absent is linear, as llama.cpp). */
static int read_rope_scaling(const struct gguf_file *f, struct model_hparams *hp,
                             struct slm_diag *d)
{
    char k[96];
    struct gguf_str s;
    int rc = gguf_get_str(f, akey(k, sizeof(k), hp, "rope.scaling.type"), &s, d);

    hp->rope_scaling = ROPE_SCALING_LINEAR;
    if (rc == SLM_ENOTFOUND) return 0;
    if (rc < 0) return rc;
    if (s.len == 4 && memcmp(s.ptr, "none", 4) == 0)
        hp->rope_scaling = ROPE_SCALING_NONE;
    else if (s.len == 6 && memcmp(s.ptr, "linear", 6) == 0)
        hp->rope_scaling = ROPE_SCALING_LINEAR;
    else if (s.len == 4 && memcmp(s.ptr, "yarn", 4) == 0)
        hp->rope_scaling = ROPE_SCALING_YARN;
    else
        return slm_diag_set(d, SLM_EUNSUPPORTED,
                            "key %s: unsupported rope scaling '%.*s' (supported: none, linear, "
                            "yarn)",
                            k, (int)(s.len > 32 ? 32 : s.len), s.ptr);
    return 0;
}

/*
 * YaRN magnitude, as llama.cpp's context setup plus ggml's rope_yarn compute
 * it: mscale(s, m) = 1 + 0.1 m ln s for s > 1, else 1.
 */
static float yarn_get_mscale(float scale, float m)
{
    return scale <= 1.0f ? 1.0f : 0.1f * m * logf(scale) + 1.0f;
}

/* ggml_rope_yarn_corr_dim: the dimension whose wavelength fits n_rot turns. */
static float yarn_corr_dim(uint32_t n_dims, uint32_t n_ctx_orig, float n_rot, float base)
{
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2.0f * (float)M_PI)) /
           (2.0f * logf(base));
}

/* Derives the RoPE constants the forward pass uses from the hyper-parameters. */
static void rope_derive(struct model *m)
{
    struct model_hparams *hp = &m->hp;
    float factor = hp->rope_scale;
    float attn;

    m->rope_freq_scale = 1.0f;
    if ((hp->rope_scaling == ROPE_SCALING_LINEAR || hp->rope_scaling == ROPE_SCALING_YARN) &&
        factor != 0.0f)
        m->rope_freq_scale = 1.0f / factor;
    if (hp->yarn_ext_factor < 0.0f)
        hp->yarn_ext_factor = hp->rope_scaling == ROPE_SCALING_YARN ? 1.0f : 0.0f;
    attn = hp->yarn_attn_factor;
    if (hp->yarn_ext_factor != 0.0f) {
        float s = 1.0f / m->rope_freq_scale;

        if (hp->yarn_log_mul != 0.0f)
            attn = yarn_get_mscale(s, 1.0f) / yarn_get_mscale(s, hp->yarn_log_mul);
        else
            attn = yarn_get_mscale(s, 1.0f);
        /* llama.cpp cancels the factor rope_yarn multiplies in again below. */
        attn *= 1.0f / (1.0f + 0.1f * logf(s));
    }
    attn *= hp->rope_attn_factor;
    m->rope_mscale = attn;
    if (hp->yarn_ext_factor != 0.0f)
        m->rope_mscale *= 1.0f + 0.1f * logf(1.0f / m->rope_freq_scale);
    hp->yarn_attn_factor = m->rope_mscale;
    m->yarn_corr[0] = 0.0f;
    m->yarn_corr[1] = 0.0f;
    if (hp->n_rot > 0) {
        float lo = floorf(
            yarn_corr_dim(hp->n_rot, hp->rope_orig_ctx, hp->yarn_beta_fast, hp->rope_freq_base));
        float hi = ceilf(
            yarn_corr_dim(hp->n_rot, hp->rope_orig_ctx, hp->yarn_beta_slow, hp->rope_freq_base));
        m->yarn_corr[0] = lo > 0.0f ? lo : 0.0f;
        m->yarn_corr[1] = hi < (float)(hp->n_rot - 1) ? hi : (float)(hp->n_rot - 1);
    }
}

/* Reads and validates every hyper-parameter (G12). */
static int read_hparams(const struct gguf_file *f, enum arch_id arch, struct model_hparams *hp,
                        struct slm_diag *d)
{
    char k[96];
    uint32_t n_expert = 0, key_len, val_len;
    float scale_linear = 0.0f;
    int rc;

    if ((rc = key_u32_req(f, hp, "block_count", &hp->n_layer, d)) < 0 ||
        (rc = key_u32_req(f, hp, "context_length", &hp->n_ctx_train, d)) < 0 ||
        (rc = key_u32_req(f, hp, "embedding_length", &hp->n_embd, d)) < 0 ||
        (rc = key_u32_req(f, hp, "feed_forward_length", &hp->n_ff, d)) < 0 ||
        (rc = key_u32_req(f, hp, "attention.head_count", &hp->n_head, d)) < 0)
        return rc;
    if ((rc = key_u32_opt(f, hp, "expert_count", &n_expert, d)) < 0) return rc;
    if (n_expert > 0)
        return slm_diag_set(d, SLM_EUNSUPPORTED,
                            "key %s.expert_count = %u: mixture-of-experts models are not "
                            "supported",
                            hp->arch, n_expert);
    if (hp->n_layer == 0 || hp->n_layer > SLM_LIMIT_LAYERS)
        return slm_diag_set(d, SLM_EFORMAT, "key %s.block_count = %u outside 1..%u", hp->arch,
                            hp->n_layer, SLM_LIMIT_LAYERS);
    if (hp->n_ctx_train == 0 || hp->n_ctx_train > SLM_LIMIT_CONTEXT)
        return slm_diag_set(d, SLM_EFORMAT, "key %s.context_length = %u outside 1..%u", hp->arch,
                            hp->n_ctx_train, SLM_LIMIT_CONTEXT);
    if (hp->n_embd == 0 || hp->n_embd > SLM_LIMIT_EMBD)
        return slm_diag_set(d, SLM_EFORMAT, "key %s.embedding_length = %u outside 1..%u", hp->arch,
                            hp->n_embd, SLM_LIMIT_EMBD);
    if (hp->n_ff == 0 || hp->n_ff > MODEL_MAX_FF)
        return slm_diag_set(d, SLM_EFORMAT, "key %s.feed_forward_length = %u outside 1..%u",
                            hp->arch, hp->n_ff, MODEL_MAX_FF);
    if (hp->n_head == 0 || hp->n_head > SLM_LIMIT_HEADS)
        return slm_diag_set(d, SLM_EFORMAT, "key %s.attention.head_count = %u outside 1..%u",
                            hp->arch, hp->n_head, SLM_LIMIT_HEADS);
    if (hp->n_embd % hp->n_head != 0)
        return slm_diag_set(d, SLM_EFORMAT,
                            "key %s.embedding_length = %u is not a multiple of "
                            "attention.head_count = %u",
                            hp->arch, hp->n_embd, hp->n_head);
    hp->n_head_kv = hp->n_head;
    if ((rc = key_u32_opt(f, hp, "attention.head_count_kv", &hp->n_head_kv, d)) < 0) return rc;
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv != 0)
        return slm_diag_set(d, SLM_EFORMAT,
                            "key %s.attention.head_count_kv = %u does not divide "
                            "attention.head_count = %u",
                            hp->arch, hp->n_head_kv, hp->n_head);
    key_len = val_len = hp->n_embd / hp->n_head;
    if ((rc = key_u32_opt(f, hp, "attention.key_length", &key_len, d)) < 0 ||
        (rc = key_u32_opt(f, hp, "attention.value_length", &val_len, d)) < 0)
        return rc;
    if (key_len != val_len)
        return slm_diag_set(d, SLM_EUNSUPPORTED,
                            "key %s.attention.key_length = %u differs from value_length = %u",
                            hp->arch, key_len, val_len);
    if (key_len == 0 || key_len > SLM_LIMIT_HEAD_DIM || key_len % 2 != 0)
        return slm_diag_set(d, SLM_EFORMAT,
                            "key %s.attention.key_length = %u: head size must be even and in "
                            "2..%u",
                            hp->arch, key_len, SLM_LIMIT_HEAD_DIM);
    hp->head_dim = key_len;
    hp->n_rot = hp->head_dim;
    if ((rc = key_u32_opt(f, hp, "rope.dimension_count", &hp->n_rot, d)) < 0) return rc;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return slm_diag_set(d, SLM_EFORMAT,
                            "key %s.rope.dimension_count = %u must be even and at most the head "
                            "size %u",
                            hp->arch, hp->n_rot, hp->head_dim);
    rc = gguf_get_f32(f, akey(k, sizeof(k), hp, "attention.layer_norm_rms_epsilon"), &hp->norm_eps,
                      d);
    if (rc == SLM_ENOTFOUND) return slm_diag_set(d, SLM_EFORMAT, "missing key %s", k);
    if (rc < 0) return rc;
    if (!(hp->norm_eps > 0.0f && hp->norm_eps < 1.0f))
        return slm_diag_set(d, SLM_EFORMAT, "key %s = %g outside (0, 1)", k, (double)hp->norm_eps);

    /* RoPE and its scaling. */
    hp->rope_type = arch == ARCH_QWEN2 || arch == ARCH_QWEN3 ? ROPE_TYPE_NEOX : ROPE_TYPE_NORMAL;
    hp->rope_freq_base = 10000.0f;
    if ((rc = key_f32_opt(f, hp, "rope.freq_base", &hp->rope_freq_base, d)) < 0) return rc;
    if (!(hp->rope_freq_base > 1.0f))
        return slm_diag_set(d, SLM_EFORMAT, "key %s.rope.freq_base = %g must be > 1", hp->arch,
                            (double)hp->rope_freq_base);
    if ((rc = read_rope_scaling(f, hp, d)) < 0) return rc;
    hp->rope_scale = 0.0f;
    if ((rc = key_f32_opt(f, hp, "rope.scaling.factor", &hp->rope_scale, d)) < 0 ||
        (rc = key_f32_opt(f, hp, "rope.scale_linear", &scale_linear, d)) < 0)
        return rc;
    if (hp->rope_scale == 0.0f) hp->rope_scale = scale_linear;
    if (hp->rope_scale < 0.0f || (hp->rope_scale > 0.0f && hp->rope_scale < 1e-3f))
        return slm_diag_set(d, SLM_EFORMAT, "key %s.rope.scaling.factor = %g is not positive",
                            hp->arch, (double)hp->rope_scale);
    hp->rope_orig_ctx = hp->n_ctx_train;
    if ((rc = key_u32_opt(f, hp, "rope.scaling.original_context_length", &hp->rope_orig_ctx, d)) <
        0)
        return rc;
    if (hp->rope_orig_ctx == 0 || hp->rope_orig_ctx > SLM_LIMIT_CONTEXT)
        return slm_diag_set(d, SLM_EFORMAT,
                            "key %s.rope.scaling.original_context_length = %u outside 1..%u",
                            hp->arch, hp->rope_orig_ctx, SLM_LIMIT_CONTEXT);
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    hp->yarn_ext_factor = -1.0f;
    hp->yarn_attn_factor = 1.0f;
    hp->yarn_log_mul = 0.0f;
    hp->rope_attn_factor = 1.0f;
    if ((rc = key_f32_opt(f, hp, "rope.scaling.yarn_beta_fast", &hp->yarn_beta_fast, d)) < 0 ||
        (rc = key_f32_opt(f, hp, "rope.scaling.yarn_beta_slow", &hp->yarn_beta_slow, d)) < 0 ||
        (rc = key_f32_opt(f, hp, "rope.scaling.yarn_ext_factor", &hp->yarn_ext_factor, d)) < 0 ||
        (rc = key_f32_opt(f, hp, "rope.scaling.yarn_attn_factor", &hp->yarn_attn_factor, d)) < 0 ||
        (rc = key_f32_opt(f, hp, "rope.scaling.yarn_log_multiplier", &hp->yarn_log_mul, d)) < 0 ||
        (rc = key_f32_opt(f, hp, "rope.scaling.attn_factor", &hp->rope_attn_factor, d)) < 0)
        return rc;
    if (!(hp->yarn_beta_fast > 0.0f) || !(hp->yarn_beta_slow > 0.0f))
        return slm_diag_set(d, SLM_EFORMAT,
                            "keys %s.rope.scaling.yarn_beta_fast/slow = %g/%g must be positive",
                            hp->arch, (double)hp->yarn_beta_fast, (double)hp->yarn_beta_slow);

    /* Mistral 3 (Devstral): position-dependent attention temperature. */
    hp->attn_temp_scale = 0.0f;
    hp->attn_temp_floor_scale = 0;
    if (arch == ARCH_MISTRAL3) {
        if ((rc = key_f32_opt(f, hp, "attention.temperature_scale", &hp->attn_temp_scale, d)) < 0)
            return rc;
        if (hp->attn_temp_scale != 0.0f) hp->attn_temp_floor_scale = hp->rope_orig_ctx;
    }
    hp->has_qkv_bias = arch == ARCH_QWEN2;
    hp->has_qk_norm = arch == ARCH_QWEN3;
    return 0;
}

/* ---- tensors ---- */

/* Sorted list of the tensors the forward pass uses, to find unused ones. */
struct used_set {
    const struct gguf_tensor **v;
    size_t n, cap;
};

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const struct gguf_tensor *const *)a;
    uintptr_t y = (uintptr_t) * (const struct gguf_tensor *const *)b;

    return x < y ? -1 : x > y;
}

/* Checks shape: n_dims and ne equal to what the hyper-parameters imply. */
static int check_shape(const struct gguf_tensor *t, const char *name, uint32_t n_dims, uint64_t ne0,
                       uint64_t ne1, struct slm_diag *d)
{
    if (t->n_dims != n_dims || t->ne[0] != ne0 || (n_dims == 2 && t->ne[1] != ne1)) {
        if (n_dims == 1)
            return slm_diag_set(d, SLM_EFORMAT,
                                "tensor '%s': shape [%llu, %llu] (%u dims), expected [%llu] from "
                                "the hyper-parameters",
                                name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                                t->n_dims, (unsigned long long)ne0);
        return slm_diag_set(d, SLM_EFORMAT,
                            "tensor '%s': shape [%llu, %llu] (%u dims), expected [%llu, %llu] "
                            "from the hyper-parameters",
                            name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                            t->n_dims, (unsigned long long)ne0, (unsigned long long)ne1);
    }
    return 0;
}

/* Finds a tensor; NULL without error when absent and not required. */
static int find(struct model *m, struct used_set *u, const char *name, bool required,
                const struct gguf_tensor **out, struct slm_diag *d)
{
    const struct gguf_tensor *t = gguf_tensor_find(m->gguf, name);

    *out = t;
    if (t == NULL) return required ? slm_diag_set(d, SLM_EFORMAT, "missing tensor '%s'", name) : 0;
    if (u->n == u->cap)
        return slm_diag_set(d, SLM_EINTERNAL, "tensor bookkeeping overflow at '%s'", name);
    u->v[u->n++] = t;
    return 0;
}

/* A 1-D F32 tensor of n elements (norm weights, biases, rope_freqs). */
static int get_vec(struct model *m, struct used_set *u, const char *name, uint64_t n, bool required,
                   const float **out, struct slm_diag *d)
{
    const struct gguf_tensor *t;
    int rc;

    *out = NULL;
    if ((rc = find(m, u, name, required, &t, d)) < 0 || t == NULL) return rc;
    if ((rc = check_shape(t, name, 1, n, 1, d)) < 0) return rc;
    if (t->type != TENSOR_TYPE_F32)
        return slm_diag_set(d, SLM_EUNSUPPORTED, "tensor '%s': type %s, expected f32", name,
                            tensor_type_name(t->type));
    if ((uintptr_t)t->data % sizeof(float) != 0)
        return slm_diag_set(d, SLM_EFORMAT, "tensor '%s': data not 4-byte aligned", name);
    for (uint64_t i = 0; i < n; i++) {
        float v = ((const float *)t->data)[i];
        if (!isfinite(v))
            return slm_diag_set(d, SLM_EFORMAT, "tensor '%s': element %llu is not finite", name,
                                (unsigned long long)i);
    }
    *out = t->data;
    return 0;
}

/* Checks that the kernels can multiply weights of type t with n_in-long rows. */
static int check_matrix_type(const char *name, enum tensor_type t, uint64_t n_in,
                             enum tensor_type *act, struct slm_diag *d)
{
    const struct kernel_ops *k = kernels_get();
    const struct tensor_type_traits *tt = tensor_type_get((uint32_t)t);
    const struct tensor_type_traits *at;
    enum tensor_type a = kernels_vec_dot_type(t);

    if (tt == NULL || !tt->supported || a == TENSOR_TYPE_COUNT || k->gemm[t] == NULL ||
        (a != TENSOR_TYPE_F32 && k->from_float[a] == NULL))
        return slm_diag_set(d, SLM_EUNSUPPORTED,
                            "tensor '%s': type %s has no matrix kernel in this build (use "
                            "f32, f16, bf16, q8_0, q4_0, q4_K, q5_K or q6_K)",
                            name, tensor_type_name(t));
    at = tensor_type_get((uint32_t)a);
    if (at == NULL || n_in % tt->block_size != 0 || n_in % at->block_size != 0)
        return slm_diag_set(d, SLM_EFORMAT,
                            "tensor '%s': row length %llu is not a multiple of the %s block "
                            "size",
                            name, (unsigned long long)n_in, tensor_type_name(t));
    *act = a;
    return 0;
}

/* A linear layer: weight [n_in, n_out] and, if allowed or required, a bias. */
static int get_linear(struct model *m, struct used_set *u, const char *base, uint64_t n_in,
                      uint64_t n_out, int bias, struct model_linear *l, struct slm_diag *d)
{
    char name[96];
    const struct gguf_tensor *t;
    uint64_t rb;
    int rc;

    snprintf(name, sizeof(name), "%s.weight", base);
    if ((rc = find(m, u, name, true, &t, d)) < 0 ||
        (rc = check_shape(t, name, 2, n_in, n_out, d)) < 0 ||
        (rc = check_matrix_type(name, t->type, n_in, &l->act, d)) < 0)
        return rc;
    if (tensor_row_size(t->type, n_in, &rb) < 0)
        return slm_diag_set(d, SLM_EFORMAT, "tensor '%s': bad row size", name);
    l->w = t;
    l->n_in = (size_t)n_in;
    l->n_out = (size_t)n_out;
    l->row_bytes = (size_t)rb;
    l->b = NULL;
    m->act_used[l->act] = true;
    if (l->n_in > m->max_in) m->max_in = l->n_in;
    /* bias: 0 not allowed, 1 optional, 2 required */
    snprintf(name, sizeof(name), "%s.bias", base);
    if (bias == 0) return 0;
    return get_vec(m, u, name, n_out, bias == 2, &l->b, d);
}

/* Looks up and validates every tensor (G14). */
static int load_tensors(struct model *m, enum arch_id arch, struct slm_diag *d)
{
    const struct model_hparams *hp = &m->hp;
    uint64_t n_q = (uint64_t)hp->n_head * hp->head_dim;
    uint64_t n_kv = (uint64_t)hp->n_head_kv * hp->head_dim;
    size_t n_tensors = gguf_n_tensors(m->gguf);
    struct used_set u = { 0 };
    const struct gguf_tensor *out_t;
    char base[64], name[96];
    uint64_t rb;
    int rc = 0;

    u.cap = n_tensors;
    u.v = slm_calloc(n_tensors > 0 ? n_tensors : 1, sizeof(*u.v));
    m->layers = slm_calloc(hp->n_layer, sizeof(*m->layers));
    if (u.v == NULL || m->layers == NULL) {
        rc = slm_diag_set(d, SLM_ENOMEM, "out of memory for %u layers", hp->n_layer);
        goto out;
    }
    /* Token embeddings: any type quant_dequantize_row reads. */
    if ((rc = find(m, &u, "token_embd.weight", true, &m->tok_embd, d)) < 0 ||
        (rc = check_shape(m->tok_embd, "token_embd.weight", 2, hp->n_embd, hp->n_vocab, d)) < 0)
        goto out;
    {
        const struct tensor_type_traits *tt = tensor_type_get((uint32_t)m->tok_embd->type);
        if (tt == NULL || !tt->supported || hp->n_embd % tt->block_size != 0 ||
            tensor_row_size(m->tok_embd->type, hp->n_embd, &rb) < 0) {
            rc = slm_diag_set(d, SLM_EUNSUPPORTED,
                              "tensor 'token_embd.weight': type %s cannot be dequantized",
                              tensor_type_name(m->tok_embd->type));
            goto out;
        }
        m->tok_embd_row_bytes = (size_t)rb;
    }
    if ((rc = get_vec(m, &u, "output_norm.weight", hp->n_embd, true, &m->output_norm, d)) < 0)
        goto out;
    out_t = gguf_tensor_find(m->gguf, "output.weight");
    m->hp.tied_embeddings = out_t == NULL;
    if (out_t != NULL) {
        if ((rc = get_linear(m, &u, "output", hp->n_embd, hp->n_vocab, arch == ARCH_QWEN2 ? 1 : 0,
                             &m->output, d)) < 0)
            goto out;
    } else {
        if ((rc = check_matrix_type("token_embd.weight", m->tok_embd->type, hp->n_embd,
                                    &m->output.act, d)) < 0)
            goto out;
        m->output.w = m->tok_embd;
        m->output.n_in = hp->n_embd;
        m->output.n_out = hp->n_vocab;
        m->output.row_bytes = m->tok_embd_row_bytes;
        m->act_used[m->output.act] = true;
        if (m->output.n_in > m->max_in) m->max_in = m->output.n_in;
    }
    if ((rc = get_vec(m, &u, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_freqs, d)) < 0)
        goto out;
    if (m->rope_freqs != NULL) {
        for (uint32_t i = 0; i < hp->n_rot / 2; i++) {
            if (!(m->rope_freqs[i] > 0.0f)) {
                rc = slm_diag_set(d, SLM_EFORMAT,
                                  "tensor 'rope_freqs.weight': element %u = %g is not positive", i,
                                  (double)m->rope_freqs[i]);
                goto out;
            }
        }
        m->hp.rope_scaling = ROPE_SCALING_LLAMA3;
    }
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        struct model_layer *L = &m->layers[il];
        int qkv_bias = arch == ARCH_QWEN2 ? 2 : arch == ARCH_QWEN3 ? 0 : 1;
        int other_bias = arch == ARCH_QWEN2 || arch == ARCH_QWEN3 ? 0 : 1;

#define LAYER_NAME(suffix) (snprintf(base, sizeof(base), "blk.%u.%s", il, suffix), base)
        snprintf(name, sizeof(name), "blk.%u.attn_norm.weight", il);
        if ((rc = get_vec(m, &u, name, hp->n_embd, true, &L->attn_norm, d)) < 0) goto out;
        snprintf(name, sizeof(name), "blk.%u.ffn_norm.weight", il);
        if ((rc = get_vec(m, &u, name, hp->n_embd, true, &L->ffn_norm, d)) < 0) goto out;
        if ((rc = get_linear(m, &u, LAYER_NAME("attn_q"), hp->n_embd, n_q, qkv_bias, &L->wq, d)) <
                0 ||
            (rc = get_linear(m, &u, LAYER_NAME("attn_k"), hp->n_embd, n_kv, qkv_bias, &L->wk, d)) <
                0 ||
            (rc = get_linear(m, &u, LAYER_NAME("attn_v"), hp->n_embd, n_kv, qkv_bias, &L->wv, d)) <
                0 ||
            (rc = get_linear(m, &u, LAYER_NAME("attn_output"), n_q, hp->n_embd, other_bias, &L->wo,
                             d)) < 0 ||
            (rc = get_linear(m, &u, LAYER_NAME("ffn_gate"), hp->n_embd, hp->n_ff, other_bias,
                             &L->gate, d)) < 0 ||
            (rc = get_linear(m, &u, LAYER_NAME("ffn_up"), hp->n_embd, hp->n_ff, other_bias, &L->up,
                             d)) < 0 ||
            (rc = get_linear(m, &u, LAYER_NAME("ffn_down"), hp->n_ff, hp->n_embd, other_bias,
                             &L->down, d)) < 0)
            goto out;
#undef LAYER_NAME
        if (arch == ARCH_QWEN3) {
            snprintf(name, sizeof(name), "blk.%u.attn_q_norm.weight", il);
            if ((rc = get_vec(m, &u, name, hp->head_dim, true, &L->q_norm, d)) < 0) goto out;
            snprintf(name, sizeof(name), "blk.%u.attn_k_norm.weight", il);
            if ((rc = get_vec(m, &u, name, hp->head_dim, true, &L->k_norm, d)) < 0) goto out;
        }
    }
    /* Every tensor of the file must be one the forward pass uses. */
    qsort(u.v, u.n, sizeof(*u.v), cmp_ptr);
    for (size_t i = 0; i < n_tensors; i++) {
        const struct gguf_tensor *t = gguf_tensor_at(m->gguf, i);

        if (bsearch(&t, u.v, u.n, sizeof(*u.v), cmp_ptr) == NULL) {
            rc = slm_diag_set(d, SLM_EUNSUPPORTED,
                              "tensor '%.*s' is not used by the %s architecture (unsupported "
                              "variant)",
                              (int)(t->name.len > 64 ? 64 : t->name.len), t->name.ptr, hp->arch);
            goto out;
        }
        m->n_params += t->n_elements;
        m->weight_bytes += t->size;
    }
out:
    slm_free(u.v);
    return rc;
}

/* Formats a parameter count as "1.2B", "135M", "12K". */
static void fmt_params(char *buf, size_t cap, uint64_t n)
{
    if (n >= 1000000000ull)
        snprintf(buf, cap, "%.1fB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, cap, "%.0fM", (double)n / 1e6);
    else
        snprintf(buf, cap, "%.0fK", (double)n / 1e3);
}

/* general.file_type (llama_ftype) names. */
static const char *ftype_name(uint32_t ft)
{
    switch (ft) {
    case 0:
        return "F32";
    case 1:
        return "F16";
    case 2:
        return "Q4_0";
    case 7:
        return "Q8_0";
    case 14:
        return "Q4_K_S";
    case 15:
        return "Q4_K_M";
    case 16:
        return "Q5_K_S";
    case 17:
        return "Q5_K_M";
    case 18:
        return "Q6_K";
    case 32:
        return "BF16";
    default:
        return NULL;
    }
}

static void describe(struct model *m)
{
    char params[32];
    uint32_t ft = 0;
    const char *ftn = NULL;

    fmt_params(params, sizeof(params), m->n_params);
    if (gguf_get_u32(m->gguf, "general.file_type", &ft, NULL) == 0) ftn = ftype_name(ft);
    if (ftn == NULL) ftn = tensor_type_name(m->layers[0].wq.w->type);
    snprintf(m->desc, sizeof(m->desc), "%s %s %s", m->hp.arch, params, ftn);
}

/*
 * Opens path, validates its hyper-parameters and tensors, and loads its
 * tokenizer. Returns 0 and new in *out (model_free), or SLM_EFORMAT,
 * SLM_EUNSUPPORTED, SLM_ELIMIT, SLM_EIO, SLM_ENOMEM with a message in d.
 */
int model_load(const char *path, struct model **out, struct slm_diag *d)
{
    struct model *m;
    enum arch_id arch = ARCH_LLAMA;
    size_t n_vocab;
    int rc;

    *out = NULL;
    m = slm_calloc(1, sizeof(*m));
    if (m == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory loading %s", path);
    if ((rc = gguf_open(path, &m->gguf, d)) < 0 ||
        (rc = read_arch(m->gguf, &m->hp, &arch, d)) < 0 ||
        (rc = read_hparams(m->gguf, arch, &m->hp, d)) < 0 ||
        (rc = tokenizer_load(m->gguf, &m->tok, d)) < 0)
        goto fail;
    n_vocab = tokenizer_n_vocab(m->tok);
    if (n_vocab == 0 || n_vocab > SLM_LIMIT_VOCAB) {
        rc = slm_diag_set(d, SLM_EFORMAT, "vocabulary size %zu outside 1..%u", n_vocab,
                          SLM_LIMIT_VOCAB);
        goto fail;
    }
    m->hp.n_vocab = (uint32_t)n_vocab;
    rope_derive(m);
    if ((rc = load_tensors(m, arch, d)) < 0 || (rc = model_pack_weights(m, path, d)) < 0) goto fail;
    describe(m);
    *out = m;
    return 0;
fail:
    model_free(m);
    return rc;
}

/* Frees m and closes its file; NULL is a no-op. Contexts must be freed first. */
void model_free(struct model *m)
{
    if (m == NULL) return;
    model_pack_free(m);
    slm_free(m->layers);
    tokenizer_free(m->tok);
    gguf_close(m->gguf);
    slm_free(m);
}

/* Returns borrowed (valid until model_free). */
const struct model_hparams *model_get_hparams(const struct model *m)
{
    return &m->hp;
}

/* Returns borrowed (valid until model_free). */
const struct tokenizer *model_get_tokenizer(const struct model *m)
{
    return m->tok;
}

uint64_t model_packed_bytes(const struct model *m)
{
    return m->packed_bytes;
}

/* Returns borrowed (valid until model_free). */
const struct gguf_file *model_get_gguf(const struct model *m)
{
    return m->gguf;
}

/* Returns borrowed (valid until model_free): "llama 1.2B Q4_K_M". */
const char *model_describe(const struct model *m)
{
    return m->desc;
}

uint64_t model_weight_bytes(const struct model *m)
{
    return m->weight_bytes;
}

uint64_t model_n_params(const struct model *m)
{
    return m->n_params;
}
