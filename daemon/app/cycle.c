/* cycle.c: owns the order of one environment's poll cycle: which queries go out, what the engine
 * gets, what is emitted and noted. Must not know when cycles run, nor rules, bytes or layouts. */
#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "client.h"
#include "correlate.h"
#include "cycle.h"
#include "detect.h"
#include "log.h"
#include "metrics.h"
#include "rows.h"
#include "state.h"

/* Rows committed late carry a modifiedon before the watermark: every poll
 * looks this far behind it, and the seen ids keep them from being reported
 * twice. */
#define CYCLE_OVERLAP_SEC 300
/* Every this many configuration refreshes, read the tables whole: deletions
 * never show up in a delta. */
#define CYCLE_FULL_CONFIG_EVERY 4
/* Closed findings are remembered at least this long (reopen detection). */
#define CYCLE_CLOSED_RETENTION_SEC (7 * 86400)

/* A new alert of this cycle and the generation its finding gets. */
struct todo {
        const struct alert *alert;
        unsigned generation;
};

struct cycle {
        struct ev_loop *loop;
        struct cycle_env *env;
        cycle_done_fn done;
        void *userdata;
        struct cycle_result result;             /* error, query, message, now, counts */
        ev_tstamp phase_started;                /* when this phase's queries went out */
        unsigned pending;                       /* queries in flight */
        void (*then)(struct cycle *c);          /* when pending drops to 0 */
        /* The rows of this cycle's queries, collected page by page. */
        struct rows tracelogs, mailboxes, workflows, steps, sessions, traces;
        bool full_mailboxes, full_config;
        struct alert *alerts;
        size_t n_alerts;
        struct todo *todo;
        size_t n_todo;
        time_t max_tracelog_at, max_mailbox_at; /* watermarks this cycle saw */
};

static void cycle_finish(struct cycle *c);

/* ---- small helpers ---------------------------------------------------------- */

static const char *env_name(const struct cycle *c) {
        return c->env->env->name;
}

static void result_done(struct cycle_result *r) {
        free(r->query);
        free(r->message);
        *r = (struct cycle_result) {};
}

void cycle_free(struct cycle *c) {
        if (!c)
                return;
        result_done(&c->result);
        rows_done(&c->tracelogs);
        rows_done(&c->mailboxes);
        rows_done(&c->workflows);
        rows_done(&c->steps);
        rows_done(&c->sessions);
        rows_done(&c->traces);
        alerts_free(c->alerts, c->n_alerts);
        free(c->todo);
        free(c);
}

/* Note a failure of the cycle: the first one wins. message NULL: strerror(). */
static void cycle_error(struct cycle *c, const char *query, int error, const char *message) {
        if (c->result.error != 0)
                return;
        c->result.error = error;
        c->result.query = query ? strdup(query) : NULL;
        c->result.message = query ? strdup(message ? message : strerror(-error)) : NULL;
}

static time_t since_overlap(time_t watermark) {
        return watermark > CYCLE_OVERLAP_SEC ? watermark - CYCLE_OVERLAP_SEC : 0;
}

static struct correlate_params correlate_params_of(const struct cycle *c) {
        return (struct correlate_params) {
                .environment = env_name(c),
                .item_types = c->env->env->item_types,
                .window_sec = c->env->config->correlation_window_sec,
        };
}

/* ---- the queries of a phase ------------------------------------------------- */

/* A query is over: count its requests, note its failure. */
static void cycle_take(struct cycle *c, const char *query, struct dv_result *r) {
        double per_request = (ev_now(c->loop) - c->phase_started) / (r->requests ? r->requests : 1);

        /* The client reports a query, not its requests: each gets the mean. */
        for (unsigned i = 0; i < r->requests; i++)
                metrics_observe_latency(c->env->metrics, per_request);
        if (r->error < 0)
                cycle_error(c, query, r->error, r->message);
}

/* A page of a query: its rows join the cycle's. (The place to consume a page
 * as it arrives, to bound a cycle's memory by a page.) */
static void cycle_collect(struct cycle *c, const char *query, struct dv_page *page, struct rows *into) {
        int r = rows_append(into, &page->rows);

        if (r < 0)
                cycle_error(c, query, r, NULL);
}

static void cycle_phase(struct cycle *c, void (*then)(struct cycle *c)) {
        c->then = then;
        c->pending = 1; /* held until every query of the phase is started */
        c->phase_started = ev_now(c->loop);
}

static void cycle_arrived(struct cycle *c) {
        if (--c->pending == 0)
                c->then(c);
}

#define DEFINE_TAKE(field, query)                                                                   \
        static void on_##field##_page(struct dv_client *dv, struct dv_page *page, void *userdata) { \
                struct cycle *c = userdata;                                                         \
                cycle_collect(c, query, page, &c->field);                                           \
        }                                                                                           \
        static void on_##field(struct dv_client *dv, struct dv_result *r, void *userdata) {         \
                struct cycle *c = userdata;                                                         \
                cycle_take(c, query, r);                                                            \
                cycle_arrived(c);                                                                   \
        }
DEFINE_TAKE(tracelogs, "tracelogs")
DEFINE_TAKE(mailboxes, "mailboxes")
DEFINE_TAKE(workflows, "workflows")
DEFINE_TAKE(steps, "sdkmessageprocessingsteps")
DEFINE_TAKE(sessions, "processsessions")
DEFINE_TAKE(traces, "plugintracelogs")

/* A query that could not even start counts as a failed query. */
static void cycle_started(struct cycle *c, const char *query, int r) {
        if (r >= 0)
                c->pending++;
        else
                cycle_error(c, query, r, NULL);
}

/* ---- the end of a cycle -------------------------------------------------------- */

/* Email: a successful sync completed after the last alert. Appointments,
 * contacts and tasks: the mailbox's ACT status is Success again (the service
 * keeps no time of the last good ACT sync). */
static bool mailbox_receiving_again(const struct cache_mailbox *mb, const struct state_open_finding *f) {
        if (f->alert_kind == ALERT_KIND_ACT)
                return mb->act_status == SYNC_STATUS_SUCCESS;
        return mb->last_success_on > f->last_at;
}

/* The resolved event of an open finding whose mailbox receives again,
 * resolve_after after the last alert; false when it is not resolved yet. */
static bool resolved_event_of(const struct cycle *c, const struct state_open_finding *f, struct resolved_event *ret) {
        struct cache_mailbox mb;

        if (!f->mailbox_id || !cache_mailbox_get(c->env->cache, f->mailbox_id, &mb))
                return false;
        if (!mailbox_receiving_again(&mb, f) ||
            c->result.now - f->last_at < (time_t) c->env->config->resolve_after_sec)
                return false;
        *ret = (struct resolved_event) {
                .finding_id = (char *) f->finding_id,
                .environment = (char *) env_name(c),
                .mailbox = { (char *) f->mailbox_id, (char *) (mb.name ? mb.name : f->mailbox_name),
                             (char *) (mb.email ? mb.email : f->mailbox_email) },
                .alert_id = (char *) f->alert_id,
                .occurrences = f->occurrences,
                .last_alert_at = f->last_at,
                .resolved_at = c->result.now,
        };
        return true;
}

static void resolve_open_findings(struct cycle *c) {
        struct cycle_env *env = c->env;
        const struct state_open_finding *f;
        size_t cursor = 0;

        while ((f = state_open_next(env->state, &cursor))) {
                struct resolved_event e;
                _cleanup_free_ char *error = NULL;
                int r;

                if (!resolved_event_of(c, f, &e))
                        continue;
                if (env->sink->resolved && (r = env->sink->resolved(&e, env->sink->userdata)) < 0) {
                        log_warning("%s: could not report finding %s resolved: %s", env_name(c), f->finding_id,
                                    strerror(-r));
                        continue;
                }
                c->result.resolved++;
                metrics_inc_resolved(env->metrics);
                r = state_note_resolved(env->state, e.finding_id, c->result.now, &error);
                if (r < 0)
                        log_warning("%s: %s", env_name(c), error ? error : strerror(-r));
        }
}

/* Move the watermarks, forget what the overlap no longer brings back. */
static void state_advance(struct cycle *c) {
        struct env_state *st = c->env->state;
        uint64_t lookback = c->env->config->lookback_sec;
        uint64_t keep = lookback > CYCLE_CLOSED_RETENTION_SEC ? lookback : CYCLE_CLOSED_RETENTION_SEC;
        time_t wm_t, wm_m;

        if (c->max_tracelog_at > state_watermark_get(st, STATE_WATERMARK_TRACELOGS))
                state_watermark_set(st, STATE_WATERMARK_TRACELOGS, c->max_tracelog_at);
        if (c->max_mailbox_at > state_watermark_get(st, STATE_WATERMARK_MAILBOXES))
                state_watermark_set(st, STATE_WATERMARK_MAILBOXES, c->max_mailbox_at);
        wm_t = state_watermark_get(st, STATE_WATERMARK_TRACELOGS);
        wm_m = state_watermark_get(st, STATE_WATERMARK_MAILBOXES);
        state_prune(st, since_overlap(wm_t < wm_m || wm_m == 0 ? wm_t : wm_m), c->result.now - (time_t) keep);
}

static void cycle_save(struct cycle *c) {
        struct cycle_env *env = c->env;
        _cleanup_free_ char *error = NULL;
        int r;

        state_advance(c);
        r = state_save(env->state, &error);
        if (r < 0) {
                metrics_inc_state_save_errors(env->metrics);
                /* Once per outage (a full or read-only disk lasts): the metric counts the rest. */
                if (!env->save_failing)
                        log_warning("%s: state not saved (will retry every cycle): %s", env_name(c),
                                    error ? error : strerror(-r));
                else
                        log_debug("%s: state still not saved: %s", env_name(c), error ? error : strerror(-r));
                env->save_failing = true;
        } else if (r > 0 && env->save_failing) {
                log_notice("%s: state saved again in %s", env_name(c), state_path(env->state));
                env->save_failing = false;
        }
}

/* The cycle is over: a failed one saves nothing (what it emitted is noted). */
static void cycle_finish(struct cycle *c) {
        struct cycle_result result;
        cycle_done_fn done = c->done;
        void *userdata = c->userdata;

        if (c->result.error == 0 && c->env->state) {
                resolve_open_findings(c);
                cycle_save(c);
        }
        result = c->result;
        c->result = (struct cycle_result) {};
        cycle_free(c);
        done(&result, userdata);
        result_done(&result);
}

/* ---- correlate and emit ----------------------------------------------------- */

static int note_finding(struct cycle *c, const struct finding *f, const struct alert *a, unsigned generation) {
        struct state_open_finding o = {
                .finding_id = f->id,
                .alert_id = a->id,
                .alert_source = a->source,
                .alert_kind = a->kind,
                .mailbox_id = f->mailbox.id,
                .mailbox_name = f->mailbox.name,
                .mailbox_email = f->mailbox.email,
                .generation = generation,
                .occurrences = f->occurrences,
                .first_at = a->at,
                .last_at = a->at,
                .opened_at = f->detected_at,
        };
        _cleanup_free_ char *error = NULL;
        int r;

        r = state_note_finding(c->env->state, &o, &error);
        if (r < 0)
                log_warning("%s: %s", env_name(c), error ? error : strerror(-r));
        return r;
}

/* The finding of one new alert: made, emitted, then noted at once (state.h's
 * durability rule). An error stops the cycle. */
static int emit_finding(struct cycle *c, const struct todo *t, const struct correlate_evidence *ev) {
        struct cycle_env *env = c->env;
        struct correlate_params p = correlate_params_of(c);
        struct finding *f = NULL;
        int r;

        r = correlate_finding(t->alert, env->cache, ev, &p, t->generation, c->result.now, &f);
        if (r < 0) {
                log_error("%s: cannot correlate alert %s: %s", env_name(c), t->alert->id, strerror(-r));
                cycle_error(c, NULL, r, NULL);
                return r;
        }
        r = env->sink->finding(f, env->sink->userdata);
        if (r < 0) {
                /* Not noted: the alert stays new and is sent again next cycle. */
                log_error("%s: could not emit finding %s: %s", env_name(c), f->id, strerror(-r));
                cycle_error(c, "output", r, NULL);
                finding_free(f);
                return r;
        }
        c->result.findings[f->verdict]++;
        metrics_inc_findings(env->metrics, f->verdict);
        if (env->state) {
                state_crash_point(env->state, "monitor-after-emit");
                note_finding(c, f, t->alert, t->generation);
        }
        finding_free(f);
        return 0;
}

static void cycle_correlate(struct cycle *c) {
        _cleanup_(correlate_evidence_freep) struct correlate_evidence *ev = NULL;
        int r;

        if (c->result.error < 0)
                return cycle_finish(c);
        r = correlate_evidence_new(c->env->cache, c->sessions.sessions, c->sessions.n, c->traces.traces,
                                   c->traces.n, &ev);
        if (r < 0)
                log_error("%s: cannot index evidence: %s", env_name(c), strerror(-r));
        for (size_t i = 0; r >= 0 && i < c->n_todo; i++)
                r = emit_finding(c, &c->todo[i], ev);
        correlate_evidence_free(TAKE_PTR(ev)); /* it points into the rows */
        rows_done(&c->sessions);
        rows_done(&c->traces);
        cycle_finish(c);
}

/* ---- evidence ------------------------------------------------------------------ */

static void cycle_fetch_evidence(struct cycle *c) {
        struct cycle_env *env = c->env;
        struct correlate_params p = correlate_params_of(c);
        _cleanup_free_ struct alert *alerts = NULL;
        struct evidence_request req = {};
        int r;

        alerts = calloc(c->n_todo, sizeof(*alerts));
        if (!alerts) {
                cycle_error(c, NULL, -ENOMEM, NULL);
                return cycle_finish(c);
        }
        for (size_t i = 0; i < c->n_todo; i++)
                alerts[i] = *c->todo[i].alert; /* shallow: read-only view */
        r = correlate_evidence_request(alerts, c->n_todo, env->cache, &p, &req);
        if (r < 0) {
                cycle_error(c, NULL, r, NULL);
                return cycle_finish(c);
        }
        log_debug("%s: evidence for %zu alerts: %zu processes, %zu steps", env_name(c), c->n_todo,
                  req.n_process_ids, req.n_step_ids);

        cycle_phase(c, cycle_correlate);
        cycle_started(c, "processsessions",
                      dv_query_failed_sessions(env->dv, (const char *const *) req.process_ids, req.n_process_ids,
                                               req.from, req.to, on_sessions_page, on_sessions, c));
        cycle_started(c, "plugintracelogs",
                      dv_query_plugin_traces(env->dv, (const char *const *) req.step_ids, req.n_step_ids, req.from,
                                             req.to, on_traces_page, on_traces, c));
        evidence_request_done(&req);
        cycle_arrived(c);
}

/* ---- configuration refresh ------------------------------------------------------ */

static void cycle_apply_config(struct cycle *c) {
        struct cycle_env *env = c->env;
        struct rows *wf = &c->workflows, *steps = &c->steps;
        int r;

        if (c->result.error < 0)
                return cycle_finish(c);

        r = c->full_config ? cache_replace_workflows(env->cache, wf->workflows, wf->n)
                           : cache_update_workflows(env->cache, wf->workflows, wf->n);
        if (r >= 0)
                r = c->full_config ? cache_replace_steps(env->cache, steps->steps, steps->n)
                                   : cache_update_steps(env->cache, steps->steps, steps->n);
        rows_done(wf);
        rows_done(steps);
        if (r < 0) {
                cycle_error(c, NULL, r, NULL);
                return cycle_finish(c);
        }
        env->config_refreshed_at = c->result.now;
        env->refreshes = c->full_config ? 0 : env->refreshes + 1;
        log_debug("%s: configuration %s: %zu suspect-capable workflows, %zu steps", env_name(c),
                  c->full_config ? "read" : "refreshed", cache_count(env->cache, CACHE_WORKFLOWS),
                  cache_count(env->cache, CACHE_STEPS));

        if (c->n_todo == 0)
                return cycle_finish(c);
        cycle_fetch_evidence(c);
}

static bool config_refresh_due(const struct cycle_env *env, time_t now) {
        if (!cache_loaded(env->cache, CACHE_WORKFLOWS) || !cache_loaded(env->cache, CACHE_STEPS))
                return true;
        return now - env->config_refreshed_at >= (time_t) env->config->config_refresh_sec;
}

static void cycle_refresh_config(struct cycle *c) {
        struct cycle_env *env = c->env;
        time_t since_wf, since_steps;

        c->full_config = !cache_loaded(env->cache, CACHE_WORKFLOWS) || !cache_loaded(env->cache, CACHE_STEPS) ||
                         env->refreshes + 1 >= CYCLE_FULL_CONFIG_EVERY;
        since_wf = c->full_config ? 0 : since_overlap(cache_watermark(env->cache, CACHE_WORKFLOWS));
        since_steps = c->full_config ? 0 : since_overlap(cache_watermark(env->cache, CACHE_STEPS));

        cycle_phase(c, cycle_apply_config);
        cycle_started(c, "workflows", dv_query_workflows_since(env->dv, since_wf, on_workflows_page, on_workflows, c));
        cycle_started(c, "sdkmessageprocessingsteps",
                      dv_query_steps_since(env->dv, since_steps, on_steps_page, on_steps, c));
        cycle_arrived(c);
}

/* ---- detection ------------------------------------------------------------------- */

struct mailbox_set {
        char **ids; /* sorted, borrowed from the state */
        size_t n;
};

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool mailbox_set_has(const char *mailbox_id, void *userdata) {
        const struct mailbox_set *s = userdata;
        return s->n && bsearch(&mailbox_id, s->ids, s->n, sizeof(char *), cmp_str);
}

/* Mailboxes with an open tracelog finding: their mailbox row is no new alert. */
static int mailbox_set_build(const struct env_state *st, struct mailbox_set *ret) {
        const struct state_open_finding *f;
        size_t cursor = 0, n = 0;

        *ret = (struct mailbox_set) {};
        if (!st || state_open_count(st) == 0)
                return 0;
        ret->ids = calloc(state_open_count(st), sizeof(char *));
        if (!ret->ids)
                return -ENOMEM;
        while ((f = state_open_next(st, &cursor)))
                if (f->alert_source == ALERT_SOURCE_TRACELOG && f->mailbox_id)
                        ret->ids[n++] = (char *) f->mailbox_id;
        qsort_safe(ret->ids, n, sizeof(char *), cmp_str);
        ret->n = n;
        return 0;
}

/* A later occurrence of an open finding: count it, emit nothing. */
static void note_recurrence(struct cycle *c, const struct alert *a) {
        struct env_state *st = c->env->state;
        const struct state_open_finding *o = state_open_find(st, a->id);
        struct state_open_finding f;
        _cleanup_free_ char *error = NULL;

        if (!o)
                return;
        f = *o;
        f.occurrences++;
        f.last_at = a->at;
        log_info("%s: finding %s recurred (%u occurrences)", env_name(c), f.finding_id, f.occurrences);
        if (state_note_finding(st, &f, &error) < 0)
                log_warning("%s: %s", env_name(c), strempty(error));
}

/* Which alerts are new (or reopened): the todo list of the cycle. */
static int classify_alerts(struct cycle *c) {
        struct env_state *st = c->env->state;

        c->todo = c->n_alerts ? calloc(c->n_alerts, sizeof(*c->todo)) : NULL;
        if (c->n_alerts && !c->todo)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_alerts; i++) {
                const struct alert *a = &c->alerts[i];
                unsigned generation = 1;

                if (st)
                        switch (state_classify(st, a->id, a->at, &generation)) {
                        case STATE_ALERT_REPORTED:
                                continue;
                        case STATE_ALERT_RECURRENCE:
                                note_recurrence(c, a);
                                continue;
                        case STATE_ALERT_NEW:
                        case STATE_ALERT_REOPENED:
                                break;
                        }
                c->todo[c->n_todo++] = (struct todo) { a, generation };
        }
        return 0;
}

static time_t detect_since(const struct cycle_env *env, time_t now) {
        uint64_t back = env->once ? env->once_since_sec : env->config->lookback_sec;
        return now > (time_t) back ? now - (time_t) back : 0;
}

static void watermarks_seen(struct cycle *c) {
        for (size_t i = 0; i < c->mailboxes.n; i++)
                if (c->mailboxes.mailboxes[i].modified_on > c->max_mailbox_at)
                        c->max_mailbox_at = c->mailboxes.mailboxes[i].modified_on;
        for (size_t i = 0; i < c->tracelogs.n; i++)
                if (c->tracelogs.tracelogs[i].modified_on > c->max_tracelog_at)
                        c->max_tracelog_at = c->tracelogs.tracelogs[i].modified_on;
}

/* The mailboxes into the cache, then the alerts of this poll. */
static int detect(struct cycle *c) {
        struct cycle_env *env = c->env;
        struct mailbox_set open_mailboxes = {};
        struct detect_params dp;
        int r;

        r = c->full_mailboxes ? cache_replace_mailboxes(env->cache, c->mailboxes.mailboxes, c->mailboxes.n)
                              : cache_update_mailboxes(env->cache, c->mailboxes.mailboxes, c->mailboxes.n);
        if (r >= 0)
                r = mailbox_set_build(env->state, &open_mailboxes);
        if (r >= 0) {
                dp = (struct detect_params) {
                        .cache = env->cache,
                        .since = detect_since(env, c->result.now),
                        .has_tracelog_alert = mailbox_set_has,
                        .userdata = &open_mailboxes,
                };
                r = detect_alerts(c->tracelogs.tracelogs, c->tracelogs.n, c->mailboxes.mailboxes, c->mailboxes.n,
                                  &dp, &c->alerts, &c->n_alerts);
        }
        free(open_mailboxes.ids);
        return r;
}

static void cycle_detect(struct cycle *c) {
        int r;

        if (c->result.error < 0)
                return cycle_finish(c);
        watermarks_seen(c);
        r = detect(c);
        rows_done(&c->tracelogs);
        rows_done(&c->mailboxes);
        if (r >= 0)
                r = classify_alerts(c);
        if (r < 0) {
                cycle_error(c, NULL, r, NULL);
                return cycle_finish(c);
        }
        log_debug("%s: %zu alerts polled, %zu new", env_name(c), c->n_alerts, c->n_todo);

        if (c->n_todo > 0 || (!c->env->once && config_refresh_due(c->env, c->result.now)))
                return cycle_refresh_config(c);
        cycle_finish(c);
}

/* ---- the start of a cycle ------------------------------------------------------ */

int cycle_start(struct ev_loop *loop, struct cycle_env *env, time_t now, cycle_done_fn done, void *userdata,
                struct cycle **ret) {
        struct cycle *c = calloc(1, sizeof(*c));
        time_t since_tl, since_mb, wm;

        if (!c)
                return -ENOMEM;
        *c = (struct cycle) {
                .loop = loop,
                .env = env,
                .done = done,
                .userdata = userdata,
                .result.now = now,
                .tracelogs.table = ROWS_TRACELOGS,
                .mailboxes.table = ROWS_MAILBOXES,
                .workflows.table = ROWS_WORKFLOWS,
                .steps.table = ROWS_STEPS,
                .sessions.table = ROWS_SESSIONS,
                .traces.table = ROWS_TRACES,
        };
        *ret = c;

        wm = env->state ? state_watermark_get(env->state, STATE_WATERMARK_TRACELOGS) : 0;
        since_tl = wm ? since_overlap(wm) : detect_since(env, now);
        wm = env->state ? state_watermark_get(env->state, STATE_WATERMARK_MAILBOXES) : 0;
        c->full_mailboxes = !cache_loaded(env->cache, CACHE_MAILBOXES) || wm == 0;
        since_mb = c->full_mailboxes ? 0 : since_overlap(wm);

        cycle_phase(c, cycle_detect);
        cycle_started(c, "tracelogs", dv_query_tracelogs_since(env->dv, since_tl, on_tracelogs_page, on_tracelogs, c));
        cycle_started(c, "mailboxes", dv_query_mailboxes_since(env->dv, since_mb, on_mailboxes_page, on_mailboxes, c));
        cycle_arrived(c);
        return 0;
}
