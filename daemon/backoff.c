/* backoff.c: retry timing (Retry-After, HTTP-date, exponential backoff with
 * jitter). Pure: no clock, no I/O, no knowledge of who is retrying what. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "backoff.h"

static const char *const month_names[12] = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};
static const char *const day_short[7] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const day_long[7] = {
        "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
};

/* Read exactly n digits (n <= 4). */
static int read_digits(const char **p, int n, int *ret) {
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

static int read_char(const char **p, char c) {
        if (**p != c)
                return -EINVAL;
        (*p)++;
        return 0;
}

static int read_word(const char **p, const char *const *words, size_t n, int *ret) {
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

static int read_time(const char **p, int *h, int *m, int *s) {
        if (read_digits(p, 2, h) < 0 || read_char(p, ':') < 0 || read_digits(p, 2, m) < 0 ||
            read_char(p, ':') < 0 || read_digits(p, 2, s) < 0)
                return -EINVAL;
        return 0;
}

static int read_gmt(const char **p) {
        if (strncmp(*p, "GMT", 3) != 0)
                return -EINVAL;
        *p += 3;
        return 0;
}

static int make_time(int year, int mon, int mday, int h, int m, int s, time_t *ret) {
        static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        struct tm tm = {};
        bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

        if (mday < 1 || mday > mdays[mon] || (mon == 1 && mday == 29 && !leap) || h > 23 ||
            m > 59 || s > 60)
                return -EINVAL;
        tm.tm_year = year - 1900;
        tm.tm_mon = mon;
        tm.tm_mday = mday;
        tm.tm_hour = h;
        tm.tm_min = m;
        tm.tm_sec = s;
        *ret = timegm(&tm);
        return 0;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" after the day name. */
static int parse_imf_fixdate(const char *p, time_t *ret) {
        int mday, mon, year, h, m, s;

        if (read_char(&p, ',') < 0 || read_char(&p, ' ') < 0 || read_digits(&p, 2, &mday) < 0 ||
            read_char(&p, ' ') < 0 || read_word(&p, month_names, 12, &mon) < 0 ||
            read_char(&p, ' ') < 0 || read_digits(&p, 4, &year) < 0 || read_char(&p, ' ') < 0 ||
            read_time(&p, &h, &m, &s) < 0 || read_char(&p, ' ') < 0 || read_gmt(&p) < 0 || *p)
                return -EINVAL;
        return make_time(year, mon, mday, h, m, s, ret);
}

/* "Sunday, 06-Nov-94 08:49:37 GMT" after the day name. */
static int parse_rfc850(const char *p, time_t now, time_t *ret) {
        int mday, mon, yy, h, m, s, year;
        struct tm now_tm;

        if (read_char(&p, ',') < 0 || read_char(&p, ' ') < 0 || read_digits(&p, 2, &mday) < 0 ||
            read_char(&p, '-') < 0 || read_word(&p, month_names, 12, &mon) < 0 ||
            read_char(&p, '-') < 0 || read_digits(&p, 2, &yy) < 0 || read_char(&p, ' ') < 0 ||
            read_time(&p, &h, &m, &s) < 0 || read_char(&p, ' ') < 0 || read_gmt(&p) < 0 || *p)
                return -EINVAL;
        /* RFC 7231: a two-digit year more than 50 years in the future is
         * the most recent past year with those digits. */
        if (!gmtime_r(&now, &now_tm))
                return -EINVAL;
        year = (now_tm.tm_year + 1900) / 100 * 100 + yy;
        if (year > now_tm.tm_year + 1900 + 50)
                year -= 100;
        return make_time(year, mon, mday, h, m, s, ret);
}

/* "Sun Nov  6 08:49:37 1994" after the day name. */
static int parse_asctime(const char *p, time_t *ret) {
        int mday, mon, year, h, m, s;

        if (read_char(&p, ' ') < 0 || read_word(&p, month_names, 12, &mon) < 0 ||
            read_char(&p, ' ') < 0)
                return -EINVAL;
        if (*p == ' ') { /* day padded with a space: " 6" */
                p++;
                if (read_digits(&p, 1, &mday) < 0)
                        return -EINVAL;
        } else if (read_digits(&p, 2, &mday) < 0)
                return -EINVAL;
        if (read_char(&p, ' ') < 0 || read_time(&p, &h, &m, &s) < 0 || read_char(&p, ' ') < 0 ||
            read_digits(&p, 4, &year) < 0 || *p)
                return -EINVAL;
        return make_time(year, mon, mday, h, m, s, ret);
}

int backoff_parse_http_date(const char *s, time_t now, time_t *ret) {
        const char *p = s;
        int wday;

        if (!s)
                return -EINVAL;
        /* The long names start with the short ones: try them first. */
        if (read_word(&p, day_long, 7, &wday) == 0)
                return parse_rfc850(p, now, ret);
        if (read_word(&p, day_short, 7, &wday) < 0)
                return -EINVAL;
        if (*p == ',')
                return parse_imf_fixdate(p, ret);
        return parse_asctime(p, ret);
}

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
                if (backoff_parse_http_date(buf, now, &when) < 0)
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
