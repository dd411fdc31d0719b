/* finding.h: how s3mond's records read: the JSON form of docs/design.md §2 (one
 * object per record, key order fixed, valid UTF-8 whatever the input) and
 * the one readable line used for journald's MESSAGE, syslog and stderr.
 * Pure functions of the record: no clock, no I/O. */
#pragma once

#include <jansson.h>

#include "model.h"

/* Flags for json_dumps() of these objects: one compact line, keys in the
 * order of docs/design.md §2, UTF-8 kept as is. */
#define FINDING_JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER)

/* {"type":"finding","id":...,"environment":...,"detected_at":...,
 *  "alert":{...},"mailbox":{...},"verdict":...,"culprits":[...],
 *  "occurrences":N,"notes":[...],"remedy":...}. Strings are repaired to
 * valid UTF-8 (U+FFFD), never cut; NULL strings and zero times are null.
 * Returns a new reference, NULL on ENOMEM. */
json_t *finding_to_json(const struct finding *f);

/* {"type":"resolved","id":<finding id>,"environment":...,"mailbox":{...},
 *  "alert":{"id":...},"occurrences":N,"last_alert_at":...,"resolved_at":...} */
json_t *resolved_event_to_json(const struct resolved_event *e);

/* {"type":"error","environment":...,"state":"failing"|"recovered",
 *  "query":...,"message":...,"since":...,"at":...,"failures":N} */
json_t *error_event_to_json(const struct error_event *e);

/* json_dumps(j, FINDING_JSON_FLAGS): the one-line JSON text, no newline. */
char *finding_json_dumps(const json_t *j);

/* The same text as finding_json_dumps(finding_to_json(f)), byte for byte,
 * written directly without the jansson tree (several times faster: findings
 * with many culprits are large). The outputs use this one. NULL on ENOMEM. */
char *finding_json_text(const struct finding *f);

/* One line, valid UTF-8, no control character, bounded length (each
 * untrusted value is quoted, escaped and cut at FINDING_LINE_VALUE_MAX
 * bytes; at most FINDING_LINE_CULPRITS_MAX culprits are named):
 *   prod: mailbox "Support" <support@contoso.com>: UnknownIncomingEmailIntegrationError
 *   -2147220956 confirmed: workflow "Set email category" (failed session 09:59:57Z),
 *   plug-in step "Contoso.Plugins.EmailCreate: Create of email"
 * Outside the quotes it never contains '=', so key=value pairs appended
 * after it (syslog) stay unambiguous. NULL on ENOMEM. */
#define FINDING_LINE_VALUE_MAX 256
#define FINDING_LINE_CULPRITS_MAX 8
char *finding_format_line(const struct finding *f);

/*   prod: mailbox "Support" <support@contoso.com>: resolved, receiving mail
 *   again (3 occurrences, last alert 2026-11-25T09:59:58Z) */
char *resolved_event_format_line(const struct resolved_event *e);

/*   prod: polling failing since 2026-11-25T10:00:00Z (tracelogs, 3 failed
 *   attempts): "HTTP 503 Service Unavailable"
 *   prod: polling recovered at 2026-11-25T10:20:00Z after 7 failed attempts
 *   since 2026-11-25T10:00:00Z (tracelogs): "HTTP 503 Service Unavailable" */
char *error_event_format_line(const struct error_event *e);

const char *error_state_to_string(enum error_state s);
/* "UnknownIncomingEmailIntegrationError" for S3_ERROR_CODE, else NULL. */
const char *error_code_name(int64_t code);
