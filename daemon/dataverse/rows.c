/* rows.c: owns the one JSON -> typed row parser per table of schema.h and the skip policy of a
 * page. Must not know what the rows mean nor how they were fetched. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guid.h"
#include "log.h"
#include "macro.h"
#include "rows.h"
#include "schema.h"
#include "timeutil.h"

/* Where a parse is, for error messages: "workflows" or
 * "workflows row 3 (workflowid 0f...)". */
struct ctx {
        const json_t *row;
        const char *where;
        char **error;
};

static int fail(const struct ctx *c, const char *column, const char *fmt, ...) _printf_(3, 4);
static int fail(const struct ctx *c, const char *column, const char *fmt, ...) {
        _cleanup_free_ char *what = NULL;
        va_list ap;
        int r;

        if (!c->error)
                return -EINVAL;
        va_start(ap, fmt);
        r = vasprintf(&what, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (column)
                r = asprintf(c->error, "%s: column '%s': %s", c->where, column, what);
        else
                r = asprintf(c->error, "%s: %s", c->where, what);
        if (r < 0) {
                *c->error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

static const char *json_type_name(const json_t *v) {
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
                return "an integer";
        case JSON_REAL:
                return "a number with a fraction";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        }
        return "something else";
}

/* A value quoted in an error message: printable ASCII only, bounded. */
static char *quote_value(const char *s, char buf[static 48]) {
        size_t i, n = 0;

        for (i = 0; s[i] && n < 40; i++)
                buf[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        if (s[i]) {
                memcpy(buf + n, "...", 3);
                n += 3;
        }
        buf[n] = '\0';
        return buf;
}

/* The column's value, or NULL when it is absent or null: Dataverse sends
 * null for an empty column and some proxies drop null members. */
static const json_t *column(const struct ctx *c, const char *name) {
        const json_t *v = json_object_get(c->row, name);
        return v && !json_is_null(v) ? v : NULL;
}

static int missing(const struct ctx *c, const char *name) {
        return fail(c, name, json_object_get(c->row, name) ? "is null" : "is missing");
}

static int get_string(const struct ctx *c, const char *name, bool required, char **ret) {
        const json_t *v = column(c, name);

        if (!v) {
                *ret = NULL;
                return required ? missing(c, name) : 0;
        }
        if (!json_is_string(v))
                return fail(c, name, "expected a string, got %s", json_type_name(v));
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static int get_guid(const struct ctx *c, const char *name, bool required, char **ret) {
        const json_t *v = column(c, name);
        char buf[GUID_STRLEN + 1], q[48];

        if (!v) {
                *ret = NULL;
                return required ? missing(c, name) : 0;
        }
        if (!json_is_string(v))
                return fail(c, name, "expected a GUID string, got %s", json_type_name(v));
        if (guid_normalize(json_string_value(v), buf) < 0)
                return fail(c, name, "not a GUID: \"%s\"", quote_value(json_string_value(v), q));
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

/* Integers and picklists. *ret_present (may be NULL) tells null from 0. */
static int get_integer(const struct ctx *c, const char *name, bool required, int64_t min, int64_t max,
                       int64_t *ret, bool *ret_present) {
        const json_t *v = column(c, name);

        if (ret_present)
                *ret_present = !!v;
        if (!v) {
                *ret = 0;
                return required ? missing(c, name) : 0;
        }
        if (!json_is_integer(v))
                return fail(c, name, "expected an integer, got %s", json_type_name(v));
        if (json_integer_value(v) < min || json_integer_value(v) > max)
                return fail(c, name, "%" JSON_INTEGER_FORMAT " is out of range", json_integer_value(v));
        *ret = json_integer_value(v);
        return 0;
}

static int get_int(const struct ctx *c, const char *name, bool required, int *ret) {
        int64_t v;
        int r = get_integer(c, name, required, INT_MIN, INT_MAX, &v, NULL);
        *ret = (int) v;
        return r;
}

static int get_bool(const struct ctx *c, const char *name, bool *ret) {
        const json_t *v = column(c, name);

        *ret = false;
        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return fail(c, name, "expected true or false, got %s", json_type_name(v));
        *ret = json_is_true(v);
        return 0;
}

static int get_time(const struct ctx *c, const char *name, bool required, time_t *ret) {
        const json_t *v = column(c, name);
        char q[48];

        *ret = 0;
        if (!v)
                return required ? missing(c, name) : 0;
        if (!json_is_string(v))
                return fail(c, name, "expected an ISO-8601 date-time string, got %s", json_type_name(v));
        if (iso8601_parse(json_string_value(v), ret) < 0)
                return fail(c, name, "not an ISO-8601 date-time: \"%s\"",
                            quote_value(json_string_value(v), q));
        return 0;
}

/* A string member of an expanded single-valued navigation property, e.g.
 * "sdkmessageid":{"name":"Create"}; NULL when the lookup is empty. */
static int get_expanded_string(const struct ctx *c, const char *nav, const char *name, char **ret) {
        const json_t *o = column(c, nav), *v;
        _cleanup_free_ char *label = NULL;

        *ret = NULL;
        if (!o)
                return 0;
        if (asprintf(&label, "%s/%s", nav, name) < 0)
                return -ENOMEM;
        if (!json_is_object(o))
                return fail(c, nav, "expected an expanded object, got %s", json_type_name(o));
        v = json_object_get(o, name);
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return fail(c, label, "expected a string, got %s", json_type_name(v));
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static int check_object(const struct ctx *c) {
        if (!c->row)
                return fail(c, NULL, "expected a row object, got nothing");
        if (!json_is_object(c->row))
                return fail(c, NULL, "expected a row object, got %s", json_type_name(c->row));
        return 0;
}

/* ---- one parser per table ------------------------------------------------ */

static int parse_tracelog(const struct ctx *c, struct tracelog_row *t) {
        const json_t *type;
        int r;

        if ((r = check_object(c)) < 0 ||
            (r = get_guid(c, "tracelogid", true, &t->id)) < 0 ||
            (r = get_guid(c, "_regardingobjectid_value", false, &t->regarding_id)) < 0 ||
            (r = get_int(c, "level", false, &t->level)) < 0 ||
            (r = get_string(c, "text", false, &t->text)) < 0 ||
            (r = get_string(c, "errordetails", false, &t->errordetails)) < 0 ||
            (r = get_time(c, "createdon", false, &t->created_on)) < 0 ||
            (r = get_time(c, "modifiedon", true, &t->modified_on)) < 0)
                return r;
        type = column(c, "_regardingobjectid_value" DV_ANNOTATION_LOOKUP_NAME);
        if (type) {
                if (!json_is_string(type))
                        return fail(c, "_regardingobjectid_value" DV_ANNOTATION_LOOKUP_NAME,
                                    "expected a string, got %s", json_type_name(type));
                t->regarding_type = strdup(json_string_value(type));
                if (!t->regarding_type)
                        return -ENOMEM;
        }
        if (t->created_on == 0)
                t->created_on = t->modified_on;
        return 0;
}

static int parse_mailbox(const struct ctx *c, struct mailbox_row *m) {
        int r;

        if ((r = check_object(c)) < 0 ||
            (r = get_guid(c, "mailboxid", true, &m->id)) < 0 ||
            (r = get_string(c, "name", false, &m->name)) < 0 ||
            (r = get_string(c, "emailaddress", false, &m->email)) < 0 ||
            (r = get_int(c, "incomingemailstatus", false, &m->incoming_status)) < 0 ||
            (r = get_int(c, "actstatus", false, &m->act_status)) < 0 ||
            (r = get_integer(c, "lastsyncerrorcode", false, INT32_MIN, INT32_MAX, &m->last_error_code,
                             &m->has_error_code)) < 0 ||
            (r = get_string(c, "lastsyncerror", false, &m->last_error)) < 0 ||
            (r = get_time(c, "lastsyncerroroccurredon", false, &m->last_error_on)) < 0 ||
            (r = get_time(c, "lastsuccessfulsynccompletedon", false, &m->last_success_on)) < 0 ||
            (r = get_time(c, "modifiedon", true, &m->modified_on)) < 0)
                return r;
        return 0;
}

static int parse_workflow(const struct ctx *c, struct workflow_row *w) {
        int r;

        if ((r = check_object(c)) < 0 ||
            (r = get_guid(c, "workflowid", true, &w->id)) < 0 ||
            (r = get_string(c, "name", false, &w->name)) < 0 ||
            (r = get_guid(c, "_parentworkflowid_value", false, &w->parent_id)) < 0 ||
            (r = get_int(c, "category", true, &w->category)) < 0 ||
            (r = get_int(c, "type", true, &w->type)) < 0 ||
            (r = get_int(c, "statecode", true, &w->statecode)) < 0 ||
            (r = get_int(c, "mode", true, &w->mode)) < 0 ||
            (r = get_string(c, "primaryentity", false, &w->primary_entity)) < 0 ||
            (r = get_bool(c, "triggeroncreate", &w->trigger_on_create)) < 0 ||
            (r = get_string(c, "triggeronupdateattributelist", false, &w->trigger_on_update_attributes)) < 0 ||
            (r = get_bool(c, "syncworkflowlogonfailure", &w->keeps_failure_logs)) < 0 ||
            (r = get_time(c, "modifiedon", true, &w->modified_on)) < 0)
                return r;
        return 0;
}

static int parse_step(const struct ctx *c, struct step_row *s) {
        int r;

        if ((r = check_object(c)) < 0 ||
            (r = get_guid(c, "sdkmessageprocessingstepid", true, &s->id)) < 0 ||
            (r = get_string(c, "name", false, &s->name)) < 0 ||
            (r = get_int(c, "mode", true, &s->mode)) < 0 ||
            (r = get_int(c, "stage", false, &s->stage)) < 0 ||
            (r = get_int(c, "statecode", true, &s->statecode)) < 0 ||
            (r = get_int(c, "customizationlevel", true, &s->customization_level)) < 0 ||
            (r = get_time(c, "modifiedon", true, &s->modified_on)) < 0 ||
            (r = get_expanded_string(c, "sdkmessageid", "name", &s->message)) < 0 ||
            (r = get_expanded_string(c, "sdkmessagefilterid", "primaryobjecttypecode", &s->primary_entity)) < 0 ||
            (r = get_expanded_string(c, "plugintypeid", "typename", &s->plugin_type)) < 0)
                return r;
        /* A filter on "none" is a message without an entity: no entity either. */
        if (s->primary_entity && (!*s->primary_entity || strcmp(s->primary_entity, "none") == 0))
                s->primary_entity = mfree(s->primary_entity);
        return 0;
}

static int parse_session(const struct ctx *c, struct session_row *s) {
        _cleanup_free_ char *comments = NULL;
        time_t completed, started, created;
        int64_t code;
        bool has_code;
        int r;

        if ((r = check_object(c)) < 0 ||
            (r = get_guid(c, "processsessionid", true, &s->id)) < 0 ||
            (r = get_guid(c, "_processid_value", false, &s->process_id)) < 0 ||
            (r = get_int(c, "statuscode", true, &s->statuscode)) < 0 ||
            (r = get_string(c, "comments", false, &comments)) < 0 ||
            (r = get_integer(c, "errorcode", false, INT32_MIN, INT32_MAX, &code, &has_code)) < 0 ||
            (r = get_time(c, "startedon", false, &started)) < 0 ||
            (r = get_time(c, "completedon", false, &completed)) < 0 ||
            (r = get_time(c, "createdon", false, &created)) < 0)
                return r;
        s->at = completed ? completed : started ? started : created;
        if (s->at == 0)
                return fail(c, "createdon", "is null, and so are completedon and startedon");
        if (comments && *comments)
                s->error = TAKE_PTR(comments);
        else if (has_code && code != 0 &&
                 asprintf(&s->error, "errorcode %" PRId64 " (0x%08" PRIx32 ")", code, (uint32_t) code) < 0) {
                s->error = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int parse_trace(const struct ctx *c, struct trace_row *t) {
        int r;

        if ((r = check_object(c)) < 0 ||
            (r = get_guid(c, "plugintracelogid", true, &t->id)) < 0 ||
            (r = get_guid(c, "pluginstepid", false, &t->step_id)) < 0 ||
            (r = get_string(c, "messagename", false, &t->message)) < 0 ||
            (r = get_string(c, "primaryentity", false, &t->primary_entity)) < 0 ||
            (r = get_int(c, "mode", true, &t->mode)) < 0 ||
            (r = get_string(c, "typename", false, &t->type_name)) < 0 ||
            (r = get_string(c, "exceptiondetails", false, &t->exception)) < 0 ||
            (r = get_time(c, "createdon", true, &t->at)) < 0)
                return r;
        return 0;
}

/* ---- the tables ------------------------------------------------------------ */

struct table_def {
        const char *name;               /* as logged */
        const char *entityset;          /* as error messages name it */
        size_t row_size;
        int (*parse)(const struct ctx *c, void *row);
        void (*done)(void *row);
};

#define DEFINE_ROW_PARSER(one, type, table, parse, done)                                \
        int rows_parse_##one(const json_t *row, struct type *ret, char **ret_error) {   \
                struct ctx c = { .row = row, .where = table, .error = ret_error };       \
                struct type t = {};                                                      \
                int r = parse(&c, &t);                                                   \
                if (r < 0) {                                                             \
                        done(&t);                                                        \
                        return r;                                                        \
                }                                                                        \
                *ret = t;                                                                \
                return 0;                                                                \
        }                                                                                \
        static int parse_any_##one(const struct ctx *c, void *row) {                     \
                return parse(c, row);                                                    \
        }                                                                                \
        static void done_any_##one(void *row) {                                          \
                done(row);                                                               \
        }
DEFINE_ROW_PARSER(tracelog, tracelog_row, DV_SET_TRACELOGS, parse_tracelog, tracelog_row_done)
DEFINE_ROW_PARSER(mailbox, mailbox_row, DV_SET_MAILBOXES, parse_mailbox, mailbox_row_done)
DEFINE_ROW_PARSER(workflow, workflow_row, DV_SET_WORKFLOWS, parse_workflow, workflow_row_done)
DEFINE_ROW_PARSER(step, step_row, DV_SET_STEPS, parse_step, step_row_done)
DEFINE_ROW_PARSER(session, session_row, DV_SET_SESSIONS, parse_session, session_row_done)
DEFINE_ROW_PARSER(trace, trace_row, DV_SET_TRACES, parse_trace, trace_row_done)

#define TABLE(name, entityset, type, one) \
        { name, entityset, sizeof(struct type), parse_any_##one, done_any_##one }
static const struct table_def tables[_ROWS_TABLE_MAX] = {
        [ROWS_TRACELOGS] = TABLE("tracelogs", DV_SET_TRACELOGS, tracelog_row, tracelog),
        [ROWS_MAILBOXES] = TABLE("mailboxes", DV_SET_MAILBOXES, mailbox_row, mailbox),
        [ROWS_WORKFLOWS] = TABLE("workflows", DV_SET_WORKFLOWS, workflow_row, workflow),
        [ROWS_STEPS] = TABLE("steps", DV_SET_STEPS, step_row, step),
        [ROWS_SESSIONS] = TABLE("sessions", DV_SET_SESSIONS, session_row, session),
        [ROWS_TRACES] = TABLE("traces", DV_SET_TRACES, trace_row, trace),
};

const char *rows_table_name(enum rows_table t) {
        return (unsigned) t < _ROWS_TABLE_MAX ? tables[t].name : NULL;
}

static void *row_at(const struct table_def *d, void *rows, size_t i) {
        return (char *) rows + i * d->row_size;
}

static void rows_array_free(const struct table_def *d, void *rows, size_t n) {
        for (size_t i = 0; rows && i < n; i++)
                d->done(row_at(d, rows, i));
        free(rows);
}

void rows_done(struct rows *r) {
        if (!r || (unsigned) r->table >= _ROWS_TABLE_MAX)
                return;
        rows_array_free(&tables[r->table], r->any, r->n);
        r->any = NULL;
        r->n = 0;
}

int rows_append(struct rows *dst, struct rows *src) {
        const struct table_def *d = &tables[dst->table];
        void *grown;

        assert(dst->table == src->table);
        if (src->n == 0)
                return 0;
        if (dst->n == 0) {
                free(dst->any);
                dst->any = TAKE_PTR(src->any);
                dst->n = src->n;
                src->n = 0;
                return 0;
        }
        grown = reallocarray(dst->any, dst->n + src->n, d->row_size);
        if (!grown)
                return -ENOMEM;
        memcpy(row_at(d, grown, dst->n), src->any, src->n * d->row_size);
        dst->any = grown;
        dst->n += src->n;
        src->any = mfree(src->any);
        src->n = 0;
        return 0;
}

void rows_skipped_done(struct rows_skipped *s) {
        if (!s)
                return;
        free(s->first);
        *s = (struct rows_skipped) {};
}

static void skip(const struct table_def *d, const char *who, size_t index, const char *why,
                 struct rows_skipped *skipped) {
        log_warning("%s: %s row %zu skipped: %s", strempty(who), d->name, index, strempty(why));
        if (!skipped)
                return;
        if (skipped->n++ == 0 &&
            asprintf(&skipped->first, "%s row %zu skipped: %s", d->name, index, strempty(why)) < 0)
                skipped->first = NULL;
}

int rows_parse_page(enum rows_table t, const json_t *value, const char *who, size_t first_index,
                    struct rows *ret, struct rows_skipped *skipped) {
        const struct table_def *d;
        size_t n = json_array_size(value), k = 0;
        void *rows;

        assert((unsigned) t < _ROWS_TABLE_MAX);
        d = &tables[t];
        rows = n > 0 ? calloc(n, d->row_size) : NULL;
        if (n > 0 && !rows)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *error = NULL;
                struct ctx c = { .row = json_array_get(value, i), .where = d->entityset, .error = &error };
                void *row = row_at(d, rows, k);
                int r = d->parse(&c, row);

                if (r == -ENOMEM) {
                        d->done(row);
                        rows_array_free(d, rows, k);
                        return r;
                }
                if (r < 0) {
                        d->done(row);
                        skip(d, who, first_index + i, error, skipped);
                        continue;
                }
                k++;
        }
        if (k == 0)
                rows = mfree(rows);
        *ret = (struct rows) { .table = t, .any = rows, .n = k };
        return 0;
}
