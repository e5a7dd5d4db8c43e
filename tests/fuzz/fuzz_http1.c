/*
 * fuzz_http1.c - libFuzzer target for the HTTP/1.1 request parser and the
 * chunked decoder, driven like a connection (RELIABILITY H14).
 *
 * The input is one connection's byte stream. It is processed twice: once
 * with every byte available at once, once delivered in small pieces whose
 * sizes come from the first input byte (a slow client). Pipelined requests
 * are parsed in a loop: head, then a Content-Length or chunked body, then
 * the next head, until an error or the end. Both runs must produce the same
 * transcript (each request's method, target, headers, body digest, then the
 * final error status or "incomplete"); any difference, a result pointing
 * outside the input, or an error without a status aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "http/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FNV-1a over the transcript: order-sensitive and cheap. */
static void mix(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        *h ^= b[i];
        *h *= 0x100000001b3ull;
    }
}

static void check_in(const char *p, size_t n, const char *base, size_t len)
{
    if (n > 0 && (p < base || p + n > base + len)) abort();
}

/*
 * Runs the connection over buf[0..size) seeing at most `have` bytes at first
 * and `step` more each time it needs more (step 0: everything at once).
 * Returns the transcript digest.
 */
static uint64_t run(const char *buf, size_t size, size_t step)
{
    struct http_parse_params params = http_parse_params_default();
    size_t off = 0, have = step == 0 ? size : (step < size ? step : size), last = 0;
    uint64_t h = 0xcbf29ce484222325ull;
    struct slm_buf body;
    struct slm_diag d;

    params.body_max = 1u << 16;
    slm_buf_init(&body, params.body_max);
    for (;;) {
        struct http_request req;
        int rc = http_request_parse(buf + off, have - off, last, &params, &req, &d);

        if (rc == SLM_EAGAIN) {
            if (have == size) {
                mix(&h, "incomplete", 10);
                break;
            }
            last = have - off;
            have = have + step < size ? have + step : size;
            continue;
        }
        if (rc < 0) {
            if (req.status < 400 || req.status > 505) abort();
            mix(&h, &req.status, sizeof(req.status));
            break;
        }
        if ((size_t)rc > have - off) abort();
        check_in(req.target, req.target_len, buf + off, (size_t)rc);
        mix(&h, &req.method, sizeof(req.method));
        mix(&h, req.target, req.target_len);
        mix(&h, &req.n_headers, sizeof(req.n_headers));
        for (size_t i = 0; i < req.n_headers; i++) {
            check_in(req.headers[i].value, req.headers[i].value_len, buf + off, (size_t)rc);
            mix(&h, req.headers[i].name, req.headers[i].name_len);
            mix(&h, req.headers[i].value, req.headers[i].value_len);
        }
        mix(&h, &req.keep_alive, sizeof(req.keep_alive));
        off += (size_t)rc;
        last = 0;
        if (req.body_kind == HTTP_BODY_LENGTH) {
            while (have - off < req.content_length && have < size)
                have = have + step < size ? have + step : size;
            if (have - off < req.content_length) {
                mix(&h, "short body", 10);
                break;
            }
            mix(&h, buf + off, (size_t)req.content_length);
            off += (size_t)req.content_length;
        } else if (req.body_kind == HTTP_BODY_CHUNKED) {
            struct http_chunked c;
            size_t used;

            http_chunked_init(&c, params.body_max);
            slm_buf_reset(&body);
            for (;;) {
                rc = http_chunked_decode(&c, buf + off, have - off, &used, &body, &d);
                if (used > have - off) abort();
                off += used;
                if (rc != SLM_EAGAIN || have == size) break;
                have = have + step < size ? have + step : size;
            }
            if (rc == SLM_EAGAIN) {
                mix(&h, "short chunked", 13);
                break;
            }
            if (rc < 0) {
                if (c.status < 400 || c.status > 503) abort();
                mix(&h, &c.status, sizeof(c.status));
                break;
            }
            if (body.len > params.body_max) abort();
            mix(&h, body.data != NULL ? body.data : "", body.len);
        }
        if (!req.keep_alive) {
            mix(&h, "close", 5);
            break;
        }
        if (off == size) {
            mix(&h, "eof", 3);
            break;
        }
        if (have == off) have = have + step < size ? have + step : size;
    }
    slm_buf_fini(&body);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t step;

    if (size == 0) return 0;
    step = (size_t)(data[0] % 7) + 1;
    if (run((const char *)data + 1, size - 1, 0) != run((const char *)data + 1, size - 1, step))
        abort();
    return 0;
}
