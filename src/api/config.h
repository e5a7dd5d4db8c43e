/*
 * config.h - layered options: the command line, the environment and a config
 * file, merged with the precedence command line > environment > config file >
 * default (llama-server's LLAMA_ARG_* idea, with one file format on top).
 *
 * The caller describes its options in a table (struct config_opt); an
 * option's index in that table is how its value is read back. Each option
 * comes from:
 *   - the command line: --NAME VALUE (or -S VALUE for a short name; flags take
 *     no value), parsed with getopt_long_only so "-np 4" works as well;
 *   - the environment: PREFIX + NAME upper-cased with '-' -> '_'
 *     ("ctx-size" -> SLM_CTX_SIZE); an empty variable counts as unset;
 *   - a config file: "NAME = VALUE" lines, see config_parse_text.
 * Every value is checked where it is read, so an error names its source:
 * "--port wants ...", "SLM_PORT: ...", "FILE:LINE:COL: port: ...".
 *
 * An option with `refused` set is never accepted (for example a secret that
 * must not appear in argv or a file); the text says what to use instead.
 *
 * Threading: none; a struct config is used by one thread. The argv parser
 * uses getopt's global state.
 *
 * Ownership: config_new borrows the option table (it must outlive the
 * config) and returns new; values are copied, and the strings returned are
 * borrowed until the value changes or config_free.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* Largest config file accepted. */
#define CONFIG_FILE_MAX (64u << 10)
/* Longest line of a config file. */
#define CONFIG_LINE_MAX 4096u
/* Longest option name. */
#define CONFIG_NAME_MAX 48u

enum config_kind {
    CONFIG_STR = 0, /* any non-empty text without control characters */
    CONFIG_INT,     /* an integer in [min, max] */
    CONFIG_FLAG,    /* no value on the command line; true/false elsewhere */
    CONFIG_LIST,    /* comma-separated; repeated on the command line: appended */
    CONFIG_KIND_COUNT
};

/* config_opt.flags */
#define CONFIG_NO_ENV  1u /* not read from the environment */
#define CONFIG_NO_FILE 2u /* not accepted in a config file */

struct config_opt {
    const char *name;  /* long option and file key: "ctx-size" */
    const char *alias; /* a second long name ("np"), or NULL */
    int short_name;    /* 'c', or 0 */
    enum config_kind kind;
    long long min, max;  /* CONFIG_INT */
    const char *def;     /* default as shown by config_print, or NULL */
    unsigned flags;      /* CONFIG_NO_ENV, CONFIG_NO_FILE */
    const char *refused; /* non-NULL: never accepted, this says what to use instead */
};

enum config_source {
    CONFIG_SRC_DEFAULT = 0,
    CONFIG_SRC_FILE,
    CONFIG_SRC_ENV,
    CONFIG_SRC_ARGV,
    CONFIG_SRC_COUNT
};

struct config;

/* Returns new in *out; env_prefix (borrowed) is "SLM_". SLM_ENOMEM or SLM_EINVAL (bad table). */
SLM_NODISCARD int config_new(const struct config_opt *opts, size_t n, const char *env_prefix,
                             struct config **out);
void config_free(struct config *c);

/*
 * Reads the command line argv[1..argc) (argv[0] is the command's name). Any
 * positional argument, unknown option, missing or bad value: SLM_EINVAL with
 * the message (a usage error). May permute argv (GNU getopt).
 */
SLM_NODISCARD int config_parse_argv(struct config *c, int argc, char **argv, struct slm_diag *d);
/*
 * Reads the options' variables from envp (NULL-terminated "NAME=VALUE"
 * strings, e.g. environ; borrowed). A bad value: SLM_EINVAL naming the
 * variable.
 */
SLM_NODISCARD int config_parse_env(struct config *c, char *const *envp, struct slm_diag *d);
/*
 * Reads a config file. The file must be a regular file owned by the user or
 * root and not writable by group or others (SLM_EPERM, with the chmod to
 * run), at most CONFIG_FILE_MAX bytes. Then as config_parse_text.
 */
SLM_NODISCARD int config_parse_file(struct config *c, const char *path, struct slm_diag *d);
/*
 * Parses config text; name is used in messages. Format, one setting per line:
 *   # a comment (a line whose first non-blank character is '#')
 *   NAME = VALUE      # an inline comment: '#' after blank space
 *   NAME = "VALUE"    quotes keep blanks and '#'; no escapes
 * NAME is an option's long name. Blank lines are ignored; CR LF is accepted.
 * Errors (SLM_EFORMAT, "name:LINE:COL: message"): an unknown NAME, a NAME
 * given twice, a missing '=', an empty or bad value, control characters,
 * and options refused or not allowed in a file.
 */
SLM_NODISCARD int config_parse_text(struct config *c, const char *name, const char *text,
                                    size_t len, struct slm_diag *d);

/*
 * Sets option i's default to value (borrowed; copied) when no source set it:
 * for defaults that depend on other options. SLM_EINVAL for a bad value.
 */
SLM_NODISCARD int config_set_default(struct config *c, size_t i, const char *value);
/* True if option i was given anywhere (not a default). */
bool config_is_set(const struct config *c, size_t i);
enum config_source config_source_of(const struct config *c, size_t i);
/* Returns borrowed: option i's text ("true" for a set flag), or NULL when unset. */
const char *config_str(const struct config *c, size_t i);
/* Option i as an integer (CONFIG_INT), or def when neither set nor given a default. */
long long config_int(const struct config *c, size_t i, long long def);
/* Option i as a flag (CONFIG_FLAG); false when unset. */
bool config_flag(const struct config *c, size_t i);
/* Writes option i's environment variable name into out[0..cap). */
void config_env_name(const struct config *c, size_t i, char *out, size_t cap);
/* The name of a source: "default", "config file", "environment", "command line". */
const char *config_source_name(enum config_source s);
/*
 * Appends the effective configuration in the file format (so it can be
 * saved as a config file), one "NAME = VALUE  # source" line per option;
 * options not set and without a default are written as comments.
 */
SLM_NODISCARD int config_print(const struct config *c, struct slm_buf *out);
