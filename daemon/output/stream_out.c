/* stream_out.c: owns the two stream outputs: stderr (a readable line a record) and json (one
 * object a line, flushed). Must not know journald or syslog. */
#include <errno.h>
#include <stdlib.h>

#include "finding.h"
#include "macro.h"
#include "output-internal.h"

static int put_line(FILE *f, char *line) {
        _cleanup_free_ char *l = line;  /* takes ownership */

        if (!l)
                return -ENOMEM;
        clearerr(f);
        if (fputs(l, f) < 0 || fputc('\n', f) < 0 || fflush(f) != 0)
                return negative_errno();
        return 0;
}

static int put_json(FILE *f, json_t *j) {
        char *text = finding_json_dumps(j);

        json_decref(j);
        return put_line(f, text);
}

static int stderr_finding(struct output *o, const struct finding *f) {
        return put_line(o->stream, finding_format_line(f));
}

static int stderr_resolved(struct output *o, const struct resolved_event *e) {
        return put_line(o->stream, resolved_event_format_line(e));
}

static int stderr_error(struct output *o, const struct error_event *e) {
        return put_line(o->stream, error_event_format_line(e));
}

const struct output_ops stderr_output_ops = {
        .finding = stderr_finding,
        .resolved = stderr_resolved,
        .error = stderr_error,
};

static int json_finding(struct output *o, const struct finding *f) {
        return put_line(o->stream, finding_json_text(f));
}

static int json_resolved(struct output *o, const struct resolved_event *e) {
        return put_json(o->stream, resolved_event_to_json(e));
}

static int json_error(struct output *o, const struct error_event *e) {
        return put_json(o->stream, error_event_to_json(e));
}

const struct output_ops json_output_ops = {
        .finding = json_finding,
        .resolved = json_resolved,
        .error = json_error,
};
