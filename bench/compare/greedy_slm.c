/*
 * greedy_slm.c - greedy token ids from our engine, for bench/compare.sh:
 * the same loop as greedy_llama.c over model_decode.
 * usage: greedy_slm MODEL PROMPT N   -> one line per token: "id margin"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"

int main(int argc, char **argv)
{
    struct model *m;
    struct model_context *c;
    struct model_context_params p = model_context_params_default();
    struct slm_diag d = { 0 };
    const struct tokenizer *t;
    tok_id toks[4096];
    size_t n, start = 0;
    int n_gen, n_vocab;

    if (argc != 4) {
        fprintf(stderr, "usage: greedy_slm MODEL PROMPT N\n");
        return 2;
    }
    if (model_load(argv[1], &m, &d) < 0) {
        fprintf(stderr, "%s\n", d.msg);
        return 1;
    }
    p.n_ctx = 2048;
    p.n_threads = 2;
    if (model_context_new(m, &p, &c, &d) < 0) {
        fprintf(stderr, "%s\n", d.msg);
        return 1;
    }
    t = model_get_tokenizer(m);
    n_gen = atoi(argv[3]);
    n_vocab = (int)tokenizer_n_vocab(t);
    if (tokenizer_encode(t, argv[2], strlen(argv[2]), TOKENIZE_ADD_SPECIAL, toks, 1024, &n) < 0 ||
        n > 1024 || n_gen < 1)
        return 1;
    for (int g = 0; g < n_gen; g++) {
        struct model_batch b = { n - start, toks + start, NULL, NULL, NULL };
        const float *l;
        int best = 0, second = -1;

        if (model_decode(c, &b, &d) < 0) {
            fprintf(stderr, "%s\n", d.msg);
            return 1;
        }
        l = model_logits(c, 0);
        for (int i = 1; i < n_vocab; i++)
            if (l[i] > l[best]) best = i;
        for (int i = 0; i < n_vocab; i++)
            if (i != best && (second < 0 || l[i] > l[second])) second = i;
        printf("%d %.6f\n", best, l[best] - l[second]);
        start = n;
        toks[n++] = best;
    }
    model_context_free(c);
    model_free(m);
    return 0;
}
