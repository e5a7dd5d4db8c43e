/*
 * t.h - the test harness (libuv task.h / picotest shape).
 *
 * TEST(name) { ... } registers a test in a linker section; the runner forks
 * one child per test with an alarm() timeout (T_TIMEOUT seconds, default 60,
 * times T_TIMEOUT_MULT), prints TAP lines and ends with exactly
 * "N passed, N failed" (", N skipped" when some were skipped).
 * T_FILTER=substring runs the tests whose name (or file) contains it;
 * T_EXCLUDE=sub1,sub2 leaves out those whose name contains one of them.
 * T_JOBS=N runs N tests at a time, each one's output printed in one piece
 * (in order) when it ends; T_TIMES=1 prints each test's wall time.
 *
 * ASSERT* macros report file:line and the values, then exit the child with
 * status 1. SKIP(reason) exits the child with the skip status.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

struct t_case {
    const char *name;
    const char *file;
    void (*fn)(void);
};

#define T_EXIT_SKIP 77

#define TEST(name)                                                                             \
    static void t_fn_##name(void);                                                             \
    static const struct t_case t_case_##name = { #name, __FILE__, t_fn_##name };               \
    static const struct t_case *const t_ptr_##name                                             \
        __attribute__((used, section("slm_tests"), aligned(sizeof(void *)))) = &t_case_##name; \
    static void t_fn_##name(void)

SLM_NORETURN void t_fail(const char *file, int line, const char *fmt, ...) SLM_PRINTF(3, 4);
SLM_NORETURN void t_skip(const char *reason);
/* Returns the path of a fresh private temporary directory for this test. */
const char *t_tmpdir(void);
/* Returns the value of environment variable name, or def. */
const char *t_env(const char *name, const char *def);

#define ASSERT(x)                                                         \
    do {                                                                  \
        if (!(x)) t_fail(__FILE__, __LINE__, "assertion failed: %s", #x); \
    } while (0)

#define ASSERT_EQ_INT(a, b)                                                           \
    do {                                                                              \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);                       \
        if (t_a_ != t_b_)                                                             \
            t_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, t_a_, t_b_); \
    } while (0)

#define ASSERT_EQ_SIZE(a, b)                                                                      \
    do {                                                                                          \
        size_t t_a_ = (size_t)(a), t_b_ = (size_t)(b);                                            \
        if (t_a_ != t_b_) t_fail(__FILE__, __LINE__, "%s == %s: %zu != %zu", #a, #b, t_a_, t_b_); \
    } while (0)

#define ASSERT_EQ_STR(a, b)                                                  \
    do {                                                                     \
        const char *t_a_ = (a), *t_b_ = (b);                                 \
        if (t_a_ == NULL || t_b_ == NULL || strcmp(t_a_, t_b_) != 0)         \
            t_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, \
                   t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)");          \
    } while (0)

#define ASSERT_EQ_MEM(a, b, n)                                                                \
    do {                                                                                      \
        if (memcmp((a), (b), (n)) != 0)                                                       \
            t_fail(__FILE__, __LINE__, "%s and %s differ in %zu bytes", #a, #b, (size_t)(n)); \
    } while (0)

#define ASSERT_NEAR(a, b, tol)                                                               \
    do {                                                                                     \
        double t_a_ = (double)(a), t_b_ = (double)(b);                                       \
        if (!(t_a_ - t_b_ <= (tol) && t_b_ - t_a_ <= (tol)))                                 \
            t_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, t_a_, t_b_, \
                   (double)(tol));                                                           \
    } while (0)

#define ASSERT_NULL(p)     ASSERT((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT((p) != NULL)

#define ASSERT_OK(rc)                                                                              \
    do {                                                                                           \
        int t_rc_ = (rc);                                                                          \
        if (t_rc_ < 0) t_fail(__FILE__, __LINE__, "%s: %s (%d)", #rc, slm_strerror(t_rc_), t_rc_); \
    } while (0)

#define ASSERT_ERR(rc, code)                                                                    \
    do {                                                                                        \
        int t_rc_ = (rc);                                                                       \
        if (t_rc_ != (code))                                                                    \
            t_fail(__FILE__, __LINE__, "%s: expected %s, got %s (%d)", #rc, slm_strerror(code), \
                   slm_strerror(t_rc_), t_rc_);                                                 \
    } while (0)

#define SKIP(reason) t_skip(reason)
