/* notify-driver: the smallest daemon on service.c, for test-notify.py. It says
 * READY=1 and STATUS= at start, RELOADING=1/STATUS=/READY=1 on SIGHUP, and
 * STOPPING=1 then exits 0 on SIGTERM or SIGINT; the watchdog runs on its loop. */
#include <stdio.h>

#include "service.h"

struct driver {
        struct ev_loop *loop;
        unsigned reloads;
};

static void on_reload(struct service *s, void *userdata) {
        struct driver *d = userdata;
        (void) s;
        service_notify_reloading();
        d->reloads++;
        service_notify_status("reloaded %u time(s)", d->reloads);
        service_notify_reloaded();
}

static void on_stop(struct service *s, int signo, void *userdata) {
        struct driver *d = userdata;
        (void) s;
        (void) signo;
        service_notify_stopping();
        ev_break(d->loop, EVBREAK_ALL);
}

int main(void) {
        struct driver d = { .loop = EV_DEFAULT };
        struct service_callbacks cb = { .stop = on_stop, .reload = on_reload };
        struct service *s = NULL;
        int r;

        r = service_new(d.loop, &cb, &d, &s);
        if (r < 0) {
                fprintf(stderr, "notify-driver: service_new: %d\n", r);
                return 1;
        }
        service_notify_ready();
        service_notify_status("driver running, watchdog %llu us",
                              (unsigned long long) service_watchdog_usec(s));
        ev_run(d.loop, 0);
        service_free(s);
        ev_loop_destroy(d.loop);
        return 0;
}
