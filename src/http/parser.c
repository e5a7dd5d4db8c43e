/*
 * parser.c - strict HTTP/1.1 request head parser and chunked decoder (see
 * parser.h). Grammar from RFC 9110 5.6 / RFC 9112 2-7.
 */
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "http/parser.h"

/* Longest method token accepted (the longest registered method is 17 bytes). */
#define HTTP_METHOD_MAX 32u

/* Returns the default limits from core/limits.h. */
struct http_parse_params http_parse_params_default(void)
{
    struct http_parse_params p = {
        .head_max = SLM_LIMIT_HTTP_HEADER_BYTES,
        .header_line_max = SLM_LIMIT_HTTP_HEADER_LINE,
        .headers_max = SLM_LIMIT_HTTP_HEADERS,
        .uri_max = SLM_LIMIT_HTTP_URI,
        .body_max = SLM_LIMIT_HTTP_BODY,
    };
    return p;
}

/* tchar of RFC 9110 5.6.2. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar / SP / HTAB (obs-text allowed, RFC 9110 5.5). */
static bool is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int req_fail(struct http_request *req, struct slm_diag *d, int status, int code,
                    const char *msg)
{
    req->status = status;
    return slm_diag_set(d, code, "http: %s", msg);
}

static bool name_is(const struct http_header *h, const char *name)
{
    size_t n = strlen(name);

    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static bool value_is(const char *v, size_t len, const char *want)
{
    size_t n = strlen(want);

    return len == n && strncasecmp(v, want, n) == 0;
}

/* Returns borrowed: the first header called name, case-insensitively. */
const struct http_header *http_request_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (name_is(&req->headers[i], name)) return &req->headers[i];
    return NULL;
}

/*
 * Scans for the end of the head from start; rejects bare CR, bare LF and NUL
 * as soon as they arrive. Returns the head length, 0 if incomplete, or -1.
 */
static size_t find_head_end(const unsigned char *b, size_t len, size_t start, size_t skip, int *bad)
{
    *bad = 0;
    for (size_t i = start; i < len; i++) {
        unsigned char c = b[i];

        if (c == '\n') {
            if (i == skip || b[i - 1] != '\r') {
                *bad = 1;
                return 0;
            }
            if (i >= skip + 3 && b[i - 2] == '\n' && b[i - 3] == '\r') return i + 1;
        } else if (c == '\r') {
            if (i + 1 < len && b[i + 1] != '\n') {
                *bad = 1;
                return 0;
            }
        } else if (c == 0) {
            *bad = 2;
            return 0;
        }
    }
    return 0;
}

static enum http_method method_of(const char *m, size_t n)
{
    static const char *const names[] = {
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"
    };

    for (size_t i = 0; i < SLM_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == n && memcmp(names[i], m, n) == 0) return (enum http_method)i;
    return HTTP_METHOD_OTHER;
}

/* Parses the request line at b[0..end) where end points at its CR. */
static int parse_request_line(const char *b, size_t end, const struct http_parse_params *p,
                              struct http_request *req, struct slm_diag *d)
{
    size_t i = 0, t0;

    while (i < end && is_tchar((unsigned char)b[i]))
        i++;
    if (i == 0 || i >= end || b[i] != ' ')
        return req_fail(req, d, 400, SLM_EFORMAT, "malformed request line: bad method");
    if (i > HTTP_METHOD_MAX) return req_fail(req, d, 501, SLM_EUNSUPPORTED, "method name too long");
    req->method_name = b;
    req->method_len = i;
    req->method = method_of(b, i);
    t0 = ++i;
    while (i < end && (unsigned char)b[i] > 0x20 && (unsigned char)b[i] < 0x7f)
        i++;
    if (i - t0 > p->uri_max) {
        req->status = 414;
        return slm_diag_set(d, SLM_ELIMIT, "http: request target longer than %zu bytes",
                            p->uri_max);
    }
    if (i == t0 || i >= end || b[i] != ' ')
        return req_fail(req, d, 400, SLM_EFORMAT, "malformed request line: bad request target");
    req->target = b + t0;
    req->target_len = i - t0;
    i++;
    if (end - i != 8 || memcmp(b + i, "HTTP/", 5) != 0 || b[i + 6] != '.' || b[i + 5] < '0' ||
        b[i + 5] > '9' || b[i + 7] < '0' || b[i + 7] > '9')
        return req_fail(req, d, 400, SLM_EFORMAT, "malformed request line: bad HTTP version");
    if (b[i + 5] != '1' || (b[i + 7] != '0' && b[i + 7] != '1'))
        return req_fail(req, d, 505, SLM_EFORMAT, "HTTP version not supported (use HTTP/1.1)");
    req->version_minor = (unsigned)(b[i + 7] - '0');
    return 0;
}

/* Parses one header line b[0..end) (end at its CR) into h. */
static int parse_header_line(const char *b, size_t end, const struct http_parse_params *p,
                             struct http_header *h, struct http_request *req, struct slm_diag *d)
{
    size_t i = 0, v0, v1;

    if (end > p->header_line_max) {
        req->status = 431;
        return slm_diag_set(d, SLM_ELIMIT, "http: header line longer than %zu bytes",
                            p->header_line_max);
    }
    if (b[0] == ' ' || b[0] == '\t')
        return req_fail(req, d, 400, SLM_EFORMAT, "obsolete header line folding not allowed");
    while (i < end && is_tchar((unsigned char)b[i]))
        i++;
    if (i < end && (b[i] == ' ' || b[i] == '\t'))
        return req_fail(req, d, 400, SLM_EFORMAT, "whitespace before ':' in header field");
    if (i == 0 || i >= end || b[i] != ':')
        return req_fail(req, d, 400, SLM_EFORMAT, "malformed header field name");
    h->name = b;
    h->name_len = i;
    i++;
    while (i < end && (b[i] == ' ' || b[i] == '\t'))
        i++;
    v0 = i;
    for (; i < end; i++)
        if (!is_field_char((unsigned char)b[i]))
            return req_fail(req, d, 400, SLM_EFORMAT, "control character in header value");
    v1 = end;
    while (v1 > v0 && (b[v1 - 1] == ' ' || b[v1 - 1] == '\t'))
        v1--;
    h->value = b + v0;
    h->value_len = v1 - v0;
    return 0;
}

/* Does the comma-separated token list v contain tok (case-insensitive)? */
static bool list_has(const char *v, size_t len, const char *tok)
{
    size_t i = 0;

    while (i < len) {
        size_t s, e;

        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        s = i;
        while (i < len && v[i] != ',')
            i++;
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (value_is(v + s, e - s, tok)) return true;
    }
    return false;
}

/* Applies the framing rules (Host, Content-Length, Transfer-Encoding, Connection). */
static int apply_semantics(const struct http_parse_params *p, struct http_request *req,
                           struct slm_diag *d)
{
    const struct http_header *cl = NULL, *te = NULL;
    bool conn_close = false, conn_keep = false;

    for (size_t k = 0; k < req->n_headers; k++) {
        const struct http_header *h = &req->headers[k];

        if (name_is(h, "host")) {
            if (req->host != NULL)
                return req_fail(req, d, 400, SLM_EFORMAT, "duplicate Host header");
            req->host = h;
        } else if (name_is(h, "content-length")) {
            if (cl != NULL)
                return req_fail(req, d, 400, SLM_EFORMAT, "duplicate Content-Length header");
            cl = h;
        } else if (name_is(h, "transfer-encoding")) {
            if (te != NULL)
                return req_fail(req, d, 400, SLM_EFORMAT, "duplicate Transfer-Encoding header");
            te = h;
        } else if (name_is(h, "connection")) {
            conn_close |= list_has(h->value, h->value_len, "close");
            conn_keep |= list_has(h->value, h->value_len, "keep-alive");
        } else if (name_is(h, "expect")) {
            req->expect_continue = value_is(h->value, h->value_len, "100-continue");
        }
    }
    if (req->version_minor == 1 && req->host == NULL)
        return req_fail(req, d, 400, SLM_EFORMAT, "missing Host header (required in HTTP/1.1)");
    if (te != NULL) {
        if (req->version_minor == 0)
            return req_fail(req, d, 400, SLM_EFORMAT, "Transfer-Encoding in an HTTP/1.0 request");
        if (cl != NULL)
            return req_fail(req, d, 400, SLM_EFORMAT,
                            "both Content-Length and Transfer-Encoding present");
        if (!value_is(te->value, te->value_len, "chunked"))
            return req_fail(req, d, 501, SLM_EUNSUPPORTED,
                            "unsupported Transfer-Encoding (only 'chunked' is accepted)");
        req->body_kind = HTTP_BODY_CHUNKED;
    } else if (cl != NULL) {
        uint64_t v = 0;

        if (cl->value_len == 0 || cl->value_len > 19)
            return req_fail(req, d, 400, SLM_EFORMAT, "invalid Content-Length");
        for (size_t i = 0; i < cl->value_len; i++) {
            char c = cl->value[i];

            if (c < '0' || c > '9')
                return req_fail(req, d, 400, SLM_EFORMAT, "invalid Content-Length");
            v = v * 10 + (uint64_t)(c - '0'); /* 19 digits cannot overflow uint64 */
        }
        if (v > p->body_max) {
            req->status = 413;
            return slm_diag_set(d, SLM_ELIMIT,
                                "http: Content-Length %llu exceeds the body limit of %llu bytes",
                                (unsigned long long)v, (unsigned long long)p->body_max);
        }
        req->content_length = v;
        req->body_kind = v > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    }
    req->keep_alive = req->version_minor == 1 ? !conn_close : (conn_keep && !conn_close);
    return 0;
}

/* Parses a request head; see parser.h for the contract. */
int http_request_parse(const char *buf, size_t len, size_t last_len,
                       const struct http_parse_params *params, struct http_request *req,
                       struct slm_diag *d)
{
    struct http_parse_params p = params != NULL ? *params : http_parse_params_default();
    const unsigned char *b = (const unsigned char *)buf;
    size_t skip = 0, start, end, i, line_end, scan_len, line_max;
    int bad, rc;

    memset(req, 0, sizeof(*req));
    if (p.headers_max > SLM_LIMIT_HTTP_HEADERS) p.headers_max = SLM_LIMIT_HTTP_HEADERS;
    /* RFC 9112 2.2: ignore empty lines before the request line. */
    while (skip + 1 < len && b[skip] == '\r' && b[skip + 1] == '\n' && skip < p.head_max)
        skip += 2;
    start = last_len > skip + 3 ? last_len - 3 : skip;
    /* Nothing past head_max can belong to an acceptable head. */
    scan_len = len < p.head_max ? len : p.head_max;
    end = find_head_end(b, scan_len, start, skip, &bad);
    if (bad)
        return req_fail(req, d, 400, SLM_EFORMAT,
                        bad == 2 ? "NUL byte in request head"
                                 : "bare CR or LF in request head (lines end with CRLF)");
    /* The request line alone may not exceed the URI limit plus method and version. */
    line_max = p.uri_max + HTTP_METHOD_MAX + 12;
    if (len - skip > line_max && memchr(b + skip, '\n', line_max + 1) == NULL) {
        req->status = 414;
        return slm_diag_set(d, SLM_ELIMIT, "http: request line longer than %zu bytes", line_max);
    }
    if (end == 0) {
        if (len > p.head_max) {
            req->status = 431;
            return slm_diag_set(d, SLM_ELIMIT, "http: request head longer than %zu bytes",
                                p.head_max);
        }
        return SLM_EAGAIN;
    }
    /* Every line below ends with CRLF: find_head_end checked it. */
    line_end = (size_t)((const unsigned char *)memchr(b + skip, '\r', end - skip) - b);
    rc = parse_request_line(buf + skip, line_end - skip, &p, req, d);
    if (rc < 0) return rc;
    for (i = line_end + 2; i < end - 2; i = line_end + 2) {
        line_end = (size_t)((const unsigned char *)memchr(b + i, '\r', end - i) - b);
        if (req->n_headers == p.headers_max) {
            req->status = 431;
            return slm_diag_set(d, SLM_ELIMIT, "http: more than %zu header fields", p.headers_max);
        }
        rc = parse_header_line(buf + i, line_end - i, &p, &req->headers[req->n_headers], req, d);
        if (rc < 0) return rc;
        req->n_headers++;
    }
    rc = apply_semantics(&p, req, d);
    if (rc < 0) return rc;
    return (int)end;
}

/* Returns the reason phrase for the statuses this server sends. */
const char *http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* ---- chunked transfer coding ---- */

enum chunked_state {
    CH_SIZE = 0,   /* hex digits of the chunk size */
    CH_EXT,        /* chunk extensions up to CR */
    CH_SIZE_LF,    /* LF after the size line */
    CH_DATA,       /* chunk data */
    CH_DATA_CR,    /* CR after the data */
    CH_DATA_LF,    /* LF after the data */
    CH_TRAILER0,   /* start of a trailer line or the final CRLF */
    CH_TRAILER,    /* inside a trailer line */
    CH_TRAILER_LF, /* LF ending a trailer line */
    CH_FINAL_LF,   /* LF of the final CRLF */
    CH_DONE
};

/* Prepares c for a new chunked body of at most body_max data bytes. */
void http_chunked_init(struct http_chunked *c, uint64_t body_max)
{
    memset(c, 0, sizeof(*c));
    c->body_max = body_max;
}

static int ch_fail(struct http_chunked *c, struct slm_diag *d, int status, int code,
                   const char *msg)
{
    c->status = status;
    return slm_diag_set(d, code, "http: chunked body: %s", msg);
}

static int hex_digit(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    ch |= 0x20;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

/* Handles one framing byte (every state but CH_DATA). */
static int chunked_byte(struct http_chunked *c, unsigned char ch, struct slm_diag *d)
{
    int h;

    c->n_overhead++;
    switch ((enum chunked_state)c->state) {
    case CH_SIZE:
        if ((h = hex_digit(ch)) >= 0) {
            if (++c->n_digits > 16)
                return ch_fail(c, d, 400, SLM_EFORMAT, "chunk size has more than 16 hex digits");
            c->chunk_left = (c->chunk_left << 4) | (uint64_t)h;
            return 0;
        }
        if (c->n_digits == 0) return ch_fail(c, d, 400, SLM_EFORMAT, "expected a hex chunk size");
        if (c->chunk_left > c->body_max - c->n_data)
            return ch_fail(c, d, 413, SLM_ELIMIT, "body exceeds the size limit");
        if (ch == ';') {
            c->state = CH_EXT;
            return 0;
        }
        if (ch == '\r') {
            c->state = CH_SIZE_LF;
            return 0;
        }
        return ch_fail(c, d, 400, SLM_EFORMAT, "malformed chunk size line");
    case CH_EXT:
        if (ch == '\r') {
            c->state = CH_SIZE_LF;
            return 0;
        }
        if (!is_field_char(ch))
            return ch_fail(c, d, 400, SLM_EFORMAT, "control character in chunk extension");
        if (++c->line_len > SLM_LIMIT_HTTP_CHUNK_LINE)
            return ch_fail(c, d, 400, SLM_EFORMAT, "chunk extensions too long");
        return 0;
    case CH_SIZE_LF:
        if (ch != '\n')
            return ch_fail(c, d, 400, SLM_EFORMAT, "chunk size line must end with CRLF");
        c->line_len = 0;
        c->n_digits = 0;
        c->state = c->chunk_left == 0 ? CH_TRAILER0 : CH_DATA;
        return 0;
    case CH_DATA_CR:
        if (ch != '\r') return ch_fail(c, d, 400, SLM_EFORMAT, "chunk data must end with CRLF");
        c->state = CH_DATA_LF;
        return 0;
    case CH_DATA_LF:
        if (ch != '\n') return ch_fail(c, d, 400, SLM_EFORMAT, "chunk data must end with CRLF");
        c->state = CH_SIZE;
        return 0;
    case CH_TRAILER0:
        if (ch == '\r') {
            c->state = CH_FINAL_LF;
            return 0;
        }
        if (!is_tchar(ch)) return ch_fail(c, d, 400, SLM_EFORMAT, "malformed trailer field");
        if (++c->n_trailers > SLM_LIMIT_HTTP_HEADERS)
            return ch_fail(c, d, 431, SLM_ELIMIT, "too many trailer fields");
        c->line_len = 1;
        c->state = CH_TRAILER;
        return 0;
    case CH_TRAILER:
        if (ch == '\r') {
            c->state = CH_TRAILER_LF;
            return 0;
        }
        if (!is_field_char(ch))
            return ch_fail(c, d, 400, SLM_EFORMAT, "control character in trailer field");
        if (++c->line_len > SLM_LIMIT_HTTP_HEADER_LINE)
            return ch_fail(c, d, 431, SLM_ELIMIT, "trailer field too long");
        return 0;
    case CH_TRAILER_LF:
        if (ch != '\n') return ch_fail(c, d, 400, SLM_EFORMAT, "trailer line must end with CRLF");
        c->state = CH_TRAILER0;
        return 0;
    case CH_FINAL_LF:
        if (ch != '\n') return ch_fail(c, d, 400, SLM_EFORMAT, "final chunk must end with CRLF");
        c->state = CH_DONE;
        return 0;
    case CH_DATA:
    case CH_DONE:
    default:
        return ch_fail(c, d, 500, SLM_EINTERNAL, "decoder state");
    }
}

/* Decodes chunked input; see parser.h for the contract. */
int http_chunked_decode(struct http_chunked *c, const char *in, size_t len, size_t *consumed,
                        struct slm_buf *out, struct slm_diag *d)
{
    size_t i = 0;
    int rc;

    *consumed = 0;
    if (c->state == CH_DONE) return 0;
    while (i < len) {
        if (c->state == CH_DATA) {
            size_t n = len - i;

            if ((uint64_t)n > c->chunk_left) n = (size_t)c->chunk_left;
            rc = slm_buf_append(out, in + i, n);
            if (rc < 0) {
                *consumed = i;
                return ch_fail(c, d, rc == SLM_ENOMEM ? 503 : 413, rc,
                               rc == SLM_ENOMEM ? "out of memory" : "body exceeds the size limit");
            }
            c->n_data += n;
            c->chunk_left -= n;
            i += n;
            if (c->chunk_left == 0) c->state = CH_DATA_CR;
            continue;
        }
        rc = chunked_byte(c, (unsigned char)in[i], d);
        i++;
        if (rc < 0) {
            *consumed = i;
            return rc;
        }
        if (c->n_overhead > c->n_data + SLM_LIMIT_HTTP_CHUNK_OVERHEAD) {
            *consumed = i;
            return ch_fail(c, d, 400, SLM_EFORMAT, "framing overhead too large (chunks too small)");
        }
        if (c->state == CH_DONE) {
            *consumed = i;
            return 0;
        }
    }
    *consumed = i;
    return SLM_EAGAIN;
}
