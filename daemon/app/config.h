/* config.h: the effective configuration (docs/design.md §5) as one value.
 * config.c fills it from the INI file with libinih and validates all of it;
 * a loaded config is immutable and replaced whole on reload. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"
#include "output.h"

struct dv_connection;

struct env_config {
        char *name;             /* [A-Za-z0-9._-]{1,64} */
        char *url;              /* https:// (http:// for loopback only), no trailing slash */
        char *tenant;           /* GUID or domain, lower case */
        char *client_id;        /* GUID, lower case */
        char *client_secret;    /* read from client_secret_file; never printed, logged or
                                 * stored; zeroed by config_free() */
        char *client_secret_file; /* resolved absolute path */
        char *authority;        /* default https://login.microsoftonline.com */
        char *token_url;        /* default {authority}/{tenant}/oauth2/v2.0/token */
        char *scope;            /* default {url}/.default */
        unsigned item_types;    /* enum item_type flags (model.h), default ITEM_EMAIL */
        char *ca_file;          /* resolved absolute path, or NULL: the system's CAs */
        unsigned line;          /* where the section starts, for messages */
};

struct s3_config {
        char *path;                     /* the file it came from */
        uint64_t interval_sec;          /* default 60, 1s..1d */
        uint64_t lookback_sec;          /* default 24h, 0..365d */
        uint64_t correlation_window_sec;/* default 15m, 1s..1d */
        uint64_t resolve_after_sec;     /* default 1h, 1s..365d */
        uint64_t config_refresh_sec;    /* default 15m, 1s..365d */
        enum output_kind output;        /* default OUTPUT_AUTO; -o replaces it (cli_apply) */
        int syslog_facility;            /* LOG_DAEMON etc., default LOG_DAEMON */
        char *state_directory;          /* absolute; default the first entry of
                                         * $STATE_DIRECTORY, else /var/lib/s3mond */
        char *metrics_file;             /* absolute, or NULL: no metrics */
        struct env_config *envs;
        size_t n_envs;
};

#define S3_EX_CONFIG 78 /* EX_CONFIG */

/* Load and validate PATH, reading the client secrets. On failure returns
 * -errno and sets *ret_error to "PATH:LINE: message" naming the key and what
 * it accepts ("PATH: message" when the file cannot be read; NULL when out of
 * memory; caller frees); *ret is untouched. Reads $CREDENTIALS_DIRECTORY and
 * $STATE_DIRECTORY. */
int config_load(const char *path, struct s3_config **ret, char **ret_error);
/* config_load() for the environments NAMES (from -e; N == 0: all): the others'
 * sections are checked as usual but their client secrets are not read, so
 * that an instance of s3mond@.service needs only its own credential. The
 * caller then drops those environments with config_select_environments()
 * (cli_apply() does), which also reports a name that is not configured. */
int config_load_selected(const char *path, char *const *names, size_t n, struct s3_config **ret,
                         char **ret_error);
void config_free(struct s3_config *c);

/* Keep only the named environments (from -e), in the file's order; n == 0
 * keeps all. -ENOENT with *ret_error naming the first unknown one, and then
 * nothing changes. */
int config_select_environments(struct s3_config *c, char *const *names, size_t n, char **ret_error);

/* Print the effective configuration as INI, every default filled in. Each
 * secret shows as the file it came from, never itself (not even its length).
 * The output loads again as the same configuration. 0 or -EIO. */
int config_dump(const struct s3_config *c, FILE *f);

/* What the Dataverse client and its token cache need of an environment; the
 * strings stay e's. */
void config_env_connection(const struct env_config *e, struct dv_connection *ret);

DEFINE_TRIVIAL_CLEANUP_FUNC(struct s3_config *, config_free);
