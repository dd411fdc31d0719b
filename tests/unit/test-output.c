/* Unit tests for the outputs: the journald fields and syslog lines sent for
 * each record (without sending them: no test writes to the host's journal
 * or syslog), key=value parsing back, the stream outputs, OUTPUT_AUTO. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "finding.h"
#include "macro.h"
#include "message-ids.h"
#include "output-internal.h"
#include "output.h"
#include "samples.h"
#include "strutil.h"
#include "utf8.h"

/* ---- a tiny key=value parser, written from the contract, not the code ---- */

struct pair {
        char key[32];
        char *value;
};

struct parsed {
        struct pair pairs[64];
        size_t n_pairs;
        size_t n_message_tokens;        /* tokens before the first pair */
        bool truncated;                 /* ended with a bare " …" */
        bool stray;                     /* a non-pair token after a pair */
};

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Reads a quoted value at *p (on the opening quote); returns it unescaped. */
static char *unquote(const char **p) {
        const char *s = *p + 1;
        char *out = malloc(strlen(s) * 4 + 1), *o = out;

        assert_non_null(out);
        for (; *s && *s != '"'; s++) {
                if (*s != '\\') {
                        *o++ = *s;
                        continue;
                }
                s++;
                switch (*s) {
                case 'n': *o++ = '\n'; break;
                case 'r': *o++ = '\r'; break;
                case 't': *o++ = '\t'; break;
                case '"': *o++ = '"'; break;
                case '\\': *o++ = '\\'; break;
                case 'x':
                        assert_true(hexval(s[1]) >= 0 && hexval(s[2]) >= 0);
                        *o++ = (char) (hexval(s[1]) * 16 + hexval(s[2]));
                        s += 2;
                        break;
                case 'u': {
                        unsigned cp = 0;
                        for (int i = 1; i <= 4; i++) {
                                assert_true(hexval(s[i]) >= 0);
                                cp = cp * 16 + (unsigned) hexval(s[i]);
                        }
                        s += 4;
                        if (cp < 0x800) {
                                *o++ = (char) (0xC0 | (cp >> 6));
                                *o++ = (char) (0x80 | (cp & 0x3F));
                        } else {
                                *o++ = (char) (0xE0 | (cp >> 12));
                                *o++ = (char) (0x80 | ((cp >> 6) & 0x3F));
                                *o++ = (char) (0x80 | (cp & 0x3F));
                        }
                        break;
                }
                default:
                        fail_msg("unknown escape \\%c", *s);
                }
        }
        assert_int_equal(*s, '"');      /* closed */
        *o = '\0';
        *p = s + 1;
        return out;
}

static void parse_line(const char *s, struct parsed *r) {
        *r = (struct parsed) {};
        while (*s) {
                const char *start, *eq;

                while (*s == ' ')
                        s++;
                if (!*s)
                        break;
                start = s;
                eq = start;
                while ((*eq >= 'a' && *eq <= 'z') || *eq == '_')
                        eq++;
                if (eq > start && *eq == '=') {
                        struct pair *pr = &r->pairs[r->n_pairs++];

                        assert_true(r->n_pairs <= 64);
                        assert_true((size_t) (eq - start) < sizeof(pr->key));
                        memcpy(pr->key, start, (size_t) (eq - start));
                        s = eq + 1;
                        if (*s == '"')
                                pr->value = unquote(&s);
                        else {
                                size_t n = strcspn(s, " ");
                                pr->value = strndup(s, n);
                                s += n;
                        }
                        assert_true(*s == ' ' || *s == '\0');
                        continue;
                }
                /* A message token; quoted parts may hold spaces. */
                for (; *s && *s != ' '; s++)
                        if (*s == '"') {
                                free(unquote(&s));
                                s--;
                        }
                if (r->n_pairs == 0)
                        r->n_message_tokens++;
                else if (strcmp(start, STR_ELLIPSIS) == 0)
                        r->truncated = true;
                else
                        r->stray = true;
        }
}

static void parsed_done(struct parsed *r) {
        for (size_t i = 0; i < r->n_pairs; i++)
                free(r->pairs[i].value);
}

static const char *pair_value(const struct parsed *r, const char *key, size_t nth) {
        for (size_t i = 0; i < r->n_pairs; i++)
                if (strcmp(r->pairs[i].key, key) == 0 && nth-- == 0)
                        return r->pairs[i].value;
        return NULL;
}

static void assert_one_line(const char *s) {
        assert_true(utf8_is_valid(s, strlen(s)));
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                assert_true(*p >= 0x20 && *p != 0x7F);
}

/* ---- syslog --------------------------------------------------------------- */

static void test_syslog_finding(void **state) {
        struct finding *f = sample_finding_full();
        char *line = syslog_out_line_finding(f);
        struct parsed r;

        assert_non_null(line);
        assert_string_equal(line,
                "prod: mailbox \"Support\" <support@contoso.com>: UnknownIncomingEmailIntegrationError "
                "-2147220956 confirmed: workflow \"Set email category\" (failed session 09:59:57Z), "
                "plug-in step \"Contoso.Plugins.EmailCreate: Create of email\""
                " event=finding environment=prod finding_id=prod/tracelog/" SAMPLE_ALERT_ID
                " mailbox_id=" SAMPLE_MAILBOX_ID " alert_id=" SAMPLE_ALERT_ID
                " error_code=-2147220956 verdict=confirmed occurrences=1"
                " culprit=\"workflow:" SAMPLE_WORKFLOW_ID ":Set email category\""
                " culprit=\"plugin_step:" SAMPLE_STEP_ID ":Contoso.Plugins.EmailCreate: Create of email\"");
        parse_line(line, &r);
        assert_false(r.stray);
        assert_false(r.truncated);
        assert_int_equal(r.n_pairs, 10);
        assert_string_equal(pair_value(&r, "culprit", 1),
                            "plugin_step:" SAMPLE_STEP_ID ":Contoso.Plugins.EmailCreate: Create of email");
        parsed_done(&r);
        free(line);
        finding_free(f);
}

static void test_syslog_resolved_error(void **state) {
        struct resolved_event e;
        struct error_event x;
        char *line;

        sample_resolved(&e);
        line = syslog_out_line_resolved(&e);
        assert_non_null(line);
        assert_string_equal(line,
                "prod: mailbox \"Support\" <support@contoso.com>: resolved, receiving mail again "
                "(3 occurrences, last alert 2026-11-25T09:59:58Z) event=resolved environment=prod "
                "finding_id=prod/tracelog/" SAMPLE_ALERT_ID " mailbox_id=" SAMPLE_MAILBOX_ID
                " alert_id=" SAMPLE_ALERT_ID " occurrences=3 resolved_at=2026-11-25T11:00:03Z");
        free(line);
        resolved_event_done(&e);

        sample_error_failing(&x);
        line = syslog_out_line_error(&x);
        assert_non_null(line);
        assert_string_equal(line,
                "prod: polling failing since 2026-11-25T10:00:03Z (tracelogs, 3 failed attempts): "
                "\"HTTP 503 Service Unavailable\" event=error environment=prod state=failing "
                "query=tracelogs failures=3 since=2026-11-25T10:00:03Z");
        free(line);
        error_event_done(&x);
}

static void test_syslog_hostile(void **state) {
        struct finding *f = sample_finding_hostile();
        char *line = syslog_out_line_finding(f), *want, *raw;
        const char *v;
        struct parsed r;

        assert_non_null(line);
        assert_one_line(line);
        assert_true(strlen(line) <= SYSLOG_LINE_MAX);
        parse_line(line, &r);
        assert_false(r.stray);
        assert_false(r.truncated);
        assert_true(r.n_message_tokens > 0);
        assert_string_equal(pair_value(&r, "environment", 0), "prod");
        assert_string_equal(pair_value(&r, "verdict", 0), "confirmed");
        assert_string_equal(pair_value(&r, "error_code", 0), "-2147220956");
        /* The 100 KiB name: cut, marked, its start intact. */
        v = pair_value(&r, "culprit", 0);
        assert_non_null(v);
        assert_true(strncmp(v, "workflow:" SAMPLE_WORKFLOW_ID ":Long xxx", 45) == 0);
        assert_true(strlen(v) <= SYSLOG_VALUE_MAX + strlen(STR_ELLIPSIS));
        assert_string_equal(v + strlen(v) - strlen(STR_ELLIPSIS), STR_ELLIPSIS);
        /* Quotes, newlines, controls, bad UTF-8 come back as sanitized text. */
        assert_true(asprintf(&raw, "plugin_step:%s:%s", SAMPLE_STEP_ID, sample_hostile_step_name) > 0);
        want = utf8_sanitize(raw);
        assert_string_equal(pair_value(&r, "culprit", 1), want);
        free(want);
        free(raw);
        parsed_done(&r);
        free(line);
        finding_free(f);
}

/* Random bytes (fixed seed) quoted as a value come back, parsed, as their
 * UTF-8-repaired selves. */
static void test_syslog_pairs_round_trip(void **state) {
        unsigned seed = 12345;

        for (int round = 0; round < 2000; round++) {
                char value[48], *line = NULL, *want;
                size_t size = 0, len = (size_t) (rand_r(&seed) % (sizeof(value) - 1));
                FILE *m = open_memstream(&line, &size);
                struct parsed r;

                for (size_t i = 0; i < len; i++) {
                        /* Bias towards the characters that matter. */
                        static const char special[] = " \"\\=\n\r\t\x01\x7f\xc2\x85\xe2\x80\xa8\xff";
                        int k = rand_r(&seed) % 4;
                        value[i] = k == 0 ? special[rand_r(&seed) % (sizeof(special) - 1)]
                                 : k == 1 ? (char) (rand_r(&seed) % 255 + 1)
                                          : (char) ('a' + rand_r(&seed) % 26);
                }
                value[len] = '\0';
                assert_non_null(m);
                fputs("message \"with = sign\"", m);
                assert_int_equal(str_put_pair(m, "a", value, 4096), 0);
                assert_int_equal(str_put_pair(m, "b", "after", 4096), 0);
                assert_int_equal(fclose(m), 0);

                assert_one_line(line);
                parse_line(line, &r);
                assert_int_equal(r.n_message_tokens, 2);
                assert_int_equal(r.n_pairs, 2);
                want = utf8_sanitize(value);
                assert_string_equal(pair_value(&r, "a", 0), want);
                assert_string_equal(pair_value(&r, "b", 0), "after");
                free(want);
                parsed_done(&r);
                free(line);
        }
}

static void test_syslog_bounded(void **state) {
        struct finding *f = sample_finding_suspected();
        char *line;
        struct parsed r;

        culprit_done(&f->culprits[0]);
        free(f->culprits);
        f->n_culprits = 40;
        f->culprits = calloc(f->n_culprits, sizeof(struct culprit));
        assert_non_null(f->culprits);
        for (size_t i = 0; i < f->n_culprits; i++) {
                f->culprits[i].kind = CULPRIT_PLUGIN_STEP;
                f->culprits[i].name = malloc(401);
                assert_non_null(f->culprits[i].name);
                memset(f->culprits[i].name, 'n', 400);
                f->culprits[i].name[400] = '\0';
        }
        line = syslog_out_line_finding(f);
        assert_non_null(line);
        assert_true(strlen(line) <= SYSLOG_LINE_MAX);
        assert_true(strlen(line) > SYSLOG_LINE_MAX - SYSLOG_VALUE_MAX - 64);
        parse_line(line, &r);
        assert_true(r.truncated);
        assert_false(r.stray);
        assert_non_null(pair_value(&r, "culprit", 0));
        assert_null(pair_value(&r, "culprit", 39));
        parsed_done(&r);
        free(line);
        finding_free(f);
}

/* ---- journald fields ------------------------------------------------------ */

static const char *field(const struct iovec *iov, size_t n, const char *name, size_t nth, size_t *ret_len) {
        size_t k = strlen(name);

        for (size_t i = 0; i < n; i++) {
                const char *b = iov[i].iov_base;
                if (iov[i].iov_len > k && memcmp(b, name, k) == 0 && b[k] == '=' && nth-- == 0) {
                        if (ret_len)
                                *ret_len = iov[i].iov_len - k - 1;
                        return b + k + 1;
                }
        }
        return NULL;
}

static void assert_field(const struct iovec *iov, size_t n, const char *name, const char *want) {
        size_t len;
        const char *v = field(iov, n, name, 0, &len);

        assert_non_null(v);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(v, want, len);
}

static void test_journal_finding(void **state) {
        struct finding *f = sample_finding_full();
        struct iovec *iov = NULL;
        size_t n = 0, len;
        static const char *const names[] = {
                "MESSAGE", "PRIORITY", "MESSAGE_ID", "SYSLOG_IDENTIFIER", "S3MOND_ENVIRONMENT",
                "S3MOND_FINDING_ID", "S3MOND_MAILBOX_ID", "S3MOND_MAILBOX_NAME", "S3MOND_MAILBOX_EMAIL",
                "S3MOND_ALERT_ID", "S3MOND_ALERT_SOURCE", "S3MOND_ALERT_AT", "S3MOND_ERROR_CODE",
                "S3MOND_ERROR_CODE_NAME", "S3MOND_VERDICT", "S3MOND_CULPRIT", "S3MOND_CULPRIT",
                "S3MOND_OCCURRENCES", "S3MOND_NOTE", "S3MOND_REMEDY", "S3MOND_JSON",
        };
        const char *json;
        char *want_json;
        json_t *j;

        assert_int_equal(journal_out_fields_finding(f, &iov, &n), 0);
        assert_int_equal(n, sizeof(names) / sizeof(names[0]));
        for (size_t i = 0; i < n; i++) {
                size_t k = strlen(names[i]);
                assert_memory_equal(iov[i].iov_base, names[i], k);
                assert_int_equal(((const char *) iov[i].iov_base)[k], '=');
        }
        assert_field(iov, n, "MESSAGE",
                "prod: mailbox \"Support\" <support@contoso.com>: UnknownIncomingEmailIntegrationError "
                "-2147220956 confirmed: workflow \"Set email category\" (failed session 09:59:57Z), "
                "plug-in step \"Contoso.Plugins.EmailCreate: Create of email\"");
        assert_field(iov, n, "PRIORITY", "4");
        assert_field(iov, n, "MESSAGE_ID", "2a7beaec32d5419a8a023b1bbb1313dc");
        assert_field(iov, n, "SYSLOG_IDENTIFIER", "s3mond");
        assert_field(iov, n, "S3MOND_ENVIRONMENT", "prod");
        assert_field(iov, n, "S3MOND_FINDING_ID", "prod/tracelog/" SAMPLE_ALERT_ID);
        assert_field(iov, n, "S3MOND_MAILBOX_ID", SAMPLE_MAILBOX_ID);
        assert_field(iov, n, "S3MOND_MAILBOX_NAME", "Support");
        assert_field(iov, n, "S3MOND_MAILBOX_EMAIL", "support@contoso.com");
        assert_field(iov, n, "S3MOND_ALERT_ID", SAMPLE_ALERT_ID);
        assert_field(iov, n, "S3MOND_ALERT_AT", "2026-11-25T09:59:58Z");
        assert_field(iov, n, "S3MOND_ERROR_CODE", "-2147220956");
        assert_field(iov, n, "S3MOND_VERDICT", "confirmed");
        assert_field(iov, n, "S3MOND_CULPRIT", "workflow:" SAMPLE_WORKFLOW_ID ":Set email category");
        assert_non_null(field(iov, n, "S3MOND_CULPRIT", 1, &len));
        assert_int_equal(len, strlen("plugin_step:" SAMPLE_STEP_ID ":Contoso.Plugins.EmailCreate: Create of email"));
        assert_memory_equal(field(iov, n, "S3MOND_CULPRIT", 1, &len),
                            "plugin_step:" SAMPLE_STEP_ID ":Contoso.Plugins.EmailCreate: Create of email", len);
        assert_field(iov, n, "S3MOND_OCCURRENCES", "1");
        json = field(iov, n, "S3MOND_JSON", 0, &len);
        j = finding_to_json(f);
        want_json = finding_json_dumps(j);
        json_decref(j);
        assert_int_equal(len, strlen(want_json));
        assert_memory_equal(json, want_json, len);
        free(want_json);
        journal_fields_free(iov, n);
        finding_free(f);
}

static void test_journal_unexplained(void **state) {
        struct finding *f = sample_finding_unexplained();
        struct iovec *iov = NULL;
        size_t n = 0;

        f->mailbox.email = mfree(f->mailbox.email);
        assert_int_equal(journal_out_fields_finding(f, &iov, &n), 0);
        assert_null(field(iov, n, "S3MOND_CULPRIT", 0, NULL));
        assert_null(field(iov, n, "S3MOND_MAILBOX_EMAIL", 0, NULL));
        assert_null(field(iov, n, "S3MOND_NOTE", 0, NULL));
        assert_field(iov, n, "S3MOND_VERDICT", "unexplained");
        assert_field(iov, n, "S3MOND_ALERT_SOURCE", "mailbox");
        journal_fields_free(iov, n);
        finding_free(f);
}

static void test_journal_hostile(void **state) {
        struct finding *f = sample_finding_hostile();
        struct iovec *iov = NULL;
        size_t n = 0, len;
        char *long_name = sample_long_name(), *want;
        const char *v;

        assert_int_equal(journal_out_fields_finding(f, &iov, &n), 0);
        /* Fields carry the raw bytes, whole; MESSAGE is one escaped line. */
        assert_field(iov, n, "S3MOND_MAILBOX_NAME", sample_hostile_mailbox_name);
        assert_field(iov, n, "S3MOND_MAILBOX_EMAIL", sample_hostile_email);
        assert_field(iov, n, "S3MOND_NOTE", sample_hostile_note);
        assert_field(iov, n, "S3MOND_REMEDY", sample_hostile_remedy);
        assert_true(asprintf(&want, "workflow:%s:%s", SAMPLE_WORKFLOW_ID, long_name) > 0);
        assert_field(iov, n, "S3MOND_CULPRIT", want);
        free(want);
        v = field(iov, n, "MESSAGE", 0, &len);
        assert_non_null(v);
        want = strndup(v, len);
        assert_one_line(want);
        free(want);
        journal_fields_free(iov, n);
        free(long_name);
        finding_free(f);
}

static void test_journal_resolved_error(void **state) {
        struct resolved_event e;
        struct error_event x;
        struct iovec *iov = NULL;
        size_t n = 0;

        sample_resolved(&e);
        assert_int_equal(journal_out_fields_resolved(&e, &iov, &n), 0);
        assert_field(iov, n, "PRIORITY", "5");
        assert_field(iov, n, "MESSAGE_ID", S3MOND_MESSAGE_RESOLVED_STR);
        assert_field(iov, n, "S3MOND_FINDING_ID", "prod/tracelog/" SAMPLE_ALERT_ID);
        assert_field(iov, n, "S3MOND_OCCURRENCES", "3");
        assert_field(iov, n, "S3MOND_RESOLVED_AT", "2026-11-25T11:00:03Z");
        journal_fields_free(iov, n);
        resolved_event_done(&e);

        sample_error_failing(&x);
        assert_int_equal(journal_out_fields_error(&x, &iov, &n), 0);
        assert_field(iov, n, "PRIORITY", "3");
        assert_field(iov, n, "MESSAGE_ID", "3996abb830b24ce4bd9179806656ce8c");
        assert_field(iov, n, "S3MOND_ERROR_STATE", "failing");
        assert_field(iov, n, "S3MOND_QUERY", "tracelogs");
        assert_field(iov, n, "S3MOND_ERROR_MESSAGE", "HTTP 503 Service Unavailable");
        assert_field(iov, n, "S3MOND_FAILURES", "3");
        journal_fields_free(iov, n);
        error_event_done(&x);

        sample_error_recovered(&x);
        assert_int_equal(journal_out_fields_error(&x, &iov, &n), 0);
        assert_field(iov, n, "PRIORITY", "5");
        assert_field(iov, n, "S3MOND_ERROR_STATE", "recovered");
        journal_fields_free(iov, n);
        error_event_done(&x);
}

static void test_message_ids(void **state) {
        sd_id128_t a = S3MOND_MESSAGE_FINDING, b = S3MOND_MESSAGE_RESOLVED, c = S3MOND_MESSAGE_ERROR;
        char s[SD_ID128_STRING_MAX];

        assert_string_equal(sd_id128_to_string(a, s), S3MOND_MESSAGE_FINDING_STR);
        assert_string_equal(sd_id128_to_string(b, s), S3MOND_MESSAGE_RESOLVED_STR);
        assert_string_equal(sd_id128_to_string(c, s), S3MOND_MESSAGE_ERROR_STR);
        assert_string_equal(S3MOND_MESSAGE_RESOLVED_STR, "02dd0e4d610d4d88818a71f0bd6ee892");
}

/* ---- stream outputs and the choice of output ------------------------------ */

static void test_json_output(void **state) {
        char *buf = NULL, *line, *save = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);
        struct output *o = NULL;
        struct finding *f = sample_finding_hostile();
        struct resolved_event e;
        struct error_event x;
        static const char *const types[] = { "finding", "resolved", "error" };
        size_t i = 0;

        assert_non_null(m);
        sample_resolved(&e);
        sample_error_failing(&x);
        assert_int_equal(output_new(OUTPUT_JSON, 0, m, &o), 0);
        assert_int_equal(output_get_kind(o), OUTPUT_JSON);
        assert_int_equal(output_emit_finding(o, f), 0);
        /* Flushed per record: the line is there before the stream closes. */
        assert_non_null(buf);
        assert_int_equal(buf[size - 1], '\n');
        assert_int_equal(output_emit_resolved(o, &e), 0);
        assert_int_equal(output_emit_error(o, &x), 0);
        output_free(o);
        assert_int_equal(fclose(m), 0);

        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
                json_error_t err;
                json_t *j = json_loads(line, 0, &err);

                assert_non_null(j);
                assert_true(i < 3);
                assert_string_equal(json_string_value(json_object_get(j, "type")), types[i]);
                json_decref(j);
        }
        assert_int_equal(i, 3);
        free(buf);
        resolved_event_done(&e);
        error_event_done(&x);
        finding_free(f);
}

static void test_stderr_output(void **state) {
        char *buf = NULL, *want, *l1, *l2;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);
        struct output *o = NULL;
        struct finding *f = sample_finding_full();
        struct error_event x;

        assert_non_null(m);
        sample_error_recovered(&x);
        assert_int_equal(output_new(OUTPUT_STDERR, 0, m, &o), 0);
        assert_int_equal(output_emit_finding(o, f), 0);
        assert_int_equal(output_emit_error(o, &x), 0);
        output_free(o);
        assert_int_equal(fclose(m), 0);
        l1 = finding_format_line(f);
        l2 = error_event_format_line(&x);
        assert_true(asprintf(&want, "%s\n%s\n", l1, l2) > 0);
        assert_string_equal(buf, want);
        free(want);
        free(l1);
        free(l2);
        free(buf);
        error_event_done(&x);
        finding_free(f);
}

/* Never sends: only checks that a journal output is refused when journald
 * is not there (sd_journal_sendv() itself would drop entries silently). */
static void test_journal_output_needs_journald(void **state) {
        struct output *o = NULL;
        int r = output_new(OUTPUT_JOURNAL, 0, NULL, &o);

        if (access("/run/systemd/journal/socket", F_OK) < 0) {
                assert_int_equal(r, -ENOENT);
                assert_null(o);
        } else {
                assert_int_equal(r, 0);
                assert_int_equal(output_get_kind(o), OUTPUT_JOURNAL);
                output_free(o);
        }
}

static void test_resolve_kind(void **state) {
        struct stat st;
        char js[64];
        struct output *o = NULL;

        assert_int_equal(fstat(STDERR_FILENO, &st), 0);
        unsetenv("JOURNAL_STREAM");
        unsetenv("INVOCATION_ID");
        assert_int_equal(output_resolve_kind(OUTPUT_SYSLOG), OUTPUT_SYSLOG);
        assert_int_equal(output_resolve_kind(OUTPUT_JSON), OUTPUT_JSON);
        if (!isatty(STDERR_FILENO)) {
                assert_int_equal(output_resolve_kind(OUTPUT_AUTO), OUTPUT_STDERR);
                setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef", 1);
                assert_int_equal(output_resolve_kind(OUTPUT_AUTO), OUTPUT_JOURNAL);
                unsetenv("INVOCATION_ID");
        }
        /* JOURNAL_STREAM counts only while it still names our stderr. */
        snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino + 1);
        setenv("JOURNAL_STREAM", js, 1);
        assert_int_equal(output_resolve_kind(OUTPUT_AUTO), OUTPUT_STDERR);
        snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        setenv("JOURNAL_STREAM", js, 1);
        assert_int_equal(output_resolve_kind(OUTPUT_AUTO), OUTPUT_JOURNAL);
        unsetenv("JOURNAL_STREAM");

        assert_int_equal(output_new((enum output_kind) 42, 0, NULL, &o), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_syslog_finding),
                cmocka_unit_test(test_syslog_resolved_error),
                cmocka_unit_test(test_syslog_hostile),
                cmocka_unit_test(test_syslog_pairs_round_trip),
                cmocka_unit_test(test_syslog_bounded),
                cmocka_unit_test(test_journal_finding),
                cmocka_unit_test(test_journal_unexplained),
                cmocka_unit_test(test_journal_hostile),
                cmocka_unit_test(test_journal_resolved_error),
                cmocka_unit_test(test_message_ids),
                cmocka_unit_test(test_json_output),
                cmocka_unit_test(test_stderr_output),
                cmocka_unit_test(test_journal_output_needs_journald),
                cmocka_unit_test(test_resolve_kind),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
