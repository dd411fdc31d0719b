/* fileio.h: the one way s3mond writes and reads whole files: every byte of a
 * buffer written (EINTR and short writes handled), a whole file read back,
 * and a file replaced atomically through a temporary sibling. Returns 0 or
 * -errno; the caller words the message. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

int write_all(int fd, const void *buf, size_t n);

/* The whole file behind fd (read from offset 0 up to its size at the time of
 * the call), NUL-terminated; *ret_size excludes the NUL. Caller frees. */
int read_all(int fd, char **ret, size_t *ret_size);

struct file_replace {
        int dir_fd;             /* AT_FDCWD, or the directory the names are in */
        const char *name;       /* the file to replace */
        const char *tmp_name;   /* its temporary sibling: created O_EXCL, a stale one
                                 * (left by a crash) removed first */
        mode_t mode;            /* set with fchmod(), whatever the umask */
        bool sync;              /* fsync the file before the rename; the directory
                                 * is the caller's to sync */
        /* Test hook, may be NULL: called half-way through the write ("mid-write")
         * and just before the rename ("before-rename"). */
        void (*checkpoint)(const char *point, void *userdata);
        void *userdata;
};

/* Write len bytes of data to tmp_name, then rename it over name: a reader
 * sees the old file or the new one, never a part. On failure the temporary
 * file is gone, name is untouched, and *ret_step (may be NULL) names the step
 * that failed: "create", "chmod", "write", "fsync", "close" or "rename". */
int file_replace(const struct file_replace *f, const void *data, size_t len, const char **ret_step);
