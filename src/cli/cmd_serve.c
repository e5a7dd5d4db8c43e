/*
 * cmd_serve.c - slm serve: the OpenAI-compatible HTTPS server.
 *
 * Options come from the command line, SLM_* environment variables and a
 * config file (--config FILE or SLM_CONFIG), in that order of precedence
 * (api/config.h); API keys never come from argv or the config file.
 *
 * Start-up, in order: options; the state directory (0700); API keys
 * (--api-key-file, else SLM_API_KEY, else the key stored in the state
 * directory, else a new one generated, stored 0600 and printed once); TLS
 * (--tls-cert/--tls-key, else a self-signed certificate generated into the
 * state directory on first start and reused; --insecure-http for plain HTTP
 * behind a proxy); then the listener, so that /health answers 503
 * {"status":"loading"} (and every other route 503 with Retry-After) while a
 * loader thread loads the model, the chat template (--chat-template-file,
 * else the model's, else a built-in chosen by the vocabulary) and starts the
 * scheduler (its threads start with the signals blocked, so only the loop's
 * signalfd sees them). When it is done the loop thread creates the API and
 * swaps it in as the server's handler; a loading error stops the loop and
 * exits 1 with its one-line message. The report (endpoint, key, model,
 * client settings, api/report.h) is then printed to stdout and written to
 * <state>/serve-report.txt (0600).
 *
 * SIGTERM/SIGINT: stop accepting, cancel every request (streams end with a
 * final error event and [DONE], waiting requests get 503), wait up to
 * SERVE_DRAIN_MS for connections to finish, exit 0. A second signal stops at
 * once. During loading, a signal stops as soon as the loader returns. SIGHUP
 * reloads the certificate (the old one stays if the new one is broken).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/config.h"
#include "api/report.h"
#include "chat/chat.h"
#include "cli/cli.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/str.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/sched.h"
#include "http/loop.h"
#include "http/server.h"
#include "http/tls.h"

#define CMD "serve"

/* Time given to requests and connections to finish after SIGTERM. */
#define SERVE_DRAIN_MS       10000u
/* Default cap on generated tokens for slm mkmodel's random-weight models. */
#define SERVE_DEMO_N_PREDICT 128
/* Most --cors-origin values. */
#define SERVE_CORS_MAX       32u
/* Largest --chat-template-file. */
#define SERVE_TEMPLATE_MAX   (1u << 20)
/* Validity of a generated certificate. */
#define SERVE_CERT_DAYS      825u
/* Default --max-connections-per-ip (0 with --insecure-http: behind a proxy
 * every connection comes from the proxy's address). */
#define SERVE_PER_IP_DEFAULT 64
#define SERVE_STR_(x)        #x
#define SERVE_STR(x)         SERVE_STR_(x)
/* Test-only: milliseconds the loader waits before loading (makes the loading
 * state observable in tests; documented as test-only in docs/serve.md). */
#define SERVE_ENV_LOAD_DELAY "SLM_TEST_LOAD_DELAY_MS"

extern char **environ;

/* The options, in the order of the table below. */
enum {
    O_MODEL,
    O_HOST,
    O_PORT,
    O_CTX,
    O_PARALLEL,
    O_THREADS,
    O_NPREDICT,
    O_QUEUE,
    O_MAXCONN,
    O_MAXCONN_IP,
    O_KEYFILE,
    O_APIKEY,
    O_CERT,
    O_TLSKEY,
    O_INSECURE,
    O_ALIAS,
    O_TEMPLATE,
    O_CORS,
    O_STATE,
    O_CONFIG,
    O_PRINT,
    O_LIST,
    O_HELP,
    O_COUNT
};

static const struct config_opt serve_opts_table[O_COUNT] = {
    [O_MODEL] = { "model", NULL, 'm', CONFIG_STR, 0, 0, NULL, 0, NULL },
    [O_HOST] = { "host", NULL, 0, CONFIG_STR, 0, 0, "127.0.0.1", 0, NULL },
    [O_PORT] = { "port", NULL, 0, CONFIG_INT, 0, 65535, "8443", 0, NULL },
    [O_CTX] = { "ctx-size", NULL, 'c', CONFIG_INT, 0, SLM_LIMIT_CONTEXT, NULL, 0, NULL },
    [O_PARALLEL] = { "parallel", "np", 0, CONFIG_INT, 1, 256, "4", 0, NULL },
    [O_THREADS] = { "threads", NULL, 't', CONFIG_INT, 0, SLM_LIMIT_THREADS, "0", 0, NULL },
    [O_NPREDICT] = { "n-predict", NULL, 'n', CONFIG_INT, -1, SLM_LIMIT_CONTEXT, NULL, 0, NULL },
    [O_QUEUE] = { "queue-max", NULL, 0, CONFIG_INT, 1, 65536, "64", 0, NULL },
    [O_MAXCONN] = { "max-connections", NULL, 0, CONFIG_INT, 1, 1000000, "1024", 0, NULL },
    [O_MAXCONN_IP] = { "max-connections-per-ip", NULL, 0, CONFIG_INT, 0, 1000000, NULL, 0, NULL },
    [O_KEYFILE] = { "api-key-file", NULL, 0, CONFIG_STR, 0, 0, NULL, 0, NULL },
    [O_APIKEY] = { "api-key", NULL, 0, CONFIG_STR, 0, 0, NULL, 0,
                   "a key there is readable by others (ps, /proc, the file); use --api-key-file "
                   "FILE (mode 0600) or the SLM_API_KEY environment variable" },
    [O_CERT] = { "tls-cert", NULL, 0, CONFIG_STR, 0, 0, NULL, 0, NULL },
    [O_TLSKEY] = { "tls-key", NULL, 0, CONFIG_STR, 0, 0, NULL, 0, NULL },
    [O_INSECURE] = { "insecure-http", NULL, 0, CONFIG_FLAG, 0, 0, "false", 0, NULL },
    [O_ALIAS] = { "alias", NULL, 0, CONFIG_STR, 0, 0, NULL, 0, NULL },
    [O_TEMPLATE] = { "chat-template-file", NULL, 0, CONFIG_STR, 0, 0, NULL, 0, NULL },
    [O_CORS] = { "cors-origin", NULL, 0, CONFIG_LIST, 0, 0, NULL, 0, NULL },
    [O_STATE] = { "state-dir", NULL, 0, CONFIG_STR, 0, 0, NULL, 0, NULL },
    [O_CONFIG] = { "config", NULL, 0, CONFIG_STR, 0, 0, NULL, CONFIG_NO_FILE, NULL },
    [O_PRINT] = { "print-config", NULL, 0, CONFIG_FLAG, 0, 0, NULL, CONFIG_NO_ENV | CONFIG_NO_FILE,
                  NULL },
    [O_LIST] = { "list-routes", NULL, 0, CONFIG_FLAG, 0, 0, NULL, CONFIG_NO_ENV | CONFIG_NO_FILE,
                 NULL },
    [O_HELP] = { "help", NULL, 'h', CONFIG_FLAG, 0, 0, NULL, CONFIG_NO_ENV | CONFIG_NO_FILE, NULL },
};

struct serve_opts {
    const char *model;
    const char *host;
    long long port;
    long long n_ctx, n_parallel, n_threads, n_predict, queue_max, max_conns, max_conns_per_ip;
    const char *key_file;
    const char *tls_cert, *tls_key;
    bool insecure_http;
    const char *alias;
    const char *state_dir;
    const char *template_file;
    char *cors_buf; /* owned: the comma-separated list the entries of cors point into */
    const char *cors[SERVE_CORS_MAX];
    size_t n_cors;
};

struct serve {
    struct serve_opts o;
    char state[PATH_MAX];
    char cert_path[PATH_MAX], key_path[PATH_MAX];
    char alias[128];
    bool tls;
    bool cert_generated;
    struct http_tls_ctx *tls_ctx;
    struct http_loop *loop;
    struct http_server *server;
    struct api_keys *keys;
    struct api *api;
    int sfd;
    struct http_io sig_io;
    struct http_timer drain_timer;
    uint64_t drain_deadline;
    bool draining;
    /* the key, for the report: generated now (shown once), or where it is */
    char generated[API_KEY_GEN_SIZE];
    char key_hint[PATH_MAX + 16];
    char key_file[PATH_MAX]; /* file holding the key, "" when none */
    bool key_in_state;       /* key_file is <state>/api-key (ours) */
    /* Loading: the loader thread writes the fields below, then posts
     * load_task; the loop thread reads them only in that task's callback
     * (the loop's queue lock orders the two), or after joining the loader. */
    pthread_t loader;
    bool loader_started;
    atomic_bool load_cancel;
    bool stopping; /* the loop has returned: load_task must do nothing */
    bool ready;
    struct http_task load_task;
    int load_rc;
    struct slm_diag load_diag;
    uint64_t load_started_ns;
    struct model *model;
    struct chat_template *tmpl;
    char *tmpl_src; /* --chat-template-file's text (for format detection), or NULL */
    size_t tmpl_src_len;
    struct sched *sched;
    int32_t n_predict;
    /* a start-up error found on the loop thread, reported by cmd_serve */
    int fail_rc;
    struct slm_diag fail_diag;
};

static void usage(FILE *out, const struct config *cfg)
{
    fprintf(out,
            "usage: slm serve -m MODEL [options]\n"
            "\n"
            "Serves the model over an OpenAI-compatible API (HTTPS by default) for Cline,\n"
            "Continue, OpenCode, Aider, curl and the openai SDKs.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE          GGUF model\n"
            "      --host ADDR           numeric address to listen on (default 127.0.0.1;\n"
            "                            0.0.0.0 or :: for every interface)\n"
            "      --port N              port (default 8443; 0: any free port)\n"
            "  -c, --ctx-size N          context tokens per slot (default: the model's, at\n"
            "                            most 8192)\n"
            "  -np, --parallel N         requests generated at once (slots, default 4)\n"
            "  -t, --threads N           engine threads (default 0: physical cores)\n"
            "  -n, --n-predict N         cap on generated tokens per request (default: none;\n"
            "                            %d for slm mkmodel's random-weight models)\n"
            "      --queue-max N         waiting requests before 503 (default 64)\n"
            "      --max-connections N   open connections (default 1024)\n"
            "      --max-connections-per-ip N  open connections from one address (IPv6: one\n"
            "                            /64); more get 503 (default %d, 0: no cap; with\n"
            "                            --insecure-http the default is 0)\n"
            "      --api-key-file FILE   API keys, one per line (mode 0600); else the\n"
            "                            SLM_API_KEY environment variable; else a key kept\n"
            "                            in the state directory (generated and printed once);\n"
            "                            never a key in argv or in the config file\n"
            "      --tls-cert FILE       certificate chain (PEM); with --tls-key\n"
            "      --tls-key FILE        private key (PEM, mode 0600)\n"
            "      --insecure-http       plain HTTP (only behind a TLS-terminating proxy)\n"
            "      --alias NAME          model id shown to clients (default: the file name)\n"
            "      --chat-template-file FILE  Jinja chat template overriding the model's\n"
            "      --cors-origin LIST    allowed browser origins, comma-separated\n"
            "      --state-dir DIR       keys, certificate, report (default\n"
            "                            $XDG_STATE_HOME/slm or ~/.local/state/slm)\n"
            "      --config FILE         config file: 'name = value' lines, name a long option\n"
            "                            above without '--', '#' comments (docs/serve.md);\n"
            "                            must not be writable by group or others\n"
            "      --print-config        print the effective configuration and its sources, exit\n"
            "      --list-routes         print the route table (METHOD PATH key|open), exit\n"
            "  -h, --help                this text\n"
            "\n"
            "Precedence: command line > environment > config file > default. Environment\n"
            "variables (an empty one counts as unset):\n",
            SERVE_DEMO_N_PREDICT, SERVE_PER_IP_DEFAULT);
    for (size_t i = 0, col = 0, prev = 0; i < O_COUNT; i++) {
        char env[64];

        if ((serve_opts_table[i].flags & CONFIG_NO_ENV) != 0 || serve_opts_table[i].refused)
            continue;
        config_env_name(cfg, i, env, sizeof(env));
        /* Three columns of 28; padding goes before an entry, so no line ends in blanks. */
        if (col == 3) {
            fputc('\n', out);
            col = 0;
        }
        fprintf(out, "%*s%s", col == 0 ? 2 : (int)(28 - prev), "", env);
        prev = strlen(env);
        col++;
    }
    fprintf(out, "\n  SLM_API_KEY                 (an API key; see --api-key-file)\n"
                 "\n"
                 "Signals: SIGTERM/SIGINT stop gracefully (exit 0); SIGHUP reloads the "
                 "certificate.\n"
                 "/health answers 503 {\"status\":\"loading\"} until the model is loaded, then "
                 "200.\n");
}

/*
 * Reads the options from the command line, the environment and the config
 * file. Returns 1 when --help, --list-routes or --print-config was handled
 * (*exit_code set), 0 to go on, or < 0 with *exit_code set (the message has
 * been printed).
 */
static int parse_opts(int argc, char **argv, struct serve_opts *o, struct config **cfgp,
                      int *exit_code)
{
    struct config *cfg = NULL;
    struct slm_diag d;
    const char *path, *cors;
    int rc;

    memset(o, 0, sizeof(*o));
    slm_diag_clear(&d);
    *exit_code = SLM_EXIT_USAGE;
    if (config_new(serve_opts_table, O_COUNT, "SLM_", &cfg) < 0) {
        *exit_code = cli_fail(CMD, SLM_ENOMEM, "out of memory");
        return SLM_ENOMEM;
    }
    *cfgp = cfg;
    if ((rc = config_parse_argv(cfg, argc, argv, &d)) < 0) {
        if (rc == SLM_ENOMEM)
            *exit_code = cli_fail_diag(CMD, rc, &d);
        else
            cli_usage_error(CMD, "%s", d.msg);
        return rc;
    }
    if (config_flag(cfg, O_HELP)) {
        usage(stdout, cfg);
        *exit_code = SLM_EXIT_OK;
        return 1;
    }
    if (config_flag(cfg, O_LIST)) {
        size_t n;
        const struct route *r = api_routes(&n);

        for (size_t i = 0; i < n; i++)
            printf("%s %s %s\n", router_method_name(r[i].method), r[i].path,
                   r[i].auth ? "key" : "open");
        *exit_code = SLM_EXIT_OK;
        return 1;
    }
    *exit_code = SLM_EXIT_CONFIG;
    if ((rc = config_parse_env(cfg, environ, &d)) < 0) {
        cli_fail_diag(CMD, rc, &d);
        return rc;
    }
    path = config_str(cfg, O_CONFIG);
    if (path != NULL && (rc = config_parse_file(cfg, path, &d)) < 0) {
        cli_fail_diag(CMD, rc, &d);
        return rc;
    }
    if (config_set_default(cfg, O_MAXCONN_IP,
                           config_flag(cfg, O_INSECURE) ? "0" : SERVE_STR(SERVE_PER_IP_DEFAULT)) <
        0) {
        *exit_code = cli_fail(CMD, SLM_ENOMEM, "out of memory");
        return SLM_ENOMEM;
    }
    if (config_flag(cfg, O_PRINT)) {
        struct slm_buf b;

        slm_buf_init(&b, 1u << 20);
        rc = config_print(cfg, &b);
        if (rc == 0) fwrite(b.data, 1, b.len, stdout);
        slm_buf_fini(&b);
        *exit_code = rc == 0 ? SLM_EXIT_OK : cli_fail(CMD, rc, "out of memory");
        return rc == 0 ? 1 : rc;
    }

    o->model = config_str(cfg, O_MODEL);
    o->host = config_is_set(cfg, O_HOST) ? config_str(cfg, O_HOST) : "127.0.0.1";
    o->port = config_int(cfg, O_PORT, 8443);
    o->n_ctx = config_int(cfg, O_CTX, 0);
    o->n_parallel = config_int(cfg, O_PARALLEL, 4);
    o->n_threads = config_int(cfg, O_THREADS, 0);
    o->n_predict = config_int(cfg, O_NPREDICT, -2); /* -2: not given */
    o->queue_max = config_int(cfg, O_QUEUE, 64);
    o->max_conns = config_int(cfg, O_MAXCONN, 1024);
    o->key_file = config_str(cfg, O_KEYFILE);
    o->tls_cert = config_str(cfg, O_CERT);
    o->tls_key = config_str(cfg, O_TLSKEY);
    o->insecure_http = config_flag(cfg, O_INSECURE);
    o->max_conns_per_ip = config_int(cfg, O_MAXCONN_IP, SERVE_PER_IP_DEFAULT);
    o->alias = config_str(cfg, O_ALIAS);
    o->state_dir = config_str(cfg, O_STATE);
    o->template_file = config_str(cfg, O_TEMPLATE);
    cors = config_str(cfg, O_CORS);
    if (cors != NULL) {
        char *save = NULL, *tok;

        o->cors_buf = slm_xstrdup(cors);
        for (tok = strtok_r(o->cors_buf, ",", &save); tok != NULL;
             tok = strtok_r(NULL, ",", &save)) {
            size_t len;

            while (*tok == ' ' || *tok == '\t')
                tok++;
            len = strlen(tok);
            while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
                tok[--len] = '\0';
            if (*tok == '\0') continue;
            if (strcmp(tok, "*") == 0) {
                *exit_code = cli_usage_error(CMD, "--cors-origin: '*' is not allowed on "
                                                  "authenticated routes; list the origins");
                return SLM_EINVAL;
            }
            if (o->n_cors >= SERVE_CORS_MAX) {
                *exit_code =
                    cli_usage_error(CMD, "--cors-origin: more than %u origins", SERVE_CORS_MAX);
                return SLM_EINVAL;
            }
            o->cors[o->n_cors++] = tok;
        }
    }
    *exit_code = SLM_EXIT_USAGE;
    if (o->model == NULL) {
        cli_usage_error(CMD, "a model is required (-m MODEL, SLM_MODEL or 'model = FILE' in "
                             "the config file)");
        return SLM_EINVAL;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        cli_usage_error(CMD, "--tls-cert and --tls-key go together");
        return SLM_EINVAL;
    }
    if (o->insecure_http && o->tls_cert != NULL) {
        cli_usage_error(CMD, "--insecure-http and --tls-cert exclude each other");
        return SLM_EINVAL;
    }
    *exit_code = SLM_EXIT_OK;
    return 0;
}

/* ---- files in the state directory ---- */

static int mkdir_p(const char *path, struct slm_diag *d)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(tmp))
        return slm_diag_set(d, SLM_EINVAL, "state directory path is empty or too long");
    memcpy(tmp, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        tmp[i] = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return slm_diag_set(d, SLM_EIO, "cannot create %s: %s", tmp, strerror(errno));
        tmp[i] = i == len ? '\0' : '/';
    }
    if (chmod(path, 0700) < 0)
        return slm_diag_set(d, SLM_EIO, "cannot chmod 700 %s: %s", path, strerror(errno));
    return 0;
}

static int state_dir(struct serve *sv, struct slm_diag *d)
{
    const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char abs[PATH_MAX];
    int n, rc;

    if (sv->o.state_dir != NULL)
        n = snprintf(sv->state, sizeof(sv->state), "%s", sv->o.state_dir);
    else if (x != NULL && x[0] == '/')
        n = snprintf(sv->state, sizeof(sv->state), "%s/slm", x);
    else if (home != NULL && home[0] == '/')
        n = snprintf(sv->state, sizeof(sv->state), "%s/.local/state/slm", home);
    else
        return slm_diag_set(d, SLM_EINVAL, "no state directory: set HOME or pass --state-dir");
    if (n < 0 || (size_t)n >= sizeof(sv->state))
        return slm_diag_set(d, SLM_EINVAL, "state directory path too long");
    if ((rc = mkdir_p(sv->state, d)) < 0) return rc;
    /* Absolute, so the report's paths work from any directory. */
    if (realpath(sv->state, abs) == NULL)
        return slm_diag_set(d, SLM_EIO, "state directory %s: %s", sv->state, strerror(errno));
    memcpy(sv->state, abs, strlen(abs) + 1);
    return 0;
}

/* Writes data to path with mode 0600 (atomically: temporary file + rename). */
static int write_private(const char *path, const char *data, size_t len, struct slm_diag *d)
{
    char tmp[PATH_MAX + 8];
    size_t off = 0;
    int fd;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return slm_diag_set(d, SLM_EINVAL, "path too long: %s", path);
    (void)unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return slm_diag_set(d, SLM_EIO, "cannot create %s: %s", tmp, strerror(errno));
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);

        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;

            close(fd);
            (void)unlink(tmp);
            return slm_diag_set(d, SLM_EIO, "cannot write %s: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    if (fchmod(fd, 0600) < 0 || fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
        (void)unlink(tmp);
        return slm_diag_set(d, SLM_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    return 0;
}

/*
 * Loads the API keys into sv->keys. sv->generated receives a new key (to
 * print once) when one was made; sv->key_hint and sv->key_file say where the
 * key comes from (for the report).
 */
static int setup_keys(struct serve *sv, struct slm_diag *d)
{
    struct api_keys *keys = sv->keys;
    char *generated = sv->generated, *key_hint = sv->key_hint, *path = sv->key_file;
    size_t hint_cap = sizeof(sv->key_hint);
    const char *env = getenv("SLM_API_KEY");
    int rc;

    generated[0] = '\0';
    path[0] = '\0';
    if (sv->o.key_file != NULL) {
        snprintf(key_hint, hint_cap, "$(cat %s)", sv->o.key_file);
        snprintf(path, sizeof(sv->key_file), "%s", sv->o.key_file);
        return api_keys_load_file(keys, sv->o.key_file, d);
    }
    if (env != NULL && env[0] != '\0') {
        snprintf(key_hint, hint_cap, "$SLM_API_KEY");
        rc = api_keys_add(keys, env, strlen(env), d);
        if (rc < 0) {
            char msg[SLM_DIAG_MSG_MAX];

            snprintf(msg, sizeof(msg), "%s", d->msg);
            return slm_diag_set(d, rc, "SLM_API_KEY: %s", msg);
        }
        return 0;
    }
    if ((size_t)snprintf(path, sizeof(sv->key_file), "%s/api-key", sv->state) >=
        sizeof(sv->key_file))
        return slm_diag_set(d, SLM_EINVAL, "state directory path too long");
    sv->key_in_state = true;
    snprintf(key_hint, hint_cap, "$(cat %s)", path);
    if (access(path, F_OK) == 0) return api_keys_load_file(keys, path, d);
    rc = api_keys_generate(generated);
    if (rc < 0) return slm_diag_set(d, rc, "cannot generate an API key: %s", slm_strerror(rc));
    {
        char line[API_KEY_GEN_SIZE + 1];
        size_t n = strlen(generated);

        memcpy(line, generated, n);
        line[n] = '\n';
        rc = write_private(path, line, n + 1, d);
        explicit_bzero(line, sizeof(line));
    }
    if (rc < 0) return rc;
    return api_keys_add(keys, generated, strlen(generated), d);
}

static int setup_tls(struct serve *sv, struct slm_diag *d)
{
    char dir[PATH_MAX];
    int rc;

    sv->cert_generated = false;
    if (sv->o.insecure_http) return 0;
    sv->tls = true;
    if (sv->o.tls_cert != NULL) {
        snprintf(sv->cert_path, sizeof(sv->cert_path), "%s", sv->o.tls_cert);
        snprintf(sv->key_path, sizeof(sv->key_path), "%s", sv->o.tls_key);
        return http_tls_ctx_new(sv->cert_path, sv->key_path, &sv->tls_ctx, d);
    }
    if ((size_t)snprintf(dir, sizeof(dir), "%s/tls", sv->state) >= sizeof(dir) ||
        (size_t)snprintf(sv->cert_path, sizeof(sv->cert_path), "%s/cert.pem", dir) >=
            sizeof(sv->cert_path) ||
        (size_t)snprintf(sv->key_path, sizeof(sv->key_path), "%s/key.pem", dir) >=
            sizeof(sv->key_path))
        return slm_diag_set(d, SLM_EINVAL, "state directory path too long");
    if ((rc = mkdir_p(dir, d)) < 0) return rc;
    if (access(sv->cert_path, F_OK) != 0 || access(sv->key_path, F_OK) != 0) {
        const char *hosts[5];
        size_t n = 0;
        char hn[256];

        hosts[n++] = "localhost";
        hosts[n++] = "127.0.0.1";
        hosts[n++] = "::1";
        if (strcmp(sv->o.host, "0.0.0.0") != 0 && strcmp(sv->o.host, "::") != 0 &&
            strcmp(sv->o.host, "127.0.0.1") != 0 && strcmp(sv->o.host, "::1") != 0)
            hosts[n++] = sv->o.host;
        if (gethostname(hn, sizeof(hn)) == 0) {
            hn[sizeof(hn) - 1] = '\0';
            if (hn[0] != '\0' && strcmp(hn, "localhost") != 0) hosts[n++] = hn;
        }
        rc = http_tls_selfsigned_write(sv->cert_path, sv->key_path, hosts, n, SERVE_CERT_DAYS, d);
        if (rc == SLM_EINVAL && n > 3) /* an odd host name: certify the addresses only */
            rc = http_tls_selfsigned_write(sv->cert_path, sv->key_path, hosts, 3, SERVE_CERT_DAYS,
                                           d);
        if (rc < 0) return rc;
        sv->cert_generated = true;
    }
    return http_tls_ctx_new(sv->cert_path, sv->key_path, &sv->tls_ctx, d);
}

/* ---- the chat template ---- */

static int read_file(const char *path, size_t max, char **out, size_t *len, struct slm_diag *d)
{
    struct slm_buf b;
    char tmp[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    *out = NULL;
    if (fd < 0) return slm_diag_set(d, SLM_ENOTFOUND, "cannot open %s: %s", path, strerror(errno));
    slm_buf_init(&b, max);
    for (;;) {
        ssize_t r = read(fd, tmp, sizeof(tmp));

        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = slm_diag_set(d, SLM_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        if (slm_buf_append(&b, tmp, (size_t)r) < 0) {
            rc = slm_diag_set(d, SLM_ELIMIT, "%s is larger than %zu bytes", path, max);
            break;
        }
    }
    close(fd);
    if (rc < 0) {
        slm_buf_fini(&b);
        return rc;
    }
    *out = slm_buf_take(&b, len);
    return *out == NULL ? slm_diag_set(d, SLM_ENOMEM, "out of memory") : 0;
}

static const char *builtin_for(const struct tokenizer *t)
{
    if (tokenizer_find(t, "<|im_start|>", 12) != TOK_NONE) return "chatml";
    if (tokenizer_find(t, "<|start_header_id|>", 19) != TOK_NONE) return "llama3";
    if (tokenizer_find(t, "[INST]", 6) != TOK_NONE) return "mistral";
    return "chatml";
}

static int setup_template(struct serve *sv, struct model *m, struct chat_template **out,
                          struct slm_diag *d)
{
    const struct gguf_file *f = model_get_gguf(m);
    struct gguf_str src;
    const char *name;
    int rc;

    if (sv->o.template_file != NULL) {
        char *text;
        size_t len;

        if ((rc = read_file(sv->o.template_file, SERVE_TEMPLATE_MAX, &text, &len, d)) < 0)
            return rc;
        rc = chat_template_new(text, len, out, d);
        if (rc == 0) {
            /* The API detects the tool-call format and <think> from this text. */
            sv->tmpl_src = text;
            sv->tmpl_src_len = len;
        } else {
            slm_free(text);
        }
        if (rc < 0) {
            char msg[SLM_DIAG_MSG_MAX];

            snprintf(msg, sizeof(msg), "%s", d->msg);
            return slm_diag_set(d, rc, "%s: %s", sv->o.template_file, msg);
        }
        log_info("chat template: %s", sv->o.template_file);
        return 0;
    }
    if (gguf_get_str(f, "tokenizer.chat_template", &src, NULL) == 0) {
        struct slm_diag td;

        slm_diag_clear(&td);
        rc = chat_template_new(src.ptr, src.len, out, &td);
        if (rc == 0) {
            log_info("chat template: the model's (%zu bytes)", src.len);
            return 0;
        }
        log_warn("the model's chat template does not compile (%s); using a built-in one", td.msg);
    }
    name = builtin_for(model_get_tokenizer(m));
    rc = chat_template_builtin(name, out, d);
    if (rc == 0) log_info("chat template: built-in %s", name);
    return rc;
}


/* ---- report ---- */

/*
 * Reads the first key of a key file (one per line, '#' comments) into out
 * (cap bytes). Returns true if one was found.
 */
static bool first_key(const char *path, char *out, size_t cap)
{
    struct slm_diag d;
    char *text = NULL;
    size_t len = 0, off = 0;
    bool found = false;

    if (read_file(path, 1u << 20, &text, &len, &d) < 0) return false;
    while (off < len && !found) {
        const char *s = text + off, *nl = memchr(s, '\n', len - off);
        size_t n = nl != NULL ? (size_t)(nl - s) : len - off;

        off += n + 1;
        while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        while (n > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            n--;
        }
        if (n == 0 || *s == '#' || n >= cap) continue;
        memcpy(out, s, n);
        out[n] = '\0';
        found = true;
    }
    explicit_bzero(text, len);
    slm_free(text);
    return found;
}

/*
 * Prints the report to stdout and writes it to <state>/serve-report.txt
 * (0600). stdout shows the key only when it was generated now (stdout may
 * be a log); the file, private to the user, also holds a key read from the
 * state directory, so its snippets can be pasted as they are.
 */
static void report(struct serve *sv)
{
    const char *scheme = sv->tls ? "https" : "http", *host = sv->o.host;
    char endpoint[300], remote[600] = "", path[PATH_MAX], stored[API_KEY_LEN_MAX + 1] = "";
    char note[PATH_MAX + 64];
    unsigned port = http_server_port(sv->server);
    struct report_params rp;
    struct slm_buf b;
    struct slm_diag d;
    bool any = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;

    if (any) host = "127.0.0.1";
    if (strchr(host, ':') != NULL)
        snprintf(endpoint, sizeof(endpoint), "%s://[%s]:%u/v1", scheme, host, port);
    else
        snprintf(endpoint, sizeof(endpoint), "%s://%s:%u/v1", scheme, host, port);
    if (any) {
        char hn[256];

        if (gethostname(hn, sizeof(hn)) == 0 && (hn[sizeof(hn) - 1] = '\0', hn[0] != '\0'))
            snprintf(remote, sizeof(remote), "%s://%s:%u/v1", scheme, hn, port);
    }
    memset(&rp, 0, sizeof(rp));
    rp.endpoint = endpoint;
    rp.remote_endpoint = remote[0] != '\0' ? remote : NULL;
    rp.alias = sv->alias;
    rp.n_ctx = sched_n_ctx(sv->sched);
    rp.n_slots = (uint32_t)sv->o.n_parallel;
    rp.n_predict = sv->n_predict;
    rp.key_hint = sv->key_hint;
    rp.key_file = sv->key_file[0] != '\0' ? sv->key_file : NULL;
    rp.ca_file = sv->tls && sv->o.tls_cert == NULL ? sv->cert_path : NULL;
    rp.ca_new = sv->cert_generated;
    if (sv->generated[0] != '\0') {
        snprintf(note, sizeof(note), "new: shown once here, stored in %s/api-key", sv->state);
        rp.key = sv->generated;
        rp.key_note = note;
    }

    slm_buf_init(&b, 1u << 20);
    if (report_write(&rp, &b) < 0) {
        log_warn("cannot format the start-up report");
    } else {
        fwrite(b.data, 1, b.len, stdout);
        fflush(stdout);
    }
    if (rp.key == NULL && sv->key_in_state && first_key(sv->key_file, stored, sizeof(stored)))
        rp.key = stored;
    slm_buf_reset(&b);
    if (report_write(&rp, &b) < 0) {
        log_warn("cannot format the start-up report");
    } else if ((size_t)snprintf(path, sizeof(path), "%s/serve-report.txt", sv->state) <
                   sizeof(path) &&
               write_private(path, b.data, b.len, &d) < 0) {
        log_warn("cannot write the report: %s", d.msg);
    }
    explicit_bzero(stored, sizeof(stored));
    if (b.data != NULL) explicit_bzero(b.data, b.len);
    slm_buf_fini(&b);
}

/* ---- signals and draining ---- */

static void stop_if_drained(struct serve *sv)
{
    size_t active = sv->api != NULL ? api_n_active(sv->api) : 0;

    if ((active == 0 && http_server_n_conns(sv->server) == 0) ||
        http_loop_now_ms(sv->loop) >= sv->drain_deadline)
        http_loop_stop(sv->loop);
}

static void on_drain_tick(struct http_loop *loop, struct http_timer *t)
{
    struct serve *sv = t->data;

    stop_if_drained(sv);
    if (http_timer_start(loop, t, 50) < 0) http_loop_stop(loop);
}

static void on_signal(struct http_loop *loop, struct http_io *io, unsigned events)
{
    struct serve *sv = io->data;
    struct signalfd_siginfo si;

    (void)events;
    while (read(sv->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            struct slm_diag d;

            if (!sv->tls) continue;
            slm_diag_clear(&d);
            if (http_tls_ctx_reload(&sv->tls_ctx, sv->cert_path, sv->key_path, &d) < 0)
                log_error("SIGHUP: certificate not reloaded, keeping the old one: %s", d.msg);
            else
                log_info("SIGHUP: certificate reloaded from %s", sv->cert_path);
            continue;
        }
        if (sv->draining) {
            log_info("second signal: stopping now");
            http_loop_stop(loop);
            continue;
        }
        sv->draining = true;
        if (!sv->ready) {
            /* Nothing is in flight while loading: stop once the loader returns. */
            log_info("signal %u while loading: stopping", si.ssi_signo);
            atomic_store(&sv->load_cancel, true);
            http_server_drain(sv->server);
            http_loop_stop(loop);
            continue;
        }
        log_info("signal %u: stopping (draining for at most %u ms)", si.ssi_signo, SERVE_DRAIN_MS);
        sv->drain_deadline = http_loop_now_ms(loop) + SERVE_DRAIN_MS;
        http_server_drain(sv->server);
        api_cancel_all(sv->api);
        http_timer_init(&sv->drain_timer, on_drain_tick, sv);
        if (http_timer_start(loop, &sv->drain_timer, 0) < 0) http_loop_stop(loop);
    }
}

/* ---- loading ---- */

/*
 * The server's handler until the model is loaded: /health answers 503
 * {"status":"loading"}, every other request 503 in OpenAI's error format;
 * both with Retry-After. No key is checked: nothing is served yet.
 */
static void loading_handle(void *arg, struct http_exchange *ex)
{
    static const char health[] = "{\"status\":\"loading\"}";
    static const char err[] = "{\"error\":{\"message\":\"the model is still loading; retry in a "
                              "few seconds\",\"type\":\"server_error\",\"param\":null,"
                              "\"code\":\"model_loading\"}}";
    size_t len;
    const char *path = http_exchange_path(ex, &len);
    bool is_health = (len == 7 && memcmp(path, "/health", 7) == 0) ||
                     (len == 10 && memcmp(path, "/v1/health", 10) == 0);

    (void)arg;
    (void)http_exchange_add_header(ex, "Retry-After", "1");
    if (is_health)
        http_exchange_respond(ex, 503, "application/json", health, sizeof(health) - 1);
    else
        http_exchange_respond(ex, 503, "application/json", err, sizeof(err) - 1);
}

/* Test-only delay (SERVE_ENV_LOAD_DELAY), cut short by a signal. */
static void test_delay(struct serve *sv)
{
    const char *s = getenv(SERVE_ENV_LOAD_DELAY);
    uint64_t ms;

    if (s == NULL || slm_parse_u64(s, &ms) < 0 || ms == 0) return;
    if (ms > 600000) ms = 600000;
    log_warn("%s=%llu: delaying the model load (a test-only setting)", SERVE_ENV_LOAD_DELAY,
             (unsigned long long)ms);
    for (uint64_t t = 0; t < ms && !atomic_load(&sv->load_cancel); t += 10) {
        struct timespec ts = { 0, 10 * 1000000L };

        nanosleep(&ts, NULL);
    }
}

/* The model, its template and the scheduler (on the loader thread). */
static int load_engine(struct serve *sv, struct slm_diag *d)
{
    struct sched_params sp = sched_params_default();
    int rc;

    test_delay(sv);
    if (atomic_load(&sv->load_cancel)) return slm_diag_set(d, SLM_ECANCELED, "stopped");
    if ((rc = model_load(sv->o.model, &sv->model, d)) < 0) return rc;
    sv->n_predict = (int32_t)sv->o.n_predict;
    if (sv->o.n_predict == -2) {
        struct gguf_str name;

        sv->n_predict = -1;
        if (gguf_get_str(model_get_gguf(sv->model), "general.name", &name, NULL) == 0 &&
            name.len >= 11 && memcmp(name.ptr, "slm-mkmodel", 11) == 0)
            sv->n_predict = SERVE_DEMO_N_PREDICT;
    }
    if ((rc = setup_template(sv, sv->model, &sv->tmpl, d)) < 0) return rc;
    if (atomic_load(&sv->load_cancel)) return slm_diag_set(d, SLM_ECANCELED, "stopped");
    sp.n_slots = (uint32_t)sv->o.n_parallel;
    sp.n_ctx = (uint32_t)sv->o.n_ctx;
    sp.n_threads = (uint32_t)sv->o.n_threads;
    sp.n_queue_max = (uint32_t)sv->o.queue_max;
    return sched_new(sv->model, &sp, &sv->sched, d);
}

static void *loader_main(void *arg)
{
    struct serve *sv = arg;

    slm_diag_clear(&sv->load_diag);
    sv->load_rc = load_engine(sv, &sv->load_diag);
    if (http_loop_post(sv->loop, &sv->load_task) < 0)
        log_warn("cannot wake the event loop; the server becomes ready at its next event");
    return NULL;
}

/* Runs on the loop thread once the loader is done: the API replaces the loading handler. */
static void on_loaded(struct http_loop *loop, struct http_task *task)
{
    struct serve *sv = task->data;
    struct api_params ap;
    int rc;

    if (sv->stopping) return; /* run by http_loop_free after the loop ended */
    if (sv->draining) {
        http_loop_stop(loop);
        return;
    }
    if (sv->load_rc < 0) {
        sv->fail_rc = sv->load_rc;
        sv->fail_diag = sv->load_diag;
        http_loop_stop(loop);
        return;
    }
    memset(&ap, 0, sizeof(ap));
    ap.model = sv->model;
    ap.sched = sv->sched;
    ap.server = sv->server;
    ap.keys = sv->keys;
    ap.tmpl = sv->tmpl;
    ap.tmpl_src = sv->tmpl_src;
    ap.tmpl_src_len = sv->tmpl_src_len;
    ap.alias = sv->alias;
    ap.n_predict_max = sv->n_predict;
    ap.cors_origins = sv->o.cors;
    ap.n_cors_origins = sv->o.n_cors;
    if ((rc = api_new(&ap, &sv->api, &sv->fail_diag)) < 0) {
        sv->fail_rc = rc;
        http_loop_stop(loop);
        return;
    }
    /* Requests answered by loading_handle are complete, so none is held by it. */
    http_server_set_handler(sv->server, api_handle, sv->api);
    sv->ready = true;
    report(sv);
    explicit_bzero(sv->generated, sizeof(sv->generated));
    log_info("ready: model %s, %u slots x %u tokens, loaded in %.1f s", sv->alias,
             (unsigned)sv->o.n_parallel, sched_n_ctx(sv->sched),
             (double)(slm_now_ns() - sv->load_started_ns) / 1e9);
}

/* ---- main ---- */
static void default_alias(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    size_t len;

    base = base != NULL ? base + 1 : path;
    len = strlen(base);
    if (len > 5 && strcmp(base + len - 5, ".gguf") == 0) len -= 5;
    if (len >= cap) len = cap - 1;
    memcpy(out, base, len);
    out[len] = '\0';
}


int cmd_serve(int argc, char **argv)
{
    static struct serve sv; /* large (paths); one per process */
    struct config *cfg = NULL;
    struct slm_diag d;
    struct http_server_params hp = http_server_params_default();
    sigset_t mask;
    int rc, exit_code = SLM_EXIT_OK;

    memset(&sv, 0, sizeof(sv));
    sv.sfd = -1;
    atomic_init(&sv.load_cancel, false);
    slm_diag_clear(&d);
    rc = parse_opts(argc, argv, &sv.o, &cfg, &exit_code);
    if (rc != 0) goto cleanup;

    /* Signals are read through a signalfd: block them before any thread starts. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (access(sv.o.model, R_OK) < 0) {
        rc = slm_diag_set(&d, errno == ENOENT ? SLM_ENOTFOUND : SLM_EIO, "cannot read %s: %s",
                          sv.o.model, strerror(errno));
        goto fail;
    }
    if ((rc = state_dir(&sv, &d)) < 0) goto fail;
    sv.keys = api_keys_new();
    if (sv.keys == NULL) {
        rc = slm_diag_set(&d, SLM_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = setup_keys(&sv, &d)) < 0) goto fail;
    unsetenv("SLM_API_KEY"); /* keep it from anything we might start */
    if ((rc = setup_tls(&sv, &d)) < 0) goto fail;
    if (sv.o.insecure_http)
        log_warn("--insecure-http: plain HTTP; API keys cross the network in clear text unless "
                 "a TLS proxy is in front");
    if (sv.o.alias != NULL)
        snprintf(sv.alias, sizeof(sv.alias), "%s", sv.o.alias);
    else
        default_alias(sv.o.model, sv.alias, sizeof(sv.alias));

    if ((rc = http_loop_new(&sv.loop)) < 0) {
        slm_diag_set(&d, rc, "cannot create the event loop");
        goto fail;
    }
    hp.host = sv.o.host;
    hp.port = (uint16_t)sv.o.port;
    hp.tls = sv.tls ? &sv.tls_ctx : NULL;
    hp.max_conns = (uint32_t)sv.o.max_conns;
    hp.max_conns_per_ip = (uint32_t)sv.o.max_conns_per_ip;
    hp.handler = loading_handle;
    hp.handler_arg = &sv;
    if ((rc = http_server_new(sv.loop, &hp, &sv.server, &d)) < 0) goto fail;

    sv.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sv.sfd < 0) {
        rc = slm_diag_set(&d, SLM_EIO, "signalfd: %s", strerror(errno));
        goto fail;
    }
    http_io_init(&sv.sig_io, sv.sfd, on_signal, &sv);
    if ((rc = http_io_start(sv.loop, &sv.sig_io, HTTP_IO_READ)) < 0) {
        slm_diag_set(&d, rc, "cannot watch signals");
        goto fail;
    }

    sv.load_task.cb = on_loaded;
    sv.load_task.data = &sv;
    sv.load_started_ns = slm_now_ns();
    if ((rc = pthread_create(&sv.loader, NULL, loader_main, &sv)) != 0) {
        rc = slm_diag_set(&d, SLM_EIO, "cannot start the loader thread: %s", strerror(rc));
        goto fail;
    }
    sv.loader_started = true;
    log_info("listening on %s port %u (%s); loading %s", sv.o.host, http_server_port(sv.server),
             sv.tls ? "https" : "http", sv.o.model);

    rc = http_loop_run(sv.loop);
    sv.stopping = true;
    if (rc < 0) {
        slm_diag_set(&d, rc, "event loop failed");
        goto fail;
    }
    if (sv.fail_rc < 0) {
        rc = sv.fail_rc;
        d = sv.fail_diag;
        goto fail;
    }
    log_info("stopped");
    goto cleanup;
fail:
    exit_code = cli_fail_diag(CMD, rc, &d);
cleanup:
    sv.stopping = true;
    atomic_store(&sv.load_cancel, true);
    if (sv.loader_started) pthread_join(sv.loader, NULL);
    /* Order: connections (their aborts cancel requests), the engine (it reports
     * DONE for what is left, posted to the loop), the loop (runs those tasks,
     * which need the api, and a load_task still queued, which does nothing
     * now), then the rest. */
    if (sv.loop != NULL && sv.sfd >= 0) http_io_stop(sv.loop, &sv.sig_io);
    http_server_free(sv.server);
    sched_free(sv.sched);
    http_loop_free(sv.loop);
    api_free(sv.api);
    if (sv.sfd >= 0) close(sv.sfd);
    chat_template_free(sv.tmpl);
    slm_free(sv.tmpl_src);
    model_free(sv.model);
    http_tls_ctx_unref(sv.tls_ctx);
    api_keys_free(sv.keys);
    explicit_bzero(sv.generated, sizeof(sv.generated));
    slm_free(sv.o.cors_buf);
    config_free(cfg);
    return exit_code;
}
