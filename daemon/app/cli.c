/* cli.c: owns the command line (docs/design.md §4): options parsed with getopt_long and checked.
 * Must not know what the modes do. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "cli.h"
#include "config.h"
#include "macro.h"
#include "timeutil.h"

#define DEFAULT_CONFIG S3MOND_SYSCONFDIR "/s3mond/s3mond.conf"
#define SINCE_MAX_SEC (UINT64_C(365) * 86400)

enum {
        ARG_ONCE = 0x100,
        ARG_SINCE,
        ARG_JSON,
        ARG_CHECK_CONFIG,
        ARG_PROBE,
};

/* Every option; man/s3mond.8.scd documents each (a test checks). */
static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "environment", required_argument, NULL, 'e' },
        { "once", no_argument, NULL, ARG_ONCE },
        { "since", required_argument, NULL, ARG_SINCE },
        { "json", no_argument, NULL, ARG_JSON },
        { "output", required_argument, NULL, 'o' },
        { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
        { "probe", no_argument, NULL, ARG_PROBE },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        {}
};

void cli_help(FILE *f) {
        fputs("Usage: s3mond [OPTION]...\n"
              "Watch Dynamics 365 / Dataverse mailbox alerts for\n"
              "UnknownIncomingEmailIntegrationError (-2147220956) and name the synchronous\n"
              "workflow or plug-in behind each one, with evidence, in journald or syslog.\n"
              "\n"
              "  -c, --config FILE       configuration file\n"
              "                          (default " DEFAULT_CONFIG ")\n"
              "  -e, --environment NAME  only this [environment NAME]; repeatable\n"
              "      --once              poll once, print a monitoring-plugin report, exit\n"
              "                          0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN\n"
              "      --since DURATION    with --once: how far back to look (default 24h)\n"
              "  -o, --output KIND       journal, syslog, stderr or json\n"
              "                          (default: the configuration's output)\n"
              "      --json              the same as -o json\n"
              "      --check-config      validate the configuration, print it with the\n"
              "                          secrets masked, exit 0 (or 78 when it is wrong)\n"
              "      --probe             check that every environment answers, the token\n"
              "                          works and every table s3mond reads is readable\n"
              "  -v, --verbose           more diagnostics: -v info, -vv debug\n"
              "  -h, --help              show this help and exit\n"
              "  -V, --version           show the version and exit\n"
              "\n"
              "Without --once, --check-config or --probe, s3mond runs as a daemon in the\n"
              "foreground. Durations take s, m, h or d (90s, 15m, 1h30m, 2d).\n"
              "Exit status: 2 for a bad command line, 78 for a bad configuration (3 for\n"
              "both with --once). See s3mond(8) and s3mond.conf(5).\n",
              f);
}

static int usage_error(char **ret_error, const char *fmt, ...) _printf_(2, 3);
static int usage_error(char **ret_error, const char *fmt, ...) {
        va_list ap;
        int r;

        if (*ret_error) /* the first error is the one to report */
                return -EINVAL;
        va_start(ap, fmt);
        r = vasprintf(ret_error, fmt, ap);
        va_end(ap);
        if (r < 0) {
                *ret_error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

static int add_environment(struct cli_args *a, char *name) {
        char **envs = reallocarray(a->environments, a->n_environments + 1, sizeof(*envs));

        if (!envs)
                return -ENOMEM;
        a->environments = envs;
        envs[a->n_environments++] = name;
        return 0;
}

/* Sets *mode unless another mode was given before. */
static int set_mode(enum cli_mode *mode, enum cli_mode m, char **ret_error) {
        if (*mode != CLI_MODE_DAEMON && *mode != m)
                return usage_error(ret_error, "%s and %s cannot be combined", cli_mode_to_string(*mode),
                                   cli_mode_to_string(m));
        *mode = m;
        return 0;
}

/* The option getopt_long stopped at, for messages: a long one as written,
 * a short one by its letter (it may sit in a cluster such as -vx). */
static const char *bad_option(char **argv, char *buf, size_t size) {
        const char *arg = argv[optind - 1];

        if (strncmp(arg, "--", 2) == 0 || !(optopt > 0 && optopt < 0x80 && isalnum(optopt)))
                return arg;
        snprintf(buf, size, "-%c", optopt);
        return buf;
}

/* What the options said so far, before they are checked together. */
struct seen {
        enum cli_mode mode;
        bool help, version, json, since_given;
        enum output_kind output;
        const char *output_arg;
};

static int parse_since(const char *arg, struct cli_args *ret, char **ret_error) {
        uint64_t sec;
        int r = duration_parse(arg, &sec);

        if (r == -EINVAL)
                return usage_error(ret_error, "--since: '%s' is not a duration: use a whole "
                                   "number with s, m, h or d, e.g. 90m, 24h, 7d", arg);
        if (r < 0 || sec == 0 || sec > SINCE_MAX_SEC)
                return usage_error(ret_error, "--since: %s is out of range: use 1s to 365d", arg);
        ret->since_sec = sec;
        return 0;
}

static int parse_output(const char *arg, struct seen *seen, char **ret_error) {
        int k = output_kind_from_string(arg);

        if (k < 0 || k == OUTPUT_AUTO)
                return usage_error(ret_error, "-o: unknown output '%s': use journal, syslog, stderr or json", arg);
        seen->output = (enum output_kind) k;
        seen->output_arg = arg;
        return 0;
}

static int parse_environment(char *arg, struct cli_args *ret, char **ret_error) {
        if (!environment_name_is_valid(arg))
                return usage_error(ret_error, "-e: '%s' is not an environment name: use 1 to "
                                   "64 of A-Z a-z 0-9 . _ -", arg);
        return add_environment(ret, arg);
}

/* One option getopt_long returned: 0, or -EINVAL with *ret_error, or -ENOMEM. */
static int parse_option(int c, char **argv, struct cli_args *ret, struct seen *seen, char **ret_error) {
        char buf[8];

        switch (c) {
        case 'c':
                ret->config_path = optarg;
                return 0;
        case 'e':
                return parse_environment(optarg, ret, ret_error);
        case ARG_ONCE:
                ret->once_requested = true;
                return set_mode(&seen->mode, CLI_MODE_ONCE, ret_error);
        case ARG_SINCE:
                seen->since_given = true;
                return parse_since(optarg, ret, ret_error);
        case ARG_JSON:
                seen->json = true;
                return 0;
        case 'o':
                return parse_output(optarg, seen, ret_error);
        case ARG_CHECK_CONFIG:
                return set_mode(&seen->mode, CLI_MODE_CHECK_CONFIG, ret_error);
        case ARG_PROBE:
                return set_mode(&seen->mode, CLI_MODE_PROBE, ret_error);
        case 'v':
                ret->verbosity++;
                return 0;
        case 'h':
                seen->help = true;
                return 0;
        case 'V':
                seen->version = true;
                return 0;
        case ':':
                return usage_error(ret_error, "option '%s' needs an argument", bad_option(argv, buf, sizeof(buf)));
        default:
                return usage_error(ret_error, "unknown option '%s'", bad_option(argv, buf, sizeof(buf)));
        }
}

/* The options that only make sense together, once all are read. */
static int check_together(struct cli_args *ret, struct seen *seen, char **ret_error) {
        if (seen->json && seen->output != OUTPUT_AUTO && seen->output != OUTPUT_JSON)
                return usage_error(ret_error, "--json conflicts with -o %s", seen->output_arg);
        if (seen->json)
                seen->output = OUTPUT_JSON;
        if (seen->since_given && seen->mode != CLI_MODE_ONCE && !seen->help && !seen->version)
                return usage_error(ret_error, "--since works only with --once");
        ret->output = seen->output;
        ret->mode = seen->help ? CLI_MODE_HELP : seen->version ? CLI_MODE_VERSION : seen->mode;
        return 0;
}

int cli_parse(int argc, char **argv, struct cli_args *ret, char **ret_error) {
        struct seen seen = { .mode = CLI_MODE_DAEMON, .output = OUTPUT_AUTO };
        int c, r = 0;

        assert(ret);
        assert(ret_error);
        *ret = (struct cli_args) {
                .mode = CLI_MODE_DAEMON,
                .config_path = DEFAULT_CONFIG,
                .since_sec = CLI_DEFAULT_SINCE_SEC,
                .output = OUTPUT_AUTO,
        };
        *ret_error = NULL;

        optind = 0; /* glibc: start over (the tests parse many command lines) */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":c:e:o:vhV", options, NULL)) >= 0) {
                int q = parse_option(c, argv, ret, &seen, ret_error);

                if (q == -ENOMEM)
                        return q;
                if (q < 0 && r == 0)
                        r = q; /* the first error is the one said; the rest is still read */
        }
        if (optind < argc && r == 0)
                r = usage_error(ret_error, "unexpected argument '%s': s3mond takes options only", argv[optind]);
        if (r < 0)
                return r;
        return check_together(ret, &seen, ret_error);
}

void cli_args_done(struct cli_args *a) {
        a->environments = mfree(a->environments);
        a->n_environments = 0;
}

int cli_usage_exit_code(const struct cli_args *a) {
        return a->once_requested ? CLI_EXIT_UNKNOWN : CLI_EXIT_USAGE;
}

int cli_config_exit_code(const struct cli_args *a) {
        return a->once_requested ? CLI_EXIT_UNKNOWN : S3_EX_CONFIG;
}

enum log_level cli_log_level(const struct cli_args *a) {
        unsigned level = LOG_LEVEL_NOTICE + a->verbosity;

        return level > LOG_LEVEL_DEBUG ? LOG_LEVEL_DEBUG : (enum log_level) level;
}

int cli_apply(const struct cli_args *a, struct s3_config *c, char **ret_error) {
        int r;

        r = config_select_environments(c, a->environments, a->n_environments, ret_error);
        if (r < 0)
                return r;
        if (a->output != OUTPUT_AUTO)
                c->output = a->output;
        return 0;
}

const char *cli_mode_to_string(enum cli_mode m) {
        switch (m) {
        case CLI_MODE_DAEMON:
                return "daemon mode";
        case CLI_MODE_ONCE:
                return "--once";
        case CLI_MODE_CHECK_CONFIG:
                return "--check-config";
        case CLI_MODE_PROBE:
                return "--probe";
        case CLI_MODE_HELP:
                return "--help";
        case CLI_MODE_VERSION:
                return "--version";
        }
        return "?";
}
