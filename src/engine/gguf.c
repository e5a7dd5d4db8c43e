/*
 * gguf.c - the GGUF reader: open, validate, and hand out metadata and tensors
 * (see gguf.h for the format and the contract).
 *
 * Validation happens once, in gguf_parse(), before anything is handed out:
 * every read goes through the cursor helpers (rd_*), which check the bytes
 * left; every count is compared with what the remaining bytes could hold
 * before anything is allocated for it (so a hostile count never turns into a
 * huge allocation); every size is computed with overflow-checked arithmetic
 * and compared with a limit of core/limits.h. After a successful open the
 * accessors trust the stored offsets.
 *
 * Allocations per file: the key array, the tensor array, two name indexes,
 * one offset table per array of strings (8 bytes per element, at most the
 * bytes that array occupies in the file) and a temporary sort array. All are
 * bounded by a limit and by the file size.
 */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/rand.h"
#include "core/str.h"
#include "engine/gguf_int.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "GGUF is read in place: little-endian only");

#define GGUF_MAGIC            0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_HEADER_SIZE      24u         /* magic, version, n_tensors, n_kv */
/* The fewest bytes one key/value can occupy: key length, 1-byte key, type, 1-byte value. */
#define GGUF_KV_MIN_BYTES     14u
/* The fewest bytes one tensor info can occupy: name length, 1-byte name, n_dims, ne[0], type,
 * offset. */
#define GGUF_TENSOR_MIN_BYTES 33u
/* Bytes of a file name kept for messages (the tail of a longer path). */
#define GGUF_NAME_MAX         96u
/* Bytes of a key or tensor name quoted in messages. */
#define GGUF_QUOTE_MAX        64u

struct gguf_kv {
    struct gguf_str key;
    enum gguf_type type;
    enum gguf_type arr_type; /* GGUF_TYPE_COUNT unless type is ARRAY */
    uint64_t arr_n;
    const uint8_t *raw; /* the value as stored, after the type field */
    size_t raw_len;
    const uint8_t *val;    /* scalars: the bytes; arrays of numbers: the first element */
    struct gguf_str str;   /* STRING values */
    uint64_t *str_offsets; /* arrays of strings: file offset of each element's length */
};

struct gguf_file {
    const uint8_t *base;
    size_t size;
    bool mapped;
    struct gguf_identity id; /* of the file mapped (zero for gguf_open_memory) */
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    size_t data_size;
    size_t n_kv;
    struct gguf_kv *kv;
    size_t n_tensors;
    struct gguf_tensor *tensors;
    struct gguf_name_index kv_index;
    struct gguf_name_index tensor_index;
    char name[GGUF_NAME_MAX + 1];
};

/* ================================================================== */
/* Name index (shared with the writer through gguf_int.h)             */
/* ================================================================== */

/* 64-bit FNV-1a from a per-table seed, finished with murmur3's fmix64. */
static uint64_t name_hash(uint64_t seed, const char *p, size_t len)
{
    uint64_t h = slm_fnv1a(SLM_FNV1A_INIT ^ seed, p, len);

    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Sets up an empty index with a random seed (a fixed one if getrandom fails). */
void gguf__index_init(struct gguf_name_index *ix)
{
    ix->slots = NULL;
    ix->cap = 0;
    if (slm_random_bytes(&ix->seed, sizeof(ix->seed)) < 0) ix->seed = 0x9e3779b97f4a7c15ull;
}

/* Frees the slots; the index is empty afterwards. */
void gguf__index_fini(struct gguf_name_index *ix)
{
    slm_free(ix->slots);
    ix->slots = NULL;
    ix->cap = 0;
}

/* Places index i into the first free slot of its probe chain. */
static void index_place(uint32_t *slots, size_t cap, uint64_t seed, struct gguf_str name, size_t i)
{
    size_t mask = cap - 1;
    size_t s = (size_t)name_hash(seed, name.ptr, name.len) & mask;

    while (slots[s] != 0)
        s = (s + 1) & mask;
    slots[s] = (uint32_t)(i + 1);
}

/* Grows the table to hold n names (load factor at most 1/2); 0 or SLM_ENOMEM. */
int gguf__index_reserve(struct gguf_name_index *ix, size_t n, gguf_name_at_fn *at, const void *ctx,
                        size_t n_old)
{
    size_t cap = 8;
    uint32_t *slots;

    if (n > UINT32_MAX - 1) return SLM_ENOMEM;
    while (cap < 2 * n)
        cap *= 2;
    if (cap <= ix->cap) return 0;
    slots = slm_calloc(cap, sizeof(*slots));
    if (slots == NULL) return SLM_ENOMEM;
    for (size_t i = 0; i < n_old; i++)
        index_place(slots, cap, ix->seed, at(ctx, i), i);
    slm_free(ix->slots);
    ix->slots = slots;
    ix->cap = cap;
    return 0;
}

/* Looks p[0..len) up: its index, or -1. */
int64_t gguf__index_find(const struct gguf_name_index *ix, gguf_name_at_fn *at, const void *ctx,
                         const char *p, size_t len)
{
    size_t mask, s;

    if (ix->cap == 0) return -1;
    mask = ix->cap - 1;
    s = (size_t)name_hash(ix->seed, p, len) & mask;
    while (ix->slots[s] != 0) {
        size_t i = ix->slots[s] - 1;
        struct gguf_str name = at(ctx, i);

        if (name.len == len && memcmp(name.ptr, p, len) == 0) return (int64_t)i;
        s = (s + 1) & mask;
    }
    return -1;
}

/* Inserts name i; the caller reserved room and checked it is absent. */
void gguf__index_insert(struct gguf_name_index *ix, gguf_name_at_fn *at, const void *ctx, size_t i)
{
    SLM_ASSERT(ix->cap != 0);
    index_place(ix->slots, ix->cap, ix->seed, at(ctx, i), i);
}

/* Bytes of a scalar of type t on disk (0: not a fixed-size scalar). */
size_t gguf__type_size(enum gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    case GGUF_TYPE_STRING:
    case GGUF_TYPE_ARRAY:
    case GGUF_TYPE_COUNT:
        break;
    }
    return 0;
}

/* Returns the name of a value type ("uint32", "string", ...) or "unknown". */
const char *gguf_type_name(enum gguf_type t)
{
    static const char *const names[GGUF_TYPE_COUNT] = {
        "uint8", "int8",   "uint16", "int16",  "uint32", "int32",   "float32",
        "bool",  "string", "array",  "uint64", "int64",  "float64",
    };

    if ((unsigned)t >= GGUF_TYPE_COUNT) return "unknown";
    return names[t];
}

static struct gguf_str kv_name_at(const void *ctx, size_t i)
{
    const struct gguf_file *f = ctx;

    return f->kv[i].key;
}

static struct gguf_str tensor_name_at(const void *ctx, size_t i)
{
    const struct gguf_file *f = ctx;

    return f->tensors[i].name;
}

/* ================================================================== */
/* Parsing                                                            */
/* ================================================================== */

enum parse_section { SECTION_HEADER, SECTION_KV, SECTION_TENSOR, SECTION_DATA };

struct parser {
    struct gguf_file *f;
    struct slm_diag *d;
    size_t pos;
    enum parse_section section;
    size_t index;        /* of the key or tensor being read */
    struct gguf_str cur; /* its name, once read (len 0 before) */
};

/*
 * Writes s[0..len) into out (size n >= 8) for a one-line message: printable
 * ASCII as is, everything else as \xNN, at most GGUF_QUOTE_MAX input bytes
 * followed by "..." when longer.
 */
static void quote(char *out, size_t n, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    size_t shown = len < GGUF_QUOTE_MAX ? len : GGUF_QUOTE_MAX;

    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            if (o + 1 >= n - 4) break;
            out[o++] = (char)c;
        } else {
            if (o + 4 >= n - 4) break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (shown < len) {
        out[o++] = '.';
        out[o++] = '.';
        out[o++] = '.';
    }
    out[o] = '\0';
}

/* Describes where the parser is: "header", "key 'x'", "key #3", "tensor 'y'", ... */
static void parser_where(const struct parser *p, char *out, size_t n)
{
    char q[GGUF_QUOTE_MAX * 4 + 8];
    const char *what = p->section == SECTION_KV ? "key" : "tensor";

    switch (p->section) {
    case SECTION_HEADER:
        snprintf(out, n, "header");
        return;
    case SECTION_DATA:
        snprintf(out, n, "data");
        return;
    case SECTION_KV:
    case SECTION_TENSOR:
        break;
    }
    if (p->cur.len == 0) {
        snprintf(out, n, "%s #%zu", what, p->index);
        return;
    }
    quote(q, sizeof(q), p->cur.ptr, p->cur.len);
    snprintf(out, n, "%s '%s'", what, q);
}

/* Records "FILE: WHERE: message" in the diagnostic and returns code. */
SLM_PRINTF(3, 4) static int perr(const struct parser *p, int code, const char *fmt, ...)
{
    char where[GGUF_QUOTE_MAX * 4 + 32];
    char msg[SLM_DIAG_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    parser_where(p, where, sizeof(where));
    return slm_diag_set(p->d, code, "%s: %s: %s", p->f->name, where, msg);
}

static size_t rd_left(const struct parser *p)
{
    return p->f->size - p->pos;
}

/* Returns the next n bytes and advances, or NULL after recording a truncation. */
static const uint8_t *rd_bytes(struct parser *p, size_t n, const char *what)
{
    const uint8_t *b;

    if (n > rd_left(p)) {
        perr(p, SLM_EFORMAT,
             "%s needs %zu bytes at offset %zu but the file ends at %zu (truncated?)", what, n,
             p->pos, p->f->size);
        return NULL;
    }
    b = p->f->base + p->pos;
    p->pos += n;
    return b;
}

static int rd_u32(struct parser *p, uint32_t *out, const char *what)
{
    const uint8_t *b = rd_bytes(p, sizeof(*out), what);

    if (b == NULL) return SLM_EFORMAT;
    memcpy(out, b, sizeof(*out));
    return 0;
}

static int rd_u64(struct parser *p, uint64_t *out, const char *what)
{
    const uint8_t *b = rd_bytes(p, sizeof(*out), what);

    if (b == NULL) return SLM_EFORMAT;
    memcpy(out, b, sizeof(*out));
    return 0;
}

/*
 * Reads a string (u64 length + bytes) of at most limit bytes: 0, SLM_ELIMIT or
 * SLM_EFORMAT. The limit is checked before the bytes left so that a small file
 * can test it.
 */
static int rd_str(struct parser *p, struct gguf_str *out, uint64_t limit, const char *what)
{
    uint64_t len;
    int rc = rd_u64(p, &len, what);

    if (rc < 0) return rc;
    if (len > limit)
        return perr(p, SLM_ELIMIT, "%s length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes",
                    what, len, limit);
    if (len > rd_left(p))
        return perr(p, SLM_EFORMAT,
                    "%s length %" PRIu64 " at offset %zu exceeds the %zu bytes left in the file",
                    what, len, p->pos - 8, rd_left(p));
    out->ptr = (const char *)p->f->base + p->pos;
    out->len = (size_t)len;
    p->pos += (size_t)len;
    return 0;
}

/* Reads and checks the magic, the version and the two counts. */
static int parse_header(struct parser *p, uint64_t *n_tensors, uint64_t *n_kv)
{
    uint32_t magic, version;
    size_t left;
    int rc;

    if ((rc = rd_u32(p, &magic, "magic")) < 0) return rc;
    if (magic != GGUF_MAGIC) {
        char q[40];

        quote(q, sizeof(q), (const char *)p->f->base, 4);
        return perr(p, SLM_EFORMAT, "bad magic '%s' (expected 'GGUF'): not a GGUF file", q);
    }
    if ((rc = rd_u32(p, &version, "version")) < 0) return rc;
    if (version == 0) return perr(p, SLM_EFORMAT, "version 0 is not a GGUF version");
    if ((version & 0xffffu) == 0)
        return perr(p, SLM_EUNSUPPORTED,
                    "version 0x%08" PRIx32 " looks byte-swapped: big-endian GGUF is not supported",
                    version);
    if (version == 1)
        return perr(
            p, SLM_EUNSUPPORTED,
            "GGUF version 1 is not supported (only 2 and 3): convert the model again with a "
            "current llama.cpp");
    if (version > 3)
        return perr(p, SLM_EUNSUPPORTED,
                    "GGUF version %" PRIu32 " is newer than this build supports (2 and 3)",
                    version);
    p->f->version = version;
    if ((rc = rd_u64(p, n_tensors, "n_tensors")) < 0 || (rc = rd_u64(p, n_kv, "n_kv")) < 0)
        return rc;
    if (*n_kv > SLM_LIMIT_GGUF_KV)
        return perr(p, SLM_ELIMIT, "n_kv %" PRIu64 " exceeds the limit of %u", *n_kv,
                    SLM_LIMIT_GGUF_KV);
    if (*n_tensors > SLM_LIMIT_GGUF_TENSORS)
        return perr(p, SLM_ELIMIT, "n_tensors %" PRIu64 " exceeds the limit of %u", *n_tensors,
                    SLM_LIMIT_GGUF_TENSORS);
    /* Both counts are small now, so this cannot overflow; no allocation happens before it. */
    left = rd_left(p);
    if (*n_kv * GGUF_KV_MIN_BYTES + *n_tensors * GGUF_TENSOR_MIN_BYTES > left)
        return perr(p, SLM_EFORMAT,
                    "n_kv %" PRIu64 " and n_tensors %" PRIu64 " need at least %" PRIu64
                    " bytes but only %zu are left (truncated?)",
                    *n_kv, *n_tensors,
                    *n_kv * GGUF_KV_MIN_BYTES + *n_tensors * GGUF_TENSOR_MIN_BYTES, left);
    return 0;
}

/* Checks a key: not empty (already), no NUL, valid UTF-8, not a duplicate. */
static int check_key(struct parser *p, struct gguf_str key)
{
    int64_t other;

    if (memchr(key.ptr, '\0', key.len) != NULL)
        return perr(p, SLM_EFORMAT, "key contains a NUL byte");
    if (!slm_utf8_valid(key.ptr, key.len)) return perr(p, SLM_EFORMAT, "key is not valid UTF-8");
    other = gguf__index_find(&p->f->kv_index, kv_name_at, p->f, key.ptr, key.len);
    if (other >= 0)
        return perr(p, SLM_EFORMAT, "duplicate key (first defined as key #%" PRId64 ")", other);
    return 0;
}

/* Reads the body of an array value (after the u32 element type was read). */
static int parse_array(struct parser *p, struct gguf_kv *kv)
{
    uint32_t et;
    uint64_t n, min;
    size_t esz;
    int rc;

    if ((rc = rd_u32(p, &et, "array element type")) < 0) return rc;
    if (et == GGUF_TYPE_ARRAY) return perr(p, SLM_EFORMAT, "array of arrays is not supported");
    if (et >= GGUF_TYPE_COUNT)
        return perr(p, SLM_EFORMAT, "array element type %" PRIu32 " is not a GGUF type (0..%d)", et,
                    GGUF_TYPE_COUNT - 1);
    if ((rc = rd_u64(p, &n, "array count")) < 0) return rc;
    kv->arr_type = (enum gguf_type)et;
    if (n > SLM_LIMIT_GGUF_ARRAY)
        return perr(p, SLM_ELIMIT, "array count %" PRIu64 " exceeds the limit of %u", n,
                    SLM_LIMIT_GGUF_ARRAY);
    esz = gguf__type_size(kv->arr_type);
    min = esz != 0 ? esz : 8; /* a string is at least its length field */
    /* n <= 2^24 and min <= 8: the product cannot overflow. */
    if (n * min > rd_left(p))
        return perr(p, SLM_EFORMAT,
                    "array of %" PRIu64 " %s needs at least %" PRIu64
                    " bytes but only %zu are left (truncated?)",
                    n, gguf_type_name(kv->arr_type), n * min, rd_left(p));
    kv->arr_n = n;
    if (esz != 0) {
        kv->val = p->f->base + p->pos;
        p->pos += (size_t)(n * esz);
        return 0;
    }
    /* Strings: bounded by the check above, this allocation is at most the bytes left. */
    kv->str_offsets = slm_malloc((size_t)n * sizeof(uint64_t));
    if (kv->str_offsets == NULL)
        return perr(p, SLM_ENOMEM, "out of memory for %" PRIu64 " string offsets", n);
    for (uint64_t j = 0; j < n; j++) {
        struct gguf_str s;

        kv->str_offsets[j] = p->pos;
        if ((rc = rd_str(p, &s, SLM_LIMIT_GGUF_STR, "array string")) < 0) return rc;
    }
    return 0;
}

/* Reads one key/value pair into kv. */
static int parse_kv(struct parser *p, struct gguf_kv *kv)
{
    uint32_t type;
    size_t start;
    int rc;

    kv->arr_type = GGUF_TYPE_COUNT;
    if ((rc = rd_str(p, &kv->key, SLM_LIMIT_GGUF_KEY, "key")) < 0) return rc;
    if (kv->key.len == 0) return perr(p, SLM_EFORMAT, "empty key");
    p->cur = kv->key;
    if ((rc = check_key(p, kv->key)) < 0) return rc;
    if ((rc = rd_u32(p, &type, "value type")) < 0) return rc;
    if (type >= GGUF_TYPE_COUNT)
        return perr(p, SLM_EFORMAT, "value type %" PRIu32 " is not a GGUF type (0..%d)", type,
                    GGUF_TYPE_COUNT - 1);
    kv->type = (enum gguf_type)type;
    start = p->pos;
    if (kv->type == GGUF_TYPE_STRING) {
        rc = rd_str(p, &kv->str, SLM_LIMIT_GGUF_STR, "string value");
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        rc = parse_array(p, kv);
    } else {
        kv->val = rd_bytes(p, gguf__type_size(kv->type), "value");
        rc = kv->val == NULL ? SLM_EFORMAT : 0;
    }
    if (rc < 0) return rc;
    kv->raw = p->f->base + start;
    kv->raw_len = p->pos - start;
    return 0;
}

/* Applies general.alignment if present: UINT32, a power of two, 1..limit. */
static int parse_alignment(struct parser *p)
{
    int64_t i = gguf_find_key(p->f, "general.alignment");
    const struct gguf_kv *kv;
    uint32_t a;

    p->f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (i < 0) return 0;
    kv = &p->f->kv[i];
    p->section = SECTION_KV;
    p->index = (size_t)i;
    p->cur = kv->key;
    if (kv->type != GGUF_TYPE_UINT32)
        return perr(p, SLM_EFORMAT, "has type %s, must be uint32", gguf_type_name(kv->type));
    memcpy(&a, kv->val, sizeof(a));
    if (a == 0 || (a & (a - 1)) != 0)
        return perr(p, SLM_EFORMAT, "alignment %" PRIu32 " is not a power of two", a);
    if (a > SLM_LIMIT_GGUF_ALIGNMENT)
        return perr(p, SLM_ELIMIT, "alignment %" PRIu32 " exceeds the limit of %u", a,
                    SLM_LIMIT_GGUF_ALIGNMENT);
    p->f->alignment = a;
    return 0;
}

/* Checks the shape and type of t and computes n_elements and size. */
static int tensor_shape(struct parser *p, struct gguf_tensor *t, uint32_t type)
{
    const struct tensor_type_traits *tt;
    uint64_t n = 1, rows, row_size;

    for (uint32_t k = 0; k < t->n_dims; k++) {
        if (t->ne[k] == 0) return perr(p, SLM_EFORMAT, "ne[%" PRIu32 "] is 0", k);
        if (t->ne[k] > INT64_MAX)
            return perr(p, SLM_EFORMAT, "ne[%" PRIu32 "] is negative (%" PRId64 " as int64)", k,
                        (int64_t)t->ne[k]);
        if (!slm_mul_u64(n, t->ne[k], &n) || n > INT64_MAX)
            return perr(p, SLM_EFORMAT,
                        "element count overflows: shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64
                        ", %" PRIu64 "]",
                        t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
    }
    tt = tensor_type_get(type);
    if (tt == NULL)
        return perr(p, SLM_EFORMAT, "type %" PRIu32 " is not a known tensor type", type);
    t->type = (enum tensor_type)type;
    if (t->ne[0] % tt->block_size != 0)
        return perr(p, SLM_EFORMAT,
                    "ne[0] %" PRIu64 " is not a multiple of the %s block size %" PRIu32, t->ne[0],
                    tt->name, tt->block_size);
    rows = n / t->ne[0];
    if (tensor_row_size(t->type, t->ne[0], &row_size) < 0 ||
        !slm_mul_u64(row_size, rows, &t->size) || t->size > INT64_MAX)
        return perr(p, SLM_EFORMAT,
                    "byte size overflows: %" PRIu64 " rows of %" PRIu64 " %s elements", rows,
                    t->ne[0], tt->name);
    t->n_elements = n;
    return 0;
}

/* Reads one tensor info into t (offset checked later, against the data section). */
static int parse_tensor(struct parser *p, struct gguf_tensor *t)
{
    static const char *const ne_names[SLM_LIMIT_GGUF_DIMS] = { "ne[0]", "ne[1]", "ne[2]", "ne[3]" };
    uint32_t type;
    int rc;

    if ((rc = rd_str(p, &t->name, UINT64_MAX, "tensor name")) < 0) return rc;
    if (t->name.len == 0) return perr(p, SLM_EFORMAT, "empty tensor name");
    p->cur = t->name;
    if (t->name.len >= SLM_LIMIT_GGUF_TENSOR_NAME)
        return perr(p, SLM_ELIMIT, "name of %zu bytes exceeds the limit of %u", t->name.len,
                    SLM_LIMIT_GGUF_TENSOR_NAME - 1);
    if (memchr(t->name.ptr, '\0', t->name.len) != NULL)
        return perr(p, SLM_EFORMAT, "name contains a NUL byte");
    if (gguf__index_find(&p->f->tensor_index, tensor_name_at, p->f, t->name.ptr, t->name.len) >= 0)
        return perr(p, SLM_EFORMAT, "duplicate tensor name");
    if ((rc = rd_u32(p, &t->n_dims, "n_dims")) < 0) return rc;
    if (t->n_dims == 0 || t->n_dims > SLM_LIMIT_GGUF_DIMS)
        return perr(p, SLM_EFORMAT, "n_dims %" PRIu32 " is not in 1..%u", t->n_dims,
                    SLM_LIMIT_GGUF_DIMS);
    for (uint32_t k = 0; k < 4; k++)
        t->ne[k] = 1;
    for (uint32_t k = 0; k < t->n_dims; k++)
        if ((rc = rd_u64(p, &t->ne[k], ne_names[k])) < 0) return rc;
    if ((rc = rd_u32(p, &type, "tensor type")) < 0) return rc;
    if ((rc = tensor_shape(p, t, type)) < 0) return rc;
    if ((rc = rd_u64(p, &t->offset, "tensor offset")) < 0) return rc;
    if (t->offset % p->f->alignment != 0)
        return perr(p, SLM_EFORMAT, "offset %" PRIu64 " is not a multiple of the alignment %zu",
                    t->offset, p->f->alignment);
    return 0;
}

struct span {
    uint64_t begin;
    uint64_t end;
    size_t index;
};

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;

    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Finds the data section and checks every tensor lies inside it, without overlaps. */
static int parse_data(struct parser *p)
{
    struct gguf_file *f = p->f;
    struct span *spans;
    size_t aligned;

    p->section = SECTION_DATA;
    if (!slm_add_size(p->pos, f->alignment - 1, &aligned))
        return perr(p, SLM_EFORMAT, "data offset overflows");
    aligned -= aligned % f->alignment;
    if (f->n_tensors == 0) {
        /* No data section to find: it starts where the header ends (as llama.cpp reports). */
        f->data_offset = p->pos;
        f->data_size = f->size - p->pos;
        return 0;
    }
    if (aligned > f->size)
        return perr(p, SLM_EFORMAT,
                    "data section missing: %zu tensors, tensor data would start at offset %zu but "
                    "the file ends at %zu",
                    f->n_tensors, aligned, f->size);
    f->data_offset = aligned;
    f->data_size = f->size - aligned;
    p->section = SECTION_TENSOR;
    for (size_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        uint64_t end;

        p->index = i;
        p->cur = t->name;
        if (!slm_add_u64(t->offset, t->size, &end) || end > f->data_size)
            return perr(p, SLM_EFORMAT,
                        "offset %" PRIu64 " + size %" PRIu64 " exceeds data size %zu", t->offset,
                        t->size, f->data_size);
        t->data = f->base + f->data_offset + t->offset;
    }
    spans = slm_calloc(f->n_tensors, sizeof(*spans));
    if (spans == NULL)
        return perr(p, SLM_ENOMEM, "out of memory for %zu tensor spans", f->n_tensors);
    for (size_t i = 0; i < f->n_tensors; i++) {
        spans[i].begin = f->tensors[i].offset;
        spans[i].end = f->tensors[i].offset + f->tensors[i].size;
        spans[i].index = i;
    }
    qsort(spans, f->n_tensors, sizeof(*spans), span_cmp);
    for (size_t i = 1; i < f->n_tensors; i++) {
        if (spans[i].begin < spans[i - 1].end) {
            const struct gguf_tensor *a = &f->tensors[spans[i - 1].index];
            char q[GGUF_QUOTE_MAX * 4 + 8];
            int rc;

            p->index = spans[i].index;
            p->cur = f->tensors[spans[i].index].name;
            quote(q, sizeof(q), a->name.ptr, a->name.len);
            rc = perr(p, SLM_EFORMAT,
                      "offset %" PRIu64 " overlaps tensor '%s' (offset %" PRIu64 ", size %" PRIu64
                      ")",
                      spans[i].begin, q, a->offset, a->size);
            slm_free(spans);
            return rc;
        }
    }
    slm_free(spans);
    return 0;
}

/* Validates the whole image f->base[0..size) and fills f. */
static int gguf_parse(struct gguf_file *f, struct slm_diag *d)
{
    struct parser p = { .f = f, .d = d, .section = SECTION_HEADER };
    uint64_t n_tensors, n_kv;
    int rc;

    if ((rc = parse_header(&p, &n_tensors, &n_kv)) < 0) return rc;
    if (n_kv > 0) {
        f->kv = slm_calloc((size_t)n_kv, sizeof(*f->kv));
        if (f->kv == NULL || gguf__index_reserve(&f->kv_index, (size_t)n_kv, kv_name_at, f, 0) < 0)
            return perr(&p, SLM_ENOMEM, "out of memory for %" PRIu64 " keys", n_kv);
    }
    if (n_tensors > 0) {
        f->tensors = slm_calloc((size_t)n_tensors, sizeof(*f->tensors));
        if (f->tensors == NULL ||
            gguf__index_reserve(&f->tensor_index, (size_t)n_tensors, tensor_name_at, f, 0) < 0)
            return perr(&p, SLM_ENOMEM, "out of memory for %" PRIu64 " tensors", n_tensors);
    }
    p.section = SECTION_KV;
    for (size_t i = 0; i < (size_t)n_kv; i++) {
        p.index = i;
        p.cur.len = 0;
        /* Counted before parsing so gguf_close frees a half-read array's offsets. */
        f->n_kv = i + 1;
        if ((rc = parse_kv(&p, &f->kv[i])) < 0) return rc;
        gguf__index_insert(&f->kv_index, kv_name_at, f, i);
    }
    if ((rc = parse_alignment(&p)) < 0) return rc;
    p.section = SECTION_TENSOR;
    for (size_t i = 0; i < (size_t)n_tensors; i++) {
        p.index = i;
        p.cur.len = 0;
        if ((rc = parse_tensor(&p, &f->tensors[i])) < 0) return rc;
        f->n_tensors = i + 1;
        gguf__index_insert(&f->tensor_index, tensor_name_at, f, i);
    }
    return parse_data(&p);
}

/* Keeps (the tail of) name for messages. */
static void set_name(struct gguf_file *f, const char *name)
{
    size_t len = strlen(name);

    if (len <= GGUF_NAME_MAX) {
        memcpy(f->name, name, len + 1);
        return;
    }
    memcpy(f->name, "...", 3);
    memcpy(f->name + 3, name + len - (GGUF_NAME_MAX - 3), GGUF_NAME_MAX - 3 + 1);
}

/* Allocates an empty file object; NULL on ENOMEM. */
static struct gguf_file *file_new(const char *name)
{
    struct gguf_file *f = slm_calloc(1, sizeof(*f));

    if (f == NULL) return NULL;
    gguf__index_init(&f->kv_index);
    gguf__index_init(&f->tensor_index);
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    set_name(f, name);
    return f;
}

/*
 * Validates the image data[0..size) (borrowed: it must outlive the result).
 * Returns 0 and a new file in *out, or an error with d filled.
 */
int gguf_open_memory(const void *data, size_t size, const char *name, struct gguf_file **out,
                     struct slm_diag *d)
{
    struct gguf_file *f;
    int rc;

    *out = NULL;
    if (name == NULL) name = "(memory)";
    if (data == NULL && size != 0) return slm_diag_set(d, SLM_EINVAL, "%s: no data", name);
    f = file_new(name);
    if (f == NULL) return slm_diag_set(d, SLM_ENOMEM, "%s: out of memory", name);
    f->base = data;
    f->size = size;
    rc = gguf_parse(f, d);
    if (rc < 0) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* Describes a file type for the "not a regular file" message. */
static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

/* Checks that st describes a file we may map: regular, not writable by group or others. */
static int check_stat(const char *path, const struct stat *st, struct slm_diag *d)
{
    if (!S_ISREG(st->st_mode))
        return slm_diag_set(d, SLM_EINVAL, "%s: is %s, not a regular file", path,
                            file_kind(st->st_mode));
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return slm_diag_set(d, SLM_EPERM,
                            "%s: file is writable by group or others (mode %04o): a change while "
                            "it is mapped could crash slm; run 'chmod go-w %s'",
                            path, (unsigned)(st->st_mode & 07777), path);
    return 0;
}

static int errno_diag(struct slm_diag *d, const char *path, const char *what, int errnum)
{
    char buf[128];
    const char *msg = strerror_r(errnum, buf, sizeof(buf));

    return slm_diag_set(d, slm_err_from_errno(errnum), "%s: %s: %s", path, what, msg);
}

/*
 * Opens path, maps it (PROT_READ, MAP_PRIVATE) and validates it. Refuses
 * anything but a regular file, and files writable by group or others (a
 * truncation under the mapping would SIGBUS). Returns new in *out.
 */
int gguf_open(const char *path, struct gguf_file **out, struct slm_diag *d)
{
    struct gguf_file *f = NULL;
    struct stat st;
    void *map;
    int fd, rc;

    *out = NULL;
    /* Look before opening: opening a FIFO would block, a device could have side effects. */
    if (stat(path, &st) < 0) return errno_diag(d, path, "cannot open", errno);
    if ((rc = check_stat(path, &st, d)) < 0) return rc;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return errno_diag(d, path, "cannot open", errno);
    /* The file may have been replaced between stat and open: check what we hold. */
    if (fstat(fd, &st) < 0) {
        rc = errno_diag(d, path, "cannot stat", errno);
        close(fd);
        return rc;
    }
    if ((rc = check_stat(path, &st, d)) < 0) {
        close(fd);
        return rc;
    }
    if (st.st_size < (off_t)GGUF_HEADER_SIZE) {
        close(fd);
        return slm_diag_set(d, SLM_EFORMAT,
                            "%s: header: file of %lld bytes is too small for a GGUF header (%u)",
                            path, (long long)st.st_size, GGUF_HEADER_SIZE);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return slm_diag_set(d, SLM_ELIMIT, "%s: file too large to map", path);
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    rc = errno;
    close(fd);
    if (map == MAP_FAILED) return errno_diag(d, path, "cannot map", rc);
    f = file_new(path);
    if (f == NULL) {
        munmap(map, (size_t)st.st_size);
        return slm_diag_set(d, SLM_ENOMEM, "%s: out of memory", path);
    }
    f->base = map;
    f->size = (size_t)st.st_size;
    f->mapped = true;
    f->id.dev = (uint64_t)st.st_dev;
    f->id.ino = (uint64_t)st.st_ino;
    f->id.size = (uint64_t)st.st_size;
    f->id.mtime_sec = (int64_t)st.st_mtim.tv_sec;
    f->id.mtime_nsec = (int64_t)st.st_mtim.tv_nsec;
    f->id.ctime_sec = (int64_t)st.st_ctim.tv_sec;
    f->id.ctime_nsec = (int64_t)st.st_ctim.tv_nsec;
    rc = gguf_parse(f, d);
    if (rc < 0) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* Unmaps and frees f; NULL is a no-op. */
void gguf_close(struct gguf_file *f)
{
    if (f == NULL) return;
    for (size_t i = 0; i < f->n_kv; i++)
        slm_free(f->kv[i].str_offsets);
    slm_free(f->kv);
    slm_free(f->tensors);
    gguf__index_fini(&f->kv_index);
    gguf__index_fini(&f->tensor_index);
    if (f->mapped) munmap((void *)f->base, f->size);
    slm_free(f);
}

/* ================================================================== */
/* Accessors                                                          */
/* ================================================================== */

uint32_t gguf_version(const struct gguf_file *f)
{
    return f->version;
}

size_t gguf_alignment(const struct gguf_file *f)
{
    return f->alignment;
}

size_t gguf_file_size(const struct gguf_file *f)
{
    return f->size;
}

size_t gguf_data_offset(const struct gguf_file *f)
{
    return f->data_offset;
}

const void *gguf_base(const struct gguf_file *f)
{
    return f->base;
}

const struct gguf_identity *gguf_file_identity(const struct gguf_file *f)
{
    return f->mapped ? &f->id : NULL;
}

size_t gguf_n_kv(const struct gguf_file *f)
{
    return f->n_kv;
}

/* Index of key (a NUL-terminated string), or -1. */
int64_t gguf_find_key(const struct gguf_file *f, const char *key)
{
    return gguf__index_find(&f->kv_index, kv_name_at, f, key, strlen(key));
}

struct gguf_str gguf_kv_key(const struct gguf_file *f, size_t i)
{
    struct gguf_str none = { NULL, 0 };

    return i < f->n_kv ? f->kv[i].key : none;
}

enum gguf_type gguf_kv_type(const struct gguf_file *f, size_t i)
{
    return i < f->n_kv ? f->kv[i].type : GGUF_TYPE_COUNT;
}

enum gguf_type gguf_kv_arr_type(const struct gguf_file *f, size_t i)
{
    return i < f->n_kv ? f->kv[i].arr_type : GGUF_TYPE_COUNT;
}

uint64_t gguf_kv_arr_n(const struct gguf_file *f, size_t i)
{
    return i < f->n_kv ? f->kv[i].arr_n : 0;
}

/* Returns borrowed: packed little-endian elements, possibly unaligned (use memcpy). */
const void *gguf_kv_arr_data(const struct gguf_file *f, size_t i)
{
    if (i >= f->n_kv || f->kv[i].type != GGUF_TYPE_ARRAY || f->kv[i].str_offsets != NULL)
        return NULL;
    return f->kv[i].val;
}

/* Returns borrowed: element j of an array of strings ({NULL, 0} if there is none). */
struct gguf_str gguf_kv_arr_str(const struct gguf_file *f, size_t i, uint64_t j)
{
    struct gguf_str s = { NULL, 0 };
    uint64_t len;
    size_t off;

    if (i >= f->n_kv || f->kv[i].str_offsets == NULL || j >= f->kv[i].arr_n) return s;
    off = (size_t)f->kv[i].str_offsets[j];
    memcpy(&len, f->base + off, sizeof(len));
    s.ptr = (const char *)f->base + off + sizeof(len);
    s.len = (size_t)len;
    return s;
}

const uint8_t *gguf__kv_raw(const struct gguf_file *f, size_t i, size_t *len)
{
    if (i >= f->n_kv) {
        *len = 0;
        return NULL;
    }
    *len = f->kv[i].raw_len;
    return f->kv[i].raw;
}

/* A scalar value widened for conversions. */
struct scalar {
    enum { SCALAR_UINT, SCALAR_INT, SCALAR_FLOAT, SCALAR_BOOL, SCALAR_NONE } kind;
    uint64_t u;
    int64_t i;
    double f;
};

static struct scalar kv_scalar(const struct gguf_kv *kv)
{
    struct scalar s = { SCALAR_NONE, 0, 0, 0.0 };
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    int64_t i64;
    float f32;

    switch (kv->type) {
    case GGUF_TYPE_UINT8:
        memcpy(&u8, kv->val, 1);
        s.kind = SCALAR_UINT;
        s.u = u8;
        break;
    case GGUF_TYPE_BOOL:
        memcpy(&u8, kv->val, 1);
        s.kind = SCALAR_BOOL;
        s.u = u8 != 0;
        break;
    case GGUF_TYPE_INT8:
        memcpy(&i8, kv->val, 1);
        s.kind = SCALAR_INT;
        s.i = i8;
        break;
    case GGUF_TYPE_UINT16:
        memcpy(&u16, kv->val, 2);
        s.kind = SCALAR_UINT;
        s.u = u16;
        break;
    case GGUF_TYPE_INT16:
        memcpy(&i16, kv->val, 2);
        s.kind = SCALAR_INT;
        s.i = i16;
        break;
    case GGUF_TYPE_UINT32:
        memcpy(&u32, kv->val, 4);
        s.kind = SCALAR_UINT;
        s.u = u32;
        break;
    case GGUF_TYPE_INT32:
        memcpy(&i32, kv->val, 4);
        s.kind = SCALAR_INT;
        s.i = i32;
        break;
    case GGUF_TYPE_UINT64:
        memcpy(&s.u, kv->val, 8);
        s.kind = SCALAR_UINT;
        break;
    case GGUF_TYPE_INT64:
        memcpy(&i64, kv->val, 8);
        s.kind = SCALAR_INT;
        s.i = i64;
        break;
    case GGUF_TYPE_FLOAT32:
        memcpy(&f32, kv->val, 4);
        s.kind = SCALAR_FLOAT;
        s.f = f32;
        break;
    case GGUF_TYPE_FLOAT64:
        memcpy(&s.f, kv->val, 8);
        s.kind = SCALAR_FLOAT;
        break;
    case GGUF_TYPE_STRING:
    case GGUF_TYPE_ARRAY:
    case GGUF_TYPE_COUNT:
        break;
    }
    if (s.kind == SCALAR_INT && s.i >= 0) {
        s.kind = SCALAR_UINT;
        s.u = (uint64_t)s.i;
    }
    return s;
}

/* Integer key values: SLM_EFORMAT if not an integer, SLM_ERANGE if negative. */
int gguf_kv_u64(const struct gguf_file *f, size_t i, uint64_t *out)
{
    struct scalar s;

    if (i >= f->n_kv) return SLM_EINVAL;
    s = kv_scalar(&f->kv[i]);
    if (s.kind == SCALAR_INT) return SLM_ERANGE;
    if (s.kind != SCALAR_UINT) return SLM_EFORMAT;
    *out = s.u;
    return 0;
}

/* Integer key values: SLM_EFORMAT if not an integer, SLM_ERANGE above INT64_MAX. */
int gguf_kv_i64(const struct gguf_file *f, size_t i, int64_t *out)
{
    struct scalar s;

    if (i >= f->n_kv) return SLM_EINVAL;
    s = kv_scalar(&f->kv[i]);
    if (s.kind == SCALAR_INT) {
        *out = s.i;
        return 0;
    }
    if (s.kind != SCALAR_UINT) return SLM_EFORMAT;
    if (s.u > INT64_MAX) return SLM_ERANGE;
    *out = (int64_t)s.u;
    return 0;
}

/* Numeric key values as double: floats, and integers of at most 53 bits. */
int gguf_kv_f64(const struct gguf_file *f, size_t i, double *out)
{
    struct scalar s;

    if (i >= f->n_kv) return SLM_EINVAL;
    s = kv_scalar(&f->kv[i]);
    switch (s.kind) {
    case SCALAR_FLOAT:
        *out = s.f;
        return 0;
    case SCALAR_UINT:
        if (s.u > (1ull << 53)) return SLM_ERANGE;
        *out = (double)s.u;
        return 0;
    case SCALAR_INT:
        if (s.i < -(1ll << 53)) return SLM_ERANGE;
        *out = (double)s.i;
        return 0;
    case SCALAR_BOOL:
    case SCALAR_NONE:
        break;
    }
    return SLM_EFORMAT;
}

int gguf_kv_bool(const struct gguf_file *f, size_t i, bool *out)
{
    if (i >= f->n_kv) return SLM_EINVAL;
    if (f->kv[i].type != GGUF_TYPE_BOOL) return SLM_EFORMAT;
    *out = f->kv[i].val[0] != 0;
    return 0;
}

struct gguf_str gguf_kv_str(const struct gguf_file *f, size_t i)
{
    struct gguf_str none = { NULL, 0 };

    if (i >= f->n_kv || f->kv[i].type != GGUF_TYPE_STRING) return none;
    return f->kv[i].str;
}

/* Describes the stored type of kv: "string", "array of uint8", ... */
static void type_desc(const struct gguf_kv *kv, char *out, size_t n)
{
    if (kv->type == GGUF_TYPE_ARRAY)
        snprintf(out, n, "array of %s", gguf_type_name(kv->arr_type));
    else
        snprintf(out, n, "%s", gguf_type_name(kv->type));
}

/* Finds key for a typed get: its index, or SLM_ENOTFOUND. */
static int64_t get_find(const struct gguf_file *f, const char *key)
{
    int64_t i = gguf_find_key(f, key);

    return i < 0 ? SLM_ENOTFOUND : i;
}

/* Records "FILE: key 'K': expected WANT, found TYPE[ VALUE]" and returns SLM_EFORMAT. */
static int get_err(const struct gguf_file *f, int64_t i, const char *want, const char *value,
                   struct slm_diag *d)
{
    char q[GGUF_QUOTE_MAX * 4 + 8], desc[48];
    const struct gguf_kv *kv = &f->kv[i];

    quote(q, sizeof(q), kv->key.ptr, kv->key.len);
    type_desc(kv, desc, sizeof(desc));
    return slm_diag_set(d, SLM_EFORMAT, "%s: key '%s': expected %s, found %s%s%s", f->name, q, want,
                        desc, value[0] != '\0' ? " " : "", value);
}

/* Typed get of an unsigned integer no larger than max. */
static int get_uint(const struct gguf_file *f, const char *key, uint64_t max, const char *want,
                    uint64_t *out, struct slm_diag *d)
{
    int64_t i = get_find(f, key);
    struct scalar s;
    char v[32];

    if (i < 0) return (int)i;
    s = kv_scalar(&f->kv[i]);
    if (s.kind == SCALAR_INT) {
        snprintf(v, sizeof(v), "%" PRId64, s.i);
        return get_err(f, i, want, v, d);
    }
    if (s.kind != SCALAR_UINT) return get_err(f, i, want, "", d);
    if (s.u > max) {
        snprintf(v, sizeof(v), "%" PRIu64, s.u);
        return get_err(f, i, want, v, d);
    }
    *out = s.u;
    return 0;
}

/*
 * Typed lookups: 0, SLM_ENOTFOUND (absent; d untouched) or SLM_EFORMAT (wrong
 * type or the value does not fit; d names the key and the stored type).
 */
int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out, struct slm_diag *d)
{
    uint64_t v;
    int rc = get_uint(f, key, UINT32_MAX, "uint32", &v, d);

    if (rc == 0) *out = (uint32_t)v;
    return rc;
}

int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out, struct slm_diag *d)
{
    return get_uint(f, key, UINT64_MAX, "uint64", out, d);
}

int gguf_get_i32(const struct gguf_file *f, const char *key, int32_t *out, struct slm_diag *d)
{
    int64_t i = get_find(f, key);
    struct scalar s;
    char v[32];

    if (i < 0) return (int)i;
    s = kv_scalar(&f->kv[i]);
    if (s.kind == SCALAR_INT) {
        if (s.i < INT32_MIN) {
            snprintf(v, sizeof(v), "%" PRId64, s.i);
            return get_err(f, i, "int32", v, d);
        }
        *out = (int32_t)s.i;
        return 0;
    }
    if (s.kind != SCALAR_UINT) return get_err(f, i, "int32", "", d);
    if (s.u > INT32_MAX) {
        snprintf(v, sizeof(v), "%" PRIu64, s.u);
        return get_err(f, i, "int32", v, d);
    }
    *out = (int32_t)s.u;
    return 0;
}

/* float32 or float64 (rounded; finite values must be in float range), or small integers. */
int gguf_get_f32(const struct gguf_file *f, const char *key, float *out, struct slm_diag *d)
{
    int64_t i = get_find(f, key);
    struct scalar s;
    char v[40];

    if (i < 0) return (int)i;
    s = kv_scalar(&f->kv[i]);
    switch (s.kind) {
    case SCALAR_FLOAT:
        if (isfinite(s.f) && fabs(s.f) > 3.4028234663852886e38) {
            snprintf(v, sizeof(v), "%g", s.f);
            return get_err(f, i, "float32", v, d);
        }
        *out = (float)s.f;
        return 0;
    case SCALAR_UINT:
        if (s.u <= (1u << 24)) {
            *out = (float)s.u;
            return 0;
        }
        snprintf(v, sizeof(v), "%" PRIu64, s.u);
        return get_err(f, i, "float32", v, d);
    case SCALAR_INT:
        if (s.i >= -(1 << 24)) {
            *out = (float)s.i;
            return 0;
        }
        snprintf(v, sizeof(v), "%" PRId64, s.i);
        return get_err(f, i, "float32", v, d);
    case SCALAR_BOOL:
    case SCALAR_NONE:
        break;
    }
    return get_err(f, i, "float32", "", d);
}

int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out, struct slm_diag *d)
{
    int64_t i = get_find(f, key);

    if (i < 0) return (int)i;
    if (f->kv[i].type != GGUF_TYPE_BOOL) return get_err(f, i, "bool", "", d);
    *out = f->kv[i].val[0] != 0;
    return 0;
}

int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out,
                 struct slm_diag *d)
{
    int64_t i = get_find(f, key);

    if (i < 0) return (int)i;
    if (f->kv[i].type != GGUF_TYPE_STRING) return get_err(f, i, "string", "", d);
    *out = f->kv[i].str;
    return 0;
}

/* Array lookup: checks the element type and returns the key's index and count. */
int gguf_get_arr(const struct gguf_file *f, const char *key, enum gguf_type elem_type,
                 size_t *index, uint64_t *n, struct slm_diag *d)
{
    int64_t i = get_find(f, key);
    char want[48];

    if (i < 0) return (int)i;
    if (f->kv[i].type != GGUF_TYPE_ARRAY || f->kv[i].arr_type != elem_type) {
        snprintf(want, sizeof(want), "array of %s", gguf_type_name(elem_type));
        return get_err(f, i, want, "", d);
    }
    *index = (size_t)i;
    *n = f->kv[i].arr_n;
    return 0;
}

size_t gguf_n_tensors(const struct gguf_file *f)
{
    return f->n_tensors;
}

const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, size_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const struct gguf_tensor *gguf_tensor_find(const struct gguf_file *f, const char *name)
{
    int64_t i = gguf__index_find(&f->tensor_index, tensor_name_at, f, name, strlen(name));

    return i < 0 ? NULL : &f->tensors[i];
}
