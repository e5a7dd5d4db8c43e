/*
 * str.h - strict number parsing and small string helpers.
 *
 * The parsers accept the whole string or fail: no leading or trailing junk,
 * no silent overflow (what atoi and friends, banned here, get wrong).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

SLM_NODISCARD int slm_parse_u64(const char *s, uint64_t *out);
SLM_NODISCARD int slm_parse_i64(const char *s, int64_t *out);
/* Accepts finite decimal or exponent notation only (no nan, no inf). */
SLM_NODISCARD int slm_parse_double(const char *s, double *out);
/* Parses "512", "64K", "1M", "2G" (powers of 1024) into bytes. */
SLM_NODISCARD int slm_parse_size(const char *s, uint64_t *out);
/*
 * Reads the leading decimal digits of a small file (sysfs, /proc/sys) as a
 * number (0 if it starts with no digit); -1 if the file cannot be read or
 * is empty, or if the value exceeds max.
 */
long slm_read_file_long(const char *path, long max);
/* Returns new: the directory part of path ("." if none), or NULL on ENOMEM. */
char *slm_path_dir(const char *path);
/*
 * fsyncs directory dir, so that a rename into it survives a power cut;
 * 0 or an errno value (file systems that cannot sync a directory: 0).
 */
int slm_sync_dir(const char *dir);
/* FNV-1a's 64-bit offset basis: the h to start slm_fnv1a from (a seed may be XORed in). */
#define SLM_FNV1A_INIT 0xcbf29ce484222325ull
/* 64-bit FNV-1a of p[0..n) continued from h; chained calls hash the concatenation. */
uint64_t slm_fnv1a(uint64_t h, const void *p, size_t n);
/* Monotonic clock in nanoseconds. */
uint64_t slm_now_ns(void);
/* True if s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
bool slm_utf8_valid(const char *s, size_t len);
/* Length of the valid UTF-8 sequence at s (len > 0 bytes left), or 0. */
size_t slm_utf8_seq_len(const char *s, size_t len);
/* Writes code point cp (<= 0x10FFFF) as UTF-8 to out (4 bytes of room); returns the length. */
size_t slm_utf8_encode(uint32_t cp, char *out);
