"""Dataverse rows for the simulator, as the service writes them: the alert
s3mond looks for (docs/design.md §1) and the evidence around it.

Times are dvsim's relative forms ("now-1s") unless given; new_alert_rows()
writes absolute times, so that a restarted simulator serves the same rows.
"""

import uuid

from .base import iso

# The error code and text of the alerts s3mond looks for.
CODE = -2147220956
CODE_TEXT = "Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 exception."

# realistic.json's ids, the default culprits of new_alert_rows().
REALISTIC_MAILBOX = "a1000000-0000-4000-8000-000000000001"
REALISTIC_ACTIVATION = "c1000000-0000-4000-8000-000000000002"
REALISTIC_STEP = "e1000000-0000-4000-8000-000000000001"
REALISTIC_STEP_TYPE = "Contoso.Plugins.EmailCreate"


def new_id(prefix=None):
    """A fresh GUID string (prefix: replaces its first 8 hex digits, for readable ids)."""
    g = str(uuid.uuid4())
    return prefix + g[8:] if prefix else g


def alert_text(mailbox_name, kind="email"):
    """The text of a tracelogs alert: kind "email" (receiving email) or
    "act" (appointments, contacts and tasks)."""
    if kind == "email":
        return (f'An unknown error occurred while receiving email through the mailbox '
                f'"{mailbox_name}". The owner of the associated email server profile '
                f'Microsoft Exchange Online has been notified. The system will try to '
                f'receive email again later.\r\nEmail Server Error Code: {CODE_TEXT}')
    return (f'An unknown error occurred while synchronizing appointments, contacts, '
            f'and tasks for the mailbox "{mailbox_name}".\r\nEmail Server Error Code: '
            f'{CODE_TEXT}')


def mailbox_row(name, mailbox_id=None, email=None, **cols):
    """A healthy mailbox (no sync error); cols override."""
    row = {"mailboxid": mailbox_id or new_id(), "name": name,
           "emailaddress": email or f"{name.lower().replace(' ', '.')}@contoso.com",
           "incomingemaildeliverymethod": 2, "enabledforincomingemail": True,
           "statecode": 0, "incomingemailstatus": 2,
           "lastsuccessfulsynccompletedon": "now-2h"}
    row.update(cols)
    return row


def alert_row(mailbox_id, mailbox_name="Support", tracelog_id=None, kind="email", **cols):
    """A tracelogs row carrying -2147220956 against a mailbox, as Dataverse
    writes it. createdon/modifiedon default to the simulator's now."""
    row = {"tracelogid": tracelog_id or new_id(), "level": 2, "text": alert_text(mailbox_name, kind),
           "errordetails": "Error : " + CODE_TEXT,
           "_regardingobjectid_value": mailbox_id,
           "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "mailbox",
           "regardingobjecttypecode": "mailbox"}
    row.update(cols)
    return row


def failed_session_row(process_id, at="now-1s", comments="step failed", **cols):
    """A Failed (statuscode 6) processsessions row of a workflow (or activation)."""
    row = {"processsessionid": new_id(), "_processid_value": process_id,
           "statecode": 1, "statuscode": 6, "comments": comments,
           "startedon": at, "completedon": at, "createdon": at}
    row.update(cols)
    return row


def plugin_trace_row(step_id, typename, at="now-1s", entity="email", message="Create", **cols):
    """A synchronous plug-in's exception in plugintracelogs."""
    row = {"plugintracelogid": new_id(), "pluginstepid": step_id, "messagename": message,
           "primaryentity": entity, "mode": 0, "typename": typename,
           "exceptiondetails": "System.InvalidOperationException: boom", "createdon": at}
    row.update(cols)
    return row


def new_alert_rows(at, mailbox_id=REALISTIC_MAILBOX, mailbox_name="Support",
                   process_id=REALISTIC_ACTIVATION, step_id=REALISTIC_STEP):
    """A fresh alert at time at on a mailbox, with a failed session of
    process_id and a plug-in trace of step_id a few seconds before it
    (realistic.json's ids by default; None leaves one out), absolute times:
    {entity set: [rows]}."""
    rows = {"tracelogs": [alert_row(mailbox_id, mailbox_name, createdon=iso(at - 1), modifiedon=iso(at))]}
    if process_id:
        rows["processsessions"] = [failed_session_row(
            process_id, at=iso(at - 4), comments="injected failure", name="injected",
            errorcode=-2147220891, completedon=iso(at - 3), modifiedon=iso(at - 3))]
    if step_id:
        rows["plugintracelogs"] = [plugin_trace_row(
            step_id, REALISTIC_STEP_TYPE, at=iso(at - 2), exceptiondetails="injected exception")]
    return rows
