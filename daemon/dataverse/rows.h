/* rows.h: the one parser from Dataverse rows (jansson objects, one per element
 * of a response's "value" array) to the typed rows of model.h, one per table
 * of schema.h, and the one policy for a row it refuses (rows_parse_page()).
 * The client, the engine driver, the fuzzers and the tests all go through it.
 * Strict about the columns it needs, blind to the ones it does not: extra keys
 * (annotations, @odata.etag, other columns) are ignored.
 *
 * Conventions shared by every parser:
 *  - GUIDs are checked and normalized to lower case without braces;
 *  - date-times go through iso8601_parse(); a null optional one becomes 0;
 *  - a nullable column that is null or absent becomes NULL / 0 / false;
 *  - a required column that is null or absent, or any column of the wrong
 *    JSON type, fails with -EINVAL and *ret_error naming the table and the
 *    column, e.g. "workflows: column 'mode': expected an integer, got a string";
 *  - on failure *ret is untouched and nothing is leaked. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "model.h"

enum rows_table {
        ROWS_TRACELOGS,
        ROWS_MAILBOXES,
        ROWS_WORKFLOWS,
        ROWS_STEPS,
        ROWS_SESSIONS,
        ROWS_TRACES,
        _ROWS_TABLE_MAX,
};

/* "tracelogs", "mailboxes", "workflows", "steps", "sessions", "traces". */
const char *rows_table_name(enum rows_table t);

/* Typed rows of one table: the array of the union that `table` names. */
struct rows {
        enum rows_table table;
        union {
                struct tracelog_row *tracelogs;
                struct mailbox_row *mailboxes;
                struct workflow_row *workflows;
                struct step_row *steps;
                struct session_row *sessions;
                struct trace_row *traces;
                void *any;
        };
        size_t n;
};

/* Release the rows and their array; *r keeps its table, with no rows. */
void rows_done(struct rows *r);
/* Move every row of src (same table) to the end of dst; src is left empty.
 * -ENOMEM: nothing moved. */
int rows_append(struct rows *dst, struct rows *src);

/* Rows refused by rows_parse_page(), across the pages of a query. */
struct rows_skipped {
        size_t n;
        char *first;    /* "tracelogs row 3 skipped: tracelogs: column 'level': ..." */
};
void rows_skipped_done(struct rows_skipped *s);

/* The rows of one page (a JSON array of row objects) of table t, in order.
 * The one policy for a row the parser refuses: it is skipped (one odd row
 * must never stop an environment), logged as a warning "WHO: TABLE row
 * INDEX skipped: why" (INDEX counts from first_index, the page's place in
 * its query), counted in *skipped and, the first time, described in
 * skipped->first. *ret is set (empty when every row was refused); the
 * caller releases it with rows_done(). 0, or -ENOMEM (nothing returned). */
int rows_parse_page(enum rows_table t, const json_t *value, const char *who, size_t first_index,
                    struct rows *ret, struct rows_skipped *skipped);

int rows_parse_tracelog(const json_t *row, struct tracelog_row *ret, char **ret_error);
int rows_parse_mailbox(const json_t *row, struct mailbox_row *ret, char **ret_error);
int rows_parse_workflow(const json_t *row, struct workflow_row *ret, char **ret_error);
/* Needs the $expand of schema.h: sdkmessageid/name, sdkmessagefilterid/
 * primaryobjecttypecode (null filter or "none": primary_entity NULL, the step
 * applies to every entity), plugintypeid/typename. */
int rows_parse_step(const json_t *row, struct step_row *ret, char **ret_error);
/* error: comments, else "errorcode <n> (0x<hex>)"; at: completedon, else
 * startedon, else createdon (one of them is required). */
int rows_parse_session(const json_t *row, struct session_row *ret, char **ret_error);
int rows_parse_trace(const json_t *row, struct trace_row *ret, char **ret_error);
