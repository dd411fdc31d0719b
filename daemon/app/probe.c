/* probe.c: owns the probe report: reachability, token, read privilege per table and clock skew,
 * one $top=1 query each. Must not know how queries are built or sent (the client's). */
#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "config.h"
#include "connection.h"
#include "http.h"
#include "log.h"
#include "macro.h"
#include "probe.h"
#include "schema.h"

static const char *const probe_sets[] = { DV_PROBE_SETS };

/* What an administrator grants, by entity set: the table's display name. */
static const struct {
        const char *set;
        const char *table;
} table_names[] = {
        { "mailboxes", "Mailbox" },
        { "tracelogs", "Trace (tracelog)" },
        { "workflows", "Process (workflow)" },
        { "processsessions", "Process Session" },
        { "sdkmessageprocessingsteps", "Sdk Message Processing Step" },
        { "sdkmessages", "Sdk Message" },
        { "sdkmessagefilters", "Sdk Message Filter" },
        { "plugintypes", "Plug-in Type" },
        { "plugintracelogs", "Plug-in Trace Log" },
};

struct probe_env {
        struct probe *probe;
        const struct env_config *config;
        struct dv_client *dv;
        size_t next;            /* next table to ask */
        bool failed;
        bool unreachable;       /* token or network: no point asking more */
        long max_skew;          /* largest |server - local| seen */
        bool skew_known;
};

struct probe {
        struct ev_loop *loop;
        FILE *out;
        unsigned running;
        bool failed;
};

static const char *table_name(const char *set) {
        for (size_t i = 0; i < ELEMENTSOF(table_names); i++)
                if (strcmp(table_names[i].set, set) == 0)
                        return table_names[i].table;
        return set;
}

static void probe_next(struct probe_env *pe);

static void probe_env_done(struct probe_env *pe) {
        struct probe *p = pe->probe;

        if (!pe->unreachable) {
                if (!pe->skew_known)
                        fprintf(p->out, "%s: clock: the service sent no Date header\n", pe->config->name);
                else if (pe->max_skew > PROBE_MAX_SKEW_SEC) {
                        fprintf(p->out, "%s: clock: FAIL: %ld s off the service's clock (limit %d s): "
                                        "fix NTP, alert times and the correlation window depend on it\n",
                                pe->config->name, pe->max_skew, PROBE_MAX_SKEW_SEC);
                        pe->failed = true;
                } else
                        fprintf(p->out, "%s: clock: OK (%ld s off the service's clock)\n", pe->config->name,
                                pe->max_skew);
        }
        fprintf(p->out, "%s: %s\n", pe->config->name, pe->failed ? "FAILED" : "OK");
        p->failed |= pe->failed;
        if (--p->running == 0)
                ev_break(p->loop, EVBREAK_ALL);
}

static void on_probe(struct dv_client *dv, struct dv_result *r, void *userdata) {
        struct probe_env *pe = userdata;
        const char *set = probe_sets[pe->next];
        FILE *out = pe->probe->out;

        if (r->server_date && r->local_date) {
                long skew = labs((long) (r->server_date - r->local_date));
                if (!pe->skew_known || skew > pe->max_skew)
                        pe->max_skew = skew;
                pe->skew_known = true;
        }
        if (pe->next == 0) {
                /* The first answer also tells whether the service answers and takes the token. */
                bool answered = r->error >= 0 || r->error == -EACCES || r->error == -EINVAL || r->error == -ENOENT;
                if (!answered) {
                        fprintf(out, "%s: connection and token: FAIL: %s\n", pe->config->name, strempty(r->message));
                        pe->failed = pe->unreachable = true;
                        return probe_env_done(pe);
                }
                fprintf(out, "%s: connection and token: OK\n", pe->config->name);
        }
        if (r->error == -EACCES)
                fprintf(out, "%s: %s: FAIL: the application user lacks Read privilege on the %s table "
                             "(grant it in a security role)\n", pe->config->name, set, table_name(set));
        else if (r->error < 0)
                fprintf(out, "%s: %s: FAIL: %s\n", pe->config->name, set, strempty(r->message));
        else
                fprintf(out, "%s: %s: readable\n", pe->config->name, set);
        pe->failed |= r->error < 0;
        pe->next++;
        probe_next(pe);
}

static void probe_next(struct probe_env *pe) {
        int r;

        if (pe->next >= ELEMENTSOF(probe_sets))
                return probe_env_done(pe);
        r = dv_query_probe(pe->dv, probe_sets[pe->next], on_probe, pe);
        if (r < 0) {
                fprintf(pe->probe->out, "%s: %s: FAIL: %s\n", pe->config->name, probe_sets[pe->next],
                        strerror(-r));
                pe->failed = true;
                pe->next++;
                probe_next(pe);
        }
}

int probe_run(const struct s3_config *c, FILE *out) {
        struct probe p = { .out = out };
        struct http *http = NULL;
        struct probe_env *envs;
        int r;

        envs = calloc(c->n_envs ? c->n_envs : 1, sizeof(*envs));
        p.loop = ev_loop_new(EVFLAG_AUTO);
        if (!envs || !p.loop || http_new(p.loop, &http) < 0) {
                fprintf(out, "s3mond: cannot set up the probe\n");
                r = 1;
                goto out;
        }
        for (size_t i = 0; i < c->n_envs; i++) {
                struct dv_options opt = { .retry_budget_sec = 20, .max_backoff_sec = 5 };
                struct probe_env *pe = &envs[i];
                struct dv_connection conn;

                *pe = (struct probe_env) { .probe = &p, .config = &c->envs[i] };
                config_env_connection(pe->config, &conn);
                r = dv_client_new(p.loop, http, &conn, &opt, &pe->dv);
                if (r < 0) {
                        fprintf(out, "%s: FAIL: %s\n", pe->config->name, strerror(-r));
                        p.failed = true;
                        continue;
                }
                p.running++;
                probe_next(pe);
        }
        if (p.running > 0)
                ev_run(p.loop, 0);
        r = p.failed ? 1 : 0;
out:
        for (size_t i = 0; envs && i < c->n_envs; i++)
                dv_client_free(envs[i].dv);
        free(envs);
        http_free(http);
        if (p.loop)
                ev_loop_destroy(p.loop);
        return r;
}
