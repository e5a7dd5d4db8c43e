/*
 * test_server_stream.c - Server-Sent Events streams of src/http/server.c on a
 * real socket: an HTTP/1.1 stream is sent with "Transfer-Encoding: chunked"
 * (one chunk per flush, then the last chunk) and the connection carries the
 * next request; HTTP/1.0, "Connection: close", draining and an aborted stream
 * close it instead. The chunked framing is checked by a strict decoder
 * written here from RFC 9112 7.1 (not the server's parser), the events by the
 * WHATWG reference parser of sse_ref.h.
 */
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness/t.h"
#include "http/loop.h"
#include "http/server.h"
#include "http/sse.h"
#include "http_test_util.h"
#include "sse_ref.h"

/* What the handler does with a request, chosen by its path. */
struct app {
    struct http_loop *loop;
    struct http_server *srv;
    struct http_exchange *held; /* an async stream in progress */
    struct slm_buf *sse;
    struct http_timer tick;
    int n_ticks;
    int n_requests;
    int n_aborts;
};

static void on_abort(void *arg)
{
    struct app *a = arg;

    a->held = NULL;
    a->n_aborts++;
    http_timer_stop(a->loop, &a->tick);
}

/* The async stream: one event per 5 ms tick, [DONE] and the end after 3. */
static void on_tick(struct http_loop *loop, struct http_timer *t)
{
    struct app *a = t->data;
    char ev[32];

    if (a->held == NULL) return;
    if (a->n_ticks++ < 3) {
        snprintf(ev, sizeof(ev), "{\"tick\":%d}", a->n_ticks);
        ASSERT_OK(http_sse_data(a->sse, ev, strlen(ev)));
        ASSERT_OK(http_sse_comment(a->sse, "keep-alive"));
        if (http_exchange_stream_flush(a->held) < 0) return; /* on_abort ran */
        ASSERT_OK(http_timer_start(loop, t, 5));
        return;
    }
    ASSERT_OK(http_sse_done(a->sse));
    http_exchange_stream_end(a->held);
    a->held = NULL;
}

static void handler(void *arg, struct http_exchange *ex)
{
    struct app *a = arg;
    struct slm_buf *b;
    size_t len;
    const char *path = http_exchange_path(ex, &len);

    a->n_requests++;
    if (len == 6 && memcmp(path, "/plain", 6) == 0) {
        http_exchange_respond(ex, 200, "text/plain", "ok\n", 3);
        return;
    }
    ASSERT_OK(http_exchange_add_header(ex, "X-Test", "1"));
    ASSERT_OK(http_exchange_stream_start(ex, &b));
    if (len == 6 && memcmp(path, "/async", 6) == 0) {
        a->held = ex;
        a->sse = b;
        a->n_ticks = 0;
        http_exchange_on_abort(ex, on_abort, a);
        ASSERT_OK(http_exchange_stream_flush(ex));
        ASSERT_OK(http_timer_start(a->loop, &a->tick, 5));
        return;
    }
    /* Synchronous: two flushes (two chunks), then the end. */
    ASSERT_OK(http_sse_data(b, "{\"a\":1}", 7));
    ASSERT_OK(http_exchange_stream_flush(ex));
    ASSERT_OK(http_sse_data(b, "line1\nline2", 11));
    ASSERT_OK(http_sse_comment(b, "keep-alive"));
    ASSERT_OK(http_exchange_stream_flush(ex));
    if (len == 6 && memcmp(path, "/abort", 6) == 0) {
        ASSERT_OK(http_sse_data(b, "lost", 4));
        http_exchange_stream_abort(ex);
        return;
    }
    ASSERT_OK(http_sse_done(b));
    http_exchange_stream_end(ex);
}

static struct http_server *start(struct app *a)
{
    struct http_server_params p = http_server_params_default();
    struct http_server *s = NULL;
    struct slm_diag d;

    memset(a, 0, sizeof(*a));
    ASSERT_OK(http_loop_new(&a->loop));
    p.port = 0;
    p.handler = handler;
    p.handler_arg = a;
    ASSERT_OK(http_server_new(a->loop, &p, &s, &d));
    a->srv = s;
    http_timer_init(&a->tick, on_tick, a);
    return s;
}

static void stop(struct app *a)
{
    http_timer_stop(a->loop, &a->tick);
    http_server_free(a->srv);
    http_loop_free(a->loop);
}

struct reader {
    int fd;
    char buf[65536];
    size_t len; /* bytes received */
    size_t pos; /* bytes consumed by parsed responses */
    bool eof;
};

/* Serves and reads until pred(r) holds, EOF, or ~3 s. */
static void pump(struct app *a, struct reader *r, bool (*pred)(const struct reader *))
{
    for (int i = 0; i < 600 && !pred(r) && !r->eof; i++) {
        struct pollfd pfd = { r->fd, POLLIN, 0 };
        ssize_t n;

        ASSERT_OK(http_loop_run_once(a->loop, 2));
        if (poll(&pfd, 1, 3) <= 0) continue;
        ASSERT(r->len + 1 < sizeof(r->buf));
        n = read(r->fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len);
        if (n <= 0) {
            r->eof = true;
            break;
        }
        r->len += (size_t)n;
        r->buf[r->len] = '\0';
    }
}

static bool has_ok(const struct reader *r)
{
    return memmem(r->buf + r->pos, r->len - r->pos, "\r\n\r\nok\n", 7) != NULL;
}

static bool never(const struct reader *r)
{
    (void)r;
    return false;
}

/*
 * A strict decoder of one chunked body at s[0..len), from RFC 9112 7.1:
 * chunk-size is 1*HEXDIG (no extensions here, no leading "0x", no spaces),
 * then CRLF, the data, CRLF; the last chunk is "0" CRLF, then (no trailers)
 * CRLF. Returns the bytes the body used and the data in out, 0 when
 * incomplete, -1 when malformed. n_chunks counts data chunks.
 */
static long dechunk(const char *s, size_t len, struct slm_buf *out, int *n_chunks)
{
    size_t i = 0;

    *n_chunks = 0;
    slm_buf_reset(out);
    for (;;) {
        size_t size = 0, digits = 0;

        while (i < len && ((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
                           (s[i] >= 'A' && s[i] <= 'F'))) {
            int v = s[i] <= '9' ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10;

            if (digits++ >= 15) return -1;
            size = size * 16 + (size_t)v;
            i++;
        }
        if (i + 2 > len) return 0;
        if (digits == 0 || s[i] != '\r' || s[i + 1] != '\n') return -1;
        i += 2;
        if (size == 0) {
            if (i + 2 > len) return 0;
            return s[i] == '\r' && s[i + 1] == '\n' ? (long)(i + 2) : -1;
        }
        if (i + size + 2 > len) return 0;
        if (s[i + size] != '\r' || s[i + size + 1] != '\n') return -1;
        if (slm_buf_append(out, s + i, size) < 0) return -1;
        (*n_chunks)++;
        i += size + 2;
    }
}

/* One parsed response. */
struct resp {
    char head[1024];
    bool chunked, close;
    struct slm_buf body;
    int n_chunks;
};

/* Parses the response at r->pos if complete (chunked or, with close, to EOF). */
static int parse_resp(struct reader *r, struct resp *p)
{
    const char *s = r->buf + r->pos, *end = memmem(s, r->len - r->pos, "\r\n\r\n", 4);
    size_t hl;
    long used;

    if (end == NULL) return 0;
    hl = (size_t)(end - s) + 4;
    ASSERT(hl < sizeof(p->head));
    memcpy(p->head, s, hl);
    p->head[hl] = '\0';
    p->chunked = strstr(p->head, "\r\nTransfer-Encoding: chunked\r\n") != NULL;
    p->close = strstr(p->head, "\r\nConnection: close\r\n") != NULL;
    if (!p->chunked) {
        if (!r->eof) return 0;
        slm_buf_reset(&p->body);
        ASSERT_OK(slm_buf_append(&p->body, s + hl, r->len - r->pos - hl));
        r->pos = r->len;
        return 1;
    }
    used = dechunk(s + hl, r->len - r->pos - hl, &p->body, &p->n_chunks);
    if (used < 0) return -1;
    if (used == 0) return 0;
    r->pos += hl + (size_t)used;
    return 1;
}

static struct reader *g_r;
static struct resp *g_p;
static int g_rc;

static bool have_resp(const struct reader *r)
{
    (void)r;
    g_rc = parse_resp(g_r, g_p);
    return g_rc != 0;
}

/* Serves until a whole response arrived; fails on malformed framing. */
static void read_resp(struct app *a, struct reader *r, struct resp *p)
{
    g_r = r;
    g_p = p;
    g_rc = 0;
    pump(a, r, have_resp);
    if (g_rc == 0) g_rc = parse_resp(r, p); /* EOF ends a non-chunked body */
    ASSERT_EQ_INT(g_rc, 1);
}

static void send_req(int fd, const char *req)
{
    ASSERT(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
}

struct events {
    char data[8][64];
    int n;
};

static void collect(const struct sse_ref_event *ev, void *arg)
{
    struct events *e = arg;

    if (e->n < 8) snprintf(e->data[e->n], sizeof(e->data[0]), "%s", ev->data.data);
    e->n++;
}

/* The events of the synchronous stream. */
static void check_events(const struct resp *p)
{
    struct events e;
    int comments;

    memset(&e, 0, sizeof(e));
    ASSERT_EQ_INT(sse_ref_parse(p->body.data, p->body.len, collect, &e, &comments), 3);
    ASSERT_EQ_STR(e.data[0], "{\"a\":1}");
    ASSERT_EQ_STR(e.data[1], "line1\nline2");
    ASSERT_EQ_STR(e.data[2], "[DONE]");
    ASSERT_EQ_INT(comments, 1);
}

static void resp_init(struct resp *p)
{
    memset(p, 0, sizeof(*p));
    slm_buf_init(&p->body, 1u << 20);
}

/* Two streams, then a plain response, on one HTTP/1.1 connection. */
TEST(http_server_stream_chunked_keeps_the_connection)
{
    struct app a;
    struct reader r;
    struct resp p;
    struct http_server_stats st;

    start(&a);
    resp_init(&p);
    memset(&r, 0, sizeof(r));
    r.fd = tu_connect(http_server_port(a.srv));
    ASSERT(r.fd >= 0);
    for (int i = 0; i < 2; i++) {
        send_req(r.fd, "POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
        read_resp(&a, &r, &p);
        ASSERT(strncmp(p.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
        ASSERT(strstr(p.head, "Content-Type: text/event-stream\r\n") != NULL);
        ASSERT(strstr(p.head, "\r\nX-Test: 1\r\n") != NULL);
        ASSERT(strstr(p.head, "Content-Length") == NULL);
        ASSERT(p.chunked && !p.close);
        ASSERT_EQ_INT(p.n_chunks, 3); /* two flushes and the events before the end */
        check_events(&p);
    }
    send_req(r.fd, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
    pump(&a, &r, has_ok);
    ASSERT(strstr(r.buf + r.pos, "HTTP/1.1 200 OK\r\n") == r.buf + r.pos);
    ASSERT(r.eof == false);
    ASSERT_EQ_INT(a.n_requests, 3);
    http_server_get_stats(a.srv, &st);
    ASSERT_EQ_INT((int)st.accepted, 1);
    ASSERT_EQ_SIZE(http_server_n_conns(a.srv), 1);
    close(r.fd);
    slm_buf_fini(&p.body);
    stop(&a);
}

/* An async stream (events from a timer) twice on one connection; two
 * requests sent back to back are both answered in order. */
TEST(http_server_stream_async_and_pipelined)
{
    struct app a;
    struct reader r;
    struct resp p;
    struct events e;
    int comments;

    start(&a);
    resp_init(&p);
    memset(&r, 0, sizeof(r));
    r.fd = tu_connect(http_server_port(a.srv));
    ASSERT(r.fd >= 0);
    for (int i = 0; i < 2; i++) {
        send_req(r.fd, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
        read_resp(&a, &r, &p);
        ASSERT(p.chunked && !p.close);
        ASSERT(p.n_chunks >= 4); /* one per tick and the end */
        memset(&e, 0, sizeof(e));
        ASSERT_EQ_INT(sse_ref_parse(p.body.data, p.body.len, collect, &e, &comments), 4);
        ASSERT_EQ_STR(e.data[0], "{\"tick\":1}");
        ASSERT_EQ_STR(e.data[3], "[DONE]");
        ASSERT_EQ_INT(comments, 3);
    }
    /* Pipelined: both arrive before the first is handled (synchronously). */
    send_req(r.fd, "GET /sync HTTP/1.1\r\nHost: x\r\n\r\nGET /sync HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(&a, &r, &p);
    check_events(&p);
    read_resp(&a, &r, &p);
    check_events(&p);
    ASSERT(!r.eof);
    ASSERT_EQ_INT(a.n_aborts, 0);
    close(r.fd);
    slm_buf_fini(&p.body);
    stop(&a);
}

/* HTTP/1.0 and "Connection: close": the stream ends with the connection. */
TEST(http_server_stream_closes_for_http10_and_connection_close)
{
    struct app a;
    struct reader r;
    struct resp p;

    start(&a);
    resp_init(&p);
    /* HTTP/1.0, even with keep-alive asked: no chunked coding, close-delimited. */
    memset(&r, 0, sizeof(r));
    r.fd = tu_connect(http_server_port(a.srv));
    send_req(r.fd, "GET /sync HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    read_resp(&a, &r, &p);
    ASSERT(r.eof);
    ASSERT(!p.chunked && p.close);
    check_events(&p);
    close(r.fd);
    /* HTTP/1.1 with Connection: close: chunked (a visible end), then closed. */
    memset(&r, 0, sizeof(r));
    r.fd = tu_connect(http_server_port(a.srv));
    send_req(r.fd, "GET /sync HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    read_resp(&a, &r, &p);
    ASSERT(p.chunked && p.close);
    check_events(&p);
    pump(&a, &r, never);
    ASSERT(r.eof);
    ASSERT_EQ_SIZE(r.pos, r.len); /* nothing after the last chunk */
    close(r.fd);
    slm_buf_fini(&p.body);
    stop(&a);
}

/* An aborted stream has no last chunk and closes: the client sees a cut body. */
TEST(http_server_stream_abort_cuts_the_body)
{
    struct app a;
    struct reader r;
    struct resp p;

    start(&a);
    resp_init(&p);
    memset(&r, 0, sizeof(r));
    r.fd = tu_connect(http_server_port(a.srv));
    send_req(r.fd, "GET /abort HTTP/1.1\r\nHost: x\r\n\r\n");
    pump(&a, &r, never);
    ASSERT(r.eof);
    ASSERT_EQ_INT(parse_resp(&r, &p), 0); /* incomplete: no last chunk */
    ASSERT(strstr(r.buf, "\r\n0\r\n\r\n") == NULL);
    ASSERT(strstr(r.buf, "data: lost") != NULL); /* what was queued still went out */
    close(r.fd);
    slm_buf_fini(&p.body);
    stop(&a);
}

/* A client that leaves mid-stream aborts it; a drain closes after the end. */
TEST(http_server_stream_client_gone_and_drain)
{
    struct app a;
    struct reader r;
    struct resp p;

    start(&a);
    resp_init(&p);
    memset(&r, 0, sizeof(r));
    r.fd = tu_connect(http_server_port(a.srv));
    send_req(r.fd, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 200 && a.held == NULL; i++)
        ASSERT_OK(http_loop_run_once(a.loop, 2));
    ASSERT(a.held != NULL);
    close(r.fd);
    for (int i = 0; i < 500 && a.n_aborts == 0; i++)
        ASSERT_OK(http_loop_run_once(a.loop, 2));
    ASSERT_EQ_INT(a.n_aborts, 1);
    ASSERT(a.held == NULL);
    for (int i = 0; i < 200 && http_server_n_conns(a.srv) > 0; i++)
        ASSERT_OK(http_loop_run_once(a.loop, 2));
    ASSERT_EQ_SIZE(http_server_n_conns(a.srv), 0);
    /* Draining while a stream runs: it still ends whole, then the connection closes. */
    memset(&r, 0, sizeof(r));
    r.fd = tu_connect(http_server_port(a.srv));
    send_req(r.fd, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 200 && a.held == NULL; i++)
        ASSERT_OK(http_loop_run_once(a.loop, 2));
    ASSERT(a.held != NULL);
    http_server_drain(a.srv);
    read_resp(&a, &r, &p);
    ASSERT(p.chunked); /* the head went out before the drain */
    pump(&a, &r, never);
    ASSERT(r.eof);
    ASSERT_EQ_INT(a.n_aborts, 1);
    close(r.fd);
    slm_buf_fini(&p.body);
    stop(&a);
}

/* The head and framing helpers of sse.c. */
TEST(http_sse_head_and_chunks)
{
    struct slm_buf b;
    struct resp p;
    long used;

    slm_buf_init(&b, 4096);
    ASSERT_OK(http_sse_head(&b, true, false, "X-A: 1\r\n", 8));
    ASSERT_EQ_STR(b.data, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                          "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
                          "Transfer-Encoding: chunked\r\nX-A: 1\r\n\r\n");
    slm_buf_reset(&b);
    ASSERT_OK(http_sse_head(&b, false, false, NULL, 0));
    ASSERT(strstr(b.data, "Transfer-Encoding") == NULL);
    ASSERT(strstr(b.data, "\r\nConnection: close\r\n\r\n") != NULL);
    slm_buf_reset(&b);
    ASSERT_OK(http_sse_head(&b, true, true, NULL, 0));
    ASSERT(strstr(b.data, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n") != NULL);
    slm_buf_reset(&b);
    ASSERT_OK(http_sse_chunk(&b, "", 0)); /* nothing: an empty chunk would end the body */
    ASSERT_EQ_SIZE(b.len, 0);
    {
        char big[300];

        memset(big, 'x', sizeof(big));
        ASSERT_OK(http_sse_chunk(&b, "data: a\n\n", 9));
        ASSERT_OK(http_sse_chunk(&b, big, sizeof(big)));
        ASSERT(strncmp(b.data, "9\r\ndata: a\n\n\r\n12c\r\nxxx", 22) == 0);
    }
    ASSERT_OK(http_sse_chunk_end(&b));
    resp_init(&p);
    used = dechunk(b.data, b.len, &p.body, &p.n_chunks);
    ASSERT_EQ_SIZE((size_t)used, b.len);
    ASSERT_EQ_INT(p.n_chunks, 2);
    ASSERT_EQ_SIZE(p.body.len, 309);
    slm_buf_fini(&p.body);
    slm_buf_fini(&b);
    /* At the cap: all or nothing. */
    slm_buf_init(&b, 16);
    ASSERT_OK(http_sse_chunk(&b, "abc", 3));
    ASSERT_ERR(http_sse_chunk(&b, "0123456789", 10), SLM_ELIMIT);
    ASSERT_EQ_STR(b.data, "3\r\nabc\r\n");
    ASSERT_ERR(http_sse_head(&b, true, false, NULL, 0), SLM_ELIMIT);
    ASSERT_EQ_STR(b.data, "3\r\nabc\r\n");
    ASSERT_OK(http_sse_chunk_end(&b));
    ASSERT_ERR(http_sse_chunk_end(&b), SLM_ELIMIT);
    slm_buf_fini(&b);
}
