/* fuzz-detect.c: the text rules of detect.h (does a tracelog text carry
 * -2147220956, is it about email or appointments/contacts/tasks) on
 * arbitrary text. Invariants, from detect.h's wording rather than its code:
 *  - carrying the code needs "-2147220956", "0x80040224" or
 *    "UnknownIncomingEmailIntegrationError" in the text (any case);
 *  - a text with " -2147220956 " or " 0x80040224 " added carries it;
 *  - ASCII case does not matter, to either rule;
 *  - a quoted name ("...", “...”, «...») put in front says nothing: the
 *    kind stays the same (a mailbox named "Tasks" is no ACT alert);
 *  - "receiving email" in front makes any text an email alert. */
#include <string.h>
#include <strings.h>

#include "detect.h"
#include "fuzz.h"

static char *ascii_upper(const char *s) {
        char *u = strdup(s);

        if (!u)
                abort();
        for (char *p = u; *p; p++)
                if (*p >= 'a' && *p <= 'z')
                        *p = (char) (*p - 'a' + 'A');
        return u;
}

static char *concat(const char *a, const char *b, const char *c) {
        char *s;

        if (asprintf(&s, "%s%s%s", a, b, c) < 0)
                abort();
        return s;
}

/* The name without anything that could open or close a quote. */
static char *quotable(const char *s) {
        char *q = strdup(s), *o = q;

        if (!q)
                abort();
        for (const char *p = s; *p; p++)
                if (*p != '"' && (unsigned char) *p != 0xe2 && (unsigned char) *p != 0xc2)
                        *o++ = *p;
        *o = '\0';
        return q;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nul = memchr(data, '\0', size);
        char *text = fuzz_strndup(data, nul ? (size_t) (nul - data) : size);
        /* after a NUL: a name to put in quotes in front (else the text itself) */
        char *raw = nul ? fuzz_strndup(nul + 1, size - (size_t) (nul + 1 - data)) : strdup(text);
        char *name = quotable(raw), *upper = ascii_upper(text), *s;
        bool carries = detect_text_carries_code(text);
        enum alert_kind kind = detect_alert_kind(text);

        free(raw);
        CHECK(!carries || strcasestr(text, "-2147220956") || strcasestr(text, "0x80040224") ||
                      strcasestr(text, "UnknownIncomingEmailIntegrationError"),
              "carries the code without naming it: %s", text);
        CHECK(detect_text_carries_code(upper) == carries, "case changes carrying: %s", text);
        CHECK(detect_alert_kind(upper) == kind, "case changes the kind: %s", text);

        s = concat(text, " -2147220956 ", "");
        CHECK(detect_text_carries_code(s), "appended code not seen: %s", s);
        free(s);
        s = concat(" 0x80040224 ", text, "");
        CHECK(detect_text_carries_code(s), "prepended code not seen: %s", s);
        free(s);

        {
                static const char *const quotes[][2] = {
                        { "\"", "\" " },
                        { "\xe2\x80\x9c", "\xe2\x80\x9d " },
                        { "\xc2\xab", "\xc2\xbb " },
                };
                for (size_t i = 0; i < ELEMENTSOF(quotes); i++) {
                        char *quoted = concat(quotes[i][0], name, quotes[i][1]);

                        s = concat(quoted, text, "");
                        CHECK(detect_alert_kind(s) == kind, "a quoted name in front changes the kind: %s", s);
                        free(s);
                        free(quoted);
                }
        }
        s = concat("An error occurred while receiving email. ", text, "");
        CHECK(detect_alert_kind(s) == ALERT_KIND_EMAIL, "not about email: %s", s);
        free(s);

        free(upper);
        free(name);
        free(text);
        return 0;
}
