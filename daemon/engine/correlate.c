/* correlate.c: suspects, the evidence request of a cycle, evidence matching,
 * verdict, notes and remedy -> struct finding. No I/O, no clock, no rendering. */

/* The remedy follows Microsoft's KB 4471762, "UnknownIncomingEmailIntegrationError
 * logged in mailbox alerts in Microsoft Dynamics 365" (Microsoft Learn, Dynamics
 * 365 Sales troubleshooting): -2147220956 is IsvUnexpected, a custom plug-in or
 * workflow throwing while the item is created. Look for activated workflows on
 * the entity that start when a record is created and do not have "Run this
 * workflow in the background (recommended)" checked (for appointments, contacts
 * and tasks, also those that run on update), check their Process Sessions; look
 * for SDK message processing steps on the entity with Execution Mode
 * Synchronous; disable the suspect temporarily to confirm it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "correlate.h"
#include "detect.h"
#include "suspect.h"

/* Culprit names listed in a remedy line before "and N more". */
#define REMEDY_MAX_NAMES 3

static const char *const act_entities[] = { "appointment", "contact", "task" };
static const enum item_type act_types[] = { ITEM_APPOINTMENT, ITEM_CONTACT, ITEM_TASK };

/* ---- which items an alert is about ------------------------------------- */

struct items {
        const char *entities[3];
        size_t n;
        unsigned types;         /* the same, as enum item_type flags */
};

static unsigned effective_item_types(const struct correlate_params *p) {
        return p->item_types ? p->item_types : ITEM_EMAIL;
}

static struct items alert_items(const struct alert *a, const struct correlate_params *p) {
        struct items it = {};

        if (a->kind != ALERT_KIND_ACT) {
                it.entities[it.n++] = "email";
                it.types = ITEM_EMAIL;
                return it;
        }
        for (size_t i = 0; i < ELEMENTSOF(act_entities); i++)
                if (effective_item_types(p) & act_types[i]) {
                        it.entities[it.n++] = act_entities[i];
                        it.types |= act_types[i];
                }
        return it;
}

static bool items_have(const struct items *it, const char *entity) {
        for (size_t i = 0; entity && i < it->n; i++)
                if (strcasecmp(it->entities[i], entity) == 0)
                        return true;
        return false;
}

/* ---- suspects ------------------------------------------------------------ */

struct suspect {
        enum culprit_kind kind;
        const struct workflow_row *workflow;
        const struct step_row *step;
        const char *message;    /* "Create" or "Update" */
        const char *entity;     /* an item's logical name, or NULL: all of them */
};

struct suspects {
        struct suspect *v;
        size_t n;
};

static void suspects_done(struct suspects *s) {
        free(s->v);
        *s = (struct suspects) {};
}

static int suspects_find(const struct cache *cc, bool act, const struct items *it, struct suspects *ret) {
        size_t n_workflows, n_steps, n = 0;
        const struct workflow_row *workflows = cache_workflow_definitions(cc, &n_workflows);
        const struct step_row *steps = cache_steps(cc, &n_steps);
        const char *message;

        /* act: an ACT alert's items are created or updated by the sync */
        *ret = (struct suspects) {};
        if (it->n == 0 || n_workflows + n_steps == 0)
                return 0;
        ret->v = calloc(n_workflows + n_steps, sizeof(*ret->v));
        if (!ret->v)
                return -ENOMEM;
        for (size_t i = 0; i < n_workflows; i++)
                if ((message = suspect_workflow_message(&workflows[i], it->types, act)))
                        ret->v[n++] = (struct suspect) {
                                .kind = CULPRIT_WORKFLOW,
                                .workflow = &workflows[i],
                                .message = message,
                                .entity = workflows[i].primary_entity,
                        };
        for (size_t i = 0; i < n_steps; i++)
                if ((message = suspect_step_message(&steps[i], it->types, act)))
                        ret->v[n++] = (struct suspect) {
                                .kind = CULPRIT_PLUGIN_STEP,
                                .step = &steps[i],
                                .message = message,
                                .entity = steps[i].primary_entity,
                        };
        ret->n = n;
        return 0;
}

/* ---- the evidence request ------------------------------------------------ */

static time_t window_of(const struct correlate_params *p) {
        /* Ten years is more than any window means; keeps the arithmetic in range. */
        return p->window_sec > 315360000 ? 315360000 : (time_t) p->window_sec;
}

static int string_compare(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Sort, drop duplicates, copy. */
static int id_list_settle(const char **ids, size_t n, char ***ret, size_t *ret_n) {
        size_t k = 0;

        *ret = NULL;
        *ret_n = 0;
        if (n == 0)
                return 0;
        qsort_safe(ids, n, sizeof(*ids), string_compare);
        *ret = calloc(n, sizeof(**ret));
        if (!*ret)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (k > 0 && strcmp((*ret)[k - 1], ids[i]) == 0)
                        continue;
                (*ret)[k] = strdup(ids[i]);
                if (!(*ret)[k]) {
                        *ret_n = k;
                        return -ENOMEM;
                }
                k++;
        }
        *ret_n = k;
        return 0;
}

void evidence_request_done(struct evidence_request *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_process_ids; i++)
                free(r->process_ids[i]);
        free(r->process_ids);
        for (size_t i = 0; i < r->n_step_ids; i++)
                free(r->step_ids[i]);
        free(r->step_ids);
        *r = (struct evidence_request) {};
}

/* Ids borrowed from the cache, collected before they are settled. */
struct id_list {
        const char **v;
        size_t n, max;
};

static int id_list_add(struct id_list *l, const char *id) {
        if (l->n == l->max) {
                size_t max = l->max ? 2 * l->max : 16;
                const char **grown = realloc(l->v, max * sizeof(*grown));

                if (!grown)
                        return -ENOMEM;
                l->v = grown;
                l->max = max;
        }
        l->v[l->n++] = id;
        return 0;
}

/* What convicts a suspect: the sessions of a workflow definition and of each
 * of its activations; the traces of a step. */
static int suspect_ids(const struct cache *cc, const struct suspect *s, struct id_list *process,
                       struct id_list *steps) {
        const struct workflow_row *const *acts = NULL;
        size_t n_acts;
        int r;

        if (s->kind == CULPRIT_PLUGIN_STEP)
                return id_list_add(steps, s->step->id);
        n_acts = cache_workflow_activations(cc, s->workflow->id, &acts);
        r = id_list_add(process, s->workflow->id);
        for (size_t j = 0; r >= 0 && j < n_acts; j++)
                r = id_list_add(process, acts[j]->id);
        return r;
}

/* The ids of every suspect of one kind of alert (act or email). */
static int kind_ids(const struct cache *cc, bool act, const struct correlate_params *p, struct id_list *process,
                    struct id_list *steps) {
        struct alert probe = { .kind = act ? ALERT_KIND_ACT : ALERT_KIND_EMAIL };
        struct items it = alert_items(&probe, p);
        struct suspects s;
        int r = suspects_find(cc, act, &it, &s);

        for (size_t i = 0; r >= 0 && i < s.n; i++)
                r = suspect_ids(cc, &s.v[i], process, steps);
        suspects_done(&s);
        return r;
}

int correlate_evidence_request(const struct alert *alerts, size_t n, const struct cache *cc,
                               const struct correlate_params *p, struct evidence_request *ret) {
        struct id_list process = {}, steps = {};
        bool kinds[2] = {};
        time_t first = 0, last = 0;
        int r = 0;

        *ret = (struct evidence_request) {};
        if (n == 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                kinds[alerts[i].kind == ALERT_KIND_ACT] = true;
                if (i == 0 || alerts[i].at < first)
                        first = alerts[i].at;
                if (i == 0 || alerts[i].at > last)
                        last = alerts[i].at;
        }
        ret->from = first - window_of(p);
        ret->to = last + window_of(p);

        for (int kind = 0; r >= 0 && kind < 2; kind++)
                if (kinds[kind])
                        r = kind_ids(cc, kind, p, &process, &steps);
        if (r >= 0 && (r = id_list_settle(process.v, process.n, &ret->process_ids, &ret->n_process_ids)) >= 0)
                r = id_list_settle(steps.v, steps.n, &ret->step_ids, &ret->n_step_ids);
        free(process.v);
        free(steps.v);
        if (r < 0) {
                evidence_request_done(ret);
                return r;
        }
        return 0;
}

/* ---- the evidence index -------------------------------------------------- */

struct ref {
        time_t at;
        const char *id;
        const void *row;
        char *error;            /* error_summary() of the row, owned by the index */
};

/* A run of refs with one key (a workflow definition, or a step), by time. */
struct group {
        char *key;
        size_t first, n;
};

/* The suspects of one kind of alert, once per cycle: see suspect_memo_get(). */
struct memo_entry {
        struct suspect s;
        char *name;                     /* the culprit's name */
        const struct group *run;        /* its evidence in the index, or NULL */
};

struct suspect_memo {
        bool valid;
        const struct cache *cc;
        unsigned item_types;
        struct memo_entry *v;           /* culprit order but for evidence: kind, name, id */
        size_t n;
};

struct correlate_evidence {
        struct suspect_memo *memo;      /* [2]: email, ACT alerts; filled on first use */
        size_t n_sessions, n_traces;
        struct ref *sessions;
        struct group *session_groups;   /* by key: the session's definition */
        size_t n_session_groups;
        struct ref *traces;
        struct group *trace_groups;     /* by key: the trace's step */
        size_t n_trace_groups;
};

struct keyed_ref {
        const char *key;
        struct ref ref;
};

static int keyed_ref_compare(const void *a, const void *b) {
        const struct keyed_ref *x = a, *y = b;
        int r = strcmp(x->key, y->key);
        if (r != 0)
                return r;
        if (x->ref.at != y->ref.at)
                return x->ref.at < y->ref.at ? -1 : 1;
        return strcmp(x->ref.id, y->ref.id);
}

static void groups_free(struct group *g, size_t n) {
        for (size_t i = 0; g && i < n; i++)
                free(g[i].key);
        free(g);
}

static void refs_free(struct ref *refs, size_t n) {
        for (size_t i = 0; refs && i < n; i++)
                free(refs[i].error);
        free(refs);
}

static void suspect_memo_done(struct suspect_memo *m);

void correlate_evidence_free(struct correlate_evidence *e) {
        if (!e)
                return;
        if (e->memo) {
                suspect_memo_done(&e->memo[0]);
                suspect_memo_done(&e->memo[1]);
                free(e->memo);
        }
        refs_free(e->sessions, e->n_sessions);
        groups_free(e->session_groups, e->n_session_groups);
        refs_free(e->traces, e->n_traces);
        groups_free(e->trace_groups, e->n_trace_groups);
        free(e);
}

/* Sort the keyed refs and split them into refs and groups (keys copied). */
static int group_refs(struct keyed_ref *k, size_t n, struct ref **ret_refs, struct group **ret_groups,
                      size_t *ret_n_groups) {
        _cleanup_free_ struct ref *refs = NULL;
        struct group *groups = NULL;
        size_t n_groups = 0;

        *ret_refs = NULL;
        *ret_groups = NULL;
        *ret_n_groups = 0;
        if (n == 0)
                return 0;
        qsort_safe(k, n, sizeof(*k), keyed_ref_compare);
        refs = calloc(n, sizeof(*refs));
        groups = calloc(n, sizeof(*groups));
        if (!refs || !groups) {
                free(groups);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                refs[i] = k[i].ref;
                if (n_groups > 0 && strcmp(groups[n_groups - 1].key, k[i].key) == 0) {
                        groups[n_groups - 1].n++;
                        continue;
                }
                groups[n_groups] = (struct group) { .key = strdup(k[i].key), .first = i, .n = 1 };
                if (!groups[n_groups++].key) {
                        groups_free(groups, n_groups);
                        return -ENOMEM;
                }
        }
        *ret_refs = TAKE_PTR(refs);
        *ret_groups = groups;
        *ret_n_groups = n_groups;
        return 0;
}

static char *error_summary(const char *text, const char *fallback);

/* The summary of each piece of evidence, made once per cycle here rather
 * than once per alert it is near (a backlog has hundreds of alerts per piece). */
static int summarize(struct keyed_ref *k, size_t n, bool sessions) {
        for (size_t i = 0; i < n; i++) {
                k[i].ref.error = sessions ? error_summary(((const struct session_row *) k[i].ref.row)->error,
                                                          "process session failed (no error text recorded)")
                                          : error_summary(((const struct trace_row *) k[i].ref.row)->exception,
                                                          "plug-in exception (no text)");
                if (!k[i].ref.error) {
                        while (i > 0)
                                free(k[--i].ref.error);
                        return -ENOMEM;
                }
        }
        return 0;
}

/* Summarize the refs, then group them: *ret_refs owns the summaries after
 * (freed here if grouping fails). */
static int index_refs(struct keyed_ref *k, size_t n, bool sessions, struct ref **ret_refs, size_t *ret_n,
                      struct group **ret_groups, size_t *ret_n_groups) {
        int r = summarize(k, n, sessions);

        if (r < 0)
                return r;
        r = group_refs(k, n, ret_refs, ret_groups, ret_n_groups);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(k[i].ref.error);
                return r;
        }
        *ret_n = n;
        return 0;
}

int correlate_evidence_new(const struct cache *cc, const struct session_row *sessions, size_t n_sessions,
                           const struct trace_row *traces, size_t n_traces, struct correlate_evidence **ret) {
        _cleanup_(correlate_evidence_freep) struct correlate_evidence *e = calloc(1, sizeof(*e));
        _cleanup_free_ struct keyed_ref *k = NULL;
        size_t n = 0;
        int r;

        if (!e || !(e->memo = calloc(2, sizeof(*e->memo))))
                return -ENOMEM;
        if (n_sessions + n_traces > 0 && !(k = calloc(n_sessions + n_traces, sizeof(*k))))
                return -ENOMEM;
        for (size_t i = 0; i < n_sessions; i++) {
                const struct session_row *s = &sessions[i];
                const char *definition;

                if (s->statuscode != SESSION_STATUS_FAILED || !s->process_id || !s->id)
                        continue;
                definition = cc ? cache_workflow_definition_of(cc, s->process_id) : NULL;
                k[n++] = (struct keyed_ref) { definition ? definition : s->process_id, { s->at, s->id, s, NULL } };
        }
        r = index_refs(k, n, true, &e->sessions, &e->n_sessions, &e->session_groups, &e->n_session_groups);
        if (r < 0)
                return r;
        n = 0;
        for (size_t i = 0; i < n_traces; i++) {
                const struct trace_row *t = &traces[i];
                if (t->mode == TRACE_MODE_SYNCHRONOUS && t->step_id && t->id && t->exception && *t->exception)
                        k[n++] = (struct keyed_ref) { t->step_id, { t->at, t->id, t, NULL } };
        }
        r = index_refs(k, n, false, &e->traces, &e->n_traces, &e->trace_groups, &e->n_trace_groups);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(e);
        return 0;
}

static int group_key_compare(const void *key, const void *elem) {
        return strcmp(key, ((const struct group *) elem)->key);
}

static const struct group *group_find(const struct group *g, size_t n, const char *key) {
        return n > 0 ? bsearch(key, g, n, sizeof(*g), group_key_compare) : NULL;
}

/* First ref of the run at or after at. */
static size_t time_lower_bound(const struct ref *refs, size_t n, time_t at) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (refs[mid].at < at)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

struct candidate {
        const struct ref *ref;
        time_t distance;
};

static int candidate_compare(const void *a, const void *b) {
        const struct candidate *x = a, *y = b;
        if (x->distance != y->distance)
                return x->distance < y->distance ? -1 : 1;
        if (x->ref->at != y->ref->at)
                return x->ref->at < y->ref->at ? -1 : 1;
        return strcmp(x->ref->id, y->ref->id);
}

struct trace_match {
        const struct step_row *step;
        const struct items *items;
};

static bool trace_matches(const struct ref *ref, const struct trace_match *m) {
        const struct trace_row *t = ref->row;

        if (!m)
                return true; /* sessions: the index kept failed ones only */
        return t->message && strcasecmp(t->message, m->step->message) == 0 && items_have(m->items, t->primary_entity) &&
               (!m->step->primary_entity || strcasecmp(m->step->primary_entity, t->primary_entity) == 0);
}

/* Fill out (room for CORRELATE_MAX_EVIDENCE) with the matching refs of the
 * run within the window, closest to at first; returns how many. */
static size_t closest(const struct ref *refs, const struct group *g, time_t at, time_t window,
                      const struct trace_match *m, struct candidate *out) {
        const struct ref *run;
        size_t lo, hi, left, right, k = 0;

        if (!g)
                return 0;
        run = refs + g->first;
        lo = time_lower_bound(run, g->n, at - window);
        hi = time_lower_bound(run, g->n, at + window + 1);
        left = right = time_lower_bound(run, g->n, at);
        while (k < CORRELATE_MAX_EVIDENCE && (left > lo || right < hi)) {
                const struct ref *ref;
                if (left > lo && (right >= hi || at - run[left - 1].at <= run[right].at - at))
                        ref = &run[--left];
                else
                        ref = &run[right++];
                if (trace_matches(ref, m))
                        out[k++] = (struct candidate) { ref, ref->at > at ? ref->at - at : at - ref->at };
        }
        return k;
}

/* ---- building the finding ------------------------------------------------ */

/* One line, whitespace runs collapsed, at most CORRELATE_MAX_ERROR bytes
 * cut on a UTF-8 boundary. */
static char *error_summary(const char *text, const char *fallback) {
        size_t len = text ? strlen(text) : 0, n = 0;
        char *out = malloc(len + 1 > CORRELATE_MAX_ERROR + 4 ? len + 1 : CORRELATE_MAX_ERROR + 4);
        bool space = false;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                char ch = text[i];
                if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f') {
                        space = n > 0;
                        continue;
                }
                if (space)
                        out[n++] = ' ';
                space = false;
                out[n++] = ch;
        }
        if (n > CORRELATE_MAX_ERROR) {
                n = CORRELATE_MAX_ERROR - 3;
                while (n > 0 && ((unsigned char) out[n] & 0xc0) == 0x80)
                        n--;
                memcpy(out + n, "...", 3);
                n += 3;
        }
        out[n] = '\0';
        if (n == 0) {
                free(out);
                return strdup(fallback);
        }
        return out;
}

/* At most CORRELATE_MAX_EVIDENCE: an insertion sort beats qsort()'s set-up. */
static void candidates_sort(struct candidate *cand, size_t n) {
        for (size_t i = 1; i < n; i++) {
                struct candidate x = cand[i];
                size_t j = i;
                while (j > 0 && candidate_compare(&cand[j - 1], &x) > 0) {
                        cand[j] = cand[j - 1];
                        j--;
                }
                cand[j] = x;
        }
}

static int evidence_fill(struct culprit *c, enum evidence_kind kind, struct candidate *cand, size_t n) {
        candidates_sort(cand, n);
        if (n == 0)
                return 0;
        c->evidence = calloc(n, sizeof(*c->evidence));
        if (!c->evidence)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const struct ref *ref = cand[i].ref;
                struct evidence *e = &c->evidence[c->n_evidence++];

                e->kind = kind;
                e->at = ref->at;
                e->id = strdup(ref->id);
                e->error = strdup(ref->error);
                if (!e->id || !e->error)
                        return -ENOMEM;
        }
        return 0;
}

/* Sessions of the definition and of its activations (indexed together);
 * run is the definition's, found once per cycle (suspect_memo). */
static int workflow_evidence(struct culprit *c, const struct group *run, const struct alert *a,
                             const struct correlate_evidence *ev, time_t window) {
        struct candidate cand[CORRELATE_MAX_EVIDENCE];

        if (!ev || !run)
                return 0;
        return evidence_fill(c, EVIDENCE_PROCESS_SESSION, cand, closest(ev->sessions, run, a->at, window, NULL, cand));
}

static int step_evidence(struct culprit *c, const struct step_row *s, const struct group *run, const struct alert *a,
                         const struct items *it, const struct correlate_evidence *ev, time_t window) {
        struct candidate cand[CORRELATE_MAX_EVIDENCE];
        struct trace_match m = { s, it };

        if (!ev || !run)
                return 0;
        return evidence_fill(c, EVIDENCE_PLUGIN_TRACE, cand, closest(ev->traces, run, a->at, window, &m, cand));
}

/* "appointment,task": the entity of a culprit that runs for all of them. */
static char *items_joined(const struct items *it) {
        size_t len = 1;
        char *s, *p;

        for (size_t i = 0; i < it->n; i++)
                len += strlen(it->entities[i]) + 1;
        s = p = malloc(len);
        if (!s)
                return NULL;
        *p = '\0';
        for (size_t i = 0; i < it->n; i++) {
                if (i > 0)
                        *p++ = ',';
                p = stpcpy(p, it->entities[i]);
        }
        return s;
}

/* ---- suspects, once per kind of alert ------------------------------------
 * The suspects of an alert depend only on the cache, its kind (email or ACT)
 * and item_types: a cycle with thousands of new alerts finds them, names
 * them, sorts them and looks their evidence runs up once, not per alert. */

static void suspect_memo_done(struct suspect_memo *m) {
        for (size_t i = 0; i < m->n; i++)
                free(m->v[i].name);
        free(m->v);
        *m = (struct suspect_memo) {};
}

static const char *suspect_id(const struct suspect *s) {
        return s->kind == CULPRIT_WORKFLOW ? s->workflow->id : s->step->id;
}

/* What culprit_fill() names it: the workflow's name (or id); the step's
 * name, else "<plug-in type>: <message> of <entity>". */
static char *suspect_name(const struct suspect *s, const struct items *it) {
        _cleanup_free_ char *entity = NULL;
        char *name;

        if (s->kind == CULPRIT_WORKFLOW)
                return strdup(s->workflow->name ? s->workflow->name : s->workflow->id);
        if (s->step->name && *s->step->name)
                return strdup(s->step->name);
        if (!s->entity && !(entity = items_joined(it)))
                return NULL;
        if (asprintf(&name, "%s: %s of %s", s->step->plugin_type ? s->step->plugin_type : s->step->id, s->message,
                     s->entity ? s->entity : entity) < 0)
                return NULL;
        return name;
}

static int memo_entry_compare(const void *a, const void *b) {
        const struct memo_entry *x = a, *y = b;
        int r;

        if (x->s.kind != y->s.kind)
                return x->s.kind == CULPRIT_WORKFLOW ? -1 : 1;
        r = strcmp(x->name, y->name);
        return r != 0 ? r : strcmp(suspect_id(&x->s), suspect_id(&y->s));
}

static int suspect_memo_build(struct suspect_memo *m, const struct cache *cc, bool act, const struct items *it,
                              const struct correlate_evidence *ev, unsigned item_types) {
        struct suspects s;
        int r;

        suspect_memo_done(m);
        r = suspects_find(cc, act, it, &s);
        if (r < 0)
                return r;
        if (s.n > 0 && !(m->v = calloc(s.n, sizeof(*m->v)))) {
                suspects_done(&s);
                return -ENOMEM;
        }
        for (size_t i = 0; i < s.n; i++) {
                struct memo_entry *e = &m->v[m->n];

                e->s = s.v[i];
                e->name = suspect_name(&s.v[i], it);
                if (!e->name) {
                        suspects_done(&s);
                        suspect_memo_done(m);
                        return -ENOMEM;
                }
                if (ev && e->s.kind == CULPRIT_WORKFLOW)
                        e->run = group_find(ev->session_groups, ev->n_session_groups, e->s.workflow->id);
                else if (ev)
                        e->run = group_find(ev->trace_groups, ev->n_trace_groups, e->s.step->id);
                m->n++;
        }
        suspects_done(&s);
        qsort_safe(m->v, m->n, sizeof(*m->v), memo_entry_compare);
        m->cc = cc;
        m->item_types = item_types;
        m->valid = true;
        return 0;
}

/* The index's memo (its cache must not have changed since it was built:
 * within a cycle it does not), or *scratch when there is no index. */
static int suspect_memo_get(const struct correlate_evidence *ev, const struct cache *cc, bool act,
                            const struct items *it, const struct correlate_params *p, struct suspect_memo *scratch,
                            const struct suspect_memo **ret) {
        struct suspect_memo *m = ev ? &ev->memo[act] : scratch;
        int r;

        if (!m->valid || m->cc != cc || m->item_types != effective_item_types(p)) {
                r = suspect_memo_build(m, cc, act, it, ev, effective_item_types(p));
                if (r < 0)
                        return r;
        }
        *ret = m;
        return 0;
}

static int culprit_fill(struct culprit *c, const struct memo_entry *e, const struct alert *a, const struct items *it,
                        const struct correlate_evidence *ev, time_t window) {
        const struct suspect *s = &e->s;

        c->kind = s->kind;
        c->message = strdup(s->message);
        c->entity = s->entity ? strdup(s->entity) : items_joined(it);
        c->id = strdup(suspect_id(s));
        c->name = strdup(e->name);
        if (!c->message || !c->entity || !c->id || !c->name)
                return -ENOMEM;
        if (s->kind == CULPRIT_WORKFLOW)
                return workflow_evidence(c, e->run, a, ev, window);
        if (s->step->plugin_type && !(c->plugin_type = strdup(s->step->plugin_type)))
                return -ENOMEM;
        return step_evidence(c, s->step, e->run, a, it, ev, window);
}

/* A culprit in the making, with what the notes need of its suspect. */
struct ranked {
        struct culprit culprit;
        bool keeps_no_logs;
};

static int note_add(struct finding *f, const char *fmt, ...) _printf_(2, 3);
static int note_add(struct finding *f, const char *fmt, ...) {
        char **notes = realloc(f->notes, (f->n_notes + 1) * sizeof(*notes));
        va_list ap;
        int r;

        if (!notes)
                return -ENOMEM;
        f->notes = notes;
        va_start(ap, fmt);
        r = vasprintf(&f->notes[f->n_notes], fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        f->n_notes++;
        return 0;
}

static int notes_make(struct finding *f, const struct alert *a, const struct items *it, const bool *keeps_no_logs,
                      const struct correlate_params *p) {
        bool steps_without_traces = false;
        int r;

        if (a->kind == ALERT_KIND_ACT && it->n == 0 &&
            (r = note_add(f, "This alert is about appointments, contacts and tasks, which item_types of "
                             "environment '%s' does not list: add appointment contact task to item_types "
                             "to have the code that runs on them named",
                          strempty(p->environment))) < 0)
                return r;
        for (size_t i = 0; i < f->n_culprits; i++) {
                const struct culprit *c = &f->culprits[i];

                if (c->kind == CULPRIT_PLUGIN_STEP)
                        steps_without_traces = steps_without_traces || c->n_evidence == 0;
                else if (keeps_no_logs[i] &&
                         (r = note_add(f, "Workflow '%s' keeps no failure logs: turn on 'Keep logs for workflow "
                                          "jobs that encountered errors' in its properties to see its failed "
                                          "Process Sessions",
                                       c->name)) < 0)
                        return r;
        }
        if (f->verdict == VERDICT_SUSPECTED && steps_without_traces &&
            (r = note_add(f, "No plug-in trace log entry for the suspect steps: plug-in trace logging may be off "
                             "(Settings > Administration > System Settings > Customization > Enable logging to "
                             "plug-in trace log: Exception or All)")) < 0)
                return r;
        return 0;
}

static size_t culprits_count(const struct finding *f, enum culprit_kind kind, bool with_evidence_only) {
        size_t n = 0;

        for (size_t i = 0; i < f->n_culprits; i++)
                n += f->culprits[i].kind == kind && (!with_evidence_only || f->culprits[i].n_evidence > 0);
        return n;
}

/* "workflows 'A', 'B' and 2 more listed" for the culprits of one kind. */
static size_t remedy_names(FILE *out, const struct finding *f, enum culprit_kind kind, bool with_evidence_only) {
        size_t n = culprits_count(f, kind, with_evidence_only), listed = 0;

        if (n == 0)
                return 0;
        fprintf(out, "%s%s", kind == CULPRIT_WORKFLOW ? "workflow" : "step", n > 1 ? "s" : "");
        for (size_t i = 0; i < f->n_culprits && listed < REMEDY_MAX_NAMES; i++) {
                const struct culprit *c = &f->culprits[i];
                if (c->kind != kind || (with_evidence_only && c->n_evidence == 0))
                        continue;
                listed++;
                fprintf(out, "%s'%s'", listed == 1 ? " " : listed == n ? " and " : ", ", c->name);
        }
        if (n > listed)
                fprintf(out, " and %zu more listed", n - listed);
        return n;
}

/* What to do with the listed code, per KB 4471762, one clause per kind. */
static void remedy_culprits(FILE *out, const struct finding *f, bool with_evidence_only) {
        size_t n = remedy_names(out, f, CULPRIT_WORKFLOW, with_evidence_only);

        if (n > 0)
                fprintf(out, ": check 'Run this workflow in the background (recommended)' to make %s "
                             "asynchronous, or fix or deactivate %s, then check %s Process Sessions",
                        n > 1 ? "them" : "it", n > 1 ? "them" : "it", n > 1 ? "their" : "its");
        if (n > 0 && culprits_count(f, CULPRIT_PLUGIN_STEP, with_evidence_only) > 0)
                fputs("; ", out);
        n = remedy_names(out, f, CULPRIT_PLUGIN_STEP, with_evidence_only);
        if (n > 0)
                fprintf(out, ": register %s with Execution Mode Asynchronous, or fix or disable %s, then "
                             "read %s plug-in trace log",
                        n > 1 ? "them" : "it", n > 1 ? "them" : "it", n > 1 ? "their" : "its");
}

static int remedy_make(struct finding *f, const struct alert *a, const struct items *it) {
        _cleanup_free_ char *items = items_joined(it);
        char *buf = NULL;
        size_t size = 0;
        FILE *out;

        if (!items)
                return -ENOMEM;
        out = open_memstream(&buf, &size);
        if (!out)
                return -ENOMEM;
        switch (f->verdict) {
        case VERDICT_CONFIRMED:
                fputs("Stop the failing synchronous code from blocking the mailbox: ", out);
                remedy_culprits(out, f, true);
                fputs(". Server-side synchronization retries the failed items on its next cycles.", out);
                break;
        case VERDICT_SUSPECTED:
                fprintf(out, "The likely cause is one of the synchronous workflows or steps listed, which run "
                             "on %s of %s; disable each temporarily to see which one stops the alert: ",
                        a->kind == ALERT_KIND_ACT ? "Create or Update" : "Create", items);
                remedy_culprits(out, f, false);
                fputs(".", out);
                break;
        case VERDICT_UNEXPLAINED:
                if (a->kind == ALERT_KIND_ACT && it->n == 0)
                        fputs("List appointment contact task in item_types so s3mond names the synchronous "
                              "code; meanwhile look for activated real-time workflows and synchronous plug-in "
                              "steps on Create or Update of appointments, contacts and tasks.", out);
                else
                        fprintf(out, "No synchronous workflow or plug-in step runs on %s of %s: check the "
                                     "Exchange side, the mailbox owner's permissions and licence, and the "
                                     "service health; if the alert persists, open a Microsoft support ticket "
                                     "with the alert text.",
                                a->kind == ALERT_KIND_ACT ? "Create or Update" : "Create", items);
                break;
        }
        if (fclose(out) != 0 || !buf) {
                free(buf);
                return -ENOMEM;
        }
        f->remedy = buf;
        return 0;
}

/* The suspects as culprits, with their evidence, in the order of a finding
 * (those with evidence first, each group in the memo's order: kind, name,
 * id); *ret_keeps_no_logs (freed by the caller) flags the workflows without
 * failure logs, culprit by culprit. */
static int culprits_make(struct finding *f, const struct alert *a, const struct items *it, const struct suspect_memo *m,
                         const struct correlate_evidence *ev, const struct correlate_params *p,
                         bool **ret_keeps_no_logs) {
        _cleanup_free_ struct ranked *ranked = NULL;
        size_t n = 0, k = 0;
        int r = 0;

        *ret_keeps_no_logs = NULL;
        if (m->n == 0)
                return 0;
        ranked = calloc(m->n, sizeof(*ranked));
        f->culprits = calloc(m->n, sizeof(*f->culprits));
        *ret_keeps_no_logs = calloc(m->n, sizeof(bool));
        if (!ranked || !f->culprits || !*ret_keeps_no_logs)
                return -ENOMEM;
        for (; n < m->n && r >= 0; n++) {
                r = culprit_fill(&ranked[n].culprit, &m->v[n], a, it, ev, window_of(p));
                ranked[n].keeps_no_logs = m->v[n].s.workflow && !m->v[n].s.workflow->keeps_failure_logs;
        }
        /* Hand every culprit over, even on failure, so finding_free() has them. */
        for (int with_evidence = 1; with_evidence >= 0; with_evidence--)
                for (size_t i = 0; i < n; i++)
                        if ((ranked[i].culprit.n_evidence > 0) == with_evidence) {
                                f->culprits[k] = ranked[i].culprit;
                                (*ret_keeps_no_logs)[k++] = ranked[i].keeps_no_logs;
                        }
        f->n_culprits = n;
        return r;
}

static int finding_make(const struct alert *a, const struct cache *cc, const struct correlate_evidence *ev,
                        const struct correlate_params *p, unsigned generation, time_t detected_at,
                        struct finding *f) {
        struct items it = alert_items(a, p);
        _cleanup_free_ bool *keeps_no_logs = NULL;
        _cleanup_(suspect_memo_done) struct suspect_memo scratch = {};
        const struct suspect_memo *m;
        struct cache_mailbox mb;
        bool evidence = false;
        int r;

        if ((r = finding_id_make(strempty(p->environment), a, generation, &f->id)) < 0)
                return r;
        if (!(f->environment = strdup(strempty(p->environment))))
                return -ENOMEM;
        f->detected_at = detected_at;
        f->occurrences = 1;
        if ((r = alert_copy(a, &f->alert)) < 0)
                return r;
        if (a->mailbox_id) {
                if (!(f->mailbox.id = strdup(a->mailbox_id)))
                        return -ENOMEM;
                if (cache_mailbox_get(cc, a->mailbox_id, &mb) &&
                    ((mb.name && !(f->mailbox.name = strdup(mb.name))) ||
                     (mb.email && !(f->mailbox.email = strdup(mb.email)))))
                        return -ENOMEM;
        }

        if ((r = suspect_memo_get(ev, cc, a->kind == ALERT_KIND_ACT, &it, p, &scratch, &m)) < 0)
                return r;
        if ((r = culprits_make(f, a, &it, m, ev, p, &keeps_no_logs)) < 0)
                return r;
        for (size_t i = 0; i < f->n_culprits; i++)
                evidence = evidence || f->culprits[i].n_evidence > 0;
        f->verdict = evidence ? VERDICT_CONFIRMED : f->n_culprits > 0 ? VERDICT_SUSPECTED : VERDICT_UNEXPLAINED;

        if ((r = notes_make(f, a, &it, keeps_no_logs, p)) < 0)
                return r;
        return remedy_make(f, a, &it);
}

int correlate_finding(const struct alert *a, const struct cache *cc, const struct correlate_evidence *ev,
                      const struct correlate_params *p, unsigned generation, time_t detected_at,
                      struct finding **ret) {
        struct finding *f = calloc(1, sizeof(*f));
        int r;

        if (!f)
                return -ENOMEM;
        r = finding_make(a, cc, ev, p, generation, detected_at, f);
        if (r < 0) {
                finding_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

int correlate_alert(const struct alert *a, const struct cache *cc, const struct session_row *sessions,
                    size_t n_sessions, const struct trace_row *traces, size_t n_traces,
                    const struct correlate_params *p, time_t detected_at, struct finding **ret) {
        _cleanup_(correlate_evidence_freep) struct correlate_evidence *ev = NULL;
        int r = correlate_evidence_new(cc, sessions, n_sessions, traces, n_traces, &ev);

        if (r < 0)
                return r;
        return correlate_finding(a, cc, ev, p, 1, detected_at, ret);
}
