/*
 * fuzz_sse.c - libFuzzer target for the SSE writer (RELIABILITY Z06).
 *
 * The input is split at NUL-free boundaries into payloads written as data
 * events, named events and comments; the stream is then read back with the
 * reference parser of tests/unit/http/sse_ref.h. Every data event must come
 * back exactly once, in order, with its text equal to the payload after
 * CRLF and CR become LF; comments must never produce events.
 *
 * As the server does, what each write appended is framed as one chunk of the
 * chunked transfer coding (http_sse_chunk), ended by http_sse_chunk_end; the
 * framed stream, fed in two pieces to the request parser's chunked decoder
 * (parser.c, written separately), must decode to exactly the unframed bytes
 * and end exactly at its last byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"
#include "http/sse.h"
#include "unit/http/sse_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct check {
    struct slm_buf want[16];
    int n_want;
    int n_seen;
    int bad;
};

static void normalize(struct slm_buf *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c == '\r') {
            if (i + 1 < len && s[i + 1] == '\n') i++;
            c = '\n';
        }
        if (slm_buf_append_char(out, c) < 0) abort();
    }
}

static void on_event(const struct sse_ref_event *ev, void *arg)
{
    struct check *c = arg;
    const struct slm_buf *w;

    if (c->n_seen >= c->n_want) {
        c->bad = 1;
        return;
    }
    w = &c->want[c->n_seen++];
    if (w->len != ev->data.len || (w->len > 0 && memcmp(w->data, ev->data.data, w->len) != 0))
        c->bad = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct slm_buf out, framed, decoded;
    struct http_chunked ch;
    struct slm_diag d;
    struct check c;
    size_t i = 0;
    int comments, n;

    memset(&c, 0, sizeof(c));
    slm_buf_init(&out, 1u << 22);
    slm_buf_init(&framed, 1u << 23);
    slm_buf_init(&decoded, 1u << 22);
    /* Payloads are separated by 0xff; the byte after it picks the kind. */
    while (i <= size && c.n_want < 16) {
        size_t j = i;
        unsigned kind = i < size ? (unsigned char)s[i] % 3 : 0;
        char tmp[256];
        size_t before = out.len;

        while (j < size && (unsigned char)s[j] != 0xff)
            j++;
        if (kind == 2) {
            size_t k = j - i < sizeof(tmp) - 1 ? j - i : sizeof(tmp) - 1;

            memcpy(tmp, s + i, k);
            tmp[k] = '\0';
            if (http_sse_comment(&out, tmp) < 0) abort();
        } else {
            slm_buf_init(&c.want[c.n_want], 1u << 22);
            normalize(&c.want[c.n_want], s + i, j - i);
            if ((kind == 0 ? http_sse_data(&out, s + i, j - i)
                           : http_sse_event(&out, "message", s + i, j - i)) < 0)
                abort();
            c.n_want++;
        }
        if (http_sse_chunk(&framed, out.data + before, out.len - before) < 0) abort();
        i = j + 1;
    }
    if (http_sse_chunk_end(&framed) < 0) abort();
    {
        size_t split = size > 0 ? (size_t)data[0] * framed.len / 256 : 0, used = 0, used2 = 0;
        int rc;

        http_chunked_init(&ch, 1u << 22);
        rc = http_chunked_decode(&ch, framed.data, split, &used, &decoded, &d);
        if (rc == SLM_EAGAIN) {
            if (used != split) abort();
            rc = http_chunked_decode(&ch, framed.data + split, framed.len - split, &used2, &decoded,
                                     &d);
        }
        if (rc != 0 || used + used2 != framed.len || decoded.len != out.len ||
            (out.len > 0 && memcmp(decoded.data, out.data, out.len) != 0))
            abort();
    }
    n = sse_ref_parse(out.data != NULL ? out.data : "", out.len, on_event, &c, &comments);
    if (n != c.n_want || c.n_seen != c.n_want || c.bad) abort();
    for (int k = 0; k < c.n_want; k++)
        slm_buf_fini(&c.want[k]);
    slm_buf_fini(&decoded);
    slm_buf_fini(&framed);
    slm_buf_fini(&out);
    return 0;
}
