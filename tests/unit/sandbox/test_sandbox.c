/*
 * test_sandbox.c - the sandbox library: cgroup file parsing (fixtures of a
 * v1-hybrid host like our CI, a pure v2 host, none), parameter checks and
 * their messages, JSON result and tool definition, the /output copy with
 * hostile trees, the seccomp programs, and in-process runs (root only:
 * status classification, timeout, fd count constant over repeated runs).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "harness/t.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_int.h"

static const char mountinfo_hybrid[] =
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

static const char self_hybrid[] = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n"
                                  "3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

TEST(sandbox_cgroup_parse_v1_hybrid)
{
    struct sandbox__cg_paths *p = slm_calloc(1, sizeof(*p));

    ASSERT_NOT_NULL(p);
    sandbox__cg_parse_mountinfo(mountinfo_hybrid, p);
    sandbox__cg_parse_self(self_hybrid, p);
    ASSERT_EQ_STR(p->v2_mount, "/sys/fs/cgroup/unified");
    ASSERT_EQ_STR(p->v1_mount[SANDBOX__CTL_MEMORY], "/sys/fs/cgroup/memory");
    ASSERT_EQ_STR(p->v1_mount[SANDBOX__CTL_PIDS], "/sys/fs/cgroup/pids");
    /* "cpu" must not match cpuacct or cpuset. */
    ASSERT_EQ_STR(p->v1_mount[SANDBOX__CTL_CPU], "/sys/fs/cgroup/cpu");
    ASSERT_EQ_STR(p->v1_self[SANDBOX__CTL_MEMORY], "/process_api/abc");
    ASSERT_EQ_STR(p->v1_self[SANDBOX__CTL_PIDS], "/");
    ASSERT_EQ_STR(p->v2_self, "/");
    slm_free(p);
}

TEST(sandbox_cgroup_parse_v2_and_combined)
{
    struct sandbox__cg_paths *p = slm_calloc(1, sizeof(*p));

    ASSERT_NOT_NULL(p);
    sandbox__cg_parse_mountinfo(
        "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
        "26 20 0:23 /sub /mnt/part rw - cgroup cgroup rw,memory\n"
        "27 20 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "garbage line without fields\n",
        p);
    sandbox__cg_parse_self("0::/user.slice/user-1000.slice/session-2.scope\n"
                           "5:cpu,cpuacct:/x\nbroken\n",
                           p);
    ASSERT_EQ_STR(p->v2_mount, "/sys/fs/cgroup");
    ASSERT_EQ_STR(p->v2_self, "/user.slice/user-1000.slice/session-2.scope");
    /* A bind of part of a hierarchy (root "/sub") is not usable. */
    ASSERT_EQ_STR(p->v1_mount[SANDBOX__CTL_MEMORY], "");
    ASSERT_EQ_STR(p->v1_mount[SANDBOX__CTL_CPU], "/sys/fs/cgroup/cpu,cpuacct");
    ASSERT_EQ_STR(p->v1_self[SANDBOX__CTL_CPU], "/x");
    sandbox__cg_parse_mountinfo("", p);
    ASSERT_EQ_STR(p->v2_mount, "");
    slm_free(p);
}

static void params_for(struct sandbox_params *p, char **argv)
{
    sandbox_params_default(p);
    p->project_dir = t_tmpdir();
    p->argv = argv;
    p->cgroup = SANDBOX_CGROUP_NONE;
    p->timeout_ms = 20000;
}

TEST(sandbox_params_rejected_with_messages)
{
    static char *argv[] = { "true", NULL };
    static char *empty[] = { NULL };
    const char *bad_env[] = { "1X=2" };
    const char *bad_bind[] = { "/proc/self" };
    struct sandbox_params p;
    struct sandbox_result r;
    struct slm_diag d;

    params_for(&p, argv);
    p.project_dir = "/nonexistent/slm-project";
    ASSERT_ERR(sandbox_run(&p, &r, &d), SLM_ENOTFOUND);
    ASSERT(strstr(d.msg, "project directory '/nonexistent/slm-project': No such file or "
                         "directory; pass an existing directory") != NULL);
    sandbox_result_fini(&r);

    params_for(&p, empty);
    ASSERT_ERR(sandbox_run(&p, &r, &d), SLM_EINVAL);
    ASSERT_EQ_STR(d.msg, "no command given");

    params_for(&p, argv);
    p.memory_bytes = 1000;
    ASSERT_ERR(sandbox_run(&p, &r, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "memory limit 1000") != NULL);

    params_for(&p, argv);
    p.env = bad_env;
    p.n_env = 1;
    ASSERT_ERR(sandbox_run(&p, &r, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "'1X=2' is not NAME=VALUE") != NULL);

    params_for(&p, argv);
    p.ro_binds = bad_bind;
    p.n_ro_binds = 1;
    ASSERT_ERR(sandbox_run(&p, &r, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "inside /proc") != NULL);

    params_for(&p, argv);
    p.output_files = 0;
    ASSERT_ERR(sandbox_run(&p, &r, &d), SLM_EINVAL);

    params_for(&p, argv);
    p.tmp_bytes = 10;
    ASSERT_ERR(sandbox_run(&p, &r, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "/tmp size 10") != NULL);
    ASSERT_NULL(r.out);
}

TEST(sandbox_result_json_fields)
{
    struct sandbox_result r;
    struct slm_buf b;

    memset(&r, 0, sizeof(r));
    r.end = SANDBOX_END_EXITED;
    r.exit_code = 3;
    r.out = "a\"b\n";
    r.out_len = 4;
    r.err = "";
    r.backend = "cgroup-v1";
    slm_buf_init(&b, 4096);
    ASSERT_OK(sandbox_result_json(&r, &b));
    ASSERT(strstr(slm_buf_str(&b), "\"status\":\"exited\",\"exit_code\":3,\"signal\":null") !=
           NULL);
    ASSERT(strstr(slm_buf_str(&b), "\"stdout\":\"a\\\"b\\n\"") != NULL);
    ASSERT(strstr(slm_buf_str(&b), "\"limits\":\"cgroup-v1\"") != NULL);
    slm_buf_reset(&b);
    r.end = SANDBOX_END_TIMEOUT;
    r.signal = SIGKILL;
    r.timed_out = true;
    ASSERT_OK(sandbox_result_json(&r, &b));
    ASSERT(strstr(slm_buf_str(&b), "\"status\":\"timeout\",\"exit_code\":null,\"signal\":9,"
                                   "\"timed_out\":true") != NULL);
    slm_buf_fini(&b);
    /* A buffer too small fails cleanly. */
    slm_buf_init(&b, 16);
    ASSERT_ERR(sandbox_result_json(&r, &b), SLM_ELIMIT);
    slm_buf_fini(&b);
    ASSERT_EQ_STR(sandbox_end_name(SANDBOX_END_OOM), "oom");
    ASSERT_EQ_STR(sandbox_end_name((enum sandbox_end)42), "unknown");
}

TEST(sandbox_tool_json_matches_docs)
{
    struct slm_buf b, docs;
    char chunk[4096];
    ssize_t n;
    int fd = open("docs/tools/run_command.json", O_RDONLY | O_CLOEXEC);

    if (fd < 0) SKIP("docs/tools/run_command.json not found (run from the repository root)");
    slm_buf_init(&b, 1 << 16);
    slm_buf_init(&docs, 1 << 16);
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        ASSERT_OK(slm_buf_append(&docs, chunk, (size_t)n));
    close(fd);
    ASSERT_OK(sandbox_tool_json(&b));
    ASSERT_EQ_STR(slm_buf_str(&b), slm_buf_str(&docs));
    ASSERT(strstr(slm_buf_str(&b), "\"name\": \"run_command\"") != NULL);
    ASSERT(strstr(slm_buf_str(&b), "\"required\": [\n") != NULL);
    slm_buf_fini(&b);
    slm_buf_fini(&docs);
}

/* Writes text to dir/name. */
static void put(const char *dir, const char *name, const char *text)
{
    char path[1024];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT(fd >= 0);
    ASSERT_EQ_INT(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
}

TEST(sandbox_copy_out_never_follows_links)
{
    char src[400], dst[400], victim[400], path[1024], buf[64];
    struct sandbox_copy_stats cs = { .files_max = 100, .bytes_max = 1 << 20 };
    struct slm_diag d;
    int sfd, dfd, fd;
    ssize_t n;

    snprintf(src, sizeof(src), "%s/src", t_tmpdir());
    snprintf(dst, sizeof(dst), "%s/dst", t_tmpdir());
    snprintf(victim, sizeof(victim), "%s/victim", t_tmpdir());
    ASSERT(mkdir(src, 0755) == 0 && mkdir(dst, 0755) == 0);
    put(t_tmpdir(), "victim", "victim");
    put(src, "ok.txt", "fine");
    snprintf(path, sizeof(path), "%s/sub", src);
    ASSERT(mkdir(path, 0755) == 0);
    put(path, "deep", "deep");
    snprintf(path, sizeof(path), "%s/passwd", src);
    ASSERT(symlink("/etc/passwd", path) == 0);
    snprintf(path, sizeof(path), "%s/loop", src);
    ASSERT(symlink("loop", path) == 0);
    snprintf(path, sizeof(path), "%s/fifo", src);
    ASSERT(mkfifo(path, 0600) == 0);
    snprintf(path, sizeof(path), "%s/suid", src);
    put(src, "suid", "x");
    ASSERT(chmod(path, 04755) == 0);
    /* Host side: ok.txt is a planted link to the victim, sub is a link to /. */
    snprintf(path, sizeof(path), "%s/ok.txt", dst);
    ASSERT(symlink(victim, path) == 0);
    snprintf(path, sizeof(path), "%s/sub", dst);
    ASSERT(symlink("/", path) == 0);

    sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_OK(sandbox_copy_out(sfd, dfd, &cs, &d));
    ASSERT_EQ_SIZE(cs.n_files, 4); /* ok.txt, sub, sub/deep, suid */
    ASSERT_EQ_SIZE(cs.n_skipped, 3);
    fd = open(victim, O_RDONLY | O_CLOEXEC);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    ASSERT_EQ_STR(buf, "victim");
    snprintf(path, sizeof(path), "%s/sub/deep", dst);
    {
        struct stat st;

        ASSERT(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
        snprintf(path, sizeof(path), "%s/sub", dst);
        ASSERT(lstat(path, &st) == 0 && S_ISDIR(st.st_mode));
        snprintf(path, sizeof(path), "%s/suid", dst);
        ASSERT(lstat(path, &st) == 0 && (st.st_mode & 07777) == 0755);
        snprintf(path, sizeof(path), "%s/passwd", dst);
        ASSERT(lstat(path, &st) < 0 && errno == ENOENT);
    }
    close(sfd);
    close(dfd);
}

TEST(sandbox_copy_out_quotas)
{
    char src[400], dst[400], name[32];
    struct sandbox_copy_stats cs = { .files_max = 5, .bytes_max = 10 };
    struct slm_diag d;
    int sfd, dfd;

    snprintf(src, sizeof(src), "%s/src", t_tmpdir());
    snprintf(dst, sizeof(dst), "%s/dst", t_tmpdir());
    ASSERT(mkdir(src, 0755) == 0 && mkdir(dst, 0755) == 0);
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "f%02d", i);
        put(src, name, "abc");
    }
    put(src, "big", "0123456789abcdef");
    sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_OK(sandbox_copy_out(sfd, dfd, &cs, &d));
    ASSERT(cs.n_files <= 5);
    ASSERT(cs.n_bytes <= 10);
    ASSERT_EQ_SIZE(cs.n_files + cs.n_skipped, 21);
    close(sfd);
    close(dfd);
}

TEST(sandbox_seccomp_programs_build)
{
    struct sandbox__bpf bpf;
    struct slm_diag d;

    ASSERT_OK(sandbox__seccomp_build(&bpf, &d));
    ASSERT(bpf.args.len > 20 && bpf.args.filter != NULL);
    ASSERT(bpf.main.len > 100 && bpf.main.filter != NULL);
    sandbox__seccomp_fini(&bpf);
    ASSERT_NULL(bpf.main.filter);
    sandbox__seccomp_fini(&bpf); /* twice is fine */
}

TEST(sandbox_seccomp_alloc_failures_are_clean)
{
    for (uint64_t n = 1; n < 8; n++) {
        struct sandbox__bpf bpf;
        struct slm_diag d;
        int rc;

        slm_alloc_fail_at(n);
        rc = sandbox__seccomp_build(&bpf, &d);
        slm_alloc_fail_at(0);
        if (rc == 0)
            sandbox__seccomp_fini(&bpf);
        else
            ASSERT(rc == SLM_ENOMEM || rc == SLM_EINTERNAL || rc == SLM_EIO);
    }
}

/* Runs argv in a sandbox over the test's temp dir; needs user namespaces. */
static int run(char **argv, uint64_t timeout_ms, struct sandbox_result *r)
{
    struct sandbox_params p;
    struct slm_diag d;
    int rc;

    params_for(&p, argv);
    p.timeout_ms = timeout_ms;
    p.cgroup = SANDBOX_CGROUP_AUTO;
    chmod(t_tmpdir(), 0755);
    rc = sandbox_run(&p, r, &d);
    if (rc == SLM_EPERM) SKIP(d.msg);
    if (rc < 0) t_fail(__FILE__, __LINE__, "sandbox_run: %s", d.msg);
    return rc;
}

TEST(sandbox_run_statuses)
{
    static char *exit3[] = { "/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL };
    static char *segv[] = { "/bin/sh", "-c", "kill -SEGV $$", NULL };
    static char *spin[] = { "/bin/sh", "-c", "while :; do :; done", NULL };
    struct sandbox_result r;

    if (geteuid() != 0)
        SKIP("needs root for the cgroup back-end; the integration test covers unprivileged runs");
    run(exit3, 20000, &r);
    ASSERT_EQ_INT(r.end, SANDBOX_END_EXITED);
    ASSERT_EQ_INT(r.exit_code, 3);
    ASSERT_EQ_STR(r.out, "out\n");
    ASSERT_EQ_STR(r.err, "err\n");
    sandbox_result_fini(&r);
    run(segv, 20000, &r);
    ASSERT_EQ_INT(r.end, SANDBOX_END_SIGNALED);
    ASSERT_EQ_INT(r.signal, SIGSEGV);
    sandbox_result_fini(&r);
    run(spin, 500, &r);
    ASSERT_EQ_INT(r.end, SANDBOX_END_TIMEOUT);
    ASSERT(r.timed_out);
    ASSERT(r.wall_ms >= 500 && r.wall_ms < 1500);
    sandbox_result_fini(&r);
}

/* Counts the open fds of this process. */
static int count_fds(void)
{
    int n = 0;

    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0) n++;
    return n;
}

TEST(sandbox_run_repeated_keeps_fd_count)
{
    static char *argv[] = { "true", NULL };
    struct sandbox_result r;
    int before;

    if (geteuid() != 0) SKIP("needs root for the cgroup back-end");
    run(argv, 20000, &r);
    sandbox_result_fini(&r);
    before = count_fds();
    for (int i = 0; i < 20; i++) {
        run(argv, 20000, &r);
        ASSERT_EQ_INT(r.exit_code, 0);
        sandbox_result_fini(&r);
    }
    ASSERT_EQ_INT(count_fds(), before);
}
