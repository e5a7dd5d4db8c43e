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
/* Appends a key of key_len bytes (may contain NUL); json_key uses strlen. */
void json_key_n(struct json_writer *w, const char *key, size_t key_len);

/*
 * ---- JSON parser (json_parse.c) ----
 *
 * A strict RFC 8259 parser into a read-only DOM. The whole document (values,
 * object members, decoded strings) lives in one capped arena owned by a
 * struct json_doc and is freed by json_doc_free in one call; nothing points
 * into the input text, which the caller may free right after json_parse.
 *
 * Policy (docs/internals/json.md):
 * - nesting deeper than depth_max (SLM_LIMIT_JSON_DEPTH) is an error; the
 *   parser keeps an explicit stack, so 10,000 '[' cost no C stack;
 * - input longer than bytes_max is refused before scanning (SLM_ELIMIT);
 *   DOM memory above mem_max is SLM_ELIMIT too;
 * - duplicate keys in one object are an error (no "last wins": a gateway and
 *   an upstream must never read different values from one request);
 * - numbers: integer syntax that fits int64 -> JSON_INT, exact; anything else
 *   -> JSON_DOUBLE ("-0" is the double -0.0; integers outside int64 keep the
 *   flag JSON_FLAG_INT_SYNTAX
 *   so getters can say "out of range"); a value that overflows a double
 *   (1e400) is an error; underflow (1e-400) reads as 0 or a subnormal;
 * - strings: every escape; surrogate pairs combine; a lone or reversed
 *   surrogate escape is an error; \u0000 is kept (strings carry a length and
 *   are also NUL-terminated); raw control bytes and invalid UTF-8 anywhere
 *   are errors; a byte order mark is an error;
 * - only whitespace may follow the top-level value.
 * Errors return SLM_EFORMAT (syntax), SLM_ELIMIT (depth, size, memory),
 * SLM_ERANGE (1e400) or SLM_ENOMEM, with a diag like
 * "json: line 1 column 9 (offset 8): expected ',' or '}' after object member, got 'x'"
 * and the same position in struct json_pos.
 *
 * Thread safety: a parsed document is immutable; readers may share it.
 */
enum json_type {
    JSON_NULL = 0,
    JSON_BOOL,
    JSON_INT,
    JSON_DOUBLE,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
    JSON_TYPE_COUNT
};

/* Set on a JSON_DOUBLE written as an integer that does not fit int64. */
#define JSON_FLAG_INT_SYNTAX 1u

struct json_member;

struct json_value {
    uint8_t type; /* enum json_type */
    uint8_t flags;
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            const char *ptr; /* NUL-terminated, may contain NUL: use len */
            size_t len;
        } str;
        struct {
            struct json_value *items;
            size_t n;
        } arr;
        struct {
            struct json_member *members; /* in document order */
            size_t n;
        } obj;
    } u;
};

struct json_member {
    const char *key; /* NUL-terminated, may contain NUL: use key_len */
    size_t key_len;
    struct json_value value;
};

struct json_parse_params {
    size_t bytes_max;   /* input bytes; default SLM_LIMIT_JSON_BYTES */
    unsigned depth_max; /* nesting; default and hard maximum SLM_LIMIT_JSON_DEPTH */
    size_t mem_max;     /* DOM bytes; default SLM_LIMIT_JSON_MEM */
};

/* Where a parse error was found: byte offset, 1-based line and column (bytes). */
struct json_pos {
    size_t offset;
    size_t line;
    size_t column;
};

struct json_doc;

struct json_parse_params json_parse_params_default(void);

/*
 * Parses text[0..len) (borrows; need not be NUL-terminated). On success
 * *out is a new document (caller frees with json_doc_free). params and pos
 * may be NULL. Returns 0 or an error as described above.
 */
SLM_NODISCARD int json_parse(const char *text, size_t len, const struct json_parse_params *params,
                             struct json_doc **out, struct json_pos *pos, struct slm_diag *d);
/* Frees the document and every value in it; NULL is a no-op. */
void json_doc_free(struct json_doc *doc);
/* Returns borrowed: the top-level value, valid until json_doc_free. */
const struct json_value *json_doc_root(const struct json_doc *doc);
/* Bytes of DOM memory the document uses (for tests and metrics). */
size_t json_doc_mem(const struct json_doc *doc);

/* Returns the name of a type: "null", "boolean", "integer", "number", ... */
const char *json_type_name(enum json_type t);
/* Returns borrowed: the member value for key, or NULL when obj is not an object
 * or has no such key. json_obj_getn takes a length (keys may contain NUL). */
const struct json_value *json_obj_get(const struct json_value *obj, const char *key);
const struct json_value *json_obj_getn(const struct json_value *obj, const char *key,
                                       size_t key_len);
/* Returns borrowed: element i of an array, or NULL (not an array, out of range). */
const struct json_value *json_arr_at(const struct json_value *arr, size_t i);

/*
 * Typed getters for request validation. name is the field's name as the
 * client should read it ("temperature", "messages[2].content"). Each returns
 * 0 and stores the value, or fills d with "field 'name': ..." and returns:
 * SLM_ENOTFOUND when v is NULL or JSON null (optional fields treat this as
 * "use the default"), SLM_EINVAL for a wrong type ("expected number, got
 * string"), SLM_ERANGE for a value outside [min, max] or int64.
 * json_value_int accepts JSON_INT only (1.0 is "expected integer"), and
 * json_value_double accepts JSON_INT and JSON_DOUBLE.
 */
SLM_NODISCARD int json_value_bool(const struct json_value *v, const char *name, bool *out,
                                  struct slm_diag *d);
SLM_NODISCARD int json_value_int(const struct json_value *v, const char *name, int64_t min,
                                 int64_t max, int64_t *out, struct slm_diag *d);
SLM_NODISCARD int json_value_double(const struct json_value *v, const char *name, double min,
                                    double max, double *out, struct slm_diag *d);
/* *out borrows the document's bytes (NUL-terminated; *len excludes the NUL). */
SLM_NODISCARD int json_value_str(const struct json_value *v, const char *name, const char **out,
                                 size_t *len, struct slm_diag *d);
/* Checks that v is an array / object; SLM_ENOTFOUND or SLM_EINVAL as above. */
SLM_NODISCARD int json_value_array(const struct json_value *v, const char *name,
                                   struct slm_diag *d);
SLM_NODISCARD int json_value_object(const struct json_value *v, const char *name,
                                    struct slm_diag *d);
/* The same for member key of object obj; the field name in messages is key. */
SLM_NODISCARD int json_get_bool(const struct json_value *obj, const char *key, bool *out,
                                struct slm_diag *d);
SLM_NODISCARD int json_get_int(const struct json_value *obj, const char *key, int64_t min,
                               int64_t max, int64_t *out, struct slm_diag *d);
SLM_NODISCARD int json_get_double(const struct json_value *obj, const char *key, double min,
                                  double max, double *out, struct slm_diag *d);
SLM_NODISCARD int json_get_str(const struct json_value *obj, const char *key, const char **out,
                               size_t *len, struct slm_diag *d);

/* Writes v (and everything under it) with w; errors are w's sticky errors. */
void json_value_write(struct json_writer *w, const struct json_value *v);
/* True if a and b are the same JSON value (object members compared in order;
 * numbers by value, so integer 2 equals double 2.0). */
bool json_value_equal(const struct json_value *a, const struct json_value *b);
