/*
 * fuzz_template.c - libFuzzer target for the chat template interpreter
 * (RELIABILITY G15) and the tool-call parsers.
 *
 * The input is compiled as a template and, when it compiles, rendered with
 * a fixed conversation (system, user, assistant with a tool call, tool
 * result, tools) under small step and memory budgets: every outcome must be
 * 0 or an error code with a message, never a crash, hang or leak. The same
 * bytes are then fed to each tool-call parser in two pieces and whole; the
 * content and calls must agree (split invariance).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char messages_json[] =
    "[{\"role\":\"system\",\"content\":\"You are helpful.\"},"
    "{\"role\":\"user\",\"content\":\"Weather in Paris? \\u00e9 \\ud83c\\udf89\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call12345\","
    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":"
    "\"Paris\"}}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call12345\",\"content\":\"21C\"},"
    "{\"role\":\"assistant\",\"content\":\"It is 21C.\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"thanks\"}]}]";
static const char tools_json[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"d\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";

struct digest {
    uint64_t content_hash;
    size_t content_len;
    size_t n_calls;
    uint64_t call_hash;
};

static uint64_t mix(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static int on_delta(void *arg, const struct chat_delta *d)
{
    struct digest *g = arg;

    if (d->type == CHAT_DELTA_CONTENT) {
        g->content_hash = mix(g->content_hash, d->text, d->text_len);
        g->content_len += d->text_len;
    } else {
        if (d->name != NULL) {
            g->n_calls++;
            g->call_hash = mix(g->call_hash, d->name, d->name_len);
            g->call_hash = mix(g->call_hash, "\0", 1);
        }
        g->call_hash = mix(g->call_hash, d->text, d->text_len);
    }
    return 0;
}

static void parse_split(enum chat_toolcall_format fmt, const char *s, size_t n, size_t cut,
                        struct digest *g)
{
    struct chat_toolcall_parser *p = NULL;

    memset(g, 0, sizeof(*g));
    g->content_hash = g->call_hash = 1469598103934665603ull;
    if (chat_toolcall_parser_new(fmt, 9, &p, NULL) < 0) abort();
    if (chat_toolcall_feed(p, s, cut, on_delta, g) < 0 ||
        chat_toolcall_feed(p, s + cut, n - cut, on_delta, g) < 0 ||
        chat_toolcall_finish(p, on_delta, g) < 0)
        abort();
    chat_toolcall_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct json_doc *msgs, *tools;
    struct chat_template *t = NULL;
    struct chat_render_params p = { 0 };
    struct slm_diag d = { 0 };
    struct slm_buf out;
    int rc;

    if (msgs == NULL) {
        if (json_parse(messages_json, sizeof(messages_json) - 1, NULL, &msgs, NULL, NULL) < 0 ||
            json_parse(tools_json, sizeof(tools_json) - 1, NULL, &tools, NULL, NULL) < 0)
            abort();
    }
    rc = chat_template_new((const char *)data, size, &t, &d);
    if (rc < 0) {
        if (t != NULL || d.msg[0] == '\0') abort();
    } else {
        p.messages = json_doc_root(msgs);
        p.tools = json_doc_root(tools);
        p.add_generation_prompt = size & 1;
        p.bos_token = "<s>";
        p.eos_token = "</s>";
        p.now = 1721995200;
        p.steps_max = 200000;
        p.mem_max = 16u << 20;
        slm_buf_init(&out, 1u << 20);
        rc = chat_template_render(t, &p, &out, &d);
        if (rc < 0 && d.msg[0] == '\0') abort();
        slm_buf_fini(&out);
        chat_template_free(t);
    }
    for (unsigned f = 0; f < CHAT_TOOLCALL_FORMAT_COUNT && size <= 4096; f++) {
        struct digest a, b;

        parse_split((enum chat_toolcall_format)f, (const char *)data, size, 0, &a);
        parse_split((enum chat_toolcall_format)f, (const char *)data, size, size / 2, &b);
        if (memcmp(&a, &b, sizeof(a)) != 0) abort();
    }
    return 0;
}
