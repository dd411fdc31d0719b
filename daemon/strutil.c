/* strutil.c: UTF-8 repair, one-line escaping and key=value quoting of
 * untrusted text for the outputs. Knows nothing of findings or transports. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strutil.h"

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

static size_t utf8_encode(uint32_t cp, char out[static 4]) {
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

bool str_is_bare_token(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c <= 0x20 || c >= 0x7F || strchr("\"'\\=", c))
                        return false;
        }
        return true;
}

/* The escaped form of one code point, into buf (at most 7 bytes + NUL). */
static size_t escape_cp(uint32_t cp, const char *raw, size_t raw_len, char buf[static 8]) {
        switch (cp) {
        case '"': return (size_t) snprintf(buf, 8, "\\\"");
        case '\\': return (size_t) snprintf(buf, 8, "\\\\");
        case '\n': return (size_t) snprintf(buf, 8, "\\n");
        case '\r': return (size_t) snprintf(buf, 8, "\\r");
        case '\t': return (size_t) snprintf(buf, 8, "\\t");
        }
        if (cp < 0x20 || cp == 0x7F)
                return (size_t) snprintf(buf, 8, "\\x%02X", (unsigned) cp);
        if ((cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029)
                return (size_t) snprintf(buf, 8, "\\u%04X", (unsigned) cp);
        if (cp == UTF8_INVALID)
                return utf8_encode(UTF8_REPLACEMENT, buf);
        memcpy(buf, raw, raw_len);
        return raw_len;
}

int str_put_quoted(FILE *f, const char *s, size_t max_out, enum quote_mode mode) {
        size_t n = strlen(strempty(s)), used = 0;
        /* A bare token escapes to itself: it is cut exactly when longer than
         * max_out, and a cut value is quoted like any other non-token. */
        bool quote = mode == QUOTE_ALWAYS || !str_is_bare_token(s) || n > max_out;

        s = strempty(s);
        if (quote)
                fputc('"', f);
        while (n > 0) {
                char buf[8];
                uint32_t cp;
                size_t k = utf8_decode(s, n, &cp);
                size_t len = escape_cp(cp, s, k, buf);

                if (used + len > max_out) {
                        fputs(STR_ELLIPSIS, f);
                        break;
                }
                fwrite(buf, 1, len, f);
                used += len;
                s += k;
                n -= k;
        }
        if (quote)
                fputc('"', f);
        return ferror(f) ? -ENOMEM : 0;
}

char *str_quote(const char *s, size_t max_out, enum quote_mode mode) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        int r;

        if (!f)
                return NULL;
        r = str_put_quoted(f, s, max_out, mode);
        if (fclose(f) != 0 || r < 0)
                return mfree(buf);
        return buf;
}

int str_put_pair(FILE *f, const char *key, const char *value, size_t max_out) {
        fprintf(f, " %s=", key);
        return str_put_quoted(f, value, max_out, QUOTE_IF_NEEDED);
}
