/*
 * greedy_llama.c - greedy token ids from llama.cpp's library, for
 * bench/compare.sh. Built by that script against a llama.cpp build given by
 * LLAMA_CPP_DIR (nothing of llama.cpp is in this repository).
 * usage: greedy_llama MODEL PROMPT N   -> one line per token: "id margin"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

int main(int argc, char **argv)
{
    struct llama_model_params mp;
    struct llama_context_params cp;
    struct llama_model *m;
    struct llama_context *c;
    const struct llama_vocab *v;
    llama_token toks[4096];
    struct llama_batch b;
    int n, n_gen, n_vocab;

    if (argc != 4) {
        fprintf(stderr, "usage: greedy_llama MODEL PROMPT N\n");
        return 2;
    }
    llama_backend_init();
    mp = llama_model_default_params();
    m = llama_model_load_from_file(argv[1], mp);
    if (m == NULL) return 1;
    v = llama_model_get_vocab(m);
    cp = llama_context_default_params();
    cp.n_ctx = 2048;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    c = llama_init_from_model(m, cp);
    n = llama_tokenize(v, argv[2], (int)strlen(argv[2]), toks, 1024, true, false);
    n_gen = atoi(argv[3]);
    n_vocab = llama_vocab_n_tokens(v);
    if (c == NULL || n < 0 || n_gen < 1 || n + n_gen > 4096) return 1;
    b = llama_batch_get_one(toks, n);
    for (int g = 0; g < n_gen; g++) {
        float *l;
        int best = 0, second = -1;

        if (llama_decode(c, b) != 0) return 1;
        l = llama_get_logits_ith(c, -1);
        for (int i = 1; i < n_vocab; i++)
            if (l[i] > l[best]) best = i;
        for (int i = 0; i < n_vocab; i++)
            if (i != best && (second < 0 || l[i] > l[second])) second = i;
        printf("%d %.6f\n", best, l[best] - l[second]);
        toks[n] = best;
        b = llama_batch_get_one(&toks[n], 1);
        n++;
    }
    llama_free(c);
    llama_model_free(m);
    return 0;
}
