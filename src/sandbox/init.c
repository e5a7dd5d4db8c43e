/*
 * init.c - the child: pid 1 of the sandbox's namespaces.
 *
 * Order (each step needs the one before):
 *   1. keep only the fds of struct sandbox__child, PDEATHSIG, wait for the
 *      supervisor's "go" (it has written the id maps and the cgroup);
 *   2. a cgroup namespace rooted at the sandbox's cgroup;
 *   3. the file system and pivot_root (mount.c), host name, lo up;
 *   4. (the uid/gid switch happened in 3) drop the bounding set, ambient and all
 *      capabilities, lock the securebits, no_new_privs, not dumpable,
 *      PDEATHSIG again (changing credentials clears it), a new session,
 *      rlimits, CPU affinity;
 *   5. send an fd of /output to the supervisor, chdir to the work directory;
 *   6. install the seccomp programs, close the error pipe (= set-up done);
 *   7. fork the command (pid 2), reap every child until it ends, report its
 *      wait status and exit, which kills whatever is left in the namespace.
 *
 * Nothing here allocates: the child may come from a process whose other
 * threads held allocator locks at clone time.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

extern char **environ;

/*
 * Writes "<what>: <strerror(err)>" to the error pipe and exits with
 * SANDBOX__EXIT_SETUP; err 0 leaves the errno text out.
 */
void sandbox__child_fail(const struct sandbox__child *c, int err, const char *fmt, ...)
{
    char msg[SLM_DIAG_MSG_MAX];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(msg)) n = (int)sizeof(msg) - 1;
    if (err != 0) n += snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerrordesc_np(err));
    if ((size_t)n >= sizeof(msg)) n = (int)sizeof(msg) - 1;
    if (c->fd_errw >= 0 && write(c->fd_errw, msg, (size_t)n) < 0) _exit(SANDBOX__EXIT_SETUP);
    _exit(SANDBOX__EXIT_SETUP);
}

/* Closes every fd >= 3 except the ones the child keeps. */
static void init_close_others(const struct sandbox__child *c)
{
    int keep[7] = {
        c->fd_sync, c->fd_errw, c->fd_status, c->fd_sock, c->fd_out, c->fd_err, c->fd_in
    };
    unsigned lo = 3;

    /* Sort the (at most 7) kept fds, then close the gaps between them. */
    for (size_t i = 1; i < SLM_ARRAY_LEN(keep); i++)
        for (size_t j = i; j > 0 && keep[j] < keep[j - 1]; j--) {
            int t = keep[j];

            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    for (size_t i = 0; i < SLM_ARRAY_LEN(keep); i++) {
        if (keep[i] < (int)lo) continue;
        if ((unsigned)keep[i] > lo) close_range(lo, (unsigned)keep[i] - 1, 0);
        lo = (unsigned)keep[i] + 1;
    }
    close_range(lo, ~0u, 0);
}

/* Ends the child quietly if the supervisor has gone (its end of the sync pipe closed). */
static void init_check_parent(const struct sandbox__child *c)
{
    struct pollfd pfd = { .fd = c->fd_sync, .events = POLLIN };

    if (poll(&pfd, 1, 0) != 0) _exit(SANDBOX__EXIT_SETUP);
}

/*
 * Switches to the sandbox's uid and gid. Called by mount.c once the host
 * sources are open (the supervisor's uid may be needed to reach them) and
 * before the first file is created in the new root (a tmpfs owned by the new
 * user namespace only accepts mapped owners). uid 0 is not mapped in the
 * namespace, so the capabilities stay until init_drop_privileges.
 */
void sandbox__child_set_ids(const struct sandbox__child *c)
{
    if (setresgid(c->gid, c->gid, c->gid) < 0)
        sandbox__child_fail(c, errno, "setresgid %u", (unsigned)c->gid);
    if (c->may_setgroups && setgroups(0, NULL) < 0)
        sandbox__child_fail(c, errno, "drop supplementary groups");
    if (setresuid(c->uid, c->uid, c->uid) < 0)
        sandbox__child_fail(c, errno, "setresuid %u", (unsigned)c->uid);
}

static void init_drop_privileges(const struct sandbox__child *c)
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];

    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL) break; /* past CAP_LAST_CAP */
            sandbox__child_fail(c, errno, "drop capability %d from the bounding set", cap);
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        sandbox__child_fail(c, errno, "clear ambient capabilities");
    if (prctl(PR_SET_SECUREBITS,
              SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                  SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
              0, 0, 0) < 0)
        sandbox__child_fail(c, errno, "lock the securebits");
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) < 0) sandbox__child_fail(c, errno, "drop all capabilities");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        sandbox__child_fail(c, errno, "set no_new_privs");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        sandbox__child_fail(c, errno, "make init not dumpable");
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        sandbox__child_fail(c, errno, "set the parent-death signal");
    init_check_parent(c);
}

static void init_limit(const struct sandbox__child *c, int res, const char *name, uint64_t v)
{
    struct rlimit rl;

    if (getrlimit(res, &rl) < 0) sandbox__child_fail(c, errno, "getrlimit %s", name);
    /* Only ever lower: an unprivileged process cannot raise a hard limit. */
    if (rl.rlim_max != RLIM_INFINITY && v > rl.rlim_max) v = rl.rlim_max;
    rl.rlim_cur = v;
    rl.rlim_max = v;
    if (setrlimit(res, &rl) < 0)
        sandbox__child_fail(c, errno, "setrlimit %s %llu", name, (unsigned long long)v);
}

static void init_limits(const struct sandbox__child *c)
{
    init_limit(c, RLIMIT_CORE, "RLIMIT_CORE", 0);
    if (c->rlimit_nproc > 0) init_limit(c, RLIMIT_NPROC, "RLIMIT_NPROC", c->rlimit_nproc);
    if (c->rlimit_data > 0) init_limit(c, RLIMIT_DATA, "RLIMIT_DATA", c->rlimit_data);
    if (c->rlimit_cpu_s > 0) init_limit(c, RLIMIT_CPU, "RLIMIT_CPU", c->rlimit_cpu_s);
    if (c->n_cpus > 0) {
        cpu_set_t cur, want;
        unsigned kept = 0;

        if (sched_getaffinity(0, sizeof(cur), &cur) == 0) {
            CPU_ZERO(&want);
            for (int i = 0; i < CPU_SETSIZE && kept < c->n_cpus; i++)
                if (CPU_ISSET(i, &cur)) {
                    CPU_SET(i, &want);
                    kept++;
                }
            if (sched_setaffinity(0, sizeof(want), &want) < 0)
                sandbox__child_fail(c, errno, "restrict CPU affinity");
        }
    }
}

/* Passes an fd of /output to the supervisor over the unix socket. */
static void init_send_output(const struct sandbox__child *c)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    char byte = 'o';
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    struct msghdr msg;
    struct cmsghdr *cm;
    int fd = open("/output", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0) sandbox__child_fail(c, errno, "open /output");
    memset(&msg, 0, sizeof(msg));
    memset(cbuf, 0, sizeof(cbuf));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    if (sendmsg(c->fd_sock, &msg, MSG_NOSIGNAL) != 1)
        sandbox__child_fail(c, errno, "pass /output to the supervisor");
    close(fd);
    close(c->fd_sock);
}

/* The command's process (pid 2): stdio, no other fds, default signals, exec. */
SLM_NORETURN static void init_exec_command(const struct sandbox__child *c, int devnull)
{
    sigset_t all;
    const char *what = c->p->argv[0];

    if (dup2(c->fd_in >= 0 ? c->fd_in : devnull, 0) < 0 || dup2(c->fd_out, 1) < 0 ||
        dup2(c->fd_err, 2) < 0)
        _exit(126);
    close_range(3, ~0u, 0);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    environ = c->envp;
    execvp(what, c->p->argv);
    dprintf(2, "slm sandbox: cannot run '%s': %s\n", what, strerrordesc_np(errno));
    _exit(errno == ENOENT ? 127 : 126);
}

/* See the file comment. */
void sandbox__child_main(const struct sandbox__child *c)
{
    char go = 0;
    int devnull, status = 0;
    pid_t cmd;

    init_close_others(c);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) _exit(SANDBOX__EXIT_SETUP);
    if (read(c->fd_sync, &go, 1) != 1 || go != 'g')
        _exit(SANDBOX__EXIT_SETUP); /* the supervisor gave up */

    if (unshare(CLONE_NEWCGROUP) < 0) sandbox__child_fail(c, errno, "create the cgroup namespace");
    sandbox__mount_setup(c);
    if (sethostname(SANDBOX__HOSTNAME, sizeof(SANDBOX__HOSTNAME) - 1) < 0 ||
        setdomainname("none", 4) < 0)
        sandbox__child_fail(c, errno, "set the host name");
    if (c->p->net == SANDBOX_NET_NONE) {
        int err = sandbox__loopback_up();

        if (err < 0) sandbox__child_fail(c, -err, "bring up lo");
    }

    init_drop_privileges(c);
    if (setsid() < 0) sandbox__child_fail(c, errno, "start a new session");
    init_limits(c);
    init_send_output(c);
    if (chdir(c->workdir) < 0) sandbox__child_fail(c, errno, "work directory %s", c->workdir);
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
        sandbox__child_fail(c, errno, "open /dev/null");

    {
        int err = sandbox__seccomp_install(&c->bpf);

        if (err < 0) sandbox__child_fail(c, -err, "install the seccomp filter");
    }
    /* One ACK byte says "set-up done"; anything else was a failure message. */
    if (write(c->fd_errw, "\006", 1) != 1) _exit(SANDBOX__EXIT_SETUP);
    close(c->fd_errw);

    cmd = fork();
    if (cmd < 0) {
        dprintf(c->fd_err, "slm sandbox: cannot start the command: %s\n", strerrordesc_np(errno));
        _exit(SANDBOX__EXIT_SETUP);
    }
    if (cmd == 0) init_exec_command(c, devnull);
    close(c->fd_out);
    close(c->fd_err);
    if (c->fd_in >= 0) close(c->fd_in);
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, 0);

        if (pid == cmd) {
            status = st;
            break;
        }
        if (pid < 0 && errno != EINTR) break;
    }
    if (write(c->fd_status, &status, sizeof(status)) != (ssize_t)sizeof(status))
        _exit(SANDBOX__EXIT_SETUP);
    _exit(0);
}
