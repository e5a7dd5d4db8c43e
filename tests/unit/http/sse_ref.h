/*
 * sse_ref.h - a reference Server-Sent Events parser for tests and fuzzing,
 * written from the WHATWG HTML "event stream interpretation" rules: lines end
 * at CRLF, CR or LF; a blank line dispatches; ":" starts a comment; one space
 * after "field:" is dropped; "data" lines are joined with LF.
 */
#pragma once

#include <stddef.h>
#include <string.h>

#include "core/buf.h"

struct sse_ref_event {
    char event[64];
    struct slm_buf data;
};

/* Calls on_event for each dispatched event in s[0..len); returns the count,
 * or -1 on a buffer failure. Comments are counted in *n_comments. */
static inline int sse_ref_parse(const char *s, size_t len,
                                void (*on_event)(const struct sse_ref_event *, void *), void *arg,
                                int *n_comments)
{
    struct sse_ref_event ev;
    size_t i = 0;
    int n = 0;

    memset(&ev, 0, sizeof(ev));
    slm_buf_init(&ev.data, 1u << 26);
    *n_comments = 0;
    while (i < len) {
        size_t j = i, colon, v;

        while (j < len && s[j] != '\r' && s[j] != '\n')
            j++;
        if (j == len) break; /* an unterminated last line is not processed */
        if (j == i) {
            if (ev.data.len > 0) {
                ev.data.len--; /* the last LF */
                ev.data.data[ev.data.len] = '\0';
                on_event(&ev, arg);
                n++;
            }
            slm_buf_reset(&ev.data);
            ev.event[0] = '\0';
        } else if (s[i] == ':') {
            (*n_comments)++;
        } else {
            colon = i;
            while (colon < j && s[colon] != ':')
                colon++;
            v = colon < j ? colon + 1 : j;
            if (v < j && s[v] == ' ') v++;
            if (colon - i == 4 && memcmp(s + i, "data", 4) == 0) {
                if (slm_buf_append(&ev.data, s + v, j - v) < 0 ||
                    slm_buf_append_char(&ev.data, '\n') < 0) {
                    slm_buf_fini(&ev.data);
                    return -1;
                }
            } else if (colon - i == 5 && memcmp(s + i, "event", 5) == 0) {
                size_t k = j - v < sizeof(ev.event) - 1 ? j - v : sizeof(ev.event) - 1;

                memcpy(ev.event, s + v, k);
                ev.event[k] = '\0';
            }
        }
        i = j + (s[j] == '\r' && j + 1 < len && s[j + 1] == '\n' ? 2 : 1);
    }
    slm_buf_fini(&ev.data);
    return n;
}
