/*
 * cmd_run.c - slm run: generate text from a prompt (llama-cli's plain mode).
 *
 * Loads the model, tokenizes the prompt, runs it through the model in
 * batches of n_batch tokens, then samples one token at a time and streams
 * its text to stdout through tok_stream (whole UTF-8 characters only),
 * flushing after every token. Statistics go to stderr. SIGINT stops the
 * generation between two tokens; the text so far and the statistics are
 * still printed and the exit status is 130.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "core/str.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/sample.h"
#include "engine/tokenizer.h"

#define CMD "run"

/* Largest prompt file read with --file. */
#define RUN_PROMPT_FILE_MAX  (64u << 20)
/* Exit status after SIGINT (the shell's 128 + SIGINT). */
#define RUN_EXIT_INTERRUPTED 130

static volatile sig_atomic_t run_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    run_interrupted = 1;
}

struct run_opts {
    const char *model;
    const char *prompt;
    const char *file;
    long long n_predict;
    uint32_t n_threads, n_ctx, n_batch;
    struct sampler_params sp;
    long long repeat_last_n; /* -1: the context size */
    bool no_bos, ignore_eos, parse_special, display_prompt, show_special;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: slm run -m MODEL (-p PROMPT | -f FILE) [options]\n"
            "\n"
            "Generates text that continues PROMPT and streams it to stdout; statistics\n"
            "(load time, prompt and generation speed) go to stderr.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE          GGUF model\n"
            "  -p, --prompt TEXT         the prompt\n"
            "  -f, --file FILE           read the prompt from FILE\n"
            "  -n, --n-predict N         tokens to generate (default 128; -1: until the end of\n"
            "                            generation or a full context)\n"
            "  -t, --threads N           worker threads (default: physical cores)\n"
            "  -c, --ctx-size N          context size (default: the model's, at most 4096)\n"
            "  -b, --batch-size N        prompt tokens per forward pass (default 512)\n"
            "      --temp X              temperature (default 0.8; 0: greedy)\n"
            "      --top-k N             keep the N most likely tokens (default 40; 0: off)\n"
            "      --top-p X             nucleus sampling (default 0.95; 1: off)\n"
            "      --min-p X             drop tokens below X times the best (default 0.05)\n"
            "      --repeat-penalty X    penalise repeated tokens (default 1.0: off)\n"
            "      --repeat-last-n N     tokens the penalties look back on (default 64;\n"
            "                            0: off; -1: the context size)\n"
            "      --presence-penalty X  (default 0; -2 to 2)\n"
            "      --frequency-penalty X (default 0; -2 to 2)\n"
            "  -s, --seed N              sampling seed (default: random, printed on stderr)\n"
            "      --no-bos              do not add the model's begin-of-text token\n"
            "      --ignore-eos          keep generating after an end-of-generation token\n"
            "      --parse-special       turn control-token text in the prompt into tokens\n"
            "      --special             print control tokens as text\n"
            "      --no-display-prompt   do not echo the prompt before the generated text\n"
            "  -h, --help                this text\n"
            "\n"
            "exit status: 0 ok, 1 runtime error (bad model file, ...), 2 usage error,\n"
            "5 prompt does not fit the context, 130 interrupted (SIGINT).\n");
}

enum {
    OPT_TEMP = 256,
    OPT_TOP_K,
    OPT_TOP_P,
    OPT_MIN_P,
    OPT_REPEAT_PENALTY,
    OPT_REPEAT_LAST_N,
    OPT_PRESENCE_PENALTY,
    OPT_FREQUENCY_PENALTY,
    OPT_NO_BOS,
    OPT_IGNORE_EOS,
    OPT_PARSE_SPECIAL,
    OPT_SPECIAL,
    OPT_NO_DISPLAY_PROMPT,
};

static const struct option long_opts[] = {
    { "model", required_argument, NULL, 'm' },
    { "prompt", required_argument, NULL, 'p' },
    { "file", required_argument, NULL, 'f' },
    { "n-predict", required_argument, NULL, 'n' },
    { "threads", required_argument, NULL, 't' },
    { "ctx-size", required_argument, NULL, 'c' },
    { "batch-size", required_argument, NULL, 'b' },
    { "seed", required_argument, NULL, 's' },
    { "temp", required_argument, NULL, OPT_TEMP },
    { "top-k", required_argument, NULL, OPT_TOP_K },
    { "top-p", required_argument, NULL, OPT_TOP_P },
    { "min-p", required_argument, NULL, OPT_MIN_P },
    { "repeat-penalty", required_argument, NULL, OPT_REPEAT_PENALTY },
    { "repeat-last-n", required_argument, NULL, OPT_REPEAT_LAST_N },
    { "presence-penalty", required_argument, NULL, OPT_PRESENCE_PENALTY },
    { "frequency-penalty", required_argument, NULL, OPT_FREQUENCY_PENALTY },
    { "no-bos", no_argument, NULL, OPT_NO_BOS },
    { "ignore-eos", no_argument, NULL, OPT_IGNORE_EOS },
    { "parse-special", no_argument, NULL, OPT_PARSE_SPECIAL },
    { "special", no_argument, NULL, OPT_SPECIAL },
    { "no-display-prompt", no_argument, NULL, OPT_NO_DISPLAY_PROMPT },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* Parses a float option into *out; the sampler checks the range later. */
static int opt_float(const char *opt, const char *arg, double lo, double hi, float *out)
{
    double v;

    if (cli_parse_float(CMD, opt, arg, lo, hi, &v) < 0) return SLM_EINVAL;
    *out = (float)v;
    return 0;
}

static int opt_int(const char *opt, const char *arg, long long lo, long long hi, long long *out)
{
    return cli_parse_int(CMD, opt, arg, lo, hi, out) < 0 ? SLM_EINVAL : 0;
}

/* Parses argv into o; returns -1 after printing a usage error, 1 for --help, 0 ok. */
static int parse_opts(int argc, char **argv, struct run_opts *o)
{
    int opt;

    while ((opt = getopt_long(argc, argv, "m:p:f:n:t:c:b:s:h", long_opts, NULL)) != -1) {
        long long v = 0;
        int rc = 0;

        switch (opt) {
        case 'm':
            o->model = optarg;
            break;
        case 'p':
            o->prompt = optarg;
            break;
        case 'f':
            o->file = optarg;
            break;
        case 'n':
            rc = opt_int("-n", optarg, -1, SLM_LIMIT_CONTEXT, &o->n_predict);
            break;
        case 't':
            rc = opt_int("-t", optarg, 0, SLM_LIMIT_THREADS, &v);
            o->n_threads = (uint32_t)v;
            break;
        case 'c':
            rc = opt_int("-c", optarg, 0, SLM_LIMIT_CONTEXT, &v);
            o->n_ctx = (uint32_t)v;
            break;
        case 'b':
            rc = opt_int("-b", optarg, 1, SLM_LIMIT_CONTEXT, &v);
            o->n_batch = (uint32_t)v;
            break;
        case 's':
            rc = opt_int("--seed", optarg, 0, INT64_MAX, &v);
            o->sp.seed = (uint64_t)v;
            break;
        case OPT_TEMP:
            rc = opt_float("--temp", optarg, 0.0, 1e6, &o->sp.temp);
            break;
        case OPT_TOP_K:
            rc = opt_int("--top-k", optarg, 0, INT32_MAX, &v);
            o->sp.top_k = (int32_t)v;
            break;
        case OPT_TOP_P:
            rc = opt_float("--top-p", optarg, 0.0, 1.0, &o->sp.top_p);
            break;
        case OPT_MIN_P:
            rc = opt_float("--min-p", optarg, 0.0, 1.0, &o->sp.min_p);
            break;
        case OPT_REPEAT_PENALTY:
            rc = opt_float("--repeat-penalty", optarg, 1e-3, SAMPLER_PENALTY_MAX,
                           &o->sp.repeat_penalty);
            break;
        case OPT_REPEAT_LAST_N:
            rc = opt_int("--repeat-last-n", optarg, -1, SLM_LIMIT_CONTEXT, &o->repeat_last_n);
            break;
        case OPT_PRESENCE_PENALTY:
            rc = opt_float("--presence-penalty", optarg, -2.0, 2.0, &o->sp.presence_penalty);
            break;
        case OPT_FREQUENCY_PENALTY:
            rc = opt_float("--frequency-penalty", optarg, -2.0, 2.0, &o->sp.frequency_penalty);
            break;
        case OPT_NO_BOS:
            o->no_bos = true;
            break;
        case OPT_IGNORE_EOS:
            o->ignore_eos = true;
            break;
        case OPT_PARSE_SPECIAL:
            o->parse_special = true;
            break;
        case OPT_SPECIAL:
            o->show_special = true;
            break;
        case OPT_NO_DISPLAY_PROMPT:
            o->display_prompt = false;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            cli_usage_error(CMD, "unknown option or missing value");
            return -1;
        }
        if (rc < 0) return -1;
    }
    if (optind < argc) {
        cli_usage_error(CMD, "unexpected argument '%s' (quote the prompt: -p \"...\")",
                        argv[optind]);
        return -1;
    }
    if (o->model == NULL) {
        cli_usage_error(CMD, "missing -m MODEL");
        return -1;
    }
    if ((o->prompt == NULL) == (o->file == NULL)) {
        cli_usage_error(CMD, "give the prompt with exactly one of -p TEXT or -f FILE");
        return -1;
    }
    return 0;
}

/* Reads the prompt file into *out (returns new, NUL-terminated). */
static int read_prompt_file(const char *path, char **out, size_t *len)
{
    struct slm_buf b;
    char chunk[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0) {
        rc = slm_err_from_errno(errno);
        cli_fail(CMD, rc, "-f %s: %s", path, strerror(errno));
        return rc;
    }
    slm_buf_init(&b, RUN_PROMPT_FILE_MAX);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = slm_err_from_errno(errno);
            cli_fail(CMD, rc, "-f %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        rc = slm_buf_append(&b, chunk, (size_t)n);
        if (rc < 0) {
            cli_fail(CMD, rc, "-f %s: larger than %u bytes", path, RUN_PROMPT_FILE_MAX);
            break;
        }
    }
    close(fd);
    if (rc < 0) {
        slm_buf_fini(&b);
        return rc;
    }
    *out = slm_buf_take(&b, len);
    if (*out == NULL) {
        *out = slm_xstrdup("");
        *len = 0;
    }
    return 0;
}

/* Writes b to stdout and empties it. */
static void emit(struct slm_buf *b)
{
    if (b->len > 0) {
        fwrite(b->data, 1, b->len, stdout);
        slm_buf_reset(b);
    }
    fflush(stdout);
}

/* Prints one statistics line in llama-cli's shape. */
static void print_stat(const char *what, uint64_t ns, size_t n_tokens, bool per_token)
{
    double ms = (double)ns / 1e6;

    if (!per_token) {
        fprintf(stderr, "slm run: %-12s = %10.2f ms\n", what, ms);
        return;
    }
    fprintf(stderr,
            "slm run: %-12s = %10.2f ms / %5zu tokens (%8.2f ms per token, %8.2f tokens per "
            "second)\n",
            what, ms, n_tokens, n_tokens > 0 ? ms / (double)n_tokens : 0.0,
            ns > 0 ? (double)n_tokens * 1e9 / (double)ns : 0.0);
}

/*
 * Feeds tokens[0..n) to sequence 0 from position 0 in batches of n_batch,
 * asking for the logits of the last one only.
 */
static int run_prompt(struct model_context *c, const tok_id *tokens, size_t n, uint32_t n_batch,
                      struct slm_diag *d)
{
    int32_t *pos = slm_xcalloc(n_batch, sizeof(*pos));
    int32_t *seq = slm_xcalloc(n_batch, sizeof(*seq));
    bool *want = slm_xcalloc(n_batch, sizeof(*want));
    int rc = 0;

    for (size_t i0 = 0; i0 < n && rc == 0; i0 += n_batch) {
        size_t nb = n - i0 < n_batch ? n - i0 : n_batch;
        struct model_batch b = { nb, tokens + i0, pos, seq, want };

        if (run_interrupted) {
            rc = SLM_ECANCELED;
            break;
        }
        for (size_t i = 0; i < nb; i++) {
            pos[i] = (int32_t)(i0 + i);
            want[i] = i0 + i == n - 1;
        }
        rc = model_decode(c, &b, d);
    }
    slm_free(pos);
    slm_free(seq);
    slm_free(want);
    return rc;
}

struct run_stats {
    uint64_t t_load, t_prompt, t_gen;
    size_t n_prompt, n_gen;
};

/*
 * Samples and streams up to n_predict tokens (-1: no limit) after a prompt of
 * n_past tokens. Stops at an end-of-generation token (unless ignore_eos), a
 * full context or SIGINT.
 */
static int generate(const struct run_opts *o, struct model_context *c, const struct tokenizer *tok,
                    struct sampler *smp, size_t n_past, struct run_stats *st, struct slm_diag *d)
{
    const uint32_t n_ctx = model_context_n_ctx(c);
    struct tok_stream ts;
    struct slm_buf out;
    uint64_t t0 = slm_now_ns();
    int rc = 0;

    tok_stream_init(&ts, tok, o->show_special);
    slm_buf_init(&out, SLM_LIMIT_TOKEN_BYTES * 4);
    while (o->n_predict < 0 || st->n_gen < (size_t)o->n_predict) {
        const float *logits = model_logits(c, 0);
        tok_id id;
        int32_t pos = (int32_t)n_past;
        bool want = true, eog;
        int32_t seq = 0;
        struct model_batch b = { 1, &id, &pos, &seq, &want };

        if (run_interrupted) {
            rc = SLM_ECANCELED;
            break;
        }
        if (logits == NULL) {
            rc = slm_diag_set(d, SLM_EINTERNAL, "the model returned no logits");
            break;
        }
        id = sampler_sample(smp, logits);
        sampler_accept(smp, id);
        eog = tokenizer_is_eog(tok, id);
        if (eog && !o->ignore_eos) break;
        st->n_gen++;
        rc = tok_stream_push(&ts, id, &out);
        if (rc < 0) {
            slm_diag_set(d, rc, "cannot detokenize token %d", (int)id);
            break;
        }
        emit(&out);
        if (o->n_predict >= 0 && st->n_gen >= (size_t)o->n_predict) break;
        if (n_past >= n_ctx) {
            fprintf(stderr, "\nslm run: context full (%u tokens); stopping\n", n_ctx);
            break;
        }
        rc = model_decode(c, &b, d);
        if (rc < 0) break;
        n_past++;
    }
    if (tok_stream_flush(&ts, &out) == 0) emit(&out);
    slm_buf_fini(&out);
    st->t_gen = slm_now_ns() - t0;
    return rc;
}

/* slm run: see usage(). */
int cmd_run(int argc, char **argv)
{
    struct run_opts o = { 0 };
    struct slm_diag d;
    struct model *m = NULL;
    struct model_context *c = NULL;
    struct model_context_params cp = model_context_params_default();
    struct sampler *smp = NULL;
    struct run_stats st = { 0 };
    struct sigaction sa, old_sa;
    const struct tokenizer *tok;
    char *prompt = NULL;
    size_t prompt_len = 0, n_tok = 0;
    tok_id *tokens = NULL;
    uint64_t t0, t_start = slm_now_ns();
    unsigned flags;
    int rc, exit_code = SLM_EXIT_OK;

    slm_diag_clear(&d);
    o.n_predict = 128;
    o.display_prompt = true;
    o.sp = sampler_params_default();
    o.repeat_last_n = o.sp.repeat_last_n;
    rc = parse_opts(argc, argv, &o);
    if (rc != 0) return rc > 0 ? SLM_EXIT_OK : SLM_EXIT_USAGE;
    /* The sampler's own check names the field (T07); -1 is resolved below. */
    o.sp.repeat_last_n = o.repeat_last_n < 0 ? 0 : (int32_t)o.repeat_last_n;
    if (sampler_params_check(&o.sp, &d) < 0) return cli_usage_error(CMD, "%s", d.msg);

    if (o.file != NULL) {
        if (read_prompt_file(o.file, &prompt, &prompt_len) < 0) return SLM_EXIT_RUNTIME;
    } else {
        prompt_len = strlen(o.prompt);
    }

    t0 = slm_now_ns();
    rc = model_load(o.model, &m, &d);
    if (rc < 0) {
        exit_code = cli_fail_diag(CMD, rc, &d);
        goto out;
    }
    cp.n_ctx = o.n_ctx;
    cp.n_threads = o.n_threads;
    if (o.n_batch > 0) cp.n_batch = o.n_batch;
    rc = model_context_new(m, &cp, &c, &d);
    if (rc < 0) {
        exit_code = cli_fail_diag(CMD, rc, &d);
        goto out;
    }
    st.t_load = slm_now_ns() - t0;
    tok = model_get_tokenizer(m);

    /* Tokenize: count first (cap 0), then fill. */
    flags = (o.no_bos ? 0u : (unsigned)TOKENIZE_ADD_SPECIAL) |
            (o.parse_special ? (unsigned)TOKENIZE_PARSE_SPECIAL : 0u);
    {
        const char *text = prompt != NULL ? prompt : o.prompt;

        rc = tokenizer_encode(tok, text, prompt_len, flags, NULL, 0, &n_tok);
        if (rc == 0 && n_tok > 0) {
            tokens = slm_xcalloc(n_tok, sizeof(*tokens));
            rc = tokenizer_encode(tok, text, prompt_len, flags, tokens, n_tok, &n_tok);
        }
        if (rc < 0) {
            exit_code = cli_fail(CMD, rc, "cannot tokenize the prompt: %s", slm_strerror(rc));
            goto out;
        }
    }
    if (n_tok == 0) {
        exit_code = cli_usage_error(CMD, "the prompt is empty (and the model adds no BOS token)");
        goto out;
    }
    if (n_tok > model_context_n_ctx(c)) {
        exit_code = cli_fail(CMD, SLM_ELIMIT,
                             "the prompt has %zu tokens, more than the context size of %u; "
                             "shorten it or raise -c (the model was trained with %u)",
                             n_tok, model_context_n_ctx(c), model_get_hparams(m)->n_ctx_train);
        goto out;
    }

    o.sp.repeat_last_n =
        o.repeat_last_n < 0 ? (int32_t)model_context_n_ctx(c) : (int32_t)o.repeat_last_n;
    smp = sampler_new(&o.sp, tokenizer_n_vocab(tok));
    if (smp == NULL) {
        exit_code = cli_fail(CMD, SLM_ENOMEM, "cannot create the sampler: out of memory");
        goto out;
    }
    fprintf(stderr, "slm run: %s, %u threads (%s kernels), context %u, seed %llu\n",
            model_describe(m), model_context_n_threads(c), kernels_get()->name,
            model_context_n_ctx(c), (unsigned long long)sampler_get_seed(smp));

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);

    if (o.display_prompt) {
        fwrite(prompt != NULL ? prompt : o.prompt, 1, prompt_len, stdout);
        fflush(stdout);
    }
    t0 = slm_now_ns();
    rc = run_prompt(c, tokens, n_tok, cp.n_batch, &d);
    st.t_prompt = slm_now_ns() - t0;
    st.n_prompt = n_tok;
    for (size_t i = 0; i < n_tok; i++)
        sampler_accept(smp, tokens[i]);
    if (rc == 0) rc = generate(&o, c, tok, smp, n_tok, &st, &d);
    sigaction(SIGINT, &old_sa, NULL);
    fputc('\n', stdout);
    fflush(stdout);
    if (rc == SLM_ECANCELED) {
        fprintf(stderr, "slm run: interrupted\n");
        exit_code = RUN_EXIT_INTERRUPTED;
    } else if (rc < 0) {
        exit_code = cli_fail_diag(CMD, rc, &d);
    }
    fputc('\n', stderr);
    print_stat("load time", st.t_load, 0, false);
    print_stat("prompt eval", st.t_prompt, st.n_prompt, true);
    print_stat("generation", st.t_gen, st.n_gen, true);
    print_stat("total time", slm_now_ns() - t_start, st.n_prompt + st.n_gen, true);
out:
    sampler_free(smp);
    slm_free(tokens);
    model_context_free(c);
    model_free(m);
    slm_free(prompt);
    return exit_code;
}
