/*
 * pool.c - the engine's thread pool (see pool.h).
 *
 * Hand-off protocol. The caller publishes (fn, arg) and a join word for the
 * new generation, then increments gen; a worker that sees gen change joins
 * the job by incrementing the join word's count (only while the word still
 * names that generation and is open), runs fn and increments finished. The
 * caller runs fn itself, then closes the join word and waits only for the
 * workers that joined: a worker the OS has not scheduled yet (two cores
 * shared with other processes) never delays the caller, it simply skips
 * the job; dynamic chunks (pool_chunks) let the threads that are running
 * take all the work.
 * Both waits spin for a bounded time and then block on a condition variable.
 * Lost wake-ups are excluded by a Dekker pair of sequentially consistent
 * operations: the waker stores the new state and then loads the sleeper count;
 * the sleeper stores its count (under the mutex) and then loads the state. In
 * the single total order one of them sees the other's store, and the waker
 * takes the mutex before broadcasting, so a sleeper between its check and
 * pthread_cond_wait cannot miss the signal.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/str.h"
#include "engine/pool.h"

/* How long an idle thread spins before sleeping (decode latency vs idle CPU). */
#define POOL_SPIN_NS 50000u

struct pool;

struct pool_worker {
    struct pool *pool;
    unsigned ith;
    pthread_t thread;
};

struct pool {
    unsigned n_threads;
    unsigned n_started;
    struct pool_worker *workers;
    /* The job: written by the caller before gen is incremented, read after. */
    pool_fn *fn;
    void *arg;
    atomic_uint gen;
    /* bits 63..33: generation, bit 32: closed, bits 31..0: workers joined */
    _Atomic uint64_t join;
    atomic_uint finished;
    atomic_bool stop;
    atomic_int n_sleeping;
    atomic_int caller_sleeping;
    pthread_mutex_t mutex;
    pthread_cond_t wake; /* workers wait here for gen to change */
    pthread_cond_t done; /* the caller waits here for finished == joined */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Waits until gen differs from seen; returns the new value. */
static unsigned wait_gen(struct pool *p, unsigned seen)
{
    unsigned g;
    uint64_t t0 = 0;

    for (unsigned i = 0;; i++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
        if ((i & 63) == 63) {
            uint64_t now = slm_now_ns();
            if (t0 == 0)
                t0 = now;
            else if (now - t0 > POOL_SPIN_NS)
                break;
        }
    }
    pthread_mutex_lock(&p->mutex);
    atomic_fetch_add(&p->n_sleeping, 1);
    while ((g = atomic_load(&p->gen)) == seen)
        pthread_cond_wait(&p->wake, &p->mutex);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mutex);
    return g;
}

#define JOIN_CLOSED (1ull << 32)
#define GEN_MASK    0x7fffffffu

/* Waits until the workers that joined the current job have finished it. */
static void wait_done(struct pool *p, unsigned joined)
{
    uint64_t t0 = 0;

    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(&p->finished, memory_order_acquire) == joined) return;
        cpu_relax();
        if ((i & 63) == 63) {
            uint64_t now = slm_now_ns();
            if (t0 == 0)
                t0 = now;
            else if (now - t0 > POOL_SPIN_NS)
                break;
        }
    }
    pthread_mutex_lock(&p->mutex);
    atomic_store(&p->caller_sleeping, 1);
    while (atomic_load(&p->finished) != joined)
        pthread_cond_wait(&p->done, &p->mutex);
    atomic_store(&p->caller_sleeping, 0);
    pthread_mutex_unlock(&p->mutex);
}

static void *worker_main(void *v)
{
    struct pool_worker *w = v;
    struct pool *p = w->pool;
    unsigned seen = 0;

    for (;;) {
        uint64_t j;
        bool joined = false;

        seen = wait_gen(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        j = atomic_load(&p->join);
        while ((j >> 33) == seen && (j & JOIN_CLOSED) == 0 && !joined)
            joined = atomic_compare_exchange_weak(&p->join, &j, j + 1);
        if (!joined) continue; /* too late: the caller did the work */
        p->fn(p->arg, w->ith, p->n_threads);
        atomic_fetch_add(&p->finished, 1);
        if (atomic_load(&p->caller_sleeping) != 0) {
            pthread_mutex_lock(&p->mutex);
            pthread_cond_broadcast(&p->done);
            pthread_mutex_unlock(&p->mutex);
        }
    }
    return NULL;
}

/*
 * Creates a pool of n_threads threads: the caller of pool_run plus
 * n_threads - 1 workers. Returns 0 and new in *out, SLM_EINVAL for a count
 * outside 1 .. SLM_LIMIT_THREADS, SLM_ENOMEM, or SLM_EIO if a thread could
 * not be started (message in d).
 */
int pool_new(unsigned n_threads, struct pool **out, struct slm_diag *d)
{
    struct pool *p;
    int rc;

    *out = NULL;
    if (n_threads < 1 || n_threads > SLM_LIMIT_THREADS)
        return slm_diag_set(d, SLM_EINVAL, "thread count %u outside 1..%u", n_threads,
                            SLM_LIMIT_THREADS);
    p = slm_calloc(1, sizeof(*p));
    if (p == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory for the thread pool");
    p->n_threads = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->join, JOIN_CLOSED);
    atomic_init(&p->finished, 0);
    atomic_init(&p->stop, false);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->caller_sleeping, 0);
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->workers = slm_calloc(n_threads - 1, sizeof(*p->workers));
        if (p->workers == NULL) {
            pool_free(p);
            return slm_diag_set(d, SLM_ENOMEM, "out of memory for %u pool threads", n_threads);
        }
    }
    for (unsigned i = 0; i + 1 < n_threads; i++) {
        struct pool_worker *w = &p->workers[i];

        w->pool = p;
        w->ith = i + 1;
        rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            pool_free(p);
            return slm_diag_set(d, SLM_EIO, "cannot start pool thread %u of %u: %s", i + 1,
                                n_threads, strerror(rc));
        }
        p->n_started++;
    }
    *out = p;
    return 0;
}

/* Stops and joins every started worker and frees the pool; NULL is a no-op. */
void pool_free(struct pool *p)
{
    if (p == NULL) return;
    pthread_mutex_lock(&p->mutex);
    atomic_store(&p->stop, true);
    atomic_store(&p->gen, (atomic_load(&p->gen) + 1) & GEN_MASK);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    for (unsigned i = 0; i < p->n_started; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mutex);
    slm_free(p->workers);
    slm_free(p);
}

/* Returns the number of threads (caller included). */
unsigned pool_n_threads(const struct pool *p)
{
    return p->n_threads;
}

/*
 * Runs fn(arg, ith, nth) on the caller (ith 0) and on every worker that
 * wakes up before the caller has finished its own call (see pool.h), and
 * returns when all of those calls have returned. fn and arg are borrowed for
 * the call; writes made by fn on any thread are visible to the caller
 * afterwards.
 */
void pool_run(struct pool *p, pool_fn *fn, void *arg)
{
    unsigned g;
    uint64_t old;

    if (p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    g = (atomic_load_explicit(&p->gen, memory_order_relaxed) + 1) & GEN_MASK;
    atomic_store(&p->finished, 0);
    atomic_store(&p->join, (uint64_t)g << 33);
    atomic_store(&p->gen, g);
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mutex);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mutex);
    }
    fn(arg, 0, p->n_threads);
    old = atomic_fetch_or(&p->join, JOIN_CLOSED);
    wait_done(p, (unsigned)(old & 0xffffffffu));
}

/* Resets c to hand out [0, n) in chunks of chunk (>= 1) elements. */
void pool_chunks_init(struct pool_chunks *c, size_t n, size_t chunk)
{
    atomic_init(&c->next, 0);
    c->n = n;
    c->chunk = chunk > 0 ? chunk : 1;
}

/* Claims the next chunk into [*begin, *end); false when none is left. */
bool pool_chunk_next(struct pool_chunks *c, size_t *begin, size_t *end)
{
    size_t b = atomic_fetch_add_explicit(&c->next, c->chunk, memory_order_relaxed);

    if (b >= c->n) return false;
    *begin = b;
    *end = c->n - b < c->chunk ? c->n : b + c->chunk;
    return true;
}

/*
 * Returns the number of distinct physical cores (package, core id) among the
 * CPUs this process may run on; the CPU count if sysfs does not say; at least
 * 1 and at most SLM_LIMIT_THREADS.
 */
unsigned pool_default_threads(void)
{
    cpu_set_t set;
    long seen[256];
    unsigned n_seen = 0;
    char path[96];

    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n < 1 ? 1 : (n > (long)SLM_LIMIT_THREADS ? SLM_LIMIT_THREADS : (unsigned)n);
    }
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        long core, pkg, key;
        bool dup = false;

        if (!CPU_ISSET(cpu, &set)) continue;
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        core = slm_read_file_long(path, 1000000);
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/topology/physical_package_id",
                 cpu);
        pkg = slm_read_file_long(path, 1000000);
        if (core < 0 || pkg < 0 || n_seen == SLM_ARRAY_LEN(seen)) {
            n_seen = 0;
            break;
        }
        key = pkg * 1000001 + core;
        for (unsigned i = 0; i < n_seen && !dup; i++)
            dup = seen[i] == key;
        if (!dup) seen[n_seen++] = key;
    }
    if (n_seen == 0) n_seen = (unsigned)CPU_COUNT(&set);
    if (n_seen < 1) n_seen = 1;
    return n_seen > SLM_LIMIT_THREADS ? SLM_LIMIT_THREADS : n_seen;
}
