/*
 * buf.h - a growable byte buffer with a hard cap (curl's dynbuf).
 *
 * Every buffer is created with the most bytes it may ever hold; growing past
 * that returns SLM_ELIMIT and leaves the contents as they were. The data is
 * always NUL-terminated (the NUL is not counted in len and not in the cap).
 *
 * Ownership: struct slm_buf is caller storage (init/fini); the bytes belong to
 * the buffer until slm_buf_take hands them over.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "core/err.h"

struct slm_buf {
    char *data;
    size_t len;
    size_t cap;     /* allocated bytes, excluding the NUL */
    size_t len_max; /* the hard cap */
};

void slm_buf_init(struct slm_buf *b, size_t len_max);
void slm_buf_fini(struct slm_buf *b);
void slm_buf_reset(struct slm_buf *b);
SLM_NODISCARD int slm_buf_append(struct slm_buf *b, const void *p, size_t n);
SLM_NODISCARD int slm_buf_append_str(struct slm_buf *b, const char *s);
SLM_NODISCARD int slm_buf_append_char(struct slm_buf *b, char c);
SLM_NODISCARD int slm_buf_printf(struct slm_buf *b, const char *fmt, ...) SLM_PRINTF(2, 3);
SLM_NODISCARD int slm_buf_vprintf(struct slm_buf *b, const char *fmt, va_list ap) SLM_PRINTF(2, 0);
/* Returns the data (never NULL, "" when empty): borrowed until the next call. */
const char *slm_buf_str(const struct slm_buf *b);
/* Returns new: the caller frees the bytes with slm_free; b is left empty. */
char *slm_buf_take(struct slm_buf *b, size_t *len);
