/* output-internal.h: what the output modules share with output.c (the ops
 * table each fills) and expose to unit tests (the exact journald fields and
 * syslog lines they send). Not for the rest of the daemon: use output.h. */
#pragma once

#include <stdio.h>
#include <sys/uio.h>

#include "output.h"
#include "model.h"

struct output;

struct output_ops {
        int (*finding)(struct output *o, const struct finding *f);
        int (*resolved)(struct output *o, const struct resolved_event *e);
        int (*error)(struct output *o, const struct error_event *e);
};

struct output {
        enum output_kind kind;
        const struct output_ops *ops;
        int syslog_facility;
        FILE *stream;           /* stderr and json outputs; borrowed */
};

extern const struct output_ops journal_output_ops;
extern const struct output_ops syslog_output_ops;
extern const struct output_ops stderr_output_ops;
extern const struct output_ops json_output_ops;

/* journal_out.c: PRIORITY of each record type. */
#define JOURNAL_PRIORITY_FINDING 4      /* warning */
#define JOURNAL_PRIORITY_RESOLVED 5     /* notice */
#define JOURNAL_PRIORITY_ERROR 3        /* err */
#define JOURNAL_PRIORITY_RECOVERED 5    /* notice: the error event's recovery */

/* 0 when journald's native socket exists, else -errno (-ENOENT). */
int journal_out_check(void);

/* The "FIELD=value" iovecs sent for a record, in order; values are the raw
 * bytes (journald's native protocol carries newlines and any byte), except
 * MESSAGE which is the one escaped line. Free with journal_fields_free(). */
int journal_out_fields_finding(const struct finding *f, struct iovec **ret, size_t *ret_n);
int journal_out_fields_resolved(const struct resolved_event *e, struct iovec **ret, size_t *ret_n);
int journal_out_fields_error(const struct error_event *e, struct iovec **ret, size_t *ret_n);
void journal_fields_free(struct iovec *iov, size_t n);

/* syslog_out.c: the record text: the line of finding.h followed by
 * " key=value" pairs (value bare when str_is_bare_token(), else quoted and
 * escaped as strutil.h does, cut at SYSLOG_VALUE_MAX escaped bytes). The
 * whole record stays under SYSLOG_LINE_MAX bytes: pairs that do not fit are
 * dropped and " …" ends the record. */
#define SYSLOG_VALUE_MAX 512
#define SYSLOG_LINE_MAX 8192
char *syslog_out_line_finding(const struct finding *f);
char *syslog_out_line_resolved(const struct resolved_event *e);
char *syslog_out_line_error(const struct error_event *e);
