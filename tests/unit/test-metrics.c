/* Unit tests for metrics.c: the file is parsed back by a strict reader of the text
 * exposition format 0.0.4 (HELP and TYPE before every family's samples, families in
 * one group, label escapes, histogram consistency), counters only grow, the mode is
 * 0644 under umask 077, and the file is replaced, never rewritten in place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics.h"

/* ---- a reader for the text format --------------------------------------- */

struct sample {
        char *name;
        char *labels;   /* unescaped: k=v,k=v */
        double value;
        char *family;
        const char *type;
};

struct family {
        char *name;
        char *type;
        bool has_type;
};

struct parsed {
        struct sample s[512];
        size_t n;
        struct family f[64];
        size_t n_f;
};

static void parsed_free(struct parsed *p) {
        for (size_t i = 0; i < p->n; i++) {
                free(p->s[i].name);
                free(p->s[i].labels);
        }
        for (size_t i = 0; i < p->n_f; i++) {
                free(p->f[i].name);
                free(p->f[i].type);
        }
        free(p);
}

static bool metric_name(const char **pp, char **ret) {
        const char *p = *pp, *start = p;
        if (!(isalpha((unsigned char) *p) || *p == '_' || *p == ':'))
                return false;
        while (isalnum((unsigned char) *p) || *p == '_' || *p == ':')
                p++;
        *ret = strndup(start, (size_t) (p - start));
        *pp = p;
        return true;
}

static bool has_suffix(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && strcmp(s + a - b, suffix) == 0;
}

static struct family *find_family(struct parsed *p, const char *name) {
        for (size_t i = 0; i < p->n_f; i++)
                if (strcmp(p->f[i].name, name) == 0)
                        return &p->f[i];
        return NULL;
}

#define BAD(...) do { fail_msg(__VA_ARGS__); } while (0)

static struct parsed *parse(const char *text) {
        struct parsed *p = calloc(1, sizeof(*p));
        struct family *current = NULL;
        const char *line = text;
        unsigned lineno = 0;

        assert_true(*text && text[strlen(text) - 1] == '\n');
        for (const char *nl; (nl = strchr(line, '\n')); line = nl + 1) {
                const char *q = line;
                lineno++;
                if (strncmp(q, "# HELP ", 7) == 0) {
                        char *name;
                        q += 7;
                        if (!metric_name(&q, &name) || *q != ' ' || q + 1 >= nl)
                                BAD("line %u: bad HELP", lineno);
                        if (find_family(p, name))
                                BAD("line %u: family %s declared twice (not one group)", lineno, name);
                        p->f[p->n_f++] = (struct family) { .name = name };
                        current = &p->f[p->n_f - 1];
                        continue;
                }
                if (strncmp(q, "# TYPE ", 7) == 0) {
                        char *name;
                        q += 7;
                        if (!metric_name(&q, &name) || *q++ != ' ')
                                BAD("line %u: bad TYPE", lineno);
                        if (!current || strcmp(current->name, name) != 0 || current->has_type)
                                BAD("line %u: TYPE of %s not right after its HELP", lineno, name);
                        free(name);
                        current->type = strndup(q, (size_t) (nl - q));
                        current->has_type = true;
                        if (strcmp(current->type, "counter") && strcmp(current->type, "gauge") &&
                            strcmp(current->type, "histogram"))
                                BAD("line %u: type %s", lineno, current->type);
                        continue;
                }
                if (*q == '#' || q == nl)
                        BAD("line %u: unexpected comment or blank line", lineno);

                struct sample *s = &p->s[p->n++];
                char labels[1024] = "";
                size_t ln = 0;
                if (!metric_name(&q, &s->name))
                        BAD("line %u: bad sample name", lineno);
                if (*q == '{') {
                        q++;
                        while (*q != '}') {
                                char *key;
                                if (!metric_name(&q, &key) || *q++ != '=' || *q++ != '"')
                                        BAD("line %u: bad label", lineno);
                                ln += (size_t) snprintf(labels + ln, sizeof(labels) - ln, "%s%s=", ln ? "," : "", key);
                                free(key);
                                for (; *q != '"'; q++) {
                                        char c = *q;
                                        if (q >= nl)
                                                BAD("line %u: unterminated label value", lineno);
                                        if (c == '\\') {
                                                q++;
                                                c = *q == 'n' ? '\n' : *q == '\\' ? '\\' : *q == '"' ? '"' : 0;
                                                if (!c)
                                                        BAD("line %u: bad escape \\%c", lineno, *q);
                                        }
                                        labels[ln++] = c;
                                        labels[ln] = 0;
                                }
                                q++;
                                if (*q == ',')
                                        q++;
                                else if (*q != '}')
                                        BAD("line %u: bad label list", lineno);
                        }
                        q++;
                }
                s->labels = strdup(labels);
                if (*q++ != ' ')
                        BAD("line %u: no value", lineno);
                char *end;
                char value[64];
                snprintf(value, sizeof(value), "%.*s", (int) (nl - q), q);
                s->value = strcmp(value, "+Inf") == 0 ? INFINITY : strtod(value, &end);
                if (strcmp(value, "+Inf") != 0 && (*end || !*value || strchr(value, ' ')))
                        BAD("line %u: bad value '%s'", lineno, value);

                /* the sample belongs to the family just declared, with HELP and TYPE */
                if (!current || !current->has_type)
                        BAD("line %u: %s without HELP/TYPE", lineno, s->name);
                bool ok = strcmp(s->name, current->name) == 0;
                if (strcmp(current->type, "histogram") == 0) {
                        char b[256];
                        ok = false;
                        static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
                        for (size_t k = 0; k < 3; k++) {
                                snprintf(b, sizeof(b), "%s%s", current->name, suffixes[k]);
                                ok = ok || strcmp(s->name, b) == 0;
                        }
                }
                if (!ok)
                        BAD("line %u: %s outside its family's group (current %s)", lineno, s->name, current->name);
                if (strcmp(current->type, "counter") == 0 && !has_suffix(s->name, "_total"))
                        BAD("line %u: counter %s without _total", lineno, s->name);
                if (strcmp(current->type, "counter") == 0 && s->value < 0)
                        BAD("line %u: negative counter", lineno);
                s->family = current->name;
                s->type = current->type;
                for (size_t i = 0; i + 1 < p->n; i++)
                        if (strcmp(p->s[i].name, s->name) == 0 && strcmp(p->s[i].labels, s->labels) == 0)
                                BAD("line %u: duplicate series %s{%s}", lineno, s->name, s->labels);
        }
        assert_int_equal(*line, 0);
        return p;
}

static const struct sample *find(const struct parsed *p, const char *name, const char *labels) {
        for (size_t i = 0; i < p->n; i++)
                if (strcmp(p->s[i].name, name) == 0 && strcmp(p->s[i].labels, labels) == 0)
                        return &p->s[i];
        return NULL;
}

static double value(const struct parsed *p, const char *name, const char *labels) {
        const struct sample *s = find(p, name, labels);
        if (!s)
                fail_msg("no series %s{%s}", name, labels);
        return s->value;
}

/* ---- fixtures ------------------------------------------------------------ */

struct fixture {
        char dir[64];
        char path[128];
};

static int setup(void **state) {
        struct fixture *fx = calloc(1, sizeof(*fx));
        strcpy(fx->dir, "/tmp/s3mond-metrics-XXXXXX");
        assert_non_null(mkdtemp(fx->dir));
        snprintf(fx->path, sizeof(fx->path), "%s/s3mond.prom", fx->dir);
        *state = fx;
        return 0;
}

static int teardown(void **state) {
        struct fixture *fx = *state;
        char tmp[160];
        unlink(fx->path);
        snprintf(tmp, sizeof(tmp), "%s.tmp", fx->path);
        unlink(tmp);
        rmdir(fx->dir);
        free(fx);
        return 0;
}

static char *slurp(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t len = 0;
        assert_non_null(f);
        assert_true(getdelim(&buf, &len, 0, f) > 0);
        fclose(f);
        return buf;
}

static struct parsed *write_and_parse(struct metrics *m, const char *path, time_t now) {
        char *err = NULL, *text;
        struct parsed *p;
        if (metrics_write(m, now, &err) < 0)
                fail_msg("metrics_write: %s", err);
        text = slurp(path);
        p = parse(text);
        free(text);
        return p;
}

#define WEIRD "we\"ird\\env\nx"

static void test_format(void **state) {
        struct fixture *fx = *state;
        struct metrics *m = NULL;
        struct metrics_env *prod, *weird;
        struct parsed *p;
        char *text;
        time_t before = time(NULL);

        assert_int_equal(metrics_new(fx->path, &m), 0);
        prod = metrics_env(m, "prod");
        weird = metrics_env(m, WEIRD);
        assert_ptr_equal(metrics_env(m, "prod"), prod);
        for (int i = 0; i < 3; i++)
                metrics_inc_polls(prod);
        metrics_inc_poll_errors(prod);
        metrics_inc_findings(prod, VERDICT_CONFIRMED);
        metrics_inc_findings(prod, VERDICT_CONFIRMED);
        metrics_inc_findings(prod, VERDICT_UNEXPLAINED);
        metrics_inc_resolved(prod);
        metrics_inc_state_save_errors(weird);
        metrics_set_last_success(prod, 1764064798);
        metrics_set_open_findings(prod, 2);
        metrics_observe_latency(prod, 0.01);
        metrics_observe_latency(prod, 0.3);
        metrics_observe_latency(prod, 7);
        metrics_observe_latency(prod, 100);
        metrics_observe_latency(prod, NAN); /* counted as a request, not as a latency */

        p = write_and_parse(m, fx->path, 1764064800);
        assert_int_equal(value(p, "s3mond_up", ""), 1);
        assert_true(value(p, "s3mond_start_time_seconds", "") >= before);
        assert_int_equal(value(p, "s3mond_metrics_write_timestamp_seconds", ""), 1764064800);
        assert_int_equal(value(p, "s3mond_polls_total", "environment=prod"), 3);
        assert_int_equal(value(p, "s3mond_poll_errors_total", "environment=prod"), 1);
        assert_int_equal(value(p, "s3mond_requests_total", "environment=prod"), 5);
        assert_int_equal(value(p, "s3mond_findings_total", "environment=prod,verdict=confirmed"), 2);
        assert_int_equal(value(p, "s3mond_findings_total", "environment=prod,verdict=suspected"), 0);
        assert_int_equal(value(p, "s3mond_findings_total", "environment=prod,verdict=unexplained"), 1);
        assert_int_equal(value(p, "s3mond_resolved_total", "environment=prod"), 1);
        assert_int_equal(value(p, "s3mond_open_findings", "environment=prod"), 2);
        assert_int_equal(value(p, "s3mond_last_success_timestamp_seconds", "environment=prod"), 1764064798);
        assert_int_equal(value(p, "s3mond_state_save_errors_total", "environment=" WEIRD), 1);
        assert_int_equal(value(p, "s3mond_state_save_errors_total", "environment=prod"), 0);
        assert_int_equal(value(p, "s3mond_polls_total", "environment=" WEIRD), 0);

        /* the histogram: cumulative buckets, +Inf == count, sum */
        static const struct { const char *le; double n; } want[] = {
                { "0.05", 1 }, { "0.1", 1 }, { "0.25", 1 }, { "0.5", 2 }, { "1", 2 }, { "2.5", 2 },
                { "5", 2 }, { "10", 3 }, { "30", 3 }, { "60", 3 }, { "+Inf", 4 },
        };
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                char labels[64];
                snprintf(labels, sizeof(labels), "environment=prod,le=%s", want[i].le);
                assert_int_equal(value(p, "s3mond_request_duration_seconds_bucket", labels), want[i].n);
        }
        assert_int_equal(value(p, "s3mond_request_duration_seconds_count", "environment=prod"), 4);
        assert_true(fabs(value(p, "s3mond_request_duration_seconds_sum", "environment=prod") - 107.31) < 1e-6);
        parsed_free(p);

        /* the escapes, as written */
        text = slurp(fx->path);
        assert_non_null(strstr(text, "s3mond_polls_total{environment=\"we\\\"ird\\\\env\\nx\"} 0\n"));
        free(text);
        metrics_free(m);
}

static void test_counters_only_grow(void **state) {
        struct fixture *fx = *state;
        struct metrics *m = NULL;
        struct metrics_env *e;
        struct parsed *a, *b;

        assert_int_equal(metrics_new(fx->path, &m), 0);
        e = metrics_env(m, "prod");
        metrics_inc_polls(e);
        metrics_observe_latency(e, 0.2);
        a = write_and_parse(m, fx->path, 1000);
        for (int i = 0; i < 5; i++) {
                metrics_inc_polls(e);
                metrics_inc_findings(e, VERDICT_SUSPECTED);
                metrics_observe_latency(e, i * 0.4);
        }
        metrics_inc_poll_errors(metrics_env(m, "test"));
        b = write_and_parse(m, fx->path, 1060);
        size_t grew = 0;
        for (size_t i = 0; i < a->n; i++) {
                const struct sample *s = &a->s[i], *t = find(b, s->name, s->labels);
                assert_non_null(t); /* no series disappears */
                if (strcmp(s->type, "counter") == 0 || strcmp(s->type, "histogram") == 0) {
                        if (t->value < s->value)
                                fail_msg("%s{%s} went from %g to %g", s->name, s->labels, s->value, t->value);
                        grew += t->value > s->value;
                }
        }
        assert_true(grew >= 5);
        assert_int_equal(value(b, "s3mond_polls_total", "environment=prod"), 6);
        assert_int_equal(value(b, "s3mond_poll_errors_total", "environment=test"), 1);
        parsed_free(a);
        parsed_free(b);
        metrics_free(m);
}

static void test_mode_under_umask(void **state) {
        struct fixture *fx = *state;
        struct metrics *m = NULL;
        struct stat sb;
        mode_t old = umask(077);

        assert_int_equal(metrics_new(fx->path, &m), 0);
        assert_int_equal(metrics_write(m, 1, NULL), 0);
        assert_int_equal(stat(fx->path, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0644);
        /* a file made 0600 by someone else is replaced by a readable one */
        assert_int_equal(chmod(fx->path, 0600), 0);
        assert_int_equal(metrics_write(m, 2, NULL), 0);
        assert_int_equal(stat(fx->path, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0644);
        umask(old);
        metrics_free(m);
}

static void test_atomic_replace(void **state) {
        struct fixture *fx = *state;
        struct metrics *m = NULL;
        char tmp[160], *first, *again, *now;
        struct stat a, b;
        FILE *reader;

        assert_int_equal(metrics_new(fx->path, &m), 0);
        metrics_inc_polls(metrics_env(m, "prod"));
        assert_int_equal(metrics_write(m, 1, NULL), 0);
        first = slurp(fx->path);
        reader = fopen(fx->path, "re"); /* a collector in the middle of reading */
        assert_non_null(reader);
        assert_int_equal(fstat(fileno(reader), &a), 0);

        /* a temp file left by a crash does not stop the next write */
        snprintf(tmp, sizeof(tmp), "%s.tmp", fx->path);
        FILE *junk = fopen(tmp, "we");
        fputs("half a fi", junk);
        fclose(junk);

        metrics_inc_polls(metrics_env(m, "prod"));
        assert_int_equal(metrics_write(m, 2, NULL), 0);
        assert_int_equal(stat(fx->path, &b), 0);
        assert_true(a.st_ino != b.st_ino); /* a new file renamed over, not rewritten */
        again = NULL;
        size_t len = 0;
        assert_true(getdelim(&again, &len, 0, reader) > 0);
        assert_string_equal(again, first); /* the reader saw the whole old file */
        fclose(reader);
        now = slurp(fx->path);
        assert_non_null(strstr(now, "s3mond_polls_total{environment=\"prod\"} 2\n"));
        assert_int_equal(access(tmp, F_OK), -1);
        free(first);
        free(again);
        free(now);
        metrics_free(m);
}

static void test_errors_and_null(void **state) {
        struct fixture *fx = *state;
        struct metrics *m = NULL;
        char bad[160], *err = NULL;

        snprintf(bad, sizeof(bad), "%s/missing/s3mond.prom", fx->dir);
        assert_int_equal(metrics_new(bad, &m), 0);
        assert_int_equal(metrics_write(m, 1, &err), -ENOENT);
        assert_non_null(strstr(err, "cannot write metrics"));
        assert_non_null(strstr(err, "missing/s3mond.prom.tmp"));
        free(err);
        metrics_free(m);
        assert_int_equal(metrics_new("", &m), -EINVAL);

        /* metrics off: every call is a no-op */
        assert_null(metrics_env(NULL, "prod"));
        metrics_inc_polls(NULL);
        metrics_inc_poll_errors(NULL);
        metrics_observe_latency(NULL, 1);
        metrics_inc_findings(NULL, VERDICT_CONFIRMED);
        metrics_inc_resolved(NULL);
        metrics_inc_state_save_errors(NULL);
        metrics_set_last_success(NULL, 1);
        metrics_set_open_findings(NULL, 1);
        metrics_set_up(NULL, false);
        metrics_env_drop(NULL, "prod");
        assert_int_equal(metrics_write(NULL, 1, NULL), 0);
        metrics_free(NULL);
}

static void test_up_and_drop(void **state) {
        struct fixture *fx = *state;
        struct metrics *m = NULL;
        struct parsed *p;

        assert_int_equal(metrics_new(fx->path, &m), 0);
        metrics_inc_polls(metrics_env(m, "a"));
        metrics_inc_polls(metrics_env(m, "b"));
        metrics_inc_polls(metrics_env(m, "c"));
        metrics_env_drop(m, "b");
        metrics_env_drop(m, "nonexistent");
        metrics_set_up(m, false);
        p = write_and_parse(m, fx->path, 5);
        assert_int_equal(value(p, "s3mond_up", ""), 0);
        assert_non_null(find(p, "s3mond_polls_total", "environment=a"));
        assert_null(find(p, "s3mond_polls_total", "environment=b"));
        assert_null(find(p, "s3mond_findings_total", "environment=b,verdict=confirmed"));
        assert_non_null(find(p, "s3mond_polls_total", "environment=c"));
        parsed_free(p);
        metrics_free(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_format, setup, teardown),
                cmocka_unit_test_setup_teardown(test_counters_only_grow, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mode_under_umask, setup, teardown),
                cmocka_unit_test_setup_teardown(test_atomic_replace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors_and_null, setup, teardown),
                cmocka_unit_test_setup_teardown(test_up_and_drop, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
