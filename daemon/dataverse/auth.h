/* auth.h: OAuth 2.0 client-credentials token cache for one environment.
 * One token request in flight at a time, shared by every waiter; the token
 * is renewed ahead of expiry and dropped on a 401. After a failed or
 * refused token request, new requests wait out a capped exponential
 * backoff (no retry storm on a wrong secret), or the Retry-After of a
 * throttled (429/503) answer when that is longer. The client secret and the
 * token never appear in a message this module produces. */
#pragma once

#include <stdint.h>
#include <time.h>

#include "macro.h"

struct http;
struct dv_connection;
struct auth;
struct auth_waiter;

#define AUTH_DEFAULT_AUTHORITY "https://login.microsoftonline.com"

struct auth_options {
        double max_backoff_sec;         /* cap of the wait after a failure; 0 = 60 */
        long timeout_ms;                /* token request; 0 = http's default */
        uint64_t seed;                  /* jitter PRNG seed; 0 = from the clock */
};

/* error is 0 with a token (valid until the callback returns: copy it), or
 * -EKEYREJECTED when the token endpoint refused the credentials (400/401),
 * or another -errno for a transient failure (network, 5xx, bad response).
 * auth_error() has the words. */
typedef void (*auth_done_fn)(struct auth *a, int error, const char *token, void *userdata);

/* conn is read now (url, tenant, client_id, client_secret, authority,
 * token_url, scope, ca_file) and not kept. */
int auth_new(struct http *http, const struct dv_connection *conn, const struct auth_options *opt,
             struct auth **ret);
/* Cancels the token request; waiters' callbacks are not called. */
void auth_free(struct auth *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct auth *, auth_free);

/* Get a token.
 *  1: a usable token is cached: *ret_token points at it (valid until control
 *     returns to the loop); done is not called. When it is near expiry a
 *     renewal starts in the background.
 *  0: a token request is in flight (started or joined); done will be called
 *     from the loop; *ret_waiter (optional) allows auth_waiter_cancel().
 * <0: failing now without a request, because the last token request failed
 *     less than the backoff ago: -EKEYREJECTED or the transient -errno;
 *     auth_error() says why. */
int auth_get(struct auth *a, auth_done_fn done, void *userdata, struct auth_waiter **ret_waiter,
             const char **ret_token);
void auth_waiter_cancel(struct auth_waiter *w);

/* The service answered 401 to `token`: forget it (if it is still the
 * cached one), so the next auth_get() fetches a fresh one. */
void auth_invalidate(struct auth *a, const char *token);

/* Words for the last failure ("token endpoint https://.../token refused the
 * credentials: HTTP 401 invalid_client: AADSTS7000215: Invalid client secret
 * provided."), without environment name, secret or token; NULL if none. */
const char *auth_error(const struct auth *a);
/* Token requests sent so far (for tests and metrics). */
unsigned auth_requests(const struct auth *a);

/* ---- expiry arithmetic, pure, in seconds on any monotonic clock -------- */

enum auth_token_phase {
        AUTH_TOKEN_FRESH,       /* use it */
        AUTH_TOKEN_RENEW,       /* use it, and fetch the next one */
        AUTH_TOKEN_EXPIRED,     /* do not use it */
};

/* obtained_at: when the token request was sent; lifetime: its expires_in.
 * Renewal starts when 5 minutes (or a fifth of a short lifetime) remain;
 * the token counts as expired 30 s (or a tenth of a short lifetime) early.
 * A clock reading before obtained_at or a lifetime <= 0 means expired. */
double auth_renew_at(double obtained_at, double lifetime);
double auth_expires_at(double obtained_at, double lifetime);
enum auth_token_phase auth_token_phase(double obtained_at, double lifetime, double now);

/* How long to wait after a failed token request: BACKOFF_SEC (our capped
 * exponential backoff), or the answer's Retry-After when it is a 429 or 503
 * asking for longer (capped at AUTH_MAX_RETRY_AFTER_SEC). NOW is the wall
 * clock, for a Retry-After given as an HTTP-date. */
#define AUTH_MAX_RETRY_AFTER_SEC 3600
double auth_failure_delay(double backoff_sec, long status, const char *retry_after, time_t now);
