/* Unit tests for suspect.c: the one rule of which workflows and steps can be a
 * culprit, value by value (each Dataverse value one off turns a suspect into
 * none), with the message it runs on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "suspect.h"

static struct workflow_row workflow(void) {
        return (struct workflow_row) {
                .id = (char *) "c0000000-0000-4000-8000-000000000001",
                .category = WORKFLOW_CATEGORY_WORKFLOW,
                .type = WORKFLOW_TYPE_DEFINITION,
                .statecode = WORKFLOW_STATE_ACTIVATED,
                .mode = WORKFLOW_MODE_REALTIME,
                .primary_entity = (char *) "email",
                .trigger_on_create = true,
        };
}

static struct step_row step(void) {
        return (struct step_row) {
                .id = (char *) "e0000000-0000-4000-8000-000000000001",
                .mode = STEP_MODE_SYNCHRONOUS,
                .statecode = STEP_STATE_ENABLED,
                .customization_level = STEP_CUSTOMIZATION_CUSTOM,
                .message = (char *) "Create",
                .primary_entity = (char *) "email",
        };
}

static void assert_message(const char *got, const char *want) {
        if (!want)
                assert_null(got);
        else {
                assert_non_null(got);
                assert_string_equal(got, want);
        }
}

static void test_workflow(void **state) {
        struct workflow_row w = workflow();

        (void) state;
        assert_message(suspect_workflow_message(&w, ITEM_EMAIL, false), "Create");
        assert_message(suspect_workflow_message(&w, ITEM_ACT, true), NULL);            /* other entities */
        w.category = 1, assert_message(suspect_workflow_message(&w, ITEM_ALL, true), NULL), w = workflow();
        w.type = WORKFLOW_TYPE_ACTIVATION, assert_message(suspect_workflow_message(&w, ITEM_ALL, true), NULL);
        w = workflow(), w.statecode = 0, assert_message(suspect_workflow_message(&w, ITEM_ALL, true), NULL);
        w = workflow(), w.mode = 0, assert_message(suspect_workflow_message(&w, ITEM_ALL, true), NULL);
        w = workflow(), w.primary_entity = NULL, assert_message(suspect_workflow_message(&w, ITEM_ALL, true), NULL);
        w = workflow(), w.primary_entity = (char *) "account";
        assert_message(suspect_workflow_message(&w, ITEM_ALL, true), NULL);
        /* on update of some attribute: a suspect only where updates count (ACT) */
        w = workflow(), w.primary_entity = (char *) "task", w.trigger_on_create = false;
        w.trigger_on_update_attributes = (char *) "subject";
        assert_message(suspect_workflow_message(&w, ITEM_TASK, true), "Update");
        assert_message(suspect_workflow_message(&w, ITEM_TASK, false), NULL);
        assert_message(suspect_workflow_message(&w, ITEM_CONTACT, true), NULL);
        w.trigger_on_update_attributes = (char *) "";
        assert_message(suspect_workflow_message(&w, ITEM_TASK, true), NULL);
}

static void test_step(void **state) {
        struct step_row s = step();

        (void) state;
        assert_message(suspect_step_message(&s, ITEM_EMAIL, false), "Create");
        s.mode = 1, assert_message(suspect_step_message(&s, ITEM_ALL, true), NULL), s = step();
        s.statecode = 1, assert_message(suspect_step_message(&s, ITEM_ALL, true), NULL), s = step();
        s.customization_level = 0, assert_message(suspect_step_message(&s, ITEM_ALL, true), NULL), s = step();
        s.message = (char *) "Delete", assert_message(suspect_step_message(&s, ITEM_ALL, true), NULL), s = step();
        s.message = NULL, assert_message(suspect_step_message(&s, ITEM_ALL, true), NULL), s = step();
        s.message = (char *) "create", assert_message(suspect_step_message(&s, ITEM_EMAIL, false), "Create");
        s.message = (char *) "Update";
        assert_message(suspect_step_message(&s, ITEM_EMAIL, false), NULL);
        assert_message(suspect_step_message(&s, ITEM_EMAIL, true), "Update");
        /* no entity: it runs for every entity's message */
        s = step(), s.primary_entity = NULL;
        assert_message(suspect_step_message(&s, ITEM_APPOINTMENT, true), "Create");
        s.primary_entity = (char *) "contact";
        assert_message(suspect_step_message(&s, ITEM_EMAIL | ITEM_TASK, true), NULL);
        assert_message(suspect_step_message(&s, ITEM_CONTACT, false), "Create");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_workflow),
                cmocka_unit_test(test_step),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
