/* Unit tests for strutil.c: UTF-8 decoding and repair, one-line quoting,
 * bounded values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strutil.h"

static void test_decode(void **state) {
        static const struct {
                const char *in;
                uint32_t cp;
                size_t len;
        } cases[] = {
                { "A", 'A', 1 },
                { "\xc3\xa9", 0xE9, 2 },
                { "\xe2\x82\xac", 0x20AC, 3 },
                { "\xf0\x9f\x98\x80", 0x1F600, 4 },
                { "\xef\xbf\xbd", 0xFFFD, 3 },          /* a real U+FFFD is valid */
                { "\xf4\x8f\xbf\xbf", 0x10FFFF, 4 },
                { "\x80", UTF8_INVALID, 1 },            /* lone continuation */
                { "\xc0\xaf", UTF8_INVALID, 1 },        /* overlong lead */
                { "\xe0\x80\xaf", UTF8_INVALID, 1 },    /* overlong 3-byte */
                { "\xed\xa0\x80", UTF8_INVALID, 1 },    /* surrogate */
                { "\xf4\x90\x80\x80", UTF8_INVALID, 1 },/* > U+10FFFF */
                { "\xf5\x80", UTF8_INVALID, 1 },
                { "\xff", UTF8_INVALID, 1 },
                { "\xe2\x82", UTF8_INVALID, 2 },        /* truncated: maximal subpart */
                { "\xf0\x9f\x98" "A", UTF8_INVALID, 3 },
                { "\xe2\x82" "A", UTF8_INVALID, 2 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint32_t cp = 0;
                size_t n = utf8_decode(cases[i].in, strlen(cases[i].in), &cp);

                assert_int_equal(cp, cases[i].cp);
                assert_int_equal(n, cases[i].len);
        }
}

static void test_valid_and_sanitize(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "", "" },
                { "plain ASCII", "plain ASCII" },
                { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
                { "a\xff" "b", "a\xef\xbf\xbd" "b" },
                { "\xe2\x82", "\xef\xbf\xbd" },
                { "\xf0\x9f\x98" "x", "\xef\xbf\xbd" "x" },
                { "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },
                { "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *s = utf8_sanitize(cases[i].in);

                assert_non_null(s);
                assert_string_equal(s, cases[i].out);
                assert_true(utf8_is_valid(s, strlen(s)));
                assert_int_equal(utf8_is_valid(cases[i].in, strlen(cases[i].in)),
                                 strcmp(cases[i].in, cases[i].out) == 0);
                free(s);
        }
}

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
                cmocka_unit_test(test_decode),
                cmocka_unit_test(test_valid_and_sanitize),
                cmocka_unit_test(test_bare_token),
                cmocka_unit_test(test_quote),
                cmocka_unit_test(test_quote_bounded),
                cmocka_unit_test(test_put_pair),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
