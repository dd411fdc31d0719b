/* fuzz-finding.c: findings, resolved and error events built from the
 * fuzzer's bytes (every string any bytes, any length, NULL or not; any
 * times, counts and codes) rendered every way s3mond emits them: the JSON
 * (finding.h), the readable line, journald's fields and the syslog line
 * (output-internal.h), and the stderr and json stream outputs.
 * Invariants:
 *  - JSON: jansson parses it back (so valid UTF-8, no NUL), keys in
 *    docs/design.md's order, each string the input repaired to UTF-8 (U+FFFD);
 *  - the line: valid UTF-8, no control character (C0, DEL, C1, U+2028/9),
 *    quoted values closed, no '=' outside quotes, bounded length;
 *  - journald: every field KEY=value with a valid journald key, values the
 *    raw input bytes, MESSAGE the line, S3MOND_JSON the JSON, one
 *    S3MOND_CULPRIT per culprit, one S3MOND_NOTE per note;
 *  - syslog: the line, then " key=value" pairs that read back as the input
 *    (or its cut prefix), in order, the whole under SYSLOG_LINE_MAX;
 *  - stream outputs: exactly the line (or JSON) and one newline. */
#include <inttypes.h>
#include <string.h>
#include <syslog.h>

#include "finding.h"
#include "fuzz.h"
#include "output-internal.h"
#include "output.h"
#include "strutil.h"
#include "utf8.h"
#include "timeutil.h"

#define MAX_CULPRITS 12         /* more than FINDING_LINE_CULPRITS_MAX */
#define MAX_EVIDENCE 3
#define MAX_NOTES 3
#define LINE_MAX_BYTES 4096     /* 11 values of at most 256 + 5 bytes, and the fixed text */

/* ---- bytes -> records ----------------------------------------------------- */

static time_t fdp_time(struct fdp *d) {
        switch (fdp_u8(d) % 4) {
        case 0: return 0;                                       /* "null" */
        case 1: return (time_t) 1795600800 + fdp_u32(d) % 86400; /* around 2026-11-25 */
        case 2: return (time_t) (int32_t) fdp_u32(d);
        default: return (time_t) fdp_u64(d);                     /* anything */
        }
}

static int64_t fdp_code(struct fdp *d) {
        return fdp_bool(d) ? S3_ERROR_CODE : (int64_t) fdp_u64(d);
}

/* One statement per value: the order of the reads is the format of the
 * input (seeds.py writes it), and C leaves the order of the expressions in
 * an initializer list unspecified. */
static void alert_from(struct fdp *d, struct alert *a) {
        a->source = fdp_bool(d) ? ALERT_SOURCE_MAILBOX : ALERT_SOURCE_TRACELOG;
        a->kind = fdp_bool(d) ? ALERT_KIND_ACT : ALERT_KIND_EMAIL;
        a->id = fdp_str_or_null(d);
        a->mailbox_id = fdp_str_or_null(d);
        a->level = (int) fdp_u32(d);
        a->code = fdp_code(d);
        a->text = fdp_str_or_null(d);
        a->created_on = fdp_time(d);
        a->at = fdp_time(d);
}

static void mailbox_from(struct fdp *d, struct mailbox_info *m) {
        m->id = fdp_str_or_null(d);
        m->name = fdp_str_or_null(d);
        m->email = fdp_str_or_null(d);
}

static void culprit_from(struct fdp *d, struct culprit *c) {
        c->kind = fdp_bool(d) ? CULPRIT_PLUGIN_STEP : CULPRIT_WORKFLOW;
        c->id = fdp_str_or_null(d);
        c->name = fdp_str_or_null(d);
        c->entity = fdp_str_or_null(d);
        c->message = fdp_str_or_null(d);
        c->plugin_type = fdp_str_or_null(d);
        c->n_evidence = fdp_range(d, MAX_EVIDENCE);
        c->evidence = c->n_evidence ? calloc(c->n_evidence, sizeof(*c->evidence)) : NULL;
        CHECK(c->evidence || !c->n_evidence, "calloc()");
        for (size_t k = 0; k < c->n_evidence; k++) {
                struct evidence *e = &c->evidence[k];

                e->kind = fdp_bool(d) ? EVIDENCE_PLUGIN_TRACE : EVIDENCE_PROCESS_SESSION;
                e->id = fdp_str_or_null(d);
                e->at = fdp_time(d);
                e->error = fdp_str_or_null(d);
        }
}

static struct finding *finding_from(struct fdp *d) {
        struct finding *f = calloc(1, sizeof(*f));

        CHECK(f, "calloc()");
        f->id = fdp_str_or_null(d);
        f->environment = fdp_str_or_null(d);
        f->detected_at = fdp_time(d);
        alert_from(d, &f->alert);
        mailbox_from(d, &f->mailbox);
        f->verdict = (enum verdict) fdp_range(d, VERDICT_UNEXPLAINED);
        f->n_culprits = fdp_range(d, MAX_CULPRITS);
        f->culprits = f->n_culprits ? calloc(f->n_culprits, sizeof(*f->culprits)) : NULL;
        CHECK(f->culprits || !f->n_culprits, "calloc()");
        for (size_t i = 0; i < f->n_culprits; i++)
                culprit_from(d, &f->culprits[i]);
        f->occurrences = fdp_u32(d);
        f->n_notes = fdp_range(d, MAX_NOTES);
        f->notes = f->n_notes ? calloc(f->n_notes, sizeof(*f->notes)) : NULL;
        CHECK(f->notes || !f->n_notes, "calloc()");
        for (size_t i = 0; i < f->n_notes; i++)
                f->notes[i] = fdp_str(d);
        f->remedy = fdp_str_or_null(d);
        return f;
}

static void resolved_from(struct fdp *d, struct resolved_event *e) {
        *e = (struct resolved_event) {};
        e->finding_id = fdp_str_or_null(d);
        e->environment = fdp_str_or_null(d);
        mailbox_from(d, &e->mailbox);
        e->alert_id = fdp_str_or_null(d);
        e->occurrences = fdp_u32(d);
        e->last_alert_at = fdp_time(d);
        e->resolved_at = fdp_time(d);
}

static void error_from(struct fdp *d, struct error_event *e) {
        *e = (struct error_event) {};
        e->environment = fdp_str_or_null(d);
        e->state = fdp_bool(d) ? ERROR_STATE_RECOVERED : ERROR_STATE_FAILING;
        e->query = fdp_str_or_null(d);
        e->message = fdp_str_or_null(d);
        e->since = fdp_time(d);
        e->at = fdp_time(d);
        e->failures = fdp_u32(d);
}

/* ---- JSON ----------------------------------------------------------------- */

/* j[key] is the input repaired to UTF-8, or null for NULL. */
static void check_json_text(const json_t *o, const char *key, const char *input) {
        const json_t *v = json_object_get(o, key);
        char *clean;

        CHECK(v, "JSON: no \"%s\"", key);
        if (!input) {
                CHECK(json_is_null(v), "JSON: \"%s\" should be null", key);
                return;
        }
        clean = utf8_sanitize(input);
        CHECK(clean && json_is_string(v) && strcmp(json_string_value(v), clean) == 0,
              "JSON: \"%s\" is not the input repaired", key);
        free(clean);
}

/* Parse text back; its keys start with the ones given, in that order. */
static json_t *check_json(const char *text, const char *const *keys, size_t n_keys) {
        json_error_t err;
        json_t *j;
        void *it;

        CHECK(text, "JSON: NULL");
        CHECK(!strchr(text, '\n'), "JSON: more than one line");
        j = json_loads(text, 0, &err);
        CHECK(j && json_is_object(j), "JSON does not parse back: %s: %s", err.text, text);
        it = json_object_iter(j);
        for (size_t i = 0; i < n_keys; i++, it = json_object_iter_next(j, it))
                CHECK(it && strcmp(json_object_iter_key(it), keys[i]) == 0, "JSON: key %zu is not \"%s\": %s", i,
                      keys[i], text);
        return j;
}

static void check_finding_json(const struct finding *f, const char *text) {
        static const char *const keys[] = { "type", "id", "environment", "detected_at", "alert", "mailbox",
                                            "verdict", "culprits", "occurrences", "notes", "remedy" };
        json_t *j = check_json(text, keys, ELEMENTSOF(keys)), *culprits, *notes, *alert, *mailbox;

        check_json_text(j, "id", f->id);
        check_json_text(j, "environment", f->environment);
        check_json_text(j, "remedy", f->remedy);
        alert = json_object_get(j, "alert");
        check_json_text(alert, "id", f->alert.id);
        check_json_text(alert, "text", f->alert.text);
        CHECK(json_integer_value(json_object_get(alert, "code")) == f->alert.code, "JSON: alert code");
        mailbox = json_object_get(j, "mailbox");
        check_json_text(mailbox, "id", f->mailbox.id);
        check_json_text(mailbox, "name", f->mailbox.name);
        check_json_text(mailbox, "email", f->mailbox.email);
        CHECK(json_integer_value(json_object_get(j, "occurrences")) == f->occurrences, "JSON: occurrences");
        culprits = json_object_get(j, "culprits");
        CHECK(json_array_size(culprits) == f->n_culprits, "JSON: %zu culprits of %zu", json_array_size(culprits),
              f->n_culprits);
        for (size_t i = 0; i < f->n_culprits; i++) {
                const struct culprit *c = &f->culprits[i];
                json_t *o = json_array_get(culprits, i), *ev = json_object_get(o, "evidence");

                check_json_text(o, "id", c->id);
                check_json_text(o, "name", c->name);
                check_json_text(o, "entity", c->entity);
                check_json_text(o, "message", c->message);
                if (c->kind == CULPRIT_PLUGIN_STEP)
                        check_json_text(o, "plugin_type", c->plugin_type);
                CHECK(json_array_size(ev) == c->n_evidence, "JSON: evidence");
                for (size_t k = 0; k < c->n_evidence; k++) {
                        check_json_text(json_array_get(ev, k), "id", c->evidence[k].id);
                        check_json_text(json_array_get(ev, k), "error", c->evidence[k].error);
                }
        }
        notes = json_object_get(j, "notes");
        CHECK(json_array_size(notes) == f->n_notes, "JSON: notes");
        for (size_t i = 0; i < f->n_notes; i++) {
                char *clean = utf8_sanitize(f->notes[i]);

                CHECK(strcmp(json_string_value(json_array_get(notes, i)), clean) == 0, "JSON: note %zu", i);
                free(clean);
        }
        json_decref(j);
}

/* ---- journald --------------------------------------------------------------- */

/* Every iovec is KEY=value with a key journald accepts; the first is MESSAGE. */
static void check_journal_keys(struct iovec *iov, size_t n) {
        CHECK(n > 0 && iov[0].iov_len >= 8 && memcmp(iov[0].iov_base, "MESSAGE=", 8) == 0, "journal: MESSAGE first");
        for (size_t i = 0; i < n; i++) {
                const char *b = iov[i].iov_base, *eq = memchr(b, '=', iov[i].iov_len);
                size_t klen = eq ? (size_t) (eq - b) : 0;

                CHECK(eq && klen > 0 && klen <= 64, "journal field %zu without a key", i);
                CHECK(b[0] >= 'A' && b[0] <= 'Z', "journal key starts with 0x%02x", (unsigned char) b[0]);
                for (size_t k = 0; k < klen; k++)
                        CHECK((b[k] >= 'A' && b[k] <= 'Z') || (b[k] >= '0' && b[k] <= '9') || b[k] == '_',
                              "journal key %.*s", (int) klen, b);
        }
}

/* The fields named key are, in order, exactly these values (raw bytes). */
static void check_journal_field(struct iovec *iov, size_t n, const char *key, const char *const *values,
                                size_t n_values) {
        size_t klen = strlen(key), seen = 0;

        for (size_t i = 0; i < n; i++) {
                const char *b = iov[i].iov_base;

                if (iov[i].iov_len <= klen || memcmp(b, key, klen) != 0 || b[klen] != '=')
                        continue;
                CHECK(seen < n_values, "journal: more %s fields than %zu", key, n_values);
                CHECK(iov[i].iov_len - klen - 1 == strlen(values[seen]) &&
                              memcmp(b + klen + 1, values[seen], iov[i].iov_len - klen - 1) == 0,
                      "journal: %s #%zu is not the input", key, seen);
                seen++;
        }
        CHECK(seen == n_values, "journal: %zu %s fields, expected %zu", seen, key, n_values);
}

/* A single field, absent when value is NULL. */
static void check_journal_one(struct iovec *iov, size_t n, const char *key, const char *value) {
        check_journal_field(iov, n, key, &value, value ? 1 : 0);
}

/* ---- syslog ------------------------------------------------------------------- */

struct field {
        const char *key;
        const char *value;      /* NULL: left out */
};

/* line, then " key=value" for each pair (NULL values left out), read back
 * with fuzz_unquote(); " …" ends a record whose later pairs did not fit. */
static void check_syslog(const char *rec, const char *line, const struct field *pairs, size_t n) {
        const char *p;
        size_t len = strlen(line);

        CHECK(rec, "syslog: NULL");
        CHECK(strlen(rec) <= SYSLOG_LINE_MAX, "syslog: %zu bytes", strlen(rec));
        fuzz_check_line("syslog", rec, false);
        CHECK(strncmp(rec, line, len) == 0, "syslog: does not start with the line");
        p = rec + len;
        for (size_t i = 0; i < n; i++) {
                size_t klen = strlen(pairs[i].key);
                char *clean, *v;

                if (!pairs[i].value)
                        continue;
                if (strcmp(p, " " FUZZ_ELLIPSIS) == 0)
                        return; /* the rest did not fit */
                CHECK(p[0] == ' ' && strncmp(p + 1, pairs[i].key, klen) == 0 && p[1 + klen] == '=',
                      "syslog: expected %s= at: %s", pairs[i].key, p);
                p += klen + 2;
                v = fuzz_unquote(&p);
                clean = utf8_sanitize(pairs[i].value);
                CHECK(v && clean && fuzz_same_or_cut(v, clean), "syslog: %s does not read back", pairs[i].key);
                free(v);
                free(clean);
        }
        CHECK(*p == '\0', "syslog: unexpected text: %s", p);
}

/* ---- stream outputs ----------------------------------------------------------- */

enum record { RECORD_FINDING, RECORD_RESOLVED, RECORD_ERROR };

static void check_stream(enum output_kind kind, enum record what, const void *rec, const char *expected) {
        struct output *o = NULL;
        char *buf = NULL, *want;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        int r;

        CHECK(f && output_new(kind, LOG_DAEMON, f, &o) == 0, "output_new(%s)", output_kind_to_string(kind));
        r = what == RECORD_FINDING    ? output_emit_finding(o, rec)
            : what == RECORD_RESOLVED ? output_emit_resolved(o, rec)
                                      : output_emit_error(o, rec);
        CHECK(r == 0, "output %s: %d", output_kind_to_string(kind), r);
        output_free(o);
        CHECK(fclose(f) == 0, "fclose()");
        CHECK(asprintf(&want, "%s\n", expected) > 0, "asprintf()");
        CHECK(strcmp(buf, want) == 0, "output %s wrote something else", output_kind_to_string(kind));
        free(want);
        free(buf);
}

/* ---- the three records ------------------------------------------------------- */

static char *culprit_value(const struct culprit *c) {
        char *v;

        CHECK(asprintf(&v, "%s:%s:%s", culprit_kind_to_string(c->kind), strempty(c->id), strempty(c->name)) > 0,
              "asprintf()");
        return v;
}

static void check_finding(const struct finding *f) {
        char *line = finding_format_line(f), *json, code[32], occurrences[16], *rec, **culprits;
        json_t *j = finding_to_json(f);
        struct iovec *iov = NULL;
        size_t n = 0;

        CHECK(j, "finding_to_json(): NULL");
        json = finding_json_dumps(j);
        json_decref(j);
        check_finding_json(f, json);

        fuzz_check_line("finding line", line, true);
        CHECK(strlen(line) <= LINE_MAX_BYTES, "finding line: %zu bytes", strlen(line));

        culprits = calloc(f->n_culprits + 1, sizeof(char *));
        CHECK(culprits, "calloc()");
        for (size_t i = 0; i < f->n_culprits; i++)
                culprits[i] = culprit_value(&f->culprits[i]);

        CHECK(journal_out_fields_finding(f, &iov, &n) == 0, "journal_out_fields_finding()");
        check_journal_keys(iov, n);
        check_journal_one(iov, n, "MESSAGE", line);
        check_journal_one(iov, n, "PRIORITY", "4");
        check_journal_one(iov, n, "SYSLOG_IDENTIFIER", "s3mond");
        check_journal_one(iov, n, "S3MOND_ENVIRONMENT", f->environment);
        check_journal_one(iov, n, "S3MOND_FINDING_ID", f->id);
        check_journal_one(iov, n, "S3MOND_MAILBOX_ID", f->mailbox.id);
        check_journal_one(iov, n, "S3MOND_MAILBOX_NAME", f->mailbox.name);
        check_journal_one(iov, n, "S3MOND_MAILBOX_EMAIL", f->mailbox.email);
        check_journal_one(iov, n, "S3MOND_ALERT_ID", f->alert.id);
        check_journal_one(iov, n, "S3MOND_REMEDY", f->remedy);
        check_journal_one(iov, n, "S3MOND_JSON", json);
        check_journal_field(iov, n, "S3MOND_CULPRIT", (const char *const *) culprits, f->n_culprits);
        check_journal_field(iov, n, "S3MOND_NOTE", (const char *const *) f->notes, f->n_notes);
        journal_fields_free(iov, n);

        snprintf(code, sizeof(code), "%" PRId64, f->alert.code);
        snprintf(occurrences, sizeof(occurrences), "%u", f->occurrences);
        rec = syslog_out_line_finding(f);
        {
                struct field pairs[8 + MAX_CULPRITS] = {
                        { "event", "finding" },
                        { "environment", f->environment },
                        { "finding_id", f->id },
                        { "mailbox_id", f->mailbox.id },
                        { "alert_id", f->alert.id },
                        { "error_code", code },
                        { "verdict", verdict_to_string(f->verdict) },
                        { "occurrences", occurrences },
                };
                for (size_t i = 0; i < f->n_culprits; i++)
                        pairs[8 + i] = (struct field) { "culprit", culprits[i] };
                check_syslog(rec, line, pairs, 8 + f->n_culprits);
        }
        free(rec);

        check_stream(OUTPUT_STDERR, RECORD_FINDING, f, line);
        check_stream(OUTPUT_JSON, RECORD_FINDING, f, json);

        for (size_t i = 0; i < f->n_culprits; i++)
                free(culprits[i]);
        free(culprits);
        free(json);
        free(line);
}

static void check_resolved(const struct resolved_event *e) {
        static const char *const keys[] = { "type", "id", "environment", "mailbox", "alert", "occurrences",
                                            "last_alert_at", "resolved_at" };
        char *line = resolved_event_format_line(e), *json, *rec, occurrences[16], at[ISO8601_BUFSZ];
        json_t *j = resolved_event_to_json(e), *back;
        struct iovec *iov = NULL;
        size_t n = 0;

        CHECK(j, "resolved_event_to_json(): NULL");
        json = finding_json_dumps(j);
        json_decref(j);
        back = check_json(json, keys, ELEMENTSOF(keys));
        check_json_text(back, "id", e->finding_id);
        check_json_text(back, "environment", e->environment);
        check_json_text(json_object_get(back, "mailbox"), "name", e->mailbox.name);
        check_json_text(json_object_get(back, "alert"), "id", e->alert_id);
        json_decref(back);

        fuzz_check_line("resolved line", line, true);
        CHECK(strlen(line) <= LINE_MAX_BYTES, "resolved line: %zu bytes", strlen(line));

        CHECK(journal_out_fields_resolved(e, &iov, &n) == 0, "journal_out_fields_resolved()");
        check_journal_keys(iov, n);
        check_journal_one(iov, n, "MESSAGE", line);
        check_journal_one(iov, n, "PRIORITY", "5");
        check_journal_one(iov, n, "S3MOND_ENVIRONMENT", e->environment);
        check_journal_one(iov, n, "S3MOND_MAILBOX_NAME", e->mailbox.name);
        check_journal_one(iov, n, "S3MOND_ALERT_ID", e->alert_id);
        check_journal_one(iov, n, "S3MOND_JSON", json);
        journal_fields_free(iov, n);

        snprintf(occurrences, sizeof(occurrences), "%u", e->occurrences);
        rec = syslog_out_line_resolved(e);
        check_syslog(rec, line,
                     (struct field[]) {
                             { "event", "resolved" },
                             { "environment", e->environment },
                             { "finding_id", e->finding_id },
                             { "mailbox_id", e->mailbox.id },
                             { "alert_id", e->alert_id },
                             { "occurrences", occurrences },
                             { "resolved_at", e->resolved_at > 0 ? iso8601_format(e->resolved_at, at) : NULL },
                     },
                     7);
        free(rec);

        check_stream(OUTPUT_STDERR, RECORD_RESOLVED, e, line);
        check_stream(OUTPUT_JSON, RECORD_RESOLVED, e, json);
        free(json);
        free(line);
}

static void check_error_event(const struct error_event *e) {
        static const char *const keys[] = { "type", "environment", "state", "query", "message", "since", "at",
                                            "failures" };
        char *line = error_event_format_line(e), *json, *rec, failures[16], since[ISO8601_BUFSZ];
        json_t *j = error_event_to_json(e), *back;
        struct iovec *iov = NULL;
        size_t n = 0;

        CHECK(j, "error_event_to_json(): NULL");
        json = finding_json_dumps(j);
        json_decref(j);
        back = check_json(json, keys, ELEMENTSOF(keys));
        check_json_text(back, "environment", e->environment);
        check_json_text(back, "query", e->query);
        check_json_text(back, "message", e->message);
        json_decref(back);

        fuzz_check_line("error line", line, true);
        CHECK(strlen(line) <= LINE_MAX_BYTES, "error line: %zu bytes", strlen(line));

        CHECK(journal_out_fields_error(e, &iov, &n) == 0, "journal_out_fields_error()");
        check_journal_keys(iov, n);
        check_journal_one(iov, n, "MESSAGE", line);
        check_journal_one(iov, n, "PRIORITY", e->state == ERROR_STATE_FAILING ? "3" : "5");
        check_journal_one(iov, n, "S3MOND_ENVIRONMENT", e->environment);
        check_journal_one(iov, n, "S3MOND_QUERY", e->query);
        check_journal_one(iov, n, "S3MOND_ERROR_MESSAGE", e->message);
        check_journal_one(iov, n, "S3MOND_JSON", json);
        journal_fields_free(iov, n);

        snprintf(failures, sizeof(failures), "%u", e->failures);
        rec = syslog_out_line_error(e);
        check_syslog(rec, line,
                     (struct field[]) {
                             { "event", "error" },
                             { "environment", e->environment },
                             { "state", error_state_to_string(e->state) },
                             { "query", e->query },
                             { "failures", failures },
                             { "since", e->since > 0 ? iso8601_format(e->since, since) : NULL },
                     },
                     6);
        free(rec);

        check_stream(OUTPUT_STDERR, RECORD_ERROR, e, line);
        check_stream(OUTPUT_JSON, RECORD_ERROR, e, json);
        free(json);
        free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct fdp d = { data, size };
        struct finding *f = finding_from(&d);
        struct resolved_event re;
        struct error_event ee;

        resolved_from(&d, &re);
        error_from(&d, &ee);
        if (getenv("S3MOND_FUZZ_PRINT")) { /* what an input decodes to (README.md) */
                char *a = finding_format_line(f), *b = resolved_event_format_line(&re), *c = error_event_format_line(&ee);

                printf("%s\n%s\n%s\n", a, b, c);
                free(a);
                free(b);
                free(c);
        }
        check_finding(f);
        check_resolved(&re);
        check_error_event(&ee);
        finding_free(f);
        resolved_event_done(&re);
        error_event_done(&ee);
        return 0;
}
