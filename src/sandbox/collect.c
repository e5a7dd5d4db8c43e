/*
 * collect.c - copying the files a sandboxed command left in /output to the
 * host, never following a symbolic link (the CVE-2018-15664 class).
 *
 * The source is an fd of the sandbox's /output tmpfs root, passed by the
 * child before the command ran; by the time we copy, every process of the
 * sandbox is dead, so nothing can swap entries under us. Still, every open
 * is relative to a directory fd with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) and
 * O_NOFOLLOW, and each opened file is checked again with fstat, so the copy
 * is also safe against a live tree. Only regular files and directories are
 * copied; setuid/setgid/sticky bits are dropped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/limits.h"
#include "sandbox/sandbox.h"

/* Opens name beneath dirfd without following any link; falls back to O_NOFOLLOW. */
static int collect_open(int dirfd, const char *name, int flags)
{
    struct open_how how;
    long fd;

    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
    if (fd >= 0 || errno != ENOSYS) return (int)fd;
    return openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
}

/* Copies the regular file src (already opened and checked) to name in dst_dirfd. */
static int collect_file(int src, const struct stat *st, int dst_dirfd, const char *name,
                        struct sandbox_copy_stats *cs, struct slm_diag *d)
{
    char buf[65536];
    struct stat dst_st;
    uint64_t left = (uint64_t)st->st_size;
    int out;

    /* Replace whatever non-directory is there; never write through a link. */
    if (fstatat(dst_dirfd, name, &dst_st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISDIR(dst_st.st_mode)) {
            cs->n_skipped++;
            return 0;
        }
        if (unlinkat(dst_dirfd, name, 0) < 0)
            return slm_diag_set(d, SLM_EIO, "output: cannot replace '%s': %s", name,
                                strerror(errno));
    }
    out = openat(dst_dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 st->st_mode & 0777);
    if (out < 0)
        return slm_diag_set(d, SLM_EIO, "output: cannot create '%s': %s", name, strerror(errno));
    while (left > 0) {
        ssize_t n = read(src, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));

        if (n == 0) break; /* the file shrank: copy what is there */
        if (n < 0 || write(out, buf, (size_t)n) != n) {
            int err = errno;

            close(out);
            return slm_diag_set(d, SLM_EIO, "output: copying '%s': %s", name, strerror(err));
        }
        left -= (uint64_t)n;
        cs->n_bytes += (uint64_t)n;
    }
    if (fchmod(out, st->st_mode & 0777) < 0 || close(out) < 0)
        return slm_diag_set(d, SLM_EIO, "output: finishing '%s': %s", name, strerror(errno));
    return 0;
}

static int collect_dir(int src_dirfd, int dst_dirfd, unsigned depth, struct sandbox_copy_stats *cs,
                       struct slm_diag *d);

/* Handles one directory entry. */
static int collect_entry(int src_dirfd, int dst_dirfd, const char *name, unsigned depth,
                         struct sandbox_copy_stats *cs, struct slm_diag *d)
{
    struct stat st, st2;
    int fd, rc = 0;

    if (fstatat(src_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return 0; /* vanished */
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        cs->n_skipped++; /* symlink, FIFO, socket, device */
        return 0;
    }
    if (cs->n_files >= cs->files_max ||
        (S_ISREG(st.st_mode) && (uint64_t)st.st_size > cs->bytes_max - cs->n_bytes) ||
        (S_ISDIR(st.st_mode) && depth >= SLM_LIMIT_SANDBOX_OUTPUT_DEPTH)) {
        cs->n_skipped++;
        return 0;
    }
    fd = collect_open(src_dirfd, name,
                      S_ISDIR(st.st_mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        cs->n_skipped++;
        return 0;
    }
    /* The entry must still be the one we looked at. */
    if (fstat(fd, &st2) < 0 || st2.st_ino != st.st_ino || st2.st_dev != st.st_dev ||
        (st2.st_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
        cs->n_skipped++;
        close(fd);
        return 0;
    }
    cs->n_files++;
    if (S_ISREG(st.st_mode)) {
        rc = collect_file(fd, &st2, dst_dirfd, name, cs, d);
    } else {
        struct stat dst_st;
        int sub;

        if (fstatat(dst_dirfd, name, &dst_st, AT_SYMLINK_NOFOLLOW) == 0 &&
            !S_ISDIR(dst_st.st_mode) && unlinkat(dst_dirfd, name, 0) < 0) {
            close(fd);
            return slm_diag_set(d, SLM_EIO, "output: cannot replace '%s': %s", name,
                                strerror(errno));
        }
        if (mkdirat(dst_dirfd, name, 0755) < 0 && errno != EEXIST) {
            close(fd);
            return slm_diag_set(d, SLM_EIO, "output: cannot create directory '%s': %s", name,
                                strerror(errno));
        }
        sub = openat(dst_dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            close(fd);
            return slm_diag_set(d, SLM_EIO, "output: cannot open directory '%s': %s", name,
                                strerror(errno));
        }
        rc = collect_dir(fd, sub, depth + 1, cs, d);
        close(sub);
    }
    close(fd);
    return rc;
}

/* Copies every entry of src_dirfd (getdents64, so the fd is not consumed by fdopendir). */
static int collect_dir(int src_dirfd, int dst_dirfd, unsigned depth, struct sandbox_copy_stats *cs,
                       struct slm_diag *d)
{
    char buf[8192];
    long n;

    while ((n = syscall(SYS_getdents64, src_dirfd, buf, sizeof(buf))) > 0) {
        for (long off = 0; off < n;) {
            struct dirent64 *e = (struct dirent64 *)(void *)(buf + off);
            int rc;

            off += e->d_reclen;
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            rc = collect_entry(src_dirfd, dst_dirfd, e->d_name, depth, cs, d);
            if (rc < 0) return rc;
        }
    }
    if (n < 0) return slm_diag_set(d, SLM_EIO, "output: reading a directory: %s", strerror(errno));
    return 0;
}

/* See sandbox.h. */
int sandbox_copy_out(int src_dirfd, int dst_dirfd, struct sandbox_copy_stats *st,
                     struct slm_diag *d)
{
    return collect_dir(src_dirfd, dst_dirfd, 0, st, d);
}
