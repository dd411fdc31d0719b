/* rows.h: Dataverse rows (jansson objects, one per element of a response's
 * "value" array) turned into the typed rows of model.h, one parser per table
 * of schema.h. Strict about the columns it needs, blind to the ones it does
 * not: extra keys (annotations, @odata.etag, other columns) are ignored.
 *
 * Conventions shared by every parser:
 *  - GUIDs are checked and normalized to lower case without braces;
 *  - date-times go through iso8601_parse(); a null optional one becomes 0;
 *  - a nullable column that is null or absent becomes NULL / 0 / false;
 *  - a required column that is null or absent, or any column of the wrong
 *    JSON type, fails with -EINVAL and *ret_error naming the table and the
 *    column, e.g. "workflows: column 'mode': expected an integer, got a string"
 *    (the array parsers prefix the row number and id when known);
 *  - on failure *ret is untouched and nothing is leaked. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "model.h"

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

/* Whole "value" arrays. *ret is a new array of *ret_n rows (NULL when empty);
 * on failure nothing is returned and *ret_error reads
 * "tracelogs row 3 (tracelogid 0f1e...): column 'level': ...". */
int rows_parse_tracelogs(const json_t *value, struct tracelog_row **ret, size_t *ret_n, char **ret_error);
int rows_parse_mailboxes(const json_t *value, struct mailbox_row **ret, size_t *ret_n, char **ret_error);
int rows_parse_workflows(const json_t *value, struct workflow_row **ret, size_t *ret_n, char **ret_error);
int rows_parse_steps(const json_t *value, struct step_row **ret, size_t *ret_n, char **ret_error);
int rows_parse_sessions(const json_t *value, struct session_row **ret, size_t *ret_n, char **ret_error);
int rows_parse_traces(const json_t *value, struct trace_row **ret, size_t *ret_n, char **ret_error);
