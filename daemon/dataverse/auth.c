/* auth.c: owns one environment's client-credentials token: request, cache,
 * renewal, backoff. Must not know Dataverse queries, nor put a secret in words. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "auth.h"
#include "backoff.h"
#include "connection.h"
#include "http.h"

#define RENEW_AHEAD_SEC 300.0
#define EXPIRY_MARGIN_SEC 30.0
#define ERROR_TEXT_MAX 300

struct auth_waiter {
        struct auth *auth;
        struct auth_waiter *prev, *next;
        auth_done_fn done;
        void *userdata;
};

struct auth {
        struct http *http;
        char *token_url;
        char *form;             /* request body: holds the secret, zeroed on free */
        char *secret;           /* only to scrub it from server-provided words */
        char *ca_file;
        long timeout_ms;
        double max_backoff;
        uint64_t rng;

        char *token;            /* zeroed on free */
        double obtained_at, lifetime;

        struct http_transfer *inflight;
        double inflight_sent_at;
        struct auth_waiter *waiters, *waiters_tail;

        int last_error;         /* of the last failed request; 0 after a success */
        double retry_not_before;
        unsigned failures;      /* consecutive */
        char *error;
        unsigned requests;
};

/* ---- pure arithmetic ------------------------------------------------------ */

static double min_d(double a, double b) {
        return a < b ? a : b;
}

double auth_renew_at(double obtained_at, double lifetime) {
        return obtained_at + lifetime - min_d(RENEW_AHEAD_SEC, lifetime / 5);
}

double auth_expires_at(double obtained_at, double lifetime) {
        return obtained_at + lifetime - min_d(EXPIRY_MARGIN_SEC, lifetime / 10);
}

enum auth_token_phase auth_token_phase(double obtained_at, double lifetime, double now) {
        if (!(lifetime > 0) || now < obtained_at || now >= auth_expires_at(obtained_at, lifetime))
                return AUTH_TOKEN_EXPIRED;
        if (now >= auth_renew_at(obtained_at, lifetime))
                return AUTH_TOKEN_RENEW;
        return AUTH_TOKEN_FRESH;
}

/* ---- helpers ---------------------------------------------------------------- */

/* Survives suspend (tokens expire in real time) and never goes backwards. */
static double now_sec(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
                clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void free_secret(char **s) {
        if (*s) {
                explicit_bzero(*s, strlen(*s));
                *s = mfree(*s);
        }
}

static char *escape(const char *s) {
        char *e = curl_easy_escape(NULL, s, 0), *copy;

        if (!e)
                return NULL;
        copy = strdup(e);
        curl_free(e);
        return copy;
}

static void set_error(struct auth *a, int error, const char *fmt, ...) _printf_(3, 4);
static void set_error(struct auth *a, int error, const char *fmt, ...) {
        va_list ap;
        char *msg = NULL;

        a->last_error = error;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        free(a->error);
        a->error = msg;
}

/* Server words made safe for a message: first line, printable, capped,
 * with the secret and the token blanked should a server echo them. */
static char *server_words(const struct auth *a, const char *s) {
        size_t n = strcspn(s, "\r\n");
        char *w;

        if (n > ERROR_TEXT_MAX)
                n = ERROR_TEXT_MAX;
        w = strndup(s, n);
        if (!w)
                return NULL;
        for (char *p = w; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
        for (const char *secret_like[] = { a->secret, a->token }, **sp = secret_like;
             sp < secret_like + 2; sp++) {
                char *hit;

                if (!*sp || strlen(*sp) < 4)
                        continue;
                while ((hit = strstr(w, *sp)))
                        memset(hit, '*', strlen(*sp));
        }
        return w;
}

static bool token_usable(const char *t) {
        if (!t || !*t)
                return false;
        for (; *t; t++)
                if (*t <= 0x20 || *t >= 0x7f) /* goes into a header line */
                        return false;
        return true;
}

/* ---- the token request -------------------------------------------------------- */

static void wake_waiters(struct auth *a, int error) {
        /* one at a time from the head: a callback may cancel other waiters */
        while (a->waiters) {
                struct auth_waiter *w = a->waiters;

                a->waiters = w->next;
                if (a->waiters)
                        a->waiters->prev = NULL;
                else
                        a->waiters_tail = NULL;
                w->done(a, error, error == 0 ? a->token : NULL, w->userdata);
                free(w);
        }
}

double auth_failure_delay(double backoff_sec, long status, const char *retry_after, time_t now) {
        uint64_t ra;

        /* Entra ID throttles with 429 (and may send 503) with Retry-After: never
         * ask again sooner than it said, even past our own backoff cap. */
        if ((status == 429 || status == 503) &&
            backoff_parse_retry_after(retry_after, now, AUTH_MAX_RETRY_AFTER_SEC, &ra) == 0 &&
            (double) ra > backoff_sec)
                return (double) ra;
        return backoff_sec;
}

static void note_failure(struct auth *a, const struct http_response *resp) {
        double delay = backoff_delay(a->failures, 1.0, a->max_backoff, backoff_random(&a->rng));

        if (resp->error == 0)
                delay = auth_failure_delay(delay, resp->status, resp->retry_after, time(NULL));
        a->failures++;
        a->retry_not_before = now_sec() + delay;
}

static int parse_token(struct auth *a, const struct http_response *resp, double sent_at) {
        json_error_t jerr;
        json_t *root = json_loadb(resp->body, resp->body_len, 0, &jerr), *tok, *exp;
        double lifetime = 0;
        int r = 0;

        if (!root || !json_is_object(root)) {
                set_error(a, -EBADMSG, "token endpoint %s answered HTTP %ld with a body that is not a JSON object",
                          a->token_url, resp->status);
                r = -EBADMSG;
                goto out;
        }
        tok = json_object_get(root, "access_token");
        exp = json_object_get(root, "expires_in");
        if (json_is_integer(exp))
                lifetime = (double) json_integer_value(exp);
        else if (json_is_real(exp))
                lifetime = json_real_value(exp);
        else if (json_is_string(exp)) /* the v1 endpoint sends a string */
                lifetime = strtod(json_string_value(exp), NULL);
        else
                lifetime = 300; /* absent: assume short-lived */
        if (!json_is_string(tok) || !token_usable(json_string_value(tok)) || !(lifetime > 0)) {
                set_error(a, -EBADMSG, "token endpoint %s answered HTTP %ld without a usable access_token/expires_in",
                          a->token_url, resp->status);
                r = -EBADMSG;
                goto out;
        }
        free_secret(&a->token);
        a->token = strdup(json_string_value(tok));
        if (!a->token) {
                r = -ENOMEM;
                goto out;
        }
        a->obtained_at = sent_at;
        a->lifetime = lifetime;
out:
        if (root) {
                /* the token sits in jansson's copy too: scrub it before freeing */
                json_t *t = json_object_get(root, "access_token");
                if (json_is_string(t))
                        explicit_bzero((char *) json_string_value(t), json_string_length(t));
                json_decref(root);
        }
        return r;
}

static void describe_refusal(struct auth *a, const struct http_response *resp) {
        json_t *root = json_loadb(resp->body, resp->body_len, 0, NULL);
        const char *err = json_string_value(json_object_get(root, "error"));
        const char *desc = json_string_value(json_object_get(root, "error_description"));
        _cleanup_free_ char *e = err ? server_words(a, err) : NULL;
        _cleanup_free_ char *d = desc ? server_words(a, desc) : NULL;

        set_error(a, -EKEYREJECTED, "token endpoint %s refused the credentials: HTTP %ld%s%s%s%s",
                  a->token_url, resp->status, e ? " " : "", strempty(e), d ? ": " : "", strempty(d));
        json_decref(root);
}

static void token_done(const struct http_response *resp, void *userdata) {
        struct auth *a = userdata;
        int r;

        a->inflight = NULL;
        if (resp->error < 0) {
                set_error(a, resp->error, "token request to %s failed: %s", a->token_url,
                          strempty(resp->error_text));
                r = resp->error;
        } else if (resp->status == 400 || resp->status == 401) {
                describe_refusal(a, resp);
                r = -EKEYREJECTED;
        } else if (resp->status != 200) {
                set_error(a, -EIO, "token endpoint %s answered HTTP %ld", a->token_url, resp->status);
                r = -EIO;
        } else
                r = parse_token(a, resp, a->inflight_sent_at);

        if (r < 0)
                note_failure(a, resp);
        else {
                a->failures = 0;
                a->last_error = 0;
                a->retry_not_before = 0;
        }
        wake_waiters(a, r);
}

static int start_request(struct auth *a) {
        static const char *const headers[] = {
                "Content-Type: application/x-www-form-urlencoded",
                "Accept: application/json",
                NULL,
        };
        struct http_request req = {
                .method = "POST",
                .url = a->token_url,
                .headers = headers,
                .body = a->form,
                .max_response = 1 << 20,
                .timeout_ms = a->timeout_ms,
                .ca_file = a->ca_file,
        };
        int r;

        a->inflight_sent_at = now_sec();
        r = http_submit(a->http, &req, token_done, a, &a->inflight);
        if (r < 0) {
                set_error(a, r, "token request to %s could not be sent: %s", a->token_url, strerror(-r));
                return r;
        }
        a->requests++;
        return 0;
}

/* ---- public ------------------------------------------------------------------- */

int auth_new(struct http *http, const struct dv_connection *conn, const struct auth_options *opt,
             struct auth **ret) {
        _cleanup_free_ char *id = NULL, *secret = NULL, *scope = NULL, *scope_default = NULL;
        struct auth *a;
        int r;

        if (!http || !conn || !conn->url || !conn->client_id || !conn->client_secret ||
            (!conn->token_url && !conn->tenant))
                return -EINVAL;
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->http = http;
        a->max_backoff = opt && opt->max_backoff_sec > 0 ? opt->max_backoff_sec : 60;
        a->timeout_ms = opt ? opt->timeout_ms : 0;
        a->rng = opt && opt->seed ? opt->seed : (uint64_t) now_sec() * 1000003u ^ (uint64_t) (uintptr_t) a;

        if (conn->token_url)
                a->token_url = strdup(conn->token_url);
        else if (asprintf(&a->token_url, "%s/%s/oauth2/v2.0/token",
                          conn->authority ? conn->authority : AUTH_DEFAULT_AUTHORITY, conn->tenant) < 0)
                a->token_url = NULL;
        if (!conn->scope && asprintf(&scope_default, "%s/.default", conn->url) < 0)
                scope_default = NULL;
        id = escape(conn->client_id);
        secret = escape(conn->client_secret);
        scope = escape(conn->scope ? conn->scope : strempty(scope_default));
        a->secret = strdup(conn->client_secret);
        a->ca_file = conn->ca_file ? strdup(conn->ca_file) : NULL;
        if (!a->token_url || !id || !secret || !scope || !a->secret || (conn->ca_file && !a->ca_file)) {
                r = -ENOMEM;
                goto fail;
        }
        if (asprintf(&a->form, "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s",
                     id, secret, scope) < 0) {
                a->form = NULL;
                r = -ENOMEM;
                goto fail;
        }
        free_secret(&secret);
        *ret = a;
        return 0;
fail:
        free_secret(&secret);
        auth_free(a);
        return r;
}

void auth_free(struct auth *a) {
        if (!a)
                return;
        if (a->inflight)
                http_cancel(a->inflight);
        while (a->waiters) {
                struct auth_waiter *w = a->waiters;
                a->waiters = w->next;
                free(w);
        }
        free(a->token_url);
        free_secret(&a->form);
        free_secret(&a->secret);
        free_secret(&a->token);
        free(a->ca_file);
        free(a->error);
        free(a);
}

int auth_get(struct auth *a, auth_done_fn done, void *userdata, struct auth_waiter **ret_waiter,
             const char **ret_token) {
        double now = now_sec();
        struct auth_waiter *w;
        int r;

        if (a->token) {
                switch (auth_token_phase(a->obtained_at, a->lifetime, now)) {
                case AUTH_TOKEN_RENEW:
                        /* renew in the background; failures only get recorded */
                        if (!a->inflight && now >= a->retry_not_before)
                                (void) start_request(a);
                        __attribute__((fallthrough));
                case AUTH_TOKEN_FRESH:
                        *ret_token = a->token;
                        return 1;
                case AUTH_TOKEN_EXPIRED:
                        free_secret(&a->token);
                        break;
                }
        }
        if (!a->inflight) {
                if (a->last_error < 0 && now < a->retry_not_before)
                        return a->last_error;
                r = start_request(a);
                if (r < 0)
                        return r;
        }
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->auth = a;
        w->done = done;
        w->userdata = userdata;
        w->prev = a->waiters_tail;
        if (a->waiters_tail)
                a->waiters_tail->next = w;
        else
                a->waiters = w;
        a->waiters_tail = w;
        if (ret_waiter)
                *ret_waiter = w;
        return 0;
}

void auth_waiter_cancel(struct auth_waiter *w) {
        struct auth *a;

        if (!w)
                return;
        a = w->auth;
        if (w->prev)
                w->prev->next = w->next;
        else
                a->waiters = w->next;
        if (w->next)
                w->next->prev = w->prev;
        else
                a->waiters_tail = w->prev;
        free(w);
}

void auth_invalidate(struct auth *a, const char *token) {
        if (a->token && token && strcmp(a->token, token) == 0)
                free_secret(&a->token);
}

const char *auth_error(const struct auth *a) {
        return a->error;
}

unsigned auth_requests(const struct auth *a) {
        return a->requests;
}
