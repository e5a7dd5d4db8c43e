/*
 * chat.h - chat templates (a Jinja subset) and tool-call parsing.
 *
 * Templates: the model's tokenizer.chat_template is compiled once by
 * chat_template_new into an immutable program and rendered per request with
 * the globals Hugging Face passes (messages, tools, add_generation_prompt,
 * bos_token, eos_token, raise_exception, strftime_now), with trim_blocks and
 * lstrip_blocks on, so the output is byte-identical to Python Jinja2 with
 * those settings. The interpreter is sandboxed by construction: no file,
 * network or attribute access beyond the JSON data it is given, and every
 * render is bounded in steps, output bytes and recursion depth (a hostile
 * template ends with SLM_ELIMIT, never a hang). Built-in templates (chatml,
 * llama3, mistral) serve models without one.
 *
 * Tool calls: the incremental parser turns generated text into content and
 * OpenAI tool_calls for Mistral [TOOL_CALLS], Hermes/Qwen <tool_call> and
 * Llama 3 JSON formats; malformed calls come back as plain text.
 *
 * Ownership: chat_template_new returns new (chat_template_free). A compiled
 * template is immutable and may be shared by threads; rendering borrows the
 * JSON values and appends to the caller's buffer.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"

struct chat_template;

/* Compiles Jinja source; a syntax error is SLM_EFORMAT with line and column. */
SLM_NODISCARD int chat_template_new(const char *src, size_t len, struct chat_template **out,
                                    struct slm_diag *d);
/* name: "chatml", "llama3", "mistral". SLM_ENOTFOUND for others. */
SLM_NODISCARD int chat_template_builtin(const char *name, struct chat_template **out,
                                        struct slm_diag *d);
void chat_template_free(struct chat_template *t);

struct chat_render_params {
    const struct json_value *messages; /* array of OpenAI message objects */
    const struct json_value *tools;    /* array of tool definitions, or NULL */
    bool add_generation_prompt;
    const char *bos_token; /* "" if none */
    const char *eos_token;
    /* Extra top-level variables (e.g. enable_thinking), or NULL: an object. */
    const struct json_value *extra;
};

/* Renders into out (appends). SLM_EINVAL for raise_exception, with its message. */
SLM_NODISCARD int chat_template_render(const struct chat_template *t,
                                       const struct chat_render_params *p, struct slm_buf *out,
                                       struct slm_diag *d);
