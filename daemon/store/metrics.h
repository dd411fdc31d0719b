/* metrics.h: optional Prometheus metrics in a textfile for node-exporter's textfile
 * collector (`metrics_file`): counters and gauges per environment and for the process,
 * in the text exposition format 0.0.4, replaced atomically by metrics_write().
 * Only the monitor (and main, for up/stop) calls it. Every function accepts NULL for
 * the metrics or the environment handle and then does nothing: metrics are off. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "macro.h"
#include "model.h"

struct metrics;
struct metrics_env;

/* PATH is the file to write (e.g. /var/lib/prometheus/node-exporter/s3mond.prom);
 * nothing is written before metrics_write(). The start time is now. */
int metrics_new(const char *path, struct metrics **ret);
void metrics_free(struct metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct metrics *, metrics_free);

/* The handle of environment ENV, added (all zero) on first use; it lives until
 * metrics_env_drop() or metrics_free(). NULL when M is NULL or out of memory. */
struct metrics_env *metrics_env(struct metrics *m, const char *env);
/* Forget ENV (gone after a reload): its series leave the file. */
void metrics_env_drop(struct metrics *m, const char *env);

void metrics_inc_polls(struct metrics_env *e);          /* s3mond_polls_total */
void metrics_inc_poll_errors(struct metrics_env *e);    /* s3mond_poll_errors_total */
/* One HTTP request finished (any outcome) after SECONDS: s3mond_requests_total and
 * the s3mond_request_duration_seconds histogram. */
void metrics_observe_latency(struct metrics_env *e, double seconds);
void metrics_inc_findings(struct metrics_env *e, enum verdict v); /* s3mond_findings_total{verdict} */
void metrics_inc_resolved(struct metrics_env *e);       /* s3mond_resolved_total */
void metrics_inc_state_save_errors(struct metrics_env *e); /* s3mond_state_save_errors_total */
void metrics_set_last_success(struct metrics_env *e, time_t at); /* s3mond_last_success_timestamp_seconds */
void metrics_set_open_findings(struct metrics_env *e, size_t n); /* s3mond_open_findings */

/* s3mond_up: 1 from metrics_new(); set 0 and write once more on a clean stop. */
void metrics_set_up(struct metrics *m, bool up);

/* Write the file: PATH.tmp (O_EXCL, mode 0644 whatever the umask, so the collector
 * can read it), then rename over PATH. NOW goes into
 * s3mond_metrics_write_timestamp_seconds. 0, or -errno with *ret_error (may be NULL). */
int metrics_write(struct metrics *m, time_t now, char **ret_error);
