/* Unit tests for the dataverse layer without a server: the exact URL of every
 * named query (queries.c, golden strings), id-list splitting and validation,
 * nextLink origin checks, the JSON text repair and page bodies (response.c);
 * then the client on a real loop against a closed loopback port: retries
 * inside the budget, a clear error without the secret, no callback after
 * dv_client_free(), an empty id list answered without a request or a page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "client.h"
#include "connection.h"
#include "http.h"
#include "queries.h"
#include "response.h"

#define ROOT "https://contoso.crm.dynamics.com"
#define API ROOT "/api/data/v9.2/"
#define G1 "0f3c1a2b-4d5e-4f60-8a71-92b3c4d5e6f7"
#define G2 "11111111-2222-3333-4444-555555555555"
#define SINCE ((time_t) 1795597200) /* 2026-11-25T09:00:00Z */

static const char *const two_ids[] = { G1, G2 };
static const struct dv_query_args args = {
        .since = SINCE,
        .from = SINCE - 900,
        .to = SINCE + 900,
        .ids = two_ids,
        .n_ids = 2,
        .entityset = "workflows",
};

static void assert_one_url(enum dv_query_kind kind, const struct dv_query_args *a, const char *expected) {
        char **urls = NULL;
        size_t n = 0;

        assert_int_equal(dv_query_urls(ROOT, kind, a, 20, &urls, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(urls[0], expected);
        dv_urls_free(urls, n);
}

static void test_golden_urls(void **state) {
        struct dv_query_args all = args;

        (void) state;
        assert_one_url(DV_QUERY_TRACELOGS, &args,
                       API "tracelogs?$select=tracelogid,_regardingobjectid_value,level,text,errordetails,createdon,modifiedon"
                           "&$filter=modifiedon%20ge%202026-11-25T09:00:00Z%20and%20level%20ge%202"
                           "&$orderby=modifiedon%20asc,tracelogid%20asc");
        assert_one_url(DV_QUERY_MAILBOXES, &args,
                       API "mailboxes?$select=mailboxid,name,emailaddress,incomingemailstatus,actstatus,lastsyncerrorcode,"
                           "lastsyncerror,lastsyncerroroccurredon,lastsuccessfulsynccompletedon,modifiedon"
                           "&$filter=modifiedon%20ge%202026-11-25T09:00:00Z"
                           "&$orderby=modifiedon%20asc,mailboxid%20asc");
        assert_one_url(DV_QUERY_WORKFLOWS, &args,
                       API "workflows?$select=workflowid,name,_parentworkflowid_value,category,type,statecode,mode,"
                           "primaryentity,triggeroncreate,triggeronupdateattributelist,syncworkflowlogonfailure,modifiedon"
                           "&$filter=category%20eq%200%20and%20(type%20eq%201%20or%20type%20eq%202)%20and%20"
                           "modifiedon%20ge%202026-11-25T09:00:00Z"
                           "&$orderby=modifiedon%20asc,workflowid%20asc");
        assert_one_url(DV_QUERY_STEPS, &args,
                       API "sdkmessageprocessingsteps?$select=sdkmessageprocessingstepid,name,mode,stage,statecode,"
                           "customizationlevel,modifiedon"
                           "&$filter=customizationlevel%20eq%201%20and%20modifiedon%20ge%202026-11-25T09:00:00Z"
                           "&$orderby=modifiedon%20asc,sdkmessageprocessingstepid%20asc"
                           "&$expand=sdkmessageid(%24select%3Dname),sdkmessagefilterid(%24select%3Dprimaryobjecttypecode),"
                           "plugintypeid(%24select%3Dtypename)");
        assert_one_url(DV_QUERY_FAILED_SESSIONS, &args,
                       API "processsessions?$select=processsessionid,_processid_value,statuscode,comments,errorcode,"
                           "startedon,completedon,createdon"
                           "&$filter=statuscode%20eq%206%20and%20createdon%20ge%202026-11-25T08:45:00Z%20and%20"
                           "createdon%20le%202026-11-25T09:15:00Z%20and%20(_processid_value%20eq%20" G1
                           "%20or%20_processid_value%20eq%20" G2 ")"
                           "&$orderby=createdon%20asc,processsessionid%20asc");
        assert_one_url(DV_QUERY_PLUGIN_TRACES, &args,
                       API "plugintracelogs?$select=plugintracelogid,pluginstepid,messagename,primaryentity,mode,"
                           "typename,exceptiondetails,createdon"
                           "&$filter=mode%20eq%200%20and%20exceptiondetails%20ne%20null%20and%20"
                           "createdon%20ge%202026-11-25T08:45:00Z%20and%20createdon%20le%202026-11-25T09:15:00Z%20and%20"
                           "(pluginstepid%20eq%20" G1 "%20or%20pluginstepid%20eq%20" G2 ")"
                           "&$orderby=createdon%20asc,plugintracelogid%20asc");
        assert_one_url(DV_QUERY_PROBE, &args, API "workflows?$select=workflowid&$top=1");

        /* since 0: everything (no modifiedon condition) */
        all.since = 0;
        assert_one_url(DV_QUERY_MAILBOXES, &all,
                       API "mailboxes?$select=mailboxid,name,emailaddress,incomingemailstatus,actstatus,lastsyncerrorcode,"
                           "lastsyncerror,lastsyncerroroccurredon,lastsuccessfulsynccompletedon,modifiedon"
                           "&$orderby=modifiedon%20asc,mailboxid%20asc");
        assert_one_url(DV_QUERY_WORKFLOWS, &all,
                       API "workflows?$select=workflowid,name,_parentworkflowid_value,category,type,statecode,mode,"
                           "primaryentity,triggeroncreate,triggeronupdateattributelist,syncworkflowlogonfailure,modifiedon"
                           "&$filter=category%20eq%200%20and%20(type%20eq%201%20or%20type%20eq%202)"
                           "&$orderby=modifiedon%20asc,workflowid%20asc");
}

static void test_single_id(void **state) {
        struct dv_query_args a = args;
        static const char *const one[] = { "0F3C1A2B-4D5E-4F60-8A71-92B3C4D5E6F7" };

        (void) state;
        a.ids = one;
        a.n_ids = 1;
        /* one id: no parentheses; upper case normalised */
        assert_one_url(DV_QUERY_PLUGIN_TRACES, &a,
                       API "plugintracelogs?$select=plugintracelogid,pluginstepid,messagename,primaryentity,mode,"
                           "typename,exceptiondetails,createdon"
                           "&$filter=mode%20eq%200%20and%20exceptiondetails%20ne%20null%20and%20"
                           "createdon%20ge%202026-11-25T08:45:00Z%20and%20createdon%20le%202026-11-25T09:15:00Z%20and%20"
                           "pluginstepid%20eq%20" G1
                           "&$orderby=createdon%20asc,plugintracelogid%20asc");
}

static void test_id_chunks(void **state) {
        char ids_buf[45][37];
        const char *ids[47];
        struct dv_query_args a = args;
        char **urls = NULL;
        size_t n = 0, total = 0;

        (void) state;
        for (int i = 0; i < 45; i++) {
                snprintf(ids_buf[i], sizeof(ids_buf[i]), "00000000-0000-0000-0000-%012d", i);
                ids[i] = ids_buf[i];
        }
        ids[45] = ids_buf[3]; /* duplicates are asked once */
        ids[46] = "00000000-0000-0000-0000-000000000007";
        a.ids = ids;
        a.n_ids = 47;
        assert_int_equal(dv_query_urls(ROOT, DV_QUERY_FAILED_SESSIONS, &a, 20, &urls, &n), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++) {
                for (const char *p = urls[i]; (p = strstr(p, "_processid_value%20eq%20")); p++)
                        total++;
                assert_true(strlen(urls[i]) < 4096);
        }
        assert_int_equal(total, 45);
        assert_non_null(strstr(urls[0], "-000000000000%20or"));
        assert_non_null(strstr(urls[0], "-000000000019)&"));
        assert_non_null(strstr(urls[1], "-000000000020%20or"));
        assert_non_null(strstr(urls[2], "-000000000044)&"));
        dv_urls_free(urls, n);

        /* empty list: no request at all */
        a.n_ids = 0;
        assert_int_equal(dv_query_urls(ROOT, DV_QUERY_PLUGIN_TRACES, &a, 20, &urls, &n), 0);
        assert_int_equal(n, 0);
        dv_urls_free(urls, n);
}

static void test_bad_arguments(void **state) {
        static const char *const bad[] = { G1, "' or 1 eq 1 or '" };
        struct dv_query_args a = args;
        char **urls = NULL;
        size_t n = 0;

        (void) state;
        a.ids = bad;
        a.n_ids = 2;
        assert_int_equal(dv_query_urls(ROOT, DV_QUERY_FAILED_SESSIONS, &a, 20, &urls, &n), -EINVAL);
        assert_int_equal(dv_query_urls(ROOT, DV_QUERY_PLUGIN_TRACES, &a, 20, &urls, &n), -EINVAL);
        a = args;
        a.entityset = "accounts"; /* not a probed set */
        assert_int_equal(dv_query_urls(ROOT, DV_QUERY_PROBE, &a, 20, &urls, &n), -EINVAL);
        a.entityset = NULL;
        assert_int_equal(dv_query_urls(ROOT, DV_QUERY_PROBE, &a, 20, &urls, &n), -EINVAL);
        assert_int_equal(dv_query_urls(ROOT, _DV_QUERY_MAX, &args, 20, &urls, &n), -EINVAL);
}

static void test_kind_names(void **state) {
        (void) state;
        for (int k = 0; k < _DV_QUERY_MAX; k++)
                assert_int_equal(dv_query_kind_from_string(dv_query_kind_to_string(k)), k);
        assert_int_equal(dv_query_kind_from_string("accounts"), -EINVAL);
        assert_null(dv_query_kind_to_string(_DV_QUERY_MAX));
}

static void test_same_origin(void **state) {
        (void) state;
        assert_int_equal(http_url_same_origin(API "tracelogs?$skiptoken=x", ROOT), 1);
        assert_int_equal(http_url_same_origin("https://CONTOSO.crm.dynamics.com:443/api/data/v9.2/x", ROOT), 1);
        assert_int_equal(http_url_same_origin("https://evil.example.com/api/data/v9.2/x", ROOT), 0);
        assert_int_equal(http_url_same_origin("http://contoso.crm.dynamics.com/api/data/v9.2/x", ROOT), 0);
        assert_int_equal(http_url_same_origin("https://contoso.crm.dynamics.com:8443/api/data/v9.2/x", ROOT), 0);
        assert_int_equal(http_url_same_origin("https://contoso.crm.dynamics.com.evil.example/x", ROOT), 0);
        assert_int_equal(http_url_same_origin("https://contoso.crm.dynamics.com@evil.example/x", ROOT), 0);
        assert_int_equal(http_url_same_origin("http://127.0.0.1:8080/a", "http://127.0.0.1:8080"), 1);
        assert_int_equal(http_url_same_origin("http://127.0.0.1:8081/a", "http://127.0.0.1:8080"), 0);
        assert_int_equal(http_url_same_origin("not a url", ROOT), -EINVAL);
        assert_int_equal(http_url_same_origin(NULL, ROOT), -EINVAL);
}

/* ---- on a loop, against a closed port ------------------------------------------ */

struct outcome {
        int calls;
        int error;
        unsigned requests;
        char message[1024];
        size_t rows;
        unsigned pages;
};

static void on_done(struct dv_client *c, struct dv_result *r, void *userdata) {
        struct outcome *o = userdata;

        o->calls++;
        o->error = r->error;
        o->requests = r->requests;
        snprintf(o->message, sizeof(o->message), "%s", r->message ? r->message : "");
        o->rows = r->error < 0 ? (size_t) -1 : r->rows;
        o->pages = r->pages;
}

static struct dv_connection closed_env = {
        .name = "closed",
        .url = "http://127.0.0.1:1",
        .token_url = "http://127.0.0.1:1/tenant/oauth2/v2.0/token",
        .client_id = "11111111-1111-1111-1111-111111111111",
        .client_secret = "very-secret-value",
};

static void test_refused_until_budget(void **state) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        struct http *h = NULL;
        struct dv_client *c = NULL;
        struct outcome o = {};
        struct dv_options opt = {
                .initial_backoff_sec = 0.05,
                .max_backoff_sec = 0.2,
                .retry_budget_sec = 0.6,
                .seed = 42,
        };

        (void) state;
        assert_int_equal(http_new(loop, &h), 0);
        assert_int_equal(dv_client_new(loop, h, &closed_env, &opt, &c), 0);
        assert_int_equal(dv_query_tracelogs_since(c, SINCE, NULL, on_done, &o), 0);
        assert_int_equal(o.calls, 0); /* never from inside the call */
        ev_run(loop, 0);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.error, -ECONNREFUSED);
        assert_null(strstr(o.message, "very-secret-value"));
        assert_non_null(strstr(o.message, "closed: tracelogs: giving up after"));
        assert_non_null(strstr(o.message, "token request"));
        assert_int_equal(o.rows, (size_t) -1);
        /* the token endpoint was tried more than once, but within the budget */
        assert_true(dv_client_token_requests(c) >= 2);
        assert_true(dv_client_token_requests(c) < 20);
        dv_client_free(c);
        http_free(h);
        ev_loop_destroy(loop);
}

static void stop_loop(struct ev_loop *loop, struct ev_timer *w, int revents) {
        ev_break(loop, EVBREAK_ALL);
}

static void test_free_cancels(void **state) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        struct http *h = NULL;
        struct dv_client *c = NULL;
        struct outcome o = {}, empty = {};
        struct ev_timer t;
        struct dv_options opt = { .initial_backoff_sec = 5, .seed = 1 };

        (void) state;
        assert_int_equal(http_new(loop, &h), 0);
        assert_int_equal(dv_client_new(loop, h, &closed_env, &opt, &c), 0);
        for (int i = 0; i < 10; i++) /* more than max_in_flight: some stay queued */
                assert_int_equal(dv_query_mailboxes_since(c, 0, NULL, on_done, &o), 0);
        assert_int_equal(dv_query_failed_sessions(c, NULL, 0, SINCE, SINCE, NULL, on_done, &empty), 0);
        assert_int_equal(dv_query_failed_sessions(c, two_ids, 1, SINCE, SINCE + 1, NULL, on_done, NULL) , 0);
        {
                static const char *const bad[] = { "nope" };
                assert_int_equal(dv_query_failed_sessions(c, bad, 1, SINCE, SINCE, NULL, on_done, NULL), -EINVAL);
        }
        ev_timer_init(&t, stop_loop, 0.2, 0.);
        ev_timer_start(loop, &t);
        ev_run(loop, 0);
        /* the empty list answered with no rows and no request */
        assert_int_equal(empty.calls, 1);
        assert_int_equal(empty.error, 0);
        assert_int_equal(empty.rows, 0);
        assert_int_equal(empty.pages, 0);
        assert_int_equal(empty.requests, 0);
        /* the others wait in backoff or in the queue: freeing cancels them silently */
        assert_int_equal(o.calls, 0);
        dv_client_free(c);
        ev_run(loop, EVRUN_NOWAIT);
        assert_int_equal(o.calls, 0);
        assert_int_equal(http_pending(h), 0);
        http_free(h);
        ev_loop_destroy(loop);
}

struct freeing {
        struct dv_client *client;
        int calls;
};

static void free_in_callback(struct dv_client *c, struct dv_result *r, void *userdata) {
        struct freeing *f = userdata;

        f->calls++;
        assert_ptr_equal(c, f->client);
        assert_int_equal(r->error, 0);
        dv_client_free(c);
        f->client = NULL;
}

static void test_free_inside_callback(void **state) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        struct http *h = NULL;
        struct freeing f = {};
        struct outcome later = {};

        (void) state;
        assert_int_equal(http_new(loop, &h), 0);
        assert_int_equal(dv_client_new(loop, h, &closed_env, NULL, &f.client), 0);
        /* two answers ready at once; the first callback frees the client */
        assert_int_equal(dv_query_plugin_traces(f.client, NULL, 0, SINCE, SINCE, NULL, free_in_callback, &f), 0);
        assert_int_equal(dv_query_plugin_traces(f.client, NULL, 0, SINCE, SINCE, NULL, on_done, &later), 0);
        assert_int_equal(dv_query_tracelogs_since(f.client, SINCE, NULL, on_done, &later), 0);
        ev_run(loop, 0);
        assert_int_equal(f.calls, 1);
        assert_null(f.client);
        assert_int_equal(later.calls, 0);
        assert_int_equal(http_pending(h), 0);
        http_free(h);
        ev_loop_destroy(loop);
}

static void check_repair(const char *in, const char *want, size_t want_repairs) {
        size_t n = strlen(in), repairs = 99;
        char *out = dv_json_repair(in, n, &repairs);

        assert_non_null(out);
        assert_string_equal(out, want);
        assert_int_equal(strlen(out), n);
        assert_int_equal(repairs, want_repairs);
        free(out);
}

static void test_json_repair(void **state) {
        (void) state;
        /* nothing to do: valid text, escapes, a proper surrogate pair, UTF-8 */
        check_repair("{\"a\":\"x\\\"\\\\u0000\\n\"}", "{\"a\":\"x\\\"\\\\u0000\\n\"}", 0);
        check_repair("\"\\ud83d\\ude00 \xc3\xa9 \xef\xbf\xbd\"", "\"\\ud83d\\ude00 \xc3\xa9 \xef\xbf\xbd\"", 0);
        /* NUL and unpaired surrogates, either half, any case */
        check_repair("\"a\\u0000b\"", "\"a\\ufffdb\"", 1);
        check_repair("\"\\uD800x\\udc00\\ud83d\"", "\"\\ufffdx\\ufffd\\ufffd\"", 3);
        check_repair("\"\\ud83d\\u0041\"", "\"\\ufffd\\u0041\"", 1);
        /* ill-formed UTF-8: each byte of the maximal subpart */
        check_repair("\"\xff\xc3x\xed\xa0\x80\"", "\"??x???\"", 5);
        /* a truncated escape at the end is left for the parser to refuse */
        check_repair("\"\\ud8", "\"\\ud8", 0);
        check_repair("\\", "\\", 0);
}

static void test_page_body(void **state) {
        struct dv_page_body b;
        char *why = NULL;
        const char *ok = "{\"@odata.context\":\"x\",\"value\":[{\"a\":1},{\"a\":\"\\u0000\"}],"
                         "\"@odata.nextLink\":\"https://contoso.crm.dynamics.com/api/data/v9.2/x?$skiptoken=1\"}";

        (void) state;
        /* a page, read after repairing the NUL escape jansson refuses */
        assert_int_equal(dv_page_body_parse(ok, strlen(ok), &b, &why), 0);
        assert_null(why);
        assert_int_equal(json_array_size(b.value), 2);
        assert_int_equal(b.repairs, 1);
        assert_string_equal(b.next_link, "https://contoso.crm.dynamics.com/api/data/v9.2/x?$skiptoken=1");
        dv_page_body_done(&b);
        /* the last page: no link, or a null one */
        assert_int_equal(dv_page_body_parse("{\"value\":[]}", 12, &b, &why), 0);
        assert_null(b.next_link);
        dv_page_body_done(&b);
        assert_int_equal(dv_page_body_parse("{\"value\":[],\"@odata.nextLink\":null}", 35, &b, &why), 0);
        assert_null(b.next_link);
        dv_page_body_done(&b);

        assert_int_equal(dv_page_body_parse("<html>", 6, &b, &why), -EBADMSG);
        assert_non_null(strstr(why, "response is not valid JSON"));
        free(why);
        assert_int_equal(dv_page_body_parse("{\"rows\":[]}", 11, &b, &why), -EBADMSG);
        assert_string_equal(why, "response is not an OData collection ({\"value\":[...]})");
        free(why);
        assert_int_equal(dv_page_body_parse("{\"value\":[],\"@odata.nextLink\":1}", 32, &b, &why), -EBADMSG);
        free(why);
        assert_int_equal(dv_page_body_parse("{\"value\":[{},2]}", 16, &b, &why), -EBADMSG);
        assert_string_equal(why, "row 1 of the response is not a JSON object");
        free(why);
        assert_null(b.root);
}

static void test_error_body(void **state) {
        const char *body = "{\"error\":{\"code\":\"0x80040220\",\"message\":\"Principal user\\nlacks privilege\"}}";
        char *code, *message;

        (void) state;
        dv_error_body_parse(body, strlen(body), &code, &message);
        assert_string_equal(code, "0x80040220");
        assert_string_equal(message, "Principal user lacks privilege");
        free(code);
        free(message);
        dv_error_body_parse("Bad gateway", 11, &code, &message);
        assert_null(code);
        assert_null(message);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_golden_urls),
                cmocka_unit_test(test_single_id),
                cmocka_unit_test(test_id_chunks),
                cmocka_unit_test(test_bad_arguments),
                cmocka_unit_test(test_kind_names),
                cmocka_unit_test(test_same_origin),
                cmocka_unit_test(test_refused_until_budget),
                cmocka_unit_test(test_free_cancels),
                cmocka_unit_test(test_free_inside_callback),
                cmocka_unit_test(test_json_repair),
                cmocka_unit_test(test_page_body),
                cmocka_unit_test(test_error_body),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
