/* http.h: asynchronous HTTP(S) on the libev loop through one libcurl multi
 * handle for the whole process (connection reuse, HTTP/2 where offered).
 * Knows nothing of OData, Dataverse or OAuth: a request in, a response out.
 * TLS verification is always on; redirects are never followed. */
#pragma once

#include <stddef.h>

#include "macro.h"

struct ev_loop;
struct http;
struct http_transfer;

#define HTTP_DEFAULT_MAX_RESPONSE ((size_t) 64 << 20) /* 64 MiB */
#define HTTP_DEFAULT_TIMEOUT_MS 30000L
#define HTTP_DEFAULT_MAX_TRANSFERS 16u   /* in flight at once, process-wide */
#define HTTP_DEFAULT_MAX_HOST_CONNECTIONS 6L

struct http_request {
        const char *method;             /* "GET" (default when NULL) or "POST" */
        const char *url;
        const char *const *headers;     /* "Name: value", NULL-terminated; may be NULL */
        const char *body;               /* POST body, may be NULL */
        size_t max_response;            /* body cap in bytes; 0 = HTTP_DEFAULT_MAX_RESPONSE */
        long timeout_ms;                /* whole transfer; 0 = HTTP_DEFAULT_TIMEOUT_MS */
        const char *ca_file;            /* extra trusted CA(s), PEM; NULL = system store only */
};

/* Everything points into the transfer and is valid only during the callback. */
struct http_response {
        long status;                    /* HTTP status, 0 when no response arrived */
        int error;                      /* 0, or -errno: -ETIMEDOUT (also stalled), -ECONNREFUSED,
                                         * -ECONNRESET (reset, truncated), -EHOSTUNREACH (DNS),
                                         * -EFBIG (body over max_response), -EPROTO (TLS,
                                         * certificate), -EINVAL (bad URL), -ENOMEM, -EIO */
        const char *error_text;         /* curl's words when error != 0; never has headers or bodies */
        const char *body;               /* NUL-terminated, body_len bytes; "" when none */
        size_t body_len;
        const char *content_type;       /* may be NULL */
        const char *retry_after;        /* Retry-After header as sent, may be NULL */
        const char *date;               /* Date header as sent, may be NULL */
        double total_time;              /* seconds, from start to the end of the transfer */
};

/* Called once per submitted request, unless it was cancelled. The
 * transfer is finished and freed right after: forget its pointer. */
typedef void (*http_done_fn)(const struct http_response *resp, void *userdata);

int http_new(struct ev_loop *loop, struct http **ret);
/* Cancels every transfer still queued or running; their callbacks are not
 * called. Not from inside an http_done_fn of h (free the users of h first,
 * then h, from the loop or after it). */
void http_free(struct http *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct http *, http_free);

/* Process-wide limits: transfers in flight (more wait in a FIFO queue
 * inside http), connections per host and in total (libcurl's caches).
 * 0 leaves a value unchanged. */
int http_set_limits(struct http *h, unsigned max_transfers, long max_host_connections);

/* Start (or queue) a request. Everything in req is copied; done is called
 * later from the loop, never from inside http_submit. *ret (optional)
 * lets the caller cancel it. */
int http_submit(struct http *h, const struct http_request *req, http_done_fn done, void *userdata,
                struct http_transfer **ret);
/* Stop a queued or running transfer; done is not called. Do not call
 * on a transfer whose callback has run. */
void http_cancel(struct http_transfer *t);

/* Transfers queued or running (for tests and metrics). */
unsigned http_pending(const struct http *h);

/* 1 when both URLs have the same scheme, host and port (default ports
 * filled in, host compared case-insensitively), 0 when they differ,
 * -EINVAL when either does not parse. */
int http_url_same_origin(const char *url, const char *base);
