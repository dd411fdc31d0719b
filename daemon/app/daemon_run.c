/* daemon_run.c: wires the daemon (loop, http, outputs, monitor, service, metrics) and owns the
 * configuration's life across reloads. Must not know Dataverse or the rules, only who calls whom. */
#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_run.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h"
#include "output.h"
#include "service.h"

struct daemon {
        struct ev_loop *loop;
        const struct cli_args *args;
        struct s3_config *config;
        struct http *http;
        struct output *output;
        struct monitor *monitor;
        struct service *service;
        struct metrics *metrics;
        int exit_status;
};

static int sink_finding(const struct finding *f, void *userdata) {
        struct daemon *d = userdata;
        return output_emit_finding(d->output, f);
}

static int sink_resolved(const struct resolved_event *e, void *userdata) {
        struct daemon *d = userdata;
        return output_emit_resolved(d->output, e);
}

static int sink_error(const struct error_event *e, void *userdata) {
        struct daemon *d = userdata;
        return output_emit_error(d->output, e);
}

static void cycle_done(struct monitor *m, void *userdata) {
        struct monitor_summary s;

        monitor_get_summary(m, &s);
        service_notify_status("%u environment%s: %u ok, %u failing; findings: %u confirmed, %u suspected, "
                              "%u unexplained; %u open, %u resolved",
                              s.environments, s.environments == 1 ? "" : "s", s.environments - s.failing,
                              s.failing, s.findings[VERDICT_CONFIRMED], s.findings[VERDICT_SUSPECTED],
                              s.findings[VERDICT_UNEXPLAINED], s.open, s.resolved);
}

static int open_output(const struct s3_config *c, struct output **ret) {
        int r = output_new(c->output, c->syslog_facility, NULL, ret);
        if (r < 0)
                log_error("cannot open the %s output: %s", output_kind_to_string(c->output), strerror(-r));
        return r;
}

static int open_metrics(const struct s3_config *c, struct metrics **ret) {
        int r;

        *ret = NULL;
        if (!c->metrics_file)
                return 0;
        r = metrics_new(c->metrics_file, ret);
        if (r < 0)
                log_error("cannot set up metrics in %s: %s", c->metrics_file, strerror(-r));
        return r;
}

static bool strings_differ(const char *a, const char *b) {
        return strcmp(strempty(a), strempty(b)) != 0;
}

static void on_stop(struct service *s, int signo, void *userdata) {
        struct daemon *d = userdata;

        log_notice("%s: stopping", strsignal(signo));
        service_notify_stopping();
        monitor_stop(d->monitor);
        if (d->metrics) {
                metrics_set_up(d->metrics, false);
                metrics_write(d->metrics, (time_t) ev_time(), NULL);
        }
        ev_break(d->loop, EVBREAK_ALL);
}

static void on_reload(struct service *s, void *userdata) {
        struct daemon *d = userdata;
        struct s3_config *config = NULL;
        struct output *output = NULL;
        struct metrics *metrics = NULL;
        bool new_metrics = false;
        _cleanup_free_ char *error = NULL;
        int r;

        service_notify_reloading();
        r = config_load_selected(d->args->config_path, d->args->environments, d->args->n_environments,
                                 &config, &error);
        if (r >= 0)
                r = cli_apply(d->args, config, &error);
        if (r < 0) {
                log_error("reload: keeping the running configuration: %s", error ? error : strerror(-r));
                goto out;
        }
        if (config->output != d->config->output || config->syslog_facility != d->config->syslog_facility) {
                r = open_output(config, &output);
                if (r < 0)
                        goto out;
        }
        if (strings_differ(config->metrics_file, d->config->metrics_file)) {
                r = open_metrics(config, &metrics);
                if (r < 0)
                        goto out;
                new_metrics = true;
        }
        r = monitor_reload(d->monitor, config, &error);
        if (r < 0) {
                log_error("reload: keeping the running configuration: %s", error ? error : strerror(-r));
                goto out;
        }
        if (new_metrics) {
                monitor_set_metrics(d->monitor, metrics);
                metrics_free(d->metrics);
                d->metrics = TAKE_PTR(metrics);
        }
        if (output) {
                output_free(d->output);
                d->output = TAKE_PTR(output);
        }
        config_free(d->config);
        d->config = TAKE_PTR(config);
        log_notice("configuration reloaded from %s: %zu environment(s)", d->config->path, d->config->n_envs);
out:
        metrics_free(metrics);
        output_free(output);
        config_free(config);
        service_notify_reloaded();
}

int daemon_run(const struct cli_args *args, struct s3_config *config) {
        struct daemon d = { .args = args, .config = config, .exit_status = EXIT_FAILURE };
        struct service_callbacks cb = { .stop = on_stop, .reload = on_reload };
        struct monitor_params p = {
                .sink = { sink_finding, sink_resolved, sink_error, &d },
                .cycle_done = cycle_done,
                .userdata = &d,
        };
        _cleanup_free_ char *error = NULL;
        int r;

        d.loop = ev_default_loop(EVFLAG_AUTO);
        if (!d.loop) {
                log_error("cannot create the event loop");
                goto out;
        }
        r = open_output(config, &d.output);
        if (r < 0)
                goto out;
        r = open_metrics(config, &d.metrics);
        if (r < 0)
                goto out;
        r = http_new(d.loop, &d.http);
        if (r < 0) {
                log_error("cannot set up HTTP: %s", strerror(-r));
                goto out;
        }
        p.config = d.config;
        p.metrics = d.metrics;
        r = monitor_new(d.loop, d.http, &p, &d.monitor, &error);
        if (r < 0) {
                log_error("%s", error ? error : strerror(-r));
                goto out;
        }
        r = service_new(d.loop, &cb, &d, &d.service);
        if (r < 0) {
                log_error("cannot set up signal handling: %s", strerror(-r));
                goto out;
        }
        monitor_start(d.monitor);
        log_notice("watching %zu environment(s), every %llus", d.config->n_envs,
                   (unsigned long long) d.config->interval_sec);
        service_notify_ready();
        ev_run(d.loop, 0);
        d.exit_status = EXIT_SUCCESS;
out:
        monitor_free(d.monitor);
        service_free(d.service);
        http_free(d.http);
        output_free(d.output);
        metrics_free(d.metrics);
        config_free(d.config);
        if (d.loop)
                ev_loop_destroy(d.loop);
        return d.exit_status;
}
