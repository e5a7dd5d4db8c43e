/*
 * server.h - the HTTP/1.1 server: listening socket, connections, TLS
 * handshake, request parsing, keep-alive, deadlines, connection caps (in
 * total and per client address), response writing and Server-Sent Events
 * streaming, on one event loop. After an error answered before the request
 * was read, the connection closes lingering (see docs/serve.md).
 *
 * A connection runs one request at a time (pipelined bytes wait in its input
 * buffer). Once a request's head and body are complete the server calls the
 * handler with a struct http_exchange. The handler either answers at once
 * (http_exchange_respond) or keeps the exchange and answers later from the
 * loop thread, for example after the engine posted its result: a full
 * response, or a stream (http_exchange_stream_start, _flush, _end; a
 * stream is chunked on HTTP/1.1 and its connection is kept alive).
 *
 * While the application holds an exchange the server keeps reading the
 * socket, so a client that goes away is noticed at once: the exchange's
 * abort callback runs (the application cancels its work there) and the
 * exchange is gone. The same happens when a stream's client stops reading
 * and the output cap (RELIABILITY H10) or the write deadline is reached, and
 * when the server shuts down.
 *
 * Deadlines (RELIABILITY rule 3): TLS handshake plus request head within
 * head_timeout_ms of accept or of the previous response (absolute: a drip of
 * bytes does not extend it), body idle body_idle_ms, keep-alive idle
 * keepalive_ms, a client that reads nothing of a pending response for
 * write_idle_ms. Framing errors answer their status and close.
 *
 * Threading: everything runs on the loop's thread; other threads hand work
 * back with http_loop_post (http_server_loop gives the loop).
 *
 * Ownership: http_server_new borrows the loop and the TLS context slot
 * (each connection takes its own TLS reference) and returns new. An exchange
 * is owned by the server: it is borrowed by the handler until respond,
 * stream_end, stream_abort or the abort callback, after which the pointer is
 * invalid.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "http/loop.h"
#include "http/parser.h"
#include "http/tls.h"

struct http_server;
struct http_exchange;

/* Called on the loop thread for every complete request. */
typedef void http_handler_fn(void *arg, struct http_exchange *ex);
/* Called when a held exchange ends without an answer (client gone, stream
 * aborted, shutdown). The exchange is invalid when this is called. */
typedef void http_abort_fn(void *arg);

struct http_server_params {
    const char *host; /* numeric address to bind: "127.0.0.1", "0.0.0.0", "::" */
    uint16_t port;    /* 0: an ephemeral port (http_server_port tells which) */
    /* TLS context slot (borrowed; may be swapped by http_tls_ctx_reload while the
     * server runs: new connections use the current one); NULL: plain HTTP. */
    struct http_tls_ctx **tls;
    uint32_t max_conns; /* open connections; more are accepted and closed at once */
    /* Open connections from one client address (IPv4 address, IPv6 /64 prefix);
     * more are answered 503 (plain HTTP) or closed (TLS) at once. 0: no cap. */
    uint32_t max_conns_per_ip;
    uint64_t head_timeout_ms;
    uint64_t body_idle_ms;
    uint64_t keepalive_ms;
    uint64_t write_idle_ms;
    uint64_t body_max;     /* request body bytes (-> 413) */
    size_t stream_out_max; /* bytes a stream may have queued unsent (H10) */
    http_handler_fn *handler;
    void *handler_arg;
};

/* Limits from core/limits.h, no TLS, no handler. */
struct http_server_params http_server_params_default(void);

/*
 * Binds and listens on host:port and starts accepting. Returns 0 and *out
 * (returns new), or SLM_EINVAL (bad address), SLM_EIO (bind, listen: the
 * message names the address and the errno text), SLM_ENOMEM.
 */
SLM_NODISCARD int http_server_new(struct http_loop *loop, const struct http_server_params *p,
                                  struct http_server **out, struct slm_diag *d);
/* Sets the handler and its argument (before the loop runs). */
void http_server_set_handler(struct http_server *s, http_handler_fn *fn, void *arg);
/* Closes every connection (held exchanges get their abort callback) and the
 * listener, then frees. NULL is a no-op. */
void http_server_free(struct http_server *s);
/* The port actually bound. */
uint16_t http_server_port(const struct http_server *s);
/* Returns borrowed: the loop the server runs on. */
struct http_loop *http_server_loop(const struct http_server *s);
/*
 * Starts a graceful shutdown: closes the listener, closes idle connections,
 * and marks the others to close after their current response. Held
 * exchanges stay: the application finishes or cancels them.
 */
void http_server_drain(struct http_server *s);
/* Open connections (for draining and metrics). */
size_t http_server_n_conns(const struct http_server *s);

struct http_server_stats {
    uint64_t accepted;
    uint64_t refused;        /* over a connection cap (total or per address) */
    uint64_t refused_per_ip; /* of which over the per-address cap */
    uint64_t timeouts;
    uint64_t tls_failed;
    uint64_t bad_requests; /* framing errors answered by the server itself */
    uint64_t aborted;      /* held exchanges whose client went away */
};
void http_server_get_stats(const struct http_server *s, struct http_server_stats *out);

/* ---- the exchange (one request on one connection) ---- */

/* Returns borrowed: the parsed head (valid until the exchange ends). */
const struct http_request *http_exchange_request(const struct http_exchange *ex);
/* Returns borrowed: the body (de-chunked; "" when none), NUL-terminated. */
const char *http_exchange_body(const struct http_exchange *ex, size_t *len);
/* Returns borrowed: the request target's path (without "?query"). */
const char *http_exchange_path(const struct http_exchange *ex, size_t *len);
/* Returns borrowed: the value of header name (case-insensitive), or NULL. */
const char *http_exchange_header(const struct http_exchange *ex, const char *name, size_t *len);

/*
 * Adds "name: value" to the response that will be sent (CORS,
 * Retry-After...). Values with CR, LF or NUL are refused (SLM_EINVAL).
 * SLM_ELIMIT when the headers exceed 4 KiB (the header is then left out).
 */
int http_exchange_add_header(struct http_exchange *ex, const char *name, const char *value);
/*
 * Sends a complete response (borrows body; copied). Status >= 400 with a
 * framing problem is not this function's business: the connection stays
 * open for keep-alive unless the client or a drain said otherwise. A HEAD
 * request gets the head only. The exchange ends here.
 */
void http_exchange_respond(struct http_exchange *ex, int status, const char *content_type,
                           const char *body, size_t len);
/*
 * Starts a text/event-stream response (200, no-cache, no Content-Length)
 * and returns borrowed in *out the buffer to append events to (http_sse_*),
 * valid until the exchange ends. On HTTP/1.1 the body is sent with
 * "Transfer-Encoding: chunked" (each flush one chunk) and the connection is
 * kept for the next request after http_exchange_stream_end, unless the
 * client sent "Connection: close" or the server is draining (then the head
 * says "Connection: close"). An HTTP/1.0 stream is not chunked and ends with
 * the connection. SLM_ENOMEM/SLM_ELIMIT.
 */
SLM_NODISCARD int http_exchange_stream_start(struct http_exchange *ex, struct slm_buf **out);
/*
 * Sends what was appended to the stream buffer. Returns 0, or SLM_ELIMIT
 * when the client has left more than stream_out_max bytes unread: then the
 * exchange has been aborted (abort callback called, pointer invalid), or
 * SLM_ECANCELED when the connection died meanwhile (likewise).
 */
SLM_NODISCARD int http_exchange_stream_flush(struct http_exchange *ex);
/*
 * Sends what is left and the body's end (the last chunk); the connection
 * then waits for the next request, or closes (HTTP/1.0, Connection: close,
 * draining, or a client that left the output full). The exchange ends.
 */
void http_exchange_stream_end(struct http_exchange *ex);
/*
 * Ends a stream that cannot be completed (events were lost): sends what is
 * queued, then closes the connection without the last chunk, so the client
 * sees a cut body instead of a complete one. The exchange ends.
 */
void http_exchange_stream_abort(struct http_exchange *ex);
/* Sets the abort callback (see http_abort_fn); fn NULL removes it. */
void http_exchange_on_abort(struct http_exchange *ex, http_abort_fn *fn, void *arg);
/* "127.0.0.1:54321" for log lines; borrowed. */
const char *http_exchange_peer(const struct http_exchange *ex);
/* True once the server is draining (the application should wind down). */
bool http_exchange_draining(const struct http_exchange *ex);
