/*
 * json.c - streaming JSON writer (see json.h).
 */
#include "core/json.h"
#include "core/str.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void json_writer_init(struct json_writer *w, struct slm_buf *out, bool pretty)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
    w->pretty = pretty;
}

static void json_raw(struct json_writer *w, const char *s, size_t len)
{
    if (w->rc == 0) w->rc = slm_buf_append(w->out, s, len);
}

static void json_indent(struct json_writer *w)
{
    if (!w->pretty) return;
    json_raw(w, "\n", 1);
    for (unsigned i = 0; i < w->depth; i++)
        json_raw(w, "  ", 2);
}

/* Writes the separator that must precede a value or key at this depth. */
static void json_before_value(struct json_writer *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->has_items[w->depth]) json_raw(w, ",", 1);
    w->has_items[w->depth] = true;
    if (w->depth > 0) json_indent(w);
}

static void json_open(struct json_writer *w, char c)
{
    json_before_value(w);
    if (w->depth >= SLM_LIMIT_JSON_DEPTH) {
        if (w->rc == 0) w->rc = SLM_ELIMIT;
        return;
    }
    json_raw(w, &c, 1);
    w->depth++;
    w->has_items[w->depth] = false;
}

static void json_close(struct json_writer *w, char c)
{
    bool had = w->has_items[w->depth];

    if (w->depth == 0) {
        if (w->rc == 0) w->rc = SLM_EINVAL;
        return;
    }
    w->depth--;
    if (had) json_indent(w);
    json_raw(w, &c, 1);
}

void json_obj_begin(struct json_writer *w)
{
    json_open(w, '{');
}

void json_obj_end(struct json_writer *w)
{
    json_close(w, '}');
}

void json_arr_begin(struct json_writer *w)
{
    json_open(w, '[');
}

void json_arr_end(struct json_writer *w)
{
    json_close(w, ']');
}

/* Appends s escaped for a JSON string body. */
int json_escape(struct slm_buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    int rc = 0;

    while (i < len && rc == 0) {
        unsigned char c = p[i];
        size_t n;

        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            rc = slm_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *short_esc = c == '\n'   ? "\\n"
                                    : c == '\r' ? "\\r"
                                    : c == '\t' ? "\\t"
                                                : NULL;

            if (short_esc != NULL)
                rc = slm_buf_append(b, short_esc, 2);
            else
                rc = slm_buf_printf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            size_t j = i;

            while (j < len && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\')
                j++;
            rc = slm_buf_append(b, s + i, j - i);
            i = j;
        } else if ((n = slm_utf8_seq_len(s + i, len - i)) > 0) {
            rc = slm_buf_append(b, s + i, n);
            i += n;
        } else {
            rc = slm_buf_append(b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    return rc;
}

void json_key(struct json_writer *w, const char *key)
{
    json_key_n(w, key, strlen(key));
}

/* Writes an object key of key_len bytes (which may include NUL bytes). */
void json_key_n(struct json_writer *w, const char *key, size_t key_len)
{
    json_before_value(w);
    json_raw(w, "\"", 1);
    if (w->rc == 0) w->rc = json_escape(w->out, key, key_len);
    json_raw(w, w->pretty ? "\": " : "\":", w->pretty ? 3 : 2);
    w->after_key = true;
}

void json_str(struct json_writer *w, const char *s, size_t len)
{
    json_before_value(w);
    json_raw(w, "\"", 1);
    if (w->rc == 0) w->rc = json_escape(w->out, s, len);
    json_raw(w, "\"", 1);
}

void json_cstr(struct json_writer *w, const char *s)
{
    if (s == NULL)
        json_null(w);
    else
        json_str(w, s, strlen(s));
}

void json_int(struct json_writer *w, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);

    json_before_value(w);
    json_raw(w, tmp, (size_t)n);
}

void json_uint(struct json_writer *w, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);

    json_before_value(w);
    json_raw(w, tmp, (size_t)n);
}

/* Writes v with enough digits to round-trip; NaN and infinities as null. */
void json_double(struct json_writer *w, double v)
{
    char tmp[40];
    int n;

    if (!isfinite(v)) {
        json_null(w);
        return;
    }
    n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    /* Prefer the shortest text that reads back as the same double. */
    for (int prec = 6; prec < 17; prec++) {
        char shorter[40];
        int m = snprintf(shorter, sizeof(shorter), "%.*g", prec, v);

        if (strtod(shorter, NULL) == v) {
            memcpy(tmp, shorter, (size_t)m + 1);
            n = m;
            break;
        }
    }
    json_before_value(w);
    json_raw(w, tmp, (size_t)n);
}

void json_bool(struct json_writer *w, bool v)
{
    json_before_value(w);
    json_raw(w, v ? "true" : "false", v ? 4 : 5);
}

void json_null(struct json_writer *w)
{
    json_before_value(w);
    json_raw(w, "null", 4);
}

/* Returns the sticky error, or SLM_EINVAL if containers are still open. */
int json_writer_finish(struct json_writer *w)
{
    if (w->rc == 0 && w->depth != 0) w->rc = SLM_EINVAL;
    return w->rc;
}
