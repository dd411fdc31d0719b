/* Unit tests for cache.c: full reads, delta reads, watermarks, what is kept
 * of workflows and steps, mailbox lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "engine-rows.h"
#include "rows.h"

static struct cache *new_cache(void) {
        struct cache *c = NULL;
        assert_int_equal(cache_new(&c), 0);
        return c;
}

/* Mailbox n as the cache holds it. */
static void assert_mailbox(const struct cache *c, unsigned n, const char *name, const char *email, int incoming,
                           int act, time_t last_success_on) {
        struct cache_mailbox m;

        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, n), &m));
        assert_string_equal(m.name, name);
        assert_string_equal(m.email, email);
        assert_int_equal(m.incoming_status, incoming);
        assert_int_equal(m.act_status, act);
        assert_int_equal(m.last_success_on, last_success_on);
}

static void test_empty(void **state) {
        (void) state;
        _cleanup_(cache_freep) struct cache *c = new_cache();
        const struct workflow_row *const *acts;
        size_t n;

        for (int t = 0; t < _CACHE_TABLE_MAX; t++) {
                assert_int_equal(cache_watermark(c, t), 0);
                assert_false(cache_loaded(c, t));
                assert_int_equal(cache_count(c, t), 0);
        }
        assert_false(cache_mailbox_get(c, guid(K_MAILBOX, 1), NULL));
        assert_null(cache_workflow_get(c, guid(K_WORKFLOW, 1)));
        assert_null(cache_step_get(c, guid(K_STEP, 1)));
        assert_null(cache_workflow_definition_of(c, guid(K_WORKFLOW, 1)));
        assert_int_equal(cache_workflow_activations(c, guid(K_WORKFLOW, 1), &acts), 0);
        cache_workflow_definitions(c, &n);
        assert_int_equal(n, 0);
        cache_steps(c, &n);
        assert_int_equal(n, 0);
        /* An empty full read is still a full read. */
        assert_int_equal(cache_replace_workflows(c, NULL, 0), 0);
        assert_true(cache_loaded(c, CACHE_WORKFLOWS));
}

/* What a full read keeps: candidates and activations, nothing else. */
static void test_workflows_kept(void **state) {
        (void) state;
        _cleanup_(cache_freep) struct cache *c = new_cache();
        struct wf_spec draft = WF_REALTIME(3, "Draft", "email"), background = WF_REALTIME(4, "Background", "email"),
                       dialog = WF_REALTIME(5, "Dialog", "email"), account = WF_REALTIME(6, "Account", "account"),
                       manual = WF_REALTIME(7, "On demand", "email"), updater = WF_REALTIME(8, "On update", "task"),
                       template = WF_REALTIME(9, "Template", "email"), suspended = WF_REALTIME(10, "Suspended", "email");
        draft.statecode = 0;
        background.mode = 0;
        dialog.category = 1;
        manual.on_create = false;
        updater.on_create = false;
        updater.on_update = "subject";
        template.type = 3;
        suspended.statecode = 2;
        struct workflow_row rows[] = {
                wf_row(WF_REALTIME(1, "Set email category", "email")),
                wf_row((struct wf_spec) { .n = 2, .name = "Set email category", .category = 0, .type = 2,
                                          .statecode = 1, .mode = 1, .entity = "email", .on_create = true,
                                          .parent = 1, .modified_on = T0 - 10 }),
                wf_row(draft), wf_row(background), wf_row(dialog), wf_row(account), wf_row(manual),
                wf_row(updater), wf_row(template), wf_row(suspended),
        };
        const struct workflow_row *defs, *const *acts;
        size_t n;

        assert_int_equal(cache_replace_workflows(c, rows, ELEMENTSOF(rows)), 0);
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                assert_null(rows[i].id); /* all taken over (or released) */
        defs = cache_workflow_definitions(c, &n);
        assert_int_equal(n, 2);
        assert_string_equal(defs[0].id, guid(K_WORKFLOW, 1));
        assert_string_equal(defs[1].id, guid(K_WORKFLOW, 8));
        assert_int_equal(cache_count(c, CACHE_WORKFLOWS), 3);
        assert_int_equal(cache_workflow_activations(c, guid(K_WORKFLOW, 1), &acts), 1);
        assert_string_equal(acts[0]->id, guid(K_WORKFLOW, 2));
        assert_string_equal(cache_workflow_definition_of(c, guid(K_WORKFLOW, 2)), guid(K_WORKFLOW, 1));
        assert_string_equal(cache_workflow_definition_of(c, guid(K_WORKFLOW, 1)), guid(K_WORKFLOW, 1));
        assert_null(cache_workflow_definition_of(c, guid(K_WORKFLOW, 4)));
        assert_int_equal(cache_watermark(c, CACHE_WORKFLOWS), T0 - 10);
        assert_true(cache_loaded(c, CACHE_WORKFLOWS));
        workflow_rows_free(NULL, 0);
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                workflow_row_done(&rows[i]);
}

/* A workflow activated an hour ago is a suspect; one deactivated an hour ago
 * is not; a full read drops the deleted ones. */
static void test_workflows_delta(void **state) {
        (void) state;
        _cleanup_(cache_freep) struct cache *c = new_cache();
        struct wf_spec a = WF_REALTIME(1, "A", "email"), b = WF_REALTIME(2, "B", "email"),
                       cc = WF_REALTIME(3, "C", "email");
        b.statecode = 0; /* a draft at first */
        struct workflow_row full[] = { wf_row(a), wf_row(b), wf_row(cc) };
        struct workflow_row delta[3];
        size_t n;

        assert_int_equal(cache_replace_workflows(c, full, 3), 0);
        assert_int_equal(cache_watermark(c, CACHE_WORKFLOWS), T0 - 86400);
        cache_workflow_definitions(c, &n);
        assert_int_equal(n, 2);
        assert_null(cache_workflow_get(c, guid(K_WORKFLOW, 2)));

        /* An hour ago: B activated, A deactivated. */
        b.statecode = 1;
        b.modified_on = T0 - 3600;
        a.statecode = 0;
        a.modified_on = T0 - 3500;
        delta[0] = wf_row(b);
        delta[1] = wf_row(a);
        assert_int_equal(cache_update_workflows(c, delta, 2), 0);
        assert_non_null(cache_workflow_get(c, guid(K_WORKFLOW, 2)));
        assert_null(cache_workflow_get(c, guid(K_WORKFLOW, 1)));
        assert_non_null(cache_workflow_get(c, guid(K_WORKFLOW, 3)));
        assert_int_equal(cache_watermark(c, CACHE_WORKFLOWS), T0 - 3500);
        assert_false(cache_update_workflows(c, NULL, 0) < 0); /* idle delta */

        /* The same id twice in a delta: the later modifiedon wins, wherever it is. */
        b.name = "B renamed";
        b.modified_on = T0 - 60;
        delta[0] = wf_row(b);
        b.name = "B stale";
        b.modified_on = T0 - 120;
        delta[1] = wf_row(b);
        assert_int_equal(cache_update_workflows(c, delta, 2), 0);
        assert_string_equal(cache_workflow_get(c, guid(K_WORKFLOW, 2))->name, "B renamed");
        assert_int_equal(cache_watermark(c, CACHE_WORKFLOWS), T0 - 60);

        /* Full read without C (deleted): C is gone; the watermark never goes back. */
        b.modified_on = T0 - 60;
        full[0] = wf_row(b);
        assert_int_equal(cache_replace_workflows(c, full, 1), 0);
        cache_workflow_definitions(c, &n);
        assert_int_equal(n, 1);
        assert_null(cache_workflow_get(c, guid(K_WORKFLOW, 3)));
        assert_int_equal(cache_watermark(c, CACHE_WORKFLOWS), T0 - 60);

        /* Activations arrive in a delta before their definition is real-time. */
        delta[0] = wf_row((struct wf_spec) { .n = 11, .category = 0, .type = 2, .statecode = 1, .mode = 1,
                                              .entity = "email", .parent = 1, .modified_on = T0 - 30 });
        delta[1] = wf_row((struct wf_spec) { .n = 12, .category = 0, .type = 2, .statecode = 1, .mode = 1,
                                              .entity = "email", .parent = 1, .modified_on = T0 - 20 });
        delta[2] = wf_row((struct wf_spec) { .n = 13, .category = 0, .type = 2, .statecode = 1, .mode = 1,
                                              .entity = "email", .parent = 2, .modified_on = T0 - 20 });
        assert_int_equal(cache_update_workflows(c, delta, 3), 0);
        const struct workflow_row *const *acts;
        assert_int_equal(cache_workflow_activations(c, guid(K_WORKFLOW, 1), &acts), 2);
        assert_string_equal(acts[0]->id, guid(K_WORKFLOW, 11));
        assert_string_equal(acts[1]->id, guid(K_WORKFLOW, 12));
        assert_int_equal(cache_workflow_activations(c, guid(K_WORKFLOW, 2), &acts), 1);
        assert_int_equal(cache_workflow_activations(c, guid(K_WORKFLOW, 3), &acts), 0);
        assert_null(acts);
        assert_string_equal(cache_workflow_definition_of(c, guid(K_WORKFLOW, 12)), guid(K_WORKFLOW, 1));
}

static void test_steps(void **state) {
        (void) state;
        _cleanup_(cache_freep) struct cache *c = new_cache();
        struct step_spec async = STEP_SYNC(3, "async", "Create", "email"),
                         disabled = STEP_SYNC(4, "disabled", "Create", "email"),
                         system = STEP_SYNC(5, "system", "Create", "email"),
                         del = STEP_SYNC(6, "delete", "Delete", "email"),
                         account = STEP_SYNC(7, "account", "Create", "account"),
                         nomsg = STEP_SYNC(8, "no message", NULL, "email");
        async.mode = 1;
        disabled.statecode = 1;
        system.level = 0;
        struct step_row rows[] = {
                step_row_of(STEP_SYNC(1, "email create", "Create", "email")),
                step_row_of(STEP_SYNC(2, "any create", "Create", NULL)),
                step_row_of(STEP_SYNC(9, "task update", "Update", "task")),
                step_row_of(async), step_row_of(disabled), step_row_of(system), step_row_of(del),
                step_row_of(account), step_row_of(nomsg),
        };
        const struct step_row *steps;
        size_t n;

        assert_int_equal(cache_replace_steps(c, rows, ELEMENTSOF(rows)), 0);
        steps = cache_steps(c, &n);
        assert_int_equal(n, 3);
        assert_string_equal(steps[0].id, guid(K_STEP, 1));
        assert_string_equal(steps[1].id, guid(K_STEP, 2));
        assert_string_equal(steps[2].id, guid(K_STEP, 9));
        assert_true(cache_loaded(c, CACHE_STEPS));

        /* Delta: step 1 made asynchronous, step 3 made synchronous. */
        struct step_spec one = STEP_SYNC(1, "email create", "Create", "email");
        one.mode = 1;
        one.modified_on = T0 - 100;
        async.mode = 0;
        async.modified_on = T0 - 200;
        struct step_row delta[] = { step_row_of(one), step_row_of(async) };
        assert_int_equal(cache_update_steps(c, delta, 2), 0);
        assert_null(cache_step_get(c, guid(K_STEP, 1)));
        assert_non_null(cache_step_get(c, guid(K_STEP, 3)));
        assert_int_equal(cache_count(c, CACHE_STEPS), 3);
        assert_int_equal(cache_watermark(c, CACHE_STEPS), T0 - 100);

        /* Full read: only step 9 left. */
        rows[0] = step_row_of(STEP_SYNC(9, "task update", "Update", "task"));
        assert_int_equal(cache_replace_steps(c, rows, 1), 0);
        assert_int_equal(cache_count(c, CACHE_STEPS), 1);
        assert_null(cache_step_get(c, guid(K_STEP, 2)));
}

static void test_mailboxes(void **state) {
        (void) state;
        _cleanup_(cache_freep) struct cache *c = new_cache();
        struct mailbox_row rows[] = {
                mailbox_of(2, "Sales", "sales@contoso.com", T0 - 300),
                mailbox_of(1, "Support", "support@contoso.com", T0 - 200),
                mailbox_of(3, NULL, NULL, T0 - 400),
        };
        struct cache_mailbox m;
        char upper[GUID_STRLEN + 1];

        rows[1].last_success_on = T0 - 50;
        rows[1].incoming_status = 2;
        rows[1].act_status = 1;
        assert_int_equal(cache_replace_mailboxes(c, rows, 3), 0);
        assert_true(cache_loaded(c, CACHE_MAILBOXES));
        assert_int_equal(cache_count(c, CACHE_MAILBOXES), 3);
        assert_int_equal(cache_watermark(c, CACHE_MAILBOXES), T0 - 200);
        assert_mailbox(c, 1, "Support", "support@contoso.com", 2, 1, T0 - 50);
        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, 3), &m));
        assert_null(m.name);
        assert_null(m.email);
        snprintf(upper, sizeof(upper), "%s", guid(K_MAILBOX, 2));
        for (char *p = upper; *p; p++)
                *p = (char) toupper((unsigned char) *p);
        assert_true(cache_mailbox_get(c, upper, &m));
        assert_string_equal(m.name, "Sales");
        assert_false(cache_mailbox_get(c, guid(K_MAILBOX, 4), &m));
        assert_false(cache_mailbox_get(c, "not a guid", &m));

        /* Delta: one renamed, one new; the others keep their strings. */
        mailbox_row_done(&rows[0]);
        mailbox_row_done(&rows[1]);
        rows[0] = mailbox_of(2, "Sales EMEA", "sales.emea@contoso.com", T0 - 10);
        rows[1] = mailbox_of(4, "New", "new@contoso.com", T0 - 20);
        assert_int_equal(cache_update_mailboxes(c, rows, 2), 0);
        assert_int_equal(cache_count(c, CACHE_MAILBOXES), 4);
        assert_int_equal(cache_watermark(c, CACHE_MAILBOXES), T0 - 10);
        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, 2), &m));
        assert_string_equal(m.name, "Sales EMEA");
        assert_string_equal(m.email, "sales.emea@contoso.com");
        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, 1), &m));
        assert_string_equal(m.name, "Support");
        assert_string_equal(m.email, "support@contoso.com");
        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, 4), &m));
        assert_string_equal(m.name, "New");

        /* Full read: the others are gone. */
        assert_int_equal(cache_replace_mailboxes(c, rows, 1), 0);
        assert_int_equal(cache_count(c, CACHE_MAILBOXES), 1);
        assert_false(cache_mailbox_get(c, guid(K_MAILBOX, 1), &m));
        for (size_t i = 0; i < 3; i++)
                mailbox_row_done(&rows[i]);
}

/* The idle poll's delta: the same mailboxes again, only numbers changed
 * (updated where they are); twice in one read, the later one wins; a
 * stranger among them still gets in. */
static void test_mailboxes_idle_delta(void **state) {
        (void) state;
        _cleanup_(cache_freep) struct cache *c = new_cache();
        struct mailbox_row rows[] = {
                mailbox_of(1, "Support", "support@contoso.com", T0 - 200),
                mailbox_of(2, "Sales", "sales@contoso.com", T0 - 300),
                mailbox_of(3, NULL, NULL, T0 - 400),
        };
        struct mailbox_row delta[3] = {};
        struct cache_mailbox m;

        assert_int_equal(cache_replace_mailboxes(c, rows, 3), 0);
        delta[0] = mailbox_of(1, "Support", "support@contoso.com", T0 - 100);
        delta[0].incoming_status = 2;
        delta[0].act_status = 1;
        delta[0].last_success_on = T0 - 90;
        delta[1] = mailbox_of(3, NULL, NULL, T0 - 150);
        delta[1].last_success_on = T0 - 140;
        assert_int_equal(cache_update_mailboxes(c, delta, 2), 0);
        assert_int_equal(cache_count(c, CACHE_MAILBOXES), 3);
        assert_int_equal(cache_watermark(c, CACHE_MAILBOXES), T0 - 100);
        assert_mailbox(c, 1, "Support", "support@contoso.com", 2, 1, T0 - 90);
        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, 3), &m));
        assert_null(m.name);
        assert_int_equal(m.last_success_on, T0 - 140);
        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, 2), &m));
        assert_int_equal(m.last_success_on, 0);

        /* Twice in one read: the later modifiedon wins, whatever the order. */
        mailbox_row_done(&delta[0]);
        mailbox_row_done(&delta[1]);
        delta[0] = mailbox_of(2, "Sales", "sales@contoso.com", T0 - 50);
        delta[0].incoming_status = 3;
        delta[1] = mailbox_of(2, "Sales", "sales@contoso.com", T0 - 60);
        delta[1].incoming_status = 4;
        assert_int_equal(cache_update_mailboxes(c, delta, 2), 0);
        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, 2), &m));
        assert_int_equal(m.incoming_status, 3);
        assert_int_equal(cache_watermark(c, CACHE_MAILBOXES), T0 - 50);

        /* A new mailbox among known ones. */
        mailbox_row_done(&delta[0]);
        mailbox_row_done(&delta[1]);
        delta[0] = mailbox_of(1, "Support", "support@contoso.com", T0 - 40);
        delta[1] = mailbox_of(4, "New", "new@contoso.com", T0 - 30);
        assert_int_equal(cache_update_mailboxes(c, delta, 2), 0);
        assert_int_equal(cache_count(c, CACHE_MAILBOXES), 4);
        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, 4), &m));
        assert_string_equal(m.name, "New");
        assert_true(cache_mailbox_get(c, guid(K_MAILBOX, 1), &m));
        assert_int_equal(m.incoming_status, 1); /* as mailbox_of() reads it */
        mailbox_row_done(&delta[0]);
        mailbox_row_done(&delta[1]);
        for (size_t i = 0; i < 3; i++)
                mailbox_row_done(&rows[i]);
}

/* Many mailboxes, fed in random order in deltas, all found again. */
static void test_mailboxes_many(void **state) {
        (void) state;
        _cleanup_(cache_freep) struct cache *c = new_cache();
        enum { N = 2000, CHUNK = 250 };
        struct mailbox_row *rows = calloc(N, sizeof(*rows));
        unsigned seed = 7;

        assert_non_null(rows);
        for (unsigned i = 0; i < N; i++) {
                char name[32], email[48];
                unsigned k = (i * 7919u) % N; /* a permutation of 0..N-1 */
                snprintf(name, sizeof(name), "Mailbox %u", k);
                snprintf(email, sizeof(email), "mb%u@contoso.com", k);
                rows[i] = mailbox_of(k + 1, name, email, T0 - (time_t) (rand_r(&seed) % 1000));
        }
        for (unsigned i = 0; i < N; i += CHUNK)
                assert_int_equal(cache_update_mailboxes(c, rows + i, CHUNK), 0);
        assert_int_equal(cache_count(c, CACHE_MAILBOXES), N);
        assert_false(cache_loaded(c, CACHE_MAILBOXES));
        for (unsigned k = 0; k < N; k++) {
                struct cache_mailbox m;
                char name[32];
                snprintf(name, sizeof(name), "Mailbox %u", k);
                assert_true(cache_mailbox_get(c, guid(K_MAILBOX, k + 1), &m));
                assert_string_equal(m.name, name);
        }
        mailbox_rows_free(rows, N);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_workflows_kept),
                cmocka_unit_test(test_workflows_delta),
                cmocka_unit_test(test_steps),
                cmocka_unit_test(test_mailboxes),
                cmocka_unit_test(test_mailboxes_idle_delta),
                cmocka_unit_test(test_mailboxes_many),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
