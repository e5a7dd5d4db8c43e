/*
 * ns.c - namespaces: clone into them, write the id maps, explain failures,
 * bring up the loopback interface of a fresh network namespace.
 */
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/str.h"
#include "sandbox/sandbox_int.h"

/*
 * clone(2) with fork semantics (no new stack, SIGCHLD on exit) and the given
 * namespace flags. Returns the child's pid in the parent, 0 in the child, -1
 * with errno on failure. Used instead of unshare() so that the child is pid 1
 * of the new pid namespace at once.
 */
pid_t sandbox__clone(unsigned long flags)
{
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

/* Writes all of s to the existing file at path (procfs, cgroupfs): 0 or -errno. */
int sandbox__write_file(const char *path, const char *s)
{
    size_t len = strlen(s);
    ssize_t n;
    int fd, err = 0;

    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    n = write(fd, s, len);
    if (n < 0)
        err = -errno;
    else if ((size_t)n != len)
        err = -EIO;
    close(fd);
    return err;
}

/* Writes s to /proc/PID/file; returns 0 or -errno. */
static int ns_proc_write(pid_t pid, const char *file, const char *s)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    return sandbox__write_file(path, s);
}

/*
 * Maps uid and gid to themselves in pid's new user namespace. Unprivileged
 * callers may only map their own ids and must deny setgroups first; a
 * privileged caller (root with the ids mapped) keeps setgroups so that the
 * child can drop its supplementary groups. Returns 0 or SLM_EPERM with d set.
 */
int sandbox__write_idmaps(pid_t pid, uid_t uid, gid_t gid, bool privileged, struct slm_diag *d)
{
    char map[64];
    int err;

    if (!privileged) {
        err = ns_proc_write(pid, "setgroups", "deny");
        if (err < 0 && err != -ENOENT)
            return slm_diag_set(d, SLM_EPERM, "cannot write /proc/%d/setgroups: %s", (int)pid,
                                strerror(-err));
    }
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    err = ns_proc_write(pid, "uid_map", map);
    if (err < 0)
        return slm_diag_set(d, SLM_EPERM, "cannot map uid %u into the sandbox: %s", (unsigned)uid,
                            strerror(-err));
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
    err = ns_proc_write(pid, "gid_map", map);
    if (err < 0)
        return slm_diag_set(d, SLM_EPERM, "cannot map gid %u into the sandbox: %s", (unsigned)gid,
                            strerror(-err));
    return 0;
}

/*
 * Turns the errno of a failed clone(CLONE_NEWUSER | ...) into a message that
 * names the cause and the way around it. Returns SLM_EPERM (not allowed here)
 * or SLM_EIO.
 */
int sandbox__userns_explain(int err, struct slm_diag *d)
{
    long max_ns = slm_read_file_long("/proc/sys/user/max_user_namespaces", LONG_MAX);
    long unpriv = slm_read_file_long("/proc/sys/kernel/unprivileged_userns_clone", LONG_MAX);
    long apparmor =
        slm_read_file_long("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", LONG_MAX);

    if (max_ns == 0)
        return slm_diag_set(d, SLM_EPERM,
                            "no user namespaces available: user.max_user_namespaces is 0 here; "
                            "raise it (sysctl -w user.max_user_namespaces=15000) or run in a "
                            "namespace that allows them");
    if (err == ENOSPC || err == EUSERS)
        return slm_diag_set(d, SLM_EPERM,
                            "no user namespaces available: the limit user.max_user_namespaces "
                            "(%ld) or the nesting depth is reached; end other sandboxes or raise "
                            "the sysctl",
                            max_ns);
    if ((err == EPERM || err == EACCES) && unpriv == 0 && geteuid() != 0)
        return slm_diag_set(d, SLM_EPERM,
                            "no user namespaces available: kernel.unprivileged_userns_clone is 0; "
                            "enable it (sysctl -w kernel.unprivileged_userns_clone=1) or run slm "
                            "sandbox as root");
    if ((err == EPERM || err == EACCES) && apparmor == 1)
        return slm_diag_set(d, SLM_EPERM,
                            "no user namespaces available: AppArmor restricts unprivileged user "
                            "namespaces (kernel.apparmor_restrict_unprivileged_userns=1); add an "
                            "AppArmor profile for slm that allows userns, or run as root");
    if (err == EPERM || err == EACCES)
        return slm_diag_set(d, SLM_EPERM,
                            "no user namespaces available: creating one was refused (%s), "
                            "probably by a container's seccomp profile or a security module; run "
                            "slm sandbox on the host or allow unshare/clone of user namespaces",
                            strerror(err));
    if (err == EINVAL)
        return slm_diag_set(d, SLM_EIO,
                            "cannot create namespaces: %s (the kernel lacks user namespaces, or "
                            "the caller has threads: call sandbox_run before starting any)",
                            strerror(err));
    return slm_diag_set(d, SLM_EIO, "cannot create the sandbox namespaces: %s", strerror(err));
}

/* Sets IFF_UP on lo; returns 0 or -errno. */
int sandbox__loopback_up(void)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int err = 0;

    if (fd < 0) return -errno;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
        err = -errno;
        goto out;
    }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) err = -errno;
out:
    close(fd);
    return err;
}
