/* Unit tests for state.c: round trips, the docs/design.md §2 classification, corrupt and
 * foreign files, the journal across simulated crashes (fork + SIGKILL), atomic
 * replacement at every crash point, modes, and (as root, in a private mount
 * namespace) a full and a read-only state directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state.h"

#define T0 ((time_t) 1764064798) /* 2025-11-25T09:59:58Z */

struct fixture {
        char dir[64];
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
        (void) sb; (void) flag; (void) ftw;
        return remove(path);
}

static int setup(void **state) {
        struct fixture *fx = calloc(1, sizeof(*fx));
        strcpy(fx->dir, "/tmp/s3mond-state-XXXXXX");
        assert_non_null(mkdtemp(fx->dir));
        *state = fx;
        return 0;
}

static int teardown(void **state) {
        struct fixture *fx = *state;
        nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(fx);
        return 0;
}

static char *path_of(const struct fixture *fx, const char *name) {
        char *p;
        assert_true(asprintf(&p, "%s/%s", fx->dir, name) > 0);
        return p;
}

static char *read_file(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t len = 0;
        if (!f)
                return NULL;
        FILE *m = open_memstream(&buf, &len);
        int c;
        while ((c = fgetc(f)) != EOF)
                fputc(c, m);
        fclose(m);
        fclose(f);
        if (ret_len)
                *ret_len = len;
        return buf;
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
}

static size_t count_glob(const struct fixture *fx, const char *pattern) {
        char *p = path_of(fx, pattern);
        glob_t g;
        size_t n = glob(p, 0, NULL, &g) == 0 ? g.gl_pathc : 0;
        if (n)
                globfree(&g);
        free(p);
        return n;
}

/* A finding for alert number I with predictable fields. */
struct fbuf {
        char finding_id[96], alert_id[64], mailbox_id[64], name[64];
        struct state_open_finding f;
};

static const struct state_open_finding *make_finding(struct fbuf *b, unsigned i, unsigned generation,
                                                     unsigned occurrences) {
        snprintf(b->alert_id, sizeof(b->alert_id), "00000000-0000-0000-0000-%012u", i);
        snprintf(b->finding_id, sizeof(b->finding_id), "prod/%s/%u", b->alert_id, generation);
        snprintf(b->mailbox_id, sizeof(b->mailbox_id), "11111111-0000-0000-0000-%012u", i % 7);
        snprintf(b->name, sizeof(b->name), "Support \"%u\"\n\\", i);
        b->f = (struct state_open_finding) {
                .finding_id = b->finding_id,
                .alert_id = b->alert_id,
                .alert_source = i % 2 ? ALERT_SOURCE_MAILBOX : ALERT_SOURCE_TRACELOG,
                .alert_kind = i % 3 == 1 ? ALERT_KIND_ACT : ALERT_KIND_EMAIL,
                .mailbox_id = b->mailbox_id,
                .mailbox_name = b->name,
                .mailbox_email = i % 3 ? "support@contoso.com" : NULL,
                .generation = generation,
                .occurrences = occurrences,
                .first_at = T0 + i,
                .last_at = T0 + i + occurrences - 1,
                .opened_at = T0 + i + 5,
        };
        return &b->f;
}

static void assert_finding_equal(const struct state_open_finding *a, const struct state_open_finding *b) {
        assert_non_null(a);
        assert_string_equal(a->finding_id, b->finding_id);
        assert_string_equal(a->alert_id, b->alert_id);
        assert_int_equal(a->alert_source, b->alert_source);
        assert_int_equal(a->alert_kind, b->alert_kind);
        assert_string_equal(a->mailbox_id, b->mailbox_id);
        assert_string_equal(a->mailbox_name, b->mailbox_name);
        if (b->mailbox_email)
                assert_string_equal(a->mailbox_email, b->mailbox_email);
        else
                assert_null(a->mailbox_email);
        assert_int_equal(a->generation, b->generation);
        assert_int_equal(a->occurrences, b->occurrences);
        assert_int_equal(a->first_at, b->first_at);
        assert_int_equal(a->last_at, b->last_at);
        assert_int_equal(a->opened_at, b->opened_at);
}

static struct env_state *open_ok(const struct fixture *fx, const char *env) {
        struct env_state *st = NULL;
        char *msg = NULL;
        int r = state_open(fx->dir, env, &st, &msg);
        if (r < 0 || msg)
                fail_msg("state_open: %d %s", r, msg ? msg : "");
        return st;
}

static struct env_state *open_warned(const struct fixture *fx, const char *env, const char *needle) {
        struct env_state *st = NULL;
        char *msg = NULL;
        assert_int_equal(state_open(fx->dir, env, &st, &msg), 0);
        if (!msg || !strstr(msg, needle))
                fail_msg("expected a warning with '%s', got '%s'", needle, msg ? msg : "(none)");
        free(msg);
        return st;
}

/* ---- basics ------------------------------------------------------------- */

static void test_missing_is_fresh(void **state) {
        struct fixture *fx = *state;
        char *sub = path_of(fx, "new"), *msg = NULL;
        struct env_state *st = NULL;
        struct stat sb;

        /* the directory itself is created, 0700 */
        assert_int_equal(state_open(sub, "prod", &st, &msg), 0);
        assert_null(msg);
        assert_int_equal(stat(sub, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0700);
        assert_int_equal(state_watermark_get(st, STATE_WATERMARK_TRACELOGS), 0);
        assert_int_equal(state_watermark_get(st, STATE_WATERMARK_MAILBOXES), 0);
        assert_int_equal(state_open_count(st), 0);
        assert_int_equal(state_seen_count(st), 0);
        assert_int_equal(state_closed_count(st), 0);
        assert_int_equal(state_seen_get(st, "x", NULL), 0);
        assert_string_equal(state_environment(st), "prod");
        assert_true(strstr(state_path(st), "/new/prod.state") != NULL);
        assert_int_equal(state_save(st, NULL), 0); /* nothing to write */
        state_close(st);
        free(sub);
}

static void test_bad_arguments(void **state) {
        struct fixture *fx = *state;
        struct env_state *st = NULL;
        char *msg = NULL;
        char long_name[80];

        assert_int_equal(state_open(fx->dir, "../etc", &st, &msg), -EINVAL);
        assert_non_null(msg);
        free(msg);
        assert_int_equal(state_open(fx->dir, "", &st, NULL), -EINVAL);
        memset(long_name, 'a', 65);
        long_name[65] = 0;
        assert_int_equal(state_open(fx->dir, long_name, &st, NULL), -EINVAL);
        long_name[64] = 0;
        assert_int_equal(state_open(fx->dir, long_name, &st, NULL), 0);

        struct state_open_finding f = { .finding_id = "f", .alert_id = "a", .generation = 0, .occurrences = 1 };
        assert_int_equal(state_note_finding(st, &f, &msg), -EINVAL);
        free(msg);
        f.generation = 1;
        f.alert_id = NULL;
        assert_int_equal(state_note_finding(st, &f, NULL), -EINVAL);
        assert_int_equal(state_note_resolved(st, "nope", T0, NULL), -ENOENT);
        assert_int_equal(state_open_count(st), 0);
        state_close(st);
}

static void test_round_trip(void **state) {
        struct fixture *fx = *state;
        struct fbuf b[5];
        struct env_state *st = open_ok(fx, "prod");
        char *err = NULL;
        time_t at;

        state_watermark_set(st, STATE_WATERMARK_TRACELOGS, T0 + 100);
        state_watermark_set(st, STATE_WATERMARK_MAILBOXES, T0 + 200);
        for (unsigned i = 0; i < 5; i++)
                assert_int_equal(state_note_finding(st, make_finding(&b[i], i, 1, 1 + i), &err), 0);
        assert_int_equal(state_seen_set(st, "seen-only", T0 - 50, NULL), 0);
        assert_int_equal(state_note_resolved(st, b[4].finding_id, T0 + 3600, NULL), 0);
        /* non-UTF-8 in a name is scrubbed, never makes the file unwritable */
        struct fbuf odd;
        make_finding(&odd, 9, 1, 1);
        strcpy(odd.name, "bad \xff\xfe byte");
        assert_int_equal(state_note_finding(st, &odd.f, NULL), 0);
        /* an overlong form too (jansson refuses it; an older scrub let it through) */
        struct fbuf overlong;
        make_finding(&overlong, 10, 1, 1);
        strcpy(overlong.name, "ov \xc0\x80 er");
        assert_int_equal(state_note_finding(st, &overlong.f, NULL), 0);
        assert_int_equal(state_save(st, &err), 1);
        assert_null(err);
        state_close(st);

        st = open_ok(fx, "prod");
        assert_int_equal(state_watermark_get(st, STATE_WATERMARK_TRACELOGS), T0 + 100);
        assert_int_equal(state_watermark_get(st, STATE_WATERMARK_MAILBOXES), T0 + 200);
        assert_int_equal(state_open_count(st), 5 + 1);
        for (unsigned i = 0; i < 4; i++)
                assert_finding_equal(state_open_find(st, b[i].alert_id), &b[i].f);
        assert_string_equal(state_open_find(st, odd.alert_id)->mailbox_name, "bad ?? byte");
        assert_string_equal(state_open_find(st, overlong.alert_id)->mailbox_name, "ov ?? er");
        assert_null(state_open_find(st, b[4].alert_id));
        const struct state_closed_finding *c = state_closed_find(st, b[4].alert_id);
        assert_non_null(c);
        assert_int_equal(c->generation, 1);
        assert_int_equal(c->resolved_at, T0 + 3600);
        assert_int_equal(c->last_at, b[4].f.last_at);
        assert_int_equal(state_seen_get(st, "seen-only", &at), 1);
        assert_int_equal(at, T0 - 50);
        assert_int_equal(state_seen_get(st, b[3].alert_id, &at), 1);
        assert_int_equal(at, b[3].f.last_at);
        assert_int_equal(state_seen_count(st), 7 + 1);
        assert_int_equal(state_save(st, NULL), 0); /* loaded == saved: nothing to do */
        state_close(st);
}

static void test_classify(void **state) {
        struct fixture *fx = *state;
        struct env_state *st = open_ok(fx, "prod");
        struct fbuf b;
        unsigned gen;

        assert_int_equal(state_classify(st, "A", T0, &gen), STATE_ALERT_NEW);
        assert_int_equal(gen, 1);
        make_finding(&b, 1, 1, 1);
        b.f.alert_id = "A";
        b.f.last_at = T0;
        assert_int_equal(state_note_finding(st, &b.f, NULL), 0);
        assert_int_equal(state_classify(st, "A", T0, &gen), STATE_ALERT_REPORTED);
        assert_int_equal(state_classify(st, "A", T0 - 10, &gen), STATE_ALERT_REPORTED);
        assert_int_equal(state_classify(st, "A", T0 + 60, &gen), STATE_ALERT_RECURRENCE);
        assert_int_equal(gen, 1);
        /* the recurrence is noted as a changed copy of the open finding: count 2, later last_at */
        struct state_open_finding again = *state_open_find(st, "A");
        again.occurrences++;
        again.last_at = T0 + 60;
        assert_int_equal(state_note_finding(st, &again, NULL), 0);
        assert_string_equal(state_open_find(st, "A")->finding_id, b.finding_id);
        assert_int_equal(state_open_count(st), 1);
        assert_int_equal(state_open_find(st, "A")->occurrences, 2);
        assert_int_equal(state_classify(st, "A", T0 + 60, &gen), STATE_ALERT_REPORTED);
        /* resolved: an old occurrence stays reported, a later one reopens as generation 2 */
        assert_int_equal(state_note_resolved(st, b.finding_id, T0 + 7200, NULL), 0);
        assert_int_equal(state_classify(st, "A", T0 + 60, &gen), STATE_ALERT_REPORTED);
        assert_int_equal(gen, 1);
        assert_int_equal(state_classify(st, "A", T0 + 8000, &gen), STATE_ALERT_REOPENED);
        assert_int_equal(gen, 2);
        b.f.finding_id = "prod/A/2";
        b.f.generation = 2;
        b.f.occurrences = 1;
        b.f.first_at = b.f.last_at = T0 + 8000;
        assert_int_equal(state_note_finding(st, &b.f, NULL), 0);
        assert_null(state_closed_find(st, "A"));
        assert_int_equal(state_classify(st, "A", T0 + 8000, &gen), STATE_ALERT_REPORTED);
        assert_int_equal(gen, 2);
        /* even with the seen entry pruned, the closed record keeps an old occurrence old */
        assert_int_equal(state_note_resolved(st, "prod/A/2", T0 + 9000, NULL), 0);
        assert_int_equal(state_prune(st, T0 + 9000, 0), 1);
        assert_int_equal(state_seen_get(st, "A", NULL), 0);
        assert_int_equal(state_classify(st, "A", T0 + 8000, &gen), STATE_ALERT_REPORTED);
        assert_int_equal(state_classify(st, "A", T0 + 8001, &gen), STATE_ALERT_REOPENED);
        assert_int_equal(gen, 3);
        /* a seen-only alert */
        assert_int_equal(state_seen_set(st, "S", T0, NULL), 0);
        assert_int_equal(state_classify(st, "S", T0, &gen), STATE_ALERT_REPORTED);
        assert_int_equal(state_classify(st, "S", T0 + 1, NULL), STATE_ALERT_NEW);
        /* a finding id may not move to another alert */
        b.f.alert_id = "B";
        b.f.finding_id = "prod/S/1";
        assert_int_equal(state_note_finding(st, &b.f, NULL), 0);
        b.f.alert_id = "C";
        assert_int_equal(state_note_finding(st, &b.f, NULL), -EEXIST);
        state_close(st);
}

static void test_prune_and_walk(void **state) {
        struct fixture *fx = *state;
        struct env_state *st = open_ok(fx, "prod");
        struct fbuf b;
        size_t cursor = 0, n = 0;
        const struct state_open_finding *f;

        for (unsigned i = 0; i < 100; i++)
                assert_int_equal(state_note_finding(st, make_finding(&b, i, 1, 1), NULL), 0);
        /* resolve every other one during the walk */
        while ((f = state_open_next(st, &cursor))) {
                n++;
                if (f->first_at % 2 == 0)
                        assert_int_equal(state_note_resolved(st, f->finding_id, T0 + 1000, NULL), 0);
        }
        assert_int_equal(n, 100);
        assert_int_equal(state_open_count(st), 50);
        assert_int_equal(state_closed_count(st), 50);
        /* seen entries of open findings survive any prune; old closed records go */
        assert_int_equal(state_prune(st, T0 + 10000, T0 + 1001), 100);
        assert_int_equal(state_seen_count(st), 50);
        assert_int_equal(state_closed_count(st), 0);
        for (cursor = 0, n = 0; (f = state_open_next(st, &cursor)); n++)
                assert_int_equal(state_seen_get(st, f->alert_id, NULL), 1);
        assert_int_equal(n, 50);
        assert_int_equal(state_prune(st, T0 + 10000, T0 + 1001), 0);
        state_close(st);
}

/* ---- corrupt and foreign files ----------------------------------------- */

static void corrupt_case(struct fixture *fx, const char *content, const char *needle) {
        char *p = path_of(fx, "prod.state");
        struct env_state *st;
        size_t before = count_glob(fx, "prod.state.corrupt-*");

        write_file(p, content);
        st = open_warned(fx, "prod", needle);
        assert_int_equal(state_open_count(st), 0);
        assert_int_equal(state_seen_count(st), 0);
        assert_int_equal(state_watermark_get(st, STATE_WATERMARK_TRACELOGS), 0);
        assert_int_equal(access(p, F_OK), -1); /* moved aside, ... */
        assert_int_equal(count_glob(fx, "prod.state.corrupt-*"), before + 1); /* ... kept */
        /* and a save after it works */
        state_watermark_set(st, STATE_WATERMARK_TRACELOGS, T0);
        assert_int_equal(state_save(st, NULL), 1);
        state_close(st);
        st = open_ok(fx, "prod");
        assert_int_equal(state_watermark_get(st, STATE_WATERMARK_TRACELOGS), T0);
        state_close(st);
        assert_int_equal(unlink(p), 0);
        free(p);
}

static void test_corrupt_files(void **state) {
        struct fixture *fx = *state;
        static const char valid_prefix[] =
                "{\"format\":\"s3mond-state\",\"version\":1,\"environment\":\"prod\",\"serial\":3,"
                "\"watermarks\":{\"tracelogs\":\"2025-11-25T09:59:58Z\",\"mailboxes\":null},"
                "\"seen\":{\"a\":\"2025-11-25T09:59:58Z\"},\"open\":[],\"closed\":[]}\n";
        char buf[1024];

        corrupt_case(fx, "\x01\x02garbage", "not valid JSON");
        corrupt_case(fx, "", "empty");
        /* truncated: a valid file cut short */
        snprintf(buf, sizeof(buf), "%.*s", (int) sizeof(valid_prefix) / 2, valid_prefix);
        corrupt_case(fx, buf, "not valid JSON");
        corrupt_case(fx, "[1,2,3]", "not a JSON object");
        corrupt_case(fx, "{\"format\":\"something-else\"}", "not an s3mond state file");
        corrupt_case(fx, "{\"format\":\"s3mond-state\",\"version\":1,\"environment\":\"prod\",\"serial\":1,"
                         "\"watermarks\":{},\"seen\":[],\"open\":[],\"closed\":[]}", "wrong type");
        corrupt_case(fx, "{\"format\":\"s3mond-state\",\"version\":1,\"environment\":\"prod\",\"serial\":1,"
                         "\"watermarks\":{\"tracelogs\":\"yesterday\"},\"seen\":{},\"open\":[],\"closed\":[]}",
                     "\"tracelogs\" is not a timestamp");
        corrupt_case(fx, "{\"format\":\"s3mond-state\",\"version\":1,\"environment\":\"prod\",\"serial\":1,"
                         "\"watermarks\":{},\"seen\":{},\"open\":[{\"finding_id\":\"x\"}],\"closed\":[]}",
                     "\"alert_id\" is not a string");
        /* another environment's file, a newer format */
        snprintf(buf, sizeof(buf), "%s", valid_prefix);
        memcpy(strstr(buf, "\"prod\""), "\"test\"", 6);
        corrupt_case(fx, buf, "belongs to environment 'test'");
        snprintf(buf, sizeof(buf), "%s", valid_prefix);
        memcpy(strstr(buf, "\"version\":1"), "\"version\":2", 11);
        corrupt_case(fx, buf, "newer s3mond");

        /* the valid one is accepted as it is */
        char *p = path_of(fx, "prod.state");
        write_file(p, valid_prefix);
        struct env_state *st = open_ok(fx, "prod");
        assert_int_equal(state_watermark_get(st, STATE_WATERMARK_TRACELOGS), T0);
        assert_int_equal(state_seen_get(st, "a", NULL), 1);
        state_close(st);

        /* not a regular file */
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkdir(p, 0700), 0);
        st = open_warned(fx, "prod", "not a regular file");
        state_close(st);
        free(p);
}

static void test_foreign_journal(void **state) {
        struct fixture *fx = *state;
        char *p = path_of(fx, "prod.state.log");
        struct env_state *st;

        write_file(p, "{\"format\":\"s3mond-state-log\",\"version\":1,\"environment\":\"test\",\"serial\":0}\n"
                      "{\"op\":\"seen\",\"alert_id\":\"a\",\"at\":\"2025-11-25T09:59:58Z\"}\n");
        st = open_warned(fx, "prod", "journal");
        assert_int_equal(state_seen_count(st), 0);
        assert_int_equal(count_glob(fx, "prod.state.log.corrupt-*"), 1);
        /* a fresh journal took its place and works */
        assert_int_equal(state_seen_set(st, "b", T0, NULL), 0);
        state_close(st);
        st = open_ok(fx, "prod");
        assert_int_equal(state_seen_get(st, "b", NULL), 1);
        assert_int_equal(state_seen_get(st, "a", NULL), 0);
        state_close(st);
        free(p);
}

static void test_lock(void **state) {
        struct fixture *fx = *state;
        struct env_state *a = open_ok(fx, "prod"), *b = NULL;
        char *msg = NULL;

        assert_int_equal(state_open(fx->dir, "prod", &b, &msg), -EBUSY);
        assert_non_null(strstr(msg, "in use"));
        free(msg);
        state_close(a);
        b = open_ok(fx, "prod");
        state_close(b);
}

/* ---- the journal and crashes ------------------------------------------- */

/* Runs FN in a child that must die by SIGKILL. */
static void in_child_killed(struct fixture *fx, void (*fn)(struct fixture *, void *), void *arg) {
        pid_t pid = fork();
        int status;

        assert_true(pid >= 0);
        if (pid == 0) {
                fn(fx, arg);
                _exit(3); /* should have been killed */
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
                fail_msg("child status %#x, expected SIGKILL", status);
}

static void notes_then_kill(struct fixture *fx, void *arg) {
        unsigned n = *(unsigned *) arg;
        struct env_state *st = NULL;
        struct fbuf b;

        if (state_open(fx->dir, "prod", &st, NULL) < 0)
                _exit(4);
        for (unsigned i = 0; i < n; i++)
                if (state_note_finding(st, make_finding(&b, i, 1, 1), NULL) < 0)
                        _exit(5);
        for (unsigned i = 0; i < n; i += 10)
                if (state_note_resolved(st, make_finding(&b, i, 1, 1)->finding_id, T0 + 999, NULL) < 0)
                        _exit(6);
        state_watermark_set(st, STATE_WATERMARK_TRACELOGS, T0); /* not journaled: lost */
        raise(SIGKILL); /* no save, no close */
}

static void test_journal_survives_kill(void **state) {
        struct fixture *fx = *state;
        unsigned n = 500;
        struct env_state *st;
        struct fbuf b;

        in_child_killed(fx, notes_then_kill, &n);
        st = open_ok(fx, "prod");
        assert_int_equal(state_open_count(st), n - n / 10);
        assert_int_equal(state_closed_count(st), n / 10);
        for (unsigned i = 0; i < n; i++) {
                make_finding(&b, i, 1, 1);
                if (i % 10 == 0)
                        assert_int_equal(state_closed_find(st, b.alert_id)->resolved_at, T0 + 999);
                else
                        assert_finding_equal(state_open_find(st, b.alert_id), &b.f);
        }
        assert_int_equal(state_watermark_get(st, STATE_WATERMARK_TRACELOGS), 0);
        /* replayed notes are written into the next snapshot, then the journal empties */
        assert_int_equal(state_save(st, NULL), 1);
        state_close(st);
        st = open_ok(fx, "prod");
        assert_int_equal(state_open_count(st), n - n / 10);
        state_close(st);
}

/* The journal after n notes (findings 1..n), its handle closed, opened for
 * appending what a crash or a hand might leave. */
static FILE *journal_after_notes(struct fixture *fx, unsigned n) {
        _cleanup_free_ char *log = path_of(fx, "prod.state.log");
        struct env_state *st = open_ok(fx, "prod");
        struct fbuf b;
        FILE *f;

        for (unsigned i = 1; i <= n; i++)
                assert_int_equal(state_note_finding(st, make_finding(&b, i, 1, 1), NULL), 0);
        state_close(st);
        f = fopen(log, "ae");
        assert_non_null(f);
        return f;
}

static void test_torn_last_line(void **state) {
        struct fixture *fx = *state;
        struct env_state *st;
        struct fbuf b;
        FILE *f = journal_after_notes(fx, 2);

        fputs("{\"op\":\"finding\",\"finding_id\":\"prod/x/1\",\"alert_id\":\"x\",\"alert_s", f);
        fclose(f);

        st = open_ok(fx, "prod"); /* a torn last line is the note in flight: no warning */
        assert_int_equal(state_open_count(st), 2);
        assert_null(state_open_find(st, "x"));
        /* the next note starts on a line of its own */
        assert_int_equal(state_note_finding(st, make_finding(&b, 3, 1, 1), NULL), 0);
        state_close(st);
        st = open_ok(fx, "prod");
        assert_int_equal(state_open_count(st), 3);
        state_close(st);
}

static void torn_by_crash_point(struct fixture *fx, void *arg) {
        struct env_state *st = NULL;
        struct fbuf b;
        (void) arg;

        if (state_open(fx->dir, "prod", &st, NULL) < 0)
                _exit(4);
        setenv("S3MOND_TEST_CRASH_AT", "state-log-mid-append:3", 1);
        for (unsigned i = 0; i < 5; i++)
                state_note_finding(st, make_finding(&b, i, 1, 1), NULL);
}

static void test_torn_by_crash_point(void **state) {
        struct fixture *fx = *state;
        struct env_state *st;
        struct fbuf b;

        in_child_killed(fx, torn_by_crash_point, NULL);
        st = open_ok(fx, "prod");
        assert_int_equal(state_open_count(st), 2); /* the third was in flight */
        assert_null(state_open_find(st, make_finding(&b, 2, 1, 1)->alert_id));
        state_close(st);
}

static void test_bad_middle_line(void **state) {
        struct fixture *fx = *state;
        struct env_state *st;
        struct fbuf b;
        FILE *f = journal_after_notes(fx, 1);

        fputs("this is not json\n{\"op\":\"mystery\",\"at\":\"2025-11-25T09:59:58Z\"}\n", f);
        fclose(f);
        st = open_warned(fx, "prod", "2 unreadable line(s)");
        assert_int_equal(state_note_finding(st, make_finding(&b, 2, 1, 1), NULL), 0);
        state_close(st);

        st = open_warned(fx, "prod", "2 unreadable line(s)");
        assert_int_equal(state_open_count(st), 2);
        state_close(st);
}

static void test_save_empties_journal(void **state) {
        struct fixture *fx = *state;
        char *log = path_of(fx, "prod.state.log"), *text;
        struct env_state *st = open_ok(fx, "prod");
        struct fbuf b;
        size_t len, header_len;

        assert_int_equal(state_note_finding(st, make_finding(&b, 1, 1, 1), NULL), 0);
        text = read_file(log, &len);
        assert_non_null(strstr(text, "\"op\":\"finding\""));
        free(text);
        assert_int_equal(state_save(st, NULL), 1);
        text = read_file(log, &header_len);
        assert_null(strstr(text, "\"op\""));
        assert_non_null(strstr(text, "\"serial\":1"));
        assert_true(header_len < len);
        free(text);
        assert_int_equal(state_save(st, NULL), 0);
        /* the journal carries on after the save */
        assert_int_equal(state_note_finding(st, make_finding(&b, 2, 1, 1), NULL), 0);
        state_close(st);
        st = open_ok(fx, "prod");
        assert_int_equal(state_open_count(st), 2);
        state_close(st);
        free(log);
}

static void test_modes(void **state) {
        struct fixture *fx = *state;
        static const mode_t masks[] = { 022, 0, 077 };
        mode_t old = umask(0);

        for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
                char env[16], name[128];
                struct stat sb;
                struct fbuf b;
                umask(masks[i]);
                snprintf(env, sizeof(env), "m%zu", i);
                struct env_state *st = open_ok(fx, env);
                assert_int_equal(state_note_finding(st, make_finding(&b, 1, 1, 1), NULL), 0);
                assert_int_equal(state_save(st, NULL), 1);
                state_close(st);
                snprintf(name, sizeof(name), "%s/%s.state", fx->dir, env);
                assert_int_equal(stat(name, &sb), 0);
                assert_int_equal(sb.st_mode & 07777, 0600);
                strcat(name, ".log");
                assert_int_equal(stat(name, &sb), 0);
                assert_int_equal(sb.st_mode & 07777, 0600);
        }
        umask(old);
}

/* The save of the child: notes since the parent's snapshot, then a save that dies. */
struct crash_case {
        const char *point;
};

static void save_and_crash(struct fixture *fx, void *arg) {
        const struct crash_case *c = arg;
        struct env_state *st = NULL;
        struct fbuf b;

        if (state_open(fx->dir, "prod", &st, NULL) < 0)
                _exit(4);
        for (unsigned i = 10; i < 20; i++)
                if (state_note_finding(st, make_finding(&b, i, 1, 2), NULL) < 0)
                        _exit(5);
        if (state_note_resolved(st, make_finding(&b, 0, 1, 1)->finding_id, T0 + 500, NULL) < 0)
                _exit(6);
        state_watermark_set(st, STATE_WATERMARK_TRACELOGS, T0 + 77);
        setenv("S3MOND_TEST_CRASH_AT", c->point, 1);
        state_save(st, NULL);
}

static void test_crash_points(void **state) {
        struct fixture *fx = *state;
        static const char *points[] = {
                "state-mid-write", "state-before-rename", "state-after-rename", "state-after-log-truncate",
        };
        char *path = path_of(fx, "prod.state"), *tmp = path_of(fx, "prod.state.tmp");
        char *log = path_of(fx, "prod.state.log");

        for (size_t k = 0; k < sizeof(points) / sizeof(points[0]); k++) {
                struct env_state *st;
                struct fbuf b;
                char *old, *now;
                size_t old_len, now_len;

                unlink(path);
                unlink(tmp);
                unlink(log);
                st = open_ok(fx, "prod");
                for (unsigned i = 0; i < 10; i++)
                        assert_int_equal(state_note_finding(st, make_finding(&b, i, 1, 1), NULL), 0);
                state_watermark_set(st, STATE_WATERMARK_TRACELOGS, T0 + 11);
                assert_int_equal(state_save(st, NULL), 1);
                state_close(st);
                old = read_file(path, &old_len);

                in_child_killed(fx, save_and_crash, &(struct crash_case) { points[k] });

                /* the file is the old snapshot or the whole new one */
                now = read_file(path, &now_len);
                assert_non_null(now);
                bool is_old = now_len == old_len && memcmp(old, now, old_len) == 0;
                bool is_new = strstr(now, "\"serial\":2") && now[now_len - 1] == '\n' &&
                              strstr(now, "2025-11-25T10:01:15Z"); /* T0 + 77 */
                if (!(is_old || is_new))
                        fail_msg("%s: snapshot is neither old nor new", points[k]);
                assert_true(is_old == (k < 2));

                /* and with the journal, nothing noted is lost */
                st = open_ok(fx, "prod");
                assert_int_equal(state_open_count(st), 19);
                for (unsigned i = 1; i < 20; i++)
                        assert_finding_equal(state_open_find(st, make_finding(&b, i, 1, i < 10 ? 1 : 2)->alert_id),
                                             &b.f);
                assert_non_null(state_closed_find(st, make_finding(&b, 0, 1, 1)->alert_id));
                assert_int_equal(state_watermark_get(st, STATE_WATERMARK_TRACELOGS), is_old ? T0 + 11 : T0 + 77);
                assert_int_equal(access(tmp, F_OK), -1); /* a leftover temp file is removed */
                assert_true(state_save(st, NULL) >= 0);
                state_close(st);
                free(old);
                free(now);
        }
        free(path);
        free(tmp);
        free(log);
}

static void test_crash_point_count(void **state) {
        struct fixture *fx = *state;
        struct env_state *st = open_ok(fx, "prod");
        pid_t pid;
        int status;

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                setenv("S3MOND_TEST_CRASH_AT", "monitor-after-emit:3", 1);
                state_crash_point(st, "monitor-after-emit");
                state_crash_point(st, "other-point");
                state_crash_point(st, "monitor-after-emit");
                char *alive = path_of(fx, "alive"); /* still alive after two passes */
                write_file(alive, "");
                state_crash_point(st, "monitor-after-emit-x");
                state_crash_point(st, "monitor-after-emit");
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        char *alive = path_of(fx, "alive");
        assert_int_equal(access(alive, F_OK), 0);
        free(alive);
        unsetenv("S3MOND_TEST_CRASH_AT");
        state_crash_point(st, "monitor-after-emit"); /* inert when unset */
        state_close(st);
}

/* ---- a full and a read-only directory (root, private mount namespace) -------- */

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); _exit(10); } } while (0)

static int run_in_namespace(struct fixture *fx, int (*fn)(struct fixture *)) {
        pid_t pid;
        int status;

        if (geteuid() != 0)
                return 77;
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(77);
                _exit(fn(fx));
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

static int enospc_body(struct fixture *fx) {
        struct env_state *st = NULL;
        struct fbuf b;
        char *err = NULL, *path, *filler, *old, *now;
        size_t old_len, now_len;
        int fd, r;

        CHECK(mount("tmpfs", fx->dir, "tmpfs", 0, "size=256k,mode=0700") == 0);
        CHECK(state_open(fx->dir, "prod", &st, NULL) == 0);
        for (unsigned i = 0; i < 5; i++)
                CHECK(state_note_finding(st, make_finding(&b, i, 1, 1), NULL) == 0);
        CHECK(state_save(st, NULL) == 1);
        path = path_of(fx, "prod.state");
        old = read_file(path, &old_len);

        /* fill the file system */
        filler = path_of(fx, "filler");
        fd = open(filler, O_WRONLY | O_CREAT, 0600);
        CHECK(fd >= 0);
        static char block[4096];
        while (write(fd, block, sizeof(block)) > 0)
                ;
        CHECK(errno == ENOSPC);

        /* notes fail to reach the journal but stay in memory; the save fails cleanly */
        r = 0;
        for (unsigned i = 5; i < 400 && r == 0; i++)
                r = state_note_finding(st, make_finding(&b, i, 1, 1), &err);
        CHECK(r == -ENOSPC);
        CHECK(err && strstr(err, "prod.state.log") && strstr(err, "No space left"));
        free(err);
        err = NULL;
        while (write(fd, block, 1) > 0) /* the failed append gave its block back */
                ;
        CHECK(state_save(st, &err) == -ENOSPC);
        CHECK(err && strstr(err, "cannot save") && strstr(err, "No space left on device"));
        now = read_file(path, &now_len);
        CHECK(now && now_len == old_len && memcmp(old, now, old_len) == 0);
        CHECK(access(path_of(fx, "prod.state.tmp"), F_OK) < 0);

        /* space comes back: the retry saves everything */
        close(fd);
        CHECK(unlink(filler) == 0);
        CHECK(state_save(st, NULL) == 1);
        state_close(st);
        CHECK(state_open(fx->dir, "prod", &st, NULL) == 0);
        CHECK(state_open_count(st) >= 6);
        state_close(st);
        umount(fx->dir);
        return 0;
}

static void test_enospc(void **state) {
        int r = run_in_namespace(*state, enospc_body);
        if (r == 77)
                skip();
        assert_int_equal(r, 0);
}

static int readonly_body(struct fixture *fx) {
        struct env_state *st = NULL;
        struct fbuf b;
        char *err = NULL, *msg = NULL, *path, *old, *now;
        size_t old_len, now_len;

        CHECK(state_open(fx->dir, "prod", &st, NULL) == 0);
        for (unsigned i = 0; i < 5; i++)
                CHECK(state_note_finding(st, make_finding(&b, i, 1, 1), NULL) == 0);
        CHECK(state_save(st, NULL) == 1);
        CHECK(state_note_finding(st, make_finding(&b, 5, 1, 1), NULL) == 0); /* in the journal */
        state_close(st);
        path = path_of(fx, "prod.state");
        old = read_file(path, &old_len);

        CHECK(mount(fx->dir, fx->dir, NULL, MS_BIND, NULL) == 0);
        CHECK(mount(NULL, fx->dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) == 0);

        /* opening works and reads the journal */
        CHECK(state_open(fx->dir, "prod", &st, &msg) == 0);
        CHECK(msg == NULL);
        CHECK(state_open_count(st) == 6);
        CHECK(state_note_finding(st, make_finding(&b, 6, 1, 1), &err) == -EROFS);
        CHECK(err && strstr(err, "Read-only file system"));
        free(err);
        err = NULL;
        CHECK(state_open_count(st) == 7);
        CHECK(state_save(st, &err) == -EROFS);
        CHECK(err && strstr(err, "cannot save") && strstr(err, "Read-only file system"));
        free(err);
        state_close(st);
        now = read_file(path, &now_len);
        CHECK(now && now_len == old_len && memcmp(old, now, old_len) == 0);

        /* a corrupt file on a read-only directory: not trusted, not fatal */
        CHECK(umount(fx->dir) == 0);
        write_file(path, "garbage");
        CHECK(mount(fx->dir, fx->dir, NULL, MS_BIND, NULL) == 0);
        CHECK(mount(NULL, fx->dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) == 0);
        CHECK(state_open(fx->dir, "prod", &st, &msg) == 0);
        CHECK(msg && strstr(msg, "could not be moved aside"));
        free(msg);
        state_close(st);
        umount(fx->dir);
        return 0;
}

static void test_readonly(void **state) {
        int r = run_in_namespace(*state, readonly_body);
        if (r == 77)
                skip();
        assert_int_equal(r, 0);
}

/* A backlog: 20,000 findings noted one by one, one save, a reopen. */
static void test_backlog(void **state) {
        struct fixture *fx = *state;
        struct env_state *st = open_ok(fx, "prod");
        struct fbuf b;
        unsigned n = 20000;

        for (unsigned i = 0; i < n; i++)
                assert_int_equal(state_note_finding(st, make_finding(&b, i, 1, 1), NULL), 0);
        state_close(st); /* replay from the journal */
        st = open_ok(fx, "prod");
        assert_int_equal(state_open_count(st), n);
        assert_int_equal(state_save(st, NULL), 1);
        state_close(st);
        st = open_ok(fx, "prod");
        assert_int_equal(state_open_count(st), n);
        assert_finding_equal(state_open_find(st, make_finding(&b, 12345, 1, 1)->alert_id), &b.f);
        state_close(st);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_missing_is_fresh, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_classify, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune_and_walk, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_foreign_journal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
                cmocka_unit_test_setup_teardown(test_journal_survives_kill, setup, teardown),
                cmocka_unit_test_setup_teardown(test_torn_last_line, setup, teardown),
                cmocka_unit_test_setup_teardown(test_torn_by_crash_point, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_middle_line, setup, teardown),
                cmocka_unit_test_setup_teardown(test_save_empties_journal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash_points, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash_point_count, setup, teardown),
                cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
                cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
                cmocka_unit_test_setup_teardown(test_backlog, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
