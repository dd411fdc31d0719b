/* backoff.c: owns retry timing: Retry-After, capped exponential backoff with jitter, its PRNG.
 * Must not read the clock, do I/O, or know who is retrying what. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "backoff.h"
#include "timeutil.h"

int backoff_parse_retry_after(const char *value, time_t now, uint64_t max_sec, uint64_t *ret_sec) {
        const char *p = value, *end;
        uint64_t sec = 0;
        time_t when;

        if (!value)
                return -EINVAL;
        while (*p == ' ' || *p == '\t')
                p++;
        end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
                end--;
        if (end == p)
                return -EINVAL;

        if (isdigit((unsigned char) *p)) {
                /* delta-seconds = 1*DIGIT; saturate instead of overflowing */
                for (; p < end; p++) {
                        if (!isdigit((unsigned char) *p))
                                return -EINVAL;
                        if (sec >= max_sec)
                                continue;
                        /* past 64 bits it is more than any cap */
                        sec = sec <= (UINT64_MAX - 9) / 10 ? sec * 10 + (uint64_t) (*p - '0') : max_sec;
                }
                *ret_sec = sec < max_sec ? sec : max_sec;
                return 0;
        }

        {
                char buf[64];
                size_t n = (size_t) (end - p);

                if (n >= sizeof(buf))
                        return -EINVAL;
                memcpy(buf, p, n);
                buf[n] = '\0';
                if (httpdate_parse(buf, now, &when) < 0)
                        return -EINVAL;
        }
        if (when <= now)
                sec = 0;
        else
                sec = (uint64_t) (when - now);
        *ret_sec = sec < max_sec ? sec : max_sec;
        return 0;
}

double backoff_delay(unsigned attempt, double base_sec, double max_sec, uint32_t random) {
        double d, j;

        if (!(base_sec > 0) || !(max_sec > 0))
                return 0;
        /* 2^attempt overflows doubles only near 1024; stop doubling once past the cap */
        d = base_sec;
        for (unsigned i = 0; i < attempt && d < max_sec; i++)
                d *= 2;
        if (d > max_sec)
                d = max_sec;
        /* "equal jitter": half fixed, half random, so retries never bunch at 0.
         * Rounding can push the sum past d for subnormal d, and an infinite
         * cap makes it inf * 0 = NaN: d is the bound then. */
        j = d / 2 + (d / 2) * ((double) random / 4294967296.0);
        return j <= d ? j : d;
}

uint32_t backoff_random(uint64_t *state) {
        uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));

        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return (uint32_t) ((z ^ (z >> 31)) >> 32);
}
