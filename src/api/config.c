/*
 * config.c - see config.h.
 *
 * Each option keeps one value and the source it came from; a source may set
 * a value only if it ranks at least as high as the value's current source,
 * so the layers can be read in any order and the precedence still holds.
 */
#include "api/config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/str.h"

struct config_val {
    char *str; /* owned; NULL when unset */
    long long i;
    enum config_source src;
    unsigned file_line; /* line in the config file (duplicate check) */
};

struct config {
    const struct config_opt *opts;
    size_t n;
    char prefix[16];
    struct config_val *v;
};

/* ---- the table ---- */

static bool name_ok(const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;

    if (len == 0 || len > CONFIG_NAME_MAX) return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
}

/* Creates a config for the table; see config.h. */
int config_new(const struct config_opt *opts, size_t n, const char *env_prefix, struct config **out)
{
    struct config *c;

    *out = NULL;
    if (strlen(env_prefix) >= sizeof(c->prefix)) return SLM_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!name_ok(opts[i].name) || (opts[i].alias != NULL && !name_ok(opts[i].alias)) ||
            (unsigned)opts[i].kind >= CONFIG_KIND_COUNT)
            return SLM_EINVAL;
    }
    c = slm_calloc(1, sizeof(*c));
    if (c == NULL) return SLM_ENOMEM;
    c->v = slm_calloc(n > 0 ? n : 1, sizeof(*c->v));
    if (c->v == NULL) {
        slm_free(c);
        return SLM_ENOMEM;
    }
    c->opts = opts;
    c->n = n;
    memcpy(c->prefix, env_prefix, strlen(env_prefix) + 1);
    *out = c;
    return 0;
}

void config_free(struct config *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i < c->n; i++)
        slm_free(c->v[i].str);
    slm_free(c->v);
    slm_free(c);
}

/* ---- values ---- */

static bool truthy(const char *s, bool *out)
{
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "0", "false", "no", "off" };

    for (size_t k = 0; k < 4; k++) {
        if (strcasecmp(s, yes[k]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[k]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/*
 * Checks value for option o; on error writes "wants ..., got '...'" into msg.
 * *iv receives the integer (CONFIG_INT) or the flag (0/1).
 */
static bool check_value(const struct config_opt *o, const char *value, long long *iv, char *msg,
                        size_t cap)
{
    int64_t x;
    bool b;

    *iv = 0;
    for (const char *p = value; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(msg, cap, "control character in the value");
            return false;
        }
    }
    switch (o->kind) {
    case CONFIG_INT:
        if (slm_parse_i64(value, &x) < 0 || x < o->min || x > o->max) {
            snprintf(msg, cap, "wants an integer from %lld to %lld, got '%.64s'", o->min, o->max,
                     value);
            return false;
        }
        *iv = x;
        return true;
    case CONFIG_FLAG:
        if (!truthy(value, &b)) {
            snprintf(msg, cap, "wants true or false (also yes/no, on/off, 1/0), got '%.64s'",
                     value);
            return false;
        }
        *iv = b;
        return true;
    case CONFIG_STR:
    case CONFIG_LIST:
    case CONFIG_KIND_COUNT:
        break;
    }
    if (value[0] == '\0') {
        snprintf(msg, cap, "wants a value, got an empty one");
        return false;
    }
    return true;
}

/* Stores value for option i from src (if src ranks high enough). append: add to a list. */
static int set_value(struct config *c, size_t i, const char *value, long long iv,
                     enum config_source src, bool append)
{
    struct config_val *v = &c->v[i];
    char *s;

    if (src < v->src) return 0;
    if (append && v->src == src && v->str != NULL) {
        size_t a = strlen(v->str), b = strlen(value), n;

        if (!slm_add_size(a, b, &n) || !slm_add_size(n, 2, &n)) return SLM_ENOMEM;
        s = slm_malloc(n);
        if (s == NULL) return SLM_ENOMEM;
        memcpy(s, v->str, a);
        s[a] = ',';
        memcpy(s + a + 1, value, b + 1);
    } else {
        s = slm_strdup(value);
        if (s == NULL) return SLM_ENOMEM;
    }
    slm_free(v->str);
    v->str = s;
    v->i = iv;
    v->src = src;
    return 0;
}

bool config_is_set(const struct config *c, size_t i)
{
    return i < c->n && c->v[i].src != CONFIG_SRC_DEFAULT;
}

enum config_source config_source_of(const struct config *c, size_t i)
{
    return i < c->n ? c->v[i].src : CONFIG_SRC_DEFAULT;
}

const char *config_str(const struct config *c, size_t i)
{
    return i < c->n ? c->v[i].str : NULL;
}

long long config_int(const struct config *c, size_t i, long long def)
{
    return i < c->n && c->v[i].str != NULL ? c->v[i].i : def;
}

/* Sets a computed default; see config.h. */
int config_set_default(struct config *c, size_t i, const char *value)
{
    char msg[160];
    long long iv;

    if (i >= c->n || !check_value(&c->opts[i], value, &iv, msg, sizeof(msg))) return SLM_EINVAL;
    if (c->v[i].src != CONFIG_SRC_DEFAULT) return 0;
    return set_value(c, i, value, iv, CONFIG_SRC_DEFAULT, false);
}

bool config_flag(const struct config *c, size_t i)
{
    return config_is_set(c, i) && c->v[i].i != 0;
}

const char *config_source_name(enum config_source s)
{
    static const char *const names[CONFIG_SRC_COUNT] = { "default", "config file", "environment",
                                                         "command line" };

    return (unsigned)s < CONFIG_SRC_COUNT ? names[s] : "?";
}

/* Writes PREFIX + NAME upper-cased, '-' -> '_'. */
void config_env_name(const struct config *c, size_t i, char *out, size_t cap)
{
    size_t k = 0;

    if (cap == 0) return;
    for (const char *p = c->prefix; *p != '\0' && k + 1 < cap; p++)
        out[k++] = *p;
    for (const char *p = c->opts[i].name; *p != '\0' && k + 1 < cap; p++)
        out[k++] = *p == '-' ? '_' : (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
    out[k] = '\0';
}

/* ---- command line ---- */

/* Parses argv; see config.h. */
int config_parse_argv(struct config *c, int argc, char **argv, struct slm_diag *d)
{
    struct option *lo;
    char shorts[128];
    size_t n_lo = 0, n_s = 0;
    int ch, rc = 0;

    lo = slm_calloc(c->n * 2 + 1, sizeof(*lo));
    if (lo == NULL) return slm_diag_set(d, SLM_ENOMEM, "out of memory");
    shorts[n_s++] = ':'; /* report a missing value as ':' */
    for (size_t i = 0; i < c->n; i++) {
        const struct config_opt *o = &c->opts[i];
        int has = o->kind == CONFIG_FLAG ? no_argument : required_argument;

        lo[n_lo++] = (struct option){ o->name, has, NULL, 256 + (int)i };
        if (o->alias != NULL) lo[n_lo++] = (struct option){ o->alias, has, NULL, 256 + (int)i };
        if (o->short_name != 0 && n_s + 3 < sizeof(shorts)) {
            shorts[n_s++] = (char)o->short_name;
            if (has == required_argument) shorts[n_s++] = ':';
        }
    }
    shorts[n_s] = '\0';
    optind = 0; /* glibc: start over (also resets a previous scan's state) */
    opterr = 0;
    while ((ch = getopt_long_only(argc, argv, shorts, lo, NULL)) != -1) {
        const struct config_opt *o;
        char msg[160];
        long long iv;
        size_t i;

        if (ch == '?' || ch == ':') {
            const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";

            if (ch == ':')
                rc = slm_diag_set(d, SLM_EINVAL, "option '%.64s' needs a value", arg);
            else if (optopt != 0 && optopt < 256)
                rc = slm_diag_set(d, SLM_EINVAL, "unknown option '-%c'", optopt);
            else
                rc = slm_diag_set(d, SLM_EINVAL, "unknown option '%.64s'", arg);
            goto out;
        }
        if (ch < 256) {
            for (i = 0; i < c->n && c->opts[i].short_name != ch; i++)
                ;
        } else {
            i = (size_t)(ch - 256);
        }
        if (i >= c->n) {
            rc = slm_diag_set(d, SLM_EINVAL, "unknown option");
            goto out;
        }
        o = &c->opts[i];
        if (o->refused != NULL) {
            rc = slm_diag_set(d, SLM_EINVAL, "--%s is not accepted: %s", o->name, o->refused);
            goto out;
        }
        if (o->kind == CONFIG_FLAG) {
            rc = set_value(c, i, "true", 1, CONFIG_SRC_ARGV, false);
        } else if (!check_value(o, optarg, &iv, msg, sizeof(msg))) {
            rc = slm_diag_set(d, SLM_EINVAL, "--%s %s", o->name, msg);
        } else {
            rc = set_value(c, i, optarg, iv, CONFIG_SRC_ARGV, o->kind == CONFIG_LIST);
            if (rc < 0) slm_diag_set(d, rc, "out of memory");
        }
        if (rc < 0) goto out;
    }
    if (optind < argc)
        rc = slm_diag_set(d, SLM_EINVAL, "unexpected argument '%.64s'", argv[optind]);
out:
    slm_free(lo);
    return rc;
}

/* ---- environment ---- */

/* Reads the environment; see config.h. */
int config_parse_env(struct config *c, char *const *envp, struct slm_diag *d)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct config_opt *o = &c->opts[i];
        char name[CONFIG_NAME_MAX + 20], msg[160];
        const char *value = NULL;
        size_t len;
        long long iv;
        int rc;

        if ((o->flags & CONFIG_NO_ENV) != 0 || o->refused != NULL) continue;
        config_env_name(c, i, name, sizeof(name));
        len = strlen(name);
        for (char *const *e = envp; e != NULL && *e != NULL; e++) {
            if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') value = *e + len + 1;
        }
        if (value == NULL || value[0] == '\0') continue;
        if (!check_value(o, value, &iv, msg, sizeof(msg)))
            return slm_diag_set(d, SLM_EINVAL, "environment variable %s (--%s): %s", name, o->name,
                                msg);
        if ((rc = set_value(c, i, value, iv, CONFIG_SRC_ENV, false)) < 0)
            return slm_diag_set(d, rc, "out of memory");
    }
    return 0;
}

/* ---- config file ---- */

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static size_t find_opt(const struct config *c, const char *key, size_t len)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct config_opt *o = &c->opts[i];

        if ((strlen(o->name) == len && memcmp(o->name, key, len) == 0) ||
            (o->alias != NULL && strlen(o->alias) == len && memcmp(o->alias, key, len) == 0))
            return i;
    }
    return SIZE_MAX;
}

/* Parses one line (without its end of line); see config_parse_text. */
static int parse_line(struct config *c, const char *name, unsigned line_no, const char *s,
                      size_t len, struct slm_diag *d)
{
    const struct config_opt *o;
    char value[CONFIG_LINE_MAX + 1], msg[160];
    size_t k = 0, key_at, key_len, val_at, val_len, i;
    long long iv;
    int rc;

    while (k < len && is_blank(s[k]))
        k++;
    if (k == len || s[k] == '#') return 0;
    key_at = k;
    while (k < len && s[k] != '=' && !is_blank(s[k]))
        k++;
    key_len = k - key_at;
    while (k < len && is_blank(s[k]))
        k++;
    if (k == len || s[k] != '=')
        return slm_diag_set(d, SLM_EFORMAT, "%s:%u:%zu: expected 'name = value'", name, line_no,
                            key_at + 1);
    i = find_opt(c, s + key_at, key_len);
    if (i == SIZE_MAX)
        return slm_diag_set(d, SLM_EFORMAT,
                            "%s:%u:%zu: unknown key '%.*s' (the keys are the long option names "
                            "of --help, without '--')",
                            name, line_no, key_at + 1, (int)(key_len > 48 ? 48 : key_len),
                            s + key_at);
    o = &c->opts[i];
    if (o->refused != NULL)
        return slm_diag_set(d, SLM_EFORMAT, "%s:%u:%zu: %s is not accepted: %s", name, line_no,
                            key_at + 1, o->name, o->refused);
    if ((o->flags & CONFIG_NO_FILE) != 0)
        return slm_diag_set(d, SLM_EFORMAT, "%s:%u:%zu: %s is not accepted in a config file", name,
                            line_no, key_at + 1, o->name);
    if (c->v[i].file_line != 0)
        return slm_diag_set(d, SLM_EFORMAT, "%s:%u:%zu: duplicate key '%s' (first set on line %u)",
                            name, line_no, key_at + 1, o->name, c->v[i].file_line);
    k++; /* '=' */
    while (k < len && is_blank(s[k]))
        k++;
    val_at = k;
    if (k < len && s[k] == '"') {
        const char *q = memchr(s + k + 1, '"', len - k - 1);
        size_t after;

        if (q == NULL)
            return slm_diag_set(d, SLM_EFORMAT, "%s:%u:%zu: %s: missing closing '\"'", name,
                                line_no, val_at + 1, o->name);
        val_at = k + 1;
        val_len = (size_t)(q - (s + val_at));
        after = (size_t)(q - s) + 1;
        while (after < len && is_blank(s[after]))
            after++;
        if (after < len && s[after] != '#')
            return slm_diag_set(d, SLM_EFORMAT, "%s:%u:%zu: %s: text after the closing '\"'", name,
                                line_no, after + 1, o->name);
    } else {
        size_t end = k;

        /* The value ends at a '#' that follows blank space (an inline comment). */
        while (end < len && !(s[end] == '#' && end > val_at && is_blank(s[end - 1])))
            end++;
        while (end > val_at && is_blank(s[end - 1]))
            end--;
        val_len = end - val_at;
    }
    memcpy(value, s + val_at, val_len);
    value[val_len] = '\0';
    if (!check_value(o, value, &iv, msg, sizeof(msg)))
        return slm_diag_set(d, SLM_EFORMAT, "%s:%u:%zu: %s: %s", name, line_no, val_at + 1, o->name,
                            msg);
    if ((rc = set_value(c, i, value, iv, CONFIG_SRC_FILE, false)) < 0)
        return slm_diag_set(d, rc, "out of memory");
    c->v[i].file_line = line_no;
    return 0;
}

/* Parses config text; see config.h. */
int config_parse_text(struct config *c, const char *name, const char *text, size_t len,
                      struct slm_diag *d)
{
    unsigned line_no = 0;
    size_t off = 0;

    if (memchr(text, '\0', len) != NULL)
        return slm_diag_set(d, SLM_EFORMAT, "%s: contains a NUL byte (not a text file)", name);
    while (off < len) {
        const char *s = text + off, *nl = memchr(s, '\n', len - off);
        size_t line_len = nl != NULL ? (size_t)(nl - s) : len - off;
        int rc;

        line_no++;
        off += line_len + (nl != NULL ? 1 : 0);
        if (line_len > 0 && s[line_len - 1] == '\r') line_len--;
        if (line_len > CONFIG_LINE_MAX)
            return slm_diag_set(d, SLM_EFORMAT, "%s:%u:1: line longer than %u bytes", name, line_no,
                                CONFIG_LINE_MAX);
        if ((rc = parse_line(c, name, line_no, s, line_len, d)) < 0) return rc;
    }
    return 0;
}

/* Reads a config file after checking who may change it; see config.h. */
int config_parse_file(struct config *c, const char *path, struct slm_diag *d)
{
    struct stat st;
    char *text = NULL;
    size_t got = 0;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return slm_diag_set(d, errno == ENOENT ? SLM_ENOTFOUND : SLM_EIO, "config file %s: %s",
                            path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        rc = slm_diag_set(d, SLM_EIO, "config file %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = slm_diag_set(d, SLM_EINVAL, "config file %s is not a regular file", path);
        goto out;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        rc = slm_diag_set(d, SLM_EPERM,
                          "config file %s is owned by uid %u, not by you or root: refusing it "
                          "(whoever owns it can change this server's settings)",
                          path, (unsigned)st.st_uid);
        goto out;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        rc = slm_diag_set(d, SLM_EPERM,
                          "config file %s is writable by group or others (mode %03o): refusing "
                          "it; run chmod go-w %s",
                          path, (unsigned)(st.st_mode & 0777), path);
        goto out;
    }
    if ((uint64_t)st.st_size > CONFIG_FILE_MAX) {
        rc = slm_diag_set(d, SLM_ELIMIT, "config file %s is larger than %u bytes", path,
                          CONFIG_FILE_MAX);
        goto out;
    }
    text = slm_malloc((size_t)st.st_size + 1);
    if (text == NULL) {
        rc = slm_diag_set(d, SLM_ENOMEM, "out of memory");
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, text + got, (size_t)st.st_size - got);

        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = slm_diag_set(d, SLM_EIO, "config file %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    rc = config_parse_text(c, path, text, got, d);
out:
    slm_free(text);
    close(fd);
    return rc;
}

/* ---- printing ---- */

/* Prints the effective configuration; see config.h. */
int config_print(const struct config *c, struct slm_buf *out)
{
    int rc = 0;

    rc |= slm_buf_printf(out, "# precedence: command line > environment > config file > "
                              "default\n");
    for (size_t i = 0; i < c->n && rc == 0; i++) {
        const struct config_opt *o = &c->opts[i];
        const struct config_val *v = &c->v[i];
        char env[CONFIG_NAME_MAX + 20];

        if (o->refused != NULL || (o->flags & CONFIG_NO_FILE) != 0) continue;
        config_env_name(c, i, env, sizeof(env));
        if (v->str != NULL) {
            bool quote = strchr(v->str, '#') != NULL || is_blank(v->str[0]) ||
                         is_blank(v->str[strlen(v->str) - 1]);

            rc |= slm_buf_printf(out, "%s = %s%s%s  # %s%s%s\n", o->name, quote ? "\"" : "", v->str,
                                 quote ? "\"" : "", config_source_name(v->src),
                                 v->src == CONFIG_SRC_ENV ? " " : "",
                                 v->src == CONFIG_SRC_ENV ? env : "");
        } else if (o->def != NULL) {
            rc |= slm_buf_printf(out, "%s = %s  # default\n", o->name, o->def);
        } else {
            rc |= slm_buf_printf(out, "# %s =  (not set)\n", o->name);
        }
    }
    return rc < 0 ? SLM_ENOMEM : 0;
}
