/* Unit tests for detect.c: which rows are alerts, of which kind, in any
 * language; mailbox-sourced alerts; batches; stable finding ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "detect.h"
#include "engine-rows.h"
#include "rows.h"

enum expect { NOT_ALERT, EMAIL, ACT };

static const struct {
        const char *what;
        int level;
        const char *regarding_type;     /* NULL: annotation absent */
        bool regarding_cached;          /* the regarding id is a cached mailbox */
        const char *text, *errordetails;
        enum expect expect;
} tracelog_cases[] = {
        { "the seed text", 2, "mailbox", false, SEED_TEXT, NULL, EMAIL },
        { "level 3 (error)", 3, "mailbox", false, SEED_TEXT, NULL, EMAIL },
        { "ACT text", 2, "mailbox", false, ACT_TEXT, NULL, ACT },
        { "code only in errordetails, hex", 2, "mailbox", false, "An unknown error occurred.",
          "HRESULT 0x80040224 at Microsoft.Crm.Asynchronous...", EMAIL },
        { "code only in errordetails, upper-case hex", 2, "mailbox", false, NULL, "Error 0X80040224", EMAIL },
        { "name without a number, any case", 2, "mailbox", false,
          "Exchange server returned unknownincomingemailintegrationerror exception.", NULL, EMAIL },
        { "number glued to the name", 2, "mailbox", false, "UnknownIncomingEmailIntegrationError-2147220956",
          NULL, EMAIL },
        { "German", 2, "mailbox", false,
          "Beim Empfangen von E-Mails über das Postfach \"Support\" ist ein unbekannter Fehler aufgetreten. "
          "E-Mail-Serverfehlercode: Exchange-Server hat die Ausnahme UnknownIncomingEmailIntegrationError "
          "-2147220956 zurückgegeben.", NULL, EMAIL },
        { "Japanese", 2, "mailbox", false,
          "メールボックス \"Support\" で電子メールを受信中に不明なエラーが発生しました。"
          "電子メール サーバー エラー コード: Exchange サーバーが UnknownIncomingEmailIntegrationError "
          "-2147220956 例外を返しました。", NULL, EMAIL },
        { "French ACT text", 2, "mailbox", false,
          "Une erreur inconnue s'est produite lors de la synchronisation des rendez-vous, contacts et tâches "
          "de la boîte aux lettres « Support ». Code d'erreur : -2147220956.", NULL, ACT },
        { "French email text, mailbox named Contacts", 2, "mailbox", false,
          "Une erreur inconnue s'est produite lors de la réception du courrier via la boîte aux lettres "
          "« Contacts et tâches ». Code d'erreur du serveur : UnknownIncomingEmailIntegrationError -2147220956.",
          NULL, EMAIL },
        { "English email text, mailbox named Tasks", 2, "mailbox", false,
          "An unknown error occurred while receiving email through the mailbox \"Tasks\". "
          "Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 exception.", NULL, EMAIL },
        { "quoted names in curly quotes", 2, "mailbox", false,
          "Fehler im Postfach „Appointments“: UnknownIncomingEmailIntegrationError -2147220956", NULL, EMAIL },
        { "contact as a verb", 2, "mailbox", false,
          "Synchronization failed. Contact your system administrator. -2147220956", NULL, EMAIL },
        { "ACT and receiving email both named", 2, "mailbox", false,
          "An error occurred while receiving email for appointments: -2147220956", NULL, EMAIL },
        { "e-mail spelling", 2, "mailbox", false,
          "Error while receiving e-mail; tasks pending. -2147220956", NULL, EMAIL },
        { "single task", 2, "mailbox", false, "Could not create the task \"Call back\": -2147220956", NULL, ACT },
        { "annotation absent, regarding a cached mailbox", 2, NULL, true, SEED_TEXT, NULL, EMAIL },
        { "annotation absent, regarding unknown", 2, NULL, false, SEED_TEXT, NULL, NOT_ALERT },
        { "annotation says mailbox in capitals", 2, "Mailbox", false, SEED_TEXT, NULL, EMAIL },
        { "regarding an email server profile", 2, "emailserverprofile", true, SEED_TEXT, NULL, NOT_ALERT },
        { "regarding a queue", 2, "queue", false, SEED_TEXT, NULL, NOT_ALERT },
        { "informational", 1, "mailbox", false, SEED_TEXT, NULL, NOT_ALERT },
        { "level unknown", 0, "mailbox", false, SEED_TEXT, NULL, NOT_ALERT },
        { "licence code", 2, "mailbox", false,
          "An unknown error occurred while receiving email through the mailbox \"Support\". Email Server "
          "Error Code: Exchange server returned UnknownIncomingEmailIntegrationError -2147167669 exception.",
          NULL, NOT_ALERT },
        { "IsvAborted code", 2, "mailbox", false, "UnknownIncomingEmailIntegrationError -2147220891", NULL,
          NOT_ALERT },
        { "other hex code", 2, "mailbox", false, "UnknownIncomingEmailIntegrationError 0x80040265", NULL,
          NOT_ALERT },
        { "other error entirely", 2, "mailbox", false,
          "Email cannot be sent because the email server profile is disabled. -2147204746", NULL, NOT_ALERT },
        { "longer number", 2, "mailbox", false, "Error -21472209561 happened", NULL, NOT_ALERT },
        { "number inside a bigger one", 2, "mailbox", false, "ref 1-2147220956", NULL, NOT_ALERT },
        { "hex inside a longer hex", 2, "mailbox", false, "0x80040224ff", NULL, NOT_ALERT },
        { "no text at all", 2, "mailbox", false, NULL, NULL, NOT_ALERT },
};

static void test_tracelog_cases(void **state) {
        (void) state;
        _cleanup_(cache_freep) struct cache *cc = NULL;
        struct mailbox_row mb = mailbox_of(1, "Support", "support@contoso.com", T0 - 3600);

        assert_int_equal(cache_new(&cc), 0);
        assert_int_equal(cache_replace_mailboxes(cc, &mb, 1), 0);
        mailbox_row_done(&mb);

        for (size_t i = 0; i < sizeof(tracelog_cases) / sizeof(tracelog_cases[0]); i++) {
                struct tracelog_row row = {
                        .id = strdup(guid(K_TRACELOG, (unsigned) i)),
                        .regarding_id = strdup(guid(K_MAILBOX, tracelog_cases[i].regarding_cached ? 1 : 2)),
                        .regarding_type = dup_or_null(tracelog_cases[i].regarding_type),
                        .level = tracelog_cases[i].level,
                        .text = dup_or_null(tracelog_cases[i].text),
                        .errordetails = dup_or_null(tracelog_cases[i].errordetails),
                        .created_on = T0 - 3600,
                        .modified_on = T0,
                };
                struct alert a = {};
                int r = detect_tracelog(&row, cc, &a);

                if (r != (tracelog_cases[i].expect != NOT_ALERT))
                        fail_msg("case \"%s\": detect_tracelog() = %d", tracelog_cases[i].what, r);
                if (r == 1) {
                        enum alert_kind want = tracelog_cases[i].expect == ACT ? ALERT_KIND_ACT : ALERT_KIND_EMAIL;
                        if (a.kind != want)
                                fail_msg("case \"%s\": kind %d, want %d", tracelog_cases[i].what, a.kind, want);
                        assert_int_equal(a.source, ALERT_SOURCE_TRACELOG);
                        assert_string_equal(a.id, row.id);
                        assert_string_equal(a.mailbox_id, row.regarding_id);
                        assert_int_equal(a.code, S3_ERROR_CODE);
                        assert_int_equal(a.level, row.level);
                        assert_int_equal(a.at, T0);
                        assert_int_equal(a.created_on, T0 - 3600);
                        assert_string_equal(a.text, row.text ? row.text : row.errordetails);
                        alert_done(&a);
                }
                tracelog_row_done(&row);
        }
}

static void test_mailbox_alerts(void **state) {
        (void) state;
        struct mailbox_row m = mailbox_of(1, "Support", "support@contoso.com", T0);
        struct alert a;

        /* No error: no alert. */
        assert_int_equal(detect_mailbox(&m, &a), 0);

        /* The code in lastsyncerrorcode, time from lastsyncerroroccurredon. */
        m.has_error_code = true;
        m.last_error_code = S3_ERROR_CODE;
        m.last_error_on = T0 - 60;
        assert_int_equal(detect_mailbox(&m, &a), 1);
        assert_int_equal(a.source, ALERT_SOURCE_MAILBOX);
        assert_string_equal(a.id, m.id);
        assert_string_equal(a.mailbox_id, m.id);
        assert_int_equal(a.at, T0 - 60);
        assert_int_equal(a.kind, ALERT_KIND_EMAIL);
        assert_non_null(strstr(a.text, "-2147220956"));
        assert_non_null(strstr(a.text, "Support"));
        alert_done(&a);

        /* Another code: no alert. */
        m.last_error_code = -2147167669;
        assert_int_equal(detect_mailbox(&m, &a), 0);

        /* The code only in the text; no error time: modifiedon. */
        m.last_error = strdup("Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 exception.");
        m.last_error_on = 0;
        assert_int_equal(detect_mailbox(&m, &a), 1);
        assert_int_equal(a.at, T0);
        assert_string_equal(a.text, m.last_error);
        alert_done(&a);
        mailbox_row_done(&m);
}

static bool known_mailbox_3(const char *mailbox_id, void *userdata) {
        (*(int *) userdata)++;
        return strcmp(mailbox_id, guid(K_MAILBOX, 3)) == 0;
}

static struct tracelog_row tracelog_of(unsigned n, unsigned mailbox, time_t modified_on, const char *text) {
        return (struct tracelog_row) {
                .id = strdup(guid(K_TRACELOG, n)),
                .regarding_id = strdup(guid(K_MAILBOX, mailbox)),
                .regarding_type = strdup("mailbox"),
                .level = 2,
                .text = strdup(text),
                .created_on = modified_on - 60,
                .modified_on = modified_on,
        };
}

static void test_batch(void **state) {
        (void) state;
        struct tracelog_row tl[] = {
                tracelog_of(2, 1, T0 - 100, SEED_TEXT),
                tracelog_of(1, 1, T0 - 300, SEED_TEXT),
                tracelog_of(2, 1, T0 - 50, SEED_TEXT),          /* the same row again, updated */
                tracelog_of(2, 1, T0 - 200, SEED_TEXT),         /* and an older copy of it */
                tracelog_of(3, 2, T0 - 100, "Something else entirely"),
                tracelog_of(4, 6, T0 - 400, ACT_TEXT),
                tracelog_of(5, 5, T0 - 90000, SEED_TEXT),       /* older than since */
        };
        struct mailbox_row mb[] = {
                mailbox_of(1, "Support", NULL, T0),     /* has a tracelog alert in the batch */
                mailbox_of(2, "Sales", NULL, T0),       /* none: mailbox alert */
                mailbox_of(3, "Billing", NULL, T0),     /* the caller knows one */
                mailbox_of(4, "Quiet", NULL, T0),       /* no error */
                mailbox_of(5, "Old", NULL, T0),         /* only an alert older than since: its own alert */
        };
        struct alert *alerts = NULL;
        size_t n = 0;
        int calls = 0;
        struct detect_params p = { .since = T0 - 86400, .has_tracelog_alert = known_mailbox_3, .userdata = &calls };

        for (size_t i = 0; i < 5; i++) {
                if (i == 3)
                        continue;
                mb[i].has_error_code = true;
                mb[i].last_error_code = S3_ERROR_CODE;
                mb[i].last_error_on = T0 - 10;
        }
        mb[4].last_error_on = T0 - 5;
        assert_int_equal(detect_alerts(tl, 7, mb, 5, &p, &alerts, &n), 0);
        assert_int_equal(n, 5);
        /* Sorted by time: tl4 (-400), tl1 (-300), tl2 (-50, latest copy), mailbox 2 (-10), 5 (-5). */
        assert_string_equal(alerts[0].id, guid(K_TRACELOG, 4));
        assert_int_equal(alerts[0].kind, ALERT_KIND_ACT);
        assert_string_equal(alerts[1].id, guid(K_TRACELOG, 1));
        assert_string_equal(alerts[2].id, guid(K_TRACELOG, 2));
        assert_int_equal(alerts[2].at, T0 - 50);
        assert_int_equal(alerts[3].source, ALERT_SOURCE_MAILBOX);
        assert_string_equal(alerts[3].id, guid(K_MAILBOX, 2));
        assert_int_equal(alerts[4].source, ALERT_SOURCE_MAILBOX);
        assert_string_equal(alerts[4].id, guid(K_MAILBOX, 5));
        assert_int_equal(calls, 4); /* asked for mailboxes 2 to 5, not for 1 */
        alerts_free(alerts, n);

        /* Nothing at all. */
        assert_int_equal(detect_alerts(NULL, 0, NULL, 0, NULL, &alerts, &n), 0);
        assert_int_equal(n, 0);
        assert_null(alerts);
        assert_int_equal(detect_alerts(tl + 4, 1, mb + 3, 1, NULL, &alerts, &n), 0);
        assert_int_equal(n, 0);
        assert_null(alerts);

        for (size_t i = 0; i < 7; i++)
                tracelog_row_done(&tl[i]);
        for (size_t i = 0; i < 5; i++)
                mailbox_row_done(&mb[i]);
}

static void test_finding_id(void **state) {
        (void) state;
        struct alert a = alert_of(7, ALERT_KIND_EMAIL, 1, T0), b;
        char *id1, *id2, *id3;

        assert_int_equal(finding_id_make("prod", &a, 1, &id1), 0);
        assert_int_equal(finding_id_make("prod", &a, 0, &id2), 0);
        assert_string_equal(id1, "prod/tracelog/0000000d-0000-4000-8000-000000000007");
        assert_string_equal(id1, id2);
        free(id2);
        /* The same alert polled again (updated row): the same id. */
        assert_int_equal(alert_copy(&a, &b), 0);
        b.at += 600;
        assert_int_equal(finding_id_make("prod", &b, 1, &id2), 0);
        assert_string_equal(id1, id2);
        free(id2);
        assert_int_equal(finding_id_make("prod", &a, 2, &id3), 0);
        assert_string_equal(id3, "prod/tracelog/0000000d-0000-4000-8000-000000000007#2");
        free(id3);
        b.source = ALERT_SOURCE_MAILBOX;
        assert_int_equal(finding_id_make("test.env-1", &b, 3, &id3), 0);
        assert_string_equal(id3, "test.env-1/mailbox/0000000d-0000-4000-8000-000000000007#3");
        free(id3);
        free(id1);
        alert_done(&a);
        alert_done(&b);
}

static void test_carries_code(void **state) {
        (void) state;
        assert_false(detect_text_carries_code(NULL));
        assert_false(detect_text_carries_code(""));
        assert_true(detect_text_carries_code("-2147220956"));
        assert_true(detect_text_carries_code("(-2147220956)"));
        assert_true(detect_text_carries_code("code=0x80040224."));
        assert_false(detect_text_carries_code("2147220956"));
        assert_false(detect_text_carries_code("x0x80040224"));
        /* The name next to our code and another one: ours wins. */
        assert_true(detect_text_carries_code("UnknownIncomingEmailIntegrationError -2147220956 (was -2147167669)"));
        assert_false(detect_text_carries_code("UnknownIncomingEmailIntegrationError -2147218677"));
        assert_true(detect_text_carries_code("UnknownIncomingEmailIntegrationError on 2026-11-25 10:00"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tracelog_cases),
                cmocka_unit_test(test_mailbox_alerts),
                cmocka_unit_test(test_batch),
                cmocka_unit_test(test_finding_id),
                cmocka_unit_test(test_carries_code),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
