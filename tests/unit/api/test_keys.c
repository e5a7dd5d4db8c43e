/*
 * test_keys.c - API keys (src/api/keys.c) and the route table matcher
 * (src/http/router.c): generation format, file loading rules (mode, owner,
 * comments, bad keys named by line, no key text in messages), verification.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"
#include "harness/t.h"
#include "http/router.h"

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    ASSERT_NOT_NULL(f);
    fputs(text, f);
    fclose(f);
    ASSERT(chmod(path, mode) == 0);
}

TEST(keys_generate_format_and_verify)
{
    char a[API_KEY_GEN_SIZE], b[API_KEY_GEN_SIZE];
    struct api_keys *k = api_keys_new();

    ASSERT_NOT_NULL(k);
    ASSERT_OK(api_keys_generate(a));
    ASSERT_OK(api_keys_generate(b));
    ASSERT_EQ_SIZE(strlen(a), strlen(API_KEY_PREFIX) + 64);
    ASSERT(strncmp(a, API_KEY_PREFIX, strlen(API_KEY_PREFIX)) == 0);
    ASSERT(strspn(a + 7, "0123456789abcdef") == 64);
    ASSERT(strcmp(a, b) != 0);
    ASSERT_OK(api_keys_add(k, a, strlen(a), NULL));
    ASSERT(api_keys_verify(k, a, strlen(a)));
    ASSERT(!api_keys_verify(k, b, strlen(b)));
    ASSERT(!api_keys_verify(k, a, strlen(a) - 1)); /* a prefix is not the key */
    ASSERT(!api_keys_verify(k, "", 0));
    a[20] ^= 1;
    ASSERT(!api_keys_verify(k, a, strlen(a)));
    api_keys_free(k);
}

TEST(keys_add_rejects_bad_keys_without_echoing_them)
{
    struct api_keys *k = api_keys_new();
    struct slm_diag d;

    ASSERT_ERR(api_keys_add(k, "short", 5, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "5 characters") != NULL);
    ASSERT_ERR(api_keys_add(k, "sk-with space-12345678", 22, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "space") == NULL || strstr(d.msg, "sk-with") == NULL);
    ASSERT(strstr(d.msg, "sk-with") == NULL);
    ASSERT_EQ_SIZE(api_keys_count(k), 0);
    api_keys_free(k);
}

TEST(keys_load_file)
{
    char path[512];
    struct api_keys *k = api_keys_new();
    struct slm_diag d;

    snprintf(path, sizeof(path), "%s/keys", t_tmpdir());
    write_file(path, "# team keys\n\n  sk-first-key-0123456789  \r\nsk-second-key-0123456789\n",
               0600);
    ASSERT_OK(api_keys_load_file(k, path, &d));
    ASSERT_EQ_SIZE(api_keys_count(k), 2);
    ASSERT(api_keys_verify(k, "sk-first-key-0123456789", 23));
    ASSERT(api_keys_verify(k, "sk-second-key-0123456789", 24));
    ASSERT(!api_keys_verify(k, "# team keys", 11));
    api_keys_free(k);

    /* Readable by others: refused with the chmod hint. */
    k = api_keys_new();
    ASSERT(chmod(path, 0644) == 0);
    ASSERT_ERR(api_keys_load_file(k, path, &d), SLM_EPERM);
    ASSERT(strstr(d.msg, "chmod 600") != NULL);
    ASSERT(strstr(d.msg, "sk-first") == NULL);
    /* A bad key is named by its line, not by its text. */
    write_file(path, "sk-good-key-0123456789\nbad key here\n", 0600);
    ASSERT_ERR(api_keys_load_file(k, path, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "line 2") != NULL);
    ASSERT(strstr(d.msg, "bad key") == NULL);
    /* Empty file, missing file, directory. */
    write_file(path, "# nothing\n", 0600);
    ASSERT_ERR(api_keys_load_file(k, path, &d), SLM_EINVAL);
    ASSERT_ERR(api_keys_load_file(k, "/nonexistent/keys", &d), SLM_ENOTFOUND);
    ASSERT(api_keys_load_file(k, t_tmpdir(), &d) < 0);
    api_keys_free(k);
}

static void h_dummy(void *arg, struct http_exchange *ex)
{
    (void)arg;
    (void)ex;
}

TEST(router_match)
{
    static const struct route rt[] = {
        { HTTP_METHOD_GET, "/health", false, h_dummy },
        { HTTP_METHOD_GET, "/v1/models", true, h_dummy },
        { HTTP_METHOD_POST, "/v1/chat/completions", true, h_dummy },
    };
    const struct route *r;
    char allow[64];

    ASSERT_EQ_INT(router_match(rt, 3, HTTP_METHOD_GET, "/v1/models", 10, &r, allow, sizeof(allow)),
                  ROUTER_FOUND);
    ASSERT(r == &rt[1] && r->auth);
    ASSERT_EQ_INT(router_match(rt, 3, HTTP_METHOD_HEAD, "/health", 7, &r, allow, sizeof(allow)),
                  ROUTER_FOUND);
    ASSERT(r == &rt[0] && !r->auth);
    ASSERT_EQ_INT(router_match(rt, 3, HTTP_METHOD_GET, "/v1/model", 9, &r, allow, sizeof(allow)),
                  ROUTER_NOT_FOUND);
    ASSERT_EQ_INT(router_match(rt, 3, HTTP_METHOD_GET, "/v1/modelsX", 11, &r, allow, sizeof(allow)),
                  ROUTER_NOT_FOUND);
    ASSERT_EQ_INT(router_match(rt, 3, HTTP_METHOD_DELETE, "/v1/chat/completions", 20, &r, allow,
                               sizeof(allow)),
                  ROUTER_BAD_METHOD);
    ASSERT_EQ_STR(allow, "POST, OPTIONS");
    /* Preflight: found, no route, the allowed methods. */
    ASSERT_EQ_INT(
        router_match(rt, 3, HTTP_METHOD_OPTIONS, "/v1/models", 10, &r, allow, sizeof(allow)),
        ROUTER_FOUND);
    ASSERT(r == NULL);
    ASSERT_EQ_STR(allow, "GET");
    ASSERT_EQ_STR(router_method_name(HTTP_METHOD_PATCH), "PATCH");
}

TEST(api_routes_need_keys_except_health)
{
    size_t n, i, open = 0;
    const struct route *r = api_routes(&n);

    ASSERT(n >= 8);
    for (i = 0; i < n; i++) {
        if (!r[i].auth) {
            open++;
            ASSERT(strstr(r[i].path, "health") != NULL);
        }
    }
    ASSERT_EQ_SIZE(open, 2);
}
