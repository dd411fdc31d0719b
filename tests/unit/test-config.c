/* Unit tests for config.c: defaults, every key, every bad file under
 * tests/unit/configs (exact "PATH:LINE:" and the key named), secret files
 * (permissions, $CREDENTIALS_DIRECTORY, masking), -e selection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "macro.h"
#include "model.h"

#define SECRET "s3cr3t-Value~42"

static const char minimal_env[] =
        "[environment prod]\n"
        "url = https://contoso.crm.dynamics.com\n"
        "tenant = contoso.onmicrosoft.com\n"
        "client_id = 11111111-1111-1111-1111-111111111111\n"
        "client_secret_file = good.secret\n";

struct fixture {
        char dir[256];          /* scratch directory, resolved */
};

static void write_file(const char *dir, const char *name, const char *content, mode_t mode) {
        char path[PATH_MAX];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        (void) unlink(path);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t) strlen(content));
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static char *read_all(const char *path) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char *s = NULL;
        size_t n = 0;

        assert_non_null(f);
        assert_true(getdelim(&s, &n, '\0', f) >= 0);
        return s;
}

static void copy_file(const char *from, const char *dir, const char *name) {
        _cleanup_free_ char *content = read_all(from);

        write_file(dir, name, content, 0644);
}

static int setup(void **state) {
        struct fixture *fx = calloc(1, sizeof(*fx));
        char tmpl[] = "/tmp/test-config.XXXXXX";
        _cleanup_free_ char *resolved = NULL;

        assert_non_null(fx);
        assert_non_null(mkdtemp(tmpl));
        resolved = realpath(tmpl, NULL);
        assert_non_null(resolved);
        assert_true(strlen(resolved) < sizeof(fx->dir));
        strcpy(fx->dir, resolved);
        write_file(fx->dir, "good.secret", SECRET "\n", 0600);
        write_file(fx->dir, "empty.secret", "", 0600);
        write_file(fx->dir, "open.secret", SECRET "\n", 0644);
        write_file(fx->dir, "group.secret", SECRET "\n", 0640);
        write_file(fx->dir, "multiline.secret", SECRET "\nsecond line\n", 0600);
        write_file(fx->dir, "ca.pem", "only opened, never parsed\n", 0644);
        unsetenv("CREDENTIALS_DIRECTORY");
        unsetenv("STATE_DIRECTORY");
        *state = fx;
        return 0;
}

static int teardown(void **state) {
        struct fixture *fx = *state;
        char cmd[PATH_MAX + 16];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
        assert_int_equal(system(cmd), 0);
        free(fx);
        return 0;
}

/* Load CONTENT written to DIR/NAME; returns config_load's result. */
static int load_text(const char *dir, const char *name, const char *content, struct s3_config **ret,
                     char **ret_error) {
        char path[PATH_MAX];

        write_file(dir, name, content, 0644);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return config_load(path, ret, ret_error);
}

static char *dump_to_string(const struct s3_config *c) {
        char *s = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&s, &n);

        assert_non_null(f);
        assert_int_equal(config_dump(c, f), 0);
        assert_int_equal(fclose(f), 0);
        return s;
}

static void test_defaults(void **state) {
        struct fixture *fx = *state;
        _cleanup_(config_freep) struct s3_config *c = NULL;
        _cleanup_free_ char *error = NULL;
        char secret_path[PATH_MAX];

        assert_int_equal(load_text(fx->dir, "min.conf", minimal_env, &c, &error), 0);
        assert_null(error);
        assert_int_equal(c->interval_sec, 60);
        assert_int_equal(c->lookback_sec, 24 * 3600);
        assert_int_equal(c->correlation_window_sec, 15 * 60);
        assert_int_equal(c->resolve_after_sec, 3600);
        assert_int_equal(c->config_refresh_sec, 15 * 60);
        assert_int_equal(c->output, OUTPUT_AUTO);
        assert_int_equal(c->syslog_facility, LOG_DAEMON);
        assert_string_equal(c->state_directory, "/var/lib/s3mond");
        assert_null(c->metrics_file);
        assert_int_equal(c->n_envs, 1);

        const struct env_config *e = &c->envs[0];
        snprintf(secret_path, sizeof(secret_path), "%s/good.secret", fx->dir);
        assert_string_equal(e->name, "prod");
        assert_string_equal(e->url, "https://contoso.crm.dynamics.com");
        assert_string_equal(e->tenant, "contoso.onmicrosoft.com");
        assert_string_equal(e->client_id, "11111111-1111-1111-1111-111111111111");
        assert_string_equal(e->client_secret, SECRET); /* trailing newline stripped */
        assert_string_equal(e->client_secret_file, secret_path);
        assert_string_equal(e->authority, "https://login.microsoftonline.com");
        assert_string_equal(e->token_url,
                            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
        assert_string_equal(e->scope, "https://contoso.crm.dynamics.com/.default");
        assert_int_equal(e->item_types, ITEM_EMAIL);
        assert_null(e->ca_file);
        assert_int_equal(e->line, 1);
}

static void test_state_directory_from_systemd(void **state) {
        struct fixture *fx = *state;
        _cleanup_(config_freep) struct s3_config *c = NULL, *c2 = NULL;
        _cleanup_free_ char *error = NULL;

        /* Several StateDirectory= entries come colon-separated: the first is ours. */
        setenv("STATE_DIRECTORY", "/var/lib/s3mond/prod:/var/lib/other", 1);
        assert_int_equal(load_text(fx->dir, "min.conf", minimal_env, &c, &error), 0);
        assert_string_equal(c->state_directory, "/var/lib/s3mond/prod");
        /* The file wins over the environment. */
        assert_int_equal(load_text(fx->dir, "sd.conf", "[s3mond]\nstate_directory = /srv/s3\n\n"
                                   "[environment prod]\n"
                                   "url = https://contoso.crm.dynamics.com\n"
                                   "tenant = contoso.onmicrosoft.com\n"
                                   "client_id = 11111111-1111-1111-1111-111111111111\n"
                                   "client_secret_file = good.secret\n", &c2, &error), 0);
        assert_string_equal(c2->state_directory, "/srv/s3");
        unsetenv("STATE_DIRECTORY");
}

static void test_every_key(void **state) {
        struct fixture *fx = *state;
        _cleanup_(config_freep) struct s3_config *c = NULL;
        _cleanup_free_ char *error = NULL;
        char path[PATH_MAX], expect[PATH_MAX];

        copy_file(SOURCE_CONFIGS "/good-full.conf", fx->dir, "good-full.conf");
        snprintf(path, sizeof(path), "%s/good-full.conf", fx->dir);
        assert_int_equal(config_load(path, &c, &error), 0);
        assert_string_equal(c->path, path);
        assert_int_equal(c->interval_sec, 120);
        assert_int_equal(c->lookback_sec, 2 * 86400);
        assert_int_equal(c->correlation_window_sec, 300);
        assert_int_equal(c->resolve_after_sec, 5400);
        assert_int_equal(c->config_refresh_sec, 3600);
        assert_int_equal(c->output, OUTPUT_JSON);
        assert_int_equal(c->syslog_facility, LOG_LOCAL3);
        assert_string_equal(c->state_directory, "/tmp/s3mond-state");
        assert_string_equal(c->metrics_file, "/tmp/s3mond.prom");
        assert_int_equal(c->n_envs, 2);

        const struct env_config *e = &c->envs[0];
        assert_string_equal(e->name, "prod");
        assert_string_equal(e->url, "https://contoso.crm.dynamics.com"); /* trailing / dropped */
        assert_string_equal(e->tenant, "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d");
        assert_string_equal(e->client_id, "abcdef01-2345-6789-abcd-ef0123456789");
        assert_string_equal(e->client_secret, SECRET);
        assert_string_equal(e->authority, "https://login.microsoftonline.us");
        assert_string_equal(e->token_url, "https://login.example.test/tenant/oauth2/v2.0/token");
        assert_string_equal(e->scope, "https://contoso.crm.dynamics.com/user_impersonation");
        assert_int_equal(e->item_types, ITEM_EMAIL | ITEM_ACT);
        snprintf(expect, sizeof(expect), "%s/ca.pem", fx->dir);
        assert_string_equal(e->ca_file, expect);
        assert_int_equal(e->line, 13);

        e = &c->envs[1];
        assert_string_equal(e->name, "test.eu-1");
        assert_string_equal(e->url, "http://127.0.0.1:8080"); /* loopback: http allowed */
        assert_string_equal(e->tenant, "contoso.onmicrosoft.com");
        assert_string_equal(e->token_url,
                            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
        assert_string_equal(e->scope, "http://127.0.0.1:8080/.default");
        assert_int_equal(e->item_types, ITEM_APPOINTMENT);
        assert_int_equal(e->line, 24);
}

/* The example of docs/design.md §5, comments and all. */
static void test_design_example(void **state) {
        struct fixture *fx = *state;
        _cleanup_(config_freep) struct s3_config *c = NULL;
        _cleanup_free_ char *error = NULL;

        write_file(fx->dir, "prod.secret", SECRET "\n", 0600);
        assert_int_equal(load_text(fx->dir, "design.conf",
                "[s3mond]\n"
                "interval = 60s            # poll interval, per environment, with jitter\n"
                "lookback = 24h            # first start: how far back to look\n"
                "correlation_window = 15m  # evidence must be this close to the alert\n"
                "resolve_after = 1h\n"
                "config_refresh = 15m      # re-read workflows/steps (delta by modifiedon); also done before\n"
                "                          # correlating a new alert, so a fresh activation is never missed\n"
                "output = journal          # journal | syslog | stderr | json\n"
                "syslog_facility = daemon  # daemon | local0 .. local7\n"
                "state_directory = /var/lib/s3mond   # default $STATE_DIRECTORY, set by systemd\n"
                "metrics_file = /var/lib/prometheus/node-exporter/s3mond.prom   # optional\n"
                "\n"
                "[environment prod]\n"
                "url = https://contoso.crm.dynamics.com\n"
                "tenant = 00000000-0000-0000-0000-000000000000   # or a domain: contoso.onmicrosoft.com\n"
                "client_id = 11111111-1111-1111-1111-111111111111\n"
                "client_secret_file = prod.secret   # relative: $CREDENTIALS_DIRECTORY, then config dir\n"
                "# authority = https://login.microsoftonline.com    token_url = ...   scope = <url>/.default\n"
                "# item_types = email   (default; add appointment contact task where ACT sync is on)\n"
                "# ca_file = /path/ca.pem\n",
                &c, &error), 0);
        assert_null(error);
        assert_int_equal(c->output, OUTPUT_JOURNAL);
        assert_int_equal(c->config_refresh_sec, 900);
        assert_string_equal(c->metrics_file, "/var/lib/prometheus/node-exporter/s3mond.prom");
        assert_string_equal(c->envs[0].tenant, "00000000-0000-0000-0000-000000000000");
        assert_string_equal(c->envs[0].client_secret, SECRET);
}

/* "# expect: LINE TEXT" on the first line of a bad-*.conf. */
static void read_expectation(const char *path, unsigned *ret_line, char *text, size_t size) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char first[256];
        int used = 0;

        assert_non_null(f);
        assert_non_null(fgets(first, sizeof(first), f));
        first[strcspn(first, "\n")] = '\0';
        assert_int_equal(sscanf(first, "# expect: %u %n", ret_line, &used), 1);
        assert_true(used > 0 && first[used] != '\0');
        snprintf(text, size, "%s", first + used);
}

static void test_bad_configs(void **state) {
        struct fixture *fx = *state;
        struct dirent **names = NULL;
        unsigned checked = 0;
        int n;

        n = scandir(SOURCE_CONFIGS, &names, NULL, alphasort);
        assert_true(n > 0);
        for (int i = 0; i < n; i++) {
                const char *name = names[i]->d_name;
                char source[PATH_MAX], path[PATH_MAX], prefix[PATH_MAX + 32], text[256];
                struct s3_config *c = (struct s3_config *) 0x1; /* must stay untouched */
                _cleanup_free_ char *error = NULL;
                unsigned line;
                int r;

                if (strncmp(name, "bad-", 4) != 0 || !strstr(name, ".conf")) {
                        free(names[i]);
                        continue;
                }
                snprintf(source, sizeof(source), "%s/%s", SOURCE_CONFIGS, name);
                read_expectation(source, &line, text, sizeof(text));
                copy_file(source, fx->dir, name);
                snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
                snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);

                r = config_load(path, &c, &error);
                if (r >= 0 || !error || strncmp(error, prefix, strlen(prefix)) != 0 || !strstr(error, text))
                        fail_msg("%s: expected failure \"%s...%s...\", got %d \"%s\"", name, prefix, text, r,
                                 strempty(error));
                assert_true(c == (struct s3_config *) 0x1);
                assert_null(strstr(error, SECRET));
                checked++;
                free(names[i]);
        }
        free(names);
        print_message("%u bad configuration files refused with the expected line and key\n", checked);
        assert_true(checked >= 15);
}

static void test_secret_permissions(void **state) {
        static const struct {
                mode_t mode;
                bool ok;
        } cases[] = {
                { 0600, true }, { 0400, true }, { 0700, true },
                { 0644, false }, { 0640, false }, { 0604, false }, { 0620, false }, { 0444, false },
        };
        struct fixture *fx = *state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(config_freep) struct s3_config *c = NULL;
                _cleanup_free_ char *error = NULL;
                char expect[PATH_MAX + 64];
                int r;

                write_file(fx->dir, "good.secret", SECRET "\n", cases[i].mode);
                r = load_text(fx->dir, "perm.conf", minimal_env, &c, &error);
                if (cases[i].ok) {
                        assert_int_equal(r, 0);
                        continue;
                }
                assert_int_equal(r, -EINVAL);
                snprintf(expect, sizeof(expect), "%s/perm.conf:5: client_secret_file: ", fx->dir);
                assert_non_null(error);
                assert_memory_equal(error, expect, strlen(expect));
                snprintf(expect, sizeof(expect), "chmod 600 %s/good.secret", fx->dir);
                assert_non_null(strstr(error, expect));
                assert_null(strstr(error, SECRET));
        }
        write_file(fx->dir, "good.secret", SECRET "\n", 0600);
}

static void test_secret_contents(void **state) {
        static const struct {
                const char *content;
                const char *secret;     /* NULL: refused */
        } cases[] = {
                { SECRET, SECRET },
                { SECRET "\n", SECRET },
                { SECRET "\r\n", SECRET },
                { SECRET "\n\n", SECRET },
                { "\n", NULL },
                { "", NULL },
                { "a\nb", NULL },
        };
        struct fixture *fx = *state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(config_freep) struct s3_config *c = NULL;
                _cleanup_free_ char *error = NULL;
                int r;

                write_file(fx->dir, "good.secret", cases[i].content, 0600);
                r = load_text(fx->dir, "content.conf", minimal_env, &c, &error);
                if (cases[i].secret) {
                        assert_int_equal(r, 0);
                        assert_string_equal(c->envs[0].client_secret, cases[i].secret);
                } else {
                        assert_int_equal(r, -EINVAL);
                        assert_non_null(strstr(error, "client_secret_file"));
                }
        }

        /* Too large to be a secret: some other file was named. */
        char big[5000];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        write_file(fx->dir, "good.secret", big, 0600);
        {
                _cleanup_(config_freep) struct s3_config *c = NULL;
                _cleanup_free_ char *error = NULL;

                assert_int_equal(load_text(fx->dir, "content.conf", minimal_env, &c, &error), -EINVAL);
                assert_non_null(strstr(error, "larger than"));
        }
        write_file(fx->dir, "good.secret", SECRET "\n", 0600);
}

static void test_secret_lookup(void **state) {
        struct fixture *fx = *state;
        char creds[512], confdir[512], path[PATH_MAX], expect[PATH_MAX];
        const char *conf =
                "[environment prod]\n"
                "url = https://contoso.crm.dynamics.com\n"
                "tenant = contoso.onmicrosoft.com\n"
                "client_id = 11111111-1111-1111-1111-111111111111\n"
                "client_secret_file = prod.secret\n";

        snprintf(creds, sizeof(creds), "%s/credentials", fx->dir);
        snprintf(confdir, sizeof(confdir), "%s/etc", fx->dir);
        assert_int_equal(mkdir(creds, 0700), 0);
        assert_int_equal(mkdir(confdir, 0755), 0);
        write_file(confdir, "prod.secret", "from-config-dir\n", 0600);
        snprintf(path, sizeof(path), "%s/s3mond.conf", confdir);

        /* No $CREDENTIALS_DIRECTORY: next to the configuration file. */
        {
                _cleanup_(config_freep) struct s3_config *c = NULL;
                _cleanup_free_ char *error = NULL;

                assert_int_equal(load_text(confdir, "s3mond.conf", conf, &c, &error), 0);
                assert_string_equal(c->envs[0].client_secret, "from-config-dir");
        }
        /* Set, but without that credential: still the config directory. */
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        {
                _cleanup_(config_freep) struct s3_config *c = NULL;
                _cleanup_free_ char *error = NULL;

                assert_int_equal(config_load(path, &c, &error), 0);
                assert_string_equal(c->envs[0].client_secret, "from-config-dir");
        }
        /* A systemd credential comes first; its ACL shows as group bits,
         * which are fine there (and only there). */
        write_file(creds, "prod.secret", "from-credentials\n", 0440);
        {
                _cleanup_(config_freep) struct s3_config *c = NULL;
                _cleanup_free_ char *error = NULL;

                assert_int_equal(config_load(path, &c, &error), 0);
                assert_string_equal(c->envs[0].client_secret, "from-credentials");
                snprintf(expect, sizeof(expect), "%s/prod.secret", creds);
                assert_string_equal(c->envs[0].client_secret_file, expect);
        }
        /* Found nowhere: the message names both places. */
        assert_int_equal(unlink(expect), 0);
        snprintf(expect, sizeof(expect), "%s/prod.secret", confdir);
        assert_int_equal(unlink(expect), 0);
        {
                _cleanup_(config_freep) struct s3_config *c = NULL;
                _cleanup_free_ char *error = NULL;

                assert_int_equal(config_load(path, &c, &error), -EINVAL);
                assert_non_null(strstr(error, ":5: client_secret_file: "));
                assert_non_null(strstr(error, creds));
                assert_non_null(strstr(error, confdir));
        }
        unsetenv("CREDENTIALS_DIRECTORY");

        /* An absolute path is taken as it is. */
        {
                _cleanup_(config_freep) struct s3_config *c = NULL;
                _cleanup_free_ char *error = NULL, *text = NULL;

                assert_true(asprintf(&text,
                                     "[environment prod]\n"
                                     "url = https://contoso.crm.dynamics.com\n"
                                     "tenant = contoso.onmicrosoft.com\n"
                                     "client_id = 11111111-1111-1111-1111-111111111111\n"
                                     "client_secret_file = %s/good.secret\n", fx->dir) > 0);
                assert_int_equal(load_text(confdir, "abs.conf", text, &c, &error), 0);
                assert_string_equal(c->envs[0].client_secret, SECRET);
        }
}

static void test_dump_masks_secret(void **state) {
        struct fixture *fx = *state;
        _cleanup_(config_freep) struct s3_config *c = NULL, *again = NULL;
        _cleanup_free_ char *error = NULL, *dump = NULL, *dump2 = NULL, *mark = NULL;
        char path[PATH_MAX];

        copy_file(SOURCE_CONFIGS "/good-full.conf", fx->dir, "good-full.conf");
        snprintf(path, sizeof(path), "%s/good-full.conf", fx->dir);
        assert_int_equal(config_load(path, &c, &error), 0);
        dump = dump_to_string(c);
        assert_null(strstr(dump, SECRET));
        assert_null(strstr(dump, "s3cr3t"));
        assert_true(asprintf(&mark, "# client secret: loaded from %s/good.secret\n", fx->dir) > 0);
        assert_non_null(strstr(dump, mark));
        assert_non_null(strstr(dump, "\nitem_types = email appointment contact task\n"));
        assert_non_null(strstr(dump, "\nresolve_after = 90m\n"));

        /* The dump is itself a configuration that loads to the same thing. */
        write_file(fx->dir, "dumped.conf", dump, 0644);
        snprintf(path, sizeof(path), "%s/dumped.conf", fx->dir);
        assert_int_equal(config_load(path, &again, &error), 0);
        dump2 = dump_to_string(again);
        assert_string_equal(strchr(dump, '\n'), strchr(dump2, '\n'));
}

static void test_select_environments(void **state) {
        struct fixture *fx = *state;
        _cleanup_(config_freep) struct s3_config *c = NULL;
        _cleanup_free_ char *error = NULL;
        char path[PATH_MAX];
        char *unknown[] = { "test.eu-1", "nope" };
        char *one[] = { "test.eu-1", "test.eu-1" };

        copy_file(SOURCE_CONFIGS "/good-full.conf", fx->dir, "good-full.conf");
        snprintf(path, sizeof(path), "%s/good-full.conf", fx->dir);
        assert_int_equal(config_load(path, &c, &error), 0);

        assert_int_equal(config_select_environments(c, NULL, 0, &error), 0);
        assert_int_equal(c->n_envs, 2);

        /* An unknown name changes nothing. */
        assert_int_equal(config_select_environments(c, unknown, 2, &error), -ENOENT);
        assert_non_null(strstr(error, "nope"));
        assert_non_null(strstr(error, "prod, test.eu-1"));
        error = mfree(error);
        assert_int_equal(c->n_envs, 2);

        assert_int_equal(config_select_environments(c, one, 2, &error), 0);
        assert_int_equal(c->n_envs, 1);
        assert_string_equal(c->envs[0].name, "test.eu-1");
        assert_string_equal(c->envs[0].client_secret, SECRET);
}

static void test_failure_keeps_old(void **state) {
        struct fixture *fx = *state;
        _cleanup_(config_freep) struct s3_config *c = NULL;
        _cleanup_free_ char *error = NULL;
        struct s3_config *old;

        assert_int_equal(load_text(fx->dir, "a.conf", minimal_env, &c, &error), 0);
        old = c;
        /* Fails on its very last line, after a whole valid environment. */
        assert_int_equal(load_text(fx->dir, "b.conf", "[s3mond]\ninterval = 5m\n\n[environment a]\n"
                                   "url = https://a.crm.dynamics.com\ntenant = contoso.onmicrosoft.com\n"
                                   "client_id = 11111111-1111-1111-1111-111111111111\n"
                                   "client_secret_file = good.secret\n[bogus]\n", &c, &error), -EINVAL);
        assert_ptr_equal(c, old);
        assert_int_equal(c->interval_sec, 60);
        assert_string_equal(c->envs[0].name, "prod");
        assert_non_null(strstr(error, "b.conf:9: unknown section [bogus]"));
}

static void test_first_error_wins(void **state) {
        struct fixture *fx = *state;
        _cleanup_(config_freep) struct s3_config *c = NULL;
        _cleanup_free_ char *error = NULL, *expect = NULL;

        assert_int_equal(load_text(fx->dir, "two.conf", "[s3mond]\ninterval = 0\noutput = file\n", &c, &error),
                         -EINVAL);
        assert_true(asprintf(&expect, "%s/two.conf:2: interval: ", fx->dir) > 0);
        assert_memory_equal(error, expect, strlen(expect));
}

static void test_missing_file(void **state) {
        struct fixture *fx = *state;
        struct s3_config *c = NULL;
        _cleanup_free_ char *error = NULL, *path = NULL;

        assert_true(asprintf(&path, "%s/nonexistent.conf", fx->dir) > 0);
        assert_int_equal(config_load(path, &c, &error), -ENOENT);
        assert_null(c);
        assert_non_null(strstr(error, "nonexistent.conf: cannot open: "));
}

static void test_long_environment_name(void **state) {
        struct fixture *fx = *state;
        _cleanup_(config_freep) struct s3_config *c = NULL;
        _cleanup_free_ char *error = NULL, *text = NULL;
        char name[65];

        memset(name, 'n', 64);
        name[64] = '\0';
        assert_true(asprintf(&text, "[environment %s]\n%s", name, strchr(minimal_env, '\n') + 1) > 0);
        assert_int_equal(load_text(fx->dir, "long.conf", text, &c, &error), 0);
        assert_string_equal(c->envs[0].name, name);
}

/* libinih's line buffer: the man page promises 197 characters. */
static void test_line_length(void **state) {
        struct fixture *fx = *state;

        for (size_t len = 196; len <= 198; len++) {
                _cleanup_(config_freep) struct s3_config *c = NULL;
                _cleanup_free_ char *error = NULL, *text = NULL;
                char line[256] = "metrics_file = /";

                memset(line + strlen(line), 'm', len - strlen(line));
                line[len] = '\0';
                assert_true(asprintf(&text, "[s3mond]\n%s\n# a comment may be longer: %s%s\n%s", line, line,
                                     line, minimal_env) > 0);
                if (len <= 197) {
                        assert_int_equal(load_text(fx->dir, "len.conf", text, &c, &error), 0);
                        assert_int_equal(strlen(c->metrics_file), len - strlen("metrics_file = "));
                } else {
                        assert_int_equal(load_text(fx->dir, "len.conf", text, &c, &error), -EINVAL);
                        assert_non_null(strstr(error, "len.conf:2: the line is longer than 197 characters"));
                }
        }
}

/* config_dump() must give what loads again: a default built from a long
 * url (scope = URL/.default) that no longer fits on a line is refused at
 * load (found by tests/fuzz/fuzz-config). */
static void test_derived_too_long(void **state) {
        struct fixture *fx = *state;

        for (size_t len = 180; len <= 181; len++) {
                _cleanup_(config_freep) struct s3_config *c = NULL, *again = NULL;
                _cleanup_free_ char *error = NULL, *text = NULL, *dump = NULL;
                char url[256] = "https://contoso.crm.dynamics.com/";

                memset(url + strlen(url), 'u', len - strlen(url));
                url[len] = '\0';
                assert_true(asprintf(&text, "[environment prod]\nurl = %s\n%s", url,
                                     strstr(minimal_env, "tenant")) > 0);
                if (len == 180) { /* scope = URL/.default: 189 characters, just fits */
                        assert_int_equal(load_text(fx->dir, "url.conf", text, &c, &error), 0);
                        dump = dump_to_string(c);
                        assert_int_equal(load_text(fx->dir, "dump.conf", dump, &again, &error), 0);
                } else {
                        assert_int_equal(load_text(fx->dir, "url.conf", text, &c, &error), -EINVAL);
                        assert_non_null(strstr(error, "url.conf:1: [environment prod]: scope: "));
                        assert_non_null(strstr(error, "set a shorter scope"));
                }
        }
}

static void test_output_kinds(void **state) {
        (void) state;
        static const enum output_kind all[] = { OUTPUT_AUTO, OUTPUT_JOURNAL, OUTPUT_SYSLOG, OUTPUT_STDERR,
                                                OUTPUT_JSON };

        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                assert_int_equal(output_kind_from_string(output_kind_to_string(all[i])), (int) all[i]);
        assert_int_equal(output_kind_from_string("Journal"), -EINVAL);
        assert_int_equal(output_kind_from_string(""), -EINVAL);

}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
                cmocka_unit_test_setup_teardown(test_state_directory_from_systemd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_design_example, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_configs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_permissions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_contents, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_lookup, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dump_masks_secret, setup, teardown),
                cmocka_unit_test_setup_teardown(test_select_environments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failure_keeps_old, setup, teardown),
                cmocka_unit_test_setup_teardown(test_first_error_wins, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_environment_name, setup, teardown),
                cmocka_unit_test_setup_teardown(test_line_length, setup, teardown),
                cmocka_unit_test_setup_teardown(test_derived_too_long, setup, teardown),
                cmocka_unit_test(test_output_kinds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
