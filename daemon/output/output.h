/* output.h: where findings, resolved and error events go: journald, syslog,
 * stderr or JSON lines, behind one interface. One record per call; the
 * caller (monitor, --once) decides what to do when an output fails. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "macro.h"
#include "model.h"

struct output;

enum output_kind {
        OUTPUT_AUTO,    /* journal under systemd, stderr otherwise */
        OUTPUT_JOURNAL,
        OUTPUT_SYSLOG,
        OUTPUT_STDERR,
        OUTPUT_JSON,
};

const char *output_kind_to_string(enum output_kind k);
int output_kind_from_string(const char *s);     /* "auto", "journal", ...; -EINVAL if unknown */

/* Whether stderr is the stream systemd connected to the journal: $JOURNAL_STREAM
 * names its device and inode (a redirection since then no longer matches). */
bool output_stderr_is_journal(void);

/* OUTPUT_AUTO becomes OUTPUT_JOURNAL when s3mond runs as a systemd service
 * ($JOURNAL_STREAM names our stderr, or $INVOCATION_ID is set and stderr is
 * not a terminal), OUTPUT_STDERR otherwise. Other kinds are returned as is. */
enum output_kind output_resolve_kind(enum output_kind kind);

/* Open an output of the given kind (OUTPUT_AUTO is resolved first).
 * syslog_facility (LOG_DAEMON, LOG_LOCAL0...) is used by OUTPUT_SYSLOG.
 * json_stream is where OUTPUT_JSON writes (NULL: stdout) and, for tests,
 * where OUTPUT_STDERR writes (NULL: stderr); it is borrowed, not closed.
 * Returns 0 or -errno: -EINVAL for an unknown kind, -ENOENT for
 * OUTPUT_JOURNAL when journald's socket does not exist. */
int output_new(enum output_kind kind, int syslog_facility, FILE *json_stream, struct output **ret);
void output_free(struct output *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct output *, output_free);

/* The resolved kind (never OUTPUT_AUTO). */
enum output_kind output_get_kind(const struct output *o);

/* Each sends one record: journald entry, syslog line, stderr line or JSON
 * line (flushed). Returns 0 or -errno (e.g. -ENOENT when journald's socket
 * is missing, -EPIPE from a closed stream); syslog(3) reports nothing, so
 * the syslog output returns 0 unless out of memory. */
int output_emit_finding(struct output *o, const struct finding *f);
int output_emit_resolved(struct output *o, const struct resolved_event *e);
int output_emit_error(struct output *o, const struct error_event *e);
