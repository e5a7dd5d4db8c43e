/*
 * chat_int.h - internals of the chat template interpreter.
 *
 * Pipeline: template_lex.c turns the source into tokens on demand (Jinja2's
 * lexer rules with trim_blocks and lstrip_blocks), template_parse.c builds a
 * syntax tree in the program's arena, template_eval.c walks it with values
 * from a per-render arena, and template_value.c / template_filters.c hold the
 * value semantics (Python's str(), repr(), ==, json.dumps) and the filters,
 * tests and methods. docs/internals/chat.md describes the subset.
 *
 * Memory: everything a compile or a render allocates comes from a capped
 * arena (struct tpl_arena) freed in one call; values never own memory.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/chat.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/limits.h"

/* ---- arena ---- */

struct tpl_arena_block;

struct tpl_arena {
    struct tpl_arena_block *head;
    size_t used;     /* bytes handed out plus block overhead */
    size_t used_max; /* the cap: past it allocations fail with SLM_ELIMIT */
    bool over;       /* set when an allocation failed because of the cap */
};

void chat__arena_init(struct tpl_arena *a, size_t used_max);
void chat__arena_fini(struct tpl_arena *a);
/* Returns zeroed memory valid until chat__arena_fini, or NULL (see a->over). */
void *chat__arena_alloc(struct tpl_arena *a, size_t size);
/* Returns a copy of s[0..n) plus a NUL, or NULL. */
char *chat__arena_strdup(struct tpl_arena *a, const char *s, size_t n);

/* ---- values ---- */

struct tstr {
    const char *p;
    size_t n;
};

enum tv_type {
    TV_UNDEF = 0,
    TV_NONE,
    TV_BOOL,
    TV_INT,
    TV_FLOAT,
    TV_STR,
    TV_LIST,   /* list, tuple (TV_F_TUPLE) or generator result (TV_F_GEN) */
    TV_DICT,   /* dict with insertion order */
    TV_NS,     /* namespace(): a mutable dict with attribute access */
    TV_LOOP,   /* the loop variable of a for block */
    TV_MACRO,  /* a macro defined with {% macro %} */
    TV_FUNC,   /* a global function (range, dict, namespace, ...) */
    TV_METHOD, /* a method bound to a value (s.strip, d.items, loop.cycle) */
    TV_CALLER, /* caller() inside a macro invoked by {% call %} */
    TV_TYPE_COUNT
};

#define TV_F_TUPLE  1u /* a tuple: prints as (a, b) */
#define TV_F_GEN    2u /* Jinja2 would return a generator: no len(), always true */
#define TV_F_UNSAFE 4u /* an undefined the sandbox produced (unsafe attribute) */

struct tlist;
struct tdict;
struct tloop;
struct tmethod;
struct tcaller;
struct tnode;

struct tv {
    uint8_t type;  /* enum tv_type */
    uint8_t flags; /* TV_F_* */
    uint16_t fn;   /* TV_FUNC: the function id */
    union {
        bool b;
        int64_t i;
        double d;
        struct tstr s; /* TV_STR; TV_UNDEF: the name, for messages */
        struct tlist *l;
        struct tdict *m;
        struct tloop *loop;
        const struct tnode *mac;
        struct tmethod *bm;
        struct tcaller *caller;
    } u;
};

struct tlist {
    struct tv *items;
    size_t n;
};

struct tdict {
    struct tv *keys;
    struct tv *vals;
    size_t n;
    size_t cap;
};

struct tloop {
    const struct tlist *items;
    size_t index0;
    unsigned depth0;
};

struct tmethod {
    struct tv self;
    struct tstr name;
};

struct tcaller {
    const struct tnode *call; /* the N_CALL_BLOCK node */
    struct frame *frame;      /* where the call block ran */
};

/* ---- tokens ---- */

enum tok_type {
    TOK_EOF = 0,
    TOK_TEXT,
    TOK_VAR_BEGIN,
    TOK_VAR_END,
    TOK_BLOCK_BEGIN,
    TOK_BLOCK_END,
    TOK_NAME,
    TOK_STRING,
    TOK_INT,
    TOK_FLOAT,
    TOK_OP
};

enum tok_op {
    OP_NONE = 0,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_TILDE,
    OP_LBRACKET,
    OP_RBRACKET,
    OP_LPAREN,
    OP_RPAREN,
    OP_LBRACE,
    OP_RBRACE,
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GE,
    OP_LT,
    OP_LE,
    OP_ASSIGN,
    OP_DOT,
    OP_COLON,
    OP_PIPE,
    OP_COMMA,
    OP_SEMICOLON,
    /* non-token operators used by the tree */
    OP_IN,
    OP_NOTIN,
    OP_NEG,
    OP_POS,
    OP_COUNT
};

struct token {
    uint8_t type; /* enum tok_type */
    uint8_t op;   /* enum tok_op for TOK_OP */
    uint32_t line;
    struct tstr s; /* TOK_TEXT, TOK_NAME, TOK_STRING (decoded, in the arena) */
    int64_t i;
    double d;
};

struct lexer {
    struct tpl_arena *arena;
    const char *src; /* normalised source (\r\n -> \n, one trailing \n dropped) */
    size_t len;
    size_t pos;
    uint32_t line;
    int state; /* 0 text, 1 inside {{ }}, 2 inside {% %} */
    bool line_starting;
    unsigned braces; /* open ( [ { inside a tag */
    int pending;     /* a tag whose start was consumed after the text before it */
    char stack[SLM_LIMIT_TEMPLATE_DEPTH]; /* expected closing brackets */
    struct slm_diag *d;
};

int chat__lex_init(struct lexer *lx, struct tpl_arena *a, const char *src, size_t len,
                   struct slm_diag *d);
/* Fills t with the next token; returns 0 or SLM_EFORMAT / SLM_ELIMIT / SLM_ENOMEM. */
int chat__lex_next(struct lexer *lx, struct token *t);

/* ---- syntax tree ---- */

enum node_kind {
    N_BODY = 1,     /* list: statements */
    N_TEXT,         /* val: the text */
    N_OUTPUT,       /* a: expression */
    N_IF,           /* a: cond, b: body, c: else (N_BODY or N_IF) */
    N_FOR,          /* a: target, b: iter, c: body, d: else body, e: filter */
    N_SET,          /* a: target, b: value */
    N_SET_BLOCK,    /* a: target, b: body */
    N_MACRO,        /* name, list: params (N_NAME, e: default), b: body */
    N_CALL_BLOCK,   /* a: call expression, list: caller params, b: body */
    N_FILTER_BLOCK, /* a: filter chain applied to E_CONST placeholder, b: body */
    N_BREAK,
    N_CONTINUE,
    E_CONST,   /* val */
    E_NAME,    /* name */
    E_GETATTR, /* a: object, name */
    E_GETITEM, /* a: object, b: index */
    E_SLICE,   /* a: object, b: start, c: stop, d: step (each may be NULL) */
    E_CALL,    /* a: callee, list: args (argnames) */
    E_FILTER,  /* a: operand (NULL in filter blocks), name, list: args */
    E_TEST,    /* a: operand, name, list: args; op 1 = negated */
    E_BINOP,   /* op, a, b */
    E_UNARY,   /* op (OP_NEG / OP_POS), a */
    E_NOT,     /* a */
    E_AND,     /* a, b */
    E_OR,      /* a, b */
    E_COMPARE, /* a: first, list: operands, ops: operators */
    E_COND,    /* a: cond, b: then, c: else (may be NULL) */
    E_LIST,    /* list */
    E_TUPLE,   /* list */
    E_DICT,    /* list: keys and values interleaved */
    E_CAPTURED /* the value a filter block filters (a placeholder) */
};

struct tnode {
    uint16_t kind;
    uint16_t op;
    uint32_t line;
    uint32_t depth;
    struct tnode *a, *b, *c, *d, *e;
    struct tnode **list;
    struct tstr *argnames; /* per list item: keyword name, or n == 0 */
    uint8_t *ops;          /* E_COMPARE: per operand */
    size_t n;
    struct tstr name;
    struct tv val;
};

struct chat_template {
    struct tpl_arena arena;
    struct tnode *root;
};

int chat__parse(struct chat_template *t, const char *src, size_t len, struct slm_diag *d);

/* ---- render context ---- */

struct frame {
    struct frame *parent;
    struct tdict vars;
};

struct rctx {
    struct tpl_arena arena;
    struct slm_buf *out;
    size_t out_max;
    uint64_t steps;
    uint64_t steps_max;
    unsigned call_depth;
    struct frame *frame;
    struct frame *top;    /* the template's top-level frame */
    struct tdict globals; /* messages, tools, ... */
    struct slm_diag *d;
    int flow;           /* 0, FLOW_BREAK, FLOW_CONTINUE */
    int64_t now;        /* strftime_now time, 0 = current */
    uint32_t line;      /* line of the node being evaluated */
    unsigned depth;     /* nested eval/exec frames */
    struct tv captured; /* the text a filter block or set block filters */
};

#define FLOW_BREAK    1
#define FLOW_CONTINUE 2

/* Records a runtime error "template line N: ..." and returns code. */
int chat__fail(struct rctx *c, int code, const char *fmt, ...) SLM_PRINTF(3, 4);
/* Returns SLM_ELIMIT or SLM_ENOMEM for a failed arena allocation. */
int chat__oom(struct rctx *c);

/* template_value.c */
struct tv chat__undef(struct tstr name);
struct tv chat__none(void);
struct tv chat__bool(bool b);
struct tv chat__int(int64_t i);
struct tv chat__float(double d);
struct tv chat__str(const char *p, size_t n);
struct tv chat__cstr(const char *s);
const char *chat__type_name(const struct tv *v);
bool chat__truthy(const struct tv *v);
bool chat__equal(const struct tv *a, const struct tv *b);
/* Python's <: returns 0 and stores the result, or an error for mixed types. */
int chat__less(struct rctx *c, const struct tv *a, const struct tv *b, bool *out);
int chat__list_new(struct rctx *c, size_t n, struct tv *out);
int chat__dict_new(struct rctx *c, struct tv *out);
int chat__dict_set(struct rctx *c, struct tdict *m, const struct tv *key, const struct tv *val);
struct tv *chat__dict_get(const struct tdict *m, const struct tv *key);
struct tv *chat__dict_getn(const struct tdict *m, const char *key, size_t n);
int chat__from_json(struct rctx *c, const struct json_value *j, struct tv *out);
/* Appends str(v) (repr when repr is true) to b. */
int chat__write_str(struct rctx *c, struct slm_buf *b, const struct tv *v, bool repr);
/* str(v) as a value in the arena (strings are returned as they are). */
int chat__to_str(struct rctx *c, const struct tv *v, struct tstr *out);
struct tojson_opts {
    bool ensure_ascii;
    bool sort_keys;
    const char *indent; /* NULL: no indent */
    size_t indent_len;
    struct tstr item_sep;
    struct tstr key_sep;
};
int chat__tojson(struct rctx *c, struct slm_buf *b, const struct tv *v, const struct tojson_opts *o,
                 unsigned level);
void chat__float_repr(double d, char *buf, size_t cap);
/* Code points of a valid UTF-8 string, and the byte offset of code point i. */
size_t chat__u8_len(const char *s, size_t n);
size_t chat__u8_offset(const char *s, size_t n, size_t i);
uint32_t chat__u8_decode(const char *s, size_t n, size_t *adv);
bool chat__py_isspace(uint32_t cp);
/* Bytes of Python whitespace that end s[0..n) / start it. */
size_t chat__rstrip_len(const char *s, size_t n);
size_t chat__lstrip_len(const char *s, size_t n);

/* template_filters.c */
struct targs {
    size_t n;
    struct tv v[16];
    struct tstr name[16]; /* keyword name or n == 0 */
};

#define TARGS_MAX 16

int chat__filter(struct rctx *c, const struct tstr *name, struct tv *self, struct targs *a,
                 struct tv *out);
int chat__test(struct rctx *c, const struct tstr *name, struct tv *self, struct targs *a,
               bool *out);
bool chat__has_filter(const struct tstr *name);
bool chat__has_test(const struct tstr *name);
/* Attribute lookup as Jinja's sandbox does it (methods, keys, undefined). */
int chat__getattr(struct rctx *c, const struct tv *obj, const struct tstr *name, struct tv *out);
int chat__getitem(struct rctx *c, const struct tv *obj, const struct tv *key, struct tv *out);
int chat__call_method(struct rctx *c, struct tmethod *m, struct targs *a, struct tv *out);
int chat__call_func(struct rctx *c, unsigned fn, struct targs *a, struct tv *out);
/* Returns a TV_FUNC for a global function name, or false. */
bool chat__global_func(const struct tstr *name, struct tv *out);

/* template_eval.c: used by filters that apply other filters or tests. */
int chat__iterate(struct rctx *c, const struct tv *v, struct tlist *out);
int chat__slice(struct rctx *c, const struct tv *obj, const struct tv *start, const struct tv *stop,
                const struct tv *step, struct tv *out);

/* builtin_templates.c */
const char *chat__builtin_source(const char *name);
