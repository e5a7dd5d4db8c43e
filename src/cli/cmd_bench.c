/*
 * cmd_bench.c - slm bench: prompt-processing and generation speed, in
 * llama-bench's shape (same tests, same table, same JSON field names), so
 * the scripts that read llama-bench's output read ours.
 *
 * A "pp" test feeds -p random tokens in batches of n_batch and times the
 * whole prompt; a "tg" test generates -n tokens one forward pass at a time.
 * With -d DEPTH, DEPTH tokens are put in the cache first (not timed). Every
 * test runs once to warm up and then -r times; the table shows the mean and
 * the sample standard deviation of tokens per second. Flags take
 * comma-separated lists (-p 128,512 -t 1,2) and every combination is run.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/rand.h"
#include "core/str.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

#define CMD "bench"

/* Values one list flag may carry, and repetitions. */
#define BENCH_LIST_MAX 16
#define BENCH_REPS_MAX 1000

struct int_list {
    size_t n;
    uint32_t v[BENCH_LIST_MAX];
};

struct bench_opts {
    const char *model;
    struct int_list n_prompt, n_gen, n_depth, n_threads;
    uint32_t n_batch;
    uint32_t reps;
    bool json, warmup, progress;
};

struct bench_result {
    uint32_t n_prompt, n_gen, n_depth, n_threads, n_batch;
    char test_time[32];
    uint64_t samples_ns[BENCH_REPS_MAX];
    size_t n_samples;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: slm bench -m MODEL [options]\n"
                 "\n"
                 "Measures prompt processing (pp) and text generation (tg) speed like\n"
                 "llama-bench. List flags take comma-separated values; every combination runs.\n"
                 "\n"
                 "options:\n"
                 "  -m, --model FILE        GGUF model\n"
                 "  -p, --n-prompt LIST     prompt tokens per pp test (default 512; 0: none)\n"
                 "  -n, --n-gen LIST        generated tokens per tg test (default 128; 0: none)\n"
                 "  -d, --n-depth LIST      tokens already in the context (default 0)\n"
                 "  -t, --threads LIST      worker threads (default: physical cores)\n"
                 "  -b, --batch-size N      prompt tokens per forward pass (default 512)\n"
                 "  -r, --repetitions N     timed runs per test (default 5)\n"
                 "  -o, --output md|json    markdown table (default) or a JSON array\n"
                 "      --json              same as -o json\n"
                 "      --no-warmup         skip the untimed warm-up run\n"
                 "      --progress          print progress to stderr\n"
                 "  -h, --help              this text\n"
                 "\n"
                 "The JSON objects carry llama-bench's field names (model_type, n_prompt,\n"
                 "n_gen, n_depth, avg_ts, stddev_ts, samples_ns, ...).\n");
}

/* Parses "512" or "128,512" into l (values in [lo, hi]); usage error otherwise. */
static int parse_list(const char *opt, const char *arg, long long lo, long long hi,
                      struct int_list *l)
{
    char item[32];
    const char *p = arg;

    l->n = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        long long v;

        if (len == 0 || len >= sizeof(item)) {
            cli_usage_error(CMD, "%s wants comma-separated integers, got '%s'", opt, arg);
            return SLM_EINVAL;
        }
        if (l->n == BENCH_LIST_MAX) {
            cli_usage_error(CMD, "%s takes at most %d values", opt, BENCH_LIST_MAX);
            return SLM_EINVAL;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (cli_parse_int(CMD, opt, item, lo, hi, &v) < 0) return SLM_EINVAL;
        l->v[l->n++] = (uint32_t)v;
        if (comma == NULL) return 0;
        p = comma + 1;
    }
}

enum { OPT_JSON = 256, OPT_NO_WARMUP, OPT_PROGRESS };

static const struct option long_opts[] = {
    { "model", required_argument, NULL, 'm' },
    { "n-prompt", required_argument, NULL, 'p' },
    { "n-gen", required_argument, NULL, 'n' },
    { "n-depth", required_argument, NULL, 'd' },
    { "threads", required_argument, NULL, 't' },
    { "batch-size", required_argument, NULL, 'b' },
    { "repetitions", required_argument, NULL, 'r' },
    { "output", required_argument, NULL, 'o' },
    { "json", no_argument, NULL, OPT_JSON },
    { "no-warmup", no_argument, NULL, OPT_NO_WARMUP },
    { "progress", no_argument, NULL, OPT_PROGRESS },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* Returns 0, 1 after --help, or -1 after a usage error. */
static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
    int opt;

    while ((opt = getopt_long(argc, argv, "m:p:n:d:t:b:r:o:h", long_opts, NULL)) != -1) {
        long long v;
        int rc = 0;

        switch (opt) {
        case 'm':
            o->model = optarg;
            break;
        case 'p':
            rc = parse_list("-p", optarg, 0, SLM_LIMIT_CONTEXT, &o->n_prompt);
            break;
        case 'n':
            rc = parse_list("-n", optarg, 0, SLM_LIMIT_CONTEXT, &o->n_gen);
            break;
        case 'd':
            rc = parse_list("-d", optarg, 0, SLM_LIMIT_CONTEXT, &o->n_depth);
            break;
        case 't':
            rc = parse_list("-t", optarg, 1, SLM_LIMIT_THREADS, &o->n_threads);
            break;
        case 'b':
            rc = cli_parse_int(CMD, "-b", optarg, 1, SLM_LIMIT_CONTEXT, &v);
            o->n_batch = (uint32_t)v;
            break;
        case 'r':
            rc = cli_parse_int(CMD, "-r", optarg, 1, BENCH_REPS_MAX, &v);
            o->reps = (uint32_t)v;
            break;
        case 'o':
            if (strcmp(optarg, "json") == 0) {
                o->json = true;
            } else if (strcmp(optarg, "md") == 0) {
                o->json = false;
            } else {
                cli_usage_error(CMD, "-o wants md or json, got '%s'", optarg);
                return -1;
            }
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_NO_WARMUP:
            o->warmup = false;
            break;
        case OPT_PROGRESS:
            o->progress = true;
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
        cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (o->model == NULL) {
        cli_usage_error(CMD, "missing -m MODEL");
        return -1;
    }
    return 0;
}

/* ---- running the tests ---- */

struct bench_run {
    struct model *m;
    struct model_context *c;
    const struct tokenizer *tok;
    struct slm_rng rng;
    tok_id *tokens;
    int32_t *pos, *seq;
    bool *want;
    uint32_t n_batch;
};

/* A random token, or BOS for the first token of a sequence if the model adds one. */
static tok_id bench_token(struct bench_run *r, bool first)
{
    tok_id bos = tokenizer_bos(r->tok);

    if (first && bos != TOK_NONE) return bos;
    return (tok_id)slm_rng_below(&r->rng, tokenizer_n_vocab(r->tok));
}

/* Feeds n random tokens after the n_past cached ones (llama-bench's test_prompt). */
static int bench_prompt(struct bench_run *r, uint32_t n_past, uint32_t n, struct slm_diag *d)
{
    for (uint32_t done = 0; done < n;) {
        uint32_t nb = n - done < r->n_batch ? n - done : r->n_batch;
        struct model_batch b = { nb, r->tokens, r->pos, r->seq, r->want };
        int rc;

        for (uint32_t i = 0; i < nb; i++) {
            r->tokens[i] = bench_token(r, n_past + done + i == 0);
            r->pos[i] = (int32_t)(n_past + done + i);
            r->seq[i] = 0;
            r->want[i] = i == nb - 1;
        }
        rc = model_decode(r->c, &b, d);
        if (rc < 0) return rc;
        done += nb;
    }
    return 0;
}

/* Generates n tokens one forward pass at a time (llama-bench's test_gen). */
static int bench_gen(struct bench_run *r, uint32_t n_past, uint32_t n, struct slm_diag *d)
{
    for (uint32_t i = 0; i < n; i++) {
        tok_id t = bench_token(r, n_past + i == 0);
        int32_t pos = (int32_t)(n_past + i), seq = 0;
        bool want = true;
        struct model_batch b = { 1, &t, &pos, &seq, &want };
        int rc = model_decode(r->c, &b, d);

        if (rc < 0) return rc;
    }
    return 0;
}

/* Runs one test (warm-up plus reps timed runs) into res. */
static int bench_test(struct bench_run *r, const struct bench_opts *o, struct bench_result *res,
                      struct slm_diag *d)
{
    struct model_context_params cp = model_context_params_default();
    uint64_t n_ctx = (uint64_t)res->n_prompt + res->n_gen + res->n_depth;
    struct timespec now;
    struct tm tm;
    int rc;

    if (n_ctx > SLM_LIMIT_CONTEXT)
        return slm_diag_set(d, SLM_ELIMIT, "-p + -n + -d = %llu tokens exceeds the limit of %u",
                            (unsigned long long)n_ctx, SLM_LIMIT_CONTEXT);
    cp.n_ctx = n_ctx > 0 ? (uint32_t)n_ctx : 1;
    cp.n_threads = res->n_threads;
    cp.n_batch = r->n_batch;
    rc = model_context_new(r->m, &cp, &r->c, d);
    if (rc < 0) return rc;
    res->n_threads = model_context_n_threads(r->c);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(res->test_time, sizeof(res->test_time), "%Y-%m-%dT%H:%M:%SZ", &tm);

    /* The depth is prefilled once; every run then drops what came after it
     * (as llama-bench restores its saved state), so -r costs no prefills. */
    if (res->n_depth > 0) {
        if (o->progress)
            fprintf(stderr, "slm bench: pp%u tg%u t%u: prefilling depth %u\n", res->n_prompt,
                    res->n_gen, res->n_threads, res->n_depth);
        rc = bench_prompt(r, 0, res->n_depth, d);
    }
    if (rc == 0 && o->warmup) {
        if (res->n_prompt > 0) rc = bench_prompt(r, res->n_depth, res->n_prompt, d);
        if (rc == 0 && res->n_gen > 0) rc = bench_gen(r, res->n_depth, 1, d);
    }
    for (uint32_t i = 0; rc == 0 && i < o->reps; i++) {
        uint64_t t0;

        model_seq_rm(r->c, 0, (int32_t)res->n_depth, -1);
        if (o->progress)
            fprintf(stderr, "slm bench: pp%u tg%u d%u t%u: run %u/%u\n", res->n_prompt, res->n_gen,
                    res->n_depth, res->n_threads, i + 1, o->reps);
        t0 = slm_now_ns();
        if (res->n_prompt > 0) rc = bench_prompt(r, res->n_depth, res->n_prompt, d);
        if (rc == 0 && res->n_gen > 0)
            rc = bench_gen(r, res->n_depth + res->n_prompt, res->n_gen, d);
        res->samples_ns[res->n_samples++] = slm_now_ns() - t0;
    }
    model_context_free(r->c);
    r->c = NULL;
    return rc;
}

/* ---- statistics and output ---- */

/* Tokens per second of sample i. */
static double sample_ts(const struct bench_result *res, size_t i)
{
    double ns = (double)res->samples_ns[i];

    return ns > 0 ? 1e9 * (double)(res->n_prompt + res->n_gen) / ns : 0.0;
}

/* Mean and sample standard deviation (n - 1), as llama-bench computes them. */
static void mean_sd(const double *v, size_t n, double *mean, double *sd)
{
    double sum = 0.0, sq = 0.0;

    for (size_t i = 0; i < n; i++)
        sum += v[i];
    *mean = n > 0 ? sum / (double)n : 0.0;
    *sd = 0.0;
    if (n <= 1) return;
    for (size_t i = 0; i < n; i++)
        sq += (v[i] - *mean) * (v[i] - *mean);
    *sd = sqrt(sq / (double)(n - 1));
}

static void result_stats(const struct bench_result *res, double *avg_ns, double *sd_ns,
                         double *avg_ts, double *sd_ts)
{
    double ns[BENCH_REPS_MAX], ts[BENCH_REPS_MAX];

    for (size_t i = 0; i < res->n_samples; i++) {
        ns[i] = (double)res->samples_ns[i];
        ts[i] = sample_ts(res, i);
    }
    mean_sd(ns, res->n_samples, avg_ns, sd_ns);
    mean_sd(ts, res->n_samples, avg_ts, sd_ts);
}

/* The CPU's model name from /proc/cpuinfo, or "unknown". */
static void cpu_info(char *buf, size_t cap)
{
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "re");

    snprintf(buf, cap, "unknown");
    if (f == NULL) return;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');

        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            char *v = colon + 1;
            size_t len;

            while (*v == ' ' || *v == '\t')
                v++;
            len = strcspn(v, "\n");
            snprintf(buf, cap, "%.*s", (int)len, v);
            break;
        }
    }
    fclose(f);
}

/* "pp512", "tg128", "pp512+tg128", with " @ d4096" for a depth. */
static void test_name(const struct bench_result *res, char *buf, size_t cap)
{
    int n;

    if (res->n_gen == 0)
        n = snprintf(buf, cap, "pp%u", res->n_prompt);
    else if (res->n_prompt == 0)
        n = snprintf(buf, cap, "tg%u", res->n_gen);
    else
        n = snprintf(buf, cap, "pp%u+tg%u", res->n_prompt, res->n_gen);
    if (res->n_depth > 0 && n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, " @ d%u", res->n_depth);
}

/* llama-bench's markdown table: the header. */
static void print_markdown_header(void)
{
    printf("| %-30s | %10s | %10s | %-10s | %7s | %15s | %20s |\n", "model", "size", "params",
           "backend", "threads", "test", "t/s");
    printf("| %s- | %s: | %s: | %s- | %s: | %s: | %s: |\n", "-----------------------------",
           "---------", "---------", "---------", "------", "--------------",
           "-------------------");
    fflush(stdout);
}

/* One row of the table (llama-bench's units: MiB/GiB, M/B). */
static void print_markdown_row(const struct model *m, const struct bench_result *res)
{
    uint64_t size = model_weight_bytes(m), n_params = model_n_params(m);
    char size_s[32], params_s[32], test[48], ts[48];
    double avg_ns, sd_ns, avg_ts, sd_ts;

    if (size < 1024ull * 1024 * 1024)
        snprintf(size_s, sizeof(size_s), "%.2f MiB", (double)size / 1024.0 / 1024.0);
    else
        snprintf(size_s, sizeof(size_s), "%.2f GiB", (double)size / 1024.0 / 1024.0 / 1024.0);
    if (n_params < 1000000000ull)
        snprintf(params_s, sizeof(params_s), "%.2f M", (double)n_params / 1e6);
    else
        snprintf(params_s, sizeof(params_s), "%.2f B", (double)n_params / 1e9);
    result_stats(res, &avg_ns, &sd_ns, &avg_ts, &sd_ts);
    test_name(res, test, sizeof(test));
    snprintf(ts, sizeof(ts), "%.2f \xc2\xb1 %.2f", avg_ts, sd_ts);
    /* The '±' takes two bytes but one column (llama-bench's width + 1). */
    printf("| %-30s | %10s | %10s | %-10s | %7u | %15s | %21s |\n", model_describe(m), size_s,
           params_s, "CPU", res->n_threads, test, ts);
    fflush(stdout);
}

/* An array of objects with llama-bench's field names and types. */
static int print_json(const struct model *m, const char *path, const struct bench_result *res,
                      size_t n_res)
{
    struct slm_buf b;
    struct json_writer w;
    char cpu[256];
    int rc;

    cpu_info(cpu, sizeof(cpu));
    slm_buf_init(&b, SLM_LIMIT_CLI_OUTPUT);
    json_writer_init(&w, &b, true);
    json_arr_begin(&w);
    for (size_t i = 0; i < n_res; i++) {
        const struct bench_result *r = &res[i];
        double avg_ns, sd_ns, avg_ts, sd_ts;

        result_stats(r, &avg_ns, &sd_ns, &avg_ts, &sd_ts);
        json_obj_begin(&w);
        json_key(&w, "build_commit");
        json_cstr(&w, SLM_VERSION);
        json_key(&w, "build_number");
        json_int(&w, 0);
        json_key(&w, "cpu_info");
        json_cstr(&w, cpu);
        json_key(&w, "gpu_info");
        json_cstr(&w, "");
        json_key(&w, "backends");
        json_cstr(&w, "CPU");
        json_key(&w, "kernels");
        json_cstr(&w, kernels_get()->name);
        json_key(&w, "model_filename");
        json_cstr(&w, path);
        json_key(&w, "model_type");
        json_cstr(&w, model_describe(m));
        json_key(&w, "model_size");
        json_uint(&w, model_weight_bytes(m));
        json_key(&w, "model_n_params");
        json_uint(&w, model_n_params(m));
        json_key(&w, "n_batch");
        json_uint(&w, r->n_batch);
        json_key(&w, "n_ubatch");
        json_uint(&w, r->n_batch);
        json_key(&w, "n_threads");
        json_uint(&w, r->n_threads);
        json_key(&w, "type_k");
        json_cstr(&w, "f16");
        json_key(&w, "type_v");
        json_cstr(&w, "f16");
        json_key(&w, "n_gpu_layers");
        json_int(&w, 0);
        json_key(&w, "flash_attn");
        json_int(&w, 0);
        json_key(&w, "n_prompt");
        json_uint(&w, r->n_prompt);
        json_key(&w, "n_gen");
        json_uint(&w, r->n_gen);
        json_key(&w, "n_depth");
        json_uint(&w, r->n_depth);
        json_key(&w, "test_time");
        json_cstr(&w, r->test_time);
        json_key(&w, "avg_ns");
        json_uint(&w, (uint64_t)llround(avg_ns));
        json_key(&w, "stddev_ns");
        json_uint(&w, (uint64_t)llround(sd_ns));
        json_key(&w, "avg_ts");
        json_double(&w, avg_ts);
        json_key(&w, "stddev_ts");
        json_double(&w, sd_ts);
        json_key(&w, "samples_ns");
        json_arr_begin(&w);
        for (size_t j = 0; j < r->n_samples; j++)
            json_uint(&w, r->samples_ns[j]);
        json_arr_end(&w);
        json_key(&w, "samples_ts");
        json_arr_begin(&w);
        for (size_t j = 0; j < r->n_samples; j++)
            json_double(&w, sample_ts(r, j));
        json_arr_end(&w);
        json_obj_end(&w);
    }
    json_arr_end(&w);
    rc = json_writer_finish(&w);
    if (rc == 0) {
        fwrite(b.data, 1, b.len, stdout);
        fputc('\n', stdout);
    }
    slm_buf_fini(&b);
    return rc;
}

/* slm bench: see usage(). */
int cmd_bench(int argc, char **argv)
{
    struct bench_opts o = { 0 };
    struct bench_run r = { 0 };
    struct bench_result *res = NULL;
    struct slm_diag d;
    size_t n_res = 0, cap_res;
    uint32_t max_batch = 1;
    int rc, exit_code = SLM_EXIT_OK;

    slm_diag_clear(&d);
    o.n_prompt = (struct int_list){ 1, { 512 } };
    o.n_gen = (struct int_list){ 1, { 128 } };
    o.n_depth = (struct int_list){ 1, { 0 } };
    o.n_threads = (struct int_list){ 1, { 0 } };
    o.n_batch = 512;
    o.reps = 5;
    o.warmup = true;
    rc = parse_opts(argc, argv, &o);
    if (rc != 0) return rc > 0 ? SLM_EXIT_OK : SLM_EXIT_USAGE;

    /* llama-bench's instances: every pp value, then every tg value, per threads and depth. */
    cap_res = (o.n_prompt.n + o.n_gen.n) * o.n_depth.n * o.n_threads.n;
    res = slm_xcalloc(cap_res, sizeof(*res));
    for (size_t ti = 0; ti < o.n_threads.n; ti++) {
        for (size_t di = 0; di < o.n_depth.n; di++) {
            for (size_t k = 0; k < o.n_prompt.n + o.n_gen.n; k++) {
                struct bench_result *x = &res[n_res];
                bool pp = k < o.n_prompt.n;
                uint32_t v = pp ? o.n_prompt.v[k] : o.n_gen.v[k - o.n_prompt.n];

                if (v == 0) continue;
                x->n_prompt = pp ? v : 0;
                x->n_gen = pp ? 0 : v;
                x->n_depth = o.n_depth.v[di];
                x->n_threads = o.n_threads.v[ti];
                x->n_batch = o.n_batch;
                n_res++;
            }
        }
    }
    if (n_res == 0) {
        slm_free(res);
        return cli_usage_error(CMD, "nothing to run: -p and -n are both 0");
    }

    rc = model_load(o.model, &r.m, &d);
    if (rc < 0) {
        exit_code = cli_fail_diag(CMD, rc, &d);
        goto out;
    }
    r.tok = model_get_tokenizer(r.m);
    r.n_batch = o.n_batch;
    slm_rng_seed(&r.rng, 1234);
    for (size_t i = 0; i < n_res; i++) {
        uint32_t need = res[i].n_prompt > res[i].n_depth ? res[i].n_prompt : res[i].n_depth;

        if (need > max_batch) max_batch = need;
    }
    if (max_batch > r.n_batch) max_batch = r.n_batch;
    r.tokens = slm_xcalloc(max_batch, sizeof(*r.tokens));
    r.pos = slm_xcalloc(max_batch, sizeof(*r.pos));
    r.seq = slm_xcalloc(max_batch, sizeof(*r.seq));
    r.want = slm_xcalloc(max_batch, sizeof(*r.want));
    r.n_batch = max_batch;

    if (!o.json) {
        /* The table streams row by row, as llama-bench's does. */
        print_markdown_header();
        for (size_t i = 0; i < n_res && rc == 0; i++) {
            rc = bench_test(&r, &o, &res[i], &d);
            if (rc == 0) print_markdown_row(r.m, &res[i]);
        }
        if (rc == 0) printf("\nbuild: %s (%s kernels)\n", SLM_VERSION, kernels_get()->name);
    } else {
        for (size_t i = 0; i < n_res && rc == 0; i++)
            rc = bench_test(&r, &o, &res[i], &d);
        if (rc == 0) rc = print_json(r.m, o.model, res, n_res);
    }
    if (rc < 0) exit_code = cli_fail_diag(CMD, rc, &d);
out:
    slm_free(r.tokens);
    slm_free(r.pos);
    slm_free(r.seq);
    slm_free(r.want);
    model_free(r.m);
    slm_free(res);
    return exit_code;
}
