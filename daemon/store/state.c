/* state.c: owns the rules of an environment's remembered state (seen, open, closed, watermarks)
 * and state.h's API over codec and files. Must not know Dataverse, outputs or the cycle. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state-internal.h"

/* ---- small helpers ---------------------------------------------------- */

int state_errorf(char **ret_error, int r, const char *fmt, ...) {
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

void state_warnf(char **w, const char *fmt, ...) {
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


static int strdup_null(const char *s, const char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

/* ---- entries ----------------------------------------------------------- */

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



/* ---- changes in memory (shared by the notes, the snapshot and the replay) ---- */

/* 1 when the entry moved or is new, 0 when it already said AT or later. */
int state_apply_seen(struct env_state *st, const char *alert_id, time_t at) {
        struct seen_entry *e = idmap_get(&st->seen, alert_id);

        if (e) {
                if (at <= e->at)
                        return 0;
                e->at = at;
                st->dirty = true;
                return 1;
        }
        if (idmap_reserve(&st->seen) < 0)
                return -ENOMEM;
        e = calloc(1, sizeof(*e));
        if (!e || !(e->alert_id = strdup(alert_id))) {
                free(e);
                return -ENOMEM;
        }
        e->at = at;
        idmap_put(&st->seen, e->alert_id, e);
        st->dirty = true;
        return 1;
}

int state_apply_finding(struct env_state *st, const struct state_open_finding *f) {
        struct state_open_finding *n, *old, *other;
        int r;

        if (!f || !f->finding_id || !*f->finding_id || !f->alert_id || !*f->alert_id ||
            f->generation == 0 || f->occurrences == 0)
                return -EINVAL;
        old = idmap_get(&st->open, f->alert_id);
        other = idmap_get(&st->open_by_finding, f->finding_id);
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
            (r = idmap_reserve(&st->open)) < 0 ||
            (r = idmap_reserve(&st->open_by_finding)) < 0 ||
            (r = state_apply_seen(st, f->alert_id, f->last_at)) < 0) {
                open_entry_free(n);
                return r;
        }
        if (old)
                idmap_remove(&st->open_by_finding, old->finding_id);
        idmap_put(&st->open, n->alert_id, n);
        idmap_put(&st->open_by_finding, n->finding_id, n);
        open_entry_free(old);
        struct state_closed_finding *c = idmap_remove(&st->closed, n->alert_id);
        if (c)
                closed_entry_free(c);
        st->dirty = true;
        return 0;
}

int state_apply_closed(struct env_state *st, const struct state_closed_finding *c) {
        struct state_closed_finding *n;

        if (!c->alert_id || !*c->alert_id || c->generation == 0)
                return -EINVAL;
        if (idmap_reserve(&st->closed) < 0)
                return -ENOMEM;
        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        *n = *c;
        if (strdup_null(c->alert_id, &n->alert_id) < 0) {
                free(n);
                return -ENOMEM;
        }
        struct state_closed_finding *old = idmap_put(&st->closed, n->alert_id, n);
        if (old)
                closed_entry_free(old);
        st->dirty = true;
        return 0;
}

int state_apply_resolved(struct env_state *st, const char *finding_id, time_t at) {
        struct state_open_finding *f;
        int r;

        if (!finding_id)
                return -EINVAL;
        f = idmap_get(&st->open_by_finding, finding_id);
        if (!f)
                return -ENOENT;
        r = state_apply_closed(st, &(struct state_closed_finding) {
                .alert_id = f->alert_id,
                .generation = f->generation,
                .resolved_at = at,
                .last_at = f->last_at,
        });
        if (r < 0)
                return r;
        idmap_remove(&st->open_by_finding, f->finding_id);
        idmap_remove(&st->open, f->alert_id);
        open_entry_free(f);
        return 0;
}

void state_clear(struct env_state *st) {
        idmap_clear(&st->open_by_finding, NULL);
        idmap_clear(&st->open, open_entry_free);
        idmap_clear(&st->closed, closed_entry_free);
        idmap_clear(&st->seen, seen_entry_free);
        memset(st->watermarks, 0, sizeof(st->watermarks));
        st->serial = 0;
}


/* ---- the API ----------------------------------------------------------- */




int state_open(const char *dir, const char *env, struct env_state **ret, char **ret_message) {
        _cleanup_(state_closep) struct env_state *st = NULL;
        _cleanup_free_ char *reason = NULL, *warning = NULL;
        int r;

        if (ret_message)
                *ret_message = NULL;
        if (!dir || !*dir)
                return state_errorf(ret_message, -EINVAL, "no state directory");
        if (!environment_name_is_valid(env))
                return state_errorf(ret_message, -EINVAL, "invalid environment name for a state file");

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
                return state_errorf(ret_message, -ENOMEM, "out of memory");

        r = state_directory_open(dir);
        if (r < 0)
                return state_errorf(ret_message, r, "cannot open state directory %s: %s", dir, strerror(-r));
        st->dir_fd = r;

        r = state_journal_open(st);
        if (r == -EBUSY)
                return state_errorf(ret_message, r, "the state of environment '%s' in %s is in use by another process",
                              env, dir);

        r = state_snapshot_load(st, &reason);
        if (r == -ENOMEM)
                return state_errorf(ret_message, r, "out of memory reading %s", st->path);
        if (r < 0) {
                _cleanup_free_ char *moved = NULL;
                int k = state_move_aside(st, st->name, &moved);
                if (k >= 0)
                        state_warnf(&warning, "state file %s is unusable (%s); moved it aside to %s and started afresh: "
                              "alerts inside the lookback may be reported again", st->path, strempty(reason),
                              strempty(moved));
                else
                        state_warnf(&warning, "state file %s is unusable (%s) and could not be moved aside (%s); "
                              "started afresh: alerts inside the lookback may be reported again",
                              st->path, strempty(reason), strerror(-k));
        }
        state_journal_replay(st, r > 0, &warning);

        *ret = TAKE_PTR(st);
        if (ret_message)
                *ret_message = TAKE_PTR(warning);
        return 0;
}

void state_close(struct env_state *st) {
        if (!st)
                return;
        state_clear(st);
        state_journal_close(st);
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
        const struct seen_entry *seen = idmap_get(&st->seen, alert_id);
        const struct state_open_finding *o = idmap_get(&st->open, alert_id);
        const struct state_closed_finding *c = idmap_get(&st->closed, alert_id);
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
        const struct seen_entry *e = alert_id ? idmap_get(&st->seen, alert_id) : NULL;
        if (!e)
                return 0;
        if (ret_at)
                *ret_at = e->at;
        return 1;
}

int state_seen_set(struct env_state *st, const char *alert_id, time_t at, char **ret_error) {
        int r;

        if (!alert_id || !*alert_id)
                return state_errorf(ret_error, -EINVAL, "no alert id");
        r = state_apply_seen(st, alert_id, at);
        if (r <= 0)
                return r == 0 ? 0 : state_errorf(ret_error, r, "out of memory");
        return state_journal_append(st, state_codec_seen_line(alert_id, at), ret_error);
}

int state_note_finding(struct env_state *st, const struct state_open_finding *f, char **ret_error) {
        json_t *op = NULL;
        int r;

        /* Made first: F may be a copy of the open finding, whose strings go below. */
        if (f && f->finding_id && f->alert_id)
                op = state_codec_finding_line(f);
        r = state_apply_finding(st, f);
        if (r < 0) {
                json_decref(op);
                if (r == -EINVAL)
                        return state_errorf(ret_error, r, "incomplete finding (no id, or generation/occurrences 0)");
                if (r == -EEXIST)
                        return state_errorf(ret_error, r, "finding id %s belongs to another alert's open finding",
                                      f->finding_id);
                return state_errorf(ret_error, r, "out of memory");
        }
        return state_journal_append(st, op, ret_error);
}

int state_note_resolved(struct env_state *st, const char *finding_id, time_t at, char **ret_error) {
        json_t *op;
        int r;

        /* Made first: FINDING_ID may be the open finding's own string, freed below. */
        op = state_codec_resolved_line(finding_id, at);
        r = state_apply_resolved(st, finding_id, at);
        if (r < 0) {
                json_decref(op);
                if (r == -ENOENT || r == -EINVAL)
                        return state_errorf(ret_error, r, "no open finding %s", strempty(finding_id));
                return state_errorf(ret_error, r, "out of memory");
        }
        return state_journal_append(st, op, ret_error);
}

const struct state_open_finding *state_open_find(const struct env_state *st, const char *alert_id) {
        return alert_id ? idmap_get(&st->open, alert_id) : NULL;
}

const struct state_open_finding *state_open_next(const struct env_state *st, size_t *cursor) {
        return idmap_next(&st->open, cursor);
}

size_t state_open_count(const struct env_state *st) {
        return idmap_count(&st->open);
}

const struct state_closed_finding *state_closed_find(const struct env_state *st, const char *alert_id) {
        return alert_id ? idmap_get(&st->closed, alert_id) : NULL;
}

size_t state_seen_count(const struct env_state *st) {
        return idmap_count(&st->seen);
}

size_t state_closed_count(const struct env_state *st) {
        return idmap_count(&st->closed);
}

size_t state_prune(struct env_state *st, time_t seen_before, time_t closed_before) {
        size_t n = 0, cursor = 0;
        void *v;

        while ((v = idmap_next(&st->seen, &cursor))) {
                struct seen_entry *e = v;
                if (e->at < seen_before && !idmap_get(&st->open, e->alert_id)) {
                        idmap_remove(&st->seen, e->alert_id);
                        seen_entry_free(e);
                        n++;
                }
        }
        cursor = 0;
        while ((v = idmap_next(&st->closed, &cursor))) {
                struct state_closed_finding *c = v;
                if (c->resolved_at < closed_before) {
                        idmap_remove(&st->closed, c->alert_id);
                        closed_entry_free(c);
                        n++;
                }
        }
        if (n > 0)
                st->dirty = true;
        return n;
}




int state_save(struct env_state *st, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        if (!st->dirty)
                return 0;
        text = state_codec_snapshot(st, st->serial + 1, &len);
        if (!text)
                return state_errorf(ret_error, -ENOMEM, "cannot save %s: out of memory", st->path);
        r = state_snapshot_write(st, text, len, ret_error);
        if (r < 0)
                return r;
        st->dirty = false;
        return 1;
}
