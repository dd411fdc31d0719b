/* odata.h: every Dataverse Web API URL is built here, so quoting and
 * percent-encoding happen in one place. A query collects $select, $filter,
 * $orderby, $expand and $top; the filter is a tree of and/or groups of
 * typed comparisons (string literals quoted with ' doubled; GUIDs, numbers
 * and datetimes unquoted). Builders never fail on the spot: the first
 * error (bad column name, operator, GUID, UTF-8, out of memory) sticks to
 * the query and odata_query_url() returns it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "macro.h"

struct odata_query;
struct odata_filter; /* a group of conditions joined by "and" or "or"; owned by its query */

/* service_root: the environment URL ("https://contoso.crm.dynamics.com",
 * a trailing slash is ignored); entityset: "tracelogs". */
int odata_query_new(const char *service_root, const char *entityset, struct odata_query **ret);
void odata_query_free(struct odata_query *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct odata_query *, odata_query_free);

/* Comma-separated column names; required (Dataverse returns every column otherwise). */
void odata_select(struct odata_query *q, const char *columns);
/* "modifiedon asc,tracelogid asc": column paths, each optionally asc/desc. */
void odata_orderby(struct odata_query *q, const char *expr);
/* "sdkmessageid($select=name),...": passed through encoded, not parsed. */
void odata_expand(struct odata_query *q, const char *expr);
void odata_top(struct odata_query *q, unsigned n);

/* The query's top-level group (conditions joined by "and"). A query
 * whose root group is empty has no $filter. */
struct odata_filter *odata_query_filter(struct odata_query *q);
/* A nested group inside parent, parenthesised when it has more than one
 * condition. An empty nested group is an error at odata_query_url() time
 * (an empty "or" of ids must not silently match everything). Returns
 * NULL when out of memory (the error sticks; adders accept NULL). */
struct odata_filter *odata_filter_and(struct odata_filter *parent);
struct odata_filter *odata_filter_or(struct odata_filter *parent);

/* op is one of eq ne gt ge lt le. col is a column or navigation path
 * ("sdkmessageid/name"): [A-Za-z_][A-Za-z0-9_]* segments joined by '/'. */
void odata_filter_cmp_str(struct odata_filter *f, const char *col, const char *op, const char *value);
void odata_filter_eq_str(struct odata_filter *f, const char *col, const char *value);
/* GUID: 8-4-4-4-12 hex digits, nothing else (no braces); written unquoted, lower case. */
void odata_filter_eq_guid(struct odata_filter *f, const char *col, const char *guid);
void odata_filter_cmp_int(struct odata_filter *f, const char *col, const char *op, int64_t value);
void odata_filter_eq_int(struct odata_filter *f, const char *col, int64_t value);
void odata_filter_eq_bool(struct odata_filter *f, const char *col, bool value);
/* col op 2026-11-25T09:00:00Z (unquoted, UTC) */
void odata_filter_cmp_datetime(struct odata_filter *f, const char *col, const char *op, time_t t);
/* col ne null */
void odata_filter_ne_null(struct odata_filter *f, const char *col);
/* Microsoft.Dynamics.CRM.In(PropertyName='col',PropertyValues=['a','b']):
 * values are string literals (quoted, ' doubled); n must be > 0. */
void odata_filter_in(struct odata_filter *f, const char *col, const char *const *values, size_t n);

/* The full URL, every query value percent-encoded. 0, or the first
 * builder error (-EINVAL, -EILSEQ, -ENOMEM). Caller frees *ret_url. */
int odata_query_url(const struct odata_query *q, char **ret_url);

/* ---- the primitives, exposed for tests ---------------------------------- */

/* 'value' with every ' doubled; -EILSEQ when not valid UTF-8. */
int odata_quote_string(const char *value, char **ret);
/* Percent-encode for a query value: everything but ALPHA DIGIT - . _ ~
 * and the OData punctuation ' ( ) , : / is written %XX (so & # % + = ;
 * space and every non-ASCII byte are encoded). */
int odata_url_encode(const char *s, char **ret);
bool odata_column_valid(const char *s);
