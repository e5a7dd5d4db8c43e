/*
 * template_parse.c - the Jinja2 parser (jinja2/parser.py's grammar).
 *
 * A recursive-descent parser over the on-demand lexer with one token of
 * lookahead. Every node records its subtree depth; a tree deeper than
 * SLM_LIMIT_TEMPLATE_DEPTH is refused here, so rendering recursion is bounded
 * by construction. Unknown tags, filters and tests are compile errors, as in
 * Jinja2.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "chat/chat_int.h"
#include "core/alloc.h"
#include "core/limits.h"

struct parser {
    struct lexer lx;
    struct token cur;
    struct token peek;
    bool have_peek;
    struct tpl_arena *a;
    struct slm_diag *d;
    unsigned depth;
    unsigned loops;  /* enclosing for blocks (break/continue allowed) */
    unsigned macros; /* enclosing macro definitions */
};

struct nvec {
    struct tnode **v;
    struct tstr *names;
    uint8_t *ops;
    size_t n;
    size_t cap;
};

static bool name_is(const struct token *t, const char *s)
{
    size_t n = strlen(s);

    return t->type == TOK_NAME && t->s.n == n && memcmp(t->s.p, s, n) == 0;
}

static bool op_is(const struct token *t, uint8_t op)
{
    return t->type == TOK_OP && t->op == op;
}

static const char *describe(const struct token *t, char *buf, size_t cap)
{
    static const char *const op_text[OP_COUNT] = {
        [OP_ADD] = "+",       [OP_SUB] = "-",       [OP_MUL] = "*",    [OP_DIV] = "/",
        [OP_FLOORDIV] = "//", [OP_MOD] = "%",       [OP_POW] = "**",   [OP_TILDE] = "~",
        [OP_LBRACKET] = "[",  [OP_RBRACKET] = "]",  [OP_LPAREN] = "(", [OP_RPAREN] = ")",
        [OP_LBRACE] = "{",    [OP_RBRACE] = "}",    [OP_EQ] = "==",    [OP_NE] = "!=",
        [OP_GT] = ">",        [OP_GE] = ">=",       [OP_LT] = "<",     [OP_LE] = "<=",
        [OP_ASSIGN] = "=",    [OP_DOT] = ".",       [OP_COLON] = ":",  [OP_PIPE] = "|",
        [OP_COMMA] = ",",     [OP_SEMICOLON] = ";",
    };

    switch (t->type) {
    case TOK_EOF:
        return "end of template";
    case TOK_TEXT:
        return "template text";
    case TOK_VAR_BEGIN:
        return "'{{'";
    case TOK_VAR_END:
        return "end of print statement '}}'";
    case TOK_BLOCK_BEGIN:
        return "'{%'";
    case TOK_BLOCK_END:
        return "end of statement block '%}'";
    case TOK_NAME:
        snprintf(buf, cap, "'%.*s'", (int)(t->s.n > 40 ? 40 : t->s.n), t->s.p);
        return buf;
    case TOK_STRING:
        return "string";
    case TOK_INT:
        return "integer";
    case TOK_FLOAT:
        return "float";
    default:
        snprintf(buf, cap, "'%s'", t->op < OP_COUNT && op_text[t->op] ? op_text[t->op] : "?");
        return buf;
    }
}

static int fail_at(struct parser *p, const char *fmt, ...) SLM_PRINTF(2, 3);

static int fail_at(struct parser *p, const char *fmt, ...)
{
    char msg[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return slm_diag_set(p->d, SLM_EFORMAT, "template line %u: %s", (unsigned)p->cur.line, msg);
}

static int unexpected(struct parser *p, const char *expected)
{
    char buf[64], msg[160];

    snprintf(msg, sizeof(msg), "expected %s, got %s", expected,
             describe(&p->cur, buf, sizeof(buf)));
    return slm_diag_set(p->d, SLM_EFORMAT, "template line %u: %s", (unsigned)p->cur.line, msg);
}

static int oom(struct parser *p)
{
    return slm_diag_set(p->d, p->a->over ? SLM_ELIMIT : SLM_ENOMEM,
                        "template: compiled template exceeds %u bytes of memory",
                        SLM_LIMIT_TEMPLATE_MEM);
}

static int advance_tok(struct parser *p)
{
    if (p->have_peek) {
        p->cur = p->peek;
        p->have_peek = false;
        return 0;
    }
    return chat__lex_next(&p->lx, &p->cur);
}

static int look(struct parser *p, const struct token **out)
{
    if (!p->have_peek) {
        int rc = chat__lex_next(&p->lx, &p->peek);

        if (rc < 0) return rc;
        p->have_peek = true;
    }
    *out = &p->peek;
    return 0;
}

static int expect_op(struct parser *p, uint8_t op, const char *what)
{
    if (!op_is(&p->cur, op)) return unexpected(p, what);
    return advance_tok(p);
}

static int expect_type(struct parser *p, uint8_t type, const char *what)
{
    if (p->cur.type != type) return unexpected(p, what);
    return advance_tok(p);
}

static struct tnode *node_new(struct parser *p, uint16_t kind, uint32_t line)
{
    struct tnode *n = chat__arena_alloc(p->a, sizeof(*n));

    if (n != NULL) {
        n->kind = kind;
        n->line = line;
        n->depth = 1;
    }
    return n;
}

/* Computes n's depth from its children and enforces the limit. */
static int finish(struct parser *p, struct tnode *n)
{
    const struct tnode *kids[5] = { n->a, n->b, n->c, n->d, n->e };
    uint32_t dmax = 0;

    for (size_t i = 0; i < 5; i++)
        if (kids[i] != NULL && kids[i]->depth > dmax) dmax = kids[i]->depth;
    for (size_t i = 0; i < n->n; i++)
        if (n->list[i] != NULL && n->list[i]->depth > dmax) dmax = n->list[i]->depth;
    n->depth = dmax + 1;
    if (n->depth > SLM_LIMIT_TEMPLATE_DEPTH)
        return slm_diag_set(p->d, SLM_ELIMIT, "template line %u: nesting deeper than %u levels",
                            (unsigned)n->line, SLM_LIMIT_TEMPLATE_DEPTH);
    return 0;
}

static int vec_push(struct parser *p, struct nvec *v, struct tnode *n, const struct tstr *name,
                    uint8_t op)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4, bytes;
        struct tnode **nv;
        struct tstr *nn;
        uint8_t *no;

        if (!slm_mul_size(cap, sizeof(*nv), &bytes)) return oom(p);
        nv = chat__arena_alloc(p->a, bytes);
        nn = chat__arena_alloc(p->a, cap * sizeof(*nn));
        no = chat__arena_alloc(p->a, cap);
        if (nv == NULL || nn == NULL || no == NULL) return oom(p);
        if (v->n > 0) {
            memcpy(nv, v->v, v->n * sizeof(*nv));
            memcpy(nn, v->names, v->n * sizeof(*nn));
            memcpy(no, v->ops, v->n);
        }
        v->v = nv;
        v->names = nn;
        v->ops = no;
        v->cap = cap;
    }
    v->v[v->n] = n;
    v->names[v->n] = name ? *name : (struct tstr){ NULL, 0 };
    v->ops[v->n] = op;
    v->n++;
    return 0;
}

static void vec_attach(struct tnode *n, struct nvec *v)
{
    n->list = v->v;
    n->argnames = v->names;
    n->ops = v->ops;
    n->n = v->n;
}

static int parse_expression(struct parser *p, bool with_condexpr, struct tnode **out);
static int parse_tuple(struct parser *p, bool simplified, bool with_condexpr, const char *end_name,
                       bool explicit_parens, struct tnode **out);
static int parse_unary(struct parser *p, bool with_filter, struct tnode **out);
static int parse_primary(struct parser *p, struct tnode **out);
static int parse_postfix(struct parser *p, struct tnode **node);
static int subparse(struct parser *p, const char *const *ends, size_t n_ends, struct tnode **body);

static int enter(struct parser *p)
{
    if (++p->depth > SLM_LIMIT_TEMPLATE_DEPTH)
        return slm_diag_set(p->d, SLM_ELIMIT, "template line %u: nesting deeper than %u levels",
                            (unsigned)p->cur.line, SLM_LIMIT_TEMPLATE_DEPTH);
    return 0;
}

static int binop(struct parser *p, uint16_t kind, uint16_t op, uint32_t line, struct tnode *a,
                 struct tnode *b, struct tnode **out)
{
    struct tnode *n = node_new(p, kind, line);

    if (n == NULL) return oom(p);
    n->op = op;
    n->a = a;
    n->b = b;
    *out = n;
    return finish(p, n);
}

/* ( args ) with keyword arguments; cur is '('. */
static int parse_call_args(struct parser *p, struct nvec *args)
{
    int rc = advance_tok(p);
    bool need_comma = false, have_kw = false;

    while (rc == 0 && !op_is(&p->cur, OP_RPAREN)) {
        const struct token *nx;
        struct tnode *v;

        if (need_comma) {
            if ((rc = expect_op(p, OP_COMMA, "','")) < 0) return rc;
            if (op_is(&p->cur, OP_RPAREN)) break;
        }
        if (op_is(&p->cur, OP_MUL) || op_is(&p->cur, OP_POW))
            return fail_at(p, "%s", "*args and **kwargs in calls are not supported");
        if (p->cur.type == TOK_NAME && (rc = look(p, &nx)) == 0 && op_is(nx, OP_ASSIGN)) {
            struct tstr key = p->cur.s;

            if ((rc = advance_tok(p)) < 0 || (rc = advance_tok(p)) < 0) return rc;
            if ((rc = parse_expression(p, true, &v)) < 0) return rc;
            if ((rc = vec_push(p, args, v, &key, 0)) < 0) return rc;
            have_kw = true;
        } else {
            if (rc < 0) return rc;
            if (have_kw) return fail_at(p, "%s", "positional argument follows keyword argument");
            if ((rc = parse_expression(p, true, &v)) < 0) return rc;
            if ((rc = vec_push(p, args, v, NULL, 0)) < 0) return rc;
        }
        if (args->n > TARGS_MAX) return fail_at(p, "more than %s arguments in one call", "16");
        need_comma = true;
    }
    if (rc < 0) return rc;
    return expect_op(p, OP_RPAREN, "')'");
}

static int parse_filter(struct parser *p, struct tnode **node, bool start_inline)
{
    int rc = 0;

    while (op_is(&p->cur, OP_PIPE) || start_inline) {
        struct tnode *n;
        struct nvec args = { 0 };

        if (!start_inline && (rc = advance_tok(p)) < 0) return rc;
        start_inline = false;
        if (p->cur.type != TOK_NAME) return unexpected(p, "filter name");
        n = node_new(p, E_FILTER, p->cur.line);
        if (n == NULL) return oom(p);
        n->name = p->cur.s;
        if (!chat__has_filter(&n->name)) {
            char nm[64];

            snprintf(nm, sizeof(nm), "%.*s", (int)(n->name.n > 40 ? 40 : n->name.n), n->name.p);
            return fail_at(p, "no filter named '%s'", nm);
        }
        if ((rc = advance_tok(p)) < 0) return rc;
        if (op_is(&p->cur, OP_LPAREN) && (rc = parse_call_args(p, &args)) < 0) return rc;
        vec_attach(n, &args);
        n->a = *node;
        if ((rc = finish(p, n)) < 0) return rc;
        *node = n;
    }
    return 0;
}

static int parse_test(struct parser *p, struct tnode **node)
{
    struct tnode *n;
    struct nvec args = { 0 };
    bool negated = false;
    int rc = advance_tok(p); /* "is" */

    if (rc < 0) return rc;
    if (name_is(&p->cur, "not")) {
        negated = true;
        if ((rc = advance_tok(p)) < 0) return rc;
    }
    if (p->cur.type != TOK_NAME) return unexpected(p, "test name");
    n = node_new(p, E_TEST, p->cur.line);
    if (n == NULL) return oom(p);
    n->name = p->cur.s;
    n->op = negated;
    if (!chat__has_test(&n->name)) {
        char nm[64];

        snprintf(nm, sizeof(nm), "%.*s", (int)(n->name.n > 40 ? 40 : n->name.n), n->name.p);
        return fail_at(p, "no test named '%s'", nm);
    }
    if ((rc = advance_tok(p)) < 0) return rc;
    if (op_is(&p->cur, OP_LPAREN)) {
        if ((rc = parse_call_args(p, &args)) < 0) return rc;
    } else if ((p->cur.type == TOK_NAME || p->cur.type == TOK_STRING || p->cur.type == TOK_INT ||
                p->cur.type == TOK_FLOAT || op_is(&p->cur, OP_LBRACKET) ||
                op_is(&p->cur, OP_LBRACE)) &&
               !name_is(&p->cur, "else") && !name_is(&p->cur, "or") && !name_is(&p->cur, "and")) {
        struct tnode *arg;

        if (name_is(&p->cur, "is"))
            return fail_at(p, "%s", "you cannot chain multiple tests with is");
        if ((rc = parse_primary(p, &arg)) < 0 || (rc = parse_postfix(p, &arg)) < 0) return rc;
        if ((rc = vec_push(p, &args, arg, NULL, 0)) < 0) return rc;
    }
    vec_attach(n, &args);
    n->a = *node;
    *node = n;
    return finish(p, n);
}

/* .name, .0, [expr], [a:b:c] */
static int parse_subscript(struct parser *p, struct tnode **node)
{
    uint32_t line = p->cur.line;
    int rc;

    if (op_is(&p->cur, OP_DOT)) {
        struct tnode *n;

        if ((rc = advance_tok(p)) < 0) return rc;
        if (p->cur.type == TOK_NAME) {
            n = node_new(p, E_GETATTR, line);
            if (n == NULL) return oom(p);
            n->name = p->cur.s;
            n->a = *node;
        } else if (p->cur.type == TOK_INT) {
            struct tnode *k = node_new(p, E_CONST, line);

            n = node_new(p, E_GETITEM, line);
            if (n == NULL || k == NULL) return oom(p);
            k->val = chat__int(p->cur.i);
            n->a = *node;
            n->b = k;
        } else {
            return unexpected(p, "name or number");
        }
        if ((rc = advance_tok(p)) < 0) return rc;
        *node = n;
        return finish(p, n);
    }
    /* '[' */
    {
        struct tnode *parts[3] = { NULL, NULL, NULL }, *n;
        bool is_slice = false;

        if ((rc = advance_tok(p)) < 0) return rc;
        if (!op_is(&p->cur, OP_COLON)) {
            if ((rc = parse_expression(p, true, &parts[0])) < 0) return rc;
        }
        if (op_is(&p->cur, OP_COLON)) {
            is_slice = true;
            if ((rc = advance_tok(p)) < 0) return rc;
            if (!op_is(&p->cur, OP_COLON) && !op_is(&p->cur, OP_RBRACKET) &&
                !op_is(&p->cur, OP_COMMA) && (rc = parse_expression(p, true, &parts[1])) < 0)
                return rc;
            if (op_is(&p->cur, OP_COLON)) {
                if ((rc = advance_tok(p)) < 0) return rc;
                if (!op_is(&p->cur, OP_RBRACKET) && !op_is(&p->cur, OP_COMMA) &&
                    (rc = parse_expression(p, true, &parts[2])) < 0)
                    return rc;
            }
        }
        if (op_is(&p->cur, OP_COMMA)) return fail_at(p, "%s", "tuple subscripts are not supported");
        if ((rc = expect_op(p, OP_RBRACKET, "']'")) < 0) return rc;
        n = node_new(p, is_slice ? E_SLICE : E_GETITEM, line);
        if (n == NULL) return oom(p);
        n->a = *node;
        if (is_slice) {
            n->b = parts[0];
            n->c = parts[1];
            n->d = parts[2];
        } else {
            n->b = parts[0];
        }
        *node = n;
        return finish(p, n);
    }
}

static int parse_call(struct parser *p, struct tnode **node)
{
    struct tnode *n = node_new(p, E_CALL, p->cur.line);
    struct nvec args = { 0 };
    int rc;

    if (n == NULL) return oom(p);
    if ((rc = parse_call_args(p, &args)) < 0) return rc;
    vec_attach(n, &args);
    n->a = *node;
    *node = n;
    return finish(p, n);
}

static int parse_postfix(struct parser *p, struct tnode **node)
{
    int rc = 0;

    for (;;) {
        if (op_is(&p->cur, OP_DOT) || op_is(&p->cur, OP_LBRACKET))
            rc = parse_subscript(p, node);
        else if (op_is(&p->cur, OP_LPAREN))
            rc = parse_call(p, node);
        else
            break;
        if (rc < 0) return rc;
    }
    return 0;
}

static int parse_filter_expr(struct parser *p, struct tnode **node)
{
    int rc = 0;

    for (;;) {
        if (op_is(&p->cur, OP_PIPE))
            rc = parse_filter(p, node, false);
        else if (name_is(&p->cur, "is"))
            rc = parse_test(p, node);
        else if (op_is(&p->cur, OP_LPAREN))
            rc = parse_call(p, node);
        else
            break;
        if (rc < 0) return rc;
    }
    return 0;
}

static int parse_seq(struct parser *p, uint16_t kind, uint8_t close, bool dict, struct tnode **out)
{
    struct tnode *n = node_new(p, kind, p->cur.line);
    struct nvec items = { 0 };
    int rc = advance_tok(p);

    if (n == NULL) return oom(p);
    while (rc == 0 && !op_is(&p->cur, close)) {
        struct tnode *v;

        if (items.n > 0) {
            if ((rc = expect_op(p, OP_COMMA, "','")) < 0) return rc;
            if (op_is(&p->cur, close)) break;
        }
        if ((rc = parse_expression(p, true, &v)) < 0 || (rc = vec_push(p, &items, v, NULL, 0)) < 0)
            return rc;
        if (dict) {
            if ((rc = expect_op(p, OP_COLON, "':'")) < 0) return rc;
            if ((rc = parse_expression(p, true, &v)) < 0 ||
                (rc = vec_push(p, &items, v, NULL, 0)) < 0)
                return rc;
        }
    }
    if (rc < 0) return rc;
    if ((rc = advance_tok(p)) < 0) return rc;
    vec_attach(n, &items);
    *out = n;
    return finish(p, n);
}

static int parse_primary(struct parser *p, struct tnode **out)
{
    struct tnode *n;
    int rc;

    if ((rc = enter(p)) < 0) return rc;
    switch (p->cur.type) {
    case TOK_NAME:
        n = node_new(p, E_CONST, p->cur.line);
        if (n == NULL) return oom(p);
        if (name_is(&p->cur, "true") || name_is(&p->cur, "True")) {
            n->val = chat__bool(true);
        } else if (name_is(&p->cur, "false") || name_is(&p->cur, "False")) {
            n->val = chat__bool(false);
        } else if (name_is(&p->cur, "none") || name_is(&p->cur, "None")) {
            n->val = chat__none();
        } else {
            n->kind = E_NAME;
            n->name = p->cur.s;
        }
        rc = advance_tok(p);
        break;
    case TOK_STRING: {
        struct tstr s = p->cur.s;

        n = node_new(p, E_CONST, p->cur.line);
        if (n == NULL) return oom(p);
        if ((rc = advance_tok(p)) < 0) return rc;
        while (p->cur.type == TOK_STRING) {
            size_t len;
            char *buf;

            if (!slm_add_size(s.n, p->cur.s.n, &len) ||
                (buf = chat__arena_alloc(p->a, len + 1)) == NULL)
                return oom(p);
            memcpy(buf, s.p, s.n);
            memcpy(buf + s.n, p->cur.s.p, p->cur.s.n);
            s.p = buf;
            s.n = len;
            if ((rc = advance_tok(p)) < 0) return rc;
        }
        n->val = chat__str(s.p, s.n);
        break;
    }
    case TOK_INT:
    case TOK_FLOAT:
        n = node_new(p, E_CONST, p->cur.line);
        if (n == NULL) return oom(p);
        n->val = p->cur.type == TOK_INT ? chat__int(p->cur.i) : chat__float(p->cur.d);
        rc = advance_tok(p);
        break;
    case TOK_OP:
        if (p->cur.op == OP_LPAREN) {
            if ((rc = advance_tok(p)) < 0 || (rc = parse_tuple(p, false, true, NULL, true, &n)) < 0)
                return rc;
            rc = expect_op(p, OP_RPAREN, "')'");
            break;
        }
        if (p->cur.op == OP_LBRACKET) {
            rc = parse_seq(p, E_LIST, OP_RBRACKET, false, &n);
            break;
        }
        if (p->cur.op == OP_LBRACE) {
            rc = parse_seq(p, E_DICT, OP_RBRACE, true, &n);
            break;
        }
        return unexpected(p, "an expression");
    default:
        return unexpected(p, "an expression");
    }
    p->depth--;
    *out = n;
    return rc;
}

static int parse_unary(struct parser *p, bool with_filter, struct tnode **out)
{
    struct tnode *n;
    int rc;

    if ((rc = enter(p)) < 0) return rc;
    if (op_is(&p->cur, OP_SUB) || op_is(&p->cur, OP_ADD)) {
        uint16_t op = p->cur.op == OP_SUB ? OP_NEG : OP_POS;
        uint32_t line = p->cur.line;
        struct tnode *a;

        if ((rc = advance_tok(p)) < 0 || (rc = parse_unary(p, false, &a)) < 0) return rc;
        if ((rc = binop(p, E_UNARY, op, line, a, NULL, &n)) < 0) return rc;
    } else if ((rc = parse_primary(p, &n)) < 0) {
        return rc;
    }
    if ((rc = parse_postfix(p, &n)) < 0) return rc;
    if (with_filter && (rc = parse_filter_expr(p, &n)) < 0) return rc;
    p->depth--;
    *out = n;
    return 0;
}

static int parse_pow(struct parser *p, struct tnode **out)
{
    int rc = parse_unary(p, true, out);

    while (rc == 0 && op_is(&p->cur, OP_POW)) {
        uint32_t line = p->cur.line;
        struct tnode *b;

        if ((rc = advance_tok(p)) < 0 || (rc = parse_unary(p, true, &b)) < 0) return rc;
        rc = binop(p, E_BINOP, OP_POW, line, *out, b, out);
    }
    return rc;
}

static int parse_math2(struct parser *p, struct tnode **out)
{
    int rc = parse_pow(p, out);

    while (rc == 0 && p->cur.type == TOK_OP &&
           (p->cur.op == OP_MUL || p->cur.op == OP_DIV || p->cur.op == OP_FLOORDIV ||
            p->cur.op == OP_MOD)) {
        uint16_t op = p->cur.op;
        uint32_t line = p->cur.line;
        struct tnode *b;

        if ((rc = advance_tok(p)) < 0 || (rc = parse_pow(p, &b)) < 0) return rc;
        rc = binop(p, E_BINOP, op, line, *out, b, out);
    }
    return rc;
}

static int parse_concat(struct parser *p, struct tnode **out)
{
    int rc = parse_math2(p, out);

    while (rc == 0 && op_is(&p->cur, OP_TILDE)) {
        uint32_t line = p->cur.line;
        struct tnode *b;

        if ((rc = advance_tok(p)) < 0 || (rc = parse_math2(p, &b)) < 0) return rc;
        rc = binop(p, E_BINOP, OP_TILDE, line, *out, b, out);
    }
    return rc;
}

static int parse_math1(struct parser *p, struct tnode **out)
{
    int rc = parse_concat(p, out);

    while (rc == 0 && p->cur.type == TOK_OP && (p->cur.op == OP_ADD || p->cur.op == OP_SUB)) {
        uint16_t op = p->cur.op;
        uint32_t line = p->cur.line;
        struct tnode *b;

        if ((rc = advance_tok(p)) < 0 || (rc = parse_concat(p, &b)) < 0) return rc;
        rc = binop(p, E_BINOP, op, line, *out, b, out);
    }
    return rc;
}

static int parse_compare(struct parser *p, struct tnode **out)
{
    struct tnode *first, *n;
    struct nvec ops = { 0 };
    uint32_t line = p->cur.line;
    int rc = parse_math1(p, &first);

    if (rc < 0) return rc;
    for (;;) {
        uint8_t op = 0;
        const struct token *nx;
        struct tnode *b;

        if (p->cur.type == TOK_OP &&
            (p->cur.op == OP_EQ || p->cur.op == OP_NE || p->cur.op == OP_LT || p->cur.op == OP_LE ||
             p->cur.op == OP_GT || p->cur.op == OP_GE)) {
            op = p->cur.op;
            rc = advance_tok(p);
        } else if (name_is(&p->cur, "in")) {
            op = OP_IN;
            rc = advance_tok(p);
        } else if (name_is(&p->cur, "not")) {
            if ((rc = look(p, &nx)) < 0) return rc;
            if (!name_is(nx, "in")) break;
            op = OP_NOTIN;
            if ((rc = advance_tok(p)) == 0) rc = advance_tok(p);
        } else {
            break;
        }
        if (rc < 0 || (rc = parse_math1(p, &b)) < 0 || (rc = vec_push(p, &ops, b, NULL, op)) < 0)
            return rc;
    }
    if (ops.n == 0) {
        *out = first;
        return 0;
    }
    n = node_new(p, E_COMPARE, line);
    if (n == NULL) return oom(p);
    n->a = first;
    vec_attach(n, &ops);
    *out = n;
    return finish(p, n);
}

static int parse_not(struct parser *p, struct tnode **out)
{
    int rc;

    if (name_is(&p->cur, "not")) {
        uint32_t line = p->cur.line;
        struct tnode *a;

        if ((rc = enter(p)) < 0 || (rc = advance_tok(p)) < 0 || (rc = parse_not(p, &a)) < 0)
            return rc;
        p->depth--;
        return binop(p, E_NOT, 0, line, a, NULL, out);
    }
    return parse_compare(p, out);
}

static int parse_and(struct parser *p, struct tnode **out)
{
    int rc = parse_not(p, out);

    while (rc == 0 && name_is(&p->cur, "and")) {
        uint32_t line = p->cur.line;
        struct tnode *b;

        if ((rc = advance_tok(p)) < 0 || (rc = parse_not(p, &b)) < 0) return rc;
        rc = binop(p, E_AND, 0, line, *out, b, out);
    }
    return rc;
}

static int parse_or(struct parser *p, struct tnode **out)
{
    int rc = parse_and(p, out);

    while (rc == 0 && name_is(&p->cur, "or")) {
        uint32_t line = p->cur.line;
        struct tnode *b;

        if ((rc = advance_tok(p)) < 0 || (rc = parse_and(p, &b)) < 0) return rc;
        rc = binop(p, E_OR, 0, line, *out, b, out);
    }
    return rc;
}

static int parse_condexpr(struct parser *p, struct tnode **out)
{
    int rc = parse_or(p, out);

    while (rc == 0 && name_is(&p->cur, "if")) {
        struct tnode *n = node_new(p, E_COND, p->cur.line), *cond, *other = NULL;

        if (n == NULL) return oom(p);
        if ((rc = advance_tok(p)) < 0 || (rc = parse_or(p, &cond)) < 0) return rc;
        if (name_is(&p->cur, "else")) {
            if ((rc = enter(p)) < 0 || (rc = advance_tok(p)) < 0 ||
                (rc = parse_condexpr(p, &other)) < 0)
                return rc;
            p->depth--;
        }
        n->a = cond;
        n->b = *out;
        n->c = other;
        *out = n;
        rc = finish(p, n);
    }
    return rc;
}

static int parse_expression(struct parser *p, bool with_condexpr, struct tnode **out)
{
    int rc;

    if ((rc = enter(p)) < 0) return rc;
    rc = with_condexpr ? parse_condexpr(p, out) : parse_or(p, out);
    p->depth--;
    return rc;
}

static bool is_tuple_end(const struct parser *p, const char *end_name)
{
    return p->cur.type == TOK_VAR_END || p->cur.type == TOK_BLOCK_END ||
           op_is(&p->cur, OP_RPAREN) || (end_name != NULL && name_is(&p->cur, end_name));
}

static int parse_tuple(struct parser *p, bool simplified, bool with_condexpr, const char *end_name,
                       bool explicit_parens, struct tnode **out)
{
    struct nvec items = { 0 };
    uint32_t line = p->cur.line;
    bool is_tuple = false;
    struct tnode *n;
    int rc;

    for (;;) {
        struct tnode *v;

        if (items.n > 0 && (rc = expect_op(p, OP_COMMA, "','")) < 0) return rc;
        if (is_tuple_end(p, end_name)) break;
        rc = simplified ? parse_primary(p, &v) : parse_expression(p, with_condexpr, &v);
        if (rc < 0 || (rc = vec_push(p, &items, v, NULL, 0)) < 0) return rc;
        if (op_is(&p->cur, OP_COMMA))
            is_tuple = true;
        else
            break;
    }
    if (!is_tuple) {
        if (items.n > 0) {
            *out = items.v[0];
            return 0;
        }
        if (!explicit_parens) return unexpected(p, "an expression");
    }
    n = node_new(p, E_TUPLE, line);
    if (n == NULL) return oom(p);
    vec_attach(n, &items);
    *out = n;
    return finish(p, n);
}

/* for/set targets: name, name.attr (with_ns), or a tuple of names. */
static int parse_assign_target(struct parser *p, bool with_ns, const char *end_name,
                               struct tnode **out)
{
    struct tnode *n;
    int rc;

    if (with_ns && p->cur.type == TOK_NAME) {
        const struct token *nx;

        if ((rc = look(p, &nx)) < 0) return rc;
        if (op_is(nx, OP_DOT)) {
            struct tnode *base = node_new(p, E_NAME, p->cur.line);

            n = node_new(p, E_GETATTR, p->cur.line);
            if (base == NULL || n == NULL) return oom(p);
            base->name = p->cur.s;
            if ((rc = advance_tok(p)) < 0 || (rc = advance_tok(p)) < 0) return rc;
            if (p->cur.type != TOK_NAME) return unexpected(p, "attribute name");
            n->name = p->cur.s;
            n->a = base;
            if ((rc = advance_tok(p)) < 0) return rc;
            *out = n;
            return finish(p, n);
        }
    }
    if ((rc = parse_tuple(p, true, false, end_name, false, &n)) < 0) return rc;
    if (n->kind == E_NAME) {
        *out = n;
        return 0;
    }
    if (n->kind == E_TUPLE) {
        for (size_t i = 0; i < n->n; i++)
            if (n->list[i]->kind != E_NAME)
                return fail_at(p, "%s", "can only assign to names or tuples of names");
        *out = n;
        return 0;
    }
    return fail_at(p, "%s", "can only assign to names, tuples of names or namespace attributes");
}

/* Expects "%}" then the body up to one of ends; cur is left on the end name. */
static int parse_statements(struct parser *p, const char *const *ends, size_t n_ends,
                            struct tnode **body, bool drop_end)
{
    int rc;

    if ((rc = expect_type(p, TOK_BLOCK_END, "'%}'")) < 0) return rc;
    if ((rc = subparse(p, ends, n_ends, body)) < 0) return rc;
    if (drop_end) return advance_tok(p);
    return 0;
}

static int parse_if(struct parser *p, struct tnode **out)
{
    static const char *const ends[] = { "elif", "else", "endif" };
    static const char *const ends_else[] = { "endif" };
    struct tnode *result = NULL, *node = NULL;
    int rc;

    for (;;) {
        struct tnode *n = node_new(p, N_IF, p->cur.line);

        if (n == NULL) return oom(p);
        if ((rc = advance_tok(p)) < 0) /* if / elif */
            return rc;
        if ((rc = parse_tuple(p, false, false, NULL, false, &n->a)) < 0) return rc;
        if ((rc = enter(p)) < 0 || (rc = parse_statements(p, ends, 3, &n->b, false)) < 0) return rc;
        p->depth--;
        if (result == NULL)
            result = n;
        else
            node->c = n;
        node = n;
        if (name_is(&p->cur, "elif")) continue;
        if (name_is(&p->cur, "else")) {
            if ((rc = advance_tok(p)) < 0) return rc;
            if ((rc = enter(p)) < 0 || (rc = parse_statements(p, ends_else, 1, &n->c, true)) < 0)
                return rc;
            p->depth--;
        } else if ((rc = advance_tok(p)) < 0) { /* endif */
            return rc;
        }
        break;
    }
    /* Depths bottom-up along the elif chain. */
    {
        struct tnode *chain[SLM_LIMIT_TEMPLATE_DEPTH + 1];
        size_t k = 0;

        for (struct tnode *it = result; it != NULL && it->kind == N_IF; it = it->c) {
            if (k > SLM_LIMIT_TEMPLATE_DEPTH)
                return slm_diag_set(p->d, SLM_ELIMIT, "template line %u: more than %u elif",
                                    (unsigned)result->line, SLM_LIMIT_TEMPLATE_DEPTH);
            chain[k++] = it;
        }
        while (k > 0)
            if ((rc = finish(p, chain[--k])) < 0) return rc;
    }
    *out = result;
    return 0;
}

static int parse_for(struct parser *p, struct tnode **out)
{
    static const char *const ends[] = { "endfor", "else" };
    static const char *const ends_else[] = { "endfor" };
    struct tnode *n = node_new(p, N_FOR, p->cur.line);
    int rc;

    if (n == NULL) return oom(p);
    if ((rc = advance_tok(p)) < 0 || (rc = parse_assign_target(p, false, "in", &n->a)) < 0)
        return rc;
    if (!name_is(&p->cur, "in")) return unexpected(p, "'in'");
    if ((rc = advance_tok(p)) < 0 ||
        (rc = parse_tuple(p, false, false, "recursive", false, &n->b)) < 0)
        return rc;
    if (name_is(&p->cur, "if")) {
        if ((rc = advance_tok(p)) < 0 || (rc = parse_expression(p, true, &n->e)) < 0) return rc;
    }
    if (name_is(&p->cur, "recursive"))
        return fail_at(p, "%s", "recursive for loops are not supported");
    p->loops++;
    if ((rc = enter(p)) < 0 || (rc = parse_statements(p, ends, 2, &n->c, false)) < 0) return rc;
    p->loops--;
    if (name_is(&p->cur, "else")) {
        if ((rc = advance_tok(p)) < 0 || (rc = parse_statements(p, ends_else, 1, &n->d, true)) < 0)
            return rc;
    } else if ((rc = advance_tok(p)) < 0) {
        return rc;
    }
    p->depth--;
    *out = n;
    return finish(p, n);
}

static int parse_set(struct parser *p, struct tnode **out)
{
    static const char *const ends[] = { "endset" };
    struct tnode *n = node_new(p, N_SET, p->cur.line), *filt = NULL;
    int rc;

    if (n == NULL) return oom(p);
    if ((rc = advance_tok(p)) < 0 || (rc = parse_assign_target(p, true, NULL, &n->a)) < 0)
        return rc;
    if (op_is(&p->cur, OP_ASSIGN)) {
        if ((rc = advance_tok(p)) < 0 || (rc = parse_tuple(p, false, true, NULL, false, &n->b)) < 0)
            return rc;
        *out = n;
        return finish(p, n);
    }
    n->kind = N_SET_BLOCK;
    if (op_is(&p->cur, OP_PIPE)) {
        struct tnode *hole = node_new(p, E_CAPTURED, p->cur.line);

        if (hole == NULL) return oom(p);
        filt = hole;
        if ((rc = parse_filter(p, &filt, false)) < 0) return rc;
    }
    if ((rc = enter(p)) < 0 || (rc = parse_statements(p, ends, 1, &n->b, true)) < 0) return rc;
    p->depth--;
    n->c = filt;
    *out = n;
    return finish(p, n);
}

/* ( name [= default], ... ) into n->list (E_NAME nodes with e = default). */
static int parse_signature(struct parser *p, struct tnode *n)
{
    struct nvec params = { 0 };
    int rc = expect_op(p, OP_LPAREN, "'('");

    while (rc == 0 && !op_is(&p->cur, OP_RPAREN)) {
        struct tnode *arg;

        if (params.n > 0 && (rc = expect_op(p, OP_COMMA, "','")) < 0) return rc;
        if (p->cur.type != TOK_NAME) return unexpected(p, "parameter name");
        arg = node_new(p, E_NAME, p->cur.line);
        if (arg == NULL) return oom(p);
        arg->name = p->cur.s;
        if ((rc = advance_tok(p)) < 0) return rc;
        if (op_is(&p->cur, OP_ASSIGN)) {
            if ((rc = advance_tok(p)) < 0 || (rc = parse_expression(p, true, &arg->e)) < 0)
                return rc;
            if ((rc = finish(p, arg)) < 0) return rc;
        }
        if ((rc = vec_push(p, &params, arg, NULL, 0)) < 0) return rc;
        if (params.n > TARGS_MAX) return fail_at(p, "more than %s macro parameters", "16");
    }
    if (rc < 0) return rc;
    vec_attach(n, &params);
    return advance_tok(p);
}

static int parse_macro(struct parser *p, struct tnode **out)
{
    static const char *const ends[] = { "endmacro" };
    struct tnode *n = node_new(p, N_MACRO, p->cur.line);
    unsigned saved_loops;
    int rc;

    if (n == NULL) return oom(p);
    if ((rc = advance_tok(p)) < 0) return rc;
    if (p->cur.type != TOK_NAME) return unexpected(p, "macro name");
    n->name = p->cur.s;
    if ((rc = advance_tok(p)) < 0 || (rc = parse_signature(p, n)) < 0) return rc;
    saved_loops = p->loops;
    p->loops = 0; /* break/continue in a macro body need a loop of their own */
    p->macros++;
    if ((rc = enter(p)) < 0 || (rc = parse_statements(p, ends, 1, &n->b, true)) < 0) return rc;
    p->depth--;
    p->macros--;
    p->loops = saved_loops;
    *out = n;
    return finish(p, n);
}

static int parse_call_block(struct parser *p, struct tnode **out)
{
    static const char *const ends[] = { "endcall" };
    struct tnode *n = node_new(p, N_CALL_BLOCK, p->cur.line);
    int rc;

    if (n == NULL) return oom(p);
    if ((rc = advance_tok(p)) < 0) return rc;
    if (op_is(&p->cur, OP_LPAREN) && (rc = parse_signature(p, n)) < 0) return rc;
    if ((rc = parse_expression(p, true, &n->a)) < 0) return rc;
    if (n->a->kind != E_CALL) return fail_at(p, "%s", "expected a call after {% call");
    if ((rc = enter(p)) < 0 || (rc = parse_statements(p, ends, 1, &n->b, true)) < 0) return rc;
    p->depth--;
    *out = n;
    return finish(p, n);
}

static int parse_filter_block(struct parser *p, struct tnode **out)
{
    static const char *const ends[] = { "endfilter" };
    struct tnode *n = node_new(p, N_FILTER_BLOCK, p->cur.line);
    struct tnode *hole;
    int rc;

    if (n == NULL) return oom(p);
    if ((rc = advance_tok(p)) < 0) return rc;
    hole = node_new(p, E_CAPTURED, p->cur.line);
    if (hole == NULL) return oom(p);
    n->a = hole;
    if ((rc = parse_filter(p, &n->a, true)) < 0) return rc;
    if ((rc = enter(p)) < 0 || (rc = parse_statements(p, ends, 1, &n->b, true)) < 0) return rc;
    p->depth--;
    *out = n;
    return finish(p, n);
}

static int parse_statement(struct parser *p, struct tnode **out)
{
    static const char *const gen_ends[] = { "endgeneration" };
    char nm[64];

    if (p->cur.type != TOK_NAME) return unexpected(p, "a tag name");
    if (name_is(&p->cur, "if")) return parse_if(p, out);
    if (name_is(&p->cur, "for")) return parse_for(p, out);
    if (name_is(&p->cur, "set")) return parse_set(p, out);
    if (name_is(&p->cur, "macro")) return parse_macro(p, out);
    if (name_is(&p->cur, "call")) return parse_call_block(p, out);
    if (name_is(&p->cur, "filter")) return parse_filter_block(p, out);
    if (name_is(&p->cur, "break") || name_is(&p->cur, "continue")) {
        struct tnode *n =
            node_new(p, name_is(&p->cur, "break") ? N_BREAK : N_CONTINUE, p->cur.line);

        if (n == NULL) return oom(p);
        if (p->loops == 0) return fail_at(p, "%s", "break or continue outside of a for loop");
        *out = n;
        return advance_tok(p);
    }
    if (name_is(&p->cur, "generation")) {
        int rc = advance_tok(p);

        if (rc < 0 || (rc = enter(p)) < 0 || (rc = parse_statements(p, gen_ends, 1, out, true)) < 0)
            return rc;
        p->depth--;
        return finish(p, *out);
    }
    snprintf(nm, sizeof(nm), "%.*s", (int)(p->cur.s.n > 40 ? 40 : p->cur.s.n), p->cur.s.p);
    if (!strcmp(nm, "include") || !strcmp(nm, "extends") || !strcmp(nm, "import") ||
        !strcmp(nm, "from") || !strcmp(nm, "block") || !strcmp(nm, "with") || !strcmp(nm, "do") ||
        !strcmp(nm, "autoescape") || !strcmp(nm, "trans"))
        return fail_at(p, "tag '%s' is not supported in chat templates", nm);
    return fail_at(p, "encountered unknown tag '%s'", nm);
}

/* Parses until EOF (no ends) or a {% name %} with name in ends (cur = name). */
static int subparse(struct parser *p, const char *const *ends, size_t n_ends, struct tnode **body)
{
    struct tnode *b = node_new(p, N_BODY, p->cur.line);
    struct nvec items = { 0 };
    int rc;

    if (b == NULL) return oom(p);
    for (;;) {
        struct tnode *n = NULL;

        if (p->cur.type == TOK_EOF) {
            if (n_ends > 0) {
                char want[32];

                snprintf(want, sizeof(want), "%s", ends[n_ends - 1]);
                return fail_at(p, "unexpected end of template, expected '%s'", want);
            }
            break;
        }
        if (p->cur.type == TOK_TEXT) {
            n = node_new(p, N_TEXT, p->cur.line);
            if (n == NULL) return oom(p);
            n->val = chat__str(p->cur.s.p, p->cur.s.n);
            if ((rc = advance_tok(p)) < 0) return rc;
        } else if (p->cur.type == TOK_VAR_BEGIN) {
            n = node_new(p, N_OUTPUT, p->cur.line);
            if (n == NULL) return oom(p);
            if ((rc = advance_tok(p)) < 0 ||
                (rc = parse_tuple(p, false, true, NULL, false, &n->a)) < 0)
                return rc;
            if ((rc = expect_type(p, TOK_VAR_END, "'}}'")) < 0 || (rc = finish(p, n)) < 0)
                return rc;
        } else if (p->cur.type == TOK_BLOCK_BEGIN) {
            if ((rc = advance_tok(p)) < 0) return rc;
            for (size_t i = 0; i < n_ends; i++)
                if (name_is(&p->cur, ends[i])) goto done;
            if ((rc = parse_statement(p, &n)) < 0) return rc;
            if ((rc = expect_type(p, TOK_BLOCK_END, "'%}'")) < 0) return rc;
        } else {
            return unexpected(p, "text or a tag");
        }
        if ((rc = vec_push(p, &items, n, NULL, 0)) < 0) return rc;
    }
done:
    vec_attach(b, &items);
    *body = b;
    return finish(p, b);
}

/*
 * Parses src[0..len) into t->root, allocating from t->arena. Returns 0,
 * SLM_EFORMAT (syntax, with line), SLM_ELIMIT (nesting, memory) or
 * SLM_ENOMEM.
 */
int chat__parse(struct chat_template *t, const char *src, size_t len, struct slm_diag *d)
{
    struct parser p;
    int rc;

    memset(&p, 0, sizeof(p));
    p.a = &t->arena;
    p.d = d;
    if ((rc = chat__lex_init(&p.lx, p.a, src, len, d)) < 0) return rc;
    if ((rc = advance_tok(&p)) < 0) return rc;
    return subparse(&p, NULL, 0, &t->root);
}
