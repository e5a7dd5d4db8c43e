/*
 * server.c - see server.h.
 *
 * One connection is one struct http_exchange and one state machine:
 *
 *   HANDSHAKE (TLS) -> HEAD -> BODY -> APP -> WRITE  -> HEAD (keep-alive) or close
 *                                         \-> STREAM -> HEAD (keep-alive) or close
 *
 * A stream's events are appended by the application to a staging buffer
 * (c->sse); each flush moves them into c->out as one chunk of the chunked
 * transfer coding, and the end adds the last chunk, so an HTTP/1.1 stream
 * has an end of its own and the connection carries the next request, like
 * any other response. HTTP/1.0 streams, and streams that end without their
 * last chunk (http_exchange_stream_abort, an output cap), close instead.
 *
 * APP means the application holds the exchange. The request head points
 * into the input buffer, so from APP on nothing is appended to it: bytes
 * that still arrive are read and dropped (only to notice end of stream), and
 * the connection is then closed after the response, since a pipelined
 * request was lost.
 *
 * Re-entrancy: the handler runs inside conn_drive, and the application may
 * answer either from there or later from a loop task. `depth` counts the
 * server frames on the stack for a connection; a connection that dies while
 * depth > 0 is only marked dead, and the outermost frame frees it.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/str.h"
#include "http/sse.h"

/* Extra response header bytes an application may add. */
#define SERVER_HEADERS_MAX  4096u
/* Bytes of a plain response head we write. */
#define SERVER_HEAD_MAX     (SERVER_HEADERS_MAX + 512u)
/* Read granularity. */
#define SERVER_READ_CHUNK   16384u
/* Compact the stream buffer once this many sent bytes sit at its start. */
#define SERVER_COMPACT_SENT 65536u
/* Lingering close after an error answered before the request was read:
 * how long, and how many bytes, to read and drop so that the client sees
 * the response instead of a reset (nginx lingering_close). */
#define SERVER_LINGER_MS    3000u
#define SERVER_LINGER_BYTES (16u << 20)
/* Buckets of the per-address connection counts (a power of two). */
#define SERVER_IP_BUCKETS   1024u

enum conn_state {
    CONN_HANDSHAKE,
    CONN_HEAD,
    CONN_BODY,
    CONN_APP,
    CONN_WRITE,
    CONN_STREAM,
    CONN_LINGER, /* response sent, write side shut: reading and dropping until EOF */
};

/* Open connections from one client address (IPv4, or an IPv6 /64 prefix). */
struct ip_count {
    struct ip_count *next;
    uint32_t n;
    uint8_t len; /* 4 or 8 bytes of addr */
    uint8_t addr[8];
};

struct http_exchange {
    struct http_server *srv;
    struct ip_count *ipc; /* this connection's address count, or NULL */
    struct http_exchange *prev, *next;
    int fd;
    enum conn_state state;
    struct http_io io;
    struct http_timer timer;
    struct http_tls_conn *tls;
    struct slm_buf in;   /* received, not yet consumed */
    size_t last_len;     /* bytes of in the head parser already saw */
    bool idle;           /* waiting for the first byte of a request */
    bool timer_on_write; /* the timer holds the write deadline */
    struct http_request req;
    size_t head_len;
    struct http_chunked chunked;
    size_t body_in; /* input bytes the chunked body used */
    struct slm_buf body;
    const char *path;
    size_t path_len;
    struct slm_buf hdrs; /* extra response headers */
    struct slm_buf out;
    size_t out_off;
    struct slm_buf sse; /* stream events not yet framed into out */
    bool sse_chunked;   /* the stream's body is chunked (HTTP/1.1) */
    bool close_after;
    bool linger;         /* after the response: lingering close (see CONN_LINGER) */
    size_t linger_bytes; /* dropped so far */
    bool stream_ended;
    bool dead;
    bool aborted;
    unsigned depth;
    http_abort_fn *abort_fn;
    void *abort_arg;
    char peer[64];
};

struct http_server {
    struct http_loop *loop;
    struct http_server_params p;
    int lfd;
    int reserve_fd; /* spare descriptor to shed connections at EMFILE */
    uint16_t port;
    bool draining;
    struct http_io listen_io;
    struct http_exchange *conns;
    size_t n_conns;
    struct http_server_stats stats;
    struct ip_count **ip_buckets; /* SERVER_IP_BUCKETS chains; NULL: no per-address cap */
    uint64_t ip_seed;             /* random: clients cannot pick colliding addresses */
};

static void conn_drive(struct http_exchange *c);

/* ---- parameters ---- */

/* Returns the limits of core/limits.h, no TLS and no handler. */
struct http_server_params http_server_params_default(void)
{
    struct http_server_params p;

    memset(&p, 0, sizeof(p));
    p.host = "127.0.0.1";
    p.port = 8443;
    p.max_conns = 1024;
    p.head_timeout_ms = SLM_LIMIT_HTTP_HEAD_TIMEOUT_MS;
    p.body_idle_ms = SLM_LIMIT_HTTP_BODY_IDLE_MS;
    p.keepalive_ms = SLM_LIMIT_HTTP_KEEPALIVE_IDLE_MS;
    p.write_idle_ms = SLM_LIMIT_HTTP_BODY_IDLE_MS;
    p.body_max = SLM_LIMIT_HTTP_BODY;
    p.stream_out_max = 1u << 20;
    return p;
}

/* ---- per-address connection counts ---- */

/*
 * The address key of a peer: an IPv4 address (also when IPv4-mapped into
 * IPv6), or the /64 prefix of an IPv6 address, since one IPv6 client
 * usually holds a whole /64. Returns the key length, 0 for other families.
 */
static size_t ip_key(const struct sockaddr_storage *ss, uint8_t key[8])
{
    if (ss->ss_family == AF_INET) {
        memcpy(key, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return 4;
    }
    if (ss->ss_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            memcpy(key, a + 12, 4);
            return 4;
        }
        memcpy(key, a, 8);
        return 8;
    }
    return 0;
}

static size_t ip_bucket(const struct http_server *s, const uint8_t *key, size_t len)
{
    uint64_t h = slm_fnv1a(s->ip_seed ^ SLM_FNV1A_INIT, key, len); /* seeded */

    h ^= h >> 29;
    return (size_t)(h & (SERVER_IP_BUCKETS - 1));
}

/*
 * Counts a new connection from ss. Returns the count it joined (or NULL when
 * there is no per-address cap or the family has no address), or sets
 * *over when the address already has max_conns_per_ip connections.
 */
static struct ip_count *ip_acquire(struct http_server *s, const struct sockaddr_storage *ss,
                                   bool *over)
{
    uint8_t key[8];
    size_t len, b;
    struct ip_count *e;

    *over = false;
    if (s->ip_buckets == NULL || (len = ip_key(ss, key)) == 0) return NULL;
    b = ip_bucket(s, key, len);
    for (e = s->ip_buckets[b]; e != NULL; e = e->next) {
        if (e->len == len && memcmp(e->addr, key, len) == 0) break;
    }
    if (e != NULL && e->n >= s->p.max_conns_per_ip) {
        *over = true;
        return NULL;
    }
    if (e == NULL) {
        e = slm_calloc(1, sizeof(*e));
        if (e == NULL) return NULL; /* not counted: the connection is still served */
        e->len = (uint8_t)len;
        memcpy(e->addr, key, len);
        e->next = s->ip_buckets[b];
        s->ip_buckets[b] = e;
    }
    e->n++;
    return e;
}

static void ip_release(struct http_server *s, struct ip_count *e)
{
    struct ip_count **pp;

    if (e == NULL || --e->n > 0) return;
    for (pp = &s->ip_buckets[ip_bucket(s, e->addr, e->len)]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            slm_free(e);
            return;
        }
    }
}

/* ---- connection life ---- */

static void conn_free(struct http_exchange *c)
{
    struct http_server *s = c->srv;

    ip_release(s, c->ipc);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    s->n_conns--;
    http_tls_conn_free(c->tls);
    close(c->fd);
    slm_buf_fini(&c->in);
    slm_buf_fini(&c->body);
    slm_buf_fini(&c->hdrs);
    slm_buf_fini(&c->out);
    slm_buf_fini(&c->sse);
    slm_free(c);
}

/*
 * Marks c dead: stops its watchers, sends close_notify, and calls the abort
 * callback if the application still holds the exchange (and did not end it
 * itself). Freed by conn_release once no server frame is on the stack.
 */
static void conn_kill(struct http_exchange *c, bool notify_app)
{
    if (c->dead) return;
    c->dead = true;
    http_io_stop(c->srv->loop, &c->io);
    http_timer_stop(c->srv->loop, &c->timer);
    if (c->tls != NULL && c->state != CONN_HANDSHAKE && c->state != CONN_LINGER)
        http_tls_shutdown(c->tls);
    if (notify_app && (c->state == CONN_APP || (c->state == CONN_STREAM && !c->stream_ended)) &&
        c->abort_fn != NULL) {
        http_abort_fn *fn = c->abort_fn;

        c->abort_fn = NULL;
        c->aborted = true;
        c->srv->stats.aborted++;
        c->depth++;
        fn(c->abort_arg);
        c->depth--;
    }
}

static void conn_release(struct http_exchange *c)
{
    if (c->dead && c->depth == 0) conn_free(c);
}

static void conn_arm(struct http_exchange *c, unsigned events)
{
    if (http_io_start(c->srv->loop, &c->io, events) < 0) conn_kill(c, true);
}

static void conn_deadline(struct http_exchange *c, uint64_t ms)
{
    if (http_timer_start(c->srv->loop, &c->timer, ms) < 0) conn_kill(c, true);
}

static void on_timeout(struct http_loop *loop, struct http_timer *t)
{
    struct http_exchange *c = t->data;

    (void)loop;
    if (c->state != CONN_LINGER) c->srv->stats.timeouts++; /* a linger ending is no timeout */
    c->depth++;
    conn_kill(c, true);
    c->depth--;
    conn_release(c);
}

/* ---- responses ---- */

static size_t unsent(const struct http_exchange *c)
{
    return c->out.len - c->out_off;
}

/* Writes the response head for status into c->out. */
static int put_head(struct http_exchange *c, int status, const char *content_type, size_t len,
                    bool has_length)
{
    int rc;

    rc = slm_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    if (rc == 0 && content_type != NULL)
        rc = slm_buf_printf(&c->out, "Content-Type: %s\r\n", content_type);
    if (rc == 0 && has_length) rc = slm_buf_printf(&c->out, "Content-Length: %zu\r\n", len);
    if (rc == 0 && c->close_after)
        rc = slm_buf_append_str(&c->out, "Connection: close\r\n");
    else if (rc == 0 && c->req.version_minor == 0)
        rc = slm_buf_append_str(&c->out, "Connection: keep-alive\r\n");
    if (rc == 0) rc = slm_buf_append(&c->out, c->hdrs.data, c->hdrs.len);
    if (rc == 0) rc = slm_buf_append_str(&c->out, "\r\n");
    return rc;
}

/* Queues a complete response and switches to WRITE (the caller drives). */
static void queue_response(struct http_exchange *c, int status, const char *content_type,
                           const char *body, size_t len)
{
    bool head_only = c->req.method == HTTP_METHOD_HEAD;

    if (!c->req.keep_alive || c->srv->draining) c->close_after = true;
    slm_buf_reset(&c->out);
    c->out_off = 0;
    if (put_head(c, status, content_type, len, true) < 0 ||
        (!head_only && slm_buf_append(&c->out, body, len) < 0)) {
        /* Out of memory or an over-long body: answer 500 without extras. */
        static const char msg[] = "{\"error\":{\"message\":\"response too large\","
                                  "\"type\":\"server_error\",\"param\":null,\"code\":null}}";

        slm_buf_reset(&c->out);
        slm_buf_reset(&c->hdrs);
        c->close_after = true;
        if (put_head(c, 500, "application/json", sizeof(msg) - 1, true) < 0 ||
            slm_buf_append(&c->out, msg, sizeof(msg) - 1) < 0) {
            conn_kill(c, false);
            return;
        }
    }
    c->state = CONN_WRITE;
    c->timer_on_write = false;
}

/* Answers a framing or limit error found by the server itself, then closes. */
static void respond_error(struct http_exchange *c, int status, const char *message)
{
    struct slm_buf b;
    struct json_writer w;

    c->srv->stats.bad_requests++;
    c->close_after = true;
    c->linger = true; /* the client may still be sending what we refused */
    slm_buf_init(&b, 4096);
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "error");
    json_obj_begin(&w);
    json_key(&w, "message");
    json_cstr(&w, message);
    json_key(&w, "type");
    json_cstr(&w, status >= 500 ? "server_error" : "invalid_request_error");
    json_key(&w, "param");
    json_null(&w);
    json_key(&w, "code");
    json_null(&w);
    json_obj_end(&w);
    json_obj_end(&w);
    if (json_writer_finish(&w) < 0) slm_buf_reset(&b);
    slm_buf_reset(&c->hdrs);
    queue_response(c, status, "application/json", b.data != NULL ? b.data : "", b.len);
    slm_buf_fini(&b);
}

/* ---- I/O ---- */

/*
 * Reads what is available. keep: append to c->in, else drop the bytes.
 * Returns 0 (would block, *want set), SLM_EIO at end of stream or on error,
 * SLM_ELIMIT when c->in is full.
 */
static int conn_read(struct http_exchange *c, bool keep, unsigned *want)
{
    char tmp[SERVER_READ_CHUNK];

    for (;;) {
        size_t n = 0;
        int rc;

        *want = HTTP_IO_READ;
        if (c->tls != NULL) {
            rc = http_tls_read(c->tls, tmp, sizeof(tmp), &n, want, NULL);
            if (rc == SLM_EAGAIN) return 0;
            if (rc < 0) return SLM_EIO;
        } else {
            ssize_t r = read(c->fd, tmp, sizeof(tmp));

            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return SLM_EIO;
            n = (size_t)r;
        }
        if (n == 0) return SLM_EIO;
        if (!keep) {
            c->close_after = true; /* a pipelined request was dropped */
            continue;
        }
        if (slm_buf_append(&c->in, tmp, n) < 0) return SLM_ELIMIT;
        if (c->state == CONN_BODY) conn_deadline(c, c->srv->p.body_idle_ms);
    }
}

/* Writes pending output. Returns 0 when all is sent, SLM_EAGAIN with *want, or SLM_EIO. */
static int conn_write(struct http_exchange *c, unsigned *want)
{
    bool progress = false;
    int rc = 0;

    while (unsent(c) > 0) {
        size_t n = 0;

        *want = HTTP_IO_WRITE;
        if (c->tls != NULL) {
            rc = http_tls_write(c->tls, c->out.data + c->out_off, unsent(c), &n, want, NULL);
            if (rc < 0) break;
        } else {
            ssize_t w = send(c->fd, c->out.data + c->out_off, unsent(c), MSG_NOSIGNAL);

            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                rc = (errno == EAGAIN || errno == EWOULDBLOCK) ? SLM_EAGAIN : SLM_EIO;
                break;
            }
            n = (size_t)w;
        }
        c->out_off += n;
        progress = progress || n > 0;
    }
    if (rc == 0) {
        slm_buf_reset(&c->out);
        c->out_off = 0;
        if (c->timer_on_write) {
            http_timer_stop(c->srv->loop, &c->timer);
            c->timer_on_write = false;
        }
        return 0;
    }
    if (rc != SLM_EAGAIN) return SLM_EIO;
    /* A client that reads nothing for write_idle_ms is dropped (H04). */
    if (progress || !c->timer_on_write) {
        c->timer_on_write = true;
        conn_deadline(c, c->srv->p.write_idle_ms);
    }
    if (c->out_off >= SERVER_COMPACT_SENT) {
        memmove(c->out.data, c->out.data + c->out_off, unsent(c));
        c->out.len = unsent(c);
        c->out_off = 0;
    }
    return SLM_EAGAIN;
}

/* ---- requests ---- */

static void set_path(struct http_exchange *c)
{
    const char *t = c->req.target, *end = t + c->req.target_len, *p = t, *q;

    /* absolute-form: skip "scheme://authority" */
    if (c->req.target_len > 0 && t[0] != '/' && t[0] != '*') {
        const char *s = memchr(t, ':', c->req.target_len);

        if (s != NULL && end - s >= 3 && s[1] == '/' && s[2] == '/') {
            p = memchr(s + 3, '/', (size_t)(end - (s + 3)));
            if (p == NULL) p = end;
        }
    }
    q = memchr(p, '?', (size_t)(end - p));
    c->path = p == end ? "/" : p;
    c->path_len = p == end ? 1 : (size_t)((q != NULL ? q : end) - p);
}

/* Hands a complete request to the application. */
static void dispatch(struct http_exchange *c)
{
    struct http_server *s = c->srv;

    c->state = CONN_APP;
    slm_buf_reset(&c->hdrs);
    c->abort_fn = NULL;
    c->abort_arg = NULL;
    http_timer_stop(s->loop, &c->timer);
    set_path(c);
    if (s->p.handler == NULL) {
        respond_error(c, 404, "no handler");
        return;
    }
    s->p.handler(s->p.handler_arg, c);
}

/* Advances HEAD/BODY with the bytes in c->in; may dispatch or answer an error. */
static void process_input(struct http_exchange *c)
{
    struct http_server *s = c->srv;
    struct http_parse_params pp = http_parse_params_default();
    struct slm_diag d;
    int rc;

    if (c->state == CONN_HEAD) {
        if (c->in.len == 0) return;
        if (c->idle) {
            /* The first byte of a request: its head deadline starts now. */
            c->idle = false;
            conn_deadline(c, s->p.head_timeout_ms);
        }
        pp.body_max = s->p.body_max;
        slm_diag_clear(&d);
        rc = http_request_parse(c->in.data, c->in.len, c->last_len, &pp, &c->req, &d);
        if (rc == SLM_EAGAIN) {
            c->last_len = c->in.len;
            return;
        }
        if (rc < 0) {
            log_info("http peer=%s status=%d msg=\"%s\"", c->peer, c->req.status, d.msg);
            respond_error(c, c->req.status, d.msg[0] != '\0' ? d.msg : "bad request");
            return;
        }
        c->head_len = (size_t)rc;
        c->body_in = 0;
        slm_buf_reset(&c->body);
        if (c->req.body_kind == HTTP_BODY_NONE) {
            dispatch(c);
            return;
        }
        if (c->req.body_kind == HTTP_BODY_CHUNKED) http_chunked_init(&c->chunked, s->p.body_max);
        c->state = CONN_BODY;
        conn_deadline(c, s->p.body_idle_ms);
        if (c->req.expect_continue && (c->req.body_kind == HTTP_BODY_CHUNKED ||
                                       c->in.len - c->head_len < c->req.content_length)) {
            /* Best effort: the socket buffer is empty at this point. */
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            size_t n;
            unsigned want;

            if (c->tls != NULL) {
                if (http_tls_write(c->tls, cont, sizeof(cont) - 1, &n, &want, NULL) < 0) n = 0;
            } else if (send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL) < 0) {
                n = 0;
            }
            (void)n;
        }
    }
    if (c->state == CONN_BODY) {
        size_t avail = c->in.len - c->head_len;

        if (c->req.body_kind == HTTP_BODY_LENGTH) {
            if (avail < c->req.content_length) return;
            if (slm_buf_append(&c->body, c->in.data + c->head_len, (size_t)c->req.content_length) <
                0) {
                respond_error(c, 503, "out of memory");
                return;
            }
            c->body_in = (size_t)c->req.content_length;
            dispatch(c);
            return;
        }
        {
            size_t used = 0;

            slm_diag_clear(&d);
            rc = http_chunked_decode(&c->chunked, c->in.data + c->head_len + c->body_in,
                                     avail - c->body_in, &used, &c->body, &d);
            c->body_in += used;
            if (rc == 0)
                dispatch(c);
            else if (rc != SLM_EAGAIN)
                respond_error(c, c->chunked.status, d.msg[0] != '\0' ? d.msg : "bad chunked body");
        }
    }
}

/* After a response: drop the request's bytes and wait for the next one. */
static void next_request(struct http_exchange *c)
{
    size_t used = c->head_len + c->body_in;

    if (used > c->in.len) used = c->in.len;
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    c->last_len = 0;
    c->head_len = 0;
    c->body_in = 0;
    c->state = CONN_HEAD;
    c->idle = true;
    c->timer_on_write = false;
    c->stream_ended = false;
    c->sse_chunked = false;
    slm_buf_reset(&c->sse);
    slm_buf_reset(&c->hdrs);
    slm_buf_reset(&c->body);
    conn_deadline(c, c->srv->p.keepalive_ms);
}

/*
 * Lingering close: the response is out; shut the write side (after TLS's
 * close_notify) and drop what the client still sends for SERVER_LINGER_MS
 * (absolute), up to SERVER_LINGER_BYTES, so that closing with unread bytes
 * does not reset the connection before the client read the response.
 */
static void start_linger(struct http_exchange *c)
{
    if (c->tls != NULL) http_tls_shutdown(c->tls);
    (void)shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    c->timer_on_write = false;
    conn_deadline(c, SERVER_LINGER_MS);
}

/* Reads and drops raw bytes. Returns 0 (would block), or SLM_EIO at EOF, error or the cap. */
static int linger_read(struct http_exchange *c)
{
    char tmp[SERVER_READ_CHUNK];

    for (;;) {
        ssize_t r = read(c->fd, tmp, sizeof(tmp));

        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return SLM_EIO;
        c->linger_bytes += (size_t)r;
        if (c->linger_bytes > SERVER_LINGER_BYTES) return SLM_EIO;
    }
}

/* Runs the state machine until it waits for the socket or the application. */
static void conn_drive(struct http_exchange *c)
{
    unsigned want = HTTP_IO_READ;
    int rc;

    while (!c->dead) {
        switch (c->state) {
        case CONN_HANDSHAKE: {
            struct slm_diag d;

            slm_diag_clear(&d);
            rc = http_tls_handshake(c->tls, &want, &d);
            if (rc == SLM_EAGAIN) {
                conn_arm(c, want);
                return;
            }
            if (rc < 0) {
                c->srv->stats.tls_failed++;
                log_debug("tls peer=%s handshake failed: %s", c->peer, d.msg);
                conn_kill(c, false);
                return;
            }
            c->state = CONN_HEAD;
            break;
        }
        case CONN_HEAD:
        case CONN_BODY:
            rc = conn_read(c, true, &want);
            if (rc == SLM_ELIMIT) {
                /* The buffer filled up: the head may already say why (413 for a
                 * Content-Length over the limit), so parse before refusing. */
                process_input(c);
                if (c->dead) return;
                if (c->state == CONN_HEAD || c->state == CONN_BODY)
                    respond_error(c, c->state == CONN_HEAD ? 431 : 413, "request too large");
                break;
            }
            if (rc < 0) {
                conn_kill(c, false); /* end of stream or error */
                return;
            }
            process_input(c);
            if (c->dead) return;
            if (c->state == CONN_HEAD || c->state == CONN_BODY) {
                conn_arm(c, want);
                return;
            }
            break;
        case CONN_APP:
            rc = conn_read(c, false, &want);
            if (rc < 0) {
                conn_kill(c, true);
                return;
            }
            conn_arm(c, want);
            return;
        case CONN_STREAM:
            rc = conn_write(c, &want);
            if (rc == SLM_EIO) {
                conn_kill(c, true);
                return;
            }
            if (rc == 0 && c->stream_ended) {
                if (c->close_after) {
                    conn_kill(c, false);
                    return;
                }
                /* The last chunk is out: the connection carries the next request. */
                next_request(c);
                process_input(c);
                break;
            }
            if (conn_read(c, false, &want) < 0) {
                conn_kill(c, true);
                return;
            }
            conn_arm(c, HTTP_IO_READ | (unsent(c) > 0 ? HTTP_IO_WRITE : 0));
            return;
        case CONN_LINGER:
            if (linger_read(c) < 0) {
                conn_kill(c, false);
                return;
            }
            conn_arm(c, HTTP_IO_READ);
            return;
        case CONN_WRITE:
            rc = conn_write(c, &want);
            if (rc == SLM_EAGAIN) {
                conn_arm(c, want);
                return;
            }
            if (rc == 0 && c->close_after && c->linger) {
                start_linger(c);
                break;
            }
            if (rc < 0 || c->close_after) {
                conn_kill(c, false);
                return;
            }
            next_request(c);
            /* Pipelined bytes may already hold the next request. */
            process_input(c);
            break;
        }
    }
}

static void on_conn_io(struct http_loop *loop, struct http_io *io, unsigned events)
{
    struct http_exchange *c = io->data;

    (void)loop;
    (void)events;
    c->depth++;
    conn_drive(c);
    c->depth--;
    conn_release(c);
}

/* Runs the state machine from an application call made outside the server's frames. */
static bool app_drive(struct http_exchange *c)
{
    bool dead;

    if (c->depth > 0) return !c->dead;
    c->depth++;
    conn_drive(c);
    c->depth--;
    dead = c->dead;
    conn_release(c);
    return !dead;
}

/* ---- accepting ---- */

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    }
    snprintf(out, cap, "%s:%u", host, port);
}

static void conn_new(struct http_server *s, int fd, const struct sockaddr_storage *ss,
                     struct ip_count *ipc)
{
    struct http_exchange *c = slm_calloc(1, sizeof(*c));
    size_t in_max;
    int one = 1;

    if (c == NULL) {
        ip_release(s, ipc);
        close(fd);
        return;
    }
    c->srv = s;
    c->ipc = ipc;
    c->fd = fd;
    peer_name(ss, c->peer, sizeof(c->peer));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    in_max = SLM_LIMIT_HTTP_HEADER_BYTES + (size_t)s->p.body_max + SLM_LIMIT_HTTP_CHUNK_OVERHEAD +
             SERVER_READ_CHUNK;
    slm_buf_init(&c->in, in_max);
    slm_buf_init(&c->body, (size_t)s->p.body_max);
    slm_buf_init(&c->hdrs, SERVER_HEADERS_MAX);
    slm_buf_init(&c->out, s->p.stream_out_max * 2 + SLM_LIMIT_JSON_BYTES + SERVER_HEAD_MAX);
    slm_buf_init(&c->sse, s->p.stream_out_max + SLM_LIMIT_JSON_BYTES);
    http_io_init(&c->io, fd, on_conn_io, c);
    http_timer_init(&c->timer, on_timeout, c);
    c->next = s->conns;
    if (s->conns != NULL) s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    s->stats.accepted++;
    c->idle = false;
    c->depth++;
    /* Handshake and head share one absolute deadline from accept. */
    conn_deadline(c, s->p.head_timeout_ms);
    if (s->p.tls != NULL && *s->p.tls != NULL) {
        if (http_tls_conn_new(*s->p.tls, fd, &c->tls) < 0) conn_kill(c, false);
        c->state = CONN_HANDSHAKE;
    } else {
        c->state = CONN_HEAD;
    }
    if (!c->dead) conn_drive(c);
    c->depth--;
    conn_release(c);
}

/*
 * Refuses a connection over the per-address cap: plain HTTP gets a 503 with
 * Retry-After (best effort, one non-blocking send), TLS a close (answering
 * would cost a handshake). Logged at DEBUG only: a flood must not flood the log.
 */
static void refuse_per_ip(struct http_server *s, int fd, const struct sockaddr_storage *ss)
{
    static const char body[] = "{\"error\":{\"message\":\"too many open connections from your "
                               "address; close some and retry\",\"type\":\"server_error\","
                               "\"param\":null,\"code\":null}}";
    char head[192], peer[64];
    int n;

    s->stats.refused++;
    s->stats.refused_per_ip++;
    if (log_get_level() >= LOG_LEVEL_DEBUG) {
        peer_name(ss, peer, sizeof(peer));
        log_debug("http peer=%s refused: more than %u connections from this address", peer,
                  s->p.max_conns_per_ip);
    }
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                 "Retry-After: 1\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n",
                 sizeof(body) - 1);
    if ((s->p.tls == NULL || *s->p.tls == NULL) && n > 0 && (size_t)n < sizeof(head)) {
        struct iovec iov[2] = { { head, (size_t)n }, { (void *)body, sizeof(body) - 1 } };

        (void)!writev(fd, iov, 2); /* best effort: the socket is new and non-blocking */
    }
    close(fd);
}

static void on_accept(struct http_loop *loop, struct http_io *io, unsigned events)
{
    struct http_server *s = io->data;
    struct ip_count *ipc;
    bool over;
    int i;

    (void)loop;
    (void)events;
    for (i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE) && s->reserve_fd >= 0) {
                /* Out of descriptors: use the spare one to shed this client (H07). */
                close(s->reserve_fd);
                fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) close(fd);
                s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                s->stats.refused++;
                continue;
            }
            return;
        }
        if (s->n_conns >= s->p.max_conns) {
            s->stats.refused++;
            close(fd);
            continue;
        }
        ipc = ip_acquire(s, &ss, &over);
        if (over) {
            refuse_per_ip(s, fd, &ss);
            continue;
        }
        conn_new(s, fd, &ss, ipc);
    }
}

/* Binds and listens; see server.h. */
int http_server_new(struct http_loop *loop, const struct http_server_params *p,
                    struct http_server **out, struct slm_diag *d)
{
    struct http_server *s;
    struct sockaddr_storage ss;
    socklen_t sl;
    int one = 1, rc;

    *out = NULL;
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, p->host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons(p->port);
        sl = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, p->host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(p->port);
        sl = sizeof(struct sockaddr_in6);
    } else {
        return slm_diag_set(d, SLM_EINVAL,
                            "host '%s' is not a numeric IPv4 or IPv6 address (e.g. 127.0.0.1)",
                            p->host);
    }
    s = slm_calloc(1, sizeof(*s));
    if (s == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory");
    s->loop = loop;
    s->p = *p;
    s->lfd = -1;
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (p->max_conns_per_ip > 0) {
        s->ip_buckets = slm_calloc(SERVER_IP_BUCKETS, sizeof(*s->ip_buckets));
        if (s->ip_buckets == NULL) {
            rc = slm_diag_set(d, SLM_ENOMEM, "out of memory");
            goto fail;
        }
        if (slm_random_bytes(&s->ip_seed, sizeof(s->ip_seed)) < 0) s->ip_seed = slm_now_ns();
    }
    s->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0) {
        rc = slm_diag_set(d, SLM_EIO, "socket: %s", strerror(errno));
        goto fail;
    }
    (void)setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s->lfd, (struct sockaddr *)&ss, sl) < 0) {
        rc = slm_diag_set(d, SLM_EIO, "cannot listen on %s port %u: %s", p->host, p->port,
                          strerror(errno));
        goto fail;
    }
    if (listen(s->lfd, 512) < 0) {
        rc =
            slm_diag_set(d, SLM_EIO, "listen on %s port %u: %s", p->host, p->port, strerror(errno));
        goto fail;
    }
    sl = sizeof(ss);
    if (getsockname(s->lfd, (struct sockaddr *)&ss, &sl) == 0)
        s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                : ((struct sockaddr_in6 *)&ss)->sin6_port);
    http_io_init(&s->listen_io, s->lfd, on_accept, s);
    rc = http_io_start(loop, &s->listen_io, HTTP_IO_READ);
    if (rc < 0) {
        slm_diag_set(d, rc, "cannot watch the listening socket");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    if (s->lfd >= 0) close(s->lfd);
    if (s->reserve_fd >= 0) close(s->reserve_fd);
    slm_free(s->ip_buckets);
    slm_free(s);
    return rc;
}

static void close_listener(struct http_server *s)
{
    if (s->lfd < 0) return;
    http_io_stop(s->loop, &s->listen_io);
    close(s->lfd);
    s->lfd = -1;
}

/* Frees the server and every connection; see server.h. */
void http_server_free(struct http_server *s)
{
    if (s == NULL) return;
    close_listener(s);
    while (s->conns != NULL) {
        struct http_exchange *c = s->conns;

        c->depth++;
        conn_kill(c, true);
        c->depth--;
        conn_release(c);
    }
    if (s->reserve_fd >= 0) close(s->reserve_fd);
    slm_free(s->ip_buckets); /* every count was released with its connection */
    slm_free(s);
}

void http_server_set_handler(struct http_server *s, http_handler_fn *fn, void *arg)
{
    s->p.handler = fn;
    s->p.handler_arg = arg;
}

uint16_t http_server_port(const struct http_server *s)
{
    return s->port;
}

struct http_loop *http_server_loop(const struct http_server *s)
{
    return s->loop;
}

size_t http_server_n_conns(const struct http_server *s)
{
    return s->n_conns;
}

void http_server_get_stats(const struct http_server *s, struct http_server_stats *out)
{
    *out = s->stats;
}

/* Stops accepting and closes idle connections; see server.h. */
void http_server_drain(struct http_server *s)
{
    struct http_exchange *c, *next;

    s->draining = true;
    close_listener(s);
    for (c = s->conns; c != NULL; c = next) {
        next = c->next;
        c->close_after = true;
        if (c->state == CONN_HANDSHAKE || (c->state == CONN_HEAD && c->in.len == 0)) {
            c->depth++;
            conn_kill(c, false);
            c->depth--;
            conn_release(c);
        }
    }
}

/* ---- the exchange ---- */

const struct http_request *http_exchange_request(const struct http_exchange *ex)
{
    return &ex->req;
}

const char *http_exchange_body(const struct http_exchange *ex, size_t *len)
{
    *len = ex->body.len;
    return slm_buf_str(&ex->body);
}

const char *http_exchange_path(const struct http_exchange *ex, size_t *len)
{
    *len = ex->path_len;
    return ex->path;
}

const char *http_exchange_header(const struct http_exchange *ex, const char *name, size_t *len)
{
    const struct http_header *h = http_request_header(&ex->req, name);

    if (h == NULL) return NULL;
    *len = h->value_len;
    return h->value;
}

const char *http_exchange_peer(const struct http_exchange *ex)
{
    return ex->peer;
}

bool http_exchange_draining(const struct http_exchange *ex)
{
    return ex->srv->draining;
}

/* Adds a response header; see server.h. */
int http_exchange_add_header(struct http_exchange *ex, const char *name, const char *value)
{
    size_t old = ex->hdrs.len;
    int rc;

    if (strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL) return SLM_EINVAL;
    rc = slm_buf_printf(&ex->hdrs, "%s: %s\r\n", name, value);
    if (rc < 0) ex->hdrs.len = old;
    return rc;
}

void http_exchange_on_abort(struct http_exchange *ex, http_abort_fn *fn, void *arg)
{
    ex->abort_fn = fn;
    ex->abort_arg = arg;
}

/* Sends a complete response; see server.h. */
void http_exchange_respond(struct http_exchange *ex, int status, const char *content_type,
                           const char *body, size_t len)
{
    SLM_ASSERT(ex->state == CONN_APP);
    ex->abort_fn = NULL;
    queue_response(ex, status, content_type, body, len);
    (void)app_drive(ex);
}

/* Starts an SSE response; see server.h. */
int http_exchange_stream_start(struct http_exchange *ex, struct slm_buf **out)
{
    int rc;

    SLM_ASSERT(ex->state == CONN_APP);
    /* HTTP/1.0 knows no chunked coding: its stream ends with the connection. */
    ex->sse_chunked = ex->req.version_minor >= 1;
    if (!ex->sse_chunked || !ex->req.keep_alive || ex->srv->draining) ex->close_after = true;
    slm_buf_reset(&ex->out);
    slm_buf_reset(&ex->sse);
    ex->out_off = 0;
    rc = http_sse_head(&ex->out, ex->sse_chunked, ex->close_after, ex->hdrs.data, ex->hdrs.len);
    if (rc < 0) {
        slm_buf_reset(&ex->out);
        return rc;
    }
    ex->state = CONN_STREAM;
    ex->stream_ended = false;
    ex->timer_on_write = false;
    *out = &ex->sse;
    return 0;
}

/* Kills a stream whose client stopped reading (H10); the abort callback runs. */
static int stream_overflow(struct http_exchange *ex)
{
    log_info("http peer=%s stream aborted: client left %zu bytes unread", ex->peer, unsent(ex));
    if (ex->depth > 0) {
        conn_kill(ex, true);
        return SLM_ELIMIT;
    }
    ex->depth++;
    conn_kill(ex, true);
    ex->depth--;
    conn_release(ex);
    return SLM_ELIMIT;
}

/* Moves the staged events into the output, as one chunk when chunked. */
static int stream_frame(struct http_exchange *ex)
{
    int rc;

    if (ex->sse.len == 0) return 0;
    if (ex->sse_chunked)
        rc = http_sse_chunk(&ex->out, ex->sse.data, ex->sse.len);
    else
        rc = slm_buf_append(&ex->out, ex->sse.data, ex->sse.len);
    if (rc == 0) slm_buf_reset(&ex->sse);
    return rc;
}

/* Sends queued stream bytes; see server.h. */
int http_exchange_stream_flush(struct http_exchange *ex)
{
    SLM_ASSERT(ex->state == CONN_STREAM);
    if (stream_frame(ex) < 0 || unsent(ex) > ex->srv->p.stream_out_max) return stream_overflow(ex);
    return app_drive(ex) ? 0 : SLM_ECANCELED;
}

/* Ends a stream; see server.h. */
void http_exchange_stream_end(struct http_exchange *ex)
{
    SLM_ASSERT(ex->state == CONN_STREAM);
    ex->abort_fn = NULL;
    if (stream_frame(ex) < 0 || (ex->sse_chunked && http_sse_chunk_end(&ex->out) < 0)) {
        /* The client left the output full: the body cannot end properly. */
        log_info("http peer=%s stream cut: client left %zu bytes unread", ex->peer, unsent(ex));
        ex->close_after = true;
    }
    ex->stream_ended = true;
    (void)app_drive(ex);
}

/* Ends a stream without its end; see server.h. */
void http_exchange_stream_abort(struct http_exchange *ex)
{
    SLM_ASSERT(ex->state == CONN_STREAM);
    ex->abort_fn = NULL;
    (void)stream_frame(ex); /* best effort: the client learns what it can */
    ex->close_after = true;
    ex->stream_ended = true;
    (void)app_drive(ex);
}
