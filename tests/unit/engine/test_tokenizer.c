/*
 * test_tokenizer.c - tokenizer loading (G13), encoding (T01, T04, T05, T06),
 * pre-tokenizers, SentencePiece, streaming detokenization and the trainer.
 *
 * Vocabularies are written by hand with the GGUF writer and read back with
 * gguf_open, so every case runs the real loader. Expected ids are derived by
 * hand from the merge rules; the real-vocabulary comparisons are in
 * tests/integration/test_tokenizer_reference.sh.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/str.h"
#include "core/alloc.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_int.h"
#include "harness/t.h"

/* ---- building vocabularies ---- */

/* GPT-2 byte mapping of raw bytes into out (NUL-terminated). */
static void map_bytes(const char *raw, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += slm_utf8_encode(unicode__byte_to_cp((uint8_t)raw[i]), out + o);
    out[o] = '\0';
}

enum defect {
    DEF_NONE,
    DEF_TYPE_RANGE,      /* token_type[300] = 9 */
    DEF_SCORES_UINT8,    /* scores stored as UINT8 */
    DEF_MERGE_UNKNOWN,   /* a merge names a token that does not exist */
    DEF_MERGE_NO_SPACE,  /* a merge without a separator */
    DEF_BYTE_TOKEN,      /* a BYTE token "<0xZZ>" */
    DEF_BYTE_TOKEN_LONG, /* a BYTE token "<0x100>" */
    DEF_BYTE_TOKEN_NEG,  /* a BYTE token "<0x-1>" */
    DEF_BOS_RANGE,       /* bos id = n_vocab */
    DEF_TYPE_COUNT,      /* token_type has one entry too few */
    DEF_MODEL,           /* tokenizer.ggml.model = "bert" */
    DEF_PRE,             /* tokenizer.ggml.pre = "klingon" */
    DEF_NO_TOKENS,       /* no tokenizer.ggml.tokens */
    DEF_ID_STRING,       /* eos id stored as a string */
};

/* Merges of the tiny BPE vocabulary, in rank order (raw bytes). */
static const char *const tiny_merges[][2] = {
    { "l", "l" }, { "h", "e" },   { "he", "ll" },  { "hell", "o" },  { " ", "w" },
    { "o", "r" }, { " w", "or" }, { " wor", "l" }, { " worl", "d" }, { "a", "a" },
};
#define N_TINY_MERGES (sizeof(tiny_merges) / sizeof(tiny_merges[0]))
/* ids: 0..255 bytes (id = byte), 256.. merges in order, then the specials. */
#define ID_LL         256
#define ID_HE         257
#define ID_HELL       258
#define ID_HELLO      259
#define ID_SP_W       260
#define ID_OR         261
#define ID_WORLD      264
#define ID_AA         265
#define ID_BOS        266
#define ID_EOT        267
#define ID_TOOL       268 /* user-defined "<tool>" */
#define N_TINY        (ID_TOOL + 1)

static const char *tmp_path(const char *name)
{
    static char path[512];
    (void)snprintf(path, sizeof(path), "%s/%s", t_tmpdir(), name);
    return path;
}

/* Writes a byte-level BPE vocabulary (pre llama-bpe) with one defect. */
static const char *write_tiny_bpe(enum defect def)
{
    static char text[N_TINY][64];
    const char *strs[N_TINY];
    int32_t types[N_TINY];
    float scores[N_TINY];
    uint8_t scores8[N_TINY];
    char merges[N_TINY_MERGES + 1][64];
    const char *mstrs[N_TINY_MERGES + 1];
    size_t n_merges = N_TINY_MERGES;
    struct gguf_writer *w = gguf_writer_new();
    struct slm_diag d;
    const char *path = tmp_path("tiny.gguf");

    ASSERT_NOT_NULL(w);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        map_bytes(&c, 1, text[b]);
        types[b] = 1;
    }
    for (size_t m = 0; m < N_TINY_MERGES; m++) {
        char raw[32], a[32], bb[32];
        (void)snprintf(raw, sizeof(raw), "%s%s", tiny_merges[m][0], tiny_merges[m][1]);
        map_bytes(raw, strlen(raw), text[256 + m]);
        types[256 + m] = 1;
        map_bytes(tiny_merges[m][0], strlen(tiny_merges[m][0]), a);
        map_bytes(tiny_merges[m][1], strlen(tiny_merges[m][1]), bb);
        (void)snprintf(merges[m], sizeof(merges[m]), "%s %s", a, bb);
    }
    (void)snprintf(text[ID_BOS], sizeof(text[0]), "<|begin_of_text|>");
    (void)snprintf(text[ID_EOT], sizeof(text[0]), "<|eot_id|>");
    (void)snprintf(text[ID_TOOL], sizeof(text[0]), "<tool>");
    types[ID_BOS] = types[ID_EOT] = 3;
    types[ID_TOOL] = 4;
    for (size_t i = 0; i < N_TINY; i++) {
        strs[i] = text[i];
        scores[i] = 0.0f;
        scores8[i] = 0;
    }
    for (size_t m = 0; m < N_TINY_MERGES; m++)
        mstrs[m] = merges[m];

    if (def == DEF_TYPE_RANGE) types[260] = 9;
    if (def == DEF_MERGE_UNKNOWN) (void)snprintf(merges[3], sizeof(merges[3]), "hell zz");
    if (def == DEF_MERGE_NO_SPACE) (void)snprintf(merges[2], sizeof(merges[2]), "hell");
    if (def == DEF_BYTE_TOKEN || def == DEF_BYTE_TOKEN_LONG || def == DEF_BYTE_TOKEN_NEG) {
        (void)snprintf(text[ID_AA], sizeof(text[0]), "%s",
                       def == DEF_BYTE_TOKEN        ? "<0xZZ>"
                       : def == DEF_BYTE_TOKEN_LONG ? "<0x100>"
                                                    : "<0x-1>");
        types[ID_AA] = 6;
        n_merges--; /* the last merge made "aa" */
    }
    const char *model = def == DEF_MODEL ? "bert" : "gpt2";
    const char *pre = def == DEF_PRE ? "klingon" : "llama-bpe";
    ASSERT_OK(gguf_writer_set_str(w, "general.architecture", "llama", 5));
    ASSERT_OK(gguf_writer_set_str(w, "tokenizer.ggml.model", model, strlen(model)));
    ASSERT_OK(gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, strlen(pre)));
    if (def != DEF_NO_TOKENS)
        ASSERT_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, NULL, N_TINY));
    ASSERT_OK(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
                                  def == DEF_TYPE_COUNT ? N_TINY - 1 : N_TINY));
    if (def == DEF_SCORES_UINT8)
        ASSERT_OK(
            gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_UINT8, scores8, N_TINY));
    else
        ASSERT_OK(
            gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, N_TINY));
    ASSERT_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", mstrs, NULL, n_merges));
    ASSERT_OK(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id",
                                  def == DEF_BOS_RANGE ? N_TINY : ID_BOS));
    if (def == DEF_ID_STRING)
        ASSERT_OK(gguf_writer_set_str(w, "tokenizer.ggml.eos_token_id", "2", 1));
    else
        ASSERT_OK(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", ID_EOT));
    ASSERT_OK(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true));
    slm_diag_clear(&d);
    ASSERT_OK(gguf_writer_write(w, path, &d));
    gguf_writer_free(w);
    return path;
}

struct loaded {
    struct gguf_file *f;
    struct tokenizer *t;
};

static int load_path(const char *path, struct loaded *l, struct slm_diag *d)
{
    int rc;

    l->f = NULL;
    l->t = NULL;
    slm_diag_clear(d);
    if ((rc = gguf_open(path, &l->f, d)) < 0) return rc;
    return tokenizer_load(l->f, &l->t, d);
}

static void unload(struct loaded *l)
{
    tokenizer_free(l->t);
    gguf_close(l->f);
}

static struct loaded load_tiny(void)
{
    struct loaded l;
    struct slm_diag d;
    int rc = load_path(write_tiny_bpe(DEF_NONE), &l, &d);
    if (rc < 0) t_fail(__FILE__, __LINE__, "load: %s", d.msg);
    return l;
}

static size_t enc(const struct tokenizer *t, const char *s, size_t len, unsigned flags, tok_id *out,
                  size_t cap)
{
    size_t n = 0;
    ASSERT_OK(tokenizer_encode(t, s, len, flags, out, cap, &n));
    return n;
}

/* Concatenates the bytes of ids (render_special as given). */
static size_t detok(const struct tokenizer *t, const tok_id *ids, size_t n, bool special, char *out,
                    size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        ASSERT_OK(tokenizer_token_bytes(t, ids[i], special, out + o, cap - o, &len));
        ASSERT(len <= cap - o);
        o += len;
    }
    return o;
}

/* ---- byte-level BPE ---- */

TEST(tokenizer_bpe_merges_by_rank)
{
    struct loaded l = load_tiny();
    tok_id ids[64];
    size_t n;

    ASSERT_EQ_SIZE(tokenizer_n_vocab(l.t), N_TINY);
    ASSERT_EQ_INT(tokenizer_bos(l.t), ID_BOS);
    /* "hello" is not one token by ignore_merges (it is), " world" merges fully. */
    n = enc(l.t, "hello world", 11, 0, ids, 64);
    ASSERT_EQ_SIZE(n, 2);
    ASSERT_EQ_INT(ids[0], ID_HELLO);
    ASSERT_EQ_INT(ids[1], ID_WORLD);
    /* "hellx": he+ll -> hell (x stays a byte). */
    n = enc(l.t, "hellx", 5, 0, ids, 64);
    ASSERT_EQ_SIZE(n, 2);
    ASSERT_EQ_INT(ids[0], ID_HELL);
    ASSERT_EQ_INT(ids[1], 'x');
    /* "aaaaa": leftmost pairs merge first -> aa aa a. */
    n = enc(l.t, "aaaaa", 5, 0, ids, 64);
    ASSERT_EQ_SIZE(n, 3);
    ASSERT_EQ_INT(ids[0], ID_AA);
    ASSERT_EQ_INT(ids[1], ID_AA);
    ASSERT_EQ_INT(ids[2], 'a');
    /* BOS from add_bos_token with TOKENIZE_ADD_SPECIAL only. */
    n = enc(l.t, "hello", 5, TOKENIZE_ADD_SPECIAL, ids, 64);
    ASSERT_EQ_SIZE(n, 2);
    ASSERT_EQ_INT(ids[0], ID_BOS);
    ASSERT_EQ_INT(ids[1], ID_HELLO);
    /* Empty text. */
    ASSERT_EQ_SIZE(enc(l.t, "", 0, 0, ids, 64), 0);
    unload(&l);
}

TEST(tokenizer_bpe_round_trip)
{
    struct loaded l = load_tiny();
    static const char *const texts[] = {
        "hello world, it's 2024!",
        "  leading and trailing  ",
        "tabs\tand\nnewlines\r\n",
        "ünïcödé 中文 😀🦙",
        "a",
        "\x01\x02\x7f",
    };
    tok_id ids[256];
    char out[512];

    for (size_t i = 0; i < SLM_ARRAY_LEN(texts); i++) {
        size_t len = strlen(texts[i]);
        size_t n = enc(l.t, texts[i], len, 0, ids, 256);
        size_t m = detok(l.t, ids, n, false, out, sizeof(out));
        ASSERT_EQ_SIZE(m, len);
        ASSERT_EQ_MEM(out, texts[i], len);
    }
    unload(&l);
}

/* T01: invalid UTF-8 is encoded byte by byte and decodes back unchanged. */
TEST(tokenizer_invalid_utf8_t01)
{
    struct loaded l = load_tiny();
    static const char *const bad[] = {
        "\xff",       "\xc0\xaf",      "\xed\xa0\x80",     "\xf0\x9f",
        "ab\xe2\x82", "\x80\x80\x80x", "\xf4\x90\x80\x80", "hel\xfflo",
    };
    tok_id ids[64];
    char out[64];

    for (size_t i = 0; i < SLM_ARRAY_LEN(bad); i++) {
        size_t len = strlen(bad[i]);
        size_t n = enc(l.t, bad[i], len, TOKENIZE_PARSE_SPECIAL, ids, 64);
        ASSERT(n >= 1);
        size_t m = detok(l.t, ids, n, false, out, sizeof(out));
        ASSERT_EQ_SIZE(m, len);
        ASSERT_EQ_MEM(out, bad[i], len);
    }
    unload(&l);
}

/* T04: cap 0, 1, exact and exact-1 never write past cap and report the count. */
TEST(tokenizer_cap_contract_t04)
{
    struct loaded l = load_tiny();
    const char *text = "hello world hello xyz";
    tok_id ref[64], buf[64];
    size_t need = enc(l.t, text, strlen(text), TOKENIZE_ADD_SPECIAL, ref, 64);
    size_t caps[] = { 0, 1, need - 1, need };

    ASSERT(need >= 4);
    for (size_t k = 0; k < SLM_ARRAY_LEN(caps); k++) {
        size_t n = 12345;
        for (size_t i = 0; i < 64; i++)
            buf[i] = -77;
        ASSERT_OK(tokenizer_encode(l.t, text, strlen(text), TOKENIZE_ADD_SPECIAL,
                                   caps[k] ? buf : NULL, caps[k], &n));
        ASSERT_EQ_SIZE(n, need);
        for (size_t i = 0; i < 64; i++) {
            if (i < caps[k])
                ASSERT_EQ_INT(buf[i], ref[i]);
            else
                ASSERT_EQ_INT(buf[i], -77);
        }
    }
    /* Misuse: out NULL with a capacity, NULL count. */
    size_t n;
    ASSERT_ERR(tokenizer_encode(l.t, text, 3, 0, NULL, 5, &n), SLM_EINVAL);
    ASSERT_ERR(tokenizer_encode(l.t, text, 3, 0, buf, 5, NULL), SLM_EINVAL);
    unload(&l);
}

/* T06: control-token text is text unless TOKENIZE_PARSE_SPECIAL. */
TEST(tokenizer_special_tokens_t06)
{
    struct loaded l = load_tiny();
    const char *text = "hello<|eot_id|>world<|begin_of_text|><tool>";
    tok_id ids[128];
    char out[256];
    size_t n;

    n = enc(l.t, text, strlen(text), 0, ids, 128);
    for (size_t i = 0; i < n; i++)
        ASSERT(!tokenizer_is_control(l.t, ids[i]));
    /* User-defined tokens are always split out (llama.cpp, Hugging Face). */
    ASSERT_EQ_INT(ids[n - 1], ID_TOOL);
    size_t m = detok(l.t, ids, n, false, out, sizeof(out));
    ASSERT_EQ_SIZE(m, strlen(text));
    ASSERT_EQ_MEM(out, text, m);

    n = enc(l.t, text, strlen(text), TOKENIZE_PARSE_SPECIAL, ids, 128);
    ASSERT_EQ_SIZE(n, 8); /* hello, eot, w or l d ("world" is not " world"), bos, tool */
    ASSERT_EQ_INT(ids[0], ID_HELLO);
    ASSERT_EQ_INT(ids[1], ID_EOT);
    ASSERT_EQ_INT(ids[n - 2], ID_BOS);
    ASSERT_EQ_INT(ids[n - 1], ID_TOOL);
    ASSERT(tokenizer_is_control(l.t, ID_EOT));
    ASSERT(tokenizer_is_eog(l.t, ID_EOT));
    ASSERT(!tokenizer_is_eog(l.t, ID_HELLO));
    /* Control tokens render only with render_special. */
    ASSERT_EQ_SIZE(detok(l.t, &ids[1], 1, false, out, sizeof(out)), 0);
    ASSERT_EQ_SIZE(detok(l.t, &ids[1], 1, true, out, sizeof(out)), 10);
    ASSERT_EQ_MEM(out, "<|eot_id|>", 10);
    /* A truncated look-alike stays text. */
    n = enc(l.t, "<|eot_id|", 9, TOKENIZE_PARSE_SPECIAL, ids, 128);
    for (size_t i = 0; i < n; i++)
        ASSERT(!tokenizer_is_control(l.t, ids[i]));
    ASSERT_EQ_INT(tokenizer_find(l.t, "<|eot_id|>", 10), ID_EOT);
    ASSERT_EQ_INT(tokenizer_find(l.t, "nope", 4), TOK_NONE);
    unload(&l);
}

/* ---- G13: malformed vocabularies ---- */

static void expect_load_error(enum defect def, int code, const char *needle1, const char *needle2)
{
    struct loaded l;
    struct slm_diag d;
    int rc = load_path(write_tiny_bpe(def), &l, &d);

    if (rc != code)
        t_fail(__FILE__, __LINE__, "defect %d: expected %s, got %s (%s)", (int)def,
               slm_strerror(code), slm_strerror(rc), d.msg);
    if (strstr(d.msg, needle1) == NULL || (needle2 != NULL && strstr(d.msg, needle2) == NULL))
        t_fail(__FILE__, __LINE__, "defect %d: message '%s' lacks '%s'", (int)def, d.msg, needle1);
    ASSERT_NULL(l.t);
    unload(&l);
}

TEST(tokenizer_malformed_vocab_g13)
{
    expect_load_error(DEF_TYPE_RANGE, SLM_EFORMAT, "tokenizer.ggml.token_type[260]", "9");
    expect_load_error(DEF_SCORES_UINT8, SLM_EFORMAT, "tokenizer.ggml.scores", NULL);
    expect_load_error(DEF_MERGE_UNKNOWN, SLM_EFORMAT, "tokenizer.ggml.merges[3]", "zz");
    expect_load_error(DEF_MERGE_NO_SPACE, SLM_EFORMAT, "tokenizer.ggml.merges[2]", NULL);
    expect_load_error(DEF_BYTE_TOKEN, SLM_EFORMAT, "tokenizer.ggml.tokens[265]", "<0xZZ>");
    expect_load_error(DEF_BYTE_TOKEN_LONG, SLM_EFORMAT, "tokenizer.ggml.tokens[265]", "<0x100>");
    expect_load_error(DEF_BYTE_TOKEN_NEG, SLM_EFORMAT, "tokenizer.ggml.tokens[265]", "<0x-1>");
    expect_load_error(DEF_BOS_RANGE, SLM_EFORMAT, "tokenizer.ggml.bos_token_id", "269");
    expect_load_error(DEF_TYPE_COUNT, SLM_EFORMAT, "tokenizer.ggml.token_type", "268");
    expect_load_error(DEF_MODEL, SLM_EUNSUPPORTED, "tokenizer.ggml.model", "bert");
    expect_load_error(DEF_PRE, SLM_EUNSUPPORTED, "tokenizer.ggml.pre", "klingon");
    expect_load_error(DEF_NO_TOKENS, SLM_EFORMAT, "tokenizer.ggml.tokens", NULL);
    expect_load_error(DEF_ID_STRING, SLM_EFORMAT, "tokenizer.ggml.eos_token_id", NULL);
}

/* A file without any tokenizer keys is refused with a clear message. */
TEST(tokenizer_no_vocabulary)
{
    struct gguf_writer *w = gguf_writer_new();
    const char *path = tmp_path("empty.gguf");
    struct loaded l;
    struct slm_diag d;

    ASSERT_OK(gguf_writer_set_str(w, "general.architecture", "llama", 5));
    ASSERT_OK(gguf_writer_write(w, path, &d));
    gguf_writer_free(w);
    ASSERT_ERR(load_path(path, &l, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "tokenizer.ggml.model") != NULL);
    unload(&l);
}

/* Every allocation of the loader may fail: SLM_ENOMEM, never a crash. */
TEST(tokenizer_load_alloc_failures)
{
    const char *path = write_tiny_bpe(DEF_NONE);
    struct gguf_file *f = NULL;
    struct slm_diag d;
    size_t failures = 0;

    ASSERT_OK(gguf_open(path, &f, &d));
    for (uint64_t k = 1; k < 200; k++) {
        struct tokenizer *t = NULL;
        slm_alloc_fail_at(k);
        int rc = tokenizer_load(f, &t, &d);
        slm_alloc_fail_at(0);
        if (rc == 0) {
            tokenizer_free(t);
            break;
        }
        ASSERT_ERR(rc, SLM_ENOMEM);
        ASSERT_NULL(t);
        failures++;
    }
    ASSERT(failures > 5);
    gguf_close(f);
}

/* ---- pre-tokenizers ---- */

struct words {
    char w[64][64];
    size_t n;
};

static int collect(void *ctx, const uint8_t *s, size_t start, size_t end)
{
    struct words *ws = ctx;
    ASSERT(ws->n < 64 && end - start < 64);
    memcpy(ws->w[ws->n], s + start, end - start);
    ws->w[ws->n][end - start] = '\0';
    ws->n++;
    return 0;
}

static void expect_split(enum tok_pre pre, const char *text, const char *const *want, size_t n)
{
    struct words ws;

    memset(&ws, 0, sizeof(ws));
    ASSERT_OK(tok__pre_split(pre, (const uint8_t *)text, strlen(text), collect, &ws));
    for (size_t i = 0; i < n && i < ws.n; i++)
        if (strcmp(ws.w[i], want[i]) != 0)
            t_fail(__FILE__, __LINE__, "'%s' word %zu: '%s' != '%s'", text, i, ws.w[i], want[i]);
    ASSERT_EQ_SIZE(ws.n, n);
}

#define SPLIT(pre, text, ...)                            \
    do {                                                 \
        static const char *const w_[] = { __VA_ARGS__ }; \
        expect_split(pre, text, w_, SLM_ARRAY_LEN(w_));  \
    } while (0)

TEST(tokenizer_pre_llama3_qwen2)
{
    SPLIT(TOK_PRE_LLAMA3, "Hello world's  123456 !!\n\n x", "Hello", " world", "'s", " ", " ",
          "123", "456", " !!\n\n", " x");
    SPLIT(TOK_PRE_LLAMA3, "IT'S a\tb\r\n  c", "IT", "'S", " a", "\tb", "\r\n", " ", " c");
    SPLIT(TOK_PRE_LLAMA3, "end   ", "end", "   ");
    SPLIT(TOK_PRE_QWEN2, "x=12345;", "x", "=", "1", "2", "3", "4", "5", ";");
    SPLIT(TOK_PRE_LLAMA3, "中文abc", "中文abc");
    SPLIT(TOK_PRE_LLAMA3,
          "a\xff"
          "b",
          "a",
          "\xff"
          "b");
}

TEST(tokenizer_pre_tekken)
{
    SPLIT(TOK_PRE_TEKKEN, "helloWorld", "hello", "World");
    SPLIT(TOK_PRE_TEKKEN, "HTTPServer ABC def", "HTTPServer", " ABC", " def");
    SPLIT(TOK_PRE_TEKKEN, "x//\n123", "x", "//\n", "1", "2", "3");
    SPLIT(TOK_PRE_TEKKEN, "a/b", "a", "/b");
}

TEST(tokenizer_pre_gpt2_starcoder_deepseek)
{
    SPLIT(TOK_PRE_GPT2, "Hi there's  2024!!", "Hi", " there", "'s", " ", " 2024", "!!");
    SPLIT(TOK_PRE_STARCODER, "ab 12", "ab", " ", "1", "2");
    SPLIT(TOK_PRE_DEEPSEEK_CODER, "ab, 12\n中文", "ab", ",", " ", "1", "2", "\n", "中文");
    SPLIT(TOK_PRE_DEFAULT, "a+=1234", "a", "+=", "123", "4");
}

/* ---- T05: no quadratic blow-up ---- */

static struct tokenizer *trained(uint32_t n_vocab, struct bpe_vocab *v)
{
    struct tok_spec sp;
    struct tokenizer *t = NULL;
    struct slm_diag d;
    size_t len;
    const char *corpus = bpe_default_corpus(&len);

    ASSERT_OK(bpe__train(corpus, len, n_vocab, v, &d));
    bpe__vocab_spec(v, &sp);
    ASSERT_OK(tokenizer__build(&sp, &t, &d));
    return t;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(tokenizer_adversarial_inputs_t05)
{
    struct bpe_vocab v;
    struct tokenizer *t = trained(2048, &v);
    size_t n_big = (size_t)1 << 20, n;
    char *big = slm_xmalloc(4 * n_big);
    tok_id *ids = slm_xmalloc(4 * n_big * sizeof(tok_id));
    uint64_t seed = 12345;

    for (int kind = 0; kind < 4; kind++) {
        size_t len = n_big;
        if (kind == 0) {
            memset(big, 'a', len);
        } else if (kind == 1) {
            memset(big, ' ', len);
        } else if (kind == 2) {
            const char *alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_.,;()[]{}<>|";
            for (size_t i = 0; i < len; i++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                big[i] = alpha[(seed >> 33) % strlen(alpha)];
            }
        } else {
            len = 0;
            for (int i = 0; i < 100000; i++) {
                memcpy(big + len, "\xF0\x9F\x98\x80", 4);
                len += 4;
            }
        }
        double t0 = now_s();
        ASSERT_OK(tokenizer_encode(t, big, len, TOKENIZE_PARSE_SPECIAL, ids, 4 * n_big, &n));
        double dt = now_s() - t0;
        ASSERT(n >= 1 && n <= len);
#if !defined(__SANITIZE_ADDRESS__)
        if (dt > 2.0)
            t_fail(__FILE__, __LINE__, "input kind %d: %.2f s for %zu bytes", kind, dt, len);
#else
        (void)dt;
#endif
    }
    slm_free(ids);
    slm_free(big);
    tokenizer_free(t);
    bpe__vocab_fini(&v);
}

/* ---- SentencePiece ---- */

TEST(tokenizer_spm_basics)
{
    /* <unk> <s> </s>, 256 byte tokens, then pieces with scores. */
    static const char *const pieces[] = { "\xE2\x96\x81",  "h",  "e",  "l",    "o",
                                          "\xE2\x96\x81h", "ll", "he", "hell", "\xE2\x96\x81hell" };
    static const float piece_scores[] = { -1, -1, -1, -1, -1, -3, -2, -4, -5, -6 };
    size_t n_vocab = 3 + 256 + SLM_ARRAY_LEN(pieces);
    static char text[3 + 256 + 16][16];
    const char *strs[3 + 256 + 16];
    int32_t types[3 + 256 + 16];
    float scores[3 + 256 + 16];
    struct gguf_writer *w = gguf_writer_new();
    struct slm_diag d;
    struct loaded l;
    tok_id ids[32];
    char out[64];

    (void)snprintf(text[0], 16, "<unk>");
    (void)snprintf(text[1], 16, "<s>");
    (void)snprintf(text[2], 16, "</s>");
    types[0] = 2;
    types[1] = types[2] = 3;
    for (int b = 0; b < 256; b++) {
        (void)snprintf(text[3 + b], 16, "<0x%02X>", b);
        types[3 + b] = 6;
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(pieces); i++) {
        (void)snprintf(text[259 + i], 16, "%s", pieces[i]);
        types[259 + i] = 1;
    }
    for (size_t i = 0; i < n_vocab; i++) {
        strs[i] = text[i];
        scores[i] = i >= 259 ? piece_scores[i - 259] : 0.0f;
    }
    ASSERT_OK(gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", 5));
    ASSERT_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, NULL, n_vocab));
    ASSERT_OK(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n_vocab));
    ASSERT_OK(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n_vocab));
    ASSERT_OK(gguf_writer_write(w, tmp_path("spm.gguf"), &d));
    gguf_writer_free(w);
    if (load_path(tmp_path("spm.gguf"), &l, &d) < 0) t_fail(__FILE__, __LINE__, "load: %s", d.msg);

    /* " hello": best scores first: ll(-2), ▁h(-3), then ▁h+e? no; "he" needs h free. */
    size_t n = enc(l.t, "hello", 5, TOKENIZE_ADD_SPECIAL, ids, 32);
    /* ▁ h e l l o -> ▁ h e [ll] o -> [▁h] e [ll] o -> no ▁he: stays. */
    ASSERT_EQ_SIZE(n, 5);
    ASSERT_EQ_INT(ids[0], 1);
    ASSERT_EQ_INT(ids[1], 259 + 5); /* ▁h */
    ASSERT_EQ_INT(ids[2], 259 + 2); /* e */
    ASSERT_EQ_INT(ids[3], 259 + 6); /* ll */
    ASSERT_EQ_INT(ids[4], 259 + 4); /* o */
    /* Byte fallback for characters not in the vocabulary, and invalid UTF-8. */
    n = enc(l.t, "\xC3\xBC\xFF", 3, 0, ids, 32);
    ASSERT_EQ_SIZE(n, 4);
    ASSERT_EQ_INT(ids[0], 259 + 0); /* ▁ */
    ASSERT_EQ_INT(ids[1], 3 + 0xC3);
    ASSERT_EQ_INT(ids[2], 3 + 0xBC);
    ASSERT_EQ_INT(ids[3], 3 + 0xFF);
    /* Stream: the leading space of the first piece is dropped. */
    struct tok_stream st;
    struct slm_buf b;
    slm_buf_init(&b, 1024);
    n = enc(l.t, "hello \xC3\xBC", 8, 0, ids, 32);
    tok_stream_init(&st, l.t, false);
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(tok_stream_push(&st, ids[i], &b));
    ASSERT_OK(tok_stream_flush(&st, &b));
    ASSERT_EQ_STR(slm_buf_str(&b), "hello \xC3\xBC");
    (void)out;
    slm_buf_fini(&b);
    unload(&l);
}

/* ---- streaming ---- */

TEST(tokenizer_stream_utf8)
{
    struct loaded l = load_tiny();
    struct tok_stream st;
    struct slm_buf b;
    const char emoji[] = "\xF0\x9F\xA6\x99"; /* U+1F999 as four byte tokens */

    slm_buf_init(&b, 1024);
    tok_stream_init(&st, l.t, false);
    ASSERT_OK(tok_stream_push(&st, ID_HELLO, &b));
    ASSERT_EQ_STR(slm_buf_str(&b), "hello");
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(tok_stream_push(&st, (uint8_t)emoji[i], &b));
        ASSERT_EQ_STR(slm_buf_str(&b), "hello"); /* nothing until complete */
    }
    ASSERT_OK(tok_stream_push(&st, (uint8_t)emoji[3], &b));
    ASSERT_EQ_STR(slm_buf_str(&b), "hello\xF0\x9F\xA6\x99");
    /* An incomplete tail becomes U+FFFD on flush. */
    ASSERT_OK(tok_stream_push(&st, 0xE2, &b));
    ASSERT_OK(tok_stream_push(&st, 0x82, &b));
    ASSERT_OK(tok_stream_flush(&st, &b));
    ASSERT_EQ_STR(slm_buf_str(&b), "hello\xF0\x9F\xA6\x99\xEF\xBF\xBD");
    /* A stray continuation byte or a broken sequence becomes U+FFFD at once. */
    slm_buf_reset(&b);
    ASSERT_OK(tok_stream_push(&st, 0x80, &b));
    ASSERT_OK(tok_stream_push(&st, 0xF0, &b));
    ASSERT_OK(tok_stream_push(&st, 'x', &b));
    ASSERT_EQ_STR(slm_buf_str(&b), "\xEF\xBF\xBD\xEF\xBF\xBDx");
    /* Control tokens render only when asked. */
    ASSERT_OK(tok_stream_push(&st, ID_EOT, &b));
    ASSERT_EQ_STR(slm_buf_str(&b), "\xEF\xBF\xBD\xEF\xBF\xBDx");
    ASSERT_ERR(tok_stream_push(&st, 100000, &b), SLM_ERANGE);
    slm_buf_fini(&b);
    unload(&l);
}

/* ---- the trainer ---- */

TEST(tokenizer_trainer_deterministic)
{
    struct bpe_vocab a, b;
    size_t len;
    const char *corpus = bpe_default_corpus(&len);
    struct slm_diag d;

    ASSERT(len > 20000);
    ASSERT_OK(bpe__train(corpus, len, 3000, &a, &d));
    ASSERT_OK(bpe__train(corpus, len, 3000, &b, &d));
    ASSERT_EQ_SIZE(a.n_vocab, 3000);
    ASSERT_EQ_SIZE(a.n_merges, b.n_merges);
    for (size_t i = 0; i < a.n_vocab; i++) {
        ASSERT_EQ_SIZE(a.text_len[i], b.text_len[i]);
        ASSERT_EQ_MEM(a.text[i], b.text[i], a.text_len[i]);
        ASSERT_EQ_INT(a.type[i], b.type[i]);
    }
    for (size_t i = 0; i < a.n_merges; i++)
        ASSERT_EQ_STR(a.merge[i], b.merge[i]);
    ASSERT_EQ_SIZE(a.n_filler, 0);
    bpe__vocab_fini(&a);
    bpe__vocab_fini(&b);
    /* Too small. */
    ASSERT_ERR(bpe__train(corpus, len, 100, &a, &d), SLM_EINVAL);
}

TEST(tokenizer_trainer_sizes_and_gguf)
{
    static const uint32_t sizes[] = { 264, 1000, 151936 };
    size_t len;
    const char *corpus = bpe_default_corpus(&len);

    for (size_t k = 0; k < SLM_ARRAY_LEN(sizes); k++) {
        struct gguf_writer *w = gguf_writer_new();
        struct slm_diag d;
        struct loaded l;
        const char *path = tmp_path("trained.gguf");
        double t0 = now_s();

        ASSERT_OK(gguf_writer_set_str(w, "general.architecture", "llama", 5));
        ASSERT_OK(bpe_train_gguf(w, corpus, len, sizes[k], &d));
        ASSERT_OK(gguf_writer_write(w, path, &d));
        gguf_writer_free(w);
#if !defined(__SANITIZE_ADDRESS__)
        ASSERT(now_s() - t0 < 20.0);
#else
        (void)t0;
#endif
        if (load_path(path, &l, &d) < 0) t_fail(__FILE__, __LINE__, "load %u: %s", sizes[k], d.msg);
        ASSERT_EQ_SIZE(tokenizer_n_vocab(l.t), sizes[k]);
        ASSERT_EQ_INT(tokenizer_bos(l.t), (tok_id)sizes[k] - 8);
        ASSERT(tokenizer_is_eog(l.t, tokenizer_find(l.t, "<|eot_id|>", 10)));
        ASSERT(tokenizer_find(l.t, "<|fim_middle|>", 14) != TOK_NONE);
        /* The corpus round-trips, and with a real vocabulary it compresses. */
        tok_id *ids = slm_xmalloc((len + 4) * sizeof(tok_id));
        char *out = slm_xmalloc(len + 1);
        size_t n;
        ASSERT_OK(tokenizer_encode(l.t, corpus, len, 0, ids, len + 4, &n));
        size_t m = detok(l.t, ids, n, false, out, len + 1);
        ASSERT_EQ_SIZE(m, len);
        ASSERT_EQ_MEM(out, corpus, len);
        if (sizes[k] >= 1000) ASSERT(n < len / 2);
        slm_free(ids);
        slm_free(out);
        unload(&l);
    }
}
