/*
 * template_lex.c - the Jinja2 lexer with Hugging Face's whitespace settings.
 *
 * Follows jinja2/lexer.py (3.1) rule by rule, because the output must be
 * byte-identical: the source has its line breaks normalised to \n and one
 * trailing newline dropped (keep_trailing_newline=False); "{%-" / "{{-" /
 * "{#-" strip all whitespace before the tag, "-%}" / "-}}" / "-#}" all
 * whitespace after it; trim_blocks drops one \n after "%}" and "#}";
 * lstrip_blocks drops spaces and tabs between the start of a line and "{%" or
 * "{#" (not "{{"), unless the tag is written "{%+". Tokens are produced on
 * demand, so junk input fails at its first error without buffering.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"
#include "chat/chat_int.h"
#include "core/alloc.h"
#include "core/limits.h"

enum pending_kind { PEND_NONE = 0, PEND_VAR, PEND_BLOCK, PEND_COMMENT, PEND_RAW };

static int lex_fail(struct lexer *lx, const char *what)
{
    return slm_diag_set(lx->d, SLM_EFORMAT, "template line %u: %s", (unsigned)lx->line, what);
}

/* Moves pos to newpos, counting line breaks. */
static void advance(struct lexer *lx, size_t newpos)
{
    for (size_t i = lx->pos; i < newpos; i++)
        if (lx->src[i] == '\n') lx->line++;
    lx->pos = newpos;
}

/* Length of the Python whitespace run (\s) starting at pos. */
static size_t ws_run(const struct lexer *lx, size_t pos)
{
    size_t start = pos;

    while (pos < lx->len) {
        size_t adv;
        uint32_t cp = chat__u8_decode(lx->src + pos, lx->len - pos, &adv);

        if (!chat__py_isspace(cp)) break;
        pos += adv;
    }
    return pos - start;
}

int chat__lex_init(struct lexer *lx, struct tpl_arena *a, const char *src, size_t len,
                   struct slm_diag *d)
{
    char *buf;
    size_t n = 0;

    memset(lx, 0, sizeof(*lx));
    lx->arena = a;
    lx->d = d;
    lx->line = 1;
    lx->line_starting = true;
    buf = chat__arena_alloc(a, len + 1);
    if (buf == NULL)
        return slm_diag_set(d, a->over ? SLM_ELIMIT : SLM_ENOMEM,
                            "template: out of memory copying %zu bytes", len);
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            buf[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            buf[n++] = src[i];
        }
    }
    if (n > 0 && buf[n - 1] == '\n') n--;
    buf[n] = '\0';
    lx->src = buf;
    lx->len = n;
    return 0;
}

/* Finds the next "{{", "{%" or "{#" at or after pos; returns len if none. */
static size_t find_tag(const struct lexer *lx, size_t pos)
{
    while (pos + 1 < lx->len) {
        const char *p = memchr(lx->src + pos, '{', lx->len - pos - 1);
        char c;

        if (p == NULL) return lx->len;
        pos = (size_t)(p - lx->src);
        c = lx->src[pos + 1];
        if (c == '{' || c == '%' || c == '#') return pos;
        pos++;
    }
    return lx->len;
}

/* Matches "raw" begin at pos (just after "{%"): sign, \s*, raw, \s*, end.
 * Returns the end offset or 0. */
static size_t match_raw_begin(const struct lexer *lx, size_t pos)
{
    if (pos < lx->len && (lx->src[pos] == '-' || lx->src[pos] == '+')) pos++;
    pos += ws_run(lx, pos);
    if (lx->len - pos < 3 || memcmp(lx->src + pos, "raw", 3) != 0) return 0;
    pos += 3;
    pos += ws_run(lx, pos);
    if (lx->len - pos >= 3 && memcmp(lx->src + pos, "-%}", 3) == 0)
        return pos + 3 + ws_run(lx, pos + 3);
    if (lx->len - pos >= 2 && memcmp(lx->src + pos, "%}", 2) == 0) return pos + 2;
    return 0;
}

/*
 * Applies the whitespace rules to text[0..*n) before a tag whose sign is
 * sign ('-', '+' or 0); lstrip is true for block and comment tags.
 */
static void strip_before(const struct lexer *lx, const char *text, size_t *n, char sign,
                         bool lstrip)
{
    if (sign == '-') {
        *n -= chat__rstrip_len(text, *n);
    } else if (sign != '+' && lstrip) {
        size_t l_pos = 0;

        for (size_t i = *n; i > 0; i--) {
            if (text[i - 1] == '\n') {
                l_pos = i;
                break;
            }
        }
        if ((l_pos > 0 || lx->line_starting) && l_pos < *n &&
            chat__lstrip_len(text + l_pos, *n - l_pos) == *n - l_pos)
            *n = l_pos;
    }
}

static int emit_text(struct lexer *lx, struct token *t, const char *p, size_t n, uint32_t line)
{
    (void)lx;
    t->type = TOK_TEXT;
    t->line = line;
    t->s.p = p;
    t->s.n = n;
    return 0;
}

/* The body of a {% raw %} block up to its {% endraw %}. */
static int lex_raw(struct lexer *lx, struct token *t, bool *got)
{
    size_t start = lx->pos, pos = lx->pos;
    uint32_t line = lx->line;

    *got = false;
    for (;;) {
        size_t k = pos, q, text_n;
        char sign = 0;

        while (k + 1 < lx->len && !(lx->src[k] == '{' && lx->src[k + 1] == '%'))
            k++;
        if (k + 1 >= lx->len) return lex_fail(lx, "missing end of raw directive");
        q = k + 2;
        if (q < lx->len && (lx->src[q] == '-' || lx->src[q] == '+')) sign = lx->src[q++];
        q += ws_run(lx, q);
        if (lx->len - q < 6 || memcmp(lx->src + q, "endraw", 6) != 0) {
            pos = k + 1;
            continue;
        }
        q += 6;
        q += ws_run(lx, q);
        if (lx->len - q >= 3 && memcmp(lx->src + q, "+%}", 3) == 0) {
            q += 3;
        } else if (lx->len - q >= 3 && memcmp(lx->src + q, "-%}", 3) == 0) {
            q += 3;
            q += ws_run(lx, q);
        } else if (lx->len - q >= 2 && memcmp(lx->src + q, "%}", 2) == 0) {
            q += 2;
            if (q < lx->len && lx->src[q] == '\n') q++;
        } else {
            pos = k + 1;
            continue;
        }
        text_n = k - start;
        strip_before(lx, lx->src + start, &text_n, sign, true);
        advance(lx, q);
        lx->line_starting = lx->src[q - 1] == '\n';
        if (text_n > 0) {
            *got = true;
            return emit_text(lx, t, lx->src + start, text_n, line);
        }
        return 0;
    }
}

/* Skips a comment whose "{#" (and sign) was consumed. */
static int lex_comment(struct lexer *lx)
{
    size_t start = lx->pos, k = lx->pos;

    for (;;) {
        const char *p = k + 1 < lx->len ? memchr(lx->src + k, '#', lx->len - k - 1) : NULL;
        size_t end;

        if (p == NULL) return lex_fail(lx, "missing end of comment tag");
        k = (size_t)(p - lx->src);
        if (lx->src[k + 1] != '}') {
            k++;
            continue;
        }
        end = k + 2;
        if (k > start && lx->src[k - 1] == '-')
            end += ws_run(lx, end);
        else if (!(k > start && lx->src[k - 1] == '+') && end < lx->len && lx->src[end] == '\n')
            end++;
        advance(lx, end);
        lx->line_starting = lx->src[end - 1] == '\n';
        return 0;
    }
}

/* Decodes a Jinja string literal body s[0..n) (Python unicode-escape). */
static int decode_string(struct lexer *lx, const char *s, size_t n, struct tstr *out)
{
    char *buf = chat__arena_alloc(lx->arena, n * 3 + 1);
    size_t o = 0;

    if (buf == NULL)
        return slm_diag_set(lx->d, lx->arena->over ? SLM_ELIMIT : SLM_ENOMEM,
                            "template: out of memory in a string literal");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        unsigned digits = 0;

        if (c != '\\' || i + 1 >= n) {
            buf[o++] = (char)c;
            continue;
        }
        c = (unsigned char)s[++i];
        switch (c) {
        case '\n':
            break;
        case '\\':
        case '\'':
        case '"':
            buf[o++] = (char)c;
            break;
        case 'a':
            buf[o++] = '\a';
            break;
        case 'b':
            buf[o++] = '\b';
            break;
        case 'f':
            buf[o++] = '\f';
            break;
        case 'n':
            buf[o++] = '\n';
            break;
        case 'r':
            buf[o++] = '\r';
            break;
        case 't':
            buf[o++] = '\t';
            break;
        case 'v':
            buf[o++] = '\v';
            break;
        case 'x':
            digits = 2;
            break;
        case 'u':
            digits = 4;
            break;
        case 'U':
            digits = 8;
            break;
        default:
            if (c >= '0' && c <= '7') {
                cp = 0;
                for (unsigned k = 0; k < 3 && i < n && s[i] >= '0' && s[i] <= '7'; k++, i++)
                    cp = cp * 8 + (uint32_t)(s[i] - '0');
                i--;
                o += slm_utf8_encode(cp, buf + o);
            } else if (c >= 0x80) {
                /* Jinja backslash-replaces non-ASCII before decoding. */
                size_t adv;
                uint32_t u = chat__u8_decode(s + i, n - i, &adv);
                const char *hex = "0123456789abcdef";
                unsigned w = u < 0x100 ? 2 : u < 0x10000 ? 4 : 8;

                buf[o++] = '\\';
                buf[o++] = w == 2 ? 'x' : w == 4 ? 'u' : 'U';
                for (unsigned k = w; k > 0; k--)
                    buf[o++] = hex[(u >> (4 * (k - 1))) & 15];
                i += adv - 1;
            } else {
                buf[o++] = '\\';
                buf[o++] = (char)c;
            }
            break;
        }
        if (digits > 0) {
            cp = 0;
            for (unsigned k = 0; k < digits; k++) {
                char h = i + 1 + k < n ? s[i + 1 + k] : 0;
                int v = h >= '0' && h <= '9'   ? h - '0'
                        : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                               : -1;
                if (v < 0)
                    return lex_fail(lx, "truncated \\x, \\u or \\U escape in a string literal");
                cp = cp * 16 + (uint32_t)v;
            }
            i += digits;
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return lex_fail(lx, "string literal escape is not a valid code point");
            o += slm_utf8_encode(cp, buf + o);
        }
    }
    buf[o] = '\0';
    out->p = buf;
    out->n = o;
    return 0;
}

static int lex_number(struct lexer *lx, struct token *t)
{
    size_t p = lx->pos, start = lx->pos;
    bool is_float = false;
    char tmp[128];
    size_t tn = 0;

    while (p < lx->len && ((lx->src[p] >= '0' && lx->src[p] <= '9') ||
                           (lx->src[p] == '_' && p + 1 < lx->len && lx->src[p + 1] >= '0' &&
                            lx->src[p + 1] <= '9'))) {
        p++;
    }
    /* A fraction needs digits after the dot ("1." is 1 then "."), and a number
     * right after a dot ("x.0.1") is an index, not a float. */
    if (p + 1 < lx->len && lx->src[p] == '.' && lx->src[p + 1] >= '0' && lx->src[p + 1] <= '9' &&
        !(start > 0 && lx->src[start - 1] == '.')) {
        is_float = true;
        p++;
        while (p < lx->len && ((lx->src[p] >= '0' && lx->src[p] <= '9') || lx->src[p] == '_'))
            p++;
    }
    if (p < lx->len && (lx->src[p] == 'e' || lx->src[p] == 'E') &&
        !(start > 0 && lx->src[start - 1] == '.')) {
        size_t q = p + 1;

        if (q < lx->len && (lx->src[q] == '+' || lx->src[q] == '-')) q++;
        if (q < lx->len && lx->src[q] >= '0' && lx->src[q] <= '9') {
            is_float = true;
            p = q;
            while (p < lx->len && ((lx->src[p] >= '0' && lx->src[p] <= '9') || lx->src[p] == '_'))
                p++;
        }
    }
    for (size_t i = start; i < p; i++) {
        if (lx->src[i] == '_') continue;
        if (tn + 1 >= sizeof(tmp)) return lex_fail(lx, "number literal too long");
        tmp[tn++] = lx->src[i];
    }
    tmp[tn] = '\0';
    t->line = lx->line;
    if (is_float) {
        char *end;

        t->type = TOK_FLOAT;
        t->d = strtod(tmp, &end);
    } else {
        int64_t v = 0;

        t->type = TOK_INT;
        for (size_t i = 0; i < tn; i++) {
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, tmp[i] - '0', &v))
                return lex_fail(lx, "integer literal does not fit 64 bits");
        }
        t->i = v;
    }
    advance(lx, p);
    return 0;
}

static const struct {
    const char *s;
    uint8_t op;
} ops[] = {
    { "//", OP_FLOORDIV }, { "**", OP_POW },      { "==", OP_EQ },    { "!=", OP_NE },
    { ">=", OP_GE },       { "<=", OP_LE },       { "+", OP_ADD },    { "-", OP_SUB },
    { "/", OP_DIV },       { "*", OP_MUL },       { "%", OP_MOD },    { "~", OP_TILDE },
    { "[", OP_LBRACKET },  { "]", OP_RBRACKET },  { "(", OP_LPAREN }, { ")", OP_RPAREN },
    { "{", OP_LBRACE },    { "}", OP_RBRACE },    { ">", OP_GT },     { "<", OP_LT },
    { "=", OP_ASSIGN },    { ".", OP_DOT },       { ":", OP_COLON },  { "|", OP_PIPE },
    { ",", OP_COMMA },     { ";", OP_SEMICOLON },
};

static char closer_of(uint8_t op)
{
    return op == OP_LPAREN ? ')' : op == OP_LBRACKET ? ']' : '}';
}

/* One token inside {{ }} or {% %}. */
static int lex_tag(struct lexer *lx, struct token *t)
{
    size_t p;
    char c;

    advance(lx, lx->pos + ws_run(lx, lx->pos));
    p = lx->pos;
    if (p >= lx->len) return lex_fail(lx, "unexpected end of template inside a tag");
    if (lx->braces == 0) {
        const char *s = lx->src + p;
        size_t left = lx->len - p, end = 0;

        if (lx->state == 2) {
            if (left >= 3 && memcmp(s, "+%}", 3) == 0)
                end = p + 3;
            else if (left >= 3 && memcmp(s, "-%}", 3) == 0)
                end = p + 3 + ws_run(lx, p + 3);
            else if (left >= 2 && memcmp(s, "%}", 2) == 0)
                end = p + 2 + (left > 2 && s[2] == '\n');
        } else {
            if (left >= 3 && memcmp(s, "-}}", 3) == 0)
                end = p + 3 + ws_run(lx, p + 3);
            else if (left >= 2 && memcmp(s, "}}", 2) == 0)
                end = p + 2;
        }
        if (end > 0) {
            t->type = lx->state == 2 ? TOK_BLOCK_END : TOK_VAR_END;
            t->line = lx->line;
            advance(lx, end);
            lx->line_starting = lx->src[end - 1] == '\n';
            lx->state = 0;
            return 0;
        }
    }
    c = lx->src[p];
    if (c >= '0' && c <= '9') return lex_number(lx, t);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
        size_t q = p;

        while (q < lx->len && ((lx->src[q] >= 'a' && lx->src[q] <= 'z') ||
                               (lx->src[q] >= 'A' && lx->src[q] <= 'Z') ||
                               (lx->src[q] >= '0' && lx->src[q] <= '9') || lx->src[q] == '_'))
            q++;
        t->type = TOK_NAME;
        t->line = lx->line;
        t->s.p = lx->src + p;
        t->s.n = q - p;
        advance(lx, q);
        return 0;
    }
    if (c == '\'' || c == '"') {
        size_t q = p + 1;
        int rc;

        while (q < lx->len && lx->src[q] != c) {
            if (lx->src[q] == '\\') q++;
            q++;
        }
        if (q >= lx->len) return lex_fail(lx, "unterminated string literal");
        t->type = TOK_STRING;
        t->line = lx->line;
        rc = decode_string(lx, lx->src + p + 1, q - p - 1, &t->s);
        if (rc < 0) return rc;
        advance(lx, q + 1);
        return 0;
    }
    for (size_t k = 0; k < SLM_ARRAY_LEN(ops); k++) {
        size_t n = strlen(ops[k].s);

        if (lx->len - p < n || memcmp(lx->src + p, ops[k].s, n) != 0) continue;
        t->type = TOK_OP;
        t->op = ops[k].op;
        t->line = lx->line;
        advance(lx, p + n);
        return 0;
    }
    {
        char msg[64];
        unsigned char uc = (unsigned char)c;

        if (uc >= 0x20 && uc < 0x7f)
            snprintf(msg, sizeof(msg), "unexpected char '%c' inside a tag", c);
        else
            snprintf(msg, sizeof(msg), "unexpected byte 0x%02x inside a tag", uc);
        return lex_fail(lx, msg);
    }
}

int chat__lex_next(struct lexer *lx, struct token *t)
{
    memset(t, 0, sizeof(*t));
    for (;;) {
        if (lx->state != 0) {
            int rc = lex_tag(lx, t);

            if (rc < 0) return rc;
            if (t->type == TOK_OP) {
                if (t->op == OP_LPAREN || t->op == OP_LBRACKET || t->op == OP_LBRACE) {
                    if (lx->braces >= SLM_LIMIT_TEMPLATE_DEPTH)
                        return slm_diag_set(lx->d, SLM_ELIMIT,
                                            "template line %u: brackets nested deeper than %u",
                                            (unsigned)lx->line, SLM_LIMIT_TEMPLATE_DEPTH);
                    lx->stack[lx->braces++] = closer_of(t->op);
                } else if (t->op == OP_RPAREN || t->op == OP_RBRACKET || t->op == OP_RBRACE) {
                    char got = t->op == OP_RPAREN ? ')' : t->op == OP_RBRACKET ? ']' : '}';

                    if (lx->braces == 0 || lx->stack[lx->braces - 1] != got) {
                        char msg[64];

                        snprintf(msg, sizeof(msg), "unexpected '%c'", got);
                        return lex_fail(lx, msg);
                    }
                    lx->braces--;
                }
            }
            return 0;
        }
        if (lx->pending != PEND_NONE) {
            int kind = lx->pending;

            lx->pending = PEND_NONE;
            if (kind == PEND_COMMENT) {
                int rc = lex_comment(lx);

                if (rc < 0) return rc;
                continue;
            }
            if (kind == PEND_RAW) {
                bool got;
                int rc = lex_raw(lx, t, &got);

                if (rc < 0 || got) return rc;
                continue;
            }
            t->type = kind == PEND_VAR ? TOK_VAR_BEGIN : TOK_BLOCK_BEGIN;
            t->line = lx->line;
            lx->state = kind == PEND_VAR ? 1 : 2;
            lx->braces = 0;
            return 0;
        }
        if (lx->pos >= lx->len) {
            t->type = TOK_EOF;
            t->line = lx->line;
            return 0;
        }
        {
            size_t k = find_tag(lx, lx->pos), start = lx->pos, text_n, after;
            uint32_t line = lx->line;
            char kind, sign = 0;

            if (k >= lx->len) {
                advance(lx, lx->len);
                return emit_text(lx, t, lx->src + start, lx->len - start, line);
            }
            kind = lx->src[k + 1];
            after = k + 2;
            if (after < lx->len && (lx->src[after] == '-' || lx->src[after] == '+'))
                sign = lx->src[after];
            text_n = k - start;
            if (kind == '%') {
                size_t raw_end = match_raw_begin(lx, after);

                if (raw_end > 0) {
                    strip_before(lx, lx->src + start, &text_n, sign, true);
                    advance(lx, raw_end);
                    lx->line_starting = lx->src[raw_end - 1] == '\n';
                    lx->pending = PEND_RAW;
                    if (text_n > 0) return emit_text(lx, t, lx->src + start, text_n, line);
                    continue;
                }
            }
            strip_before(lx, lx->src + start, &text_n, sign, kind != '{');
            advance(lx, after + (sign != 0));
            lx->line_starting = false;
            lx->pending = kind == '{' ? PEND_VAR : kind == '%' ? PEND_BLOCK : PEND_COMMENT;
            if (text_n > 0) return emit_text(lx, t, lx->src + start, text_n, line);
        }
    }
}
