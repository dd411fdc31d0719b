/* fuzz-rows.c: a Dataverse response body through the engine's front: JSON
 * (jansson, as response.c loads it) -> rows.h's parsers of every table, one
 * row and one page (rows_parse_page(), the client's path) -> detect_alerts()
 * -> finding ids. The input is the body: an object is one row for every
 * single-row parser and, when its "value" member is an array, a page; an
 * array is a page.
 * Invariants: a parser succeeds or fails with -EINVAL and a message of
 * printable ASCII (it reaches the log) naming the table; a page keeps every
 * row the single-row parser takes, in order, and counts the others as
 * skipped; parsed ids are lower-case GUIDs; detected alerts come sorted by
 * time, one per tracelog id and mailbox, each carrying the code; no leak
 * (ASan). */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "detect.h"
#include "fuzz.h"
#include "log.h"
#include "rows.h"
#include "schema.h"

static void check_error(const char *table, int r, char *error) {
        CHECK(r == -EINVAL, "%s: parser returned %d", table, r);
        CHECK(error, "%s: failed without a message", table);
        CHECK(strncmp(error, table, strlen(table)) == 0, "%s: message \"%s\"", table, error);
        for (const char *p = error; *p; p++)
                CHECK(*p >= 0x20 && *p < 0x7f, "%s: message with byte 0x%02x: %s", table, (unsigned char) *p, error);
        free(error);
}

static void check_guid(const char *what, const char *id, bool required) {
        if (!id) {
                CHECK(!required, "%s: NULL", what);
                return;
        }
        CHECK(strlen(id) == 36, "%s: \"%s\"", what, id);
        for (int i = 0; i < 36; i++)
                CHECK(i == 8 || i == 13 || i == 18 || i == 23 ? id[i] == '-'
                                                             : (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'),
                      "%s: \"%s\"", what, id);
}

static void check_tracelog(const struct tracelog_row *t) {
        check_guid("tracelogid", t->id, true);
        check_guid("_regardingobjectid_value", t->regarding_id, false);
}

static void check_mailbox(const struct mailbox_row *m) {
        check_guid("mailboxid", m->id, true);
}

static void check_workflow(const struct workflow_row *w) {
        check_guid("workflowid", w->id, true);
        check_guid("_parentworkflowid_value", w->parent_id, false);
}

static void check_step(const struct step_row *s) {
        check_guid("sdkmessageprocessingstepid", s->id, true);
        CHECK(!s->primary_entity || (*s->primary_entity && strcmp(s->primary_entity, "none") != 0),
              "step entity \"%s\"", s->primary_entity);
}

static void check_session(const struct session_row *s) {
        check_guid("processsessionid", s->id, true);
        check_guid("_processid_value", s->process_id, false);
        CHECK(s->at != 0, "session without a time");
}

static void check_trace(const struct trace_row *t) {
        check_guid("plugintracelogid", t->id, true);
        check_guid("pluginstepid", t->step_id, false);
}

/* How many rows of the page the single-row parser takes. */
#define COUNT_GOOD(type, one, done, page)                                               \
        ({                                                                              \
                size_t good_ = 0;                                                       \
                for (size_t i_ = 0; i_ < json_array_size(page); i_++) {                 \
                        struct type t_ = {};                                            \
                        if (rows_parse_##one(json_array_get(page, i_), &t_, NULL) == 0) { \
                                good_++;                                                \
                                done(&t_);                                              \
                        }                                                               \
                }                                                                       \
                good_;                                                                  \
        })

/* One row and one page of a table: parse, check each row; the page's rows
 * are handed out. */
#define CHECK_TABLE(type, one, field, rtable, table, check, done, row, page, out)        \
        do {                                                                            \
                struct type r1 = {};                                                    \
                char *error = NULL;                                                     \
                int r;                                                                  \
                if (row) {                                                              \
                        r = rows_parse_##one(row, &r1, &error);                         \
                        if (r < 0)                                                      \
                                check_error(table, r, error);                           \
                        else {                                                          \
                                CHECK(!error, "%s: message on success", table);         \
                                check(&r1);                                             \
                                done(&r1);                                              \
                        }                                                               \
                }                                                                       \
                if (page) {                                                             \
                        struct rows_skipped skipped = {};                               \
                        size_t good = COUNT_GOOD(type, one, done, page);                \
                        r = rows_parse_page(rtable, page, "fuzz", 0, out, &skipped);    \
                        CHECK(r == 0, "%s: rows_parse_page() = %d", table, r);          \
                        CHECK((out)->n == good && skipped.n == json_array_size(page) - good, \
                              "%s: %zu rows and %zu skipped of %zu", table, (out)->n,   \
                              skipped.n, json_array_size(page));                        \
                        CHECK(((out)->n == 0) == ((out)->any == NULL), "%s: %zu rows at %p", \
                              table, (out)->n, (out)->any);                             \
                        CHECK((skipped.n == 0) == (skipped.first == NULL), "%s: skipped %zu, first %s", \
                              table, skipped.n, skipped.first ? skipped.first : "none");  \
                        for (size_t i = 0; i < (out)->n; i++)                           \
                                check(&(out)->field[i]);                                \
                        rows_skipped_done(&skipped);                                    \
                }                                                                       \
        } while (0)

static bool never(const char *mailbox_id, void *userdata) {
        return false;
}

static const struct alert *find_alert(const struct alert *alerts, size_t n, enum alert_source source, const char *id) {
        for (size_t i = 0; i < n; i++)
                if (alerts[i].source == source && strcmp(alerts[i].id, id) == 0)
                        return &alerts[i];
        return NULL;
}

static bool mailbox_has_tracelog_alert(const struct alert *alerts, size_t n, const char *mailbox_id) {
        for (size_t i = 0; i < n; i++)
                if (alerts[i].source == ALERT_SOURCE_TRACELOG && strcmp(alerts[i].mailbox_id, mailbox_id) == 0)
                        return true;
        return false;
}

/* detect.h's rules, row by row, without a cache. */
static bool tracelog_qualifies(const struct tracelog_row *t) {
        return t->level >= 2 && t->regarding_id && t->regarding_type && strcasecmp(t->regarding_type, "mailbox") == 0 &&
               (detect_text_carries_code(t->text) || detect_text_carries_code(t->errordetails));
}

static bool mailbox_qualifies(const struct mailbox_row *m) {
        return (m->has_error_code && m->last_error_code == S3_ERROR_CODE) || detect_text_carries_code(m->last_error);
}

static void check_alerts(const struct tracelog_row *tl, size_t n_tl, const struct mailbox_row *mb, size_t n_mb,
                         time_t since) {
        struct detect_params p = { .since = since, .has_tracelog_alert = never };
        struct alert *alerts = NULL;
        size_t n = 0;
        int r = detect_alerts(tl, n_tl, mb, n_mb, &p, &alerts, &n);

        CHECK(r == 0, "detect_alerts() = %d", r);
        CHECK(n <= n_tl + n_mb, "%zu alerts from %zu rows", n, n_tl + n_mb);
        for (size_t i = 0; i < n; i++) {
                const struct alert *a = &alerts[i];
                char *id = NULL;

                CHECK(a->id && a->mailbox_id && a->text, "alert without id, mailbox or text");
                CHECK(!since || a->at >= since, "alert at %lld before since %lld", (long long) a->at, (long long) since);
                CHECK(a->code == S3_ERROR_CODE, "alert code %lld", (long long) a->code);
                if (i > 0) {
                        const struct alert *b = &alerts[i - 1];

                        CHECK(b->at < a->at || (b->at == a->at && (b->source < a->source ||
                                                                   (b->source == a->source && strcmp(b->id, a->id) < 0))),
                              "alerts out of order at %zu", i);
                }
                CHECK(find_alert(alerts, i, a->source, a->id) == NULL, "alert %s twice", a->id);
                if (a->source == ALERT_SOURCE_MAILBOX)
                        CHECK(!mailbox_has_tracelog_alert(alerts, n, a->mailbox_id),
                              "mailbox %s: a mailbox alert next to a tracelog alert", a->mailbox_id);
                CHECK(finding_id_make("prod", a, (unsigned) i % 3, &id) == 0, "finding_id_make()");
                CHECK(strncmp(id, "prod/", 5) == 0 && strstr(id, a->id), "finding id %s", id);
                free(id);
        }
        /* None lost: every qualifying row recent enough has its alert, at
         * least as recent as the row. */
        for (size_t i = 0; i < n_tl; i++) {
                time_t at = tl[i].modified_on ? tl[i].modified_on : tl[i].created_on;
                const struct alert *a;

                if (!tracelog_qualifies(&tl[i]) || (since && at < since))
                        continue;
                a = find_alert(alerts, n, ALERT_SOURCE_TRACELOG, tl[i].id);
                CHECK(a && a->at >= at, "tracelog %s lost", tl[i].id);
        }
        for (size_t i = 0; i < n_mb; i++) {
                time_t at = mb[i].last_error_on ? mb[i].last_error_on : mb[i].modified_on;
                const struct alert *a;

                if (!mailbox_qualifies(&mb[i]) || (since && at < since) ||
                    mailbox_has_tracelog_alert(alerts, n, mb[i].id))
                        continue;
                a = find_alert(alerts, n, ALERT_SOURCE_MAILBOX, mb[i].id);
                CHECK(a && a->at >= at, "mailbox %s lost", mb[i].id);
        }
        alerts_free(alerts, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *root = json_loadb((const char *) data, size, 0, NULL);
        const json_t *row, *page;
        struct rows tl = { .table = ROWS_TRACELOGS }, mb = { .table = ROWS_MAILBOXES },
                    wf = { .table = ROWS_WORKFLOWS }, st = { .table = ROWS_STEPS }, se = { .table = ROWS_SESSIONS },
                    tr = { .table = ROWS_TRACES };

        if (!root)
                return 0;
        log_set_max_level(LOG_LEVEL_ERROR); /* a skipped row is a warning: not the fuzzer's output */
        row = root;
        page = json_is_object(root) ? json_object_get(root, "value") : root;
        if (!json_is_array(page))
                page = NULL; /* the client checks the shape of a page before its rows */

        CHECK_TABLE(tracelog_row, tracelog, tracelogs, ROWS_TRACELOGS, DV_SET_TRACELOGS, check_tracelog,
                    tracelog_row_done, row, page, &tl);
        CHECK_TABLE(mailbox_row, mailbox, mailboxes, ROWS_MAILBOXES, DV_SET_MAILBOXES, check_mailbox,
                    mailbox_row_done, row, page, &mb);
        CHECK_TABLE(workflow_row, workflow, workflows, ROWS_WORKFLOWS, DV_SET_WORKFLOWS, check_workflow,
                    workflow_row_done, row, page, &wf);
        CHECK_TABLE(step_row, step, steps, ROWS_STEPS, DV_SET_STEPS, check_step, step_row_done, row, page, &st);
        CHECK_TABLE(session_row, session, sessions, ROWS_SESSIONS, DV_SET_SESSIONS, check_session, session_row_done,
                    row, page, &se);
        CHECK_TABLE(trace_row, trace, traces, ROWS_TRACES, DV_SET_TRACES, check_trace, trace_row_done, row, page,
                    &tr);

        /* One page as both tables is odd but legal: a row can parse as both. */
        check_alerts(tl.tracelogs, tl.n, mb.mailboxes, mb.n, 0);
        check_alerts(tl.tracelogs, tl.n, mb.mailboxes, mb.n, tl.n > 0 ? tl.tracelogs[tl.n / 2].modified_on : 0);

        rows_done(&tl);
        rows_done(&mb);
        rows_done(&wf);
        rows_done(&st);
        rows_done(&se);
        rows_done(&tr);
        json_decref(root);
        return 0;
}
