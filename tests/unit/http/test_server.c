/*
 * test_server.c - loop + parser + chunked decoder + TLS working together in
 * mini_server, driven by real clients: curl (HTTP and HTTPS), openssl
 * s_client (TLS versions, ALPN) and raw sockets for smuggling, pipelining and
 * slow clients (RELIABILITY H01, H04, H08, S03).
 */
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/str.h"
#include "harness/t.h"
#include "http/loop.h"
#include "http/tls.h"
#include "http_test_util.h"
#include "mini_server.h"

struct fixture {
    struct http_loop *loop;
    struct mini_server *srv;
    struct http_tls_ctx *tls;
    uint16_t port;
    char url[128];
    char cert[512];
    char key[512];
};

static void fixture_start(struct fixture *f, bool tls, uint64_t head_ms, uint64_t body_ms,
                          uint64_t keepalive_ms)
{
    struct mini_server_params p = { NULL, head_ms, body_ms, keepalive_ms };
    struct slm_diag d;

    memset(f, 0, sizeof(*f));
    ASSERT_OK(http_loop_new(&f->loop));
    if (tls) {
        static const char *const hosts[] = { "localhost", "127.0.0.1" };

        snprintf(f->cert, sizeof(f->cert), "%s/srv.crt", t_tmpdir());
        snprintf(f->key, sizeof(f->key), "%s/srv.key", t_tmpdir());
        ASSERT_OK(http_tls_selfsigned_write(f->cert, f->key, hosts, 2, 30, &d));
        ASSERT_OK(http_tls_ctx_new(f->cert, f->key, &f->tls, &d));
        p.tls = f->tls;
    }
    ASSERT_OK(mini_server_start(f->loop, &p, &f->srv, &f->port));
    snprintf(f->url, sizeof(f->url), "%s://127.0.0.1:%u", tls ? "https" : "http", f->port);
}

static void fixture_stop(struct fixture *f)
{
    mini_server_free(f->srv);
    http_tls_ctx_unref(f->tls);
    http_loop_free(f->loop);
}

/* Runs argv to completion while serving; returns its exit status and output. */
static int run_client(struct fixture *f, const char *const *argv, char *out, size_t cap)
{
    char path[512];
    int status;

    snprintf(path, sizeof(path), "%s/client.out", t_tmpdir());
    status = tu_run_until_exit(f->loop, tu_spawn(argv, path), 30000);
    tu_read_file(path, out, cap);
    return status;
}

TEST(http_server_answers_curl)
{
    struct fixture f;
    char url[256], url2[256], data[512], out[4096];
    const char *get[] = { "curl", "-sS", "--max-time", "10", url, NULL };
    const char *post[] = { "curl",          "-sS",         "--max-time", "10",
                           "--data-binary", "hello world", url2,         NULL };
    const char *chunked[] = {
        "curl",          "-sS", "--max-time", "10", "-H", "Transfer-Encoding: chunked",
        "--data-binary", data,  url2,         NULL
    };
    const char *two[] = { "curl", "-sS", "--max-time", "10", url, url2, NULL };

    if (!tu_have("curl")) SKIP("curl not installed");
    fixture_start(&f, false, 5000, 5000, 5000);
    snprintf(url, sizeof(url), "%s/hello?x=1", f.url);
    snprintf(url2, sizeof(url2), "%s/v1/chat/completions", f.url);
    ASSERT_EQ_INT(run_client(&f, get, out, sizeof(out)), 0);
    ASSERT_EQ_STR(out, "ok GET /hello?x=1 0\n");
    ASSERT_EQ_INT(run_client(&f, post, out, sizeof(out)), 0);
    ASSERT_EQ_STR(out, "ok POST /v1/chat/completions 11\n");
    /* curl sends the file as a chunked body. */
    snprintf(data, sizeof(data), "@%s/body.json", t_tmpdir());
    {
        char body[3000];

        memset(body, 'x', sizeof(body));
        tu_write_file(data + 1, body, sizeof(body));
    }
    ASSERT_EQ_INT(run_client(&f, chunked, out, sizeof(out)), 0);
    ASSERT_EQ_STR(out, "ok POST /v1/chat/completions 3000\n");
    /* Two URLs in one curl run share one keep-alive connection. */
    {
        int accepted = mini_server_stats(f.srv)->accepted;

        ASSERT_EQ_INT(run_client(&f, two, out, sizeof(out)), 0);
        ASSERT_EQ_STR(out, "ok GET /hello?x=1 0\nok GET /v1/chat/completions 0\n");
        ASSERT_EQ_INT(mini_server_stats(f.srv)->accepted, accepted + 1);
    }
    ASSERT_EQ_INT(mini_server_stats(f.srv)->requests, 5);
    ASSERT_EQ_INT(mini_server_stats(f.srv)->errors, 0);
    fixture_stop(&f);
}

TEST(http_server_answers_curl_over_tls)
{
    struct fixture f;
    char url[256], url2[256], resolve[128], out[4096];
    const char *get[] = { "curl", "-sS", "--max-time", "10", "--cacert", NULL, url, NULL };
    const char *byname[] = { "curl",      "-sS",   "--max-time",    "10", "--cacert", NULL,
                             "--resolve", resolve, "--data-binary", "{}", url2,       NULL };
    const char *insecure_tls11[] = { "curl",      "-sS",       "--max-time", "10", "-k",
                                     "--tlsv1.1", "--tls-max", "1.1",        url,  NULL };

    if (!tu_have("curl")) SKIP("curl not installed");
    fixture_start(&f, true, 5000, 5000, 5000);
    get[5] = byname[5] = f.cert;
    snprintf(url, sizeof(url), "%s/health", f.url);
    snprintf(url2, sizeof(url2), "https://localhost:%u/v1/completions", f.port);
    snprintf(resolve, sizeof(resolve), "localhost:%u:127.0.0.1", f.port);
    ASSERT_EQ_INT(run_client(&f, get, out, sizeof(out)), 0);
    ASSERT_EQ_STR(out, "ok GET /health 0\n");
    ASSERT_EQ_INT(run_client(&f, byname, out, sizeof(out)), 0);
    ASSERT_EQ_STR(out, "ok POST /v1/completions 2\n");
    /* TLS 1.1 is refused (curl exits 35: SSL connect error). */
    ASSERT(run_client(&f, insecure_tls11, out, sizeof(out)) != 0);
    ASSERT_EQ_INT(mini_server_stats(f.srv)->tls_failed, 1);
    ASSERT_EQ_INT(run_client(&f, get, out, sizeof(out)), 0);
    fixture_stop(&f);
}

TEST(http_server_openssl_s_client_versions_and_alpn)
{
    struct fixture f;
    char connect[64], out[16384];
    const char *tls13[] = { "openssl", "s_client", "-connect",    connect,
                            "-tls1_3", "-alpn",    "h2,http/1.1", NULL };
    const char *tls12[] = { "openssl", "s_client", "-connect", connect, "-brief", "-tls1_2", NULL };
    const char *tls11[] = { "openssl", "s_client", "-connect", connect,
                            "-brief",  "-tls1_1",  "-cipher",  "DEFAULT:@SECLEVEL=0",
                            NULL };
    const char *weak[] = { "openssl", "s_client", "-connect", connect,
                           "-brief",  "-tls1_2",  "-cipher",  "AES128-SHA:@SECLEVEL=0",
                           NULL };

    if (!tu_have("openssl")) SKIP("openssl not installed");
    fixture_start(&f, true, 5000, 5000, 5000);
    snprintf(connect, sizeof(connect), "127.0.0.1:%u", f.port);
    ASSERT_EQ_INT(run_client(&f, tls13, out, sizeof(out)), 0);
    ASSERT(strstr(out, "New, TLSv1.3, Cipher is TLS_") != NULL);
    ASSERT(strstr(out, "ALPN protocol: http/1.1") != NULL);
    ASSERT(strstr(out, "Compression: NONE") != NULL);
    ASSERT_EQ_INT(run_client(&f, tls12, out, sizeof(out)), 0);
    ASSERT(strstr(out, "Protocol version: TLSv1.2") != NULL);
    ASSERT(strstr(out, "Ciphersuite: ECDHE-ECDSA-") != NULL);
    ASSERT(run_client(&f, tls11, out, sizeof(out)) != 0);
    ASSERT(strstr(out, "Protocol version: TLSv1.1") == NULL);
    ASSERT(run_client(&f, weak, out, sizeof(out)) != 0);
    ASSERT_EQ_INT(mini_server_stats(f.srv)->tls_failed, 2);
    fixture_stop(&f);
}

/* ---- raw socket clients (forked) ---- */

struct raw_opts {
    uint16_t port;
    const char *send;
    size_t send_len;
    unsigned drip_ms;  /* > 0: one byte per drip_ms */
    unsigned pause_ms; /* after sending, before reading */
    char out_path[512];
};

/* Sends, then reads until EOF; writes what it got to out_path. Returns the
 * seconds*10 until the server closed (capped at 250). */
static int raw_client(void *arg)
{
    const struct raw_opts *o = arg;
    uint64_t t0 = slm_now_ns();
    int fd = tu_connect(o->port);
    char buf[65536];
    size_t got = 0;

    if (fd < 0) return 255;
    for (size_t i = 0; i < o->send_len;) {
        size_t n = o->drip_ms > 0 ? 1 : o->send_len - i;
        ssize_t w = send(fd, o->send + i, n, MSG_NOSIGNAL);
        struct pollfd pfd = { fd, POLLIN, 0 };

        if (w <= 0) break;
        i += (size_t)w;
        /* Stop dripping as soon as the server hangs up. */
        if (o->drip_ms > 0 && poll(&pfd, 1, (int)o->drip_ms) > 0) break;
    }
    if (o->pause_ms > 0) {
        struct timespec ts = { o->pause_ms / 1000, (long)(o->pause_ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);
    }
    for (;;) {
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

        if (r <= 0) break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    tu_write_file(o->out_path, buf, got);
    close(fd);
    {
        uint64_t ds = (slm_now_ns() - t0) / 100000000u;

        return ds > 250 ? 250 : (int)ds;
    }
}

static int raw_exchange(struct fixture *f, struct raw_opts *o, const char *text, char *out,
                        size_t cap)
{
    int ds;

    o->port = f->port;
    if (text != NULL) {
        o->send = text;
        o->send_len = strlen(text);
    }
    snprintf(o->out_path, sizeof(o->out_path), "%s/raw.out", t_tmpdir());
    ds = tu_run_until_exit(f->loop, tu_fork(raw_client, o), 30000);
    tu_read_file(o->out_path, out, cap);
    return ds;
}

static int count(const char *s, const char *needle)
{
    int n = 0;

    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* H08: three pipelined requests get three responses in order. */
TEST(http_server_pipelining)
{
    struct fixture f;
    struct raw_opts o;
    char out[8192];

    memset(&o, 0, sizeof(o));
    fixture_start(&f, false, 5000, 5000, 5000);
    raw_exchange(&f, &o,
                 "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                 "POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n"
                 "GET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                 out, sizeof(out));
    ASSERT_EQ_INT(count(out, "HTTP/1.1 200 OK"), 3);
    ASSERT(strstr(out, "ok GET /1 0") < strstr(out, "ok POST /2 3"));
    ASSERT(strstr(out, "ok POST /2 3") < strstr(out, "ok GET /3 0"));
    fixture_stop(&f);
}

/* H01/H08: a request smuggled behind CL+TE is never answered. */
TEST(http_server_smuggled_request_never_answered)
{
    static const char *const attacks[] = {
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n"
        "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"
        "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n"
        "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\nHost: h\n\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    };
    static const char *const status[] = { "400", "400", "501", "400", "400" };
    struct fixture f;
    char out[8192];

    fixture_start(&f, false, 5000, 5000, 5000);
    for (size_t k = 0; k < SLM_ARRAY_LEN(attacks); k++) {
        struct raw_opts o;

        memset(&o, 0, sizeof(o));
        raw_exchange(&f, &o, attacks[k], out, sizeof(out));
        if (count(out, "HTTP/1.1 ") != 1 || strstr(out, status[k]) == NULL ||
            strstr(out, "Connection: close") == NULL || strstr(out, "smuggled") != NULL)
            t_fail(__FILE__, __LINE__, "attack %zu: got '%s'", k, out);
    }
    ASSERT_EQ_INT(mini_server_stats(f.srv)->requests, 0);
    fixture_stop(&f);
}

/* H04/H05: one header byte per second does not extend the head deadline. */
TEST(http_server_slowloris_cut_at_head_deadline)
{
    struct fixture f;
    struct raw_opts o;
    char out[256];
    int ds;

    memset(&o, 0, sizeof(o));
    o.drip_ms = 1000;
    fixture_start(&f, false, 3000, 30000, 60000);
    ds = raw_exchange(&f, &o, "GET / HTTP/1.1\r\nHost: slow\r\nX-A: aaaaaaaaaaaaaaaaaaaa\r\n\r\n",
                      out, sizeof(out));
    /* Closed at 3 s (+ up to one drip interval to notice), not after the ~50 s drip. */
    if (ds < 29 || ds > 45)
        t_fail(__FILE__, __LINE__, "closed after %d.%d s, want ~3 s", ds / 10, ds % 10);
    ASSERT_EQ_INT(mini_server_stats(f.srv)->timeouts, 1);
    ASSERT_EQ_INT(mini_server_stats(f.srv)->requests, 0);
    fixture_stop(&f);
}

/* H04: the TLS handshake counts against the same deadline. */
TEST(http_server_stalled_tls_handshake_cut)
{
    struct fixture f;
    struct raw_opts o;
    char out[256];
    int ds;

    memset(&o, 0, sizeof(o));
    fixture_start(&f, true, 1000, 30000, 60000);
    /* Half a ClientHello record header, then nothing. */
    ds = raw_exchange(&f, &o, "\x16\x03\x01", out, sizeof(out));
    ASSERT(ds >= 9 && ds <= 20);
    ASSERT_EQ_INT(mini_server_stats(f.srv)->timeouts, 1);
    fixture_stop(&f);
}

/* H04: body idle and keep-alive idle deadlines. */
TEST(http_server_body_idle_and_keepalive_idle)
{
    struct fixture f;
    struct raw_opts o;
    char out[4096];
    int ds;

    memset(&o, 0, sizeof(o));
    fixture_start(&f, false, 5000, 800, 1500);
    /* Announces 10 bytes, sends 2, stalls: closed after ~0.8 s. */
    ds = raw_exchange(&f, &o, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab", out,
                      sizeof(out));
    ASSERT(ds >= 7 && ds <= 15);
    ASSERT_EQ_STR(out, "");
    /* A keep-alive connection is answered, then closed after ~1.5 s idle. */
    ds = raw_exchange(&f, &o, "GET /k HTTP/1.1\r\nHost: h\r\n\r\n", out, sizeof(out));
    ASSERT(strstr(out, "ok GET /k 0") != NULL);
    ASSERT(ds >= 14 && ds <= 25);
    ASSERT_EQ_INT(mini_server_stats(f.srv)->timeouts, 2);
    fixture_stop(&f);
}

/* H01: an empty connection closes silently; limits answer 431/414/413. */
TEST(http_server_empty_connection_and_limits)
{
    struct fixture f;
    struct raw_opts o;
    char out[4096], big[9000 + 64];

    memset(&o, 0, sizeof(o));
    fixture_start(&f, false, 5000, 5000, 5000);
    o.send = "";
    o.send_len = 0;
    raw_exchange(&f, &o, NULL, out, sizeof(out));
    ASSERT_EQ_STR(out, "");
    snprintf(big, sizeof(big), "GET /%08900d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    raw_exchange(&f, &o, big, out, sizeof(out));
    ASSERT(strncmp(out, "HTTP/1.1 414 URI Too Long\r\n", 27) == 0);
    raw_exchange(&f, &o, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999\r\n\r\n", out,
                 sizeof(out));
    ASSERT(strncmp(out, "HTTP/1.1 413 ", 13) == 0);
    fixture_stop(&f);
}
