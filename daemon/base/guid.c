/* guid.c: GUID validation, normalization and packing.
 * Knows nothing of which column or table a GUID comes from. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "guid.h"

static bool is_dash_at(size_t i) {
        return i == 8 || i == 13 || i == 18 || i == 23;
}

/* The 36 characters at s (s has at least that many) are a GUID. */
static bool guid_chars_valid(const char *s) {
        for (size_t i = 0; i < GUID_STRLEN; i++)
                if (is_dash_at(i) ? s[i] != '-' : !isxdigit((unsigned char) s[i]))
                        return false;
        return true;
}

bool guid_is_valid(const char *s) {
        return s && strnlen(s, GUID_STRLEN + 1) == GUID_STRLEN && guid_chars_valid(s);
}

int guid_normalize(const char *s, char buf[static GUID_STRLEN + 1]) {
        size_t len;

        if (!s)
                return -EINVAL;
        len = strnlen(s, GUID_STRLEN + 3);
        if (len == GUID_STRLEN + 2 && s[0] == '{' && s[len - 1] == '}')
                s++;
        else if (len != GUID_STRLEN)
                return -EINVAL;
        if (!guid_chars_valid(s))
                return -EINVAL;
        for (size_t i = 0; i < GUID_STRLEN; i++)
                buf[i] = (char) tolower((unsigned char) s[i]);
        buf[GUID_STRLEN] = '\0';
        return 0;
}

static int hex_value(char ch) {
        return ch <= '9' ? ch - '0' : ch - 'a' + 10;
}

int guid_to_bytes(const char *s, uint8_t out[static 16]) {
        char buf[GUID_STRLEN + 1];
        size_t k = 0;

        if (guid_normalize(s, buf) < 0)
                return -EINVAL;
        for (size_t i = 0; i < GUID_STRLEN; i += 2) {
                if (buf[i] == '-')
                        i++;
                out[k++] = (uint8_t) (hex_value(buf[i]) << 4 | hex_value(buf[i + 1]));
        }
        return 0;
}
