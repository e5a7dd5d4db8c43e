/*
 * tokenizer.c - vocabulary loading and validation, encoding (byte-level BPE
 * and SentencePiece BPE), special tokens and detokenization.
 *
 * Behaviour follows llama.cpp's llama-vocab.cpp (the reference for what GGUF
 * files mean) with these choices of our own, documented in docs/tokenizer.md:
 * special tokens are found leftmost-longest in one pass over a trie; BPE
 * works on raw bytes (the GPT-2 byte mapping is undone at load), so invalid
 * UTF-8 is encoded byte by byte instead of being replaced by U+FFFD; merging
 * uses a binary heap over (rank, position) so that one pre-token of a
 * megabyte costs O(n log n), not O(n^2).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "engine/tokenizer_int.h"

/* ---- hash tables ---- */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);

    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)s[i] << (8 * i);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 32);
}

static uint64_t hash_pair(uint32_t a, uint32_t b)
{
    uint64_t h = (((uint64_t)a << 32) | b) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 29);
}

/* Open addressing with linear probing; a slot holds index + 1, 0 is empty. */
struct slot_table {
    uint32_t *slot;
    size_t mask;
};

static int table_init(struct slot_table *tb, size_t n)
{
    size_t cap = 16;

    while (cap < 2 * n) {
        if (cap > ((size_t)1 << 40)) return SLM_ELIMIT;
        cap *= 2;
    }
    tb->slot = slm_calloc(cap, sizeof(uint32_t));
    if (tb->slot == NULL) return SLM_ENOMEM;
    tb->mask = cap - 1;
    return 0;
}

/* ---- the tokenizer ---- */

/* A node of the special-token trie (children as a sibling list). */
struct trie_node {
    int32_t child;   /* first child, or -1 */
    int32_t sibling; /* next sibling, or -1 */
    tok_id id;       /* token ending here, or TOK_NONE */
    uint8_t byte;
};

#define TOK_MAX_EOG 16

struct tokenizer {
    enum tok_model model;
    enum tok_pre pre;
    size_t n_vocab;
    char *blob;         /* raw texts, then pieces */
    uint32_t *text_off; /* raw vocabulary string of each token */
    uint32_t *text_len;
    uint32_t *piece_off; /* bytes the token stands for */
    uint32_t *piece_len;
    uint8_t *type;
    float *score;
    struct slot_table by_text;  /* raw text -> id (every token) */
    struct slot_table by_piece; /* BPE: bytes -> id (normal tokens) */
    size_t n_merges;
    uint32_t *merge_left, *merge_right, *merge_result;
    struct slot_table by_pair; /* (left, right) -> merge index */
    tok_id byte_tok[256];      /* the token of each single byte, or TOK_NONE */
    struct trie_node *trie;    /* node 0 is the root */
    size_t n_trie;
    int32_t trie_root[256]; /* child of the root for each first byte, or -1 */
    struct tok_ids ids;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    tok_id eog[TOK_MAX_EOG];
    size_t n_eog;
};

static const char *text_of(const struct tokenizer *t, size_t id, size_t *len)
{
    *len = t->text_len[id];
    return t->blob + t->text_off[id];
}

static const char *piece_of(const struct tokenizer *t, size_t id, size_t *len)
{
    *len = t->piece_len[id];
    return t->blob + t->piece_off[id];
}

static tok_id table_find(const struct tokenizer *t, const struct slot_table *tb, bool piece,
                         const void *p, size_t n)
{
    size_t i = hash_bytes(p, n) & tb->mask;

    for (;;) {
        uint32_t v = tb->slot[i];
        if (v == 0) return TOK_NONE;
        size_t len;
        const char *s = piece ? piece_of(t, v - 1, &len) : text_of(t, v - 1, &len);
        if (len == n && memcmp(s, p, n) == 0) return (tok_id)(v - 1);
        i = (i + 1) & tb->mask;
    }
}

/* Inserts id under its text or piece unless that key is already present. */
static void table_insert(struct tokenizer *t, struct slot_table *tb, bool piece, size_t id)
{
    size_t n;
    const char *p = piece ? piece_of(t, id, &n) : text_of(t, id, &n);

    if (table_find(t, tb, piece, p, n) != TOK_NONE) return;
    size_t i = hash_bytes(p, n) & tb->mask;
    while (tb->slot[i] != 0)
        i = (i + 1) & tb->mask;
    tb->slot[i] = (uint32_t)id + 1;
}

/* The merge index of (left, right), or -1. */
static int64_t pair_find(const struct tokenizer *t, uint32_t left, uint32_t right)
{
    size_t i = hash_pair(left, right) & t->by_pair.mask;

    for (;;) {
        uint32_t v = t->by_pair.slot[i];
        if (v == 0) return -1;
        if (t->merge_left[v - 1] == left && t->merge_right[v - 1] == right) return (int64_t)v - 1;
        i = (i + 1) & t->by_pair.mask;
    }
}

/* Frees t; NULL is a no-op. */
void tokenizer_free(struct tokenizer *t)
{
    if (t == NULL) return;
    slm_free(t->blob);
    slm_free(t->text_off);
    slm_free(t->text_len);
    slm_free(t->piece_off);
    slm_free(t->piece_len);
    slm_free(t->type);
    slm_free(t->score);
    slm_free(t->by_text.slot);
    slm_free(t->by_piece.slot);
    slm_free(t->merge_left);
    slm_free(t->merge_right);
    slm_free(t->merge_result);
    slm_free(t->by_pair.slot);
    slm_free(t->trie);
    slm_free(t);
}

/* ---- building ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte of a "<0xHH>" token, or -1. */
static int byte_token_value(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

/*
 * Undoes the GPT-2 byte mapping of s[0..n) into out (n bytes of room).
 * Returns the length, or -1 if s has a code point outside the alphabet.
 */
static int64_t bpe_unmap(const char *s, size_t n, char *out)
{
    size_t p = 0, o = 0;

    while (p < n) {
        size_t len;
        uint32_t cp = unicode__decode((const uint8_t *)s, p, n, &len);
        int b = unicode__cp_to_byte(cp);
        if (b < 0) return -1;
        out[o++] = (char)b;
        p += len;
    }
    return (int64_t)o;
}

/* Writes the quoted, truncated text of a token for a diagnostic. */
static void diag_text(char *buf, size_t cap, const char *s, size_t n)
{
    size_t o = 0, i;

    for (i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) {
            const char *hex = "0123456789abcdef";
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    if (i < n) buf[o++] = '.';
    buf[o] = '\0';
}

static int build_texts(struct tokenizer *t, const struct tok_spec *sp, struct slm_diag *d)
{
    size_t n = sp->n_vocab, total = 0, blob_size;

    for (size_t i = 0; i < n; i++) {
        size_t len = sp->text_len[i];
        if (len > SLM_LIMIT_TOKEN_BYTES)
            return slm_diag_set(d, SLM_ELIMIT,
                                "tokenizer.ggml.tokens[%zu]: %zu bytes, more than the %u a token "
                                "may have",
                                i, len, SLM_LIMIT_TOKEN_BYTES);
        if (!slm_add_size(total, len, &total)) return SLM_ELIMIT;
    }
    /* Pieces are never longer than texts (plus one byte for byte tokens). */
    if (!slm_mul_size(total, 2, &blob_size) || !slm_add_size(blob_size, n + 1, &blob_size) ||
        blob_size > UINT32_MAX)
        return slm_diag_set(d, SLM_ELIMIT, "tokenizer.ggml.tokens: %zu bytes of text is too much",
                            total);
    t->blob = slm_malloc(blob_size);
    t->text_off = slm_calloc(n, sizeof(uint32_t));
    t->text_len = slm_calloc(n, sizeof(uint32_t));
    t->piece_off = slm_calloc(n, sizeof(uint32_t));
    t->piece_len = slm_calloc(n, sizeof(uint32_t));
    t->type = slm_calloc(n, 1);
    t->score = slm_calloc(n, sizeof(float));
    if (t->blob == NULL || t->text_off == NULL || t->text_len == NULL || t->piece_off == NULL ||
        t->piece_len == NULL || t->type == NULL || t->score == NULL)
        return SLM_ENOMEM;

    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = sp->text_len[i];
        if (len > 0) memcpy(t->blob + o, sp->text[i], len);
        t->text_off[i] = (uint32_t)o;
        t->text_len[i] = (uint32_t)len;
        o += len;
        unsigned ty = sp->type != NULL ? sp->type[i] : TOK_TYPE_NORMAL;
        if (ty >= TOK_TYPE_COUNT)
            return slm_diag_set(d, SLM_EFORMAT,
                                "tokenizer.ggml.token_type[%zu]: %u is not a token type (0..6)", i,
                                ty);
        t->type[i] = (uint8_t)ty;
        float sc = sp->score != NULL ? sp->score[i] : 0.0f;
        if (!isfinite(sc))
            return slm_diag_set(d, SLM_EFORMAT, "tokenizer.ggml.scores[%zu]: not a finite number",
                                i);
        t->score[i] = sc;
    }

    /* Pieces: the bytes each token stands for. */
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = text_of(t, i, &len);
        char *out = t->blob + o;
        size_t plen = len;
        char tb[96];

        t->piece_off[i] = (uint32_t)o;
        if (t->type[i] == TOK_TYPE_BYTE) {
            int b = byte_token_value(s, len);
            if (b < 0) {
                diag_text(tb, sizeof(tb), s, len);
                return slm_diag_set(d, SLM_EFORMAT,
                                    "tokenizer.ggml.tokens[%zu]: byte token '%s' is not of the "
                                    "form <0xHH>",
                                    i, tb);
            }
            out[0] = (char)b;
            plen = 1;
        } else if (t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_USER_DEFINED ||
                   t->type[i] == TOK_TYPE_UNKNOWN) {
            memcpy(out, s, len);
        } else if (t->model == TOK_MODEL_BPE) {
            int64_t r = bpe_unmap(s, len, out);
            if (r < 0)
                memcpy(out, s, len); /* not byte-mapped: stands for itself */
            else
                plen = (size_t)r;
        } else {
            /* SentencePiece: U+2581 stands for a space. */
            plen = 0;
            for (size_t p = 0; p < len;) {
                if (len - p >= 3 && memcmp(s + p, "\xE2\x96\x81", 3) == 0) {
                    out[plen++] = ' ';
                    p += 3;
                } else {
                    out[plen++] = s[p++];
                }
            }
        }
        t->piece_len[i] = (uint32_t)plen;
        o += plen;
    }
    return 0;
}

static bool type_is_normal(unsigned ty)
{
    return ty == TOK_TYPE_NORMAL || ty == TOK_TYPE_UNDEFINED;
}

static int build_tables(struct tokenizer *t)
{
    int rc;

    if ((rc = table_init(&t->by_text, t->n_vocab)) < 0) return rc;
    for (size_t i = 0; i < t->n_vocab; i++)
        if (t->text_len[i] > 0) table_insert(t, &t->by_text, false, i);
    if (t->model == TOK_MODEL_BPE) {
        if ((rc = table_init(&t->by_piece, t->n_vocab)) < 0) return rc;
        for (size_t i = 0; i < t->n_vocab; i++)
            if (type_is_normal(t->type[i]) && t->piece_len[i] > 0)
                table_insert(t, &t->by_piece, true, i);
    }
    for (size_t b = 0; b < 256; b++)
        t->byte_tok[b] = TOK_NONE;
    if (t->model == TOK_MODEL_BPE) {
        for (size_t b = 0; b < 256; b++) {
            char c = (char)b;
            t->byte_tok[b] = table_find(t, &t->by_piece, true, &c, 1);
        }
    } else {
        /* <0xHH> byte tokens, else the one-character token (llama.cpp). */
        for (size_t i = 0; i < t->n_vocab; i++) {
            if (t->type[i] != TOK_TYPE_BYTE) continue;
            uint8_t b = (uint8_t)t->blob[t->piece_off[i]];
            if (t->byte_tok[b] == TOK_NONE) t->byte_tok[b] = (tok_id)i;
        }
        for (size_t b = 0; b < 256; b++) {
            if (t->byte_tok[b] != TOK_NONE) continue;
            char c = (char)b;
            t->byte_tok[b] = table_find(t, &t->by_text, false, &c, 1);
            if (t->byte_tok[b] == TOK_NONE) t->byte_tok[b] = t->ids.unk;
        }
    }
    return 0;
}

/* Parses the merges: "left right" in the stored (byte-mapped) form. */
static int build_merges(struct tokenizer *t, const struct tok_spec *sp, struct slm_diag *d)
{
    size_t n = sp->n_merges;
    char *buf = NULL;
    int rc = 0;

    if (n > SLM_LIMIT_GGUF_ARRAY)
        return slm_diag_set(d, SLM_ELIMIT, "tokenizer.ggml.merges: %zu merges, more than %u", n,
                            SLM_LIMIT_GGUF_ARRAY);
    t->merge_left = slm_calloc(n + 1, sizeof(uint32_t));
    t->merge_right = slm_calloc(n + 1, sizeof(uint32_t));
    t->merge_result = slm_calloc(n + 1, sizeof(uint32_t));
    buf = slm_malloc(2 * SLM_LIMIT_TOKEN_BYTES + 2);
    if (t->merge_left == NULL || t->merge_right == NULL || t->merge_result == NULL || buf == NULL) {
        rc = SLM_ENOMEM;
        goto out;
    }
    if ((rc = table_init(&t->by_pair, n)) < 0) goto out;
    for (size_t i = 0; i < n; i++) {
        const char *m = sp->merge[i];
        size_t len = sp->merge_len[i], sep = 0;
        char tb[96];

        diag_text(tb, sizeof(tb), m, len);
        for (size_t k = 1; k < len; k++) {
            if (m[k] == ' ') {
                sep = k;
                break;
            }
        }
        if (sep == 0 || sep + 1 >= len) {
            rc = slm_diag_set(d, SLM_EFORMAT,
                              "tokenizer.ggml.merges[%zu]: '%s' is not two tokens separated by "
                              "a space",
                              i, tb);
            goto out;
        }
        if (len > 2 * SLM_LIMIT_TOKEN_BYTES) {
            rc = slm_diag_set(d, SLM_ELIMIT, "tokenizer.ggml.merges[%zu]: %zu bytes is too long", i,
                              len);
            goto out;
        }
        int64_t la = bpe_unmap(m, sep, buf);
        int64_t lb = la < 0 ? -1 : bpe_unmap(m + sep + 1, len - sep - 1, buf + la);
        tok_id a = la < 0 ? TOK_NONE : table_find(t, &t->by_piece, true, buf, (size_t)la);
        tok_id b = lb < 0 ? TOK_NONE : table_find(t, &t->by_piece, true, buf + la, (size_t)lb);
        if (a == TOK_NONE || b == TOK_NONE) {
            char side[96];
            if (a == TOK_NONE)
                diag_text(side, sizeof(side), m, sep);
            else
                diag_text(side, sizeof(side), m + sep + 1, len - sep - 1);
            rc = slm_diag_set(d, SLM_EFORMAT,
                              "tokenizer.ggml.merges[%zu]: '%s' names '%s', which is not a "
                              "token of the vocabulary",
                              i, tb, side);
            goto out;
        }
        tok_id r = table_find(t, &t->by_piece, true, buf, (size_t)(la + lb));
        if (r == TOK_NONE && len - 1 <= 2 * SLM_LIMIT_TOKEN_BYTES) {
            /* The result may be a token we made control-type (an end-of-generation
             * name such as "</s>" in a vocabulary where it is an ordinary token):
             * llama.cpp still merges into it, so look it up among all tokens. */
            char raw[2 * SLM_LIMIT_TOKEN_BYTES];
            memcpy(raw, m, sep);
            memcpy(raw + sep, m + sep + 1, len - sep - 1);
            r = table_find(t, &t->by_text, false, raw, len - 1);
        }
        if (r == TOK_NONE) {
            rc = slm_diag_set(d, SLM_EFORMAT,
                              "tokenizer.ggml.merges[%zu]: '%s' makes a token that is not in the "
                              "vocabulary",
                              i, tb);
            goto out;
        }
        if (pair_find(t, (uint32_t)a, (uint32_t)b) >= 0)
            continue; /* a repeated merge keeps its first rank (llama.cpp) */
        size_t k = t->n_merges++;
        t->merge_left[k] = (uint32_t)a;
        t->merge_right[k] = (uint32_t)b;
        t->merge_result[k] = (uint32_t)r;
        size_t s = hash_pair((uint32_t)a, (uint32_t)b) & t->by_pair.mask;
        while (t->by_pair.slot[s] != 0)
            s = (s + 1) & t->by_pair.mask;
        t->by_pair.slot[s] = (uint32_t)k + 1;
    }
out:
    slm_free(buf);
    return rc;
}

/* Inserts special token id into the trie (first token of a text wins). */
static int trie_add(struct tokenizer *t, tok_id id)
{
    size_t len;
    const uint8_t *s = (const uint8_t *)text_of(t, (size_t)id, &len);
    int32_t node = 0;

    for (size_t i = 0; i < len; i++) {
        int32_t c = (i == 0) ? t->trie_root[s[0]] : t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != s[i])
            c = t->trie[c].sibling;
        if (c < 0) {
            c = (int32_t)t->n_trie++;
            t->trie[c].byte = s[i];
            t->trie[c].child = -1;
            t->trie[c].id = TOK_NONE;
            if (i == 0) {
                t->trie[c].sibling = -1;
                t->trie_root[s[0]] = c;
            } else {
                t->trie[c].sibling = t->trie[node].child;
                t->trie[node].child = c;
            }
        }
        node = c;
    }
    if (t->trie[node].id == TOK_NONE) t->trie[node].id = id;
    return 0;
}

static bool type_is_special(unsigned ty)
{
    return ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNKNOWN;
}

static int build_trie(struct tokenizer *t)
{
    size_t total = 1;

    for (size_t i = 0; i < t->n_vocab; i++)
        if (type_is_special(t->type[i])) total += t->text_len[i];
    t->trie = slm_calloc(total, sizeof(struct trie_node));
    if (t->trie == NULL) return SLM_ENOMEM;
    t->trie[0] = (struct trie_node){ -1, -1, TOK_NONE, 0 };
    t->n_trie = 1;
    for (size_t b = 0; b < 256; b++)
        t->trie_root[b] = -1;
    for (size_t i = 0; i < t->n_vocab; i++)
        if (type_is_special(t->type[i]) && t->text_len[i] > 0) (void)trie_add(t, (tok_id)i);
    return 0;
}

static bool text_is(const struct tokenizer *t, size_t id, const char *s)
{
    size_t len;
    const char *p = text_of(t, id, &len);
    return len == strlen(s) && memcmp(p, s, len) == 0;
}

static void eog_add(struct tokenizer *t, tok_id id)
{
    if (id == TOK_NONE) return;
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    if (t->n_eog < TOK_MAX_EOG) t->eog[t->n_eog++] = id;
}

/*
 * End-of-turn and end-of-generation tokens by their text, as llama.cpp does
 * (GGUF files often name only eos); such tokens are made control tokens.
 */
static void build_eog(struct tokenizer *t)
{
    static const char *const eot_texts[] = { "<|eot_id|>",    "<|im_end|>",
                                             "<|end|>",       "<end_of_turn>",
                                             "<|endoftext|>", "<|end_of_text|>",
                                             "<EOT>",         "<｜end▁of▁sentence｜>" };

    for (size_t i = 0; i < t->n_vocab; i++) {
        bool hit = false;
        for (size_t k = 0; k < SLM_ARRAY_LEN(eot_texts); k++) {
            if (text_is(t, i, eot_texts[k])) {
                if (t->ids.eot == TOK_NONE) t->ids.eot = (tok_id)i;
                hit = true;
            }
        }
        /* End-of-generation by text (llama.cpp's list) but not an end of turn.
         * Only where the file already marks the token special: in Qwen's
         * vocabulary "</s>" is an ordinary BPE token, and Hugging Face's
         * tokenizer (our reference) treats it as text, where llama.cpp would
         * force it to a control token. */
        if ((text_is(t, i, "</s>") || text_is(t, i, "<eos>")) && !type_is_normal(t->type[i]))
            hit = true;
        if (text_is(t, i, "<|eom_id|>")) {
            if (t->ids.eom == TOK_NONE) t->ids.eom = (tok_id)i;
            hit = true;
        }
        if (hit) {
            t->type[i] = TOK_TYPE_CONTROL;
            eog_add(t, (tok_id)i);
        }
    }
    eog_add(t, t->ids.eos);
    eog_add(t, t->ids.eot);
    eog_add(t, t->ids.eom);
}

static int check_id(const char *name, tok_id id, size_t n_vocab, struct slm_diag *d)
{
    if (id == TOK_NONE || (id >= 0 && (size_t)id < n_vocab)) return 0;
    return slm_diag_set(d, SLM_EFORMAT, "tokenizer.ggml.%s: %d is outside the vocabulary (0..%zu)",
                        name, (int)id, n_vocab - 1);
}

/* Builds a tokenizer from plain arrays; see tokenizer_int.h. */
int tokenizer__build(const struct tok_spec *sp, struct tokenizer **out, struct slm_diag *d)
{
    struct tokenizer *t;
    int rc;

    *out = NULL;
    if (sp->n_vocab == 0)
        return slm_diag_set(d, SLM_EFORMAT, "tokenizer.ggml.tokens: the vocabulary is empty");
    if (sp->n_vocab > SLM_LIMIT_VOCAB)
        return slm_diag_set(d, SLM_ELIMIT, "tokenizer.ggml.tokens: %zu tokens, more than %u",
                            sp->n_vocab, SLM_LIMIT_VOCAB);
    if ((rc = check_id("bos_token_id", sp->ids.bos, sp->n_vocab, d)) < 0 ||
        (rc = check_id("eos_token_id", sp->ids.eos, sp->n_vocab, d)) < 0 ||
        (rc = check_id("eot_token_id", sp->ids.eot, sp->n_vocab, d)) < 0 ||
        (rc = check_id("eom_token_id", sp->ids.eom, sp->n_vocab, d)) < 0 ||
        (rc = check_id("unknown_token_id", sp->ids.unk, sp->n_vocab, d)) < 0 ||
        (rc = check_id("padding_token_id", sp->ids.pad, sp->n_vocab, d)) < 0)
        return rc;
    t = slm_calloc(1, sizeof(*t));
    if (t == NULL) return SLM_ENOMEM;
    t->model = sp->model;
    t->pre = sp->pre;
    t->n_vocab = sp->n_vocab;
    t->ids = sp->ids;
    t->add_bos = sp->add_bos;
    t->add_eos = sp->add_eos;
    t->add_space_prefix = sp->add_space_prefix;
    t->ignore_merges =
        sp->model == TOK_MODEL_BPE && (sp->pre == TOK_PRE_LLAMA3 || sp->pre == TOK_PRE_TEKKEN);
    if ((rc = build_texts(t, sp, d)) < 0) goto fail;
    build_eog(t);
    if ((rc = build_tables(t)) < 0) goto fail;
    if (t->model == TOK_MODEL_BPE && (rc = build_merges(t, sp, d)) < 0) goto fail;
    if ((rc = build_trie(t)) < 0) goto fail;
    *out = t;
    return 0;
fail:
    tokenizer_free(t);
    if (rc == SLM_ENOMEM) slm_diag_set(d, rc, "out of memory while loading the vocabulary");
    return rc;
}

/* ---- loading from GGUF ---- */

struct pre_name {
    const char *name;
    enum tok_pre pre;
};

/* tokenizer.ggml.pre values (llama.cpp's names) and the scanner each uses. */
static const struct pre_name pre_names[] = {
    { "default", TOK_PRE_DEFAULT },
    { "llama3", TOK_PRE_LLAMA3 },
    { "llama-v3", TOK_PRE_LLAMA3 },
    { "llama-bpe", TOK_PRE_LLAMA3 },
    { "falcon3", TOK_PRE_LLAMA3 },
    { "pixtral", TOK_PRE_LLAMA3 },
    { "dbrx", TOK_PRE_LLAMA3 },
    { "smaug-bpe", TOK_PRE_LLAMA3 },
    { "qwen2", TOK_PRE_QWEN2 },
    { "deepseek-r1-qwen", TOK_PRE_QWEN2 },
    { "megrez", TOK_PRE_QWEN2 },
    { "stablelm2", TOK_PRE_QWEN2 },
    { "tekken", TOK_PRE_TEKKEN },
    { "deepseek-coder", TOK_PRE_DEEPSEEK_CODER },
    { "starcoder", TOK_PRE_STARCODER },
    { "refact", TOK_PRE_STARCODER },
    { "smollm", TOK_PRE_STARCODER },
    { "codeshell", TOK_PRE_STARCODER },
    { "command-r", TOK_PRE_STARCODER },
    { "gpt2", TOK_PRE_GPT2 },
    { "gpt-2", TOK_PRE_GPT2 },
    { "phi-2", TOK_PRE_GPT2 },
    { "mpt", TOK_PRE_GPT2 },
    { "olmo", TOK_PRE_GPT2 },
    { "jais", TOK_PRE_GPT2 },
};

/* Copies a short string value for a diagnostic. */
static void str_copy(char *buf, size_t cap, struct gguf_str s)
{
    diag_text(buf, cap, s.ptr, s.len);
}

static bool str_eq(struct gguf_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* Reads an optional token id key; absent leaves *id untouched. */
static int load_id(const struct gguf_file *f, const char *name, size_t n_vocab, tok_id *id,
                   struct slm_diag *d)
{
    char key[64];
    int64_t v;

    (void)snprintf(key, sizeof(key), "tokenizer.ggml.%s", name);
    int64_t i = gguf_find_key(f, key);
    if (i < 0) return 0;
    if (gguf_kv_i64(f, (size_t)i, &v) < 0)
        return slm_diag_set(d, SLM_EFORMAT, "%s: stored as %s, expected an integer token id", key,
                            gguf_type_name(gguf_kv_type(f, (size_t)i)));
    if (v < 0 || (uint64_t)v >= n_vocab)
        return slm_diag_set(d, SLM_EFORMAT, "%s: %lld is outside the vocabulary (0..%zu)", key,
                            (long long)v, n_vocab - 1);
    *id = (tok_id)v;
    return 0;
}

/* Reads an optional bool key: 1 if present (value in *v), 0 if absent. */
static int load_bool(const struct gguf_file *f, const char *key, bool *v, struct slm_diag *d)
{
    int rc = gguf_get_bool(f, key, v, d);
    if (rc == SLM_ENOTFOUND) return 0;
    return rc < 0 ? rc : 1;
}

/* Reads an optional numeric array of n_vocab elements of type ty. */
static int load_arr(const struct gguf_file *f, const char *key, enum gguf_type ty, size_t n_vocab,
                    const void **data, struct slm_diag *d)
{
    size_t idx;
    uint64_t n;
    int rc = gguf_get_arr(f, key, ty, &idx, &n, d);

    *data = NULL;
    if (rc == SLM_ENOTFOUND) return 0;
    if (rc < 0) return rc;
    if (n != n_vocab)
        return slm_diag_set(d, SLM_EFORMAT, "%s: %llu entries for a vocabulary of %zu tokens", key,
                            (unsigned long long)n, n_vocab);
    *data = gguf_kv_arr_data(f, idx);
    return 0;
}

/* Loads the tokenizer of a GGUF file; see tokenizer.h. */
int tokenizer_load(const struct gguf_file *f, struct tokenizer **out, struct slm_diag *d)
{
    struct tok_spec sp;
    struct gguf_str s;
    const char **text = NULL, **merge = NULL;
    size_t *text_len = NULL, *merge_len = NULL;
    uint8_t *types = NULL;
    float *scores = NULL;
    char tb[96];
    size_t idx;
    uint64_t n;
    int rc;

    *out = NULL;
    memset(&sp, 0, sizeof(sp));
    sp.ids = (struct tok_ids){ TOK_NONE, TOK_NONE, TOK_NONE, TOK_NONE, TOK_NONE, TOK_NONE };

    rc = gguf_get_str(f, "tokenizer.ggml.model", &s, d);
    if (rc == SLM_ENOTFOUND)
        return slm_diag_set(d, SLM_EFORMAT,
                            "tokenizer.ggml.model: missing, the file has no vocabulary");
    if (rc < 0) return rc;
    if (str_eq(s, "gpt2")) {
        sp.model = TOK_MODEL_BPE;
    } else if (str_eq(s, "llama")) {
        sp.model = TOK_MODEL_SPM;
    } else {
        str_copy(tb, sizeof(tb), s);
        return slm_diag_set(d, SLM_EUNSUPPORTED,
                            "tokenizer.ggml.model: '%s' is not supported (supported: gpt2, llama)",
                            tb);
    }

    sp.pre = TOK_PRE_DEFAULT;
    if (sp.model == TOK_MODEL_BPE) {
        rc = gguf_get_str(f, "tokenizer.ggml.pre", &s, d);
        if (rc < 0 && rc != SLM_ENOTFOUND) return rc;
        if (rc == 0) {
            size_t k;
            for (k = 0; k < SLM_ARRAY_LEN(pre_names); k++)
                if (str_eq(s, pre_names[k].name)) break;
            if (k == SLM_ARRAY_LEN(pre_names)) {
                str_copy(tb, sizeof(tb), s);
                return slm_diag_set(d, SLM_EUNSUPPORTED,
                                    "tokenizer.ggml.pre: pre-tokenizer '%s' is not supported "
                                    "(supported: llama-bpe, qwen2, tekken, deepseek-coder, "
                                    "starcoder, gpt-2, default)",
                                    tb);
            }
            sp.pre = pre_names[k].pre;
        }
    }

    rc = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &idx, &n, d);
    if (rc == SLM_ENOTFOUND) return slm_diag_set(d, SLM_EFORMAT, "tokenizer.ggml.tokens: missing");
    if (rc < 0) return rc;
    if (n == 0)
        return slm_diag_set(d, SLM_EFORMAT, "tokenizer.ggml.tokens: the vocabulary is empty");
    if (n > SLM_LIMIT_VOCAB)
        return slm_diag_set(d, SLM_ELIMIT, "tokenizer.ggml.tokens: %llu tokens, more than %u",
                            (unsigned long long)n, SLM_LIMIT_VOCAB);
    sp.n_vocab = (size_t)n;
    text = slm_calloc(sp.n_vocab, sizeof(*text));
    text_len = slm_calloc(sp.n_vocab, sizeof(*text_len));
    if (text == NULL || text_len == NULL) {
        rc = SLM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < sp.n_vocab; i++) {
        struct gguf_str e = gguf_kv_arr_str(f, idx, i);
        text[i] = e.ptr;
        text_len[i] = e.len;
    }
    sp.text = text;
    sp.text_len = text_len;

    const void *raw;
    if ((rc = load_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, sp.n_vocab, &raw, d)) < 0)
        goto out;
    if (raw != NULL) {
        types = slm_malloc(sp.n_vocab);
        if (types == NULL) {
            rc = SLM_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < sp.n_vocab; i++) {
            int32_t v;
            memcpy(&v, (const char *)raw + 4 * i, 4);
            if (v < 0 || v >= TOK_TYPE_COUNT) {
                rc = slm_diag_set(d, SLM_EFORMAT,
                                  "tokenizer.ggml.token_type[%zu]: %d is not a token type (0..6)",
                                  i, (int)v);
                goto out;
            }
            types[i] = (uint8_t)v;
        }
        sp.type = types;
    }
    if ((rc = load_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, sp.n_vocab, &raw, d)) < 0)
        goto out;
    if (raw != NULL) {
        scores = slm_calloc(sp.n_vocab, sizeof(float));
        if (scores == NULL) {
            rc = SLM_ENOMEM;
            goto out;
        }
        memcpy(scores, raw, sp.n_vocab * sizeof(float)); /* n_vocab <= SLM_LIMIT_VOCAB */
        sp.score = scores;
    }

    if (sp.model == TOK_MODEL_BPE) {
        rc = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &idx, &n, d);
        if (rc == SLM_ENOTFOUND) {
            rc = slm_diag_set(d, SLM_EFORMAT,
                              "tokenizer.ggml.merges: missing, a gpt2 vocabulary needs merges");
            goto out;
        }
        if (rc < 0) goto out;
        if (n > SLM_LIMIT_GGUF_ARRAY) {
            rc = slm_diag_set(d, SLM_ELIMIT, "tokenizer.ggml.merges: %llu merges, more than %u",
                              (unsigned long long)n, SLM_LIMIT_GGUF_ARRAY);
            goto out;
        }
        sp.n_merges = (size_t)n;
        merge = slm_calloc(sp.n_merges + 1, sizeof(*merge));
        merge_len = slm_calloc(sp.n_merges + 1, sizeof(*merge_len));
        if (merge == NULL || merge_len == NULL) {
            rc = SLM_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < sp.n_merges; i++) {
            struct gguf_str e = gguf_kv_arr_str(f, idx, i);
            merge[i] = e.ptr;
            merge_len[i] = e.len;
        }
        sp.merge = merge;
        sp.merge_len = merge_len;
    }

    /* Defaults of llama.cpp, then the file's keys. */
    bool explicit_bos = false;
    if (sp.model == TOK_MODEL_SPM) {
        sp.ids.unk = 0;
        sp.ids.bos = sp.n_vocab > 1 ? 1 : TOK_NONE;
        sp.ids.eos = sp.n_vocab > 2 ? 2 : TOK_NONE;
        sp.add_bos = true;
        sp.add_space_prefix = true;
    } else {
        sp.add_bos = sp.pre == TOK_PRE_LLAMA3 || sp.pre == TOK_PRE_TEKKEN;
    }
    if ((rc = load_id(f, "bos_token_id", sp.n_vocab, &sp.ids.bos, d)) < 0 ||
        (rc = load_id(f, "eos_token_id", sp.n_vocab, &sp.ids.eos, d)) < 0 ||
        (rc = load_id(f, "eot_token_id", sp.n_vocab, &sp.ids.eot, d)) < 0 ||
        (rc = load_id(f, "eom_token_id", sp.n_vocab, &sp.ids.eom, d)) < 0 ||
        (rc = load_id(f, "unknown_token_id", sp.n_vocab, &sp.ids.unk, d)) < 0 ||
        (rc = load_id(f, "padding_token_id", sp.n_vocab, &sp.ids.pad, d)) < 0)
        goto out;
    if ((rc = load_bool(f, "tokenizer.ggml.add_bos_token", &sp.add_bos, d)) < 0) goto out;
    explicit_bos = rc == 1 && sp.add_bos;
    if ((rc = load_bool(f, "tokenizer.ggml.add_eos_token", &sp.add_eos, d)) < 0 ||
        (rc = load_bool(f, "tokenizer.ggml.add_space_prefix", &sp.add_space_prefix, d)) < 0)
        goto out;
    if (sp.add_bos && sp.ids.bos == TOK_NONE) {
        if (explicit_bos) {
            rc = slm_diag_set(d, SLM_EFORMAT,
                              "tokenizer.ggml.add_bos_token: true, but the file names no "
                              "bos_token_id");
            goto out;
        }
        sp.add_bos = false;
    }
    if (sp.add_eos && sp.ids.eos == TOK_NONE) {
        rc = slm_diag_set(d, SLM_EFORMAT,
                          "tokenizer.ggml.add_eos_token: true, but the file names no eos_token_id");
        goto out;
    }
    rc = tokenizer__build(&sp, out, d);
out:
    slm_free(text);
    slm_free(text_len);
    slm_free(merge);
    slm_free(merge_len);
    slm_free(types);
    slm_free(scores);
    return rc;
}

/* ---- accessors ---- */

size_t tokenizer_n_vocab(const struct tokenizer *t)
{
    return t->n_vocab;
}

tok_id tokenizer_bos(const struct tokenizer *t)
{
    return t->ids.bos;
}

tok_id tokenizer_eos(const struct tokenizer *t)
{
    return t->ids.eos;
}

bool tokenizer_is_eog(const struct tokenizer *t, tok_id id)
{
    if (id == TOK_NONE) return false;
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

bool tokenizer_is_control(const struct tokenizer *t, tok_id id)
{
    if (id < 0 || (size_t)id >= t->n_vocab) return false;
    return t->type[id] == TOK_TYPE_CONTROL || t->type[id] == TOK_TYPE_UNKNOWN;
}

tok_id tokenizer_find(const struct tokenizer *t, const char *text, size_t len)
{
    if (len == 0) return TOK_NONE;
    return table_find(t, &t->by_text, false, text, len);
}

struct gguf_str tokenizer_token_text(const struct tokenizer *t, tok_id id)
{
    struct gguf_str s = { "", 0 };

    if (id >= 0 && (size_t)id < t->n_vocab) s.ptr = text_of(t, (size_t)id, &s.len);
    return s;
}

/* ---- encoding ---- */

/* Scratch state of one tokenizer_encode call. */
struct enc {
    const struct tokenizer *t;
    tok_id *out;
    size_t cap, n;
    int32_t *sym_id; /* BPE: token of each symbol; SPM: unused */
    uint32_t *sym_off, *sym_len;
    int32_t *sym_prev, *sym_next;
    size_t sym_cap;
    uint64_t *heap;
    size_t heap_n, heap_cap;
    char *text; /* SPM: the escaped fragment */
    size_t text_cap;
};

static void enc_put(struct enc *e, tok_id id)
{
    if (id == TOK_NONE) return;
    if (e->n < e->cap) e->out[e->n] = id;
    e->n++;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    return slm_grow_array(p, cap, need, elem, 64);
}

static int enc_reserve_symbols(struct enc *e, size_t n)
{
    size_t c;
    int rc;

    if (n <= e->sym_cap) return 0;
    c = e->sym_cap;
    if ((rc = grow((void **)&e->sym_id, &c, n, sizeof(int32_t))) < 0) return rc;
    c = e->sym_cap;
    if ((rc = grow((void **)&e->sym_off, &c, n, sizeof(uint32_t))) < 0) return rc;
    c = e->sym_cap;
    if ((rc = grow((void **)&e->sym_len, &c, n, sizeof(uint32_t))) < 0) return rc;
    c = e->sym_cap;
    if ((rc = grow((void **)&e->sym_prev, &c, n, sizeof(int32_t))) < 0) return rc;
    c = e->sym_cap;
    if ((rc = grow((void **)&e->sym_next, &c, n, sizeof(int32_t))) < 0) return rc;
    e->sym_cap = c;
    return 0;
}

/* Min-heap of 64-bit keys: (priority << 32) | left symbol index. */
static int heap_push(struct enc *e, uint64_t key)
{
    int rc;

    if (e->heap_n == e->heap_cap &&
        (rc = grow((void **)&e->heap, &e->heap_cap, e->heap_n + 1, sizeof(uint64_t))) < 0)
        return rc;
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->heap[p] <= key) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = key;
    return 0;
}

static uint64_t heap_pop(struct enc *e)
{
    uint64_t top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && e->heap[c + 1] < e->heap[c]) c++;
        if (e->heap[c] >= last) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0) e->heap[i] = last;
    return top;
}

/* Removes symbol r (right of l) after merging it into l. */
static void unlink_right(struct enc *e, int32_t l, int32_t r)
{
    e->sym_next[l] = e->sym_next[r];
    if (e->sym_next[r] >= 0) e->sym_prev[e->sym_next[r]] = l;
    e->sym_len[r] = 0;
}

/* ---- byte-level BPE ---- */

static int bpe_push_pair(struct enc *e, int32_t l)
{
    if (l < 0 || e->sym_next[l] < 0) return 0;
    int32_t a = e->sym_id[l], b = e->sym_id[e->sym_next[l]];
    if (a < 0 || b < 0) return 0;
    int64_t m = pair_find(e->t, (uint32_t)a, (uint32_t)b);
    if (m < 0) return 0;
    return heap_push(e, ((uint64_t)m << 32) | (uint32_t)l);
}

/* Encodes one pre-token s[start..end) (raw bytes) with the merges. */
static int bpe_word(void *ctx, const uint8_t *s, size_t start, size_t end)
{
    struct enc *e = ctx;
    const struct tokenizer *t = e->t;
    size_t n = end - start;
    int rc;

    if (n == 1) {
        enc_put(e, t->byte_tok[s[start]] != TOK_NONE ? t->byte_tok[s[start]] : t->ids.unk);
        return 0;
    }
    if (t->ignore_merges) {
        tok_id id = table_find(t, &t->by_piece, true, s + start, n);
        if (id != TOK_NONE) {
            enc_put(e, id);
            return 0;
        }
    }
    if (n > INT32_MAX) return SLM_ELIMIT;
    if ((rc = enc_reserve_symbols(e, n)) < 0) return rc;
    for (size_t i = 0; i < n; i++) {
        e->sym_id[i] = t->byte_tok[s[start + i]];
        e->sym_len[i] = 1;
        e->sym_prev[i] = (int32_t)i - 1;
        e->sym_next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if ((rc = bpe_push_pair(e, (int32_t)i)) < 0) return rc;
    while (e->heap_n > 0) {
        uint64_t key = heap_pop(e);
        int32_t l = (int32_t)(key & 0xFFFFFFFFu);
        uint32_t rank = (uint32_t)(key >> 32);
        if (e->sym_len[l] == 0 || e->sym_next[l] < 0) continue;
        int32_t r = e->sym_next[l];
        if (e->sym_id[l] < 0 || e->sym_id[r] < 0) continue;
        /* A stale entry is only acted on if it is the pair's current merge. */
        int64_t m = pair_find(t, (uint32_t)e->sym_id[l], (uint32_t)e->sym_id[r]);
        if (m < 0 || (uint32_t)m != rank) continue;
        e->sym_id[l] = (int32_t)t->merge_result[m];
        e->sym_len[l] += e->sym_len[r];
        unlink_right(e, l, r);
        if ((rc = bpe_push_pair(e, e->sym_prev[l])) < 0 || (rc = bpe_push_pair(e, l)) < 0)
            return rc;
    }
    for (int32_t i = 0; i >= 0; i = e->sym_next[i])
        enc_put(e, e->sym_id[i] >= 0 ? e->sym_id[i] : t->ids.unk);
    return 0;
}

/* ---- SentencePiece BPE ---- */

/* Orders floats as unsigned integers (larger score, larger value). */
static uint32_t score_order(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* The token whose text is symbols l and its right neighbour together. */
static tok_id spm_pair_token(const struct enc *e, int32_t l)
{
    int32_t r = e->sym_next[l];
    tok_id id = table_find(e->t, &e->t->by_text, false, e->text + e->sym_off[l],
                           (size_t)e->sym_len[l] + e->sym_len[r]);
    /* Byte, control and unused pieces never take part in merges. */
    if (id != TOK_NONE && !type_is_normal(e->t->type[id]) &&
        e->t->type[id] != TOK_TYPE_USER_DEFINED)
        return TOK_NONE;
    return id;
}

static int spm_push_pair(struct enc *e, int32_t l)
{
    if (l < 0 || e->sym_next[l] < 0) return 0;
    tok_id id = spm_pair_token(e, l);
    if (id == TOK_NONE) return 0;
    /* Highest score first, then the leftmost pair (llama.cpp). */
    uint64_t key = ((uint64_t)(~score_order(e->t->score[id])) << 32) | (uint32_t)l;
    return heap_push(e, key);
}

/* llama.cpp splits on the lead byte's length alone (0x80-0xBF count 1). */
static size_t spm_char_len(uint8_t b)
{
    static const uint8_t lens[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return lens[b >> 4];
}

/* Encodes one text fragment (no special tokens in it) with SentencePiece. */
static int spm_fragment(struct enc *e, const char *s, size_t len, bool prefix_space)
{
    const struct tokenizer *t = e->t;
    size_t need, n_text = 0, n_sym = 0;
    int rc;

    if (!slm_mul_size(len, 3, &need) || !slm_add_size(need, 3, &need)) return SLM_ELIMIT;
    if (need > UINT32_MAX) return SLM_ELIMIT;
    if ((rc = grow((void **)&e->text, &e->text_cap, need, 1)) < 0) return rc;
    if (prefix_space) {
        memcpy(e->text, "\xE2\x96\x81", 3);
        n_text = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(e->text + n_text, "\xE2\x96\x81", 3);
            n_text += 3;
        } else {
            e->text[n_text++] = s[i];
        }
    }
    if ((rc = enc_reserve_symbols(e, n_text)) < 0) return rc;
    for (size_t p = 0; p < n_text;) {
        size_t cl = spm_char_len((uint8_t)e->text[p]);
        if (cl > n_text - p) cl = n_text - p;
        e->sym_off[n_sym] = (uint32_t)p;
        e->sym_len[n_sym] = (uint32_t)cl;
        e->sym_prev[n_sym] = (int32_t)n_sym - 1;
        e->sym_next[n_sym] = -1;
        if (n_sym > 0) e->sym_next[n_sym - 1] = (int32_t)n_sym;
        n_sym++;
        p += cl;
    }
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < n_sym; i++)
        if ((rc = spm_push_pair(e, (int32_t)i)) < 0) return rc;
    while (e->heap_n > 0) {
        uint64_t key = heap_pop(e);
        int32_t l = (int32_t)(key & 0xFFFFFFFFu);
        uint32_t ord = ~(uint32_t)(key >> 32);
        if (e->sym_len[l] == 0 || e->sym_next[l] < 0) continue;
        tok_id id = spm_pair_token(e, l);
        if (id == TOK_NONE || score_order(t->score[id]) != ord) continue;
        int32_t r = e->sym_next[l];
        e->sym_len[l] += e->sym_len[r];
        unlink_right(e, l, r);
        if ((rc = spm_push_pair(e, e->sym_prev[l])) < 0 || (rc = spm_push_pair(e, l)) < 0)
            return rc;
    }
    for (int32_t i = n_sym > 0 ? 0 : -1; i >= 0; i = e->sym_next[i]) {
        const char *p = e->text + e->sym_off[i];
        size_t n = e->sym_len[i];
        tok_id id = table_find(t, &t->by_text, false, p, n);
        if (id != TOK_NONE) {
            enc_put(e, id);
            continue;
        }
        for (size_t k = 0; k < n; k++)
            enc_put(e, t->byte_tok[(uint8_t)p[k]]);
    }
    return 0;
}

/* ---- special tokens and the driver ---- */

/*
 * The longest special token starting at s[pos], if any: its id and length.
 * Control and unknown tokens count only with parse_special; user-defined
 * tokens always (llama.cpp, Hugging Face).
 */
static tok_id special_at(const struct tokenizer *t, const uint8_t *s, size_t pos, size_t len,
                         bool parse_special, size_t *mlen)
{
    int32_t node = t->trie_root[s[pos]];
    tok_id best = TOK_NONE;
    size_t i = pos;

    while (node >= 0) {
        i++;
        tok_id id = t->trie[node].id;
        if (id != TOK_NONE && (parse_special || t->type[id] == TOK_TYPE_USER_DEFINED)) {
            best = id;
            *mlen = i - pos;
        }
        if (i >= len) break;
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != s[i])
            c = t->trie[c].sibling;
        node = c;
    }
    return best;
}

static int encode_fragment(struct enc *e, const char *s, size_t len, bool after_special)
{
    const struct tokenizer *t = e->t;

    if (t->model == TOK_MODEL_SPM)
        return spm_fragment(e, s, len, t->add_space_prefix && after_special);
    return tok__pre_split(t->pre, (const uint8_t *)s, len, bpe_word, e);
}

/* Encodes text into token ids; see tokenizer.h for the cap contract. */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, unsigned flags,
                     tok_id *out, size_t cap, size_t *n_tokens)
{
    struct enc e;
    const uint8_t *s = (const uint8_t *)text;
    bool parse = (flags & TOKENIZE_PARSE_SPECIAL) != 0;
    bool after_special = true;
    size_t pos = 0;
    int rc = 0;

    if (n_tokens != NULL) *n_tokens = 0;
    if (t == NULL || n_tokens == NULL || (text == NULL && len > 0) || (out == NULL && cap > 0))
        return SLM_EINVAL;
    memset(&e, 0, sizeof(e));
    e.t = t;
    e.out = out;
    e.cap = cap;
    if ((flags & TOKENIZE_ADD_SPECIAL) && t->add_bos) enc_put(&e, t->ids.bos);
    while (pos < len) {
        size_t p = pos, mlen = 0;
        tok_id sid = TOK_NONE;
        if (t->n_trie > 1) {
            for (; p < len; p++) {
                if (t->trie_root[s[p]] < 0) continue;
                sid = special_at(t, s, p, len, parse, &mlen);
                if (sid != TOK_NONE) break;
            }
        } else {
            p = len;
        }
        if (p > pos) {
            if ((rc = encode_fragment(&e, text + pos, p - pos, after_special)) < 0) goto out;
            after_special = false;
        }
        if (sid == TOK_NONE) break;
        enc_put(&e, sid);
        after_special = true;
        pos = p + mlen;
    }
    if ((flags & TOKENIZE_ADD_SPECIAL) && t->add_eos) enc_put(&e, t->ids.eos);
    *n_tokens = e.n;
out:
    slm_free(e.sym_id);
    slm_free(e.sym_off);
    slm_free(e.sym_len);
    slm_free(e.sym_prev);
    slm_free(e.sym_next);
    slm_free(e.heap);
    slm_free(e.text);
    return rc;
}

/* ---- detokenization ---- */

/* The bytes id renders as (borrowed), per the rules of llama.cpp. */
static const char *render(const struct tokenizer *t, tok_id id, bool render_special, size_t *len)
{
    switch (t->type[id]) {
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_UNKNOWN:
        if (!render_special) {
            *len = 0;
            return "";
        }
        return text_of(t, (size_t)id, len);
    case TOK_TYPE_UNUSED:
        *len = 0;
        return "";
    default:
        return piece_of(t, (size_t)id, len);
    }
}

/* Copies the bytes of token id into buf; see tokenizer.h. */
int tokenizer_token_bytes(const struct tokenizer *t, tok_id id, bool render_special, char *buf,
                          size_t cap, size_t *len)
{
    size_t n;

    if (len != NULL) *len = 0;
    if (t == NULL || len == NULL || (buf == NULL && cap > 0)) return SLM_EINVAL;
    if (id < 0 || (size_t)id >= t->n_vocab) return SLM_ERANGE;
    const char *p = render(t, id, render_special, &n);
    if (n > 0 && cap > 0) memcpy(buf, p, n < cap ? n : cap);
    *len = n;
    return 0;
}

void tok_stream_init(struct tok_stream *s, const struct tokenizer *t, bool render_special)
{
    memset(s, 0, sizeof(*s));
    s->tok = t;
    s->render_special = render_special;
    s->at_start = true;
}

/* Length of the UTF-8 sequence led by b, or 0 if b cannot lead one. */
static size_t utf8_lead_len(uint8_t b)
{
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* True if b may follow lead at position i (1-based) of a sequence. */
static bool utf8_cont_ok(uint8_t lead, size_t i, uint8_t b)
{
    if ((b & 0xC0) != 0x80) return false;
    if (i != 1) return true;
    if (lead == 0xE0) return b >= 0xA0;
    if (lead == 0xED) return b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90;
    if (lead == 0xF4) return b <= 0x8F;
    return true;
}

static const char replacement[3] = { '\xEF', '\xBF', '\xBD' };

/*
 * Appends the complete characters of pending + p[0..n) to out; an
 * incomplete but so far valid tail stays pending, each invalid byte becomes
 * U+FFFD.
 */
static int stream_feed(struct tok_stream *s, const char *p, size_t n, struct slm_buf *out)
{
    char buf[SLM_LIMIT_TOKEN_BYTES + sizeof(s->pending)];
    size_t total = s->n_pending + n, i = 0, start = 0;
    int rc;

    memcpy(buf, s->pending, s->n_pending);
    memcpy(buf + s->n_pending, p, n);
    s->n_pending = 0;
    while (i < total) {
        uint8_t b = (uint8_t)buf[i];
        size_t need = utf8_lead_len(b), k;
        if (need == 1) {
            i++;
            continue;
        }
        for (k = 1; k < need && i + k < total; k++)
            if (!utf8_cont_ok(b, k, (uint8_t)buf[i + k])) break;
        if (need > 0 && k == need) {
            i += need;
            continue;
        }
        if (need > 0 && i + k == total) {
            /* Incomplete so far: wait for the next token. */
            memcpy(s->pending, buf + i, total - i);
            s->n_pending = total - i;
            total = i;
            break;
        }
        /* Invalid lead or continuation: one U+FFFD for the bad byte. */
        if ((rc = slm_buf_append(out, buf + start, i - start)) < 0 ||
            (rc = slm_buf_append(out, replacement, sizeof(replacement))) < 0)
            return rc;
        i++;
        start = i;
    }
    return slm_buf_append(out, buf + start, total - start);
}

/* Feeds one token to the stream; see tokenizer.h. */
int tok_stream_push(struct tok_stream *s, tok_id id, struct slm_buf *out)
{
    const struct tokenizer *t = s->tok;
    size_t n;

    if (id < 0 || (size_t)id >= t->n_vocab) return SLM_ERANGE;
    const char *p = render(t, id, s->render_special, &n);
    if (s->at_start) {
        /* SentencePiece: drop the space add_space_prefix put before the text. */
        if (t->model == TOK_MODEL_SPM && t->add_space_prefix && n > 0 && p[0] == ' ') {
            p++;
            n--;
        }
        s->at_start = false;
    }
    return stream_feed(s, p, n, out);
}

/* Appends what is pending: an incomplete character becomes U+FFFD. */
int tok_stream_flush(struct tok_stream *s, struct slm_buf *out)
{
    int rc = 0;

    if (s->n_pending > 0) rc = slm_buf_append(out, replacement, sizeof(replacement));
    s->n_pending = 0;
    return rc;
}
