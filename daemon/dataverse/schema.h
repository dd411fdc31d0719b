/* schema.h: the Dataverse tables and columns s3mond reads, in one place.
 * queries.c builds its queries from these; rows.c parses exactly these;
 * tests/dvsim serves them (and rejects any column the service would). */
#pragma once

#define DV_API_PATH "/api/data/v9.2/"

/* Alerts on mailboxes. Regarding type comes from the lookuplogicalname
 * annotation (Prefer: odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"). */
#define DV_SET_TRACELOGS "tracelogs"
#define DV_SELECT_TRACELOGS \
        "tracelogid,_regardingobjectid_value,level,text,errordetails,createdon,modifiedon"
#define DV_ANNOTATION_LOOKUP_NAME "@Microsoft.Dynamics.CRM.lookuplogicalname"

#define DV_SET_MAILBOXES "mailboxes"
#define DV_SELECT_MAILBOXES                                                            \
        "mailboxid,name,emailaddress,incomingemailstatus,actstatus,lastsyncerrorcode,lastsyncerror," \
        "lastsyncerroroccurredon,lastsuccessfulsynccompletedon,modifiedon"

/* Configuration cache: workflow definitions and activations (category 0). */
#define DV_SET_WORKFLOWS "workflows"
#define DV_SELECT_WORKFLOWS                                                              \
        "workflowid,name,_parentworkflowid_value,category,type,statecode,mode,primaryentity," \
        "triggeroncreate,triggeronupdateattributelist,syncworkflowlogonfailure,modifiedon"

/* Configuration cache: custom plug-in steps, message/entity/type expanded. */
#define DV_SET_STEPS "sdkmessageprocessingsteps"
#define DV_SELECT_STEPS \
        "sdkmessageprocessingstepid,name,mode,stage,statecode,customizationlevel,modifiedon"
#define DV_EXPAND_STEPS                                                        \
        "sdkmessageid($select=name),sdkmessagefilterid($select=primaryobjecttypecode)," \
        "plugintypeid($select=typename)"

/* Evidence. */
#define DV_SET_SESSIONS "processsessions"
#define DV_SELECT_SESSIONS \
        "processsessionid,_processid_value,statuscode,comments,errorcode,startedon,completedon,createdon"
#define DV_SET_TRACES "plugintracelogs"
#define DV_SELECT_TRACES \
        "plugintracelogid,pluginstepid,messagename,primaryentity,mode,typename,exceptiondetails,createdon"

/* Tables --probe checks (read privilege of the application user). */
#define DV_PROBE_SETS                                                               \
        "mailboxes", "tracelogs", "workflows", "processsessions",                   \
        "sdkmessageprocessingsteps", "sdkmessages", "sdkmessagefilters", "plugintypes", \
        "plugintracelogs"
/* Their primary keys, in the same order ($select of a --probe request). */
#define DV_PROBE_KEYS                                                                   \
        "mailboxid", "tracelogid", "workflowid", "processsessionid",                    \
        "sdkmessageprocessingstepid", "sdkmessageid", "sdkmessagefilterid", "plugintypeid", \
        "plugintracelogid"
