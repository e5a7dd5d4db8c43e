/*
 * cpu.c - which instruction sets the CPU has and the OS has enabled.
 *
 * CPUID says what the processor implements; XGETBV (XCR0) says which register
 * states the operating system saves on a context switch. AVX needs the YMM
 * state (XCR0 bits 1 and 2), AVX-512 also the opmask and ZMM states (bits 5,
 * 6 and 7). A hypervisor or kernel may hide either, so both are checked and
 * XGETBV is only executed when CPUID reports OSXSAVE. This file is compiled
 * without any -m flag: nothing here may use AVX.
 */
#include <pthread.h>
#include <stdint.h>

#include "engine/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t eax, edx;

    /* xgetbv with ecx = 0, spelled as bytes for old assemblers. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static void detect(struct cpu_features *f)
{
    unsigned a, b, c, d, max_leaf;
    bool os_ymm = false, os_zmm = false;

    if (!__get_cpuid(0, &max_leaf, &b, &c, &d)) return;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    f->sse42 = (c >> 20) & 1;
    f->fma = (c >> 12) & 1;
    f->f16c = (c >> 29) & 1;
    f->avx = (c >> 28) & 1;
    if ((c >> 27) & 1) { /* OSXSAVE: XGETBV is usable */
        uint64_t xcr0 = xgetbv0();

        os_ymm = (xcr0 & 0x6) == 0x6;
        os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;
    }
    if (!os_ymm) {
        f->avx = f->fma = f->f16c = false;
        return;
    }
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    f->avx2 = (b >> 5) & 1;
    f->bmi2 = (b >> 8) & 1;
    if (os_zmm) {
        f->avx512f = (b >> 16) & 1;
        f->avx512dq = (b >> 17) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
        f->avx512vbmi = (c >> 1) & 1;
        f->avx512vnni = (c >> 11) & 1;
    }
    __cpuid_count(7, 1, a, b, c, d);
    f->avx_vnni = (a >> 4) & 1;
    if (os_zmm) f->avx512bf16 = (a >> 5) & 1;
}
#else
static void detect(struct cpu_features *f)
{
    (void)f;
}
#endif

static struct cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void detect_once(void)
{
    detect(&features);
}

/*
 * Returns the CPU's features as usable by this process (CPUID masked by the
 * OS-enabled register state); detection runs once, thread-safely. Returns
 * borrowed (static storage).
 */
const struct cpu_features *cpu_features_get(void)
{
    (void)pthread_once(&features_once, detect_once);
    return &features;
}
