/* main.c: owns start-up: command line, configuration, then the mode asked for; the only place
 * that talks to the user about start-up. Must not know how any mode works inside. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "build-config.h"
#include "cli.h"
#include "config.h"
#include "daemon_run.h"
#include "log.h"
#include "macro.h"
#include "once.h"
#include "output.h"
#include "probe.h"

/* A monitoring system reads stdout only: say UNKNOWN there too. */
static int fail_once_aware(const struct cli_args *args, int status, const char *what, const char *error) {
        log_error("%s", error);
        if (args->once_requested)
                printf("S3MOND UNKNOWN - %s: %s\n", what, error);
        return status;
}

int main(int argc, char **argv) {
        _cleanup_(cli_args_done) struct cli_args args = {};
        _cleanup_(config_freep) struct s3_config *config = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        log_set_syslog_prefix(output_stderr_is_journal());

        /* The client secret and the bearer tokens live in this process's memory. A
         * core dump (core_pattern, systemd-coredump) would put them in a file on
         * disk; not being dumpable means no core is written, and other processes of
         * the same user can neither ptrace us nor read /proc/<pid>/mem or environ.
         * Set before the configuration (and so the secret) is read. To debug a
         * crash, run s3mond under a debugger (as root) instead. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                log_warning("cannot make the process non-dumpable: %m");

        r = cli_parse(argc, argv, &args, &error);
        if (r < 0) {
                r = fail_once_aware(&args, cli_usage_exit_code(&args), "command line",
                                    error ? error : strerror(-r));
                fputs("Try 's3mond --help'.\n", stderr);
                return r;
        }
        switch (args.mode) {
        case CLI_MODE_HELP:
                cli_help(stdout);
                return EXIT_SUCCESS;
        case CLI_MODE_VERSION:
                printf("s3mond %s\n", S3MOND_VERSION);
                return EXIT_SUCCESS;
        default:
                break;
        }
        log_set_max_level(cli_log_level(&args));

        r = config_load_selected(args.config_path, args.environments, args.n_environments, &config, &error);
        if (r >= 0)
                r = cli_apply(&args, config, &error);
        if (r < 0)
                return fail_once_aware(&args, cli_config_exit_code(&args), "configuration",
                                       error ? error : strerror(-r));
        log_info("configuration loaded from %s: %zu environment(s)", config->path, config->n_envs);

        switch (args.mode) {
        case CLI_MODE_CHECK_CONFIG:
                return config_dump(config, stdout) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        case CLI_MODE_ONCE:
                return (int) once_run(config, args.since_sec, args.output == OUTPUT_JSON, stdout);
        case CLI_MODE_PROBE:
                return probe_run(config, stdout);
        default:
                return daemon_run(&args, TAKE_PTR(config));
        }
}
