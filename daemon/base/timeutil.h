/* timeutil.h: durations ("90s", "15m", "1h", "2d"), the ISO-8601 UTC
 * timestamps Dataverse speaks ("2026-11-25T09:59:58Z") and the HTTP-dates of
 * Retry-After and Date headers. Pure functions: the caller passes "now". */
#pragma once

#include <stdint.h>
#include <time.h>

#define ISO8601_BUFSZ sizeof("2026-11-25T09:59:58Z")

/* "30s", "15m", "1h", "2d", "1h30m", or plain seconds "90". 0 on success,
 * -EINVAL for bad syntax or unit, -ERANGE when it overflows. */
int duration_parse(const char *s, uint64_t *ret_sec);
/* Shortest exact form: 90 -> "90s", 3600 -> "1h", 5400 -> "90m". */
char *duration_format(uint64_t sec, char *buf, size_t size);

/* Accepts "YYYY-MM-DDTHH:MM:SS[.fff]Z" and "+HH:MM"/"-HH:MM" offsets, for
 * instants from ISO8601_MIN to ISO8601_MAX (what iso8601_format() writes). */
int iso8601_parse(const char *s, time_t *ret);
#define ISO8601_MIN ((time_t) INT64_C(-62167219200))   /* 0000-01-01T00:00:00Z */
#define ISO8601_MAX ((time_t) INT64_C(253402300799))   /* 9999-12-31T23:59:59Z */
/* Always "YYYY-MM-DDTHH:MM:SSZ"; buf must hold ISO8601_BUFSZ bytes. */
char *iso8601_format(time_t t, char buf[static ISO8601_BUFSZ]);

/* Parse an HTTP-date in any of the three RFC 7231 section 7.1.1.1 forms:
 *   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
 *   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"
 *   asctime      "Sun Nov  6 08:49:37 1994"
 * 0 and *ret on success, -EINVAL otherwise. Two-digit years follow RFC 7231:
 * more than 50 years in the future means the previous century, seen from now. */
int httpdate_parse(const char *s, time_t now, time_t *ret);
