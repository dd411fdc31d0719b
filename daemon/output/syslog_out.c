/* syslog_out.c: sends each record as one syslog(3) line: the readable line
 * of finding.h, then key=value pairs. Knows no journald, no Dataverse. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "finding.h"
#include "macro.h"
#include "output-internal.h"
#include "strutil.h"
#include "timeutil.h"

#define TRUNCATED " " STR_ELLIPSIS

struct line {
        char *buf;
        size_t size;
        FILE *f;
        bool full;      /* a pair did not fit: later ones are dropped too */
};

/* Takes ownership of text (the readable line); NULL means ENOMEM. */
static int line_start(struct line *l, char *text) {
        _cleanup_free_ char *t = text;

        *l = (struct line) {};
        if (!t)
                return -ENOMEM;
        l->f = open_memstream(&l->buf, &l->size);
        if (!l->f)
                return -ENOMEM;
        fputs(t, l->f);
        return 0;
}

static void line_pair(struct line *l, const char *key, const char *value) {
        _cleanup_free_ char *q = NULL;
        long len;

        if (l->full || !value)
                return;
        q = str_quote(value, SYSLOG_VALUE_MAX, QUOTE_IF_NEEDED);
        len = ftell(l->f);      /* a memstream's length so far */
        if (!q || len < 0 ||
            (size_t) len + 2 + strlen(key) + strlen(q) + strlen(TRUNCATED) > SYSLOG_LINE_MAX) {
                fputs(TRUNCATED, l->f);
                l->full = true;
                return;
        }
        fprintf(l->f, " %s=%s", key, q);
}

static void line_pairf(struct line *l, const char *key, const char *fmt, ...) _printf_(3, 4);
static void line_pairf(struct line *l, const char *key, const char *fmt, ...) {
        char buf[64];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        line_pair(l, key, buf);
}

static void line_time(struct line *l, const char *key, time_t t) {
        char buf[ISO8601_BUFSZ];

        if (t > 0)
                line_pair(l, key, iso8601_format(t, buf));
}

static char *line_finish(struct line *l) {
        bool failed = ferror(l->f);

        if (fclose(l->f) != 0 || failed)
                return mfree(l->buf);
        return l->buf;
}

static void line_culprit(struct line *l, const struct culprit *c) {
        _cleanup_free_ char *v = NULL;

        if (asprintf(&v, "%s:%s:%s", culprit_kind_to_string(c->kind), strempty(c->id),
                     strempty(c->name)) < 0) {
                l->full = true;
                fputs(TRUNCATED, l->f);
                return;
        }
        line_pair(l, "culprit", v);
}

char *syslog_out_line_finding(const struct finding *f) {
        struct line l;

        if (line_start(&l, finding_format_line(f)) < 0)
                return NULL;
        line_pair(&l, "event", "finding");
        line_pair(&l, "environment", f->environment);
        line_pair(&l, "finding_id", f->id);
        line_pair(&l, "mailbox_id", f->mailbox.id);
        line_pair(&l, "alert_id", f->alert.id);
        line_pairf(&l, "error_code", "%" PRId64, f->alert.code);
        line_pair(&l, "verdict", verdict_to_string(f->verdict));
        line_pairf(&l, "occurrences", "%u", f->occurrences);
        for (size_t i = 0; i < f->n_culprits; i++)
                line_culprit(&l, &f->culprits[i]);
        return line_finish(&l);
}

char *syslog_out_line_resolved(const struct resolved_event *e) {
        struct line l;

        if (line_start(&l, resolved_event_format_line(e)) < 0)
                return NULL;
        line_pair(&l, "event", "resolved");
        line_pair(&l, "environment", e->environment);
        line_pair(&l, "finding_id", e->finding_id);
        line_pair(&l, "mailbox_id", e->mailbox.id);
        line_pair(&l, "alert_id", e->alert_id);
        line_pairf(&l, "occurrences", "%u", e->occurrences);
        line_time(&l, "resolved_at", e->resolved_at);
        return line_finish(&l);
}

char *syslog_out_line_error(const struct error_event *e) {
        struct line l;

        if (line_start(&l, error_event_format_line(e)) < 0)
                return NULL;
        line_pair(&l, "event", "error");
        line_pair(&l, "environment", e->environment);
        line_pair(&l, "state", error_state_to_string(e->state));
        line_pair(&l, "query", e->query);
        line_pairf(&l, "failures", "%u", e->failures);
        line_time(&l, "since", e->since);
        return line_finish(&l);
}

static int send_line(struct output *o, int priority, char *line) {
        _cleanup_free_ char *l = line;  /* takes ownership */

        if (!l)
                return -ENOMEM;
        syslog(o->syslog_facility | priority, "%s", l);
        return 0;
}

static int syslog_finding(struct output *o, const struct finding *f) {
        return send_line(o, LOG_WARNING, syslog_out_line_finding(f));
}

static int syslog_resolved(struct output *o, const struct resolved_event *e) {
        return send_line(o, LOG_NOTICE, syslog_out_line_resolved(e));
}

static int syslog_error(struct output *o, const struct error_event *e) {
        return send_line(o, e->state == ERROR_STATE_FAILING ? LOG_ERR : LOG_NOTICE,
                         syslog_out_line_error(e));
}

const struct output_ops syslog_output_ops = {
        .finding = syslog_finding,
        .resolved = syslog_resolved,
        .error = syslog_error,
};
