/* state_files.c: owns the state files: atomic snapshot, locked journal (append, replay), bad files
 * moved aside, crash points. Must not know JSON field names, Dataverse, outputs or the cycle. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "state-internal.h"

/* ---- test hooks ----------------------------------------------------------- */

/* True when S3MOND_TEST_CRASH_AT names POINT and this pass is the one to die at. */
bool state_crash_armed(struct env_state *st, const char *point) {
        const char *e = getenv("S3MOND_TEST_CRASH_AT");
        size_t n = strlen(point);
        unsigned long want = 1;

        if (!e || strncmp(e, point, n) != 0)
                return false;
        if (e[n] == ':')
                want = strtoul(e + n + 1, NULL, 10);
        else if (e[n])
                return false;
        return ++st->crash_passes >= want;
}

void state_crash_point(struct env_state *st, const char *point) {
        if (state_crash_armed(st, point))
                raise(SIGKILL);
}


/* ---- the directory and the snapshot ------------------------------------ */

int state_directory_open(const char *dir) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 && errno == ENOENT) {
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return -errno;
                fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        return fd < 0 ? -errno : fd;
}
int state_snapshot_load(struct env_state *st, char **reason) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        json_error_t jerr;
        json_t *root;
        struct stat sb;
        size_t len;
        int r;

        fd = openat(st->dir_fd, st->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                r = -errno;
                return state_errorf(reason, r, "cannot read it: %s", strerror(-r));
        }
        if (fstat(fd, &sb) < 0) {
                r = -errno;
                return state_errorf(reason, r, "cannot read it: %s", strerror(-r));
        }
        if (!S_ISREG(sb.st_mode))
                return state_errorf(reason, -EBADMSG, "not a regular file");
        if (sb.st_size == 0)
                return state_errorf(reason, -EBADMSG, "empty");
        /* json_loadfd() reads a byte per system call: read it whole instead. */
        r = read_all(fd, &text, &len);
        if (r < 0)
                return state_errorf(reason, r, "cannot read it: %s", strerror(-r));
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return state_errorf(reason, -EBADMSG, "not valid JSON (line %d: %s)", jerr.line, jerr.text);
        r = state_codec_load_snapshot(st, root, reason);
        json_decref(root);
        if (r < 0)
                state_clear(st);
        st->dirty = false;
        return r < 0 ? r : 1;
}
int state_move_aside(struct env_state *st, const char *name, char **ret_new) {
        long long t = (long long) time(NULL);

        for (unsigned i = 0; i < 100; i++) {
                _cleanup_free_ char *n = NULL;
                if ((i == 0 ? asprintf(&n, "%s.corrupt-%lld", name, t)
                            : asprintf(&n, "%s.corrupt-%lld.%u", name, t, i)) < 0)
                        return -ENOMEM;
                if (renameat2(st->dir_fd, name, st->dir_fd, n, RENAME_NOREPLACE) < 0) {
                        if (errno == EEXIST)
                                continue;
                        if (errno != EINVAL)
                                return -errno;
                        /* no RENAME_NOREPLACE on this file system */
                        if (faccessat(st->dir_fd, n, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                                continue;
                        if (renameat(st->dir_fd, name, st->dir_fd, n) < 0)
                                return -errno;
                }
                if (asprintf(ret_new, "%s/%s", st->dir, n) < 0)
                        *ret_new = NULL;
                return 0;
        }
        return -EEXIST;
}
/* ---- the journal ------------------------------------------------------- */

void state_journal_close(struct env_state *st) {
        if (st->log_fd >= 0)
                close(st->log_fd); /* drops the lock */
        st->log_fd = -1;
        st->log_writable = false;
}
/* Opens the journal for appending (creating it, 0600) and locks it. -EBUSY when
 * another process holds it. INITIAL: at state_open(), before the replay; later, the
 * file is expected to hold exactly the log_size bytes this process wrote or replayed. */
static int log_open_writable(struct env_state *st, bool initial) {
        struct stat sb;
        int fd;

        fd = openat(st->dir_fd, st->log_name, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        (void) fchmod(fd, 0600); /* an existing file keeps the mode it must have */
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                close(fd);
                return r;
        }
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                int r = fstat(fd, &sb) < 0 ? -errno : -EBADF;
                close(fd);
                return r;
        }
        state_journal_close(st);
        st->log_fd = fd;
        st->log_writable = true;
        /* A torn line was left, or the journal changed under us: keep what we know to
         * be whole; the rest is in memory and goes into the next snapshot. */
        if (!initial && sb.st_size != st->log_size) {
                if (sb.st_size < st->log_size)
                        st->log_size = 0;
                if (ftruncate(fd, st->log_size) < 0) {
                        st->log_size = sb.st_size;
                        st->log_serial = UINT64_MAX; /* the next append starts it afresh */
                }
        }
        return 0;
}
/* For a journal we cannot write (read-only directory, not our file): still read it. */
static int log_open_readonly(struct env_state *st) {
        int fd = openat(st->dir_fd, st->log_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        struct stat sb;

        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                close(fd);
                return 0;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
                close(fd);
                return -EBUSY;
        }
        st->log_fd = fd;
        return 0;
}
/* Starts an empty journal for the current snapshot. */
static int log_reset(struct env_state *st) {
        _cleanup_free_ char *h = NULL, *line = NULL;
        int r;

        if (!st->log_writable && (r = log_open_writable(st, false)) < 0)
                return r;
        if (ftruncate(st->log_fd, 0) < 0)
                return -errno;
        st->log_size = 0;
        state_crash_point(st, "state-after-log-truncate");
        h = state_codec_log_header(st);
        if (!h || asprintf(&line, "%s\n", h) < 0)
                return -ENOMEM;
        r = write_all(st->log_fd, line, strlen(line));
        if (r < 0) {
                (void) ftruncate(st->log_fd, 0);
                return r;
        }
        st->log_size = (off_t) strlen(line);
        st->log_serial = st->serial;
        return 0;
}
int state_journal_append(struct env_state *st, json_t *op, char **ret_error) {
        _cleanup_free_ char *text = NULL, *line = NULL, *header = NULL;
        size_t len;
        int r;

        text = op ? json_dumps(op, JSON_COMPACT) : NULL;
        json_decref(op);
        if (!text)
                return state_errorf(ret_error, -ENOMEM, "cannot append to %s: out of memory", st->log_path);
        if (!st->log_writable && (r = log_open_writable(st, false)) < 0)
                return state_errorf(ret_error, r, "cannot open %s: %s", st->log_path, strerror(-r));
        if (st->log_size == 0 || st->log_serial != st->serial) {
                /* The journal is empty or predates the snapshot: start it afresh. */
                if (st->log_size > 0 && ftruncate(st->log_fd, 0) < 0) {
                        r = -errno;
                        return state_errorf(ret_error, r, "cannot empty %s: %s", st->log_path, strerror(-r));
                }
                st->log_size = 0;
                header = state_codec_log_header(st);
                if (!header)
                        return state_errorf(ret_error, -ENOMEM, "cannot append to %s: out of memory", st->log_path);
        }
        if (asprintf(&line, "%s%s%s\n", strempty(header), header ? "\n" : "", text) < 0)
                return state_errorf(ret_error, -ENOMEM, "cannot append to %s: out of memory", st->log_path);
        len = strlen(line);
        if (state_crash_armed(st, "state-log-mid-append")) {
                (void) write_all(st->log_fd, line, len / 2);
                raise(SIGKILL);
        }
        r = write_all(st->log_fd, line, len);
        if (r < 0) {
                /* Cut a partial line off, so the next append starts on a line of its own. */
                (void) ftruncate(st->log_fd, st->log_size);
                return state_errorf(ret_error, r, "cannot append to %s: %s", st->log_path, strerror(-r));
        }
        st->log_size += (off_t) len;
        if (header)
                st->log_serial = st->serial;
        return 0;
}
int state_journal_open(struct env_state *st) {
        int r = log_open_writable(st, true);

        if (r >= 0)
                (void) unlinkat(st->dir_fd, st->tmp_name, 0); /* left by a crash in state_save() */
        else if (r != -EBUSY)
                r = log_open_readonly(st);
        return r;
}

/* The first line: which snapshot the journal follows. A foreign or
 * unreadable one is moved aside (and a fresh journal started). */
static int replay_header(struct env_state *st, const char *line, size_t len, uint64_t *ret_serial, char **warning) {
        _cleanup_free_ char *reason = NULL, *moved = NULL;
        json_t *header = json_loadb(line, len, 0, NULL);
        int r = header ? state_codec_check_log_header(st, header, ret_serial, &reason) : -EBADMSG;
        int k;

        json_decref(header);
        if (r >= 0)
                return 0;
        k = st->log_writable ? state_move_aside(st, st->log_name, &moved) : -EROFS;
        st->log_size = 0;
        if (k >= 0) {
                state_journal_close(st);
                (void) log_open_writable(st, true);
        }
        state_warnf(warning, "journal %s is unusable (%s); %s%s", st->log_path,
                    reason ? reason : "its first line is not a journal header",
                    k >= 0 ? "moved it aside to " : "could not move it aside", k >= 0 ? strempty(moved) : "");
        return r;
}

/* The lines after the header, each applied on its own: a bad one is skipped. */
static void replay_lines(struct env_state *st, char *p, char *end, char **warning) {
        size_t skipped = 0, applied = 0;

        for (char *nl; p < end; p = nl + 1) {
                json_t *o;
                int r;

                nl = memchr(p, '\n', (size_t) (end - p));
                o = json_loadb(p, (size_t) (nl - p), 0, NULL);
                r = o ? state_codec_replay_line(st, o) : -EBADMSG;
                json_decref(o);
                if (r == -EBADMSG || r == -EEXIST || r == -EINVAL)
                        skipped++;
                else if (r == -ENOMEM) {
                        state_warnf(warning, "out of memory replaying %s", st->log_path);
                        break;
                } else
                        applied++; /* -ENOENT: resolved twice, already applied */
        }
        if (applied > 0)
                st->dirty = true;
        if (skipped > 0)
                state_warnf(warning, "%zu unreadable line(s) in %s skipped: those findings may be reported again",
                            skipped, st->log_path);
}

void state_journal_replay(struct env_state *st, bool have_snapshot, char **warning) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, end;
        uint64_t serial = 0;
        char *nl;
        int r;

        if (st->log_fd < 0)
                return;
        r = read_all(st->log_fd, &buf, &size);
        if (r < 0) {
                state_warnf(warning, "cannot read %s (%s): notes since the last save are lost", st->log_path,
                            strerror(-r));
                return;
        }
        nl = memrchr(buf, '\n', size);
        end = nl ? (size_t) (nl - buf) + 1 : 0;
        if (end < size && st->log_writable) /* a torn last line: the note in flight */
                (void) ftruncate(st->log_fd, (off_t) end);
        st->log_size = (off_t) end;
        if (end == 0)
                return;

        nl = memchr(buf, '\n', end);
        if (replay_header(st, buf, (size_t) (nl - buf), &serial, warning) < 0)
                return;
        st->log_serial = serial;
        if (have_snapshot && serial < st->serial)
                return; /* written before the snapshot, which holds all of it */
        replay_lines(st, nl + 1, buf + end, warning);
        if (serial > st->serial)
                st->serial = serial;
}

/* file_replace()'s test hooks, under the names the crash tests use. */
static void save_checkpoint(const char *point, void *userdata) {
        _cleanup_free_ char *name = NULL;

        if (asprintf(&name, "state-%s", point) >= 0)
                state_crash_point(userdata, name);
}

int state_snapshot_write(struct env_state *st, const char *text, size_t len, char **ret_error) {
        const char *step;
        int r;

        r = file_replace(&(struct file_replace) {
                                 .dir_fd = st->dir_fd,
                                 .name = st->name,
                                 .tmp_name = st->tmp_name,
                                 .mode = 0600,
                                 .sync = true,
                                 .checkpoint = save_checkpoint,
                                 .userdata = st,
                         }, text, len, &step);
        if (r < 0)
                return state_errorf(ret_error, r, "cannot save %s: %s %s/%s: %s", st->path, step, st->dir,
                                    st->tmp_name, strerror(-r));

        /* The new snapshot is in place and holds every note: the journal is old news. */
        st->serial++;
        r = fsync(st->dir_fd) < 0 ? -errno : 0;
        state_crash_point(st, "state-after-rename");
        (void) log_reset(st); /* on failure the next append empties it */
        if (r < 0) /* the memory stays dirty: the next save writes it again */
                return state_errorf(ret_error, r, "saved %s but could not sync its directory: %s", st->path,
                                    strerror(-r));
        return 0;
}
