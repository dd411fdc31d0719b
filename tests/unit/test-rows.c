/* Unit tests for rows.c: every table's columns as Dataverse sends them,
 * nulls and extra keys tolerated, errors that name the table and column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rows.h"

static json_t *parse_json(const char *text) {
        json_error_t err;
        json_t *j = json_loads(text, 0, &err);
        if (!j)
                fail_msg("bad test JSON: %s: %s", err.text, text);
        return j;
}

#define T_10_00 ((time_t) 1795600800) /* 2026-11-25T10:00:00Z */

static void test_tracelog(void **state) {
        (void) state;
        json_t *j = parse_json(
                "{\"@odata.etag\":\"W/\\\"123\\\"\",\"tracelogid\":\"D0000000-0000-4000-8000-000000000001\","
                "\"_regardingobjectid_value\":\"C0000000-0000-4000-8000-000000000001\","
                "\"_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname\":\"mailbox\","
                "\"_regardingobjectid_value@OData.Community.Display.V1.FormattedValue\":\"Support\","
                "\"level\":2,\"text\":\"An unknown error\",\"errordetails\":null,"
                "\"createdon\":\"2026-11-25T09:00:00Z\",\"modifiedon\":\"2026-11-25T10:00:00.123Z\","
                "\"tracecode\":17}");
        struct tracelog_row t;
        char *err = NULL;

        assert_int_equal(rows_parse_tracelog(j, &t, &err), 0);
        assert_null(err);
        assert_string_equal(t.id, "d0000000-0000-4000-8000-000000000001");
        assert_string_equal(t.regarding_id, "c0000000-0000-4000-8000-000000000001");
        assert_string_equal(t.regarding_type, "mailbox");
        assert_int_equal(t.level, 2);
        assert_string_equal(t.text, "An unknown error");
        assert_null(t.errordetails);
        assert_int_equal(t.created_on, T_10_00 - 3600);
        assert_int_equal(t.modified_on, T_10_00);
        tracelog_row_done(&t);
        json_decref(j);

        /* No annotation, no regarding, no createdon: all tolerated. */
        j = parse_json("{\"tracelogid\":\"d0000000-0000-4000-8000-000000000002\",\"level\":null,"
                       "\"modifiedon\":\"2026-11-25T10:00:00Z\"}");
        assert_int_equal(rows_parse_tracelog(j, &t, &err), 0);
        assert_null(t.regarding_id);
        assert_null(t.regarding_type);
        assert_null(t.text);
        assert_int_equal(t.level, 0);
        assert_int_equal(t.created_on, T_10_00);
        tracelog_row_done(&t);
        json_decref(j);
}

static void test_mailbox(void **state) {
        (void) state;
        json_t *j = parse_json(
                "{\"mailboxid\":\"c0000000-0000-4000-8000-000000000001\",\"name\":\"Support\","
                "\"emailaddress\":\"support@contoso.com\",\"incomingemailstatus\":2,\"actstatus\":1,"
                "\"lastsyncerrorcode\":-2147220956,\"lastsyncerror\":\"Exchange server returned ...\","
                "\"lastsyncerroroccurredon\":\"2026-11-25T09:59:58Z\","
                "\"lastsuccessfulsynccompletedon\":\"2026-11-25T09:00:00+01:00\","
                "\"modifiedon\":\"2026-11-25T10:00:00Z\"}");
        struct mailbox_row m;
        char *err = NULL;

        assert_int_equal(rows_parse_mailbox(j, &m, &err), 0);
        assert_string_equal(m.name, "Support");
        assert_string_equal(m.email, "support@contoso.com");
        assert_int_equal(m.incoming_status, 2);
        assert_int_equal(m.act_status, 1);
        assert_true(m.has_error_code);
        assert_int_equal(m.last_error_code, -2147220956LL);
        assert_int_equal(m.last_error_on, T_10_00 - 2);
        assert_int_equal(m.last_success_on, T_10_00 - 7200);
        mailbox_row_done(&m);
        json_decref(j);

        j = parse_json("{\"mailboxid\":\"c0000000-0000-4000-8000-000000000001\",\"name\":\"Support\","
                       "\"emailaddress\":null,\"lastsyncerrorcode\":null,\"lastsyncerroroccurredon\":null,"
                       "\"modifiedon\":\"2026-11-25T10:00:00Z\"}");
        assert_int_equal(rows_parse_mailbox(j, &m, &err), 0);
        assert_null(m.email);
        assert_false(m.has_error_code);
        assert_int_equal(m.last_error_on, 0);
        mailbox_row_done(&m);
        json_decref(j);
}

static void test_workflow(void **state) {
        (void) state;
        json_t *j = parse_json(
                "{\"workflowid\":\"A0000000-0000-4000-8000-000000000002\",\"name\":\"Set email category\","
                "\"_parentworkflowid_value\":\"a0000000-0000-4000-8000-000000000001\",\"category\":0,"
                "\"type\":2,\"statecode\":1,\"mode\":1,\"primaryentity\":\"email\",\"triggeroncreate\":true,"
                "\"triggeronupdateattributelist\":\"subject,statuscode\",\"syncworkflowlogonfailure\":false,"
                "\"modifiedon\":\"2026-11-25T10:00:00Z\"}");
        struct workflow_row w;
        char *err = NULL;

        assert_int_equal(rows_parse_workflow(j, &w, &err), 0);
        assert_string_equal(w.id, "a0000000-0000-4000-8000-000000000002");
        assert_string_equal(w.parent_id, "a0000000-0000-4000-8000-000000000001");
        assert_int_equal(w.type, 2);
        assert_int_equal(w.mode, 1);
        assert_string_equal(w.primary_entity, "email");
        assert_true(w.trigger_on_create);
        assert_string_equal(w.trigger_on_update_attributes, "subject,statuscode");
        assert_false(w.keeps_failure_logs);
        workflow_row_done(&w);
        json_decref(j);
}

static void test_step(void **state) {
        (void) state;
        json_t *j = parse_json(
                "{\"sdkmessageprocessingstepid\":\"b0000000-0000-4000-8000-000000000001\","
                "\"name\":\"Contoso.Plugins.EmailCreate: Create of email\",\"mode\":0,\"stage\":20,"
                "\"statecode\":0,\"customizationlevel\":1,\"modifiedon\":\"2026-11-25T10:00:00Z\","
                "\"sdkmessageid\":{\"@odata.etag\":\"x\",\"name\":\"Create\",\"sdkmessageid\":\"x\"},"
                "\"sdkmessagefilterid\":{\"primaryobjecttypecode\":\"email\"},"
                "\"plugintypeid\":{\"typename\":\"Contoso.Plugins.EmailCreate\"}}");
        struct step_row s;
        char *err = NULL;

        assert_int_equal(rows_parse_step(j, &s, &err), 0);
        assert_string_equal(s.name, "Contoso.Plugins.EmailCreate: Create of email");
        assert_int_equal(s.stage, 20);
        assert_int_equal(s.customization_level, 1);
        assert_string_equal(s.message, "Create");
        assert_string_equal(s.primary_entity, "email");
        assert_string_equal(s.plugin_type, "Contoso.Plugins.EmailCreate");
        step_row_done(&s);
        json_decref(j);

        /* No filter: the step runs for every entity. "none" is the same. */
        static const char *const filters[] = { "null", "{\"primaryobjecttypecode\":\"none\"}",
                                                "{\"primaryobjecttypecode\":null}" };
        for (size_t i = 0; i < 3; i++) {
                char text[512];
                snprintf(text, sizeof(text),
                         "{\"sdkmessageprocessingstepid\":\"b0000000-0000-4000-8000-000000000001\","
                         "\"name\":null,\"mode\":0,\"stage\":40,\"statecode\":0,\"customizationlevel\":1,"
                         "\"modifiedon\":\"2026-11-25T10:00:00Z\",\"sdkmessageid\":{\"name\":\"Create\"},"
                         "\"sdkmessagefilterid\":%s,\"plugintypeid\":null}",
                         filters[i]);
                j = parse_json(text);
                assert_int_equal(rows_parse_step(j, &s, &err), 0);
                assert_null(s.primary_entity);
                assert_null(s.plugin_type);
                assert_null(s.name);
                step_row_done(&s);
                json_decref(j);
        }
}

static void test_session(void **state) {
        (void) state;
        static const struct {
                const char *json;
                time_t at;
                const char *error;
        } cases[] = {
                { "\"comments\":\"Plugin failed\",\"errorcode\":-2147220891,\"startedon\":\"2026-11-25T09:59:50Z\","
                  "\"completedon\":\"2026-11-25T09:59:57Z\",\"createdon\":\"2026-11-25T09:59:49Z\"",
                  T_10_00 - 3, "Plugin failed" },
                { "\"comments\":null,\"errorcode\":-2147220891,\"startedon\":\"2026-11-25T09:59:50Z\","
                  "\"completedon\":null,\"createdon\":\"2026-11-25T09:59:49Z\"",
                  T_10_00 - 10, "errorcode -2147220891 (0x80040265)" },
                { "\"comments\":\"\",\"errorcode\":null,\"startedon\":null,\"completedon\":null,"
                  "\"createdon\":\"2026-11-25T09:59:49Z\"",
                  T_10_00 - 11, NULL },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char text[512];
                struct session_row s;
                char *err = NULL;
                json_t *j;

                snprintf(text, sizeof(text),
                         "{\"processsessionid\":\"e0000000-0000-4000-8000-000000000001\","
                         "\"_processid_value\":\"A0000000-0000-4000-8000-000000000002\",\"statuscode\":6,%s}",
                         cases[i].json);
                j = parse_json(text);
                assert_int_equal(rows_parse_session(j, &s, &err), 0);
                assert_string_equal(s.process_id, "a0000000-0000-4000-8000-000000000002");
                assert_int_equal(s.statuscode, 6);
                assert_int_equal(s.at, cases[i].at);
                if (cases[i].error)
                        assert_string_equal(s.error, cases[i].error);
                else
                        assert_null(s.error);
                session_row_done(&s);
                json_decref(j);
        }
}

static void test_trace(void **state) {
        (void) state;
        json_t *j = parse_json(
                "{\"plugintracelogid\":\"f0000000-0000-4000-8000-000000000001\","
                "\"pluginstepid\":\"B0000000-0000-4000-8000-000000000001\",\"messagename\":\"Create\","
                "\"primaryentity\":\"email\",\"mode\":0,\"typename\":\"Contoso.Plugins.EmailCreate\","
                "\"exceptiondetails\":\"System.NullReferenceException\",\"createdon\":\"2026-11-25T09:59:57Z\","
                "\"correlationid\":\"whatever\"}");
        struct trace_row t;
        char *err = NULL;

        assert_int_equal(rows_parse_trace(j, &t, &err), 0);
        assert_string_equal(t.step_id, "b0000000-0000-4000-8000-000000000001");
        assert_string_equal(t.message, "Create");
        assert_string_equal(t.primary_entity, "email");
        assert_int_equal(t.mode, 0);
        assert_string_equal(t.exception, "System.NullReferenceException");
        assert_int_equal(t.at, T_10_00 - 3);
        trace_row_done(&t);
        json_decref(j);
}

/* Each bad row must fail with a message naming the table and the column. */
static void test_errors(void **state) {
        (void) state;
        static const struct {
                const char *json;
                const char *message;
        } cases[] = {
#define TL "\"tracelogid\":\"d0000000-0000-4000-8000-000000000001\","
#define MOD "\"modifiedon\":\"2026-11-25T10:00:00Z\""
                { "{" TL "\"level\":\"2\"," MOD "}",
                  "tracelogs: column 'level': expected an integer, got a string" },
                { "{" TL "\"level\":2.5," MOD "}",
                  "tracelogs: column 'level': expected an integer, got a number with a fraction" },
                { "{\"level\":2," MOD "}", "tracelogs: column 'tracelogid': is missing" },
                { "{\"tracelogid\":null," MOD "}", "tracelogs: column 'tracelogid': is null" },
                { "{\"tracelogid\":\"nope\"," MOD "}", "tracelogs: column 'tracelogid': not a GUID: \"nope\"" },
                { "{\"tracelogid\":17," MOD "}",
                  "tracelogs: column 'tracelogid': expected a GUID string, got an integer" },
                { "{" TL "\"modifiedon\":\"25/11/2026 10:00\"}",
                  "tracelogs: column 'modifiedon': not an ISO-8601 date-time: \"25/11/2026 10:00\"" },
                { "{" TL "\"modifiedon\":\"2026-11-25T10:00:00\"}",
                  "tracelogs: column 'modifiedon': not an ISO-8601 date-time" },
                { "{" TL "\"modifiedon\":1795600800}",
                  "tracelogs: column 'modifiedon': expected an ISO-8601 date-time string, got an integer" },
                { "{" TL "\"level\":2}", "tracelogs: column 'modifiedon': is missing" },
                { "{" TL "\"text\":[\"a\"]," MOD "}", "tracelogs: column 'text': expected a string, got an array" },
                { "{" TL "\"_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname\":1," MOD "}",
                  "tracelogs: column '_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname': "
                  "expected a string" },
                { "[1]", "tracelogs: expected a row object, got an array" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *j = parse_json(cases[i].json);
                struct tracelog_row t = {};
                char *err = NULL;

                assert_int_equal(rows_parse_tracelog(j, &t, &err), -EINVAL);
                assert_non_null(err);
                if (strncmp(err, cases[i].message, strlen(cases[i].message)) != 0)
                        fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].message);
                assert_null(t.id);
                free(err);
                json_decref(j);
        }
}

static void test_errors_other_tables(void **state) {
        (void) state;
        static const struct {
                int table;
                const char *json;
                const char *message;
        } cases[] = {
                { 0, "{\"mailboxid\":\"c0000000-0000-4000-8000-000000000001\",\"lastsyncerrorcode\":\"-2147220956\","
                     MOD "}", "mailboxes: column 'lastsyncerrorcode': expected an integer, got a string" },
                { 0, "{\"mailboxid\":\"c0000000-0000-4000-8000-000000000001\",\"lastsyncerrorcode\":4294967296,"
                     MOD "}", "mailboxes: column 'lastsyncerrorcode': 4294967296 is out of range" },
                { 1, "{\"workflowid\":\"a0000000-0000-4000-8000-000000000001\",\"category\":0,\"type\":1,"
                     "\"statecode\":1,\"mode\":1,\"triggeroncreate\":\"yes\"," MOD "}",
                  "workflows: column 'triggeroncreate': expected true or false, got a string" },
                { 1, "{\"workflowid\":\"a0000000-0000-4000-8000-000000000001\",\"category\":0,\"type\":1,"
                     "\"statecode\":1," MOD "}", "workflows: column 'mode': is missing" },
                { 2, "{\"sdkmessageprocessingstepid\":\"b0000000-0000-4000-8000-000000000001\",\"mode\":0,"
                     "\"statecode\":0,\"customizationlevel\":1," MOD ",\"sdkmessageid\":\"Create\"}",
                  "sdkmessageprocessingsteps: column 'sdkmessageid': expected an expanded object, got a string" },
                { 2, "{\"sdkmessageprocessingstepid\":\"b0000000-0000-4000-8000-000000000001\",\"mode\":0,"
                     "\"statecode\":0,\"customizationlevel\":1," MOD ",\"sdkmessageid\":{\"name\":5}}",
                  "sdkmessageprocessingsteps: column 'sdkmessageid/name': expected a string, got an integer" },
                { 3, "{\"processsessionid\":\"e0000000-0000-4000-8000-000000000001\",\"statuscode\":6}",
                  "processsessions: column 'createdon': is null, and so are completedon and startedon" },
                { 3, "{\"processsessionid\":\"e0000000-0000-4000-8000-000000000001\",\"statuscode\":6,"
                     "\"_processid_value\":\"x\",\"createdon\":\"2026-11-25T10:00:00Z\"}",
                  "processsessions: column '_processid_value': not a GUID" },
                { 4, "{\"plugintracelogid\":\"f0000000-0000-4000-8000-000000000001\",\"mode\":0,"
                     "\"createdon\":\"2026-13-25T10:00:00Z\"}",
                  "plugintracelogs: column 'createdon': not an ISO-8601 date-time: \"2026-13-25T10:00:00Z\"" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *j = parse_json(cases[i].json);
                char *err = NULL;
                int r = 0;

                switch (cases[i].table) {
                case 0: { struct mailbox_row x; r = rows_parse_mailbox(j, &x, &err); break; }
                case 1: { struct workflow_row x; r = rows_parse_workflow(j, &x, &err); break; }
                case 2: { struct step_row x; r = rows_parse_step(j, &x, &err); break; }
                case 3: { struct session_row x; r = rows_parse_session(j, &x, &err); break; }
                case 4: { struct trace_row x; r = rows_parse_trace(j, &x, &err); break; }
                }
                assert_int_equal(r, -EINVAL);
                assert_non_null(err);
                if (strncmp(err, cases[i].message, strlen(cases[i].message)) != 0)
                        fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].message);
                free(err);
                json_decref(j);
        }
}

static void test_page(void **state) {
        (void) state;
        json_t *j = parse_json(
                "[{\"workflowid\":\"a0000000-0000-4000-8000-000000000001\",\"category\":0,\"type\":1,"
                "\"statecode\":1,\"mode\":1," MOD "},"
                "{\"workflowid\":\"a0000000-0000-4000-8000-000000000002\",\"category\":0,\"type\":1,"
                "\"statecode\":true,\"mode\":0," MOD "},"
                "{\"workflowid\":\"a0000000-0000-4000-8000-000000000003\",\"category\":0,\"type\":1,"
                "\"statecode\":1,\"mode\":0," MOD "},"
                "{\"workflowid\":\"not a guid\"}]");
        struct rows_skipped skipped = {};
        struct rows page, all = { .table = ROWS_WORKFLOWS };

        /* a refused row is skipped, counted and described; the others keep their order */
        assert_int_equal(rows_parse_page(ROWS_WORKFLOWS, j, "prod", 10, &page, &skipped), 0);
        assert_int_equal(page.table, ROWS_WORKFLOWS);
        assert_int_equal(page.n, 2);
        assert_string_equal(page.workflows[0].id, "a0000000-0000-4000-8000-000000000001");
        assert_string_equal(page.workflows[1].id, "a0000000-0000-4000-8000-000000000003");
        assert_int_equal(skipped.n, 2);
        assert_string_equal(skipped.first, "workflows row 11 skipped: workflows: column 'statecode': "
                                           "expected an integer, got a boolean");
        /* pages add up */
        assert_int_equal(rows_append(&all, &page), 0);
        assert_int_equal(page.n, 0);
        assert_null(page.any);
        assert_int_equal(rows_parse_page(ROWS_WORKFLOWS, j, "prod", 14, &page, &skipped), 0);
        assert_int_equal(rows_append(&all, &page), 0);
        assert_int_equal(all.n, 4);
        assert_string_equal(all.workflows[3].id, "a0000000-0000-4000-8000-000000000003");
        assert_int_equal(skipped.n, 4);
        assert_non_null(strstr(skipped.first, "row 11 skipped"));
        rows_done(&all);
        rows_done(&page);
        rows_skipped_done(&skipped);
        json_decref(j);

        /* nothing to keep: no array; a hostile id stays out of the words */
        j = parse_json("[{\"plugintracelogid\":\"\\u0001evil\\u001b[0m\"}]");
        assert_int_equal(rows_parse_page(ROWS_TRACES, j, "prod", 0, &page, &skipped), 0);
        assert_int_equal(page.n, 0);
        assert_null(page.any);
        assert_string_equal(skipped.first, "traces row 0 skipped: plugintracelogs: column 'plugintracelogid': "
                                           "not a GUID: \"?evil?[0m\"");
        rows_skipped_done(&skipped);
        json_decref(j);

        j = parse_json("[]");
        assert_int_equal(rows_parse_page(ROWS_TRACELOGS, j, "prod", 0, &page, NULL), 0);
        assert_int_equal(page.n, 0);
        json_decref(j);
        assert_string_equal(rows_table_name(ROWS_STEPS), "steps");
        assert_null(rows_table_name(_ROWS_TABLE_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tracelog),
                cmocka_unit_test(test_mailbox),
                cmocka_unit_test(test_workflow),
                cmocka_unit_test(test_step),
                cmocka_unit_test(test_session),
                cmocka_unit_test(test_trace),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_errors_other_tables),
                cmocka_unit_test(test_page),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
