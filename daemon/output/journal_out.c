/* journal_out.c: owns the journald output: one structured entry per record (docs/design.md §3)
 * over the native protocol. Must not know Dataverse, nor a record layout beyond finding.h. */
#define SD_JOURNAL_SUPPRESS_LOCATION /* CODE_FILE= etc. would name this file, not the event */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "finding.h"
#include "macro.h"
#include "message-ids.h"
#include "output-internal.h"
#include "timeutil.h"

/* Where sd_journal_sendv() sends (fixed in libsystemd). */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

struct fields {
        struct iovec *iov;
        size_t n, allocated;
        bool failed;            /* ENOMEM on some add: the whole record fails */
};

void journal_fields_free(struct iovec *iov, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(iov[i].iov_base);
        free(iov);
}

/* "KEY=value" with value's bytes as they are: sd_journal_sendv() sends a
 * value with a newline in the binary-safe form, so nothing needs escaping. */
static void add_n(struct fields *fl, const char *key, const char *value, size_t len) {
        size_t klen = strlen(key);
        char *field;

        if (fl->failed)
                return;
        if (fl->n == fl->allocated) {
                size_t a = fl->allocated ? fl->allocated * 2 : 32;
                struct iovec *iov = reallocarray(fl->iov, a, sizeof(*iov));

                if (!iov) {
                        fl->failed = true;
                        return;
                }
                fl->iov = iov;
                fl->allocated = a;
        }
        field = malloc(klen + 1 + len);
        if (!field) {
                fl->failed = true;
                return;
        }
        memcpy(field, key, klen);
        field[klen] = '=';
        memcpy(field + klen + 1, value, len);
        fl->iov[fl->n++] = (struct iovec) { .iov_base = field, .iov_len = klen + 1 + len };
}

/* NULL values are left out: a missing field is clearer than an empty one. */
static void add(struct fields *fl, const char *key, const char *value) {
        if (value)
                add_n(fl, key, value, strlen(value));
}

static void addf(struct fields *fl, const char *key, const char *fmt, ...) _printf_(3, 4);
static void addf(struct fields *fl, const char *key, const char *fmt, ...) {
        char buf[64];
        va_list ap;
        int len;

        va_start(ap, fmt);
        len = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        add_n(fl, key, buf, (size_t) len < sizeof(buf) ? (size_t) len : sizeof(buf) - 1);
}

static void add_time(struct fields *fl, const char *key, time_t t) {
        char buf[ISO8601_BUFSZ];

        if (t > 0)
                add(fl, key, iso8601_format(t, buf));
}

/* Takes ownership of s (the line or the JSON text); NULL means ENOMEM. */
static void add_owned(struct fields *fl, const char *key, char *s) {
        if (!s)
                fl->failed = true;
        add(fl, key, s);
        free(s);
}

static void add_json(struct fields *fl, json_t *j) {
        add_owned(fl, "S3MOND_JSON", finding_json_dumps(j));
        json_decref(j);
}

static void add_mailbox(struct fields *fl, const struct mailbox_info *m) {
        add(fl, "S3MOND_MAILBOX_ID", m->id);
        add(fl, "S3MOND_MAILBOX_NAME", m->name);
        add(fl, "S3MOND_MAILBOX_EMAIL", m->email);
}

static int fields_finish(struct fields *fl, struct iovec **ret, size_t *ret_n) {
        if (fl->failed) {
                journal_fields_free(fl->iov, fl->n);
                return -ENOMEM;
        }
        *ret = fl->iov;
        *ret_n = fl->n;
        return 0;
}

static void add_culprit(struct fields *fl, const struct culprit *c) {
        const char *kind = culprit_kind_to_string(c->kind);
        const char *id = strempty(c->id), *name = strempty(c->name);
        size_t klen = strlen(kind), ilen = strlen(id), nlen = strlen(name);
        _cleanup_free_ char *v = malloc(klen + 1 + ilen + 1 + nlen + 1);

        if (!v) {
                fl->failed = true;
                return;
        }
        /* kind:id:name; the name last, since it may hold any character. */
        memcpy(v, kind, klen);
        v[klen] = ':';
        memcpy(v + klen + 1, id, ilen);
        v[klen + 1 + ilen] = ':';
        memcpy(v + klen + 2 + ilen, name, nlen + 1);
        add(fl, "S3MOND_CULPRIT", v);
}

int journal_out_fields_finding(const struct finding *f, struct iovec **ret, size_t *ret_n) {
        struct fields fl = {};
        const char *code_name = error_code_name(f->alert.code);

        add_owned(&fl, "MESSAGE", finding_format_line(f));
        addf(&fl, "PRIORITY", "%d", JOURNAL_PRIORITY_FINDING);
        add(&fl, "MESSAGE_ID", S3MOND_MESSAGE_FINDING_STR);
        add(&fl, "SYSLOG_IDENTIFIER", "s3mond");
        add(&fl, "S3MOND_ENVIRONMENT", f->environment);
        add(&fl, "S3MOND_FINDING_ID", f->id);
        add_mailbox(&fl, &f->mailbox);
        add(&fl, "S3MOND_ALERT_ID", f->alert.id);
        add(&fl, "S3MOND_ALERT_SOURCE", alert_source_to_string(f->alert.source));
        add_time(&fl, "S3MOND_ALERT_AT", f->alert.at);
        addf(&fl, "S3MOND_ERROR_CODE", "%" PRId64, f->alert.code);
        add(&fl, "S3MOND_ERROR_CODE_NAME", code_name);
        add(&fl, "S3MOND_VERDICT", verdict_to_string(f->verdict));
        for (size_t i = 0; i < f->n_culprits; i++)
                add_culprit(&fl, &f->culprits[i]);
        addf(&fl, "S3MOND_OCCURRENCES", "%u", f->occurrences);
        for (size_t i = 0; i < f->n_notes; i++)
                add(&fl, "S3MOND_NOTE", f->notes[i]);
        add(&fl, "S3MOND_REMEDY", f->remedy);
        add_owned(&fl, "S3MOND_JSON", finding_json_text(f));
        return fields_finish(&fl, ret, ret_n);
}

int journal_out_fields_resolved(const struct resolved_event *e, struct iovec **ret, size_t *ret_n) {
        struct fields fl = {};

        add_owned(&fl, "MESSAGE", resolved_event_format_line(e));
        addf(&fl, "PRIORITY", "%d", JOURNAL_PRIORITY_RESOLVED);
        add(&fl, "MESSAGE_ID", S3MOND_MESSAGE_RESOLVED_STR);
        add(&fl, "SYSLOG_IDENTIFIER", "s3mond");
        add(&fl, "S3MOND_ENVIRONMENT", e->environment);
        add(&fl, "S3MOND_FINDING_ID", e->finding_id);
        add_mailbox(&fl, &e->mailbox);
        add(&fl, "S3MOND_ALERT_ID", e->alert_id);
        addf(&fl, "S3MOND_OCCURRENCES", "%u", e->occurrences);
        add_time(&fl, "S3MOND_LAST_ALERT_AT", e->last_alert_at);
        add_time(&fl, "S3MOND_RESOLVED_AT", e->resolved_at);
        add_json(&fl, resolved_event_to_json(e));
        return fields_finish(&fl, ret, ret_n);
}

int journal_out_fields_error(const struct error_event *e, struct iovec **ret, size_t *ret_n) {
        struct fields fl = {};

        add_owned(&fl, "MESSAGE", error_event_format_line(e));
        addf(&fl, "PRIORITY", "%d", e->state == ERROR_STATE_FAILING ? JOURNAL_PRIORITY_ERROR
                                                                     : JOURNAL_PRIORITY_RECOVERED);
        add(&fl, "MESSAGE_ID", S3MOND_MESSAGE_ERROR_STR);
        add(&fl, "SYSLOG_IDENTIFIER", "s3mond");
        add(&fl, "S3MOND_ENVIRONMENT", e->environment);
        add(&fl, "S3MOND_ERROR_STATE", error_state_to_string(e->state));
        add(&fl, "S3MOND_QUERY", e->query);
        add(&fl, "S3MOND_ERROR_MESSAGE", e->message);
        add_time(&fl, "S3MOND_SINCE", e->since);
        addf(&fl, "S3MOND_FAILURES", "%u", e->failures);
        add_json(&fl, error_event_to_json(e));
        return fields_finish(&fl, ret, ret_n);
}

int journal_out_check(void) {
        return access(JOURNAL_SOCKET, F_OK) < 0 ? -errno : 0;
}

/* Takes ownership of iov. sd_journal_sendv() returns 0 when journald's
 * socket is missing ("fail silently"): a finding must not vanish like
 * that, since state then records it as reported. */
static int send_fields(struct iovec *iov, size_t n) {
        int r = journal_out_check();

        if (r == 0)
                r = sd_journal_sendv(iov, (int) n);

        journal_fields_free(iov, n);
        return r;
}

static int journal_finding(struct output *o, const struct finding *f) {
        struct iovec *iov;
        size_t n;
        int r = journal_out_fields_finding(f, &iov, &n);

        return r < 0 ? r : send_fields(iov, n);
}

static int journal_resolved(struct output *o, const struct resolved_event *e) {
        struct iovec *iov;
        size_t n;
        int r = journal_out_fields_resolved(e, &iov, &n);

        return r < 0 ? r : send_fields(iov, n);
}

static int journal_error(struct output *o, const struct error_event *e) {
        struct iovec *iov;
        size_t n;
        int r = journal_out_fields_error(e, &iov, &n);

        return r < 0 ? r : send_fields(iov, n);
}

const struct output_ops journal_output_ops = {
        .finding = journal_finding,
        .resolved = journal_resolved,
        .error = journal_error,
};
