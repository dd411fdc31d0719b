/* strutil.h: making untrusted text (names, messages polled from Dataverse)
 * safe where the outputs hand it on: valid UTF-8 for JSON, one escaped and
 * bounded line for MESSAGE, stderr and syslog, unambiguous key=value quoting.
 * Each output boundary applies exactly one of these, once. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define STR_ELLIPSIS "\xe2\x80\xa6" /* U+2026, marks a value cut short */

/* Whether s can stand bare in a key=value pair: non-empty printable ASCII
 * without space, quotes, backslash or '='. */
bool str_is_bare_token(const char *s);

enum quote_mode {
        QUOTE_ALWAYS,           /* "text" */
        QUOTE_IF_NEEDED,        /* bare when str_is_bare_token(), else "text" */
};

/* Write s to f as part of one line of text: ill-formed UTF-8 replaced by
 * U+FFFD; '"' and '\' escaped; \n \r \t and other C0 controls, DEL, C1
 * controls and U+2028/U+2029 escaped (\n, \xHH, \u0085); so the result never
 * breaks a line and a quoted value always ends at the first unescaped '"'.
 * At most max_out bytes of escaped text are written between the quotes; a
 * value cut short ends with STR_ELLIPSIS (inside the quotes). NULL is
 * written as "". Returns 0, or -ENOMEM if f failed. */
int str_put_quoted(FILE *f, const char *s, size_t max_out, enum quote_mode mode);

/* The same, as a new string; NULL on ENOMEM. */
char *str_quote(const char *s, size_t max_out, enum quote_mode mode);

/* Write " key=value" to f, value quoted as needed (key is trusted). */
int str_put_pair(FILE *f, const char *key, const char *value, size_t max_out);
