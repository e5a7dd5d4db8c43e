/*
 * test_server_caps.c - the connection caps of src/http/server.c (RELIABILITY
 * H07): connections over the per-address cap get a 503 with Retry-After and
 * are counted; closing one frees its place; the accepted ones are served; 0
 * means no per-address cap; the total cap still applies.
 */
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness/t.h"
#include "http/loop.h"
#include "http/server.h"
#include "http_test_util.h"

static void answer_ok(void *arg, struct http_exchange *ex)
{
    (void)arg;
    http_exchange_respond(ex, 200, "text/plain", "ok\n", 3);
}

static struct http_server *start(struct http_loop *loop, uint32_t per_ip, uint32_t total)
{
    struct http_server_params p = http_server_params_default();
    struct http_server *s = NULL;
    struct slm_diag d;

    p.host = "127.0.0.1";
    p.port = 0;
    p.max_conns = total;
    p.max_conns_per_ip = per_ip;
    p.handler = answer_ok;
    ASSERT_OK(http_server_new(loop, &p, &s, &d));
    return s;
}

/* Runs the loop until accepted + refused reaches n (at most ~2 s). */
static void settle(struct http_loop *loop, struct http_server *s, uint64_t n)
{
    struct http_server_stats st;

    for (int i = 0; i < 200; i++) {
        http_server_get_stats(s, &st);
        if (st.accepted + st.refused >= n) return;
        ASSERT_OK(http_loop_run_once(loop, 10));
    }
}

/* Reads what fd has within ~2 s, until EOF or cap - 1 bytes, serving meanwhile. */
static size_t drain(struct http_loop *loop, int fd, char *buf, size_t cap)
{
    size_t len = 0;

    for (int i = 0; i < 200 && len + 1 < cap; i++) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        ssize_t r;

        ASSERT_OK(http_loop_run_once(loop, 5));
        if (poll(&pfd, 1, 5) <= 0) continue;
        r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
        if (memmem(buf, len, "ok\n", 3) != NULL) break;
    }
    buf[len] = '\0';
    return len;
}

static void wait_conns(struct http_loop *loop, struct http_server *s, size_t n)
{
    for (int i = 0; i < 200 && http_server_n_conns(s) != n; i++)
        ASSERT_OK(http_loop_run_once(loop, 10));
    ASSERT_EQ_SIZE(http_server_n_conns(s), n);
}

TEST(http_server_per_ip_cap_answers_503_and_recovers)
{
    struct http_loop *loop;
    struct http_server *s;
    struct http_server_stats st;
    char buf[2048];
    int fds[5];
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    ASSERT_OK(http_loop_new(&loop));
    s = start(loop, 3, 1024);
    for (int i = 0; i < 4; i++) {
        fds[i] = tu_connect(http_server_port(s));
        ASSERT(fds[i] >= 0);
        settle(loop, s, (uint64_t)i + 1); /* accept in connection order */
    }
    http_server_get_stats(s, &st);
    ASSERT_EQ_INT((int)st.accepted, 3);
    ASSERT_EQ_INT((int)st.refused_per_ip, 1);
    ASSERT_EQ_INT((int)st.refused, 1);
    ASSERT_EQ_SIZE(http_server_n_conns(s), 3);
    /* The fourth got a complete 503 with Retry-After, then the end of the stream. */
    drain(loop, fds[3], buf, sizeof(buf));
    ASSERT(strncmp(buf, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    ASSERT(strstr(buf, "\r\nRetry-After: 1\r\n") != NULL);
    ASSERT(strstr(buf, "\r\nConnection: close\r\n") != NULL);
    {
        const char *body = strstr(buf, "\r\n\r\n"), *cl = strstr(buf, "Content-Length: ");

        ASSERT_NOT_NULL(body);
        ASSERT_NOT_NULL(cl);
        ASSERT_EQ_SIZE(strlen(body + 4), (size_t)strtoul(cl + 16, NULL, 10));
        ASSERT(strstr(body, "too many open connections") != NULL);
    }
    close(fds[3]);
    /* An accepted one is served. */
    ASSERT(write(fds[0], req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1));
    drain(loop, fds[0], buf, sizeof(buf));
    ASSERT(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    /* Closing one frees its place. */
    close(fds[0]);
    wait_conns(loop, s, 2);
    fds[4] = tu_connect(http_server_port(s));
    ASSERT(fds[4] >= 0);
    settle(loop, s, 5);
    http_server_get_stats(s, &st);
    ASSERT_EQ_INT((int)st.accepted, 4);
    ASSERT_EQ_INT((int)st.refused_per_ip, 1);
    ASSERT(write(fds[4], req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1));
    drain(loop, fds[4], buf, sizeof(buf));
    ASSERT(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    close(fds[1]);
    close(fds[2]);
    close(fds[4]);
    wait_conns(loop, s, 0);
    http_server_free(s);
    http_loop_free(loop);
}

TEST(http_server_per_ip_cap_zero_is_off_and_total_cap_applies)
{
    struct http_loop *loop;
    struct http_server *s;
    struct http_server_stats st;
    int fds[12];

    ASSERT_OK(http_loop_new(&loop));
    s = start(loop, 0, 10);
    for (int i = 0; i < 12; i++) {
        fds[i] = tu_connect(http_server_port(s));
        ASSERT(fds[i] >= 0);
    }
    settle(loop, s, 12);
    http_server_get_stats(s, &st);
    ASSERT_EQ_INT((int)st.accepted, 10);
    ASSERT_EQ_INT((int)st.refused, 2);
    ASSERT_EQ_INT((int)st.refused_per_ip, 0);
    for (int i = 0; i < 12; i++)
        close(fds[i]);
    wait_conns(loop, s, 0);
    http_server_free(s);
    http_loop_free(loop);

    /* Freed with connections still counted: no leak (ASan) and no crash. */
    ASSERT_OK(http_loop_new(&loop));
    s = start(loop, 2, 100);
    fds[0] = tu_connect(http_server_port(s));
    fds[1] = tu_connect(http_server_port(s));
    settle(loop, s, 2);
    ASSERT_EQ_SIZE(http_server_n_conns(s), 2);
    http_server_free(s);
    http_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}
