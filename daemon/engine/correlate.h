/* correlate.h: from an alert to its finding (docs/design.md §1, §2): which synchronous
 * code could have thrown (suspects), what evidence to fetch for a whole cycle,
 * which suspects the evidence convicts, the verdict, notes and remedy.
 * Pure: the cache, the alert and the fetched rows in; a struct finding out.
 *
 * Suspects of an email alert (whatever item_types says: every mailbox
 * receives email):
 *  - real-time workflows: category 0, type 1, statecode 1, mode 1, primary
 *    entity email, triggeroncreate true;
 *  - steps: mode 0, statecode 0, customizationlevel 1, message Create, on
 *    email or on no entity (a step without a filter runs for every entity's
 *    Create, email's included: its culprit entity reads "email").
 * Suspects of an ACT alert, for each of appointment/contact/task listed in
 * item_types: the same workflows on that entity triggered on create or with
 * a non-empty triggeronupdateattributelist (message "Create", else
 * "Update"); the same steps on Create or Update of that entity or of no
 * entity (whose culprit entity then lists the item types, e.g.
 * "appointment,task"). An ACT alert while none of them is listed has no
 * suspects: unexplained, with a note to list them.
 *
 * Evidence, each within window_sec of the alert's time (inclusive):
 *  - a process session with statuscode 6 whose _processid_value is a suspect
 *    definition or one of its activations;
 *  - a plug-in trace of a suspect step with mode 0, a non-empty exception,
 *    the step's message, and an entity among the alert's item types (the
 *    step's own entity when it has one).
 * Each culprit keeps at most CORRELATE_MAX_EVIDENCE pieces, the closest to
 * the alert first (ties: earlier first, then by id); their error text is on
 * one line (whitespace runs collapsed) and cut at CORRELATE_MAX_ERROR bytes
 * on a UTF-8 boundary, "..." marking the cut.
 *
 * Verdict: confirmed when a suspect has evidence, suspected when there are
 * suspects without, unexplained when there is none. Culprits are all the
 * suspects: those with evidence first; within each group, workflows before
 * plug-in steps, then by name (bytewise), then by id. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cache.h"
#include "macro.h"
#include "model.h"

#define CORRELATE_MAX_EVIDENCE 10
#define CORRELATE_MAX_ERROR 1024

struct correlate_params {
        const char *environment;        /* names the finding and its notes */
        unsigned item_types;            /* enum item_type flags; 0 reads as ITEM_EMAIL */
        uint64_t window_sec;            /* correlation_window */
};

/* The one evidence fetch of a cycle, for all its new alerts. */
struct evidence_request {
        char **process_ids;     /* suspect definitions and their activations; sorted, unique */
        size_t n_process_ids;
        char **step_ids;        /* suspect steps; sorted, unique */
        size_t n_step_ids;
        time_t from, to;        /* [min(at) - window, max(at) + window], inclusive; 0 when no alert */
};

/* Fill *ret (zeroed first); with no suspect the id lists are empty and
 * nothing needs fetching for that kind. 0 or -ENOMEM. */
int correlate_evidence_request(const struct alert *alerts, size_t n, const struct cache *cc,
                               const struct correlate_params *p, struct evidence_request *ret);
void evidence_request_done(struct evidence_request *r);

/* The fetched sessions and traces of a cycle, indexed once, so that each
 * alert finds its evidence in O(log n): sessions by the workflow definition
 * they ran (their _processid_value, an activation row, mapped through the
 * cache; the cache is read here only), traces by step, each by time. Points
 * into the rows: they must outlive the index. Rows that can never be
 * evidence (not failed, asynchronous, no exception) are left out. cc may be
 * NULL (sessions are then matched on their own process id only). The index
 * also remembers each alert kind's suspects once found: correlate_finding()
 * must be given the cache it was built with, unchanged since. */
struct correlate_evidence;
int correlate_evidence_new(const struct cache *cc, const struct session_row *sessions, size_t n_sessions,
                           const struct trace_row *traces, size_t n_traces, struct correlate_evidence **ret);
void correlate_evidence_free(struct correlate_evidence *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct correlate_evidence *, correlate_evidence_free)

/* The finding of one alert, fully owned (finding_free()): id from
 * finding_id_make(environment, alert, generation), the mailbox's id always
 * and its name and email when cached, occurrences 1. ev may be NULL (no
 * evidence fetched). 0 or -ENOMEM. */
int correlate_finding(const struct alert *a, const struct cache *cc, const struct correlate_evidence *ev,
                      const struct correlate_params *p, unsigned generation, time_t detected_at,
                      struct finding **ret);

/* The same for a single alert, straight from the rows (generation 1).
 * A cycle with many alerts should index once with correlate_evidence_new(). */
int correlate_alert(const struct alert *a, const struct cache *cc, const struct session_row *sessions,
                    size_t n_sessions, const struct trace_row *traces, size_t n_traces,
                    const struct correlate_params *p, time_t detected_at, struct finding **ret);
