/*
 * test_config.c - layered options (src/api/config.c): precedence command
 * line > environment > config file > default whatever the order the layers
 * are read in; the file format (comments, quotes, CRLF, inline comments);
 * every error names its source (option, variable, file:line:col and key);
 * refused options never accept a value; the file's permission checks; the
 * printed configuration parses back to the same values; allocation failures.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/config.h"
#include "core/alloc.h"
#include "harness/t.h"

enum { K_PORT, K_ALIAS, K_FLAG, K_LIST, K_NP, K_SECRET, K_CONFIG, K_HELP, K_COUNT };

static const struct config_opt opts[K_COUNT] = {
    [K_PORT] = { "port", NULL, 'p', CONFIG_INT, 0, 65535, "8443", 0, NULL },
    [K_ALIAS] = { "alias", NULL, 0, CONFIG_STR, 0, 0, NULL, 0, NULL },
    [K_FLAG] = { "insecure-http", NULL, 0, CONFIG_FLAG, 0, 0, "false", 0, NULL },
    [K_LIST] = { "cors-origin", NULL, 0, CONFIG_LIST, 0, 0, NULL, 0, NULL },
    [K_NP] = { "parallel", "np", 0, CONFIG_INT, 1, 256, "4", 0, NULL },
    [K_SECRET] = { "api-key", NULL, 0, CONFIG_STR, 0, 0, NULL, 0, "use --api-key-file" },
    [K_CONFIG] = { "config", NULL, 0, CONFIG_STR, 0, 0, NULL, CONFIG_NO_FILE, NULL },
    [K_HELP] = { "help", NULL, 'h', CONFIG_FLAG, 0, 0, NULL, CONFIG_NO_ENV | CONFIG_NO_FILE, NULL },
};

static struct config *mk(void)
{
    struct config *c = NULL;

    ASSERT_OK(config_new(opts, K_COUNT, "SLM_", &c));
    return c;
}

static int text(struct config *c, const char *s, struct slm_diag *d)
{
    slm_diag_clear(d);
    return config_parse_text(c, "t.conf", s, strlen(s), d);
}

/* argv from a NULL-terminated list (copied: getopt may permute it). */
static int args(struct config *c, struct slm_diag *d, const char *const *list)
{
    char *argv[32];
    int argc = 0;

    for (; list[argc] != NULL && argc < 31; argc++)
        argv[argc] = (char *)list[argc];
    argv[argc] = NULL;
    slm_diag_clear(d);
    return config_parse_argv(c, argc, argv, d);
}

TEST(config_precedence_argv_env_file_default_in_any_order)
{
    static const char *const argv[] = { "serve", "--port", "3", NULL };
    static char *env[] = { "SLM_ALIAS=from-env", "SLM_PORT=2", "OTHER=1", "SLM_PARALLEL=", NULL };
    static const char file[] = "port = 1\nalias = from-file\nparallel = 7\n";
    struct slm_diag d;

    /* The layers are read in three different orders; the result is the same. */
    for (int order = 0; order < 3; order++) {
        struct config *c = mk();

        for (int step = 0; step < 3; step++) {
            switch ((order + step) % 3) {
            case 0:
                ASSERT_OK(args(c, &d, argv));
                break;
            case 1:
                ASSERT_OK(config_parse_env(c, env, &d));
                break;
            default:
                ASSERT_OK(text(c, file, &d));
                break;
            }
        }
        ASSERT_EQ_INT(config_int(c, K_PORT, -1), 3);
        ASSERT_EQ_INT(config_source_of(c, K_PORT), CONFIG_SRC_ARGV);
        ASSERT_EQ_STR(config_str(c, K_ALIAS), "from-env");
        ASSERT_EQ_INT(config_source_of(c, K_ALIAS), CONFIG_SRC_ENV);
        /* SLM_PARALLEL= is empty: unset, so the file's value stands. */
        ASSERT_EQ_INT(config_int(c, K_NP, -1), 7);
        ASSERT_EQ_INT(config_source_of(c, K_NP), CONFIG_SRC_FILE);
        ASSERT(!config_is_set(c, K_FLAG));
        ASSERT(!config_flag(c, K_FLAG));
        ASSERT_EQ_INT(config_int(c, K_LIST, 42), 42);
        ASSERT_NULL(config_str(c, K_LIST));
        config_free(c);
    }
}

TEST(config_set_default_only_when_unset)
{
    struct config *c = mk();
    struct slm_diag d;

    ASSERT_OK(text(c, "parallel = 9\n", &d));
    ASSERT_OK(config_set_default(c, K_NP, "2"));
    ASSERT_OK(config_set_default(c, K_PORT, "99"));
    ASSERT_EQ_INT(config_int(c, K_NP, -1), 9);
    ASSERT_EQ_INT(config_int(c, K_PORT, -1), 99);
    ASSERT(!config_is_set(c, K_PORT));
    ASSERT_EQ_INT(config_set_default(c, K_PORT, "x"), SLM_EINVAL);
    config_free(c);
}

TEST(config_file_format)
{
    struct config *c = mk();
    struct slm_diag d;

    ASSERT_OK(text(c,
                   "# a comment\r\n"
                   "\r\n"
                   "   port=  8080   # inline comment\r\n"
                   "\talias = \"a # b \"  # kept inside quotes\n"
                   "cors-origin = https://a.example#frag, https://b.example\n"
                   "insecure-http = YES",
                   &d));
    ASSERT_EQ_INT(config_int(c, K_PORT, -1), 8080);
    ASSERT_EQ_STR(config_str(c, K_ALIAS), "a # b ");
    /* '#' not after blank space is part of the value. */
    ASSERT_EQ_STR(config_str(c, K_LIST), "https://a.example#frag, https://b.example");
    ASSERT(config_flag(c, K_FLAG));
    config_free(c);

    c = mk();
    ASSERT_OK(text(c, "insecure-http = off\nnp = 3\n", &d));
    ASSERT(config_is_set(c, K_FLAG));
    ASSERT(!config_flag(c, K_FLAG));
    ASSERT_EQ_INT(config_int(c, K_NP, -1), 3);
    config_free(c);
}

TEST(config_file_errors_name_file_line_column_and_key)
{
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        { "port = 1\nprot = 2\n", "t.conf:2:1: unknown key 'prot'" },
        { "port = 1\n\nport = 2\n", "t.conf:3:1: duplicate key 'port' (first set on line 1)" },
        { "parallel = 2\n  np = 3\n",
          "t.conf:2:3: duplicate key 'parallel' (first set on line 1)" },
        { "port = abc\n", "t.conf:1:8: port: wants an integer from 0 to 65535, got 'abc'" },
        { "port = 70000\n", "t.conf:1:8: port: wants an integer from 0 to 65535, got '70000'" },
        { "port = 8443 # c\nalias =\n", "t.conf:2:8: alias: wants a value, got an empty one" },
        { "port 8443\n", "t.conf:1:1: expected 'name = value'" },
        { "insecure-http = maybe\n", "t.conf:1:17: insecure-http: wants true or false" },
        { "alias = \"open\n", "t.conf:1:9: alias: missing closing '\"'" },
        { "alias = \"a\" b\n", "t.conf:1:13: alias: text after the closing '\"'" },
        { "alias = a\tb\x01\n", "t.conf:1:9: alias: control character in the value" },
        { "api-key = sk-secret-0123456789\n", "t.conf:1:1: api-key is not accepted: use" },
        { "config = /etc/x\n", "t.conf:1:1: config is not accepted in a config file" },
        { "help = true\n", "t.conf:1:1: help is not accepted in a config file" },
        { "PORT = 1\n", "t.conf:1:1: unknown key 'PORT'" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config *c = mk();
        struct slm_diag d;
        int rc = text(c, cases[i].text, &d);

        if (rc != SLM_EFORMAT || strstr(d.msg, cases[i].msg) == NULL)
            fprintf(stderr, "case %zu: rc %d msg '%s'\n", i, rc, d.msg);
        ASSERT_EQ_INT(rc, SLM_EFORMAT);
        ASSERT(strstr(d.msg, cases[i].msg) != NULL);
        ASSERT(strstr(d.msg, "sk-secret") == NULL); /* a refused value is never echoed */
        config_free(c);
    }
    {
        struct config *c = mk();
        struct slm_diag d;
        char big[CONFIG_LINE_MAX + 32];

        ASSERT_EQ_INT(config_parse_text(c, "t.conf", "port = 1\0", 9, &d), SLM_EFORMAT);
        ASSERT(strstr(d.msg, "NUL") != NULL);
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        memcpy(big, "alias = ", 8);
        ASSERT_EQ_INT(text(c, big, &d), SLM_EFORMAT);
        ASSERT(strstr(d.msg, "t.conf:1:1: line longer than") != NULL);
        config_free(c);
    }
}

TEST(config_env_errors_and_refused_names)
{
    static char *bad[] = { "SLM_PORT=80a", NULL };
    static char *flag[] = { "SLM_INSECURE_HTTP=2", NULL };
    /* SLM_API_KEY is not the refused option's variable: it is not read at all. */
    static char *secret[] = { "SLM_API_KEY=sk-0123456789abcdef", "SLM_HELP=1", "SLM_CONFIG=/c",
                              NULL };
    struct config *c = mk();
    struct slm_diag d;
    char name[64];

    ASSERT_EQ_INT(config_parse_env(c, bad, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "environment variable SLM_PORT (--port): wants an integer") != NULL);
    ASSERT_EQ_INT(config_parse_env(c, flag, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "SLM_INSECURE_HTTP") != NULL);
    ASSERT_OK(config_parse_env(c, secret, &d));
    ASSERT(!config_is_set(c, K_SECRET));
    ASSERT(!config_is_set(c, K_HELP));
    ASSERT_EQ_STR(config_str(c, K_CONFIG), "/c");
    config_env_name(c, K_LIST, name, sizeof(name));
    ASSERT_EQ_STR(name, "SLM_CORS_ORIGIN");
    config_env_name(c, K_LIST, name, 6);
    ASSERT_EQ_STR(name, "SLM_C");
    config_free(c);
}

TEST(config_argv_parsing_and_errors)
{
    static const char *const good[] = {
        "serve",           "-p", "80", "-np", "5", "--cors-origin", "a", "--cors-origin=b",
        "--insecure-http", NULL
    };
    static const char *const unknown[] = { "serve", "--prot", "1", NULL };
    static const char *const missing[] = { "serve", "--port", NULL };
    static const char *const badval[] = { "serve", "--port", "-1", NULL };
    static const char *const refused[] = { "serve", "--api-key", "sk-secret-0123456789", NULL };
    static const char *const positional[] = { "serve", "extra", NULL };
    static const char *const unknown_short[] = { "serve", "-z", NULL };
    struct config *c = mk();
    struct slm_diag d;

    ASSERT_OK(args(c, &d, good));
    ASSERT_EQ_INT(config_int(c, K_PORT, -1), 80);
    ASSERT_EQ_INT(config_int(c, K_NP, -1), 5);
    ASSERT_EQ_STR(config_str(c, K_LIST), "a,b"); /* repeated: appended */
    ASSERT(config_flag(c, K_FLAG));
    /* A lower layer read afterwards changes nothing. */
    ASSERT_OK(text(c, "port = 1\ncors-origin = z\n", &d));
    ASSERT_EQ_INT(config_int(c, K_PORT, -1), 80);
    ASSERT_EQ_STR(config_str(c, K_LIST), "a,b");
    config_free(c);

    c = mk();
    ASSERT_EQ_INT(args(c, &d, unknown), SLM_EINVAL);
    ASSERT(strstr(d.msg, "unknown option '--prot'") != NULL);
    ASSERT_EQ_INT(args(c, &d, missing), SLM_EINVAL);
    ASSERT(strstr(d.msg, "'--port' needs a value") != NULL);
    ASSERT_EQ_INT(args(c, &d, badval), SLM_EINVAL);
    ASSERT(strstr(d.msg, "--port wants an integer from 0 to 65535, got '-1'") != NULL);
    ASSERT_EQ_INT(args(c, &d, refused), SLM_EINVAL);
    ASSERT(strstr(d.msg, "--api-key is not accepted: use --api-key-file") != NULL);
    ASSERT(strstr(d.msg, "sk-secret") == NULL);
    ASSERT_EQ_INT(args(c, &d, positional), SLM_EINVAL);
    ASSERT(strstr(d.msg, "unexpected argument 'extra'") != NULL);
    ASSERT_EQ_INT(args(c, &d, unknown_short), SLM_EINVAL);
    ASSERT(strstr(d.msg, "unknown option '-z'") != NULL);
    config_free(c);
}

TEST(config_file_permissions_and_size)
{
    char path[512], dir[512];
    struct config *c = mk();
    struct slm_diag d;
    FILE *f;

    snprintf(path, sizeof(path), "%s/serve.conf", t_tmpdir());
    f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    fputs("port = 1234\n", f);
    fclose(f);
    ASSERT(chmod(path, 0664) == 0);
    ASSERT_EQ_INT(config_parse_file(c, path, &d), SLM_EPERM);
    ASSERT(strstr(d.msg, "writable by group or others (mode 664)") != NULL);
    ASSERT(strstr(d.msg, "chmod go-w") != NULL);
    ASSERT(chmod(path, 0646) == 0);
    ASSERT_EQ_INT(config_parse_file(c, path, &d), SLM_EPERM);
    ASSERT(chmod(path, 0644) == 0); /* readable by others is fine: no secrets in it */
    ASSERT_OK(config_parse_file(c, path, &d));
    ASSERT_EQ_INT(config_int(c, K_PORT, -1), 1234);
    config_free(c);

    c = mk();
    snprintf(dir, sizeof(dir), "%s/nope.conf", t_tmpdir());
    ASSERT_EQ_INT(config_parse_file(c, dir, &d), SLM_ENOTFOUND);
    ASSERT(strstr(d.msg, "nope.conf") != NULL);
    ASSERT_EQ_INT(config_parse_file(c, t_tmpdir(), &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "not a regular file") != NULL);
    f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    for (size_t i = 0; i < CONFIG_FILE_MAX / 10 + 1; i++)
        fputs("#########\n", f);
    fclose(f);
    ASSERT_EQ_INT(config_parse_file(c, path, &d), SLM_ELIMIT);
    config_free(c);
}

TEST(config_print_parses_back)
{
    static char *env[] = { "SLM_ALIAS=x # y", NULL };
    static const char *const argv[] = { "serve", "--port", "77", "--cors-origin", "a,b", NULL };
    struct config *c = mk(), *back = mk();
    struct slm_buf b;
    struct slm_diag d;

    ASSERT_OK(config_parse_env(c, env, &d));
    ASSERT_OK(args(c, &d, argv));
    slm_buf_init(&b, 1u << 16);
    ASSERT_OK(config_print(c, &b));
    ASSERT(strstr(slm_buf_str(&b), "port = 77  # command line\n") != NULL);
    ASSERT(strstr(slm_buf_str(&b), "alias = \"x # y\"  # environment SLM_ALIAS\n") != NULL);
    ASSERT(strstr(slm_buf_str(&b), "parallel = 4  # default\n") != NULL);
    ASSERT(strstr(slm_buf_str(&b), "api-key") == NULL);
    ASSERT(strstr(slm_buf_str(&b), "config =") == NULL);
    ASSERT_OK(config_parse_text(back, "printed", b.data, b.len, &d));
    ASSERT_EQ_INT(config_int(back, K_PORT, -1), 77);
    ASSERT_EQ_STR(config_str(back, K_ALIAS), "x # y");
    ASSERT_EQ_STR(config_str(back, K_LIST), "a,b");
    ASSERT_EQ_INT(config_int(back, K_NP, -1), 4);
    slm_buf_fini(&b);
    config_free(c);
    config_free(back);
}

TEST(config_bad_table_and_allocation_failures)
{
    static const struct config_opt bad[] = { { "Bad_Name", NULL, 0, CONFIG_STR, 0, 0, NULL, 0,
                                               NULL } };
    static const char *const argv[] = { "serve", "--alias",       "a", "--cors-origin",
                                        "x",     "--cors-origin", "y", NULL };
    struct config *c = NULL;

    ASSERT_EQ_INT(config_new(bad, 1, "SLM_", &c), SLM_EINVAL);
    ASSERT_NULL(c);
    /* Fail each allocation in turn: an error, never a crash or a leak. */
    for (uint64_t n = 1; n < 64; n++) {
        struct slm_diag d;
        int rc;

        slm_alloc_fail_at(n);
        rc = config_new(opts, K_COUNT, "SLM_", &c);
        if (rc == 0) {
            rc = args(c, &d, argv);
            if (rc == 0) rc = text(c, "port = 5\nparallel = 2\n", &d);
            config_free(c);
        }
        slm_alloc_fail_at(0);
        ASSERT(rc == 0 || rc == SLM_ENOMEM);
        if (rc == 0) break;
    }
}
