/* Unit tests for correlate.c: suspects (every decoy class of docs/design.md §1 left
 * out, every culprit class found), evidence and its window, the one evidence
 * request of a cycle, verdicts, ordering, notes and remedies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "correlate.h"
#include "detect.h"
#include "engine-rows.h"
#include "rows.h"

#define WINDOW 900
#define ALL_ITEMS (ITEM_EMAIL | ITEM_ACT)

static const struct correlate_params email_only = { .environment = "prod", .item_types = ITEM_EMAIL,
                                                    .window_sec = WINDOW };
static const struct correlate_params all_items = { .environment = "prod", .item_types = ALL_ITEMS,
                                                   .window_sec = WINDOW };

/* A cache holding these workflows and steps (full reads) and mailbox 1. */
static struct cache *cache_of(const struct wf_spec *wfs, size_t n_wfs, const struct step_spec *steps,
                              size_t n_steps) {
        struct cache *c = NULL;
        struct workflow_row *w = calloc(n_wfs + 1, sizeof(*w));
        struct step_row *s = calloc(n_steps + 1, sizeof(*s));
        struct mailbox_row m = mailbox_of(1, "Support", "support@contoso.com", T0 - 86400);

        assert_non_null(w);
        assert_non_null(s);
        for (size_t i = 0; i < n_wfs; i++)
                w[i] = wf_row(wfs[i]);
        for (size_t i = 0; i < n_steps; i++)
                s[i] = step_row_of(steps[i]);
        assert_int_equal(cache_new(&c), 0);
        assert_int_equal(cache_replace_workflows(c, w, n_wfs), 0);
        assert_int_equal(cache_replace_steps(c, s, n_steps), 0);
        assert_int_equal(cache_replace_mailboxes(c, &m, 1), 0);
        workflow_rows_free(w, n_wfs);
        step_rows_free(s, n_steps);
        mailbox_row_done(&m);
        return c;
}

static struct finding *correlate_one(const struct alert *a, const struct cache *c, const struct session_row *s,
                                     size_t ns, const struct trace_row *t, size_t nt,
                                     const struct correlate_params *p) {
        struct finding *f = NULL;
        assert_int_equal(correlate_alert(a, c, s, ns, t, nt, p, T0 + 3, &f), 0);
        assert_non_null(f);
        return f;
}

/* Release a test's sessions, traces and alert. */
static void evidence_done(struct session_row *s, size_t ns, struct trace_row *t, size_t nt, struct alert *a) {
        for (size_t i = 0; i < ns; i++)
                session_row_done(&s[i]);
        for (size_t i = 0; i < nt; i++)
                trace_row_done(&t[i]);
        alert_done(a);
}

static bool has_culprit(const struct finding *f, enum culprit_kind kind, unsigned n) {
        const char *id = guid(kind == CULPRIT_WORKFLOW ? K_WORKFLOW : K_STEP, n);
        for (size_t i = 0; i < f->n_culprits; i++)
                if (f->culprits[i].kind == kind && strcmp(f->culprits[i].id, id) == 0)
                        return true;
        return false;
}

static bool notes_mention(const struct finding *f, const char *text) {
        for (size_t i = 0; i < f->n_notes; i++)
                if (strstr(f->notes[i], text))
                        return true;
        return false;
}

/* ---- decoys and culprits ------------------------------------------------- */

static struct wf_spec wf_decoy(unsigned n, const char *what) {
        struct wf_spec w = WF_REALTIME(n, what, "email");
        if (strcmp(what, "background") == 0)
                w.mode = 0;
        else if (strcmp(what, "draft") == 0)
                w.statecode = 0;
        else if (strcmp(what, "suspended") == 0)
                w.statecode = 2;
        else if (strcmp(what, "update-only") == 0)
                w.on_create = false, w.on_update = "subject,description";
        else if (strcmp(what, "on demand") == 0)
                w.on_create = false;
        else if (strcmp(what, "other entity") == 0)
                w.entity = "account";
        else if (strcmp(what, "ACT entity") == 0)
                w.entity = "appointment";
        else if (strcmp(what, "dialog") == 0)
                w.category = 1;
        else if (strcmp(what, "business rule") == 0)
                w.category = 2;
        else if (strcmp(what, "action") == 0)
                w.category = 3;
        else if (strcmp(what, "BPF") == 0)
                w.category = 4;
        else if (strcmp(what, "modern flow") == 0)
                w.category = 5;
        else if (strcmp(what, "template") == 0)
                w.type = 3;
        else if (strcmp(what, "orphan activation") == 0)
                w.type = 2, w.parent = 99;
        else
                fail_msg("unknown decoy %s", what);
        return w;
}

static const char *const wf_decoys[] = {
        "background", "draft", "suspended", "update-only", "on demand", "other entity", "ACT entity", "dialog",
        "business rule", "action", "BPF", "modern flow", "template", "orphan activation",
};

static struct step_spec step_decoy(unsigned n, const char *what) {
        struct step_spec s = STEP_SYNC(n, what, "Create", "email");
        if (strcmp(what, "async") == 0)
                s.mode = 1;
        else if (strcmp(what, "disabled") == 0)
                s.statecode = 1;
        else if (strcmp(what, "system") == 0)
                s.level = 0;
        else if (strcmp(what, "update") == 0)
                s.message = "Update";
        else if (strcmp(what, "delete") == 0)
                s.message = "Delete";
        else if (strcmp(what, "send") == 0)
                s.message = "Send";
        else if (strcmp(what, "other entity") == 0)
                s.entity = "account";
        else if (strcmp(what, "ACT entity") == 0)
                s.entity = "task";
        else if (strcmp(what, "no-filter update") == 0)
                s.entity = NULL, s.message = "Update";
        else
                fail_msg("unknown decoy %s", what);
        return s;
}

static const char *const step_decoys[] = {
        "async", "disabled", "system", "update", "delete", "send", "other entity", "ACT entity", "no-filter update",
};

/* Each decoy alone, then all of them together: never a culprit of an email alert. */
static void test_decoys(void **state) {
        (void) state;
        struct wf_spec wfs[ELEMENTSOF(wf_decoys)];
        struct step_spec steps[ELEMENTSOF(step_decoys)];
        struct alert a = alert_of(1, ALERT_KIND_EMAIL, 1, T0);
        struct session_row s[ELEMENTSOF(wf_decoys)];
        struct trace_row t[ELEMENTSOF(step_decoys)];

        /* Every decoy also failed right at the alert's time: still no culprit. */
        for (unsigned i = 0; i < ELEMENTSOF(wf_decoys); i++) {
                wfs[i] = wf_decoy(i + 1, wf_decoys[i]);
                s[i] = session_of(i + 1, i + 1, 6, T0, "boom");
        }
        for (unsigned i = 0; i < ELEMENTSOF(step_decoys); i++) {
                steps[i] = step_decoy(i + 1, step_decoys[i]);
                t[i] = trace_of(i + 1, i + 1, steps[i].message, steps[i].entity ? steps[i].entity : "email",
                                steps[i].mode, T0, "boom");
        }
        for (size_t i = 0; i < ELEMENTSOF(wf_decoys); i++) {
                _cleanup_(cache_freep) struct cache *c = cache_of(&wfs[i], 1, NULL, 0);
                struct finding *f = correlate_one(&a, c, s, ELEMENTSOF(s), t, ELEMENTSOF(t), &all_items);
                if (f->n_culprits != 0)
                        fail_msg("workflow decoy \"%s\" named as a culprit", wf_decoys[i]);
                assert_int_equal(f->verdict, VERDICT_UNEXPLAINED);
                finding_free(f);
        }
        for (size_t i = 0; i < ELEMENTSOF(step_decoys); i++) {
                _cleanup_(cache_freep) struct cache *c = cache_of(NULL, 0, &steps[i], 1);
                struct finding *f = correlate_one(&a, c, s, ELEMENTSOF(s), t, ELEMENTSOF(t), &all_items);
                if (f->n_culprits != 0)
                        fail_msg("step decoy \"%s\" named as a culprit", step_decoys[i]);
                assert_int_equal(f->verdict, VERDICT_UNEXPLAINED);
                finding_free(f);
        }
        _cleanup_(cache_freep) struct cache *c = cache_of(wfs, ELEMENTSOF(wfs), steps, ELEMENTSOF(steps));
        struct finding *f = correlate_one(&a, c, s, ELEMENTSOF(s), t, ELEMENTSOF(t), &all_items);
        assert_int_equal(f->n_culprits, 0);
        assert_int_equal(f->verdict, VERDICT_UNEXPLAINED);
        assert_non_null(strstr(f->remedy, "support ticket"));
        finding_free(f);

        evidence_done(s, ELEMENTSOF(s), t, ELEMENTSOF(t), &a);
}

/* Each culprit class of an email alert, alone and among all the decoys. */
static void test_culprits_email(void **state) {
        (void) state;
        struct wf_spec both = WF_REALTIME(2, "Create and update", "email");
        both.on_update = "subject";
        struct step_spec post = STEP_SYNC(3, "post-operation", "Create", "email");
        post.stage = 40;
        const struct {
                enum culprit_kind kind;
                struct wf_spec wf;
                struct step_spec step;
                const char *entity, *message;
        } cases[] = {
                { CULPRIT_WORKFLOW, WF_REALTIME(1, "Set email category", "email"), {}, "email", "Create" },
                { CULPRIT_WORKFLOW, both, {}, "email", "Create" },
                { CULPRIT_PLUGIN_STEP, {}, STEP_SYNC(1, "Contoso.Plugins.EmailCreate: Create of email", "Create", "email"),
                  "email", "Create" },
                { CULPRIT_PLUGIN_STEP, {}, STEP_SYNC(2, "every create", "create", NULL), "email", "Create" },
                { CULPRIT_PLUGIN_STEP, {}, post, "email", "Create" },
        };
        struct alert a = alert_of(1, ALERT_KIND_EMAIL, 1, T0);
        struct wf_spec decoys[ELEMENTSOF(wf_decoys) + 1];
        struct step_spec step_decoys_[ELEMENTSOF(step_decoys) + 1];

        for (unsigned i = 0; i < ELEMENTSOF(wf_decoys); i++)
                decoys[i] = wf_decoy(100 + i, wf_decoys[i]);
        for (unsigned i = 0; i < ELEMENTSOF(step_decoys); i++)
                step_decoys_[i] = step_decoy(100 + i, step_decoys[i]);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                bool wf = cases[i].kind == CULPRIT_WORKFLOW;
                for (int mixed = 0; mixed < 2; mixed++) {
                        size_t nw = mixed ? ELEMENTSOF(wf_decoys) : 0, ns = mixed ? ELEMENTSOF(step_decoys) : 0;
                        struct wf_spec w[ELEMENTSOF(decoys)];
                        struct step_spec st[ELEMENTSOF(step_decoys_)];
                        memcpy(w, decoys, sizeof(w));
                        memcpy(st, step_decoys_, sizeof(st));
                        if (wf)
                                w[nw++] = cases[i].wf;
                        else
                                st[ns++] = cases[i].step;
                        _cleanup_(cache_freep) struct cache *c = cache_of(w, nw, st, ns);
                        struct finding *f = correlate_one(&a, c, NULL, 0, NULL, 0, &email_only);
                        unsigned n = wf ? cases[i].wf.n : cases[i].step.n;

                        if (f->n_culprits != 1 || !has_culprit(f, cases[i].kind, n))
                                fail_msg("case %zu (mixed %d): %zu culprits", i, mixed, f->n_culprits);
                        assert_int_equal(f->verdict, VERDICT_SUSPECTED);
                        assert_string_equal(f->culprits[0].entity, cases[i].entity);
                        assert_string_equal(f->culprits[0].message, cases[i].message);
                        assert_int_equal(f->culprits[0].n_evidence, 0);
                        if (wf) {
                                assert_string_equal(f->culprits[0].name, cases[i].wf.name);
                                assert_null(f->culprits[0].plugin_type);
                        } else {
                                assert_string_equal(f->culprits[0].name, cases[i].step.name);
                                assert_string_equal(f->culprits[0].plugin_type, "Contoso.Plugins.X");
                        }
                        finding_free(f);
                }
        }
        alert_done(&a);
}

/* ACT alerts: appointment/contact/task with update triggers, restricted to item_types. */
static void test_culprits_act(void **state) {
        (void) state;
        struct wf_spec contact_update = WF_REALTIME(2, "Contact on update", "contact");
        contact_update.on_create = false;
        contact_update.on_update = "emailaddress1";
        struct wf_spec appointment_neither = WF_REALTIME(5, "Appointment on demand", "appointment");
        appointment_neither.on_create = false;
        const struct wf_spec wfs[] = {
                WF_REALTIME(1, "Appointment on create", "appointment"),
                contact_update,
                WF_REALTIME(3, "Task on create", "task"),
                WF_REALTIME(4, "Email on create", "email"),     /* not for an ACT alert */
                appointment_neither,
        };
        const struct step_spec steps[] = {
                STEP_SYNC(1, "Appointment update", "Update", "appointment"),
                STEP_SYNC(2, "Contact create", "Create", "contact"),
                STEP_SYNC(3, "Any update", "Update", NULL),
                STEP_SYNC(4, "Task delete", "Delete", "task"),
                STEP_SYNC(5, "Email create", "Create", "email"),
        };
        _cleanup_(cache_freep) struct cache *c = cache_of(wfs, ELEMENTSOF(wfs), steps, ELEMENTSOF(steps));
        struct alert a = alert_of(1, ALERT_KIND_ACT, 1, T0);
        struct finding *f;

        /* All three listed. */
        f = correlate_one(&a, c, NULL, 0, NULL, 0, &all_items);
        assert_int_equal(f->verdict, VERDICT_SUSPECTED);
        assert_int_equal(f->n_culprits, 6);
        assert_true(has_culprit(f, CULPRIT_WORKFLOW, 1));
        assert_true(has_culprit(f, CULPRIT_WORKFLOW, 2));
        assert_true(has_culprit(f, CULPRIT_WORKFLOW, 3));
        assert_true(has_culprit(f, CULPRIT_PLUGIN_STEP, 1));
        assert_true(has_culprit(f, CULPRIT_PLUGIN_STEP, 2));
        assert_true(has_culprit(f, CULPRIT_PLUGIN_STEP, 3));
        for (size_t i = 0; i < f->n_culprits; i++) {
                const struct culprit *cu = &f->culprits[i];
                if (strcmp(cu->id, guid(K_WORKFLOW, 2)) == 0)
                        assert_string_equal(cu->message, "Update");
                if (strcmp(cu->id, guid(K_STEP, 3)) == 0) {
                        assert_string_equal(cu->entity, "appointment,contact,task");
                        assert_string_equal(cu->message, "Update");
                }
        }
        assert_non_null(strstr(f->remedy, "Create or Update of appointment,contact,task"));
        finding_free(f);

        /* Only appointment listed. */
        struct correlate_params p = all_items;
        p.item_types = ITEM_EMAIL | ITEM_APPOINTMENT;
        f = correlate_one(&a, c, NULL, 0, NULL, 0, &p);
        assert_int_equal(f->n_culprits, 3);
        assert_true(has_culprit(f, CULPRIT_WORKFLOW, 1));
        assert_true(has_culprit(f, CULPRIT_PLUGIN_STEP, 1));
        assert_true(has_culprit(f, CULPRIT_PLUGIN_STEP, 3));
        for (size_t i = 0; i < f->n_culprits; i++)
                assert_string_equal(f->culprits[i].entity, "appointment");
        finding_free(f);

        /* None listed: still reported, unexplained, with the advice. */
        f = correlate_one(&a, c, NULL, 0, NULL, 0, &email_only);
        assert_int_equal(f->verdict, VERDICT_UNEXPLAINED);
        assert_int_equal(f->n_culprits, 0);
        assert_true(notes_mention(f, "add appointment contact task to item_types"));
        assert_non_null(strstr(f->remedy, "item_types"));
        finding_free(f);

        /* An email alert in the same environment sees only the email culprits. */
        alert_done(&a);
        a = alert_of(2, ALERT_KIND_EMAIL, 1, T0);
        f = correlate_one(&a, c, NULL, 0, NULL, 0, &all_items);
        assert_int_equal(f->n_culprits, 2);
        assert_true(has_culprit(f, CULPRIT_WORKFLOW, 4));
        assert_true(has_culprit(f, CULPRIT_PLUGIN_STEP, 5));
        finding_free(f);
        alert_done(&a);
}

/* ---- evidence ------------------------------------------------------------ */

static void test_window_edges(void **state) {
        (void) state;
        const struct wf_spec wf = WF_REALTIME(1, "Workflow", "email");
        const struct step_spec step = STEP_SYNC(1, "Step", "Create", "email");
        _cleanup_(cache_freep) struct cache *c = cache_of(&wf, 1, &step, 1);
        struct alert a = alert_of(1, ALERT_KIND_EMAIL, 1, T0);
        static const struct {
                time_t offset;
                bool inside;
        } cases[] = {
                { 0, true }, { -WINDOW, true }, { WINDOW, true }, { -WINDOW - 1, false }, { WINDOW + 1, false },
                { -86400, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (int kind = 0; kind < 2; kind++) {
                        struct session_row s = session_of(1, 1, 6, T0 + cases[i].offset, "failed");
                        struct trace_row t = trace_of(1, 1, "Create", "email", 0, T0 + cases[i].offset, "boom");
                        struct finding *f = correlate_one(&a, c, &s, kind == 0, &t, kind == 1, &email_only);
                        size_t with = 0;

                        for (size_t j = 0; j < f->n_culprits; j++)
                                with += f->culprits[j].n_evidence;
                        if (with != cases[i].inside)
                                fail_msg("offset %ld, %s: %zu evidence", (long) cases[i].offset,
                                         kind ? "trace" : "session", with);
                        assert_int_equal(f->verdict, cases[i].inside ? VERDICT_CONFIRMED : VERDICT_SUSPECTED);
                        if (cases[i].inside) {
                                const struct culprit *cu = &f->culprits[0];
                                assert_int_equal(cu->kind, kind ? CULPRIT_PLUGIN_STEP : CULPRIT_WORKFLOW);
                                assert_int_equal(cu->evidence[0].kind,
                                                 kind ? EVIDENCE_PLUGIN_TRACE : EVIDENCE_PROCESS_SESSION);
                                assert_int_equal(cu->evidence[0].at, T0 + cases[i].offset);
                                assert_string_equal(cu->evidence[0].id, kind ? t.id : s.id);
                                assert_string_equal(cu->evidence[0].error, kind ? "boom" : "failed");
                        }
                        finding_free(f);
                        session_row_done(&s);
                        trace_row_done(&t);
                }
        alert_done(&a);
}

/* What is not evidence, even of a suspect and right at the alert's time. */
static void test_not_evidence(void **state) {
        (void) state;
        const struct wf_spec wf = WF_REALTIME(1, "Workflow", "email");
        const struct step_spec steps[] = { STEP_SYNC(1, "Step", "Create", "email"),
                                           STEP_SYNC(2, "Any entity", "Create", NULL) };
        _cleanup_(cache_freep) struct cache *c = cache_of(&wf, 1, steps, 2);
        struct alert a = alert_of(1, ALERT_KIND_EMAIL, 1, T0);
        struct session_row s[] = {
                session_of(1, 1, 1, T0, "waiting"),     /* not failed */
                session_of(2, 1, 3, T0, "in progress"),
                session_of(3, 7, 6, T0, "failed"),      /* another process */
        };
        struct trace_row t[] = {
                trace_of(1, 1, "Create", "email", 1, T0, "boom"),       /* asynchronous */
                trace_of(2, 1, "Create", "email", 0, T0, ""),           /* no exception */
                trace_of(3, 1, "Create", "email", 0, T0, NULL),
                trace_of(4, 1, "Update", "email", 0, T0, "boom"),       /* other message */
                trace_of(5, 2, "Create", "account", 0, T0, "boom"),     /* other entity */
                trace_of(6, 3, "Create", "email", 0, T0, "boom"),       /* other step */
                trace_of(7, 2, NULL, "email", 0, T0, "boom"),
        };
        struct finding *f = correlate_one(&a, c, s, ELEMENTSOF(s), t, ELEMENTSOF(t), &email_only);

        assert_int_equal(f->n_culprits, 3);
        assert_int_equal(f->verdict, VERDICT_SUSPECTED);
        for (size_t i = 0; i < f->n_culprits; i++)
                assert_int_equal(f->culprits[i].n_evidence, 0);
        finding_free(f);
        evidence_done(s, ELEMENTSOF(s), t, ELEMENTSOF(t), &a);
}

/* Sessions point at activation rows; they convict the definition. */
static void test_activation_sessions(void **state) {
        (void) state;
        const struct wf_spec wfs[] = {
                WF_REALTIME(1, "Workflow", "email"),
                { .n = 2, .name = "Workflow", .category = 0, .type = 2, .statecode = 0, .mode = 1, .entity = "email",
                  .on_create = true, .parent = 1 },
                { .n = 3, .name = "Workflow", .category = 0, .type = 2, .statecode = 1, .mode = 1, .entity = "email",
                  .on_create = true, .parent = 1 },
        };
        _cleanup_(cache_freep) struct cache *c = cache_of(wfs, ELEMENTSOF(wfs), NULL, 0);
        struct alert a = alert_of(1, ALERT_KIND_EMAIL, 1, T0);
        struct session_row s[] = { session_of(1, 3, 6, T0 - 5, "via activation"),
                                   session_of(2, 2, 6, T0 + 60, "via older activation") };
        struct finding *f = correlate_one(&a, c, s, ELEMENTSOF(s), NULL, 0, &email_only);

        assert_int_equal(f->verdict, VERDICT_CONFIRMED);
        assert_int_equal(f->n_culprits, 1);
        assert_string_equal(f->culprits[0].id, guid(K_WORKFLOW, 1));
        assert_int_equal(f->culprits[0].n_evidence, 2);
        assert_string_equal(f->culprits[0].evidence[0].id, s[0].id);
        assert_string_equal(f->culprits[0].evidence[1].id, s[1].id);
        finding_free(f);
        for (size_t i = 0; i < ELEMENTSOF(s); i++)
                session_row_done(&s[i]);
        alert_done(&a);
}

/* Several alerts of a cycle: one request (ids, time range), each its own evidence. */
static void test_cycle(void **state) {
        (void) state;
        const struct wf_spec wfs[] = {
                WF_REALTIME(1, "Email workflow", "email"),
                { .n = 2, .name = "Email workflow", .category = 0, .type = 2, .statecode = 1, .mode = 1,
                  .entity = "email", .on_create = true, .parent = 1 },
                WF_REALTIME(3, "Task workflow", "task"),
                { .n = 4, .name = "Task workflow", .category = 0, .type = 2, .statecode = 1, .mode = 1,
                  .entity = "task", .on_create = true, .parent = 3 },
                wf_decoy(5, "background"),
                { .n = 6, .name = "Background", .category = 0, .type = 2, .statecode = 1, .mode = 0,
                  .entity = "email", .on_create = true, .parent = 5 },
        };
        const struct step_spec steps[] = { STEP_SYNC(1, "Email step", "Create", "email"),
                                           STEP_SYNC(2, "Task step", "Update", "task"), step_decoy(3, "async") };
        _cleanup_(cache_freep) struct cache *c = cache_of(wfs, ELEMENTSOF(wfs), steps, ELEMENTSOF(steps));
        struct alert alerts[] = {
                alert_of(1, ALERT_KIND_EMAIL, 1, T0),
                alert_of(2, ALERT_KIND_ACT, 1, T0 + 3600),
                alert_of(3, ALERT_KIND_EMAIL, 1, T0 + 7200),
        };
        struct evidence_request req;

        /* Email alerts only: email suspects only. */
        assert_int_equal(correlate_evidence_request(alerts, 1, c, &all_items, &req), 0);
        assert_int_equal(req.n_process_ids, 2);
        assert_string_equal(req.process_ids[0], guid(K_WORKFLOW, 1));
        assert_string_equal(req.process_ids[1], guid(K_WORKFLOW, 2));
        assert_int_equal(req.n_step_ids, 1);
        assert_string_equal(req.step_ids[0], guid(K_STEP, 1));
        assert_int_equal(req.from, T0 - WINDOW);
        assert_int_equal(req.to, T0 + WINDOW);
        evidence_request_done(&req);

        /* All three, in any order. */
        struct alert shuffled[] = { alerts[2], alerts[0], alerts[1] };
        assert_int_equal(correlate_evidence_request(shuffled, 3, c, &all_items, &req), 0);
        assert_int_equal(req.n_process_ids, 4);
        for (unsigned i = 0; i < 4; i++)
                assert_string_equal(req.process_ids[i], guid(K_WORKFLOW, i + 1));
        assert_int_equal(req.n_step_ids, 2);
        assert_string_equal(req.step_ids[0], guid(K_STEP, 1));
        assert_string_equal(req.step_ids[1], guid(K_STEP, 2));
        assert_int_equal(req.from, T0 - WINDOW);
        assert_int_equal(req.to, T0 + 7200 + WINDOW);
        evidence_request_done(&req);

        /* Without ACT item types the ACT alert adds nothing. */
        assert_int_equal(correlate_evidence_request(alerts + 1, 1, c, &email_only, &req), 0);
        assert_int_equal(req.n_process_ids + req.n_step_ids, 0);
        assert_int_equal(req.from, T0 + 3600 - WINDOW);
        evidence_request_done(&req);
        assert_int_equal(correlate_evidence_request(NULL, 0, c, &email_only, &req), 0);
        assert_int_equal(req.from, 0);
        assert_int_equal(req.to, 0);

        /* One fetch for the cycle, each alert its own evidence. */
        struct session_row s[] = {
                session_of(1, 2, 6, T0 + 10, "first"),
                session_of(2, 1, 6, T0 + 7200 - 5, "third"),
                session_of(3, 4, 6, T0 + 3600 + 1, "task"),
                session_of(4, 6, 6, T0, "background"),
        };
        struct trace_row t[] = { trace_of(1, 2, "Update", "task", 0, T0 + 3590, "task step") };
        _cleanup_(correlate_evidence_freep) struct correlate_evidence *ev = NULL;
        assert_int_equal(correlate_evidence_new(c, s, ELEMENTSOF(s), t, ELEMENTSOF(t), &ev), 0);

        struct finding *f[3];
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(correlate_finding(&alerts[i], c, ev, &all_items, 1, T0 + 7300, &f[i]), 0);
        assert_int_equal(f[0]->verdict, VERDICT_CONFIRMED);
        assert_string_equal(f[0]->culprits[0].id, guid(K_WORKFLOW, 1));
        assert_int_equal(f[0]->culprits[0].n_evidence, 1);
        assert_string_equal(f[0]->culprits[0].evidence[0].error, "first");
        assert_int_equal(f[1]->verdict, VERDICT_CONFIRMED);
        assert_int_equal(f[1]->n_culprits, 2);
        assert_int_equal(f[1]->culprits[0].n_evidence + f[1]->culprits[1].n_evidence, 2);
        assert_int_equal(f[2]->culprits[0].n_evidence, 1);
        assert_string_equal(f[2]->culprits[0].evidence[0].error, "third");
        for (size_t i = 0; i < 3; i++)
                finding_free(f[i]);

        for (size_t i = 0; i < ELEMENTSOF(s); i++)
                session_row_done(&s[i]);
        trace_row_done(&t[0]);
        for (size_t i = 0; i < ELEMENTSOF(alerts); i++)
                alert_done(&alerts[i]);
}

/* The cache's deltas decide: activated an hour ago -> a suspect; deactivated
 * an hour ago -> not; deleted (gone from a full read) -> not. */
static void test_cache_delta_suspects(void **state) {
        (void) state;
        struct wf_spec fresh = WF_REALTIME(1, "Activated an hour ago", "email"),
                       stale = WF_REALTIME(2, "Deactivated an hour ago", "email"),
                       deleted = WF_REALTIME(3, "Deleted", "email");
        fresh.statecode = 0;
        const struct wf_spec start[] = { fresh, stale, deleted };
        _cleanup_(cache_freep) struct cache *c = cache_of(start, ELEMENTSOF(start), NULL, 0);
        struct alert a = alert_of(1, ALERT_KIND_EMAIL, 1, T0);
        struct workflow_row delta[2];
        struct finding *f;

        f = correlate_one(&a, c, NULL, 0, NULL, 0, &email_only);
        assert_int_equal(f->n_culprits, 2);
        assert_false(has_culprit(f, CULPRIT_WORKFLOW, 1));
        finding_free(f);

        fresh.statecode = 1;
        fresh.modified_on = T0 - 3600;
        stale.statecode = 0;
        stale.modified_on = T0 - 3600;
        delta[0] = wf_row(fresh);
        delta[1] = wf_row(stale);
        assert_int_equal(cache_update_workflows(c, delta, 2), 0);
        f = correlate_one(&a, c, NULL, 0, NULL, 0, &email_only);
        assert_int_equal(f->n_culprits, 2);
        assert_true(has_culprit(f, CULPRIT_WORKFLOW, 1));
        assert_false(has_culprit(f, CULPRIT_WORKFLOW, 2));
        assert_true(has_culprit(f, CULPRIT_WORKFLOW, 3));
        finding_free(f);

        delta[0] = wf_row(fresh);
        assert_int_equal(cache_replace_workflows(c, delta, 1), 0);
        f = correlate_one(&a, c, NULL, 0, NULL, 0, &email_only);
        assert_int_equal(f->n_culprits, 1);
        assert_true(has_culprit(f, CULPRIT_WORKFLOW, 1));
        finding_free(f);
        alert_done(&a);
}

/* ---- the finding --------------------------------------------------------- */

static void test_ordering(void **state) {
        (void) state;
        struct wf_spec nologs = WF_REALTIME(5, "Alpha", "email");
        nologs.keeps_logs = false;
        const struct wf_spec wfs[] = {
                WF_REALTIME(1, "Zeta", "email"),
                nologs,
                WF_REALTIME(3, "Same", "email"),
                WF_REALTIME(2, "Same", "email"),
        };
        const struct step_spec steps[] = { STEP_SYNC(1, "Beta", "Create", "email"),
                                           STEP_SYNC(2, "Omega", "Create", "email") };
        _cleanup_(cache_freep) struct cache *c = cache_of(wfs, ELEMENTSOF(wfs), steps, ELEMENTSOF(steps));
        struct alert a = alert_of(1, ALERT_KIND_EMAIL, 1, T0);
        struct session_row s[12];
        static const time_t offsets[12] = { -100, 50, -50, 1, -2, 3, -4, 5, -6, 7, -8, 600 };
        struct trace_row t[] = { trace_of(1, 2, "Create", "email", 0, T0 - 30, "omega failed") };
        struct finding *f;

        for (unsigned i = 0; i < 12; i++)
                s[i] = session_of(i + 1, 1, 6, T0 + offsets[i], "zeta failed");
        f = correlate_one(&a, c, s, 12, t, 1, &email_only);
        assert_int_equal(f->verdict, VERDICT_CONFIRMED);
        assert_int_equal(f->n_culprits, 6);
        /* With evidence first, then the others; in each group workflows
         * before steps, then by name, then by id. */
        assert_string_equal(f->culprits[0].name, "Zeta");
        assert_string_equal(f->culprits[1].name, "Omega");
        assert_string_equal(f->culprits[2].name, "Alpha");
        assert_string_equal(f->culprits[3].id, guid(K_WORKFLOW, 2));
        assert_string_equal(f->culprits[4].id, guid(K_WORKFLOW, 3));
        assert_string_equal(f->culprits[5].name, "Beta");
        /* Evidence: closest first, ties earlier first, at most 10. */
        const struct culprit *z = &f->culprits[0];
        static const time_t want[CORRELATE_MAX_EVIDENCE] = { 1, -2, 3, -4, 5, -6, 7, -8, -50, 50 };
        assert_int_equal(z->n_evidence, CORRELATE_MAX_EVIDENCE);
        for (size_t i = 0; i < CORRELATE_MAX_EVIDENCE; i++)
                assert_int_equal(z->evidence[i].at, T0 + want[i]);
        /* Notes: Alpha keeps no logs; confirmed: no trace-logging note. */
        assert_int_equal(f->n_notes, 1);
        assert_true(notes_mention(f, "Workflow 'Alpha' keeps no failure logs"));
        assert_true(notes_mention(f, "Keep logs for workflow jobs that encountered errors"));
        /* The remedy names the convicted code only. */
        assert_non_null(strstr(f->remedy, "step 'Omega'"));
        assert_non_null(strstr(f->remedy, "workflow 'Zeta'"));
        assert_non_null(strstr(f->remedy, "Run this workflow in the background"));
        assert_non_null(strstr(f->remedy, "plug-in trace log"));
        assert_null(strstr(f->remedy, "Alpha"));
        finding_free(f);

        /* Deterministic whatever the order of the fetched rows. */
        struct session_row r[12];
        for (unsigned i = 0; i < 12; i++)
                r[i] = s[11 - i];
        f = correlate_one(&a, c, r, 12, t, 1, &email_only);
        for (size_t i = 0; i < CORRELATE_MAX_EVIDENCE; i++)
                assert_int_equal(f->culprits[0].evidence[i].at, T0 + want[i]);
        finding_free(f);

        for (size_t i = 0; i < 12; i++)
                session_row_done(&s[i]);
        trace_row_done(&t[0]);
        alert_done(&a);
}

static void test_verdicts_and_notes(void **state) {
        (void) state;
        struct wf_spec nologs = WF_REALTIME(1, "Route to queue", "email");
        nologs.keeps_logs = false;
        const struct step_spec step = STEP_SYNC(1, "Contoso.Plugins.EmailCreate: Create of email", "Create", "email");
        struct alert a = alert_of(1, ALERT_KIND_EMAIL, 1, T0);
        struct finding *f;

        /* Suspected: a workflow without logs and a step without traces. */
        {
                _cleanup_(cache_freep) struct cache *c = cache_of(&nologs, 1, &step, 1);
                f = correlate_one(&a, c, NULL, 0, NULL, 0, &email_only);
                assert_int_equal(f->verdict, VERDICT_SUSPECTED);
                assert_int_equal(f->n_notes, 2);
                assert_true(notes_mention(f, "Workflow 'Route to queue' keeps no failure logs"));
                assert_true(notes_mention(f, "Enable logging to plug-in trace log"));
                assert_non_null(strstr(f->remedy, "disable each temporarily"));
                assert_non_null(strstr(f->remedy, "workflow 'Route to queue': check 'Run this workflow in the "
                                                  "background (recommended)' to make it asynchronous"));
                assert_non_null(strstr(f->remedy, "step 'Contoso.Plugins.EmailCreate: Create of email': register "
                                                  "it with Execution Mode Asynchronous"));
                finding_free(f);
        }
        /* Suspected, workflows only: no trace-logging note. */
        {
                const struct wf_spec wf = WF_REALTIME(2, "Logs kept", "email");
                _cleanup_(cache_freep) struct cache *c = cache_of(&wf, 1, NULL, 0);
                f = correlate_one(&a, c, NULL, 0, NULL, 0, &email_only);
                assert_int_equal(f->verdict, VERDICT_SUSPECTED);
                assert_int_equal(f->n_notes, 0);
                finding_free(f);
        }
        /* Unexplained: no suspects, no notes, a human remedy. */
        {
                _cleanup_(cache_freep) struct cache *c = cache_of(NULL, 0, NULL, 0);
                f = correlate_one(&a, c, NULL, 0, NULL, 0, &email_only);
                assert_int_equal(f->verdict, VERDICT_UNEXPLAINED);
                assert_int_equal(f->n_notes, 0);
                assert_non_null(strstr(f->remedy, "Exchange"));
                assert_non_null(strstr(f->remedy, "permissions"));
                assert_non_null(strstr(f->remedy, "support ticket"));
                finding_free(f);
        }
        /* Many suspects: the remedy lists three and counts the rest. */
        {
                struct wf_spec many[5];
                char names[5][16];
                for (unsigned i = 0; i < 5; i++) {
                        snprintf(names[i], sizeof(names[i]), "W%u", i);
                        many[i] = WF_REALTIME(10 + i, names[i], "email");
                }
                _cleanup_(cache_freep) struct cache *c = cache_of(many, 5, NULL, 0);
                f = correlate_one(&a, c, NULL, 0, NULL, 0, &email_only);
                assert_non_null(strstr(f->remedy, "workflows 'W0', 'W1', 'W2' and 2 more listed: check"));
                assert_non_null(strstr(f->remedy, "make them asynchronous"));
                assert_null(strstr(f->remedy, "'W3'"));
                finding_free(f);
        }
        alert_done(&a);
}

static void test_finding_fields(void **state) {
        (void) state;
        const struct wf_spec wf = WF_REALTIME(1, "Workflow", "email");
        _cleanup_(cache_freep) struct cache *c = cache_of(&wf, 1, NULL, 0);
        struct alert a = alert_of(1, ALERT_KIND_EMAIL, 1, T0);
        char longtext[3000];
        struct session_row s;
        struct finding *f;

        /* A long, multi-line error: one line, cut on a UTF-8 boundary. */
        strcpy(longtext, "Unhandled exception:\n  Exception type: System.ServiceModel.FaultException\r\n\tMessage: ");
        for (size_t n = strlen(longtext); n + 2 < sizeof(longtext); n += 2)
                memcpy(longtext + n, "\xc3\xa9", 2), longtext[n + 2] = '\0';
        s = session_of(1, 1, 6, T0, longtext);
        f = correlate_one(&a, c, &s, 1, NULL, 0, &email_only);
        assert_string_equal(f->id, "prod/tracelog/0000000d-0000-4000-8000-000000000001");
        assert_string_equal(f->environment, "prod");
        assert_int_equal(f->detected_at, T0 + 3);
        assert_int_equal(f->occurrences, 1);
        assert_string_equal(f->alert.id, a.id);
        assert_string_equal(f->alert.text, a.text);
        assert_int_equal(f->alert.at, T0);
        assert_string_equal(f->mailbox.id, guid(K_MAILBOX, 1));
        assert_string_equal(f->mailbox.name, "Support");
        assert_string_equal(f->mailbox.email, "support@contoso.com");
        const char *e = f->culprits[0].evidence[0].error;
        assert_true(strlen(e) <= CORRELATE_MAX_ERROR);
        assert_true(strlen(e) > CORRELATE_MAX_ERROR - 8);
        assert_null(strchr(e, '\n'));
        assert_null(strchr(e, '\t'));
        assert_non_null(strstr(e, "Unhandled exception: Exception type: System.ServiceModel.FaultException Message: "));
        assert_string_equal(e + strlen(e) - 3, "...");
        assert_int_equal((unsigned char) e[strlen(e) - 4], 0xa9); /* a whole "é" before the dots */
        finding_free(f);
        session_row_done(&s);

        /* Unknown mailbox: its id only. Generation 2. */
        alert_done(&a);
        a = alert_of(1, ALERT_KIND_EMAIL, 42, T0);
        assert_int_equal(correlate_finding(&a, c, NULL, &email_only, 2, T0, &f), 0);
        assert_string_equal(f->id, "prod/tracelog/0000000d-0000-4000-8000-000000000001#2");
        assert_string_equal(f->mailbox.id, guid(K_MAILBOX, 42));
        assert_null(f->mailbox.name);
        assert_null(f->mailbox.email);
        assert_int_equal(f->verdict, VERDICT_SUSPECTED);
        finding_free(f);
        alert_done(&a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decoys),
                cmocka_unit_test(test_culprits_email),
                cmocka_unit_test(test_culprits_act),
                cmocka_unit_test(test_window_edges),
                cmocka_unit_test(test_not_evidence),
                cmocka_unit_test(test_activation_sessions),
                cmocka_unit_test(test_cycle),
                cmocka_unit_test(test_cache_delta_suspects),
                cmocka_unit_test(test_ordering),
                cmocka_unit_test(test_verdicts_and_notes),
                cmocka_unit_test(test_finding_fields),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
