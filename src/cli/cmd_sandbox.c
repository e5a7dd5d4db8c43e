/*
 * cmd_sandbox.c - slm sandbox: run a command in an isolated sandbox.
 *
 *   slm sandbox [options] PROJECT_DIR -- CMD [ARGS...]
 *   slm sandbox [options] --shell 'CMD LINE' PROJECT_DIR
 *   slm sandbox --print-tool
 *
 * Without --json the command's output is streamed to our stdout/stderr and
 * our exit status is the command's (128+N for signal N, 124 on timeout, 137
 * when the memory limit killed it, like timeout(1) and shells). With --json
 * one JSON object describes the run (docs/sandbox.md) and the exit status is
 * 0 whenever the command ran. Set-up errors exit 1, 2 (usage) or 4
 * (permission: no user namespaces, no cgroup).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/limits.h"
#include "core/str.h"
#include "sandbox/sandbox.h"

#define CMD "sandbox"

static volatile int sandbox_cancel;

static void sandbox_on_signal(int sig)
{
    (void)sig;
    sandbox_cancel = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: slm sandbox [options] PROJECT_DIR -- CMD [ARGS...]\n"
            "       slm sandbox [options] --shell 'COMMAND LINE' PROJECT_DIR\n"
            "       slm sandbox --print-tool\n"
            "\n"
            "Runs CMD in new user, mount, pid, network, ipc, uts and cgroup namespaces with\n"
            "PROJECT_DIR read-only at /workspace, writable size-capped /tmp, $HOME and\n"
            "/output, no network, no capabilities, a seccomp filter and resource limits.\n"
            "\n"
            "options:\n"
            "  --rw                 mount PROJECT_DIR read-write\n"
            "  --output DIR         copy what the command left in /output to DIR (created)\n"
            "  --net none|host      network: only lo (default) or the host's\n"
            "  --memory SIZE        memory limit (default 1G; 0: none)\n"
            "  --pids N             process/thread limit (default %u; 0: none)\n"
            "  --cpus X             CPU quota in CPUs, e.g. 1.5 (default: none)\n"
            "  --timeout SECONDS    wall-clock limit, whole tree killed (default %u; 0: none)\n"
            "  --max-output SIZE    bytes kept of stdout and of stderr (default 1M)\n"
            "  --tmp-size SIZE      /tmp tmpfs size (default 256M)\n"
            "  --home-size SIZE     $HOME tmpfs size (default 64M)\n"
            "  --output-size SIZE   /output tmpfs size and copy quota (default 64M)\n"
            "  --output-files N     /output file quota (default %u)\n"
            "  --cgroup MODE        auto (default), v2, v1 or none (rlimits only)\n"
            "  --workdir DIR        directory to run in (relative: below /workspace)\n"
            "  --shell CMD          run /bin/sh -c CMD\n"
            "  --env NAME           pass the caller's NAME into the sandbox\n"
            "  --setenv NAME=VALUE  set NAME in the sandbox\n"
            "  --ro-bind PATH       also show host PATH read-only at the same place\n"
            "  --stdin              give the command our stdin (default /dev/null)\n"
            "  --user UID[:GID]     as root: run as these ids (default: the project's owner,\n"
            "                       or nobody)\n"
            "  --json               print one JSON object: status, exit_code, signal,\n"
            "                       timed_out, oom, stdout, stderr, truncation flags, ...\n"
            "  --print-tool         print the run_command tool definition (OpenAI schema)\n"
            "  -h, --help           show this help\n"
            "\n"
            "exit status: the command's; 128+N if signal N ended it; 124 timed out;\n"
            "137 memory limit; with --json 0 when the command ran. Set-up errors: 1,\n"
            "2 usage, 4 permission (no user namespaces, no cgroup).\n",
            SLM_LIMIT_SANDBOX_PIDS, SLM_LIMIT_SANDBOX_WALL_S, SLM_LIMIT_SANDBOX_OUTPUT_FILES);
}

enum {
    OPT_RW = 256,
    OPT_OUTPUT,
    OPT_NET,
    OPT_MEMORY,
    OPT_PIDS,
    OPT_CPUS,
    OPT_TIMEOUT,
    OPT_MAX_OUTPUT,
    OPT_TMP_SIZE,
    OPT_HOME_SIZE,
    OPT_OUTPUT_SIZE,
    OPT_OUTPUT_FILES,
    OPT_CGROUP,
    OPT_WORKDIR,
    OPT_SHELL,
    OPT_ENV,
    OPT_SETENV,
    OPT_RO_BIND,
    OPT_STDIN,
    OPT_USER,
    OPT_JSON,
    OPT_PRINT_TOOL
};

static const struct option long_opts[] = {
    { "rw", no_argument, NULL, OPT_RW },
    { "output", required_argument, NULL, OPT_OUTPUT },
    { "net", required_argument, NULL, OPT_NET },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "pids", required_argument, NULL, OPT_PIDS },
    { "cpus", required_argument, NULL, OPT_CPUS },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "max-output", required_argument, NULL, OPT_MAX_OUTPUT },
    { "tmp-size", required_argument, NULL, OPT_TMP_SIZE },
    { "home-size", required_argument, NULL, OPT_HOME_SIZE },
    { "output-size", required_argument, NULL, OPT_OUTPUT_SIZE },
    { "output-files", required_argument, NULL, OPT_OUTPUT_FILES },
    { "cgroup", required_argument, NULL, OPT_CGROUP },
    { "workdir", required_argument, NULL, OPT_WORKDIR },
    { "shell", required_argument, NULL, OPT_SHELL },
    { "env", required_argument, NULL, OPT_ENV },
    { "setenv", required_argument, NULL, OPT_SETENV },
    { "ro-bind", required_argument, NULL, OPT_RO_BIND },
    { "stdin", no_argument, NULL, OPT_STDIN },
    { "user", required_argument, NULL, OPT_USER },
    { "json", no_argument, NULL, OPT_JSON },
    { "print-tool", no_argument, NULL, OPT_PRINT_TOOL },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* Parses a size option into *out (max bytes); prints a usage error on failure. */
static int parse_size_opt(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;

    if (slm_parse_size(s, &v) < 0 || v > max || (v != 0 && v < min)) {
        cli_usage_error(CMD, "%s wants a size from %llu to %llu bytes (like 512M, 2G), got '%s'",
                        opt, (unsigned long long)min, (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int print_tool(void)
{
    struct slm_buf b;
    int rc;

    slm_buf_init(&b, 1 << 16);
    rc = sandbox_tool_json(&b);
    if (rc == 0) fputs(slm_buf_str(&b), stdout);
    slm_buf_fini(&b);
    return rc == 0 ? SLM_EXIT_OK : cli_fail(CMD, rc, "cannot build the tool definition");
}

/* Parses UID[:GID]. */
static int parse_user(const char *s, struct sandbox_params *p)
{
    char uid_s[32];
    const char *colon = strchr(s, ':');
    size_t n = colon != NULL ? (size_t)(colon - s) : strlen(s);
    uint64_t uid, gid;

    if (n == 0 || n >= sizeof(uid_s))
        return cli_usage_error(CMD, "--user wants UID[:GID], got '%s'", s);
    memcpy(uid_s, s, n);
    uid_s[n] = '\0';
    if (slm_parse_u64(uid_s, &uid) < 0 || uid == 0 || uid >= 0xffffffffu ||
        (colon != NULL && (slm_parse_u64(colon + 1, &gid) < 0 || gid == 0 || gid >= 0xffffffffu)))
        return cli_usage_error(CMD, "--user wants non-zero numeric UID[:GID], got '%s'", s);
    p->uid = (int64_t)uid;
    p->gid = colon != NULL ? (int64_t)gid : (int64_t)uid;
    return 0;
}

/* Prints how the command ended (when it did not simply exit) and returns our exit status. */
static int report_human(const struct sandbox_result *r, const struct sandbox_params *p)
{
    if (r->notes[0] != '\0') fprintf(stderr, "slm sandbox: note: %s\n", r->notes);
    if (r->stdout_truncated || r->stderr_truncated)
        fprintf(stderr, "slm sandbox: output truncated (%s%s%s kept at most %zu bytes)\n",
                r->stdout_truncated ? "stdout" : "",
                r->stdout_truncated && r->stderr_truncated ? " and " : "",
                r->stderr_truncated ? "stderr" : "", p->stdout_max);
    switch (r->end) {
    case SANDBOX_END_EXITED:
        return r->exit_code;
    case SANDBOX_END_TIMEOUT:
        fprintf(stderr, "slm sandbox: timed out after %llu ms; the whole process tree was killed\n",
                (unsigned long long)r->wall_ms);
        return 124;
    case SANDBOX_END_OOM:
        fprintf(stderr, "slm sandbox: killed for exceeding the memory limit (%llu bytes)\n",
                (unsigned long long)p->memory_bytes);
        return 137;
    default:
        fprintf(stderr, "slm sandbox: the command was killed by signal %d (%s)\n", r->signal,
                strsignal(r->signal));
        return 128 + r->signal;
    }
}

int cmd_sandbox(int argc, char **argv)
{
    struct sandbox_params p;
    struct sandbox_result r;
    struct slm_diag d;
    const char *env[SLM_LIMIT_SANDBOX_ENV];
    const char *binds[SLM_LIMIT_SANDBOX_BINDS];
    char *shell_argv[4] = { "/bin/sh", "-c", NULL, NULL };
    const char *shell = NULL;
    bool json = false;
    int opt, rc;
    long long ll;
    double dv;
    uint64_t u;

    sandbox_params_default(&p);
    p.stream = true;
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            usage(stdout);
            return SLM_EXIT_OK;
        case OPT_RW:
            p.project_rw = true;
            break;
        case OPT_OUTPUT:
            p.output_dir = optarg;
            break;
        case OPT_NET:
            if (strcmp(optarg, "none") == 0)
                p.net = SANDBOX_NET_NONE;
            else if (strcmp(optarg, "host") == 0)
                p.net = SANDBOX_NET_HOST;
            else
                return cli_usage_error(CMD, "--net wants none or host, got '%s'", optarg);
            break;
        case OPT_MEMORY:
            if (parse_size_opt("--memory", optarg, 16u << 20, SLM_LIMIT_SANDBOX_MEMORY_MAX,
                               &p.memory_bytes) < 0)
                return SLM_EXIT_USAGE;
            break;
        case OPT_PIDS:
            if (cli_parse_int(CMD, "--pids", optarg, 0, SLM_LIMIT_SANDBOX_PIDS_MAX, &ll) < 0)
                return SLM_EXIT_USAGE;
            if (ll == 1) return cli_usage_error(CMD, "--pids 1 leaves no room for the command");
            p.pids_max = (uint64_t)ll;
            break;
        case OPT_CPUS:
            if (cli_parse_float(CMD, "--cpus", optarg, 0, 4096, &dv) < 0) return SLM_EXIT_USAGE;
            p.cpus = dv;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_float(CMD, "--timeout", optarg, 0, SLM_LIMIT_SANDBOX_WALL_S_MAX, &dv) < 0)
                return SLM_EXIT_USAGE;
            p.timeout_ms = (uint64_t)(dv * 1000.0 + 0.5);
            if (dv > 0 && p.timeout_ms == 0) p.timeout_ms = 1;
            break;
        case OPT_MAX_OUTPUT:
            if (parse_size_opt("--max-output", optarg, 0, SLM_LIMIT_SANDBOX_OUTPUT_MAX, &u) < 0)
                return SLM_EXIT_USAGE;
            p.stdout_max = (size_t)u;
            p.stderr_max = (size_t)u;
            break;
        case OPT_TMP_SIZE:
            if (parse_size_opt("--tmp-size", optarg, 4096, SLM_LIMIT_SANDBOX_TMPFS_MAX,
                               &p.tmp_bytes) < 0 ||
                p.tmp_bytes == 0)
                return p.tmp_bytes == 0 ? cli_usage_error(CMD, "--tmp-size cannot be 0")
                                        : SLM_EXIT_USAGE;
            break;
        case OPT_HOME_SIZE:
            if (parse_size_opt("--home-size", optarg, 4096, SLM_LIMIT_SANDBOX_TMPFS_MAX,
                               &p.home_bytes) < 0 ||
                p.home_bytes == 0)
                return p.home_bytes == 0 ? cli_usage_error(CMD, "--home-size cannot be 0")
                                         : SLM_EXIT_USAGE;
            break;
        case OPT_OUTPUT_SIZE:
            if (parse_size_opt("--output-size", optarg, 4096, SLM_LIMIT_SANDBOX_TMPFS_MAX,
                               &p.output_bytes) < 0 ||
                p.output_bytes == 0)
                return p.output_bytes == 0 ? cli_usage_error(CMD, "--output-size cannot be 0")
                                           : SLM_EXIT_USAGE;
            break;
        case OPT_OUTPUT_FILES:
            if (cli_parse_int(CMD, "--output-files", optarg, 1, SLM_LIMIT_SANDBOX_OUTPUT_FILES_MAX,
                              &ll) < 0)
                return SLM_EXIT_USAGE;
            p.output_files = (uint64_t)ll;
            break;
        case OPT_CGROUP:
            if (strcmp(optarg, "auto") == 0)
                p.cgroup = SANDBOX_CGROUP_AUTO;
            else if (strcmp(optarg, "v2") == 0)
                p.cgroup = SANDBOX_CGROUP_V2;
            else if (strcmp(optarg, "v1") == 0)
                p.cgroup = SANDBOX_CGROUP_V1;
            else if (strcmp(optarg, "none") == 0)
                p.cgroup = SANDBOX_CGROUP_NONE;
            else
                return cli_usage_error(CMD, "--cgroup wants auto, v2, v1 or none, got '%s'",
                                       optarg);
            break;
        case OPT_WORKDIR:
            p.workdir = optarg;
            break;
        case OPT_SHELL:
            shell = optarg;
            break;
        case OPT_ENV: {
            size_t n = strlen(optarg);
            const char *found = NULL;
            extern char **environ;

            if (p.n_env >= SLM_LIMIT_SANDBOX_ENV)
                return cli_usage_error(CMD, "more than %u --env/--setenv", SLM_LIMIT_SANDBOX_ENV);
            for (char **q = environ; *q != NULL && n > 0; q++)
                if (strncmp(*q, optarg, n) == 0 && (*q)[n] == '=') found = *q;
            if (strchr(optarg, '=') != NULL)
                return cli_usage_error(CMD, "--env wants a NAME (use --setenv NAME=VALUE)");
            if (found != NULL) env[p.n_env++] = found;
            break;
        }
        case OPT_SETENV:
            if (p.n_env >= SLM_LIMIT_SANDBOX_ENV)
                return cli_usage_error(CMD, "more than %u --env/--setenv", SLM_LIMIT_SANDBOX_ENV);
            if (strchr(optarg, '=') == NULL || optarg[0] == '=')
                return cli_usage_error(CMD, "--setenv wants NAME=VALUE, got '%s'", optarg);
            env[p.n_env++] = optarg;
            break;
        case OPT_RO_BIND:
            if (p.n_ro_binds >= SLM_LIMIT_SANDBOX_BINDS)
                return cli_usage_error(CMD, "more than %u --ro-bind", SLM_LIMIT_SANDBOX_BINDS);
            binds[p.n_ro_binds++] = optarg;
            break;
        case OPT_STDIN:
            p.pass_stdin = true;
            break;
        case OPT_USER:
            if (parse_user(optarg, &p) != 0) return SLM_EXIT_USAGE;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_PRINT_TOOL:
            return print_tool();
        default:
            usage(stderr);
            return SLM_EXIT_USAGE;
        }
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing PROJECT_DIR");
    p.project_dir = argv[optind++];
    if (shell != NULL) {
        if (optind < argc)
            return cli_usage_error(CMD, "give either --shell or '-- CMD ARGS', not both");
        shell_argv[2] = (char *)shell;
        p.argv = shell_argv;
    } else {
        if (optind >= argc)
            return cli_usage_error(CMD, "missing the command: slm sandbox DIR -- CMD [ARGS...]");
        p.argv = argv + optind;
    }
    p.env = env;
    p.ro_binds = binds;
    p.stream = !json;
    p.cancel = &sandbox_cancel;

    {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = sandbox_on_signal; /* no SA_RESTART: poll wakes up */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }

    slm_diag_clear(&d);
    rc = sandbox_run(&p, &r, &d);
    if (rc < 0) {
        sandbox_result_fini(&r);
        return cli_fail_diag(CMD, rc, &d);
    }
    if (json) {
        struct slm_buf b;

        slm_buf_init(&b, SLM_LIMIT_CLI_OUTPUT);
        rc = sandbox_result_json(&r, &b);
        if (rc == 0) {
            fputs(slm_buf_str(&b), stdout);
            fputc('\n', stdout);
            fflush(stdout);
        }
        slm_buf_fini(&b);
        sandbox_result_fini(&r);
        return rc == 0 ? SLM_EXIT_OK : cli_fail(CMD, rc, "cannot write the JSON result");
    }
    rc = report_human(&r, &p);
    sandbox_result_fini(&r);
    return rc;
}
