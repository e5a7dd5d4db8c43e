/*
 * gguf_int.h - internals shared by gguf.c (reader) and gguf_write.c (writer).
 *
 * struct gguf_name_index maps names (keys, tensor names) to their index in an
 * array owned by the caller, in O(1) expected time, so duplicate detection and
 * lookups never go quadratic on a hostile file with 65,536 names. It is an
 * open-addressing table with linear probing; a slot holds index + 1 (0 is
 * empty). The hash is seeded per table from getrandom(2) so that a crafted
 * file cannot force every name into one probe chain.
 *
 * The table does not store the names: the caller passes a gguf_name_at_fn
 * that returns name i (borrowed). Not thread-safe while being modified.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

typedef struct gguf_str gguf_name_at_fn(const void *ctx, size_t i);

struct gguf_name_index {
    uint32_t *slots; /* cap entries: index + 1, or 0 for empty */
    size_t cap;      /* a power of two, or 0 before the first reserve */
    uint64_t seed;
};

void gguf__index_init(struct gguf_name_index *ix);
void gguf__index_fini(struct gguf_name_index *ix);
/*
 * Makes room for n names: (re)allocates at least 2n slots and re-inserts
 * names 0..n_old-1. Returns 0 or SLM_ENOMEM (the table is unchanged then).
 */
SLM_NODISCARD int gguf__index_reserve(struct gguf_name_index *ix, size_t n, gguf_name_at_fn *at,
                                      const void *ctx, size_t n_old);
/* Returns the index of name p[0..len), or -1. */
int64_t gguf__index_find(const struct gguf_name_index *ix, gguf_name_at_fn *at, const void *ctx,
                         const char *p, size_t len);
/* Inserts name i (which must not be present; room must have been reserved). */
void gguf__index_insert(struct gguf_name_index *ix, gguf_name_at_fn *at, const void *ctx, size_t i);

/* Bytes of one scalar of type t on disk; 0 for STRING, ARRAY and invalid types. */
size_t gguf__type_size(enum gguf_type t);

/*
 * Returns borrowed: the serialized value of key i exactly as stored after its
 * type field (scalar bytes; u64 length + bytes; or element type + count +
 * elements), for gguf_writer_copy_kv. Valid until gguf_close.
 */
const uint8_t *gguf__kv_raw(const struct gguf_file *f, size_t i, size_t *len);
