/* replay.c: main() for a harness built without libFuzzer: runs
 * LLVMFuzzerTestOneInput() once on each file named, or on each file of each
 * directory named (sorted), so that every build replays the seed corpus and
 * the saved crashes (tests/fuzz/regressions/) with its own compiler and
 * sanitizers. A failed invariant aborts, which fails the test. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Only some harnesses define it. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int replay_file(const char *path) {
        FILE *f = fopen(path, "re");
        uint8_t *data = NULL;
        size_t size = 0, alloc = 0;

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        for (;;) {
                size_t got;

                if (size == alloc) {
                        alloc = alloc ? alloc * 2 : 4096;
                        data = realloc(data, alloc);
                        if (!data)
                                abort();
                }
                got = fread(data + size, 1, alloc - size, f);
                size += got;
                if (got == 0)
                        break;
        }
        if (ferror(f)) {
                fprintf(stderr, "%s: read error\n", path);
                fclose(f);
                free(data);
                return -1;
        }
        fclose(f);
        /* An exact-size copy, so ASan sees reads past the end of the input. */
        {
                uint8_t *exact = malloc(size ? size : 1);

                if (!exact)
                        abort();
                memcpy(exact, data, size);
                free(data);
                LLVMFuzzerTestOneInput(exact, size);
                free(exact);
        }
        return 0;
}

static int name_compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Returns how many files it replayed, or -1. */
static int replay_dir(const char *dir) {
        DIR *d = opendir(dir);
        char **names = NULL;
        size_t n = 0;
        int count = 0;
        struct dirent *e;

        if (!d) {
                fprintf(stderr, "%s: %s\n", dir, strerror(errno));
                return -1;
        }
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue; /* ".", "..", ".gitkeep" */
                names = realloc(names, (n + 1) * sizeof(*names));
                if (!names || !(names[n] = strdup(e->d_name)))
                        abort();
                n++;
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(*names), name_compare);
        for (size_t i = 0; i < n; i++) {
                char *path;

                if (asprintf(&path, "%s/%s", dir, names[i]) < 0)
                        abort();
                if (count >= 0 && replay_file(path) == 0)
                        count++;
                else
                        count = -1;
                free(path);
                free(names[i]);
        }
        free(names);
        return count;
}

int main(int argc, char **argv) {
        int total = 0;

        if (LLVMFuzzerInitialize)
                LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++) {
                struct stat st;
                int r;

                /* A directory that does not exist is an empty one: regressions/<target> appears
                 * with the first crash saved there. */
                if (stat(argv[i], &st) < 0) {
                        if (errno == ENOENT)
                                continue;
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                r = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i]) == 0 ? 1 : -1;
                if (r < 0)
                        return 1;
                total += r;
        }
        printf("%s: replayed %d inputs\n", argv[0], total);
        return 0;
}
