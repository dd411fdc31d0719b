/* odata.c: owns Web API URL building: quoting, percent-encoding.
 * Must not know which tables s3mond reads (queries.c) or how URLs are sent. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "guid.h"
#include "odata.h"
#include "schema.h"
#include "timeutil.h"
#include "utf8.h"

struct filter_item {
        char *term;                     /* a rendered condition, or NULL ... */
        struct odata_filter *group;     /* ... for a nested group */
};

struct odata_filter {
        struct odata_query *query;      /* where errors stick */
        bool is_or;
        struct filter_item *items;
        size_t n_items, n_alloc;
};

struct odata_query {
        char *root;             /* service root, no trailing slash */
        char *entityset;
        char *select;
        char *orderby;
        char *expand;
        unsigned top;
        bool has_top;
        struct odata_filter *filter;
        int error;              /* first builder error, sticky */
};

/* ---- a small growable string ------------------------------------------ */

struct buf {
        char *s;
        size_t len, alloc;
        int error;
};

static void buf_add(struct buf *b, const char *s, size_t n) {
        if (b->error)
                return;
        if (buffer_grow(&b->s, &b->alloc, b->len + n + 1, 64) < 0) {
                b->error = -ENOMEM;
                return;
        }
        memcpy(b->s + b->len, s, n);
        b->len += n;
        b->s[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s) {
        buf_add(b, s, strlen(s));
}

static _printf_(2, 3) void buf_printf(struct buf *b, const char *fmt, ...) {
        char tmp[128];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= sizeof(tmp)) {
                b->error = b->error ?: -EINVAL;
                return;
        }
        buf_add(b, tmp, (size_t) n);
}

/* Hand the string over (or NULL and the error). */
static int buf_steal(struct buf *b, char **ret) {
        if (b->error) {
                free(b->s);
                *b = (struct buf) {};
                return b->error;
        }
        if (!b->s) {
                b->s = strdup("");
                if (!b->s)
                        return -ENOMEM;
        }
        *ret = b->s;
        *b = (struct buf) {};
        return 0;
}

/* ---- primitives -------------------------------------------------------- */

int odata_quote_string(const char *value, char **ret) {
        struct buf b = {};

        if (!value)
                return -EINVAL;
        if (!utf8_is_valid(value, strlen(value)))
                return -EILSEQ;
        buf_puts(&b, "'");
        for (const char *p = value; *p; p++) {
                if (*p == '\'')
                        buf_puts(&b, "''");
                else
                        buf_add(&b, p, 1);
        }
        buf_puts(&b, "'");
        return buf_steal(&b, ret);
}

static bool keep_literal(unsigned char c) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
                return true;
        return c && strchr("-._~'(),:/", c);
}

int odata_url_encode(const char *s, char **ret) {
        static const char hex[] = "0123456789ABCDEF";
        struct buf b = {};

        if (!s)
                return -EINVAL;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (keep_literal(*p))
                        buf_add(&b, (const char *) p, 1);
                else {
                        char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
                        buf_add(&b, e, 3);
                }
        }
        return buf_steal(&b, ret);
}

static bool ident_char(char c, bool first) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
               (!first && c >= '0' && c <= '9');
}

/* [A-Za-z_][A-Za-z0-9_]* segments joined by '/', n bytes of s. */
static bool column_valid_n(const char *s, size_t n) {
        bool first = true;

        if (n == 0 || n > 256)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '/') {
                        if (first)
                                return false;
                        first = true;
                        continue;
                }
                if (!ident_char(s[i], first))
                        return false;
                first = false;
        }
        return !first;
}

bool odata_column_valid(const char *s) {
        return s && column_valid_n(s, strlen(s));
}

static bool op_valid(const char *op) {
        static const char *const ops[] = { "eq", "ne", "gt", "ge", "lt", "le" };

        if (!op)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                if (strcmp(op, ops[i]) == 0)
                        return true;
        return false;
}

/* "a,b,c" of columns */
static bool select_valid(const char *s) {
        const char *p = s;

        if (!s || !*s)
                return false;
        for (;;) {
                const char *c = strchrnul(p, ',');
                if (!column_valid_n(p, (size_t) (c - p)))
                        return false;
                if (!*c)
                        return true;
                p = c + 1;
        }
}

/* "col [asc|desc],col2 ..." */
static bool orderby_valid(const char *s) {
        const char *p = s;

        if (!s || !*s)
                return false;
        for (;;) {
                const char *c = strchrnul(p, ','), *sp = memchr(p, ' ', (size_t) (c - p));

                if (sp) {
                        size_t dl = (size_t) (c - sp - 1);
                        if (!((dl == 3 && strncmp(sp + 1, "asc", 3) == 0) ||
                              (dl == 4 && strncmp(sp + 1, "desc", 4) == 0)))
                                return false;
                }
                if (!column_valid_n(p, (size_t) ((sp ? sp : c) - p)))
                        return false;
                if (!*c)
                        return true;
                p = c + 1;
        }
}

/* ---- the query ---------------------------------------------------------- */

static void fail(struct odata_query *q, int error) {
        if (q && !q->error)
                q->error = error;
}

static struct odata_filter *filter_new(struct odata_query *q, bool is_or) {
        struct odata_filter *f = calloc(1, sizeof(*f));

        if (!f)
                return NULL;
        f->query = q;
        f->is_or = is_or;
        return f;
}

static void filter_free(struct odata_filter *f) {
        if (!f)
                return;
        for (size_t i = 0; i < f->n_items; i++) {
                free(f->items[i].term);
                filter_free(f->items[i].group);
        }
        free(f->items);
        free(f);
}

/* Takes ownership of term or group (exactly one is set). */
static void filter_push(struct odata_filter *f, char *term, struct odata_filter *group) {
        if (f->n_items == f->n_alloc) {
                size_t n = f->n_alloc ? f->n_alloc * 2 : 4;
                struct filter_item *items = reallocarray(f->items, n, sizeof(*items));
                if (!items) {
                        free(term);
                        filter_free(group);
                        fail(f->query, -ENOMEM);
                        return;
                }
                f->items = items;
                f->n_alloc = n;
        }
        f->items[f->n_items++] = (struct filter_item) { .term = term, .group = group };
}

int odata_query_new(const char *service_root, const char *entityset, struct odata_query **ret) {
        struct odata_query *q;
        size_t n;

        if (!service_root || !*service_root || !odata_column_valid(entityset) || strchr(entityset, '/'))
                return -EINVAL;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        n = strlen(service_root);
        while (n > 0 && service_root[n - 1] == '/')
                n--;
        q->root = strndup(service_root, n);
        q->entityset = strdup(entityset);
        q->filter = filter_new(q, false);
        if (!q->root || !q->entityset || !q->filter) {
                odata_query_free(q);
                return -ENOMEM;
        }
        *ret = q;
        return 0;
}

void odata_query_free(struct odata_query *q) {
        if (!q)
                return;
        free(q->root);
        free(q->entityset);
        free(q->select);
        free(q->orderby);
        free(q->expand);
        filter_free(q->filter);
        free(q);
}

static void set_string(struct odata_query *q, char **field, const char *value, bool valid) {
        char *copy;

        if (!valid) {
                fail(q, -EINVAL);
                return;
        }
        copy = strdup(value);
        if (!copy) {
                fail(q, -ENOMEM);
                return;
        }
        free(*field);
        *field = copy;
}

void odata_select(struct odata_query *q, const char *columns) {
        set_string(q, &q->select, columns, select_valid(columns));
}

void odata_orderby(struct odata_query *q, const char *expr) {
        set_string(q, &q->orderby, expr, orderby_valid(expr));
}

void odata_expand(struct odata_query *q, const char *expr) {
        set_string(q, &q->expand, expr, expr && *expr);
}

void odata_top(struct odata_query *q, unsigned n) {
        q->top = n;
        q->has_top = true;
}

struct odata_filter *odata_query_filter(struct odata_query *q) {
        return q->filter;
}

static struct odata_filter *filter_group(struct odata_filter *parent, bool is_or) {
        struct odata_filter *g;

        if (!parent)
                return NULL;
        g = filter_new(parent->query, is_or);
        if (!g) {
                fail(parent->query, -ENOMEM);
                return NULL;
        }
        filter_push(parent, NULL, g);
        /* filter_push frees g when it cannot store it */
        return parent->query->error == -ENOMEM ? NULL : g;
}

struct odata_filter *odata_filter_and(struct odata_filter *parent) {
        return filter_group(parent, false);
}

struct odata_filter *odata_filter_or(struct odata_filter *parent) {
        return filter_group(parent, true);
}

/* "col op " + literal; literal is taken over (may be NULL = its error). */
static void add_cmp(struct odata_filter *f, const char *col, const char *op, char *literal, int literal_error) {
        struct buf b = {};
        char *term = NULL;
        int r;

        if (!f) {
                free(literal);
                return;
        }
        if (literal_error < 0 || !literal) {
                free(literal);
                fail(f->query, literal_error < 0 ? literal_error : -ENOMEM);
                return;
        }
        if (!odata_column_valid(col) || !op_valid(op)) {
                free(literal);
                fail(f->query, -EINVAL);
                return;
        }
        buf_puts(&b, col);
        buf_puts(&b, " ");
        buf_puts(&b, op);
        buf_puts(&b, " ");
        buf_puts(&b, literal);
        free(literal);
        r = buf_steal(&b, &term);
        if (r < 0) {
                fail(f->query, r);
                return;
        }
        filter_push(f, term, NULL);
}

void odata_filter_cmp_str(struct odata_filter *f, const char *col, const char *op, const char *value) {
        char *lit = NULL;
        int r = odata_quote_string(value, &lit);

        add_cmp(f, col, op, lit, r);
}

void odata_filter_eq_str(struct odata_filter *f, const char *col, const char *value) {
        odata_filter_cmp_str(f, col, "eq", value);
}

void odata_filter_eq_guid(struct odata_filter *f, const char *col, const char *guid) {
        char *lit;

        if (!guid_is_valid(guid)) {
                add_cmp(f, col, "eq", NULL, -EINVAL);
                return;
        }
        lit = strdup(guid);
        if (lit)
                for (char *p = lit; *p; p++)
                        if (*p >= 'A' && *p <= 'F')
                                *p = (char) (*p - 'A' + 'a');
        add_cmp(f, col, "eq", lit, 0);
}

void odata_filter_cmp_int(struct odata_filter *f, const char *col, const char *op, int64_t value) {
        char *lit = NULL;

        if (asprintf(&lit, "%" PRId64, value) < 0)
                lit = NULL;
        add_cmp(f, col, op, lit, 0);
}

void odata_filter_eq_int(struct odata_filter *f, const char *col, int64_t value) {
        odata_filter_cmp_int(f, col, "eq", value);
}

void odata_filter_eq_bool(struct odata_filter *f, const char *col, bool value) {
        add_cmp(f, col, "eq", strdup(value ? "true" : "false"), 0);
}

void odata_filter_cmp_datetime(struct odata_filter *f, const char *col, const char *op, time_t t) {
        char iso[ISO8601_BUFSZ];

        add_cmp(f, col, op, strdup(iso8601_format(t, iso)), 0);
}

void odata_filter_ne_null(struct odata_filter *f, const char *col) {
        add_cmp(f, col, "ne", strdup("null"), 0);
}

void odata_filter_in(struct odata_filter *f, const char *col, const char *const *values, size_t n) {
        struct buf b = {};
        char *term = NULL;
        int r;

        if (!f)
                return;
        if (!odata_column_valid(col) || n == 0 || !values) {
                fail(f->query, -EINVAL);
                return;
        }
        buf_puts(&b, "Microsoft.Dynamics.CRM.In(PropertyName='");
        buf_puts(&b, col);
        buf_puts(&b, "',PropertyValues=[");
        for (size_t i = 0; i < n; i++) {
                char *lit;

                r = odata_quote_string(values[i], &lit);
                if (r < 0) {
                        free(b.s);
                        fail(f->query, r);
                        return;
                }
                if (i > 0)
                        buf_puts(&b, ",");
                buf_puts(&b, lit);
                free(lit);
        }
        buf_puts(&b, "])");
        r = buf_steal(&b, &term);
        if (r < 0) {
                fail(f->query, r);
                return;
        }
        filter_push(f, term, NULL);
}

/* ---- rendering ---------------------------------------------------------- */

static int render_filter(const struct odata_filter *f, struct buf *b, bool nested) {
        bool parens = nested && f->n_items > 1;

        if (nested && f->n_items == 0)
                return -EINVAL;
        if (parens)
                buf_puts(b, "(");
        for (size_t i = 0; i < f->n_items; i++) {
                if (i > 0)
                        buf_puts(b, f->is_or ? " or " : " and ");
                if (f->items[i].term)
                        buf_puts(b, f->items[i].term);
                else {
                        int r = render_filter(f->items[i].group, b, true);
                        if (r < 0)
                                return r;
                }
        }
        if (parens)
                buf_puts(b, ")");
        return b->error;
}

static void add_param(struct buf *b, bool *first, const char *name, const char *value) {
        char *enc = NULL;
        int r = odata_url_encode(value, &enc);

        if (r < 0) {
                b->error = b->error ?: r;
                return;
        }
        buf_puts(b, *first ? "?" : "&");
        buf_puts(b, name);
        buf_puts(b, "=");
        buf_puts(b, enc);
        free(enc);
        *first = false;
}

int odata_query_url(const struct odata_query *q, char **ret_url) {
        struct buf b = {};
        bool first = true;

        if (q->error)
                return q->error;
        if (!q->select)
                return -EINVAL; /* $select always */

        buf_puts(&b, q->root);
        buf_puts(&b, DV_API_PATH);
        buf_puts(&b, q->entityset);
        add_param(&b, &first, "$select", q->select);
        if (q->filter->n_items > 0) {
                struct buf fb = {};
                char *filter = NULL;
                int r = render_filter(q->filter, &fb, false);

                if (r < 0) {
                        free(fb.s);
                        free(b.s);
                        return r;
                }
                r = buf_steal(&fb, &filter);
                if (r < 0) {
                        free(b.s);
                        return r;
                }
                add_param(&b, &first, "$filter", filter);
                free(filter);
        }
        if (q->orderby)
                add_param(&b, &first, "$orderby", q->orderby);
        if (q->expand)
                add_param(&b, &first, "$expand", q->expand);
        if (q->has_top)
                buf_printf(&b, "&$top=%u", q->top);
        return buf_steal(&b, ret_url);
}
