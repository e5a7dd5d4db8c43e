/*
 * cmd_tokenize.c - placeholder until its owner lands the real command.
 */
#include <stdio.h>

#include "cli/cli.h"

int cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "slm tokenize: not built yet\n");
    return SLM_EXIT_RUNTIME;
}
