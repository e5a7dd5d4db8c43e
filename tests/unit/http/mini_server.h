/*
 * mini_server.h - a test-only HTTP/1.1 server that wires the event loop, the
 * request parser, the chunked decoder and TLS together and answers every
 * request with a fixed text ("ok <method> <target> <body bytes>\n"), or with
 * an error status and "Connection: close" for a bad request. Deadlines are
 * those of RELIABILITY H04 with lengths the test chooses: the TLS handshake
 * and the request head must complete within head_timeout_ms of accept (or of
 * the first byte of a keep-alive request), the body may be idle body_idle_ms,
 * an idle keep-alive connection lives keepalive_ms.
 *
 * It proves the pieces work together; `slm serve` will carry the production
 * version of this state machine.
 */
#pragma once

#include <stdint.h>

#include "http/loop.h"
#include "http/tls.h"

struct mini_server_params {
    struct http_tls_ctx *tls; /* NULL: plain HTTP; borrowed */
    uint64_t head_timeout_ms;
    uint64_t body_idle_ms;
    uint64_t keepalive_ms;
};

struct mini_server_stats {
    int accepted;
    int closed;
    int requests;           /* answered with 200 */
    int errors;             /* answered with 4xx/5xx */
    int timeouts;           /* closed by a deadline */
    int tls_failed;         /* handshake failures */
    uint64_t last_close_ms; /* loop time of the last close */
};

struct mini_server;

/* Listens on 127.0.0.1 (ephemeral port, returned in *port). */
int mini_server_start(struct http_loop *loop, const struct mini_server_params *p,
                      struct mini_server **out, uint16_t *port);
/* Closes the listener and every connection. */
void mini_server_free(struct mini_server *srv);
const struct mini_server_stats *mini_server_stats(const struct mini_server *srv);
