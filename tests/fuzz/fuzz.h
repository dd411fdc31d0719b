/* fuzz.h: what every harness of tests/fuzz shares: the libFuzzer entry
 * points, CHECK() for invariants, a reader that turns the fuzzer's bytes into
 * numbers and strings, and independent checkers for the text s3mond emits.
 * Each harness is built twice: with libFuzzer (-Dfuzz=true, clang) and with
 * replay.c's main() in every build, which replays the corpus and the saved
 * regressions. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An invariant: on failure say which, then abort() so that libFuzzer (and
 * replay.c, and ASan) report the input as a crash. */
#define CHECK(cond, ...)                                                               \
        do {                                                                           \
                if (!(cond)) {                                                         \
                        fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,     \
                                __LINE__, #cond);                                      \
                        fprintf(stderr, "  " __VA_ARGS__);                             \
                        fputc('\n', stderr);                                           \
                        abort();                                                       \
                }                                                                      \
        } while (0)

/* A copy of the input as a C string (NUL bytes end it early). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* ---- bytes -> values ------------------------------------------------------
 * Numbers come from the end of the input and strings from the front (as
 * libFuzzer's FuzzedDataProvider does), so mutating a string does not shift
 * every number after it. An exhausted input reads as zeros and "". */

struct fdp {
        const uint8_t *p;
        size_t n;
};

static inline uint64_t fdp_bits(struct fdp *d, unsigned bytes) {
        uint64_t v = 0;

        for (unsigned i = 0; i < bytes && d->n > 0; i++)
                v = (v << 8) | d->p[--d->n];
        return v;
}

static inline uint8_t fdp_u8(struct fdp *d) {
        return (uint8_t) fdp_bits(d, 1);
}

static inline uint32_t fdp_u32(struct fdp *d) {
        return (uint32_t) fdp_bits(d, 4);
}

static inline uint64_t fdp_u64(struct fdp *d) {
        return fdp_bits(d, 8);
}

static inline bool fdp_bool(struct fdp *d) {
        return fdp_bits(d, 1) & 1;
}

/* 0..max inclusive */
static inline unsigned fdp_range(struct fdp *d, unsigned max) {
        return max == 0 ? 0 : (unsigned) (fdp_u32(d) % (max + 1u));
}

/* A string of up to 255 bytes, or (length byte 255) up to 64 KiB: one
 * length byte (two more for long ones) from the end, the bytes from the
 * front. Never NULL. */
static inline char *fdp_str(struct fdp *d) {
        size_t len = fdp_u8(d);
        char *s;

        if (len == 255)
                len = (size_t) fdp_bits(d, 2);
        if (len > d->n)
                len = d->n;
        s = fuzz_strndup(d->p, len);
        d->p += len;
        d->n -= len;
        return s;
}

/* Sometimes NULL (one flag bit), else fdp_str(). */
static inline char *fdp_str_or_null(struct fdp *d) {
        return fdp_bool(d) ? fdp_str(d) : NULL;
}

/* ---- checks of emitted text ------------------------------------------------ */

/* Valid UTF-8 by jansson's validator, which shares no code with utf8.c. */
static inline bool fuzz_utf8_valid(const char *s, size_t n) {
        json_t *j = json_stringn(s, n);
        bool ok = j != NULL;

        json_decref(j);
        return ok;
}

/* One line of text for MESSAGE, syslog or stderr: valid UTF-8 (jansson),
 * no C0 control, DEL, C1 control (U+0080..U+009F) or U+2028/U+2029, every
 * quoted value closed, escapes only \" \\ \n \r \t \xHH \uHHHH, and, when
 * no_equals, no '=' outside the quotes. */
static inline void fuzz_check_line(const char *what, const char *line, bool no_equals) {
        const unsigned char *s = (const unsigned char *) line;
        bool quoted = false;

        CHECK(line, "%s: NULL", what);
        CHECK(fuzz_utf8_valid(line, strlen(line)), "%s: not UTF-8: %s", what, line);
        for (size_t i = 0; s[i]; i++) {
                CHECK(s[i] >= 0x20 && s[i] != 0x7f, "%s: control byte 0x%02x at %zu: %s", what, s[i], i, line);
                CHECK(!(s[i] == 0xc2 && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f), "%s: C1 control at %zu: %s",
                      what, i, line);
                CHECK(!(s[i] == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)),
                      "%s: U+2028/9 at %zu: %s", what, i, line);
                if (!quoted) {
                        CHECK(!(no_equals && s[i] == '='), "%s: '=' outside quotes at %zu: %s", what, i, line);
                        if (s[i] == '"')
                                quoted = true;
                        continue;
                }
                if (s[i] == '"') {
                        quoted = false;
                } else if (s[i] == '\\') {
                        unsigned char e = s[++i];
                        size_t hex = e == 'x' ? 2 : e == 'u' ? 4 : 0;

                        CHECK(e && strchr("\"\\nrtxu", e), "%s: bad escape at %zu: %s", what, i, line);
                        for (size_t k = 0; k < hex; k++)
                                CHECK(s[i + 1 + k] && strchr("0123456789ABCDEF", s[i + 1 + k]),
                                      "%s: bad \\%c escape at %zu: %s", what, e, i, line);
                        i += hex;
                }
        }
        CHECK(!quoted, "%s: a quoted value is not closed: %s", what, line);
}

static inline int fuzz_hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Read one value as strutil.h writes it, from *p: "quoted" (escapes
 * undone) or bare (up to the next space). A new string, or NULL when the
 * text is not a well-formed value. */
static inline char *fuzz_unquote(const char **p) {
        const char *s = *p;
        size_t n = strlen(s), k = 0;
        char *out = malloc(n + 1);

        if (!out)
                abort();
        if (*s != '"') {
                k = strcspn(s, " ");
                memcpy(out, s, k);
                out[k] = '\0';
                *p = s + k;
                return out;
        }
        for (s++; *s && *s != '"'; s++) {
                if (*s != '\\') {
                        out[k++] = *s;
                        continue;
                }
                s++;
                switch (*s) {
                case '"': case '\\': out[k++] = *s; break;
                case 'n': out[k++] = '\n'; break;
                case 'r': out[k++] = '\r'; break;
                case 't': out[k++] = '\t'; break;
                case 'x':
                        if (fuzz_hexval(s[1]) < 0 || fuzz_hexval(s[2]) < 0)
                                goto bad;
                        out[k++] = (char) (fuzz_hexval(s[1]) * 16 + fuzz_hexval(s[2]));
                        s += 2;
                        break;
                case 'u': {
                        unsigned cp = 0;
                        for (int i = 1; i <= 4; i++) {
                                if (fuzz_hexval(s[i]) < 0)
                                        goto bad;
                                cp = cp * 16 + (unsigned) fuzz_hexval(s[i]);
                        }
                        if (cp < 0x80) {
                                out[k++] = (char) cp;
                        } else if (cp < 0x800) {
                                out[k++] = (char) (0xc0 | (cp >> 6));
                                out[k++] = (char) (0x80 | (cp & 0x3f));
                        } else {
                                out[k++] = (char) (0xe0 | (cp >> 12));
                                out[k++] = (char) (0x80 | ((cp >> 6) & 0x3f));
                                out[k++] = (char) (0x80 | (cp & 0x3f));
                        }
                        s += 4;
                        break;
                }
                default:
                        goto bad;
                }
        }
        if (*s != '"')
                goto bad;
        out[k] = '\0';
        *p = s + 1;
        return out;
bad:
        free(out);
        return NULL;
}

#define FUZZ_ELLIPSIS "\xe2\x80\xa6"

/* A value read back by fuzz_unquote() is the expected text (already
 * repaired to UTF-8), or a prefix of it followed by the ellipsis that marks
 * a cut. */
static inline bool fuzz_same_or_cut(const char *got, const char *expected) {
        size_t n = strlen(got), e = strlen(FUZZ_ELLIPSIS);

        if (strcmp(got, expected) == 0)
                return true;
        return n >= e && strcmp(got + n - e, FUZZ_ELLIPSIS) == 0 && strncmp(got, expected, n - e) == 0;
}
