/* state-internal.h: what the three parts of an environment's state share:
 * state.c (the API and the rules of the memory), state_codec.c (its JSON:
 * snapshot and journal lines) and state_files.c (the snapshot and journal
 * files, locking, crash points). Not for the rest of the daemon: use state.h. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "idmap.h"
#include "macro.h"
#include "state.h"

#define STATE_FORMAT "s3mond-state"
#define STATE_LOG_FORMAT "s3mond-state-log"
#define STATE_VERSION 1

struct seen_entry {
        char *alert_id;
        time_t at;
};

struct env_state {
        char *env;
        char *dir;
        char *path;             /* DIR/ENV.state */
        char *log_path;         /* DIR/ENV.state.log */
        char *name;             /* ENV.state, relative to dir_fd */
        char *log_name;
        char *tmp_name;
        int dir_fd;
        int log_fd;             /* -1 when not open */
        bool log_writable;      /* log_fd is O_RDWR|O_APPEND and locked */
        off_t log_size;         /* bytes of whole lines in the journal */
        uint64_t log_serial;    /* serial in the journal's header (when log_size > 0) */
        uint64_t serial;        /* serial of the snapshot the memory starts from */
        bool dirty;             /* memory differs from the snapshot */
        unsigned crash_passes;

        time_t watermarks[_STATE_WATERMARK_MAX];
        struct idmap seen;      /* alert id -> struct seen_entry */
        struct idmap open;      /* alert id -> struct state_open_finding */
        struct idmap open_by_finding; /* finding id -> the same, not owning */
        struct idmap closed;    /* alert id -> struct state_closed_finding */
};

/* ---- state.c: changes in memory, shared by the notes, the snapshot and the
 * replay. Each returns 0 (apply_seen: 1 when it moved), -EINVAL for an
 * incomplete record, -EEXIST (finding id of another alert), -ENOENT
 * (resolved: no such open finding) or -ENOMEM, and then nothing changed. */
int state_apply_seen(struct env_state *st, const char *alert_id, time_t at);
int state_apply_finding(struct env_state *st, const struct state_open_finding *f);
int state_apply_closed(struct env_state *st, const struct state_closed_finding *c);
int state_apply_resolved(struct env_state *st, const char *finding_id, time_t at);
/* Forget everything in memory (a snapshot that turned out unusable). */
void state_clear(struct env_state *st);

/* *ret_error (if not NULL) = the formatted words; returns r. */
int state_errorf(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
/* Append a "; "-separated sentence to *w. */
void state_warnf(char **w, const char *fmt, ...) _printf_(2, 3);

/* ---- state_codec.c: JSON of the memory ------------------------------------- */

/* The snapshot file's text (one line), with this serial. NULL on ENOMEM. */
char *state_codec_snapshot(const struct env_state *st, uint64_t serial, size_t *ret_len);
/* Load a parsed snapshot into the (empty) memory: 0, or -EBADMSG,
 * -EPROTONOSUPPORT (newer version), -EXDEV (another environment), -ENOMEM
 * with *reason saying what is wrong. */
int state_codec_load_snapshot(struct env_state *st, json_t *root, char **reason);

/* The journal's first line, without its newline. NULL on ENOMEM. */
char *state_codec_log_header(const struct env_state *st);
/* Check a journal's first line; *ret_serial is the snapshot it follows. */
int state_codec_check_log_header(const struct env_state *st, json_t *header, uint64_t *ret_serial, char **reason);
/* Journal lines (new references; NULL on ENOMEM). */
json_t *state_codec_finding_line(const struct state_open_finding *f);
json_t *state_codec_resolved_line(const char *finding_id, time_t at);
json_t *state_codec_seen_line(const char *alert_id, time_t at);
/* Apply a journal line to the memory: as state_apply_*(), or -EBADMSG. */
int state_codec_replay_line(struct env_state *st, json_t *line);

/* ---- state_files.c: the files ---------------------------------------------- */

/* True when S3MOND_TEST_CRASH_AT names POINT and this pass is the one to die at
 * (state.h's test hook; state_crash_point() raises SIGKILL then). */
bool state_crash_armed(struct env_state *st, const char *point);

/* Open (creating it, 0700) the state directory; the fd or -errno. */
int state_directory_open(const char *dir);
/* Lock and open the journal: for appending (creating it) when the directory
 * allows, else for reading only. -EBUSY when another process holds it. */
int state_journal_open(struct env_state *st);
void state_journal_close(struct env_state *st);
/* Load ENV.state into memory: 1, 0 when there is none, or <0 with *reason
 * when it exists but is unusable (the memory is then empty). */
int state_snapshot_load(struct env_state *st, char **reason);
/* Rename NAME (in the state directory) to NAME.corrupt-<unix time>[.N],
 * replacing nothing; *ret_new is the new path. */
int state_move_aside(struct env_state *st, const char *name, char **ret_new);
/* Replay the journal over the memory (over the snapshot when have_snapshot);
 * what it could not read or use is said in *warning. */
void state_journal_replay(struct env_state *st, bool have_snapshot, char **warning);
/* Append one line (takes ownership of line). The memory already holds it. */
int state_journal_append(struct env_state *st, json_t *line, char **ret_error);
/* Write the snapshot text atomically and fsync'd, then start an empty journal
 * for it (the serial moves on). 0, or -errno with *ret_error. */
int state_snapshot_write(struct env_state *st, const char *text, size_t len, char **ret_error);
