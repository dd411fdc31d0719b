/* idmap.c: the open-addressing hash map of idmap.h.
 * Knows nothing of what the values are. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "idmap.h"

/* Deleted slots keep this key so probing and an ongoing walk stay valid. */
static const char tombstone_key[] = "";
#define TOMBSTONE tombstone_key

static uint64_t hash_string(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * UINT64_C(1099511628211);
        return h;
}

static struct idmap_slot *slot_find(const struct idmap *m, const char *key) {
        if (m->n_slots == 0)
                return NULL;
        for (size_t i = hash_string(key) & (m->n_slots - 1);; i = (i + 1) & (m->n_slots - 1)) {
                struct idmap_slot *s = &m->slots[i];
                if (!s->key)
                        return NULL;
                if (s->key != TOMBSTONE && strcmp(s->key, key) == 0)
                        return s;
        }
}

void *idmap_get(const struct idmap *m, const char *key) {
        struct idmap_slot *s = slot_find(m, key);
        return s ? s->value : NULL;
}

static void idmap_insert_new(struct idmap *m, const char *key, void *value) {
        size_t i = hash_string(key) & (m->n_slots - 1);
        while (m->slots[i].key && m->slots[i].key != TOMBSTONE)
                i = (i + 1) & (m->n_slots - 1);
        if (!m->slots[i].key)
                m->n_used++;
        m->slots[i] = (struct idmap_slot) { key, value };
        m->n_live++;
}

int idmap_reserve(struct idmap *m) {
        struct idmap_slot *old = m->slots;
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
                        idmap_insert_new(m, old[i].key, old[i].value);
        free(old);
        return 0;
}

void *idmap_put(struct idmap *m, const char *key, void *value) {
        struct idmap_slot *s = slot_find(m, key);
        void *old;

        if (s) {
                old = s->value;
                *s = (struct idmap_slot) { key, value };
                return old;
        }
        if (idmap_reserve(m) < 0)
                abort(); /* callers reserve first */
        idmap_insert_new(m, key, value);
        return NULL;
}

void *idmap_remove(struct idmap *m, const char *key) {
        struct idmap_slot *s = slot_find(m, key);
        void *v;

        if (!s)
                return NULL;
        v = s->value;
        *s = (struct idmap_slot) { TOMBSTONE, NULL };
        m->n_live--;
        return v;
}

void *idmap_next(const struct idmap *m, size_t *cursor) {
        for (; *cursor < m->n_slots; (*cursor)++) {
                const struct idmap_slot *s = &m->slots[*cursor];
                if (s->key && s->key != TOMBSTONE) {
                        (*cursor)++;
                        return s->value;
                }
        }
        return NULL;
}

void idmap_clear(struct idmap *m, void (*free_value)(void *)) {
        for (size_t i = 0; i < m->n_slots; i++)
                if (m->slots[i].key && m->slots[i].key != TOMBSTONE && free_value)
                        free_value(m->slots[i].value);
        free(m->slots);
        *m = (struct idmap) {};
}
