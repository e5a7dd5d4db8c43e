/*
 * openai_constrain.c - forced tool calls: tool_choice "required" or
 * {"type": "function", "function": {"name": X}} guarantee that the answer
 * is a tool call (docs/api.md).
 *
 * The call's opening in the model's own format is appended to the prompt
 * (Hermes/Qwen "<tool_call>\n{"name": "X", "arguments": ", Llama 3
 * "{"name": "X", "parameters": ", Mistral "[TOOL_CALLS][{"name": ..." or,
 * for Devstral-style templates, "[TOOL_CALLS]X[ARGS]"); for "required"
 * with several tools the opening stops before the name and the model's
 * tokens are constrained to the alternatives "name" + the rest of the
 * opening. Then every token must keep the text a prefix of a JSON object
 * (chat_json_prefix, the arguments) that can still be closed within the
 * tokens left; the request ends as soon as the object closes, and the
 * closing text of the format is added for the tool-call parser.
 *
 * The scheduler's sampler asks allow() about candidates best first and
 * stops at the first allowed one when greedy, or about the survivors of
 * top-k/top-p/min-p when sampling (sample.h), so the cost per token is a
 * few candidates, each a copy of the ~650-byte state plus one pass over
 * the token's bytes; the whole vocabulary is scanned only when the model's
 * favourites are all refused (a heap, O(n_vocab + k log n_vocab)).
 *
 * Threads: api__constraint_new and the accessors run on the loop thread
 * before submission and after DONE; allow and accept run on the engine
 * thread while the request runs. The object is not shared otherwise.
 */
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"
#include "core/alloc.h"
#include "core/json.h"
#include "core/limits.h"

/* Bytes of one function name in a forced call. */
#define CONSTRAIN_NAME_MAX 256u

/* Where the generated text is. */
struct cstate {
    bool in_name; /* choosing among alts */
    bool done;    /* the arguments object closed */
    size_t alt;   /* an alternative consistent with the text so far */
    size_t n_got; /* bytes of it generated */
    struct chat_json_prefix js;
};

struct api_constraint {
    const struct tokenizer *tok;
    struct slm_buf prefix, suffix;
    char **alts; /* escaped name + the opening's rest up to the arguments */
    size_t *alt_len;
    size_t **off; /* per alt: byte offsets of its own tokens, [0, ..., alt_len] */
    size_t *n_tok;
    size_t n_alts;
    struct cstate st;
};

/* Frees c; NULL is a no-op. */
void api__constraint_free(struct api_constraint *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i < c->n_alts; i++) {
        slm_free(c->alts[i]);
        if (c->off != NULL) slm_free(c->off[i]);
    }
    slm_free(c->alts);
    slm_free(c->alt_len);
    slm_free(c->off);
    slm_free(c->n_tok);
    slm_buf_fini(&c->prefix);
    slm_buf_fini(&c->suffix);
    slm_free(c);
}

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '.';
}

/*
 * Records where the model's own tokens of alternative j end: the budget
 * counts tokens along this split (any other split is allowed, and the
 * bytes up to the next boundary count one token each, which single-byte
 * tokens can always pay). A tokenization that does not give back the text
 * exactly (a SentencePiece leading space) counts every byte as a token.
 */
static int split_alt(const struct api *a, struct api_constraint *c, size_t j)
{
    tok_id *toks = NULL;
    size_t nt = 0, o = 0, len = c->alt_len[j];
    bool exact = true;
    int rc = api__tokenize(a, c->alts[j], len, 0, &toks, &nt);

    if (rc < 0) return rc;
    for (size_t i = 0; i < nt && exact; i++) {
        char buf[SLM_LIMIT_TOKEN_BYTES];
        size_t bl = 0;

        exact = tokenizer_token_bytes(a->tok, toks[i], false, buf, sizeof(buf), &bl) == 0 &&
                bl > 0 && bl <= sizeof(buf) && o + bl <= len &&
                memcmp(c->alts[j] + o, buf, bl) == 0;
        o += bl;
    }
    exact = exact && o == len;
    if (!exact) nt = len;
    c->off[j] = slm_calloc(nt + 1, sizeof(size_t));
    if (c->off[j] == NULL) {
        slm_free(toks);
        return SLM_ENOMEM;
    }
    o = 0;
    for (size_t i = 0; i < nt; i++) {
        size_t bl = 1;

        if (exact && tokenizer_token_bytes(a->tok, toks[i], false, NULL, 0, &bl) < 0) bl = 1;
        o += bl;
        c->off[j][i + 1] = o;
    }
    c->n_tok[j] = nt;
    slm_free(toks);
    return 0;
}

/* Tokens that finish alternative j from byte k (see split_alt). */
static size_t alt_cost(const struct api_constraint *c, size_t j, size_t k)
{
    const size_t *off = c->off[j];
    size_t m = c->n_tok[j];

    for (size_t i = 0; i <= m; i++) {
        if (off[i] == k) return m - i;
        if (off[i] > k) return (off[i] - k) + (m - i);
    }
    return 0;
}

/*
 * Appends the alternative for name to c: the name (JSON-escaped unless the
 * format writes it bare) and mid. Returns 0, SLM_EINVAL (d) for a name the
 * format cannot carry, SLM_ENOMEM.
 */
static int add_alt(struct api_constraint *c, const struct json_value *name, bool bare,
                   const char *mid, struct slm_diag *d)
{
    struct slm_buf b;
    struct json_writer w;
    char *s;
    size_t i, len;
    int rc;

    if (name->u.str.len == 0 || name->u.str.len > CONSTRAIN_NAME_MAX)
        return slm_diag_set(d, SLM_EINVAL, "tool name of %zu bytes cannot be forced (1 to %u)",
                            name->u.str.len, CONSTRAIN_NAME_MAX);
    slm_buf_init(&b, 8 * CONSTRAIN_NAME_MAX);
    if (bare) {
        for (i = 0; i < name->u.str.len; i++)
            if (!name_char(name->u.str.ptr[i])) {
                slm_buf_fini(&b);
                return slm_diag_set(d, SLM_EINVAL,
                                    "tool name '%.64s' cannot be forced in this model's format "
                                    "(letters, digits, '_', '-', '.' only)",
                                    name->u.str.ptr);
            }
        rc = slm_buf_append(&b, name->u.str.ptr, name->u.str.len);
    } else {
        /* The writer adds quotes: keep what is between them. */
        json_writer_init(&w, &b, false);
        json_str(&w, name->u.str.ptr, name->u.str.len);
        rc = json_writer_finish(&w);
        if (rc == 0) {
            memmove(b.data, b.data + 1, b.len - 2);
            b.len -= 2;
        }
    }
    if (rc == 0) rc = slm_buf_append(&b, mid, strlen(mid));
    len = b.len;
    s = rc == 0 ? slm_malloc(len + 1) : NULL;
    if (s == NULL) {
        slm_buf_fini(&b);
        return rc < 0 && rc != SLM_ENOMEM ? slm_diag_set(d, rc, "tool name too long") : SLM_ENOMEM;
    }
    memcpy(s, b.data, len);
    s[len] = '\0';
    slm_buf_fini(&b);
    c->alts[c->n_alts] = s;
    c->alt_len[c->n_alts++] = len;
    return 0;
}

/* Fewest bytes that complete the call from st. */
static size_t min_close(const struct api_constraint *c, const struct cstate *st)
{
    size_t best = SIZE_MAX;

    if (st->done) return 0;
    if (!st->in_name) return chat_json_prefix_min_close(&st->js);
    for (size_t j = 0; j < c->n_alts; j++) {
        if (c->alt_len[j] < st->n_got || memcmp(c->alts[j], c->alts[st->alt], st->n_got) != 0)
            continue;
        if (alt_cost(c, j, st->n_got) < best) best = alt_cost(c, j, st->n_got);
    }
    return best + 2; /* and "{}" */
}

/* Applies the bytes b[0..n) to st; false if they cannot continue a valid call. */
static bool step(const struct api_constraint *c, struct cstate *st, const char *b, size_t n)
{
    enum chat_json_status js;

    if (st->done) return false;
    if (st->in_name) {
        for (size_t j = 0; j < c->n_alts; j++) {
            size_t rem;

            if (c->alt_len[j] < st->n_got || memcmp(c->alts[j], c->alts[st->alt], st->n_got) != 0)
                continue;
            rem = c->alt_len[j] - st->n_got;
            if (n < rem) {
                if (memcmp(c->alts[j] + st->n_got, b, n) != 0) continue;
                st->alt = j;
                st->n_got += n;
                return true;
            }
            if (memcmp(c->alts[j] + st->n_got, b, rem) != 0) continue;
            /* The name is chosen; the rest of the bytes start the arguments. */
            st->alt = j;
            st->n_got += rem;
            st->in_name = false;
            chat_json_prefix_init(&st->js);
            b += rem;
            n -= rem;
            break;
        }
        if (st->in_name) return false;
    }
    js = chat_json_prefix_feed(&st->js, b, n);
    if (js == CHAT_JSON_INVALID) return false;
    st->done = js == CHAT_JSON_COMPLETE;
    return true;
}

/* The bytes of token id, or false for control tokens and empty pieces. */
static bool token_bytes(const struct api_constraint *c, tok_id id, char *buf, size_t cap,
                        size_t *len)
{
    if (tokenizer_is_control(c->tok, id) || tokenizer_is_eog(c->tok, id)) return false;
    if (tokenizer_token_bytes(c->tok, id, false, buf, cap, len) < 0) return false;
    return *len > 0 && *len <= cap;
}

/* The scheduler's filter: may id come now, with n_left tokens after it? */
bool api__constraint_allow(void *arg, tok_id id, uint32_t n_left)
{
    const struct api_constraint *c = arg;
    char buf[SLM_LIMIT_TOKEN_BYTES];
    struct cstate st;
    size_t len;

    if (!token_bytes(c, id, buf, sizeof(buf), &len)) return false;
    st = c->st;
    if (!step(c, &st, buf, len)) return false;
    return min_close(c, &st) <= n_left;
}

/* The scheduler reports a generated token; true when the call is complete. */
bool api__constraint_accept(void *arg, tok_id id)
{
    struct api_constraint *c = arg;
    char buf[SLM_LIMIT_TOKEN_BYTES];
    size_t len;

    /* allow() let only valid tokens through; anything else ends the call. */
    if (!token_bytes(c, id, buf, sizeof(buf), &len) || !step(c, &c->st, buf, len)) return true;
    return c->st.done;
}

/* Creates the constraint for a forced call; see api_int.h. */
int api__constraint_new(const struct api *a, const struct json_value *tools,
                        const struct json_value *name, struct api_constraint **out,
                        struct slm_diag *d)
{
    struct api_constraint *c;
    const char *open, *mid, *close;
    bool bare = false;
    size_t n_tools = tools != NULL && tools->type == JSON_ARRAY ? tools->u.arr.n : 0;
    int rc = 0;

    *out = NULL;
    switch (a->tc_fmt) {
    case CHAT_TOOLCALL_MISTRAL:
        if (a->mistral_args) {
            open = "[TOOL_CALLS]";
            mid = "[ARGS]";
            close = "";
            bare = true;
        } else {
            open = "[TOOL_CALLS][{\"name\": \"";
            mid = "\", \"arguments\": ";
            close = "}]";
        }
        break;
    case CHAT_TOOLCALL_LLAMA3:
        open = "{\"name\": \"";
        mid = "\", \"parameters\": ";
        close = "}";
        break;
    default:
        open = "<tool_call>\n{\"name\": \"";
        mid = "\", \"arguments\": ";
        close = "}\n</tool_call>";
        break;
    }
    c = slm_calloc(1, sizeof(*c));
    if (c == NULL) return SLM_ENOMEM;
    c->tok = a->tok;
    slm_buf_init(&c->prefix, 4096 + 8 * CONSTRAIN_NAME_MAX);
    slm_buf_init(&c->suffix, 64);
    c->alts = slm_calloc(n_tools + 1, sizeof(*c->alts));
    c->alt_len = slm_calloc(n_tools + 1, sizeof(*c->alt_len));
    c->off = slm_calloc(n_tools + 1, sizeof(*c->off));
    c->n_tok = slm_calloc(n_tools + 1, sizeof(*c->n_tok));
    if (c->alts == NULL || c->alt_len == NULL || c->off == NULL || c->n_tok == NULL) {
        rc = SLM_ENOMEM;
        goto fail;
    }
    if (name != NULL) {
        rc = add_alt(c, name, bare, mid, d);
    } else {
        for (size_t i = 0; rc == 0 && i < n_tools; i++) {
            const struct json_value *n =
                json_obj_get(json_obj_get(&tools->u.arr.items[i], "function"), "name");

            if (n != NULL && n->type == JSON_STRING) rc = add_alt(c, n, bare, mid, d);
        }
    }
    if (rc == 0 && c->n_alts == 0) rc = slm_diag_set(d, SLM_EINVAL, "no tool name to force");
    for (size_t j = 0; rc == 0 && c->n_alts > 1 && j < c->n_alts; j++)
        rc = split_alt(a, c, j);
    if (rc == 0) rc = slm_buf_append(&c->prefix, open, strlen(open));
    if (rc == 0) rc = slm_buf_append(&c->suffix, close, strlen(close));
    if (rc < 0) goto fail;
    if (c->n_alts == 1) {
        /* One possible function: its name is part of the opening. */
        rc = slm_buf_append(&c->prefix, c->alts[0], c->alt_len[0]);
        if (rc < 0) goto fail;
        chat_json_prefix_init(&c->st.js);
    } else {
        c->st.in_name = true;
    }
    *out = c;
    return 0;
fail:
    api__constraint_free(c);
    return rc == SLM_ELIMIT ? slm_diag_set(d, SLM_EINVAL, "tool names too long") : rc;
}

/* Returns borrowed: the opening text appended to the prompt. */
const char *api__constraint_prefix(const struct api_constraint *c, size_t *len)
{
    *len = c->prefix.len;
    return slm_buf_str(&c->prefix);
}

/* Returns borrowed: the closing text added once the call is complete. */
const char *api__constraint_suffix(const struct api_constraint *c, size_t *len)
{
    *len = c->suffix.len;
    return slm_buf_str(&c->suffix);
}

/* Fewest tokens that complete the call from the start. */
size_t api__constraint_min_tokens(const struct api_constraint *c)
{
    return min_close(c, &c->st);
}

/* True once the arguments object closed. */
bool api__constraint_done(const struct api_constraint *c)
{
    return c->st.done;
}
