/* macro.h: small helpers every module may use: cleanup attributes, array
 * size, pointer hand-over. Nothing here allocates or knows about s3mond. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Hand ownership of *p to the caller and leave NULL behind, so a
 * _cleanup_ on the old name no longer frees it. */
#define TAKE_PTR(p)                       \
        ({                                \
                __typeof__(p) _p_ = (p);  \
                (p) = NULL;               \
                _p_;                      \
        })

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

/* DEFINE_TRIVIAL_CLEANUP_FUNC(struct foo *, foo_free) gives foo_freep(). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)      \
        static inline void func##p(type *p) {        \
                if (*p)                              \
                        func(*p);                    \
        }

/* qsort() that accepts an empty (NULL) array, as qsort() itself does not. */
static inline void qsort_safe(void *base, size_t n, size_t size, int (*compare)(const void *, const void *)) {
        if (n > 1)
                qsort(base, n, size, compare);
}

/* Make the buffer *p (of *alloc bytes) hold at least need bytes, doubling
 * from initial. 0, or -ENOMEM (then *p and *alloc are unchanged). */
static inline int buffer_grow(char **p, size_t *alloc, size_t need, size_t initial) {
        size_t a = *alloc ? *alloc : initial;
        char *grown;

        if (need <= *alloc)
                return 0;
        while (a < need)
                a *= 2;
        grown = realloc(*p, a);
        if (!grown)
                return -ENOMEM;
        *p = grown;
        *alloc = a;
        return 0;
}

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}
