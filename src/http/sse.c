/*
 * sse.c - Server-Sent Events writer (see sse.h).
 */
#include <string.h>

#include "http/sse.h"

/* Undoes a partial append so the buffer holds whole events only. */
static int rollback(struct slm_buf *out, size_t len, int rc)
{
    out->len = len;
    if (out->data != NULL) out->data[len] = '\0';
    return rc;
}

/* Appends "<prefix>line\n" for each line of s[0..len) (split at CRLF, CR, LF). */
static int put_lines(struct slm_buf *out, const char *prefix, const char *s, size_t len)
{
    size_t i = 0;
    int rc;

    for (;;) {
        size_t j = i;

        while (j < len && s[j] != '\r' && s[j] != '\n')
            j++;
        rc = slm_buf_append_str(out, prefix);
        if (rc == 0) rc = slm_buf_append(out, s + i, j - i);
        if (rc == 0) rc = slm_buf_append_char(out, '\n');
        if (rc < 0) return rc;
        if (j == len) return 0;
        i = j + (s[j] == '\r' && j + 1 < len && s[j + 1] == '\n' ? 2 : 1);
    }
}

/* Appends one data event. */
int http_sse_data(struct slm_buf *out, const char *data, size_t len)
{
    size_t old = out->len;
    int rc = put_lines(out, "data: ", data, len);

    if (rc == 0) rc = slm_buf_append_char(out, '\n');
    return rc < 0 ? rollback(out, old, rc) : 0;
}

/* Appends one named event. */
int http_sse_event(struct slm_buf *out, const char *name, const char *data, size_t len)
{
    size_t old = out->len;
    int rc;

    if (name[0] == '\0' || strpbrk(name, "\r\n") != NULL) return SLM_EINVAL;
    rc = slm_buf_append_str(out, "event: ");
    if (rc == 0) rc = slm_buf_append_str(out, name);
    if (rc == 0) rc = slm_buf_append_char(out, '\n');
    if (rc == 0) rc = put_lines(out, "data: ", data, len);
    if (rc == 0) rc = slm_buf_append_char(out, '\n');
    return rc < 0 ? rollback(out, old, rc) : 0;
}

/* Appends a comment block. */
int http_sse_comment(struct slm_buf *out, const char *text)
{
    size_t old = out->len;
    int rc = put_lines(out, ": ", text, strlen(text));

    if (rc == 0) rc = slm_buf_append_char(out, '\n');
    return rc < 0 ? rollback(out, old, rc) : 0;
}

int http_sse_done(struct slm_buf *out)
{
    return http_sse_data(out, "[DONE]", 6);
}

/* Appends the head of a streaming response; see sse.h. */
int http_sse_head(struct slm_buf *out, bool chunked, bool close, const char *extra,
                  size_t extra_len)
{
    size_t old = out->len;
    int rc = slm_buf_append_str(out, "HTTP/1.1 200 OK\r\n"
                                     "Content-Type: text/event-stream\r\n"
                                     "Cache-Control: no-cache\r\n"
                                     "X-Accel-Buffering: no\r\n");

    if (rc == 0 && chunked) rc = slm_buf_append_str(out, "Transfer-Encoding: chunked\r\n");
    if (rc == 0 && (close || !chunked)) rc = slm_buf_append_str(out, "Connection: close\r\n");
    if (rc == 0 && extra_len > 0) rc = slm_buf_append(out, extra, extra_len);
    if (rc == 0) rc = slm_buf_append_str(out, "\r\n");
    return rc < 0 ? rollback(out, old, rc) : 0;
}

/* Appends one chunk of the chunked transfer coding; see sse.h. */
int http_sse_chunk(struct slm_buf *out, const char *data, size_t len)
{
    size_t old = out->len;
    int rc;

    if (len == 0) return 0;
    rc = slm_buf_printf(out, "%zx\r\n", len);
    if (rc == 0) rc = slm_buf_append(out, data, len);
    if (rc == 0) rc = slm_buf_append_str(out, "\r\n");
    return rc < 0 ? rollback(out, old, rc) : 0;
}

/* Appends the last chunk; see sse.h. */
int http_sse_chunk_end(struct slm_buf *out)
{
    size_t old = out->len;
    int rc = slm_buf_append_str(out, "0\r\n\r\n");

    return rc < 0 ? rollback(out, old, rc) : 0;
}
