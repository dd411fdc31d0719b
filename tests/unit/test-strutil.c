/* Unit tests for strutil.c: one-line quoting, bounded values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strutil.h"
#include "utf8.h"

static void test_bare_token(void **state) {
        assert_true(str_is_bare_token("prod"));
        assert_true(str_is_bare_token("-2147220956"));
        assert_true(str_is_bare_token("support@contoso.com"));
        assert_true(str_is_bare_token("workflow:5a4b:Name"));
        assert_false(str_is_bare_token(NULL));
        assert_false(str_is_bare_token(""));
        assert_false(str_is_bare_token("a b"));
        assert_false(str_is_bare_token("a=b"));
        assert_false(str_is_bare_token("a\"b"));
        assert_false(str_is_bare_token("a'b"));
        assert_false(str_is_bare_token("a\\b"));
        assert_false(str_is_bare_token("a\tb"));
        assert_false(str_is_bare_token("caf\xc3\xa9"));
}

static void assert_quote(const char *in, size_t max, enum quote_mode mode, const char *want) {
        char *s = str_quote(in, max, mode);

        assert_non_null(s);
        assert_string_equal(s, want);
        free(s);
}

static void test_quote(void **state) {
        assert_quote("prod", 64, QUOTE_IF_NEEDED, "prod");
        assert_quote("prod", 64, QUOTE_ALWAYS, "\"prod\"");
        assert_quote(NULL, 64, QUOTE_IF_NEEDED, "\"\"");
        assert_quote("", 64, QUOTE_IF_NEEDED, "\"\"");
        assert_quote("a b", 64, QUOTE_IF_NEEDED, "\"a b\"");
        assert_quote("say \"hi\"\\", 64, QUOTE_IF_NEEDED, "\"say \\\"hi\\\"\\\\\"");
        assert_quote("l1\nl2\r\tx", 64, QUOTE_IF_NEEDED, "\"l1\\nl2\\r\\tx\"");
        assert_quote("\x01\x1b\x7f", 64, QUOTE_IF_NEEDED, "\"\\x01\\x1B\\x7F\"");
        assert_quote("c1 \xc2\x85 ls \xe2\x80\xa8 ps \xe2\x80\xa9", 64, QUOTE_IF_NEEDED,
                     "\"c1 \\u0085 ls \\u2028 ps \\u2029\"");
        assert_quote("bad \xff", 64, QUOTE_IF_NEEDED, "\"bad \xef\xbf\xbd\"");
        assert_quote("caf\xc3\xa9", 64, QUOTE_IF_NEEDED, "\"caf\xc3\xa9\"");
}

static void test_quote_bounded(void **state) {
        /* Cut on a character boundary, never inside an escape; marked. */
        assert_quote("abcdef", 4, QUOTE_ALWAYS, "\"abcd" STR_ELLIPSIS "\"");
        assert_quote("abcd", 4, QUOTE_ALWAYS, "\"abcd\"");
        assert_quote("abc\n", 4, QUOTE_ALWAYS, "\"abc" STR_ELLIPSIS "\"");
        assert_quote("a\xc3\xa9\xc3\xa9", 4, QUOTE_ALWAYS, "\"a\xc3\xa9" STR_ELLIPSIS "\"");
        assert_quote("abcdef", 4, QUOTE_IF_NEEDED, "\"abcd" STR_ELLIPSIS "\"");
        assert_quote("abcdef", 0, QUOTE_ALWAYS, "\"" STR_ELLIPSIS "\"");
}

static void test_put_pair(void **state) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        assert_non_null(f);
        assert_int_equal(str_put_pair(f, "environment", "prod", 64), 0);
        assert_int_equal(str_put_pair(f, "name", "a=b c", 64), 0);
        assert_int_equal(fclose(f), 0);
        assert_string_equal(buf, " environment=prod name=\"a=b c\"");
        free(buf);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bare_token),
                cmocka_unit_test(test_quote),
                cmocka_unit_test(test_quote_bounded),
                cmocka_unit_test(test_put_pair),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
