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

/* ==== the JSON prefix validator (constrained decoding) ==== */

/* Feeds s[0..n) to a fresh validator; returns the index of the first byte
 * that made it invalid, or n (status in *st). */
static size_t jp_run(const char *s, size_t n, enum chat_json_status *st)
{
    struct chat_json_prefix j;

    chat_json_prefix_init(&j);
    *st = CHAT_JSON_PREFIX;
    for (size_t i = 0; i < n; i++) {
        *st = chat_json_prefix_feed(&j, s + i, 1);
        if (*st == CHAT_JSON_INVALID) return i;
    }
    return n;
}

/* The document parses with the strict parser of core/json.h. */
static bool strict_ok(const char *s, size_t n)
{
    struct json_doc *doc = NULL;
    int rc = json_parse(s, n, NULL, &doc, NULL, NULL);

    json_doc_free(doc);
    return rc == 0;
}

TEST(json_prefix_accepts_valid_documents_byte_by_byte)
{
    static const char *const ok[] = {
        "{}",
        " {\"a\" : [ ] ,\"b\":{}}",
        "{\"s\":\"plain \\\" \\\\ \\/ \\b \\f \\n \\r \\t\"}",
        "{\"u\":\"\\u00e9\\u20AC\\ud83d\\ude00\\uFFFF\"}",
        "{\"raw\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xed\x9f\xbf\"}",
        "{\"n\":[0,-0,1,-12,0.5,-0.25e+10,1E5,2e-3,10.01E99]}",
        "{\"l\":[true,false,null]}",
        "{\"x\":{\"a\":1},\"a\":2,\"y\":{\"a\":{\"a\":[{\"a\":3}]}}}",
        "{\"a\":1,\"A\":2,\"a \":3,\"\\u0062\":4}",
        "{\n  \"path\": \"src/main.c\",\n  \"line\": 42\n}",
    };

    for (size_t i = 0; i < SLM_ARRAY_LEN(ok); i++) {
        enum chat_json_status st;
        size_t n = strlen(ok[i]);
        struct chat_json_prefix j;

        ASSERT(strict_ok(ok[i], n));
        ASSERT_EQ_SIZE(jp_run(ok[i], n, &st), n);
        ASSERT_EQ_INT(st, CHAT_JSON_COMPLETE);
        /* every proper prefix is a prefix, fed in one piece too */
        for (size_t k = 0; k < n; k++) {
            chat_json_prefix_init(&j);
            ASSERT_EQ_INT(chat_json_prefix_feed(&j, ok[i], k), CHAT_JSON_PREFIX);
            ASSERT(chat_json_prefix_min_close(&j) > 0);
        }
        chat_json_prefix_init(&j);
        ASSERT_EQ_INT(chat_json_prefix_feed(&j, ok[i], n), CHAT_JSON_COMPLETE);
        ASSERT_EQ_SIZE(chat_json_prefix_min_close(&j), 0);
        /* nothing may follow the root */
        ASSERT_EQ_INT(chat_json_prefix_feed(&j, " ", 1), CHAT_JSON_INVALID);
    }
}

TEST(json_prefix_rejects_at_the_first_bad_byte)
{
    static const struct {
        const char *s;
        size_t bad;   /* index of the byte that must be refused */
        bool json_ok; /* valid JSON, but not what a tool call may be */
    } bad[] = {
        { "[]", 0, true },
        { "\"a\"", 0, true },
        { "1", 0, true },
        { "{\"a\":01}", 6, false },
        { "{\"a\":1.}", 7, false },
        { "{\"a\":-}", 6, false },
        { "{\"a\":-a}", 6, false },
        { "{\"a\":1e}", 7, false },
        { "{\"a\":1e+}", 8, false },
        { "{\"a\":1e999}", 9, false },
        { "{\"a\":.5}", 5, false },
        { "{\"a\":+1}", 5, false },
        { "{\"a\":1.2.3}", 8, false },
        { "{\"a\":tru}", 8, false },
        { "{\"a\":nul1}", 8, false },
        { "{\"a\":True}", 5, false },
        { "{\"a\":\"\\x\"}", 7, false },
        { "{\"a\":\"\\u12G4\"}", 10, false },
        { "{\"a\":\"\\udc00\"}", 9, false },
        { "{\"a\":\"\\uDFFF\"}", 9, false },
        { "{\"a\":\"\\ud800x\"}", 12, false },
        { "{\"a\":\"\\ud800\\n\"}", 13, false },
        { "{\"a\":\"\\ud800\\u0041\"}", 14, false },
        { "{\"a\":\"\\ud800\\udbff\"}", 15, false },
        { "{\"a\":\"\x01\"}", 6, false },
        { "{\"a\":\"\n\"}", 6, false },
        { "{\"a\":\"\xc0\x80\"}", 6, false },
        { "{\"a\":\"\xc1\xbf\"}", 6, false },
        { "{\"a\":\"\xe0\x80\x80\"}", 7, false },
        { "{\"a\":\"\xed\xa0\x80\"}", 7, false },
        { "{\"a\":\"\xf0\x80\x80\x80\"}", 7, false },
        { "{\"a\":\"\xf4\x90\x80\x80\"}", 7, false },
        { "{\"a\":\"\xf5\"}", 6, false },
        { "{\"a\":\"\x80\"}", 6, false },
        { "{\"a\":\"\xc3\x41\"}", 7, false },
        { "{\"a\":1,\"a\":2}", 9, false },
        { "{\"a\":1,\"\\u0061\":2}", 14, false },
        { "{\"\xc3\xa9\":1,\"\\u00e9\":2}", 15, false },
        { "{\"a\":1}}", 7, false },
        { "{\"a\":1} ", 7, true },
        { "{\"a\" 1}", 5, false },
        { "{,}", 1, false },
        { "{a:1}", 1, false },
        { "{'a':1}", 1, false },
        { "{\"a\":[1,]}", 8, false },
        { "{\"a\":[,1]}", 6, false },
        { "{\"a\":1,}", 7, false },
        { "{\"a\":]", 5, false },
        { "{\"a\":[}", 6, false },
        { "{\"a\":{]}", 6, false },
        { "{\"a\":1 2}", 7, false },
    };

    for (size_t i = 0; i < SLM_ARRAY_LEN(bad); i++) {
        enum chat_json_status st;
        size_t n = strlen(bad[i].s);

        ASSERT(bad[i].json_ok == strict_ok(bad[i].s, n));
        if (jp_run(bad[i].s, n, &st) != bad[i].bad) {
            fprintf(stderr, "case %zu '%s': refused at %zu, expected %zu\n", i, bad[i].s,
                    jp_run(bad[i].s, n, &st), bad[i].bad);
            ASSERT(0);
        }
        ASSERT_EQ_INT(st, CHAT_JSON_INVALID);
    }
}

TEST(json_prefix_bounds_depth_keys_numbers_whitespace)
{
    struct slm_buf b;
    enum chat_json_status st;
    struct chat_json_prefix j;

    slm_buf_init(&b, 1u << 20);
    /* depth: the root plus 31 arrays is the maximum */
    ASSERT_OK(slm_buf_append(&b, "{\"a\":", 5));
    for (unsigned i = 1; i < CHAT_JSON_DEPTH_MAX; i++)
        ASSERT_OK(slm_buf_append(&b, "[", 1));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len);
    ASSERT_EQ_INT(st, CHAT_JSON_PREFIX);
    ASSERT_OK(slm_buf_append(&b, "[", 1));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len - 1);
    /* at the maximum depth a scalar still fits, and the closes are counted */
    b.len--;
    ASSERT_OK(slm_buf_append(&b, "0", 1));
    chat_json_prefix_init(&j);
    ASSERT_EQ_INT(chat_json_prefix_feed(&j, b.data, b.len), CHAT_JSON_PREFIX);
    ASSERT_EQ_SIZE(chat_json_prefix_min_close(&j), CHAT_JSON_DEPTH_MAX);

    /* keys: CHAT_JSON_KEYS_MAX over all open objects, popped on close */
    slm_buf_reset(&b);
    ASSERT_OK(slm_buf_append(&b, "{", 1));
    for (unsigned i = 0; i < CHAT_JSON_KEYS_MAX; i++) {
        char k[32];
        int kn = snprintf(k, sizeof(k), "%s\"k%u\":%u", i ? "," : "", i, i);
        ASSERT_OK(slm_buf_append(&b, k, (size_t)kn));
    }
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len);
    ASSERT_OK(slm_buf_append(&b, ",", 1));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len - 1);
    b.len--;
    ASSERT_OK(slm_buf_append(&b, "}", 1));
    ASSERT(strict_ok(b.data, b.len));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len);
    ASSERT_EQ_INT(st, CHAT_JSON_COMPLETE);

    /* numbers: CHAT_JSON_NUMBER_MAX characters, no room for a digit after '.' */
    slm_buf_reset(&b);
    ASSERT_OK(slm_buf_append(&b, "{\"n\":", 5));
    for (unsigned i = 0; i < CHAT_JSON_NUMBER_MAX; i++)
        ASSERT_OK(slm_buf_append(&b, "7", 1));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len);
    ASSERT_OK(slm_buf_append(&b, "7", 1));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len - 1);
    b.len -= 2;
    ASSERT_OK(slm_buf_append(&b, ".", 1));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len - 1);
    b.len--;
    ASSERT_OK(slm_buf_append(&b, "e99}", 4));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len - 4); /* 'e' needs 2 bytes of room */
    b.len -= 4;
    b.len -= 2;
    ASSERT_OK(slm_buf_append(&b, "e99}", 4));
    ASSERT(strict_ok(b.data, b.len));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len);
    ASSERT_EQ_INT(st, CHAT_JSON_COMPLETE);

    /* whitespace runs outside strings; inside strings anything escaped goes */
    slm_buf_reset(&b);
    ASSERT_OK(slm_buf_append(&b, "{", 1));
    for (unsigned i = 0; i < CHAT_JSON_WS_MAX; i++)
        ASSERT_OK(slm_buf_append(&b, i % 2 ? "\n" : " ", 1));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len);
    ASSERT_OK(slm_buf_append(&b, "\t", 1));
    ASSERT_EQ_SIZE(jp_run(b.data, b.len, &st), b.len - 1);
    slm_buf_fini(&b);
}

/*
 * min_close is the exact shortest completion: from every state reached, a
 * byte that lowers it by one exists, and no byte lowers it by more (outside
 * key strings with an unfinished escape or UTF-8 sequence, where it keeps
 * one byte of slack for a possible duplicate). Random walks over all 256
 * byte values, then the greedy completion, must give a document the strict
 * parser accepts, in exactly min_close bytes.
 */
TEST(json_prefix_min_close_is_exact_and_completions_parse)
{
    struct slm_rng rng;
    struct slm_buf doc;

    slm_rng_seed(&rng, 42);
    slm_buf_init(&doc, 1u << 16);
    for (int walk = 0; walk < 300; walk++) {
        struct chat_json_prefix j;
        size_t steps = 1 + slm_rng_below(&rng, 80), mc;

        chat_json_prefix_init(&j);
        slm_buf_reset(&doc);
        for (size_t s = 0; s < steps; s++) {
            unsigned char valid[256];
            size_t n_valid = 0, mc0 = chat_json_prefix_min_close(&j);
            bool lowered = false;

            if (mc0 == 0) break;
            for (unsigned c = 0; c < 256; c++) {
                struct chat_json_prefix t = j;
                char ch = (char)c;

                if (chat_json_prefix_feed(&t, &ch, 1) == CHAT_JSON_INVALID) continue;
                valid[n_valid++] = (unsigned char)c;
                mc = chat_json_prefix_min_close(&t);
                if (mc < mc0) lowered = true;
                if (mc + 1 < mc0) {
                    /* only the documented slack: a key string with a pending unit */
                    ASSERT_EQ_SIZE(mc + 2, mc0);
                    ASSERT_EQ_INT(j.mode, 5 /* JP_STR */);
                    ASSERT(j.flags & 4u /* JPF_KEY */);
                }
            }
            if (!lowered) {
                fprintf(stderr, "stuck at min_close %zu (mode %u sub %u pend %u) after", mc0,
                        j.mode, j.sub, j.pend);
                for (size_t q = 0; q < doc.len; q++)
                    fprintf(stderr, " %02x", (unsigned char)doc.data[q]);
                fprintf(stderr, "\n");
            }
            ASSERT(lowered);
            ASSERT(n_valid > 0);
            {
                /* prefer structure now and then so walks go deep */
                unsigned char c = valid[slm_rng_below(&rng, n_valid)];

                for (int tries = 0; tries < 8 && slm_rng_below(&rng, 4) != 0 &&
                                    !(c >= 0x20 && c < 0x7f && c != 'x');
                     tries++)
                    c = valid[slm_rng_below(&rng, n_valid)];
                ASSERT_OK(slm_buf_append(&doc, (const char *)&c, 1));
                ASSERT(chat_json_prefix_feed(&j, (const char *)&c, 1) != CHAT_JSON_INVALID);
            }
        }
        /* Greedy completion: a byte that lowers min_close, lowest value first. */
        mc = chat_json_prefix_min_close(&j);
        for (size_t k = 0; chat_json_prefix_min_close(&j) > 0; k++) {
            size_t cur = chat_json_prefix_min_close(&j);
            bool found = false;

            ASSERT(k < mc);
            for (unsigned c = 0; c < 256 && !found; c++) {
                struct chat_json_prefix t = j;
                char ch = (char)c;

                if (chat_json_prefix_feed(&t, &ch, 1) == CHAT_JSON_INVALID ||
                    chat_json_prefix_min_close(&t) >= cur)
                    continue;
                j = t;
                found = true;
                ASSERT_OK(slm_buf_append(&doc, &ch, 1));
            }
            ASSERT(found);
        }
        ASSERT_EQ_SIZE(chat_json_prefix_min_close(&j), 0);
        if (!strict_ok(doc.data, doc.len)) {
            fprintf(stderr, "walk %d: completed document refused: %.*s\n", walk, (int)doc.len,
                    doc.data);
            ASSERT(0);
        }
    }
    slm_buf_fini(&doc);
}

/* ==== the reasoning split ==== */

struct think_out {
    struct slm_buf r, c;
    int fail_after, n;
};

static int think_collect(void *arg, bool reasoning, const char *text, size_t len)
{
    struct think_out *o = arg;

    ASSERT(len > 0);
    if (o->fail_after > 0 && ++o->n > o->fail_after) return SLM_ECANCELED;
    return slm_buf_append(reasoning ? &o->r : &o->c, text, len);
}

/* Feeds s split at cut points a and b (a <= b <= n) and checks the result. */
static void think_case(const char *s, bool inside, const char *want_r, const char *want_c)
{
    size_t n = strlen(s);

    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            struct chat_think_parser *p;
            struct think_out o;

            memset(&o, 0, sizeof(o));
            slm_buf_init(&o.r, 1u << 16);
            slm_buf_init(&o.c, 1u << 16);
            ASSERT_OK(chat_think_parser_new(inside, &p));
            ASSERT_OK(chat_think_feed(p, s, a, think_collect, &o));
            ASSERT_OK(chat_think_feed(p, s + a, b - a, think_collect, &o));
            ASSERT_OK(chat_think_feed(p, s + b, n - b, think_collect, &o));
            ASSERT_OK(chat_think_finish(p, think_collect, &o));
            ASSERT_ERR(chat_think_feed(p, "x", 1, think_collect, &o), SLM_EINVAL);
            if (strcmp(slm_buf_str(&o.r), want_r) != 0 || strcmp(slm_buf_str(&o.c), want_c) != 0) {
                fprintf(stderr, "'%s' split %zu/%zu: reasoning '%s' content '%s'\n", s, a, b,
                        slm_buf_str(&o.r), slm_buf_str(&o.c));
                ASSERT(0);
            }
            chat_think_parser_free(p);
            slm_buf_fini(&o.r);
            slm_buf_fini(&o.c);
        }
    }
}

TEST(think_split_at_every_byte)
{
    think_case("<think>\nabc\n</think>\n\nHello", false, "abc", "Hello");
    think_case("  <think>a b</think>c d ", false, "a b", "c d ");
    think_case("Hello <think>x</think>", false, "", "Hello <think>x</think>");
    think_case("<think>a b  \n", false, "a b", "");
    think_case("<think>a</thin", false, "a</thin", "");
    think_case("<think></think>", false, "", "");
    think_case("<think>a < b </thinx> c</think>d</think>", false, "a < b </thinx> c", "d</think>");
    think_case("<thin", false, "", "<thin");
    think_case("  <thi", false, "", "  <thi");
    think_case("  ", false, "", "  ");
    think_case("<thinking>x", false, "", "<thinking>x");
    think_case("</think>x", false, "", "</think>x");
    think_case("abc</think>def", true, "abc", "def");
    think_case("\n</think>\n\n<tool_call>{}", true, "", "<tool_call>{}");
    think_case("\n\xc3\xa9 \xe2\x82\xac\n", true, "\xc3\xa9 \xe2\x82\xac", "");
    think_case("", true, "", "");
    think_case("", false, "", "");
}

TEST(think_split_errors_and_prompt_detection)
{
    struct chat_think_parser *p;
    struct think_out o;

    memset(&o, 0, sizeof(o));
    slm_buf_init(&o.r, 1u << 16);
    slm_buf_init(&o.c, 1u << 16);
    o.fail_after = 1;
    ASSERT_OK(chat_think_parser_new(false, &p));
    ASSERT_OK(chat_think_feed(p, "<think>a</think>", 16, think_collect, &o));
    ASSERT_ERR(chat_think_feed(p, "b", 1, think_collect, &o), SLM_ECANCELED);
    chat_think_parser_free(p);
    chat_think_parser_free(NULL);
    slm_buf_fini(&o.r);
    slm_buf_fini(&o.c);

    ASSERT(chat_think_prompt_open("<|im_start|>assistant\n<think>\n", 30));
    ASSERT(chat_think_prompt_open("<think>", 7));
    ASSERT(!chat_think_prompt_open("<think>\n\n</think>\n\n", 19));
    ASSERT(!chat_think_prompt_open("think>", 6));
    ASSERT(!chat_think_prompt_open("", 0));
}

TEST(think_split_survives_allocation_failures)
{
    for (int k = 1; k < 20; k++) {
        struct chat_think_parser *p = NULL;
        struct think_out o;
        int rc;

        memset(&o, 0, sizeof(o));
        slm_buf_init(&o.r, 1u << 16);
        slm_buf_init(&o.c, 1u << 16);
        slm_alloc_fail_at(k);
        rc = chat_think_parser_new(false, &p);
        if (rc == 0) rc = chat_think_feed(p, "<think>abc ", 11, think_collect, &o);
        if (rc == 0) rc = chat_think_feed(p, "</think>x", 9, think_collect, &o);
        if (rc == 0) rc = chat_think_finish(p, think_collect, &o);
        slm_alloc_fail_at(0);
        ASSERT(rc == 0 || rc == SLM_ENOMEM);
        chat_think_parser_free(p);
        slm_buf_fini(&o.r);
        slm_buf_fini(&o.c);
    }
}
