/* Unit tests for cli.c: every option, repeated -e, durations, conflicts,
 * unknown options and their exit codes, applying -e/-o to a config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "cli.h"
#include "config.h"
#include "macro.h"

#define PARSE(args, error, ...)                                                             \
        ({                                                                                  \
                char *_argv[] = { "s3mond", __VA_ARGS__, NULL };                            \
                cli_parse((int) ELEMENTSOF(_argv) - 1, _argv, (args), (error));             \
        })

/* Expect a usage error containing TEXT. */
#define PARSE_FAILS(text, ...)                                                              \
        do {                                                                                \
                _cleanup_(cli_args_done) struct cli_args _a = {};                           \
                _cleanup_free_ char *_e = NULL;                                             \
                int _r = PARSE(&_a, &_e, __VA_ARGS__);                                      \
                if (_r != -EINVAL || !_e || !strstr(_e, (text)))                            \
                        fail_msg("expected \"%s\", got %d \"%s\"", (text), _r, strempty(_e)); \
        } while (0)

static void test_defaults(void **state) {
        _cleanup_(cli_args_done) struct cli_args a = {};
        char *error = NULL;
        char *argv[] = { "s3mond", NULL };
        (void) state;

        assert_int_equal(cli_parse(1, argv, &a, &error), 0);
        assert_null(error);
        assert_int_equal(a.mode, CLI_MODE_DAEMON);
        assert_string_equal(a.config_path, S3MOND_SYSCONFDIR "/s3mond/s3mond.conf");
        assert_int_equal(a.n_environments, 0);
        assert_int_equal(a.since_sec, 24 * 3600);
        assert_int_equal(a.output, OUTPUT_AUTO);
        assert_int_equal(a.verbosity, 0);
        assert_false(a.once_requested);
        assert_int_equal(cli_log_level(&a), LOG_LEVEL_NOTICE);
        assert_int_equal(cli_usage_exit_code(&a), 2);
        assert_int_equal(cli_config_exit_code(&a), 78);
}

static void test_every_option_long(void **state) {
        _cleanup_(cli_args_done) struct cli_args a = {};
        _cleanup_free_ char *error = NULL;
        (void) state;

        assert_int_equal(PARSE(&a, &error, "--config", "/tmp/x.conf", "--environment", "prod",
                               "--environment=test", "--once", "--since", "90m", "--output", "syslog",
                               "--verbose"), 0);
        assert_int_equal(a.mode, CLI_MODE_ONCE);
        assert_string_equal(a.config_path, "/tmp/x.conf");
        assert_int_equal(a.n_environments, 2);
        assert_string_equal(a.environments[0], "prod");
        assert_string_equal(a.environments[1], "test");
        assert_int_equal(a.since_sec, 5400);
        assert_int_equal(a.output, OUTPUT_SYSLOG);
        assert_int_equal(a.verbosity, 1);
        assert_true(a.once_requested);
        assert_int_equal(cli_log_level(&a), LOG_LEVEL_INFO);
        assert_int_equal(cli_usage_exit_code(&a), 3);
        assert_int_equal(cli_config_exit_code(&a), 3);
}

static void test_every_option_short(void **state) {
        _cleanup_(cli_args_done) struct cli_args a = {};
        _cleanup_free_ char *error = NULL;
        (void) state;

        assert_int_equal(PARSE(&a, &error, "-c", "x.conf", "-eprod", "-e", "b", "-e", "c", "-o", "stderr",
                               "-vvv", "--check-config"), 0);
        assert_int_equal(a.mode, CLI_MODE_CHECK_CONFIG);
        assert_string_equal(a.config_path, "x.conf");
        assert_int_equal(a.n_environments, 3);
        assert_string_equal(a.environments[0], "prod");
        assert_string_equal(a.environments[2], "c");
        assert_int_equal(a.output, OUTPUT_STDERR);
        assert_int_equal(a.verbosity, 3);
        assert_int_equal(cli_log_level(&a), LOG_LEVEL_DEBUG);
        assert_int_equal(cli_usage_exit_code(&a), 2);
}

static void test_modes(void **state) {
        static const struct {
                const char *option;
                enum cli_mode mode;
        } cases[] = {
                { "--once", CLI_MODE_ONCE },
                { "--check-config", CLI_MODE_CHECK_CONFIG },
                { "--probe", CLI_MODE_PROBE },
                { "-h", CLI_MODE_HELP },
                { "--help", CLI_MODE_HELP },
                { "-V", CLI_MODE_VERSION },
                { "--version", CLI_MODE_VERSION },
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, (char *) cases[i].option), 0);
                assert_int_equal(a.mode, cases[i].mode);
        }
        {
                /* Help wins over a mode, and a mode given twice is fine. */
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "--once", "--once", "-h"), 0);
                assert_int_equal(a.mode, CLI_MODE_HELP);
        }
        PARSE_FAILS("--once and --probe cannot be combined", "--once", "--probe");
        PARSE_FAILS("--check-config and --once cannot be combined", "--check-config", "--once");
        PARSE_FAILS("--probe and --check-config cannot be combined", "--probe", "--check-config");
}

static void test_outputs(void **state) {
        static const struct {
                const char *name;
                enum output_kind kind;
        } cases[] = {
                { "journal", OUTPUT_JOURNAL },
                { "syslog", OUTPUT_SYSLOG },
                { "stderr", OUTPUT_STDERR },
                { "json", OUTPUT_JSON },
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "-o", (char *) cases[i].name), 0);
                assert_int_equal(a.output, cases[i].kind);
        }
        {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "--json"), 0);
                assert_int_equal(a.output, OUTPUT_JSON);
        }
        {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "-o", "json", "--json"), 0);
                assert_int_equal(a.output, OUTPUT_JSON);
        }
        PARSE_FAILS("-o: unknown output 'file'", "-o", "file");
        PARSE_FAILS("-o: unknown output 'auto'", "--output=auto");
        PARSE_FAILS("-o: unknown output 'Journal'", "-o", "Journal");
        PARSE_FAILS("--json conflicts with -o syslog", "--json", "-o", "syslog");
        PARSE_FAILS("--json conflicts with -o stderr", "-o", "stderr", "--json");
}

static void test_since(void **state) {
        (void) state;
        {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "--since=7d", "--once"), 0);
                assert_int_equal(a.since_sec, 7 * 86400);
        }
        {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "--once", "--since", "3600"), 0);
                assert_int_equal(a.since_sec, 3600);
        }
        PARSE_FAILS("--since works only with --once", "--since", "1h");
        PARSE_FAILS("--since works only with --once", "--since", "1h", "--probe");
        PARSE_FAILS("--since: 'yesterday' is not a duration", "--once", "--since", "yesterday");
        PARSE_FAILS("--since: '-1h' is not a duration", "--once", "--since", "-1h");
        PARSE_FAILS("--since: '1.5h' is not a duration", "--once", "--since", "1.5h");
        PARSE_FAILS("--since: 0 is out of range", "--once", "--since", "0");
        PARSE_FAILS("--since: 366d is out of range", "--once", "--since", "366d");
        PARSE_FAILS("--since: 99999999999999999999d is out of range", "--once", "--since",
                    "99999999999999999999d");
        PARSE_FAILS("option '--since' needs an argument", "--once", "--since");
}

static void test_bad_command_lines(void **state) {
        (void) state;
        PARSE_FAILS("unknown option '--bogus'", "--bogus");
        PARSE_FAILS("unknown option '-x'", "-x");
        PARSE_FAILS("unknown option '-x'", "-vx");
        PARSE_FAILS("option '-c' needs an argument", "-c");
        PARSE_FAILS("option '--config' needs an argument", "--config");
        PARSE_FAILS("option '-e' needs an argument", "-e");
        PARSE_FAILS("option '-o' needs an argument", "-o");
        PARSE_FAILS("unexpected argument 'extra'", "extra");
        PARSE_FAILS("unexpected argument 'x.conf'", "-c", "a.conf", "x.conf");
        PARSE_FAILS("-e: 'prod/eu' is not an environment name", "-e", "prod/eu");
        PARSE_FAILS("-e: '..' is not an environment name", "-e", "..");
        PARSE_FAILS("-e: '' is not an environment name", "-e", "");
        /* The first error is the one reported. */
        PARSE_FAILS("unknown option '--first'", "--first", "--second");

        /* --once anywhere makes a usage error UNKNOWN (3), never CRITICAL (2). */
        {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "--bogus", "--once"), -EINVAL);
                assert_int_equal(cli_usage_exit_code(&a), 3);
        }
        {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "--bogus"), -EINVAL);
                assert_int_equal(cli_usage_exit_code(&a), 2);
        }
}

static struct s3_config *config_with(const char *const *names, size_t n) {
        struct s3_config *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        c->path = strdup("test.conf");
        c->output = OUTPUT_SYSLOG;
        c->envs = calloc(n, sizeof(*c->envs));
        assert_non_null(c->envs);
        for (size_t i = 0; i < n; i++)
                c->envs[i].name = strdup(names[i]);
        c->n_envs = n;
        return c;
}

static void test_apply(void **state) {
        static const char *const names[] = { "prod", "test", "dev" };
        (void) state;
        {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_(config_freep) struct s3_config *c = config_with(names, 3);
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "-e", "dev", "-e", "prod", "--json"), 0);
                assert_int_equal(cli_apply(&a, c, &error), 0);
                assert_int_equal(c->n_envs, 2);
                assert_string_equal(c->envs[0].name, "prod");
                assert_string_equal(c->envs[1].name, "dev");
                assert_int_equal(c->output, OUTPUT_JSON);
        }
        {
                /* Without -e and -o the configuration stays as it is. */
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_(config_freep) struct s3_config *c = config_with(names, 3);
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "-v"), 0);
                assert_int_equal(cli_apply(&a, c, &error), 0);
                assert_int_equal(c->n_envs, 3);
                assert_int_equal(c->output, OUTPUT_SYSLOG);
        }
        {
                _cleanup_(cli_args_done) struct cli_args a = {};
                _cleanup_(config_freep) struct s3_config *c = config_with(names, 3);
                _cleanup_free_ char *error = NULL;

                assert_int_equal(PARSE(&a, &error, "-e", "staging"), 0);
                assert_int_equal(cli_apply(&a, c, &error), -ENOENT);
                assert_non_null(strstr(error, "staging"));
                assert_int_equal(c->n_envs, 3);
        }
}

static void test_help_fits_80_columns(void **state) {
        char *text = NULL, *line, *save = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        unsigned lines = 0;
        (void) state;

        assert_non_null(f);
        cli_help(f);
        assert_int_equal(fclose(f), 0);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lines++)
                if (strlen(line) > 80)
                        fail_msg("help line longer than 80 columns: %s", line);
        assert_true(lines > 10);
        free(text);
}

static void test_mode_names(void **state) {
        (void) state;
        assert_string_equal(cli_mode_to_string(CLI_MODE_ONCE), "--once");
        assert_string_equal(cli_mode_to_string(CLI_MODE_PROBE), "--probe");
        assert_string_equal(cli_mode_to_string(CLI_MODE_DAEMON), "daemon mode");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_every_option_long),
                cmocka_unit_test(test_every_option_short),
                cmocka_unit_test(test_modes),
                cmocka_unit_test(test_outputs),
                cmocka_unit_test(test_since),
                cmocka_unit_test(test_bad_command_lines),
                cmocka_unit_test(test_apply),
                cmocka_unit_test(test_help_fits_80_columns),
                cmocka_unit_test(test_mode_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
