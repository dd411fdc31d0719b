/* dataverse.h: the Dataverse Web API client of one environment: the named
 * queries s3mond asks, each answered asynchronously with all pages' rows.
 * Paging, token handling, throttling (429 pauses this environment only),
 * retries with backoff inside a time budget, and a cap on requests in
 * flight all live here. Knows tables and columns (schema.h), not alerts. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "macro.h"

struct ev_loop;
struct http;
struct env_config;
struct dv_client;

/* Every field: 0 means the default. */
struct dv_options {
        unsigned max_page_size;         /* Prefer: odata.maxpagesize; default 5000 (the service's cap) */
        unsigned max_in_flight;         /* requests at once for this environment; default 4 */
        double initial_backoff_sec;     /* first retry delay before jitter; default 1 */
        double max_backoff_sec;         /* backoff cap (the monitor: its poll interval); default 60 */
        double retry_budget_sec;        /* a query failing for longer gives up; default 300 */
        double max_retry_after_sec;     /* longest Retry-After honoured; default 3600 */
        size_t max_response;            /* bytes per page; default 64 MiB */
        long timeout_ms;                /* per request, stalls included; default 60000 */
        unsigned ids_per_request;       /* id lists are split into requests of this many; default 20 */
        uint64_t seed;                  /* jitter PRNG seed (tests); default from the clock */
};

struct dv_result {
        int error;              /* 0, or -errno:
                                 *  -EKEYREJECTED  credentials refused / token refused twice (401)
                                 *  -EACCES        403: the application user lacks a privilege
                                 *  -EINVAL        400: the service rejected the query (our bug)
                                 *  -ENOENT        404: no such entity set
                                 *  -EBUSY         throttled (429) past the retry budget
                                 *  -EPROTO        nextLink to another origin, TLS failure
                                 *  -EFBIG         a page over max_response
                                 *  -EBADMSG       bodies not JSON / not {"value":[...]} until the budget ran out
                                 *  -ETIMEDOUT, -ECONNRESET, -ECONNREFUSED, -EHOSTUNREACH, -EIO (5xx)
                                 *                 transient failures until the budget ran out */
        char *message;          /* on error: "ENV: QUERY: what happened", no secret; else NULL */
        long http_status;       /* of the last response, 0 if none */
        const char *dv_code;    /* Dataverse error.code ("0x80040220") of the last response, or NULL */
        json_t *rows;           /* on success: JSON array of every page's rows, in order
                                 * (for id lists: chunk by chunk); NULL on error. Owned by
                                 * the result: json_incref() to keep it. */
        unsigned requests;      /* HTTP requests it took (token requests not counted) */
        time_t server_date;     /* Date header of the last response, 0 if none ... */
        time_t local_date;      /* ... and our clock when it arrived: the skew is the difference */
};

/* Called from the loop, never from inside the dv_query_*() call. The
 * result and everything in it is freed when the callback returns. The
 * callback may start queries or free the client. */
typedef void (*dv_done_fn)(struct dv_client *c, struct dv_result *r, void *userdata);

/* env is copied (what is needed of it), as are the options (NULL = defaults).
 * http is shared by every client and must outlive it. */
int dv_client_new(struct ev_loop *loop, struct http *http, const struct env_config *env,
                  const struct dv_options *opt, struct dv_client **ret);
/* Cancels queued and in-flight queries: their callbacks are not called. */
void dv_client_free(struct dv_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct dv_client *, dv_client_free);

const char *dv_client_name(const struct dv_client *c);
/* Token requests this client's environment has sent (tests, metrics). */
unsigned dv_client_token_requests(const struct dv_client *c);

/* ---- named queries ----------------------------------------------------------
 * Each returns 0 when started (done will be called exactly once, unless the
 * client is freed first), or -EINVAL (bad argument: not a GUID, empty set
 * name) / -ENOMEM, and then done is never called. */

/* tracelogs with level >= 2 (warning, error) modified at or after since,
 * oldest first, with the regarding object's logical name annotation. */
int dv_query_tracelogs_since(struct dv_client *c, time_t since, dv_done_fn done, void *userdata);
/* mailboxes modified at or after since; since 0: all of them. */
int dv_query_mailboxes_since(struct dv_client *c, time_t since, dv_done_fn done, void *userdata);
/* Workflow definitions and activations (category 0, type 1 or 2) modified
 * at or after since; since 0: a full read (shows deletions). */
int dv_query_workflows_since(struct dv_client *c, time_t since, dv_done_fn done, void *userdata);
/* Custom plug-in steps (customizationlevel 1) modified at or after since
 * (0: all), with message name, entity and plug-in type expanded. */
int dv_query_steps_since(struct dv_client *c, time_t since, dv_done_fn done, void *userdata);
/* Failed (statuscode 6) process sessions of the given processes created in
 * [from, to]. Long id lists are split over several requests and merged;
 * an empty list answers with no rows and no request. */
int dv_query_failed_sessions(struct dv_client *c, const char *const *process_ids, size_t n,
                             time_t from, time_t to, dv_done_fn done, void *userdata);
/* Synchronous (mode 0) plug-in trace rows with an exception, of the given
 * steps, created in [from, to]; split and merged like failed sessions. */
int dv_query_plugin_traces(struct dv_client *c, const char *const *step_ids, size_t n,
                           time_t from, time_t to, dv_done_fn done, void *userdata);
/* $top=1 of an entity set from DV_PROBE_SETS, for --probe: -EACCES (403)
 * names a missing read privilege; server_date/local_date give the clock skew. */
int dv_query_probe(struct dv_client *c, const char *entityset, dv_done_fn done, void *userdata);

/* ---- the same, by kind (for drivers and tests) -------------------------------- */

enum dv_query_kind {
        DV_QUERY_TRACELOGS,
        DV_QUERY_MAILBOXES,
        DV_QUERY_WORKFLOWS,
        DV_QUERY_STEPS,
        DV_QUERY_FAILED_SESSIONS,
        DV_QUERY_PLUGIN_TRACES,
        DV_QUERY_PROBE,
        _DV_QUERY_MAX,
};

struct dv_query_args {
        time_t since;                   /* *_since queries */
        time_t from, to;                /* sessions, traces */
        const char *const *ids;         /* sessions: process ids; traces: step ids */
        size_t n_ids;
        const char *entityset;          /* probe */
};

const char *dv_query_kind_to_string(enum dv_query_kind k);     /* "tracelogs", ... */
int dv_query_kind_from_string(const char *s);                   /* kind, or -EINVAL */

int dv_query(struct dv_client *c, enum dv_query_kind kind, const struct dv_query_args *args,
             dv_done_fn done, void *userdata);

/* The first-page URL of each request a query makes (more than one for long
 * id lists, ids_per_request at a time; none for an empty list). Pure: for
 * golden tests and debugging. Caller frees with dv_urls_free(). */
int dv_query_urls(const char *env_url, enum dv_query_kind kind, const struct dv_query_args *args,
                  unsigned ids_per_request, char ***ret_urls, size_t *ret_n);
void dv_urls_free(char **urls, size_t n);

/* A NUL-terminated copy of the N bytes of JSON text at S, the same length, with what
 * jansson refuses but the service may send made harmless: "\u0000" and unpaired
 * surrogate escapes become "\ufffd", each byte of an ill-formed UTF-8 sequence '?'.
 * *ret_repairs (may be NULL) counts the replacements. NULL only on ENOMEM. Pure. */
char *dv_json_repair(const char *s, size_t n, size_t *ret_repairs);
