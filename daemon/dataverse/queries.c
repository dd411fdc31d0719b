/* queries.c: each named query as entity set, columns, filter and order, turned
 * into URLs by odata.c. Must not know how requests are sent, nor alerts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guid.h"
#include "macro.h"
#include "model.h"
#include "odata.h"
#include "queries.h"
#include "rows.h"
#include "schema.h"

struct query_def {
        const char *name;
        const char *set;                /* NULL: the probe's entity set */
        const char *select;             /* NULL: the probe's primary key */
        const char *expand;
        const char *orderby;
        int table;                      /* enum rows_table, or -1 */
        bool annotations;               /* asks for the lookuplogicalname annotation */
        bool ids;                       /* filters on a list of ids, split over requests */
        /* Adds the query's conditions to the top-level filter. */
        void (*filter)(struct odata_filter *f, const struct dv_query_args *a, const char *const *ids, size_t n);
};

static void modified_since(struct odata_filter *f, const struct dv_query_args *a) {
        if (a->since > 0)
                odata_filter_cmp_datetime(f, "modifiedon", "ge", a->since);
}

static void filter_tracelogs(struct odata_filter *f, const struct dv_query_args *a, const char *const *ids, size_t n) {
        modified_since(f, a);
        odata_filter_cmp_int(f, "level", "ge", TRACELOG_LEVEL_WARNING);
}

static void filter_mailboxes(struct odata_filter *f, const struct dv_query_args *a, const char *const *ids, size_t n) {
        modified_since(f, a);
}

static void filter_workflows(struct odata_filter *f, const struct dv_query_args *a, const char *const *ids, size_t n) {
        struct odata_filter *any;

        odata_filter_eq_int(f, "category", WORKFLOW_CATEGORY_WORKFLOW);
        any = odata_filter_or(f);
        odata_filter_eq_int(any, "type", WORKFLOW_TYPE_DEFINITION);
        odata_filter_eq_int(any, "type", WORKFLOW_TYPE_ACTIVATION);
        modified_since(f, a);
}

static void filter_steps(struct odata_filter *f, const struct dv_query_args *a, const char *const *ids, size_t n) {
        odata_filter_eq_int(f, "customizationlevel", STEP_CUSTOMIZATION_CUSTOM);
        modified_since(f, a);
}

/* Evidence: created in [from, to], of one of the ids in column. */
static void created_between_of(struct odata_filter *f, const struct dv_query_args *a, const char *column,
                               const char *const *ids, size_t n) {
        struct odata_filter *any;

        odata_filter_cmp_datetime(f, "createdon", "ge", a->from);
        odata_filter_cmp_datetime(f, "createdon", "le", a->to);
        any = odata_filter_or(f);
        for (size_t i = 0; i < n; i++)
                odata_filter_eq_guid(any, column, ids[i]);
}

static void filter_sessions(struct odata_filter *f, const struct dv_query_args *a, const char *const *ids, size_t n) {
        odata_filter_eq_int(f, "statuscode", SESSION_STATUS_FAILED);
        created_between_of(f, a, "_processid_value", ids, n);
}

static void filter_traces(struct odata_filter *f, const struct dv_query_args *a, const char *const *ids, size_t n) {
        odata_filter_eq_int(f, "mode", TRACE_MODE_SYNCHRONOUS);
        odata_filter_ne_null(f, "exceptiondetails");
        created_between_of(f, a, "pluginstepid", ids, n);
}

static const struct query_def queries[_DV_QUERY_MAX] = {
        [DV_QUERY_TRACELOGS] = { "tracelogs", DV_SET_TRACELOGS, DV_SELECT_TRACELOGS, NULL,
                                 "modifiedon asc,tracelogid asc", ROWS_TRACELOGS, true, false, filter_tracelogs },
        [DV_QUERY_MAILBOXES] = { "mailboxes", DV_SET_MAILBOXES, DV_SELECT_MAILBOXES, NULL,
                                 "modifiedon asc,mailboxid asc", ROWS_MAILBOXES, false, false, filter_mailboxes },
        [DV_QUERY_WORKFLOWS] = { "workflows", DV_SET_WORKFLOWS, DV_SELECT_WORKFLOWS, NULL,
                                 "modifiedon asc,workflowid asc", ROWS_WORKFLOWS, false, false, filter_workflows },
        [DV_QUERY_STEPS] = { "steps", DV_SET_STEPS, DV_SELECT_STEPS, DV_EXPAND_STEPS,
                             "modifiedon asc,sdkmessageprocessingstepid asc", ROWS_STEPS, false, false, filter_steps },
        [DV_QUERY_FAILED_SESSIONS] = { "failed_sessions", DV_SET_SESSIONS, DV_SELECT_SESSIONS, NULL,
                                       "createdon asc,processsessionid asc", ROWS_SESSIONS, false, true,
                                       filter_sessions },
        [DV_QUERY_PLUGIN_TRACES] = { "plugin_traces", DV_SET_TRACES, DV_SELECT_TRACES, NULL,
                                     "createdon asc,plugintracelogid asc", ROWS_TRACES, false, true, filter_traces },
        [DV_QUERY_PROBE] = { "probe", NULL, NULL, NULL, NULL, -1, false, false, NULL },
};

const char *dv_query_kind_to_string(enum dv_query_kind k) {
        return k >= 0 && k < _DV_QUERY_MAX ? queries[k].name : NULL;
}

int dv_query_kind_from_string(const char *s) {
        for (int k = 0; s && k < _DV_QUERY_MAX; k++)
                if (strcmp(s, queries[k].name) == 0)
                        return k;
        return -EINVAL;
}

int dv_query_table(enum dv_query_kind k) {
        return k >= 0 && k < _DV_QUERY_MAX ? queries[k].table : -1;
}

void dv_query_prefer(enum dv_query_kind k, unsigned max_page_size, char *buf, size_t size) {
        if (k >= 0 && k < _DV_QUERY_MAX && queries[k].annotations)
                snprintf(buf, size, "Prefer: odata.include-annotations=\"%s\",odata.maxpagesize=%u",
                         &DV_ANNOTATION_LOOKUP_NAME[1], max_page_size); /* without its "@" */
        else
                snprintf(buf, size, "Prefer: odata.maxpagesize=%u", max_page_size);
}

static const char *probe_key(const char *entityset) {
        static const char *const sets[] = { DV_PROBE_SETS }, *const keys[] = { DV_PROBE_KEYS };

        _Static_assert(ELEMENTSOF(sets) == ELEMENTSOF(keys), "DV_PROBE_SETS and DV_PROBE_KEYS differ");
        for (size_t i = 0; entityset && i < ELEMENTSOF(sets); i++)
                if (strcmp(entityset, sets[i]) == 0)
                        return keys[i];
        return NULL;
}

static int url_for(const char *env_url, enum dv_query_kind kind, const struct dv_query_args *a,
                   const char *const *ids, size_t n_ids, char **ret) {
        const struct query_def *d = &queries[kind];
        _cleanup_(odata_query_freep) struct odata_query *q = NULL;
        const char *select = d->select;
        int r;

        if (kind == DV_QUERY_PROBE && !(select = probe_key(a->entityset)))
                return -EINVAL;
        r = odata_query_new(env_url, d->set ? d->set : a->entityset, &q);
        if (r < 0)
                return r;
        odata_select(q, select);
        if (d->filter)
                d->filter(odata_query_filter(q), a, ids, n_ids);
        if (d->expand)
                odata_expand(q, d->expand);
        if (d->orderby)
                odata_orderby(q, d->orderby);
        if (kind == DV_QUERY_PROBE)
                odata_top(q, 1);
        return odata_query_url(q, ret);
}

void dv_urls_free(char **urls, size_t n) {
        for (size_t i = 0; urls && i < n; i++)
                free(urls[i]);
        free(urls);
}

/* The ids once each (compared case-insensitively), validated; order kept. */
static int unique_ids(const char *const *ids, size_t n, const char ***ret, size_t *ret_n) {
        const char **u;
        size_t m = 0;

        if (n > 0 && !ids)
                return -EINVAL;
        u = calloc(n ? n : 1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                bool dup = false;

                if (!guid_is_valid(ids[i])) {
                        free(u);
                        return -EINVAL;
                }
                for (size_t j = 0; j < m && !dup; j++)
                        dup = strcasecmp(u[j], ids[i]) == 0;
                if (!dup)
                        u[m++] = ids[i];
        }
        *ret = u;
        *ret_n = m;
        return 0;
}

int dv_query_urls(const char *env_url, enum dv_query_kind kind, const struct dv_query_args *args,
                  unsigned ids_per_request, char ***ret_urls, size_t *ret_n) {
        _cleanup_free_ const char **ids = NULL;
        size_t n_ids = 0, n_urls = 1, chunk = ids_per_request ? ids_per_request : DV_DEFAULT_IDS_PER_REQUEST;
        char **urls;
        int r;

        if (!env_url || !args || kind < 0 || kind >= _DV_QUERY_MAX)
                return -EINVAL;
        if (queries[kind].ids) {
                r = unique_ids(args->ids, args->n_ids, &ids, &n_ids);
                if (r < 0)
                        return r;
                n_urls = (n_ids + chunk - 1) / chunk;
        }
        urls = calloc(n_urls ? n_urls : 1, sizeof(char *));
        if (!urls)
                return -ENOMEM;
        for (size_t i = 0; i < n_urls; i++) {
                size_t first = i * chunk, n = n_ids - first < chunk ? n_ids - first : chunk;

                r = url_for(env_url, kind, args, ids ? ids + first : NULL, queries[kind].ids ? n : 0, &urls[i]);
                if (r < 0) {
                        dv_urls_free(urls, n_urls);
                        return r;
                }
        }
        *ret_urls = urls;
        *ret_n = n_urls;
        return 0;
}
