/* dvclient.c: test driver for the Dataverse client. Reads a JSON plan
 * (environments, options, timed queries), runs every query on one libev
 * loop and prints each result as a JSON line with timestamps. Built only
 * for tests; it trusts its input.
 *
 * Plan:
 *   {"options": {dv_options fields by name},
 *    "http": {"max_transfers": N, "max_host_connections": N},
 *    "deadline": 20,                      seconds before giving up (exit 2)
 *    "environments": [{"name", "url", "token_url", "client_id",
 *                      "client_secret", "ca_file", "options": {...}}],
 *    "queries": [{"env", "kind" (tracelogs|mailboxes|workflows|steps|
 *                 failed_sessions|plugin_traces|probe),
 *                 "since"/"from"/"to" (epoch seconds or ISO 8601),
 *                 "ids": [...], "entityset",
 *                 "at": delay before the first run (s), "repeat": runs,
 *                 "every": seconds between starts}]}
 *
 * Output, one line per finished query run:
 *   {"t": seconds since start when it finished, "started": when it started,
 *    "env", "kind", "query": index in the plan, "run": 0.., "error": -errno,
 *    "errno": "ECONNREFUSED", "message", "http_status", "dv_code",
 *    "requests", "token_requests", "pages", "n_rows", "skipped", "rows": [...],
 *    "server_date", "local_date"}
 * where rows are the typed rows the client handed over page by page (rows.h),
 * written back under their column names (the probe's rows are not parsed);
 * n_rows counts the rows received, skipped ones (refused by the parser)
 * included; n_rows is -1 and rows null when the query failed.
 * and a last line {"done": true, "t": ...} (or {"deadline": true}). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>

#include "client.h"
#include "connection.h"
#include "http.h"
#include "log.h"
#include "timeutil.h"

struct env {
        struct dv_connection cfg;       /* strings owned here */
        struct dv_client *client;
};

struct run {
        struct run *prev, *next;        /* unfinished runs, freed at exit */
        struct plan_query *query;
        unsigned index;
        double started;
        json_t *rows;                   /* the pages' rows so far */
};

struct plan_query {
        struct driver *driver;
        unsigned index;
        struct env *env;
        enum dv_query_kind kind;
        struct dv_query_args args;
        const char **ids;
        unsigned repeat, started, finished;
        double every;
        struct ev_timer timer;
};

struct driver {
        struct ev_loop *loop;
        struct http *http;
        struct env *envs;
        size_t n_envs;
        struct plan_query *queries;
        size_t n_queries;
        unsigned outstanding;
        struct run *runs;
        double t0;
        struct ev_timer deadline;
        int exit_status;
};

static double now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int parse_time(json_t *v, time_t *ret) {
        if (!v) {
                *ret = 0;
                return 0;
        }
        if (json_is_integer(v)) {
                *ret = (time_t) json_integer_value(v);
                return 0;
        }
        if (json_is_string(v))
                return iso8601_parse(json_string_value(v), ret);
        return -EINVAL;
}

static char *dup_or_null(json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));
        return s ? strdup(s) : NULL;
}

static void read_options(json_t *o, struct dv_options *opt) {
        json_t *v;

        if (!json_is_object(o))
                return;
#define NUM(field)                                                    \
        if ((v = json_object_get(o, #field)))                         \
                opt->field = (__typeof__(opt->field)) json_number_value(v);
        NUM(max_page_size);
        NUM(max_in_flight);
        NUM(initial_backoff_sec);
        NUM(max_backoff_sec);
        NUM(retry_budget_sec);
        NUM(max_retry_after_sec);
        NUM(max_response);
        NUM(timeout_ms);
        NUM(ids_per_request);
        NUM(seed);
#undef NUM
}

static json_t *time_json(time_t t) {
        char buf[ISO8601_BUFSZ];
        return t ? json_string(iso8601_format(t, buf)) : json_null();
}

static json_t *str_json(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *nav_json(const char *key, const char *value) {
        return value ? json_pack("{s:s}", key, value) : json_null();
}

/* A typed row under the column names of schema.h. */
static json_t *row_json(const struct rows *rows, size_t i) {
        switch (rows->table) {
        case ROWS_TRACELOGS: {
                const struct tracelog_row *t = &rows->tracelogs[i];
                return json_pack("{s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:o}", "tracelogid", str_json(t->id),
                                 "_regardingobjectid_value", str_json(t->regarding_id),
                                 "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname",
                                 str_json(t->regarding_type), "level", t->level, "text", str_json(t->text),
                                 "errordetails", str_json(t->errordetails), "createdon", time_json(t->created_on),
                                 "modifiedon", time_json(t->modified_on));
        }
        case ROWS_MAILBOXES: {
                const struct mailbox_row *m = &rows->mailboxes[i];
                return json_pack("{s:o,s:o,s:o,s:i,s:i,s:o,s:o,s:o,s:o,s:o}", "mailboxid", str_json(m->id), "name",
                                 str_json(m->name), "emailaddress", str_json(m->email), "incomingemailstatus",
                                 m->incoming_status, "actstatus", m->act_status, "lastsyncerrorcode",
                                 m->has_error_code ? json_integer(m->last_error_code) : json_null(), "lastsyncerror",
                                 str_json(m->last_error), "lastsyncerroroccurredon", time_json(m->last_error_on),
                                 "lastsuccessfulsynccompletedon", time_json(m->last_success_on), "modifiedon",
                                 time_json(m->modified_on));
        }
        case ROWS_WORKFLOWS: {
                const struct workflow_row *w = &rows->workflows[i];
                return json_pack("{s:o,s:o,s:o,s:i,s:i,s:i,s:i,s:o,s:b,s:o,s:b,s:o}", "workflowid", str_json(w->id),
                                 "name", str_json(w->name), "_parentworkflowid_value", str_json(w->parent_id),
                                 "category", w->category, "type", w->type, "statecode", w->statecode, "mode", w->mode,
                                 "primaryentity", str_json(w->primary_entity), "triggeroncreate", w->trigger_on_create,
                                 "triggeronupdateattributelist", str_json(w->trigger_on_update_attributes),
                                 "syncworkflowlogonfailure", w->keeps_failure_logs, "modifiedon",
                                 time_json(w->modified_on));
        }
        case ROWS_STEPS: {
                const struct step_row *s = &rows->steps[i];
                return json_pack("{s:o,s:o,s:i,s:i,s:i,s:i,s:o,s:o,s:o,s:o}", "sdkmessageprocessingstepid",
                                 str_json(s->id), "name", str_json(s->name), "mode", s->mode, "stage", s->stage,
                                 "statecode", s->statecode, "customizationlevel", s->customization_level,
                                 "modifiedon", time_json(s->modified_on), "sdkmessageid", nav_json("name", s->message),
                                 "sdkmessagefilterid", nav_json("primaryobjecttypecode", s->primary_entity),
                                 "plugintypeid", nav_json("typename", s->plugin_type));
        }
        case ROWS_SESSIONS: {
                const struct session_row *s = &rows->sessions[i];
                return json_pack("{s:o,s:o,s:i,s:o,s:o}", "processsessionid", str_json(s->id), "_processid_value",
                                 str_json(s->process_id), "statuscode", s->statuscode, "error", str_json(s->error),
                                 "at", time_json(s->at));
        }
        case ROWS_TRACES: {
                const struct trace_row *t = &rows->traces[i];
                return json_pack("{s:o,s:o,s:o,s:o,s:i,s:o,s:o,s:o}", "plugintracelogid", str_json(t->id),
                                 "pluginstepid", str_json(t->step_id), "messagename", str_json(t->message),
                                 "primaryentity", str_json(t->primary_entity), "mode", t->mode, "typename",
                                 str_json(t->type_name), "exceptiondetails", str_json(t->exception), "createdon",
                                 time_json(t->at));
        }
        default:
                return json_null();
        }
}

static void on_page(struct dv_client *c, struct dv_page *page, void *userdata) {
        struct run *run = userdata;

        for (size_t i = 0; i < page->rows.n; i++)
                json_array_append_new(run->rows, row_json(&page->rows, i));
}

static void print_result(struct run *run, struct dv_client *c, struct dv_result *r) {
        struct plan_query *q = run->query;
        struct driver *d = q->driver;
        json_t *line = json_object();
        char *s;

        json_object_set_new(line, "t", json_real(now() - d->t0));
        json_object_set_new(line, "started", json_real(run->started - d->t0));
        json_object_set_new(line, "env", json_string(q->env->cfg.name));
        json_object_set_new(line, "kind", json_string(dv_query_kind_to_string(q->kind)));
        json_object_set_new(line, "query", json_integer(q->index));
        json_object_set_new(line, "run", json_integer(run->index));
        json_object_set_new(line, "error", json_integer(r->error));
        if (r->error < 0)
                json_object_set_new(line, "errno", json_string(strerrorname_np(-r->error)));
        json_object_set_new(line, "message", r->message ? json_string(r->message) : json_null());
        json_object_set_new(line, "http_status", json_integer(r->http_status));
        json_object_set_new(line, "dv_code", r->dv_code ? json_string(r->dv_code) : json_null());
        json_object_set_new(line, "requests", json_integer(r->requests));
        json_object_set_new(line, "token_requests", json_integer(dv_client_token_requests(c)));
        json_object_set_new(line, "pages", json_integer(r->pages));
        json_object_set_new(line, "n_rows", json_integer(r->error < 0 ? -1 : (json_int_t) (r->rows + r->skipped.n)));
        json_object_set_new(line, "skipped", json_integer((json_int_t) r->skipped.n));
        json_object_set(line, "rows", r->error < 0 ? json_null() : run->rows);
        json_object_set_new(line, "server_date", json_integer(r->server_date));
        json_object_set_new(line, "local_date", json_integer(r->local_date));
        s = json_dumps(line, JSON_COMPACT);
        if (s) {
                puts(s);
                fflush(stdout);
                free(s);
        }
        json_decref(line);
}

static void run_free(struct driver *d, struct run *run) {
        if (run->prev)
                run->prev->next = run->next;
        else
                d->runs = run->next;
        if (run->next)
                run->next->prev = run->prev;
        json_decref(run->rows);
        free(run);
}

static void finish_driver(struct driver *d, const char *key) {
        printf("{\"%s\": true, \"t\": %.6f}\n", key, now() - d->t0);
        fflush(stdout);
        ev_break(d->loop, EVBREAK_ALL);
}

static void on_done(struct dv_client *c, struct dv_result *r, void *userdata) {
        struct run *run = userdata;
        struct driver *d = run->query->driver;

        print_result(run, c, r);
        run->query->finished++;
        run_free(d, run);
        if (--d->outstanding == 0)
                finish_driver(d, "done");
}

static void start_cb(struct ev_loop *loop, struct ev_timer *w, int revents) {
        struct plan_query *q = w->data;
        struct driver *d = q->driver;
        struct run *run = calloc(1, sizeof(*run));
        int r;

        if (!run)
                abort();
        run->query = q;
        run->next = d->runs;
        if (d->runs)
                d->runs->prev = run;
        d->runs = run;
        run->index = q->started++;
        run->started = now();
        run->rows = json_array();
        if (q->started < q->repeat) {
                ev_timer_set(&q->timer, q->every, 0.);
                ev_timer_start(loop, &q->timer);
        }
        r = dv_query(q->env->client, q->kind, &q->args, on_page, on_done, run);
        if (r < 0) {
                struct dv_result fake = { .error = r, .message = (char *) "dv_query() refused the arguments" };
                print_result(run, q->env->client, &fake);
                run_free(d, run);
                if (--d->outstanding == 0)
                        finish_driver(d, "done");
        }
}

static void deadline_cb(struct ev_loop *loop, struct ev_timer *w, int revents) {
        struct driver *d = w->data;

        d->exit_status = 2;
        finish_driver(d, "deadline");
}

static struct env *find_env(struct driver *d, const char *name) {
        for (size_t i = 0; name && i < d->n_envs; i++)
                if (strcmp(d->envs[i].cfg.name, name) == 0)
                        return &d->envs[i];
        return NULL;
}

static int load_plan(struct driver *d, json_t *plan) {
        struct dv_options common = {};
        json_t *envs = json_object_get(plan, "environments"), *queries = json_object_get(plan, "queries"), *v;
        size_t i;

        read_options(json_object_get(plan, "options"), &common);
        d->n_envs = json_array_size(envs);
        d->envs = calloc(d->n_envs ? d->n_envs : 1, sizeof(*d->envs));
        json_array_foreach(envs, i, v) {
                struct env *e = &d->envs[i];
                struct dv_options opt = common;
                int r;

                e->cfg.name = dup_or_null(v, "name");
                e->cfg.url = dup_or_null(v, "url");
                e->cfg.token_url = dup_or_null(v, "token_url");
                e->cfg.tenant = dup_or_null(v, "tenant");
                e->cfg.authority = dup_or_null(v, "authority");
                e->cfg.scope = dup_or_null(v, "scope");
                e->cfg.client_id = dup_or_null(v, "client_id");
                e->cfg.client_secret = dup_or_null(v, "client_secret");
                e->cfg.ca_file = dup_or_null(v, "ca_file");
                read_options(json_object_get(v, "options"), &opt);
                r = dv_client_new(d->loop, d->http, &e->cfg, &opt, &e->client);
                if (r < 0) {
                        fprintf(stderr, "dvclient: environment %zu: %s\n", i, strerror(-r));
                        return r;
                }
        }
        d->n_queries = json_array_size(queries);
        d->queries = calloc(d->n_queries ? d->n_queries : 1, sizeof(*d->queries));
        json_array_foreach(queries, i, v) {
                struct plan_query *q = &d->queries[i];
                json_t *ids = json_object_get(v, "ids"), *id;
                size_t j;
                int k = dv_query_kind_from_string(json_string_value(json_object_get(v, "kind")));

                q->driver = d;
                q->index = (unsigned) i;
                q->env = find_env(d, json_string_value(json_object_get(v, "env")));
                if (!q->env || k < 0) {
                        fprintf(stderr, "dvclient: query %zu: unknown env or kind\n", i);
                        return -EINVAL;
                }
                q->kind = (enum dv_query_kind) k;
                if (parse_time(json_object_get(v, "since"), &q->args.since) < 0 ||
                    parse_time(json_object_get(v, "from"), &q->args.from) < 0 ||
                    parse_time(json_object_get(v, "to"), &q->args.to) < 0) {
                        fprintf(stderr, "dvclient: query %zu: bad time\n", i);
                        return -EINVAL;
                }
                q->ids = calloc(json_array_size(ids) + 1, sizeof(char *));
                json_array_foreach(ids, j, id)
                        q->ids[j] = json_string_value(id);
                q->args.ids = q->ids;
                q->args.n_ids = json_array_size(ids);
                q->args.entityset = json_string_value(json_object_get(v, "entityset"));
                q->repeat = json_integer_value(json_object_get(v, "repeat"));
                if (q->repeat == 0)
                        q->repeat = 1;
                q->every = json_number_value(json_object_get(v, "every"));
                d->outstanding += q->repeat;
                ev_timer_init(&q->timer, start_cb, json_number_value(json_object_get(v, "at")), 0.);
                q->timer.data = q;
        }
        return 0;
}

int main(int argc, char **argv) {
        struct driver d = {};
        json_error_t jerr;
        json_t *plan;
        int verbose = 0, r;
        const char *path = NULL;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-v") == 0)
                        verbose++;
                else
                        path = argv[i];
        }
        if (!path) {
                fprintf(stderr, "usage: dvclient [-v [-v]] PLAN.json|-\n");
                return 64;
        }
        log_set_max_level(verbose >= 2 ? LOG_LEVEL_DEBUG : verbose ? LOG_LEVEL_INFO : LOG_LEVEL_NOTICE);
        plan = strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &jerr) : json_load_file(path, 0, &jerr);
        if (!plan) {
                fprintf(stderr, "dvclient: %s:%d: %s\n", path, jerr.line, jerr.text);
                return 64;
        }
        d.loop = ev_loop_new(EVFLAG_AUTO);
        r = http_new(d.loop, &d.http);
        if (r < 0) {
                fprintf(stderr, "dvclient: http_new: %s\n", strerror(-r));
                return 1;
        }
        r = http_set_limits(d.http, (unsigned) json_integer_value(json_object_get(json_object_get(plan, "http"), "max_transfers")),
                            (long) json_integer_value(json_object_get(json_object_get(plan, "http"), "max_host_connections")));
        if (r < 0 || load_plan(&d, plan) < 0)
                return 64;
        d.t0 = now();
        ev_timer_init(&d.deadline, deadline_cb,
                      json_number_value(json_object_get(plan, "deadline")) > 0
                              ? json_number_value(json_object_get(plan, "deadline"))
                              : 20.0,
                      0.);
        d.deadline.data = &d;
        ev_timer_start(d.loop, &d.deadline);
        for (size_t i = 0; i < d.n_queries; i++)
                ev_timer_start(d.loop, &d.queries[i].timer);
        if (d.outstanding == 0)
                finish_driver(&d, "done");
        else
                ev_run(d.loop, 0);

        /* everything is freed, also on the deadline path, so LeakSanitizer
         * checks the client's cancellation paths */
        for (size_t i = 0; i < d.n_queries; i++) {
                ev_timer_stop(d.loop, &d.queries[i].timer);
                free(d.queries[i].ids);
        }
        for (size_t i = 0; i < d.n_envs; i++) {
                dv_client_free(d.envs[i].client);
                free((char *) d.envs[i].cfg.name);
                free((char *) d.envs[i].cfg.url);
                free((char *) d.envs[i].cfg.token_url);
                free((char *) d.envs[i].cfg.tenant);
                free((char *) d.envs[i].cfg.authority);
                free((char *) d.envs[i].cfg.scope);
                free((char *) d.envs[i].cfg.client_id);
                free((char *) d.envs[i].cfg.client_secret);
                free((char *) d.envs[i].cfg.ca_file);
        }
        while (d.runs)
                run_free(&d, d.runs);
        free(d.queries);
        free(d.envs);
        http_free(d.http);
        ev_timer_stop(d.loop, &d.deadline);
        ev_loop_destroy(d.loop);
        json_decref(plan);
        return d.exit_status;
}
