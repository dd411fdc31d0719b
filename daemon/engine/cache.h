/* cache.h: what s3mond remembers of one environment's configuration between
 * polls: its mailboxes, the workflows and the plug-in steps that could be
 * culprits. Filled by full reads and refreshed by delta reads (rows modified
 * since cache_watermark()); read by detect and correlate. No I/O, no clock.
 *
 * A delta read updates or adds the rows it carries; only a full read drops
 * rows (deleted ones never show up in a delta). Both advance the table's
 * watermark to the highest modifiedon seen, which the monitor uses for its
 * next delta query.
 *
 * Workflows and steps that can never be a culprit of docs/design.md §1 are not kept:
 * since any change to a row moves its modifiedon, the delta that turns a
 * background workflow real-time (or activates a draft, enables a step...)
 * brings the row back, and the one that deactivates it removes it. Kept:
 *  - workflow definitions (type 1) with category 0, statecode 1, mode 1, a
 *    primary entity among email/appointment/contact/task, triggered on create
 *    or on update of some attribute;
 *  - workflow activations (type 2) with a parent definition, whatever their
 *    state: process sessions point at them;
 *  - steps with mode 0, statecode 0, customizationlevel 1, message Create or
 *    Update, on one of those entities or on no entity (then they run for all).
 * Which of them are suspects for a given alert is correlate's business. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "macro.h"
#include "model.h"

enum cache_table {
        CACHE_MAILBOXES,
        CACHE_WORKFLOWS,
        CACHE_STEPS,
        _CACHE_TABLE_MAX,
};

struct cache;

int cache_new(struct cache **ret);
void cache_free(struct cache *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cache *, cache_free)

/* Mailboxes are copied (compactly: 200 environments x 2,000 mailboxes must
 * fit in a few MiB); the rows stay the caller's. */
int cache_update_mailboxes(struct cache *c, const struct mailbox_row *rows, size_t n);
int cache_replace_mailboxes(struct cache *c, const struct mailbox_row *rows, size_t n);

/* Take ownership of the contents of each row and leave it zeroed; the caller
 * still frees the array (workflow_rows_free() on zeroed rows is fine). When
 * a delta carries the same id twice, the later modifiedon wins. On -ENOMEM
 * the cache is unchanged and the rows are left as they were. */
int cache_update_workflows(struct cache *c, struct workflow_row *rows, size_t n);
int cache_replace_workflows(struct cache *c, struct workflow_row *rows, size_t n);
int cache_update_steps(struct cache *c, struct step_row *rows, size_t n);
int cache_replace_steps(struct cache *c, struct step_row *rows, size_t n);

/* Highest modifiedon seen in the table, 0 before any read. */
time_t cache_watermark(const struct cache *c, enum cache_table t);
/* A full read of the table has been applied. */
bool cache_loaded(const struct cache *c, enum cache_table t);
/* Rows kept for the table. */
size_t cache_count(const struct cache *c, enum cache_table t);

struct cache_mailbox {
        const char *name;               /* NULL when unknown */
        const char *email;              /* NULL when unknown */
        int incoming_status;            /* incomingemailstatus */
        int act_status;                 /* actstatus */
        time_t last_success_on;         /* lastsuccessfulsynccompletedon, 0 if null */
};
/* Look a mailbox up by id (any case). The strings stay valid until the next
 * update of the mailboxes. false when it is not cached. */
bool cache_mailbox_get(const struct cache *c, const char *id, struct cache_mailbox *ret);

/* Kept definitions and steps, sorted by id; valid until the next update of
 * their table. Ids are looked up as rows.c gives them (lower case). */
const struct workflow_row *cache_workflow_definitions(const struct cache *c, size_t *ret_n);
const struct step_row *cache_steps(const struct cache *c, size_t *ret_n);
const struct workflow_row *cache_workflow_get(const struct cache *c, const char *id);
const struct step_row *cache_step_get(const struct cache *c, const char *id);

/* Activation rows of a definition, sorted by id; returns their count and
 * points *ret at them. */
size_t cache_workflow_activations(const struct cache *c, const char *definition_id,
                                  const struct workflow_row *const **ret);
/* The definition a process session's _processid_value stands for: itself
 * when it is a kept definition, its parent when it is an activation, NULL
 * otherwise. */
const char *cache_workflow_definition_of(const struct cache *c, const char *process_id);
