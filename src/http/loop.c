/*
 * loop.c - epoll event loop with a timer heap and an eventfd-woken task queue
 * (see loop.h).
 *
 * Timers live in a binary min-heap ordered by (deadline_ms, seq); each timer
 * knows its heap index, so stop and re-arm are O(log n). Due timers run after
 * I/O in each iteration; a timer armed by a callback with a deadline that is
 * already due waits for the next iteration, so a zero timeout cannot starve
 * I/O.
 *
 * The task queue is a singly linked FIFO protected by queue_lock; posters
 * append and write 1 to the eventfd; the loop swaps the whole list out under
 * the lock and runs it without the lock. This is the only state shared
 * between threads (lock order: queue_lock is the only lock).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/str.h"
#include "http/loop.h"

#define LOOP_EVENTS_MAX 128

struct http_loop {
    int epfd;
    bool stop;
    uint64_t now_ms;
    uint64_t timer_seq;
    /* Timer heap. */
    struct http_timer **heap;
    size_t n_heap;
    size_t heap_cap;
    /* Events of the current iteration, for dropping events of stopped watchers. */
    struct epoll_event events[LOOP_EVENTS_MAX];
    int n_events;
    int i_event;
    /* Cross-thread queue. */
    struct http_io wake_io;
    int wake_fd;
    pthread_mutex_t queue_lock;
    struct http_task *queue_head; /* protected by queue_lock */
    struct http_task *queue_tail; /* protected by queue_lock */
};

static void loop_update_time(struct http_loop *loop)
{
    loop->now_ms = slm_now_ns() / 1000000u;
}

/* Returns the loop's time in ms as of the start of the current iteration. */
uint64_t http_loop_now_ms(const struct http_loop *loop)
{
    return loop->now_ms;
}

/* ---- timer heap ---- */

static bool timer_less(const struct http_timer *a, const struct http_timer *b)
{
    return a->deadline_ms < b->deadline_ms || (a->deadline_ms == b->deadline_ms && a->seq < b->seq);
}

static void heap_set(struct http_loop *loop, size_t i, struct http_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(struct http_loop *loop, size_t i)
{
    struct http_timer *t = loop->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (!timer_less(t, loop->heap[parent])) break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(struct http_loop *loop, size_t i)
{
    struct http_timer *t = loop->heap[i];

    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m;

        if (l >= loop->n_heap) break;
        m = r < loop->n_heap && timer_less(loop->heap[r], loop->heap[l]) ? r : l;
        if (!timer_less(loop->heap[m], t)) break;
        heap_set(loop, i, loop->heap[m]);
        i = m;
    }
    heap_set(loop, i, t);
}

static void heap_remove(struct http_loop *loop, struct http_timer *t)
{
    size_t i = t->heap_index;
    struct http_timer *last = loop->heap[--loop->n_heap];

    t->heap_index = SIZE_MAX;
    if (i == loop->n_heap) return;
    heap_set(loop, i, last);
    heap_down(loop, i);
    heap_up(loop, last->heap_index);
}

/* Prepares a timer; it is inactive until started. */
void http_timer_init(struct http_timer *t, http_timer_cb *cb, void *data)
{
    memset(t, 0, sizeof(*t));
    t->heap_index = SIZE_MAX;
    t->cb = cb;
    t->data = data;
}

bool http_timer_active(const struct http_timer *t)
{
    return t->heap_index != SIZE_MAX;
}

/* Disarms t if it is armed. */
void http_timer_stop(struct http_loop *loop, struct http_timer *t)
{
    if (http_timer_active(t)) heap_remove(loop, t);
}

/* Arms t for the absolute time deadline_ms; returns 0 or SLM_ENOMEM. */
int http_timer_start_at(struct http_loop *loop, struct http_timer *t, uint64_t deadline_ms)
{
    http_timer_stop(loop, t);
    if (loop->n_heap == loop->heap_cap) {
        size_t cap = loop->heap_cap == 0 ? 64 : loop->heap_cap * 2, bytes;
        struct http_timer **h;

        if (!slm_mul_size(cap, sizeof(*h), &bytes)) return SLM_ENOMEM;
        h = slm_realloc(loop->heap, bytes);
        if (h == NULL) return SLM_ENOMEM;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->deadline_ms = deadline_ms;
    t->seq = loop->timer_seq++;
    loop->heap[loop->n_heap] = t;
    t->heap_index = loop->n_heap++;
    heap_up(loop, t->heap_index);
    return 0;
}

/* Arms t to fire timeout_ms after the loop's current time. */
int http_timer_start(struct http_loop *loop, struct http_timer *t, uint64_t timeout_ms)
{
    uint64_t deadline;

    if (!slm_add_u64(loop->now_ms, timeout_ms, &deadline)) deadline = UINT64_MAX;
    return http_timer_start_at(loop, t, deadline);
}

/* Runs the timers that were due when the phase began. */
static void run_timers(struct http_loop *loop)
{
    uint64_t seq_limit = loop->timer_seq;

    while (loop->n_heap > 0) {
        struct http_timer *t = loop->heap[0];

        if (t->deadline_ms > loop->now_ms || t->seq >= seq_limit) break;
        heap_remove(loop, t);
        t->cb(loop, t);
    }
}

/* ---- I/O watchers ---- */

/* Prepares io for fd; not watched until http_io_start. */
void http_io_init(struct http_io *io, int fd, http_io_cb *cb, void *data)
{
    memset(io, 0, sizeof(*io));
    io->fd = fd;
    io->cb = cb;
    io->data = data;
}

/* Adds io to epoll, or changes its event set. */
int http_io_start(struct http_loop *loop, struct http_io *io, unsigned events)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = ((events & HTTP_IO_READ) ? EPOLLIN | EPOLLRDHUP : 0u) |
                ((events & HTTP_IO_WRITE) ? EPOLLOUT : 0u);
    ev.data.ptr = io;
    if (epoll_ctl(loop->epfd, io->active ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return slm_err_from_errno(errno);
    io->active = true;
    io->events = events;
    return 0;
}

/* Removes io from epoll and drops its pending events of this iteration. */
void http_io_stop(struct http_loop *loop, struct http_io *io)
{
    if (!io->active) return;
    /* Cannot fail for a registered fd that is still open; if the caller
     * already closed it, the kernel removed it with the last reference. */
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->active = false;
    io->events = 0;
    for (int i = loop->i_event; i < loop->n_events; i++)
        if (loop->events[i].data.ptr == io) loop->events[i].data.ptr = NULL;
}

/* ---- cross-thread queue ---- */

static void run_tasks(struct http_loop *loop)
{
    struct http_task *t, *next;

    pthread_mutex_lock(&loop->queue_lock);
    t = loop->queue_head;
    loop->queue_head = loop->queue_tail = NULL;
    pthread_mutex_unlock(&loop->queue_lock);
    for (; t != NULL; t = next) {
        next = t->next;
        t->cb(loop, t); /* may free t */
    }
}

static void on_wake(struct http_loop *loop, struct http_io *io, unsigned events)
{
    uint64_t n;

    (void)events;
    /* Resets the counter; EAGAIN means another read already did. */
    if (read(io->fd, &n, sizeof(n)) < 0 && errno != EAGAIN) return;
    run_tasks(loop);
}

/* Queues task for the loop thread and wakes the loop; any thread. */
int http_loop_post(struct http_loop *loop, struct http_task *task)
{
    uint64_t one = 1;

    task->next = NULL;
    pthread_mutex_lock(&loop->queue_lock);
    if (loop->queue_tail != NULL)
        loop->queue_tail->next = task;
    else
        loop->queue_head = task;
    loop->queue_tail = task;
    pthread_mutex_unlock(&loop->queue_lock);
    /* EAGAIN: the counter is saturated, so the loop is awake anyway. */
    if (write(loop->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) return SLM_EIO;
    return 0;
}

/* ---- the loop ---- */

/* Creates a loop; returns 0 and *out, or an error. */
int http_loop_new(struct http_loop **out)
{
    struct http_loop *loop;
    int rc;

    *out = NULL;
    loop = slm_calloc(1, sizeof(*loop));
    if (loop == NULL) return SLM_ENOMEM;
    loop->wake_fd = -1;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        rc = slm_err_from_errno(errno);
        slm_free(loop);
        return rc;
    }
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0) {
        rc = slm_err_from_errno(errno);
        goto fail;
    }
    pthread_mutex_init(&loop->queue_lock, NULL);
    loop_update_time(loop);
    http_io_init(&loop->wake_io, loop->wake_fd, on_wake, NULL);
    rc = http_io_start(loop, &loop->wake_io, HTTP_IO_READ);
    if (rc < 0) {
        pthread_mutex_destroy(&loop->queue_lock);
        goto fail;
    }
    *out = loop;
    return 0;
fail:
    if (loop->wake_fd >= 0) close(loop->wake_fd);
    close(loop->epfd);
    slm_free(loop);
    return rc;
}

/* Runs queued tasks, then frees the loop and its fds. */
void http_loop_free(struct http_loop *loop)
{
    if (loop == NULL) return;
    run_tasks(loop);
    close(loop->wake_fd);
    close(loop->epfd);
    pthread_mutex_destroy(&loop->queue_lock);
    slm_free(loop->heap);
    slm_free(loop);
}

void http_loop_stop(struct http_loop *loop)
{
    loop->stop = true;
}

/* One iteration: wait, dispatch I/O, then due timers. */
int http_loop_run_once(struct http_loop *loop, int timeout_ms)
{
    int n;

    loop_update_time(loop);
    if (loop->n_heap > 0) {
        uint64_t dl = loop->heap[0]->deadline_ms;
        uint64_t wait = dl > loop->now_ms ? dl - loop->now_ms : 0;

        if (timeout_ms < 0 || wait < (uint64_t)timeout_ms)
            timeout_ms = wait > INT32_MAX ? INT32_MAX : (int)wait;
    }
    n = epoll_wait(loop->epfd, loop->events, LOOP_EVENTS_MAX, timeout_ms);
    if (n < 0) {
        if (errno != EINTR) return slm_err_from_errno(errno);
        n = 0;
    }
    loop_update_time(loop);
    loop->n_events = n;
    for (loop->i_event = 0; loop->i_event < loop->n_events;) {
        struct epoll_event *ev = &loop->events[loop->i_event++];
        struct http_io *io = ev->data.ptr;
        unsigned got = 0;

        if (io == NULL) continue; /* its watcher was stopped by an earlier callback */
        if (ev->events & (EPOLLIN | EPOLLRDHUP)) got |= HTTP_IO_READ;
        if (ev->events & EPOLLOUT) got |= HTTP_IO_WRITE;
        if (ev->events & (EPOLLERR | EPOLLHUP)) got |= HTTP_IO_ERROR;
        io->cb(loop, io, got);
    }
    loop->n_events = 0;
    loop->i_event = 0;
    run_timers(loop);
    return 0;
}

/* Runs until http_loop_stop. */
int http_loop_run(struct http_loop *loop)
{
    loop->stop = false;
    while (!loop->stop) {
        int rc = http_loop_run_once(loop, -1);

        if (rc < 0) return rc;
    }
    return 0;
}
