/* Unit tests for idmap.c: puts, replaces, removals, growth past many
 * resizes, and a walk that removes the entry it just returned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idmap.h"

struct item {
        char key[16];
        int value;
};

static void test_put_get_remove(void **state) {
        struct idmap m = {};
        struct item a = { "a", 1 }, a2 = { "a", 2 }, b = { "b", 3 };

        (void) state;
        assert_null(idmap_get(&m, "a"));
        assert_int_equal(idmap_reserve(&m), 0);
        assert_null(idmap_put(&m, a.key, &a));
        assert_int_equal(idmap_reserve(&m), 0);
        assert_ptr_equal(idmap_put(&m, a2.key, &a2), &a); /* replaced: handed back */
        assert_int_equal(idmap_reserve(&m), 0);
        assert_null(idmap_put(&m, b.key, &b));
        assert_int_equal(idmap_count(&m), 2);
        assert_ptr_equal(idmap_get(&m, "a"), &a2);
        assert_ptr_equal(idmap_remove(&m, "a"), &a2);
        assert_null(idmap_remove(&m, "a"));
        assert_null(idmap_get(&m, "a"));
        assert_ptr_equal(idmap_get(&m, "b"), &b); /* found past the tombstone */
        assert_int_equal(idmap_count(&m), 1);
        idmap_clear(&m, NULL);
        assert_int_equal(idmap_count(&m), 0);
}

static void test_many_and_walk(void **state) {
        enum { N = 5000 };
        struct item *items = calloc(N, sizeof(*items));
        struct idmap m = {};
        struct item *it;
        size_t cursor = 0, seen = 0, removed = 0;

        (void) state;
        assert_non_null(items);
        for (int i = 0; i < N; i++) {
                snprintf(items[i].key, sizeof(items[i].key), "id-%d", i);
                items[i].value = i;
                assert_int_equal(idmap_reserve(&m), 0);
                assert_null(idmap_put(&m, items[i].key, &items[i]));
        }
        for (int i = 0; i < N; i++)
                assert_ptr_equal(idmap_get(&m, items[i].key), &items[i]);
        /* removing the entry just returned keeps the walk going */
        while ((it = idmap_next(&m, &cursor))) {
                seen++;
                if (it->value % 2 == 0) {
                        assert_ptr_equal(idmap_remove(&m, it->key), it);
                        removed++;
                }
        }
        assert_int_equal(seen, N);
        assert_int_equal(idmap_count(&m), N - removed);
        for (int i = 0; i < N; i++)
                assert_true((idmap_get(&m, items[i].key) != NULL) == (i % 2 == 1));
        idmap_clear(&m, NULL);
        free(items);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_put_get_remove),
                cmocka_unit_test(test_many_and_walk),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
