/*
 * test_openai_tools.c - the conversion of tool-call parser output into
 * OpenAI JSON (src/api/openai.c: api__tool_msg_*, api__tool_delta_write):
 * the non-streaming message, the streamed deltas, malformed calls kept as
 * content, and the failure paths of the collector.
 */
#include <string.h>

#include "api/api_int.h"
#include "harness/t.h"

/* Parses text with fmt (ids seeded) into m. */
static void parse_all(enum chat_toolcall_format fmt, const char *text, struct api_tool_msg *m)
{
    struct chat_toolcall_parser *p = NULL;
    struct slm_diag d;

    slm_diag_clear(&d);
    ASSERT_OK(chat_toolcall_parser_new(fmt, 42, &p, &d));
    ASSERT_OK(chat_toolcall_feed(p, text, strlen(text), api__tool_msg_add, m));
    ASSERT_OK(chat_toolcall_finish(p, api__tool_msg_add, m));
    chat_toolcall_parser_free(p);
}

static void write_msg(const struct api_tool_msg *m, struct slm_buf *b)
{
    struct json_writer w;

    slm_buf_init(b, 1u << 20);
    json_writer_init(&w, b, false);
    api__tool_msg_write(&w, m);
    ASSERT_OK(json_writer_finish(&w));
}

TEST(openai_tools_message_only_calls)
{
    struct api_tool_msg m;
    struct slm_buf b;
    char want[512];

    api__tool_msg_init(&m);
    parse_all(CHAT_TOOLCALL_HERMES,
              "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
              "</tool_call>\n<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
              &m);
    ASSERT_EQ_SIZE(m.n_calls, 2);
    ASSERT_EQ_INT((int)strlen(m.calls[0].id), 29);
    ASSERT(strncmp(m.calls[0].id, "call_", 5) == 0);
    write_msg(&m, &b);
    snprintf(want, sizeof(want),
             "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
             "{\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
             "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
             "{\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":\"f\","
             "\"arguments\":\"{}\"}}]}",
             m.calls[0].id, m.calls[1].id);
    ASSERT_EQ_STR(slm_buf_str(&b), want);
    slm_buf_fini(&b);
    api__tool_msg_fini(&m);
}

TEST(openai_tools_message_content_and_call)
{
    struct api_tool_msg m;
    struct slm_buf b;
    char want[512];

    api__tool_msg_init(&m);
    parse_all(CHAT_TOOLCALL_MISTRAL, "Let me look.[TOOL_CALLS]search[ARGS]{\"q\": \"x\"}", &m);
    ASSERT_EQ_SIZE(m.n_calls, 1);
    ASSERT_EQ_INT((int)strlen(m.calls[0].id), 9);
    write_msg(&m, &b);
    snprintf(want, sizeof(want),
             "{\"role\":\"assistant\",\"content\":\"Let me look.\",\"tool_calls\":["
             "{\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":\"search\","
             "\"arguments\":\"{\\\"q\\\":\\\"x\\\"}\"}}]}",
             m.calls[0].id);
    ASSERT_EQ_STR(slm_buf_str(&b), want);
    slm_buf_fini(&b);
    api__tool_msg_fini(&m);
}

TEST(openai_tools_malformed_call_is_content)
{
    struct api_tool_msg m;
    struct slm_buf b;
    const char *text = "<tool_call>{\"name\": \"f\", \"arguments\": {oops}</tool_call>";
    struct slm_buf want;
    struct json_writer w;

    api__tool_msg_init(&m);
    parse_all(CHAT_TOOLCALL_HERMES, text, &m);
    ASSERT_EQ_SIZE(m.n_calls, 0);
    write_msg(&m, &b);
    slm_buf_init(&want, 4096);
    json_writer_init(&w, &want, false);
    json_obj_begin(&w);
    json_key(&w, "role");
    json_cstr(&w, "assistant");
    json_key(&w, "content");
    json_cstr(&w, text);
    json_obj_end(&w);
    ASSERT_OK(json_writer_finish(&w));
    ASSERT_EQ_STR(slm_buf_str(&b), slm_buf_str(&want));
    slm_buf_fini(&want);
    slm_buf_fini(&b);
    api__tool_msg_fini(&m);
}

/* Collects streamed delta objects, one per line. */
static int delta_lines(void *arg, const struct chat_delta *d)
{
    struct slm_buf *out = arg;
    struct json_writer w;

    json_writer_init(&w, out, false);
    json_obj_begin(&w);
    api__tool_delta_write(&w, d);
    json_obj_end(&w);
    if (json_writer_finish(&w) < 0) return SLM_ELIMIT;
    return slm_buf_append_char(out, '\n');
}

TEST(openai_tools_stream_deltas)
{
    struct chat_toolcall_parser *p = NULL;
    struct slm_diag d;
    struct slm_buf out;
    const char *text =
        "Hi <tool_call>{\"name\": \"ls\", \"arguments\": {\"path\": \"/\"}}</tool_call>";
    char want[512];
    const char *id;

    slm_diag_clear(&d);
    slm_buf_init(&out, 1u << 16);
    ASSERT_OK(chat_toolcall_parser_new(CHAT_TOOLCALL_HERMES, 7, &p, &d));
    /* Byte by byte: the deltas must not depend on the split. */
    for (size_t i = 0; text[i] != '\0'; i++)
        ASSERT_OK(chat_toolcall_feed(p, text + i, 1, delta_lines, &out));
    ASSERT_OK(chat_toolcall_finish(p, delta_lines, &out));
    ASSERT_EQ_SIZE(chat_toolcall_count(p), 1);
    id = strstr(slm_buf_str(&out), "\"id\":\"");
    ASSERT_NOT_NULL(id);
    snprintf(want, sizeof(want),
             "{\"tool_calls\":[{\"index\":0,\"id\":\"%.29s\",\"type\":\"function\","
             "\"function\":{\"name\":\"ls\",\"arguments\":\"\"}}]}\n"
             "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
             "\"{\\\"path\\\":\\\"/\\\"}\"}}]}\n",
             id + 6);
    /* Content comes first, possibly in several pieces; then the call. */
    {
        const char *calls = strstr(slm_buf_str(&out), "{\"tool_calls\"");
        struct slm_buf content;
        const char *q = slm_buf_str(&out);

        ASSERT_NOT_NULL(calls);
        ASSERT_EQ_STR(calls, want);
        slm_buf_init(&content, 256);
        while (q < calls) {
            const char *e = strchr(q, '\n');

            ASSERT(strncmp(q, "{\"content\":\"", 12) == 0);
            ASSERT_OK(slm_buf_append(&content, q + 12, (size_t)(e - q) - 14));
            q = e + 1;
        }
        ASSERT_EQ_STR(slm_buf_str(&content), "Hi");
        slm_buf_fini(&content);
    }
    chat_toolcall_parser_free(p);
    slm_buf_fini(&out);
}

TEST(openai_tools_collector_rejects_bad_sequences)
{
    struct api_tool_msg m;
    struct chat_delta dl;

    api__tool_msg_init(&m);
    memset(&dl, 0, sizeof(dl));
    /* An argument fragment of a call that was never opened. */
    dl.type = CHAT_DELTA_TOOL_CALL;
    dl.text = "{}";
    dl.text_len = 2;
    ASSERT_ERR(api__tool_msg_add(&m, &dl), SLM_EINTERNAL);
    /* A first delta whose index skips one. */
    dl.id = "call_x";
    dl.name = "f";
    dl.name_len = 1;
    dl.index = 1;
    ASSERT_ERR(api__tool_msg_add(&m, &dl), SLM_ELIMIT);
    dl.index = 0;
    ASSERT_OK(api__tool_msg_add(&m, &dl));
    ASSERT_EQ_SIZE(m.n_calls, 1);
    ASSERT_EQ_STR(slm_buf_str(&m.calls[0].args), "{}");
    api__tool_msg_fini(&m);
    api__tool_msg_fini(&m); /* zeroed: a second fini is a no-op */
}
