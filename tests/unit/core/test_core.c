/*
 * test_core.c - core helpers: buffers, JSON writer, number parsing, UTF-8,
 * overflow checks, fault injection, the PRNG.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/rand.h"
#include "core/str.h"
#include "harness/t.h"

TEST(buf_cap_is_enforced)
{
    struct slm_buf b;

    slm_buf_init(&b, 8);
    ASSERT_OK(slm_buf_append_str(&b, "12345678"));
    ASSERT_ERR(slm_buf_append_char(&b, 'x'), SLM_ELIMIT);
    ASSERT_EQ_STR(slm_buf_str(&b), "12345678");
    ASSERT_ERR(slm_buf_printf(&b, "%d", 1), SLM_ELIMIT);
    ASSERT_EQ_SIZE(b.len, 8);
    slm_buf_fini(&b);
}

TEST(buf_printf_grows)
{
    struct slm_buf b;

    slm_buf_init(&b, 1 << 20);
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(slm_buf_printf(&b, "%04d", i));
    ASSERT_EQ_SIZE(b.len, 4000);
    ASSERT(memcmp(slm_buf_str(&b) + 3996, "0999", 4) == 0);
    slm_buf_fini(&b);
}

TEST(json_writer_nested_and_escaped)
{
    struct slm_buf b;
    struct json_writer w;

    slm_buf_init(&b, 4096);
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "a");
    json_arr_begin(&w);
    json_int(&w, -3);
    json_double(&w, 0.5);
    json_double(&w, NAN);
    json_bool(&w, true);
    json_arr_end(&w);
    json_key(&w, "s\"");
    json_str(&w, "x\n\x01\xff", 4);
    json_obj_end(&w);
    ASSERT_OK(json_writer_finish(&w));
    ASSERT_EQ_STR(slm_buf_str(&b),
                  "{\"a\":[-3,0.5,null,true],\"s\\\"\":\"x\\n\\u0001\xef\xbf\xbd\"}");
    slm_buf_fini(&b);
}

TEST(json_writer_unbalanced_is_an_error)
{
    struct slm_buf b;
    struct json_writer w;

    slm_buf_init(&b, 64);
    json_writer_init(&w, &b, false);
    json_arr_begin(&w);
    ASSERT_ERR(json_writer_finish(&w), SLM_EINVAL);
    slm_buf_fini(&b);
}

TEST(parse_numbers_strictly)
{
    uint64_t u;
    int64_t i;
    double d;

    ASSERT_OK(slm_parse_u64("18446744073709551615", &u));
    ASSERT(u == UINT64_MAX);
    ASSERT_ERR(slm_parse_u64("18446744073709551616", &u), SLM_ERANGE);
    ASSERT_ERR(slm_parse_u64("-1", &u), SLM_EINVAL);
    ASSERT_ERR(slm_parse_u64("12x", &u), SLM_EINVAL);
    ASSERT_ERR(slm_parse_u64("", &u), SLM_EINVAL);
    ASSERT_OK(slm_parse_i64("-42", &i));
    ASSERT_EQ_INT(i, -42);
    ASSERT_OK(slm_parse_double("0.25", &d));
    ASSERT(d == 0.25);
    ASSERT_ERR(slm_parse_double("nan", &d), SLM_ERANGE);
    ASSERT_ERR(slm_parse_double("1e400", &d), SLM_ERANGE);
    ASSERT_OK(slm_parse_size("64K", &u));
    ASSERT(u == 65536);
    ASSERT_OK(slm_parse_size("1GB", &u));
    ASSERT(u == 1073741824ull);
    ASSERT_ERR(slm_parse_size("1X", &u), SLM_EINVAL);
}

TEST(utf8_validation)
{
    ASSERT(slm_utf8_valid("h\xc3\xa9llo \xf0\x9f\x98\x80", 11));
    ASSERT(!slm_utf8_valid("\xc0\xaf", 2));     /* overlong */
    ASSERT(!slm_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    ASSERT(!slm_utf8_valid("\xe2\x82", 2));     /* truncated */
    ASSERT(!slm_utf8_valid("\xff", 1));
    ASSERT(!slm_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
}

TEST(size_overflow_helpers)
{
    size_t out;

    ASSERT(!slm_mul_size(SIZE_MAX / 2 + 1, 2, &out));
    ASSERT(slm_mul_size(1 << 20, 1 << 10, &out) && out == (size_t)1 << 30);
    ASSERT(!slm_add_size(SIZE_MAX, 1, &out));
}

TEST(alloc_fault_injection)
{
    void *a, *b;

    slm_alloc_fail_at(2);
    a = slm_malloc(16);
    b = slm_malloc(16);
    ASSERT_NOT_NULL(a);
    ASSERT_NULL(b);
    ASSERT_EQ_INT(slm_alloc_count(), 2);
    slm_alloc_fail_at(0);
    slm_free(a);
    ASSERT_NULL(slm_calloc(SIZE_MAX / 2, 4));
}

TEST(rng_is_deterministic)
{
    struct slm_rng a, b;

    slm_rng_seed(&a, 42);
    slm_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        ASSERT(slm_rng_next(&a) == slm_rng_next(&b));
    slm_rng_seed(&a, 1);
    for (int i = 0; i < 1000; i++) {
        float f = slm_rng_float(&a);
        ASSERT(f >= 0.0f && f < 1.0f);
        ASSERT(slm_rng_below(&a, 7) < 7);
    }
}

TEST(utf8_encode_round_trips)
{
    static const uint32_t cps[] = { 0,      0x7f,   0x80,   0x7ff,   0x800,
                                    0xd7ff, 0xe000, 0xffff, 0x10000, 0x10ffff };
    static const size_t lens[] = { 1, 1, 2, 2, 3, 3, 3, 3, 4, 4 };

    for (size_t i = 0; i < SLM_ARRAY_LEN(cps); i++) {
        char b[4];
        size_t n = slm_utf8_encode(cps[i], b);

        ASSERT_EQ_SIZE(n, lens[i]);
        ASSERT_EQ_SIZE(slm_utf8_seq_len(b, n), n);
        ASSERT(slm_utf8_valid(b, n));
    }
}

TEST(grow_array_doubles_and_refuses_overflow)
{
    int *a = NULL;
    size_t cap = 0;
    void *p;

    ASSERT_OK(slm_grow_array((void **)&a, &cap, 5, sizeof(*a), 4));
    ASSERT_EQ_SIZE(cap, 8);
    a[7] = 1;
    ASSERT_OK(slm_grow_array((void **)&a, &cap, 8, sizeof(*a), 4)); /* fits: unchanged */
    ASSERT_EQ_SIZE(cap, 8);
    p = a;
    ASSERT_ERR(slm_grow_array((void **)&a, &cap, SIZE_MAX / 2, sizeof(*a), 4), SLM_ENOMEM);
    ASSERT(a == p && cap == 8 && a[7] == 1);
    slm_alloc_fail_at(1);
    ASSERT_ERR(slm_grow_array((void **)&a, &cap, 9, sizeof(*a), 4), SLM_ENOMEM);
    slm_alloc_fail_at(0);
    ASSERT(a == p && cap == 8);
    slm_free(a);
}

static void write_small(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ASSERT_NOT_NULL(f);
    fputs(text, f);
    fclose(f);
}

TEST(read_file_long_bounds)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/n", t_tmpdir());
    write_small(path, "42\n");
    ASSERT_EQ_INT(slm_read_file_long(path, 1000000), 42);
    write_small(path, "1000001\n");
    ASSERT_EQ_INT(slm_read_file_long(path, 1000000), -1);
    write_small(path, "99999999999999999999999999\n"); /* would overflow a long */
    ASSERT_EQ_INT(slm_read_file_long(path, LONG_MAX), -1);
    write_small(path, "abc");
    ASSERT_EQ_INT(slm_read_file_long(path, 10), 0);
    write_small(path, "");
    ASSERT_EQ_INT(slm_read_file_long(path, 10), -1);
    snprintf(path, sizeof(path), "%s/absent", t_tmpdir());
    ASSERT_EQ_INT(slm_read_file_long(path, 10), -1);
}

/* The published FNV-1a 64 test vectors; a split input hashes as the whole. */
TEST(fnv1a_known_values_and_chaining)
{
    ASSERT(slm_fnv1a(SLM_FNV1A_INIT, "", 0) == 0xcbf29ce484222325ull);
    ASSERT(slm_fnv1a(SLM_FNV1A_INIT, "a", 1) == 0xaf63dc4c8601ec8cull);
    ASSERT(slm_fnv1a(SLM_FNV1A_INIT, "foobar", 6) == 0x85944171f73967e8ull);
    ASSERT(slm_fnv1a(slm_fnv1a(SLM_FNV1A_INIT, "foo", 3), "bar", 3) == 0x85944171f73967e8ull);
    ASSERT(slm_fnv1a(SLM_FNV1A_INIT, "\xff", 1) != slm_fnv1a(SLM_FNV1A_INIT, "\x7f", 1));
}

TEST(sync_dir_of_a_directory_only)
{
    const char *dir = t_tmpdir();
    char file[512];
    FILE *f;

    ASSERT_EQ_INT(slm_sync_dir(dir), 0);
    snprintf(file, sizeof(file), "%s/f", dir);
    f = fopen(file, "w");
    ASSERT_NOT_NULL(f);
    fclose(f);
    ASSERT_EQ_INT(slm_sync_dir(file), ENOTDIR);
    snprintf(file, sizeof(file), "%s/missing", dir);
    ASSERT_EQ_INT(slm_sync_dir(file), ENOENT);
}

TEST(path_dir_of_each_shape)
{
    static const char *const cases[][2] = { { "m.gguf", "." },   { "/m.gguf", "/" },
                                            { "a/m.gguf", "a" }, { "/a/b/m.gguf", "/a/b" },
                                            { "a/b/", "a/b" },   { "", "." } };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *d = slm_path_dir(cases[i][0]);

        ASSERT(d != NULL);
        ASSERT_EQ_STR(d, cases[i][1]);
        slm_free(d);
    }
    slm_alloc_fail_at(1);
    ASSERT(slm_path_dir("a/b") == NULL);
    slm_alloc_fail_at(0);
}
