/* Unit tests for fileio.c: whole writes and reads, and file_replace(): the old
 * file or the new one, never a part; the mode whatever the umask; a stale
 * temporary file from a crash taken over; nothing left behind on failure; the
 * test hooks called where the crash tests expect them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"

struct fixture {
        char dir[64];
        int dir_fd;
};

static int setup(void **state) {
        struct fixture *fx = calloc(1, sizeof(*fx));

        assert_non_null(fx);
        strcpy(fx->dir, "/tmp/test-fileio-XXXXXX");
        assert_non_null(mkdtemp(fx->dir));
        fx->dir_fd = open(fx->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fx->dir_fd >= 0);
        *state = fx;
        return 0;
}

static int teardown(void **state) {
        struct fixture *fx = *state;
        char cmd[128];

        close(fx->dir_fd);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
        assert_int_equal(system(cmd), 0);
        free(fx);
        return 0;
}

static char *slurp(struct fixture *fx, const char *name) {
        _cleanup_close_ int fd = openat(fx->dir_fd, name, O_RDONLY | O_CLOEXEC);
        char *text = NULL;
        size_t n;

        if (fd < 0)
                return NULL;
        assert_int_equal(read_all(fd, &text, &n), 0);
        assert_int_equal(strlen(text), n);
        return text;
}

static bool exists(struct fixture *fx, const char *name) {
        return faccessat(fx->dir_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

struct points {
        char seen[64];
        char *file_at_mid;      /* the temporary file at "mid-write" */
        struct fixture *fx;
};

static void note_point(const char *point, void *userdata) {
        struct points *p = userdata;

        strcat(p->seen, point);
        strcat(p->seen, ";");
        if (strcmp(point, "mid-write") == 0)
                p->file_at_mid = slurp(p->fx, "f.tmp");
}

static void test_write_read(void **state) {
        struct fixture *fx = *state;
        _cleanup_close_ int fd = openat(fx->dir_fd, "plain", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        char big[100000], *back;
        size_t n;

        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = (char) ('a' + i % 26);
        assert_true(fd >= 0);
        assert_int_equal(write_all(fd, big, sizeof(big)), 0);
        assert_int_equal(read_all(fd, &back, &n), 0);
        assert_int_equal(n, sizeof(big));
        assert_memory_equal(back, big, sizeof(big));
        assert_int_equal(back[n], '\0');
        free(back);
        assert_int_equal(write_all(-1, "x", 1), -EBADF);
}

static void test_replace(void **state) {
        struct fixture *fx = *state;
        struct points p = { .fx = fx };
        struct file_replace f = {
                .dir_fd = fx->dir_fd, .name = "f", .tmp_name = "f.tmp", .mode = 0644, .sync = true,
                .checkpoint = note_point, .userdata = &p,
        };
        const char *step = "unset";
        mode_t old_umask = umask(077);
        struct stat st;
        char *text;

        /* first write; then over a stale temporary file */
        assert_int_equal(file_replace(&f, "first\n", 6, &step), 0);
        assert_string_equal(step, "unset");
        assert_string_equal(p.seen, "mid-write;before-rename;");
        assert_string_equal(p.file_at_mid, "fir");
        free(p.file_at_mid);
        p = (struct points) { .fx = fx };
        close(openat(fx->dir_fd, "f.tmp", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        assert_int_equal(file_replace(&f, "second\n", 7, NULL), 0);
        free(p.file_at_mid);
        umask(old_umask);

        assert_string_equal(text = slurp(fx, "f"), "second\n"), free(text);
        assert_false(exists(fx, "f.tmp"));
        assert_int_equal(fstatat(fx->dir_fd, "f", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0644);
}

static void test_replace_fails_cleanly(void **state) {
        struct fixture *fx = *state;
        struct file_replace f = { .dir_fd = fx->dir_fd, .name = "d", .tmp_name = "d.tmp", .mode = 0600 };
        const char *step = NULL;

        /* rename(2) cannot put a file over a non-empty directory */
        assert_int_equal(mkdirat(fx->dir_fd, "d", 0700), 0);
        close(openat(fx->dir_fd, "d/inside", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        assert_true(file_replace(&f, "x", 1, &step) < 0);
        assert_string_equal(step, "rename");
        assert_false(exists(fx, "d.tmp"));
        assert_true(exists(fx, "d/inside"));

        /* no directory to create the temporary file in */
        f = (struct file_replace) { .dir_fd = fx->dir_fd, .name = "none/f", .tmp_name = "none/f.tmp", .mode = 0600 };
        assert_int_equal(file_replace(&f, "x", 1, &step), -ENOENT);
        assert_string_equal(step, "create");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replace_fails_cleanly, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
