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

/*
 * ---- Incremental JSON prefix validation (toolcall.c) ----
 *
 * For constrained decoding (tool_choice "required" or named): a byte-level
 * pushdown automaton that says whether a text is a prefix of a valid JSON
 * document whose root is an object, and how many bytes at least would
 * complete it. The scheduler's token filter feeds each candidate token's
 * bytes to a copy of the state (the struct is plain caller storage, about
 * 620 bytes, copied per candidate) and keeps the token only if the result
 * is still a prefix and can be completed within the tokens left.
 *
 * The accepted language is strict RFC 8259 as core/json.h parses it, plus
 * the bounds below, so a completed document always passes json_parse:
 * UTF-8 checked byte by byte (no overlongs, no surrogates, nothing above
 * U+10FFFF), control characters must be escaped, \u escapes need 4 hex
 * digits and surrogates must pair (a high one followed by \uDC00-\uDFFF),
 * no leading zeros, no duplicate keys in one object (keys compared after
 * decoding escapes, through a 64-bit FNV-1a hash), nothing after the root
 * closes. Bounds: nesting CHAT_JSON_DEPTH_MAX, keys of all open objects
 * CHAT_JSON_KEYS_MAX, number literals CHAT_JSON_NUMBER_MAX characters with
 * at most 2 exponent digits (so no value overflows a double), runs of
 * whitespace outside strings CHAT_JSON_WS_MAX bytes.
 *
 * chat_json_prefix_min_close is exact enough for a budget: from any prefix
 * state that is not complete, one byte (a closing quote or bracket, a digit,
 * a letter of a literal, a continuation byte) always lowers it by one, so a
 * generator that keeps min_close <= tokens left can always finish.
 */
#define CHAT_JSON_DEPTH_MAX  32u
#define CHAT_JSON_KEYS_MAX   64u
#define CHAT_JSON_NUMBER_MAX 64u
#define CHAT_JSON_WS_MAX     16u

enum chat_json_status {
    CHAT_JSON_INVALID = -1, /* not a prefix of any valid document */
    CHAT_JSON_PREFIX = 0,   /* a proper prefix: more bytes needed */
    CHAT_JSON_COMPLETE = 1  /* the root object just closed */
};

/* Caller storage; the fields are private to toolcall.c. */
struct chat_json_prefix {
    uint8_t mode, sub, flags, depth, n_keys, ws, pend, lo, hi, lit, lit_pos, exp_digits;
    uint16_t num_len;
    uint32_t hex, high;
    uint64_t key_hash;
    uint8_t kind[CHAT_JSON_DEPTH_MAX];
    uint8_t key_base[CHAT_JSON_DEPTH_MAX];
    uint64_t keys[CHAT_JSON_KEYS_MAX];
};

/* Starts at the empty text (an object must open first; whitespace may lead). */
void chat_json_prefix_init(struct chat_json_prefix *j);
/*
 * Feeds s[0..n) (borrowed). Returns the status after the bytes; after
 * CHAT_JSON_INVALID the state is unusable (feed a copy to test a
 * candidate). Bytes after the root object closed are CHAT_JSON_INVALID.
 */
enum chat_json_status chat_json_prefix_feed(struct chat_json_prefix *j, const char *s, size_t n);
/* Fewest bytes that complete the document from this state; 0 once complete. */
size_t chat_json_prefix_min_close(const struct chat_json_prefix *j);

/*
 * ---- Reasoning ("thinking") split (toolcall.c) ----
 *
 * Models that think (Qwen3, DeepSeek R1, QwQ) answer "<think>reasoning
 * </think>answer". The splitter, fed the generated text piece by piece (any
 * split), reports the reasoning and the answer separately, the way
 * llama-server's --reasoning-format deepseek does: "<think>" is recognised
 * only at the very start (after optional whitespace); whitespace right
 * after "<think>", before "</think>" and right after "</think>" is dropped;
 * an output that does not start with "<think>" is all content. When the
 * prompt itself ends inside an open "<think>" (start_inside), the output
 * starts as reasoning. A think block still open at the end (the length cut
 * it) stays reasoning. Text that could still be a tag is held back until it
 * is decided; the reported pieces do not depend on how the text was split.
 *
 * Ownership: the splitter owns its buffer; callbacks borrow the text for
 * the duration of the call.
 */
typedef int chat_think_cb(void *arg, bool reasoning, const char *text, size_t len);

struct chat_think_parser;

/* Returns new (chat_think_parser_free); SLM_ENOMEM. */
SLM_NODISCARD int chat_think_parser_new(bool start_inside, struct chat_think_parser **out);
void chat_think_parser_free(struct chat_think_parser *p);
/* Feeds text[0..len); decided pieces go to cb. Returns 0, cb's error or SLM_ENOMEM. */
SLM_NODISCARD int chat_think_feed(struct chat_think_parser *p, const char *text, size_t len,
                                  chat_think_cb *cb, void *arg);
/* End of the output: what was held back is reported. No feed afterwards. */
SLM_NODISCARD int chat_think_finish(struct chat_think_parser *p, chat_think_cb *cb, void *arg);
/* True if the rendered prompt ends inside an open think block: its last
 * non-whitespace bytes are "<think>". */
bool chat_think_prompt_open(const char *prompt, size_t len);
