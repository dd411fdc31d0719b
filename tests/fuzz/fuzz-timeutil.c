/* fuzz-timeutil.c: duration_parse() and iso8601_parse()/iso8601_format()
 * (timeutil.h) on arbitrary text. Invariants: durations agree with an
 * independent reference parser and survive duration_format(); every time
 * that parses is in ISO8601_MIN..ISO8601_MAX and formats to 20 characters
 * that parse back to the same second;
 * a canonical "YYYY-MM-DDTHH:MM:SSZ" formats back to itself. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "timeutil.h"

/* docs/design.md's durations, written from the grammar rather than from
 * timeutil.c: one or more <digits><unit>, or a single unit-less number. */
static int reference_duration(const char *s, uint64_t *ret) {
        unsigned __int128 total = 0;
        bool groups = false;

        if (!*s)
                return -EINVAL;
        while (*s) {
                unsigned __int128 n = 0, mult;

                if (!isdigit((unsigned char) *s))
                        return -EINVAL;
                for (; isdigit((unsigned char) *s); s++) {
                        n = n * 10 + (unsigned) (*s - '0');
                        if (n > UINT64_MAX)
                                return -ERANGE;
                }
                switch (*s) {
                case '\0':
                        if (groups)
                                return -EINVAL;
                        mult = 1;
                        break;
                case 's': mult = 1; s++; break;
                case 'm': mult = 60; s++; break;
                case 'h': mult = 3600; s++; break;
                case 'd': mult = 86400; s++; break;
                default:
                        return -EINVAL;
                }
                total += n * mult;
                if (total > UINT64_MAX)
                        return -ERANGE;
                groups = true;
        }
        *ret = (uint64_t) total;
        return 0;
}

static void check_duration(const char *s) {
        uint64_t sec = 0, ref = 0, again = 0;
        char buf[32];
        int r = duration_parse(s, &sec), rr = reference_duration(s, &ref);

        CHECK(r == 0 || r == -EINVAL || r == -ERANGE, "duration_parse(\"%s\") = %d", s, r);
        CHECK((r == 0) == (rr == 0), "duration_parse(\"%s\") = %d, the reference says %d", s, r, rr);
        if (r < 0)
                return;
        CHECK(sec == ref, "duration_parse(\"%s\") = %llu, the reference says %llu", s,
              (unsigned long long) sec, (unsigned long long) ref);
        duration_format(sec, buf, sizeof(buf));
        CHECK(duration_parse(buf, &again) == 0 && again == sec, "duration_format(%llu) = \"%s\" parses as %llu",
              (unsigned long long) sec, buf, (unsigned long long) again);
}

/* The year of t, or false when gmtime_r() cannot say. */
static bool year_of(time_t t, long long *ret) {
        struct tm tm;

        if (!gmtime_r(&t, &tm))
                return false;
        *ret = (long long) tm.tm_year + 1900;
        return true;
}

/* What iso8601_format() promises for any time: 20 characters; the time
 * itself when its year has four digits. */
static void check_format(time_t t) {
        char buf[ISO8601_BUFSZ];
        long long year;
        time_t back = 0;
        int r;

        memset(buf, 'X', sizeof(buf));
        CHECK(iso8601_format(t, buf) == buf, "iso8601_format() returns its buffer");
        CHECK(strlen(buf) == ISO8601_BUFSZ - 1, "iso8601_format(%lld) = \"%s\": not 20 characters", (long long) t,
              buf);
        r = iso8601_parse(buf, &back);
        CHECK(r == 0, "iso8601_format(%lld) = \"%s\" does not parse (%d)", (long long) t, buf, r);
        if (year_of(t, &year) && year >= 0 && year <= 9999)
                CHECK(back == t, "iso8601_format(%lld) = \"%s\" parses as %lld", (long long) t, buf,
                      (long long) back);
}

static bool canonical(const char *s) {
        static const char pattern[] = "dddd-dd-ddTdd:dd:ddZ";

        if (strlen(s) != sizeof(pattern) - 1)
                return false;
        for (size_t i = 0; pattern[i]; i++)
                if (pattern[i] == 'd' ? !isdigit((unsigned char) s[i]) : s[i] != pattern[i])
                        return false;
        return !(s[17] == '6' && s[18] == '0'); /* a leap second is the next minute's 00 */
}

static void check_iso8601(const char *s) {
        char buf[ISO8601_BUFSZ];
        time_t t = 0;
        int r = iso8601_parse(s, &t);

        CHECK(r == 0 || r == -EINVAL, "iso8601_parse(\"%s\") = %d", s, r);
        if (r < 0)
                return;
        CHECK(t >= ISO8601_MIN && t <= ISO8601_MAX, "iso8601_parse(\"%s\") = %lld: iso8601_format() cannot write it",
              s, (long long) t);
        check_format(t);
        if (canonical(s))
                CHECK(strcmp(iso8601_format(t, buf), s) == 0, "iso8601_parse(\"%s\") formats as \"%s\"", s,
                      buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = fuzz_strndup(data, size);
        time_t t;

        check_duration(s);
        check_iso8601(s);
        /* The same bytes as a time_t, whatever it is. */
        if (size >= sizeof(t)) {
                memcpy(&t, data, sizeof(t));
                check_format(t);
        }
        free(s);
        return 0;
}
