/* monitor.h: every environment's schedule (docs/design.md §6-8): a cycle
 * (cycle.h) per environment every interval, jittered, one at a time; outage
 * reporting (one error event when polling starts failing, one when it
 * recovers); reload keeping what stays; the summary --once and STATUS= read. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "cycle.h"
#include "macro.h"
#include "model.h"

struct ev_loop;
struct http;
struct metrics;
struct monitor;

struct monitor_params {
        const struct s3_config *config;  /* borrowed: must outlive the monitor or the next reload */
        struct monitor_sink sink;
        struct metrics *metrics;         /* may be NULL */
        bool once;                       /* one stateless cycle per environment */
        uint64_t once_since_sec;         /* --since */
        /* Called from the loop when every environment has run its one cycle (once),
         * and after each cycle in the daemon (for STATUS=). */
        void (*cycle_done)(struct monitor *m, void *userdata);
        void *userdata;
        uint64_t seed;                   /* jitter; 0: from the clock */
};

struct monitor_summary {
        unsigned environments;
        unsigned failing;                /* environments whose last cycle failed */
        unsigned completed;              /* environments that finished at least one cycle */
        unsigned findings[3];            /* emitted, by enum verdict */
        unsigned resolved;
        unsigned open;                   /* open findings (daemon) */
};

int monitor_new(struct ev_loop *loop, struct http *http, const struct monitor_params *p,
                struct monitor **ret, char **ret_error);
/* Stops first (monitor_stop) if needed. */
void monitor_free(struct monitor *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct monitor *, monitor_free);

/* Arm every environment's first poll (spread over the first interval). */
int monitor_start(struct monitor *m);

/* Switch to a new configuration: environments that stay (same name and
 * connection) keep their state, caches and schedule; others are stopped,
 * saved and replaced. Never fails half-way: on error nothing changed. */
int monitor_reload(struct monitor *m, const struct s3_config *config, char **ret_error);

/* Use these metrics from now on (NULL: none); the old ones may then be freed. */
void monitor_set_metrics(struct monitor *m, struct metrics *metrics);

/* Cancel every request in flight and save every environment's state. The
 * monitor can be freed afterwards; it makes no further callback. */
void monitor_stop(struct monitor *m);

void monitor_get_summary(const struct monitor *m, struct monitor_summary *ret);

/* The environments that failed in --once mode, with their last message, for
 * the report: walk with *cursor = 0 until it returns NULL. */
const char *monitor_next_failure(const struct monitor *m, size_t *cursor, const char **ret_message);
/* The environments that have not finished a cycle yet (--once out of time). */
const char *monitor_next_incomplete(const struct monitor *m, size_t *cursor);
