/* probe.h: `s3mond --probe`: does each environment answer, does its token
 * work, can its application user read every table s3mond reads, and is the
 * clock close to the service's? */
#pragma once

#include <stdio.h>

#include "config.h"

/* Allowed difference between our clock and the service's Date header. */
#define PROBE_MAX_SKEW_SEC 60

/* Writes one line per check to out; returns 0 when every check passed, 1
 * otherwise (the exit status). */
int probe_run(const struct s3_config *c, FILE *out);
