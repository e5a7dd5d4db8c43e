/*
 * openai_chat.c - generation requests in flight: /v1/chat/completions and
 * the streaming and non-streaming answers of both chat and text
 * completions (see api.h, docs/api.md).
 *
 * A request is submitted to the scheduler, which reports STARTED / TOKEN /
 * DONE on its thread; on_sched_event copies each into a task posted to the
 * loop, where the request's state lives (struct api_req). Tokens are
 * detokenized with tok_stream (whole UTF-8 characters only) into r->text;
 * stop strings are searched there, and in streams the bytes that could
 * still be the start of a stop string are held back, so a stop string is
 * never partly sent. The text then goes through the reasoning splitter
 * (models that think) and the tool-call parser (requests with tools). The
 * request's memory is freed when DONE has been handled, never earlier: the
 * engine may still report events for it until then.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/api_int.h"
#include "core/alloc.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/str.h"
#include "http/sse.h"

struct api_req {
    struct api *a;
    struct api_req *prev, *next;
    struct http_exchange *ex; /* NULL once the client is gone */
    struct slm_buf *sse;      /* the stream's output buffer (borrowed from ex) */
    enum api_kind kind;
    bool stream, include_usage;
    bool stop_hit, text_full, client_gone, shutdown;
    bool lost; /* a stream event could not be queued: the stream cannot end whole */
    uint64_t sched_id;
    char id[48];
    int64_t created;
    char **stops;
    size_t n_stops;
    size_t stop_len_max;
    struct tok_stream ts;
    struct slm_buf text;
    size_t sent;                      /* bytes of text already streamed (or fed to tcp) */
    struct chat_toolcall_parser *tcp; /* NULL: the reply is content only */
    uint32_t n_prompt, n_cached;
    uint64_t t_start_ns;
    struct http_task done_task; /* preallocated: DONE must never be lost */
    struct sched_event done_ev;
    bool role_sent;                  /* chat streams: the role chunk went out */
    bool got_token;                  /* a token arrived: keep-alive comments stop */
    struct http_timer ka;            /* keep-alive comments until the first token */
    struct chat_think_parser *think; /* NULL: no reasoning split */
    struct api_constraint *con;      /* a forced tool call, or NULL */
};

/* A TOKEN or STARTED event on its way to the loop. */
struct api_ev {
    struct http_task task;
    struct api_req *r;
    enum sched_event_type type;
    tok_id token;
    uint32_t n_prompt, n_cached;
};

/* ---- requests in flight ---- */

static void req_free(struct api_req *r)
{
    for (size_t i = 0; i < r->n_stops; i++)
        slm_free(r->stops[i]);
    slm_free(r->stops);
    slm_buf_fini(&r->text);
    chat_toolcall_parser_free(r->tcp);
    chat_think_parser_free(r->think);
    api__constraint_free(r->con);
    http_timer_stop(r->a->loop, &r->ka);
    slm_free(r);
}

static void req_unlink(struct api_req *r)
{
    struct api *a = r->a;

    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        a->active = r->next;
    if (r->next != NULL) r->next->prev = r->prev;
    a->n_active--;
}

/* Abort callback: the client went away (or the stream was aborted). */
static void on_abort(void *arg)
{
    struct api_req *r = arg;

    r->ex = NULL;
    r->sse = NULL;
    r->client_gone = true;
    http_timer_stop(r->a->loop, &r->ka);
    if (r->stream) r->a->c.streams_active--;
    r->a->c.canceled++;
    sched_cancel(r->a->p.sched, r->sched_id);
}

/* ---- tool calls in responses ---- */

/* Initialises an empty collection of deltas. */
void api__tool_msg_init(struct api_tool_msg *m)
{
    memset(m, 0, sizeof(*m));
    slm_buf_init(&m->content, API_TEXT_MAX);
    slm_buf_init(&m->reasoning, API_TEXT_MAX);
}

/* Frees what m holds; m may be zeroed (never initialised). */
void api__tool_msg_fini(struct api_tool_msg *m)
{
    for (size_t i = 0; i < m->n_calls; i++) {
        slm_buf_fini(&m->calls[i].name);
        slm_buf_fini(&m->calls[i].args);
    }
    slm_free(m->calls);
    slm_buf_fini(&m->content);
    slm_buf_fini(&m->reasoning);
    memset(m, 0, sizeof(*m));
}

/*
 * Adds one delta to the message (chat_delta_cb; d is borrowed): content is
 * appended, a call's first delta opens a call, argument fragments are
 * appended to it. Returns 0, SLM_ENOMEM, or SLM_ELIMIT (more than
 * API_TOOL_CALLS_MAX calls or text over the caps).
 */
int api__tool_msg_add(void *arg, const struct chat_delta *d)
{
    struct api_tool_msg *m = arg;
    struct api_tool_call *c;

    if (d->type == CHAT_DELTA_CONTENT) return slm_buf_append(&m->content, d->text, d->text_len);
    if (d->id != NULL) {
        if (d->index != m->n_calls || m->n_calls >= API_TOOL_CALLS_MAX) return SLM_ELIMIT;
        if (m->n_calls == m->cap_calls) {
            size_t cap = m->cap_calls == 0 ? 4 : 2 * m->cap_calls;
            struct api_tool_call *nc = slm_calloc(cap, sizeof(*nc));

            if (nc == NULL) return SLM_ENOMEM;
            if (m->n_calls > 0) memcpy(nc, m->calls, m->n_calls * sizeof(*nc));
            slm_free(m->calls);
            m->calls = nc;
            m->cap_calls = cap;
        }
        c = &m->calls[m->n_calls++];
        memset(c, 0, sizeof(*c));
        snprintf(c->id, sizeof(c->id), "%s", d->id);
        slm_buf_init(&c->name, SLM_LIMIT_TOOLCALL_BYTES);
        slm_buf_init(&c->args, SLM_LIMIT_TOOLCALL_BYTES);
        if (d->name != NULL && slm_buf_append(&c->name, d->name, d->name_len) < 0)
            return SLM_ELIMIT;
    } else if (m->n_calls == 0 || d->index != m->n_calls - 1) {
        return SLM_EINTERNAL; /* a fragment of a call that was never opened */
    }
    c = &m->calls[m->n_calls - 1];
    return slm_buf_append(&c->args, d->text, d->text_len);
}

/* Writes the assistant "message" object of a non-streaming reply. */
void api__tool_msg_write(struct json_writer *w, const struct api_tool_msg *m)
{
    json_obj_begin(w);
    json_key(w, "role");
    json_cstr(w, "assistant");
    json_key(w, "content");
    if (m->n_calls > 0 && m->content.len == 0)
        json_null(w);
    else
        json_str(w, slm_buf_str(&m->content), m->content.len);
    if (m->reasoning.len > 0) {
        json_key(w, "reasoning_content");
        json_str(w, slm_buf_str(&m->reasoning), m->reasoning.len);
    }
    if (m->n_calls > 0) {
        json_key(w, "tool_calls");
        json_arr_begin(w);
        for (size_t i = 0; i < m->n_calls; i++) {
            const struct api_tool_call *c = &m->calls[i];

            json_obj_begin(w);
            json_key(w, "id");
            json_cstr(w, c->id);
            json_key(w, "type");
            json_cstr(w, "function");
            json_key(w, "function");
            json_obj_begin(w);
            json_key(w, "name");
            json_str(w, slm_buf_str(&c->name), c->name.len);
            json_key(w, "arguments");
            json_str(w, slm_buf_str(&c->args), c->args.len);
            json_obj_end(w);
            json_obj_end(w);
        }
        json_arr_end(w);
    }
    json_obj_end(w);
}

/* Writes the members of one streamed delta object for d (see api_int.h). */
void api__tool_delta_write(struct json_writer *w, const struct chat_delta *d)
{
    if (d->type == CHAT_DELTA_CONTENT) {
        json_key(w, "content");
        json_str(w, d->text, d->text_len);
        return;
    }
    json_key(w, "tool_calls");
    json_arr_begin(w);
    json_obj_begin(w);
    json_key(w, "index");
    json_uint(w, d->index);
    if (d->id != NULL) {
        json_key(w, "id");
        json_cstr(w, d->id);
        json_key(w, "type");
        json_cstr(w, "function");
    }
    json_key(w, "function");
    json_obj_begin(w);
    if (d->id != NULL) {
        json_key(w, "name");
        json_str(w, d->name != NULL ? d->name : "", d->name != NULL ? d->name_len : 0);
    }
    json_key(w, "arguments");
    json_str(w, d->text, d->text_len);
    json_obj_end(w);
    json_obj_end(w);
    json_arr_end(w);
}

static void write_usage(struct json_writer *w, const struct api_req *r, uint32_t n_gen)
{
    json_key(w, "usage");
    json_obj_begin(w);
    json_key(w, "prompt_tokens");
    json_uint(w, r->n_prompt);
    json_key(w, "completion_tokens");
    json_uint(w, n_gen);
    json_key(w, "total_tokens");
    json_uint(w, (uint64_t)r->n_prompt + n_gen);
    json_key(w, "prompt_tokens_details");
    json_obj_begin(w);
    json_key(w, "cached_tokens");
    json_uint(w, r->n_cached);
    json_obj_end(w);
    json_obj_end(w);
}

/*
 * Starts a response object in b: the fields every completion object and
 * chunk carries (id, object, created, model, system_fingerprint), then the
 * opened "choices" array.
 */
static void begin_response(struct slm_buf *b, struct json_writer *w, const struct api_req *r,
                           const char *object)
{
    slm_buf_init(b, API_RESP_MAX);
    json_writer_init(w, b, false);
    json_obj_begin(w);
    json_key(w, "id");
    json_cstr(w, r->id);
    json_key(w, "object");
    json_cstr(w, object);
    json_key(w, "created");
    json_int(w, r->created);
    json_key(w, "model");
    json_cstr(w, r->a->p.alias);
    json_key(w, "system_fingerprint");
    json_cstr(w, "slm-" SLM_API_VERSION);
    json_key(w, "choices");
    json_arr_begin(w);
}

/* One stream chunk; zero fields are left out. */
struct chunk {
    const char *text; /* chat: delta.content; completion: text; NULL: none */
    size_t len;
    const char *reasoning; /* delta.reasoning_content, or NULL */
    size_t reasoning_len;
    const struct chat_delta *call; /* a tool-call delta, or NULL */
    bool role;                     /* the first chat chunk: role "assistant", content "" */
    const char *finish;            /* finish_reason, or NULL (null) */
    bool usage;                    /* the usage-only chunk */
    uint32_t n_gen;
};

/*
 * Appends one stream chunk (see struct chunk). A chat stream's first chunk
 * is the role chunk, sent before whatever comes first (not at once: until
 * then keep-alive comments are all the client sees). Returns 0 or
 * SLM_ELIMIT/SLM_ENOMEM.
 */
static int put_chunk(struct api_req *r, const struct chunk *c)
{
    struct slm_buf b;
    struct json_writer w;
    bool chat = r->kind == API_KIND_CHAT;
    int rc;

    if (chat && !c->usage && !c->role && !r->role_sent) {
        struct chunk role = { .text = "", .role = true };

        if ((rc = put_chunk(r, &role)) < 0) return rc;
    }
    if (c->role) r->role_sent = true;
    begin_response(&b, &w, r, chat ? "chat.completion.chunk" : "text_completion");
    if (!c->usage) {
        json_obj_begin(&w);
        json_key(&w, "index");
        json_int(&w, 0);
        if (chat) {
            json_key(&w, "delta");
            json_obj_begin(&w);
            if (c->role) {
                json_key(&w, "role");
                json_cstr(&w, "assistant");
            }
            if (c->text != NULL) {
                json_key(&w, "content");
                json_str(&w, c->text, c->len);
            }
            if (c->reasoning != NULL) {
                json_key(&w, "reasoning_content");
                json_str(&w, c->reasoning, c->reasoning_len);
            }
            if (c->call != NULL) api__tool_delta_write(&w, c->call);
            json_obj_end(&w);
        } else {
            json_key(&w, "text");
            json_str(&w, c->text != NULL ? c->text : "", c->text != NULL ? c->len : 0);
        }
        json_key(&w, "logprobs");
        json_null(&w);
        json_key(&w, "finish_reason");
        if (c->finish != NULL)
            json_cstr(&w, c->finish);
        else
            json_null(&w);
        json_obj_end(&w);
    }
    json_arr_end(&w);
    if (c->usage) {
        write_usage(&w, r, c->n_gen);
    } else if (r->include_usage) {
        json_key(&w, "usage");
        json_null(&w);
    }
    json_obj_end(&w);
    rc = json_writer_finish(&w);
    if (rc == 0) rc = http_sse_data(r->sse, b.data, b.len);
    if (rc < 0) r->lost = true;
    slm_buf_fini(&b);
    return rc;
}

/* Appends an error event to the stream (OpenAI streams errors this way). */
static int put_error_event(struct api_req *r, const char *type, const char *msg)
{
    struct slm_buf b;
    struct json_writer w;
    int rc;

    slm_buf_init(&b, 4096);
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "error");
    api__write_error_obj(&w, type, NULL, NULL, msg);
    json_obj_end(&w);
    rc = json_writer_finish(&w);
    if (rc == 0) rc = http_sse_data(r->sse, b.data, b.len);
    if (rc < 0) r->lost = true;
    slm_buf_fini(&b);
    return rc;
}

/* Bytes at the end of text that could be the start of a stop string. */
static size_t holdback(const struct api_req *r)
{
    size_t best = 0, len = r->text.len;

    for (size_t i = 0; i < r->n_stops; i++) {
        size_t sl = strlen(r->stops[i]);
        size_t k = sl - 1 < len ? sl - 1 : len;

        for (; k > best; k--)
            if (memcmp(r->text.data + len - k, r->stops[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

/* Looks for a stop string in the text added since old_len; truncates at it. */
static void check_stop(struct api_req *r, size_t old_len)
{
    size_t from, best = SIZE_MAX;

    if (r->n_stops == 0 || r->stop_hit) return;
    from = old_len > r->stop_len_max ? old_len - r->stop_len_max : 0;
    for (size_t i = 0; i < r->n_stops; i++) {
        const char *p =
            memmem(r->text.data + from, r->text.len - from, r->stops[i], strlen(r->stops[i]));

        if (p != NULL && (size_t)(p - r->text.data) < best) best = (size_t)(p - r->text.data);
    }
    if (best == SIZE_MAX) return;
    r->text.len = best;
    r->text.data[best] = '\0';
    r->stop_hit = true;
    sched_cancel(r->a->p.sched, r->sched_id);
}

/* chat_delta_cb of streams: one chunk per content or tool-call delta. */
static int stream_delta(void *arg, const struct chat_delta *d)
{
    struct chunk c = { .call = d };

    return put_chunk(arg, &c);
}

/*
 * Where the pieces of a reply go: text -> reasoning splitter (models that
 * think) -> tool-call parser (requests with tools) -> stream chunks, or,
 * without a stream, the collected message tm.
 */
struct reply_sink {
    struct api_req *r;
    struct api_tool_msg *tm; /* NULL: stream */
};

static int sink_content(struct reply_sink *k, const char *s, size_t n)
{
    struct api_req *r = k->r;

    if (r->tcp != NULL) {
        if (k->tm != NULL) return chat_toolcall_feed(r->tcp, s, n, api__tool_msg_add, k->tm);
        return chat_toolcall_feed(r->tcp, s, n, stream_delta, r);
    }
    if (k->tm != NULL) return slm_buf_append(&k->tm->content, s, n);
    {
        struct chunk c = { .text = s, .len = n };

        return put_chunk(r, &c);
    }
}

/* chat_think_cb: reasoning goes out as reasoning_content, the rest on. */
static int sink_think(void *arg, bool reasoning, const char *s, size_t n)
{
    struct reply_sink *k = arg;

    if (!reasoning) return sink_content(k, s, n);
    if (k->tm != NULL) return slm_buf_append(&k->tm->reasoning, s, n);
    {
        struct chunk c = { .reasoning = s, .reasoning_len = n };

        return put_chunk(k->r, &c);
    }
}

static int reply_feed(struct reply_sink *k, const char *s, size_t n)
{
    if (k->r->think != NULL) return chat_think_feed(k->r->think, s, n, sink_think, k);
    return sink_content(k, s, n);
}

/* The end of the reply: what the splitter and the parser held back. */
static int reply_finish(struct reply_sink *k)
{
    struct api_req *r = k->r;
    int rc = 0;

    if (r->think != NULL) rc = chat_think_finish(r->think, sink_think, k);
    if (rc == 0 && r->tcp != NULL) {
        if (k->tm != NULL)
            rc = chat_toolcall_finish(r->tcp, api__tool_msg_add, k->tm);
        else
            rc = chat_toolcall_finish(r->tcp, stream_delta, r);
    }
    return rc;
}

/*
 * Streams the text that can no longer be part of a stop string, through
 * the reasoning splitter and the tool-call parser when the request has
 * them.
 */
static void stream_pending(struct api_req *r, bool final)
{
    struct reply_sink k = { r, NULL };
    size_t end = r->text.len, from = r->sent;

    if (r->ex == NULL || !r->stream) return;
    if (!final && !r->stop_hit) end -= holdback(r);
    if (end <= r->sent) return;
    /* The parsers have taken the text even if a chunk could not be queued. */
    r->sent = end;
    if (reply_feed(&k, r->text.data + from, end - from) < 0) {
        r->lost = true;
        return;
    }
    if (http_exchange_stream_flush(r->ex) < 0) {
        /* the exchange is gone: on_abort already ran */
    }
}

static void on_token(struct api_req *r, tok_id token)
{
    size_t old = r->text.len;

    if (!r->got_token) {
        r->got_token = true;
        http_timer_stop(r->a->loop, &r->ka);
    }
    if (r->stop_hit || r->text_full || r->client_gone) return;
    if (tokenizer_is_eog(r->a->tok, token)) return;
    if (tok_stream_push(&r->ts, token, &r->text) < 0) {
        r->text_full = true;
        sched_cancel(r->a->p.sched, r->sched_id);
        return;
    }
    check_stop(r, old);
    stream_pending(r, false);
}

/* Timer: a comment keeps proxies and clients from timing out while the
 * prompt waits or is processed; it stops with the first token. */
static void on_keepalive(struct http_loop *loop, struct http_timer *t)
{
    struct api_req *r = t->data;

    if (r->ex == NULL || r->got_token) return;
    if (http_sse_comment(r->sse, "keep-alive") == 0 && http_exchange_stream_flush(r->ex) < 0)
        return; /* the client stopped reading: on_abort ran */
    if (r->ex != NULL && http_timer_start(loop, t, r->a->keepalive_ms) < 0)
        log_info("request id=%s: keep-alive timer failed", r->id);
}

static const char *finish_reason(const struct api_req *r, const struct sched_event *ev)
{
    if (r->stop_hit) return "stop";
    if (r->text_full) return "length";
    if (ev->finish == SCHED_FINISH_EOG) return "stop";
    if (ev->finish == SCHED_FINISH_LENGTH) return "length";
    return NULL;
}

/* Sends the non-streaming response (tm NULL: the plain text). */
static void respond_final(struct api_req *r, const char *finish, uint32_t n_gen,
                          const struct api_tool_msg *tm)
{
    struct api *a = r->a;
    struct slm_buf b;
    struct json_writer w;
    bool chat = r->kind == API_KIND_CHAT;

    begin_response(&b, &w, r, chat ? "chat.completion" : "text_completion");
    json_obj_begin(&w);
    json_key(&w, "index");
    json_int(&w, 0);
    if (chat && tm != NULL) {
        json_key(&w, "message");
        api__tool_msg_write(&w, tm);
    } else if (chat) {
        json_key(&w, "message");
        json_obj_begin(&w);
        json_key(&w, "role");
        json_cstr(&w, "assistant");
        json_key(&w, "content");
        json_str(&w, slm_buf_str(&r->text), r->text.len);
        json_obj_end(&w);
    } else {
        json_key(&w, "text");
        json_str(&w, slm_buf_str(&r->text), r->text.len);
    }
    json_key(&w, "logprobs");
    json_null(&w);
    json_key(&w, "finish_reason");
    json_cstr(&w, finish);
    json_obj_end(&w);
    json_arr_end(&w);
    write_usage(&w, r, n_gen);
    json_obj_end(&w);
    api__respond_json(a, r->ex, &w, &b);
    slm_buf_fini(&b);
}

/*
 * Sends the end of a stream: the last pieces, finish (or an error), usage,
 * [DONE], and the body's end, after which the connection is reused. A
 * stream that lost an event (buffer full, out of memory) is cut instead,
 * so the client sees an incomplete body rather than a complete wrong one.
 */
static void end_stream(struct api_req *r, const struct sched_event *ev, const char *finish)
{
    struct api *a = r->a;
    bool ok = true;

    stream_pending(r, true);
    if (r->ex == NULL) return;
    if (finish != NULL) {
        struct chunk fc = { .finish = finish }, uc = { .usage = true, .n_gen = ev->n_generated };

        ok = put_chunk(r, &fc) == 0;
        if (ok && r->include_usage) ok = put_chunk(r, &uc) == 0;
    } else if (ev->finish == SCHED_FINISH_ERROR) {
        ok = put_error_event(r, "server_error", ev->msg[0] ? ev->msg : "generation failed") == 0;
    } else {
        ok = put_error_event(r, "server_error",
                             "the request was canceled: the server is shutting down") == 0;
    }
    if (ok) ok = http_sse_done(r->sse) == 0;
    a->c.streams_active--;
    if (!ok || r->lost) {
        log_info("request id=%s: stream events lost (stream buffer full); connection closed",
                 r->id);
        http_exchange_stream_abort(r->ex);
        return;
    }
    http_exchange_stream_end(r->ex);
}

static void on_done(struct api_req *r, const struct sched_event *ev)
{
    struct api *a = r->a;
    const char *finish;
    struct api_tool_msg tm;
    bool tm_ok = false;
    uint64_t ms = (slm_now_ns() - r->t_start_ns) / 1000000u;

    http_timer_stop(a->loop, &r->ka);
    if (ev->n_prompt > 0) r->n_prompt = ev->n_prompt;
    r->n_cached = ev->n_cached;
    if (!r->stop_hit && !r->text_full && !r->client_gone) {
        size_t old = r->text.len, sl;
        const char *sfx;

        if (tok_stream_flush(&r->ts, &r->text) < 0) r->text_full = true;
        check_stop(r, old);
        /* A forced tool call that completed gets its closing text. */
        if (r->con != NULL && api__constraint_done(r->con)) {
            sfx = api__constraint_suffix(r->con, &sl);
            if (slm_buf_append(&r->text, sfx, sl) < 0) r->text_full = true;
        }
    }
    finish = finish_reason(r, ev);
    api__tool_msg_init(&tm);
    if (finish != NULL && r->ex != NULL && r->kind == API_KIND_CHAT) {
        /* The parsers see the whole reply before the finish reason is chosen. */
        if (r->stream) {
            struct reply_sink k = { r, NULL };

            stream_pending(r, true);
            if (r->ex != NULL && reply_finish(&k) < 0) r->lost = true;
        } else {
            struct reply_sink k = { r, &tm };

            tm_ok = reply_feed(&k, r->text.data, r->text.len) == 0 && reply_finish(&k) == 0;
            if (!tm_ok) {
                /* Out of memory or over a cap: the plain text is still a valid reply. */
                api__tool_msg_fini(&tm);
                api__tool_msg_init(&tm);
            }
        }
        if (r->tcp != NULL && chat_toolcall_count(r->tcp) > 0 && (r->stream || tm_ok))
            finish = "tool_calls";
    }
    log_info("request id=%s prompt=%u cached=%u generated=%u finish=%s ms=%llu%s", r->id,
             r->n_prompt, r->n_cached, ev->n_generated,
             finish != NULL ? finish : (ev->finish == SCHED_FINISH_ERROR ? "error" : "canceled"),
             (unsigned long long)ms, r->client_gone ? " client=gone" : "");
    if (finish != NULL)
        a->c.completions_ok++;
    else
        a->c.completions_failed++;
    if (r->ex != NULL && r->stream) {
        end_stream(r, ev, finish);
    } else if (r->ex != NULL) {
        if (finish != NULL)
            respond_final(r, finish, ev->n_generated, tm_ok ? &tm : NULL);
        else if (ev->finish == SCHED_FINISH_ERROR)
            api__error(a, r->ex, 500, NULL, NULL, "generation failed: %s",
                       ev->msg[0] ? ev->msg : slm_strerror(ev->err));
        else
            api__error(a, r->ex, 503, NULL, NULL,
                       "the request was canceled: the server is shutting down");
    }
    api__tool_msg_fini(&tm);
    req_unlink(r);
    req_free(r);
}

static void on_ev_task(struct http_loop *loop, struct http_task *t)
{
    struct api_ev *e = t->data;

    (void)loop;
    if (e->type == SCHED_EVENT_TOKEN) {
        on_token(e->r, e->token);
    } else if (e->type == SCHED_EVENT_STARTED) {
        e->r->n_prompt = e->n_prompt;
        e->r->n_cached = e->n_cached;
    }
    slm_free(e);
}

static void on_done_task(struct http_loop *loop, struct http_task *t)
{
    struct api_req *r = t->data;

    (void)loop;
    on_done(r, &r->done_ev);
}

/* Scheduler callback, ON THE ENGINE THREAD: copy and post, nothing else. */
static void on_sched_event(void *arg, const struct sched_event *ev)
{
    struct api_req *r = arg;
    struct api_ev *e;

    if (ev->type == SCHED_EVENT_DONE) {
        r->done_ev = *ev;
        if (http_loop_post(r->a->loop, &r->done_task) < 0) {
            /* still queued: runs at the loop's next iteration */
        }
        return;
    }
    e = slm_malloc(sizeof(*e));
    if (e == NULL) return; /* a lost token: the text misses a piece, usage stays exact */
    e->task.cb = on_ev_task;
    e->task.data = e;
    e->task.next = NULL;
    e->r = r;
    e->type = ev->type;
    e->token = ev->token;
    e->n_prompt = ev->n_prompt;
    e->n_cached = ev->n_cached;
    if (http_loop_post(r->a->loop, &e->task) < 0) {
        /* still queued: runs at the loop's next iteration */
    }
}

static void make_id(char *out, size_t cap, const char *prefix)
{
    unsigned char rnd[12];
    size_t o;

    if (slm_random_bytes(rnd, sizeof(rnd)) < 0) memset(rnd, 0, sizeof(rnd));
    o = (size_t)snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < sizeof(rnd) && o + 2 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%02x", rnd[i]);
}

/*
 * Checks the context, builds and submits the request (takes toks and
 * o->constraint). Answers errors itself. On success the request lives
 * until its DONE event.
 */
void api__submit(struct api *a, struct http_exchange *ex, enum api_kind kind,
                 const struct api_gen_params *g, struct api_submit_opts *o, tok_id *toks,
                 size_t n_toks)
{
    struct api_constraint *con = o->constraint;
    struct api_req *r = NULL;
    struct sched_request sr;
    struct slm_diag d;
    int64_t n_predict;
    int rc;

    if (n_toks == 0) {
        api__error(a, ex, 400, kind == API_KIND_CHAT ? "messages" : "prompt", NULL,
                   "the prompt is empty");
        goto out;
    }
    if (n_toks >= a->n_ctx) {
        a->c.context_exceeded++;
        api__error(a, ex, 400, kind == API_KIND_CHAT ? "messages" : "prompt",
                   "context_length_exceeded",
                   "This model's maximum context length is %u tokens. However, your %s resulted "
                   "in %zu tokens. Please reduce the length of the %s.",
                   a->n_ctx, kind == API_KIND_CHAT ? "messages" : "prompt", n_toks,
                   kind == API_KIND_CHAT ? "messages" : "prompt");
        goto out;
    }
    /* max_tokens is lowered to what fits (clients such as OpenCode send 32000). */
    n_predict = (int64_t)a->n_ctx - (int64_t)n_toks;
    if (g->max_tokens >= 0 && g->max_tokens < n_predict) n_predict = g->max_tokens;
    if (a->p.n_predict_max >= 0 && a->p.n_predict_max < n_predict) n_predict = a->p.n_predict_max;
    o->constraint = NULL;
    if (con != NULL && (uint64_t)n_predict < api__constraint_min_tokens(con)) {
        api__error(a, ex, 400, "max_tokens", NULL,
                   "a forced tool call (tool_choice) needs at least %zu generated tokens, but "
                   "only %lld are allowed (max_tokens, the server's --n-predict or the context); "
                   "raise max_tokens",
                   api__constraint_min_tokens(con), (long long)n_predict);
        goto out;
    }

    r = slm_calloc(1, sizeof(*r));
    if (r == NULL) {
        api__error(a, ex, 503, NULL, NULL, "out of memory");
        goto out;
    }
    r->a = a;
    http_timer_init(&r->ka, on_keepalive, r);
    r->con = con;
    con = NULL;
    r->ex = ex;
    r->kind = kind;
    r->stream = g->stream;
    r->include_usage = g->stream && g->include_usage;
    r->created = (int64_t)time(NULL);
    r->n_prompt = (uint32_t)n_toks;
    r->t_start_ns = slm_now_ns();
    make_id(r->id, sizeof(r->id), kind == API_KIND_CHAT ? "chatcmpl-" : "cmpl-");
    slm_buf_init(&r->text, API_TEXT_MAX);
    /* A forced call's opening is the start of the reply the parsers see. */
    if (o->seed_len > 0 && slm_buf_append(&r->text, o->seed, o->seed_len) < 0) {
        api__error(a, ex, 503, NULL, NULL, "out of memory");
        goto out;
    }
    /* Tool-call and think markers such as [TOOL_CALLS] may be special tokens: render them. */
    tok_stream_init(&r->ts, a->tok, o->parse_tools || o->think);
    slm_diag_clear(&d);
    if (o->think && chat_think_parser_new(o->think_inside, &r->think) < 0) {
        api__error(a, ex, 503, NULL, NULL, "out of memory");
        goto out;
    }
    if (o->parse_tools) {
        rc = chat_toolcall_parser_new(a->tc_fmt, 0, &r->tcp, &d);
        if (rc < 0) {
            api__error(a, ex, rc == SLM_ENOMEM ? 503 : 500, NULL, NULL, "%s",
                       d.msg[0] ? d.msg : slm_strerror(rc));
            goto out;
        }
    }
    r->done_task.cb = on_done_task;
    r->done_task.data = r;
    /* Stop strings do not cut a forced tool call (its JSON could contain them). */
    if (g->stop != NULL && r->con == NULL) {
        size_t n = g->stop->type == JSON_ARRAY ? g->stop->u.arr.n : 1;

        r->stops = slm_calloc(n > 0 ? n : 1, sizeof(char *));
        if (r->stops == NULL) {
            api__error(a, ex, 503, NULL, NULL, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            const struct json_value *s =
                g->stop->type == JSON_ARRAY ? &g->stop->u.arr.items[i] : g->stop;

            if (memchr(s->u.str.ptr, '\0', s->u.str.len) != NULL) continue; /* never matches */
            r->stops[r->n_stops] = slm_strndup(s->u.str.ptr, s->u.str.len);
            if (r->stops[r->n_stops] == NULL) {
                api__error(a, ex, 503, NULL, NULL, "out of memory");
                goto out;
            }
            if (s->u.str.len > r->stop_len_max) r->stop_len_max = s->u.str.len;
            r->n_stops++;
        }
    }
    memset(&sr, 0, sizeof(sr));
    sr.prompt = toks;
    sr.n_prompt = n_toks;
    sr.sampling = g->sp;
    sr.n_predict = (int32_t)n_predict;
    sr.ignore_eos = g->ignore_eos;
    sr.cb = on_sched_event;
    sr.cb_arg = r;
    if (r->con != NULL) {
        sr.constraint.allow = api__constraint_allow;
        sr.constraint.accept = api__constraint_accept;
        sr.constraint.arg = r->con;
    }
    slm_diag_clear(&d);
    rc = sched_submit(a->p.sched, &sr, &r->sched_id, &d);
    if (rc < 0) {
        if (rc == SLM_ELIMIT) {
            a->c.queue_full++;
            api__error(a, ex, 503, NULL, NULL,
                       "the server is busy: every slot is taken and the queue is full; retry "
                       "later");
        } else if (rc == SLM_ERANGE) {
            a->c.context_exceeded++;
            api__error(a, ex, 400, kind == API_KIND_CHAT ? "messages" : "prompt",
                       "context_length_exceeded",
                       "This model's maximum context length is %u tokens. However, your request "
                       "resulted in %zu tokens. %s",
                       a->n_ctx, n_toks, d.msg);
        } else if (rc == SLM_EINVAL) {
            api__error(a, ex, 400, NULL, NULL, "%s", d.msg[0] ? d.msg : "invalid request");
        } else {
            api__error(a, ex, rc == SLM_ENOMEM ? 503 : 500, NULL, NULL, "%s",
                       d.msg[0] ? d.msg : slm_strerror(rc));
        }
        goto out;
    }
    /* From here on the request belongs to the scheduler until DONE. */
    r->next = a->active;
    if (a->active != NULL) a->active->prev = r;
    a->active = r;
    a->n_active++;
    http_exchange_on_abort(ex, on_abort, r);
    if (r->stream) {
        rc = http_exchange_stream_start(ex, &r->sse);
        if (rc < 0) {
            /* Cannot even start: cancel; DONE will free r. */
            r->ex = NULL;
            r->client_gone = true;
            sched_cancel(a->p.sched, r->sched_id);
            api__error(a, ex, 503, NULL, NULL, "out of memory");
            r = NULL;
            goto out;
        }
        api__count_status(a, 200);
        a->c.streams_active++;
        /* The head goes out now; keep-alive comments follow until the first token. */
        if (http_exchange_stream_flush(ex) < 0) {
            /* the client is gone: on_abort ran, DONE frees r */
        } else if (http_timer_start(a->loop, &r->ka, a->keepalive_ms) < 0) {
            log_info("request id=%s: keep-alive timer failed", r->id);
        }
    }
    r = NULL;
out:
    if (r != NULL) req_free(r);
    api__constraint_free(con);
    slm_free(toks);
}


/*
 * POST /v1/chat/completions: validate, render the template, and for a
 * forced tool call (tool_choice "required" or named) append the call's
 * opening to the prompt and constrain the rest (openai_constrain.c).
 */
void api__h_chat(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct json_doc *doc = api__parse_body(a, ex);
    const struct json_value *root;
    struct api_gen_params g;
    struct slm_diag d;
    struct slm_buf prompt, seed;
    struct api_chat_info info;
    struct api_submit_opts o;
    struct api_constraint *con = NULL;
    const char *param = NULL;
    tok_id *toks = NULL;
    size_t n = 0;
    int rc;

    if (doc == NULL) return;
    root = json_doc_root(doc);
    slm_buf_init(&prompt, API_PROMPT_MAX);
    slm_buf_init(&seed, API_PROMPT_MAX);
    memset(&o, 0, sizeof(o));
    slm_diag_clear(&d);
    rc = api__parse_gen(a, root, &g, &d, &param);
    if (rc < 0) {
        api__bad_field(a, ex, param, &d);
        goto out;
    }
    if (api__render_chat(a, ex, root, true, &prompt, &info) < 0) goto out;
    o.parse_tools = info.parse_tools;
    o.think_inside = chat_think_prompt_open(prompt.data, prompt.len);
    o.think = a->thinks || o.think_inside;
    if (info.parse_tools &&
        (info.choice == API_TOOL_CHOICE_REQUIRED || info.choice == API_TOOL_CHOICE_NAMED)) {
        size_t pl;
        const char *pfx;

        rc = api__constraint_new(a, info.tools, info.name, &con, &d);
        if (rc < 0) {
            if (rc == SLM_ENOMEM)
                api__error(a, ex, 503, NULL, NULL, "out of memory");
            else
                api__bad_field(a, ex, "tool_choice", &d);
            goto out;
        }
        /* A think block the prompt opened is closed, empty, before the call. */
        if (o.think_inside) rc = slm_buf_append(&seed, "</think>\n\n", 10);
        pfx = api__constraint_prefix(con, &pl);
        if (rc == 0) rc = slm_buf_append(&seed, pfx, pl);
        if (rc == 0) rc = slm_buf_append(&prompt, seed.data, seed.len);
        if (rc < 0) {
            api__error(a, ex, 400, "messages", NULL, "field 'messages': too large");
            goto out;
        }
        o.seed = seed.data;
        o.seed_len = seed.len;
    }
    rc = api__tokenize(a, prompt.data, prompt.len, TOKENIZE_PARSE_SPECIAL, &toks, &n);
    if (rc == 0) rc = api__ensure_bos(a, &toks, &n);
    if (rc < 0) {
        api__error(a, ex, rc == SLM_ENOMEM ? 503 : 500, NULL, NULL, "tokenizing failed: %s",
                   slm_strerror(rc));
        goto out;
    }
    o.constraint = con;
    con = NULL;
    api__submit(a, ex, API_KIND_CHAT, &g, &o, toks, n);
    toks = NULL;
out:
    api__constraint_free(con);
    slm_free(toks);
    slm_buf_fini(&seed);
    slm_buf_fini(&prompt);
    json_doc_free(doc);
}

/* Cancels every request in flight; see api.h. */
void api_cancel_all(struct api *a)
{
    for (struct api_req *r = a->active; r != NULL; r = r->next) {
        r->shutdown = true;
        sched_cancel(a->p.sched, r->sched_id);
    }
}
