/* http.c: owns libcurl's multi handle on the libev loop (after evhiperfifo.c)
 * and the in-flight queue. Must not know what URLs mean or what bodies hold. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <ev.h>

#include "build-config.h"
#include "http.h"

/* The process-wide state: loop, multi handle, its timer, the transfers. */
struct http {
        struct ev_loop *loop;
        CURLM *multi;
        struct ev_timer timer;
        struct ev_timer pump;           /* starts queued transfers after a cancel */
        int still_running;
        unsigned max_transfers;
        unsigned n_running;
        struct http_transfer *queue_head, *queue_tail;  /* waiting for a slot, FIFO */
        struct http_transfer *running;                  /* added to the multi handle */
        struct http_sock *socks;                        /* every watched socket */
};

/* One request: its easy handle, what it sends, what came back. */
struct http_transfer {
        struct http *http;
        struct http_transfer *prev, *next;
        bool running;
        CURL *easy;
        struct curl_slist *headers;
        char *url;
        char *body;
        size_t max_response;
        http_done_fn done;
        void *userdata;

        char *resp;
        size_t resp_len, resp_alloc;
        bool too_large;
        char *retry_after;
        char *date;
        char error[CURL_ERROR_SIZE];
};

/* One socket curl asked us to watch; tied to it with curl_multi_assign(). */
struct http_sock {
        struct http *http;
        struct http_sock *prev, *next;
        curl_socket_t fd;
        struct ev_io io;
};

static void check_multi_info(struct http *h);

/* ---- lists -------------------------------------------------------------- */

static void queue_append(struct http *h, struct http_transfer *t) {
        t->prev = h->queue_tail;
        t->next = NULL;
        if (h->queue_tail)
                h->queue_tail->next = t;
        else
                h->queue_head = t;
        h->queue_tail = t;
}

static void queue_remove(struct http *h, struct http_transfer *t) {
        if (t->prev)
                t->prev->next = t->next;
        else
                h->queue_head = t->next;
        if (t->next)
                t->next->prev = t->prev;
        else
                h->queue_tail = t->prev;
        t->prev = t->next = NULL;
}

static void running_add(struct http *h, struct http_transfer *t) {
        t->prev = NULL;
        t->next = h->running;
        if (h->running)
                h->running->prev = t;
        h->running = t;
        t->running = true;
        h->n_running++;
}

static void running_remove(struct http *h, struct http_transfer *t) {
        if (t->prev)
                t->prev->next = t->next;
        else
                h->running = t->next;
        if (t->next)
                t->next->prev = t->prev;
        t->prev = t->next = NULL;
        t->running = false;
        h->n_running--;
}

/* ---- transfers ---------------------------------------------------------- */

/* Requests carry credentials (Authorization headers, token request bodies)
 * and responses may carry tokens: leave none of it in freed memory. */
static void free_zeroed(char *s, size_t n) {
        if (s) {
                explicit_bzero(s, n);
                free(s);
        }
}

static void transfer_free(struct http_transfer *t) {
        if (!t)
                return;
        if (t->easy)
                curl_easy_cleanup(t->easy);
        for (struct curl_slist *l = t->headers; l; l = l->next)
                explicit_bzero(l->data, strlen(l->data));
        curl_slist_free_all(t->headers);
        free(t->url);
        free_zeroed(t->body, t->body ? strlen(t->body) : 0);
        free_zeroed(t->resp, t->resp_alloc);
        free(t->retry_after);
        free(t->date);
        free(t);
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct http_transfer *t = userdata;
        size_t n = size * nmemb;

        if (n > t->max_response - t->resp_len) {
                t->too_large = true;
                return 0; /* CURLE_WRITE_ERROR ends the transfer */
        }
        if (buffer_grow(&t->resp, &t->resp_alloc, t->resp_len + n + 1, 16384) < 0)
                return 0;
        memcpy(t->resp + t->resp_len, ptr, n);
        t->resp_len += n;
        t->resp[t->resp_len] = '\0';
        return n;
}

/* "Name: value\r\n" -> strdup of the trimmed value when the name matches. */
static int header_value(const char *line, size_t len, const char *name, char **ret) {
        size_t nl = strlen(name);
        const char *v, *end = line + len;

        if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
                return 0;
        v = line + nl + 1;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
        free(*ret);
        *ret = strndup(v, (size_t) (end - v));
        return *ret ? 1 : -ENOMEM;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata) {
        struct http_transfer *t = userdata;
        size_t n = size * nitems;

        if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
                /* a new response (after 100 Continue): forget the previous one's headers */
                t->retry_after = mfree(t->retry_after);
                t->date = mfree(t->date);
                return n;
        }
        if (header_value(buf, n, "Retry-After", &t->retry_after) < 0 ||
            header_value(buf, n, "Date", &t->date) < 0)
                return 0;
        return n;
}

static int curl_code_to_errno(CURLcode c) {
        switch (c) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
                return -ECONNRESET;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_USE_SSL_FAILED:
                return -EPROTO;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EINVAL;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

/* Take the finished transfer out of curl, tell its owner, free it. */
static void transfer_finish(struct http_transfer *t, CURLcode code) {
        struct http *h = t->http;
        struct http_response r = {};
        char *ct = NULL;
        char text[CURL_ERROR_SIZE + 64];

        if (t->running) {
                curl_multi_remove_handle(h->multi, t->easy);
                running_remove(h, t);
        }
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r.status);
        curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct);
        curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &r.total_time);
        r.content_type = ct;
        r.retry_after = t->retry_after;
        r.date = t->date;
        r.body = t->resp ? t->resp : "";
        r.body_len = t->resp_len;

        if (t->too_large || code == CURLE_FILESIZE_EXCEEDED) {
                r.error = -EFBIG;
                snprintf(text, sizeof(text), "response larger than %zu bytes", t->max_response);
                r.error_text = text;
        } else if (code != CURLE_OK) {
                r.error = curl_code_to_errno(code);
                r.error_text = t->error[0] ? t->error : curl_easy_strerror(code);
        }
        t->done(&r, t->userdata);
        transfer_free(t);
}

/* Fail a transfer that never reached curl (called on the loop, not from submit). */
static void transfer_fail(struct http_transfer *t, int error, const char *text) {
        struct http_response r = {
                .error = error,
                .error_text = text,
                .body = "",
        };

        t->done(&r, t->userdata);
        transfer_free(t);
}

/* Move queued transfers into curl while there is room. */
static void start_queued(struct http *h) {
        while (h->queue_head && h->n_running < h->max_transfers) {
                struct http_transfer *t = h->queue_head;
                CURLMcode m;

                queue_remove(h, t);
                m = curl_multi_add_handle(h->multi, t->easy);
                if (m != CURLM_OK) {
                        transfer_fail(t, m == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO,
                                      curl_multi_strerror(m));
                        continue;
                }
                running_add(h, t);
        }
}

static void pump_cb(struct ev_loop *loop, struct ev_timer *w, int revents) {
        start_queued(w->data);
}

/* A slot freed outside check_multi_info: fill it from the loop, so that no
 * callback runs from inside http_cancel() or http_submit(). */
static void schedule_pump(struct http *h) {
        if (h->queue_head && h->n_running < h->max_transfers && !ev_is_active(&h->pump))
                ev_timer_start(h->loop, &h->pump);
}

/* The one place finished transfers are collected: after every socket_action. */
static void check_multi_info(struct http *h) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(h->multi, &left))) {
                struct http_transfer *t;
                void *p = NULL;
                CURLcode code;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                code = msg->data.result;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
                t = p;
                transfer_finish(t, code);
        }
        start_queued(h);
}

/* ---- libev <-> libcurl glue ---------------------------------------------- */

static void timer_cb(struct ev_loop *loop, struct ev_timer *w, int revents) {
        struct http *h = w->data;

        /* CURLM errors here concern the multi handle itself; every transfer
         * still ends through its own timeout, so there is nothing to add. */
        (void) curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &h->still_running);
        check_multi_info(h);
}

/* CURLMOPT_TIMERFUNCTION: one ev_timer for the multi handle. */
static int multi_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        struct http *h = userp;

        ev_timer_stop(h->loop, &h->timer);
        if (timeout_ms >= 0) { /* -1: delete */
                ev_timer_set(&h->timer, (double) timeout_ms / 1000.0, 0.);
                ev_timer_start(h->loop, &h->timer);
        }
        return 0;
}

static void io_cb(struct ev_loop *loop, struct ev_io *w, int revents) {
        struct http_sock *s = w->data;
        struct http *h = s->http;
        int action = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
                     ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);

        (void) curl_multi_socket_action(h->multi, s->fd, action, &h->still_running);
        check_multi_info(h);
}

static void sock_remove(struct http *h, struct http_sock *s) {
        ev_io_stop(h->loop, &s->io);
        if (s->prev)
                s->prev->next = s->next;
        else
                h->socks = s->next;
        if (s->next)
                s->next->prev = s->prev;
        free(s);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop the ev_io of a socket. */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        struct http *h = userp;
        struct http_sock *s = socketp;
        int events;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        curl_multi_assign(h->multi, fd, NULL);
                        sock_remove(h, s);
                }
                return 0;
        }
        events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -1;
                s->http = h;
                s->fd = fd;
                s->next = h->socks;
                if (h->socks)
                        h->socks->prev = s;
                h->socks = s;
                ev_io_init(&s->io, io_cb, fd, events);
                s->io.data = s;
                curl_multi_assign(h->multi, fd, s);
        } else {
                ev_io_stop(h->loop, &s->io);
                ev_io_set(&s->io, fd, events);
        }
        ev_io_start(h->loop, &s->io);
        return 0;
}

/* ---- public ---------------------------------------------------------------- */

int http_new(struct ev_loop *loop, struct http **ret) {
        struct http *h;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        h = calloc(1, sizeof(*h));
        if (!h) {
                curl_global_cleanup();
                return -ENOMEM;
        }
        h->loop = loop;
        h->max_transfers = HTTP_DEFAULT_MAX_TRANSFERS;
        h->multi = curl_multi_init();
        if (!h->multi) {
                free(h);
                curl_global_cleanup();
                return -ENOMEM;
        }
        ev_timer_init(&h->timer, timer_cb, 0., 0.);
        h->timer.data = h;
        ev_timer_init(&h->pump, pump_cb, 0., 0.);
        h->pump.data = h;
        if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb) != CURLM_OK ||
            curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
            curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb) != CURLM_OK ||
            curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) != CURLM_OK ||
            curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX) != CURLM_OK) {
                http_free(h);
                return -EIO;
        }
        http_set_limits(h, HTTP_DEFAULT_MAX_TRANSFERS, HTTP_DEFAULT_MAX_HOST_CONNECTIONS);
        *ret = h;
        return 0;
}

void http_free(struct http *h) {
        if (!h)
                return;
        while (h->queue_head) {
                struct http_transfer *t = h->queue_head;
                queue_remove(h, t);
                transfer_free(t);
        }
        while (h->running)
                http_cancel(h->running);
        ev_timer_stop(h->loop, &h->timer);
        ev_timer_stop(h->loop, &h->pump);
        if (h->multi)
                curl_multi_cleanup(h->multi);
        while (h->socks)
                sock_remove(h, h->socks);
        free(h);
        curl_global_cleanup();
}

int http_set_limits(struct http *h, unsigned max_transfers, long max_host_connections) {
        if (max_transfers > 0) {
                h->max_transfers = max_transfers;
                if (curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) max_transfers) != CURLM_OK)
                        return -EINVAL;
                schedule_pump(h);
        }
        if (max_host_connections > 0 &&
            curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections) != CURLM_OK)
                return -EINVAL;
        return 0;
}

static int setup_easy(struct http_transfer *t, const struct http_request *req) {
        long timeout = req->timeout_ms > 0 ? req->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
        long connect_timeout = timeout < 10000 ? timeout : 10000;
        /* a server that sends nothing for this long has stalled: fail, don't hang */
        long low_speed_time = timeout / 1000 < 30 ? timeout / 1000 : 30;
        const char *method = req->method ? req->method : "GET";
        CURL *e = t->easy;
        CURLcode c = CURLE_OK;

#define SET(opt, val)                                          \
        do {                                                   \
                if (c == CURLE_OK)                             \
                        c = curl_easy_setopt(e, opt, val);     \
        } while (0)

        SET(CURLOPT_URL, t->url);
        SET(CURLOPT_PRIVATE, t);
        SET(CURLOPT_ERRORBUFFER, t->error);
        SET(CURLOPT_WRITEFUNCTION, write_cb);
        SET(CURLOPT_WRITEDATA, t);
        SET(CURLOPT_HEADERFUNCTION, header_cb);
        SET(CURLOPT_HEADERDATA, t);
        SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
        SET(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
        SET(CURLOPT_PIPEWAIT, 1L);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        /* With OpenSSL, CAINFO replaces the default bundle file but the default
         * CAPATH (/etc/ssl/certs on Debian) stays in use: the file adds to the
         * system store rather than replacing it. */
        if (req->ca_file)
                SET(CURLOPT_CAINFO, req->ca_file);
        SET(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout);
        SET(CURLOPT_TIMEOUT_MS, timeout);
        SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SET(CURLOPT_LOW_SPEED_TIME, low_speed_time > 0 ? low_speed_time : 1L);
        SET(CURLOPT_ACCEPT_ENCODING, "");
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) t->max_response);
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
        SET(CURLOPT_USERAGENT, "s3mond/" S3MOND_VERSION);
        if (t->headers)
                SET(CURLOPT_HTTPHEADER, t->headers);
        if (strcmp(method, "GET") == 0)
                SET(CURLOPT_HTTPGET, 1L);
        else if (strcmp(method, "POST") == 0) {
                SET(CURLOPT_POSTFIELDSIZE, (long) (t->body ? strlen(t->body) : 0));
                SET(CURLOPT_POSTFIELDS, t->body ? t->body : "");
        } else
                SET(CURLOPT_CUSTOMREQUEST, method);
#undef SET
        if (c == CURLE_OUT_OF_MEMORY)
                return -ENOMEM;
        return c == CURLE_OK ? 0 : -EINVAL;
}

int http_submit(struct http *h, const struct http_request *req, http_done_fn done, void *userdata,
                struct http_transfer **ret) {
        struct http_transfer *t;
        int r;

        if (!req || !req->url || !done)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->http = h;
        t->done = done;
        t->userdata = userdata;
        t->max_response = req->max_response > 0 ? req->max_response : HTTP_DEFAULT_MAX_RESPONSE;
        t->url = strdup(req->url);
        t->body = req->body ? strdup(req->body) : NULL;
        t->easy = curl_easy_init();
        if (!t->url || (req->body && !t->body) || !t->easy) {
                transfer_free(t);
                return -ENOMEM;
        }
        for (const char *const *hd = req->headers; hd && *hd; hd++) {
                struct curl_slist *l = curl_slist_append(t->headers, *hd);
                if (!l) {
                        transfer_free(t);
                        return -ENOMEM;
                }
                t->headers = l;
        }
        r = setup_easy(t, req);
        if (r < 0) {
                transfer_free(t);
                return r;
        }
        if (h->n_running < h->max_transfers && !h->queue_head) {
                CURLMcode m = curl_multi_add_handle(h->multi, t->easy);
                if (m != CURLM_OK) {
                        transfer_free(t);
                        return m == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
                }
                running_add(h, t);
        } else {
                queue_append(h, t);
                schedule_pump(h);
        }
        if (ret)
                *ret = t;
        return 0;
}

void http_cancel(struct http_transfer *t) {
        struct http *h;

        if (!t)
                return;
        h = t->http;
        if (t->running) {
                curl_multi_remove_handle(h->multi, t->easy);
                running_remove(h, t);
        } else
                queue_remove(h, t);
        transfer_free(t);
        schedule_pump(h);
}

unsigned http_pending(const struct http *h) {
        unsigned n = h->n_running;

        for (const struct http_transfer *t = h->queue_head; t; t = t->next)
                n++;
        return n;
}

static int origin(const char *url, char **scheme, char **host, char **port) {
        CURLU *u = curl_url();
        int r = 0;

        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) != CURLUE_OK)
                r = -EINVAL;
        curl_url_cleanup(u);
        return r;
}

int http_url_same_origin(const char *url, const char *base) {
        char *s1 = NULL, *h1 = NULL, *p1 = NULL, *s2 = NULL, *h2 = NULL, *p2 = NULL;
        int r;

        if (!url || !base)
                return -EINVAL;
        r = origin(url, &s1, &h1, &p1);
        if (r >= 0)
                r = origin(base, &s2, &h2, &p2);
        if (r >= 0)
                r = strcasecmp(s1, s2) == 0 && strcasecmp(h1, h2) == 0 && strcmp(p1, p2) == 0;
        curl_free(s1);
        curl_free(h1);
        curl_free(p1);
        curl_free(s2);
        curl_free(h2);
        curl_free(p2);
        return r;
}
