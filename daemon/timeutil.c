/* timeutil.c: parsing and formatting of durations and UTC timestamps.
 * No clock reads here: callers pass times in. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "timeutil.h"

static int unit_seconds(char u, uint64_t *ret) {
        switch (u) {
        case 's': *ret = 1; return 0;
        case 'm': *ret = 60; return 0;
        case 'h': *ret = 3600; return 0;
        case 'd': *ret = 86400; return 0;
        }
        return -EINVAL;
}

int duration_parse(const char *s, uint64_t *ret_sec) {
        uint64_t total = 0;
        bool groups = false;    /* a number with its unit came before */

        if (!s || !*s)
                return -EINVAL;
        while (*s) {
                uint64_t n = 0, mult = 1;

                if (!isdigit((unsigned char) *s))
                        return -EINVAL;
                while (isdigit((unsigned char) *s)) {
                        uint64_t digit = (uint64_t) (*s++ - '0');

                        if (n > (UINT64_MAX - digit) / 10)
                                return -ERANGE;
                        n = n * 10 + digit;
                }
                if (*s) {
                        if (unit_seconds(*s, &mult) < 0)
                                return -EINVAL;
                        s++;
                } else if (groups)
                        return -EINVAL; /* "1h30" (and "0h30") is ambiguous */
                if (n > UINT64_MAX / mult)
                        return -ERANGE;
                if (total > UINT64_MAX - n * mult)
                        return -ERANGE;
                total += n * mult;
                groups = true;
        }
        *ret_sec = total;
        return 0;
}

char *duration_format(uint64_t sec, char *buf, size_t size) {
        if (sec != 0 && sec % 86400 == 0)
                snprintf(buf, size, "%llud", (unsigned long long) (sec / 86400));
        else if (sec != 0 && sec % 3600 == 0)
                snprintf(buf, size, "%lluh", (unsigned long long) (sec / 3600));
        else if (sec != 0 && sec % 60 == 0)
                snprintf(buf, size, "%llum", (unsigned long long) (sec / 60));
        else
                snprintf(buf, size, "%llus", (unsigned long long) sec);
        return buf;
}

static int digits(const char **p, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (!isdigit((unsigned char) (*p)[i]))
                        return -EINVAL;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

static int expect(const char **p, char c) {
        if (**p != c)
                return -EINVAL;
        (*p)++;
        return 0;
}

int iso8601_parse(const char *s, time_t *ret) {
        static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        struct tm tm = {};
        int y, mo, d, h, mi, sec, off = 0;
        const char *p = s;
        time_t t;

        if (!s)
                return -EINVAL;
        if (digits(&p, 4, &y) < 0 || expect(&p, '-') < 0 || digits(&p, 2, &mo) < 0 ||
            expect(&p, '-') < 0 || digits(&p, 2, &d) < 0 || (*p != 'T' && *p != 't'))
                return -EINVAL;
        p++;
        if (digits(&p, 2, &h) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &mi) < 0 ||
            expect(&p, ':') < 0 || digits(&p, 2, &sec) < 0)
                return -EINVAL;
        if (*p == '.') { /* fractions: Dataverse never needs them, drop */
                p++;
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                while (isdigit((unsigned char) *p))
                        p++;
        }
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                int sign = *p == '-' ? -1 : 1, oh, om;
                p++;
                if (digits(&p, 2, &oh) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &om) < 0 ||
                    oh > 23 || om > 59)
                        return -EINVAL;
                off = sign * (oh * 3600 + om * 60);
        } else
                return -EINVAL;
        if (*p)
                return -EINVAL;
        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
                return -EINVAL;
        if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                return -EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        t = timegm(&tm) - off;
        /* An offset (or a leap second) can carry 9999-12-31 into the year
         * 10000, or 0000-01-01 back into -1: iso8601_format() could not write
         * those back, so a state file would turn them into 1970. */
        if (t < ISO8601_MIN || t > ISO8601_MAX)
                return -EINVAL;
        *ret = t;
        return 0;
}

char *iso8601_format(time_t t, char buf[static ISO8601_BUFSZ]) {
        char tmp[64];
        struct tm tm;
        /* tm_year + 1900 overflows for the largest years gmtime_r() accepts */
        if (!gmtime_r(&t, &tm) || tm.tm_year > 9999 - 1900 || tm.tm_year < -1900) {
                strcpy(buf, "1970-01-01T00:00:00Z");
                return buf;
        }
        /* Not strftime's %Y: glibc writes the years before 1000 with fewer
         * than four digits, which iso8601_parse() rightly refuses. */
        snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        memcpy(buf, tmp, ISO8601_BUFSZ - 1); /* gmtime_r() keeps each field to its digits */
        buf[ISO8601_BUFSZ - 1] = '\0';
        return buf;
}
