/*
 * cmd_mkmodel.c - slm mkmodel: deterministic llama-family models with random
 * weights, for tests, benchmarks and the offline demo.
 *
 * The file has the tensor names, shapes and metadata keys llama.cpp writes
 * for the architecture (llama, mistral3, qwen2 with QKV biases, qwen3 with
 * QK-norm), so both slm and llama.cpp load it. The vocabulary is a byte-level
 * BPE trained by bpe_train_gguf on the built-in corpus or --corpus FILE.
 *
 * Determinism: every tensor draws from its own PRNG seeded by --seed and the
 * tensor's name, and the writer lays tensors out in a fixed order, so the
 * same options give the same bytes on every machine.
 *
 * Weights: an approximately normal init (the sum of four uniforms) with
 * std 0.02, and std 0.02 / sqrt(2 n_layer) for the projections that write
 * into the residual stream (attn_output, ffn_down, GPT-2's rule); norms are
 * 1, biases small. Quantized types that do not divide a row fall back per
 * tensor to Q8_0 (or F16), as llama-quantize falls back.
 *
 * Memory: the writer borrows tensor data until it writes, so every converted
 * tensor stays allocated until then (about the size of the output file); the
 * f32 rows are generated one at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "core/rand.h"
#include "core/str.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "engine/tokenizer.h"

#define CMD "mkmodel"

/* Largest --corpus file read: BPE training on more is slow and pointless. */
#define MKMODEL_CORPUS_MAX (64u << 20)

struct mk_spec {
    const char *preset;
    char arch[16];
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_base, norm_eps;
    bool tied;
    bool llama3_rope; /* write rope_freqs like Llama 3.1/3.2 (factor 32, 8192) */
    enum tensor_type type;
    uint64_t seed;
};

struct mk_preset {
    const char *name;
    struct mk_spec s;
};

/* Shapes follow the real models' config.json. */
static const struct mk_preset presets[] = {
    { "tiny",
      { NULL, "llama", 64, 2, 4, 2, 256, 512, 512, 10000.0f, 1e-5f, false, false, TENSOR_TYPE_F32,
        0 } },
    { "demo",
      { NULL, "llama", 512, 8, 8, 4, 1536, 4096, 2048, 10000.0f, 1e-5f, false, false,
        TENSOR_TYPE_Q8_0, 0 } },
    { "qwen2.5-0.5b",
      { NULL, "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1000000.0f, 1e-6f, true, false,
        TENSOR_TYPE_F16, 0 } },
    { "llama-3.2-1b",
      { NULL, "llama", 2048, 16, 32, 8, 8192, 128256, 131072, 500000.0f, 1e-5f, true, true,
        TENSOR_TYPE_F16, 0 } },
};

static const char *const arches[] = { "llama", "mistral3", "qwen2", "qwen3" };

static void usage(FILE *out)
{
    fprintf(out, "usage: slm mkmodel [options] OUT.gguf\n"
                 "\n"
                 "Writes a llama-family GGUF model with deterministic random weights and a\n"
                 "byte-level BPE vocabulary trained on a built-in corpus. The same options give\n"
                 "the same bytes. Its text is gibberish by design: it is for tests and speed.\n"
                 "\n"
                 "options:\n"
                 "  --preset NAME       tiny (default), demo, qwen2.5-0.5b, llama-3.2-1b\n"
                 "  --arch NAME         llama, mistral3, qwen2 (QKV biases), qwen3 (QK-norm)\n"
                 "  --n-embd N          embedding width\n"
                 "  --n-layer N         transformer blocks\n"
                 "  --n-head N          attention heads\n"
                 "  --n-head-kv N       key/value heads (grouped-query attention)\n"
                 "  --n-ff N            feed-forward width\n"
                 "  --n-vocab N         vocabulary entries (BPE merges trained to fill it)\n"
                 "  --n-ctx N           training context length written to the file\n"
                 "  --rope-base X       RoPE frequency base\n"
                 "  --tied, --untied    share the output matrix with the token embeddings or not\n"
                 "  --type T            f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k (1-D tensors\n"
                 "                      stay f32; rows a block does not divide fall back to q8_0)\n"
                 "  --seed N            weight seed (default 0)\n"
                 "  --corpus FILE       train the vocabulary on FILE instead of the built-in text\n"
                 "  -h, --help          this text\n"
                 "\n"
                 "presets: tiny (64 wide, 2 layers, 512 tokens), demo (~30M parameters, q8_0),\n"
                 "qwen2.5-0.5b and llama-3.2-1b (the real shapes; ~1-2.5 GB in f16).\n");
}

/* ---- weights ---- */

/* FNV-1a of a tensor name, mixed into the seed. */
static uint64_t name_hash(const char *s)
{
    return slm_fnv1a(SLM_FNV1A_INIT, s, strlen(s));
}

/*
 * An approximately standard normal number from one 64-bit draw: the sum of
 * four 16-bit uniforms (Irwin-Hall, variance 4/12) centred and scaled.
 * Integer arithmetic up to one multiplication: the same on every machine.
 */
static float approx_normal(struct slm_rng *r)
{
    uint64_t x = slm_rng_next(r);
    uint32_t sum = (uint32_t)(x & 0xffff) + (uint32_t)((x >> 16) & 0xffff) +
                   (uint32_t)((x >> 32) & 0xffff) + (uint32_t)(x >> 48);

    /* (sum / 65536 - 2) * sqrt(3), centred on the grid's mean 4 * 32767.5. */
    return (float)((int32_t)sum - 131070) * (1.7320508f / 65536.0f);
}

enum mk_init { MK_INIT_NORMAL, MK_INIT_ONES };

struct mk_tensor {
    char name[SLM_LIMIT_GGUF_TENSOR_NAME];
    enum tensor_type type;
    uint32_t n_dims;
    uint64_t ne[2];
    void *data;
    size_t size;
};

struct mk_state {
    const struct mk_spec *s;
    struct gguf_writer *w;
    struct mk_tensor *t;
    size_t n_t, cap_t;
    float *row; /* scratch: one f32 row */
    uint64_t n_params, n_params_done;
    unsigned progress_pct; /* last printed percentage; 0: progress off */
    bool progress;
    size_t n_fallback;
};

/* The storage type of a 2-D tensor whose rows hold n_in elements. */
static enum tensor_type row_type(enum tensor_type want, uint64_t n_in)
{
    const struct tensor_type_traits *tr = tensor_type_get(want);

    if (tr != NULL && n_in % tr->block_size == 0) return want;
    if (n_in % QK8_0 == 0) return TENSOR_TYPE_Q8_0;
    return TENSOR_TYPE_F16;
}

/*
 * Generates tensor name of shape [n_in, n_out] (n_out 1 for 1-D), converts it
 * to the requested type row by row and registers it with the writer.
 */
static int mk_add_rows(struct mk_state *st, const char *name, uint64_t n_in, uint64_t n_out,
                       bool one_d, enum mk_init init, float std, const bool *zero_rows,
                       struct slm_diag *d)
{
    struct mk_tensor *t;
    struct slm_rng rng;
    enum tensor_type type = one_d ? TENSOR_TYPE_F32 : row_type(st->s->type, n_in);
    uint64_t row_bytes, size;
    int rc;

    if (st->n_t == st->cap_t) return slm_diag_set(d, SLM_EINTERNAL, "too many tensors");
    t = &st->t[st->n_t];
    if ((size_t)snprintf(t->name, sizeof(t->name), "%s", name) >= sizeof(t->name))
        return slm_diag_set(d, SLM_EINVAL, "tensor name '%s' too long", name);
    if (type != st->s->type && !one_d) st->n_fallback++;
    rc = tensor_row_size(type, n_in, &row_bytes);
    if (rc < 0 || !slm_mul_u64(row_bytes, n_out, &size) || size > SIZE_MAX)
        return slm_diag_set(d, SLM_ERANGE, "tensor '%s': %llu x %llu elements do not fit", name,
                            (unsigned long long)n_in, (unsigned long long)n_out);
    t->type = type;
    t->n_dims = one_d ? 1 : 2;
    t->ne[0] = n_in;
    t->ne[1] = n_out;
    t->size = (size_t)size;
    t->data = slm_xmalloc(t->size > 0 ? t->size : 1);
    st->n_t++;
    slm_rng_seed(&rng, st->s->seed ^ name_hash(name));
    for (uint64_t r = 0; r < n_out; r++) {
        for (uint64_t i = 0; i < n_in; i++)
            st->row[i] = init == MK_INIT_ONES ? 1.0f : std * approx_normal(&rng);
        if (zero_rows != NULL && zero_rows[r]) memset(st->row, 0, n_in * sizeof(float));
        rc = quant_quantize_row(type, st->row, (char *)t->data + r * row_bytes, (size_t)n_in);
        if (rc < 0)
            return slm_diag_set(d, rc, "tensor '%s': cannot convert to %s", name,
                                tensor_type_name(type));
    }
    rc = gguf_writer_add_tensor(st->w, t->name, t->type, t->n_dims, t->ne, t->data, t->size);
    if (rc < 0) return slm_diag_set(d, rc, "tensor '%s': %s", name, slm_strerror(rc));
    if (!one_d) st->n_params_done += n_in * n_out;
    if (st->progress && !one_d) {
        unsigned pct = (unsigned)(st->n_params_done * 100 / st->n_params);

        if (pct / 10 != st->progress_pct / 10) {
            fprintf(stderr, "slm mkmodel: weights %u%%\n", pct);
            st->progress_pct = pct;
        }
    }
    return 0;
}

/* mk_add_rows without zeroed rows. */
static int mk_add(struct mk_state *st, const char *name, uint64_t n_in, uint64_t n_out, bool one_d,
                  enum mk_init init, float std, struct slm_diag *d)
{
    return mk_add_rows(st, name, n_in, n_out, one_d, init, std, NULL, d);
}

/*
 * Trains the vocabulary into a scratch writer, writes it to a temporary file
 * next to path, copies its keys into st->w and returns in *unused (new, one
 * flag per token) which tokens the trainer marked unused (token_type 5): it
 * pads a vocabulary larger than the corpus supports with them. Their output
 * rows are zeroed so that a random model never prefers a token with no text.
 */
static int mk_train_vocab(struct mk_state *st, const char *corpus, size_t corpus_len,
                          const char *path, bool **unused, struct slm_diag *d)
{
    struct gguf_writer *scratch = gguf_writer_new();
    struct gguf_file *f = NULL;
    char tmp[4096];
    size_t idx;
    uint64_t n = 0;
    int rc;

    *unused = NULL;
    if (scratch == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory");
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.vocab.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        gguf_writer_free(scratch);
        return slm_diag_set(d, SLM_EINVAL, "output path too long");
    }
    rc = bpe_train_gguf(scratch, corpus, corpus_len, st->s->n_vocab, d);
    if (rc == 0) rc = gguf_writer_write(scratch, tmp, d);
    gguf_writer_free(scratch);
    if (rc < 0) return rc;
    rc = gguf_open(tmp, &f, d);
    unlink(tmp);
    if (rc < 0) return rc;
    rc = gguf_writer_copy_kv(st->w, f);
    if (rc < 0) {
        slm_diag_set(d, rc, "cannot copy the vocabulary: %s", slm_strerror(rc));
        goto out;
    }
    *unused = slm_xcalloc(st->s->n_vocab, sizeof(bool));
    if (gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &idx, &n, NULL) == 0 &&
        n == st->s->n_vocab) {
        const unsigned char *p = gguf_kv_arr_data(f, idx);

        for (uint64_t i = 0; i < n; i++) {
            int32_t type;

            memcpy(&type, p + i * 4, 4); /* little-endian file, x86-64/aarch64 host */
            (*unused)[i] = type == 5;
        }
    }
out:
    gguf_close(f);
    return rc;
}

/* The Llama 3 frequency divisors (llama.cpp's convert: factor 32, low 1, high 4, 8192). */
static int mk_add_rope_freqs(struct mk_state *st, uint32_t head_dim, struct slm_diag *d)
{
    const double factor = 32.0, low = 1.0, high = 4.0, old_ctx = 8192.0;
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    struct mk_tensor *t = &st->t[st->n_t];
    uint64_t n = head_dim / 2;
    float *f;
    int rc;

    if (st->n_t == st->cap_t) return slm_diag_set(d, SLM_EINTERNAL, "too many tensors");
    f = slm_xcalloc(n, sizeof(float));
    for (uint64_t i = 0; i < n; i++) {
        double freq = 1.0 / pow((double)st->s->rope_base, (double)(2 * i) / head_dim);
        double wavelen = 2.0 * M_PI / freq;

        if (wavelen < high_wavelen) {
            f[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            f[i] = (float)factor;
        } else {
            double smooth = (old_ctx / wavelen - low) / (high - low);

            f[i] = (float)(1.0 / ((1.0 - smooth) / factor + smooth));
        }
    }
    snprintf(t->name, sizeof(t->name), "rope_freqs.weight");
    t->type = TENSOR_TYPE_F32;
    t->n_dims = 1;
    t->ne[0] = n;
    t->ne[1] = 1;
    t->data = f;
    t->size = n * sizeof(float);
    st->n_t++;
    rc = gguf_writer_add_tensor(st->w, t->name, t->type, 1, t->ne, t->data, t->size);
    if (rc < 0) return slm_diag_set(d, rc, "tensor 'rope_freqs.weight': %s", slm_strerror(rc));
    return 0;
}

/* ---- metadata ---- */

/* llama_ftype of a uniform type (general.file_type). */
static uint32_t file_type_of(enum tensor_type t)
{
    switch (t) {
    case TENSOR_TYPE_F32:
        return 0;
    case TENSOR_TYPE_F16:
        return 1;
    case TENSOR_TYPE_Q4_0:
        return 2;
    case TENSOR_TYPE_Q8_0:
        return 7;
    case TENSOR_TYPE_Q4_K:
        return 14; /* Q4_K_S: every tensor q4_K */
    case TENSOR_TYPE_Q5_K:
        return 16; /* Q5_K_S */
    case TENSOR_TYPE_Q6_K:
        return 18;
    case TENSOR_TYPE_BF16:
        return 32;
    default:
        return 0;
    }
}

/* Sets "<arch>.<suffix>" to a u32. */
static int kv_arch_u32(struct gguf_writer *w, const char *arch, const char *suffix, uint32_t v)
{
    char key[96];

    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    return gguf_writer_set_u32(w, key, v);
}

static int kv_arch_f32(struct gguf_writer *w, const char *arch, const char *suffix, float v)
{
    char key[96];

    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    return gguf_writer_set_f32(w, key, v);
}

/* Writes general.* and the hyper-parameter keys llama.cpp's loader reads. */
static int mk_write_kv(struct gguf_writer *w, const struct mk_spec *s, uint32_t head_dim)
{
    char name[96];
    const char *a = s->arch;
    int rc = 0;

    snprintf(name, sizeof(name), "slm-mkmodel %s %s", s->preset != NULL ? s->preset : "custom",
             tensor_type_name(s->type));
    rc |= gguf_writer_set_str(w, "general.architecture", a, strlen(a));
    rc |= gguf_writer_set_str(w, "general.name", name, strlen(name));
    rc |= gguf_writer_set_u32(w, "general.file_type", file_type_of(s->type));
    rc |= gguf_writer_set_u32(w, "general.quantization_version", 2);
    rc |= gguf_writer_set_u64(w, "general.seed", s->seed);
    rc |= kv_arch_u32(w, a, "vocab_size", s->n_vocab);
    rc |= kv_arch_u32(w, a, "context_length", s->n_ctx);
    rc |= kv_arch_u32(w, a, "embedding_length", s->n_embd);
    rc |= kv_arch_u32(w, a, "block_count", s->n_layer);
    rc |= kv_arch_u32(w, a, "feed_forward_length", s->n_ff);
    rc |= kv_arch_u32(w, a, "attention.head_count", s->n_head);
    rc |= kv_arch_u32(w, a, "attention.head_count_kv", s->n_head_kv);
    rc |= kv_arch_u32(w, a, "attention.key_length", head_dim);
    rc |= kv_arch_u32(w, a, "attention.value_length", head_dim);
    rc |= kv_arch_u32(w, a, "rope.dimension_count", head_dim);
    rc |= kv_arch_f32(w, a, "rope.freq_base", s->rope_base);
    rc |= kv_arch_f32(w, a, "attention.layer_norm_rms_epsilon", s->norm_eps);
    return rc < 0 ? SLM_ENOMEM : 0;
}

/* ---- the whole model ---- */

/* Reads path into a new buffer (at most MKMODEL_CORPUS_MAX bytes). */
static int read_corpus(const char *path, char **out, size_t *len, struct slm_diag *d)
{
    struct stat sb;
    char *buf;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return slm_diag_set(d, slm_err_from_errno(errno), "--corpus %s: %s", path, strerror(errno));
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return slm_diag_set(d, SLM_EINVAL, "--corpus %s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > MKMODEL_CORPUS_MAX || sb.st_size == 0) {
        close(fd);
        return slm_diag_set(d, SLM_ELIMIT, "--corpus %s: %lld bytes, want 1 to %u", path,
                            (long long)sb.st_size, MKMODEL_CORPUS_MAX);
    }
    buf = slm_xmalloc((size_t)sb.st_size + 1);
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);

        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (got != (size_t)sb.st_size) {
        slm_free(buf);
        return slm_diag_set(d, SLM_EIO, "--corpus %s: short read", path);
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

/* Checks the shape: every field in range and the heads dividing evenly. */
static int mk_check(const struct mk_spec *s, struct slm_diag *d)
{
    if (s->n_embd == 0 || s->n_embd > SLM_LIMIT_EMBD)
        return slm_diag_set(d, SLM_EINVAL, "--n-embd must be in [1, %u], got %u", SLM_LIMIT_EMBD,
                            s->n_embd);
    if (s->n_layer == 0 || s->n_layer > SLM_LIMIT_LAYERS)
        return slm_diag_set(d, SLM_EINVAL, "--n-layer must be in [1, %u], got %u", SLM_LIMIT_LAYERS,
                            s->n_layer);
    if (s->n_head == 0 || s->n_head > SLM_LIMIT_HEADS || s->n_embd % s->n_head != 0)
        return slm_diag_set(d, SLM_EINVAL,
                            "--n-head %u must divide --n-embd %u (and be at most %u)", s->n_head,
                            s->n_embd, SLM_LIMIT_HEADS);
    if ((s->n_embd / s->n_head) % 2 != 0 || s->n_embd / s->n_head > SLM_LIMIT_HEAD_DIM)
        return slm_diag_set(d, SLM_EINVAL,
                            "head size --n-embd / --n-head = %u must be even and at most %u",
                            s->n_embd / s->n_head, SLM_LIMIT_HEAD_DIM);
    if (s->n_head_kv == 0 || s->n_head % s->n_head_kv != 0)
        return slm_diag_set(d, SLM_EINVAL, "--n-head-kv %u must divide --n-head %u", s->n_head_kv,
                            s->n_head);
    if (s->n_ff == 0 || s->n_ff > (1u << 20))
        return slm_diag_set(d, SLM_EINVAL, "--n-ff must be in [1, %u], got %u", 1u << 20, s->n_ff);
    if (s->n_vocab < 300 || s->n_vocab > SLM_LIMIT_VOCAB)
        return slm_diag_set(d, SLM_EINVAL,
                            "--n-vocab must be in [300, %u] (256 bytes + specials), got %u",
                            SLM_LIMIT_VOCAB, s->n_vocab);
    if (s->n_ctx == 0 || s->n_ctx > SLM_LIMIT_CONTEXT)
        return slm_diag_set(d, SLM_EINVAL, "--n-ctx must be in [1, %u], got %u", SLM_LIMIT_CONTEXT,
                            s->n_ctx);
    return 0;
}

/* Builds the model of s and writes it atomically to path. */
static int mk_model(const struct mk_spec *s, const char *path, const char *corpus_path,
                    struct slm_diag *d)
{
    struct mk_state st = { 0 };
    const char *corpus;
    char *corpus_buf = NULL;
    size_t corpus_len = 0;
    bool *unused = NULL;
    uint32_t hd = s->n_embd / s->n_head;
    uint64_t n_q = (uint64_t)s->n_head * hd, n_kv = (uint64_t)s->n_head_kv * hd;
    bool qwen2 = strcmp(s->arch, "qwen2") == 0, qwen3 = strcmp(s->arch, "qwen3") == 0;
    float std_out = 0.02f / sqrtf(2.0f * (float)s->n_layer);
    uint64_t per_layer;
    int rc;

    st.s = s;
    st.cap_t = 16 + (size_t)s->n_layer * 16;
    st.t = slm_xcalloc(st.cap_t, sizeof(*st.t));
    st.row = slm_xcalloc(s->n_embd > s->n_ff ? s->n_embd : s->n_ff, sizeof(float));
    st.w = gguf_writer_new();
    if (st.w == NULL) {
        rc = slm_diag_set(d, SLM_ENOMEM, "out of memory");
        goto out;
    }
    per_layer = 2 * (uint64_t)s->n_embd * (n_q + n_kv) + 3 * (uint64_t)s->n_embd * s->n_ff;
    st.n_params = per_layer * s->n_layer + (uint64_t)s->n_vocab * s->n_embd * (s->tied ? 1 : 2);
    st.progress = st.n_params >= 100000000ull;

    rc = mk_write_kv(st.w, s, hd);
    if (rc < 0) {
        slm_diag_set(d, rc, "out of memory");
        goto out;
    }
    if (corpus_path != NULL) {
        rc = read_corpus(corpus_path, &corpus_buf, &corpus_len, d);
        if (rc < 0) goto out;
        corpus = corpus_buf;
    } else {
        corpus = bpe_default_corpus(&corpus_len);
    }
    if (st.progress)
        fprintf(stderr, "slm mkmodel: training a %u-token BPE vocabulary\n", s->n_vocab);
    rc = mk_train_vocab(&st, corpus, corpus_len, path, &unused, d);
    if (rc < 0) goto out;

    /* llama.cpp's tensor order: embeddings, output norm, output, then the blocks. */
    rc = mk_add_rows(&st, "token_embd.weight", s->n_embd, s->n_vocab, false, MK_INIT_NORMAL, 0.02f,
                     s->tied ? unused : NULL, d);
    if (rc == 0) rc = mk_add(&st, "output_norm.weight", s->n_embd, 1, true, MK_INIT_ONES, 0, d);
    if (rc == 0 && !s->tied)
        rc = mk_add_rows(&st, "output.weight", s->n_embd, s->n_vocab, false, MK_INIT_NORMAL, 0.02f,
                         unused, d);
    if (rc == 0 && s->llama3_rope) rc = mk_add_rope_freqs(&st, hd, d);
    for (uint32_t l = 0; rc == 0 && l < s->n_layer; l++) {
        char n[SLM_LIMIT_GGUF_TENSOR_NAME];

#define BLK(suffix) (snprintf(n, sizeof(n), "blk.%u." suffix, l), n)
        rc = mk_add(&st, BLK("attn_norm.weight"), s->n_embd, 1, true, MK_INIT_ONES, 0, d);
        if (rc == 0)
            rc = mk_add(&st, BLK("attn_q.weight"), s->n_embd, n_q, false, MK_INIT_NORMAL, 0.02f, d);
        if (rc == 0)
            rc =
                mk_add(&st, BLK("attn_k.weight"), s->n_embd, n_kv, false, MK_INIT_NORMAL, 0.02f, d);
        if (rc == 0)
            rc =
                mk_add(&st, BLK("attn_v.weight"), s->n_embd, n_kv, false, MK_INIT_NORMAL, 0.02f, d);
        if (rc == 0 && qwen2) {
            rc = mk_add(&st, BLK("attn_q.bias"), n_q, 1, true, MK_INIT_NORMAL, 0.02f, d);
            if (rc == 0)
                rc = mk_add(&st, BLK("attn_k.bias"), n_kv, 1, true, MK_INIT_NORMAL, 0.02f, d);
            if (rc == 0)
                rc = mk_add(&st, BLK("attn_v.bias"), n_kv, 1, true, MK_INIT_NORMAL, 0.02f, d);
        }
        if (rc == 0 && qwen3) {
            rc = mk_add(&st, BLK("attn_q_norm.weight"), hd, 1, true, MK_INIT_ONES, 0, d);
            if (rc == 0)
                rc = mk_add(&st, BLK("attn_k_norm.weight"), hd, 1, true, MK_INIT_ONES, 0, d);
        }
        if (rc == 0)
            rc = mk_add(&st, BLK("attn_output.weight"), n_q, s->n_embd, false, MK_INIT_NORMAL,
                        std_out, d);
        if (rc == 0)
            rc = mk_add(&st, BLK("ffn_norm.weight"), s->n_embd, 1, true, MK_INIT_ONES, 0, d);
        if (rc == 0)
            rc = mk_add(&st, BLK("ffn_gate.weight"), s->n_embd, s->n_ff, false, MK_INIT_NORMAL,
                        0.02f, d);
        if (rc == 0)
            rc = mk_add(&st, BLK("ffn_up.weight"), s->n_embd, s->n_ff, false, MK_INIT_NORMAL, 0.02f,
                        d);
        if (rc == 0)
            rc = mk_add(&st, BLK("ffn_down.weight"), s->n_ff, s->n_embd, false, MK_INIT_NORMAL,
                        std_out, d);
#undef BLK
    }
    if (rc < 0) goto out;
    if (st.n_fallback > 0)
        fprintf(stderr,
                "slm mkmodel: %zu tensors stored as q8_0/f16: their rows are not a "
                "multiple of the %s block\n",
                st.n_fallback, tensor_type_name(s->type));
    if (st.progress) fprintf(stderr, "slm mkmodel: writing %s\n", path);
    rc = gguf_writer_write(st.w, path, d);
out:
    gguf_writer_free(st.w);
    for (size_t i = 0; i < st.n_t; i++)
        slm_free(st.t[i].data);
    slm_free(st.t);
    slm_free(st.row);
    slm_free(corpus_buf);
    slm_free(unused);
    return rc;
}

/* ---- options ---- */

enum {
    OPT_PRESET = 256,
    OPT_ARCH,
    OPT_N_EMBD,
    OPT_N_LAYER,
    OPT_N_HEAD,
    OPT_N_HEAD_KV,
    OPT_N_FF,
    OPT_N_VOCAB,
    OPT_N_CTX,
    OPT_ROPE_BASE,
    OPT_TIED,
    OPT_UNTIED,
    OPT_TYPE,
    OPT_SEED,
    OPT_CORPUS,
};

static const struct option long_opts[] = {
    { "preset", required_argument, NULL, OPT_PRESET },
    { "arch", required_argument, NULL, OPT_ARCH },
    { "n-embd", required_argument, NULL, OPT_N_EMBD },
    { "n-layer", required_argument, NULL, OPT_N_LAYER },
    { "n-head", required_argument, NULL, OPT_N_HEAD },
    { "n-head-kv", required_argument, NULL, OPT_N_HEAD_KV },
    { "n-ff", required_argument, NULL, OPT_N_FF },
    { "n-vocab", required_argument, NULL, OPT_N_VOCAB },
    { "n-ctx", required_argument, NULL, OPT_N_CTX },
    { "rope-base", required_argument, NULL, OPT_ROPE_BASE },
    { "tied", no_argument, NULL, OPT_TIED },
    { "untied", no_argument, NULL, OPT_UNTIED },
    { "type", required_argument, NULL, OPT_TYPE },
    { "seed", required_argument, NULL, OPT_SEED },
    { "corpus", required_argument, NULL, OPT_CORPUS },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* Parses a u32 option value into *out (range [min, max]); usage error otherwise. */
static int opt_u32(const char *opt, const char *arg, uint32_t max, uint32_t *out)
{
    long long v;

    if (cli_parse_int(CMD, opt, arg, 1, max, &v) < 0) return SLM_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

/*
 * slm mkmodel [options] OUT.gguf. The preset is applied first, then every
 * other option on top of it, whatever their order on the command line.
 */
int cmd_mkmodel(int argc, char **argv)
{
    struct mk_spec s = presets[0].s;
    struct slm_diag d;
    const char *preset = "tiny", *corpus = NULL;
    int opt, rc;

    slm_diag_clear(&d);
    /* Pass 1: the preset. */
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return SLM_EXIT_OK;
        }
        if (opt == '?') return cli_usage_error(CMD, "unknown option or missing value");
        if (opt == OPT_PRESET) preset = optarg;
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(presets); i++) {
        if (strcmp(preset, presets[i].name) == 0) {
            s = presets[i].s;
            s.preset = presets[i].name;
            break;
        }
        if (i + 1 == SLM_ARRAY_LEN(presets))
            return cli_usage_error(
                CMD, "--preset wants tiny, demo, qwen2.5-0.5b or llama-3.2-1b, got '%s'", preset);
    }
    /* Pass 2: everything else. */
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        long long v;
        double x;

        rc = 0;
        switch (opt) {
        case OPT_ARCH: {
            size_t i;

            for (i = 0; i < SLM_ARRAY_LEN(arches); i++)
                if (strcmp(optarg, arches[i]) == 0) break;
            if (i == SLM_ARRAY_LEN(arches))
                return cli_usage_error(
                    CMD, "--arch wants llama, mistral3, qwen2 or qwen3, got '%s'", optarg);
            snprintf(s.arch, sizeof(s.arch), "%s", optarg);
            break;
        }
        case OPT_N_EMBD:
            rc = opt_u32("--n-embd", optarg, SLM_LIMIT_EMBD, &s.n_embd);
            break;
        case OPT_N_LAYER:
            rc = opt_u32("--n-layer", optarg, SLM_LIMIT_LAYERS, &s.n_layer);
            break;
        case OPT_N_HEAD:
            rc = opt_u32("--n-head", optarg, SLM_LIMIT_HEADS, &s.n_head);
            break;
        case OPT_N_HEAD_KV:
            rc = opt_u32("--n-head-kv", optarg, SLM_LIMIT_HEADS, &s.n_head_kv);
            break;
        case OPT_N_FF:
            rc = opt_u32("--n-ff", optarg, 1u << 20, &s.n_ff);
            break;
        case OPT_N_VOCAB:
            rc = opt_u32("--n-vocab", optarg, SLM_LIMIT_VOCAB, &s.n_vocab);
            break;
        case OPT_N_CTX:
            rc = opt_u32("--n-ctx", optarg, SLM_LIMIT_CONTEXT, &s.n_ctx);
            break;
        case OPT_ROPE_BASE:
            if (cli_parse_float(CMD, "--rope-base", optarg, 1.0, 1e9, &x) < 0)
                return SLM_EXIT_USAGE;
            s.rope_base = (float)x;
            break;
        case OPT_TIED:
            s.tied = true;
            break;
        case OPT_UNTIED:
            s.tied = false;
            break;
        case OPT_TYPE: {
            enum tensor_type t;

            if (tensor_type_from_name(optarg, &t) < 0 ||
                (t != TENSOR_TYPE_F32 && t != TENSOR_TYPE_F16 && t != TENSOR_TYPE_BF16 &&
                 t != TENSOR_TYPE_Q8_0 && t != TENSOR_TYPE_Q4_0 && t != TENSOR_TYPE_Q4_K &&
                 t != TENSOR_TYPE_Q5_K && t != TENSOR_TYPE_Q6_K))
                return cli_usage_error(
                    CMD, "--type wants f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k, got '%s'",
                    optarg);
            s.type = t;
            break;
        }
        case OPT_SEED:
            if (cli_parse_int(CMD, "--seed", optarg, 0, INT64_MAX, &v) < 0) return SLM_EXIT_USAGE;
            s.seed = (uint64_t)v;
            break;
        case OPT_CORPUS:
            corpus = optarg;
            break;
        default:
            break;
        }
        if (rc < 0) return SLM_EXIT_USAGE;
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing the output file (OUT.gguf)");
    if (optind + 1 < argc)
        return cli_usage_error(CMD, "one output file expected, got '%s' too", argv[optind + 1]);
    rc = mk_check(&s, &d);
    if (rc < 0) return cli_usage_error(CMD, "%s", d.msg);
    rc = mk_model(&s, argv[optind], corpus, &d);
    if (rc < 0) return cli_fail_diag(CMD, rc, &d);
    return SLM_EXIT_OK;
}
