/* daemon_run.h: the long-running service mode (no --once): one loop, the
 * outputs, the monitor and the service glue, reload on SIGHUP, stop on
 * SIGTERM/SIGINT. */
#pragma once

#include "cli.h"
#include "config.h"

/* Takes ownership of config. Returns the exit status. */
int daemon_run(const struct cli_args *args, struct s3_config *config);
