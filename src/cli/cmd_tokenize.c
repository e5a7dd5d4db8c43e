/*
 * cmd_tokenize.c - slm tokenize: print the tokens of a text.
 *
 * Loads only the vocabulary of a GGUF file (a vocabulary-only file with no
 * tensors works), encodes the text as slm run would (BOS/EOS as the model
 * says, control-token text parsed), and prints one "id -> 'piece'" line per
 * token like llama.cpp's llama-tokenize, or the ids alone with --ids.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

#define CMD "tokenize"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: slm tokenize -m MODEL [options] (TEXT | -p TEXT | -f FILE | -)\n"
            "\n"
            "Prints the tokens of TEXT (or of FILE, or of standard input for '-') as\n"
            "\"id -> 'piece'\" lines.\n"
            "\n"
            "options:\n"
            "  -m, --model PATH        GGUF file with a vocabulary (tensors not needed)\n"
            "  -p, --prompt TEXT       the text (same as the TEXT argument)\n"
            "  -f, --file PATH         read the text from a file\n"
            "      --ids               print only the ids, separated by spaces\n"
            "      --lines             tokenize each line (without its \\n) on its own and\n"
            "                          print its ids on one output line (implies --ids)\n"
            "      --no-bos            do not add BOS/EOS even if the model asks for them\n"
            "      --no-parse-special  treat control-token text like \"<|eot_id|>\" as text\n"
            "  -h, --help              show this help\n"
            "\n"
            "exit status: 0 ok, 1 runtime error (bad file or vocabulary), 2 usage error,\n"
            "             5 input larger than %u MiB\n",
            SLM_LIMIT_TOKENIZE_INPUT >> 20);
}

/* Reads all of f into a new buffer (at most SLM_LIMIT_TOKENIZE_INPUT bytes). */
static int read_all(FILE *f, const char *name, char **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = slm_xmalloc(cap);

    for (;;) {
        if (n == cap) {
            if (cap >= SLM_LIMIT_TOKENIZE_INPUT) {
                slm_free(buf);
                return cli_fail(CMD, SLM_ELIMIT, "%s: more than %u MiB of text", name,
                                SLM_LIMIT_TOKENIZE_INPUT >> 20);
            }
            cap *= 2;
            buf = slm_xrealloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                int e = errno;
                slm_free(buf);
                return cli_fail(CMD, SLM_EIO, "%s: read error: %s", name, strerror(e));
            }
            break;
        }
    }
    if (n > SLM_LIMIT_TOKENIZE_INPUT) {
        slm_free(buf);
        return cli_fail(CMD, SLM_ELIMIT, "%s: more than %u MiB of text", name,
                        SLM_LIMIT_TOKENIZE_INPUT >> 20);
    }
    *out = buf;
    *len = n;
    return SLM_EXIT_OK;
}

static int print_tokens(const struct tokenizer *tok, const tok_id *ids, size_t n, bool only_ids)
{
    char piece[SLM_LIMIT_TOKEN_BYTES];

    for (size_t i = 0; i < n; i++) {
        if (only_ids) {
            printf(i == 0 ? "%d" : " %d", (int)ids[i]);
            continue;
        }
        size_t len;
        if (tokenizer_token_bytes(tok, ids[i], true, piece, sizeof(piece), &len) < 0) len = 0;
        if (len > sizeof(piece)) len = sizeof(piece);
        printf("%6d -> '", (int)ids[i]);
        fwrite(piece, 1, len, stdout);
        fputs("'\n", stdout);
    }
    if (only_ids) putchar('\n');
    return fflush(stdout) == 0 ? SLM_EXIT_OK : cli_fail(CMD, SLM_EIO, "cannot write the output");
}

int cmd_tokenize(int argc, char **argv)
{
    enum { OPT_IDS = 256, OPT_LINES, OPT_NO_BOS, OPT_NO_PARSE_SPECIAL };
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' },
        { "prompt", required_argument, NULL, 'p' },
        { "file", required_argument, NULL, 'f' },
        { "ids", no_argument, NULL, OPT_IDS },
        { "lines", no_argument, NULL, OPT_LINES },
        { "no-bos", no_argument, NULL, OPT_NO_BOS },
        { "no-parse-special", no_argument, NULL, OPT_NO_PARSE_SPECIAL },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool only_ids = false, lines = false, add_special = true, parse_special = true;
    struct gguf_file *f = NULL;
    struct tokenizer *tok = NULL;
    struct slm_diag d;
    char *text = NULL;
    tok_id *ids = NULL;
    size_t len = 0, n = 0;
    int c, rc, ex;

    slm_diag_clear(&d);
    while ((c = getopt_long(argc, argv, "m:p:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'p':
            prompt = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case OPT_IDS:
            only_ids = true;
            break;
        case OPT_LINES:
            lines = only_ids = true;
            break;
        case OPT_NO_BOS:
            add_special = false;
            break;
        case OPT_NO_PARSE_SPECIAL:
            parse_special = false;
            break;
        case 'h':
            usage(stdout);
            return SLM_EXIT_OK;
        default:
            return cli_usage_error(CMD, "unknown option");
        }
    }
    if (model == NULL) return cli_usage_error(CMD, "-m MODEL is required");
    if (optind < argc) {
        if (optind + 1 < argc)
            return cli_usage_error(CMD, "one TEXT argument only (quote it), got %d", argc - optind);
        if (prompt != NULL || file != NULL)
            return cli_usage_error(CMD, "give the text once: TEXT, -p or -f");
        prompt = argv[optind];
        if (strcmp(prompt, "-") == 0) {
            prompt = NULL;
            file = "-";
        }
    }
    if (prompt != NULL && file != NULL)
        return cli_usage_error(CMD, "give the text once: TEXT, -p or -f");
    if (prompt == NULL && file == NULL)
        return cli_usage_error(CMD, "no text: give TEXT, -p TEXT, -f FILE or - for stdin");

    if (file != NULL) {
        FILE *in = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
        if (in == NULL)
            return cli_fail(CMD, slm_err_from_errno(errno), "%s: %s", file, strerror(errno));
        ex = read_all(in, strcmp(file, "-") == 0 ? "stdin" : file, &text, &len);
        if (in != stdin) fclose(in);
        if (ex != SLM_EXIT_OK) return ex;
    } else {
        len = strlen(prompt);
        text = slm_xstrdup(prompt);
    }

    rc = gguf_open(model, &f, &d);
    if (rc < 0) {
        ex = cli_fail_diag(CMD, rc, &d);
        goto out;
    }
    rc = tokenizer_load(f, &tok, &d);
    if (rc < 0) {
        ex = cli_fail(CMD, rc, "%s: %s", model, d.msg[0] ? d.msg : slm_strerror(rc));
        goto out;
    }
    unsigned flags =
        (add_special ? TOKENIZE_ADD_SPECIAL : 0u) | (parse_special ? TOKENIZE_PARSE_SPECIAL : 0u);
    /* At most one token per byte, plus BOS, EOS and SentencePiece's space. */
    size_t cap = len + 4;
    ids = slm_xcalloc(cap, sizeof(tok_id));
    ex = SLM_EXIT_OK;
    for (size_t start = 0; ex == SLM_EXIT_OK && (start < len || (start == 0 && !lines));) {
        size_t end = len;
        if (lines) {
            const char *nl = memchr(text + start, '\n', len - start);
            end = nl != NULL ? (size_t)(nl - text) : len;
        }
        rc = tokenizer_encode(tok, text + start, end - start, flags, ids, cap, &n);
        if (rc == 0 && n > cap) {
            cap = n;
            ids = slm_xrealloc(ids, cap * sizeof(tok_id));
            rc = tokenizer_encode(tok, text + start, end - start, flags, ids, cap, &n);
        }
        if (rc < 0) {
            ex = cli_fail(CMD, rc, "cannot tokenize: %s", slm_strerror(rc));
            break;
        }
        ex = print_tokens(tok, ids, n, only_ids);
        start = end + 1;
        if (!lines) break;
    }
out:
    slm_free(ids);
    tokenizer_free(tok);
    gguf_close(f);
    slm_free(text);
    return ex;
}
