/*
 * test_template.c - the Jinja-subset interpreter (src/chat/template_*.c).
 *
 * Three kinds of tests: small templates with outputs checked against
 * Python Jinja2 by hand (each expected string below was produced by
 * /usr/bin/python3 with jinja2 3.1 and HF's settings); the real chat
 * templates in tests/data/templates/ rendered over the conversations in
 * tests/data/templates/cases.json by us and by Python Jinja2
 * (tests/reference/render_jinja.py, run as a subprocess) with the bytes
 * compared; and failure paths: syntax errors, runtime errors, limits,
 * hostile templates, allocation failures.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chat/chat.h"
#include "core/alloc.h"
#include "core/json.h"
#include "harness/t.h"

#define DATA_DIR    "tests/data/templates"
#define PY          "/usr/bin/python3"
#define PY_RENDERER "tests/reference/render_jinja.py"

static const char *default_messages = "[{\"role\":\"system\",\"content\":\"You are helpful.\"},"
                                      "{\"role\":\"user\",\"content\":\"Hello\"},"
                                      "{\"role\":\"assistant\",\"content\":\"Hi there\"},"
                                      "{\"role\":\"user\",\"content\":\"Bye\"}]";

struct render_result {
    int rc;
    struct slm_diag d;
    char *out;
};

/* Compiles and renders src with messages (JSON text) and optional extra JSON. */
static struct render_result render_with(const char *src, const char *messages, const char *extra,
                                        bool gen)
{
    struct render_result r = { 0 };
    struct chat_template *t = NULL;
    struct json_doc *mdoc = NULL, *edoc = NULL;
    struct chat_render_params p = { 0 };
    struct slm_buf out;

    slm_buf_init(&out, 1u << 24);
    r.rc = chat_template_new(src, strlen(src), &t, &r.d);
    if (r.rc < 0) goto done;
    ASSERT_OK(json_parse(messages, strlen(messages), NULL, &mdoc, NULL, NULL));
    if (extra != NULL) ASSERT_OK(json_parse(extra, strlen(extra), NULL, &edoc, NULL, NULL));
    p.messages = json_doc_root(mdoc);
    p.extra = edoc ? json_doc_root(edoc) : NULL;
    p.add_generation_prompt = gen;
    p.bos_token = "<s>";
    p.eos_token = "</s>";
    p.now = 1721995200;
    r.rc = chat_template_render(t, &p, &out, &r.d);
done:
    r.out = slm_strndup(slm_buf_str(&out), out.len);
    slm_buf_fini(&out);
    json_doc_free(mdoc);
    json_doc_free(edoc);
    chat_template_free(t);
    return r;
}

static struct render_result render(const char *src)
{
    return render_with(src, default_messages, NULL, true);
}

#define EXPECT_RENDER(src, expected)                                              \
    do {                                                                          \
        struct render_result r_ = render(src);                                    \
        if (r_.rc < 0) t_fail(__FILE__, __LINE__, "render failed: %s", r_.d.msg); \
        ASSERT_EQ_STR(r_.out, expected);                                          \
        slm_free(r_.out);                                                         \
    } while (0)

#define EXPECT_FAIL(src, code, needle)                                               \
    do {                                                                             \
        struct render_result r_ = render(src);                                       \
        ASSERT_ERR(r_.rc, code);                                                     \
        if (strstr(r_.d.msg, needle) == NULL)                                        \
            t_fail(__FILE__, __LINE__, "message '%s' lacks '%s'", r_.d.msg, needle); \
        slm_free(r_.out);                                                            \
    } while (0)

/* ---- syntax and whitespace ---- */

TEST(template_text_and_output)
{
    EXPECT_RENDER("plain text", "plain text");
    EXPECT_RENDER("a{{ 1 + 2 }}b{{ 'x' ~ 3 }}", "a3bx3");
    EXPECT_RENDER("{# comment #}x{{ none }}{{ true }}{{ undefined_thing }}|", "xNoneTrue|");
    EXPECT_RENDER("line\n", "line");       /* one trailing newline dropped */
    EXPECT_RENDER("line\n\n", "line\n");   /* only one */
    EXPECT_RENDER("a\r\nb\rc", "a\nb\nc"); /* newlines normalised */
    EXPECT_RENDER("{% raw %}{{ x }}{% endraw %}", "{{ x }}");
}

TEST(template_whitespace_control)
{
    /* trim_blocks drops the newline after a block tag; lstrip_blocks the
     * indentation before it. Outputs checked with Python Jinja2. */
    EXPECT_RENDER("{% if true %}\n  yes\n{% endif %}\nafter", "  yes\nafter");
    EXPECT_RENDER("    {% if true %}x{% endif %}", "x");
    EXPECT_RENDER("a   {% if true %}x{% endif %}", "a   x");
    EXPECT_RENDER("a\n    {%+ if true %}x{% endif %}", "a\n    x");
    EXPECT_RENDER("a  \n  {%- if true -%}  \n  x  {%- endif %}\n", "ax");
    EXPECT_RENDER("{{ 'a' }}\n{{ 'b' }}", "a\nb");
    EXPECT_RENDER("{{- 'a' -}}  \n  {{ 'b' }}", "ab");
    EXPECT_RENDER("  {# c #}\nx", "x");
    EXPECT_RENDER("{% for i in [1,2] %}\n{{ i }}\n{% endfor %}\n", "1\n2\n");
}

TEST(template_expressions)
{
    EXPECT_RENDER("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }}",
                  "3 -4 1 2 1024 3.5");
    EXPECT_RENDER("{{ 1e16 }} {{ 1/3 }} {{ 10/2 }} {{ 0.1 + 0.2 }} {{ 1.5e-7 }}",
                  "1e+16 0.3333333333333333 5.0 0.30000000000000004 1.5e-07");
    EXPECT_RENDER("{{ 'ab' * 3 }}{{ [1] * 2 }}{{ [1, 2] + [3] }}", "ababab[1, 1][1, 2, 3]");
    EXPECT_RENDER("{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ 'a' in 'cat' }}{{ 2 not in [1] }}",
                  "TrueFalseTrueTrue");
    EXPECT_RENDER("{{ 'x' if false }}|{{ 'y' if 0 else 'z' }}|{{ none or 'd' }}|{{ 0 and 1 }}",
                  "|z|d|0");
    EXPECT_RENDER("{{ not 1 == 2 }}{{ (1, 2) }}{{ (1,) }}{{ {'a': [1, 'x']} }}",
                  "True(1, 2)(1,){'a': [1, 'x']}");
    EXPECT_RENDER("{{ \"it's\" }}|{{ ['it\\'s', \"q\\\"\"] }}|{{ 'a\\nb'|string }}",
                  "it's|[\"it's\", 'q\"']|a\nb");
    EXPECT_RENDER("{{ 'héllo'[1:3] }}{{ 'héllo'|length }}{{ 'héllo'[::-1] }}{{ [1,2,3][-1] }}",
                  "él5olléh3");
    EXPECT_RENDER("{{ [1,2,3,4,5][1:4:2] }}{{ [1,2,3][5] }}|{{ 'abc'[10] }}|", "[2, 4]||");
    EXPECT_RENDER("{{ true == 1 }}{{ 1 == 1.0 }}{{ none == none }}{{ [1] == [1] }}",
                  "TrueTrueTrueTrue");
    EXPECT_RENDER("{{ 'a' 'b' }}{{ 1_000 }}", "ab1000");
}

TEST(template_statements)
{
    EXPECT_RENDER("{% for i in [1,2,3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}"
                  "{{ loop.last }}{{ loop.length }}{{ loop.revindex }};{% endfor %}",
                  "10TrueFalse33;21FalseFalse32;32FalseTrue31;");
    EXPECT_RENDER("{% for i in [] %}x{% else %}empty{% endfor %}", "empty");
    EXPECT_RENDER("{% for i in range(10) if i is odd %}{{ i }}{{ loop.last }}{% endfor %}",
                  "1False3False5False7False9True");
    EXPECT_RENDER("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }},{% endfor %}",
                  "a=1,b=2,");
    EXPECT_RENDER("{% for i in [1,2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}{{ x }}", "12");
    EXPECT_RENDER("{% set ns = namespace(n=0) %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}"
                  "{% endfor %}{{ ns.n }}",
                  "6");
    EXPECT_RENDER("{% if 0 %}a{% elif 1 %}b{% else %}c{% endif %}", "b");
    EXPECT_RENDER("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}"
                  "{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}",
                  "02");
    EXPECT_RENDER("{% macro m(a, b='B') %}[{{ a }}{{ b }}]{% endmacro %}{{ m(1) }}{{ m(2, b=3) }}",
                  "[1B][23]");
    EXPECT_RENDER("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}",
                  "<in>");
    EXPECT_RENDER("{% set a, b = 1, 2 %}{{ b }}{{ a }}", "21");
    EXPECT_RENDER("{% set t %}X{{ 1 }}{% endset %}{{ t }}{{ t|length }}", "X12");
    EXPECT_RENDER("{% filter upper %}abc{% endfilter %}", "ABC");
    EXPECT_RENDER("{% generation %}gen{% endgeneration %}", "gen");
    EXPECT_RENDER("{% for m in messages %}{% for x in [1] %}{{ loop.depth }}{% endfor %}"
                  "{% endfor %}",
                  "2222");
    EXPECT_RENDER("{% for m in messages %}{{ loop.previtem.role if loop.previtem }}|"
                  "{% endfor %}",
                  "|system|user|assistant|");
    EXPECT_RENDER("{% for c in 'ab' %}{{ loop.cycle('x', 'y') }}{{ c }}{% endfor %}", "xayb");
}

TEST(template_filters)
{
    EXPECT_RENDER(
        "{{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ [1,2]|length }}|{{ 'AbC'|lower }}",
        "x|hi|2|abc");
    EXPECT_RENDER("{{ 'hello world-x'|title }}|{{ 'hELLO'|capitalize }}|{{ 'a-b'|upper }}",
                  "Hello World-X|Hello|A-B");
    EXPECT_RENDER("{{ 'aXbX'|replace('X', '-') }}|{{ 'ab'|replace('', '.') }}|{{ u|default('d') }}"
                  "|{{ ''|default('e', true) }}",
                  "a-b-|.a.b.|d|e");
    EXPECT_RENDER("{{ [1, 'a', none]|join(', ') }}|{{ [3,1,2]|first }}{{ [3,1,2]|last }}"
                  "|{{ 'abc'|list }}|{{ {'k': 1}|items|list }}",
                  "1, a, None|32|['a', 'b', 'c']|[('k', 1)]");
    EXPECT_RENDER(
        "{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}",
        "['Hello', 'Bye']");
    EXPECT_RENDER("{{ messages|rejectattr('role', 'in', ['user', 'system'])|list|length }}", "1");
    EXPECT_RENDER(
        "{{ ['a', 'A', 'b']|unique|list }}|{{ [3, 1, 2]|sort }}|{{ [1, 2]|reverse|list }}",
        "['a', 'b']|[1, 2, 3]|[2, 1]");
    EXPECT_RENDER("{{ '3'|int + 1 }}|{{ 'x'|int }}|{{ '2.5'|float }}|{{ 2.567|round(2) }}"
                  "|{{ 2.5|round }}|{{ -3|abs }}|{{ 'a b  c'|wordcount }}",
                  "4|0|2.5|2.57|2.0|3|3");
    EXPECT_RENDER("{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}",
                  "a\n  b\n\n  c|  a\n  b");
    EXPECT_RENDER("{{ [1, 2, 3]|sum }}|{{ [1, 5, 2]|max }}|{{ ['b', 'a']|min }}|{{ '<&>'|e }}",
                  "6|5|a|&lt;&amp;&gt;");
    EXPECT_RENDER("{{ {'b': 1, 'a': [1, 2.0, none, true, 'é\"\\n']}|tojson }}",
                  "{\"b\": 1, \"a\": [1, 2.0, null, true, \"é\\\"\\n\"]}");
    EXPECT_RENDER("{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}",
                  "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
    EXPECT_RENDER(
        "{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ 'é'|tojson(ensure_ascii=true) }}"
        "|{{ [1,2]|tojson(separators=(',', ':')) }}",
        "{\"a\": 2, \"b\": 1}|\"\\u00e9\"|[1,2]");
    EXPECT_RENDER("{{ {'k': 'v'}|string }}|{{ 1.0|string }}|{{ [1]|safe }}", "{'k': 'v'}|1.0|[1]");
    EXPECT_RENDER("{{ {'b': 2, 'a': 1}|dictsort }}", "[('a', 1), ('b', 2)]");
}

TEST(template_tests_and_methods)
{
    EXPECT_RENDER("{{ x is defined }}{{ messages is defined }}{{ none is none }}{{ 'a' is string }}"
                  "{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}{{ 1 is number }}",
                  "FalseTrueTrueTrueTrueTrueTrueTrue");
    EXPECT_RENDER("{{ 6 is divisibleby 3 }}{{ 1 is eq 1 }}{{ 2 is ne 2 }}{{ 1 is in [1] }}"
                  "{{ true is boolean }}{{ 1 is integer }}{{ 1.5 is float }}{{ x is not defined }}",
                  "TrueTrueFalseTrueTrueTrueTrueTrue");
    EXPECT_RENDER("{{ ' a b '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}"
                  "|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}",
                  "a b|['a', 'b', '', 'c']|['a', 'b']|TrueTrue");
    EXPECT_RENDER("{{ 'x</think>y'.split('</think>')[-1] }}|{{ '\\n\\nz'.lstrip('\\n') }}"
                  "|{{ 'they\\'re bill'.title() }}|{{ 'a-b'.replace('-', '+') }}",
                  "y|z|They'Re Bill|a+b");
    EXPECT_RENDER("{{ messages[0].get('role') }}{{ messages[0].get('nope', 'dflt') }}"
                  "{{ messages[0].keys()|list }}",
                  "systemdflt['role', 'content']");
    EXPECT_RENDER("{{ '{} and {name}'.format(1, name='n') }}|{{ '%s-%d' % ('a', 3) }}",
                  "1 and n|a-3");
    EXPECT_RENDER("{{ 'abcabc'.find('c') }}{{ 'abcabc'.rfind('c') }}{{ 'abcabc'.count('bc') }}"
                  "{{ ', '.join(['x', 'y']) }}",
                  "252x, y");
    EXPECT_RENDER("{{ strftime_now('%Y') | length }}{{ dict(a=1) }}{{ range(2, 8, 3)|list }}",
                  "4{'a': 1}[2, 5]");
    EXPECT_RENDER("{{ none.attr }}|{{ 5.attr }}|{{ messages.append is defined }}"
                  "|{{ messages[0].__class__ is defined }}",
                  "||False|False");
}

static char *read_file(const char *path, size_t *len);

/* ---- errors ---- */

TEST(template_syntax_errors)
{
    static const struct {
        const char *src;
        const char *needle;
    } bad[] = {
        { "{{ 1 + }}", "expected an expression" },
        { "{% if x %}no end", "unexpected end of template, expected 'endif'" },
        { "{% for x in y %}{% endif %}", "unknown tag 'endif'" },
        { "{{ x|nosuchfilter }}", "no filter named 'nosuchfilter'" },
        { "{{ x is nosuchtest }}", "no test named 'nosuchtest'" },
        { "{% include 'x' %}", "not supported" },
        { "{{ 'unterminated }}", "unterminated string" },
        { "{# never closed", "missing end of comment" },
        { "{{ (1, 2 }}", "unexpected '}'" },
        { "{{ x ]}}", "unexpected ']'" },
        { "{% break %}", "outside of a for loop" },
        { "{% for i in [1] %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}",
          "outside of a for loop" },
        { "{{ 1 $ 2 }}", "unexpected char '$'" },
        { "{% set 1 = 2 %}", "assign" },
        { "text {{ x", "unexpected end of template" },
        { "{{ 99999999999999999999 }}", "does not fit 64 bits" },
    };

    for (size_t i = 0; i < SLM_ARRAY_LEN(bad); i++) {
        struct chat_template *t = NULL;
        struct slm_diag d = { 0 };
        int rc = chat_template_new(bad[i].src, strlen(bad[i].src), &t, &d);

        if (rc != SLM_EFORMAT || strstr(d.msg, bad[i].needle) == NULL)
            t_fail(__FILE__, __LINE__, "'%s': rc %d msg '%s' (want '%s')", bad[i].src, rc, d.msg,
                   bad[i].needle);
        ASSERT_NULL(t);
        ASSERT(strstr(d.msg, "template line ") == d.msg || strstr(d.msg, "template:") == d.msg);
    }
}

TEST(template_runtime_errors)
{
    EXPECT_FAIL("{{ raise_exception('Conversation roles must alternate') }}", SLM_EINVAL,
                "Conversation roles must alternate");
    EXPECT_FAIL("{{ raise_exception(x) }}", SLM_EINVAL, "with no message"); /* fuzz regression */
    EXPECT_FAIL("{{ nope.attr }}", SLM_EINVAL, "'nope' is undefined");
    EXPECT_FAIL("\n\n{{ 'a' + 1 }}", SLM_EINVAL, "template line 3: unsupported operand");
    EXPECT_FAIL("{{ 'a' + nope }}", SLM_EINVAL, "'nope' is undefined");
    EXPECT_FAIL("{{ 1 / 0 }}", SLM_EINVAL, "division by zero");
    EXPECT_FAIL("{{ x|tojson }}", SLM_EINVAL, "not JSON serializable");
    EXPECT_FAIL("{{ messages|selectattr('role')|length }}", SLM_EINVAL, "has no len()");
    EXPECT_FAIL("{{ messages.append(1) }}", SLM_EINVAL, "unsafe");
    EXPECT_FAIL("{{ 2 ** 70 }}", SLM_ERANGE, "64 bits");
    EXPECT_FAIL("{{ none|length }}", SLM_EINVAL, "has no len()");
    EXPECT_FAIL("{% for x in 5 %}{% endfor %}", SLM_EINVAL, "not iterable");
    EXPECT_FAIL("{% set ns = 1 %}{% set ns.a = 1 %}", SLM_EINVAL, "non-namespace");
    EXPECT_FAIL("{{ 'x'.zfill(3) }}", SLM_EUNSUPPORTED, "not supported");
}

TEST(template_limits)
{
    /* Runaway loops, huge output, deep recursion and huge ranges end with
     * SLM_ELIMIT quickly instead of hanging or exhausting memory. */
    EXPECT_FAIL("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                SLM_ELIMIT, "template line 1: ");
    EXPECT_FAIL("{% set r = range(1000) %}{% for a in r %}{% for b in r %}{% for c in r %}"
                "{% endfor %}{% endfor %}{% endfor %}",
                SLM_ELIMIT, "steps");
    EXPECT_FAIL("{{ range(1000000) }}", SLM_ELIMIT, "range too big");
    EXPECT_FAIL("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", SLM_ELIMIT,
                "nested deeper");
    EXPECT_FAIL("{% set s = 'x' * 1000000 %}{% for i in range(40) %}{{ s }}{% endfor %}",
                SLM_ELIMIT, "exceeds");
    EXPECT_FAIL("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(30) %}"
                "{% set ns.s = ns.s + ns.s %}{% endfor %}",
                SLM_ELIMIT, "bytes");
}

TEST(template_nesting_limit)
{
    /* 10,000 nested parentheses, 100,000 chained operators and nested ifs are
     * refused at compile time (no stack overflow). */
    size_t n = 10000;
    char *src = slm_xmalloc(n * 2 + 16);
    struct chat_template *t = NULL;
    struct slm_diag d = { 0 };
    size_t o = 0;

    o += (size_t)snprintf(src, 8, "{{ ");
    for (size_t i = 0; i < n; i++)
        src[o++] = '(';
    src[o] = '\0';
    ASSERT_ERR(chat_template_new(src, o, &t, &d), SLM_ELIMIT);
    slm_free(src);

    n = 100000;
    src = slm_xmalloc(n * 2 + 16);
    o = (size_t)snprintf(src, 8, "{{ 1");
    for (size_t i = 0; i < n; i++) {
        src[o++] = '+';
        src[o++] = '1';
    }
    o += (size_t)snprintf(src + o, 8, " }}");
    ASSERT_ERR(chat_template_new(src, o, &t, &d), SLM_ELIMIT);
    ASSERT(strstr(d.msg, "nesting deeper") != NULL);
    slm_free(src);

    src = slm_xmalloc(300 * 20 + 16);
    o = 0;
    for (size_t i = 0; i < 300; i++)
        o += (size_t)snprintf(src + o, 20, "{%% if 1 %%}");
    ASSERT_ERR(chat_template_new(src, o, &t, &d), SLM_ELIMIT);
    slm_free(src);
}

TEST(template_hostile_inputs)
{
    /* SSTI payloads from CVE-2024-34359-style attacks: no attribute walks to
     * Python internals exist here, each is a clean error or harmless text. */
    static const char *const payloads[] = {
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ self.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ lipsum.__globals__['os'].popen('id') }}",
        "{{ request.application.__globals__ }}",
        "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
        "{{ config.items() }}",
        "{{ messages.__class__ }}{{ messages[0].__dict__ }}",
        "{{ namespace.__init__ }}",
        "{{ raise_exception.__code__ }}",
    };

    for (size_t i = 0; i < SLM_ARRAY_LEN(payloads); i++) {
        struct render_result r = render(payloads[i]);

        if (r.rc == 0)
            ASSERT_EQ_STR(r.out, "");
        else
            ASSERT(r.rc == SLM_EINVAL || r.rc == SLM_EFORMAT);
        ASSERT(r.d.msg[0] != '\0' || r.rc == 0);
        slm_free(r.out);
    }
}

TEST(template_junk_is_a_syntax_error)
{
    /* 1 MiB of pseudo-random bytes (valid UTF-8 printable ASCII plus tag
     * starts) compiles to a clean error or a harmless template, fast. */
    size_t n = 1u << 20;
    char *src = slm_xmalloc(n);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    static const char alphabet[] = "{}%#()[]'\" abc|.-+~=1\n";

    for (int round = 0; round < 3; round++) {
        struct chat_template *t = NULL;
        struct slm_diag d = { 0 };
        int rc;

        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            src[i] = round == 0   ? alphabet[x % (sizeof(alphabet) - 1)]
                     : round == 1 ? (char)('{' + (x % 3))
                                  : (char)(0x20 + x % 95);
        }
        rc = chat_template_new(src, n, &t, &d);
        if (rc == 0) {
            struct slm_buf out;
            struct json_doc *doc = NULL;
            struct chat_render_params p = { 0 };

            ASSERT_OK(json_parse("[]", 2, NULL, &doc, NULL, NULL));
            p.messages = json_doc_root(doc);
            slm_buf_init(&out, 1u << 24);
            rc = chat_template_render(t, &p, &out, &d);
            ASSERT(rc == 0 || d.msg[0] != '\0');
            slm_buf_fini(&out);
            json_doc_free(doc);
            chat_template_free(t);
        } else {
            ASSERT(rc == SLM_EFORMAT || rc == SLM_ELIMIT);
            ASSERT(d.msg[0] != '\0');
        }
    }
    /* Invalid UTF-8 and over-long sources. */
    {
        struct chat_template *t = NULL;
        struct slm_diag d = { 0 };

        ASSERT_ERR(chat_template_new("a\xff", 2, &t, &d), SLM_EFORMAT);
        ASSERT(strstr(d.msg, "UTF-8") != NULL);
        ASSERT_ERR(chat_template_new(src, (4u << 20) + 1, &t, &d), SLM_ELIMIT);
    }
    slm_free(src);
}

TEST(template_output_buffer_cap)
{
    struct chat_template *t = NULL;
    struct json_doc *doc = NULL;
    struct chat_render_params p = { 0 };
    struct slm_buf out;
    struct slm_diag d = { 0 };
    const char *src = "{% for i in range(100) %}0123456789{% endfor %}";

    ASSERT_OK(chat_template_new(src, strlen(src), &t, &d));
    ASSERT_OK(json_parse("[]", 2, NULL, &doc, NULL, NULL));
    p.messages = json_doc_root(doc);
    slm_buf_init(&out, 500);
    ASSERT_ERR(chat_template_render(t, &p, &out, &d), SLM_ELIMIT);
    ASSERT(strstr(d.msg, "output buffer") != NULL);
    slm_buf_fini(&out);
    /* A lower step budget is honoured. */
    slm_buf_init(&out, 1u << 20);
    p.steps_max = 50;
    ASSERT_ERR(chat_template_render(t, &p, &out, &d), SLM_ELIMIT);
    ASSERT(strstr(d.msg, "steps") != NULL);
    slm_buf_fini(&out);
    json_doc_free(doc);
    chat_template_free(t);
}

TEST(template_alloc_failure_torture)
{
    /* Every allocation of compile + render fails in turn: always an error
     * code, never a crash (and ASan sees no leak). */
    const char *src = "{% set ns = namespace(a=[]) %}{% for m in messages %}{{ m.role|upper }}"
                      "{{ m.content|tojson }}{% endfor %}{{ messages|map(attribute='role')|join }}";
    struct json_doc *doc = NULL;
    uint64_t total;

    ASSERT_OK(json_parse(default_messages, strlen(default_messages), NULL, &doc, NULL, NULL));
    slm_alloc_fail_at(0);
    {
        struct render_result r = render(src);

        ASSERT_OK(r.rc);
        slm_free(r.out);
    }
    total = 200;
    for (uint64_t n = 1; n <= total; n++) {
        struct chat_template *t = NULL;
        struct chat_render_params p = { 0 };
        struct slm_buf out;
        struct slm_diag d = { 0 };
        int rc;

        slm_buf_init(&out, 1u << 20);
        slm_alloc_fail_at(n);
        rc = chat_template_new(src, strlen(src), &t, &d);
        if (rc == 0) {
            p.messages = json_doc_root(doc);
            rc = chat_template_render(t, &p, &out, &d);
        }
        slm_alloc_fail_at(0);
        ASSERT(rc == 0 || rc == SLM_ENOMEM);
        chat_template_free(t);
        slm_buf_fini(&out);
    }
    json_doc_free(doc);
}

TEST(template_builtins)
{
    static const char *const names[] = { "chatml", "llama3", "mistral" };
    static const char *const starts[] = { "<|im_start|>system\nYou are helpful.<|im_end|>\n",
                                          "<s><|start_header_id|>system<|end_header_id|>\n\n",
                                          "<s>[SYSTEM_PROMPT]You are helpful.[/SYSTEM_PROMPT]" };
    struct chat_template *t = NULL;
    struct slm_diag d = { 0 };

    for (size_t i = 0; i < 3; i++) {
        struct json_doc *doc = NULL;
        struct chat_render_params p = { 0 };
        struct slm_buf out;

        ASSERT_OK(chat_template_builtin(names[i], &t, &d));
        ASSERT_OK(json_parse(default_messages, strlen(default_messages), NULL, &doc, NULL, NULL));
        p.messages = json_doc_root(doc);
        p.bos_token = "<s>";
        p.eos_token = "</s>";
        p.add_generation_prompt = true;
        slm_buf_init(&out, 1u << 20);
        ASSERT_OK(chat_template_render(t, &p, &out, &d));
        ASSERT(strncmp(slm_buf_str(&out), starts[i], strlen(starts[i])) == 0);
        slm_buf_fini(&out);
        json_doc_free(doc);
        chat_template_free(t);
    }
    /* The fixture copies in tests/data/templates/ (compared with Jinja2) are
     * the same text as the built-ins. */
    for (size_t i = 0; i < 3 && access(DATA_DIR, R_OK) == 0; i++) {
        char path[256];
        size_t len;
        char *src;
        struct render_result a, b;

        snprintf(path, sizeof(path), DATA_DIR "/builtin-%s.jinja", names[i]);
        src = read_file(path, &len);
        ASSERT_NOT_NULL(src);
        a = render(src);
        ASSERT_OK(chat_template_builtin(names[i], &t, &d));
        chat_template_free(t);
        {
            /* render the built-in through the public API by name */
            struct json_doc *doc = NULL;
            struct chat_render_params p = { 0 };
            struct slm_buf out;

            ASSERT_OK(chat_template_builtin(names[i], &t, &d));
            ASSERT_OK(
                json_parse(default_messages, strlen(default_messages), NULL, &doc, NULL, NULL));
            p.messages = json_doc_root(doc);
            p.bos_token = "<s>";
            p.eos_token = "</s>";
            p.add_generation_prompt = true;
            p.now = 1721995200;
            slm_buf_init(&out, 1u << 20);
            ASSERT_OK(chat_template_render(t, &p, &out, &d));
            b.out = slm_strndup(slm_buf_str(&out), out.len);
            slm_buf_fini(&out);
            json_doc_free(doc);
            chat_template_free(t);
        }
        ASSERT_OK(a.rc);
        ASSERT_EQ_STR(a.out, b.out);
        slm_free(a.out);
        slm_free(b.out);
        slm_free(src);
    }
    ASSERT_ERR(chat_template_builtin("gemma", &t, &d), SLM_ENOTFOUND);
    ASSERT(strstr(d.msg, "chatml") != NULL);
}

/* ---- byte-identical to Python Jinja2 ---- */

static char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf;
    ssize_t n;

    if (fd < 0) return NULL;
    ASSERT(fstat(fd, &st) == 0);
    buf = slm_xmalloc((size_t)st.st_size + 1);
    n = read(fd, buf, (size_t)st.st_size);
    close(fd);
    ASSERT(n == st.st_size);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* Runs the Python renderer; returns its stdout (new) or NULL with *why set. */
static char *run_python(const char *tpl, const char *cases, size_t *len, const char **why)
{
    int pipefd[2];
    pid_t pid;
    struct slm_buf out;
    int status;
    char chunk[65536];

    ASSERT(pipe(pipefd) == 0);
    pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);

        dup2(pipefd[1], 1);
        if (devnull >= 0) dup2(devnull, 2);
        close(pipefd[0]);
        execl(PY, PY, PY_RENDERER, tpl, cases, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    slm_buf_init(&out, 64u << 20);
    for (;;) {
        ssize_t n = read(pipefd[0], chunk, sizeof(chunk));

        if (n <= 0) break;
        ASSERT_OK(slm_buf_append(&out, chunk, (size_t)n));
    }
    close(pipefd[0]);
    ASSERT(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        *why = "python3 with jinja2 failed (apt-get install -y python3-jinja2)";
        slm_buf_fini(&out);
        return NULL;
    }
    return slm_buf_take(&out, len);
}

static bool python_jinja_available(void)
{
    pid_t pid;
    int status;

    if (access(PY, X_OK) != 0) return false;
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);

        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execl(PY, PY, "-c", "import jinja2", (char *)NULL);
        _exit(127);
    }
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

/* Renders one case of cases.json with our interpreter. */
static int render_case(const struct chat_template *t, const struct json_value *c,
                       struct slm_buf *out, struct slm_diag *d)
{
    struct chat_render_params p = { 0 };
    const struct json_value *v;

    p.messages = json_obj_get(c, "messages");
    v = json_obj_get(c, "tools");
    p.tools = v && v->type != JSON_NULL ? v : NULL;
    v = json_obj_get(c, "extra");
    p.extra = v && v->type == JSON_OBJECT ? v : NULL;
    v = json_obj_get(c, "add_generation_prompt");
    p.add_generation_prompt = v && v->type == JSON_BOOL && v->u.b;
    v = json_obj_get(c, "bos_token");
    p.bos_token = v ? v->u.str.ptr : "";
    v = json_obj_get(c, "eos_token");
    p.eos_token = v ? v->u.str.ptr : "";
    v = json_obj_get(c, "now");
    p.now = v && v->type == JSON_INT ? v->u.i : 0;
    return chat_template_render(t, &p, out, d);
}

/*
 * Renders every .jinja file of dir_path over every case with us and with
 * Python Jinja2 and fails on the first difference; counts what it compared.
 */
static void compare_dir(const char *dir_path, const char *cases_path, const struct json_doc *cases,
                        size_t *n_compared, size_t *n_templates)
{
    DIR *dir;
    struct dirent *de;

    dir = opendir(dir_path);
    ASSERT_NOT_NULL(dir);
    while ((de = readdir(dir)) != NULL) {
        char path[512];
        size_t nlen = strlen(de->d_name), src_len, py_len;
        char *src, *py_out;
        const char *why = NULL;
        struct json_doc *expect = NULL;
        struct chat_template *t = NULL;
        struct slm_diag d = { 0 };
        const struct json_value *root = json_doc_root(cases);


        if (nlen < 7 || strcmp(de->d_name + nlen - 6, ".jinja") != 0) continue;
        snprintf(path, sizeof(path), "%s/%s", dir_path, de->d_name);
        src = read_file(path, &src_len);
        ASSERT_NOT_NULL(src);
        py_out = run_python(path, cases_path, &py_len, &why);
        if (py_out == NULL) t_fail(__FILE__, __LINE__, "%s: %s", de->d_name, why);
        ASSERT_OK(json_parse(py_out, py_len, NULL, &expect, NULL, NULL));
        if (chat_template_new(src, src_len, &t, &d) < 0)
            t_fail(__FILE__, __LINE__, "%s: compile: %s", de->d_name, d.msg);
        for (size_t i = 0; i < root->u.arr.n; i++) {
            const struct json_value *c = &root->u.arr.items[i];
            const struct json_value *e = json_arr_at(json_doc_root(expect), i);
            const struct json_value *ok = json_obj_get(e, "ok");
            const char *name = json_obj_get(c, "name")->u.str.ptr;
            struct slm_buf out;
            int rc;

            slm_buf_init(&out, 16u << 20);
            slm_diag_clear(&d);
            rc = render_case(t, c, &out, &d);
            if (ok->u.b) {
                const struct json_value *want = json_obj_get(e, "out");

                if (rc < 0)
                    t_fail(__FILE__, __LINE__, "%s / %s: we failed (%s), Jinja2 rendered",
                           de->d_name, name, d.msg);
                if (out.len != want->u.str.len ||
                    memcmp(out.data ? out.data : "", want->u.str.ptr, out.len) != 0) {
                    size_t k = 0;

                    while (k < out.len && k < want->u.str.len && out.data[k] == want->u.str.ptr[k])
                        k++;
                    t_fail(__FILE__, __LINE__,
                           "%s / %s: differs at byte %zu\n--- ours:\n%s\n--- jinja2:\n%s",
                           de->d_name, name, k, slm_buf_str(&out), want->u.str.ptr);
                }
            } else {
                const char *err = json_obj_get(e, "error")->u.str.ptr;

                if (rc == 0)
                    t_fail(__FILE__, __LINE__, "%s / %s: we rendered, Jinja2 failed: %s",
                           de->d_name, name, err);
                /* raise_exception messages must match word for word. */
                if (strncmp(err, "TemplateError: ", 15) == 0 && strcmp(err + 15, d.msg) != 0)
                    t_fail(__FILE__, __LINE__, "%s / %s: message '%s' vs Jinja2 '%s'", de->d_name,
                           name, d.msg, err);
            }
            (*n_compared)++;
            slm_buf_fini(&out);
        }
        (*n_templates)++;
        chat_template_free(t);
        json_doc_free(expect);
        slm_free(py_out);
        slm_free(src);
    }
    closedir(dir);
}

/*
 * The built-in templates' fixture copies in tests/data/templates/, plus, when
 * SLM_EXTRA_TEMPLATES names a directory, the published templates that
 * tests/integration/test_templates_jinja2.sh extracts there from the model
 * packages of the npm registry (Llama 3, Qwen3, DeepSeek V3, Gemma 3).
 */
TEST(template_jinja2_identical)
{
    char cases_path[] = DATA_DIR "/cases.json";
    char *cases_text;
    size_t cases_len, n_compared = 0, n_templates = 0;
    struct json_doc *cases = NULL;
    const char *extra = t_env("SLM_EXTRA_TEMPLATES", NULL);

    if (access(DATA_DIR, R_OK) != 0)
        SKIP("run from the repository root (tests/data/templates not found)");
    if (!python_jinja_available())
        SKIP("/usr/bin/python3 with jinja2 not installed (apt-get install -y python3-jinja2)");
    cases_text = read_file(cases_path, &cases_len);
    ASSERT_NOT_NULL(cases_text);
    ASSERT_OK(json_parse(cases_text, cases_len, NULL, &cases, NULL, NULL));
    compare_dir(DATA_DIR, cases_path, cases, &n_compared, &n_templates);
    ASSERT(n_templates >= 3);
    if (extra != NULL) {
        size_t before = n_templates;

        compare_dir(extra, cases_path, cases, &n_compared, &n_templates);
        ASSERT(n_templates > before);
    }
    printf("# compared %zu renders of %zu templates with Python Jinja2\n", n_compared, n_templates);
    json_doc_free(cases);
    slm_free(cases_text);
}
