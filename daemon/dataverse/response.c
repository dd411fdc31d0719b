/* response.c: Dataverse answers as JSON: the repair of what jansson refuses,
 * pages, error bodies. Must not know tables, queries, HTTP or retries. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "response.h"
#include "utf8.h"

static int hex4(const char *p, unsigned *ret) {
        unsigned v = 0;

        for (int i = 0; i < 4; i++) {
                char ch = p[i];
                v <<= 4;
                if (ch >= '0' && ch <= '9')
                        v |= (unsigned) (ch - '0');
                else if (ch >= 'a' && ch <= 'f')
                        v |= (unsigned) (ch - 'a' + 10);
                else if (ch >= 'A' && ch <= 'F')
                        v |= (unsigned) (ch - 'A' + 10);
                else
                        return -EINVAL;
        }
        *ret = v;
        return 0;
}

static bool is_u_escape(const char *s, size_t n, size_t i, unsigned *ret) {
        return i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u' && hex4(s + i + 2, ret) == 0;
}

static bool is_high_surrogate(unsigned u) {
        return u >= 0xD800 && u <= 0xDBFF;
}

static bool is_low_surrogate(unsigned u) {
        return u >= 0xDC00 && u <= 0xDFFF;
}

char *dv_json_repair(const char *s, size_t n, size_t *ret_repairs) {
        char *out = malloc(n + 1);
        size_t repairs;
        unsigned u, v;

        if (!out)
                return NULL;
        memcpy(out, s, n);
        out[n] = 0;
        /* Escapes are ASCII: repairing the bytes first leaves them as they are. */
        repairs = utf8_repair_bytes(out, n, '?');
        for (size_t i = 0; i < n;) {
                if (out[i] != '\\') {
                        i++;
                        continue;
                }
                if (!is_u_escape(out, n, i, &u)) {
                        i += 2; /* \" \\ \n ...: the escaped byte is no escape itself */
                        continue;
                }
                if (is_high_surrogate(u) && is_u_escape(out, n, i + 6, &v) && is_low_surrogate(v)) {
                        i += 12; /* a pair: one code point beyond U+FFFF */
                        continue;
                }
                if (u == 0 || is_high_surrogate(u) || is_low_surrogate(u)) {
                        memcpy(out + i, "\\ufffd", 6);
                        repairs++;
                }
                i += 6;
        }
        if (ret_repairs)
                *ret_repairs = repairs;
        return out;
}

/* jansson refuses a document holding "\u0000", an unpaired surrogate escape or
 * ill-formed UTF-8, which a .NET service can send (a NUL in a column, a string
 * cut between the halves of a surrogate pair). One such row must not make the
 * whole page, and with it the environment, unreadable: parse a repaired copy. */
static json_t *load_repaired(const char *body, size_t len, size_t *ret_repairs, json_error_t *jerr) {
        json_t *root = json_loadb(body, len, 0, jerr);
        _cleanup_free_ char *fixed = NULL;

        *ret_repairs = 0;
        if (root)
                return root;
        fixed = dv_json_repair(body, len, ret_repairs);
        if (!fixed || *ret_repairs == 0)
                return NULL;
        return json_loadb(fixed, len, 0, jerr);
}

static int why(char **ret_why, const char *fmt, ...) _printf_(2, 3);
static int why(char **ret_why, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(ret_why, fmt, ap) < 0)
                *ret_why = NULL;
        va_end(ap);
        return -EBADMSG;
}

int dv_page_body_parse(const char *body, size_t len, struct dv_page_body *ret, char **ret_why) {
        json_error_t jerr;
        json_t *root, *value, *next, *row;
        size_t i;

        *ret = (struct dv_page_body) {};
        *ret_why = NULL;
        root = load_repaired(body, len, &ret->repairs, &jerr);
        if (!root)
                return why(ret_why, "response is not valid JSON (%s at byte %d of %zu)", jerr.text, jerr.position, len);
        value = json_object_get(root, "value");
        next = json_object_get(root, "@odata.nextLink");
        if (!json_is_object(root) || !json_is_array(value) || (next && !json_is_string(next) && !json_is_null(next))) {
                json_decref(root);
                return why(ret_why, "response is not an OData collection ({\"value\":[...]})");
        }
        json_array_foreach(value, i, row)
                if (!json_is_object(row)) {
                        json_decref(root);
                        return why(ret_why, "row %zu of the response is not a JSON object", i);
                }
        ret->root = root;
        ret->value = value;
        ret->next_link = json_string_value(next);
        return 0;
}

void dv_page_body_done(struct dv_page_body *p) {
        json_decref(p->root);
        *p = (struct dv_page_body) {};
}

void dv_error_body_parse(const char *body, size_t len, char **ret_code, char **ret_message) {
        json_t *root = json_loadb(body, len, 0, NULL);
        json_t *err = json_object_get(root, "error");
        const char *code = json_string_value(json_object_get(err, "code"));
        const char *msg = json_string_value(json_object_get(err, "message"));

        *ret_code = code ? dv_server_text(code) : NULL;
        *ret_message = msg ? dv_server_text(msg) : NULL;
        json_decref(root);
}

char *dv_server_text(const char *s) {
        size_t n = strlen(s);
        char *w;

        if (n > DV_SERVER_TEXT_MAX)
                n = DV_SERVER_TEXT_MAX;
        w = strndup(s, n);
        if (!w)
                return NULL;
        for (char *p = w; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
        return w;
}
