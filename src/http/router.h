/*
 * router.h - the route table: method + exact path -> handler, and whether
 * the route needs an API key (RELIABILITY rule 4: every route does unless
 * the table says otherwise; only /health is open).
 *
 * The table is the caller's static array; router_match looks a request up
 * in it and says "found", "no such path" (404) or "path exists, not with
 * this method" (405, with the allowed methods for the Allow header). The
 * same table is what `slm serve --list-routes` prints, so tests enumerate
 * the routes from the server itself and cannot drift from it.
 *
 * Ownership: everything is borrowed; no allocation. Reentrant.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "http/parser.h"

struct http_exchange;

/* A route's handler; arg is the application's context. */
typedef void router_handler_fn(void *arg, struct http_exchange *ex);

struct route {
    enum http_method method;
    const char *path; /* exact match */
    bool auth;        /* an API key is required */
    router_handler_fn *fn;
};

enum router_result {
    ROUTER_FOUND = 0,
    ROUTER_NOT_FOUND,  /* 404 */
    ROUTER_BAD_METHOD, /* 405 */
};

/*
 * Finds method + path[0..path_len) in routes[0..n). On ROUTER_FOUND stores
 * the route in *out (borrowed); on ROUTER_BAD_METHOD writes the allowed
 * methods ("GET, OPTIONS") to allow[0..allow_cap) (NUL-terminated). HEAD
 * matches GET routes. OPTIONS on an existing path (CORS preflight) returns
 * ROUTER_FOUND with *out NULL and the path's methods in allow.
 */
enum router_result router_match(const struct route *routes, size_t n, enum http_method method,
                                const char *path, size_t path_len, const struct route **out,
                                char *allow, size_t allow_cap);
/* The method's name ("GET"); "OTHER" for HTTP_METHOD_OTHER. */
const char *router_method_name(enum http_method m);
