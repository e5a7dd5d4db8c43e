/*
 * fuzz_json.c - libFuzzer target for the JSON parser (RELIABILITY T09).
 *
 * Every input is parsed under small limits; a document that parses is
 * written back with the writer, parsed again and must compare equal, and
 * writing it a second time must give the same bytes (the writer's output is
 * a fixed point). Any difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void write_doc(const struct json_doc *doc, struct slm_buf *out)
{
    struct json_writer w;

    json_writer_init(&w, out, false);
    json_value_write(&w, json_doc_root(doc));
    if (json_writer_finish(&w) < 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json_parse_params p = json_parse_params_default();
    struct json_doc *a = NULL, *b = NULL;
    struct slm_buf out1, out2;
    struct json_pos pos;
    struct slm_diag d;
    int rc;

    p.mem_max = 16u << 20;
    rc = json_parse((const char *)data, size, &p, &a, &pos, &d);
    if (rc < 0) {
        if (a != NULL || pos.offset > size || d.msg[0] == '\0') abort();
        return 0;
    }
    slm_buf_init(&out1, 64u << 20);
    slm_buf_init(&out2, 64u << 20);
    write_doc(a, &out1);
    if (json_parse(out1.data, out1.len, NULL, &b, NULL, &d) < 0) abort();
    if (!json_value_equal(json_doc_root(a), json_doc_root(b))) abort();
    write_doc(b, &out2);
    if (out1.len != out2.len || memcmp(out1.data, out2.data, out1.len) != 0) abort();
    json_doc_free(a);
    json_doc_free(b);
    slm_buf_fini(&out1);
    slm_buf_fini(&out2);
    return 0;
}
