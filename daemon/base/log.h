/* log.h: diagnostics for the operator (not findings: those go through
 * outputs). Lines go to stderr, which systemd puts in the journal. The level
 * is set once by main from -v; no module prints a secret, at any level. */
#pragma once

#include "macro.h"

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_NOTICE, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_max_level(enum log_level level);
enum log_level log_get_max_level(void);
/* Prefix each line with "<N>" (sd-daemon priority) when stderr is the journal. */
void log_set_syslog_prefix(int enabled);

void log_msg(enum log_level level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
