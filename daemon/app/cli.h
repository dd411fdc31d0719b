/* cli.h: the command line of docs/design.md §4 as one value. cli.c parses
 * and validates the options; main decides what to run with them. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "output.h"

struct s3_config;

enum cli_mode {
        CLI_MODE_DAEMON,        /* no mode option: run in the foreground */
        CLI_MODE_ONCE,          /* --once */
        CLI_MODE_CHECK_CONFIG,  /* --check-config */
        CLI_MODE_PROBE,         /* --probe */
        CLI_MODE_HELP,          /* -h: wins over everything else */
        CLI_MODE_VERSION,       /* -V */
};

struct cli_args {
        enum cli_mode mode;
        const char *config_path;        /* -c, else S3MOND_SYSCONFDIR/s3mond/s3mond.conf */
        char **environments;            /* -e NAME, in order; the array is owned, the names
                                         * point into argv */
        size_t n_environments;
        uint64_t since_sec;             /* --since (with --once only); default 24h */
        enum output_kind output;        /* -o / --json; OUTPUT_AUTO: not given, the config decides */
        unsigned verbosity;             /* how many -v */
        bool once_requested;            /* --once was seen, even if parsing failed */
};

#define CLI_DEFAULT_SINCE_SEC (UINT64_C(24) * 3600)
#define CLI_EXIT_USAGE 2        /* a bad command line */
#define CLI_EXIT_UNKNOWN 3      /* monitoring-plugin UNKNOWN: --once could not check */

/* Parse argv into *ret (which is initialised here and must be released with
 * cli_args_done(), also after a failure). -EINVAL with *ret_error saying what
 * is wrong (caller frees). */
int cli_parse(int argc, char **argv, struct cli_args *ret, char **ret_error);
void cli_args_done(struct cli_args *a);

/* A usage error exits 2, or 3 (UNKNOWN) when --once was asked for, so a
 * monitoring system never reads CRITICAL from a typo. */
int cli_usage_exit_code(const struct cli_args *a);
/* A configuration error exits 78 (EX_CONFIG), or 3 with --once. */
int cli_config_exit_code(const struct cli_args *a);

/* -v: info; -vv: debug; default notice. */
enum log_level cli_log_level(const struct cli_args *a);

/* Apply what the command line says about the configuration: -e keeps the
 * named environments (-ENOENT naming an unknown one), -o/--json replaces
 * the output. Call it again after each reload. */
int cli_apply(const struct cli_args *a, struct s3_config *c, char **ret_error);

/* "daemon mode", "--once", ... for messages. */
const char *cli_mode_to_string(enum cli_mode m);

/* The --help text, at most 80 columns wide. */
void cli_help(FILE *f);
