/* detect.c: tracelog and mailbox rows -> -2147220956 alerts, their kind (email
 * or ACT) and finding ids. Knows nothing of workflows, evidence or HTTP. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "detect.h"

#define CODE_DECIMAL "-2147220956"
#define CODE_HEX "0x80040224"

/* ---- the code in a text -------------------------------------------------- */

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* Occurrences of needle (case-insensitive) that are whole numbers: no digit
 * (or hex digit, for hex) glued before or after. */
static bool contains_number(const char *text, const char *needle, bool hex) {
        size_t len = strlen(needle);

        for (const char *p = text; (p = strcasestr(p, needle)); p++) {
                char before = p > text ? p[-1] : ' ', after = p[len];
                if (hex ? isalnum((unsigned char) before) : is_digit(before))
                        continue;
                if (hex ? isxdigit((unsigned char) after) : is_digit(after))
                        continue;
                return true;
        }
        return false;
}

/* Some other HRESULT-looking code: "-21474..." (10 digits) or "0x8...". */
static bool contains_other_code(const char *text) {
        for (const char *p = text; *p; p++) {
                char before = p > text ? p[-1] : ' ';
                size_t n = 0;

                if (p[0] == '-' && p[1] == '2' && p[2] == '1' && p[3] == '4' && !is_digit(before)) {
                        while (is_digit(p[1 + n]))
                                n++;
                        if (n == 10 && strncmp(p, CODE_DECIMAL, 11) != 0)
                                return true;
                } else if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && p[2] == '8' &&
                           !isalnum((unsigned char) before)) {
                        while (isxdigit((unsigned char) p[2 + n]))
                                n++;
                        if (n == 8 && strncasecmp(p, CODE_HEX, 10) != 0)
                                return true;
                }
        }
        return false;
}

bool detect_text_carries_code(const char *text) {
        if (!text)
                return false;
        if (contains_number(text, CODE_DECIMAL, false) || contains_number(text, CODE_HEX, true))
                return true;
        return strcasestr(text, S3_ERROR_CODE_NAME) && !contains_other_code(text);
}

/* ---- email or ACT -------------------------------------------------------- */

/* Opening and closing quotes whose content (a mailbox or profile name) says
 * nothing about the kind of the alert: "..." “...” „...“ «...». */
static size_t quote_open(const char *p, const char **ret_close_a, const char **ret_close_b) {
        static const struct {
                const char *open, *close_a, *close_b;
        } quotes[] = {
                { "\"", "\"", "\"" },
                { "\xe2\x80\x9c", "\xe2\x80\x9d", "\xe2\x80\x9c" }, /* “ ” (and “ “) */
                { "\xe2\x80\x9e", "\xe2\x80\x9c", "\xe2\x80\x9d" }, /* „ “ */
                { "\xc2\xab", "\xc2\xbb", "\xc2\xbb" },             /* « » */
        };
        if (*p != '"' && *p != '\xe2' && *p != '\xc2')
                return 0; /* the common case, cheaply */
        for (size_t i = 0; i < sizeof(quotes) / sizeof(quotes[0]); i++)
                if (strncmp(p, quotes[i].open, strlen(quotes[i].open)) == 0) {
                        *ret_close_a = quotes[i].close_a;
                        *ret_close_b = quotes[i].close_b;
                        return strlen(quotes[i].open);
                }
        return 0;
}

static bool ascii_letter(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Lower-case ASCII words of the text, quoted parts dropped, "e-mail" glued
 * to "email"; every other byte is a separator (a space). */
static char *words_of(const char *text) {
        size_t len = strlen(text), n = 0;
        char *out = malloc(len + 1);

        if (!out)
                return NULL;
        for (const char *p = text; *p;) {
                const char *close_a, *close_b, *end_a, *end_b, *end;
                size_t open = quote_open(p, &close_a, &close_b);

                if (open > 0) {
                        end_a = strstr(p + open, close_a);
                        end_b = strstr(p + open, close_b);
                        end = !end_a ? end_b : !end_b ? end_a : end_a < end_b ? end_a : end_b;
                        if (end) {
                                p = end + (end == end_a ? strlen(close_a) : strlen(close_b));
                                out[n++] = ' ';
                                continue;
                        }
                }
                if (*p == '-' && p > text && ascii_letter(p[-1]) && ascii_letter(p[1])) {
                        p++;
                        continue;
                }
                out[n++] = ascii_letter(*p) ? (char) (*p | 0x20) : ' ';
                p++;
        }
        out[n] = '\0';
        return out;
}

static bool word_in(const char *w, size_t len, const char *const *set) {
        for (; *set; set++)
                if (**set == *w && strncmp(w, *set, len) == 0 && (*set)[len] == '\0')
                        return true;
        return false;
}

enum alert_kind detect_alert_kind(const char *text) {
        static const char *const act_words[] = { "appointment", "appointments", "contacts", "task", "tasks", NULL };
        /* "contact" is also a verb: "contact your administrator". */
        static const char *const contact_verb_objects[] = { "your", "the", "a", "an", "us", "support", "microsoft",
                                                            "technical", "customer", NULL };
        static const char *const receiving[] = { "receiving", "receive", "received", "incoming", NULL };
        static const char *const mail[] = { "email", "emails", "mail", "mails", "message", "messages", NULL };
        _cleanup_free_ char *words = NULL;
        const char *prev = NULL, *p;
        size_t prev_len = 0;
        bool act = false, contact_pending = false;

        if (!text)
                return ALERT_KIND_EMAIL;
        words = words_of(text);
        if (!words)
                return ALERT_KIND_EMAIL; /* the default kind, and never wrong by much */
        for (p = words;;) {
                size_t len;

                while (*p == ' ')
                        p++;
                if (!*p)
                        break;
                len = strcspn(p, " ");
                if (contact_pending && !word_in(p, len, contact_verb_objects))
                        act = true;
                contact_pending = len == 7 && strncmp(p, "contact", 7) == 0;
                if (word_in(p, len, act_words))
                        act = true;
                if (prev && word_in(prev, prev_len, receiving) && word_in(p, len, mail))
                        return ALERT_KIND_EMAIL;
                prev = p;
                prev_len = len;
                p += len;
        }
        if (contact_pending)
                act = true;
        return act ? ALERT_KIND_ACT : ALERT_KIND_EMAIL;
}

/* ---- rows -> alerts ------------------------------------------------------ */

static int strdup_or_null(const char *s, char **ret) {
        *ret = NULL;
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int alert_copy(const struct alert *a, struct alert *ret) {
        struct alert c = *a;

        c.id = c.mailbox_id = c.text = NULL;
        if (strdup_or_null(a->id, &c.id) < 0 || strdup_or_null(a->mailbox_id, &c.mailbox_id) < 0 ||
            strdup_or_null(a->text, &c.text) < 0) {
                alert_done(&c);
                *ret = (struct alert) {};
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

static void alerts_free_in_place(struct alert *alerts, size_t n) {
        for (size_t i = 0; alerts && i < n; i++)
                alert_done(&alerts[i]);
}

void alerts_free(struct alert *alerts, size_t n) {
        alerts_free_in_place(alerts, n);
        free(alerts);
}

static bool regards_mailbox(const struct tracelog_row *row, const struct cache *cc) {
        if (!row->regarding_id)
                return false;
        if (row->regarding_type)
                return strcasecmp(row->regarding_type, "mailbox") == 0;
        return cc && cache_mailbox_get(cc, row->regarding_id, NULL);
}

int detect_tracelog(const struct tracelog_row *row, const struct cache *cc, struct alert *ret) {
        const char *text = row->text ? row->text : row->errordetails;
        struct alert a = {
                .source = ALERT_SOURCE_TRACELOG,
                .level = row->level,
                .code = S3_ERROR_CODE,
                .created_on = row->created_on,
                .at = row->modified_on ? row->modified_on : row->created_on,
        };

        if (!row->id || row->level < TRACELOG_LEVEL_WARNING || !regards_mailbox(row, cc))
                return 0;
        if (!detect_text_carries_code(row->text) && !detect_text_carries_code(row->errordetails))
                return 0;
        a.kind = detect_alert_kind(text);
        if (strdup_or_null(row->id, &a.id) < 0 || strdup_or_null(row->regarding_id, &a.mailbox_id) < 0 ||
            strdup_or_null(text, &a.text) < 0) {
                alert_done(&a);
                return -ENOMEM;
        }
        *ret = a;
        return 1;
}

int detect_mailbox(const struct mailbox_row *row, struct alert *ret) {
        struct alert a = {
                .source = ALERT_SOURCE_MAILBOX,
                .level = TRACELOG_LEVEL_WARNING,
                .code = S3_ERROR_CODE,
                .created_on = row->last_error_on ? row->last_error_on : row->modified_on,
                .at = row->last_error_on ? row->last_error_on : row->modified_on,
        };
        int r;

        if (!row->id)
                return 0;
        if (!(row->has_error_code && row->last_error_code == S3_ERROR_CODE) &&
            !detect_text_carries_code(row->last_error))
                return 0;
        a.kind = detect_alert_kind(row->last_error);
        if (strdup_or_null(row->id, &a.id) < 0 || strdup_or_null(row->id, &a.mailbox_id) < 0)
                goto oom;
        if (row->last_error && *row->last_error)
                r = strdup_or_null(row->last_error, &a.text);
        else
                r = asprintf(&a.text, "Mailbox \"%s\": last synchronization error %lld (%s)",
                             row->name ? row->name : row->id, (long long) S3_ERROR_CODE,
                             S3_ERROR_CODE_NAME) < 0 ? (a.text = NULL, -ENOMEM) : 0;
        if (r < 0)
                goto oom;
        *ret = a;
        return 1;
oom:
        alert_done(&a);
        return -ENOMEM;
}

/* By id, then latest first: the first of each id is the one to keep. */
static int alert_id_latest_compare(const void *a, const void *b) {
        const struct alert *x = a, *y = b;
        int r = strcmp(x->id, y->id);
        if (r != 0)
                return r;
        return x->at > y->at ? -1 : x->at < y->at;
}

static int alert_time_compare(const void *a, const void *b) {
        const struct alert *x = a, *y = b;
        if (x->at != y->at)
                return x->at < y->at ? -1 : 1;
        if (x->source != y->source)
                return x->source < y->source ? -1 : 1;
        return strcmp(x->id, y->id);
}

static int string_compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Keep the first of each run of equal ids (the list is sorted by id). */
static size_t dedupe_sorted(struct alert *a, size_t n) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                if (k > 0 && strcmp(a[k - 1].id, a[i].id) == 0) {
                        alert_done(&a[i]);
                        continue;
                }
                a[k++] = a[i];
        }
        return k;
}

/* Drop the alerts older than since (0: none); returns how many are left. */
static size_t drop_older(struct alert *a, size_t n, time_t since) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                if (since && a[i].at < since) {
                        alert_done(&a[i]);
                        continue;
                }
                a[k++] = a[i];
        }
        return k;
}

/* Sort by id, keep each id's latest occurrence, drop those older than since
 * (0: none): how many are left. */
static size_t alerts_settle(struct alert *alerts, size_t n, time_t since) {
        qsort_safe(alerts, n, sizeof(*alerts), alert_id_latest_compare);
        return drop_older(alerts, dedupe_sorted(alerts, n), since);
}

/* The tracelog alerts at alerts[0..]: one per id (its latest occurrence),
 * none older than since. Returns how many, or -ENOMEM. */
static ssize_t tracelog_alerts(const struct tracelog_row *rows, size_t n, const struct detect_params *p,
                               struct alert *alerts) {
        size_t k = 0;

        for (size_t i = 0; i < n; i++) {
                int r = detect_tracelog(&rows[i], p->cache, &alerts[k]);
                if (r < 0) {
                        alerts_free_in_place(alerts, k);
                        return r;
                }
                k += r;
        }
        return (ssize_t) alerts_settle(alerts, k, p->since);
}

/* The mailbox alerts at alerts[0..] of mailboxes without a tracelog alert
 * (the n_tl of tl, or one the caller knows of): as tracelog_alerts(). */
static ssize_t mailbox_alerts(const struct mailbox_row *rows, size_t n, const struct detect_params *p,
                              const struct alert *tl, size_t n_tl, struct alert *alerts) {
        _cleanup_free_ char **alerted = NULL; /* mailboxes with a tracelog alert, sorted */
        size_t k = 0;

        if (n_tl > 0 && !(alerted = calloc(n_tl, sizeof(*alerted))))
                return -ENOMEM;
        for (size_t i = 0; i < n_tl; i++)
                alerted[i] = tl[i].mailbox_id;
        qsort_safe(alerted, n_tl, sizeof(*alerted), string_compare);
        for (size_t i = 0; i < n; i++) {
                const char *id = rows[i].id;
                int r;

                if (!id || (alerted && bsearch(&id, alerted, n_tl, sizeof(*alerted), string_compare)))
                        continue;
                if (p->has_tracelog_alert && p->has_tracelog_alert(id, p->userdata))
                        continue;
                r = detect_mailbox(&rows[i], &alerts[k]);
                if (r < 0) {
                        alerts_free_in_place(alerts, k);
                        return r;
                }
                k += r;
        }
        return (ssize_t) alerts_settle(alerts, k, p->since);
}

int detect_alerts(const struct tracelog_row *tracelogs, size_t n_tracelogs,
                  const struct mailbox_row *mailboxes, size_t n_mailboxes,
                  const struct detect_params *p, struct alert **ret, size_t *ret_n) {
        static const struct detect_params defaults = {};
        struct alert *alerts = NULL;
        ssize_t n_tl, n_mb;
        size_t n;

        if (!p)
                p = &defaults;
        *ret = NULL;
        *ret_n = 0;
        if (n_tracelogs + n_mailboxes == 0)
                return 0;
        alerts = calloc(n_tracelogs + n_mailboxes, sizeof(*alerts));
        if (!alerts)
                return -ENOMEM;
        n_tl = tracelog_alerts(tracelogs, n_tracelogs, p, alerts);
        n_mb = n_tl < 0 ? 0 : mailbox_alerts(mailboxes, n_mailboxes, p, alerts, (size_t) n_tl, alerts + n_tl);
        if (n_tl < 0 || n_mb < 0) {
                alerts_free(alerts, n_tl < 0 ? 0 : (size_t) n_tl);
                return -ENOMEM;
        }
        n = (size_t) (n_tl + n_mb);
        qsort_safe(alerts, n, sizeof(*alerts), alert_time_compare);
        if (n == 0)
                alerts = mfree(alerts);
        else if (n < n_tracelogs + n_mailboxes) {
                /* Room was made for every row: a first poll reads every
                 * mailbox (2,000 rows, 120 kB of room, for maybe 5 alerts),
                 * and the cycle keeps the alerts until its end. */
                struct alert *fit = realloc(alerts, n * sizeof(*alerts));
                if (fit)
                        alerts = fit;
        }
        *ret = alerts;
        *ret_n = n;
        return 0;
}

int finding_id_make(const char *environment, const struct alert *a, unsigned generation, char **ret) {
        const char *source = alert_source_to_string(a->source);
        int r;

        if (generation > 1)
                r = asprintf(ret, "%s/%s/%s#%u", environment, source, a->id, generation);
        else
                r = asprintf(ret, "%s/%s/%s", environment, source, a->id);
        if (r < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}
