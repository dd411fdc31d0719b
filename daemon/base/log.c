/* log.c: operator diagnostics on stderr, filtered by level. Owns the only
 * logging state (level, prefix style); knows nothing of findings. */
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static enum log_level max_level = LOG_LEVEL_NOTICE;
static int syslog_prefix;

void log_set_max_level(enum log_level level) {
        max_level = level;
}

enum log_level log_get_max_level(void) {
        return max_level;
}

void log_set_syslog_prefix(int enabled) {
        syslog_prefix = enabled;
}

void log_msg(enum log_level level, const char *fmt, ...) {
        /* sd-daemon(3) priorities: err 3, warning 4, notice 5, info 6, debug 7 */
        static const int prio[] = { 3, 4, 5, 6, 7 };
        va_list ap;

        if (level > max_level)
                return;
        if (syslog_prefix)
                fprintf(stderr, "<%d>", prio[level]);
        else
                fputs("s3mond: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}
