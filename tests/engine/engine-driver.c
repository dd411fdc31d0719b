/* engine-driver: runs the engine over one environment's polled rows, the way
 * the monitor does in one cycle, and prints what it concluded as JSON (for
 * test_fixture.py to compare with a fixture's "expected").
 *
 * Input (file argument): {"environment":"prod","now":<epoch>,"lookback_sec":N,
 *   "window_sec":N,"item_types":["email",...],"tables":{"tracelogs":[...],
 *   "mailboxes":[...],"workflows":[...],"sdkmessageprocessingsteps":[...],
 *   "processsessions":[...],"plugintracelogs":[...]}} with the rows exactly as
 *   the Web API returned them.
 * Output: {"request":{...},"findings":[{...}]}: rows (rows.h's one parser and
 *   its skip policy, as the client uses them) -> cache (full reads) -> detect
 *   (since now - lookback) -> one evidence request -> only the sessions and
 *   traces it asks for (ids and time range) -> one index -> findings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache.h"
#include "correlate.h"
#include "detect.h"
#include "rows.h"

static int die(const char *what, const char *detail) {
        fprintf(stderr, "engine-driver: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
        exit(2);
}

static json_t *no_rows;

static const json_t *table(const json_t *in, const char *name) {
        const json_t *t = json_object_get(json_object_get(in, "tables"), name);
        return t ? t : no_rows;
}

static bool in_list(char *const *ids, size_t n, const char *id) {
        for (size_t i = 0; id && i < n; i++)
                if (strcmp(ids[i], id) == 0)
                        return true;
        return false;
}

static json_t *strings(char *const *v, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static json_t *finding_json(const struct finding *f) {
        json_t *o = json_object(), *culprits = json_array(), *with = json_array(), *evidence = json_object(),
               *notes = json_array(), *names = json_object();

        json_object_set_new(o, "id", json_string(f->id));
        json_object_set_new(o, "alert", json_string(f->alert.id));
        json_object_set_new(o, "source", json_string(alert_source_to_string(f->alert.source)));
        json_object_set_new(o, "kind", json_string(f->alert.kind == ALERT_KIND_ACT ? "act" : "email"));
        json_object_set_new(o, "mailbox", json_string(f->mailbox.id));
        json_object_set_new(o, "mailbox_name", f->mailbox.name ? json_string(f->mailbox.name) : json_null());
        json_object_set_new(o, "verdict", json_string(verdict_to_string(f->verdict)));
        for (size_t i = 0; i < f->n_culprits; i++) {
                const struct culprit *c = &f->culprits[i];
                json_t *ev = json_array();

                json_array_append_new(culprits, json_string(c->id));
                json_object_set_new(names, c->id, json_string(c->name));
                if (c->n_evidence > 0)
                        json_array_append_new(with, json_string(c->id));
                for (size_t j = 0; j < c->n_evidence; j++)
                        json_array_append_new(ev, json_string(c->evidence[j].id));
                json_object_set_new(evidence, c->id, ev);
        }
        json_object_set_new(o, "culprits", culprits);
        json_object_set_new(o, "culprit_names", names);
        json_object_set_new(o, "with_evidence", with);
        json_object_set_new(o, "evidence", evidence);
        for (size_t i = 0; i < f->n_notes; i++)
                json_array_append_new(notes, json_string(f->notes[i]));
        json_object_set_new(o, "notes", notes);
        json_object_set_new(o, "remedy", json_string(f->remedy));
        return o;
}

struct tables {
        struct rows tracelogs, mailboxes, workflows, steps, sessions, traces;
};

/* The production path: every table through rows.h's one parser and its
 * policy for a refused row (skipped, logged on stderr). */
static struct rows table_rows(const json_t *in, const char *name, enum rows_table t, const char *environment) {
        struct rows r;

        if (rows_parse_page(t, table(in, name), environment, 0, &r, NULL) < 0)
                die("rows", "out of memory");
        return r;
}

static void tables_parse(const json_t *in, const char *environment, struct tables *ret) {
        *ret = (struct tables) {
                .tracelogs = table_rows(in, "tracelogs", ROWS_TRACELOGS, environment),
                .mailboxes = table_rows(in, "mailboxes", ROWS_MAILBOXES, environment),
                .workflows = table_rows(in, "workflows", ROWS_WORKFLOWS, environment),
                .steps = table_rows(in, "sdkmessageprocessingsteps", ROWS_STEPS, environment),
                .sessions = table_rows(in, "processsessions", ROWS_SESSIONS, environment),
                .traces = table_rows(in, "plugintracelogs", ROWS_TRACES, environment),
        };
}

static void tables_done(struct tables *t) {
        rows_done(&t->tracelogs);
        rows_done(&t->mailboxes);
        rows_done(&t->workflows);
        rows_done(&t->steps);
        rows_done(&t->sessions);
        rows_done(&t->traces);
}

static struct correlate_params params_of(const json_t *in) {
        struct correlate_params p = {
                .environment = json_string_value(json_object_get(in, "environment")),
                .window_sec = (uint64_t) json_integer_value(json_object_get(in, "window_sec")),
        };
        const json_t *types = json_object_get(in, "item_types");

        for (size_t i = 0; i < json_array_size(types); i++) {
                int t = item_type_from_string(json_string_value(json_array_get(types, i)));
                if (t < 0)
                        die("unknown item type", json_string_value(json_array_get(types, i)));
                p.item_types |= (unsigned) t;
        }
        return p;
}

/* What the monitor's two evidence queries would return: the rows of the
 * requested ids within the requested time range (shallow copies of t's). */
struct evidence_rows {
        struct session_row *sessions;
        struct trace_row *traces;
        size_t n_sessions, n_traces;
};

static void evidence_rows_select(const struct tables *t, const struct evidence_request *req,
                                 struct evidence_rows *ret) {
        *ret = (struct evidence_rows) {
                .sessions = calloc(t->sessions.n + 1, sizeof(struct session_row)),
                .traces = calloc(t->traces.n + 1, sizeof(struct trace_row)),
        };
        if (!ret->sessions || !ret->traces)
                die("evidence", "out of memory");
        for (size_t i = 0; i < t->sessions.n; i++) {
                const struct session_row *s = &t->sessions.sessions[i];
                if (in_list(req->process_ids, req->n_process_ids, s->process_id) && s->at >= req->from &&
                    s->at <= req->to)
                        ret->sessions[ret->n_sessions++] = *s;
        }
        for (size_t i = 0; i < t->traces.n; i++) {
                const struct trace_row *x = &t->traces.traces[i];
                if (in_list(req->step_ids, req->n_step_ids, x->step_id) && x->at >= req->from && x->at <= req->to)
                        ret->traces[ret->n_traces++] = *x;
        }
}

int main(int argc, char **argv) {
        struct tables t;
        struct alert *alerts = NULL;
        size_t n_alerts;
        struct evidence_request req;
        struct evidence_rows er;
        struct correlate_evidence *ev = NULL;
        struct correlate_params p;
        struct cache *cc = NULL;
        json_error_t jerr;
        json_t *in, *out, *findings, *request;
        time_t now;

        if (argc != 2)
                die("usage: engine-driver INPUT.json", NULL);
        no_rows = json_array();
        in = json_load_file(argv[1], 0, &jerr);
        if (!in)
                die("cannot read the input", jerr.text);
        now = (time_t) json_integer_value(json_object_get(in, "now"));
        p = params_of(in);
        tables_parse(in, p.environment, &t);

        if (cache_new(&cc) < 0 || cache_replace_mailboxes(cc, t.mailboxes.mailboxes, t.mailboxes.n) < 0 ||
            cache_replace_workflows(cc, t.workflows.workflows, t.workflows.n) < 0 ||
            cache_replace_steps(cc, t.steps.steps, t.steps.n) < 0)
                die("cache", NULL);

        struct detect_params dp = {
                .cache = cc,
                .since = now - (time_t) json_integer_value(json_object_get(in, "lookback_sec")),
        };
        if (detect_alerts(t.tracelogs.tracelogs, t.tracelogs.n, t.mailboxes.mailboxes, t.mailboxes.n, &dp, &alerts,
                          &n_alerts) < 0)
                die("detect", NULL);
        if (correlate_evidence_request(alerts, n_alerts, cc, &p, &req) < 0)
                die("evidence request", NULL);
        evidence_rows_select(&t, &req, &er);
        if (correlate_evidence_new(cc, er.sessions, er.n_sessions, er.traces, er.n_traces, &ev) < 0)
                die("evidence index", NULL);

        findings = json_array();
        for (size_t i = 0; i < n_alerts; i++) {
                struct finding *f;
                if (correlate_finding(&alerts[i], cc, ev, &p, 1, now, &f) < 0)
                        die("correlate", NULL);
                json_array_append_new(findings, finding_json(f));
                finding_free(f);
        }
        request = json_pack("{s:o,s:o,s:I,s:I,s:I,s:I}", "process_ids", strings(req.process_ids, req.n_process_ids),
                            "step_ids", strings(req.step_ids, req.n_step_ids), "from", (json_int_t) req.from, "to",
                            (json_int_t) req.to, "sessions", (json_int_t) er.n_sessions, "traces", (json_int_t) er.n_traces);
        out = json_pack("{s:o,s:o}", "request", request, "findings", findings);
        json_dumpf(out, stdout, JSON_INDENT(1));
        putchar('\n');

        json_decref(out);
        correlate_evidence_free(ev);
        free(er.sessions); /* shallow copies: t owns what they point to */
        free(er.traces);
        evidence_request_done(&req);
        alerts_free(alerts, n_alerts);
        cache_free(cc);
        tables_done(&t);
        json_decref(in);
        json_decref(no_rows);
        return 0;
}
