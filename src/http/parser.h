/*
 * parser.h - strict, incremental HTTP/1.1 request parser (picohttpparser's
 * contract: the caller keeps the bytes and the state, the parser returns
 * "consumed", "need more" or "bad").
 *
 * http_request_parse looks at the bytes received so far on a connection. It
 * returns the length of the request head once the whole head (request line,
 * header fields, empty line) is there, SLM_EAGAIN while it is incomplete, or
 * a negative error with req->status set to the status to answer (400, 413,
 * 414, 431, 501, 505) and a one-line message in d. After any error the
 * connection must be closed (RELIABILITY rule 2): nothing after a framing
 * error is ever parsed, so a smuggled second request is never answered.
 *
 * Exactly one interpretation of the message length (RFC 9112 6, request
 * smuggling rows of RELIABILITY H01/H02): Content-Length must be digits only,
 * appear once, and fit the body limit; Transfer-Encoding must appear once,
 * be exactly "chunked" (anything else: 501), not be combined with
 * Content-Length and not appear in HTTP/1.0. obs-fold, whitespace before the
 * colon, bare CR, bare LF, NUL and other control bytes are rejected.
 *
 * Chunked bodies are decoded by struct http_chunked, fed with the bytes that
 * follow the head; it appends the data to a capped buffer and stops exactly
 * at the end of the message, so pipelined requests stay in the input.
 *
 * Ownership: struct http_request borrows the caller's buffer: its pointers
 * are valid while those bytes are. Everything is reentrant; no allocation
 * except through the slm_buf the caller passes to the chunked decoder.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/limits.h"

enum http_method {
    HTTP_METHOD_GET = 0,
    HTTP_METHOD_HEAD,
    HTTP_METHOD_POST,
    HTTP_METHOD_PUT,
    HTTP_METHOD_DELETE,
    HTTP_METHOD_OPTIONS,
    HTTP_METHOD_PATCH,
    HTTP_METHOD_OTHER, /* a valid token we do not know: the router answers 405/501 */
    HTTP_METHOD_COUNT
};

enum http_body_kind {
    HTTP_BODY_NONE = 0, /* no Content-Length, no Transfer-Encoding: empty body */
    HTTP_BODY_LENGTH,   /* Content-Length bytes follow the head */
    HTTP_BODY_CHUNKED,  /* decode with struct http_chunked */
};

struct http_header {
    const char *name; /* not NUL-terminated */
    size_t name_len;
    const char *value; /* leading and trailing whitespace removed */
    size_t value_len;
};

struct http_parse_params {
    size_t head_max;        /* SLM_LIMIT_HTTP_HEADER_BYTES -> 431 */
    size_t header_line_max; /* SLM_LIMIT_HTTP_HEADER_LINE -> 431 */
    size_t headers_max;     /* SLM_LIMIT_HTTP_HEADERS (the hard maximum) -> 431 */
    size_t uri_max;         /* SLM_LIMIT_HTTP_URI -> 414 */
    uint64_t body_max;      /* SLM_LIMIT_HTTP_BODY: Content-Length above it -> 413 */
};

struct http_request {
    enum http_method method;
    const char *method_name;
    size_t method_len;
    const char *target; /* request-target as sent (origin-form, "*", absolute-form) */
    size_t target_len;
    unsigned version_minor; /* HTTP/1.<version_minor>: 0 or 1 */
    struct http_header headers[SLM_LIMIT_HTTP_HEADERS];
    size_t n_headers;
    const struct http_header *host; /* NULL for HTTP/1.0 without Host */
    enum http_body_kind body_kind;
    uint64_t content_length; /* for HTTP_BODY_LENGTH */
    bool keep_alive;         /* per version and Connection */
    bool expect_continue;    /* "Expect: 100-continue" */
    int status;              /* after an error: the status code to answer */
};

struct http_parse_params http_parse_params_default(void);

/*
 * Parses the head at buf[0..len) (borrows). last_len is how many of these
 * bytes an earlier call already saw (0 the first time), so a head that
 * arrives byte by byte costs linear time. params may be NULL (defaults).
 * Returns the head length (> 0) on success, SLM_EAGAIN when more bytes are
 * needed, or SLM_EFORMAT (400, 505), SLM_ELIMIT (413, 414, 431),
 * SLM_EUNSUPPORTED (501) with req->status and d filled.
 */
SLM_NODISCARD int http_request_parse(const char *buf, size_t len, size_t last_len,
                                     const struct http_parse_params *params,
                                     struct http_request *req, struct slm_diag *d);

/* Returns borrowed: the first header named name (case-insensitive), or NULL. */
const struct http_header *http_request_header(const struct http_request *req, const char *name);

/* Returns the static reason phrase of a status code ("Bad Request"), or "Unknown". */
const char *http_status_text(int status);

/*
 * Chunked transfer-coding decoder (RFC 9112 7.1). Caller storage: init once
 * per body, then feed the bytes after the head as they arrive.
 */
struct http_chunked {
    uint64_t body_max;   /* decoded data bytes allowed (-> 413) */
    uint64_t n_data;     /* decoded so far */
    uint64_t n_overhead; /* framing bytes so far (size lines, CRLFs, trailers) */
    uint64_t chunk_left; /* data bytes left in the current chunk */
    size_t line_len;     /* bytes of the current size or trailer line */
    size_t n_trailers;
    unsigned n_digits;
    unsigned state;
    int status; /* after an error: the status code to answer */
};

void http_chunked_init(struct http_chunked *c, uint64_t body_max);

/*
 * Decodes in[0..len) (borrows), appending data to out (whose cap should be at
 * least body_max). *consumed says how many input bytes were used. Returns 0
 * when the final chunk and trailers are complete (bytes after *consumed
 * belong to the next request), SLM_EAGAIN when all input was used and more
 * is needed, or SLM_EFORMAT (400), SLM_ELIMIT (413, 431), SLM_ENOMEM with
 * c->status and d filled.
 */
SLM_NODISCARD int http_chunked_decode(struct http_chunked *c, const char *in, size_t len,
                                      size_t *consumed, struct slm_buf *out, struct slm_diag *d);
