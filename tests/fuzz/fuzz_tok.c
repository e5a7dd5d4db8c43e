/*
 * fuzz_tok.c - libFuzzer target for the tokenizer (RELIABILITY.md T09).
 *
 * Once per process, trains a small byte-level BPE vocabulary on the built-in
 * corpus (bpe_train_gguf, the same code `slm mkmodel` uses), writes it to a
 * temporary GGUF file and loads it. Each input is then encoded with and
 * without special-token parsing (and with a capacity smaller than needed,
 * T04), and the ids are streamed back through tok_stream. Checks: the count
 * does not depend on the capacity, every id is in the vocabulary, and
 * without special parsing no control token appears (T06).
 *
 * Build: make fuzz. Run: build/fuzz/fuzz_tok tests/fuzz/corpus/fuzz_tok
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TOK_MAX 8192

static struct gguf_file *vocab_file;
static struct tokenizer *tok;
static tok_id ids[FUZZ_TOK_MAX];

/* Trains and loads the vocabulary; aborts (a harness bug) if that fails. */
static void tok_setup(void)
{
    char path[] = "/tmp/slm-fuzz-tok-XXXXXX";
    struct gguf_writer *w = gguf_writer_new();
    struct slm_diag d = { 0 };
    size_t len;
    const char *corpus = bpe_default_corpus(&len);
    int fd = mkstemp(path);

    if (fd < 0 || w == NULL || bpe_train_gguf(w, corpus, len, 1024, &d) < 0 ||
        gguf_writer_write(w, path, &d) < 0 || gguf_open(path, &vocab_file, &d) < 0 ||
        tokenizer_load(vocab_file, &tok, &d) < 0) {
        fprintf(stderr, "fuzz_tok: set-up failed: %s\n", d.msg);
        abort();
    }
    close(fd);
    unlink(path);
    gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t n_all, n_small, n_special;
    struct tok_stream st;
    struct slm_buf out;

    if (tok == NULL) tok_setup();
    if (size > 64 * 1024) return 0;
    if (tokenizer_encode(tok, text, size, 0, ids, FUZZ_TOK_MAX, &n_all) < 0) abort();
    if (tokenizer_encode(tok, text, size, 0, ids, n_all / 2, &n_small) < 0 || n_small != n_all)
        abort();
    for (size_t i = 0; i < n_all && i < FUZZ_TOK_MAX; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= tokenizer_n_vocab(tok)) abort();
        if (tokenizer_is_control(tok, ids[i]))
            abort(); /* T06: user text never becomes a control token */
    }
    slm_buf_init(&out, 1u << 20);
    tok_stream_init(&st, tok, false);
    for (size_t i = 0; i < n_all && i < FUZZ_TOK_MAX; i++)
        if (tok_stream_push(&st, ids[i], &out) < 0) break;
    if (tok_stream_flush(&st, &out) < 0) {
        /* only a full output buffer may fail here */
    }
    slm_buf_fini(&out);
    if (tokenizer_encode(tok, text, size, TOKENIZE_ADD_SPECIAL | TOKENIZE_PARSE_SPECIAL, ids,
                         FUZZ_TOK_MAX, &n_special) < 0)
        abort();
    return 0;
}
