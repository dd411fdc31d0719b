#!/usr/bin/env python3
# dvsim: a Dataverse Web API and Microsoft Entra ID token endpoint simulator
# for s3mond's tests, demo and benchmarks. Python 3 standard library only.
"""dvsim - a faithful, strict Dataverse Web API simulator on a loopback port.

URL layout (PORT is --port, or the one written to --port-file):
  http://127.0.0.1:PORT/<env>/api/data/v9.2/<entityset>   Web API of environment <env>
  http://127.0.0.1:PORT/api/data/v9.2/<entityset>         the first environment, again
  http://127.0.0.1:PORT/<tenant>/oauth2/v2.0/token        token endpoint (client credentials)
  http://127.0.0.1:PORT/_admin/...                        admin API (no auth; not Dataverse)

An environment's URL (for the s3mond config "url =" and the token "scope") is
http://127.0.0.1:PORT/<env>; the scope is that URL followed by "/.default".
Its authority (s3mond "authority =") is http://127.0.0.1:PORT.

Production's shape (all off by default):
  --tls DIR       HTTPS only (TLS 1.2+, ALPN http/1.1). DIR/ca.pem is a test CA
                  (made once, with DIR/ca.key, by the openssl command): trust it
                  (s3mond "ca_file =", curl --cacert). Every listening host has its
                  own certificate: its IP address, and <env>.dvsim.test for an
                  environment's host, login.dvsim.test and localhost for --host.
  --env-hosts     every environment on its own loopback address, in load order
                  127.0.0.2, 127.0.0.3, ... 127.0.0.254, 127.0.1.1, ..., all on PORT:
                  https://127.0.0.2:PORT/api/data/v9.2/<entityset> (that host serves
                  only its environment's Web API). The token endpoint, /_admin and the
                  /<env>/ paths stay on --host. Environments loaded later (POST
                  /_admin/scenario) get the next addresses. One accept loop serves
                  all listeners.
  --info-file F   once listening: {"port", "authority", "ca_file" (null without
                  --tls), "admin", "environments": {NAME: {"url", "tenant",
                  "client_id", "address"}}}, also GET /_admin/health's "info".
  --latency T [--latency-jitter J]   every answer but /_admin's waits T +- J
                  (uniform); a new connection's first answer waits once more for
                  TCP set-up and once more for TLS (e.g. 150ms: 3 x 150 ms).
  --idle-close S  a keep-alive connection idle S seconds is closed (TLS
                  close_notify, then FIN), as Azure's front ends do after ~240 s;
                  without it, after 120 s as always.
  /_admin/stats counts "connections" (accepted) and "tls_handshakes" (completed;
  "tls_resumed", "tls_failures") in total and per environment (a connection to
  --host is counted for the first environment it asks for), with
  "requests_per_connection"; POST /_admin/stats/reset zeroes them.

Entity sets: mailboxes tracelogs workflows processsessions
sdkmessageprocessingsteps sdkmessages sdkmessagefilters plugintypes plugintracelogs
pluginassemblies (and WhoAmI). Query options: $select $filter $orderby $top
$expand $count, paging with "Prefer: odata.maxpagesize=N" and @odata.nextLink;
$skip is refused like the service. $top alone returns at most that many rows and
no nextLink; with the maxpagesize preference $top is ignored ("If you include
both, $top is ignored": learn.microsoft.com/power-apps/developer/data-platform/
webapi/query/page-results). $expand takes single-valued navigation properties
with $select and a nested $expand, e.g. on sdkmessageprocessingsteps
  plugintypeid($select=typename;$expand=pluginassemblyid($select=name,version,modifiedon))
(at most 15 expands: 400 0x8004430D). Anything the service rejects (unknown
column or navigation property, also inside $expand; quoted datetime or GUID,
unknown function, type mismatch, bad navigation path, unescaped quote, $filter/
$orderby/$top in a single-valued $expand) answers 400
{"error":{"code":"0x80060888","message":"..."}}; an unknown entity set 404; a
table in deny_read 403 0x80040220, also when reached through $expand or a
$filter path.

Scenario file (JSON; --scenario, repeatable):
  {"description": "...",
   "environments": [
     {"name": "prod", "tenant": "contoso.onmicrosoft.com",
      "client_id": "11111111-1111-1111-1111-111111111111", "client_secret": "s3cret",
      "token_lifetime": 3599,            (optional; else --token-lifetime)
      "deny_read": ["plugintracelogs"],  (optional; 403 missing privilege)
      "tables": {"mailboxes": [{"mailboxid": "...", "name": "Support", ...}],
                 "tracelogs": [{"level": 2, "modifiedon": "now-5m", ...}], ...}}],
   "expected": [ ...findings s3mond must report, see README... ],
   "texts": {"trace1": "System.NullReferenceException: ..."}}  (optional)
  Column names are the Web API's (lookups as _x_value). Datetimes are ISO 8601
  ("2026-11-25T09:59:58Z") or relative to load time: "now", "now-5m", "now+1h30m",
  "now-2d". A multi-table lookup's target type is given as
  "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "mailbox".
  Unknown columns, wrong types and dangling lookups are errors at load.
  A column's value {"$text": "trace1"} is the scenario's texts["trace1"], one
  long string shared by many rows. An environment's "plugin_trace_log":
  {"setting": "All", "runs_per_step": 3, "within": "2h", "exceptiondetails": ""}
  adds the rows of runs that did not fail (exceptiondetails "" or null) for
  every enabled step, as the organization's trace setting "All" records them.

Admin API (JSON in and out):
  POST   /_admin/<env>/<set>          insert or upsert a row or an array of rows
                                      (createdon and modifiedon default to now)
  PATCH  /_admin/<env>/<set>/<id>     update columns; modifiedon moves to now
  DELETE /_admin/<env>/<set>/<id>     delete one row (DELETE /_admin/<env>/<set>: all)
  GET    /_admin/<env>/<set>          the rows as stored
  PATCH  /_admin/<env>                change client_secret, client_id, token_lifetime, deny_read
  POST   /_admin/faults               add a fault (or an array of faults), see below
  GET    /_admin/faults               list faults;  DELETE /_admin/faults (or POST
                                      /_admin/faults/clear) clears them
  POST   /_admin/tokens/revoke        revoke every token ({"env": "prod"}: that env's)
  GET    /_admin/stats                per env, per entity set and "token": requests,
                                      status counts, bytes sent, and a log of
                                      {"t", "status", "method", "path", "fault"}
  POST   /_admin/stats/reset          zero the statistics
  GET    /_admin/health               {"ok": true, "port": N, "environments": [...]}
  GET    /_admin/expected             the "expected" keys of the loaded scenarios
  POST   /_admin/scenario             load another scenario (a JSON body) into the server
  POST   /_admin/shutdown             stop the server (so does SIGTERM; exit status 0)

Changes an administrator makes, as the service records them (body optional:
{"at": "now-7m"} dates the change, default now; modifiedon of every changed row
moves to it). Each answers {"row": the row after (null if deleted), "changed":
[{"set", "id", "op": "inserted" | "updated" | "deleted"}]}:
  POST /_admin/<env>/workflows/<id>/deactivate   statecode 0, statuscode 1; its
         activation rows (type 2) are deleted (unless an incomplete session
         still runs on one), activeworkflowid cleared
  POST /_admin/<env>/workflows/<id>/activate     statecode 1, statuscode 2; a new
         activation row (createdon = the change), activeworkflowid points at it
  POST /_admin/<env>/workflows/<id>/background   mode 0 (realtime: mode 1); an
         activated workflow is deactivated, edited and activated again
  POST /_admin/<env>/workflows/<id>/delete       (deactivated first) the definition
         and its activation rows
  POST /_admin/<env>/sdkmessageprocessingsteps/<id>/disable   statecode 1, statuscode 2
         (enable: 0, 1), .../asynchronous: mode 1, stage 40 (synchronous: mode
         0), .../delete
  POST /_admin/<env>/pluginassemblies/<id>/upload   a new version ({"version":
         "1.4.2.0"}, default: the last part + 1): version, major, minor,
         sourcehash and modifiedon move; the plug-in types and steps do not

Faults: {"target": "<env>/<set>" | "<env>/token" | "<env>" | "token" | "*",
         "kind": KIND, "count": N (default 1) | "duration": SECONDS, "skip": K}
  KIND is one of
    429                 + "retry_after": seconds, or "retry_after_date": seconds
                          from now sent as an HTTP-date, + "code": "0x80072322"
                          (requests, default) | "0x80072321" (execution time) |
                          "0x80072326" (concurrency)
    500, 503            the Dataverse error body (503: optional "retry_after")
    401                 revokes the presented token and answers 401
    reset               closes the connection without a response (TCP RST)
    stall               + "seconds": wait that long, then answer normally
    slow                + "seconds": drip the body over that many seconds
    invalid_json        200 with a body that is not JSON
    truncated           Content-Length says more than is sent, then close
    huge                + "mb": a 200 JSON body of that many megabytes
    wrong_content_type  200 text/html page
    foreign_nextlink    the normal answer, but its @odata.nextLink (added when
                          there is none) points at "host" (default
                          127.0.0.2:PORT), same path and query
  "skip": K lets the first K matching requests through first; the fault then
  hits the next "count" requests (or all requests for "duration" seconds).

Stats: {"started": T, "environments": {"prod": {"requests": N, "status": {"200": N},
  "bytes_sent": N, "writes": N, "sets": {"tracelogs": {"requests", "status",
  "bytes_sent", "log": [{"t": 1795600001.123, "status": 429, "method": "GET",
  "path": "/prod/api/...", "fault": "429"}, ...]}, "token": {...}}}}}
  A request is in the stats before its answer is sent; "status" 0 is a reset.

Datetimes are kept to the millisecond and served to the second, like the
service: "modifiedon gt <a value just read>" returns that row again.

Examples:
  python3 tests/dvsim/dvsim.py --scenario tests/fixtures/realistic.json --port 0 \\
      --port-file /tmp/dvsim.port --quiet &
  P=$(cat /tmp/dvsim.port)
  curl -s -d grant_type=client_credentials -d client_id=... -d client_secret=... \\
      --data-urlencode scope=http://127.0.0.1:$P/prod/.default \\
      http://127.0.0.1:$P/<tenant>/oauth2/v2.0/token
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Prefer: odata.maxpagesize=50' \\
      "http://127.0.0.1:$P/prod/api/data/v9.2/tracelogs?\\$select=text,modifiedon&\\$filter=level%20eq%202"
  curl -s -d '{"target":"prod/tracelogs","kind":"429","retry_after":2,"count":3}' \\
      http://127.0.0.1:$P/_admin/faults
  curl -s http://127.0.0.1:$P/_admin/stats | jq .environments.prod.sets.tracelogs.status
  dvsim.py --scenario S --tls /tmp/dvsim-tls --env-hosts --info-file /tmp/dvsim.json \\
      --latency 150ms --latency-jitter 30ms --idle-close 240 --quiet &
  curl --cacert /tmp/dvsim-tls/ca.pem "$(jq -r .environments.prod.url /tmp/dvsim.json)/api/..."
  (curl needs -g for URLs with [ ], e.g. Microsoft.Dynamics.CRM.In(...PropertyValues=['1']))

More: tests/dvsim/README.md; large scenarios: tests/dvsim/gen.py --help; fixtures with
their expected findings: tests/fixtures/.
"""

import argparse
import base64
import bisect
import calendar
import contextlib
import email.utils
import fcntl
import fnmatch
import hashlib
import json
import operator
import os
import random
import re
import secrets
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, quote, unquote_plus, urlsplit

API_PREFIX = ("api", "data", "v9.2")
MAX_PAGE = 5000
DEFAULT_TOKEN_LIFETIME = 3599
ODATA_JSON = ("application/json; odata.metadata=minimal; odata.streaming=true; "
              "IEEE754Compatible=false; charset=utf-8")
ERR_QUERY = "0x80060888"        # OData query errors (unknown property, syntax, types)
ERR_SEGMENT = "0x8006088a"      # "Resource not found for the segment ..."
ERR_NOT_EXIST = "0x80040217"    # "<entity> With Id = ... Does Not Exist"
ERR_PRIVILEGE = "0x80040220"    # missing read privilege
ERR_UNEXPECTED = "0x80040216"   # "An unexpected error occurred."
ERR_AUTH = "0x80048306"         # dvsim's choice for the 401 body
THROTTLE = {
    "0x80072322": "Number of requests exceeded the limit of 6000 over time window "
                  "of 300 seconds.",
    "0x80072321": "Combined execution time of incoming requests exceeded limit of "
                  "1,200,000 milliseconds over time window of 300 seconds. Decrease "
                  "number of concurrent requests or reduce the duration of requests "
                  "and try again later.",
    "0x80072326": "Number of concurrent requests exceeded the limit of 52.",
}
FAULT_KINDS = ("429", "500", "503", "401", "reset", "stall", "slow", "invalid_json",
               "truncated", "huge", "wrong_content_type", "foreign_nextlink")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}$")
_GUID_LOWER = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
RESERVED_ENV_NAMES = {"api", "_admin"}


ERR_LINKS = "0x8004430D"        # "Number of link entities in query exceeded maximum limit."
MAX_LINKS = 15                  # $expand options per query, nested ones included


class ODataError(Exception):
    """An error the Web API answers with {"error":{"code","message"}}."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


def query_error(message):
    return ODataError(400, ERR_QUERY, message)


def privilege_error(env, schema):
    """Reading a table (directly, through $expand or a $filter path) without
    its read privilege (the environment's deny_read)."""
    return ODataError(403, ERR_PRIVILEGE,
                      "Principal user (Id=%s, type=8, roleCount=1, privilegeCount=0, "
                      "accessMode=4), is missing prvRead%s privilege on entity '%s'. "
                      "Consider adding the privilege to one of the principal's roles."
                      % (env.user_id, SCHEMA_NAMES[schema.logical], schema.logical))


class ScenarioError(Exception):
    pass


# --------------------------------------------------------------------------
# Schema: the tables s3mond reads, with the column names and types of
# Microsoft's entity reference (powerapps-docs .../reference/entities/*.md).

EDM = {"guid": "Edm.Guid", "str": "Edm.String", "int": "Edm.Int32",
       "bigint": "Edm.Int64", "bool": "Edm.Boolean", "dt": "Edm.DateTimeOffset",
       "lookup": "Edm.Guid"}


class Col:
    __slots__ = ("name", "kind", "edm", "targets", "logical")

    def __init__(self, name, kind, targets=None, logical=None):
        self.name = name            # Web API property name
        self.kind = kind            # guid str int bigint bool dt lookup
        self.edm = EDM[kind]
        self.targets = targets      # lookups: logical names of the target tables
        self.logical = logical      # lookups: the attribute's logical name


class Table:
    def __init__(self, logical, set_name, pk, primary_name, spec, navs=None,
                 defaults=None, labels=None):
        self.logical = logical
        self.set_name = set_name
        self.pk = pk
        self.primary_name = primary_name
        self.type_name = "Microsoft.Dynamics.CRM." + logical
        self.cols = {}
        self.lookup_by_logical = {}
        for name, kind in spec.items():
            if kind.startswith("lookup:"):
                col = Col("_%s_value" % name, "lookup", kind[7:].split(","), name)
                self.lookup_by_logical[name] = col
            else:
                col = Col(name, kind)
            self.cols[col.name] = col
        self.cols[pk] = Col(pk, "guid")
        self.lookup_cols = [(c, col) for c, col in self.cols.items() if col.kind == "lookup"]
        self._checks = None
        # single-valued navigation property -> (lookup column, target entity set)
        self.navs = navs or {}
        self.defaults = defaults or {}
        self.labels = labels or {}

    def lookup_checks(self):
        """(column, first target, entity set to check or None, multi-target)."""
        if self._checks is None:
            out = []
            for c, col in self.lookup_cols:
                sets = {t: TABLES_BY_LOGICAL[t].set_name for t in col.targets
                        if t in TABLES_BY_LOGICAL}
                if sets:
                    out.append((c, col.targets[0], sets, len(col.targets) > 1))
            self._checks = out
        return self._checks

    def nav_for_col(self, colname):
        for nav, (col, _target) in self.navs.items():
            if col == colname:
                return nav
        return None


_COMMON = {"createdon": "dt", "modifiedon": "dt", "createdby": "lookup:systemuser",
           "modifiedby": "lookup:systemuser", "createdonbehalfby": "lookup:systemuser",
           "modifiedonbehalfby": "lookup:systemuser"}
_OWNED = {"ownerid": "lookup:systemuser,team", "owningbusinessunit": "lookup:businessunit",
          "owninguser": "lookup:systemuser", "owningteam": "lookup:team"}
_SOLUTION = {"solutionid": "guid", "componentstate": "int", "ismanaged": "bool",
             "overwritetime": "dt", "introducedversion": "str", "versionnumber": "bigint"}


def _spec(*parts, **cols):
    out = {}
    for p in parts:
        out.update(p)
    out.update(cols)
    return out


TABLES = [
    Table("mailbox", "mailboxes", "mailboxid", "name", _spec(
        _COMMON, _OWNED,
        name="str", emailaddress="str", username="str", ewsurl="str",
        incomingemailstatus="int", outgoingemailstatus="int", actstatus="int",
        mailboxstatus="int", incomingemaildeliverymethod="int",
        outgoingemaildeliverymethod="int", actdeliverymethod="int",
        enabledforincomingemail="bool", enabledforoutgoingemail="bool",
        enabledforact="bool", isforwardmailbox="bool", isserviceaccount="bool",
        isemailaddressapprovedbyo365admin="bool", emailrouteraccessapproval="int",
        lastsyncerrorcode="int", lastsyncerror="str", lastsyncerrorcount="int",
        lastsyncerrormachinename="str", lastsyncerroroccurredon="dt",
        lastsuccessfulsynccompletedon="dt", lastsyncstartedon="dt",
        itemsprocessedforlastsync="int", itemsfailedforlastsync="int",
        processemailreceivedafter="dt", receivingpostponeduntil="dt",
        receivingpostponeduntilforact="dt", postponemailboxprocessinguntil="dt",
        testmailboxaccesscompletedon="dt", verboseloggingenabled="int",
        transientfailurecount="int", noemailcount="int", noactcount="int",
        statecode="int", statuscode="int", versionnumber="bigint",
        emailserverprofile="lookup:emailserverprofile",
        regardingobjectid="lookup:queue,systemuser",
        organizationid="lookup:organization"),
        defaults={"statecode": 0, "statuscode": 1, "isforwardmailbox": False,
                  "isserviceaccount": False, "enabledforincomingemail": True,
                  "enabledforoutgoingemail": True, "enabledforact": True},
        labels={"incomingemailstatus": {0: "Not Run", 1: "Success", 2: "Failure"},
                "statecode": {0: "Active", 1: "Inactive"}}),
    Table("tracelog", "tracelogs", "tracelogid", "text", _spec(
        _COMMON,
        text="str", errordetails="str", errortypedisplay="str", level="int",
        tracecode="int", tracestatus="bool", machinename="str", isunique="bool",
        canbedeleted="bool", collationlevel="int", regardingobjecttypecode="str",
        traceactionxml="str", tracedetailxml="str", traceparameterxml="str",
        traceparameterhash="int",
        regardingobjectid="lookup:mailbox,emailserverprofile",
        parenttracelogid="lookup:tracelog", organizationid="lookup:organization"),
        defaults={"canbedeleted": True, "isunique": False, "tracestatus": False},
        labels={"level": {1: "Information", 2: "Warning", 3: "Error"}}),
    Table("workflow", "workflows", "workflowid", "name", _spec(
        _COMMON, _OWNED, _SOLUTION,
        name="str", uniquename="str", description="str", category="int", type="int",
        statecode="int", statuscode="int", mode="int", scope="int", runas="int",
        primaryentity="str", triggeroncreate="bool", triggerondelete="bool",
        triggeronupdateattributelist="str", syncworkflowlogonfailure="bool",
        ondemand="bool", subprocess="bool", rank="int", createstage="int",
        updatestage="int", deletestage="int", iscrmuiworkflow="bool",
        istransacted="bool", asyncautodelete="bool", businessprocesstype="int",
        processorder="int", languagecode="int", xaml="str", clientdata="str",
        inputparameters="str", formid="guid", uidata="str",
        parentworkflowid="lookup:workflow", activeworkflowid="lookup:workflow",
        sdkmessageid="lookup:sdkmessage", plugintypeid="lookup:sdkmessagefilter"),
        navs={"parentworkflowid": ("_parentworkflowid_value", "workflows"),
              "activeworkflowid": ("_activeworkflowid_value", "workflows")},
        defaults={"category": 0, "type": 1, "statecode": 0, "mode": 0, "scope": 4,
                  "runas": 1, "triggeroncreate": False, "triggerondelete": False,
                  "syncworkflowlogonfailure": False, "ondemand": False,
                  "subprocess": False, "iscrmuiworkflow": True, "ismanaged": False,
                  "componentstate": 0, "asyncautodelete": False},
        labels={"category": {0: "Workflow", 1: "Dialog", 2: "Business Rule",
                             3: "Action", 4: "Business Process Flow",
                             5: "Modern Flow", 6: "Desktop Flow"},
                "type": {1: "Definition", 2: "Activation", 3: "Template"},
                "statecode": {0: "Draft", 1: "Activated", 2: "Suspended"},
                "mode": {0: "Background", 1: "Real-time"}}),
    Table("processsession", "processsessions", "processsessionid", "name", _spec(
        _COMMON, _OWNED,
        name="str", activityname="str", comments="str", errorcode="int",
        statecode="int", statuscode="int", startedon="dt", completedon="dt",
        canceledon="dt", executedon="dt", stepname="str", processstagename="str",
        processstate="str", inputarguments="str", regardingobjecttypecode="str",
        processid="lookup:workflow", executedby="lookup:systemuser",
        startedby="lookup:systemuser", completedby="lookup:systemuser",
        canceledby="lookup:systemuser", originatingsessionid="lookup:processsession",
        previouslinkedsessionid="lookup:processsession",
        nextlinkedsessionid="lookup:processsession",
        regardingobjectid="lookup:email,appointment,contact,task,account,mailbox"),
        navs={"processid": ("_processid_value", "workflows")},
        defaults={},
        labels={"statuscode": {1: "Not Started", 2: "In Progress", 3: "Paused",
                               4: "Completed", 5: "Canceled", 6: "Failed"},
                "statecode": {0: "Incomplete", 1: "Complete"}}),
    Table("sdkmessageprocessingstep", "sdkmessageprocessingsteps",
          "sdkmessageprocessingstepid", "name", _spec(
        _COMMON, _SOLUTION,
        name="str", description="str", mode="int", stage="int", rank="int",
        statecode="int", statuscode="int", customizationlevel="int",
        filteringattributes="str", supporteddeployment="int",
        asyncautodelete="bool", invocationsource="int", configuration="str",
        category="str", canbebypassed="bool", canusereadonlyconnection="bool",
        enablepluginprofiler="bool", eventhandlertypecode="str",
        sdkmessageprocessingstepidunique="guid",
        sdkmessageid="lookup:sdkmessage", sdkmessagefilterid="lookup:sdkmessagefilter",
        plugintypeid="lookup:plugintype", eventhandler="lookup:plugintype,serviceendpoint",
        impersonatinguserid="lookup:systemuser",
        sdkmessageprocessingstepsecureconfigid="lookup:sdkmessageprocessingstepsecureconfig",
        organizationid="lookup:organization"),
        navs={"sdkmessageid": ("_sdkmessageid_value", "sdkmessages"),
              "sdkmessagefilterid": ("_sdkmessagefilterid_value", "sdkmessagefilters"),
              "plugintypeid": ("_plugintypeid_value", "plugintypes")},
        defaults={"mode": 0, "stage": 40, "rank": 1, "statecode": 0,
                  "customizationlevel": 1, "supporteddeployment": 0,
                  "asyncautodelete": False, "invocationsource": 0,
                  "ismanaged": False, "componentstate": 0, "canbebypassed": False,
                  "canusereadonlyconnection": False},
        labels={"mode": {0: "Synchronous", 1: "Asynchronous"},
                "stage": {10: "Pre-validation", 20: "Pre-operation",
                          40: "Post-operation"},
                "statecode": {0: "Enabled", 1: "Disabled"}}),
    Table("sdkmessage", "sdkmessages", "sdkmessageid", "name", _spec(
        _COMMON, _SOLUTION,
        name="str", categoryname="str", isprivate="bool", isactive="bool",
        isreadonly="bool", autotransact="bool", availability="int",
        customizationlevel="int", expand="bool", template="bool",
        workflowsdkstepenabled="bool", isvalidforexecuteasync="bool",
        executeprivilegename="str", throttlesettings="str",
        sdkmessageidunique="guid", organizationid="lookup:organization"),
        defaults={"isprivate": False, "isactive": True, "availability": 0,
                  "customizationlevel": 0, "ismanaged": True, "componentstate": 0}),
    Table("sdkmessagefilter", "sdkmessagefilters", "sdkmessagefilterid", "name", _spec(
        _COMMON, _SOLUTION,
        name="str", primaryobjecttypecode="str", secondaryobjecttypecode="str",
        iscustomprocessingstepallowed="bool", isvisible="bool", availability="int",
        customizationlevel="int", restrictionlevel="int",
        workflowsdkstepenabled="bool", sdkmessagefilteridunique="guid",
        sdkmessageid="lookup:sdkmessage", organizationid="lookup:organization"),
        navs={"sdkmessageid": ("_sdkmessageid_value", "sdkmessages")},
        defaults={"secondaryobjecttypecode": "none", "iscustomprocessingstepallowed": True,
                  "isvisible": True, "availability": 0, "customizationlevel": 0,
                  "ismanaged": True, "componentstate": 0}),
    Table("plugintype", "plugintypes", "plugintypeid", "name", _spec(
        _COMMON, _SOLUTION,
        name="str", typename="str", friendlyname="str", assemblyname="str",
        description="str", isworkflowactivity="bool", culture="str",
        publickeytoken="str", version="str", major="int", minor="int",
        customizationlevel="int", workflowactivitygroupname="str",
        customworkflowactivityinfo="str", plugintypeexportkey="str",
        plugintypeidunique="guid",
        pluginassemblyid="lookup:pluginassembly", organizationid="lookup:organization"),
        navs={"pluginassemblyid": ("_pluginassemblyid_value", "pluginassemblies")},
        defaults={"isworkflowactivity": False, "customizationlevel": 1,
                  "culture": "neutral", "ismanaged": False, "componentstate": 0}),
    Table("plugintracelog", "plugintracelogs", "plugintracelogid", "typename", _spec(
        typename="str", messagename="str", primaryentity="str", mode="int",
        operationtype="int", depth="int", exceptiondetails="str",
        messageblock="str", pluginstepid="guid", correlationid="guid",
        requestid="guid", persistencekey="guid", organizationid="guid",
        issystemcreated="bool", performanceexecutionduration="int",
        performanceexecutionstarttime="dt", performanceconstructorduration="int",
        performanceconstructorstarttime="dt", configuration="str",
        secureconfiguration="str", profile="str", createdon="dt",
        createdby="lookup:systemuser", createdonbehalfby="lookup:systemuser"),
        defaults={"issystemcreated": False, "operationtype": 1, "depth": 1},
        labels={"mode": {0: "Synchronous", 1: "Asynchronous"},
                "operationtype": {0: "Unknown", 1: "Plug-in", 2: "Workflow Activity"}}),
    # pluginassembly.md: password is not valid for read; iscustomizable and ishidden
    # are managed-property complex types (left out)
    Table("pluginassembly", "pluginassemblies", "pluginassemblyid", "name", _spec(
        _COMMON, _SOLUTION,
        name="str", version="str", culture="str", publickeytoken="str", description="str",
        isolationmode="int", sourcetype="int", sourcehash="str", path="str", url="str",
        username="str", authtype="int", content="str", major="int", minor="int",
        customizationlevel="int", ispasswordset="bool", pluginassemblyidunique="guid",
        packageid="lookup:pluginpackage", managedidentityid="lookup:managedidentity",
        organizationid="lookup:organization"),
        defaults={"isolationmode": 2, "sourcetype": 0, "culture": "neutral",
                  "customizationlevel": 1, "ismanaged": False, "componentstate": 0,
                  "ispasswordset": False},
        labels={"isolationmode": {1: "None", 2: "Sandbox", 3: "External"},
                "sourcetype": {0: "Database", 1: "Disk", 2: "Normal", 3: "AzureWebApp",
                               4: "File Store"}}),
]
TABLES_BY_SET = {t.set_name: t for t in TABLES}
SCHEMA_NAMES = {"mailbox": "Mailbox", "tracelog": "TraceLog", "workflow": "Workflow",
                "processsession": "ProcessSession",
                "sdkmessageprocessingstep": "SdkMessageProcessingStep",
                "sdkmessage": "SdkMessage", "sdkmessagefilter": "SdkMessageFilter",
                "plugintype": "PluginType", "plugintracelog": "PluginTraceLog",
                "pluginassembly": "PluginAssembly"}
TABLES_BY_LOGICAL = {t.logical: t for t in TABLES}

# statuscode that goes with a statecode, when a row gives only the latter
STATUS_FOR_STATE = {
    "workflows": {0: 1, 1: 2, 2: 3},
    "sdkmessageprocessingsteps": {0: 1, 1: 2},
    "mailboxes": {0: 1, 1: 2},
}


# --------------------------------------------------------------------------
# Time

_DT_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,7})?)?"
                    r"(Z|[+-]\d{2}:\d{2})$")
_REL_RE = re.compile(r"^now((?:[+-](?:\d+(?:\.\d+)?[smhd])+)*)$")
_REL_TERM_RE = re.compile(r"([+-])((?:\d+(?:\.\d+)?[smhd])+)")
_REL_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_iso(text):
    """ISO 8601 datetime with Z or offset -> epoch seconds (float), else None."""
    m = _DT_RE.match(text)
    if not m:
        return None
    y, mo, d, hh, mi = (int(m.group(i)) for i in range(1, 6))
    ss = int(m.group(6) or 0)
    if not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mi <= 59 and ss <= 59):
        return None
    try:
        t = calendar.timegm((y, mo, d, hh, mi, ss, 0, 0, 0))
        time.gmtime(t)
        # reject 2026-02-31 and friends
        if time.gmtime(t)[:3] != (y, mo, d):
            return None
    except (OverflowError, ValueError):
        return None
    if m.group(7):
        t += float(m.group(7))
    tz = m.group(8)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        t -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return t


_REL_FAST = re.compile(r"^now-(\d+)s$")


def parse_time(value, now):
    """A scenario datetime: ISO 8601 or "now[+-]N[smhd]..." -> epoch seconds.
    Kept to the millisecond like the service's SQL datetime columns; the Web API
    serves them truncated to the second (fmt_time)."""
    if not isinstance(value, str):
        raise ValueError("a datetime must be a string")
    m = _REL_FAST.match(value)
    if m:
        return round(now - int(m.group(1)), 3)
    m = _REL_RE.match(value.strip())
    if m:
        t = now
        for sign, parts in _REL_TERM_RE.findall(m.group(1)):
            secs = sum(float(n) * _UNIT[u] for n, u in _REL_PART_RE.findall(parts))
            t += secs if sign == "+" else -secs
        return round(t, 3)
    t = parse_iso(value)
    if t is None:
        raise ValueError("not an ISO 8601 datetime with Z or offset, nor now[+-]N[smhd]: %r"
                         % value)
    return round(t, 3)


def fmt_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# --------------------------------------------------------------------------
# Rows and environments

def new_guid():
    return str(uuid.uuid4())


def coerce(col, value, now, where):
    """Validate and convert one scenario/admin value for column col."""
    if value is None:
        return None
    k = col.kind
    if k in ("guid", "lookup"):
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise ScenarioError("%s: %s must be a GUID, got %r" % (where, col.name, value))
        return value.lower()
    if k == "str":
        if not isinstance(value, str):
            raise ScenarioError("%s: %s must be a string, got %r" % (where, col.name, value))
        return value
    if k in ("int", "bigint"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError("%s: %s must be an integer, got %r" % (where, col.name, value))
        lim = 2 ** 31 if k == "int" else 2 ** 63
        if not -lim <= value < lim:
            raise ScenarioError("%s: %s out of range: %r" % (where, col.name, value))
        return value
    if k == "bool":
        if not isinstance(value, bool):
            raise ScenarioError("%s: %s must be true or false, got %r" % (where, col.name, value))
        return value
    if k == "dt":
        try:
            return parse_time(value, now)
        except ValueError as e:
            raise ScenarioError("%s: %s: %s" % (where, col.name, e))
    raise AssertionError(k)


LK_SUFFIX = "@Microsoft.Dynamics.CRM.lookuplogicalname"


class TableData:
    def __init__(self, schema):
        self.schema = schema
        self.rows = {}          # pk -> row dict (column -> value, "@v" version, "@lk")
        self._indexes = {}      # column -> index, dropped on every write

    def changed(self):
        self._indexes = {}

    def sorted_index(self, colname):
        key = ("sorted", colname)
        idx = self._indexes.get(key)
        if idx is None:
            pairs = sorted((r[colname], pk) for pk, r in self.rows.items()
                           if r.get(colname) is not None)
            idx = ([p[0] for p in pairs], [self.rows[p[1]] for p in pairs])
            self._indexes[key] = idx
        return idx

    def hash_index(self, colname):
        key = ("hash", colname)
        idx = self._indexes.get(key)
        if idx is None:
            idx = {}
            for r in self.rows.values():
                v = r.get(colname)
                if v is not None:
                    idx.setdefault(v, []).append(r)
            self._indexes[key] = idx
        return idx


class Env:
    def __init__(self, name, tenant, client_id, client_secret, token_lifetime=None,
                 deny_read=()):
        self.name = name
        self.tenant = tenant
        self.client_id = client_id.lower()
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.deny_read = set(deny_read)
        self.tables = {t.set_name: TableData(t) for t in TABLES}
        self.version = 1000
        self.user_id = new_guid()
        self.org_id = new_guid()
        self.bu_id = new_guid()

    def next_version(self):
        self.version += 1
        return self.version

    def make_row(self, schema, data, now, where, existing=None):
        """Validate data (a JSON object) into a stored row; merge into existing."""
        if not isinstance(data, dict):
            raise ScenarioError("%s: a row must be a JSON object" % where)
        # rows are sparse: only non-null columns are stored (read them with .get)
        row = dict(existing) if existing else {}
        lk = dict(existing["@lk"]) if existing else {}
        cols = schema.cols
        for key, value in data.items():
            col = cols.get(key)
            if col is None:
                if key.endswith(LK_SUFFIX):
                    base = key[:-len(LK_SUFFIX)]
                    col = cols.get(base)
                    if col is None or col.kind != "lookup":
                        raise ScenarioError("%s: %s: %s is not a lookup column of %s"
                                            % (where, key, base, schema.logical))
                    if value not in col.targets:
                        raise ScenarioError("%s: %s must be one of %s"
                                            % (where, key, col.targets))
                    lk[base] = value
                    continue
                hint = ""
                if key in schema.lookup_by_logical:
                    hint = " (a lookup: write _%s_value)" % key
                raise ScenarioError("%s: unknown column %r for %s%s"
                                    % (where, key, schema.set_name, hint))
            k = col.kind
            if value is None:
                row.pop(key, None)
            elif k == "str" and type(value) is str:
                row[key] = value
            elif k == "dt" and type(value) is str and value.startswith("now-") \
                    and value.endswith("s") and value[4:-1].isdigit():
                row[key] = round(now - int(value[4:-1]), 3)
            elif k in ("guid", "lookup") and type(value) is str and len(value) == 36 \
                    and _GUID_LOWER.match(value):
                row[key] = value
            elif k == "int" and type(value) is int and -2147483648 <= value <= 2147483647:
                row[key] = value
            else:
                row[key] = coerce(col, value, now, where)
        if not existing:
            for key, value in schema.defaults.items():
                if key not in data:
                    row[key] = value
            if row.get(schema.pk) is None:
                row[schema.pk] = new_guid()
            for c in ("createdon", "modifiedon"):
                if c in schema.cols and c not in data:
                    row[c] = round(now, 3)
            if "modifiedon" in schema.cols and row.get("createdon") is not None and \
                    "modifiedon" not in data:
                row["modifiedon"] = max(row["modifiedon"], row["createdon"])
        status_map = STATUS_FOR_STATE.get(schema.set_name)
        if status_map and "statecode" in data and "statuscode" not in data:
            if row.get("statecode") in status_map:
                row["statuscode"] = status_map[row["statecode"]]
        if "_organizationid_value" in schema.cols and row.get("_organizationid_value") is None:
            row["_organizationid_value"] = self.org_id
        if "organizationid" in schema.cols and row.get("organizationid") is None:
            row["organizationid"] = self.org_id
        for c, col in (schema.lookup_cols if (existing or any(
                k[0] == "_" for k in data)) else ()):
            if row.get(c) is None:
                if c in lk:
                    del lk[c]
            elif c not in lk:
                lk[c] = col.targets[0]
        row["@lk"] = lk
        return row

    def check_lookups(self, schema, row, where):
        """Single-table lookups into simulated tables must point at a row."""
        for c, first, sets, multi in schema.lookup_checks():
            v = row.get(c)
            if v is None:
                continue
            target = row["@lk"].get(c, first)
            if multi and target != "mailbox":
                continue
            set_name = sets.get(target)
            if set_name is not None and v not in self.tables[set_name].rows:
                raise ScenarioError("%s: %s = %s: no such %s row" % (where, c, v, set_name))

    def upsert(self, set_name, data, now, where, check=True):
        td = self.tables[set_name]
        schema = td.schema
        pk = data.get(schema.pk) if isinstance(data, dict) else None
        if isinstance(pk, str):
            pk = pk.lower()
        existing = td.rows.get(pk) if pk else None
        row = self.make_row(schema, data, now, where, existing)
        if existing and "modifiedon" in schema.cols and "modifiedon" not in data:
            row["modifiedon"] = round(now, 3)
        if check:
            self.check_lookups(schema, row, where)
        row["@v"] = self.next_version()
        if "versionnumber" in schema.cols:
            row["versionnumber"] = row["@v"]
        td.rows[row[schema.pk]] = row
        td.changed()
        return row, existing is not None


# --------------------------------------------------------------------------
# What an administrator changes, as the service records it (admin API
# POST /_admin/<env>/<set>/<id>/<action>). Each moves the changed rows'
# modifiedon (to "at", default now).
#
# Workflows: activating a definition creates an activation row (type 2, a
# snapshot of the definition, _parentworkflowid_value = it, its own createdon)
# and points the definition's activeworkflowid at it; deactivating deletes the
# activation rows unless an incomplete process session (statecode 0) still runs
# on one, and clears activeworkflowid. An activated workflow cannot be edited:
# switching it to background (or back) is deactivate, edit, activate.
# Sources: "Workflows - behind the scene" (inogic.com, 2010), "CRM 2011 workflows
# being duplicated" (crmfortress.com, 2013), the Microsoft forum thread "Type field
# on process (workflow) entity" (2014): activations are kept only while incomplete
# instances use them; workflow.md: activeworkflowid is "the latest activation".
# Steps: disabling is statecode 1 / statuscode 2; an asynchronous step runs
# post-operation (stage 40). An assembly upload changes the pluginassembly row
# (version, major, minor, sourcehash, modifiedon) and neither its types nor steps.

ACTIONS = {
    "workflows": ("activate", "deactivate", "background", "realtime", "delete"),
    "sdkmessageprocessingsteps": ("disable", "enable", "asynchronous", "synchronous",
                                  "delete"),
    "pluginassemblies": ("upload",),
}
_NOT_COPIED = {"@v", "@lk", "workflowid", "createdon", "modifiedon", "versionnumber",
               "_activeworkflowid_value", "_parentworkflowid_value"}


class Change:
    """One administrator action on one environment; .changed lists the rows."""

    def __init__(self, env, at):
        self.env, self.at, self.changed = env, round(at, 3), []

    def update(self, set_name, key, cols):
        td = self.env.tables[set_name]
        row = td.rows[key]
        for k, v in cols.items():
            if v is None:
                row.pop(k, None)
                row["@lk"].pop(k, None)
            else:
                row[k] = v
        row["modifiedon"] = self.at
        row["@v"] = self.env.next_version()
        if "versionnumber" in td.schema.cols:
            row["versionnumber"] = row["@v"]
        td.changed()
        self.changed.append({"set": set_name, "id": key, "op": "updated"})
        return row

    def delete(self, set_name, key):
        td = self.env.tables[set_name]
        del td.rows[key]
        td.changed()
        self.changed.append({"set": set_name, "id": key, "op": "deleted"})

    # ---- workflows -------------------------------------------------------
    def activate(self, wid):
        wf = self.env.tables["workflows"].rows[wid]
        act = {k: v for k, v in wf.items() if k not in _NOT_COPIED}
        aid = new_guid()
        act.update(workflowid=aid, type=2, statecode=1, statuscode=2,
                   _parentworkflowid_value=wid, createdon=self.at, modifiedon=self.at)
        act["@lk"] = {k: v for k, v in wf["@lk"].items() if k in act}
        act["@lk"]["_parentworkflowid_value"] = "workflow"
        act["@v"] = self.env.next_version()
        if "versionnumber" in act or "versionnumber" in wf:
            act["versionnumber"] = act["@v"]
        td = self.env.tables["workflows"]
        td.rows[aid] = act
        self.changed.append({"set": "workflows", "id": aid, "op": "inserted"})
        self.update("workflows", wid, {"statecode": 1, "statuscode": 2})
        wf["_activeworkflowid_value"] = aid
        wf["@lk"]["_activeworkflowid_value"] = "workflow"
        return wf

    def deactivate(self, wid):
        running = {s.get("_processid_value") for s in
                   self.env.tables["processsessions"].rows.values() if s.get("statecode") == 0}
        for aid in [k for k, w in self.env.tables["workflows"].rows.items()
                    if w.get("type") == 2 and w.get("_parentworkflowid_value") == wid]:
            if aid not in running:
                self.delete("workflows", aid)
        return self.update("workflows", wid, {"statecode": 0, "statuscode": 1,
                                              "_activeworkflowid_value": None})

    def workflow(self, wid, action):
        wf = self.env.tables["workflows"].rows[wid]
        if wf.get("type") != 1:
            raise ValueError("workflow %s is not a definition (type 1): activations and "
                             "templates change through their definition" % wid)
        active = wf.get("statecode") == 1
        if action == "activate":
            if active:
                raise ValueError("workflow %s is already activated" % wid)
            return self.activate(wid)
        if action == "deactivate":
            if not active:
                raise ValueError("workflow %s is not activated" % wid)
            return self.deactivate(wid)
        if action == "delete":
            if active:
                self.deactivate(wid)
            for aid in [k for k, w in self.env.tables["workflows"].rows.items()
                        if w.get("_parentworkflowid_value") == wid]:
                self.delete("workflows", aid)
            self.delete("workflows", wid)
            return None
        mode = 0 if action == "background" else 1
        if wf.get("mode") == mode:
            raise ValueError("workflow %s already has mode %d" % (wid, mode))
        if active:
            self.deactivate(wid)
        self.update("workflows", wid, {"mode": mode})
        return self.activate(wid) if active else wf

    # ---- steps and assemblies ---------------------------------------------
    def step(self, sid, action):
        step = self.env.tables["sdkmessageprocessingsteps"].rows[sid]
        if action == "delete":
            self.delete("sdkmessageprocessingsteps", sid)
            return None
        cols = {"disable": {"statecode": 1, "statuscode": 2},
                "enable": {"statecode": 0, "statuscode": 1},
                "asynchronous": {"mode": 1, "stage": 40},
                "synchronous": {"mode": 0}}[action]
        if all(step.get(k) == v for k, v in cols.items()):
            raise ValueError("step %s is already %s" % (sid, action.replace("able", "abled")))
        return self.update("sdkmessageprocessingsteps", sid, cols)

    def upload(self, pid, version=None):
        asm = self.env.tables["pluginassemblies"].rows[pid]
        if version is None:
            parts = [int(x) for x in re.findall(r"\d+", asm.get("version") or "1.0.0.0")][:4]
            parts += [0] * (4 - len(parts))
            parts[3] += 1
            version = ".".join(map(str, parts))
        if not isinstance(version, str) or not re.match(r"^\d+(\.\d+){1,3}$", version):
            raise ValueError("version is major.minor[.build[.revision]], got %r" % (version,))
        major, minor = (int(x) for x in version.split(".")[:2])
        return self.update("pluginassemblies", pid, {
            "version": version, "major": major, "minor": minor,
            "sourcehash": hashlib.sha256(("%s@%s" % (version, self.at)).encode()).hexdigest()})


def admin_change(env, set_name, key, action, data, now):
    """Apply action to env's row; -> (the row afterwards or None, changed rows)."""
    data = data if isinstance(data, dict) else {}
    unknown = set(data) - {"at", "version"}
    if unknown:
        raise ValueError("unknown field(s) %s (known: at, version)" % sorted(unknown))
    if action not in ACTIONS.get(set_name, ()):
        raise ValueError("%s has no action %r (actions: %s)" % (
            set_name, action, ", ".join(ACTIONS.get(set_name, ())) or "none"))
    if key not in env.tables[set_name].rows:
        raise KeyError(key)
    try:
        at = parse_time(data.get("at", "now"), now)
    except ValueError as e:
        raise ValueError("at: %s" % e)
    change = Change(env, at)
    if set_name == "workflows":
        row = change.workflow(key, action)
    elif set_name == "sdkmessageprocessingsteps":
        row = change.step(key, action)
    else:
        row = change.upload(key, data.get("version"))
    return row, change.changed


# --------------------------------------------------------------------------
# OData $filter: tokenizer, parser, type checker and compiler

class Tok:
    __slots__ = ("kind", "value", "pos", "text")

    def __init__(self, kind, value, pos, text):
        self.kind, self.value, self.pos, self.text = kind, value, pos, text


_LEX = [
    ("dt", re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?"
                      r"(?:Z|[+-]\d{2}:\d{2})")),
    ("guid", re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
                        r"[0-9A-Fa-f]{12}")),
    ("date", re.compile(r"\d{4}-\d{2}-\d{2}")),
    ("num", re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[LlMmDdFf]?")),
    ("ident", re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")),
    ("alias", re.compile(r"@[A-Za-z_][A-Za-z0-9_]*")),
]
_IDCHAR = re.compile(r"[A-Za-z0-9_.]")


def tokenize(text):
    toks = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "'":
            j = i + 1
            buf = []
            while True:
                if j >= n:
                    raise query_error("There is an unterminated string literal at position "
                                      "%d in '%s'." % (i, text))
                if text[j] == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        buf.append("'")
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            toks.append(Tok("str", "".join(buf), i, text[i:j + 1]))
            i = j + 1
            continue
        if c in "(),/[]=":
            toks.append(Tok(c, c, i, c))
            i += 1
            continue
        for kind, rx in _LEX:
            m = rx.match(text, i)
            if not m:
                continue
            end = m.end()
            if kind not in ("ident", "alias") and end < n and _IDCHAR.match(text[end]):
                continue
            toks.append(Tok(kind, m.group(0), i, m.group(0)))
            i = end
            break
        else:
            raise query_error("Syntax error: character '%s' is not valid at position %d in "
                              "'%s'." % (c, i, text))
    toks.append(Tok("end", None, n, ""))
    return toks


CMP_OPS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan",
           "ge": "GreaterThanOrEqual", "lt": "LessThan", "le": "LessThanOrEqual"}
UNSUPPORTED_OPS = {"has", "in", "add", "sub", "mul", "div", "divby", "mod"}
STD_FUNCS = {"contains", "startswith", "endswith"}
UNSUPPORTED_FUNCS = {"tolower", "toupper", "trim", "concat", "length", "indexof",
                     "substring", "year", "month", "day", "hour", "minute", "second",
                     "fractionalseconds", "date", "time", "now", "round", "floor",
                     "ceiling", "cast", "isof", "totaloffsetminutes", "maxdatetime",
                     "mindatetime", "totalseconds", "matchesPattern", "any", "all",
                     "geo.distance", "geo.intersects", "geo.length"}
CRM_NS = "Microsoft.Dynamics.CRM."


class Parser:
    """Recursive descent over OData's boolean expression grammar -> tuples."""

    def __init__(self, text, aliases):
        self.text = text
        self.aliases = aliases
        self.toks = tokenize(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def take(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_word(self, word):
        t = self.peek()
        return t.kind == "ident" and t.value == word

    def syntax(self, tok=None):
        tok = tok or self.peek()
        return query_error("Syntax error at position %d in '%s'." % (tok.pos, self.text))

    def expect(self, kind):
        t = self.peek()
        if t.kind != kind:
            if t.kind == "end":
                raise query_error("'%s' expected at position %d in '%s'."
                                  % (kind, t.pos, self.text))
            raise self.syntax(t)
        return self.take()

    def parse(self):
        if self.peek().kind == "end":
            raise query_error("Expression expected at position 0 in '%s'." % self.text)
        node = self.parse_or()
        if self.peek().kind != "end":
            raise self.syntax()
        return node

    def parse_or(self):
        left = self.parse_and()
        while self.is_word("or"):
            self.take()
            left = ("or", left, self.parse_and())
        return left

    def parse_and(self):
        left = self.parse_cmp()
        while self.is_word("and"):
            self.take()
            left = ("and", left, self.parse_cmp())
        return left

    def parse_cmp(self):
        left = self.parse_unary()
        t = self.peek()
        if t.kind == "ident" and t.value in CMP_OPS:
            self.take()
            right = self.parse_unary()
            return ("cmp", t.value, left, right)
        if t.kind == "ident" and t.value in UNSUPPORTED_OPS:
            raise query_error("The '%s' operator is not supported at position %d in '%s'."
                              % (t.value, t.pos, self.text))
        return left

    def parse_unary(self):
        if self.is_word("not"):
            self.take()
            return ("not", self.parse_unary())
        return self.parse_primary()

    def parse_primary(self):
        t = self.take()
        if t.kind == "(":
            node = self.parse_or()
            self.expect(")")
            return node
        if t.kind == "str":
            return ("lit", "Edm.String", t.value)
        if t.kind == "guid":
            return ("lit", "Edm.Guid", t.value.lower())
        if t.kind == "dt":
            v = parse_iso(t.value)
            if v is None:
                raise query_error("The DateTimeOffset text '%s' should be in format "
                                  "'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field "
                                  "value is within valid range." % t.value)
            return ("lit", "Edm.DateTimeOffset", v)
        if t.kind == "date":
            return ("lit", "Edm.Date", t.value)
        if t.kind == "num":
            return self.number(t)
        if t.kind == "alias":
            if t.value not in self.aliases:
                raise query_error("Parameter alias '%s' was not found." % t.value)
            return Parser(self.aliases[t.value], {}).parse_value()
        if t.kind == "ident":
            if t.value in ("true", "false"):
                return ("lit", "Edm.Boolean", t.value == "true")
            if t.value == "null":
                return ("lit", "null", None)
            if self.peek().kind == "(":
                return self.call(t)
            path = [t.value]
            while self.peek().kind == "/":
                self.take()
                seg = self.take()
                if seg.kind != "ident":
                    raise self.syntax(seg)
                if seg.value in ("any", "all"):
                    raise query_error("Lambda operator '%s' is not supported on "
                                      "single-valued navigation at position %d in '%s'."
                                      % (seg.value, seg.pos, self.text))
                path.append(seg.value)
            return ("prop", path, t.pos)
        if t.kind == "end":
            raise query_error("Expression expected at position %d in '%s'."
                              % (t.pos, self.text))
        raise self.syntax(t)

    def parse_value(self):
        node = self.parse_primary()
        if self.peek().kind != "end":
            raise self.syntax()
        return node

    def number(self, t):
        s = t.value
        suffix = s[-1] if s[-1] in "LlMmDdFf" else ""
        body = s[:-1] if suffix else s
        if suffix in ("L", "l"):
            return ("lit", "Edm.Int64", int(body))
        if suffix or "." in body or "e" in body or "E" in body:
            return ("lit", "Edm.Decimal", float(body))
        v = int(body)
        return ("lit", "Edm.Int32" if -2 ** 31 <= v < 2 ** 31 else "Edm.Int64", v)

    def call(self, name_tok):
        name = name_tok.value
        self.expect("(")
        if name.startswith(CRM_NS):
            params = {}
            while self.peek().kind != ")":
                key = self.expect("ident")
                self.expect("=")
                if self.peek().kind == "[":
                    self.take()
                    vals = []
                    while self.peek().kind != "]":
                        v = self.take()
                        if v.kind not in ("str", "num"):
                            raise self.syntax(v)
                        vals.append(v.value)
                        if self.peek().kind == ",":
                            self.take()
                        elif self.peek().kind != "]":
                            raise self.syntax()
                    self.take()
                    params[key.value] = vals
                else:
                    v = self.take()
                    if v.kind not in ("str", "num"):
                        raise self.syntax(v)
                    params[key.value] = v.value if v.kind == "str" else int(v.value)
                if self.peek().kind == ",":
                    self.take()
                elif self.peek().kind != ")":
                    raise self.syntax()
            self.take()
            return ("crm", name[len(CRM_NS):], params, name_tok.pos)
        args = []
        if self.peek().kind != ")":
            while True:
                args.append(self.parse_or())
                if self.peek().kind == ",":
                    self.take()
                    continue
                break
        t = self.peek()
        if t.kind != ")":
            raise query_error("')' or ',' expected at position %d in '%s'."
                              % (t.pos, self.text))
        self.take()
        return ("call", name, args, name_tok.pos)


NUMERIC = {"Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double", "Edm.Single"}


def _and3(a, b):
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or3(a, b):
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _norm(edm, v):
    """Comparable form of a value: strings compare case-insensitively (SQL)."""
    if v is None:
        return None
    if edm == "Edm.String":
        return v.casefold()
    return v


class FilterCompiler:
    """Type-checks a parsed $filter against a table and compiles it to a
    function row -> True/False/None (SQL's three-valued logic)."""

    def __init__(self, env, schema, text, aliases=None):
        self.env = env
        self.schema = schema
        self.text = text
        self.aliases = aliases or {}

    def not_found(self, name, schema):
        return query_error("Could not find a property named '%s' on type '%s'."
                           % (name, schema.type_name))

    def resolve(self, path):
        """path -> (edm type, getter, column or None, schema of the last hop)."""
        schema = self.schema
        hops = []
        for i, seg in enumerate(path):
            last = i == len(path) - 1
            if seg in schema.navs:
                col, target = schema.navs[seg]
                if target in self.env.deny_read:
                    raise privilege_error(self.env, TABLES_BY_SET[target])
                hops.append((col, TABLES_BY_SET[target]))
                schema = TABLES_BY_SET[target]
                if last:
                    return (schema.type_name, None, None, schema)
                continue
            col = schema.cols.get(seg)
            if col is None:
                raise self.not_found(seg, schema)
            if not last:
                raise query_error("The parent value for a property access of a property "
                                  "'%s' is not a single value. Property access can only "
                                  "be applied to a single value." % path[i + 1])
            getter = self.getter(hops, seg)
            return (col.edm, getter, col, schema)
        raise AssertionError("empty path")

    def getter(self, hops, colname):
        if not hops:
            def get1(row):
                return row.get(colname)
            return get1
        env = self.env
        steps = [(col, env.tables[s.set_name].rows) for col, s in hops]

        def get(row):
            for col, rows in steps:
                key = row.get(col)
                if key is None:
                    return None
                row = rows.get(key)
                if row is None:
                    return None
            return row.get(colname)
        return get

    def compile(self):
        node = Parser(self.text, self.aliases).parse()
        edm, fn = self.expr(node)
        if edm != "Edm.Boolean":
            raise query_error("The $filter expression must evaluate to a single boolean "
                              "value.")
        return node, fn

    def expr(self, node):
        kind = node[0]
        if kind in ("and", "or"):
            lt, lf = self.expr(node[1])
            rt, rf = self.expr(node[2])
            if lt != "Edm.Boolean" or rt != "Edm.Boolean":
                raise query_error("A binary operator with incompatible types was detected. "
                                  "Found operand types '%s' and '%s' for operator kind '%s'."
                                  % (lt, rt, "And" if kind == "and" else "Or"))
            f3 = _and3 if kind == "and" else _or3
            return "Edm.Boolean", (lambda row: f3(lf(row), rf(row)))
        if kind == "not":
            t, f = self.expr(node[1])
            if t != "Edm.Boolean":
                raise query_error("A unary operator with an incompatible type was detected. "
                                  "Found operand type '%s' for operator kind 'Not'." % t)

            def neg(row):
                v = f(row)
                return None if v is None else not v
            return "Edm.Boolean", neg
        if kind == "lit":
            v = node[2]
            return node[1], (lambda row: v)
        if kind == "prop":
            edm, getter, _col, _s = self.resolve(node[1])
            if getter is None:
                return edm, None
            return edm, getter
        if kind == "cmp":
            return self.cmp(node)
        if kind == "call":
            return self.call(node)
        if kind == "crm":
            return self.crm(node)
        raise AssertionError(kind)

    def cmp(self, node):
        _, op, ln, rn = node
        lt, lf = self.expr(ln)
        rt, rf = self.expr(rn)
        opname = CMP_OPS[op]
        ok = (lt == "null" or rt == "null" or (lt in NUMERIC and rt in NUMERIC)
              or (lt == rt and lf is not None))
        if not ok or lf is None or rf is None:
            raise query_error("A binary operator with incompatible types was detected. "
                              "Found operand types '%s' and '%s' for operator kind '%s'."
                              % (lt, rt, opname))
        pyop = getattr(operator, op)
        if rn[0] == "lit" and rn[1] == "null":
            if op == "eq":
                return "Edm.Boolean", (lambda row: lf(row) is None)
            if op == "ne":
                return "Edm.Boolean", (lambda row: lf(row) is not None)
            return "Edm.Boolean", (lambda row: None)
        if ln[0] == "lit" and ln[1] == "null":
            if op == "eq":
                return "Edm.Boolean", (lambda row: rf(row) is None)
            if op == "ne":
                return "Edm.Boolean", (lambda row: rf(row) is not None)
            return "Edm.Boolean", (lambda row: None)
        edm = lt if lt != "null" else rt
        if rn[0] == "lit":
            c = _norm(edm, rn[2])
            if edm == "Edm.String":
                def f(row):
                    v = lf(row)
                    return None if v is None else pyop(v.casefold(), c)
            else:
                def f(row):
                    v = lf(row)
                    return None if v is None else pyop(v, c)
            return "Edm.Boolean", f

        def g(row):
            a, b = lf(row), rf(row)
            if a is None or b is None:
                return None
            return pyop(_norm(edm, a), _norm(edm, b))
        return "Edm.Boolean", g

    def call(self, node):
        _, name, args, pos = node
        if name in STD_FUNCS:
            if len(args) != 2:
                raise query_error("The function '%s' requires 2 arguments." % name)
            (at, af), (bt, bf) = self.expr(args[0]), self.expr(args[1])
            if at != "Edm.String" or bt != "Edm.String" or af is None or bf is None:
                raise query_error("No function signature for the function with name '%s' "
                                  "matches the specified arguments. The function signatures "
                                  "considered are: %s(Edm.String Nullable=true, Edm.String "
                                  "Nullable=true)." % (name, name))
            test = {"contains": lambda v, s: s in v,
                    "startswith": lambda v, s: v.startswith(s),
                    "endswith": lambda v, s: v.endswith(s)}[name]

            def f(row):
                v, s = af(row), bf(row)
                if v is None or s is None:
                    return None
                return test(v.casefold(), s.casefold())
            return "Edm.Boolean", f
        if name in UNSUPPORTED_FUNCS:
            raise query_error("The '%s' function is not supported." % name)
        raise query_error("An unknown function with name '%s' was found. This may also be a "
                          "function import or a key lookup on a navigation property, which "
                          "is not allowed." % name)

    def crm_value(self, col, raw, fname):
        try:
            if col.kind in ("int", "bigint"):
                return int(raw)
            if col.kind in ("guid", "lookup"):
                if not GUID_RE.match(str(raw)):
                    raise ValueError
                return str(raw).lower()
            if col.kind == "bool":
                if str(raw).lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return str(raw).lower() in ("true", "1")
            if col.kind == "dt":
                v = parse_iso(str(raw))
                if v is None:
                    raise ValueError
                return v
            return str(raw).casefold()
        except ValueError:
            raise query_error("The value '%s' of PropertyValues for %s cannot be converted "
                              "to the type of attribute '%s'." % (raw, fname, col.name))

    def crm(self, node):
        _, name, params, pos = node
        full = CRM_NS + name
        prop = params.get("PropertyName")
        if name in ("In", "NotIn", "Between", "NotBetween", "LastXHours", "LastXMinutes",
                    "LastXDays", "OlderThanXMinutes", "OlderThanXHours", "OlderThanXDays"):
            if not isinstance(prop, str):
                raise query_error("The parameter 'PropertyName' of function '%s' is missing "
                                  "or not a string." % full)
            col = self.schema.cols.get(prop)
            if col is None:
                raise self.not_found(prop, self.schema)
            cname = col.name

            def get(row):
                return row.get(cname)
            is_str = col.kind == "str"
        else:
            raise query_error("An unknown function with name '%s' was found. This may also "
                              "be a function import or a key lookup on a navigation "
                              "property, which is not allowed. (dvsim simulates In, NotIn, "
                              "Between, NotBetween, LastX*, OlderThanX*.)" % full)
        if name in ("In", "NotIn", "Between", "NotBetween"):
            vals = params.get("PropertyValues")
            if not isinstance(vals, list) or not vals:
                raise query_error("The parameter 'PropertyValues' of function '%s' must be a "
                                  "non-empty collection." % full)
            vals = [self.crm_value(col, v, full) for v in vals]
            if name in ("In", "NotIn"):
                s = set(vals)
                want = name == "In"

                def f(row):
                    v = get(row)
                    if v is None:
                        return None
                    return ((v.casefold() if is_str else v) in s) == want
                return "Edm.Boolean", f
            if len(vals) != 2:
                raise query_error("The function '%s' requires exactly two PropertyValues."
                                  % full)
            lo, hi = vals
            want = name == "Between"

            def f(row):
                v = get(row)
                if v is None:
                    return None
                v = v.casefold() if is_str else v
                return (lo <= v <= hi) == want
            return "Edm.Boolean", f
        # LastX* / OlderThanX*
        n = params.get("PropertyValue")
        if isinstance(n, str) and n.isdigit():
            n = int(n)
        if not isinstance(n, int) or col.kind != "dt":
            raise query_error("The function '%s' needs a datetime PropertyName and an integer "
                              "PropertyValue." % full)
        unit = {"Hours": 3600, "Minutes": 60, "Days": 86400}[
            name.replace("LastX", "").replace("OlderThanX", "")]
        older = name.startswith("OlderThan")
        span = n * unit

        def f(row):
            v = get(row)
            if v is None:
                return None
            now = time.time()
            return v <= now - span if older else now - span <= v <= now
        return "Edm.Boolean", f


def conjuncts(node):
    if node[0] == "and":
        return conjuncts(node[1]) + conjuncts(node[2])
    return [node]


def candidate_rows(td, node):
    """Use an index to narrow the rows a filter can match (never widens).
    Returns (rows or None, column the rows are sorted by (then by key) or None)."""
    if node is None:
        return None, None
    best, best_col = None, None
    for c in conjuncts(node):
        if c[0] != "cmp":
            continue
        op, l, r = c[1], c[2], c[3]
        if l[0] == "lit" and r[0] == "prop":
            l, r = r, l
            op = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}.get(op, op)
        if l[0] != "prop" or r[0] != "lit" or len(l[1]) != 1:
            continue
        col = td.schema.cols.get(l[1][0])
        if col is None or r[1] == "null":
            continue
        if op == "eq" and col.kind in ("guid", "lookup") and r[1] == "Edm.Guid":
            return td.hash_index(col.name).get(r[2], []), None
        if col.kind == "dt" and r[1] == "Edm.DateTimeOffset" and op in ("gt", "ge", "lt", "le",
                                                                        "eq"):
            keys, rows = td.sorted_index(col.name)
            v = r[2]
            if op == "gt":
                sel = rows[bisect.bisect_right(keys, v):]
            elif op == "ge":
                sel = rows[bisect.bisect_left(keys, v):]
            elif op == "lt":
                sel = rows[:bisect.bisect_left(keys, v)]
            elif op == "le":
                sel = rows[:bisect.bisect_right(keys, v)]
            else:
                sel = rows[bisect.bisect_left(keys, v):bisect.bisect_right(keys, v)]
            if best is None or len(sel) < len(best):
                best, best_col = sel, col.name
    return best, best_col


# --------------------------------------------------------------------------
# Query options other than $filter

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KNOWN_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$expand", "$count",
                 "$skiptoken"}
UNSUPPORTED_OPTIONS = {"$search", "$apply", "$format", "$compute", "$levels", "$index",
                       "$deltatoken", "$schemaversion", "$id"}


def parse_query_string(raw):
    opts, aliases, raw_parts = {}, {}, []
    if not raw:
        return opts, aliases, raw_parts
    for part in raw.split("&"):
        if not part:
            continue
        name, _sep, value = part.partition("=")
        name = unquote_plus(name)
        value = unquote_plus(value)
        if name.startswith("$"):
            if name == "$skip":
                raise query_error("The query parameter $skip is not supported")
            if name in UNSUPPORTED_OPTIONS:
                raise query_error("The query parameter %s is not supported" % name)
            if name not in KNOWN_OPTIONS:
                raise query_error("The query parameter '%s' is not supported." % name)
            if name in opts:
                raise query_error("Query option '%s' was specified more than once, but it "
                                  "must be specified at most once." % name)
            opts[name] = value
            if name != "$skiptoken":
                raw_parts.append(part)
        elif name.startswith("@"):
            aliases[name] = value
            raw_parts.append(part)
        elif name in ("fetchXml", "savedQuery", "userQuery"):
            raise ODataError(501, ERR_QUERY, "dvsim does not simulate the %s parameter."
                             % name)
        else:
            raw_parts.append(part)
    return opts, aliases, raw_parts


def split_top(text, sep=","):
    """Split on sep outside parentheses and quotes."""
    out, depth, buf, q = [], 0, [], False
    for ch in text:
        if ch == "'":
            q = not q
        elif not q and ch == "(":
            depth += 1
        elif not q and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not q:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


def parse_select(schema, text):
    if text is None:
        return None
    cols = []
    for item in text.split(","):
        name = item.strip()
        if name == "*":
            return None
        if not IDENT_RE.match(name):
            if "/" in name:
                raise query_error("Found a path with multiple navigation properties or a bad "
                                  "complex property path in a select clause: '%s'. Use "
                                  "$expand to select columns of related rows." % name)
            raise query_error("Syntax error at position 0 in '%s'." % text)
        if name in schema.navs:
            raise query_error("'%s' is a navigation property of '%s': $select "
                              "'_%s_value' for its id, or $expand it."
                              % (name, schema.type_name, name))
        if name not in schema.cols:
            raise query_error("Could not find a property named '%s' on type '%s'."
                              % (name, schema.type_name))
        if name not in cols:
            cols.append(name)
    return cols


def parse_expand(schema, text, _links=None):
    """$expand of single-valued navigation properties -> [(nav, target schema,
    $select columns or None, nested expands)]. Inside the parentheses the
    service takes $select and a nested $expand (join-tables.md, "Nested expand of
    single-valued navigation properties"); $filter, $orderby and $top apply to
    collection-valued ones only. At most 15 expands in all (link entities)."""
    if text is None:
        return []
    links = _links if _links is not None else [0]
    out = []
    for item in split_top(text):
        item = item.strip()
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?$", item, re.S)
        if not m:
            raise query_error("Syntax error at position 0 in '%s'." % text)
        nav, inner = m.group(1), m.group(2)
        if nav not in schema.navs:
            raise query_error("Could not find a property named '%s' on type '%s'."
                              % (nav, schema.type_name))
        links[0] += 1
        if links[0] > MAX_LINKS:
            raise ODataError(400, ERR_LINKS, "Number of link entities in query exceeded "
                             "maximum limit.")
        target = TABLES_BY_SET[schema.navs[nav][1]]
        sel, sub = None, []
        if inner is not None:
            for opt in split_top(inner, ";"):
                k, _s, v = opt.strip().partition("=")
                if k == "$select":
                    sel = parse_select(target, v)
                elif k == "$expand":
                    sub = parse_expand(target, v, links)
                elif k in ("$filter", "$orderby", "$top"):
                    raise query_error("The query option '%s' is not allowed in $expand of "
                                      "the single-valued navigation property '%s'." % (k, nav))
                else:
                    raise query_error("Syntax error in $expand option '%s'." % opt)
        out.append((nav, target, sel, sub))
    return out


def check_expand_privileges(env, expands):
    """Every table an $expand reads needs its read privilege, like the table queried."""
    for _nav, target, _sel, sub in expands:
        if target.set_name in env.deny_read:
            raise privilege_error(env, target)
        check_expand_privileges(env, sub)


def parse_orderby(schema, text):
    if text is None:
        return []
    keys = []
    for item in text.split(","):
        words = item.split()
        if not words or len(words) > 2:
            raise query_error("Syntax error at position 0 in '%s'." % text)
        name = words[0]
        desc = False
        if len(words) == 2:
            if words[1] not in ("asc", "desc"):
                raise query_error("Syntax error at position %d in '%s'."
                                  % (text.find(words[1]), text))
            desc = words[1] == "desc"
        if "/" in name:
            raise ODataError(501, ERR_QUERY, "dvsim does not simulate $orderby on related "
                             "tables ('%s')." % name)
        if name not in schema.cols:
            raise query_error("Could not find a property named '%s' on type '%s'."
                              % (name, schema.type_name))
        keys.append((name, desc))
    return keys


class Desc:
    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, other):
        return other.v < self.v

    def __gt__(self, other):
        return other.v > self.v

    def __eq__(self, other):
        return self.v == other.v

    def __le__(self, other):
        return other.v <= self.v

    def __ge__(self, other):
        return other.v >= self.v


def _sort_part(desc, is_str):
    if is_str:
        def f(v):
            return (0, "") if v is None else (1, v.casefold())
    else:
        def f(v):
            return (0, 0) if v is None else (1, v)
    if desc:
        return lambda v: Desc(f(v))
    return f


def make_sort_key(schema, orderby):
    """Total order: the $orderby keys (nulls first ascending, like SQL Server),
    then the primary key. Returns key(row), key_from_values(raw), raw(row)."""
    names = [name for name, _d in orderby]
    fs = [_sort_part(desc, schema.cols[name].kind == "str") for name, desc in orderby]
    pk = schema.pk
    if not fs:
        def key(row):
            return (row[pk],)

        def key_from_values(values):
            return (values[-1],)
    elif len(fs) == 1:
        f0, n0 = fs[0], names[0]

        def key(row):
            return (f0(row.get(n0)), row[pk])

        def key_from_values(values):
            return (f0(values[0]), values[1])
    else:
        pairs = list(zip(fs, names))

        def key(row):
            return tuple([f(row.get(n)) for f, n in pairs] + [row[pk]])

        def key_from_values(values):
            return tuple([f(v) for f, v in zip(fs, values)] + [values[-1]])

    def raw(row):
        return [row.get(n) for n in names] + [row[pk]]
    return key, key_from_values, raw


def parse_prefer(values):
    prefs = {}
    for v in values:
        for item in split_prefer(v):
            k, _s, val = item.strip().partition("=")
            k = k.strip().lower()
            if k:
                prefs[k] = val.strip().strip('"')
    return prefs


def split_prefer(text):
    out, buf, q = [], [], False
    for ch in text:
        if ch == '"':
            q = not q
        if ch == "," and not q:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


# --------------------------------------------------------------------------
# A test CA for --tls: keys from the openssl CLI (once per directory), the
# certificates assembled here in DER and signed with RSA (PKCS#1 v1.5, SHA-256)
# by the CA key, because one openssl process per host costs ~45 ms and 200
# hosts must start in seconds. Everything a verifying client checks is real:
# the chain to DIR/ca.pem, IP and DNS subjectAltNames, key usages, validity.

def _der(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes([tag, n])
    else:
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([tag, 0x80 | len(size)]) + size
    return head + body


def _der_int(v):
    return _der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def _der_oid(dotted):
    parts = [int(x) for x in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for v in parts[2:]:
        chunk = [v & 0x7F]
        v >>= 7
        while v:
            chunk.append(0x80 | (v & 0x7F))
            v >>= 7
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


def _der_seq(*items):
    return _der(0x30, b"".join(items))


def _der_read(buf, pos=0):
    """One TLV at pos -> (tag, body, end)."""
    tag, n = buf[pos], buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    return tag, buf[pos:pos + n], pos + n


def _der_items(body):
    pos, out = 0, []
    while pos < len(body):
        tag, value, pos = _der_read(body, pos)
        out.append((tag, value))
    return out


_OID_RSA = "1.2.840.113549.1.1.1"
_OID_SHA256_RSA = "1.2.840.113549.1.1.11"
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


class RSAKey:
    """An RSA private key read from the PKCS#8 PEM that openssl genpkey writes."""

    def __init__(self, path):
        with open(path) as f:
            pem = f.read()
        b64 = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
        _tag, info, _end = _der_read(base64.b64decode(b64))
        items = _der_items(info)
        inner = _der_items(_der_read(items[2][1])[1])
        n, e, d, p, q, dp, dq, qinv = (int.from_bytes(v, "big") for _t, v in inner[1:9])
        self.n, self.e, self.p, self.q, self.dp, self.dq, self.qinv = n, e, p, q, dp, dq, qinv
        self.size = (n.bit_length() + 7) // 8

    def spki(self):
        """SubjectPublicKeyInfo (DER)."""
        pub = _der_seq(_der_int(self.n), _der_int(self.e))
        return _der_seq(_der_seq(_der_oid(_OID_RSA), b"\x05\x00"), _der(0x03, b"\x00" + pub))

    def key_id(self):
        pub = _der_seq(_der_int(self.n), _der_int(self.e))
        return hashlib.sha1(pub).digest()

    def sign(self, data):
        """RSASSA-PKCS1-v1_5 with SHA-256, by the Chinese remainder theorem."""
        t = _SHA256_PREFIX + hashlib.sha256(data).digest()
        m = int.from_bytes(b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t, "big")
        m1, m2 = pow(m, self.dp, self.p), pow(m, self.dq, self.q)
        s = m2 + (self.qinv * (m1 - m2) % self.p) * self.q
        return s.to_bytes(self.size, "big")


def _der_name(cn):
    return _der_seq(
        _der(0x31, _der_seq(_der_oid("2.5.4.10"), _der(0x0C, b"dvsim"))),
        _der(0x31, _der_seq(_der_oid("2.5.4.3"), _der(0x0C, cn.encode()))))


def _der_time(t):
    s = time.strftime("%y%m%d%H%M%SZ" if t < 2524608000 else "%Y%m%d%H%M%SZ", time.gmtime(t))
    return _der(0x17 if t < 2524608000 else 0x18, s.encode())


def _der_ext(oid, value, critical=False):
    return _der_seq(_der_oid(oid), *([b"\x01\x01\xff"] if critical else []), _der(0x04, value))


def make_certificate(subject_key, issuer_key, subject, issuer, serial, days, ca=False,
                     addresses=(), names=()):
    """A signed X.509 v3 certificate (DER)."""
    now = int(time.time())
    exts = [_der_ext("2.5.29.14", _der(0x04, subject_key.key_id()))]
    if ca:
        exts += [_der_ext("2.5.29.19", _der_seq(b"\x01\x01\xff"), critical=True),
                 _der_ext("2.5.29.15", _der(0x03, b"\x01\x06"), critical=True)]
    else:
        sans = [_der(0x87, socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a))
                for a in addresses] + [_der(0x82, n.encode()) for n in names]
        exts += [_der_ext("2.5.29.35", _der_seq(_der(0x80, issuer_key.key_id()))),
                 _der_ext("2.5.29.19", _der_seq(), critical=True),
                 _der_ext("2.5.29.15", _der(0x03, b"\x05\xa0"), critical=True),
                 _der_ext("2.5.29.37", _der_seq(_der_oid("1.3.6.1.5.5.7.3.1"))),
                 _der_ext("2.5.29.17", _der_seq(*sans))]
    alg = _der_seq(_der_oid(_OID_SHA256_RSA), b"\x05\x00")
    tbs = _der_seq(_der(0xA0, _der_int(2)), _der_int(serial), alg, _der_name(issuer),
                   _der_seq(_der_time(now - 86400), _der_time(now + days * 86400)),
                   _der_name(subject), subject_key.spki(), _der(0xA3, _der_seq(*exts)))
    return _der_seq(tbs, alg, _der(0x03, b"\x00" + issuer_key.sign(tbs)))


def _pem(der):
    b64 = base64.b64encode(der).decode()
    return "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(
        b64[i:i + 64] for i in range(0, len(b64), 64))


def _write_atomic(path, text, mode=0o644):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class CertAuthority:
    """DIR/ca.pem (the CA clients trust) and ca.key; DIR/leaf.key, the one key
    of every host certificate; DIR/certs/<address>-<hash>.pem, one certificate
    per listening host, reused while the CA and the names stay the same.
    Several dvsim processes may share DIR (a lock serialises the writers)."""

    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        os.makedirs(os.path.join(self.dir, "certs"), exist_ok=True)
        self.ca_file = os.path.join(self.dir, "ca.pem")
        self.key_file = os.path.join(self.dir, "leaf.key")
        with self._locked():
            ca_key_file = os.path.join(self.dir, "ca.key")
            for path in (ca_key_file, self.key_file):
                if not os.path.exists(path):
                    self._genkey(path)
            self.ca_key = RSAKey(ca_key_file)
            self.leaf_key = RSAKey(self.key_file)
            if not self._ca_matches():
                _write_atomic(self.ca_file, _pem(make_certificate(
                    self.ca_key, self.ca_key, "dvsim test CA", "dvsim test CA",
                    int.from_bytes(os.urandom(8), "big"), 3650, ca=True)))
            with open(self.ca_file, "rb") as f:
                self._ca_tag = hashlib.sha256(f.read()).hexdigest()[:12]

    @contextlib.contextmanager
    def _locked(self):
        with open(os.path.join(self.dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @staticmethod
    def _genkey(path):
        tmp = "%s.%d.tmp" % (path, os.getpid())
        try:
            subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                            "rsa_keygen_bits:2048", "-out", tmp], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise OSError("--tls needs the openssl command (Debian package openssl)")
        except subprocess.CalledProcessError as e:
            raise OSError("openssl genpkey failed: %s" % e.stderr.decode(errors="replace"))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def _ca_matches(self):
        try:
            with open(self.ca_file) as f:
                pem = f.read()
        except OSError:
            return False
        return self.ca_key.spki() in ssl.PEM_cert_to_DER_cert(pem)

    def host_cert(self, address, names):
        """The certificate file for a host at address, also valid for names."""
        tag = hashlib.sha256(("%s|%s|%s" % (self._ca_tag, address, ",".join(names)))
                             .encode()).hexdigest()[:12]
        path = os.path.join(self.dir, "certs", "%s-%s.pem" % (address.replace(":", "_"), tag))
        if not os.path.exists(path):
            with self._locked():
                if not os.path.exists(path):
                    _write_atomic(path, _pem(make_certificate(
                        self.leaf_key, self.ca_key, names[0] if names else address,
                        "dvsim test CA", int.from_bytes(os.urandom(8), "big"), 825,
                        addresses=[address], names=names)))
        return path

    def server_context(self, address, names):
        """TLS 1.2+, HTTP/1.1 by ALPN, this host's certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.load_cert_chain(self.host_cert(address, names), self.key_file)
        return ctx


# --------------------------------------------------------------------------
# The simulator: environments, tokens, faults, statistics

class Fault:
    _next = 1

    def __init__(self, spec, now):
        if not isinstance(spec, dict):
            raise ValueError("a fault must be a JSON object")
        known = {"target", "kind", "count", "duration", "skip", "retry_after",
                 "retry_after_date", "code", "seconds", "mb", "graceful", "status", "host"}
        for k in spec:
            if k not in known:
                raise ValueError("unknown fault field %r (known: %s)" % (k, sorted(known)))
        self.target = spec.get("target", "*")
        self.kind = str(spec.get("kind", ""))
        if self.kind not in FAULT_KINDS:
            raise ValueError("fault kind must be one of %s" % (FAULT_KINDS,))
        self.count = spec.get("count")
        self.duration = spec.get("duration")
        if self.count is None and self.duration is None:
            self.count = 1
        self.until = now + float(self.duration) if self.duration is not None else None
        self.skip = int(spec.get("skip", 0))
        self.retry_after = spec.get("retry_after")
        self.retry_after_date = spec.get("retry_after_date")
        self.code = spec.get("code", "0x80072322")
        if self.kind == "429" and self.code not in THROTTLE:
            raise ValueError("a 429 fault's code must be one of %s" % sorted(THROTTLE))
        self.seconds = float(spec.get("seconds", 5))
        self.mb = float(spec.get("mb", 10))
        self.graceful = bool(spec.get("graceful", False))
        self.host = spec.get("host")
        if self.host is not None and not (isinstance(self.host, str) and
                                          re.match(r"^[A-Za-z0-9.:\[\]-]+$", self.host)):
            raise ValueError("a fault's host is host[:port]")
        self.hits = 0
        self.spec = spec
        self.id = Fault._next
        Fault._next += 1

    def matches(self, env_name, what):
        t = self.target
        if t == "*":
            return True
        if t == "token":
            return what == "token"
        if t in (env_name, env_name + "/*"):
            return True
        return t == "%s/%s" % (env_name, what)

    def expired(self, now):
        if self.until is not None and now >= self.until:
            return True
        return self.count is not None and self.hits >= int(self.count)

    def describe(self):
        d = dict(self.spec)
        d["id"] = self.id
        d["hits"] = self.hits
        return d


def resolve_texts(row, texts, where):
    """{"$text": NAME} stands for the scenario's texts[NAME]: one long string
    (a 4 KB stack trace) shared by many rows, written once in the file and held
    once in memory."""
    out = None
    for k, v in row.items():
        if isinstance(v, dict) and "$text" in v:
            if set(v) != {"$text"} or v["$text"] not in texts:
                raise ScenarioError("%s: %s: {\"$text\": NAME} needs NAME in the scenario's "
                                    "\"texts\", got %r" % (where, k, v))
            if out is None:
                out = dict(row)
            out[k] = texts[v["$text"]]
    return row if out is None else out


TRACE_SETTINGS = {"off": 0, "exception": 1, "all": 2}


def successful_runs(env, spec, now, where):
    """An environment's "plugin_trace_log": {"setting": "All", "runs_per_step": N,
    "within": "2h", "exceptiondetails": ""}: with the organization's plug-in trace
    setting at All, every run writes a row, not only failures; this adds N rows of
    runs that did not fail per enabled step, evenly over the last "within", with
    "exceptiondetails" "" (default) or null. Off and Exception add nothing."""
    if not isinstance(spec, dict) or set(spec) - {"setting", "runs_per_step", "within",
                                                  "exceptiondetails"}:
        raise ScenarioError("%s: an object with setting, runs_per_step, within, "
                            "exceptiondetails" % where)
    setting = str(spec.get("setting", "Exception")).lower()
    if setting not in TRACE_SETTINGS:
        raise ScenarioError("%s: setting is Off, Exception or All" % where)
    runs = spec.get("runs_per_step", 3)
    details = spec.get("exceptiondetails", "")
    if not isinstance(runs, int) or runs < 0 or details not in ("", None):
        raise ScenarioError("%s: runs_per_step is a count, exceptiondetails \"\" or null"
                            % where)
    try:
        span = now - parse_time("now-" + str(spec.get("within", "2h")), now)
    except ValueError as e:
        raise ScenarioError("%s: within: %s" % (where, e))
    if setting != "all":
        return
    t = env.tables
    for step in list(t["sdkmessageprocessingsteps"].rows.values()):
        if step.get("statecode") != 0:
            continue
        msg = t["sdkmessages"].rows.get(step.get("_sdkmessageid_value")) or {}
        flt = t["sdkmessagefilters"].rows.get(step.get("_sdkmessagefilterid_value")) or {}
        ptype = t["plugintypes"].rows.get(step.get("_plugintypeid_value")) or {}
        for i in range(runs):
            sid = step["sdkmessageprocessingstepid"]
            env.upsert("plugintracelogs", {
                "plugintracelogid": str(uuid.uuid5(uuid.NAMESPACE_OID, "%s/%d" % (sid, i))),
                "pluginstepid": sid, "messagename": msg.get("name"),
                "primaryentity": flt.get("primaryobjecttypecode"), "mode": step.get("mode"),
                "typename": ptype.get("typename"), "exceptiondetails": details,
                "messageblock": "Run %d of %s completed." % (i + 1, step.get("name") or sid),
                "performanceexecutionduration": 12 + i % 7,
                "createdon": fmt_time(now - span * (i + 0.5) / runs)}, now, where, check=False)


class Connection:
    """One accepted connection, as the statistics see it: the environment it
    is attributed to (its listener's, or the first environment it asks for on
    the shared host), whether it completed a TLS handshake, and whether the
    one-time set-up latency is still to be paid."""
    __slots__ = ("listener", "env", "tls", "resumed", "epoch", "setup_pending")

    def __init__(self, listener, epoch):
        self.listener = listener
        self.env = listener.env if listener is not None else None
        self.tls = False
        self.resumed = False
        self.epoch = epoch
        self.setup_pending = True


class Stats:
    LOG_MAX = 20000

    def __init__(self):
        self.epoch = 0
        self.reset()

    def reset(self):
        self.started = time.time()
        self.envs = {}
        self.connections = 0
        self.tls_handshakes = 0
        self.tls_resumed = 0
        self.tls_failures = 0
        self.epoch += 1     # connections accepted before a reset are not counted again

    def _bucket(self, d, key):
        b = d.get(key)
        if b is None:
            b = d[key] = {"requests": 0, "status": {}, "bytes_sent": 0, "log": []}
        return b

    def _env(self, env_name):
        e = self.envs.get(env_name)
        if e is None:
            e = self.envs[env_name] = {"requests": 0, "status": {}, "bytes_sent": 0,
                                       "writes": 0, "connections": 0, "tls_handshakes": 0,
                                       "sets": {}}
        return e

    def accepted(self, conn):
        """A connection was accepted (its TLS handshake, if any, not yet done)."""
        self.connections += 1
        if conn.env is not None:
            self._env(conn.env)["connections"] += 1

    def handshake(self, conn, ok, resumed=False):
        if not ok:
            self.tls_failures += 1
            return
        conn.tls, conn.resumed = True, resumed
        self.tls_handshakes += 1
        self.tls_resumed += resumed
        if conn.env is not None and conn.epoch == self.epoch:
            self._env(conn.env)["tls_handshakes"] += 1

    def attribute(self, conn, env_name):
        """A connection on the shared host is counted for the first environment
        it asks for (once, and only if accepted since the last reset)."""
        if conn is None or conn.env is not None:
            return
        conn.env = env_name
        if conn.epoch == self.epoch:
            e = self._env(env_name)
            e["connections"] += 1
            e["tls_handshakes"] += conn.tls

    def record(self, env_name, what, method, path, status, nbytes, fault, t, conn=None):
        self.attribute(conn, env_name)
        e = self._env(env_name)
        s = str(status)
        for b in (e, self._bucket(e["sets"], what)):
            b["requests"] += 1
            b["status"][s] = b["status"].get(s, 0) + 1
            b["bytes_sent"] += nbytes
        if method not in ("GET", "HEAD") and what != "token":
            e["writes"] += 1
        log = e["sets"][what]["log"]
        log.append({"t": round(t, 3), "status": status, "method": method, "path": path,
                    "fault": fault})
        if len(log) > self.LOG_MAX:
            del log[:len(log) - self.LOG_MAX]

    def snapshot(self):
        envs = json.loads(json.dumps(self.envs))
        for e in envs.values():
            e["requests_per_connection"] = (round(e["requests"] / e["connections"], 3)
                                            if e["connections"] else None)
        return {"started": round(self.started, 3), "connections": self.connections,
                "tls_handshakes": self.tls_handshakes, "tls_resumed": self.tls_resumed,
                "tls_failures": self.tls_failures,
                "requests": sum(e["requests"] for e in envs.values()),
                "environments": envs}


class Simulator:
    def __init__(self, token_lifetime=DEFAULT_TOKEN_LIFETIME, log=None):
        self.lock = threading.RLock()
        self.envs = {}
        self.tokens = {}          # token -> {"env", "expires", "revoked"}
        self.faults = []
        self.stats = Stats()
        self.token_lifetime = token_lifetime
        self.expected = {}
        self.log = log
        self.port = None
        self.server = None
        # set by the server: how clients reach it
        self.scheme = "http"
        self.host = "127.0.0.1"
        self.env_hosts = False
        self.addresses = {}         # environment -> its own address (--env-hosts)
        self.ca_file = None

    # ---- how clients reach the simulator ---------------------------------
    def _hostport(self, host):
        return "[%s]:%d" % (host, self.port) if ":" in host else "%s:%d" % (host, self.port)

    @property
    def authority(self):
        """Base URL of the token endpoint (s3mond "authority =")."""
        return "%s://%s" % (self.scheme, self._hostport(self.host))

    def env_url(self, name):
        """An environment's URL (s3mond "url ="; the token scope is it + "/.default")."""
        if name in self.addresses:
            return "%s://%s" % (self.scheme, self._hostport(self.addresses[name]))
        return "%s/%s" % (self.authority, name)

    def info(self):
        """What --info-file writes and GET /_admin/health returns as "info"."""
        with self.lock:
            return {"port": self.port, "authority": self.authority, "ca_file": self.ca_file,
                    "admin": self.authority + "/_admin",
                    "environments": {n: {"url": self.env_url(n), "tenant": e.tenant,
                                         "client_id": e.client_id,
                                         "address": self.addresses.get(n, self.host)}
                                     for n, e in self.envs.items()}}

    # ---- scenarios -------------------------------------------------------
    def load_file(self, path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise ScenarioError("%s: %s" % (path, e))
        self.load(data, path)

    def load(self, data, origin="scenario"):
        now = time.time()
        if not isinstance(data, dict):
            raise ScenarioError("%s: a scenario is a JSON object" % origin)
        for k in data:
            if k not in ("description", "environments", "expected", "expected_config",
                         "expected_variants", "expected_probe", "assumptions", "notes",
                         "generator", "texts"):
                raise ScenarioError("%s: unknown top-level key %r" % (origin, k))
        envs = data.get("environments")
        if not isinstance(envs, list) or not envs:
            raise ScenarioError("%s: \"environments\" must be a non-empty list" % origin)
        texts = data.get("texts", {})
        if not isinstance(texts, dict) or not all(isinstance(v, str) for v in texts.values()):
            raise ScenarioError("%s: \"texts\" must map names to strings" % origin)
        with self.lock:
            for i, e in enumerate(envs):
                self.load_env(e, now, "%s: environments[%d]" % (origin, i), texts)
            if "expected" in data:
                self.expected[origin] = {k: data[k] for k in
                                         ("expected", "expected_config", "expected_variants")
                                         if k in data}

    def load_env(self, e, now, where, texts=None):
        if not isinstance(e, dict):
            raise ScenarioError("%s: an environment is a JSON object" % where)
        for k in e:
            if k not in ("name", "tenant", "client_id", "client_secret", "token_lifetime",
                         "deny_read", "tables", "description", "plugin_trace_log"):
                raise ScenarioError("%s: unknown key %r" % (where, k))
        name = e.get("name")
        if not isinstance(name, str) or not ENV_NAME_RE.match(name) or \
                name in RESERVED_ENV_NAMES:
            raise ScenarioError("%s: \"name\" must match [A-Za-z0-9._-]{1,64} and not be "
                                "api or _admin" % where)
        if name in self.envs:
            raise ScenarioError("%s: environment %r defined twice" % (where, name))
        where = "%s (%s)" % (where, name)
        for k in ("tenant", "client_id", "client_secret"):
            if not isinstance(e.get(k), str) or not e[k]:
                raise ScenarioError("%s: %r must be a non-empty string" % (where, k))
        deny = e.get("deny_read", [])
        for s in deny:
            if s not in TABLES_BY_SET:
                raise ScenarioError("%s: deny_read: unknown entity set %r" % (where, s))
        lifetime = e.get("token_lifetime")
        if lifetime is not None and (not isinstance(lifetime, int) or lifetime <= 0):
            raise ScenarioError("%s: token_lifetime must be a positive integer" % where)
        env = Env(name, e["tenant"], e["client_id"], e["client_secret"], lifetime, deny)
        tables = e.get("tables", {})
        if not isinstance(tables, dict):
            raise ScenarioError("%s: \"tables\" must be an object" % where)
        for set_name, rows in tables.items():
            if set_name not in TABLES_BY_SET:
                raise ScenarioError("%s: unknown entity set %r (known: %s)"
                                    % (where, set_name, ", ".join(TABLES_BY_SET)))
            if not isinstance(rows, list):
                raise ScenarioError("%s: tables.%s must be a list" % (where, set_name))
            for j, row in enumerate(rows):
                w = "%s: tables.%s[%d]" % (where, set_name, j)
                pk = TABLES_BY_SET[set_name].pk
                if isinstance(row, dict) and isinstance(row.get(pk), str) and \
                        row[pk].lower() in env.tables[set_name].rows:
                    raise ScenarioError("%s: duplicate %s %s" % (w, pk, row[pk]))
                if isinstance(row, dict):
                    row = resolve_texts(row, texts or {}, w)
                env.upsert(set_name, row, now, w, check=False)
        if "plugin_trace_log" in e:
            successful_runs(env, e["plugin_trace_log"], now, where + ": plugin_trace_log")
        for set_name, td in env.tables.items():
            for pk, row in td.rows.items():
                env.check_lookups(td.schema, row, "%s: tables.%s %s" % (where, set_name, pk))
        self.envs[name] = env

    def first_env(self):
        return next(iter(self.envs.values()), None)

    # ---- tokens ----------------------------------------------------------
    def issue_token(self, env, now):
        lifetime = env.token_lifetime or self.token_lifetime

        def b64(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        header = b64({"typ": "JWT", "alg": "RS256", "x5t": "dvsim"})
        payload = b64({"aud": env.name, "tid": env.tenant, "appid": env.client_id,
                       "iat": int(now), "exp": int(now + lifetime), "iss": "dvsim"})
        token = "%s.%s.%s" % (header, payload, secrets.token_urlsafe(32))
        self.tokens[token] = {"env": env.name, "expires": now + lifetime, "revoked": False}
        return token, lifetime

    def check_token(self, env, auth_header, now):
        """None if the bearer token is valid for env, else the reason."""
        if not auth_header:
            return "missing"
        scheme, _s, token = auth_header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "invalid"
        info = self.tokens.get(token.strip())
        if info is None or info["revoked"]:
            return "invalid"
        if info["env"] != env.name:
            return "audience"
        if now >= info["expires"]:
            return "expired"
        return None

    def revoke(self, env_name=None, token=None):
        n = 0
        for t, info in self.tokens.items():
            if (token is None or t == token) and (env_name is None or info["env"] == env_name):
                if not info["revoked"]:
                    info["revoked"] = True
                    n += 1
        return n

    # ---- faults ----------------------------------------------------------
    def take_fault(self, env_name, what, now):
        with self.lock:
            self.faults = [f for f in self.faults if not f.expired(now)]
            for f in self.faults:
                if f.matches(env_name, what):
                    if f.skip > 0:
                        f.skip -= 1
                        continue
                    f.hits += 1
                    return f
        return None


# --------------------------------------------------------------------------
# Query execution

def entity_base(host, env, root, scheme="http"):
    return "%s://%s%s" % (scheme, host, "" if root else "/" + env.name)


def annotate(out, col, value, env, schema, patterns):
    if not patterns or value is None:
        return
    names = []
    if col.kind == "lookup":
        key, lk = value
        names.append(("Microsoft.Dynamics.CRM.lookuplogicalname", lk))
        nav = schema.nav_for_col(col.name)
        if nav:
            names.append(("Microsoft.Dynamics.CRM.associatednavigationproperty", nav))
        tschema = TABLES_BY_LOGICAL.get(lk)
        if tschema is not None:
            target = env.tables[tschema.set_name].rows.get(key)
            if target is not None and target.get(tschema.primary_name) is not None:
                names.insert(0, ("OData.Community.Display.V1.FormattedValue",
                                 target[tschema.primary_name]))
    elif col.kind == "bool":
        names.append(("OData.Community.Display.V1.FormattedValue", "Yes" if value else "No"))
    elif col.kind == "int" and col.name in schema.labels:
        label = schema.labels[col.name].get(value)
        if label is not None:
            names.append(("OData.Community.Display.V1.FormattedValue", label))
    elif col.kind == "dt":
        names.append(("OData.Community.Display.V1.FormattedValue",
                      time.strftime("%m/%d/%Y %I:%M %p", time.gmtime(value))))
    for ann, v in names:
        if any(fnmatch.fnmatchcase(ann, p) for p in patterns):
            out["%s@%s" % (col.name, ann)] = v


def project(env, schema, row, select, expands, patterns, with_etag=True):
    out = {}
    if with_etag:
        out["@odata.etag"] = 'W/"%d"' % row["@v"]
    cols = select if select is not None else [c for c in schema.cols]
    for c in cols:
        col = schema.cols[c]
        v = row.get(c)
        if col.kind == "lookup" and v is not None:
            annotate(out, col, (v, row["@lk"].get(c, col.targets[0])), env, schema, patterns)
        elif v is not None and patterns:
            annotate(out, col, v, env, schema, patterns)
        out[c] = fmt_time(v) if (col.kind == "dt" and v is not None) else v
    if schema.pk not in out:
        out[schema.pk] = row[schema.pk]
    for nav, target, sel, sub in expands:
        fk = row.get(schema.navs[nav][0])
        trow = env.tables[target.set_name].rows.get(fk) if fk else None
        out[nav] = None if trow is None else project(env, target, trow, sel, sub, patterns,
                                                     with_etag=False)
    return out


def _context_parts(select, expands):
    parts = list(select) if select is not None else []
    for nav, _target, sel, sub in expands:
        parts.append("%s(%s)" % (nav, ",".join(_context_parts(sel, sub))))
    return parts


def context_url(base, schema, select, expands, entity=False):
    parts = _context_parts(select, expands)
    url = "%s/api/data/v9.2/$metadata#%s" % (base, schema.set_name)
    if parts:
        url += "(%s)" % ",".join(parts)
    if entity:
        url += "/$entity"
    return url


def query_hash(set_name, opts):
    h = hashlib.sha256()
    for k in (set_name, opts.get("$filter", ""), opts.get("$orderby", "")):
        h.update(k.encode() + b"\0")
    return h.hexdigest()[:16]


def encode_skiptoken(page, raw_key, qh):
    blob = base64.urlsafe_b64encode(json.dumps({"k": raw_key, "q": qh}).encode()).decode()
    return '<cookie pagenumber="%d" pagingcookie="%s" istracking="False" />' % (page, blob)


_COOKIE_RE = re.compile(r'^<cookie pagenumber="(\d+)" pagingcookie="([A-Za-z0-9_=-]+)" '
                        r'istracking="False" />$')


def decode_skiptoken(text, qh):
    m = _COOKIE_RE.match(text)
    if not m:
        raise query_error("The $skiptoken value is not valid: use @odata.nextLink unchanged.")
    try:
        data = json.loads(base64.urlsafe_b64decode(m.group(2).encode()))
        if data["q"] != qh:
            raise ValueError
        return int(m.group(1)), data["k"]
    except (ValueError, KeyError, TypeError):
        raise query_error("The $skiptoken value does not belong to this query: use "
                          "@odata.nextLink unchanged.")


def run_collection(sim, env, schema, raw_query, prefs, host, root, path):
    opts, aliases, raw_parts = parse_query_string(raw_query)
    select = parse_select(schema, opts.get("$select"))
    expands = parse_expand(schema, opts.get("$expand"))
    check_expand_privileges(env, expands)
    orderby = parse_orderby(schema, opts.get("$orderby"))
    top = None
    if "$top" in opts:
        if not re.match(r"^\d+$", opts["$top"]):
            raise query_error("Invalid value '%s' for $top query option found. The $top query "
                              "option requires a non-negative integer value." % opts["$top"])
        top = min(int(opts["$top"]), MAX_PAGE)
    count = opts.get("$count")
    if count not in (None, "true", "false"):
        raise query_error("'%s' is not a valid count option." % count)
    td = env.tables[schema.set_name]
    node, pred = None, None
    if "$filter" in opts:
        node, pred = FilterCompiler(env, schema, opts["$filter"], aliases).compile()
    page_size, applied, paging = MAX_PAGE, [], False
    if "odata.maxpagesize" in prefs:
        try:
            n = int(prefs["odata.maxpagesize"])
        except ValueError:
            n = 0
        if 0 < n <= MAX_PAGE:
            page_size, paging = n, True
            applied.append("odata.maxpagesize=%d" % n)
    if paging:
        # "Don't use $top with the Prefer: odata.maxpagesize request header. If you
        # include both, $top is ignored." (webapi/query/page-results.md)
        top = None
    patterns = None
    if "odata.include-annotations" in prefs:
        patterns = [p.strip() for p in prefs["odata.include-annotations"].split(",")
                    if p.strip()]
        applied.append('odata.include-annotations="%s"' % prefs["odata.include-annotations"])
    key, key_from_values, raw_key = make_sort_key(schema, orderby)
    qh = query_hash(schema.set_name, opts)
    with sim.lock:
        cands, sorted_by = candidate_rows(td, node)
        rows = td.rows.values() if cands is None else cands
        if pred is not None:
            rows = [r for r in rows if pred(r) is True]
        else:
            rows = list(rows)
        total = len(rows)
        # rows from a sorted index on the only, ascending $orderby column are
        # already in key order (index entries are (value, primary key) pairs)
        if not (sorted_by and len(orderby) == 1 and orderby[0] == (sorted_by, False)
                and schema.cols[sorted_by].kind != "str"):
            rows.sort(key=key)
        page_no = 1
        if "$skiptoken" in opts:
            if top is not None:
                raise query_error("$skiptoken cannot be combined with $top.")
            page_no, raw = decode_skiptoken(opts["$skiptoken"], qh)
            rows = rows[bisect.bisect_right(rows, key_from_values(raw), key=key):]
        next_link = None
        if top is not None:
            rows = rows[:top]
        elif len(rows) > page_size:
            rows = rows[:page_size]
            token = encode_skiptoken(page_no + 1, raw_key(rows[-1]), qh)
            q = "&".join(raw_parts + ["$skiptoken=" + quote(token, safe="")])
            next_link = "%s://%s%s?%s" % (sim.scheme, host, path, q)
        base = entity_base(host, env, root, sim.scheme)
        value = [project(env, schema, r, select, expands, patterns) for r in rows]
    body = {"@odata.context": context_url(base, schema, select, expands)}
    if count == "true":
        body["@odata.count"] = min(total, MAX_PAGE)
    body["value"] = value
    if next_link:
        body["@odata.nextLink"] = next_link
    headers = []
    if applied:
        headers.append(("Preference-Applied", ",".join(applied)))
    return body, headers


def run_single(sim, env, schema, key, raw_query, prefs, host, root):
    opts, aliases, _raw = parse_query_string(raw_query)
    for k in opts:
        if k not in ("$select", "$expand"):
            raise query_error("The query option '%s' is not allowed when retrieving a single "
                              "row." % k)
    select = parse_select(schema, opts.get("$select"))
    expands = parse_expand(schema, opts.get("$expand"))
    check_expand_privileges(env, expands)
    patterns = None
    headers = []
    if "odata.include-annotations" in prefs:
        patterns = [p.strip() for p in prefs["odata.include-annotations"].split(",")]
        headers.append(("Preference-Applied",
                        'odata.include-annotations="%s"' % prefs["odata.include-annotations"]))
    with sim.lock:
        row = env.tables[schema.set_name].rows.get(key)
        if row is None:
            raise ODataError(404, ERR_NOT_EXIST, "%s With Id = %s Does Not Exist"
                             % (schema.logical, key))
        base = entity_base(host, env, root, sim.scheme)
        body = {"@odata.context": context_url(base, schema, select, expands, entity=True)}
        body.update(project(env, schema, row, select, expands, patterns))
    return body, headers


# --------------------------------------------------------------------------
# HTTP

class Response:
    def __init__(self, status, body=b"", ctype="application/json; charset=utf-8",
                 headers=None):
        self.status = status
        if isinstance(body, (dict, list)):
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            try:
                body = text.encode()
            except UnicodeEncodeError:
                # a lone surrogate (a .NET string cut inside a pair) cannot be
                # UTF-8: send every non-ASCII character \u-escaped, as the
                # service's JSON writer can
                body = json.dumps(body, separators=(",", ":")).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.body = body
        self.ctype = ctype
        self.headers = headers or []


def odata_error_response(e):
    return Response(e.status, {"error": {"code": e.code, "message": e.message}}, ODATA_JSON,
                    list(e.headers))


def aad_error(status, error, code, description):
    now = time.time()
    trace, corr = new_guid(), new_guid()
    ts = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))
    body = {"error": error,
            "error_description": "AADSTS%d: %s Trace ID: %s Correlation ID: %s "
                                 "Timestamp: %s" % (code, description, trace, corr, ts),
            "error_codes": [code], "timestamp": ts, "trace_id": trace,
            "correlation_id": corr,
            "error_uri": "https://login.microsoftonline.com/error?code=%d" % code}
    return Response(status, body, "application/json; charset=utf-8",
                    [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dvsim/1"
    sys_version = ""
    timeout = 120
    # an answer leaves in one write and at once: with Nagle's algorithm on and
    # headers and body written apart, every keep-alive answer waited ~40 ms for
    # the client's delayed ACK, which no real front end does
    disable_nagle_algorithm = True

    sim = None  # set by make_server

    def __init__(self, request, client_address, server, conn=None):
        self.conn = conn if conn is not None else Connection(None, 0)
        super().__init__(request, client_address, server)

    # ---- plumbing --------------------------------------------------------
    def handle_one_request(self):
        # an idle keep-alive connection waits idle_close for its next request
        # line (a timeout closes it: FIN); the request itself has self.timeout
        idle = self.server.idle_close
        if idle is not None:
            self.connection.settimeout(idle)
        super().handle_one_request()

    def parse_request(self):
        if self.server.idle_close is not None:
            self.connection.settimeout(self.timeout)
        return super().parse_request()

    def log_message(self, fmt, *args):
        log = self.sim.log
        if log is not None:
            log.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))
            log.flush()

    def version_string(self):
        return self.server_version

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PUT(self):
        self.dispatch("PUT")

    def read_body(self):
        n = self.headers.get("Content-Length")
        if n is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return self.read_chunked()
            return b""
        try:
            n = int(n)
        except ValueError:
            return b""
        return self.rfile.read(n) if n > 0 else b""

    def read_chunked(self):
        out = []
        while True:
            line = self.rfile.readline()
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(out)
            out.append(self.rfile.read(size))
            self.rfile.readline()

    def host(self):
        return self.headers.get("Host") or "127.0.0.1:%d" % self.sim.port

    def send(self, resp, fault=None):
        """Write resp, applying a delivery fault (slow, truncated); returns bytes sent."""
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.ctype)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers:
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n")
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        body = resp.body
        if fault is not None and fault.kind == "truncated":
            part = body[:len(body) // 2]
            self.wfile.write(head + part)
            self.close_connection = True
            self.hard_close(graceful=True)
            return len(part)
        if fault is not None and fault.kind == "slow":
            self.wfile.write(head)
            if not body:
                return 0
            chunks = max(1, min(len(body), int(fault.seconds * 10)))
            step = max(1, -(-len(body) // chunks))
            pause = fault.seconds / max(1, -(-len(body) // step))
            for i in range(0, len(body), step):
                if i:
                    time.sleep(pause)
                self.wfile.write(body[i:i + step])
            return len(body)
        self.wfile.write(head + body)
        return len(body)

    def hard_close(self, graceful=False):
        try:
            if not graceful:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    # ---- routing ---------------------------------------------------------
    def dispatch(self, method):
        try:
            self.route(method)
        except Exception:  # a dvsim bug: say so loudly, answer 500, keep serving
            import traceback
            traceback.print_exc()
            try:
                self.send(Response(500, {"error": {"code": ERR_UNEXPECTED, "message":
                                                   "dvsim internal error (see its stderr)"}},
                                   ODATA_JSON))
            except OSError:
                pass
            self.close_connection = True

    def route(self, method):
        t0 = time.time()
        body = self.read_body()
        url = urlsplit(self.path)
        path = url.path
        segs = [s for s in path.split("/")][1:]
        sim = self.sim
        host_env = self.conn.listener.env if self.conn.listener is not None else None
        if host_env is not None:
            # an environment's own host serves its Web API at the root, nothing else
            if len(segs) >= 3 and tuple(segs[0:3]) == API_PREFIX:
                self.handle_api(method, sim.envs[host_env], True, segs[3:], url, t0)
            else:
                self.not_found(host_env, method, t0)
            return
        if segs and segs[0] == "_admin":
            self.handle_admin(method, segs[1:], url.query, body)
            return
        # token endpoint: /{tenant}/oauth2/v2.0/token
        if len(segs) == 4 and segs[1:] == ["oauth2", "v2.0", "token"]:
            self.handle_token(method, segs[0], body, t0)
            return
        env, root, rest = None, False, None
        if len(segs) >= 4 and tuple(segs[1:4]) == API_PREFIX and segs[0] in sim.envs:
            env, rest = sim.envs[segs[0]], segs[4:]
        elif len(segs) >= 3 and tuple(segs[0:3]) == API_PREFIX and sim.envs:
            env, root, rest = sim.first_env(), True, segs[3:]
        if env is None:
            self.not_found("_unknown", method, t0)
            return
        self.handle_api(method, env, root, rest, url, t0)

    def not_found(self, env_name, method, t0):
        resp = Response(404, {"error": {"code": ERR_SEGMENT, "message":
                                        "No HTTP resource was found that matches the "
                                        "request URI '%s://%s%s'." % (self.sim.scheme,
                                                                       self.host(), self.path)}},
                        ODATA_JSON)
        self.finish_request(env_name, "other", method, resp, None, t0)

    def finish_request(self, env_name, what, method, resp, fault, t0):
        """Record the request in the statistics, then answer it: a client that
        reads /_admin/stats after its response always finds the request there."""
        resp.headers.append(("REQ_ID", new_guid()))
        if resp.ctype == ODATA_JSON:
            resp.headers.append(("OData-Version", "4.0"))
        n = len(resp.body)
        if fault is not None and fault.kind == "truncated":
            n //= 2
        with self.sim.lock:
            self.sim.stats.record(env_name, what, method, self.path, resp.status, n,
                                  fault.kind if fault else None, t0, self.conn)
        self.server.delay(self.conn)
        try:
            self.send(resp, fault)
        except OSError:
            self.close_connection = True

    def apply_fault(self, env_name, what, method, t0, token_endpoint=False):
        """Handle a matching fault. Returns (done, fault): done when the fault
        answered the request itself; else fault is a delivery fault or None."""
        sim = self.sim
        f = sim.take_fault(env_name, what, time.time())
        if f is None:
            return False, None
        k = f.kind
        if k == "stall":
            time.sleep(f.seconds)
            return False, f     # answered normally, logged as stalled
        if k in ("slow", "truncated", "foreign_nextlink"):
            return False, f
        if k == "reset":
            with sim.lock:
                sim.stats.record(env_name, what, method, self.path, 0, 0, "reset", t0,
                                 self.conn)
            self.server.delay(self.conn)
            self.hard_close(graceful=f.graceful)
            return True, f
        if k == "429":
            headers = []
            if f.retry_after_date is not None:
                headers.append(("Retry-After", email.utils.formatdate(
                    time.time() + float(f.retry_after_date), usegmt=True)))
            elif f.retry_after is not None:
                headers.append(("Retry-After", str(f.retry_after)))
            if token_endpoint:
                resp = aad_error(429, "temporarily_unavailable", 90055,
                                 "TenantThrottlingError - There are too many incoming requests.")
                resp.headers.extend(headers)
            else:
                resp = odata_error_response(ODataError(429, f.code, THROTTLE[f.code], headers))
        elif k in ("500", "503"):
            headers = []
            if f.retry_after is not None:
                headers.append(("Retry-After", str(f.retry_after)))
            if token_endpoint:
                resp = aad_error(int(k), "temporarily_unavailable", 50001,
                                 "The server encountered an unexpected error.")
                resp.headers.extend(headers)
            else:
                resp = odata_error_response(ODataError(
                    int(k), ERR_UNEXPECTED, "An unexpected error occurred." if k == "500"
                    else "The service is temporarily unavailable.", headers))
        elif k == "401":
            token = self.headers.get("Authorization", "").partition(" ")[2].strip()
            with sim.lock:
                if token:
                    sim.revoke(token=token)
            env = sim.envs.get(env_name)
            if token_endpoint or env is None:
                resp = aad_error(401, "invalid_client", 7000215,
                                 "Invalid client secret provided. Ensure the secret being sent "
                                 "in the request is the client secret value, not the client "
                                 "secret ID.")
            else:
                resp = self.unauthorized(env, "invalid")
        elif k == "invalid_json":
            resp = Response(200, b'{"@odata.context":"x","value":[{"id":1,}, oops',
                            ODATA_JSON)
        elif k == "huge":
            n = int(f.mb * 1024 * 1024)
            head = b'{"@odata.context":"x","value":[],"padding":"'
            pad = n - len(head) - 2
            resp = Response(200, head + b"x" * max(0, pad) + b'"}', ODATA_JSON)
        elif k == "wrong_content_type":
            resp = Response(200, "<!DOCTYPE html><html><head><title>Sign in to your account"
                            "</title></head><body><p>dvsim: this is not JSON.</p></body>"
                            "</html>", "text/html; charset=utf-8")
        else:
            raise AssertionError(k)
        self.finish_request(env_name, what, method, resp, f, t0)
        return True, f

    # ---- token endpoint --------------------------------------------------
    def handle_token(self, method, tenant, body, t0):
        sim = self.sim
        with sim.lock:
            in_tenant = [e for e in sim.envs.values() if e.tenant.lower() == tenant.lower()]
        form = {}
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            try:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                form = {}
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                cid, _s, csec = base64.b64decode(auth[6:].strip()).decode().partition(":")
                form.setdefault("client_id", unquote_plus(cid))
                form.setdefault("client_secret", unquote_plus(csec))
            except (ValueError, UnicodeDecodeError):
                pass
        env = self.env_for_token(in_tenant, form)
        env_name = env.name if env else "_unknown"
        done, fault = self.apply_fault(env_name, "token", method, t0, token_endpoint=True)
        if done:
            return
        resp = self.token_response(method, tenant, in_tenant, form, env)
        self.finish_request(env_name, "token", method, resp, fault, t0)

    def env_for_token(self, in_tenant, form):
        scope = form.get("scope", "")
        for e in in_tenant:
            if self.scope_env(scope, [e]) is e:
                return e
        cid = form.get("client_id", "").lower()
        for e in in_tenant:
            if e.client_id == cid:
                return e
        return None

    def scope_env(self, scope, envs):
        if not scope.endswith("/.default"):
            return None
        resource = scope[:-len("/.default")].rstrip("/")
        u = urlsplit(resource)
        if u.scheme not in ("http", "https"):
            return None
        port = self.sim.port
        netloc, path = u.netloc.lower(), u.path.rstrip("/")
        for e in envs:      # an environment on its own host (--env-hosts)
            address = self.sim.addresses.get(e.name)
            if address and path == "" and netloc in ("%s:%d" % (address, port), "%s.dvsim.test:%d"
                                                     % (e.name.lower(), port)):
                return e
        hosts = {self.host().lower(), "127.0.0.1:%d" % port, "localhost:%d" % port,
                 "[::1]:%d" % port, "login.dvsim.test:%d" % port}
        if netloc not in hosts:
            return None
        first = self.sim.first_env()
        for e in envs:
            if path == "/" + e.name or (path == "" and e is first):
                return e
        return None

    def token_response(self, method, tenant, in_tenant, form, env):
        now = time.time()
        if method != "POST":
            return aad_error(400, "invalid_request", 900561,
                             "The endpoint only accepts POST, OPTIONS requests. Received a "
                             "%s request." % method)
        if not in_tenant:
            return aad_error(400, "invalid_request", 90002,
                             "Tenant '%s' not found. Check to make sure you have the correct "
                             "tenant ID and are signing into the correct cloud." % tenant)
        gt = form.get("grant_type")
        if not gt:
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: "
                             "'grant_type'.")
        if gt != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003,
                             "The app requested an unsupported grant type '%s'." % gt)
        cid = form.get("client_id", "")
        if not cid:
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: "
                             "'client_id'.")
        apps = [e for e in in_tenant if e.client_id == cid.lower()]
        if not apps:
            return aad_error(400, "unauthorized_client", 700016,
                             "Application with identifier '%s' was not found in the directory "
                             "'%s'. This can happen if the application has not been installed "
                             "by the administrator of the tenant or consented to by any user "
                             "in the tenant. You may have sent your authentication request to "
                             "the wrong tenant." % (cid, tenant))
        secret = form.get("client_secret")
        if not secret:
            return aad_error(401, "invalid_client", 7000216,
                             "'client_assertion', 'client_secret' or 'request' is required "
                             "for the 'client_credentials' grant type.")
        apps = [e for e in apps if secrets.compare_digest(e.client_secret.encode(),
                                                           secret.encode())]
        if not apps:
            return aad_error(401, "invalid_client", 7000215,
                             "Invalid client secret provided. Ensure the secret being sent in "
                             "the request is the client secret value, not the client secret "
                             "ID, for a secret added to app '%s'." % cid)
        scope = form.get("scope")
        if not scope:
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: "
                             "'scope'.")
        if not scope.endswith("/.default"):
            return aad_error(400, "invalid_scope", 1002012,
                             "The provided value for scope %s is not valid. Client credential "
                             "flows must have a scope value with /.default suffixed to the "
                             "resource identifier (application ID URI)." % scope)
        target = self.scope_env(scope, apps)
        if target is None:
            return aad_error(400, "invalid_resource", 500011,
                             "The resource principal named %s was not found in the tenant "
                             "named %s. This can happen if the application has not been "
                             "installed by the administrator of the tenant or consented to by "
                             "any user in the tenant. You might have sent your authentication "
                             "request to the wrong tenant." % (scope[:-len("/.default")],
                                                               tenant))
        with self.sim.lock:
            token, lifetime = self.sim.issue_token(target, now)
        return Response(200, {"token_type": "Bearer", "expires_in": lifetime,
                              "ext_expires_in": lifetime, "access_token": token},
                        "application/json; charset=utf-8",
                        [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")])

    # ---- Web API ---------------------------------------------------------
    def unauthorized(self, env, reason):
        base = "%s://%s" % (self.sim.scheme, self.host())
        www = 'Bearer authorization_uri=%s/%s/oauth2/authorize, resource_id=%s/%s/' % (
            base, env.tenant, base, env.name)
        if reason in ("invalid", "expired", "audience"):
            www = 'Bearer error="invalid_token", error_description="Error during token ' \
                  'validation!", ' + www[len("Bearer "):]
        msg = {"missing": "Authorization header with a bearer token is required.",
               "invalid": "The bearer token is not valid (revoked or unknown).",
               "expired": "The bearer token has expired.",
               "audience": "The bearer token was issued for another organization."}[reason]
        return odata_error_response(ODataError(401, ERR_AUTH, msg,
                                               [("WWW-Authenticate", www)]))

    def handle_api(self, method, env, root, rest, url, t0):
        sim = self.sim
        what = rest[0] if rest else ""
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?$", what)
        set_name = m.group(1) if m else what
        stat_key = set_name if set_name in TABLES_BY_SET or set_name == "WhoAmI" else "other"
        done, fault = self.apply_fault(env.name, stat_key, method, t0)
        if done:
            return
        try:
            with sim.lock:
                reason = sim.check_token(env, self.headers.get("Authorization"), time.time())
            if reason:
                resp = self.unauthorized(env, reason)
            elif method != "GET":
                raise ODataError(405, ERR_QUERY, "dvsim simulates read-only access: %s is not "
                                 "allowed (s3mond never writes to Dataverse)." % method)
            else:
                resp = self.api_get(env, root, rest, set_name, m, url)
                if fault is not None and fault.kind == "foreign_nextlink":
                    self.foreign_next_link(resp, fault)
        except ODataError as e:
            resp = odata_error_response(e)
        self.finish_request(env.name, stat_key, method, resp, fault, t0)

    def foreign_next_link(self, resp, fault):
        """The answer as it was, but its @odata.nextLink (added if there was none)
        points at another host: a client must refuse to follow it (and so to send
        its token there)."""
        body = json.loads(resp.body)
        # with --env-hosts 127.0.0.2 is an environment's own host: another one
        host = fault.host or "%s:%d" % ("127.255.255.254" if self.sim.env_hosts else "127.0.0.2",
                                        self.sim.port)
        body["@odata.nextLink"] = "%s://%s%s" % (self.sim.scheme, host, self.path)
        resp.body = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def api_get(self, env, root, rest, set_name, m, url):
        sim = self.sim
        prefs = parse_prefer(self.headers.get_all("Prefer") or [])
        host = self.host()
        if not rest or rest == [""]:
            base = entity_base(host, env, root, sim.scheme)
            body = {"@odata.context": "%s/api/data/v9.2/$metadata" % base,
                    "value": [{"name": t.set_name, "kind": "EntitySet", "url": t.set_name}
                              for t in TABLES]}
            return Response(200, body, ODATA_JSON)
        if set_name == "WhoAmI" and len(rest) == 1 and m.group(2) in (None, ""):
            body = {"@odata.context": "%s/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM."
                                      "WhoAmIResponse" % entity_base(host, env, root, sim.scheme),
                    "BusinessUnitId": env.bu_id, "UserId": env.user_id,
                    "OrganizationId": env.org_id}
            return Response(200, body, ODATA_JSON)
        schema = TABLES_BY_SET.get(set_name)
        if schema is None or not m or len(rest) > 1:
            raise ODataError(404, ERR_SEGMENT, "Resource not found for the segment '%s'."
                             % (set_name if schema is None else rest[-1]))
        if set_name in env.deny_read:
            raise privilege_error(env, schema)
        path = url.path
        if m.group(2) is not None:
            key = m.group(2)
            if not GUID_RE.match(key):
                raise query_error("Bad Request - Error in query syntax: the key '%s' is not a "
                                  "GUID." % key)
            body, headers = run_single(sim, env, schema, key.lower(), url.query, prefs, host,
                                       root)
        else:
            body, headers = run_collection(sim, env, schema, url.query, prefs, host, root, path)
        return Response(200, body, ODATA_JSON, headers)

    # ---- admin API -------------------------------------------------------
    def handle_admin(self, method, segs, query, body):
        try:
            resp = self.admin(method, segs, body)
        except ScenarioError as e:
            resp = Response(400, {"error": str(e)})
        except ValueError as e:
            resp = Response(400, {"error": str(e)})
        resp.headers.append(("Cache-Control", "no-cache"))
        try:
            self.send(resp)
        except OSError:
            self.close_connection = True
        if segs == ["shutdown"] and method == "POST":
            threading.Thread(target=self.sim.server.shutdown, daemon=True).start()

    def admin(self, method, segs, body):
        sim = self.sim
        data = None
        if body:
            try:
                data = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                return Response(400, {"error": "the body is not JSON: %s" % e})
        now = time.time()
        if segs == ["health"] and method == "GET":
            with sim.lock:
                return Response(200, {"ok": True, "port": sim.port,
                                      "environments": list(sim.envs), "info": sim.info()})
        if segs == ["stats"] and method == "GET":
            with sim.lock:
                return Response(200, sim.stats.snapshot())
        if segs == ["stats", "reset"] and method == "POST":
            with sim.lock:
                sim.stats.reset()
            return Response(200, {"ok": True})
        if segs == ["expected"] and method == "GET":
            return Response(200, sim.expected)
        if segs == ["shutdown"] and method == "POST":
            return Response(200, {"ok": True})
        if segs == ["scenario"] and method == "POST":
            with sim.lock:
                before = set(sim.envs)
                sim.load(data, "admin scenario")
                new = [e for e in sim.envs if e not in before]
                try:
                    for name in new:
                        self.server.add_environment(name)
                except OSError as e:
                    return Response(500, {"error": "loaded, but cannot listen for %s: %s"
                                          % (name, e), "environments": new})
                return Response(200, {"environments": new})
        if segs == ["tokens", "revoke"] and method == "POST":
            env = (data or {}).get("env") if isinstance(data, dict) else None
            with sim.lock:
                n = sim.revoke(env_name=env)
            return Response(200, {"revoked": n})
        if segs and segs[0] == "faults":
            return self.admin_faults(method, segs[1:], data, now)
        if not segs or segs[0] not in sim.envs:
            return Response(404, {"error": "no such admin resource or environment: /%s"
                                  % "/".join(segs)})
        env = sim.envs[segs[0]]
        if len(segs) == 1:
            if method == "PATCH" and isinstance(data, dict):
                return self.admin_env(env, data)
            if method == "GET":
                with sim.lock:
                    return Response(200, {"name": env.name, "tenant": env.tenant,
                                          "client_id": env.client_id,
                                          "token_lifetime": env.token_lifetime or
                                          sim.token_lifetime,
                                          "deny_read": sorted(env.deny_read),
                                          "counts": {s: len(t.rows)
                                                     for s, t in env.tables.items()}})
            return Response(405, {"error": "use GET or PATCH on /_admin/<env>"})
        set_name = segs[1]
        if set_name not in TABLES_BY_SET:
            return Response(404, {"error": "unknown entity set %r" % set_name})
        td = env.tables[set_name]
        if len(segs) == 2:
            if method == "POST":
                rows = data if isinstance(data, list) else [data]
                ids, ins, upd = [], 0, 0
                with sim.lock:
                    for i, r in enumerate(rows):
                        row, was = env.upsert(set_name, r, now, "%s[%d]" % (set_name, i))
                        ids.append(row[td.schema.pk])
                        upd += was
                        ins += not was
                return Response(200, {"inserted": ins, "updated": upd, "ids": ids})
            if method == "GET":
                with sim.lock:
                    return Response(200, {"value": [project(env, td.schema, r, None, [], None)
                                                    for r in td.rows.values()]})
            if method == "DELETE":
                with sim.lock:
                    n = len(td.rows)
                    td.rows.clear()
                    td.changed()
                return Response(200, {"deleted": n})
        if len(segs) == 3:
            key = segs[2].lower()
            with sim.lock:
                row = td.rows.get(key)
                if row is None:
                    return Response(404, {"error": "no %s row %s" % (set_name, key)})
                if method == "PATCH":
                    if not isinstance(data, dict):
                        return Response(400, {"error": "PATCH needs a JSON object"})
                    data = dict(data)
                    data[td.schema.pk] = key
                    row, _was = env.upsert(set_name, data, now, set_name)
                    return Response(200, project(env, td.schema, row, None, [], None))
                if method == "DELETE":
                    del td.rows[key]
                    td.changed()
                    return Response(200, {"deleted": 1})
                if method == "GET":
                    return Response(200, project(env, td.schema, row, None, [], None))
        if len(segs) == 4 and method == "POST":
            with sim.lock:
                try:
                    row, changed = admin_change(env, set_name, segs[2].lower(), segs[3], data,
                                                now)
                except KeyError:
                    return Response(404, {"error": "no %s row %s" % (set_name, segs[2])})
                return Response(200, {"row": None if row is None else
                                      project(env, td.schema, row, None, [], None),
                                      "changed": changed})
        return Response(405, {"error": "method not allowed here"})

    def admin_env(self, env, data):
        with self.sim.lock:
            for k, v in data.items():
                if k == "client_secret" and isinstance(v, str) and v:
                    env.client_secret = v
                elif k == "client_id" and isinstance(v, str) and v:
                    env.client_id = v.lower()
                elif k == "token_lifetime" and (v is None or (isinstance(v, int) and v > 0)):
                    env.token_lifetime = v
                elif k == "deny_read" and isinstance(v, list) and all(
                        s in TABLES_BY_SET for s in v):
                    env.deny_read = set(v)
                else:
                    return Response(400, {"error": "cannot set %r to %r" % (k, v)})
        return Response(200, {"ok": True})

    def admin_faults(self, method, rest, data, now):
        sim = self.sim
        if not rest and method == "POST":
            specs = data if isinstance(data, list) else [data]
            faults = [Fault(s, now) for s in specs]
            with sim.lock:
                sim.faults.extend(faults)
            return Response(200, {"ids": [f.id for f in faults]})
        if not rest and method == "GET":
            with sim.lock:
                return Response(200, {"faults": [f.describe() for f in sim.faults
                                                 if not f.expired(now)]})
        if (not rest and method == "DELETE") or (rest == ["clear"] and method == "POST"):
            with sim.lock:
                n = len(sim.faults)
                sim.faults = []
            return Response(200, {"cleared": n})
        if len(rest) == 1 and method == "DELETE" and rest[0].isdigit():
            with sim.lock:
                before = len(sim.faults)
                sim.faults = [f for f in sim.faults if f.id != int(rest[0])]
                return Response(200, {"cleared": before - len(sim.faults)})
        return Response(405, {"error": "method not allowed here"})


def env_address(index):
    """The loopback address of the index-th environment (0-based, in load
    order) with --env-hosts: 127.0.0.2 ... 127.0.0.254, then 127.0.1.1 ...
    127.0.1.254, 127.0.2.1 ... (127.0.0.1 is the shared host)."""
    if index < 253:
        return "127.0.0.%d" % (index + 2)
    block, host = divmod(index - 253, 254)
    block += 1
    if block >= 65536:
        raise ValueError("too many environments for 127.0.0.0/8")
    return "127.%d.%d.%d" % (block // 256, block % 256, host + 1)


class Listener:
    __slots__ = ("sock", "address", "env", "ssl_ctx")

    def __init__(self, sock, address, env, ssl_ctx):
        self.sock, self.address, self.env, self.ssl_ctx = sock, address, env, ssl_ctx


def parse_latency(value):
    """'150ms', '0.15s' or a number of milliseconds -> seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$", str(value))
    if not m:
        raise ValueError("a latency is N, Nms or Ns (N milliseconds by default): %r" % value)
    return float(m.group(1)) / (1 if m.group(2) == "s" else 1000)


class Server:
    """dvsim's HTTP(S) server. One listening socket on the shared host (the
    token endpoint, /_admin, and every environment under /<env>) and, with
    env_hosts, one per environment on its own loopback address, all on the
    same port; one accept loop (a selector) over all of them and a thread per
    connection, so hundreds of hosts cost no idle threads.

    tls: a directory for the test CA (CertAuthority): every listener serves
    HTTPS with its own certificate. latency (seconds, or "150ms") is added
    before every answer but /_admin's, +- a uniform latency_jitter, and once
    more per round trip of a new connection's set-up (TCP, and TLS). idle_close:
    a keep-alive connection idle that many seconds is closed (FIN); by default
    after Handler.timeout (120 s), as always."""
    request_queue_size = 1024

    def __init__(self, sim, host="127.0.0.1", port=0, tls=None, env_hosts=False,
                 latency=0.0, latency_jitter=0.0, idle_close=None):
        if env_hosts and ":" in host:
            raise ValueError("--env-hosts needs the IPv4 loopback (127.0.0.0/8): IPv6 has one "
                             "loopback address")
        self.sim = sim
        self.handler = type("BoundHandler", (Handler,), {"sim": sim})
        self.latency = parse_latency(latency or 0)
        self.jitter = parse_latency(latency_jitter or 0)
        self.idle_close = float(idle_close) if idle_close is not None else None
        self.env_hosts = env_hosts
        self.ca = CertAuthority(tls) if tls else None
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._pending = []
        self._shutdown_request = False
        self._is_shut_down = threading.Event()
        self._is_shut_down.set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.listeners = []
        names = list(sim.envs) if env_hosts else []
        socks = self._bind_all(host, port, [env_address(i) for i in range(len(names))])
        self.port = socks[0].getsockname()[1]
        sim.port, sim.server, sim.host, sim.env_hosts = self.port, self, host, env_hosts
        sim.scheme = "https" if self.ca else "http"
        sim.ca_file = self.ca.ca_file if self.ca else None
        try:
            self.listeners.append(Listener(socks[0], host, None, self._context(
                host, ["login.dvsim.test", "localhost"])))
            for name, sock in zip(names, socks[1:]):
                self.listeners.append(self._env_listener(name, sock))
        except Exception:
            for sock in socks:
                sock.close()
            raise
        self.server_address = socks[0].getsockname()

    def _listen(self, address, port):
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                             socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(self.request_queue_size)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _bind_all(self, host, port, addresses):
        """The shared host and every address on one port, free on all of them."""
        attempts = 1 if port else 50
        for attempt in range(attempts):
            socks = []
            try:
                socks.append(self._listen(host, port))
                p = socks[0].getsockname()[1]
                for a in addresses:
                    socks.append(self._listen(a, p))
                return socks
            except OSError:
                for sock in socks:
                    sock.close()
                if attempt == attempts - 1:
                    raise

    def _context(self, address, names):
        return self.ca.server_context(address, names) if self.ca else None

    def _env_listener(self, name, sock):
        address = sock.getsockname()[0]
        self.sim.addresses[name] = address
        return Listener(sock, address, name, self._context(
            address, ["%s.dvsim.test" % name.lower()]))

    def add_environment(self, name):
        """An environment loaded while serving gets the next address (env_hosts)."""
        if not self.env_hosts or name in self.sim.addresses:
            return
        listener = self._env_listener(name, self._listen(env_address(len(self.sim.addresses)),
                                                         self.port))
        with self._lock:
            self.listeners.append(listener)
            self._pending.append(listener)
        self._wake()

    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # ---- the accept loop -------------------------------------------------
    def serve_forever(self, poll_interval=0.5):
        self._is_shut_down.clear()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self._wake_r, selectors.EVENT_READ, None)
                with self._lock:
                    for listener in self.listeners:
                        sel.register(listener.sock, selectors.EVENT_READ, listener)
                    self._pending = []
                while not self._shutdown_request:
                    for key, _events in sel.select(poll_interval):
                        if key.data is not None:
                            self._accept(key.data)
                            continue
                        try:
                            while os.read(self._wake_r, 512):
                                pass
                        except BlockingIOError:
                            pass
                        with self._lock:
                            pending, self._pending = self._pending, []
                        for listener in pending:
                            sel.register(listener.sock, selectors.EVENT_READ, listener)
        finally:
            self._shutdown_request = False
            self._is_shut_down.set()

    def _accept(self, listener):
        sim = self.sim
        while True:
            try:
                sock, addr = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:    # out of file descriptors: say so, keep serving
                print("dvsim: accept on %s: %s" % (listener.address, e), file=sys.stderr)
                return
            sock.setblocking(True)
            with sim.lock:
                conn = Connection(listener, sim.stats.epoch)
                sim.stats.accepted(conn)
            threading.Thread(target=self._serve_connection, args=(sock, addr, conn),
                             daemon=True).start()

    def _serve_connection(self, sock, addr, conn):
        sim = self.sim
        try:
            if conn.listener.ssl_ctx is not None:
                sock.settimeout(Handler.timeout)
                try:
                    sock = conn.listener.ssl_ctx.wrap_socket(sock, server_side=True)
                except (OSError, ValueError):
                    with sim.lock:
                        sim.stats.handshake(conn, False)
                    return
                with sim.lock:
                    sim.stats.handshake(conn, True, sock.session_reused)
            self.handler(sock, addr, self, conn)
        except OSError:
            pass                    # the client went away
        except Exception:           # a dvsim bug: say so loudly, keep serving
            import traceback
            traceback.print_exc()
        finally:
            self._close(sock)

    @staticmethod
    def _close(sock):
        """Close cleanly: TLS close_notify (not waiting for the peer's), then FIN."""
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.setblocking(False)
                sock.unwrap()
            except (OSError, ValueError):
                pass
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sock.close()

    def delay(self, conn):
        """Sleep one round trip before an answer; a new connection's first
        answer also pays for its set-up (TCP, and TLS: one round trip each)."""
        if not self.latency and not self.jitter:
            return
        trips = 1
        if conn is not None and conn.setup_pending:
            conn.setup_pending = False
            trips += 1 + conn.tls
        time.sleep(sum(max(0.0, self.latency + self._rng.uniform(-self.jitter, self.jitter))
                       for _ in range(trips)))

    def shutdown(self):
        """Stop serve_forever (from another thread) and wait until it has."""
        self._shutdown_request = True
        self._wake()
        self._is_shut_down.wait()

    def server_close(self):
        with self._lock:
            for listener in self.listeners:
                listener.sock.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1


def make_server(sim, host="127.0.0.1", port=0, tls=None, env_hosts=False, latency=0.0,
                latency_jitter=0.0, idle_close=None):
    return Server(sim, host, port, tls=tls, env_hosts=env_hosts, latency=latency,
                  latency_jitter=latency_jitter, idle_close=idle_close)


def start_in_thread(sim, host="127.0.0.1", port=0, tls=None, env_hosts=False, latency=0.0,
                    latency_jitter=0.0, idle_close=None):
    """For tests: serve in a daemon thread; returns the server (call .shutdown(),
    then .server_close()). The keyword arguments are Server's; sim.info(),
    sim.env_url(name), sim.authority and sim.ca_file say how to reach it."""
    server = make_server(sim, host, port, tls=tls, env_hosts=env_hosts, latency=latency,
                         latency_jitter=latency_jitter, idle_close=idle_close)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True)
    t.start()
    return server


DEFAULT_ENV = {"name": "org", "tenant": "00000000-0000-0000-0000-000000000001",
               "client_id": "11111111-1111-1111-1111-111111111111",
               "client_secret": "dvsim-secret", "tables": {}}


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="dvsim.py", description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", default=[], metavar="FILE",
                    help="load a scenario file (repeatable); without one, an empty "
                         "environment 'org' (tenant %s, client %s, secret %s)"
                         % (DEFAULT_ENV["tenant"], DEFAULT_ENV["client_id"],
                            DEFAULT_ENV["client_secret"]))
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (0)")
    ap.add_argument("--port-file", metavar="F",
                    help="write the port to F once listening (tests wait for it)")
    ap.add_argument("--token-lifetime", type=int, default=DEFAULT_TOKEN_LIFETIME, metavar="S",
                    help="expires_in of issued tokens, seconds (%d); a scenario "
                         "environment's token_lifetime wins" % DEFAULT_TOKEN_LIFETIME)
    ap.add_argument("--quiet", action="store_true", help="no request log on stderr")
    ap.add_argument("--log", metavar="FILE", help="append the request log to FILE")
    ap.add_argument("--check", action="store_true",
                    help="load and validate the scenarios, then exit")
    ap.add_argument("--tls", metavar="DIR",
                    help="serve HTTPS (TLS 1.2+, ALPN http/1.1): DIR/ca.pem is the test CA "
                         "to trust (s3mond ca_file), made with its key on first use; each "
                         "listening host gets its own certificate (IP and DNS names)")
    ap.add_argument("--env-hosts", action="store_true",
                    help="each environment on its own loopback address, in load order "
                         "127.0.0.2, 127.0.0.3, ... (then 127.0.1.1, ...), same port, its Web "
                         "API at the root; the token endpoint and /_admin stay on --host")
    ap.add_argument("--info-file", metavar="F",
                    help="write {port, authority, ca_file, admin, environments: {NAME: {url, "
                         "tenant, client_id, address}}} to F (atomically) once listening")
    ap.add_argument("--latency", default="0", metavar="T", type=parse_latency,
                    help="added before every answer but /_admin's, and once per round trip "
                         "of a new connection's set-up (TCP, TLS): 150ms, 0.15s (0)")
    ap.add_argument("--latency-jitter", default="0", metavar="T", type=parse_latency,
                    help="each round trip is --latency +- a uniform T (0)")
    ap.add_argument("--idle-close", type=float, metavar="SECS",
                    help="close a keep-alive connection idle SECS (FIN), like Azure's front "
                         "ends after about 240 s (default: after 120 s, as always)")
    args = ap.parse_args(argv)
    if args.env_hosts and ":" in args.host:
        ap.error("--env-hosts needs an IPv4 loopback --host (IPv6 has one loopback address)")

    log = None
    if args.log:
        log = open(args.log, "a", encoding="utf-8")
    elif not args.quiet:
        log = sys.stderr
    sim = Simulator(args.token_lifetime, log)
    try:
        if args.scenario:
            for path in args.scenario:
                sim.load_file(path)
        else:
            sim.load({"environments": [DEFAULT_ENV]}, "default")
    except ScenarioError as e:
        print("dvsim: %s" % e, file=sys.stderr)
        return 2
    if args.check:
        for env in sim.envs.values():
            print("%s: %s" % (env.name, ", ".join("%s=%d" % (s, len(t.rows))
                                                  for s, t in env.tables.items())))
        return 0
    try:
        server = make_server(sim, args.host, args.port, tls=args.tls, env_hosts=args.env_hosts,
                             latency=args.latency, latency_jitter=args.latency_jitter,
                             idle_close=args.idle_close)
    except OSError as e:    # cannot listen, or (--tls) cannot make the CA
        print("dvsim: cannot serve on %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 1
    if args.port_file:
        _write_atomic(args.port_file, "%d\n" % sim.port)
    if args.info_file:
        _write_atomic(args.info_file, json.dumps(sim.info(), indent=1) + "\n")
    if not args.quiet:
        print("dvsim: listening on %s%s" % (sim.authority, "  (CA %s)" % sim.ca_file
                                             if sim.ca_file else ""), file=sys.stderr)
        for env in sim.envs.values():
            print("dvsim:   %-12s url %s  tenant %s  client_id %s"
                  % (env.name, sim.env_url(env.name), env.tenant, env.client_id),
                  file=sys.stderr)
    def on_term(_sig, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, on_term)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
