/*
 * cgroup.c - memory, pids and CPU limits through cgroup v2 or v1.
 *
 * The back-end is chosen at run time: v2 when the unified hierarchy offers
 * the memory and pids controllers, else v1 when they are mounted there (the
 * hybrid layout of our CI machine), else nothing, and rlimits (set by the
 * child, init.c) remain as the floor. A sandbox's group is created below
 * the supervisor's own group in each hierarchy, named
 * slm-sandbox-<pid>-<n>, filled with the limits, and the child is moved in
 * before it is allowed to run. It is removed when the sandbox ends.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/str.h"
#include "sandbox/sandbox_int.h"

static const char *const cg_ctl_names[SANDBOX__CTL_COUNT] = { "memory", "pids", "cpu" };

/* True if the comma-separated list s (length len) contains word. */
static bool cg_list_has(const char *s, size_t len, const char *word)
{
    size_t wlen = strlen(word);
    const char *end = s + len;

    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        size_t n = comma != NULL ? (size_t)(comma - s) : (size_t)(end - s);

        if (n == wlen && memcmp(s, word, n) == 0) return true;
        s += n + 1;
    }
    return false;
}

/* Copies s[0..len) into dst (cap bytes) if it fits; otherwise leaves dst empty. */
static void cg_copy(char *dst, size_t cap, const char *s, size_t len)
{
    if (len >= cap) {
        dst[0] = '\0';
        return;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
}

/* Returns the n-th (0-based) space-separated field of line [s, end) and its length. */
static const char *cg_field(const char *s, const char *end, int n, size_t *len)
{
    for (int i = 0; s < end; i++) {
        const char *sp = memchr(s, ' ', (size_t)(end - s));
        size_t flen = sp != NULL ? (size_t)(sp - s) : (size_t)(end - s);

        if (i == n) {
            *len = flen;
            return s;
        }
        if (sp == NULL) break;
        s = sp + 1;
    }
    return NULL;
}

/*
 * Parses /proc/self/mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS
 * [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS". Records the cgroup2 mount point
 * and, for each v1 controller we use, the mount point whose super options
 * name it. Mounts of a non-root part of a hierarchy are ignored.
 */
void sandbox__cg_parse_mountinfo(const char *text, struct sandbox__cg_paths *out)
{
    const char *s = text;

    out->v2_mount[0] = '\0';
    for (int i = 0; i < SANDBOX__CTL_COUNT; i++)
        out->v1_mount[i][0] = '\0';
    while (*s != '\0') {
        const char *nl = strchr(s, '\n');
        const char *end = nl != NULL ? nl : s + strlen(s);
        const char *dash = NULL, *root, *mnt, *type, *opts;
        size_t root_len = 0, mnt_len = 0, type_len = 0, opts_len = 0;

        for (const char *q = s; q + 2 < end; q++)
            if (q[0] == ' ' && q[1] == '-' && q[2] == ' ') {
                dash = q + 3;
                break;
            }
        root = cg_field(s, end, 3, &root_len);
        mnt = cg_field(s, end, 4, &mnt_len);
        type = dash != NULL ? cg_field(dash, end, 0, &type_len) : NULL;
        opts = dash != NULL ? cg_field(dash, end, 2, &opts_len) : NULL;
        if (root != NULL && mnt != NULL && type != NULL && opts != NULL && root_len == 1 &&
            root[0] == '/') {
            if (type_len == 7 && memcmp(type, "cgroup2", 7) == 0 && out->v2_mount[0] == '\0')
                cg_copy(out->v2_mount, sizeof(out->v2_mount), mnt, mnt_len);
            else if (type_len == 6 && memcmp(type, "cgroup", 6) == 0)
                for (int i = 0; i < SANDBOX__CTL_COUNT; i++)
                    if (out->v1_mount[i][0] == '\0' && cg_list_has(opts, opts_len, cg_ctl_names[i]))
                        cg_copy(out->v1_mount[i], sizeof(out->v1_mount[i]), mnt, mnt_len);
        }
        s = nl != NULL ? nl + 1 : end;
    }
}

/* Parses /proc/self/cgroup: "ID:CONTROLLERS:PATH" lines; "0::PATH" is v2. */
void sandbox__cg_parse_self(const char *text, struct sandbox__cg_paths *out)
{
    const char *s = text;

    out->v2_self[0] = '\0';
    for (int i = 0; i < SANDBOX__CTL_COUNT; i++)
        out->v1_self[i][0] = '\0';
    while (*s != '\0') {
        const char *nl = strchr(s, '\n');
        const char *end = nl != NULL ? nl : s + strlen(s);
        const char *c1 = memchr(s, ':', (size_t)(end - s));
        const char *c2 = c1 != NULL ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;

        if (c2 != NULL && c2[1] == '/') {
            const char *ctl = c1 + 1;
            size_t ctl_len = (size_t)(c2 - ctl);
            const char *path = c2 + 1;
            size_t path_len = (size_t)(end - path);

            if (ctl_len == 0 && c1 - s == 1 && s[0] == '0')
                cg_copy(out->v2_self, sizeof(out->v2_self), path, path_len);
            else
                for (int i = 0; i < SANDBOX__CTL_COUNT; i++)
                    if (cg_list_has(ctl, ctl_len, cg_ctl_names[i]))
                        cg_copy(out->v1_self[i], sizeof(out->v1_self[i]), path, path_len);
        }
        s = nl != NULL ? nl + 1 : end;
    }
}

/* Reads a whole (small) file into b; returns 0 or -errno. */
static int cg_read_file(const char *path, struct slm_buf *b)
{
    char chunk[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) return -errno;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        if (slm_buf_append(b, chunk, (size_t)n) < 0) {
            close(fd);
            return -EFBIG;
        }
    close(fd);
    return n < 0 ? -errno : 0;
}

/* Writes value to dir/file; returns 0 or -errno. */
static int cg_write(const char *dir, const char *file, const char *value)
{
    char path[SLM_LIMIT_SANDBOX_PATH + 64];

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    return sandbox__write_file(path, value);
}

/* Reads "key N" from dir/file (N for key, or the first number if key is NULL). */
static bool cg_read_u64(const char *dir, const char *file, const char *key, uint64_t *out)
{
    char path[SLM_LIMIT_SANDBOX_PATH + 64];
    struct slm_buf b;
    const char *s;
    bool ok = false;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    slm_buf_init(&b, 1 << 16);
    if (cg_read_file(path, &b) < 0) goto out;
    s = slm_buf_str(&b);
    if (key != NULL) {
        size_t klen = strlen(key);

        for (;;) {
            if (strncmp(s, key, klen) == 0 && s[klen] == ' ') {
                s += klen + 1;
                break;
            }
            s = strchr(s, '\n');
            if (s == NULL) goto out;
            s++;
        }
    }
    {
        uint64_t v = 0;
        const char *p = s;

        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (uint64_t)(*p - '0');
            p++;
        }
        ok = p != s;
        *out = v;
    }
out:
    slm_buf_fini(&b);
    return ok;
}

static int cg_fail(struct slm_diag *d, const char *what, const char *path, int err)
{
    if (err == EACCES || err == EPERM || err == EROFS)
        return slm_diag_set(d, SLM_EPERM,
                            "cannot %s cgroup %s: %s; run as root, or inside a delegated cgroup "
                            "(systemd-run --user --scope -p Delegate=yes slm sandbox ...), or pass "
                            "--cgroup none to rely on rlimits",
                            what, path, strerror(err));
    return slm_diag_set(d, SLM_EIO,
                        "cannot %s cgroup %s: %s; pass --cgroup none to rely on rlimits", what,
                        path, strerror(err));
}

/* Makes dir (mkdir with mode 0755); returns 0 or the diag code. */
static int cg_mkdir(const char *dir, struct slm_diag *d)
{
    if (mkdir(dir, 0755) == 0) return 0;
    return cg_fail(d, "create", dir, errno);
}

/* Builds "<mount><self>/<name>" in out; false if it does not fit. */
static bool cg_path(char *out, size_t cap, const char *mount, const char *self, const char *name)
{
    int n = snprintf(out, cap, "%s%s%s%s", mount, strcmp(self, "/") == 0 ? "" : self,
                     name != NULL ? "/" : "", name != NULL ? name : "");

    return n > 0 && (size_t)n < cap;
}

/*
 * Removes empty slm-sandbox-<pid>-<n> groups under parent whose supervisor
 * <pid> no longer exists (it was killed before it could clean up). rmdir
 * fails on a group that still holds tasks, so a live sandbox is never hit.
 */
static void cg_reap_stale(const char *parent)
{
    DIR *dir = opendir(parent);
    struct dirent *e;

    if (dir == NULL) return;
    while ((e = readdir(dir)) != NULL) {
        char path[SLM_LIMIT_SANDBOX_PATH + 300];
        const char *s = e->d_name;
        long pid = 0;

        if (strncmp(s, "slm-sandbox-", 12) != 0) continue;
        for (s += 12; *s >= '0' && *s <= '9' && pid < 1L << 30; s++)
            pid = pid * 10 + (*s - '0');
        if (*s != '-' || pid <= 0 || pid == (long)getpid() ||
            !(kill((pid_t)pid, 0) < 0 && errno == ESRCH))
            continue;
        snprintf(path, sizeof(path), "%s/%s", parent, e->d_name);
        rmdir(path);
    }
    closedir(dir);
}

static void cg_name(char *out, size_t cap)
{
    static unsigned counter;

    snprintf(out, cap, "slm-sandbox-%d-%u", (int)getpid(), counter++);
}

/* Writes the v2 limits of p into dir. */
static int cg_v2_limits(const char *dir, const struct sandbox_params *p, struct slm_diag *d)
{
    char v[64];
    int err;

    if (p->memory_bytes > 0) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)p->memory_bytes);
        if ((err = cg_write(dir, "memory.max", v)) < 0)
            return cg_fail(d, "write memory.max in", dir, -err);
        err = cg_write(dir, "memory.swap.max", "0");
        if (err < 0 && err != -ENOENT) return cg_fail(d, "write memory.swap.max in", dir, -err);
    }
    if (p->pids_max > 0) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)p->pids_max);
        if ((err = cg_write(dir, "pids.max", v)) < 0)
            return cg_fail(d, "write pids.max in", dir, -err);
    }
    if (p->cpus > 0) {
        snprintf(v, sizeof(v), "%llu 100000", (unsigned long long)(p->cpus * 100000.0 + 0.5));
        if ((err = cg_write(dir, "cpu.max", v)) < 0)
            return cg_fail(d, "write cpu.max in", dir, -err);
    }
    return 0;
}

/* True if the space-separated controller list in b names every needed controller. */
static bool cg_v2_has(const char *list, bool need_cpu)
{
    char copy[256];
    bool mem = false, pids = false, cpu = false;

    snprintf(copy, sizeof(copy), "%s", list);
    for (char *s = copy; *s != '\0';) {
        size_t n = strcspn(s, " \n");

        if (n == 6 && memcmp(s, "memory", 6) == 0)
            mem = true;
        else if (n == 4 && memcmp(s, "pids", 4) == 0)
            pids = true;
        else if (n == 3 && memcmp(s, "cpu", 3) == 0)
            cpu = true;
        s += n;
        s += strspn(s, " \n");
    }
    return mem && pids && (cpu || !need_cpu);
}

static int cg_try_v2(struct sandbox__cgroup *cg, const struct sandbox__cg_paths *paths,
                     const struct sandbox_params *p, struct slm_diag *d)
{
    char parent[SLM_LIMIT_SANDBOX_PATH], file[SLM_LIMIT_SANDBOX_PATH + 32];
    char name[64], enable[32];
    struct slm_buf b;
    int err, rc;

    if (paths->v2_mount[0] == '\0')
        return slm_diag_set(d, SLM_EPERM, "no cgroup2 file system is mounted");
    if (!cg_path(parent, sizeof(parent), paths->v2_mount,
                 paths->v2_self[0] != '\0' ? paths->v2_self : "/", NULL))
        return slm_diag_set(d, SLM_EIO, "cgroup path too long");
    snprintf(file, sizeof(file), "%s/cgroup.controllers", parent);
    slm_buf_init(&b, 4096);
    err = cg_read_file(file, &b);
    if (err < 0 || !cg_v2_has(slm_buf_str(&b), p->cpus > 0)) {
        rc = slm_diag_set(d, SLM_EPERM,
                          "cgroup v2 at %s does not offer the memory, pids%s controllers "
                          "(found '%.60s'); use --cgroup v1 or --cgroup none",
                          paths->v2_mount, p->cpus > 0 ? " and cpu" : "",
                          err < 0 ? strerror(-err) : slm_buf_str(&b));
        slm_buf_fini(&b);
        return rc;
    }
    slm_buf_fini(&b);
    snprintf(enable, sizeof(enable), "+memory +pids%s", p->cpus > 0 ? " +cpu" : "");
    err = cg_write(parent, "cgroup.subtree_control", enable);
    if (err == -EBUSY && geteuid() == 0) {
        /* Our group holds processes (no internal processes rule): the root is exempt. */
        snprintf(parent, sizeof(parent), "%s", paths->v2_mount);
        err = cg_write(parent, "cgroup.subtree_control", enable);
    }
    if (err < 0) return cg_fail(d, "enable controllers in", parent, -err);
    cg_reap_stale(parent);
    cg_name(name, sizeof(name));
    if (!cg_path(cg->dir[0], sizeof(cg->dir[0]), parent, "/", name))
        return slm_diag_set(d, SLM_EIO, "cgroup path too long");
    rc = cg_mkdir(cg->dir[0], d);
    if (rc < 0) return rc;
    cg->version = 2;
    cg->have[0] = true;
    rc = cg_v2_limits(cg->dir[0], p, d);
    if (rc < 0) sandbox__cgroup_destroy(cg);
    return rc;
}

static int cg_try_v1(struct sandbox__cgroup *cg, const struct sandbox__cg_paths *paths,
                     const struct sandbox_params *p, struct slm_diag *d)
{
    char name[64], v[64];
    int rc = 0, err;

    cg_name(name, sizeof(name));
    cg->version = 1;
    for (int i = 0; i < SANDBOX__CTL_COUNT; i++) {
        bool needed = (i == SANDBOX__CTL_MEMORY && p->memory_bytes > 0) ||
                      (i == SANDBOX__CTL_PIDS && p->pids_max > 0) ||
                      (i == SANDBOX__CTL_CPU && p->cpus > 0);

        if (!needed) continue;
        if (paths->v1_mount[i][0] == '\0') {
            if (i == SANDBOX__CTL_CPU) continue; /* the affinity floor still applies */
            rc = slm_diag_set(d, SLM_EPERM,
                              "cgroup v1: no %s hierarchy is mounted; use --cgroup v2 or "
                              "--cgroup none",
                              cg_ctl_names[i]);
            goto out;
        }
        if (!cg_path(cg->dir[i], sizeof(cg->dir[i]), paths->v1_mount[i],
                     paths->v1_self[i][0] != '\0' ? paths->v1_self[i] : "/", name)) {
            rc = slm_diag_set(d, SLM_EIO, "cgroup path too long");
            goto out;
        }
        {
            char parent[SLM_LIMIT_SANDBOX_PATH];

            if (cg_path(parent, sizeof(parent), paths->v1_mount[i],
                        paths->v1_self[i][0] != '\0' ? paths->v1_self[i] : "/", NULL))
                cg_reap_stale(parent);
        }
        rc = cg_mkdir(cg->dir[i], d);
        if (rc < 0) goto out;
        cg->have[i] = true;
    }
    if (cg->have[SANDBOX__CTL_MEMORY]) {
        const char *dir = cg->dir[SANDBOX__CTL_MEMORY];

        snprintf(v, sizeof(v), "%llu", (unsigned long long)p->memory_bytes);
        if ((err = cg_write(dir, "memory.limit_in_bytes", v)) < 0) {
            rc = cg_fail(d, "write memory.limit_in_bytes in", dir, -err);
            goto out;
        }
        /* memory+swap equal to memory: no swapping past the limit. */
        err = cg_write(dir, "memory.memsw.limit_in_bytes", v);
        if (err < 0 && err != -ENOENT) {
            rc = cg_fail(d, "write memory.memsw.limit_in_bytes in", dir, -err);
            goto out;
        }
    }
    if (cg->have[SANDBOX__CTL_PIDS]) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)p->pids_max);
        if ((err = cg_write(cg->dir[SANDBOX__CTL_PIDS], "pids.max", v)) < 0) {
            rc = cg_fail(d, "write pids.max in", cg->dir[SANDBOX__CTL_PIDS], -err);
            goto out;
        }
    }
    if (cg->have[SANDBOX__CTL_CPU]) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)(p->cpus * 100000.0 + 0.5));
        if ((err = cg_write(cg->dir[SANDBOX__CTL_CPU], "cpu.cfs_period_us", "100000")) < 0 ||
            (err = cg_write(cg->dir[SANDBOX__CTL_CPU], "cpu.cfs_quota_us", v)) < 0) {
            rc = cg_fail(d, "write cpu.cfs_quota_us in", cg->dir[SANDBOX__CTL_CPU], -err);
            goto out;
        }
    }
out:
    if (rc < 0) sandbox__cgroup_destroy(cg);
    return rc;
}

/* See sandbox_int.h. */
int sandbox__cgroup_create(struct sandbox__cgroup *cg, const struct sandbox_params *p, char *notes,
                           size_t notes_len, struct slm_diag *d)
{
    struct sandbox__cg_paths *paths = NULL;
    struct slm_buf b;
    struct slm_diag d2;
    int rc = 0;

    memset(cg, 0, sizeof(*cg));
    if (p->cgroup == SANDBOX_CGROUP_NONE ||
        (p->memory_bytes == 0 && p->pids_max == 0 && p->cpus <= 0))
        return 0;
    paths = slm_calloc(1, sizeof(*paths));
    if (paths == NULL) return SLM_ENOMEM;
    slm_buf_init(&b, 4u << 20);
    if (cg_read_file("/proc/self/mountinfo", &b) == 0)
        sandbox__cg_parse_mountinfo(slm_buf_str(&b), paths);
    slm_buf_reset(&b);
    if (cg_read_file("/proc/self/cgroup", &b) == 0) sandbox__cg_parse_self(slm_buf_str(&b), paths);
    slm_buf_fini(&b);

    slm_diag_clear(&d2);
    if (p->cgroup == SANDBOX_CGROUP_V2) {
        rc = cg_try_v2(cg, paths, p, d);
    } else if (p->cgroup == SANDBOX_CGROUP_V1) {
        rc = cg_try_v1(cg, paths, p, d);
    } else {
        char why2[SLM_DIAG_MSG_MAX];

        rc = cg_try_v2(cg, paths, p, &d2);
        if (rc < 0) {
            snprintf(why2, sizeof(why2), "%s", d2.msg);
            memset(cg, 0, sizeof(*cg));
            rc = cg_try_v1(cg, paths, p, &d2);
            if (rc < 0) {
                memset(cg, 0, sizeof(*cg));
                (void)why2;
                snprintf(notes, notes_len, "cgroup limits unavailable, rlimits only: %s", d2.msg);
                rc = 0;
            }
        }
    }
    if (rc < 0) memset(cg, 0, sizeof(*cg));
    slm_free(paths);
    return rc;
}

/* Writes pid into cgroup.procs of every group. */
int sandbox__cgroup_attach(const struct sandbox__cgroup *cg, pid_t pid, struct slm_diag *d)
{
    char v[32];

    snprintf(v, sizeof(v), "%d", (int)pid);
    for (int i = 0; i < SANDBOX__CTL_COUNT; i++) {
        int err;

        if (!cg->have[i]) continue;
        err = cg_write(cg->dir[i], "cgroup.procs", v);
        if (err < 0) return cg_fail(d, "move the sandbox into", cg->dir[i], -err);
    }
    return 0;
}

/* SIGKILLs everything in the group: cgroup.kill on v2, each listed pid on v1. */
void sandbox__cgroup_kill(const struct sandbox__cgroup *cg)
{
    char path[SLM_LIMIT_SANDBOX_PATH + 32];
    struct slm_buf b;

    if (cg->version == 2) {
        if (cg_write(cg->dir[0], "cgroup.kill", "1") == 0) return;
    }
    for (int i = 0; i < SANDBOX__CTL_COUNT; i++) {
        if (!cg->have[i]) continue;
        snprintf(path, sizeof(path), "%s/cgroup.procs", cg->dir[i]);
        slm_buf_init(&b, 1 << 20);
        if (cg_read_file(path, &b) == 0) {
            for (const char *s = slm_buf_str(&b); *s != '\0';) {
                long pid = 0;

                while (*s >= '0' && *s <= '9')
                    pid = pid * 10 + (*s++ - '0');
                if (pid > 1) kill((pid_t)pid, SIGKILL);
                while (*s != '\0' && (*s < '0' || *s > '9'))
                    s++;
            }
        }
        slm_buf_fini(&b);
        return;
    }
}

/* See sandbox_int.h. */
void sandbox__cgroup_stats(const struct sandbox__cgroup *cg, bool *oom, uint64_t *peak)
{
    uint64_t v = 0;

    *oom = false;
    *peak = 0;
    if (cg->version == 2) {
        if (cg_read_u64(cg->dir[0], "memory.events", "oom_kill", &v)) *oom = v > 0;
        if (cg_read_u64(cg->dir[0], "memory.peak", NULL, &v)) *peak = v;
    } else if (cg->version == 1 && cg->have[SANDBOX__CTL_MEMORY]) {
        const char *dir = cg->dir[SANDBOX__CTL_MEMORY];

        if (cg_read_u64(dir, "memory.oom_control", "oom_kill", &v)) *oom = v > 0;
        if (cg_read_u64(dir, "memory.max_usage_in_bytes", NULL, &v)) *peak = v;
    }
}

/* See sandbox_int.h. */
void sandbox__cgroup_destroy(struct sandbox__cgroup *cg)
{
    for (int i = 0; i < SANDBOX__CTL_COUNT; i++) {
        if (!cg->have[i]) continue;
        /* Tasks leave a group asynchronously after they are reaped: retry up to 2 s. */
        for (int tries = 0; tries < 400; tries++) {
            struct timespec ts = { 0, 5 * 1000 * 1000 };

            if (rmdir(cg->dir[i]) == 0 || errno == ENOENT) break;
            if (errno != EBUSY) break;
            nanosleep(&ts, NULL);
        }
        cg->have[i] = false;
    }
    cg->version = 0;
}

/* See sandbox_int.h. */
const char *sandbox__cgroup_backend(const struct sandbox__cgroup *cg)
{
    return cg->version == 2 ? "cgroup-v2" : cg->version == 1 ? "cgroup-v1" : "rlimit";
}
