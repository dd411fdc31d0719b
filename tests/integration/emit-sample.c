/* emit-sample: sends the sample records of tests/unit/samples.h through a
 * real output, for test-journal.py to read back from journald. Order:
 * findings full, suspected, unexplained, hostile; resolved; error failing,
 * error recovered.
 *   emit-sample journal|syslog|stderr|json [daemon|local0..local7] */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "output.h"
#include "samples.h"

static int facility_from_string(const char *s) {
        static const struct {
                const char *name;
                int facility;
        } names[] = {
                { "daemon", LOG_DAEMON }, { "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
                { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },
                { "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
        };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(names[i].name, s) == 0)
                        return names[i].facility;
        return -EINVAL;
}

static int check(const char *what, int r) {
        if (r < 0)
                fprintf(stderr, "emit-sample: %s: %s\n", what, strerror(-r));
        return r < 0;
}

int main(int argc, char **argv) {
        _cleanup_(output_freep) struct output *o = NULL;
        struct finding *(*const makers[])(void) = {
                sample_finding_full,
                sample_finding_suspected,
                sample_finding_unexplained,
                sample_finding_hostile,
        };
        struct resolved_event resolved;
        struct error_event failing, recovered;
        int kind, facility = LOG_DAEMON, failed = 0;

        if (argc < 2 || argc > 3 || (kind = output_kind_from_string(argv[1])) < 0 ||
            (argc == 3 && (facility = facility_from_string(argv[2])) < 0)) {
                fprintf(stderr, "usage: emit-sample journal|syslog|stderr|json [daemon|local0..local7]\n");
                return 2;
        }
        if (check("output_new", output_new((enum output_kind) kind, facility, NULL, &o)))
                return 1;

        for (size_t i = 0; i < sizeof(makers) / sizeof(makers[0]); i++) {
                struct finding *f = makers[i]();

                failed |= check("finding", output_emit_finding(o, f));
                finding_free(f);
        }
        sample_resolved(&resolved);
        failed |= check("resolved", output_emit_resolved(o, &resolved));
        resolved_event_done(&resolved);
        sample_error_failing(&failing);
        failed |= check("error", output_emit_error(o, &failing));
        error_event_done(&failing);
        sample_error_recovered(&recovered);
        failed |= check("recovered", output_emit_error(o, &recovered));
        error_event_done(&recovered);
        return failed;
}
