/*
 * pool.h - the engine's thread pool: n_threads - 1 workers plus the caller.
 *
 * One operation, pool_run: the caller (as thread 0) and every worker that
 * wakes up in time (as 1 .. n-1) call fn(arg, ith, nth) once, and pool_run
 * returns when all of those calls have returned (a barrier-style
 * parallel-for, as ggml's graph compute uses it per node). A worker that
 * the OS has not scheduled by the time the caller finished its own call
 * skips that job, so a descheduled thread on a shared machine never stalls
 * the caller; therefore fn must split its work dynamically with a counter
 * (pool_chunks), never statically by ith. ith is unique among the threads
 * running one job and may index per-thread scratch.
 *
 * Idle workers spin briefly (decode latency: the next matmul usually follows
 * within microseconds) and then sleep on a condition variable, so an idle
 * server uses no CPU. All hand-offs are C11 atomics with acquire/release
 * order plus a mutex/condvar for sleeping: TSan understands both.
 *
 * Ownership: pool_new returns new (pool_free joins the workers and frees).
 * Thread safety: one thread at a time calls pool_run on a given pool; fn must
 * not call pool_run on the same pool.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

typedef void pool_fn(void *arg, unsigned ith, unsigned nth);

struct pool;

/* Starts n_threads - 1 workers (n_threads >= 1). Returns new in *out. */
SLM_NODISCARD int pool_new(unsigned n_threads, struct pool **out, struct slm_diag *d);
/* Stops and joins the workers; NULL is a no-op. */
void pool_free(struct pool *p);
unsigned pool_n_threads(const struct pool *p);
/* Runs fn(arg, ith, nth) on every thread of the pool and waits for all. */
void pool_run(struct pool *p, pool_fn *fn, void *arg);

/*
 * A dynamic work counter for one pool_run: reset it before pool_run, then
 * every thread claims chunks [*begin, *end) of [0, n) of size chunk until it
 * returns false.
 */
struct pool_chunks {
    atomic_size_t next;
    size_t n;
    size_t chunk;
};

void pool_chunks_init(struct pool_chunks *c, size_t n, size_t chunk);
bool pool_chunk_next(struct pool_chunks *c, size_t *begin, size_t *end);

/* The number of physical cores this process may run on (>= 1). */
unsigned pool_default_threads(void);
