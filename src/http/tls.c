/*
 * tls.c - OpenSSL server contexts, non-blocking connections and self-signed
 * certificates (see tls.h).
 *
 * Settings follow Mozilla's "intermediate" profile (version 5.7): TLS 1.2
 * and 1.3; the six ECDHE AEAD suites for TLS 1.2 and the three TLS 1.3
 * suites; groups X25519, P-256, P-384; the client's suite preference is
 * honoured (all offered suites are strong). RELIABILITY S01-S06.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "http/loop.h"
#include "http/tls.h"

#define TLS12_CIPHERS                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS   "X25519:prime256v1:secp384r1"

struct http_tls_ctx {
    atomic_int refs;
    SSL_CTX *ssl_ctx;
};

struct http_tls_conn {
    struct http_tls_ctx *ctx;
    SSL *ssl;
};

/* Appends OpenSSL's first queued error reason to a message and clears the queue. */
static int tls_fail(struct slm_diag *d, int code, const char *what)
{
    unsigned long e = ERR_peek_error();
    char reason[160] = "";

    if (e != 0) {
        const char *r = ERR_reason_error_string(e);

        snprintf(reason, sizeof(reason), ": %s", r != NULL ? r : "unknown error");
    }
    ERR_clear_error();
    return slm_diag_set(d, code, "tls: %s%s", what, reason);
}

/* ALPN: pick http/1.1 when offered; otherwise go on without ALPN. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char want[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    unsigned char *sel = NULL;

    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, want, sizeof(want), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* S05: the key must be a regular file of ours, not readable by others. */
static int check_key_file(const char *key_path, struct slm_diag *d)
{
    struct stat st;

    if (stat(key_path, &st) < 0)
        return slm_diag_set(d, errno == ENOENT ? SLM_ENOTFOUND : SLM_EIO, "tls: key file '%s': %s",
                            key_path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return slm_diag_set(d, SLM_EINVAL, "tls: key file '%s' is not a regular file", key_path);
    if (st.st_uid != geteuid())
        return slm_diag_set(d, SLM_EPERM,
                            "tls: key file '%s' is owned by uid %u, not by this user (uid %u)",
                            key_path, (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & 077)
        return slm_diag_set(d, SLM_EPERM,
                            "tls: key file '%s' has mode %04o: it must not be readable by group "
                            "or others (chmod 600 '%s')",
                            key_path, (unsigned)(st.st_mode & 07777), key_path);
    return 0;
}

/* Creates a server context from PEM files; see tls.h. */
int http_tls_ctx_new(const char *cert_path, const char *key_path, struct http_tls_ctx **out,
                     struct slm_diag *d)
{
    static const unsigned char sid_ctx[] = "slm";
    struct http_tls_ctx *ctx = NULL;
    SSL_CTX *sc = NULL;
    int rc;

    *out = NULL;
    rc = check_key_file(key_path, d);
    if (rc < 0) return rc;
    if (access(cert_path, R_OK) < 0)
        return slm_diag_set(d, errno == ENOENT ? SLM_ENOTFOUND : SLM_EIO,
                            "tls: certificate file '%s': %s", cert_path, strerror(errno));
    ERR_clear_error();
    sc = SSL_CTX_new(TLS_server_method());
    if (sc == NULL) return tls_fail(d, SLM_ENOMEM, "cannot create a context");
    if (SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(sc, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(sc, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_ciphersuites(sc, TLS13_SUITES) != 1 ||
        SSL_CTX_set1_groups_list(sc, TLS_GROUPS) != 1 ||
        SSL_CTX_set_session_id_context(sc, sid_ctx, sizeof(sid_ctx) - 1) != 1) {
        rc = tls_fail(d, SLM_EINTERNAL, "cannot apply the TLS settings");
        goto fail;
    }
    SSL_CTX_set_options(sc, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(sc, alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(sc, cert_path) != 1) {
        char what[600];

        snprintf(what, sizeof(what), "cannot load certificate '%s'", cert_path);
        rc = tls_fail(d, SLM_EFORMAT, what);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(sc, key_path, SSL_FILETYPE_PEM) != 1) {
        char what[1200];

        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(what, sizeof(what), "key '%s' does not match certificate '%s'", key_path,
                     cert_path);
        else
            snprintf(what, sizeof(what), "cannot load private key '%s'", key_path);
        rc = tls_fail(d, SLM_EFORMAT, what);
        goto fail;
    }
    if (SSL_CTX_check_private_key(sc) != 1) {
        char what[1200];

        snprintf(what, sizeof(what), "key '%s' does not match certificate '%s'", key_path,
                 cert_path);
        rc = tls_fail(d, SLM_EFORMAT, what);
        goto fail;
    }
    ctx = slm_calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = slm_diag_set(d, SLM_ENOMEM, "tls: out of memory");
        goto fail;
    }
    atomic_init(&ctx->refs, 1);
    ctx->ssl_ctx = sc;
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(sc);
    return rc;
}

void http_tls_ctx_ref(struct http_tls_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

/* Drops a reference; frees on the last one. */
void http_tls_ctx_unref(struct http_tls_ctx *ctx)
{
    if (ctx == NULL) return;
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1) return;
    SSL_CTX_free(ctx->ssl_ctx);
    slm_free(ctx);
}

/* Replaces *slot with a context built from the files, or leaves it alone on error. */
int http_tls_ctx_reload(struct http_tls_ctx **slot, const char *cert_path, const char *key_path,
                        struct slm_diag *d)
{
    struct http_tls_ctx *fresh;
    int rc = http_tls_ctx_new(cert_path, key_path, &fresh, d);

    if (rc < 0) return rc;
    http_tls_ctx_unref(*slot);
    *slot = fresh;
    return 0;
}

/* ---- connections ---- */

/* Wraps fd in a server-side TLS connection; takes a context reference. */
int http_tls_conn_new(struct http_tls_ctx *ctx, int fd, struct http_tls_conn **out)
{
    struct http_tls_conn *c;

    *out = NULL;
    c = slm_calloc(1, sizeof(*c));
    if (c == NULL) return SLM_ENOMEM;
    c->ssl = SSL_new(ctx->ssl_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
        SSL_free(c->ssl);
        slm_free(c);
        ERR_clear_error();
        return SLM_ENOMEM;
    }
    SSL_set_accept_state(c->ssl);
    http_tls_ctx_ref(ctx);
    c->ctx = ctx;
    *out = c;
    return 0;
}

void http_tls_conn_free(struct http_tls_conn *conn)
{
    if (conn == NULL) return;
    SSL_free(conn->ssl);
    http_tls_ctx_unref(conn->ctx);
    slm_free(conn);
}

/* Maps an SSL_get_error result to SLM_EAGAIN + want, or an error. */
static int tls_result(struct http_tls_conn *conn, int ret, unsigned *want, const char *op,
                      struct slm_diag *d)
{
    int e = SSL_get_error(conn->ssl, ret);
    char what[64];

    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = HTTP_IO_READ;
        return SLM_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = HTTP_IO_WRITE;
        return SLM_EAGAIN;
    case SSL_ERROR_SYSCALL:
        snprintf(what, sizeof(what), "%s: %s", op,
                 errno != 0 ? strerror(errno) : "connection closed by peer");
        return tls_fail(d, SLM_EIO, what);
    default:
        snprintf(what, sizeof(what), "%s failed", op);
        return tls_fail(d, SLM_EFORMAT, what);
    }
}

/* Advances the handshake; see tls.h. */
int http_tls_handshake(struct http_tls_conn *conn, unsigned *want, struct slm_diag *d)
{
    int r;

    *want = 0;
    ERR_clear_error();
    errno = 0;
    r = SSL_do_handshake(conn->ssl);
    if (r == 1) return 0;
    return tls_result(conn, r, want, "handshake", d);
}

/* Reads decrypted bytes; see tls.h. */
int http_tls_read(struct http_tls_conn *conn, void *buf, size_t len, size_t *n, unsigned *want,
                  struct slm_diag *d)
{
    int e;

    *n = 0;
    *want = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_read_ex(conn->ssl, buf, len, n) == 1) return 0;
    e = SSL_get_error(conn->ssl, 0);
    if (e == SSL_ERROR_ZERO_RETURN) {
        *n = 0;
        return 0;
    }
    return tls_result(conn, 0, want, "read", d);
}

/* Writes bytes; see tls.h. */
int http_tls_write(struct http_tls_conn *conn, const void *buf, size_t len, size_t *n,
                   unsigned *want, struct slm_diag *d)
{
    *n = 0;
    *want = 0;
    ERR_clear_error();
    errno = 0;
    if (len == 0 || SSL_write_ex(conn->ssl, buf, len, n) == 1) return 0;
    return tls_result(conn, 0, want, "write", d);
}

/* Sends close_notify (best effort, non-blocking). */
void http_tls_shutdown(struct http_tls_conn *conn)
{
    ERR_clear_error();
    if (SSL_is_init_finished(conn->ssl)) (void)SSL_shutdown(conn->ssl);
    ERR_clear_error();
}

const char *http_tls_conn_version(const struct http_tls_conn *conn)
{
    return SSL_get_version(conn->ssl);
}

const char *http_tls_conn_alpn(const struct http_tls_conn *conn, size_t *len)
{
    const unsigned char *p = NULL;
    unsigned n = 0;

    SSL_get0_alpn_selected(conn->ssl, &p, &n);
    *len = n;
    return p != NULL ? (const char *)p : "";
}

/* ---- self-signed certificates ---- */

/* Writes data to path atomically with mode 0600. */
static int write_private_file(const char *path, const char *data, size_t len, struct slm_diag *d)
{
    char tmp[4096];
    int fd, n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
    size_t off = 0;

    if (n < 0 || (size_t)n >= sizeof(tmp))
        return slm_diag_set(d, SLM_EINVAL, "tls: path '%s' too long", path);
    fd = mkstemp(tmp); /* creates with mode 0600 */
    if (fd < 0)
        return slm_diag_set(d, SLM_EIO, "tls: cannot create a file next to '%s': %s", path,
                            strerror(errno));
    if (fchmod(fd, 0600) < 0) goto fail;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);

        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) goto fail;
        off += (size_t)w;
    }
    if (fsync(fd) < 0) goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0) goto fail;
    return 0;
fail : {
    int e = errno;

    if (fd >= 0) close(fd);
    unlink(tmp);
    return slm_diag_set(d, SLM_EIO, "tls: cannot write '%s': %s", path, strerror(e));
}
}

/* A DNS name for a certificate: letters, digits, '-', '.', a leading "*." allowed. */
static bool dns_name_ok(const char *h)
{
    size_t n = strlen(h);

    if (n == 0 || n > 253) return false;
    if (h[0] == '*' && h[1] == '.') h += 2;
    for (; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
              *h == '-' || *h == '.'))
            return false;
    return true;
}

/* Builds the subjectAltName list from hosts. */
static int add_sans(X509 *x, const char *const *hosts, size_t n_hosts, struct slm_diag *d)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int rc = 0;

    if (gens == NULL) return slm_diag_set(d, SLM_ENOMEM, "tls: out of memory");
    for (size_t i = 0; i < n_hosts && rc == 0; i++) {
        unsigned char ip[16];
        int ip_len = 0;
        GENERAL_NAME *g = GENERAL_NAME_new();

        if (inet_pton(AF_INET, hosts[i], ip) == 1)
            ip_len = 4;
        else if (inet_pton(AF_INET6, hosts[i], ip) == 1)
            ip_len = 16;
        if (g == NULL) {
            rc = slm_diag_set(d, SLM_ENOMEM, "tls: out of memory");
        } else if (ip_len > 0) {
            ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();

            if (os == NULL || ASN1_OCTET_STRING_set(os, ip, ip_len) != 1) {
                ASN1_OCTET_STRING_free(os);
                rc = slm_diag_set(d, SLM_ENOMEM, "tls: out of memory");
            } else {
                GENERAL_NAME_set0_value(g, GEN_IPADD, os);
            }
        } else if (!dns_name_ok(hosts[i])) {
            rc =
                slm_diag_set(d, SLM_EINVAL,
                             "tls: host '%.64s' is neither an IP address nor a DNS name", hosts[i]);
        } else {
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();

            if (s == NULL || ASN1_STRING_set(s, hosts[i], (int)strlen(hosts[i])) != 1) {
                ASN1_IA5STRING_free(s);
                rc = slm_diag_set(d, SLM_ENOMEM, "tls: out of memory");
            } else {
                GENERAL_NAME_set0_value(g, GEN_DNS, s);
            }
        }
        if (rc == 0 && sk_GENERAL_NAME_push(gens, g) > 0) continue;
        GENERAL_NAME_free(g);
        if (rc == 0) rc = slm_diag_set(d, SLM_ENOMEM, "tls: out of memory");
    }
    if (rc == 0 && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
        rc = tls_fail(d, SLM_EINTERNAL, "cannot add subjectAltName");
    GENERAL_NAMES_free(gens);
    return rc;
}

/* Adds one extension given in OpenSSL's configuration syntax (fixed strings only). */
static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL) return 0;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* Serializes key and certificate to PEM and writes both files. */
static int write_pems(X509 *x, EVP_PKEY *pkey, const char *cert_path, const char *key_path,
                      struct slm_diag *d)
{
    BIO *kb = BIO_new(BIO_s_secmem()), *cb = BIO_new(BIO_s_mem());
    char *kp, *cp;
    long kl, cl;
    int rc;

    if (kb == NULL || cb == NULL ||
        PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509(cb, x) != 1) {
        rc = tls_fail(d, SLM_ENOMEM, "cannot encode the key or certificate");
        goto out;
    }
    kl = BIO_get_mem_data(kb, &kp);
    cl = BIO_get_mem_data(cb, &cp);
    rc = write_private_file(key_path, kp, (size_t)kl, d);
    if (rc == 0) rc = write_private_file(cert_path, cp, (size_t)cl, d);
out:
    BIO_free(kb);
    BIO_free(cb);
    return rc;
}

/* Generates an EC P-256 key and a self-signed certificate; see tls.h. */
int http_tls_selfsigned_write(const char *cert_path, const char *key_path, const char *const *hosts,
                              size_t n_hosts, unsigned days, struct slm_diag *d)
{
    unsigned char serial[16];
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    BIGNUM *bn = NULL;
    X509_NAME *name;
    int rc = 0;

    if (n_hosts == 0 || n_hosts > 100)
        return slm_diag_set(d, SLM_EINVAL, "tls: between 1 and 100 host names are needed");
    if (days == 0 || days > 3650)
        return slm_diag_set(d, SLM_EINVAL, "tls: validity of %u days is not in [1, 3650]", days);
    ERR_clear_error();
    pkey = EVP_EC_gen("P-256");
    x = X509_new();
    if (pkey == NULL || x == NULL || RAND_bytes(serial, sizeof(serial)) != 1) {
        rc = tls_fail(d, SLM_ENOMEM, "cannot generate a key");
        goto out;
    }
    serial[0] &= 0x7f; /* positive, and at most 127 bits as RFC 5280 wants */
    serial[0] |= 0x40; /* and never short */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    name = X509_get_subject_name(x);
    if (bn == NULL || X509_set_version(x, 2) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400L) == NULL ||
        X509_set_pubkey(x, pkey) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hosts[0], -1,
                                   -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1) {
        rc = tls_fail(d, SLM_EINVAL, "cannot fill in the certificate");
        goto out;
    }
    rc = add_sans(x, hosts, n_hosts, d);
    if (rc < 0) goto out;
    if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") != 1 ||
        add_ext(x, NID_ext_key_usage, "serverAuth") != 1 ||
        add_ext(x, NID_subject_key_identifier, "hash") != 1 ||
        add_ext(x, NID_authority_key_identifier, "keyid:always") != 1 ||
        X509_sign(x, pkey, EVP_sha256()) == 0) {
        rc = tls_fail(d, SLM_EINTERNAL, "cannot sign the certificate");
        goto out;
    }
    rc = write_pems(x, pkey, cert_path, key_path, d);
out:
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}
