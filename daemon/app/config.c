/* config.c: owns the configuration file: libinih parsing, checks, defaults, secrets, the dump.
 * Must not know how the values are used (HTTP, outputs, state). */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>

#include "config.h"
#include "connection.h"
#include "guid.h"
#include "macro.h"
#include "model.h"
#include "timeutil.h"

#define DEFAULT_AUTHORITY "https://login.microsoftonline.com"
#define DEFAULT_STATE_DIRECTORY "/var/lib/s3mond"
#define SECRET_MAX 4096
#define DAY (UINT64_C(86400))

enum section_kind { SECTION_MAIN, SECTION_ENV };

struct parser;
struct key_def;
typedef int (*key_parser)(struct parser *p, const struct key_def *k, const char *value, void *base);

struct key_def {
        const char *name;
        enum section_kind section;
        key_parser parse;
        size_t offset;          /* of the field in struct s3_config or struct env_config */
        uint64_t min_sec, max_sec; /* durations only */
};

static int parse_duration(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_output(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_facility(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_absolute_path(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_env_url(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_url(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_tenant(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_guid(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_secret_file(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_string(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_item_types(struct parser *p, const struct key_def *k, const char *value, void *base);
static int parse_ca_file(struct parser *p, const struct key_def *k, const char *value, void *base);

#define MAIN_KEY(name, parse, field) { name, SECTION_MAIN, parse, offsetof(struct s3_config, field), 0, 0 }
#define DURATION_KEY(name, field, min, max) \
        { name, SECTION_MAIN, parse_duration, offsetof(struct s3_config, field), min, max }
#define ENV_KEY(name, parse, field) { name, SECTION_ENV, parse, offsetof(struct env_config, field), 0, 0 }

/* Every key s3mond knows; man/s3mond.conf.5.scd documents each (a test checks). */
static const struct key_def keys[] = {
        DURATION_KEY("interval", interval_sec, 1, DAY),
        DURATION_KEY("lookback", lookback_sec, 0, 365 * DAY),
        DURATION_KEY("correlation_window", correlation_window_sec, 1, DAY),
        DURATION_KEY("resolve_after", resolve_after_sec, 1, 365 * DAY),
        DURATION_KEY("config_refresh", config_refresh_sec, 1, 365 * DAY),
        MAIN_KEY("output", parse_output, output),
        MAIN_KEY("syslog_facility", parse_facility, syslog_facility),
        MAIN_KEY("state_directory", parse_absolute_path, state_directory),
        MAIN_KEY("metrics_file", parse_absolute_path, metrics_file),
        ENV_KEY("url", parse_env_url, url),
        ENV_KEY("tenant", parse_tenant, tenant),
        ENV_KEY("client_id", parse_guid, client_id),
        ENV_KEY("client_secret_file", parse_secret_file, client_secret_file),
        ENV_KEY("authority", parse_url, authority),
        ENV_KEY("token_url", parse_url, token_url),
        ENV_KEY("scope", parse_string, scope),
        ENV_KEY("item_types", parse_item_types, item_types),
        ENV_KEY("ca_file", parse_ca_file, ca_file),
};

/* What each required key is, for "missing" messages. */
static const struct {
        const char *key;
        size_t offset;
        const char *what;
} required_env_keys[] = {
        { "url", offsetof(struct env_config, url), "the environment's address, e.g. https://contoso.crm.dynamics.com" },
        { "tenant", offsetof(struct env_config, tenant), "the Entra ID tenant: a GUID or a domain such as contoso.onmicrosoft.com" },
        { "client_id", offsetof(struct env_config, client_id), "the application (client) ID of the app registration, a GUID" },
        { "client_secret_file", offsetof(struct env_config, client_secret_file), "a file holding the client secret, mode 0600" },
};

/* One [section] header, as the reader met it. */
struct section {
        enum section_kind kind;
        size_t env;             /* index in cfg->envs, SECTION_ENV only */
        unsigned line;
        unsigned key_line[ELEMENTSOF(keys)]; /* where each key was set; 0: not set */
};

struct parser {
        const char *path;
        char *dir;              /* the config file's directory, for relative paths */
        char *credentials_dir;  /* $CREDENTIALS_DIRECTORY resolved, or NULL */
        FILE *f;
        char *buf;
        size_t bufsize;
        unsigned line;          /* the line libinih is handling, counted by the reader */
        struct s3_config *cfg;
        struct section *sections;
        size_t n_sections;
        bool in_section;        /* sections[n_sections - 1] is open */
        char *error;            /* the first error, "PATH:LINE: message" */
        unsigned error_line;
        char *const *only;      /* config_load_selected()'s names; n_only == 0: all */
        size_t n_only;
        int max_line;           /* libinih's line buffer, as the reader was told */
};

static int fail(struct parser *p, unsigned line, const char *fmt, ...) _printf_(3, 4);
static int fail(struct parser *p, unsigned line, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int r;

        if (p->error)
                return -EINVAL;
        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (asprintf(&p->error, "%s:%u: %s", p->path, line, msg) < 0) {
                p->error = NULL;
                return -ENOMEM;
        }
        p->error_line = line;
        return -EINVAL;
}

static struct section *current_section(struct parser *p) {
        return p->in_section ? &p->sections[p->n_sections - 1] : NULL;
}

static const char *section_name(struct parser *p, const struct section *s, char *buf, size_t size) {
        if (s->kind == SECTION_MAIN)
                return "[s3mond]";
        snprintf(buf, size, "[environment %s]", p->cfg->envs[s->env].name);
        return buf;
}

/* ---- values ------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name) {
        char *s;

        if (asprintf(&s, "%s/%s", dir, name) < 0)
                return NULL;
        return s;
}

static int set_string(char **field, const char *value) {
        char *s = strdup(value);

        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

static int parse_duration(struct parser *p, const struct key_def *k, const char *value, void *base) {
        uint64_t *field = (uint64_t *) ((char *) base + k->offset), sec;
        char min[32], max[32];
        int r;

        duration_format(k->min_sec, min, sizeof(min));
        duration_format(k->max_sec, max, sizeof(max));
        r = duration_parse(value, &sec);
        if (r == -EINVAL)
                return fail(p, p->line, "%s: '%s' is not a duration: use a whole number with s, m, h "
                            "or d, e.g. 60s, 15m, 1h30m, 2d", k->name, value);
        if (r < 0 || sec < k->min_sec || sec > k->max_sec)
                return fail(p, p->line, "%s: %s is out of range: use %s to %s", k->name, value, min, max);
        *field = sec;
        return 0;
}

static int parse_output(struct parser *p, const struct key_def *k, const char *value, void *base) {
        enum output_kind *field = (enum output_kind *) ((char *) base + k->offset);
        int r = output_kind_from_string(value);

        if (r < 0)
                return fail(p, p->line, "%s: unknown output '%s': use auto, journal, syslog, stderr or json",
                            k->name, value);
        *field = (enum output_kind) r;
        return 0;
}

static const struct {
        const char *name;
        int facility;
} facilities[] = {
        { "daemon", LOG_DAEMON }, { "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
        { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },
        { "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

static const char *facility_to_string(int facility) {
        for (size_t i = 0; i < ELEMENTSOF(facilities); i++)
                if (facilities[i].facility == facility)
                        return facilities[i].name;
        return "daemon";
}

static int parse_facility(struct parser *p, const struct key_def *k, const char *value, void *base) {
        int *field = (int *) ((char *) base + k->offset);

        for (size_t i = 0; i < ELEMENTSOF(facilities); i++)
                if (strcmp(facilities[i].name, value) == 0) {
                        *field = facilities[i].facility;
                        return 0;
                }
        return fail(p, p->line, "%s: unknown facility '%s': use daemon or local0 to local7", k->name, value);
}

static int parse_absolute_path(struct parser *p, const struct key_def *k, const char *value, void *base) {
        char **field = (char **) ((char *) base + k->offset);

        if (value[0] != '/')
                return fail(p, p->line, "%s: '%s' is not an absolute path: start it with /", k->name, value);
        return set_string(field, value);
}

static bool host_is_loopback(const char *host) {
        struct in_addr a4;

        if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
                return true;
        /* libcurl has normalised 127.1 and 0x7f000001 to dotted quads. */
        return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(CURLU *, curl_url_cleanup);
static inline void curl_freep(char **s) {
        curl_free(*s);
}

/* Validate an https:// URL (http:// for loopback hosts only) and return it
 * normalised by libcurl, without trailing slashes. */
static int check_url(struct parser *p, const struct key_def *k, const char *value, char **ret) {
        _cleanup_(curl_url_cleanupp) CURLU *u = curl_url();
        _cleanup_(curl_freep) char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL,
                                   *fragment = NULL, *url = NULL;
        CURLUcode rc;
        size_t len;

        if (!u)
                return -ENOMEM;
        rc = curl_url_set(u, CURLUPART_URL, value, 0);
        if (rc != CURLUE_OK)
                return fail(p, p->line, "%s: '%s' is not a URL (%s): use https://HOST[/PATH]",
                            k->name, value, curl_url_strerror(rc));
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
                return -ENOMEM;
        if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)
                return fail(p, p->line, "%s: '%s' is not an https:// URL", k->name, value);
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                return fail(p, p->line, "%s: '%s' names no host", k->name, value);
        if (curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
                return -ENOMEM;
        (void) curl_url_get(u, CURLUPART_USER, &user, 0);
        (void) curl_url_get(u, CURLUPART_QUERY, &query, 0);
        (void) curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);

        if (strcmp(scheme, "http") == 0 && !host_is_loopback(host))
                return fail(p, p->line, "%s: http:// is refused for '%s': use https:// (plain http is "
                            "allowed only for loopback hosts: 127.0.0.0/8, ::1, localhost)", k->name, host);
        if (user)
                return fail(p, p->line, "%s: the URL must not carry a user name or password", k->name);
        if (query || fragment)
                return fail(p, p->line, "%s: the URL must not have a query (?...) or fragment (#...)", k->name);

        len = strlen(url);
        while (len > 0 && url[len - 1] == '/')
                url[--len] = '\0';
        *ret = strdup(url);
        return *ret ? 0 : -ENOMEM;
}

static int parse_url(struct parser *p, const struct key_def *k, const char *value, void *base) {
        char **field = (char **) ((char *) base + k->offset);
        char *url;
        int r;

        r = check_url(p, k, value, &url);
        if (r < 0)
                return r;
        free(*field);
        *field = url;
        return 0;
}

static int parse_env_url(struct parser *p, const struct key_def *k, const char *value, void *base) {
        char **field = (char **) ((char *) base + k->offset);
        int r;

        r = parse_url(p, k, value, base);
        if (r < 0)
                return r;
        if (strstr(*field, "/api/data"))
                return fail(p, p->line, "%s: give the environment's address without the Web API path, "
                            "e.g. https://contoso.crm.dynamics.com", k->name);
        return 0;
}

/* Set *field to a lower-case copy of value (GUIDs and domains compare so). */
static int set_lower(char **field, const char *value) {
        int r = set_string(field, value);

        for (char *c = *field; r >= 0 && *c; c++)
                *c = (char) tolower((unsigned char) *c);
        return r;
}

static int parse_guid(struct parser *p, const struct key_def *k, const char *value, void *base) {
        if (!guid_is_valid(value))
                return fail(p, p->line, "%s: '%s' is not a GUID: use the form "
                            "11111111-2222-3333-4444-555555555555", k->name, value);
        return set_lower((char **) ((char *) base + k->offset), value);
}

/* A DNS name with at least two labels: contoso.onmicrosoft.com. */
static bool is_domain(const char *s) {
        size_t len = strlen(s), labels = 0;

        if (len == 0 || len > 253)
                return false;
        for (const char *label = s; label; labels++) {
                const char *dot = strchr(label, '.');
                size_t n = dot ? (size_t) (dot - label) : strlen(label);

                if (n == 0 || n > 63 || label[0] == '-' || label[n - 1] == '-')
                        return false;
                for (size_t i = 0; i < n; i++)
                        if (!isalnum((unsigned char) label[i]) && label[i] != '-')
                                return false;
                label = dot ? dot + 1 : NULL;
        }
        return labels >= 2;
}

static int parse_tenant(struct parser *p, const struct key_def *k, const char *value, void *base) {
        if (!guid_is_valid(value) && !is_domain(value))
                return fail(p, p->line, "%s: '%s' is neither a GUID nor a domain: use the directory "
                            "(tenant) ID or a domain such as contoso.onmicrosoft.com", k->name, value);
        return set_lower((char **) ((char *) base + k->offset), value);
}

static int parse_string(struct parser *p, const struct key_def *k, const char *value, void *base) {
        return set_string((char **) ((char *) base + k->offset), value);
}

static int parse_item_types(struct parser *p, const struct key_def *k, const char *value, void *base) {
        unsigned *field = (unsigned *) ((char *) base + k->offset), types = 0;
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *word = strtok_r(copy, " \t,", &save); word; word = strtok_r(NULL, " \t,", &save)) {
                int t = item_type_from_string(word);

                if (t < 0)
                        return fail(p, p->line, "%s: unknown item type '%s': use email, appointment, "
                                    "contact and task, separated by spaces or commas", k->name, word);
                types |= (unsigned) t;
        }
        if (types == 0)
                return fail(p, p->line, "%s: list at least one of email, appointment, contact, task", k->name);
        *field = types;
        return 0;
}

/* A relative path names a file in the config file's directory. */
static int parse_ca_file(struct parser *p, const struct key_def *k, const char *value, void *base) {
        char **field = (char **) ((char *) base + k->offset);
        _cleanup_free_ char *joined = NULL;
        const char *path = value;
        _cleanup_close_ int fd = -1;
        char *resolved;

        if (value[0] != '/') {
                joined = path_join(p->dir, value);
                if (!joined)
                        return -ENOMEM;
                path = joined;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return fail(p, p->line, "%s: cannot read %s: %s", k->name, path, strerror(errno));
        resolved = realpath(path, NULL);
        if (!resolved)
                return fail(p, p->line, "%s: cannot resolve %s: %s", k->name, path, strerror(errno));
        free(*field);
        *field = resolved;
        return 0;
}

/* Open the secret file: an absolute path as is; a relative one in
 * $CREDENTIALS_DIRECTORY (systemd's LoadCredential=), else next to the
 * configuration file. O_NONBLOCK: a FIFO there must not hang the start. */
static int open_secret(struct parser *p, const struct key_def *k, const char *value, int *ret_fd,
                       char **ret_path) {
        _cleanup_free_ char *in_creds = NULL, *in_dir = NULL;
        const char *path = value;
        int fd;

        if (value[0] != '/') {
                if (p->credentials_dir) {
                        in_creds = path_join(p->credentials_dir, value);
                        if (!in_creds)
                                return -ENOMEM;
                        fd = open(in_creds, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                        if (fd >= 0) {
                                *ret_fd = fd;
                                *ret_path = TAKE_PTR(in_creds);
                                return 0;
                        }
                        if (errno != ENOENT)
                                return fail(p, p->line, "%s: cannot open %s: %s", k->name, in_creds,
                                            strerror(errno));
                }
                in_dir = path_join(p->dir, value);
                if (!in_dir)
                        return -ENOMEM;
                path = in_dir;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT && in_creds)
                        return fail(p, p->line, "%s: cannot open '%s': no such file in "
                                    "$CREDENTIALS_DIRECTORY (%s) nor in %s", k->name, value,
                                    p->credentials_dir, p->dir);
                return fail(p, p->line, "%s: cannot open %s: %s", k->name, path, strerror(errno));
        }
        *ret_fd = fd;
        *ret_path = strdup(path);
        if (!*ret_path) {
                close(fd);
                return -ENOMEM;
        }
        return 0;
}

static bool path_is_under(const char *path, const char *dir) {
        size_t n = dir ? strlen(dir) : 0;

        return dir && strncmp(path, dir, n) == 0 && path[n] == '/';
}

static void secret_buffer_clear(char (*buf)[SECRET_MAX + 1]) {
        explicit_bzero(*buf, sizeof(*buf));
}

static bool env_selected(const struct parser *p, const char *name) {
        if (p->n_only == 0)
                return true;
        for (size_t i = 0; i < p->n_only; i++)
                if (strcmp(p->only[i], name) == 0)
                        return true;
        return false;
}

/* The secret file is a regular file only its owner can read (or a systemd
 * credential, whose ACL shows as group bits). */
static int check_secret_file(struct parser *p, const struct key_def *k, int fd, const char *resolved) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return fail(p, p->line, "%s: cannot stat %s: %s", k->name, resolved, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return fail(p, p->line, "%s: %s is not a regular file", k->name, resolved);
        if ((st.st_mode & 077) && !(p->credentials_dir && path_is_under(resolved, p->credentials_dir)))
                return fail(p, p->line, "%s: %s may be read by group or others (mode %04o): "
                            "run chmod 600 %s", k->name, resolved, (unsigned) (st.st_mode & 07777), resolved);
        return 0;
}

/* The secret: the file's one line, its line end dropped; *ret_n bytes of buf. */
static int read_secret(struct parser *p, const struct key_def *k, int fd, const char *resolved,
                       char buf[static SECRET_MAX + 1], size_t *ret_n) {
        size_t n = 0;

        while (n < SECRET_MAX + 1) {
                ssize_t got = read(fd, buf + n, SECRET_MAX + 1 - n);

                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        return fail(p, p->line, "%s: cannot read %s: %s", k->name, resolved, strerror(errno));
                if (got == 0)
                        break;
                n += (size_t) got;
        }
        if (n > SECRET_MAX)
                return fail(p, p->line, "%s: %s is larger than %d bytes: it must hold the client secret "
                            "alone", k->name, resolved, SECRET_MAX);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
        if (n == 0)
                return fail(p, p->line, "%s: %s is empty: put the client secret in it", k->name, resolved);
        if (memchr(buf, '\n', n) || memchr(buf, '\0', n))
                return fail(p, p->line, "%s: %s holds more than one line: it must hold the client secret "
                            "alone", k->name, resolved);
        *ret_n = n;
        return 0;
}

static int parse_secret_file(struct parser *p, const struct key_def *k, const char *value, void *base) {
        struct env_config *env = base;
        _cleanup_free_ char *path = NULL, *resolved = NULL;
        _cleanup_close_ int fd = -1;
        _cleanup_(secret_buffer_clear) char buf[SECRET_MAX + 1];
        size_t n = 0;
        int r;

        /* An environment that -e leaves out needs no secret, and under
         * s3mond@.service only the instance's own credential is there: keep
         * the name as written and read nothing (the section is dropped). */
        if (!env_selected(p, env->name)) {
                char *copy = strdup(value);

                if (!copy)
                        return -ENOMEM;
                free(env->client_secret_file);
                env->client_secret_file = copy;
                return 0;
        }

        r = open_secret(p, k, value, &fd, &path);
        if (r < 0)
                return r;
        resolved = realpath(path, NULL);
        if (!resolved)
                return fail(p, p->line, "%s: cannot resolve %s: %s", k->name, path, strerror(errno));
        if ((r = check_secret_file(p, k, fd, resolved)) < 0 || (r = read_secret(p, k, fd, resolved, buf, &n)) < 0)
                return r;

        if (env->client_secret) {
                explicit_bzero(env->client_secret, strlen(env->client_secret));
                free(env->client_secret);
        }
        env->client_secret = strndup(buf, n);
        if (!env->client_secret)
                return -ENOMEM;
        free(env->client_secret_file);
        env->client_secret_file = TAKE_PTR(resolved);
        return 0;
}

/* ---- sections ----------------------------------------------------------- */

static int env_finish(struct parser *p, const struct section *s) {
        struct env_config *env = &p->cfg->envs[s->env];
        char buf[128];

        for (size_t i = 0; i < ELEMENTSOF(required_env_keys); i++)
                if (!*(char **) ((char *) env + required_env_keys[i].offset))
                        return fail(p, s->line, "%s: missing required key '%s' (%s)",
                                    section_name(p, s, buf, sizeof(buf)), required_env_keys[i].key,
                                    required_env_keys[i].what);
        if (!env->authority && !(env->authority = strdup(DEFAULT_AUTHORITY)))
                return -ENOMEM;
        if (!env->token_url &&
            asprintf(&env->token_url, "%s/%s/oauth2/v2.0/token", env->authority, env->tenant) < 0) {
                env->token_url = NULL;
                return -ENOMEM;
        }
        if (!env->scope && asprintf(&env->scope, "%s/.default", env->url) < 0) {
                env->scope = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int section_close(struct parser *p) {
        struct section *s = current_section(p);

        if (!s)
                return 0;
        p->in_section = false;
        return s->kind == SECTION_ENV ? env_finish(p, s) : 0;
}

static int env_add(struct parser *p, const char *name, size_t *ret) {
        struct s3_config *c = p->cfg;
        struct env_config *envs;

        envs = reallocarray(c->envs, c->n_envs + 1, sizeof(*envs));
        if (!envs)
                return -ENOMEM;
        c->envs = envs;
        envs[c->n_envs] = (struct env_config) {
                .name = strdup(name),
                .item_types = ITEM_EMAIL,
                .line = p->line,
        };
        if (!envs[c->n_envs].name)
                return -ENOMEM;
        *ret = c->n_envs++;
        return 0;
}

/* HEADER is the text between the brackets of a "[...]" line. */
static int section_open(struct parser *p, const char *header) {
        _cleanup_free_ char *trimmed = NULL;
        struct section *sections, *s;
        const char *name;
        size_t n;
        int r;

        r = section_close(p);
        if (r < 0)
                return r;

        name = header + strspn(header, " \t");
        trimmed = strdup(name);
        if (!trimmed)
                return -ENOMEM;
        for (n = strlen(trimmed); n > 0 && (trimmed[n - 1] == ' ' || trimmed[n - 1] == '\t'); n--)
                trimmed[n - 1] = '\0';

        sections = reallocarray(p->sections, p->n_sections + 1, sizeof(*sections));
        if (!sections)
                return -ENOMEM;
        p->sections = sections;
        s = &sections[p->n_sections];
        *s = (struct section) { .line = p->line };
        p->n_sections++;

        if (strcmp(trimmed, "s3mond") == 0) {
                for (size_t i = 0; i + 1 < p->n_sections; i++)
                        if (p->sections[i].kind == SECTION_MAIN)
                                return fail(p, p->line, "duplicate section [s3mond] (first on line %u): "
                                            "merge them", p->sections[i].line);
                s->kind = SECTION_MAIN;
        } else if (strncmp(trimmed, "environment", 11) == 0 &&
                   (trimmed[11] == '\0' || trimmed[11] == ' ' || trimmed[11] == '\t')) {
                const char *env = trimmed + 11 + strspn(trimmed + 11, " \t");

                if (!*env)
                        return fail(p, p->line, "[environment] needs a name: [environment NAME]");
                if (!environment_name_is_valid(env))
                        return fail(p, p->line, "bad environment name '%s': use 1 to %d of A-Z a-z 0-9 . _ - "
                                    "(not . or ..)", env, ENVIRONMENT_NAME_MAX);
                for (size_t i = 0; i < p->cfg->n_envs; i++)
                        if (strcmp(p->cfg->envs[i].name, env) == 0)
                                return fail(p, p->line, "duplicate [environment %s] (first on line %u)",
                                            env, p->cfg->envs[i].line);
                s->kind = SECTION_ENV;
                r = env_add(p, env, &s->env);
                if (r < 0)
                        return r;
        } else
                return fail(p, p->line, "unknown section [%s]: use [s3mond] or [environment NAME]", trimmed);

        p->in_section = true;
        return 0;
}

/* ---- libinih callbacks -------------------------------------------------- */

/* libinih hands its handler no line number and never calls it for a
 * section without keys, so lines come through this reader: it counts them,
 * opens sections as their headers go by, refuses indented lines (libinih
 * would silently glue them to the value above), drops '#' comments after
 * values (libinih knows only ';' there) and stops libinih at the first error. */
/* The next line of the file, its BOM (on line 1) left out: 1, 0 at the end,
 * <0 on error (p->error says it). */
static int next_line(struct parser *p, char **ret) {
        ssize_t n = getline(&p->buf, &p->bufsize, p->f);

        if (n < 0) {
                if (ferror(p->f))
                        (void) fail(p, p->line + 1, "cannot read: %s", strerror(errno));
                return ferror(p->f) ? -EIO : 0;
        }
        p->line++;
        if (memchr(p->buf, '\0', (size_t) n))
                return fail(p, p->line, "the line holds a NUL byte: is this a text file?");
        *ret = p->buf + (p->line == 1 && strncmp(p->buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0);
        return 1;
}

/* An indented line: libinih would take it for more of the value above. */
static int refuse_indented(struct parser *p, const char *start) {
        int n_key = (int) strcspn(start, "=:\r\n");

        while (n_key > 0 && (start[n_key - 1] == ' ' || start[n_key - 1] == '\t'))
                n_key--;
        return fail(p, p->line, "'%.*s' is indented: start every key and section at the "
                    "beginning of its line (values cannot continue on the next line)", n_key, start);
}

/* "[...]": the reader opens the section itself (libinih would never say so
 * for a section without keys). */
static int header_line(struct parser *p, char *start) {
        char *end = strchr(start + 1, ']'), *rest;
        int r;

        if (!end)
                return fail(p, p->line, "section header without ']': use [s3mond] or [environment NAME]");
        rest = end + 1 + strspn(end + 1, " \t\r\n");
        if (*rest && *rest != '#' && *rest != ';')
                return fail(p, p->line, "unexpected text after the section header");
        end[1] = '\0';
        *end = '\0';
        r = section_open(p, start + 1);
        if (r < 0 && !p->error)
                (void) fail(p, p->line, "out of memory");
        *end = ']';
        return r;
}

/* libinih knows only ';' comments after a value: drop a '#' one too. */
static void strip_comment(char *start) {
        for (char *c = start; (c = strchr(c, '#')); c++)
                if (c[-1] == ' ' || c[-1] == '\t') {
                        *c = '\0';
                        return;
                }
}

/* libinih hands its handler no line number and never calls it for a
 * section without keys, so lines come through this reader: it counts them,
 * opens sections as their headers go by, refuses indented lines (libinih
 * would silently glue them to the value above), drops '#' comments after
 * values (libinih knows only ';' there) and stops libinih at the first error. */
static char *reader(char *str, int num, void *stream) {
        struct parser *p = stream;
        char *line = NULL, *start;
        size_t len;

        if (p->error)
                return NULL;
        p->max_line = num;
        if (next_line(p, &line) <= 0)
                return NULL;
        start = line + strspn(line, " \t");
        if (strchr("#;\r\n", *start)) {
                /* A comment or blank line: libinih need not see it (nor its length). */
                str[0] = '\0';
                return str;
        }
        if (start > line) {
                (void) refuse_indented(p, start);
                return NULL;
        }
        if (*start == '[') {
                if (header_line(p, start) < 0)
                        return NULL;
        } else
                strip_comment(start);

        len = strlen(line);
        if (len + 2 > (size_t) num) {
                (void) fail(p, p->line, "the line is longer than %d characters", num - 3);
                return NULL;
        }
        memcpy(str, line, len + 1);
        return str;
}

static const struct key_def *key_find(enum section_kind kind, const char *name, bool *ret_other_section) {
        *ret_other_section = false;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (strcmp(keys[i].name, name) == 0) {
                        if (keys[i].section == kind)
                                return &keys[i];
                        *ret_other_section = true;
                }
        return NULL;
}

static int unknown_key(struct parser *p, const struct section *s, const char *name, bool other_section) {
        char known[256] = "", buf[128];
        size_t used = 0;

        if (strcmp(name, "client_secret") == 0 && s->kind == SECTION_ENV)
                return fail(p, p->line, "unknown key 'client_secret': secrets do not go in this file; "
                            "put it alone in a file of mode 0600 and name that with client_secret_file");
        if (other_section)
                return fail(p, p->line, "key '%s' belongs in %s, not in %s", name,
                            s->kind == SECTION_MAIN ? "an [environment NAME] section" : "[s3mond]",
                            section_name(p, s, buf, sizeof(buf)));
        /* The key table is fixed and its names short: they fit. */
        for (size_t i = 0; i < ELEMENTSOF(keys) && used < sizeof(known); i++)
                if (keys[i].section == s->kind)
                        used += (size_t) snprintf(known + used, sizeof(known) - used, "%s%s",
                                                  used ? ", " : "", keys[i].name);
        return fail(p, p->line, "unknown key '%s' in %s: known keys are %s", name,
                    section_name(p, s, buf, sizeof(buf)), known);
}

static int handle_key(struct parser *p, const char *name, const char *value) {
        struct section *s = current_section(p);
        const struct key_def *k;
        bool other_section;
        void *base;
        size_t i;
        int r;

        if (!s)
                return fail(p, p->line, "key '%s' is outside any section: put it under [s3mond] or "
                            "[environment NAME]", name);
        k = key_find(s->kind, name, &other_section);
        if (!k)
                return unknown_key(p, s, name, other_section);
        i = (size_t) (k - keys);
        if (s->key_line[i])
                return fail(p, p->line, "%s: set twice (first on line %u)", name, s->key_line[i]);
        s->key_line[i] = p->line;
        if (!*value)
                return fail(p, p->line, "%s: no value given", name);
        /* "key =#x" reads as "#x", but "key = #x" (how --check-config writes
         * it) as a comment: refuse what cannot be written back. */
        if (*value == '#' || *value == ';')
                return fail(p, p->line, "%s: a value cannot start with '%c' (it starts a comment after a "
                            "space)", name, *value);

        base = s->kind == SECTION_MAIN ? (void *) p->cfg : (void *) &p->cfg->envs[s->env];
        r = k->parse(p, k, value, base);
        if (r < 0 && !p->error)
                (void) fail(p, p->line, "%s: %s", name, strerror(-r));
        return r;
}

/* The reader is the authority on sections (libinih also truncates long
 * section names), so the section libinih passes is not used. */
static int handler(void *user, const char *section, const char *name, const char *value) {
        struct parser *p = user;

        if (p->error)
                return 0;
        return handle_key(p, name, value) >= 0;
}

/* ---- loading ------------------------------------------------------------ */

static void env_config_done(struct env_config *e) {
        free(e->name);
        free(e->url);
        free(e->tenant);
        free(e->client_id);
        if (e->client_secret) {
                explicit_bzero(e->client_secret, strlen(e->client_secret));
                free(e->client_secret);
        }
        free(e->client_secret_file);
        free(e->authority);
        free(e->token_url);
        free(e->scope);
        free(e->ca_file);
}

void config_free(struct s3_config *c) {
        if (!c)
                return;
        free(c->path);
        free(c->state_directory);
        free(c->metrics_file);
        for (size_t i = 0; i < c->n_envs; i++)
                env_config_done(&c->envs[i]);
        free(c->envs);
        free(c);
}

static void parser_done(struct parser *p) {
        free(p->dir);
        free(p->credentials_dir);
        if (p->f)
                fclose(p->f);
        free(p->buf);
        free(p->sections);
        free(p->error);
}

static int default_state_directory(char **ret) {
        const char *e = getenv("STATE_DIRECTORY");
        size_t n;

        /* systemd separates several StateDirectory= entries with ':'; the first is ours. */
        if (e && e[0] == '/') {
                n = strcspn(e, ":");
                *ret = strndup(e, n);
        } else
                *ret = strdup(DEFAULT_STATE_DIRECTORY);
        return *ret ? 0 : -ENOMEM;
}

static int parser_init(struct parser *p, const char *path) {
        _cleanup_free_ char *copy = strdup(path);
        const char *creds = getenv("CREDENTIALS_DIRECTORY");

        if (!copy)
                return -ENOMEM;
        p->dir = strdup(dirname(copy));
        if (!p->dir)
                return -ENOMEM;
        if (creds && *creds) {
                /* Resolved so that secrets found there are recognised as such. */
                p->credentials_dir = realpath(creds, NULL);
                if (!p->credentials_dir && !(p->credentials_dir = strdup(creds)))
                        return -ENOMEM;
        }
        p->cfg = calloc(1, sizeof(*p->cfg));
        if (!p->cfg)
                return -ENOMEM;
        *p->cfg = (struct s3_config) {
                .interval_sec = 60,
                .lookback_sec = DAY,
                .correlation_window_sec = 15 * 60,
                .resolve_after_sec = 3600,
                .config_refresh_sec = 15 * 60,
                .output = OUTPUT_AUTO,
                .syslog_facility = LOG_DAEMON,
                .path = strdup(path),
        };
        return p->cfg->path ? 0 : -ENOMEM;
}

/* KEY = VALUE as config_dump() writes it must fit on a line the reader
 * takes (the same test as reader()'s). */
static int value_fits(struct parser *p, unsigned line, const char *section, const char *key, const char *value) {
        size_t max, n = value ? strlen(value) : 0;

        if (p->max_line <= 0 || strlen(key) + 6 >= (size_t) p->max_line)
                return 0;
        max = (size_t) p->max_line - strlen(key) - 6; /* " = ", "\n", and reader()'s 2 */
        if (n <= max)
                return 0;
        return fail(p, line, "%s%s: '%.40s...' is %zu characters long once completed (a default, a resolved "
                    "path), more than a line of this file holds for it (%zu): set a shorter %s", section, key,
                    value, n, max, key);
}

/* config_dump()'s output must load again, but defaults built from other keys
 * (scope, token_url), resolved paths and $STATE_DIRECTORY can be longer than
 * anything the file held: refuse them here rather than dump what cannot load. */
static int check_dump_fits(struct parser *p) {
        const struct s3_config *c = p->cfg;
        int r;

        if ((r = value_fits(p, 1, "", "state_directory", c->state_directory)) < 0 ||
            (r = value_fits(p, 1, "", "metrics_file", c->metrics_file)) < 0)
                return r;
        for (size_t i = 0; i < c->n_envs; i++) {
                const struct env_config *e = &c->envs[i];
                char section[128];

                snprintf(section, sizeof(section), "[environment %s]: ", e->name);
                if ((r = value_fits(p, e->line, section, "url", e->url)) < 0 ||
                    (r = value_fits(p, e->line, section, "client_secret_file", e->client_secret_file)) < 0 ||
                    (r = value_fits(p, e->line, section, "authority", e->authority)) < 0 ||
                    (r = value_fits(p, e->line, section, "token_url", e->token_url)) < 0 ||
                    (r = value_fits(p, e->line, section, "scope", e->scope)) < 0 ||
                    (r = value_fits(p, e->line, section, "ca_file", e->ca_file)) < 0)
                        return r;
        }
        return 0;
}

static int parse(struct parser *p) {
        int r;

        r = ini_parse_stream(reader, p, handler, p);
        /* libinih's own syntax errors (a line without '='), unless ours came first. */
        if (r > 0 && (!p->error || (unsigned) r < p->error_line)) {
                p->error = mfree(p->error);
                return fail(p, (unsigned) r, "syntax error: expected [section], key = value, or a comment");
        }
        if (p->error)
                return -EINVAL;
        if (r < 0)
                return -ENOMEM;
        r = section_close(p);
        if (r < 0)
                return r;
        if (p->cfg->n_envs == 0)
                return fail(p, p->line ? p->line : 1, "no [environment NAME] section: configure at least "
                            "one environment");
        if (!p->cfg->state_directory) {
                r = default_state_directory(&p->cfg->state_directory);
                if (r < 0)
                        return r;
        }
        return check_dump_fits(p);
}

int config_load(const char *path, struct s3_config **ret, char **ret_error) {
        return config_load_selected(path, NULL, 0, ret, ret_error);
}

int config_load_selected(const char *path, char *const *names, size_t n, struct s3_config **ret,
                         char **ret_error) {
        _cleanup_(parser_done) struct parser p = { .path = path, .only = names, .n_only = n };
        int r;

        assert(path);
        assert(ret);
        assert(ret_error);

        *ret_error = NULL;
        r = parser_init(&p, path);
        if (r >= 0) {
                p.f = fopen(path, "re");
                if (!p.f) {
                        r = -errno;
                        if (asprintf(ret_error, "%s: cannot open: %s", path, strerror(-r)) < 0)
                                *ret_error = NULL;
                        config_free(p.cfg);
                        return r;
                }
                r = parse(&p);
        }
        if (r < 0) {
                if (p.error)
                        *ret_error = TAKE_PTR(p.error);
                else if (asprintf(ret_error, "%s: %s", path, strerror(-r)) < 0)
                        *ret_error = NULL;
                config_free(p.cfg);
                return r;
        }
        *ret = TAKE_PTR(p.cfg);
        return 0;
}

/* ---- using a loaded configuration --------------------------------------- */

void config_env_connection(const struct env_config *e, struct dv_connection *ret) {
        *ret = (struct dv_connection) {
                .name = e->name,
                .url = e->url,
                .tenant = e->tenant,
                .client_id = e->client_id,
                .client_secret = e->client_secret,
                .authority = e->authority,
                .token_url = e->token_url,
                .scope = e->scope,
                .ca_file = e->ca_file,
        };
}

int config_select_environments(struct s3_config *c, char *const *names, size_t n, char **ret_error) {
        size_t kept = 0;

        assert(c);
        assert(ret_error);
        if (n == 0)
                return 0;
        /* Check every name before changing anything. */
        for (size_t i = 0; i < n; i++) {
                bool found = false;

                for (size_t j = 0; j < c->n_envs && !found; j++)
                        found = strcmp(c->envs[j].name, names[i]) == 0;
                if (!found) {
                        _cleanup_free_ char *list = NULL;
                        size_t size = 0;
                        FILE *f = open_memstream(&list, &size);

                        if (!f)
                                return -ENOMEM;
                        for (size_t j = 0; j < c->n_envs; j++)
                                fprintf(f, "%s%s", j ? ", " : "", c->envs[j].name);
                        if (fclose(f) != 0)
                                return -ENOMEM;
                        if (asprintf(ret_error, "%s has no [environment %s] (configured: %s)",
                                     c->path, names[i], list) < 0)
                                *ret_error = NULL;
                        return -ENOENT;
                }
        }
        for (size_t j = 0; j < c->n_envs; j++) {
                bool wanted = false;

                for (size_t i = 0; i < n && !wanted; i++)
                        wanted = strcmp(c->envs[j].name, names[i]) == 0;
                if (wanted)
                        c->envs[kept++] = c->envs[j];
                else
                        env_config_done(&c->envs[j]);
        }
        c->n_envs = kept;
        return 0;
}

static void dump_duration(FILE *f, const char *key, uint64_t sec) {
        char buf[32];

        fprintf(f, "%s = %s\n", key, duration_format(sec, buf, sizeof(buf)));
}

int config_dump(const struct s3_config *c, FILE *f) {
        assert(c);
        assert(f);

        fprintf(f, "# s3mond: effective configuration from %s\n", c->path);
        fputs("[s3mond]\n", f);
        dump_duration(f, "interval", c->interval_sec);
        dump_duration(f, "lookback", c->lookback_sec);
        dump_duration(f, "correlation_window", c->correlation_window_sec);
        dump_duration(f, "resolve_after", c->resolve_after_sec);
        dump_duration(f, "config_refresh", c->config_refresh_sec);
        fprintf(f, "output = %s\n", output_kind_to_string(c->output));
        fprintf(f, "syslog_facility = %s\n", facility_to_string(c->syslog_facility));
        fprintf(f, "state_directory = %s\n", c->state_directory);
        if (c->metrics_file)
                fprintf(f, "metrics_file = %s\n", c->metrics_file);
        else
                fputs("# metrics_file: not set\n", f);

        for (size_t i = 0; i < c->n_envs; i++) {
                const struct env_config *e = &c->envs[i];
                fprintf(f, "\n[environment %s]\n", e->name);
                fprintf(f, "url = %s\n", e->url);
                fprintf(f, "tenant = %s\n", e->tenant);
                fprintf(f, "client_id = %s\n", e->client_id);
                fprintf(f, "client_secret_file = %s\n", e->client_secret_file);
                /* The secret itself, or anything derived from it (not even its length), never. */
                fprintf(f, "# client secret: loaded from %s\n", e->client_secret_file);
                fprintf(f, "authority = %s\n", e->authority);
                fprintf(f, "token_url = %s\n", e->token_url);
                fprintf(f, "scope = %s\n", e->scope);
                fputs("item_types =", f);
                for (unsigned t = ITEM_EMAIL; t <= ITEM_TASK; t <<= 1)
                        if (e->item_types & t)
                                fprintf(f, " %s", item_type_to_string((enum item_type) t));
                fputc('\n', f);
                if (e->ca_file)
                        fprintf(f, "ca_file = %s\n", e->ca_file);
                else
                        fputs("# ca_file: not set (the system's CA certificates)\n", f);
        }
        fflush(f);
        return ferror(f) ? -EIO : 0;
}
