/* fuzz-odata.c: OData literals and URLs (odata.h, and queries.c's named
 * queries through dv_query_urls()) with hostile values: names polled from
 * Dataverse go back into $filter as string literals, so quoting them is
 * what stands between a mailbox name and query injection.
 * The input is up to 8 values separated by NUL bytes. Invariants:
 *  - odata_quote_string() refuses exactly the invalid UTF-8 (jansson's
 *    verdict), and its literal reads back as the value, ending at its last ';
 *  - odata_url_encode() leaves only unreserved characters and ' ( ) , : /,
 *    and decodes back to the value;
 *  - a query with the values in eq, or-groups and In() gives a URL with no
 *    raw space, quote ", &, #, +, control or non-ASCII byte, exactly the
 *    parameters asked for, and a $filter that decodes to the text an
 *    independent builder expects;
 *  - invalid column names and operators are refused, never written. */
#include <errno.h>
#include <string.h>

#include "queries.h"
#include "fuzz.h"
#include "guid.h"
#include "odata.h"
#include "schema.h"

#define ROOT "https://contoso.crm.dynamics.com"
#define MAX_PARTS 8

/* ---- an independent reading of what odata.c must write ------------------ */

static void put(char **buf, size_t *len, const char *s, size_t n) {
        char *b = realloc(*buf, *len + n + 1);

        if (!b)
                abort();
        memcpy(b + *len, s, n);
        *len += n;
        b[*len] = '\0';
        *buf = b;
}

static void puts_(char **buf, size_t *len, const char *s) {
        put(buf, len, s, strlen(s));
}

/* 'value' with ' doubled (OData ABNF: SQUOTE-in-string = SQUOTE SQUOTE). */
static void put_literal(char **buf, size_t *len, const char *v) {
        puts_(buf, len, "'");
        for (; *v; v++)
                puts_(buf, len, *v == '\'' ? "''" : (char[]) { *v, '\0' });
        puts_(buf, len, "'");
}

/* Read the literal at s: the value and where it ends, or NULL. */
static char *read_literal(const char *s, const char **ret_end) {
        size_t n = 0;
        char *out = malloc(strlen(s) + 1);

        if (!out)
                abort();
        if (*s != '\'')
                goto bad;
        for (s++; *s; s++) {
                if (*s == '\'') {
                        if (s[1] != '\'')
                                break;
                        s++;
                }
                out[n++] = *s;
        }
        if (*s != '\'')
                goto bad;
        out[n] = '\0';
        *ret_end = s + 1;
        return out;
bad:
        free(out);
        return NULL;
}

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decoding of n bytes; NULL when a % is not followed by two
 * upper-case hex digits or a byte is one the encoder must not leave. */
static char *url_decode(const char *s, size_t n) {
        char *out = malloc(n + 1), *o = out;

        if (!out)
                abort();
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c == '%') {
                        if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                                goto bad;
                        *o++ = (char) (hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                        i += 2;
                } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                           (c && strchr("-._~'(),:/", c)))
                        *o++ = (char) c;
                else
                        goto bad;
        }
        *o = '\0';
        return out;
bad:
        free(out);
        return NULL;
}

/* Nothing in a URL that could end it, split it or add a parameter. */
static void check_url_chars(const char *url) {
        for (const unsigned char *p = (const unsigned char *) url; *p; p++)
                CHECK(*p > 0x20 && *p < 0x7f && !strchr("\"#+<>\\^`{|}", *p), "URL holds byte 0x%02x: %s", *p,
                      url);
        for (const char *p = url; (p = strchr(p, '%')); p++)
                CHECK(hexval(p[1]) >= 0 && hexval(p[2]) >= 0, "URL holds a bare %%: %s", url);
}

/* ---- the primitives ------------------------------------------------------- */

static void check_quote(const char *v) {
        char *lit = NULL, *back;
        const char *end;
        int r = odata_quote_string(v, &lit);

        if (!fuzz_utf8_valid(v, strlen(v))) {
                CHECK(r == -EILSEQ, "odata_quote_string() of invalid UTF-8 = %d", r);
                return;
        }
        CHECK(r == 0 && lit, "odata_quote_string(\"%s\") = %d", v, r);
        back = read_literal(lit, &end);
        CHECK(back && *end == '\0', "odata_quote_string(\"%s\") = %s: not one literal", v, lit);
        CHECK(strcmp(back, v) == 0, "odata_quote_string(\"%s\") = %s reads back as \"%s\"", v, lit, back);
        free(back);
        free(lit);
}

static void check_encode(const char *v) {
        char *enc = NULL, *back;
        int r = odata_url_encode(v, &enc);

        CHECK(r == 0 && enc, "odata_url_encode() = %d", r);
        back = url_decode(enc, strlen(enc));
        CHECK(back, "odata_url_encode(\"%s\") = %s: not cleanly encoded", v, enc);
        CHECK(strcmp(back, v) == 0, "odata_url_encode(\"%s\") = %s decodes as \"%s\"", v, enc, back);
        free(back);
        free(enc);
}

static bool reference_column(const char *s) {
        bool first = true;
        size_t n = strlen(s);

        if (n == 0 || n > 256)
                return false;
        for (; *s; s++) {
                bool alpha = (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_';

                if (*s == '/' && !first) {
                        first = true;
                        continue;
                }
                if (!(alpha || (!first && *s >= '0' && *s <= '9')))
                        return false;
                first = false;
        }
        return !first;
}

static bool reference_guid(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F');

                if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' : !hex)
                        return false;
        }
        return true;
}

/* "a,b,c" of columns */
static bool reference_select(const char *s) {
        char *copy = strdup(s), *save = NULL;
        size_t commas = 0, cols = 0;
        bool ok = true;

        if (!copy)
                abort();
        for (const char *p = s; *p; p++)
                commas += *p == ',';
        for (char *c = strtok_r(copy, ",", &save); c && ok; c = strtok_r(NULL, ",", &save), cols++)
                ok = reference_column(c);
        free(copy);
        return ok && cols == commas + 1;
}

/* ---- a whole query ---------------------------------------------------------- */

/* The parameters of url after '?', each checked and decoded: exactly the
 * names given, in order. Returns the decoded value of $filter. */
static char *url_params(const char *url, const char *const *names, size_t n) {
        const char *q = strchr(url, '?'), *p;
        char *filter = NULL;

        CHECK(q, "no query in %s", url);
        p = q + 1;
        for (size_t i = 0; i < n; i++) {
                size_t nl = strlen(names[i]), vl;
                char *v;

                CHECK(strncmp(p, names[i], nl) == 0 && p[nl] == '=', "parameter %zu is not %s: %s", i, names[i], url);
                p += nl + 1;
                vl = strcspn(p, "&");
                v = url_decode(p, vl);
                CHECK(v, "%s of %s is not cleanly encoded", names[i], url);
                if (strcmp(names[i], "$filter") == 0)
                        filter = v;
                else
                        free(v);
                p += vl;
                if (i + 1 < n) {
                        CHECK(*p == '&', "after %s: %s", names[i], url);
                        p++;
                }
        }
        CHECK(*p == '\0', "more parameters than asked for: %s", url);
        return filter;
}

static void check_query(char **parts, size_t n) {
        static const char *const names[] = { "$select", "$filter", "$orderby", "$top" };
        struct odata_query *q = NULL;
        struct odata_filter *root, *any;
        char *url = NULL, *expected = NULL, *filter;
        size_t len = 0;
        bool valid = true;
        int r;

        for (size_t i = 0; i < n; i++)
                valid = valid && fuzz_utf8_valid(parts[i], strlen(parts[i]));

        CHECK(odata_query_new(ROOT, DV_SET_MAILBOXES, &q) == 0, "odata_query_new()");
        odata_select(q, "mailboxid,name");
        root = odata_query_filter(q);
        odata_filter_eq_str(root, "name", parts[0]);
        puts_(&expected, &len, "name eq ");
        put_literal(&expected, &len, parts[0]);
        if (n > 1) {
                /* (emailaddress eq 'b' or emailaddress eq 'c') and In(name, [b, c]) */
                any = odata_filter_or(root);
                puts_(&expected, &len, " and ");
                if (n > 2)
                        puts_(&expected, &len, "(");
                for (size_t i = 1; i < n; i++) {
                        odata_filter_eq_str(any, "emailaddress", parts[i]);
                        puts_(&expected, &len, i > 1 ? " or emailaddress eq " : "emailaddress eq ");
                        put_literal(&expected, &len, parts[i]);
                }
                if (n > 2)
                        puts_(&expected, &len, ")");
                odata_filter_in(root, "name", (const char *const *) parts + 1, n - 1);
                puts_(&expected, &len, " and Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[");
                for (size_t i = 1; i < n; i++) {
                        if (i > 1)
                                puts_(&expected, &len, ",");
                        put_literal(&expected, &len, parts[i]);
                }
                puts_(&expected, &len, "])");
        }
        odata_orderby(q, "modifiedon asc,mailboxid asc");
        odata_top(q, 10);
        r = odata_query_url(q, &url);
        odata_query_free(q);
        if (!valid) {
                CHECK(r == -EILSEQ, "a query with invalid UTF-8 values: %d", r);
                free(expected);
                return;
        }
        CHECK(r == 0, "odata_query_url() = %d", r);
        check_url_chars(url);
        CHECK(strncmp(url, ROOT DV_API_PATH DV_SET_MAILBOXES "?", strlen(ROOT DV_API_PATH DV_SET_MAILBOXES "?")) == 0,
              "URL: %s", url);
        filter = url_params(url, names, ELEMENTSOF(names));
        CHECK(filter && strcmp(filter, expected) == 0, "$filter decodes as\n  %s\nexpected\n  %s", filter, expected);
        free(filter);
        free(expected);
        free(url);
}

/* A query on mailboxes with one builder call made with fuzzed text (the
 * others fixed); NULL arguments are left out. */
static int build(const char *entityset, const char *select, const char *orderby, const char *expand,
                 const char *col, const char *op, const char *guid, char **ret_url) {
        struct odata_query *q = NULL;
        int r = odata_query_new(ROOT, entityset ? entityset : DV_SET_MAILBOXES, &q);

        if (r < 0)
                return r;
        odata_select(q, select ? select : "mailboxid");
        if (orderby)
                odata_orderby(q, orderby);
        if (expand)
                odata_expand(q, expand);
        if (col)
                odata_filter_cmp_str(odata_query_filter(q), col, op, "x");
        if (guid)
                odata_filter_eq_guid(odata_query_filter(q), "mailboxid", guid);
        r = odata_query_url(q, ret_url);
        odata_query_free(q);
        CHECK(r == 0 || r == -EINVAL, "odata_query_url() = %d", r);
        if (r == 0)
                check_url_chars(*ret_url);
        return r;
}

/* The values where the code passes its own constants: refused unless
 * valid, and never a broken URL. */
static void check_names(const char *a, const char *b) {
        static const char *const ops[] = { "eq", "ne", "gt", "ge", "lt", "le" };
        char *url = NULL;
        bool op = false;

        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                op = op || strcmp(b, ops[i]) == 0;
        CHECK(odata_column_valid(a) == reference_column(a), "odata_column_valid(\"%s\")", a);
        CHECK(guid_is_valid(a) == reference_guid(a), "guid_is_valid(\"%s\")", a);

        CHECK((build(a, NULL, NULL, NULL, NULL, NULL, NULL, &url) == 0) == (reference_column(a) && !strchr(a, '/')),
              "entity set \"%s\"", a);
        url = mfree(url);
        CHECK((build(NULL, a, NULL, NULL, NULL, NULL, NULL, &url) == 0) == reference_select(a), "$select \"%s\"", a);
        url = mfree(url);
        if (build(NULL, NULL, a, NULL, NULL, NULL, NULL, &url) == 0)
                CHECK(strstr(url, "&$orderby="), "%s", url);
        url = mfree(url);
        CHECK((build(NULL, NULL, NULL, a, NULL, NULL, NULL, &url) == 0) == (*a != '\0'), "$expand \"%s\"", a);
        url = mfree(url);
        CHECK((build(NULL, NULL, NULL, NULL, a, b, NULL, &url) == 0) == (reference_column(a) && op),
              "column \"%s\" op \"%s\"", a, b);
        url = mfree(url);
        CHECK((build(NULL, NULL, NULL, NULL, NULL, NULL, a, &url) == 0) == reference_guid(a), "GUID \"%s\"", a);
        if (url)
                for (const char *p = strstr(url, "$filter=") + 8; *p && *p != '&'; p++)
                        CHECK(!(*p >= 'A' && *p <= 'F') || p[-1] == '%' || p[-2] == '%', "GUID not in lower case: %s",
                              url);
        free(url);
}

/* queries.c's named queries with these values as ids and entity set. */
static void check_named(char **parts, size_t n, unsigned kind, time_t from, time_t to, unsigned per) {
        struct dv_query_args args = {
                .since = from, .from = from, .to = to,
                .ids = (const char *const *) parts, .n_ids = n, .entityset = parts[0],
        };
        char **urls = NULL;
        size_t n_urls = 0;
        int r = dv_query_urls(ROOT, (enum dv_query_kind) kind, &args, per, &urls, &n_urls);

        CHECK(r == 0 || r == -EINVAL, "dv_query_urls(%s) = %d", dv_query_kind_to_string(kind), r);
        if (r < 0)
                return;
        for (size_t i = 0; i < n_urls; i++) {
                check_url_chars(urls[i]);
                CHECK(strncmp(urls[i], ROOT DV_API_PATH, strlen(ROOT DV_API_PATH)) == 0, "URL: %s", urls[i]);
        }
        dv_urls_free(urls, n_urls);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *parts[MAX_PARTS];
        size_t n = 0, start = 0;
        struct fdp d = { data, size };

        for (size_t i = 0; i <= size && n < MAX_PARTS; i++)
                if (i == size || data[i] == '\0') {
                        parts[n++] = fuzz_strndup(data + start, i - start);
                        start = i + 1;
                }
        for (size_t i = 0; i < n; i++) {
                check_quote(parts[i]);
                check_encode(parts[i]);
        }
        check_query(parts, n);
        check_names(parts[0], n > 1 ? parts[1] : "");
        {
                /* the query's numbers: the last bytes (one read per statement, so in a fixed order) */
                unsigned kind = fdp_u8(&d) % _DV_QUERY_MAX;
                time_t from = (time_t) (int32_t) fdp_u32(&d);
                time_t to = (time_t) (int32_t) fdp_u32(&d);
                unsigned per = fdp_u8(&d) % 4;

                check_named(parts, n, kind, from, to, per);
        }
        for (size_t i = 0; i < n; i++)
                free(parts[i]);
        return 0;
}
