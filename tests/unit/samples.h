/* samples.h: sample findings, resolved and error events for the output
 * tests (unit tests and the journald driver), including hostile ones. The
 * integration test (test-journal.py) knows these values too: keep in step. */
#pragma once

#include "model.h"

/* 2026-11-25T10:00:03Z and neighbours. */
#define SAMPLE_T0 ((time_t) 1795600803)

#define SAMPLE_ALERT_ID "7e1b6b0a-3c1f-4d5e-9a2b-0c4d5e6f7a81"
#define SAMPLE_MAILBOX_ID "0f9e8d7c-6b5a-4948-3726-15a4b3c2d1e0"
#define SAMPLE_WORKFLOW_ID "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
#define SAMPLE_SESSION_ID "9c8b7a69-5847-4362-a514-d3c2b1a09f8e"
#define SAMPLE_STEP_ID "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"

/* Confirmed: a workflow with one failed process session, a plug-in step
 * without evidence, one note, a remedy; occurrences 1. */
struct finding *sample_finding_full(void);
/* Suspected: one plug-in step, no evidence, 3 occurrences, no email. */
struct finding *sample_finding_suspected(void);
/* Unexplained: no culprit; an ACT alert from the mailbox row. */
struct finding *sample_finding_unexplained(void);
/* Quotes, newlines, control characters, non-UTF-8 bytes, a 100 KiB name. */
struct finding *sample_finding_hostile(void);
#define SAMPLE_LONG_NAME_LEN (100 * 1024)
extern const char sample_hostile_mailbox_name[];
extern const char sample_hostile_email[];
extern const char sample_hostile_step_name[];
extern const char sample_hostile_note[];
extern const char sample_hostile_remedy[];
extern const char sample_hostile_evidence_error[];
/* "Long " + 100 KiB of 'x' + " end", allocated. */
char *sample_long_name(void);

void sample_resolved(struct resolved_event *e);
void sample_error_failing(struct error_event *e);
void sample_error_recovered(struct error_event *e);
