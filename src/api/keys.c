/*
 * keys.c - API keys: loading, generation and constant-time verification
 * (see api.h, RELIABILITY rule 5 and K05).
 *
 * Only the SHA-256 digest of each key is kept in memory. Verification hashes
 * the presented key (so the comparison's length never depends on it) and
 * compares the digest with every stored digest with CRYPTO_memcmp, without
 * stopping at the first match, so the time does not tell which key (or how
 * much of one) matched. Key text never reaches a log line or a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "core/alloc.h"
#include "core/rand.h"

/* Largest key file read. */
#define KEYS_FILE_MAX (1u << 20)
/* Most keys in one set. */
#define KEYS_MAX      4096u
#define DIGEST_LEN    32u

struct api_keys {
    unsigned char (*digests)[DIGEST_LEN];
    size_t n;
    size_t cap;
};

/* Returns a new empty set, or NULL. */
struct api_keys *api_keys_new(void)
{
    return slm_calloc(1, sizeof(struct api_keys));
}

/* Frees the set (digests wiped). NULL is a no-op. */
void api_keys_free(struct api_keys *k)
{
    if (k == NULL) return;
    if (k->digests != NULL) slm_free_secret(k->digests, k->cap * DIGEST_LEN);
    slm_free(k);
}

size_t api_keys_count(const struct api_keys *k)
{
    return k->n;
}

static bool sha256(const char *p, size_t len, unsigned char out[DIGEST_LEN])
{
    unsigned int n = 0;

    return EVP_Digest(p, len, out, &n, EVP_sha256(), NULL) == 1 && n == DIGEST_LEN;
}

/* Adds one key; see api.h. */
int api_keys_add(struct api_keys *k, const char *key, size_t len, struct slm_diag *d)
{
    size_t i;

    if (len < API_KEY_LEN_MIN || len > API_KEY_LEN_MAX)
        return slm_diag_set(d, SLM_EINVAL, "API key has %zu characters; it must have %u to %u", len,
                            API_KEY_LEN_MIN, API_KEY_LEN_MAX);
    for (i = 0; i < len; i++)
        if ((unsigned char)key[i] <= 0x20 || (unsigned char)key[i] >= 0x7f)
            return slm_diag_set(d, SLM_EINVAL,
                                "API key has a character at offset %zu that is not printable "
                                "ASCII (spaces and control characters are not allowed)",
                                i);
    if (k->n >= KEYS_MAX) return slm_diag_set(d, SLM_ELIMIT, "more than %u API keys", KEYS_MAX);
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4, bytes;
        unsigned char(*nd)[DIGEST_LEN];

        if (!slm_mul_size(cap, DIGEST_LEN, &bytes)) return SLM_ENOMEM;
        nd = slm_calloc(1, bytes);
        if (nd == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory");
        if (k->n > 0) memcpy(nd, k->digests, k->n * DIGEST_LEN);
        if (k->digests != NULL) slm_free_secret(k->digests, k->cap * DIGEST_LEN);
        k->digests = nd;
        k->cap = cap;
    }
    if (!sha256(key, len, k->digests[k->n]))
        return slm_diag_set(d, SLM_EINTERNAL, "SHA-256 failed");
    k->n++;
    return 0;
}

/* Loads a key file; see api.h. */
int api_keys_load_file(struct api_keys *k, const char *path, struct slm_diag *d)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0, line = 0, n_added = 0, pos;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return slm_diag_set(d, errno == ENOENT ? SLM_ENOTFOUND : SLM_EIO, "API key file %s: %s",
                            path, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = slm_diag_set(d, SLM_EINVAL, "API key file %s: not a regular file", path);
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        rc = slm_diag_set(d, SLM_EPERM,
                          "API key file %s: mode %03o lets other users read it; run chmod 600 %s",
                          path, (unsigned)(st.st_mode & 0777), path);
        goto out;
    }
    if (st.st_uid != geteuid()) {
        rc = slm_diag_set(d, SLM_EPERM, "API key file %s: owned by uid %u, not by this user", path,
                          (unsigned)st.st_uid);
        goto out;
    }
    if (st.st_size > (off_t)KEYS_FILE_MAX) {
        rc = slm_diag_set(d, SLM_ELIMIT, "API key file %s: larger than %u bytes", path,
                          KEYS_FILE_MAX);
        goto out;
    }
    buf = slm_malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = slm_diag_set(d, SLM_ENOMEM, "out of memory");
        goto out;
    }
    while (len < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);

        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    for (pos = 0; pos < len;) {
        const char *p = buf + pos, *nl = memchr(p, '\n', len - pos);
        size_t l = nl != NULL ? (size_t)(nl - p) : len - pos;

        pos += l + (nl != NULL ? 1 : 0);
        line++;
        while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t'))
            l--;
        while (l > 0 && (p[0] == ' ' || p[0] == '\t')) {
            p++;
            l--;
        }
        if (l == 0 || p[0] == '#') continue;
        rc = api_keys_add(k, p, l, d);
        if (rc < 0) {
            char msg[SLM_DIAG_MSG_MAX];

            snprintf(msg, sizeof(msg), "%s", d != NULL ? d->msg : "");
            slm_diag_set(d, rc, "API key file %s line %zu: %s", path, line, msg);
            goto out;
        }
        n_added++;
    }
    if (n_added == 0) rc = slm_diag_set(d, SLM_EINVAL, "API key file %s holds no key", path);
out:
    if (buf != NULL) slm_free_secret(buf, (size_t)st.st_size + 1);
    close(fd);
    return rc;
}

/* Generates "sk-slm-" + 64 hex digits from 32 random bytes. */
int api_keys_generate(char out[API_KEY_GEN_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[32];
    size_t i, o = sizeof(API_KEY_PREFIX) - 1;
    int rc = slm_random_bytes(r, sizeof(r));

    if (rc < 0) return rc;
    memcpy(out, API_KEY_PREFIX, o);
    for (i = 0; i < sizeof(r); i++) {
        out[o++] = hex[r[i] >> 4];
        out[o++] = hex[r[i] & 15];
    }
    out[o] = '\0';
    OPENSSL_cleanse(r, sizeof(r));
    return 0;
}

/* Constant-time membership test; see api.h. */
bool api_keys_verify(const struct api_keys *k, const char *key, size_t len)
{
    unsigned char dg[DIGEST_LEN];
    unsigned ok = 0;
    size_t i;

    if (len == 0 || len > API_KEY_LEN_MAX || !sha256(key, len, dg)) return false;
    for (i = 0; i < k->n; i++)
        ok |= (unsigned)(CRYPTO_memcmp(dg, k->digests[i], DIGEST_LEN) == 0);
    OPENSSL_cleanse(dg, sizeof(dg));
    return ok != 0;
}
