/*
 * report.c - see report.h. The client settings follow each client's
 * documented format: Cline's "OpenAI Compatible" provider fields, Continue's
 * config.yaml (name/version/schema plus a models item with apiBase, apiKey,
 * roles, defaultCompletionOptions.contextLength, requestOptions.caBundlePath),
 * OpenCode's opencode.json provider block for @ai-sdk/openai-compatible
 * (options.baseURL/apiKey, models.<id>.limit), and Aider's OPENAI_API_BASE /
 * OPENAI_API_KEY with --model openai/<id>.
 */
#include "api/report.h"

#include <stdio.h>
#include <string.h>

#include "core/json.h"

/* Appends s as a JSON string (quotes included). */
static int quoted(struct slm_buf *b, const char *s)
{
    int rc = slm_buf_append_char(b, '"');

    if (rc == 0) rc = json_escape(b, s, strlen(s));
    if (rc == 0) rc = slm_buf_append_char(b, '"');
    return rc;
}

/*
 * Appends fmt, where each "%q" takes the next argument as a JSON string,
 * "%e" as JSON-escaped text without quotes and "%s" as text.
 */
static int put(struct slm_buf *b, const char *fmt, const char *a1, const char *a2)
{
    const char *args[2] = { a1, a2 };
    size_t n_arg = 0;
    int rc = 0;

    for (const char *p = fmt; *p != '\0' && rc == 0; p++) {
        if (p[0] == '%' && (p[1] == 'q' || p[1] == 'e' || p[1] == 's') && n_arg < 2) {
            const char *s = args[n_arg++] != NULL ? args[n_arg - 1] : "";

            if (p[1] == 'q')
                rc = quoted(b, s);
            else if (p[1] == 'e')
                rc = json_escape(b, s, strlen(s));
            else
                rc = slm_buf_append_str(b, s);
            p++;
        } else {
            rc = slm_buf_append_char(b, *p);
        }
    }
    return rc;
}

static int summary(const struct report_params *p, struct slm_buf *b)
{
    int rc = 0;

    rc |= slm_buf_printf(b, "slm serve is ready\n  endpoint:    %s\n", p->endpoint);
    if (p->remote_endpoint != NULL)
        rc |= slm_buf_printf(b, "  from other machines: %s\n", p->remote_endpoint);
    if (p->key != NULL)
        rc |= slm_buf_printf(b, "  API key:     %s%s%s%s\n", p->key, p->key_note ? "  (" : "",
                             p->key_note ? p->key_note : "", p->key_note ? ")" : "");
    else
        rc |= slm_buf_printf(b, "  API key:     %s\n", p->key_hint);
    rc |= slm_buf_printf(b, "  model:       %s (context %u tokens, %u requests at once", p->alias,
                         p->n_ctx, p->n_slots);
    if (p->n_predict >= 0)
        rc |= slm_buf_printf(b, ", at most %d generated tokens each", (int)p->n_predict);
    rc |= slm_buf_append_str(b, ")\n");
    if (p->ca_file != NULL)
        rc |= slm_buf_printf(b, "  certificate: %s (self-signed%s; clients must trust it)\n",
                             p->ca_file, p->ca_new ? ", new" : "");
    return rc;
}

static int curl_line(const struct report_params *p, struct slm_buf *b)
{
    const char *key = p->key != NULL ? p->key : p->key_hint;
    int rc = 0;

    rc |= slm_buf_append_str(b, "\ntest it:\n  curl ");
    if (p->ca_file != NULL) rc |= slm_buf_printf(b, "--cacert %s ", p->ca_file);
    rc |= slm_buf_printf(b,
                         "%s/chat/completions -H \"Authorization: Bearer %s\" "
                         "-H 'Content-Type: application/json' -d '{\"model\":",
                         p->endpoint, key);
    rc |= quoted(b, p->alias);
    rc |= slm_buf_append_str(b, ",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],"
                                "\"max_tokens\":16}'\n");
    return rc;
}

static int trust(const struct report_params *p, struct slm_buf *b)
{
    if (p->ca_file == NULL) return 0;
    return slm_buf_printf(
        b,
        "\ntrust the self-signed certificate (copy %s to each client machine first):\n"
        "  Node clients (VS Code with Cline or Continue, OpenCode): export "
        "NODE_EXTRA_CA_CERTS=%s\n"
        "    (VS Code: start `code` from that shell)\n"
        "  Python clients (Aider, the openai package): export SSL_CERT_FILE=%s "
        "REQUESTS_CA_BUNDLE=%s\n"
        "  curl: --cacert %s\n",
        p->ca_file, p->ca_file, p->ca_file, p->ca_file, p->ca_file);
}

static int cline(const struct report_params *p, struct slm_buf *b)
{
    int rc = 0;

    rc |= slm_buf_printf(b,
                         "\n== Cline: Settings > API Provider \"OpenAI Compatible\" ==\n"
                         "  Base URL:            %s\n",
                         p->endpoint);
    if (p->key != NULL)
        rc |= slm_buf_printf(b, "  API Key:             %s\n", p->key);
    else
        rc |= slm_buf_printf(b, "  API Key:             the key (%s)\n", p->key_hint);
    rc |= slm_buf_printf(b,
                         "  Model ID:            %s\n"
                         "  Context Window Size: %u\n",
                         p->alias, p->n_ctx);
    return rc;
}

static int cont(const struct report_params *p, struct slm_buf *b)
{
    char ctx[24];
    int rc = 0;

    snprintf(ctx, sizeof(ctx), "%u", p->n_ctx);
    rc |= slm_buf_append_str(b, "\n== Continue: ~/.continue/config.yaml (a whole file; with an "
                                "existing one, add the item under models:) ==\n"
                                "name: slm\nversion: 0.0.1\nschema: v1\nmodels:\n");
    rc |= put(b, "  - name: %q\n    provider: openai\n    model: %q\n", p->alias, p->alias);
    rc |= put(b, "    apiBase: %q\n", p->endpoint, NULL);
    if (p->key != NULL)
        rc |= put(b, "    apiKey: %q\n", p->key, NULL);
    else
        rc |= put(b,
                  "    apiKey: \"${{ secrets.SLM_API_KEY }}\"  # SLM_API_KEY=%s in "
                  "~/.continue/.env\n",
                  p->key_hint, NULL);
    rc |= put(b,
              "    roles: [chat, edit, apply, autocomplete]\n"
              "    defaultCompletionOptions:\n      contextLength: %s\n",
              ctx, NULL);
    if (p->ca_file != NULL)
        rc |= put(b, "    requestOptions:\n      caBundlePath: %q\n", p->ca_file, NULL);
    return rc;
}

static int opencode(const struct report_params *p, struct slm_buf *b)
{
    char ref[4200];
    const char *key = p->key;
    int rc = 0;

    if (key == NULL) {
        if (p->key_file != NULL)
            snprintf(ref, sizeof(ref), "{file:%s}", p->key_file);
        else
            snprintf(ref, sizeof(ref), "{env:SLM_API_KEY}");
        key = ref;
    }
    rc |= slm_buf_append_str(b, "\n== OpenCode: opencode.json (project) or "
                                "~/.config/opencode/opencode.json ==\n"
                                "{\n  \"$schema\": \"https://opencode.ai/config.json\",\n"
                                "  \"provider\": {\n    \"slm\": {\n"
                                "      \"npm\": \"@ai-sdk/openai-compatible\",\n"
                                "      \"name\": \"SLM-Copilot\",\n");
    rc |= put(b, "      \"options\": { \"baseURL\": %q, \"apiKey\": %q },\n", p->endpoint, key);
    rc |=
        put(b, "      \"models\": {\n        %q: {\n          \"name\": %q,\n", p->alias, p->alias);
    rc |= slm_buf_printf(
        b,
        "          \"limit\": { \"context\": %u, \"output\": %u }\n"
        "        }\n      }\n    }\n  },\n",
        p->n_ctx,
        p->n_predict > 0 && (uint32_t)p->n_predict < p->n_ctx ? (uint32_t)p->n_predict : p->n_ctx);
    rc |= put(b, "  \"model\": \"slm/%e\"\n}\n", p->alias, NULL);
    return rc;
}

static int aider(const struct report_params *p, struct slm_buf *b)
{
    int rc = 0;

    rc |= slm_buf_printf(b, "\n== Aider: shell ==\nexport OPENAI_API_BASE=%s\n", p->endpoint);
    rc |= slm_buf_printf(b, "export OPENAI_API_KEY=%s\n", p->key != NULL ? p->key : p->key_hint);
    if (p->ca_file != NULL)
        rc |= slm_buf_printf(b, "export SSL_CERT_FILE=%s REQUESTS_CA_BUNDLE=%s\n", p->ca_file,
                             p->ca_file);
    rc |= slm_buf_printf(b, "aider --model openai/%s\n", p->alias);
    return rc;
}

/* Writes the report; see report.h. */
int report_write(const struct report_params *p, struct slm_buf *out)
{
    int rc = 0;

    rc |= summary(p, out);
    rc |= curl_line(p, out);
    rc |= trust(p, out);
    rc |= cline(p, out);
    rc |= cont(p, out);
    rc |= opencode(p, out);
    rc |= aider(p, out);
    rc |= slm_buf_append_str(out, "\nmore: docs/clients.md\n");
    return rc < 0 ? SLM_ENOMEM : 0;
}
