/* metrics.c: the Prometheus textfile: counters per environment and for the process,
 * rendered in exposition format 0.0.4 and replaced atomically. Must not know Dataverse. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "metrics.h"

/* Request latency buckets, seconds: token and queries are usually well under a second;
 * a throttled or stalled request reaches the tens. */
static const double bucket_le[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
static const char *const bucket_label[] = { "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60" };
#define N_BUCKETS ELEMENTSOF(bucket_le)

static const enum verdict verdicts[] = { VERDICT_CONFIRMED, VERDICT_SUSPECTED, VERDICT_UNEXPLAINED };
#define N_VERDICTS ELEMENTSOF(verdicts)

struct metrics_env {
        char *name;
        uint64_t polls, poll_errors, requests, resolved, state_save_errors;
        uint64_t findings[N_VERDICTS];
        uint64_t buckets[N_BUCKETS];    /* not cumulative; +Inf is the count */
        uint64_t latency_count;
        double latency_sum;
        time_t last_success;
        size_t open_findings;
};

struct metrics {
        char *path;
        char *tmp_path;
        time_t start;
        bool up;
        struct metrics_env **envs;
        size_t n_envs;
};

int metrics_new(const char *path, struct metrics **ret) {
        struct metrics *m;

        if (!path || !*path || !ret)
                return -EINVAL;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->path = strdup(path);
        /* not *.prom: the collector must never read a half-written file */
        if (!m->path || asprintf(&m->tmp_path, "%s.tmp", path) < 0) {
                free(m->path);
                free(m);
                return -ENOMEM;
        }
        m->start = time(NULL);
        m->up = true;
        *ret = m;
        return 0;
}

static void env_free(struct metrics_env *e) {
        if (e)
                free(e->name);
        free(e);
}

void metrics_free(struct metrics *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->n_envs; i++)
                env_free(m->envs[i]);
        free(m->envs);
        free(m->path);
        free(m->tmp_path);
        free(m);
}

struct metrics_env *metrics_env(struct metrics *m, const char *env) {
        struct metrics_env *e, **envs;

        if (!m || !env)
                return NULL;
        for (size_t i = 0; i < m->n_envs; i++)
                if (strcmp(m->envs[i]->name, env) == 0)
                        return m->envs[i];
        envs = realloc(m->envs, (m->n_envs + 1) * sizeof(*envs));
        if (!envs)
                return NULL;
        m->envs = envs;
        e = calloc(1, sizeof(*e));
        if (!e || !(e->name = strdup(env))) {
                free(e);
                return NULL;
        }
        m->envs[m->n_envs++] = e;
        return e;
}

void metrics_env_drop(struct metrics *m, const char *env) {
        if (!m || !env)
                return;
        for (size_t i = 0; i < m->n_envs; i++)
                if (strcmp(m->envs[i]->name, env) == 0) {
                        env_free(m->envs[i]);
                        memmove(m->envs + i, m->envs + i + 1, (m->n_envs - i - 1) * sizeof(*m->envs));
                        m->n_envs--;
                        return;
                }
}

void metrics_inc_polls(struct metrics_env *e) {
        if (e)
                e->polls++;
}

void metrics_inc_poll_errors(struct metrics_env *e) {
        if (e)
                e->poll_errors++;
}

void metrics_observe_latency(struct metrics_env *e, double seconds) {
        if (!e)
                return;
        e->requests++;
        if (isnan(seconds))
                return;
        if (seconds < 0)
                seconds = 0; /* a clock step, not a request from the future */
        e->latency_count++;
        e->latency_sum += seconds;
        for (size_t i = 0; i < N_BUCKETS; i++)
                if (seconds <= bucket_le[i]) {
                        e->buckets[i]++;
                        break;
                }
}

void metrics_inc_findings(struct metrics_env *e, enum verdict v) {
        if (!e)
                return;
        for (size_t i = 0; i < N_VERDICTS; i++)
                if (verdicts[i] == v)
                        e->findings[i]++;
}

void metrics_inc_resolved(struct metrics_env *e) {
        if (e)
                e->resolved++;
}

void metrics_inc_state_save_errors(struct metrics_env *e) {
        if (e)
                e->state_save_errors++;
}

void metrics_set_last_success(struct metrics_env *e, time_t at) {
        if (e)
                e->last_success = at;
}

void metrics_set_open_findings(struct metrics_env *e, size_t n) {
        if (e)
                e->open_findings = n;
}

void metrics_set_up(struct metrics *m, bool up) {
        if (m)
                m->up = up;
}

/* ---- rendering ---------------------------------------------------------- */

/* A label value: backslash, double quote and line feed escaped (format 0.0.4). */
static void put_label_value(FILE *f, const char *s) {
        for (; *s; s++)
                switch (*s) {
                case '\\': fputs("\\\\", f); break;
                case '"': fputs("\\\"", f); break;
                case '\n': fputs("\\n", f); break;
                default: fputc(*s, f);
                }
}

static void put_family(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{environment="ENV"[,EXTRA_KEY="EXTRA_VALUE"]} */
static void put_series(FILE *f, const char *name, const struct metrics_env *e, const char *key, const char *value) {
        fprintf(f, "%s{environment=\"", name);
        put_label_value(f, e->name);
        if (key) {
                fprintf(f, "\",%s=\"", key);
                put_label_value(f, value);
        }
        fputs("\"} ", f);
}

/* A counter family with one uint64_t per environment, the field at OFFSET. */
static void put_env_counter(FILE *f, const struct metrics *m, const char *name, const char *help, size_t offset) {
        put_family(f, name, "counter", help);
        for (size_t i = 0; i < m->n_envs; i++) {
                put_series(f, name, m->envs[i], NULL, NULL);
                fprintf(f, "%" PRIu64 "\n", *(const uint64_t *) ((const char *) m->envs[i] + offset));
        }
}

static void render(FILE *f, const struct metrics *m, time_t now) {
        put_family(f, "s3mond_up", "gauge", "1 while s3mond runs, 0 after a clean stop.");
        fprintf(f, "s3mond_up %d\n", m->up ? 1 : 0);
        put_family(f, "s3mond_start_time_seconds", "gauge", "Start time of the s3mond process since the epoch.");
        fprintf(f, "s3mond_start_time_seconds %lld\n", (long long) m->start);
        put_family(f, "s3mond_metrics_write_timestamp_seconds", "gauge", "When s3mond wrote this file.");
        fprintf(f, "s3mond_metrics_write_timestamp_seconds %lld\n", (long long) now);

        put_env_counter(f, m, "s3mond_polls_total", "Polls of the environment.",
                        offsetof(struct metrics_env, polls));
        put_env_counter(f, m, "s3mond_poll_errors_total", "Polls that failed (token, network, throttling, bad answer).",
                        offsetof(struct metrics_env, poll_errors));
        put_env_counter(f, m, "s3mond_requests_total", "HTTP requests made for the environment.",
                        offsetof(struct metrics_env, requests));

        put_family(f, "s3mond_request_duration_seconds", "histogram", "Latency of those HTTP requests.");
        for (size_t i = 0; i < m->n_envs; i++) {
                const struct metrics_env *e = m->envs[i];
                uint64_t cumulative = 0;
                for (size_t b = 0; b < N_BUCKETS; b++) {
                        cumulative += e->buckets[b];
                        put_series(f, "s3mond_request_duration_seconds_bucket", e, "le", bucket_label[b]);
                        fprintf(f, "%" PRIu64 "\n", cumulative);
                }
                put_series(f, "s3mond_request_duration_seconds_bucket", e, "le", "+Inf");
                fprintf(f, "%" PRIu64 "\n", e->latency_count);
                put_series(f, "s3mond_request_duration_seconds_sum", e, NULL, NULL);
                fprintf(f, "%.9g\n", e->latency_sum);
                put_series(f, "s3mond_request_duration_seconds_count", e, NULL, NULL);
                fprintf(f, "%" PRIu64 "\n", e->latency_count);
        }

        put_family(f, "s3mond_findings_total", "counter", "Findings reported, by verdict.");
        for (size_t i = 0; i < m->n_envs; i++)
                for (size_t v = 0; v < N_VERDICTS; v++) {
                        put_series(f, "s3mond_findings_total", m->envs[i], "verdict", verdict_to_string(verdicts[v]));
                        fprintf(f, "%" PRIu64 "\n", m->envs[i]->findings[v]);
                }
        put_env_counter(f, m, "s3mond_resolved_total", "Resolved events reported.",
                        offsetof(struct metrics_env, resolved));
        put_family(f, "s3mond_open_findings", "gauge", "Findings reported and not yet resolved.");
        for (size_t i = 0; i < m->n_envs; i++) {
                put_series(f, "s3mond_open_findings", m->envs[i], NULL, NULL);
                fprintf(f, "%zu\n", m->envs[i]->open_findings);
        }
        put_family(f, "s3mond_last_success_timestamp_seconds", "gauge",
                   "When a poll of the environment last succeeded, since the epoch (0: never).");
        for (size_t i = 0; i < m->n_envs; i++) {
                put_series(f, "s3mond_last_success_timestamp_seconds", m->envs[i], NULL, NULL);
                fprintf(f, "%lld\n", (long long) m->envs[i]->last_success);
        }
        put_env_counter(f, m, "s3mond_state_save_errors_total", "Saves of the environment's state that failed.",
                        offsetof(struct metrics_env, state_save_errors));
}

static int fail(char **ret_error, int r, const char *step, const char *path) {
        if (ret_error && asprintf(ret_error, "cannot write metrics: %s %s: %s", step, path, strerror(-r)) < 0)
                *ret_error = NULL;
        return r;
}

int metrics_write(struct metrics *m, time_t now, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        const char *step;
        size_t len = 0;
        FILE *f;
        int r;

        if (!m)
                return 0;
        f = open_memstream(&text, &len);
        if (!f)
                return fail(ret_error, -ENOMEM, "render", m->path);
        render(f, m, now);
        if (fclose(f) != 0)
                return fail(ret_error, -ENOMEM, "render", m->path);

        /* 0644 whatever the umask (077 under systemd's hardening): the collector
         * must read it. No fsync: a metrics file lost to a power cut is rewritten
         * at the next cycle. */
        r = file_replace(&(struct file_replace) {
                                 .dir_fd = AT_FDCWD,
                                 .name = m->path,
                                 .tmp_name = m->tmp_path,
                                 .mode = 0644,
                         }, text, len, &step);
        if (r < 0 && strcmp(step, "rename") == 0)
                return fail(ret_error, r, "rename to", m->path);
        if (r < 0)
                return fail(ret_error, r, step, m->tmp_path);
        return 0;
}
