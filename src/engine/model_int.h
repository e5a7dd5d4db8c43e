/*
 * model_int.h - internals shared by model.c (loading, validation) and
 * model_decode.c (contexts, KV cache, the forward pass). Not for other modules.
 *
 * Weight layout (GGUF/ggml): a 2-D tensor of ne = [n_in, n_out] stores n_out
 * rows of n_in elements; a linear layer computes y[o] = dot(row o, x) (+ b[o]).
 * Norm weights, biases and rope_freqs are 1-D F32 tensors used in place.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/pool.h"
#include "engine/tokenizer.h"

/* One linear layer: W [n_in, n_out] of a kernel type, optional F32 bias [n_out]. */
struct model_linear {
    const struct gguf_tensor *w;
    const float *b;
    enum tensor_type act; /* the activation type W is multiplied with */
    size_t n_in, n_out;
    size_t row_bytes; /* bytes of one weight row */
    /* The rows repacked for the kernels (kernel_ops.pack; owned), or NULL. */
    void *packed;
};

struct model_layer {
    const float *attn_norm; /* [n_embd] */
    const float *ffn_norm;  /* [n_embd] */
    const float *q_norm;    /* [head_dim], qwen3 */
    const float *k_norm;    /* [head_dim], qwen3 */
    struct model_linear wq, wk, wv, wo, gate, up, down;
};

struct model {
    struct gguf_file *gguf;
    struct tokenizer *tok;
    struct model_hparams hp;
    const struct gguf_tensor *tok_embd; /* [n_embd, n_vocab], any dequantizable type */
    size_t tok_embd_row_bytes;
    const float *output_norm;
    struct model_linear output; /* token_embd when tied */
    const float *rope_freqs;    /* [n_rot / 2] frequency divisors (llama3), or NULL */
    struct model_layer *layers;
    /* RoPE as applied: theta = pos * freq_scale-mixed base^(-2i/n_rot) / ff[i]. */
    float rope_freq_scale; /* 1 / factor for linear and yarn, else 1 */
    float rope_mscale;     /* multiplies cos and sin (YaRN magnitude) */
    float yarn_corr[2];    /* YaRN ramp start and end dims */
    /* Activation types some linear layer needs (indexed by enum tensor_type). */
    bool act_used[TENSOR_TYPE_COUNT];
    size_t max_in; /* largest n_in of any linear layer */
    uint64_t n_params, weight_bytes;
    uint64_t packed_bytes; /* weights repacked at load (model_pack_weights) */
    enum model_pack_source pack_source;
    void *pack_map; /* the repack cache's mapping holding every packed layer, or NULL */
    size_t pack_map_bytes;
    char desc[96];
};

/* model_pack.c: repacks the packable layers (cache file, else memory); frees them. */
SLM_NODISCARD int model_pack_weights(struct model *m, const char *path, struct slm_diag *d);
void model_pack_free(struct model *m);
