/* cache.c: per-environment cache of mailboxes, possible culprit workflows and
 * steps, merged from full and delta reads. Knows nothing of HTTP or of alerts. */

/* Everything is a sorted array: lookups are binary searches, a delta of d rows
 * into n costs O((n + d) log(n + d)), an idle poll (no delta) costs nothing.
 * Mailboxes are stored as 32-byte entries with a binary GUID and their two
 * strings in one arena, rebuilt on every change. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "guid.h"
#include "suspect.h"

struct mailbox_entry {
        int64_t last_success_on;
        uint8_t id[16];
        uint32_t strings;       /* offset of "name\0email\0" in the arena */
        int16_t incoming_status;
        int16_t act_status;
};

struct cache {
        struct mailbox_entry *mailboxes;        /* sorted by id */
        size_t n_mailboxes;
        char *arena;

        struct workflow_row *definitions;       /* sorted by id */
        size_t n_definitions;
        struct workflow_row *activations;       /* sorted by id */
        size_t n_activations;
        const struct workflow_row **activations_by_parent; /* sorted by parent, id */

        struct step_row *steps;                 /* sorted by id */
        size_t n_steps;

        time_t watermark[_CACHE_TABLE_MAX];
        bool loaded[_CACHE_TABLE_MAX];
};

int cache_new(struct cache **ret) {
        struct cache *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

void cache_free(struct cache *c) {
        if (!c)
                return;
        free(c->mailboxes);
        free(c->arena);
        workflow_rows_free(c->definitions, c->n_definitions);
        workflow_rows_free(c->activations, c->n_activations);
        free(c->activations_by_parent);
        step_rows_free(c->steps, c->n_steps);
        free(c);
}

time_t cache_watermark(const struct cache *c, enum cache_table t) {
        return t < _CACHE_TABLE_MAX ? c->watermark[t] : 0;
}

bool cache_loaded(const struct cache *c, enum cache_table t) {
        return t < _CACHE_TABLE_MAX && c->loaded[t];
}

size_t cache_count(const struct cache *c, enum cache_table t) {
        switch (t) {
        case CACHE_MAILBOXES:
                return c->n_mailboxes;
        case CACHE_WORKFLOWS:
                return c->n_definitions + c->n_activations;
        case CACHE_STEPS:
                return c->n_steps;
        default:
                return 0;
        }
}

static void advance_watermark(struct cache *c, enum cache_table t, time_t modified_on) {
        if (modified_on > c->watermark[t])
                c->watermark[t] = modified_on;
}

/* ---- the rows of one read, deduplicated -------------------------------- */

/* One row of a read; for an id carried twice, the later modifiedon (then
 * the later position) wins. */
struct pick {
        const char *id;
        time_t modified_on;
        size_t index;
};

static int pick_compare(const void *a, const void *b) {
        const struct pick *x = a, *y = b;
        int r = strcmp(x->id, y->id);
        if (r != 0)
                return r;
        if (x->modified_on != y->modified_on)
                return x->modified_on < y->modified_on ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

/* Sort and keep the winner of each id; returns how many are left. */
static size_t picks_settle(struct pick *p, size_t n) {
        size_t k = 0;

        qsort_safe(p, n, sizeof(*p), pick_compare);
        for (size_t i = 0; i < n; i++) {
                if (k > 0 && strcmp(p[k - 1].id, p[i].id) == 0)
                        k--;
                p[k++] = p[i];
        }
        return k;
}

static int pick_id_compare(const void *key, const void *elem) {
        return strcmp(key, ((const struct pick *) elem)->id);
}

static bool picks_contain(const struct pick *p, size_t n, const char *id) {
        return n > 0 && bsearch(id, p, n, sizeof(*p), pick_id_compare);
}

/* Where a table's rows keep their id and modifiedon, and how one is released. */
struct row_layout {
        size_t size, id_offset, modified_offset;
        void (*done)(void *row);
};

static const char *row_id(const struct row_layout *l, const void *row) {
        return *(char *const *) ((const char *) row + l->id_offset);
}

static time_t row_modified_on(const struct row_layout *l, const void *row) {
        return *(const time_t *) ((const char *) row + l->modified_offset);
}

static void *row_at(const struct row_layout *l, void *rows, size_t i) {
        return (char *) rows + i * l->size;
}

/* The winners of a read's n rows, and its newest modifiedon (which moves the
 * watermark, loser or not). */
struct read {
        struct pick *picks;
        size_t n_picks;
        time_t newest;
};

static int read_settle(const struct row_layout *l, void *rows, size_t n, struct read *ret) {
        *ret = (struct read) {};
        if (n > 0 && !(ret->picks = calloc(n, sizeof(*ret->picks))))
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const void *row = row_at(l, rows, i);

                if (row_modified_on(l, row) > ret->newest)
                        ret->newest = row_modified_on(l, row);
                if (row_id(l, row))
                        ret->picks[ret->n_picks++] = (struct pick) { row_id(l, row), row_modified_on(l, row), i };
        }
        ret->n_picks = picks_settle(ret->picks, ret->n_picks);
        return 0;
}

/* The first `keep` of the n old rows that the read does not carry again move
 * to out (which counts *out_n rows); every other old row is released. */
static void keep_unread(const struct row_layout *l, const struct read *r, void *old, size_t n, size_t keep, void *out,
                        size_t *out_n) {
        for (size_t i = 0; i < n; i++) {
                void *row = row_at(l, old, i);

                if (i < keep && !picks_contain(r->picks, r->n_picks, row_id(l, row)))
                        memcpy(row_at(l, out, (*out_n)++), row, l->size);
                else
                        l->done(row);
        }
}

/* Release the rows the merge did not take (it zeroed those it did). */
static void read_done(const struct row_layout *l, struct read *r, void *rows, size_t n) {
        for (size_t i = 0; i < n; i++)
                l->done(row_at(l, rows, i));
        free(r->picks);
        *r = (struct read) {};
}

/* ---- mailboxes ----------------------------------------------------------- */

static int mailbox_entry_compare(const void *a, const void *b) {
        return memcmp(((const struct mailbox_entry *) a)->id, ((const struct mailbox_entry *) b)->id, 16);
}

struct mailbox_pick {
        struct mailbox_entry entry;
        const struct mailbox_row *row;
        size_t index;
};

static int mailbox_pick_compare(const void *a, const void *b) {
        const struct mailbox_pick *x = a, *y = b;
        int r = memcmp(x->entry.id, y->entry.id, 16);
        if (r != 0)
                return r;
        if (x->row->modified_on != y->row->modified_on)
                return x->row->modified_on < y->row->modified_on ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

static size_t strings_size(const char *name, const char *email) {
        return strlen(strempty(name)) + 1 + strlen(strempty(email)) + 1;
}

static char *strings_put(char *p, const char *name, const char *email) {
        p = stpcpy(p, strempty(name)) + 1;
        return stpcpy(p, strempty(email)) + 1;
}

/* The numbers of a mailbox row, all an entry keeps of it but its id and
 * strings: the merge and the in-place update both go through here. */
static void entry_set_numbers(struct mailbox_entry *e, const struct mailbox_row *m) {
        e->incoming_status = (int16_t) m->incoming_status;
        e->act_status = (int16_t) m->act_status;
        e->last_success_on = m->last_success_on;
}

/* The winners of a read of mailboxes (one per id: the later modifiedon, then
 * the later position), sorted by id; *ret_newest is the read's newest. */
static int mailbox_picks(const struct mailbox_row *rows, size_t n, struct mailbox_pick **ret, size_t *ret_n,
                         time_t *ret_newest) {
        struct mailbox_pick *picks = NULL;
        size_t k = 0, j = 0;

        *ret_newest = 0;
        if (n > 0 && !(picks = calloc(n, sizeof(*picks))))
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (rows[i].modified_on > *ret_newest)
                        *ret_newest = rows[i].modified_on;
                if (!rows[i].id || guid_to_bytes(rows[i].id, picks[k].entry.id) < 0)
                        continue; /* rows.c never lets one through */
                picks[k].row = &rows[i];
                picks[k].index = i;
                k++;
        }
        qsort_safe(picks, k, sizeof(*picks), mailbox_pick_compare);
        for (size_t i = 0; i < k; i++) {
                if (j > 0 && memcmp(picks[j - 1].entry.id, picks[i].entry.id, 16) == 0)
                        j--;
                picks[j++] = picks[i];
        }
        *ret = picks;
        *ret_n = j;
        return 0;
}

static const char *entry_name(const struct cache *c, const struct mailbox_entry *e) {
        return c->arena + e->strings;
}

static const char *entry_email(const struct cache *c, const struct mailbox_entry *e) {
        const char *name = entry_name(c, e);
        return name + strlen(name) + 1;
}

/* Merge the n_old first old entries (sorted) with the picks (sorted), the
 * read winning on equal ids, into entries; *ret_size is what their strings
 * take in the arena. Returns how many entries there are. */
static size_t entries_merge(const struct cache *c, size_t n_old, const struct mailbox_pick *picks, size_t n_picks,
                            struct mailbox_entry *entries, size_t *ret_size) {
        size_t i = 0, j = 0, n = 0, size = 0;

        while (i < n_old || j < n_picks) {
                int order = i >= n_old ? 1 : j >= n_picks ? -1 : memcmp(c->mailboxes[i].id, picks[j].entry.id, 16);

                if (order < 0) {
                        size += strings_size(entry_name(c, &c->mailboxes[i]), entry_email(c, &c->mailboxes[i]));
                        entries[n++] = c->mailboxes[i++];
                        continue;
                }
                entries[n] = picks[j].entry;
                entry_set_numbers(&entries[n++], picks[j].row);
                size += strings_size(picks[j].row->name, picks[j].row->email);
                i += order == 0;
                j++;
        }
        *ret_size = size;
        return n;
}

/* Copy the entries' strings into arena: those from the read found again by
 * id among the picks, the others from the old arena. */
static void arena_fill(const struct cache *c, struct mailbox_entry *entries, size_t n, const struct mailbox_pick *picks,
                       size_t n_picks, char *arena) {
        char *p = arena;

        for (size_t i = 0, j = 0; i < n; i++) {
                uint32_t offset = (uint32_t) (p - arena);

                while (j < n_picks && memcmp(picks[j].entry.id, entries[i].id, 16) < 0)
                        j++;
                if (j < n_picks && memcmp(picks[j].entry.id, entries[i].id, 16) == 0)
                        p = strings_put(p, picks[j].row->name, picks[j].row->email);
                else
                        p = strings_put(p, entry_name(c, &entries[i]), entry_email(c, &entries[i]));
                entries[i].strings = offset;
        }
}

/* Merge a read into the mailboxes: the old entries stay unless keep_old is
 * false (full read) or the read carries them again. */
static int mailboxes_merge(struct cache *c, const struct mailbox_row *rows, size_t n, bool keep_old) {
        _cleanup_free_ struct mailbox_pick *picks = NULL;
        _cleanup_free_ struct mailbox_entry *entries = NULL;
        _cleanup_free_ char *arena = NULL;
        size_t n_picks = 0, n_old = keep_old ? c->n_mailboxes : 0, n_entries, size;
        time_t newest;

        if (mailbox_picks(rows, n, &picks, &n_picks, &newest) < 0)
                return -ENOMEM;
        if (n_old + n_picks > 0 && !(entries = calloc(n_old + n_picks, sizeof(*entries))))
                return -ENOMEM;
        n_entries = entries_merge(c, n_old, picks, n_picks, entries, &size);
        if (size > UINT32_MAX)
                return -E2BIG;
        if (size > 0 && !(arena = malloc(size)))
                return -ENOMEM;
        arena_fill(c, entries, n_entries, picks, n_picks, arena);

        free(c->mailboxes);
        free(c->arena);
        c->mailboxes = TAKE_PTR(entries);
        c->n_mailboxes = n_entries;
        c->arena = TAKE_PTR(arena);
        advance_watermark(c, CACHE_MAILBOXES, newest);
        return 0;
}

/* The usual idle poll: the overlap brings the last few modified mailboxes
 * again, all cached under the same name and address. Then only numbers
 * change (incoming and ACT status, last success): update them where they
 * are instead of rebuilding every entry and the string arena (with 200
 * environments x 2,000 mailboxes, that rebuild was a third of the daemon's
 * steady-state CPU). false: merge instead. */
#define MAILBOXES_IN_PLACE_MAX 64
static bool mailboxes_update_in_place(struct cache *c, const struct mailbox_row *rows, size_t n) {
        struct mailbox_entry *found[MAILBOXES_IN_PLACE_MAX];
        time_t newest = 0;

        if (n > MAILBOXES_IN_PLACE_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                struct mailbox_entry key;
                const char *name, *email;

                if (!rows[i].id || guid_to_bytes(rows[i].id, key.id) < 0 || c->n_mailboxes == 0)
                        return false;
                found[i] = bsearch(&key, c->mailboxes, c->n_mailboxes, sizeof(key), mailbox_entry_compare);
                if (!found[i])
                        return false;
                name = entry_name(c, found[i]);
                email = entry_email(c, found[i]);
                if (strcmp(name, strempty(rows[i].name)) != 0 || strcmp(email, strempty(rows[i].email)) != 0)
                        return false;
                for (size_t j = 0; j < i; j++)
                        if (found[j] == found[i])
                                return false; /* twice in one read: the merge picks the later */
        }
        for (size_t i = 0; i < n; i++) {
                entry_set_numbers(found[i], &rows[i]);
                if (rows[i].modified_on > newest)
                        newest = rows[i].modified_on;
        }
        advance_watermark(c, CACHE_MAILBOXES, newest);
        return true;
}

int cache_update_mailboxes(struct cache *c, const struct mailbox_row *rows, size_t n) {
        if (n == 0)
                return 0;
        if (mailboxes_update_in_place(c, rows, n))
                return 0;
        return mailboxes_merge(c, rows, n, true);
}

int cache_replace_mailboxes(struct cache *c, const struct mailbox_row *rows, size_t n) {
        int r = mailboxes_merge(c, rows, n, false);
        if (r < 0)
                return r;
        c->loaded[CACHE_MAILBOXES] = true;
        return 0;
}

bool cache_mailbox_get(const struct cache *c, const char *id, struct cache_mailbox *ret) {
        struct mailbox_entry key;
        const struct mailbox_entry *e;
        const char *name, *email;

        if (!id || c->n_mailboxes == 0 || guid_to_bytes(id, key.id) < 0)
                return false;
        e = bsearch(&key, c->mailboxes, c->n_mailboxes, sizeof(key), mailbox_entry_compare);
        if (!e)
                return false;
        if (ret) {
                name = entry_name(c, e);
                email = entry_email(c, e);
                *ret = (struct cache_mailbox) {
                        .name = *name ? name : NULL,
                        .email = *email ? email : NULL,
                        .incoming_status = e->incoming_status,
                        .act_status = e->act_status,
                        .last_success_on = (time_t) e->last_success_on,
                };
        }
        return true;
}

/* ---- workflows ----------------------------------------------------------- */

/* Kept: what could be a suspect of some alert (the one rule, suspect.h). */
static bool workflow_is_candidate(const struct workflow_row *w) {
        return suspect_workflow_message(w, ITEM_ALL, true) != NULL;
}

static bool workflow_is_activation(const struct workflow_row *w) {
        return w->type == WORKFLOW_TYPE_ACTIVATION && w->category == WORKFLOW_CATEGORY_WORKFLOW && w->parent_id;
}

static int workflow_compare(const void *a, const void *b) {
        return strcmp(((const struct workflow_row *) a)->id, ((const struct workflow_row *) b)->id);
}

static int workflow_id_compare(const void *key, const void *elem) {
        return strcmp(key, ((const struct workflow_row *) elem)->id);
}

static void workflow_done(void *row) {
        workflow_row_done(row);
}

static const struct row_layout workflow_layout = {
        sizeof(struct workflow_row), offsetof(struct workflow_row, id), offsetof(struct workflow_row, modified_on),
        workflow_done,
};

static int activation_parent_compare(const void *a, const void *b) {
        const struct workflow_row *x = *(const struct workflow_row *const *) a,
                                  *y = *(const struct workflow_row *const *) b;
        int r = strcmp(x->parent_id, y->parent_id);
        return r != 0 ? r : strcmp(x->id, y->id);
}

/* Keep the old rows the read does not carry (unless full), move in the
 * winners that can matter, release everything else. */
static int workflows_merge(struct cache *c, struct workflow_row *rows, size_t n, bool keep_old) {
        _cleanup_free_ struct workflow_row *defs = NULL, *acts = NULL;
        _cleanup_free_ const struct workflow_row **by_parent = NULL;
        size_t n_defs = 0, n_acts = 0;
        size_t old_defs = keep_old ? c->n_definitions : 0, old_acts = keep_old ? c->n_activations : 0;
        struct read r;

        if (read_settle(&workflow_layout, rows, n, &r) < 0)
                return -ENOMEM;
        /* Allocate for the worst case first, so a failure changes nothing. */
        if ((old_defs + r.n_picks > 0 && !(defs = calloc(old_defs + r.n_picks, sizeof(*defs)))) ||
            (old_acts + r.n_picks > 0 && (!(acts = calloc(old_acts + r.n_picks, sizeof(*acts))) ||
                                          !(by_parent = calloc(old_acts + r.n_picks, sizeof(*by_parent)))))) {
                free(r.picks);
                return -ENOMEM;
        }
        keep_unread(&workflow_layout, &r, c->definitions, c->n_definitions, old_defs, defs, &n_defs);
        keep_unread(&workflow_layout, &r, c->activations, c->n_activations, old_acts, acts, &n_acts);
        for (size_t i = 0; i < r.n_picks; i++) {
                struct workflow_row *w = &rows[r.picks[i].index];
                if (workflow_is_candidate(w))
                        defs[n_defs++] = *w;
                else if (workflow_is_activation(w))
                        acts[n_acts++] = *w;
                else
                        continue;
                *w = (struct workflow_row) {};
        }
        advance_watermark(c, CACHE_WORKFLOWS, r.newest);
        read_done(&workflow_layout, &r, rows, n); /* losers of duplicate ids, rows that cannot matter */

        qsort_safe(defs, n_defs, sizeof(*defs), workflow_compare);
        qsort_safe(acts, n_acts, sizeof(*acts), workflow_compare);
        for (size_t i = 0; i < n_acts; i++)
                by_parent[i] = &acts[i];
        qsort_safe(by_parent, n_acts, sizeof(*by_parent), activation_parent_compare);

        free(c->definitions);
        free(c->activations);
        free(c->activations_by_parent);
        c->definitions = TAKE_PTR(defs);
        c->n_definitions = n_defs;
        c->activations = TAKE_PTR(acts);
        c->n_activations = n_acts;
        c->activations_by_parent = TAKE_PTR(by_parent);
        return 0;
}

static int steps_merge(struct cache *c, struct step_row *rows, size_t n, bool keep_old);

/* A delta read (nothing to do when empty) or a full read of a table of rows. */
static int table_read(struct cache *c, enum cache_table t, void *rows, size_t n, bool full) {
        int r;

        if (!full && n == 0)
                return 0;
        r = t == CACHE_WORKFLOWS ? workflows_merge(c, rows, n, !full) : steps_merge(c, rows, n, !full);
        if (r >= 0 && full)
                c->loaded[t] = true;
        return r;
}

int cache_update_workflows(struct cache *c, struct workflow_row *rows, size_t n) {
        return table_read(c, CACHE_WORKFLOWS, rows, n, false);
}

int cache_replace_workflows(struct cache *c, struct workflow_row *rows, size_t n) {
        return table_read(c, CACHE_WORKFLOWS, rows, n, true);
}

const struct workflow_row *cache_workflow_definitions(const struct cache *c, size_t *ret_n) {
        *ret_n = c->n_definitions;
        return c->definitions;
}

const struct workflow_row *cache_workflow_get(const struct cache *c, const char *id) {
        const struct workflow_row *w;

        if (!id || c->n_definitions + c->n_activations == 0)
                return NULL;
        w = c->n_definitions ? bsearch(id, c->definitions, c->n_definitions, sizeof(*w), workflow_id_compare)
                             : NULL;
        if (!w && c->n_activations)
                w = bsearch(id, c->activations, c->n_activations, sizeof(*w), workflow_id_compare);
        return w;
}

/* First activation of the definition in activations_by_parent. */
static size_t activations_lower_bound(const struct cache *c, const char *definition_id) {
        size_t lo = 0, hi = c->n_activations;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(c->activations_by_parent[mid]->parent_id, definition_id) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

size_t cache_workflow_activations(const struct cache *c, const char *definition_id,
                                  const struct workflow_row *const **ret) {
        size_t first, last;

        *ret = NULL;
        if (!definition_id || c->n_activations == 0)
                return 0;
        first = activations_lower_bound(c, definition_id);
        for (last = first; last < c->n_activations; last++)
                if (strcmp(c->activations_by_parent[last]->parent_id, definition_id) != 0)
                        break;
        if (last > first)
                *ret = &c->activations_by_parent[first];
        return last - first;
}

const char *cache_workflow_definition_of(const struct cache *c, const char *process_id) {
        const struct workflow_row *w = cache_workflow_get(c, process_id);

        if (!w)
                return NULL;
        return w->type == WORKFLOW_TYPE_ACTIVATION ? w->parent_id : w->id;
}

/* ---- steps --------------------------------------------------------------- */

static bool step_is_candidate(const struct step_row *s) {
        return suspect_step_message(s, ITEM_ALL, true) != NULL;
}

static int step_compare(const void *a, const void *b) {
        return strcmp(((const struct step_row *) a)->id, ((const struct step_row *) b)->id);
}

static int step_id_compare(const void *key, const void *elem) {
        return strcmp(key, ((const struct step_row *) elem)->id);
}

static void step_done(void *row) {
        step_row_done(row);
}

static const struct row_layout step_layout = {
        sizeof(struct step_row), offsetof(struct step_row, id), offsetof(struct step_row, modified_on), step_done,
};

static int steps_merge(struct cache *c, struct step_row *rows, size_t n, bool keep_old) {
        _cleanup_free_ struct step_row *steps = NULL;
        size_t n_steps = 0, old = keep_old ? c->n_steps : 0;
        struct read r;

        if (read_settle(&step_layout, rows, n, &r) < 0)
                return -ENOMEM;
        if (old + r.n_picks > 0 && !(steps = calloc(old + r.n_picks, sizeof(*steps)))) {
                free(r.picks);
                return -ENOMEM;
        }
        keep_unread(&step_layout, &r, c->steps, c->n_steps, old, steps, &n_steps);
        for (size_t i = 0; i < r.n_picks; i++) {
                struct step_row *s = &rows[r.picks[i].index];
                if (!step_is_candidate(s))
                        continue;
                steps[n_steps++] = *s;
                *s = (struct step_row) {};
        }
        advance_watermark(c, CACHE_STEPS, r.newest);
        read_done(&step_layout, &r, rows, n);
        qsort_safe(steps, n_steps, sizeof(*steps), step_compare);

        free(c->steps);
        c->steps = TAKE_PTR(steps);
        c->n_steps = n_steps;
        return 0;
}

int cache_update_steps(struct cache *c, struct step_row *rows, size_t n) {
        return table_read(c, CACHE_STEPS, rows, n, false);
}

int cache_replace_steps(struct cache *c, struct step_row *rows, size_t n) {
        return table_read(c, CACHE_STEPS, rows, n, true);
}

const struct step_row *cache_steps(const struct cache *c, size_t *ret_n) {
        *ret_n = c->n_steps;
        return c->steps;
}

const struct step_row *cache_step_get(const struct cache *c, const char *id) {
        if (!id || c->n_steps == 0)
                return NULL;
        return bsearch(id, c->steps, c->n_steps, sizeof(struct step_row), step_id_compare);
}
