/*
 * template_eval.c - renders a compiled template (Jinja2 semantics).
 *
 * Scoping follows Jinja2: {% set %} writes to the innermost frame; every
 * for-loop iteration gets a fresh frame (a variable set in one iteration is
 * gone in the next and never leaks out of the loop); if blocks have no frame;
 * macros run in a frame whose parent is the template's top level. Lookups go
 * from the innermost frame out, then to the render globals, then to the
 * global functions.
 *
 * Bounds: every node evaluation is a step (SLM_LIMIT_TEMPLATE_STEPS), the
 * output and every captured string are capped, nested evaluation is at most
 * EVAL_DEPTH_MAX frames deep and macro calls SLM_LIMIT_TEMPLATE_CALL_DEPTH.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chat/chat_int.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "core/str.h"

#define EVAL_DEPTH_MAX 1024u

static int eval(struct rctx *c, const struct tnode *n, struct tv *out);
static int exec(struct rctx *c, const struct tnode *n);

int chat__fail(struct rctx *c, int code, const char *fmt, ...)
{
    char msg[SLM_DIAG_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->d != NULL && c->d->code == 0)
        slm_diag_set(c->d, code, "template line %u: %s", (unsigned)c->line, msg);
    return code;
}

int chat__oom(struct rctx *c)
{
    if (c->arena.over)
        return chat__fail(c, SLM_ELIMIT, "render needs more than %zu bytes of memory",
                          c->arena.used_max);
    return chat__fail(c, SLM_ENOMEM, "out of memory");
}

static int step(struct rctx *c, const struct tnode *n)
{
    c->line = n->line;
    if (++c->steps > c->steps_max)
        return chat__fail(c, SLM_ELIMIT, "render exceeds %llu steps (a runaway loop?)",
                          (unsigned long long)c->steps_max);
    return 0;
}

static int undefined_error(struct rctx *c, const struct tv *v)
{
    if (v->flags & TV_F_UNSAFE)
        return chat__fail(c, SLM_EINVAL, "access to attribute '%.*s' is unsafe",
                          (int)(v->u.s.n > 60 ? 60 : v->u.s.n), v->u.s.p ? v->u.s.p : "");
    if (v->u.s.p == NULL) return chat__fail(c, SLM_EINVAL, "value is undefined");
    return chat__fail(c, SLM_EINVAL, "'%.*s' is undefined", (int)(v->u.s.n > 60 ? 60 : v->u.s.n),
                      v->u.s.p);
}

/* ---- output ---- */

static int emit(struct rctx *c, const char *p, size_t n)
{
    int rc;

    if (c->out->len + n > c->out_max)
        return chat__fail(c, SLM_ELIMIT, "rendered text exceeds %zu bytes", c->out_max);
    rc = slm_buf_append(c->out, p, n);
    if (rc == SLM_ELIMIT)
        return chat__fail(c, SLM_ELIMIT, "rendered text exceeds the output buffer (%zu bytes)",
                          c->out->len_max);
    if (rc < 0) return chat__fail(c, rc, "out of memory writing the output");
    return 0;
}

static int emit_value(struct rctx *c, const struct tv *v)
{
    int rc;

    if (v->type == TV_STR) return emit(c, v->u.s.p, v->u.s.n);
    rc = chat__write_str(c, c->out, v, false);
    if (rc == SLM_ELIMIT || c->out->len > c->out_max)
        return chat__fail(c, SLM_ELIMIT, "rendered text exceeds %zu bytes", c->out_max);
    if (rc < 0) return chat__fail(c, rc, "cannot write a value");
    return 0;
}

/* Runs body with the output redirected into a new string. */
static int capture(struct rctx *c, const struct tnode *body, struct tstr *out)
{
    struct slm_buf buf, *saved = c->out;
    int rc;

    slm_buf_init(&buf, c->out_max);
    c->out = &buf;
    rc = exec(c, body);
    c->out = saved;
    if (rc == 0) {
        char *p = chat__arena_strdup(&c->arena, buf.data ? buf.data : "", buf.len);

        if (p == NULL) rc = chat__oom(c);
        out->p = p;
        out->n = buf.len;
    }
    slm_buf_fini(&buf);
    return rc;
}

/* ---- variables ---- */

static int frame_new(struct rctx *c, struct frame *parent, struct frame **out)
{
    struct frame *f = chat__arena_alloc(&c->arena, sizeof(*f));

    if (f == NULL) return chat__oom(c);
    f->parent = parent;
    *out = f;
    return 0;
}

static int frame_set(struct rctx *c, struct frame *f, const struct tstr *name, const struct tv *v)
{
    struct tv key = chat__str(name->p, name->n);

    return chat__dict_set(c, &f->vars, &key, v);
}

static void lookup(struct rctx *c, const struct tstr *name, struct tv *out)
{
    struct tv *v;

    for (struct frame *f = c->frame; f != NULL; f = f->parent) {
        if ((v = chat__dict_getn(&f->vars, name->p, name->n)) != NULL) {
            *out = *v;
            return;
        }
    }
    if ((v = chat__dict_getn(&c->globals, name->p, name->n)) != NULL) {
        *out = *v;
        return;
    }
    if (chat__global_func(name, out)) return;
    *out = chat__undef(*name);
}

/* ---- iteration, slicing ---- */

/* The items a for loop over v sees: list items, dict keys, characters. */
int chat__iterate(struct rctx *c, const struct tv *v, struct tlist *out)
{
    struct tv tmp;
    int rc;

    switch (v->type) {
    case TV_UNDEF:
        out->items = NULL;
        out->n = 0;
        return 0;
    case TV_LIST:
        *out = *v->u.l;
        return 0;
    case TV_DICT:
        out->items = v->u.m->keys;
        out->n = v->u.m->n;
        return 0;
    case TV_STR: {
        size_t n = chat__u8_len(v->u.s.p, v->u.s.n), pos = 0;

        if ((rc = chat__list_new(c, n, &tmp)) < 0) return rc;
        for (size_t i = 0; i < n; i++) {
            size_t adv;

            chat__u8_decode(v->u.s.p + pos, v->u.s.n - pos, &adv);
            tmp.u.l->items[i] = chat__str(v->u.s.p + pos, adv);
            pos += adv;
        }
        *out = *tmp.u.l;
        return 0;
    }
    default:
        return chat__fail(c, SLM_EINVAL, "'%s' object is not iterable", chat__type_name(v));
    }
}

static int to_index(struct rctx *c, const struct tv *v, int64_t *out)
{
    if (v->type == TV_INT || v->type == TV_BOOL) {
        *out = v->type == TV_INT ? v->u.i : v->u.b;
        return 0;
    }
    return chat__fail(c, SLM_EINVAL, "slice indices must be integers or None, not %s",
                      chat__type_name(v));
}

/* Python's slice.indices(): clamps start/stop for step, returns the count. */
static size_t slice_indices(int64_t len, bool has_start, int64_t start, bool has_stop, int64_t stop,
                            int64_t stepv, int64_t *s0)
{
    int64_t lo, hi;

    if (stepv > 0) {
        lo = has_start
                 ? (start < 0 ? (start + len < 0 ? 0 : start + len) : (start > len ? len : start))
                 : 0;
        hi = has_stop ? (stop < 0 ? (stop + len < 0 ? 0 : stop + len) : (stop > len ? len : stop))
                      : len;
        *s0 = lo;
        return hi > lo ? (size_t)((hi - lo - 1) / stepv + 1) : 0;
    }
    lo = has_start ? (start < 0 ? (start + len < -1 ? -1 : start + len)
                                : (start >= len ? len - 1 : start))
                   : len - 1;
    hi = has_stop
             ? (stop < 0 ? (stop + len < -1 ? -1 : stop + len) : (stop >= len ? len - 1 : stop))
             : -1;
    *s0 = lo;
    return lo > hi ? (size_t)((lo - hi - 1) / (-stepv) + 1) : 0;
}

int chat__slice(struct rctx *c, const struct tv *obj, const struct tv *start, const struct tv *stop,
                const struct tv *stepv, struct tv *out)
{
    int64_t a = 0, b = 0, s = 1, first;
    bool has_a = start && start->type != TV_NONE, has_b = stop && stop->type != TV_NONE;
    size_t count, len;
    int rc;

    if (has_a && (rc = to_index(c, start, &a)) < 0) return rc;
    if (has_b && (rc = to_index(c, stop, &b)) < 0) return rc;
    if (stepv && stepv->type != TV_NONE && (rc = to_index(c, stepv, &s)) < 0) return rc;
    if (s == 0) return chat__fail(c, SLM_EINVAL, "slice step cannot be zero");
    if (s == INT64_MIN) s = -INT64_MAX;
    if (obj->type == TV_STR) {
        struct tlist chars;
        char *buf;
        size_t o = 0;

        len = chat__u8_len(obj->u.s.p, obj->u.s.n);
        count = slice_indices((int64_t)len, has_a, a, has_b, b, s, &first);
        if (s == 1) {
            size_t from = chat__u8_offset(obj->u.s.p, obj->u.s.n, (size_t)first);
            size_t to = from + chat__u8_offset(obj->u.s.p + from, obj->u.s.n - from, count);

            *out = chat__str(obj->u.s.p + from, to - from);
            return 0;
        }
        if ((rc = chat__iterate(c, obj, &chars)) < 0) return rc;
        if ((buf = chat__arena_alloc(&c->arena, obj->u.s.n + 1)) == NULL) return chat__oom(c);
        for (size_t i = 0; i < count; i++) {
            const struct tv *ch = &chars.items[first + (int64_t)i * s];

            memcpy(buf + o, ch->u.s.p, ch->u.s.n);
            o += ch->u.s.n;
        }
        *out = chat__str(buf, o);
        return 0;
    }
    if (obj->type == TV_LIST && !(obj->flags & TV_F_GEN)) {
        len = obj->u.l->n;
        count = slice_indices((int64_t)len, has_a, a, has_b, b, s, &first);
        if ((rc = chat__list_new(c, count, out)) < 0) return rc;
        out->flags = obj->flags & TV_F_TUPLE;
        for (size_t i = 0; i < count; i++)
            out->u.l->items[i] = obj->u.l->items[first + (int64_t)i * s];
        return 0;
    }
    if (obj->type == TV_UNDEF) return undefined_error(c, obj);
    /* Jinja2 turns the TypeError of subscripting into an undefined. */
    *out = chat__undef((struct tstr){ NULL, 0 });
    return 0;
}

/* ---- calls ---- */

static int eval_args(struct rctx *c, const struct tnode *n, struct targs *a)
{
    int rc;

    a->n = 0;
    for (size_t i = 0; i < n->n; i++) {
        if (a->n >= TARGS_MAX) return chat__fail(c, SLM_EINVAL, "too many arguments");
        if ((rc = eval(c, n->list[i], &a->v[a->n])) < 0) return rc;
        a->name[a->n] = n->argnames ? n->argnames[i] : (struct tstr){ NULL, 0 };
        a->n++;
    }
    return 0;
}

static int call_macro(struct rctx *c, const struct tnode *mac, struct targs *a,
                      const struct tv *caller, struct tv *out)
{
    struct frame *f = NULL, *saved = c->frame;
    size_t n_pos = 0;
    struct tstr text;
    int rc;

    if (c->call_depth >= SLM_LIMIT_TEMPLATE_CALL_DEPTH)
        return chat__fail(c, SLM_ELIMIT, "macro calls nested deeper than %u",
                          SLM_LIMIT_TEMPLATE_CALL_DEPTH);
    if ((rc = frame_new(c, c->top, &f)) < 0) return rc;
    for (size_t i = 0; i < a->n; i++)
        if (a->name[i].n == 0) n_pos++;
    if (n_pos > mac->n)
        return chat__fail(c, SLM_EINVAL, "macro '%.*s' takes not more than %zu argument(s)",
                          (int)mac->name.n, mac->name.p, mac->n);
    for (size_t i = 0; i < a->n; i++) {
        bool known = false;

        if (a->name[i].n == 0) continue;
        for (size_t k = 0; k < mac->n; k++)
            if (mac->list[k]->name.n == a->name[i].n &&
                memcmp(mac->list[k]->name.p, a->name[i].p, a->name[i].n) == 0)
                known = true;
        if (!known)
            return chat__fail(c, SLM_EINVAL, "macro '%.*s' takes no keyword argument '%.*s'",
                              (int)mac->name.n, mac->name.p, (int)a->name[i].n, a->name[i].p);
    }
    c->frame = f;
    for (size_t k = 0, pos = 0; k < mac->n; k++) {
        const struct tnode *param = mac->list[k];
        struct tv v;
        bool set = false;

        if (pos < n_pos) {
            /* positional arguments come first (the parser enforces it) */
            v = a->v[pos++];
            set = true;
        }
        for (size_t i = 0; !set && i < a->n; i++) {
            if (a->name[i].n == param->name.n &&
                memcmp(a->name[i].p, param->name.p, param->name.n) == 0) {
                v = a->v[i];
                set = true;
            }
        }
        if (!set) {
            if (param->e != NULL) {
                if ((rc = eval(c, param->e, &v)) < 0) goto out;
            } else {
                v = chat__undef(param->name);
            }
        }
        if ((rc = frame_set(c, f, &param->name, &v)) < 0) goto out;
    }
    if (caller != NULL) {
        struct tstr cn = { "caller", 6 };

        if ((rc = frame_set(c, f, &cn, caller)) < 0) goto out;
    }
    c->call_depth++;
    rc = capture(c, mac->b, &text);
    c->call_depth--;
    if (rc == 0) *out = chat__str(text.p, text.n);
out:
    c->frame = saved;
    c->flow = 0;
    return rc;
}

static int call_caller(struct rctx *c, const struct tcaller *cl, struct targs *a, struct tv *out)
{
    const struct tnode *blk = cl->call;
    struct frame *f = NULL, *saved = c->frame;
    struct tstr text;
    int rc;

    if (c->call_depth >= SLM_LIMIT_TEMPLATE_CALL_DEPTH)
        return chat__fail(c, SLM_ELIMIT, "macro calls nested deeper than %u",
                          SLM_LIMIT_TEMPLATE_CALL_DEPTH);
    if ((rc = frame_new(c, cl->frame, &f)) < 0) return rc;
    for (size_t k = 0; k < blk->n; k++) {
        struct tv v;

        if (k < a->n && a->name[k].n == 0)
            v = a->v[k];
        else if (blk->list[k]->e != NULL && (rc = eval(c, blk->list[k]->e, &v)) < 0)
            return rc;
        else if (blk->list[k]->e == NULL)
            v = chat__undef(blk->list[k]->name);
        if ((rc = frame_set(c, f, &blk->list[k]->name, &v)) < 0) return rc;
    }
    c->frame = f;
    c->call_depth++;
    rc = capture(c, blk->b, &text);
    c->call_depth--;
    c->frame = saved;
    c->flow = 0;
    if (rc == 0) *out = chat__str(text.p, text.n);
    return rc;
}

static int call_value(struct rctx *c, const struct tv *fn, struct targs *a, const struct tv *caller,
                      struct tv *out)
{
    switch (fn->type) {
    case TV_MACRO:
        return call_macro(c, fn->u.mac, a, caller, out);
    case TV_FUNC:
        return chat__call_func(c, fn->fn, a, out);
    case TV_METHOD:
        return chat__call_method(c, fn->u.bm, a, out);
    case TV_CALLER:
        return call_caller(c, fn->u.caller, a, out);
    case TV_UNDEF:
        return undefined_error(c, fn);
    default:
        return chat__fail(c, SLM_EINVAL, "'%s' object is not callable", chat__type_name(fn));
    }
}

/* ---- expressions ---- */

static int arith_type_error(struct rctx *c, const char *op, const struct tv *a, const struct tv *b)
{
    if (a->type == TV_UNDEF) return undefined_error(c, a);
    if (b->type == TV_UNDEF) return undefined_error(c, b);
    return chat__fail(c, SLM_EINVAL, "unsupported operand type(s) for %s: '%s' and '%s'", op,
                      chat__type_name(a), chat__type_name(b));
}

static bool is_int(const struct tv *v)
{
    return v->type == TV_INT || v->type == TV_BOOL;
}

static int64_t ival(const struct tv *v)
{
    return v->type == TV_INT ? v->u.i : v->u.b;
}

static double dval(const struct tv *v)
{
    return v->type == TV_FLOAT ? v->u.d : (double)ival(v);
}

static bool is_number(const struct tv *v)
{
    return is_int(v) || v->type == TV_FLOAT;
}

static int overflow(struct rctx *c)
{
    return chat__fail(c, SLM_ERANGE, "integer result does not fit 64 bits");
}

static int concat_str(struct rctx *c, const struct tstr *x, const struct tstr *y, struct tv *out)
{
    size_t n;
    char *p;

    if (!slm_add_size(x->n, y->n, &n) || n > c->out_max)
        return chat__fail(c, SLM_ELIMIT, "string exceeds %zu bytes", c->out_max);
    if ((p = chat__arena_alloc(&c->arena, n + 1)) == NULL) return chat__oom(c);
    if (x->n > 0) memcpy(p, x->p, x->n);
    if (y->n > 0) memcpy(p + x->n, y->p, y->n);
    *out = chat__str(p, n);
    return 0;
}

static int repeat(struct rctx *c, const struct tv *seq, int64_t times, struct tv *out)
{
    size_t count = times > 0 ? (size_t)times : 0, n;
    int rc;

    if (seq->type == TV_STR) {
        char *p;

        if (!slm_mul_size(seq->u.s.n, count, &n) || n > c->out_max)
            return chat__fail(c, SLM_ELIMIT, "string exceeds %zu bytes", c->out_max);
        if ((p = chat__arena_alloc(&c->arena, n + 1)) == NULL) return chat__oom(c);
        for (size_t i = 0; i < count; i++)
            memcpy(p + i * seq->u.s.n, seq->u.s.p, seq->u.s.n);
        *out = chat__str(p, n);
        return 0;
    }
    if (!slm_mul_size(seq->u.l->n, count, &n) || n > SLM_LIMIT_TEMPLATE_RANGE * 10)
        return chat__fail(c, SLM_ELIMIT, "list repetition too large");
    if ((rc = chat__list_new(c, n, out)) < 0) return rc;
    out->flags = seq->flags & TV_F_TUPLE;
    for (size_t i = 0; i < n; i++)
        out->u.l->items[i] = seq->u.l->items[i % seq->u.l->n];
    return 0;
}

static int str_format(struct rctx *c, const struct tv *fmt, const struct tv *args, struct tv *out);

static int binop(struct rctx *c, unsigned op, const struct tv *a, const struct tv *b,
                 struct tv *out)
{
    int64_t r;
    int rc;

    switch (op) {
    case OP_ADD:
        if (is_int(a) && is_int(b)) {
            if (__builtin_add_overflow(ival(a), ival(b), &r)) return overflow(c);
            *out = chat__int(r);
            return 0;
        }
        if (is_number(a) && is_number(b)) {
            *out = chat__float(dval(a) + dval(b));
            return 0;
        }
        if (a->type == TV_STR && b->type == TV_STR) return concat_str(c, &a->u.s, &b->u.s, out);
        if (a->type == TV_LIST && b->type == TV_LIST && !((a->flags | b->flags) & TV_F_GEN) &&
            (a->flags & TV_F_TUPLE) == (b->flags & TV_F_TUPLE)) {
            size_t n = a->u.l->n + b->u.l->n;

            if ((rc = chat__list_new(c, n, out)) < 0) return rc;
            out->flags = a->flags & TV_F_TUPLE;
            for (size_t i = 0; i < a->u.l->n; i++)
                out->u.l->items[i] = a->u.l->items[i];
            for (size_t i = 0; i < b->u.l->n; i++)
                out->u.l->items[a->u.l->n + i] = b->u.l->items[i];
            return 0;
        }
        return arith_type_error(c, "+", a, b);
    case OP_SUB:
        if (is_int(a) && is_int(b)) {
            if (__builtin_sub_overflow(ival(a), ival(b), &r)) return overflow(c);
            *out = chat__int(r);
            return 0;
        }
        if (is_number(a) && is_number(b)) {
            *out = chat__float(dval(a) - dval(b));
            return 0;
        }
        return arith_type_error(c, "-", a, b);
    case OP_MUL:
        if (is_int(a) && is_int(b)) {
            if (__builtin_mul_overflow(ival(a), ival(b), &r)) return overflow(c);
            *out = chat__int(r);
            return 0;
        }
        if (is_number(a) && is_number(b)) {
            *out = chat__float(dval(a) * dval(b));
            return 0;
        }
        if ((a->type == TV_STR || (a->type == TV_LIST && !(a->flags & TV_F_GEN))) && is_int(b))
            return repeat(c, a, ival(b), out);
        if ((b->type == TV_STR || (b->type == TV_LIST && !(b->flags & TV_F_GEN))) && is_int(a))
            return repeat(c, b, ival(a), out);
        return arith_type_error(c, "*", a, b);
    case OP_DIV:
        if (!is_number(a) || !is_number(b)) return arith_type_error(c, "/", a, b);
        if (dval(b) == 0.0) return chat__fail(c, SLM_EINVAL, "division by zero");
        *out = chat__float(dval(a) / dval(b));
        return 0;
    case OP_FLOORDIV:
    case OP_MOD:
        if (op == OP_MOD && a->type == TV_STR) return str_format(c, a, b, out);
        if (!is_number(a) || !is_number(b))
            return arith_type_error(c, op == OP_MOD ? "%" : "//", a, b);
        if (dval(b) == 0.0) return chat__fail(c, SLM_EINVAL, "integer division or modulo by zero");
        if (is_int(a) && is_int(b)) {
            int64_t x = ival(a), y = ival(b), q, m;

            if (x == INT64_MIN && y == -1) return overflow(c);
            q = x / y;
            m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) {
                q--;
                m += y;
            }
            *out = chat__int(op == OP_MOD ? m : q);
            return 0;
        }
        {
            double x = dval(a), y = dval(b), m = fmod(x, y);

            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            *out = chat__float(op == OP_MOD ? m : nearbyint((x - m) / y));
            return 0;
        }
    case OP_POW:
        if (!is_number(a) || !is_number(b)) return arith_type_error(c, "**", a, b);
        if (is_int(a) && is_int(b) && ival(b) >= 0) {
            int64_t base = ival(a), e = ival(b), res = 1;

            while (e > 0) {
                if ((e & 1) && __builtin_mul_overflow(res, base, &res)) return overflow(c);
                e >>= 1;
                if (e > 0 && __builtin_mul_overflow(base, base, &base)) return overflow(c);
            }
            *out = chat__int(res);
            return 0;
        }
        if (dval(a) == 0.0 && dval(b) < 0)
            return chat__fail(c, SLM_EINVAL, "0.0 cannot be raised to a negative power");
        *out = chat__float(pow(dval(a), dval(b)));
        return 0;
    case OP_TILDE: {
        struct tstr x, y;

        if ((rc = chat__to_str(c, a, &x)) < 0 || (rc = chat__to_str(c, b, &y)) < 0) return rc;
        return concat_str(c, &x, &y, out);
    }
    default:
        return chat__fail(c, SLM_EINTERNAL, "unknown operator %u", op);
    }
}

/* "%s %d" % args: the subset of printf-style formatting templates use. */
static int str_format(struct rctx *c, const struct tv *fmt, const struct tv *args, struct tv *out)
{
    struct slm_buf b;
    size_t argi = 0;
    const struct tv *argv = args;
    size_t argc = 1;
    int rc = 0;

    if (args->type == TV_LIST && (args->flags & TV_F_TUPLE)) {
        argv = args->u.l->items;
        argc = args->u.l->n;
    }
    slm_buf_init(&b, c->out_max);
    for (size_t i = 0; rc == 0 && i < fmt->u.s.n; i++) {
        char ch = fmt->u.s.p[i];

        if (ch != '%') {
            rc = slm_buf_append_char(&b, ch);
            continue;
        }
        if (++i >= fmt->u.s.n) {
            rc = chat__fail(c, SLM_EINVAL, "incomplete format");
            break;
        }
        ch = fmt->u.s.p[i];
        if (ch == '%') {
            rc = slm_buf_append_char(&b, '%');
            continue;
        }
        if (argi >= argc) {
            rc = chat__fail(c, SLM_EINVAL, "not enough arguments for format string");
            break;
        }
        if (ch == 's') {
            rc = chat__write_str(c, &b, &argv[argi++], false);
        } else if (ch == 'r') {
            rc = chat__write_str(c, &b, &argv[argi++], true);
        } else if (ch == 'd' || ch == 'i') {
            const struct tv *v = &argv[argi++];

            if (!is_number(v)) {
                rc = chat__fail(c, SLM_EINVAL, "%%d format: a real number is required, not %s",
                                chat__type_name(v));
                break;
            }
            rc = slm_buf_printf(&b, "%lld",
                                (long long)(v->type == TV_FLOAT ? (int64_t)v->u.d : ival(v)));
        } else {
            rc = chat__fail(c, SLM_EINVAL, "unsupported format character '%c'", ch);
        }
    }
    if (rc == 0 && argi < argc && argc > 1)
        rc = chat__fail(c, SLM_EINVAL, "not all arguments converted during string formatting");
    if (rc == 0) {
        char *p = chat__arena_strdup(&c->arena, b.data ? b.data : "", b.len);

        if (p == NULL)
            rc = chat__oom(c);
        else
            *out = chat__str(p, b.len);
    }
    slm_buf_fini(&b);
    return rc;
}

static int contains(struct rctx *c, const struct tv *item, const struct tv *seq, bool *out)
{
    switch (seq->type) {
    case TV_STR:
        if (item->type != TV_STR)
            return chat__fail(c, SLM_EINVAL,
                              "'in <string>' requires string as left operand, not %s",
                              chat__type_name(item));
        *out = item->u.s.n == 0 || memmem(seq->u.s.p, seq->u.s.n, item->u.s.p, item->u.s.n) != NULL;
        return 0;
    case TV_LIST:
        *out = false;
        for (size_t i = 0; i < seq->u.l->n && !*out; i++)
            *out = chat__equal(item, &seq->u.l->items[i]);
        return 0;
    case TV_DICT:
        *out = chat__dict_get(seq->u.m, item) != NULL;
        return 0;
    case TV_UNDEF:
        *out = false;
        return 0;
    default:
        return chat__fail(c, SLM_EINVAL, "argument of type '%s' is not iterable",
                          chat__type_name(seq));
    }
}

static int compare(struct rctx *c, unsigned op, const struct tv *a, const struct tv *b, bool *out)
{
    int rc;

    switch (op) {
    case OP_EQ:
        *out = chat__equal(a, b);
        return 0;
    case OP_NE:
        *out = !chat__equal(a, b);
        return 0;
    case OP_IN:
    case OP_NOTIN:
        if ((rc = contains(c, a, b, out)) < 0) return rc;
        if (op == OP_NOTIN) *out = !*out;
        return 0;
    default:
        break;
    }
    if (a->type == TV_UNDEF) return undefined_error(c, a);
    if (b->type == TV_UNDEF) return undefined_error(c, b);
    switch (op) {
    case OP_LT:
        return chat__less(c, a, b, out);
    case OP_GT:
        return chat__less(c, b, a, out);
    case OP_LE:
        if ((rc = chat__less(c, b, a, out)) < 0) return rc;
        *out = !*out;
        return 0;
    case OP_GE:
        if ((rc = chat__less(c, a, b, out)) < 0) return rc;
        *out = !*out;
        return 0;
    default:
        return chat__fail(c, SLM_EINTERNAL, "unknown comparison %u", op);
    }
}

static int eval_seq(struct rctx *c, const struct tnode *n, struct tv *out)
{
    int rc;

    if (n->kind == E_DICT) {
        if ((rc = chat__dict_new(c, out)) < 0) return rc;
        for (size_t i = 0; i + 1 < n->n; i += 2) {
            struct tv k, v;

            if ((rc = eval(c, n->list[i], &k)) < 0 || (rc = eval(c, n->list[i + 1], &v)) < 0)
                return rc;
            if (k.type == TV_LIST && !(k.flags & TV_F_TUPLE))
                return chat__fail(c, SLM_EINVAL, "unhashable type: 'list'");
            if (k.type == TV_DICT || k.type == TV_UNDEF)
                return chat__fail(c, SLM_EINVAL, "unhashable type: '%s'", chat__type_name(&k));
            if ((rc = chat__dict_set(c, out->u.m, &k, &v)) < 0) return rc;
        }
        return 0;
    }
    if ((rc = chat__list_new(c, n->n, out)) < 0) return rc;
    if (n->kind == E_TUPLE) out->flags = TV_F_TUPLE;
    for (size_t i = 0; i < n->n; i++)
        if ((rc = eval(c, n->list[i], &out->u.l->items[i])) < 0) return rc;
    return 0;
}

static int eval_inner(struct rctx *c, const struct tnode *n, struct tv *out)
{
    struct tv a, b, cv;
    struct targs args;
    bool r;
    int rc;

    switch (n->kind) {
    case E_CONST:
        *out = n->val;
        return 0;
    case E_NAME:
        lookup(c, &n->name, out);
        return 0;
    case E_CAPTURED:
        *out = c->captured;
        return 0;
    case E_GETATTR:
        if ((rc = eval(c, n->a, &a)) < 0) return rc;
        c->line = n->line;
        return chat__getattr(c, &a, &n->name, out);
    case E_GETITEM:
        if ((rc = eval(c, n->a, &a)) < 0 || (rc = eval(c, n->b, &b)) < 0) return rc;
        c->line = n->line;
        return chat__getitem(c, &a, &b, out);
    case E_SLICE: {
        struct tv s0 = chat__none(), s1 = chat__none(), s2 = chat__none();

        if ((rc = eval(c, n->a, &a)) < 0) return rc;
        if (n->b && (rc = eval(c, n->b, &s0)) < 0) return rc;
        if (n->c && (rc = eval(c, n->c, &s1)) < 0) return rc;
        if (n->d && (rc = eval(c, n->d, &s2)) < 0) return rc;
        c->line = n->line;
        return chat__slice(c, &a, &s0, &s1, &s2, out);
    }
    case E_CALL:
        if ((rc = eval(c, n->a, &a)) < 0 || (rc = eval_args(c, n, &args)) < 0) return rc;
        c->line = n->line;
        return call_value(c, &a, &args, NULL, out);
    case E_FILTER:
        if ((rc = eval(c, n->a, &a)) < 0 || (rc = eval_args(c, n, &args)) < 0) return rc;
        c->line = n->line;
        return chat__filter(c, &n->name, &a, &args, out);
    case E_TEST:
        if ((rc = eval(c, n->a, &a)) < 0 || (rc = eval_args(c, n, &args)) < 0) return rc;
        c->line = n->line;
        if ((rc = chat__test(c, &n->name, &a, &args, &r)) < 0) return rc;
        *out = chat__bool(n->op ? !r : r);
        return 0;
    case E_BINOP:
        if ((rc = eval(c, n->a, &a)) < 0 || (rc = eval(c, n->b, &b)) < 0) return rc;
        c->line = n->line;
        return binop(c, n->op, &a, &b, out);
    case E_UNARY:
        if ((rc = eval(c, n->a, &a)) < 0) return rc;
        c->line = n->line;
        if (a.type == TV_FLOAT) {
            *out = chat__float(n->op == OP_NEG ? -a.u.d : a.u.d);
            return 0;
        }
        if (is_int(&a)) {
            if (n->op == OP_NEG && ival(&a) == INT64_MIN) return overflow(c);
            *out = chat__int(n->op == OP_NEG ? -ival(&a) : ival(&a));
            return 0;
        }
        if (a.type == TV_UNDEF) return undefined_error(c, &a);
        return chat__fail(c, SLM_EINVAL, "bad operand type for unary %s: '%s'",
                          n->op == OP_NEG ? "-" : "+", chat__type_name(&a));
    case E_NOT:
        if ((rc = eval(c, n->a, &a)) < 0) return rc;
        *out = chat__bool(!chat__truthy(&a));
        return 0;
    case E_AND:
    case E_OR:
        if ((rc = eval(c, n->a, &a)) < 0) return rc;
        if (chat__truthy(&a) == (n->kind == E_OR)) {
            *out = a;
            return 0;
        }
        return eval(c, n->b, out);
    case E_COMPARE:
        if ((rc = eval(c, n->a, &a)) < 0) return rc;
        for (size_t i = 0; i < n->n; i++) {
            if ((rc = eval(c, n->list[i], &b)) < 0) return rc;
            c->line = n->line;
            if ((rc = compare(c, n->ops[i], &a, &b, &r)) < 0) return rc;
            if (!r) {
                *out = chat__bool(false);
                return 0;
            }
            a = b;
        }
        *out = chat__bool(true);
        return 0;
    case E_COND:
        if ((rc = eval(c, n->a, &cv)) < 0) return rc;
        if (chat__truthy(&cv)) return eval(c, n->b, out);
        if (n->c != NULL) return eval(c, n->c, out);
        *out = chat__undef((struct tstr){ NULL, 0 });
        return 0;
    case E_LIST:
    case E_TUPLE:
    case E_DICT:
        return eval_seq(c, n, out);
    default:
        return chat__fail(c, SLM_EINTERNAL, "unknown expression node %u", n->kind);
    }
}

static int eval(struct rctx *c, const struct tnode *n, struct tv *out)
{
    int rc;

    if ((rc = step(c, n)) < 0) return rc;
    if (++c->depth > EVAL_DEPTH_MAX) {
        c->depth--;
        return chat__fail(c, SLM_ELIMIT, "evaluation nested deeper than %u", EVAL_DEPTH_MAX);
    }
    rc = eval_inner(c, n, out);
    c->depth--;
    return rc;
}

/* ---- statements ---- */

static int assign(struct rctx *c, const struct tnode *target, const struct tv *v)
{
    int rc;

    if (target->kind == E_NAME) return frame_set(c, c->frame, &target->name, v);
    if (target->kind == E_GETATTR) {
        struct tv ns;
        struct tv key = chat__str(target->name.p, target->name.n);

        lookup(c, &target->a->name, &ns);
        if (ns.type != TV_NS)
            return chat__fail(c, SLM_EINVAL, "cannot assign attribute on non-namespace object");
        return chat__dict_set(c, ns.u.m, &key, v);
    }
    /* tuple unpacking */
    {
        struct tlist items;

        if (v->type == TV_LIST && !(v->flags & TV_F_GEN))
            items = *v->u.l;
        else if ((rc = chat__iterate(c, v, &items)) < 0)
            return rc;
        if (items.n != target->n)
            return chat__fail(c, SLM_EINVAL, "cannot unpack %zu values into %zu names", items.n,
                              target->n);
        for (size_t i = 0; i < target->n; i++)
            if ((rc = frame_set(c, c->frame, &target->list[i]->name, &items.items[i])) < 0)
                return rc;
        return 0;
    }
}

static int exec_for(struct rctx *c, const struct tnode *n)
{
    struct frame *saved = c->frame, *f = NULL;
    struct tlist items, *kept;
    struct tloop *loop;
    struct tv iter, loopv = { .type = TV_LOOP };
    struct tstr loop_name = { "loop", 4 };
    int rc;

    if ((rc = eval(c, n->b, &iter)) < 0) return rc;
    c->line = n->line;
    if ((rc = chat__iterate(c, &iter, &items)) < 0) return rc;
    if ((rc = frame_new(c, saved, &f)) < 0) return rc;
    kept = chat__arena_alloc(&c->arena, sizeof(*kept));
    loop = chat__arena_alloc(&c->arena, sizeof(*loop));
    if (kept == NULL || loop == NULL) return chat__oom(c);
    if (n->e != NULL) {
        struct tv tmp;

        if ((rc = chat__list_new(c, items.n, &tmp)) < 0) return rc;
        kept->items = tmp.u.l->items;
        c->frame = f;
        for (size_t i = 0; i < items.n; i++) {
            struct tv keep;

            f->vars.n = 0;
            if ((rc = assign(c, n->a, &items.items[i])) < 0 || (rc = eval(c, n->e, &keep)) < 0)
                goto out;
            if (chat__truthy(&keep)) kept->items[kept->n++] = items.items[i];
        }
    } else {
        *kept = items;
    }
    loop->items = kept;
    for (struct frame *p = saved; p != NULL; p = p->parent) {
        struct tv *outer = chat__dict_getn(&p->vars, "loop", 4);

        if (outer != NULL && outer->type == TV_LOOP) {
            loop->depth0 = outer->u.loop->depth0 + 1;
            break;
        }
    }
    loopv.u.loop = loop;
    c->frame = f;
    for (size_t i = 0; i < kept->n; i++) {
        f->vars.n = 0;
        loop->index0 = i;
        if ((rc = assign(c, n->a, &kept->items[i])) < 0 ||
            (rc = frame_set(c, f, &loop_name, &loopv)) < 0 || (rc = exec(c, n->c)) < 0)
            goto out;
        if (c->flow == FLOW_BREAK) {
            c->flow = 0;
            break;
        }
        c->flow = 0;
    }
    if (kept->n == 0 && n->d != NULL) {
        f->vars.n = 0;
        rc = exec(c, n->d);
    }
out:
    c->frame = saved;
    return rc;
}

static int exec_inner(struct rctx *c, const struct tnode *n)
{
    struct tv v;
    struct tstr text;
    int rc;

    switch (n->kind) {
    case N_BODY:
        for (size_t i = 0; i < n->n; i++) {
            if ((rc = exec(c, n->list[i])) < 0) return rc;
            if (c->flow != 0) return 0;
        }
        return 0;
    case N_TEXT:
        return emit(c, n->val.u.s.p, n->val.u.s.n);
    case N_OUTPUT:
        if ((rc = eval(c, n->a, &v)) < 0) return rc;
        return emit_value(c, &v);
    case N_IF:
        if ((rc = eval(c, n->a, &v)) < 0) return rc;
        if (chat__truthy(&v)) return exec(c, n->b);
        return n->c != NULL ? exec(c, n->c) : 0;
    case N_FOR:
        return exec_for(c, n);
    case N_SET:
        if ((rc = eval(c, n->b, &v)) < 0) return rc;
        return assign(c, n->a, &v);
    case N_SET_BLOCK:
        if ((rc = capture(c, n->b, &text)) < 0) return rc;
        v = chat__str(text.p, text.n);
        if (n->c != NULL) {
            struct tv saved = c->captured;

            c->captured = v;
            rc = eval(c, n->c, &v);
            c->captured = saved;
            if (rc < 0) return rc;
        }
        return assign(c, n->a, &v);
    case N_FILTER_BLOCK: {
        struct tv saved = c->captured;

        if ((rc = capture(c, n->b, &text)) < 0) return rc;
        c->captured = chat__str(text.p, text.n);
        rc = eval(c, n->a, &v);
        c->captured = saved;
        if (rc < 0) return rc;
        return emit_value(c, &v);
    }
    case N_MACRO:
        v.type = TV_MACRO;
        v.flags = 0;
        v.u.mac = n;
        return frame_set(c, c->frame, &n->name, &v);
    case N_CALL_BLOCK: {
        struct tv fn, caller = { .type = TV_CALLER }, result;
        struct targs args;
        struct tcaller *cl = chat__arena_alloc(&c->arena, sizeof(*cl));

        if (cl == NULL) return chat__oom(c);
        cl->call = n;
        cl->frame = c->frame;
        caller.u.caller = cl;
        if ((rc = eval(c, n->a->a, &fn)) < 0 || (rc = eval_args(c, n->a, &args)) < 0) return rc;
        c->line = n->line;
        if (fn.type != TV_MACRO)
            return chat__fail(c, SLM_EINVAL, "{%% call %%} needs a macro, got %s",
                              chat__type_name(&fn));
        if ((rc = call_macro(c, fn.u.mac, &args, &caller, &result)) < 0) return rc;
        return emit_value(c, &result);
    }
    case N_BREAK:
        c->flow = FLOW_BREAK;
        return 0;
    case N_CONTINUE:
        c->flow = FLOW_CONTINUE;
        return 0;
    default:
        return chat__fail(c, SLM_EINTERNAL, "unknown statement node %u", n->kind);
    }
}

static int exec(struct rctx *c, const struct tnode *n)
{
    int rc;

    if ((rc = step(c, n)) < 0) return rc;
    if (++c->depth > EVAL_DEPTH_MAX) {
        c->depth--;
        return chat__fail(c, SLM_ELIMIT, "evaluation nested deeper than %u", EVAL_DEPTH_MAX);
    }
    rc = exec_inner(c, n);
    c->depth--;
    return rc;
}

/* ---- public API ---- */

/*
 * Compiles src[0..len) (borrows; need not be NUL-terminated). On success
 * *out is a new template (chat_template_free). Errors: SLM_EFORMAT for a
 * syntax error or invalid UTF-8 (message with the line), SLM_ELIMIT for a
 * source over SLM_LIMIT_TEMPLATE_BYTES or nesting over the depth limit,
 * SLM_ENOMEM.
 */
int chat_template_new(const char *src, size_t len, struct chat_template **out, struct slm_diag *d)
{
    struct chat_template *t;
    int rc;

    *out = NULL;
    if (src == NULL && len > 0) return slm_diag_set(d, SLM_EINVAL, "template: no source");
    if (len > SLM_LIMIT_TEMPLATE_BYTES)
        return slm_diag_set(d, SLM_ELIMIT, "template: %zu bytes exceeds the limit of %u bytes", len,
                            SLM_LIMIT_TEMPLATE_BYTES);
    if (!slm_utf8_valid(src ? src : "", len))
        return slm_diag_set(d, SLM_EFORMAT, "template: source is not valid UTF-8");
    t = slm_calloc(1, sizeof(*t));
    if (t == NULL) return slm_diag_set(d, SLM_ENOMEM, "template: out of memory");
    chat__arena_init(&t->arena, SLM_LIMIT_TEMPLATE_MEM);
    rc = chat__parse(t, src ? src : "", len, d);
    if (rc < 0) {
        chat_template_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* Frees t; NULL is a no-op. */
void chat_template_free(struct chat_template *t)
{
    if (t == NULL) return;
    chat__arena_fini(&t->arena);
    slm_free(t);
}

/*
 * Compiles a built-in template by name ("chatml", "llama3", "mistral").
 * Returns SLM_ENOTFOUND for other names.
 */
int chat_template_builtin(const char *name, struct chat_template **out, struct slm_diag *d)
{
    const char *src = name ? chat__builtin_source(name) : NULL;

    *out = NULL;
    if (src == NULL)
        return slm_diag_set(d, SLM_ENOTFOUND,
                            "template: no built-in template '%s' (known: chatml, llama3, mistral)",
                            name ? name : "(null)");
    return chat_template_new(src, strlen(src), out, d);
}

static int set_global(struct rctx *c, const char *name, const struct tv *v)
{
    struct tv key = chat__cstr(name);

    return chat__dict_set(c, &c->globals, &key, v);
}

static int setup_globals(struct rctx *c, const struct chat_render_params *p)
{
    struct tv v;
    int rc;

    if (p->messages == NULL) return chat__fail(c, SLM_EINVAL, "no messages given");
    if (p->extra != NULL) {
        if (p->extra->type != JSON_OBJECT)
            return chat__fail(c, SLM_EINVAL, "extra variables must be a JSON object");
        for (size_t i = 0; i < p->extra->u.obj.n; i++) {
            const struct json_member *m = &p->extra->u.obj.members[i];
            struct tv key = chat__str(m->key, m->key_len);

            if ((rc = chat__from_json(c, &m->value, &v)) < 0 ||
                (rc = chat__dict_set(c, &c->globals, &key, &v)) < 0)
                return rc;
        }
    }
    if ((rc = chat__from_json(c, p->messages, &v)) < 0 || (rc = set_global(c, "messages", &v)) < 0)
        return rc;
    v = chat__none();
    if (p->tools != NULL && (rc = chat__from_json(c, p->tools, &v)) < 0) return rc;
    if ((rc = set_global(c, "tools", &v)) < 0) return rc;
    v = chat__none();
    if ((rc = set_global(c, "documents", &v)) < 0) return rc;
    v = chat__bool(p->add_generation_prompt);
    if ((rc = set_global(c, "add_generation_prompt", &v)) < 0) return rc;
    v = chat__cstr(p->bos_token ? p->bos_token : "");
    if ((rc = set_global(c, "bos_token", &v)) < 0) return rc;
    v = chat__cstr(p->eos_token ? p->eos_token : "");
    return set_global(c, "eos_token", &v);
}

/*
 * Renders t with p's variables, appending to out (borrowed). Returns 0,
 * SLM_EINVAL for a template error or raise_exception (diag has the message),
 * SLM_ELIMIT when a bound is hit, SLM_ERANGE for integer overflow or
 * SLM_ENOMEM. On error out holds whatever was rendered before it.
 */
int chat_template_render(const struct chat_template *t, const struct chat_render_params *p,
                         struct slm_buf *out, struct slm_diag *d)
{
    struct rctx *c;
    struct slm_diag own;
    struct frame top = { 0 };
    int rc;

    slm_diag_clear(&own);
    if (t == NULL || p == NULL || out == NULL)
        return slm_diag_set(d, SLM_EINVAL,
                            "template: render needs a template, params and a buffer");
    c = slm_calloc(1, sizeof(*c));
    if (c == NULL) return slm_diag_set(d, SLM_ENOMEM, "template: out of memory");
    chat__arena_init(&c->arena, p->mem_max && p->mem_max < SLM_LIMIT_TEMPLATE_RENDER_MEM
                                    ? p->mem_max
                                    : SLM_LIMIT_TEMPLATE_RENDER_MEM);
    c->out = out;
    c->out_max = SLM_LIMIT_TEMPLATE_OUTPUT;
    c->steps_max = p->steps_max && p->steps_max < SLM_LIMIT_TEMPLATE_STEPS
                       ? p->steps_max
                       : SLM_LIMIT_TEMPLATE_STEPS;
    c->d = &own;
    c->now = p->now;
    c->frame = &top;
    c->top = &top;
    rc = setup_globals(c, p);
    if (rc == 0) rc = exec(c, t->root);
    if (rc < 0) {
        if (own.code == 0) slm_diag_set(&own, rc, "template: %s", slm_strerror(rc));
        if (d != NULL) *d = own;
    }
    chat__arena_fini(&c->arena);
    slm_free(c);
    return rc;
}
