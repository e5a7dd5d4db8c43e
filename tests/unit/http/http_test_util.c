/*
 * http_test_util.c - see http_test_util.h.
 */
#include "http_test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/str.h"
#include "harness/t.h"

int tu_listen(uint16_t *port)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    ASSERT(fd >= 0);
    ASSERT(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    ASSERT(listen(fd, 128) == 0);
    ASSERT(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

int tu_connect(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

pid_t tu_fork(int (*fn)(void *), void *arg)
{
    pid_t pid = fork();

    ASSERT(pid >= 0);
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN);
        _exit(fn(arg));
    }
    return pid;
}

pid_t tu_spawn(const char *const *argv, const char *out_path)
{
    pid_t pid = fork();

    ASSERT(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
            _exit(126);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

int tu_run_until_exit(struct http_loop *loop, pid_t pid, uint64_t timeout_ms)
{
    uint64_t t0 = slm_now_ns() / 1000000u;
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        if (r == pid) break;
        ASSERT(r == 0);
        if (slm_now_ns() / 1000000u - t0 > timeout_ms) {
            kill(pid, SIGKILL);
            ASSERT(waitpid(pid, &status, 0) == pid);
            t_fail(__FILE__, __LINE__, "child %d did not finish within %llu ms", (int)pid,
                   (unsigned long long)timeout_ms);
        }
        ASSERT_OK(http_loop_run_once(loop, 20));
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 1000 + WTERMSIG(status);
}

size_t tu_read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    size_t n = 0;

    buf[0] = '\0';
    if (fd < 0) return 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);

        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    return n;
}

void tu_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    ASSERT(fd >= 0);
    ASSERT(write(fd, data, len) == (ssize_t)len);
    close(fd);
}

int tu_have(const char *prog)
{
    char cmd[256];
    const char *path = getenv("PATH");

    if (path == NULL) return 0;
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);

        snprintf(cmd, sizeof(cmd), "%.*s/%s", (int)n, path, prog);
        if (access(cmd, X_OK) == 0) return 1;
        path += n + (colon ? 1 : 0);
    }
    return 0;
}
