/* samples.c: the records of samples.h. Allocation failures abort: these
 * are test fixtures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samples.h"

static char *xstrdup(const char *s) {
        char *p = s ? strdup(s) : NULL;

        if (s && !p)
                abort();
        return p;
}

static void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n, size);

        if (!p)
                abort();
        return p;
}

static struct finding *finding_base(const char *id_suffix) {
        struct finding *f = xcalloc(1, sizeof(*f));
        char id[128];

        snprintf(id, sizeof(id), "prod/tracelog/%s", id_suffix);
        f->id = xstrdup(id);
        f->environment = xstrdup("prod");
        f->detected_at = SAMPLE_T0;
        f->alert = (struct alert) {
                .source = ALERT_SOURCE_TRACELOG,
                .kind = ALERT_KIND_EMAIL,
                .id = xstrdup(id_suffix),
                .mailbox_id = xstrdup(SAMPLE_MAILBOX_ID),
                .level = 2,
                .code = S3_ERROR_CODE,
                .text = xstrdup("An unknown error occurred while receiving email through the mailbox "
                                "\"Support\". The owner of the associated email server profile "
                                "Contoso Exchange Online has been notified. Details: Exchange server "
                                "returned UnknownIncomingEmailIntegrationError -2147220956 exception."),
                .created_on = SAMPLE_T0 - 5,
                .at = SAMPLE_T0 - 5,
        };
        f->mailbox = (struct mailbox_info) {
                .id = xstrdup(SAMPLE_MAILBOX_ID),
                .name = xstrdup("Support"),
                .email = xstrdup("support@contoso.com"),
        };
        f->occurrences = 1;
        return f;
}

static void set_workflow(struct culprit *c, const char *name, const char *session_error) {
        *c = (struct culprit) {
                .kind = CULPRIT_WORKFLOW,
                .id = xstrdup(SAMPLE_WORKFLOW_ID),
                .name = xstrdup(name),
                .entity = xstrdup("email"),
                .message = xstrdup("Create"),
                .n_evidence = 1,
                .evidence = xcalloc(1, sizeof(struct evidence)),
        };
        c->evidence[0] = (struct evidence) {
                .kind = EVIDENCE_PROCESS_SESSION,
                .id = xstrdup(SAMPLE_SESSION_ID),
                .at = SAMPLE_T0 - 6,
                .error = xstrdup(session_error),
        };
}

static void set_step(struct culprit *c, const char *name) {
        *c = (struct culprit) {
                .kind = CULPRIT_PLUGIN_STEP,
                .id = xstrdup(SAMPLE_STEP_ID),
                .name = xstrdup(name),
                .entity = xstrdup("email"),
                .message = xstrdup("Create"),
                .plugin_type = xstrdup("Contoso.Plugins.EmailCreate"),
        };
}

static void set_notes(struct finding *f, const char *note, const char *remedy) {
        f->n_notes = 1;
        f->notes = xcalloc(1, sizeof(char *));
        f->notes[0] = xstrdup(note);
        f->remedy = xstrdup(remedy);
}

struct finding *sample_finding_full(void) {
        struct finding *f = finding_base(SAMPLE_ALERT_ID);

        f->verdict = VERDICT_CONFIRMED;
        f->n_culprits = 2;
        f->culprits = xcalloc(2, sizeof(struct culprit));
        set_workflow(&f->culprits[0], "Set email category",
                     "Plugin Exception: The given key was not present in the dictionary. (0x80040224)");
        set_step(&f->culprits[1], "Contoso.Plugins.EmailCreate: Create of email");
        set_notes(f,
                  "Workflow 'Route to queue' keeps no failure logs: turn on 'Keep logs for "
                  "workflow jobs that encountered errors'",
                  "Deactivate or fix the listed code, or make it run asynchronously; then check "
                  "its failed process sessions and plug-in trace log.");
        return f;
}

struct finding *sample_finding_suspected(void) {
        struct finding *f = finding_base("2b3c4d5e-6f70-4819-a2b3-c4d5e6f70819");

        f->verdict = VERDICT_SUSPECTED;
        f->occurrences = 3;
        f->mailbox.email = (free(f->mailbox.email), NULL);
        f->n_culprits = 1;
        f->culprits = xcalloc(1, sizeof(struct culprit));
        set_step(&f->culprits[0], "Contoso.Plugins.EmailCreate: Create of email");
        f->remedy = xstrdup("Disable the step or make it asynchronous; then read its plug-in trace log.");
        return f;
}

struct finding *sample_finding_unexplained(void) {
        struct finding *f = finding_base(SAMPLE_MAILBOX_ID);

        f->alert.source = ALERT_SOURCE_MAILBOX;
        f->alert.kind = ALERT_KIND_ACT;
        f->verdict = VERDICT_UNEXPLAINED;
        f->remedy = xstrdup("No synchronous code runs on these items: check the Exchange side.");
        return f;
}

const char sample_hostile_mailbox_name[] =
        "Sup\"port\n\ttab\x01\x1b[31mred\\ \xff\xfe bad=1 \xc2\x85 \xe2\x80\xa8 end";
const char sample_hostile_email[] = "a b=c\"@x.example";
const char sample_hostile_step_name[] =
        "Step \xed\xa0\x80 surrogate, overlong \xc0\xaf, newline\nsecond line";
const char sample_hostile_note[] = "note with\nnewline and \x7f del";
const char sample_hostile_remedy[] = "remedy \xff\xfe\xfd";
const char sample_hostile_evidence_error[] = "line 1\r\nline 2\x01";

char *sample_long_name(void) {
        size_t n = strlen("Long ") + SAMPLE_LONG_NAME_LEN + strlen(" end");
        char *s = xcalloc(n + 1, 1);

        strcpy(s, "Long ");
        memset(s + 5, 'x', SAMPLE_LONG_NAME_LEN);
        strcpy(s + 5 + SAMPLE_LONG_NAME_LEN, " end");
        return s;
}

struct finding *sample_finding_hostile(void) {
        struct finding *f = finding_base("3c4d5e6f-7081-4a2b-b3c4-d5e6f7081a2b");

        free(f->mailbox.name);
        free(f->mailbox.email);
        f->mailbox.name = xstrdup(sample_hostile_mailbox_name);
        f->mailbox.email = xstrdup(sample_hostile_email);
        f->verdict = VERDICT_CONFIRMED;
        f->n_culprits = 2;
        f->culprits = xcalloc(2, sizeof(struct culprit));
        set_workflow(&f->culprits[0], "", sample_hostile_evidence_error);
        free(f->culprits[0].name);
        f->culprits[0].name = sample_long_name();
        set_step(&f->culprits[1], sample_hostile_step_name);
        set_notes(f, sample_hostile_note, sample_hostile_remedy);
        return f;
}

void sample_resolved(struct resolved_event *e) {
        *e = (struct resolved_event) {
                .finding_id = xstrdup("prod/tracelog/" SAMPLE_ALERT_ID),
                .environment = xstrdup("prod"),
                .mailbox = {
                        .id = xstrdup(SAMPLE_MAILBOX_ID),
                        .name = xstrdup("Support"),
                        .email = xstrdup("support@contoso.com"),
                },
                .alert_id = xstrdup(SAMPLE_ALERT_ID),
                .occurrences = 3,
                .last_alert_at = SAMPLE_T0 - 5,
                .resolved_at = SAMPLE_T0 + 3600,
        };
}

void sample_error_failing(struct error_event *e) {
        *e = (struct error_event) {
                .environment = xstrdup("prod"),
                .state = ERROR_STATE_FAILING,
                .query = xstrdup("tracelogs"),
                .message = xstrdup("HTTP 503 Service Unavailable"),
                .since = SAMPLE_T0,
                .at = SAMPLE_T0 + 120,
                .failures = 3,
        };
}

void sample_error_recovered(struct error_event *e) {
        sample_error_failing(e);
        e->state = ERROR_STATE_RECOVERED;
        e->at = SAMPLE_T0 + 1200;
        e->failures = 7;
}
