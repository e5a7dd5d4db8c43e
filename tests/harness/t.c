/*
 * t.c - the test runner: fork per test (T_JOBS at a time), timeout, TAP output,
 * summary line.
 */
#include "t.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/str.h"

extern const struct t_case *const __start_slm_tests[];
extern const struct t_case *const __stop_slm_tests[];

static char t_dir[256];

/* Prints the failure to stderr and ends the child with status 1. */
void t_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "# %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(NULL);
    _exit(1);
}

void t_skip(const char *reason)
{
    fprintf(stderr, "# skip: %s\n", reason);
    fflush(NULL);
    _exit(T_EXIT_SKIP);
}

const char *t_env(const char *name, const char *def)
{
    const char *v = getenv(name);

    return (v != NULL && *v != '\0') ? v : def;
}

/* Creates the per-test temporary directory on first use. */
const char *t_tmpdir(void)
{
    if (t_dir[0] == '\0') {
        const char *base = t_env("TMPDIR", "/tmp");

        snprintf(t_dir, sizeof(t_dir), "%s/slm-test-XXXXXX", base);
        if (mkdtemp(t_dir) == NULL) {
            fprintf(stderr, "# mkdtemp %s: %s\n", t_dir, strerror(errno));
            _exit(1);
        }
    }
    return t_dir;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Returns whether name contains one of the comma-separated substrings of list. */
static bool matches_any(const char *name, const char *list)
{
    size_t name_len = strlen(name);

    while (*list != '\0') {
        const char *end = strchr(list, ',');
        size_t len = end != NULL ? (size_t)(end - list) : strlen(list);

        if (len > 0 && memmem(name, name_len, list, len) != NULL) return true;
        list += len;
        if (*list == ',') list++;
    }
    return false;
}

static int case_cmp(const void *a, const void *b)
{
    const struct t_case *x = *(const struct t_case *const *)a;
    const struct t_case *y = *(const struct t_case *const *)b;
    int c = strcmp(x->file, y->file);

    return c != 0 ? c : strcmp(x->name, y->name);
}

/* The status of a finished test child: 0 pass, 1 fail, 2 skip. */
static int child_result(pid_t pid, int status)
{
    kill(-pid, SIGKILL); /* leftovers of the test's own children */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == T_EXIT_SKIP) return 2;
    if (WIFSIGNALED(status))
        fprintf(stderr, "# killed by signal %d%s\n", WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    return 1;
}

/*
 * Starts one test in a child. With out >= 0 the child's stdout and stderr go
 * to out (parallel runs print each test's output in one piece afterwards);
 * close_fds[0..n_close) are the other running tests' files, closed in the child.
 */
static pid_t start_one(const struct t_case *tc, unsigned timeout, int out, const int *close_fds,
                       size_t n_close)
{
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "# fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (out >= 0) {
            if (dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0) _exit(1);
            close(out);
            for (size_t i = 0; i < n_close; i++)
                close(close_fds[i]);
        }
        signal(SIGALRM, SIG_DFL);
        alarm(timeout);
        tc->fn();
        fflush(NULL);
        if (t_dir[0] != '\0') nftw(t_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        /* exit, not _exit: LeakSanitizer checks the test at exit (Z01). */
        exit(0);
    }
    return pid;
}

/* Runs one test in a child; returns 0 pass, 1 fail, 2 skip. */
static int run_one(const struct t_case *tc, unsigned timeout)
{
    pid_t pid = start_one(tc, timeout, -1, NULL, 0);
    int status;

    if (pid < 0) return 1;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return 1;
    }
    return child_result(pid, status);
}

/* One selected test of a parallel run. */
struct t_job {
    const struct t_case *tc;
    pid_t pid;      /* > 0 while running */
    int out;        /* its captured output, -1 once printed */
    int result;     /* -1 until finished, then as run_one */
    uint64_t start; /* slm_now_ns at start, then the duration */
};

/* Copies the captured output of a finished test to stdout. */
static void print_output(struct t_job *j)
{
    char buf[4096];
    off_t off = 0;
    ssize_t n;

    fflush(stdout);
    while ((n = pread(j->out, buf, sizeof(buf), off)) > 0) {
        fwrite(buf, 1, (size_t)n, stdout);
        off += n;
    }
    fflush(stdout);
    close(j->out);
    j->out = -1;
}

/* Opens an unlinked file for a test's output, or returns -1. */
static int open_output(void)
{
    const char *base = t_env("TMPDIR", "/tmp");
    int fd = open(base, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    if (fd < 0) {
        FILE *f = tmpfile();

        if (f == NULL) return -1;
        fd = dup(fileno(f));
        fclose(f);
    }
    return fd;
}

/* Prints the TAP line of test num (and its duration with T_TIMES set). */
static void report(unsigned num, const struct t_case *tc, int r, uint64_t ns, bool times,
                   unsigned *passed, unsigned *failed, unsigned *skipped)
{
    if (r == 0) {
        (*passed)++;
        printf("ok %u - %s\n", num, tc->name);
    } else if (r == 2) {
        (*skipped)++;
        printf("ok %u - %s # SKIP\n", num, tc->name);
    } else {
        (*failed)++;
        printf("not ok %u - %s (%s)\n", num, tc->name, tc->file);
    }
    if (times) printf("#   %.3f s\n", (double)ns / 1e9);
}

/* Finished tests waiting for an earlier one to be printed hold a file each. */
#define T_WINDOW 256

/*
 * Runs jobs[0..n) up to max_jobs at a time; prints each test's output and
 * TAP line in order, as soon as it and every test before it have finished.
 */
static void run_parallel(struct t_job *jobs, size_t n, unsigned max_jobs, unsigned timeout,
                         bool times, unsigned *passed, unsigned *failed, unsigned *skipped)
{
    size_t next = 0, printed = 0, running = 0;
    int close_fds[T_WINDOW];

    while (printed < n) {
        pid_t pid;
        int status;

        while (running < max_jobs && next < n && next - printed < T_WINDOW) {
            struct t_job *j = &jobs[next++];
            size_t nc = 0;

            for (size_t i = printed; i < next - 1; i++)
                if (jobs[i].out >= 0) close_fds[nc++] = jobs[i].out;
            j->out = open_output();
            j->start = slm_now_ns();
            j->pid = j->out < 0 ? -1 : start_one(j->tc, timeout, j->out, close_fds, nc);
            if (j->pid < 0) {
                if (j->out < 0)
                    fprintf(stderr, "# cannot open an output file: %s\n", strerror(errno));
                j->result = 1;
                j->pid = 0;
                j->start = 0;
            } else {
                running++;
            }
        }
        while (printed < n && jobs[printed].result >= 0) {
            struct t_job *j = &jobs[printed++];

            if (j->out >= 0) print_output(j);
            report((unsigned)printed, j->tc, j->result, j->start, times, passed, failed, skipped);
        }
        if (running == 0) continue;
        pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "# waitpid: %s\n", strerror(errno));
            break;
        }
        for (size_t i = printed; i < next; i++) {
            struct t_job *j = &jobs[i];

            if (j->pid != pid) continue;
            j->start = slm_now_ns() - j->start;
            j->pid = 0;
            running--;
            fflush(stdout);
            /* child_result's message belongs with the test's own output. */
            if (WIFSIGNALED(status) && j->out >= 0) {
                int saved = dup(STDERR_FILENO);

                fflush(stderr);
                dup2(j->out, STDERR_FILENO);
                j->result = child_result(pid, status);
                fflush(stderr);
                if (saved >= 0) {
                    dup2(saved, STDERR_FILENO);
                    close(saved);
                }
            } else {
                j->result = child_result(pid, status);
            }
            break;
        }
    }
}

int main(int argc, char **argv)
{
    size_t n = (size_t)(__stop_slm_tests - __start_slm_tests), n_sel = 0;
    const struct t_case **cases = calloc(n == 0 ? 1 : n, sizeof(*cases));
    struct t_job *jobs = calloc(n == 0 ? 1 : n, sizeof(*jobs));
    const char *filter = t_env("T_FILTER", NULL);
    const char *exclude = t_env("T_EXCLUDE", NULL);
    uint64_t timeout = 60, mult = 1, max_jobs = 1;
    unsigned passed = 0, failed = 0, skipped = 0, num = 0;
    bool times = t_env("T_TIMES", NULL) != NULL;

    if (argc > 1) filter = argv[1];
    if (cases == NULL || jobs == NULL) return 1;
    if (slm_parse_u64(t_env("T_TIMEOUT", "60"), &timeout) < 0 ||
        slm_parse_u64(t_env("T_TIMEOUT_MULT", "1"), &mult) < 0)
        timeout = 60, mult = 1;
    if (slm_parse_u64(t_env("T_JOBS", "1"), &max_jobs) < 0 || max_jobs == 0) max_jobs = 1;
    for (size_t i = 0; i < n; i++)
        cases[i] = __start_slm_tests[i];
    qsort(cases, n, sizeof(*cases), case_cmp);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < n; i++) {
        const struct t_case *tc = cases[i];

        if (filter != NULL && strstr(tc->name, filter) == NULL && strstr(tc->file, filter) == NULL)
            continue;
        if (exclude != NULL && matches_any(tc->name, exclude)) continue;
        jobs[n_sel++] = (struct t_job){ .tc = tc, .pid = 0, .out = -1, .result = -1 };
    }
    if (max_jobs > 1) {
        run_parallel(jobs, n_sel, (unsigned)max_jobs, (unsigned)(timeout * mult), times, &passed,
                     &failed, &skipped);
        num = (unsigned)n_sel;
    } else {
        for (size_t i = 0; i < n_sel; i++) {
            uint64_t t0 = slm_now_ns();
            int r = run_one(jobs[i].tc, (unsigned)(timeout * mult));

            num++;
            report(num, jobs[i].tc, r, slm_now_ns() - t0, times, &passed, &failed, &skipped);
        }
    }
    printf("1..%u\n", num);
    if (skipped > 0)
        printf("%u passed, %u failed, %u skipped\n", passed, failed, skipped);
    else
        printf("%u passed, %u failed\n", passed, failed);
    free(jobs);
    free(cases);
    return failed > 0 ? 1 : 0;
}
