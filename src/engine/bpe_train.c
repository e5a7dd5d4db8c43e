/*
 * bpe_train.c - a small deterministic byte-level BPE trainer, for slm mkmodel.
 *
 * The corpus is split with the Llama 3 pre-tokenizer; distinct words are
 * counted; then, starting from the 256 byte tokens, the most frequent
 * adjacent pair (ties: the smaller left id, then the smaller right id) is
 * merged into a new token until the vocabulary is full or no pair is left.
 * Pair counts are updated incrementally: a merge touches only the words that
 * contain its pair (an index from pair to words), and the best pair comes
 * from a heap with lazy deletion. Nothing depends on addresses or hash
 * iteration order, so the same corpus and size give the same vocabulary.
 *
 * Layout of the vocabulary of n_vocab tokens (docs/tokenizer.md):
 *   0..255                  the bytes, in byte order
 *   256..                   learned tokens, in merge order
 *   ..n_vocab-9             "<|unused_K|>" fillers (type UNUSED) if the corpus
 *                           ran out of pairs before the vocabulary was full
 *   n_vocab-8..n_vocab-1    the special tokens below (type CONTROL)
 */
#include <stdio.h>
#include <string.h>

#include "core/str.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "engine/tokenizer_int.h"

static const char *const special_texts[] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eot_id|>",        "<|fim_prefix|>",  "<|fim_suffix|>",      "<|fim_middle|>",
};
enum {
    SP_BOS,
    SP_EOS,
    SP_START_HEADER,
    SP_END_HEADER,
    SP_EOT,
    SP_FIM_PRE,
    SP_FIM_SUF,
    SP_FIM_MID,
    SP_COUNT
};

/* The chat template of Llama 3 Instruct. */
static const char chat_template[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
    "endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/* ---- small growable arrays and a u64 -> index map ---- */

static int vec_reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    return slm_grow_array(p, cap, need, elem, 16);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t hash_mem(const uint8_t *p, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return mix64(h);
}

/* Open addressing: slot = index + 1; keys live in the caller's arrays. */
struct imap {
    uint32_t *slot;
    size_t cap; /* power of two */
    size_t n;
};

/* ---- trainer state ---- */

struct pair {
    uint32_t a, b;
    int64_t count;
    uint32_t *words; /* words that (may) contain the pair; duplicates allowed */
    size_t n_words, cap_words;
    uint32_t stamp; /* last merge that saw this pair touched */
};

struct heap_ent {
    int64_t count;
    uint32_t a, b, pair;
};

struct trainer {
    const uint8_t *corpus;
    /* distinct words */
    uint32_t *word_off, *word_len; /* in corpus */
    int64_t *word_count;
    uint32_t *word_sym_start, *word_sym_n;
    uint32_t *word_stamp;
    size_t n_words, cap_words;
    struct imap word_map;
    /* symbols of all words */
    int32_t *sym;
    size_t n_sym;
    /* tokens: bytes of each */
    uint8_t *tok_bytes;
    size_t n_tok_bytes, cap_tok_bytes;
    uint32_t *tok_off, *tok_len;
    size_t n_tok, cap_tok;
    struct imap tok_map;
    /* pairs */
    struct pair *pairs;
    size_t n_pairs, cap_pairs;
    struct imap pair_map;
    struct heap_ent *heap;
    size_t n_heap, cap_heap;
    /* merges */
    uint32_t *merge_a, *merge_b;
    size_t n_merges, cap_merges;
    uint32_t *touched;
    size_t n_touched, cap_touched;
};

static int imap_grow(struct imap *m, uint64_t (*hash_of)(const struct trainer *, uint32_t),
                     const struct trainer *tr)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint32_t *slot = slm_calloc(cap, sizeof(uint32_t));

    if (slot == NULL) return SLM_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slot[i] == 0) continue;
        size_t h = hash_of(tr, m->slot[i] - 1) & (cap - 1);
        while (slot[h] != 0)
            h = (h + 1) & (cap - 1);
        slot[h] = m->slot[i];
    }
    slm_free(m->slot);
    m->slot = slot;
    m->cap = cap;
    return 0;
}

static uint64_t word_hash(const struct trainer *tr, uint32_t w)
{
    return hash_mem(tr->corpus + tr->word_off[w], tr->word_len[w]);
}

static uint64_t tok_hash(const struct trainer *tr, uint32_t t)
{
    return hash_mem(tr->tok_bytes + tr->tok_off[t], tr->tok_len[t]);
}

static uint64_t pair_hash(const struct trainer *tr, uint32_t p)
{
    return mix64(((uint64_t)tr->pairs[p].a << 32) | tr->pairs[p].b);
}

/* ---- words ---- */

static int add_word(void *ctx, const uint8_t *s, size_t start, size_t end)
{
    struct trainer *tr = ctx;
    size_t len = end - start;
    uint64_t h = hash_mem(s + start, len);
    int rc;

    if (tr->word_map.cap == 0 || 2 * (tr->word_map.n + 1) > tr->word_map.cap)
        if ((rc = imap_grow(&tr->word_map, word_hash, tr)) < 0) return rc;
    size_t i = h & (tr->word_map.cap - 1);
    while (tr->word_map.slot[i] != 0) {
        uint32_t w = tr->word_map.slot[i] - 1;
        if (tr->word_len[w] == len && memcmp(s + tr->word_off[w], s + start, len) == 0) {
            tr->word_count[w]++;
            return 0;
        }
        i = (i + 1) & (tr->word_map.cap - 1);
    }
    size_t c = tr->cap_words;
    if ((rc = vec_reserve((void **)&tr->word_off, &c, tr->n_words + 1, sizeof(uint32_t))) < 0)
        return rc;
    c = tr->cap_words;
    if ((rc = vec_reserve((void **)&tr->word_len, &c, tr->n_words + 1, sizeof(uint32_t))) < 0)
        return rc;
    c = tr->cap_words;
    if ((rc = vec_reserve((void **)&tr->word_count, &c, tr->n_words + 1, sizeof(int64_t))) < 0)
        return rc;
    tr->cap_words = c;
    tr->word_off[tr->n_words] = (uint32_t)start;
    tr->word_len[tr->n_words] = (uint32_t)len;
    tr->word_count[tr->n_words] = 1;
    tr->word_map.slot[i] = (uint32_t)++tr->n_words;
    tr->word_map.n++;
    return 0;
}

/* ---- tokens ---- */

static int64_t tok_find(const struct trainer *tr, const uint8_t *p, size_t n)
{
    size_t i = hash_mem(p, n) & (tr->tok_map.cap - 1);

    while (tr->tok_map.slot[i] != 0) {
        uint32_t t = tr->tok_map.slot[i] - 1;
        if (tr->tok_len[t] == n && memcmp(tr->tok_bytes + tr->tok_off[t], p, n) == 0) return t;
        i = (i + 1) & (tr->tok_map.cap - 1);
    }
    return -1;
}

/* Adds a token made of a's bytes then b's bytes (or of one byte if b < 0). */
static int add_token(struct trainer *tr, int64_t a, int64_t b, uint32_t *id)
{
    size_t la = b < 0 ? 1 : tr->tok_len[a], lb = b < 0 ? 0 : tr->tok_len[b];
    int rc;

    if ((rc = vec_reserve((void **)&tr->tok_bytes, &tr->cap_tok_bytes, tr->n_tok_bytes + la + lb,
                          1)) < 0)
        return rc;
    uint8_t *p = tr->tok_bytes + tr->n_tok_bytes;
    if (b < 0) {
        p[0] = (uint8_t)a;
    } else {
        memcpy(p, tr->tok_bytes + tr->tok_off[a], la);
        memcpy(p + la, tr->tok_bytes + tr->tok_off[b], lb);
    }
    int64_t old = tr->tok_map.cap ? tok_find(tr, p, la + lb) : -1;
    if (old >= 0) {
        *id = (uint32_t)old;
        return 0;
    }
    size_t c = tr->cap_tok;
    if ((rc = vec_reserve((void **)&tr->tok_off, &c, tr->n_tok + 1, sizeof(uint32_t))) < 0)
        return rc;
    c = tr->cap_tok;
    if ((rc = vec_reserve((void **)&tr->tok_len, &c, tr->n_tok + 1, sizeof(uint32_t))) < 0)
        return rc;
    tr->cap_tok = c;
    tr->tok_off[tr->n_tok] = (uint32_t)tr->n_tok_bytes;
    tr->tok_len[tr->n_tok] = (uint32_t)(la + lb);
    tr->n_tok_bytes += la + lb;
    *id = (uint32_t)tr->n_tok++;
    if (tr->tok_map.cap == 0 || 2 * (tr->tok_map.n + 1) > tr->tok_map.cap)
        if ((rc = imap_grow(&tr->tok_map, tok_hash, tr)) < 0) return rc;
    size_t i = tok_hash(tr, *id) & (tr->tok_map.cap - 1);
    while (tr->tok_map.slot[i] != 0)
        i = (i + 1) & (tr->tok_map.cap - 1);
    tr->tok_map.slot[i] = *id + 1;
    tr->tok_map.n++;
    return 0;
}

/* ---- pairs ---- */

/* The index of pair (a, b), created with count 0 if new. */
static int pair_get(struct trainer *tr, uint32_t a, uint32_t b, uint32_t *out)
{
    int rc;

    if (tr->pair_map.cap == 0 || 2 * (tr->pair_map.n + 1) > tr->pair_map.cap)
        if ((rc = imap_grow(&tr->pair_map, pair_hash, tr)) < 0) return rc;
    size_t i = mix64(((uint64_t)a << 32) | b) & (tr->pair_map.cap - 1);
    while (tr->pair_map.slot[i] != 0) {
        uint32_t p = tr->pair_map.slot[i] - 1;
        if (tr->pairs[p].a == a && tr->pairs[p].b == b) {
            *out = p;
            return 0;
        }
        i = (i + 1) & (tr->pair_map.cap - 1);
    }
    if ((rc = vec_reserve((void **)&tr->pairs, &tr->cap_pairs, tr->n_pairs + 1,
                          sizeof(struct pair))) < 0)
        return rc;
    memset(&tr->pairs[tr->n_pairs], 0, sizeof(struct pair));
    tr->pairs[tr->n_pairs].a = a;
    tr->pairs[tr->n_pairs].b = b;
    tr->pairs[tr->n_pairs].stamp = UINT32_MAX;
    *out = (uint32_t)tr->n_pairs++;
    tr->pair_map.slot[i] = *out + 1;
    tr->pair_map.n++;
    return 0;
}

/* Heap order: larger count first, then smaller a, then smaller b. */
static bool heap_before(const struct heap_ent *x, const struct heap_ent *y)
{
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int heap_push(struct trainer *tr, uint32_t p)
{
    int rc;
    struct heap_ent e = { tr->pairs[p].count, tr->pairs[p].a, tr->pairs[p].b, p };

    if ((rc = vec_reserve((void **)&tr->heap, &tr->cap_heap, tr->n_heap + 1,
                          sizeof(struct heap_ent))) < 0)
        return rc;
    size_t i = tr->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_before(&e, &tr->heap[up])) break;
        tr->heap[i] = tr->heap[up];
        i = up;
    }
    tr->heap[i] = e;
    return 0;
}

static struct heap_ent heap_pop(struct trainer *tr)
{
    struct heap_ent top = tr->heap[0], last = tr->heap[--tr->n_heap];
    size_t i = 0, n = tr->n_heap;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(&tr->heap[c + 1], &tr->heap[c])) c++;
        if (!heap_before(&tr->heap[c], &last)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n > 0) tr->heap[i] = last;
    return top;
}

/* Adds delta occurrences of (a, b) in word w; remembers the pair as touched. */
static int pair_add(struct trainer *tr, uint32_t a, uint32_t b, int64_t delta, uint32_t w,
                    uint32_t stamp)
{
    uint32_t p;
    int rc;

    if ((rc = pair_get(tr, a, b, &p)) < 0) return rc;
    struct pair *pr = &tr->pairs[p];
    pr->count += delta;
    if (delta > 0) {
        if ((rc = vec_reserve((void **)&pr->words, &pr->cap_words, pr->n_words + 1,
                              sizeof(uint32_t))) < 0)
            return rc;
        pr->words[pr->n_words++] = w;
    }
    if (pr->stamp != stamp) {
        pr->stamp = stamp;
        if ((rc = vec_reserve((void **)&tr->touched, &tr->cap_touched, tr->n_touched + 1,
                              sizeof(uint32_t))) < 0)
            return rc;
        tr->touched[tr->n_touched++] = p;
    }
    return 0;
}

/* Applies merge (a, b) -> c to word w, updating the pair counts. */
static int merge_word(struct trainer *tr, uint32_t w, uint32_t a, uint32_t b, uint32_t c,
                      uint32_t stamp)
{
    int32_t *s = tr->sym + tr->word_sym_start[w];
    size_t n = tr->word_sym_n[w], o = 0;
    int64_t f = tr->word_count[w];
    int rc;

    for (size_t i = 0; i + 1 < n; i++)
        if ((rc = pair_add(tr, (uint32_t)s[i], (uint32_t)s[i + 1], -f, w, stamp)) < 0) return rc;
    for (size_t i = 0; i < n;) {
        if (i + 1 < n && (uint32_t)s[i] == a && (uint32_t)s[i + 1] == b) {
            s[o++] = (int32_t)c;
            i += 2;
        } else {
            s[o++] = s[i++];
        }
    }
    tr->word_sym_n[w] = (uint32_t)o;
    for (size_t i = 0; i + 1 < o; i++)
        if ((rc = pair_add(tr, (uint32_t)s[i], (uint32_t)s[i + 1], f, w, stamp)) < 0) return rc;
    return 0;
}

static void trainer_fini(struct trainer *tr)
{
    slm_free(tr->word_off);
    slm_free(tr->word_len);
    slm_free(tr->word_count);
    slm_free(tr->word_sym_start);
    slm_free(tr->word_sym_n);
    slm_free(tr->word_stamp);
    slm_free(tr->word_map.slot);
    slm_free(tr->sym);
    slm_free(tr->tok_bytes);
    slm_free(tr->tok_off);
    slm_free(tr->tok_len);
    slm_free(tr->tok_map.slot);
    for (size_t i = 0; i < tr->n_pairs; i++)
        slm_free(tr->pairs[i].words);
    slm_free(tr->pairs);
    slm_free(tr->pair_map.slot);
    slm_free(tr->heap);
    slm_free(tr->merge_a);
    slm_free(tr->merge_b);
    slm_free(tr->touched);
}

/* Runs the merges until max_new tokens were made or no pair is left. */
static int train_merges(struct trainer *tr, size_t max_new)
{
    size_t n_new = 0;
    int rc;

    /* Symbols of every word: its bytes. */
    size_t total = 0;
    for (size_t w = 0; w < tr->n_words; w++)
        total += tr->word_len[w];
    tr->sym = slm_calloc(total + 1, sizeof(int32_t));
    tr->word_sym_start = slm_calloc(tr->n_words + 1, sizeof(uint32_t));
    tr->word_sym_n = slm_calloc(tr->n_words + 1, sizeof(uint32_t));
    tr->word_stamp = slm_calloc(tr->n_words + 1, sizeof(uint32_t));
    if (tr->sym == NULL || tr->word_sym_start == NULL || tr->word_sym_n == NULL ||
        tr->word_stamp == NULL)
        return SLM_ENOMEM;
    for (size_t w = 0; w < tr->n_words; w++) {
        tr->word_sym_start[w] = (uint32_t)tr->n_sym;
        tr->word_sym_n[w] = tr->word_len[w];
        tr->word_stamp[w] = UINT32_MAX;
        for (size_t i = 0; i < tr->word_len[w]; i++)
            tr->sym[tr->n_sym++] = tr->corpus[tr->word_off[w] + i];
        for (size_t i = 0; i + 1 < tr->word_len[w]; i++) {
            const uint8_t *p = tr->corpus + tr->word_off[w] + i;
            if ((rc = pair_add(tr, p[0], p[1], tr->word_count[w], (uint32_t)w, 0)) < 0) return rc;
        }
    }
    for (size_t p = 0; p < tr->n_pairs; p++)
        if ((rc = heap_push(tr, (uint32_t)p)) < 0) return rc;
    tr->n_touched = 0;

    while (n_new < max_new && tr->n_heap > 0 && tr->n_merges < SLM_LIMIT_GGUF_ARRAY) {
        struct heap_ent e = heap_pop(tr);
        struct pair *pr = &tr->pairs[e.pair];
        if (pr->count != e.count || e.count <= 0) continue; /* stale */
        uint32_t a = pr->a, b = pr->b, c;
        size_t before = tr->n_tok;
        if ((rc = add_token(tr, a, b, &c)) < 0) return rc;
        if (tr->n_tok > before) n_new++;
        if ((rc = vec_reserve((void **)&tr->merge_a, &tr->cap_merges, tr->n_merges + 1,
                              sizeof(uint32_t))) < 0)
            return rc;
        size_t cm = tr->n_merges; /* merge_b shares cap_merges: grow it to the same size */
        void *q = slm_realloc(tr->merge_b, tr->cap_merges * sizeof(uint32_t));
        if (q == NULL) return SLM_ENOMEM;
        tr->merge_b = q;
        tr->merge_a[cm] = a;
        tr->merge_b[cm] = b;
        uint32_t stamp = (uint32_t)++tr->n_merges;
        tr->n_touched = 0;
        /* The word list may hold duplicates and words that lost the pair. */
        struct pair snapshot = *pr;
        pr->words = NULL;
        pr->n_words = pr->cap_words = 0;
        for (size_t i = 0; i < snapshot.n_words; i++) {
            uint32_t w = snapshot.words[i];
            if (tr->word_stamp[w] == stamp) continue;
            tr->word_stamp[w] = stamp;
            if ((rc = merge_word(tr, w, a, b, c, stamp)) < 0) {
                slm_free(snapshot.words);
                return rc;
            }
        }
        slm_free(snapshot.words);
        for (size_t i = 0; i < tr->n_touched; i++) {
            uint32_t p = tr->touched[i];
            if (tr->pairs[p].count > 0 && (rc = heap_push(tr, p)) < 0) return rc;
        }
    }
    return 0;
}

/* Writes token bytes in GPT-2's byte-level alphabet as a new string. */
static char *map_bytes(const uint8_t *p, size_t n, size_t *len)
{
    char *s = slm_malloc(2 * n + 1);
    size_t o = 0;

    if (s == NULL) return NULL;
    for (size_t i = 0; i < n; i++)
        o += slm_utf8_encode(unicode__byte_to_cp(p[i]), s + o);
    s[o] = '\0';
    *len = o;
    return s;
}

static char *dup_text(const char *s, size_t *len)
{
    *len = strlen(s);
    return slm_strndup(s, *len);
}

/* Frees a trained vocabulary. */
void bpe__vocab_fini(struct bpe_vocab *v)
{
    if (v->text != NULL)
        for (size_t i = 0; i < v->n_vocab; i++)
            slm_free(v->text[i]);
    if (v->merge != NULL)
        for (size_t i = 0; i < v->n_merges; i++)
            slm_free(v->merge[i]);
    slm_free(v->text);
    slm_free(v->text_len);
    slm_free(v->type);
    slm_free(v->score);
    slm_free(v->merge);
    slm_free(v->merge_len);
    memset(v, 0, sizeof(*v));
}

/* Trains a vocabulary of exactly n_vocab tokens; see tokenizer_int.h. */
int bpe__train(const char *corpus, size_t len, uint32_t n_vocab, struct bpe_vocab *v,
               struct slm_diag *d)
{
    struct trainer tr;
    int rc;

    memset(v, 0, sizeof(*v));
    if (n_vocab < 256 + SP_COUNT || n_vocab > SLM_LIMIT_VOCAB)
        return slm_diag_set(d, SLM_EINVAL, "vocabulary size %u: must be from %u to %u", n_vocab,
                            256 + SP_COUNT, SLM_LIMIT_VOCAB);
    if (len > UINT32_MAX / 2)
        return slm_diag_set(d, SLM_ELIMIT, "training corpus of %zu bytes is too large", len);
    memset(&tr, 0, sizeof(tr));
    tr.corpus = (const uint8_t *)corpus;
    for (unsigned b = 0; b < 256; b++) {
        uint32_t id;
        if ((rc = add_token(&tr, b, -1, &id)) < 0) goto out;
    }
    if ((rc = tok__pre_split(TOK_PRE_LLAMA3, tr.corpus, len, add_word, &tr)) < 0) goto out;
    if ((rc = train_merges(&tr, n_vocab - 256 - SP_COUNT)) < 0) goto out;

    size_t n = n_vocab, n_learned = tr.n_tok - 256;
    v->n_vocab = n;
    v->text = slm_calloc(n, sizeof(char *));
    v->text_len = slm_calloc(n, sizeof(size_t));
    v->type = slm_calloc(n, 1);
    v->score = slm_calloc(n, sizeof(float));
    v->merge = slm_calloc(tr.n_merges + 1, sizeof(char *));
    v->merge_len = slm_calloc(tr.n_merges + 1, sizeof(size_t));
    if (v->text == NULL || v->text_len == NULL || v->type == NULL || v->score == NULL ||
        v->merge == NULL || v->merge_len == NULL) {
        rc = SLM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < tr.n_tok; i++) {
        v->text[i] = map_bytes(tr.tok_bytes + tr.tok_off[i], tr.tok_len[i], &v->text_len[i]);
        v->type[i] = TOK_TYPE_NORMAL;
        v->score[i] = i < 256 ? 0.0f : -(float)(i - 255);
    }
    size_t first_special = n - SP_COUNT;
    for (size_t i = tr.n_tok; i < first_special; i++) {
        char name[48];
        (void)snprintf(name, sizeof(name), "<|unused_%zu|>", i - tr.n_tok);
        v->text[i] = dup_text(name, &v->text_len[i]);
        v->type[i] = TOK_TYPE_UNUSED;
    }
    for (size_t k = 0; k < SP_COUNT; k++) {
        v->text[first_special + k] = dup_text(special_texts[k], &v->text_len[first_special + k]);
        v->type[first_special + k] = TOK_TYPE_CONTROL;
    }
    for (size_t i = 0; i < n; i++) {
        if (v->text[i] == NULL) {
            rc = SLM_ENOMEM;
            goto out;
        }
    }
    for (size_t m = 0; m < tr.n_merges; m++) {
        size_t la, lb;
        char *a =
            map_bytes(tr.tok_bytes + tr.tok_off[tr.merge_a[m]], tr.tok_len[tr.merge_a[m]], &la);
        char *b =
            map_bytes(tr.tok_bytes + tr.tok_off[tr.merge_b[m]], tr.tok_len[tr.merge_b[m]], &lb);
        char *s = (a && b) ? slm_malloc(la + lb + 2) : NULL;
        if (s != NULL) {
            memcpy(s, a, la);
            s[la] = ' ';
            memcpy(s + la + 1, b, lb);
            s[la + lb + 1] = '\0';
        }
        slm_free(a);
        slm_free(b);
        if (s == NULL) {
            rc = SLM_ENOMEM;
            goto out;
        }
        v->merge[m] = s;
        v->merge_len[m] = la + lb + 1;
        v->n_merges = m + 1;
    }
    v->bos = (tok_id)(first_special + SP_BOS);
    v->eos = (tok_id)(first_special + SP_EOS);
    v->eot = (tok_id)(first_special + SP_EOT);
    v->fim_pre = (tok_id)(first_special + SP_FIM_PRE);
    v->fim_suf = (tok_id)(first_special + SP_FIM_SUF);
    v->fim_mid = (tok_id)(first_special + SP_FIM_MID);
    v->n_learned = n_learned;
    v->n_filler = first_special - tr.n_tok;
    rc = 0;
out:
    trainer_fini(&tr);
    if (rc < 0) {
        bpe__vocab_fini(v);
        if (rc == SLM_ENOMEM) slm_diag_set(d, rc, "out of memory while training the vocabulary");
    }
    return rc;
}

/* Describes a trained vocabulary as a tok_spec (borrowing v's arrays). */
void bpe__vocab_spec(const struct bpe_vocab *v, struct tok_spec *sp)
{
    memset(sp, 0, sizeof(*sp));
    sp->model = TOK_MODEL_BPE;
    sp->pre = TOK_PRE_LLAMA3;
    sp->n_vocab = v->n_vocab;
    sp->text = (const char *const *)v->text;
    sp->text_len = v->text_len;
    sp->type = v->type;
    sp->score = v->score;
    sp->n_merges = v->n_merges;
    sp->merge = (const char *const *)v->merge;
    sp->merge_len = v->merge_len;
    sp->ids = (struct tok_ids){ v->bos, v->eos, v->eot, TOK_NONE, TOK_NONE, TOK_NONE };
    sp->add_bos = true;
}

/*
 * Trains a byte-level BPE vocabulary of exactly n_vocab tokens on corpus and
 * writes every tokenizer.ggml.* key and a Llama 3 chat template to w.
 * Returns 0 or a negative code (with d filled).
 */
int bpe_train_gguf(struct gguf_writer *w, const char *corpus, size_t len, uint32_t n_vocab,
                   struct slm_diag *d)
{
    struct bpe_vocab v;
    int32_t *types = NULL;
    int rc;

    if (w == NULL || (corpus == NULL && len > 0))
        return slm_diag_set(d, SLM_EINVAL, "bpe_train_gguf: no writer or no corpus");
    if ((rc = bpe__train(corpus, len, n_vocab, &v, d)) < 0) return rc;
    types = slm_calloc(v.n_vocab, sizeof(int32_t));
    if (types == NULL) {
        rc = SLM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < v.n_vocab; i++)
        types[i] = v.type[i];
    if ((rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4)) < 0 ||
        (rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe", 9)) < 0 ||
        (rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.text,
                                      v.text_len, v.n_vocab)) < 0 ||
        (rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
                                  v.n_vocab)) < 0 ||
        (rc = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v.score,
                                  v.n_vocab)) < 0 ||
        (rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merge,
                                      v.merge_len, v.n_merges)) < 0 ||
        (rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v.bos)) < 0 ||
        (rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v.eos)) < 0 ||
        (rc = gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)v.eot)) < 0 ||
        (rc = gguf_writer_set_u32(w, "tokenizer.ggml.fim_pre_token_id", (uint32_t)v.fim_pre)) < 0 ||
        (rc = gguf_writer_set_u32(w, "tokenizer.ggml.fim_suf_token_id", (uint32_t)v.fim_suf)) < 0 ||
        (rc = gguf_writer_set_u32(w, "tokenizer.ggml.fim_mid_token_id", (uint32_t)v.fim_mid)) < 0 ||
        (rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true)) < 0 ||
        (rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false)) < 0 ||
        (rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", false)) < 0 ||
        (rc = gguf_writer_set_str(w, "tokenizer.chat_template", chat_template,
                                  sizeof(chat_template) - 1)) < 0)
        slm_diag_set(d, rc, "cannot add the vocabulary to the model: %s", slm_strerror(rc));
out:
    slm_free(types);
    bpe__vocab_fini(&v);
    return rc;
}
