/*
 * alloc.c - heap wrappers with fault injection (see alloc.h).
 */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t alloc_fail_at;
static _Atomic uint64_t alloc_count;

/* Arms fault injection (0 disarms it) and resets the counter. */
void slm_alloc_fail_at(uint64_t n)
{
    atomic_store(&alloc_fail_at, n);
    atomic_store(&alloc_count, 0);
}

/* Returns the number of allocations attempted since slm_alloc_fail_at. */
uint64_t slm_alloc_count(void)
{
    return atomic_load(&alloc_count);
}

/* Counts one allocation; returns true if it must fail. */
static bool alloc_should_fail(void)
{
    uint64_t n = atomic_fetch_add(&alloc_count, 1) + 1;
    uint64_t at = atomic_load(&alloc_fail_at);

    return at != 0 && n >= at;
}

/* malloc(size), or NULL (also for the injected failure). */
void *slm_malloc(size_t size)
{
    if (alloc_should_fail()) return NULL;
    return malloc(size == 0 ? 1 : size);
}

/* calloc(n, size) with overflow check, or NULL. */
void *slm_calloc(size_t n, size_t size)
{
    size_t total;

    if (!slm_mul_size(n, size, &total) || alloc_should_fail()) return NULL;
    return calloc(total == 0 ? 1 : total, 1);
}

/* realloc(p, size), or NULL with p untouched. */
void *slm_realloc(void *p, size_t size)
{
    if (alloc_should_fail()) return NULL;
    return realloc(p, size == 0 ? 1 : size);
}

/* posix_memalign wrapper, or NULL. */
void *slm_aligned_alloc(size_t align, size_t size)
{
    void *p = NULL;

    if (alloc_should_fail()) return NULL;
    if (posix_memalign(&p, align, size == 0 ? align : size) != 0) return NULL;
    return p;
}

/* free(p); p may be NULL. */
void slm_free(void *p)
{
    free(p);
}

/* Returns a new NUL-terminated copy of s[0..len), or NULL. */
char *slm_strndup(const char *s, size_t len)
{
    size_t size;
    char *p;

    if (!slm_add_size(len, 1, &size)) return NULL;
    p = slm_malloc(size);
    if (p == NULL) return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* Returns a new copy of s, or NULL. */
char *slm_strdup(const char *s)
{
    return slm_strndup(s, strlen(s));
}

/* Logs the failed size and exits: for CLI and start-up paths only. */
SLM_NORETURN static void alloc_die(size_t size)
{
    fprintf(stderr, "slm: out of memory allocating %zu bytes\n", size);
    exit(SLM_EXIT_RUNTIME);
}

void *slm_xmalloc(size_t size)
{
    void *p = slm_malloc(size);

    if (p == NULL) alloc_die(size);
    return p;
}

void *slm_xcalloc(size_t n, size_t size)
{
    void *p = slm_calloc(n, size);

    if (p == NULL) alloc_die(n * size);
    return p;
}

void *slm_xrealloc(void *p, size_t size)
{
    void *q = slm_realloc(p, size);

    if (q == NULL) alloc_die(size);
    return q;
}

char *slm_xstrdup(const char *s)
{
    char *p = slm_strdup(s);

    if (p == NULL) alloc_die(strlen(s) + 1);
    return p;
}

/* Doubles *p's capacity from min_cap until need elements fit. */
int slm_grow_array(void **p, size_t *cap, size_t need, size_t elem, size_t min_cap)
{
    size_t n = *cap != 0 ? *cap : min_cap, bytes;
    void *q;

    if (need <= *cap) return 0;
    if (n == 0) n = 1;
    while (n < need)
        if (!slm_mul_size(n, 2, &n)) return SLM_ENOMEM;
    if (!slm_mul_size(n, elem, &bytes)) return SLM_ENOMEM;
    q = slm_realloc(*p, bytes);
    if (q == NULL) return SLM_ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

/* Wipes and frees a secret buffer. */
void slm_free_secret(void *p, size_t len)
{
    if (p == NULL) return;
    explicit_bzero(p, len);
    free(p);
}
