/* client.c: owns how an environment's queries are asked: queue, request cap, tokens, paging,
 * retries, throttling, typed pages. Must not know alerts or state, nor what queries select. */
#include <assert.h>
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
#include "client.h"
#include "connection.h"
#include "http.h"
#include "log.h"
#include "response.h"
#include "timeutil.h"

#define DEFAULT_PAGE_SIZE 5000u
#define DEFAULT_IN_FLIGHT 4u
#define DEFAULT_INITIAL_BACKOFF 1.0
#define DEFAULT_MAX_BACKOFF 60.0
#define DEFAULT_RETRY_BUDGET 300.0
#define DEFAULT_MAX_RETRY_AFTER 3600.0
#define DEFAULT_TIMEOUT_MS 60000L

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
        dv_page_fn page;
        dv_done_fn done;
        void *userdata;

        char **urls;                            /* first page of each request */
        size_t n_urls, i_url;
        char *page_url;                         /* the page being fetched */
        size_t rows_seen;                       /* rows received, skipped ones included */

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
        bool in_page_callback;                  /* see dv_page_fn: no query, no free */
};

static const char *kind_name(const struct dv_query *q) {
        return dv_query_kind_to_string(q->kind);
}

static double mono_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
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
        rows_skipped_done(&q->result.skipped);
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
                if (asprintf(&q->result.message, "%s: %s: %s", c->name, kind_name(q),
                             what ? what : strerror(-error)) < 0)
                        q->result.message = NULL;
                log_debug("%s", strempty(q->result.message));
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
        log_debug("%s: %s: %s; retry %u in %.1f s", c->name, kind_name(q), why, q->attempt, delay);
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
                  kind_name(q), q->dv_code ? " " : "", strempty(q->dv_code), delay);
        enqueue(q, true);
}

/* {"error":{"code":"0x80040220","message":"..."}} -> q->dv_code, *ret_message */
static void parse_error_body(struct dv_query *q, const struct http_response *resp, char **ret_message) {
        free(q->dv_code);
        dv_error_body_parse(resp->body, resp->body_len, &q->dv_code, ret_message);
}

/* Parse the page's rows and hand them over, the client guarded against the
 * callback freeing it. */
static int deliver_page(struct dv_query *q, const json_t *value) {
        struct dv_client *c = q->client;
        int table = dv_query_table(q->kind);
        struct dv_page page = {
                .kind = q->kind,
                .number = q->result.pages + 1,
                .first_index = q->rows_seen,
        };
        int r;

        q->rows_seen += json_array_size(value);
        q->result.pages++;
        if (table < 0) { /* the probe: the rows are not parsed */
                q->result.rows += json_array_size(value);
                return 0;
        }
        r = rows_parse_page(table, value, c->name, page.first_index, &page.rows, &q->result.skipped);
        if (r < 0)
                return r;
        q->result.rows += page.rows.n;
        if (q->page) {
                c->in_page_callback = true;
                q->page(c, &page, q->userdata);
                c->in_page_callback = false;
        }
        rows_done(&page.rows);
        return 0;
}

/* After a page: the next one to fetch is its nextLink, else the first page of
 * the query's next request. 1 when there is one, 0 when the query is
 * complete, -ENOMEM. */
static int next_page(struct dv_query *q, const char *next_link) {
        q->page_url = mfree(q->page_url);
        if (next_link)
                q->page_url = strdup(next_link);
        else if (q->i_url + 1 < q->n_urls)
                q->page_url = strdup(q->urls[++q->i_url]);
        else
                return 0;
        return q->page_url ? 1 : -ENOMEM;
}

static void page_received(struct dv_query *q, const struct http_response *resp) {
        struct dv_client *c = q->client;
        _cleanup_free_ char *why = NULL;
        struct dv_page_body body;
        size_t n;
        int r;

        if (!resp->content_type || strncasecmp(resp->content_type, "application/json", 16) != 0) {
                retry_later(q, -EBADMSG, 0, "HTTP 200 with Content-Type %s, not JSON",
                            resp->content_type ? resp->content_type : "(none)");
                return;
        }
        r = dv_page_body_parse(resp->body, resp->body_len, &body, &why);
        if (r == -ENOMEM) {
                finish(q, r, "out of memory");
                return;
        }
        if (r < 0) {
                retry_later(q, r, 0, "%s", strempty(why));
                return;
        }
        if (body.repairs > 0)
                log_info("%s: %s: %zu NUL, unpaired surrogate or ill-formed UTF-8 sequence(s) in the "
                         "response replaced", c->name, kind_name(q), body.repairs);
        if (body.next_link && http_url_same_origin(body.next_link, c->url) != 1) {
                _cleanup_free_ char *link = dv_server_text(body.next_link);
                dv_page_body_done(&body);
                finish(q, -EPROTO, "refusing an @odata.nextLink to another origin than %s: %s", c->url,
                       strempty(link));
                return;
        }
        n = json_array_size(body.value);
        r = deliver_page(q, body.value);
        if (r < 0) {
                dv_page_body_done(&body);
                finish(q, r, "out of memory");
                return;
        }
        q->attempt = 0;
        q->first_failure = 0;
        q->retried_401 = false;
        log_debug("%s: %s: page %u: %zu rows (%.3f s)%s", c->name, kind_name(q), q->result.pages, n,
                  resp->total_time, body.next_link ? ", more" : "");

        r = next_page(q, body.next_link);
        dv_page_body_done(&body);
        if (r < 0)
                finish(q, r, "out of memory");
        else if (r == 0)
                succeed(q);
        else
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
                        log_debug("%s: %s: HTTP 401, renewing the token", c->name, kind_name(q));
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
        log_debug("%s: %s: HTTP %ld%s%s in %.3f s", c->name, kind_name(q), resp->status,
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

        dv_query_prefer(q->kind, c->opt.max_page_size, prefer, sizeof(prefer));
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
        log_debug("%s: %s: GET %s", c->name, kind_name(q), q->page_url);
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
             dv_page_fn page, dv_done_fn done, void *userdata) {
        struct dv_query *q;
        int r;

        if (!c || !args || !done)
                return -EINVAL;
        assert(!c->in_page_callback);
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
        q->page = page;
        q->done = done;
        q->userdata = userdata;
        q->created_at = mono_now();
        q->page_url = q->n_urls > 0 ? strdup(q->urls[0]) : NULL;
        if (q->n_urls > 0 && !q->page_url) {
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

int dv_query_tracelogs_since(struct dv_client *c, time_t since, dv_page_fn page, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_TRACELOGS, &(struct dv_query_args) { .since = since }, page, done, userdata);
}

int dv_query_mailboxes_since(struct dv_client *c, time_t since, dv_page_fn page, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_MAILBOXES, &(struct dv_query_args) { .since = since }, page, done, userdata);
}

int dv_query_workflows_since(struct dv_client *c, time_t since, dv_page_fn page, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_WORKFLOWS, &(struct dv_query_args) { .since = since }, page, done, userdata);
}

int dv_query_steps_since(struct dv_client *c, time_t since, dv_page_fn page, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_STEPS, &(struct dv_query_args) { .since = since }, page, done, userdata);
}

int dv_query_failed_sessions(struct dv_client *c, const char *const *process_ids, size_t n, time_t from,
                             time_t to, dv_page_fn page, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_FAILED_SESSIONS,
                        &(struct dv_query_args) { .ids = process_ids, .n_ids = n, .from = from, .to = to },
                        page, done, userdata);
}

int dv_query_plugin_traces(struct dv_client *c, const char *const *step_ids, size_t n, time_t from, time_t to,
                           dv_page_fn page, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_PLUGIN_TRACES,
                        &(struct dv_query_args) { .ids = step_ids, .n_ids = n, .from = from, .to = to },
                        page, done, userdata);
}

int dv_query_probe(struct dv_client *c, const char *entityset, dv_done_fn done, void *userdata) {
        return dv_query(c, DV_QUERY_PROBE, &(struct dv_query_args) { .entityset = entityset }, NULL, done,
                        userdata);
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
                o->ids_per_request = DV_DEFAULT_IDS_PER_REQUEST;
        if (!o->seed)
                o->seed = (uint64_t) (mono_now() * 1e6) ^ (uint64_t) getpid() << 32;
}

int dv_client_new(struct ev_loop *loop, struct http *http, const struct dv_connection *conn,
                  const struct dv_options *opt, struct dv_client **ret) {
        struct auth_options ao;
        struct dv_client *c;
        size_t n;
        int r;

        if (!loop || !http || !conn || !conn->name || !conn->url)
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
        n = strlen(conn->url);
        while (n > 0 && conn->url[n - 1] == '/')
                n--;
        c->name = strdup(conn->name);
        c->url = strndup(conn->url, n);
        c->ca_file = conn->ca_file ? strdup(conn->ca_file) : NULL;
        ev_timer_init(&c->pause, pause_cb, 0., 0.);
        c->pause.data = c;
        ev_timer_init(&c->dispatch, dispatch_cb, 0., 0.);
        c->dispatch.data = c;
        if (!c->name || !c->url || (conn->ca_file && !c->ca_file)) {
                dv_client_free(c);
                return -ENOMEM;
        }
        ao = (struct auth_options) {
                .max_backoff_sec = c->opt.max_backoff_sec,
                .timeout_ms = c->opt.timeout_ms,
                .seed = c->opt.seed ^ UINT64_C(0x5DEECE66D),
        };
        r = auth_new(http, conn, &ao, &c->auth);
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
        assert(!c->in_page_callback);
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
