/* output.c: picks the output for the way s3mond was started and dispatches
 * each record to it. Knows no record layout (finding.c) nor transport detail. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "macro.h"
#include "output-internal.h"
#include "output.h"

static const char *const output_names[] = {
        [OUTPUT_AUTO] = "auto",
        [OUTPUT_JOURNAL] = "journal",
        [OUTPUT_SYSLOG] = "syslog",
        [OUTPUT_STDERR] = "stderr",
        [OUTPUT_JSON] = "json",
};

const char *output_kind_to_string(enum output_kind k) {
        return (size_t) k < ELEMENTSOF(output_names) ? output_names[k] : NULL;
}

int output_kind_from_string(const char *s) {
        for (size_t i = 0; s && i < ELEMENTSOF(output_names); i++)
                if (strcmp(output_names[i], s) == 0)
                        return (int) i;
        return -EINVAL;
}

bool output_stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

enum output_kind output_resolve_kind(enum output_kind kind) {
        const char *invocation;

        if (kind != OUTPUT_AUTO)
                return kind;
        if (output_stderr_is_journal())
                return OUTPUT_JOURNAL;
        invocation = getenv("INVOCATION_ID");
        if (invocation && *invocation && !isatty(STDERR_FILENO))
                return OUTPUT_JOURNAL;
        return OUTPUT_STDERR;
}

int output_new(enum output_kind kind, int syslog_facility, FILE *json_stream, struct output **ret) {
        struct output *o;
        const struct output_ops *ops;

        kind = output_resolve_kind(kind);
        switch (kind) {
        case OUTPUT_JOURNAL:
                ops = &journal_output_ops;
                break;
        case OUTPUT_SYSLOG:
                ops = &syslog_output_ops;
                break;
        case OUTPUT_STDERR:
                ops = &stderr_output_ops;
                break;
        case OUTPUT_JSON:
                ops = &json_output_ops;
                break;
        default:
                return -EINVAL;
        }

        /* Without journald, sd_journal_sendv() drops entries silently. */
        if (kind == OUTPUT_JOURNAL) {
                int r = journal_out_check();
                if (r < 0)
                        return r;
        }

        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        *o = (struct output) {
                .kind = kind,
                .ops = ops,
                .syslog_facility = syslog_facility,
                .stream = json_stream ? json_stream : kind == OUTPUT_JSON ? stdout : stderr,
        };
        /* LOG_NDELAY connects now, so a missing /dev/log shows at start-up
         * rather than silently at the first finding. The connection is the
         * process's (syslog(3) has one); it is not closed by output_free(),
         * since a new syslog output may already be using it after a reload. */
        if (kind == OUTPUT_SYSLOG)
                openlog("s3mond", LOG_PID | LOG_NDELAY, syslog_facility);
        *ret = o;
        return 0;
}

void output_free(struct output *o) {
        free(o);
}

enum output_kind output_get_kind(const struct output *o) {
        return o->kind;
}

int output_emit_finding(struct output *o, const struct finding *f) {
        return o->ops->finding(o, f);
}

int output_emit_resolved(struct output *o, const struct resolved_event *e) {
        return o->ops->resolved(o, e);
}

int output_emit_error(struct output *o, const struct error_event *e) {
        return o->ops->error(o, e);
}
