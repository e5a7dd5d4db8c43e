/*
 * toolcall.c - incremental tool-call parsers (Mistral, Hermes/Qwen, Llama 3).
 *
 * The parser keeps the text it has not decided yet in one buffer and runs a
 * small state machine over it after every feed. Decisions depend only on
 * the buffered bytes, never on where a feed ended, so any split of the
 * generated text gives the same content and calls: content is released up to
 * the first byte that could start a marker; a call candidate is held until
 * its end is seen (closing tag, or the end of a balanced JSON value found by
 * an incremental scanner that knows about strings and escapes), then
 * validated with the strict JSON parser. A candidate that fails validation,
 * is still open at finish, or grows past SLM_LIMIT_TOOLCALL_BYTES is released
 * as the content it was.
 */
#include <stddef.h>
#include <string.h>

#include "chat/chat.h"
#include "core/alloc.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/rand.h"
#include "core/str.h"

#define FEED_CHUNK (64u << 10)

enum pstate {
    S_CONTENT = 0, /* looking for the format's marker */
    S_PLAIN,       /* everything is content from here on */
    S_H_BODY,      /* after <tool_call>, waiting for '{' */
    S_H_JSON,      /* scanning the call object */
    S_H_CLOSE,     /* after the object, waiting for </tool_call> */
    S_M_AFTER,     /* after [TOOL_CALLS] */
    S_M_NAME,      /* [TOOL_CALLS]name... waiting for [ARGS] */
    S_M_ARGS,      /* after [ARGS], waiting for '{' */
    S_M_JSON,      /* scanning the arguments object */
    S_M_ARRAY,     /* scanning [TOOL_CALLS][...] */
    S_L_START,     /* Llama 3: optional whitespace, then '{' or <|python_tag|> */
    S_L_TAG,       /* after <|python_tag|> */
    S_L_JSON,      /* scanning the call object */
    S_L_AFTER      /* after a call: separators, then another call or content */
};

struct chat_toolcall_parser {
    enum chat_toolcall_format fmt;
    enum pstate state;
    struct slm_buf buf; /* undecided text starts at buf.data + off */
    size_t off;
    size_t cur;      /* scan cursor, relative to off */
    size_t js_begin; /* JSON scanner, relative to off */
    size_t js_pos;
    size_t js_depth;
    bool js_str;
    bool js_esc;
    size_t name_begin; /* Mistral name, relative to off */
    size_t name_end;
    struct slm_buf ws; /* whitespace after the last content, held back */
    size_t n_calls;
    bool finished;
    struct slm_rng rng;
};

static const char HERMES_OPEN[] = "<tool_call>";
static const char HERMES_CLOSE[] = "</tool_call>";
static const char MISTRAL_MARK[] = "[TOOL_CALLS]";
static const char MISTRAL_ARGS[] = "[ARGS]";
static const char MISTRAL_CALL_ID[] = "[CALL_ID]";
static const char PYTHON_TAG[] = "<|python_tag|>";

#define LIT_LEN(s) (sizeof(s) - 1)

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* ---- output ---- */

static int deliver_content(const char *s, size_t n, chat_delta_cb *cb, void *arg)
{
    struct chat_delta d = { 0 };

    if (n == 0) return 0;
    d.type = CHAT_DELTA_CONTENT;
    d.text = s;
    d.text_len = n;
    return cb(arg, &d);
}

/* Releases s[0..n) as content; its trailing whitespace is held back. */
static int emit_content(struct chat_toolcall_parser *p, const char *s, size_t n, chat_delta_cb *cb,
                        void *arg)
{
    size_t body = n;
    int rc;

    while (body > 0 && is_ws(s[body - 1]))
        body--;
    if (body > 0) {
        if ((rc = deliver_content(p->ws.data, p->ws.len, cb, arg)) < 0) return rc;
        slm_buf_reset(&p->ws);
        if ((rc = deliver_content(s, body, cb, arg)) < 0) return rc;
    }
    if (n > body) {
        rc = slm_buf_append(&p->ws, s + body, n - body);
        if (rc == SLM_ELIMIT) {
            /* A megabyte of whitespace: release it rather than grow. */
            if ((rc = deliver_content(p->ws.data, p->ws.len, cb, arg)) < 0) return rc;
            slm_buf_reset(&p->ws);
            return deliver_content(s + body, n - body, cb, arg);
        }
        return rc;
    }
    return 0;
}

static void make_id(struct chat_toolcall_parser *p, char *id, size_t cap)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t o = 0, n = p->fmt == CHAT_TOOLCALL_MISTRAL ? 9 : 24;

    if (p->fmt != CHAT_TOOLCALL_MISTRAL) {
        memcpy(id, "call_", 5);
        o = 5;
    }
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        id[o++] = alnum[slm_rng_below(&p->rng, sizeof(alnum) - 1)];
    id[o] = '\0';
}

static int emit_call(struct chat_toolcall_parser *p, const char *name, size_t name_len,
                     const char *args, size_t args_len, chat_delta_cb *cb, void *arg)
{
    struct chat_delta d = { 0 };
    char id[40];
    int rc;

    make_id(p, id, sizeof(id));
    slm_buf_reset(&p->ws); /* whitespace before a call is dropped */
    d.type = CHAT_DELTA_TOOL_CALL;
    d.index = p->n_calls;
    d.id = id;
    d.name = name;
    d.name_len = name_len;
    d.text = "";
    if ((rc = cb(arg, &d)) < 0) return rc;
    d.id = NULL;
    d.name = NULL;
    d.name_len = 0;
    d.text = args;
    d.text_len = args_len;
    if ((rc = cb(arg, &d)) < 0) return rc;
    p->n_calls++;
    return 0;
}

/* ---- buffer ---- */

static const char *text_at(const struct chat_toolcall_parser *p)
{
    return p->buf.data != NULL ? p->buf.data + p->off : "";
}

static size_t avail(const struct chat_toolcall_parser *p)
{
    return p->buf.len - p->off;
}

static void consume(struct chat_toolcall_parser *p, size_t n)
{
    p->off += n;
    p->cur = 0;
    if (p->off == p->buf.len) {
        slm_buf_reset(&p->buf);
        p->off = 0;
    } else if (p->off > 4096 && p->off > p->buf.len / 2) {
        memmove(p->buf.data, p->buf.data + p->off, p->buf.len - p->off);
        p->buf.len -= p->off;
        p->buf.data[p->buf.len] = '\0';
        p->off = 0;
    }
}

/* Releases n undecided bytes as content and moves on in state next. */
static int release(struct chat_toolcall_parser *p, size_t n, enum pstate next, chat_delta_cb *cb,
                   void *arg)
{
    int rc = emit_content(p, text_at(p), n, cb, arg);

    consume(p, n);
    p->state = next;
    return rc;
}

/* ---- JSON ---- */

static void js_start(struct chat_toolcall_parser *p, size_t at)
{
    p->js_begin = at;
    p->js_pos = at;
    p->js_depth = 0;
    p->js_str = false;
    p->js_esc = false;
}

/* Scans for the end of the JSON value at js_begin; returns its end (relative,
 * exclusive) or 0 when more text is needed. */
static size_t js_scan(struct chat_toolcall_parser *p)
{
    const char *t = text_at(p);
    size_t n = avail(p);

    for (size_t i = p->js_pos; i < n; i++) {
        char c = t[i];

        if (p->js_str) {
            if (p->js_esc)
                p->js_esc = false;
            else if (c == '\\')
                p->js_esc = true;
            else if (c == '"')
                p->js_str = false;
        } else if (c == '"') {
            p->js_str = true;
        } else if (c == '{' || c == '[') {
            p->js_depth++;
        } else if (c == '}' || c == ']') {
            if (p->js_depth <= 1) {
                p->js_pos = i + 1;
                return i + 1;
            }
            p->js_depth--;
        }
    }
    p->js_pos = n;
    return 0;
}

static int parse_json(const char *s, size_t n, struct json_doc **doc)
{
    struct json_parse_params jp = json_parse_params_default();

    jp.bytes_max = SLM_LIMIT_TOOLCALL_BYTES;
    return json_parse(s, n, &jp, doc, NULL, NULL);
}

/* Checks a {"name": ..., "arguments"|"parameters": ...} object. */
static bool call_valid(const struct json_value *v, const struct json_value **name,
                       const struct json_value **args)
{
    if (v == NULL || v->type != JSON_OBJECT) return false;
    *name = json_obj_get(v, "name");
    *args = json_obj_get(v, "arguments");
    if (*args == NULL) *args = json_obj_get(v, "parameters");
    if (*name == NULL || (*name)->type != JSON_STRING || (*name)->u.str.len == 0 ||
        memchr((*name)->u.str.ptr, '\0', (*name)->u.str.len) != NULL)
        return false;
    return *args == NULL || (*args)->type == JSON_OBJECT || (*args)->type == JSON_STRING ||
           (*args)->type == JSON_NULL;
}

static int emit_call_value(struct chat_toolcall_parser *p, const struct json_value *name,
                           const struct json_value *args, chat_delta_cb *cb, void *arg)
{
    struct slm_buf out;
    struct json_writer w;
    int rc;

    if (args != NULL && args->type == JSON_STRING)
        return emit_call(p, name->u.str.ptr, name->u.str.len, args->u.str.ptr, args->u.str.len, cb,
                         arg);
    if (args == NULL || args->type == JSON_NULL)
        return emit_call(p, name->u.str.ptr, name->u.str.len, "{}", 2, cb, arg);
    slm_buf_init(&out, SLM_LIMIT_TOOLCALL_BYTES * 2);
    json_writer_init(&w, &out, false);
    json_value_write(&w, args);
    rc = json_writer_finish(&w);
    if (rc == 0)
        rc = emit_call(p, name->u.str.ptr, name->u.str.len, slm_buf_str(&out), out.len, cb, arg);
    slm_buf_fini(&out);
    return rc;
}

/* Parses s[0..n) as one call object; emits it and returns 1, or returns 0. */
static int try_call_object(struct chat_toolcall_parser *p, const char *s, size_t n,
                           chat_delta_cb *cb, void *arg)
{
    struct json_doc *doc = NULL;
    const struct json_value *name, *args;
    int rc;

    while (n > 0 && is_ws(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_ws(s[n - 1]))
        n--;
    rc = parse_json(s, n, &doc);
    if (rc == SLM_ENOMEM) return rc;
    if (rc < 0 || !call_valid(json_doc_root(doc), &name, &args)) {
        json_doc_free(doc);
        return 0;
    }
    rc = emit_call_value(p, name, args, cb, arg);
    json_doc_free(doc);
    return rc < 0 ? rc : 1;
}

/* [{"name": ..., "arguments": ...}, ...]: all valid -> emitted, returns 1. */
static int try_call_array(struct chat_toolcall_parser *p, const char *s, size_t n,
                          chat_delta_cb *cb, void *arg)
{
    struct json_doc *doc = NULL;
    const struct json_value *root, *name, *args;
    int rc = parse_json(s, n, &doc);

    if (rc == SLM_ENOMEM) return rc;
    root = rc == 0 ? json_doc_root(doc) : NULL;
    if (root == NULL || root->type != JSON_ARRAY || root->u.arr.n == 0) {
        json_doc_free(doc);
        return 0;
    }
    for (size_t i = 0; i < root->u.arr.n; i++) {
        if (!call_valid(&root->u.arr.items[i], &name, &args)) {
            json_doc_free(doc);
            return 0;
        }
    }
    for (size_t i = 0; rc == 0 && i < root->u.arr.n; i++) {
        call_valid(&root->u.arr.items[i], &name, &args);
        rc = emit_call_value(p, name, args, cb, arg);
    }
    json_doc_free(doc);
    return rc < 0 ? rc : 1;
}

/* Longest suffix of t[0..n) that is a proper prefix of marker. */
static size_t partial_marker(const char *t, size_t n, const char *marker, size_t mlen)
{
    size_t k = n < mlen - 1 ? n : mlen - 1;

    for (; k > 0; k--)
        if (memcmp(t + n - k, marker, k) == 0) return k;
    return 0;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

/* ---- the state machine ---- */

static int step_content(struct chat_toolcall_parser *p, bool final, chat_delta_cb *cb, void *arg,
                        bool *more)
{
    const char *marker = p->fmt == CHAT_TOOLCALL_HERMES ? HERMES_OPEN : MISTRAL_MARK;
    size_t mlen = p->fmt == CHAT_TOOLCALL_HERMES ? LIT_LEN(HERMES_OPEN) : LIT_LEN(MISTRAL_MARK);
    const char *t = text_at(p), *hit;
    size_t n = avail(p), keep;
    int rc;

    hit = n > p->cur ? memmem(t + p->cur, n - p->cur, marker, mlen) : NULL;
    if (hit != NULL) {
        size_t k = (size_t)(hit - t);

        rc = emit_content(p, t, k, cb, arg);
        consume(p, k);
        p->cur = mlen;
        p->state = p->fmt == CHAT_TOOLCALL_HERMES ? S_H_BODY : S_M_AFTER;
        *more = true;
        return rc;
    }
    keep = final ? 0 : partial_marker(t, n, marker, mlen);
    rc = emit_content(p, t, n - keep, cb, arg);
    consume(p, n - keep);
    *more = false;
    return rc;
}

static int step_hermes(struct chat_toolcall_parser *p, bool final, chat_delta_cb *cb, void *arg,
                       bool *more)
{
    const char *t = text_at(p);
    size_t n = avail(p), close = LIT_LEN(HERMES_CLOSE), e, k;
    int rc;

    *more = true;
    if (n > SLM_LIMIT_TOOLCALL_BYTES) return release(p, n, S_CONTENT, cb, arg);
    switch (p->state) {
    case S_H_BODY:
        while (p->cur < n && is_ws(t[p->cur]))
            p->cur++;
        if (p->cur == n) break;
        if (t[p->cur] != '{') return release(p, p->cur + 1, S_CONTENT, cb, arg);
        js_start(p, p->cur);
        p->state = S_H_JSON;
        return 0;
    case S_H_JSON:
        if ((e = js_scan(p)) == 0) break;
        p->cur = e;
        p->state = S_H_CLOSE;
        return 0;
    case S_H_CLOSE:
        e = p->js_pos;
        while (p->cur < n && is_ws(t[p->cur]))
            p->cur++;
        k = n - p->cur < close ? n - p->cur : close;
        if (memcmp(t + p->cur, HERMES_CLOSE, k) != 0)
            return release(p, e, S_CONTENT, cb, arg); /* no closing tag: text */
        if (k < close && !final) break;
        /* Complete; at the end of the output a missing closing tag is forgiven. */
        rc = try_call_object(p, t + p->js_begin, e - p->js_begin, cb, arg);
        if (rc < 0) return rc;
        if (rc == 0) return release(p, p->cur + k, S_CONTENT, cb, arg);
        consume(p, p->cur + k);
        p->state = S_CONTENT;
        return 0;
    default:
        break;
    }
    if (final) return release(p, n, S_CONTENT, cb, arg);
    *more = false;
    return 0;
}

static int step_mistral(struct chat_toolcall_parser *p, bool final, chat_delta_cb *cb, void *arg,
                        bool *more)
{
    const char *t = text_at(p);
    size_t n = avail(p), e;
    int rc;

    *more = true;
    if (n > SLM_LIMIT_TOOLCALL_BYTES) return release(p, n, S_CONTENT, cb, arg);
    switch (p->state) {
    case S_M_AFTER:
        while (p->cur < n && is_ws(t[p->cur]))
            p->cur++;
        if (p->cur == n) break;
        if (t[p->cur] == '[') {
            js_start(p, p->cur);
            p->state = S_M_ARRAY;
        } else {
            p->name_begin = p->cur;
            p->state = S_M_NAME;
        }
        return 0;
    case S_M_NAME: {
        const char *args =
            memmem(t + p->name_begin, n - p->name_begin, MISTRAL_ARGS, LIT_LEN(MISTRAL_ARGS));
        size_t end = args ? (size_t)(args - t) : n;
        const char *cid = memmem(t + p->name_begin, end - p->name_begin, MISTRAL_CALL_ID,
                                 LIT_LEN(MISTRAL_CALL_ID));
        size_t name_end = cid ? (size_t)(cid - t) : end;

        /* The name must be an identifier; a bad byte ends the candidate. */
        for (size_t i = p->name_begin; i < name_end; i++) {
            if (!name_char(t[i])) {
                if (cid == NULL && args == NULL && t[i] == '[' &&
                    (memcmp(t + i, MISTRAL_ARGS, n - i < 6 ? n - i : 6) == 0 ||
                     memcmp(t + i, MISTRAL_CALL_ID, n - i < 9 ? n - i : 9) == 0))
                    break; /* maybe the start of [ARGS] or [CALL_ID] */
                return release(p, i + 1, S_CONTENT, cb, arg);
            }
        }
        if (name_end - p->name_begin > 256)
            return release(p, p->name_begin + 257, S_CONTENT, cb, arg);
        if (args == NULL) break;
        if (name_end == p->name_begin)
            return release(p, end + LIT_LEN(MISTRAL_ARGS), S_CONTENT, cb, arg);
        p->name_end = name_end;
        p->cur = end + LIT_LEN(MISTRAL_ARGS);
        p->state = S_M_ARGS;
        return 0;
    }
    case S_M_ARGS:
        while (p->cur < n && is_ws(t[p->cur]))
            p->cur++;
        if (p->cur == n) break;
        if (t[p->cur] != '{') return release(p, p->cur + 1, S_CONTENT, cb, arg);
        js_start(p, p->cur);
        p->state = S_M_JSON;
        return 0;
    case S_M_JSON:
        if ((e = js_scan(p)) == 0) break;
        {
            struct json_doc *doc = NULL;

            rc = parse_json(t + p->js_begin, e - p->js_begin, &doc);
            if (rc == SLM_ENOMEM) return rc;
            if (rc == 0 && json_doc_root(doc)->type == JSON_OBJECT) {
                struct json_value name = { .type = JSON_STRING };

                name.u.str.ptr = t + p->name_begin;
                name.u.str.len = p->name_end - p->name_begin;
                rc = emit_call_value(p, &name, json_doc_root(doc), cb, arg);
                json_doc_free(doc);
                if (rc < 0) return rc;
                consume(p, e);
                p->state = S_CONTENT;
                return 0;
            }
            json_doc_free(doc);
            return release(p, e, S_CONTENT, cb, arg);
        }
    case S_M_ARRAY:
        if ((e = js_scan(p)) == 0) break;
        rc = try_call_array(p, t + p->js_begin, e - p->js_begin, cb, arg);
        if (rc < 0) return rc;
        if (rc == 1) {
            consume(p, e);
            p->state = S_CONTENT;
            return 0;
        }
        return release(p, e, S_CONTENT, cb, arg);
    default:
        break;
    }
    /* Undecided: wait for more text, or give up at the end. */
    if (final) return release(p, n, S_CONTENT, cb, arg);
    *more = false;
    return 0;
}

static int step_llama(struct chat_toolcall_parser *p, bool final, chat_delta_cb *cb, void *arg,
                      bool *more)
{
    const char *t = text_at(p);
    size_t n = avail(p), w = 0, e, tag = LIT_LEN(PYTHON_TAG);
    int rc;

    *more = true;
    if (n > SLM_LIMIT_TOOLCALL_BYTES) {
        p->state = S_PLAIN;
        return 0;
    }
    switch (p->state) {
    case S_L_START:
    case S_L_AFTER: {
        bool after = p->state == S_L_AFTER;
        size_t k;

        while (w < n && (is_ws(t[w]) || (after && t[w] == ';')))
            w++;
        if (w == n) {
            if (!final) break;
            if (after) consume(p, n); /* separators after the last call */
            p->state = S_PLAIN;
            return 0;
        }
        if (t[w] == '{') {
            if (after) {
                consume(p, w); /* separators between calls are dropped */
                w = 0;
            }
            js_start(p, w);
            p->state = S_L_JSON;
            return 0;
        }
        k = n - w < tag ? n - w : tag;
        if (memcmp(t + w, PYTHON_TAG, k) != 0) {
            p->state = S_PLAIN;
            return 0;
        }
        if (k < tag) {
            if (!final) break;
            p->state = S_PLAIN;
            return 0;
        }
        if (after) {
            consume(p, w);
            w = 0;
        }
        p->cur = w + tag;
        p->state = S_L_TAG;
        return 0;
    }
    case S_L_TAG:
        while (p->cur < n && is_ws(t[p->cur]))
            p->cur++;
        if (p->cur == n) {
            if (!final) break;
            p->state = S_PLAIN;
            return 0;
        }
        if (t[p->cur] != '{') {
            p->state = S_PLAIN;
            return 0;
        }
        js_start(p, p->cur);
        p->state = S_L_JSON;
        return 0;
    case S_L_JSON:
        if ((e = js_scan(p)) == 0) {
            if (!final) break;
            p->state = S_PLAIN;
            return 0;
        }
        rc = try_call_object(p, t + p->js_begin, e - p->js_begin, cb, arg);
        if (rc < 0) return rc;
        if (rc == 0) {
            p->state = S_PLAIN;
            return 0;
        }
        consume(p, e);
        p->state = S_L_AFTER;
        return 0;
    default:
        break;
    }
    *more = false;
    return 0;
}

static int process(struct chat_toolcall_parser *p, bool final, chat_delta_cb *cb, void *arg)
{
    bool more = true;
    int rc = 0;

    while (rc == 0 && more) {
        if (avail(p) == 0 && !final) return 0;
        switch (p->state) {
        case S_PLAIN:
            rc = release(p, avail(p), S_PLAIN, cb, arg);
            more = false;
            break;
        case S_CONTENT:
            if (p->fmt == CHAT_TOOLCALL_NONE || p->fmt == CHAT_TOOLCALL_LLAMA3) {
                p->state = S_PLAIN;
                break;
            }
            rc = step_content(p, final, cb, arg, &more);
            break;
        case S_H_BODY:
        case S_H_JSON:
        case S_H_CLOSE:
            rc = step_hermes(p, final, cb, arg, &more);
            break;
        case S_M_AFTER:
        case S_M_NAME:
        case S_M_ARGS:
        case S_M_JSON:
        case S_M_ARRAY:
            rc = step_mistral(p, final, cb, arg, &more);
            break;
        default:
            rc = step_llama(p, final, cb, arg, &more);
            break;
        }
        if (final && avail(p) == 0 && (p->state == S_CONTENT || p->state == S_PLAIN)) break;
    }
    return rc;
}

/* ---- public API ---- */

/*
 * Creates a parser for fmt. seed 0 seeds the id generator from getrandom;
 * any other value makes the ids reproducible. Returns 0, SLM_EINVAL for an
 * unknown format or SLM_ENOMEM.
 */
int chat_toolcall_parser_new(enum chat_toolcall_format fmt, uint64_t seed,
                             struct chat_toolcall_parser **out, struct slm_diag *d)
{
    struct chat_toolcall_parser *p;

    *out = NULL;
    if ((unsigned)fmt >= CHAT_TOOLCALL_FORMAT_COUNT)
        return slm_diag_set(d, SLM_EINVAL, "tool calls: unknown format %u", (unsigned)fmt);
    if (seed == 0 && slm_random_bytes(&seed, sizeof(seed)) < 0) seed = slm_now_ns() | 1;
    p = slm_calloc(1, sizeof(*p));
    if (p == NULL) return slm_diag_set(d, SLM_ENOMEM, "tool calls: out of memory");
    p->fmt = fmt;
    p->state = fmt == CHAT_TOOLCALL_LLAMA3 ? S_L_START : S_CONTENT;
    slm_buf_init(&p->buf, SLM_LIMIT_TOOLCALL_BYTES + FEED_CHUNK + 16);
    slm_buf_init(&p->ws, SLM_LIMIT_TOOLCALL_BYTES);
    slm_rng_seed(&p->rng, seed);
    *out = p;
    return 0;
}

/* Frees p; NULL is a no-op. */
void chat_toolcall_parser_free(struct chat_toolcall_parser *p)
{
    if (p == NULL) return;
    slm_buf_fini(&p->buf);
    slm_buf_fini(&p->ws);
    slm_free(p);
}

/* Feeds text; see chat.h. */
int chat_toolcall_feed(struct chat_toolcall_parser *p, const char *text, size_t len,
                       chat_delta_cb *cb, void *arg)
{
    int rc;

    if (p->finished) return SLM_EINVAL;
    while (len > 0) {
        size_t n = len < FEED_CHUNK ? len : FEED_CHUNK;

        if ((rc = slm_buf_append(&p->buf, text, n)) < 0) return rc;
        text += n;
        len -= n;
        if ((rc = process(p, false, cb, arg)) < 0) return rc;
    }
    return 0;
}

/* Flushes at the end of generation; see chat.h. */
int chat_toolcall_finish(struct chat_toolcall_parser *p, chat_delta_cb *cb, void *arg)
{
    int rc;

    if (p->finished) return SLM_EINVAL;
    p->finished = true;
    if ((rc = process(p, true, cb, arg)) < 0) return rc;
    if (p->n_calls == 0) rc = deliver_content(p->ws.data, p->ws.len, cb, arg);
    slm_buf_reset(&p->ws);
    return rc;
}

size_t chat_toolcall_count(const struct chat_toolcall_parser *p)
{
    return p->n_calls;
}

static const char *const format_names[CHAT_TOOLCALL_FORMAT_COUNT] = { "none", "mistral", "hermes",
                                                                      "llama3" };

const char *chat_toolcall_format_name(enum chat_toolcall_format fmt)
{
    return (unsigned)fmt < CHAT_TOOLCALL_FORMAT_COUNT ? format_names[fmt] : "unknown";
}

int chat_toolcall_format_parse(const char *name, enum chat_toolcall_format *out)
{
    for (unsigned i = 0; i < CHAT_TOOLCALL_FORMAT_COUNT; i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (enum chat_toolcall_format)i;
            return 0;
        }
    }
    return SLM_ENOTFOUND;
}

/* Guesses the tool-call format a chat template teaches its model. */
enum chat_toolcall_format chat_toolcall_format_detect(const char *src, size_t len)
{
    if (src == NULL) return CHAT_TOOLCALL_NONE;
    if (memmem(src, len, MISTRAL_MARK, LIT_LEN(MISTRAL_MARK)) != NULL) return CHAT_TOOLCALL_MISTRAL;
    if (memmem(src, len, HERMES_OPEN, LIT_LEN(HERMES_OPEN)) != NULL) return CHAT_TOOLCALL_HERMES;
    if (memmem(src, len, PYTHON_TAG, LIT_LEN(PYTHON_TAG)) != NULL ||
        (memmem(src, len, "<|start_header_id|>", 19) != NULL &&
         memmem(src, len, "\"parameters\"", 12) != NULL))
        return CHAT_TOOLCALL_LLAMA3;
    return CHAT_TOOLCALL_NONE;
}

/* ==== incremental JSON prefix validation (see chat.h) ==== */

enum jp_mode {
    JP_VALUE,
    JP_OBJ_FIRST,
    JP_OBJ_KEY,
    JP_COLON,
    JP_AFTER,
    JP_STR,
    JP_NUM,
    JP_LIT,
    JP_DONE
};
enum jp_str { JS_CHAR, JS_ESC, JS_HEX, JS_LOW_BS, JS_LOW_U, JS_LOW_HEX, JS_UTF8 };
enum jp_num { JN_MINUS, JN_ZERO, JN_INT, JN_DOT, JN_FRAC, JN_E, JN_ESIGN, JN_EXP };

#define JPF_ROOT 1u /* the root object has not opened yet */
#define JPF_OPT  2u /* right after '[': the value may be left out */
#define JPF_KEY  4u /* the string is an object key */


static const char *const jp_literals[3] = { "true", "false", "null" };

/* Starts an empty document; see chat.h. */
void chat_json_prefix_init(struct chat_json_prefix *j)
{
    memset(j, 0, offsetof(struct chat_json_prefix, kind));
    j->mode = JP_VALUE;
    j->flags = JPF_ROOT;
}

static void jp_hash(struct chat_json_prefix *j, const char *b, size_t n)
{
    j->key_hash = slm_fnv1a(j->key_hash, b, n);
}

/* True if hash h is already a key of the innermost open object. */
static bool jp_key_dup(const struct chat_json_prefix *j, uint64_t h)
{
    if (j->depth == 0) return false;
    for (size_t i = j->key_base[j->depth - 1]; i < j->n_keys; i++)
        if (j->keys[i] == h) return true;
    return false;
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static bool jp_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A value ended: back in the container, or the document is complete. */
static void jp_value_done(struct chat_json_prefix *j)
{
    j->mode = j->depth == 0 ? JP_DONE : JP_AFTER;
    j->ws = 0;
}

/* Adds decoded code point cp to a key's hash. */
static void jp_hash_cp(struct chat_json_prefix *j, uint32_t cp)
{
    char u[4];

    if (j->flags & JPF_KEY) jp_hash(j, u, slm_utf8_encode(cp, u));
}

/* One byte inside a string; returns false if it cannot continue a valid one. */
static bool jp_str_byte(struct chat_json_prefix *j, unsigned char c)
{
    int h;

    switch (j->sub) {
    case JS_CHAR:
        if (c == '"') {
            if (j->flags & JPF_KEY) {
                if (jp_key_dup(j, j->key_hash) || j->n_keys >= CHAT_JSON_KEYS_MAX) return false;
                j->keys[j->n_keys++] = j->key_hash;
                j->mode = JP_COLON;
                j->ws = 0;
            } else {
                jp_value_done(j);
            }
            return true;
        }
        if (c == '\\') {
            j->sub = JS_ESC;
            return true;
        }
        if (c < 0x20) return false;
        if (c >= 0x80) {
            /* The lead byte fixes the count and the first continuation's range. */
            j->lo = 0x80;
            j->hi = 0xbf;
            if (c >= 0xc2 && c <= 0xdf) {
                j->pend = 1;
            } else if (c >= 0xe0 && c <= 0xef) {
                j->pend = 2;
                if (c == 0xe0) j->lo = 0xa0;
                if (c == 0xed) j->hi = 0x9f;
            } else if (c >= 0xf0 && c <= 0xf4) {
                j->pend = 3;
                if (c == 0xf0) j->lo = 0x90;
                if (c == 0xf4) j->hi = 0x8f;
            } else {
                return false;
            }
            j->sub = JS_UTF8;
        }
        if (j->flags & JPF_KEY) jp_hash(j, (const char *)&c, 1);
        return true;
    case JS_UTF8:
        if (c < j->lo || c > j->hi) return false;
        j->lo = 0x80;
        j->hi = 0xbf;
        if (--j->pend == 0) j->sub = JS_CHAR;
        if (j->flags & JPF_KEY) jp_hash(j, (const char *)&c, 1);
        return true;
    case JS_ESC: {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *p;

        if (c == 'u') {
            j->sub = JS_HEX;
            j->pend = 0;
            j->hex = 0;
            return true;
        }
        p = c != 0 ? strchr(from, c) : NULL;
        if (p == NULL) return false;
        jp_hash_cp(j, (unsigned char)to[p - from]);
        j->sub = JS_CHAR;
        return true;
    }
    case JS_HEX:
    case JS_LOW_HEX:
        if ((h = hex_val(c)) < 0) return false;
        j->hex = (j->hex << 4) | (uint32_t)h;
        j->pend++;
        if (j->sub == JS_LOW_HEX) {
            /* The low half of a pair: \uDC00-\uDFFF. */
            if ((j->pend == 1 && j->hex != 0xd) || (j->pend == 2 && j->hex < 0xdc)) return false;
            if (j->pend < 4) return true;
            jp_hash_cp(j, 0x10000 + ((j->high - 0xd800) << 10) + (j->hex - 0xdc00));
            j->sub = JS_CHAR;
            return true;
        }
        /* A lone low surrogate is refused as soon as its second digit shows it. */
        if (j->pend == 2 && j->hex >= 0xdc && j->hex <= 0xdf) return false;
        if (j->pend < 4) return true;
        if (j->hex >= 0xd800 && j->hex <= 0xdbff) {
            j->high = j->hex;
            j->sub = JS_LOW_BS;
            return true;
        }
        jp_hash_cp(j, j->hex);
        j->sub = JS_CHAR;
        return true;
    case JS_LOW_BS:
        if (c != '\\') return false;
        j->sub = JS_LOW_U;
        return true;
    case JS_LOW_U:
        if (c != 'u') return false;
        j->sub = JS_LOW_HEX;
        j->pend = 0;
        j->hex = 0;
        return true;
    default:
        return false;
    }
}

/* Opens a container; false past the depth bound. */
static bool jp_push(struct chat_json_prefix *j, bool obj)
{
    if (j->depth >= CHAT_JSON_DEPTH_MAX) return false;
    j->kind[j->depth] = obj;
    j->key_base[j->depth] = j->n_keys;
    j->depth++;
    j->ws = 0;
    j->flags &= (uint8_t) ~(JPF_ROOT | JPF_OPT);
    if (obj) {
        j->mode = JP_OBJ_FIRST;
    } else {
        j->mode = JP_VALUE;
        j->flags |= JPF_OPT;
    }
    return true;
}

/* Closes the innermost container with c ('}' or ']'). */
static bool jp_close(struct chat_json_prefix *j, unsigned char c)
{
    if (j->depth == 0 || j->kind[j->depth - 1] != (c == '}')) return false;
    j->depth--;
    j->n_keys = j->key_base[j->depth];
    jp_value_done(j);
    return true;
}

/* The first byte of a value. */
static bool jp_value_start(struct chat_json_prefix *j, unsigned char c)
{
    bool root = (j->flags & JPF_ROOT) != 0;

    if (c == '{') return jp_push(j, true);
    if (root) return false;
    if (c == ']' && (j->flags & JPF_OPT)) return jp_close(j, c);
    j->flags &= (uint8_t)~JPF_OPT;
    j->ws = 0;
    if (c == '[') return jp_push(j, false);
    if (c == '"') {
        j->mode = JP_STR;
        j->sub = JS_CHAR;
        j->flags &= (uint8_t)~JPF_KEY;
        return true;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        j->mode = JP_NUM;
        j->sub = c == '-' ? JN_MINUS : c == '0' ? JN_ZERO : JN_INT;
        j->num_len = 1;
        j->exp_digits = 0;
        return true;
    }
    for (uint8_t i = 0; i < 3; i++) {
        if (c == (unsigned char)jp_literals[i][0]) {
            j->mode = JP_LIT;
            j->lit = i;
            j->lit_pos = 1;
            return true;
        }
    }
    return false;
}

/*
 * One byte of a number. Returns 1 if taken, 0 if the number ended before c
 * (c must then be read as what follows the value), -1 if invalid.
 */
static int jp_num_byte(struct chat_json_prefix *j, unsigned char c)
{
    bool digit = c >= '0' && c <= '9';
    /* A byte that needs a digit after it needs room for that digit too. */
    size_t room = CHAT_JSON_NUMBER_MAX - j->num_len;

    switch (j->sub) {
    case JN_MINUS:
        if (!digit) return -1;
        j->sub = c == '0' ? JN_ZERO : JN_INT;
        break;
    case JN_ZERO:
    case JN_INT:
    case JN_FRAC:
        if (digit && j->sub != JN_ZERO) {
            if (room < 1) return -1;
            break;
        }
        if (digit) return -1; /* a leading zero */
        if (c == '.' && j->sub != JN_FRAC) {
            if (room < 2) return -1;
            j->sub = JN_DOT;
            break;
        }
        if (c == 'e' || c == 'E') {
            if (room < 2) return -1;
            j->sub = JN_E;
            break;
        }
        return 0;
    case JN_DOT:
        if (!digit) return -1;
        j->sub = JN_FRAC;
        break;
    case JN_E:
        if (c == '+' || c == '-') {
            if (room < 2) return -1;
            j->sub = JN_ESIGN;
            break;
        }
        if (!digit) return -1;
        j->sub = JN_EXP;
        j->exp_digits = 1;
        break;
    case JN_ESIGN:
        if (!digit) return -1;
        j->sub = JN_EXP;
        j->exp_digits = 1;
        break;
    case JN_EXP:
        if (!digit) return 0;
        if (j->exp_digits >= 2 || room < 1) return -1;
        j->exp_digits++;
        break;
    default:
        return -1;
    }
    j->num_len++;
    return 1;
}

/* The opening quote of a key (room in the key table needed). */
static bool jp_key_start(struct chat_json_prefix *j, unsigned char c)
{
    if (c != '"' || j->n_keys >= CHAT_JSON_KEYS_MAX) return false;
    j->mode = JP_STR;
    j->sub = JS_CHAR;
    j->flags |= JPF_KEY;
    j->key_hash = SLM_FNV1A_INIT;
    return true;
}

/* One byte of the document; false if it makes the text invalid. */
static bool jp_byte(struct chat_json_prefix *j, unsigned char c)
{
    switch (j->mode) {
    case JP_STR:
        return jp_str_byte(j, c);
    case JP_NUM: {
        int r = jp_num_byte(j, c);

        if (r != 0) return r > 0;
        jp_value_done(j);
        return jp_byte(j, c);
    }
    case JP_LIT: {
        const char *lit = jp_literals[j->lit];

        if (c != (unsigned char)lit[j->lit_pos]) return false;
        if (lit[++j->lit_pos] == '\0') jp_value_done(j);
        return true;
    }
    case JP_DONE:
        return false;
    default:
        break;
    }
    if (jp_is_ws(c)) {
        if (j->ws >= CHAT_JSON_WS_MAX) return false;
        j->ws++;
        return true;
    }
    j->ws = 0;
    switch (j->mode) {
    case JP_VALUE:
        return jp_value_start(j, c);
    case JP_OBJ_FIRST:
        if (c == '}') return jp_close(j, c);
        return jp_key_start(j, c);
    case JP_OBJ_KEY:
        return jp_key_start(j, c);
    case JP_COLON:
        if (c != ':') return false;
        j->mode = JP_VALUE;
        return true;
    case JP_AFTER:
        if (c == '}' || c == ']') return jp_close(j, c);
        if (c != ',') return false;
        if (j->kind[j->depth - 1]) {
            /* The key that must follow needs room in the key table. */
            if (j->n_keys >= CHAT_JSON_KEYS_MAX) return false;
            j->mode = JP_OBJ_KEY;
        } else {
            j->mode = JP_VALUE;
        }
        return true;
    default:
        return false;
    }
}

/* Feeds bytes; see chat.h. */
enum chat_json_status chat_json_prefix_feed(struct chat_json_prefix *j, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!jp_byte(j, (unsigned char)s[i])) return CHAT_JSON_INVALID;
    return j->mode == JP_DONE ? CHAT_JSON_COMPLETE : CHAT_JSON_PREFIX;
}

/* Bytes a string still needs before its closing quote could come. */
static size_t jp_str_pending(const struct chat_json_prefix *j)
{
    switch (j->sub) {
    case JS_ESC:
        return 1;
    case JS_HEX: {
        /* Two digits D8-DB make it a high surrogate: a \uDC00 must follow. */
        bool high = j->pend >= 2 && (j->hex >> (4 * (j->pend - 2))) >= 0xd8 &&
                    (j->hex >> (4 * (j->pend - 2))) <= 0xdb;

        return 4u - j->pend + (high ? 6u : 0u);
    }
    case JS_LOW_BS:
        return 6;
    case JS_LOW_U:
        return 5;
    case JS_LOW_HEX:
        return 4u - j->pend;
    case JS_UTF8:
        return j->pend;
    default:
        return 0;
    }
}

/* Fewest bytes that complete the document; see chat.h. */
size_t chat_json_prefix_min_close(const struct chat_json_prefix *j)
{
    size_t s = j->depth, pend;

    switch (j->mode) {
    case JP_DONE:
        return 0;
    case JP_VALUE:
        if (j->flags & JPF_ROOT) return 2;       /* {} */
        return (j->flags & JPF_OPT) ? s : 1 + s; /* ] or 0 */
    case JP_OBJ_KEY:
        return 4 + s + (jp_key_dup(j, SLM_FNV1A_INIT) ? 1 : 0); /* "":0 */
    case JP_COLON:
        return 2 + s; /* :0 */
    case JP_LIT:
        return strlen(jp_literals[j->lit]) - j->lit_pos + s;
    case JP_NUM:
        return (j->sub == JN_MINUS || j->sub == JN_DOT || j->sub == JN_E || j->sub == JN_ESIGN) + s;
    case JP_STR:
        pend = jp_str_pending(j);
        if (!(j->flags & JPF_KEY)) return pend + 1 + s;
        /* A key that is (or may become) a duplicate needs one more byte. */
        return pend + 3 + s + ((pend > 0 || jp_key_dup(j, j->key_hash)) ? 1 : 0);
    default:
        return s; /* JP_OBJ_FIRST, JP_AFTER: the closing brackets */
    }
}

/* ==== the reasoning split (see chat.h) ==== */

enum tstate { T_START, T_LEAD, T_THINK, T_AFTER, T_CONTENT };

static const char THINK_OPEN[] = "<think>";
static const char THINK_CLOSE[] = "</think>";
/* Whitespace held back at the end of reasoning before it is let go. */
#define THINK_WS_HOLD_MAX 4096u

struct chat_think_parser {
    enum tstate state;
    struct slm_buf buf; /* undecided text */
    bool finished;
};

/* Creates a splitter; see chat.h. */
int chat_think_parser_new(bool start_inside, struct chat_think_parser **out)
{
    struct chat_think_parser *p = slm_calloc(1, sizeof(*p));

    *out = NULL;
    if (p == NULL) return SLM_ENOMEM;
    p->state = start_inside ? T_LEAD : T_START;
    slm_buf_init(&p->buf, THINK_WS_HOLD_MAX + FEED_CHUNK + 64);
    *out = p;
    return 0;
}

void chat_think_parser_free(struct chat_think_parser *p)
{
    if (p == NULL) return;
    slm_buf_fini(&p->buf);
    slm_free(p);
}

static int think_out(chat_think_cb *cb, void *arg, bool reasoning, const char *s, size_t n)
{
    return n > 0 ? cb(arg, reasoning, s, n) : 0;
}

/* Drops the first n bytes of the buffer. */
static void think_consume(struct chat_think_parser *p, size_t n)
{
    if (n >= p->buf.len) {
        slm_buf_reset(&p->buf);
        return;
    }
    memmove(p->buf.data, p->buf.data + n, p->buf.len - n);
    p->buf.len -= n;
    p->buf.data[p->buf.len] = '\0';
}

/* Runs the state machine over the buffer. */
static int think_process(struct chat_think_parser *p, bool final, chat_think_cb *cb, void *arg)
{
    int rc = 0;

    while (rc == 0 && p->buf.len > 0) {
        const char *t = p->buf.data;
        size_t n = p->buf.len, w = 0;

        switch (p->state) {
        case T_START: {
            size_t k;

            while (w < n && is_ws(t[w]))
                w++;
            k = n - w < LIT_LEN(THINK_OPEN) ? n - w : LIT_LEN(THINK_OPEN);
            if (w < n && memcmp(t + w, THINK_OPEN, k) != 0) {
                p->state = T_CONTENT; /* no think block: all of it is content */
                continue;
            }
            if (k < LIT_LEN(THINK_OPEN)) {
                if (!final) return 0;
                p->state = T_CONTENT;
                continue;
            }
            think_consume(p, w + k);
            p->state = T_LEAD;
            continue;
        }
        case T_LEAD:
        case T_AFTER:
            while (w < n && is_ws(t[w]))
                w++;
            think_consume(p, w);
            if (w < n) p->state = p->state == T_LEAD ? T_THINK : T_CONTENT;
            continue;
        case T_THINK: {
            const char *hit = memmem(t, n, THINK_CLOSE, LIT_LEN(THINK_CLOSE));
            size_t end = hit != NULL ? (size_t)(hit - t) : n, body;

            if (hit == NULL && !final)
                end -= partial_marker(t, n, THINK_CLOSE, LIT_LEN(THINK_CLOSE));
            body = end;
            while (body > 0 && is_ws(t[body - 1]))
                body--;
            if (hit == NULL && !final && end - body < THINK_WS_HOLD_MAX) {
                /* Trailing whitespace waits: it is dropped if </think> follows. */
                rc = think_out(cb, arg, true, t, body);
                think_consume(p, body);
                return rc;
            }
            rc = think_out(cb, arg, true, t, hit != NULL || final ? body : end);
            if (hit != NULL) {
                think_consume(p, end + LIT_LEN(THINK_CLOSE));
                p->state = T_AFTER;
            } else {
                think_consume(p, end);
                if (final) slm_buf_reset(&p->buf);
                return rc;
            }
            continue;
        }
        default:
            rc = think_out(cb, arg, false, t, n);
            slm_buf_reset(&p->buf);
            return rc;
        }
    }
    return rc;
}

/* Feeds text; see chat.h. */
int chat_think_feed(struct chat_think_parser *p, const char *text, size_t len, chat_think_cb *cb,
                    void *arg)
{
    int rc;

    if (p->finished) return SLM_EINVAL;
    while (len > 0) {
        size_t n = len < FEED_CHUNK ? len : FEED_CHUNK;

        if (p->state == T_CONTENT) {
            /* The common case after the block: no copy. */
            if ((rc = think_out(cb, arg, false, text, len)) < 0) return rc;
            return 0;
        }
        if ((rc = slm_buf_append(&p->buf, text, n)) < 0) return rc;
        text += n;
        len -= n;
        if ((rc = think_process(p, false, cb, arg)) < 0) return rc;
    }
    return 0;
}

/* Flushes what was held back; see chat.h. */
int chat_think_finish(struct chat_think_parser *p, chat_think_cb *cb, void *arg)
{
    if (p->finished) return SLM_EINVAL;
    p->finished = true;
    return think_process(p, true, cb, arg);
}

/* True if the prompt's last non-whitespace bytes are "<think>". */
bool chat_think_prompt_open(const char *prompt, size_t len)
{
    while (len > 0 && is_ws(prompt[len - 1]))
        len--;
    return len >= LIT_LEN(THINK_OPEN) &&
           memcmp(prompt + len - LIT_LEN(THINK_OPEN), THINK_OPEN, LIT_LEN(THINK_OPEN)) == 0;
}
