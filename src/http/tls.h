/*
 * tls.h - TLS for the server with OpenSSL: a reference-counted server
 * context (TLS 1.2 and 1.3 only, Mozilla "intermediate" suites and groups,
 * ALPN http/1.1, no renegotiation, no compression), non-blocking
 * connections driven by the event loop, reload by swapping in a new context,
 * and generation of a self-signed certificate.
 *
 * Threading: a context may be shared by threads (OpenSSL's SSL_CTX is
 * thread-safe, the refcount is atomic); a connection belongs to one thread.
 *
 * Ownership: http_tls_ctx_new returns new (one reference); every connection
 * holds its own reference, so a reload that drops the server's reference
 * leaves old connections working until they close. The key file must be
 * mode 0600 or stricter and owned by the current user (RELIABILITY S05);
 * key bytes never reach a log or a message.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

struct http_tls_ctx;
struct http_tls_conn;

/*
 * Loads cert_path (PEM chain, leaf first) and key_path (PEM private key).
 * Returns 0 and *out (returns new), or SLM_ENOTFOUND / SLM_EPERM (key file
 * mode or owner) / SLM_EFORMAT (bad PEM, key does not match) / SLM_ENOMEM,
 * with a message naming the file.
 */
SLM_NODISCARD int http_tls_ctx_new(const char *cert_path, const char *key_path,
                                   struct http_tls_ctx **out, struct slm_diag *d);
void http_tls_ctx_ref(struct http_tls_ctx *ctx);
/* Drops one reference; the last one frees the context. NULL is a no-op. */
void http_tls_ctx_unref(struct http_tls_ctx *ctx);
/*
 * Builds a context from the files and, only if that works, swaps it into
 * *slot and drops the old reference (SIGHUP reload, RELIABILITY H12). On
 * error *slot is unchanged and d says why.
 */
SLM_NODISCARD int http_tls_ctx_reload(struct http_tls_ctx **slot, const char *cert_path,
                                      const char *key_path, struct slm_diag *d);

/* Wraps the connected non-blocking socket fd (borrowed: never closed here). */
SLM_NODISCARD int http_tls_conn_new(struct http_tls_ctx *ctx, int fd, struct http_tls_conn **out);
/* Frees the connection and its context reference. NULL is a no-op. */
void http_tls_conn_free(struct http_tls_conn *conn);

/*
 * Advances the server handshake. Returns 0 when complete, SLM_EAGAIN with
 * *want = HTTP_IO_READ or HTTP_IO_WRITE (what to wait for), SLM_EFORMAT for a
 * protocol failure (old version, no shared cipher, garbage) or SLM_EIO for
 * a transport failure, with the reason in d.
 */
SLM_NODISCARD int http_tls_handshake(struct http_tls_conn *conn, unsigned *want,
                                     struct slm_diag *d);
/*
 * Reads up to len bytes. Returns 0 with *n > 0, or 0 with *n == 0 at a clean
 * end of stream (close_notify or EOF), SLM_EAGAIN with *want, or an error.
 * Call again until SLM_EAGAIN: OpenSSL may hold decrypted bytes that no
 * socket event announces.
 */
SLM_NODISCARD int http_tls_read(struct http_tls_conn *conn, void *buf, size_t len, size_t *n,
                                unsigned *want, struct slm_diag *d);
/* Writes up to len bytes (*n written). After SLM_EAGAIN retry with the same bytes. */
SLM_NODISCARD int http_tls_write(struct http_tls_conn *conn, const void *buf, size_t len, size_t *n,
                                 unsigned *want, struct slm_diag *d);
/* Sends close_notify once, without waiting for the peer's. */
void http_tls_shutdown(struct http_tls_conn *conn);
/* Negotiated protocol version ("TLSv1.3") and ALPN protocol ("" if none). */
const char *http_tls_conn_version(const struct http_tls_conn *conn);
const char *http_tls_conn_alpn(const struct http_tls_conn *conn, size_t *len);

/*
 * Writes a new EC P-256 key and a self-signed certificate valid for `days`
 * days whose subjectAltName lists each of hosts (DNS names, IPv4 or IPv6
 * addresses); the first host is also the subject CN. Both files are written
 * atomically (temporary file, fsync, rename) with mode 0600 whatever the
 * umask. Returns 0, SLM_EINVAL for a bad host name or count, SLM_EIO.
 */
SLM_NODISCARD int http_tls_selfsigned_write(const char *cert_path, const char *key_path,
                                            const char *const *hosts, size_t n_hosts, unsigned days,
                                            struct slm_diag *d);
