/*
 * test_json.c - the JSON parser: grammar, strings, numbers, limits (T08),
 * duplicate keys, error positions, typed getters, parser<->writer round trip
 * and allocation-failure torture.
 */
#include <math.h>

#include "core/alloc.h"
#include "core/json.h"
#include "core/rand.h"
#include "harness/t.h"

static struct json_doc *parse_ok(const char *s)
{
    struct json_doc *doc = NULL;
    struct slm_diag d;
    int rc = json_parse(s, strlen(s), NULL, &doc, NULL, &d);

    if (rc < 0) t_fail(__FILE__, __LINE__, "parse of '%.60s' failed: %s", s, d.msg);
    return doc;
}

/* Parses s expecting code; returns the message. */
static const char *parse_err(const char *s, size_t len, int code, struct slm_diag *d)
{
    struct json_doc *doc = NULL;
    int rc = json_parse(s, len, NULL, &doc, NULL, d);

    if (rc != code)
        t_fail(__FILE__, __LINE__, "'%.60s': expected %s, got %s (%s)", s, slm_strerror(code),
               slm_strerror(rc), rc < 0 ? d->msg : "ok");
    ASSERT_NULL(doc);
    return d->msg;
}

TEST(json_parse_scalars)
{
    static const struct {
        const char *text;
        enum json_type type;
        int64_t i;
        double d;
    } cases[] = {
        { "null", JSON_NULL, 0, 0 },
        { " true ", JSON_BOOL, 1, 0 },
        { "false", JSON_BOOL, 0, 0 },
        { "0", JSON_INT, 0, 0 },
        { "-0", JSON_DOUBLE, 0, -0.0 },
        { "123", JSON_INT, 123, 0 },
        { "9223372036854775807", JSON_INT, INT64_MAX, 0 },
        { "-9223372036854775808", JSON_INT, INT64_MIN, 0 },
        { "9223372036854775808", JSON_DOUBLE, 0, 9223372036854775808.0 },
        { "-9223372036854775809", JSON_DOUBLE, 0, -9223372036854775809.0 },
        { "12345678901234567890", JSON_DOUBLE, 0, 12345678901234567890.0 },
        { "1.5", JSON_DOUBLE, 0, 1.5 },
        { "-0.25e2", JSON_DOUBLE, 0, -25.0 },
        { "1E+2", JSON_DOUBLE, 0, 100.0 },
        { "0.1", JSON_DOUBLE, 0, 0.1 },
        { "1e-400", JSON_DOUBLE, 0, 0.0 },
        { "1.7976931348623157e308", JSON_DOUBLE, 0, 1.7976931348623157e308 },
    };

    for (size_t k = 0; k < SLM_ARRAY_LEN(cases); k++) {
        struct json_doc *doc = parse_ok(cases[k].text);
        const struct json_value *v = json_doc_root(doc);

        ASSERT_EQ_INT(v->type, cases[k].type);
        if (v->type == JSON_INT || v->type == JSON_BOOL)
            ASSERT_EQ_INT(v->type == JSON_INT ? v->u.i : v->u.b, cases[k].i);
        if (v->type == JSON_DOUBLE) ASSERT(v->u.d == cases[k].d);
        json_doc_free(doc);
    }
}

TEST(json_big_integers_keep_int_syntax_flag)
{
    struct json_doc *doc = parse_ok("[18446744073709551616, 1e19, 2.0]");
    const struct json_value *r = json_doc_root(doc);

    ASSERT_EQ_INT(r->u.arr.items[0].flags, JSON_FLAG_INT_SYNTAX);
    ASSERT_EQ_INT(r->u.arr.items[1].flags, 0);
    ASSERT_EQ_INT(r->u.arr.items[2].flags, 0);
    json_doc_free(doc);
}

TEST(json_strings_all_escapes)
{
    const char *text =
        "\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\\u0000z\xc3\xa9\"";
    const char want[] = "a\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0z\xc3\xa9";
    struct json_doc *doc = parse_ok(text);
    const struct json_value *v = json_doc_root(doc);

    ASSERT_EQ_INT(v->type, JSON_STRING);
    ASSERT_EQ_SIZE(v->u.str.len, sizeof(want) - 1);
    ASSERT_EQ_MEM(v->u.str.ptr, want, sizeof(want));
    json_doc_free(doc);
}

TEST(json_embedded_nul_is_kept_by_length)
{
    struct json_doc *doc = parse_ok("{\"k\\u0000x\": \"a\\u0000b\", \"k\": 1}");
    const struct json_value *r = json_doc_root(doc), *v;

    v = json_obj_getn(r, "k\0x", 3);
    ASSERT_NOT_NULL(v);
    ASSERT_EQ_SIZE(v->u.str.len, 3);
    ASSERT_EQ_MEM(v->u.str.ptr, "a\0b", 3);
    v = json_obj_get(r, "k");
    ASSERT_NOT_NULL(v);
    ASSERT_EQ_INT(v->u.i, 1);
    json_doc_free(doc);
}

TEST(json_rejects_bad_strings)
{
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        { "\"\\ud800\"", "high surrogate \\ud800 not followed by a low surrogate" },
        { "\"\\ud800\\u0041\"", "high surrogate" },
        { "\"\\udc00\"", "lone low surrogate \\udc00" },
        { "\"\\ude00\\ud83d\"", "lone low surrogate" },
        { "\"\\x\"", "expected one of" },
        { "\"\\u12g4\"", "expected 4 hex digits after \\u" },
        { "\"\\u12\"", "expected 4 hex digits" },
        { "\"a\nb\"", "control character U+000A in string must be escaped" },
        { "\"a\tb\"", "control character U+0009" },
        { "\"\xff\"", "invalid UTF-8 in string" },
        { "\"\xc0\x80\"", "invalid UTF-8" },
        { "\"\xed\xa0\x80\"", "invalid UTF-8" },
        { "\"\xe2\x82\"", "invalid UTF-8" },
        { "\"\xf4\x90\x80\x80\"", "invalid UTF-8" },
        { "\"abc", "unterminated string" },
        { "\"abc\\", "unterminated string" },
    };
    struct slm_diag d;

    for (size_t k = 0; k < SLM_ARRAY_LEN(cases); k++) {
        const char *msg = parse_err(cases[k].text, strlen(cases[k].text), SLM_EFORMAT, &d);

        if (strstr(msg, cases[k].msg) == NULL)
            t_fail(__FILE__, __LINE__, "case %zu: '%s' lacks '%s'", k, msg, cases[k].msg);
    }
}

TEST(json_rejects_bad_syntax)
{
    static const struct {
        const char *text;
        int code;
        const char *msg;
    } cases[] = {
        { "", SLM_EFORMAT, "expected a value, got end of input" },
        { "  ", SLM_EFORMAT, "expected a value" },
        { "[", SLM_EFORMAT, "expected a value, got end of input" },
        { "[1,]", SLM_EFORMAT, "expected a value, got ']'" },
        { "[1 2]", SLM_EFORMAT, "expected ',' or ']' after array element, got '2'" },
        { "{\"a\":1,}", SLM_EFORMAT, "expected a string key, got '}'" },
        { "{\"a\" 1}", SLM_EFORMAT, "expected ':' after object key, got '1'" },
        { "{1:2}", SLM_EFORMAT, "expected a string key" },
        { "{\"a\":1 \"b\":2}", SLM_EFORMAT, "expected ',' or '}' after object member" },
        { "01", SLM_EFORMAT, "leading zeros" },
        { "-01", SLM_EFORMAT, "leading zeros" },
        { "1.", SLM_EFORMAT, "a digit after '.'" },
        { ".5", SLM_EFORMAT, "expected a value" },
        { "-", SLM_EFORMAT, "a digit after '-'" },
        { "-a", SLM_EFORMAT, "a digit after '-'" },
        { "1e", SLM_EFORMAT, "a digit in the exponent" },
        { "1e+", SLM_EFORMAT, "a digit in the exponent" },
        { "+1", SLM_EFORMAT, "expected a value, got '+'" },
        { "tru", SLM_EFORMAT, "expected a value" },
        { "nul", SLM_EFORMAT, "expected a value" },
        { "True", SLM_EFORMAT, "expected a value" },
        { "NaN", SLM_EFORMAT, "expected a value" },
        { "Infinity", SLM_EFORMAT, "expected a value" },
        { "-Infinity", SLM_EFORMAT, "a digit after '-'" },
        { "'a'", SLM_EFORMAT, "expected a value, got '''" },
        { "[1]x", SLM_EFORMAT, "expected end of input after the top-level value, got 'x'" },
        { "1 2", SLM_EFORMAT, "end of input after the top-level value" },
        { "\xef\xbb\xbf[]", SLM_EFORMAT, "byte order mark not allowed" },
        { "\f[]", SLM_EFORMAT, "got byte 0x0c" },
        { "[\xc2\xa0]", SLM_EFORMAT, "got byte 0xc2" },
        { "1e400", SLM_ERANGE, "number 1e400 is out of range of a double" },
        { "-1e400", SLM_ERANGE, "out of range" },
        { "[1,2", SLM_EFORMAT, "got end of input" },
    };
    struct slm_diag d;

    for (size_t k = 0; k < SLM_ARRAY_LEN(cases); k++) {
        const char *msg = parse_err(cases[k].text, strlen(cases[k].text), cases[k].code, &d);

        if (strstr(msg, cases[k].msg) == NULL)
            t_fail(__FILE__, __LINE__, "case %zu: '%s' lacks '%s'", k, msg, cases[k].msg);
    }
}

TEST(json_error_reports_line_column_offset)
{
    const char *text = "{\n  \"a\": 1,\n  \"b\" x\n}";
    struct json_doc *doc = NULL;
    struct json_pos pos;
    struct slm_diag d;

    ASSERT_ERR(json_parse(text, strlen(text), NULL, &doc, &pos, &d), SLM_EFORMAT);
    ASSERT_EQ_SIZE(pos.line, 3);
    ASSERT_EQ_SIZE(pos.column, 7);
    ASSERT_EQ_SIZE(pos.offset, 18);
    ASSERT_EQ_SIZE((size_t)(strchr(text, 'x') - text), 18);
    ASSERT_EQ_STR(d.msg,
                  "json: line 3 column 7 (offset 18): expected ':' after object key, got 'x'");
}

TEST(json_rejects_invalid_utf8_outside_strings)
{
    struct slm_diag d;

    parse_err("[1,\xff]", 5, SLM_EFORMAT, &d);
    ASSERT(strstr(d.msg, "byte 0xff") != NULL);
    parse_err("[1,\0]", 5, SLM_EFORMAT, &d);
    ASSERT(strstr(d.msg, "byte 0x00") != NULL);
}

/* T08: 10,000 nested arrays is an error, not a stack overflow. */
TEST(json_deep_nesting_is_limited)
{
    size_t n = 10000;
    char *s = slm_xmalloc(2 * n + 1);
    struct json_doc *doc = NULL;
    struct json_pos pos;
    struct slm_diag d;

    memset(s, '[', n);
    memset(s + n, ']', n);
    ASSERT_ERR(json_parse(s, 2 * n, NULL, &doc, &pos, &d), SLM_ELIMIT);
    ASSERT(strstr(d.msg, "nesting deeper than 64 levels") != NULL);
    ASSERT_EQ_SIZE(pos.offset, 64);
    /* Exactly 64 levels are fine, 65 are not. */
    memmove(s, s + n - 64, 64);
    memset(s + 64, ']', 64);
    ASSERT_OK(json_parse(s, 128, NULL, &doc, NULL, &d));
    json_doc_free(doc);
    memset(s, '[', 65);
    memset(s + 65, ']', 65);
    ASSERT_ERR(json_parse(s, 130, NULL, &doc, NULL, &d), SLM_ELIMIT);
    /* Objects count too, and a lower configured depth is honoured. */
    {
        struct json_parse_params p = json_parse_params_default();
        const char *t = "{\"a\":{\"b\":[1]}}";

        p.depth_max = 2;
        ASSERT_ERR(json_parse(t, strlen(t), &p, &doc, NULL, &d), SLM_ELIMIT);
        p.depth_max = 3;
        ASSERT_OK(json_parse(t, strlen(t), &p, &doc, NULL, &d));
        json_doc_free(doc);
    }
    slm_free(s);
}

TEST(json_size_and_memory_limits)
{
    struct json_parse_params p = json_parse_params_default();
    struct json_doc *doc = NULL;
    struct slm_diag d;
    size_t n = 200000;
    char *s = slm_xmalloc(2 * n + 2);

    p.bytes_max = 4;
    ASSERT_ERR(json_parse("[1,2]", 5, &p, &doc, NULL, &d), SLM_ELIMIT);
    ASSERT_EQ_STR(d.msg, "json: document of 5 bytes exceeds the limit of 4");
    /* 200,000 zeros need ~ 5 MB of DOM: fine by default, refused at 1 MiB. */
    s[0] = '[';
    for (size_t i = 0; i < n; i++) {
        s[1 + 2 * i] = '0';
        s[2 + 2 * i] = ',';
    }
    s[2 * n] = ']';
    ASSERT_OK(json_parse(s, 2 * n + 1, NULL, &doc, NULL, &d));
    ASSERT_EQ_SIZE(json_doc_root(doc)->u.arr.n, n);
    ASSERT(json_doc_mem(doc) < 16u << 20);
    json_doc_free(doc);
    p = json_parse_params_default();
    p.mem_max = 1u << 20;
    ASSERT_ERR(json_parse(s, 2 * n + 1, &p, &doc, NULL, &d), SLM_ELIMIT);
    ASSERT(strstr(d.msg, "document needs more than 1048576 bytes of memory") != NULL);
    /* A too long number literal is refused rather than handed to strtod. */
    memset(s, '1', 600);
    s[1] = '.';
    ASSERT_ERR(json_parse(s, 600, NULL, &doc, NULL, &d), SLM_ELIMIT);
    ASSERT(strstr(d.msg, "number longer than 512 characters") != NULL);
    slm_free(s);
}

TEST(json_duplicate_keys_are_rejected)
{
    struct slm_buf b;
    struct json_doc *doc = NULL;
    struct slm_diag d;

    parse_err("{\"model\":\"a\",\"model\":\"b\"}", 25, SLM_EFORMAT, &d);
    ASSERT(strstr(d.msg, "duplicate key 'model' in object") != NULL);
    /* Escapes are decoded before comparing: "a" and "\u0061" are one key. */
    parse_err("{\"a\":1,\"\\u0061\":2}", 18, SLM_EFORMAT, &d);
    /* Nested objects are checked independently. */
    doc = parse_ok("{\"a\":{\"a\":1},\"b\":{\"a\":2},\"a\\u0000\":3}");
    json_doc_free(doc);
    /* A large object goes through the sorted check. */
    slm_buf_init(&b, 1 << 20);
    ASSERT_OK(slm_buf_append_char(&b, '{'));
    for (int i = 0; i < 5000; i++)
        ASSERT_OK(slm_buf_printf(&b, "%s\"key%d\":%d", i ? "," : "", i, i));
    ASSERT_OK(slm_buf_append_char(&b, '}'));
    ASSERT_OK(json_parse(b.data, b.len, NULL, &doc, NULL, &d));
    ASSERT_EQ_INT(json_obj_get(json_doc_root(doc), "key4321")->u.i, 4321);
    json_doc_free(doc);
    b.len--;
    ASSERT_OK(slm_buf_append_str(&b, ",\"key777\":0}"));
    ASSERT_ERR(json_parse(b.data, b.len, NULL, &doc, NULL, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "duplicate key 'key777'") != NULL);
    slm_buf_fini(&b);
}

TEST(json_typed_getters_name_the_field)
{
    struct json_doc *doc = parse_ok("{\"temperature\":\"hot\",\"top_p\":null,\"max_tokens\":1.5,"
                                    "\"seed\":18446744073709551615,\"n\":5,\"stream\":1,"
                                    "\"model\":\"m\",\"t2\":0.5,\"msgs\":[1,2]}");
    const struct json_value *r = json_doc_root(doc);
    struct slm_diag d;
    double x;
    int64_t i;
    bool b;
    const char *s;
    size_t len;

    ASSERT_ERR(json_get_double(r, "temperature", 0, 2, &x, &d), SLM_EINVAL);
    ASSERT_EQ_STR(d.msg, "field 'temperature': expected number, got string");
    ASSERT_ERR(json_get_double(r, "top_p", 0, 1, &x, &d), SLM_ENOTFOUND);
    ASSERT_ERR(json_get_double(r, "absent", 0, 1, &x, &d), SLM_ENOTFOUND);
    ASSERT_EQ_STR(d.msg, "field 'absent': missing");
    ASSERT_ERR(json_get_int(r, "max_tokens", 1, 100, &i, &d), SLM_EINVAL);
    ASSERT_EQ_STR(d.msg, "field 'max_tokens': expected integer, got number");
    ASSERT_ERR(json_get_int(r, "seed", INT64_MIN, INT64_MAX, &i, &d), SLM_ERANGE);
    ASSERT(strstr(d.msg, "field 'seed': integer out of range") != NULL);
    ASSERT_ERR(json_get_int(r, "n", 1, 4, &i, &d), SLM_ERANGE);
    ASSERT_EQ_STR(d.msg, "field 'n': 5 is out of range [1, 4]");
    ASSERT_OK(json_get_int(r, "n", 1, 8, &i, &d));
    ASSERT_EQ_INT(i, 5);
    ASSERT_OK(json_get_double(r, "n", 0, 8, &x, &d));
    ASSERT(x == 5.0);
    ASSERT_ERR(json_get_double(r, "t2", 0.6, 2, &x, &d), SLM_ERANGE);
    ASSERT_EQ_STR(d.msg, "field 't2': 0.5 is out of range [0.6, 2]");
    ASSERT_ERR(json_get_bool(r, "stream", &b, &d), SLM_EINVAL);
    ASSERT_EQ_STR(d.msg, "field 'stream': expected boolean, got integer");
    ASSERT_OK(json_get_str(r, "model", &s, &len, &d));
    ASSERT_EQ_STR(s, "m");
    ASSERT_ERR(json_value_object(json_obj_get(r, "msgs"), "msgs", &d), SLM_EINVAL);
    ASSERT_EQ_STR(d.msg, "field 'msgs': expected object, got array");
    ASSERT_OK(json_value_array(json_obj_get(r, "msgs"), "msgs", &d));
    ASSERT_ERR(json_value_str(json_arr_at(json_obj_get(r, "msgs"), 1), "msgs[1]", &s, &len, &d),
               SLM_EINVAL);
    ASSERT_EQ_STR(d.msg, "field 'msgs[1]': expected string, got integer");
    ASSERT_NULL(json_arr_at(json_obj_get(r, "msgs"), 2));
    ASSERT_NULL(json_obj_get(json_obj_get(r, "msgs"), "x"));
    json_doc_free(doc);
}

static void roundtrip_text(const char *text, const char *want)
{
    struct json_doc *a = parse_ok(text), *b = NULL;
    struct json_writer w;
    struct slm_buf out;
    struct slm_diag d;

    slm_buf_init(&out, 1 << 20);
    json_writer_init(&w, &out, false);
    json_value_write(&w, json_doc_root(a));
    ASSERT_OK(json_writer_finish(&w));
    if (want != NULL) ASSERT_EQ_STR(out.data, want);
    ASSERT_OK(json_parse(out.data, out.len, NULL, &b, NULL, &d));
    ASSERT(json_value_equal(json_doc_root(a), json_doc_root(b)));
    json_doc_free(a);
    json_doc_free(b);
    slm_buf_fini(&out);
}

TEST(json_roundtrip_parser_writer)
{
    roundtrip_text(" { \"a\" : [ 1 , -2.5 , true , false , null , \"x\\ny\" ] , \"b\" : { } , "
                   "\"c\" : [ ] , \"\\u0000\" : \"\\ud83d\\ude00\" } ",
                   "{\"a\":[1,-2.5,true,false,null,\"x\\ny\"],\"b\":{},\"c\":[],"
                   "\"\\u0000\":\"\xf0\x9f\x98\x80\"}");
    roundtrip_text("[1e300,-1e-300,0.1,9223372036854775807,-9223372036854775808,123456789.125]",
                   NULL);
}

/* Builds a random value with the writer (depth-bounded) from rng. */
static void gen_value(struct json_writer *w, struct slm_rng *r, int depth)
{
    static const char *const strs[] = { "",     "a",  "\xc3\xa9", "\n\t\"\\", "\xf0\x9f\x98\x80",
                                        "x\0y", "key" };
    unsigned k = (unsigned)slm_rng_below(r, depth > 5 ? 5 : 7);

    switch (k) {
    case 0:
        json_null(w);
        break;
    case 1:
        json_bool(w, slm_rng_below(r, 2));
        break;
    case 2:
        json_int(w, (int64_t)slm_rng_next(r));
        break;
    case 3:
        json_double(w, ((double)(int64_t)slm_rng_next(r)) / 1e6 * pow(10, slm_rng_below(r, 40)));
        break;
    case 4: {
        size_t s = (size_t)slm_rng_below(r, SLM_ARRAY_LEN(strs));

        json_str(w, strs[s], s == 5 ? 3 : strlen(strs[s]));
        break;
    }
    case 5: {
        size_t n = (size_t)slm_rng_below(r, 5);

        json_arr_begin(w);
        for (size_t i = 0; i < n; i++)
            gen_value(w, r, depth + 1);
        json_arr_end(w);
        break;
    }
    default: {
        size_t n = (size_t)slm_rng_below(r, 5);

        json_obj_begin(w);
        for (size_t i = 0; i < n; i++) {
            char key[32];

            snprintf(key, sizeof(key), "k%zu", i);
            json_key(w, key);
            gen_value(w, r, depth + 1);
        }
        json_obj_end(w);
        break;
    }
    }
}

TEST(json_roundtrip_random_documents)
{
    struct slm_rng r;

    slm_rng_seed(&r, 42);
    for (int iter = 0; iter < 500; iter++) {
        struct slm_buf a, b;
        struct json_writer w;
        struct json_doc *doc = NULL;
        struct slm_diag d;

        slm_buf_init(&a, 1 << 20);
        slm_buf_init(&b, 1 << 20);
        json_writer_init(&w, &a, iter % 2 == 0);
        gen_value(&w, &r, 0);
        ASSERT_OK(json_writer_finish(&w));
        if (json_parse(a.data, a.len, NULL, &doc, NULL, &d) < 0)
            t_fail(__FILE__, __LINE__, "writer output does not parse: %s: %s", d.msg, a.data);
        json_writer_init(&w, &b, iter % 2 == 0);
        json_value_write(&w, json_doc_root(doc));
        ASSERT_OK(json_writer_finish(&w));
        ASSERT_EQ_SIZE(a.len, b.len);
        ASSERT_EQ_MEM(a.data, b.data, a.len);
        json_doc_free(doc);
        slm_buf_fini(&a);
        slm_buf_fini(&b);
    }
}

/* Z03: every allocation of a parse fails in turn; no crash, no leak. */
TEST(json_alloc_failure_torture)
{
    struct slm_buf b;
    uint64_t n;

    slm_buf_init(&b, 1 << 20);
    ASSERT_OK(slm_buf_append_str(&b,
                                 "{\"messages\":[{\"role\":\"user\",\"content\":\"hi \\u00e9\"}],"
                                 "\"deep\":[[[[[[1]]]]]],\"arr\":["));
    for (int i = 0; i < 3000; i++)
        ASSERT_OK(slm_buf_printf(&b, "%s%d.5", i ? "," : "", i));
    ASSERT_OK(slm_buf_append_str(&b, "],\"obj\":{"));
    for (int i = 0; i < 40; i++)
        ASSERT_OK(slm_buf_printf(&b, "%s\"k%d\":\"%0200d\"", i ? "," : "", i, i));
    ASSERT_OK(slm_buf_append_str(&b, "}}"));
    for (n = 1;; n++) {
        struct json_doc *doc = NULL;
        struct slm_diag d;
        int rc;

        slm_alloc_fail_at(n);
        rc = json_parse(b.data, b.len, NULL, &doc, NULL, &d);
        slm_alloc_fail_at(0);
        if (rc == 0) {
            ASSERT_EQ_SIZE(json_doc_root(doc)->u.obj.n, 4);
            json_doc_free(doc);
            break;
        }
        ASSERT_ERR(rc, SLM_ENOMEM);
        ASSERT_NULL(doc);
        ASSERT(strstr(d.msg, "out of memory") != NULL);
        ASSERT(n < 10000);
    }
    ASSERT(n > 10);
    slm_buf_fini(&b);
}

TEST(json_whitespace_and_empty_containers)
{
    struct json_doc *doc = parse_ok("\t\r\n [ {} , [ ] , { \"\" : [ {} ] } ] \n");
    const struct json_value *r = json_doc_root(doc);

    ASSERT_EQ_INT(r->type, JSON_ARRAY);
    ASSERT_EQ_SIZE(r->u.arr.n, 3);
    ASSERT_EQ_INT(r->u.arr.items[0].type, JSON_OBJECT);
    ASSERT_EQ_SIZE(r->u.arr.items[0].u.obj.n, 0);
    ASSERT_EQ_SIZE(r->u.arr.items[1].u.arr.n, 0);
    ASSERT_NOT_NULL(json_obj_get(&r->u.arr.items[2], ""));
    ASSERT_EQ_STR(json_type_name(JSON_DOUBLE), "number");
    json_doc_free(doc);
}

/* Regression (found by fuzz_template): an empty container before anything
 * was pushed did pointer arithmetic on NULL (undefined behaviour that
 * clang's UBSan reports). */
TEST(json_empty_containers_first)
{
    static const char *const docs[] = { "[]", "{}", "[[],{}]", "{\"a\":[]}" };

    for (size_t i = 0; i < SLM_ARRAY_LEN(docs); i++) {
        struct json_doc *doc = NULL;

        ASSERT_OK(json_parse(docs[i], strlen(docs[i]), NULL, &doc, NULL, NULL));
        ASSERT_NOT_NULL(json_doc_root(doc));
        json_doc_free(doc);
    }
}
