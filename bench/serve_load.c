/*
 * serve_load.c - a lean load generator for `slm serve`, and the same work done
 * by the engine directly, for bench/serve.sh (a benchmark, not a test).
 *
 *   serve_load [CONNECTION] stream  -c STREAMS -r REQUESTS -p PROMPT -n TOKENS
 *   serve_load [CONNECTION] complete -r REQUESTS -p PROMPT -n TOKENS [--sse] [ENGINE]
 *   serve_load [CONNECTION] rtt (--models | --tokenize | --health) -r REQUESTS
 *   serve_load engine -p PROMPT -n TOKENS -r REQUESTS ENGINE
 *
 * ENGINE: -m MODEL [-t THREADS] [--ctx-size N] [--slots N], the settings the
 * server was started with (slm serve -t, -c, -np).
 *
 * CONNECTION: --port N [--host 127.0.0.1] [--cacert FILE [--resume]]
 * [--key-file FILE] [--new-conn | --http1.0]. With --cacert the client speaks
 * TLS (OpenSSL, the certificate verified against FILE and the host's IP
 * address), else plain HTTP (a server started with --insecure-http). --resume
 * offers the previous connection's TLS session (ticket) on each new
 * connection, as browsers, Node and curl do; without it every connection is a
 * full handshake. The API key is read from the first line of --key-file, never
 * from argv.
 *
 * Connections: every mode sends HTTP/1.1 requests one at a time on a kept-alive
 * connection and opens a new one only when the previous response's head said
 * Connection: close (or its body ended with the connection), as clients with a
 * connection pool do. --new-conn sends Connection: close with each request
 * instead (a new connection, and handshake, per request); --http1.0 sends
 * HTTP/1.0 requests, which the server answers on a connection it then closes
 * (a stream's body is then delimited by the close).
 *
 * Responses: the body is read as its head says, strictly: Transfer-Encoding:
 * chunked (hex chunk sizes without extensions, CRLF after each size line and
 * each chunk's data, the last chunk 0, no trailer fields), else
 * Content-Length, else up to the end of the connection. Anything else (a bare
 * LF, both Transfer-Encoding and Content-Length, another transfer coding,
 * bytes after the end of a body, a connection closed inside a body, a stream
 * without data: [DONE] or with events after it) fails the run with a message.
 * Each result line counts the responses by framing (body_chunked=,
 * body_length=, body_close=) and the connections opened (conns=, resumed=).
 *
 * Every completion request is POST /v1/completions with a prompt of exactly
 * PROMPT token ids, max_tokens TOKENS, temperature 0 and ignore_eos, so each
 * request does the same engine work. Its first two token ids encode the
 * request's index (--first N sets the first index) so no two prompts share a
 * prefix and the server's prefix cache never skips prompt work; the reported
 * cached_tokens sum shows that. Ids are taken from [16, 400), which every
 * model with 512 or more vocabulary entries has.
 *
 * stream: STREAMS threads start together; each sends REQUESTS streaming
 * requests back to back on its own connection, and the phase's numbers are
 * printed as one line of key=value: aggregate completion tokens per second of
 * wall time, and per request the time to first token (from sending the
 * request, or from connect when the request opens a connection, to the first
 * event carrying text), the total latency and the decode rate the client
 * sees, (tokens - 1) / (last text event - first text event).
 * complete: one client, REQUESTS requests one after another, non-streaming
 * (or streaming with --sse); per-request wall time.
 * With ENGINE, each request is paired with the engine doing the same work in
 * this process just before it, and the median of the per-pair differences
 * (server - engine) is reported as added_ms.
 * rtt: requests that do no engine work: the HTTP, TLS, auth and JSON cost.
 * engine: the same prompts and greedy generation through model_decode and the
 * sampler, what the server's scheduler does for one request, without the
 * server.
 *
 * Times are medians with p10/p90 (p99 for rtt) in milliseconds (rtt: in
 * microseconds). Exit status: 0 ok, 1 a request failed, 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"
#include "engine/model.h"
#include "engine/sample.h"

#define LOAD_PROMPT_MAX   32768 /* prompt tokens per request */
#define LOAD_TOKENS_MAX   32768 /* max_tokens per request */
#define LOAD_REQUESTS_MAX 1000000
#define LOAD_STREAMS_MAX  256
#define LOAD_BODY_MAX     (1u << 20)  /* request body bytes */
#define LOAD_RESP_MAX     (16u << 20) /* response bytes */
#define LOAD_IO_TIMEOUT_S 300         /* a request that hangs this long fails */
#define LOAD_ID_LO        16
#define LOAD_ID_SPAN      384

/* ---- connection settings and one connection ---- */

struct target {
    char host[64];
    uint16_t port;
    SSL_CTX *tls;  /* NULL: plain HTTP */
    bool resume;   /* resume TLS sessions on new connections (tickets), as browsers and Node do */
    bool new_conn; /* a new connection per request (Connection: close) */
    bool http10;   /* send HTTP/1.0 requests (responses then end with the connection) */
    char auth[320];
};

struct conn {
    int fd;
    SSL *ssl;
    SSL_SESSION *sess; /* the last connection's session, kept across conn_close */
    uint64_t n_opened, n_resumed;
    uint64_t n_bodies[4]; /* responses read, by enum body_kind */
    char in[65536];
    size_t in_len;  /* bytes in `in` not yet consumed */
    char ev[65536]; /* a stream's decoded body, up to the end of its last event */
    size_t ev_len;
};

static void conn_close(struct conn *c)
{
    if (c->ssl != NULL) {
        SSL_SESSION *s = SSL_get1_session(c->ssl);
        if (s != NULL && SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(c->sess);
            c->sess = s;
        } else {
            SSL_SESSION_free(s);
        }
        (void)SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->in_len = 0;
}

static int conn_open(struct conn *c, const struct target *t)
{
    struct sockaddr_in sa = { 0 };
    struct timeval tv = { .tv_sec = LOAD_IO_TIMEOUT_S };
    int one = 1;

    c->fd = -1;
    c->ssl = NULL;
    c->in_len = 0;
    sa.sin_family = AF_INET;
    sa.sin_port = htons(t->port);
    if (inet_pton(AF_INET, t->host, &sa.sin_addr) != 1) {
        fprintf(stderr, "serve_load: --host '%s' is not an IPv4 address\n", t->host);
        return SLM_EINVAL;
    }
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return SLM_EIO;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "serve_load: connect %s:%u: %s\n", t->host, t->port, strerror(errno));
        conn_close(c);
        return SLM_EIO;
    }
    c->n_opened++;
    if (t->tls == NULL) return 0;
    c->ssl = SSL_new(t->tls);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), t->host) != 1 ||
        (t->resume && c->sess != NULL && SSL_set_session(c->ssl, c->sess) != 1) ||
        SSL_connect(c->ssl) != 1) {
        fprintf(stderr, "serve_load: TLS handshake with %s:%u failed: %s\n", t->host, t->port,
                ERR_error_string(ERR_get_error(), NULL));
        conn_close(c);
        return SLM_EIO;
    }
    if (SSL_session_reused(c->ssl)) c->n_resumed++;
    return 0;
}

/* Closes c and forgets its saved session. */
static void conn_free(struct conn *c)
{
    conn_close(c);
    SSL_SESSION_free(c->sess);
    c->sess = NULL;
    slm_free(c);
}

static struct conn *conn_new(void)
{
    struct conn *c = slm_xcalloc(1, sizeof(*c));
    c->fd = -1;
    return c;
}

static int conn_write(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k;
        if (c->ssl != NULL) {
            size_t w = 0;
            k = SSL_write_ex(c->ssl, p, n, &w) == 1 ? (ssize_t)w : -1;
        } else {
            k = send(c->fd, p, n, MSG_NOSIGNAL);
            if (k < 0 && errno == EINTR) continue;
        }
        if (k <= 0) return SLM_EIO;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Appends what arrives to c->in; returns bytes read, 0 at end of stream, < 0 on error. */
static ssize_t conn_fill(struct conn *c)
{
    size_t room = sizeof(c->in) - 1 - c->in_len;
    ssize_t k;

    if (room == 0) return SLM_ELIMIT;
    if (c->ssl != NULL) {
        size_t r = 0;
        int ok = SSL_read_ex(c->ssl, c->in + c->in_len, room, &r);
        if (ok != 1) {
            int e = SSL_get_error(c->ssl, 0);
            return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : SLM_EIO;
        }
        k = (ssize_t)r;
    } else {
        do {
            k = recv(c->fd, c->in + c->in_len, room, 0);
        } while (k < 0 && errno == EINTR);
        if (k < 0) return SLM_EIO;
    }
    c->in_len += (size_t)k;
    c->in[c->in_len] = '\0';
    return k;
}

static void conn_consume(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
    c->in[c->in_len] = '\0';
}

/* ---- HTTP/1.1 responses ---- */

/* How the response's body is delimited (RFC 9112 6.3). */
enum body_kind {
    BODY_EMPTY,   /* 204, 304: no body */
    BODY_LENGTH,  /* Content-Length */
    BODY_CHUNKED, /* Transfer-Encoding: chunked */
    BODY_CLOSE,   /* neither: the body ends with the connection */
};

/* Where a chunked body's decoder is. */
enum chunk_state {
    CHUNK_SIZE,     /* before a chunk-size line: hex digits, CRLF */
    CHUNK_DATA,     /* inside a chunk's data: `left` bytes to come */
    CHUNK_DATA_END, /* the CRLF after a chunk's data */
    CHUNK_LAST_END, /* after the last chunk (size 0): the final CRLF, no trailers */
};

struct response {
    int status;
    bool close; /* the connection carries no further request */
    enum body_kind kind;
    enum chunk_state chunk;
    uint64_t left;   /* LENGTH: body bytes to come; CHUNKED: bytes left of this chunk */
    uint64_t n_body; /* decoded body bytes so far */
    bool done;       /* the whole body has been read */
    struct slm_buf body;
};

static const char *const body_kind_name[] = { "no body", "Content-Length", "chunked",
                                              "close-delimited" };

/*
 * Returns out, holding the first bytes of p[0..n) for a message: at most 40,
 * CR and LF as \\r and \\n, other control bytes as \\xHH. out has 200 bytes.
 */
static const char *shown(const char *p, size_t n, char out[200])
{
    size_t k = 0;

    for (size_t i = 0; i < n && i < 40; i++) {
        unsigned char b = (unsigned char)p[i];
        if (b == '\r' || b == '\n') {
            out[k++] = '\\';
            out[k++] = b == '\r' ? 'r' : 'n';
        } else if (b < 0x20 || b >= 0x7f || b == '\\') {
            k += (size_t)snprintf(out + k, 200 - k, "\\x%02x", b);
        } else {
            out[k++] = (char)b;
        }
    }
    out[k] = '\0';
    return out;
}

/* Whether the comma-separated header value v[0..n) lists token (case-insensitive). */
static bool list_has(const char *v, size_t n, const char *token)
{
    size_t k = strlen(token), i = 0;

    while (i < n) {
        size_t a = i, b;
        while (i < n && v[i] != ',')
            i++;
        b = i++;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (b - a == k && strncasecmp(v + a, token, k) == 0) return true;
    }
    return false;
}

/* The one header field of head line p[0..n): sets r's framing fields. */
static int head_field(const char *p, size_t n, struct response *r, bool *has_len, bool *has_te)
{
    const char *colon = memchr(p, ':', n);
    const char *v;
    size_t name_len, vn;
    uint64_t u = 0;

    if (colon == NULL || colon == p || p[0] == ' ' || p[0] == '\t') {
        fprintf(stderr, "serve_load: bad response header line '%.*s'\n", (int)(n < 200 ? n : 200),
                p);
        return SLM_EFORMAT;
    }
    name_len = (size_t)(colon - p);
    v = colon + 1;
    vn = n - name_len - 1;
    while (vn > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    if (name_len == 14 && strncasecmp(p, "content-length", 14) == 0) {
        if (vn == 0 || vn > 12) goto bad_len;
        for (size_t i = 0; i < vn; i++) {
            if (v[i] < '0' || v[i] > '9') goto bad_len;
            u = u * 10 + (uint64_t)(v[i] - '0');
        }
        if (*has_len && u != r->left) goto bad_len;
        if (u > LOAD_RESP_MAX) {
            fprintf(stderr, "serve_load: Content-Length %llu is over the %u-byte cap\n",
                    (unsigned long long)u, LOAD_RESP_MAX);
            return SLM_ELIMIT;
        }
        *has_len = true;
        r->left = u;
    } else if (name_len == 17 && strncasecmp(p, "transfer-encoding", 17) == 0) {
        if (*has_te || vn != 7 || strncasecmp(v, "chunked", 7) != 0) {
            fprintf(stderr,
                    "serve_load: Transfer-Encoding '%.*s' not understood (one 'chunked' "
                    "expected)\n",
                    (int)(vn < 100 ? vn : 100), v);
            return SLM_EFORMAT;
        }
        *has_te = true;
    } else if (name_len == 10 && strncasecmp(p, "connection", 10) == 0) {
        if (list_has(v, vn, "close")) r->close = true;
    }
    return 0;
bad_len:
    fprintf(stderr, "serve_load: bad Content-Length '%.*s'\n", (int)(vn < 100 ? vn : 100), v);
    return SLM_EFORMAT;
}

/*
 * Reads the status line and the header fields, and decides how the body is
 * delimited: chunked with Transfer-Encoding: chunked, else Content-Length,
 * else the end of the connection. r->close: the head says Connection: close,
 * the response is HTTP/1.0, or the body ends with the connection.
 */
static int response_head(struct conn *c, struct response *r)
{
    const char *end, *p, *line_end;
    bool has_len = false, has_te = false;
    size_t n;
    int rc;

    while ((end = strstr(c->in, "\r\n\r\n")) == NULL) {
        ssize_t k = conn_fill(c);
        if (k == 0) {
            fprintf(stderr, "serve_load: connection closed before a response head%s\n",
                    c->in_len > 0 ? " was complete" : "");
            return SLM_EIO;
        }
        if (k < 0) {
            fprintf(stderr, "serve_load: reading a response head: %s\n",
                    k == SLM_ELIMIT ? "over 64 KiB" : "receive failed or timed out");
            return (int)k;
        }
    }
    n = (size_t)(end - c->in) + 4;
    r->status = 0;
    r->close = false;
    r->left = 0;
    r->n_body = 0;
    r->done = false;
    r->chunk = CHUNK_SIZE;
    if (n < 14 || (strncmp(c->in, "HTTP/1.1 ", 9) != 0 && strncmp(c->in, "HTTP/1.0 ", 9) != 0) ||
        c->in[9] < '1' || c->in[9] > '5' || c->in[10] < '0' || c->in[10] > '9' || c->in[11] < '0' ||
        c->in[11] > '9' || (c->in[12] != ' ' && c->in[12] != '\r')) {
        fprintf(stderr, "serve_load: bad status line '%.*s'\n", (int)strcspn(c->in, "\r\n"), c->in);
        return SLM_EFORMAT;
    }
    r->status = (c->in[9] - '0') * 100 + (c->in[10] - '0') * 10 + (c->in[11] - '0');
    if (r->status < 200) {
        fprintf(stderr, "serve_load: unexpected interim response %d\n", r->status);
        return SLM_EFORMAT;
    }
    if (c->in[7] == '0') r->close = true; /* HTTP/1.0: no keep-alive asked for */
    p = strstr(c->in, "\r\n") + 2;
    while (p < end + 2) {
        line_end = strstr(p, "\r\n");
        if (memchr(p, '\n', (size_t)(line_end - p)) != NULL) {
            fprintf(stderr, "serve_load: bare LF in the response head\n");
            return SLM_EFORMAT;
        }
        if ((rc = head_field(p, (size_t)(line_end - p), r, &has_len, &has_te)) < 0) return rc;
        p = line_end + 2;
    }
    if (has_te && has_len) {
        fprintf(stderr, "serve_load: response has both Transfer-Encoding and Content-Length\n");
        return SLM_EFORMAT;
    }
    if (r->status == 204 || r->status == 304) {
        r->kind = BODY_EMPTY;
        r->done = true;
    } else if (has_te) {
        r->kind = BODY_CHUNKED;
    } else if (has_len) {
        r->kind = BODY_LENGTH;
        r->done = r->left == 0;
    } else {
        r->kind = BODY_CLOSE;
        r->close = true;
    }
    conn_consume(c, n);
    return 0;
}

/*
 * Returns 1 with *len set when c->in starts with a line of at most max bytes
 * ended by CRLF (*len excludes the CRLF), 0 when more bytes are needed, < 0 for
 * a bare LF or a longer line. what names the line in the message.
 */
static int take_line(const struct conn *c, size_t max, const char *what, size_t *len)
{
    char tmp[200];

    for (size_t i = 0; i < c->in_len && i <= max + 1; i++) {
        if (c->in[i] != '\n') continue;
        if (i == 0 || c->in[i - 1] != '\r') {
            fprintf(stderr, "serve_load: %s ends with a bare LF (CRLF expected)\n", what);
            return SLM_EFORMAT;
        }
        *len = i - 1;
        return 1;
    }
    if (c->in_len <= max + 1) return 0;
    fprintf(stderr, "serve_load: %s: got '%s', which the chunked coding does not allow there\n",
            what, shown(c->in, c->in_len, tmp));
    return SLM_EFORMAT;
}

/* The chunk-size line p[0..n): 1 to 16 hex digits, no extensions. */
static int chunk_size(const char *p, size_t n, uint64_t *size)
{
    char tmp[200];
    uint64_t u = 0;

    if (n == 0 || n > 16) goto bad;
    for (size_t i = 0; i < n; i++) {
        int d = p[i] >= '0' && p[i] <= '9'   ? p[i] - '0'
                : p[i] >= 'a' && p[i] <= 'f' ? p[i] - 'a' + 10
                : p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 10
                                             : -1;
        if (d < 0) goto bad;
        u = u << 4 | (uint64_t)d;
        if (u > LOAD_RESP_MAX) {
            fprintf(stderr, "serve_load: chunk size '%.*s' is over the %u-byte cap\n", (int)n, p,
                    LOAD_RESP_MAX);
            return SLM_ELIMIT;
        }
    }
    *size = u;
    return 0;
bad:
    fprintf(stderr, "serve_load: bad chunk-size line '%s' (hex digits then CRLF expected)\n",
            shown(p, n, tmp));
    return SLM_EFORMAT;
}

/* One step of the chunked decoder on the bytes in c->in: 1 progress, 0 more bytes needed. */
static int chunk_step(struct conn *c, struct response *r)
{
    size_t len;
    int rc;

    switch (r->chunk) {
    case CHUNK_SIZE:
        if ((rc = take_line(c, 16, "chunk-size line", &len)) <= 0) return rc;
        if ((rc = chunk_size(c->in, len, &r->left)) < 0) return rc;
        if (r->left > LOAD_RESP_MAX - r->n_body) {
            fprintf(stderr, "serve_load: chunked body over the %u-byte cap\n", LOAD_RESP_MAX);
            return SLM_ELIMIT;
        }
        conn_consume(c, len + 2);
        r->chunk = r->left == 0 ? CHUNK_LAST_END : CHUNK_DATA;
        return 1;
    case CHUNK_DATA_END:
        if ((rc = take_line(c, 0, "the CRLF after a chunk's data", &len)) <= 0) return rc;
        conn_consume(c, 2);
        r->chunk = CHUNK_SIZE;
        return 1;
    case CHUNK_LAST_END:
        /* The server sends no trailer fields: a line here is an error. */
        if ((rc = take_line(c, 0, "the CRLF after the last chunk (no trailers expected)", &len)) <=
            0)
            return rc;
        conn_consume(c, 2);
        r->done = true;
        return 1;
    case CHUNK_DATA:
        break;
    }
    return SLM_EINTERNAL;
}

/*
 * Decodes the next body bytes of r from c into dst[0..cap) (cap > 0): *got
 * bytes, as soon as any are there; *got 0 and r->done at the end of the body.
 * After a Content-Length or chunked body c must hold nothing more (one request
 * is in flight at a time).
 */
static int body_read(struct conn *c, struct response *r, char *dst, size_t cap, size_t *got)
{
    *got = 0;
    while (!r->done) {
        size_t n = c->in_len;
        ssize_t k;
        int rc;

        if (r->kind == BODY_CHUNKED && r->chunk != CHUNK_DATA) {
            if ((rc = chunk_step(c, r)) < 0) return rc;
            if (rc > 0) continue;
        } else if (n > 0) {
            if (r->kind != BODY_CLOSE && n > r->left) n = (size_t)r->left;
            if (n > cap) n = cap;
            memcpy(dst, c->in, n);
            conn_consume(c, n);
            r->n_body += n;
            if (r->kind == BODY_CLOSE && r->n_body > LOAD_RESP_MAX) {
                fprintf(stderr, "serve_load: body over the %u-byte cap\n", LOAD_RESP_MAX);
                return SLM_ELIMIT;
            }
            if (r->kind != BODY_CLOSE) r->left -= n;
            if (r->kind == BODY_LENGTH && r->left == 0) r->done = true;
            if (r->kind == BODY_CHUNKED && r->left == 0) r->chunk = CHUNK_DATA_END;
            *got = n;
            break;
        }
        k = conn_fill(c);
        if (k > 0) continue;
        if (k == 0 && r->kind == BODY_CLOSE) {
            r->done = true;
            break;
        }
        fprintf(stderr, "serve_load: %s %s body after %llu bytes\n",
                k == 0 ? "connection closed inside the" : "receive failed or timed out in the",
                body_kind_name[r->kind], (unsigned long long)r->n_body);
        return k == 0 ? SLM_EIO : (int)k;
    }
    if (r->done && c->in_len > 0) {
        char tmp[200];
        fprintf(stderr, "serve_load: %zu unexpected bytes after the %s body: '%s'\n", c->in_len,
                body_kind_name[r->kind], shown(c->in, c->in_len, tmp));
        return SLM_EFORMAT;
    }
    return 0;
}

/* Reads the whole body into r->body. */
static int response_body(struct conn *c, struct response *r)
{
    char tmp[16384];
    size_t got;
    int rc;

    while (!r->done) {
        if ((rc = body_read(c, r, tmp, sizeof(tmp), &got)) < 0) return rc;
        if (slm_buf_append(&r->body, tmp, got) < 0) return SLM_ELIMIT;
    }
    return 0;
}

/* The unsigned number after `key` in s, or 0. */
static uint64_t json_u64_after(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    char num[24];
    size_t i;
    uint64_t u = 0;

    if (p == NULL) return 0;
    p += strlen(key);
    for (i = 0; i + 1 < sizeof(num) && p[i] >= '0' && p[i] <= '9'; i++)
        num[i] = p[i];
    num[i] = '\0';
    return slm_parse_u64(num, &u) < 0 ? 0 : u;
}

/* ---- requests ---- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The prompt of request idx: n_prompt ids, the first two encoding idx. */
static void prompt_ids(uint64_t idx, size_t n_prompt, tok_id *out)
{
    for (size_t k = 0; k < n_prompt; k++) {
        uint64_t v = k == 0   ? idx % LOAD_ID_SPAN
                     : k == 1 ? (idx / LOAD_ID_SPAN) % LOAD_ID_SPAN
                              : splitmix64(idx * 1000003u + k) % LOAD_ID_SPAN;
        out[k] = (tok_id)(LOAD_ID_LO + v);
    }
}

static int completion_body(struct slm_buf *b, uint64_t idx, size_t n_prompt, size_t n_tokens,
                           bool stream, tok_id *scratch)
{
    int rc = 0;

    slm_buf_reset(b);
    prompt_ids(idx, n_prompt, scratch);
    rc |= slm_buf_append_str(b, "{\"prompt\":[");
    for (size_t k = 0; k < n_prompt; k++)
        rc |= slm_buf_printf(b, "%s%d", k ? "," : "", (int)scratch[k]);
    rc |= slm_buf_printf(b,
                         "],\"max_tokens\":%zu,\"temperature\":0,\"ignore_eos\":true,"
                         "\"stream\":%s%s}",
                         n_tokens, stream ? "true" : "false",
                         stream ? ",\"stream_options\":{\"include_usage\":true}" : "");
    return rc < 0 ? SLM_ELIMIT : 0;
}

static int send_request(struct conn *c, const struct target *t, const char *method,
                        const char *path, const struct slm_buf *body)
{
    struct slm_buf h;
    int rc;

    slm_buf_init(&h, 4096);
    rc = slm_buf_printf(&h,
                        "%s %s HTTP/1.%c\r\nHost: %s:%u\r\nAuthorization: Bearer %s\r\n"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
                        method, path, t->http10 ? '0' : '1', t->host, t->port, t->auth,
                        body ? body->len : 0,
                        t->new_conn && !t->http10 ? "Connection: close\r\n" : "");
    if (rc == 0 && body != NULL) rc = slm_buf_append(&h, body->data, body->len);
    if (rc == 0) rc = conn_write(c, h.data, h.len);
    explicit_bzero(h.data, h.len);
    slm_buf_fini(&h);
    return rc;
}

/* What one completion request measured. */
struct sample {
    uint64_t t_total_ns;
    uint64_t t_first_ns; /* first event with text (streams) */
    uint64_t t_last_ns;  /* last event with text */
    uint64_t n_tokens;   /* usage.completion_tokens */
    uint64_t n_cached;   /* usage.prompt_tokens_details.cached_tokens */
};

static void report_http_error(const struct response *r)
{
    fprintf(stderr, "serve_load: HTTP %d: %.300s\n", r->status, slm_buf_str(&r->body));
}

/*
 * Reads an SSE stream's body (chunked, or to the end of the connection) to its
 * end, stamping the first and last events that carry text, relative to t0, and
 * the usage event's counts. The stream must end with data: [DONE] and nothing
 * after it.
 */
static int read_stream(struct conn *c, struct response *r, uint64_t t0, struct sample *s)
{
    bool done = false;
    size_t got;
    int rc;

    c->ev_len = 0;
    while (!r->done) {
        char *ev;
        if (c->ev_len + 1 >= sizeof(c->ev)) {
            fprintf(stderr, "serve_load: an SSE event over %zu bytes\n", sizeof(c->ev) - 1);
            return SLM_ELIMIT;
        }
        rc = body_read(c, r, c->ev + c->ev_len, sizeof(c->ev) - 1 - c->ev_len, &got);
        if (rc < 0) return rc;
        c->ev_len += got;
        c->ev[c->ev_len] = '\0';
        while ((ev = strstr(c->ev, "\n\n")) != NULL) {
            size_t n = (size_t)(ev - c->ev) + 2;
            uint64_t now = slm_now_ns() - t0;
            *ev = '\0';
            if (done && c->ev[0] != ':') {
                fprintf(stderr, "serve_load: event after data: [DONE]: %.300s\n", c->ev);
                return SLM_EFORMAT;
            }
            if (strcmp(c->ev, "data: [DONE]") == 0) {
                done = true;
            } else if (strncmp(c->ev, "data: ", 6) == 0) {
                const char *txt = strstr(c->ev, "\"text\":\"");
                if (txt != NULL && txt[8] != '"') {
                    if (s->t_first_ns == 0) s->t_first_ns = now;
                    s->t_last_ns = now;
                }
                if (strstr(c->ev, "\"error\"") != NULL) {
                    fprintf(stderr, "serve_load: stream error: %.300s\n", c->ev);
                    return SLM_EIO;
                }
                if (strstr(c->ev, "\"completion_tokens\":") != NULL) {
                    s->n_tokens = json_u64_after(c->ev, "\"completion_tokens\":");
                    s->n_cached = json_u64_after(c->ev, "\"cached_tokens\":");
                }
            }
            memmove(c->ev, c->ev + n, c->ev_len - n);
            c->ev_len -= n;
            c->ev[c->ev_len] = '\0';
        }
    }
    if (!done || c->ev_len > 0) {
        fprintf(stderr, "serve_load: %s stream ended %s\n", body_kind_name[r->kind],
                !done ? "without data: [DONE]" : "inside an event");
        return SLM_EIO;
    }
    return 0;
}

/*
 * One completion request on *c, opened (and timed) first when closed. The
 * connection is kept for the next request unless the response or t->new_conn
 * says close.
 */
static int do_completion(struct conn *c, const struct target *t, uint64_t idx, size_t n_prompt,
                         size_t n_tokens, bool stream, struct slm_buf *body, tok_id *scratch,
                         struct sample *s)
{
    struct response r = { 0 };
    uint64_t t0;
    int rc;

    memset(s, 0, sizeof(*s));
    if ((rc = completion_body(body, idx, n_prompt, n_tokens, stream, scratch)) < 0) return rc;
    slm_buf_init(&r.body, LOAD_RESP_MAX);
    t0 = slm_now_ns();
    if (c->fd < 0 && (rc = conn_open(c, t)) < 0) goto out;
    if ((rc = send_request(c, t, "POST", "/v1/completions", body)) < 0 ||
        (rc = response_head(c, &r)) < 0)
        goto out;
    if (r.status != 200 || !stream) {
        if ((rc = response_body(c, &r)) < 0) goto out;
        if (r.status != 200) {
            report_http_error(&r);
            rc = SLM_EIO;
            goto out;
        }
        s->n_tokens = json_u64_after(slm_buf_str(&r.body), "\"completion_tokens\":");
        s->n_cached = json_u64_after(slm_buf_str(&r.body), "\"cached_tokens\":");
    } else {
        rc = read_stream(c, &r, t0, s);
    }
    s->t_total_ns = slm_now_ns() - t0;
    if (rc == 0) c->n_bodies[r.kind]++;
out:
    if (rc < 0 || r.close || t->new_conn) conn_close(c);
    slm_buf_fini(&r.body);
    return rc;
}

/* ---- statistics ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentile q (0..100, nearest rank) of v[0..n), sorted in place. */
static double pct(uint64_t *v, size_t n, double q)
{
    size_t i;
    if (n == 0) return 0;
    qsort(v, n, sizeof(*v), cmp_u64);
    i = (size_t)(q / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i < n ? i : n - 1];
}

/* Prints name_med, name_p10, name_p90 of v (ns) in the unit given by div. */
static void print_dist(const char *name, uint64_t *v, size_t n, double div)
{
    printf(" %s_med=%.3f %s_p10=%.3f %s_p90=%.3f", name, pct(v, n, 50) / div, name,
           pct(v, n, 10) / div, name, pct(v, n, 90) / div);
}

/*
 * Ends a result line: the transport, the connections opened (resumed: TLS
 * sessions resumed) and the responses read by how their body was delimited.
 */
static void print_conn(const struct target *t, uint64_t n_opened, uint64_t n_resumed,
                       const uint64_t n_bodies[4], int rc)
{
    printf(" tls=%d http10=%d new_conn=%d conns=%llu resumed=%llu body_length=%llu "
           "body_chunked=%llu body_close=%llu ok=%d\n",
           t->tls != NULL, t->http10, t->new_conn, (unsigned long long)n_opened,
           (unsigned long long)n_resumed, (unsigned long long)n_bodies[BODY_LENGTH],
           (unsigned long long)n_bodies[BODY_CHUNKED], (unsigned long long)n_bodies[BODY_CLOSE],
           rc == 0);
}

/* ---- modes ---- */

struct opts {
    struct target t;
    size_t n_streams, n_requests, n_prompt, n_tokens;
    uint64_t first;
    bool sse;
    const char *rtt_path; /* rtt mode */
    const char *model;
    uint32_t n_threads, n_ctx, n_slots;
};

struct stream_arg {
    const struct opts *o;
    size_t id;
    pthread_barrier_t *start;
    struct sample *samples; /* [n_requests] */
    uint64_t n_opened, n_resumed, n_bodies[4];
    int rc;
};

static void *stream_main(void *p)
{
    struct stream_arg *a = p;
    const struct opts *o = a->o;
    struct conn *c = conn_new();
    tok_id *scratch = slm_xcalloc(o->n_prompt, sizeof(tok_id));
    struct slm_buf body;

    slm_buf_init(&body, LOAD_BODY_MAX);
    (void)pthread_barrier_wait(a->start);
    for (size_t r = 0; r < o->n_requests && a->rc == 0; r++) {
        uint64_t idx = o->first + a->id * o->n_requests + r;
        a->rc = do_completion(c, &o->t, idx, o->n_prompt, o->n_tokens, true, &body, scratch,
                              &a->samples[r]);
    }
    a->n_opened = c->n_opened;
    a->n_resumed = c->n_resumed;
    memcpy(a->n_bodies, c->n_bodies, sizeof(a->n_bodies));
    conn_free(c);
    slm_buf_fini(&body);
    slm_free(scratch);
    return NULL;
}

static int mode_stream(const struct opts *o)
{
    size_t n = o->n_streams * o->n_requests, k = 0;
    struct stream_arg *args = slm_xcalloc(o->n_streams, sizeof(*args));
    pthread_t *th = slm_xcalloc(o->n_streams, sizeof(*th));
    struct sample *all = slm_xcalloc(n, sizeof(*all));
    uint64_t *ttft = slm_xcalloc(n, sizeof(uint64_t)), *lat = slm_xcalloc(n, sizeof(uint64_t));
    uint64_t *rate = slm_xcalloc(n, sizeof(uint64_t));
    uint64_t n_tok = 0, n_cached = 0, n_opened = 0, n_resumed = 0, n_bodies[4] = { 0 }, t0, wall;
    pthread_barrier_t start;
    int rc = 0;

    (void)pthread_barrier_init(&start, NULL, (unsigned)o->n_streams + 1);
    for (size_t i = 0; i < o->n_streams; i++) {
        args[i] = (struct stream_arg){
            .o = o, .id = i, .start = &start, .samples = all + i * o->n_requests
        };
        if (pthread_create(&th[i], NULL, stream_main, &args[i]) != 0) {
            fprintf(stderr, "serve_load: pthread_create failed\n");
            exit(1);
        }
    }
    (void)pthread_barrier_wait(&start);
    t0 = slm_now_ns();
    for (size_t i = 0; i < o->n_streams; i++) {
        (void)pthread_join(th[i], NULL);
        if (args[i].rc < 0) rc = args[i].rc;
        n_opened += args[i].n_opened;
        n_resumed += args[i].n_resumed;
        for (size_t b = 0; b < 4; b++)
            n_bodies[b] += args[i].n_bodies[b];
    }
    wall = slm_now_ns() - t0;
    (void)pthread_barrier_destroy(&start);
    for (size_t i = 0; i < n; i++) {
        const struct sample *s = &all[i];
        n_tok += s->n_tokens;
        n_cached += s->n_cached;
        ttft[k] = s->t_first_ns;
        lat[k] = s->t_total_ns;
        /* Decode rate in milli-tokens per second, to keep integers for pct(). */
        rate[k] = s->n_tokens > 1 && s->t_last_ns > s->t_first_ns
                      ? (uint64_t)((double)(s->n_tokens - 1) * 1e12 /
                                   (double)(s->t_last_ns - s->t_first_ns))
                      : 0;
        k++;
    }
    printf("mode=stream streams=%zu requests=%zu prompt=%zu max_tokens=%zu tokens=%llu "
           "cached=%llu wall_s=%.3f agg_tps=%.2f",
           o->n_streams, n, o->n_prompt, o->n_tokens, (unsigned long long)n_tok,
           (unsigned long long)n_cached, (double)wall / 1e9, (double)n_tok * 1e9 / (double)wall);
    print_dist("stream_tps", rate, k, 1e3);
    print_dist("ttft_ms", ttft, k, 1e6);
    print_dist("latency_ms", lat, k, 1e6);
    print_conn(&o->t, n_opened, n_resumed, n_bodies, rc);
    slm_free(rate);
    slm_free(lat);
    slm_free(ttft);
    slm_free(all);
    slm_free(th);
    slm_free(args);
    return rc;
}

/* ---- the engine directly ---- */

/* The model, a context shaped like the server's, a greedy sampler, scratch. */
struct engine {
    struct model *m;
    struct model_context *ctx;
    struct sampler *smp;
    tok_id *toks;
    int32_t *pos, *seq;
    bool *want;
    size_t n_batch;
};

static void engine_close(struct engine *e)
{
    sampler_free(e->smp);
    model_context_free(e->ctx);
    model_free(e->m);
    slm_free(e->want);
    slm_free(e->seq);
    slm_free(e->pos);
    slm_free(e->toks);
    memset(e, 0, sizeof(*e));
}

/* Loads o->model with n_ctx, n_slots sequences and n_threads like `slm serve`. */
static int engine_open(struct engine *e, const struct opts *o)
{
    struct model_context_params cp = model_context_params_default();
    struct sampler_params sp = sampler_params_default();
    struct slm_diag d = { 0 };
    int rc;

    memset(e, 0, sizeof(*e));
    e->n_batch = 512; /* the scheduler's */
    e->toks = slm_xcalloc(o->n_prompt, sizeof(tok_id));
    e->pos = slm_xcalloc(e->n_batch, sizeof(int32_t));
    e->seq = slm_xcalloc(e->n_batch, sizeof(int32_t));
    e->want = slm_xcalloc(e->n_batch, sizeof(bool));
    if ((rc = model_load(o->model, &e->m, &d)) < 0) {
        fprintf(stderr, "serve_load: %s: %s\n", o->model, d.msg);
        goto fail;
    }
    cp.n_ctx = o->n_ctx;
    cp.n_seq = o->n_slots;
    cp.n_batch = (uint32_t)e->n_batch;
    cp.n_threads = o->n_threads;
    if ((rc = model_context_new(e->m, &cp, &e->ctx, &d)) < 0) {
        fprintf(stderr, "serve_load: context: %s\n", d.msg);
        goto fail;
    }
    if (o->n_prompt + o->n_tokens > model_context_n_ctx(e->ctx)) {
        fprintf(stderr, "serve_load: -p %zu + -n %zu do not fit the context of %u\n", o->n_prompt,
                o->n_tokens, model_context_n_ctx(e->ctx));
        rc = SLM_EINVAL;
        goto fail;
    }
    sp.temp = 0;
    sp.seed = 0;
    e->smp = sampler_new(&sp, tokenizer_n_vocab(model_get_tokenizer(e->m)));
    if (e->smp == NULL) {
        rc = SLM_ENOMEM;
        goto fail;
    }
    return 0;
fail:
    engine_close(e);
    return rc;
}

/*
 * Request idx's engine work as the scheduler does it: the prompt in chunks of
 * n_batch with logits for its last token, then n_tokens greedy samples, each
 * decoded before the next (the last one is not decoded). Stores the time taken.
 */
static int engine_request(struct engine *e, const struct opts *o, uint64_t idx, uint64_t *t_ns)
{
    struct slm_diag d = { 0 };
    struct model_batch b;
    size_t done = 0;
    uint64_t t0;
    tok_id t;

    prompt_ids(idx, o->n_prompt, e->toks);
    model_seq_rm(e->ctx, 0, 0, -1);
    sampler_reset(e->smp);
    t0 = slm_now_ns();
    while (done < o->n_prompt) {
        size_t n = o->n_prompt - done < e->n_batch ? o->n_prompt - done : e->n_batch;
        for (size_t k = 0; k < n; k++) {
            e->pos[k] = (int32_t)(done + k);
            e->want[k] = done + k + 1 == o->n_prompt;
            e->seq[k] = 0;
        }
        b = (struct model_batch){ n, e->toks + done, e->pos, e->seq, e->want };
        if (model_decode(e->ctx, &b, &d) < 0) goto fail;
        done += n;
    }
    for (size_t k = 0; k < o->n_prompt; k++)
        sampler_accept(e->smp, e->toks[k]);
    for (size_t g = 0; g < o->n_tokens; g++) {
        t = sampler_sample(e->smp, model_logits(e->ctx, 0));
        sampler_accept(e->smp, t);
        if (g + 1 == o->n_tokens) break;
        e->pos[0] = (int32_t)(o->n_prompt + g);
        e->want[0] = true;
        b = (struct model_batch){ 1, &t, e->pos, e->seq, e->want };
        if (model_decode(e->ctx, &b, &d) < 0) goto fail;
    }
    *t_ns = slm_now_ns() - t0;
    return 0;
fail:
    fprintf(stderr, "serve_load: model_decode: %s\n", d.msg);
    return d.code < 0 ? d.code : SLM_EINTERNAL;
}

static int mode_engine(const struct opts *o)
{
    struct engine e;
    uint64_t *lat = slm_xcalloc(o->n_requests, sizeof(uint64_t)), t;
    int rc;

    if ((rc = engine_open(&e, o)) < 0) goto out;
    /* One untimed request first: page faults, the threads' first wake-up. */
    rc = engine_request(&e, o, o->first, &t);
    for (size_t r = 0; r < o->n_requests && rc == 0; r++)
        rc = engine_request(&e, o, o->first + 1 + r, &lat[r]);
    printf("mode=engine threads=%u requests=%zu prompt=%zu max_tokens=%zu",
           model_context_n_threads(e.ctx), o->n_requests, o->n_prompt, o->n_tokens);
    print_dist("ms", lat, o->n_requests, 1e6);
    printf(" ok=%d\n", rc == 0);
    engine_close(&e);
out:
    slm_free(lat);
    return rc;
}

/*
 * One client, requests one after another. With -m MODEL, each server request
 * is paired with the same work done by the engine in this process just before
 * it (the server idles meanwhile), and the per-pair differences are reported
 * too: pairing cancels most of the drift of a shared machine.
 */
static int mode_complete(const struct opts *o)
{
    struct conn *c = conn_new();
    struct engine e = { 0 };
    tok_id *scratch = slm_xcalloc(o->n_prompt, sizeof(tok_id));
    uint64_t *lat = slm_xcalloc(o->n_requests, sizeof(uint64_t)), n_tok = 0, n_cached = 0;
    uint64_t *eng = slm_xcalloc(o->n_requests, sizeof(uint64_t));
    uint64_t *diff = slm_xcalloc(o->n_requests, sizeof(uint64_t)), t;
    const uint64_t bias = UINT64_C(1) << 62; /* differences are signed: stored + bias */
    struct slm_buf body;
    struct sample s;
    int rc = 0;

    slm_buf_init(&body, LOAD_BODY_MAX);
    if (o->model != NULL) {
        if ((rc = engine_open(&e, o)) < 0) goto out;
        rc = engine_request(&e, o, o->first, &t);
    }
    /* One untimed request first: page faults, thread wake-ups, the connection. */
    if (rc == 0)
        rc =
            do_completion(c, &o->t, o->first, o->n_prompt, o->n_tokens, o->sse, &body, scratch, &s);
    for (size_t r = 0; r < o->n_requests && rc == 0; r++) {
        uint64_t idx = o->first + 1 + r;
        if (o->model != NULL && (rc = engine_request(&e, o, idx, &eng[r])) < 0) break;
        rc = do_completion(c, &o->t, idx, o->n_prompt, o->n_tokens, o->sse, &body, scratch, &s);
        lat[r] = s.t_total_ns;
        diff[r] = lat[r] + bias - eng[r];
        n_tok += s.n_tokens;
        n_cached += s.n_cached;
    }
    printf("mode=complete sse=%d requests=%zu prompt=%zu max_tokens=%zu tokens=%llu cached=%llu",
           o->sse, o->n_requests, o->n_prompt, o->n_tokens, (unsigned long long)n_tok,
           (unsigned long long)n_cached);
    print_dist("ms", lat, o->n_requests, 1e6);
    if (o->model != NULL) {
        print_dist("engine_ms", eng, o->n_requests, 1e6);
        printf(" added_ms_med=%.3f added_ms_p10=%.3f added_ms_p90=%.3f",
               (pct(diff, o->n_requests, 50) - (double)bias) / 1e6,
               (pct(diff, o->n_requests, 10) - (double)bias) / 1e6,
               (pct(diff, o->n_requests, 90) - (double)bias) / 1e6);
    }
    print_conn(&o->t, c->n_opened, c->n_resumed, c->n_bodies, rc);
out:
    if (o->model != NULL) engine_close(&e);
    conn_free(c);
    slm_buf_fini(&body);
    slm_free(diff);
    slm_free(eng);
    slm_free(lat);
    slm_free(scratch);
    return rc;
}

static int mode_rtt(const struct opts *o)
{
    struct conn *c = conn_new();
    uint64_t *lat = slm_xcalloc(o->n_requests, sizeof(uint64_t));
    struct slm_buf body;
    bool post = strcmp(o->rtt_path, "/tokenize") == 0;
    size_t n_warm = o->n_requests / 10 + 1;
    int rc = 0;

    slm_buf_init(&body, 4096);
    if (post) rc = slm_buf_append_str(&body, "{\"content\":\"def fibonacci(n):\"}");
    for (size_t r = 0; r < n_warm + o->n_requests && rc == 0; r++) {
        struct response resp = { 0 };
        uint64_t t0;
        slm_buf_init(&resp.body, LOAD_RESP_MAX);
        t0 = slm_now_ns();
        if (c->fd < 0) rc = conn_open(c, &o->t);
        if (rc == 0) rc = send_request(c, &o->t, post ? "POST" : "GET", o->rtt_path, &body);
        if (rc == 0) rc = response_head(c, &resp);
        if (rc == 0) rc = response_body(c, &resp);
        if (rc == 0 && resp.status != 200) {
            report_http_error(&resp);
            rc = SLM_EIO;
        }
        if (r >= n_warm) lat[r - n_warm] = slm_now_ns() - t0;
        if (rc == 0) c->n_bodies[resp.kind]++;
        if (rc < 0 || resp.close || o->t.new_conn) conn_close(c);
        slm_buf_fini(&resp.body);
    }
    printf("mode=rtt path=%s requests=%zu us_med=%.1f us_p10=%.1f us_p90=%.1f us_p99=%.1f",
           o->rtt_path, o->n_requests, pct(lat, o->n_requests, 50) / 1e3,
           pct(lat, o->n_requests, 10) / 1e3, pct(lat, o->n_requests, 90) / 1e3,
           pct(lat, o->n_requests, 99) / 1e3);
    print_conn(&o->t, c->n_opened, c->n_resumed, c->n_bodies, rc);
    conn_free(c);
    slm_buf_fini(&body);
    slm_free(lat);
    return rc;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: serve_load [CONNECTION] stream -c STREAMS -r REQUESTS -p PROMPT -n TOKENS\n"
               "       serve_load [CONNECTION] complete -r REQUESTS -p PROMPT -n TOKENS [--sse] "
               "[ENGINE]\n"
               "       serve_load [CONNECTION] rtt --models|--tokenize|--health -r REQUESTS\n"
               "       serve_load engine -p PROMPT -n TOKENS -r REQUESTS ENGINE\n"
               "ENGINE: -m MODEL [-t THREADS] [--ctx-size N] [--slots N] (as slm serve -t -c -np)\n"
               "CONNECTION: --port N [--host 127.0.0.1] [--cacert FILE (TLS) [--resume]]\n"
               "            [--key-file FILE] [--first N (index of the first prompt)]\n"
               "            [--new-conn (one connection per request) | --http1.0]\n"
               "Prints one line of key=value results on stdout (see the head of serve_load.c).\n");
}

static int parse_count(const char *name, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (slm_parse_u64(s, out) < 0 || *out < lo || *out > hi) {
        fprintf(stderr, "serve_load: %s must be a whole number in [%llu, %llu], got '%s'\n", name,
                (unsigned long long)lo, (unsigned long long)hi, s);
        return SLM_EINVAL;
    }
    return 0;
}

static int read_key(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL) {
        fprintf(stderr, "serve_load: --key-file %s: %s\n", path, strerror(errno));
        return SLM_EIO;
    }
    if (fgets(out, (int)cap, f) == NULL) out[0] = '\0';
    fclose(f);
    n = strcspn(out, "\r\n");
    out[n] = '\0';
    if (n == 0) {
        fprintf(stderr, "serve_load: --key-file %s: the first line is empty\n", path);
        return SLM_EINVAL;
    }
    return 0;
}

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_CACERT,
    OPT_KEY_FILE,
    OPT_FIRST,
    OPT_SSE,
    OPT_MODELS,
    OPT_TOKENIZE,
    OPT_HEALTH,
    OPT_NEW_CONN,
    OPT_HTTP10,
    OPT_RESUME,
    OPT_CTX,
    OPT_SLOTS,
};

static int parse_opts(int argc, char **argv, struct opts *o, const char **mode)
{
    static const struct option lo[] = {
        { "host", required_argument, NULL, OPT_HOST },
        { "port", required_argument, NULL, OPT_PORT },
        { "cacert", required_argument, NULL, OPT_CACERT },
        { "key-file", required_argument, NULL, OPT_KEY_FILE },
        { "first", required_argument, NULL, OPT_FIRST },
        { "sse", no_argument, NULL, OPT_SSE },
        { "models", no_argument, NULL, OPT_MODELS },
        { "tokenize", no_argument, NULL, OPT_TOKENIZE },
        { "health", no_argument, NULL, OPT_HEALTH },
        { "new-conn", no_argument, NULL, OPT_NEW_CONN },
        { "http1.0", no_argument, NULL, OPT_HTTP10 },
        { "resume", no_argument, NULL, OPT_RESUME },
        { "ctx-size", required_argument, NULL, OPT_CTX },
        { "slots", required_argument, NULL, OPT_SLOTS },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *cacert = NULL, *key_file = NULL;
    uint64_t v;
    int ch;

    snprintf(o->t.host, sizeof(o->t.host), "127.0.0.1");
    o->n_streams = 1;
    o->n_requests = 10;
    o->n_prompt = 32;
    o->n_tokens = 16;
    o->n_slots = 1;
    while ((ch = getopt_long(argc, argv, "c:r:p:n:m:t:h", lo, NULL)) != -1) {
        switch (ch) {
        case OPT_HOST:
            if (strlen(optarg) >= sizeof(o->t.host)) return SLM_EINVAL;
            snprintf(o->t.host, sizeof(o->t.host), "%s", optarg);
            break;
        case OPT_PORT:
            if (parse_count("--port", optarg, 1, 65535, &v) < 0) return SLM_EINVAL;
            o->t.port = (uint16_t)v;
            break;
        case OPT_CACERT:
            cacert = optarg;
            break;
        case OPT_KEY_FILE:
            key_file = optarg;
            break;
        case OPT_FIRST:
            if (parse_count("--first", optarg, 0, UINT32_MAX, &o->first) < 0) return SLM_EINVAL;
            break;
        case OPT_SSE:
            o->sse = true;
            break;
        case OPT_MODELS:
            o->rtt_path = "/v1/models";
            break;
        case OPT_TOKENIZE:
            o->rtt_path = "/tokenize";
            break;
        case OPT_HEALTH:
            o->rtt_path = "/health";
            break;
        case OPT_NEW_CONN:
            o->t.new_conn = true;
            break;
        case OPT_HTTP10:
            o->t.http10 = true;
            o->t.new_conn = true; /* HTTP/1.0 without keep-alive: one request per connection */
            break;
        case OPT_RESUME:
            o->t.resume = true;
            break;
        case OPT_CTX:
            if (parse_count("--ctx-size", optarg, 0, 1u << 20, &v) < 0) return SLM_EINVAL;
            o->n_ctx = (uint32_t)v;
            break;
        case OPT_SLOTS:
            if (parse_count("--slots", optarg, 1, 256, &v) < 0) return SLM_EINVAL;
            o->n_slots = (uint32_t)v;
            break;
        case 'c':
            if (parse_count("-c", optarg, 1, LOAD_STREAMS_MAX, &v) < 0) return SLM_EINVAL;
            o->n_streams = (size_t)v;
            break;
        case 'r':
            if (parse_count("-r", optarg, 1, LOAD_REQUESTS_MAX, &v) < 0) return SLM_EINVAL;
            o->n_requests = (size_t)v;
            break;
        case 'p':
            if (parse_count("-p", optarg, 2, LOAD_PROMPT_MAX, &v) < 0) return SLM_EINVAL;
            o->n_prompt = (size_t)v;
            break;
        case 'n':
            if (parse_count("-n", optarg, 1, LOAD_TOKENS_MAX, &v) < 0) return SLM_EINVAL;
            o->n_tokens = (size_t)v;
            break;
        case 'm':
            o->model = optarg;
            break;
        case 't':
            if (parse_count("-t", optarg, 0, 1024, &v) < 0) return SLM_EINVAL;
            o->n_threads = (uint32_t)v;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return SLM_EINVAL;
        }
    }
    /* GNU getopt moves the mode word behind the options. */
    if (optind + 1 == argc) *mode = argv[optind];
    if (optind + 1 < argc) {
        fprintf(stderr, "serve_load: one mode word expected, got '%s' and more\n", argv[optind]);
        return SLM_EINVAL;
    }
    if (*mode == NULL) {
        fprintf(stderr, "serve_load: no mode (stream, complete, rtt, engine)\n");
        return SLM_EINVAL;
    }
    if (strcmp(*mode, "engine") == 0) {
        if (o->model == NULL) {
            fprintf(stderr, "serve_load: engine needs -m MODEL\n");
            return SLM_EINVAL;
        }
        return 0;
    }
    if (o->t.port == 0) {
        fprintf(stderr, "serve_load: --port is required\n");
        return SLM_EINVAL;
    }
    if (key_file != NULL && o->t.auth[0] == '\0' &&
        read_key(key_file, o->t.auth, sizeof(o->t.auth)) < 0)
        return SLM_EINVAL;
    if (cacert != NULL && o->t.tls == NULL) {
        o->t.tls = SSL_CTX_new(TLS_client_method());
        if (o->t.tls == NULL || SSL_CTX_set_min_proto_version(o->t.tls, TLS1_2_VERSION) != 1 ||
            SSL_CTX_load_verify_locations(o->t.tls, cacert, NULL) != 1) {
            fprintf(stderr, "serve_load: --cacert %s: %s\n", cacert,
                    ERR_error_string(ERR_get_error(), NULL));
            return SLM_EINVAL;
        }
        SSL_CTX_set_verify(o->t.tls, SSL_VERIFY_PEER, NULL);
    }
    if (strcmp(*mode, "rtt") == 0 && o->rtt_path == NULL) {
        fprintf(stderr, "serve_load: rtt needs --models, --tokenize or --health\n");
        return SLM_EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = { 0 };
    const char *mode = NULL;
    int rc;

    /* A server that closed first must not kill us on the TLS close_notify. */
    (void)signal(SIGPIPE, SIG_IGN);
    if (parse_opts(argc, argv, &o, &mode) < 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(mode, "stream") == 0)
        rc = mode_stream(&o);
    else if (strcmp(mode, "complete") == 0)
        rc = mode_complete(&o);
    else if (strcmp(mode, "rtt") == 0)
        rc = mode_rtt(&o);
    else if (strcmp(mode, "engine") == 0)
        rc = mode_engine(&o);
    else {
        fprintf(stderr, "serve_load: unknown mode '%s' (stream, complete, rtt, engine)\n", mode);
        usage(stderr);
        return 2;
    }
    explicit_bzero(o.t.auth, sizeof(o.t.auth));
    SSL_CTX_free(o.t.tls);
    return rc < 0 ? 1 : 0;
}
