/* fuzz-state.c: state_open() (state.h) on whatever a crash, a full disk or
 * a careless hand left in the state directory: the input is the snapshot
 * prod.state, then optionally a NUL and the journal prod.state.log (an empty
 * part: no such file). The directory is on /dev/shm when there is one, so
 * state_save()'s fsync() costs nothing.
 * Invariants:
 *  - state_open() succeeds whatever the files hold (a bad file is moved
 *    aside with a warning, never trusted, never fatal);
 *  - what it loaded saves, and loads again without a warning into the same
 *    state: watermarks, seen, open findings (every field) and closed ones. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "state.h"

static char *dir;

static void dir_empty(void) {
        DIR *d = opendir(dir);
        struct dirent *e;

        CHECK(d, "opendir %s: %s", dir, strerror(errno));
        while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                        CHECK(unlinkat(dirfd(d), e->d_name, 0) == 0, "unlink %s: %s", e->d_name, strerror(errno));
        closedir(d);
}

static void dir_remove(void) {
        if (dir) {
                dir_empty();
                rmdir(dir);
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");

        CHECK(asprintf(&dir, "%s/s3mond-fuzz-state.XXXXXX", tmp && *tmp ? tmp : "/tmp") > 0 && mkdtemp(dir),
              "mkdtemp()");
        atexit(dir_remove);
        return 0;
}

static void put_file(const char *name, const uint8_t *data, size_t n) {
        char *path;
        int fd;

        if (n == 0)
                return;
        CHECK(asprintf(&path, "%s/%s", dir, name) > 0, "asprintf()");
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        CHECK(fd >= 0 && write(fd, data, n) == (ssize_t) n, "cannot write %s", path);
        close(fd);
        free(path);
}

static bool streq(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static char *dup_or_null(const char *s) {
        char *d = s ? strdup(s) : NULL;

        CHECK(!s || d, "strdup()");
        return d;
}

/* What a state holds, copied out so that it can be compared once the
 * state is closed (its lock keeps a second state_open() out). */
struct copy {
        time_t watermarks[_STATE_WATERMARK_MAX];
        size_t n_seen, n_open, n_closed;
        struct state_open_finding *open;        /* strings owned here */
        time_t *seen_at;                        /* of each open finding's alert */
        bool *has_closed;
};

static void copy_take(const struct env_state *st, struct copy *c) {
        const struct state_open_finding *f;
        size_t cursor = 0, i = 0;

        for (int w = 0; w < _STATE_WATERMARK_MAX; w++)
                c->watermarks[w] = state_watermark_get(st, (enum state_watermark) w);
        c->n_seen = state_seen_count(st);
        c->n_open = state_open_count(st);
        c->n_closed = state_closed_count(st);
        c->open = calloc(c->n_open + 1, sizeof(*c->open));
        c->seen_at = calloc(c->n_open + 1, sizeof(*c->seen_at));
        c->has_closed = calloc(c->n_open + 1, sizeof(*c->has_closed));
        CHECK(c->open && c->seen_at && c->has_closed, "calloc()");
        while ((f = state_open_next(st, &cursor))) {
                CHECK(i < c->n_open, "state_open_next() walks past state_open_count()");
                c->open[i] = *f;
                c->open[i].finding_id = dup_or_null(f->finding_id);
                c->open[i].alert_id = dup_or_null(f->alert_id);
                c->open[i].mailbox_id = dup_or_null(f->mailbox_id);
                c->open[i].mailbox_name = dup_or_null(f->mailbox_name);
                c->open[i].mailbox_email = dup_or_null(f->mailbox_email);
                CHECK(state_seen_get(st, f->alert_id, &c->seen_at[i]) == 1, "open finding %s not seen", f->alert_id);
                c->has_closed[i] = state_closed_find(st, f->alert_id) != NULL;
                i++;
        }
        CHECK(i == c->n_open, "state_open_next() gave %zu of %zu", i, c->n_open);
}

static void copy_done(struct copy *c) {
        for (size_t i = 0; i < c->n_open; i++) {
                free((char *) c->open[i].finding_id);
                free((char *) c->open[i].alert_id);
                free((char *) c->open[i].mailbox_id);
                free((char *) c->open[i].mailbox_name);
                free((char *) c->open[i].mailbox_email);
        }
        free(c->open);
        free(c->seen_at);
        free(c->has_closed);
}

/* st holds what c holds. */
static void check_same(const struct copy *c, const struct env_state *st) {
        for (int w = 0; w < _STATE_WATERMARK_MAX; w++)
                CHECK(c->watermarks[w] == state_watermark_get(st, (enum state_watermark) w),
                      "watermark %d: %lld, then %lld", w, (long long) c->watermarks[w],
                      (long long) state_watermark_get(st, (enum state_watermark) w));
        CHECK(c->n_seen == state_seen_count(st), "seen: %zu, then %zu", c->n_seen, state_seen_count(st));
        CHECK(c->n_open == state_open_count(st), "open: %zu, then %zu", c->n_open, state_open_count(st));
        CHECK(c->n_closed == state_closed_count(st), "closed: %zu, then %zu", c->n_closed, state_closed_count(st));
        for (size_t i = 0; i < c->n_open; i++) {
                const struct state_open_finding *f = &c->open[i], *g = state_open_find(st, f->alert_id);
                time_t at = 0;

                CHECK(g, "open finding of %s lost", f->alert_id);
                CHECK(streq(f->finding_id, g->finding_id) && f->alert_source == g->alert_source &&
                              streq(f->mailbox_id, g->mailbox_id) && streq(f->mailbox_name, g->mailbox_name) &&
                              streq(f->mailbox_email, g->mailbox_email) && f->generation == g->generation &&
                              f->occurrences == g->occurrences && f->first_at == g->first_at &&
                              f->last_at == g->last_at && f->opened_at == g->opened_at,
                      "open finding %s changed", f->finding_id);
                CHECK(state_seen_get(st, f->alert_id, &at) == 1 && at == c->seen_at[i], "seen %s changed", f->alert_id);
                CHECK(c->has_closed[i] == (state_closed_find(st, f->alert_id) != NULL), "closed record of %s",
                      f->alert_id);
        }
}

static void print(const char *what, const char *message) {
        if (getenv("S3MOND_FUZZ_PRINT")) /* README.md */
                printf("%s: %s\n", what, message ? message : "(no warning)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nul = memchr(data, '\0', size);
        size_t n_snapshot = nul ? (size_t) (nul - data) : size;
        struct env_state *st = NULL;
        struct copy c = {};
        char *message = NULL;
        int r, saved;

        dir_empty();
        put_file("prod.state", data, n_snapshot);
        if (nul)
                put_file("prod.state.log", nul + 1, size - n_snapshot - 1);

        r = state_open(dir, "prod", &st, &message);
        print("open", message);
        CHECK(r == 0 && st, "state_open() = %d: %s", r, message);
        free(message);
        message = NULL;

        saved = state_save(st, &message);
        CHECK(saved == 0 || saved == 1, "state_save() = %d: %s", saved, message);
        free(message);
        message = NULL;
        copy_take(st, &c);
        state_close(st);
        st = NULL;

        /* Saved: a clean snapshot and an empty journal. Not saved (nothing
         * changed): the files as they were, which may warn again. */
        r = state_open(dir, "prod", &st, &message);
        print("reopen", message);
        CHECK(r == 0 && st, "state_open() again = %d: %s", r, message);
        CHECK(saved == 0 || !message, "what state_save() wrote loads with a warning: %s", message);
        check_same(&c, st);
        free(message);
        state_close(st);
        copy_done(&c);
        return 0;
}
