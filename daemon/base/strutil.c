/* strutil.c: one-line escaping and key=value quoting of untrusted text for
 * the outputs. Knows nothing of findings or transports. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strutil.h"
#include "utf8.h"

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
