/*
 * test_toolcall.c - the incremental tool-call parsers (src/chat/toolcall.c).
 *
 * Every case is checked unsplit, split in two at every byte, and fed one
 * byte at a time: the concatenated content and the calls (name, arguments)
 * must equal the expected values each time. Malformed and unfinished calls
 * must come back as the exact text. A property test feeds random mixtures of
 * marker fragments with random splits and compares with the unsplit result.
 */
#include <stdio.h>
#include <string.h>

#include "chat/chat.h"
#include "core/alloc.h"
#include "core/rand.h"
#include "harness/t.h"

#define MAX_CALLS 8

struct collected {
    struct slm_buf content;
    size_t n_calls;
    char names[MAX_CALLS][64];
    char ids[MAX_CALLS][40];
    struct slm_buf args[MAX_CALLS];
    int fail_after; /* make the callback fail after this many deltas (0: never) */
    int n_deltas;
};

static void coll_init(struct collected *c)
{
    memset(c, 0, sizeof(*c));
    slm_buf_init(&c->content, 8u << 20);
    for (size_t i = 0; i < MAX_CALLS; i++)
        slm_buf_init(&c->args[i], 8u << 20);
}

static void coll_fini(struct collected *c)
{
    slm_buf_fini(&c->content);
    for (size_t i = 0; i < MAX_CALLS; i++)
        slm_buf_fini(&c->args[i]);
}

static int collect(void *arg, const struct chat_delta *d)
{
    struct collected *c = arg;

    c->n_deltas++;
    if (c->fail_after > 0 && c->n_deltas > c->fail_after) return SLM_ECANCELED;
    if (d->type == CHAT_DELTA_CONTENT) {
        ASSERT(d->text_len > 0);
        ASSERT(d->id == NULL && d->name == NULL);
        return slm_buf_append(&c->content, d->text, d->text_len);
    }
    ASSERT(d->type == CHAT_DELTA_TOOL_CALL);
    if (d->id != NULL) {
        /* the first delta of a call: a new index, an id and a name */
        ASSERT_EQ_SIZE(d->index, c->n_calls);
        ASSERT(c->n_calls < MAX_CALLS);
        ASSERT(d->name != NULL && d->name_len > 0 && d->name_len < 64);
        memcpy(c->names[c->n_calls], d->name, d->name_len);
        c->names[c->n_calls][d->name_len] = '\0';
        snprintf(c->ids[c->n_calls], sizeof(c->ids[0]), "%s", d->id);
        c->n_calls++;
        return 0;
    }
    ASSERT(d->name == NULL);
    ASSERT(c->n_calls > 0 && d->index == c->n_calls - 1);
    return slm_buf_append(&c->args[d->index], d->text, d->text_len);
}

/* Feeds text split at the given cut points (sorted, may be empty). */
static void run_split(enum chat_toolcall_format fmt, const char *text, size_t len,
                      const size_t *cuts, size_t n_cuts, struct collected *c)
{
    struct chat_toolcall_parser *p = NULL;
    size_t pos = 0;

    coll_init(c);
    ASSERT_OK(chat_toolcall_parser_new(fmt, 42, &p, NULL));
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;

        ASSERT_OK(chat_toolcall_feed(p, text + pos, end - pos, collect, c));
        pos = end;
    }
    ASSERT_OK(chat_toolcall_finish(p, collect, c));
    ASSERT_EQ_SIZE(chat_toolcall_count(p), c->n_calls);
    chat_toolcall_parser_free(p);
}

static void same(const struct collected *a, const struct collected *b, const char *what)
{
    if (a->content.len != b->content.len ||
        memcmp(slm_buf_str(&a->content), slm_buf_str(&b->content), a->content.len) != 0)
        t_fail(__FILE__, __LINE__, "%s: content '%s' vs '%s'", what, slm_buf_str(&a->content),
               slm_buf_str(&b->content));
    if (a->n_calls != b->n_calls)
        t_fail(__FILE__, __LINE__, "%s: %zu calls vs %zu", what, a->n_calls, b->n_calls);
    for (size_t i = 0; i < a->n_calls; i++) {
        ASSERT_EQ_STR(a->names[i], b->names[i]);
        ASSERT_EQ_STR(slm_buf_str(&a->args[i]), slm_buf_str(&b->args[i]));
        ASSERT_EQ_STR(a->ids[i], b->ids[i]); /* same seed, same ids */
    }
}

struct tc_case {
    enum chat_toolcall_format fmt;
    const char *text;
    const char *content;
    const char *calls[3][2]; /* name, arguments */
};

static void check_case(const struct tc_case *tc)
{
    size_t len = strlen(tc->text), n_expected = 0;
    struct collected whole, part;
    size_t *cuts;

    run_split(tc->fmt, tc->text, len, NULL, 0, &whole);
    if (strcmp(slm_buf_str(&whole.content), tc->content) != 0)
        t_fail(__FILE__, __LINE__, "%s: content '%s', want '%s'", tc->text,
               slm_buf_str(&whole.content), tc->content);
    while (n_expected < 3 && tc->calls[n_expected][0] != NULL)
        n_expected++;
    if (whole.n_calls != n_expected)
        t_fail(__FILE__, __LINE__, "%s: %zu calls, want %zu", tc->text, whole.n_calls, n_expected);
    for (size_t i = 0; i < n_expected; i++) {
        ASSERT_EQ_STR(whole.names[i], tc->calls[i][0]);
        ASSERT_EQ_STR(slm_buf_str(&whole.args[i]), tc->calls[i][1]);
        if (tc->fmt == CHAT_TOOLCALL_MISTRAL) {
            ASSERT_EQ_SIZE(strlen(whole.ids[i]), 9);
        } else {
            ASSERT(strncmp(whole.ids[i], "call_", 5) == 0);
            ASSERT_EQ_SIZE(strlen(whole.ids[i]), 29);
        }
    }
    /* Two pieces, at every byte. */
    for (size_t k = 1; k < len; k++) {
        run_split(tc->fmt, tc->text, len, &k, 1, &part);
        same(&part, &whole, tc->text);
        coll_fini(&part);
    }
    /* One byte at a time. */
    cuts = slm_xmalloc((len + 1) * sizeof(*cuts));
    for (size_t k = 1; k < len; k++)
        cuts[k - 1] = k;
    run_split(tc->fmt, tc->text, len, cuts, len > 0 ? len - 1 : 0, &part);
    same(&part, &whole, tc->text);
    coll_fini(&part);
    slm_free(cuts);
    coll_fini(&whole);
}

TEST(toolcall_hermes)
{
    static const struct tc_case cases[] = {
        { CHAT_TOOLCALL_HERMES, "Hello world", "Hello world", { { 0 } } },
        { CHAT_TOOLCALL_HERMES,
          "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
          "{\"city\": \"Paris\"}}\n</tool_call>",
          "Let me check.",
          { { "get_weather", "{\"city\":\"Paris\"}" } } },
        { CHAT_TOOLCALL_HERMES,
          "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
          "{\"name\": \"b\", \"arguments\": {\"x\": [1, 2.5, null]}}\n</tool_call>\n",
          "",
          { { "a", "{}" }, { "b", "{\"x\":[1,2.5,null]}" } } },
        { CHAT_TOOLCALL_HERMES,
          "<tool_call>{\"name\": broken}</tool_call> after",
          "<tool_call>{\"name\": broken}</tool_call> after",
          { { 0 } } },
        { CHAT_TOOLCALL_HERMES,
          "x <tool_call>{\"name\": \"f\", \"arguments\": {",
          "x <tool_call>{\"name\": \"f\", \"arguments\": {",
          { { 0 } } },
        { CHAT_TOOLCALL_HERMES,
          "<tool_call>{\"name\":\"f\",\"arguments\":{}}",
          "",
          { { "f", "{}" } } },
        { CHAT_TOOLCALL_HERMES, "a <tools> b <tool_cal", "a <tools> b <tool_cal", { { 0 } } },
        { CHAT_TOOLCALL_HERMES,
          "<tool_call>{\"name\": \"write\", \"arguments\": {\"code\": \"if (x) { y(\\\"}\\\"); "
          "}</tool_call>\", \"t\": \"日本 ✓\"}}</tool_call>",
          "",
          { { "write", "{\"code\":\"if (x) { y(\\\"}\\\"); }</tool_call>\",\"t\":\"日本 ✓\"}" } } },
        { CHAT_TOOLCALL_HERMES,
          "<tool_call>{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}</tool_call>",
          "",
          { { "f", "{\"a\":1}" } } },
        { CHAT_TOOLCALL_HERMES,
          "<tool_call>{\"arguments\": {}}</tool_call>",
          "<tool_call>{\"arguments\": {}}</tool_call>",
          { { 0 } } },
        { CHAT_TOOLCALL_HERMES, "ends with space  \n", "ends with space  \n", { { 0 } } },
    };

    for (size_t i = 0; i < SLM_ARRAY_LEN(cases); i++)
        check_case(&cases[i]);
}

TEST(toolcall_hermes_marker_in_string)
{
    /* A closing tag inside a JSON string does not end the call. */
    static const struct tc_case c = {
        CHAT_TOOLCALL_HERMES,
        "<tool_call>{\"name\":\"f\",\"arguments\":{\"s\":\"a</tool_call>b\"}}</tool_call>",
        "",
        { { "f", "{\"s\":\"a</tool_call>b\"}" } }
    };
    static const struct tc_case junk_after = { CHAT_TOOLCALL_HERMES,
                                               "<tool_call>{\"name\":\"f\"} oops</tool_call>",
                                               "<tool_call>{\"name\":\"f\"} oops</tool_call>",
                                               { { 0 } } };

    check_case(&c);
    check_case(&junk_after);
}

TEST(toolcall_mistral)
{
    static const struct tc_case cases[] = {
        { CHAT_TOOLCALL_MISTRAL,
          "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
          "",
          { { "get_weather", "{\"city\":\"Paris\"}" } } },
        { CHAT_TOOLCALL_MISTRAL,
          "[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {}, \"id\": \"abcdefghi\"}, "
          "{\"name\": \"b\", \"arguments\": {\"k\": \"]}\"}}]",
          "",
          { { "a", "{}" }, { "b", "{\"k\":\"]}\"}" } } },
        { CHAT_TOOLCALL_MISTRAL,
          "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}",
          "",
          { { "get_weather", "{\"city\":\"Paris\"}" } } },
        { CHAT_TOOLCALL_MISTRAL,
          "I'll run both. [TOOL_CALLS]a[ARGS]{}[TOOL_CALLS]b.c-d[ARGS]{\"x\":[1,2]}",
          "I'll run both.",
          { { "a", "{}" }, { "b.c-d", "{\"x\":[1,2]}" } } },
        { CHAT_TOOLCALL_MISTRAL,
          "[TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]{\"q\": true}",
          "",
          { { "f", "{\"q\":true}" } } },
        { CHAT_TOOLCALL_MISTRAL,
          "Sure. [TOOL_CALLS]bad name[ARGS]{}",
          "Sure. [TOOL_CALLS]bad name[ARGS]{}",
          { { 0 } } },
        { CHAT_TOOLCALL_MISTRAL,
          "[TOOL_CALLS]f[ARGS]not json",
          "[TOOL_CALLS]f[ARGS]not json",
          { { 0 } } },
        { CHAT_TOOLCALL_MISTRAL,
          "[TOOL_CALLS][{\"name\": 1}]",
          "[TOOL_CALLS][{\"name\": 1}]",
          { { 0 } } },
        { CHAT_TOOLCALL_MISTRAL, "text [TOOL_CA", "text [TOOL_CA", { { 0 } } },
        { CHAT_TOOLCALL_MISTRAL,
          "[TOOL_CALLS]f[ARGS]{\"a\": ",
          "[TOOL_CALLS]f[ARGS]{\"a\": ",
          { { 0 } } },
        { CHAT_TOOLCALL_MISTRAL,
          "[TOOL_CALLS]f[ARGS]{\"a\": 1} then text",
          " then text",
          { { "f", "{\"a\":1}" } } },
        { CHAT_TOOLCALL_MISTRAL, "[TOOL_CALLS][ARGS]{}", "[TOOL_CALLS][ARGS]{}", { { 0 } } },
        { CHAT_TOOLCALL_MISTRAL,
          "[INST] [TOOL] [TOOL_CALLS",
          "[INST] [TOOL] [TOOL_CALLS",
          { { 0 } } },
    };

    for (size_t i = 0; i < SLM_ARRAY_LEN(cases); i++)
        check_case(&cases[i]);
}

TEST(toolcall_llama3)
{
    static const struct tc_case cases[] = {
        { CHAT_TOOLCALL_LLAMA3,
          "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
          "",
          { { "get_weather", "{\"city\":\"Paris\"}" } } },
        { CHAT_TOOLCALL_LLAMA3,
          "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}",
          "",
          { { "f", "{}" } } },
        { CHAT_TOOLCALL_LLAMA3,
          " {\"name\":\"a\",\"parameters\":{}}; {\"name\":\"b\",\"arguments\":{\"k\":\"v\"}}",
          "",
          { { "a", "{}" }, { "b", "{\"k\":\"v\"}" } } },
        { CHAT_TOOLCALL_LLAMA3, "The answer is {\"a\": 1}", "The answer is {\"a\": 1}", { { 0 } } },
        { CHAT_TOOLCALL_LLAMA3, "{\"not\": \"a call\"}", "{\"not\": \"a call\"}", { { 0 } } },
        { CHAT_TOOLCALL_LLAMA3,
          "{\"name\": \"f\", \"parameters\": {",
          "{\"name\": \"f\", \"parameters\": {",
          { { 0 } } },
        { CHAT_TOOLCALL_LLAMA3,
          "<|python_tag|>brave_search.call(query=\"x\")",
          "<|python_tag|>brave_search.call(query=\"x\")",
          { { 0 } } },
        { CHAT_TOOLCALL_LLAMA3,
          "{\"name\":\"f\",\"parameters\":{}} trailing text",
          " trailing text",
          { { "f", "{}" } } },
        { CHAT_TOOLCALL_LLAMA3, "  \n", "  \n", { { 0 } } },
        { CHAT_TOOLCALL_LLAMA3, "<|python", "<|python", { { 0 } } },
    };

    for (size_t i = 0; i < SLM_ARRAY_LEN(cases); i++)
        check_case(&cases[i]);
}

TEST(toolcall_none_is_content)
{
    static const struct tc_case c = { CHAT_TOOLCALL_NONE,
                                      "[TOOL_CALLS]f[ARGS]{} <tool_call>{}</tool_call>",
                                      "[TOOL_CALLS]f[ARGS]{} <tool_call>{}</tool_call>",
                                      { { 0 } } };

    check_case(&c);
}

TEST(toolcall_random_splits_property)
{
    /* Random texts built from marker fragments and JSON pieces: any split
     * gives the unsplit result, and nothing crashes. */
    static const char *const pieces[] = {
        "<tool_call>",
        "</tool_call>",
        "[TOOL_CALLS]",
        "[ARGS]",
        "[CALL_ID]",
        "<|python_tag|>",
        "{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
        "{\"name\":\"g\",\"parameters\":{}}",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "\\",
        " ",
        "\n",
        ";",
        "text",
        "é",
        "name",
        "{\"x\":\"}\"}",
        "[{\"name\":\"h\",\"arguments\":{}}]",
    };
    struct slm_rng rng;
    char text[512];

    slm_rng_seed(&rng, 7);
    for (int iter = 0; iter < 400; iter++) {
        size_t len = 0, n_pieces = 1 + slm_rng_below(&rng, 12), cuts[6], n_cuts;
        enum chat_toolcall_format fmt =
            (enum chat_toolcall_format)slm_rng_below(&rng, CHAT_TOOLCALL_FORMAT_COUNT);
        struct collected whole, part;

        for (size_t i = 0; i < n_pieces; i++) {
            const char *pc = pieces[slm_rng_below(&rng, SLM_ARRAY_LEN(pieces))];
            size_t pl = strlen(pc);

            if (len + pl >= sizeof(text)) break;
            memcpy(text + len, pc, pl);
            len += pl;
        }
        text[len] = '\0';
        n_cuts = len > 1 ? slm_rng_below(&rng, 6) : 0;
        for (size_t i = 0; i < n_cuts; i++)
            cuts[i] = 1 + slm_rng_below(&rng, len - 1);
        for (size_t i = 1; i < n_cuts; i++) /* sort */
            for (size_t j = i; j > 0 && cuts[j] < cuts[j - 1]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        run_split(fmt, text, len, NULL, 0, &whole);
        run_split(fmt, text, len, cuts, n_cuts, &part);
        same(&part, &whole, text);
        /* Without calls, the content is the text itself. */
        if (whole.n_calls == 0) ASSERT_EQ_STR(slm_buf_str(&whole.content), text);
        coll_fini(&whole);
        coll_fini(&part);
    }
}

TEST(toolcall_limits_and_errors)
{
    struct chat_toolcall_parser *p = NULL;
    struct collected c;
    size_t big = (1u << 20) + 4096;
    char *text = slm_xmalloc(big + 64);
    int n;

    /* An endless call candidate is given up at the limit and returned as text. */
    n = snprintf(text, 64, "<tool_call>{\"name\": \"f\", \"arguments\": {\"s\": \"");
    memset(text + n, 'x', big - (size_t)n);
    coll_init(&c);
    ASSERT_OK(chat_toolcall_parser_new(CHAT_TOOLCALL_HERMES, 1, &p, NULL));
    ASSERT_OK(chat_toolcall_feed(p, text, big, collect, &c));
    ASSERT_OK(chat_toolcall_finish(p, collect, &c));
    ASSERT_EQ_SIZE(c.n_calls, 0);
    ASSERT_EQ_SIZE(c.content.len, big);
    ASSERT_ERR(chat_toolcall_feed(p, "x", 1, collect, &c), SLM_EINVAL);
    chat_toolcall_parser_free(p);
    coll_fini(&c);
    slm_free(text);

    /* A failing callback stops the parser with its code. */
    coll_init(&c);
    c.fail_after = 1;
    ASSERT_OK(chat_toolcall_parser_new(CHAT_TOOLCALL_MISTRAL, 1, &p, NULL));
    ASSERT_ERR(chat_toolcall_feed(p, "[TOOL_CALLS]f[ARGS]{}", 21, collect, &c), SLM_ECANCELED);
    chat_toolcall_parser_free(p);
    coll_fini(&c);

    ASSERT_ERR(chat_toolcall_parser_new((enum chat_toolcall_format)99, 1, &p, NULL), SLM_EINVAL);
    chat_toolcall_parser_free(NULL);
}

TEST(toolcall_ids_are_random_without_seed)
{
    struct chat_toolcall_parser *a = NULL, *b = NULL;
    struct collected ca, cb;
    const char *t = "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>";

    coll_init(&ca);
    coll_init(&cb);
    ASSERT_OK(chat_toolcall_parser_new(CHAT_TOOLCALL_HERMES, 0, &a, NULL));
    ASSERT_OK(chat_toolcall_parser_new(CHAT_TOOLCALL_HERMES, 0, &b, NULL));
    ASSERT_OK(chat_toolcall_feed(a, t, strlen(t), collect, &ca));
    ASSERT_OK(chat_toolcall_feed(b, t, strlen(t), collect, &cb));
    ASSERT_EQ_SIZE(ca.n_calls, 1);
    ASSERT_EQ_SIZE(cb.n_calls, 1);
    ASSERT(strcmp(ca.ids[0], cb.ids[0]) != 0);
    for (size_t i = 5; i < strlen(ca.ids[0]); i++)
        ASSERT((ca.ids[0][i] >= 'a' && ca.ids[0][i] <= 'z') ||
               (ca.ids[0][i] >= 'A' && ca.ids[0][i] <= 'Z') ||
               (ca.ids[0][i] >= '0' && ca.ids[0][i] <= '9'));
    chat_toolcall_parser_free(a);
    chat_toolcall_parser_free(b);
    coll_fini(&ca);
    coll_fini(&cb);
}

TEST(toolcall_format_names_and_detection)
{
    enum chat_toolcall_format f;
    static const struct {
        const char *src;
        enum chat_toolcall_format want;
    } det[] = {
        { "{{ '[TOOL_CALLS]' }}", CHAT_TOOLCALL_MISTRAL },
        { "<tool_call>\\n{{ x }}</tool_call>", CHAT_TOOLCALL_HERMES },
        { "<|start_header_id|>{\"name\": x, \"parameters\": y}", CHAT_TOOLCALL_LLAMA3 },
        { "<|python_tag|>", CHAT_TOOLCALL_LLAMA3 },
        { "<|im_start|>", CHAT_TOOLCALL_NONE },
    };

    for (unsigned i = 0; i < CHAT_TOOLCALL_FORMAT_COUNT; i++) {
        ASSERT_OK(chat_toolcall_format_parse(
            chat_toolcall_format_name((enum chat_toolcall_format)i), &f));
        ASSERT_EQ_INT(f, i);
    }
    ASSERT_ERR(chat_toolcall_format_parse("xml", &f), SLM_ENOTFOUND);
    ASSERT_EQ_STR(chat_toolcall_format_name((enum chat_toolcall_format)42), "unknown");
    for (size_t i = 0; i < SLM_ARRAY_LEN(det); i++)
        ASSERT_EQ_INT(chat_toolcall_format_detect(det[i].src, strlen(det[i].src)), det[i].want);
    ASSERT_EQ_INT(chat_toolcall_format_detect(NULL, 0), CHAT_TOOLCALL_NONE);
}
