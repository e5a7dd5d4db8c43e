/*
 * cmd_serve.c - slm serve: the OpenAI-compatible HTTPS server.
 *
 * Start-up, in order: options; the state directory (0700); API keys
 * (--api-key-file, else SLM_API_KEY, else the key stored in the state
 * directory, else a new one generated, stored 0600 and printed once); TLS
 * (--tls-cert/--tls-key, else a self-signed certificate generated into the
 * state directory on first start and reused; --insecure-http for plain HTTP
 * behind a proxy); the model, the scheduler (its threads start with the
 * signals blocked, so only the loop's signalfd sees them), the chat template
 * (--chat-template-file, else the model's, else a built-in chosen by the
 * vocabulary); then the listener. The endpoint, key, model and a curl line
 * are printed to stdout and written to <state>/serve-report.txt (0600).
 *
 * SIGTERM/SIGINT: stop accepting, cancel every request (streams end with a
 * final error event and [DONE], waiting requests get 503), wait up to
 * SERVE_DRAIN_MS for connections to finish, exit 0. A second signal stops at
 * once. SIGHUP reloads the certificate (the old one stays if the new one is
 * broken).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
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

struct serve_opts {
    const char *model;
    const char *host;
    long long port;
    long long n_ctx, n_parallel, n_threads, n_predict, queue_max, max_conns;
    const char *key_file;
    const char *tls_cert, *tls_key;
    bool insecure_http;
    const char *alias;
    const char *state_dir;
    const char *template_file;
    const char *cors[SERVE_CORS_MAX];
    size_t n_cors;
    bool list_routes;
};

struct serve {
    struct serve_opts o;
    char state[PATH_MAX];
    char cert_path[PATH_MAX], key_path[PATH_MAX];
    bool tls;
    struct http_tls_ctx *tls_ctx;
    struct http_loop *loop;
    struct http_server *server;
    struct api *api;
    struct sched *sched;
    int sfd;
    struct http_io sig_io;
    struct http_timer drain_timer;
    uint64_t drain_deadline;
    bool draining;
};

static void usage(FILE *out)
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
            "      --api-key-file FILE   API keys, one per line (mode 0600); else the\n"
            "                            SLM_API_KEY environment variable; else a key kept\n"
            "                            in the state directory (generated and printed once)\n"
            "      --tls-cert FILE       certificate chain (PEM); with --tls-key\n"
            "      --tls-key FILE        private key (PEM, mode 0600)\n"
            "      --insecure-http       plain HTTP (only behind a TLS-terminating proxy)\n"
            "      --alias NAME          model id shown to clients (default: the file name)\n"
            "      --chat-template-file FILE  Jinja chat template overriding the model's\n"
            "      --cors-origin LIST    allowed browser origins, comma-separated\n"
            "      --state-dir DIR       keys, certificate, report (default\n"
            "                            $XDG_STATE_HOME/slm or ~/.local/state/slm)\n"
            "      --list-routes         print the route table (METHOD PATH key|open), exit\n"
            "  -h, --help                this text\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop gracefully (exit 0); SIGHUP reloads the certificate.\n",
            SERVE_DEMO_N_PREDICT);
}

static int parse_opts(int argc, char **argv, struct serve_opts *o)
{
    enum {
        OPT_HOST = 256,
        OPT_PORT,
        OPT_KEYFILE,
        OPT_CERT,
        OPT_KEY,
        OPT_INSECURE,
        OPT_ALIAS,
        OPT_STATE,
        OPT_TEMPLATE,
        OPT_CORS,
        OPT_LIST,
        OPT_QUEUE,
        OPT_MAXCONN,
        OPT_NP,
    };
    static const struct option longopts[] = {
        { "model", required_argument, NULL, 'm' },
        { "host", required_argument, NULL, OPT_HOST },
        { "port", required_argument, NULL, OPT_PORT },
        { "ctx-size", required_argument, NULL, 'c' },
        { "parallel", required_argument, NULL, OPT_NP },
        { "np", required_argument, NULL, OPT_NP },
        { "threads", required_argument, NULL, 't' },
        { "n-predict", required_argument, NULL, 'n' },
        { "queue-max", required_argument, NULL, OPT_QUEUE },
        { "max-connections", required_argument, NULL, OPT_MAXCONN },
        { "api-key-file", required_argument, NULL, OPT_KEYFILE },
        { "tls-cert", required_argument, NULL, OPT_CERT },
        { "tls-key", required_argument, NULL, OPT_KEY },
        { "insecure-http", no_argument, NULL, OPT_INSECURE },
        { "alias", required_argument, NULL, OPT_ALIAS },
        { "state-dir", required_argument, NULL, OPT_STATE },
        { "chat-template-file", required_argument, NULL, OPT_TEMPLATE },
        { "cors-origin", required_argument, NULL, OPT_CORS },
        { "list-routes", no_argument, NULL, OPT_LIST },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c, rc;

    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = 8443;
    o->n_parallel = 4;
    o->n_predict = -2; /* not given */
    o->queue_max = 64;
    o->max_conns = 1024;
    /* getopt_long_only so that llama-server's "-np N" works too. */
    while ((c = getopt_long_only(argc, argv, "m:c:t:n:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case OPT_HOST:
            o->host = optarg;
            break;
        case OPT_PORT:
            if ((rc = cli_parse_int(CMD, "--port", optarg, 0, 65535, &o->port)) < 0) return rc;
            break;
        case 'c':
            if ((rc = cli_parse_int(CMD, "--ctx-size", optarg, 0, SLM_LIMIT_CONTEXT, &o->n_ctx)) <
                0)
                return rc;
            break;
        case OPT_NP:
            if ((rc = cli_parse_int(CMD, "--parallel", optarg, 1, 256, &o->n_parallel)) < 0)
                return rc;
            break;
        case 't':
            if ((rc = cli_parse_int(CMD, "--threads", optarg, 0, SLM_LIMIT_THREADS,
                                    &o->n_threads)) < 0)
                return rc;
            break;
        case 'n':
            if ((rc = cli_parse_int(CMD, "--n-predict", optarg, -1, SLM_LIMIT_CONTEXT,
                                    &o->n_predict)) < 0)
                return rc;
            break;
        case OPT_QUEUE:
            if ((rc = cli_parse_int(CMD, "--queue-max", optarg, 1, 65536, &o->queue_max)) < 0)
                return rc;
            break;
        case OPT_MAXCONN:
            if ((rc = cli_parse_int(CMD, "--max-connections", optarg, 1, 1000000, &o->max_conns)) <
                0)
                return rc;
            break;
        case OPT_KEYFILE:
            o->key_file = optarg;
            break;
        case OPT_CERT:
            o->tls_cert = optarg;
            break;
        case OPT_KEY:
            o->tls_key = optarg;
            break;
        case OPT_INSECURE:
            o->insecure_http = true;
            break;
        case OPT_ALIAS:
            o->alias = optarg;
            break;
        case OPT_STATE:
            o->state_dir = optarg;
            break;
        case OPT_TEMPLATE:
            o->template_file = optarg;
            break;
        case OPT_CORS: {
            char *save = NULL, *tok;

            for (tok = strtok_r(optarg, ",", &save); tok != NULL;
                 tok = strtok_r(NULL, ",", &save)) {
                while (*tok == ' ')
                    tok++;
                if (*tok == '\0') continue;
                if (strcmp(tok, "*") == 0)
                    return cli_usage_error(CMD, "--cors-origin: '*' is not allowed on "
                                                "authenticated routes; list the origins");
                if (o->n_cors >= SERVE_CORS_MAX)
                    return cli_usage_error(CMD, "--cors-origin: more than %u origins",
                                           SERVE_CORS_MAX);
                o->cors[o->n_cors++] = tok;
            }
            break;
        }
        case OPT_LIST:
            o->list_routes = true;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            return cli_usage_error(CMD, "unknown option or missing value");
        }
    }
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (o->list_routes) return 0;
    if (o->model == NULL) return cli_usage_error(CMD, "a model is required (-m MODEL)");
    if ((o->tls_cert == NULL) != (o->tls_key == NULL))
        return cli_usage_error(CMD, "--tls-cert and --tls-key go together");
    if (o->insecure_http && o->tls_cert != NULL)
        return cli_usage_error(CMD, "--insecure-http and --tls-cert exclude each other");
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
    int n;

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
    return mkdir_p(sv->state, d);
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
 * Loads the API keys. *generated receives a new key (to print once) when
 * one was made; *key_hint says where the key comes from (for the report).
 */
static int setup_keys(struct serve *sv, struct api_keys *keys, char *generated, char *key_hint,
                      size_t hint_cap, struct slm_diag *d)
{
    char path[PATH_MAX];
    const char *env = getenv("SLM_API_KEY");
    int rc;

    generated[0] = '\0';
    if (sv->o.key_file != NULL) {
        snprintf(key_hint, hint_cap, "$(cat %s)", sv->o.key_file);
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
    if ((size_t)snprintf(path, sizeof(path), "%s/api-key", sv->state) >= sizeof(path))
        return slm_diag_set(d, SLM_EINVAL, "state directory path too long");
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

static int setup_tls(struct serve *sv, bool *cert_generated, struct slm_diag *d)
{
    char dir[PATH_MAX];
    int rc;

    *cert_generated = false;
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
        *cert_generated = true;
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
        slm_free(text);
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

static int report_text(struct serve *sv, struct slm_buf *out, const char *alias,
                       const char *key_text, const char *generated_key, bool cert_generated)
{
    const char *scheme = sv->tls ? "https" : "http";
    const char *host = sv->o.host;
    char endpoint[300], cacert[PATH_MAX + 16] = "";
    unsigned port = http_server_port(sv->server);
    int rc = 0;

    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) host = "127.0.0.1";
    if (strchr(host, ':') != NULL)
        snprintf(endpoint, sizeof(endpoint), "%s://[%s]:%u/v1", scheme, host, port);
    else
        snprintf(endpoint, sizeof(endpoint), "%s://%s:%u/v1", scheme, host, port);
    if (sv->tls && sv->o.tls_cert == NULL)
        snprintf(cacert, sizeof(cacert), "--cacert %s ", sv->cert_path);
    rc |= slm_buf_printf(out, "slm serve is ready\n  endpoint:    %s\n  model:       %s\n",
                         endpoint, alias);
    if (generated_key != NULL && generated_key[0] != '\0')
        rc |=
            slm_buf_printf(out, "  API key:     %s  (new: shown once here, stored in %s/api-key)\n",
                           generated_key, sv->state);
    else
        rc |= slm_buf_printf(out, "  API key:     %s\n", key_text);
    if (sv->tls && sv->o.tls_cert == NULL)
        rc |= slm_buf_printf(out, "  certificate: %s (self-signed%s; clients must trust it)\n",
                             sv->cert_path, cert_generated ? ", new" : "");
    rc |= slm_buf_printf(out,
                         "\ntest it:\n  curl %s%s/chat/completions -H \"Authorization: Bearer "
                         "%s\" -H 'Content-Type: application/json' -d '{\"model\":\"%s\","
                         "\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],"
                         "\"max_tokens\":16}'\n",
                         cacert, endpoint, key_text, alias);
    rc |= slm_buf_printf(out,
                         "\nclients (docs/clients.md): OpenAI-compatible provider\n"
                         "  base URL: %s\n  API key:  the key above\n  model:    %s\n",
                         endpoint, alias);
    if (sv->tls && sv->o.tls_cert == NULL)
        rc |= slm_buf_printf(out,
                             "  Node-based clients (Cline, Continue, OpenCode): "
                             "export NODE_EXTRA_CA_CERTS=%s\n"
                             "  Python-based clients (Aider): export SSL_CERT_FILE=%s\n",
                             sv->cert_path, sv->cert_path);
    return rc < 0 ? SLM_ENOMEM : 0;
}

/* Prints the report to stdout and writes it to <state>/serve-report.txt (0600). */
static void report(struct serve *sv, const char *alias, const char *key_text,
                   const char *generated_key, bool cert_generated)
{
    char path[PATH_MAX];
    struct slm_buf b;
    struct slm_diag d;

    slm_buf_init(&b, 1u << 20);
    if (report_text(sv, &b, alias, key_text, generated_key, cert_generated) < 0) {
        log_warn("cannot format the start-up report");
    } else {
        fwrite(b.data, 1, b.len, stdout);
        fflush(stdout);
        if ((size_t)snprintf(path, sizeof(path), "%s/serve-report.txt", sv->state) < sizeof(path) &&
            write_private(path, b.data, b.len, &d) < 0)
            log_warn("cannot write the report: %s", d.msg);
    }
    if (b.data != NULL) explicit_bzero(b.data, b.len);
    slm_buf_fini(&b);
}

/* ---- signals and draining ---- */

static void stop_if_drained(struct serve *sv)
{
    if ((api_n_active(sv->api) == 0 && http_server_n_conns(sv->server) == 0) ||
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
        log_info("signal %u: stopping (draining for at most %u ms)", si.ssi_signo, SERVE_DRAIN_MS);
        sv->draining = true;
        sv->drain_deadline = http_loop_now_ms(loop) + SERVE_DRAIN_MS;
        http_server_drain(sv->server);
        api_cancel_all(sv->api);
        http_timer_init(&sv->drain_timer, on_drain_tick, sv);
        if (http_timer_start(loop, &sv->drain_timer, 0) < 0) http_loop_stop(loop);
    }
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

static int list_routes(void)
{
    size_t n;
    const struct route *r = api_routes(&n);

    for (size_t i = 0; i < n; i++)
        printf("%s %s %s\n", router_method_name(r[i].method), r[i].path,
               r[i].auth ? "key" : "open");
    return SLM_EXIT_OK;
}

int cmd_serve(int argc, char **argv)
{
    struct serve sv;
    struct slm_diag d;
    struct model *m = NULL;
    struct api_keys *keys = NULL;
    struct chat_template *tmpl = NULL;
    struct sched_params sp = sched_params_default();
    struct http_server_params hp = http_server_params_default();
    struct api_params ap;
    char generated[API_KEY_GEN_SIZE], key_hint[PATH_MAX + 16], alias[128];
    sigset_t mask;
    bool cert_generated = false;
    int rc, exit_code = SLM_EXIT_OK;

    memset(&sv, 0, sizeof(sv));
    sv.sfd = -1;
    generated[0] = '\0';
    slm_diag_clear(&d);
    rc = parse_opts(argc, argv, &sv.o);
    if (rc != 0) return rc == 1 ? SLM_EXIT_OK : SLM_EXIT_USAGE;
    if (sv.o.list_routes) return list_routes();

    /* Signals are read through a signalfd: block them before any thread starts. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((rc = state_dir(&sv, &d)) < 0) goto fail;
    keys = api_keys_new();
    if (keys == NULL) {
        rc = slm_diag_set(&d, SLM_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = setup_keys(&sv, keys, generated, key_hint, sizeof(key_hint), &d)) < 0) goto fail;
    unsetenv("SLM_API_KEY"); /* keep it from anything we might start */
    if ((rc = setup_tls(&sv, &cert_generated, &d)) < 0) goto fail;
    if (sv.o.insecure_http)
        log_warn("--insecure-http: plain HTTP; API keys cross the network in clear text unless "
                 "a TLS proxy is in front");

    if ((rc = model_load(sv.o.model, &m, &d)) < 0) goto fail;
    if (sv.o.alias != NULL)
        snprintf(alias, sizeof(alias), "%s", sv.o.alias);
    else
        default_alias(sv.o.model, alias, sizeof(alias));
    if (sv.o.n_predict == -2) {
        struct gguf_str name;

        sv.o.n_predict = -1;
        if (gguf_get_str(model_get_gguf(m), "general.name", &name, NULL) == 0 && name.len >= 11 &&
            memcmp(name.ptr, "slm-mkmodel", 11) == 0)
            sv.o.n_predict = SERVE_DEMO_N_PREDICT;
    }
    if ((rc = setup_template(&sv, m, &tmpl, &d)) < 0) goto fail;

    sp.n_slots = (uint32_t)sv.o.n_parallel;
    sp.n_ctx = (uint32_t)sv.o.n_ctx;
    sp.n_threads = (uint32_t)sv.o.n_threads;
    sp.n_queue_max = (uint32_t)sv.o.queue_max;
    if ((rc = sched_new(m, &sp, &sv.sched, &d)) < 0) goto fail;

    if ((rc = http_loop_new(&sv.loop)) < 0) {
        slm_diag_set(&d, rc, "cannot create the event loop");
        goto fail;
    }
    hp.host = sv.o.host;
    hp.port = (uint16_t)sv.o.port;
    hp.tls = sv.tls ? &sv.tls_ctx : NULL;
    hp.max_conns = (uint32_t)sv.o.max_conns;
    if ((rc = http_server_new(sv.loop, &hp, &sv.server, &d)) < 0) goto fail;

    memset(&ap, 0, sizeof(ap));
    ap.model = m;
    ap.sched = sv.sched;
    ap.server = sv.server;
    ap.keys = keys;
    ap.tmpl = tmpl;
    ap.alias = alias;
    ap.n_predict_max = (int32_t)sv.o.n_predict;
    ap.cors_origins = sv.o.cors;
    ap.n_cors_origins = sv.o.n_cors;
    if ((rc = api_new(&ap, &sv.api, &d)) < 0) goto fail;
    /* The api needs the server and the server's handler needs the api: the
     * handler is set now, before the loop runs and any request is read. */
    http_server_set_handler(sv.server, api_handle, sv.api);

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

    report(&sv, alias, generated[0] ? generated : key_hint, generated, cert_generated);
    explicit_bzero(generated, sizeof(generated));
    log_info("listening on %s port %u (%s), model %s, %u slots x %u tokens", sv.o.host,
             http_server_port(sv.server), sv.tls ? "https" : "http", alias, sp.n_slots,
             sched_n_ctx(sv.sched));

    rc = http_loop_run(sv.loop);
    if (rc < 0) {
        slm_diag_set(&d, rc, "event loop failed");
        exit_code = cli_fail_diag(CMD, rc, &d);
    }
    log_info("stopped");
    goto cleanup;
fail:
    exit_code = cli_fail_diag(CMD, rc, &d);
cleanup:
    /* Order: connections (their aborts cancel requests), the engine (it reports
     * DONE for what is left, posted to the loop), the loop (runs those tasks,
     * which need the api), then the rest. */
    if (sv.loop != NULL && sv.sfd >= 0) http_io_stop(sv.loop, &sv.sig_io);
    http_server_free(sv.server);
    sched_free(sv.sched);
    http_loop_free(sv.loop);
    api_free(sv.api);
    if (sv.sfd >= 0) close(sv.sfd);
    chat_template_free(tmpl);
    model_free(m);
    http_tls_ctx_unref(sv.tls_ctx);
    api_keys_free(keys);
    explicit_bzero(generated, sizeof(generated));
    return exit_code;
}
