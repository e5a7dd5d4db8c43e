/*
 * gguf_write.c - the GGUF writer (see gguf.h, "writing").
 *
 * The writer keeps every key/value already serialized (the bytes that follow
 * the type field on disk), so writing is a concatenation and copying the
 * metadata of an open file is a memcpy per key. Tensors are laid out in the
 * order they were added, each at the next multiple of the alignment, padding
 * zeroed, with padding after the last tensor too (as llama.cpp writes): the
 * same calls always give the same bytes.
 *
 * The file appears atomically: the bytes go to PATH.tmp.XXXXXX in the target
 * directory, which is fsynced, closed and renamed over PATH, and then the
 * directory is fsynced. On any failure the temporary file is unlinked and
 * PATH is untouched.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/str.h"
#include "engine/gguf.h"
#include "engine/gguf_int.h"

/* Bytes collected before a write(2). */
#define GW_BUF_SIZE (64u << 10)

struct gw_kv {
    char *key;
    size_t key_len;
    enum gguf_type type;
    uint8_t *val; /* serialized value (after the type field) */
    size_t val_len;
};

struct gw_tensor {
    char *name;
    size_t name_len;
    enum tensor_type type;
    uint32_t n_dims;
    uint64_t ne[4];
    const void *data; /* borrowed */
    size_t size;
    uint64_t offset; /* computed by gguf_writer_write */
};

struct gguf_writer {
    struct gw_kv *kv;
    size_t n_kv, kv_cap;
    struct gw_tensor *tensors;
    size_t n_tensors, tensors_cap;
    struct gguf_name_index kv_index;
    struct gguf_name_index tensor_index;
};

static struct gguf_str gw_kv_name_at(const void *ctx, size_t i)
{
    const struct gguf_writer *w = ctx;
    struct gguf_str s = { w->kv[i].key, w->kv[i].key_len };

    return s;
}

static struct gguf_str gw_tensor_name_at(const void *ctx, size_t i)
{
    const struct gguf_writer *w = ctx;
    struct gguf_str s = { w->tensors[i].name, w->tensors[i].name_len };

    return s;
}

/* Returns a new empty writer, or NULL on ENOMEM. */
struct gguf_writer *gguf_writer_new(void)
{
    struct gguf_writer *w = slm_calloc(1, sizeof(*w));

    if (w == NULL) return NULL;
    gguf__index_init(&w->kv_index);
    gguf__index_init(&w->tensor_index);
    return w;
}

/* Frees w and its copies; borrowed tensor data is not touched. NULL is a no-op. */
void gguf_writer_free(struct gguf_writer *w)
{
    if (w == NULL) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        slm_free(w->kv[i].key);
        slm_free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        slm_free(w->tensors[i].name);
    slm_free(w->kv);
    slm_free(w->tensors);
    gguf__index_fini(&w->kv_index);
    gguf__index_fini(&w->tensor_index);
    slm_free(w);
}

/* Grows an array of elements of size esz to hold n + 1; 0 or SLM_ENOMEM. */
static int grow(void **arr, size_t *cap, size_t n, size_t esz)
{
    size_t new_cap, bytes;
    void *p;

    if (n < *cap) return 0;
    new_cap = *cap < 16 ? 16 : *cap * 2;
    if (!slm_mul_size(new_cap, esz, &bytes)) return SLM_ENOMEM;
    p = slm_realloc(*arr, bytes);
    if (p == NULL) return SLM_ENOMEM;
    *arr = p;
    *cap = new_cap;
    return 0;
}

/*
 * Stores key = (type, val[0..val_len)), taking val (freed on failure too).
 * A key set before gets the new value. Keys must be non-empty valid UTF-8 of
 * at most SLM_LIMIT_GGUF_KEY bytes (SLM_EINVAL otherwise).
 */
static int gw_set(struct gguf_writer *w, const char *key, enum gguf_type type, uint8_t *val,
                  size_t val_len)
{
    size_t key_len = strlen(key);
    struct gw_kv *kv;
    int64_t i;
    int rc;

    if (key_len == 0 || key_len > SLM_LIMIT_GGUF_KEY || !slm_utf8_valid(key, key_len)) {
        slm_free(val);
        return SLM_EINVAL;
    }
    i = gguf__index_find(&w->kv_index, gw_kv_name_at, w, key, key_len);
    if (i >= 0) {
        slm_free(w->kv[i].val);
        w->kv[i].type = type;
        w->kv[i].val = val;
        w->kv[i].val_len = val_len;
        return 0;
    }
    rc = w->n_kv >= SLM_LIMIT_GGUF_KV ? SLM_ELIMIT : 0;
    if (rc == 0) rc = grow((void **)&w->kv, &w->kv_cap, w->n_kv, sizeof(*w->kv));
    if (rc == 0) rc = gguf__index_reserve(&w->kv_index, w->n_kv + 1, gw_kv_name_at, w, w->n_kv);
    if (rc < 0) {
        slm_free(val);
        return rc;
    }
    kv = &w->kv[w->n_kv];
    kv->key = slm_strndup(key, key_len);
    if (kv->key == NULL) {
        slm_free(val);
        return SLM_ENOMEM;
    }
    kv->key_len = key_len;
    kv->type = type;
    kv->val = val;
    kv->val_len = val_len;
    gguf__index_insert(&w->kv_index, gw_kv_name_at, w, w->n_kv);
    w->n_kv++;
    return 0;
}

/* Copies n bytes into a new buffer and stores it as the value of key. */
static int gw_set_copy(struct gguf_writer *w, const char *key, enum gguf_type type, const void *p,
                       size_t n)
{
    uint8_t *val = slm_malloc(n);

    if (val == NULL) return SLM_ENOMEM;
    memcpy(val, p, n);
    return gw_set(w, key, type, val, n);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    return gw_set_copy(w, key, GGUF_TYPE_UINT32, &v, sizeof(v));
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    return gw_set_copy(w, key, GGUF_TYPE_INT32, &v, sizeof(v));
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    return gw_set_copy(w, key, GGUF_TYPE_UINT64, &v, sizeof(v));
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
    return gw_set_copy(w, key, GGUF_TYPE_FLOAT32, &v, sizeof(v));
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;

    return gw_set_copy(w, key, GGUF_TYPE_BOOL, &b, 1);
}

/* Stores a string value (copied): SLM_ELIMIT beyond SLM_LIMIT_GGUF_STR bytes. */
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *s, size_t len)
{
    uint64_t len64 = len;
    uint8_t *val;

    if (len > SLM_LIMIT_GGUF_STR) return SLM_ELIMIT;
    if (s == NULL && len != 0) return SLM_EINVAL;
    val = slm_malloc(8 + len);
    if (val == NULL) return SLM_ENOMEM;
    memcpy(val, &len64, 8);
    if (len != 0) memcpy(val + 8, s, len);
    return gw_set(w, key, GGUF_TYPE_STRING, val, 8 + len);
}

/* Stores an array of n numbers (or bools) of elem_type, copied from data. */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem_type,
                        const void *data, size_t n)
{
    size_t esz = gguf__type_size(elem_type), bytes, total;
    uint32_t et = (uint32_t)elem_type;
    uint64_t n64 = n;
    uint8_t *val;

    if (esz == 0 || (data == NULL && n != 0)) return SLM_EINVAL;
    if (n > SLM_LIMIT_GGUF_ARRAY) return SLM_ELIMIT;
    bytes = n * esz; /* n <= 2^24, esz <= 8 */
    total = 12 + bytes;
    val = slm_malloc(total);
    if (val == NULL) return SLM_ENOMEM;
    memcpy(val, &et, 4);
    memcpy(val + 4, &n64, 8);
    if (bytes != 0) memcpy(val + 12, data, bytes);
    return gw_set(w, key, GGUF_TYPE_ARRAY, val, total);
}

/* Stores an array of n strings (copied); lens NULL means NUL-terminated strings. */
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
                            const size_t *lens, size_t n)
{
    uint32_t et = GGUF_TYPE_STRING;
    uint64_t n64 = n;
    size_t total = 12, pos;
    uint8_t *val;

    if (strs == NULL && n != 0) return SLM_EINVAL;
    if (n > SLM_LIMIT_GGUF_ARRAY) return SLM_ELIMIT;
    for (size_t j = 0; j < n; j++) {
        size_t len = lens != NULL ? lens[j] : strlen(strs[j]);

        if (len > SLM_LIMIT_GGUF_STR) return SLM_ELIMIT;
        if (!slm_add_size(total, 8, &total) || !slm_add_size(total, len, &total)) return SLM_ELIMIT;
    }
    val = slm_malloc(total);
    if (val == NULL) return SLM_ENOMEM;
    memcpy(val, &et, 4);
    memcpy(val + 4, &n64, 8);
    pos = 12;
    for (size_t j = 0; j < n; j++) {
        size_t len = lens != NULL ? lens[j] : strlen(strs[j]);
        uint64_t len64 = len;

        memcpy(val + pos, &len64, 8);
        if (len != 0) memcpy(val + pos + 8, strs[j], len);
        pos += 8 + len;
    }
    return gw_set(w, key, GGUF_TYPE_ARRAY, val, total);
}

/* Copies every key/value of src, in its order (a key already set is replaced). */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_file *src)
{
    char key[SLM_LIMIT_GGUF_KEY + 1];

    for (size_t i = 0; i < gguf_n_kv(src); i++) {
        struct gguf_str k = gguf_kv_key(src, i);
        size_t len;
        const uint8_t *raw = gguf__kv_raw(src, i, &len);
        int rc;

        /* The reader guarantees 1..limit bytes and no NUL. */
        memcpy(key, k.ptr, k.len);
        key[k.len] = '\0';
        rc = gw_set_copy(w, key, gguf_kv_type(src, i), raw, len);
        if (rc < 0) return rc;
    }
    return 0;
}

/*
 * Adds a tensor (name copied, data borrowed until gguf_writer_write returns).
 * SLM_EINVAL for an empty or over-long name, bad shape, unknown type, or a
 * size that does not match type and shape; SLM_EEXIST for a duplicate name.
 */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum tensor_type type,
                           uint32_t n_dims, const uint64_t *ne, const void *data, size_t size)
{
    size_t name_len = strlen(name);
    uint64_t n = 1, row_size, bytes;
    struct gw_tensor *t;
    int rc;

    if (name_len == 0 || name_len >= SLM_LIMIT_GGUF_TENSOR_NAME) return SLM_EINVAL;
    if (n_dims == 0 || n_dims > SLM_LIMIT_GGUF_DIMS || ne == NULL || (data == NULL && size != 0))
        return SLM_EINVAL;
    for (uint32_t k = 0; k < n_dims; k++)
        if (ne[k] == 0 || ne[k] > INT64_MAX || !slm_mul_u64(n, ne[k], &n) || n > INT64_MAX)
            return SLM_EINVAL;
    if (tensor_row_size(type, ne[0], &row_size) < 0 || !slm_mul_u64(row_size, n / ne[0], &bytes) ||
        bytes != size)
        return SLM_EINVAL;
    if (gguf__index_find(&w->tensor_index, gw_tensor_name_at, w, name, name_len) >= 0)
        return SLM_EEXIST;
    rc = w->n_tensors >= SLM_LIMIT_GGUF_TENSORS ? SLM_ELIMIT : 0;
    if (rc == 0)
        rc = grow((void **)&w->tensors, &w->tensors_cap, w->n_tensors, sizeof(*w->tensors));
    if (rc == 0)
        rc = gguf__index_reserve(&w->tensor_index, w->n_tensors + 1, gw_tensor_name_at, w,
                                 w->n_tensors);
    if (rc < 0) return rc;
    t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof(*t));
    t->name = slm_strndup(name, name_len);
    if (t->name == NULL) return SLM_ENOMEM;
    t->name_len = name_len;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t k = 0; k < 4; k++)
        t->ne[k] = k < n_dims ? ne[k] : 1;
    t->data = data;
    t->size = size;
    gguf__index_insert(&w->tensor_index, gw_tensor_name_at, w, w->n_tensors);
    w->n_tensors++;
    return 0;
}

/* ---- output ---- */

struct gw_out {
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t written; /* bytes of the file so far, buffered included */
    int err;          /* errno of the first failure */
};

/* Writes p[0..n) to fd completely; 0 or an errno value. */
static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;

    while (n > 0) {
        ssize_t got = write(fd, b, n);

        if (got < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (got == 0) return EIO;
        b += got;
        n -= (size_t)got;
    }
    return 0;
}

static void out_flush(struct gw_out *o)
{
    if (o->err == 0 && o->len > 0) o->err = write_all(o->fd, o->buf, o->len);
    o->len = 0;
}

/* Appends n bytes (buffered for small pieces, direct for large ones). */
static void out_put(struct gw_out *o, const void *p, size_t n)
{
    if (o->err != 0) return;
    o->written += n;
    if (n >= GW_BUF_SIZE) {
        out_flush(o);
        if (o->err == 0) o->err = write_all(o->fd, p, n);
        return;
    }
    if (o->len + n > GW_BUF_SIZE) out_flush(o);
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static void out_u32(struct gw_out *o, uint32_t v)
{
    out_put(o, &v, sizeof(v));
}

static void out_u64(struct gw_out *o, uint64_t v)
{
    out_put(o, &v, sizeof(v));
}

/* Zero bytes up to the next multiple of align. */
static void out_pad(struct gw_out *o, size_t align)
{
    static const uint8_t zeros[SLM_LIMIT_GGUF_ALIGNMENT];
    size_t pad = (size_t)((align - o->written % align) % align);

    out_put(o, zeros, pad);
}

/* Finds the alignment the file will use: general.alignment if set, else 32. */
static int gw_alignment(const struct gguf_writer *w, const char *path, size_t *align,
                        struct slm_diag *d)
{
    int64_t i = gguf__index_find(&w->kv_index, gw_kv_name_at, w, "general.alignment", 17);
    uint32_t a;

    *align = GGUF_DEFAULT_ALIGNMENT;
    if (i < 0) return 0;
    if (w->kv[i].type != GGUF_TYPE_UINT32)
        return slm_diag_set(d, SLM_EINVAL, "%s: general.alignment has type %s, must be uint32",
                            path, gguf_type_name(w->kv[i].type));
    memcpy(&a, w->kv[i].val, sizeof(a));
    if (a == 0 || (a & (a - 1)) != 0 || a > SLM_LIMIT_GGUF_ALIGNMENT)
        return slm_diag_set(d, SLM_EINVAL,
                            "%s: general.alignment %" PRIu32 " is not a power of two in 1..%u",
                            path, a, SLM_LIMIT_GGUF_ALIGNMENT);
    *align = a;
    return 0;
}

/* Serializes the whole file to o. */
static void gw_emit(struct gguf_writer *w, struct gw_out *o, size_t align)
{
    uint64_t offset = 0;

    out_u32(o, 0x46554747u);
    out_u32(o, 3);
    out_u64(o, w->n_tensors);
    out_u64(o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        out_u64(o, w->kv[i].key_len);
        out_put(o, w->kv[i].key, w->kv[i].key_len);
        out_u32(o, (uint32_t)w->kv[i].type);
        out_put(o, w->kv[i].val, w->kv[i].val_len);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        struct gw_tensor *t = &w->tensors[i];

        t->offset = offset;
        out_u64(o, t->name_len);
        out_put(o, t->name, t->name_len);
        out_u32(o, t->n_dims);
        for (uint32_t k = 0; k < t->n_dims; k++)
            out_u64(o, t->ne[k]);
        out_u32(o, (uint32_t)t->type);
        out_u64(o, offset);
        offset += t->size;
        offset += (align - offset % align) % align;
    }
    out_pad(o, align);
    for (size_t i = 0; i < w->n_tensors; i++) {
        out_put(o, w->tensors[i].data, w->tensors[i].size);
        out_pad(o, align);
    }
    out_flush(o);
}


static int gw_errno_diag(struct slm_diag *d, const char *path, const char *what, int errnum)
{
    char buf[128];
    const char *msg = strerror_r(errnum, buf, sizeof(buf));

    return slm_diag_set(d, errnum == ENOMEM ? SLM_ENOMEM : slm_err_from_errno(errnum), "%s: %s: %s",
                        path, what, msg);
}

/*
 * Writes the file atomically (see the top of this file). Returns 0, or an
 * error with d naming the path and the failed step; PATH is then untouched
 * and no temporary file remains.
 */
int gguf_writer_write(struct gguf_writer *w, const char *path, struct slm_diag *d)
{
    struct gw_out o = { .fd = -1 };
    size_t align, tmp_len;
    char *tmp = NULL, *dir = NULL;
    int rc;

    if ((rc = gw_alignment(w, path, &align, d)) < 0) return rc;
    if (!slm_add_size(strlen(path), sizeof(".tmp.XXXXXX"), &tmp_len))
        return slm_diag_set(d, SLM_EINVAL, "%s: path too long", path);
    /* Everything that can run out of memory happens before the file exists. */
    tmp = slm_malloc(tmp_len);
    o.buf = slm_malloc(GW_BUF_SIZE);
    dir = slm_path_dir(path);
    if (tmp == NULL || o.buf == NULL || dir == NULL) {
        rc = slm_diag_set(d, SLM_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    snprintf(tmp, tmp_len, "%s.tmp.XXXXXX", path);
    o.fd = mkostemp(tmp, O_CLOEXEC);
    if (o.fd < 0) {
        rc = gw_errno_diag(d, path, "cannot create a temporary file", errno);
        goto out;
    }
    gw_emit(w, &o, align);
    if (o.err == 0 && fchmod(o.fd, 0644) < 0) o.err = errno;
    if (o.err == 0 && fsync(o.fd) < 0) o.err = errno;
    if (close(o.fd) < 0 && o.err == 0) o.err = errno;
    o.fd = -1;
    if (o.err != 0) {
        rc = gw_errno_diag(d, path, "cannot write", o.err);
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) < 0) {
        rc = gw_errno_diag(d, path, "cannot rename the temporary file into place", errno);
        unlink(tmp);
        goto out;
    }
    rc = slm_sync_dir(dir);
    if (rc != 0) rc = gw_errno_diag(d, path, "cannot sync the directory", rc);
out:
    slm_free(dir);
    slm_free(o.buf);
    slm_free(tmp);
    return rc;
}
