/*
 * cli.h - the subcommands of slm and the helpers they share.
 *
 * Every cmd_* takes the arguments after "slm" (argv[0] is the subcommand's
 * name), parses them with getopt_long, prints usage to stdout for --help
 * (exit 0) and to stderr on misuse (exit 2), and returns the process exit
 * code of STYLE.md 5.7.
 */
#pragma once

#include "core/err.h"

#define SLM_VERSION "0.1.0"

int cmd_serve(int argc, char **argv);
int cmd_gguf(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_sandbox(int argc, char **argv);

/*
 * Prints "slm CMD: <message>" and a hint to run --help to stderr; returns
 * SLM_EXIT_USAGE.
 */
int cli_usage_error(const char *cmd, const char *fmt, ...) SLM_PRINTF(2, 3);

/* Prints "slm CMD: <message>" to stderr; returns exit code for rc. */
int cli_fail(const char *cmd, int rc, const char *fmt, ...) SLM_PRINTF(3, 4);

/* Prints the diagnostic (or rc's text) as "slm CMD: ..."; returns exit code. */
int cli_fail_diag(const char *cmd, int rc, const struct slm_diag *d);

/* Option value parsers: on error they print a usage error and return < 0. */
SLM_NODISCARD int cli_parse_int(const char *cmd, const char *opt, const char *s, long long min,
                                long long max, long long *out);
SLM_NODISCARD int cli_parse_float(const char *cmd, const char *opt, const char *s, double min,
                                  double max, double *out);
