/* Unit tests for finding.c: the JSON form of docs/design.md §2 (golden file),
 * resolved and error events, the one-line form, and hostile text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "finding.h"
#include "macro.h"
#include "samples.h"
#include "strutil.h"
#include "utf8.h"

static char *dump(json_t *j) {
        char *s;

        assert_non_null(j);
        s = finding_json_dumps(j);
        json_decref(j);
        assert_non_null(s);
        return s;
}

static char *read_file(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t size = 0;
        ssize_t n;

        if (!f)
                return NULL;
        n = getdelim(&buf, &size, '\0', f);
        fclose(f);
        if (n < 0)
                return mfree(buf);
        return buf;
}

/* S3_UPDATE_GOLDEN=1 rewrites the file instead (then review the diff). */
static void assert_golden(const char *name, const char *text) {
        char path[4096];
        char *want;

        snprintf(path, sizeof(path), "%s/%s", GOLDEN_DIR, name);
        if (getenv("S3_UPDATE_GOLDEN")) {
                FILE *f = fopen(path, "we");
                assert_non_null(f);
                fputs(text, f);
                assert_int_equal(fclose(f), 0);
        }
        want = read_file(path);
        assert_non_null(want);
        assert_string_equal(text, want);
        free(want);
}

static void test_golden_finding(void **state) {
        struct finding *f = sample_finding_full();
        char *s = dump(finding_to_json(f)), *line;

        assert_int_equal(asprintf(&line, "%s\n", s), (int) strlen(s) + 1);
        assert_golden("finding-full.json", line);
        free(line);
        free(s);
        finding_free(f);
}

static void test_golden_keys_in_design_order(void **state) {
        /* The golden file could be regenerated wrongly: check the shape too. */
        struct finding *f = sample_finding_full();
        json_t *j = finding_to_json(f);
        static const char *const top[] = { "type", "id", "environment", "detected_at", "alert", "mailbox",
                                           "verdict", "culprits", "occurrences", "notes", "remedy" };
        static const char *const culprit[] = { "kind", "id", "name", "entity", "message", "plugin_type", "evidence" };
        const char *key;
        json_t *v;
        size_t i = 0;

        assert_non_null(j);
        json_object_foreach(j, key, v) {
                assert_true(i < sizeof(top) / sizeof(top[0]));
                assert_string_equal(key, top[i++]);
        }
        assert_int_equal(i, sizeof(top) / sizeof(top[0]));
        i = 0;
        json_object_foreach(json_array_get(json_object_get(j, "culprits"), 1), key, v)
                assert_string_equal(key, culprit[i++]);
        assert_int_equal(i, 7);
        /* A workflow has no plugin_type. */
        assert_null(json_object_get(json_array_get(json_object_get(j, "culprits"), 0), "plugin_type"));
        json_decref(j);
        finding_free(f);
}

static void test_json_resolved(void **state) {
        struct resolved_event e;
        char *s;

        sample_resolved(&e);
        s = dump(resolved_event_to_json(&e));
        assert_string_equal(s,
                "{\"type\":\"resolved\",\"id\":\"prod/tracelog/7e1b6b0a-3c1f-4d5e-9a2b-0c4d5e6f7a81\","
                "\"environment\":\"prod\",\"mailbox\":{\"id\":\"0f9e8d7c-6b5a-4948-3726-15a4b3c2d1e0\","
                "\"name\":\"Support\",\"email\":\"support@contoso.com\"},"
                "\"alert\":{\"id\":\"7e1b6b0a-3c1f-4d5e-9a2b-0c4d5e6f7a81\"},\"occurrences\":3,"
                "\"last_alert_at\":\"2026-11-25T09:59:58Z\",\"resolved_at\":\"2026-11-25T11:00:03Z\"}");
        free(s);
        resolved_event_done(&e);
}

static void test_json_error(void **state) {
        struct error_event e;
        char *s;

        sample_error_failing(&e);
        s = dump(error_event_to_json(&e));
        assert_string_equal(s,
                "{\"type\":\"error\",\"environment\":\"prod\",\"state\":\"failing\",\"query\":\"tracelogs\","
                "\"message\":\"HTTP 503 Service Unavailable\",\"since\":\"2026-11-25T10:00:03Z\","
                "\"at\":\"2026-11-25T10:02:03Z\",\"failures\":3}");
        free(s);
        error_event_done(&e);

        sample_error_recovered(&e);
        free(e.query);
        e.query = NULL;
        s = dump(error_event_to_json(&e));
        assert_string_equal(s,
                "{\"type\":\"error\",\"environment\":\"prod\",\"state\":\"recovered\",\"query\":null,"
                "\"message\":\"HTTP 503 Service Unavailable\",\"since\":\"2026-11-25T10:00:03Z\","
                "\"at\":\"2026-11-25T10:20:03Z\",\"failures\":7}");
        free(s);
        error_event_done(&e);
}

static void test_json_unexplained(void **state) {
        struct finding *f = sample_finding_unexplained();
        json_t *j = finding_to_json(f);

        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "verdict")), "unexplained");
        assert_int_equal(json_array_size(json_object_get(j, "culprits")), 0);
        assert_true(json_is_array(json_object_get(j, "notes")));
        assert_int_equal(json_array_size(json_object_get(j, "notes")), 0);
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "alert"), "source")), "mailbox");
        json_decref(j);
        finding_free(f);
}

static void test_json_nulls(void **state) {
        struct finding *f = sample_finding_suspected();
        json_t *j, *m;

        f->mailbox.name = mfree(f->mailbox.name);
        f->remedy = mfree(f->remedy);
        f->alert.created_on = 0;
        f->alert.code = -1;
        f->culprits[0].plugin_type = mfree(f->culprits[0].plugin_type);
        j = finding_to_json(f);
        assert_non_null(j);
        m = json_object_get(j, "mailbox");
        assert_true(json_is_null(json_object_get(m, "name")));
        assert_true(json_is_null(json_object_get(m, "email")));
        assert_true(json_is_null(json_object_get(j, "remedy")));
        assert_true(json_is_null(json_object_get(json_object_get(j, "alert"), "created_on")));
        assert_true(json_is_null(json_object_get(json_object_get(j, "alert"), "code_name")));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "alert"), "code")), -1);
        assert_true(json_is_null(json_object_get(json_array_get(json_object_get(j, "culprits"), 0), "plugin_type")));
        assert_int_equal(json_integer_value(json_object_get(j, "occurrences")), 3);
        json_decref(j);
        finding_free(f);
}

/* finding_json_text() (what the outputs write) is the tree's text, byte for byte. */
static void assert_text_is_tree(const struct finding *f) {
        char *tree = dump(finding_to_json(f)), *text = finding_json_text(f);

        assert_non_null(text);
        assert_string_equal(text, tree);
        free(text);
        free(tree);
}

static void test_json_text_is_tree(void **state) {
        struct finding *(*const make[])(void) = { sample_finding_full, sample_finding_suspected,
                                                  sample_finding_unexplained, sample_finding_hostile };
        struct finding *f;
        char controls[128], *p = controls;

        for (size_t i = 0; i < ELEMENTSOF(make); i++) {
                f = make[i]();
                assert_text_is_tree(f);
                finding_free(f);
        }

        /* Every C0 control, the characters JSON escapes, a lone continuation byte. */
        f = sample_finding_full();
        for (int ch = 1; ch < 0x20; ch++)
                *p++ = (char) ch;
        strcpy(p, "\"\\/\x7f\xc2\x85 \xe2\x80\xa8 \xf0\x9f\x98\x80 end");
        free(f->alert.text);
        f->alert.text = strdup(controls);
        free(f->culprits[0].evidence[0].error);
        f->culprits[0].evidence[0].error = strdup("cut \x80 here \xe2\x82");
        assert_text_is_tree(f);

        /* Nulls and zero times. */
        f->mailbox.name = mfree(f->mailbox.name);
        f->mailbox.email = mfree(f->mailbox.email);
        f->remedy = mfree(f->remedy);
        f->alert.text = mfree(f->alert.text);
        f->alert.created_on = 0;
        f->detected_at = 0;
        f->alert.code = INT64_MIN;
        f->culprits[1].plugin_type = mfree(f->culprits[1].plugin_type);
        f->culprits[0].evidence[0].at = 0;
        assert_text_is_tree(f);
        finding_free(f);
}

static void assert_line(char *line, const char *want) {
        assert_non_null(line);
        assert_string_equal(line, want);
        free(line);
}

static void test_line_confirmed(void **state) {
        struct finding *f = sample_finding_full();

        assert_line(finding_format_line(f),
                "prod: mailbox \"Support\" <support@contoso.com>: UnknownIncomingEmailIntegrationError "
                "-2147220956 confirmed: workflow \"Set email category\" (failed session 09:59:57Z), "
                "plug-in step \"Contoso.Plugins.EmailCreate: Create of email\"");

        /* Several pieces of evidence: count and the latest; occurrences. */
        f->occurrences = 2;
        f->culprits[1].n_evidence = 2;
        f->culprits[1].evidence = calloc(2, sizeof(struct evidence));
        assert_non_null(f->culprits[1].evidence);
        f->culprits[1].evidence[0] = (struct evidence) { .kind = EVIDENCE_PLUGIN_TRACE, .at = SAMPLE_T0 - 60 };
        f->culprits[1].evidence[1] = (struct evidence) { .kind = EVIDENCE_PLUGIN_TRACE, .at = SAMPLE_T0 - 2 };
        assert_line(finding_format_line(f),
                "prod: mailbox \"Support\" <support@contoso.com>: UnknownIncomingEmailIntegrationError "
                "-2147220956 confirmed (2 occurrences): workflow \"Set email category\" (failed session "
                "09:59:57Z), plug-in step \"Contoso.Plugins.EmailCreate: Create of email\" (2 plug-in "
                "traces, last 10:00:01Z)");
        f->culprits[1].n_evidence = 1;
        assert_line(finding_format_line(f),
                "prod: mailbox \"Support\" <support@contoso.com>: UnknownIncomingEmailIntegrationError "
                "-2147220956 confirmed (2 occurrences): workflow \"Set email category\" (failed session "
                "09:59:57Z), plug-in step \"Contoso.Plugins.EmailCreate: Create of email\" (plug-in "
                "trace 09:59:03Z)");
        finding_free(f);
}

static void test_line_suspected(void **state) {
        struct finding *f = sample_finding_suspected();

        assert_line(finding_format_line(f),
                "prod: mailbox \"Support\": UnknownIncomingEmailIntegrationError -2147220956 suspected "
                "(3 occurrences): plug-in step \"Contoso.Plugins.EmailCreate: Create of email\"");
        /* Unknown mailbox: its id stands in for the name. */
        f->mailbox.name = mfree(f->mailbox.name);
        f->alert.code = 42;
        assert_line(finding_format_line(f),
                "prod: mailbox 0f9e8d7c-6b5a-4948-3726-15a4b3c2d1e0: error 42 suspected "
                "(3 occurrences): plug-in step \"Contoso.Plugins.EmailCreate: Create of email\"");
        finding_free(f);
}

static void test_line_unexplained(void **state) {
        struct finding *f = sample_finding_unexplained();

        assert_line(finding_format_line(f),
                "prod: mailbox \"Support\" <support@contoso.com>: UnknownIncomingEmailIntegrationError "
                "-2147220956 unexplained: no synchronous workflow or plug-in step on "
                "appointment/contact/task create or update");
        f->alert.kind = ALERT_KIND_EMAIL;
        assert_line(finding_format_line(f),
                "prod: mailbox \"Support\" <support@contoso.com>: UnknownIncomingEmailIntegrationError "
                "-2147220956 unexplained: no synchronous workflow or plug-in step on email create");
        finding_free(f);
}

static void test_line_many_culprits(void **state) {
        struct finding *f = sample_finding_suspected();
        char *line;

        culprit_done(&f->culprits[0]);
        free(f->culprits);
        f->n_culprits = 11;
        f->culprits = calloc(f->n_culprits, sizeof(struct culprit));
        assert_non_null(f->culprits);
        for (size_t i = 0; i < f->n_culprits; i++) {
                f->culprits[i].kind = CULPRIT_WORKFLOW;
                assert_true(asprintf(&f->culprits[i].name, "wf%zu", i) > 0);
        }
        line = finding_format_line(f);
        assert_non_null(line);
        assert_non_null(strstr(line, "workflow \"wf7\" and 3 more"));
        assert_null(strstr(line, "wf8"));
        free(line);
        finding_free(f);
}

static void test_line_resolved(void **state) {
        struct resolved_event e;

        sample_resolved(&e);
        assert_line(resolved_event_format_line(&e),
                "prod: mailbox \"Support\" <support@contoso.com>: resolved, receiving mail again "
                "(3 occurrences, last alert 2026-11-25T09:59:58Z)");
        e.occurrences = 1;
        e.last_alert_at = 0;
        assert_line(resolved_event_format_line(&e),
                "prod: mailbox \"Support\" <support@contoso.com>: resolved, receiving mail again "
                "(1 occurrence)");
        resolved_event_done(&e);
}

static void test_line_error(void **state) {
        struct error_event e;

        sample_error_failing(&e);
        assert_line(error_event_format_line(&e),
                "prod: polling failing since 2026-11-25T10:00:03Z (tracelogs, 3 failed attempts): "
                "\"HTTP 503 Service Unavailable\"");
        error_event_done(&e);

        sample_error_recovered(&e);
        assert_line(error_event_format_line(&e),
                "prod: polling recovered at 2026-11-25T10:20:03Z after 7 failed attempts since "
                "2026-11-25T10:00:03Z (tracelogs): \"HTTP 503 Service Unavailable\"");
        e.query = mfree(e.query);
        e.message = mfree(e.message);
        e.failures = 1;
        assert_line(error_event_format_line(&e),
                "prod: polling recovered at 2026-11-25T10:20:03Z after 1 failed attempt since "
                "2026-11-25T10:00:03Z");
        error_event_done(&e);
}

/* One line of valid UTF-8 without any control character. */
static void assert_one_line(const char *s) {
        assert_true(utf8_is_valid(s, strlen(s)));
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                assert_true(*p >= 0x20 && *p != 0x7F);
        /* Neither C1 controls nor U+2028/U+2029 (line breaks to some viewers). */
        assert_null(strstr(s, "\xc2\x85"));
        assert_null(strstr(s, "\xe2\x80\xa8"));
        assert_null(strstr(s, "\xe2\x80\xa9"));
}

static void assert_json_text(json_t *v, const char *raw) {
        char *want = utf8_sanitize(raw);

        assert_non_null(want);
        assert_true(json_is_string(v));
        assert_string_equal(json_string_value(v), want);
        free(want);
}

static void test_hostile_json(void **state) {
        struct finding *f = sample_finding_hostile();
        char *s = dump(finding_to_json(f)), *long_name = sample_long_name();
        json_error_t err;
        json_t *j, *c0, *c1;

        /* One line: JSON escapes every C0 control (DEL and C1 may stay). */
        assert_true(utf8_is_valid(s, strlen(s)));
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                assert_true(*p >= 0x20);
        j = json_loads(s, JSON_REJECT_DUPLICATES, &err);
        assert_non_null(j);
        assert_json_text(json_object_get(json_object_get(j, "mailbox"), "name"), sample_hostile_mailbox_name);
        assert_json_text(json_object_get(json_object_get(j, "mailbox"), "email"), sample_hostile_email);
        c0 = json_array_get(json_object_get(j, "culprits"), 0);
        c1 = json_array_get(json_object_get(j, "culprits"), 1);
        /* Long values are kept whole in JSON. */
        assert_json_text(json_object_get(c0, "name"), long_name);
        assert_json_text(json_object_get(json_array_get(json_object_get(c0, "evidence"), 0), "error"),
                         sample_hostile_evidence_error);
        assert_json_text(json_object_get(c1, "name"), sample_hostile_step_name);
        assert_json_text(json_array_get(json_object_get(j, "notes"), 0), sample_hostile_note);
        assert_json_text(json_object_get(j, "remedy"), sample_hostile_remedy);
        /* The repaired text: one U+FFFD per maximal ill-formed subpart. */
        assert_string_equal(json_string_value(json_object_get(j, "remedy")),
                            "remedy \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
        assert_non_null(strstr(json_string_value(json_object_get(c1, "name")),
                               "Step \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd surrogate, overlong "
                               "\xef\xbf\xbd\xef\xbf\xbd, newline\nsecond line"));
        json_decref(j);
        free(long_name);
        free(s);
        finding_free(f);
}

static void test_hostile_line(void **state) {
        struct finding *f = sample_finding_hostile();
        char *line = finding_format_line(f);

        assert_non_null(line);
        assert_one_line(line);
        /* Bounded although a name is 100 KiB long; the cut is marked. */
        assert_true(strlen(line) < 2048);
        assert_non_null(strstr(line, "workflow \"Long xxxx"));
        assert_non_null(strstr(line, "xxx" STR_ELLIPSIS "\" (failed session 09:59:57Z)"));
        assert_non_null(strstr(line,
                "mailbox \"Sup\\\"port\\n\\ttab\\x01\\x1B[31mred\\\\ \xef\xbf\xbd\xef\xbf\xbd bad=1 "
                "\\u0085 \\u2028 end\" <\"a b=c\\\"@x.example\">"));
        assert_non_null(strstr(line, "newline\\nsecond line\""));
        free(line);
        finding_free(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_golden_finding),
                cmocka_unit_test(test_golden_keys_in_design_order),
                cmocka_unit_test(test_json_resolved),
                cmocka_unit_test(test_json_error),
                cmocka_unit_test(test_json_unexplained),
                cmocka_unit_test(test_json_nulls),
                cmocka_unit_test(test_json_text_is_tree),
                cmocka_unit_test(test_line_confirmed),
                cmocka_unit_test(test_line_suspected),
                cmocka_unit_test(test_line_unexplained),
                cmocka_unit_test(test_line_many_culprits),
                cmocka_unit_test(test_line_resolved),
                cmocka_unit_test(test_line_error),
                cmocka_unit_test(test_hostile_json),
                cmocka_unit_test(test_hostile_line),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
