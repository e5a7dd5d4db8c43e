/*
 * test_sse.c - the SSE writer, checked against a reference parser written
 * from the WHATWG rules (sse_ref.h): H09 (newlines in data never make a new
 * event, [DONE], heartbeats) and H10 (the output cap never leaves half an
 * event).
 */
#include "harness/t.h"
#include "http/sse.h"
#include "sse_ref.h"

struct collected {
    char data[8][128];
    size_t len[8];
    char event[8][64];
    int n;
};

static void collect(const struct sse_ref_event *ev, void *arg)
{
    struct collected *c = arg;

    if (c->n < 8) {
        memcpy(c->data[c->n], ev->data.data ? ev->data.data : "", ev->data.len + 1);
        c->len[c->n] = ev->data.len;
        memcpy(c->event[c->n], ev->event, sizeof(ev->event));
    }
    c->n++;
}

TEST(http_sse_writes_openai_style_stream)
{
    struct slm_buf b;
    struct collected c;
    int comments;

    memset(&c, 0, sizeof(c));
    slm_buf_init(&b, 4096);
    ASSERT_OK(http_sse_data(&b, "{\"a\":1}", 7));
    ASSERT_OK(http_sse_comment(&b, "keep-alive"));
    ASSERT_OK(http_sse_done(&b));
    ASSERT_EQ_STR(b.data, "data: {\"a\":1}\n\n: keep-alive\n\ndata: [DONE]\n\n");
    ASSERT_EQ_INT(sse_ref_parse(b.data, b.len, collect, &c, &comments), 2);
    ASSERT_EQ_INT(comments, 1);
    ASSERT_EQ_STR(c.data[0], "{\"a\":1}");
    ASSERT_EQ_STR(c.data[1], "[DONE]");
    slm_buf_fini(&b);
}

/* H09: model output containing "\n\ndata: x" stays inside one event. */
TEST(http_sse_newlines_never_split_events)
{
    const char *evil = "a\n\ndata: x\r\n\r\nevent: y\rz";
    struct slm_buf b;
    struct collected c;
    int comments;

    memset(&c, 0, sizeof(c));
    slm_buf_init(&b, 4096);
    ASSERT_OK(http_sse_data(&b, evil, strlen(evil)));
    ASSERT_OK(http_sse_event(&b, "error", "", 0));
    ASSERT_OK(http_sse_comment(&b, "two\nlines"));
    ASSERT_EQ_INT(sse_ref_parse(b.data, b.len, collect, &c, &comments), 2);
    ASSERT_EQ_STR(c.data[0], "a\n\ndata: x\n\nevent: y\nz");
    ASSERT_EQ_STR(c.event[0], "");
    ASSERT_EQ_STR(c.event[1], "error");
    ASSERT_EQ_SIZE(c.len[1], 0);
    ASSERT_EQ_INT(comments, 2);
    ASSERT_ERR(http_sse_event(&b, "a\nb", "x", 1), SLM_EINVAL);
    ASSERT_ERR(http_sse_event(&b, "", "x", 1), SLM_EINVAL);
    slm_buf_fini(&b);
}

/* H10: at the cap, an event is written whole or not at all. */
TEST(http_sse_cap_is_all_or_nothing)
{
    struct slm_buf b;
    size_t before;

    slm_buf_init(&b, 40);
    ASSERT_OK(http_sse_data(&b, "0123456789", 10));
    before = b.len;
    ASSERT_ERR(http_sse_data(&b, "0123456789abcdef\n0123", 21), SLM_ELIMIT);
    ASSERT_EQ_SIZE(b.len, before);
    ASSERT_EQ_STR(b.data, "data: 0123456789\n\n");
    ASSERT_ERR(http_sse_comment(&b, "a fairly long keep-alive comment"), SLM_ELIMIT);
    ASSERT_EQ_SIZE(b.len, before);
    ASSERT_OK(http_sse_done(&b));
    ASSERT_ERR(http_sse_head(&b, true, false, NULL, 0), SLM_ELIMIT);
    ASSERT_EQ_STR(b.data, "data: 0123456789\n\ndata: [DONE]\n\n");
    slm_buf_fini(&b);
}

TEST(http_sse_head_has_no_content_length)
{
    struct slm_buf b;

    slm_buf_init(&b, 4096);
    ASSERT_OK(http_sse_head(&b, true, false, NULL, 0));
    ASSERT(strstr(b.data, "Content-Type: text/event-stream\r\n") != NULL);
    ASSERT(strstr(b.data, "Transfer-Encoding: chunked\r\n") != NULL);
    ASSERT(strstr(b.data, "Connection: close") == NULL);
    ASSERT(strstr(b.data, "Cache-Control: no-cache\r\n") != NULL);
    ASSERT(strstr(b.data, "Content-Length") == NULL);
    ASSERT(strcmp(b.data + b.len - 4, "\r\n\r\n") == 0);
    slm_buf_fini(&b);
}
