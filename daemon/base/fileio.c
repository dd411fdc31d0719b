/* fileio.c: whole-buffer writes, whole-file reads, atomic replacement.
 * Knows nothing of what the files hold (state, metrics). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"

int write_all(int fd, const void *buf, size_t n) {
        const char *p = buf;

        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int read_all(int fd, char **ret, size_t *ret_size) {
        struct stat sb;
        char *buf;
        size_t n = 0;

        if (fstat(fd, &sb) < 0)
                return -errno;
        buf = malloc((size_t) sb.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (n < (size_t) sb.st_size) {
                ssize_t k = pread(fd, buf + n, (size_t) sb.st_size - n, (off_t) n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int r = -errno;
                        free(buf);
                        return r;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        buf[n] = 0;
        *ret = buf;
        *ret_size = n;
        return 0;
}

static void checkpoint(const struct file_replace *f, const char *point) {
        if (f->checkpoint)
                f->checkpoint(point, f->userdata);
}

static int create_tmp(const struct file_replace *f) {
        int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
        int fd = openat(f->dir_fd, f->tmp_name, flags, f->mode);

        if (fd < 0 && errno == EEXIST) { /* left by a crash */
                (void) unlinkat(f->dir_fd, f->tmp_name, 0);
                fd = openat(f->dir_fd, f->tmp_name, flags, f->mode);
        }
        return fd < 0 ? -errno : fd;
}

/* Everything between creating the temporary file and renaming it. */
static int fill_tmp(const struct file_replace *f, int fd, const char *data, size_t len, const char **step) {
        int r;

        *step = "chmod";
        if (fchmod(fd, f->mode) < 0)
                return -errno;
        *step = "write";
        if ((r = write_all(fd, data, len / 2)) < 0)
                return r;
        checkpoint(f, "mid-write");
        if ((r = write_all(fd, data + len / 2, len - len / 2)) < 0)
                return r;
        *step = "fsync";
        if (f->sync && fsync(fd) < 0)
                return -errno;
        return 0;
}

int file_replace(const struct file_replace *f, const void *data, size_t len, const char **ret_step) {
        const char *step = "create";
        int fd, r;

        fd = create_tmp(f);
        if (fd < 0) {
                if (ret_step)
                        *ret_step = step;
                return fd;
        }
        r = fill_tmp(f, fd, data, len, &step);
        if (close(fd) < 0 && r >= 0) {
                r = -errno;
                step = "close";
        }
        if (r >= 0) {
                checkpoint(f, "before-rename");
                step = "rename";
                r = renameat(f->dir_fd, f->tmp_name, f->dir_fd, f->name) < 0 ? -errno : 0;
        }
        if (r < 0) {
                (void) unlinkat(f->dir_fd, f->tmp_name, 0);
                if (ret_step)
                        *ret_step = step;
        }
        return r;
}
