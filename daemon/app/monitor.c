/* monitor.c: owns the environments, their jittered schedule, outage reporting and reload.
 * Must not know what a cycle does inside (cycle.c) nor how records are written. */
#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "client.h"
#include "connection.h"
#include "cycle.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h"
#include "state.h"

/* Per-cycle jitter, as a fraction of the interval, both ways. */
#define MONITOR_JITTER 0.025
/* --once answers a monitoring system that kills checks after a minute
 * (Nagios' service_check_timeout, Icinga's check_timeout): give up on an
 * environment well before, whatever the poll interval says. */
#define MONITOR_ONCE_RETRY_BUDGET_SEC 10.0
#define MONITOR_ONCE_REQUEST_TIMEOUT_MS 20000L

struct env_monitor {
        struct monitor *monitor;
        struct cycle_env cycle_env;             /* what its cycles keep: client, cache, state... */
        ev_timer timer;
        ev_tstamp due;                          /* when the next cycle should start */
        ev_tstamp planned;                      /* due before a late previous cycle pushed it */
        struct cycle *cycle;                    /* in progress, or NULL */
        unsigned cycles;                        /* timer-started cycles, for the debug log */
        bool completed;                         /* at least one cycle ran to its end */
        bool failing;                           /* the last cycle failed */
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
        return em->cycle_env.env->name;
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

static void env_note_failure(struct env_monitor *em, struct cycle_result *c) {
        metrics_inc_poll_errors(em->cycle_env.metrics);
        em->failures++;
        if (em->failing) {
                log_debug("%s: still failing (%u attempts): %s: %s", env_name(em), em->failures, c->query,
                          c->message);
                return;
        }
        em->failing = true;
        em->failing_since = c->now;
        free(em->failure_query);
        free(em->failure_message);
        em->failure_query = TAKE_PTR(c->query);
        em->failure_message = TAKE_PTR(c->message);
        log_warning("%s: poll failed: %s: %s", env_name(em), strempty(em->failure_query),
                    strempty(em->failure_message));
        if (!em->monitor->params.once)
                error_event_send(em, ERROR_STATE_FAILING, c->now);
}

static void env_note_success(struct env_monitor *em, time_t now) {
        metrics_set_last_success(em->cycle_env.metrics, now);
        if (!em->failing)
                return;
        log_notice("%s: polling recovered after %u failed attempts", env_name(em), em->failures);
        error_event_send(em, ERROR_STATE_RECOVERED, now);
        em->failing = false;
        em->failures = 0;
}

/* ---- cycles ------------------------------------------------------------------ */

static void cycle_done(struct cycle_result *r, void *userdata) {
        struct env_monitor *em = userdata;
        struct monitor *m = em->monitor;

        em->cycle = NULL;
        if (r->error < 0)
                env_note_failure(em, r);
        else
                env_note_success(em, r->now);
        for (size_t v = 0; v < ELEMENTSOF(r->findings); v++)
                m->tally.findings[v] += r->findings[v];
        m->tally.resolved += r->resolved;
        em->completed = true;
        metrics_inc_polls(em->cycle_env.metrics);
        if (em->cycle_env.state)
                metrics_set_open_findings(em->cycle_env.metrics, state_open_count(em->cycle_env.state));
        metrics_write_logged(m, r->now);
        schedule_next(em);
        if (m->params.cycle_done)
                m->params.cycle_done(m, m->params.userdata);
}

static void start_cycle(struct env_monitor *em) {
        if (em->cycle) {
                log_debug("%s: previous cycle still running, skipping one", env_name(em));
                return schedule_next(em);
        }
        if (cycle_start(em->monitor->loop, &em->cycle_env, now_wall(em->monitor), cycle_done, em, &em->cycle) < 0) {
                em->cycle = NULL;
                log_error("%s: out of memory", env_name(em));
                return schedule_next(em);
        }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
        struct env_monitor *em = w->data;
        double late = ev_now(loop) - em->planned;

        /* One line per cycle: tests/bench measures lateness from it (counting
         * the time a previous cycle overran its interval). */
        log_debug("%s: cycle %u started %.3f s after due%s", env_name(em), ++em->cycles, late,
                  late > 1.0 ? " (late)" : "");
        start_cycle(em);
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
        dv_client_free(em->cycle_env.dv); /* cancels: no callback comes back */
        cycle_free(em->cycle);
        cache_free(em->cycle_env.cache);
        state_close(em->cycle_env.state);
        free(em->failure_query);
        free(em->failure_message);
        free(em);
}

/* The client's retry budget: a poll interval, or less under --once. */
static struct dv_options client_options(const struct monitor *m) {
        struct dv_options opt = {
                .max_backoff_sec = (double) m->config->interval_sec,
                .retry_budget_sec = (double) m->config->interval_sec,
        };

        if (m->params.once) {
                if (opt.retry_budget_sec > MONITOR_ONCE_RETRY_BUDGET_SEC)
                        opt.retry_budget_sec = MONITOR_ONCE_RETRY_BUDGET_SEC;
                if (opt.max_backoff_sec > MONITOR_ONCE_RETRY_BUDGET_SEC)
                        opt.max_backoff_sec = MONITOR_ONCE_RETRY_BUDGET_SEC;
                opt.timeout_ms = MONITOR_ONCE_REQUEST_TIMEOUT_MS;
        }
        return opt;
}

/* The environment's state: handed over from its predecessor (reload), none
 * under --once, else opened in the state directory. */
static int env_state_take(struct monitor *m, struct env_monitor *em, struct env_state *state, char **ret_error) {
        _cleanup_free_ char *message = NULL;
        int r;

        if (state || m->params.once) {
                em->cycle_env.state = state;
                return 0;
        }
        r = state_open(m->config->state_directory, env_name(em), &em->cycle_env.state, &message);
        if (r < 0) {
                *ret_error = TAKE_PTR(message);
                return r;
        }
        if (message)
                log_warning("%s", message);
        return 0;
}

static int env_monitor_new(struct monitor *m, const struct env_config *config, struct env_state *state,
                           struct env_monitor **ret, char **ret_error) {
        struct dv_options opt = client_options(m);
        struct dv_connection conn;
        struct env_monitor *em;
        int r;

        em = calloc(1, sizeof(*em));
        if (!em)
                return -ENOMEM;
        em->monitor = m;
        em->cycle_env = (struct cycle_env) {
                .config = m->config,
                .env = config,
                .once = m->params.once,
                .once_since_sec = m->params.once_since_sec,
                .metrics = metrics_env(m->params.metrics, config->name),
                .sink = &m->params.sink,
        };
        ev_init(&em->timer, on_timer);
        em->timer.data = em;
        config_env_connection(config, &conn);
        r = cache_new(&em->cycle_env.cache);
        if (r >= 0)
                r = dv_client_new(m->loop, m->http, &conn, &opt, &em->cycle_env.dv);
        if (r < 0) {
                if (asprintf(ret_error, "%s: cannot set up the client: %s", config->name, strerror(-r)) < 0)
                        *ret_error = NULL;
                env_monitor_free(em);
                return r;
        }
        r = env_state_take(m, em, state, ret_error);
        if (r < 0) {
                env_monitor_free(em);
                return r;
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
                        dv_client_free(em->cycle_env.dv);
                        em->cycle_env.dv = NULL;
                        cycle_free(em->cycle);
                        em->cycle = NULL;
                }
                if (em->cycle_env.state && state_save(em->cycle_env.state, &error) < 0)
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
                if (m->envs[i] && strcmp(env_name(m->envs[i]), name) == 0) {
                        if (ret_index)
                                *ret_index = i;
                        return m->envs[i];
                }
        return NULL;
}

static bool find_env_in(struct env_monitor *const *envs, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (envs[i] && strcmp(env_name(envs[i]), name) == 0)
                        return true;
        return false;
}

void monitor_set_metrics(struct monitor *m, struct metrics *metrics) {
        m->params.metrics = metrics;
        for (size_t i = 0; i < m->n_envs; i++)
                m->envs[i]->cycle_env.metrics = metrics_env(metrics, env_name(m->envs[i]));
}

/* Undo reload_build(): free what was built; a state handle it took over
 * stays with its old environment. */
static void reload_rollback(struct monitor *m, const struct s3_config *config, struct env_monitor **envs) {
        for (size_t i = 0; i < config->n_envs; i++) {
                struct env_monitor *em;

                if (!envs[i])
                        continue;
                em = find_env(m, config->envs[i].name, NULL);
                if (em && envs[i]->cycle_env.state == em->cycle_env.state)
                        envs[i]->cycle_env.state = NULL;
                env_monitor_free(envs[i]);
        }
}

/* Build what config needs anew (envs[i] stays NULL for an environment kept
 * as it is), so a failure changes nothing. The state handle of a changed
 * environment moves to its replacement. */
static int reload_build(struct monitor *m, const struct s3_config *config, struct env_monitor **envs,
                        char **ret_error) {
        int r = 0;

        for (size_t i = 0; i < config->n_envs && r >= 0; i++) {
                struct env_monitor *em = find_env(m, config->envs[i].name, NULL);
                if (em && same_connection(em->cycle_env.env, &config->envs[i]))
                        continue;
                r = env_monitor_new(m, &config->envs[i], em ? em->cycle_env.state : NULL, &envs[i], ret_error);
        }
        return r;
}

/* Keep or replace each environment, then save and stop what is gone. */
static void reload_commit(struct monitor *m, const struct s3_config *config, struct env_monitor **envs) {
        size_t n = config->n_envs;

        for (size_t i = 0; i < n; i++) {
                size_t j;
                struct env_monitor *em = find_env(m, config->envs[i].name, &j);

                if (!envs[i]) { /* kept */
                        em->cycle_env.config = config;
                        em->cycle_env.env = &config->envs[i];
                        envs[i] = em;
                        m->envs[j] = NULL;
                        continue;
                }
                if (em && em->cycle_env.state == envs[i]->cycle_env.state)
                        em->cycle_env.state = NULL; /* moved to its replacement */
                schedule_at(envs[i], ev_now(m->loop));
        }
        for (size_t j = 0; j < m->n_envs; j++) {
                struct env_monitor *gone = m->envs[j];
                _cleanup_free_ char *error = NULL;

                if (!gone)
                        continue;
                if (gone->cycle_env.state && state_save(gone->cycle_env.state, &error) < 0)
                        log_warning("%s: state not saved: %s", env_name(gone), strempty(error));
                if (!find_env_in(envs, n, env_name(gone)))
                        metrics_env_drop(m->params.metrics, env_name(gone));
                env_monitor_free(gone);
        }
        free(m->envs);
        m->envs = envs;
        m->n_envs = n;
}

int monitor_reload(struct monitor *m, const struct s3_config *config, char **ret_error) {
        const struct s3_config *old = m->config;
        struct env_monitor **envs;
        int r;

        *ret_error = NULL;
        envs = calloc(config->n_envs ? config->n_envs : 1, sizeof(*envs));
        if (!envs)
                return -ENOMEM;
        m->config = config;
        r = reload_build(m, config, envs, ret_error);
        if (r < 0) {
                reload_rollback(m, config, envs);
                free(envs);
                m->config = old;
                return r;
        }
        reload_commit(m, config, envs);
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
                if (em->cycle_env.state)
                        ret->open += (unsigned) state_open_count(em->cycle_env.state);
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
