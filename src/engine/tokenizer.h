/*
 * tokenizer.h - text <-> token ids, driven by a GGUF file's tokenizer.* keys.
 *
 * Two families: byte-level BPE (tokenizer.ggml.model = "gpt2": Llama 3, Qwen2/3,
 * Mistral "tekken", deepseek-coder, starcoder, gpt2; the pre-tokenizer is
 * chosen by tokenizer.ggml.pre) and SentencePiece BPE with byte fallback
 * (tokenizer.ggml.model = "llama": Llama 2, Mistral v1-v3). Special (control)
 * tokens are recognised in the text only with TOKENIZE_PARSE_SPECIAL, so user
 * text that merely looks like "<|im_start|>" never becomes a control token.
 *
 * Ownership: tokenizer_load borrows the gguf file for the call only (every
 * string is copied; the file may be closed afterwards); tokenizer_free frees.
 * Behaviour, validation and limits: docs/tokenizer.md.
 * Thread safety: a loaded tokenizer is immutable and may be shared by threads.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "engine/gguf.h"

typedef int32_t tok_id;

#define TOK_NONE ((tok_id)-1)

enum tokenize_flags {
    TOKENIZE_ADD_SPECIAL = 1u << 0,   /* add BOS/EOS as the model's add_bos/add_eos say */
    TOKENIZE_PARSE_SPECIAL = 1u << 1, /* turn control-token text into control tokens */
};

struct tokenizer;

SLM_NODISCARD int tokenizer_load(const struct gguf_file *f, struct tokenizer **out,
                                 struct slm_diag *d);
void tokenizer_free(struct tokenizer *t);

size_t tokenizer_n_vocab(const struct tokenizer *t);
tok_id tokenizer_bos(const struct tokenizer *t); /* TOK_NONE if the model has none */
tok_id tokenizer_eos(const struct tokenizer *t);
/* True for end-of-generation tokens (eos, eot, eom, <|im_end|> ...). */
bool tokenizer_is_eog(const struct tokenizer *t, tok_id id);
/* True for control tokens (not rendered as text by default). */
bool tokenizer_is_control(const struct tokenizer *t, tok_id id);
/* The exact vocabulary entry text, or TOK_NONE (for FIM and chat tokens). */
tok_id tokenizer_find(const struct tokenizer *t, const char *text, size_t len);
/* The raw vocabulary string of id (borrowed from the file). */
struct gguf_str tokenizer_token_text(const struct tokenizer *t, tok_id id);

/*
 * Encodes text[0..len). Writes at most cap ids to out and always stores the
 * total count in *n_tokens, so a caller can size a buffer with cap 0 (T04).
 * Invalid UTF-8 is encoded byte by byte (byte-level BPE) or through byte
 * fallback (SentencePiece), never dropped. Returns 0 or a negative code.
 */
SLM_NODISCARD int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len,
                                   unsigned flags, tok_id *out, size_t cap, size_t *n_tokens);

/*
 * The bytes token id stands for (byte-level mapping undone, SentencePiece's
 * U+2581 turned into a space, <0xNN> into its byte). Control tokens give their
 * text only if render_special. Writes at most cap bytes, stores the full
 * length in *len. A piece may be part of a UTF-8 character.
 */
SLM_NODISCARD int tokenizer_token_bytes(const struct tokenizer *t, tok_id id, bool render_special,
                                        char *buf, size_t cap, size_t *len);

/*
 * Streaming detokenization: feed ids one at a time; only complete UTF-8
 * characters are appended to out, the rest waits for the next token. flush
 * appends what is left (an incomplete tail as U+FFFD). Caller storage.
 */
struct tok_stream {
    const struct tokenizer *tok;
    bool render_special;
    bool at_start;
    size_t n_pending;
    char pending[8];
};

void tok_stream_init(struct tok_stream *s, const struct tokenizer *t, bool render_special);
SLM_NODISCARD int tok_stream_push(struct tok_stream *s, tok_id id, struct slm_buf *out);
SLM_NODISCARD int tok_stream_flush(struct tok_stream *s, struct slm_buf *out);

/*
 * Trains a byte-level BPE vocabulary of exactly n_vocab entries on corpus
 * (256 byte tokens, the learned merges, then special tokens: begin/end of
 * text, end of turn, chat and fill-in-the-middle markers) with the Llama 3
 * pre-tokenizer, and writes all tokenizer.ggml.* keys (model "gpt2", pre
 * "llama-bpe", tokens, token_type, merges, bos/eos/eot ids, add_bos) and a
 * chat template to w. Deterministic: the same corpus and n_vocab give the
 * same file. For slm mkmodel.
 */
SLM_NODISCARD int bpe_train_gguf(struct gguf_writer *w, const char *corpus, size_t len,
                                 uint32_t n_vocab, struct slm_diag *d);

/* A built-in corpus (code and prose, a few hundred KiB at most) for mkmodel. */
const char *bpe_default_corpus(size_t *len);
