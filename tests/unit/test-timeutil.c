/* Unit tests for timeutil.c: durations (good, bad, overflow) and ISO-8601
 * timestamps (offsets, fractions, leap days, malformed input), HTTP-dates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "timeutil.h"

static void test_duration_good(void **state) {
        static const struct {
                const char *text;
                uint64_t sec;
        } cases[] = {
                { "0", 0 },
                { "90", 90 },
                { "30s", 30 },
                { "15m", 900 },
                { "1h", 3600 },
                { "2d", 172800 },
                { "1h30m", 5400 },
                { "1d2h3m4s", 93784 },
                { "0s", 0 },
                { "18446744073709551615", UINT64_MAX },
                { "18446744073709551615s", UINT64_MAX },
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t sec = 4242;

                assert_int_equal(duration_parse(cases[i].text, &sec), 0);
                assert_true(sec == cases[i].sec);
        }
}

static void test_duration_bad(void **state) {
        static const char *const bad[] = {
                "", "s", "m5", "-5s", "+5s", "5x", "5S", "1h30", "1.5h", " 5s", "5s ",
                "5 s", "1h-30m", "0x10", "5ss", "abc",
                "0h30", "0d00d1", /* a unit-less number after zero groups: as ambiguous (tests/fuzz) */
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint64_t sec = 4242;

                assert_int_equal(duration_parse(bad[i], &sec), -EINVAL);
                assert_true(sec == 4242); /* untouched on failure */
        }
        assert_int_equal(duration_parse(NULL, &(uint64_t) { 0 }), -EINVAL);
}

static void test_duration_overflow(void **state) {
        static const char *const big[] = {
                "18446744073709551616",         /* UINT64_MAX + 1 */
                "99999999999999999999s",
                "213503982334602d",             /* * 86400 overflows */
                "307445734561825861m",          /* * 60 overflows */
                "18446744073709551615s1s",      /* the sum overflows */
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(big); i++) {
                uint64_t sec = 4242;

                assert_int_equal(duration_parse(big[i], &sec), -ERANGE);
                assert_true(sec == 4242);
        }
}

static void test_duration_format(void **state) {
        static const struct {
                uint64_t sec;
                const char *text;
        } cases[] = {
                { 0, "0s" }, { 1, "1s" }, { 59, "59s" }, { 60, "1m" }, { 90, "90s" },
                { 3600, "1h" }, { 5400, "90m" }, { 86400, "1d" }, { 90000, "25h" },
                { 172800, "2d" }, { 93784, "93784s" },
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[32];
                uint64_t back;

                assert_string_equal(duration_format(cases[i].sec, buf, sizeof(buf)), cases[i].text);
                assert_int_equal(duration_parse(buf, &back), 0);
                assert_true(back == cases[i].sec);
        }
}

static void test_iso8601_parse_good(void **state) {
        static const struct {
                const char *text;
                time_t t;
        } cases[] = {
                { "1970-01-01T00:00:00Z", 0 },
                { "2026-11-25T09:59:58Z", 1795600798 },
                { "2026-11-25t09:59:58z", 1795600798 },
                { "2026-11-25T09:59:58.123Z", 1795600798 },
                { "2026-11-25T09:59:58.1234567Z", 1795600798 },
                { "2026-11-25T10:59:58+01:00", 1795600798 },
                { "2026-11-25T04:29:58-05:30", 1795600798 },
                { "2026-11-25T09:59:58.5+00:00", 1795600798 },
                { "2024-02-29T12:00:00Z", 1709208000 },
                { "2000-02-29T00:00:00Z", 951782400 },
                { "2026-12-31T23:59:59Z", 1798761599 },
                { "2026-11-25T00:30:00+01:00", 1795563000 }, /* previous UTC day */
                { "0000-01-01T00:00:00Z", -62167219200LL },  /* the range of iso8601_format() */
                { "9999-12-31T23:59:59Z", 253402300799LL },
                { "9999-12-31T23:59:59.999+00:00", 253402300799LL },
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                time_t t = 42;

                assert_int_equal(iso8601_parse(cases[i].text, &t), 0);
                assert_int_equal((long long) t, (long long) cases[i].t);
        }
}

static void test_iso8601_parse_bad(void **state) {
        static const char *const bad[] = {
                "",
                "2026-11-25",
                "2026-11-25T09:59:58",          /* no zone: ambiguous */
                "2026-11-25 09:59:58Z",
                "2026-11-25T09:59Z",
                "2026-13-01T00:00:00Z",
                "2026-00-01T00:00:00Z",
                "2026-11-31T00:00:00Z",
                "2026-11-00T00:00:00Z",
                "2023-02-29T00:00:00Z",         /* not a leap year */
                "1900-02-29T00:00:00Z",         /* centuries are not, */
                "2026-11-25T24:00:00Z",
                "2026-11-25T09:60:00Z",
                "2026-11-25T09:59:61Z",
                "9999-12-31T23:59:59-00:01",    /* the year 10000 (tests/fuzz) */
                "9999-12-31T23:59:60Z",
                "0000-01-01T00:00:00+00:01",    /* the year -1 */
                "2026-11-25T09:59:58.Z",
                "2026-11-25T09:59:58+0100",
                "2026-11-25T09:59:58+24:00",
                "2026-11-25T09:59:58+01:60",
                "2026-11-25T09:59:58Zjunk",
                "26-11-25T09:59:58Z",
                "2026/11/25T09:59:58Z",
                "２026-11-25T09:59:58Z",
        };
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                time_t t = 42;

                assert_int_equal(iso8601_parse(bad[i], &t), -EINVAL);
                assert_int_equal((long long) t, 42);
        }
        assert_int_equal(iso8601_parse(NULL, &(time_t) { 0 }), -EINVAL);
}

static void test_iso8601_format(void **state) {
        char buf[ISO8601_BUFSZ];
        time_t back;
        (void) state;

        assert_string_equal(iso8601_format(0, buf), "1970-01-01T00:00:00Z");
        assert_string_equal(iso8601_format(1795600798, buf), "2026-11-25T09:59:58Z");
        assert_string_equal(iso8601_format(1709208000, buf), "2024-02-29T12:00:00Z");
        assert_int_equal(iso8601_parse(iso8601_format(1798761599, buf), &back), 0);
        assert_int_equal((long long) back, 1798761599LL);
        /* Years before 1000 keep four digits, so they parse back (tests/fuzz). */
        assert_string_equal(iso8601_format((time_t) -37845716687LL, buf), "0770-09-19T20:55:13Z");
        assert_int_equal(iso8601_parse(buf, &back), 0);
        assert_int_equal((long long) back, -37845716687LL);
        assert_string_equal(iso8601_format((time_t) -62167219200LL, buf), "0000-01-01T00:00:00Z");
        /* Out of the four-digit range: a fixed, parseable fallback, no overflow. */
        assert_string_equal(iso8601_format((time_t) 253402300800LL, buf), "1970-01-01T00:00:00Z");
        assert_int_equal(strlen(buf), ISO8601_BUFSZ - 1);
}

/* Sun, 06 Nov 1994 08:49:37 GMT */
#define T_1994 ((time_t) 784111777)

static void test_http_date_formats(void **state) {
        time_t t, now = T_1994 - 100;

        (void) state;
        assert_int_equal(httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT", now, &t), 0);
        assert_int_equal(t, T_1994);
        assert_int_equal(httpdate_parse("Sunday, 06-Nov-94 08:49:37 GMT", now, &t), 0);
        assert_int_equal(t, T_1994);
        assert_int_equal(httpdate_parse("Sun Nov  6 08:49:37 1994", now, &t), 0);
        assert_int_equal(t, T_1994);
        assert_int_equal(httpdate_parse("Wed, 25 Nov 2026 09:00:00 GMT", now, &t), 0);
        assert_int_equal(t, (time_t) 1795597200);
        assert_int_equal(httpdate_parse("Thu Nov 26 10:00:00 2026", now, &t), 0);
        assert_int_equal(t, (time_t) 1795597200 + 86400 + 3600);
}

static void test_http_date_two_digit_year(void **state) {
        time_t t, now = (time_t) 1795597200; /* 2026 */

        (void) state;
        /* "26" from 2026 is 2026; "99" would be 2099 > 2076, so 1999 */
        assert_int_equal(httpdate_parse("Wednesday, 25-Nov-26 09:00:00 GMT", now, &t), 0);
        assert_int_equal(t, (time_t) 1795597200);
        assert_int_equal(httpdate_parse("Friday, 31-Dec-99 23:59:59 GMT", now, &t), 0);
        assert_int_equal(t, (time_t) 946684799);
}

static void test_http_date_garbage(void **state) {
        static const char *const bad[] = {
                "",
                "Sun, 06 Nov 1994 08:49:37",            /* no GMT */
                "Sun, 06 Nov 1994 08:49:37 UTC",
                "Sun, 6 Nov 1994 08:49:37 GMT",         /* day needs two digits */
                "Sun, 06 Foo 1994 08:49:37 GMT",
                "Sun, 31 Feb 1994 08:49:37 GMT",
                "Sun, 29 Feb 2023 08:49:37 GMT",        /* not a leap year */
                "Sun, 06 Nov 1994 24:00:00 GMT",
                "Sun, 06 Nov 1994 08:49:37 GMT trailing",
                "Funday, 06-Nov-94 08:49:37 GMT",
                "Sun Nov 6 08:49:37 1994",              /* asctime pads with a space */
                "2026-11-25T09:00:00Z",
                "tomorrow",
        };
        time_t t;

        (void) state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(httpdate_parse(bad[i], T_1994, &t), -EINVAL);
        assert_int_equal(httpdate_parse(NULL, T_1994, &t), -EINVAL);
        /* leap day that exists */
        assert_int_equal(httpdate_parse("Thu, 29 Feb 2024 00:00:00 GMT", T_1994, &t), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_duration_good),
                cmocka_unit_test(test_duration_bad),
                cmocka_unit_test(test_duration_overflow),
                cmocka_unit_test(test_duration_format),
                cmocka_unit_test(test_iso8601_parse_good),
                cmocka_unit_test(test_iso8601_parse_bad),
                cmocka_unit_test(test_iso8601_format),
                cmocka_unit_test(test_http_date_formats),
                cmocka_unit_test(test_http_date_two_digit_year),
                cmocka_unit_test(test_http_date_garbage),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
