/*
 * buf.c - capped growable buffer (see buf.h).
 */
#include "core/buf.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* Sets up an empty buffer that may hold at most len_max bytes. */
void slm_buf_init(struct slm_buf *b, size_t len_max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->len_max = len_max;
}

/* Frees the bytes; the buffer may be used again after slm_buf_init. */
void slm_buf_fini(struct slm_buf *b)
{
    slm_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Empties the buffer and keeps its allocation. */
void slm_buf_reset(struct slm_buf *b)
{
    b->len = 0;
    if (b->data != NULL) b->data[0] = '\0';
}

/* Makes room for n more bytes: 0, SLM_ELIMIT or SLM_ENOMEM. */
static int buf_reserve(struct slm_buf *b, size_t n)
{
    size_t need, cap, alloc;
    char *p;

    if (!slm_add_size(b->len, n, &need) || need > b->len_max) return SLM_ELIMIT;
    if (need <= b->cap && b->data != NULL) return 0;
    cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->len_max) cap = b->len_max;
    if (!slm_add_size(cap, 1, &alloc)) return SLM_ELIMIT;
    p = slm_realloc(b->data, alloc);
    if (p == NULL) return SLM_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Appends n bytes. */
int slm_buf_append(struct slm_buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);

    if (rc < 0) return rc;
    if (n > 0) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int slm_buf_append_str(struct slm_buf *b, const char *s)
{
    return slm_buf_append(b, s, strlen(s));
}

int slm_buf_append_char(struct slm_buf *b, char c)
{
    return slm_buf_append(b, &c, 1);
}

/* Appends formatted text. */
int slm_buf_vprintf(struct slm_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n, rc;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return SLM_EINVAL;
    rc = buf_reserve(b, (size_t)n);
    if (rc < 0) return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int slm_buf_printf(struct slm_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = slm_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Returns the contents as a C string. */
const char *slm_buf_str(const struct slm_buf *b)
{
    return b->data != NULL ? b->data : "";
}

/* Hands the bytes to the caller (NULL if empty) and empties b. */
char *slm_buf_take(struct slm_buf *b, size_t *len)
{
    char *p = b->data;

    if (len != NULL) *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
