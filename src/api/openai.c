/*
 * openai.c - the endpoints of `slm serve` (see api.h).
 *
 * A generation request (chat or text completion) goes: parse and validate
 * the JSON body -> render the chat template (chat) or build the prompt
 * (FIM with suffix) -> tokenize -> check the context -> sched_submit. The
 * scheduler reports STARTED / TOKEN / DONE on its thread; on_sched_event
 * copies each into a task posted to the loop, where the request's state
 * lives (struct api_req). Tokens are detokenized with tok_stream (whole
 * UTF-8 characters only) into r->text; stop strings are searched there, and
 * in streams the bytes that could still be the start of a stop string are
 * held back, so a stop string is never partly sent. The request's memory is
 * freed when DONE has been handled, never earlier: the engine may still
 * report events for it until then.
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

/* Stop strings per request and bytes per stop string. */
#define API_STOP_MAX       16u
#define API_STOP_BYTES_MAX 512u
/* Bytes of generated text kept per request. */
#define API_TEXT_MAX       SLM_LIMIT_HTTP_BODY
/* Bytes of a JSON response or of one stream chunk. */
#define API_RESP_MAX       (2u * SLM_LIMIT_HTTP_BODY)
/* Bytes of a rendered chat prompt. */
#define API_PROMPT_MAX     SLM_LIMIT_HTTP_BODY
/* Tool calls per reply. */
#define API_TOOL_CALLS_MAX 128u
/* Reported as system_fingerprint. */
#define SLM_API_VERSION    "0.1.0"

enum api_kind { API_KIND_CHAT, API_KIND_COMPLETION };

struct api_req {
    struct api *a;
    struct api_req *prev, *next;
    struct http_exchange *ex; /* NULL once the client is gone */
    struct slm_buf *sse;      /* the stream's output buffer (borrowed from ex) */
    enum api_kind kind;
    bool stream, include_usage;
    bool stop_hit, text_full, client_gone, shutdown;
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
};

/* A TOKEN or STARTED event on its way to the loop. */
struct api_ev {
    struct http_task task;
    struct api_req *r;
    enum sched_event_type type;
    tok_id token;
    uint32_t n_prompt, n_cached;
};

/* Validated generation parameters. */
struct gen_params {
    bool stream, include_usage, ignore_eos;
    int64_t max_tokens; /* -1: not given */
    struct sampler_params sp;
    const struct json_value *stop;
};

/* ---- responses and errors ---- */

static void count_status(struct api *a, int status)
{
    a->c.requests[api__status_slot(status)]++;
}

static void respond(struct api *a, struct http_exchange *ex, int status, const char *ctype,
                    const char *body, size_t len)
{
    count_status(a, status);
    http_exchange_respond(ex, status, ctype, body, len);
}

/* Writes OpenAI's error object into w (the value of "error"). */
static void write_error_obj(struct json_writer *w, const char *type, const char *param,
                            const char *code, const char *msg)
{
    json_obj_begin(w);
    json_key(w, "message");
    json_cstr(w, msg);
    json_key(w, "type");
    json_cstr(w, type);
    json_key(w, "param");
    if (param != NULL)
        json_cstr(w, param);
    else
        json_null(w);
    json_key(w, "code");
    if (code != NULL)
        json_cstr(w, code);
    else
        json_null(w);
    json_obj_end(w);
}

static const char *type_of_status(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* Answers {"error":{...}} with status. */
static void api_error(struct api *a, struct http_exchange *ex, int status, const char *param,
                      const char *code, const char *fmt, ...) SLM_PRINTF(6, 7);
static void api_error(struct api *a, struct http_exchange *ex, int status, const char *param,
                      const char *code, const char *fmt, ...)
{
    char msg[512];
    struct slm_buf b;
    struct json_writer w;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    slm_buf_init(&b, 8192);
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "error");
    write_error_obj(&w, type_of_status(status), param, code, msg);
    json_obj_end(&w);
    if (json_writer_finish(&w) < 0) slm_buf_reset(&b);
    if (status == 401) http_exchange_add_header(ex, "WWW-Authenticate", "Bearer");
    if (status == 503 || status == 429) http_exchange_add_header(ex, "Retry-After", "1");
    respond(a, ex, status, "application/json", slm_buf_str(&b), b.len);
    slm_buf_fini(&b);
}

/* Answers 200 with the JSON in b, or 500 if the writer failed. */
static void respond_json(struct api *a, struct http_exchange *ex, struct json_writer *w,
                         struct slm_buf *b)
{
    if (json_writer_finish(w) < 0) {
        api_error(a, ex, 500, NULL, NULL, "response too large");
        return;
    }
    respond(a, ex, 200, "application/json", slm_buf_str(b), b->len);
}

/* Maps a diag from a typed getter to a 400 naming the field. */
static void bad_field(struct api *a, struct http_exchange *ex, const char *param,
                      const struct slm_diag *d)
{
    api_error(a, ex, 400, param, NULL, "%s", d->msg[0] != '\0' ? d->msg : "invalid value");
}

/* Parses the body as a JSON object; answers 400 itself on failure. */
static struct json_doc *parse_body(struct api *a, struct http_exchange *ex)
{
    struct json_doc *doc = NULL;
    struct slm_diag d;
    size_t len;
    const char *body = http_exchange_body(ex, &len);
    int rc;

    slm_diag_clear(&d);
    if (len == 0) {
        api_error(a, ex, 400, NULL, NULL, "the request body is empty; send a JSON object");
        return NULL;
    }
    rc = json_parse(body, len, NULL, &doc, NULL, &d);
    if (rc < 0) {
        if (rc == SLM_ENOMEM)
            api_error(a, ex, 503, NULL, NULL, "out of memory");
        else
            api_error(a, ex, 400, NULL, NULL, "invalid JSON body: %s", d.msg);
        return NULL;
    }
    if (json_doc_root(doc)->type != JSON_OBJECT) {
        api_error(a, ex, 400, NULL, NULL, "the request body must be a JSON object, got %s",
                  json_type_name((enum json_type)json_doc_root(doc)->type));
        json_doc_free(doc);
        return NULL;
    }
    return doc;
}

/* ---- tokenizing ---- */

/* Tokenizes text into a new array (*out, slm_free). */
static int tokenize(const struct api *a, const char *text, size_t len, unsigned flags, tok_id **out,
                    size_t *n)
{
    size_t cap = len + 16, need = 0;
    tok_id *t;
    int rc;

    *out = NULL;
    *n = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t bytes;

        if (!slm_mul_size(cap, sizeof(tok_id), &bytes)) return SLM_ELIMIT;
        t = slm_malloc(bytes);
        if (t == NULL) return SLM_ENOMEM;
        rc = tokenizer_encode(a->tok, text, len, flags, t, cap, &need);
        if (rc < 0) {
            slm_free(t);
            return rc;
        }
        if (need <= cap) {
            *out = t;
            *n = need;
            return 0;
        }
        slm_free(t);
        cap = need;
    }
    return SLM_EINTERNAL;
}

/* Prepends BOS when the model wants one and the prompt lacks it. */
static int ensure_bos(const struct api *a, tok_id **toks, size_t *n)
{
    tok_id bos = tokenizer_bos(a->tok), *t;
    size_t bytes;

    if (!a->add_bos || bos == TOK_NONE || (*n > 0 && (*toks)[0] == bos)) return 0;
    if (!slm_mul_size(*n + 1, sizeof(tok_id), &bytes)) return SLM_ELIMIT;
    t = slm_malloc(bytes);
    if (t == NULL) return SLM_ENOMEM;
    t[0] = bos;
    if (*n > 0) memcpy(t + 1, *toks, *n * sizeof(tok_id));
    slm_free(*toks);
    *toks = t;
    (*n)++;
    return 0;
}

/* ---- chat messages and the template ---- */

static bool role_ok(const char *r)
{
    static const char *const roles[] = { "system", "user",      "assistant",
                                         "tool",   "developer", "function" };

    for (size_t i = 0; i < SLM_ARRAY_LEN(roles); i++)
        if (strcmp(r, roles[i]) == 0) return true;
    return false;
}

/*
 * Writes messages[i].tool_calls (v) to w with each function.arguments that
 * is a JSON string holding an object turned into that object: OpenAI
 * clients send arguments as a string, and templates (Llama 3.1, Mistral)
 * apply |tojson to them. Other arguments are kept as they are. Returns 0
 * or SLM_EINVAL with d and param set.
 */
static int write_tool_calls(struct json_writer *w, const struct json_value *v, size_t i,
                            struct slm_diag *d, char *param, size_t param_cap)
{
    if (v->type == JSON_NULL) {
        json_null(w);
        return 0;
    }
    snprintf(param, param_cap, "messages[%zu].tool_calls", i);
    if (v->type != JSON_ARRAY)
        return slm_diag_set(d, SLM_EINVAL, "field '%s': expected array, got %s", param,
                            json_type_name((enum json_type)v->type));
    json_arr_begin(w);
    for (size_t j = 0; j < v->u.arr.n; j++) {
        const struct json_value *c = &v->u.arr.items[j], *fn;

        snprintf(param, param_cap, "messages[%zu].tool_calls[%zu]", i, j);
        if (c->type != JSON_OBJECT)
            return slm_diag_set(d, SLM_EINVAL, "field '%s': expected object, got %s", param,
                                json_type_name((enum json_type)c->type));
        fn = json_obj_get(c, "function");
        json_obj_begin(w);
        for (size_t k = 0; k < c->u.obj.n; k++) {
            const struct json_member *mem = &c->u.obj.members[k];

            json_key_n(w, mem->key, mem->key_len);
            if (&mem->value != fn || fn->type != JSON_OBJECT) {
                json_value_write(w, &mem->value);
                continue;
            }
            json_obj_begin(w);
            for (size_t f = 0; f < fn->u.obj.n; f++) {
                const struct json_member *fm = &fn->u.obj.members[f];
                struct json_doc *adoc = NULL;
                struct slm_diag ad;

                json_key_n(w, fm->key, fm->key_len);
                if (fm->key_len == 9 && memcmp(fm->key, "arguments", 9) == 0 &&
                    fm->value.type == JSON_STRING &&
                    json_parse(fm->value.u.str.ptr, fm->value.u.str.len, NULL, &adoc, NULL, &ad) ==
                        0 &&
                    json_doc_root(adoc)->type == JSON_OBJECT)
                    json_value_write(w, json_doc_root(adoc));
                else
                    json_value_write(w, &fm->value);
                json_doc_free(adoc);
            }
            json_obj_end(w);
        }
        json_obj_end(w);
    }
    json_arr_end(w);
    param[0] = '\0';
    return 0;
}

/*
 * Validates messages and writes them to w with content-part arrays joined
 * into one string (templates expect strings). On error fills d and *param
 * (static buffer) and returns SLM_EINVAL.
 */
static int write_messages(const struct json_value *msgs, struct json_writer *w, struct slm_diag *d,
                          char *param, size_t param_cap)
{
    size_t i, j, k;

    if (msgs == NULL || msgs->type == JSON_NULL) {
        snprintf(param, param_cap, "messages");
        return slm_diag_set(d, SLM_EINVAL, "field 'messages' is required");
    }
    if (msgs->type != JSON_ARRAY) {
        snprintf(param, param_cap, "messages");
        return slm_diag_set(d, SLM_EINVAL, "field 'messages': expected array, got %s",
                            json_type_name((enum json_type)msgs->type));
    }
    if (msgs->u.arr.n == 0) {
        snprintf(param, param_cap, "messages");
        return slm_diag_set(d, SLM_EINVAL, "field 'messages': must not be empty");
    }
    json_arr_begin(w);
    for (i = 0; i < msgs->u.arr.n; i++) {
        const struct json_value *m = &msgs->u.arr.items[i], *role, *content;
        char name[64];
        const char *rs;
        size_t rl;
        int rc;

        snprintf(name, sizeof(name), "messages[%zu]", i);
        snprintf(param, param_cap, "%s", name);
        if (m->type != JSON_OBJECT)
            return slm_diag_set(d, SLM_EINVAL, "field '%s': expected object, got %s", name,
                                json_type_name((enum json_type)m->type));
        role = json_obj_get(m, "role");
        snprintf(param, param_cap, "messages[%zu].role", i);
        rc = json_value_str(role, param, &rs, &rl, d);
        if (rc == SLM_ENOTFOUND)
            return slm_diag_set(d, SLM_EINVAL, "field '%s' is required", param);
        if (rc < 0) return SLM_EINVAL;
        if (!role_ok(rs))
            return slm_diag_set(d, SLM_EINVAL,
                                "field '%s': unknown role '%.32s' (system, user, assistant, tool)",
                                param, rs);
        content = json_obj_get(m, "content");
        snprintf(param, param_cap, "messages[%zu].content", i);
        if (content != NULL && content->type != JSON_STRING && content->type != JSON_ARRAY &&
            content->type != JSON_NULL)
            return slm_diag_set(d, SLM_EINVAL, "field '%s': expected string or array, got %s",
                                param, json_type_name((enum json_type)content->type));
        json_obj_begin(w);
        for (k = 0; k < m->u.obj.n; k++) {
            const struct json_member *mem = &m->u.obj.members[k];

            json_key_n(w, mem->key, mem->key_len);
            if (mem->key_len == 10 && memcmp(mem->key, "tool_calls", 10) == 0) {
                rc = write_tool_calls(w, &mem->value, i, d, param, param_cap);
                if (rc < 0) return rc;
                continue;
            }
            if (&mem->value != content || content->type != JSON_ARRAY) {
                json_value_write(w, &mem->value);
                continue;
            }
            /* Join the text parts. */
            {
                struct slm_buf joined;
                int jrc = 0;

                slm_buf_init(&joined, API_PROMPT_MAX);
                for (j = 0; j < content->u.arr.n; j++) {
                    const struct json_value *part = &content->u.arr.items[j];
                    const char *ts, *tx;
                    size_t tl, xl;
                    char pname[96];

                    snprintf(param, param_cap, "messages[%zu].content[%zu].type", i, j);
                    if (part->type != JSON_OBJECT) {
                        jrc = slm_diag_set(d, SLM_EINVAL,
                                           "field 'messages[%zu].content[%zu]': "
                                           "expected object, got %s",
                                           i, j, json_type_name((enum json_type)part->type));
                        break;
                    }
                    jrc = json_value_str(json_obj_get(part, "type"), param, &ts, &tl, d);
                    if (jrc < 0) {
                        if (jrc == SLM_ENOTFOUND)
                            slm_diag_set(d, SLM_EINVAL, "field '%s' is required", param);
                        jrc = SLM_EINVAL;
                        break;
                    }
                    if (strcmp(ts, "text") != 0) {
                        jrc = slm_diag_set(d, SLM_EINVAL,
                                           "field '%s': content part type '%.32s' is not "
                                           "supported (only 'text')",
                                           param, ts);
                        break;
                    }
                    snprintf(pname, sizeof(pname), "messages[%zu].content[%zu].text", i, j);
                    snprintf(param, param_cap, "%s", pname);
                    jrc = json_value_str(json_obj_get(part, "text"), pname, &tx, &xl, d);
                    if (jrc < 0) {
                        if (jrc == SLM_ENOTFOUND)
                            slm_diag_set(d, SLM_EINVAL, "field '%s' is required", pname);
                        jrc = SLM_EINVAL;
                        break;
                    }
                    if (slm_buf_append(&joined, tx, xl) < 0) {
                        jrc = slm_diag_set(d, SLM_ELIMIT, "field '%s': too long", pname);
                        break;
                    }
                }
                if (jrc == 0) json_str(w, slm_buf_str(&joined), joined.len);
                slm_buf_fini(&joined);
                if (jrc < 0) return jrc;
            }
        }
        json_obj_end(w);
    }
    json_arr_end(w);
    param[0] = '\0';
    return 0;
}

/* ---- tools and tool_choice ---- */

enum tool_choice { TOOL_CHOICE_AUTO, TOOL_CHOICE_NONE, TOOL_CHOICE_REQUIRED, TOOL_CHOICE_NAMED };

/*
 * Validates tools: null, or an array of {"type": "function", "function":
 * {"name": string, "description"?: string, "parameters"?: object}}.
 * Returns 0 or SLM_EINVAL with d and param (the field's path) set.
 */
static int check_tools(const struct json_value *tools, struct slm_diag *d, char *param,
                       size_t param_cap)
{
    snprintf(param, param_cap, "tools");
    if (tools == NULL || tools->type == JSON_NULL) return 0;
    if (tools->type != JSON_ARRAY)
        return slm_diag_set(d, SLM_EINVAL, "field 'tools': expected array, got %s",
                            json_type_name((enum json_type)tools->type));
    for (size_t i = 0; i < tools->u.arr.n; i++) {
        const struct json_value *t = &tools->u.arr.items[i], *ty, *fn, *v;

        snprintf(param, param_cap, "tools[%zu]", i);
        if (t->type != JSON_OBJECT)
            return slm_diag_set(d, SLM_EINVAL, "field '%s': expected object, got %s", param,
                                json_type_name((enum json_type)t->type));
        ty = json_obj_get(t, "type");
        snprintf(param, param_cap, "tools[%zu].type", i);
        if (ty == NULL || ty->type != JSON_STRING || strcmp(ty->u.str.ptr, "function") != 0)
            return slm_diag_set(d, SLM_EINVAL, "field '%s': must be \"function\"", param);
        fn = json_obj_get(t, "function");
        snprintf(param, param_cap, "tools[%zu].function", i);
        if (fn == NULL) return slm_diag_set(d, SLM_EINVAL, "field '%s' is required", param);
        if (fn->type != JSON_OBJECT)
            return slm_diag_set(d, SLM_EINVAL, "field '%s': expected object, got %s", param,
                                json_type_name((enum json_type)fn->type));
        v = json_obj_get(fn, "name");
        snprintf(param, param_cap, "tools[%zu].function.name", i);
        if (v == NULL) return slm_diag_set(d, SLM_EINVAL, "field '%s' is required", param);
        if (v->type != JSON_STRING || v->u.str.len == 0)
            return slm_diag_set(d, SLM_EINVAL, "field '%s': expected a non-empty string", param);
        v = json_obj_get(fn, "description");
        snprintf(param, param_cap, "tools[%zu].function.description", i);
        if (v != NULL && v->type != JSON_STRING && v->type != JSON_NULL)
            return slm_diag_set(d, SLM_EINVAL, "field '%s': expected string, got %s", param,
                                json_type_name((enum json_type)v->type));
        v = json_obj_get(fn, "parameters");
        snprintf(param, param_cap, "tools[%zu].function.parameters", i);
        if (v != NULL && v->type != JSON_OBJECT && v->type != JSON_NULL)
            return slm_diag_set(d, SLM_EINVAL, "field '%s': expected object, got %s", param,
                                json_type_name((enum json_type)v->type));
    }
    param[0] = '\0';
    return 0;
}

/*
 * Reads tool_choice: absent/null (auto), "none", "auto", "required", or
 * {"type": "function", "function": {"name": one of tools}}. Returns 0 or
 * SLM_EINVAL with d and param set.
 */
static int check_tool_choice(const struct json_value *tc, const struct json_value *tools,
                             enum tool_choice *out, struct slm_diag *d, char *param,
                             size_t param_cap)
{
    const struct json_value *ty, *fn, *name;

    *out = TOOL_CHOICE_AUTO;
    snprintf(param, param_cap, "tool_choice");
    if (tc == NULL || tc->type == JSON_NULL) return 0;
    if (tc->type == JSON_STRING) {
        if (strcmp(tc->u.str.ptr, "auto") == 0) return 0;
        if (strcmp(tc->u.str.ptr, "none") == 0) {
            *out = TOOL_CHOICE_NONE;
            return 0;
        }
        if (strcmp(tc->u.str.ptr, "required") == 0) {
            *out = TOOL_CHOICE_REQUIRED;
            return 0;
        }
        return slm_diag_set(d, SLM_EINVAL,
                            "field 'tool_choice': unknown value '%.32s' (none, auto, required, "
                            "or {\"type\": \"function\", \"function\": {\"name\": ...}})",
                            tc->u.str.ptr);
    }
    if (tc->type != JSON_OBJECT)
        return slm_diag_set(d, SLM_EINVAL, "field 'tool_choice': expected string or object, got %s",
                            json_type_name((enum json_type)tc->type));
    ty = json_obj_get(tc, "type");
    if (ty == NULL || ty->type != JSON_STRING || strcmp(ty->u.str.ptr, "function") != 0) {
        snprintf(param, param_cap, "tool_choice.type");
        return slm_diag_set(d, SLM_EINVAL, "field 'tool_choice.type': must be \"function\"");
    }
    fn = json_obj_get(tc, "function");
    name = json_obj_get(fn, "name");
    snprintf(param, param_cap, "tool_choice.function.name");
    if (name == NULL || name->type != JSON_STRING)
        return slm_diag_set(d, SLM_EINVAL, "field 'tool_choice.function.name' is required");
    for (size_t i = 0; tools != NULL && tools->type == JSON_ARRAY && i < tools->u.arr.n; i++) {
        const struct json_value *n =
            json_obj_get(json_obj_get(&tools->u.arr.items[i], "function"), "name");

        if (json_value_equal(n, name)) {
            *out = TOOL_CHOICE_NAMED;
            return 0;
        }
    }
    return slm_diag_set(d, SLM_EINVAL,
                        "field 'tool_choice.function.name': '%.64s' is not one of 'tools'",
                        name->u.str.ptr);
}

/*
 * Renders the chat prompt for root's messages (and tools) into out; sets
 * *parse_tools (may be NULL) when the reply must go through the tool-call
 * parser. Returns 0, or answers the error itself and returns < 0.
 */
static int render_chat(struct api *a, struct http_exchange *ex, const struct json_value *root,
                       bool add_generation_prompt, struct slm_buf *out, bool *parse_tools)
{
    struct slm_buf norm;
    struct json_writer w;
    struct json_doc *mdoc = NULL;
    struct chat_render_params rp;
    const struct json_value *tools, *kwargs;
    enum tool_choice choice;
    struct slm_diag d;
    char param[96];
    int rc;

    if (parse_tools != NULL) *parse_tools = false;
    slm_diag_clear(&d);
    param[0] = '\0';
    slm_buf_init(&norm, API_RESP_MAX);
    json_writer_init(&w, &norm, false);
    rc = write_messages(json_obj_get(root, "messages"), &w, &d, param, sizeof(param));
    if (rc < 0) {
        bad_field(a, ex, param, &d);
        goto out;
    }
    rc = json_writer_finish(&w);
    if (rc == 0) rc = json_parse(norm.data, norm.len, NULL, &mdoc, NULL, &d);
    if (rc < 0) {
        api_error(a, ex, rc == SLM_ENOMEM ? 503 : 400, "messages", NULL,
                  "field 'messages': too large");
        goto out;
    }
    tools = json_obj_get(root, "tools");
    rc = check_tools(tools, &d, param, sizeof(param));
    if (rc == 0)
        rc = check_tool_choice(json_obj_get(root, "tool_choice"), tools, &choice, &d, param,
                               sizeof(param));
    if (rc < 0) {
        bad_field(a, ex, param, &d);
        goto out;
    }
    /* With tool_choice "none" the template does not offer the tools at all. */
    if (choice == TOOL_CHOICE_NONE) tools = NULL;
    kwargs = json_obj_get(root, "chat_template_kwargs");
    if (kwargs != NULL && kwargs->type != JSON_NULL && kwargs->type != JSON_OBJECT) {
        rc = SLM_EINVAL;
        api_error(a, ex, 400, "chat_template_kwargs", NULL,
                  "field 'chat_template_kwargs': expected object, got %s",
                  json_type_name((enum json_type)kwargs->type));
        goto out;
    }
    if (a->p.tmpl == NULL) {
        rc = SLM_EINTERNAL;
        api_error(a, ex, 500, NULL, NULL, "the server has no chat template");
        goto out;
    }
    memset(&rp, 0, sizeof(rp));
    rp.messages = json_doc_root(mdoc);
    rp.tools = (tools != NULL && tools->type == JSON_ARRAY && tools->u.arr.n > 0) ? tools : NULL;
    if (parse_tools != NULL) *parse_tools = rp.tools != NULL && a->tc_fmt != CHAT_TOOLCALL_NONE;
    rp.add_generation_prompt = add_generation_prompt;
    rp.bos_token = a->bos_text;
    rp.eos_token = a->eos_text;
    rp.extra = (kwargs != NULL && kwargs->type == JSON_OBJECT) ? kwargs : NULL;
    slm_diag_clear(&d);
    rc = chat_template_render(a->p.tmpl, &rp, out, &d);
    if (rc < 0) {
        if (rc == SLM_EINVAL)
            api_error(a, ex, 400, "messages", NULL, "chat template: %s", d.msg);
        else if (rc == SLM_ENOMEM)
            api_error(a, ex, 503, NULL, NULL, "out of memory");
        else
            api_error(a, ex, 500, NULL, NULL, "chat template failed: %s",
                      d.msg[0] ? d.msg : slm_strerror(rc));
    }
out:
    json_doc_free(mdoc);
    slm_buf_fini(&norm);
    return rc;
}

/* ---- generation parameters ---- */

/* Reads an optional number into *out. Returns 0 or < 0 with d and *param set. */
static int opt_float(const struct json_value *root, const char *key, double min, double max,
                     float *out, struct slm_diag *d, const char **param)
{
    double v;
    int rc = json_get_double(root, key, min, max, &v, d);

    if (rc == SLM_ENOTFOUND) return 0;
    if (rc < 0) {
        *param = key;
        return rc;
    }
    *out = (float)v;
    return 0;
}

static int opt_bool(const struct json_value *root, const char *key, bool *out, struct slm_diag *d,
                    const char **param)
{
    int rc = json_get_bool(root, key, out, d);

    if (rc == SLM_ENOTFOUND) return 0;
    if (rc < 0) *param = key;
    return rc;
}

/* Validates the fields shared by chat and completions. */
static int parse_gen(const struct api *a, const struct json_value *root, struct gen_params *g,
                     struct slm_diag *d, const char **param)
{
    const struct json_value *v;
    int64_t i64;
    bool b = false;
    int rc;

    memset(g, 0, sizeof(*g));
    g->max_tokens = -1;
    g->sp = sampler_params_default();
    *param = NULL;

    v = json_obj_get(root, "model");
    if (v != NULL && v->type != JSON_NULL && v->type != JSON_STRING) {
        *param = "model";
        return slm_diag_set(d, SLM_EINVAL, "field 'model': expected string, got %s",
                            json_type_name((enum json_type)v->type));
    }
    if ((rc = opt_bool(root, "stream", &g->stream, d, param)) < 0) return rc;
    v = json_obj_get(root, "stream_options");
    if (v != NULL && v->type != JSON_NULL) {
        if (v->type != JSON_OBJECT) {
            *param = "stream_options";
            return slm_diag_set(d, SLM_EINVAL, "field 'stream_options': expected object, got %s",
                                json_type_name((enum json_type)v->type));
        }
        rc = json_get_bool(v, "include_usage", &g->include_usage, d);
        if (rc < 0 && rc != SLM_ENOTFOUND) {
            *param = "stream_options.include_usage";
            return rc;
        }
    }
    if ((rc = opt_float(root, "temperature", 0, 2, &g->sp.temp, d, param)) < 0) return rc;
    if ((rc = opt_float(root, "top_p", 0, 1, &g->sp.top_p, d, param)) < 0) return rc;
    if ((rc = opt_float(root, "min_p", 0, 1, &g->sp.min_p, d, param)) < 0) return rc;
    if ((rc = opt_float(root, "presence_penalty", -2, 2, &g->sp.presence_penalty, d, param)) < 0)
        return rc;
    if ((rc = opt_float(root, "frequency_penalty", -2, 2, &g->sp.frequency_penalty, d, param)) < 0)
        return rc;
    if ((rc = opt_float(root, "repeat_penalty", 0.01, SAMPLER_PENALTY_MAX, &g->sp.repeat_penalty, d,
                        param)) < 0)
        return rc;
    rc = json_get_int(root, "top_k", 0, (int64_t)tokenizer_n_vocab(a->tok), &i64, d);
    if (rc == 0) g->sp.top_k = (int32_t)i64;
    if (rc < 0 && rc != SLM_ENOTFOUND) {
        *param = "top_k";
        return rc;
    }
    rc = json_get_int(root, "seed", INT64_MIN, INT64_MAX, &i64, d);
    if (rc == 0) g->sp.seed = i64 < 0 ? SAMPLER_SEED_RANDOM : (uint64_t)i64;
    if (rc < 0 && rc != SLM_ENOTFOUND) {
        *param = "seed";
        return rc;
    }
    rc = json_get_int(root, "max_completion_tokens", 1, SLM_LIMIT_CONTEXT, &i64, d);
    if (rc == SLM_ENOTFOUND) {
        rc = json_get_int(root, "max_tokens", 1, SLM_LIMIT_CONTEXT, &i64, d);
        if (rc < 0 && rc != SLM_ENOTFOUND) *param = "max_tokens";
    } else if (rc < 0) {
        *param = "max_completion_tokens";
    }
    if (rc == 0) g->max_tokens = i64;
    if (rc < 0 && rc != SLM_ENOTFOUND) return rc;
    rc = json_get_int(root, "n", 1, 128, &i64, d);
    if (rc < 0 && rc != SLM_ENOTFOUND) {
        *param = "n";
        return rc;
    }
    if (rc == 0 && i64 != 1) {
        *param = "n";
        return slm_diag_set(d, SLM_EINVAL, "field 'n': only n = 1 is supported, got %lld",
                            (long long)i64);
    }
    if ((rc = opt_bool(root, "logprobs", &b, d, param)) < 0) return rc;
    if (b) {
        *param = "logprobs";
        return slm_diag_set(d, SLM_EINVAL,
                            "field 'logprobs': log probabilities are not "
                            "supported by this server");
    }
    if ((rc = opt_bool(root, "ignore_eos", &g->ignore_eos, d, param)) < 0) return rc;
    v = json_obj_get(root, "stop");
    if (v != NULL && v->type != JSON_NULL) {
        size_t n = v->type == JSON_ARRAY ? v->u.arr.n : 1;

        *param = "stop";
        if (v->type != JSON_STRING && v->type != JSON_ARRAY)
            return slm_diag_set(d, SLM_EINVAL, "field 'stop': expected string or array, got %s",
                                json_type_name((enum json_type)v->type));
        if (n > API_STOP_MAX)
            return slm_diag_set(d, SLM_EINVAL, "field 'stop': %zu stop strings, at most %u", n,
                                API_STOP_MAX);
        for (size_t i = 0; i < n; i++) {
            const struct json_value *s = v->type == JSON_ARRAY ? &v->u.arr.items[i] : v;

            if (s->type != JSON_STRING)
                return slm_diag_set(d, SLM_EINVAL, "field 'stop[%zu]': expected string, got %s", i,
                                    json_type_name((enum json_type)s->type));
            if (s->u.str.len == 0 || s->u.str.len > API_STOP_BYTES_MAX)
                return slm_diag_set(d, SLM_EINVAL,
                                    "field 'stop[%zu]': length %zu is out of range [1, %u]", i,
                                    s->u.str.len, API_STOP_BYTES_MAX);
        }
        g->stop = v;
        *param = NULL;
    }
    if ((rc = sampler_params_check(&g->sp, d)) < 0) return rc;
    return 0;
}

/* ---- requests in flight ---- */

static void req_free(struct api_req *r)
{
    for (size_t i = 0; i < r->n_stops; i++)
        slm_free(r->stops[i]);
    slm_free(r->stops);
    slm_buf_fini(&r->text);
    chat_toolcall_parser_free(r->tcp);
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

static void write_head_fields(struct json_writer *w, const struct api_req *r, const char *object)
{
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
}

/*
 * Appends one stream chunk: content text[0..len) (NULL: none) or a parser
 * delta (call, NULL: none), role (first chat chunk), finish reason (NULL:
 * null), or the usage-only chunk. Returns 0 or SLM_ELIMIT/SLM_ENOMEM.
 */
static int put_chunk(struct api_req *r, const char *text, size_t len, const struct chat_delta *call,
                     bool role, const char *finish, bool usage_chunk, uint32_t n_gen)
{
    struct slm_buf b;
    struct json_writer w;
    bool chat = r->kind == API_KIND_CHAT;
    int rc;

    slm_buf_init(&b, API_RESP_MAX);
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    write_head_fields(&w, r, chat ? "chat.completion.chunk" : "text_completion");
    json_key(&w, "choices");
    json_arr_begin(&w);
    if (!usage_chunk) {
        json_obj_begin(&w);
        json_key(&w, "index");
        json_int(&w, 0);
        if (chat) {
            json_key(&w, "delta");
            json_obj_begin(&w);
            if (role) {
                json_key(&w, "role");
                json_cstr(&w, "assistant");
            }
            if (text != NULL) {
                json_key(&w, "content");
                json_str(&w, text, len);
            }
            if (call != NULL) api__tool_delta_write(&w, call);
            json_obj_end(&w);
        } else {
            json_key(&w, "text");
            json_str(&w, text != NULL ? text : "", text != NULL ? len : 0);
        }
        json_key(&w, "logprobs");
        json_null(&w);
        json_key(&w, "finish_reason");
        if (finish != NULL)
            json_cstr(&w, finish);
        else
            json_null(&w);
        json_obj_end(&w);
    }
    json_arr_end(&w);
    if (usage_chunk) {
        write_usage(&w, r, n_gen);
    } else if (r->include_usage) {
        json_key(&w, "usage");
        json_null(&w);
    }
    json_obj_end(&w);
    rc = json_writer_finish(&w);
    if (rc == 0) rc = http_sse_data(r->sse, b.data, b.len);
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
    write_error_obj(&w, type, NULL, NULL, msg);
    json_obj_end(&w);
    rc = json_writer_finish(&w);
    if (rc == 0) rc = http_sse_data(r->sse, b.data, b.len);
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
    return put_chunk(arg, NULL, 0, d, false, NULL, false, 0);
}

/*
 * Streams the text that can no longer be part of a stop string; with a
 * tool-call parser the text goes through it and its deltas are streamed.
 */
static void stream_pending(struct api_req *r, bool final)
{
    size_t end = r->text.len;

    if (r->ex == NULL || !r->stream) return;
    if (!final && !r->stop_hit) end -= holdback(r);
    if (end <= r->sent) return;
    if (r->tcp != NULL) {
        size_t from = r->sent;

        /* The parser has taken the text even if a chunk could not be queued. */
        r->sent = end;
        if (chat_toolcall_feed(r->tcp, r->text.data + from, end - from, stream_delta, r) < 0)
            return;
    } else if (put_chunk(r, r->text.data + r->sent, end - r->sent, NULL, false, NULL, false, 0) <
               0) {
        return;
    }
    r->sent = end;
    if (http_exchange_stream_flush(r->ex) < 0) {
        /* the exchange is gone: on_abort already ran */
    }
}

static void on_token(struct api_req *r, tok_id token)
{
    size_t old = r->text.len;

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

static const char *finish_reason(const struct api_req *r, const struct sched_event *ev)
{
    if (r->stop_hit) return "stop";
    if (r->text_full) return "length";
    if (ev->finish == SCHED_FINISH_EOG) return "stop";
    if (ev->finish == SCHED_FINISH_LENGTH) return "length";
    return NULL;
}

/* Sends the non-streaming response. */
static void respond_final(struct api_req *r, const char *finish, uint32_t n_gen,
                          const struct api_tool_msg *tm)
{
    struct api *a = r->a;
    struct slm_buf b;
    struct json_writer w;
    bool chat = r->kind == API_KIND_CHAT;

    slm_buf_init(&b, API_RESP_MAX);
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    write_head_fields(&w, r, chat ? "chat.completion" : "text_completion");
    json_key(&w, "choices");
    json_arr_begin(&w);
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
    respond_json(a, r->ex, &w, &b);
    slm_buf_fini(&b);
}

static void on_done(struct api_req *r, const struct sched_event *ev)
{
    struct api *a = r->a;
    const char *finish;
    struct api_tool_msg tm;
    bool tm_ok = false;
    uint64_t ms = (slm_now_ns() - r->t_start_ns) / 1000000u;

    if (ev->n_prompt > 0) r->n_prompt = ev->n_prompt;
    r->n_cached = ev->n_cached;
    if (!r->stop_hit && !r->text_full && !r->client_gone) {
        size_t old = r->text.len;

        if (tok_stream_flush(&r->ts, &r->text) < 0) r->text_full = true;
        check_stop(r, old);
    }
    finish = finish_reason(r, ev);
    api__tool_msg_init(&tm);
    if (finish != NULL && r->tcp != NULL && r->ex != NULL) {
        /* The parser sees the whole reply before the finish reason is chosen. */
        if (r->stream) {
            stream_pending(r, true);
            if (r->ex != NULL && chat_toolcall_finish(r->tcp, stream_delta, r) < 0)
                log_info("request id=%s: tool-call deltas lost (stream buffer full)", r->id);
        } else {
            tm_ok = chat_toolcall_feed(r->tcp, r->text.data, r->text.len, api__tool_msg_add, &tm) ==
                        0 &&
                    chat_toolcall_finish(r->tcp, api__tool_msg_add, &tm) == 0;
            if (!tm_ok) {
                /* Out of memory or over a cap: the plain text is still a valid reply. */
                api__tool_msg_fini(&tm);
                api__tool_msg_init(&tm);
            }
        }
        if (chat_toolcall_count(r->tcp) > 0 && (r->stream || tm_ok)) finish = "tool_calls";
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
        bool ok = true;

        stream_pending(r, true);
        if (r->ex != NULL) {
            if (finish != NULL) {
                ok = put_chunk(r, NULL, 0, NULL, false, finish, false, 0) == 0;
                if (ok && r->include_usage)
                    ok = put_chunk(r, NULL, 0, NULL, false, NULL, true, ev->n_generated) == 0;
            } else if (ev->finish == SCHED_FINISH_ERROR) {
                ok = put_error_event(r, "server_error",
                                     ev->msg[0] ? ev->msg : "generation failed") == 0;
            } else {
                ok = put_error_event(r, "server_error",
                                     "the request was canceled: the server is shutting down") == 0;
            }
            if (ok) ok = http_sse_done(r->sse) == 0;
            a->c.streams_active--;
            http_exchange_stream_end(r->ex);
        }
    } else if (r->ex != NULL) {
        if (finish != NULL)
            respond_final(r, finish, ev->n_generated, tm_ok ? &tm : NULL);
        else if (ev->finish == SCHED_FINISH_ERROR)
            api_error(a, r->ex, 500, NULL, NULL, "generation failed: %s",
                      ev->msg[0] ? ev->msg : slm_strerror(ev->err));
        else
            api_error(a, r->ex, 503, NULL, NULL,
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
 * Checks the context, builds and submits the request (takes toks). Answers
 * errors itself. On success the request lives until its DONE event.
 */
static void submit(struct api *a, struct http_exchange *ex, enum api_kind kind,
                   const struct gen_params *g, bool parse_tools, tok_id *toks, size_t n_toks)
{
    struct api_req *r = NULL;
    struct sched_request sr;
    struct slm_diag d;
    int64_t n_predict;
    int rc;

    if (n_toks == 0) {
        api_error(a, ex, 400, kind == API_KIND_CHAT ? "messages" : "prompt", NULL,
                  "the prompt is empty");
        goto out;
    }
    if (n_toks >= a->n_ctx) {
        a->c.context_exceeded++;
        api_error(a, ex, 400, kind == API_KIND_CHAT ? "messages" : "prompt",
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

    r = slm_calloc(1, sizeof(*r));
    if (r == NULL) {
        api_error(a, ex, 503, NULL, NULL, "out of memory");
        goto out;
    }
    r->a = a;
    r->ex = ex;
    r->kind = kind;
    r->stream = g->stream;
    r->include_usage = g->stream && g->include_usage;
    r->created = (int64_t)time(NULL);
    r->n_prompt = (uint32_t)n_toks;
    r->t_start_ns = slm_now_ns();
    make_id(r->id, sizeof(r->id), kind == API_KIND_CHAT ? "chatcmpl-" : "cmpl-");
    slm_buf_init(&r->text, API_TEXT_MAX);
    /* Tool-call markers such as [TOOL_CALLS] are special tokens: render them. */
    tok_stream_init(&r->ts, a->tok, parse_tools);
    slm_diag_clear(&d);
    if (parse_tools) {
        rc = chat_toolcall_parser_new(a->tc_fmt, 0, &r->tcp, &d);
        if (rc < 0) {
            api_error(a, ex, rc == SLM_ENOMEM ? 503 : 500, NULL, NULL, "%s",
                      d.msg[0] ? d.msg : slm_strerror(rc));
            goto out;
        }
    }
    r->done_task.cb = on_done_task;
    r->done_task.data = r;
    if (g->stop != NULL) {
        size_t n = g->stop->type == JSON_ARRAY ? g->stop->u.arr.n : 1;

        r->stops = slm_calloc(n > 0 ? n : 1, sizeof(char *));
        if (r->stops == NULL) {
            api_error(a, ex, 503, NULL, NULL, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            const struct json_value *s =
                g->stop->type == JSON_ARRAY ? &g->stop->u.arr.items[i] : g->stop;

            if (memchr(s->u.str.ptr, '\0', s->u.str.len) != NULL) continue; /* never matches */
            r->stops[r->n_stops] = slm_strndup(s->u.str.ptr, s->u.str.len);
            if (r->stops[r->n_stops] == NULL) {
                api_error(a, ex, 503, NULL, NULL, "out of memory");
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
    slm_diag_clear(&d);
    rc = sched_submit(a->p.sched, &sr, &r->sched_id, &d);
    if (rc < 0) {
        if (rc == SLM_ELIMIT) {
            a->c.queue_full++;
            api_error(a, ex, 503, NULL, NULL,
                      "the server is busy: every slot is taken and the queue is full; retry "
                      "later");
        } else if (rc == SLM_ERANGE) {
            a->c.context_exceeded++;
            api_error(a, ex, 400, kind == API_KIND_CHAT ? "messages" : "prompt",
                      "context_length_exceeded",
                      "This model's maximum context length is %u tokens. However, your request "
                      "resulted in %zu tokens. %s",
                      a->n_ctx, n_toks, d.msg);
        } else if (rc == SLM_EINVAL) {
            api_error(a, ex, 400, NULL, NULL, "%s", d.msg[0] ? d.msg : "invalid request");
        } else {
            api_error(a, ex, rc == SLM_ENOMEM ? 503 : 500, NULL, NULL, "%s",
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
            api_error(a, ex, 503, NULL, NULL, "out of memory");
            r = NULL;
            goto out;
        }
        count_status(a, 200);
        a->c.streams_active++;
        if (kind == API_KIND_CHAT) {
            if (put_chunk(r, "", 0, NULL, true, NULL, false, 0) == 0 &&
                http_exchange_stream_flush(ex) < 0) {
                /* the client is gone: on_abort ran, DONE frees r */
            }
        }
    }
    r = NULL;
out:
    if (r != NULL) req_free(r);
    slm_free(toks);
}

/* ---- endpoints ---- */

static void h_health(void *arg, struct http_exchange *ex)
{
    static const char ok[] = "{\"status\":\"ok\"}";

    respond(arg, ex, 200, "application/json", ok, sizeof(ok) - 1);
}

static void h_models(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    const struct model_hparams *hp = model_get_hparams(a->p.model);
    struct slm_buf b;
    struct json_writer w;

    slm_buf_init(&b, 65536);
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "object");
    json_cstr(&w, "list");
    json_key(&w, "data");
    json_arr_begin(&w);
    json_obj_begin(&w);
    json_key(&w, "id");
    json_cstr(&w, a->p.alias);
    json_key(&w, "object");
    json_cstr(&w, "model");
    json_key(&w, "created");
    json_int(&w, a->created);
    json_key(&w, "owned_by");
    json_cstr(&w, "slm");
    json_key(&w, "context_length");
    json_uint(&w, a->n_ctx);
    json_key(&w, "meta");
    json_obj_begin(&w);
    json_key(&w, "n_ctx_train");
    json_uint(&w, hp->n_ctx_train);
    json_key(&w, "n_vocab");
    json_uint(&w, hp->n_vocab);
    json_key(&w, "n_embd");
    json_uint(&w, hp->n_embd);
    json_key(&w, "n_params");
    json_uint(&w, model_n_params(a->p.model));
    json_key(&w, "size");
    json_uint(&w, model_weight_bytes(a->p.model));
    json_key(&w, "description");
    json_cstr(&w, model_describe(a->p.model));
    json_obj_end(&w);
    json_obj_end(&w);
    json_arr_end(&w);
    json_obj_end(&w);
    respond_json(a, ex, &w, &b);
    slm_buf_fini(&b);
}

static void h_metrics(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct slm_buf b;

    slm_buf_init(&b, 1u << 20);
    if (api__metrics_write(a, &b) < 0)
        api_error(a, ex, 500, NULL, NULL, "metrics too large");
    else
        respond(a, ex, 200, "text/plain; version=0.0.4; charset=utf-8", slm_buf_str(&b), b.len);
    slm_buf_fini(&b);
}

static void h_chat(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct json_doc *doc = parse_body(a, ex);
    const struct json_value *root;
    struct gen_params g;
    struct slm_diag d;
    struct slm_buf prompt;
    const char *param = NULL;
    tok_id *toks = NULL;
    size_t n = 0;
    bool parse_tools = false;
    int rc;

    if (doc == NULL) return;
    root = json_doc_root(doc);
    slm_buf_init(&prompt, API_PROMPT_MAX);
    slm_diag_clear(&d);
    rc = parse_gen(a, root, &g, &d, &param);
    if (rc < 0) {
        bad_field(a, ex, param, &d);
        goto out;
    }
    if (render_chat(a, ex, root, true, &prompt, &parse_tools) < 0) goto out;
    rc = tokenize(a, prompt.data, prompt.len, TOKENIZE_PARSE_SPECIAL, &toks, &n);
    if (rc == 0) rc = ensure_bos(a, &toks, &n);
    if (rc < 0) {
        api_error(a, ex, rc == SLM_ENOMEM ? 503 : 500, NULL, NULL, "tokenizing failed: %s",
                  slm_strerror(rc));
        goto out;
    }
    submit(a, ex, API_KIND_CHAT, &g, parse_tools, toks, n);
    toks = NULL;
out:
    slm_free(toks);
    slm_buf_fini(&prompt);
    json_doc_free(doc);
}

/* Reads "prompt" of /v1/completions into tokens (string, [string], [ints], [[ints]]). */
static int completion_prompt(struct api *a, const struct json_value *root, tok_id **toks, size_t *n,
                             struct slm_diag *d, const char **param)
{
    const struct json_value *p = json_obj_get(root, "prompt"), *sfx = json_obj_get(root, "suffix");
    const char *s = NULL, *x = NULL;
    size_t sl = 0, xl = 0;
    int rc;

    *param = "prompt";
    if (p == NULL || p->type == JSON_NULL)
        return slm_diag_set(d, SLM_EINVAL, "field 'prompt' is required");
    if (p->type == JSON_ARRAY && p->u.arr.n == 1 &&
        (p->u.arr.items[0].type == JSON_STRING || p->u.arr.items[0].type == JSON_ARRAY))
        p = &p->u.arr.items[0];
    if (p->type == JSON_ARRAY) {
        size_t bytes, i;

        if (p->u.arr.n > 0 && p->u.arr.items[0].type == JSON_STRING)
            return slm_diag_set(d, SLM_EINVAL,
                                "field 'prompt': several prompts in one request are not "
                                "supported; send one string");
        if (p->u.arr.n == 0) return slm_diag_set(d, SLM_EINVAL, "field 'prompt' is empty");
        if (!slm_mul_size(p->u.arr.n, sizeof(tok_id), &bytes)) return SLM_ELIMIT;
        *toks = slm_malloc(bytes);
        if (*toks == NULL) return SLM_ENOMEM;
        for (i = 0; i < p->u.arr.n; i++) {
            char name[48];
            int64_t v;

            snprintf(name, sizeof(name), "prompt[%zu]", i);
            rc = json_value_int(&p->u.arr.items[i], name, 0, (int64_t)tokenizer_n_vocab(a->tok) - 1,
                                &v, d);
            if (rc < 0) {
                slm_free(*toks);
                *toks = NULL;
                return SLM_EINVAL;
            }
            (*toks)[i] = (tok_id)v;
        }
        *n = p->u.arr.n;
        if (sfx != NULL && sfx->type != JSON_NULL) {
            *param = "suffix";
            slm_free(*toks);
            *toks = NULL;
            return slm_diag_set(d, SLM_EINVAL, "field 'suffix' needs a text prompt");
        }
        return 0;
    }
    rc = json_value_str(p, "prompt", &s, &sl, d);
    if (rc < 0) return SLM_EINVAL;
    rc = json_value_str(sfx, "suffix", &x, &xl, d);
    if (rc == SLM_EINVAL || rc == SLM_ERANGE) {
        *param = "suffix";
        return SLM_EINVAL;
    }
    if (rc == SLM_ENOTFOUND) {
        /* A plain continuation: the model's BOS, user text without control tokens. */
        return tokenize(a, s, sl, TOKENIZE_ADD_SPECIAL, toks, n);
    }
    if (a->fim_pre == TOK_NONE || a->fim_suf == TOK_NONE || a->fim_mid == TOK_NONE) {
        *param = "suffix";
        return slm_diag_set(d, SLM_EINVAL,
                            "field 'suffix': this model has no fill-in-the-middle tokens");
    }
    {
        /* [BOS] FIM_PRE prefix FIM_SUF suffix FIM_MID (prefix-suffix-middle order). */
        tok_id *tp = NULL, *ts = NULL, *all;
        size_t np = 0, ns = 0, total, bytes, o = 0;

        rc = tokenize(a, s, sl, 0, &tp, &np);
        if (rc == 0) rc = tokenize(a, x, xl, 0, &ts, &ns);
        if (rc < 0) goto fim_out;
        total = np + ns + 4;
        if (!slm_mul_size(total, sizeof(tok_id), &bytes)) {
            rc = SLM_ELIMIT;
            goto fim_out;
        }
        all = slm_malloc(bytes);
        if (all == NULL) {
            rc = SLM_ENOMEM;
            goto fim_out;
        }
        if (a->add_bos && tokenizer_bos(a->tok) != TOK_NONE) all[o++] = tokenizer_bos(a->tok);
        all[o++] = a->fim_pre;
        if (np > 0) memcpy(all + o, tp, np * sizeof(tok_id));
        o += np;
        all[o++] = a->fim_suf;
        if (ns > 0) memcpy(all + o, ts, ns * sizeof(tok_id));
        o += ns;
        all[o++] = a->fim_mid;
        *toks = all;
        *n = o;
fim_out:
        slm_free(tp);
        slm_free(ts);
        return rc;
    }
}

static void h_completions(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct json_doc *doc = parse_body(a, ex);
    const struct json_value *root;
    struct gen_params g;
    struct slm_diag d;
    const char *param = NULL;
    tok_id *toks = NULL;
    size_t n = 0;
    bool echo = false;
    int rc;

    if (doc == NULL) return;
    root = json_doc_root(doc);
    slm_diag_clear(&d);
    rc = parse_gen(a, root, &g, &d, &param);
    if (rc == 0) rc = opt_bool(root, "echo", &echo, &d, &param);
    if (rc == 0 && echo) {
        param = "echo";
        rc = slm_diag_set(&d, SLM_EINVAL, "field 'echo': echo is not supported");
    }
    if (rc == 0) rc = completion_prompt(a, root, &toks, &n, &d, &param);
    if (rc < 0) {
        if (rc == SLM_ENOMEM)
            api_error(a, ex, 503, NULL, NULL, "out of memory");
        else
            bad_field(a, ex, param, &d);
        goto out;
    }
    submit(a, ex, API_KIND_COMPLETION, &g, false, toks, n);
    toks = NULL;
out:
    slm_free(toks);
    json_doc_free(doc);
}

static void h_tokenize(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct json_doc *doc = parse_body(a, ex);
    const struct json_value *root;
    struct slm_diag d;
    const char *text, *param = NULL;
    size_t len, n = 0;
    bool add_special = false, parse_special = true, with_pieces = false;
    tok_id *toks = NULL;
    struct slm_buf b;
    struct json_writer w;
    int rc;

    if (doc == NULL) return;
    slm_buf_init(&b, API_RESP_MAX);
    root = json_doc_root(doc);
    slm_diag_clear(&d);
    rc = json_get_str(root, "content", &text, &len, &d);
    if (rc == SLM_ENOTFOUND) slm_diag_set(&d, rc, "field 'content' is required");
    if (rc < 0) param = "content";
    if (rc == 0) rc = opt_bool(root, "add_special", &add_special, &d, &param);
    if (rc == 0) rc = opt_bool(root, "parse_special", &parse_special, &d, &param);
    if (rc == 0) rc = opt_bool(root, "with_pieces", &with_pieces, &d, &param);
    if (rc < 0) {
        bad_field(a, ex, param, &d);
        goto out;
    }
    rc = tokenize(a, text, len,
                  (add_special ? TOKENIZE_ADD_SPECIAL : 0u) |
                      (parse_special ? TOKENIZE_PARSE_SPECIAL : 0u),
                  &toks, &n);
    if (rc < 0) {
        api_error(a, ex, rc == SLM_ENOMEM ? 503 : 500, NULL, NULL, "tokenizing failed: %s",
                  slm_strerror(rc));
        goto out;
    }
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "tokens");
    json_arr_begin(&w);
    for (size_t i = 0; i < n; i++) {
        if (!with_pieces) {
            json_int(&w, toks[i]);
            continue;
        }
        {
            char piece[SLM_LIMIT_TOKEN_BYTES];
            size_t pl = 0;

            if (tokenizer_token_bytes(a->tok, toks[i], true, piece, sizeof(piece), &pl) < 0) pl = 0;
            if (pl > sizeof(piece)) pl = sizeof(piece);
            json_obj_begin(&w);
            json_key(&w, "id");
            json_int(&w, toks[i]);
            json_key(&w, "piece");
            json_str(&w, piece, pl);
            json_obj_end(&w);
        }
    }
    json_arr_end(&w);
    json_obj_end(&w);
    respond_json(a, ex, &w, &b);
out:
    slm_free(toks);
    slm_buf_fini(&b);
    json_doc_free(doc);
}

static void h_detokenize(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct json_doc *doc = parse_body(a, ex);
    const struct json_value *toks;
    struct slm_diag d;
    struct slm_buf text, b;
    struct json_writer w;
    struct tok_stream ts;
    int rc = 0;

    if (doc == NULL) return;
    slm_buf_init(&text, API_TEXT_MAX);
    slm_buf_init(&b, API_RESP_MAX);
    slm_diag_clear(&d);
    toks = json_obj_get(json_doc_root(doc), "tokens");
    rc = json_value_array(toks, "tokens", &d);
    if (rc == SLM_ENOTFOUND) slm_diag_set(&d, rc, "field 'tokens' is required");
    if (rc < 0) {
        bad_field(a, ex, "tokens", &d);
        goto out;
    }
    tok_stream_init(&ts, a->tok, true);
    for (size_t i = 0; i < toks->u.arr.n; i++) {
        char name[48];
        int64_t v;

        snprintf(name, sizeof(name), "tokens[%zu]", i);
        rc = json_value_int(&toks->u.arr.items[i], name, 0, (int64_t)tokenizer_n_vocab(a->tok) - 1,
                            &v, &d);
        if (rc < 0) {
            bad_field(a, ex, name, &d);
            goto out;
        }
        if (tok_stream_push(&ts, (tok_id)v, &text) < 0) {
            api_error(a, ex, 400, "tokens", NULL, "field 'tokens': the text is too long");
            goto out;
        }
    }
    if (tok_stream_flush(&ts, &text) < 0) {
        api_error(a, ex, 400, "tokens", NULL, "field 'tokens': the text is too long");
        goto out;
    }
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "content");
    json_str(&w, slm_buf_str(&text), text.len);
    json_obj_end(&w);
    respond_json(a, ex, &w, &b);
out:
    slm_buf_fini(&text);
    slm_buf_fini(&b);
    json_doc_free(doc);
}

static void h_apply_template(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct json_doc *doc = parse_body(a, ex);
    struct slm_buf prompt, b;
    struct json_writer w;
    struct slm_diag d;
    const char *param = NULL;
    bool agp = true;

    if (doc == NULL) return;
    slm_buf_init(&prompt, API_PROMPT_MAX);
    slm_buf_init(&b, API_RESP_MAX);
    slm_diag_clear(&d);
    if (opt_bool(json_doc_root(doc), "add_generation_prompt", &agp, &d, &param) < 0) {
        bad_field(a, ex, param, &d);
        goto out;
    }
    if (render_chat(a, ex, json_doc_root(doc), agp, &prompt, NULL) < 0) goto out;
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "prompt");
    json_str(&w, slm_buf_str(&prompt), prompt.len);
    json_obj_end(&w);
    respond_json(a, ex, &w, &b);
out:
    slm_buf_fini(&prompt);
    slm_buf_fini(&b);
    json_doc_free(doc);
}

/* The route table: every route needs a key except /health. */
static const struct route routes[] = {
    { HTTP_METHOD_GET, "/health", false, h_health },
    { HTTP_METHOD_GET, "/v1/health", false, h_health },
    { HTTP_METHOD_GET, "/v1/models", true, h_models },
    { HTTP_METHOD_GET, "/models", true, h_models },
    { HTTP_METHOD_POST, "/v1/chat/completions", true, h_chat },
    { HTTP_METHOD_POST, "/chat/completions", true, h_chat },
    { HTTP_METHOD_POST, "/v1/completions", true, h_completions },
    { HTTP_METHOD_POST, "/completions", true, h_completions },
    { HTTP_METHOD_POST, "/tokenize", true, h_tokenize },
    { HTTP_METHOD_POST, "/detokenize", true, h_detokenize },
    { HTTP_METHOD_POST, "/apply-template", true, h_apply_template },
    { HTTP_METHOD_GET, "/metrics", true, h_metrics },
};

/* Returns the static route table. */
const struct route *api_routes(size_t *n)
{
    *n = SLM_ARRAY_LEN(routes);
    return routes;
}

/* ---- auth, CORS, dispatch ---- */

static bool has_key(struct api *a, struct http_exchange *ex, bool *presented)
{
    size_t len;
    const char *v = http_exchange_header(ex, "authorization", &len);

    *presented = false;
    if (v != NULL) {
        *presented = true;
        if (len > 7 && strncasecmp(v, "Bearer ", 7) == 0) {
            v += 7;
            len -= 7;
            while (len > 0 && *v == ' ') {
                v++;
                len--;
            }
            if (api_keys_verify(a->p.keys, v, len)) return true;
        }
    }
    v = http_exchange_header(ex, "x-api-key", &len);
    if (v != NULL) {
        *presented = true;
        if (api_keys_verify(a->p.keys, v, len)) return true;
    }
    return false;
}

/* True (and the CORS headers added) if the request's Origin is allowed. */
static bool cors(struct api *a, struct http_exchange *ex, bool *has_origin)
{
    size_t len;
    const char *o = http_exchange_header(ex, "origin", &len);

    *has_origin = o != NULL;
    if (o == NULL) return false;
    for (size_t i = 0; i < a->p.n_cors_origins; i++) {
        const char *allowed = a->p.cors_origins[i];

        if (strlen(allowed) == len && memcmp(allowed, o, len) == 0) {
            http_exchange_add_header(ex, "Access-Control-Allow-Origin", allowed);
            http_exchange_add_header(ex, "Vary", "Origin");
            return true;
        }
    }
    return false;
}

/* The server's handler; see api.h. */
void api_handle(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    const struct http_request *req = http_exchange_request(ex);
    const struct route *rt = NULL;
    char allow[128];
    size_t plen;
    const char *path = http_exchange_path(ex, &plen);
    bool has_origin, origin_ok, presented;
    enum router_result res;

    origin_ok = cors(a, ex, &has_origin);
    res = router_match(routes, SLM_ARRAY_LEN(routes), req->method, path, plen, &rt, allow,
                       sizeof(allow));
    if (res == ROUTER_NOT_FOUND) {
        api_error(a, ex, 404, NULL, "unknown_url", "Invalid URL (%s %.*s)",
                  router_method_name(req->method), (int)(plen > 200 ? 200 : plen), path);
        return;
    }
    if (req->method == HTTP_METHOD_OPTIONS && rt == NULL) {
        /* CORS preflight: no key needed (browsers send none). */
        if (has_origin && !origin_ok) {
            api_error(a, ex, 403, NULL, NULL, "origin not allowed");
            return;
        }
        http_exchange_add_header(ex, "Allow", allow);
        if (origin_ok) {
            http_exchange_add_header(ex, "Access-Control-Allow-Methods", allow);
            http_exchange_add_header(ex, "Access-Control-Allow-Headers",
                                     "Authorization, Content-Type, x-api-key");
            http_exchange_add_header(ex, "Access-Control-Max-Age", "600");
        }
        respond(a, ex, 204, NULL, "", 0);
        return;
    }
    if (res == ROUTER_BAD_METHOD) {
        http_exchange_add_header(ex, "Allow", allow);
        api_error(a, ex, 405, NULL, "method_not_allowed", "Method %s is not allowed for %.*s",
                  router_method_name(req->method), (int)(plen > 200 ? 200 : plen), path);
        return;
    }
    if (rt->auth && !has_key(a, ex, &presented)) {
        a->c.auth_failed++;
        log_info("auth peer=%s path=%.*s result=%s", http_exchange_peer(ex),
                 (int)(plen > 200 ? 200 : plen), path, presented ? "wrong_key" : "no_key");
        if (presented)
            api_error(a, ex, 401, NULL, "invalid_api_key", "Incorrect API key provided.");
        else
            api_error(a, ex, 401, NULL, "invalid_api_key",
                      "Missing API key: send it as 'Authorization: Bearer KEY' or "
                      "'x-api-key: KEY'.");
        return;
    }
    if (http_exchange_draining(ex) && rt->fn != h_health) {
        api_error(a, ex, 503, NULL, NULL, "the server is shutting down");
        return;
    }
    rt->fn(a, ex);
}

/* ---- life cycle ---- */

static tok_id fim_token(const struct model *m, const struct tokenizer *t, const char *key,
                        const char *old_key, const char *text)
{
    const struct gguf_file *f = model_get_gguf(m);
    uint32_t v;

    if (gguf_get_u32(f, key, &v, NULL) == 1 || gguf_get_u32(f, old_key, &v, NULL) == 1) {
        if (v < tokenizer_n_vocab(t)) return (tok_id)v;
    }
    return tokenizer_find(t, text, strlen(text));
}

static void token_text(const struct tokenizer *t, tok_id id, char *out, size_t cap)
{
    size_t len = 0;

    out[0] = '\0';
    if (id == TOK_NONE) return;
    if (tokenizer_token_bytes(t, id, true, out, cap - 1, &len) < 0 || len >= cap) len = 0;
    out[len] = '\0';
}

/*
 * The tool-call format of the model's replies: from the model's own chat
 * template, else from its vocabulary (the markers, then the chat family the
 * built-in template is chosen by).
 */
static enum chat_toolcall_format toolcall_format(const struct model *m, const struct tokenizer *t)
{
    struct gguf_str src;
    enum chat_toolcall_format f = CHAT_TOOLCALL_NONE;

    if (gguf_get_str(model_get_gguf(m), "tokenizer.chat_template", &src, NULL) == 0)
        f = chat_toolcall_format_detect(src.ptr, src.len);
    if (f != CHAT_TOOLCALL_NONE) return f;
    if (tokenizer_find(t, "[TOOL_CALLS]", 12) != TOK_NONE) return CHAT_TOOLCALL_MISTRAL;
    if (tokenizer_find(t, "<tool_call>", 11) != TOK_NONE) return CHAT_TOOLCALL_HERMES;
    if (tokenizer_find(t, "<|python_tag|>", 14) != TOK_NONE) return CHAT_TOOLCALL_LLAMA3;
    if (tokenizer_find(t, "<|im_start|>", 12) != TOK_NONE) return CHAT_TOOLCALL_HERMES;
    if (tokenizer_find(t, "<|start_header_id|>", 19) != TOK_NONE) return CHAT_TOOLCALL_LLAMA3;
    if (tokenizer_find(t, "[INST]", 6) != TOK_NONE) return CHAT_TOOLCALL_MISTRAL;
    return CHAT_TOOLCALL_HERMES; /* the built-in fallback is ChatML with <tool_call> */
}

/* Creates the API; see api.h. */
int api_new(const struct api_params *p, struct api **out, struct slm_diag *d)
{
    struct api *a;
    tok_id probe[4];
    size_t n = 0;

    *out = NULL;
    a = slm_calloc(1, sizeof(*a));
    if (a == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory");
    a->p = *p;
    a->loop = http_server_loop(p->server);
    a->tok = model_get_tokenizer(p->model);
    a->n_ctx = sched_n_ctx(p->sched);
    a->created = (int64_t)time(NULL);
    a->t_start_ns = slm_now_ns();
    if (tokenizer_encode(a->tok, "", 0, TOKENIZE_ADD_SPECIAL, probe, SLM_ARRAY_LEN(probe), &n) ==
            0 &&
        n > 0 && probe[0] == tokenizer_bos(a->tok))
        a->add_bos = true;
    a->fim_pre = fim_token(p->model, a->tok, "tokenizer.ggml.fim_pre_token_id",
                           "tokenizer.ggml.prefix_token_id", "<|fim_prefix|>");
    a->fim_suf = fim_token(p->model, a->tok, "tokenizer.ggml.fim_suf_token_id",
                           "tokenizer.ggml.suffix_token_id", "<|fim_suffix|>");
    a->fim_mid = fim_token(p->model, a->tok, "tokenizer.ggml.fim_mid_token_id",
                           "tokenizer.ggml.middle_token_id", "<|fim_middle|>");
    a->tc_fmt = toolcall_format(p->model, a->tok);
    token_text(a->tok, tokenizer_bos(a->tok), a->bos_text, sizeof(a->bos_text));
    token_text(a->tok, tokenizer_eos(a->tok), a->eos_text, sizeof(a->eos_text));
    *out = a;
    return 0;
}

/* Frees the API. NULL is a no-op. */
void api_free(struct api *a)
{
    if (a == NULL) return;
    slm_free(a);
}

/* Cancels every request in flight; see api.h. */
void api_cancel_all(struct api *a)
{
    for (struct api_req *r = a->active; r != NULL; r = r->next) {
        r->shutdown = true;
        sched_cancel(a->p.sched, r->sched_id);
    }
}

size_t api_n_active(const struct api *a)
{
    return a->n_active;
}
