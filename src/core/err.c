/*
 * err.c - error codes, diagnostics and the exit-code mapping.
 */
#include "core/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const err_text[SLM_ERR_COUNT] = {
    "success",
    "out of memory",
    "invalid argument",
    "input/output error",
    "malformed input",
    "limit exceeded",
    "value out of range",
    "not found",
    "already exists",
    "permission denied",
    "authentication failed",
    "budget exceeded",
    "timed out",
    "try again",
    "canceled",
    "internal error",
    "not supported by this build",
};

/* Returns a static description of an SLM_E* code. */
const char *slm_strerror(int code)
{
    if (code > 0 || -code >= SLM_ERR_COUNT) return "unknown error";
    return err_text[-code];
}

/* Fills d with code and a formatted message; returns code. */
int slm_diag_set(struct slm_diag *d, int code, const char *fmt, ...)
{
    va_list ap;

    if (d == NULL) return code;
    d->code = code;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
    va_end(ap);
    return code;
}

/* Resets d to "no error". */
void slm_diag_clear(struct slm_diag *d)
{
    if (d == NULL) return;
    d->code = 0;
    d->msg[0] = '\0';
}

/* Converts errno to an SLM_E* code. */
int slm_err_from_errno(int errnum)
{
    switch (errnum) {
    case 0:
        return SLM_OK;
    case ENOMEM:
        return SLM_ENOMEM;
    case EINVAL:
        return SLM_EINVAL;
    case ENOENT:
    case ENOTDIR:
        return SLM_ENOTFOUND;
    case EEXIST:
        return SLM_EEXIST;
    case EACCES:
    case EPERM:
    case EROFS:
        return SLM_EPERM;
    case ETIMEDOUT:
        return SLM_ETIMEDOUT;
    case EAGAIN:
        return SLM_EAGAIN;
    case ECANCELED:
        return SLM_ECANCELED;
    case ERANGE:
    case EOVERFLOW:
    case EFBIG:
        return SLM_ERANGE;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
        return SLM_ELIMIT;
    default:
        return SLM_EIO;
    }
}

/* Maps an error code to the CLI's exit status (STYLE.md 5.7). */
int slm_err_exit_code(int code)
{
    switch (code) {
    case SLM_OK:
        return SLM_EXIT_OK;
    case SLM_EPERM:
    case SLM_EAUTH:
        return SLM_EXIT_PERM;
    case SLM_ELIMIT:
    case SLM_EBUDGET:
        return SLM_EXIT_LIMIT;
    default:
        return SLM_EXIT_RUNTIME;
    }
}

/* Prints one error line to stderr: "<prefix>: <message>". */
void slm_diag_print(const char *prefix, const struct slm_diag *d, int code)
{
    const char *msg = (d != NULL && d->msg[0] != '\0') ? d->msg : slm_strerror(code);

    fprintf(stderr, "%s: %s\n", prefix != NULL ? prefix : "slm", msg);
}

/* Reports a broken invariant and aborts. */
void slm_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "slm: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
