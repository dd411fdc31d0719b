/* model.c: names and destructors for the shared data model (model.h).
 * Knows nothing of where rows come from or where findings go. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "model.h"

bool environment_name_is_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;

        if (n == 0 || n > ENVIRONMENT_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return false;
        return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

const char *verdict_to_string(enum verdict v) {
        switch (v) {
        case VERDICT_CONFIRMED:
                return "confirmed";
        case VERDICT_SUSPECTED:
                return "suspected";
        case VERDICT_UNEXPLAINED:
                return "unexplained";
        }
        return "unknown";
}

const char *culprit_kind_to_string(enum culprit_kind k) {
        return k == CULPRIT_WORKFLOW ? "workflow" : "plugin_step";
}

const char *evidence_kind_to_string(enum evidence_kind k) {
        return k == EVIDENCE_PROCESS_SESSION ? "process_session" : "plugin_trace";
}

const char *alert_source_to_string(enum alert_source s) {
        return s == ALERT_SOURCE_TRACELOG ? "tracelog" : "mailbox";
}

static const struct {
        enum item_type type;
        const char *name;
} item_names[] = {
        { ITEM_EMAIL, "email" },
        { ITEM_APPOINTMENT, "appointment" },
        { ITEM_CONTACT, "contact" },
        { ITEM_TASK, "task" },
};

const char *item_type_to_string(enum item_type t) {
        for (size_t i = 0; i < ELEMENTSOF(item_names); i++)
                if (item_names[i].type == t)
                        return item_names[i].name;
        return NULL;
}

int item_type_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(item_names); i++)
                if (strcmp(item_names[i].name, s) == 0)
                        return (int) item_names[i].type;
        return -EINVAL;
}

/* ---- rows ---------------------------------------------------------------- */

void tracelog_row_done(struct tracelog_row *r) {
        if (!r)
                return;
        free(r->id);
        free(r->regarding_id);
        free(r->regarding_type);
        free(r->text);
        free(r->errordetails);
        *r = (struct tracelog_row) {};
}

void mailbox_row_done(struct mailbox_row *r) {
        if (!r)
                return;
        free(r->id);
        free(r->name);
        free(r->email);
        free(r->last_error);
        *r = (struct mailbox_row) {};
}

void workflow_row_done(struct workflow_row *r) {
        if (!r)
                return;
        free(r->id);
        free(r->name);
        free(r->parent_id);
        free(r->primary_entity);
        free(r->trigger_on_update_attributes);
        *r = (struct workflow_row) {};
}

void step_row_done(struct step_row *r) {
        if (!r)
                return;
        free(r->id);
        free(r->name);
        free(r->message);
        free(r->primary_entity);
        free(r->plugin_type);
        *r = (struct step_row) {};
}

void session_row_done(struct session_row *r) {
        if (!r)
                return;
        free(r->id);
        free(r->process_id);
        free(r->error);
        *r = (struct session_row) {};
}

void trace_row_done(struct trace_row *r) {
        if (!r)
                return;
        free(r->id);
        free(r->step_id);
        free(r->message);
        free(r->primary_entity);
        free(r->type_name);
        free(r->exception);
        *r = (struct trace_row) {};
}

#define DEFINE_ROWS_FREE(type, free_many, done)                 \
        void free_many(struct type *rows, size_t n) {           \
                for (size_t i = 0; rows && i < n; i++)          \
                        done(&rows[i]);                         \
                free(rows);                                     \
        }
DEFINE_ROWS_FREE(tracelog_row, tracelog_rows_free, tracelog_row_done)
DEFINE_ROWS_FREE(mailbox_row, mailbox_rows_free, mailbox_row_done)
DEFINE_ROWS_FREE(workflow_row, workflow_rows_free, workflow_row_done)
DEFINE_ROWS_FREE(step_row, step_rows_free, step_row_done)
DEFINE_ROWS_FREE(session_row, session_rows_free, session_row_done)
DEFINE_ROWS_FREE(trace_row, trace_rows_free, trace_row_done)

/* ---- conclusions ---------------------------------------------------------- */

void alert_done(struct alert *a) {
        if (!a)
                return;
        free(a->id);
        free(a->mailbox_id);
        free(a->text);
        *a = (struct alert) {};
}

void mailbox_info_done(struct mailbox_info *m) {
        if (!m)
                return;
        free(m->id);
        free(m->name);
        free(m->email);
        *m = (struct mailbox_info) {};
}

void culprit_done(struct culprit *c) {
        if (!c)
                return;
        free(c->id);
        free(c->name);
        free(c->entity);
        free(c->message);
        free(c->plugin_type);
        for (size_t i = 0; i < c->n_evidence; i++) {
                free(c->evidence[i].id);
                free(c->evidence[i].error);
        }
        free(c->evidence);
        *c = (struct culprit) {};
}

void finding_free(struct finding *f) {
        if (!f)
                return;
        free(f->id);
        free(f->environment);
        alert_done(&f->alert);
        mailbox_info_done(&f->mailbox);
        for (size_t i = 0; i < f->n_culprits; i++)
                culprit_done(&f->culprits[i]);
        free(f->culprits);
        for (size_t i = 0; i < f->n_notes; i++)
                free(f->notes[i]);
        free(f->notes);
        free(f->remedy);
        free(f);
}

void resolved_event_done(struct resolved_event *e) {
        if (!e)
                return;
        free(e->finding_id);
        free(e->environment);
        mailbox_info_done(&e->mailbox);
        free(e->alert_id);
        *e = (struct resolved_event) {};
}

void error_event_done(struct error_event *e) {
        if (!e)
                return;
        free(e->environment);
        free(e->query);
        free(e->message);
        *e = (struct error_event) {};
}
