/* Unit tests for service.c: the sd_notify messages through a test NOTIFY_SOCKET,
 * signals turned into callbacks on the loop, SIGPIPE, and the watchdog timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "service.h"

struct notify_socket {
        int fd;
        char path[108];
};

static int setup(void **state) {
        struct notify_socket *ns = calloc(1, sizeof(*ns));
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 30 }; /* a guard against hanging, not a measurement */

        snprintf(ns->path, sizeof(ns->path), "/tmp/s3mond-notify-%d", (int) getpid());
        unlink(ns->path);
        strcpy(sa.sun_path, ns->path);
        ns->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(ns->fd >= 0);
        assert_int_equal(bind(ns->fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(setsockopt(ns->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        setenv("NOTIFY_SOCKET", ns->path, 1);
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        *state = ns;
        return 0;
}

static int teardown(void **state) {
        struct notify_socket *ns = *state;
        close(ns->fd);
        unlink(ns->path);
        unsetenv("NOTIFY_SOCKET");
        free(ns);
        return 0;
}

static char *receive(struct notify_socket *ns) {
        static char buf[4096];
        ssize_t n = recv(ns->fd, buf, sizeof(buf) - 1, 0);
        if (n < 0)
                fail_msg("no datagram: %s", strerror(errno));
        buf[n] = 0;
        return buf;
}

static void test_messages(void **state) {
        struct notify_socket *ns = *state;
        char *m;

        assert_true(service_notify_ready() > 0);
        assert_string_equal(receive(ns), "READY=1");
        assert_true(service_notify_status("%d environments ok, %s", 2, "0 failing") > 0);
        assert_string_equal(receive(ns), "STATUS=2 environments ok, 0 failing");
        assert_true(service_notify_reloading() > 0);
        m = receive(ns);
        assert_true(strncmp(m, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
        assert_true(strlen(m) > 27);
        assert_int_equal(strspn(m + 27, "0123456789"), strlen(m + 27));
        assert_true(service_notify_reloaded() > 0);
        assert_string_equal(receive(ns), "READY=1");
        assert_true(service_notify_stopping() > 0);
        assert_string_equal(receive(ns), "STOPPING=1");
}

static void test_status_is_one_line(void **state) {
        struct notify_socket *ns = *state;
        char big[2000], *m;

        /* a mailbox name cannot smuggle in another field */
        assert_true(service_notify_status("mailbox %s", "Support\nREADY=1\tx\x7f") > 0);
        assert_string_equal(receive(ns), "STATUS=mailbox Support READY=1 x ");
        /* cut at 512 bytes, never inside a UTF-8 sequence */
        memset(big, 'a', sizeof(big));
        strcpy(big + 511, "\xc3\xa9 tail");
        assert_true(service_notify_status("%s", big) > 0);
        m = receive(ns);
        assert_int_equal(strlen(m), strlen("STATUS=") + 511);
        assert_true(service_notify_status("%s", big + 1) > 0); /* "é" ends exactly at 512 */
        m = receive(ns);
        assert_int_equal(strlen(m), strlen("STATUS=") + 512);
        assert_string_equal(m + strlen(m) - 2, "\xc3\xa9");
}

static void test_no_socket(void **state) {
        (void) state;
        unsetenv("NOTIFY_SOCKET");
        assert_int_equal(service_notify_ready(), 0);
        assert_int_equal(service_notify_status("x"), 0);
        assert_int_equal(service_notify_reloading(), 0);
}

struct calls {
        unsigned stops, reloads;
        int last_signo;
        struct ev_loop *loop;
};

static void on_stop(struct service *s, int signo, void *userdata) {
        struct calls *c = userdata;
        (void) s;
        c->stops++;
        c->last_signo = signo;
        ev_break(c->loop, EVBREAK_ONE);
}

static void on_reload(struct service *s, void *userdata) {
        struct calls *c = userdata;
        (void) s;
        c->reloads++;
        ev_break(c->loop, EVBREAK_ONE);
}

static void test_signals(void **state) {
        struct ev_loop *loop = EV_DEFAULT;
        struct calls c = { .loop = loop };
        struct service_callbacks cb = { .stop = on_stop, .reload = on_reload };
        struct service *s = NULL, *other = NULL;
        struct sigaction sa;
        (void) state;

        assert_int_equal(service_new(loop, &cb, &c, &s), 0);
        assert_int_equal(service_new(loop, &cb, &c, &other), -EBUSY);
        assert_int_equal(service_watchdog_usec(s), 0);

        /* the handler only wakes the loop: nothing is called before ev_run() */
        raise(SIGHUP);
        assert_int_equal(c.reloads, 0);
        ev_run(loop, 0);
        assert_int_equal(c.reloads, 1);
        raise(SIGTERM);
        ev_run(loop, 0);
        assert_int_equal(c.stops, 1);
        assert_int_equal(c.last_signo, SIGTERM);
        raise(SIGINT);
        ev_run(loop, 0);
        assert_int_equal(c.stops, 2);
        assert_int_equal(c.last_signo, SIGINT);

        /* SIGPIPE is ignored while the service lives, restored after */
        raise(SIGPIPE);
        assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
        assert_true(sa.sa_handler == SIG_IGN);
        service_free(s);
        assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
        assert_true(sa.sa_handler == SIG_DFL);

        /* and a new one may start */
        assert_int_equal(service_new(loop, &(struct service_callbacks) { .stop = on_stop }, &c, &s), 0);
        raise(SIGHUP); /* no reload callback: ignored, the process lives */
        raise(SIGTERM);
        ev_run(loop, 0);
        assert_int_equal(c.reloads, 1);
        assert_int_equal(c.stops, 3);
        service_free(s);
}

struct pings {
        struct notify_socket *ns;
        unsigned watchdog, other;
        ev_io io;
};

static void on_datagram(struct ev_loop *loop, ev_io *w, int revents) {
        struct pings *p = w->data;
        (void) revents;
        if (strcmp(receive(p->ns), "WATCHDOG=1") == 0)
                p->watchdog++;
        else
                p->other++;
        if (p->watchdog >= 3)
                ev_break(loop, EVBREAK_ONE);
}

static void test_watchdog(void **state) {
        struct notify_socket *ns = *state;
        struct ev_loop *loop = EV_DEFAULT;
        struct pings p = { .ns = ns };
        struct service_callbacks cb = { .stop = on_stop };
        struct calls c = { .loop = loop };
        struct service *s = NULL;
        char pid[16];

        /* WATCHDOG_PID names another process: not ours to feed */
        setenv("WATCHDOG_USEC", "20000", 1);
        setenv("WATCHDOG_PID", "1", 1);
        assert_int_equal(service_new(loop, &cb, &c, &s), 0);
        assert_int_equal(service_watchdog_usec(s), 0);
        service_free(s);

        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        setenv("WATCHDOG_PID", pid, 1);
        assert_int_equal(service_new(loop, &cb, &c, &s), 0);
        assert_int_equal(service_watchdog_usec(s), 20000);
        ev_io_init(&p.io, on_datagram, ns->fd, EV_READ);
        p.io.data = &p;
        ev_io_start(loop, &p.io);
        ev_run(loop, 0);
        assert_int_equal(p.watchdog, 3);
        assert_int_equal(p.other, 0);
        ev_io_stop(loop, &p.io);
        service_free(s);

        unsetenv("WATCHDOG_PID"); /* unset: the watchdog is ours */
        assert_int_equal(service_new(loop, &cb, &c, &s), 0);
        assert_int_equal(service_watchdog_usec(s), 20000);
        service_free(s);
        unsetenv("WATCHDOG_USEC");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_messages, setup, teardown),
                cmocka_unit_test_setup_teardown(test_status_is_one_line, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_socket, setup, teardown),
                cmocka_unit_test_setup_teardown(test_signals, setup, teardown),
                cmocka_unit_test_setup_teardown(test_watchdog, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
