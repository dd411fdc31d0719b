/* detect.h: which polled rows are UnknownIncomingEmailIntegrationError
 * -2147220956 mailbox alerts (docs/design.md §1, §2), and the stable id of the
 * finding each alert opens. Pure: rows in, alerts out.
 *
 * A tracelogs row is an alert when
 *  - it regards a mailbox: its lookuplogicalname annotation is "mailbox", or,
 *    when the annotation is absent, its regarding id is a cached mailbox;
 *  - its level is 2 (warning) or 3 (error);
 *  - its text or errordetails carry the code: "-2147220956" or "0x80040224"
 *    anywhere, any case, whatever language surrounds it; or the name
 *    "UnknownIncomingEmailIntegrationError" with no other error code next to it
 *    (the same name is logged with other codes, e.g. -2147167669 for a
 *    mailbox owner without a licence, -2147218677 for a bad address: those
 *    are not caused by synchronous code and are not s3mond's alerts).
 * A mailboxes row is an alert when its lastsyncerrorcode is -2147220956 or its
 * lastsyncerror carries the code as above, and no tracelog alert exists for
 * that mailbox (none in the same batch since detect_params.since, and none the
 * caller knows of through detect_params.has_tracelog_alert). Its id is the
 * mailbox id and its time lastsyncerroroccurredon, else modifiedon.
 *
 * An alert's kind is ACT when its text (quoted names, such as the mailbox's,
 * left out) names appointments, contacts or tasks and does not say it is
 * about receiving email; it is email otherwise, including every text in a
 * language other than English that s3mond cannot read. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "cache.h"
#include "model.h"

struct detect_params {
        /* Mailbox ids for tracelog rows without the regarding annotation; may be NULL. */
        const struct cache *cache;
        /* Alerts whose time (at) is older are ignored; 0: no limit. */
        time_t since;
        /* Optional: true when the caller already holds a tracelog alert (an
         * open finding) for the mailbox, so its mailbox row is no new alert. */
        bool (*has_tracelog_alert)(const char *mailbox_id, void *userdata);
        void *userdata;
};

/* All alerts of one poll: each tracelog id once (the latest modifiedon), then
 * mailbox alerts, sorted by time then id. *ret is a new array (NULL when
 * there is none) to free with alerts_free(). 0 or -ENOMEM. */
int detect_alerts(const struct tracelog_row *tracelogs, size_t n_tracelogs,
                  const struct mailbox_row *mailboxes, size_t n_mailboxes,
                  const struct detect_params *p, struct alert **ret, size_t *ret_n);

/* One row: 1 and *ret filled when it is an alert, 0 when it is not (*ret
 * untouched), -ENOMEM. The cache may be NULL. */
int detect_tracelog(const struct tracelog_row *row, const struct cache *cc, struct alert *ret);
int detect_mailbox(const struct mailbox_row *row, struct alert *ret);

/* Does this text carry the code (rules above)? NULL carries nothing. */
bool detect_text_carries_code(const char *text);
/* ALERT_KIND_ACT or ALERT_KIND_EMAIL, by the rule above. */
enum alert_kind detect_alert_kind(const char *text);

/* Deep copy; 0 or -ENOMEM (then *ret is zeroed). */
int alert_copy(const struct alert *a, struct alert *ret);
void alerts_free(struct alert *alerts, size_t n);

/* The finding id of an alert: "<environment>/<source>/<alert id>", e.g.
 * "prod/tracelog/0f1e...", or "prod/mailbox/<mailboxid>" for mailbox alerts.
 * A recurrence of the same alert after a resolved event opens generation 2,
 * 3...: "prod/tracelog/0f1e...#2". Generation 0 and 1 give the plain form.
 * The same alert and generation always give the same id, across restarts. */
int finding_id_make(const char *environment, const struct alert *a, unsigned generation, char **ret);
