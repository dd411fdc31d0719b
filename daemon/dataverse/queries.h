/* queries.h: what s3mond asks Dataverse (docs/design.md §6): the named queries, each
 * as the first-page URLs of its requests, the Prefer header they send and the
 * table of rows they answer with. Pure. Knows tables and columns (schema.h),
 * not how a request is sent, retried or paged (client.h). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define DV_DEFAULT_IDS_PER_REQUEST 20u

enum dv_query_kind {
        DV_QUERY_TRACELOGS,             /* level >= 2 modified since, oldest first, with the regarding
                                         * object's lookuplogicalname annotation */
        DV_QUERY_MAILBOXES,             /* modified since (0: all) */
        DV_QUERY_WORKFLOWS,             /* definitions and activations (category 0, type 1 or 2)
                                         * modified since (0: a full read, which shows deletions) */
        DV_QUERY_STEPS,                 /* custom steps modified since, message, entity and plug-in
                                         * type expanded */
        DV_QUERY_FAILED_SESSIONS,       /* statuscode 6 sessions of the ids, created in [from, to] */
        DV_QUERY_PLUGIN_TRACES,         /* synchronous traces with an exception, of the step ids,
                                         * created in [from, to] */
        DV_QUERY_PROBE,                 /* $top=1 of an entity set of DV_PROBE_SETS (--probe) */
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

/* The rows.h table (enum rows_table) a query's rows are parsed as, or -1 when
 * they are not parsed (the probe reads any table). */
int dv_query_table(enum dv_query_kind k);

/* "Prefer: odata.maxpagesize=N" (and the annotation a query needs) into buf. */
void dv_query_prefer(enum dv_query_kind k, unsigned max_page_size, char *buf, size_t size);

/* The first-page URL of each request a query makes (more than one for long
 * id lists, ids_per_request at a time (0: the default); none for an empty
 * list). Ids must be GUIDs (-EINVAL otherwise) and are asked once each,
 * whatever their case. Caller frees with dv_urls_free(). */
int dv_query_urls(const char *env_url, enum dv_query_kind kind, const struct dv_query_args *args,
                  unsigned ids_per_request, char ***ret_urls, size_t *ret_n);
void dv_urls_free(char **urls, size_t n);
