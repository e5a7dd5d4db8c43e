/*
 * bandwidth.c - the memory read bandwidth this machine delivers to a reader
 * that streams data it has not seen, as token generation does.
 *
 * Generating one token reads every weight matrix once, so tokens/s can never
 * exceed (read bandwidth) / (bytes of weights read per token). For that
 * quotient to be a bound, the bandwidth must be the most that any reader can
 * pull from memory, not what one simple loop happens to get (a plain
 * streaming loop read 38-39 GB/s here while the engine's packed decode
 * kernels, prefetching 4 KiB ahead, pulled up to 43 GB/s). So the probe
 * times several read patterns a well-written reader could use, and the best
 * of them, per thread count, is the bound:
 *
 * - Sx: each thread reads its slice as S independent sequential streams (S
 *   equal parts of the slice, 256 bytes of each in turn), as a matrix kernel
 *   reading several rows or matrices at once does; 1x is the plain loop;
 * - -t0-D, -t1-D, -nta-D: a software prefetch D bytes ahead of every 64-byte
 *   line read (prefetcht0 into L1 as the engine's kernels do, prefetcht1
 *   into L2, or the non-temporal prefetchnta);
 * - memory: anonymous memory with 4 KiB pages (what malloc gives the
 *   engine's repacked weights: transparent huge pages are "madvise" here), a
 *   2 MiB-aligned buffer with MADV_HUGEPAGE (fewer TLB misses; the probe
 *   reports how much of it the kernel really backed with huge pages), or
 *   with -f a file mapped read-only as the engine maps a model (page-cache
 *   pages).
 *
 * Each pass sums every 64-bit word of the slice with 512-bit adds (256-bit
 * with AVX2, 128-bit otherwise: one vector-extension source compiled per
 * ISA); each thread's sum is compared with a plain scalar sum of its slice
 * computed before timing, so no pattern can skip, repeat or drop a load
 * without the probe failing (exit 1). Buffers are at least 64 MiB (default
 * 1 GiB, 32x this machine's 32 MiB L3), so the caches cannot answer.
 *
 * Each of N threads is pinned to its own CPU, as the engine's pool is. A
 * pass is timed from the moment the first thread starts to the moment the
 * last one finishes. The patterns take turns within each repetition, so
 * load from other processes on a shared machine falls on all of them alike;
 * the best pass of a pattern is its figure (noise only ever slows a pass
 * down), the median is printed too.
 *
 * Built by bench/run.sh into build/bench/bandwidth; not part of `make`:
 *   cc -std=c17 -D_GNU_SOURCE -O2 -Isrc bench/bandwidth.c src/core/str.c \
 *      src/core/alloc.c src/core/err.c -lpthread -o build/bench/bandwidth
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/str.h"

#define BW_SIZE_DEFAULT  (1024ULL << 20) /* 1 GiB: 32x this machine's L3 */
#define BW_SIZE_MIN      (64ULL << 20)   /* below that the caches answer */
#define BW_SIZE_MAX      (64ULL << 30)
#define BW_REPS_DEFAULT  20
#define BW_REPS_MAX      1000
#define BW_THREADS_MAX   256
#define BW_N_THREAD_LIST 16
#define BW_CHUNK         256 /* bytes of one stream per inner step: 4 x 64-byte lines */
#define BW_STREAMS_MAX   16
#define BW_GRAIN         (BW_CHUNK * BW_STREAMS_MAX) /* a thread's slice is a multiple */
#define BW_HUGE_PAGE     (2ULL << 20)

enum bw_isa { BW_ISA_C, BW_ISA_AVX2, BW_ISA_AVX512 };
enum bw_prefetch { BW_PF_NONE, BW_PF_T0, BW_PF_T1, BW_PF_NTA };
enum bw_memory { BW_MEM_4K, BW_MEM_THP, BW_MEM_FILE, BW_MEM_COUNT };

struct bw_pattern {
    const char *name;
    size_t n_streams; /* 1, 2, 4, 8 or 16 */
    enum bw_prefetch prefetch;
    size_t distance; /* prefetch distance in bytes */
};

static const struct bw_pattern bw_patterns[] = {
    { "1x", 1, BW_PF_NONE, 0 },          /* the plain streaming loop (the probe before) */
    { "1x-t0-1k", 1, BW_PF_T0, 1024 },   /* prefetch into L1, 1 KiB ahead */
    { "1x-t0-4k", 1, BW_PF_T0, 4096 },   /* ... 4 KiB: the engine's packed decode kernels */
    { "1x-t0-16k", 1, BW_PF_T0, 16384 }, /* ... 16 KiB */
    { "1x-t1-4k", 1, BW_PF_T1, 4096 },   /* prefetch into L2 only */
    { "1x-nta-4k", 1, BW_PF_NTA, 4096 }, /* non-temporal prefetch (keeps L2 and L3 clean) */
    { "2x", 2, BW_PF_NONE, 0 },          /* 2 streams, hardware prefetchers only */
    { "2x-t0-4k", 2, BW_PF_T0, 4096 },   /* 2 streams, prefetch into L1 */
    { "2x-nta-4k", 2, BW_PF_NTA, 4096 }, /* 2 streams, non-temporal prefetch */
    { "4x", 4, BW_PF_NONE, 0 },          /* 4 streams, hardware prefetchers only */
    { "4x-t0-1k", 4, BW_PF_T0, 1024 },   /* 4 streams, prefetch into L1, 1 KiB ahead */
    { "4x-t0-4k", 4, BW_PF_T0, 4096 },   /* ... 4 KiB ahead */
    { "4x-t1-4k", 4, BW_PF_T1, 4096 },   /* 4 streams, prefetch into L2 */
    { "4x-nta-4k", 4, BW_PF_NTA, 4096 }, /* 4 streams, non-temporal prefetch */
    { "8x", 8, BW_PF_NONE, 0 },          /* 8 streams, hardware prefetchers only */
    { "8x-t0-4k", 8, BW_PF_T0, 4096 },   /* 8 streams, prefetch into L1 */
    { "8x-nta-4k", 8, BW_PF_NTA, 4096 }, /* 8 streams, non-temporal prefetch */
    { "16x", 16, BW_PF_NONE, 0 },        /* 16 streams: more than the prefetchers track */
};
#define BW_N_PATTERNS (sizeof(bw_patterns) / sizeof(bw_patterns[0]))

static const char *const bw_memory_names[BW_MEM_COUNT] = { "4k", "thp", "file" };

/* 64 bytes as eight 64-bit lanes: one zmm, two ymm or four xmm registers. */
typedef uint64_t bw_v8 __attribute__((vector_size(64)));

#define BW_INLINE static inline __attribute__((always_inline))

/*
 * Sums the 64-bit words of p[0..len) (len a multiple of n_streams *
 * BW_CHUNK), read as n_streams sequential streams of len / n_streams bytes,
 * 256 bytes of each in turn, with a prefetch `distance` bytes ahead of each
 * 64-byte line when pf says so. Prefetches past the end are harmless hints.
 * Inlined into one function per ISA and per prefetch kind, so the prefetch
 * choice is a constant there.
 */
BW_INLINE uint64_t bw_sum_streams(const uint8_t *p, size_t len, size_t n_streams,
                                  enum bw_prefetch pf, size_t distance)
{
    size_t stride = len / n_streams;
    bw_v8 a0 = { 0 }, a1 = a0, a2 = a0, a3 = a0;

    for (size_t i = 0; i < stride; i += BW_CHUNK) {
        for (size_t s = 0; s < n_streams; s++) {
            const uint8_t *q = p + s * stride + i;
            bw_v8 v0, v1, v2, v3;
            if (pf == BW_PF_T0) {
                __builtin_prefetch(q + distance, 0, 3);
                __builtin_prefetch(q + distance + 64, 0, 3);
                __builtin_prefetch(q + distance + 128, 0, 3);
                __builtin_prefetch(q + distance + 192, 0, 3);
            } else if (pf == BW_PF_T1) {
                __builtin_prefetch(q + distance, 0, 2);
                __builtin_prefetch(q + distance + 64, 0, 2);
                __builtin_prefetch(q + distance + 128, 0, 2);
                __builtin_prefetch(q + distance + 192, 0, 2);
            } else if (pf == BW_PF_NTA) {
                __builtin_prefetch(q + distance, 0, 0);
                __builtin_prefetch(q + distance + 64, 0, 0);
                __builtin_prefetch(q + distance + 128, 0, 0);
                __builtin_prefetch(q + distance + 192, 0, 0);
            }
            memcpy(&v0, q, 64);
            memcpy(&v1, q + 64, 64);
            memcpy(&v2, q + 128, 64);
            memcpy(&v3, q + 192, 64);
            a0 += v0;
            a1 += v1;
            a2 += v2;
            a3 += v3;
        }
    }
    bw_v8 a = (a0 + a1) + (a2 + a3);
    uint64_t sum = 0;
    for (size_t k = 0; k < 8; k++)
        sum += a[k];
    return sum;
}

#define BW_SUM_FN(name, attr)                                                             \
    attr static uint64_t name(const uint8_t *p, size_t len, const struct bw_pattern *pat) \
    {                                                                                     \
        switch (pat->prefetch) {                                                          \
        case BW_PF_T0:                                                                    \
            return bw_sum_streams(p, len, pat->n_streams, BW_PF_T0, pat->distance);       \
        case BW_PF_T1:                                                                    \
            return bw_sum_streams(p, len, pat->n_streams, BW_PF_T1, pat->distance);       \
        case BW_PF_NTA:                                                                   \
            return bw_sum_streams(p, len, pat->n_streams, BW_PF_NTA, pat->distance);      \
        default:                                                                          \
            return bw_sum_streams(p, len, pat->n_streams, BW_PF_NONE, 0);                 \
        }                                                                                 \
    }

BW_SUM_FN(bw_sum_c, )
#if defined(__x86_64__)
BW_SUM_FN(bw_sum_avx2, __attribute__((target("avx2"))))
BW_SUM_FN(bw_sum_avx512, __attribute__((target("avx512f"))))
#endif

/* The reference the timed passes are checked against: a plain word loop. */
static uint64_t bw_sum_ref(const uint8_t *p, size_t len)
{
    uint64_t sum = 0;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        sum += w;
    }
    return sum;
}

static enum bw_isa bw_isa_detect(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return BW_ISA_AVX512;
    if (__builtin_cpu_supports("avx2")) return BW_ISA_AVX2;
#endif
    return BW_ISA_C;
}

static const char *bw_isa_name(enum bw_isa isa)
{
    switch (isa) {
    case BW_ISA_AVX512:
        return "avx512";
    case BW_ISA_AVX2:
        return "avx2";
    default:
        return "c";
    }
}

static uint64_t bw_sum(enum bw_isa isa, const uint8_t *p, size_t len, const struct bw_pattern *pat)
{
#if defined(__x86_64__)
    if (isa == BW_ISA_AVX512) return bw_sum_avx512(p, len, pat);
    if (isa == BW_ISA_AVX2) return bw_sum_avx2(p, len, pat);
#endif
    (void)isa;
    return bw_sum_c(p, len, pat);
}

/* ---- buffers ---- */

struct bw_buffer {
    uint8_t *data; /* 2 MiB-aligned for BW_MEM_THP */
    size_t size;   /* bytes measured */
    void *map;     /* what to munmap */
    size_t map_size;
    enum bw_memory memory;
    long huge_kib; /* of it in huge pages (BW_MEM_THP), else -1 */
};

/* Kibibytes of the process's anonymous memory in huge pages, or -1. */
static long bw_anon_huge_kib(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long kib = -1;
    if (!f) return -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "AnonHugePages:", 14) != 0) continue;
        char *end;
        kib = strtol(line + 14, &end, 10);
        break;
    }
    fclose(f);
    return kib;
}

/*
 * Maps size bytes of anonymous memory, 4 KiB pages or (thp) 2 MiB-aligned
 * with MADV_HUGEPAGE, and fills every 64-bit word with a different value, so
 * that reading a wrong line changes the sum and every page is faulted in
 * before timing. Returns 0, or -1 after printing why.
 */
static int bw_buffer_anon(struct bw_buffer *b, size_t size, enum bw_memory memory)
{
    size_t extra = memory == BW_MEM_THP ? BW_HUGE_PAGE : 0;
    long huge_before = bw_anon_huge_kib();
    uint8_t *map =
        mmap(NULL, size + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "bandwidth: cannot map %zu bytes: %s\n", size, strerror(errno));
        return -1;
    }
    uint8_t *data = map;
    if (memory == BW_MEM_THP) {
        data = (uint8_t *)(((uintptr_t)map + BW_HUGE_PAGE - 1) & ~(uintptr_t)(BW_HUGE_PAGE - 1));
        if (madvise(data, size, MADV_HUGEPAGE) != 0)
            fprintf(stderr, "bandwidth: warning: MADV_HUGEPAGE: %s\n", strerror(errno));
    } else {
        /* What malloc gives the engine unless THP is "always". */
        (void)madvise(data, size, MADV_NOHUGEPAGE);
    }
    uint64_t *w = (uint64_t *)(void *)data;
    for (size_t i = 0; i < size / 8; i++)
        w[i] = (i + 1) * 0x9e3779b97f4a7c15ULL;
    long huge_after = bw_anon_huge_kib();
    *b = (struct bw_buffer){ .data = data,
                             .size = size,
                             .map = map,
                             .map_size = size + extra,
                             .memory = memory,
                             .huge_kib = memory == BW_MEM_THP && huge_after >= 0 && huge_before >= 0
                                             ? huge_after - huge_before
                                             : -1 };
    return 0;
}

/* Maps file read-only as the engine maps a model. Returns 0, or -1 after printing why. */
static int bw_buffer_file(struct bw_buffer *b, const char *file)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "bandwidth: cannot open '%s': %s\n", file, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size < BW_SIZE_MIN || (uint64_t)st.st_size > BW_SIZE_MAX) {
        fprintf(stderr,
                "bandwidth: '%s' has %lld bytes; need 64 MiB (to pass the caches) to 64 GiB\n",
                file, (long long)st.st_size);
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        fprintf(stderr, "bandwidth: cannot map '%s': %s\n", file, strerror(errno));
        return -1;
    }
    *b = (struct bw_buffer){ .data = map,
                             .size = size,
                             .map = map,
                             .map_size = size,
                             .memory = BW_MEM_FILE,
                             .huge_kib = -1 };
    return 0;
}

/* ---- threads and timing ---- */

#define BW_BUFS_MAX 2 /* 4k and thp, or the file */

/* One thing to time: a pattern over a buffer. */
struct bw_case {
    size_t buf, pat; /* indices into the run's buffers and into bw_patterns */
};

struct bw_run {
    const struct bw_buffer *bufs;
    size_t slice[BW_BUFS_MAX]; /* bytes per thread of each buffer, a multiple of BW_GRAIN */
    size_t n_threads;
    size_t n_reps;
    const struct bw_case *cases;
    size_t n_cases;
    enum bw_isa isa;
    pthread_barrier_t start;
    pthread_barrier_t done;
};

struct bw_thread {
    pthread_t tid;
    struct bw_run *run;
    size_t index;
    uint64_t ref[BW_BUFS_MAX]; /* scalar sum of the own slice of each buffer */
    size_t n_bad;              /* passes whose sum differed from ref */
    uint64_t *t_start;         /* per (repetition, case): when this thread began, ns */
    uint64_t *t_end;           /* ... and when it finished */
};

/* Pins the calling thread to the index-th CPU it may run on (best effort). */
static void bw_pin(size_t index)
{
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
    size_t seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (seen++ == index) {
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            (void)pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
            return;
        }
    }
}

/*
 * Thread body (thread 0 is the caller, as in the engine's pool): per
 * repetition and case, wait until every thread is ready, sum the own slice,
 * stamp the start and the end (the wall time of a pass is the last end minus
 * the first start, whoever gets the CPU first), check the sum.
 */
static void *bw_thread_main(void *arg)
{
    struct bw_thread *t = arg;
    struct bw_run *run = t->run;

    bw_pin(t->index);
    for (size_t r = 0; r < run->n_reps; r++) {
        for (size_t k = 0; k < run->n_cases; k++) {
            const struct bw_case *c = &run->cases[k];
            size_t slice = run->slice[c->buf], at = r * run->n_cases + k;
            const uint8_t *p = run->bufs[c->buf].data + t->index * slice;
            pthread_barrier_wait(&run->start);
            t->t_start[at] = slm_now_ns();
            uint64_t sum = bw_sum(run->isa, p, slice, &bw_patterns[c->pat]);
            t->t_end[at] = slm_now_ns();
            t->n_bad += sum != t->ref[c->buf];
            pthread_barrier_wait(&run->done);
        }
    }
    return NULL;
}

static int bw_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best and median pass of one case, bytes per second. */
struct bw_figure {
    double best, median;
};

/*
 * Runs n_reps rounds of the n_cases cases with n_threads threads (the
 * caller is thread 0), each thread reading its slice of the case's buffer,
 * and stores each case's figure in fig[0..n_cases). Exits with status 1 when
 * a buffer is too small for the threads, when a thread cannot be started
 * (the barriers cannot be released partially) or when a pass's sum is wrong
 * (a bug of the probe: its figure would be meaningless).
 */
static void bw_measure(const struct bw_buffer *bufs, size_t n_bufs, size_t n_threads, size_t n_reps,
                       const struct bw_case *cases, size_t n_cases, enum bw_isa isa,
                       struct bw_figure *fig)
{
    struct bw_run run = { .bufs = bufs,
                          .n_threads = n_threads,
                          .n_reps = n_reps,
                          .cases = cases,
                          .n_cases = n_cases,
                          .isa = isa };
    size_t n_passes = n_reps * n_cases; /* both bounded by the option checks */
    struct bw_thread *th = slm_xcalloc(n_threads, sizeof(*th));
    uint64_t *stamps = slm_xcalloc(n_threads * 2, n_passes * sizeof(*stamps));
    double *rate = slm_xcalloc(n_reps, sizeof(*rate));

    for (size_t b = 0; b < n_bufs; b++) {
        run.slice[b] = bufs[b].size / n_threads / BW_GRAIN * BW_GRAIN;
        if (run.slice[b] == 0) {
            fprintf(stderr, "bandwidth: %zu bytes is too small for %zu threads\n", bufs[b].size,
                    n_threads);
            exit(1);
        }
    }
    pthread_barrier_init(&run.start, NULL, (unsigned)n_threads);
    pthread_barrier_init(&run.done, NULL, (unsigned)n_threads);
    for (size_t i = 0; i < n_threads; i++) {
        th[i].run = &run;
        th[i].index = i;
        for (size_t b = 0; b < n_bufs; b++)
            th[i].ref[b] = bw_sum_ref(bufs[b].data + i * run.slice[b], run.slice[b]);
        th[i].t_start = stamps + 2 * i * n_passes;
        th[i].t_end = th[i].t_start + n_passes;
    }
    for (size_t i = 1; i < n_threads; i++) {
        int rc = pthread_create(&th[i].tid, NULL, bw_thread_main, &th[i]);
        if (rc != 0) {
            fprintf(stderr, "bandwidth: cannot start thread %zu of %zu: %s\n", i + 1, n_threads,
                    strerror(rc));
            exit(1);
        }
    }
    bw_thread_main(&th[0]);
    size_t n_bad = th[0].n_bad;
    for (size_t i = 1; i < n_threads; i++) {
        pthread_join(th[i].tid, NULL);
        n_bad += th[i].n_bad;
    }
    pthread_barrier_destroy(&run.start);
    pthread_barrier_destroy(&run.done);
    if (n_bad > 0) {
        fprintf(stderr,
                "bandwidth: %zu passes summed the buffer wrongly (a bug of the probe; its "
                "figures would be meaningless)\n",
                n_bad);
        exit(1);
    }

    for (size_t k = 0; k < n_cases; k++) {
        double bytes = (double)run.slice[cases[k].buf] * (double)n_threads;
        for (size_t r = 0; r < n_reps; r++) {
            size_t at = r * n_cases + k;
            uint64_t t0 = th[0].t_start[at], t1 = th[0].t_end[at];
            for (size_t i = 1; i < n_threads; i++) {
                t0 = th[i].t_start[at] < t0 ? th[i].t_start[at] : t0;
                t1 = th[i].t_end[at] > t1 ? th[i].t_end[at] : t1;
            }
            rate[r] = bytes / (double)(t1 > t0 ? t1 - t0 : 1) * 1e9;
        }
        qsort(rate, n_reps, sizeof(*rate), bw_cmp_double);
        fig[k].best = rate[n_reps - 1];
        fig[k].median = rate[n_reps / 2];
    }
    slm_free(rate);
    slm_free(stamps);
    slm_free(th);
}

/* ---- output ---- */

struct bw_options {
    size_t threads[BW_N_THREAD_LIST];
    size_t n_threads_list;
    size_t pats[BW_N_PATTERNS];
    size_t n_pats;
    uint64_t reps;
    int json;
};

/* Case of buffer b (cases are buffer-major) with the best figure. */
static size_t bw_best(const struct bw_figure *fig, size_t b, size_t n_pats)
{
    size_t best = b * n_pats;
    for (size_t k = best + 1; k < (b + 1) * n_pats; k++)
        if (fig[k].best > fig[best].best) best = k;
    return best;
}

/*
 * Measures the buffers with every thread count and pattern of o, all
 * (buffer, pattern) cases taking turns in each repetition; prints one table
 * per buffer, or a JSON array of one object per buffer and thread count.
 */
static void bw_run_all(const struct bw_buffer *bufs, size_t n_bufs, const struct bw_options *o,
                       enum bw_isa isa)
{
    struct bw_case cases[BW_BUFS_MAX * BW_N_PATTERNS];
    struct bw_figure fig[BW_N_THREAD_LIST][BW_BUFS_MAX * BW_N_PATTERNS];
    size_t n_cases = 0, n_pats = o->n_pats;
    long n_cpus = sysconf(_SC_NPROCESSORS_ONLN);

    for (size_t b = 0; b < n_bufs; b++)
        for (size_t k = 0; k < n_pats; k++)
            cases[n_cases++] = (struct bw_case){ .buf = b, .pat = o->pats[k] };
    for (size_t i = 0; i < o->n_threads_list; i++) {
        size_t nt = o->threads[i];
        if (n_cpus > 0 && nt > (size_t)n_cpus)
            fprintf(stderr, "bandwidth: warning: %zu threads on %ld CPUs\n", nt, n_cpus);
        /* One untimed round first: pages, TLB and clock frequency settle. */
        bw_measure(bufs, n_bufs, nt, 1, cases, n_cases, isa, fig[i]);
        bw_measure(bufs, n_bufs, nt, (size_t)o->reps, cases, n_cases, isa, fig[i]);
    }

    if (o->json) {
        printf("[");
        for (size_t b = 0; b < n_bufs; b++) {
            for (size_t i = 0; i < o->n_threads_list; i++) {
                const struct bw_figure *f = fig[i];
                size_t kb = bw_best(f, b, n_pats);
                printf("%s\n  {\"n_threads\": %zu, \"best_gbps\": %.2f, \"median_gbps\": %.2f, "
                       "\"pattern\": \"%s\", \"memory\": \"%s\", \"source\": \"%s\", "
                       "\"bytes\": %zu, \"reps\": %llu, \"isa\": \"%s\"",
                       b + i ? "," : "", o->threads[i], f[kb].best / 1e9, f[kb].median / 1e9,
                       bw_patterns[cases[kb].pat].name, bw_memory_names[bufs[b].memory],
                       bufs[b].memory == BW_MEM_FILE ? "file" : "anonymous",
                       bufs[b].size / o->threads[i] / BW_GRAIN * BW_GRAIN * o->threads[i],
                       (unsigned long long)o->reps, bw_isa_name(isa));
                if (bufs[b].huge_kib >= 0)
                    printf(", \"huge_page_bytes\": %lld", (long long)bufs[b].huge_kib * 1024);
                printf(", \"patterns\": [");
                for (size_t k = b * n_pats; k < (b + 1) * n_pats; k++)
                    printf("%s{\"pattern\": \"%s\", \"best_gbps\": %.2f, \"median_gbps\": %.2f}",
                           k > b * n_pats ? ", " : "", bw_patterns[cases[k].pat].name,
                           f[k].best / 1e9, f[k].median / 1e9);
                printf("]}");
            }
        }
        printf("\n]\n");
        return;
    }

    printf("%s, %llu passes per pattern, taking turns; GB/s (10^9 bytes/s), best / median\n",
           bw_isa_name(isa), (unsigned long long)o->reps);
    for (size_t b = 0; b < n_bufs; b++) {
        printf("\nmemory %s: %zu MiB", bw_memory_names[bufs[b].memory], bufs[b].size >> 20);
        if (bufs[b].huge_kib >= 0) printf(", %ld MiB of it in huge pages", bufs[b].huge_kib >> 10);
        printf("\n%-12s", "pattern");
        for (size_t i = 0; i < o->n_threads_list; i++)
            printf("  %3zu thread%s    ", o->threads[i], o->threads[i] > 1 ? "s" : " ");
        printf("\n");
        for (size_t k = b * n_pats; k < (b + 1) * n_pats; k++) {
            printf("%-12s", bw_patterns[cases[k].pat].name);
            for (size_t i = 0; i < o->n_threads_list; i++)
                printf("  %6.2f / %6.2f%s", fig[i][k].best / 1e9, fig[i][k].median / 1e9,
                       bw_best(fig[i], b, n_pats) == k ? "*" : " ");
            printf("\n");
        }
    }
    printf("\n");
    for (size_t i = 0; i < o->n_threads_list; i++) {
        size_t kb = bw_best(fig[i], 0, n_pats);
        for (size_t b = 1; b < n_bufs; b++) {
            size_t kc = bw_best(fig[i], b, n_pats);
            if (fig[i][kc].best > fig[i][kb].best) kb = kc;
        }
        printf("threads %zu: best %.2f GB/s (pattern %s, memory %s)\n", o->threads[i],
               fig[i][kb].best / 1e9, bw_patterns[cases[kb].pat].name,
               bw_memory_names[bufs[cases[kb].buf].memory]);
    }
}

/* ---- command line ---- */

static void bw_usage(FILE *out)
{
    fprintf(out,
            "usage: bandwidth [options]\n"
            "\n"
            "Measures the memory read bandwidth a prefetching reader gets: N pinned threads\n"
            "sum their slices of a buffer much larger than the caches with each read\n"
            "pattern in turn; prints each pattern's best and median pass in GB/s (10^9\n"
            "bytes per second) and, per thread count, the best pattern: the bound.\n"
            "\n"
            "options:\n"
            "  -t, --threads LIST   comma-separated thread counts (default 1,2)\n"
            "  -s, --size SIZE      buffer size, e.g. 512M or 2G (default 1G; 64M..64G)\n"
            "  -r, --reps N         passes per pattern and thread count (default %d, 1..%d)\n"
            "  -m, --memory LIST    anonymous memory to read: 4k (4 KiB pages, what malloc\n"
            "                       gives), thp (2 MiB-aligned, MADV_HUGEPAGE); default 4k,thp\n"
            "  -f, --file FILE      read FILE mapped read-only (as the engine maps a model)\n"
            "                       instead of anonymous memory; -s and -m do not apply\n"
            "  -p, --patterns LIST  comma-separated read patterns (default all):\n"
            "                       Sx reads S streams per thread; -t0-D, -t1-D, -nta-D add\n"
            "                       prefetcht0 / t1 / nta D bytes ahead of every line\n"
            "      --json           print a JSON array (one object per memory and thread\n"
            "                       count: n_threads, best_gbps, median_gbps, pattern,\n"
            "                       memory, patterns[]) instead of text\n"
            "  -h, --help           this text\n"
            "\n"
            "patterns:",
            BW_REPS_DEFAULT, BW_REPS_MAX);
    for (size_t k = 0; k < BW_N_PATTERNS; k++)
        fprintf(out, "%s%s", k % 8 ? " " : "\n  ", bw_patterns[k].name);
    fprintf(out, "\n\nexit status: 0 ok, 1 runtime error, 2 usage error\n");
}

__attribute__((format(printf, 1, 2))) static _Noreturn void bw_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bandwidth: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'bandwidth --help'.\n");
    exit(2);
}

/*
 * Splits the comma-separated arg of option opt into at most max items of
 * fewer than 32 bytes, calling item(text, index, ctx) for each; returns the
 * number of items. Empty items and too many items are usage errors.
 */
static size_t bw_split(const char *opt, const char *arg, size_t max,
                       void (*item)(const char *, size_t, void *), void *ctx)
{
    char text[32];
    size_t n = 0;
    const char *p = arg;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0) bw_usage_error("%s '%s': empty value in the list", opt, arg);
        if (len >= sizeof(text)) bw_usage_error("%s '%s': value too long", opt, arg);
        if (n == max) bw_usage_error("%s '%s': more than %zu values", opt, arg, max);
        memcpy(text, p, len);
        text[len] = '\0';
        item(text, n++, ctx);
        if (!end) return n;
        p = end + 1;
    }
}

static void bw_item_threads(const char *text, size_t i, void *ctx)
{
    uint64_t v;
    if (slm_parse_u64(text, &v) != 0 || v < 1 || v > BW_THREADS_MAX)
        bw_usage_error("--threads: '%s' is not a count from 1 to %d", text, BW_THREADS_MAX);
    ((size_t *)ctx)[i] = (size_t)v;
}

static void bw_item_pattern(const char *text, size_t i, void *ctx)
{
    for (size_t k = 0; k < BW_N_PATTERNS; k++) {
        if (strcmp(text, bw_patterns[k].name) == 0) {
            ((size_t *)ctx)[i] = k;
            return;
        }
    }
    bw_usage_error("--patterns: unknown pattern '%s' (--help lists them)", text);
}

static void bw_item_memory(const char *text, size_t i, void *ctx)
{
    enum bw_memory *m = ctx;
    if (strcmp(text, "4k") == 0)
        m[i] = BW_MEM_4K;
    else if (strcmp(text, "thp") == 0)
        m[i] = BW_MEM_THP;
    else
        bw_usage_error("--memory: unknown memory '%s' (expected 4k or thp)", text);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "threads", required_argument, NULL, 't' },
        { "size", required_argument, NULL, 's' },
        { "reps", required_argument, NULL, 'r' },
        { "memory", required_argument, NULL, 'm' },
        { "file", required_argument, NULL, 'f' },
        { "patterns", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct bw_options o = { .threads = { 1, 2 }, .n_threads_list = 2, .reps = BW_REPS_DEFAULT };
    enum bw_memory memory[2] = { BW_MEM_4K, BW_MEM_THP };
    size_t n_memory = 2;
    uint64_t size = BW_SIZE_DEFAULT;
    const char *file = NULL;
    int size_set = 0, memory_set = 0, c;

    for (size_t k = 0; k < BW_N_PATTERNS; k++)
        o.pats[o.n_pats++] = k;
    while ((c = getopt_long(argc, argv, "t:s:r:m:f:p:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            o.n_threads_list =
                bw_split("--threads", optarg, BW_N_THREAD_LIST, bw_item_threads, o.threads);
            break;
        case 's':
            if (slm_parse_size(optarg, &size) != 0 || size < BW_SIZE_MIN || size > BW_SIZE_MAX)
                bw_usage_error("--size '%s': expected 64M to 64G (suffix K, M or G)", optarg);
            size_set = 1;
            break;
        case 'r':
            if (slm_parse_u64(optarg, &o.reps) != 0 || o.reps < 1 || o.reps > BW_REPS_MAX)
                bw_usage_error("--reps '%s': expected 1 to %d", optarg, BW_REPS_MAX);
            break;
        case 'm':
            n_memory = bw_split("--memory", optarg, 2, bw_item_memory, memory);
            memory_set = 1;
            break;
        case 'f':
            file = optarg;
            break;
        case 'p':
            o.n_pats = bw_split("--patterns", optarg, BW_N_PATTERNS, bw_item_pattern, o.pats);
            break;
        case 'j':
            o.json = 1;
            break;
        case 'h':
            bw_usage(stdout);
            return 0;
        default:
            fprintf(stderr, "Try 'bandwidth --help'.\n");
            return 2;
        }
    }
    if (optind < argc) bw_usage_error("unexpected argument '%s'", argv[optind]);
    if (file && (size_set || memory_set))
        bw_usage_error("--file reads the whole file: --size and --memory do not apply");
    if (n_memory == 2 && memory[0] == memory[1])
        bw_usage_error("--memory: '%s' given twice", bw_memory_names[memory[0]]);

    struct bw_buffer bufs[BW_BUFS_MAX];
    size_t n_bufs = 0;
    int rc = 0;
    if (file) {
        if ((rc = bw_buffer_file(&bufs[0], file)) == 0) n_bufs = 1;
    } else {
        for (size_t m = 0; m < n_memory && rc == 0; m++)
            if ((rc = bw_buffer_anon(&bufs[n_bufs], (size_t)size, memory[m])) == 0) n_bufs++;
    }
    if (rc == 0) bw_run_all(bufs, n_bufs, &o, bw_isa_detect());
    for (size_t b = 0; b < n_bufs; b++)
        munmap(bufs[b].map, bufs[b].map_size);
    return rc == 0 ? 0 : 1;
}
