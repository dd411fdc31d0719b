/* service.c: owns the process-global side: signals on the libev loop, SIGPIPE, sd_notify and the
 * watchdog. Must not know configuration, Dataverse or state. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "service.h"

#define STATUS_MAX 512

struct service {
        struct ev_loop *loop;
        struct service_callbacks cb;
        void *userdata;
        ev_signal sigterm, sigint, sighup;
        ev_timer watchdog;
        uint64_t watchdog_usec;
        struct sigaction old_sigpipe;
};

/* Signal dispositions are per process: so is the service. */
static bool service_exists;

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents) {
        struct service *s = w->data;
        (void) loop;
        (void) revents;
        if (s->cb.stop)
                s->cb.stop(s, w->signum, s->userdata);
}

static void on_reload_signal(struct ev_loop *loop, ev_signal *w, int revents) {
        struct service *s = w->data;
        (void) loop;
        (void) revents;
        if (s->cb.reload)
                s->cb.reload(s, s->userdata);
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents) {
        (void) loop;
        (void) w;
        (void) revents;
        (void) sd_notify(0, "WATCHDOG=1");
}

static void start_signal(struct service *s, ev_signal *w, int signo,
                         void (*cb)(struct ev_loop *, ev_signal *, int)) {
        ev_signal_init(w, cb, signo);
        w->data = s;
        ev_signal_start(s->loop, w);
}

int service_new(struct ev_loop *loop, const struct service_callbacks *cb, void *userdata, struct service **ret) {
        struct sigaction ign = { .sa_handler = SIG_IGN };
        struct service *s;
        uint64_t usec = 0;

        if (!loop || !cb || !ret)
                return -EINVAL;
        if (service_exists)
                return -EBUSY;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->loop = loop;
        s->cb = *cb;
        s->userdata = userdata;
        sigemptyset(&ign.sa_mask);
        if (sigaction(SIGPIPE, &ign, &s->old_sigpipe) < 0) {
                int r = -errno;
                free(s);
                return r;
        }
        start_signal(s, &s->sigterm, SIGTERM, on_stop_signal);
        start_signal(s, &s->sigint, SIGINT, on_stop_signal);
        start_signal(s, &s->sighup, SIGHUP, on_reload_signal);

        if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
                /* half the interval, as sd_watchdog_enabled(3) advises */
                double every = (double) usec / 2e6;
                s->watchdog_usec = usec;
                ev_timer_init(&s->watchdog, on_watchdog, every, every);
                ev_timer_start(loop, &s->watchdog);
        }
        service_exists = true;
        *ret = s;
        return 0;
}

void service_free(struct service *s) {
        if (!s)
                return;
        ev_signal_stop(s->loop, &s->sigterm);
        ev_signal_stop(s->loop, &s->sigint);
        ev_signal_stop(s->loop, &s->sighup);
        if (s->watchdog_usec)
                ev_timer_stop(s->loop, &s->watchdog);
        (void) sigaction(SIGPIPE, &s->old_sigpipe, NULL);
        service_exists = false;
        free(s);
}

uint64_t service_watchdog_usec(const struct service *s) {
        return s ? s->watchdog_usec : 0;
}

int service_notify_ready(void) {
        return sd_notify(0, "READY=1");
}

int service_notify_status(const char *fmt, ...) {
        char text[STATUS_MAX + 1];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t) n >= sizeof(text)) {
                /* cut before a UTF-8 sequence the limit split */
                size_t i = STATUS_MAX, lead;
                while (i > 0 && ((unsigned char) text[i - 1] & 0xc0) == 0x80)
                        i--;
                lead = i > 0 ? (unsigned char) text[i - 1] : 0;
                if (lead >= 0xc0 && i - 1 + (lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2) > STATUS_MAX)
                        text[i - 1] = 0;
        }
        for (char *p = text; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
        return sd_notifyf(0, "STATUS=%s", text);
}

int service_notify_reloading(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                return -errno;
        return sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
                          (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000);
}

int service_notify_reloaded(void) {
        return sd_notify(0, "READY=1");
}

int service_notify_stopping(void) {
        return sd_notify(0, "STOPPING=1");
}
