/*
 * template_value.c - values of the template interpreter with Python's
 * semantics: truth, ==, <, str(), repr(), json.dumps, float repr.
 *
 * Values are small structs passed by value; lists, dicts and strings built
 * during a render live in the render's arena. Strings are UTF-8 and indexed
 * by code point, as Python's str is.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_int.h"
#include "core/alloc.h"

/* ---- arena ---- */

struct tpl_arena_block {
    struct tpl_arena_block *next;
    size_t size;
    size_t used;
    max_align_t data[];
};

#define ARENA_BLOCK_MIN (64u << 10)

void chat__arena_init(struct tpl_arena *a, size_t used_max)
{
    a->head = NULL;
    a->used = 0;
    a->used_max = used_max;
    a->over = false;
}

void chat__arena_fini(struct tpl_arena *a)
{
    struct tpl_arena_block *b = a->head;

    while (b != NULL) {
        struct tpl_arena_block *next = b->next;

        slm_free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}

void *chat__arena_alloc(struct tpl_arena *a, size_t size)
{
    struct tpl_arena_block *b = a->head;
    size_t need, bsize, total;
    void *p;

    if (!slm_add_size(size, sizeof(max_align_t) - 1, &need)) {
        a->over = true;
        return NULL;
    }
    need -= need % sizeof(max_align_t);
    if (need == 0) need = sizeof(max_align_t);
    if (b == NULL || b->size - b->used < need) {
        bsize = need > ARENA_BLOCK_MIN ? need : ARENA_BLOCK_MIN;
        if (!slm_add_size(bsize, sizeof(*b), &total) || !slm_add_size(a->used, total, &a->used) ||
            a->used > a->used_max) {
            a->over = true;
            return NULL;
        }
        b = slm_malloc(total);
        if (b == NULL) return NULL;
        b->size = bsize;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    p = (char *)b->data + b->used;
    b->used += need;
    memset(p, 0, size);
    return p;
}

char *chat__arena_strdup(struct tpl_arena *a, const char *s, size_t n)
{
    size_t total;
    char *p;

    if (!slm_add_size(n, 1, &total) || (p = chat__arena_alloc(a, total)) == NULL) return NULL;
    if (n > 0) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- UTF-8 ---- */

uint32_t chat__u8_decode(const char *s, size_t n, size_t *adv)
{
    const unsigned char *u = (const unsigned char *)s;
    uint32_t cp;
    size_t len;

    if (n == 0) {
        *adv = 0;
        return 0;
    }
    if (u[0] < 0x80) {
        *adv = 1;
        return u[0];
    }
    if ((u[0] & 0xE0) == 0xC0) {
        len = 2;
        cp = u[0] & 0x1F;
    } else if ((u[0] & 0xF0) == 0xE0) {
        len = 3;
        cp = u[0] & 0x0F;
    } else if ((u[0] & 0xF8) == 0xF0) {
        len = 4;
        cp = u[0] & 0x07;
    } else {
        *adv = 1;
        return 0xFFFD;
    }
    if (len > n) {
        *adv = 1;
        return 0xFFFD;
    }
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *adv = 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (u[i] & 0x3F);
    }
    *adv = len;
    return cp;
}

size_t chat__u8_len(const char *s, size_t n)
{
    size_t count = 0;

    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) count++;
    return count;
}

size_t chat__u8_offset(const char *s, size_t n, size_t i)
{
    size_t pos = 0;

    while (i > 0 && pos < n) {
        pos++;
        while (pos < n && ((unsigned char)s[pos] & 0xC0) == 0x80)
            pos++;
        i--;
    }
    return pos;
}

/* str.isspace(): White_Space plus the separators Python counts (\x1c-\x1f). */
bool chat__py_isspace(uint32_t cp)
{
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

size_t chat__rstrip_len(const char *s, size_t n)
{
    size_t end = n;

    while (end > 0) {
        size_t start = end - 1, adv;

        while (start > 0 && ((unsigned char)s[start] & 0xC0) == 0x80)
            start--;
        if (!chat__py_isspace(chat__u8_decode(s + start, end - start, &adv))) break;
        end = start;
    }
    return n - end;
}

size_t chat__lstrip_len(const char *s, size_t n)
{
    size_t pos = 0;

    while (pos < n) {
        size_t adv;

        if (!chat__py_isspace(chat__u8_decode(s + pos, n - pos, &adv))) break;
        pos += adv;
    }
    return pos;
}

/* ---- constructors ---- */

struct tv chat__undef(struct tstr name)
{
    struct tv v = { .type = TV_UNDEF };

    v.u.s = name;
    return v;
}

struct tv chat__none(void)
{
    return (struct tv){ .type = TV_NONE };
}

struct tv chat__bool(bool b)
{
    struct tv v = { .type = TV_BOOL };

    v.u.b = b;
    return v;
}

struct tv chat__int(int64_t i)
{
    struct tv v = { .type = TV_INT };

    v.u.i = i;
    return v;
}

struct tv chat__float(double d)
{
    struct tv v = { .type = TV_FLOAT };

    v.u.d = d;
    return v;
}

struct tv chat__str(const char *p, size_t n)
{
    struct tv v = { .type = TV_STR };

    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

struct tv chat__cstr(const char *s)
{
    return chat__str(s, strlen(s));
}

const char *chat__type_name(const struct tv *v)
{
    switch (v->type) {
    case TV_UNDEF:
        return "Undefined";
    case TV_NONE:
        return "NoneType";
    case TV_BOOL:
        return "bool";
    case TV_INT:
        return "int";
    case TV_FLOAT:
        return "float";
    case TV_STR:
        return "str";
    case TV_LIST:
        return v->flags & TV_F_TUPLE ? "tuple" : v->flags & TV_F_GEN ? "generator" : "list";
    case TV_DICT:
        return "dict";
    case TV_NS:
        return "Namespace";
    case TV_LOOP:
        return "LoopContext";
    case TV_MACRO:
        return "Macro";
    default:
        return "function";
    }
}

bool chat__truthy(const struct tv *v)
{
    switch (v->type) {
    case TV_UNDEF:
    case TV_NONE:
        return false;
    case TV_BOOL:
        return v->u.b;
    case TV_INT:
        return v->u.i != 0;
    case TV_FLOAT:
        return v->u.d != 0.0;
    case TV_STR:
        return v->u.s.n > 0;
    case TV_LIST:
        return (v->flags & TV_F_GEN) || v->u.l->n > 0;
    case TV_DICT:
        return v->u.m->n > 0;
    default:
        return true;
    }
}

static bool is_num(const struct tv *v)
{
    return v->type == TV_BOOL || v->type == TV_INT || v->type == TV_FLOAT;
}

static double num_d(const struct tv *v)
{
    return v->type == TV_FLOAT ? v->u.d : v->type == TV_INT ? (double)v->u.i : (double)v->u.b;
}

static int64_t num_i(const struct tv *v)
{
    return v->type == TV_INT ? v->u.i : (int64_t)v->u.b;
}

bool chat__equal(const struct tv *a, const struct tv *b)
{
    if (is_num(a) && is_num(b)) {
        if (a->type != TV_FLOAT && b->type != TV_FLOAT) return num_i(a) == num_i(b);
        return num_d(a) == num_d(b);
    }
    if (a->type != b->type) return false;
    switch (a->type) {
    case TV_UNDEF:
    case TV_NONE:
        return true;
    case TV_STR:
        return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    case TV_LIST:
        if ((a->flags & (TV_F_TUPLE | TV_F_GEN)) != (b->flags & (TV_F_TUPLE | TV_F_GEN)))
            return false;
        if (a->flags & TV_F_GEN) return a->u.l == b->u.l;
        if (a->u.l->n != b->u.l->n) return false;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!chat__equal(&a->u.l->items[i], &b->u.l->items[i])) return false;
        return true;
    case TV_DICT:
        if (a->u.m->n != b->u.m->n) return false;
        for (size_t i = 0; i < a->u.m->n; i++) {
            const struct tv *o = chat__dict_get(b->u.m, &a->u.m->keys[i]);

            if (o == NULL || !chat__equal(&a->u.m->vals[i], o)) return false;
        }
        return true;
    case TV_NS:
        return a->u.m == b->u.m;
    case TV_LOOP:
        return a->u.loop == b->u.loop;
    case TV_MACRO:
        return a->u.mac == b->u.mac;
    case TV_FUNC:
        return a->fn == b->fn;
    default:
        return false;
    }
}

static int str_cmp(const struct tstr *a, const struct tstr *b)
{
    size_t n = a->n < b->n ? a->n : b->n;
    int c = n ? memcmp(a->p, b->p, n) : 0;

    if (c != 0) return c;
    return a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
}

int chat__less(struct rctx *c, const struct tv *a, const struct tv *b, bool *out)
{
    if (is_num(a) && is_num(b)) {
        if (a->type != TV_FLOAT && b->type != TV_FLOAT)
            *out = num_i(a) < num_i(b);
        else
            *out = num_d(a) < num_d(b);
        return 0;
    }
    if (a->type == TV_STR && b->type == TV_STR) {
        /* UTF-8 byte order is code point order. */
        *out = str_cmp(&a->u.s, &b->u.s) < 0;
        return 0;
    }
    if (a->type == TV_LIST && b->type == TV_LIST &&
        (a->flags & TV_F_TUPLE) == (b->flags & TV_F_TUPLE) && !(a->flags & TV_F_GEN) &&
        !(b->flags & TV_F_GEN)) {
        size_t n = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;

        for (size_t i = 0; i < n; i++) {
            if (!chat__equal(&a->u.l->items[i], &b->u.l->items[i]))
                return chat__less(c, &a->u.l->items[i], &b->u.l->items[i], out);
        }
        *out = a->u.l->n < b->u.l->n;
        return 0;
    }
    return chat__fail(c, SLM_EINVAL, "'<' not supported between instances of '%s' and '%s'",
                      chat__type_name(a), chat__type_name(b));
}

/* ---- lists and dicts ---- */

int chat__list_new(struct rctx *c, size_t n, struct tv *out)
{
    struct tlist *l = chat__arena_alloc(&c->arena, sizeof(*l));
    size_t bytes;

    if (l == NULL || !slm_mul_size(n, sizeof(struct tv), &bytes)) return chat__oom(c);
    if (n > 0 && (l->items = chat__arena_alloc(&c->arena, bytes)) == NULL) return chat__oom(c);
    l->n = n;
    memset(out, 0, sizeof(*out));
    out->type = TV_LIST;
    out->u.l = l;
    return 0;
}

int chat__dict_new(struct rctx *c, struct tv *out)
{
    struct tdict *m = chat__arena_alloc(&c->arena, sizeof(*m));

    if (m == NULL) return chat__oom(c);
    memset(out, 0, sizeof(*out));
    out->type = TV_DICT;
    out->u.m = m;
    return 0;
}

struct tv *chat__dict_getn(const struct tdict *m, const char *key, size_t n)
{
    for (size_t i = 0; i < m->n; i++) {
        const struct tv *k = &m->keys[i];

        if (k->type == TV_STR && k->u.s.n == n && memcmp(k->u.s.p, key, n) == 0) return &m->vals[i];
    }
    return NULL;
}

struct tv *chat__dict_get(const struct tdict *m, const struct tv *key)
{
    if (key->type == TV_STR) return chat__dict_getn(m, key->u.s.p, key->u.s.n);
    for (size_t i = 0; i < m->n; i++)
        if (chat__equal(&m->keys[i], key)) return &m->vals[i];
    return NULL;
}

int chat__dict_set(struct rctx *c, struct tdict *m, const struct tv *key, const struct tv *val)
{
    struct tv *slot = chat__dict_get(m, key);

    if (slot != NULL) {
        *slot = *val;
        return 0;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8, bytes;
        struct tv *nk, *nv;

        if (!slm_mul_size(cap, sizeof(struct tv), &bytes)) return chat__oom(c);
        nk = chat__arena_alloc(&c->arena, bytes);
        nv = chat__arena_alloc(&c->arena, bytes);
        if (nk == NULL || nv == NULL) return chat__oom(c);
        if (m->n > 0) {
            memcpy(nk, m->keys, m->n * sizeof(struct tv));
            memcpy(nv, m->vals, m->n * sizeof(struct tv));
        }
        m->keys = nk;
        m->vals = nv;
        m->cap = cap;
    }
    m->keys[m->n] = *key;
    m->vals[m->n] = *val;
    m->n++;
    return 0;
}

/* Converts a JSON DOM value; strings are borrowed from the document. */
int chat__from_json(struct rctx *c, const struct json_value *j, struct tv *out)
{
    int rc;

    if (++c->steps > c->steps_max)
        return chat__fail(c, SLM_ELIMIT, "render exceeds %llu steps",
                          (unsigned long long)c->steps_max);
    switch (j->type) {
    case JSON_NULL:
        *out = chat__none();
        return 0;
    case JSON_BOOL:
        *out = chat__bool(j->u.b);
        return 0;
    case JSON_INT:
        *out = chat__int(j->u.i);
        return 0;
    case JSON_DOUBLE:
        *out = chat__float(j->u.d);
        return 0;
    case JSON_STRING:
        *out = chat__str(j->u.str.ptr, j->u.str.len);
        return 0;
    case JSON_ARRAY:
        if ((rc = chat__list_new(c, j->u.arr.n, out)) < 0) return rc;
        for (size_t i = 0; i < j->u.arr.n; i++)
            if ((rc = chat__from_json(c, &j->u.arr.items[i], &out->u.l->items[i])) < 0) return rc;
        return 0;
    case JSON_OBJECT: {
        struct tdict *m;
        size_t bytes;

        if ((rc = chat__dict_new(c, out)) < 0) return rc;
        m = out->u.m;
        if (j->u.obj.n > 0) {
            if (!slm_mul_size(j->u.obj.n, sizeof(struct tv), &bytes) ||
                (m->keys = chat__arena_alloc(&c->arena, bytes)) == NULL ||
                (m->vals = chat__arena_alloc(&c->arena, bytes)) == NULL)
                return chat__oom(c);
            m->cap = j->u.obj.n;
        }
        for (size_t i = 0; i < j->u.obj.n; i++) {
            const struct json_member *mem = &j->u.obj.members[i];

            m->keys[i] = chat__str(mem->key, mem->key_len);
            if ((rc = chat__from_json(c, &mem->value, &m->vals[i])) < 0) return rc;
        }
        m->n = j->u.obj.n;
        return 0;
    }
    default:
        return chat__fail(c, SLM_EINVAL, "unknown JSON value type %u", (unsigned)j->type);
    }
}

/* ---- str() and repr() ---- */

/*
 * Python's float repr: the shortest digits that read back to the same
 * double, in fixed notation for exponents -4..15 and with ".0" when
 * integral, else d.ddde+XX.
 */
void chat__float_repr(double d, char *buf, size_t cap)
{
    char tmp[40], digits[20];
    int prec, exp10, nd = 0;
    char *e;
    bool neg;

    if (isnan(d)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, cap, d < 0 ? "-inf" : "inf");
        return;
    }
    if (d == 0.0) {
        snprintf(buf, cap, signbit(d) ? "-0.0" : "0.0");
        return;
    }
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    neg = tmp[0] == '-';
    for (const char *p = tmp + neg; *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    e = strchr(tmp, 'e');
    exp10 = (int)strtol(e + 1, NULL, 10);
    {
        size_t o = 0;
        char out[64];

        if (neg) out[o++] = '-';
        if (exp10 >= -5 + 1 && exp10 < 16) {
            if (exp10 < 0) {
                out[o++] = '0';
                out[o++] = '.';
                for (int i = 0; i < -exp10 - 1; i++)
                    out[o++] = '0';
                for (int i = 0; i < nd; i++)
                    out[o++] = digits[i];
            } else {
                for (int i = 0; i <= exp10; i++)
                    out[o++] = i < nd ? digits[i] : '0';
                out[o++] = '.';
                if (nd > exp10 + 1) {
                    for (int i = exp10 + 1; i < nd; i++)
                        out[o++] = digits[i];
                } else {
                    out[o++] = '0';
                }
            }
            out[o] = '\0';
        } else {
            out[o++] = digits[0];
            if (nd > 1) {
                out[o++] = '.';
                for (int i = 1; i < nd; i++)
                    out[o++] = digits[i];
            }
            out[o] = '\0';
            snprintf(out + o, sizeof(out) - o, "e%c%02d", exp10 < 0 ? '-' : '+',
                     exp10 < 0 ? -exp10 : exp10);
        }
        snprintf(buf, cap, "%s", out);
    }
}

/* Approximates str.isprintable() for repr(): controls, separators other than
 * the space, format characters and private use are escaped. */
static bool py_printable(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return false;
    if (cp == 0x61C || cp == 0x1680 || cp == 0x180E || (cp >= 0x2000 && cp <= 0x200F) ||
        (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 ||
        (cp >= 0xD800 && cp <= 0xF8FF) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) ||
        cp >= 0xF0000 || (cp >= 0xE0000 && cp <= 0xE0FFF))
        return false;
    return true;
}

static int write_repr_str(struct slm_buf *b, const struct tstr *s)
{
    bool has_sq = memchr(s->p, '\'', s->n) != NULL, has_dq = memchr(s->p, '"', s->n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    int rc = slm_buf_append_char(b, q);

    for (size_t i = 0; rc == 0 && i < s->n;) {
        size_t adv;
        uint32_t cp = chat__u8_decode(s->p + i, s->n - i, &adv);
        char esc[16];

        if (cp == (uint32_t)q || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            rc = slm_buf_append(b, esc, 2);
        } else if (cp == '\n') {
            rc = slm_buf_append(b, "\\n", 2);
        } else if (cp == '\r') {
            rc = slm_buf_append(b, "\\r", 2);
        } else if (cp == '\t') {
            rc = slm_buf_append(b, "\\t", 2);
        } else if (!py_printable(cp)) {
            if (cp < 0x100)
                snprintf(esc, sizeof(esc), "\\x%02x", (unsigned)cp);
            else if (cp < 0x10000)
                snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
            else
                snprintf(esc, sizeof(esc), "\\U%08x", (unsigned)cp);
            rc = slm_buf_append_str(b, esc);
        } else {
            rc = slm_buf_append(b, s->p + i, adv);
        }
        i += adv;
    }
    return rc < 0 ? rc : slm_buf_append_char(b, q);
}

/* Appends str(v), or repr(v) when repr is set (strings quoted). */
int chat__write_str(struct rctx *c, struct slm_buf *b, const struct tv *v, bool repr)
{
    char num[64];
    int rc = 0;

    if (++c->steps > c->steps_max)
        return chat__fail(c, SLM_ELIMIT, "render exceeds %llu steps",
                          (unsigned long long)c->steps_max);
    switch (v->type) {
    case TV_UNDEF:
        return repr ? slm_buf_append_str(b, "Undefined") : 0;
    case TV_NONE:
        return slm_buf_append_str(b, "None");
    case TV_BOOL:
        return slm_buf_append_str(b, v->u.b ? "True" : "False");
    case TV_INT:
        snprintf(num, sizeof(num), "%lld", (long long)v->u.i);
        return slm_buf_append_str(b, num);
    case TV_FLOAT:
        chat__float_repr(v->u.d, num, sizeof(num));
        return slm_buf_append_str(b, num);
    case TV_STR:
        if (repr) return write_repr_str(b, &v->u.s);
        return slm_buf_append(b, v->u.s.p, v->u.s.n);
    case TV_LIST: {
        bool tuple = v->flags & TV_F_TUPLE;

        if (v->flags & TV_F_GEN)
            return chat__fail(c, SLM_EINVAL,
                              "cannot print a generator (Jinja2 prints its address); "
                              "add |list");
        rc = slm_buf_append_char(b, tuple ? '(' : '[');
        for (size_t i = 0; rc == 0 && i < v->u.l->n; i++) {
            if (i > 0) rc = slm_buf_append(b, ", ", 2);
            if (rc == 0) rc = chat__write_str(c, b, &v->u.l->items[i], true);
        }
        if (rc == 0 && tuple && v->u.l->n == 1) rc = slm_buf_append_char(b, ',');
        return rc < 0 ? rc : slm_buf_append_char(b, tuple ? ')' : ']');
    }
    case TV_DICT:
        rc = slm_buf_append_char(b, '{');
        for (size_t i = 0; rc == 0 && i < v->u.m->n; i++) {
            if (i > 0) rc = slm_buf_append(b, ", ", 2);
            if (rc == 0) rc = chat__write_str(c, b, &v->u.m->keys[i], true);
            if (rc == 0) rc = slm_buf_append(b, ": ", 2);
            if (rc == 0) rc = chat__write_str(c, b, &v->u.m->vals[i], true);
        }
        return rc < 0 ? rc : slm_buf_append_char(b, '}');
    default:
        return chat__fail(c, SLM_EINVAL,
                          "cannot convert a %s to a string (Jinja2 prints its address)",
                          chat__type_name(v));
    }
}

int chat__to_str(struct rctx *c, const struct tv *v, struct tstr *out)
{
    struct slm_buf b;
    int rc;

    if (v->type == TV_STR) {
        *out = v->u.s;
        return 0;
    }
    if (v->type == TV_UNDEF) {
        out->p = "";
        out->n = 0;
        return 0;
    }
    slm_buf_init(&b, c->out_max);
    rc = chat__write_str(c, &b, v, false);
    if (rc == 0) {
        char *p = chat__arena_strdup(&c->arena, b.data ? b.data : "", b.len);

        if (p == NULL) rc = chat__oom(c);
        out->p = p;
        out->n = b.len;
    } else if (rc == SLM_ELIMIT && c->d != NULL && c->d->code == 0) {
        rc = chat__fail(c, SLM_ELIMIT, "string exceeds %zu bytes", c->out_max);
    }
    slm_buf_fini(&b);
    return rc;
}

/* ---- json.dumps ---- */

static int tj_str(struct slm_buf *b, const struct tstr *s, bool ensure_ascii)
{
    int rc = slm_buf_append_char(b, '"');
    size_t run = 0;

    for (size_t i = 0; rc == 0 && i < s->n;) {
        unsigned char ch = (unsigned char)s->p[i];
        char esc[16];

        if (ch >= 0x20 && ch != '"' && ch != '\\' && (ch < 0x80 || !ensure_ascii)) {
            run++;
            i++;
            continue;
        }
        if (run > 0) rc = slm_buf_append(b, s->p + i - run, run);
        run = 0;
        if (rc < 0) break;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            rc = slm_buf_append(b, esc, 2);
            i++;
        } else if (ch == '\n' || ch == '\r' || ch == '\t' || ch == '\b' || ch == '\f') {
            esc[0] = '\\';
            esc[1] = ch == '\n'   ? 'n'
                     : ch == '\r' ? 'r'
                     : ch == '\t' ? 't'
                     : ch == '\b' ? 'b'
                                  : 'f';
            rc = slm_buf_append(b, esc, 2);
            i++;
        } else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            rc = slm_buf_append_str(b, esc);
            i++;
        } else {
            size_t adv;
            uint32_t cp = chat__u8_decode(s->p + i, s->n - i, &adv);

            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;

                snprintf(esc, sizeof(esc), "\\u%04x\\u%04x", 0xD800 + (v >> 10),
                         0xDC00 + (v & 0x3FF));
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", cp);
            }
            rc = slm_buf_append_str(b, esc);
            i += adv;
        }
    }
    if (rc == 0 && run > 0) rc = slm_buf_append(b, s->p + s->n - run, run);
    return rc < 0 ? rc : slm_buf_append_char(b, '"');
}

static int json_newline(struct slm_buf *b, const struct tojson_opts *o, unsigned level)
{
    int rc = slm_buf_append_char(b, '\n');

    for (unsigned i = 0; rc == 0 && i < level; i++)
        rc = slm_buf_append(b, o->indent, o->indent_len);
    return rc;
}

/* json.dumps float: repr, with NaN / Infinity / -Infinity. */
static int json_float(struct slm_buf *b, double d)
{
    char num[64];

    if (isnan(d)) return slm_buf_append_str(b, "NaN");
    if (isinf(d)) return slm_buf_append_str(b, d < 0 ? "-Infinity" : "Infinity");
    chat__float_repr(d, num, sizeof(num));
    return slm_buf_append_str(b, num);
}

static int tj_key(struct rctx *c, struct slm_buf *b, const struct tv *k,
                  const struct tojson_opts *o)
{
    char num[64];
    struct tstr s;

    switch (k->type) {
    case TV_STR:
        return tj_str(b, &k->u.s, o->ensure_ascii);
    case TV_INT:
        snprintf(num, sizeof(num), "%lld", (long long)k->u.i);
        break;
    case TV_FLOAT:
        if (isnan(k->u.d) || isinf(k->u.d))
            snprintf(num, sizeof(num), "%s",
                     isnan(k->u.d) ? "NaN"
                     : k->u.d < 0  ? "-Infinity"
                                   : "Infinity");
        else
            chat__float_repr(k->u.d, num, sizeof(num));
        break;
    case TV_BOOL:
        snprintf(num, sizeof(num), "%s", k->u.b ? "true" : "false");
        break;
    case TV_NONE:
        snprintf(num, sizeof(num), "null");
        break;
    default:
        return chat__fail(c, SLM_EINVAL, "keys must be str, int, float, bool or None, not %s",
                          chat__type_name(k));
    }
    s.p = num;
    s.n = strlen(num);
    return tj_str(b, &s, false);
}

static int tojson_dict(struct rctx *c, struct slm_buf *b, const struct tdict *m,
                       const struct tojson_opts *o, unsigned level)
{
    size_t *order = NULL;
    int rc;

    if (m->n == 0) return slm_buf_append(b, "{}", 2);
    if (o->sort_keys) {
        size_t bytes;

        if (!slm_mul_size(m->n, sizeof(size_t), &bytes) ||
            (order = chat__arena_alloc(&c->arena, bytes)) == NULL)
            return chat__oom(c);
        for (size_t i = 0; i < m->n; i++)
            order[i] = i;
        /* Insertion sort: dicts in templates are small; steps are counted. */
        for (size_t i = 1; i < m->n; i++) {
            size_t j = i;

            while (j > 0) {
                bool lt;

                if (++c->steps > c->steps_max)
                    return chat__fail(c, SLM_ELIMIT, "render exceeds %llu steps",
                                      (unsigned long long)c->steps_max);
                if ((rc = chat__less(c, &m->keys[order[j]], &m->keys[order[j - 1]], &lt)) < 0)
                    return rc;
                if (!lt) break;
                size_t t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
                j--;
            }
        }
    }
    rc = slm_buf_append_char(b, '{');
    for (size_t k = 0; rc == 0 && k < m->n; k++) {
        size_t i = order ? order[k] : k;

        if (k > 0) rc = slm_buf_append(b, o->item_sep.p, o->item_sep.n);
        if (rc == 0 && o->indent) rc = json_newline(b, o, level + 1);
        if (rc == 0) rc = tj_key(c, b, &m->keys[i], o);
        if (rc == 0) rc = slm_buf_append(b, o->key_sep.p, o->key_sep.n);
        if (rc == 0) rc = chat__tojson(c, b, &m->vals[i], o, level + 1);
    }
    if (rc == 0 && o->indent) rc = json_newline(b, o, level);
    return rc < 0 ? rc : slm_buf_append_char(b, '}');
}

/* json.dumps(v, ...) with the options HF's tojson passes through. */
int chat__tojson(struct rctx *c, struct slm_buf *b, const struct tv *v, const struct tojson_opts *o,
                 unsigned level)
{
    char num[64];
    int rc;

    if (++c->steps > c->steps_max)
        return chat__fail(c, SLM_ELIMIT, "render exceeds %llu steps",
                          (unsigned long long)c->steps_max);
    if (level > SLM_LIMIT_JSON_DEPTH * 2)
        return chat__fail(c, SLM_ELIMIT, "tojson: value nested deeper than %u",
                          SLM_LIMIT_JSON_DEPTH * 2);
    switch (v->type) {
    case TV_NONE:
        return slm_buf_append_str(b, "null");
    case TV_BOOL:
        return slm_buf_append_str(b, v->u.b ? "true" : "false");
    case TV_INT:
        snprintf(num, sizeof(num), "%lld", (long long)v->u.i);
        return slm_buf_append_str(b, num);
    case TV_FLOAT:
        return json_float(b, v->u.d);
    case TV_STR:
        return tj_str(b, &v->u.s, o->ensure_ascii);
    case TV_LIST:
        if (v->flags & TV_F_GEN) break;
        if (v->u.l->n == 0) return slm_buf_append(b, "[]", 2);
        rc = slm_buf_append_char(b, '[');
        for (size_t i = 0; rc == 0 && i < v->u.l->n; i++) {
            if (i > 0) rc = slm_buf_append(b, o->item_sep.p, o->item_sep.n);
            if (rc == 0 && o->indent) rc = json_newline(b, o, level + 1);
            if (rc == 0) rc = chat__tojson(c, b, &v->u.l->items[i], o, level + 1);
        }
        if (rc == 0 && o->indent) rc = json_newline(b, o, level);
        return rc < 0 ? rc : slm_buf_append_char(b, ']');
    case TV_DICT:
        return tojson_dict(c, b, v->u.m, o, level);
    default:
        break;
    }
    return chat__fail(c, SLM_EINVAL, "Object of type %s is not JSON serializable",
                      chat__type_name(v));
}
