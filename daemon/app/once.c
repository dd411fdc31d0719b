/* once.c: owns the one-shot check's report: one stateless cycle per environment, what they
 * report collected into the monitoring-plugin shape. Must not know how a cycle works. */
#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "finding.h"
#include "http.h"
#include "log.h"
#include "monitor.h"
#include "once.h"

struct once_report {
        char **lines;           /* one per record, in the order they came (text form) */
        size_t n_lines;
        bool json;              /* JSON lines go straight to out: no summary to wait for */
        FILE *out;
        int error;              /* -ENOMEM while collecting */
        bool timed_out;         /* ONCE_DEADLINE_SEC passed before every environment was done */
        struct ev_loop *loop;
};

static int report_add(struct once_report *rep, char *line) {
        char **lines;

        if (!line) {
                rep->error = -ENOMEM;
                return -ENOMEM;
        }
        if (rep->json) {
                /* Streamed: a backlog's JSON can be gigabytes. */
                int r = fputs(line, rep->out) < 0 || fputc('\n', rep->out) < 0 ? -EIO : 0;
                free(line);
                if (r < 0)
                        rep->error = r;
                return r;
        }
        lines = realloc(rep->lines, (rep->n_lines + 1) * sizeof(char *));
        if (!lines) {
                free(line);
                rep->error = -ENOMEM;
                return -ENOMEM;
        }
        rep->lines = lines;
        rep->lines[rep->n_lines++] = line;
        return 0;
}

static char *json_line(json_t *j) {
        char *s = j ? finding_json_dumps(j) : NULL;
        json_decref(j);
        return s;
}

static int sink_finding(const struct finding *f, void *userdata) {
        struct once_report *rep = userdata;
        return report_add(rep, rep->json ? finding_json_text(f) : finding_format_line(f));
}

static int sink_error(const struct error_event *e, void *userdata) {
        struct once_report *rep = userdata;
        /* The human report names failures in its summary; JSON readers get the event. */
        return rep->json ? report_add(rep, json_line(error_event_to_json(e))) : 0;
}

/* Out of time: say which environments did not answer (JSON readers get an
 * error event each; the human summary names them). */
static void report_timeouts(const struct monitor *m, struct once_report *rep) {
        _cleanup_free_ char *message = NULL;
        const char *env;
        size_t cursor = 0;

        if (asprintf(&message, "no answer within %d s", ONCE_DEADLINE_SEC) < 0) {
                rep->error = -ENOMEM;
                return;
        }
        while ((env = monitor_next_incomplete(m, &cursor))) {
                time_t now = time(NULL);
                struct error_event e = {
                        .environment = (char *) env,
                        .state = ERROR_STATE_FAILING,
                        .message = message,
                        .since = now,
                        .at = now,
                };
                log_error("%s: %s", env, message);
                if (rep->json)
                        report_add(rep, json_line(error_event_to_json(&e)));
        }
}

static void cycle_done(struct monitor *m, void *userdata) {
        struct once_report *rep = userdata;
        struct monitor_summary s;

        monitor_get_summary(m, &s);
        if (s.completed == s.environments)
                ev_break(rep->loop, EVBREAK_ALL);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents) {
        struct once_report *rep = w->data;

        rep->timed_out = true;
        ev_break(loop, EVBREAK_ALL);
}

/* Environments that could not be checked: failed, or out of time. */
static unsigned unchecked(const struct monitor_summary *s) {
        return s->failing + (s->environments - s->completed);
}

const char *once_status_to_string(enum once_status s) {
        static const char *const names[] = { "OK", "WARNING", "CRITICAL", "UNKNOWN" };
        return (unsigned) s < ELEMENTSOF(names) ? names[s] : "UNKNOWN";
}

static enum once_status status_of(const struct monitor_summary *s) {
        unsigned total = s->findings[VERDICT_CONFIRMED] + s->findings[VERDICT_SUSPECTED] +
                         s->findings[VERDICT_UNEXPLAINED];

        if (s->findings[VERDICT_CONFIRMED] > 0)
                return ONCE_CRITICAL;
        if (unchecked(s) > 0)
                return ONCE_UNKNOWN;
        return total > 0 ? ONCE_WARNING : ONCE_OK;
}

/* The summary is one line and '|' starts its performance data. */
static void fput_summary_text(const char *s, FILE *out) {
        for (; *s; s++)
                fputc(*s == '|' || *s == '\n' || *s == '\r' ? ' ' : *s, out);
}

static void print_summary(const struct monitor *m, const struct monitor_summary *s, enum once_status st,
                          FILE *out) {
        unsigned confirmed = s->findings[VERDICT_CONFIRMED];
        unsigned total = confirmed + s->findings[VERDICT_SUSPECTED] + s->findings[VERDICT_UNEXPLAINED];
        const char *env, *message;
        size_t cursor = 0;

        fprintf(out, "S3MOND %s - %u finding%s (%u confirmed) in %u environment%s", once_status_to_string(st),
                total, total == 1 ? "" : "s", confirmed, s->environments, s->environments == 1 ? "" : "s");
        if (unchecked(s) > 0) {
                fprintf(out, "; could not check %u:", unchecked(s));
                while ((env = monitor_next_failure(m, &cursor, &message))) {
                        fprintf(out, " %s (", env);
                        fput_summary_text(message ? message : "failed", out);
                        fputc(')', out);
                }
                cursor = 0;
                while ((env = monitor_next_incomplete(m, &cursor)))
                        fprintf(out, " %s (no answer within %d s)", env, ONCE_DEADLINE_SEC);
        }
        fprintf(out, " | findings=%u;;;0 confirmed=%u;;;0 suspected=%u;;;0 unexplained=%u;;;0 failed_environments=%u;;;0\n",
                total, confirmed, s->findings[VERDICT_SUSPECTED], s->findings[VERDICT_UNEXPLAINED], unchecked(s));
}

enum once_status once_run(const struct s3_config *c, uint64_t since_sec, bool json, FILE *out) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        struct http *http = NULL;
        struct monitor *m = NULL;
        struct once_report rep = { .json = json, .out = out, .loop = loop };
        struct monitor_params p = {
                .config = c,
                .sink = { .finding = sink_finding, .error = sink_error, .userdata = &rep },
                .once = true,
                .once_since_sec = since_sec,
                .cycle_done = cycle_done,
                .userdata = &rep,
        };
        _cleanup_free_ char *error = NULL;
        struct monitor_summary s = {};
        enum once_status st = ONCE_UNKNOWN;
        ev_timer deadline;
        int r;

        if (!loop) {
                fprintf(out, "S3MOND UNKNOWN - cannot create the event loop\n");
                return ONCE_UNKNOWN;
        }
        r = http_new(loop, &http);
        if (r >= 0)
                r = monitor_new(loop, http, &p, &m, &error);
        if (r >= 0)
                r = monitor_start(m);
        if (r < 0) {
                log_error("%s", error ? error : strerror(-r));
                fprintf(out, "S3MOND UNKNOWN - %s\n", error ? error : strerror(-r));
                goto out;
        }
        ev_timer_init(&deadline, on_deadline, ONCE_DEADLINE_SEC, 0.);
        deadline.data = &rep;
        ev_timer_start(loop, &deadline);
        ev_run(loop, 0);
        ev_timer_stop(loop, &deadline);

        monitor_get_summary(m, &s);
        if (rep.timed_out)
                report_timeouts(m, &rep);
        st = rep.error < 0 ? ONCE_UNKNOWN : status_of(&s);
        if (!json)
                print_summary(m, &s, st, out);
        for (size_t i = 0; i < rep.n_lines; i++)
                fprintf(out, "%s\n", rep.lines[i]);
        fflush(out);
out:
        monitor_free(m);
        http_free(http);
        ev_loop_destroy(loop);
        for (size_t i = 0; i < rep.n_lines; i++)
                free(rep.lines[i]);
        free(rep.lines);
        return st;
}
