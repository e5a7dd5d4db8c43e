/*
 * sse.h - a minimal Server-Sent Events writer (WHATWG HTML "server-sent
 * events"), used for OpenAI-style streaming: "data: {json}\n\n" per chunk,
 * ": keep-alive" comments while idle, and "data: [DONE]\n\n" at the end.
 *
 * Each function appends one complete event to a capped buffer or nothing:
 * on SLM_ELIMIT (the per-stream output cap, RELIABILITY H10) or SLM_ENOMEM
 * the buffer is left exactly as it was, so a stream never carries half an
 * event. Line breaks inside data (CRLF, CR or LF) start a new "data:" line,
 * which a client joins back with LF: injected text can never end the event
 * early or start a new one (H09).
 *
 * The server (server.c) writes the head and frames what the application
 * appended as chunks (http_sse_chunk, http_sse_chunk_end), so an HTTP/1.1
 * stream ends with the last chunk and its connection stays open for the
 * next request, as llama-server does.
 *
 * Ownership: borrows everything. Reentrant.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* Appends an event whose data is data[0..len) (may be empty or contain NULs). */
SLM_NODISCARD int http_sse_data(struct slm_buf *out, const char *data, size_t len);
/* The same with an "event: name" line first; name must not contain CR or LF
 * (SLM_EINVAL). */
SLM_NODISCARD int http_sse_event(struct slm_buf *out, const char *name, const char *data,
                                 size_t len);
/* Appends a comment (": text"), e.g. the idle heartbeat; line breaks in text
 * become separate comment lines. Clients ignore comments. */
SLM_NODISCARD int http_sse_comment(struct slm_buf *out, const char *text);
/* Appends "data: [DONE]\n\n", OpenAI's end-of-stream marker. */
SLM_NODISCARD int http_sse_done(struct slm_buf *out);
/*
 * Appends the head of a streaming response: 200, text/event-stream,
 * no-cache, no Content-Length, then extra[0..extra_len) (more header lines,
 * each ending in CRLF; may be empty) and the blank line. chunked: the body
 * is sent with "Transfer-Encoding: chunked" (HTTP/1.1), so it has an end of
 * its own and the connection can carry the next request; without it the
 * body ends with the connection (HTTP/1.0, RFC 9112 6.3). close adds
 * "Connection: close" (always when !chunked).
 */
SLM_NODISCARD int http_sse_head(struct slm_buf *out, bool chunked, bool close, const char *extra,
                                size_t extra_len);
/*
 * Appends data[0..len) as one chunk of the chunked transfer coding
 * (RFC 9112 7.1): the size in hex, CRLF, the data, CRLF. len 0 appends
 * nothing (an empty chunk would end the body). All or nothing.
 */
SLM_NODISCARD int http_sse_chunk(struct slm_buf *out, const char *data, size_t len);
/* Appends the last chunk "0\r\n\r\n" (no trailers): the end of the body. */
SLM_NODISCARD int http_sse_chunk_end(struct slm_buf *out);
