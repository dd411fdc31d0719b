/* dataverse.c: owns an environment's named queries, paging, retries, throttling
 * and request cap. Must not know alerts, culprits or state. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <ev.h>

#include "auth.h"
#include "backoff.h"
#include "config.h"
#include "dataverse.h"
#include "guid.h"
#include "http.h"
#include "log.h"
#include "model.h"
#include "odata.h"
#include "schema.h"
#include "strutil.h"
#include "utf8.h"
#include "timeutil.h"

#define DEFAULT_PAGE_SIZE 5000u
#define DEFAULT_IN_FLIGHT 4u
#define DEFAULT_INITIAL_BACKOFF 1.0
#define DEFAULT_MAX_BACKOFF 60.0
#define DEFAULT_RETRY_BUDGET 300.0
#define DEFAULT_MAX_RETRY_AFTER 3600.0
#define DEFAULT_TIMEOUT_MS 60000L
#define DEFAULT_IDS_PER_REQUEST 20u
#define SERVER_TEXT_MAX 500

enum query_state {
        Q_QUEUED,       /* in the run queue, waiting for a slot (or the end of a 429 pause) */
        Q_TOKEN,        /* holds a slot, waits for a token */
        Q_RUNNING,      /* holds a slot, its request is in flight */
        Q_WAITING,      /* failed, its retry timer runs */
        Q_DONE,         /* in the done list, callback pending */
};

struct dv_query {
        struct dv_client *client;
        struct dv_query *aprev, *anext;         /* every query of the client */
        struct dv_query *lprev, *lnext;         /* run queue or done list */
        enum dv_query_kind kind;
        enum query_state state;
        dv_done_fn done;
        void *userdata;

        char **urls;                            /* first page of each request */
        size_t n_urls, i_url;
        char *page_url;                         /* the page being fetched */
        unsigned pages;                         /* pages received */
        json_t *rows;

        unsigned attempt;                       /* failures of the current page */
        double first_failure;                   /* monotonic, of the current page; 0: none */
        double created_at;
        bool retried_401;
        char *token_used;                       /* to invalidate exactly it on a 401 */

        struct ev_timer retry;
        struct http_transfer *transfer;
        struct auth_waiter *waiter;

        struct dv_result result;
        char *dv_code;
};

struct dv_client {
        struct ev_loop *loop;
        struct http *http;
        struct auth *auth;
        char *name;
        char *url;
        char *ca_file;
        struct dv_options opt;
        uint64_t rng;

        struct dv_query *all;
        struct dv_query *queue_head, *queue_tail;
        struct dv_query *done_head, *done_tail;
        unsigned in_flight;

        double paused_until;                    /* monotonic; 429 */
        struct ev_timer pause;
        struct ev_timer dispatch;
};

static const char *const kind_names[_DV_QUERY_MAX] = {
        [DV_QUERY_TRACELOGS] = "tracelogs",
        [DV_QUERY_MAILBOXES] = "mailboxes",
        [DV_QUERY_WORKFLOWS] = "workflows",
        [DV_QUERY_STEPS] = "steps",
        [DV_QUERY_FAILED_SESSIONS] = "failed_sessions",
        [DV_QUERY_PLUGIN_TRACES] = "plugin_traces",
        [DV_QUERY_PROBE] = "probe",
};

const char *dv_query_kind_to_string(enum dv_query_kind k) {
        return k >= 0 && k < _DV_QUERY_MAX ? kind_names[k] : NULL;
}

int dv_query_kind_from_string(const char *s) {
        for (int k = 0; s && k < _DV_QUERY_MAX; k++)
                if (strcmp(s, kind_names[k]) == 0)
                        return k;
        return -EINVAL;
}

static double mono_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* ---- URLs --------------------------------------------------------------------- */

static const char *probe_key(const char *entityset) {
        static const char *const sets[] = { DV_PROBE_SETS }, *const keys[] = { DV_PROBE_KEYS };

        _Static_assert(ELEMENTSOF(sets) == ELEMENTSOF(keys), "DV_PROBE_SETS and DV_PROBE_KEYS differ");
        for (size_t i = 0; entityset && i < ELEMENTSOF(sets); i++)
                if (strcmp(entityset, sets[i]) == 0)
                        return keys[i];
        return NULL;
}

static int url_for(const char *env_url, enum dv_query_kind kind, const struct dv_query_args *a,
                   const char *const *ids, size_t n_ids, char **ret) {
        _cleanup_(odata_query_freep) struct odata_query *q = NULL;
        struct odata_filter *f, *any;
        const char *set = NULL, *key;
        int r;

        switch (kind) {
        case DV_QUERY_TRACELOGS: set = DV_SET_TRACELOGS; break;
        case DV_QUERY_MAILBOXES: set = DV_SET_MAILBOXES; break;
        case DV_QUERY_WORKFLOWS: set = DV_SET_WORKFLOWS; break;
        case DV_QUERY_STEPS: set = DV_SET_STEPS; break;
        case DV_QUERY_FAILED_SESSIONS: set = DV_SET_SESSIONS; break;
        case DV_QUERY_PLUGIN_TRACES: set = DV_SET_TRACES; break;
        case DV_QUERY_PROBE: set = a->entityset; break;
        default: return -EINVAL;
        }
        r = odata_query_new(env_url, strempty(set), &q);
        if (r < 0)
                return r;
        f = odata_query_filter(q);

        switch (kind) {
        case DV_QUERY_TRACELOGS:
                odata_select(q, DV_SELECT_TRACELOGS);
                if (a->since > 0)
                        odata_filter_cmp_datetime(f, "modifiedon", "ge", a->since);
                odata_filter_cmp_int(f, "level", "ge", TRACELOG_LEVEL_WARNING);
                odata_orderby(q, "modifiedon asc,tracelogid asc");
                break;
        case DV_QUERY_MAILBOXES:
                odata_select(q, DV_SELECT_MAILBOXES);
                if (a->since > 0)
                        odata_filter_cmp_datetime(f, "modifiedon", "ge", a->since);
                odata_orderby(q, "modifiedon asc,mailboxid asc");
                break;
        case DV_QUERY_WORKFLOWS:
                odata_select(q, DV_SELECT_WORKFLOWS);
                odata_filter_eq_int(f, "category", WORKFLOW_CATEGORY_WORKFLOW);
                any = odata_filter_or(f);
                odata_filter_eq_int(any, "type", WORKFLOW_TYPE_DEFINITION);
                odata_filter_eq_int(any, "type", WORKFLOW_TYPE_ACTIVATION);
                if (a->since > 0)
                        odata_filter_cmp_datetime(f, "modifiedon", "ge", a->since);
                odata_orderby(q, "modifiedon asc,workflowid asc");
                break;
        case DV_QUERY_STEPS:
                odata_select(q, DV_SELECT_STEPS);
                odata_filter_eq_int(f, "customizationlevel", STEP_CUSTOMIZATION_CUSTOM);
                if (a->since > 0)
                        odata_filter_cmp_datetime(f, "modifiedon", "ge", a->since);
                odata_expand(q, DV_EXPAND_STEPS);
                odata_orderby(q, "modifiedon asc,sdkmessageprocessingstepid asc");
                break;
        case DV_QUERY_FAILED_SESSIONS:
                odata_select(q, DV_SELECT_SESSIONS);
                odata_filter_eq_int(f, "statuscode", SESSION_STATUS_FAILED);
                odata_filter_cmp_datetime(f, "createdon", "ge", a->from);
                odata_filter_cmp_datetime(f, "createdon", "le", a->to);
                any = odata_filter_or(f);
                for (size_t i = 0; i < n_ids; i++)
                        odata_filter_eq_guid(any, "_processid_value", ids[i]);
                odata_orderby(q, "createdon asc,processsessionid asc");
                break;
        case DV_QUERY_PLUGIN_TRACES:
                odata_select(q, DV_SELECT_TRACES);
                odata_filter_eq_int(f, "mode", TRACE_MODE_SYNCHRONOUS);
                odata_filter_ne_null(f, "exceptiondetails");
                odata_filter_cmp_datetime(f, "createdon", "ge", a->from);
                odata_filter_cmp_datetime(f, "createdon", "le", a->to);
                any = odata_filter_or(f);
                for (size_t i = 0; i < n_ids; i++)
                        odata_filter_eq_guid(any, "pluginstepid", ids[i]);
                odata_orderby(q, "createdon asc,plugintracelogid asc");
                break;
        case DV_QUERY_PROBE:
                key = probe_key(a->entityset);
                if (!key)
                        return -EINVAL;
                odata_select(q, key);
                odata_top(q, 1);
                break;
        default:
                return -EINVAL;
        }
        return odata_query_url(q, ret);
}

void dv_urls_free(char **urls, size_t n) {
        for (size_t i = 0; urls && i < n; i++)
                free(urls[i]);
        free(urls);
}

static bool has_ids(enum dv_query_kind kind) {
        return kind == DV_QUERY_FAILED_SESSIONS || kind == DV_QUERY_PLUGIN_TRACES;
}

/* The ids once each (compared case-insensitively), validated; order kept. */
static int unique_ids(const char *const *ids, size_t n, const char ***ret, size_t *ret_n) {
        const char **u;
        size_t m = 0;

        if (n > 0 && !ids)
                return -EINVAL;
        u = calloc(n ? n : 1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                bool dup = false;

                if (!guid_is_valid(ids[i])) {
                        free(u);
                        return -EINVAL;
                }
                for (size_t j = 0; j < m && !dup; j++)
                        dup = strcasecmp(u[j], ids[i]) == 0;
                if (!dup)
                        u[m++] = ids[i];
        }
        *ret = u;
        *ret_n = m;
        return 0;
}

int dv_query_urls(const char *env_url, enum dv_query_kind kind, const struct dv_query_args *args,
                  unsigned ids_per_request, char ***ret_urls, size_t *ret_n) {
        _cleanup_free_ const char **ids = NULL;
        size_t n_ids = 0, n_urls, chunk = ids_per_request ? ids_per_request : DEFAULT_IDS_PER_REQUEST;
        char **urls;
        int r;

        if (!env_url || !args || kind < 0 || kind >= _DV_QUERY_MAX)
                return -EINVAL;
        if (has_ids(kind)) {
                r = unique_ids(args->ids, args->n_ids, &ids, &n_ids);
                if (r < 0)
                        return r;
                n_urls = (n_ids + chunk - 1) / chunk;
        } else
                n_urls = 1;
        urls = calloc(n_urls ? n_urls : 1, sizeof(char *));
        if (!urls)
                return -ENOMEM;
        for (size_t i = 0; i < n_urls; i++) {
                size_t first = i * chunk, n = n_ids - first < chunk ? n_ids - first : chunk;

                r = url_for(env_url, kind, args, ids ? ids + first : NULL, has_ids(kind) ? n : 0, &urls[i]);
                if (r < 0) {
                        dv_urls_free(urls, n_urls);
                        return r;
                }
        }
        *ret_urls = urls;
        *ret_n = n_urls;
        return 0;
}

/* ---- query lists -------------------------------------------------------------- */

static void all_add(struct dv_client *c, struct dv_query *q) {
        q->anext = c->all;
        if (c->all)
                c->all->aprev = q;
        c->all = q;
}

static void all_remove(struct dv_client *c, struct dv_query *q) {
        if (q->aprev)
                q->aprev->anext = q->anext;
        else
                c->all = q->anext;
        if (q->anext)
                q->anext->aprev = q->aprev;
        q->aprev = q->anext = NULL;
}

static void list_push(struct dv_query **head, struct dv_query **tail, struct dv_query *q, bool front) {
        if (front) {
                q->lprev = NULL;
                q->lnext = *head;
                if (*head)
                        (*head)->lprev = q;
                else
                        *tail = q;
                *head = q;
        } else {
                q->lnext = NULL;
                q->lprev = *tail;
                if (*tail)
                        (*tail)->lnext = q;
                else
                        *head = q;
                *tail = q;
        }
}

static void list_remove(struct dv_query **head, struct dv_query **tail, struct dv_query *q) {
        if (q->lprev)
                q->lprev->lnext = q->lnext;
        else
                *head = q->lnext;
        if (q->lnext)
                q->lnext->lprev = q->lprev;
        else
                *tail = q->lprev;
        q->lprev = q->lnext = NULL;
}

static void token_forget(struct dv_query *q) {
        if (q->token_used) {
                explicit_bzero(q->token_used, strlen(q->token_used));
                q->token_used = mfree(q->token_used);
        }
}

static void query_free(struct dv_query *q) {
        if (!q)
                return;
        dv_urls_free(q->urls, q->n_urls);
        free(q->page_url);
        json_decref(q->rows);
        json_decref(q->result.rows);
        free(q->result.message);
        free(q->dv_code);
        token_forget(q);
        free(q);
}

/* ---- completion: callbacks always run from the dispatch watcher --------------- */

static void dispatch_cb(struct ev_loop *loop, struct ev_timer *w, int revents) {
        struct dv_client *c = w->data;
        struct dv_query *q = c->done_head;

        if (!q)
                return;
        list_remove(&c->done_head, &c->done_tail, q);
        all_remove(c, q);
        if (c->done_head) /* re-arm first: the callback may free c */
                ev_timer_start(loop, &c->dispatch);
        q->done(c, &q->result, q->userdata);
        query_free(q); /* detached: touches nothing of c */
}

static void finish(struct dv_query *q, int error, const char *fmt, ...) _printf_(3, 4);
static void finish(struct dv_query *q, int error, const char *fmt, ...) {
        struct dv_client *c = q->client;

        if (q->state == Q_QUEUED)
                list_remove(&c->queue_head, &c->queue_tail, q);
        ev_timer_stop(c->loop, &q->retry);
        token_forget(q);

        q->result.error = error;
        q->result.dv_code = q->dv_code;
        if (error < 0) {
                _cleanup_free_ char *what = NULL;
                va_list ap;

                va_start(ap, fmt);
                if (vasprintf(&what, fmt, ap) < 0)
                        what = NULL;
                va_end(ap);
                if (asprintf(&q->result.message, "%s: %s: %s", c->name, kind_names[q->kind],
                             what ? what : strerror(-error)) < 0)
                        q->result.message = NULL;
                q->rows = (json_decref(q->rows), NULL);
                log_debug("%s", strempty(q->result.message));
        } else {
                q->result.rows = q->rows;
                q->rows = NULL;
        }
        q->state = Q_DONE;
        list_push(&c->done_head, &c->done_tail, q, false);
        if (!ev_is_active(&c->dispatch))
                ev_timer_start(c->loop, &c->dispatch);
}

static void succeed(struct dv_query *q) {
        struct dv_client *c = q->client;

        ev_timer_stop(c->loop, &q->retry);
        token_forget(q);
        q->result.error = 0;
        q->result.dv_code = q->dv_code;
        q->result.rows = q->rows;
        q->rows = NULL;
        q->state = Q_DONE;
        list_push(&c->done_head, &c->done_tail, q, false);
        if (!ev_is_active(&c->dispatch))
                ev_timer_start(c->loop, &c->dispatch);
}

/* ---- the run queue ------------------------------------------------------------- */

static void start(struct dv_query *q);

static void enqueue(struct dv_query *q, bool front) {
        struct dv_client *c = q->client;

        q->state = Q_QUEUED;
        list_push(&c->queue_head, &c->queue_tail, q, front);
}

/* Start queued queries while this environment has free slots and is not
 * paused by a 429. Never calls a user callback (completions are deferred). */
static void pump(struct dv_client *c) {
        double now = mono_now();

        if (now < c->paused_until) {
                /* a query that would wait out the pause past its budget fails now */
                for (struct dv_query *q = c->queue_head, *next; q; q = next) {
                        double since = q->first_failure > 0 ? q->first_failure : q->created_at;

                        next = q->lnext;
                        if (c->paused_until - since > c->opt.retry_budget_sec)
                                finish(q, -EBUSY,
                                       "environment throttled (HTTP 429) for another %.0f s, beyond the retry budget of %.0f s",
                                       c->paused_until - now, c->opt.retry_budget_sec);
                }
                ev_timer_stop(c->loop, &c->pause);
                if (c->queue_head) {
                        ev_timer_set(&c->pause, c->paused_until - now, 0.);
                        ev_timer_start(c->loop, &c->pause);
                }
                return;
        }
        while (c->queue_head && c->in_flight < c->opt.max_in_flight) {
                struct dv_query *q = c->queue_head;

                list_remove(&c->queue_head, &c->queue_tail, q);
                start(q);
        }
}

static void pause_cb(struct ev_loop *loop, struct ev_timer *w, int revents) {
        pump(w->data);
}

static void retry_cb(struct ev_loop *loop, struct ev_timer *w, int revents) {
        struct dv_query *q = w->data;

        enqueue(q, true); /* a retried page goes before queries not yet started */
        pump(q->client);
}

/* The current page failed in a way that may pass: try it again after a
 * backoff (at least min_delay), unless that would exceed the retry budget. */
static void retry_later(struct dv_query *q, int error, double min_delay, const char *fmt, ...) _printf_(4, 5);
static void retry_later(struct dv_query *q, int error, double min_delay, const char *fmt, ...) {
        struct dv_client *c = q->client;
        double now = mono_now(), delay;
        char why[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);

        if (q->first_failure <= 0)
                q->first_failure = now;
        delay = backoff_delay(q->attempt, c->opt.initial_backoff_sec, c->opt.max_backoff_sec,
                              backoff_random(&c->rng));
        if (delay < min_delay)
                delay = min_delay;
        q->attempt++;
        if (now + delay - q->first_failure > c->opt.retry_budget_sec) {
                finish(q, error, "giving up after %u attempts in %.0f s (retry budget %.0f s): %s",
                       q->attempt, now - q->first_failure, c->opt.retry_budget_sec, why);
                return;
        }
        log_debug("%s: %s: %s; retry %u in %.1f s", c->name, kind_names[q->kind], why, q->attempt, delay);
        q->state = Q_WAITING;
        ev_timer_set(&q->retry, delay, 0.);
        ev_timer_start(c->loop, &q->retry);
}

/* 429: wait Retry-After (or a backoff when absent) before this environment
 * sends anything again; other environments are not affected. */
static void throttled(struct dv_query *q, const struct http_response *resp) {
        struct dv_client *c = q->client;
        double now = mono_now(), delay;
        uint64_t ra;
        bool has_ra = backoff_parse_retry_after(resp->retry_after, time(NULL),
                                                (uint64_t) c->opt.max_retry_after_sec, &ra) == 0;

        if (q->first_failure <= 0)
                q->first_failure = now;
        delay = has_ra ? (double) ra
                       : backoff_delay(q->attempt, c->opt.initial_backoff_sec, c->opt.max_backoff_sec,
                                       backoff_random(&c->rng));
        q->attempt++;
        if (now + delay > c->paused_until)
                c->paused_until = now + delay;
        if (now + delay - q->first_failure > c->opt.retry_budget_sec) {
                finish(q, -EBUSY, "throttled (HTTP 429%s%s%s) beyond the retry budget of %.0f s",
                       q->dv_code ? " " : "", strempty(q->dv_code),
                       has_ra ? ", Retry-After given" : "", c->opt.retry_budget_sec);
                return;
        }
        log_debug("%s: %s: throttled (HTTP 429%s%s), environment paused for %.1f s", c->name,
                  kind_names[q->kind], q->dv_code ? " " : "", strempty(q->dv_code), delay);
        enqueue(q, true);
}

/* Words from the service made fit for a message: one line, capped. */
static char *server_text(const char *s) {
        size_t n = strlen(s);
        char *w;

        if (n > SERVER_TEXT_MAX)
                n = SERVER_TEXT_MAX;
        w = strndup(s, n);
        if (!w)
                return NULL;
        for (char *p = w; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
        return w;
}

/* {"error":{"code":"0x80040220","message":"..."}} -> q->dv_code, *ret_message */
static void parse_error_body(struct dv_query *q, const struct http_response *resp, char **ret_message) {
        json_t *root = json_loadb(resp->body, resp->body_len, 0, NULL);
        json_t *err = json_object_get(root, "error");
        const char *code = json_string_value(json_object_get(err, "code"));
        const char *msg = json_string_value(json_object_get(err, "message"));

        if (code)
                q->dv_code = server_text(code);
        *ret_message = msg ? server_text(msg) : NULL;
        json_decref(root);
}

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
                if (u >= 0xD800 && u <= 0xDBFF && is_u_escape(out, n, i + 6, &v) && v >= 0xDC00 && v <= 0xDFFF) {
                        i += 12; /* a pair: one code point beyond U+FFFF */
                        continue;
                }
                if (u == 0 || (u >= 0xD800 && u <= 0xDFFF)) {
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
static json_t *load_page(struct dv_query *q, const struct http_response *resp, json_error_t *jerr) {
        json_t *root = json_loadb(resp->body, resp->body_len, 0, jerr);
        _cleanup_free_ char *fixed = NULL;
        size_t repairs = 0;

        if (root)
                return root;
        fixed = dv_json_repair(resp->body, resp->body_len, &repairs);
        if (!fixed || repairs == 0)
                return NULL;
        root = json_loadb(fixed, resp->body_len, 0, jerr);
        if (root)
                log_info("%s: %s: %zu NUL, unpaired surrogate or ill-formed UTF-8 sequence(s) in the "
                         "response replaced", q->client->name, kind_names[q->kind], repairs);
        return root;
}

static void page_received(struct dv_query *q, const struct http_response *resp) {
        struct dv_client *c = q->client;
        json_error_t jerr;
        json_t *root, *value, *next, *row;
        size_t i;

        if (!resp->content_type || strncasecmp(resp->content_type, "application/json", 16) != 0) {
                retry_later(q, -EBADMSG, 0, "HTTP 200 with Content-Type %s, not JSON",
                            resp->content_type ? resp->content_type : "(none)");
                return;
        }
        root = load_page(q, resp, &jerr);
        if (!root) {
                retry_later(q, -EBADMSG, 0, "response is not valid JSON (%s at byte %d of %zu)", jerr.text,
                            jerr.position, resp->body_len);
                return;
        }
        value = json_object_get(root, "value");
        next = json_object_get(root, "@odata.nextLink");
        if (!json_is_object(root) || !json_is_array(value) || (next && !json_is_string(next) && !json_is_null(next))) {
                json_decref(root);
                retry_later(q, -EBADMSG, 0, "response is not an OData collection ({\"value\":[...]})");
                return;
        }
        json_array_foreach(value, i, row)
                if (!json_is_object(row)) {
                        json_decref(root);
                        retry_later(q, -EBADMSG, 0, "row %zu of the response is not a JSON object", i);
                        return;
                }
        if (json_is_string(next) && http_url_same_origin(json_string_value(next), c->url) != 1) {
                _cleanup_free_ char *link = server_text(json_string_value(next));
                json_decref(root);
                finish(q, -EPROTO, "refusing an @odata.nextLink to another origin than %s: %s", c->url,
                       strempty(link));
                return;
        }
        if (json_array_extend(q->rows, value) < 0) {
                json_decref(root);
                finish(q, -ENOMEM, "out of memory");
                return;
        }
        q->pages++;
        q->attempt = 0;
        q->first_failure = 0;
        q->retried_401 = false;
        log_debug("%s: %s: page %u: %zu rows (%.3f s)%s", c->name, kind_names[q->kind], q->pages,
                  json_array_size(value), resp->total_time, json_is_string(next) ? ", more" : "");

        free(q->page_url);
        q->page_url = NULL;
        if (json_is_string(next))
                q->page_url = strdup(json_string_value(next));
        else if (q->i_url + 1 < q->n_urls)
                q->page_url = strdup(q->urls[++q->i_url]);
        else {
                json_decref(root);
                succeed(q);
                return;
        }
        json_decref(root);
        if (!q->page_url) {
                finish(q, -ENOMEM, "out of memory");
                return;
        }
        enqueue(q, true); /* the rest of a started query goes first */
}

static bool transient(int error) {
        return error == -ETIMEDOUT || error == -ECONNRESET || error == -ECONNREFUSED ||
               error == -EHOSTUNREACH || error == -EIO;
}

static void handle_response(struct dv_query *q, const struct http_response *resp) {
        struct dv_client *c = q->client;
        _cleanup_free_ char *msg = NULL;
        double ra_delay = 0;
        uint64_t ra;

        if (resp->error < 0) {
                if (transient(resp->error))
                        retry_later(q, resp->error, 0, "%s", strempty(resp->error_text));
                else
                        finish(q, resp->error, "%s", strempty(resp->error_text));
                return;
        }
        q->dv_code = mfree(q->dv_code);
        if (resp->status == 200) {
                page_received(q, resp);
                return;
        }
        parse_error_body(q, resp, &msg);
        q->result.dv_code = q->dv_code;

#define DETAIL q->dv_code ? " " : "", strempty(q->dv_code), msg ? ": " : "", strempty(msg)
        switch (resp->status) {
        case 401:
                if (!q->retried_401) {
                        /* the token expired or was revoked: one retry with a fresh one */
                        q->retried_401 = true;
                        auth_invalidate(c->auth, q->token_used);
                        token_forget(q);
                        log_debug("%s: %s: HTTP 401, renewing the token", c->name, kind_names[q->kind]);
                        enqueue(q, true);
                } else
                        finish(q, -EKEYREJECTED, "the service refused a fresh token (HTTP 401%s%s%s%s)", DETAIL);
                return;
        case 429:
                throttled(q, resp);
                return;
        case 400:
                finish(q, -EINVAL, "the service rejected the query (HTTP 400%s%s%s%s): GET %s", DETAIL,
                       q->page_url);
                return;
        case 403:
                finish(q, -EACCES, "access denied (HTTP 403%s%s%s%s): the application user may lack read privilege on this table",
                       DETAIL);
                return;
        case 404:
                finish(q, -ENOENT, "not found (HTTP 404%s%s%s%s): GET %s", DETAIL, q->page_url);
                return;
        case 408:
        case 500 ... 599:
                if (backoff_parse_retry_after(resp->retry_after, time(NULL),
                                              (uint64_t) c->opt.max_backoff_sec, &ra) == 0)
                        ra_delay = (double) ra;
                retry_later(q, -EIO, ra_delay, "HTTP %ld%s%s%s%s", resp->status, DETAIL);
                return;
        default:
                finish(q, -EIO, "unexpected HTTP %ld%s%s%s%s", resp->status, DETAIL);
                return;
        }
#undef DETAIL
}

static void http_done(const struct http_response *resp, void *userdata) {
        struct dv_query *q = userdata;
        struct dv_client *c = q->client;
        time_t t;

        q->transfer = NULL;
        c->in_flight--;
        q->result.requests++;
        q->result.http_status = resp->status;
        if (resp->date && httpdate_parse(resp->date, time(NULL), &t) == 0) {
                q->result.server_date = t;
                q->result.local_date = time(NULL);
        }
        log_debug("%s: %s: HTTP %ld%s%s in %.3f s", c->name, kind_names[q->kind], resp->status,
                  resp->error < 0 ? ", " : "", resp->error < 0 ? strempty(resp->error_text) : "",
                  resp->total_time);
        handle_response(q, resp);
        pump(c);
}

static void send_page(struct dv_query *q, const char *token) {
        struct dv_client *c = q->client;
        char prefer[160];
        _cleanup_free_ char *authorization = NULL;
        const char *headers[6];
        struct http_request req;
        int r;

        if (q->kind == DV_QUERY_TRACELOGS)
                snprintf(prefer, sizeof(prefer), "Prefer: odata.include-annotations=\"%s\",odata.maxpagesize=%u",
                         &DV_ANNOTATION_LOOKUP_NAME[1], c->opt.max_page_size); /* without its "@" */
        else
                snprintf(prefer, sizeof(prefer), "Prefer: odata.maxpagesize=%u", c->opt.max_page_size);
        if (asprintf(&authorization, "Authorization: Bearer %s", token) < 0)
                authorization = NULL;
        token_forget(q);
        q->token_used = strdup(token);
        if (!authorization || !q->token_used) {
                c->in_flight--;
                finish(q, -ENOMEM, "out of memory");
                goto out;
        }
        headers[0] = authorization;
        headers[1] = "Accept: application/json";
        headers[2] = "OData-MaxVersion: 4.0";
        headers[3] = "OData-Version: 4.0";
        headers[4] = prefer;
        headers[5] = NULL;
        req = (struct http_request) {
                .method = "GET",
                .url = q->page_url,
                .headers = headers,
                .max_response = c->opt.max_response,
                .timeout_ms = c->opt.timeout_ms,
                .ca_file = c->ca_file,
        };
        r = http_submit(c->http, &req, http_done, q, &q->transfer);
        if (r < 0) {
                c->in_flight--;
                finish(q, r, "cannot send the request: %s", strerror(-r));
                goto out;
        }
        q->state = Q_RUNNING;
        log_debug("%s: %s: GET %s", c->name, kind_names[q->kind], q->page_url);
out:
        if (authorization)
                explicit_bzero(authorization, strlen(authorization));
}

static void token_failed(struct dv_query *q, int error) {
        struct dv_client *c = q->client;
        const char *why = auth_error(c->auth);

        c->in_flight--;
        if (error == -EKEYREJECTED || !transient(error) || error == -ENOMEM)
                finish(q, error, "%s", why ? why : strerror(-error));
        else
                retry_later(q, error, 0, "%s", why ? why : strerror(-error));
}

static void token_cb(struct auth *a, int error, const char *token, void *userdata) {
        struct dv_query *q = userdata;
        struct dv_client *c = q->client;

        q->waiter = NULL;
        if (error < 0)
                token_failed(q, error);
        else
                send_page(q, token);
        pump(c);
}

static void start(struct dv_query *q) {
        struct dv_client *c = q->client;
        const char *token = NULL;
        int r;

        c->in_flight++;
        q->state = Q_TOKEN;
        r = auth_get(c->auth, token_cb, q, &q->waiter, &token);
        if (r > 0)
                send_page(q, token);
        else if (r < 0)
                token_failed(q, r);
}

/* ---- public ---------------------------------------------------------------------- */

int dv_query(struct dv_client *c, enum dv_query_kind kind, const struct dv_query_args *args,
             dv_done_fn done, void *userdata) {
        struct dv_query *q;
        int r;

        if (!c || !args || !done)
                return -EINVAL;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        r = dv_query_urls(c->url, kind, args, c->opt.ids_per_request, &q->urls, &q->n_urls);
        if (r < 0) {
                free(q);
                return r;
        }
        q->client = c;
        q->kind = kind;
        q->done = done;
        q->userdata = userdata;
        q->created_at = mono_now();
        q->rows = json_array();
        q->page_url = q->n_urls > 0 ? strdup(q->urls[0]) : NULL;
        if (!q->rows || (q->n_urls > 0 && !q->page_url)) {
                query_free(q);
                return -ENOMEM;
        }
        ev_timer_init(&q->retry, retry_cb, 0., 0.);
        q->retry.data = q;
        all_add(c, q);
        if (q->n_urls == 0) { /* an empty id list: nothing to ask */
                succeed(q);
                return 0;
        }
        enqueue(q, false);
        pump(c);
        return 0;
}

int dv_query_tracelogs_since(struct dv_client *c, time_t since, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_TRACELOGS, &(struct dv_query_args) { .since = since }, done, userdata);
}

int dv_query_mailboxes_since(struct dv_client *c, time_t since, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_MAILBOXES, &(struct dv_query_args) { .since = since }, done, userdata);
}

int dv_query_workflows_since(struct dv_client *c, time_t since, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_WORKFLOWS, &(struct dv_query_args) { .since = since }, done, userdata);
}

int dv_query_steps_since(struct dv_client *c, time_t since, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_STEPS, &(struct dv_query_args) { .since = since }, done, userdata);
}

int dv_query_failed_sessions(struct dv_client *c, const char *const *process_ids, size_t n,
                             time_t from, time_t to, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_FAILED_SESSIONS,
                        &(struct dv_query_args) { .ids = process_ids, .n_ids = n, .from = from, .to = to },
                        done, userdata);
}

int dv_query_plugin_traces(struct dv_client *c, const char *const *step_ids, size_t n,
                           time_t from, time_t to, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_PLUGIN_TRACES,
                        &(struct dv_query_args) { .ids = step_ids, .n_ids = n, .from = from, .to = to },
                        done, userdata);
}

int dv_query_probe(struct dv_client *c, const char *entityset, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_PROBE, &(struct dv_query_args) { .entityset = entityset }, done, userdata);
}

static void options_fill(struct dv_options *o) {
        if (!o->max_page_size)
                o->max_page_size = DEFAULT_PAGE_SIZE;
        if (!o->max_in_flight)
                o->max_in_flight = DEFAULT_IN_FLIGHT;
        if (!(o->initial_backoff_sec > 0))
                o->initial_backoff_sec = DEFAULT_INITIAL_BACKOFF;
        if (!(o->max_backoff_sec > 0))
                o->max_backoff_sec = DEFAULT_MAX_BACKOFF;
        if (!(o->retry_budget_sec > 0))
                o->retry_budget_sec = DEFAULT_RETRY_BUDGET;
        if (!(o->max_retry_after_sec > 0))
                o->max_retry_after_sec = DEFAULT_MAX_RETRY_AFTER;
        if (!o->max_response)
                o->max_response = HTTP_DEFAULT_MAX_RESPONSE;
        if (o->timeout_ms <= 0)
                o->timeout_ms = DEFAULT_TIMEOUT_MS;
        if (!o->ids_per_request)
                o->ids_per_request = DEFAULT_IDS_PER_REQUEST;
        if (!o->seed)
                o->seed = (uint64_t) (mono_now() * 1e6) ^ (uint64_t) getpid() << 32;
}

int dv_client_new(struct ev_loop *loop, struct http *http, const struct env_config *env,
                  const struct dv_options *opt, struct dv_client **ret) {
        struct auth_options ao;
        struct dv_client *c;
        size_t n;
        int r;

        if (!loop || !http || !env || !env->name || !env->url)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->http = http;
        if (opt)
                c->opt = *opt;
        options_fill(&c->opt);
        c->rng = c->opt.seed;
        n = strlen(env->url);
        while (n > 0 && env->url[n - 1] == '/')
                n--;
        c->name = strdup(env->name);
        c->url = strndup(env->url, n);
        c->ca_file = env->ca_file ? strdup(env->ca_file) : NULL;
        ev_timer_init(&c->pause, pause_cb, 0., 0.);
        c->pause.data = c;
        ev_timer_init(&c->dispatch, dispatch_cb, 0., 0.);
        c->dispatch.data = c;
        if (!c->name || !c->url || (env->ca_file && !c->ca_file)) {
                dv_client_free(c);
                return -ENOMEM;
        }
        ao = (struct auth_options) {
                .max_backoff_sec = c->opt.max_backoff_sec,
                .timeout_ms = c->opt.timeout_ms,
                .seed = c->opt.seed ^ UINT64_C(0x5DEECE66D),
        };
        r = auth_new(http, env, &ao, &c->auth);
        if (r < 0) {
                dv_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void dv_client_free(struct dv_client *c) {
        if (!c)
                return;
        ev_timer_stop(c->loop, &c->pause);
        ev_timer_stop(c->loop, &c->dispatch);
        while (c->all) {
                struct dv_query *q = c->all;

                all_remove(c, q);
                if (q->transfer)
                        http_cancel(q->transfer);
                if (q->waiter)
                        auth_waiter_cancel(q->waiter);
                ev_timer_stop(c->loop, &q->retry);
                query_free(q);
        }
        auth_free(c->auth);
        free(c->name);
        free(c->url);
        free(c->ca_file);
        free(c);
}

const char *dv_client_name(const struct dv_client *c) {
        return c->name;
}

unsigned dv_client_token_requests(const struct dv_client *c) {
        return auth_requests(c->auth);
}
