/*
 * openai.c - the route table of `slm serve` (see api.h), authentication,
 * CORS and dispatch, the life cycle of the api, and the endpoints that
 * answer at once: /health, /v1/models, /metrics, /tokenize, /detokenize,
 * /apply-template, and the request side of /v1/completions (its answer is
 * built by openai_chat.c like a chat's). Reading requests is in
 * openai_request.c, forced tool calls in openai_constrain.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- endpoints ---- */

static void h_health(void *arg, struct http_exchange *ex)
{
    static const char ok[] = "{\"status\":\"ok\"}";

    api__respond(arg, ex, 200, "application/json", ok, sizeof(ok) - 1);
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
    api__respond_json(a, ex, &w, &b);
    slm_buf_fini(&b);
}

static void h_metrics(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct slm_buf b;

    slm_buf_init(&b, 1u << 20);
    if (api__metrics_write(a, &b) < 0)
        api__error(a, ex, 500, NULL, NULL, "metrics too large");
    else
        api__respond(a, ex, 200, "text/plain; version=0.0.4; charset=utf-8", slm_buf_str(&b),
                     b.len);
    slm_buf_fini(&b);
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
        return api__tokenize(a, s, sl, TOKENIZE_ADD_SPECIAL, toks, n);
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

        rc = api__tokenize(a, s, sl, 0, &tp, &np);
        if (rc == 0) rc = api__tokenize(a, x, xl, 0, &ts, &ns);
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
    struct json_doc *doc = api__parse_body(a, ex);
    const struct json_value *root;
    struct api_gen_params g;
    struct slm_diag d;
    const char *param = NULL;
    tok_id *toks = NULL;
    size_t n = 0;
    bool echo = false;
    int rc;

    if (doc == NULL) return;
    root = json_doc_root(doc);
    slm_diag_clear(&d);
    rc = api__parse_gen(a, root, &g, &d, &param);
    if (rc == 0) rc = api__opt_bool(root, "echo", &echo, &d, &param);
    if (rc == 0 && echo) {
        param = "echo";
        rc = slm_diag_set(&d, SLM_EINVAL, "field 'echo': echo is not supported");
    }
    if (rc == 0) rc = completion_prompt(a, root, &toks, &n, &d, &param);
    if (rc < 0) {
        if (rc == SLM_ENOMEM)
            api__error(a, ex, 503, NULL, NULL, "out of memory");
        else
            api__bad_field(a, ex, param, &d);
        goto out;
    }
    {
        struct api_submit_opts o;

        memset(&o, 0, sizeof(o));
        api__submit(a, ex, API_KIND_COMPLETION, &g, &o, toks, n);
    }
    toks = NULL;
out:
    slm_free(toks);
    json_doc_free(doc);
}

static void h_tokenize(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct json_doc *doc = api__parse_body(a, ex);
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
    if (rc == 0) rc = api__opt_bool(root, "add_special", &add_special, &d, &param);
    if (rc == 0) rc = api__opt_bool(root, "parse_special", &parse_special, &d, &param);
    if (rc == 0) rc = api__opt_bool(root, "with_pieces", &with_pieces, &d, &param);
    if (rc < 0) {
        api__bad_field(a, ex, param, &d);
        goto out;
    }
    rc = api__tokenize(a, text, len,
                       (add_special ? TOKENIZE_ADD_SPECIAL : 0u) |
                           (parse_special ? TOKENIZE_PARSE_SPECIAL : 0u),
                       &toks, &n);
    if (rc < 0) {
        api__error(a, ex, rc == SLM_ENOMEM ? 503 : 500, NULL, NULL, "tokenizing failed: %s",
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
    api__respond_json(a, ex, &w, &b);
out:
    slm_free(toks);
    slm_buf_fini(&b);
    json_doc_free(doc);
}

static void h_detokenize(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct json_doc *doc = api__parse_body(a, ex);
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
        api__bad_field(a, ex, "tokens", &d);
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
            api__bad_field(a, ex, name, &d);
            goto out;
        }
        if (tok_stream_push(&ts, (tok_id)v, &text) < 0) {
            api__error(a, ex, 400, "tokens", NULL, "field 'tokens': the text is too long");
            goto out;
        }
    }
    if (tok_stream_flush(&ts, &text) < 0) {
        api__error(a, ex, 400, "tokens", NULL, "field 'tokens': the text is too long");
        goto out;
    }
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "content");
    json_str(&w, slm_buf_str(&text), text.len);
    json_obj_end(&w);
    api__respond_json(a, ex, &w, &b);
out:
    slm_buf_fini(&text);
    slm_buf_fini(&b);
    json_doc_free(doc);
}

static void h_apply_template(void *arg, struct http_exchange *ex)
{
    struct api *a = arg;
    struct json_doc *doc = api__parse_body(a, ex);
    struct slm_buf prompt, b;
    struct json_writer w;
    struct slm_diag d;
    const char *param = NULL;
    bool agp = true;

    if (doc == NULL) return;
    slm_buf_init(&prompt, API_PROMPT_MAX);
    slm_buf_init(&b, API_RESP_MAX);
    slm_diag_clear(&d);
    if (api__opt_bool(json_doc_root(doc), "add_generation_prompt", &agp, &d, &param) < 0) {
        api__bad_field(a, ex, param, &d);
        goto out;
    }
    if (api__render_chat(a, ex, json_doc_root(doc), agp, &prompt, NULL) < 0) goto out;
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "prompt");
    json_str(&w, slm_buf_str(&prompt), prompt.len);
    json_obj_end(&w);
    api__respond_json(a, ex, &w, &b);
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
    { HTTP_METHOD_POST, "/v1/chat/completions", true, api__h_chat },
    { HTTP_METHOD_POST, "/chat/completions", true, api__h_chat },
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
        api__error(a, ex, 404, NULL, "unknown_url", "Invalid URL (%s %.*s)",
                   router_method_name(req->method), (int)(plen > 200 ? 200 : plen), path);
        return;
    }
    if (req->method == HTTP_METHOD_OPTIONS && rt == NULL) {
        /* CORS preflight: no key needed (browsers send none). */
        if (has_origin && !origin_ok) {
            api__error(a, ex, 403, NULL, NULL, "origin not allowed");
            return;
        }
        http_exchange_add_header(ex, "Allow", allow);
        if (origin_ok) {
            http_exchange_add_header(ex, "Access-Control-Allow-Methods", allow);
            http_exchange_add_header(ex, "Access-Control-Allow-Headers",
                                     "Authorization, Content-Type, x-api-key");
            http_exchange_add_header(ex, "Access-Control-Max-Age", "600");
        }
        api__respond(a, ex, 204, NULL, "", 0);
        return;
    }
    if (res == ROUTER_BAD_METHOD) {
        http_exchange_add_header(ex, "Allow", allow);
        api__error(a, ex, 405, NULL, "method_not_allowed", "Method %s is not allowed for %.*s",
                   router_method_name(req->method), (int)(plen > 200 ? 200 : plen), path);
        return;
    }
    if (rt->auth && !has_key(a, ex, &presented)) {
        a->c.auth_failed++;
        log_info("auth peer=%s path=%.*s result=%s", http_exchange_peer(ex),
                 (int)(plen > 200 ? 200 : plen), path, presented ? "wrong_key" : "no_key");
        if (presented)
            api__error(a, ex, 401, NULL, "invalid_api_key", "Incorrect API key provided.");
        else
            api__error(a, ex, 401, NULL, "invalid_api_key",
                       "Missing API key: send it as 'Authorization: Bearer KEY' or "
                       "'x-api-key: KEY'.");
        return;
    }
    if (http_exchange_draining(ex) && rt->fn != h_health) {
        api__error(a, ex, 503, NULL, NULL, "the server is shutting down");
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
 * Returns borrowed: the source of the chat template in use, the override's
 * (--chat-template-file) or the model's tokenizer.chat_template; NULL when
 * neither exists (a built-in template, chosen by the vocabulary).
 */
static const char *template_source(const struct api_params *p, size_t *len)
{
    struct gguf_str src;

    *len = 0;
    if (p->tmpl_src != NULL) {
        *len = p->tmpl_src_len;
        return p->tmpl_src;
    }
    if (gguf_get_str(model_get_gguf(p->model), "tokenizer.chat_template", &src, NULL) < 0)
        return NULL;
    *len = src.len;
    return src.ptr;
}

/* True if the template in use or the vocabulary has the text needle. */
static bool model_knows(const struct api_params *p, const struct tokenizer *t, const char *needle)
{
    size_t n = strlen(needle), len;
    const char *src = template_source(p, &len);

    if (tokenizer_find(t, needle, n) != TOK_NONE) return true;
    return src != NULL && memmem(src, len, needle, n) != NULL;
}

/*
 * The interval of SSE keep-alive comments: SLM_LIMIT_SSE_KEEPALIVE_MS, or
 * API_KEEPALIVE_ENV (milliseconds, 1 to SLM_LIMIT_SSE_KEEPALIVE_MS_MAX) for
 * tests and operators behind impatient proxies.
 */
static uint64_t keepalive_ms(void)
{
    const char *v = getenv(API_KEEPALIVE_ENV);
    uint64_t ms;

    if (v == NULL || *v == '\0') return SLM_LIMIT_SSE_KEEPALIVE_MS;
    if (slm_parse_u64(v, &ms) < 0 || ms == 0 || ms > SLM_LIMIT_SSE_KEEPALIVE_MS_MAX) {
        log_write(LOG_LEVEL_WARN, "%s=%.32s is not a number of milliseconds in [1, %u]; using %u",
                  API_KEEPALIVE_ENV, v, (unsigned)SLM_LIMIT_SSE_KEEPALIVE_MS_MAX,
                  (unsigned)SLM_LIMIT_SSE_KEEPALIVE_MS);
        return SLM_LIMIT_SSE_KEEPALIVE_MS;
    }
    return ms;
}

/*
 * The tool-call format of the model's replies: from the chat template in use
 * (the override's markers, else its chat family, since an override names the
 * format the model is prompted in; or the model's own template's markers),
 * else from the vocabulary (the markers, then the chat family the built-in
 * template is chosen by).
 */
static enum chat_toolcall_format toolcall_format(const struct api_params *p,
                                                 const struct tokenizer *t)
{
    size_t len;
    const char *src = template_source(p, &len);
    enum chat_toolcall_format f = chat_toolcall_format_detect(src, len);

    if (f != CHAT_TOOLCALL_NONE) return f;
    if (p->tmpl_src != NULL) {
        if (memmem(src, len, "<|im_start|>", 12) != NULL) return CHAT_TOOLCALL_HERMES;
        if (memmem(src, len, "<|start_header_id|>", 19) != NULL) return CHAT_TOOLCALL_LLAMA3;
        if (memmem(src, len, "[INST]", 6) != NULL) return CHAT_TOOLCALL_MISTRAL;
    }
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
    a->tc_fmt = toolcall_format(p, a->tok);
    a->mistral_args = model_knows(p, a->tok, "[ARGS]");
    a->thinks = model_knows(p, a->tok, "<think>");
    log_info("tool calls: %s format, <think> reasoning: %s (from the %s)",
             chat_toolcall_format_name(a->tc_fmt), a->thinks ? "yes" : "no",
             p->tmpl_src != NULL ? "--chat-template-file" : "model's template and vocabulary");
    a->keepalive_ms = keepalive_ms();
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

size_t api_n_active(const struct api *a)
{
    return a->n_active;
}
