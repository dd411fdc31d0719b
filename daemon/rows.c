/* rows.c: jansson objects -> typed rows (model.h), one parser per table of
 * schema.h. Knows column names and JSON types; not what the rows mean. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guid.h"
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

/* ---- single rows and arrays, generated per table ------------------------- */

/* The id as sent, for "row 3 (workflowid ...)" before it is parsed. */
static char *row_label(const char *table, size_t index, const char *id_column, const json_t *row) {
        const json_t *id = json_is_object(row) ? json_object_get(row, id_column) : NULL;
        char *s, q[48];

        if (json_is_string(id))
                return asprintf(&s, "%s row %zu (%s %s)", table, index, id_column,
                                quote_value(json_string_value(id), q)) < 0 ? NULL : s;
        return asprintf(&s, "%s row %zu", table, index) < 0 ? NULL : s;
}

#define DEFINE_ROWS_PARSERS(one, many, type, table, id_column, parse, done, free_many)      \
        int rows_parse_##one(const json_t *row, struct type *ret, char **ret_error) {         \
                struct ctx c = { .row = row, .where = table, .error = ret_error };             \
                struct type t = {};                                                            \
                int r = parse(&c, &t);                                                         \
                if (r < 0) {                                                                   \
                        done(&t);                                                              \
                        return r;                                                              \
                }                                                                              \
                *ret = t;                                                                      \
                return 0;                                                                      \
        }                                                                                      \
        int rows_parse_##many(const json_t *value, struct type **ret, size_t *ret_n,           \
                              char **ret_error) {                                              \
                struct type *rows = NULL;                                                      \
                size_t n = json_is_array(value) ? json_array_size(value) : 0;                  \
                int r;                                                                         \
                                                                                               \
                if (!json_is_array(value)) {                                                   \
                        struct ctx c = { .row = value, .where = table, .error = ret_error };   \
                        return fail(&c, NULL, "expected an array of rows, got %s",             \
                                    value ? json_type_name(value) : "nothing");                \
                }                                                                              \
                if (n > 0) {                                                                   \
                        rows = calloc(n, sizeof(*rows));                                       \
                        if (!rows)                                                             \
                                return -ENOMEM;                                                \
                }                                                                              \
                for (size_t i = 0; i < n; i++) {                                               \
                        const json_t *row = json_array_get(value, i);                          \
                        _cleanup_free_ char *where = row_label(table, i, id_column, row);      \
                        struct ctx c = { .row = row, .where = where, .error = ret_error };     \
                        if (!where) {                                                          \
                                free_many(rows, n);                                            \
                                return -ENOMEM;                                                \
                        }                                                                      \
                        r = parse(&c, &rows[i]);                                               \
                        if (r < 0) {                                                           \
                                free_many(rows, n);                                            \
                                return r;                                                      \
                        }                                                                      \
                }                                                                              \
                *ret = rows;                                                                   \
                *ret_n = n;                                                                    \
                return 0;                                                                      \
        }

DEFINE_ROWS_PARSERS(tracelog, tracelogs, tracelog_row, DV_SET_TRACELOGS, "tracelogid", parse_tracelog,
                    tracelog_row_done, tracelog_rows_free)
DEFINE_ROWS_PARSERS(mailbox, mailboxes, mailbox_row, DV_SET_MAILBOXES, "mailboxid", parse_mailbox,
                    mailbox_row_done, mailbox_rows_free)
DEFINE_ROWS_PARSERS(workflow, workflows, workflow_row, DV_SET_WORKFLOWS, "workflowid", parse_workflow,
                    workflow_row_done, workflow_rows_free)
DEFINE_ROWS_PARSERS(step, steps, step_row, DV_SET_STEPS, "sdkmessageprocessingstepid", parse_step,
                    step_row_done, step_rows_free)
DEFINE_ROWS_PARSERS(session, sessions, session_row, DV_SET_SESSIONS, "processsessionid", parse_session,
                    session_row_done, session_rows_free)
DEFINE_ROWS_PARSERS(trace, traces, trace_row, DV_SET_TRACES, "plugintracelogid", parse_trace,
                    trace_row_done, trace_rows_free)
