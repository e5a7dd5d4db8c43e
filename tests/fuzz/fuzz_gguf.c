/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader (RELIABILITY.md G18).
 *
 * Validates the input with gguf_open_memory and, when it is accepted, walks
 * every accessor: each key, its type and value through every conversion, each
 * array element, the typed lookups, and every tensor (reading its first and
 * last data byte). Any crash, sanitizer report, leak, timeout or allocation
 * over -malloc_limit_mb is a bug in the reader.
 *
 * Build: make fuzz. Run: build/fuzz/fuzz_gguf -dict=tests/fuzz/fuzz_gguf.dict
 *        tests/fuzz/corpus/fuzz_gguf (seeds are small files from our writer).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "engine/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keeps the compiler from dropping reads whose values are otherwise unused. */
static volatile uint64_t sink;

static void touch(const void *p, size_t n)
{
    const uint8_t *b = p;

    if (n > 0) sink += (uint64_t)b[0] + b[n - 1];
}

static void walk_kv(const struct gguf_file *f, size_t i)
{
    struct gguf_str k = gguf_kv_key(f, i), s;
    enum gguf_type t = gguf_kv_type(f, i);
    uint64_t u, n;
    int64_t v;
    double d;
    bool b;
    size_t idx;
    char key[300];

    touch(k.ptr, k.len);
    if (gguf_kv_u64(f, i, &u) == 0) sink += u;
    if (gguf_kv_i64(f, i, &v) == 0) sink += (uint64_t)v;
    if (gguf_kv_f64(f, i, &d) == 0) sink += (uint64_t)(d == d);
    if (gguf_kv_bool(f, i, &b) == 0) sink += b;
    s = gguf_kv_str(f, i);
    touch(s.ptr, s.len);
    if (t == GGUF_TYPE_ARRAY) {
        enum gguf_type et = gguf_kv_arr_type(f, i);
        const uint8_t *p = gguf_kv_arr_data(f, i);

        n = gguf_kv_arr_n(f, i);
        if (et == GGUF_TYPE_STRING) {
            for (uint64_t j = 0; j < n; j++) {
                s = gguf_kv_arr_str(f, i, j);
                touch(s.ptr, s.len);
            }
            s = gguf_kv_arr_str(f, i, n); /* one past the end: must be empty */
            sink += s.len;
        } else if (p != NULL && n > 0) {
            sink += p[0];
            sink +=
                p[n * (et == GGUF_TYPE_UINT64 || et == GGUF_TYPE_INT64 || et == GGUF_TYPE_FLOAT64
                           ? 8
                       : et == GGUF_TYPE_UINT32 || et == GGUF_TYPE_INT32 || et == GGUF_TYPE_FLOAT32
                           ? 4
                       : et == GGUF_TYPE_UINT16 || et == GGUF_TYPE_INT16 ? 2
                                                                         : 1) -
                  1];
        }
    }
    /* The typed lookups by name, with a NUL-terminated copy of the key. */
    if (k.len < sizeof(key)) {
        struct slm_diag diag;
        uint32_t u32;
        int32_t i32;
        float f32;

        memcpy(key, k.ptr, k.len);
        key[k.len] = '\0';
        sink += (uint64_t)gguf_find_key(f, key);
        sink += (uint64_t)gguf_get_u32(f, key, &u32, &diag);
        sink += (uint64_t)gguf_get_u64(f, key, &u, &diag);
        sink += (uint64_t)gguf_get_i32(f, key, &i32, &diag);
        sink += (uint64_t)gguf_get_f32(f, key, &f32, &diag);
        sink += (uint64_t)gguf_get_bool(f, key, &b, &diag);
        sink += (uint64_t)gguf_get_str(f, key, &s, &diag);
        sink += (uint64_t)gguf_get_arr(f, key, gguf_kv_arr_type(f, i), &idx, &n, &diag);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf_file *f = NULL;
    struct slm_diag d;

    if (gguf_open_memory(data, size, "fuzz.gguf", &f, &d) != 0) return 0;
    sink += gguf_version(f) + gguf_alignment(f) + gguf_file_size(f) + gguf_data_offset(f);
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        walk_kv(f, i);
    sink += (uint64_t)gguf_kv_type(f, gguf_n_kv(f)); /* out of range: harmless */
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        char name[80];

        touch(t->name.ptr, t->name.len);
        touch(t->data, (size_t)t->size);
        if (t->name.len < sizeof(name)) {
            memcpy(name, t->name.ptr, t->name.len);
            name[t->name.len] = '\0';
            if (gguf_tensor_find(f, name) != t)
                __builtin_trap(); /* the index must find what the table holds */
        }
    }
    sink += (uint64_t)(uintptr_t)gguf_tensor_at(f, gguf_n_tensors(f));
    gguf_close(f);
    return 0;
}
