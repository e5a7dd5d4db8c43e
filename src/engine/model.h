/*
 * model.h - llama-family transformers: loading and the batched forward pass.
 *
 * Architectures (general.architecture): llama (Llama 2/3, Mistral 7B, Nemo,
 * Codestral), mistral3 (Devstral Small 2: llama + YaRN and optional attention
 * temperature scaling), qwen2 (QKV biases), qwen3 (QK-norm). Anything else is
 * SLM_EUNSUPPORTED with a message naming the architecture.
 *
 * model_load opens the GGUF file, validates every hyper-parameter and every
 * tensor's type and shape before any kernel runs, and builds the tokenizer.
 * Weights stay in the read-only mapping (zero copy).
 *
 * A struct model_context owns a KV cache (F16) for up to n_seq sequences and
 * the scratch buffers for a batch of up to n_batch tokens, all allocated at
 * creation: decoding allocates nothing. One call, model_decode, runs a batch
 * whose tokens may belong to different sequences (prompt chunks of new
 * requests and the next token of running ones together: continuous
 * batching). A token at position p of sequence s attends to the cached
 * positions 0..p-1 of s and to the batch's earlier tokens of s.
 *
 * Ownership: model_load returns new (model_free); a context borrows its model,
 * which must outlive it. Thread safety: a model is immutable and shared; a
 * context is used by one thread at a time (it runs its own worker pool).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

enum rope_type { ROPE_TYPE_NORMAL = 0, ROPE_TYPE_NEOX = 2 };
enum rope_scaling {
    ROPE_SCALING_NONE = 0,
    ROPE_SCALING_LINEAR,
    ROPE_SCALING_YARN,
    ROPE_SCALING_LLAMA3
};

struct model_hparams {
    char arch[32];
    uint32_t n_vocab;
    uint32_t n_ctx_train;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim; /* key/value length per head */
    uint32_t n_ff;
    uint32_t n_rot; /* rotary dimensions */
    float norm_eps;
    float rope_freq_base;
    enum rope_type rope_type;
    enum rope_scaling rope_scaling;
    float rope_scale;       /* factor (linear, yarn, llama3) */
    uint32_t rope_orig_ctx; /* original context (yarn, llama3) */
    /*
     * YaRN (llama.cpp semantics): ext_factor 1 for yarn, else 0 unless the
     * file says; yarn_attn_factor is the magnitude multiplier finally applied
     * to cos/sin (derived from factor, yarn_log_mul and rope_attn_factor).
     */
    float yarn_beta_fast, yarn_beta_slow, yarn_ext_factor, yarn_attn_factor;
    float yarn_log_mul;     /* rope.scaling.yarn_log_multiplier; 0 if absent */
    float rope_attn_factor; /* rope.scaling.attn_factor; 1 if absent */
    /* Unused: GGUF carries llama3 scaling as the rope_freqs tensor (ROPE_SCALING_LLAMA3
     * means that tensor is present); these stay 0. */
    float llama3_low_freq_factor, llama3_high_freq_factor;
    float attn_temp_scale; /* mistral3 position-dependent attention temperature; 0 off */
    uint32_t attn_temp_floor_scale;
    bool has_qkv_bias;
    bool has_qk_norm;
    bool tied_embeddings;
};

struct model;

SLM_NODISCARD int model_load(const char *path, struct model **out, struct slm_diag *d);
void model_free(struct model *m);

const struct model_hparams *model_get_hparams(const struct model *m);
const struct tokenizer *model_get_tokenizer(const struct model *m);
const struct gguf_file *model_get_gguf(const struct model *m);
/* "llama 1B Q4_K_M"-like description for tables; borrowed. */
const char *model_describe(const struct model *m);
/* Bytes of weights repacked for the kernels at load (0: none; SLM_REPACK=0). */
uint64_t model_packed_bytes(const struct model *m);
/*
 * Where the repacked weights came from: none (SLM_REPACK=0 or nothing
 * packable), packed in memory, mapped from a current repack cache file, or
 * packed into a new one (model_pack.c; SLM_REPACK_CACHE in docs/cli.md).
 */
enum model_pack_source {
    MODEL_PACK_NONE = 0,
    MODEL_PACK_MEMORY,
    MODEL_PACK_CACHE_READ,
    MODEL_PACK_CACHE_WRITTEN
};
enum model_pack_source model_pack_source(const struct model *m);
/* Bytes of weights (all tensors) and number of parameters. */
uint64_t model_weight_bytes(const struct model *m);
uint64_t model_n_params(const struct model *m);

struct model_context_params {
    uint32_t n_ctx;     /* positions per sequence; 0: the model's, capped at 4096 */
    uint32_t n_seq;     /* sequences (server slots); default 1 */
    uint32_t n_batch;   /* most tokens per model_decode call; default 512 */
    uint32_t n_threads; /* 0: physical cores */
    uint32_t n_outputs; /* most logits rows per model_decode; 0: n_seq (the last token of
                           each sequence); raise it (up to n_batch) for all-token logits */
    bool attn_exact;    /* F32 attention accumulators for every batch; default false: like
                           llama.cpp's CPU flash attention, batches under 64 tokens round q and
                           the weighted-value sum to F16, so greedy runs match llama.cpp's */
};

struct model_context_params model_context_params_default(void);

struct model_context;

SLM_NODISCARD int model_context_new(struct model *m, const struct model_context_params *p,
                                    struct model_context **out, struct slm_diag *d);
void model_context_free(struct model_context *c);
uint32_t model_context_n_ctx(const struct model_context *c);
uint32_t model_context_n_threads(const struct model_context *c);

struct model_batch {
    size_t n_tokens;
    const tok_id *tokens;
    const int32_t *pos; /* position of each token in its sequence */
    const int32_t *seq; /* sequence of each token, 0 .. n_seq-1 */
    const bool *logits; /* whether to produce logits for each token */
};

/*
 * Runs the forward pass for b and stores K/V of every token in the cache.
 * Errors (SLM_EINVAL, SLM_ELIMIT with a message) for an empty batch, an
 * invalid token id, sequence, position gap, a batch larger than n_batch, more
 * logits rows than n_outputs or a full context; on error nothing changes.
 * Allocates nothing.
 */
SLM_NODISCARD int model_decode(struct model_context *c, const struct model_batch *b,
                               struct slm_diag *d);
/* Logits of the i-th token of the last batch that asked for them, in batch
 * order; borrowed until the next model_decode. NULL if i is out of range. */
const float *model_logits(const struct model_context *c, size_t i);
/*
 * Forgets positions [p0, p1) of sequence seq (p1 < 0: to the end). Each
 * sequence's cache is contiguous, so everything from p0 on is forgotten even
 * when p1 is smaller than the length (a middle range cannot be cut out
 * without re-rotating the keys after it). Invalid arguments are ignored.
 */
void model_seq_rm(struct model_context *c, int32_t seq, int32_t p0, int32_t p1);
/* Copies positions [0, n) of sequence src to dst (prefix sharing); dst then
 * holds exactly n positions. SLM_EINVAL for a bad sequence or n > src's length. */
SLM_NODISCARD int model_seq_cp(struct model_context *c, int32_t src, int32_t dst, int32_t n);
/* Number of cached positions of seq (the next position to decode). */
int32_t model_seq_len(const struct model_context *c, int32_t seq);
