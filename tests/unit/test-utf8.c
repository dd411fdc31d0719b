/* Unit tests for utf8.c: the one decoder (RFC 3629: no overlong, surrogate or
 * out-of-range form), the U+FFFD repair and the length-keeping byte repair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "utf8.h"

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

static void test_repair_bytes(void **state) {
        static const struct {
                const char *in, *out;
                size_t repairs;
        } cases[] = {
                { "", "", 0 },
                { "caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80", 0 },
                { "bad \xff\xfe byte", "bad ?? byte", 2 },
                /* overlong forms: jansson refuses them, so must this */
                { "ov \xc0\x80 er", "ov ?? er", 2 },
                { "\xc1\xbf", "??", 2 },
                { "\xe0\x80\xaf", "???", 3 },
                { "\xed\xa0\x80", "???", 3 },                 /* surrogate */
                { "\xe2\x82" "A", "??A", 1 },                    /* truncated: one sequence */
                { "\xf4\x90\x80\x80", "????", 4 },           /* > U+10FFFF */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *s = strdup(cases[i].in);

                assert_non_null(s);
                assert_int_equal(utf8_repair_bytes(s, strlen(s), '?'), cases[i].repairs);
                assert_string_equal(s, cases[i].out);
                assert_true(utf8_is_valid(s, strlen(s)));
                free(s);
        }
}

static void test_encode(void **state) {
        static const uint32_t cps[] = { 0x41, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFD, 0x10000, 0x10FFFF };

        for (size_t i = 0; i < ELEMENTSOF(cps); i++) {
                char buf[4];
                uint32_t cp;
                size_t n = utf8_encode(cps[i], buf);

                assert_int_equal(utf8_decode(buf, n, &cp), n);
                assert_int_equal(cp, cps[i]);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decode),
                cmocka_unit_test(test_valid_and_sanitize),
                cmocka_unit_test(test_repair_bytes),
                cmocka_unit_test(test_encode),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
