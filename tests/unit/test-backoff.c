/* Unit tests for backoff.c: Retry-After in seconds and as an HTTP-date,
 * garbage, caps; backoff growth, jitter bounds, the PRNG. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <time.h>

#include "backoff.h"

/* Sun, 06 Nov 1994 08:49:37 GMT */
#define T_1994 ((time_t) 784111777)

static void test_retry_after_seconds(void **state) {
        uint64_t s;

        (void) state;
        assert_int_equal(backoff_parse_retry_after("2", 0, 3600, &s), 0);
        assert_int_equal(s, 2);
        assert_int_equal(backoff_parse_retry_after("0", 0, 3600, &s), 0);
        assert_int_equal(s, 0);
        assert_int_equal(backoff_parse_retry_after(" 120 \r\n", 0, 3600, &s), 0);
        assert_int_equal(s, 120);
        /* huge values are capped, not overflowed */
        assert_int_equal(backoff_parse_retry_after("99999999999999999999999999", 0, 3600, &s), 0);
        assert_int_equal(s, 3600);
        assert_int_equal(backoff_parse_retry_after("7200", 0, 3600, &s), 0);
        assert_int_equal(s, 3600);
        /* a value past 64 bits is capped even when the cap is too (tests/fuzz) */
        assert_int_equal(backoff_parse_retry_after("33333333333333333333333", 0, UINT64_C(3689348814741910323), &s), 0);
        assert_true(s == UINT64_C(3689348814741910323));
}

static void test_retry_after_garbage(void **state) {
        static const char *const bad[] = { "", "   ", "-1", "-30", "1.5", "2s", "0x10", "soon", "+5", "1 2" };
        uint64_t s = 42;

        (void) state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(backoff_parse_retry_after(bad[i], 0, 3600, &s), -EINVAL);
        assert_int_equal(backoff_parse_retry_after(NULL, 0, 3600, &s), -EINVAL);
        assert_int_equal(s, 42); /* untouched on failure */
}

static void test_retry_after_date(void **state) {
        uint64_t s;

        (void) state;
        assert_int_equal(backoff_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", T_1994 - 30, 3600, &s), 0);
        assert_int_equal(s, 30);
        /* in the past: retry now */
        assert_int_equal(backoff_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", T_1994 + 30, 3600, &s), 0);
        assert_int_equal(s, 0);
        /* far future: capped */
        assert_int_equal(backoff_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", T_1994 - 86400, 3600, &s), 0);
        assert_int_equal(s, 3600);
        assert_int_equal(backoff_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", T_1994 - 5, 3600, &s), 0);
        assert_int_equal(s, 5);
        assert_int_equal(backoff_parse_retry_after("Sun Nov  6 08:49:37 1994", T_1994 - 5, 3600, &s), 0);
        assert_int_equal(s, 5);
}

static void test_backoff_growth(void **state) {
        (void) state;
        /* random 0 gives the lower bound d/2; UINT32_MAX almost d */
        assert_true(backoff_delay(0, 1, 60, 0) == 0.5);
        assert_true(backoff_delay(1, 1, 60, 0) == 1.0);
        assert_true(backoff_delay(2, 1, 60, 0) == 2.0);
        assert_true(backoff_delay(3, 1, 60, 0) == 4.0);
        assert_true(backoff_delay(5, 1, 60, 0) == 16.0);
        /* capped: 2^6 = 64 > 60 */
        assert_true(backoff_delay(6, 1, 60, 0) == 30.0);
        assert_true(backoff_delay(1000, 1, 60, 0) == 30.0);
        assert_true(backoff_delay(UINT32_MAX, 1, 60, UINT32_MAX) <= 60.0);
        assert_true(backoff_delay(3, 1, 60, UINT32_MAX) > 7.99 && backoff_delay(3, 1, 60, UINT32_MAX) < 8.0);
        /* nonsense in, zero out */
        assert_true(backoff_delay(3, 0, 60, 7) == 0);
        assert_true(backoff_delay(3, 1, 0, 7) == 0);
        assert_true(backoff_delay(3, -1, 60, 7) == 0);
        /* Never above the cap, never NaN, even for odd caps (tests/fuzz):
         * a subnormal one, where halving rounds, and an infinite one. */
        assert_true(backoff_delay(592128, 2.03988e-317, 2.122e-314, UINT32_MAX) <= 2.122e-314);
        assert_false(isnan(backoff_delay(5000, 1, INFINITY, 0)));
}

static void test_jitter_bounds(void **state) {
        uint64_t rng = 12345;
        double lo = 1e9, hi = 0;

        (void) state;
        for (unsigned attempt = 0; attempt < 12; attempt++) {
                double d = attempt < 6 ? (double) (1u << attempt) : 60.0;
                if (d > 60)
                        d = 60;
                for (int i = 0; i < 2000; i++) {
                        double v = backoff_delay(attempt, 1, 60, backoff_random(&rng));
                        assert_true(v >= d / 2 && v <= d);
                        assert_true(v <= 60);
                        if (attempt == 11) {
                                lo = v < lo ? v : lo;
                                hi = v > hi ? v : hi;
                        }
                }
        }
        /* the jitter actually spreads over the range */
        assert_true(lo < 31 && hi > 59);
}

static void test_random_seeded(void **state) {
        uint64_t a = 7, b = 7, c = 8;
        uint32_t va[8], vb[8];
        int differs = 0;

        (void) state;
        for (int i = 0; i < 8; i++) {
                va[i] = backoff_random(&a);
                vb[i] = backoff_random(&b);
                differs += va[i] != backoff_random(&c);
        }
        assert_memory_equal(va, vb, sizeof(va));
        assert_true(differs > 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_retry_after_seconds),
                cmocka_unit_test(test_retry_after_garbage),
                cmocka_unit_test(test_retry_after_date),
                cmocka_unit_test(test_backoff_growth),
                cmocka_unit_test(test_jitter_bounds),
                cmocka_unit_test(test_random_seeded),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
