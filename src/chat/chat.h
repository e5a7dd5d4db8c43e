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
#include <stdint.h>

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
    /* strftime_now's time in seconds since the epoch (local time zone); 0 is
     * the current time. Tests pin it so renders are reproducible. */
    int64_t now;
    /* Lower bounds for this render; 0 takes the default (and hard maximum)
     * SLM_LIMIT_TEMPLATE_STEPS / SLM_LIMIT_TEMPLATE_RENDER_MEM. */
    uint64_t steps_max;
    size_t mem_max;
};

/* Renders into out (appends). SLM_EINVAL for raise_exception, with its message. */
SLM_NODISCARD int chat_template_render(const struct chat_template *t,
                                       const struct chat_render_params *p, struct slm_buf *out,
                                       struct slm_diag *d);

/*
 * ---- Tool-call parsing (toolcall.c) ----
 *
 * A parser is fed the generated text piece by piece (any split, even inside
 * a UTF-8 character or a marker) and reports deltas through a callback:
 * content text, and for each tool call a first delta with its id, type
 * "function" and name, followed by one or more argument fragments (JSON
 * text; their concatenation is the call's "arguments" string). Text that
 * could still become a call ("<tool", "[TOOL_CA", a leading "{") is held
 * back until it is decided; a call is reported only once it is complete and
 * valid JSON, so a malformed or unfinished call comes back as the content
 * text it was. Whitespace between content and a call, and between calls, is
 * dropped. The concatenated content and the calls do not depend on how the
 * text was split.
 *
 * Formats:
 *  - CHAT_TOOLCALL_MISTRAL: "[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]"
 *    (v3, Nemo) and "[TOOL_CALLS]name[ARGS]{...}" (Devstral, Mistral Small
 *    3.2, optional "[CALL_ID]id" before "[ARGS]"); each call may start with
 *    its own [TOOL_CALLS]. Ids are 9 alphanumeric characters, the form
 *    Mistral templates require when the call comes back in the history.
 *  - CHAT_TOOLCALL_HERMES: "<tool_call>{"name": ..., "arguments": {...}}</tool_call>"
 *    (Qwen 2.5/3, Hermes), any number, content before them.
 *  - CHAT_TOOLCALL_LLAMA3: the response is a JSON object {"name": ...,
 *    "parameters": {...}} ("arguments" also accepted), optionally after
 *    "<|python_tag|>", several separated by ";" or whitespace.
 *  - CHAT_TOOLCALL_NONE: everything is content.
 * Ids of the other formats are "call_" and 24 random alphanumerics.
 *
 * Bounds: a call candidate larger than SLM_LIMIT_TOOLCALL_BYTES is given up
 * and returned as content. Ownership: the parser owns its buffers; deltas
 * borrow them for the duration of the callback only.
 */
enum chat_toolcall_format {
    CHAT_TOOLCALL_NONE = 0,
    CHAT_TOOLCALL_MISTRAL,
    CHAT_TOOLCALL_HERMES,
    CHAT_TOOLCALL_LLAMA3,
    CHAT_TOOLCALL_FORMAT_COUNT
};

enum chat_delta_type { CHAT_DELTA_CONTENT = 0, CHAT_DELTA_TOOL_CALL };

struct chat_delta {
    enum chat_delta_type type;
    const char *text; /* content, or an argument fragment ("" in a first delta) */
    size_t text_len;
    size_t index;     /* tool call index, 0-based */
    const char *id;   /* first delta of a call: NUL-terminated id; else NULL */
    const char *name; /* first delta of a call: function name; else NULL */
    size_t name_len;
};

/* Receives one delta; a negative return stops the parser and is returned. */
typedef int chat_delta_cb(void *arg, const struct chat_delta *delta);

struct chat_toolcall_parser;

/* Returns new (chat_toolcall_parser_free). seed 0 takes ids from getrandom;
 * another value makes ids reproducible (tests). */
SLM_NODISCARD int chat_toolcall_parser_new(enum chat_toolcall_format fmt, uint64_t seed,
                                           struct chat_toolcall_parser **out, struct slm_diag *d);
void chat_toolcall_parser_free(struct chat_toolcall_parser *p);
/* Feeds text[0..len) (borrowed); deltas that are decided go to cb. Returns 0,
 * the callback's error, or SLM_ENOMEM. */
SLM_NODISCARD int chat_toolcall_feed(struct chat_toolcall_parser *p, const char *text, size_t len,
                                     chat_delta_cb *cb, void *arg);
/* End of generation: complete calls are reported, everything else held back
 * comes out as content. The parser may not be fed afterwards. */
SLM_NODISCARD int chat_toolcall_finish(struct chat_toolcall_parser *p, chat_delta_cb *cb,
                                       void *arg);
/* Number of tool calls reported so far (finish_reason "tool_calls" if > 0). */
size_t chat_toolcall_count(const struct chat_toolcall_parser *p);
/* "none", "mistral", "hermes", "llama3"; and the reverse (SLM_ENOTFOUND). */
const char *chat_toolcall_format_name(enum chat_toolcall_format fmt);
SLM_NODISCARD int chat_toolcall_format_parse(const char *name, enum chat_toolcall_format *out);
/* Guesses the format from a chat template's source ([TOOL_CALLS],
 * <tool_call>, <|python_tag|> / "parameters"); CHAT_TOOLCALL_NONE if none. */
enum chat_toolcall_format chat_toolcall_format_detect(const char *template_src, size_t len);
