/*
 * router.c - see router.h. A linear scan: the table has about ten entries.
 */
#include "http/router.h"

#include <stdio.h>
#include <string.h>

static const char *const method_names[HTTP_METHOD_COUNT] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "OTHER",
};

/* Returns the static name of m. */
const char *router_method_name(enum http_method m)
{
    return (unsigned)m < HTTP_METHOD_COUNT ? method_names[m] : "OTHER";
}

static bool path_eq(const struct route *r, const char *path, size_t len)
{
    return strlen(r->path) == len && memcmp(r->path, path, len) == 0;
}

/* Looks up a route; see router.h. */
enum router_result router_match(const struct route *routes, size_t n, enum http_method method,
                                const char *path, size_t path_len, const struct route **out,
                                char *allow, size_t allow_cap)
{
    bool path_known = false;
    size_t i, used = 0;

    *out = NULL;
    for (i = 0; i < n; i++) {
        if (!path_eq(&routes[i], path, path_len)) continue;
        path_known = true;
        if (routes[i].method == method ||
            (method == HTTP_METHOD_HEAD && routes[i].method == HTTP_METHOD_GET)) {
            *out = &routes[i];
            return ROUTER_FOUND;
        }
    }
    if (!path_known) return ROUTER_NOT_FOUND;
    if (allow_cap > 0) allow[0] = '\0';
    for (i = 0; i < n; i++) {
        int w;

        if (!path_eq(&routes[i], path, path_len)) continue;
        w = snprintf(allow + used, allow_cap - used, "%s%s", used > 0 ? ", " : "",
                     router_method_name(routes[i].method));
        if (w < 0 || (size_t)w >= allow_cap - used) break;
        used += (size_t)w;
    }
    if (method == HTTP_METHOD_OPTIONS) return ROUTER_FOUND; /* preflight: caller answers */
    if (used + 9 < allow_cap) {
        memcpy(allow + used, ", OPTIONS", 10);
    }
    return ROUTER_BAD_METHOD;
}
