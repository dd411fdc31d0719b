/* once.h: `s3mond --once`: one stateless poll of each environment and a
 * report in the monitoring-plugin shape (docs/design.md §4). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* --once gives up on environments that have not answered by then, as
 * UNKNOWN, before a monitoring system's own check timeout (a minute by
 * default in Nagios and Icinga) turns a slow Dataverse into a CRITICAL. */
#define ONCE_DEADLINE_SEC 50

/* Monitoring-plugin states, also the exit codes. */
enum once_status {
        ONCE_OK = 0,
        ONCE_WARNING = 1,       /* only suspected/unexplained findings */
        ONCE_CRITICAL = 2,      /* at least one confirmed finding */
        ONCE_UNKNOWN = 3,       /* could not check an environment (and nothing confirmed) */
};

/* Poll every environment of c once over the last since_sec, write the report
 * to out (JSON lines when json) and return the status. Diagnostics go to
 * stderr through log.h. */
enum once_status once_run(const struct s3_config *c, uint64_t since_sec, bool json, FILE *out);

const char *once_status_to_string(enum once_status s);
