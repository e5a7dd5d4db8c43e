/*
 * model_decode.c - model contexts: the F16 KV cache, scratch buffers and the
 * batched forward pass of the llama family (see docs/internals/engine.md).
 *
 * Shapes, for a batch of B tokens (rows), E = n_embd, Q = n_head * head_dim,
 * K = n_head_kv * head_dim, F = n_ff, all row-major with one row per token:
 *   x [B][E] residual stream        xn [B][E] normed input
 *   q [B][Q], k [B][K], v [B][K]    att [B][Q] attention output
 *   gate [B][F], up [B][F]          tmp [B][E] sub-layer output
 *   act[type] [B][row bytes]        the rows quantized for the weights' kernels
 * KV cache: k_cache/v_cache [n_layer][n_seq][n_head_kv][n_ctx][head_dim] F16,
 * so one head's keys of one sequence are contiguous over positions (the
 * attention loop streams them).
 *
 * Every matrix product quantizes the B input rows once (from_float of the
 * weight's activation type) and runs the kernels' gemm tile over ranges of
 * weight rows claimed dynamically by the pool's threads: weights are read
 * once per batch, not once per token. Elementwise steps run per row on the
 * pool; attention runs per (token, head), or for prompt-sized batches per
 * (run of rows of one sequence, KV head) through the kernels' attn_tile, or
 * for decode steps per (token, KV head, part of its query heads) through the
 * kernels' attn_decode.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "engine/model_int.h"
#include "engine/quant.h"

/* Positions per attention score block (attend_f32 rescales once per block). */
#define ATT_CHUNK     64
/* Batches of this many tokens or more use attend_f32 (llama.cpp's tiled path). */
#define ATT_TILE_ROWS 64

struct model_context;

typedef void row_fn(struct model_context *c, size_t row);
/* One attention task with this thread's scratch (c->att_stride floats). */
typedef void att_task_fn(struct model_context *c, size_t task, float *work);

struct mm_job {
    const struct model_linear *l[3];
    float *y[3];
    size_t n_parts;
    size_t row_start[4]; /* cumulative weight rows of the parts */
    const float *src;    /* the f32 input rows (used directly for f32 weights) */
    size_t n_cols;       /* batch rows */
};

struct model_context {
    struct model *m;
    const struct kernel_ops *k;
    struct pool *pool;
    uint32_t n_ctx, n_seq, n_batch, n_outputs, n_threads;
    bool attn_exact;             /* model_context_params.attn_exact */
    size_t n_q, n_kv;            /* row widths of q and of k/v */
    uint16_t *k_cache, *v_cache; /* see the file comment */
    size_t kv_head_stride;       /* n_ctx * head_dim */
    size_t kv_seq_stride;        /* n_head_kv * kv_head_stride */
    size_t kv_layer_stride;      /* n_seq * kv_seq_stride */
    int32_t *seq_len;            /* [n_seq] cached positions */
    int32_t *seq_next;           /* [n_seq] validation scratch */
    /* Per batch row. */
    int32_t *tok_pos, *tok_seq;
    uint32_t *out_rows; /* batch indices that asked for logits */
    float *rope_cs;     /* [B][n_rot]: cos, sin per rotary pair */
    float *temp;        /* [B] attention temperature (mistral3) */
    float *x, *xn, *q, *kx, *vx, *att, *tmp, *gate, *up;
    void *act[TENSOR_TYPE_COUNT];
    float *scores; /* [n_threads][att_stride]: attention scratch (see attend, attn_tile) */
    size_t att_stride;
    /* Tiled attention (kernels' attn_tile): the batch rows in groups of one
     * sequence; a task is (group, KV head) over all its query heads. */
    uint32_t *att_group; /* [B + 1] first row of each group, then the end */
    size_t n_groups, group_rows;
    /* Decode attention (kernels' attn_decode): usable, and this step's split
     * of each KV head's query heads into dec_parts calls of dec_heads. */
    bool dec_ok;
    size_t dec_parts, dec_heads;
    float *logits; /* [n_outputs][n_vocab] */
    size_t n_logits;
    /* The step being run (set by the caller thread before pool_run). */
    uint32_t layer;
    size_t n_rows;
    const struct model_batch *batch;
    row_fn *rfn;
    att_task_fn *att_task;
    struct mm_job mm;
    struct pool_chunks chunks;
};

/* ---- small f32 helpers (row-sized; the heavy work is in the kernels) ---- */

/* y = x / rms(x) * w over n elements; double accumulation. */
static void rmsnorm(float *y, const float *x, const float *w, size_t n, float eps)
{
    double ss = 0.0;
    float mean, s;

    /* llama.cpp's arithmetic: float squares summed in double, the mean and
     * 1/sqrt in float, then (x * s) * w, so the normalised rows, and the
     * 8-bit activations made from them, are the same to the last bit. */
    for (size_t i = 0; i < n; i++)
        ss += (double)(x[i] * x[i]);
    mean = (float)(ss / (double)n);
    s = 1.0f / sqrtf(mean + eps);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * s * w[i];
}

/* Quantizes row t of src (n floats) for every distinct activation type of ls. */
static void quantize_row_for(struct model_context *c, const float *src, size_t t, size_t n,
                             const struct model_linear *const *ls, size_t n_ls)
{
    for (size_t i = 0; i < n_ls; i++) {
        enum tensor_type a = ls[i]->act;
        uint64_t rb = 0;
        bool dup = false;

        for (size_t j = 0; j < i; j++)
            dup = dup || ls[j]->act == a;
        if (dup || a == TENSOR_TYPE_F32) continue;
        if (tensor_row_size(a, n, &rb) < 0)
            continue; /* validated at load: n is a multiple of the block size */
        c->k->from_float[a](src, (char *)c->act[a] + t * (size_t)rb, n);
    }
}

/* ---- pool jobs ---- */

static void job_rows(void *arg, unsigned ith, unsigned nth)
{
    struct model_context *c = arg;
    size_t b, e;

    (void)ith;
    (void)nth;
    while (pool_chunk_next(&c->chunks, &b, &e))
        for (size_t t = b; t < e; t++)
            c->rfn(c, t);
}

/* Runs fn(c, t) for every row t < n on the pool. */
static void run_rows(struct model_context *c, row_fn *fn, size_t n)
{
    if (n == 0) return;
    c->rfn = fn;
    if (n == 1 || c->n_threads == 1) {
        for (size_t t = 0; t < n; t++)
            fn(c, t);
        return;
    }
    pool_chunks_init(&c->chunks, n, (n + c->n_threads * 4 - 1) / (c->n_threads * 4));
    pool_run(c->pool, job_rows, c);
}

/*
 * Matrix job: y_p[col][r] = W_p row r . x[col] (+ b_p[r]) for every part p,
 * col < n_cols and weight row r, rows claimed in chunks across threads.
 */
static void job_matmul(void *arg, unsigned ith, unsigned nth)
{
    struct model_context *c = arg;
    const struct mm_job *j = &c->mm;
    size_t b, e;

    (void)ith;
    (void)nth;
    while (pool_chunk_next(&c->chunks, &b, &e)) {
        size_t r = b;
        while (r < e) {
            size_t p = 0, r0, r1, x_stride;
            const struct model_linear *l;
            const void *x;
            uint64_t rb = 0;
            float *y;

            while (r >= j->row_start[p + 1])
                p++;
            l = j->l[p];
            r0 = r - j->row_start[p];
            r1 = (e < j->row_start[p + 1] ? e : j->row_start[p + 1]) - j->row_start[p];
            if (l->act == TENSOR_TYPE_F32) {
                x = j->src;
                x_stride = l->n_in * sizeof(float);
            } else {
                if (tensor_row_size(l->act, l->n_in, &rb) < 0) return;
                x = c->act[l->act];
                x_stride = (size_t)rb;
            }
            y = j->y[p];
            if (l->packed != NULL && c->k->gemm_packed[l->w->type] != NULL &&
                r0 % KERNELS_PACK_ROWS == 0 && (r1 - r0) % KERNELS_PACK_ROWS == 0)
                c->k->gemm_packed[l->w->type](l->n_in, (const char *)l->packed + r0 * l->row_bytes,
                                              l->row_bytes, r1 - r0, x, x_stride, j->n_cols, y + r0,
                                              l->n_out);
            else
                c->k->gemm[l->w->type](l->n_in, (const char *)l->w->data + r0 * l->row_bytes,
                                       l->row_bytes, r1 - r0, x, x_stride, j->n_cols, y + r0,
                                       l->n_out);
            if (l->b != NULL)
                for (size_t col = 0; col < j->n_cols; col++)
                    for (size_t i = r0; i < r1; i++)
                        y[col * l->n_out + i] += l->b[i];
            r += r1 - r0;
        }
    }
}

/*
 * Runs up to three linear layers sharing one input (already quantized into
 * c->act by the caller's row step) over n_cols rows: y_p = x W_p^T.
 */
static void run_matmul(struct model_context *c, const float *src, size_t n_cols,
                       const struct model_linear *l0, float *y0, const struct model_linear *l1,
                       float *y1, const struct model_linear *l2, float *y2)
{
    struct mm_job *j = &c->mm;
    size_t total, chunk;

    if (n_cols == 0) return;
    j->n_parts = 0;
    j->row_start[0] = 0;
    j->src = src;
    j->n_cols = n_cols;
    if (l0 != NULL) {
        j->l[j->n_parts] = l0;
        j->y[j->n_parts++] = y0;
    }
    if (l1 != NULL) {
        j->l[j->n_parts] = l1;
        j->y[j->n_parts++] = y1;
    }
    if (l2 != NULL) {
        j->l[j->n_parts] = l2;
        j->y[j->n_parts++] = y2;
    }
    for (size_t p = 0; p < j->n_parts; p++)
        j->row_start[p + 1] = j->row_start[p] + j->l[p]->n_out;
    for (size_t p = j->n_parts + 1; p < 4; p++)
        j->row_start[p] = j->row_start[j->n_parts];
    total = j->row_start[j->n_parts];
    /* About 4 chunks per thread, multiples of 16 rows (kernel-friendly). */
    chunk = (total + c->n_threads * 4 - 1) / (c->n_threads * 4);
    chunk = (chunk + 15) / 16 * 16;
    pool_chunks_init(&c->chunks, total, chunk);
    if (c->n_threads == 1)
        job_matmul(c, 0, 1);
    else
        pool_run(c->pool, job_matmul, c);
}

/* ---- row steps ---- */

/*
 * Embedding lookup of batch row t (dequantizes one token_embd row). When the
 * table is also the output matrix and was repacked, the row is first
 * unpacked from its group into c->tmp's row (E floats, at least a row's
 * bytes in any type; free until the first residual add).
 */
static void row_embed(struct model_context *c, size_t t)
{
    const struct model *m = c->m;
    tok_id id = c->batch->tokens[t];
    size_t rb = m->tok_embd_row_bytes;
    const char *src = (const char *)m->tok_embd->data + (size_t)id * rb;

    if (m->output.w == m->tok_embd && m->output.packed != NULL) {
        size_t r = (size_t)id % KERNELS_PACK_ROWS;

        c->k->unpack[m->tok_embd->type]((const char *)m->output.packed + ((size_t)id - r) * rb, rb,
                                        r, c->tmp + t * m->hp.n_embd);
        src = (const char *)(c->tmp + t * m->hp.n_embd);
    }

    if (quant_dequantize_row(m->tok_embd->type, src, c->x + t * m->hp.n_embd, m->hp.n_embd) < 0)
        memset(c->x + t * m->hp.n_embd, 0, m->hp.n_embd * sizeof(float));
}

/*
 * Rotary cos/sin of batch row t's position, and its attention temperature.
 * The angles follow llama.cpp's arithmetic exactly, in float: theta starts at
 * the position and is multiplied by base^(-2 / n_rot) once per pair (so the
 * rounding of that running product is part of the result), divided by the
 * rope_freqs factor, scaled and YaRN-mixed, then cosf/sinf times mscale.
 * Computing each angle in double would be closer to the textbook formula,
 * but a last-bit difference here is enough to flip an 8-bit activation a few
 * layers later and part greedy runs from llama.cpp's on the same file.
 */
static void row_rope_prep(struct model_context *c, size_t t)
{
    const struct model *m = c->m;
    const struct model_hparams *hp = &m->hp;
    double pos = (double)c->tok_pos[t];
    float *cs = c->rope_cs + t * hp->n_rot;
    float theta_scale = powf(hp->rope_freq_base, -2.0f / (float)hp->n_rot);
    float theta_base = (float)c->tok_pos[t];

    for (uint32_t i = 0; i < hp->n_rot / 2; i++) {
        float extrap = m->rope_freqs != NULL ? theta_base / m->rope_freqs[i] : theta_base;
        float theta = m->rope_freq_scale * extrap;

        if (hp->yarn_ext_factor != 0.0f) {
            float y =
                ((float)i - m->yarn_corr[0]) / fmaxf(0.001f, m->yarn_corr[1] - m->yarn_corr[0]);
            float ramp = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * hp->yarn_ext_factor;

            theta = theta * (1.0f - ramp) + extrap * ramp;
        }
        cs[2 * i] = cosf(theta) * m->rope_mscale;
        cs[2 * i + 1] = sinf(theta) * m->rope_mscale;
        theta_base *= theta_scale;
    }
    c->temp[t] = 1.0f;
    if (hp->attn_temp_scale != 0.0f)
        c->temp[t] =
            (float)(log(floor(pos / hp->attn_temp_floor_scale) + 1.0) * hp->attn_temp_scale + 1.0);
}

/* Rotates one head vector in place with the cos/sin table of its token. */
static void rope_head(float *v, const float *cs, uint32_t n_rot, enum rope_type type)
{
    uint32_t half = n_rot / 2;

    for (uint32_t i = 0; i < half; i++) {
        float co = cs[2 * i], si = cs[2 * i + 1];
        size_t a = type == ROPE_TYPE_NEOX ? i : 2 * i;
        size_t b = type == ROPE_TYPE_NEOX ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b];

        /* Fused as GCC compiles llama.cpp's rotation (its default
         * -ffp-contract=fast); our ISO C build contracts nothing itself. */
        v[a] = fmaf(x0, co, -(x1 * si));
        v[b] = fmaf(x0, si, x1 * co);
    }
}

/* Layer input: x += tmp (previous sub-layer), xn = norm(x) * attn_norm, quantize. */
static void row_attn_in(struct model_context *c, size_t t)
{
    const struct model *m = c->m;
    const struct model_layer *L = &m->layers[c->layer];
    size_t E = m->hp.n_embd;
    float *x = c->x + t * E, *xn = c->xn + t * E;
    const struct model_linear *ls[3] = { &L->wq, &L->wk, &L->wv };

    if (c->layer > 0)
        for (size_t i = 0; i < E; i++)
            x[i] += c->tmp[t * E + i];
    rmsnorm(xn, x, L->attn_norm, E, m->hp.norm_eps);
    quantize_row_for(c, xn, t, E, ls, 3);
}

/* After the QKV product: QK-norm, RoPE, temperature; K and V into the cache. */
static void row_qk(struct model_context *c, size_t t)
{
    const struct model *m = c->m;
    const struct model_hparams *hp = &m->hp;
    const struct model_layer *L = &m->layers[c->layer];
    size_t hd = hp->head_dim;
    float *q = c->q + t * c->n_q, *k = c->kx + t * c->n_kv, *v = c->vx + t * c->n_kv;
    const float *cs = c->rope_cs + t * hp->n_rot;
    size_t base = c->layer * c->kv_layer_stride + (size_t)c->tok_seq[t] * c->kv_seq_stride +
                  (size_t)c->tok_pos[t] * hd;

    for (uint32_t h = 0; h < hp->n_head; h++) {
        float *qh = q + h * hd;
        if (L->q_norm != NULL) rmsnorm(qh, qh, L->q_norm, hd, hp->norm_eps);
        rope_head(qh, cs, hp->n_rot, hp->rope_type);
        if (c->temp[t] != 1.0f)
            for (size_t i = 0; i < hd; i++)
                qh[i] *= c->temp[t];
    }
    for (uint32_t h = 0; h < hp->n_head_kv; h++) {
        float *kh = k + h * hd;
        if (L->k_norm != NULL) rmsnorm(kh, kh, L->k_norm, hd, hp->norm_eps);
        rope_head(kh, cs, hp->n_rot, hp->rope_type);
        c->k->f32_to_f16(kh, c->k_cache + base + h * c->kv_head_stride, hd);
        c->k->f32_to_f16(v + h * hd, c->v_cache + base + h * c->kv_head_stride, hd);
    }
}

/*
 * Attention of one (row, head) task: softmax(q . K^T * scale) V over the
 * positions 0 .. pos of the row's sequence, streaming over the F16 cache.
 * Two variants with llama.cpp's CPU flash-attention rounding (ggml-cpu
 * ops.cpp), so that greedy runs agree token for token with it:
 *
 * attend_f16 (batches of fewer than ATT_TILE_ROWS tokens, every decode step;
 * ggml's one-row path): q rounded to F16; score = dot(q, k) * scale; a
 * per-position online softmax (M, S in F32, expf); the unnormalized output is
 * an F16 vector: on a new maximum it is scaled by expf(Mold - M) and rounded
 * to F16, then each v is added with an F32 multiply-add (v * w + acc) rounded
 * to F16; at the end it is multiplied by 1 / S in F32. The kernels' dot_f16,
 * scale_f16 and mad_f16 do each step in one pass over head_dim. Tables with
 * attn_decode (AVX-512) run these steps through attend_decode instead: the
 * same arithmetic for all the query heads of a KV head at once.
 *
 * attend_f32 (batches of ATT_TILE_ROWS tokens or more, like ggml's tiled
 * path, on kernel tables without attn_tile): q in F32, blocks of ATT_CHUNK
 * positions, the block maximum rescales the F32 accumulator once per block.
 * Tables with attn_tile (AVX-512) run such batches through attend_group
 * instead: the same block-wise online softmax in F32, for all the query
 * heads of a run of rows that read one KV head at once.
 */
static void attend_f32(struct model_context *c, const float *q, const uint16_t *K,
                       const uint16_t *V, size_t n, float *out, float *scores)
{
    size_t hd = c->m->hp.head_dim;
    float scale = 1.0f / sqrtf((float)hd);
    float mx = -INFINITY, l = 0.0f;

    memset(out, 0, hd * sizeof(float));
    for (size_t j0 = 0; j0 < n; j0 += ATT_CHUNK) {
        size_t cnt = n - j0 < ATT_CHUNK ? n - j0 : ATT_CHUNK;
        float bm = -INFINITY;

        for (size_t j = 0; j < cnt; j++) {
            scores[j] = c->k->dot_f32_f16(q, K + (j0 + j) * hd, hd) * scale;
            if (scores[j] > bm) bm = scores[j];
        }
        if (bm > mx) {
            float corr = expf(mx - bm); /* 0 on the first block */
            for (size_t i = 0; i < hd; i++)
                out[i] *= corr;
            l *= corr;
            mx = bm;
        }
        for (size_t j = 0; j < cnt; j++) {
            float w = expf(scores[j] - mx);
            l += w;
            c->k->axpy_f16(hd, w, V + (j0 + j) * hd, out);
        }
    }
    if (l > 0.0f) {
        float inv = 1.0f / l;
        for (size_t i = 0; i < hd; i++)
            out[i] *= inv;
    }
}

static void attend_f16(struct model_context *c, const float *q, const uint16_t *K,
                       const uint16_t *V, size_t n, float *out, float *scores)
{
    size_t hd = c->m->hp.head_dim;

    kernels_attend_f16(c->k, hd, q, out, n, K, V, 1.0f / sqrtf((float)hd), scores);
}

static void attend(struct model_context *c, size_t task, float *scores)
{
    const struct model_hparams *hp = &c->m->hp;
    size_t hd = hp->head_dim;
    size_t t = task / hp->n_head, h = task % hp->n_head;
    size_t kvh = h / (hp->n_head / hp->n_head_kv);
    size_t base = c->layer * c->kv_layer_stride + (size_t)c->tok_seq[t] * c->kv_seq_stride +
                  kvh * c->kv_head_stride;
    const uint16_t *K = c->k_cache + base, *V = c->v_cache + base;
    const float *q = c->q + t * c->n_q + h * hd;
    float *out = c->att + t * c->n_q + h * hd;
    size_t n = (size_t)c->tok_pos[t] + 1;

    if (c->batch->n_tokens >= ATT_TILE_ROWS || c->attn_exact)
        attend_f32(c, q, K, V, n, out, scores);
    else
        attend_f16(c, q, K, V, n, out, scores);
}

/*
 * Task (row t, KV head kvh, part p) of the decode path on a table with
 * attn_decode: the query heads dec_heads * p .. of the ratio that read kvh,
 * in one call, so each key and value is converted once for all of them and
 * the heads' chains overlap. The bits are attend_f16's.
 */
static void attend_decode(struct model_context *c, size_t task, float *work)
{
    const struct model_hparams *hp = &c->m->hp;
    size_t hd = hp->head_dim, ratio = hp->n_head / hp->n_head_kv;
    size_t per_row = hp->n_head_kv * c->dec_parts;
    size_t t = task / per_row, kvh = task % per_row / c->dec_parts, p = task % c->dec_parts;
    size_t h0 = kvh * ratio + p * c->dec_heads, h1 = h0 + c->dec_heads, nr = 0;
    size_t base = c->layer * c->kv_layer_stride + (size_t)c->tok_seq[t] * c->kv_seq_stride +
                  kvh * c->kv_head_stride;
    const float *q[KERNELS_DECODE_ROWS];
    float *out[KERNELS_DECODE_ROWS];

    if (h1 > (kvh + 1) * ratio) h1 = (kvh + 1) * ratio;
    for (size_t h = h0; h < h1; h++, nr++) {
        q[nr] = c->q + t * c->n_q + h * hd;
        out[nr] = c->att + t * c->n_q + h * hd;
    }
    c->k->attn_decode(hd, nr, q, out, (size_t)c->tok_pos[t] + 1, c->k_cache + base,
                      c->v_cache + base, 1.0f / sqrtf((float)hd), work);
}

/*
 * Whether this step's attention goes through attn_decode (the steps that
 * would run attend_f16, on a table that has it), and in how many tasks:
 * each KV head's query heads in as few parts of at most KERNELS_DECODE_ROWS
 * as keep every thread busy.
 */
static size_t plan_decode_attention(struct model_context *c, size_t rows)
{
    const struct model_hparams *hp = &c->m->hp;
    size_t ratio = hp->n_head / hp->n_head_kv, parts, want;

    if (!c->dec_ok || c->batch->n_tokens >= ATT_TILE_ROWS || c->attn_exact) return 0;
    parts = (ratio + KERNELS_DECODE_ROWS - 1) / KERNELS_DECODE_ROWS;
    want = (c->n_threads + rows * hp->n_head_kv - 1) / (rows * hp->n_head_kv);
    if (want > ratio) want = ratio;
    if (want > parts) parts = want;
    c->dec_heads = (ratio + parts - 1) / parts;
    c->dec_parts = (ratio + c->dec_heads - 1) / c->dec_heads;
    return rows * hp->n_head_kv * c->dec_parts;
}

/*
 * Task (group g, KV head kvh) of the tiled path: every (row, query head)
 * pair of the group that reads KV head kvh, in one attn_tile call, so each
 * tile of keys and values is converted once for all of them.
 */
static void attend_group(struct model_context *c, size_t task, float *work)
{
    const struct model_hparams *hp = &c->m->hp;
    size_t hd = hp->head_dim, ratio = hp->n_head / hp->n_head_kv;
    size_t g = task / hp->n_head_kv, kvh = task % hp->n_head_kv, nr = 0;
    const float *q[KERNELS_ATTN_ROWS];
    float *out[KERNELS_ATTN_ROWS];
    int32_t n[KERNELS_ATTN_ROWS];
    size_t t0 = c->att_group[g], t1 = c->att_group[g + 1];
    size_t base = c->layer * c->kv_layer_stride + (size_t)c->tok_seq[t0] * c->kv_seq_stride +
                  kvh * c->kv_head_stride;

    for (size_t t = t0; t < t1; t++)
        for (size_t h = kvh * ratio; h < (kvh + 1) * ratio; h++) {
            q[nr] = c->q + t * c->n_q + h * hd;
            out[nr] = c->att + t * c->n_q + h * hd;
            n[nr] = c->tok_pos[t] + 1;
            nr++;
        }
    c->k->attn_tile(hd, nr, q, out, n, c->k_cache + base, c->v_cache + base,
                    1.0f / sqrtf((float)hd), work);
}

static void job_attention(void *arg, unsigned ith, unsigned nth)
{
    struct model_context *c = arg;
    float *work = c->scores + (size_t)ith * c->att_stride;
    size_t b, e;

    (void)nth;
    while (pool_chunk_next(&c->chunks, &b, &e))
        for (size_t task = b; task < e; task++)
            c->att_task(c, task, work);
}

/* Runs fn over tasks 0 .. n - 1 on the pool (on this thread if only one). */
static void run_attention(struct model_context *c, att_task_fn *fn, size_t n)
{
    c->att_task = fn;
    pool_chunks_init(&c->chunks, n, 1);
    if (c->n_threads == 1 || n == 1)
        job_attention(c, 0, 1);
    else
        pool_run(c->pool, job_attention, c);
}

/*
 * Whether this step's attention goes through attn_tile: prompt-sized
 * batches (or attn_exact) on a kernel table that has one. Groups the rows
 * into runs of one sequence, at most group_rows each.
 */
static bool plan_tiled_attention(struct model_context *c, size_t rows)
{
    if (c->group_rows == 0 || (c->batch->n_tokens < ATT_TILE_ROWS && !c->attn_exact)) return false;
    c->n_groups = 0;
    for (size_t t = 0; t < rows; t++)
        if (t == 0 || c->tok_seq[t] != c->tok_seq[c->att_group[c->n_groups - 1]] ||
            t - c->att_group[c->n_groups - 1] == c->group_rows)
            c->att_group[c->n_groups++] = (uint32_t)t;
    c->att_group[c->n_groups] = (uint32_t)rows;
    return true;
}

/* Quantizes attention output row t for the output projection. */
static void row_att_quant(struct model_context *c, size_t t)
{
    const struct model_linear *ls[1] = { &c->m->layers[c->layer].wo };

    quantize_row_for(c, c->att + t * c->n_q, t, c->n_q, ls, 1);
}

/* FFN input: x += attention output, xn = norm(x) * ffn_norm, quantize. */
static void row_ffn_in(struct model_context *c, size_t t)
{
    const struct model *m = c->m;
    const struct model_layer *L = &m->layers[c->layer];
    size_t E = m->hp.n_embd;
    float *x = c->x + t * E, *xn = c->xn + t * E;
    const struct model_linear *ls[2] = { &L->gate, &L->up };

    for (size_t i = 0; i < E; i++)
        x[i] += c->tmp[t * E + i];
    rmsnorm(xn, x, L->ffn_norm, E, m->hp.norm_eps);
    quantize_row_for(c, xn, t, E, ls, 2);
}

/* SwiGLU: gate = silu(gate) * up, quantized for ffn_down. */
static void row_swiglu(struct model_context *c, size_t t)
{
    const struct model *m = c->m;
    size_t F = m->hp.n_ff;
    float *g = c->gate + t * F;
    const float *u = c->up + t * F;
    const struct model_linear *ls[1] = { &m->layers[c->layer].down };

    c->k->swiglu(F, g, u);
    quantize_row_for(c, g, t, F, ls, 1);
}

/* Final norm of an output row, quantized for the output layer. */
static void row_out(struct model_context *c, size_t t)
{
    const struct model *m = c->m;
    size_t E = m->hp.n_embd;
    float *x = c->x + t * E, *xn = c->xn + t * E;
    const struct model_linear *ls[1] = { &m->output };

    for (size_t i = 0; i < E; i++)
        x[i] += c->tmp[t * E + i];
    rmsnorm(xn, x, m->output_norm, E, m->hp.norm_eps);
    quantize_row_for(c, xn, t, E, ls, 1);
}

/* ---- the forward pass ---- */

/* Checks b against the context without changing anything. */
static int validate_batch(struct model_context *c, const struct model_batch *b, size_t *n_out,
                          struct slm_diag *d)
{
    uint32_t n_vocab = c->m->hp.n_vocab;
    size_t n = b->n_tokens, outs = 0;

    if (n == 0 || b->tokens == NULL) return slm_diag_set(d, SLM_EINVAL, "empty batch");
    if (n > c->n_batch)
        return slm_diag_set(d, SLM_ELIMIT, "batch of %zu tokens exceeds n_batch %u", n, c->n_batch);
    memcpy(c->seq_next, c->seq_len, c->n_seq * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        int32_t s = b->seq != NULL ? b->seq[i] : 0;
        int32_t p;

        if (b->tokens[i] < 0 || (uint32_t)b->tokens[i] >= n_vocab)
            return slm_diag_set(d, SLM_EINVAL, "batch token %zu: id %d outside 0..%u", i,
                                b->tokens[i], n_vocab - 1);
        if (s < 0 || (uint32_t)s >= c->n_seq)
            return slm_diag_set(d, SLM_EINVAL, "batch token %zu: sequence %d outside 0..%u", i, s,
                                c->n_seq - 1);
        p = b->pos != NULL ? b->pos[i] : c->seq_next[s];
        if (p != c->seq_next[s])
            return slm_diag_set(d, SLM_EINVAL,
                                "batch token %zu: position %d of sequence %d, expected %d (no "
                                "gaps or repeats)",
                                i, p, s, c->seq_next[s]);
        if ((uint32_t)p >= c->n_ctx)
            return slm_diag_set(
                d, SLM_ELIMIT, "context full: sequence %d holds %u positions (n_ctx)", s, c->n_ctx);
        c->seq_next[s]++;
        c->tok_pos[i] = p;
        c->tok_seq[i] = s;
        if (b->logits != NULL ? b->logits[i] : i + 1 == n) {
            if (outs == c->n_outputs)
                return slm_diag_set(d, SLM_ELIMIT,
                                    "batch asks for more than %u rows of logits (n_outputs)",
                                    c->n_outputs);
            c->out_rows[outs++] = (uint32_t)i;
        }
    }
    *n_out = outs;
    return 0;
}

/* Moves the rows that asked for logits to the front (last layer only). */
static void compact_rows(struct model_context *c, size_t n_out)
{
    size_t E = c->m->hp.n_embd;

    for (size_t i = 0; i < n_out; i++) {
        size_t s = c->out_rows[i];
        if (s == i) continue;
        memcpy(c->x + i * E, c->x + s * E, E * sizeof(float));
        memcpy(c->q + i * c->n_q, c->q + s * c->n_q, c->n_q * sizeof(float));
        c->tok_pos[i] = c->tok_pos[s];
        c->tok_seq[i] = c->tok_seq[s];
    }
}

/*
 * Runs the forward pass for b (see model.h): validates it, then for every
 * layer norm -> QKV -> RoPE -> cache -> attention -> output projection ->
 * norm -> SwiGLU FFN, and logits for the rows that asked. On error nothing
 * (cache, lengths, logits) is changed. Allocates nothing.
 */
int model_decode(struct model_context *c, const struct model_batch *b, struct slm_diag *d)
{
    const struct model *m = c->m;
    const struct model_hparams *hp = &m->hp;
    size_t n = b->n_tokens, n_out = 0, rows, n_dec;
    int rc;

    if ((rc = validate_batch(c, b, &n_out, d)) < 0) return rc;
    c->batch = b;
    c->n_logits = 0;
    run_rows(c, row_embed, n);
    run_rows(c, row_rope_prep, n);
    rows = n;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const struct model_layer *L = &m->layers[il];

        c->layer = il;
        run_rows(c, row_attn_in, rows);
        run_matmul(c, c->xn, rows, &L->wq, c->q, &L->wk, c->kx, &L->wv, c->vx);
        run_rows(c, row_qk, rows);
        if (il + 1 == hp->n_layer) {
            /* Only rows that want logits go on; their K/V are cached already. */
            compact_rows(c, n_out);
            rows = n_out;
            if (rows == 0) break;
        }
        if (plan_tiled_attention(c, rows))
            run_attention(c, attend_group, c->n_groups * hp->n_head_kv);
        else if ((n_dec = plan_decode_attention(c, rows)) > 0)
            run_attention(c, attend_decode, n_dec);
        else
            run_attention(c, attend, rows * hp->n_head);
        run_rows(c, row_att_quant, rows);
        run_matmul(c, c->att, rows, &L->wo, c->tmp, NULL, NULL, NULL, NULL);
        run_rows(c, row_ffn_in, rows);
        run_matmul(c, c->xn, rows, &L->gate, c->gate, &L->up, c->up, NULL, NULL);
        run_rows(c, row_swiglu, rows);
        run_matmul(c, c->gate, rows, &L->down, c->tmp, NULL, NULL, NULL, NULL);
    }
    if (n_out > 0) {
        run_rows(c, row_out, n_out);
        run_matmul(c, c->xn, n_out, &m->output, c->logits, NULL, NULL, NULL, NULL);
    }
    c->n_logits = n_out;
    memcpy(c->seq_len, c->seq_next, c->n_seq * sizeof(int32_t));
    return 0;
}

/* Returns borrowed (until the next model_decode): row i of the last logits. */
const float *model_logits(const struct model_context *c, size_t i)
{
    if (i >= c->n_logits) return NULL;
    return c->logits + i * c->m->hp.n_vocab;
}

/* ---- KV cache bookkeeping ---- */

/*
 * Forgets positions [p0, p1) of seq. Each sequence's cache is contiguous, so
 * everything from p0 on is forgotten (a range in the middle cannot be cut out
 * without re-rotating the keys after it). Invalid arguments are ignored.
 */
void model_seq_rm(struct model_context *c, int32_t seq, int32_t p0, int32_t p1)
{
    (void)p1;
    if (seq < 0 || (uint32_t)seq >= c->n_seq || p0 < 0) return;
    if (p0 < c->seq_len[seq]) c->seq_len[seq] = p0;
}

/*
 * Copies positions [0, n) of src into dst, which then holds exactly n
 * positions. SLM_EINVAL for a bad sequence or n beyond src's length.
 */
int model_seq_cp(struct model_context *c, int32_t src, int32_t dst, int32_t n)
{
    const struct model_hparams *hp = &c->m->hp;

    if (src < 0 || dst < 0 || (uint32_t)src >= c->n_seq || (uint32_t)dst >= c->n_seq || n < 0 ||
        n > c->seq_len[src])
        return SLM_EINVAL;
    if (src != dst) {
        for (uint32_t il = 0; il < hp->n_layer; il++) {
            for (uint32_t h = 0; h < hp->n_head_kv; h++) {
                size_t off = il * c->kv_layer_stride + h * c->kv_head_stride;
                size_t so = off + (size_t)src * c->kv_seq_stride;
                size_t dof = off + (size_t)dst * c->kv_seq_stride;
                size_t len = (size_t)n * hp->head_dim * sizeof(uint16_t);

                memcpy(c->k_cache + dof, c->k_cache + so, len);
                memcpy(c->v_cache + dof, c->v_cache + so, len);
            }
        }
    }
    c->seq_len[dst] = n;
    return 0;
}

/* Number of cached positions of seq (0 for an invalid seq). */
int32_t model_seq_len(const struct model_context *c, int32_t seq)
{
    if (seq < 0 || (uint32_t)seq >= c->n_seq) return 0;
    return c->seq_len[seq];
}

/* ---- contexts ---- */

struct model_context_params model_context_params_default(void)
{
    struct model_context_params p = { 0 };

    p.n_ctx = 0;
    p.n_seq = 1;
    p.n_batch = 512;
    p.n_threads = 0;
    p.n_outputs = 0;
    return p;
}

/* Allocates n * size bytes (n, size already bounded), zeroed; NULL on overflow or OOM. */
static void *alloc_array(size_t n, size_t size)
{
    size_t bytes;

    if (!slm_mul_size(n, size, &bytes)) return NULL;
    return slm_aligned_alloc(64, bytes > 0 ? (bytes + 63) / 64 * 64 : 64);
}

/* Product of three sizes, or SIZE_MAX on overflow. */
static size_t mul3(size_t a, size_t b, size_t c)
{
    size_t ab, abc;

    if (!slm_mul_size(a, b, &ab) || !slm_mul_size(ab, c, &abc)) return SIZE_MAX;
    return abc;
}

/*
 * Creates a context for m: the KV cache for p->n_seq sequences of p->n_ctx
 * positions and every scratch buffer for batches of p->n_batch tokens.
 * Borrows m (it must outlive the context). Returns 0 and new in *out, or
 * SLM_ELIMIT/SLM_EINVAL for a parameter out of range, SLM_ENOMEM.
 */
int model_context_new(struct model *m, const struct model_context_params *p,
                      struct model_context **out, struct slm_diag *d)
{
    const struct model_hparams *hp = &m->hp;
    struct model_context *c;
    size_t B, kv_elems, E = hp->n_embd;
    unsigned n_threads;
    int rc;

    *out = NULL;
    c = slm_calloc(1, sizeof(*c));
    if (c == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory for a model context");
    c->m = m;
    c->k = kernels_get();
    c->n_ctx = p->n_ctx != 0 ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    c->n_seq = p->n_seq != 0 ? p->n_seq : 1;
    c->n_batch = p->n_batch != 0 ? p->n_batch : 512;
    c->n_outputs = p->n_outputs != 0 ? p->n_outputs : c->n_seq;
    c->attn_exact = p->attn_exact;
    if (c->n_outputs > c->n_batch) c->n_outputs = c->n_batch;
    n_threads = p->n_threads != 0 ? p->n_threads : pool_default_threads();
    if (c->n_ctx > SLM_LIMIT_CONTEXT || c->n_seq > SLM_LIMIT_SEQUENCES ||
        c->n_batch > SLM_LIMIT_BATCH || n_threads > SLM_LIMIT_THREADS) {
        rc = slm_diag_set(d, SLM_ELIMIT,
                          "context parameters n_ctx %u, n_seq %u, n_batch %u, n_threads %u "
                          "exceed the limits %u, %u, %u, %u",
                          c->n_ctx, c->n_seq, c->n_batch, n_threads, SLM_LIMIT_CONTEXT,
                          SLM_LIMIT_SEQUENCES, SLM_LIMIT_BATCH, SLM_LIMIT_THREADS);
        goto fail;
    }
    c->n_threads = n_threads;
    c->n_q = (size_t)hp->n_head * hp->head_dim;
    c->n_kv = (size_t)hp->n_head_kv * hp->head_dim;
    c->kv_head_stride = (size_t)c->n_ctx * hp->head_dim;
    c->kv_seq_stride = c->kv_head_stride * hp->n_head_kv;
    kv_elems = mul3(c->kv_seq_stride, c->n_seq, hp->n_layer);
    if (kv_elems == SIZE_MAX || c->kv_seq_stride / hp->n_head_kv != c->kv_head_stride) {
        rc = slm_diag_set(d, SLM_ELIMIT, "KV cache of %u x %u positions is too large", c->n_seq,
                          c->n_ctx);
        goto fail;
    }
    c->kv_layer_stride = c->kv_seq_stride * c->n_seq;
    B = c->n_batch;
    c->k_cache = alloc_array(kv_elems, sizeof(uint16_t));
    c->v_cache = alloc_array(kv_elems, sizeof(uint16_t));
    c->seq_len = alloc_array(c->n_seq, sizeof(int32_t));
    c->seq_next = alloc_array(c->n_seq, sizeof(int32_t));
    c->tok_pos = alloc_array(B, sizeof(int32_t));
    c->tok_seq = alloc_array(B, sizeof(int32_t));
    c->out_rows = alloc_array(B, sizeof(uint32_t));
    c->rope_cs = alloc_array(B, (hp->n_rot > 0 ? hp->n_rot : 1) * sizeof(float));
    c->temp = alloc_array(B, sizeof(float));
    c->x = alloc_array(B, E * sizeof(float));
    c->xn = alloc_array(B, E * sizeof(float));
    c->tmp = alloc_array(B, E * sizeof(float));
    c->q = alloc_array(B, c->n_q * sizeof(float));
    c->att = alloc_array(B, c->n_q * sizeof(float));
    c->kx = alloc_array(B, c->n_kv * sizeof(float));
    c->vx = alloc_array(B, c->n_kv * sizeof(float));
    c->gate = alloc_array(B, (size_t)hp->n_ff * sizeof(float));
    c->up = alloc_array(B, (size_t)hp->n_ff * sizeof(float));
    c->att_stride = ATT_CHUNK + 3 * (size_t)hp->head_dim;
    if (c->k->attn_tile != NULL && hp->head_dim % 16 == 0 &&
        hp->n_head / hp->n_head_kv <= KERNELS_ATTN_ROWS) {
        size_t tile = kernels_attn_work_floats(hp->head_dim);

        c->group_rows = KERNELS_ATTN_ROWS / (hp->n_head / hp->n_head_kv);
        if (tile > c->att_stride) c->att_stride = tile;
    }
    c->dec_ok = c->k->attn_decode != NULL && hp->head_dim % 64 == 0;
    if (c->dec_ok && kernels_decode_work_floats(hp->head_dim) > c->att_stride)
        c->att_stride = kernels_decode_work_floats(hp->head_dim);
    c->att_stride = (c->att_stride + 15) / 16 * 16; /* 64-byte aligned per thread */
    c->scores = alloc_array(n_threads, c->att_stride * sizeof(float));
    c->att_group = alloc_array(B + 1, sizeof(uint32_t));
    c->logits = alloc_array(c->n_outputs, (size_t)hp->n_vocab * sizeof(float));
    if (c->k_cache == NULL || c->v_cache == NULL || c->seq_len == NULL || c->seq_next == NULL ||
        c->tok_pos == NULL || c->tok_seq == NULL || c->out_rows == NULL || c->rope_cs == NULL ||
        c->temp == NULL || c->x == NULL || c->xn == NULL || c->tmp == NULL || c->q == NULL ||
        c->att == NULL || c->kx == NULL || c->vx == NULL || c->gate == NULL || c->up == NULL ||
        c->scores == NULL || c->att_group == NULL || c->logits == NULL)
        goto nomem;
    memset(c->seq_len, 0, c->n_seq * sizeof(int32_t));
    for (int t = 0; t < TENSOR_TYPE_COUNT; t++) {
        uint64_t rb;
        if (!m->act_used[t] || t == TENSOR_TYPE_F32) continue;
        if (tensor_row_size((enum tensor_type)t, m->max_in, &rb) < 0) {
            /* max_in may not be a multiple of this block; round up to one. */
            const struct tensor_type_traits *tt = tensor_type_get((uint32_t)t);
            uint64_t nb = (m->max_in + tt->block_size - 1) / tt->block_size;
            rb = nb * tt->type_size;
        }
        c->act[t] = alloc_array(B, (size_t)rb);
        if (c->act[t] == NULL) goto nomem;
    }
    if ((rc = pool_new(n_threads, &c->pool, d)) < 0) goto fail;
    *out = c;
    return 0;
nomem:
    rc =
        slm_diag_set(d, SLM_ENOMEM, "out of memory for a context of %u x %u positions and batch %u",
                     c->n_seq, c->n_ctx, c->n_batch);
fail:
    model_context_free(c);
    return rc;
}

/* Frees c (not its model); NULL is a no-op. */
void model_context_free(struct model_context *c)
{
    if (c == NULL) return;
    pool_free(c->pool);
    for (int t = 0; t < TENSOR_TYPE_COUNT; t++)
        slm_free(c->act[t]);
    slm_free(c->logits);
    slm_free(c->att_group);
    slm_free(c->scores);
    slm_free(c->up);
    slm_free(c->gate);
    slm_free(c->vx);
    slm_free(c->kx);
    slm_free(c->att);
    slm_free(c->q);
    slm_free(c->tmp);
    slm_free(c->xn);
    slm_free(c->x);
    slm_free(c->temp);
    slm_free(c->rope_cs);
    slm_free(c->out_rows);
    slm_free(c->tok_seq);
    slm_free(c->tok_pos);
    slm_free(c->seq_next);
    slm_free(c->seq_len);
    slm_free(c->v_cache);
    slm_free(c->k_cache);
    slm_free(c);
}

uint32_t model_context_n_ctx(const struct model_context *c)
{
    return c->n_ctx;
}

uint32_t model_context_n_threads(const struct model_context *c)
{
    return c->n_threads;
}
