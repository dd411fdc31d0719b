/* state_codec.c: owns the JSON of an environment's state: snapshot text and journal lines, both
 * ways. Must not know files, locks or the cycle; it changes memory only via state-internal.h. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "state-internal.h"
#include "timeutil.h"
#include "utf8.h"

/* ---- values ------------------------------------------------------------ */

/* A copy of s with each byte of an ill-formed UTF-8 sequence replaced by '?'. */
static char *utf8_scrub(const char *s) {
        char *copy = strdup(s);

        if (copy)
                (void) utf8_repair_bytes(copy, strlen(copy), '?');
        return copy;
}

static json_t *json_str(const char *s) {
        json_t *j;
        char *clean;

        if (!s)
                return json_null();
        j = json_string(s);
        if (j)
                return j;
        /* jansson refuses ill-formed UTF-8, and a state file that cannot be
         * written is worse than a mangled mailbox name. */
        clean = utf8_scrub(s);
        j = clean ? json_string(clean) : NULL;
        free(clean);
        return j;
}

static json_t *json_time(time_t t) {
        char buf[ISO8601_BUFSZ];
        return t ? json_string(iso8601_format(t, buf)) : json_null();
}

/* Field readers: return 0, or -EBADMSG with *reason saying which field is wrong. */
static int get_string(json_t *o, const char *key, bool nullable, const char **ret, char **reason) {
        json_t *v = json_object_get(o, key);
        if (nullable && (!v || json_is_null(v))) {
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v) || (!nullable && json_string_length(v) == 0) ||
            strlen(json_string_value(v)) != json_string_length(v))
                return state_errorf(reason, -EBADMSG, "\"%s\" is not a string", key);
        *ret = json_string_value(v);
        return 0;
}

static int get_time(json_t *o, const char *key, bool nullable, time_t *ret, char **reason) {
        json_t *v = json_object_get(o, key);
        const char *s;

        if (nullable && (!v || json_is_null(v))) {
                *ret = 0;
                return 0;
        }
        s = json_string_value(v);
        if (!s || iso8601_parse(s, ret) < 0)
                return state_errorf(reason, -EBADMSG, "\"%s\" is not a timestamp", key);
        return 0;
}

static int get_uint(json_t *o, const char *key, unsigned min, unsigned *ret, char **reason) {
        json_t *v = json_object_get(o, key);
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > UINT_MAX)
                return state_errorf(reason, -EBADMSG, "\"%s\" is not a count", key);
        *ret = (unsigned) json_integer_value(v);
        return 0;
}

static int get_serial(json_t *o, uint64_t *ret, char **reason) {
        json_t *v = json_object_get(o, "serial");
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return state_errorf(reason, -EBADMSG, "\"serial\" is not a count");
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static bool streq_source(const char *s, enum alert_source a) {
        return strcmp(s, alert_source_to_string(a)) == 0;
}

static json_t *open_finding_to_json(const struct state_open_finding *f) {
        return json_pack("{s:o, s:o, s:s, s:s, s:{s:o, s:o, s:o}, s:I, s:I, s:o, s:o, s:o}",
                         "finding_id", json_str(f->finding_id),
                         "alert_id", json_str(f->alert_id),
                         "alert_source", alert_source_to_string(f->alert_source),
                         "alert_kind", f->alert_kind == ALERT_KIND_ACT ? "act" : "email",
                         "mailbox",
                                 "id", json_str(f->mailbox_id),
                                 "name", json_str(f->mailbox_name),
                                 "email", json_str(f->mailbox_email),
                         "generation", (json_int_t) f->generation,
                         "occurrences", (json_int_t) f->occurrences,
                         "first_at", json_time(f->first_at),
                         "last_at", json_time(f->last_at),
                         "opened_at", json_time(f->opened_at));
}

/* Fills *f with strings borrowed from O. */
static int open_finding_from_json(json_t *o, struct state_open_finding *f, char **reason) {
        json_t *mb = json_object_get(o, "mailbox");
        const char *source, *kind = NULL;
        int r;

        *f = (struct state_open_finding) {};
        if (!json_is_object(o))
                return state_errorf(reason, -EBADMSG, "an open finding is not an object");
        if ((r = get_string(o, "finding_id", false, &f->finding_id, reason)) < 0 ||
            (r = get_string(o, "alert_id", false, &f->alert_id, reason)) < 0 ||
            (r = get_string(o, "alert_source", false, &source, reason)) < 0 ||
            (r = get_string(o, "alert_kind", true, &kind, reason)) < 0 ||
            (r = get_uint(o, "generation", 1, &f->generation, reason)) < 0 ||
            (r = get_uint(o, "occurrences", 1, &f->occurrences, reason)) < 0 ||
            (r = get_time(o, "first_at", false, &f->first_at, reason)) < 0 ||
            (r = get_time(o, "last_at", false, &f->last_at, reason)) < 0 ||
            (r = get_time(o, "opened_at", false, &f->opened_at, reason)) < 0)
                return r;
        if (streq_source(source, ALERT_SOURCE_TRACELOG))
                f->alert_source = ALERT_SOURCE_TRACELOG;
        else if (streq_source(source, ALERT_SOURCE_MAILBOX))
                f->alert_source = ALERT_SOURCE_MAILBOX;
        else
                return state_errorf(reason, -EBADMSG, "\"alert_source\" is unknown");
        /* Absent in files written before ACT findings resolved on their own. */
        if (!kind || strcmp(kind, "email") == 0)
                f->alert_kind = ALERT_KIND_EMAIL;
        else if (strcmp(kind, "act") == 0)
                f->alert_kind = ALERT_KIND_ACT;
        else
                return state_errorf(reason, -EBADMSG, "\"alert_kind\" is unknown");
        if (!json_is_object(mb))
                return state_errorf(reason, -EBADMSG, "\"mailbox\" is not an object");
        if ((r = get_string(mb, "id", true, &f->mailbox_id, reason)) < 0 ||
            (r = get_string(mb, "name", true, &f->mailbox_name, reason)) < 0 ||
            (r = get_string(mb, "email", true, &f->mailbox_email, reason)) < 0)
                return r;
        return 0;
}

static json_t *closed_finding_to_json(const struct state_closed_finding *c) {
        return json_pack("{s:o, s:I, s:o, s:o}",
                         "alert_id", json_str(c->alert_id),
                         "generation", (json_int_t) c->generation,
                         "resolved_at", json_time(c->resolved_at),
                         "last_at", json_time(c->last_at));
}

static int closed_finding_from_json(json_t *o, struct state_closed_finding *c, char **reason) {
        int r;

        *c = (struct state_closed_finding) {};
        if (!json_is_object(o))
                return state_errorf(reason, -EBADMSG, "a closed finding is not an object");
        if ((r = get_string(o, "alert_id", false, &c->alert_id, reason)) < 0 ||
            (r = get_uint(o, "generation", 1, &c->generation, reason)) < 0 ||
            (r = get_time(o, "resolved_at", false, &c->resolved_at, reason)) < 0 ||
            (r = get_time(o, "last_at", false, &c->last_at, reason)) < 0)
                return r;
        return 0;
}


/* ---- the snapshot ------------------------------------------------------ */

static json_t *snapshot_to_json(const struct env_state *st, uint64_t serial) {
        json_t *seen = json_object(), *open = json_array(), *closed = json_array(), *root;
        size_t cursor;
        void *v;

        if (!seen || !open || !closed)
                goto fail;
        cursor = 0;
        while ((v = idmap_next(&st->seen, &cursor))) {
                const struct seen_entry *e = v;
                char *key = utf8_scrub(e->alert_id);
                int r = key ? json_object_set_new(seen, key, json_time(e->at)) : -1;
                free(key);
                if (r < 0)
                        goto fail;
        }
        cursor = 0;
        while ((v = idmap_next(&st->open, &cursor)))
                if (json_array_append_new(open, open_finding_to_json(v)) < 0)
                        goto fail;
        cursor = 0;
        while ((v = idmap_next(&st->closed, &cursor)))
                if (json_array_append_new(closed, closed_finding_to_json(v)) < 0)
                        goto fail;
        root = json_pack("{s:s, s:i, s:s, s:I, s:{s:o, s:o}, s:o, s:o, s:o}",
                         "format", STATE_FORMAT,
                         "version", STATE_VERSION,
                         "environment", st->env,
                         "serial", (json_int_t) serial,
                         "watermarks",
                                 "tracelogs", json_time(st->watermarks[STATE_WATERMARK_TRACELOGS]),
                                 "mailboxes", json_time(st->watermarks[STATE_WATERMARK_MAILBOXES]),
                         "seen", seen,
                         "open", open,
                         "closed", closed);
        return root;
fail:
        json_decref(seen);
        json_decref(open);
        json_decref(closed);
        return NULL;
}
/* Checks the header fields common to the snapshot and the journal's first line. */
static int check_header(const struct env_state *st, json_t *root, const char *format, char **reason) {
        json_t *v;
        const char *env;

        if (!json_is_object(root))
                return state_errorf(reason, -EBADMSG, "not a JSON object");
        v = json_object_get(root, "format");
        if (!json_is_string(v) || strcmp(json_string_value(v), format) != 0)
                return state_errorf(reason, -EBADMSG, "not an s3mond state file (\"format\" is not \"%s\")", format);
        v = json_object_get(root, "version");
        if (!json_is_integer(v) || json_integer_value(v) < 1)
                return state_errorf(reason, -EBADMSG, "\"version\" is not a version number");
        if (json_integer_value(v) > STATE_VERSION)
                return state_errorf(reason, -EPROTONOSUPPORT,
                              "written by a newer s3mond (format version %" JSON_INTEGER_FORMAT
                              ", this one reads %d)", json_integer_value(v), STATE_VERSION);
        v = json_object_get(root, "environment");
        env = json_is_string(v) ? json_string_value(v) : NULL;
        if (!env)
                return state_errorf(reason, -EBADMSG, "\"environment\" is missing");
        if (strcmp(env, st->env) != 0)
                return state_errorf(reason, -EXDEV, "it belongs to environment '%s'",
                              environment_name_is_valid(env) ? env : "(invalid name)");
        return 0;
}
int state_codec_load_snapshot(struct env_state *st, json_t *root, char **reason) {
        json_t *wm, *seen, *open, *closed, *v;
        const char *key;
        size_t i;
        int r;

        if ((r = check_header(st, root, STATE_FORMAT, reason)) < 0 ||
            (r = get_serial(root, &st->serial, reason)) < 0)
                return r;
        wm = json_object_get(root, "watermarks");
        seen = json_object_get(root, "seen");
        open = json_object_get(root, "open");
        closed = json_object_get(root, "closed");
        if (!json_is_object(wm) || !json_is_object(seen) || !json_is_array(open) || !json_is_array(closed))
                return state_errorf(reason, -EBADMSG, "\"watermarks\", \"seen\", \"open\" or \"closed\" is missing or of the wrong type");
        if ((r = get_time(wm, "tracelogs", true, &st->watermarks[STATE_WATERMARK_TRACELOGS], reason)) < 0 ||
            (r = get_time(wm, "mailboxes", true, &st->watermarks[STATE_WATERMARK_MAILBOXES], reason)) < 0)
                return r;
        json_object_foreach(seen, key, v) {
                time_t at;
                if (!*key || !json_is_string(v) || iso8601_parse(json_string_value(v), &at) < 0)
                        return state_errorf(reason, -EBADMSG, "\"seen\" holds a bad entry");
                if ((r = state_apply_seen(st, key, at)) < 0)
                        return r;
        }
        json_array_foreach(closed, i, v) {
                struct state_closed_finding c;
                if ((r = closed_finding_from_json(v, &c, reason)) < 0 || (r = state_apply_closed(st, &c)) < 0)
                        return r;
        }
        json_array_foreach(open, i, v) {
                struct state_open_finding f;
                if ((r = open_finding_from_json(v, &f, reason)) < 0)
                        return r;
                r = state_apply_finding(st, &f);
                if (r == -EEXIST)
                        return state_errorf(reason, -EBADMSG, "two open findings share an id");
                if (r < 0)
                        return r;
        }
        return 0;
}
char *state_codec_snapshot(const struct env_state *st, uint64_t serial, size_t *ret_len) {
        json_t *root = snapshot_to_json(st, serial);
        char *text = root ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL, *t;
        size_t len;

        json_decref(root);
        if (!text)
                return NULL;
        len = strlen(text);
        t = realloc(text, len + 2);
        if (!t) {
                free(text);
                return NULL;
        }
        t[len++] = '\n';
        t[len] = 0;
        *ret_len = len;
        return t;
}
/* ---- the journal ------------------------------------------------------- */

char *state_codec_log_header(const struct env_state *st) {
        json_t *h = json_pack("{s:s, s:i, s:s, s:I}", "format", STATE_LOG_FORMAT,
                              "version", STATE_VERSION, "environment", st->env,
                              "serial", (json_int_t) st->serial);
        char *s = h ? json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(h);
        return s;
}
int state_codec_replay_line(struct env_state *st, json_t *o) {
        const char *op, *s;
        _cleanup_free_ char *reason = NULL;
        time_t at;

        if (!json_is_object(o) || get_string(o, "op", false, &op, &reason) < 0)
                return -EBADMSG;
        if (strcmp(op, "finding") == 0) {
                struct state_open_finding f;
                if (open_finding_from_json(o, &f, &reason) < 0)
                        return -EBADMSG;
                return state_apply_finding(st, &f);
        }
        if (get_time(o, "at", false, &at, &reason) < 0)
                return -EBADMSG;
        if (strcmp(op, "resolved") == 0) {
                if (get_string(o, "finding_id", false, &s, &reason) < 0)
                        return -EBADMSG;
                return state_apply_resolved(st, s, at);
        }
        if (strcmp(op, "seen") == 0) {
                if (get_string(o, "alert_id", false, &s, &reason) < 0)
                        return -EBADMSG;
                return state_apply_seen(st, s, at);
        }
        return -EBADMSG;
}
int state_codec_check_log_header(const struct env_state *st, json_t *header, uint64_t *ret_serial, char **reason) {
        int r = check_header(st, header, STATE_LOG_FORMAT, reason);

        return r < 0 ? r : get_serial(header, ret_serial, reason);
}

json_t *state_codec_finding_line(const struct state_open_finding *f) {
        json_t *line = open_finding_to_json(f);

        if (line && json_object_set_new(line, "op", json_string("finding")) < 0)
                line = (json_decref(line), NULL);
        return line;
}

json_t *state_codec_resolved_line(const char *finding_id, time_t at) {
        return json_pack("{s:s, s:o, s:o}", "op", "resolved", "finding_id", json_str(finding_id), "at", json_time(at));
}

json_t *state_codec_seen_line(const char *alert_id, time_t at) {
        return json_pack("{s:s, s:o, s:o}", "op", "seen", "alert_id", json_str(alert_id), "at", json_time(at));
}
