/*
 * test_loop.c - the event loop: timer order and re-arming, I/O readiness on
 * real sockets, dropping events of watchers stopped mid-iteration, and the
 * cross-thread queue (run under TSan too).
 */
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/str.h"
#include "harness/t.h"
#include "http/loop.h"

struct fired {
    int order[16];
    int n;
};

struct tagged_timer {
    struct http_timer t;
    struct fired *log;
    int tag;
};

static void on_timer(struct http_loop *loop, struct http_timer *t)
{
    struct tagged_timer *tt = t->data;

    (void)loop;
    tt->log->order[tt->log->n++] = tt->tag;
}

TEST(http_loop_timers_fire_in_deadline_order)
{
    struct http_loop *loop;
    struct fired log = { { 0 }, 0 };
    struct tagged_timer tt[6];
    static const uint64_t delay[6] = { 60, 20, 40, 20, 10, 30 };
    uint64_t t0;

    ASSERT_OK(http_loop_new(&loop));
    for (int i = 0; i < 6; i++) {
        tt[i].log = &log;
        tt[i].tag = i;
        http_timer_init(&tt[i].t, on_timer, &tt[i]);
        ASSERT_OK(http_timer_start(loop, &tt[i].t, delay[i]));
    }
    /* Stopping removes a timer; re-arming moves it. */
    http_timer_stop(loop, &tt[5].t);
    ASSERT(!http_timer_active(&tt[5].t));
    ASSERT_OK(http_timer_start(loop, &tt[0].t, 5));
    t0 = slm_now_ns();
    while (log.n < 5)
        ASSERT_OK(http_loop_run_once(loop, 1000));
    ASSERT((slm_now_ns() - t0) / 1000000u >= 35);
    /* 0 (5 ms), 4 (10), 1 and 3 (20, in start order), 2 (40). */
    ASSERT_EQ_INT(log.order[0], 0);
    ASSERT_EQ_INT(log.order[1], 4);
    ASSERT_EQ_INT(log.order[2], 1);
    ASSERT_EQ_INT(log.order[3], 3);
    ASSERT_EQ_INT(log.order[4], 2);
    for (int i = 0; i < 6; i++)
        ASSERT(!http_timer_active(&tt[i].t));
    http_loop_free(loop);
}

/* Many timers in random order come out sorted (heap invariants). */
TEST(http_loop_timer_heap_many)
{
    enum { N = 2000 };
    struct http_loop *loop;
    static struct http_timer t[N];
    static uint64_t dl[N];
    uint64_t base;

    ASSERT_OK(http_loop_new(&loop));
    base = http_loop_now_ms(loop) + 1000000;
    for (size_t i = 0; i < N; i++) {
        http_timer_init(&t[i], NULL, NULL);
        dl[i] = base + (i * 7919u) % 1000u;
        ASSERT_OK(http_timer_start_at(loop, &t[i], dl[i]));
    }
    for (size_t i = 0; i < N; i += 3)
        http_timer_stop(loop, &t[i]);
    for (size_t i = 0; i < N; i += 3)
        ASSERT_OK(http_timer_start_at(loop, &t[i], dl[i]));
    /* Drain by stopping the earliest each time: the sequence never decreases. */
    {
        uint64_t prev = 0;

        for (size_t k = 0; k < N; k++) {
            struct http_timer *min = NULL;

            for (size_t i = 0; i < N; i++)
                if (http_timer_active(&t[i]) && t[i].heap_index == 0) min = &t[i];
            ASSERT_NOT_NULL(min);
            ASSERT(min->deadline_ms >= prev);
            prev = min->deadline_ms;
            http_timer_stop(loop, min);
        }
    }
    http_loop_free(loop);
}

struct io_state {
    struct http_io io;
    struct http_io *other;
    int calls;
    unsigned events;
    char got[16];
};

static void on_read(struct http_loop *loop, struct http_io *io, unsigned events)
{
    struct io_state *s = io->data;
    ssize_t n = read(io->fd, s->got, sizeof(s->got) - 1);

    s->calls++;
    s->events = events;
    if (n > 0) s->got[n] = '\0';
    if (s->other != NULL) http_io_stop(loop, s->other);
}

TEST(http_loop_io_readiness_on_socketpair)
{
    struct http_loop *loop;
    struct io_state s;
    int sv[2];

    memset(&s, 0, sizeof(s));
    ASSERT_OK(http_loop_new(&loop));
    ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    http_io_init(&s.io, sv[0], on_read, &s);
    ASSERT_OK(http_io_start(loop, &s.io, HTTP_IO_READ));
    ASSERT_OK(http_loop_run_once(loop, 20));
    ASSERT_EQ_INT(s.calls, 0);
    ASSERT(write(sv[1], "ping", 4) == 4);
    ASSERT_OK(http_loop_run_once(loop, 1000));
    ASSERT_EQ_INT(s.calls, 1);
    ASSERT_EQ_INT(s.events, HTTP_IO_READ);
    ASSERT_EQ_STR(s.got, "ping");
    /* Writable interest is reported once added; hang-up shows as READ (EOF). */
    ASSERT_OK(http_io_start(loop, &s.io, HTTP_IO_READ | HTTP_IO_WRITE));
    close(sv[1]);
    ASSERT_OK(http_loop_run_once(loop, 1000));
    ASSERT_EQ_INT(s.calls, 2);
    ASSERT(s.events & HTTP_IO_READ);
    http_io_stop(loop, &s.io);
    close(sv[0]);
    http_loop_free(loop);
}

/* A callback that stops another watcher with a pending event drops that event. */
TEST(http_loop_stopped_watcher_gets_no_pending_event)
{
    struct http_loop *loop;
    struct io_state a, b;
    int p[2], q[2];

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    ASSERT_OK(http_loop_new(&loop));
    ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p) == 0);
    ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, q) == 0);
    http_io_init(&a.io, p[0], on_read, &a);
    http_io_init(&b.io, q[0], on_read, &b);
    a.other = &b.io;
    b.other = &a.io;
    ASSERT_OK(http_io_start(loop, &a.io, HTTP_IO_READ));
    ASSERT_OK(http_io_start(loop, &b.io, HTTP_IO_READ));
    ASSERT(write(p[1], "a", 1) == 1);
    ASSERT(write(q[1], "b", 1) == 1);
    ASSERT_OK(http_loop_run_once(loop, 1000));
    ASSERT_EQ_INT(a.calls + b.calls, 1);
    http_io_stop(loop, &a.io);
    http_io_stop(loop, &b.io);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
    http_loop_free(loop);
}

struct post_state {
    struct http_loop *loop;
    struct http_task tasks[1000];
    int seen[1000];
    int n_seen;
    int in_order;
    int delay_ms;
};

static void on_task(struct http_loop *loop, struct http_task *task)
{
    struct post_state *s = task->data;
    int idx = (int)(task - s->tasks);

    (void)loop;
    if (s->n_seen != idx) s->in_order = 0;
    s->seen[idx]++;
    s->n_seen++;
}

static void *poster(void *arg)
{
    struct post_state *s = arg;
    struct timespec ts = { 0, (long)s->delay_ms * 1000000L };

    nanosleep(&ts, NULL);
    for (int i = 0; i < 1000; i++) {
        s->tasks[i].cb = on_task;
        s->tasks[i].data = s;
        if (http_loop_post(s->loop, &s->tasks[i]) < 0) return (void *)1;
    }
    return NULL;
}

/* Engine threads hand results back through the queue: FIFO, every task once. */
TEST(http_loop_cross_thread_queue_wakes_the_loop)
{
    static struct post_state s;
    pthread_t th;
    uint64_t t0;
    void *ret;

    memset(&s, 0, sizeof(s));
    s.in_order = 1;
    s.delay_ms = 50;
    ASSERT_OK(http_loop_new(&s.loop));
    t0 = slm_now_ns();
    ASSERT(pthread_create(&th, NULL, poster, &s) == 0);
    /* No timers, no fds: only the eventfd can end this 10 s wait early. */
    while (s.n_seen < 1000)
        ASSERT_OK(http_loop_run_once(s.loop, 10000));
    ASSERT((slm_now_ns() - t0) / 1000000u < 5000);
    ASSERT(pthread_join(th, &ret) == 0);
    ASSERT_NULL(ret);
    ASSERT(s.in_order);
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ_INT(s.seen[i], 1);
    http_loop_free(s.loop);
}

static void on_stop_timer(struct http_loop *loop, struct http_timer *t)
{
    (void)t;
    http_loop_stop(loop);
}

static void on_rearm_zero(struct http_loop *loop, struct http_timer *t)
{
    int *n = t->data;

    /* Re-arming at 0 ms must not run again in this same iteration. */
    if (++*n < 1000) ASSERT_OK(http_timer_start(loop, t, 0));
}

TEST(http_loop_run_stop_and_zero_timeout_timers)
{
    struct http_loop *loop;
    struct http_timer stop, rearm;
    int n = 0;

    ASSERT_OK(http_loop_new(&loop));
    http_timer_init(&stop, on_stop_timer, NULL);
    http_timer_init(&rearm, on_rearm_zero, &n);
    ASSERT_OK(http_timer_start(loop, &rearm, 0));
    ASSERT_OK(http_loop_run_once(loop, 0));
    ASSERT_EQ_INT(n, 1);
    ASSERT_OK(http_timer_start(loop, &stop, 30));
    ASSERT_OK(http_loop_run(loop));
    ASSERT(n > 1);
    http_timer_stop(loop, &rearm);
    http_loop_free(loop);
}

/* Tasks still queued when the loop is freed run (so their memory is released). */
TEST(http_loop_free_runs_pending_tasks)
{
    static struct post_state s;

    memset(&s, 0, sizeof(s));
    s.in_order = 1;
    ASSERT_OK(http_loop_new(&s.loop));
    ASSERT(poster(&s) == NULL);
    http_loop_free(s.loop);
    ASSERT_EQ_INT(s.n_seen, 1000);
    ASSERT(s.in_order);
}
