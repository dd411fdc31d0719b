/* idmap.h: a map from string ids (alert ids, finding ids) to values, the key
 * living inside the value: open addressing, FNV-1a, tombstones, so a walk
 * survives the removal of the entry it just returned. Not thread-safe. */
#pragma once

#include <stddef.h>

struct idmap_slot {
        const char *key;        /* NULL: never used; a private tombstone: deleted */
        void *value;
};

struct idmap {
        struct idmap_slot *slots;
        size_t n_slots;         /* 0 or a power of two */
        size_t n_live;
        size_t n_used;          /* live + tombstones */
};

void *idmap_get(const struct idmap *m, const char *key);
/* Make room for one more key, so that the following idmap_put() cannot fail.
 * 0 or -ENOMEM. */
int idmap_reserve(struct idmap *m);
/* Insert or replace (after idmap_reserve()); key must stay valid as long as
 * it is in the map. Returns the replaced value (the caller's to free), or NULL. */
void *idmap_put(struct idmap *m, const char *key, void *value);
/* Remove and return the value of key, or NULL. */
void *idmap_remove(struct idmap *m, const char *key);
/* Walk the values in no particular order: *cursor = 0 first, NULL at the end. */
void *idmap_next(const struct idmap *m, size_t *cursor);
/* Empty the map, calling free_value (may be NULL) on every value. */
void idmap_clear(struct idmap *m, void (*free_value)(void *));

static inline size_t idmap_count(const struct idmap *m) {
        return m->n_live;
}
