/*
 * report.h - the start-up report of `slm serve`: endpoint, key, model and
 * context, a curl line to test the server, how to trust a self-signed
 * certificate, and ready-to-paste settings for Cline, Continue
 * (config.yaml), OpenCode (opencode.json) and Aider.
 *
 * Every string that lands inside a JSON or YAML snippet is written as a JSON
 * string (double quotes, escaped), which is also a valid YAML double-quoted
 * scalar, so a key or alias with ':' or '#' cannot break the snippet.
 * Snippet sections start with a line "== NAME: where ==" and end at the next
 * blank line, so scripts (and the tests) can cut them out.
 *
 * Threading: none. Ownership: everything in struct report_params is
 * borrowed for the call; the text is appended to the caller's buffer. The
 * text may hold the API key: wipe the buffer (explicit_bzero) when done.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

struct report_params {
    const char *endpoint;        /* base URL with /v1: "https://127.0.0.1:8443/v1" */
    const char *remote_endpoint; /* the same from other machines, or NULL */
    const char *alias;           /* model id */
    uint32_t n_ctx;              /* context tokens per request */
    uint32_t n_slots;            /* requests generated at once */
    int32_t n_predict;           /* server-wide cap on generated tokens, < 0: none */
    const char *key;             /* the key itself, or NULL: not to be shown */
    const char *key_note;        /* after the key, e.g. "new: shown once ...", or NULL */
    const char *key_file;        /* a file whose first key line is the key, or NULL */
    const char *key_hint;        /* shell text giving the key: "$(cat FILE)", "$SLM_API_KEY" */
    const char *ca_file;         /* self-signed certificate clients must trust, or NULL */
    bool ca_new;                 /* ca_file was generated at this start */
};

/* Appends the report to out. Returns 0 or SLM_ENOMEM/SLM_ELIMIT (out's cap). */
SLM_NODISCARD int report_write(const struct report_params *p, struct slm_buf *out);
