/* fuzz-backoff.c: the Retry-After and HTTP-date parsers (backoff.h,
 * timeutil.h) and the backoff delay. Invariants: a Retry-After is
 * never above the cap; delta-seconds mean exactly their value (saturated);
 * an HTTP-date Retry-After means the date's distance from now; every date
 * that parses prints as an IMF-fixdate that parses to the same second;
 * delays stay within [d/2, d] of d = min(base * 2^attempt, max). */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "fuzz.h"
#include "timeutil.h"

/* Keep "now" to the years a clock can show (0000..9999): gmtime_r() of a
 * time beyond year 2^31 is a caller's bug, not an input s3mond can get. */
#define NOW_MAX INT64_C(253402300799)

static void check_http_date(const char *s, time_t now) {
        static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        char buf[64];
        struct tm tm;
        time_t t = 0, back = 0;
        int r = httpdate_parse(s, now, &t);

        CHECK(r == 0 || r == -EINVAL, "httpdate_parse(\"%s\") = %d", s, r);
        if (r < 0)
                return;
        CHECK(gmtime_r(&t, &tm), "httpdate_parse(\"%s\") = %lld: no such time", s, (long long) t);
        CHECK(tm.tm_year + 1900 >= 0 && tm.tm_year + 1900 <= 9999, "httpdate_parse(\"%s\"): year %d", s,
              tm.tm_year + 1900);
        snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        r = httpdate_parse(buf, now, &back);
        CHECK(r == 0 && back == t, "\"%s\" = %lld prints as \"%s\" = %lld (%d)", s, (long long) t, buf,
              (long long) back, r);
}

static bool all_digits(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return n > 0;
}

static void check_retry_after(const char *value, time_t now, uint64_t max) {
        const char *p = value + strspn(value, " \t");
        size_t n = strlen(p);
        uint64_t sec = UINT64_MAX;
        int r;

        while (n > 0 && strchr(" \t\r\n", p[n - 1]))
                n--;
        r = backoff_parse_retry_after(value, now, max, &sec);
        CHECK(r == 0 || r == -EINVAL, "backoff_parse_retry_after(\"%s\") = %d", value, r);
        if (r < 0) {
                CHECK(!all_digits(p, n), "backoff_parse_retry_after(\"%s\"): delta-seconds refused", value);
                return;
        }
        CHECK(sec <= max, "backoff_parse_retry_after(\"%s\", max %llu) = %llu", value, (unsigned long long) max,
              (unsigned long long) sec);
        if (all_digits(p, n)) {
                unsigned __int128 v = 0;

                for (size_t i = 0; i < n && v <= max; i++)
                        v = v * 10 + (unsigned) (p[i] - '0');
                CHECK(sec == (v < max ? (uint64_t) v : max), "backoff_parse_retry_after(\"%s\", max %llu) = %llu",
                      value, (unsigned long long) max, (unsigned long long) sec);
        } else {
                char buf[64];
                time_t when;

                CHECK(n < sizeof(buf), "backoff_parse_retry_after(\"%s\"): a date this long", value);
                memcpy(buf, p, n);
                buf[n] = '\0';
                CHECK(httpdate_parse(buf, now, &when) == 0,
                      "backoff_parse_retry_after(\"%s\") accepted what is no HTTP-date", value);
                {
                        uint64_t d = when > now ? (uint64_t) (when - now) : 0;

                        CHECK(sec == (d < max ? d : max), "backoff_parse_retry_after(\"%s\") = %llu, expected %llu",
                              value, (unsigned long long) sec, (unsigned long long) (d < max ? d : max));
                }
        }
}

static double as_double(uint64_t bits) {
        double d;

        memcpy(&d, &bits, sizeof(d));
        return d;
}

static void check_delay(unsigned attempt, double base, double max, uint32_t random) {
        double d = backoff_delay(attempt, base, max, random), full;

        if (!(base > 0) || !(max > 0)) {
                CHECK(d == 0, "backoff_delay(%u, %g, %g) = %g", attempt, base, max, d);
                return;
        }
        CHECK(!isnan(d) && d >= 0 && d <= max, "backoff_delay(%u, %g, %g, %u) = %g", attempt, base, max, random, d);
        full = ldexp(base, attempt > 4096 ? 4096 : (int) attempt);
        if (full > max)
                full = max;
        CHECK(d >= full / 2 && d <= full, "backoff_delay(%u, %g, %g, %u) = %g, outside [%g, %g]", attempt, base, max,
              random, d, full / 2, full);
}

/* The input: the value, then optionally a NUL and the numbers (from the
 * end of that tail). Without them, now is 2026-11-25T10:00:00Z and the
 * cap one hour, as for a plain-text seed. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nul = memchr(data, '\0', size);
        struct fdp d = { nul ? nul + 1 : data + size, nul ? size - (size_t) (nul + 1 - data) : 0 };
        bool numbers = d.n > 0;
        time_t now = numbers ? (time_t) (fdp_u64(&d) % (uint64_t) (NOW_MAX + 1)) : (time_t) 1795600800;
        uint64_t max = numbers ? fdp_u64(&d) : 3600;
        unsigned attempt = fdp_u32(&d);
        double base = as_double(fdp_u64(&d)), dmax = as_double(fdp_u64(&d));
        uint32_t random = fdp_u32(&d);
        char *value = fuzz_strndup(data, nul ? (size_t) (nul - data) : size);

        check_http_date(value, now);
        check_retry_after(value, now, max);
        check_delay(attempt, base, dmax, random);
        /* the realistic case: the dv client's defaults */
        check_delay(attempt % 64, 1, 60, random);
        free(value);
        return 0;
}
