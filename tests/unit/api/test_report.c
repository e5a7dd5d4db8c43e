/*
 * test_report.c - the start-up report (src/api/report.c): the OpenCode
 * snippet is JSON that parses (core JSON parser) with the endpoint, key,
 * model and limits in the right places, also for an alias and key full of
 * characters that need escaping; without a key the snippets refer to where
 * it is and never hold it; with no self-signed certificate there is nothing
 * about trusting one. (YAML is checked with python3-yaml in
 * tests/integration/test_serve_ops.sh.)
 */
#include <string.h>

#include "api/report.h"
#include "core/json.h"
#include "harness/t.h"

static struct report_params base(void)
{
    struct report_params p;

    memset(&p, 0, sizeof(p));
    p.endpoint = "https://127.0.0.1:8443/v1";
    p.alias = "devstral-small-2";
    p.n_ctx = 32768;
    p.n_slots = 4;
    p.n_predict = -1;
    p.key = "sk-slm-0123456789abcdef0123456789abcdef";
    p.key_hint = "$(cat /s/api-key)";
    p.key_file = "/s/api-key";
    p.ca_file = "/s/tls/cert.pem";
    return p;
}

/* Returns the text of section "== name" up to the next blank line (in out). */
static void section(const char *report, const char *name, char *out, size_t cap)
{
    const char *s = strstr(report, name), *body, *end;
    size_t n;

    ASSERT_NOT_NULL(s);
    body = strchr(s, '\n');
    ASSERT_NOT_NULL(body);
    body++;
    end = strstr(body, "\n\n");
    ASSERT_NOT_NULL(end);
    n = (size_t)(end - body) + 1;
    ASSERT(n < cap);
    memcpy(out, body, n);
    out[n] = '\0';
}

static const struct json_value *get(const struct json_value *v, const char *path)
{
    char key[128];

    while (*path != '\0') {
        const char *dot = strchr(path, '.');
        size_t n = dot != NULL ? (size_t)(dot - path) : strlen(path);

        memcpy(key, path, n);
        key[n] = '\0';
        v = json_obj_get(v, key);
        if (v == NULL) return NULL;
        path += n + (dot != NULL ? 1 : 0);
    }
    return v;
}

static void check_str(const struct json_value *root, const char *path, const char *want)
{
    const struct json_value *v = get(root, path);

    ASSERT_NOT_NULL(v);
    ASSERT_EQ_INT(v->type, JSON_STRING);
    ASSERT_EQ_STR(v->u.str.ptr, want);
}

/* Parses the OpenCode snippet of p's report and checks its fields. */
static void check_opencode(const struct report_params *p, const char *want_key)
{
    struct slm_buf b;
    struct json_doc *doc = NULL;
    struct slm_diag d;
    char snip[4096], model[300];
    const struct json_value *root, *models, *m;

    slm_buf_init(&b, 1u << 16);
    ASSERT_OK(report_write(p, &b));
    section(slm_buf_str(&b), "== OpenCode", snip, sizeof(snip));
    ASSERT_OK(json_parse(snip, strlen(snip), NULL, &doc, NULL, &d));
    root = json_doc_root(doc);
    check_str(root, "provider.slm.npm", "@ai-sdk/openai-compatible");
    check_str(root, "provider.slm.options.baseURL", p->endpoint);
    check_str(root, "provider.slm.options.apiKey", want_key);
    models = get(root, "provider.slm.models");
    ASSERT_NOT_NULL(models);
    ASSERT_EQ_INT(models->type, JSON_OBJECT);
    ASSERT_EQ_SIZE(models->u.obj.n, 1);
    m = json_obj_get(models, p->alias);
    ASSERT_NOT_NULL(m);
    ASSERT_EQ_INT(get(m, "limit.context")->u.i, (int64_t)p->n_ctx);
    snprintf(model, sizeof(model), "slm/%s", p->alias);
    check_str(root, "model", model);
    json_doc_free(doc);
    slm_buf_fini(&b);
}

TEST(report_opencode_json_parses_with_the_values)
{
    struct report_params p = base();

    check_opencode(&p, p.key);
    p.n_predict = 128;
    check_opencode(&p, p.key);
    /* Characters that must be escaped in JSON and YAML. */
    p.alias = "we\"ird:al#ias\\x";
    p.key = "sk-\"quoted\"\\key:#0123456789";
    check_opencode(&p, p.key);
}

TEST(report_sections_and_key_shown)
{
    struct report_params p = base();
    struct slm_buf b;
    char snip[4096];
    const char *r;

    slm_buf_init(&b, 1u << 16);
    ASSERT_OK(report_write(&p, &b));
    r = slm_buf_str(&b);
    ASSERT(strstr(r, "  endpoint:    https://127.0.0.1:8443/v1\n") != NULL);
    ASSERT(strstr(r, "  API key:     sk-slm-0123456789abcdef0123456789abcdef\n") != NULL);
    ASSERT(strstr(r, "context 32768 tokens, 4 requests at once") != NULL);
    ASSERT(strstr(r, "curl --cacert /s/tls/cert.pem https://127.0.0.1:8443/v1/chat/completions -H "
                     "\"Authorization: Bearer sk-slm-0123456789abcdef0123456789abcdef\"") != NULL);
    ASSERT(strstr(r, "export NODE_EXTRA_CA_CERTS=/s/tls/cert.pem\n") != NULL);
    ASSERT(strstr(r, "SSL_CERT_FILE=/s/tls/cert.pem REQUESTS_CA_BUNDLE=/s/tls/cert.pem") != NULL);
    section(r, "== Cline", snip, sizeof(snip));
    ASSERT(strstr(snip, "Base URL:            https://127.0.0.1:8443/v1\n") != NULL);
    ASSERT(strstr(snip, "Model ID:            devstral-small-2\n") != NULL);
    ASSERT(strstr(snip, "Context Window Size: 32768\n") != NULL);
    section(r, "== Continue", snip, sizeof(snip));
    ASSERT(strncmp(snip, "name: slm\nversion: 0.0.1\nschema: v1\nmodels:\n", 44) == 0);
    ASSERT(strstr(snip, "    apiBase: \"https://127.0.0.1:8443/v1\"\n") != NULL);
    ASSERT(strstr(snip, "    apiKey: \"sk-slm-0123456789abcdef0123456789abcdef\"\n") != NULL);
    ASSERT(strstr(snip, "      caBundlePath: \"/s/tls/cert.pem\"\n") != NULL);
    ASSERT(strstr(snip, "      contextLength: 32768\n") != NULL);
    section(r, "== Aider", snip, sizeof(snip));
    ASSERT_EQ_STR(snip, "export OPENAI_API_BASE=https://127.0.0.1:8443/v1\n"
                        "export OPENAI_API_KEY=sk-slm-0123456789abcdef0123456789abcdef\n"
                        "export SSL_CERT_FILE=/s/tls/cert.pem REQUESTS_CA_BUNDLE=/s/tls/cert.pem\n"
                        "aider --model openai/devstral-small-2\n");
    slm_buf_fini(&b);
}

TEST(report_without_key_refers_to_it_and_without_ca_says_nothing)
{
    struct report_params p = base();
    struct slm_buf b;
    const char *r;

    p.key = NULL;
    p.ca_file = NULL;
    p.endpoint = "http://10.0.0.5:8080/v1";
    check_opencode(&p, "{file:/s/api-key}");
    p.key_file = NULL;
    p.key_hint = "$SLM_API_KEY";
    check_opencode(&p, "{env:SLM_API_KEY}");
    slm_buf_init(&b, 1u << 16);
    ASSERT_OK(report_write(&p, &b));
    r = slm_buf_str(&b);
    ASSERT(strstr(r, "sk-slm-") == NULL);
    ASSERT(strstr(r, "  API key:     $SLM_API_KEY\n") != NULL);
    ASSERT(strstr(r, "apiKey: \"${{ secrets.SLM_API_KEY }}\"") != NULL);
    ASSERT(strstr(r, "export OPENAI_API_KEY=$SLM_API_KEY\n") != NULL);
    ASSERT(strstr(r, "NODE_EXTRA_CA_CERTS") == NULL);
    ASSERT(strstr(r, "caBundlePath") == NULL);
    ASSERT(strstr(r, "--cacert") == NULL);
    ASSERT(strstr(r, "SSL_CERT_FILE") == NULL);
    slm_buf_fini(&b);
}

TEST(report_buffer_cap_is_an_error)
{
    struct report_params p = base();
    struct slm_buf b;

    slm_buf_init(&b, 200);
    ASSERT_EQ_INT(report_write(&p, &b) < 0, 1);
    slm_buf_fini(&b);
}
