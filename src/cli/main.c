/*
 * main.c - the slm command table (git.c's shape).
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/str.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    { "serve", cmd_serve, "run the OpenAI-compatible HTTPS server" },
    { "run", cmd_run, "generate text from a prompt with a GGUF model" },
    { "bench", cmd_bench, "measure prompt processing and generation speed" },
    { "tokenize", cmd_tokenize, "print the tokens of a text" },
    { "gguf", cmd_gguf, "inspect a GGUF file (info, --json)" },
    { "quantize", cmd_quantize, "convert a GGUF model to another tensor type" },
    { "mkmodel", cmd_mkmodel, "write a deterministic test model with random weights" },
    { "sandbox", cmd_sandbox, "run a command in an isolated sandbox" },
};

static void usage(FILE *out)
{
    fprintf(out, "usage: slm <command> [options] [args]\n"
                 "       slm --version | --help\n\ncommands:\n");
    for (size_t i = 0; i < SLM_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\nRun 'slm <command> --help' for the options of one command.\n"
                 "\nexit status: 0 ok, 1 runtime error, 2 usage error, 3 configuration error,\n"
                 "             4 permission or authentication error, 5 resource limit\n");
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "slm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'slm %s --help'.\n", cmd);
    return SLM_EXIT_USAGE;
}

int cli_fail(const char *cmd, int rc, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "slm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return slm_err_exit_code(rc);
}

int cli_fail_diag(const char *cmd, int rc, const struct slm_diag *d)
{
    const char *msg = (d != NULL && d->msg[0] != '\0') ? d->msg : slm_strerror(rc);

    fprintf(stderr, "slm %s: %s\n", cmd, msg);
    return slm_err_exit_code(rc);
}

int cli_parse_int(const char *cmd, const char *opt, const char *s, long long min, long long max,
                  long long *out)
{
    int64_t v;

    if (slm_parse_i64(s, &v) < 0 || v < min || v > max) {
        cli_usage_error(cmd, "%s wants an integer from %lld to %lld, got '%s'", opt, min, max, s);
        return SLM_EINVAL;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *s, double min, double max,
                    double *out)
{
    double v;

    if (slm_parse_double(s, &v) < 0 || v < min || v > max) {
        cli_usage_error(cmd, "%s wants a number from %g to %g, got '%s'", opt, min, max, s);
        return SLM_EINVAL;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return SLM_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return SLM_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("slm %s\n", SLM_VERSION);
        return SLM_EXIT_OK;
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            optind = 0; /* GNU getopt: reinitialise for the subcommand */
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "slm: '%s' is not a command\n", argv[1]);
    usage(stderr);
    return SLM_EXIT_USAGE;
}
