/* state.h: what one environment's monitor remembers across restarts and crashes
 * (docs/design.md §2 and §7). It owns the state files and their durability;
 * it knows nothing of Dataverse, of the outputs or of the cycle's order.
 *
 * Files in the state directory, per environment ENV:
 *   ENV.state       the snapshot (JSON, mode 0600), replaced atomically by state_save()
 *   ENV.state.log   the journal (JSON lines, mode 0600): one line per note since the
 *                   snapshot, appended with a plain write(2), replayed by state_open()
 *   ENV.state.tmp   the snapshot being written (only during state_save() or after a crash)
 *   ENV.state.corrupt-<unix time>, ENV.state.log.corrupt-<unix time>
 *                   unusable files moved aside by state_open()
 *
 * Durability (how the monitor must use it): emit a finding, then call
 * state_note_finding() for it at once, before emitting the next one. A note is in the
 * journal when the call returns: a kill -9 at any later point loses nothing, so at most
 * the one finding emitted but not yet noted is emitted again. A snapshot is fsync'd
 * (file and directory) by state_save(); the journal is not, so after a power loss or
 * kernel crash the notes since the last state_save() may be lost and those findings
 * emitted again. A crash during state_save() leaves the old or the new snapshot, never a
 * mix, and the journal still holds every note.
 *
 * Test hook: S3MOND_TEST_CRASH_AT=<point>[:<n>] in the environment makes the process
 * raise(SIGKILL) the n-th time (default: the first) a state handle passes <point>. Points:
 *   state-mid-write        half of the temp snapshot written
 *   state-before-rename    temp snapshot written and fsync'd, not yet renamed
 *   state-after-rename     new snapshot in place (directory fsync'd), journal not reset
 *   state-after-log-truncate  journal truncated, its new header not yet written
 *   state-log-mid-append   half of a journal line written (a torn line)
 * plus any point the caller passes to state_crash_point(). Inert unless set. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "macro.h"
#include "model.h"

struct env_state;

enum state_watermark {
        STATE_WATERMARK_TRACELOGS,      /* max tracelogs.modifiedon seen */
        STATE_WATERMARK_MAILBOXES,      /* max mailboxes.modifiedon seen */
        _STATE_WATERMARK_MAX,
};

/* A finding that is open: reported, not yet resolved. As an argument the strings are
 * the caller's and are copied; as a result they belong to the state. */
struct state_open_finding {
        const char *finding_id;
        const char *alert_id;
        enum alert_source alert_source;
        enum alert_kind alert_kind;     /* email or ACT: what "receiving again" means */
        const char *mailbox_id;         /* may be NULL */
        const char *mailbox_name;       /* may be NULL */
        const char *mailbox_email;      /* may be NULL */
        unsigned generation;            /* 1, then +1 for each reopening after "resolved" */
        unsigned occurrences;           /* >= 1 */
        time_t first_at;                /* the alert's at when the finding opened */
        time_t last_at;                 /* the alert's latest occurrence (modifiedon) */
        time_t opened_at;               /* when the finding was emitted (detected_at) */
};

/* The last resolved finding of an alert, kept until state_prune() lets it go, so a
 * later occurrence opens generation + 1 and an old one is not mistaken for new. */
struct state_closed_finding {
        const char *alert_id;
        unsigned generation;
        time_t resolved_at;
        time_t last_at;
};

/* What an alert occurrence (alert id, at) is, given what was reported (docs/design.md §2). */
enum state_alert_class {
        STATE_ALERT_NEW,        /* never reported: open a finding, generation 1 */
        STATE_ALERT_REPORTED,   /* this occurrence was reported already: emit nothing */
        STATE_ALERT_RECURRENCE, /* later occurrence of an open finding: occurrences + 1 */
        STATE_ALERT_REOPENED,   /* later occurrence after its finding was resolved:
                                 * open a new finding with the returned generation */
};

/* Open (and lock) the state of environment ENV ([A-Za-z0-9._-]{1,64}) in DIR, creating
 * DIR (0700) if it is missing. Loads ENV.state and replays ENV.state.log over it.
 * A missing snapshot gives a fresh state. A corrupt, truncated, foreign (other
 * environment, other format), newer-version or unreadable file is never trusted: it is
 * moved aside to <file>.corrupt-<unix time>, the state starts fresh, and *ret_message
 * says so (a warning for the caller to log; also set for skipped journal lines).
 * Returns 0 with *ret set; *ret_message is NULL or a warning, caller frees.
 * Fails only when DIR cannot be opened or created (-errno), ENV is not a valid name
 * (-EINVAL), or another process holds the state of ENV (-EBUSY); then *ret_message is
 * the error. A read-only DIR is not a failure: saves and notes report it later. */
int state_open(const char *dir, const char *env, struct env_state **ret, char **ret_message);
/* Release the handle without saving (the journal keeps what was noted). NULL is fine. */
void state_close(struct env_state *st);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct env_state *, state_close);

const char *state_environment(const struct env_state *st);
const char *state_path(const struct env_state *st);     /* DIR/ENV.state, for messages */

/* 0 when never set (first start: the monitor looks back `lookback`). The monitor
 * queries from watermark - overlap. Setting is in memory until state_save(). */
time_t state_watermark_get(const struct env_state *st, enum state_watermark w);
void state_watermark_set(struct env_state *st, enum state_watermark w, time_t at);

/* Classify an occurrence of alert ALERT_ID at AT (its modifiedon) against the seen
 * map, the open findings and the closed ones. *ret_generation (may be NULL) is the
 * generation to use: 1 for NEW, the open one's for RECURRENCE, closed + 1 for REOPENED,
 * the last known (or 0) for REPORTED. */
enum state_alert_class state_classify(const struct env_state *st, const char *alert_id, time_t at,
                                      unsigned *ret_generation);

/* 1 with *ret_at (may be NULL) = the alert's at when last reported, 0 if unknown. */
int state_seen_get(const struct env_state *st, const char *alert_id, time_t *ret_at);
/* Remember ALERT_ID as handled up to AT (never moves back). Journaled like a note. */
int state_seen_set(struct env_state *st, const char *alert_id, time_t at, char **ret_error);

/* Record an emitted finding, or the new occurrence count / last_at of an open one
 * (F may be a changed copy of state_open_find()'s result): the open finding of
 * f->alert_id is replaced by *f (copied), the seen map moves to f->last_at, a closed
 * record of that alert is dropped, and one line is appended to the journal.
 * Errors (with *ret_error, which may be NULL, saying why):
 *   -EINVAL  no finding_id/alert_id, generation or occurrences 0: nothing changed;
 *   -EEXIST  f->finding_id is the open finding of another alert: nothing changed;
 *   -ENOMEM  nothing changed;
 *   other    (-ENOSPC, -EROFS, -EACCES, ...) the journal append failed: the memory
 *            holds the note, which is durable only after the next state_save(). */
int state_note_finding(struct env_state *st, const struct state_open_finding *f, char **ret_error);
/* The finding FINDING_ID was resolved at AT: it moves from open to closed. Journaled.
 * -ENOENT if no such open finding. Errors as for state_note_finding(). */
int state_note_resolved(struct env_state *st, const char *finding_id, time_t at, char **ret_error);

/* The open finding of ALERT_ID, or NULL. Valid until the next call that changes the state. */
const struct state_open_finding *state_open_find(const struct env_state *st, const char *alert_id);
/* Walk the open findings in no particular order: start with *cursor = 0, NULL at the
 * end. state_note_resolved() on the finding just returned is allowed during the walk;
 * any other change (a note of a finding, a prune) ends it. */
const struct state_open_finding *state_open_next(const struct env_state *st, size_t *cursor);
size_t state_open_count(const struct env_state *st);
/* The closed record of ALERT_ID, or NULL. */
const struct state_closed_finding *state_closed_find(const struct env_state *st, const char *alert_id);
size_t state_seen_count(const struct env_state *st);
size_t state_closed_count(const struct env_state *st);

/* Forget seen entries older than SEEN_BEFORE (the smallest watermark - overlap) whose
 * alert has no open finding, and closed records resolved before CLOSED_BEFORE (suggested:
 * now - max(lookback, 7d)). In memory until state_save(); returns how many went. */
size_t state_prune(struct env_state *st, time_t seen_before, time_t closed_before);

/* Write the snapshot atomically (ENV.state.tmp created O_EXCL 0600, write, fsync,
 * rename over ENV.state, fsync DIR), then empty the journal. Returns 1 when written, 0
 * when nothing changed since the last save, -errno on failure with *ret_error (may be
 * NULL) naming the file and the step (e.g. -ENOSPC, -EROFS, -EACCES): the previous
 * snapshot and the journal are then intact, the memory is unchanged, and a later call
 * retries. (Only if the final fsync of DIR fails is the new snapshot already in place;
 * the call still fails and the next one writes it again.) */
int state_save(struct env_state *st, char **ret_error);

/* Test hook (see the top of this file): raise(SIGKILL) if S3MOND_TEST_CRASH_AT names
 * POINT and this is the n-th pass of POINT on this handle. For the monitor's own points
 * (e.g. "monitor-after-emit"). */
void state_crash_point(struct env_state *st, const char *point);
