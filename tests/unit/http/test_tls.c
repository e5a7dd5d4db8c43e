/*
 * test_tls.c - TLS: self-signed certificate generation (SANs, key type,
 * file modes), context loading errors (S05), real non-blocking handshakes on
 * 127.0.0.1 driven by the event loop against an OpenSSL client in a forked
 * process (TLS 1.3, TLS 1.2, ALPN), refusal of TLS 1.1 and weak suites (S03),
 * and reload with old connections kept alive (H12).
 */
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "harness/t.h"
#include "http/loop.h"
#include "http/tls.h"
#include "http_test_util.h"

static void make_cert(const char *dir, const char *name, char *cert, char *key, size_t cap)
{
    static const char *const hosts[] = { "localhost", "127.0.0.1" };
    struct slm_diag d;

    snprintf(cert, cap, "%s/%s.crt", dir, name);
    snprintf(key, cap, "%s/%s.key", dir, name);
    if (http_tls_selfsigned_write(cert, key, hosts, 2, 30, &d) < 0)
        t_fail(__FILE__, __LINE__, "selfsigned: %s", d.msg);
}

TEST(http_tls_selfsigned_has_the_right_sans_and_modes)
{
    static const char *const hosts[] = { "slm.example", "localhost", "127.0.0.1", "::1",
                                         "*.dev.example" };
    char cert[512], key[512];
    struct stat st;
    struct slm_diag d;
    GENERAL_NAMES *gens;
    X509 *x;
    EVP_PKEY *pk;
    FILE *f;
    int n_dns = 0, n_ip = 0;

    umask(022);
    snprintf(cert, sizeof(cert), "%s/c.pem", t_tmpdir());
    snprintf(key, sizeof(key), "%s/k.pem", t_tmpdir());
    ASSERT_OK(http_tls_selfsigned_write(cert, key, hosts, 5, 365, &d));
    ASSERT(stat(cert, &st) == 0 && (st.st_mode & 0777) == 0600);
    ASSERT(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600);
    f = fopen(cert, "r");
    ASSERT_NOT_NULL(f);
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ASSERT_NOT_NULL(x);
    /* The key is EC P-256. */
    pk = X509_get0_pubkey(x);
    ASSERT_EQ_INT(EVP_PKEY_get_base_id(pk), EVP_PKEY_EC);
    ASSERT_EQ_INT(EVP_PKEY_get_bits(pk), 256);
    /* Self-signed: issuer == subject, signature verifies with its own key. */
    ASSERT_EQ_INT(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
    ASSERT_EQ_INT(X509_verify(x, pk), 1);
    /* Every name is in the SAN with its kind. */
    ASSERT_EQ_INT(X509_check_host(x, "slm.example", 0, 0, NULL), 1);
    ASSERT_EQ_INT(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    ASSERT_EQ_INT(X509_check_host(x, "a.dev.example", 0, 0, NULL), 1);
    ASSERT_EQ_INT(X509_check_host(x, "other.example", 0, 0, NULL), 0);
    ASSERT_EQ_INT(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    ASSERT_EQ_INT(X509_check_ip_asc(x, "::1", 0), 1);
    ASSERT_EQ_INT(X509_check_ip_asc(x, "127.0.0.2", 0), 0);
    gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    ASSERT_NOT_NULL(gens);
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        int type;

        GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, i), &type);
        n_dns += type == GEN_DNS;
        n_ip += type == GEN_IPADD;
    }
    ASSERT_EQ_INT(n_dns, 3);
    ASSERT_EQ_INT(n_ip, 2);
    GENERAL_NAMES_free(gens);
    X509_free(x);
    /* The pair loads as a server context. */
    {
        struct http_tls_ctx *ctx;

        ASSERT_OK(http_tls_ctx_new(cert, key, &ctx, &d));
        http_tls_ctx_unref(ctx);
    }
}

TEST(http_tls_selfsigned_checks_openssl_cli_agrees)
{
    char cert[512], key[512], out[512], buf[4096];
    const char *argv[] = { "openssl",    "x509",      "-in",      cert,        "-noout",
                           "-checkhost", "localhost", "-checkip", "127.0.0.1", NULL };
    struct http_loop *loop;

    if (!tu_have("openssl")) SKIP("openssl not installed");
    make_cert(t_tmpdir(), "s", cert, key, sizeof(cert));
    snprintf(out, sizeof(out), "%s/out.txt", t_tmpdir());
    ASSERT_OK(http_loop_new(&loop));
    ASSERT_EQ_INT(tu_run_until_exit(loop, tu_spawn(argv, out), 10000), 0);
    tu_read_file(out, buf, sizeof(buf));
    ASSERT(strstr(buf, "Hostname localhost does match certificate") != NULL);
    ASSERT(strstr(buf, "IP 127.0.0.1 does match certificate") != NULL);
    http_loop_free(loop);
}

TEST(http_tls_selfsigned_rejects_bad_hosts)
{
    static const char *const bad[] = { "a,DNS:evil" };
    static const char *const empty[] = { "" };
    char cert[512], key[512];
    struct slm_diag d;

    snprintf(cert, sizeof(cert), "%s/c.pem", t_tmpdir());
    snprintf(key, sizeof(key), "%s/k.pem", t_tmpdir());
    ASSERT_ERR(http_tls_selfsigned_write(cert, key, bad, 1, 30, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "neither an IP address nor a DNS name") != NULL);
    ASSERT_ERR(http_tls_selfsigned_write(cert, key, empty, 1, 30, &d), SLM_EINVAL);
    ASSERT_ERR(http_tls_selfsigned_write(cert, key, bad, 0, 30, &d), SLM_EINVAL);
    ASSERT_ERR(http_tls_selfsigned_write(cert, key, empty, 1, 0, &d), SLM_EINVAL);
    ASSERT(access(cert, F_OK) != 0 && access(key, F_OK) != 0);
}

TEST(http_tls_ctx_load_errors)
{
    char cert[512], key[512], cert2[512], key2[512], junk[600];
    struct http_tls_ctx *ctx = NULL;
    struct slm_diag d;

    make_cert(t_tmpdir(), "a", cert, key, sizeof(cert));
    make_cert(t_tmpdir(), "b", cert2, key2, sizeof(cert2));
    ASSERT_ERR(http_tls_ctx_new(cert, "/nonexistent/k.pem", &ctx, &d), SLM_ENOTFOUND);
    ASSERT(strstr(d.msg, "/nonexistent/k.pem") != NULL);
    ASSERT_ERR(http_tls_ctx_new("/nonexistent/c.pem", key, &ctx, &d), SLM_ENOTFOUND);
    /* S05: a key readable by others is refused, with the fix in the message. */
    ASSERT(chmod(key, 0644) == 0);
    ASSERT_ERR(http_tls_ctx_new(cert, key, &ctx, &d), SLM_EPERM);
    ASSERT(strstr(d.msg, "has mode 0644") != NULL && strstr(d.msg, "chmod 600") != NULL);
    ASSERT(chmod(key, 0600) == 0);
    /* Key of another certificate. */
    ASSERT_ERR(http_tls_ctx_new(cert, key2, &ctx, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "does not match") != NULL);
    /* Not PEM at all. */
    snprintf(junk, sizeof(junk), "%s/junk.pem", t_tmpdir());
    tu_write_file(junk, "hello\n", 6);
    ASSERT_ERR(http_tls_ctx_new(junk, key, &ctx, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "cannot load certificate") != NULL);
    ASSERT_ERR(http_tls_ctx_new(cert, junk, &ctx, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "cannot load private key") != NULL);
    ASSERT_NULL(ctx);
}

/* ---- a one-connection TLS server driven by the loop ---- */

struct tls_srv {
    struct http_loop *loop;
    struct http_tls_ctx *ctx;
    struct http_io listen_io;
    struct http_io io;
    struct http_tls_conn *conn;
    int fd;
    int state; /* 0 accept, 1 handshake, 2 read, 3 done */
    int rc;
    struct slm_diag d;
    char got[64];
    char version[32];
    char alpn[32];
};

static void srv_step(struct tls_srv *s)
{
    unsigned want = 0;
    int rc;

    if (s->state == 1) {
        rc = http_tls_handshake(s->conn, &want, &s->d);
        if (rc == SLM_EAGAIN) {
            ASSERT_OK(http_io_start(s->loop, &s->io, want));
            return;
        }
        if (rc < 0) {
            s->rc = rc;
            s->state = 3;
            http_io_stop(s->loop, &s->io);
            return;
        }
        {
            size_t n;
            const char *a = http_tls_conn_alpn(s->conn, &n);

            snprintf(s->version, sizeof(s->version), "%s", http_tls_conn_version(s->conn));
            snprintf(s->alpn, sizeof(s->alpn), "%.*s", (int)n, a);
        }
        s->state = 2;
    }
    if (s->state == 2) {
        size_t n, w;

        rc = http_tls_read(s->conn, s->got, sizeof(s->got) - 1, &n, &want, &s->d);
        if (rc == SLM_EAGAIN) {
            ASSERT_OK(http_io_start(s->loop, &s->io, want));
            return;
        }
        ASSERT_OK(rc);
        s->got[n] = '\0';
        /* 4 bytes always fit in a fresh socket buffer. */
        ASSERT_OK(http_tls_write(s->conn, "pong", 4, &w, &want, &s->d));
        ASSERT_EQ_SIZE(w, 4);
        http_tls_shutdown(s->conn);
        s->state = 3;
        s->rc = 0;
        http_io_stop(s->loop, &s->io);
    }
}

static void srv_on_io(struct http_loop *loop, struct http_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    srv_step(io->data);
}

static void srv_on_accept(struct http_loop *loop, struct http_io *io, unsigned events)
{
    struct tls_srv *s = io->data;
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    (void)events;
    if (fd < 0) return;
    http_io_stop(loop, io);
    s->fd = fd;
    ASSERT_OK(http_tls_conn_new(s->ctx, fd, &s->conn));
    http_io_init(&s->io, fd, srv_on_io, s);
    s->state = 1;
    srv_step(s);
}

struct client_opts {
    uint16_t port;
    int min_version;
    int max_version;
    const char *ciphers;
    const char *cafile;
};

/* Blocking OpenSSL client: 0 = ok (pong received), 10 = handshake refused. */
static int tls_client(void *arg)
{
    const struct client_opts *o = arg;
    static const unsigned char alpn[] = { 2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL *ssl;
    char buf[16] = "";
    int fd = tu_connect(o->port), n;

    if (c == NULL || fd < 0) return 2;
    SSL_CTX_set_security_level(c, 0);
    SSL_CTX_set_min_proto_version(c, o->min_version);
    SSL_CTX_set_max_proto_version(c, o->max_version);
    if (o->ciphers != NULL && SSL_CTX_set_cipher_list(c, o->ciphers) != 1) return 3;
    SSL_CTX_set_alpn_protos(c, alpn, sizeof(alpn));
    if (o->cafile != NULL) {
        SSL_CTX_load_verify_locations(c, o->cafile, NULL);
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    }
    ssl = SSL_new(c);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "localhost");
    if (SSL_connect(ssl) != 1) return 10;
    if (SSL_write(ssl, "ping", 4) != 4) return 4;
    n = SSL_read(ssl, buf, sizeof(buf) - 1);
    if (n != 4 || memcmp(buf, "pong", 4) != 0) return 5;
    return 0;
}

/* Runs one server connection against a forked client; returns the client's status. */
static int handshake_once(struct tls_srv *s, struct client_opts *o)
{
    uint16_t port;
    int lfd = tu_listen(&port), status;

    s->state = 0;
    s->rc = 1;
    s->conn = NULL;
    s->got[0] = s->version[0] = s->alpn[0] = '\0';
    o->port = port;
    http_io_init(&s->listen_io, lfd, srv_on_accept, s);
    ASSERT_OK(http_io_start(s->loop, &s->listen_io, HTTP_IO_READ));
    status = tu_run_until_exit(s->loop, tu_fork(tls_client, o), 20000);
    /* Let the server side see the client's last flight or its close. */
    for (int i = 0; i < 50 && s->state != 3; i++)
        ASSERT_OK(http_loop_run_once(s->loop, 20));
    http_io_stop(s->loop, &s->listen_io);
    http_io_stop(s->loop, &s->io);
    http_tls_conn_free(s->conn);
    s->conn = NULL;
    close(s->fd);
    close(lfd);
    return status;
}

TEST(http_tls_handshake_over_loopback)
{
    static struct tls_srv s;
    char cert[512], key[512];
    struct client_opts o = { 0, TLS1_3_VERSION, TLS1_3_VERSION, NULL, NULL };
    struct slm_diag d;

    make_cert(t_tmpdir(), "srv", cert, key, sizeof(cert));
    ASSERT_OK(http_loop_new(&s.loop));
    ASSERT_OK(http_tls_ctx_new(cert, key, &s.ctx, &d));
    o.cafile = cert;
    ASSERT_EQ_INT(handshake_once(&s, &o), 0);
    ASSERT_OK(s.rc);
    ASSERT_EQ_STR(s.got, "ping");
    ASSERT_EQ_STR(s.version, "TLSv1.3");
    ASSERT_EQ_STR(s.alpn, "http/1.1");
    /* TLS 1.2 with an intermediate suite works. */
    o.min_version = o.max_version = TLS1_2_VERSION;
    o.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
    ASSERT_EQ_INT(handshake_once(&s, &o), 0);
    ASSERT_EQ_STR(s.version, "TLSv1.2");
    http_tls_ctx_unref(s.ctx);
    http_loop_free(s.loop);
}

/* S03: TLS 1.1 and non-forward-secret TLS 1.2 suites are refused; the server survives. */
TEST(http_tls_refuses_old_versions_and_weak_suites)
{
    static struct tls_srv s;
    char cert[512], key[512];
    struct client_opts o = { 0, TLS1_1_VERSION, TLS1_1_VERSION, "DEFAULT:@SECLEVEL=0", NULL };
    struct slm_diag d;

    make_cert(t_tmpdir(), "srv", cert, key, sizeof(cert));
    ASSERT_OK(http_loop_new(&s.loop));
    ASSERT_OK(http_tls_ctx_new(cert, key, &s.ctx, &d));
    ASSERT_EQ_INT(handshake_once(&s, &o), 10);
    ASSERT_ERR(s.rc, SLM_EFORMAT);
    ASSERT(strstr(s.d.msg, "unsupported protocol") != NULL);
    o.min_version = TLS1_VERSION;
    o.max_version = TLS1_VERSION;
    ASSERT_EQ_INT(handshake_once(&s, &o), 10);
    o.min_version = o.max_version = TLS1_2_VERSION;
    o.ciphers = "AES128-SHA:@SECLEVEL=0";
    ASSERT_EQ_INT(handshake_once(&s, &o), 10);
    ASSERT_ERR(s.rc, SLM_EFORMAT);
    ASSERT(strstr(s.d.msg, "no shared cipher") != NULL);
    /* Still healthy. */
    o.min_version = o.max_version = TLS1_3_VERSION;
    o.ciphers = NULL;
    ASSERT_EQ_INT(handshake_once(&s, &o), 0);
    http_tls_ctx_unref(s.ctx);
    http_loop_free(s.loop);
}

/* Garbage instead of a ClientHello fails the handshake cleanly. */
static int garbage_client(void *arg)
{
    const struct client_opts *o = arg;
    int fd = tu_connect(o->port);
    char buf[64];

    if (fd < 0 || write(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27) != 27) return 2;
    (void)!read(fd, buf, sizeof(buf));
    return 0;
}

TEST(http_tls_garbage_client_hello)
{
    static struct tls_srv s;
    char cert[512], key[512];
    struct client_opts o = { 0, 0, 0, NULL, NULL };
    struct slm_diag d;
    uint16_t port;
    int lfd;

    make_cert(t_tmpdir(), "srv", cert, key, sizeof(cert));
    ASSERT_OK(http_loop_new(&s.loop));
    ASSERT_OK(http_tls_ctx_new(cert, key, &s.ctx, &d));
    lfd = tu_listen(&port);
    o.port = port;
    s.rc = 1;
    http_io_init(&s.listen_io, lfd, srv_on_accept, &s);
    ASSERT_OK(http_io_start(s.loop, &s.listen_io, HTTP_IO_READ));
    {
        pid_t pid = tu_fork(garbage_client, &o);

        for (int i = 0; i < 250 && s.state != 3; i++)
            ASSERT_OK(http_loop_run_once(s.loop, 20));
        close(s.fd); /* unblocks the client's read */
        ASSERT_EQ_INT(tu_run_until_exit(s.loop, pid, 10000), 0);
    }
    ASSERT_ERR(s.rc, SLM_EFORMAT);
    http_tls_conn_free(s.conn);
    close(lfd);
    http_tls_ctx_unref(s.ctx);
    http_loop_free(s.loop);
}

/* H12: reload swaps the context; a connection made before keeps its reference. */
TEST(http_tls_reload_keeps_old_connections)
{
    char c1[512], k1[512], c2[512], k2[512], junk[600];
    struct http_tls_ctx *slot = NULL, *before;
    struct http_tls_conn *old_conn;
    struct slm_diag d;
    int sv[2];

    make_cert(t_tmpdir(), "one", c1, k1, sizeof(c1));
    make_cert(t_tmpdir(), "two", c2, k2, sizeof(c2));
    ASSERT_OK(http_tls_ctx_new(c1, k1, &slot, &d));
    ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    ASSERT_OK(http_tls_conn_new(slot, sv[0], &old_conn));
    before = slot;
    ASSERT_OK(http_tls_ctx_reload(&slot, c2, k2, &d));
    ASSERT(slot != before);
    /* A broken certificate is refused and the current context stays. */
    snprintf(junk, sizeof(junk), "%s/junk.pem", t_tmpdir());
    tu_write_file(junk, "junk", 4);
    before = slot;
    ASSERT_ERR(http_tls_ctx_reload(&slot, junk, k2, &d), SLM_EFORMAT);
    ASSERT(slot == before);
    /* The old connection's context is still alive (ASan would flag a use after free). */
    ASSERT_EQ_STR(http_tls_conn_version(old_conn), "TLSv1.3");
    http_tls_conn_free(old_conn);
    http_tls_ctx_unref(slot);
    close(sv[0]);
    close(sv[1]);
}
