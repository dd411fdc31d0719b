/* Unit tests for guid.c: what a GUID is (every module that reads one asks
 * here), its canonical form and its 16 bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "guid.h"

#define G1 "0f3c1a2b-4d5e-4f60-8a71-92b3c4d5e6f7"

static void test_valid(void **state) {
        (void) state;
        assert_true(guid_is_valid(G1));
        assert_true(guid_is_valid("0F3C1A2B-4D5E-4F60-8A71-92B3C4D5E6F7"));
        assert_false(guid_is_valid("{" G1 "}"));
        assert_false(guid_is_valid("0f3c1a2b4d5e4f608a7192b3c4d5e6f7"));
        assert_false(guid_is_valid("0f3c1a2b-4d5e-4f60-8a71-92b3c4d5e6f")); /* short */
        assert_false(guid_is_valid(G1 "0"));
        assert_false(guid_is_valid("0f3c1a2g-4d5e-4f60-8a71-92b3c4d5e6f7"));
        assert_false(guid_is_valid("0f3c1a2b-4d5e-4f60-8a71 92b3c4d5e6f7"));
        assert_false(guid_is_valid("0f3c1a2b-4d5e-4f60-8a71-92b3c4d5e6f7\n"));
        assert_false(guid_is_valid("00000000-0000-0000-0000-000000000000 or 1 eq 1"));
        assert_false(guid_is_valid("x' or '1' eq '1"));
        assert_false(guid_is_valid(""));
        assert_false(guid_is_valid(NULL));
}

static void test_normalize(void **state) {
        (void) state;
        char buf[GUID_STRLEN + 1];
        assert_int_equal(guid_normalize("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0", buf), 0);
        assert_string_equal(buf, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_int_equal(guid_normalize("{0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0}", buf), 0);
        assert_string_equal(buf, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_int_equal(guid_normalize("0f1e2d3c4b5a69788796a5b4c3d2e1f0", buf), -EINVAL);
        assert_int_equal(guid_normalize("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg", buf), -EINVAL);
        assert_int_equal(guid_normalize("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0x", buf), -EINVAL);
        assert_int_equal(guid_normalize("{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", buf), -EINVAL);
        assert_int_equal(guid_normalize("{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}}", buf), -EINVAL);
        assert_int_equal(guid_normalize("", buf), -EINVAL);
        assert_int_equal(guid_normalize(NULL, buf), -EINVAL);
}

static void test_bytes(void **state) {
        (void) state;
        static const uint8_t want[16] = { 0x0f, 0x3c, 0x1a, 0x2b, 0x4d, 0x5e, 0x4f, 0x60,
                                          0x8a, 0x71, 0x92, 0xb3, 0xc4, 0xd5, 0xe6, 0xf7 };
        uint8_t a[16], b[16];

        assert_int_equal(guid_to_bytes(G1, a), 0);
        assert_memory_equal(a, want, 16);
        assert_int_equal(guid_to_bytes("{0F3C1A2B-4D5E-4F60-8A71-92B3C4D5E6F7}", b), 0);
        assert_memory_equal(a, b, 16);
        /* byte order is string order */
        assert_int_equal(guid_to_bytes("0f3c1a2b-4d5e-4f60-8a71-92b3c4d5e6f8", b), 0);
        assert_true(memcmp(a, b, 16) < 0);
        assert_int_equal(guid_to_bytes("not a guid", b), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_normalize),
                cmocka_unit_test(test_bytes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
