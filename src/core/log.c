/*
 * log.c - level-filtered, redacting logger (see log.h).
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = -1;

static const char *const level_name[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level level)
{
    atomic_store(&log_level, (int)level);
}

/* Returns the threshold, reading SLM_LOG the first time. */
enum log_level log_get_level(void)
{
    int lv = atomic_load(&log_level);

    if (lv < 0) {
        const char *env = getenv("SLM_LOG");

        lv = LOG_LEVEL_INFO;
        for (int i = 0; env != NULL && i < (int)SLM_ARRAY_LEN(level_name); i++)
            if (strcasecmp(env, level_name[i]) == 0) lv = i;
        atomic_store(&log_level, lv);
    }
    return (enum log_level)lv;
}

/* Replaces every "sk-" followed by key characters with "sk-***". */
static void log_redact(char *s)
{
    char *p = s;

    while ((p = strstr(p, "sk-")) != NULL) {
        char *q = p + 3;
        char *end = q;

        while (*end == '-' || *end == '_' || (*end >= '0' && *end <= '9') ||
               (*end >= 'a' && *end <= 'z') || (*end >= 'A' && *end <= 'Z'))
            end++;
        if (end - q >= 8) {
            memcpy(q, "***", 3);
            memmove(q + 3, end, strlen(end) + 1);
        }
        p = q;
    }
}

/* Writes one log line if level passes the threshold. */
void log_write(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if ((int)level > (int)log_get_level()) return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, level_name[level]);
    if (n < 0 || (size_t)n >= sizeof(line)) return;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    log_redact(line);
    n = (int)strlen(line);
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) return;
}
