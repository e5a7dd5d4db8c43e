/*
 * cmd_gguf.c - slm gguf info FILE [--json]: what a GGUF file holds.
 *
 * The file is opened with gguf_open, so everything printed has passed the
 * same validation slm run relies on; a malformed file gets the reader's
 * one-line diagnostic on stderr and exit status 1.
 *
 * The human format shortens long values (strings to GGUF_INFO_STR_SHOWN
 * bytes, arrays to their first few elements) and escapes control bytes so
 * that a hostile string cannot move the terminal's cursor. --json prints one
 * JSON object with every value complete (core/json.h escapes it).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/str.h"
#include "engine/gguf.h"
#include "engine/quant.h"

#define CMD "gguf"

/* Bytes of a string value shown in the human format. */
#define GGUF_INFO_STR_SHOWN  64u
/* Bytes of one array string element shown. */
#define GGUF_INFO_ELEM_SHOWN 24u
/* Array elements shown in the human format. */
#define GGUF_INFO_ARR_NUMS   8u
#define GGUF_INFO_ARR_STRS   5u

static void usage(FILE *out)
{
    fprintf(out, "usage: slm gguf info [--json] FILE\n"
                 "       slm gguf --help\n"
                 "\n"
                 "Validates a GGUF model file (versions 2 and 3) and shows what it holds:\n"
                 "version, alignment, every metadata key with its type and value (long strings\n"
                 "and arrays shortened), and a table of the tensors with their type, shape,\n"
                 "offset in the data section and size in bytes, plus totals.\n"
                 "\n"
                 "options:\n"
                 "  --json      print one JSON object with every value complete\n"
                 "  -h, --help  show this help\n"
                 "\n"
                 "exit status: 0 ok, 1 malformed or unreadable file, 2 usage error,\n"
                 "             4 file writable by group or others (run 'chmod go-w FILE')\n");
}

/* ------------------------------------------------------------------ */
/* Human format                                                       */
/* ------------------------------------------------------------------ */

/*
 * Prints s[0..len) escaped, at most max bytes of it (cut on a character
 * boundary), in double quotes; appends the full length when shortened.
 */
static void put_str(const char *s, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    bool utf8 = slm_utf8_valid(s, len);
    size_t shown = len;

    if (len > max) {
        shown = max;
        while (utf8 && shown > 0 && (p[shown] & 0xc0) == 0x80)
            shown--;
    }
    putchar('"');
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = p[i];

        switch (c) {
        case '\n':
            fputs("\\n", stdout);
            break;
        case '\t':
            fputs("\\t", stdout);
            break;
        case '\r':
            fputs("\\r", stdout);
            break;
        case '"':
            fputs("\\\"", stdout);
            break;
        case '\\':
            fputs("\\\\", stdout);
            break;
        default:
            if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
                printf("\\x%02x", c);
            else
                putchar(c);
        }
    }
    putchar('"');
    if (shown < len) printf("... (%zu bytes)", len);
}

/* Prints element j of the packed little-endian array at p. */
static void put_num(enum gguf_type t, const uint8_t *p, uint64_t j)
{
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        uint64_t u64;
        int64_t i64;
        double f64;
    } v;
    size_t sz = 0;

    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        sz = 1;
        break;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        sz = 2;
        break;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        sz = 4;
        break;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        sz = 8;
        break;
    case GGUF_TYPE_STRING:
    case GGUF_TYPE_ARRAY:
    case GGUF_TYPE_COUNT:
        return;
    }
    memcpy(&v, p + j * sz, sz);
    switch (t) {
    case GGUF_TYPE_UINT8:
        printf("%u", v.u8);
        break;
    case GGUF_TYPE_INT8:
        printf("%d", v.i8);
        break;
    case GGUF_TYPE_BOOL:
        fputs(v.u8 ? "true" : "false", stdout);
        break;
    case GGUF_TYPE_UINT16:
        printf("%u", v.u16);
        break;
    case GGUF_TYPE_INT16:
        printf("%d", v.i16);
        break;
    case GGUF_TYPE_UINT32:
        printf("%" PRIu32, v.u32);
        break;
    case GGUF_TYPE_INT32:
        printf("%" PRId32, v.i32);
        break;
    case GGUF_TYPE_FLOAT32:
        printf("%g", (double)v.f32);
        break;
    case GGUF_TYPE_UINT64:
        printf("%" PRIu64, v.u64);
        break;
    case GGUF_TYPE_INT64:
        printf("%" PRId64, v.i64);
        break;
    case GGUF_TYPE_FLOAT64:
        printf("%g", v.f64);
        break;
    case GGUF_TYPE_STRING:
    case GGUF_TYPE_ARRAY:
    case GGUF_TYPE_COUNT:
        break;
    }
}

/* Prints the value of key i, shortened. */
static void put_value(const struct gguf_file *f, size_t i)
{
    enum gguf_type t = gguf_kv_type(f, i);

    if (t == GGUF_TYPE_STRING) {
        struct gguf_str s = gguf_kv_str(f, i);

        put_str(s.ptr, s.len, GGUF_INFO_STR_SHOWN);
    } else if (t == GGUF_TYPE_ARRAY) {
        enum gguf_type et = gguf_kv_arr_type(f, i);
        uint64_t n = gguf_kv_arr_n(f, i);
        uint64_t shown = et == GGUF_TYPE_STRING ? GGUF_INFO_ARR_STRS : GGUF_INFO_ARR_NUMS;

        printf("[%s x %" PRIu64 "]", gguf_type_name(et), n);
        if (n < shown) shown = n;
        for (uint64_t j = 0; j < shown; j++) {
            fputs(j == 0 ? " " : ", ", stdout);
            if (et == GGUF_TYPE_STRING) {
                struct gguf_str s = gguf_kv_arr_str(f, i, j);

                put_str(s.ptr, s.len, GGUF_INFO_ELEM_SHOWN);
            } else {
                put_num(et, gguf_kv_arr_data(f, i), j);
            }
        }
        if (shown < n) fputs(", ...", stdout);
    } else {
        uint64_t u;
        int64_t v;
        double d;
        bool b;

        if (t == GGUF_TYPE_BOOL && gguf_kv_bool(f, i, &b) == 0)
            fputs(b ? "true" : "false", stdout);
        else if ((t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) && gguf_kv_f64(f, i, &d) == 0)
            printf("%g", d);
        else if (gguf_kv_i64(f, i, &v) == 0)
            printf("%" PRId64, v);
        else if (gguf_kv_u64(f, i, &u) == 0)
            printf("%" PRIu64, u);
    }
    putchar('\n');
}

/* Formats a tensor's shape as "[a, b, c]". */
static void shape_str(const struct gguf_tensor *t, char *out, size_t n)
{
    size_t o = 0;

    o += (size_t)snprintf(out, n, "[");
    for (uint32_t k = 0; k < t->n_dims && o < n; k++)
        o += (size_t)snprintf(out + o, n - o, "%s%" PRIu64, k ? ", " : "", t->ne[k]);
    if (o < n) snprintf(out + o, n - o, "]");
}

static void print_human(const char *path, const struct gguf_file *f)
{
    size_t n_kv = gguf_n_kv(f), n_t = gguf_n_tensors(f);
    size_t key_w = 8, name_w = 4;
    uint64_t n_el = 0, n_bytes = 0, by_type[TENSOR_TYPE_COUNT] = { 0 };
    bool first = true;

    for (size_t i = 0; i < n_kv; i++)
        if (gguf_kv_key(f, i).len > key_w) key_w = gguf_kv_key(f, i).len;
    if (key_w > 48) key_w = 48;
    for (size_t i = 0; i < n_t; i++)
        if (gguf_tensor_at(f, i)->name.len > name_w) name_w = gguf_tensor_at(f, i)->name.len;

    printf("file:        %s\n", path);
    printf("size:        %zu bytes\n", gguf_file_size(f));
    printf("version:     %" PRIu32 "\n", gguf_version(f));
    printf("alignment:   %zu\n", gguf_alignment(f));
    printf("data offset: %zu\n", gguf_data_offset(f));
    printf("metadata:    %zu keys\n", n_kv);
    printf("tensors:     %zu\n", n_t);

    printf("\nmetadata:\n");
    for (size_t i = 0; i < n_kv; i++) {
        struct gguf_str k = gguf_kv_key(f, i);
        enum gguf_type t = gguf_kv_type(f, i);

        /* Keys are valid UTF-8 without NUL (checked by the reader). */
        printf("  %-*.*s %-8s ", (int)key_w, (int)k.len, k.ptr,
               t == GGUF_TYPE_ARRAY ? "array" : gguf_type_name(t));
        put_value(f, i);
    }

    printf("\ntensors:\n");
    printf("  %-6s %-*s %-8s %-24s %14s %14s\n", "#", (int)name_w, "name", "type", "shape",
           "offset", "bytes");
    for (size_t i = 0; i < n_t; i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[128];

        shape_str(t, shape, sizeof(shape));
        printf("  %-6zu %-*.*s %-8s %-24s %14" PRIu64 " %14" PRIu64 "\n", i, (int)name_w,
               (int)t->name.len, t->name.ptr, tensor_type_name(t->type), shape, t->offset, t->size);
        n_el += t->n_elements;
        n_bytes += t->size;
        by_type[t->type]++;
    }
    printf("\ntotal: %zu tensors, %" PRIu64 " elements, %" PRIu64 " bytes", n_t, n_el, n_bytes);
    for (uint32_t ty = 0; ty < TENSOR_TYPE_COUNT; ty++) {
        if (by_type[ty] == 0) continue;
        printf("%s%s %" PRIu64, first ? " (" : ", ", tensor_type_name(ty), by_type[ty]);
        first = false;
    }
    printf("%s\n", first ? "" : ")");
}

/* ------------------------------------------------------------------ */
/* JSON                                                               */
/* ------------------------------------------------------------------ */

/* Writes element j of the packed little-endian numeric array at p. */
static void json_num(struct json_writer *w, enum gguf_type t, const uint8_t *p, uint64_t j)
{
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    float f32;
    uint64_t u64;
    int64_t i64;
    double f64;

    switch (t) {
    case GGUF_TYPE_UINT8:
        memcpy(&u8, p + j, 1);
        json_uint(w, u8);
        break;
    case GGUF_TYPE_INT8:
        memcpy(&i8, p + j, 1);
        json_int(w, i8);
        break;
    case GGUF_TYPE_BOOL:
        memcpy(&u8, p + j, 1);
        json_bool(w, u8 != 0);
        break;
    case GGUF_TYPE_UINT16:
        memcpy(&u16, p + 2 * j, 2);
        json_uint(w, u16);
        break;
    case GGUF_TYPE_INT16:
        memcpy(&i16, p + 2 * j, 2);
        json_int(w, i16);
        break;
    case GGUF_TYPE_UINT32:
        memcpy(&u32, p + 4 * j, 4);
        json_uint(w, u32);
        break;
    case GGUF_TYPE_INT32:
        memcpy(&i32, p + 4 * j, 4);
        json_int(w, i32);
        break;
    case GGUF_TYPE_FLOAT32:
        memcpy(&f32, p + 4 * j, 4);
        json_double(w, (double)f32);
        break;
    case GGUF_TYPE_UINT64:
        memcpy(&u64, p + 8 * j, 8);
        json_uint(w, u64);
        break;
    case GGUF_TYPE_INT64:
        memcpy(&i64, p + 8 * j, 8);
        json_int(w, i64);
        break;
    case GGUF_TYPE_FLOAT64:
        memcpy(&f64, p + 8 * j, 8);
        json_double(w, f64);
        break;
    case GGUF_TYPE_STRING:
    case GGUF_TYPE_ARRAY:
    case GGUF_TYPE_COUNT:
        json_null(w);
        break;
    }
}

static void json_scalar(struct json_writer *w, const struct gguf_file *f, size_t i)
{
    enum gguf_type t = gguf_kv_type(f, i);
    uint64_t u;
    int64_t v;
    double d;
    bool b;

    if (t == GGUF_TYPE_BOOL && gguf_kv_bool(f, i, &b) == 0)
        json_bool(w, b);
    else if ((t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) && gguf_kv_f64(f, i, &d) == 0)
        json_double(w, d);
    else if (gguf_kv_i64(f, i, &v) == 0)
        json_int(w, v);
    else if (gguf_kv_u64(f, i, &u) == 0)
        json_uint(w, u);
    else
        json_null(w);
}

static int print_json(const char *path, const struct gguf_file *f)
{
    struct slm_buf b;
    struct json_writer w;
    uint64_t n_el = 0, n_bytes = 0;
    char key[SLM_LIMIT_GGUF_KEY + 1];
    int rc;

    slm_buf_init(&b, SLM_LIMIT_CLI_OUTPUT);
    json_writer_init(&w, &b, false);
    json_obj_begin(&w);
    json_key(&w, "file");
    json_cstr(&w, path);
    json_key(&w, "file_size");
    json_uint(&w, gguf_file_size(f));
    json_key(&w, "version");
    json_uint(&w, gguf_version(f));
    json_key(&w, "alignment");
    json_uint(&w, gguf_alignment(f));
    json_key(&w, "data_offset");
    json_uint(&w, gguf_data_offset(f));
    json_key(&w, "n_kv");
    json_uint(&w, gguf_n_kv(f));
    json_key(&w, "n_tensors");
    json_uint(&w, gguf_n_tensors(f));
    json_key(&w, "metadata");
    json_obj_begin(&w);
    for (size_t i = 0; i < gguf_n_kv(f); i++) {
        struct gguf_str k = gguf_kv_key(f, i);
        enum gguf_type t = gguf_kv_type(f, i);

        memcpy(key, k.ptr, k.len); /* 1..SLM_LIMIT_GGUF_KEY bytes, no NUL */
        key[k.len] = '\0';
        json_key(&w, key);
        json_obj_begin(&w);
        json_key(&w, "type");
        json_cstr(&w, gguf_type_name(t));
        if (t == GGUF_TYPE_ARRAY) {
            enum gguf_type et = gguf_kv_arr_type(f, i);
            uint64_t n = gguf_kv_arr_n(f, i);

            json_key(&w, "element_type");
            json_cstr(&w, gguf_type_name(et));
            json_key(&w, "count");
            json_uint(&w, n);
            json_key(&w, "value");
            json_arr_begin(&w);
            for (uint64_t j = 0; j < n && w.rc == 0; j++) {
                if (et == GGUF_TYPE_STRING) {
                    struct gguf_str s = gguf_kv_arr_str(f, i, j);

                    json_str(&w, s.ptr, s.len);
                } else {
                    json_num(&w, et, gguf_kv_arr_data(f, i), j);
                }
            }
            json_arr_end(&w);
        } else if (t == GGUF_TYPE_STRING) {
            struct gguf_str s = gguf_kv_str(f, i);

            json_key(&w, "value");
            json_str(&w, s.ptr, s.len);
        } else {
            json_key(&w, "value");
            json_scalar(&w, f, i);
        }
        json_obj_end(&w);
    }
    json_obj_end(&w);
    json_key(&w, "tensors");
    json_arr_begin(&w);
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);

        json_obj_begin(&w);
        json_key(&w, "name");
        json_str(&w, t->name.ptr, t->name.len);
        json_key(&w, "type");
        json_cstr(&w, tensor_type_name(t->type));
        json_key(&w, "shape");
        json_arr_begin(&w);
        for (uint32_t k = 0; k < t->n_dims; k++)
            json_uint(&w, t->ne[k]);
        json_arr_end(&w);
        json_key(&w, "n_elements");
        json_uint(&w, t->n_elements);
        json_key(&w, "offset");
        json_uint(&w, t->offset);
        json_key(&w, "size");
        json_uint(&w, t->size);
        json_obj_end(&w);
        n_el += t->n_elements;
        n_bytes += t->size;
    }
    json_arr_end(&w);
    json_key(&w, "total_elements");
    json_uint(&w, n_el);
    json_key(&w, "total_bytes");
    json_uint(&w, n_bytes);
    json_obj_end(&w);
    rc = json_writer_finish(&w);
    if (rc < 0) {
        slm_buf_fini(&b);
        return cli_fail(CMD, rc, "%s: cannot format the JSON output: %s", path, slm_strerror(rc));
    }
    fwrite(b.data, 1, b.len, stdout);
    putchar('\n');
    slm_buf_fini(&b);
    return SLM_EXIT_OK;
}

/* ------------------------------------------------------------------ */

static int cmd_info(const char *path, bool json)
{
    struct gguf_file *f;
    struct slm_diag d;
    int rc, code;

    slm_diag_clear(&d);
    rc = gguf_open(path, &f, &d);
    if (rc < 0) return cli_fail_diag(CMD, rc, &d);
    if (json) {
        code = print_json(path, f);
    } else {
        print_human(path, f);
        code = SLM_EXIT_OK;
    }
    gguf_close(f);
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail(CMD, SLM_EIO, "cannot write the output: %s", strerror(errno));
    return code;
}

/* slm gguf: see usage(). */
int cmd_gguf(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false;
    int opt;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'j':
            json = true;
            break;
        case 'h':
            usage(stdout);
            return SLM_EXIT_OK;
        default:
            return cli_usage_error(CMD, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing subcommand (info)");
    if (strcmp(argv[optind], "info") != 0)
        return cli_usage_error(CMD, "unknown subcommand '%s' (try info)", argv[optind]);
    if (optind + 1 >= argc) return cli_usage_error(CMD, "info needs a FILE");
    if (optind + 2 < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 2]);
    return cmd_info(argv[optind + 1], json);
}
