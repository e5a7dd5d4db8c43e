/*
 * cmd_quantize.c - slm quantize IN.gguf OUT.gguf TYPE [--threads N].
 *
 * Converts the weights of a llama-family GGUF model to another tensor type
 * with the same per-tensor choices as llama-quantize without an imatrix
 * (src/llama-quant.cpp: tensor_allows_quantization, llama_tensor_get_type,
 * tensor_type_fallback), and the reference quantizers of engine/quant.c,
 * which write the same bytes as llama.cpp's. docs/quantize.md lists the
 * rules. Every key/value is copied; general.file_type is set to llama.cpp's
 * LLAMA_FTYPE number and general.quantization_version to 2.
 *
 * Tensors are visited (and written) in llama.cpp's order: by layer number,
 * then by name; the order matters because the _M mixes count attn_v and
 * ffn_down tensors as they go. Tensors that keep their type are written
 * straight from the input mapping; converted ones are held in memory until
 * the writer has written the file atomically (about the output's size).
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "core/str.h"
#include "engine/gguf.h"
#include "engine/quant.h"

#define CMD "quantize"

/* llama.cpp's LLAMA_FTYPE numbers (include/llama.h). */
enum q_ftype {
    FTYPE_ALL_F32 = 0,
    FTYPE_F16 = 1,
    FTYPE_Q4_0 = 2,
    FTYPE_Q8_0 = 7,
    FTYPE_Q4_K_S = 14,
    FTYPE_Q4_K_M = 15,
    FTYPE_Q5_K_S = 16,
    FTYPE_Q5_K_M = 17,
    FTYPE_Q6_K = 18,
    FTYPE_BF16 = 32,
};

static const struct q_target {
    const char *name;
    enum q_ftype ftype;
    enum tensor_type type; /* llama_ftype_get_default_type */
} targets[] = {
    { "f32", FTYPE_ALL_F32, TENSOR_TYPE_F32 },    { "f16", FTYPE_F16, TENSOR_TYPE_F16 },
    { "bf16", FTYPE_BF16, TENSOR_TYPE_BF16 },     { "q8_0", FTYPE_Q8_0, TENSOR_TYPE_Q8_0 },
    { "q4_0", FTYPE_Q4_0, TENSOR_TYPE_Q4_0 },     { "q4_k_s", FTYPE_Q4_K_S, TENSOR_TYPE_Q4_K },
    { "q4_k_m", FTYPE_Q4_K_M, TENSOR_TYPE_Q4_K }, { "q5_k_s", FTYPE_Q5_K_S, TENSOR_TYPE_Q5_K },
    { "q5_k_m", FTYPE_Q5_K_M, TENSOR_TYPE_Q5_K }, { "q6_k", FTYPE_Q6_K, TENSOR_TYPE_Q6_K },
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: slm quantize [--threads N] IN.gguf OUT.gguf TYPE\n"
            "\n"
            "Converts the weights of a GGUF model (F32, F16 or BF16) to TYPE, choosing the\n"
            "type of each tensor as llama-quantize does (no importance matrix), and writes\n"
            "OUT.gguf atomically. 1-D tensors (norms, biases) keep their type.\n"
            "\n"
            "TYPE: f32 f16 bf16 q8_0 q4_0 q4_k_s q4_k_m q5_k_s q5_k_m q6_k\n"
            "  (q4_k_m and q5_k_m give attn_v and some ffn_down layers Q6_K; see\n"
            "  docs/quantize.md)\n"
            "\n"
            "options:\n"
            "  -t, --threads N  threads to quantize with (default: 4, at most %u)\n"
            "  -h, --help       show this help\n"
            "\n"
            "Progress goes to stderr.\n"
            "exit status: 0 ok, 1 unreadable or malformed input, or write error,\n"
            "             2 usage error (unknown TYPE)\n",
            SLM_LIMIT_THREADS);
}

/* ------------------------------------------------------------------ */
/* llama.cpp's type selection                                         */
/* ------------------------------------------------------------------ */

enum q_category {
    CAT_TOKEN_EMBD,
    CAT_ATTN_Q,
    CAT_ATTN_V,
    CAT_ATTN_K,
    CAT_ATTN_QKV,
    CAT_ATTN_KV_B,
    CAT_ATTN_OUTPUT,
    CAT_FFN_UP,
    CAT_FFN_GATE,
    CAT_FFN_DOWN,
    CAT_OUTPUT,
    CAT_OTHER
};

/* One input tensor and what becomes of it. */
struct q_tensor {
    const struct gguf_tensor *t;
    char name[SLM_LIMIT_GGUF_TENSOR_NAME + 1];
    int layer; /* "blk.N." or -1 */
    enum q_category cat;
    enum tensor_type target;
    void *data; /* converted data (owned), or NULL when copied from the input */
    size_t size;
};

/* The state llama.cpp's quantize_state_impl keeps while choosing types. */
struct q_state {
    const struct q_target *target;
    uint32_t n_layer, n_expert;
    bool is_70b, has_tied_embeddings;
    int n_attention_wv, i_attention_wv, i_ffn_down, n_fallback;
};

static bool has(const char *s, const char *sub)
{
    return strstr(s, sub) != NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static enum q_category category(const char *name)
{
    if (strcmp(name, "output.weight") == 0) return CAT_OUTPUT;
    if (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "per_layer_token_embd.weight") == 0)
        return CAT_TOKEN_EMBD;
    if (has(name, "attn_qkv.weight")) return CAT_ATTN_QKV;
    if (has(name, "attn_kv_b.weight")) return CAT_ATTN_KV_B;
    if (has(name, "attn_v.weight")) return CAT_ATTN_V;
    if (has(name, "attn_k.weight")) return CAT_ATTN_K;
    if (has(name, "attn_q.weight")) return CAT_ATTN_Q;
    if (has(name, "attn_output.weight")) return CAT_ATTN_OUTPUT;
    if (has(name, "ffn_up")) return CAT_FFN_UP;
    if (has(name, "ffn_gate")) return CAT_FFN_GATE;
    if (has(name, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

static bool is_attn_v(enum q_category c)
{
    return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B;
}

/* ggml_n_dims: dimensions up to the last one larger than 1. */
static uint32_t n_dims_used(const struct gguf_tensor *t)
{
    uint32_t n = 1;

    for (uint32_t i = 1; i < 4; i++) {
        if (t->ne[i] > 1) n = i + 1;
    }
    return n;
}

/* tensor_allows_quantization (the parts that apply to GGUF files we read). */
static bool allows_quantization(const struct q_tensor *q)
{
    static const char *const never[] = {
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    };

    if (n_dims_used(q->t) < 2 || !ends_with(q->name, "weight")) return false;
    if (strcmp(q->name, "position_embd.weight") == 0 || strcmp(q->name, "token_types.weight") == 0)
        return false;
    for (size_t i = 0; i < SLM_ARRAY_LEN(never); i++) {
        if (has(q->name, never[i])) return false;
    }
    return true;
}

static bool use_more_bits(int i_layer, int n_layers)
{
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 ||
           (i_layer - n_layers / 8) % 3 == 2;
}

/* llama_tensor_get_type_impl for the file types slm writes. */
static enum tensor_type type_impl(struct q_state *s, const struct q_tensor *q, enum tensor_type t)
{
    enum q_ftype ft = s->target->ftype;

    if (q->cat == CAT_OUTPUT || (s->has_tied_embeddings && q->cat == CAT_TOKEN_EMBD)) {
        uint32_t bs = tensor_type_get(t)->block_size;

        if (q->t->ne[0] % bs != 0) return TENSOR_TYPE_Q8_0;
        return t != TENSOR_TYPE_Q8_0 ? TENSOR_TYPE_Q6_K : t;
    }
    if (q->cat == CAT_TOKEN_EMBD) return t;
    if (is_attn_v(q->cat)) {
        if ((ft == FTYPE_Q4_K_M || ft == FTYPE_Q5_K_M) &&
            use_more_bits(s->i_attention_wv, s->n_attention_wv))
            t = TENSOR_TYPE_Q6_K;
        else if (ft == FTYPE_Q4_K_S && s->i_attention_wv < 4)
            t = TENSOR_TYPE_Q5_K;
        if (s->is_70b && t == TENSOR_TYPE_Q4_K) t = TENSOR_TYPE_Q5_K;
        if (s->n_expert == 8) t = TENSOR_TYPE_Q8_0;
        s->i_attention_wv++;
        return t;
    }
    if (q->cat == CAT_ATTN_K) {
        return s->n_expert == 8 ? TENSOR_TYPE_Q8_0 : t;
    }
    if (q->cat == CAT_FFN_DOWN) {
        int i_layer = s->i_ffn_down, n_layer = (int)s->n_layer;

        if (s->n_expert > 1) i_layer = q->layer; /* experts are not in layer order */
        if (ft == FTYPE_Q4_K_M && use_more_bits(i_layer, n_layer))
            t = TENSOR_TYPE_Q6_K;
        else if (ft == FTYPE_Q5_K_M && use_more_bits(i_layer, n_layer))
            t = TENSOR_TYPE_Q6_K;
        else if (ft == FTYPE_Q4_K_S && i_layer < n_layer / 8)
            t = TENSOR_TYPE_Q5_K;
        s->i_ffn_down++;
        return t;
    }
    if (q->cat == CAT_ATTN_OUTPUT) {
        if (s->n_expert == 8 && (ft == FTYPE_Q4_K_S || ft == FTYPE_Q4_K_M)) t = TENSOR_TYPE_Q5_K;
        return t;
    }
    if (q->cat == CAT_ATTN_QKV) {
        if (ft == FTYPE_Q4_K_M)
            t = TENSOR_TYPE_Q5_K;
        else if (ft == FTYPE_Q5_K_M)
            t = TENSOR_TYPE_Q6_K;
    }
    return t;
}

/* tensor_type_fallback: a row length the type's block does not divide. */
static enum tensor_type fallback(struct q_state *s, const struct q_tensor *q, enum tensor_type t)
{
    enum tensor_type f;

    if (q->t->ne[0] % tensor_type_get(t)->block_size == 0) return t;
    s->n_fallback++;
    switch (t) {
    case TENSOR_TYPE_Q4_K:
        f = TENSOR_TYPE_Q5_0;
        break;
    case TENSOR_TYPE_Q5_K:
        f = TENSOR_TYPE_Q5_1;
        break;
    case TENSOR_TYPE_Q6_K:
        f = TENSOR_TYPE_Q8_0;
        break;
    default:
        f = TENSOR_TYPE_F16; /* Q8_0/Q4_0: llama.cpp has no fallback but F16 */
        break;
    }
    if (q->t->ne[0] % tensor_type_get(f)->block_size != 0) f = TENSOR_TYPE_F16;
    fprintf(stderr, "slm %s: %s: %" PRIu64 " columns are not a multiple of %u for %s, using %s\n",
            CMD, q->name, q->t->ne[0], tensor_type_get(t)->block_size, tensor_type_name(t),
            tensor_type_name(f));
    return f;
}

static bool is_quantized(enum tensor_type t)
{
    return tensor_type_get(t)->block_size > 1;
}

/* llama_tensor_get_type. */
static enum tensor_type choose_type(struct q_state *s, const struct q_tensor *q)
{
    enum tensor_type t = s->target->type;

    if (!allows_quantization(q)) return q->t->type;
    if (is_quantized(t)) {
        t = type_impl(s, q, t);
        t = fallback(s, q, t);
    }
    return t;
}

/* weight_name_comparer: layer number first (-1 without one), then the name. */
static int cmp_tensor(const void *a, const void *b)
{
    const struct q_tensor *x = a, *y = b;

    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* sscanf("blk.%d.") without sscanf: the layer number, or -1. */
static int parse_layer(const char *name)
{
    long v = 0;
    const char *p = name + 4;

    if (strncmp(name, "blk.", 4) != 0 || *p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (v > 1000000) return -1;
        p++;
    }
    return *p == '.' ? (int)v : -1;
}

/* ------------------------------------------------------------------ */
/* Conversion                                                         */
/* ------------------------------------------------------------------ */

struct q_job {
    const struct q_tensor *q;
    uint64_t n_rows, n_cols;
    size_t in_row, out_row;
    unsigned n_threads;
    atomic_uint_fast64_t bad_row; /* first row with NaN/Inf + 1, or 0 */
    atomic_int err;
};

struct q_worker {
    struct q_job *job;
    unsigned ith;
};

static void *convert_rows(void *arg)
{
    struct q_worker *wk = arg;
    struct q_job *j = wk->job;
    uint64_t per = (j->n_rows + j->n_threads - 1) / j->n_threads;
    uint64_t r0 = per * wk->ith, r1 = r0 + per < j->n_rows ? r0 + per : j->n_rows;
    float *row = slm_malloc((size_t)j->n_cols * sizeof(float));

    if (row == NULL) {
        atomic_store(&j->err, SLM_ENOMEM);
        return NULL;
    }
    for (uint64_t r = r0; r < r1; r++) {
        const uint8_t *src = (const uint8_t *)j->q->t->data + r * j->in_row;
        uint8_t *dst = (uint8_t *)j->q->data + r * j->out_row;
        int rc = quant_dequantize_row(j->q->t->type, src, row, (size_t)j->n_cols);

        if (rc == 0) rc = quant_quantize_row(j->q->target, row, dst, (size_t)j->n_cols);
        if (rc == SLM_ERANGE) {
            uint_fast64_t none = 0;

            atomic_compare_exchange_strong(&j->bad_row, &none, r + 1);
        } else if (rc < 0) {
            atomic_store(&j->err, rc);
            break;
        }
    }
    slm_free(row);
    return NULL;
}

/* Converts q->t into q->target with n_threads threads; q->data gets the result. */
static int convert_tensor(struct q_tensor *q, unsigned n_threads)
{
    struct q_job job;
    struct q_worker wk[SLM_LIMIT_THREADS];
    pthread_t tid[SLM_LIMIT_THREADS];
    uint64_t in_row, out_row, size;
    unsigned started = 0;

    if (q->t->type != TENSOR_TYPE_F32 && q->t->type != TENSOR_TYPE_F16 &&
        q->t->type != TENSOR_TYPE_BF16) {
        fprintf(stderr,
                "slm %s: tensor '%s' is %s: requantizing is not supported; start from an F32, "
                "F16 or BF16 model\n",
                CMD, q->name, tensor_type_name(q->t->type));
        return SLM_EUNSUPPORTED;
    }
    memset(&job, 0, sizeof(job));
    job.q = q;
    job.n_cols = q->t->ne[0];
    job.n_rows = q->t->n_elements / job.n_cols;
    if (tensor_row_size(q->t->type, job.n_cols, &in_row) < 0 ||
        tensor_row_size(q->target, job.n_cols, &out_row) < 0 ||
        !slm_mul_u64(out_row, job.n_rows, &size) || size > SIZE_MAX) {
        fprintf(stderr, "slm %s: tensor '%s': %" PRIu64 " x %" PRIu64 " does not fit %s\n", CMD,
                q->name, job.n_rows, job.n_cols, tensor_type_name(q->target));
        return SLM_ERANGE;
    }
    job.in_row = (size_t)in_row;
    job.out_row = (size_t)out_row;
    q->size = (size_t)size;
    q->data = slm_malloc(q->size > 0 ? q->size : 1);
    if (q->data == NULL) {
        fprintf(stderr, "slm %s: tensor '%s': out of memory for %zu bytes\n", CMD, q->name,
                q->size);
        return SLM_ENOMEM;
    }
    if (n_threads > job.n_rows) n_threads = job.n_rows > 0 ? (unsigned)job.n_rows : 1;
    job.n_threads = n_threads;
    atomic_init(&job.bad_row, 0);
    atomic_init(&job.err, 0);
    for (unsigned i = 1; i < n_threads; i++) {
        wk[i].job = &job;
        wk[i].ith = i;
        if (pthread_create(&tid[i], NULL, convert_rows, &wk[i]) != 0) {
            atomic_store(&job.err, SLM_ENOMEM);
            break;
        }
        started = i;
    }
    wk[0].job = &job;
    wk[0].ith = 0;
    if (started + 1 == n_threads) {
        convert_rows(&wk[0]);
    }
    for (unsigned i = 1; i <= started; i++)
        pthread_join(tid[i], NULL);
    if (atomic_load(&job.err) < 0) {
        fprintf(stderr, "slm %s: tensor '%s': %s\n", CMD, q->name,
                slm_strerror(atomic_load(&job.err)));
        return atomic_load(&job.err);
    }
    if (atomic_load(&job.bad_row) != 0) {
        fprintf(stderr,
                "slm %s: tensor '%s': row %" PRIu64 " holds NaN or infinity; the input model is "
                "damaged\n",
                CMD, q->name, (uint64_t)(atomic_load(&job.bad_row) - 1));
        return SLM_ERANGE;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The command                                                        */
/* ------------------------------------------------------------------ */

static void list_types(FILE *out)
{
    for (size_t i = 0; i < SLM_ARRAY_LEN(targets); i++)
        fprintf(out, "%s%s", i ? ", " : "", targets[i].name);
    fputc('\n', out);
}

/* Reads "<arch>.<suffix>" as u32, or def if absent. */
static int arch_u32(const struct gguf_file *f, const struct gguf_str *arch, const char *suffix,
                    uint32_t def, uint32_t *out, struct slm_diag *d)
{
    char key[128];
    int rc;

    if (arch->len > 64)
        return slm_diag_set(d, SLM_EFORMAT, "general.architecture is %zu bytes long", arch->len);
    snprintf(key, sizeof(key), "%.*s.%s", (int)arch->len, arch->ptr, suffix);
    rc = gguf_get_u32(f, key, out, d);
    if (rc == SLM_ENOTFOUND) {
        *out = def;
        return 0;
    }
    return rc;
}

static int load_state(const struct gguf_file *f, struct q_state *s, struct slm_diag *d)
{
    struct gguf_str arch = { "", 0 };
    uint32_t n_head = 0, n_head_kv = 0;
    int rc = gguf_get_str(f, "general.architecture", &arch, d);

    if (rc == SLM_ENOTFOUND)
        return slm_diag_set(d, SLM_EFORMAT, "no general.architecture: not a model file");
    if (rc < 0) return rc;
    if ((rc = arch_u32(f, &arch, "block_count", 0, &s->n_layer, d)) < 0 ||
        (rc = arch_u32(f, &arch, "expert_count", 0, &s->n_expert, d)) < 0 ||
        (rc = arch_u32(f, &arch, "attention.head_count", 0, &n_head, d)) < 0 ||
        (rc = arch_u32(f, &arch, "attention.head_count_kv", n_head, &n_head_kv, d)) < 0)
        return rc;
    if (s->n_layer == 0 || s->n_layer > SLM_LIMIT_LAYERS)
        return slm_diag_set(d, SLM_EFORMAT, "%.*s.block_count is %u, want 1 to %u", (int)arch.len,
                            arch.ptr, s->n_layer, SLM_LIMIT_LAYERS);
    /* llama.cpp's LLM_TYPE_70B: 80 layers of llama with GQA, or of qwen2. */
    s->is_70b = s->n_layer == 80 &&
                ((arch.len == 5 && memcmp(arch.ptr, "llama", 5) == 0 && n_head != n_head_kv) ||
                 (arch.len == 5 && memcmp(arch.ptr, "qwen2", 5) == 0));
    return 0;
}

struct q_opts {
    const char *in, *out;
    const struct q_target *target;
    unsigned n_threads;
};

/*
 * Parses the command line into o. Returns true to go on, false to exit with
 * *exit_code (0 after --help, 2 after a usage error).
 */
static bool parse_args(int argc, char **argv, struct q_opts *o, int *exit_code)
{
    static const struct option long_opts[] = {
        { "threads", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int opt;

    o->n_threads = 4;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "t:h", long_opts, NULL)) != -1) {
        long long v;

        switch (opt) {
        case 'h':
            usage(stdout);
            *exit_code = SLM_EXIT_OK;
            return false;
        case 't':
            if (cli_parse_int(CMD, "--threads", optarg, 1, SLM_LIMIT_THREADS, &v) < 0) {
                *exit_code = SLM_EXIT_USAGE;
                return false;
            }
            o->n_threads = (unsigned)v;
            break;
        default:
            *exit_code = cli_usage_error(CMD, "unknown option or missing value");
            return false;
        }
    }
    if (argc - optind != 3) {
        *exit_code =
            cli_usage_error(CMD, "want IN.gguf OUT.gguf TYPE, got %d arguments", argc - optind);
        return false;
    }
    o->in = argv[optind];
    o->out = argv[optind + 1];
    for (size_t i = 0; i < SLM_ARRAY_LEN(targets); i++) {
        if (strcasecmp(argv[optind + 2], targets[i].name) == 0) o->target = &targets[i];
    }
    if (o->target == NULL) {
        fprintf(stderr, "slm %s: unknown type '%s'; valid types: ", CMD, argv[optind + 2]);
        list_types(stderr);
        fprintf(stderr, "Try 'slm %s --help'.\n", CMD);
        *exit_code = SLM_EXIT_USAGE;
        return false;
    }
    return true;
}

/* Picks every tensor's type (in llama.cpp's order) and prints nothing. */
static int plan(const struct gguf_file *f, struct q_state *s, struct q_tensor *qs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);

        qs[i].t = t;
        if (t->name.len > SLM_LIMIT_GGUF_TENSOR_NAME || memchr(t->name.ptr, 0, t->name.len)) {
            fprintf(stderr, "slm %s: tensor %zu has an invalid name\n", CMD, i);
            return SLM_EFORMAT;
        }
        memcpy(qs[i].name, t->name.ptr, t->name.len);
        qs[i].name[t->name.len] = '\0';
        qs[i].layer = parse_layer(qs[i].name);
        qs[i].cat = category(qs[i].name);
        if (is_attn_v(qs[i].cat)) s->n_attention_wv++;
        if (qs[i].cat == CAT_OUTPUT) s->has_tied_embeddings = false;
    }
    qsort(qs, n, sizeof(*qs), cmp_tensor);
    for (size_t i = 0; i < n; i++)
        qs[i].target = choose_type(s, &qs[i]);
    return 0;
}

int cmd_quantize(int argc, char **argv)
{
    struct q_opts o = { 0 };
    struct q_state s = { 0 };
    struct gguf_file *f = NULL;
    struct gguf_writer *w = NULL;
    struct q_tensor *qs = NULL;
    struct slm_diag d = { 0 };
    uint64_t bytes_in = 0, bytes_out = 0;
    double t0;
    size_t n = 0;
    int rc, ex = SLM_EXIT_RUNTIME;

    if (!parse_args(argc, argv, &o, &ex)) return ex;
    s.target = o.target;
    s.has_tied_embeddings = true;
    t0 = (double)slm_now_ns();

    rc = gguf_open(o.in, &f, &d);
    if (rc < 0) {
        ex = cli_fail_diag(CMD, rc, &d);
        return rc == SLM_EPERM ? ex : SLM_EXIT_RUNTIME;
    }
    if ((rc = load_state(f, &s, &d)) < 0) {
        cli_fail_diag(CMD, rc, &d);
        goto out;
    }
    n = gguf_n_tensors(f);
    qs = slm_calloc(n > 0 ? n : 1, sizeof(*qs));
    w = gguf_writer_new();
    if (qs == NULL || w == NULL) {
        cli_fail(CMD, SLM_ENOMEM, "out of memory");
        goto out;
    }
    if (plan(f, &s, qs, n) < 0) goto out;
    if ((rc = gguf_writer_copy_kv(w, f)) < 0 ||
        (rc = gguf_writer_set_u32(w, "general.quantization_version", 2)) < 0 ||
        (rc = gguf_writer_set_u32(w, "general.file_type", (uint32_t)o.target->ftype)) < 0) {
        cli_fail(CMD, rc, "copying the metadata: %s", slm_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct q_tensor *q = &qs[i];
        const void *data = q->t->data;
        size_t size = (size_t)q->t->size;

        fprintf(stderr, "[%4zu/%4zu] %-36s %-6s -> %-6s ", i + 1, n, q->name,
                tensor_type_name(q->t->type), tensor_type_name(q->target));
        if (q->target != q->t->type) {
            if (convert_tensor(q, o.n_threads) < 0) goto out;
            data = q->data;
            size = q->size;
        }
        fprintf(stderr, "%9.2f MiB -> %9.2f MiB\n", (double)q->t->size / 1048576.0,
                (double)size / 1048576.0);
        bytes_in += q->t->size;
        bytes_out += size;
        rc = gguf_writer_add_tensor(w, q->name, q->target, q->t->n_dims, q->t->ne, data, size);
        if (rc < 0) {
            cli_fail(CMD, rc, "tensor '%s': %s", q->name, slm_strerror(rc));
            goto out;
        }
    }
    rc = gguf_writer_write(w, o.out, &d);
    if (rc < 0) {
        ex = cli_fail_diag(CMD, rc, &d);
        goto out;
    }
    if (s.n_fallback > 0)
        fprintf(stderr, "slm %s: %d of %zu tensors needed a fallback type\n", CMD, s.n_fallback, n);
    fprintf(stderr, "slm %s: %s: %.2f MiB -> %.2f MiB (%s, file type %d) in %.1f s\n", CMD, o.out,
            (double)bytes_in / 1048576.0, (double)bytes_out / 1048576.0, o.target->name,
            (int)o.target->ftype, ((double)slm_now_ns() - t0) / 1e9);
    ex = SLM_EXIT_OK;
out:
    for (size_t i = 0; qs != NULL && i < n; i++)
        slm_free(qs[i].data);
    slm_free(qs);
    gguf_writer_free(w);
    gguf_close(f);
    return ex;
}
