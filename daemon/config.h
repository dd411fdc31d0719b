/* config.h: the effective configuration (DESIGN.md section 5) as one value.
 * config.c fills it from the INI file with libinih and validates all of it;
 * a loaded config is immutable and replaced whole on reload. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"

enum output_kind {
        OUTPUT_AUTO,    /* journal under systemd, stderr otherwise */
        OUTPUT_JOURNAL,
        OUTPUT_SYSLOG,
        OUTPUT_STDERR,
        OUTPUT_JSON,
};

struct env_config {
        char *name;             /* [A-Za-z0-9._-]{1,64} */
        char *url;              /* no trailing slash */
        char *tenant;           /* GUID or domain */
        char *client_id;        /* GUID */
        char *client_secret;    /* read from client_secret_file; never printed */
        char *client_secret_file; /* resolved absolute path */
        char *authority;        /* default https://login.microsoftonline.com */
        char *token_url;        /* default {authority}/{tenant}/oauth2/v2.0/token */
        char *scope;            /* default {url}/.default */
        unsigned item_types;    /* enum item_type flags, default ITEM_EMAIL */
        char *ca_file;          /* may be NULL */
        unsigned line;          /* where the section starts, for messages */
};

struct s3_config {
        char *path;                     /* the file it came from */
        uint64_t interval_sec;          /* default 60 */
        uint64_t lookback_sec;          /* default 24h */
        uint64_t correlation_window_sec;/* default 15m */
        uint64_t resolve_after_sec;     /* default 1h */
        uint64_t config_refresh_sec;    /* default 15m */
        enum output_kind output;        /* default OUTPUT_AUTO */
        int syslog_facility;            /* LOG_DAEMON etc., default LOG_DAEMON */
        char *state_directory;          /* default $STATE_DIRECTORY, else /var/lib/s3mond */
        char *metrics_file;             /* may be NULL */
        struct env_config *envs;
        size_t n_envs;
};

#define S3_EX_CONFIG 78 /* EX_CONFIG */

/* Load and validate PATH. On failure returns -errno and sets *ret_error to
 * "PATH:LINE: message" naming the key (caller frees); *ret is untouched. */
int config_load(const char *path, struct s3_config **ret, char **ret_error);
void config_free(struct s3_config *c);

/* Keep only the named environments (from -e); -ENOENT with *ret_error
 * naming the first unknown one. */
int config_select_environments(struct s3_config *c, char *const *names, size_t n, char **ret_error);

/* Print the effective configuration as INI, secrets masked. */
int config_dump(const struct s3_config *c, FILE *f);

const char *output_kind_to_string(enum output_kind k);
int output_kind_from_string(const char *s);     /* -EINVAL if unknown */

/* [A-Za-z0-9._-]{1,64}, not "." or "..": environment names name files. */
bool config_environment_name_is_valid(const char *name);

/* OUTPUT_AUTO becomes journal when $JOURNAL_STREAM or $INVOCATION_ID shows a
 * systemd service, stderr otherwise; other kinds are returned as they are. */
enum output_kind output_kind_resolve(enum output_kind k);

DEFINE_TRIVIAL_CLEANUP_FUNC(struct s3_config *, config_free);
