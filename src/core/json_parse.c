/*
 * json_parse.c - strict RFC 8259 parser into an arena-backed DOM (see json.h).
 *
 * The parser is iterative: containers are tracked in a fixed array of frames
 * (at most SLM_LIMIT_JSON_DEPTH), and the children of open containers wait
 * on one growable scratch stack of members. When a container closes, its
 * children are copied into an exactly-sized array in the document's arena and
 * popped from the scratch stack. Memory (arena blocks plus scratch) is capped
 * by mem_max; input size by bytes_max.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json.h"
#include "core/str.h"

/* ---- arena ---- */

struct json_block {
    struct json_block *next;
    size_t size;
    size_t used;
    _Alignas(max_align_t) unsigned char data[];
};

struct json_doc {
    struct json_block *blocks; /* newest first */
    size_t mem_used;           /* sum of block sizes */
    size_t mem_max;
    size_t block_next; /* size of the next ordinary block */
    struct json_value root;
};

#define JSON_BLOCK_MIN 4096u
#define JSON_BLOCK_MAX (1u << 20)

/* Returns size bytes aligned to align from the arena, or NULL (code in *rc). */
static void *arena_alloc(struct json_doc *doc, size_t size, size_t align, size_t scratch, int *rc)
{
    struct json_block *b = doc->blocks;
    size_t off, need, total, bsize;

    if (b != NULL) {
        off = (b->used + align - 1) & ~(align - 1);
        if (off <= b->size && b->size - off >= size) {
            b->used = off + size;
            return b->data + off;
        }
    }
    bsize = doc->block_next;
    if (size > bsize) bsize = size;
    if (!slm_add_size(bsize, sizeof(*b), &need) || !slm_add_size(doc->mem_used, need, &total) ||
        !slm_add_size(total, scratch, &total) || total > doc->mem_max) {
        *rc = SLM_ELIMIT;
        return NULL;
    }
    b = slm_malloc(need);
    if (b == NULL) {
        *rc = SLM_ENOMEM;
        return NULL;
    }
    b->size = bsize;
    b->used = size;
    b->next = doc->blocks;
    doc->blocks = b;
    doc->mem_used += need;
    if (doc->block_next < JSON_BLOCK_MAX) doc->block_next *= 2;
    return b->data;
}

/* Frees a document and all its arena blocks. NULL is a no-op. */
void json_doc_free(struct json_doc *doc)
{
    struct json_block *b, *next;

    if (doc == NULL) return;
    for (b = doc->blocks; b != NULL; b = next) {
        next = b->next;
        slm_free(b);
    }
    slm_free(doc);
}

/* Returns the root value of a parsed document (borrowed, lives as long as doc). */
const struct json_value *json_doc_root(const struct json_doc *doc)
{
    return &doc->root;
}

/* Returns the bytes of arena memory held by doc. */
size_t json_doc_mem(const struct json_doc *doc)
{
    return doc->mem_used;
}

/* Returns the default limits: SLM_LIMIT_JSON_BYTES, _DEPTH and _MEM. */
struct json_parse_params json_parse_params_default(void)
{
    struct json_parse_params p = {
        .bytes_max = SLM_LIMIT_JSON_BYTES,
        .depth_max = SLM_LIMIT_JSON_DEPTH,
        .mem_max = SLM_LIMIT_JSON_MEM,
    };
    return p;
}

/* ---- parser state ---- */

struct json_frame {
    size_t base; /* first scratch index of this container's children */
    bool is_obj;
};

struct json_parser {
    const unsigned char *start;
    const unsigned char *p;
    const unsigned char *end;
    struct json_doc *doc;
    struct json_pos *pos;
    struct slm_diag *d;
    unsigned depth_max;
    unsigned depth;
    struct json_frame frames[SLM_LIMIT_JSON_DEPTH];
    struct json_member *stack; /* scratch: children of open containers */
    size_t n_stack;
    size_t stack_cap;
};

/* Describes the byte at q for messages: 'x', byte 0x0a, or end of input. */
static void describe_at(const struct json_parser *ps, const unsigned char *q, char *out, size_t n)
{
    if (q >= ps->end)
        snprintf(out, n, "end of input");
    else if (*q >= 0x21 && *q < 0x7f)
        snprintf(out, n, "'%c'", *q);
    else
        snprintf(out, n, "byte 0x%02x", *q);
}

/* Records an error at q: fills pos and the diag, returns code. */
static int fail_at(struct json_parser *ps, const unsigned char *q, int code, const char *what)
{
    size_t off = (size_t)(q - ps->start), line = 1, col = 1;

    for (const unsigned char *r = ps->start; r < q; r++) {
        if (*r == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (ps->pos != NULL) {
        ps->pos->offset = off;
        ps->pos->line = line;
        ps->pos->column = col;
    }
    return slm_diag_set(ps->d, code, "json: line %zu column %zu (offset %zu): %s", line, col, off,
                        what);
}

/* Error "expected X, got Y" at q. */
static int fail_expected(struct json_parser *ps, const unsigned char *q, const char *expected)
{
    char got[32], msg[160];

    describe_at(ps, q, got, sizeof(got));
    snprintf(msg, sizeof(msg), "expected %s, got %s", expected, got);
    return fail_at(ps, q, SLM_EFORMAT, msg);
}

/* Error for a failed allocation or memory cap. */
static int fail_mem(struct json_parser *ps, int rc)
{
    char msg[128];

    if (rc == SLM_ENOMEM) return fail_at(ps, ps->p, rc, "out of memory");
    snprintf(msg, sizeof(msg), "document needs more than %zu bytes of memory", ps->doc->mem_max);
    return fail_at(ps, ps->p, rc, msg);
}

static void skip_ws(struct json_parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

/* Pushes one member on the scratch stack; returns 0 or an error. */
static int stack_push(struct json_parser *ps, const struct json_member *m)
{
    if (ps->n_stack == ps->stack_cap) {
        size_t cap = ps->stack_cap == 0 ? 16 : ps->stack_cap * 2, bytes, total;
        struct json_member *s;

        if (!slm_mul_size(cap, sizeof(*s), &bytes) ||
            !slm_add_size(ps->doc->mem_used, bytes, &total) || total > ps->doc->mem_max)
            return fail_mem(ps, SLM_ELIMIT);
        s = slm_realloc(ps->stack, bytes);
        if (s == NULL) return fail_mem(ps, SLM_ENOMEM);
        ps->stack = s;
        ps->stack_cap = cap;
    }
    ps->stack[ps->n_stack++] = *m;
    return 0;
}

static void *doc_alloc(struct json_parser *ps, size_t size, size_t align, int *rc)
{
    return arena_alloc(ps->doc, size, align, ps->stack_cap * sizeof(struct json_member), rc);
}

/* ---- strings ---- */

static int hex_val(unsigned c)
{
    if (c >= '0' && c <= '9') return (int)(c - '0');
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    return -1;
}

/* Reads 4 hex digits at q (q + 4 <= end checked by caller); -1 if not hex. */
static long read_hex4(const unsigned char *q)
{
    long v = 0;

    for (int k = 0; k < 4; k++) {
        int h = hex_val(q[k]);

        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/*
 * Validates the string starting at ps->p (the opening quote) and stores the
 * position of the closing quote in *close. Pass one of two: nothing is
 * written, so errors leave no partial output.
 */
static int scan_string(struct json_parser *ps, const unsigned char **close)
{
    const unsigned char *q = ps->p + 1;
    char msg[96];

    while (q < ps->end) {
        unsigned c = *q;

        if (c == '"') {
            *close = q;
            return 0;
        }
        if (c == '\\') {
            long cp, lo;

            if (q + 1 >= ps->end) break;
            switch (q[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                q += 2;
                continue;
            case 'u':
                break;
            default:
                return fail_expected(ps, q + 1, "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u");
            }
            if (ps->end - q < 6 || (cp = read_hex4(q + 2)) < 0)
                return fail_at(ps, q, SLM_EFORMAT, "expected 4 hex digits after \\u");
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                snprintf(msg, sizeof(msg), "lone low surrogate \\u%04lx", (unsigned long)cp);
                return fail_at(ps, q, SLM_EFORMAT, msg);
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (ps->end - q < 12 || q[6] != '\\' || q[7] != 'u' ||
                    (lo = read_hex4(q + 8)) < 0xdc00 || lo > 0xdfff) {
                    snprintf(msg, sizeof(msg),
                             "high surrogate \\u%04lx not followed by a low surrogate escape",
                             (unsigned long)cp);
                    return fail_at(ps, q, SLM_EFORMAT, msg);
                }
                q += 12;
                continue;
            }
            q += 6;
            continue;
        }
        if (c < 0x20) {
            snprintf(msg, sizeof(msg), "control character U+%04X in string must be escaped", c);
            return fail_at(ps, q, SLM_EFORMAT, msg);
        }
        if (c < 0x80) {
            q++;
            continue;
        }
        size_t n = slm_utf8_seq_len((const char *)q, (size_t)(ps->end - q));

        if (n == 0) return fail_at(ps, q, SLM_EFORMAT, "invalid UTF-8 in string");
        q += n;
    }
    return fail_at(ps, ps->p, SLM_EFORMAT, "unterminated string");
}

/* Parses a string at ps->p into a new NUL-terminated arena copy. */
static int parse_string(struct json_parser *ps, const char **out, size_t *out_len)
{
    const unsigned char *close = NULL, *q;
    unsigned char *o, *o0;
    size_t raw_len, need;
    int rc;

    rc = scan_string(ps, &close);
    if (rc < 0) return rc;
    raw_len = (size_t)(close - ps->p - 1);
    /* Decoding never grows: every escape is at least as long as its UTF-8. */
    if (!slm_add_size(raw_len, 1, &need)) return fail_mem(ps, SLM_ELIMIT);
    o0 = o = doc_alloc(ps, need, 1, &rc);
    if (o == NULL) return fail_mem(ps, rc);
    for (q = ps->p + 1; q < close;) {
        if (*q != '\\') {
            *o++ = *q++;
            continue;
        }
        switch (q[1]) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            unsigned long cp = (unsigned long)read_hex4(q + 2);

            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned long lo = (unsigned long)read_hex4(q + 8);

                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                q += 6;
            }
            o += slm_utf8_encode((uint32_t)cp, (char *)o);
            q += 6;
            continue;
        }
        default: /* '"', '\\', '/' */
            *o++ = q[1];
            break;
        }
        q += 2;
    }
    *o = '\0';
    *out = (const char *)o0;
    *out_len = (size_t)(o - o0);
    ps->p = close + 1;
    return 0;
}

/* ---- numbers ---- */

static bool is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

/* Parses a number at ps->p into v. */
static int parse_number(struct json_parser *ps, struct json_value *v)
{
    const unsigned char *q = ps->p, *s = ps->p;
    bool neg = false, is_int = true;
    uint64_t acc = 0;
    bool overflow = false;
    char tmp[SLM_LIMIT_JSON_NUMBER + 1], msg[96];
    double dv;
    char *endp;
    size_t n;

    if (*q == '-') {
        neg = true;
        q++;
    }
    if (q >= ps->end || !is_digit(*q)) return fail_expected(ps, q, "a digit after '-'");
    if (*q == '0') {
        q++;
        if (q < ps->end && is_digit(*q))
            return fail_at(ps, s, SLM_EFORMAT, "numbers must not have leading zeros");
    } else {
        while (q < ps->end && is_digit(*q)) {
            unsigned dgt = *q - '0';

            if (!slm_mul_u64(acc, 10, &acc) || !slm_add_u64(acc, dgt, &acc)) overflow = true;
            q++;
        }
    }
    if (q < ps->end && *q == '.') {
        is_int = false;
        q++;
        if (q >= ps->end || !is_digit(*q)) return fail_expected(ps, q, "a digit after '.'");
        while (q < ps->end && is_digit(*q))
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        is_int = false;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || !is_digit(*q)) return fail_expected(ps, q, "a digit in the exponent");
        while (q < ps->end && is_digit(*q))
            q++;
    }
    n = (size_t)(q - s);
    if (n > SLM_LIMIT_JSON_NUMBER) {
        snprintf(msg, sizeof(msg), "number longer than %u characters", SLM_LIMIT_JSON_NUMBER);
        return fail_at(ps, s, SLM_ELIMIT, msg);
    }
    /* "-0" stays a double (-0.0) so that writing it back gives "-0" again. */
    if (is_int && !overflow && !(neg && acc == 0)) {
        if (!neg && acc <= (uint64_t)INT64_MAX) {
            v->type = JSON_INT;
            v->u.i = (int64_t)acc;
            ps->p = q;
            return 0;
        }
        if (neg && acc <= (uint64_t)INT64_MAX + 1) {
            v->type = JSON_INT;
            v->u.i = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
            ps->p = q;
            return 0;
        }
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    dv = strtod(tmp, &endp);
    if (endp != tmp + n) return fail_at(ps, s, SLM_EFORMAT, "malformed number");
    if (isinf(dv)) {
        snprintf(msg, sizeof(msg), "number %.40s%s is out of range of a double", tmp,
                 n > 40 ? "..." : "");
        return fail_at(ps, s, SLM_ERANGE, msg);
    }
    v->type = JSON_DOUBLE;
    v->flags = is_int ? JSON_FLAG_INT_SYNTAX : 0;
    v->u.d = dv;
    ps->p = q;
    return 0;
}

/* ---- containers ---- */

static int key_cmp(const void *a, const void *b)
{
    const struct json_member *x = *(const struct json_member *const *)a;
    const struct json_member *y = *(const struct json_member *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);

    if (c != 0) return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* Reports a duplicate key, printing it with non-printable bytes as '?'. */
static int fail_dup(struct json_parser *ps, const struct json_member *m)
{
    char key[68], msg[128];
    size_t n = m->key_len < 64 ? m->key_len : 64;

    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)m->key[k];

        key[k] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    key[n] = '\0';
    snprintf(msg, sizeof(msg), "duplicate key '%s%s' in object", key, m->key_len > 64 ? "..." : "");
    return fail_at(ps, ps->p - 1, SLM_EFORMAT, msg);
}

/* Rejects an object that has a key twice: pairwise when small, sorted when large. */
static int check_dups(struct json_parser *ps, const struct json_member *m, size_t n)
{
    const struct json_member **idx;
    size_t bytes;
    int rc = 0;

    if (n <= 16) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (m[i].key_len == m[j].key_len && memcmp(m[i].key, m[j].key, m[i].key_len) == 0)
                    return fail_dup(ps, &m[i]);
        return 0;
    }
    if (!slm_mul_size(n, sizeof(*idx), &bytes)) return fail_mem(ps, SLM_ELIMIT);
    idx = slm_malloc(bytes);
    if (idx == NULL) return fail_mem(ps, SLM_ENOMEM);
    for (size_t i = 0; i < n; i++)
        idx[i] = &m[i];
    qsort(idx, n, sizeof(*idx), key_cmp);
    for (size_t i = 1; i < n && rc == 0; i++)
        if (key_cmp(&idx[i - 1], &idx[i]) == 0) rc = fail_dup(ps, idx[i]);
    slm_free(idx);
    return rc;
}

/* Closes the innermost container (ps->p is just past its bracket) into v. */
static int close_container(struct json_parser *ps, struct json_value *v)
{
    struct json_frame *f = &ps->frames[--ps->depth];
    size_t n = ps->n_stack - f->base, bytes;
    /* No stack yet (an empty container first in the document): no pointer
     * arithmetic on NULL, which is undefined even with a zero offset. */
    struct json_member *kids = ps->stack != NULL ? ps->stack + f->base : NULL;
    int rc = 0;

    memset(v, 0, sizeof(*v));
    if (f->is_obj) {
        struct json_member *m = NULL;

        rc = check_dups(ps, kids, n);
        if (rc < 0) return rc;
        if (n > 0) {
            if (!slm_mul_size(n, sizeof(*m), &bytes)) return fail_mem(ps, SLM_ELIMIT);
            m = doc_alloc(ps, bytes, _Alignof(struct json_member), &rc);
            if (m == NULL) return fail_mem(ps, rc);
            memcpy(m, kids, bytes);
        }
        v->type = JSON_OBJECT;
        v->u.obj.members = m;
        v->u.obj.n = n;
    } else {
        struct json_value *a = NULL;

        if (n > 0) {
            if (!slm_mul_size(n, sizeof(*a), &bytes)) return fail_mem(ps, SLM_ELIMIT);
            a = doc_alloc(ps, bytes, _Alignof(struct json_value), &rc);
            if (a == NULL) return fail_mem(ps, rc);
            for (size_t i = 0; i < n; i++)
                a[i] = kids[i].value;
        }
        v->type = JSON_ARRAY;
        v->u.arr.items = a;
        v->u.arr.n = n;
    }
    ps->n_stack = f->base;
    return 0;
}

/* Parses an object key and the ':' after it; pushes a member with that key. */
static int parse_key(struct json_parser *ps)
{
    struct json_member m;
    int rc;

    memset(&m, 0, sizeof(m));
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '"') return fail_expected(ps, ps->p, "a string key");
    rc = parse_string(ps, &m.key, &m.key_len);
    if (rc < 0) return rc;
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':') return fail_expected(ps, ps->p, "':' after object key");
    ps->p++;
    return stack_push(ps, &m);
}

/* Opens a container at ps->p ('[' or '{'). */
static int open_container(struct json_parser *ps, bool is_obj)
{
    char msg[64];

    if (ps->depth >= ps->depth_max) {
        snprintf(msg, sizeof(msg), "nesting deeper than %u levels", ps->depth_max);
        return fail_at(ps, ps->p, SLM_ELIMIT, msg);
    }
    ps->frames[ps->depth].base = ps->n_stack;
    ps->frames[ps->depth].is_obj = is_obj;
    ps->depth++;
    ps->p++;
    return 0;
}

/* Parses a scalar at ps->p into v, or opens a container (*opened = true). */
static int parse_value_start(struct json_parser *ps, struct json_value *v, bool *opened)
{
    int rc;

    memset(v, 0, sizeof(*v));
    *opened = false;
    skip_ws(ps);
    if (ps->p >= ps->end) return fail_expected(ps, ps->p, "a value");
    switch (*ps->p) {
    case '{':
    case '[': {
        bool is_obj = *ps->p == '{';

        rc = open_container(ps, is_obj);
        if (rc < 0) return rc;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']')) {
            ps->p++;
            return close_container(ps, v);
        }
        *opened = true;
        return is_obj ? parse_key(ps) : 0;
    }
    case '"':
        v->type = JSON_STRING;
        return parse_string(ps, &v->u.str.ptr, &v->u.str.len);
    case 't':
    case 'f':
    case 'n': {
        static const char *const lit[] = { "true", "false", "null" };
        int k = *ps->p == 't' ? 0 : *ps->p == 'f' ? 1 : 2;
        size_t n = strlen(lit[k]);

        if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit[k], n) != 0)
            return fail_expected(ps, ps->p, "a value");
        v->type = k == 2 ? JSON_NULL : JSON_BOOL;
        v->u.b = k == 0;
        ps->p += n;
        return 0;
    }
    default:
        if (*ps->p == '-' || is_digit(*ps->p)) return parse_number(ps, v);
        if (ps->p == ps->start && ps->end - ps->p >= 3 && memcmp(ps->p, "\xef\xbb\xbf", 3) == 0)
            return fail_at(ps, ps->p, SLM_EFORMAT, "byte order mark not allowed");
        return fail_expected(ps, ps->p, "a value");
    }
}

/* Runs the parse loop; the result lands in ps->doc->root. */
static int parse_document(struct json_parser *ps)
{
    struct json_value v;
    bool opened;
    int rc;

    for (;;) {
        rc = parse_value_start(ps, &v, &opened);
        if (rc < 0) return rc;
        if (opened) continue;
        /* A complete value: attach it and close every container it completes. */
        for (;;) {
            struct json_frame *f;

            if (ps->depth == 0) {
                ps->doc->root = v;
                skip_ws(ps);
                if (ps->p < ps->end)
                    return fail_expected(ps, ps->p, "end of input after the top-level value");
                return 0;
            }
            f = &ps->frames[ps->depth - 1];
            if (f->is_obj) {
                ps->stack[ps->n_stack - 1].value = v;
            } else {
                struct json_member m;

                memset(&m, 0, sizeof(m));
                m.value = v;
                rc = stack_push(ps, &m);
                if (rc < 0) return rc;
            }
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                if (f->is_obj) {
                    rc = parse_key(ps);
                    if (rc < 0) return rc;
                }
                break;
            }
            if (ps->p < ps->end && *ps->p == (f->is_obj ? '}' : ']')) {
                ps->p++;
                rc = close_container(ps, &v);
                if (rc < 0) return rc;
                continue;
            }
            return fail_expected(ps, ps->p,
                                 f->is_obj ? "',' or '}' after object member"
                                           : "',' or ']' after array element");
        }
    }
}

/*
 * Parses text[0..len) into a new document (see json.h for the policy).
 * Returns 0 and *out, or an error code with pos and d filled.
 */
int json_parse(const char *text, size_t len, const struct json_parse_params *params,
               struct json_doc **out, struct json_pos *pos, struct slm_diag *d)
{
    struct json_parse_params pp = json_parse_params_default();
    struct json_parser *ps = NULL;
    struct json_doc *doc = NULL;
    int rc;

    *out = NULL;
    if (pos != NULL) memset(pos, 0, sizeof(*pos));
    if (params != NULL) {
        if (params->bytes_max != 0) pp.bytes_max = params->bytes_max;
        if (params->depth_max != 0 && params->depth_max < SLM_LIMIT_JSON_DEPTH)
            pp.depth_max = params->depth_max;
        if (params->mem_max != 0) pp.mem_max = params->mem_max;
    }
    if (len > pp.bytes_max)
        return slm_diag_set(d, SLM_ELIMIT, "json: document of %zu bytes exceeds the limit of %zu",
                            len, pp.bytes_max);
    doc = slm_calloc(1, sizeof(*doc));
    ps = slm_calloc(1, sizeof(*ps));
    if (doc == NULL || ps == NULL) {
        rc = slm_diag_set(d, SLM_ENOMEM, "json: out of memory");
        goto out;
    }
    doc->mem_max = pp.mem_max;
    doc->block_next = JSON_BLOCK_MIN;
    ps->start = ps->p = (const unsigned char *)(text != NULL ? text : "");
    ps->end = ps->start + len;
    ps->doc = doc;
    ps->pos = pos;
    ps->d = d;
    ps->depth_max = pp.depth_max;
    rc = parse_document(ps);
    if (rc == 0) {
        *out = doc;
        doc = NULL;
    }
out:
    if (ps != NULL) slm_free(ps->stack);
    slm_free(ps);
    json_doc_free(doc);
    return rc;
}

/* ---- accessors ---- */

/* Returns a static name for a JSON type, as used in error messages. */
const char *json_type_name(enum json_type t)
{
    static const char *const names[JSON_TYPE_COUNT] = { "null",   "boolean", "integer", "number",
                                                        "string", "array",   "object" };

    return (unsigned)t < JSON_TYPE_COUNT ? names[t] : "?";
}

/* Returns borrowed: obj's member value for key[0..key_len), or NULL. */
const struct json_value *json_obj_getn(const struct json_value *obj, const char *key,
                                       size_t key_len)
{
    if (obj == NULL || obj->type != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->u.obj.n; i++) {
        const struct json_member *m = &obj->u.obj.members[i];

        if (m->key_len == key_len && memcmp(m->key, key, key_len) == 0) return &m->value;
    }
    return NULL;
}

/* Returns borrowed: obj's member value for the NUL-terminated key, or NULL. */
const struct json_value *json_obj_get(const struct json_value *obj, const char *key)
{
    return json_obj_getn(obj, key, strlen(key));
}

/* Returns borrowed: element i of arr, or NULL. */
const struct json_value *json_arr_at(const struct json_value *arr, size_t i)
{
    if (arr == NULL || arr->type != JSON_ARRAY || i >= arr->u.arr.n) return NULL;
    return &arr->u.arr.items[i];
}

/* Common checks: missing/null -> SLM_ENOTFOUND, wrong type -> SLM_EINVAL. */
static int check_type(const struct json_value *v, const char *name, enum json_type want,
                      const char *want_name, struct slm_diag *d)
{
    if (v == NULL || v->type == JSON_NULL)
        return slm_diag_set(d, SLM_ENOTFOUND, "field '%s': missing", name);
    if (v->type == want || (want == JSON_DOUBLE && v->type == JSON_INT)) return 0;
    return slm_diag_set(d, SLM_EINVAL, "field '%s': expected %s, got %s", name, want_name,
                        json_type_name((enum json_type)v->type));
}

/* Reads a boolean; see json.h for the return codes. */
int json_value_bool(const struct json_value *v, const char *name, bool *out, struct slm_diag *d)
{
    int rc = check_type(v, name, JSON_BOOL, "boolean", d);

    if (rc == 0) *out = v->u.b;
    return rc;
}

/* Reads an integer within [min, max]; see json.h. */
int json_value_int(const struct json_value *v, const char *name, int64_t min, int64_t max,
                   int64_t *out, struct slm_diag *d)
{
    int rc;

    if (v != NULL && v->type == JSON_DOUBLE && (v->flags & JSON_FLAG_INT_SYNTAX))
        return slm_diag_set(d, SLM_ERANGE, "field '%s': integer out of range [%lld, %lld]", name,
                            (long long)min, (long long)max);
    rc = check_type(v, name, JSON_INT, "integer", d);
    if (rc < 0) return rc;
    if (v->u.i < min || v->u.i > max)
        return slm_diag_set(d, SLM_ERANGE, "field '%s': %lld is out of range [%lld, %lld]", name,
                            (long long)v->u.i, (long long)min, (long long)max);
    *out = v->u.i;
    return 0;
}

/* Reads a number (integer or not) within [min, max]; see json.h. */
int json_value_double(const struct json_value *v, const char *name, double min, double max,
                      double *out, struct slm_diag *d)
{
    double x;
    int rc = check_type(v, name, JSON_DOUBLE, "number", d);

    if (rc < 0) return rc;
    x = v->type == JSON_INT ? (double)v->u.i : v->u.d;
    if (!(x >= min && x <= max))
        return slm_diag_set(d, SLM_ERANGE, "field '%s': %g is out of range [%g, %g]", name, x, min,
                            max);
    *out = x;
    return 0;
}

/* Reads a string; *out borrows the document. */
int json_value_str(const struct json_value *v, const char *name, const char **out, size_t *len,
                   struct slm_diag *d)
{
    int rc = check_type(v, name, JSON_STRING, "string", d);

    if (rc == 0) {
        *out = v->u.str.ptr;
        *len = v->u.str.len;
    }
    return rc;
}

/* Checks that v is an array. */
int json_value_array(const struct json_value *v, const char *name, struct slm_diag *d)
{
    return check_type(v, name, JSON_ARRAY, "array", d);
}

/* Checks that v is an object. */
int json_value_object(const struct json_value *v, const char *name, struct slm_diag *d)
{
    return check_type(v, name, JSON_OBJECT, "object", d);
}

int json_get_bool(const struct json_value *obj, const char *key, bool *out, struct slm_diag *d)
{
    return json_value_bool(json_obj_get(obj, key), key, out, d);
}

int json_get_int(const struct json_value *obj, const char *key, int64_t min, int64_t max,
                 int64_t *out, struct slm_diag *d)
{
    return json_value_int(json_obj_get(obj, key), key, min, max, out, d);
}

int json_get_double(const struct json_value *obj, const char *key, double min, double max,
                    double *out, struct slm_diag *d)
{
    return json_value_double(json_obj_get(obj, key), key, min, max, out, d);
}

int json_get_str(const struct json_value *obj, const char *key, const char **out, size_t *len,
                 struct slm_diag *d)
{
    return json_value_str(json_obj_get(obj, key), key, out, len, d);
}

/* ---- writing and comparing (recursion is bounded by the depth limit) ---- */

/* Writes v through w; the DOM's depth is at most the writer's. */
void json_value_write(struct json_writer *w, const struct json_value *v)
{
    switch ((enum json_type)v->type) {
    case JSON_NULL:
        json_null(w);
        break;
    case JSON_BOOL:
        json_bool(w, v->u.b);
        break;
    case JSON_INT:
        json_int(w, v->u.i);
        break;
    case JSON_DOUBLE:
        json_double(w, v->u.d);
        break;
    case JSON_STRING:
        json_str(w, v->u.str.ptr, v->u.str.len);
        break;
    case JSON_ARRAY:
        json_arr_begin(w);
        for (size_t i = 0; i < v->u.arr.n && w->rc == 0; i++)
            json_value_write(w, &v->u.arr.items[i]);
        json_arr_end(w);
        break;
    case JSON_OBJECT:
        json_obj_begin(w);
        for (size_t i = 0; i < v->u.obj.n && w->rc == 0; i++) {
            json_key_n(w, v->u.obj.members[i].key, v->u.obj.members[i].key_len);
            json_value_write(w, &v->u.obj.members[i].value);
        }
        json_obj_end(w);
        break;
    default:
        if (w->rc == 0) w->rc = SLM_EINVAL;
        break;
    }
}

/* True if integer i and double x denote the same number. */
static bool int_eq_double(int64_t i, double x)
{
    /* [-2^63, 2^63) is exactly representable at both ends. */
    if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0) || x != floor(x)) return false;
    return (int64_t)x == i;
}

/*
 * Deep equality; members compared in order. Numbers compare by value across
 * JSON_INT and JSON_DOUBLE (the writer prints 2.0 as "2", which reads back as
 * an integer).
 */
bool json_value_equal(const struct json_value *a, const struct json_value *b)
{
    if (a->type == JSON_INT && b->type == JSON_DOUBLE) return int_eq_double(a->u.i, b->u.d);
    if (a->type == JSON_DOUBLE && b->type == JSON_INT) return int_eq_double(b->u.i, a->u.d);
    if (a->type != b->type) return false;
    switch ((enum json_type)a->type) {
    case JSON_NULL:
        return true;
    case JSON_BOOL:
        return a->u.b == b->u.b;
    case JSON_INT:
        return a->u.i == b->u.i;
    case JSON_DOUBLE:
        return a->u.d == b->u.d;
    case JSON_STRING:
        return a->u.str.len == b->u.str.len &&
               memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0;
    case JSON_ARRAY:
        if (a->u.arr.n != b->u.arr.n) return false;
        for (size_t i = 0; i < a->u.arr.n; i++)
            if (!json_value_equal(&a->u.arr.items[i], &b->u.arr.items[i])) return false;
        return true;
    case JSON_OBJECT:
        if (a->u.obj.n != b->u.obj.n) return false;
        for (size_t i = 0; i < a->u.obj.n; i++) {
            const struct json_member *x = &a->u.obj.members[i], *y = &b->u.obj.members[i];

            if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) != 0 ||
                !json_value_equal(&x->value, &y->value))
                return false;
        }
        return true;
    default:
        return false;
    }
}
