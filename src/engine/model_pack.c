/*
 * model_pack.c - the weights repacked for the kernels at load, and the repack
 * cache that turns later loads into a mapping.
 *
 * Repacking (kernel_ops.pack) rearranges the rows of a linear layer into the
 * kernels' interleaved groups: the same bytes in another order. Done in
 * memory at every load it costs the packing itself and the kernel zeroing
 * the fresh pages (0.2-1.6 s per model on the project's VM, up to 7.8 s
 * once for a 2.3 GB F16 model on a busy one; bench/load.sh), and every
 * process holds its own copy.
 *
 * The cache: the first load packs straight into a file mapping (MAP_SHARED)
 * and publishes the file; later loads check its header and map it, so the
 * packed weights live in the page cache, shared by every process that maps
 * them, and the model file's pages of those tensors are never touched. The
 * file is MODEL.slmpack next to the model (SLM_REPACK_CACHE=DIR puts it in
 * DIR, SLM_REPACK_CACHE=off keeps the packed copy in memory). Whatever goes
 * wrong with the cache (a directory we cannot write, a full disk, a stale or
 * damaged file) costs speed, never correctness: a cache file is used only if
 * its header equals, byte for byte, the one this load would write, and the
 * load falls back to packing in memory with a warning.
 *
 * The header names the model file (device, inode, size, modification time as
 * fstat saw them on the mapped descriptor), the kernel table, each packed
 * tensor (its offset in the model, type, rows, row bytes and place in the
 * cache) and a fingerprint of every packed layout in use (a fixed block
 * packed and hashed at load): a new kernel layout invalidates old caches
 * without anyone remembering to bump a version. A new file appears only
 * complete and synced: it is written unnamed (O_TMPFILE, or a temporary name
 * removed on failure), fdatasync'ed, then linked into place, so a crash or a
 * power cut never leaves a partial cache under the final name.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/str.h"
#include "engine/model_int.h"
#include "engine/quant.h"

#define CACHE_MAGIC   "SLMPACK1"
#define CACHE_VERSION 1u
/* Each packed tensor starts on a page: the file maps with every tensor aligned. */
#define CACHE_ALIGN   4096u
#define CACHE_SUFFIX  ".slmpack"
/* Elements per row of the fingerprint block (a multiple of every block size). */
#define PRINT_N       256u

struct cache_head {
    char magic[8];
    uint32_t version;
    uint32_t n_entries;
    uint64_t header_bytes; /* the header region: a multiple of CACHE_ALIGN */
    uint64_t file_bytes;
    char kernels[16];
    struct gguf_identity model;
    uint64_t layout_print; /* hash of a fixed block packed in every type used */
};

struct cache_entry {
    uint64_t tensor_offset; /* of the weights in the model file */
    uint64_t n_out, row_bytes;
    uint64_t offset; /* of the packed rows in the cache file */
    uint32_t type, reserved;
};

/* The repacking job: the linear layers to pack, claimed one by one. */
struct pack_job {
    const struct kernel_ops *k;
    struct model_linear *l[SLM_LIMIT_LAYERS * 7 + 1];
    size_t n;
    struct pool_chunks chunks;
};

/*
 * Whether l is repacked: the selected kernels have a packed layout for its
 * type, its rows come in whole groups of 32-element multiples, and if it is
 * also the token embedding table (tied output), the kernels can unpack a
 * row for the embedding lookup (row_embed in model_decode.c).
 */
static bool packable(const struct model *m, const struct kernel_ops *k,
                     const struct model_linear *l)
{
    enum tensor_type t = l->w->type;

    return k->pack[t] != NULL && k->gemm_packed[t] != NULL && l->n_out % KERNELS_PACK_ROWS == 0 &&
           l->n_in % 32 == 0 && (l->w != m->tok_embd || k->unpack[t] != NULL);
}

/*
 * Repacks one layer into its (already placed) buffer, then drops the
 * mapping's pages that held only its rows (MADV_DONTNEED: the file's pages
 * stay in the page cache, not in this process), so resident memory does not
 * double. The rows stay readable through the mapping (a fault re-reads them).
 */
static void job_pack(void *arg, unsigned ith, unsigned nth)
{
    struct pack_job *j = arg;
    size_t b, e;

    (void)ith;
    (void)nth;
    while (pool_chunk_next(&j->chunks, &b, &e))
        for (size_t i = b; i < e; i++) {
            struct model_linear *l = j->l[i];
            size_t bytes = l->n_out * l->row_bytes;
            uintptr_t page = 4096, lo, hi;

            j->k->pack[l->w->type](l->w->data, l->row_bytes, l->n_out, l->packed);
            lo = ((uintptr_t)l->w->data + page - 1) / page * page;
            hi = ((uintptr_t)l->w->data + bytes) / page * page;
            if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
        }
}

static int run_pack(struct pack_job *j, struct slm_diag *d)
{
    struct pool *pool = NULL;
    int rc;

    if ((rc = pool_new(pool_default_threads(), &pool, d)) < 0) return rc;
    pool_chunks_init(&j->chunks, j->n, 1);
    pool_run(pool, job_pack, j);
    pool_free(pool);
    return 0;
}

/*
 * Hash of the packed layouts in use: per type, 16 rows of PRINT_N elements
 * of fixed bytes packed by the kernels. Packing only moves bytes, so any
 * bytes do. 0 if a buffer cannot be had (no cache then).
 */
static uint64_t layout_print(const struct pack_job *j)
{
    bool seen[TENSOR_TYPE_COUNT] = { false };
    uint64_t h = SLM_FNV1A_INIT, rb;
    uint8_t *in = NULL, *out = NULL;

    for (size_t i = 0; i < j->n; i++) {
        enum tensor_type t = j->l[i]->w->type;

        if (seen[t]) continue;
        seen[t] = true;
        if (tensor_row_size(t, PRINT_N, &rb) < 0 || rb > 4096) return 0;
        if (in == NULL) {
            in = slm_malloc(KERNELS_PACK_ROWS * 4096);
            out = slm_aligned_alloc(64, KERNELS_PACK_ROWS * 4096);
            if (in == NULL || out == NULL) {
                slm_free(in);
                slm_free(out);
                return 0;
            }
        }
        for (size_t b = 0; b < KERNELS_PACK_ROWS * rb; b++)
            in[b] = (uint8_t)(b * 131u + b / 7u);
        j->k->pack[t](in, (size_t)rb, KERNELS_PACK_ROWS, out);
        h = slm_fnv1a(h, &t, sizeof(t));
        h = slm_fnv1a(h, out, KERNELS_PACK_ROWS * (size_t)rb);
    }
    slm_free(in);
    slm_free(out);
    return h == 0 ? 1 : h;
}

/* strerror for logs, thread-safe (the GNU strerror_r). */
#define ERRTEXT(e) strerror_r((e), (char[128]){ 0 }, 128)

static bool align_up(uint64_t v, uint64_t *out)
{
    if (v > UINT64_MAX - (CACHE_ALIGN - 1)) return false;
    *out = (v + CACHE_ALIGN - 1) / CACHE_ALIGN * CACHE_ALIGN;
    return true;
}

/*
 * The header this load would write (new in *out, *bytes long), with every
 * tensor's place in the file. False if the model cannot have a cache (a
 * model from memory, sizes that overflow, no memory).
 */
static bool cache_header(const struct model *m, const struct pack_job *j, uint8_t **out,
                         size_t *bytes)
{
    const struct gguf_identity *id = gguf_file_identity(m->gguf);
    struct cache_head h;
    struct cache_entry *e;
    uint64_t at, size;
    uint8_t *buf;

    *out = NULL;
    if (id == NULL || sizeof(h) + j->n * sizeof(*e) > SIZE_MAX / 2) return false;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, CACHE_MAGIC, sizeof(h.magic));
    h.version = CACHE_VERSION;
    h.n_entries = (uint32_t)j->n;
    if (!align_up(sizeof(h) + j->n * sizeof(*e), &h.header_bytes) || h.header_bytes > SIZE_MAX)
        return false;
    snprintf(h.kernels, sizeof(h.kernels), "%s", j->k->name);
    h.model = *id;
    if ((h.layout_print = layout_print(j)) == 0) return false;
    buf = slm_calloc(1, (size_t)h.header_bytes);
    if (buf == NULL) return false;
    e = (struct cache_entry *)(buf + sizeof(h));
    at = h.header_bytes;
    for (size_t i = 0; i < j->n; i++) {
        const struct model_linear *l = j->l[i];

        e[i].tensor_offset =
            (uint64_t)((const uint8_t *)l->w->data - (const uint8_t *)gguf_base(m->gguf));
        e[i].n_out = l->n_out;
        e[i].row_bytes = l->row_bytes;
        e[i].offset = at;
        e[i].type = (uint32_t)l->w->type;
        size = (uint64_t)l->n_out * l->row_bytes;
        if (at > UINT64_MAX - size || !align_up(at + size, &at)) {
            slm_free(buf);
            return false;
        }
    }
    h.file_bytes = at;
    if (h.file_bytes > SIZE_MAX) {
        slm_free(buf);
        return false;
    }
    memcpy(buf, &h, sizeof(h));
    *out = buf;
    *bytes = (size_t)h.header_bytes;
    return true;
}

static uint64_t header_file_bytes(const uint8_t *header)
{
    struct cache_head h;

    memcpy(&h, header, sizeof(h));
    return h.file_bytes;
}

/* Points every packed layer into a mapping of the cache file at base. */
static void place(struct pack_job *j, uint8_t *base, const uint8_t *header)
{
    const struct cache_entry *e = (const struct cache_entry *)(header + sizeof(struct cache_head));

    for (size_t i = 0; i < j->n; i++)
        j->l[i]->packed = base + e[i].offset;
}

/*
 * The cache file's path (new in *out), or NULL in *out when the cache is
 * off: SLM_REPACK_CACHE unset, empty or "auto" gives MODEL.slmpack; "off"
 * or "0" none; anything else is a directory that gets BASENAME-HASH.slmpack
 * (the hash of the model's real path, so equal names from two directories
 * do not take turns).
 */
static int cache_path(const char *model_path, char **out, struct slm_diag *d)
{
    const char *env = getenv("SLM_REPACK_CACHE");
    const char *base = strrchr(model_path, '/');
    char real[PATH_MAX];
    size_t cap;

    *out = NULL;
    if (env != NULL && (strcmp(env, "off") == 0 || strcmp(env, "0") == 0)) return 0;
    if (env == NULL || env[0] == '\0' || strcmp(env, "auto") == 0) {
        if (!slm_add_size(strlen(model_path), sizeof(CACHE_SUFFIX), &cap))
            return slm_diag_set(d, SLM_ELIMIT, "model path too long");
        if ((*out = slm_malloc(cap)) == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory");
        snprintf(*out, cap, "%s%s", model_path, CACHE_SUFFIX);
        return 0;
    }
    base = base != NULL ? base + 1 : model_path;
    if (realpath(model_path, real) == NULL) snprintf(real, sizeof(real), "%s", model_path);
    if (!slm_add_size(strlen(env) + strlen(base), 1 + 1 + 16 + sizeof(CACHE_SUFFIX), &cap))
        return slm_diag_set(d, SLM_ELIMIT, "SLM_REPACK_CACHE path too long");
    if ((*out = slm_malloc(cap)) == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory");
    snprintf(*out, cap, "%s/%s-%016llx%s", env, base,
             (unsigned long long)slm_fnv1a(SLM_FNV1A_INIT, real, strlen(real)), CACHE_SUFFIX);
    return 0;
}

/* Maps the cache file at path if its header is header; true on success. */
static bool cache_map(struct model *m, struct pack_job *j, const char *path, const uint8_t *header,
                      size_t hbytes)
{
    size_t fbytes = (size_t)header_file_bytes(header);
    uint8_t *got = NULL;
    struct stat st;
    void *map;
    bool ok = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0) {
        if (errno != ENOENT)
            log_warn("model: cannot open the repack cache %s (%s); repacking", path,
                     ERRTEXT(errno));
        return false;
    }
    if (fstat(fd, &st) < 0) st.st_mode = 0;
    if (S_ISREG(st.st_mode) && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        /* A truncation under the mapping would crash us (as for the model, gguf_open). */
        log_warn("model: the repack cache %s is writable by group or others (mode %04o); "
                 "replacing it",
                 path, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != fbytes ||
        (got = slm_malloc(hbytes)) == NULL || pread(fd, got, hbytes, 0) != (ssize_t)hbytes ||
        memcmp(got, header, hbytes) != 0) {
        log_info("model: the repack cache %s does not match this model file, kernel set and "
                 "layout (or is damaged); rewriting it",
                 path);
        goto out;
    }
    map = mmap(NULL, fbytes, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        log_warn("model: cannot map the repack cache %s (%s); repacking", path, ERRTEXT(errno));
        goto out;
    }
    place(j, map, header);
    m->pack_map = map;
    m->pack_map_bytes = fbytes;
    m->pack_source = MODEL_PACK_CACHE_READ;
    ok = true;
out:
    slm_free(got);
    close(fd);
    return ok;
}


/*
 * Packs into a new cache file at path and maps it. 0 on success; else an
 * errno value, with what failed in *what, nothing left on disk and the
 * layers' packed pointers NULL.
 */
static int cache_write(struct model *m, struct pack_job *j, const char *path, const uint8_t *header,
                       size_t hbytes, const char **what, struct slm_diag *d)
{
    size_t fbytes = (size_t)header_file_bytes(header), plen = strlen(path) + 16;
    char *dir = slm_path_dir(path), *tmp = slm_malloc(plen), proc[64];
    void *map = MAP_FAILED;
    bool named = false;
    int fd = -1, rc = 0;

    *what = "out of memory";
    if (dir == NULL || tmp == NULL) {
        rc = ENOMEM;
        goto out;
    }
    /* Unnamed until complete; a named temporary file where O_TMPFILE is not supported. */
    *what = "cannot create a file in its directory";
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        snprintf(tmp, plen, "%s.XXXXXX", path);
        fd = mkostemp(tmp, O_CLOEXEC);
        named = fd >= 0;
    }
    if (fd < 0) {
        rc = errno;
        goto out;
    }
    *what = "cannot reserve its disk space";
    if ((rc = posix_fallocate(fd, 0, (off_t)fbytes)) != 0) goto out;
    *what = "cannot map it";
    map = mmap(NULL, fbytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = errno;
        goto out;
    }
    memcpy(map, header, hbytes);
    place(j, map, header);
    *what = "cannot start the packing threads";
    if (run_pack(j, d) < 0) {
        rc = ENOMEM;
        goto out;
    }
    *what = "cannot write it to disk";
    if (fdatasync(fd) < 0) {
        rc = errno;
        goto out;
    }
    *what = "cannot link it into place";
    if (named) {
        if (rename(tmp, path) < 0) {
            rc = errno;
            goto out;
        }
        named = false;
    } else {
        /* linkat cannot replace: link under a temporary name, then rename over. */
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        snprintf(tmp, plen, "%s.%ld", path, (long)getpid());
        (void)unlink(tmp);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) < 0) {
            rc = errno;
            goto out;
        }
        if (rename(tmp, path) < 0) {
            rc = errno;
            (void)unlink(tmp);
            goto out;
        }
    }
    /* Best effort: a cache name lost in a power cut is only written again. */
    (void)slm_sync_dir(dir);
    /* The pages just written are the page cache's: remap read-only, as later loads do. */
    if (mprotect(map, fbytes, PROT_READ) < 0) {
        rc = errno;
        goto out;
    }
    m->pack_map = map;
    m->pack_map_bytes = fbytes;
    m->pack_source = MODEL_PACK_CACHE_WRITTEN;
    map = MAP_FAILED;
out:
    if (map != MAP_FAILED) {
        munmap(map, fbytes);
        for (size_t i = 0; i < j->n; i++)
            j->l[i]->packed = NULL;
    }
    if (named) (void)unlink(tmp);
    if (fd >= 0) close(fd);
    slm_free(tmp);
    slm_free(dir);
    return rc;
}

/* Packs every layer into its own buffer in memory. */
static int pack_in_memory(struct model *m, struct pack_job *j, struct slm_diag *d)
{
    for (size_t i = 0; i < j->n; i++) {
        struct model_linear *l = j->l[i];
        size_t bytes = l->n_out * l->row_bytes;

        if ((l->packed = slm_aligned_alloc(64, bytes)) == NULL)
            return slm_diag_set(d, SLM_ENOMEM, "out of memory repacking a %zu x %zu-byte weight",
                                l->n_out, l->row_bytes);
    }
    m->pack_source = MODEL_PACK_MEMORY;
    return run_pack(j, d);
}

/*
 * Repacks every linear layer the kernels have a packed layout for, from the
 * cache file when it is current, else into a new one, else in memory; none
 * with SLM_REPACK=0 (for comparisons: Q8_0 decode and small batches give the
 * same bits; the layout changes speed and the rounding of large batches).
 * path is the model's file, NULL for a model from memory (no cache).
 */
int model_pack_weights(struct model *m, const char *path, struct slm_diag *d)
{
    const char *env = getenv("SLM_REPACK");
    struct pack_job *j;
    uint8_t *header = NULL;
    size_t hbytes = 0;
    char *cpath = NULL;
    int rc = 0;

    if (env != NULL && strcmp(env, "0") == 0) return 0;
    j = slm_calloc(1, sizeof(*j));
    if (j == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory repacking weights");
    j->k = kernels_get();
    if (packable(m, j->k, &m->output)) j->l[j->n++] = &m->output;
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        struct model_layer *L = &m->layers[il];
        struct model_linear *ls[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down };

        for (size_t i = 0; i < sizeof(ls) / sizeof(ls[0]); i++)
            if (packable(m, j->k, ls[i])) j->l[j->n++] = ls[i];
    }
    for (size_t i = 0; i < j->n; i++) {
        size_t bytes;

        if (!slm_mul_size(j->l[i]->n_out, j->l[i]->row_bytes, &bytes)) {
            rc = slm_diag_set(d, SLM_ELIMIT, "weight of %zu x %zu bytes too large", j->l[i]->n_out,
                              j->l[i]->row_bytes);
            goto out;
        }
        m->packed_bytes += bytes;
    }
    if (j->n == 0) goto out;
    if (path != NULL && (rc = cache_path(path, &cpath, d)) < 0) goto out;
    if (cpath != NULL && cache_header(m, j, &header, &hbytes)) {
        const char *what;
        int e;

        if (cache_map(m, j, cpath, header, hbytes)) goto out;
        e = cache_write(m, j, cpath, header, hbytes, &what, d);
        if (e == 0) {
            log_info("model: wrote the repacked weights to %s (%.1f MiB; later loads map it; "
                     "SLM_REPACK_CACHE=off packs in memory instead)",
                     cpath, (double)m->packed_bytes / (1024.0 * 1024.0));
            goto out;
        }
        log_warn("model: repack cache %s: %s (%s); packing in memory (SLM_REPACK_CACHE=DIR "
                 "puts the cache elsewhere, =off stops trying)",
                 cpath, what, ERRTEXT(e));
    }
    rc = pack_in_memory(m, j, d);
out:
    slm_free(header);
    slm_free(cpath);
    slm_free(j);
    return rc;
}

/* Frees or unmaps the packed weights. */
void model_pack_free(struct model *m)
{
    if (m->pack_map != NULL) {
        munmap(m->pack_map, m->pack_map_bytes);
        return;
    }
    slm_free(m->output.packed);
    for (uint32_t il = 0; m->layers != NULL && il < m->hp.n_layer; il++) {
        struct model_layer *L = &m->layers[il];

        slm_free(L->wq.packed);
        slm_free(L->wk.packed);
        slm_free(L->wv.packed);
        slm_free(L->wo.packed);
        slm_free(L->gate.packed);
        slm_free(L->up.packed);
        slm_free(L->down.packed);
    }
}

enum model_pack_source model_pack_source(const struct model *m)
{
    return m->pack_source;
}
