/*
 * t.c - the test runner: fork per test, timeout, TAP output, summary line.
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

static int case_cmp(const void *a, const void *b)
{
    const struct t_case *x = *(const struct t_case *const *)a;
    const struct t_case *y = *(const struct t_case *const *)b;
    int c = strcmp(x->file, y->file);

    return c != 0 ? c : strcmp(x->name, y->name);
}

/* Runs one test in a child; returns 0 pass, 1 fail, 2 skip. */
static int run_one(const struct t_case *tc, unsigned timeout)
{
    pid_t pid;
    int status;

    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "# fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGALRM, SIG_DFL);
        alarm(timeout);
        tc->fn();
        fflush(NULL);
        if (t_dir[0] != '\0') nftw(t_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        /* exit, not _exit: LeakSanitizer checks the test at exit (Z01). */
        exit(0);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return 1;
    }
    kill(-pid, SIGKILL); /* leftovers of the test's own children */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == T_EXIT_SKIP) return 2;
    if (WIFSIGNALED(status))
        fprintf(stderr, "# killed by signal %d%s\n", WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    return 1;
}

int main(int argc, char **argv)
{
    size_t n = (size_t)(__stop_slm_tests - __start_slm_tests);
    const struct t_case **cases = calloc(n == 0 ? 1 : n, sizeof(*cases));
    const char *filter = t_env("T_FILTER", NULL);
    uint64_t timeout = 60, mult = 1;
    unsigned passed = 0, failed = 0, skipped = 0, num = 0;

    if (argc > 1) filter = argv[1];
    if (cases == NULL) return 1;
    if (slm_parse_u64(t_env("T_TIMEOUT", "60"), &timeout) < 0 ||
        slm_parse_u64(t_env("T_TIMEOUT_MULT", "1"), &mult) < 0)
        timeout = 60, mult = 1;
    for (size_t i = 0; i < n; i++)
        cases[i] = __start_slm_tests[i];
    qsort(cases, n, sizeof(*cases), case_cmp);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < n; i++) {
        const struct t_case *tc = cases[i];
        int r;

        if (filter != NULL && strstr(tc->name, filter) == NULL && strstr(tc->file, filter) == NULL)
            continue;
        num++;
        r = run_one(tc, (unsigned)(timeout * mult));
        if (r == 0) {
            passed++;
            printf("ok %u - %s\n", num, tc->name);
        } else if (r == 2) {
            skipped++;
            printf("ok %u - %s # SKIP\n", num, tc->name);
        } else {
            failed++;
            printf("not ok %u - %s (%s)\n", num, tc->name, tc->file);
        }
    }
    printf("1..%u\n", num);
    if (skipped > 0)
        printf("%u passed, %u failed, %u skipped\n", passed, failed, skipped);
    else
        printf("%u passed, %u failed\n", passed, failed);
    free(cases);
    return failed > 0 ? 1 : 0;
}
