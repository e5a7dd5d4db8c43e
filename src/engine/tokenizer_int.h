/*
 * tokenizer_int.h - internals shared by the tokenizer files of the engine.
 *
 * unicode.c          UTF-8 decoding, general categories, GPT-2 byte mapping
 * unicode_data.c     the generated category and White_Space tables
 * tokenizer_pre.c    pre-tokenizers: hand-written scanners for the split
 *                    regexes GGUF files name in tokenizer.ggml.pre
 * tokenizer.c        loading, validation, encoding (BPE, SentencePiece),
 *                    special tokens, detokenization
 * bpe_train.c        the small deterministic BPE trainer for slm mkmodel
 * corpus.c           the built-in training corpus
 *
 * struct tok_spec is a vocabulary held in plain arrays: tokenizer_load fills
 * one from a GGUF file, the trainer produces one, and unit tests build one by
 * hand; tokenizer__build turns it into a tokenizer. Everything here is
 * reentrant; nothing is thread-shared except read-only tables.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/tokenizer.h"

/* ---- Unicode ---- */

/* General categories; the numbers match tools/gen_unicode_tables.py. */
enum ucat {
    UCAT_CN, /* unassigned (and our pseudo code points for invalid bytes) */
    UCAT_LU,
    UCAT_LL,
    UCAT_LT,
    UCAT_LM,
    UCAT_LO,
    UCAT_MN,
    UCAT_MC,
    UCAT_ME,
    UCAT_ND,
    UCAT_NL,
    UCAT_NO,
    UCAT_PC,
    UCAT_PD,
    UCAT_PS,
    UCAT_PE,
    UCAT_PI,
    UCAT_PF,
    UCAT_PO,
    UCAT_SM,
    UCAT_SC,
    UCAT_SK,
    UCAT_SO,
    UCAT_ZS,
    UCAT_ZL,
    UCAT_ZP,
    UCAT_CC,
    UCAT_CF,
    UCAT_CS,
    UCAT_CO,
    UCAT_COUNT
};

/* Code points above this stand for one invalid byte: UNICODE_BAD_BYTE + byte. */
#define UNICODE_BAD_BYTE 0x110000u

extern const uint32_t unicode__cat_ranges[];
extern const size_t unicode__n_cat_ranges;
extern const uint32_t unicode__white_space[];
extern const size_t unicode__n_white_space;

/*
 * Decodes the code point at s[pos] (pos < end). Invalid or truncated
 * sequences, overlongs and surrogates decode as UNICODE_BAD_BYTE + s[pos]
 * with length 1, so every byte belongs to exactly one code point.
 */
uint32_t unicode__decode(const uint8_t *s, size_t pos, size_t end, size_t *len);
enum ucat unicode__cat(uint32_t cp);
bool unicode__is_space(uint32_t cp);
/* GPT-2 byte-level alphabet: the code point byte b is written as, and back. */
uint32_t unicode__byte_to_cp(uint8_t b);
int unicode__cp_to_byte(uint32_t cp); /* -1 if cp is not in the alphabet */

/* ---- vocabulary ---- */

/* tokenizer.ggml.token_type values (llama.cpp's LLAMA_TOKEN_TYPE_*). */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
    TOK_TYPE_COUNT = 7
};

enum tok_model {
    TOK_MODEL_BPE, /* "gpt2": byte-level BPE */
    TOK_MODEL_SPM  /* "llama": SentencePiece BPE with byte fallback */
};

enum tok_pre {
    TOK_PRE_DEFAULT,
    TOK_PRE_LLAMA3,
    TOK_PRE_QWEN2,
    TOK_PRE_TEKKEN,
    TOK_PRE_DEEPSEEK_CODER,
    TOK_PRE_STARCODER,
    TOK_PRE_GPT2,
    TOK_PRE_COUNT
};

/* Special token ids of a vocabulary (TOK_NONE when absent). */
struct tok_ids {
    tok_id bos, eos, eot, eom, unk, pad;
};

struct tok_spec {
    enum tok_model model;
    enum tok_pre pre;
    size_t n_vocab;
    const char *const *text; /* n_vocab strings as stored in the vocabulary */
    const size_t *text_len;
    const uint8_t *type; /* enum tok_type per token, or NULL (all NORMAL) */
    const float *score;  /* or NULL (all 0) */
    size_t n_merges;     /* BPE: merges as "left right" in stored form */
    const char *const *merge;
    const size_t *merge_len;
    struct tok_ids ids;
    bool add_bos, add_eos, add_space_prefix;
};

/*
 * Builds a tokenizer from spec (borrowed; everything is copied). Validates
 * like tokenizer_load and names the offending key and index in d.
 */
SLM_NODISCARD int tokenizer__build(const struct tok_spec *spec, struct tokenizer **out,
                                   struct slm_diag *d);

/* ---- pre-tokenizers ---- */

/* Called once per pre-token s[start..end) (bytes of the fragment). */
typedef int tok_word_fn(void *ctx, const uint8_t *s, size_t start, size_t end);

/*
 * Splits s[0..len) into pre-tokens the way the named pre-tokenizer's regexes
 * do, calling fn for each in order (every byte lands in exactly one word).
 * Returns 0 or the first negative value fn returned.
 */
SLM_NODISCARD int tok__pre_split(enum tok_pre pre, const uint8_t *s, size_t len, tok_word_fn *fn,
                                 void *ctx);

/* ---- trainer ---- */

/* A trained vocabulary: owned arrays (bpe__vocab_fini frees). */
struct bpe_vocab {
    size_t n_vocab;
    char **text; /* GPT-2-mapped token strings, NUL-terminated */
    size_t *text_len;
    uint8_t *type;
    float *score;
    size_t n_merges;
    char **merge;
    size_t *merge_len;
    tok_id bos, eos, eot, fim_pre, fim_suf, fim_mid;
    size_t n_learned; /* tokens made by merges */
    size_t n_filler;  /* unused filler tokens */
};

SLM_NODISCARD int bpe__train(const char *corpus, size_t len, uint32_t n_vocab,
                             struct bpe_vocab *out, struct slm_diag *d);
void bpe__vocab_fini(struct bpe_vocab *v);
/* Fills spec from a trained vocabulary (borrowing its arrays). */
void bpe__vocab_spec(const struct bpe_vocab *v, struct tok_spec *spec);
