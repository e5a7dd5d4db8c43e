/*
 * mount.c - the sandbox's file system, built by the child (pid 1 of the new
 * namespaces, all capabilities of its user namespace, nothing allocated).
 *
 * Layout of the new root (a 1 MiB tmpfs, read-only once built):
 *
 *   /usr /bin /sbin /lib /lib32 /lib64 /libx32   host, read-only (or the same symlinks)
 *   /etc            a few host files read-only + generated passwd, group, hosts
 *   /workspace      the project (read-only unless --rw), nosuid, nodev
 *   /output         tmpfs, size and inode caps, owned by the sandbox user
 *   /tmp            tmpfs 1777, size cap
 *   /home/sandbox   tmpfs 0700, size cap ($HOME)
 *   /dev            tmpfs, read-only: null zero full random urandom (host nodes),
 *                   fd stdin stdout stderr symlinks, shm (tmpfs 1777)
 *   /proc           a fresh proc of the new pid namespace; sys, sysrq-trigger,
 *                   irq, bus read-only
 *
 * Every bind is recursive and made read-only/nosuid/nodev recursively with
 * mount_setattr(2). Sources given by path are opened before the new root is
 * mounted over SANDBOX__NEWROOT so a project under /tmp still works; they are
 * bound through /proc/self/fd, which also pins the directory that was checked.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

/* /etc entries made visible (when they exist). */
static const char *const mount_etc[] = {
    "ld.so.cache", "ld.so.conf",      "ld.so.conf.d", "nsswitch.conf",  "localtime",
    "timezone",    "protocols",       "services",     "os-release",     "debian_version",
    "lsb-release", "mime.types",      "inputrc",      "bash.bashrc",    "profile",
    "profile.d",   "shells",          "alternatives", "host.conf",      "gai.conf",
    "magic",       "magic.mime",      "perl",         "terminfo",       "ca-certificates.conf",
    "ssl",         "ca-certificates", "fonts",        "manpath.config", "mke2fs.conf",
    "login.defs",
};

/* /etc name prefixes made visible (language runtimes keep configuration there). */
static const char *const mount_etc_prefix[] = { "java-", "python3" };

/* Host top-level directories made visible. */
static const char *const mount_top[] = { "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32" };

/* Device nodes bound from the host /dev. */
static const char *const mount_dev[] = { "null", "zero", "full", "random", "urandom" };

/* Applies read-only (if ro), nosuid and nodev (if nodev) to the tree at path. */
static int mount_restrict(const char *path, bool ro, bool nodev, bool recursive)
{
    struct mount_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.attr_set =
        MOUNT_ATTR_NOSUID | (ro ? MOUNT_ATTR_RDONLY : 0) | (nodev ? MOUNT_ATTR_NODEV : 0);
    if (mount_setattr(AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr, sizeof(attr)) == 0)
        return 0;
    if (errno != ENOSYS) return -1;
    /* Kernels before 5.12: remount the top mount only. */
    return mount(NULL, path, NULL,
                 MS_REMOUNT | MS_BIND | MS_NOSUID | (ro ? MS_RDONLY : 0) | (nodev ? MS_NODEV : 0),
                 NULL);
}

/* Bind-mounts src on dst (relative to the new root) and restricts it. */
static void mount_bind(const struct sandbox__child *c, const char *src, const char *dst, bool ro,
                       bool nodev)
{
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
        sandbox__child_fail(c, errno, "bind %s on /%s", src, dst);
    if (mount_restrict(dst, ro, nodev, true) < 0)
        sandbox__child_fail(c, errno, "make /%s %s", dst, ro ? "read-only" : "nosuid");
}

static void mount_tmpfs(const struct sandbox__child *c, const char *dst, const char *opts)
{
    if (mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        sandbox__child_fail(c, errno, "mount tmpfs on /%s (%s)", dst, opts);
}

static void mount_mkdir(const struct sandbox__child *c, const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST) sandbox__child_fail(c, errno, "mkdir /%s", path);
}

/* mkdir -p of a relative path. */
static void mount_mkdirs(const struct sandbox__child *c, const char *path)
{
    char buf[SLM_LIMIT_SANDBOX_PATH];
    size_t len = strlen(path);

    if (len >= sizeof(buf)) sandbox__child_fail(c, ENAMETOOLONG, "mkdir /%s", path);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '/') continue;
        buf[i] = '\0';
        mount_mkdir(c, buf, 0755);
        buf[i] = '/';
    }
    mount_mkdir(c, buf, 0755);
}

/* Creates an empty file to bind a file on. */
static void mount_touch(const struct sandbox__child *c, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);

    if (fd < 0) sandbox__child_fail(c, errno, "create /%s", path);
    close(fd);
}

static void mount_write(const struct sandbox__child *c, const char *path, const char *text)
{
    size_t len = strlen(text);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);

    if (fd < 0) sandbox__child_fail(c, errno, "create /%s", path);
    if (write(fd, text, len) != (ssize_t)len) sandbox__child_fail(c, errno, "write /%s", path);
    close(fd);
}

/*
 * Makes host path "/<name>" visible at "<name>" in the new root: a symlink is
 * copied as a symlink, a directory or file is bound read-only; a missing
 * entry is skipped.
 */
static void mount_host_entry(const struct sandbox__child *c, const char *name)
{
    char src[SLM_LIMIT_SANDBOX_PATH], target[SLM_LIMIT_SANDBOX_PATH];
    struct stat st;
    ssize_t n;

    snprintf(src, sizeof(src), "/%s", name);
    if (lstat(src, &st) < 0) return;
    if (S_ISLNK(st.st_mode)) {
        n = readlink(src, target, sizeof(target) - 1);
        if (n < 0) sandbox__child_fail(c, errno, "readlink %s", src);
        target[n] = '\0';
        if (symlink(target, name) < 0 && errno != EEXIST)
            sandbox__child_fail(c, errno, "symlink /%s", name);
        return;
    }
    if (S_ISDIR(st.st_mode))
        mount_mkdir(c, name, 0755);
    else if (S_ISREG(st.st_mode))
        mount_touch(c, name);
    else
        return;
    mount_bind(c, src, name, true, true);
}

/* True if name starts with one of the allowed /etc prefixes. */
static bool mount_etc_prefixed(const char *name)
{
    for (size_t i = 0; i < SLM_ARRAY_LEN(mount_etc_prefix); i++) {
        size_t n = strlen(mount_etc_prefix[i]);

        if (strncmp(name, mount_etc_prefix[i], n) == 0) return true;
    }
    return false;
}

/* Binds the /etc entries whose names match a prefix (getdents64: no allocation). */
static void mount_etc_prefixes(const struct sandbox__child *c)
{
    char buf[4096], name[300];
    long n;
    int fd = open("/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) return;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
        for (long off = 0; off < n;) {
            struct dirent64 *e = (struct dirent64 *)(void *)(buf + off);

            off += e->d_reclen;
            if (e->d_name[0] == '.' || !mount_etc_prefixed(e->d_name)) continue;
            snprintf(name, sizeof(name), "etc/%s", e->d_name);
            mount_host_entry(c, name);
        }
    }
    close(fd);
}

/* The generated /etc files: a passwd and group naming the sandbox user, hosts. */
static void mount_etc_generated(const struct sandbox__child *c)
{
    char text[512];

    snprintf(text, sizeof(text),
             "root:x:0:0:root:/root:/usr/sbin/nologin\n"
             "%s:x:%u:%u:sandbox:" SANDBOX__HOME ":/bin/sh\n"
             "%s",
             SANDBOX__USER, (unsigned)c->uid, (unsigned)c->gid,
             c->uid != 65534 ? "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" : "");
    mount_write(c, "etc/passwd", text);
    snprintf(text, sizeof(text), "root:x:0:\n%s:x:%u:\n%s", SANDBOX__USER, (unsigned)c->gid,
             c->gid != 65534 ? "nogroup:x:65534:\n" : "");
    mount_write(c, "etc/group", text);
    mount_write(c, "etc/hostname", SANDBOX__HOSTNAME "\n");
    mount_write(c, "etc/hosts",
                "127.0.0.1 localhost " SANDBOX__HOSTNAME "\n::1 localhost ip6-localhost\n");
    if (c->p->net == SANDBOX_NET_HOST) {
        /* The resolver configuration is often a symlink into /run: bind its target. */
        struct stat st;

        if (stat("/etc/resolv.conf", &st) == 0 && S_ISREG(st.st_mode)) {
            mount_touch(c, "etc/resolv.conf");
            mount_bind(c, "/etc/resolv.conf", "etc/resolv.conf", true, true);
        }
    }
}

/* /dev: a read-only tmpfs with the harmless host nodes, the fd symlinks and shm. */
static void mount_dev_tree(const struct sandbox__child *c)
{
    char src[32], dst[32], opts[96];

    mount_mkdir(c, "dev", 0755);
    mount_tmpfs(c, "dev", "size=64k,nr_inodes=64,mode=0755");
    for (size_t i = 0; i < SLM_ARRAY_LEN(mount_dev); i++) {
        snprintf(src, sizeof(src), "/dev/%s", mount_dev[i]);
        snprintf(dst, sizeof(dst), "dev/%s", mount_dev[i]);
        mount_touch(c, dst);
        if (mount(src, dst, NULL, MS_BIND, NULL) < 0) sandbox__child_fail(c, errno, "bind %s", src);
        if (mount_restrict(dst, false, false, false) < 0)
            sandbox__child_fail(c, errno, "make /%s nosuid", dst);
    }
    if (symlink("/proc/self/fd", "dev/fd") < 0 || symlink("/proc/self/fd/0", "dev/stdin") < 0 ||
        symlink("/proc/self/fd/1", "dev/stdout") < 0 ||
        symlink("/proc/self/fd/2", "dev/stderr") < 0)
        sandbox__child_fail(c, errno, "symlinks in /dev");
    mount_mkdir(c, "dev/shm", 01777);
    snprintf(opts, sizeof(opts), "size=%llu,nr_inodes=4096,mode=1777",
             (unsigned long long)SLM_LIMIT_SANDBOX_SHM);
    mount_tmpfs(c, "dev/shm", opts);
    if (mount_restrict("dev", true, false, false) < 0)
        sandbox__child_fail(c, errno, "make /dev read-only");
}

/* A fresh /proc of the new pid namespace with the kernel's knobs read-only. */
static void mount_proc_tree(const struct sandbox__child *c)
{
    static const char *const ro[] = { "proc/sys", "proc/sysrq-trigger", "proc/irq", "proc/bus" };
    struct stat st;

    mount_mkdir(c, "proc", 0555);
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        sandbox__child_fail(c, errno, "mount a fresh proc on /proc");
    for (size_t i = 0; i < SLM_ARRAY_LEN(ro); i++) {
        if (lstat(ro[i], &st) < 0) continue;
        mount_bind(c, ro[i], ro[i], true, true);
    }
}

/* The caller's extra read-only binds, opened (fds[i]) before the root was hidden. */
static void mount_extra_binds(const struct sandbox__child *c, const int *fds)
{
    char src[48];

    for (size_t i = 0; i < c->p->n_ro_binds; i++) {
        const char *dst = c->p->ro_binds[i] + 1; /* absolute, checked by the supervisor */
        struct stat st;

        if (fstat(fds[i], &st) < 0) sandbox__child_fail(c, errno, "stat %s", c->p->ro_binds[i]);
        if (S_ISDIR(st.st_mode)) {
            mount_mkdirs(c, dst);
        } else {
            char parent[SLM_LIMIT_SANDBOX_PATH];
            const char *slash = strrchr(dst, '/');

            if (slash != NULL) {
                snprintf(parent, sizeof(parent), "%.*s", (int)(slash - dst), dst);
                mount_mkdirs(c, parent);
            }
            mount_touch(c, dst);
        }
        snprintf(src, sizeof(src), "/proc/self/fd/%d", fds[i]);
        mount_bind(c, src, dst, true, true);
        close(fds[i]);
    }
}

/*
 * Builds the new root under SANDBOX__NEWROOT in the child's private mount
 * namespace and pivots into it; on return the cwd is "/" of the new root and
 * the host's tree is detached. Any failure ends the child with a message.
 */
void sandbox__mount_setup(const struct sandbox__child *c)
{
    const struct sandbox_params *p = c->p;
    int bind_fds[SLM_LIMIT_SANDBOX_BINDS];
    char src[48], opts[160];
    int project_fd;

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        sandbox__child_fail(c, errno, "make the mount namespace private");
    project_fd = open(c->project, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (project_fd < 0) sandbox__child_fail(c, errno, "open the project directory %s", c->project);
    for (size_t i = 0; i < p->n_ro_binds; i++) {
        bind_fds[i] = open(p->ro_binds[i], O_PATH | O_CLOEXEC);
        if (bind_fds[i] < 0) sandbox__child_fail(c, errno, "open %s for --ro-bind", p->ro_binds[i]);
    }

    sandbox__child_set_ids(c);
    if (mount("tmpfs", SANDBOX__NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV,
              "size=1m,nr_inodes=4096,mode=0755") < 0)
        sandbox__child_fail(c, errno, "mount the new root (tmpfs on %s)", SANDBOX__NEWROOT);
    if (chdir(SANDBOX__NEWROOT) < 0) sandbox__child_fail(c, errno, "chdir to the new root");

    for (size_t i = 0; i < SLM_ARRAY_LEN(mount_top); i++)
        mount_host_entry(c, mount_top[i]);
    mount_mkdir(c, "etc", 0755);
    for (size_t i = 0; i < SLM_ARRAY_LEN(mount_etc); i++) {
        char name[64];

        snprintf(name, sizeof(name), "etc/%s", mount_etc[i]);
        mount_host_entry(c, name);
    }
    mount_etc_prefixes(c);
    mount_etc_generated(c);

    mount_mkdir(c, "workspace", 0755);
    snprintf(src, sizeof(src), "/proc/self/fd/%d", project_fd);
    mount_bind(c, src, "workspace", !p->project_rw, true);
    close(project_fd);

    mount_mkdir(c, "output", 0755);
    snprintf(opts, sizeof(opts), "size=%llu,nr_inodes=%llu,mode=0755,uid=%u,gid=%u",
             (unsigned long long)p->output_bytes, (unsigned long long)p->output_files + 1,
             (unsigned)c->uid, (unsigned)c->gid);
    mount_tmpfs(c, "output", opts);

    mount_mkdir(c, "tmp", 01777);
    snprintf(opts, sizeof(opts), "size=%llu,mode=1777", (unsigned long long)p->tmp_bytes);
    mount_tmpfs(c, "tmp", opts);

    /* SANDBOX__HOME without its leading '/': paths here are relative to the new root. */
    mount_mkdirs(c, &SANDBOX__HOME[1]);
    snprintf(opts, sizeof(opts), "size=%llu,mode=0700,uid=%u,gid=%u",
             (unsigned long long)p->home_bytes, (unsigned)c->uid, (unsigned)c->gid);
    mount_tmpfs(c, &SANDBOX__HOME[1], opts);

    mount_extra_binds(c, bind_fds);
    mount_dev_tree(c);
    mount_proc_tree(c);

    /* pivot_root(".", "."): the old root ends up on top and is detached at once. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        sandbox__child_fail(c, errno, "pivot_root into the new root");
    if (umount2(".", MNT_DETACH) < 0) sandbox__child_fail(c, errno, "detach the host root");
    if (chdir("/") < 0) sandbox__child_fail(c, errno, "chdir /");
    if (mount_restrict("/", true, true, false) < 0)
        sandbox__child_fail(c, errno, "make the new root read-only");
}
