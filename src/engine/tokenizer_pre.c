/*
 * tokenizer_pre.c - pre-tokenizers: the split regexes of tokenizer.ggml.pre,
 * written as scanners over code points instead of a regex engine.
 *
 * Each regex below is the one the model's tokenizer.json uses (Hugging Face
 * tokenizers, a backtracking engine with leftmost-first alternation); the
 * scanner returns the length of the match starting at a position, following
 * the alternatives in order, greedy quantifiers and the backtracking they
 * imply. A pre-tokenizer is one regex or a sequence of them; each regex splits
 * every piece the previous one produced into its matches and the gaps between
 * them ("Isolated" behaviour), and lookaheads see the end of the piece as the
 * end of the text. Every scanner runs in time linear in what it consumes.
 *
 * Invalid UTF-8 bytes are pseudo code points of category Cn: they count as
 * "not a letter, digit or space", like U+FFFD would.
 */
#include "engine/tokenizer_int.h"

/* A regex scanner: the length in bytes of the match at s[pos..end), or 0. */
typedef size_t match_fn(const uint8_t *s, size_t pos, size_t end);

/* ---- character classes ---- */

static bool cat_is_l(enum ucat c)
{
    return c >= UCAT_LU && c <= UCAT_LO;
}

static bool cat_is_n(enum ucat c)
{
    return c >= UCAT_ND && c <= UCAT_NO;
}

static bool cat_is_m(enum ucat c)
{
    return c >= UCAT_MN && c <= UCAT_ME;
}

static bool cat_is_p(enum ucat c)
{
    return c >= UCAT_PC && c <= UCAT_PO;
}

/* One decoded code point with its facts. */
struct cpi {
    uint32_t cp;
    size_t len;
    enum ucat cat;
    bool space;
};

static struct cpi cp_at(const uint8_t *s, size_t pos, size_t end)
{
    struct cpi c;

    c.cp = unicode__decode(s, pos, end, &c.len);
    c.cat = unicode__cat(c.cp);
    c.space = unicode__is_space(c.cp);
    return c;
}

static bool is_l(const struct cpi *c)
{
    return cat_is_l(c->cat);
}

static bool is_n(const struct cpi *c)
{
    return cat_is_n(c->cat);
}

/* [^\s\p{L}\p{N}] */
static bool is_other(const struct cpi *c)
{
    return !c->space && !cat_is_l(c->cat) && !cat_is_n(c->cat);
}

static bool is_crlf(uint32_t cp)
{
    return cp == '\r' || cp == '\n';
}

/* Bytes of the longest run from pos of code points for which pred holds. */
static size_t run(const uint8_t *s, size_t pos, size_t end, bool (*pred)(const struct cpi *))
{
    size_t p = pos;

    while (p < end) {
        struct cpi c = cp_at(s, p, end);
        if (!pred(&c)) break;
        p += c.len;
    }
    return p - pos;
}

static uint32_t ascii_lower(uint32_t cp)
{
    return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
}

/*
 * 's|'t|'re|'ve|'m|'ll|'d, case-insensitive if ci: the length or 0.
 * (?i) is applied to ASCII letters only, as llama.cpp does.
 */
static size_t match_contraction(const uint8_t *s, size_t pos, size_t end, bool ci)
{
    if (s[pos] != '\'' || end - pos < 2) return 0;
    uint32_t a = s[pos + 1], b = end - pos >= 3 ? s[pos + 2] : 0;
    if (ci) {
        a = ascii_lower(a);
        b = ascii_lower(b);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/*
 * The whitespace tail shared by the Llama 3 family:
 *   \s*[\r\n]+ | \s+(?!\S) | \s+        (with_crlf)
 *   \s+(?!\S) | \s+                     (GPT-2)
 * s[pos] is white space.
 */
static size_t match_space_tail(const uint8_t *s, size_t pos, size_t end, bool with_crlf)
{
    size_t p = pos, last_crlf = 0, last_start = pos, n = 0;

    while (p < end) {
        struct cpi c = cp_at(s, p, end);
        if (!c.space) break;
        if (is_crlf(c.cp)) last_crlf = p + c.len;
        last_start = p;
        p += c.len;
        n++;
    }
    if (with_crlf && last_crlf > 0)
        return last_crlf - pos; /* \s*[\r\n]+ backtracks to the last CR/LF */
    if (p < end && n > 1)
        return last_start - pos; /* \s+(?!\S): leave one space for the next word */
    return p - pos;              /* \s+ */
}

/* ---- Llama 3 and Qwen2 ---- */

/*
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 */
static size_t match_llama3_family(const uint8_t *s, size_t pos, size_t end, unsigned max_digits)
{
    size_t m = match_contraction(s, pos, end, true);
    if (m > 0) return m;

    struct cpi c = cp_at(s, pos, end);
    if (!is_crlf(c.cp) && !is_n(&c)) {
        if (is_l(&c)) return c.len + run(s, pos + c.len, end, is_l);
        if (pos + c.len < end) {
            struct cpi c2 = cp_at(s, pos + c.len, end);
            if (is_l(&c2)) return c.len + run(s, pos + c.len, end, is_l);
        }
    }
    if (is_n(&c)) {
        size_t p = pos;
        for (unsigned k = 0; k < max_digits && p < end; k++) {
            struct cpi d = cp_at(s, p, end);
            if (!is_n(&d)) break;
            p += d.len;
        }
        return p - pos;
    }
    size_t p = pos + (c.cp == ' ' ? 1 : 0);
    if (p < end) {
        struct cpi c2 = cp_at(s, p, end);
        if (is_other(&c2)) {
            p += run(s, p, end, is_other);
            while (p < end && (s[p] == '\r' || s[p] == '\n'))
                p++;
            return p - pos;
        }
    }
    if (c.space) return match_space_tail(s, pos, end, true);
    return c.len; /* unreachable: every code point is letter, digit, space or other */
}

static size_t match_llama3(const uint8_t *s, size_t pos, size_t end)
{
    return match_llama3_family(s, pos, end, 3);
}

static size_t match_qwen2(const uint8_t *s, size_t pos, size_t end)
{
    return match_llama3_family(s, pos, end, 1);
}

/* ---- Mistral tekken ---- */

/* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] */
static bool is_tekken_upper(const struct cpi *c)
{
    return c->cat == UCAT_LU || c->cat == UCAT_LT || c->cat == UCAT_LM || c->cat == UCAT_LO ||
           cat_is_m(c->cat);
}

/* [\p{Ll}\p{Lm}\p{Lo}\p{M}] */
static bool is_tekken_lower(const struct cpi *c)
{
    return c->cat == UCAT_LL || c->cat == UCAT_LM || c->cat == UCAT_LO || cat_is_m(c->cat);
}

/*
 * [upper]*[lower]+ at pos, with backtracking: the upper run is greedy, so if
 * the code point after it is not lower the run gives back up to its last code
 * point that is also lower (Lm, Lo, M), which then forms the [lower]+.
 */
static size_t match_upper_star_lower_plus(const uint8_t *s, size_t pos, size_t end)
{
    size_t p = pos, last_lower_end = 0;

    while (p < end) {
        struct cpi c = cp_at(s, p, end);
        if (!is_tekken_upper(&c)) break;
        if (is_tekken_lower(&c)) last_lower_end = p + c.len;
        p += c.len;
    }
    if (p < end) {
        struct cpi c = cp_at(s, p, end);
        if (is_tekken_lower(&c)) return p + run(s, p, end, is_tekken_lower) - pos;
    }
    return last_lower_end > 0 ? last_lower_end - pos : 0;
}

/* [upper]+[lower]* at pos. */
static size_t match_upper_plus_lower_star(const uint8_t *s, size_t pos, size_t end)
{
    size_t n = run(s, pos, end, is_tekken_upper);
    if (n == 0) return 0;
    return n + run(s, pos + n, end, is_tekken_lower);
}

/* [^\r\n\p{L}\p{N}] */
static bool is_word_prefix(const struct cpi *c)
{
    return !is_crlf(c->cp) && !is_l(c) && !is_n(c);
}

/*
 * [^\r\n\p{L}\p{N}]?[upper]*[lower]+|[^\r\n\p{L}\p{N}]?[upper]+[lower]*|\p{N}|
 *  ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
 */
static size_t match_tekken(const uint8_t *s, size_t pos, size_t end)
{
    struct cpi c = cp_at(s, pos, end);
    bool prefix = is_word_prefix(&c) && pos + c.len < end;
    size_t m;

    if (prefix && (m = match_upper_star_lower_plus(s, pos + c.len, end)) > 0) return c.len + m;
    if ((m = match_upper_star_lower_plus(s, pos, end)) > 0) return m;
    if (prefix && (m = match_upper_plus_lower_star(s, pos + c.len, end)) > 0) return c.len + m;
    if ((m = match_upper_plus_lower_star(s, pos, end)) > 0) return m;
    if (is_n(&c)) return c.len;
    size_t p = pos + (c.cp == ' ' ? 1 : 0);
    if (p < end) {
        struct cpi c2 = cp_at(s, p, end);
        if (is_other(&c2)) {
            p += run(s, p, end, is_other);
            while (p < end && (s[p] == '\r' || s[p] == '\n' || s[p] == '/'))
                p++;
            return p - pos;
        }
    }
    if (c.space) return match_space_tail(s, pos, end, true);
    return c.len;
}

/* ---- GPT-2 ---- */

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const uint8_t *s, size_t pos, size_t end)
{
    size_t m = match_contraction(s, pos, end, false);
    if (m > 0) return m;

    struct cpi c = cp_at(s, pos, end);
    size_t p = pos + (c.cp == ' ' ? 1 : 0);
    if (p < end) {
        struct cpi c2 = cp_at(s, p, end);
        if (is_l(&c2)) return p - pos + run(s, p, end, is_l);
        if (is_n(&c2)) return p - pos + run(s, p, end, is_n);
        if (is_other(&c2)) return p - pos + run(s, p, end, is_other);
    }
    if (c.space) return match_space_tail(s, pos, end, false);
    return c.len;
}

/* ---- sequences of simple regexes (deepseek-coder, starcoder, default) ---- */

/* [\r\n] */
static size_t match_crlf(const uint8_t *s, size_t pos, size_t end)
{
    (void)end;
    return (s[pos] == '\r' || s[pos] == '\n') ? 1 : 0;
}

static bool is_p(const struct cpi *c)
{
    return cat_is_p(c->cat);
}

/* \s?X+ for a class X. */
static size_t match_opt_space_run(const uint8_t *s, size_t pos, size_t end,
                                  bool (*pred)(const struct cpi *))
{
    struct cpi c = cp_at(s, pos, end);

    if (pred(&c)) return run(s, pos, end, pred);
    if (c.space && pos + c.len < end) {
        size_t n = run(s, pos + c.len, end, pred);
        if (n > 0) return c.len + n;
    }
    return 0;
}

/* \s?\p{L}+ */
static size_t match_space_letters(const uint8_t *s, size_t pos, size_t end)
{
    return match_opt_space_run(s, pos, end, is_l);
}

/* \s?\p{P}+ */
static size_t match_space_punct(const uint8_t *s, size_t pos, size_t end)
{
    return match_opt_space_run(s, pos, end, is_p);
}

/* [一-龥ࠀ-一가-퟿] */
static bool is_deepseek_cjk(const struct cpi *c)
{
    return (c->cp >= 0x4E00 && c->cp <= 0x9FA5) || (c->cp >= 0x0800 && c->cp <= 0x4E00) ||
           (c->cp >= 0xAC00 && c->cp <= 0xD7FF);
}

/* [一-龥ࠀ-一가-퟿]+ */
static size_t match_cjk(const uint8_t *s, size_t pos, size_t end)
{
    return run(s, pos, end, is_deepseek_cjk);
}

/* \p{N} */
static size_t match_digit(const uint8_t *s, size_t pos, size_t end)
{
    struct cpi c = cp_at(s, pos, end);
    return is_n(&c) ? c.len : 0;
}

/* \p{N}+ */
static size_t match_digits(const uint8_t *s, size_t pos, size_t end)
{
    return run(s, pos, end, is_n);
}

/* [\p{P}\$\+<=>\^~\|] */
static bool is_default_punct(const struct cpi *c)
{
    return cat_is_p(c->cat) || c->cp == '$' || c->cp == '+' || c->cp == '<' || c->cp == '=' ||
           c->cp == '>' || c->cp == '^' || c->cp == '~' || c->cp == '|';
}

/* [\p{P}\$\+<=>\^~\|]+ */
static size_t match_default_punct(const uint8_t *s, size_t pos, size_t end)
{
    return run(s, pos, end, is_default_punct);
}

/* [0-9][0-9][0-9] */
static size_t match_three_digits(const uint8_t *s, size_t pos, size_t end)
{
    if (end - pos < 3) return 0;
    for (size_t i = 0; i < 3; i++)
        if (s[pos + i] < '0' || s[pos + i] > '9') return 0;
    return 3;
}

/* ---- driver ---- */

#define PRE_MAX_STAGES 5

struct pre_def {
    size_t n;
    match_fn *stage[PRE_MAX_STAGES];
};

/* The regex sequence of each pre-tokenizer (llama.cpp's llama-vocab.cpp). */
static const struct pre_def pre_defs[TOK_PRE_COUNT] = {
    [TOK_PRE_DEFAULT] = { 4,
                          { match_default_punct, match_gpt2, match_digits, match_three_digits } },
    [TOK_PRE_LLAMA3] = { 1, { match_llama3 } },
    [TOK_PRE_QWEN2] = { 1, { match_qwen2 } },
    [TOK_PRE_TEKKEN] = { 1, { match_tekken } },
    [TOK_PRE_DEEPSEEK_CODER] = { 5,
                                 { match_crlf, match_space_letters, match_space_punct, match_cjk,
                                   match_digit } },
    [TOK_PRE_STARCODER] = { 2, { match_digit, match_gpt2 } },
    [TOK_PRE_GPT2] = { 1, { match_gpt2 } },
};

struct pre_run {
    const struct pre_def *def;
    const uint8_t *s;
    tok_word_fn *fn;
    void *ctx;
};

static int split_stage(const struct pre_run *r, size_t stage, size_t start, size_t end);

static int emit_piece(const struct pre_run *r, size_t stage, size_t start, size_t end)
{
    if (stage + 1 < r->def->n) return split_stage(r, stage + 1, start, end);
    return r->fn(r->ctx, r->s, start, end);
}

/*
 * Applies regex number stage to s[start..end): matches and the gaps between
 * them go on to the next stage (or to the callback after the last one). The
 * search for the next match moves one code point at a time, as a regex
 * iterator does.
 */
static int split_stage(const struct pre_run *r, size_t stage, size_t start, size_t end)
{
    match_fn *match = r->def->stage[stage];
    size_t p = start, gap = start;
    int rc;

    while (p < end) {
        size_t m = match(r->s, p, end);
        if (m == 0) {
            size_t n;
            (void)unicode__decode(r->s, p, end, &n);
            p += n;
            continue;
        }
        if (gap < p && (rc = emit_piece(r, stage, gap, p)) < 0) return rc;
        if ((rc = emit_piece(r, stage, p, p + m)) < 0) return rc;
        p += m;
        gap = p;
    }
    if (gap < end && (rc = emit_piece(r, stage, gap, end)) < 0) return rc;
    return 0;
}

/*
 * Splits s[0..len) into the pre-tokens of pre and calls fn for each.
 * Returns 0 or the first negative code fn returned.
 */
int tok__pre_split(enum tok_pre pre, const uint8_t *s, size_t len, tok_word_fn *fn, void *ctx)
{
    if ((unsigned)pre >= TOK_PRE_COUNT) return SLM_EINVAL;
    struct pre_run r = { &pre_defs[pre], s, fn, ctx };
    if (len == 0) return 0;
    return split_stage(&r, 0, 0, len);
}
