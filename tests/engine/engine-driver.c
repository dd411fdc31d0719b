/* engine-driver: runs the engine over one environment's polled rows, the way
 * the monitor does in one cycle, and prints what it concluded as JSON (for
 * test_fixture.py to compare with a fixture's "expected").
 *
 * Input (file argument): {"environment":"prod","now":<epoch>,"lookback_sec":N,
 *   "window_sec":N,"item_types":["email",...],"tables":{"tracelogs":[...],
 *   "mailboxes":[...],"workflows":[...],"sdkmessageprocessingsteps":[...],
 *   "processsessions":[...],"plugintracelogs":[...]}} with the rows exactly as
 *   the Web API returned them.
 * Output: {"request":{...},"findings":[{...}]}: rows -> cache (full reads) ->
 *   detect (since now - lookback) -> one evidence request -> only the sessions
 *   and traces it asks for (ids and time range) -> one index -> findings. */
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

int main(int argc, char **argv) {
        struct tracelog_row *tl = NULL;
        struct mailbox_row *mb = NULL;
        struct workflow_row *wf = NULL;
        struct step_row *st = NULL;
        struct session_row *se = NULL, *se_req = NULL;
        struct trace_row *tr = NULL, *tr_req = NULL;
        size_t n_tl, n_mb, n_wf, n_st, n_se, n_tr, n_se_req = 0, n_tr_req = 0, n_alerts;
        struct alert *alerts = NULL;
        struct evidence_request req;
        struct correlate_evidence *ev = NULL;
        struct cache *cc = NULL;
        json_error_t jerr;
        json_t *in, *out, *findings, *request, *types;
        char *err = NULL;
        time_t now;
        size_t i;

        if (argc != 2)
                die("usage: engine-driver INPUT.json", NULL);
        no_rows = json_array();
        in = json_load_file(argv[1], 0, &jerr);
        if (!in)
                die("cannot read the input", jerr.text);
        now = (time_t) json_integer_value(json_object_get(in, "now"));
        struct correlate_params p = {
                .environment = json_string_value(json_object_get(in, "environment")),
                .window_sec = (uint64_t) json_integer_value(json_object_get(in, "window_sec")),
        };
        types = json_object_get(in, "item_types");
        for (i = 0; i < json_array_size(types); i++) {
                int t = item_type_from_string(json_string_value(json_array_get(types, i)));
                if (t < 0)
                        die("unknown item type", json_string_value(json_array_get(types, i)));
                p.item_types |= (unsigned) t;
        }

        if (rows_parse_tracelogs(table(in, "tracelogs"), &tl, &n_tl, &err) < 0 ||
            rows_parse_mailboxes(table(in, "mailboxes"), &mb, &n_mb, &err) < 0 ||
            rows_parse_workflows(table(in, "workflows"), &wf, &n_wf, &err) < 0 ||
            rows_parse_steps(table(in, "sdkmessageprocessingsteps"), &st, &n_st, &err) < 0 ||
            rows_parse_sessions(table(in, "processsessions"), &se, &n_se, &err) < 0 ||
            rows_parse_traces(table(in, "plugintracelogs"), &tr, &n_tr, &err) < 0)
                die("rows", err);

        if (cache_new(&cc) < 0 || cache_replace_mailboxes(cc, mb, n_mb) < 0 ||
            cache_replace_workflows(cc, wf, n_wf) < 0 || cache_replace_steps(cc, st, n_st) < 0)
                die("cache", NULL);

        struct detect_params dp = {
                .cache = cc,
                .since = now - (time_t) json_integer_value(json_object_get(in, "lookback_sec")),
        };
        if (detect_alerts(tl, n_tl, mb, n_mb, &dp, &alerts, &n_alerts) < 0)
                die("detect", NULL);
        if (correlate_evidence_request(alerts, n_alerts, cc, &p, &req) < 0)
                die("evidence request", NULL);

        /* What the monitor's two evidence queries would return. */
        se_req = calloc(n_se + 1, sizeof(*se_req));
        tr_req = calloc(n_tr + 1, sizeof(*tr_req));
        for (i = 0; i < n_se; i++)
                if (in_list(req.process_ids, req.n_process_ids, se[i].process_id) && se[i].at >= req.from &&
                    se[i].at <= req.to)
                        se_req[n_se_req++] = se[i];
        for (i = 0; i < n_tr; i++)
                if (in_list(req.step_ids, req.n_step_ids, tr[i].step_id) && tr[i].at >= req.from &&
                    tr[i].at <= req.to)
                        tr_req[n_tr_req++] = tr[i];
        if (correlate_evidence_new(cc, se_req, n_se_req, tr_req, n_tr_req, &ev) < 0)
                die("evidence index", NULL);

        findings = json_array();
        for (i = 0; i < n_alerts; i++) {
                struct finding *f;
                if (correlate_finding(&alerts[i], cc, ev, &p, 1, now, &f) < 0)
                        die("correlate", NULL);
                json_array_append_new(findings, finding_json(f));
                finding_free(f);
        }
        request = json_pack("{s:o,s:o,s:I,s:I,s:I,s:I}", "process_ids", strings(req.process_ids, req.n_process_ids),
                            "step_ids", strings(req.step_ids, req.n_step_ids), "from", (json_int_t) req.from, "to",
                            (json_int_t) req.to, "sessions", (json_int_t) n_se_req, "traces", (json_int_t) n_tr_req);
        out = json_pack("{s:o,s:o}", "request", request, "findings", findings);
        json_dumpf(out, stdout, JSON_INDENT(1));
        putchar('\n');

        json_decref(out);
        json_decref(in);
        correlate_evidence_free(ev);
        evidence_request_done(&req);
        alerts_free(alerts, n_alerts);
        cache_free(cc);
        free(se_req);
        free(tr_req);
        tracelog_rows_free(tl, n_tl);
        mailbox_rows_free(mb, n_mb);
        workflow_rows_free(wf, n_wf);
        step_rows_free(st, n_st);
        session_rows_free(se, n_se);
        trace_rows_free(tr, n_tr);
        json_decref(no_rows);
        return 0;
}
