/*
 * log.h - the one logger: key=value lines on stderr.
 *
 * Levels follow nginx: ERROR, WARN, INFO, DEBUG; the default threshold is INFO
 * (SLM_LOG=debug|info|warn|error changes it). Anything that looks like an API
 * key (sk-...) is redacted as a second line of defence; the first is never
 * passing secrets here. Thread-safe: one write(2) per line.
 */
#pragma once

#include "core/err.h"

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_write(enum log_level level, const char *fmt, ...) SLM_PRINTF(2, 3);

#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
