/* client.h: the Dataverse Web API client of one environment: how the queries
 * of queries.h are asked, each answered asynchronously page by page with
 * typed rows (rows.h), then with a result. Paging, token handling, throttling
 * (429 pauses this environment only), retries with backoff inside a time
 * budget, and a cap on requests in flight all live here. Knows no alert. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "macro.h"
#include "queries.h"
#include "rows.h"

struct ev_loop;
struct http;
struct dv_connection;
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
        unsigned ids_per_request;       /* id lists are split into requests of this many;
                                         * default DV_DEFAULT_IDS_PER_REQUEST */
        uint64_t seed;                  /* jitter PRNG seed (tests); default from the clock */
};

/* One page of a query's answer. */
struct dv_page {
        enum dv_query_kind kind;
        unsigned number;                /* 1, 2, ... within the query */
        size_t first_index;             /* the place of its first row among the query's rows */
        struct rows rows;               /* typed rows of dv_query_table(kind); none for the probe */
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
        unsigned pages;         /* pages received (each handed to the page callback) */
        size_t rows;            /* rows in them: typed rows handed over, or, for the probe,
                                 * rows received */
        struct rows_skipped skipped; /* rows the parser refused (rows.h), the first one described */
        unsigned requests;      /* HTTP requests it took (token requests not counted) */
        time_t server_date;     /* Date header of the last response, 0 if none ... */
        time_t local_date;      /* ... and our clock when it arrived: the skew is the difference */
};

/* Called from the loop, inside the client's handling of a response: it must
 * neither start a query nor free the client (do that from done). It may take
 * rows: all of them (move page->rows.any away and set page->rows.n to 0) or
 * some (copy a row and zero it in place: a zeroed row frees nothing). The
 * client frees what is left when the callback returns. */
typedef void (*dv_page_fn)(struct dv_client *c, struct dv_page *page, void *userdata);

/* Called from the loop, never from inside the dv_query_*() call, after the
 * last page. The result and everything in it is freed when the callback
 * returns. The callback may start queries or free the client. */
typedef void (*dv_done_fn)(struct dv_client *c, struct dv_result *r, void *userdata);

/* conn is copied (what is needed of it), as are the options (NULL = defaults).
 * http is shared by every client and must outlive it. */
int dv_client_new(struct ev_loop *loop, struct http *http, const struct dv_connection *conn,
                  const struct dv_options *opt, struct dv_client **ret);
/* Cancels queued and in-flight queries: their callbacks are not called. */
void dv_client_free(struct dv_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct dv_client *, dv_client_free);

const char *dv_client_name(const struct dv_client *c);
/* Token requests this client's environment has sent (tests, metrics). */
unsigned dv_client_token_requests(const struct dv_client *c);

/* ---- queries ------------------------------------------------------------------
 * Each returns 0 when started (done will be called exactly once, unless the
 * client is freed first), or -EINVAL (bad argument: not a GUID, empty set
 * name) / -ENOMEM, and then neither callback is ever called.
 *
 * page (may be NULL: the rows are dropped) is called once per page received,
 * in order, before done; the pages of a long id list come chunk by chunk. A
 * query that fails after some pages has handed them over: its done says it
 * failed, and what the pages brought is incomplete. */

int dv_query(struct dv_client *c, enum dv_query_kind kind, const struct dv_query_args *args,
             dv_page_fn page, dv_done_fn done, void *userdata);

/* The named queries of queries.h, spelled out. */
int dv_query_tracelogs_since(struct dv_client *c, time_t since, dv_page_fn page, dv_done_fn done, void *userdata);
int dv_query_mailboxes_since(struct dv_client *c, time_t since, dv_page_fn page, dv_done_fn done, void *userdata);
int dv_query_workflows_since(struct dv_client *c, time_t since, dv_page_fn page, dv_done_fn done, void *userdata);
int dv_query_steps_since(struct dv_client *c, time_t since, dv_page_fn page, dv_done_fn done, void *userdata);
/* An empty id list answers with no page and no request. */
int dv_query_failed_sessions(struct dv_client *c, const char *const *process_ids, size_t n, time_t from,
                             time_t to, dv_page_fn page, dv_done_fn done, void *userdata);
int dv_query_plugin_traces(struct dv_client *c, const char *const *step_ids, size_t n, time_t from, time_t to,
                           dv_page_fn page, dv_done_fn done, void *userdata);
/* Rows are not parsed; -EACCES (403) names a missing read privilege;
 * server_date/local_date give the clock skew. */
int dv_query_probe(struct dv_client *c, const char *entityset, dv_done_fn done, void *userdata);
