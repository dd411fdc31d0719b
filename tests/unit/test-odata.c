/* Unit tests for odata.c: quoting, percent-encoding, column
 * validation, filter composition, whole URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "odata.h"

#define ROOT "https://contoso.crm.dynamics.com"
#define API ROOT "/api/data/v9.2/"
#define G1 "0f3c1a2b-4d5e-4f60-8a71-92b3c4d5e6f7"
#define G2 "11111111-2222-3333-4444-555555555555"

static char *quote(const char *s) {
        char *r = NULL;
        assert_int_equal(odata_quote_string(s, &r), 0);
        return r;
}

static char *enc(const char *s) {
        char *r = NULL;
        assert_int_equal(odata_url_encode(s, &r), 0);
        return r;
}

/* Build a query on "tracelogs" with $select=x and the filter made by fn:
 * odata_query_url()'s result, and the URL in *ret_url. */
static int filter_build(void (*fn)(struct odata_filter *f), char **ret_url) {
        struct odata_query *q = NULL;
        int r;

        *ret_url = NULL;
        assert_int_equal(odata_query_new(ROOT, "tracelogs", &q), 0);
        odata_select(q, "x");
        fn(odata_query_filter(q));
        r = odata_query_url(q, ret_url);
        odata_query_free(q);
        return r;
}

static char *filter_url(void (*fn)(struct odata_filter *f)) {
        char *url;
        return filter_build(fn, &url) < 0 ? NULL : url;
}

static int filter_error(void (*fn)(struct odata_filter *f)) {
        char *url;
        int r = filter_build(fn, &url);

        free(url);
        return r;
}

static void test_quote(void **state) {
        char *s;

        (void) state;
        assert_string_equal(s = quote("Support"), "'Support'"), free(s);
        assert_string_equal(s = quote("O'Brien"), "'O''Brien'"), free(s);
        assert_string_equal(s = quote("''"), "''''''"), free(s);
        assert_string_equal(s = quote(""), "''"), free(s);
        assert_string_equal(s = quote("Müller & Söhne"), "'Müller & Söhne'"), free(s);
        /* invalid UTF-8: lone continuation byte, overlong '/', truncated sequence, surrogate */
        assert_int_equal(odata_quote_string("a\x80", &s), -EILSEQ);
        assert_int_equal(odata_quote_string("\xc0\xaf", &s), -EILSEQ);
        assert_int_equal(odata_quote_string("\xe2\x82", &s), -EILSEQ);
        assert_int_equal(odata_quote_string("\xed\xa0\x80", &s), -EILSEQ);
        assert_int_equal(odata_quote_string(NULL, &s), -EINVAL);
}

static void test_url_encode(void **state) {
        char *s;

        (void) state;
        assert_string_equal(s = enc("AZaz09-._~"), "AZaz09-._~"), free(s);
        assert_string_equal(s = enc("'(),:/"), "'(),:/"), free(s);
        assert_string_equal(s = enc("a b"), "a%20b"), free(s);
        assert_string_equal(s = enc("&#%+=;?"), "%26%23%25%2B%3D%3B%3F"), free(s);
        assert_string_equal(s = enc("$select"), "%24select"), free(s);
        assert_string_equal(s = enc("[]@!*\"<>\\^`{|}"), "%5B%5D%40%21%2A%22%3C%3E%5C%5E%60%7B%7C%7D"), free(s);
        assert_string_equal(s = enc("é€😀"), "%C3%A9%E2%82%AC%F0%9F%98%80"), free(s);
        assert_string_equal(s = enc("\r\n\t"), "%0D%0A%09"), free(s);
        assert_string_equal(s = enc(""), ""), free(s);
}

static void test_column_valid(void **state) {
        (void) state;
        assert_true(odata_column_valid("modifiedon"));
        assert_true(odata_column_valid("_processid_value"));
        assert_true(odata_column_valid("sdkmessageid/name"));
        assert_true(odata_column_valid("a/b/c1"));
        assert_false(odata_column_valid(""));
        assert_false(odata_column_valid("1abc"));
        assert_false(odata_column_valid("name eq 'x'"));
        assert_false(odata_column_valid("a//b"));
        assert_false(odata_column_valid("/a"));
        assert_false(odata_column_valid("a/"));
        assert_false(odata_column_valid("a-b"));
        assert_false(odata_column_valid(NULL));
}

static void f_eq_str(struct odata_filter *f) {
        odata_filter_eq_str(f, "name", "O'Brien & Sons #1 100% + more");
}
static void f_utf8(struct odata_filter *f) {
        odata_filter_eq_str(f, "name", "Zürich–Post ✉");
}
static void f_guid(struct odata_filter *f) {
        odata_filter_eq_guid(f, "_regardingobjectid_value", "0F3C1A2B-4D5E-4F60-8A71-92B3C4D5E6F7");
}
static void f_guid_bad(struct odata_filter *f) {
        odata_filter_eq_guid(f, "_regardingobjectid_value", G1 " or 1 eq 1");
}
static void f_datetime(struct odata_filter *f) {
        odata_filter_cmp_datetime(f, "createdon", "gt", (time_t) 1795597200);
        odata_filter_cmp_datetime(f, "modifiedon", "le", (time_t) 0);
}
static void f_int(struct odata_filter *f) {
        odata_filter_eq_int(f, "lastsyncerrorcode", -2147220956);
        odata_filter_cmp_int(f, "level", "ge", 2);
        odata_filter_eq_bool(f, "triggeroncreate", true);
        odata_filter_ne_null(f, "exceptiondetails");
}
static void f_groups(struct odata_filter *f) {
        struct odata_filter *any = odata_filter_or(f), *both;

        odata_filter_eq_int(f, "category", 0);
        odata_filter_eq_int(any, "type", 1);
        both = odata_filter_and(any);
        odata_filter_eq_int(both, "type", 2);
        odata_filter_eq_str(both, "sdkmessageid/name", "Create");
}
static void f_single_group(struct odata_filter *f) {
        struct odata_filter *any = odata_filter_or(f);
        odata_filter_eq_guid(any, "pluginstepid", G2);
}
static void f_empty_group(struct odata_filter *f) {
        odata_filter_eq_int(f, "mode", 0);
        (void) odata_filter_or(f);
}
static void f_in(struct odata_filter *f) {
        const char *const ids[] = { G1, G2, "it's" };
        odata_filter_in(f, "processid", ids, 3);
}
static void f_in_empty(struct odata_filter *f) {
        odata_filter_in(f, "processid", NULL, 0);
}
static void f_bad_op(struct odata_filter *f) {
        odata_filter_cmp_int(f, "level", "eq 1 or level", 2);
}
static void f_bad_col(struct odata_filter *f) {
        odata_filter_eq_int(f, "level eq 1 or level", 2);
}
static void f_bad_utf8(struct odata_filter *f) {
        odata_filter_eq_str(f, "name", "\xff");
}

static void assert_url(void (*fn)(struct odata_filter *f), const char *expected) {
        char *url = filter_url(fn);
        assert_non_null(url);
        assert_string_equal(url, expected);
        free(url);
}

static void test_filters(void **state) {
        (void) state;
        assert_url(f_eq_str, API "tracelogs?$select=x&$filter=name%20eq%20'O''Brien%20%26%20Sons%20%231%20100%25%20%2B%20more'");
        assert_url(f_utf8, API "tracelogs?$select=x&$filter=name%20eq%20'Z%C3%BCrich%E2%80%93Post%20%E2%9C%89'");
        assert_url(f_guid, API "tracelogs?$select=x&$filter=_regardingobjectid_value%20eq%20" G1);
        assert_url(f_datetime, API "tracelogs?$select=x&$filter=createdon%20gt%202026-11-25T09:00:00Z%20and%20"
                                   "modifiedon%20le%201970-01-01T00:00:00Z");
        assert_url(f_int, API "tracelogs?$select=x&$filter=lastsyncerrorcode%20eq%20-2147220956%20and%20"
                              "level%20ge%202%20and%20triggeroncreate%20eq%20true%20and%20exceptiondetails%20ne%20null");
        assert_url(f_groups, API "tracelogs?$select=x&$filter=(type%20eq%201%20or%20(type%20eq%202%20and%20"
                                 "sdkmessageid/name%20eq%20'Create'))%20and%20category%20eq%200");
        assert_url(f_single_group, API "tracelogs?$select=x&$filter=pluginstepid%20eq%20" G2);
        assert_url(f_in, API "tracelogs?$select=x&$filter=Microsoft.Dynamics.CRM.In(PropertyName%3D'processid',"
                             "PropertyValues%3D%5B'" G1 "','" G2 "','it''s'%5D)");
}

static void test_filter_errors(void **state) {
        (void) state;
        assert_int_equal(filter_error(f_guid_bad), -EINVAL);
        assert_int_equal(filter_error(f_empty_group), -EINVAL);
        assert_int_equal(filter_error(f_in_empty), -EINVAL);
        assert_int_equal(filter_error(f_bad_op), -EINVAL);
        assert_int_equal(filter_error(f_bad_col), -EINVAL);
        assert_int_equal(filter_error(f_bad_utf8), -EILSEQ);
}

static void test_query_parts(void **state) {
        struct odata_query *q = NULL;
        char *url = NULL;

        (void) state;
        assert_int_equal(odata_query_new(ROOT "/", "sdkmessageprocessingsteps", &q), 0);
        odata_select(q, "sdkmessageprocessingstepid,name");
        odata_filter_eq_int(odata_query_filter(q), "customizationlevel", 1);
        odata_orderby(q, "modifiedon asc,name desc");
        odata_expand(q, "sdkmessageid($select=name),plugintypeid($select=typename)");
        odata_top(q, 7);
        assert_int_equal(odata_query_url(q, &url), 0);
        assert_string_equal(url, API "sdkmessageprocessingsteps?$select=sdkmessageprocessingstepid,name"
                                     "&$filter=customizationlevel%20eq%201"
                                     "&$orderby=modifiedon%20asc,name%20desc"
                                     "&$expand=sdkmessageid(%24select%3Dname),plugintypeid(%24select%3Dtypename)"
                                     "&$top=7");
        free(url);
        odata_query_free(q);

        /* $select is required; an empty root filter means no $filter */
        assert_int_equal(odata_query_new(ROOT, "mailboxes", &q), 0);
        assert_int_equal(odata_query_url(q, &url), -EINVAL);
        odata_select(q, "mailboxid");
        assert_int_equal(odata_query_url(q, &url), 0);
        assert_string_equal(url, API "mailboxes?$select=mailboxid");
        free(url);
        odata_query_free(q);

        /* bad pieces stick */
        assert_int_equal(odata_query_new(ROOT, "mailboxes", &q), 0);
        odata_select(q, "mailboxid,name eq 'x'");
        assert_int_equal(odata_query_url(q, &url), -EINVAL);
        odata_query_free(q);
        assert_int_equal(odata_query_new(ROOT, "mailboxes", &q), 0);
        odata_select(q, "mailboxid");
        odata_orderby(q, "modifiedon sideways");
        assert_int_equal(odata_query_url(q, &url), -EINVAL);
        odata_query_free(q);

        assert_int_equal(odata_query_new(ROOT, "mail boxes", &q), -EINVAL);
        assert_int_equal(odata_query_new(ROOT, "a/b", &q), -EINVAL);
        assert_int_equal(odata_query_new("", "mailboxes", &q), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_quote),
                cmocka_unit_test(test_url_encode),
                cmocka_unit_test(test_column_valid),
                cmocka_unit_test(test_filters),
                cmocka_unit_test(test_filter_errors),
                cmocka_unit_test(test_query_parts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
