/* service.h: the process's life as a service: SIGTERM/SIGINT/SIGHUP handled on the
 * libev loop, SIGPIPE ignored, and sd_notify(3) messages including the watchdog.
 * Knows nothing of configuration, Dataverse or state: it calls back and says what
 * it is told to. Works unchanged without systemd (no NOTIFY_SOCKET: nothing is sent). */
#pragma once

#include <ev.h>
#include <stdint.h>

#include "macro.h"

struct service;

struct service_callbacks {
        /* SIGTERM or SIGINT (SIGNO says which), called on the loop. The caller
         * sends service_notify_stopping(), saves state and ends the loop
         * (ev_break()) within 2 s. A second signal calls it again. */
        void (*stop)(struct service *s, int signo, void *userdata);
        /* SIGHUP, called on the loop. The caller sends service_notify_reloading(),
         * reloads (keeping the old configuration when the new one is bad), then
         * service_notify_reloaded(). May be NULL: SIGHUP is then ignored. */
        void (*reload)(struct service *s, void *userdata);
};

/* Starts the signal watchers on LOOP (one service per process: -EBUSY for a second),
 * ignores SIGPIPE, and, when sd_watchdog_enabled() says the watchdog is on for this
 * process (WATCHDOG_USEC, and WATCHDOG_PID unset or ours), a timer on LOOP that sends
 * WATCHDOG=1 every half interval: a loop that stops turning stops the pings.
 * The watchers keep ev_run() running; CB is copied. */
int service_new(struct ev_loop *loop, const struct service_callbacks *cb, void *userdata, struct service **ret);
/* Stops the watchers and restores SIGPIPE's disposition. NULL is fine. */
void service_free(struct service *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct service *, service_free);

/* The watchdog interval in microseconds, 0 when it is off. */
uint64_t service_watchdog_usec(const struct service *s);

/* sd_notify(3) messages. Each returns > 0 when sent, 0 when there is no
 * NOTIFY_SOCKET (not under systemd: nothing to do), -errno when sending failed. */
int service_notify_ready(void);                         /* READY=1 */
/* STATUS=<one line>: control characters (newlines included) become spaces, so the
 * text can never add a field; cut at 512 bytes. */
int service_notify_status(const char *fmt, ...) _printf_(1, 2);
int service_notify_reloading(void);     /* RELOADING=1 + MONOTONIC_USEC=<CLOCK_MONOTONIC µs> */
int service_notify_reloaded(void);      /* READY=1 again, after a reload */
int service_notify_stopping(void);      /* STOPPING=1 */
