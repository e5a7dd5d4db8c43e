/*
 * test_pool.c - the engine thread pool: every thread runs each job once,
 * results are visible to the caller, chunks cover a range exactly once,
 * idle workers sleep, and bad thread counts are refused.
 */
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "engine/pool.h"
#include "harness/t.h"

struct count_job {
    atomic_uint calls;
    unsigned seen[16];
    uint64_t out[16];
};

static void count_fn(void *arg, unsigned ith, unsigned nth)
{
    struct count_job *j = arg;

    atomic_fetch_add(&j->calls, 1);
    if (ith < 16 && nth <= 16) {
        j->seen[ith]++;
        j->out[ith] += ith * 1000 + nth;
    }
}

TEST(pool_runs_each_thread_at_most_once)
{
    for (unsigned n = 1; n <= 4; n++) {
        struct pool *p = NULL;
        struct count_job j;

        memset(&j, 0, sizeof(j));
        atomic_init(&j.calls, 0);
        ASSERT_OK(pool_new(n, &p, NULL));
        ASSERT_EQ_INT(pool_n_threads(p), n);
        for (unsigned r = 0; r < 500; r++)
            pool_run(p, count_fn, &j);
        /* The caller always runs; a worker runs a job at most once. */
        ASSERT(atomic_load(&j.calls) >= 500 && atomic_load(&j.calls) <= 500 * n);
        ASSERT_EQ_INT(j.seen[0], 500);
        for (unsigned i = 0; i < n; i++) {
            ASSERT(j.seen[i] <= 500);
            ASSERT_EQ_INT(j.out[i], (uint64_t)j.seen[i] * (i * 1000 + n));
        }
        pool_free(p);
    }
}

struct chunk_job {
    struct pool_chunks chunks;
    uint8_t hit[10007];
};

static void chunk_fn(void *arg, unsigned ith, unsigned nth)
{
    struct chunk_job *j = arg;
    size_t b, e;

    (void)ith;
    (void)nth;
    while (pool_chunk_next(&j->chunks, &b, &e))
        for (size_t i = b; i < e; i++)
            j->hit[i]++;
}

TEST(pool_chunks_cover_range_once)
{
    struct pool *p = NULL;
    static struct chunk_job j;

    ASSERT_OK(pool_new(3, &p, NULL));
    for (size_t chunk = 1; chunk < 300; chunk += 37) {
        memset(j.hit, 0, sizeof(j.hit));
        pool_chunks_init(&j.chunks, sizeof(j.hit), chunk);
        pool_run(p, chunk_fn, &j);
        for (size_t i = 0; i < sizeof(j.hit); i++)
            ASSERT_EQ_INT(j.hit[i], 1);
    }
    /* An empty range hands out nothing. */
    pool_chunks_init(&j.chunks, 0, 8);
    memset(j.hit, 0, sizeof(j.hit));
    pool_run(p, chunk_fn, &j);
    ASSERT_EQ_INT(j.hit[0], 0);
    pool_free(p);
}

/* CPU time of the whole process in ns. */
static uint64_t process_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

TEST(pool_idle_workers_sleep)
{
    struct pool *p = NULL;
    struct count_job j;
    uint64_t c0, c1;

    memset(&j, 0, sizeof(j));
    ASSERT_OK(pool_new(4, &p, NULL));
    pool_run(p, count_fn, &j);
    usleep(20000); /* past the spin window */
    c0 = process_cpu_ns();
    usleep(300000);
    c1 = process_cpu_ns();
    /* 3 spinning workers would burn ~900 ms of CPU; sleeping ones ~0. */
    ASSERT(c1 - c0 < 30000000ull);
    /* And they wake up again. */
    pool_run(p, count_fn, &j);
    ASSERT(atomic_load(&j.calls) >= 2);
    pool_free(p);
}

TEST(pool_rejects_bad_thread_counts)
{
    struct pool *p = NULL;
    struct slm_diag d;

    ASSERT_ERR(pool_new(0, &p, &d), SLM_EINVAL);
    ASSERT_NULL(p);
    ASSERT(strstr(d.msg, "thread count 0") != NULL);
    ASSERT_ERR(pool_new(100000, &p, &d), SLM_EINVAL);
    pool_free(NULL);
    ASSERT(pool_default_threads() >= 1);
}

struct slow_job {
    struct pool_chunks chunks;
    atomic_uint done;
};

static void slow_fn(void *arg, unsigned ith, unsigned nth)
{
    struct slow_job *j = arg;
    size_t b, e;

    (void)nth;
    while (pool_chunk_next(&j->chunks, &b, &e)) {
        if (ith != 0) usleep(2000); /* a slow worker: the others take more chunks */
        atomic_fetch_add(&j->done, (unsigned)(e - b));
    }
}

/* Dynamic chunks finish the work whatever the speed of each thread. */
TEST(pool_slow_workers_do_not_lose_work)
{
    struct pool *p = NULL;
    struct slow_job j;

    ASSERT_OK(pool_new(3, &p, NULL));
    for (int r = 0; r < 20; r++) {
        atomic_init(&j.done, 0);
        pool_chunks_init(&j.chunks, 1000, 7);
        pool_run(p, slow_fn, &j);
        ASSERT_EQ_INT(atomic_load(&j.done), 1000);
    }
    pool_free(p);
}
