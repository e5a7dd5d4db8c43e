/*
 * loop.h - the server's single-threaded event loop: epoll readiness for
 * non-blocking sockets, a timer heap for deadlines, and a queue through which
 * other threads hand work back to the loop (libuv's uv_async + uv_timer, redis
 * ae), woken by an eventfd.
 *
 * Threading: everything runs on the thread that calls http_loop_run, except
 * http_loop_post, which any thread may call while the loop exists.
 *
 * Ownership: struct http_io, struct http_timer and struct http_task are
 * caller storage; the loop borrows them while they are started / queued and
 * never frees them. A watcher must be stopped before its memory is freed or
 * its fd closed. A callback may start or stop any watcher, including its own
 * and ones whose events are pending in the same iteration (those events are
 * then dropped).
 *
 * Time is a monotonic millisecond clock, read once per iteration
 * (http_loop_now_ms), so all deadlines set in one callback share one "now".
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Event bits for http_io_start and the I/O callback. */
#define HTTP_IO_READ  1u
#define HTTP_IO_WRITE 2u
#define HTTP_IO_ERROR 4u /* hang-up or error: always reported, never requested */

struct http_loop;
struct http_io;
struct http_timer;
struct http_task;

typedef void http_io_cb(struct http_loop *loop, struct http_io *io, unsigned events);
typedef void http_timer_cb(struct http_loop *loop, struct http_timer *timer);
typedef void http_task_cb(struct http_loop *loop, struct http_task *task);

struct http_io {
    int fd;
    unsigned events; /* requested HTTP_IO_READ / HTTP_IO_WRITE */
    bool active;
    http_io_cb *cb;
    void *data; /* for the callback */
};

struct http_timer {
    uint64_t deadline_ms; /* absolute, on the loop's clock */
    uint64_t seq;         /* start order: equal deadlines fire in start order */
    size_t heap_index;    /* SIZE_MAX when not active */
    http_timer_cb *cb;
    void *data;
};

struct http_task {
    struct http_task *next; /* protected by the loop's queue lock */
    http_task_cb *cb;
    void *data;
};

/* Creates a loop (epoll instance, eventfd). Returns 0 and *out (returns new), or an error. */
SLM_NODISCARD int http_loop_new(struct http_loop **out);
/* Runs the callbacks of tasks still queued, then frees the loop. NULL is a no-op.
 * Watchers still started are forgotten (their fds are not closed). */
void http_loop_free(struct http_loop *loop);
/* Runs iterations until http_loop_stop is called. Returns 0 or an error from epoll. */
SLM_NODISCARD int http_loop_run(struct http_loop *loop);
/* Runs one iteration: waits at most timeout_ms (-1: until an event or timer),
 * dispatches I/O, expired timers and queued tasks. Returns 0 or an error. */
SLM_NODISCARD int http_loop_run_once(struct http_loop *loop, int timeout_ms);
/* Makes http_loop_run return after the current iteration (loop thread only). */
void http_loop_stop(struct http_loop *loop);
/* The loop's cached monotonic time in milliseconds. */
uint64_t http_loop_now_ms(const struct http_loop *loop);

/* Prepares io for fd; data is passed back through io->data. */
void http_io_init(struct http_io *io, int fd, http_io_cb *cb, void *data);
/* Watches io for events (HTTP_IO_READ | HTTP_IO_WRITE), or changes the set. */
SLM_NODISCARD int http_io_start(struct http_loop *loop, struct http_io *io, unsigned events);
/* Stops watching io; pending events for it in this iteration are dropped. */
void http_io_stop(struct http_loop *loop, struct http_io *io);

void http_timer_init(struct http_timer *t, http_timer_cb *cb, void *data);
/* (Re)arms t to fire once, timeout_ms after the loop's current time. */
SLM_NODISCARD int http_timer_start(struct http_loop *loop, struct http_timer *t,
                                   uint64_t timeout_ms);
/* (Re)arms t to fire at the absolute time deadline_ms (http_loop_now_ms clock). */
SLM_NODISCARD int http_timer_start_at(struct http_loop *loop, struct http_timer *t,
                                      uint64_t deadline_ms);
/* Disarms t; a no-op when t is not active. */
void http_timer_stop(struct http_loop *loop, struct http_timer *t);
bool http_timer_active(const struct http_timer *t);

/*
 * Queues task (takes: the loop owns it until task->cb runs on the loop thread,
 * which may free it) and wakes the loop. Safe from any thread. Tasks run in
 * the order they were posted. Returns 0, or SLM_EIO if the wake-up failed
 * (the task is still queued and runs at the next iteration).
 */
SLM_NODISCARD int http_loop_post(struct http_loop *loop, struct http_task *task);
