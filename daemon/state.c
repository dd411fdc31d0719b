/* state.c: one environment's persistent state: the snapshot and journal files, their
 * atomic replacement, replay and locking. Must not know Dataverse, outputs or the cycle. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "state.h"
#include "timeutil.h"
#include "utf8.h"

#define STATE_FORMAT "s3mond-state"
#define STATE_LOG_FORMAT "s3mond-state-log"
#define STATE_VERSION 1
#define ENV_NAME_MAX 64

/* ---- a string-keyed hash map; the key lives inside the value ------------ */

/* Deleted slots keep this key so probing and an ongoing walk stay valid. */
static const char tombstone_key[] = "";
#define TOMBSTONE tombstone_key

struct strmap_slot {
        const char *key;        /* NULL: never used; TOMBSTONE: deleted */
        void *value;
};

struct strmap {
        struct strmap_slot *slots;
        size_t n_slots;         /* 0 or a power of two */
        size_t n_live;
        size_t n_used;          /* live + tombstones */
};

static uint64_t hash_string(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * UINT64_C(1099511628211);
        return h;
}

static struct strmap_slot *strmap_slot(const struct strmap *m, const char *key) {
        if (m->n_slots == 0)
                return NULL;
        for (size_t i = hash_string(key) & (m->n_slots - 1);; i = (i + 1) & (m->n_slots - 1)) {
                struct strmap_slot *s = &m->slots[i];
                if (!s->key)
                        return NULL;
                if (s->key != TOMBSTONE && strcmp(s->key, key) == 0)
                        return s;
        }
}

static void *strmap_get(const struct strmap *m, const char *key) {
        struct strmap_slot *s = strmap_slot(m, key);
        return s ? s->value : NULL;
}

static void strmap_insert_new(struct strmap *m, const char *key, void *value) {
        size_t i = hash_string(key) & (m->n_slots - 1);
        while (m->slots[i].key && m->slots[i].key != TOMBSTONE)
                i = (i + 1) & (m->n_slots - 1);
        if (!m->slots[i].key)
                m->n_used++;
        m->slots[i] = (struct strmap_slot) { key, value };
        m->n_live++;
}

/* Make room for one more key, so the following strmap_put() cannot fail. */
static int strmap_reserve(struct strmap *m) {
        struct strmap_slot *old = m->slots;
        size_t n_old = m->n_slots, n = 16;

        if ((m->n_used + 1) * 4 < m->n_slots * 3)
                return 0;
        while (n < (m->n_live + 1) * 2)
                n *= 2;
        m->slots = calloc(n, sizeof(*m->slots));
        if (!m->slots) {
                m->slots = old;
                return -ENOMEM;
        }
        m->n_slots = n;
        m->n_live = m->n_used = 0;
        for (size_t i = 0; i < n_old; i++)
                if (old[i].key && old[i].key != TOMBSTONE)
                        strmap_insert_new(m, old[i].key, old[i].value);
        free(old);
        return 0;
}

/* Insert or replace; returns the replaced value (caller frees it), or NULL. */
static void *strmap_put(struct strmap *m, const char *key, void *value) {
        struct strmap_slot *s = strmap_slot(m, key);
        void *old;

        if (s) {
                old = s->value;
                *s = (struct strmap_slot) { key, value };
                return old;
        }
        if (strmap_reserve(m) < 0)
                abort(); /* callers reserve first */
        strmap_insert_new(m, key, value);
        return NULL;
}

static void *strmap_remove(struct strmap *m, const char *key) {
        struct strmap_slot *s = strmap_slot(m, key);
        void *v;

        if (!s)
                return NULL;
        v = s->value;
        *s = (struct strmap_slot) { TOMBSTONE, NULL };
        m->n_live--;
        return v;
}

static void *strmap_next(const struct strmap *m, size_t *cursor) {
        for (; *cursor < m->n_slots; (*cursor)++) {
                const struct strmap_slot *s = &m->slots[*cursor];
                if (s->key && s->key != TOMBSTONE) {
                        (*cursor)++;
                        return s->value;
                }
        }
        return NULL;
}

/* Empties the map, calling FREE_VALUE on every value. */
static void strmap_clear(struct strmap *m, void (*free_value)(void *)) {
        for (size_t i = 0; i < m->n_slots; i++)
                if (m->slots[i].key && m->slots[i].key != TOMBSTONE)
                        free_value(m->slots[i].value);
        free(m->slots);
        *m = (struct strmap) {};
}

/* ---- entries ----------------------------------------------------------- */

struct seen_entry {
        char *alert_id;
        time_t at;
};

static void seen_entry_free(void *p) {
        struct seen_entry *e = p;
        free(e->alert_id);
        free(e);
}

/* The strings of a state_open_finding / state_closed_finding held by the state are
 * owned by it: allocated here, freed here. */
static void open_entry_free(void *p) {
        struct state_open_finding *f = p;
        if (!f)
                return;
        free((char *) f->finding_id);
        free((char *) f->alert_id);
        free((char *) f->mailbox_id);
        free((char *) f->mailbox_name);
        free((char *) f->mailbox_email);
        free(f);
}

static void closed_entry_free(void *p) {
        struct state_closed_finding *c = p;
        free((char *) c->alert_id);
        free(c);
}

static void nop_free(void *p) {
        (void) p;
}

struct env_state {
        char *env;
        char *dir;
        char *path;             /* DIR/ENV.state */
        char *log_path;         /* DIR/ENV.state.log */
        char *name;             /* ENV.state, relative to dir_fd */
        char *log_name;
        char *tmp_name;
        int dir_fd;
        int log_fd;             /* -1 when not open */
        bool log_writable;      /* log_fd is O_RDWR|O_APPEND and locked */
        off_t log_size;         /* bytes of whole lines in the journal */
        uint64_t log_serial;    /* serial in the journal's header (when log_size > 0) */
        uint64_t serial;        /* serial of the snapshot the memory starts from */
        bool dirty;             /* memory differs from the snapshot */
        unsigned crash_passes;

        time_t watermarks[_STATE_WATERMARK_MAX];
        struct strmap seen;     /* alert id -> struct seen_entry */
        struct strmap open;     /* alert id -> struct state_open_finding */
        struct strmap open_by_finding; /* finding id -> the same, not owning */
        struct strmap closed;   /* alert id -> struct state_closed_finding */
};

/* ---- small helpers ---------------------------------------------------- */

_printf_(3, 4)
static int errorf(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;
        char *s = NULL;

        if (!ret_error)
                return r;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        *ret_error = s;
        return r;
}

/* Appends "; "-separated sentences to *w. */
_printf_(2, 3)
static void warnf(char **w, const char *fmt, ...) {
        va_list ap;
        char *s = NULL, *joined = NULL;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (!s)
                return;
        if (!*w) {
                *w = s;
                return;
        }
        if (asprintf(&joined, "%s; %s", *w, s) >= 0) {
                free(*w);
                *w = joined;
        }
        free(s);
}

static bool env_name_valid(const char *s) {
        size_t n = 0;
        if (!s)
                return false;
        for (; s[n]; n++)
                if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
                      (s[n] >= '0' && s[n] <= '9') || strchr("._-", s[n])))
                        return false;
        return n >= 1 && n <= ENV_NAME_MAX;
}

static int strdup_null(const char *s, const char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

/* True when S3MOND_TEST_CRASH_AT names POINT and this pass is the one to die at. */
static bool crash_armed(struct env_state *st, const char *point) {
        const char *e = getenv("S3MOND_TEST_CRASH_AT");
        size_t n = strlen(point);
        unsigned long want = 1;

        if (!e || strncmp(e, point, n) != 0)
                return false;
        if (e[n] == ':')
                want = strtoul(e + n + 1, NULL, 10);
        else if (e[n])
                return false;
        return ++st->crash_passes >= want;
}

void state_crash_point(struct env_state *st, const char *point) {
        if (crash_armed(st, point))
                raise(SIGKILL);
}

/* ---- JSON <-> values --------------------------------------------------- */

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
                return errorf(reason, -EBADMSG, "\"%s\" is not a string", key);
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
                return errorf(reason, -EBADMSG, "\"%s\" is not a timestamp", key);
        return 0;
}

static int get_uint(json_t *o, const char *key, unsigned min, unsigned *ret, char **reason) {
        json_t *v = json_object_get(o, key);
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > UINT_MAX)
                return errorf(reason, -EBADMSG, "\"%s\" is not a count", key);
        *ret = (unsigned) json_integer_value(v);
        return 0;
}

static int get_serial(json_t *o, uint64_t *ret, char **reason) {
        json_t *v = json_object_get(o, "serial");
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return errorf(reason, -EBADMSG, "\"serial\" is not a count");
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
                return errorf(reason, -EBADMSG, "an open finding is not an object");
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
                return errorf(reason, -EBADMSG, "\"alert_source\" is unknown");
        /* Absent in files written before ACT findings resolved on their own. */
        if (!kind || strcmp(kind, "email") == 0)
                f->alert_kind = ALERT_KIND_EMAIL;
        else if (strcmp(kind, "act") == 0)
                f->alert_kind = ALERT_KIND_ACT;
        else
                return errorf(reason, -EBADMSG, "\"alert_kind\" is unknown");
        if (!json_is_object(mb))
                return errorf(reason, -EBADMSG, "\"mailbox\" is not an object");
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
                return errorf(reason, -EBADMSG, "a closed finding is not an object");
        if ((r = get_string(o, "alert_id", false, &c->alert_id, reason)) < 0 ||
            (r = get_uint(o, "generation", 1, &c->generation, reason)) < 0 ||
            (r = get_time(o, "resolved_at", false, &c->resolved_at, reason)) < 0 ||
            (r = get_time(o, "last_at", false, &c->last_at, reason)) < 0)
                return r;
        return 0;
}

/* ---- changes in memory (shared by the notes, the snapshot and the replay) ---- */

/* 1 when the entry moved or is new, 0 when it already said AT or later. */
static int apply_seen(struct env_state *st, const char *alert_id, time_t at) {
        struct seen_entry *e = strmap_get(&st->seen, alert_id);

        if (e) {
                if (at <= e->at)
                        return 0;
                e->at = at;
                st->dirty = true;
                return 1;
        }
        if (strmap_reserve(&st->seen) < 0)
                return -ENOMEM;
        e = calloc(1, sizeof(*e));
        if (!e || !(e->alert_id = strdup(alert_id))) {
                free(e);
                return -ENOMEM;
        }
        e->at = at;
        strmap_put(&st->seen, e->alert_id, e);
        st->dirty = true;
        return 1;
}

static int apply_finding(struct env_state *st, const struct state_open_finding *f) {
        struct state_open_finding *n, *old, *other;
        int r;

        if (!f || !f->finding_id || !*f->finding_id || !f->alert_id || !*f->alert_id ||
            f->generation == 0 || f->occurrences == 0)
                return -EINVAL;
        old = strmap_get(&st->open, f->alert_id);
        other = strmap_get(&st->open_by_finding, f->finding_id);
        if (other && other != old)
                return -EEXIST; /* that finding id belongs to another alert's finding */

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        *n = *f;
        n->finding_id = n->alert_id = n->mailbox_id = n->mailbox_name = n->mailbox_email = NULL;
        if ((r = strdup_null(f->finding_id, &n->finding_id)) < 0 ||
            (r = strdup_null(f->alert_id, &n->alert_id)) < 0 ||
            (r = strdup_null(f->mailbox_id, &n->mailbox_id)) < 0 ||
            (r = strdup_null(f->mailbox_name, &n->mailbox_name)) < 0 ||
            (r = strdup_null(f->mailbox_email, &n->mailbox_email)) < 0 ||
            (r = strmap_reserve(&st->open)) < 0 ||
            (r = strmap_reserve(&st->open_by_finding)) < 0 ||
            (r = apply_seen(st, f->alert_id, f->last_at)) < 0) {
                open_entry_free(n);
                return r;
        }
        if (old)
                strmap_remove(&st->open_by_finding, old->finding_id);
        strmap_put(&st->open, n->alert_id, n);
        strmap_put(&st->open_by_finding, n->finding_id, n);
        open_entry_free(old);
        struct state_closed_finding *c = strmap_remove(&st->closed, n->alert_id);
        if (c)
                closed_entry_free(c);
        st->dirty = true;
        return 0;
}

static int apply_closed(struct env_state *st, const struct state_closed_finding *c) {
        struct state_closed_finding *n;

        if (!c->alert_id || !*c->alert_id || c->generation == 0)
                return -EINVAL;
        if (strmap_reserve(&st->closed) < 0)
                return -ENOMEM;
        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        *n = *c;
        if (strdup_null(c->alert_id, &n->alert_id) < 0) {
                free(n);
                return -ENOMEM;
        }
        struct state_closed_finding *old = strmap_put(&st->closed, n->alert_id, n);
        if (old)
                closed_entry_free(old);
        st->dirty = true;
        return 0;
}

static int apply_resolved(struct env_state *st, const char *finding_id, time_t at) {
        struct state_open_finding *f;
        int r;

        if (!finding_id)
                return -EINVAL;
        f = strmap_get(&st->open_by_finding, finding_id);
        if (!f)
                return -ENOENT;
        r = apply_closed(st, &(struct state_closed_finding) {
                .alert_id = f->alert_id,
                .generation = f->generation,
                .resolved_at = at,
                .last_at = f->last_at,
        });
        if (r < 0)
                return r;
        strmap_remove(&st->open_by_finding, f->finding_id);
        strmap_remove(&st->open, f->alert_id);
        open_entry_free(f);
        return 0;
}

static void state_clear(struct env_state *st) {
        strmap_clear(&st->open_by_finding, nop_free);
        strmap_clear(&st->open, open_entry_free);
        strmap_clear(&st->closed, closed_entry_free);
        strmap_clear(&st->seen, seen_entry_free);
        memset(st->watermarks, 0, sizeof(st->watermarks));
        st->serial = 0;
}

/* ---- the snapshot ------------------------------------------------------ */

static json_t *snapshot_to_json(const struct env_state *st, uint64_t serial) {
        json_t *seen = json_object(), *open = json_array(), *closed = json_array(), *root;
        size_t cursor;
        void *v;

        if (!seen || !open || !closed)
                goto fail;
        cursor = 0;
        while ((v = strmap_next(&st->seen, &cursor))) {
                const struct seen_entry *e = v;
                char *key = utf8_scrub(e->alert_id);
                int r = key ? json_object_set_new(seen, key, json_time(e->at)) : -1;
                free(key);
                if (r < 0)
                        goto fail;
        }
        cursor = 0;
        while ((v = strmap_next(&st->open, &cursor)))
                if (json_array_append_new(open, open_finding_to_json(v)) < 0)
                        goto fail;
        cursor = 0;
        while ((v = strmap_next(&st->closed, &cursor)))
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
                return errorf(reason, -EBADMSG, "not a JSON object");
        v = json_object_get(root, "format");
        if (!json_is_string(v) || strcmp(json_string_value(v), format) != 0)
                return errorf(reason, -EBADMSG, "not an s3mond state file (\"format\" is not \"%s\")", format);
        v = json_object_get(root, "version");
        if (!json_is_integer(v) || json_integer_value(v) < 1)
                return errorf(reason, -EBADMSG, "\"version\" is not a version number");
        if (json_integer_value(v) > STATE_VERSION)
                return errorf(reason, -EPROTONOSUPPORT,
                              "written by a newer s3mond (format version %" JSON_INTEGER_FORMAT
                              ", this one reads %d)", json_integer_value(v), STATE_VERSION);
        v = json_object_get(root, "environment");
        env = json_is_string(v) ? json_string_value(v) : NULL;
        if (!env)
                return errorf(reason, -EBADMSG, "\"environment\" is missing");
        if (strcmp(env, st->env) != 0)
                return errorf(reason, -EXDEV, "it belongs to environment '%s'",
                              env_name_valid(env) ? env : "(invalid name)");
        return 0;
}

static int snapshot_from_json(struct env_state *st, json_t *root, char **reason) {
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
                return errorf(reason, -EBADMSG, "\"watermarks\", \"seen\", \"open\" or \"closed\" is missing or of the wrong type");
        if ((r = get_time(wm, "tracelogs", true, &st->watermarks[STATE_WATERMARK_TRACELOGS], reason)) < 0 ||
            (r = get_time(wm, "mailboxes", true, &st->watermarks[STATE_WATERMARK_MAILBOXES], reason)) < 0)
                return r;
        json_object_foreach(seen, key, v) {
                time_t at;
                if (!*key || !json_is_string(v) || iso8601_parse(json_string_value(v), &at) < 0)
                        return errorf(reason, -EBADMSG, "\"seen\" holds a bad entry");
                if ((r = apply_seen(st, key, at)) < 0)
                        return r;
        }
        json_array_foreach(closed, i, v) {
                struct state_closed_finding c;
                if ((r = closed_finding_from_json(v, &c, reason)) < 0 || (r = apply_closed(st, &c)) < 0)
                        return r;
        }
        json_array_foreach(open, i, v) {
                struct state_open_finding f;
                if ((r = open_finding_from_json(v, &f, reason)) < 0)
                        return r;
                r = apply_finding(st, &f);
                if (r == -EEXIST)
                        return errorf(reason, -EBADMSG, "two open findings share an id");
                if (r < 0)
                        return r;
        }
        return 0;
}

/* 1 when loaded, 0 when there is none; -EBADMSG (and others) with *reason when the
 * file exists but cannot be used. */
static int snapshot_load(struct env_state *st, char **reason) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        json_error_t jerr;
        json_t *root;
        struct stat sb;
        size_t len;
        int r;

        fd = openat(st->dir_fd, st->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                r = -errno;
                return errorf(reason, r, "cannot read it: %s", strerror(-r));
        }
        if (fstat(fd, &sb) < 0) {
                r = -errno;
                return errorf(reason, r, "cannot read it: %s", strerror(-r));
        }
        if (!S_ISREG(sb.st_mode))
                return errorf(reason, -EBADMSG, "not a regular file");
        if (sb.st_size == 0)
                return errorf(reason, -EBADMSG, "empty");
        /* json_loadfd() reads a byte per system call: read it whole instead. */
        r = read_all(fd, &text, &len);
        if (r < 0)
                return errorf(reason, r, "cannot read it: %s", strerror(-r));
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return errorf(reason, -EBADMSG, "not valid JSON (line %d: %s)", jerr.line, jerr.text);
        r = snapshot_from_json(st, root, reason);
        json_decref(root);
        if (r < 0)
                state_clear(st);
        st->dirty = false;
        return r < 0 ? r : 1;
}

/* Renames NAME (relative to the state directory) to NAME.corrupt-<unix time>[.N]
 * without replacing anything; *ret_new is the new path. */
static int move_aside(struct env_state *st, const char *name, char **ret_new) {
        long long t = (long long) time(NULL);

        for (unsigned i = 0; i < 100; i++) {
                _cleanup_free_ char *n = NULL;
                if ((i == 0 ? asprintf(&n, "%s.corrupt-%lld", name, t)
                            : asprintf(&n, "%s.corrupt-%lld.%u", name, t, i)) < 0)
                        return -ENOMEM;
                if (renameat2(st->dir_fd, name, st->dir_fd, n, RENAME_NOREPLACE) < 0) {
                        if (errno == EEXIST)
                                continue;
                        if (errno != EINVAL)
                                return -errno;
                        /* no RENAME_NOREPLACE on this file system */
                        if (faccessat(st->dir_fd, n, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                                continue;
                        if (renameat(st->dir_fd, name, st->dir_fd, n) < 0)
                                return -errno;
                }
                if (asprintf(ret_new, "%s/%s", st->dir, n) < 0)
                        *ret_new = NULL;
                return 0;
        }
        return -EEXIST;
}

/* ---- the journal ------------------------------------------------------- */

static char *log_header_line(const struct env_state *st) {
        json_t *h = json_pack("{s:s, s:i, s:s, s:I}", "format", STATE_LOG_FORMAT,
                              "version", STATE_VERSION, "environment", st->env,
                              "serial", (json_int_t) st->serial);
        char *s = h ? json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(h);
        return s;
}

static void log_close(struct env_state *st) {
        if (st->log_fd >= 0)
                close(st->log_fd); /* drops the lock */
        st->log_fd = -1;
        st->log_writable = false;
}

/* Opens the journal for appending (creating it, 0600) and locks it. -EBUSY when
 * another process holds it. INITIAL: at state_open(), before the replay; later, the
 * file is expected to hold exactly the log_size bytes this process wrote or replayed. */
static int log_open_writable(struct env_state *st, bool initial) {
        struct stat sb;
        int fd;

        fd = openat(st->dir_fd, st->log_name, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        (void) fchmod(fd, 0600); /* an existing file keeps the mode it must have */
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                close(fd);
                return r;
        }
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                int r = fstat(fd, &sb) < 0 ? -errno : -EBADF;
                close(fd);
                return r;
        }
        log_close(st);
        st->log_fd = fd;
        st->log_writable = true;
        /* A torn line was left, or the journal changed under us: keep what we know to
         * be whole; the rest is in memory and goes into the next snapshot. */
        if (!initial && sb.st_size != st->log_size) {
                if (sb.st_size < st->log_size)
                        st->log_size = 0;
                if (ftruncate(fd, st->log_size) < 0) {
                        st->log_size = sb.st_size;
                        st->log_serial = UINT64_MAX; /* the next append starts it afresh */
                }
        }
        return 0;
}

/* Starts an empty journal for the current snapshot. */
static int log_reset(struct env_state *st) {
        _cleanup_free_ char *h = NULL, *line = NULL;
        int r;

        if (!st->log_writable && (r = log_open_writable(st, false)) < 0)
                return r;
        if (ftruncate(st->log_fd, 0) < 0)
                return -errno;
        st->log_size = 0;
        state_crash_point(st, "state-after-log-truncate");
        h = log_header_line(st);
        if (!h || asprintf(&line, "%s\n", h) < 0)
                return -ENOMEM;
        r = write_all(st->log_fd, line, strlen(line));
        if (r < 0) {
                (void) ftruncate(st->log_fd, 0);
                return r;
        }
        st->log_size = (off_t) strlen(line);
        st->log_serial = st->serial;
        return 0;
}

/* Appends one line (takes ownership of OP). The memory already holds the change. */
static int log_append(struct env_state *st, json_t *op, char **ret_error) {
        _cleanup_free_ char *text = NULL, *line = NULL, *header = NULL;
        size_t len;
        int r;

        text = op ? json_dumps(op, JSON_COMPACT) : NULL;
        json_decref(op);
        if (!text)
                return errorf(ret_error, -ENOMEM, "cannot append to %s: out of memory", st->log_path);
        if (!st->log_writable && (r = log_open_writable(st, false)) < 0)
                return errorf(ret_error, r, "cannot open %s: %s", st->log_path, strerror(-r));
        if (st->log_size == 0 || st->log_serial != st->serial) {
                /* The journal is empty or predates the snapshot: start it afresh. */
                if (st->log_size > 0 && ftruncate(st->log_fd, 0) < 0) {
                        r = -errno;
                        return errorf(ret_error, r, "cannot empty %s: %s", st->log_path, strerror(-r));
                }
                st->log_size = 0;
                header = log_header_line(st);
                if (!header)
                        return errorf(ret_error, -ENOMEM, "cannot append to %s: out of memory", st->log_path);
        }
        if (asprintf(&line, "%s%s%s\n", strempty(header), header ? "\n" : "", text) < 0)
                return errorf(ret_error, -ENOMEM, "cannot append to %s: out of memory", st->log_path);
        len = strlen(line);
        if (crash_armed(st, "state-log-mid-append")) {
                (void) write_all(st->log_fd, line, len / 2);
                raise(SIGKILL);
        }
        r = write_all(st->log_fd, line, len);
        if (r < 0) {
                /* Cut a partial line off, so the next append starts on a line of its own. */
                (void) ftruncate(st->log_fd, st->log_size);
                return errorf(ret_error, r, "cannot append to %s: %s", st->log_path, strerror(-r));
        }
        st->log_size += (off_t) len;
        if (header)
                st->log_serial = st->serial;
        return 0;
}

static int replay_line(struct env_state *st, json_t *o) {
        const char *op, *s;
        _cleanup_free_ char *reason = NULL;
        time_t at;

        if (!json_is_object(o) || get_string(o, "op", false, &op, &reason) < 0)
                return -EBADMSG;
        if (strcmp(op, "finding") == 0) {
                struct state_open_finding f;
                if (open_finding_from_json(o, &f, &reason) < 0)
                        return -EBADMSG;
                return apply_finding(st, &f);
        }
        if (get_time(o, "at", false, &at, &reason) < 0)
                return -EBADMSG;
        if (strcmp(op, "resolved") == 0) {
                if (get_string(o, "finding_id", false, &s, &reason) < 0)
                        return -EBADMSG;
                return apply_resolved(st, s, at);
        }
        if (strcmp(op, "seen") == 0) {
                if (get_string(o, "alert_id", false, &s, &reason) < 0)
                        return -EBADMSG;
                return apply_seen(st, s, at);
        }
        return -EBADMSG;
}

/* Replays the journal over the snapshot (HAVE_SNAPSHOT) or over a fresh state.
 * A journal that predates the snapshot is left for the next append to reset; a
 * foreign one is moved aside. */
static void log_replay(struct env_state *st, bool have_snapshot, char **warning) {
        _cleanup_free_ char *buf = NULL, *reason = NULL;
        size_t size = 0, end, skipped = 0, applied = 0;
        uint64_t serial = 0;
        json_t *header = NULL;
        char *nl;
        int r;

        if (st->log_fd < 0)
                return;
        r = read_all(st->log_fd, &buf, &size);
        if (r < 0) {
                warnf(warning, "cannot read %s (%s): notes since the last save are lost", st->log_path, strerror(-r));
                return;
        }
        nl = memrchr(buf, '\n', size);
        end = nl ? (size_t) (nl - buf) + 1 : 0;
        if (end < size && st->log_writable) /* a torn last line: the note in flight */
                (void) ftruncate(st->log_fd, (off_t) end);
        st->log_size = (off_t) end;
        if (end == 0)
                return;

        nl = memchr(buf, '\n', end);
        header = json_loadb(buf, (size_t) (nl - buf), 0, NULL);
        r = header ? check_header(st, header, STATE_LOG_FORMAT, &reason) : -EBADMSG;
        if (r >= 0)
                r = get_serial(header, &serial, &reason);
        json_decref(header);
        if (r < 0) {
                _cleanup_free_ char *moved = NULL;
                int k = st->log_writable ? move_aside(st, st->log_name, &moved) : -EROFS;
                st->log_size = 0;
                if (k >= 0) {
                        log_close(st);
                        (void) log_open_writable(st, true);
                }
                warnf(warning, "journal %s is unusable (%s); %s%s", st->log_path,
                      reason ? reason : "its first line is not a journal header",
                      k >= 0 ? "moved it aside to " : "could not move it aside", k >= 0 ? strempty(moved) : "");
                return;
        }
        st->log_serial = serial;
        if (have_snapshot && serial < st->serial)
                return; /* written before the snapshot, which holds all of it */

        for (char *p = nl + 1; p < buf + end; p = nl + 1) {
                json_t *o;
                nl = memchr(p, '\n', (size_t) (buf + end - p));
                o = json_loadb(p, (size_t) (nl - p), 0, NULL);
                r = o ? replay_line(st, o) : -EBADMSG;
                json_decref(o);
                if (r == -EBADMSG || r == -EEXIST || r == -EINVAL)
                        skipped++;
                else if (r == -ENOMEM) {
                        warnf(warning, "out of memory replaying %s", st->log_path);
                        break;
                } else
                        applied++; /* -ENOENT: resolved twice, already applied */
        }
        if (serial > st->serial)
                st->serial = serial;
        if (applied > 0)
                st->dirty = true;
        if (skipped > 0)
                warnf(warning, "%zu unreadable line(s) in %s skipped: those findings may be reported again",
                      skipped, st->log_path);
}

/* ---- the API ----------------------------------------------------------- */

static int open_directory(const char *dir) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 && errno == ENOENT) {
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return -errno;
                fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        return fd < 0 ? -errno : fd;
}

/* For a journal we cannot write (read-only directory, not our file): still read it. */
static int log_open_readonly(struct env_state *st) {
        int fd = openat(st->dir_fd, st->log_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        struct stat sb;

        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                close(fd);
                return 0;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
                close(fd);
                return -EBUSY;
        }
        st->log_fd = fd;
        return 0;
}

int state_open(const char *dir, const char *env, struct env_state **ret, char **ret_message) {
        _cleanup_(state_closep) struct env_state *st = NULL;
        _cleanup_free_ char *reason = NULL, *warning = NULL;
        int r;

        if (ret_message)
                *ret_message = NULL;
        if (!dir || !*dir)
                return errorf(ret_message, -EINVAL, "no state directory");
        if (!env_name_valid(env))
                return errorf(ret_message, -EINVAL, "invalid environment name for a state file");

        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        st->dir_fd = st->log_fd = -1;
        if (!(st->env = strdup(env)) || !(st->dir = strdup(dir)) ||
            asprintf(&st->name, "%s.state", env) < 0 ||
            asprintf(&st->log_name, "%s.state.log", env) < 0 ||
            asprintf(&st->tmp_name, "%s.state.tmp", env) < 0 ||
            asprintf(&st->path, "%s/%s", dir, st->name) < 0 ||
            asprintf(&st->log_path, "%s/%s", dir, st->log_name) < 0)
                return errorf(ret_message, -ENOMEM, "out of memory");

        r = open_directory(dir);
        if (r < 0)
                return errorf(ret_message, r, "cannot open state directory %s: %s", dir, strerror(-r));
        st->dir_fd = r;

        r = log_open_writable(st, true);
        if (r >= 0)
                (void) unlinkat(st->dir_fd, st->tmp_name, 0); /* left by a crash in state_save() */
        else if (r != -EBUSY)
                r = log_open_readonly(st);
        if (r == -EBUSY)
                return errorf(ret_message, r, "the state of environment '%s' in %s is in use by another process",
                              env, dir);

        r = snapshot_load(st, &reason);
        if (r == -ENOMEM)
                return errorf(ret_message, r, "out of memory reading %s", st->path);
        if (r < 0) {
                _cleanup_free_ char *moved = NULL;
                int k = move_aside(st, st->name, &moved);
                if (k >= 0)
                        warnf(&warning, "state file %s is unusable (%s); moved it aside to %s and started afresh: "
                              "alerts inside the lookback may be reported again", st->path, strempty(reason),
                              strempty(moved));
                else
                        warnf(&warning, "state file %s is unusable (%s) and could not be moved aside (%s); "
                              "started afresh: alerts inside the lookback may be reported again",
                              st->path, strempty(reason), strerror(-k));
        }
        log_replay(st, r > 0, &warning);

        *ret = TAKE_PTR(st);
        if (ret_message)
                *ret_message = TAKE_PTR(warning);
        return 0;
}

void state_close(struct env_state *st) {
        if (!st)
                return;
        state_clear(st);
        log_close(st);
        if (st->dir_fd >= 0)
                close(st->dir_fd);
        free(st->env);
        free(st->dir);
        free(st->path);
        free(st->log_path);
        free(st->name);
        free(st->log_name);
        free(st->tmp_name);
        free(st);
}

const char *state_environment(const struct env_state *st) {
        return st->env;
}

const char *state_path(const struct env_state *st) {
        return st->path;
}

time_t state_watermark_get(const struct env_state *st, enum state_watermark w) {
        if ((unsigned) w >= _STATE_WATERMARK_MAX)
                return 0;
        return st->watermarks[w];
}

void state_watermark_set(struct env_state *st, enum state_watermark w, time_t at) {
        if ((unsigned) w >= _STATE_WATERMARK_MAX || st->watermarks[w] == at)
                return;
        st->watermarks[w] = at;
        st->dirty = true;
}

enum state_alert_class state_classify(const struct env_state *st, const char *alert_id, time_t at,
                                      unsigned *ret_generation) {
        const struct seen_entry *seen = strmap_get(&st->seen, alert_id);
        const struct state_open_finding *o = strmap_get(&st->open, alert_id);
        const struct state_closed_finding *c = strmap_get(&st->closed, alert_id);
        bool reported = seen && at <= seen->at;
        unsigned generation;
        enum state_alert_class class;

        if (o) {
                generation = o->generation;
                class = reported || at <= o->last_at ? STATE_ALERT_REPORTED : STATE_ALERT_RECURRENCE;
        } else if (c) {
                bool old = reported || at <= c->last_at;
                generation = old ? c->generation : c->generation + 1;
                class = old ? STATE_ALERT_REPORTED : STATE_ALERT_REOPENED;
        } else if (reported) {
                generation = 0;
                class = STATE_ALERT_REPORTED;
        } else {
                generation = 1;
                class = STATE_ALERT_NEW;
        }
        if (ret_generation)
                *ret_generation = generation;
        return class;
}

int state_seen_get(const struct env_state *st, const char *alert_id, time_t *ret_at) {
        const struct seen_entry *e = alert_id ? strmap_get(&st->seen, alert_id) : NULL;
        if (!e)
                return 0;
        if (ret_at)
                *ret_at = e->at;
        return 1;
}

int state_seen_set(struct env_state *st, const char *alert_id, time_t at, char **ret_error) {
        int r;

        if (!alert_id || !*alert_id)
                return errorf(ret_error, -EINVAL, "no alert id");
        r = apply_seen(st, alert_id, at);
        if (r <= 0)
                return r == 0 ? 0 : errorf(ret_error, r, "out of memory");
        return log_append(st, json_pack("{s:s, s:o, s:o}", "op", "seen", "alert_id", json_str(alert_id),
                                        "at", json_time(at)), ret_error);
}

int state_note_finding(struct env_state *st, const struct state_open_finding *f, char **ret_error) {
        json_t *op = NULL;
        int r;

        /* Made first: F may be a copy of the open finding, whose strings go below. */
        if (f && f->finding_id && f->alert_id) {
                op = open_finding_to_json(f);
                if (op && json_object_set_new(op, "op", json_string("finding")) < 0)
                        op = (json_decref(op), NULL);
        }
        r = apply_finding(st, f);
        if (r < 0) {
                json_decref(op);
                if (r == -EINVAL)
                        return errorf(ret_error, r, "incomplete finding (no id, or generation/occurrences 0)");
                if (r == -EEXIST)
                        return errorf(ret_error, r, "finding id %s belongs to another alert's open finding",
                                      f->finding_id);
                return errorf(ret_error, r, "out of memory");
        }
        return log_append(st, op, ret_error);
}

int state_note_resolved(struct env_state *st, const char *finding_id, time_t at, char **ret_error) {
        json_t *op;
        int r;

        /* Made first: FINDING_ID may be the open finding's own string, freed below. */
        op = json_pack("{s:s, s:o, s:o}", "op", "resolved", "finding_id", json_str(finding_id),
                       "at", json_time(at));
        r = apply_resolved(st, finding_id, at);
        if (r < 0) {
                json_decref(op);
                if (r == -ENOENT || r == -EINVAL)
                        return errorf(ret_error, r, "no open finding %s", strempty(finding_id));
                return errorf(ret_error, r, "out of memory");
        }
        return log_append(st, op, ret_error);
}

const struct state_open_finding *state_open_find(const struct env_state *st, const char *alert_id) {
        return alert_id ? strmap_get(&st->open, alert_id) : NULL;
}

const struct state_open_finding *state_open_next(const struct env_state *st, size_t *cursor) {
        return strmap_next(&st->open, cursor);
}

size_t state_open_count(const struct env_state *st) {
        return st->open.n_live;
}

const struct state_closed_finding *state_closed_find(const struct env_state *st, const char *alert_id) {
        return alert_id ? strmap_get(&st->closed, alert_id) : NULL;
}

size_t state_seen_count(const struct env_state *st) {
        return st->seen.n_live;
}

size_t state_closed_count(const struct env_state *st) {
        return st->closed.n_live;
}

size_t state_prune(struct env_state *st, time_t seen_before, time_t closed_before) {
        size_t n = 0, cursor = 0;
        void *v;

        while ((v = strmap_next(&st->seen, &cursor))) {
                struct seen_entry *e = v;
                if (e->at < seen_before && !strmap_get(&st->open, e->alert_id)) {
                        strmap_remove(&st->seen, e->alert_id);
                        seen_entry_free(e);
                        n++;
                }
        }
        cursor = 0;
        while ((v = strmap_next(&st->closed, &cursor))) {
                struct state_closed_finding *c = v;
                if (c->resolved_at < closed_before) {
                        strmap_remove(&st->closed, c->alert_id);
                        closed_entry_free(c);
                        n++;
                }
        }
        if (n > 0)
                st->dirty = true;
        return n;
}

static char *snapshot_text(const struct env_state *st, uint64_t serial, size_t *ret_len) {
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

/* state_save()'s test hooks, under the names the crash tests use. */
static void save_checkpoint(const char *point, void *userdata) {
        _cleanup_free_ char *name = NULL;

        if (asprintf(&name, "state-%s", point) >= 0)
                state_crash_point(userdata, name);
}

int state_save(struct env_state *st, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        const char *step;
        size_t len;
        int r;

        if (!st->dirty)
                return 0;
        text = snapshot_text(st, st->serial + 1, &len);
        if (!text)
                return errorf(ret_error, -ENOMEM, "cannot save %s: out of memory", st->path);
        r = file_replace(&(struct file_replace) {
                                 .dir_fd = st->dir_fd,
                                 .name = st->name,
                                 .tmp_name = st->tmp_name,
                                 .mode = 0600,
                                 .sync = true,
                                 .checkpoint = save_checkpoint,
                                 .userdata = st,
                         }, text, len, &step);
        if (r < 0)
                return errorf(ret_error, r, "cannot save %s: %s %s/%s: %s", st->path, step, st->dir, st->tmp_name,
                              strerror(-r));

        /* The new snapshot is in place and holds every note: the journal is old news. */
        st->serial++;
        r = fsync(st->dir_fd) < 0 ? -errno : 0;
        state_crash_point(st, "state-after-rename");
        (void) log_reset(st); /* on failure the next append empties it */
        if (r < 0) /* stays dirty: the next save writes it again */
                return errorf(ret_error, r, "saved %s but could not sync its directory: %s", st->path, strerror(-r));
        st->dirty = false;
        return 1;
}
