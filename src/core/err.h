/*
 * err.h - project-wide error codes and diagnostics.
 *
 * Every fallible function returns int: 0 on success or a negative SLM_E* code
 * (libuv style). Parsers and loaders also take a struct slm_diag * and fill it
 * with one precise, lower-case message naming the field and the values, which
 * callers print unchanged. A NULL diag is allowed everywhere: the message is
 * then dropped and only the code is returned.
 *
 * Thread safety: everything here is reentrant.
 */
#pragma once

#include <stddef.h>

#define SLM_NODISCARD    __attribute__((warn_unused_result))
#define SLM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SLM_NORETURN     __attribute__((noreturn))
#define SLM_LIKELY(x)    __builtin_expect(!!(x), 1)
#define SLM_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define SLM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum slm_err {
    SLM_OK = 0,
    SLM_ENOMEM = -1,
    SLM_EINVAL = -2,
    SLM_EIO = -3,
    SLM_EFORMAT = -4, /* malformed input file or wire data */
    SLM_ELIMIT = -5,  /* a configured limit would be exceeded */
    SLM_ERANGE = -6,
    SLM_ENOTFOUND = -7,
    SLM_EEXIST = -8,
    SLM_EPERM = -9,
    SLM_EAUTH = -10,
    SLM_EBUDGET = -11,
    SLM_ETIMEDOUT = -12,
    SLM_EAGAIN = -13,
    SLM_ECANCELED = -14,
    SLM_EINTERNAL = -15,
    SLM_EUNSUPPORTED = -16, /* valid input this build cannot handle */
    SLM_ERR_COUNT = 17
};

/* Process exit codes (STYLE.md 5.7, docs/cli.md). */
enum slm_exit {
    SLM_EXIT_OK = 0,
    SLM_EXIT_RUNTIME = 1,
    SLM_EXIT_USAGE = 2,
    SLM_EXIT_CONFIG = 3,
    SLM_EXIT_PERM = 4,
    SLM_EXIT_LIMIT = 5
};

#define SLM_DIAG_MSG_MAX 256

struct slm_diag {
    int code;
    char msg[SLM_DIAG_MSG_MAX];
};

/* Returns a static description of an SLM_E* code (never NULL). */
const char *slm_strerror(int code);

/*
 * Records code and a formatted message in d (if d is not NULL) and returns
 * code, so callers write: return slm_diag_set(d, SLM_EFORMAT, "...", ...);
 * An earlier message is overwritten.
 */
int slm_diag_set(struct slm_diag *d, int code, const char *fmt, ...) SLM_PRINTF(3, 4);

/* Clears d (code 0, empty message). d may be NULL. */
void slm_diag_clear(struct slm_diag *d);

/* Converts a positive errno value to an SLM_E* code. */
int slm_err_from_errno(int errnum);

/* Maps an SLM_E* code to the process exit code the CLI uses for it. */
int slm_err_exit_code(int code);

/* Prints "slm: <msg>" (or the code's text if msg is empty) to stderr. */
void slm_diag_print(const char *prefix, const struct slm_diag *d, int code);

/* Always-on invariant check: logs file:line and aborts. Never for input. */
#define SLM_ASSERT(x)                                                    \
    do {                                                                 \
        if (SLM_UNLIKELY(!(x))) slm_assert_fail(#x, __FILE__, __LINE__); \
    } while (0)

SLM_NORETURN void slm_assert_fail(const char *expr, const char *file, int line);
