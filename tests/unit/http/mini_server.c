/*
 * mini_server.c - see mini_server.h.
 *
 * One connection = one state machine:
 *   HANDSHAKE (TLS only) -> HEAD -> BODY (Content-Length or chunked) ->
 *   WRITE -> HEAD again (keep-alive, pipelined bytes kept) or close.
 * A single timer per connection holds the current deadline: absolute for the
 * head (a drip of bytes does not extend it), restarted on progress for the
 * body, and the keep-alive idle time between requests.
 */
#include "mini_server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "harness/t.h"
#include "http/parser.h"
#include "http_test_util.h"

enum conn_state { ST_HANDSHAKE, ST_HEAD, ST_BODY, ST_WRITE, ST_CLOSED };

struct mini_conn {
    struct mini_server *srv;
    struct mini_conn *next;
    int fd;
    enum conn_state state;
    struct http_io io;
    struct http_timer timer;
    struct http_tls_conn *tls;
    struct slm_buf in; /* received, not yet consumed */
    size_t last_len;   /* bytes of in the head parser already saw */
    bool idle;         /* waiting for the first byte of a keep-alive request */
    struct http_request req;
    size_t head_len;
    struct http_chunked chunked;
    struct slm_buf body;
    size_t body_in; /* input bytes the chunked body used */
    struct slm_buf out;
    size_t out_off;
    bool close_after;
};

struct mini_server {
    struct http_loop *loop;
    struct mini_server_params p;
    int lfd;
    struct http_io listen_io;
    struct mini_conn *conns;
    struct mini_server_stats stats;
};

static void conn_close(struct mini_conn *c)
{
    struct mini_server *s = c->srv;
    struct mini_conn **pp;

    http_io_stop(s->loop, &c->io);
    http_timer_stop(s->loop, &c->timer);
    if (c->tls != NULL) http_tls_shutdown(c->tls);
    http_tls_conn_free(c->tls);
    close(c->fd);
    slm_buf_fini(&c->in);
    slm_buf_fini(&c->body);
    slm_buf_fini(&c->out);
    for (pp = &s->conns; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    s->stats.closed++;
    s->stats.last_close_ms = http_loop_now_ms(s->loop);
    slm_free(c);
}

static void on_timeout(struct http_loop *loop, struct http_timer *t)
{
    struct mini_conn *c = t->data;

    (void)loop;
    c->srv->stats.timeouts++;
    conn_close(c);
}

static void set_deadline(struct mini_conn *c, uint64_t ms)
{
    ASSERT_OK(http_timer_start(c->srv->loop, &c->timer, ms));
}

/* Queues a response; status >= 400 closes the connection after it. */
static void respond(struct mini_conn *c, int status, const char *body)
{
    int rc;

    c->close_after = status >= 400 || !c->req.keep_alive;
    slm_buf_reset(&c->out);
    rc = slm_buf_printf(&c->out,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                        "%s\r\n%s",
                        status, http_status_text(status), strlen(body),
                        c->close_after ? "Connection: close\r\n" : "", body);
    ASSERT_OK(rc);
    c->out_off = 0;
    c->state = ST_WRITE;
    http_timer_stop(c->srv->loop, &c->timer);
    if (status >= 400)
        c->srv->stats.errors++;
    else
        c->srv->stats.requests++;
}

static void respond_ok(struct mini_conn *c, size_t body_len)
{
    char text[256];

    snprintf(text, sizeof(text), "ok %.*s %.*s %zu\n", (int)c->req.method_len, c->req.method_name,
             (int)(c->req.target_len > 100 ? 100 : c->req.target_len), c->req.target, body_len);
    respond(c, 200, text);
}

/* Advances HEAD/BODY with the bytes in c->in; may switch to WRITE. */
static void process_input(struct mini_conn *c)
{
    struct slm_diag d;
    int rc;

    if (c->state == ST_HEAD) {
        if (c->in.len == 0) return;
        if (c->idle) {
            /* First byte of a new request: the head deadline starts now. */
            c->idle = false;
            set_deadline(c, c->srv->p.head_timeout_ms);
        }
        rc = http_request_parse(c->in.data, c->in.len, c->last_len, NULL, &c->req, &d);
        if (rc == SLM_EAGAIN) {
            c->last_len = c->in.len;
            return;
        }
        if (rc < 0) {
            respond(c, c->req.status, "bad request\n");
            return;
        }
        c->head_len = (size_t)rc;
        c->body_in = 0;
        slm_buf_reset(&c->body);
        if (c->req.body_kind == HTTP_BODY_NONE) {
            respond_ok(c, 0);
            return;
        }
        if (c->req.body_kind == HTTP_BODY_CHUNKED)
            http_chunked_init(&c->chunked, SLM_LIMIT_HTTP_BODY);
        c->state = ST_BODY;
        set_deadline(c, c->srv->p.body_idle_ms);
    }
    if (c->state == ST_BODY) {
        size_t avail = c->in.len - c->head_len;

        if (c->req.body_kind == HTTP_BODY_LENGTH) {
            if (avail >= c->req.content_length) respond_ok(c, (size_t)c->req.content_length);
            return;
        }
        {
            size_t used;

            rc = http_chunked_decode(&c->chunked, c->in.data + c->head_len + c->body_in,
                                     avail - c->body_in, &used, &c->body, &d);
            c->body_in += used;
            if (rc == 0)
                respond_ok(c, c->body.len);
            else if (rc != SLM_EAGAIN)
                respond(c, c->chunked.status, "bad request\n");
        }
    }
}

/* After a response: drop the request's bytes and wait for the next one. */
static void next_request(struct mini_conn *c)
{
    size_t used = c->head_len;

    if (c->req.body_kind == HTTP_BODY_LENGTH)
        used += (size_t)c->req.content_length;
    else if (c->req.body_kind == HTTP_BODY_CHUNKED)
        used += c->body_in;
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    c->last_len = 0;
    c->head_len = 0;
    c->state = ST_HEAD;
    c->idle = true;
    set_deadline(c, c->srv->p.keepalive_ms);
}

/* Reads what is available. Returns 0, SLM_EAGAIN (with *want), or < 0 to close. */
static int conn_read(struct mini_conn *c, unsigned *want)
{
    char tmp[16384];

    for (;;) {
        size_t n = 0;
        int rc;

        *want = HTTP_IO_READ;
        if (c->tls != NULL) {
            struct slm_diag d;

            rc = http_tls_read(c->tls, tmp, sizeof(tmp), &n, want, &d);
            if (rc < 0) return rc;
        } else {
            ssize_t r = read(c->fd, tmp, sizeof(tmp));

            if (r < 0) return errno == EAGAIN ? SLM_EAGAIN : SLM_EIO;
            n = (size_t)r;
        }
        if (n == 0) return SLM_EIO; /* end of stream */
        if (slm_buf_append(&c->in, tmp, n) < 0) {
            respond(c, 431, "too large\n");
            return 0;
        }
        if (c->state == ST_BODY && c->req.body_kind != HTTP_BODY_NONE)
            set_deadline(c, c->srv->p.body_idle_ms); /* progress restarts the idle timer */
    }
}

/* Writes pending output. Returns 0 when done, SLM_EAGAIN with *want, or < 0. */
static int conn_write(struct mini_conn *c, unsigned *want)
{
    while (c->out_off < c->out.len) {
        size_t n = 0;
        int rc;

        *want = HTTP_IO_WRITE;
        if (c->tls != NULL) {
            struct slm_diag d;

            rc = http_tls_write(c->tls, c->out.data + c->out_off, c->out.len - c->out_off, &n, want,
                                &d);
            if (rc < 0) return rc;
        } else {
            ssize_t w =
                send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);

            if (w < 0) return errno == EAGAIN ? SLM_EAGAIN : SLM_EIO;
            n = (size_t)w;
        }
        c->out_off += n;
    }
    return 0;
}

static void conn_drive(struct mini_conn *c)
{
    unsigned want = HTTP_IO_READ;
    int rc;

    if (c->state == ST_HANDSHAKE) {
        struct slm_diag d;

        rc = http_tls_handshake(c->tls, &want, &d);
        if (rc == SLM_EAGAIN) {
            ASSERT_OK(http_io_start(c->srv->loop, &c->io, want));
            return;
        }
        if (rc < 0) {
            c->srv->stats.tls_failed++;
            conn_close(c);
            return;
        }
        c->state = ST_HEAD;
    }
    for (;;) {
        if (c->state == ST_HEAD || c->state == ST_BODY) {
            rc = conn_read(c, &want);
            if (rc < 0 && rc != SLM_EAGAIN) {
                conn_close(c); /* EOF or error; an empty connection closes silently */
                return;
            }
            if (c->state != ST_WRITE) process_input(c);
            if (c->state != ST_WRITE) {
                ASSERT_OK(http_io_start(c->srv->loop, &c->io, want));
                return;
            }
        }
        rc = conn_write(c, &want);
        if (rc == SLM_EAGAIN) {
            ASSERT_OK(http_io_start(c->srv->loop, &c->io, want));
            return;
        }
        if (rc < 0 || c->close_after) {
            conn_close(c); /* never parse what follows a framing error */
            return;
        }
        next_request(c);
        /* Pipelined bytes may already hold the next request. */
        process_input(c);
        if (c->state == ST_WRITE) continue;
    }
}

static void on_conn_io(struct http_loop *loop, struct http_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    conn_drive(io->data);
}

static void on_accept(struct http_loop *loop, struct http_io *io, unsigned events)
{
    struct mini_server *s = io->data;

    (void)events;
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct mini_conn *c;

        if (fd < 0) return;
        c = slm_calloc(1, sizeof(*c));
        ASSERT_NOT_NULL(c);
        c->srv = s;
        c->fd = fd;
        slm_buf_init(&c->in, SLM_LIMIT_HTTP_HEADER_BYTES + SLM_LIMIT_HTTP_BODY + 65536);
        slm_buf_init(&c->body, SLM_LIMIT_HTTP_BODY);
        slm_buf_init(&c->out, 65536);
        http_io_init(&c->io, fd, on_conn_io, c);
        http_timer_init(&c->timer, on_timeout, c);
        c->next = s->conns;
        s->conns = c;
        s->stats.accepted++;
        /* Handshake and head share one absolute deadline from accept. */
        ASSERT_OK(http_timer_start(loop, &c->timer, s->p.head_timeout_ms));
        if (s->p.tls != NULL) {
            ASSERT_OK(http_tls_conn_new(s->p.tls, fd, &c->tls));
            c->state = ST_HANDSHAKE;
        } else {
            c->state = ST_HEAD;
        }
        conn_drive(c);
    }
}

int mini_server_start(struct http_loop *loop, const struct mini_server_params *p,
                      struct mini_server **out, uint16_t *port)
{
    struct mini_server *s = slm_calloc(1, sizeof(*s));

    ASSERT_NOT_NULL(s);
    s->loop = loop;
    s->p = *p;
    s->lfd = tu_listen(port);
    http_io_init(&s->listen_io, s->lfd, on_accept, s);
    ASSERT_OK(http_io_start(loop, &s->listen_io, HTTP_IO_READ));
    *out = s;
    return 0;
}

void mini_server_free(struct mini_server *s)
{
    if (s == NULL) return;
    while (s->conns != NULL)
        conn_close(s->conns);
    http_io_stop(s->loop, &s->listen_io);
    close(s->lfd);
    slm_free(s);
}

const struct mini_server_stats *mini_server_stats(const struct mini_server *s)
{
    return &s->stats;
}
