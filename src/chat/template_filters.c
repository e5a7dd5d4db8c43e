/*
 * template_filters.c - Jinja2's filters and tests, the sandbox's attribute
 * rules, the methods of str / dict / list / loop, and the global functions
 * Hugging Face templates use (range, dict, namespace, raise_exception,
 * strftime_now).
 *
 * Attribute access mirrors jinja2.sandbox.ImmutableSandboxedEnvironment:
 * names starting with "_" and methods that mutate a list or dict give an
 * "unsafe" undefined; obj.name tries the Python attribute first and the key
 * second, obj[key] the other way round; a missing attribute or an index out
 * of range is undefined, and any use of an attribute of an undefined value
 * is an error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/chat_int.h"
#include "core/alloc.h"
#include "core/limits.h"

enum {
    FN_RANGE = 1,
    FN_DICT,
    FN_NAMESPACE,
    FN_RAISE,
    FN_STRFTIME,
};

static bool eq(const struct tstr *s, const char *lit)
{
    size_t n = strlen(lit);

    return s->n == n && memcmp(s->p, lit, n) == 0;
}

static bool in_list(const struct tstr *s, const char *const *names)
{
    for (size_t i = 0; names[i] != NULL; i++)
        if (eq(s, names[i])) return true;
    return false;
}

static int new_str(struct rctx *c, const char *p, size_t n, struct tv *out)
{
    char *copy = chat__arena_strdup(&c->arena, p, n);

    if (copy == NULL) return chat__oom(c);
    *out = chat__str(copy, n);
    return 0;
}

static int buf_to_str(struct rctx *c, struct slm_buf *b, int rc, struct tv *out)
{
    if (rc == 0)
        rc = new_str(c, b->data ? b->data : "", b->len, out);
    else if (rc == SLM_ELIMIT)
        rc = chat__fail(c, SLM_ELIMIT, "string exceeds %zu bytes", c->out_max);
    else if (rc == SLM_ENOMEM)
        rc = chat__fail(c, SLM_ENOMEM, "out of memory");
    slm_buf_fini(b);
    return rc;
}

/* ---- argument binding ---- */

/* Binds a's positional and keyword arguments to params (NULL-terminated). */
static int bind(struct rctx *c, const char *what, const struct targs *a, const char *const *params,
                struct tv *slots, bool *have)
{
    size_t np = 0, pos = 0;

    while (params[np] != NULL) {
        have[np] = false;
        np++;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (a->name[i].n == 0) {
            if (pos >= np)
                return chat__fail(c, SLM_EINVAL, "%s takes at most %zu argument(s)", what, np);
            slots[pos] = a->v[i];
            have[pos++] = true;
            continue;
        }
        size_t k = 0;

        while (k < np && !eq(&a->name[i], params[k]))
            k++;
        if (k == np)
            return chat__fail(c, SLM_EINVAL, "%s got an unexpected keyword argument '%.*s'", what,
                              (int)(a->name[i].n > 40 ? 40 : a->name[i].n), a->name[i].p);
        slots[k] = a->v[i];
        have[k] = true;
    }
    return 0;
}

static int need_str(struct rctx *c, const char *what, const struct tv *v)
{
    if (v->type == TV_STR) return 0;
    return chat__fail(c, SLM_EINVAL, "%s: expected a string, got %s", what, chat__type_name(v));
}

static int need_int(struct rctx *c, const char *what, const struct tv *v, int64_t *out)
{
    if (v->type == TV_INT || v->type == TV_BOOL) {
        *out = v->type == TV_INT ? v->u.i : v->u.b;
        return 0;
    }
    return chat__fail(c, SLM_EINVAL, "%s: expected an integer, got %s", what, chat__type_name(v));
}

/* soft_str(): str() of anything, "" for undefined. */
static int soft_str(struct rctx *c, const struct tv *v, struct tstr *out)
{
    return chat__to_str(c, v, out);
}

/* ---- string helpers ---- */

static bool chars_has(const struct tstr *chars, uint32_t cp)
{
    for (size_t i = 0; i < chars->n;) {
        size_t adv;

        if (chat__u8_decode(chars->p + i, chars->n - i, &adv) == cp) return true;
        i += adv;
    }
    return false;
}

/* str.strip / lstrip / rstrip with optional chars (NULL: whitespace). */
static struct tstr strip(struct tstr s, const struct tstr *chars, bool left, bool right)
{
    if (left) {
        while (s.n > 0) {
            size_t adv;
            uint32_t cp = chat__u8_decode(s.p, s.n, &adv);

            if (chars ? !chars_has(chars, cp) : !chat__py_isspace(cp)) break;
            s.p += adv;
            s.n -= adv;
        }
    }
    if (right) {
        while (s.n > 0) {
            size_t start = s.n - 1, adv;

            while (start > 0 && ((unsigned char)s.p[start] & 0xC0) == 0x80)
                start--;
            uint32_t cp = chat__u8_decode(s.p + start, s.n - start, &adv);

            if (chars ? !chars_has(chars, cp) : !chat__py_isspace(cp)) break;
            s.n = start;
        }
    }
    return s;
}

static char ascii_lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
}

static char ascii_upper(char ch)
{
    return ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
}

static bool ascii_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

enum casemode {
    CASE_LOWER,
    CASE_UPPER,
    CASE_TITLE_METHOD,
    CASE_TITLE_FILTER,
    CASE_CAPITALIZE,
    CASE_SWAP
};

/* Case mapping (ASCII letters; other characters are kept as they are). */
static int change_case(struct rctx *c, const struct tstr *s, enum casemode mode, struct tv *out)
{
    char *p = chat__arena_alloc(&c->arena, s->n + 1);
    bool prev_cased = false, word_start = true;

    if (p == NULL) return chat__oom(c);
    for (size_t i = 0; i < s->n; i++) {
        char ch = s->p[i];

        switch (mode) {
        case CASE_LOWER:
            p[i] = ascii_lower(ch);
            break;
        case CASE_UPPER:
            p[i] = ascii_upper(ch);
            break;
        case CASE_SWAP:
            p[i] = ch >= 'a' && ch <= 'z' ? ascii_upper(ch) : ascii_lower(ch);
            break;
        case CASE_CAPITALIZE:
            p[i] = i == 0 ? ascii_upper(ch) : ascii_lower(ch);
            break;
        case CASE_TITLE_METHOD:
            /* str.title(): upper after an uncased character, lower after a cased one. */
            p[i] = prev_cased ? ascii_lower(ch) : ascii_upper(ch);
            prev_cased = ascii_alpha(ch) || (unsigned char)ch >= 0x80;
            break;
        case CASE_TITLE_FILTER:
            /* Jinja's title filter: words start after -, whitespace, ( { [ < */
            p[i] = word_start ? ascii_upper(ch) : ascii_lower(ch);
            word_start = ch == '-' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' ||
                         ch == '\f' || ch == '\v' || ch == '(' || ch == '{' || ch == '[' ||
                         ch == '<';
            break;
        }
    }
    *out = chat__str(p, s->n);
    return 0;
}

static int str_replace(struct rctx *c, const struct tstr *s, const struct tstr *old,
                       const struct tstr *new, int64_t count, struct tv *out)
{
    struct slm_buf b;
    int rc = 0;
    size_t i = 0;
    int64_t done = 0;

    slm_buf_init(&b, c->out_max);
    if (old->n == 0) {
        /* Python inserts new before every character and at the end. */
        while (rc == 0 && i <= s->n) {
            size_t adv = 0;

            if (count < 0 || done < count) {
                rc = slm_buf_append(&b, new->p, new->n);
                done++;
            }
            if (i < s->n) {
                chat__u8_decode(s->p + i, s->n - i, &adv);
                if (rc == 0) rc = slm_buf_append(&b, s->p + i, adv);
                i += adv;
            } else {
                break;
            }
        }
        return buf_to_str(c, &b, rc, out);
    }
    while (rc == 0 && i < s->n) {
        const char *hit =
            (count < 0 || done < count) ? memmem(s->p + i, s->n - i, old->p, old->n) : NULL;

        if (hit == NULL) {
            rc = slm_buf_append(&b, s->p + i, s->n - i);
            break;
        }
        rc = slm_buf_append(&b, s->p + i, (size_t)(hit - (s->p + i)));
        if (rc == 0) rc = slm_buf_append(&b, new->p, new->n);
        i = (size_t)(hit - s->p) + old->n;
        done++;
        if (++c->steps > c->steps_max) {
            rc = chat__fail(c, SLM_ELIMIT, "render exceeds %llu steps",
                            (unsigned long long)c->steps_max);
            break;
        }
    }
    return buf_to_str(c, &b, rc, out);
}

/* str.split(sep=None, maxsplit=-1); rsplit when right. */
static int str_split(struct rctx *c, const struct tstr *s, const struct tv *sep, int64_t maxsplit,
                     bool right, struct tv *out)
{
    struct tstr parts_buf[64], *parts = parts_buf;
    size_t n = 0, cap = 64;
    int rc;

    (void)right;
#define PUSH(pp, nn)                                                                     \
    do {                                                                                 \
        if (n == cap) {                                                                  \
            struct tstr *grown = chat__arena_alloc(&c->arena, cap * 2 * sizeof(*grown)); \
            if (grown == NULL) return chat__oom(c);                                      \
            memcpy(grown, parts, n * sizeof(*grown));                                    \
            parts = grown;                                                               \
            cap *= 2;                                                                    \
        }                                                                                \
        parts[n].p = (pp);                                                               \
        parts[n].n = (nn);                                                               \
        n++;                                                                             \
    } while (0)

    if (sep == NULL || sep->type == TV_NONE) {
        if (right) {
            size_t end = s->n;
            int64_t splits = 0;

            for (;;) {
                struct tstr rest = { s->p, end };

                rest.n -= chat__rstrip_len(rest.p, rest.n);
                if (rest.n == 0) break;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    PUSH(rest.p, rest.n);
                    break;
                }
                size_t k = rest.n;

                while (k > 0) {
                    size_t st = k - 1, adv;

                    while (st > 0 && ((unsigned char)rest.p[st] & 0xC0) == 0x80)
                        st--;
                    if (chat__py_isspace(chat__u8_decode(rest.p + st, k - st, &adv))) break;
                    k = st;
                }
                PUSH(rest.p + k, rest.n - k);
                splits++;
                end = k;
            }
            for (size_t i = 0; i < n / 2; i++) {
                struct tstr t = parts[i];

                parts[i] = parts[n - 1 - i];
                parts[n - 1 - i] = t;
            }
        } else {
            size_t i = 0;
            int64_t splits = 0;

            for (;;) {
                i += chat__lstrip_len(s->p + i, s->n - i);
                if (i >= s->n) break;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    struct tstr rest = { s->p + i, s->n - i };

                    rest.n -= chat__rstrip_len(rest.p, rest.n);
                    PUSH(rest.p, rest.n);
                    break;
                }
                size_t start = i;

                while (i < s->n) {
                    size_t adv;

                    if (chat__py_isspace(chat__u8_decode(s->p + i, s->n - i, &adv))) break;
                    i += adv;
                }
                PUSH(s->p + start, i - start);
                splits++;
            }
        }
    } else {
        struct tstr d;

        if ((rc = need_str(c, "split", sep)) < 0) return rc;
        d = sep->u.s;
        if (d.n == 0) return chat__fail(c, SLM_EINVAL, "empty separator");
        if (right) {
            size_t end = s->n;
            int64_t splits = 0;

            for (;;) {
                const char *hit = NULL;

                if (maxsplit < 0 || splits < maxsplit) {
                    for (size_t k = end; k >= d.n; k--) {
                        if (memcmp(s->p + k - d.n, d.p, d.n) == 0) {
                            hit = s->p + k - d.n;
                            break;
                        }
                    }
                }
                if (hit == NULL) {
                    PUSH(s->p, end);
                    break;
                }
                PUSH(hit + d.n, end - (size_t)(hit - s->p) - d.n);
                end = (size_t)(hit - s->p);
                splits++;
            }
            for (size_t i = 0; i < n / 2; i++) {
                struct tstr t = parts[i];

                parts[i] = parts[n - 1 - i];
                parts[n - 1 - i] = t;
            }
        } else {
            size_t i = 0;
            int64_t splits = 0;

            for (;;) {
                const char *hit = (maxsplit < 0 || splits < maxsplit)
                                      ? memmem(s->p + i, s->n - i, d.p, d.n)
                                      : NULL;

                if (hit == NULL) {
                    PUSH(s->p + i, s->n - i);
                    break;
                }
                PUSH(s->p + i, (size_t)(hit - (s->p + i)));
                i = (size_t)(hit - s->p) + d.n;
                splits++;
            }
        }
    }
#undef PUSH
    if ((rc = chat__list_new(c, n, out)) < 0) return rc;
    for (size_t i = 0; i < n; i++)
        out->u.l->items[i] = chat__str(parts[i].p, parts[i].n);
    c->steps += n;
    return 0;
}

/* ---- filters ---- */

typedef int filter_fn(struct rctx *c, struct tv *self, struct targs *a, struct tv *out);

static int f_trim(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "chars", NULL };
    struct tv slots[1];
    bool have[1];
    struct tstr s;
    int rc;

    if ((rc = bind(c, "trim", a, params, slots, have)) < 0 || (rc = soft_str(c, self, &s)) < 0)
        return rc;
    if (have[0] && slots[0].type != TV_NONE) {
        if ((rc = need_str(c, "trim", &slots[0])) < 0) return rc;
        s = strip(s, &slots[0].u.s, true, true);
    } else {
        s = strip(s, NULL, true, true);
    }
    *out = chat__str(s.p, s.n);
    return 0;
}

static int length_of(struct rctx *c, const struct tv *v, int64_t *out)
{
    switch (v->type) {
    case TV_UNDEF:
        *out = 0;
        return 0;
    case TV_STR:
        *out = (int64_t)chat__u8_len(v->u.s.p, v->u.s.n);
        return 0;
    case TV_LIST:
        if (v->flags & TV_F_GEN) break;
        *out = (int64_t)v->u.l->n;
        return 0;
    case TV_DICT:
        *out = (int64_t)v->u.m->n;
        return 0;
    case TV_LOOP:
        *out = (int64_t)v->u.loop->items->n;
        return 0;
    default:
        break;
    }
    return chat__fail(c, SLM_EINVAL, "object of type '%s' has no len()", chat__type_name(v));
}

static int f_length(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    int64_t n = 0;
    int rc;

    if (a->n > 0) return chat__fail(c, SLM_EINVAL, "length takes no arguments");
    if ((rc = length_of(c, self, &n)) < 0) return rc;
    *out = chat__int(n);
    return 0;
}

static int tojson_with(struct rctx *c, const struct tv *v, struct tojson_opts *o, struct tv *out)
{
    struct slm_buf b;
    int rc;

    slm_buf_init(&b, c->out_max);
    rc = chat__tojson(c, &b, v, o, 0);
    return buf_to_str(c, &b, rc, out);
}

static int f_tojson(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "ensure_ascii", "indent", "separators", "sort_keys",
                                          NULL };
    struct tv slots[4];
    bool have[4];
    struct tojson_opts o = { 0 };
    char spaces[64];
    int rc;

    if ((rc = bind(c, "tojson", a, params, slots, have)) < 0) return rc;
    o.ensure_ascii = have[0] && chat__truthy(&slots[0]);
    o.sort_keys = have[3] && chat__truthy(&slots[3]);
    o.item_sep = (struct tstr){ ", ", 2 };
    o.key_sep = (struct tstr){ ": ", 2 };
    if (have[1] && slots[1].type != TV_NONE) {
        if (slots[1].type == TV_STR) {
            o.indent = slots[1].u.s.p;
            o.indent_len = slots[1].u.s.n;
        } else {
            int64_t w = 0;

            if ((rc = need_int(c, "tojson indent", &slots[1], &w)) < 0) return rc;
            if (w > (int64_t)sizeof(spaces))
                return chat__fail(c, SLM_ELIMIT, "tojson indent %lld is over 64", (long long)w);
            memset(spaces, ' ', sizeof(spaces));
            o.indent = spaces;
            o.indent_len = w > 0 ? (size_t)w : 0;
        }
        o.item_sep = (struct tstr){ ",", 1 };
    }
    if (have[2] && slots[2].type != TV_NONE) {
        if (slots[2].type != TV_LIST || slots[2].u.l->n != 2 ||
            slots[2].u.l->items[0].type != TV_STR || slots[2].u.l->items[1].type != TV_STR)
            return chat__fail(c, SLM_EINVAL, "tojson separators must be two strings");
        o.item_sep = slots[2].u.l->items[0].u.s;
        o.key_sep = slots[2].u.l->items[1].u.s;
    }
    return tojson_with(c, self, &o, out);
}

static int f_string(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    struct tstr s;
    int rc;

    (void)a;
    if ((rc = soft_str(c, self, &s)) < 0) return rc;
    *out = chat__str(s.p, s.n);
    return 0;
}

static int case_filter(struct rctx *c, struct tv *self, enum casemode mode, struct tv *out)
{
    struct tstr s;
    int rc;

    if ((rc = soft_str(c, self, &s)) < 0) return rc;
    return change_case(c, &s, mode, out);
}

static int f_lower(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    (void)a;
    return case_filter(c, self, CASE_LOWER, out);
}

static int f_upper(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    (void)a;
    return case_filter(c, self, CASE_UPPER, out);
}

static int f_title(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    (void)a;
    return case_filter(c, self, CASE_TITLE_FILTER, out);
}

static int f_capitalize(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    (void)a;
    return case_filter(c, self, CASE_CAPITALIZE, out);
}

static int f_replace(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "old", "new", "count", NULL };
    struct tv slots[3];
    bool have[3];
    struct tstr s, o, n;
    int64_t count = -1;
    int rc;

    if ((rc = bind(c, "replace", a, params, slots, have)) < 0) return rc;
    if (!have[0] || !have[1]) return chat__fail(c, SLM_EINVAL, "replace needs old and new");
    if ((rc = soft_str(c, self, &s)) < 0 || (rc = soft_str(c, &slots[0], &o)) < 0 ||
        (rc = soft_str(c, &slots[1], &n)) < 0)
        return rc;
    if (have[2] && slots[2].type != TV_NONE && (rc = need_int(c, "replace", &slots[2], &count)) < 0)
        return rc;
    return str_replace(c, &s, &o, &n, count, out);
}

static int f_default(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "default_value", "boolean", NULL };
    struct tv slots[2];
    bool have[2];
    int rc;

    if ((rc = bind(c, "default", a, params, slots, have)) < 0) return rc;
    if (self->type == TV_UNDEF || (have[1] && chat__truthy(&slots[1]) && !chat__truthy(self)))
        *out = have[0] ? slots[0] : chat__str("", 0);
    else
        *out = *self;
    return 0;
}

static int attr_path(struct rctx *c, const struct tv *item, const struct tv *attr, struct tv *out);

static int f_join(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "d", "attribute", NULL };
    struct tv slots[2];
    bool have[2];
    struct tlist items;
    struct tstr sep = { "", 0 };
    struct slm_buf b;
    int rc;

    if ((rc = bind(c, "join", a, params, slots, have)) < 0 ||
        (rc = chat__iterate(c, self, &items)) < 0)
        return rc;
    if (have[0] && (rc = soft_str(c, &slots[0], &sep)) < 0) return rc;
    slm_buf_init(&b, c->out_max);
    for (size_t i = 0; rc == 0 && i < items.n; i++) {
        struct tv it = items.items[i];

        if (i > 0) rc = slm_buf_append(&b, sep.p, sep.n);
        if (rc == 0 && have[1] && slots[1].type != TV_NONE)
            rc = attr_path(c, &items.items[i], &slots[1], &it);
        if (rc == 0) rc = chat__write_str(c, &b, &it, false);
    }
    return buf_to_str(c, &b, rc, out);
}

static int f_first(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    struct tlist items;
    int rc;

    (void)a;
    if ((rc = chat__iterate(c, self, &items)) < 0) return rc;
    *out = items.n > 0 ? items.items[0] : chat__undef((struct tstr){ NULL, 0 });
    return 0;
}

static int f_last(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    struct tlist items;
    int rc;

    (void)a;
    if (self->type == TV_LIST && (self->flags & TV_F_GEN))
        return chat__fail(c, SLM_EINVAL, "'generator' object is not reversible");
    if ((rc = chat__iterate(c, self, &items)) < 0) return rc;
    *out = items.n > 0 ? items.items[items.n - 1] : chat__undef((struct tstr){ NULL, 0 });
    return 0;
}

static int f_list(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    struct tlist items;
    int rc;

    (void)a;
    if ((rc = chat__iterate(c, self, &items)) < 0 || (rc = chat__list_new(c, items.n, out)) < 0)
        return rc;
    if (items.n > 0) memcpy(out->u.l->items, items.items, items.n * sizeof(struct tv));
    return 0;
}

static int f_items(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    int rc;

    (void)a;
    if (self->type == TV_UNDEF) return chat__list_new(c, 0, out);
    if (self->type != TV_DICT)
        return chat__fail(c, SLM_EINVAL, "can only get item pairs from a mapping");
    if ((rc = chat__list_new(c, self->u.m->n, out)) < 0) return rc;
    for (size_t i = 0; i < self->u.m->n; i++) {
        struct tv pair;

        if ((rc = chat__list_new(c, 2, &pair)) < 0) return rc;
        pair.flags = TV_F_TUPLE;
        pair.u.l->items[0] = self->u.m->keys[i];
        pair.u.l->items[1] = self->u.m->vals[i];
        out->u.l->items[i] = pair;
    }
    out->flags = TV_F_GEN;
    return 0;
}

/* environment.getitem for a dotted attribute path ("a.b", "0"). */
static int attr_path(struct rctx *c, const struct tv *item, const struct tv *attr, struct tv *out)
{
    struct tstr path;
    int rc;

    if (attr->type == TV_INT) {
        return chat__getitem(c, item, attr, out);
    }
    if ((rc = soft_str(c, attr, &path)) < 0) return rc;
    *out = *item;
    while (path.n > 0) {
        const char *dot = memchr(path.p, '.', path.n);
        size_t n = dot ? (size_t)(dot - path.p) : path.n;
        struct tv key = chat__str(path.p, n), cur = *out;
        bool digits = n > 0;

        for (size_t i = 0; i < n; i++)
            if (path.p[i] < '0' || path.p[i] > '9') digits = false;
        if (digits && n < 18) {
            int64_t v = 0;

            for (size_t i = 0; i < n; i++)
                v = v * 10 + (path.p[i] - '0');
            key = chat__int(v);
        }
        if ((rc = chat__getitem(c, &cur, &key, out)) < 0) return rc;
        if (dot == NULL) break;
        path.p += n + 1;
        path.n -= n + 1;
    }
    return 0;
}

/* select / reject / selectattr / rejectattr */
static int select_common(struct rctx *c, struct tv *self, struct targs *a, bool use_attr, bool want,
                         struct tv *out)
{
    struct tlist items;
    struct targs targs;
    size_t first_arg = use_attr ? 1 : 0;
    struct tstr test_name = { NULL, 0 };
    int rc;

    if ((rc = chat__iterate(c, self, &items)) < 0) return rc;
    if (use_attr && (a->n < 1 || a->name[0].n != 0))
        return chat__fail(c, SLM_EINVAL, "selectattr/rejectattr need an attribute name");
    if (a->n > first_arg) {
        if (a->name[first_arg].n != 0 || a->v[first_arg].type != TV_STR)
            return chat__fail(c, SLM_EINVAL, "select: the test name must be a string");
        test_name = a->v[first_arg].u.s;
        if (!chat__has_test(&test_name))
            return chat__fail(c, SLM_EINVAL, "no test named '%.*s'",
                              (int)(test_name.n > 40 ? 40 : test_name.n), test_name.p);
    }
    targs.n = 0;
    for (size_t i = first_arg + 1; i < a->n; i++) {
        targs.v[targs.n] = a->v[i];
        targs.name[targs.n] = a->name[i];
        targs.n++;
    }
    if ((rc = chat__list_new(c, items.n, out)) < 0) return rc;
    out->u.l->n = 0;
    out->flags = TV_F_GEN;
    for (size_t i = 0; i < items.n; i++) {
        struct tv v = items.items[i];
        bool r = false;

        if (use_attr && (rc = attr_path(c, &items.items[i], &a->v[0], &v)) < 0) return rc;
        if (test_name.p != NULL) {
            struct targs copy = targs;

            if ((rc = chat__test(c, &test_name, &v, &copy, &r)) < 0) return rc;
        } else {
            r = chat__truthy(&v);
        }
        if (r == want) out->u.l->items[out->u.l->n++] = items.items[i];
    }
    return 0;
}

static int f_select(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    return select_common(c, self, a, false, true, out);
}

static int f_reject(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    return select_common(c, self, a, false, false, out);
}

static int f_selectattr(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    return select_common(c, self, a, true, true, out);
}

static int f_rejectattr(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    return select_common(c, self, a, true, false, out);
}

static int f_map(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    struct tlist items;
    int rc;

    if ((rc = chat__iterate(c, self, &items)) < 0 || (rc = chat__list_new(c, items.n, out)) < 0)
        return rc;
    out->flags = TV_F_GEN;
    if (a->n > 0 && a->name[0].n > 0) {
        struct tv attr = chat__undef((struct tstr){ NULL, 0 }), def;
        bool have_def = false;

        for (size_t i = 0; i < a->n; i++) {
            if (eq(&a->name[i], "attribute"))
                attr = a->v[i];
            else if (eq(&a->name[i], "default")) {
                def = a->v[i];
                have_def = true;
            } else
                return chat__fail(c, SLM_EINVAL, "map got an unexpected keyword argument '%.*s'",
                                  (int)a->name[i].n, a->name[i].p);
        }
        if (attr.type == TV_UNDEF)
            return chat__fail(c, SLM_EINVAL, "map needs attribute= or a filter name");
        for (size_t i = 0; i < items.n; i++) {
            if ((rc = attr_path(c, &items.items[i], &attr, &out->u.l->items[i])) < 0) return rc;
            if (have_def && out->u.l->items[i].type == TV_UNDEF) out->u.l->items[i] = def;
        }
        return 0;
    }
    if (a->n == 0 || a->v[0].type != TV_STR)
        return chat__fail(c, SLM_EINVAL, "map needs attribute= or a filter name");
    if (!chat__has_filter(&a->v[0].u.s))
        return chat__fail(c, SLM_EINVAL, "no filter named '%.*s'",
                          (int)(a->v[0].u.s.n > 40 ? 40 : a->v[0].u.s.n), a->v[0].u.s.p);
    for (size_t i = 0; i < items.n; i++) {
        struct targs rest;

        rest.n = 0;
        for (size_t k = 1; k < a->n; k++) {
            rest.v[rest.n] = a->v[k];
            rest.name[rest.n] = a->name[k];
            rest.n++;
        }
        if ((rc = chat__filter(c, &a->v[0].u.s, &items.items[i], &rest, &out->u.l->items[i])) < 0)
            return rc;
    }
    return 0;
}

/* Key for unique/sort/min/max: the attribute, lower-cased when insensitive. */
static int sort_key(struct rctx *c, const struct tv *item, const struct tv *attr, bool cs,
                    struct tv *out)
{
    int rc;

    *out = *item;
    if (attr != NULL && attr->type != TV_NONE && (rc = attr_path(c, item, attr, out)) < 0)
        return rc;
    if (!cs && out->type == TV_STR) return change_case(c, &out->u.s, CASE_LOWER, out);
    return 0;
}

static int f_unique(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "case_sensitive", "attribute", NULL };
    struct tv slots[2], keys;
    bool have[2], cs;
    struct tlist items;
    int rc;

    if ((rc = bind(c, "unique", a, params, slots, have)) < 0 ||
        (rc = chat__iterate(c, self, &items)) < 0 || (rc = chat__list_new(c, items.n, out)) < 0 ||
        (rc = chat__list_new(c, items.n, &keys)) < 0)
        return rc;
    cs = have[0] && chat__truthy(&slots[0]);
    out->flags = TV_F_GEN;
    out->u.l->n = 0;
    for (size_t i = 0; i < items.n; i++) {
        struct tv k;
        bool seen = false;

        if ((rc = sort_key(c, &items.items[i], have[1] ? &slots[1] : NULL, cs, &k)) < 0) return rc;
        for (size_t j = 0; j < out->u.l->n && !seen; j++) {
            seen = chat__equal(&keys.u.l->items[j], &k);
            c->steps++;
        }
        if (!seen) {
            keys.u.l->items[out->u.l->n] = k;
            out->u.l->items[out->u.l->n++] = items.items[i];
        }
    }
    return 0;
}

static int f_safe(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    (void)a;
    if (self->type == TV_STR) {
        *out = *self;
        return 0;
    }
    return f_string(c, self, a, out);
}

static int splitlines(struct rctx *c, const struct tstr *s, bool keepends, struct tv *out);

static int f_indent(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "width", "first", "blank", NULL };
    struct tv slots[3], lines;
    bool have[3], first, blank;
    struct tstr s, ind = { "    ", 4 };
    struct slm_buf b;
    char *withnl;
    int rc;

    if ((rc = bind(c, "indent", a, params, slots, have)) < 0 || (rc = soft_str(c, self, &s)) < 0)
        return rc;
    if (have[0]) {
        if (slots[0].type == TV_STR) {
            ind = slots[0].u.s;
        } else {
            int64_t w = 0;
            char *sp;

            if ((rc = need_int(c, "indent", &slots[0], &w)) < 0) return rc;
            if (w > 256)
                return chat__fail(c, SLM_ELIMIT, "indent width %lld is over 256", (long long)w);
            w = w < 0 ? 0 : w;
            if ((sp = chat__arena_alloc(&c->arena, (size_t)w + 1)) == NULL) return chat__oom(c);
            memset(sp, ' ', (size_t)w);
            ind = (struct tstr){ sp, (size_t)w };
        }
    }
    first = have[1] && chat__truthy(&slots[1]);
    blank = have[2] && chat__truthy(&slots[2]);
    /* s += "\n" then splitlines(), as Jinja does. */
    if ((withnl = chat__arena_alloc(&c->arena, s.n + 2)) == NULL) return chat__oom(c);
    memcpy(withnl, s.p, s.n);
    withnl[s.n] = '\n';
    s = (struct tstr){ withnl, s.n + 1 };
    if ((rc = splitlines(c, &s, false, &lines)) < 0) return rc;
    slm_buf_init(&b, c->out_max);
    rc = first ? slm_buf_append(&b, ind.p, ind.n) : 0;
    for (size_t i = 0; rc == 0 && i < lines.u.l->n; i++) {
        const struct tstr *ln = &lines.u.l->items[i].u.s;

        if (i > 0) {
            rc = slm_buf_append_char(&b, '\n');
            if (rc == 0 && (blank || ln->n > 0)) rc = slm_buf_append(&b, ind.p, ind.n);
        }
        if (rc == 0) rc = slm_buf_append(&b, ln->p, ln->n);
    }
    return buf_to_str(c, &b, rc, out);
}

static int to_int(struct rctx *c, const struct tv *v, bool *ok, int64_t *out)
{
    *ok = true;
    switch (v->type) {
    case TV_INT:
    case TV_BOOL:
        *out = v->type == TV_INT ? v->u.i : v->u.b;
        return 0;
    case TV_FLOAT:
        if (isnan(v->u.d) || isinf(v->u.d) || fabs(v->u.d) >= 9.2e18) {
            *ok = false;
            return 0;
        }
        *out = (int64_t)v->u.d;
        return 0;
    case TV_STR: {
        struct tstr s = strip(v->u.s, NULL, true, true);
        char tmp[64];
        char *end;
        double d;

        if (s.n == 0 || s.n >= sizeof(tmp)) {
            *ok = false;
            return 0;
        }
        memcpy(tmp, s.p, s.n);
        tmp[s.n] = '\0';
        {
            long long ll;
            size_t i = tmp[0] == '-' || tmp[0] == '+';
            bool digits = i < s.n;

            for (size_t k = i; k < s.n; k++)
                if (tmp[k] < '0' || tmp[k] > '9') digits = false;
            if (digits) {
                ll = strtoll(tmp, &end, 10);
                *out = ll;
                return 0;
            }
        }
        d = strtod(tmp, &end);
        if (*end != '\0' || isnan(d) || isinf(d) || fabs(d) >= 9.2e18) {
            *ok = false;
            return 0;
        }
        *out = (int64_t)d;
        return 0;
    }
    case TV_UNDEF:
        return chat__fail(c, SLM_EINVAL, "'%.*s' is undefined",
                          (int)(v->u.s.n > 60 ? 60 : v->u.s.n), v->u.s.p ? v->u.s.p : "value");
    default:
        *ok = false;
        return 0;
    }
}

static int f_int(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "default", "base", NULL };
    struct tv slots[2];
    bool have[2], ok;
    int64_t v = 0;
    int rc;

    if ((rc = bind(c, "int", a, params, slots, have)) < 0 || (rc = to_int(c, self, &ok, &v)) < 0)
        return rc;
    *out = ok ? chat__int(v) : have[0] ? slots[0] : chat__int(0);
    return 0;
}

static int f_float(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "default", NULL };
    struct tv slots[1];
    bool have[1];
    int rc;

    if ((rc = bind(c, "float", a, params, slots, have)) < 0) return rc;
    if (self->type == TV_FLOAT || self->type == TV_INT || self->type == TV_BOOL) {
        *out = chat__float(self->type == TV_FLOAT
                               ? self->u.d
                               : (double)(self->type == TV_INT ? self->u.i : self->u.b));
        return 0;
    }
    if (self->type == TV_STR) {
        struct tstr s = strip(self->u.s, NULL, true, true);
        char tmp[128];
        char *end;
        double d;

        if (s.n > 0 && s.n < sizeof(tmp)) {
            memcpy(tmp, s.p, s.n);
            tmp[s.n] = '\0';
            d = strtod(tmp, &end);
            if (*end == '\0' && (tmp[0] != '0' || tmp[1] != 'x') &&
                !(tmp[0] == '-' && tmp[1] == '0' && tmp[2] == 'x')) {
                *out = chat__float(d);
                return 0;
            }
        }
    }
    if (self->type == TV_UNDEF) return chat__fail(c, SLM_EINVAL, "value is undefined");
    *out = have[0] ? slots[0] : chat__float(0.0);
    return 0;
}

static int f_round(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "precision", "method", NULL };
    struct tv slots[2];
    bool have[2];
    int64_t prec = 0;
    double x, r;
    int rc;

    if ((rc = bind(c, "round", a, params, slots, have)) < 0) return rc;
    if (have[0] && (rc = need_int(c, "round", &slots[0], &prec)) < 0) return rc;
    if (self->type != TV_INT && self->type != TV_FLOAT && self->type != TV_BOOL)
        return chat__fail(c, SLM_EINVAL, "round: expected a number, got %s", chat__type_name(self));
    x = self->type == TV_FLOAT ? self->u.d : (double)(self->type == TV_INT ? self->u.i : self->u.b);
    if (prec < -300 || prec > 300)
        return chat__fail(c, SLM_EINVAL, "round: precision %lld out of range", (long long)prec);
    if (have[1] && slots[1].type == TV_STR && !eq(&slots[1].u.s, "common")) {
        double m = pow(10.0, (double)prec);

        if (eq(&slots[1].u.s, "ceil"))
            r = ceil(x * m) / m;
        else if (eq(&slots[1].u.s, "floor"))
            r = floor(x * m) / m;
        else
            return chat__fail(c, SLM_EINVAL, "round: method must be common, ceil or floor");
    } else if (prec == 0) {
        r = nearbyint(x); /* round half to even, as Python */
    } else if (prec > 0) {
        char tmp[512];

        snprintf(tmp, sizeof(tmp), "%.*f", (int)prec, x);
        r = strtod(tmp, NULL);
    } else {
        double m = pow(10.0, (double)-prec);

        r = nearbyint(x / m) * m;
    }
    if (self->type != TV_FLOAT && !have[0] && (!have[1] || eq(&slots[1].u.s, "common")))
        *out = chat__float(r); /* Jinja's round always returns a float for ints too */
    else
        *out = chat__float(r);
    return 0;
}

static int f_abs(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    (void)a;
    if (self->type == TV_FLOAT) {
        *out = chat__float(fabs(self->u.d));
        return 0;
    }
    if (self->type == TV_INT || self->type == TV_BOOL) {
        int64_t v = self->type == TV_INT ? self->u.i : self->u.b;

        if (v == INT64_MIN) return chat__fail(c, SLM_ERANGE, "integer result does not fit 64 bits");
        *out = chat__int(v < 0 ? -v : v);
        return 0;
    }
    return chat__fail(c, SLM_EINVAL, "bad operand type for abs(): '%s'", chat__type_name(self));
}

static int f_wordcount(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    struct tstr s;
    int64_t n = 0;
    bool in_word = false;
    int rc;

    (void)a;
    if ((rc = soft_str(c, self, &s)) < 0) return rc;
    /* \w+ runs: letters, digits, underscore and any non-ASCII character. */
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        bool w = ch >= 0x80 || ascii_alpha((char)ch) || (ch >= '0' && ch <= '9') || ch == '_';

        if (w && !in_word) n++;
        in_word = w;
    }
    *out = chat__int(n);
    return 0;
}

static int f_reverse(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    struct tv none = chat__none(), back = chat__int(-1);

    (void)a;
    if (self->type == TV_STR || (self->type == TV_LIST && !(self->flags & TV_F_GEN))) {
        int rc = chat__slice(c, self, &none, &none, &back, out);

        if (rc == 0 && out->type == TV_LIST) out->flags = TV_F_GEN;
        return rc;
    }
    {
        struct tlist items;
        int rc;

        if ((rc = chat__iterate(c, self, &items)) < 0 || (rc = chat__list_new(c, items.n, out)) < 0)
            return rc;
        for (size_t i = 0; i < items.n; i++)
            out->u.l->items[i] = items.items[items.n - 1 - i];
        out->flags = TV_F_GEN;
        return 0;
    }
}

static int f_sort(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "reverse", "case_sensitive", "attribute", NULL };
    struct tv slots[3], keys;
    bool have[3], rev, cs;
    struct tlist items;
    int rc;

    if ((rc = bind(c, "sort", a, params, slots, have)) < 0 ||
        (rc = chat__iterate(c, self, &items)) < 0 || (rc = chat__list_new(c, items.n, out)) < 0 ||
        (rc = chat__list_new(c, items.n, &keys)) < 0)
        return rc;
    rev = have[0] && chat__truthy(&slots[0]);
    cs = have[1] && chat__truthy(&slots[1]);
    for (size_t i = 0; i < items.n; i++) {
        out->u.l->items[i] = items.items[i];
        if ((rc = sort_key(c, &items.items[i], have[2] ? &slots[2] : NULL, cs,
                           &keys.u.l->items[i])) < 0)
            return rc;
    }
    /* Stable insertion sort (Python's sort is stable); steps are counted. */
    for (size_t i = 1; i < items.n; i++) {
        for (size_t j = i; j > 0; j--) {
            bool lt;

            if (++c->steps > c->steps_max)
                return chat__fail(c, SLM_ELIMIT, "render exceeds %llu steps",
                                  (unsigned long long)c->steps_max);
            if (rev)
                rc = chat__less(c, &keys.u.l->items[j - 1], &keys.u.l->items[j], &lt);
            else
                rc = chat__less(c, &keys.u.l->items[j], &keys.u.l->items[j - 1], &lt);
            if (rc < 0) return rc;
            if (!lt) break;
            struct tv t = keys.u.l->items[j];
            keys.u.l->items[j] = keys.u.l->items[j - 1];
            keys.u.l->items[j - 1] = t;
            t = out->u.l->items[j];
            out->u.l->items[j] = out->u.l->items[j - 1];
            out->u.l->items[j - 1] = t;
        }
    }
    return 0;
}

static int minmax(struct rctx *c, struct tv *self, struct targs *a, bool want_max, struct tv *out)
{
    static const char *const params[] = { "case_sensitive", "attribute", NULL };
    struct tv slots[2], best_key;
    bool have[2], cs;
    struct tlist items;
    int rc;

    if ((rc = bind(c, want_max ? "max" : "min", a, params, slots, have)) < 0 ||
        (rc = chat__iterate(c, self, &items)) < 0)
        return rc;
    cs = have[0] && chat__truthy(&slots[0]);
    if (items.n == 0) {
        *out = chat__undef((struct tstr){ NULL, 0 });
        return 0;
    }
    *out = items.items[0];
    if ((rc = sort_key(c, &items.items[0], have[1] ? &slots[1] : NULL, cs, &best_key)) < 0)
        return rc;
    for (size_t i = 1; i < items.n; i++) {
        struct tv k;
        bool lt;

        if ((rc = sort_key(c, &items.items[i], have[1] ? &slots[1] : NULL, cs, &k)) < 0) return rc;
        rc = want_max ? chat__less(c, &best_key, &k, &lt) : chat__less(c, &k, &best_key, &lt);
        if (rc < 0) return rc;
        if (lt) {
            best_key = k;
            *out = items.items[i];
        }
    }
    return 0;
}

static int f_max(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    return minmax(c, self, a, true, out);
}

static int f_min(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    return minmax(c, self, a, false, out);
}

static int f_sum(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "attribute", "start", NULL };
    struct tv slots[2];
    bool have[2];
    struct tlist items;
    int64_t isum = 0;
    double fsum = 0;
    bool is_float = false;
    int rc;

    if ((rc = bind(c, "sum", a, params, slots, have)) < 0 ||
        (rc = chat__iterate(c, self, &items)) < 0)
        return rc;
    if (have[1]) {
        if (slots[1].type == TV_FLOAT) {
            is_float = true;
            fsum = slots[1].u.d;
        } else if ((rc = need_int(c, "sum start", &slots[1], &isum)) < 0) {
            return rc;
        }
    }
    for (size_t i = 0; i < items.n; i++) {
        struct tv v = items.items[i];

        if (have[0] && (rc = attr_path(c, &items.items[i], &slots[0], &v)) < 0) return rc;
        if (v.type == TV_FLOAT) {
            if (!is_float) {
                fsum = (double)isum;
                is_float = true;
            }
            fsum += v.u.d;
        } else if (v.type == TV_INT || v.type == TV_BOOL) {
            int64_t x = v.type == TV_INT ? v.u.i : v.u.b;

            if (is_float)
                fsum += (double)x;
            else if (__builtin_add_overflow(isum, x, &isum))
                return chat__fail(c, SLM_ERANGE, "integer result does not fit 64 bits");
        } else {
            return chat__fail(c, SLM_EINVAL, "unsupported operand type(s) for +: 'int' and '%s'",
                              chat__type_name(&v));
        }
    }
    *out = is_float ? chat__float(fsum) : chat__int(isum);
    return 0;
}

static int f_escape(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    struct tstr s;
    struct slm_buf b;
    int rc;

    (void)a;
    if ((rc = soft_str(c, self, &s)) < 0) return rc;
    slm_buf_init(&b, c->out_max);
    for (size_t i = 0; rc == 0 && i < s.n; i++) {
        switch (s.p[i]) {
        case '&':
            rc = slm_buf_append_str(&b, "&amp;");
            break;
        case '<':
            rc = slm_buf_append_str(&b, "&lt;");
            break;
        case '>':
            rc = slm_buf_append_str(&b, "&gt;");
            break;
        case '"':
            rc = slm_buf_append_str(&b, "&#34;");
            break;
        case '\'':
            rc = slm_buf_append_str(&b, "&#39;");
            break;
        default:
            rc = slm_buf_append_char(&b, s.p[i]);
            break;
        }
    }
    return buf_to_str(c, &b, rc, out);
}

static int f_attr(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    if (a->n != 1 || a->v[0].type != TV_STR)
        return chat__fail(c, SLM_EINVAL, "attr needs one attribute name");
    return chat__getattr(c, self, &a->v[0].u.s, out);
}

static int f_dictsort(struct rctx *c, struct tv *self, struct targs *a, struct tv *out)
{
    static const char *const params[] = { "case_sensitive", "by", "reverse", NULL };
    struct tv slots[3], pairs;
    bool have[3];
    int rc;
    struct targs sa = { 0 };

    if ((rc = bind(c, "dictsort", a, params, slots, have)) < 0) return rc;
    if (self->type != TV_DICT)
        return chat__fail(c, SLM_EINVAL, "dictsort: expected a mapping, got %s",
                          chat__type_name(self));
    if ((rc = f_items(c, self, &sa, &pairs)) < 0) return rc;
    pairs.flags = 0;
    sa.n = 0;
    sa.v[sa.n] =
        chat__str(have[1] && slots[1].type == TV_STR && eq(&slots[1].u.s, "value") ? "1" : "0", 1);
    sa.name[sa.n++] = (struct tstr){ "attribute", 9 };
    if (have[0]) {
        sa.v[sa.n] = slots[0];
        sa.name[sa.n++] = (struct tstr){ "case_sensitive", 14 };
    }
    if (have[2]) {
        sa.v[sa.n] = slots[2];
        sa.name[sa.n++] = (struct tstr){ "reverse", 7 };
    }
    if ((rc = f_sort(c, &pairs, &sa, out)) < 0) return rc;
    out->flags = 0;
    return 0;
}

static const struct {
    const char *name;
    filter_fn *fn;
} filters[] = {
    { "abs", f_abs },           { "attr", f_attr },       { "capitalize", f_capitalize },
    { "count", f_length },      { "d", f_default },       { "default", f_default },
    { "dictsort", f_dictsort }, { "e", f_escape },        { "escape", f_escape },
    { "first", f_first },       { "float", f_float },     { "indent", f_indent },
    { "int", f_int },           { "items", f_items },     { "join", f_join },
    { "last", f_last },         { "length", f_length },   { "list", f_list },
    { "lower", f_lower },       { "map", f_map },         { "max", f_max },
    { "min", f_min },           { "reject", f_reject },   { "rejectattr", f_rejectattr },
    { "replace", f_replace },   { "reverse", f_reverse }, { "round", f_round },
    { "safe", f_safe },         { "select", f_select },   { "selectattr", f_selectattr },
    { "sort", f_sort },         { "string", f_string },   { "sum", f_sum },
    { "title", f_title },       { "tojson", f_tojson },   { "trim", f_trim },
    { "unique", f_unique },     { "upper", f_upper },     { "wordcount", f_wordcount },
};

static filter_fn *find_filter(const struct tstr *name)
{
    for (size_t i = 0; i < SLM_ARRAY_LEN(filters); i++)
        if (eq(name, filters[i].name)) return filters[i].fn;
    return NULL;
}

bool chat__has_filter(const struct tstr *name)
{
    return find_filter(name) != NULL;
}

/* Applies filter name to self with arguments a. */
int chat__filter(struct rctx *c, const struct tstr *name, struct tv *self, struct targs *a,
                 struct tv *out)
{
    filter_fn *fn = find_filter(name);

    if (fn == NULL)
        return chat__fail(c, SLM_EINVAL, "no filter named '%.*s'",
                          (int)(name->n > 40 ? 40 : name->n), name->p);
    if (++c->steps > c->steps_max)
        return chat__fail(c, SLM_ELIMIT, "render exceeds %llu steps",
                          (unsigned long long)c->steps_max);
    return fn(c, self, a, out);
}

/* ---- tests ---- */

static int one_arg(struct rctx *c, const char *test, const struct targs *a, struct tv *out)
{
    if (a->n != 1) return chat__fail(c, SLM_EINVAL, "test '%s' takes one argument", test);
    *out = a->v[0];
    return 0;
}

static const char *const test_names[] = {
    "defined", "undefined", "none",    "string", "mapping", "iterable",    "sequence", "number",
    "integer", "float",     "boolean", "true",   "false",   "callable",    "sameas",   "equalto",
    "eq",      "==",        "ne",      "!=",     "lt",      "<",           "le",       "<=",
    "gt",      ">",         "ge",      ">=",     "in",      "divisibleby", "odd",      "even",
    "lower",   "upper",     "escaped", NULL,
};

bool chat__has_test(const struct tstr *name)
{
    return in_list(name, test_names);
}

/* Runs test name on self; *out is the (non-negated) result. */
int chat__test(struct rctx *c, const struct tstr *name, struct tv *self, struct targs *a, bool *out)
{
    struct tv arg;
    int rc;
    int t = self->type;

    if (++c->steps > c->steps_max)
        return chat__fail(c, SLM_ELIMIT, "render exceeds %llu steps",
                          (unsigned long long)c->steps_max);
    if (eq(name, "defined") || eq(name, "undefined")) {
        *out = (t != TV_UNDEF) == eq(name, "defined");
        return 0;
    }
    if (eq(name, "none")) {
        *out = t == TV_NONE;
    } else if (eq(name, "string")) {
        *out = t == TV_STR;
    } else if (eq(name, "mapping")) {
        *out = t == TV_DICT;
    } else if (eq(name, "iterable")) {
        *out = t == TV_STR || t == TV_LIST || t == TV_DICT || t == TV_UNDEF || t == TV_LOOP;
    } else if (eq(name, "sequence")) {
        *out = t == TV_STR || (t == TV_LIST && !(self->flags & TV_F_GEN)) || t == TV_DICT ||
               t == TV_UNDEF;
    } else if (eq(name, "number")) {
        *out = t == TV_INT || t == TV_FLOAT || t == TV_BOOL;
    } else if (eq(name, "integer")) {
        *out = t == TV_INT;
    } else if (eq(name, "float")) {
        *out = t == TV_FLOAT;
    } else if (eq(name, "boolean")) {
        *out = t == TV_BOOL;
    } else if (eq(name, "true") || eq(name, "false")) {
        *out = t == TV_BOOL && self->u.b == eq(name, "true");
    } else if (eq(name, "callable")) {
        *out = t == TV_MACRO || t == TV_FUNC || t == TV_METHOD || t == TV_CALLER;
    } else if (eq(name, "escaped")) {
        *out = false;
    } else if (eq(name, "lower") || eq(name, "upper")) {
        struct tstr s;
        bool cased = false, ok = true, up = eq(name, "upper");

        if ((rc = chat__to_str(c, self, &s)) < 0) return rc;
        for (size_t i = 0; i < s.n; i++) {
            char ch = s.p[i];

            if (ascii_alpha(ch)) {
                cased = true;
                if (up ? (ch >= 'a' && ch <= 'z') : (ch >= 'A' && ch <= 'Z')) ok = false;
            }
        }
        *out = cased && ok;
    } else if (eq(name, "odd") || eq(name, "even")) {
        int64_t v = 0;

        if ((rc = need_int(c, "odd/even", self, &v)) < 0) return rc;
        *out = (v % 2 != 0) == eq(name, "odd");
    } else if (eq(name, "divisibleby")) {
        int64_t v, d;

        if ((rc = one_arg(c, "divisibleby", a, &arg)) < 0 ||
            (rc = need_int(c, "divisibleby", self, &v)) < 0 ||
            (rc = need_int(c, "divisibleby", &arg, &d)) < 0)
            return rc;
        if (d == 0) return chat__fail(c, SLM_EINVAL, "integer division or modulo by zero");
        *out = d == -1 || v % d == 0;
    } else if (eq(name, "sameas")) {
        if ((rc = one_arg(c, "sameas", a, &arg)) < 0) return rc;
        if (t == TV_NONE || t == TV_BOOL || arg.type == TV_NONE || arg.type == TV_BOOL)
            *out = t == arg.type && (t != TV_BOOL || self->u.b == arg.u.b);
        else
            *out = t == arg.type && memcmp(&self->u, &arg.u, sizeof(self->u)) == 0;
    } else if (eq(name, "in")) {
        if ((rc = one_arg(c, "in", a, &arg)) < 0) return rc;
        if (arg.type == TV_STR) {
            if (t != TV_STR)
                return chat__fail(c, SLM_EINVAL, "'in <string>' requires string as left operand");
            *out = self->u.s.n == 0 || memmem(arg.u.s.p, arg.u.s.n, self->u.s.p, self->u.s.n);
        } else {
            struct tlist items;

            if (arg.type == TV_DICT) {
                *out = chat__dict_get(arg.u.m, self) != NULL;
                return 0;
            }
            if ((rc = chat__iterate(c, &arg, &items)) < 0) return rc;
            *out = false;
            for (size_t i = 0; i < items.n && !*out; i++)
                *out = chat__equal(self, &items.items[i]);
        }
    } else {
        bool lt;

        if ((rc = one_arg(c, "comparison", a, &arg)) < 0) return rc;
        if (eq(name, "equalto") || eq(name, "eq") || eq(name, "==")) {
            *out = chat__equal(self, &arg);
        } else if (eq(name, "ne") || eq(name, "!=")) {
            *out = !chat__equal(self, &arg);
        } else if (eq(name, "lt") || eq(name, "<")) {
            rc = chat__less(c, self, &arg, out);
        } else if (eq(name, "gt") || eq(name, ">")) {
            rc = chat__less(c, &arg, self, out);
        } else if (eq(name, "le") || eq(name, "<=")) {
            rc = chat__less(c, &arg, self, &lt);
            *out = !lt;
        } else {
            rc = chat__less(c, self, &arg, &lt);
            *out = !lt;
        }
        return rc;
    }
    return 0;
}

/* ---- attributes and items ---- */

static const char *const str_methods[] = {
    "capitalize",   "casefold",    "center",    "count",      "encode",       "endswith",
    "expandtabs",   "find",        "format",    "format_map", "index",        "isalnum",
    "isalpha",      "isascii",     "isdecimal", "isdigit",    "isidentifier", "islower",
    "isnumeric",    "isprintable", "isspace",   "istitle",    "isupper",      "join",
    "ljust",        "lower",       "lstrip",    "maketrans",  "partition",    "removeprefix",
    "removesuffix", "replace",     "rfind",     "rindex",     "rjust",        "rpartition",
    "rsplit",       "rstrip",      "split",     "splitlines", "startswith",   "strip",
    "swapcase",     "title",       "translate", "upper",      "zfill",        NULL,
};

static const char *const dict_safe[] = {
    "copy", "fromkeys", "get", "items", "keys", "values", NULL
};
static const char *const dict_unsafe[] = {
    "clear", "pop", "popitem", "setdefault", "update", NULL
};
static const char *const list_safe[] = { "copy", "count", "index", NULL };
static const char *const list_unsafe[] = { "append", "clear",   "extend", "insert", "pop",
                                           "remove", "reverse", "sort",   NULL };

static int bound(struct rctx *c, const struct tv *self, const struct tstr *name, struct tv *out)
{
    struct tmethod *m = chat__arena_alloc(&c->arena, sizeof(*m));

    if (m == NULL) return chat__oom(c);
    m->self = *self;
    m->name = *name;
    memset(out, 0, sizeof(*out));
    out->type = TV_METHOD;
    out->u.bm = m;
    return 0;
}

static void unsafe(const struct tstr *name, struct tv *out)
{
    *out = chat__undef(*name);
    out->flags = TV_F_UNSAFE;
}

static int loop_attr(struct rctx *c, const struct tv *obj, const struct tstr *name, struct tv *out)
{
    const struct tloop *l = obj->u.loop;
    int64_t n = (int64_t)l->items->n, i = (int64_t)l->index0;

    if (eq(name, "index"))
        *out = chat__int(i + 1);
    else if (eq(name, "index0"))
        *out = chat__int(i);
    else if (eq(name, "revindex"))
        *out = chat__int(n - i);
    else if (eq(name, "revindex0"))
        *out = chat__int(n - i - 1);
    else if (eq(name, "first"))
        *out = chat__bool(i == 0);
    else if (eq(name, "last"))
        *out = chat__bool(i == n - 1);
    else if (eq(name, "length"))
        *out = chat__int(n);
    else if (eq(name, "depth"))
        *out = chat__int((int64_t)l->depth0 + 1);
    else if (eq(name, "depth0"))
        *out = chat__int((int64_t)l->depth0);
    else if (eq(name, "previtem"))
        *out = i > 0 ? l->items->items[i - 1] : chat__undef(*name);
    else if (eq(name, "nextitem"))
        *out = i + 1 < n ? l->items->items[i + 1] : chat__undef(*name);
    else if (eq(name, "cycle") || eq(name, "changed"))
        return bound(c, obj, name, out);
    else
        *out = chat__undef(*name);
    return 0;
}

/* obj.name as Jinja's sandboxed getattr. */
int chat__getattr(struct rctx *c, const struct tv *obj, const struct tstr *name, struct tv *out)
{
    struct tv *v;

    if (obj->type == TV_UNDEF) {
        if (obj->flags & TV_F_UNSAFE)
            return chat__fail(c, SLM_EINVAL, "access to attribute '%.*s' is unsafe",
                              (int)obj->u.s.n, obj->u.s.p);
        if (obj->u.s.p == NULL)
            return chat__fail(c, SLM_EINVAL, "undefined value has no attribute '%.*s'",
                              (int)(name->n > 60 ? 60 : name->n), name->p);
        return chat__fail(c, SLM_EINVAL, "'%.*s' is undefined",
                          (int)(obj->u.s.n > 60 ? 60 : obj->u.s.n), obj->u.s.p);
    }
    if (name->n > 0 && name->p[0] == '_') {
        unsafe(name, out);
        return 0;
    }
    switch (obj->type) {
    case TV_DICT:
        if (in_list(name, dict_safe)) return bound(c, obj, name, out);
        if (in_list(name, dict_unsafe)) {
            unsafe(name, out);
            return 0;
        }
        v = chat__dict_getn(obj->u.m, name->p, name->n);
        *out = v ? *v : chat__undef(*name);
        return 0;
    case TV_NS:
        v = chat__dict_getn(obj->u.m, name->p, name->n);
        *out = v ? *v : chat__undef(*name);
        return 0;
    case TV_STR:
        if (in_list(name, str_methods)) return bound(c, obj, name, out);
        break;
    case TV_LIST:
        if (obj->flags & TV_F_GEN) break;
        if (in_list(name, list_safe)) return bound(c, obj, name, out);
        if (in_list(name, list_unsafe)) {
            unsafe(name, out);
            return 0;
        }
        break;
    case TV_LOOP:
        return loop_attr(c, obj, name, out);
    default:
        break;
    }
    *out = chat__undef(*name);
    return 0;
}

/* obj[key] as Jinja's getitem: item first, then attribute for string keys. */
int chat__getitem(struct rctx *c, const struct tv *obj, const struct tv *key, struct tv *out)
{
    struct tv *v;

    if (obj->type == TV_UNDEF) return chat__getattr(c, obj, &(struct tstr){ "[]", 2 }, out);
    if (obj->type == TV_DICT) {
        if ((key->type == TV_LIST && !(key->flags & TV_F_TUPLE)) || key->type == TV_DICT)
            return chat__fail(c, SLM_EINVAL, "unhashable type: '%s'", chat__type_name(key));
        v = chat__dict_get(obj->u.m, key);
        if (v != NULL) {
            *out = *v;
            return 0;
        }
    } else if ((obj->type == TV_LIST && !(obj->flags & TV_F_GEN)) || obj->type == TV_STR) {
        if (key->type == TV_INT || key->type == TV_BOOL) {
            int64_t i = key->type == TV_INT ? key->u.i : key->u.b;
            int64_t n = obj->type == TV_LIST ? (int64_t)obj->u.l->n
                                             : (int64_t)chat__u8_len(obj->u.s.p, obj->u.s.n);

            if (i < 0) i += n;
            if (i >= 0 && i < n) {
                if (obj->type == TV_LIST) {
                    *out = obj->u.l->items[i];
                } else {
                    size_t off = chat__u8_offset(obj->u.s.p, obj->u.s.n, (size_t)i), adv;

                    chat__u8_decode(obj->u.s.p + off, obj->u.s.n - off, &adv);
                    *out = chat__str(obj->u.s.p + off, adv);
                }
                return 0;
            }
            *out = chat__undef((struct tstr){ NULL, 0 });
            return 0;
        }
    } else if (obj->type == TV_NS || obj->type == TV_LOOP) {
        if (key->type == TV_STR) return chat__getattr(c, obj, &key->u.s, out);
    }
    if (key->type == TV_STR) return chat__getattr(c, obj, &key->u.s, out);
    *out = chat__undef((struct tstr){ NULL, 0 });
    return 0;
}

/* ---- methods ---- */

static int splitlines(struct rctx *c, const struct tstr *s, bool keepends, struct tv *out)
{
    struct tv tmp;
    size_t n = 0, i = 0, start = 0;
    int rc;

    /* Count, then fill: separators \n \r \r\n \v \f \x1c-\x1e \x85 \u2028 \u2029. */
    for (int pass = 0; pass < 2; pass++) {
        n = 0;
        i = 0;
        start = 0;
        while (i < s->n) {
            size_t adv, brk;
            uint32_t cp = chat__u8_decode(s->p + i, s->n - i, &adv);

            if (cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C ||
                (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 || cp == 0x2028 || cp == 0x2029) {
                brk = adv;
                if (cp == '\r' && i + 1 < s->n && s->p[i + 1] == '\n') brk = 2;
                if (pass == 1)
                    tmp.u.l->items[n] = chat__str(s->p + start, i - start + (keepends ? brk : 0));
                n++;
                i += brk;
                start = i;
            } else {
                i += adv;
            }
        }
        if (start < s->n) {
            if (pass == 1) tmp.u.l->items[n] = chat__str(s->p + start, s->n - start);
            n++;
        }
        if (pass == 0 && (rc = chat__list_new(c, n, &tmp)) < 0) return rc;
    }
    *out = tmp;
    return 0;
}

static int str_find(const struct tstr *s, const struct tstr *sub, bool right, int64_t *out)
{
    const char *hit = NULL;

    if (!right) {
        hit = sub->n == 0 ? s->p : memmem(s->p, s->n, sub->p, sub->n);
    } else if (sub->n <= s->n) {
        for (size_t k = s->n - sub->n + 1; k > 0; k--) {
            if (memcmp(s->p + k - 1, sub->p, sub->n) == 0) {
                hit = s->p + k - 1;
                break;
            }
        }
    }
    *out = hit ? (int64_t)chat__u8_len(s->p, (size_t)(hit - s->p)) : -1;
    return 0;
}

static int prefix_test(struct rctx *c, const struct tstr *s, const struct targs *a, bool end,
                       bool *out)
{
    struct tlist cands;
    struct tv one;
    int rc;

    if (a->n < 1) return chat__fail(c, SLM_EINVAL, "startswith/endswith need an argument");
    if (a->n > 1)
        return chat__fail(c, SLM_EINVAL, "startswith/endswith start/end are not supported");
    one = a->v[0];
    if (one.type == TV_LIST && (one.flags & TV_F_TUPLE)) {
        cands = *one.u.l;
    } else {
        cands.items = &one;
        cands.n = 1;
    }
    *out = false;
    for (size_t i = 0; i < cands.n; i++) {
        const struct tv *p = &cands.items[i];

        if ((rc = need_str(c, end ? "endswith" : "startswith", p)) < 0) return rc;
        if (p->u.s.n <= s->n &&
            memcmp(end ? s->p + s->n - p->u.s.n : s->p, p->u.s.p, p->u.s.n) == 0)
            *out = true;
    }
    return 0;
}

/* str.format with {} / {0} / {name} fields (no format specs). */
static int str_format_method(struct rctx *c, const struct tstr *s, const struct targs *a,
                             struct tv *out)
{
    struct slm_buf b;
    size_t auto_idx = 0;
    int rc = 0;

    slm_buf_init(&b, c->out_max);
    for (size_t i = 0; rc == 0 && i < s->n; i++) {
        char ch = s->p[i];

        if (ch == '{' && i + 1 < s->n && s->p[i + 1] == '{') {
            rc = slm_buf_append_char(&b, '{');
            i++;
        } else if (ch == '}' && i + 1 < s->n && s->p[i + 1] == '}') {
            rc = slm_buf_append_char(&b, '}');
            i++;
        } else if (ch == '{') {
            const char *close = memchr(s->p + i, '}', s->n - i);
            struct tstr field;
            const struct tv *val = NULL;

            if (close == NULL) {
                rc = chat__fail(c, SLM_EINVAL, "single '{' encountered in format string");
                break;
            }
            field.p = s->p + i + 1;
            field.n = (size_t)(close - field.p);
            if (field.n == 0 || (field.p[0] >= '0' && field.p[0] <= '9')) {
                size_t idx = auto_idx++, pos = 0;

                if (field.n > 0) {
                    idx = 0;
                    for (size_t k = 0; k < field.n && k < 6; k++)
                        idx = idx * 10 + (size_t)(field.p[k] - '0');
                }
                for (size_t k = 0; k < a->n; k++) {
                    if (a->name[k].n == 0 && pos++ == idx) val = &a->v[k];
                }
            } else {
                for (size_t k = 0; k < a->n; k++)
                    if (a->name[k].n == field.n && memcmp(a->name[k].p, field.p, field.n) == 0)
                        val = &a->v[k];
            }
            if (val == NULL) {
                rc = chat__fail(c, SLM_EINVAL, "format: no argument for field '{%.*s}'",
                                (int)(field.n > 40 ? 40 : field.n), field.p);
                break;
            }
            rc = chat__write_str(c, &b, val, false);
            i = (size_t)(close - s->p);
        } else {
            rc = slm_buf_append_char(&b, ch);
        }
    }
    return buf_to_str(c, &b, rc, out);
}

static int str_method(struct rctx *c, const struct tstr *s, const struct tstr *name,
                      struct targs *a, struct tv *out)
{
    struct tv arg0 = a->n > 0 ? a->v[0] : chat__none();
    int rc;

    if (eq(name, "strip") || eq(name, "lstrip") || eq(name, "rstrip")) {
        struct tstr r;

        if (a->n > 1)
            return chat__fail(c, SLM_EINVAL, "%.*s takes at most 1 argument", (int)name->n,
                              name->p);
        if (arg0.type != TV_NONE && (rc = need_str(c, "strip", &arg0)) < 0) return rc;
        r = strip(*s, arg0.type == TV_STR ? &arg0.u.s : NULL, name->p[0] != 'r', name->p[0] != 'l');
        *out = chat__str(r.p, r.n);
        return 0;
    }
    if (eq(name, "split") || eq(name, "rsplit")) {
        static const char *const params[] = { "sep", "maxsplit", NULL };
        struct tv slots[2];
        bool have[2];
        int64_t maxsplit = -1;

        if ((rc = bind(c, "split", a, params, slots, have)) < 0) return rc;
        if (have[1] && (rc = need_int(c, "split maxsplit", &slots[1], &maxsplit)) < 0) return rc;
        return str_split(c, s, have[0] ? &slots[0] : NULL, maxsplit, name->p[0] == 'r', out);
    }
    if (eq(name, "startswith") || eq(name, "endswith")) {
        bool r = false;

        if ((rc = prefix_test(c, s, a, name->p[0] == 'e', &r)) < 0) return rc;
        *out = chat__bool(r);
        return 0;
    }
    if (eq(name, "upper")) return change_case(c, s, CASE_UPPER, out);
    if (eq(name, "lower") || eq(name, "casefold")) return change_case(c, s, CASE_LOWER, out);
    if (eq(name, "title")) return change_case(c, s, CASE_TITLE_METHOD, out);
    if (eq(name, "capitalize")) return change_case(c, s, CASE_CAPITALIZE, out);
    if (eq(name, "swapcase")) return change_case(c, s, CASE_SWAP, out);
    if (eq(name, "replace")) {
        int64_t count = -1;

        if (a->n < 2 || a->n > 3 || a->v[0].type != TV_STR || a->v[1].type != TV_STR)
            return chat__fail(c, SLM_EINVAL, "replace needs two strings");
        if (a->n == 3 && (rc = need_int(c, "replace count", &a->v[2], &count)) < 0) return rc;
        return str_replace(c, s, &a->v[0].u.s, &a->v[1].u.s, count, out);
    }
    if (eq(name, "find") || eq(name, "rfind") || eq(name, "index") || eq(name, "rindex") ||
        eq(name, "count")) {
        int64_t pos;

        if (a->n != 1 || (rc = need_str(c, "find", &arg0)) < 0)
            return a->n != 1
                       ? chat__fail(c, SLM_EINVAL, "%.*s needs one string", (int)name->n, name->p)
                       : rc;
        if (eq(name, "count")) {
            int64_t n = 0;

            if (arg0.u.s.n == 0) {
                n = (int64_t)chat__u8_len(s->p, s->n) + 1;
            } else {
                for (size_t i = 0; i + arg0.u.s.n <= s->n;) {
                    const char *hit = memmem(s->p + i, s->n - i, arg0.u.s.p, arg0.u.s.n);

                    if (hit == NULL) break;
                    n++;
                    i = (size_t)(hit - s->p) + arg0.u.s.n;
                }
            }
            *out = chat__int(n);
            return 0;
        }
        str_find(s, &arg0.u.s, name->p[0] == 'r', &pos);
        if (pos < 0 && (eq(name, "index") || eq(name, "rindex")))
            return chat__fail(c, SLM_EINVAL, "substring not found");
        *out = chat__int(pos);
        return 0;
    }
    if (eq(name, "join")) {
        struct targs ja = { 0 };
        struct tv self = chat__str(s->p, s->n);

        if (a->n != 1) return chat__fail(c, SLM_EINVAL, "join takes one argument");
        ja.n = 1;
        ja.v[0] = self;
        {
            struct tlist items;

            if ((rc = chat__iterate(c, &arg0, &items)) < 0) return rc;
            for (size_t i = 0; i < items.n; i++)
                if (items.items[i].type != TV_STR)
                    return chat__fail(c, SLM_EINVAL,
                                      "sequence item %zu: expected str instance, %s found", i,
                                      chat__type_name(&items.items[i]));
        }
        return f_join(c, &arg0, &ja, out);
    }
    if (eq(name, "splitlines")) {
        return splitlines(c, s, a->n > 0 && chat__truthy(&arg0), out);
    }
    if (eq(name, "removeprefix") || eq(name, "removesuffix")) {
        bool suffix = name->p[6] == 's';

        if (a->n != 1 || (rc = need_str(c, "removeprefix", &arg0)) < 0)
            return a->n != 1 ? chat__fail(c, SLM_EINVAL, "one argument needed") : rc;
        *out = chat__str(s->p, s->n);
        if (arg0.u.s.n <= s->n &&
            memcmp(suffix ? s->p + s->n - arg0.u.s.n : s->p, arg0.u.s.p, arg0.u.s.n) == 0) {
            *out = chat__str(suffix ? s->p : s->p + arg0.u.s.n, s->n - arg0.u.s.n);
        }
        return 0;
    }
    if (eq(name, "isdigit") || eq(name, "isdecimal") || eq(name, "isnumeric") ||
        eq(name, "isalpha") || eq(name, "isalnum") || eq(name, "isspace") || eq(name, "islower") ||
        eq(name, "isupper") || eq(name, "isascii")) {
        bool r = s->n > 0 || eq(name, "isascii");
        bool cased = false;

        for (size_t i = 0; i < s->n; i++) {
            char ch = s->p[i];
            bool digit = ch >= '0' && ch <= '9', alpha = ascii_alpha(ch);

            if (eq(name, "isascii"))
                r = r && (unsigned char)ch < 0x80;
            else if (name->p[2] == 'd' || name->p[2] == 'n')
                r = r && digit;
            else if (eq(name, "isalpha"))
                r = r && alpha;
            else if (eq(name, "isalnum"))
                r = r && (alpha || digit);
            else if (eq(name, "isspace"))
                r = r && chat__py_isspace((unsigned char)ch);
            else if (eq(name, "islower")) {
                if (alpha) cased = true;
                r = r && !(ch >= 'A' && ch <= 'Z');
            } else {
                if (alpha) cased = true;
                r = r && !(ch >= 'a' && ch <= 'z');
            }
        }
        if (eq(name, "islower") || eq(name, "isupper")) r = r && cased;
        *out = chat__bool(r);
        return 0;
    }
    if (eq(name, "format")) return str_format_method(c, s, a, out);
    return chat__fail(c, SLM_EUNSUPPORTED, "str.%.*s() is not supported", (int)name->n, name->p);
}

/* Calls a bound method with arguments a. */
int chat__call_method(struct rctx *c, struct tmethod *m, struct targs *a, struct tv *out)
{
    const struct tv *self = &m->self;
    const struct tstr *name = &m->name;
    int rc;

    if (self->type == TV_STR) return str_method(c, &self->u.s, name, a, out);
    if (self->type == TV_DICT) {
        if (eq(name, "get")) {
            struct tv *v;

            if (a->n < 1 || a->n > 2)
                return chat__fail(c, SLM_EINVAL, "get expected 1 or 2 arguments, got %zu", a->n);
            v = chat__dict_get(self->u.m, &a->v[0]);
            *out = v ? *v : a->n == 2 ? a->v[1] : chat__none();
            return 0;
        }
        if (eq(name, "items")) {
            struct targs none = { 0 };

            if ((rc = f_items(c, (struct tv *)self, &none, out)) < 0) return rc;
            out->flags = 0;
            return 0;
        }
        if (eq(name, "keys") || eq(name, "values")) {
            bool keys = name->p[0] == 'k';

            if ((rc = chat__list_new(c, self->u.m->n, out)) < 0) return rc;
            for (size_t i = 0; i < self->u.m->n; i++)
                out->u.l->items[i] = keys ? self->u.m->keys[i] : self->u.m->vals[i];
            return 0;
        }
        if (eq(name, "copy")) {
            *out = *self;
            return 0;
        }
    }
    if (self->type == TV_LIST) {
        if (eq(name, "copy")) {
            *out = *self;
            return 0;
        }
        if ((eq(name, "count") || eq(name, "index")) && a->n == 1) {
            int64_t n = 0, first = -1;

            for (size_t i = 0; i < self->u.l->n; i++) {
                if (chat__equal(&self->u.l->items[i], &a->v[0])) {
                    if (first < 0) first = (int64_t)i;
                    n++;
                }
            }
            if (eq(name, "index") && first < 0)
                return chat__fail(c, SLM_EINVAL, "value is not in list");
            *out = chat__int(eq(name, "count") ? n : first);
            return 0;
        }
    }
    if (self->type == TV_LOOP) {
        if (eq(name, "cycle")) {
            if (a->n == 0) return chat__fail(c, SLM_EINVAL, "no items for cycling given");
            *out = a->v[self->u.loop->index0 % a->n];
            return 0;
        }
    }
    return chat__fail(c, SLM_EUNSUPPORTED, "method %s.%.*s() is not supported",
                      chat__type_name(self), (int)name->n, name->p);
}

/* ---- global functions ---- */

bool chat__global_func(const struct tstr *name, struct tv *out)
{
    static const struct {
        const char *name;
        unsigned fn;
    } funcs[] = {
        { "range", FN_RANGE },           { "dict", FN_DICT },
        { "namespace", FN_NAMESPACE },   { "raise_exception", FN_RAISE },
        { "strftime_now", FN_STRFTIME },
    };

    for (size_t i = 0; i < SLM_ARRAY_LEN(funcs); i++) {
        if (eq(name, funcs[i].name)) {
            memset(out, 0, sizeof(*out));
            out->type = TV_FUNC;
            out->fn = (uint16_t)funcs[i].fn;
            return true;
        }
    }
    return false;
}

static int fill_dict(struct rctx *c, const struct targs *a, struct tdict *m, const char *what)
{
    int rc;

    for (size_t i = 0; i < a->n; i++) {
        if (a->name[i].n == 0) {
            const struct tv *src = &a->v[i];

            if (i != 0 || (src->type != TV_DICT && src->type != TV_NS))
                return chat__fail(c, SLM_EINVAL, "%s() takes keyword arguments or one mapping",
                                  what);
            for (size_t k = 0; k < src->u.m->n; k++)
                if ((rc = chat__dict_set(c, m, &src->u.m->keys[k], &src->u.m->vals[k])) < 0)
                    return rc;
            continue;
        }
        {
            struct tv key = chat__str(a->name[i].p, a->name[i].n);

            if ((rc = chat__dict_set(c, m, &key, &a->v[i])) < 0) return rc;
        }
    }
    return 0;
}

/* Calls global function fn (range, dict, namespace, ...). */
int chat__call_func(struct rctx *c, unsigned fn, struct targs *a, struct tv *out)
{
    int rc;

    switch (fn) {
    case FN_RANGE: {
        int64_t v[3] = { 0, 0, 1 }, start, stop, st, n;

        if (a->n < 1 || a->n > 3)
            return chat__fail(c, SLM_EINVAL, "range expected 1 to 3 arguments, got %zu", a->n);
        for (size_t i = 0; i < a->n; i++)
            if ((rc = need_int(c, "range", &a->v[i], &v[i])) < 0) return rc;
        start = a->n == 1 ? 0 : v[0];
        stop = a->n == 1 ? v[0] : v[1];
        st = a->n == 3 ? v[2] : 1;
        if (st == 0) return chat__fail(c, SLM_EINVAL, "range() arg 3 must not be zero");
        if (st > 0)
            n = stop > start ? (int64_t)(((uint64_t)stop - (uint64_t)start - 1) / (uint64_t)st + 1)
                             : 0;
        else
            n = start > stop
                    ? (int64_t)(((uint64_t)start - (uint64_t)stop - 1) / (uint64_t)(-(st + 1) + 1) +
                                1)
                    : 0;
        if (n < 0 || n > (int64_t)SLM_LIMIT_TEMPLATE_RANGE)
            return chat__fail(c, SLM_ELIMIT, "range too big: the sandbox allows at most %u items",
                              SLM_LIMIT_TEMPLATE_RANGE);
        if ((rc = chat__list_new(c, (size_t)n, out)) < 0) return rc;
        for (int64_t i = 0; i < n; i++)
            out->u.l->items[i] = chat__int(start + i * st);
        return 0;
    }
    case FN_DICT:
        if ((rc = chat__dict_new(c, out)) < 0) return rc;
        return fill_dict(c, a, out->u.m, "dict");
    case FN_NAMESPACE:
        if ((rc = chat__dict_new(c, out)) < 0) return rc;
        out->type = TV_NS;
        return fill_dict(c, a, out->u.m, "namespace");
    case FN_RAISE: {
        struct tstr msg = { "", 0 };

        if (a->n > 0 && (rc = chat__to_str(c, &a->v[0], &msg)) < 0) return rc;
        if (c->d != NULL && c->d->code == 0)
            slm_diag_set(c->d, SLM_EINVAL, "%.*s",
                         msg.n > 0 ? (int)(msg.n > 250 ? 250 : msg.n) : 47,
                         msg.n > 0 ? msg.p : "template called raise_exception with no message");
        return SLM_EINVAL;
    }
    case FN_STRFTIME: {
        char fmt[256], res[512];
        time_t now = c->now ? (time_t)c->now : time(NULL);
        struct tm tm;
        size_t n;

        if (a->n != 1 || a->v[0].type != TV_STR)
            return chat__fail(c, SLM_EINVAL, "strftime_now needs one format string");
        if (a->v[0].u.s.n >= sizeof(fmt) || memchr(a->v[0].u.s.p, '\0', a->v[0].u.s.n))
            return chat__fail(c, SLM_EINVAL, "strftime_now: format too long or has a NUL");
        memcpy(fmt, a->v[0].u.s.p, a->v[0].u.s.n);
        fmt[a->v[0].u.s.n] = '\0';
        if (localtime_r(&now, &tm) == NULL)
            return chat__fail(c, SLM_EINVAL, "strftime_now: cannot convert the time");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        /* The format is data; strftime has no %n-style writes, so it is safe. */
        n = strftime(res, sizeof(res), fmt, &tm);
#pragma GCC diagnostic pop
        if (n == 0 && fmt[0] != '\0')
            return chat__fail(c, SLM_EINVAL, "strftime_now: result too long");
        return new_str(c, res, n, out);
    }
    default:
        return chat__fail(c, SLM_EINTERNAL, "unknown function %u", fn);
    }
}
