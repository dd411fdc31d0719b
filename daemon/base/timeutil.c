/* timeutil.c: owns durations, ISO 8601 timestamps and HTTP-dates, parsed and formatted.
 * Must not read the clock: callers pass times in. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

/* "HH:MM:SS" */
static int clock_time(const char **p, int *h, int *mi, int *sec) {
        if (digits(p, 2, h) < 0 || expect(p, ':') < 0 || digits(p, 2, mi) < 0 || expect(p, ':') < 0 ||
            digits(p, 2, sec) < 0)
                return -EINVAL;
        return 0;
}

/* The instant of a UTC calendar date and time (month 1..12), refusing
 * the dates and times that do not exist (a leap second is let through). */
static int utc_make(int y, int mo, int d, int h, int mi, int sec, time_t *ret) {
        static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        struct tm tm = {};

        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 ||
            mi > 59 || sec > 60)
                return -EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        *ret = timegm(&tm);
        return 0;
}

int iso8601_parse(const char *s, time_t *ret) {
        int y, mo, d, h, mi, sec, off = 0;
        const char *p = s;
        time_t t;

        if (!s)
                return -EINVAL;
        if (digits(&p, 4, &y) < 0 || expect(&p, '-') < 0 || digits(&p, 2, &mo) < 0 ||
            expect(&p, '-') < 0 || digits(&p, 2, &d) < 0 || (*p != 'T' && *p != 't'))
                return -EINVAL;
        p++;
        if (clock_time(&p, &h, &mi, &sec) < 0)
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
        if (utc_make(y, mo, d, h, mi, sec, &t) < 0)
                return -EINVAL;
        t -= off;
        /* An offset (or a leap second) can carry 9999-12-31 into the year
         * 10000, or 0000-01-01 back into -1: iso8601_format() could not write
         * those back, so a state file would turn them into 1970. */
        if (t < ISO8601_MIN || t > ISO8601_MAX)
                return -EINVAL;
        *ret = t;
        return 0;
}

static void put_digits(char *out, int v, int width) {
        for (int i = width - 1; i >= 0; i--) {
                out[i] = (char) ('0' + v % 10);
                v /= 10;
        }
}

/* Proleptic Gregorian date of a day number since 1970-01-01 (H. Hinnant's
 * civil_from_days): gmtime_r() takes the time zone lock on every call. */
static void civil_from_days(int64_t z, int64_t *ret_y, int *ret_m, int *ret_d) {
        int64_t era, y;
        unsigned doe, yoe, doy, mp;

        z += 719468;
        era = (z >= 0 ? z : z - 146096) / 146097;
        doe = (unsigned) (z - era * 146097);
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        y = (int64_t) yoe + era * 400;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        *ret_d = (int) (doy - (153 * mp + 2) / 5 + 1);
        *ret_m = (int) (mp < 10 ? mp + 3 : mp - 9);
        *ret_y = y + (*ret_m <= 2);
}

/* Days since 1970-01-01 and the second of that day, for times before 1970 too. */
static int64_t days_of(time_t t, int64_t *ret_secs) {
        int64_t days = (int64_t) t / 86400, secs = (int64_t) t % 86400;

        if (secs < 0) {
                secs += 86400;
                days--;
        }
        if (ret_secs)
                *ret_secs = secs;
        return days;
}

char *iso8601_format(time_t t, char buf[static ISO8601_BUFSZ]) {
        int64_t secs, year;
        int month, day;

        civil_from_days(days_of(t, &secs), &year, &month, &day);
        if (year > 9999 || year < 0) {
                strcpy(buf, "1970-01-01T00:00:00Z");
                return buf;
        }
        /* By hand: strftime() is locale-aware and slow, and findings carry
         * hundreds of times each. */
        put_digits(buf, (int) year, 4);
        buf[4] = '-';
        put_digits(buf + 5, month, 2);
        buf[7] = '-';
        put_digits(buf + 8, day, 2);
        buf[10] = 'T';
        put_digits(buf + 11, (int) (secs / 3600), 2);
        buf[13] = ':';
        put_digits(buf + 14, (int) (secs / 60 % 60), 2);
        buf[16] = ':';
        put_digits(buf + 17, (int) (secs % 60), 2);
        buf[19] = 'Z';
        buf[20] = '\0';
        return buf;
}

/* ---- HTTP-date ---------------------------------------------------------------- */

static const char *const month_names[12] = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};
static const char *const day_short[7] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const day_long[7] = {
        "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
};

static int word(const char **p, const char *const *words, size_t n, int *ret) {
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(words[i]);
                /* HTTP-date names are case-sensitive, but being lenient costs nothing. */
                if (strncasecmp(*p, words[i], l) == 0 && !isalpha((unsigned char) (*p)[l])) {
                        *p += l;
                        *ret = (int) i;
                        return 0;
                }
        }
        return -EINVAL;
}

static int gmt(const char **p) {
        if (strncmp(*p, "GMT", 3) != 0)
                return -EINVAL;
        *p += 3;
        return 0;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" after the day name. */
static int imf_fixdate(const char *p, time_t *ret) {
        int d, mo, y, h, mi, sec;

        if (expect(&p, ',') < 0 || expect(&p, ' ') < 0 || digits(&p, 2, &d) < 0 || expect(&p, ' ') < 0 ||
            word(&p, month_names, 12, &mo) < 0 || expect(&p, ' ') < 0 || digits(&p, 4, &y) < 0 ||
            expect(&p, ' ') < 0 || clock_time(&p, &h, &mi, &sec) < 0 || expect(&p, ' ') < 0 || gmt(&p) < 0 || *p)
                return -EINVAL;
        return utc_make(y, mo + 1, d, h, mi, sec, ret);
}

/* "Sunday, 06-Nov-94 08:49:37 GMT" after the day name. */
static int rfc850_date(const char *p, time_t now, time_t *ret) {
        int d, mo, yy, h, mi, sec, now_m, now_d;
        int64_t now_y, y;

        if (expect(&p, ',') < 0 || expect(&p, ' ') < 0 || digits(&p, 2, &d) < 0 || expect(&p, '-') < 0 ||
            word(&p, month_names, 12, &mo) < 0 || expect(&p, '-') < 0 || digits(&p, 2, &yy) < 0 ||
            expect(&p, ' ') < 0 || clock_time(&p, &h, &mi, &sec) < 0 || expect(&p, ' ') < 0 || gmt(&p) < 0 || *p)
                return -EINVAL;
        /* RFC 7231: a two-digit year more than 50 years in the future is
         * the most recent past year with those digits. */
        civil_from_days(days_of(now, NULL), &now_y, &now_m, &now_d);
        y = now_y / 100 * 100 + yy;
        if (y > now_y + 50)
                y -= 100;
        if (y < 0 || y > 9999)
                return -EINVAL;
        return utc_make((int) y, mo + 1, d, h, mi, sec, ret);
}

/* "Sun Nov  6 08:49:37 1994" after the day name. */
static int asctime_date(const char *p, time_t *ret) {
        int d, mo, y, h, mi, sec;

        if (expect(&p, ' ') < 0 || word(&p, month_names, 12, &mo) < 0 || expect(&p, ' ') < 0)
                return -EINVAL;
        if (*p == ' ') { /* day padded with a space: " 6" */
                p++;
                if (digits(&p, 1, &d) < 0)
                        return -EINVAL;
        } else if (digits(&p, 2, &d) < 0)
                return -EINVAL;
        if (expect(&p, ' ') < 0 || clock_time(&p, &h, &mi, &sec) < 0 || expect(&p, ' ') < 0 ||
            digits(&p, 4, &y) < 0 || *p)
                return -EINVAL;
        return utc_make(y, mo + 1, d, h, mi, sec, ret);
}

int httpdate_parse(const char *s, time_t now, time_t *ret) {
        const char *p = s;
        int wday;

        if (!s)
                return -EINVAL;
        /* The long names start with the short ones: try them first. */
        if (word(&p, day_long, 7, &wday) == 0)
                return rfc850_date(p, now, ret);
        if (word(&p, day_short, 7, &wday) < 0)
                return -EINVAL;
        if (*p == ',')
                return imf_fixdate(p, ret);
        return asctime_date(p, ret);
}
