/* cycle.h: one poll cycle of one environment (docs/design.md §6-8), phase by
 * phase on the libev loop:
 *   poll (tracelogs + mailboxes since the watermarks) -> detect and classify
 *   -> refresh the workflow/step cache when alerts are new or it is due
 *   -> fetch evidence once for all new alerts -> correlate -> emit, note
 *   -> resolve, save state.
 * The only module that knows the order of a cycle; when cycles run and what a
 * failed one means for the environment is the monitor's business. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "model.h"

struct ev_loop;
struct dv_client;
struct cache;
struct env_state;
struct metrics_env;
struct cycle;

/* Where the records of a cycle go. Each returns 0, or -errno when the record
 * could not be delivered (the cycle then retries it next time rather than
 * noting it as reported). */
struct monitor_sink {
        int (*finding)(const struct finding *f, void *userdata);
        int (*resolved)(const struct resolved_event *e, void *userdata);
        int (*error)(const struct error_event *e, void *userdata);
        void *userdata;
};

/* What an environment keeps from one cycle to the next: owned by the monitor,
 * read and updated by its cycles (one at a time). */
struct cycle_env {
        const struct s3_config *config;         /* borrowed; replaced on reload */
        const struct env_config *env;           /* points into config */
        bool once;                              /* --once: stateless, the cache read with the alerts */
        uint64_t once_since_sec;                /* --since */
        struct dv_client *dv;
        struct cache *cache;
        struct env_state *state;                /* NULL in --once */
        struct metrics_env *metrics;            /* NULL when metrics are off */
        const struct monitor_sink *sink;
        time_t config_refreshed_at;             /* 0: never */
        unsigned refreshes;                     /* delta refreshes since the last full read */
        bool save_failing;                      /* the last state_save() failed */
};

/* How a cycle went. */
struct cycle_result {
        int error;              /* 0, or the first failure: -errno */
        char *query;            /* on error: what failed ("tracelogs", "output", ...) */
        char *message;          /* on error: why, no secret */
        time_t now;             /* the cycle's clock: detected_at of its findings */
        unsigned findings[3];   /* emitted, by enum verdict */
        unsigned resolved;      /* resolved events emitted */
};

/* Called from the loop once the cycle is over (it is freed already); the
 * result is freed when the callback returns. */
typedef void (*cycle_done_fn)(struct cycle_result *r, void *userdata);

/* Start a cycle of env at wall clock now: its first queries go out at once.
 * *ret is set first: when no query can start, the cycle fails and done is
 * called before cycle_start() returns (it may clear *ret). 0, or -ENOMEM
 * (then done is never called). */
int cycle_start(struct ev_loop *loop, struct cycle_env *env, time_t now, cycle_done_fn done, void *userdata,
                struct cycle **ret);
/* Abandon a cycle, its queries cancelled first (dv_client_free()): what it
 * emitted is noted, the rest comes again next time. done is not called. */
void cycle_free(struct cycle *c);
