/* model.h: the data s3mond reasons about (typed rows, alerts, findings and
 * the other events it reports), shared by engine, state and outputs, and the
 * Dataverse values the engine's rules read. Plain structs. Every pointer is
 * owned by the struct that holds it and is released by its _done() or _free(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The code in every alert s3mond reports: IsvUnexpected, 0x80040224. */
#define S3_ERROR_CODE ((int64_t) -2147220956)
#define S3_ERROR_CODE_NAME "UnknownIncomingEmailIntegrationError"

/* An environment's name names its state files: [A-Za-z0-9._-]{1,64}, not
 * "." or "..". */
#define ENVIRONMENT_NAME_MAX 64
bool environment_name_is_valid(const char *name);

/* Item types server-side sync creates; bit flags for config item_types. */
enum item_type {
        ITEM_EMAIL = 1u << 0,
        ITEM_APPOINTMENT = 1u << 1,
        ITEM_CONTACT = 1u << 2,
        ITEM_TASK = 1u << 3,
};
#define ITEM_ACT (ITEM_APPOINTMENT | ITEM_CONTACT | ITEM_TASK)
#define ITEM_ALL (ITEM_EMAIL | ITEM_ACT)

/* ---- the Dataverse option set values the rules read (docs/design.md §1) -- */

#define TRACELOG_LEVEL_WARNING 2        /* tracelog.level: 1 information, 2 warning, 3 error */
#define SYNC_STATUS_SUCCESS 1           /* mailbox incomingemailstatus, actstatus */
#define WORKFLOW_CATEGORY_WORKFLOW 0    /* workflow.category: not a dialog, action, flow... */
#define WORKFLOW_TYPE_DEFINITION 1      /* workflow.type */
#define WORKFLOW_TYPE_ACTIVATION 2
#define WORKFLOW_STATE_ACTIVATED 1      /* workflow.statecode */
#define WORKFLOW_MODE_REALTIME 1        /* workflow.mode: 0 background, 1 real-time */
#define STEP_MODE_SYNCHRONOUS 0         /* sdkmessageprocessingstep.mode */
#define STEP_STATE_ENABLED 0            /* sdkmessageprocessingstep.statecode */
#define STEP_CUSTOMIZATION_CUSTOM 1     /* sdkmessageprocessingstep.customizationlevel: 0 system */
#define SESSION_STATUS_FAILED 6         /* processsession.statuscode */
#define TRACE_MODE_SYNCHRONOUS 0        /* plugintracelog.mode */

/* ---- rows as polled (parsed from JSON by the dataverse layer's rows.c) --- */

struct tracelog_row {
        char *id;              /* tracelogid */
        char *regarding_id;    /* _regardingobjectid_value, may be NULL */
        char *regarding_type;  /* its lookuplogicalname annotation, may be NULL */
        int level;             /* 1 information, 2 warning, 3 error */
        char *text;
        char *errordetails;    /* may be NULL */
        time_t created_on;
        time_t modified_on;
};

struct mailbox_row {
        char *id;               /* mailboxid */
        char *name;
        char *email;            /* emailaddress, may be NULL */
        int incoming_status;    /* incomingemailstatus: 0 not run, 1 success, 2 failure */
        int act_status;         /* actstatus (appointments, contacts, tasks): same values */
        bool has_error_code;
        int64_t last_error_code;        /* lastsyncerrorcode */
        char *last_error;               /* lastsyncerror, may be NULL */
        time_t last_error_on;           /* lastsyncerroroccurredon, 0 if null */
        time_t last_success_on;         /* lastsuccessfulsynccompletedon, 0 if null */
        time_t modified_on;
};

struct workflow_row {
        char *id;               /* workflowid */
        char *name;
        char *parent_id;        /* _parentworkflowid_value (activation rows), may be NULL */
        int category;           /* 0 workflow, 1 dialog, 2 business rule, 3 action, 4 BPF, 5 modern flow */
        int type;               /* 1 definition, 2 activation, 3 template */
        int statecode;          /* 0 draft, 1 activated, 2 suspended */
        int mode;               /* 0 background, 1 real-time */
        char *primary_entity;   /* primaryentity: logical name */
        bool trigger_on_create;
        char *trigger_on_update_attributes; /* triggeronupdateattributelist, may be NULL */
        bool keeps_failure_logs;            /* syncworkflowlogonfailure */
        time_t modified_on;
};

struct step_row {
        char *id;               /* sdkmessageprocessingstepid */
        char *name;
        int mode;               /* 0 synchronous, 1 asynchronous */
        int stage;              /* 10 pre-validation, 20 pre-operation, 40 post-operation */
        int statecode;          /* 0 enabled, 1 disabled */
        int customization_level;/* 0 system, 1 custom */
        char *message;          /* sdkmessageid/name, e.g. "Create" */
        char *primary_entity;   /* sdkmessagefilterid/primaryobjecttypecode, may be NULL ("none") */
        char *plugin_type;      /* plugintypeid/typename, may be NULL */
        time_t modified_on;
};

struct session_row {
        char *id;               /* processsessionid */
        char *process_id;       /* _processid_value: definition or activation */
        int statuscode;         /* 6 failed */
        char *error;            /* comments, else errorcode as text; may be NULL */
        time_t at;              /* completedon, else startedon, else createdon */
};

struct trace_row {
        char *id;               /* plugintracelogid */
        char *step_id;          /* pluginstepid (plain GUID column) */
        char *message;          /* messagename */
        char *primary_entity;   /* primaryentity */
        int mode;               /* 0 synchronous */
        char *type_name;        /* typename */
        char *exception;        /* exceptiondetails, may be NULL/empty */
        time_t at;              /* createdon */
};

/* ---- what the engine concludes ----------------------------------------- */

enum alert_source { ALERT_SOURCE_TRACELOG, ALERT_SOURCE_MAILBOX };
enum alert_kind { ALERT_KIND_EMAIL, ALERT_KIND_ACT };

struct alert {
        enum alert_source source;
        enum alert_kind kind;
        char *id;               /* tracelogid, or mailboxid when source is mailbox */
        char *mailbox_id;
        int level;
        int64_t code;
        char *text;
        time_t created_on;
        time_t at;              /* modifiedon: the latest occurrence */
};

struct mailbox_info {
        char *id;
        char *name;             /* may be NULL when the mailbox is unknown */
        char *email;            /* may be NULL */
};

enum evidence_kind { EVIDENCE_PROCESS_SESSION, EVIDENCE_PLUGIN_TRACE };
struct evidence {
        enum evidence_kind kind;
        char *id;
        time_t at;
        char *error;
};

enum culprit_kind { CULPRIT_WORKFLOW, CULPRIT_PLUGIN_STEP };
struct culprit {
        enum culprit_kind kind;
        char *id;               /* workflowid of the definition, or step id */
        char *name;
        char *entity;           /* logical name of the item, e.g. "email" */
        char *message;          /* "Create" or "Update" */
        char *plugin_type;      /* steps only, may be NULL */
        struct evidence *evidence;
        size_t n_evidence;
};

enum verdict { VERDICT_CONFIRMED, VERDICT_SUSPECTED, VERDICT_UNEXPLAINED };

struct finding {
        char *id;               /* stable: see finding_id_make() */
        char *environment;
        time_t detected_at;
        struct alert alert;
        struct mailbox_info mailbox;
        enum verdict verdict;
        struct culprit *culprits;       /* with evidence first */
        size_t n_culprits;
        unsigned occurrences;
        char **notes;
        size_t n_notes;
        char *remedy;
};

/* The mailbox receives mail again and no new alert came for resolve_after. */
struct resolved_event {
        char *finding_id;
        char *environment;
        struct mailbox_info mailbox;
        char *alert_id;
        unsigned occurrences;
        time_t last_alert_at;
        time_t resolved_at;
};

/* A poll of an environment failing (once per outage) or recovering. */
enum error_state { ERROR_STATE_FAILING, ERROR_STATE_RECOVERED };
struct error_event {
        char *environment;
        enum error_state state;
        char *query;            /* which request failed: "token", "tracelogs", ... */
        char *message;          /* no secret, ever */
        time_t since;           /* first failure of the outage */
        time_t at;
        unsigned failures;      /* attempts during the outage */
};

const char *verdict_to_string(enum verdict v);
const char *culprit_kind_to_string(enum culprit_kind k);
const char *evidence_kind_to_string(enum evidence_kind k);
const char *alert_source_to_string(enum alert_source s);
const char *item_type_to_string(enum item_type t);     /* "email", ... */
int item_type_from_string(const char *s);               /* flag, or -EINVAL */

/* Release what a row owns and zero it; NULL and zeroed rows are fine. */
void tracelog_row_done(struct tracelog_row *r);
void mailbox_row_done(struct mailbox_row *r);
void workflow_row_done(struct workflow_row *r);
void step_row_done(struct step_row *r);
void session_row_done(struct session_row *r);
void trace_row_done(struct trace_row *r);

/* _done() on each of the n rows, then free the array. */
void tracelog_rows_free(struct tracelog_row *rows, size_t n);
void mailbox_rows_free(struct mailbox_row *rows, size_t n);
void workflow_rows_free(struct workflow_row *rows, size_t n);
void step_rows_free(struct step_row *rows, size_t n);
void session_rows_free(struct session_row *rows, size_t n);
void trace_rows_free(struct trace_row *rows, size_t n);

void alert_done(struct alert *a);
void mailbox_info_done(struct mailbox_info *m);
void culprit_done(struct culprit *c);
void finding_free(struct finding *f);
void resolved_event_done(struct resolved_event *e);
void error_event_done(struct error_event *e);
