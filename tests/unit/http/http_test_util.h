/*
 * http_test_util.h - helpers for the http unit tests: a listening socket on
 * 127.0.0.1 with an ephemeral port, forked client processes (fork/exec of
 * curl and openssl, or a function), and running the loop until a child ends.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/loop.h"

/* Returns a non-blocking listening socket on 127.0.0.1 and its port in *port. */
int tu_listen(uint16_t *port);
/* Returns a blocking socket connected to 127.0.0.1:port, or -1. */
int tu_connect(uint16_t port);
/* Forks; the child runs fn(arg) and _exits with its result. Returns the pid. */
pid_t tu_fork(int (*fn)(void *), void *arg);
/* Forks and execs argv with stdin from /dev/null and stdout+stderr to out_path. */
pid_t tu_spawn(const char *const *argv, const char *out_path);
/* Runs the loop until child pid exits (or timeout_ms passes: then kills it).
 * Returns its exit status (0-255), or 1000 + signal number. */
int tu_run_until_exit(struct http_loop *loop, pid_t pid, uint64_t timeout_ms);
/* Reads up to cap - 1 bytes of path into buf (NUL-terminated); returns the length. */
size_t tu_read_file(const char *path, char *buf, size_t cap);
/* Writes len bytes to path. */
void tu_write_file(const char *path, const void *data, size_t len);
/* True if the program is on PATH. */
int tu_have(const char *prog);
