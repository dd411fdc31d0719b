/* Unit tests for model.c: names round-trip, destructors accept empty values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static void test_item_type_names(void **state) {
        (void) state;
        static const enum item_type all[] = { ITEM_EMAIL, ITEM_APPOINTMENT, ITEM_CONTACT, ITEM_TASK };
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                assert_int_equal(item_type_from_string(item_type_to_string(all[i])), (int) all[i]);
        assert_int_equal(item_type_from_string("Email"), -EINVAL);
        assert_int_equal(item_type_from_string(""), -EINVAL);
}

static void test_verdict_names(void **state) {
        (void) state;
        assert_string_equal(verdict_to_string(VERDICT_CONFIRMED), "confirmed");
        assert_string_equal(verdict_to_string(VERDICT_SUSPECTED), "suspected");
        assert_string_equal(verdict_to_string(VERDICT_UNEXPLAINED), "unexplained");
        assert_string_equal(culprit_kind_to_string(CULPRIT_PLUGIN_STEP), "plugin_step");
        assert_string_equal(evidence_kind_to_string(EVIDENCE_PROCESS_SESSION), "process_session");
}

static void test_finding_free(void **state) {
        (void) state;
        struct finding *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->id = strdup("prod/tracelog/x");
        f->n_culprits = 1;
        f->culprits = calloc(1, sizeof(struct culprit));
        f->culprits[0].name = strdup("wf");
        f->culprits[0].n_evidence = 1;
        f->culprits[0].evidence = calloc(1, sizeof(struct evidence));
        f->culprits[0].evidence[0].error = strdup("boom");
        finding_free(f);
        finding_free(NULL);
}

static void test_environment_names(void **state) {
        (void) state;
        assert_true(environment_name_is_valid("prod"));
        assert_true(environment_name_is_valid("Prod.EU-1_b"));
        assert_true(environment_name_is_valid("..x"));
        assert_false(environment_name_is_valid(""));
        assert_false(environment_name_is_valid("."));
        assert_false(environment_name_is_valid(".."));
        assert_false(environment_name_is_valid("a/b"));
        assert_false(environment_name_is_valid("a b"));
        assert_false(environment_name_is_valid("prød"));
        assert_true(environment_name_is_valid(
                "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"));
        assert_false(environment_name_is_valid(
                "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_item_type_names),
                cmocka_unit_test(test_verdict_names),
                cmocka_unit_test(test_finding_free),
                cmocka_unit_test(test_environment_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
