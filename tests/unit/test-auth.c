/* Unit tests for auth.c's expiry arithmetic: when to renew, when a token
 * is no longer usable, what a clock going backwards does; and that
 * auth_new() refuses incomplete environments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>

#include "auth.h"
#include "connection.h"

static void test_renew_point(void **state) {
        (void) state;
        /* an hour-long token: renew 5 minutes before its end, expire 30 s early */
        assert_true(auth_renew_at(1000, 3600) == 1000 + 3300);
        assert_true(auth_expires_at(1000, 3600) == 1000 + 3570);
        /* Entra ID's 60-90 minute tokens */
        assert_true(auth_renew_at(0, 5399) == 5099);
        /* short lifetimes: renew at 80 %; under 5 minutes, expire at 90 % */
        assert_true(auth_renew_at(0, 600) == 480);
        assert_true(auth_expires_at(0, 600) == 570);
        assert_true(auth_expires_at(0, 200) == 180);
        assert_true(auth_renew_at(0, 10) == 8);
        assert_true(auth_expires_at(0, 10) == 9);
        /* renewal always comes before expiry */
        for (double l = 1; l < 100000; l *= 1.7)
                assert_true(auth_renew_at(50, l) < auth_expires_at(50, l));
}

static void test_phases(void **state) {
        (void) state;
        assert_int_equal(auth_token_phase(1000, 3600, 1000), AUTH_TOKEN_FRESH);
        assert_int_equal(auth_token_phase(1000, 3600, 4299.9), AUTH_TOKEN_FRESH);
        assert_int_equal(auth_token_phase(1000, 3600, 4300), AUTH_TOKEN_RENEW);
        assert_int_equal(auth_token_phase(1000, 3600, 4569.9), AUTH_TOKEN_RENEW);
        assert_int_equal(auth_token_phase(1000, 3600, 4570), AUTH_TOKEN_EXPIRED);
        assert_int_equal(auth_token_phase(1000, 3600, 1e12), AUTH_TOKEN_EXPIRED);
}

static void test_clock_backwards(void **state) {
        (void) state;
        /* "now" before the request was sent: we cannot know how old the token
         * is, so it is treated as expired and fetched again */
        assert_int_equal(auth_token_phase(1000, 3600, 999.999), AUTH_TOKEN_EXPIRED);
        assert_int_equal(auth_token_phase(1000, 3600, -5), AUTH_TOKEN_EXPIRED);
}

static void test_bad_lifetime(void **state) {
        (void) state;
        assert_int_equal(auth_token_phase(1000, 0, 1000), AUTH_TOKEN_EXPIRED);
        assert_int_equal(auth_token_phase(1000, -60, 1000), AUTH_TOKEN_EXPIRED);
}

static void test_new_refuses_incomplete(void **state) {
        struct dv_connection env = {
                .name = "prod",
                .url = "https://contoso.crm.dynamics.com",
                .client_id = "11111111-1111-1111-1111-111111111111",
                .client_secret = "s3cret",
        };
        struct auth *a = NULL;

        (void) state;
        /* neither tenant nor token_url: nowhere to ask */
        assert_int_equal(auth_new((struct http *) 1, &env, NULL, &a), -EINVAL);
        env.tenant = "contoso.onmicrosoft.com";
        env.client_secret = NULL;
        assert_int_equal(auth_new((struct http *) 1, &env, NULL, &a), -EINVAL);
        assert_null(a);
}

static void test_failure_delay_honours_retry_after(void **state) {
        (void) state;
        /* 429 with Retry-After in seconds or as an HTTP-date: at least that long */
        assert_true(auth_failure_delay(0.7, 429, "20", 1000) == 20);
        assert_true(auth_failure_delay(0.7, 503, "5", 1000) == 5);
        assert_true(auth_failure_delay(0.7, 429, "Thu, 01 Jan 1970 00:16:50 GMT", 1000) == 10);
        /* shorter than our own backoff, absent, garbage, or another status: the backoff */
        assert_true(auth_failure_delay(3.5, 429, "1", 1000) == 3.5);
        assert_true(auth_failure_delay(3.5, 429, NULL, 1000) == 3.5);
        assert_true(auth_failure_delay(3.5, 429, "soon", 1000) == 3.5);
        assert_true(auth_failure_delay(3.5, 500, "60", 1000) == 3.5);
        assert_true(auth_failure_delay(3.5, 401, "60", 1000) == 3.5);
        /* capped: a server cannot park us for a day */
        assert_true(auth_failure_delay(1, 429, "86400", 1000) == AUTH_MAX_RETRY_AFTER_SEC);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_renew_point),
                cmocka_unit_test(test_phases),
                cmocka_unit_test(test_clock_backwards),
                cmocka_unit_test(test_bad_lifetime),
                cmocka_unit_test(test_new_refuses_incomplete),
                cmocka_unit_test(test_failure_delay_honours_retry_after),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
