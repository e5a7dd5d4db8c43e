/*
 * json.h - a streaming JSON writer.
 *
 * The writer appends to a capped struct slm_buf and inserts commas itself.
 * Errors are sticky: after the first failure every call is a no-op and
 * json_writer_finish returns that error, so callers check once at the end.
 * Strings are escaped per RFC 8259; invalid UTF-8 bytes become U+FFFD.
 * Non-finite doubles are written as null (JSON has no NaN).
 *
 * Ownership: borrows the buffer for its lifetime. Not thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/limits.h"

struct json_writer {
    struct slm_buf *out;
    int rc;
    unsigned depth;
    bool pretty;
    bool after_key;
    bool has_items[SLM_LIMIT_JSON_DEPTH + 1];
};

void json_writer_init(struct json_writer *w, struct slm_buf *out, bool pretty);
void json_obj_begin(struct json_writer *w);
void json_obj_end(struct json_writer *w);
void json_arr_begin(struct json_writer *w);
void json_arr_end(struct json_writer *w);
void json_key(struct json_writer *w, const char *key);
void json_str(struct json_writer *w, const char *s, size_t len);
void json_cstr(struct json_writer *w, const char *s);
void json_int(struct json_writer *w, int64_t v);
void json_uint(struct json_writer *w, uint64_t v);
void json_double(struct json_writer *w, double v);
void json_bool(struct json_writer *w, bool v);
void json_null(struct json_writer *w);
/* Returns 0 or the first error (SLM_ELIMIT, SLM_ENOMEM, SLM_EINVAL). */
SLM_NODISCARD int json_writer_finish(struct json_writer *w);
/* Appends s[0..len) escaped (without quotes) to b. */
SLM_NODISCARD int json_escape(struct slm_buf *b, const char *s, size_t len);
