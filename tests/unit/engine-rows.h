/* engine-rows.h: builders of typed rows for the engine's unit tests (detect,
 * cache, correlate). Each returns a row owning fresh copies of its strings. */
#pragma once

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guid.h"
#include "model.h"

/* 2026-11-25T10:00:00Z, the alerts' reference time. */
#define T0 ((time_t) 1795600800)

static inline char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

/* A GUID whose last group is n (and first group the kind, for readability). */
static inline const char *guid(unsigned kind, unsigned n) {
        static char buf[8][GUID_STRLEN + 1];
        static unsigned next;
        char *b = buf[next++ % 8];
        snprintf(b, GUID_STRLEN + 1, "%08x-0000-4000-8000-%012x", kind, n);
        return b;
}

enum { K_WORKFLOW = 0xa, K_STEP = 0xb, K_MAILBOX = 0xc, K_TRACELOG = 0xd, K_SESSION = 0xe, K_TRACE = 0xf };

struct wf_spec {
        unsigned n;
        const char *name;
        int category, type, statecode, mode;
        const char *entity;
        bool on_create;
        const char *on_update;
        bool keeps_logs;
        unsigned parent;        /* activation of workflow n, 0: none */
        time_t modified_on;
};

static inline struct workflow_row wf_row(struct wf_spec s) {
        return (struct workflow_row) {
                .id = strdup(guid(K_WORKFLOW, s.n)),
                .name = dup_or_null(s.name),
                .parent_id = s.parent ? strdup(guid(K_WORKFLOW, s.parent)) : NULL,
                .category = s.category,
                .type = s.type,
                .statecode = s.statecode,
                .mode = s.mode,
                .primary_entity = dup_or_null(s.entity),
                .trigger_on_create = s.on_create,
                .trigger_on_update_attributes = dup_or_null(s.on_update),
                .keeps_failure_logs = s.keeps_logs,
                .modified_on = s.modified_on ? s.modified_on : T0 - 86400,
        };
}

/* The culprit shape: activated real-time workflow on email create. */
#define WF_REALTIME(num, nm, ent)                                                                  \
        (struct wf_spec) { .n = (num), .name = (nm), .category = 0, .type = 1, .statecode = 1,     \
                           .mode = 1, .entity = (ent), .on_create = true, .keeps_logs = true }

struct step_spec {
        unsigned n;
        const char *name;
        int mode, statecode, level, stage;
        const char *message, *entity, *type_name;
        time_t modified_on;
};

static inline struct step_row step_row_of(struct step_spec s) {
        return (struct step_row) {
                .id = strdup(guid(K_STEP, s.n)),
                .name = dup_or_null(s.name),
                .mode = s.mode,
                .stage = s.stage ? s.stage : 20,
                .statecode = s.statecode,
                .customization_level = s.level,
                .message = dup_or_null(s.message),
                .primary_entity = dup_or_null(s.entity),
                .plugin_type = dup_or_null(s.type_name),
                .modified_on = s.modified_on ? s.modified_on : T0 - 86400,
        };
}

/* The culprit shape: enabled synchronous custom step. */
#define STEP_SYNC(num, nm, msg, ent)                                                               \
        (struct step_spec) { .n = (num), .name = (nm), .mode = 0, .statecode = 0, .level = 1,      \
                             .message = (msg), .entity = (ent), .type_name = "Contoso.Plugins.X" }

static inline struct session_row session_of(unsigned n, unsigned process, int statuscode, time_t at,
                                            const char *error) {
        return (struct session_row) {
                .id = strdup(guid(K_SESSION, n)),
                .process_id = strdup(guid(K_WORKFLOW, process)),
                .statuscode = statuscode,
                .error = dup_or_null(error),
                .at = at,
        };
}

static inline struct trace_row trace_of(unsigned n, unsigned step, const char *message, const char *entity,
                                        int mode, time_t at, const char *exception) {
        return (struct trace_row) {
                .id = strdup(guid(K_TRACE, n)),
                .step_id = strdup(guid(K_STEP, step)),
                .message = dup_or_null(message),
                .primary_entity = dup_or_null(entity),
                .mode = mode,
                .type_name = strdup("Contoso.Plugins.X"),
                .exception = dup_or_null(exception),
                .at = at,
        };
}

static inline struct mailbox_row mailbox_of(unsigned n, const char *name, const char *email, time_t modified_on) {
        return (struct mailbox_row) {
                .id = strdup(guid(K_MAILBOX, n)),
                .name = dup_or_null(name),
                .email = dup_or_null(email),
                .incoming_status = 1,
                .modified_on = modified_on,
        };
}

#define SEED_TEXT                                                                                   \
        "An unknown error occurred while receiving email through the mailbox \"Support\". The owner " \
        "of the associated email server profile Exchange Online has been notified. The system will "  \
        "try to receive email again later. Email Server Error Code: Exchange server returned "        \
        "UnknownIncomingEmailIntegrationError -2147220956 exception."

#define ACT_TEXT                                                                                    \
        "An unknown error occurred while synchronizing appointments, contacts, and tasks for the "    \
        "mailbox \"Support\". The owner of the associated email server profile Exchange Online has "  \
        "been notified. Email Server Error Code: Exchange server returned "                           \
        "UnknownIncomingEmailIntegrationError -2147220956 exception."

static inline struct alert alert_of(unsigned n, enum alert_kind kind, unsigned mailbox, time_t at) {
        return (struct alert) {
                .source = ALERT_SOURCE_TRACELOG,
                .kind = kind,
                .id = strdup(guid(K_TRACELOG, n)),
                .mailbox_id = strdup(guid(K_MAILBOX, mailbox)),
                .level = 2,
                .code = S3_ERROR_CODE,
                .text = strdup(kind == ALERT_KIND_ACT ? ACT_TEXT : SEED_TEXT),
                .created_on = at - 3600,
                .at = at,
        };
}
