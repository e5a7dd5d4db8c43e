/*
 * openai_request.c - reading requests of the OpenAI endpoints: the JSON
 * body, OpenAI-shaped errors, chat messages (content parts joined, tool-call
 * arguments decoded for the template), tools and tool_choice, the chat
 * template, and the generation parameters shared by chat and completions.
 * Every bad field answers 400 naming it (DESIGN.md's error rules).
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

/* ---- responses and errors ---- */

void api__count_status(struct api *a, int status)
{
    a->c.requests[api__status_slot(status)]++;
}

void api__respond(struct api *a, struct http_exchange *ex, int status, const char *ctype,
                  const char *body, size_t len)
{
    api__count_status(a, status);
    http_exchange_respond(ex, status, ctype, body, len);
}

/* Writes OpenAI's error object into w (the value of "error"). */
void api__write_error_obj(struct json_writer *w, const char *type, const char *param,
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
void api__error(struct api *a, struct http_exchange *ex, int status, const char *param,
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
    api__write_error_obj(&w, type_of_status(status), param, code, msg);
    json_obj_end(&w);
    if (json_writer_finish(&w) < 0) slm_buf_reset(&b);
    if (status == 401) http_exchange_add_header(ex, "WWW-Authenticate", "Bearer");
    if (status == 503 || status == 429) http_exchange_add_header(ex, "Retry-After", "1");
    api__respond(a, ex, status, "application/json", slm_buf_str(&b), b.len);
    slm_buf_fini(&b);
}

/* Answers 200 with the JSON in b, or 500 if the writer failed. */
void api__respond_json(struct api *a, struct http_exchange *ex, struct json_writer *w,
                       struct slm_buf *b)
{
    if (json_writer_finish(w) < 0) {
        api__error(a, ex, 500, NULL, NULL, "response too large");
        return;
    }
    api__respond(a, ex, 200, "application/json", slm_buf_str(b), b->len);
}

/* Maps a diag from a typed getter to a 400 naming the field. */
void api__bad_field(struct api *a, struct http_exchange *ex, const char *param,
                    const struct slm_diag *d)
{
    api__error(a, ex, 400, param, NULL, "%s", d->msg[0] != '\0' ? d->msg : "invalid value");
}

/* Parses the body as a JSON object; answers 400 itself on failure. */
struct json_doc *api__parse_body(struct api *a, struct http_exchange *ex)
{
    struct json_doc *doc = NULL;
    struct slm_diag d;
    size_t len;
    const char *body = http_exchange_body(ex, &len);
    int rc;

    slm_diag_clear(&d);
    if (len == 0) {
        api__error(a, ex, 400, NULL, NULL, "the request body is empty; send a JSON object");
        return NULL;
    }
    rc = json_parse(body, len, NULL, &doc, NULL, &d);
    if (rc < 0) {
        if (rc == SLM_ENOMEM)
            api__error(a, ex, 503, NULL, NULL, "out of memory");
        else
            api__error(a, ex, 400, NULL, NULL, "invalid JSON body: %s", d.msg);
        return NULL;
    }
    if (json_doc_root(doc)->type != JSON_OBJECT) {
        api__error(a, ex, 400, NULL, NULL, "the request body must be a JSON object, got %s",
                   json_type_name((enum json_type)json_doc_root(doc)->type));
        json_doc_free(doc);
        return NULL;
    }
    return doc;
}

/* ---- tokenizing ---- */

/* Tokenizes text into a new array (*out, slm_free). */
int api__tokenize(const struct api *a, const char *text, size_t len, unsigned flags, tok_id **out,
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
int api__ensure_bos(const struct api *a, tok_id **toks, size_t *n)
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
                             enum api_tool_choice *out, const struct json_value **named,
                             struct slm_diag *d, char *param, size_t param_cap)
{
    const struct json_value *ty, *fn, *name;

    *out = API_TOOL_CHOICE_AUTO;
    snprintf(param, param_cap, "tool_choice");
    if (tc == NULL || tc->type == JSON_NULL) return 0;
    if (tc->type == JSON_STRING) {
        if (strcmp(tc->u.str.ptr, "auto") == 0) return 0;
        if (strcmp(tc->u.str.ptr, "none") == 0) {
            *out = API_TOOL_CHOICE_NONE;
            return 0;
        }
        if (strcmp(tc->u.str.ptr, "required") == 0) {
            if (tools == NULL || tools->type != JSON_ARRAY || tools->u.arr.n == 0)
                return slm_diag_set(d, SLM_EINVAL,
                                    "field 'tool_choice': \"required\" needs at least one tool "
                                    "in 'tools'");
            *out = API_TOOL_CHOICE_REQUIRED;
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
            *out = API_TOOL_CHOICE_NAMED;
            *named = name;
            return 0;
        }
    }
    return slm_diag_set(d, SLM_EINVAL,
                        "field 'tool_choice.function.name': '%.64s' is not one of 'tools'",
                        name->u.str.ptr);
}

/*
 * Renders the chat prompt for root's messages (and tools) into out and
 * fills info (may be NULL): whether the reply must go through the
 * tool-call parser, and tool_choice. Returns 0, or answers the error itself
 * and returns < 0.
 */
int api__render_chat(struct api *a, struct http_exchange *ex, const struct json_value *root,
                     bool add_generation_prompt, struct slm_buf *out, struct api_chat_info *info)
{
    struct slm_buf norm;
    struct json_writer w;
    struct json_doc *mdoc = NULL;
    struct chat_render_params rp;
    const struct json_value *tools, *kwargs;
    enum api_tool_choice choice = API_TOOL_CHOICE_AUTO;
    const struct json_value *named = NULL;
    struct slm_diag d;
    char param[96];
    int rc;

    if (info != NULL) memset(info, 0, sizeof(*info));
    slm_diag_clear(&d);
    param[0] = '\0';
    slm_buf_init(&norm, API_RESP_MAX);
    json_writer_init(&w, &norm, false);
    rc = write_messages(json_obj_get(root, "messages"), &w, &d, param, sizeof(param));
    if (rc < 0) {
        api__bad_field(a, ex, param, &d);
        goto out;
    }
    rc = json_writer_finish(&w);
    if (rc == 0) rc = json_parse(norm.data, norm.len, NULL, &mdoc, NULL, &d);
    if (rc < 0) {
        api__error(a, ex, rc == SLM_ENOMEM ? 503 : 400, "messages", NULL,
                   "field 'messages': too large");
        goto out;
    }
    tools = json_obj_get(root, "tools");
    rc = check_tools(tools, &d, param, sizeof(param));
    if (rc == 0)
        rc = check_tool_choice(json_obj_get(root, "tool_choice"), tools, &choice, &named, &d, param,
                               sizeof(param));
    if (rc < 0) {
        api__bad_field(a, ex, param, &d);
        goto out;
    }
    /* With tool_choice "none" the template does not offer the tools at all. */
    if (choice == API_TOOL_CHOICE_NONE) tools = NULL;
    kwargs = json_obj_get(root, "chat_template_kwargs");
    if (kwargs != NULL && kwargs->type != JSON_NULL && kwargs->type != JSON_OBJECT) {
        rc = SLM_EINVAL;
        api__error(a, ex, 400, "chat_template_kwargs", NULL,
                   "field 'chat_template_kwargs': expected object, got %s",
                   json_type_name((enum json_type)kwargs->type));
        goto out;
    }
    if (a->p.tmpl == NULL) {
        rc = SLM_EINTERNAL;
        api__error(a, ex, 500, NULL, NULL, "the server has no chat template");
        goto out;
    }
    memset(&rp, 0, sizeof(rp));
    rp.messages = json_doc_root(mdoc);
    rp.tools = (tools != NULL && tools->type == JSON_ARRAY && tools->u.arr.n > 0) ? tools : NULL;
    if (info != NULL) {
        info->parse_tools = rp.tools != NULL && a->tc_fmt != CHAT_TOOLCALL_NONE;
        info->choice = choice;
        info->tools = rp.tools;
        info->name = named;
    }
    rp.add_generation_prompt = add_generation_prompt;
    rp.bos_token = a->bos_text;
    rp.eos_token = a->eos_text;
    rp.extra = (kwargs != NULL && kwargs->type == JSON_OBJECT) ? kwargs : NULL;
    slm_diag_clear(&d);
    rc = chat_template_render(a->p.tmpl, &rp, out, &d);
    if (rc < 0) {
        if (rc == SLM_EINVAL)
            api__error(a, ex, 400, "messages", NULL, "chat template: %s", d.msg);
        else if (rc == SLM_ENOMEM)
            api__error(a, ex, 503, NULL, NULL, "out of memory");
        else
            api__error(a, ex, 500, NULL, NULL, "chat template failed: %s",
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

int api__opt_bool(const struct json_value *root, const char *key, bool *out, struct slm_diag *d,
                  const char **param)
{
    int rc = json_get_bool(root, key, out, d);

    if (rc == SLM_ENOTFOUND) return 0;
    if (rc < 0) *param = key;
    return rc;
}

/* Validates the fields shared by chat and completions. */
int api__parse_gen(const struct api *a, const struct json_value *root, struct api_gen_params *g,
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
    if ((rc = api__opt_bool(root, "stream", &g->stream, d, param)) < 0) return rc;
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
    if ((rc = api__opt_bool(root, "logprobs", &b, d, param)) < 0) return rc;
    if (b) {
        *param = "logprobs";
        return slm_diag_set(d, SLM_EINVAL,
                            "field 'logprobs': log probabilities are not "
                            "supported by this server");
    }
    if ((rc = api__opt_bool(root, "ignore_eos", &g->ignore_eos, d, param)) < 0) return rc;
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
