/* finding.c: renders findings, resolved and error events as JSON and as one
 * readable line. Knows nothing of transports (journald, syslog) or Dataverse. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "finding.h"
#include "macro.h"
#include "strutil.h"
#include "utf8.h"
#include "timeutil.h"

const char *error_state_to_string(enum error_state s) {
        return s == ERROR_STATE_FAILING ? "failing" : "recovered";
}

const char *error_code_name(int64_t code) {
        return code == S3_ERROR_CODE ? S3_ERROR_CODE_NAME : NULL;
}

/* ---- JSON ---------------------------------------------------------------- */

/* The JSON boundary: every string is repaired to valid UTF-8 here, once. */
static json_t *json_text(const char *s) {
        _cleanup_free_ char *clean = NULL;

        if (!s)
                return json_null();
        if (utf8_is_valid(s, strlen(s)))
                return json_string(s);
        clean = utf8_sanitize(s);
        return clean ? json_string(clean) : NULL;
}

static json_t *json_time(time_t t) {
        char buf[ISO8601_BUFSZ];

        return t > 0 ? json_string(iso8601_format(t, buf)) : json_null();
}

/* json_object_set_new() steals value even on failure, so a chain of them
 * leaks nothing; collect failures with |. */
#define SET(o, k, v) (json_object_set_new((o), (k), (v)) < 0)

static json_t *mailbox_to_json(const struct mailbox_info *m) {
        _cleanup_(json_decrefp) json_t *o = json_object();
        bool fail = !o;

        if (fail)
                return NULL;
        fail |= SET(o, "id", json_text(m->id));
        fail |= SET(o, "name", json_text(m->name));
        fail |= SET(o, "email", json_text(m->email));
        return fail ? NULL : TAKE_PTR(o);
}

static json_t *alert_to_json(const struct alert *a) {
        _cleanup_(json_decrefp) json_t *o = json_object();
        const char *name = error_code_name(a->code);
        bool fail = !o;

        if (fail)
                return NULL;
        fail |= SET(o, "source", json_string(alert_source_to_string(a->source)));
        fail |= SET(o, "id", json_text(a->id));
        fail |= SET(o, "created_on", json_time(a->created_on));
        fail |= SET(o, "level", json_integer(a->level));
        fail |= SET(o, "code", json_integer(a->code));
        fail |= SET(o, "code_name", name ? json_string(name) : json_null());
        fail |= SET(o, "text", json_text(a->text));
        return fail ? NULL : TAKE_PTR(o);
}

static json_t *evidence_to_json(const struct evidence *e) {
        _cleanup_(json_decrefp) json_t *o = json_object();
        bool fail = !o;

        if (fail)
                return NULL;
        fail |= SET(o, "kind", json_string(evidence_kind_to_string(e->kind)));
        fail |= SET(o, "id", json_text(e->id));
        fail |= SET(o, "at", json_time(e->at));
        fail |= SET(o, "error", json_text(e->error));
        return fail ? NULL : TAKE_PTR(o);
}

static json_t *culprit_to_json(const struct culprit *c) {
        _cleanup_(json_decrefp) json_t *o = json_object(), *ev = json_array();
        bool fail = !o || !ev;

        if (fail)
                return NULL;
        for (size_t i = 0; i < c->n_evidence; i++)
                fail |= json_array_append_new(ev, evidence_to_json(&c->evidence[i])) < 0;
        fail |= SET(o, "kind", json_string(culprit_kind_to_string(c->kind)));
        fail |= SET(o, "id", json_text(c->id));
        fail |= SET(o, "name", json_text(c->name));
        fail |= SET(o, "entity", json_text(c->entity));
        fail |= SET(o, "message", json_text(c->message));
        if (c->kind == CULPRIT_PLUGIN_STEP)
                fail |= SET(o, "plugin_type", json_text(c->plugin_type));
        fail |= SET(o, "evidence", TAKE_PTR(ev));
        return fail ? NULL : TAKE_PTR(o);
}

json_t *finding_to_json(const struct finding *f) {
        _cleanup_(json_decrefp) json_t *o = json_object(), *culprits = json_array(),
                                       *notes = json_array();
        bool fail = !o || !culprits || !notes;

        if (fail)
                return NULL;
        for (size_t i = 0; i < f->n_culprits; i++)
                fail |= json_array_append_new(culprits, culprit_to_json(&f->culprits[i])) < 0;
        for (size_t i = 0; i < f->n_notes; i++)
                fail |= json_array_append_new(notes, json_text(f->notes[i])) < 0;

        fail |= SET(o, "type", json_string("finding"));
        fail |= SET(o, "id", json_text(f->id));
        fail |= SET(o, "environment", json_text(f->environment));
        fail |= SET(o, "detected_at", json_time(f->detected_at));
        fail |= SET(o, "alert", alert_to_json(&f->alert));
        fail |= SET(o, "mailbox", mailbox_to_json(&f->mailbox));
        fail |= SET(o, "verdict", json_string(verdict_to_string(f->verdict)));
        fail |= SET(o, "culprits", TAKE_PTR(culprits));
        fail |= SET(o, "occurrences", json_integer(f->occurrences));
        fail |= SET(o, "notes", TAKE_PTR(notes));
        fail |= SET(o, "remedy", json_text(f->remedy));
        return fail ? NULL : TAKE_PTR(o);
}

json_t *resolved_event_to_json(const struct resolved_event *e) {
        _cleanup_(json_decrefp) json_t *o = json_object(), *alert = json_object();
        bool fail = !o || !alert;

        if (fail)
                return NULL;
        fail |= SET(alert, "id", json_text(e->alert_id));
        fail |= SET(o, "type", json_string("resolved"));
        fail |= SET(o, "id", json_text(e->finding_id));
        fail |= SET(o, "environment", json_text(e->environment));
        fail |= SET(o, "mailbox", mailbox_to_json(&e->mailbox));
        fail |= SET(o, "alert", TAKE_PTR(alert));
        fail |= SET(o, "occurrences", json_integer(e->occurrences));
        fail |= SET(o, "last_alert_at", json_time(e->last_alert_at));
        fail |= SET(o, "resolved_at", json_time(e->resolved_at));
        return fail ? NULL : TAKE_PTR(o);
}

json_t *error_event_to_json(const struct error_event *e) {
        _cleanup_(json_decrefp) json_t *o = json_object();
        bool fail = !o;

        if (fail)
                return NULL;
        fail |= SET(o, "type", json_string("error"));
        fail |= SET(o, "environment", json_text(e->environment));
        fail |= SET(o, "state", json_string(error_state_to_string(e->state)));
        fail |= SET(o, "query", json_text(e->query));
        fail |= SET(o, "message", json_text(e->message));
        fail |= SET(o, "since", json_time(e->since));
        fail |= SET(o, "at", json_time(e->at));
        fail |= SET(o, "failures", json_integer(e->failures));
        return fail ? NULL : TAKE_PTR(o);
}

char *finding_json_dumps(const json_t *j) {
        return j ? json_dumps(j, FINDING_JSON_FLAGS) : NULL;
}

/* ---- JSON, written directly ------------------------------------------------
 * The same text as finding_json_dumps(finding_to_json(f)), without building
 * the jansson tree first: a backlog of 20,000 alerts with 100 suspects each is
 * 1.7 GB of JSON, and the tree (a malloc per value and per key, a hash table
 * per object, then a dump walking it) cost four times what correlating did.
 * test-finding checks the two agree byte for byte, hostile text included. */

struct jbuf {
        char *p;
        size_t n, size;
        bool oom;
};

static __attribute__((noinline)) bool jb_grow(struct jbuf *b, size_t more) {
        size_t size;
        char *p;

        if (b->oom)
                return false;
        size = b->size ? b->size : 4096;
        while (size - b->n < more) {
                if (size > SIZE_MAX / 2) {
                        b->oom = true;
                        return false;
                }
                size *= 2;
        }
        p = realloc(b->p, size);
        if (!p) {
                b->oom = true;
                return false;
        }
        b->p = p;
        b->size = size;
        return true;
}

static inline bool jb_reserve(struct jbuf *b, size_t more) {
        return b->size - b->n >= more || jb_grow(b, more);
}

static void jb_put(struct jbuf *b, const char *s, size_t len) {
        if (!jb_reserve(b, len))
                return;
        memcpy(b->p + b->n, s, len);
        b->n += len;
}

#define jb_lit(b, s) jb_put((b), "" s, sizeof(s) - 1)

/* Whether any of the 8 bytes of x is < 0x20, '"', '\\' or >= 0x80: the bytes
 * a JSON string cannot copy as they are (or, >= 0x80, must validate). */
static inline bool word_special(uint64_t x) {
        const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
        uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');

        return (((x - ones * 0x20) | (quote - ones) | (backslash - ones)) & ~x & highs) || (x & highs);
}

/* jansson's dump_string() for valid UTF-8 without JSON_ENSURE_ASCII or
 * JSON_ESCAPE_SLASH: only '"', '\\' and C0 controls are escaped (\uXXXX in
 * upper case hex but for \b \f \n \r \t). Returns false when s is not
 * valid UTF-8 (nothing is left written then). Plain text, the bulk, is
 * skipped 8 bytes at a time. */
static bool jb_escaped(struct jbuf *b, const char *s, size_t len) {
        static const char hex[] = "0123456789ABCDEF";
        size_t start = b->n, i = 0;
        char *o;

        /* Worst case 6 bytes per input byte, the quotes, 8 of slack for the
         * word stores. */
        if (len > (SIZE_MAX - 10) / 6 || !jb_reserve(b, len * 6 + 10))
                return true; /* oom is recorded */
        o = b->p + b->n;
        *o++ = '"';
        while (i < len) {
                unsigned char ch;

                /* Plain text 8 bytes at a time, stored as it is scanned. */
                while (i + 8 <= len) {
                        uint64_t x;
                        memcpy(&x, s + i, 8);
                        if (word_special(x))
                                break;
                        memcpy(o, &x, 8);
                        o += 8;
                        i += 8;
                }
                if (i >= len)
                        break;
                ch = (unsigned char) s[i];
                if (ch >= 0x80) {
                        uint32_t cp;
                        size_t k = utf8_decode(s + i, len - i, &cp);
                        if (cp == UTF8_INVALID) {
                                b->n = start;
                                return false;
                        }
                        memcpy(o, s + i, k);
                        o += k;
                        i += k;
                        continue;
                }
                i++;
                if (ch >= 0x20 && ch != '"' && ch != '\\') {
                        *o++ = (char) ch;
                        continue;
                }
                *o++ = '\\';
                switch (ch) {
                case '"': *o++ = '"'; break;
                case '\\': *o++ = '\\'; break;
                case '\b': *o++ = 'b'; break;
                case '\f': *o++ = 'f'; break;
                case '\n': *o++ = 'n'; break;
                case '\r': *o++ = 'r'; break;
                case '\t': *o++ = 't'; break;
                default:
                        memcpy(o, "u00", 3);
                        o[3] = hex[ch >> 4];
                        o[4] = hex[ch & 0xF];
                        o += 5;
                }
        }
        *o++ = '"';
        b->n = (size_t) (o - b->p);
        return true;
}

/* json_text(), written: null, or the string repaired to valid UTF-8. */
static void jb_text(struct jbuf *b, const char *s) {
        _cleanup_free_ char *clean = NULL;

        if (!s) {
                jb_lit(b, "null");
                return;
        }
        if (jb_escaped(b, s, strlen(s)))
                return;
        clean = utf8_sanitize(s);
        if (!clean) {
                b->oom = true;
                return;
        }
        (void) jb_escaped(b, clean, strlen(clean));
}

static void jb_int(struct jbuf *b, int64_t v) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%" PRId64, v);

        jb_put(b, buf, (size_t) n);
}

static void jb_time(struct jbuf *b, time_t t) {
        char buf[ISO8601_BUFSZ];

        if (t <= 0) {
                jb_lit(b, "null");
                return;
        }
        iso8601_format(t, buf);
        jb_lit(b, "\"");
        jb_put(b, buf, ISO8601_BUFSZ - 1);
        jb_lit(b, "\"");
}

static void jb_evidence(struct jbuf *b, const struct evidence *e) {
        jb_lit(b, "{\"kind\":");
        jb_text(b, evidence_kind_to_string(e->kind));
        jb_lit(b, ",\"id\":");
        jb_text(b, e->id);
        jb_lit(b, ",\"at\":");
        jb_time(b, e->at);
        jb_lit(b, ",\"error\":");
        jb_text(b, e->error);
        jb_lit(b, "}");
}

static void jb_culprit(struct jbuf *b, const struct culprit *c) {
        jb_lit(b, "{\"kind\":");
        jb_text(b, culprit_kind_to_string(c->kind));
        jb_lit(b, ",\"id\":");
        jb_text(b, c->id);
        jb_lit(b, ",\"name\":");
        jb_text(b, c->name);
        jb_lit(b, ",\"entity\":");
        jb_text(b, c->entity);
        jb_lit(b, ",\"message\":");
        jb_text(b, c->message);
        if (c->kind == CULPRIT_PLUGIN_STEP) {
                jb_lit(b, ",\"plugin_type\":");
                jb_text(b, c->plugin_type);
        }
        jb_lit(b, ",\"evidence\":[");
        for (size_t i = 0; i < c->n_evidence; i++) {
                if (i > 0)
                        jb_lit(b, ",");
                jb_evidence(b, &c->evidence[i]);
        }
        jb_lit(b, "]}");
}

char *finding_json_text(const struct finding *f) {
        struct jbuf b = {};
        const struct alert *a = &f->alert;
        const char *code_name = error_code_name(a->code);

        jb_lit(&b, "{\"type\":\"finding\",\"id\":");
        jb_text(&b, f->id);
        jb_lit(&b, ",\"environment\":");
        jb_text(&b, f->environment);
        jb_lit(&b, ",\"detected_at\":");
        jb_time(&b, f->detected_at);

        jb_lit(&b, ",\"alert\":{\"source\":");
        jb_text(&b, alert_source_to_string(a->source));
        jb_lit(&b, ",\"id\":");
        jb_text(&b, a->id);
        jb_lit(&b, ",\"created_on\":");
        jb_time(&b, a->created_on);
        jb_lit(&b, ",\"level\":");
        jb_int(&b, a->level);
        jb_lit(&b, ",\"code\":");
        jb_int(&b, a->code);
        jb_lit(&b, ",\"code_name\":");
        jb_text(&b, code_name);
        jb_lit(&b, ",\"text\":");
        jb_text(&b, a->text);

        jb_lit(&b, "},\"mailbox\":{\"id\":");
        jb_text(&b, f->mailbox.id);
        jb_lit(&b, ",\"name\":");
        jb_text(&b, f->mailbox.name);
        jb_lit(&b, ",\"email\":");
        jb_text(&b, f->mailbox.email);

        jb_lit(&b, "},\"verdict\":");
        jb_text(&b, verdict_to_string(f->verdict));
        jb_lit(&b, ",\"culprits\":[");
        for (size_t i = 0; i < f->n_culprits; i++) {
                if (i > 0)
                        jb_lit(&b, ",");
                jb_culprit(&b, &f->culprits[i]);
        }
        jb_lit(&b, "],\"occurrences\":");
        jb_int(&b, f->occurrences);
        jb_lit(&b, ",\"notes\":[");
        for (size_t i = 0; i < f->n_notes; i++) {
                if (i > 0)
                        jb_lit(&b, ",");
                jb_text(&b, f->notes[i]);
        }
        jb_lit(&b, "],\"remedy\":");
        jb_text(&b, f->remedy);
        jb_lit(&b, "}");
        jb_put(&b, "", 1); /* the terminating NUL */
        if (b.oom) {
                free(b.p);
                return NULL;
        }
        return b.p;
}

/* ---- one line ------------------------------------------------------------ */

/* Every value that did not come from s3mond itself goes through here:
 * quoted (always for names, when needed otherwise), escaped, bounded. */
static void put_value(FILE *f, const char *s, enum quote_mode mode) {
        str_put_quoted(f, s, FINDING_LINE_VALUE_MAX, mode);
}

static char *memstream_finish(FILE *f, char **buf) {
        bool failed = ferror(f);

        if (fclose(f) != 0 || failed)
                return mfree(TAKE_PTR(*buf));
        return TAKE_PTR(*buf);
}

static void put_environment_mailbox(FILE *f, const char *environment, const struct mailbox_info *m) {
        put_value(f, environment, QUOTE_IF_NEEDED);
        fputs(": mailbox ", f);
        if (m->name)
                put_value(f, m->name, QUOTE_ALWAYS);
        else
                put_value(f, m->id ? m->id : "(unknown)", QUOTE_IF_NEEDED);
        if (m->email) {
                fputs(" <", f);
                put_value(f, m->email, QUOTE_IF_NEEDED);
                fputc('>', f);
        }
}

static void put_evidence(FILE *f, const struct culprit *c) {
        const struct evidence *last = NULL;
        char buf[ISO8601_BUFSZ];
        bool session;

        if (c->n_evidence == 0)
                return;
        for (size_t i = 0; i < c->n_evidence; i++)
                if (!last || c->evidence[i].at > last->at)
                        last = &c->evidence[i];
        session = last->kind == EVIDENCE_PROCESS_SESSION;
        /* The date is the alert's; the time of day tells them apart. */
        iso8601_format(last->at, buf);
        if (c->n_evidence == 1)
                fprintf(f, " (%s %s)", session ? "failed session" : "plug-in trace", buf + 11);
        else
                fprintf(f, " (%zu %s, last %s)", c->n_evidence,
                        session ? "failed sessions" : "plug-in traces", buf + 11);
}

char *finding_format_line(const struct finding *f) {
        _cleanup_free_ char *buf = NULL;
        const char *name = error_code_name(f->alert.code);
        size_t size = 0, shown;
        FILE *m = open_memstream(&buf, &size);

        if (!m)
                return NULL;
        put_environment_mailbox(m, f->environment, &f->mailbox);
        if (name)
                fprintf(m, ": %s %" PRId64 " %s", name, f->alert.code, verdict_to_string(f->verdict));
        else
                fprintf(m, ": error %" PRId64 " %s", f->alert.code, verdict_to_string(f->verdict));
        if (f->occurrences > 1)
                fprintf(m, " (%u occurrences)", f->occurrences);
        fputs(": ", m);

        if (f->n_culprits == 0)
                fprintf(m, "no synchronous workflow or plug-in step on %s",
                        f->alert.kind == ALERT_KIND_ACT ? "appointment/contact/task create or update"
                                                        : "email create");
        shown = f->n_culprits < FINDING_LINE_CULPRITS_MAX ? f->n_culprits : FINDING_LINE_CULPRITS_MAX;
        for (size_t i = 0; i < shown; i++) {
                const struct culprit *c = &f->culprits[i];

                if (i > 0)
                        fputs(", ", m);
                fputs(c->kind == CULPRIT_WORKFLOW ? "workflow " : "plug-in step ", m);
                put_value(m, c->name ? c->name : c->id, QUOTE_ALWAYS);
                put_evidence(m, c);
        }
        if (f->n_culprits > shown)
                fprintf(m, " and %zu more", f->n_culprits - shown);
        return memstream_finish(m, &buf);
}

char *resolved_event_format_line(const struct resolved_event *e) {
        _cleanup_free_ char *buf = NULL;
        char at[ISO8601_BUFSZ];
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);

        if (!m)
                return NULL;
        put_environment_mailbox(m, e->environment, &e->mailbox);
        fprintf(m, ": resolved, receiving mail again (%u occurrence%s", e->occurrences,
                e->occurrences == 1 ? "" : "s");
        if (e->last_alert_at > 0)
                fprintf(m, ", last alert %s", iso8601_format(e->last_alert_at, at));
        fputc(')', m);
        return memstream_finish(m, &buf);
}

char *error_event_format_line(const struct error_event *e) {
        _cleanup_free_ char *buf = NULL;
        char since[ISO8601_BUFSZ], at[ISO8601_BUFSZ];
        const char *plural = e->failures == 1 ? "" : "s";
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);

        if (!m)
                return NULL;
        iso8601_format(e->since, since);
        iso8601_format(e->at, at);
        put_value(m, e->environment, QUOTE_IF_NEEDED);
        if (e->state == ERROR_STATE_FAILING) {
                fprintf(m, ": polling failing since %s (", since);
                if (e->query) {
                        put_value(m, e->query, QUOTE_IF_NEEDED);
                        fputs(", ", m);
                }
                fprintf(m, "%u failed attempt%s)", e->failures, plural);
        } else {
                fprintf(m, ": polling recovered at %s after %u failed attempt%s since %s", at,
                        e->failures, plural, since);
                if (e->query) {
                        fputs(" (", m);
                        put_value(m, e->query, QUOTE_IF_NEEDED);
                        fputc(')', m);
                }
        }
        if (e->message) {
                fputs(": ", m);
                put_value(m, e->message, QUOTE_ALWAYS);
        }
        return memstream_finish(m, &buf);
}
