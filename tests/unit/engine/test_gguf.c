/*
 * test_gguf.c - the GGUF reader and writer (RELIABILITY.md G01-G11, G16, G17).
 *
 * Two independent sources of files: our writer (round trips, truncation,
 * allocation torture) and a byte builder in this file (struct gb) that writes
 * the format field by field from the spec, so that every malformed case is one
 * named mutation of an otherwise valid file, and so that the writer's bytes
 * can be compared with a layout computed here rather than by the writer.
 *
 * In-memory images are opened from exactly-sized heap copies, so ASan catches
 * any read past the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/rand.h"
#include "core/str.h"
#include "engine/gguf.h"
#include "harness/t.h"

/*
 * The harness ends each test with _exit(), which skips LeakSanitizer's exit
 * check, so the tests that must prove "no leak" ask for a check themselves.
 */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() ASSERT(__lsan_do_recoverable_leak_check() == 0)
#else
#define LEAK_CHECK() ((void)0)
#endif

/* ------------------------------------------------------------------ */
/* Byte builder: GGUF written by hand from the spec                   */
/* ------------------------------------------------------------------ */

struct gb {
    uint8_t *p;
    size_t len, cap;
};

static void gb_put(struct gb *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap < 256 ? 256 : b->cap;

        while (cap < b->len + n)
            cap *= 2;
        b->p = slm_xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n > 0) memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void gb_u32(struct gb *b, uint32_t v)
{
    gb_put(b, &v, 4);
}

static void gb_u64(struct gb *b, uint64_t v)
{
    gb_put(b, &v, 8);
}

static void gb_strn(struct gb *b, const char *s, size_t n)
{
    gb_u64(b, n);
    gb_put(b, s, n);
}

static void gb_str(struct gb *b, const char *s)
{
    gb_strn(b, s, strlen(s));
}

static void gb_zeros(struct gb *b, size_t n)
{
    static const uint8_t zeros[4096];

    while (n > 0) {
        size_t k = n < sizeof(zeros) ? n : sizeof(zeros);

        gb_put(b, zeros, k);
        n -= k;
    }
}

static void gb_pad(struct gb *b, size_t align)
{
    gb_zeros(b, (align - b->len % align) % align);
}

static void gb_header(struct gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    gb_put(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

static void gb_kv_u32(struct gb *b, const char *key, uint32_t v)
{
    gb_str(b, key);
    gb_u32(b, GGUF_TYPE_UINT32);
    gb_u32(b, v);
}

static void gb_kv_str(struct gb *b, const char *key, const char *s)
{
    gb_str(b, key);
    gb_u32(b, GGUF_TYPE_STRING);
    gb_str(b, s);
}

static void gb_tensor(struct gb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset)
{
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t k = 0; k < n_dims; k++)
        gb_u64(b, ne[k]);
    gb_u32(b, type);
    gb_u64(b, offset);
}

static void gb_free(struct gb *b)
{
    slm_free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Opens b->p[0..len) from an exactly-sized copy (ASan sees over-reads). */
static int gb_open_n(const struct gb *b, size_t len, uint8_t **copy, struct gguf_file **f,
                     struct slm_diag *d)
{
    *copy = slm_xmalloc(len == 0 ? 1 : len);
    memcpy(*copy, b->p, len);
    slm_diag_clear(d);
    return gguf_open_memory(*copy, len, "t.gguf", f, d);
}

/* Fails unless the message is one line starting with the file name and containing needle. */
static void check_msg(const char *file, int line, const struct slm_diag *d, const char *name,
                      const char *needle)
{
    size_t n = strlen(name);

    if (strncmp(d->msg, name, n) != 0 || d->msg[n] != ':')
        t_fail(file, line, "message does not start with '%s:': %s", name, d->msg);
    if (strchr(d->msg, '\n') != NULL) t_fail(file, line, "message has a newline: %s", d->msg);
    if (needle != NULL && strstr(d->msg, needle) == NULL)
        t_fail(file, line, "message lacks '%s': %s", needle, d->msg);
}

static void expect_fail(const char *file, int line, const struct gb *b, int code,
                        const char *needle)
{
    struct gguf_file *f = NULL;
    struct slm_diag d;
    uint8_t *copy;
    int rc = gb_open_n(b, b->len, &copy, &f, &d);

    if (rc != code)
        t_fail(file, line, "expected %s, got %s (%d): %s", slm_strerror(code), slm_strerror(rc), rc,
               d.msg);
    if (f != NULL) t_fail(file, line, "file object returned on failure");
    check_msg(file, line, &d, "t.gguf", needle);
    slm_free(copy);
}

#define EXPECT_FAIL(b, code, needle) expect_fail(__FILE__, __LINE__, (b), (code), (needle))

/* Opens b and asserts success; the caller closes f and frees *copy. */
static struct gguf_file *expect_ok(const char *file, int line, const struct gb *b, uint8_t **copy)
{
    struct gguf_file *f = NULL;
    struct slm_diag d;
    int rc = gb_open_n(b, b->len, copy, &f, &d);

    if (rc != 0) t_fail(file, line, "open failed: %s (%d): %s", slm_strerror(rc), rc, d.msg);
    return f;
}

#define EXPECT_OK(b, copy) expect_ok(__FILE__, __LINE__, (b), (copy))

/* A valid file with one kv and one tensor of type/shape at offset; data sized to fit. */
static void gb_one_tensor(struct gb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                          uint32_t type, uint64_t offset, size_t data_size)
{
    gb_header(b, 3, 1, 1);
    gb_kv_str(b, "general.architecture", "llama");
    gb_tensor(b, name, n_dims, ne, type, offset);
    gb_pad(b, 32);
    gb_zeros(b, data_size);
}

/* ------------------------------------------------------------------ */
/* A realistic valid model from our writer                            */
/* ------------------------------------------------------------------ */

#define N_VOCAB 300

struct model_data {
    float embd[64 * 16];    /* f32 [64, 16] */
    uint8_t q8[34 * 2 * 8]; /* q8_0 [64, 8] */
    uint16_t f16[100];      /* f16 [100] */
    float big[256 * 64];    /* f32 [256, 64]: 64 KiB of data, 16 truncation points */
};

static char vocab_buf[N_VOCAB][16];
static const char *vocab[N_VOCAB];

static struct gguf_writer *make_writer(struct model_data *md)
{
    struct gguf_writer *w = gguf_writer_new();
    float scores[N_VOCAB];
    int32_t types[N_VOCAB];
    char tmpl[1200];
    uint64_t ne2[2];

    ASSERT_NOT_NULL(w);
    for (int i = 0; i < N_VOCAB; i++) {
        snprintf(vocab_buf[i], sizeof(vocab_buf[i]), "tok%d", i);
        vocab[i] = vocab_buf[i];
        scores[i] = -(float)i * 0.5f;
        types[i] = i < 3 ? 3 : 1;
    }
    for (size_t i = 0; i < sizeof(tmpl) - 1; i++)
        tmpl[i] = (i % 40 == 39) ? '\n' : (char)('a' + i % 26);
    ASSERT_OK(gguf_writer_set_str(w, "general.architecture", "llama", 5));
    ASSERT_OK(gguf_writer_set_str(w, "general.name", "tiny test model", 15));
    ASSERT_OK(gguf_writer_set_u32(w, "llama.context_length", 2048));
    ASSERT_OK(gguf_writer_set_u32(w, "llama.block_count", 2));
    ASSERT_OK(gguf_writer_set_i32(w, "test.negative", -7));
    ASSERT_OK(gguf_writer_set_u64(w, "test.big", 1ull << 40));
    ASSERT_OK(gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
    ASSERT_OK(gguf_writer_set_bool(w, "test.flag", true));
    ASSERT_OK(gguf_writer_set_str(w, "tokenizer.chat_template", tmpl, sizeof(tmpl) - 1));
    ASSERT_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", vocab, NULL, N_VOCAB));
    ASSERT_OK(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, N_VOCAB));
    ASSERT_OK(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N_VOCAB));
    for (size_t i = 0; i < SLM_ARRAY_LEN(md->embd); i++)
        md->embd[i] = (float)i * 0.25f - 3.0f;
    for (size_t i = 0; i < sizeof(md->q8); i++)
        md->q8[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < SLM_ARRAY_LEN(md->f16); i++)
        md->f16[i] = f32_to_fp16((float)i);
    for (size_t i = 0; i < SLM_ARRAY_LEN(md->big); i++)
        md->big[i] = (float)i;
    ne2[0] = 64;
    ne2[1] = 16;
    ASSERT_OK(gguf_writer_add_tensor(w, "token_embd.weight", TENSOR_TYPE_F32, 2, ne2, md->embd,
                                     sizeof(md->embd)));
    ne2[1] = 8;
    ASSERT_OK(gguf_writer_add_tensor(w, "blk.0.attn_q.weight", TENSOR_TYPE_Q8_0, 2, ne2, md->q8,
                                     sizeof(md->q8)));
    ne2[0] = 100;
    ASSERT_OK(gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", TENSOR_TYPE_F16, 1, ne2, md->f16,
                                     sizeof(md->f16)));
    ne2[0] = 256;
    ne2[1] = 64;
    ASSERT_OK(gguf_writer_add_tensor(w, "output.weight", TENSOR_TYPE_F32, 2, ne2, md->big,
                                     sizeof(md->big)));
    return w;
}

/* Writes the model to DIR/name and returns its path (static storage). */
static const char *write_model(const char *name)
{
    static char path[512];
    static struct model_data md;
    struct gguf_writer *w = make_writer(&md);
    struct slm_diag d;

    snprintf(path, sizeof(path), "%s/%s", t_tmpdir(), name);
    slm_diag_clear(&d);
    if (gguf_writer_write(w, path, &d) < 0) t_fail(__FILE__, __LINE__, "write: %s", d.msg);
    gguf_writer_free(w);
    return path;
}

/* Reads a whole file into a new buffer. */
static uint8_t *slurp(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *p;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    ASSERT(fd >= 0);
    ASSERT(fstat(fd, &st) == 0);
    p = slm_xmalloc((size_t)st.st_size + 1);
    ASSERT(read(fd, p, (size_t)st.st_size) == st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return p;
}

/* Counts the entries of a directory other than . and .. */
static int dir_entries(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    int n = 0;

    ASSERT_NOT_NULL(dp);
    while ((e = readdir(dp)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(dp);
    return n;
}

/* ------------------------------------------------------------------ */
/* Round trips                                                        */
/* ------------------------------------------------------------------ */

TEST(gguf_roundtrip_writer_model)
{
    const char *path = write_model("m.gguf");
    static struct model_data md;
    struct gguf_writer *w = make_writer(&md); /* fills md with the same data */
    struct gguf_file *f;
    struct slm_diag d;
    const struct gguf_tensor *t;
    struct gguf_str s;
    uint32_t u32;
    int32_t i32;
    uint64_t u64, n;
    float f32;
    bool b;
    size_t idx;

    gguf_writer_free(w);
    ASSERT_OK(gguf_open(path, &f, &d));
    ASSERT_EQ_INT(gguf_version(f), 3);
    ASSERT_EQ_SIZE(gguf_alignment(f), 32);
    ASSERT_EQ_SIZE(gguf_n_kv(f), 12);
    ASSERT_EQ_SIZE(gguf_n_tensors(f), 4);
    ASSERT_EQ_SIZE(gguf_data_offset(f) % 32, 0);
    ASSERT_OK(gguf_get_str(f, "general.architecture", &s, &d));
    ASSERT(s.len == 5 && memcmp(s.ptr, "llama", 5) == 0);
    ASSERT_OK(gguf_get_u32(f, "llama.context_length", &u32, &d));
    ASSERT_EQ_INT(u32, 2048);
    ASSERT_OK(gguf_get_i32(f, "test.negative", &i32, &d));
    ASSERT_EQ_INT(i32, -7);
    ASSERT_OK(gguf_get_u64(f, "test.big", &u64, &d));
    ASSERT(u64 == 1ull << 40);
    ASSERT_OK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &f32, &d));
    ASSERT(f32 == 1e-5f);
    ASSERT_OK(gguf_get_bool(f, "test.flag", &b, &d));
    ASSERT(b);
    ASSERT_OK(gguf_get_str(f, "tokenizer.chat_template", &s, &d));
    ASSERT_EQ_SIZE(s.len, 1199);
    ASSERT(s.ptr[39] == '\n' && s.ptr[40] == 'o');
    ASSERT_OK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &idx, &n, &d));
    ASSERT_EQ_INT(n, N_VOCAB);
    ASSERT_NULL(gguf_kv_arr_data(f, idx));
    for (uint64_t j = 0; j < n; j++) {
        s = gguf_kv_arr_str(f, idx, j);
        ASSERT(s.len == strlen(vocab[j]) && memcmp(s.ptr, vocab[j], s.len) == 0);
    }
    ASSERT_NULL(gguf_kv_arr_str(f, idx, n).ptr);
    ASSERT_OK(gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &idx, &n, &d));
    for (uint64_t j = 0; j < n; j++) {
        memcpy(&f32, (const uint8_t *)gguf_kv_arr_data(f, idx) + 4 * j, 4);
        ASSERT(f32 == -(float)j * 0.5f);
    }
    ASSERT_OK(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &idx, &n, &d));
    memcpy(&i32, (const uint8_t *)gguf_kv_arr_data(f, idx) + 4 * 5, 4);
    ASSERT_EQ_INT(i32, 1);

    t = gguf_tensor_find(f, "token_embd.weight");
    ASSERT_NOT_NULL(t);
    ASSERT_EQ_INT(t->type, TENSOR_TYPE_F32);
    ASSERT(t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 16 && t->ne[2] == 1 && t->ne[3] == 1);
    ASSERT_EQ_INT(t->n_elements, 64 * 16);
    ASSERT_EQ_INT(t->size, sizeof(md.embd));
    ASSERT_EQ_INT(t->offset, 0);
    ASSERT_EQ_MEM(t->data, md.embd, sizeof(md.embd));
    ASSERT(t->data == (const uint8_t *)gguf_base(f) + gguf_data_offset(f));
    t = gguf_tensor_find(f, "blk.0.attn_q.weight");
    ASSERT_NOT_NULL(t);
    ASSERT_EQ_INT(t->type, TENSOR_TYPE_Q8_0);
    ASSERT_EQ_INT(t->size, 34 * 2 * 8);
    ASSERT_EQ_INT(t->offset, 4096); /* 64*16*4 is already aligned */
    ASSERT_EQ_MEM(t->data, md.q8, sizeof(md.q8));
    t = gguf_tensor_find(f, "blk.0.attn_norm.weight");
    ASSERT_NOT_NULL(t);
    ASSERT_EQ_INT(t->offset, 4096 + 544 + 0); /* 544 is a multiple of 32 */
    ASSERT_EQ_MEM(t->data, md.f16, sizeof(md.f16));
    t = gguf_tensor_find(f, "output.weight");
    ASSERT_NOT_NULL(t);
    ASSERT_EQ_INT(t->offset, 4096 + 544 + 224); /* 200 bytes padded to 224 */
    ASSERT_EQ_MEM(t->data, md.big, sizeof(md.big));
    ASSERT_NULL(gguf_tensor_find(f, "output"));
    ASSERT_NULL(gguf_tensor_at(f, 4));
    ASSERT(gguf_tensor_at(f, 0) == gguf_tensor_find(f, "token_embd.weight"));
    /* Padding after the last tensor, as llama.cpp writes it. */
    ASSERT_EQ_SIZE(gguf_file_size(f), gguf_data_offset(f) + 4096 + 544 + 224 + 65536);
    gguf_close(f);
}

/* Every scalar type written by hand, read, copied with copy_kv, written and read again. */
TEST(gguf_roundtrip_every_value_type)
{
    struct gb b = { 0 };
    uint8_t *copy, v8 = 200, bt = 1;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = INT64_MIN;
    uint64_t u64 = UINT64_MAX;
    double f64 = -2.5e300;
    float f32 = 3.25f;
    int32_t i32 = INT32_MIN;
    int16_t arr16[3] = { -1, 0, 1 };
    struct gguf_file *f, *g;
    struct gguf_writer *w;
    struct slm_diag d;
    char path[512];
    const char *names[] = { "u8",   "i8",  "u16", "i16", "u32", "i32", "f32",
                            "bool", "str", "arr", "u64", "i64", "f64" };
    size_t len;
    uint8_t *bytes;

    gb_header(&b, 2, 0, 13); /* version 2 has the same layout */
    gb_str(&b, "u8"), gb_u32(&b, GGUF_TYPE_UINT8), gb_put(&b, &v8, 1);
    gb_str(&b, "i8"), gb_u32(&b, GGUF_TYPE_INT8), gb_put(&b, &i8, 1);
    gb_str(&b, "u16"), gb_u32(&b, GGUF_TYPE_UINT16), gb_put(&b, &u16, 2);
    gb_str(&b, "i16"), gb_u32(&b, GGUF_TYPE_INT16), gb_put(&b, &i16, 2);
    gb_kv_u32(&b, "u32", UINT32_MAX);
    gb_str(&b, "i32"), gb_u32(&b, GGUF_TYPE_INT32), gb_put(&b, &i32, 4);
    gb_str(&b, "f32"), gb_u32(&b, GGUF_TYPE_FLOAT32), gb_put(&b, &f32, 4);
    gb_str(&b, "bool"), gb_u32(&b, GGUF_TYPE_BOOL), gb_put(&b, &bt, 1);
    gb_kv_str(&b, "str", "h\xc3\xa9llo");
    gb_str(&b, "arr"), gb_u32(&b, GGUF_TYPE_ARRAY), gb_u32(&b, GGUF_TYPE_INT16), gb_u64(&b, 3);
    gb_put(&b, arr16, sizeof(arr16));
    gb_str(&b, "u64"), gb_u32(&b, GGUF_TYPE_UINT64), gb_put(&b, &u64, 8);
    gb_str(&b, "i64"), gb_u32(&b, GGUF_TYPE_INT64), gb_put(&b, &i64, 8);
    gb_str(&b, "f64"), gb_u32(&b, GGUF_TYPE_FLOAT64), gb_put(&b, &f64, 8);
    f = EXPECT_OK(&b, &copy);
    ASSERT_EQ_INT(gguf_version(f), 2);
    ASSERT_EQ_SIZE(gguf_n_kv(f), 13);
    for (size_t i = 0; i < 13; i++) {
        struct gguf_str k = gguf_kv_key(f, i);

        ASSERT(k.len == strlen(names[i]) && memcmp(k.ptr, names[i], k.len) == 0);
        ASSERT_EQ_INT(gguf_kv_type(f, i), i);
        ASSERT_EQ_INT(gguf_find_key(f, names[i]), i);
    }
    w = gguf_writer_new();
    ASSERT_NOT_NULL(w);
    ASSERT_OK(gguf_writer_copy_kv(w, f));
    snprintf(path, sizeof(path), "%s/copy.gguf", t_tmpdir());
    ASSERT_OK(gguf_writer_write(w, path, &d));
    gguf_writer_free(w);
    ASSERT_OK(gguf_open(path, &g, &d));
    ASSERT_EQ_INT(gguf_version(g), 3);
    ASSERT_EQ_SIZE(gguf_n_kv(g), 13);
    /* Same key/value bytes: the written file's KV region equals the source's. */
    bytes = slurp(path, &len);
    ASSERT(len >= b.len);
    ASSERT_EQ_MEM(bytes + 8, b.p + 8, b.len - 8);
    slm_free(bytes);
    for (int pass = 0; pass < 2; pass++) {
        struct gguf_file *h = pass == 0 ? f : g;
        uint64_t uv;
        int64_t iv;
        double dv;
        bool bv;
        struct gguf_str s;
        uint32_t u32v;
        int32_t i32v;
        float f32v;

        ASSERT_OK(gguf_kv_u64(h, 0, &uv));
        ASSERT_EQ_INT(uv, 200);
        ASSERT_OK(gguf_kv_i64(h, 1, &iv));
        ASSERT_EQ_INT(iv, -100);
        ASSERT_ERR(gguf_kv_u64(h, 1, &uv), SLM_ERANGE);
        ASSERT_OK(gguf_kv_u64(h, 2, &uv));
        ASSERT_EQ_INT(uv, 60000);
        ASSERT_OK(gguf_kv_i64(h, 3, &iv));
        ASSERT_EQ_INT(iv, -30000);
        ASSERT_OK(gguf_kv_u64(h, 4, &uv));
        ASSERT_EQ_INT(uv, UINT32_MAX);
        ASSERT_OK(gguf_kv_i64(h, 5, &iv));
        ASSERT_EQ_INT(iv, INT32_MIN);
        ASSERT_OK(gguf_kv_f64(h, 6, &dv));
        ASSERT(dv == 3.25);
        ASSERT_OK(gguf_kv_bool(h, 7, &bv));
        ASSERT(bv);
        ASSERT_ERR(gguf_kv_bool(h, 0, &bv), SLM_EFORMAT);
        s = gguf_kv_str(h, 8);
        ASSERT(s.len == 6 && memcmp(s.ptr, "h\xc3\xa9llo", 6) == 0);
        ASSERT_NULL(gguf_kv_str(h, 0).ptr);
        ASSERT_EQ_INT(gguf_kv_arr_type(h, 9), GGUF_TYPE_INT16);
        ASSERT_EQ_INT(gguf_kv_arr_n(h, 9), 3);
        ASSERT_EQ_MEM(gguf_kv_arr_data(h, 9), arr16, sizeof(arr16));
        ASSERT_EQ_INT(gguf_kv_arr_type(h, 0), GGUF_TYPE_COUNT);
        ASSERT_OK(gguf_kv_u64(h, 10, &uv));
        ASSERT(uv == UINT64_MAX);
        ASSERT_ERR(gguf_kv_i64(h, 10, &iv), SLM_ERANGE);
        ASSERT_ERR(gguf_kv_f64(h, 10, &dv), SLM_ERANGE);
        ASSERT_OK(gguf_kv_i64(h, 11, &iv));
        ASSERT(iv == INT64_MIN);
        ASSERT_OK(gguf_kv_f64(h, 12, &dv));
        ASSERT(dv == -2.5e300);
        ASSERT_ERR(gguf_kv_u64(h, 8, &uv), SLM_EFORMAT);
        ASSERT_ERR(gguf_kv_u64(h, 99, &uv), SLM_EINVAL);
        /* Typed gets convert losslessly and refuse what does not fit. */
        ASSERT_OK(gguf_get_u32(h, "u16", &u32v, &d));
        ASSERT_EQ_INT(u32v, 60000);
        ASSERT_OK(gguf_get_i32(h, "i8", &i32v, &d));
        ASSERT_EQ_INT(i32v, -100);
        ASSERT_OK(gguf_get_f32(h, "u8", &f32v, &d));
        ASSERT(f32v == 200.0f);
        ASSERT_ERR(gguf_get_f32(h, "f64", &f32v, &d), SLM_EFORMAT);
        ASSERT_ERR(gguf_get_u32(h, "u64", &u32v, &d), SLM_EFORMAT);
        ASSERT(strstr(d.msg, "'u64'") != NULL && strstr(d.msg, "18446744073709551615") != NULL);
        ASSERT_ERR(gguf_get_i32(h, "u32", &i32v, &d), SLM_EFORMAT);
        ASSERT_ERR(gguf_get_u32(h, "i32", &u32v, &d), SLM_EFORMAT);
        ASSERT(strstr(d.msg, "found int32 -2147483648") != NULL);
    }
    gguf_close(g);
    gguf_close(f);
    slm_free(copy);
    gb_free(&b);
}

/* Our writer's bytes equal a layout computed independently by the byte builder. */
TEST(gguf_writer_bytes_match_spec_layout)
{
    struct gguf_writer *w = gguf_writer_new();
    float a[6] = { 1, 2, 3, 4, 5, 6 };
    uint8_t q[34];
    uint64_t ne_a[2] = { 3, 2 }, ne_q[1] = { 32 };
    struct gb b = { 0 };
    struct slm_diag d;
    char path[512], path2[512];
    uint8_t *bytes, *bytes2;
    size_t len, len2;

    for (size_t i = 0; i < sizeof(q); i++)
        q[i] = (uint8_t)(0xA0 + i);
    ASSERT_NOT_NULL(w);
    ASSERT_OK(gguf_writer_set_str(w, "general.architecture", "llama", 5));
    ASSERT_OK(gguf_writer_set_u32(w, "x.n", 7));
    ASSERT_OK(gguf_writer_set_u32(w, "x.n", 9)); /* set twice: last value, first position */
    ASSERT_OK(gguf_writer_add_tensor(w, "a", TENSOR_TYPE_F32, 2, ne_a, a, sizeof(a)));
    ASSERT_OK(gguf_writer_add_tensor(w, "q", TENSOR_TYPE_Q8_0, 1, ne_q, q, sizeof(q)));
    snprintf(path, sizeof(path), "%s/w.gguf", t_tmpdir());
    snprintf(path2, sizeof(path2), "%s/w2.gguf", t_tmpdir());
    ASSERT_OK(gguf_writer_write(w, path, &d));
    ASSERT_OK(gguf_writer_write(w, path2, &d));
    gguf_writer_free(w);

    gb_header(&b, 3, 2, 2);
    gb_kv_str(&b, "general.architecture", "llama");
    gb_kv_u32(&b, "x.n", 9);
    gb_tensor(&b, "a", 2, ne_a, TENSOR_TYPE_F32, 0);
    gb_tensor(&b, "q", 1, ne_q, TENSOR_TYPE_Q8_0, 32);
    gb_pad(&b, 32);
    gb_put(&b, a, sizeof(a));
    gb_pad(&b, 32);
    gb_put(&b, q, sizeof(q));
    gb_pad(&b, 32);

    bytes = slurp(path, &len);
    bytes2 = slurp(path2, &len2);
    ASSERT_EQ_SIZE(len, b.len);
    ASSERT_EQ_MEM(bytes, b.p, len);
    ASSERT_EQ_SIZE(len2, len); /* deterministic */
    ASSERT_EQ_MEM(bytes2, bytes, len);
    ASSERT_EQ_INT(dir_entries(t_tmpdir()), 2); /* no temporary files left */
    slm_free(bytes);
    slm_free(bytes2);
    gb_free(&b);
}

TEST(gguf_writer_alignment_key_is_honoured)
{
    struct gguf_writer *w = gguf_writer_new();
    float a[3] = { 1, 2, 3 };
    uint64_t ne[1] = { 3 };
    struct gguf_file *f;
    struct slm_diag d;
    char path[512];

    ASSERT_NOT_NULL(w);
    ASSERT_OK(gguf_writer_set_u32(w, "general.alignment", 64));
    ASSERT_OK(gguf_writer_add_tensor(w, "a", TENSOR_TYPE_F32, 1, ne, a, sizeof(a)));
    ASSERT_OK(gguf_writer_add_tensor(w, "b", TENSOR_TYPE_F32, 1, ne, a, sizeof(a)));
    snprintf(path, sizeof(path), "%s/a.gguf", t_tmpdir());
    ASSERT_OK(gguf_writer_write(w, path, &d));
    ASSERT_OK(gguf_open(path, &f, &d));
    ASSERT_EQ_SIZE(gguf_alignment(f), 64);
    ASSERT_EQ_SIZE(gguf_data_offset(f) % 64, 0);
    ASSERT_EQ_INT(gguf_tensor_find(f, "b")->offset, 64);
    gguf_close(f);
    /* A bad alignment is refused at write time and nothing is written. */
    ASSERT_OK(gguf_writer_set_u32(w, "general.alignment", 48));
    ASSERT_ERR(gguf_writer_write(w, path, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "general.alignment") != NULL);
    ASSERT_OK(gguf_writer_set_str(w, "general.alignment", "64", 2));
    ASSERT_ERR(gguf_writer_write(w, path, &d), SLM_EINVAL);
    ASSERT_EQ_INT(dir_entries(t_tmpdir()), 1);
    gguf_writer_free(w);
}

TEST(gguf_writer_refuses_bad_input)
{
    struct gguf_writer *w = gguf_writer_new();
    float a[4] = { 0 };
    uint64_t ne[4] = { 4, 1, 1, 1 }, ne0[1] = { 0 }, ne33[1] = { 33 };
    char long_name[80];

    ASSERT_NOT_NULL(w);
    ASSERT_ERR(gguf_writer_set_u32(w, "", 1), SLM_EINVAL);
    ASSERT_ERR(gguf_writer_set_u32(w, "bad\xff", 1), SLM_EINVAL);
    memset(long_name, 'k', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    ASSERT_ERR(gguf_writer_set_arr(w, "x", GGUF_TYPE_STRING, a, 1), SLM_EINVAL);
    ASSERT_ERR(gguf_writer_set_arr(w, "x", GGUF_TYPE_ARRAY, a, 1), SLM_EINVAL);
    ASSERT_ERR(gguf_writer_set_arr(w, "x", GGUF_TYPE_UINT8, a, SLM_LIMIT_GGUF_ARRAY + 1),
               SLM_ELIMIT);
    ASSERT_OK(gguf_writer_add_tensor(w, "t", TENSOR_TYPE_F32, 1, ne, a, sizeof(a)));
    ASSERT_ERR(gguf_writer_add_tensor(w, "t", TENSOR_TYPE_F32, 1, ne, a, sizeof(a)), SLM_EEXIST);
    ASSERT_ERR(gguf_writer_add_tensor(w, "", TENSOR_TYPE_F32, 1, ne, a, sizeof(a)), SLM_EINVAL);
    ASSERT_ERR(gguf_writer_add_tensor(w, long_name, TENSOR_TYPE_F32, 1, ne, a, sizeof(a)),
               SLM_EINVAL);
    ASSERT_ERR(gguf_writer_add_tensor(w, "u", TENSOR_TYPE_F32, 1, ne, a, 12), SLM_EINVAL);
    ASSERT_ERR(gguf_writer_add_tensor(w, "u", TENSOR_TYPE_F32, 0, ne, a, 16), SLM_EINVAL);
    ASSERT_ERR(gguf_writer_add_tensor(w, "u", TENSOR_TYPE_F32, 5, ne, a, 16), SLM_EINVAL);
    ASSERT_ERR(gguf_writer_add_tensor(w, "u", TENSOR_TYPE_F32, 1, ne0, a, 0), SLM_EINVAL);
    ASSERT_ERR(gguf_writer_add_tensor(w, "u", TENSOR_TYPE_Q8_0, 1, ne33, a, 34), SLM_EINVAL);
    ASSERT_ERR(gguf_writer_add_tensor(w, "u", (enum tensor_type)4, 1, ne, a, 16), SLM_EINVAL);
    gguf_writer_free(w);
    gguf_writer_free(NULL);
    gguf_close(NULL);
}

/* Many keys and tensors: lookups and duplicate detection stay linear. */
TEST(gguf_many_names_open_fast)
{
    struct gb b = { 0 };
    const uint64_t n = SLM_LIMIT_GGUF_TENSORS;
    uint64_t ne[1] = { 8 };
    struct gguf_file *f;
    uint8_t *copy;
    uint64_t t0, mult;
    char name[32];

    gb_header(&b, 3, n, 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "k.%d", i);
        gb_kv_u32(&b, name, (uint32_t)i);
    }
    for (uint64_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "blk.%llu.w", (unsigned long long)i);
        gb_tensor(&b, name, 1, ne, TENSOR_TYPE_F32, i * 32);
    }
    gb_pad(&b, 32);
    gb_zeros(&b, n * 32);
    t0 = slm_now_ns();
    f = EXPECT_OK(&b, &copy);
    ASSERT_OK(slm_parse_u64(t_env("T_TIMEOUT_MULT", "1"), &mult));
    ASSERT((slm_now_ns() - t0) / 1000000 < 2000 * mult);
    ASSERT_EQ_INT(gguf_find_key(f, "k.999"), 999);
    ASSERT_EQ_INT(gguf_find_key(f, "k.1000"), -1);
    ASSERT_NOT_NULL(gguf_tensor_find(f, "blk.65535.w"));
    ASSERT_EQ_INT(gguf_tensor_find(f, "blk.4000.w")->offset, 4000 * 32);
    gguf_close(f);
    slm_free(copy);
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G01: truncation at every offset                                    */
/* ------------------------------------------------------------------ */

TEST(gguf_g01_truncation_every_offset)
{
    const char *path = write_model("m.gguf");
    struct gb b = { 0 };
    struct gguf_file *f;
    struct slm_diag d;
    size_t len, data_off, data_end;
    uint64_t worst = 0;

    b.p = slurp(path, &len);
    b.len = b.cap = len;
    ASSERT_OK(gguf_open(path, &f, &d));
    data_off = gguf_data_offset(f);
    data_end = data_off + gguf_tensor_find(f, "output.weight")->offset + 65536;
    gguf_close(f);
    ASSERT(data_off > 4000); /* the header region is a few KiB */
    for (size_t cut = 0; cut < len; cut += cut < data_off + 64 ? 1 : 4096) {
        uint8_t *copy;
        uint64_t t0 = slm_now_ns();
        int rc = gb_open_n(&b, cut, &copy, &f, &d);

        if (slm_now_ns() - t0 > worst) worst = slm_now_ns() - t0;
        if (cut >= data_end) {
            ASSERT_OK(rc); /* only the final padding is gone */
            gguf_close(f);
        } else {
            if (rc != SLM_EFORMAT)
                t_fail(__FILE__, __LINE__, "cut %zu: %s: %s", cut, slm_strerror(rc), d.msg);
            ASSERT_NULL(f);
            check_msg(__FILE__, __LINE__, &d, "t.gguf", NULL);
        }
        slm_free(copy);
    }
    ASSERT(worst < 1000000000ull);
    /* The same through the file path and mmap, at a coarser step. */
    for (size_t cut = 0; cut < data_end; cut += 211) {
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);

        ASSERT(fd >= 0);
        ASSERT(write(fd, b.p, cut) == (ssize_t)cut);
        close(fd);
        ASSERT_ERR(gguf_open(path, &f, &d), SLM_EFORMAT);
        check_msg(__FILE__, __LINE__, &d, path, NULL);
    }
    gb_free(&b);
    LEAK_CHECK();
}

/* ------------------------------------------------------------------ */
/* G02: magic and version                                             */
/* ------------------------------------------------------------------ */

TEST(gguf_g02_magic_and_version)
{
    static const struct {
        uint32_t version;
        int code;
        const char *needle;
    } cases[] = {
        { 0, SLM_EFORMAT, "version 0" },
        { 1, SLM_EUNSUPPORTED, "version 1" },
        { 4, SLM_EUNSUPPORTED, "version 4" },
        { 0xFFFFFFFFu, SLM_EUNSUPPORTED, "version 4294967295" },
        { 0x03000000u, SLM_EUNSUPPORTED, "byte-swapped" },
    };
    struct gb b = { 0 };
    struct gguf_file *f;
    uint8_t *copy;

    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, "a", 1);
    f = EXPECT_OK(&b, &copy);
    gguf_close(f);
    slm_free(copy);
    memcpy(b.p + 4, &(uint32_t){ 2 }, 4);
    f = EXPECT_OK(&b, &copy);
    gguf_close(f);
    slm_free(copy);
    for (size_t i = 0; i < SLM_ARRAY_LEN(cases); i++) {
        memcpy(b.p + 4, &cases[i].version, 4);
        EXPECT_FAIL(&b, cases[i].code, cases[i].needle);
    }
    memcpy(b.p + 4, &(uint32_t){ 3 }, 4);
    memcpy(b.p, "GGUX", 4);
    EXPECT_FAIL(&b, SLM_EFORMAT, "bad magic 'GGUX'");
    memcpy(b.p, "\x00\x01GG", 4);
    EXPECT_FAIL(&b, SLM_EFORMAT, "bad magic '\\x00\\x01GG'");
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G03: counts                                                        */
/* ------------------------------------------------------------------ */

TEST(gguf_g03_counts)
{
    static const uint64_t bad[] = { (1ull << 63) - 1, UINT64_MAX, (uint64_t)-5,
                                    SLM_LIMIT_GGUF_KV + 1ull };
    struct gb b = { 0 };
    struct gguf_file *f;
    struct slm_diag d;
    uint8_t *copy;

    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, "a", 1);
    for (size_t i = 0; i < SLM_ARRAY_LEN(bad); i++) {
        memcpy(b.p + 16, &bad[i], 8);
        EXPECT_FAIL(&b, SLM_ELIMIT, "n_kv");
        memcpy(b.p + 16, &(uint64_t){ 1 }, 8);
        memcpy(b.p + 8, &bad[i], 8);
        EXPECT_FAIL(&b, SLM_ELIMIT, "n_tensors");
        memcpy(b.p + 8, &(uint64_t){ 0 }, 8);
    }
    /* Within the limit but more than the file could hold: refused before any allocation. */
    memcpy(b.p + 16, &(uint64_t){ b.len }, 8);
    EXPECT_FAIL(&b, SLM_EFORMAT, "n_kv");
    memcpy(b.p + 16, &(uint64_t){ SLM_LIMIT_GGUF_KV }, 8);
    copy = slm_xmalloc(b.len);
    memcpy(copy, b.p, b.len);
    slm_alloc_fail_at(0); /* resets the counter */
    ASSERT_ERR(gguf_open_memory(copy, b.len, "t.gguf", &f, &d), SLM_EFORMAT);
    ASSERT_EQ_INT(slm_alloc_count(), 1); /* the file object only */
    slm_free(copy);
    memcpy(b.p + 16, &(uint64_t){ 1 }, 8);
    memcpy(b.p + 8, &(uint64_t){ 1000 }, 8);
    EXPECT_FAIL(&b, SLM_EFORMAT, "n_tensors 1000");
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G04: string lengths                                                */
/* ------------------------------------------------------------------ */

TEST(gguf_g04_string_lengths)
{
    static const uint64_t lens[] = { UINT64_MAX, 1ull << 32, SLM_LIMIT_GGUF_STR + 1ull };
    struct gb b = { 0 };

    for (size_t i = 0; i < SLM_ARRAY_LEN(lens); i++) {
        /* value string */
        gb_header(&b, 3, 0, 1);
        gb_str(&b, "k");
        gb_u32(&b, GGUF_TYPE_STRING);
        gb_u64(&b, lens[i]);
        gb_zeros(&b, 100);
        EXPECT_FAIL(&b, SLM_ELIMIT, "key 'k': string value length");
        b.len = 0;
        /* key */
        gb_header(&b, 3, 0, 1);
        gb_u64(&b, lens[i]);
        gb_zeros(&b, 100);
        EXPECT_FAIL(&b, SLM_ELIMIT, "key #0: key length");
        b.len = 0;
        /* array element */
        gb_header(&b, 3, 0, 1);
        gb_str(&b, "arr");
        gb_u32(&b, GGUF_TYPE_ARRAY);
        gb_u32(&b, GGUF_TYPE_STRING);
        gb_u64(&b, 2);
        gb_str(&b, "ok");
        gb_u64(&b, lens[i]);
        gb_zeros(&b, 100);
        EXPECT_FAIL(&b, SLM_ELIMIT, "key 'arr': array string length");
        b.len = 0;
        /* tensor name: no limit of its own before the remaining bytes */
        gb_header(&b, 3, 1, 0);
        gb_u64(&b, lens[i]);
        gb_zeros(&b, 100);
        EXPECT_FAIL(&b, SLM_EFORMAT, "tensor #0: tensor name length");
        b.len = 0;
    }
    /* Longer than the rest of the file but within the limit. */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, GGUF_TYPE_STRING);
    gb_u64(&b, 101);
    gb_zeros(&b, 100);
    EXPECT_FAIL(&b, SLM_EFORMAT, "string value length 101 at offset 37 exceeds the 100 bytes left");
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G05: keys                                                          */
/* ------------------------------------------------------------------ */

TEST(gguf_g05_keys)
{
    struct gb b = { 0 };
    char key[SLM_LIMIT_GGUF_KEY + 2];
    struct gguf_file *f;
    uint8_t *copy;

    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, "", 1);
    EXPECT_FAIL(&b, SLM_EFORMAT, "key #0: empty key");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, "bad\xff", 1);
    EXPECT_FAIL(&b, SLM_EFORMAT, "key 'bad\\xff': key is not valid UTF-8");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, "\xc0\xaf", 1); /* overlong '/' */
    EXPECT_FAIL(&b, SLM_EFORMAT, "not valid UTF-8");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_strn(&b, "a\0b", 3);
    gb_u32(&b, GGUF_TYPE_UINT32);
    gb_u32(&b, 1);
    EXPECT_FAIL(&b, SLM_EFORMAT, "key 'a\\x00b': key contains a NUL byte");
    b.len = 0;
    gb_header(&b, 3, 0, 3);
    gb_kv_u32(&b, "x", 1);
    gb_kv_u32(&b, "y", 1);
    gb_kv_str(&b, "x", "again");
    EXPECT_FAIL(&b, SLM_EFORMAT, "key 'x': duplicate key (first defined as key #0)");
    b.len = 0;
    memset(key, 'k', sizeof(key));
    key[SLM_LIMIT_GGUF_KEY] = '\0';
    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, key, 1);
    f = EXPECT_OK(&b, &copy);
    gguf_close(f);
    slm_free(copy);
    b.len = 0;
    key[SLM_LIMIT_GGUF_KEY] = 'k';
    key[SLM_LIMIT_GGUF_KEY + 1] = '\0';
    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, key, 1);
    EXPECT_FAIL(&b, SLM_ELIMIT, "key length 257 exceeds the limit of 256");
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G06: value types and arrays                                        */
/* ------------------------------------------------------------------ */

TEST(gguf_g06_value_types_and_arrays)
{
    struct gb b = { 0 };

    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, GGUF_TYPE_COUNT);
    gb_u32(&b, 0);
    EXPECT_FAIL(&b, SLM_EFORMAT, "key 'k': value type 13 is not a GGUF type");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, 0xFFFFFFFFu);
    gb_u32(&b, 0);
    EXPECT_FAIL(&b, SLM_EFORMAT, "value type 4294967295");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, GGUF_TYPE_ARRAY);
    gb_u32(&b, GGUF_TYPE_ARRAY);
    gb_u64(&b, 1);
    gb_u32(&b, GGUF_TYPE_UINT8);
    gb_u64(&b, 1);
    gb_zeros(&b, 8);
    EXPECT_FAIL(&b, SLM_EFORMAT, "key 'k': array of arrays");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, GGUF_TYPE_ARRAY);
    gb_u32(&b, 77);
    gb_u64(&b, 1);
    gb_zeros(&b, 8);
    EXPECT_FAIL(&b, SLM_EFORMAT, "array element type 77");
    /* count * element size overflows 64 bits, or exceeds the limit or the file */
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, GGUF_TYPE_ARRAY);
    gb_u32(&b, GGUF_TYPE_UINT64);
    gb_u64(&b, (1ull << 61) + 1);
    gb_zeros(&b, 64);
    EXPECT_FAIL(&b, SLM_ELIMIT, "array count 2305843009213693953");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, GGUF_TYPE_ARRAY);
    gb_u32(&b, GGUF_TYPE_UINT32);
    gb_u64(&b, 17);
    gb_zeros(&b, 64);
    EXPECT_FAIL(&b, SLM_EFORMAT, "array of 17 uint32 needs at least 68 bytes but only 64");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, GGUF_TYPE_ARRAY);
    gb_u32(&b, GGUF_TYPE_STRING);
    gb_u64(&b, SLM_LIMIT_GGUF_ARRAY);
    gb_zeros(&b, 64);
    EXPECT_FAIL(&b, SLM_EFORMAT, "array of 16777216 string");
    /* a scalar cut short */
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, GGUF_TYPE_FLOAT64);
    gb_zeros(&b, 4);
    gb_u64(&b, 0);
    b.len -= 8;
    EXPECT_FAIL(&b, SLM_EFORMAT, "key 'k': value needs 8 bytes");
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G07: general.alignment                                             */
/* ------------------------------------------------------------------ */

TEST(gguf_g07_alignment)
{
    static const struct {
        uint32_t v;
        int code;
        const char *needle;
    } cases[] = {
        { 0, SLM_EFORMAT, "key 'general.alignment': alignment 0 is not a power of two" },
        { 3, SLM_EFORMAT, "key 'general.alignment': alignment 3 is not a power of two" },
        { 1u << 31, SLM_ELIMIT, "key 'general.alignment': alignment 2147483648 exceeds" },
        { 0xFFFFFFFFu, SLM_EFORMAT, "key 'general.alignment': alignment 4294967295 is not" },
    };
    uint64_t ne[1] = { 8 };
    struct gb b = { 0 };
    struct gguf_file *f;
    uint8_t *copy;

    for (size_t i = 0; i < SLM_ARRAY_LEN(cases); i++) {
        b.len = 0;
        gb_header(&b, 3, 0, 1);
        gb_kv_u32(&b, "general.alignment", cases[i].v);
        EXPECT_FAIL(&b, cases[i].code, cases[i].needle);
    }
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "general.alignment");
    gb_u32(&b, GGUF_TYPE_INT32);
    gb_u32(&b, 32);
    EXPECT_FAIL(&b, SLM_EFORMAT, "key 'general.alignment': has type int32, must be uint32");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_str(&b, "general.alignment", "32");
    EXPECT_FAIL(&b, SLM_EFORMAT, "has type string, must be uint32");
    /* 1 and 4096 are valid; offsets must follow the declared alignment. */
    b.len = 0;
    gb_header(&b, 3, 1, 1);
    gb_kv_u32(&b, "general.alignment", 4096);
    gb_tensor(&b, "t", 1, ne, TENSOR_TYPE_F32, 0);
    gb_pad(&b, 4096);
    gb_zeros(&b, 32);
    f = EXPECT_OK(&b, &copy);
    ASSERT_EQ_SIZE(gguf_data_offset(f), 4096);
    gguf_close(f);
    slm_free(copy);
    b.len = 0;
    gb_header(&b, 3, 1, 1);
    gb_kv_u32(&b, "general.alignment", 1);
    gb_tensor(&b, "t", 1, ne, TENSOR_TYPE_F32, 0);
    gb_zeros(&b, 32);
    f = EXPECT_OK(&b, &copy);
    ASSERT_EQ_SIZE(gguf_data_offset(f), b.len - 32);
    gguf_close(f);
    slm_free(copy);
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G08: tensor names and shapes                                       */
/* ------------------------------------------------------------------ */

TEST(gguf_g08_tensor_names_and_shapes)
{
    uint64_t ne[5] = { 8, 2, 1, 1, 1 };
    char name[SLM_LIMIT_GGUF_TENSOR_NAME + 1];
    struct gb b = { 0 };
    struct gguf_file *f;
    uint8_t *copy;

    gb_one_tensor(&b, "", 1, ne, TENSOR_TYPE_F32, 0, 32);
    EXPECT_FAIL(&b, SLM_EFORMAT, "tensor #0: empty tensor name");
    memset(name, 'n', sizeof(name));
    name[SLM_LIMIT_GGUF_TENSOR_NAME - 1] = '\0'; /* 63 bytes: the most GGML_MAX_NAME allows */
    b.len = 0;
    gb_one_tensor(&b, name, 1, ne, TENSOR_TYPE_F32, 0, 32);
    f = EXPECT_OK(&b, &copy);
    gguf_close(f);
    slm_free(copy);
    name[SLM_LIMIT_GGUF_TENSOR_NAME - 1] = 'n';
    name[SLM_LIMIT_GGUF_TENSOR_NAME] = '\0';
    b.len = 0;
    gb_one_tensor(&b, name, 1, ne, TENSOR_TYPE_F32, 0, 32);
    EXPECT_FAIL(&b, SLM_ELIMIT, "name of 64 bytes exceeds the limit of 63");
    b.len = 0;
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "w", 1, ne, TENSOR_TYPE_F32, 0);
    gb_tensor(&b, "w", 1, ne, TENSOR_TYPE_F32, 32);
    gb_pad(&b, 32);
    gb_zeros(&b, 64);
    EXPECT_FAIL(&b, SLM_EFORMAT, "tensor 'w': duplicate tensor name");
    b.len = 0;
    gb_header(&b, 3, 1, 0);
    gb_strn(&b, "w\0x", 3);
    gb_u32(&b, 1);
    gb_u64(&b, 8);
    gb_u32(&b, TENSOR_TYPE_F32);
    gb_u64(&b, 0);
    gb_pad(&b, 32);
    gb_zeros(&b, 32);
    EXPECT_FAIL(&b, SLM_EFORMAT, "name contains a NUL byte");
    b.len = 0;
    gb_one_tensor(&b, "w", 0, ne, TENSOR_TYPE_F32, 0, 32);
    EXPECT_FAIL(&b, SLM_EFORMAT, "tensor 'w': n_dims 0 is not in 1..4");
    b.len = 0;
    gb_one_tensor(&b, "w", 5, ne, TENSOR_TYPE_F32, 0, 32);
    EXPECT_FAIL(&b, SLM_EFORMAT, "n_dims 5 is not in 1..4");
    ne[1] = 0;
    b.len = 0;
    gb_one_tensor(&b, "w", 2, ne, TENSOR_TYPE_F32, 0, 32);
    EXPECT_FAIL(&b, SLM_EFORMAT, "tensor 'w': ne[1] is 0");
    ne[1] = (uint64_t)-2;
    b.len = 0;
    gb_one_tensor(&b, "w", 2, ne, TENSOR_TYPE_F32, 0, 32);
    EXPECT_FAIL(&b, SLM_EFORMAT, "ne[1] is negative (-2 as int64)");
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G09: element-count and size overflow, block size                   */
/* ------------------------------------------------------------------ */

TEST(gguf_g09_overflow_and_block_size)
{
    uint64_t big[2] = { (1ull << 42) + 1, (1ull << 42) + 1 };
    uint64_t bytes[2] = { 1ull << 62, 1 };
    uint64_t ne33[1] = { 33 };
    uint64_t ne32[2] = { 256, 1 };
    struct gb b = { 0 };
    struct gguf_file *f;
    uint8_t *copy;

    gb_one_tensor(&b, "w", 2, big, TENSOR_TYPE_F32, 0, 32);
    EXPECT_FAIL(&b, SLM_EFORMAT, "tensor 'w': element count overflows");
    b.len = 0;
    gb_one_tensor(&b, "w", 2, bytes, TENSOR_TYPE_F32, 0, 32);
    EXPECT_FAIL(&b, SLM_EFORMAT, "byte size overflows");
    b.len = 0;
    gb_one_tensor(&b, "w", 1, ne33, TENSOR_TYPE_Q8_0, 0, 64);
    EXPECT_FAIL(&b, SLM_EFORMAT, "ne[0] 33 is not a multiple of the q8_0 block size 32");
    b.len = 0;
    gb_one_tensor(&b, "w", 2, ne32, TENSOR_TYPE_Q4_K, 0, 144);
    f = EXPECT_OK(&b, &copy);
    ASSERT_EQ_INT(gguf_tensor_at(f, 0)->size, 144);
    gguf_close(f);
    slm_free(copy);
    b.len = 0;
    ne32[0] = 128;
    gb_one_tensor(&b, "w", 2, ne32, TENSOR_TYPE_Q4_K, 0, 144);
    EXPECT_FAIL(&b, SLM_EFORMAT, "ne[0] 128 is not a multiple of the q4_K block size 256");
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G10: tensor types                                                  */
/* ------------------------------------------------------------------ */

TEST(gguf_g10_tensor_types)
{
    static const uint32_t unknown[] = { 4, 5, 31, 36, TENSOR_TYPE_COUNT, 0x7FFFFFFFu, 0xFFFFFFFFu };
    uint64_t ne[1] = { 256 };
    struct gb b = { 0 };
    struct gguf_file *f;
    uint8_t *copy;

    for (size_t i = 0; i < SLM_ARRAY_LEN(unknown); i++) {
        char needle[64];

        b.len = 0;
        gb_one_tensor(&b, "w", 1, ne, unknown[i], 0, 1024);
        snprintf(needle, sizeof(needle), "tensor 'w': type %u is not a known tensor type",
                 unknown[i]);
        EXPECT_FAIL(&b, SLM_EFORMAT, needle);
    }
    /* Known but not computable by this build: the reader accepts it. */
    b.len = 0;
    gb_one_tensor(&b, "w", 1, ne, TENSOR_TYPE_Q2_K, 0, 84);
    f = EXPECT_OK(&b, &copy);
    ASSERT_EQ_INT(gguf_tensor_at(f, 0)->type, TENSOR_TYPE_Q2_K);
    ASSERT(!tensor_type_get(TENSOR_TYPE_Q2_K)->supported);
    gguf_close(f);
    slm_free(copy);
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G11: offsets, bounds, overlap, data section                        */
/* ------------------------------------------------------------------ */

TEST(gguf_g11_offsets)
{
    uint64_t ne[1] = { 8 }, ne_k[2] = { 128, 2304 };
    struct gb b = { 0 };
    struct gguf_file *f;
    uint8_t *copy;

    gb_one_tensor(&b, "w", 1, ne, TENSOR_TYPE_F32, 16, 64);
    EXPECT_FAIL(&b, SLM_EFORMAT, "tensor 'w': offset 16 is not a multiple of the alignment 32");
    b.len = 0;
    gb_one_tensor(&b, "w", 1, ne, TENSOR_TYPE_F32, 32, 63);
    EXPECT_FAIL(&b, SLM_EFORMAT, "tensor 'w': offset 32 + size 32 exceeds data size 63");
    b.len = 0;
    gb_one_tensor(&b, "w", 1, ne, TENSOR_TYPE_F32, UINT64_MAX - 31, 64);
    EXPECT_FAIL(&b, SLM_EFORMAT, "offset 18446744073709551584 + size 32 exceeds data size 64");
    /* The message of the spec, with the numbers of a real model. */
    b.len = 0;
    gb_one_tensor(&b, "blk.0.attn_k.weight", 2, ne_k, TENSOR_TYPE_F32, 320868864, 0);
    EXPECT_FAIL(&b, SLM_EFORMAT,
                "t.gguf: tensor 'blk.0.attn_k.weight': offset 320868864 + size 1179648 exceeds "
                "data size 0");
    /* overlap: a big tensor containing a small one, in either header order, and equal offsets */
    for (int order = 0; order < 3; order++) {
        b.len = 0;
        gb_header(&b, 3, 3, 0);
        gb_tensor(&b, "x", 1, ne, TENSOR_TYPE_F32, 2 * 589824);
        if (order == 0) {
            gb_tensor(&b, "a", 2, ne_k, TENSOR_TYPE_F16, 0);
            gb_tensor(&b, "b", 1, ne, TENSOR_TYPE_F32, 64);
        } else {
            gb_tensor(&b, "b", 1, ne, TENSOR_TYPE_F32, order == 1 ? 1024 : 0);
            gb_tensor(&b, "a", 2, ne_k, TENSOR_TYPE_F16, 0);
        }
        gb_pad(&b, 32);
        gb_zeros(&b, 2 * 589824 + 32);
        EXPECT_FAIL(&b, SLM_EFORMAT,
                    order == 0 ? "tensor 'b': offset 64 overlaps tensor 'a' (offset 0, size 589824)"
                    : order == 1 ? "tensor 'b': offset 1024 overlaps tensor 'a'"
                                 : "tensor 'a': offset 0 overlaps tensor 'b' (offset 0, size 32)");
    }
    /* no data section at all */
    b.len = 0;
    gb_header(&b, 3, 1, 0);
    gb_tensor(&b, "w", 1, ne, TENSOR_TYPE_F32, 0);
    EXPECT_FAIL(&b, SLM_EFORMAT, "data section missing");
    /* no tensors, no data: valid (vocabulary-only files look like this) */
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_str(&b, "general.architecture", "llama");
    f = EXPECT_OK(&b, &copy);
    ASSERT_EQ_SIZE(gguf_n_tensors(f), 0);
    ASSERT_EQ_SIZE(gguf_data_offset(f), b.len);
    gguf_close(f);
    slm_free(copy);
    /* adjacent tensors touching exactly are fine */
    b.len = 0;
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "x", 1, ne, TENSOR_TYPE_F32, 32);
    gb_tensor(&b, "y", 1, ne, TENSOR_TYPE_F32, 0);
    gb_pad(&b, 32);
    gb_zeros(&b, 64);
    f = EXPECT_OK(&b, &copy);
    gguf_close(f);
    slm_free(copy);
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* Typed gets                                                         */
/* ------------------------------------------------------------------ */

TEST(gguf_typed_get_errors_name_key_and_type)
{
    struct gb b = { 0 };
    struct gguf_file *f;
    struct slm_diag d;
    uint8_t *copy;
    uint32_t u32 = 42;
    int32_t i32;
    float f32;
    bool bv;
    struct gguf_str s;
    size_t idx;
    uint64_t n;
    int32_t neg = -1;

    gb_header(&b, 3, 0, 4);
    gb_kv_str(&b, "general.name", "x");
    gb_str(&b, "neg"), gb_u32(&b, GGUF_TYPE_INT32), gb_put(&b, &neg, 4);
    gb_str(&b, "scores"), gb_u32(&b, GGUF_TYPE_ARRAY), gb_u32(&b, GGUF_TYPE_UINT8), gb_u64(&b, 2);
    gb_zeros(&b, 2);
    gb_kv_u32(&b, "n", 5);
    f = EXPECT_OK(&b, &copy);
    slm_diag_clear(&d);
    ASSERT_ERR(gguf_get_u32(f, "general.name", &u32, &d), SLM_EFORMAT);
    ASSERT_EQ_INT(u32, 42);
    ASSERT_EQ_STR(d.msg, "t.gguf: key 'general.name': expected uint32, found string");
    ASSERT_ERR(gguf_get_u32(f, "neg", &u32, &d), SLM_EFORMAT);
    ASSERT_EQ_STR(d.msg, "t.gguf: key 'neg': expected uint32, found int32 -1");
    ASSERT_ERR(gguf_get_arr(f, "scores", GGUF_TYPE_FLOAT32, &idx, &n, &d), SLM_EFORMAT);
    ASSERT_EQ_STR(d.msg, "t.gguf: key 'scores': expected array of float32, found array of uint8");
    ASSERT_ERR(gguf_get_str(f, "n", &s, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "expected string, found uint32") != NULL);
    ASSERT_ERR(gguf_get_bool(f, "n", &bv, &d), SLM_EFORMAT);
    ASSERT_ERR(gguf_get_f32(f, "general.name", &f32, &d), SLM_EFORMAT);
    ASSERT_ERR(gguf_get_arr(f, "n", GGUF_TYPE_UINT32, &idx, &n, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "expected array of uint32, found uint32") != NULL);
    /* absent: ENOTFOUND and the diagnostic untouched */
    slm_diag_clear(&d);
    ASSERT_ERR(gguf_get_i32(f, "missing", &i32, &d), SLM_ENOTFOUND);
    ASSERT_ERR(gguf_get_str(f, "missing", &s, &d), SLM_ENOTFOUND);
    ASSERT_EQ_INT(d.code, 0);
    ASSERT_EQ_STR(d.msg, "");
    ASSERT_OK(gguf_get_arr(f, "scores", GGUF_TYPE_UINT8, &idx, &n, &d));
    ASSERT_EQ_SIZE(idx, 2);
    ASSERT_EQ_INT(n, 2);
    /* out-of-range indexes are harmless */
    ASSERT_NULL(gguf_kv_key(f, 4).ptr);
    ASSERT_EQ_INT(gguf_kv_type(f, 4), GGUF_TYPE_COUNT);
    ASSERT_NULL(gguf_kv_arr_data(f, 4));
    ASSERT_EQ_STR(gguf_type_name(GGUF_TYPE_COUNT), "unknown");
    ASSERT_EQ_STR(gguf_type_name(GGUF_TYPE_FLOAT64), "float64");
    gguf_close(f);
    slm_free(copy);
    gb_free(&b);
}

/* ------------------------------------------------------------------ */
/* G16: what gguf_open refuses to map                                 */
/* ------------------------------------------------------------------ */

TEST(gguf_g16_file_kinds_and_modes)
{
    const char *path = write_model("m.gguf");
    struct gguf_file *f;
    struct slm_diag d;
    char fifo[512], missing[512];

    snprintf(fifo, sizeof(fifo), "%s/fifo", t_tmpdir());
    snprintf(missing, sizeof(missing), "%s/missing.gguf", t_tmpdir());
    ASSERT(mkfifo(fifo, 0600) == 0);
    ASSERT_ERR(gguf_open(fifo, &f, &d), SLM_EINVAL); /* must not block */
    ASSERT(strstr(d.msg, "is a FIFO, not a regular file") != NULL);
    ASSERT_NULL(f);
    ASSERT_ERR(gguf_open(t_tmpdir(), &f, &d), SLM_EINVAL);
    ASSERT(strstr(d.msg, "a directory") != NULL);
    ASSERT_ERR(gguf_open("/dev/null", &f, &d), SLM_EINVAL);
    ASSERT_EQ_STR(d.msg, "/dev/null: is a character device, not a regular file");
    ASSERT_ERR(gguf_open(missing, &f, &d), SLM_ENOTFOUND);
    ASSERT(strstr(d.msg, "No such file") != NULL);
    ASSERT(chmod(path, 0666) == 0);
    ASSERT_ERR(gguf_open(path, &f, &d), SLM_EPERM);
    ASSERT(strstr(d.msg, "mode 0666") != NULL && strstr(d.msg, "chmod go-w") != NULL);
    ASSERT(chmod(path, 0620) == 0);
    ASSERT_ERR(gguf_open(path, &f, &d), SLM_EPERM);
    ASSERT(chmod(path, 0644) == 0);
    ASSERT_OK(gguf_open(path, &f, &d));
    gguf_close(f);
    /* an empty file and a tiny one */
    ASSERT(truncate(path, 0) == 0);
    ASSERT_ERR(gguf_open(path, &f, &d), SLM_EFORMAT);
    ASSERT(strstr(d.msg, "too small") != NULL);
}

/* ------------------------------------------------------------------ */
/* G17: allocation-failure torture                                    */
/* ------------------------------------------------------------------ */

TEST(gguf_g17_alloc_failure_torture_open)
{
    const char *path = write_model("m.gguf");
    struct gguf_file *f = NULL;
    struct slm_diag d;
    uint64_t n;
    int rc = SLM_ENOMEM;

    for (n = 1; n < 1000; n++) {
        slm_alloc_fail_at(n);
        rc = gguf_open(path, &f, &d);
        slm_alloc_fail_at(0);
        if (rc == 0) break;
        if (rc != SLM_ENOMEM)
            t_fail(__FILE__, __LINE__, "N=%llu: %s: %s", (unsigned long long)n, slm_strerror(rc),
                   d.msg);
        ASSERT_NULL(f);
        ASSERT(strstr(d.msg, "out of memory") != NULL);
    }
    ASSERT_OK(rc);
    ASSERT(n > 3); /* file object, key array, indexes, string offsets, tensors, ... */
    gguf_close(f);
    LEAK_CHECK();
}

TEST(gguf_g17_alloc_failure_torture_writer)
{
    static struct model_data md;
    struct gguf_writer *w = NULL;
    struct slm_diag d;
    char path[512];
    uint64_t n;
    int rc = SLM_ENOMEM;

    snprintf(path, sizeof(path), "%s/w.gguf", t_tmpdir());
    for (n = 1; n < 10000; n++) {
        w = make_writer(&md); /* not under injection: the helper asserts success */
        slm_alloc_fail_at(n);
        rc = gguf_writer_write(w, path, &d);
        slm_alloc_fail_at(0);
        gguf_writer_free(w);
        if (rc == 0) break;
        ASSERT_ERR(rc, SLM_ENOMEM);
        ASSERT_EQ_INT(dir_entries(t_tmpdir()), 0);
    }
    ASSERT_OK(rc);
    ASSERT(n > 1);
    /* Building a writer under injection: each step fails cleanly or succeeds. */
    for (n = 1; n < 10000; n++) {
        float v[4] = { 1, 2, 3, 4 };
        uint64_t ne[1] = { 4 };
        const char *strs[2] = { "a", "b" };

        slm_alloc_fail_at(n);
        w = gguf_writer_new();
        rc = w == NULL ? SLM_ENOMEM : 0;
        if (rc == 0) rc = gguf_writer_set_u32(w, "a", 1);
        if (rc == 0) rc = gguf_writer_set_str(w, "b", "x", 1);
        if (rc == 0) rc = gguf_writer_set_arr_str(w, "c", strs, NULL, 2);
        if (rc == 0) rc = gguf_writer_add_tensor(w, "t", TENSOR_TYPE_F32, 1, ne, v, sizeof(v));
        slm_alloc_fail_at(0);
        gguf_writer_free(w);
        if (rc == 0) break;
        ASSERT_ERR(rc, SLM_ENOMEM);
    }
    ASSERT_OK(rc);
    LEAK_CHECK();
}

/* ------------------------------------------------------------------ */
/* Writer failures leave nothing behind                               */
/* ------------------------------------------------------------------ */

TEST(gguf_writer_failure_leaves_nothing)
{
    static struct model_data md;
    struct gguf_writer *w = make_writer(&md);
    struct slm_diag d;
    char path[512], sub[512], target[512];
    struct rlimit rl = { 4096, 4096 };
    uint8_t *bytes;
    size_t len;
    int fd;

    /* A directory that does not exist. */
    snprintf(path, sizeof(path), "%s/no/such/dir/m.gguf", t_tmpdir());
    ASSERT_ERR(gguf_writer_write(w, path, &d), SLM_ENOTFOUND);
    ASSERT(strstr(d.msg, "cannot create a temporary file") != NULL);
    ASSERT_EQ_INT(dir_entries(t_tmpdir()), 0);
    /* The target is a directory: rename fails after the data was written. */
    snprintf(sub, sizeof(sub), "%s/dir.gguf", t_tmpdir());
    ASSERT(mkdir(sub, 0700) == 0);
    ASSERT(gguf_writer_write(w, sub, &d) < 0);
    ASSERT(strstr(d.msg, "rename") != NULL);
    ASSERT_EQ_INT(dir_entries(t_tmpdir()), 1);
    ASSERT_EQ_INT(dir_entries(sub), 0);
    /* The disk fills up (file size limit): the old file stays as it was. */
    snprintf(target, sizeof(target), "%s/old.gguf", t_tmpdir());
    fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT(fd >= 0);
    ASSERT(write(fd, "old", 3) == 3);
    close(fd);
    signal(SIGXFSZ, SIG_IGN);
    ASSERT(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    ASSERT(gguf_writer_write(w, target, &d) < 0);
    ASSERT(strstr(d.msg, "cannot write") != NULL);
    ASSERT_EQ_INT(dir_entries(t_tmpdir()), 2);
    bytes = slurp(target, &len);
    ASSERT(len == 3 && memcmp(bytes, "old", 3) == 0);
    slm_free(bytes);
    gguf_writer_free(w);
}

/* ------------------------------------------------------------------ */
/* Random corruption: never a crash, always a clean answer            */
/* ------------------------------------------------------------------ */

TEST(gguf_random_byte_mutations)
{
    const char *path = write_model("m.gguf");
    struct gb b = { 0 };
    struct slm_rng rng;
    size_t len, header_len;
    struct gguf_file *f;
    struct slm_diag d;

    b.p = slurp(path, &len);
    b.len = b.cap = len;
    ASSERT_OK(gguf_open(path, &f, &d));
    header_len = gguf_data_offset(f);
    gguf_close(f);
    slm_rng_seed(&rng, 12345);
    for (int iter = 0; iter < 3000; iter++) {
        size_t pos[4];
        uint8_t old[4], *copy;
        int n = 1 + (int)slm_rng_below(&rng, 4);
        int rc;

        for (int k = 0; k < n; k++) {
            pos[k] = (size_t)slm_rng_below(&rng, header_len);
            old[k] = b.p[pos[k]];
            b.p[pos[k]] = (uint8_t)slm_rng_next(&rng);
        }
        rc = gb_open_n(&b, len, &copy, &f, &d);
        if (rc == 0) {
            for (size_t i = 0; i < gguf_n_tensors(f); i++)
                ASSERT(gguf_data_offset(f) + gguf_tensor_at(f, i)->offset +
                           gguf_tensor_at(f, i)->size <=
                       len);
            gguf_close(f);
        } else {
            ASSERT_NULL(f);
            check_msg(__FILE__, __LINE__, &d, "t.gguf", NULL);
        }
        slm_free(copy);
        for (int k = n - 1; k >= 0; k--)
            b.p[pos[k]] = old[k];
    }
    gb_free(&b);
    LEAK_CHECK();
}
