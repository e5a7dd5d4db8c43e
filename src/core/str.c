/*
 * str.c - strict number parsing and string helpers (see str.h).
 */
#include "core/str.h"

#include "core/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int slm_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9') return SLM_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno == ERANGE) return SLM_ERANGE;
    if (*end != '\0') return SLM_EINVAL;
    *out = v;
    return 0;
}

int slm_parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0' || *s == ' ' || *s == '+') return SLM_EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE) return SLM_ERANGE;
    if (end == s || *end != '\0') return SLM_EINVAL;
    *out = v;
    return 0;
}

int slm_parse_double(const char *s, double *out)
{
    char *end;
    double v;

    if (s == NULL || *s == '\0' || *s == ' ') return SLM_EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end != '\0') return SLM_EINVAL;
    if (!isfinite(v) || errno == ERANGE) return SLM_ERANGE;
    *out = v;
    return 0;
}

int slm_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    if (s == NULL || *s < '0' || *s > '9') return SLM_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno == ERANGE) return SLM_ERANGE;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return SLM_EINVAL;
    }
    if (*end != '\0' && end[1] != '\0' && !((end[1] == 'B' || end[1] == 'b') && end[2] == '\0'))
        return SLM_EINVAL;
    if (shift > 0 && v > (UINT64_MAX >> shift)) return SLM_ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

long slm_read_file_long(const char *path, long max)
{
    char buf[32];
    ssize_t n;
    long v = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return -1;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) {
        long d = buf[i] - '0';

        if (v > (max - d) / 10) return -1;
        v = v * 10 + d;
    }
    return v;
}

char *slm_path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) return slm_strdup(".");
    return slm_strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

int slm_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0) return errno;
    if (fsync(fd) < 0 && errno != EINVAL) rc = errno;
    close(fd);
    return rc;
}

uint64_t slm_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t slm_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Returns the length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
size_t slm_utf8_seq_len(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0];
    size_t n;
    unsigned cp;

    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len <= n) return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((p[k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[k] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n + 1;
}

/* Validates UTF-8 per RFC 3629. */
bool slm_utf8_valid(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t n = slm_utf8_seq_len(s + i, len - i);

        if (n == 0) return false;
        i += n;
    }
    return true;
}

/* Encodes cp as UTF-8 into out (at least 4 bytes); returns the length. */
size_t slm_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
