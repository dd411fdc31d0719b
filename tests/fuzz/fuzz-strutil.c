/* fuzz-strutil.c: UTF-8 repair and one-line quoting (strutil.h) on
 * arbitrary bytes. Invariants: utf8_decode() accounts for every byte once
 * and never yields an overlong form, a surrogate or more than U+10FFFF;
 * utf8_is_valid() agrees with jansson's validator; utf8_sanitize() gives
 * valid UTF-8 and changes only ill-formed input; utf8_repair_bytes() gives
 * valid UTF-8 of the same length, the same bytes when it counts no repair;
 * str_quote() gives one clean
 * line, quoted exactly when it must be, within max_out escaped bytes, that
 * reads back as the (repaired) input or a prefix of it ending in U+2026. */
#include <string.h>

#include "fuzz.h"
#include "strutil.h"
#include "utf8.h"

static bool reference_bare_token(const char *str) {
        const unsigned char *s = (const unsigned char *) str;

        if (!*s)
                return false;
        for (; *s; s++)
                if (*s <= ' ' || *s >= 0x7f || *s == '"' || *s == '\'' || *s == '\\' || *s == '=')
                        return false;
        return true;
}

static void check_decode(const char *s, size_t n) {
        while (n > 0) {
                uint32_t cp;
                size_t k = utf8_decode(s, n, &cp);

                CHECK(k >= 1 && k <= 4 && k <= n, "utf8_decode() consumed %zu of %zu bytes", k, n);
                if (cp != UTF8_INVALID) {
                        size_t len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;

                        CHECK(cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF), "utf8_decode() = U+%X", cp);
                        CHECK(k == len, "utf8_decode(): U+%X in %zu bytes (overlong)", cp, k);
                        CHECK(fuzz_utf8_valid(s, k), "utf8_decode(): U+%X from bytes jansson refuses", cp);
                }
                s += k;
                n -= k;
        }
}

static void check_sanitize(const char *s) {
        char *clean = utf8_sanitize(s);
        size_t n = strlen(s);

        CHECK(clean, "utf8_sanitize(): NULL");
        CHECK(fuzz_utf8_valid(clean, strlen(clean)), "utf8_sanitize() gave invalid UTF-8");
        CHECK(strlen(clean) <= 3 * n, "utf8_sanitize() grew %zu bytes to %zu", n, strlen(clean));
        if (fuzz_utf8_valid(s, n))
                CHECK(strcmp(clean, s) == 0, "utf8_sanitize() changed valid UTF-8");
        else
                CHECK(strcmp(clean, s) != 0, "utf8_sanitize() left invalid UTF-8 alone");
        free(clean);
}

static void check_repair_bytes(const char *s, size_t n) {
        char *copy = malloc(n + 1);
        size_t repairs;

        CHECK(copy, "malloc()");
        memcpy(copy, s, n);
        repairs = utf8_repair_bytes(copy, n, '?');
        CHECK(fuzz_utf8_valid(copy, n), "utf8_repair_bytes() left invalid UTF-8");
        CHECK((repairs == 0) == (memcmp(copy, s, n) == 0), "utf8_repair_bytes() counted %zu repairs", repairs);
        CHECK((repairs == 0) == fuzz_utf8_valid(s, n), "utf8_repair_bytes(): %zu repairs of %s UTF-8", repairs,
              repairs ? "valid" : "invalid");
        free(copy);
}

static void check_quote(const char *s, size_t max_out, enum quote_mode mode) {
        char *q = str_quote(s, max_out, mode), *whole = str_quote(s, SIZE_MAX, QUOTE_ALWAYS);
        char *clean = utf8_sanitize(s), *back;
        size_t n = strlen(s), qn, whole_len, used;
        bool must_quote = mode == QUOTE_ALWAYS || !reference_bare_token(s) || n > max_out, cut;
        const char *p;

        CHECK(q && whole && clean, "str_quote(): NULL");
        qn = strlen(q);
        whole_len = strlen(whole) - 2; /* the escaped text, uncut */
        fuzz_check_line("str_quote()", q, true);
        if (!must_quote) {
                CHECK(strcmp(q, s) == 0, "str_quote(\"%s\") = %s: a bare token changed", s, q);
                goto out;
        }
        CHECK(qn >= 2 && q[0] == '"' && q[qn - 1] == '"', "str_quote(\"%s\", %zu) = %s: not quoted", s, max_out, q);
        p = q;
        back = fuzz_unquote(&p);
        CHECK(back && *p == '\0', "str_quote(): %s does not read back as one value", q);
        CHECK(fuzz_same_or_cut(back, clean), "str_quote(\"%s\", %zu) = %s reads back as \"%s\"", s, max_out, q,
              back);
        free(back);
        /* Cut exactly when the whole does not fit, and then as late as it can:
         * the escape that did not fit is at most 6 bytes ("\u2028"). */
        cut = whole_len > max_out;
        if (cut) {
                CHECK(qn - 2 >= strlen(FUZZ_ELLIPSIS) &&
                      strcmp(q + qn - 1 - strlen(FUZZ_ELLIPSIS), FUZZ_ELLIPSIS "\"") == 0,
                      "str_quote(%zu escaped bytes, %zu) = %s: cut without an ellipsis", whole_len, max_out, q);
                used = qn - 2 - strlen(FUZZ_ELLIPSIS);
                CHECK(used <= max_out && used + 6 > max_out, "str_quote(%zu escaped bytes, %zu): cut after %zu",
                      whole_len, max_out, used);
        } else
                CHECK(strcmp(q + 1, whole + 1) == 0, "str_quote(\"%s\", %zu) = %s: cut though it fits", s,
                      max_out, q);
out:
        free(q);
        free(whole);
        free(clean);
}

static void check_pair(const char *s, size_t max_out) {
        char *buf = NULL, *q = str_quote(s, max_out, QUOTE_IF_NEEDED), *expected;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        CHECK(f && q, "open_memstream() or str_quote(): NULL");
        CHECK(str_put_pair(f, "key", s, max_out) == 0, "str_put_pair() failed");
        CHECK(fclose(f) == 0, "fclose()");
        CHECK(asprintf(&expected, " key=%s", q) > 0, "asprintf()");
        CHECK(strcmp(buf, expected) == 0, "str_put_pair() = '%s', str_quote() = '%s'", buf, q);
        free(expected);
        free(buf);
        free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = fuzz_strndup(data, size);
        size_t max_out = size > 0 ? data[0] * 4u : 0;

        /* The raw bytes, NULs included. */
        CHECK(utf8_is_valid((const char *) data, size) == fuzz_utf8_valid((const char *) data, size),
              "utf8_is_valid() disagrees with jansson on %zu bytes", size);
        if (size > 0)
                check_decode((const char *) data, size);
        check_repair_bytes((const char *) data, size);

        CHECK(str_is_bare_token(s) == reference_bare_token(s), "str_is_bare_token(\"%s\")", s);
        check_sanitize(s);
        check_quote(s, max_out, QUOTE_ALWAYS);
        check_quote(s, max_out, QUOTE_IF_NEEDED);
        check_quote(s, 256, QUOTE_IF_NEEDED);
        check_quote(s, 0, QUOTE_ALWAYS);
        check_quote(s, SIZE_MAX, QUOTE_IF_NEEDED);
        check_pair(s, 512);
        free(s);
        return 0;
}
