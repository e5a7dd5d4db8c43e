/*
 * alloc.h - the only door to the heap, and overflow-checked size arithmetic.
 *
 * All project code allocates through these functions (tools/lint.sh bans raw
 * malloc/calloc/realloc/free elsewhere) so that tests can make the Nth
 * allocation fail (slm_alloc_fail_at) and check that every caller survives.
 *
 * slm_malloc and friends return NULL on failure and are for paths that must
 * propagate SLM_ENOMEM (the server, loaders). slm_x* log the size and exit(1);
 * they are for short-lived commands and start-up only.
 *
 * Thread safety: all functions are thread-safe; the fault-injection counter is
 * atomic.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

void *slm_malloc(size_t size);
void *slm_calloc(size_t n, size_t size);
void *slm_realloc(void *p, size_t size);
/* size must be a power of two multiple of sizeof(void *); free with slm_free. */
void *slm_aligned_alloc(size_t align, size_t size);
void slm_free(void *p);
/* Returns new copy of the first len bytes of s, NUL-terminated, or NULL. */
char *slm_strndup(const char *s, size_t len);
char *slm_strdup(const char *s);

void *slm_xmalloc(size_t size);
void *slm_xcalloc(size_t n, size_t size);
void *slm_xrealloc(void *p, size_t size);
char *slm_xstrdup(const char *s);

/*
 * Grows the array *p (of *cap elements of elem bytes) to hold at least need
 * elements, doubling from min_cap: 0, or SLM_ENOMEM (overflow included) with
 * *p and *cap untouched. For builders whose size is known only at the end.
 */
SLM_NODISCARD int slm_grow_array(void **p, size_t *cap, size_t need, size_t elem, size_t min_cap);

/* Overwrites len bytes at p with zeros in a way the compiler keeps, then frees. */
void slm_free_secret(void *p, size_t len);

/*
 * Fault injection for tests: after slm_alloc_fail_at(n), the n-th following
 * allocation (1-based) and every later one fail until slm_alloc_fail_at(0).
 * slm_alloc_count() returns how many allocations were attempted since the last
 * call to slm_alloc_fail_at.
 */
void slm_alloc_fail_at(uint64_t n);
uint64_t slm_alloc_count(void);

/* Overflow-checked arithmetic: returns true and stores the result, or false. */
static inline SLM_NODISCARD bool slm_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static inline SLM_NODISCARD bool slm_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline SLM_NODISCARD bool slm_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static inline SLM_NODISCARD bool slm_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
