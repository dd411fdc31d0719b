/* monitor.c: the poll cycle of each environment, on the shared libev loop:
 *   poll (tracelogs + mailboxes since the watermarks) -> detect and classify
 *   -> refresh the workflow/step cache when alerts are new or it is due
 *   -> fetch evidence once for all new alerts -> correlate -> emit, note
 *   -> resolve, save state -> schedule the next cycle.
 * Owns the order of a cycle, the schedule and outage reporting; the rules
 * are the engine's, the bytes the client's, the records the sink's. */
#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "client.h"
#include "connection.h"
#include "correlate.h"
#include "detect.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h"
#include "rows.h"
#include "state.h"

/* Rows committed late carry a modifiedon before the watermark: every poll
 * looks this far behind it, and the seen ids keep them from being reported
 * twice. */
#define MONITOR_OVERLAP_SEC 300
/* Every this many configuration refreshes, read the tables whole: deletions
 * never show up in a delta. */
#define MONITOR_FULL_CONFIG_EVERY 4
/* Closed findings are remembered at least this long (reopen detection). */
#define MONITOR_CLOSED_RETENTION_SEC (7 * 86400)
/* Per-cycle jitter, as a fraction of the interval, both ways. */
#define MONITOR_JITTER 0.025
/* --once answers a monitoring system that kills checks after a minute
 * (Nagios' service_check_timeout, Icinga's check_timeout): give up on an
 * environment well before, whatever the poll interval says. */
#define MONITOR_ONCE_RETRY_BUDGET_SEC 10.0
#define MONITOR_ONCE_REQUEST_TIMEOUT_MS 20000L

struct cycle;

struct env_monitor {
        struct monitor *monitor;
        const struct env_config *config;        /* points into monitor->config */
        struct dv_client *dv;
        struct cache *cache;
        struct env_state *state;                /* NULL in --once */
        struct metrics_env *metrics;            /* NULL when metrics are off */
        ev_timer timer;
        ev_tstamp due;                          /* when the next cycle should start */
        ev_tstamp planned;                      /* due before a late previous cycle pushed it */
        struct cycle *cycle;                    /* in progress, or NULL */
        time_t config_refreshed_at;             /* 0: never */
        unsigned refreshes;                     /* delta refreshes since the last full read */
        unsigned cycles;                        /* timer-started cycles, for the debug log */
        bool completed;                         /* at least one cycle ran to its end */
        bool failing;                           /* the last cycle failed */
        bool save_failing;                      /* the last state_save() failed */
        time_t failing_since;
        unsigned failures;
        char *failure_query;
        char *failure_message;
};

struct monitor {
        struct ev_loop *loop;
        struct http *http;
        struct monitor_params params;
        const struct s3_config *config;
        struct env_monitor **envs;
        size_t n_envs;
        uint64_t rng;
        struct monitor_summary tally;           /* findings, resolved */
};

/* A new alert of this cycle and the generation its finding gets. */
struct todo {
        const struct alert *alert;
        unsigned generation;
};

struct cycle {
        struct env_monitor *env;
        time_t now;
        ev_tstamp phase_started;                /* when this phase's queries went out */
        unsigned pending;                       /* queries in flight */
        void (*then)(struct cycle *c);          /* when pending drops to 0 */
        int error;
        char *error_query;
        char *error_message;
        /* The rows of this cycle's queries, collected page by page. */
        struct rows tracelogs, mailboxes, workflows, steps, sessions, traces;
        bool full_mailboxes, full_config;
        struct alert *alerts;
        size_t n_alerts;
        struct todo *todo;
        size_t n_todo;
        time_t max_tracelog_at, max_mailbox_at; /* watermarks this cycle saw */
};

static void cycle_start(struct env_monitor *em);
static void schedule_next(struct env_monitor *em);

/* ---- small helpers ---------------------------------------------------------- */

static double rng_uniform(struct monitor *m) {
        /* xorshift64*: jitter only, not security */
        m->rng ^= m->rng >> 12;
        m->rng ^= m->rng << 25;
        m->rng ^= m->rng >> 27;
        return (double) ((m->rng * UINT64_C(2685821657736338717)) >> 11) / (double) (UINT64_C(1) << 53);
}

static time_t now_wall(struct monitor *m) {
        return (time_t) ev_time();
}

static const char *env_name(const struct env_monitor *em) {
        return em->config->name;
}

static void cycle_free(struct cycle *c) {
        if (!c)
                return;
        free(c->error_query);
        free(c->error_message);
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

static void cycle_error(struct cycle *c, const char *query, int error, const char *message) {
        if (c->error != 0)
                return; /* the first one wins */
        c->error = error;
        c->error_query = strdup(query);
        c->error_message = strdup(message ? message : strerror(-error));
}

/* A query is over: count its requests, note its failure. */
static void cycle_take(struct cycle *c, const char *query, struct dv_result *r) {
        struct env_monitor *em = c->env;
        double per_request = (ev_now(em->monitor->loop) - c->phase_started) / (r->requests ? r->requests : 1);

        /* The client reports a query, not its requests: each gets the mean. */
        for (unsigned i = 0; i < r->requests; i++)
                metrics_observe_latency(em->metrics, per_request);
        if (r->error < 0)
                cycle_error(c, query, r->error, r->message);
}

/* A page of a query: its rows join the cycle's. */
static void cycle_collect(struct cycle *c, const char *query, struct dv_page *page, struct rows *into) {
        int r = rows_append(into, &page->rows);

        if (r < 0)
                cycle_error(c, query, r, NULL);
}

static void cycle_phase(struct cycle *c, void (*then)(struct cycle *c)) {
        c->then = then;
        c->pending = 1; /* held until every query of the phase is started */
        c->phase_started = ev_now(c->env->monitor->loop);
}

static void cycle_arrived(struct cycle *c) {
        if (--c->pending == 0)
                c->then(c);
}

#define DEFINE_TAKE(field, query)                                                           \
        static void on_##field##_page(struct dv_client *dv, struct dv_page *page, void *userdata) { \
                struct cycle *c = userdata;                                                 \
                cycle_collect(c, query, page, &c->field);                                   \
        }                                                                                   \
        static void on_##field(struct dv_client *dv, struct dv_result *r, void *userdata) { \
                struct cycle *c = userdata;                                                 \
                cycle_take(c, query, r);                                                    \
                cycle_arrived(c);                                                           \
        }
DEFINE_TAKE(tracelogs, "tracelogs")
DEFINE_TAKE(mailboxes, "mailboxes")
DEFINE_TAKE(workflows, "workflows")
DEFINE_TAKE(steps, "sdkmessageprocessingsteps")
DEFINE_TAKE(sessions, "processsessions")
DEFINE_TAKE(traces, "plugintracelogs")

/* A query that could not even start counts as a failed query. */
static void cycle_started(struct cycle *c, const char *query, int r) {
        if (r >= 0) {
                c->pending++;
                return;
        }
        cycle_error(c, query, r, NULL);
}

static time_t since_overlap(time_t watermark) {
        return watermark > MONITOR_OVERLAP_SEC ? watermark - MONITOR_OVERLAP_SEC : 0;
}

static struct correlate_params correlate_params_of(const struct env_monitor *em) {
        return (struct correlate_params) {
                .environment = env_name(em),
                .item_types = em->config->item_types,
                .window_sec = em->monitor->config->correlation_window_sec,
        };
}

static void metrics_write_logged(struct monitor *m, time_t now) {
        _cleanup_free_ char *error = NULL;

        if (m->params.metrics && metrics_write(m->params.metrics, now, &error) < 0)
                log_warning("metrics not written: %s", strempty(error));
}

/* ---- outage reporting --------------------------------------------------------- */

static void error_event_send(struct env_monitor *em, enum error_state state, time_t now) {
        struct monitor *m = em->monitor;
        struct error_event e = {
                .environment = (char *) env_name(em),
                .state = state,
                .query = em->failure_query,
                .message = em->failure_message,
                .since = em->failing_since,
                .at = now,
                .failures = em->failures,
        };
        int r;

        if (!m->params.sink.error)
                return;
        r = m->params.sink.error(&e, m->params.sink.userdata);
        if (r < 0)
                log_warning("%s: could not report the %s poll: %s", env_name(em),
                            state == ERROR_STATE_FAILING ? "failing" : "recovered", strerror(-r));
}

static void env_note_failure(struct env_monitor *em, struct cycle *c) {
        metrics_inc_poll_errors(em->metrics);
        em->failures++;
        if (em->failing) {
                log_debug("%s: still failing (%u attempts): %s: %s", env_name(em), em->failures,
                          c->error_query, c->error_message);
                return;
        }
        em->failing = true;
        em->failing_since = c->now;
        free(em->failure_query);
        free(em->failure_message);
        em->failure_query = TAKE_PTR(c->error_query);
        em->failure_message = TAKE_PTR(c->error_message);
        log_warning("%s: poll failed: %s: %s", env_name(em), strempty(em->failure_query),
                    strempty(em->failure_message));
        if (!em->monitor->params.once)
                error_event_send(em, ERROR_STATE_FAILING, c->now);
}

static void env_note_success(struct env_monitor *em, time_t now) {
        metrics_set_last_success(em->metrics, now);
        if (!em->failing)
                return;
        log_notice("%s: polling recovered after %u failed attempts", env_name(em), em->failures);
        error_event_send(em, ERROR_STATE_RECOVERED, now);
        em->failing = false;
        em->failures = 0;
}

/* ---- the end of a cycle -------------------------------------------------------- */

static void cycle_end(struct cycle *c) {
        struct env_monitor *em = c->env;
        struct monitor *m = em->monitor;

        em->cycle = NULL;
        em->completed = true;
        metrics_inc_polls(em->metrics);
        if (em->state)
                metrics_set_open_findings(em->metrics, state_open_count(em->state));
        metrics_write_logged(m, c->now);
        cycle_free(c);
        schedule_next(em);
        if (m->params.cycle_done)
                m->params.cycle_done(m, m->params.userdata);
}

static void cycle_failed(struct cycle *c) {
        env_note_failure(c->env, c);
        cycle_end(c);
}

/* Email: a successful sync completed after the last alert. Appointments,
 * contacts and tasks: the mailbox's ACT status is Success again (the service
 * keeps no time of the last good ACT sync). */
static bool mailbox_receiving_again(const struct cache_mailbox *mb, const struct state_open_finding *f) {
        if (f->alert_kind == ALERT_KIND_ACT)
                return mb->act_status == SYNC_STATUS_SUCCESS;
        return mb->last_success_on > f->last_at;
}

/* Mailboxes that receive again after the last alert, resolve_after ago. */
static void resolve_open_findings(struct cycle *c) {
        struct env_monitor *em = c->env;
        struct monitor *m = em->monitor;
        const struct state_open_finding *f;
        size_t cursor = 0;

        while ((f = state_open_next(em->state, &cursor))) {
                struct cache_mailbox mb;
                struct resolved_event e;
                _cleanup_free_ char *error = NULL;
                int r;

                if (!f->mailbox_id || !cache_mailbox_get(em->cache, f->mailbox_id, &mb))
                        continue;
                if (!mailbox_receiving_again(&mb, f) ||
                    c->now - f->last_at < (time_t) m->config->resolve_after_sec)
                        continue;
                e = (struct resolved_event) {
                        .finding_id = (char *) f->finding_id,
                        .environment = (char *) env_name(em),
                        .mailbox = { (char *) f->mailbox_id, (char *) (mb.name ? mb.name : f->mailbox_name),
                                     (char *) (mb.email ? mb.email : f->mailbox_email) },
                        .alert_id = (char *) f->alert_id,
                        .occurrences = f->occurrences,
                        .last_alert_at = f->last_at,
                        .resolved_at = c->now,
                };
                if (m->params.sink.resolved && (r = m->params.sink.resolved(&e, m->params.sink.userdata)) < 0) {
                        log_warning("%s: could not report finding %s resolved: %s", env_name(em),
                                    f->finding_id, strerror(-r));
                        continue;
                }
                m->tally.resolved++;
                metrics_inc_resolved(em->metrics);
                r = state_note_resolved(em->state, e.finding_id, c->now, &error);
                if (r < 0)
                        log_warning("%s: %s", env_name(em), error ? error : strerror(-r));
        }
}

static void cycle_save(struct cycle *c) {
        struct env_monitor *em = c->env;
        struct monitor *m = em->monitor;
        _cleanup_free_ char *error = NULL;
        time_t wm_t, wm_m, seen_before;
        uint64_t keep = m->config->lookback_sec > MONITOR_CLOSED_RETENTION_SEC ? m->config->lookback_sec
                                                                               : MONITOR_CLOSED_RETENTION_SEC;
        int r;

        if (c->max_tracelog_at > state_watermark_get(em->state, STATE_WATERMARK_TRACELOGS))
                state_watermark_set(em->state, STATE_WATERMARK_TRACELOGS, c->max_tracelog_at);
        if (c->max_mailbox_at > state_watermark_get(em->state, STATE_WATERMARK_MAILBOXES))
                state_watermark_set(em->state, STATE_WATERMARK_MAILBOXES, c->max_mailbox_at);
        wm_t = state_watermark_get(em->state, STATE_WATERMARK_TRACELOGS);
        wm_m = state_watermark_get(em->state, STATE_WATERMARK_MAILBOXES);
        seen_before = since_overlap(wm_t < wm_m || wm_m == 0 ? wm_t : wm_m);
        state_prune(em->state, seen_before, c->now - (time_t) keep);
        r = state_save(em->state, &error);
        if (r < 0) {
                metrics_inc_state_save_errors(em->metrics);
                /* Once per outage (a full or read-only disk lasts): the metric counts the rest. */
                if (!em->save_failing)
                        log_warning("%s: state not saved (will retry every cycle): %s", env_name(em),
                                    error ? error : strerror(-r));
                else
                        log_debug("%s: state still not saved: %s", env_name(em), error ? error : strerror(-r));
                em->save_failing = true;
        } else if (r > 0 && em->save_failing) {
                log_notice("%s: state saved again in %s", env_name(em), state_path(em->state));
                em->save_failing = false;
        }
}

static void cycle_finish(struct cycle *c) {
        struct env_monitor *em = c->env;

        if (c->error < 0)
                return cycle_failed(c);
        if (em->state) {
                resolve_open_findings(c);
                cycle_save(c);
        }
        env_note_success(em, c->now);
        cycle_end(c);
}

/* ---- correlate and emit ----------------------------------------------------- */

static int note_finding(struct env_monitor *em, const struct finding *f, const struct alert *a,
                        unsigned generation) {
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

        r = state_note_finding(em->state, &o, &error);
        if (r < 0)
                log_warning("%s: %s", env_name(em), error ? error : strerror(-r));
        return r;
}

static void cycle_correlate(struct cycle *c) {
        struct env_monitor *em = c->env;
        struct monitor *m = em->monitor;
        _cleanup_(correlate_evidence_freep) struct correlate_evidence *ev = NULL;
        struct correlate_params p = correlate_params_of(em);
        int r;

        if (c->error < 0)
                return cycle_failed(c);

        r = correlate_evidence_new(em->cache, c->sessions.sessions, c->sessions.n, c->traces.traces, c->traces.n,
                                   &ev);
        if (r < 0) {
                log_error("%s: cannot index evidence: %s", env_name(em), strerror(-r));
                goto out;
        }

        for (size_t i = 0; i < c->n_todo; i++) {
                const struct todo *t = &c->todo[i];
                struct finding *f = NULL;

                r = correlate_finding(t->alert, em->cache, ev, &p, t->generation, c->now, &f);
                if (r < 0) {
                        log_error("%s: cannot correlate alert %s: %s", env_name(em), t->alert->id,
                                  strerror(-r));
                        c->error = r;
                        break;
                }
                r = m->params.sink.finding(f, m->params.sink.userdata);
                if (r < 0) {
                        /* Not noted: the alert stays new and is sent again next cycle. */
                        log_error("%s: could not emit finding %s: %s", env_name(em), f->id, strerror(-r));
                        c->error = r;
                        if (!c->error_query) {
                                c->error_query = strdup("output");
                                c->error_message = strdup(strerror(-r));
                        }
                        finding_free(f);
                        break;
                }
                m->tally.findings[f->verdict]++;
                metrics_inc_findings(em->metrics, f->verdict);
                if (em->state) {
                        state_crash_point(em->state, "monitor-after-emit");
                        note_finding(em, f, t->alert, t->generation);
                }
                finding_free(f);
        }
out:
        correlate_evidence_free(TAKE_PTR(ev)); /* it points into the rows */
        rows_done(&c->sessions);
        rows_done(&c->traces);
        cycle_finish(c);
}

/* ---- evidence ------------------------------------------------------------------ */

static void cycle_fetch_evidence(struct cycle *c) {
        struct env_monitor *em = c->env;
        struct correlate_params p = correlate_params_of(em);
        _cleanup_free_ struct alert *alerts = NULL;
        struct evidence_request req = {};
        int r;

        alerts = calloc(c->n_todo, sizeof(*alerts));
        if (!alerts) {
                c->error = -ENOMEM;
                return cycle_finish(c);
        }
        for (size_t i = 0; i < c->n_todo; i++)
                alerts[i] = *c->todo[i].alert; /* shallow: read-only view */
        r = correlate_evidence_request(alerts, c->n_todo, em->cache, &p, &req);
        if (r < 0) {
                c->error = r;
                return cycle_finish(c);
        }
        log_debug("%s: evidence for %zu alerts: %zu processes, %zu steps", env_name(em), c->n_todo,
                  req.n_process_ids, req.n_step_ids);

        cycle_phase(c, cycle_correlate);
        cycle_started(c, "processsessions",
                      dv_query_failed_sessions(em->dv, (const char *const *) req.process_ids, req.n_process_ids,
                                               req.from, req.to, on_sessions_page, on_sessions, c));
        cycle_started(c, "plugintracelogs",
                      dv_query_plugin_traces(em->dv, (const char *const *) req.step_ids, req.n_step_ids, req.from,
                                             req.to, on_traces_page, on_traces, c));
        evidence_request_done(&req);
        cycle_arrived(c);
}

/* ---- configuration refresh ------------------------------------------------------ */

static void cycle_apply_config(struct cycle *c) {
        struct env_monitor *em = c->env;
        struct rows *wf = &c->workflows, *steps = &c->steps;
        int r;

        if (c->error < 0)
                return cycle_failed(c);

        r = c->full_config ? cache_replace_workflows(em->cache, wf->workflows, wf->n)
                           : cache_update_workflows(em->cache, wf->workflows, wf->n);
        if (r >= 0)
                r = c->full_config ? cache_replace_steps(em->cache, steps->steps, steps->n)
                                   : cache_update_steps(em->cache, steps->steps, steps->n);
        rows_done(wf);
        rows_done(steps);
        if (r < 0) {
                c->error = r;
                return cycle_finish(c);
        }
        em->config_refreshed_at = c->now;
        em->refreshes = c->full_config ? 0 : em->refreshes + 1;
        log_debug("%s: configuration %s: %zu suspect-capable workflows, %zu steps", env_name(em),
                  c->full_config ? "read" : "refreshed", cache_count(em->cache, CACHE_WORKFLOWS),
                  cache_count(em->cache, CACHE_STEPS));

        if (c->n_todo == 0)
                return cycle_finish(c);
        cycle_fetch_evidence(c);
}

static bool config_refresh_due(const struct env_monitor *em, time_t now) {
        if (!cache_loaded(em->cache, CACHE_WORKFLOWS) || !cache_loaded(em->cache, CACHE_STEPS))
                return true;
        return now - em->config_refreshed_at >= (time_t) em->monitor->config->config_refresh_sec;
}

static void cycle_refresh_config(struct cycle *c) {
        struct env_monitor *em = c->env;
        time_t since_wf, since_steps;

        c->full_config = !cache_loaded(em->cache, CACHE_WORKFLOWS) || !cache_loaded(em->cache, CACHE_STEPS) ||
                         em->refreshes + 1 >= MONITOR_FULL_CONFIG_EVERY;
        since_wf = c->full_config ? 0 : since_overlap(cache_watermark(em->cache, CACHE_WORKFLOWS));
        since_steps = c->full_config ? 0 : since_overlap(cache_watermark(em->cache, CACHE_STEPS));

        cycle_phase(c, cycle_apply_config);
        cycle_started(c, "workflows", dv_query_workflows_since(em->dv, since_wf, on_workflows_page, on_workflows, c));
        cycle_started(c, "sdkmessageprocessingsteps",
                      dv_query_steps_since(em->dv, since_steps, on_steps_page, on_steps, c));
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
        qsort(ret->ids, n, sizeof(char *), cmp_str);
        ret->n = n;
        return 0;
}

/* A later occurrence of an open finding: count it, emit nothing. */
static void note_recurrence(struct env_monitor *em, const struct alert *a) {
        const struct state_open_finding *o = state_open_find(em->state, a->id);
        struct state_open_finding f;
        _cleanup_free_ char *error = NULL;

        if (!o)
                return;
        f = *o;
        f.occurrences++;
        f.last_at = a->at;
        log_info("%s: finding %s recurred (%u occurrences)", env_name(em), f.finding_id, f.occurrences);
        if (state_note_finding(em->state, &f, &error) < 0)
                log_warning("%s: %s", env_name(em), strempty(error));
}

static int classify_alerts(struct cycle *c) {
        struct env_monitor *em = c->env;

        c->todo = c->n_alerts ? calloc(c->n_alerts, sizeof(*c->todo)) : NULL;
        if (c->n_alerts && !c->todo)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_alerts; i++) {
                const struct alert *a = &c->alerts[i];
                unsigned generation = 1;

                if (em->state)
                        switch (state_classify(em->state, a->id, a->at, &generation)) {
                        case STATE_ALERT_REPORTED:
                                continue;
                        case STATE_ALERT_RECURRENCE:
                                note_recurrence(em, a);
                                continue;
                        case STATE_ALERT_NEW:
                        case STATE_ALERT_REOPENED:
                                break;
                        }
                c->todo[c->n_todo++] = (struct todo) { a, generation };
        }
        return 0;
}

static time_t detect_since(const struct env_monitor *em, time_t now) {
        const struct monitor *m = em->monitor;
        uint64_t back = m->params.once ? m->params.once_since_sec : m->config->lookback_sec;
        return now > (time_t) back ? now - (time_t) back : 0;
}

static void cycle_detect(struct cycle *c) {
        struct env_monitor *em = c->env;
        const struct tracelog_row *tl = c->tracelogs.tracelogs;
        const struct mailbox_row *mb = c->mailboxes.mailboxes;
        size_t n_tl = c->tracelogs.n, n_mb = c->mailboxes.n;
        struct mailbox_set open_mailboxes = {};
        struct detect_params dp;
        int r;

        if (c->error < 0)
                return cycle_failed(c);

        for (size_t i = 0; i < n_mb; i++)
                if (mb[i].modified_on > c->max_mailbox_at)
                        c->max_mailbox_at = mb[i].modified_on;
        for (size_t i = 0; i < n_tl; i++)
                if (tl[i].modified_on > c->max_tracelog_at)
                        c->max_tracelog_at = tl[i].modified_on;

        r = c->full_mailboxes ? cache_replace_mailboxes(em->cache, mb, n_mb)
                              : cache_update_mailboxes(em->cache, mb, n_mb);
        if (r >= 0)
                r = mailbox_set_build(em->state, &open_mailboxes);
        if (r >= 0) {
                dp = (struct detect_params) {
                        .cache = em->cache,
                        .since = detect_since(em, c->now),
                        .has_tracelog_alert = mailbox_set_has,
                        .userdata = &open_mailboxes,
                };
                r = detect_alerts(tl, n_tl, mb, n_mb, &dp, &c->alerts, &c->n_alerts);
        }
        free(open_mailboxes.ids);
        rows_done(&c->tracelogs);
        rows_done(&c->mailboxes);
        if (r >= 0)
                r = classify_alerts(c);
        if (r < 0) {
                c->error = r;
                return cycle_finish(c);
        }
        log_debug("%s: %zu alerts polled, %zu new", env_name(em), c->n_alerts, c->n_todo);

        if (c->n_todo > 0 || (!em->monitor->params.once && config_refresh_due(em, c->now)))
                return cycle_refresh_config(c);
        cycle_finish(c);
}

/* ---- the start of a cycle ------------------------------------------------------ */

static void cycle_start(struct env_monitor *em) {
        struct monitor *m = em->monitor;
        struct cycle *c;
        time_t since_tl, since_mb, wm;

        if (em->cycle) {
                log_debug("%s: previous cycle still running, skipping one", env_name(em));
                return schedule_next(em);
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                log_error("%s: out of memory", env_name(em));
                return schedule_next(em);
        }
        c->env = em;
        c->now = now_wall(m);
        c->tracelogs.table = ROWS_TRACELOGS;
        c->mailboxes.table = ROWS_MAILBOXES;
        c->workflows.table = ROWS_WORKFLOWS;
        c->steps.table = ROWS_STEPS;
        c->sessions.table = ROWS_SESSIONS;
        c->traces.table = ROWS_TRACES;
        em->cycle = c;

        wm = em->state ? state_watermark_get(em->state, STATE_WATERMARK_TRACELOGS) : 0;
        since_tl = wm ? since_overlap(wm) : detect_since(em, c->now);
        wm = em->state ? state_watermark_get(em->state, STATE_WATERMARK_MAILBOXES) : 0;
        c->full_mailboxes = !cache_loaded(em->cache, CACHE_MAILBOXES) || wm == 0;
        since_mb = c->full_mailboxes ? 0 : since_overlap(wm);

        cycle_phase(c, cycle_detect);
        cycle_started(c, "tracelogs", dv_query_tracelogs_since(em->dv, since_tl, on_tracelogs_page, on_tracelogs, c));
        cycle_started(c, "mailboxes", dv_query_mailboxes_since(em->dv, since_mb, on_mailboxes_page, on_mailboxes, c));
        cycle_arrived(c);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
        struct env_monitor *em = w->data;
        double late = ev_now(loop) - em->planned;

        /* One line per cycle: tests/bench measures lateness from it (counting
         * the time a previous cycle overran its interval). */
        log_debug("%s: cycle %u started %.3f s after due%s", env_name(em), ++em->cycles, late,
                  late > 1.0 ? " (late)" : "");
        cycle_start(em);
}

static void schedule_at(struct env_monitor *em, ev_tstamp due) {
        struct ev_loop *loop = em->monitor->loop;
        ev_tstamp now = ev_now(loop);

        em->planned = due;
        em->due = due < now ? now : due;
        ev_timer_stop(loop, &em->timer);
        ev_timer_set(&em->timer, em->due - now, 0.);
        ev_timer_start(loop, &em->timer);
}

static void schedule_next(struct env_monitor *em) {
        struct monitor *m = em->monitor;
        double interval = (double) m->config->interval_sec;
        double jitter = (rng_uniform(m) * 2.0 - 1.0) * MONITOR_JITTER * interval;

        if (m->params.once)
                return;
        schedule_at(em, em->due + interval + jitter);
}

/* ---- environments ---------------------------------------------------------------- */

static void env_monitor_free(struct env_monitor *em) {
        if (!em)
                return;
        ev_timer_stop(em->monitor->loop, &em->timer);
        dv_client_free(em->dv); /* cancels: no callback comes back */
        cycle_free(em->cycle);
        cache_free(em->cache);
        state_close(em->state);
        free(em->failure_query);
        free(em->failure_message);
        free(em);
}

static int env_monitor_new(struct monitor *m, const struct env_config *config, struct env_state *state,
                           struct env_monitor **ret, char **ret_error) {
        struct env_monitor *em;
        struct dv_options opt = {
                .max_backoff_sec = (double) m->config->interval_sec,
                .retry_budget_sec = (double) m->config->interval_sec,
        };
        struct dv_connection conn;
        int r;

        config_env_connection(config, &conn);
        if (m->params.once) {
                if (opt.retry_budget_sec > MONITOR_ONCE_RETRY_BUDGET_SEC)
                        opt.retry_budget_sec = MONITOR_ONCE_RETRY_BUDGET_SEC;
                if (opt.max_backoff_sec > MONITOR_ONCE_RETRY_BUDGET_SEC)
                        opt.max_backoff_sec = MONITOR_ONCE_RETRY_BUDGET_SEC;
                opt.timeout_ms = MONITOR_ONCE_REQUEST_TIMEOUT_MS;
        }

        em = calloc(1, sizeof(*em));
        if (!em)
                return -ENOMEM;
        em->monitor = m;
        em->config = config;
        em->metrics = metrics_env(m->params.metrics, config->name);
        ev_init(&em->timer, on_timer);
        em->timer.data = em;
        r = cache_new(&em->cache);
        if (r >= 0)
                r = dv_client_new(m->loop, m->http, &conn, &opt, &em->dv);
        if (r < 0) {
                if (asprintf(ret_error, "%s: cannot set up the client: %s", config->name, strerror(-r)) < 0)
                        *ret_error = NULL;
                env_monitor_free(em);
                return r;
        }
        if (state)
                em->state = state;
        else if (!m->params.once) {
                _cleanup_free_ char *message = NULL;
                r = state_open(m->config->state_directory, config->name, &em->state, &message);
                if (r < 0) {
                        *ret_error = TAKE_PTR(message);
                        env_monitor_free(em);
                        return r;
                }
                if (message)
                        log_warning("%s", message);
        }
        *ret = em;
        return 0;
}

static void monitor_free_envs(struct monitor *m) {
        for (size_t i = 0; i < m->n_envs; i++)
                env_monitor_free(m->envs[i]);
        free(m->envs);
        m->envs = NULL;
        m->n_envs = 0;
}

int monitor_new(struct ev_loop *loop, struct http *http, const struct monitor_params *p,
                struct monitor **ret, char **ret_error) {
        struct monitor *m;
        int r;

        *ret_error = NULL;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->loop = loop;
        m->http = http;
        m->params = *p;
        m->config = p->config;
        m->rng = p->seed ? p->seed : (uint64_t) (ev_time() * 1e6) ^ (uint64_t) getpid() << 32;
        if (m->rng == 0)
                m->rng = 1;
        m->envs = calloc(m->config->n_envs ? m->config->n_envs : 1, sizeof(*m->envs));
        if (!m->envs) {
                free(m);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m->config->n_envs; i++) {
                r = env_monitor_new(m, &m->config->envs[i], NULL, &m->envs[i], ret_error);
                if (r < 0) {
                        monitor_free(m);
                        return r;
                }
                m->n_envs++;
        }
        *ret = m;
        return 0;
}

void monitor_stop(struct monitor *m) {
        for (size_t i = 0; i < m->n_envs; i++) {
                struct env_monitor *em = m->envs[i];
                _cleanup_free_ char *error = NULL;

                ev_timer_stop(m->loop, &em->timer);
                if (em->cycle) {
                        /* Cancel: what it emitted is noted, the rest comes again. */
                        dv_client_free(em->dv);
                        em->dv = NULL;
                        cycle_free(em->cycle);
                        em->cycle = NULL;
                }
                if (em->state && state_save(em->state, &error) < 0)
                        log_warning("%s: state not saved at stop: %s", env_name(em), strempty(error));
        }
}

void monitor_free(struct monitor *m) {
        if (!m)
                return;
        monitor_stop(m);
        monitor_free_envs(m);
        free(m);
}

int monitor_start(struct monitor *m) {
        ev_tstamp now = ev_now(m->loop);
        double spread = (double) m->config->interval_sec;

        /* Spread first polls over (at most) the first few seconds, so a fleet
         * of environments does not poll in lockstep. */
        if (spread > 5.0)
                spread = 5.0;
        for (size_t i = 0; i < m->n_envs; i++)
                schedule_at(m->envs[i], m->params.once ? now : now + rng_uniform(m) * spread);
        return 0;
}

/* Same Dataverse, same credentials: state and caches stay valid. */
static bool same_connection(const struct env_config *a, const struct env_config *b) {
        struct dv_connection ca, cb;

        config_env_connection(a, &ca);
        config_env_connection(b, &cb);
        return dv_connection_equal(&ca, &cb);
}

static struct env_monitor *find_env(struct monitor *m, const char *name, size_t *ret_index) {
        for (size_t i = 0; i < m->n_envs; i++)
                if (m->envs[i] && strcmp(m->envs[i]->config->name, name) == 0) {
                        if (ret_index)
                                *ret_index = i;
                        return m->envs[i];
                }
        return NULL;
}

static bool find_env_in(struct env_monitor *const *envs, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (envs[i] && strcmp(envs[i]->config->name, name) == 0)
                        return true;
        return false;
}

void monitor_set_metrics(struct monitor *m, struct metrics *metrics) {
        m->params.metrics = metrics;
        for (size_t i = 0; i < m->n_envs; i++)
                m->envs[i]->metrics = metrics_env(metrics, env_name(m->envs[i]));
}

int monitor_reload(struct monitor *m, const struct s3_config *config, char **ret_error) {
        const struct s3_config *old = m->config;
        struct env_monitor **envs;
        size_t n = config->n_envs;
        int r = 0;

        *ret_error = NULL;
        envs = calloc(n ? n : 1, sizeof(*envs));
        if (!envs)
                return -ENOMEM;

        /* First build everything new, so a failure changes nothing. The
         * state handle of a changed environment moves to its replacement. */
        m->config = config;
        for (size_t i = 0; i < n && r >= 0; i++) {
                struct env_monitor *em = find_env(m, config->envs[i].name, NULL);
                if (em && same_connection(em->config, &config->envs[i]))
                        continue;
                r = env_monitor_new(m, &config->envs[i], em ? em->state : NULL, &envs[i], ret_error);
        }
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        if (envs[i]) {
                                struct env_monitor *em = find_env(m, config->envs[i].name, NULL);
                                if (em && envs[i]->state == em->state)
                                        envs[i]->state = NULL;
                                env_monitor_free(envs[i]);
                        }
                free(envs);
                m->config = old;
                return r;
        }

        /* Commit: keep or replace, then stop what is gone. */
        for (size_t i = 0; i < n; i++) {
                size_t j;
                struct env_monitor *em = find_env(m, config->envs[i].name, &j);

                if (!envs[i]) { /* kept */
                        em->config = &config->envs[i];
                        envs[i] = em;
                        m->envs[j] = NULL;
                        continue;
                }
                if (em && em->state == envs[i]->state)
                        em->state = NULL; /* moved to its replacement */
                schedule_at(envs[i], ev_now(m->loop));
        }
        for (size_t j = 0; j < m->n_envs; j++) {
                struct env_monitor *gone = m->envs[j];
                _cleanup_free_ char *error = NULL;

                if (!gone)
                        continue;
                if (gone->state && state_save(gone->state, &error) < 0)
                        log_warning("%s: state not saved: %s", env_name(gone), strempty(error));
                if (!find_env_in(envs, n, env_name(gone)))
                        metrics_env_drop(m->params.metrics, env_name(gone));
                env_monitor_free(gone);
        }
        free(m->envs);
        m->envs = envs;
        m->n_envs = n;
        return 0;
}

void monitor_get_summary(const struct monitor *m, struct monitor_summary *ret) {
        *ret = m->tally;
        ret->environments = (unsigned) m->n_envs;
        ret->failing = ret->completed = ret->open = 0;
        for (size_t i = 0; i < m->n_envs; i++) {
                const struct env_monitor *em = m->envs[i];
                ret->failing += em->failing;
                ret->completed += em->completed;
                if (em->state)
                        ret->open += (unsigned) state_open_count(em->state);
        }
}

const char *monitor_next_incomplete(const struct monitor *m, size_t *cursor) {
        while (*cursor < m->n_envs) {
                const struct env_monitor *em = m->envs[(*cursor)++];
                if (!em->completed)
                        return env_name(em);
        }
        return NULL;
}

const char *monitor_next_failure(const struct monitor *m, size_t *cursor, const char **ret_message) {
        while (*cursor < m->n_envs) {
                const struct env_monitor *em = m->envs[(*cursor)++];
                if (em->failing) {
                        *ret_message = em->failure_message;
                        return env_name(em);
                }
        }
        return NULL;
}
