/* utf8.c: decoding, checking, repairing and encoding UTF-8, after RFC 3629.
 * Knows nothing of where the text comes from or goes. */
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

size_t utf8_decode(const char *str, size_t n, uint32_t *ret_cp) {
        const unsigned char *s = (const unsigned char *) str;
        unsigned char lo = 0x80, hi = 0xBF;
        size_t len, i;
        uint32_t cp;

        if (s[0] < 0x80) {
                *ret_cp = s[0];
                return 1;
        }
        /* RFC 3629 table 3-7: the lead byte fixes the length and the range
         * of the second byte (no overlongs, surrogates or > U+10FFFF). */
        if (s[0] >= 0xC2 && s[0] <= 0xDF) {
                len = 2;
                cp = s[0] & 0x1F;
        } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
                len = 3;
                cp = s[0] & 0x0F;
                if (s[0] == 0xE0)
                        lo = 0xA0;
                else if (s[0] == 0xED)
                        hi = 0x9F;
        } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
                len = 4;
                cp = s[0] & 0x07;
                if (s[0] == 0xF0)
                        lo = 0x90;
                else if (s[0] == 0xF4)
                        hi = 0x8F;
        } else {
                *ret_cp = UTF8_INVALID;
                return 1;
        }

        for (i = 1; i < len; i++) {
                if (i >= n || s[i] < lo || s[i] > hi) {
                        *ret_cp = UTF8_INVALID;
                        return i;
                }
                cp = (cp << 6) | (s[i] & 0x3F);
                lo = 0x80;
                hi = 0xBF;
        }
        *ret_cp = cp;
        return len;
}

bool utf8_is_valid(const char *s, size_t n) {
        while (n > 0) {
                uint32_t cp;
                size_t k = utf8_decode(s, n, &cp);

                if (cp == UTF8_INVALID)
                        return false;
                s += k;
                n -= k;
        }
        return true;
}

size_t utf8_encode(uint32_t cp, char out[static 4]) {
        if (cp < 0x80) {
                out[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char) (0xC0 | (cp >> 6));
                out[1] = (char) (0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char) (0xE0 | (cp >> 12));
                out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
                out[2] = (char) (0x80 | (cp & 0x3F));
                return 3;
        }
        out[0] = (char) (0xF0 | (cp >> 18));
        out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char) (0x80 | (cp & 0x3F));
        return 4;
}

char *utf8_sanitize(const char *s) {
        size_t n = strlen(s);
        /* Each replaced byte grows to at most 3 bytes. */
        char *out = malloc(n * 3 + 1), *p = out;

        if (!out)
                return NULL;
        while (n > 0) {
                uint32_t cp;
                size_t k = utf8_decode(s, n, &cp);

                if (cp == UTF8_INVALID)
                        p += utf8_encode(UTF8_REPLACEMENT, p);
                else {
                        memcpy(p, s, k);
                        p += k;
                }
                s += k;
                n -= k;
        }
        *p = '\0';
        return out;
}

size_t utf8_repair_bytes(char *s, size_t n, char byte) {
        size_t repairs = 0;

        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t k = utf8_decode(s + i, n - i, &cp);

                if (cp == UTF8_INVALID) {
                        memset(s + i, byte, k);
                        repairs++;
                }
                i += k;
        }
        return repairs;
}
