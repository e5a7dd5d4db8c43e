/*
 * cmd_gguf.c - placeholder until its owner lands the real command.
 */
#include <stdio.h>

#include "cli/cli.h"

int cmd_gguf(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "slm gguf: not built yet\n");
    return SLM_EXIT_RUNTIME;
}
