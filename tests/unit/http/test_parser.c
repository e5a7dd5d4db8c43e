/*
 * test_parser.c - the HTTP/1.1 request parser and chunked decoder:
 * grammar and framing rows of RELIABILITY H01-H03 and H08, incremental
 * parsing, pipelining.
 */
#include "core/alloc.h"
#include "harness/t.h"
#include "http/parser.h"

static int parse(const char *s, struct http_request *req, struct slm_diag *d)
{
    return http_request_parse(s, strlen(s), 0, NULL, req, d);
}

TEST(http_parse_simple_get)
{
    const char *s = "GET /v1/models?x=1 HTTP/1.1\r\nHost: localhost:8443\r\n"
                    "User-Agent: t\r\nAccept:  */*  \r\n\r\nNEXT";
    struct http_request req;
    struct slm_diag d;
    int rc = parse(s, &req, &d);

    ASSERT_EQ_INT(rc, (int)(strstr(s, "NEXT") - s));
    ASSERT_EQ_INT(req.method, HTTP_METHOD_GET);
    ASSERT_EQ_SIZE(req.target_len, 14);
    ASSERT_EQ_MEM(req.target, "/v1/models?x=1", 14);
    ASSERT_EQ_INT(req.version_minor, 1);
    ASSERT_EQ_SIZE(req.n_headers, 3);
    ASSERT_EQ_SIZE(req.host->value_len, 14);
    ASSERT_EQ_MEM(req.host->value, "localhost:8443", 14);
    ASSERT_EQ_SIZE(req.headers[2].value_len, 3);
    ASSERT_EQ_MEM(req.headers[2].value, "*/*", 3);
    ASSERT_NOT_NULL(http_request_header(&req, "user-agent"));
    ASSERT_NULL(http_request_header(&req, "cookie"));
    ASSERT_EQ_INT(req.body_kind, HTTP_BODY_NONE);
    ASSERT(req.keep_alive);
    ASSERT(!req.expect_continue);
}

TEST(http_parse_post_content_length_and_keepalive_rules)
{
    struct http_request req;
    struct slm_diag d;

    ASSERT(parse("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n"
                 "Connection: close\r\nExpect: 100-continue\r\n\r\n",
                 &req, &d) > 0);
    ASSERT_EQ_INT(req.method, HTTP_METHOD_POST);
    ASSERT_EQ_INT(req.body_kind, HTTP_BODY_LENGTH);
    ASSERT_EQ_INT(req.content_length, 42);
    ASSERT(!req.keep_alive);
    ASSERT(req.expect_continue);
    ASSERT(parse("GET / HTTP/1.0\r\n\r\n", &req, &d) > 0);
    ASSERT(!req.keep_alive);
    ASSERT_NULL(req.host);
    ASSERT(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req, &d) > 0);
    ASSERT(req.keep_alive);
    ASSERT(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, CLOSE\r\n\r\n", &req, &d) > 0);
    ASSERT(!req.keep_alive);
    ASSERT(parse("PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", &req, &d) > 0);
    ASSERT_EQ_INT(req.body_kind, HTTP_BODY_CHUNKED);
    ASSERT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &req, &d) > 0);
    ASSERT_EQ_INT(req.body_kind, HTTP_BODY_NONE);
    ASSERT(parse("BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n", &req, &d) > 0);
    ASSERT_EQ_INT(req.method, HTTP_METHOD_OTHER);
    /* RFC 9112 2.2: empty lines before the request line are skipped. */
    ASSERT_EQ_INT(parse("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", &req, &d), 31);
}

/* RELIABILITY H01: every grammar or framing error -> its status, never a request. */
TEST(http_parse_rejects_framing_and_grammar_errors)
{
    static const struct {
        const char *text;
        int code;
        int status;
        const char *msg;
    } cases[] = {
        { "GET\r\n\r\n", SLM_EFORMAT, 400, "bad method" },
        { " / HTTP/1.1\r\nHost: h\r\n\r\n", SLM_EFORMAT, 400, "bad method" },
        { "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", SLM_EFORMAT, 400, "bad request target" },
        { "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", SLM_EFORMAT, 400, "bad HTTP version" },
        { "GET / http/1.1\r\nHost: h\r\n\r\n", SLM_EFORMAT, 400, "bad HTTP version" },
        { "GET / HTTP/2.0\r\nHost: h\r\n\r\n", SLM_EFORMAT, 505, "not supported" },
        { "GET / HTTP/1.2\r\nHost: h\r\n\r\n", SLM_EFORMAT, 505, "not supported" },
        { "GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n", SLM_EFORMAT, 400, "bad request target" },
        { "GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", SLM_EFORMAT, 400, "bad request target" },
        { "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", SLM_EFORMAT, 400, "bad method" },
        { "GET / HTTP/1.1\r\n\r\n", SLM_EFORMAT, 400, "missing Host" },
        { "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", SLM_EFORMAT, 400, "duplicate Host" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
          SLM_EFORMAT, 400, "duplicate Content-Length" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
          SLM_EFORMAT, 400, "duplicate Content-Length" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", SLM_EFORMAT, 400,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", SLM_EFORMAT, 400,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", SLM_EFORMAT, 400,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", SLM_EFORMAT, 400,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", SLM_EFORMAT, 400,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", SLM_EFORMAT, 400,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12345678901234567890\r\n\r\n", SLM_EFORMAT,
          400, "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
          SLM_EFORMAT, 400, "both Content-Length and Transfer-Encoding" },
        { "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
          SLM_EFORMAT, 400, "both Content-Length and Transfer-Encoding" },
        { "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", SLM_EUNSUPPORTED,
          501, "unsupported Transfer-Encoding" },
        { "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
          SLM_EUNSUPPORTED, 501, "unsupported Transfer-Encoding" },
        { "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
          SLM_EUNSUPPORTED, 501, "unsupported Transfer-Encoding" },
        { "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", SLM_EFORMAT, 400,
          "whitespace before ':'" },
        { "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
          "Transfer-Encoding: chunked\r\n\r\n",
          SLM_EFORMAT, 400, "duplicate Transfer-Encoding" },
        { "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", SLM_EFORMAT, 400,
          "Transfer-Encoding in an HTTP/1.0 request" },
        { "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n", SLM_EFORMAT, 400, "folding" },
        { "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tfolded\r\n\r\n", SLM_EFORMAT, 400, "folding" },
        { "GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n", SLM_EFORMAT, 400,
          "whitespace before ':'" },
        { "GET / HTTP/1.1\r\nHost: h\r\nX-A 1\r\n\r\n", SLM_EFORMAT, 400, "whitespace before ':'" },
        { "GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n", SLM_EFORMAT, 400, "malformed header" },
        { "GET / HTTP/1.1\r\nHost: h\r\nX(A): 1\r\n\r\n", SLM_EFORMAT, 400, "malformed header" },
        { "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01z\r\n\r\n", SLM_EFORMAT, 400,
          "control character" },
        { "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fz\r\n\r\n", SLM_EFORMAT, 400,
          "control character" },
        { "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rz\r\n\r\n", SLM_EFORMAT, 400, "bare CR or LF" },
        { "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\nz\r\n\r\n", SLM_EFORMAT, 400, "bare CR or LF" },
        { "GET / HTTP/1.1\nHost: h\n\n", SLM_EFORMAT, 400, "bare CR or LF" },
        { "GET / HTTP/1.1\r\nHost: h\r\n\n", SLM_EFORMAT, 400, "bare CR or LF" },
        { "\n", SLM_EFORMAT, 400, "bare CR or LF" },
    };

    for (size_t k = 0; k < SLM_ARRAY_LEN(cases); k++) {
        struct http_request req;
        struct slm_diag d;
        int rc = parse(cases[k].text, &req, &d);

        if (rc != cases[k].code || req.status != cases[k].status ||
            strstr(d.msg, cases[k].msg) == NULL)
            t_fail(__FILE__, __LINE__, "case %zu: rc %d status %d msg '%s' (want %d %d '%s')", k,
                   rc, req.status, rc < 0 ? d.msg : "", cases[k].code, cases[k].status,
                   cases[k].msg);
    }
}

TEST(http_parse_nul_in_value_rejected)
{
    const char s[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n";
    struct http_request req;
    struct slm_diag d;

    ASSERT_ERR(http_request_parse(s, sizeof(s) - 1, 0, NULL, &req, &d), SLM_EFORMAT);
    ASSERT_EQ_INT(req.status, 400);
    ASSERT(strstr(d.msg, "NUL") != NULL);
}

/* RELIABILITY H03: 431, 431, 431, 414, 413 before reading any body. */
TEST(http_parse_limits)
{
    struct slm_buf b;
    struct http_request req;
    struct slm_diag d;

    slm_buf_init(&b, 1 << 20);
    /* Header block > 16 KiB (each line under 8 KiB): 431, even while incomplete. */
    ASSERT_OK(slm_buf_append_str(&b, "GET / HTTP/1.1\r\nHost: h\r\n"));
    for (int i = 0; i < 5; i++)
        ASSERT_OK(slm_buf_printf(&b, "X-%d: %04000d\r\n", i, 0));
    ASSERT_ERR(http_request_parse(b.data, b.len, 0, NULL, &req, &d), SLM_ELIMIT);
    ASSERT_EQ_INT(req.status, 431);
    ASSERT_OK(slm_buf_append_str(&b, "\r\n"));
    ASSERT_ERR(http_request_parse(b.data, b.len, 0, NULL, &req, &d), SLM_ELIMIT);
    ASSERT_EQ_INT(req.status, 431);
    /* One header line > 8 KiB: 431. */
    slm_buf_reset(&b);
    ASSERT_OK(slm_buf_printf(&b, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: %09000d\r\n\r\n", 0));
    ASSERT_ERR(http_request_parse(b.data, b.len, 0, NULL, &req, &d), SLM_ELIMIT);
    ASSERT_EQ_INT(req.status, 431);
    ASSERT(strstr(d.msg, "header line longer than 8192") != NULL);
    /* 100 headers are fine, 101 are not. */
    slm_buf_reset(&b);
    ASSERT_OK(slm_buf_append_str(&b, "GET / HTTP/1.1\r\nHost: h\r\n"));
    for (int i = 0; i < 99; i++)
        ASSERT_OK(slm_buf_printf(&b, "X-%d: v\r\n", i));
    ASSERT_OK(slm_buf_append_str(&b, "\r\n"));
    ASSERT(http_request_parse(b.data, b.len, 0, NULL, &req, &d) > 0);
    ASSERT_EQ_SIZE(req.n_headers, 100);
    b.len -= 2;
    ASSERT_OK(slm_buf_append_str(&b, "X-Last: v\r\n\r\n"));
    ASSERT_ERR(http_request_parse(b.data, b.len, 0, NULL, &req, &d), SLM_ELIMIT);
    ASSERT_EQ_INT(req.status, 431);
    ASSERT(strstr(d.msg, "more than 100 header fields") != NULL);
    /* URI > 8 KiB: 414, complete or not. */
    slm_buf_reset(&b);
    ASSERT_OK(slm_buf_printf(&b, "GET /%08200d HTTP/1.1\r\nHost: h\r\n\r\n", 0));
    ASSERT_ERR(http_request_parse(b.data, b.len, 0, NULL, &req, &d), SLM_ELIMIT);
    ASSERT_EQ_INT(req.status, 414);
    ASSERT_ERR(http_request_parse(b.data, 8300, 0, NULL, &req, &d), SLM_ELIMIT);
    ASSERT_EQ_INT(req.status, 414);
    /* Content-Length above the body limit: 413 from the head alone. */
    ASSERT_ERR(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 8388609\r\n\r\n", &req, &d),
               SLM_ELIMIT);
    ASSERT_EQ_INT(req.status, 413);
    ASSERT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 8388608\r\n\r\n", &req, &d) > 0);
    slm_buf_fini(&b);
}

/* Fed one byte at a time, the parser says "need more" until the last byte. */
TEST(http_parse_incremental_byte_by_byte)
{
    const char *s = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    size_t head = strlen(s) - 3, last = 0;
    struct http_request req;
    struct slm_diag d;

    for (size_t n = 1; n <= head; n++) {
        int rc = http_request_parse(s, n, last, NULL, &req, &d);

        if (n < head) {
            ASSERT_ERR(rc, SLM_EAGAIN);
        } else {
            ASSERT_EQ_INT(rc, (int)head);
        }
        last = n;
    }
    ASSERT_EQ_INT(req.content_length, 3);
    /* A bare LF is refused as soon as it arrives, not at the end of the head. */
    ASSERT_ERR(http_request_parse("GET / HTTP/1.1\n", 15, 0, NULL, &req, &d), SLM_EFORMAT);
    ASSERT_ERR(http_request_parse("GET / HTTP/1.1\rX", 16, 0, NULL, &req, &d), SLM_EFORMAT);
    ASSERT_ERR(http_request_parse("GET / HTTP/1.1\r", 15, 0, NULL, &req, &d), SLM_EAGAIN);
}

/* RELIABILITY H08: three pipelined requests parse in order. */
TEST(http_parse_pipelined)
{
    const char *s = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                    "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
                    "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t off = 0, len = strlen(s);
    char want = '1';

    while (off < len) {
        struct http_request req;
        struct slm_diag d;
        int rc = http_request_parse(s + off, len - off, 0, NULL, &req, &d);

        ASSERT(rc > 0);
        ASSERT_EQ_INT(req.target[1], want);
        off += (size_t)rc + req.content_length;
        want++;
    }
    ASSERT_EQ_INT(want, '4');
}

static int dechunk(const char *in, size_t len, uint64_t max, struct slm_buf *out,
                   struct http_chunked *c, size_t *used, struct slm_diag *d)
{
    http_chunked_init(c, max);
    return http_chunked_decode(c, in, len, used, out, d);
}

TEST(http_chunked_decodes_and_stops_at_the_end)
{
    const char *s = "5;name=val\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n"
                    "X-Trailer: 1\r\n\r\nGET /next";
    struct http_chunked c;
    struct slm_buf out;
    struct slm_diag d;
    size_t used;

    slm_buf_init(&out, 1024);
    ASSERT_OK(dechunk(s, strlen(s), 1024, &out, &c, &used, &d));
    ASSERT_EQ_STR(out.data, "helloabcdefghijklmnopqrstuvwxyz");
    ASSERT_EQ_STR(s + used, "GET /next");
    /* The same input one byte at a time gives the same result. */
    slm_buf_reset(&out);
    http_chunked_init(&c, 1024);
    for (size_t i = 0; i < (size_t)(strstr(s, "GET") - s); i++) {
        int rc = http_chunked_decode(&c, s + i, 1, &used, &out, &d);

        ASSERT_EQ_SIZE(used, 1);
        ASSERT_ERR(rc, s[i + 1] == 'G' ? 0 : SLM_EAGAIN);
    }
    ASSERT_EQ_STR(out.data, "helloabcdefghijklmnopqrstuvwxyz");
    slm_buf_fini(&out);
}

/* RELIABILITY H02. */
TEST(http_chunked_rejects_bad_framing)
{
    static const struct {
        const char *text;
        int code;
        int status;
        const char *msg;
    } cases[] = {
        { "10000000000000000\r\n", SLM_EFORMAT, 400, "more than 16 hex digits" },
        { "-5\r\n", SLM_EFORMAT, 400, "expected a hex chunk size" },
        { "zz\r\n", SLM_EFORMAT, 400, "expected a hex chunk size" },
        { "5 \r\nhello\r\n", SLM_EFORMAT, 400, "malformed chunk size line" },
        { "5\nhello\r\n", SLM_EFORMAT, 400, "malformed chunk size line" },
        { "5\r\r", SLM_EFORMAT, 400, "must end with CRLF" },
        { "5\r\nhelloX", SLM_EFORMAT, 400, "chunk data must end with CRLF" },
        { "5\r\nhello\rX", SLM_EFORMAT, 400, "chunk data must end with CRLF" },
        { "5;a\x01\r\n", SLM_EFORMAT, 400, "control character in chunk extension" },
        { "FFFFFFFFFFFFFFFF\r\n", SLM_ELIMIT, 413, "exceeds the size limit" },
        { "401\r\n", SLM_ELIMIT, 413, "exceeds the size limit" },
        { "0\r\n X: 1\r\n\r\n", SLM_EFORMAT, 400, "malformed trailer" },
        { "0\r\nX: \x01\r\n\r\n", SLM_EFORMAT, 400, "control character in trailer" },
        { "0\r\nX: 1\n", SLM_EFORMAT, 400, "control character in trailer" },
        { "0\r\nX: 1\rY", SLM_EFORMAT, 400, "trailer line must end with CRLF" },
        { "0\r\n\rX", SLM_EFORMAT, 400, "final chunk must end with CRLF" },
    };

    for (size_t k = 0; k < SLM_ARRAY_LEN(cases); k++) {
        struct http_chunked c;
        struct slm_buf out;
        struct slm_diag d;
        size_t used;
        int rc;

        slm_buf_init(&out, 1024);
        rc = dechunk(cases[k].text, strlen(cases[k].text), 1024, &out, &c, &used, &d);
        if (rc != cases[k].code || c.status != cases[k].status ||
            strstr(d.msg, cases[k].msg) == NULL)
            t_fail(__FILE__, __LINE__, "case %zu: rc %d status %d msg '%s'", k, rc, c.status,
                   rc < 0 ? d.msg : "");
        slm_buf_fini(&out);
    }
}

TEST(http_chunked_limits)
{
    struct slm_buf in, out;
    struct http_chunked c;
    struct slm_diag d;
    size_t used;

    slm_buf_init(&in, 4u << 20);
    slm_buf_init(&out, 2u << 20);
    /* 1 MiB of chunk extensions. */
    ASSERT_OK(slm_buf_append_str(&in, "1;"));
    for (int i = 0; i < 1 << 20; i++)
        ASSERT_OK(slm_buf_append_char(&in, 'a'));
    ASSERT_ERR(dechunk(in.data, in.len, 1 << 20, &out, &c, &used, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "chunk extensions too long") != NULL);
    ASSERT(used < 8192);
    /* A 1 MiB body in 1-byte chunks is cut by the overhead rule. */
    slm_buf_reset(&in);
    for (int i = 0; i < 1 << 18; i++)
        ASSERT_OK(slm_buf_append_str(&in, "1\r\nx\r\n"));
    ASSERT_ERR(dechunk(in.data, in.len, 1 << 20, &out, &c, &used, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "framing overhead too large") != NULL);
    ASSERT(out.len < 20000);
    /* Big chunks are fine up to the limit and refused one byte over it. */
    slm_buf_reset(&in);
    slm_buf_reset(&out);
    ASSERT_OK(slm_buf_append_str(&in, "80000\r\n"));
    for (int i = 0; i < 0x80000; i++)
        ASSERT_OK(slm_buf_append_char(&in, 'y'));
    ASSERT_OK(slm_buf_append_str(&in, "\r\n1\r\nz\r\n0\r\n\r\n"));
    ASSERT_OK(dechunk(in.data, in.len, 0x80001, &out, &c, &used, &d));
    ASSERT_EQ_SIZE(out.len, 0x80001);
    slm_buf_reset(&out);
    ASSERT_ERR(dechunk(in.data, in.len, 0x80000, &out, &c, &used, &d), SLM_ELIMIT);
    ASSERT_EQ_INT(c.status, 413);
    /* Oversized trailers. */
    slm_buf_reset(&in);
    slm_buf_reset(&out);
    ASSERT_OK(slm_buf_append_str(&in, "0\r\n"));
    for (int i = 0; i < 101; i++)
        ASSERT_OK(slm_buf_printf(&in, "T%d: v\r\n", i));
    ASSERT_ERR(dechunk(in.data, in.len, 100, &out, &c, &used, &d), SLM_ELIMIT);
    ASSERT_EQ_INT(c.status, 431);
    slm_buf_fini(&in);
    slm_buf_fini(&out);
}

TEST(http_status_texts)
{
    ASSERT_EQ_STR(http_status_text(431), "Request Header Fields Too Large");
    ASSERT_EQ_STR(http_status_text(999), "Unknown");
}
