/* fuzz-config.c: config_load() (config.h) on an arbitrary file, inside a
 * sandbox directory that holds the secret files the seeds name (good.secret,
 * open.secret, a FIFO, a symbolic link, a credentials directory...).
 *
 * config_load() opens what the file names: client_secret_file and ca_file
 * may be any path. So that the fuzzer cannot make it open /dev/watchdog or
 * read the machine's files, the harness is linked with -Wl,--wrap=open and
 * --wrap=open64: while config_load() runs, an open() of anything outside the
 * sandbox fails with EACCES, as a file s3mond may not read would.
 *
 * Invariants:
 *  - a failure is -errno with a message "PATH:..." that never holds a
 *    secret (unless the input itself does);
 *  - a success is a complete configuration: every environment named
 *    validly, with a URL, tenant, client id, token URL, scope, a non-empty
 *    one-line secret read from a file of the sandbox, durations in range;
 *  - config_dump() never prints a secret, and its output loads again as
 *    the same configuration (config.h promises it): dumping that gives the
 *    same text;
 *  - config_select_environments() keeps what is named, refuses the unknown;
 *  - config_load_selected() for "prod" accepts all config_load() accepts,
 *    with the same environments, and reads prod's secret and no other. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

#define SECRET_MARK "fuzz-secret-"

static char *sandbox;           /* realpath of the directory, "/tmp/s3mond-fuzz-config.XXXXXX" */
static char *conf_path, *dump_path;
static bool armed;              /* config_load() is running: confine open() */

/* ---- the open() guard ------------------------------------------------------- */

int __real_open(const char *path, int flags, ...);
int __real_open64(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...);
int __wrap_open64(const char *path, int flags, ...);

static bool allowed(const char *path) {
        char *resolved;
        size_t n = strlen(sandbox);
        bool ok;

        if (!armed)
                return true;
        resolved = realpath(path, NULL);
        if (!resolved)
                return true; /* nothing there (or no way there): open() fails the same way */
        ok = strncmp(resolved, sandbox, n) == 0 && (resolved[n] == '/' || resolved[n] == '\0');
        free(resolved);
        return ok;
}

static mode_t mode_arg(int flags, va_list ap) {
        return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t) va_arg(ap, int) : 0;
}

/* open() and open64() alike: refused outside the sandbox, else the real one. */
#define WRAP_OPEN(name)                                         \
        int __wrap_##name(const char *path, int flags, ...) {   \
                va_list ap;                                     \
                mode_t mode;                                    \
                va_start(ap, flags);                            \
                mode = mode_arg(flags, ap);                     \
                va_end(ap);                                     \
                if (!allowed(path)) {                           \
                        errno = EACCES;                         \
                        return -1;                              \
                }                                               \
                return __real_##name(path, flags, mode);        \
        }
WRAP_OPEN(open)
WRAP_OPEN(open64)

/* ---- the sandbox ------------------------------------------------------------- */

static const struct {
        const char *name;
        mode_t mode;
        const char *content;    /* NULL: a directory */
} files[] = {
        { "good.secret", 0600, SECRET_MARK "good-Value~42\n" },
        { "crlf.secret", 0600, SECRET_MARK "crlf\r\n" },
        { "empty.secret", 0600, "" },
        { "newlines.secret", 0600, "\n\r\n" },
        { "open.secret", 0644, SECRET_MARK "open\n" },
        { "group.secret", 0640, SECRET_MARK "group\n" },
        { "multiline.secret", 0600, SECRET_MARK "line1\n" SECRET_MARK "line2\n" },
        { "nul.secret", 0600, SECRET_MARK "nul\0after\n" },
        { "ca.pem", 0644, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n" },
        { "sub", 0700, NULL },
        { "sub/good.secret", 0600, SECRET_MARK "sub\n" },
        { "creds", 0700, NULL },
        { "creds/good.secret", 0640, SECRET_MARK "credential\n" },   /* group bits: systemd's ACL */
        { "creds/cred.secret", 0644, SECRET_MARK "credential-2\n" },
        { "state", 0700, NULL },
};

static void make_file(const char *name, mode_t mode, const char *content, size_t len) {
        char *path;
        int fd;

        if (asprintf(&path, "%s/%s", sandbox, name) < 0)
                abort();
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        CHECK(fd >= 0, "cannot create %s: %s", path, strerror(errno));
        CHECK(write(fd, content, len) == (ssize_t) len, "cannot write %s", path);
        CHECK(fchmod(fd, mode) == 0, "chmod %s", path);
        close(fd);
        free(path);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void sandbox_remove(void) {
        if (sandbox)
                nftw(sandbox, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        const char *tmp = getenv("TMPDIR");
        char *dir, *path;

        if (asprintf(&dir, "%s/s3mond-fuzz-config.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0 || !mkdtemp(dir))
                abort();
        sandbox = realpath(dir, NULL);
        free(dir);
        CHECK(sandbox, "realpath()");
        atexit(sandbox_remove);

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                if (!files[i].content) {
                        CHECK(asprintf(&path, "%s/%s", sandbox, files[i].name) > 0, "asprintf()");
                        CHECK(mkdir(path, files[i].mode) == 0, "mkdir %s", path);
                        free(path);
                        continue;
                }
                /* nul.secret holds a NUL: its length is known by name */
                make_file(files[i].name, files[i].mode, files[i].content,
                          strcmp(files[i].name, "nul.secret") == 0 ? sizeof(SECRET_MARK "nul\0after\n") - 1
                                                                   : strlen(files[i].content));
        }
        {
                char big[5000];

                memset(big, 'x', sizeof(big));
                make_file("big.secret", 0600, big, sizeof(big));
        }
        CHECK(asprintf(&path, "%s/fifo.secret", sandbox) > 0 && mkfifo(path, 0600) == 0, "mkfifo");
        free(path);
        CHECK(asprintf(&path, "%s/link.secret", sandbox) > 0 && symlink("good.secret", path) == 0, "symlink");
        free(path);
        CHECK(asprintf(&path, "%s/escape.secret", sandbox) > 0 && symlink("/etc/passwd", path) == 0, "symlink");
        free(path);

        CHECK(asprintf(&conf_path, "%s/s3mond.conf", sandbox) > 0, "asprintf()");
        CHECK(asprintf(&dump_path, "%s/dump.conf", sandbox) > 0, "asprintf()");
        CHECK(asprintf(&path, "%s/creds", sandbox) > 0 && setenv("CREDENTIALS_DIRECTORY", path, 1) == 0, "setenv");
        free(path);
        CHECK(asprintf(&path, "%s/state", sandbox) > 0 && setenv("STATE_DIRECTORY", path, 1) == 0, "setenv");
        free(path);
        return 0;
}

/* ---- checks ------------------------------------------------------------------ */

static bool holds_secret(const char *text, size_t n) {
        return memmem(text, n, SECRET_MARK, strlen(SECRET_MARK)) != NULL;
}

static bool duration_ok(uint64_t v, uint64_t min, uint64_t max) {
        return v >= min && v <= max;
}

/* What holds whether or not the secrets were read. */
static void check_config_common(const struct s3_config *c) {
        const uint64_t day = 86400;

        CHECK(c->n_envs > 0, "no environment");
        CHECK(duration_ok(c->interval_sec, 1, day) && duration_ok(c->lookback_sec, 0, 365 * day) &&
                      duration_ok(c->correlation_window_sec, 1, day) &&
                      duration_ok(c->resolve_after_sec, 1, 365 * day) &&
                      duration_ok(c->config_refresh_sec, 1, 365 * day),
              "a duration out of range");
        CHECK(output_kind_to_string(c->output), "output %d", (int) c->output);
        CHECK(c->state_directory && c->state_directory[0] == '/', "state_directory");
        CHECK(!c->metrics_file || c->metrics_file[0] == '/', "metrics_file");
        for (size_t i = 0; i < c->n_envs; i++) {
                const struct env_config *e = &c->envs[i];
                size_t n;

                CHECK(e->name && environment_name_is_valid(e->name), "environment name");
                for (size_t k = 0; k < i; k++)
                        CHECK(strcmp(c->envs[k].name, e->name) != 0, "environment %s twice", e->name);
                CHECK(e->url && (strncmp(e->url, "https://", 8) == 0 || strncmp(e->url, "http://", 7) == 0),
                      "url %s", e->url);
                n = strlen(e->url);
                CHECK(e->url[n - 1] != '/', "url %s ends with /", e->url);
                CHECK(e->tenant && e->client_id && e->authority && e->token_url && e->scope, "a key missing");
                CHECK(e->client_secret_file, "no client_secret_file");
                CHECK(!e->ca_file || strncmp(e->ca_file, sandbox, strlen(sandbox)) == 0, "ca_file %s", e->ca_file);
                CHECK(e->item_types != 0 && (e->item_types & ~15u) == 0, "item_types %#x", e->item_types);
        }
}

static void check_config(const struct s3_config *c) {
        check_config_common(c);
        for (size_t i = 0; i < c->n_envs; i++) {
                const struct env_config *e = &c->envs[i];

                CHECK(e->client_secret && *e->client_secret, "no secret");
                CHECK(!strchr(e->client_secret, '\n') && !strchr(e->client_secret, '\r'), "secret of two lines");
                CHECK(strncmp(e->client_secret_file, sandbox, strlen(sandbox)) == 0, "secret from %s",
                      e->client_secret_file);
        }
}

/* config_dump() to dump_path; returns the text (without its first line,
 * which names the file). */
static char *dump(const struct s3_config *c) {
        FILE *f = fopen(dump_path, "we");
        char *text = NULL, *body;
        size_t size = 0;
        FILE *m = open_memstream(&text, &size);

        CHECK(f && m, "fopen()");
        CHECK(config_dump(c, f) == 0 && config_dump(c, m) == 0, "config_dump()");
        fclose(f);
        fclose(m);
        body = strchr(text, '\n');
        CHECK(body, "config_dump(): one line");
        body = strdup(body + 1);
        free(text);
        return body;
}

/* config_load_selected() for "prod": it reads only prod's secret, accepts
 * whatever config_load() accepts (full: its result, or NULL when it
 * failed), and its one environment left after selecting is full's. */
static void check_selected(const struct s3_config *full, bool input_secret) {
        char *names[] = { (char *) "prod" }, *error = NULL;
        struct s3_config *c = NULL;
        bool has_prod = false;
        int r;

        armed = true;
        r = config_load_selected(conf_path, names, 1, &c, &error);
        armed = false;
        if (r < 0) {
                CHECK(!full, "config_load() accepts what config_load_selected() refuses: %s", error);
                CHECK(!error || input_secret || !holds_secret(error, strlen(error)), "a secret in the message: %s",
                      error);
                free(error);
                return;
        }
        check_config_common(c);
        if (full)
                CHECK(full->n_envs == c->n_envs, "config_load_selected(): %zu environments, not %zu", c->n_envs,
                      full->n_envs);
        for (size_t i = 0; i < c->n_envs; i++) {
                const struct env_config *e = &c->envs[i];
                bool prod = strcmp(e->name, "prod") == 0;

                has_prod = has_prod || prod;
                CHECK(prod == (e->client_secret != NULL), "environment %s: secret %s", e->name,
                      e->client_secret ? "read" : "not read");
                if (prod && full)
                        CHECK(strcmp(e->client_secret, full->envs[i].client_secret) == 0, "another secret");
        }
        r = config_select_environments(c, names, 1, &error);
        if (has_prod)
                CHECK(r == 0 && c->n_envs == 1 && c->envs[0].client_secret, "select prod: %d", r);
        else {
                CHECK(r == -ENOENT && error, "select a missing prod: %d", r);
                free(error);
        }
        config_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct s3_config *c = NULL, *again = NULL;
        char *error = NULL, *text, *text2;
        bool input_secret = holds_secret((const char *) data, size);
        FILE *f = fopen(conf_path, "we");
        int r;

        CHECK(f && fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write %s", conf_path);

        armed = true;
        r = config_load(conf_path, &c, &error);
        armed = false;
        if (r < 0) {
                CHECK(!c, "config_load() failed and returned a configuration");
                CHECK(error || r == -ENOMEM, "config_load() = %d without a message", r);
                if (!error)
                        return 0;
                CHECK(strncmp(error, conf_path, strlen(conf_path)) == 0 && error[strlen(conf_path)] == ':',
                      "message does not start with the path: %s", error);
                CHECK(input_secret || !holds_secret(error, strlen(error)), "a secret in the message: %s", error);
                free(error);
                check_selected(NULL, input_secret);
                return 0;
        }
        CHECK(c && !error, "config_load() succeeded with a message");
        check_config(c);
        check_selected(c, input_secret);

        text = dump(c);
        CHECK(input_secret || !holds_secret(text, strlen(text)), "a secret in the dump:\n%s", text);
        armed = true;
        r = config_load(dump_path, &again, &error);
        armed = false;
        CHECK(r == 0, "the dump does not load again (%s):\n%s", error, text);
        text2 = dump(again);
        CHECK(strcmp(text, text2) == 0, "the dump of the dump differs:\n%s\n---\n%s", text, text2);
        for (size_t i = 0; i < c->n_envs; i++)
                CHECK(strcmp(c->envs[i].client_secret, again->envs[i].client_secret) == 0, "another secret");
        free(text);
        free(text2);
        config_free(again);

        /* Keep the last environment only; then ask for one that is not there. */
        {
                char *name = strdup(c->envs[c->n_envs - 1].name), *names[] = { name };
                char *bogus[] = { (char *) "no such environment" };

                CHECK(name && config_select_environments(c, names, 1, &error) == 0, "select %s", name);
                CHECK(c->n_envs == 1 && strcmp(c->envs[0].name, name) == 0, "select kept %zu", c->n_envs);
                CHECK(config_select_environments(c, bogus, 1, &error) == -ENOENT && error, "select bogus");
                CHECK(c->n_envs == 1, "a failed select changed the configuration");
                free(error);
                free(name);
        }
        config_free(c);
        return 0;
}
