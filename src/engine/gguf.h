/*
 * gguf.h - read and write GGUF model files (versions 2 and 3).
 *
 * The format (little-endian throughout):
 *   u32 magic "GGUF"; u32 version; u64 n_tensors; u64 n_kv;
 *   n_kv times:      string key; u32 value_type; value
 *   n_tensors times: string name; u32 n_dims; u64 ne[n_dims]; u32 type; u64 offset
 *   padding to general.alignment (default 32), then the data section; each
 *   tensor's offset is relative to the data section and aligned.
 * A string is u64 length + bytes (no NUL). A value is a scalar of its type, a
 * string, or an array: u32 element type + u64 count + elements (arrays of
 * arrays are refused). Version 1 (u32 counts) is refused with a clear error.
 *
 * Reading maps the file (PROT_READ, MAP_PRIVATE) and validates every count,
 * length, type, shape, offset and alignment with overflow-checked arithmetic
 * before anything is used (docs/gguf.md lists the rules). An invalid file gets
 * SLM_EFORMAT, or SLM_ELIMIT when a limit of core/limits.h is exceeded, or
 * SLM_EUNSUPPORTED for GGUF version 1, versions above 3 and byte-swapped
 * (big-endian) files, always with a one-line diagnostic naming the file, the
 * field and the values, e.g. "m.gguf: tensor 'blk.0.attn_k.weight': offset
 * 320868864 + size 1179648 exceeds data size 1069306400". A tensor type number
 * ggml never defined is SLM_EFORMAT; a known type this build cannot compute
 * with (tensor_type_traits.supported false) is accepted here and refused by
 * the model loader. Tensor data is handed out in place (zero copy).
 *
 * Ownership: gguf_open returns new (gguf_close frees). Every pointer handed out
 * (keys, strings, arrays, tensor names and data) is borrowed from the file and
 * valid until gguf_close. Strings are NOT NUL-terminated: use the lengths.
 * Thread safety: a struct gguf_file is read-only after open and may be shared.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/quant.h"

enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT = 13
};

#define GGUF_DEFAULT_ALIGNMENT 32

struct gguf_file;

/* A string inside the file: borrowed, not NUL-terminated. */
struct gguf_str {
    const char *ptr;
    size_t len;
};

struct gguf_tensor {
    struct gguf_str name;
    uint32_t n_dims;
    uint64_t ne[4]; /* unused dims are 1 */
    enum tensor_type type;
    uint64_t n_elements;
    uint64_t offset;  /* relative to the data section */
    uint64_t size;    /* bytes */
    const void *data; /* borrowed: in the mapping */
};

/*
 * Opens, maps and validates path. Returns new in *out (NULL on failure).
 * Refuses what is unsafe to map: anything but a regular file (SLM_EINVAL:
 * directory, FIFO, device, socket; never blocks on a FIFO) and files writable
 * by group or others (SLM_EPERM: a truncation under the mapping would SIGBUS;
 * the message says to run chmod go-w). A missing file is SLM_ENOTFOUND.
 */
SLM_NODISCARD int gguf_open(const char *path, struct gguf_file **out, struct slm_diag *d);
/*
 * Validates a GGUF image held in memory (borrowed: must outlive the file
 * object); name is used in diagnostics. For fuzzing and tests.
 */
SLM_NODISCARD int gguf_open_memory(const void *data, size_t size, const char *name,
                                   struct gguf_file **out, struct slm_diag *d);
void gguf_close(struct gguf_file *f);

uint32_t gguf_version(const struct gguf_file *f);
size_t gguf_alignment(const struct gguf_file *f);
/*
 * Bytes of the mapping (file size) and offset of the data section (a multiple
 * of the alignment; for a file without tensors, where its header ends).
 */
size_t gguf_file_size(const struct gguf_file *f);
size_t gguf_data_offset(const struct gguf_file *f);
/* Returns borrowed: the start of the mapping (for madvise and the like). */
const void *gguf_base(const struct gguf_file *f);
/*
 * The mapped file as fstat saw it on the descriptor that was mapped (so a
 * file replaced after gguf_open does not match it; any write changes
 * ctime), for caches derived from the file (the engine's repacked
 * weights). NULL for gguf_open_memory.
 */
struct gguf_identity {
    uint64_t dev, ino, size;
    int64_t mtime_sec, mtime_nsec;
    int64_t ctime_sec, ctime_nsec; /* no one can set it: catches a copy that keeps mtime */
};
const struct gguf_identity *gguf_file_identity(const struct gguf_file *f);

/* ---- key/value metadata ---- */

size_t gguf_n_kv(const struct gguf_file *f);
/*
 * Index of key (a hash lookup), or -1. The index-based getters below return
 * zero values (NULL, 0, GGUF_TYPE_COUNT) for an index out of range.
 */
int64_t gguf_find_key(const struct gguf_file *f, const char *key);
struct gguf_str gguf_kv_key(const struct gguf_file *f, size_t i);
enum gguf_type gguf_kv_type(const struct gguf_file *f, size_t i);
/* For arrays: the element type and count (0 and GGUF_TYPE_COUNT otherwise). */
enum gguf_type gguf_kv_arr_type(const struct gguf_file *f, size_t i);
uint64_t gguf_kv_arr_n(const struct gguf_file *f, size_t i);
/*
 * For arrays of numbers and bools: borrowed pointer to the packed
 * little-endian elements, NOT necessarily aligned for their type (read them
 * with memcpy). NULL for arrays of strings and for non-arrays.
 */
const void *gguf_kv_arr_data(const struct gguf_file *f, size_t i);
/* For arrays of strings: element j. */
struct gguf_str gguf_kv_arr_str(const struct gguf_file *f, size_t i, uint64_t j);
/*
 * Scalar values: the stored value converted if it fits losslessly. 0, or
 * SLM_EFORMAT (not a number of that kind: u64/i64 take integers, f64 takes
 * floats and integers of at most 53 bits, bool only BOOL), SLM_ERANGE (an
 * integer that does not fit), SLM_EINVAL (i out of range).
 */
SLM_NODISCARD int gguf_kv_u64(const struct gguf_file *f, size_t i, uint64_t *out);
SLM_NODISCARD int gguf_kv_i64(const struct gguf_file *f, size_t i, int64_t *out);
SLM_NODISCARD int gguf_kv_f64(const struct gguf_file *f, size_t i, double *out);
SLM_NODISCARD int gguf_kv_bool(const struct gguf_file *f, size_t i, bool *out);
struct gguf_str gguf_kv_str(const struct gguf_file *f, size_t i);

/*
 * Lookups by key with type checking, for loaders. They return SLM_ENOTFOUND if
 * the key is absent (out untouched, d untouched) and SLM_EFORMAT with a
 * diagnostic naming the key and the stored type if the type is wrong or the
 * value does not fit (e.g. a negative INT32 asked as u32): "m.gguf: key
 * 'general.name': expected uint32, found string". Integer gets accept any
 * integer type whose value fits; gguf_get_f32 accepts FLOAT32, FLOAT64 within
 * float range (rounded) and integers of at most 24 bits.
 */
SLM_NODISCARD int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out,
                               struct slm_diag *d);
SLM_NODISCARD int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out,
                               struct slm_diag *d);
SLM_NODISCARD int gguf_get_i32(const struct gguf_file *f, const char *key, int32_t *out,
                               struct slm_diag *d);
SLM_NODISCARD int gguf_get_f32(const struct gguf_file *f, const char *key, float *out,
                               struct slm_diag *d);
SLM_NODISCARD int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out,
                                struct slm_diag *d);
SLM_NODISCARD int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out,
                               struct slm_diag *d);
/* Array lookup: its index (for gguf_kv_arr_*) after checking the element type. */
SLM_NODISCARD int gguf_get_arr(const struct gguf_file *f, const char *key, enum gguf_type elem_type,
                               size_t *index, uint64_t *n, struct slm_diag *d);

/* ---- tensors ---- */

size_t gguf_n_tensors(const struct gguf_file *f);
/* Returns borrowed (valid until gguf_close). */
const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, size_t i);
/* Returns borrowed, or NULL if absent. */
const struct gguf_tensor *gguf_tensor_find(const struct gguf_file *f, const char *name);

const char *gguf_type_name(enum gguf_type t);

/* ---- writing ---- */

/*
 * struct gguf_writer collects metadata and tensors and writes a GGUF v3 file
 * atomically: to "PATH.tmp.XXXXXX" in the same directory, fsync, rename; on
 * any failure the temporary file is removed and PATH is untouched.
 * Keys and string values are copied; tensor data is borrowed until
 * gguf_writer_write returns. A key set twice keeps the last value (and its
 * first position). Setters return 0, SLM_ENOMEM, SLM_EINVAL (a key that is
 * empty, longer than SLM_LIMIT_GGUF_KEY or not valid UTF-8; an element type
 * that is not a number or bool) or SLM_ELIMIT (a string or array over its
 * limit, more than SLM_LIMIT_GGUF_KV keys or SLM_LIMIT_GGUF_TENSORS tensors).
 */
struct gguf_writer;

struct gguf_writer *gguf_writer_new(void); /* returns new, NULL on ENOMEM */
void gguf_writer_free(struct gguf_writer *w);
SLM_NODISCARD int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
SLM_NODISCARD int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
SLM_NODISCARD int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
SLM_NODISCARD int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
SLM_NODISCARD int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
SLM_NODISCARD int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *s,
                                      size_t len);
/* Array of numbers: n elements of elem_type, packed little-endian, copied. */
SLM_NODISCARD int gguf_writer_set_arr(struct gguf_writer *w, const char *key,
                                      enum gguf_type elem_type, const void *data, size_t n);
/* Array of strings: copied. lens may be NULL (then strings are NUL-terminated). */
SLM_NODISCARD int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key,
                                          const char *const *strs, const size_t *lens, size_t n);
/* Copies every key/value of src (e.g. for slm quantize). */
SLM_NODISCARD int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_file *src);
/*
 * Adds a tensor; data (size bytes, matching type and shape) is borrowed.
 * SLM_EINVAL for an empty name or one of 64 bytes or more, n_dims outside
 * 1..4, a zero dimension, an unknown type, ne[0] not a multiple of the block
 * size or a size that does not match; SLM_EEXIST for a duplicate name.
 * Tensors are laid out in the order added, each aligned.
 */
SLM_NODISCARD int gguf_writer_add_tensor(struct gguf_writer *w, const char *name,
                                         enum tensor_type type, uint32_t n_dims, const uint64_t *ne,
                                         const void *data, size_t size);
/*
 * Writes the file (alignment: general.alignment if set, which must then be a
 * UINT32 power of two up to SLM_LIMIT_GGUF_ALIGNMENT, else 32; padding is
 * zero; the same writer state always gives the same bytes). May be called
 * more than once.
 */
SLM_NODISCARD int gguf_writer_write(struct gguf_writer *w, const char *path, struct slm_diag *d);
