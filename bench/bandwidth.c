/*
 * bandwidth.c - sustained memory read bandwidth of this machine, as the
 * engine's token generation sees it.
 *
 * Generating one token reads every weight matrix once, so tokens/s can never
 * exceed (read bandwidth) / (bytes of weights read per token). This probe
 * measures that bandwidth: each of N threads (pinned to its own CPU, as the
 * engine's pool is) sums its slice of a buffer far larger than the caches,
 * with 512-bit loads when the CPU has AVX-512, 256-bit with AVX2, else plain
 * C. Each repetition is timed from the moment all threads are released to the
 * moment the last one finishes; the best repetition is the figure (noise on a
 * shared machine only ever slows a run down), the median is printed too.
 *
 * The buffer is anonymous memory (default) or, with -f, a file mapped
 * read-only exactly as the engine maps a model (4 KiB page-cache pages), so
 * both the upper bound and the mapped-file case can be seen.
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

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/alloc.h"
#include "core/str.h"

#define BW_SIZE_DEFAULT  (1024ULL << 20) /* 1 GiB: 32x this machine's L3 */
#define BW_SIZE_MIN      (64ULL << 20)   /* below that the caches answer */
#define BW_SIZE_MAX      (64ULL << 30)
#define BW_REPS_DEFAULT  10
#define BW_REPS_MAX      1000
#define BW_THREADS_MAX   256
#define BW_N_THREAD_LIST 16
#define BW_CHUNK         256 /* bytes per inner-loop step: 4 x 64-byte lines */

enum bw_isa { BW_ISA_C, BW_ISA_AVX2, BW_ISA_AVX512 };

struct bw_thread {
    pthread_t tid;
    struct bw_run *run;
    size_t index;
    uint64_t sum;      /* kept so the compiler cannot drop the loads */
    uint64_t *t_start; /* per repetition: when this thread began, ns */
    uint64_t *t_end;   /* per repetition: when it finished, ns */
};

struct bw_run {
    const uint8_t *buf;
    size_t size;
    size_t n_threads;
    size_t n_reps;
    enum bw_isa isa;
    pthread_barrier_t start;
    pthread_barrier_t done;
};

/* Sums n bytes (n a multiple of BW_CHUNK) as 64-bit words, 4 accumulators. */
static uint64_t bw_sum_c(const uint8_t *p, size_t n)
{
    uint64_t acc[4] = { 0, 0, 0, 0 };
    for (size_t i = 0; i < n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, sizeof(w));
        acc[0] += w[0];
        acc[1] += w[1];
        acc[2] += w[2];
        acc[3] += w[3];
    }
    return acc[0] + acc[1] + acc[2] + acc[3];
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t bw_sum_avx2(const uint8_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    __m256i b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (size_t i = 0; i < n; i += BW_CHUNK) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
        b0 = _mm256_add_epi64(b0, _mm256_loadu_si256((const __m256i *)(p + i + 128)));
        b1 = _mm256_add_epi64(b1, _mm256_loadu_si256((const __m256i *)(p + i + 160)));
        b2 = _mm256_add_epi64(b2, _mm256_loadu_si256((const __m256i *)(p + i + 192)));
        b3 = _mm256_add_epi64(b3, _mm256_loadu_si256((const __m256i *)(p + i + 224)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    b0 = _mm256_add_epi64(_mm256_add_epi64(b0, b1), _mm256_add_epi64(b2, b3));
    a0 = _mm256_add_epi64(a0, b0);
    uint64_t lane[4];
    _mm256_storeu_si256((__m256i *)lane, a0);
    return lane[0] + lane[1] + lane[2] + lane[3];
}

__attribute__((target("avx512f"))) static uint64_t bw_sum_avx512(const uint8_t *p, size_t n)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += BW_CHUNK) {
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 64));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 128));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 192));
    }
    /* Lanes added as unsigned: _mm512_reduce_add_epi64 overflows signed. */
    uint64_t lane[8];
    _mm512_storeu_si512(lane, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    uint64_t sum = 0;
    for (size_t k = 0; k < 8; k++)
        sum += lane[k];
    return sum;
}
#endif

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

static uint64_t bw_sum(enum bw_isa isa, const uint8_t *p, size_t n)
{
#if defined(__x86_64__)
    if (isa == BW_ISA_AVX512) return bw_sum_avx512(p, n);
    if (isa == BW_ISA_AVX2) return bw_sum_avx2(p, n);
#endif
    (void)isa;
    return bw_sum_c(p, n);
}

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
 * repetition, wait until every thread is ready, sum the own slice, and stamp
 * the start and the end, so that the wall time of a pass is the last end
 * minus the first start whoever gets the CPU first.
 */
static void *bw_thread_main(void *arg)
{
    struct bw_thread *t = arg;
    struct bw_run *run = t->run;
    size_t slice = run->size / run->n_threads / BW_CHUNK * BW_CHUNK;
    const uint8_t *p = run->buf + t->index * slice;

    bw_pin(t->index);
    for (size_t r = 0; r < run->n_reps; r++) {
        pthread_barrier_wait(&run->start);
        t->t_start[r] = slm_now_ns();
        t->sum += bw_sum(run->isa, p, slice);
        t->t_end[r] = slm_now_ns();
        pthread_barrier_wait(&run->done);
    }
    return NULL;
}

static int bw_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/*
 * Runs n_reps timed passes over buf with n_threads threads (the caller is
 * thread 0); stores the best and the median in bytes per second. Exits with
 * status 1 when a thread cannot be started (the barriers cannot be released
 * partially).
 */
static void bw_measure(const uint8_t *buf, size_t size, size_t n_threads, size_t n_reps,
                       enum bw_isa isa, double *best, double *median)
{
    struct bw_run run = {
        .buf = buf, .size = size, .n_threads = n_threads, .n_reps = n_reps, .isa = isa
    };
    struct bw_thread *th = slm_xcalloc(n_threads, sizeof(*th));
    uint64_t *stamps = slm_xcalloc(n_threads * 2, n_reps * sizeof(*stamps));
    double *rate = slm_xcalloc(n_reps, sizeof(*rate));

    pthread_barrier_init(&run.start, NULL, (unsigned)n_threads);
    pthread_barrier_init(&run.done, NULL, (unsigned)n_threads);
    for (size_t i = 0; i < n_threads; i++) {
        th[i].run = &run;
        th[i].index = i;
        th[i].t_start = stamps + 2 * i * n_reps;
        th[i].t_end = th[i].t_start + n_reps;
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
    uint64_t sink = th[0].sum;
    for (size_t i = 1; i < n_threads; i++) {
        pthread_join(th[i].tid, NULL);
        sink += th[i].sum;
    }
    pthread_barrier_destroy(&run.start);
    pthread_barrier_destroy(&run.done);

    size_t bytes = size / n_threads / BW_CHUNK * BW_CHUNK * n_threads;
    for (size_t r = 0; r < n_reps; r++) {
        uint64_t t0 = th[0].t_start[r], t1 = th[0].t_end[r];
        for (size_t i = 1; i < n_threads; i++) {
            t0 = th[i].t_start[r] < t0 ? th[i].t_start[r] : t0;
            t1 = th[i].t_end[r] > t1 ? th[i].t_end[r] : t1;
        }
        rate[r] = (double)bytes / (double)(t1 > t0 ? t1 - t0 : 1) * 1e9;
    }
    qsort(rate, n_reps, sizeof(*rate), bw_cmp_double);
    *best = rate[n_reps - 1];
    *median = rate[n_reps / 2];
    /* Printed only in the impossible case, so the sums stay live. */
    if (sink == 0x5eed5eed5eed5eedULL)
        fprintf(stderr, "bandwidth: checksum %llu\n", (unsigned long long)sink);
    slm_free(rate);
    slm_free(stamps);
    slm_free(th);
}

static void bw_usage(FILE *out)
{
    fprintf(out,
            "usage: bandwidth [options]\n"
            "\n"
            "Measures the sustained memory read bandwidth: N threads stream-sum a buffer\n"
            "much larger than the caches; prints the best and the median of the runs in\n"
            "GB/s (10^9 bytes per second).\n"
            "\n"
            "options:\n"
            "  -t, --threads LIST  comma-separated thread counts (default 1,2)\n"
            "  -s, --size SIZE     buffer size, e.g. 512M or 2G (default 1G; 64M..64G)\n"
            "  -r, --reps N        timed passes per thread count (default %d, at most %d)\n"
            "  -f, --file FILE     read FILE mapped read-only (as the engine maps a model)\n"
            "                      instead of an anonymous buffer; -s is ignored\n"
            "      --json          print a JSON array instead of text\n"
            "  -h, --help          this text\n"
            "\n"
            "exit status: 0 ok, 1 runtime error, 2 usage error\n",
            BW_REPS_DEFAULT, BW_REPS_MAX);
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

/* Parses "1,2,4" into list (at most BW_N_THREAD_LIST entries, each 1..BW_THREADS_MAX). */
static size_t bw_parse_threads(const char *arg, size_t *list)
{
    char item[32];
    size_t n = 0;
    const char *p = arg;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        uint64_t v;
        if (len == 0 || len >= sizeof(item) || n == BW_N_THREAD_LIST)
            bw_usage_error("--threads '%s': expected up to 16 comma-separated counts", arg);
        memcpy(item, p, len);
        item[len] = '\0';
        if (slm_parse_u64(item, &v) != 0 || v < 1 || v > BW_THREADS_MAX)
            bw_usage_error("--threads '%s': each count must be 1 to 256", arg);
        list[n++] = (size_t)v;
        if (!end) return n;
        p = end + 1;
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "threads", required_argument, NULL, 't' },
        { "size", required_argument, NULL, 's' },
        { "reps", required_argument, NULL, 'r' },
        { "file", required_argument, NULL, 'f' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    size_t threads[BW_N_THREAD_LIST] = { 1, 2 };
    size_t n_threads_list = 2;
    uint64_t size = BW_SIZE_DEFAULT, reps = BW_REPS_DEFAULT;
    const char *file = NULL;
    int json = 0, c;

    while ((c = getopt_long(argc, argv, "t:s:r:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            n_threads_list = bw_parse_threads(optarg, threads);
            break;
        case 's':
            if (slm_parse_size(optarg, &size) != 0 || size < BW_SIZE_MIN || size > BW_SIZE_MAX)
                bw_usage_error("--size '%s': expected 64M to 64G (suffix K, M or G)", optarg);
            break;
        case 'r':
            if (slm_parse_u64(optarg, &reps) != 0 || reps < 1 || reps > BW_REPS_MAX)
                bw_usage_error("--reps '%s': expected 1 to 1000", optarg);
            break;
        case 'f':
            file = optarg;
            break;
        case 'j':
            json = 1;
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

    uint8_t *buf;
    if (file) {
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            fprintf(stderr, "bandwidth: cannot open '%s': %s\n", file, strerror(errno));
            return 1;
        }
        if ((uint64_t)st.st_size < BW_SIZE_MIN) {
            fprintf(stderr,
                    "bandwidth: '%s' has %lld bytes; need at least 64 MiB to pass the "
                    "caches\n",
                    file, (long long)st.st_size);
            return 1;
        }
        size = (uint64_t)st.st_size;
        buf = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        close(fd);
    } else {
        buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf != MAP_FAILED) memset(buf, 0x5a, size); /* fault every page in before timing */
    }
    if (buf == MAP_FAILED) {
        fprintf(stderr, "bandwidth: cannot map %llu bytes: %s\n", (unsigned long long)size,
                strerror(errno));
        return 1;
    }

    enum bw_isa isa = bw_isa_detect();
    long n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (json) printf("[");
    for (size_t i = 0; i < n_threads_list; i++) {
        double best, median;
        if (n_cpus > 0 && threads[i] > (size_t)n_cpus)
            fprintf(stderr, "bandwidth: warning: %zu threads on %ld CPUs\n", threads[i], n_cpus);
        /* One untimed pass first: pages, TLB and frequency settle. */
        bw_measure(buf, (size_t)size, threads[i], 1, isa, &best, &median);
        bw_measure(buf, (size_t)size, threads[i], (size_t)reps, isa, &best, &median);
        if (json)
            printf("%s\n  {\"n_threads\": %zu, \"best_gbps\": %.2f, \"median_gbps\": %.2f, "
                   "\"bytes\": %llu, \"reps\": %llu, \"isa\": \"%s\", \"source\": \"%s\"}",
                   i ? "," : "", threads[i], best / 1e9, median / 1e9, (unsigned long long)size,
                   (unsigned long long)reps, bw_isa_name(isa), file ? "file" : "anonymous");
        else
            printf("threads %zu: best %.2f GB/s, median %.2f GB/s (%llu MiB %s, %s, %llu runs)\n",
                   threads[i], best / 1e9, median / 1e9, (unsigned long long)(size >> 20),
                   file ? "file" : "anonymous", bw_isa_name(isa), (unsigned long long)reps);
        fflush(stdout);
    }
    if (json) printf("\n]\n");
    munmap(buf, size);
    return 0;
}
