/*
 * sandbox.c - the supervisor side of sandbox_run() and the result helpers.
 *
 * The supervisor prepares everything the child needs (paths, environment,
 * seccomp programs, cgroup), clones the child into new namespaces, maps its
 * ids, moves it into the cgroup, lets it go, and then relays the command's
 * stdout and stderr (keeping at most the configured bytes, reading and
 * dropping the rest) until the child (pid 1 of the sandbox) has ended. At
 * the deadline it kills that pid 1, which makes the kernel kill every
 * process of the pid namespace; the cgroup is killed as well for good
 * measure. Afterwards it copies /output out, reads the cgroup's OOM counter
 * and removes the cgroup.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/json.h"
#include "core/str.h"
#include "sandbox/sandbox_int.h"

/* Bytes read from the pipes per call. */
#define SBX_CHUNK    65536
/* How long the output pipes may stay open after pid 1 of the sandbox ended. */
#define SBX_DRAIN_MS 2000

extern char **environ;

/* Fills p with the defaults of core/limits.h. */
void sandbox_params_default(struct sandbox_params *p)
{
    memset(p, 0, sizeof(*p));
    p->net = SANDBOX_NET_NONE;
    p->cgroup = SANDBOX_CGROUP_AUTO;
    p->memory_bytes = SLM_LIMIT_SANDBOX_MEMORY;
    p->pids_max = SLM_LIMIT_SANDBOX_PIDS;
    p->timeout_ms = (uint64_t)SLM_LIMIT_SANDBOX_WALL_S * 1000;
    p->stdout_max = SLM_LIMIT_SANDBOX_OUTPUT;
    p->stderr_max = SLM_LIMIT_SANDBOX_OUTPUT;
    p->tmp_bytes = SLM_LIMIT_SANDBOX_TMP;
    p->home_bytes = SLM_LIMIT_SANDBOX_HOME;
    p->output_bytes = SLM_LIMIT_SANDBOX_OUTDIR;
    p->output_files = SLM_LIMIT_SANDBOX_OUTPUT_FILES;
    p->uid = -1;
    p->gid = -1;
}

const char *sandbox_end_name(enum sandbox_end e)
{
    static const char *const names[SANDBOX_END_COUNT] = { "exited", "signaled", "oom", "timeout" };

    return (unsigned)e < SANDBOX_END_COUNT ? names[e] : "unknown";
}

void sandbox_result_fini(struct sandbox_result *r)
{
    if (r == NULL) return;
    slm_free(r->out);
    slm_free(r->err);
    r->out = NULL;
    r->err = NULL;
    r->out_len = 0;
    r->err_len = 0;
}

/* ---- parameter checks ---- */

static int sbx_check_tmpfs(const char *what, uint64_t v, struct slm_diag *d)
{
    if (v < 4096 || v > SLM_LIMIT_SANDBOX_TMPFS_MAX)
        return slm_diag_set(d, SLM_EINVAL, "%s size %llu is outside 4096..%llu bytes", what,
                            (unsigned long long)v, (unsigned long long)SLM_LIMIT_SANDBOX_TMPFS_MAX);
    return 0;
}

/* True if NAME=VALUE has a valid environment variable name. */
static bool sbx_env_ok(const char *e)
{
    const char *eq = strchr(e, '=');

    if (eq == NULL || eq == e || (e[0] >= '0' && e[0] <= '9')) return false;
    for (const char *s = e; s < eq; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static int sbx_check_params(const struct sandbox_params *p, struct slm_diag *d)
{
    size_t n_argv = 0;
    int rc;

    if (p->project_dir == NULL || p->project_dir[0] == '\0')
        return slm_diag_set(d, SLM_EINVAL, "no project directory given");
    if (p->argv == NULL || p->argv[0] == NULL || p->argv[0][0] == '\0')
        return slm_diag_set(d, SLM_EINVAL, "no command given");
    while (p->argv[n_argv] != NULL)
        if (++n_argv > SLM_LIMIT_SANDBOX_ARGV)
            return slm_diag_set(d, SLM_ELIMIT, "more than %u command arguments",
                                SLM_LIMIT_SANDBOX_ARGV);
    if ((unsigned)p->net >= SANDBOX_NET_COUNT || (unsigned)p->cgroup >= SANDBOX_CGROUP_COUNT)
        return slm_diag_set(d, SLM_EINVAL, "bad network or cgroup mode");
    if (p->memory_bytes > SLM_LIMIT_SANDBOX_MEMORY_MAX ||
        (p->memory_bytes > 0 && p->memory_bytes < (16u << 20)))
        return slm_diag_set(d, SLM_EINVAL, "memory limit %llu is outside 16 MiB..%llu bytes",
                            (unsigned long long)p->memory_bytes,
                            (unsigned long long)SLM_LIMIT_SANDBOX_MEMORY_MAX);
    if (p->pids_max > SLM_LIMIT_SANDBOX_PIDS_MAX || (p->pids_max > 0 && p->pids_max < 2))
        return slm_diag_set(d, SLM_EINVAL, "pids limit %llu is outside 2..%u",
                            (unsigned long long)p->pids_max, SLM_LIMIT_SANDBOX_PIDS_MAX);
    if (!(p->cpus >= 0 && p->cpus <= 4096))
        return slm_diag_set(d, SLM_EINVAL, "cpus %g is outside 0..4096", p->cpus);
    if (p->timeout_ms > (uint64_t)SLM_LIMIT_SANDBOX_WALL_S_MAX * 1000)
        return slm_diag_set(d, SLM_EINVAL, "timeout %llu ms exceeds %u s",
                            (unsigned long long)p->timeout_ms, SLM_LIMIT_SANDBOX_WALL_S_MAX);
    if (p->stdout_max > SLM_LIMIT_SANDBOX_OUTPUT_MAX ||
        p->stderr_max > SLM_LIMIT_SANDBOX_OUTPUT_MAX)
        return slm_diag_set(d, SLM_EINVAL, "output cap exceeds %u bytes",
                            SLM_LIMIT_SANDBOX_OUTPUT_MAX);
    if ((rc = sbx_check_tmpfs("/tmp", p->tmp_bytes, d)) < 0 ||
        (rc = sbx_check_tmpfs("$HOME", p->home_bytes, d)) < 0 ||
        (rc = sbx_check_tmpfs("/output", p->output_bytes, d)) < 0)
        return rc;
    if (p->output_files < 1 || p->output_files > SLM_LIMIT_SANDBOX_OUTPUT_FILES_MAX)
        return slm_diag_set(d, SLM_EINVAL, "output file quota %llu is outside 1..%u",
                            (unsigned long long)p->output_files,
                            SLM_LIMIT_SANDBOX_OUTPUT_FILES_MAX);
    if (p->n_env > SLM_LIMIT_SANDBOX_ENV)
        return slm_diag_set(d, SLM_ELIMIT, "more than %u environment entries",
                            SLM_LIMIT_SANDBOX_ENV);
    for (size_t i = 0; i < p->n_env; i++)
        if (p->env[i] == NULL || !sbx_env_ok(p->env[i]))
            return slm_diag_set(d, SLM_EINVAL, "environment entry '%.64s' is not NAME=VALUE",
                                p->env[i] != NULL ? p->env[i] : "(null)");
    if (p->n_ro_binds > SLM_LIMIT_SANDBOX_BINDS)
        return slm_diag_set(d, SLM_ELIMIT, "more than %u read-only binds", SLM_LIMIT_SANDBOX_BINDS);
    for (size_t i = 0; i < p->n_ro_binds; i++) {
        const char *b = p->ro_binds[i];
        static const char *const taken[] = { "/proc",      "/dev",  "/tmp", "/output",
                                             "/workspace", "/home", "/etc", "/usr" };

        if (b == NULL || b[0] != '/' || b[1] == '\0' || strlen(b) >= SLM_LIMIT_SANDBOX_PATH ||
            strstr(b, "/..") != NULL)
            return slm_diag_set(d, SLM_EINVAL,
                                "read-only bind '%.64s' must be an absolute path other than /",
                                b != NULL ? b : "(null)");
        for (size_t j = 0; j < SLM_ARRAY_LEN(taken); j++) {
            size_t n = strlen(taken[j]);

            if (strncmp(b, taken[j], n) == 0 && (b[n] == '\0' || b[n] == '/'))
                return slm_diag_set(d, SLM_EINVAL,
                                    "read-only bind '%.64s' is inside %s, which the sandbox "
                                    "builds itself",
                                    b, taken[j]);
        }
        if (access(b, F_OK) < 0)
            return slm_diag_set(d, SLM_ENOTFOUND, "read-only bind '%.64s': %s", b, strerror(errno));
    }
    return 0;
}

/* Resolves the project directory into c->project. */
static int sbx_project(struct sandbox__child *c, const char *dir, struct slm_diag *d)
{
    char *real = realpath(dir, NULL);
    struct stat st;
    int rc = 0;

    if (real == NULL)
        return slm_diag_set(d, errno == ENOENT ? SLM_ENOTFOUND : SLM_EIO,
                            "project directory '%s': %s; pass an existing directory (it is "
                            "mounted at /workspace)",
                            dir, strerror(errno));
    if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode))
        rc = slm_diag_set(d, SLM_EINVAL, "project directory '%s' is not a directory", dir);
    else if (strlen(real) >= sizeof(c->project))
        rc = slm_diag_set(d, SLM_EINVAL, "project directory path is too long");
    else
        memcpy(c->project, real, strlen(real) + 1);
    slm_free(real); /* realpath allocates with the C library; slm_free releases that */
    return rc;
}

/* Creates dir and its parents (like mkdir -p) and opens it. Returns the fd or a code. */
static int sbx_output_dir(const char *dir, struct slm_diag *d)
{
    char buf[SLM_LIMIT_SANDBOX_PATH];
    size_t len = strlen(dir);
    int fd;

    if (len == 0 || len >= sizeof(buf))
        return slm_diag_set(d, SLM_EINVAL, "output directory path is empty or too long");
    memcpy(buf, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        buf[i] = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return slm_diag_set(d, SLM_EIO, "cannot create output directory '%s': %s", buf,
                                strerror(errno));
        if (i < len) buf[i] = '/';
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return slm_diag_set(d, SLM_EIO, "output directory '%s': %s", dir, strerror(errno));
    return fd;
}

/* Work directory inside: default /workspace; relative means below /workspace. */
static int sbx_workdir(struct sandbox__child *c, const char *w, struct slm_diag *d)
{
    int n;

    if (w == NULL || w[0] == '\0')
        n = snprintf(c->workdir, sizeof(c->workdir), "/workspace");
    else if (w[0] == '/')
        n = snprintf(c->workdir, sizeof(c->workdir), "%s", w);
    else
        n = snprintf(c->workdir, sizeof(c->workdir), "/workspace/%s", w);
    if (n < 0 || (size_t)n >= sizeof(c->workdir))
        return slm_diag_set(d, SLM_EINVAL, "work directory path is too long");
    return 0;
}

/* Returns the value of NAME in envp list e (n entries), or NULL. */
static const char *sbx_env_find(char *const *e, size_t n, const char *name, size_t name_len)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(e[i], name, name_len) == 0 && e[i][name_len] == '=') return e[i];
    return NULL;
}

/*
 * The command's environment: a fixed base, TERM/LANG/LC_ALL/TZ from the
 * caller when set, then p->env (later entries replace earlier ones).
 */
static int sbx_build_env(struct sandbox__child *c, const struct sandbox_params *p,
                         struct slm_diag *d)
{
    static const char *const base[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=" SANDBOX__HOME,
        "USER=" SANDBOX__USER,
        "LOGNAME=" SANDBOX__USER,
        "SHELL=/bin/sh",
        "TMPDIR=/tmp",
        "LANG=C.UTF-8",
    };
    static const char *const inherit[] = { "TERM", "LANG", "LC_ALL", "TZ" };
    size_t cap = SLM_ARRAY_LEN(base) + SLM_ARRAY_LEN(inherit) + p->n_env + 1, n = 0;
    char **e = slm_calloc(cap, sizeof(char *));

    if (e == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory for the environment");
    for (size_t i = 0; i < SLM_ARRAY_LEN(base); i++)
        e[n++] = (char *)base[i];
    for (size_t i = 0; i < SLM_ARRAY_LEN(inherit); i++) {
        const char *v = getenv(inherit[i]);
        size_t name_len = strlen(inherit[i]);

        if (v == NULL) continue;
        for (char **q = environ; *q != NULL; q++)
            if (strncmp(*q, inherit[i], name_len) == 0 && (*q)[name_len] == '=') {
                const char *old = sbx_env_find(e, n, inherit[i], name_len);

                if (old != NULL) {
                    for (size_t k = 0; k < n; k++)
                        if (e[k] == old) e[k] = *q;
                } else {
                    e[n++] = *q;
                }
                break;
            }
    }
    for (size_t i = 0; i < p->n_env; i++) {
        size_t name_len = (size_t)(strchr(p->env[i], '=') - p->env[i]);
        const char *old = sbx_env_find(e, n, p->env[i], name_len);

        if (old != NULL) {
            for (size_t k = 0; k < n; k++)
                if (e[k] == old) e[k] = (char *)p->env[i];
        } else {
            e[n++] = (char *)p->env[i];
        }
    }
    e[n] = NULL;
    c->envp = e;
    return 0;
}

/* True if id appears in the ranges of /proc/self/{uid,gid}_map (we may map it). */
static bool sbx_id_mapped(const char *file, unsigned id)
{
    char buf[4096];
    ssize_t n;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    bool found = false;

    if (fd < 0) return false;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    for (char *s = buf; *s != '\0';) {
        uint64_t v[3] = { 0, 0, 0 };

        for (int k = 0; k < 3; k++) {
            while (*s == ' ' || *s == '\t')
                s++;
            while (*s >= '0' && *s <= '9')
                v[k] = v[k] * 10 + (uint64_t)(*s++ - '0');
        }
        if (id >= v[0] && id - v[0] < v[2]) found = true;
        s = strchr(s, '\n');
        if (s == NULL) break;
        s++;
    }
    return found;
}

/*
 * Chooses the ids the command runs as. As root (with the ids mapped in our own
 * user namespace): p->uid/gid, else the owner of the project directory when
 * that is not root, else nobody (65534). Otherwise: our own ids.
 */
static int sbx_ids(struct sandbox__child *c, const struct sandbox_params *p, struct slm_diag *d)
{
    struct stat st;
    uid_t uid = geteuid();
    gid_t gid = getegid();

    if (uid != 0) {
        if (p->uid >= 0 || p->gid >= 0)
            return slm_diag_set(d, SLM_EPERM,
                                "--user needs root; unprivileged sandboxes run as the caller");
        c->uid = uid;
        c->gid = gid;
        c->may_setgroups = false;
        return 0;
    }
    if (p->uid >= 0) {
        uid = (uid_t)p->uid;
        gid = p->gid >= 0 ? (gid_t)p->gid : (gid_t)p->uid;
    } else if (stat(c->project, &st) == 0 && st.st_uid != 0) {
        uid = st.st_uid;
        gid = st.st_gid;
    } else {
        uid = 65534;
        gid = 65534;
    }
    if (uid == 0 || gid == 0)
        return slm_diag_set(
            d, SLM_EINVAL, "the sandboxed command never runs as uid or gid 0; pick another --user");
    if (sbx_id_mapped("/proc/self/uid_map", uid) && sbx_id_mapped("/proc/self/gid_map", gid)) {
        c->uid = uid;
        c->gid = gid;
        c->may_setgroups = true;
    } else {
        /* Root of a user namespace with only itself mapped: map what we are. */
        c->uid = geteuid();
        c->gid = getegid();
        c->may_setgroups = false;
    }
    return 0;
}

/* ---- running ---- */

struct sbx_stream {
    int fd;      /* read end, -1 once at EOF */
    int echo_fd; /* where to copy while streaming, or -1 */
    struct slm_buf buf;
    size_t cap;
    bool truncated;
};

/* Reads what is available; keeps at most s->cap bytes, drops the rest. */
static void sbx_stream_read(struct sbx_stream *s)
{
    char chunk[SBX_CHUNK];
    ssize_t n = read(s->fd, chunk, sizeof(chunk));

    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        close(s->fd);
        s->fd = -1;
        return;
    }
    if (n < 0) return;
    {
        size_t room = s->cap - s->buf.len;
        size_t keep = (size_t)n < room ? (size_t)n : room;

        if (keep < (size_t)n) s->truncated = true;
        if (keep > 0 && slm_buf_append(&s->buf, chunk, keep) < 0) s->truncated = true;
        if (keep > 0 && s->echo_fd >= 0) {
            size_t off = 0;

            while (off < keep) {
                ssize_t w = write(s->echo_fd, chunk + off, keep - off);

                if (w <= 0) {
                    s->echo_fd = -1; /* the reader went away: keep capturing */
                    break;
                }
                off += (size_t)w;
            }
        }
    }
}

/* Makes sure fds 0-2 are open so that pipes never land on them. */
static void sbx_fill_stdio(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0) {
            int nul = open("/dev/null", O_RDWR);

            if (nul >= 0 && nul != fd) {
                dup2(nul, fd);
                close(nul);
            }
        }
}

/* Receives the /output fd the child sent, or -1. */
static int sbx_recv_fd(int sock)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    struct msghdr msg;
    struct cmsghdr *cm;
    int fd = -1;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    if (recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1) return -1;
    cm = CMSG_FIRSTHDR(&msg);
    if (cm != NULL && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
        cm->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    return fd;
}

static uint64_t sbx_ms_since(uint64_t t0_ns)
{
    return (slm_now_ns() - t0_ns) / 1000000u;
}

/* Pipe and fd bookkeeping of one run: -1 means closed. */
struct sbx_fds {
    int sync[2], errp[2], status[2], out[2], err[2], sock[2];
    int in, pidfd, outdir, outdst;
};

static void sbx_close(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void sbx_close_all(struct sbx_fds *f)
{
    int *all[] = { &f->sync[0], &f->sync[1], &f->errp[0], &f->errp[1], &f->status[0], &f->status[1],
                   &f->out[0],  &f->out[1],  &f->err[0],  &f->err[1],  &f->sock[0],   &f->sock[1],
                   &f->in,      &f->pidfd,   &f->outdir,  &f->outdst };

    for (size_t i = 0; i < SLM_ARRAY_LEN(all); i++)
        sbx_close(all[i]);
}

static int sbx_open_fds(struct sbx_fds *f, const struct sandbox_params *p, struct slm_diag *d)
{
    if (pipe2(f->sync, O_CLOEXEC) < 0 || pipe2(f->errp, O_CLOEXEC) < 0 ||
        pipe2(f->status, O_CLOEXEC) < 0 || pipe2(f->out, O_CLOEXEC) < 0 ||
        pipe2(f->err, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->sock) < 0)
        return slm_diag_set(d, SLM_EIO, "cannot create the sandbox's pipes: %s", strerror(errno));
    if (p->pass_stdin && (f->in = fcntl(0, F_DUPFD_CLOEXEC, 3)) < 0)
        return slm_diag_set(d, SLM_EIO, "cannot pass stdin: %s", strerror(errno));
    return 0;
}

/*
 * Waits until the child reports set-up done (EOF on the error pipe) or
 * failed (a message). Returns 0, or SLM_EIO with the child's message.
 */
static int sbx_wait_setup(struct sbx_fds *f, pid_t child, uint64_t t0, uint64_t deadline_ms,
                          struct slm_diag *d)
{
    char msg[SLM_DIAG_MSG_MAX];
    size_t len = 0;

    for (;;) {
        struct pollfd pfd = { .fd = f->errp[0], .events = POLLIN };
        uint64_t now = sbx_ms_since(t0);
        int wait_ms = deadline_ms == 0            ? 1000
                      : now >= deadline_ms        ? 0
                      : deadline_ms - now > 1000u ? 1000
                                                  : (int)(deadline_ms - now);
        ssize_t n;
        int pr = poll(&pfd, 1, wait_ms);

        if (pr < 0 && errno != EINTR) return slm_diag_set(d, SLM_EIO, "poll: %s", strerror(errno));
        if (pr == 0) {
            if (deadline_ms != 0 && sbx_ms_since(t0) >= deadline_ms)
                return slm_diag_set(d, SLM_ETIMEDOUT, "sandbox set-up did not finish in time");
            continue;
        }
        if (pr < 0) continue;
        n = read(f->errp[0], msg + len, sizeof(msg) - 1 - len);
        if (n > 0) {
            len += (size_t)n;
            if (len == 1 && msg[0] == '\006')
                break; /* ACK: do not wait for EOF, the command may hold no copy */
            if (len < sizeof(msg) - 1) continue;
        }
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    sbx_close(&f->errp[0]);
    if (len == 1 && msg[0] == '\006') return 0;
    if (len == 0) {
        int st = 0;

        waitpid(child, &st, WNOHANG);
        return slm_diag_set(d, SLM_EIO,
                            "the sandbox ended during set-up (%s %d); a memory limit below "
                            "what set-up needs, or a kill from outside",
                            WIFSIGNALED(st) ? "signal" : "status",
                            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
    msg[len] = '\0';
    return slm_diag_set(d, SLM_EIO, "sandbox set-up failed: %s", msg);
}

/* Relays output until pid 1 of the sandbox has ended; enforces the deadline. */
static void sbx_supervise(struct sbx_fds *f, pid_t child, struct sbx_stream *streams,
                          const struct sandbox__cgroup *cg, const struct sandbox_params *p,
                          uint64_t t0, int *init_status, bool *timed_out)
{
    bool reaped = false;
    uint64_t reaped_at = 0;

    for (;;) {
        struct pollfd pfd[3];
        nfds_t n = 0;
        int wait_ms = 100;
        uint64_t now = sbx_ms_since(t0);

        if (!reaped && p->timeout_ms > 0 && now >= p->timeout_ms && !*timed_out) {
            *timed_out = true;
            kill(child, SIGKILL); /* pid 1: the kernel kills the whole namespace */
            sandbox__cgroup_kill(cg);
        }
        if (!reaped && waitpid(child, init_status, WNOHANG) == child) {
            reaped = true;
            reaped_at = now;
        }
        if (reaped && ((streams[0].fd < 0 && streams[1].fd < 0) || now - reaped_at > SBX_DRAIN_MS))
            break;
        if (!reaped && p->timeout_ms > 0 && p->timeout_ms - now < (uint64_t)wait_ms)
            wait_ms = (int)(p->timeout_ms - now);
        if (p->cancel != NULL && *p->cancel && !*timed_out) {
            *timed_out = true;
            kill(child, SIGKILL);
            sandbox__cgroup_kill(cg);
        }
        for (int i = 0; i < 2; i++)
            if (streams[i].fd >= 0) {
                pfd[n].fd = streams[i].fd;
                pfd[n].events = POLLIN;
                n++;
            }
        if (!reaped && f->pidfd >= 0) {
            pfd[n].fd = f->pidfd;
            pfd[n].events = POLLIN;
            n++;
        } else if (!reaped) {
            wait_ms = wait_ms > 10 ? 10 : wait_ms;
        }
        if (poll(pfd, n, wait_ms) <= 0) continue;
        for (int i = 0; i < 2; i++) {
            for (nfds_t k = 0; k < n; k++)
                if (streams[i].fd >= 0 && pfd[k].fd == streams[i].fd && pfd[k].revents != 0)
                    sbx_stream_read(&streams[i]);
        }
    }
    for (int i = 0; i < 2; i++)
        sbx_close(&streams[i].fd);
}

/* Fills r from the command's wait status (if pid 1 reported one) and the cgroup. */
static void sbx_classify(struct sandbox_result *r, bool have_status, int cmd_status,
                         int init_status, bool timed_out, bool oom)
{
    r->oom = oom;
    r->timed_out = timed_out;
    r->exit_code = -1;
    r->signal = 0;
    if (timed_out) {
        r->end = SANDBOX_END_TIMEOUT;
        r->signal = SIGKILL;
        return;
    }
    if (!have_status) {
        /* pid 1 itself was killed (by the OOM killer or from outside). */
        r->end = oom ? SANDBOX_END_OOM : SANDBOX_END_SIGNALED;
        r->signal = WIFSIGNALED(init_status) ? WTERMSIG(init_status) : SIGKILL;
        return;
    }
    if (WIFEXITED(cmd_status)) {
        r->end = SANDBOX_END_EXITED;
        r->exit_code = WEXITSTATUS(cmd_status);
        return;
    }
    r->signal = WIFSIGNALED(cmd_status) ? WTERMSIG(cmd_status) : SIGKILL;
    r->end = (oom && r->signal == SIGKILL) ? SANDBOX_END_OOM : SANDBOX_END_SIGNALED;
}

static void sbx_note(struct sandbox_result *r, const char *text)
{
    size_t len = strlen(r->notes);

    if (len + 3 >= sizeof(r->notes)) return;
    if (len > 0) {
        memcpy(r->notes + len, "; ", 3);
        len += 2;
    }
    snprintf(r->notes + len, sizeof(r->notes) - len, "%s", text);
}

/* See sandbox.h. */
int sandbox_run(const struct sandbox_params *p, struct sandbox_result *r, struct slm_diag *d)
{
    struct sandbox__child c;
    struct sandbox__cgroup cg;
    struct sbx_fds f;
    struct sbx_stream streams[2];
    unsigned long flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    uint64_t t0 = slm_now_ns();
    int rc, init_status = 0, cmd_status = 0;
    bool timed_out = false, have_status = false, oom = false;
    pid_t child = -1;

    memset(r, 0, sizeof(*r));
    memset(&c, 0, sizeof(c));
    memset(&cg, 0, sizeof(cg));
    r->backend = "rlimit";
    {
        int *all[] = { &f.sync[0], &f.sync[1], &f.errp[0], &f.errp[1], &f.status[0], &f.status[1],
                       &f.out[0],  &f.out[1],  &f.err[0],  &f.err[1],  &f.sock[0],   &f.sock[1],
                       &f.in,      &f.pidfd,   &f.outdir,  &f.outdst };

        for (size_t i = 0; i < SLM_ARRAY_LEN(all); i++)
            *all[i] = -1;
    }
    for (int i = 0; i < 2; i++) {
        streams[i].fd = -1;
        streams[i].echo_fd = -1;
        streams[i].truncated = false;
        streams[i].cap = i == 0 ? p->stdout_max : p->stderr_max;
        slm_buf_init(&streams[i].buf, streams[i].cap);
    }

    rc = sbx_check_params(p, d);
    if (rc < 0) goto out;
    c.p = p;
    if ((rc = sbx_project(&c, p->project_dir, d)) < 0 ||
        (rc = sbx_workdir(&c, p->workdir, d)) < 0 || (rc = sbx_ids(&c, p, d)) < 0 ||
        (rc = sbx_build_env(&c, p, d)) < 0 || (rc = sandbox__seccomp_build(&c.bpf, d)) < 0)
        goto out;
    if (p->output_dir != NULL) {
        f.outdst = sbx_output_dir(p->output_dir, d);
        if (f.outdst < 0) {
            rc = f.outdst;
            f.outdst = -1;
            goto out;
        }
    }
    if (p->memory_bytes > 0) {
        /* A floor under the cgroup, the limit itself without one. */
        c.rlimit_data = p->memory_bytes;
    }
    c.rlimit_nproc = p->pids_max;
    if (p->timeout_ms > 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

        c.rlimit_cpu_s = (p->timeout_ms / 1000 + 1) * (uint64_t)(ncpu > 0 ? ncpu : 1) + 1;
    }
    if (p->cpus > 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned want = (unsigned)p->cpus + ((double)(unsigned)p->cpus < p->cpus ? 1u : 0u);

        if (ncpu > 0 && want < (unsigned long)ncpu) c.n_cpus = want;
    }

    rc = sandbox__cgroup_create(&cg, p, r->notes, sizeof(r->notes), d);
    if (rc < 0) goto out;
    if (cg.version != 0 && p->memory_bytes > 0)
        c.rlimit_data = p->memory_bytes * 4; /* the cgroup decides; this is the floor */
    r->backend = sandbox__cgroup_backend(&cg);

    sbx_fill_stdio();
    rc = sbx_open_fds(&f, p, d);
    if (rc < 0) goto out;
    c.fd_sync = f.sync[0];
    c.fd_errw = f.errp[1];
    c.fd_status = f.status[1];
    c.fd_sock = f.sock[1];
    c.fd_out = f.out[1];
    c.fd_err = f.err[1];
    c.fd_in = f.in;
    if (p->net == SANDBOX_NET_NONE) flags |= CLONE_NEWNET;

    child = sandbox__clone(flags);
    if (child < 0) {
        rc = sandbox__userns_explain(errno, d);
        goto out;
    }
    if (child == 0) sandbox__child_main(&c);

    /* Supervisor: close the child's ends, map ids, join the cgroup, say go. */
    sbx_close(&f.sync[0]);
    sbx_close(&f.errp[1]);
    sbx_close(&f.status[1]);
    sbx_close(&f.sock[1]);
    sbx_close(&f.out[1]);
    sbx_close(&f.err[1]);
    sbx_close(&f.in);
    f.pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    rc = sandbox__write_idmaps(child, c.uid, c.gid, c.may_setgroups, d);
    if (rc == 0 && cg.version != 0) rc = sandbox__cgroup_attach(&cg, child, d);
    if (rc == 0 && write(f.sync[1], "g", 1) != 1)
        rc = slm_diag_set(d, SLM_EIO, "cannot start the sandbox: %s", strerror(errno));
    if (rc == 0) rc = sbx_wait_setup(&f, child, t0, p->timeout_ms, d);
    if (rc < 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = -1;
        goto out;
    }
    f.outdir = sbx_recv_fd(f.sock[0]);
    sbx_close(&f.sock[0]);

    streams[0].fd = f.out[0];
    streams[1].fd = f.err[0];
    f.out[0] = -1;
    f.err[0] = -1;
    if (p->stream) {
        streams[0].echo_fd = 1;
        streams[1].echo_fd = 2;
    }
    sbx_supervise(&f, child, streams, &cg, p, t0, &init_status, &timed_out);
    child = -1;
    if (read(f.status[0], &cmd_status, sizeof(cmd_status)) == (ssize_t)sizeof(cmd_status))
        have_status = true;
    r->wall_ms = sbx_ms_since(t0);

    if (cg.version != 0) sandbox__cgroup_stats(&cg, &oom, &r->memory_peak);
    sbx_classify(r, have_status, cmd_status, init_status, timed_out, oom);
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        char *s = slm_buf_take(&streams[i].buf, &len);

        if (s == NULL) {
            s = slm_strdup("");
            len = 0;
        }
        if (i == 0) {
            r->out = s;
            r->out_len = len;
            r->stdout_truncated = streams[i].truncated;
        } else {
            r->err = s;
            r->err_len = len;
            r->stderr_truncated = streams[i].truncated;
        }
        if (s == NULL) {
            rc = SLM_ENOMEM;
            goto out;
        }
    }
    if (f.outdst >= 0 && f.outdir >= 0) {
        struct sandbox_copy_stats cs = { .files_max = p->output_files,
                                         .bytes_max = p->output_bytes };

        rc = sandbox_copy_out(f.outdir, f.outdst, &cs, d);
        r->n_output_files = cs.n_files;
        r->output_bytes = cs.n_bytes;
        r->n_output_skipped = cs.n_skipped;
        if (cs.n_skipped > 0)
            sbx_note(r,
                     "some /output entries were not copied (links, special files or over quota)");
        if (rc < 0) goto out;
    }
    rc = 0;
out:
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    for (int i = 0; i < 2; i++) {
        sbx_close(&streams[i].fd);
        slm_buf_fini(&streams[i].buf);
    }
    sbx_close_all(&f);
    sandbox__cgroup_kill(&cg);
    sandbox__cgroup_destroy(&cg);
    sandbox__seccomp_fini(&c.bpf);
    slm_free(c.envp);
    if (rc < 0 && r->out == NULL) {
        r->end = SANDBOX_END_EXITED;
        r->exit_code = -1;
    }
    return rc;
}

/* ---- JSON ---- */

/* See sandbox.h. */
int sandbox_result_json(const struct sandbox_result *r, struct slm_buf *out)
{
    struct json_writer w;

    json_writer_init(&w, out, false);
    json_obj_begin(&w);
    json_key(&w, "status");
    json_cstr(&w, sandbox_end_name(r->end));
    json_key(&w, "exit_code");
    if (r->end == SANDBOX_END_EXITED)
        json_int(&w, r->exit_code);
    else
        json_null(&w);
    json_key(&w, "signal");
    if (r->signal > 0)
        json_int(&w, r->signal);
    else
        json_null(&w);
    json_key(&w, "timed_out");
    json_bool(&w, r->timed_out);
    json_key(&w, "oom");
    json_bool(&w, r->oom);
    json_key(&w, "stdout");
    json_str(&w, r->out != NULL ? r->out : "", r->out_len);
    json_key(&w, "stderr");
    json_str(&w, r->err != NULL ? r->err : "", r->err_len);
    json_key(&w, "stdout_truncated");
    json_bool(&w, r->stdout_truncated);
    json_key(&w, "stderr_truncated");
    json_bool(&w, r->stderr_truncated);
    json_key(&w, "duration_ms");
    json_uint(&w, r->wall_ms);
    json_key(&w, "limits");
    json_cstr(&w, r->backend != NULL ? r->backend : "rlimit");
    json_key(&w, "memory_peak");
    json_uint(&w, r->memory_peak);
    json_key(&w, "output_files");
    json_uint(&w, r->n_output_files);
    json_key(&w, "output_bytes");
    json_uint(&w, r->output_bytes);
    json_key(&w, "output_skipped");
    json_uint(&w, r->n_output_skipped);
    json_key(&w, "notes");
    json_cstr(&w, r->notes);
    json_obj_end(&w);
    return json_writer_finish(&w);
}

/* See sandbox.h. */
int sandbox_tool_json(struct slm_buf *out)
{
    struct json_writer w;
    int rc;

    json_writer_init(&w, out, true);
    json_obj_begin(&w);
    json_key(&w, "type");
    json_cstr(&w, "function");
    json_key(&w, "function");
    json_obj_begin(&w);
    json_key(&w, "name");
    json_cstr(&w, "run_command");
    json_key(&w, "description");
    json_cstr(&w, "Run a shell command in an isolated sandbox over the project and return how it "
                  "ended with its stdout and stderr. The project is at /workspace (read-only "
                  "unless the operator allowed writes); /tmp, $HOME and /output are writable "
                  "and size-capped; there is no network; memory, processes and time are "
                  "limited. Files written to /output are handed back to the operator.");
    json_key(&w, "parameters");
    json_obj_begin(&w);
    json_key(&w, "type");
    json_cstr(&w, "object");
    json_key(&w, "properties");
    json_obj_begin(&w);
    json_key(&w, "command");
    json_obj_begin(&w);
    json_key(&w, "type");
    json_cstr(&w, "string");
    json_key(&w, "description");
    json_cstr(&w, "The command line, run with /bin/sh -c.");
    json_obj_end(&w);
    json_key(&w, "workdir");
    json_obj_begin(&w);
    json_key(&w, "type");
    json_cstr(&w, "string");
    json_key(&w, "description");
    json_cstr(&w, "Directory to run in: relative to /workspace, or an absolute path inside the "
                  "sandbox. Default /workspace.");
    json_obj_end(&w);
    json_key(&w, "timeout");
    json_obj_begin(&w);
    json_key(&w, "type");
    json_cstr(&w, "integer");
    json_key(&w, "description");
    json_cstr(&w, "Wall-clock limit in seconds; the whole process tree is killed when it "
                  "passes. Default 60.");
    json_key(&w, "minimum");
    json_int(&w, 1);
    json_key(&w, "maximum");
    json_int(&w, SLM_LIMIT_SANDBOX_WALL_S_MAX);
    json_obj_end(&w);
    json_obj_end(&w);
    json_key(&w, "required");
    json_arr_begin(&w);
    json_cstr(&w, "command");
    json_arr_end(&w);
    json_key(&w, "additionalProperties");
    json_bool(&w, false);
    json_obj_end(&w);
    json_obj_end(&w);
    json_obj_end(&w);
    rc = json_writer_finish(&w);
    if (rc == 0) rc = slm_buf_append_char(out, '\n');
    return rc;
}
