/*
 * test_model.c - the llama-family loader and forward pass against an
 * independent reference.
 *
 * Each test writes a tiny model with the GGUF writer (random weights from a
 * seeded core/rand.h generator, a hand-written byte-level vocabulary) and
 * compares model_decode's logits with a plain transformer written here:
 * every weight dequantized to f32, textbook loops, double accumulation,
 * exact softmax. The only rounding the reference shares with the engine is
 * the F16 KV cache (it rounds K and V through f16 the same way, because the
 * cache format is part of the design, not an approximation error).
 *
 * Two comparisons per model (engine_vs_reference), errors as max |engine -
 * reference| divided by the RMS of the reference logits:
 *   strict: the reference also rounds each linear layer's input to the
 *     weight's activation type (f16, bf16, Q8_0, Q8_K: the kernel contract of
 *     kernels.h), so only f32-vs-double summation order differs. Tolerance
 *     1e-4 (measured 2e-7 .. 1e-6); f16 5e-3 (measured 5e-4: f16 rounding is
 *     a step function, see engine_vs_reference for why steps happen).
 *   loose: against the all-f32 textbook reference, the end-to-end accuracy
 *     a user sees. F32 weights 2e-3 (measured 4e-5 .. 3e-4: the F16 KV cache
 *     is the only rounding); F16 1e-2 (measured 2e-3, activations rounded to
 *     2^-11); BF16 5e-2 (measured 1.3e-2, 2^-8); Q8_0, Q4_0, Q4_K, Q5_K, Q6_K
 *     0.15 (measured 0.04 .. 0.07: activations quantized to 8 bits per block
 *     of 32 or 256, up to 1/254 of the block maximum per element, through two
 *     layers). The weights are never a source of error: the reference uses
 *     the dequantized values of the very bytes in the file.
 * A wrong RoPE pairing, a missing bias, a wrong YaRN ramp or a transposed
 * weight gives errors of order 1 (model_reference_detects_wrong_rope).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/rand.h"
#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "harness/t.h"

#define N_MERGES 3
#define MAX_REF  128

/* ---- the tiny model ---- */

struct key_override {
    const char *key; /* without the "<arch>." prefix unless full is set */
    char kind;       /* 'u' u32, 'f' f32, 's' string, 'x' delete (not written) */
    uint32_t u;
    float f;
    const char *s;
};

struct spec {
    const char *arch;
    enum tensor_type wtype;     /* matrices */
    enum tensor_type embd_type; /* token_embd; COUNT: wtype */
    enum tensor_type v_type;    /* attn_v and ffn_down; COUNT: wtype */
    uint32_t n_embd, n_ff, n_head, n_head_kv, head_dim, n_layer, n_ctx_train;
    bool tied;
    float freq_base;
    int scaling; /* 0: no key, 1: linear, 2: yarn */
    float factor;
    uint32_t orig_ctx;
    float log_mul;
    float temp_scale;
    bool rope_freqs;
    uint64_t seed;
    /* Mutations for the rejection tests. */
    const char *omit;    /* tensor not written */
    const char *reshape; /* tensor written with one row more */
    const char *extra;   /* an extra F32 [n_embd] tensor */
    const char *retype;  /* tensor written as TQ2_0 (no matrix kernel) */
    struct key_override ko;
    int vocab_extra;    /* token_embd rows = vocab + this */
    uint32_t vocab_pad; /* reserved control tokens after the others (< 64) */
};

static struct spec spec_default(const char *arch, enum tensor_type t)
{
    struct spec s;

    memset(&s, 0, sizeof(s));
    s.arch = arch;
    s.wtype = t;
    s.embd_type = TENSOR_TYPE_COUNT;
    s.v_type = TENSOR_TYPE_COUNT;
    s.n_embd = 256;
    s.n_ff = 512;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.head_dim = 0;
    s.n_layer = 2;
    s.n_ctx_train = 512;
    s.freq_base = 10000.0f;
    s.seed = 42;
    return s;
}

static uint32_t spec_head_dim(const struct spec *s)
{
    return s->head_dim != 0 ? s->head_dim : s->n_embd / s->n_head;
}

/* Dequantized weights by name, for the reference. */
struct ref_tensor {
    char name[64];
    float *data;
    uint64_t ne0, ne1;
    enum tensor_type type; /* as stored in the file */
};

struct ref {
    struct ref_tensor t[MAX_REF];
    size_t n;
    uint32_t n_vocab;
    /* Strict mode: round each linear layer's input the way the kernel
     * contract says (kernels.h: activations converted once per row to the
     * weight's vec_dot type), so only summation order differs. */
    bool emulate_act;
    /* Strict mode: tokens before this position were decoded in a batch of 64
     * or more, where the engine takes its F32 attention path (like llama.cpp's
     * tiled one); the reference then uses exact attention for them. */
    size_t att_exact_below;
    /* Emulate the engine's default attention (F16 q and accumulator, the
     * order of llama.cpp's flash attention) instead of exact attention. */
    bool att_f16;
};

static const float *ref_get(const struct ref *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->t[i].name, name) == 0) return r->t[i].data;
    return NULL;
}

static enum tensor_type ref_type(const struct ref *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->t[i].name, name) == 0) return r->t[i].type;
    return TENSOR_TYPE_F32;
}

static void ref_free(struct ref *r)
{
    for (size_t i = 0; i < r->n; i++)
        slm_free(r->t[i].data);
    r->n = 0;
}

struct builder {
    struct gguf_writer *w;
    const struct spec *s;
    struct slm_rng rng;
    struct ref *ref;
    void *bufs[MAX_REF];
    size_t n_bufs;
};

/* The GPT-2 byte-to-unicode mapping of byte b, UTF-8 encoded into out. */
static void byte_token(unsigned b, char out[4])
{
    unsigned cp;

    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        unsigned n = 0;
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        cp = 256 + n;
    }
    memset(out, 0, 4);
    if (cp < 0x80) {
        out[0] = (char)cp;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
    }
}

/* 256 byte tokens, 3 merges ("Ġt", "he", "Ġthe"), BOS and EOS. */
static uint32_t write_vocab(struct gguf_writer *w, uint32_t pad)
{
    static char bytes[256][4], reserved[64][24];
    const char *toks[256 + N_MERGES + 2 + 64];
    int32_t types[256 + N_MERGES + 2 + 64];
    const char *merges[N_MERGES] = { "\xC4\xA0 t", "h e", "\xC4\xA0t he" };
    uint32_t n = 0;

    for (unsigned b = 0; b < 256; b++) {
        byte_token(b, bytes[b]);
        types[n] = 1;
        toks[n++] = bytes[b];
    }
    types[n] = 1;
    toks[n++] = "\xC4\xA0t";
    types[n] = 1;
    toks[n++] = "he";
    types[n] = 1;
    toks[n++] = "\xC4\xA0the";
    types[n] = 3;
    toks[n++] = "<|begin_of_text|>";
    types[n] = 3;
    toks[n++] = "<|end_of_text|>";
    ASSERT(pad <= 64);
    for (uint32_t i = 0; i < pad; i++) {
        snprintf(reserved[i], sizeof(reserved[i]), "<|reserved_%u|>", i);
        types[n] = 3;
        toks[n++] = reserved[i];
    }
    ASSERT_OK(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4));
    ASSERT_OK(gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe", 9));
    ASSERT_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, n));
    ASSERT_OK(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n));
    ASSERT_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, N_MERGES));
    ASSERT_OK(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", n - pad - 2));
    ASSERT_OK(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", n - pad - 1));
    return n;
}

static void keep_ref(struct builder *b, const char *name, float *data, uint64_t ne0, uint64_t ne1,
                     enum tensor_type type)
{
    struct ref_tensor *rt;

    if (b->ref == NULL) {
        slm_free(data);
        return;
    }
    ASSERT(b->ref->n < MAX_REF);
    rt = &b->ref->t[b->ref->n++];
    snprintf(rt->name, sizeof(rt->name), "%s", name);
    rt->data = data;
    rt->ne0 = ne0;
    rt->ne1 = ne1;
    rt->type = type;
}

/* Adds a [ne0, ne1] matrix of N(0, scale^2) weights quantized to type. */
static void add_mat(struct builder *b, const char *name, enum tensor_type type, uint64_t ne0,
                    uint64_t ne1, float scale)
{
    uint64_t rb, ne[2] = { ne0, ne1 };
    float *f;
    char *q;

    if (b->s->reshape != NULL && strcmp(b->s->reshape, name) == 0) ne[1] = ++ne1;
    if (b->s->retype != NULL && strcmp(b->s->retype, name) == 0)
        type = TENSOR_TYPE_TQ2_0; /* no kernel; zero bytes */
    f = slm_xmalloc(ne0 * ne1 * sizeof(float));
    for (uint64_t i = 0; i < ne0 * ne1; i++)
        f[i] = slm_rng_normal(&b->rng) * scale;
    ASSERT_OK(tensor_row_size(type, ne0, &rb));
    q = slm_xmalloc(rb * ne1);
    for (uint64_t r = 0; r < ne1 && type == TENSOR_TYPE_TQ2_0; r++)
        memset(q + r * rb, 0, rb);
    for (uint64_t r = 0; r < ne1 && type != TENSOR_TYPE_TQ2_0; r++) {
        ASSERT_OK(quant_quantize_row(type, f + r * ne0, q + r * rb, ne0));
        ASSERT_OK(quant_dequantize_row(type, q + r * rb, f + r * ne0, ne0));
    }
    if (b->s->omit == NULL || strcmp(b->s->omit, name) != 0)
        ASSERT_OK(gguf_writer_add_tensor(b->w, name, type, 2, ne, q, rb * ne1));
    b->bufs[b->n_bufs++] = q;
    keep_ref(b, name, f, ne0, ne1, type);
}

/* Adds an F32 vector of base + N(0, scale^2) (norm weights, biases). */
static void add_vec(struct builder *b, const char *name, uint64_t n, float base, float scale)
{
    float *f;
    float *copy;

    if (b->s->reshape != NULL && strcmp(b->s->reshape, name) == 0) n++;
    f = slm_xmalloc(n * sizeof(float));
    for (uint64_t i = 0; i < n; i++)
        f[i] = base + slm_rng_normal(&b->rng) * scale;
    if (b->s->omit == NULL || strcmp(b->s->omit, name) != 0)
        ASSERT_OK(gguf_writer_add_tensor(b->w, name, TENSOR_TYPE_F32, 1, &n, f, n * sizeof(float)));
    copy = slm_xmalloc(n * sizeof(float));
    memcpy(copy, f, n * sizeof(float));
    b->bufs[b->n_bufs++] = f;
    keep_ref(b, name, copy, n, 1, TENSOR_TYPE_F32);
}

static void set_key_u32(struct builder *b, const char *suffix, uint32_t v)
{
    char k[128];

    snprintf(k, sizeof(k), "%s.%s", b->s->arch, suffix);
    ASSERT_OK(gguf_writer_set_u32(b->w, k, v));
}

static void set_key_f32(struct builder *b, const char *suffix, float v)
{
    char k[128];

    snprintf(k, sizeof(k), "%s.%s", b->s->arch, suffix);
    ASSERT_OK(gguf_writer_set_f32(b->w, k, v));
}

/* Writes the model of s to path; fills r (if not NULL) with its weights. */
static void build_model(const struct spec *s, const char *path, struct ref *r)
{
    struct builder b;
    uint32_t hd = spec_head_dim(s), n_vocab;
    uint64_t n_q = (uint64_t)s->n_head * hd, n_kv = (uint64_t)s->n_head_kv * hd;
    enum tensor_type et = s->embd_type != TENSOR_TYPE_COUNT ? s->embd_type : s->wtype;
    enum tensor_type vt = s->v_type != TENSOR_TYPE_COUNT ? s->v_type : s->wtype;
    bool qwen2 = strcmp(s->arch, "qwen2") == 0, qwen3 = strcmp(s->arch, "qwen3") == 0;
    char name[64];
    struct slm_diag d;

    memset(&b, 0, sizeof(b));
    b.s = s;
    b.ref = r;
    slm_rng_seed(&b.rng, s->seed);
    b.w = gguf_writer_new();
    ASSERT_NOT_NULL(b.w);
    if (r != NULL) memset(r, 0, sizeof(*r));
    ASSERT_OK(gguf_writer_set_str(b.w, "general.architecture", s->arch, strlen(s->arch)));
    n_vocab = write_vocab(b.w, s->vocab_pad);
    if (r != NULL) r->n_vocab = n_vocab;
    set_key_u32(&b, "block_count", s->n_layer);
    set_key_u32(&b, "context_length", s->n_ctx_train);
    set_key_u32(&b, "embedding_length", s->n_embd);
    set_key_u32(&b, "feed_forward_length", s->n_ff);
    set_key_u32(&b, "attention.head_count", s->n_head);
    set_key_u32(&b, "attention.head_count_kv", s->n_head_kv);
    if (s->head_dim != 0) {
        set_key_u32(&b, "attention.key_length", s->head_dim);
        set_key_u32(&b, "attention.value_length", s->head_dim);
    }
    set_key_u32(&b, "rope.dimension_count", hd);
    set_key_f32(&b, "rope.freq_base", s->freq_base);
    set_key_f32(&b, "attention.layer_norm_rms_epsilon", 1e-5f);
    if (s->scaling != 0) {
        char k[128];
        const char *ty = s->scaling == 1 ? "linear" : "yarn";
        snprintf(k, sizeof(k), "%s.rope.scaling.type", s->arch);
        ASSERT_OK(gguf_writer_set_str(b.w, k, ty, strlen(ty)));
        set_key_f32(&b, "rope.scaling.factor", s->factor);
        if (s->orig_ctx != 0) set_key_u32(&b, "rope.scaling.original_context_length", s->orig_ctx);
        if (s->log_mul != 0.0f) set_key_f32(&b, "rope.scaling.yarn_log_multiplier", s->log_mul);
    }
    if (s->temp_scale != 0.0f) set_key_f32(&b, "attention.temperature_scale", s->temp_scale);
    if (s->ko.key != NULL) {
        char k[128];
        if (strncmp(s->ko.key, "general.", 8) == 0)
            snprintf(k, sizeof(k), "%s", s->ko.key);
        else
            snprintf(k, sizeof(k), "%s.%s", s->arch, s->ko.key);
        if (s->ko.kind == 'u')
            ASSERT_OK(gguf_writer_set_u32(b.w, k, s->ko.u));
        else if (s->ko.kind == 'f')
            ASSERT_OK(gguf_writer_set_f32(b.w, k, s->ko.f));
        else if (s->ko.kind == 's')
            ASSERT_OK(gguf_writer_set_str(b.w, k, s->ko.s, strlen(s->ko.s)));
    }

    add_mat(&b, "token_embd.weight", et, s->n_embd, n_vocab + (uint64_t)s->vocab_extra, 1.0f);
    add_vec(&b, "output_norm.weight", s->n_embd, 1.0f, 0.1f);
    if (!s->tied)
        add_mat(&b, "output.weight", s->wtype, s->n_embd, n_vocab, 1.0f / sqrtf(s->n_embd));
    if (s->rope_freqs) {
        uint64_t n = hd / 2;
        float *f = slm_xmalloc(n * sizeof(float)), *copy = slm_xmalloc(n * sizeof(float));
        for (uint64_t i = 0; i < n; i++)
            f[i] = 1.0f + 7.0f * (float)i / (float)n; /* llama3-like: low frequencies slowed */
        ASSERT_OK(gguf_writer_add_tensor(b.w, "rope_freqs.weight", TENSOR_TYPE_F32, 1, &n, f,
                                         n * sizeof(float)));
        memcpy(copy, f, n * sizeof(float));
        b.bufs[b.n_bufs++] = f;
        keep_ref(&b, "rope_freqs.weight", copy, n, 1, TENSOR_TYPE_F32);
    }
    for (uint32_t il = 0; il < s->n_layer; il++) {
#define NM(x) (snprintf(name, sizeof(name), "blk.%u.%s", il, x), name)
        add_vec(&b, NM("attn_norm.weight"), s->n_embd, 1.0f, 0.1f);
        add_mat(&b, NM("attn_q.weight"), s->wtype, s->n_embd, n_q, 1.0f / sqrtf(s->n_embd));
        add_mat(&b, NM("attn_k.weight"), s->wtype, s->n_embd, n_kv, 1.0f / sqrtf(s->n_embd));
        add_mat(&b, NM("attn_v.weight"), vt, s->n_embd, n_kv, 1.0f / sqrtf(s->n_embd));
        if (qwen2) {
            add_vec(&b, NM("attn_q.bias"), n_q, 0.0f, 0.5f);
            add_vec(&b, NM("attn_k.bias"), n_kv, 0.0f, 0.5f);
            add_vec(&b, NM("attn_v.bias"), n_kv, 0.0f, 0.5f);
        }
        if (qwen3) {
            add_vec(&b, NM("attn_q_norm.weight"), hd, 1.0f, 0.2f);
            add_vec(&b, NM("attn_k_norm.weight"), hd, 1.0f, 0.2f);
        }
        add_mat(&b, NM("attn_output.weight"), s->wtype, n_q, s->n_embd, 1.0f / sqrtf(n_q));
        add_vec(&b, NM("ffn_norm.weight"), s->n_embd, 1.0f, 0.1f);
        add_mat(&b, NM("ffn_gate.weight"), s->wtype, s->n_embd, s->n_ff, 1.0f / sqrtf(s->n_embd));
        add_mat(&b, NM("ffn_up.weight"), s->wtype, s->n_embd, s->n_ff, 1.0f / sqrtf(s->n_embd));
        add_mat(&b, NM("ffn_down.weight"), vt, s->n_ff, s->n_embd, 1.0f / sqrtf(s->n_ff));
#undef NM
    }
    if (s->extra != NULL) add_vec(&b, s->extra, s->n_embd, 0.0f, 1.0f);
    ASSERT_OK(gguf_writer_write(b.w, path, &d));
    gguf_writer_free(b.w);
    for (size_t i = 0; i < b.n_bufs; i++)
        slm_free(b.bufs[i]);
}

/* ---- the reference transformer ---- */

static void ref_rmsnorm(double *y, const double *x, const float *w, size_t n, double eps)
{
    double ss = 0.0;

    for (size_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    ss = 1.0 / sqrt(ss / (double)n + eps);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * ss * (w != NULL ? w[i] : 1.0f);
}

/* The activation type a weight type is multiplied with (ggml's vec_dot_type). */
static enum tensor_type act_type(enum tensor_type w)
{
    switch (w) {
    case TENSOR_TYPE_F16:
    case TENSOR_TYPE_BF16:
        return w;
    case TENSOR_TYPE_Q8_0:
    case TENSOR_TYPE_Q4_0:
        return TENSOR_TYPE_Q8_0;
    case TENSOR_TYPE_Q4_K:
    case TENSOR_TYPE_Q5_K:
    case TENSOR_TYPE_Q6_K:
        return TENSOR_TYPE_Q8_K;
    default:
        return TENSOR_TYPE_F32;
    }
}

/*
 * y[o] = sum_i W[o][i] x[i] + b[o]; W is [n_in, n_out] in GGUF order. In
 * strict mode x is first rounded through the activation type of W.
 */
static void ref_linear(const struct ref *r, double *y, const char *wname, const float *bias,
                       const double *xin, size_t n_in, size_t n_out)
{
    const float *w = ref_get(r, wname);
    enum tensor_type a = act_type(ref_type(r, wname));
    double *x = slm_xmalloc(n_in * sizeof(double));

    for (size_t i = 0; i < n_in; i++)
        x[i] = xin[i];
    if (r->emulate_act && a != TENSOR_TYPE_F32) {
        float *f = slm_xmalloc(n_in * sizeof(float));
        uint64_t rb;
        void *q;

        ASSERT_OK(tensor_row_size(a, n_in, &rb));
        q = slm_xmalloc(rb);
        for (size_t i = 0; i < n_in; i++)
            f[i] = (float)xin[i];
        ASSERT_OK(quant_quantize_row(a, f, q, n_in));
        ASSERT_OK(quant_dequantize_row(a, q, f, n_in));
        for (size_t i = 0; i < n_in; i++)
            x[i] = f[i];
        slm_free(q);
        slm_free(f);
    }
    for (size_t o = 0; o < n_out; o++) {
        double s = 0.0;
        for (size_t i = 0; i < n_in; i++)
            s += (double)w[o * n_in + i] * x[i];
        y[o] = s + (bias != NULL ? bias[o] : 0.0);
    }
    slm_free(x);
}

/* RoPE of one head at position pos, from the formulas (RoFormer, YaRN paper). */
static void ref_rope(const struct spec *s, const struct ref *r, double *v, int pos)
{
    uint32_t hd = spec_head_dim(s), n_rot = hd, half = n_rot / 2;
    bool neox = strcmp(s->arch, "qwen2") == 0 || strcmp(s->arch, "qwen3") == 0;
    const float *ff = ref_get(r, "rope_freqs.weight");
    double base = s->freq_base, factor = s->factor;
    double mscale = 1.0, lo = 0.0, hi = 0.0;

    if (s->scaling == 2) {
        double orig = s->orig_ctx != 0 ? s->orig_ctx : s->n_ctx_train;
        /* Dimension index whose wavelength completes b turns in orig tokens. */
        double d_fast = n_rot * log(orig / (32.0 * 2.0 * M_PI)) / (2.0 * log(base));
        double d_slow = n_rot * log(orig / (1.0 * 2.0 * M_PI)) / (2.0 * log(base));
        lo = fmax(0.0, floor(d_fast));
        hi = fmin(n_rot - 1.0, ceil(d_slow));
        mscale = 1.0 + 0.1 * log(factor);
        if (s->log_mul != 0.0f) mscale /= 1.0 + 0.1 * s->log_mul * log(factor);
    }
    for (uint32_t i = 0; i < half; i++) {
        double freq = pow(base, -2.0 * i / n_rot);
        double th, c, sn;
        uint32_t a = neox ? i : 2 * i, b2 = neox ? i + half : 2 * i + 1;
        double x0 = v[a], x1 = v[b2];

        if (ff != NULL) freq /= ff[i];
        th = pos * freq;
        if (s->scaling == 1) {
            th /= factor;
        } else if (s->scaling == 2) {
            double ramp = 1.0 - fmin(1.0, fmax(0.0, (i - lo) / fmax(0.001, hi - lo)));
            th = th / factor * (1.0 - ramp) + th * ramp;
        }
        c = cos(th) * mscale;
        sn = sin(th) * mscale;
        v[a] = x0 * c - x1 * sn;
        v[b2] = x0 * sn + x1 * c;
    }
}

static double round_f16(double x)
{
    return fp16_to_f32(f32_to_fp16((float)x));
}

/*
 * q (rounded to F16) . k (F16 values) in float, added in the order of
 * ggml_vec_dot_f16 on AVX-512, which the engine follows so that its scores
 * are llama.cpp's to the bit (model_decode.c, dot_ggml_f16): 64 lanes, lane i
 * taking elements i, i + 64, ...; lanes folded (i, i + 32) + (i + 16, i + 48),
 * then halves of 16 three times; a tail beyond 64k in double. Every product of
 * two F16 values is exact in float, so only the order matters, and that order
 * is what this file states independently of the engine's code.
 */
static double ref_dot_f16_order(const double *q, const double *k, size_t n)
{
    float acc[64] = { 0 }, v[16];
    size_t n64 = n & ~(size_t)63;
    double sum;

    for (size_t b = 0; b < n64; b += 64)
        for (size_t i = 0; i < 64; i++)
            acc[i] += (float)round_f16(q[b + i]) * (float)k[b + i];
    for (size_t i = 0; i < 16; i++)
        v[i] = (acc[i] + acc[i + 32]) + (acc[i + 16] + acc[i + 48]);
    for (size_t i = 0; i < 8; i++)
        v[i] += v[i + 8];
    for (size_t i = 0; i < 4; i++)
        v[i] += v[i + 4];
    sum = (double)((v[0] + v[2]) + (v[1] + v[3]));
    for (size_t i = n64; i < n; i++)
        sum += (double)((float)round_f16(q[i]) * (float)k[i]);
    return sum;
}

/*
 * Strict-mode attention for one head: where the engine (and llama.cpp's
 * flash attention) round, this rounds too, and nowhere else: q to F16, the
 * scores in F32, a per-position online softmax with an F16 accumulator for
 * the weighted values (rescaled and rounded on a new maximum, rounded after
 * each added value), normalised at the end. Dot products are in double (only
 * their summation order differs from the engine). K and V rows are n_pos
 * cached F16 values with a stride of stride doubles.
 */
static void ref_attend_f16(const double *q, const double *kc, const double *vc, size_t stride,
                           size_t n_pos, size_t hd, double *out)
{
    float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY, l = 0.0f;
    float acc[512];

    SLM_ASSERT(hd <= 512);
    for (size_t i = 0; i < hd; i++)
        acc[i] = 0.0f;
    for (size_t j = 0; j < n_pos; j++) {
        double dot = 0.0;
        float sj, ms = 1.0f, w = 1.0f;

        dot = ref_dot_f16_order(q, kc + j * stride, hd);
        sj = (float)dot * scale;
        if (sj > mx) {
            ms = expf(mx - sj);
            mx = sj;
            for (size_t i = 0; i < hd; i++)
                acc[i] = (float)round_f16(acc[i] * ms);
        } else {
            w = expf(sj - mx);
        }
        for (size_t i = 0; i < hd; i++)
            acc[i] = (float)round_f16(fmaf((float)vc[j * stride + i], w, acc[i]));
        l = fmaf(l, ms, w);
    }
    for (size_t i = 0; i < hd; i++)
        out[i] = acc[i] * (1.0f / l);
}

/*
 * Logits of every position of toks[0..n) run from position 0: out[n][V].
 * The KV cache is kept in f16 precision like the engine's.
 */
static void ref_forward(const struct spec *s, const struct ref *r, const tok_id *toks, size_t n,
                        double *out)
{
    uint32_t hd = spec_head_dim(s), E = s->n_embd, V = r->n_vocab, F = s->n_ff;
    size_t nq = (size_t)s->n_head * hd, nkv = (size_t)s->n_head_kv * hd;
    size_t L = s->n_layer;
    double *kc = slm_xcalloc(L * n * nkv, sizeof(double));
    double *vc = slm_xcalloc(L * n * nkv, sizeof(double));
    double *x = slm_xcalloc(E, sizeof(double)), *xn = slm_xcalloc(E, sizeof(double));
    double *q = slm_xcalloc(nq, sizeof(double)), *k = slm_xcalloc(nkv, sizeof(double));
    double *v = slm_xcalloc(nkv, sizeof(double)), *att = slm_xcalloc(nq, sizeof(double));
    double *o = slm_xcalloc(E, sizeof(double)), *g = slm_xcalloc(F, sizeof(double));
    double *u = slm_xcalloc(F, sizeof(double)), *sc = slm_xcalloc(n, sizeof(double));
    const float *embd = ref_get(r, "token_embd.weight");
    const char *wout = s->tied ? "token_embd.weight" : "output.weight";
    char nm[64], nm2[64];

#define W(il, x)  (snprintf(nm, sizeof(nm), "blk.%zu.%s", il, x), ref_get(r, nm))
#define WN(il, x) (snprintf(nm2, sizeof(nm2), "blk.%zu.%s", il, x), nm2)
    for (size_t t = 0; t < n; t++) {
        double temp = 1.0;
        if (s->temp_scale != 0.0f) {
            double orig = s->orig_ctx != 0 ? s->orig_ctx : s->n_ctx_train;
            temp = 1.0 + s->temp_scale * log(floor((double)t / orig) + 1.0);
        }
        for (size_t i = 0; i < E; i++)
            x[i] = embd[(size_t)toks[t] * E + i];
        for (size_t il = 0; il < L; il++) {
            ref_rmsnorm(xn, x, W(il, "attn_norm.weight"), E, 1e-5);
            ref_linear(r, q, WN(il, "attn_q.weight"), W(il, "attn_q.bias"), xn, E, nq);
            ref_linear(r, k, WN(il, "attn_k.weight"), W(il, "attn_k.bias"), xn, E, nkv);
            ref_linear(r, v, WN(il, "attn_v.weight"), W(il, "attn_v.bias"), xn, E, nkv);
            for (size_t h = 0; h < s->n_head; h++) {
                const float *qn = W(il, "attn_q_norm.weight");
                if (qn != NULL) ref_rmsnorm(q + h * hd, q + h * hd, qn, hd, 1e-5);
                ref_rope(s, r, q + h * hd, (int)t);
                for (size_t i = 0; i < hd; i++)
                    q[h * hd + i] *= temp;
            }
            for (size_t h = 0; h < s->n_head_kv; h++) {
                const float *kn = W(il, "attn_k_norm.weight");
                if (kn != NULL) ref_rmsnorm(k + h * hd, k + h * hd, kn, hd, 1e-5);
                ref_rope(s, r, k + h * hd, (int)t);
            }
            for (size_t i = 0; i < nkv; i++) {
                kc[(il * n + t) * nkv + i] = round_f16(k[i]);
                vc[(il * n + t) * nkv + i] = round_f16(v[i]);
            }
            bool att_f16 = r->att_f16 && t >= r->att_exact_below;

            for (size_t h = 0; h < s->n_head && att_f16; h++) {
                size_t kvh = h / (s->n_head / s->n_head_kv);
                ref_attend_f16(q + h * hd, kc + (il * n) * nkv + kvh * hd,
                               vc + (il * n) * nkv + kvh * hd, nkv, t + 1, hd, att + h * hd);
            }
            for (size_t h = 0; h < s->n_head && !att_f16; h++) {
                size_t kvh = h / (s->n_head / s->n_head_kv);
                double mx = -INFINITY, sum = 0.0;
                for (size_t j = 0; j <= t; j++) {
                    double dot = 0.0;
                    for (size_t i = 0; i < hd; i++)
                        dot += q[h * hd + i] * kc[(il * n + j) * nkv + kvh * hd + i];
                    sc[j] = dot / sqrt((double)hd);
                    mx = fmax(mx, sc[j]);
                }
                for (size_t j = 0; j <= t; j++) {
                    sc[j] = exp(sc[j] - mx);
                    sum += sc[j];
                }
                for (size_t i = 0; i < hd; i++) {
                    double a = 0.0;
                    for (size_t j = 0; j <= t; j++)
                        a += sc[j] / sum * vc[(il * n + j) * nkv + kvh * hd + i];
                    att[h * hd + i] = a;
                }
            }
            ref_linear(r, o, WN(il, "attn_output.weight"), W(il, "attn_output.bias"), att, nq, E);
            for (size_t i = 0; i < E; i++)
                x[i] += o[i];
            ref_rmsnorm(xn, x, W(il, "ffn_norm.weight"), E, 1e-5);
            ref_linear(r, g, WN(il, "ffn_gate.weight"), NULL, xn, E, F);
            ref_linear(r, u, WN(il, "ffn_up.weight"), NULL, xn, E, F);
            for (size_t i = 0; i < F; i++)
                g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_linear(r, o, WN(il, "ffn_down.weight"), NULL, g, F, E);
            for (size_t i = 0; i < E; i++)
                x[i] += o[i];
        }
        ref_rmsnorm(xn, x, ref_get(r, "output_norm.weight"), E, 1e-5);
        ref_linear(r, out + t * V, wout, NULL, xn, E, V);
    }
#undef W
#undef WN
    slm_free(kc);
    slm_free(vc);
    slm_free(x);
    slm_free(xn);
    slm_free(q);
    slm_free(k);
    slm_free(v);
    slm_free(att);
    slm_free(o);
    slm_free(g);
    slm_free(u);
    slm_free(sc);
}

/* ---- helpers ---- */

static const char *model_path(const char *name)
{
    static char path[512];

    snprintf(path, sizeof(path), "%s/%s.gguf", t_tmpdir(), name);
    return path;
}

static struct model *load_ok(const char *path)
{
    struct model *m = NULL;
    struct slm_diag d = { 0 };
    int rc = model_load(path, &m, &d);

    if (rc < 0) t_fail(__FILE__, __LINE__, "model_load: %s: %s", slm_strerror(rc), d.msg);
    return m;
}

static struct model_context *ctx_new_ex(struct model *m, uint32_t n_ctx, uint32_t n_seq,
                                        uint32_t n_batch, uint32_t n_threads, uint32_t n_outputs,
                                        bool attn_exact)
{
    struct model_context_params p = model_context_params_default();
    struct model_context *c = NULL;
    struct slm_diag d = { 0 };
    int rc;

    p.n_ctx = n_ctx;
    p.n_seq = n_seq;
    p.n_batch = n_batch;
    p.n_threads = n_threads;
    p.n_outputs = n_outputs;
    p.attn_exact = attn_exact;
    rc = model_context_new(m, &p, &c, &d);
    if (rc < 0) t_fail(__FILE__, __LINE__, "model_context_new: %s: %s", slm_strerror(rc), d.msg);
    return c;
}

static struct model_context *ctx_new(struct model *m, uint32_t n_ctx, uint32_t n_seq,
                                     uint32_t n_batch, uint32_t n_threads, uint32_t n_outputs)
{
    return ctx_new_ex(m, n_ctx, n_seq, n_batch, n_threads, n_outputs, false);
}

/* Decodes toks[0..n) of seq from position p0 in one batch; every row asks logits. */
static void decode_all(struct model_context *c, const tok_id *toks, size_t n, int32_t seq,
                       int32_t p0, float *logits, uint32_t V)
{
    int32_t pos[64], sq[64];
    bool want[64];
    struct model_batch b = { n, toks, pos, sq, want };
    struct slm_diag d = { 0 };
    int rc;

    ASSERT(n <= 64);
    for (size_t i = 0; i < n; i++) {
        pos[i] = p0 + (int32_t)i;
        sq[i] = seq;
        want[i] = true;
    }
    rc = model_decode(c, &b, &d);
    if (rc < 0) t_fail(__FILE__, __LINE__, "model_decode: %s: %s", slm_strerror(rc), d.msg);
    for (size_t i = 0; i < n; i++) {
        const float *l = model_logits(c, i);
        ASSERT_NOT_NULL(l);
        memcpy(logits + i * V, l, V * sizeof(float));
    }
    ASSERT_NULL(model_logits(c, n));
}

static void make_prompt(tok_id *toks, size_t n, uint32_t n_vocab, uint64_t seed)
{
    struct slm_rng rng;

    slm_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        toks[i] = (tok_id)slm_rng_below(&rng, n_vocab);
}

/* max |a - b| / rms(b) over n values. */
static double rel_err(const float *a, const double *b, size_t n)
{
    double mx = 0.0, ss = 0.0;

    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= mx)) mx = isnan(e) ? INFINITY : e;
        ss += b[i] * b[i];
    }
    return mx / sqrt(ss / (double)n + 1e-30);
}

static double rel_err_ff(const float *a, const float *b, size_t n)
{
    double mx = 0.0, ss = 0.0;

    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= mx)) mx = isnan(e) ? INFINITY : e;
        ss += (double)b[i] * b[i];
    }
    return mx / sqrt(ss / (double)n + 1e-30);
}

#define PROMPT_LEN 12

struct ref_errs {
    double strict; /* vs the reference rounding activations like the kernels */
    double loose;  /* vs the all-f32 textbook reference */
};

#define N_SEQS  6
#define SEQ_LEN 6

/*
 * Builds s and runs N_SEQS prompts of SEQ_LEN tokens through the engine in
 * one batch (sequences interleaved) and through the reference one by one.
 *
 * strict: the reference rounds activations like the kernels; the error is
 * the smallest over the sequences of the sequence's max |a - b| / rms(b).
 * Rounding to 8 bits is a step function, so an f32-vs-double difference of
 * 1e-7 now and then moves one element to the neighbouring quantum, which
 * changes that position and, through its K/V, the later positions of its
 * sequence by ~1e-2. Independent sequences confine such a flip to one of
 * them; a real bug (a wrong row, bias, kernel, RoPE) shows in every one.
 * loose: max over everything against the all-f32 reference.
 */
static struct ref_errs engine_vs_reference(const struct spec *s, const char *name,
                                           uint32_t n_threads)
{
    struct ref r;
    struct model *m;
    struct model_context *c, *cx;
    tok_id toks[N_SEQS * SEQ_LEN];
    int32_t pos[N_SEQS * SEQ_LEN], seq[N_SEQS * SEQ_LEN];
    bool wantl[N_SEQS * SEQ_LEN];
    struct model_batch b = { N_SEQS * SEQ_LEN, toks, pos, seq, wantl };
    float *got, *gotx;
    double *want;
    struct ref_errs e = { INFINITY, 0.0 };
    uint32_t V;

    build_model(s, model_path(name), &r);
    m = load_ok(model_path(name));
    V = model_get_hparams(m)->n_vocab;
    ASSERT_EQ_INT(V, r.n_vocab);
    make_prompt(toks, N_SEQS * SEQ_LEN, V, s->seed + 1);
    /* Token i belongs to sequence i % N_SEQS at position i / N_SEQS. */
    for (size_t i = 0; i < N_SEQS * SEQ_LEN; i++) {
        seq[i] = (int32_t)(i % N_SEQS);
        pos[i] = (int32_t)(i / N_SEQS);
        wantl[i] = true;
    }
    /* The default context (llama.cpp's F16 attention rounding) is held to the
     * loose tolerance; an attn_exact context to the strict one, where F16
     * steps would make a double-precision reference meaningless. */
    c = ctx_new(m, 16, N_SEQS, N_SEQS * SEQ_LEN, n_threads, N_SEQS * SEQ_LEN);
    cx = ctx_new_ex(m, 16, N_SEQS, N_SEQS * SEQ_LEN, n_threads, N_SEQS * SEQ_LEN, true);
    ASSERT_OK(model_decode(c, &b, NULL));
    ASSERT_OK(model_decode(cx, &b, NULL));
    got = slm_xmalloc(SEQ_LEN * V * sizeof(float));
    gotx = slm_xmalloc(SEQ_LEN * V * sizeof(float));
    want = slm_xmalloc(SEQ_LEN * V * sizeof(double));
    for (size_t q = 0; q < N_SEQS; q++) {
        tok_id st[SEQ_LEN];
        double es;

        for (size_t t = 0; t < SEQ_LEN; t++) {
            st[t] = toks[t * N_SEQS + q];
            memcpy(got + t * V, model_logits(c, t * N_SEQS + q), V * sizeof(float));
            memcpy(gotx + t * V, model_logits(cx, t * N_SEQS + q), V * sizeof(float));
        }
        r.emulate_act = false;
        ref_forward(s, &r, st, SEQ_LEN, want);
        es = rel_err(got, want, (size_t)SEQ_LEN * V);
        e.loose = es > e.loose ? es : e.loose;
        r.emulate_act = true;
        ref_forward(s, &r, st, SEQ_LEN, want);
        es = rel_err(gotx, want, (size_t)SEQ_LEN * V);
        e.strict = es < e.strict ? es : e.strict;
    }
    if (t_env("T_VERBOSE", NULL) != NULL)
        fprintf(stderr, "# %s: rel err strict %.3g, loose %.3g\n", name, e.strict, e.loose);
    slm_free(got);
    slm_free(gotx);
    model_context_free(cx);
    slm_free(want);
    model_context_free(c);
    model_free(m);
    ref_free(&r);
    return e;
}

#define CHECK_REF2(spec, name, tol_strict, tol_loose)                                           \
    do {                                                                                        \
        struct ref_errs e_ = engine_vs_reference(&(spec), name, 2);                             \
        if (!(e_.strict <= (tol_strict)) || !(e_.loose <= (tol_loose)))                         \
            t_fail(__FILE__, __LINE__, "%s: relative error %.3g (strict), %.3g (f32) > %g, %g", \
                   name, e_.strict, e_.loose, (double)(tol_strict), (double)(tol_loose));       \
    } while (0)

#define CHECK_REF(spec, name, tol) CHECK_REF2(spec, name, 1e-4, tol)

/* ---- architectures (F32 weights) ---- */

TEST(model_llama_matches_reference)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_F32);

    CHECK_REF(s, "llama_f32", 2e-3);
}

TEST(model_llama_tied_matches_reference)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_F32);

    s.tied = true;
    s.n_head_kv = 4; /* plain multi-head attention */
    CHECK_REF(s, "llama_tied", 2e-3);
}

TEST(model_llama_linear_rope_scaling_matches_reference)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_F32);

    s.scaling = 1;
    s.factor = 4.0f;
    s.n_head_kv = 1;
    CHECK_REF(s, "llama_linear", 2e-3);
}

TEST(model_llama3_rope_freqs_matches_reference)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_F32);
    struct model *m;

    s.rope_freqs = true;
    s.freq_base = 500000.0f;
    CHECK_REF(s, "llama3", 2e-3);
    m = load_ok(model_path("llama3"));
    ASSERT_EQ_INT(model_get_hparams(m)->rope_scaling, ROPE_SCALING_LLAMA3);
    model_free(m);
}

TEST(model_mistral3_yarn_matches_reference)
{
    struct spec s = spec_default("mistral3", TENSOR_TYPE_F32);

    s.scaling = 2;
    s.factor = 16.0f;
    s.orig_ctx = 4096; /* ramp between dims ~10 and ~23 of 32 pairs */
    s.n_ctx_train = 65536;
    CHECK_REF(s, "mistral3_yarn", 2e-3);
    s.log_mul = 0.5f;
    CHECK_REF(s, "mistral3_yarn_logmul", 2e-3);
}

TEST(model_mistral3_attention_temperature_matches_reference)
{
    struct spec s = spec_default("mistral3", TENSOR_TYPE_F32);

    s.scaling = 2;
    s.factor = 2.0f;
    s.orig_ctx = 4; /* the temperature changes every 4 positions */
    s.temp_scale = 0.5f;
    CHECK_REF(s, "mistral3_temp", 2e-3);
}

TEST(model_qwen2_biases_matches_reference)
{
    struct spec s = spec_default("qwen2", TENSOR_TYPE_F32);

    s.freq_base = 1000000.0f;
    CHECK_REF(s, "qwen2", 2e-3);
}

TEST(model_qwen3_qk_norm_matches_reference)
{
    struct spec s = spec_default("qwen3", TENSOR_TYPE_F32);

    s.head_dim = 128; /* n_head * head_dim = 512 != n_embd, as in Qwen3 */
    s.tied = true;
    CHECK_REF(s, "qwen3", 2e-3);
}

/* The comparison is able to fail: a model whose reference differs in one
 * detail (NeoX vs normal RoPE pairing) is far outside the tolerance. */
TEST(model_reference_detects_wrong_rope)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_F32);
    struct ref r;
    struct model *m;
    struct model_context *c;
    tok_id toks[PROMPT_LEN];
    float *got;
    double *want;
    uint32_t V;

    build_model(&s, model_path("neg"), &r);
    m = load_ok(model_path("neg"));
    V = r.n_vocab;
    make_prompt(toks, PROMPT_LEN, V, 7);
    c = ctx_new(m, 64, 1, 64, 1, PROMPT_LEN);
    got = slm_xmalloc(PROMPT_LEN * V * sizeof(float));
    want = slm_xmalloc(PROMPT_LEN * V * sizeof(double));
    decode_all(c, toks, PROMPT_LEN, 0, 0, got, V);
    s.arch = "qwen2"; /* the reference now pairs dimensions NeoX-style */
    ref_forward(&s, &r, toks, PROMPT_LEN, want);
    ASSERT(rel_err(got, want, (size_t)PROMPT_LEN * V) > 0.05);
    slm_free(got);
    slm_free(want);
    model_context_free(c);
    model_free(m);
    ref_free(&r);
}

/* 150 positions in batches of 64, 50 and 36: several online-softmax blocks. */
TEST(model_long_prompt_matches_reference)
{
    struct spec s = spec_default("qwen2", TENSOR_TYPE_F32);
    struct ref r;
    struct model *m;
    struct model_context *c;
    tok_id toks[150];
    float *got;
    double *want;
    uint32_t V;
    size_t done = 0;

    s.n_layer = 1;
    build_model(&s, model_path("long"), &r);
    r.emulate_act = true;   /* F32 weights: only the attention rounding is emulated */
    r.att_f16 = true;       /* the engine's default attention ... */
    r.att_exact_below = 64; /* ... except in the first batch, of 64 tokens */
    m = load_ok(model_path("long"));
    V = r.n_vocab;
    make_prompt(toks, 150, V, 77);
    c = ctx_new(m, 256, 1, 64, 2, 64);
    got = slm_xmalloc(150 * V * sizeof(float));
    want = slm_xmalloc(150 * V * sizeof(double));
    while (done < 150) {
        size_t n = done == 0 ? 64 : (done == 64 ? 50 : 36);
        int32_t pos[64];
        bool wl[64];
        struct model_batch b = { n, toks + done, pos, NULL, wl };

        for (size_t i = 0; i < n; i++) {
            pos[i] = (int32_t)(done + i);
            wl[i] = true;
        }
        ASSERT_OK(model_decode(c, &b, NULL));
        for (size_t i = 0; i < n; i++)
            memcpy(got + (done + i) * V, model_logits(c, i), V * sizeof(float));
        done += n;
    }
    ref_forward(&s, &r, toks, 150, want);
    ASSERT(rel_err(got, want, 150 * (size_t)V) < 1e-3);
    slm_free(got);
    slm_free(want);
    model_context_free(c);
    model_free(m);
    ref_free(&r);
}

/* ---- weight types ---- */

/* See the file comment: strict = activations rounded like the kernels. */
#define STRICT_TOL  1e-3
#define LOOSE_TOL_Q 0.15

static void check_type(enum tensor_type t, double tol_strict, double tol_loose)
{
    struct spec s = spec_default("llama", t);
    char name[32];

    snprintf(name, sizeof(name), "llama_%s", tensor_type_name(t));
    CHECK_REF2(s, name, tol_strict, tol_loose);
}

TEST(model_f16_matches_reference)
{
    check_type(TENSOR_TYPE_F16, 5e-3, 1e-2);
}

TEST(model_bf16_matches_reference)
{
    check_type(TENSOR_TYPE_BF16, STRICT_TOL, 5e-2);
}

TEST(model_q8_0_matches_reference)
{
    check_type(TENSOR_TYPE_Q8_0, STRICT_TOL, LOOSE_TOL_Q);
}

TEST(model_q4_0_matches_reference)
{
    check_type(TENSOR_TYPE_Q4_0, STRICT_TOL, LOOSE_TOL_Q);
}

TEST(model_q4_k_matches_reference)
{
    check_type(TENSOR_TYPE_Q4_K, STRICT_TOL, LOOSE_TOL_Q);
}

TEST(model_q5_k_matches_reference)
{
    check_type(TENSOR_TYPE_Q5_K, STRICT_TOL, LOOSE_TOL_Q);
}

TEST(model_q6_k_matches_reference)
{
    check_type(TENSOR_TYPE_Q6_K, STRICT_TOL, LOOSE_TOL_Q);
}

TEST(model_mixed_types_match_reference)
{
    /* Like Q4_K_M: Q4_K matrices, Q6_K attn_v/ffn_down, Q8_0 embeddings. */
    struct spec s = spec_default("qwen2", TENSOR_TYPE_Q4_K);

    s.v_type = TENSOR_TYPE_Q6_K;
    s.embd_type = TENSOR_TYPE_Q8_0;
    CHECK_REF2(s, "qwen2_mixed", STRICT_TOL, LOOSE_TOL_Q);
    s = spec_default("qwen3", TENSOR_TYPE_Q8_0);
    s.embd_type = TENSOR_TYPE_Q4_0; /* tied: the output uses Q4_0 too */
    s.tied = true;
    CHECK_REF2(s, "qwen3_q4_0_tied", STRICT_TOL, LOOSE_TOL_Q);
}

/* ---- batching, sequences, threads ---- */

TEST(model_batch_equals_single_token_decodes)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_Q8_0);
    struct model *m;
    struct model_context *c1, *c2;
    tok_id toks[PROMPT_LEN];
    float *all, *one;
    uint32_t V;

    build_model(&s, model_path("batch"), NULL);
    m = load_ok(model_path("batch"));
    V = model_get_hparams(m)->n_vocab;
    make_prompt(toks, PROMPT_LEN, V, 3);
    c1 = ctx_new(m, 64, 1, 64, 2, PROMPT_LEN);
    c2 = ctx_new(m, 64, 1, 1, 2, 1);
    all = slm_xmalloc(PROMPT_LEN * V * sizeof(float));
    one = slm_xmalloc(V * sizeof(float));
    decode_all(c1, toks, PROMPT_LEN, 0, 0, all, V);
    for (size_t i = 0; i < PROMPT_LEN; i++) {
        decode_all(c2, toks + i, 1, 0, (int32_t)i, one, V);
        ASSERT(rel_err_ff(one, all + i * V, V) < 1e-4);
    }
    ASSERT_EQ_INT(model_seq_len(c1, 0), PROMPT_LEN);
    ASSERT_EQ_INT(model_seq_len(c2, 0), PROMPT_LEN);
    slm_free(all);
    slm_free(one);
    model_context_free(c1);
    model_context_free(c2);
    model_free(m);
}

TEST(model_interleaved_sequences_equal_separate_runs)
{
    struct spec s = spec_default("qwen2", TENSOR_TYPE_Q4_K);
    struct model *m;
    struct model_context *c;
    tok_id a[8], bt[5], toks[13];
    int32_t pos[13], seq[13];
    bool want[13];
    float *la, *lb;
    struct model_batch b = { 13, toks, pos, seq, want };
    size_t ia = 0, ib = 0, out_a = 0, out_b = 0;
    uint32_t V;

    build_model(&s, model_path("inter"), NULL);
    m = load_ok(model_path("inter"));
    V = model_get_hparams(m)->n_vocab;
    make_prompt(a, 8, V, 11);
    make_prompt(bt, 5, V, 12);
    la = slm_xmalloc(8 * V * sizeof(float));
    lb = slm_xmalloc(5 * V * sizeof(float));
    c = ctx_new(m, 32, 3, 16, 2, 16);
    decode_all(c, a, 8, 0, 0, la, V);
    decode_all(c, bt, 5, 2, 0, lb, V);
    model_context_free(c);
    /* One batch: a and b interleaved a a b a b b a ..., into sequences 1 and 0. */
    c = ctx_new(m, 32, 3, 16, 2, 16);
    for (size_t i = 0; i < 13; i++) {
        bool take_a = ib == 5 || (ia < 8 && i % 3 != 2);
        toks[i] = take_a ? a[ia] : bt[ib];
        pos[i] = (int32_t)(take_a ? ia++ : ib++);
        seq[i] = take_a ? 1 : 0;
        want[i] = true;
    }
    ASSERT_OK(model_decode(c, &b, NULL));
    for (size_t i = 0; i < 13; i++) {
        const float *l = model_logits(c, i);
        const float *ref = seq[i] == 1 ? la + (size_t)out_a++ * V : lb + (size_t)out_b++ * V;
        ASSERT(rel_err_ff(l, ref, V) < 1e-4);
    }
    ASSERT_EQ_INT(model_seq_len(c, 1), 8);
    ASSERT_EQ_INT(model_seq_len(c, 0), 5);
    ASSERT_EQ_INT(model_seq_len(c, 2), 0);
    slm_free(la);
    slm_free(lb);
    model_context_free(c);
    model_free(m);
}

TEST(model_threads_give_identical_logits)
{
    struct spec s = spec_default("qwen3", TENSOR_TYPE_Q5_K);
    struct model *m;
    float *ref = NULL;
    tok_id toks[PROMPT_LEN];
    uint32_t V;

    s.head_dim = 128;
    build_model(&s, model_path("thr"), NULL);
    m = load_ok(model_path("thr"));
    V = model_get_hparams(m)->n_vocab;
    make_prompt(toks, PROMPT_LEN, V, 5);
    for (uint32_t nt = 1; nt <= 3; nt++) {
        struct model_context *c = ctx_new(m, 64, 1, 64, nt, PROMPT_LEN);
        float *got = slm_xmalloc(PROMPT_LEN * V * sizeof(float));

        ASSERT_EQ_INT(model_context_n_threads(c), nt);
        decode_all(c, toks, PROMPT_LEN, 0, 0, got, V);
        /* then a few single-token steps (the decode path) */
        for (size_t i = 0; i < 3; i++)
            decode_all(c, toks + i, 1, 0, PROMPT_LEN + (int32_t)i, got + i * V, V);
        if (ref == NULL)
            ref = got;
        else {
            ASSERT_EQ_MEM(got, ref, PROMPT_LEN * V * sizeof(float));
            slm_free(got);
        }
        model_context_free(c);
    }
    slm_free(ref);
    model_free(m);
}

/* Runs the prompt with SLM_CPU=name in a child process; logits through a pipe. */
static void logits_in_child(const char *cpu, const char *path, const tok_id *toks, float *out,
                            uint32_t V)
{
    int fds[2];
    pid_t pid;
    size_t want = PROMPT_LEN * V * sizeof(float), got = 0;
    int st;

    ASSERT(pipe(fds) == 0);
    pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        struct model *m;
        struct model_context *c;
        float *l = slm_xmalloc(want);

        close(fds[0]);
        if (cpu != NULL) setenv("SLM_CPU", cpu, 1);
        m = load_ok(path);
        c = ctx_new(m, 64, 1, 64, 2, PROMPT_LEN);
        decode_all(c, toks, PROMPT_LEN, 0, 0, l, V);
        for (size_t o = 0; o < want;) {
            ssize_t w = write(fds[1], (char *)l + o, want - o);
            if (w <= 0) _exit(3);
            o += (size_t)w;
        }
        _exit(0);
    }
    close(fds[1]);
    while (got < want) {
        ssize_t r = read(fds[0], (char *)out + got, want - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fds[0]);
    ASSERT(waitpid(pid, &st, 0) == pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_EQ_SIZE(got, want);
}

TEST(model_scalar_kernels_match_default)
{
    static const enum tensor_type types[] = { TENSOR_TYPE_F32, TENSOR_TYPE_F16, TENSOR_TYPE_Q4_K,
                                              TENSOR_TYPE_Q8_0 };

    for (size_t i = 0; i < SLM_ARRAY_LEN(types); i++) {
        struct spec s = spec_default("mistral3", types[i]);
        char name[32];
        tok_id toks[PROMPT_LEN];
        float *a, *b;
        uint32_t V;
        struct model *m;

        s.scaling = 2;
        s.factor = 8.0f;
        s.orig_ctx = 1024;
        snprintf(name, sizeof(name), "cpu_%zu", i);
        build_model(&s, model_path(name), NULL);
        m = load_ok(model_path(name));
        V = model_get_hparams(m)->n_vocab;
        model_free(m);
        make_prompt(toks, PROMPT_LEN, V, 9);
        a = slm_xmalloc(PROMPT_LEN * V * sizeof(float));
        b = slm_xmalloc(PROMPT_LEN * V * sizeof(float));
        logits_in_child("scalar", model_path(name), toks, a, V);
        logits_in_child(NULL, model_path(name), toks, b, V);
        /* Same quantized integer math, different f32 summation order. */
        ASSERT(rel_err_ff(a, b, PROMPT_LEN * V) < 1e-3);
        slm_free(a);
        slm_free(b);
    }
}

/*
 * Repacked Q8_0 weights (the AVX-512 kernels' layout) against the file's
 * own layout (SLM_REPACK=0): a single-token decode and a short batch give
 * the same bits (llama.cpp's rounding is kept below 32 columns); a 40-token
 * batch, through the packed batch kernel (one rounding per block instead of
 * eight lanes), agrees within 5e-3 of the logits' RMS: the rounding moves a
 * few activations across a Q8_0 step (measured 9e-4 with F32 attention; the
 * default F16 attention of a random model amplifies it to 4e-2, as it does
 * any rounding, so the batch runs with attn_exact).
 */
static void decode_logits(const char *path, const tok_id *toks, size_t n, float *out, uint32_t V)
{
    struct model *m = load_ok(path);
    struct model_context *c = ctx_new_ex(m, 128, 1, 64, 2, 64, n >= 32);

    decode_all(c, toks, n, 0, 0, out, V);
    model_context_free(c);
    model_free(m);
}

/*
 * Repacked weights give the file layout's logits: bit for bit for Q8_0 below
 * 32 columns (llama.cpp's rounding is kept), within tol otherwise. The sums
 * of the packed kernels run in another order, and every layer rounds its
 * activations again (to 8 bits, BF16 or F16), so a last-bit difference moves
 * some across a rounding step; random models with tied embeddings amplify
 * that most (measured: up to 5e-2 at 40 tokens, the same with the table
 * itself left unpacked). A wrong row or layout gives errors of order 1. The
 * tied cases pack the token embedding table too, so the embedding lookup
 * goes through kernel_ops.unpack.
 */
static void check_repacked(enum tensor_type t, bool tied, double tol)
{
    struct spec s = spec_default("llama", t);
    tok_id toks[40];
    float *a, *b;
    uint32_t V;
    uint64_t rb = 0, rb_ff = 0, kvd;
    struct model *m;

    s.tied = tied;
    s.vocab_pad = 11; /* 272 tokens: whole groups, so a tied table is packed too */
    build_model(&s, model_path("pack"), NULL);
    m = load_ok(model_path("pack"));
    V = model_get_hparams(m)->n_vocab;
    ASSERT(model_packed_bytes(m) > 0); /* the layout under test is in use */
    ASSERT_OK(tensor_row_size(t, s.n_embd, &rb));
    ASSERT_EQ_INT(V % KERNELS_PACK_ROWS, 0);
    /* Every matrix is packed, the output (the token table when tied) too. */
    ASSERT_OK(tensor_row_size(t, s.n_ff, &rb_ff));
    kvd = (uint64_t)s.n_head_kv * spec_head_dim(&s);
    ASSERT_EQ_SIZE(model_packed_bytes(m),
                   s.n_layer * (rb * (2 * s.n_embd + 2 * kvd + 2 * s.n_ff) + rb_ff * s.n_embd) +
                       V * rb);
    model_free(m);
    make_prompt(toks, 40, V, 21);
    a = slm_xmalloc(40 * (size_t)V * sizeof(float));
    b = slm_xmalloc(40 * (size_t)V * sizeof(float));
    for (size_t n = 1; n <= 40; n += 39) {
        decode_logits(model_path("pack"), toks, n, a, V);
        ASSERT_OK(setenv("SLM_REPACK", "0", 1));
        decode_logits(model_path("pack"), toks, n, b, V);
        ASSERT_OK(unsetenv("SLM_REPACK"));
        if (n < 32 && t == TENSOR_TYPE_Q8_0)
            ASSERT(memcmp(a, b, n * V * sizeof(float)) == 0);
        else
            ASSERT_NEAR(rel_err_ff(a, b, n * V), 0.0, tol);
    }
    slm_free(a);
    slm_free(b);
}

TEST(model_repacked_weights_match_file_layout)
{
    static const struct {
        enum tensor_type t;
        bool tied;
        double tol;
    } cases[] = { { TENSOR_TYPE_Q8_0, false, 1e-1 }, { TENSOR_TYPE_Q8_0, true, 1e-1 },
                  { TENSOR_TYPE_Q4_K, true, 1e-1 },  { TENSOR_TYPE_Q5_K, false, 1e-1 },
                  { TENSOR_TYPE_Q5_1, true, 1e-1 },  { TENSOR_TYPE_F16, true, 1e-2 },
                  { TENSOR_TYPE_F16, false, 1e-2 },  { TENSOR_TYPE_BF16, false, 3e-2 } };
    size_t n = 0;

    if (getenv("SLM_REPACK") != NULL) SKIP("SLM_REPACK is set by the caller");
    for (size_t i = 0; i < SLM_ARRAY_LEN(cases); i++) {
        if (kernels_get()->pack[cases[i].t] == NULL) continue;
        check_repacked(cases[i].t, cases[i].tied, cases[i].tol);
        n++;
    }
    if (n == 0) SKIP("no packed kernels on this CPU");
}

/* ---- the repack cache (model_pack.c) ---- */

/* Loads path and returns where its packed weights came from. */
static enum model_pack_source pack_source_of(const char *path)
{
    struct model *m = load_ok(path);
    enum model_pack_source src = model_pack_source(m);

    model_free(m);
    return src;
}

/* Entries of dir whose name contains sub. */
static size_t count_entries(const char *dir, const char *sub)
{
    DIR *dh = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    ASSERT(dh != NULL);
    while ((e = readdir(dh)) != NULL)
        if (strstr(e->d_name, sub) != NULL) n++;
    closedir(dh);
    return n;
}

static void cache_path_of(char *out, size_t cap, const char *model)
{
    snprintf(out, cap, "%s.slmpack", model);
}

/*
 * The first load packs into MODEL.slmpack, later loads map it and compute
 * the same bits as packing in memory; a file that does not match this load
 * (the model changed, truncated, grown, a header byte changed, writable by
 * others) is replaced, never used; no temporary file is ever left behind.
 */
TEST(model_repack_cache_written_then_mapped)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_Q8_0);
    char mp[512], cp[600];
    tok_id toks[5];
    float *a, *b;
    struct stat st;
    uint32_t V;
    FILE *f;

    if (getenv("SLM_REPACK") != NULL) SKIP("SLM_REPACK is set by the caller");
    if (kernels_get()->pack[TENSOR_TYPE_Q8_0] == NULL) SKIP("no packed kernels on this CPU");
    ASSERT_OK(unsetenv("SLM_REPACK_CACHE"));
    s.tied = true;
    s.vocab_pad = 11;
    snprintf(mp, sizeof(mp), "%s", model_path("cache"));
    cache_path_of(cp, sizeof(cp), mp);
    build_model(&s, mp, NULL);
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_WRITTEN);
    ASSERT_OK(stat(cp, &st));
    ASSERT_EQ_INT(st.st_mode & (S_IWGRP | S_IWOTH), 0);
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_READ);

    /* Mapped, freshly written and in-memory packing: the same logits, bit for bit. */
    {
        struct model *m = load_ok(mp);

        V = model_get_hparams(m)->n_vocab;
        model_free(m);
    }
    make_prompt(toks, 5, V, 3);
    a = slm_xmalloc(5 * (size_t)V * sizeof(float));
    b = slm_xmalloc(5 * (size_t)V * sizeof(float));
    decode_logits(mp, toks, 5, a, V);
    ASSERT_OK(setenv("SLM_REPACK_CACHE", "off", 1));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_MEMORY);
    decode_logits(mp, toks, 5, b, V);
    ASSERT(memcmp(a, b, 5 * (size_t)V * sizeof(float)) == 0);
    ASSERT_OK(unsetenv("SLM_REPACK_CACHE"));
    ASSERT_OK(unlink(cp));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_WRITTEN);
    decode_logits(mp, toks, 5, b, V);
    ASSERT(memcmp(a, b, 5 * (size_t)V * sizeof(float)) == 0);

    /* The model file changed (its times): the cache is rewritten. */
    ASSERT_OK(utimensat(AT_FDCWD, mp, (struct timespec[2]){ { 0, UTIME_OMIT }, { 12345, 0 } }, 0));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_WRITTEN);
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_READ);
    /* Truncated, then one byte longer, then a header byte changed. */
    ASSERT_OK(stat(cp, &st));
    ASSERT_OK(truncate(cp, st.st_size / 2));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_WRITTEN);
    ASSERT_OK(truncate(cp, st.st_size + 1));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_WRITTEN);
    f = fopen(cp, "r+b");
    ASSERT(f != NULL);
    ASSERT_OK(fseek(f, 40, SEEK_SET)); /* in the kernel table's name */
    ASSERT_EQ_INT(fputc('#', f), '#');
    ASSERT_OK(fclose(f));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_WRITTEN);
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_READ);
    decode_logits(mp, toks, 5, b, V);
    ASSERT(memcmp(a, b, 5 * (size_t)V * sizeof(float)) == 0);
    /* Writable by others: a truncation under the mapping would crash us. */
    ASSERT_OK(chmod(cp, 0666));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_WRITTEN);
    ASSERT_OK(stat(cp, &st));
    ASSERT_EQ_INT(st.st_mode & (S_IWGRP | S_IWOTH), 0);
    /* Only the model and its cache: no temporary file. */
    ASSERT_EQ_SIZE(count_entries(t_tmpdir(), "cache"), 2);
    slm_free(a);
    slm_free(b);
}

/*
 * SLM_REPACK_CACHE=DIR puts the cache there under the model's name and a
 * hash of its path; a directory that cannot be written, or a disk that
 * cannot take the file (here a file-size limit), packs in memory and leaves
 * nothing behind.
 */
TEST(model_repack_cache_elsewhere_or_in_memory)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_Q8_0);
    char mp[512], dir[600], env[640];
    struct rlimit rl = { 16384, 16384 };

    if (getenv("SLM_REPACK") != NULL) SKIP("SLM_REPACK is set by the caller");
    if (kernels_get()->pack[TENSOR_TYPE_Q8_0] == NULL) SKIP("no packed kernels on this CPU");
    snprintf(mp, sizeof(mp), "%s", model_path("else"));
    build_model(&s, mp, NULL);
    snprintf(dir, sizeof(dir), "%s/c", t_tmpdir());
    ASSERT_OK(mkdir(dir, 0755));
    ASSERT_OK(setenv("SLM_REPACK_CACHE", dir, 1));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_WRITTEN);
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_CACHE_READ);
    ASSERT_EQ_SIZE(count_entries(dir, "else.gguf-"), 1);
    ASSERT_EQ_SIZE(count_entries(t_tmpdir(), ".slmpack"), 0);

    snprintf(env, sizeof(env), "%s/missing", dir);
    ASSERT_OK(setenv("SLM_REPACK_CACHE", env, 1));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_MEMORY);

    /* A file larger than the limit fails (EFBIG, not the signal) before any byte is written. */
    ASSERT_OK(unsetenv("SLM_REPACK_CACHE"));
    ASSERT(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
    ASSERT_OK(setrlimit(RLIMIT_FSIZE, &rl));
    ASSERT_EQ_INT(pack_source_of(mp), MODEL_PACK_MEMORY);
    ASSERT_EQ_SIZE(count_entries(t_tmpdir(), "else"), 1);
    ASSERT_EQ_SIZE(count_entries(dir, "else"), 1);
}

/* ---- KV cache operations ---- */

TEST(model_seq_cp_and_rm)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_Q8_0);
    struct model *m;
    struct model_context *c;
    tok_id toks[PROMPT_LEN];
    float *l0, *l1, *l2;
    uint32_t V;

    build_model(&s, model_path("kv"), NULL);
    m = load_ok(model_path("kv"));
    V = model_get_hparams(m)->n_vocab;
    make_prompt(toks, PROMPT_LEN, V, 13);
    l0 = slm_xmalloc(PROMPT_LEN * V * sizeof(float));
    l1 = slm_xmalloc(V * sizeof(float));
    l2 = slm_xmalloc(V * sizeof(float));
    c = ctx_new(m, 32, 2, 16, 2, 16);
    decode_all(c, toks, PROMPT_LEN, 0, 0, l0, V);
    /* Share the first 8 positions with sequence 1, then continue it. */
    ASSERT_OK(model_seq_cp(c, 0, 1, 8));
    ASSERT_EQ_INT(model_seq_len(c, 1), 8);
    decode_all(c, toks + 8, 1, 1, 8, l1, V);
    ASSERT(rel_err_ff(l1, l0 + 8 * V, V) < 1e-5);
    /* Forget positions 5.. of sequence 0 and decode them again. */
    model_seq_rm(c, 0, 5, -1);
    ASSERT_EQ_INT(model_seq_len(c, 0), 5);
    decode_all(c, toks + 5, 1, 0, 5, l2, V);
    ASSERT(rel_err_ff(l2, l0 + 5 * V, V) < 1e-5);
    /* Bad arguments. */
    ASSERT_ERR(model_seq_cp(c, 0, 2, 1), SLM_EINVAL);
    ASSERT_ERR(model_seq_cp(c, -1, 1, 1), SLM_EINVAL);
    ASSERT_ERR(model_seq_cp(c, 0, 1, 7), SLM_EINVAL); /* seq 0 holds 6 */
    model_seq_rm(c, 7, 0, -1);                        /* ignored */
    ASSERT_EQ_INT(model_seq_len(c, 7), 0);
    model_seq_rm(c, 1, 0, -1);
    ASSERT_EQ_INT(model_seq_len(c, 1), 0);
    slm_free(l0);
    slm_free(l1);
    slm_free(l2);
    model_context_free(c);
    model_free(m);
}

/* ---- decode errors ---- */

TEST(model_decode_rejects_bad_batches)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_Q8_0);
    struct model *m;
    struct model_context *c;
    tok_id toks[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    int32_t pos[8] = { 0, 1, 2, 3, 4, 5, 6, 7 }, seq[8] = { 0 };
    bool want[8] = { false };
    struct model_batch b = { 1, toks, pos, seq, want };
    struct slm_diag d;
    uint32_t V;

    build_model(&s, model_path("err"), NULL);
    m = load_ok(model_path("err"));
    V = model_get_hparams(m)->n_vocab;
    c = ctx_new(m, 6, 2, 4, 2, 2);
    ASSERT_EQ_INT(model_context_n_ctx(c), 6);
    /* Token ids. */
    toks[0] = -1;
    ASSERT_ERR(model_decode(c, &b, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "id -1") != NULL);
    toks[0] = (tok_id)V;
    ASSERT_ERR(model_decode(c, &b, &d), SLM_EINVAL);
    toks[0] = 1;
    /* Sequence out of range. */
    seq[0] = 2;
    ASSERT_ERR(model_decode(c, &b, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "sequence 2") != NULL);
    seq[0] = 0;
    /* Position gap. */
    pos[0] = 1;
    ASSERT_ERR(model_decode(c, &b, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "expected 0") != NULL);
    pos[0] = 0;
    /* Batch larger than n_batch. */
    b.n_tokens = 5;
    ASSERT_ERR(model_decode(c, &b, &d), SLM_ELIMIT);
    ASSERT(strstr(d.msg, "n_batch 4") != NULL);
    /* Too many logits rows. */
    b.n_tokens = 3;
    want[0] = want[1] = want[2] = true;
    ASSERT_ERR(model_decode(c, &b, &d), SLM_ELIMIT);
    want[0] = want[1] = want[2] = false;
    /* Empty batch. */
    b.n_tokens = 0;
    ASSERT_ERR(model_decode(c, &b, &d), SLM_EINVAL);
    /* Nothing above changed the cache. */
    ASSERT_EQ_INT(model_seq_len(c, 0), 0);
    /* Fill the context: 4 + 2 positions, then one more is refused. */
    b.n_tokens = 4;
    ASSERT_OK(model_decode(c, &b, &d));
    ASSERT_EQ_SIZE(model_logits(c, 0) != NULL, 0); /* no row asked */
    b.n_tokens = 2;
    pos[0] = 4;
    pos[1] = 5;
    ASSERT_OK(model_decode(c, &b, &d));
    ASSERT_EQ_INT(model_seq_len(c, 0), 6);
    b.n_tokens = 1;
    pos[0] = 6;
    ASSERT_ERR(model_decode(c, &b, &d), SLM_ELIMIT);
    ASSERT(strstr(d.msg, "context full") != NULL);
    /* Repeating a cached position is a gap too. */
    pos[0] = 3;
    ASSERT_ERR(model_decode(c, &b, &d), SLM_EINVAL);
    ASSERT_EQ_INT(model_seq_len(c, 0), 6);
    /* NULL pos/seq/logits: next position of sequence 0, logits for the last. */
    model_seq_rm(c, 0, 2, -1);
    b.pos = NULL;
    b.seq = NULL;
    b.logits = NULL;
    ASSERT_OK(model_decode(c, &b, &d));
    ASSERT_EQ_INT(model_seq_len(c, 0), 3);
    ASSERT_NOT_NULL(model_logits(c, 0));
    ASSERT_NULL(model_logits(c, 1));
    model_context_free(c);
    model_free(m);
}

TEST(model_decode_allocates_nothing)
{
    struct spec s = spec_default("qwen3", TENSOR_TYPE_Q4_K);
    struct model *m;
    struct model_context *c;
    tok_id toks[PROMPT_LEN];
    float *l;
    uint32_t V;

    build_model(&s, model_path("noalloc"), NULL);
    m = load_ok(model_path("noalloc"));
    V = model_get_hparams(m)->n_vocab;
    make_prompt(toks, PROMPT_LEN, V, 1);
    c = ctx_new(m, 64, 1, 64, 2, PROMPT_LEN);
    l = slm_xmalloc(PROMPT_LEN * V * sizeof(float));
    slm_alloc_fail_at(0);
    decode_all(c, toks, PROMPT_LEN, 0, 0, l, V);
    decode_all(c, toks, 1, 0, PROMPT_LEN, l, V);
    ASSERT_EQ_INT(slm_alloc_count(), 0);
    slm_free(l);
    model_context_free(c);
    model_free(m);
}

TEST(model_context_rejects_bad_params)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_Q8_0);
    struct model *m;
    struct model_context *c = NULL;
    struct model_context_params p = model_context_params_default();
    struct slm_diag d;

    build_model(&s, model_path("ctxp"), NULL);
    m = load_ok(model_path("ctxp"));
    p.n_ctx = SLM_LIMIT_CONTEXT + 1;
    ASSERT_ERR(model_context_new(m, &p, &c, &d), SLM_ELIMIT);
    ASSERT_NULL(c);
    p = model_context_params_default();
    p.n_seq = SLM_LIMIT_SEQUENCES + 1;
    ASSERT_ERR(model_context_new(m, &p, &c, &d), SLM_ELIMIT);
    p = model_context_params_default();
    p.n_threads = SLM_LIMIT_THREADS + 1;
    ASSERT_ERR(model_context_new(m, &p, &c, &d), SLM_ELIMIT);
    /* Defaults: the model's context (512 < 4096), one sequence. */
    p = model_context_params_default();
    p.n_threads = 1;
    ASSERT_OK(model_context_new(m, &p, &c, &d));
    ASSERT_EQ_INT(model_context_n_ctx(c), 512);
    model_context_free(c);
    model_context_free(NULL);
    model_free(m);
    model_free(NULL);
}

/* ---- loading: description, G12, G14, G17 ---- */

TEST(model_load_describes_model)
{
    struct spec s = spec_default("qwen2", TENSOR_TYPE_Q8_0);
    struct model *m;
    const struct model_hparams *hp;

    build_model(&s, model_path("desc"), NULL);
    m = load_ok(model_path("desc"));
    hp = model_get_hparams(m);
    ASSERT_EQ_STR(hp->arch, "qwen2");
    ASSERT_EQ_INT(hp->n_layer, 2);
    ASSERT_EQ_INT(hp->n_head_kv, 2);
    ASSERT_EQ_INT(hp->head_dim, 64);
    ASSERT_EQ_INT(hp->rope_type, ROPE_TYPE_NEOX);
    ASSERT(hp->has_qkv_bias);
    ASSERT(!hp->tied_embeddings);
    ASSERT(strncmp(model_describe(m), "qwen2 ", 6) == 0);
    ASSERT(model_n_params(m) > 1000000);
    ASSERT(model_weight_bytes(m) > model_n_params(m)); /* Q8_0: 34/32 bytes each */
    ASSERT_NOT_NULL(model_get_tokenizer(m));
    ASSERT_NOT_NULL(model_get_gguf(m));
    model_free(m);
}

/* Expects model_load of s to fail with code and a message containing what. */
static void expect_reject(const struct spec *s, int code, const char *what)
{
    struct model *m = NULL;
    struct slm_diag d = { 0 };
    const char *path = model_path("bad");
    int rc;

    build_model(s, path, NULL);
    rc = model_load(path, &m, &d);
    if (rc != code || strstr(d.msg, what) == NULL)
        t_fail(__FILE__, __LINE__, "expected %s with '%s', got %s: '%s'", slm_strerror(code), what,
               slm_strerror(rc), d.msg);
    ASSERT_NULL(m);
}

static struct spec with_key(const char *key, char kind, uint32_t u, float f, const char *str)
{
    struct spec s = spec_default("llama", TENSOR_TYPE_Q8_0);

    s.ko.key = key;
    s.ko.kind = kind;
    s.ko.u = u;
    s.ko.f = f;
    s.ko.s = str;
    return s;
}

TEST(model_load_rejects_bad_hparams)
{
    struct spec s;

    s = with_key("general.architecture", 's', 0, 0, "gpt2");
    expect_reject(&s, SLM_EUNSUPPORTED, "unsupported architecture 'gpt2'");
    s = with_key("block_count", 'u', 0, 0, NULL);
    expect_reject(&s, SLM_EFORMAT, "llama.block_count = 0");
    s = with_key("block_count", 'u', SLM_LIMIT_LAYERS + 1, 0, NULL);
    expect_reject(&s, SLM_EFORMAT, "block_count");
    s = with_key("attention.head_count", 'u', 0, 0, NULL);
    expect_reject(&s, SLM_EFORMAT, "attention.head_count = 0");
    s = with_key("attention.head_count", 'u', 3, 0, NULL);
    expect_reject(&s, SLM_EFORMAT, "not a multiple of attention.head_count = 3");
    s = with_key("attention.head_count_kv", 'u', 3, 0, NULL);
    expect_reject(&s, SLM_EFORMAT, "head_count_kv = 3 does not divide");
    s = with_key("rope.dimension_count", 'u', 128, 0, NULL);
    expect_reject(&s, SLM_EFORMAT, "rope.dimension_count = 128");
    s = with_key("context_length", 'u', 0, 0, NULL);
    expect_reject(&s, SLM_EFORMAT, "context_length = 0");
    s = with_key("context_length", 'u', SLM_LIMIT_CONTEXT + 1, 0, NULL);
    expect_reject(&s, SLM_EFORMAT, "context_length");
    s = with_key("attention.layer_norm_rms_epsilon", 'f', 0, NAN, NULL);
    expect_reject(&s, SLM_EFORMAT, "layer_norm_rms_epsilon");
    s = with_key("attention.layer_norm_rms_epsilon", 'f', 0, -1e-5f, NULL);
    expect_reject(&s, SLM_EFORMAT, "layer_norm_rms_epsilon = -1e-05");
    s = with_key("rope.freq_base", 'f', 0, INFINITY, NULL);
    expect_reject(&s, SLM_EFORMAT, "rope.freq_base");
    s = with_key("expert_count", 'u', 8, 0, NULL);
    expect_reject(&s, SLM_EUNSUPPORTED, "mixture-of-experts");
    s = with_key("rope.scaling.type", 's', 0, 0, "longrope");
    expect_reject(&s, SLM_EUNSUPPORTED, "longrope");
    s = with_key("embedding_length", 's', 0, 0, "256");
    expect_reject(&s, SLM_EFORMAT, "embedding_length");
}

TEST(model_load_rejects_bad_tensors)
{
    struct spec s;

    s = spec_default("llama", TENSOR_TYPE_Q8_0);
    s.omit = "blk.1.ffn_down.weight";
    expect_reject(&s, SLM_EFORMAT, "missing tensor 'blk.1.ffn_down.weight'");
    s = spec_default("llama", TENSOR_TYPE_Q8_0);
    s.omit = "output_norm.weight";
    expect_reject(&s, SLM_EFORMAT, "missing tensor 'output_norm.weight'");
    s = spec_default("llama", TENSOR_TYPE_Q8_0);
    s.reshape = "blk.0.attn_k.weight";
    expect_reject(&s, SLM_EFORMAT, "tensor 'blk.0.attn_k.weight': shape [256, 129]");
    s = spec_default("llama", TENSOR_TYPE_Q8_0);
    s.reshape = "blk.1.ffn_norm.weight";
    expect_reject(&s, SLM_EFORMAT, "blk.1.ffn_norm.weight");
    s = spec_default("llama", TENSOR_TYPE_Q8_0);
    s.retype = "blk.0.ffn_up.weight";
    expect_reject(&s, SLM_EUNSUPPORTED, "type tq2_0 has no matrix kernel");
    s = spec_default("llama", TENSOR_TYPE_Q8_0);
    s.extra = "blk.0.attn_qkv.bias";
    expect_reject(&s, SLM_EUNSUPPORTED, "tensor 'blk.0.attn_qkv.bias' is not used");
    s = spec_default("qwen2", TENSOR_TYPE_Q8_0);
    s.omit = "blk.0.attn_v.bias";
    expect_reject(&s, SLM_EFORMAT, "missing tensor 'blk.0.attn_v.bias'");
    s = spec_default("qwen3", TENSOR_TYPE_Q8_0);
    s.omit = "blk.1.attn_q_norm.weight";
    expect_reject(&s, SLM_EFORMAT, "missing tensor 'blk.1.attn_q_norm.weight'");
    s = spec_default("llama", TENSOR_TYPE_Q8_0);
    s.vocab_extra = 1;
    expect_reject(&s, SLM_EFORMAT, "token_embd.weight");
    /* A K-quant needs rows that are a multiple of 256. */
    s = spec_default("llama", TENSOR_TYPE_Q4_K);
    s.n_embd = 128;
    s.n_head = 2;
    s.n_head_kv = 1;
    s.embd_type = TENSOR_TYPE_Q8_0;
    s.wtype = TENSOR_TYPE_Q8_0;
    s.v_type = TENSOR_TYPE_F32;
    s.retype = NULL;
    build_model(&s, model_path("ok128"), NULL); /* control: loads */
    model_free(load_ok(model_path("ok128")));
}

TEST(model_load_survives_allocation_failures)
{
    struct spec s = spec_default("qwen2", TENSOR_TYPE_Q8_0);
    const char *path = model_path("torture");
    int rc = -1;

    s.n_layer = 1;
    build_model(&s, path, NULL);
    for (uint64_t n = 1; n < 100000 && rc < 0; n++) {
        struct model *m = NULL;
        struct model_context *c = NULL;
        struct model_context_params p = model_context_params_default();

        p.n_threads = 2;
        p.n_ctx = 16;
        slm_alloc_fail_at(n);
        rc = model_load(path, &m, NULL);
        if (rc == 0) {
            rc = model_context_new(m, &p, &c, NULL);
            model_context_free(c);
            model_free(m);
        }
        slm_alloc_fail_at(0);
        if (rc < 0)
            ASSERT_ERR(rc, SLM_ENOMEM);
        else
            ASSERT(n > 10);
    }
    ASSERT_OK(rc);
}
