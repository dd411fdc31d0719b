#!/usr/bin/env python3
# Tests for dvsim: it must answer like Dataverse, reject what Dataverse rejects,
# page exactly once through a result, and obey its admin API. unittest + http.client.
import contextlib
import http.client
import json
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings
from urllib.parse import quote, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dvsim  # noqa: E402
import oracle  # noqa: E402

TENANT = "contoso.onmicrosoft.com"
CID = "11111111-1111-1111-1111-111111111111"
SECRET = "prod-secret"
MB1 = "aaaaaaaa-0000-0000-0000-000000000001"
MB2 = "aaaaaaaa-0000-0000-0000-000000000002"
MSG_CREATE = "cccccccc-0000-0000-0000-000000000001"
MSG_UPDATE = "cccccccc-0000-0000-0000-000000000002"
F_EMAIL = "cccccccc-0000-0000-0001-000000000001"
F_EMAIL_UPD = "cccccccc-0000-0000-0001-000000000002"
PT = "cccccccc-0000-0000-0002-000000000001"
STEP1 = "dddddddd-0000-0000-0000-000000000001"
STEP2 = "dddddddd-0000-0000-0000-000000000002"
WF = "eeeeeeee-0000-0000-0000-000000000001"
WF_ACT = "eeeeeeee-0000-0000-0000-000000000002"
ASM = "cccccccc-0000-0000-0003-000000000001"


def scenario():
    tracelogs = [{"tracelogid": "bbbbbbbb-0000-0000-0000-%012d" % i, "level": 1 + i % 3,
                  "text": "alert %02d" % i, "_regardingobjectid_value": MB1 if i % 2 else MB2,
                  "createdon": "now-2h", "modifiedon": "now-%dm" % (i * 2 + 1)}
                 for i in range(23)]
    tracelogs.append({"tracelogid": "bbbbbbbb-1111-0000-0000-000000000000", "level": 2,
                      "text": "O'Brien's \"mailbox\" broke", "_regardingobjectid_value": MB1,
                      "modifiedon": "now-3h", "errordetails": None})
    return {"environments": [
        {"name": "prod", "tenant": TENANT, "client_id": CID, "client_secret": SECRET,
         "tables": {
             "mailboxes": [
                 {"mailboxid": MB1, "name": "Support", "emailaddress": "support@contoso.com",
                  "incomingemailstatus": 2, "lastsyncerrorcode": -2147220956,
                  "lastsyncerroroccurredon": "now-5m"},
                 {"mailboxid": MB2, "name": "Sales", "emailaddress": None,
                  "incomingemailstatus": 1}],
             "tracelogs": tracelogs,
             "sdkmessages": [{"sdkmessageid": MSG_CREATE, "name": "Create"},
                             {"sdkmessageid": MSG_UPDATE, "name": "Update"}],
             "sdkmessagefilters": [
                 {"sdkmessagefilterid": F_EMAIL, "_sdkmessageid_value": MSG_CREATE,
                  "primaryobjecttypecode": "email"},
                 {"sdkmessagefilterid": F_EMAIL_UPD, "_sdkmessageid_value": MSG_UPDATE,
                  "primaryobjecttypecode": "email"}],
             "pluginassemblies": [{"pluginassemblyid": ASM, "name": "Contoso.Email",
                                   "version": "1.4.1.0", "major": 1, "minor": 4,
                                   "createdon": "now-60d", "modifiedon": "now-30d"}],
             "plugintypes": [{"plugintypeid": PT, "typename": "Contoso.Plugins.EmailCreate",
                              "name": "Contoso.Plugins.EmailCreate",
                              "_pluginassemblyid_value": ASM}],
             "sdkmessageprocessingsteps": [
                 {"sdkmessageprocessingstepid": STEP1, "name": "EmailCreate: Create of email",
                  "mode": 0, "stage": 20, "_sdkmessageid_value": MSG_CREATE,
                  "_sdkmessagefilterid_value": F_EMAIL, "_plugintypeid_value": PT},
                 {"sdkmessageprocessingstepid": STEP2, "name": "EmailCreate: Update of email",
                  "mode": 1, "_sdkmessageid_value": MSG_UPDATE,
                  "_sdkmessagefilterid_value": F_EMAIL_UPD, "_plugintypeid_value": PT}],
             "workflows": [
                 {"workflowid": WF, "name": "Set email category", "category": 0, "type": 1,
                  "statecode": 1, "mode": 1, "primaryentity": "email",
                  "triggeroncreate": True, "syncworkflowlogonfailure": True},
                 {"workflowid": WF_ACT, "name": "Set email category", "type": 2,
                  "statecode": 1, "mode": 1, "primaryentity": "email",
                  "triggeroncreate": True, "_parentworkflowid_value": WF}],
             "processsessions": [
                 {"_processid_value": WF_ACT, "statuscode": 6, "statecode": 1,
                  "comments": "Object reference not set", "completedon": "now-5m"}],
             "plugintracelogs": [
                 {"pluginstepid": STEP1, "messagename": "Create", "primaryentity": "email",
                  "mode": 0, "typename": "Contoso.Plugins.EmailCreate",
                  "exceptiondetails": "System.InvalidPluginExecutionException: boom",
                  "createdon": "now-5m"}]}},
        {"name": "test", "tenant": "fabrikam.onmicrosoft.com", "client_id": CID,
         "client_secret": "test-secret", "token_lifetime": 1,
         "deny_read": ["plugintracelogs"],
         "tables": {"mailboxes": [{"name": "Test box"}]}}]}


class Base(unittest.TestCase):
    sim = None
    server = None

    @classmethod
    def setUpClass(cls):
        cls.sim = dvsim.Simulator(token_lifetime=3599)
        cls.sim.load(scenario(), "test")
        cls.server = dvsim.start_in_thread(cls.sim)
        cls.port = cls.sim.port
        cls.base = "http://127.0.0.1:%d" % cls.port
        cls._tokens = {}

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def setUp(self):
        self.admin("POST", "/_admin/faults/clear")

    # ---- HTTP helpers ----------------------------------------------------
    def request(self, method, path, body=None, headers=None, conn=None):
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
        finally:
            if own:
                conn.close()
        return r, data

    def admin(self, method, path, body=None):
        r, data = self.request(method, path, body)
        self.assertLess(r.status, 300, data)
        return json.loads(data)

    def token_request(self, tenant=TENANT, **form):
        body = "&".join("%s=%s" % (k, quote(v, safe="")) for k, v in form.items())
        return self.request("POST", "/%s/oauth2/v2.0/token" % tenant, body,
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def token(self, env="prod", tenant=None, secret=None, fresh=False):
        tenant = tenant or (TENANT if env == "prod" else "fabrikam.onmicrosoft.com")
        secret = secret or (SECRET if env == "prod" else "test-secret")
        if not fresh and env in self._tokens:
            return self._tokens[env]
        r, data = self.token_request(tenant, grant_type="client_credentials", client_id=CID,
                                     client_secret=secret,
                                     scope="%s/%s/.default" % (self.base, env))
        self.assertEqual(r.status, 200, data)
        tok = json.loads(data)["access_token"]
        self._tokens[env] = tok
        return tok

    def get(self, path, prefer=None, env="prod", token=None, conn=None):
        h = {"Authorization": "Bearer " + (token or self.token(env)),
             "Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
        if prefer:
            h["Prefer"] = prefer
        return self.request("GET", path, headers=h, conn=conn)

    def api(self, query, env="prod", prefer=None):
        path = "/%s/api/data/v9.2/%s" % (env, query.replace(" ", "%20"))
        r, data = self.get(path, prefer, env)
        return r, json.loads(data) if data else None

    def ok(self, query, env="prod", prefer=None):
        r, body = self.api(query, env, prefer)
        self.assertEqual(r.status, 200, body)
        return body

    def bad(self, query, status=400, code="0x80060888", contains=None):
        r, body = self.api(query)
        self.assertEqual(r.status, status, (query, body))
        self.assertEqual(set(body), {"error"}, body)
        self.assertEqual(set(body["error"]), {"code", "message"}, body)
        if code:
            self.assertEqual(body["error"]["code"], code, body)
        if contains:
            self.assertIn(contains, body["error"]["message"])
        return body

    @staticmethod
    def q(**opts):
        return "&".join("$%s=%s" % (k, quote(v, safe=",()/'=[]@$;*")) for k, v in opts.items())


class TestToken(Base):
    def test_token_shape(self):
        r, data = self.token_request(grant_type="client_credentials", client_id=CID,
                                     client_secret=SECRET, scope=self.base + "/prod/.default")
        self.assertEqual(r.status, 200)
        body = json.loads(data)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], 3599)
        self.assertTrue(body["access_token"])
        self.assertIn("no-store", r.getheader("Cache-Control"))

    def test_double_slash_scope_and_basic_auth(self):
        import base64
        cred = base64.b64encode(("%s:%s" % (CID, SECRET)).encode()).decode()
        body = "grant_type=client_credentials&scope=" + quote(self.base + "/prod//.default")
        r, data = self.request("POST", "/%s/oauth2/v2.0/token" % TENANT, body,
                               {"Content-Type": "application/x-www-form-urlencoded",
                                "Authorization": "Basic " + cred})
        self.assertEqual(r.status, 200, data)

    def aad(self, r, data, status, error, code):
        self.assertEqual(r.status, status, data)
        body = json.loads(data)
        self.assertEqual(body["error"], error)
        self.assertTrue(body["error_description"].startswith("AADSTS%d:" % code), body)
        self.assertEqual(body["error_codes"], [code])

    def test_wrong_secret(self):
        r, data = self.token_request(grant_type="client_credentials", client_id=CID,
                                     client_secret="nope", scope=self.base + "/prod/.default")
        self.aad(r, data, 401, "invalid_client", 7000215)
        self.assertNotIn(SECRET, data.decode())

    def test_unknown_client(self):
        r, data = self.token_request(grant_type="client_credentials",
                                     client_id="22222222-2222-2222-2222-222222222222",
                                     client_secret=SECRET, scope=self.base + "/prod/.default")
        self.aad(r, data, 400, "unauthorized_client", 700016)

    def test_unknown_tenant(self):
        r, data = self.token_request("nowhere.onmicrosoft.com", grant_type="client_credentials",
                                     client_id=CID, client_secret=SECRET,
                                     scope=self.base + "/prod/.default")
        self.aad(r, data, 400, "invalid_request", 90002)

    def test_bad_scopes(self):
        for scope, status, error, code in (
                (self.base + "/prod", 400, "invalid_scope", 1002012),
                (self.base + "/test/.default", 400, "invalid_resource", 500011),
                ("https://contoso.crm.dynamics.com/.default", 400, "invalid_resource", 500011)):
            r, data = self.token_request(grant_type="client_credentials", client_id=CID,
                                         client_secret=SECRET, scope=scope)
            self.aad(r, data, status, error, code)

    def test_missing_and_wrong_grant(self):
        r, data = self.token_request(client_id=CID, client_secret=SECRET,
                                     scope=self.base + "/prod/.default")
        self.aad(r, data, 400, "invalid_request", 900144)
        r, data = self.token_request(grant_type="password", client_id=CID,
                                     client_secret=SECRET, scope=self.base + "/prod/.default")
        self.aad(r, data, 400, "unsupported_grant_type", 70003)

    def test_401_without_token(self):
        r, data = self.request("GET", "/prod/api/data/v9.2/tracelogs")
        self.assertEqual(r.status, 401)
        www = r.getheader("WWW-Authenticate")
        self.assertTrue(www.startswith("Bearer "), www)
        self.assertIn("authorization_uri=%s/%s/oauth2/authorize" % (self.base, TENANT), www)
        body = json.loads(data)
        self.assertEqual(set(body["error"]), {"code", "message"})
        r, data = self.get("/prod/api/data/v9.2/tracelogs", token="garbage")
        self.assertEqual(r.status, 401)
        self.assertIn('error="invalid_token"', r.getheader("WWW-Authenticate"))

    def test_token_is_per_environment(self):
        tok = self.token("test", "fabrikam.onmicrosoft.com", "test-secret", fresh=True)
        r, _ = self.get("/prod/api/data/v9.2/mailboxes", token=tok)
        self.assertEqual(r.status, 401)
        r, _ = self.get("/test/api/data/v9.2/mailboxes", token=tok)
        self.assertEqual(r.status, 200)

    def test_expiry(self):
        r, data = self.token_request("fabrikam.onmicrosoft.com",
                                     grant_type="client_credentials", client_id=CID,
                                     client_secret="test-secret",
                                     scope=self.base + "/test/.default")
        body = json.loads(data)
        self.assertEqual(body["expires_in"], 1)
        r, _ = self.get("/test/api/data/v9.2/mailboxes", token=body["access_token"])
        self.assertEqual(r.status, 200)
        time.sleep(1.05)
        r, _ = self.get("/test/api/data/v9.2/mailboxes", token=body["access_token"])
        self.assertEqual(r.status, 401)
        self.assertIn("invalid_token", r.getheader("WWW-Authenticate"))

    def test_revoke_all(self):
        tok = self.token(fresh=True)
        self.assertEqual(self.get("/prod/api/data/v9.2/mailboxes", token=tok)[0].status, 200)
        self.admin("POST", "/_admin/tokens/revoke", {"env": "prod"})
        self.assertEqual(self.get("/prod/api/data/v9.2/mailboxes", token=tok)[0].status, 401)
        self._tokens.clear()

    def test_rotated_secret(self):
        self.admin("PATCH", "/_admin/test", {"client_secret": "rotated"})
        try:
            r, data = self.token_request("fabrikam.onmicrosoft.com",
                                         grant_type="client_credentials", client_id=CID,
                                         client_secret="test-secret",
                                         scope=self.base + "/test/.default")
            self.assertEqual(r.status, 401)
        finally:
            self.admin("PATCH", "/_admin/test", {"client_secret": "test-secret"})


class TestQuery(Base):
    def test_select_projection(self):
        body = self.ok("mailboxes?" + self.q(select="name,emailaddress"))
        self.assertTrue(body["@odata.context"].endswith(
            "/prod/api/data/v9.2/$metadata#mailboxes(name,emailaddress)"))
        for row in body["value"]:
            self.assertEqual(set(row), {"@odata.etag", "name", "emailaddress", "mailboxid"})
            self.assertRegex(row["@odata.etag"], r'^W/"\d+"$')
        sales = [r for r in body["value"] if r["name"] == "Sales"][0]
        self.assertIsNone(sales["emailaddress"])

    def test_content_type_and_headers(self):
        r, data = self.get("/prod/api/data/v9.2/mailboxes?$select=name")
        self.assertTrue(r.getheader("Content-Type").startswith(
            "application/json; odata.metadata=minimal"))
        self.assertEqual(r.getheader("OData-Version"), "4.0")
        self.assertEqual(int(r.getheader("Content-Length")), len(data))

    def test_datetime_format(self):
        body = self.ok("mailboxes?" + self.q(select="lastsyncerroroccurredon,modifiedon",
                                             filter="lastsyncerrorcode eq -2147220956"))
        self.assertEqual(len(body["value"]), 1)
        self.assertRegex(body["value"][0]["lastsyncerroroccurredon"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def test_filters(self):
        def ids(flt, set_name="tracelogs", key="tracelogid"):
            body = self.ok("%s?%s" % (set_name, self.q(select=key, filter=flt)))
            return {r[key] for r in body["value"]}
        self.assertEqual(len(ids("level eq 2")), 9)
        self.assertEqual(len(ids("level ne 2")), 15)
        self.assertEqual(len(ids("level ge 2 and level le 2")), 9)
        self.assertEqual(len(ids("level eq 1 or level eq 3")), 15)
        self.assertEqual(len(ids("not (level eq 2)")), 15)
        self.assertEqual(len(ids("(level eq 1 or level eq 3) and _regardingobjectid_value eq %s"
                                 % MB1)), 7)
        self.assertEqual(len(ids("contains(text,'ALERT 1')")), 10)
        self.assertEqual(len(ids("startswith(text,'alert 2')")), 3)
        self.assertEqual(len(ids("endswith(text,'broke')")), 1)
        self.assertEqual(len(ids("not contains(text,'alert')")), 1)
        self.assertEqual(len(ids("text eq 'O''Brien''s \"mailbox\" broke'")), 1)
        self.assertEqual(len(ids("errordetails eq null")), 24)
        self.assertEqual(len(ids("errordetails ne null")), 0)
        self.assertEqual(len(ids("Microsoft.Dynamics.CRM.In(PropertyName='level',"
                                 "PropertyValues=['1','3'])")), 15)
        self.assertEqual(len(ids("Microsoft.Dynamics.CRM.NotIn(PropertyName='level',"
                                 "PropertyValues=['1','3'])")), 9)
        self.assertEqual(len(ids("Microsoft.Dynamics.CRM.In(PropertyName="
                                 "'_regardingobjectid_value',PropertyValues=['%s'])" % MB1)), 12)
        t = dvsim.fmt_time(time.time() - 10 * 60)
        self.assertEqual(len(ids("modifiedon gt %s" % t)), 5)
        self.assertEqual(len(ids("modifiedon gt %s and level eq 2" % t)), 2)
        self.assertEqual(len(ids("modifiedon le %s" % t)), 19)
        # offsets are honoured ('+' must be sent as %2B)
        t2 = time.strftime("%Y-%m-%dT%H:%M:%S+01:00", time.gmtime(time.time() + 3600 - 600))
        self.assertEqual(len(ids("modifiedon gt %s" % t2)), 5)
        self.assertEqual(ids("workflowid eq %s" % WF, "workflows", "workflowid"), {WF})
        self.assertEqual(ids("_parentworkflowid_value eq %s" % WF, "workflows", "workflowid"),
                         {WF_ACT})
        self.assertEqual(ids("_parentworkflowid_value eq null and category eq 0 and type eq 1 "
                             "and statecode eq 1 and mode eq 1 and primaryentity eq 'email' "
                             "and triggeroncreate eq true", "workflows", "workflowid"), {WF})
        self.assertEqual(ids("triggeroncreate", "workflows", "workflowid"), {WF, WF_ACT})
        # string comparison is case-insensitive, like SQL Server
        self.assertEqual(ids("name eq 'SUPPORT'", "mailboxes", "mailboxid"), {MB1})
        body = self.ok("mailboxes?$select=name&$filter=name%20eq%20@p1&@p1='Support'")
        self.assertEqual([r["mailboxid"] for r in body["value"]], [MB1])

    def test_datetimes_kept_to_the_millisecond_served_to_the_second(self):
        res = self.admin("POST", "/_admin/prod/tracelogs",
                         {"level": 1, "text": "ms", "_regardingobjectid_value": MB1,
                          "modifiedon": "2020-01-02T03:04:05.250Z"})
        tid = res["ids"][0]
        try:
            row = self.ok("tracelogs(%s)?$select=modifiedon" % tid)
            self.assertEqual(row["modifiedon"], "2020-01-02T03:04:05Z")

            def n(flt):
                return len(self.ok("tracelogs?" + self.q(select="tracelogid", filter=flt))["value"])
            self.assertEqual(n("modifiedon gt 2020-01-02T03:04:05Z and text eq 'ms'"), 1)
            self.assertEqual(n("modifiedon eq 2020-01-02T03:04:05Z"), 0)
            self.assertEqual(n("modifiedon eq 2020-01-02T03:04:05.25Z"), 1)
            self.assertEqual(n("modifiedon gt 2020-01-02T03:04:05.250Z and text eq 'ms'"), 0)
        finally:
            self.admin("DELETE", "/_admin/prod/tracelogs/" + tid)

    def test_null_is_unknown(self):
        # SQL semantics: a null column matches neither eq nor ne a value
        body = self.ok("mailboxes?" + self.q(select="name", filter="emailaddress ne 'x@y'"))
        self.assertEqual({r["name"] for r in body["value"]}, {"Support"})

    def test_navigation_filter_and_expand(self):
        flt = ("sdkmessageid/name eq 'Create' and sdkmessagefilterid/primaryobjecttypecode eq "
               "'email' and mode eq 0 and statecode eq 0 and customizationlevel eq 1")
        body = self.ok("sdkmessageprocessingsteps?" + self.q(
            select="sdkmessageprocessingstepid,name,mode,stage,statecode,customizationlevel,"
                   "modifiedon",
            expand="sdkmessageid($select=name),sdkmessagefilterid($select="
                   "primaryobjecttypecode),plugintypeid($select=typename)",
            filter=flt))
        self.assertEqual(len(body["value"]), 1)
        row = body["value"][0]
        self.assertEqual(row["sdkmessageid"], {"name": "Create", "sdkmessageid": MSG_CREATE})
        self.assertEqual(row["sdkmessagefilterid"]["primaryobjecttypecode"], "email")
        self.assertEqual(row["plugintypeid"]["typename"], "Contoso.Plugins.EmailCreate")
        self.assertNotIn("_sdkmessageid_value", row)
        self.assertIn("sdkmessageid(name)", body["@odata.context"])
        body = self.ok("sdkmessageprocessingsteps?" + self.q(select="name",
                                                              expand="sdkmessageid"))
        self.assertIn("categoryname", body["value"][0]["sdkmessageid"])

    def test_annotations(self):
        body = self.ok("tracelogs?" + self.q(select="_regardingobjectid_value", top="1"),
                       prefer='odata.include-annotations="Microsoft.Dynamics.CRM.'
                              'lookuplogicalname"')
        row = body["value"][0]
        self.assertEqual(row["_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
                         "mailbox")
        self.assertEqual(len([k for k in row if "@" in k and k != "@odata.etag"]), 1)
        body = self.ok("sdkmessageprocessingsteps?" + self.q(select="_sdkmessageid_value,mode",
                                                              filter="mode eq 0"),
                       prefer='odata.include-annotations="*"')
        row = body["value"][0]
        self.assertEqual(row["_sdkmessageid_value@OData.Community.Display.V1.FormattedValue"],
                         "Create")
        self.assertEqual(row["_sdkmessageid_value@Microsoft.Dynamics.CRM."
                             "associatednavigationproperty"], "sdkmessageid")
        self.assertEqual(row["mode@OData.Community.Display.V1.FormattedValue"], "Synchronous")
        body = self.ok("tracelogs?" + self.q(select="_regardingobjectid_value", top="1"))
        self.assertEqual(len(body["value"][0]), 3)

    def test_orderby_and_top(self):
        body = self.ok("tracelogs?" + self.q(select="level,modifiedon",
                                             orderby="level desc,modifiedon asc", top="5"))
        rows = body["value"]
        self.assertEqual(len(rows), 5)
        self.assertNotIn("@odata.nextLink", body)
        self.assertTrue(all(r["level"] == 3 for r in rows))
        self.assertEqual([r["modifiedon"] for r in rows], sorted(r["modifiedon"] for r in rows))

    def test_root_and_single_and_whoami(self):
        r, data = self.get("/api/data/v9.2/mailboxes?$select=name")
        self.assertEqual(r.status, 200)
        self.assertEqual(len(json.loads(data)["value"]), 2)
        body = self.ok("mailboxes(%s)?$select=name" % MB1)
        self.assertEqual(body["name"], "Support")
        self.assertTrue(body["@odata.context"].endswith("$metadata#mailboxes(name)/$entity"))
        r, body = self.api("mailboxes(%s)" % MB1.replace("1", "9"))
        self.assertEqual(r.status, 404)
        self.assertEqual(body["error"]["code"], "0x80040217")
        body = self.ok("WhoAmI")
        self.assertIn("UserId", body)

    def test_count(self):
        body = self.ok("tracelogs?$select=level&$count=true")
        self.assertEqual(body["@odata.count"], 24)

    def test_privilege(self):
        r, body = self.api("plugintracelogs?$select=typename", env="test")
        self.assertEqual(r.status, 403)
        self.assertEqual(body["error"]["code"], "0x80040220")
        self.assertIn("prvReadPluginTraceLog", body["error"]["message"])

    def test_read_only(self):
        r, data = self.request("POST", "/prod/api/data/v9.2/mailboxes", {"name": "x"},
                               {"Authorization": "Bearer " + self.token()})
        self.assertEqual(r.status, 405)
        stats = self.admin("GET", "/_admin/stats")
        self.assertGreaterEqual(stats["environments"]["prod"]["writes"], 1)

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        for _ in range(5):
            r, data = self.get("/prod/api/data/v9.2/mailboxes?$select=name", conn=conn)
            self.assertEqual(r.status, 200)
            self.assertFalse(r.will_close)
        sock = conn.sock
        r, data = self.get("/prod/api/data/v9.2/mailboxes?$select=name", conn=conn)
        self.assertIs(conn.sock, sock)
        conn.close()

    def test_keep_alive_answers_at_once(self):
        # side by side: n answers on one kept-alive connection take less than n
        # answers on a new connection each (with headers and body in two writes
        # and Nagle on, a kept-alive answer waited ~40 ms for a delayed ACK)
        n = 15
        path = "/prod/api/data/v9.2/mailboxes?$select=name"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.get(path, conn=conn)
        t = time.monotonic()
        for _ in range(n):
            self.get(path, conn=conn)
        kept = time.monotonic() - t
        conn.close()
        t = time.monotonic()
        for _ in range(n):
            self.get(path)
        fresh = time.monotonic() - t
        self.assertLess(kept, fresh)


class TestStrictness(Base):
    def test_rejections(self):
        cases = [
            ("tracelogs?$select=nosuchcolumn", "Could not find a property named 'nosuchcolumn'"),
            ("tracelogs?$select=Text", "Could not find a property named 'Text'"),
            ("tracelogs?$select=regardingobjectid", "Could not find a property"),
            ("tracelogs?$orderby=nosuch desc", "Could not find a property named 'nosuch'"),
            ("tracelogs?$orderby=modifiedon downwards", "Syntax error"),
            ("tracelogs?$filter=nosuch eq 1", "Could not find a property named 'nosuch'"),
            ("tracelogs?$filter=" + quote("modifiedon gt '2026-11-25T09:00:00Z'"),
             "incompatible types"),
            ("tracelogs?$filter=" + quote("modifiedon gt 2026-11-25T09:00:00"), "Syntax error"),
            ("tracelogs?$filter=" + quote("modifiedon gt 2026-11-25"), "incompatible types"),
            ("tracelogs?$filter=" + quote("modifiedon gt 2026-13-25T09:00:00Z"),
             "DateTimeOffset"),
            ("tracelogs?$filter=" + quote("_regardingobjectid_value eq '%s'" % MB1),
             "incompatible types"),
            ("tracelogs?$filter=" + quote("level eq '2'"), "incompatible types"),
            ("tracelogs?$filter=" + quote("text eq 2"), "incompatible types"),
            ("tracelogs?$filter=" + quote("level eq true"), "incompatible types"),
            ("tracelogs?$filter=" + quote("frobnicate(text,'x')"), "unknown function"),
            ("tracelogs?$filter=" + quote("Contains(text,'x')"), "unknown function"),
            ("tracelogs?$filter=" + quote("tolower(text) eq 'x'"), "not supported"),
            ("tracelogs?$filter=" + quote("Microsoft.Dynamics.CRM.Frob(PropertyName='text')"),
             "unknown function"),
            ("tracelogs?$filter=" + quote("contains(level,'2')"), "No function signature"),
            ("tracelogs?$filter=" + quote("text eq 'O'Brien'"), "unterminated string"),
            ("tracelogs?$filter=" + quote("text eq 'it's'"), None),
            ("tracelogs?$filter=" + quote("text eq \"x\""), "not valid"),
            ("tracelogs?$filter=" + quote("level EQ 2"), "Syntax error"),
            ("tracelogs?$filter=" + quote("level eq 2 AND level eq 3"), "Syntax error"),
            ("tracelogs?$filter=" + quote("(level eq 2"), "expected"),
            ("tracelogs?$filter=" + quote("level eq"), "Expression expected"),
            ("tracelogs?$filter=" + quote("text"), "boolean"),
            ("tracelogs?$filter=" + quote("level in (1,2)"), "not supported"),
            ("tracelogs?$filter=" + quote("regardingobjectid/name eq 'x'"),
             "Could not find a property named 'regardingobjectid'"),
            ("sdkmessageprocessingsteps?$filter=" + quote("sdkmessageid/nosuch eq 'x'"),
             "on type 'Microsoft.Dynamics.CRM.sdkmessage'"),
            ("sdkmessageprocessingsteps?$filter=" + quote("sdkmessage/name eq 'Create'"),
             "Could not find a property named 'sdkmessage'"),
            ("sdkmessageprocessingsteps?$filter=" + quote("name/foo eq 'x'"), "single value"),
            ("sdkmessageprocessingsteps?$filter=" + quote("sdkmessageid eq %s" % MSG_CREATE),
             "incompatible types"),
            ("sdkmessageprocessingsteps?$filter=" + quote("_sdkmessageid_value/name eq 'x'"),
             "single value"),
            ("sdkmessageprocessingsteps?$expand=nosuch", "Could not find a property"),
            ("sdkmessageprocessingsteps?$expand=" + quote("sdkmessageid($select=nosuch)"),
             "on type 'Microsoft.Dynamics.CRM.sdkmessage'"),
            ("sdkmessageprocessingsteps?$expand=" + quote("sdkmessageid($filter=name eq 'x')"),
             "not allowed"),
            ("sdkmessageprocessingsteps?$select=sdkmessageid", "navigation property"),
            ("tracelogs?$skip=10", "$skip is not supported"),
            ("tracelogs?$top=-1", "$top"),
            ("tracelogs?$top=ten", "$top"),
            ("tracelogs?$search=foo", "not supported"),
            ("tracelogs?$frob=1", "not supported"),
            ("tracelogs?$select=text&$select=level", "more than once"),
            ("tracelogs?$Filter=" + quote("level eq 2"), "not supported"),
            ("tracelogs?$filter=" + quote("level eq 2") + "&$skiptoken=" + quote("<cookie/>"),
             "skiptoken"),
        ]
        for query, fragment in cases:
            with self.subTest(query=query):
                self.bad(query, contains=fragment)

    def test_plus_is_a_space(self):
        # '+' in a query string is a space to the service: an unencoded offset breaks
        self.bad("tracelogs?$filter=modifiedon%20gt%202026-11-25T09:00:00+01:00")

    def test_unknown_entity_set(self):
        for path in ("nosuchthings", "Tracelogs", "tracelog", "tracelogs/x"):
            with self.subTest(path=path):
                r, body = self.api(path)
                self.assertEqual(r.status, 404)
                self.assertEqual(body["error"]["code"], "0x8006088a")
        r, data = self.request("GET", "/nosuchenv/api/data/v9.2/tracelogs")
        self.assertEqual(r.status, 404)
        r, data = self.request("GET", "/prod/api/data/v9.1/tracelogs")
        self.assertEqual(r.status, 404)


class TestPaging(Base):
    def pages(self, first, prefer):
        seen, links, n = [], [], 0
        url = first
        while url:
            u = urlsplit(url)
            r, data = self.get(u.path + ("?" + u.query if u.query else ""), prefer)
            self.assertEqual(r.status, 200, data)
            body = json.loads(data)
            seen.extend(body["value"])
            url = body.get("@odata.nextLink")
            if url:
                links.append(url)
            n += 1
            self.assertLess(n, 100)
        return seen, links, n

    def test_pages_complete_once_in_order(self):
        first = "%s/prod/api/data/v9.2/tracelogs?%s" % (self.base, self.q(
            select="tracelogid,modifiedon,level", orderby="modifiedon desc",
            filter="level ne 0"))
        seen, links, n = self.pages(first, "odata.maxpagesize=5")
        self.assertEqual(n, 5)
        ids = [r["tracelogid"] for r in seen]
        self.assertEqual(len(ids), 24)
        self.assertEqual(len(set(ids)), 24)
        times = [r["modifiedon"] for r in seen]
        self.assertEqual(times, sorted(times, reverse=True))
        for link in links:
            u = urlsplit(link)
            self.assertEqual(u.scheme, "http")
            self.assertEqual(u.netloc, "127.0.0.1:%d" % self.port)
            self.assertIn("$skiptoken=", u.query)
            self.assertNotIn("$skip=", u.query)

    def test_multikey_order_with_ties(self):
        first = "/prod/api/data/v9.2/tracelogs?" + self.q(select="level,text",
                                                           orderby="level asc,text desc")
        seen, _links, _n = self.pages(first, "odata.maxpagesize=4")
        keys = [(r["level"], r["text"]) for r in seen]
        self.assertEqual(len(keys), 24)
        for a, b in zip(keys, keys[1:]):
            self.assertTrue(a[0] < b[0] or (a[0] == b[0] and a[1].casefold() >= b[1].casefold()),
                            (a, b))

    def test_preference_applied_and_cap(self):
        r, data = self.get("/prod/api/data/v9.2/tracelogs?$select=level",
                           "odata.maxpagesize=10")
        self.assertEqual(r.getheader("Preference-Applied"), "odata.maxpagesize=10")
        self.assertEqual(len(json.loads(data)["value"]), 10)
        r, data = self.get("/prod/api/data/v9.2/tracelogs?$select=level",
                           "odata.maxpagesize=6000")
        self.assertIsNone(r.getheader("Preference-Applied"))
        self.assertEqual(len(json.loads(data)["value"]), 24)

    def test_nextlink_needs_same_query(self):
        r, data = self.get("/prod/api/data/v9.2/tracelogs?$select=level", "odata.maxpagesize=5")
        link = urlsplit(json.loads(data)["@odata.nextLink"])
        tampered = link.query.replace("$select=level", "$select=level&$filter=level%20eq%202")
        r, data = self.get(link.path + "?" + tampered, "odata.maxpagesize=5")
        self.assertEqual(r.status, 400)

    def test_rows_added_between_pages_do_not_repeat(self):
        first = "/prod/api/data/v9.2/tracelogs?" + self.q(select="tracelogid,modifiedon",
                                                           orderby="modifiedon asc")
        r, data = self.get(first, "odata.maxpagesize=10")
        body = json.loads(data)
        got = [x["tracelogid"] for x in body["value"]]
        res = self.admin("POST", "/_admin/prod/tracelogs",
                         {"level": 2, "text": "late", "_regardingobjectid_value": MB1,
                          "modifiedon": "now-30s"})
        try:
            url = body["@odata.nextLink"]
            while url:
                u = urlsplit(url)
                r, data = self.get(u.path + "?" + u.query, "odata.maxpagesize=10")
                body = json.loads(data)
                got += [x["tracelogid"] for x in body["value"]]
                url = body.get("@odata.nextLink")
            self.assertEqual(len(got), len(set(got)))
            self.assertIn(res["ids"][0], got)
        finally:
            self.admin("DELETE", "/_admin/prod/tracelogs/" + res["ids"][0])


class TestAdmin(Base):
    def test_insert_update_delete(self):
        before = time.time()
        res = self.admin("POST", "/_admin/prod/tracelogs",
                         [{"level": 2, "text": "new alert", "_regardingobjectid_value": MB1},
                          {"level": 1, "text": "info", "_regardingobjectid_value": MB2,
                           "modifiedon": "now-1h", "createdon": "now-2h"}])
        self.assertEqual(res["inserted"], 2)
        a, b = res["ids"]
        row = self.ok("tracelogs(%s)?$select=createdon,modifiedon" % a)
        self.assertGreaterEqual(dvsim.parse_iso(row["modifiedon"]), int(before))
        self.assertEqual(row["createdon"], row["modifiedon"])
        row_b = self.ok("tracelogs(%s)?$select=modifiedon" % b)
        self.assertLess(dvsim.parse_iso(row_b["modifiedon"]), before - 3000)
        etag = row_b["@odata.etag"]
        self.admin("PATCH", "/_admin/prod/tracelogs/" + b, {"text": "recurred"})
        row_b2 = self.ok("tracelogs(%s)?$select=modifiedon,text" % b)
        self.assertGreaterEqual(dvsim.parse_iso(row_b2["modifiedon"]), int(before))
        self.assertNotEqual(row_b2["@odata.etag"], etag)
        self.assertEqual(row_b2["text"], "recurred")
        # upsert by primary key
        res = self.admin("POST", "/_admin/prod/tracelogs", {"tracelogid": b, "level": 3})
        self.assertEqual((res["inserted"], res["updated"]), (0, 1))
        for i in (a, b):
            self.admin("DELETE", "/_admin/prod/tracelogs/" + i)
        r, _ = self.api("tracelogs(%s)" % a)
        self.assertEqual(r.status, 404)

    def test_insert_validation(self):
        for row in ({"nosuch": 1}, {"level": "2"}, {"modifiedon": "yesterday"},
                    {"_regardingobjectid_value": "not-a-guid"},
                    {"_regardingobjectid_value": "99999999-0000-0000-0000-000000000000"},
                    {"regardingobjectid": MB1}):
            with self.subTest(row=row):
                r, data = self.request("POST", "/_admin/prod/tracelogs", row)
                self.assertEqual(r.status, 400, data)
        r, data = self.request("POST", "/_admin/prod/nosuchset", {})
        self.assertEqual(r.status, 404)

    def test_fault_429_then_recovery(self):
        self.token()
        self.admin("POST", "/_admin/stats/reset")
        self.admin("POST", "/_admin/faults", {"target": "prod/tracelogs", "kind": "429",
                                              "retry_after": 2, "count": 2,
                                              "code": "0x80072321"})
        for _ in range(2):
            r, body = self.api("tracelogs?$select=level")
            self.assertEqual(r.status, 429)
            self.assertEqual(r.getheader("Retry-After"), "2")
            self.assertEqual(body["error"]["code"], "0x80072321")
        self.assertEqual(self.api("mailboxes?$select=name")[0].status, 200)
        self.assertEqual(self.api("tracelogs?$select=level")[0].status, 200)
        st = self.admin("GET", "/_admin/stats")["environments"]["prod"]
        tl = st["sets"]["tracelogs"]
        self.assertEqual(tl["requests"], 3)
        self.assertEqual(tl["status"], {"429": 2, "200": 1})
        self.assertEqual([e["status"] for e in tl["log"]], [429, 429, 200])
        self.assertEqual(tl["log"][0]["fault"], "429")
        self.assertGreater(tl["bytes_sent"], 0)
        self.assertEqual(st["sets"]["mailboxes"]["requests"], 1)
        self.assertLessEqual(tl["log"][0]["t"], tl["log"][-1]["t"])

    def test_fault_retry_after_date_and_skip(self):
        self.token()
        self.admin("POST", "/_admin/faults", {"target": "prod", "kind": "429",
                                              "retry_after_date": 30, "skip": 1})
        self.assertEqual(self.api("mailboxes?$select=name")[0].status, 200)
        r, _ = self.api("mailboxes?$select=name")
        self.assertEqual(r.status, 429)
        import email.utils
        when = email.utils.parsedate_to_datetime(r.getheader("Retry-After")).timestamp()
        self.assertAlmostEqual(when, time.time() + 30, delta=3)
        self.assertEqual(self.api("mailboxes?$select=name")[0].status, 200)

    def test_fault_duration(self):
        self.token()
        t = time.monotonic()
        self.admin("POST", "/_admin/faults", {"target": "*", "kind": "503", "duration": 2})
        self.assertEqual(self.api("mailboxes?$select=name")[0].status, 503)
        self.assertEqual(self.api("mailboxes?$select=name")[0].status, 503)
        if time.monotonic() - t >= 2:
            self.skipTest("machine too slow for a 2 s window")
        time.sleep(max(0.0, 2.1 - (time.monotonic() - t)))
        self.assertEqual(self.api("mailboxes?$select=name")[0].status, 200)

    def test_fault_token_endpoint(self):
        self.admin("POST", "/_admin/faults", {"target": "prod/token", "kind": "500"})
        r, data = self.token_request(grant_type="client_credentials", client_id=CID,
                                     client_secret=SECRET, scope=self.base + "/prod/.default")
        self.assertEqual(r.status, 500)
        self.assertIn("error", json.loads(data))
        self.token(fresh=True)

    def test_fault_on_token_endpoint_bodies(self):
        self.admin("POST", "/_admin/faults", [{"target": "token", "kind": "401"},
                                              {"target": "prod/token", "kind": "429",
                                               "retry_after": 1}])
        for status in (401, 429):
            r, data = self.token_request(grant_type="client_credentials", client_id=CID,
                                         client_secret=SECRET,
                                         scope=self.base + "/prod/.default")
            self.assertEqual(r.status, status)
            self.assertIn("AADSTS", json.loads(data)["error_description"])
        self.assertEqual(r.getheader("Retry-After"), "1")

    def test_fault_401_revokes(self):
        tok = self.token(fresh=True)
        self.admin("POST", "/_admin/faults", {"target": "prod/mailboxes", "kind": "401"})
        r, _ = self.get("/prod/api/data/v9.2/mailboxes?$select=name", token=tok)
        self.assertEqual(r.status, 401)
        r, _ = self.get("/prod/api/data/v9.2/tracelogs?$select=level", token=tok)
        self.assertEqual(r.status, 401)
        self.token(fresh=True)
        self.assertEqual(self.api("mailboxes?$select=name")[0].status, 200)

    def test_fault_reset_and_truncated(self):
        self.token()
        self.admin("POST", "/_admin/faults", [{"target": "prod/mailboxes", "kind": "reset"},
                                              {"target": "prod/mailboxes", "kind": "truncated"}])
        with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
            self.api("mailboxes?$select=name")
        with self.assertRaises(http.client.IncompleteRead):
            self.api("mailboxes?$select=name")
        self.assertEqual(self.api("mailboxes?$select=name")[0].status, 200)
        st = self.admin("GET", "/_admin/stats")["environments"]["prod"]["sets"]["mailboxes"]
        self.assertIn("reset", [e["fault"] for e in st["log"]])

    def test_fault_bodies(self):
        self.token()
        self.admin("POST", "/_admin/faults", [
            {"target": "prod/mailboxes", "kind": "invalid_json"},
            {"target": "prod/mailboxes", "kind": "wrong_content_type"},
            {"target": "prod/mailboxes", "kind": "huge", "mb": 1}])
        r, data = self.get("/prod/api/data/v9.2/mailboxes")
        self.assertEqual(r.status, 200)
        with self.assertRaises(ValueError):
            json.loads(data)
        r, data = self.get("/prod/api/data/v9.2/mailboxes")
        self.assertTrue(r.getheader("Content-Type").startswith("text/html"))
        r, data = self.get("/prod/api/data/v9.2/mailboxes")
        self.assertEqual(len(data), 1024 * 1024)
        json.loads(data)

    def test_fault_stall_and_slow(self):
        self.token()
        self.admin("POST", "/_admin/faults", [
            {"target": "prod/mailboxes", "kind": "stall", "seconds": 0.3},
            {"target": "prod/mailboxes", "kind": "slow", "seconds": 0.3}])
        t = time.monotonic()
        self.assertEqual(self.api("mailboxes?$select=name")[0].status, 200)
        self.assertGreaterEqual(time.monotonic() - t, 0.28)
        t = time.monotonic()
        r, body = self.api("mailboxes?$select=name")
        self.assertEqual(len(body["value"]), 2)
        self.assertGreaterEqual(time.monotonic() - t, 0.2)
        log = self.admin("GET", "/_admin/stats")["environments"]["prod"]["sets"]["mailboxes"]["log"]
        self.assertEqual([e["fault"] for e in log[-2:]], ["stall", "slow"])

    def test_lone_surrogate_and_nul_are_sent_escaped(self):
        self.admin("POST", "/_admin/prod/mailboxes",
                   {"mailboxid": "a9000000-0000-4000-8000-000000000001",
                    "name": "cut \ud83d here, nul \u0000 there"})
        r, data = self.get("/prod/api/data/v9.2/mailboxes(a9000000-0000-4000-8000-000000000001)"
                           "?$select=name")
        self.assertEqual(r.status, 200)
        self.assertIn(b"\\ud83d", data)
        self.assertIn(b"\\u0000", data)
        self.assertEqual(json.loads(data)["name"], "cut \ud83d here, nul \u0000 there")
        self.admin("DELETE", "/_admin/prod/mailboxes/a9000000-0000-4000-8000-000000000001")

    def test_fault_foreign_nextlink(self):
        self.token()
        self.admin("POST", "/_admin/faults", [
            {"target": "prod/mailboxes", "kind": "foreign_nextlink"},
            {"target": "prod/mailboxes", "kind": "foreign_nextlink", "host": "evil.example:8443"}])
        path = "mailboxes?$select=name&$filter=name%20ne%20'x'"
        r, body = self.api(path)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(body["value"]), 2)     # the rows as they are ...
        self.assertEqual(body["@odata.nextLink"],   # ... with a link to another origin
                         "http://127.0.0.2:%d/prod/api/data/v9.2/%s" % (self.port, path))
        r, body = self.api(path)
        self.assertTrue(body["@odata.nextLink"].startswith("http://evil.example:8443/prod/"))
        r, body = self.api(path)
        self.assertNotIn("@odata.nextLink", body)
        st = self.admin("GET", "/_admin/stats")["environments"]["prod"]["sets"]["mailboxes"]
        self.assertEqual([e["fault"] for e in st["log"][-3:]],
                         ["foreign_nextlink", "foreign_nextlink", None])
        r, _ = self.request("POST", "/_admin/faults", {"kind": "foreign_nextlink", "host": "a/b"})
        self.assertEqual(r.status, 400)

    def test_fault_delivery_on_token_endpoint_and_stall_logged(self):
        self.admin("POST", "/_admin/faults", [{"target": "prod/token", "kind": "truncated"},
                                              {"target": "prod/token", "kind": "stall",
                                               "seconds": 0.1}])
        with self.assertRaises(http.client.IncompleteRead):
            self.token(fresh=True)
        self.token(fresh=True)      # stalled, then answered
        st = self.admin("GET", "/_admin/stats")["environments"]["prod"]["sets"]["token"]
        self.assertEqual([e["fault"] for e in st["log"][-2:]], ["truncated", "stall"])

    def test_fault_validation(self):
        for spec in ({"kind": "418"}, {"kind": "429", "code": "0x1"}, {"kind": "500", "x": 1}):
            r, _ = self.request("POST", "/_admin/faults", spec)
            self.assertEqual(r.status, 400)

    def test_load_scenario_at_runtime(self):
        extra = {"environments": [{"name": "late%d" % os.getpid(), "tenant": "late.example",
                                   "client_id": CID, "client_secret": "late",
                                   "tables": {"mailboxes": [{"name": "Late box"}]}}]}
        res = self.admin("POST", "/_admin/scenario", extra)
        self.assertEqual(res["environments"], ["late%d" % os.getpid()])
        r, _ = self.request("POST", "/_admin/scenario", extra)
        self.assertEqual(r.status, 400)

    def test_health_and_expected(self):
        h = self.admin("GET", "/_admin/health")
        self.assertEqual(h["port"], self.port)
        self.assertEqual(h["environments"][:2], ["prod", "test"])


class TestScenario(unittest.TestCase):
    def load(self, data):
        sim = dvsim.Simulator()
        sim.load(data, "t")
        return sim

    def env(self, tables, **kw):
        e = {"name": "e", "tenant": "t", "client_id": CID, "client_secret": "s",
             "tables": tables}
        e.update(kw)
        return {"environments": [e]}

    def test_relative_times(self):
        now = time.time()
        for text, delta in (("now", 0), ("now-5m", -300), ("now+1h", 3600),
                            ("now-1h30m", -5400), ("now-2d", -172800), ("now-1h+10s", -3590)):
            with self.subTest(text=text):
                self.assertAlmostEqual(dvsim.parse_time(text, now), now + delta, delta=1)
        self.assertEqual(dvsim.parse_time("2026-11-25T09:59:58Z", now), 1795600798)
        self.assertEqual(dvsim.parse_time("2026-11-25T10:59:58+01:00", now), 1795600798)
        for bad in ("yesterday", "now-5", "now-5y", "2026-11-25 09:59:58", "2026-11-25"):
            with self.assertRaises(ValueError):
                dvsim.parse_time(bad, now)

    def test_load_errors(self):
        bad = [
            self.env({"tracelogs": [{"nosuch": 1}]}),
            self.env({"tracelogs": [{"level": "two"}]}),
            self.env({"nosuchset": []}),
            self.env({"workflows": [{"_parentworkflowid_value": WF}]}),
            self.env({"mailboxes": [{"mailboxid": MB1}, {"mailboxid": MB1}]}),
            self.env({}, name="api"),
            self.env({}, deny_read=["nosuch"]),
            self.env({}, extra=1),
            {"environments": []},
            {"environments": [{"name": "e"}]},
            dict(self.env({}), surprise=True),
        ]
        for data in bad:
            with self.subTest(data=data):
                with self.assertRaises(dvsim.ScenarioError):
                    self.load(data)
        two = self.env({})
        two["environments"].append(dict(two["environments"][0]))
        with self.assertRaises(dvsim.ScenarioError):
            self.load(two)

    def test_defaults(self):
        sim = self.load(self.env({"workflows": [{"name": "w", "statecode": 1}],
                                  "sdkmessageprocessingsteps": [{"name": "s"}]}))
        wf = list(sim.envs["e"].tables["workflows"].rows.values())[0]
        self.assertEqual((wf["category"], wf["type"], wf["statuscode"], wf["mode"]), (0, 1, 2, 0))
        step = list(sim.envs["e"].tables["sdkmessageprocessingsteps"].rows.values())[0]
        self.assertEqual((step["mode"], step["statecode"], step["customizationlevel"]), (0, 0, 1))
        self.assertIsNotNone(wf["modifiedon"])


FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")


class TestFixtures(unittest.TestCase):
    def fixtures(self):
        """Every fixture, including subdirectories (transport/), relative to FIXTURES."""
        out = []
        for d, _dirs, files in os.walk(FIXTURES):
            out += [os.path.relpath(os.path.join(d, f), FIXTURES) for f in files
                    if f.endswith(".json")]
        return sorted(out)

    def test_every_fixture_loads_and_states_expectations(self):
        names = self.fixtures()
        self.assertIn("minimal.json", names)
        self.assertIn(os.path.join("transport", "nul.json"), names)
        for name in names:
            with self.subTest(fixture=name):
                sim = dvsim.Simulator()
                sim.load_file(os.path.join(FIXTURES, name))
                with open(os.path.join(FIXTURES, name)) as f:
                    data = json.load(f)
                self.assertIsInstance(data.get("expected"), list)
                self.assertIn("description", data)
                envs = {e["name"] for e in data["environments"]}
                for exp in data["expected"]:
                    self.assertIn(exp["environment"], envs)
                    self.assertIn(exp["verdict"], ("confirmed", "suspected", "unexplained"))
                    self.assertIn(exp["source"], ("tracelog", "mailbox"))
                    self.assertLessEqual(set(exp["with_evidence"]), set(exp["culprits"]))
                    self.assertEqual(exp["culprits"][:len(exp["with_evidence"])],
                                     exp["with_evidence"])
                    self.assertEqual(exp["verdict"] == "confirmed", bool(exp["with_evidence"]))
                    self.assertEqual(exp["verdict"] == "unexplained", not exp["culprits"])


    def test_expectations_agree_with_the_oracle(self):
        """Each fixture's hand-written expectations equal DESIGN's rules as
        restated in oracle.py, for its stated config and every variant."""
        for name in self.fixtures():
            with open(os.path.join(FIXTURES, name)) as f:
                data = json.load(f)
            sim = dvsim.Simulator()
            sim.load(data, name)
            now = time.time()
            cases = [(data.get("expected_config"), data["expected"])]
            cases += [(v["config"], v["expected"]) for v in data.get("expected_variants", [])]
            for cfg, expected in cases:
                with self.subTest(fixture=name, config=cfg):
                    got = []
                    for env in sim.envs.values():
                        got += oracle.findings(env, now, **oracle.config_args(cfg))
                    key = lambda e: (e["environment"], e["source"], e["alert"])  # noqa: E731
                    self.assertEqual(sorted(got, key=key), sorted(expected, key=key))

    def test_realistic_covers_every_decoy_class(self):
        with open(os.path.join(FIXTURES, "realistic.json")) as f:
            data = json.load(f)
        t = data["environments"][0]["tables"]
        wf = t["workflows"]
        self.assertTrue(any(w["mode"] == 0 for w in wf))                      # background
        self.assertTrue(any(w["statecode"] == 0 for w in wf))                 # draft
        self.assertTrue(any(w["statecode"] == 2 for w in wf))                 # suspended
        self.assertTrue(any(not w["triggeroncreate"] and w["primaryentity"] == "email"
                            and w.get("triggeronupdateattributelist") for w in wf))
        self.assertTrue(any(w["primaryentity"] not in ("email",) for w in wf))
        self.assertEqual({1, 2, 3} & {w["category"] for w in wf}, {1, 2, 3})
        steps = t["sdkmessageprocessingsteps"]
        self.assertTrue(any(s["mode"] == 1 for s in steps))
        self.assertTrue(any(s["statecode"] == 1 for s in steps))
        self.assertTrue(any(s["customizationlevel"] == 0 for s in steps))
        self.assertTrue(any(tr["mode"] == 1 for tr in t["plugintracelogs"]))
        self.assertTrue(any(tl["level"] == 1 for tl in t["tracelogs"]))
        verdicts = {e["verdict"] for e in data["expected"]}
        self.assertEqual(verdicts, {"confirmed", "suspected", "unexplained"})
        self.assertIn("mailbox", {e["source"] for e in data["expected"]})
        self.assertIn("act", {e["kind"] for e in data["expected"]})


class TestFixtureServing(unittest.TestCase):
    """The fixtures that stress the transport, served over HTTP."""

    def serve(self, name):
        sim = dvsim.Simulator()
        sim.load_file(os.path.join(FIXTURES, name))
        server = dvsim.start_in_thread(sim)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        with open(os.path.join(FIXTURES, name)) as f:
            return sim, json.load(f)

    def fetch(self, sim, env, query, token=None, scope_env=None):
        conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
        try:
            if token is None:
                e = sim.envs[env]
                form = "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s" % (
                    e.client_id, quote(e.client_secret, safe=""),
                    quote("http://127.0.0.1:%d/%s/.default" % (sim.port, scope_env or env), safe=""))
                conn.request("POST", "/%s/oauth2/v2.0/token" % e.tenant, form,
                             {"Content-Type": "application/x-www-form-urlencoded"})
                r = conn.getresponse()
                body = json.loads(r.read())
                self.assertEqual(r.status, 200, body)
                token = body["access_token"]
            conn.request("GET", "/%s/api/data/v9.2/%s" % (env, query),
                         headers={"Authorization": "Bearer " + token})
            r = conn.getresponse()
            return r.status, r.read(), token
        finally:
            conn.close()

    def test_hostile_round_trips_exactly(self):
        sim, data = self.serve("hostile.json")
        nul_sim, nul_data = self.serve(os.path.join("transport", "nul.json"))
        for env, sim, data in (("prod", sim, data), ("nul", nul_sim, nul_data)):
            want = data["environments"][0]["tables"]
            st, raw, _ = self.fetch(sim, env, "mailboxes?$select=name,emailaddress,lastsyncerror")
            self.assertEqual(st, 200)
            raw.decode("utf-8")
            got = json.loads(raw)["value"][0]
            for k in ("name", "emailaddress", "lastsyncerror"):
                self.assertEqual(got[k], want["mailboxes"][0][k])
            st, raw, _ = self.fetch(sim, env, "plugintracelogs?$select=exceptiondetails")
            self.assertEqual(json.loads(raw)["value"][0]["exceptiondetails"],
                             want["plugintracelogs"][0]["exceptiondetails"])
            if env == "nul":
                self.assertIn(b"\\u0000", raw)
            flt = quote("name eq '%s'" % want["workflows"][0]["name"].replace("'", "''"), safe="")
            st, raw, _ = self.fetch(sim, env, "workflows?$select=name&$filter=" + flt)
            self.assertEqual(st, 200, raw)
            self.assertEqual(len(json.loads(raw)["value"]), 2)

    def test_multi_shared_app(self):
        sim, _data = self.serve("multi.json")
        st, raw, tok = self.fetch(sim, "test", "tracelogs?$select=level")
        self.assertEqual(st, 200)
        st, _raw, _ = self.fetch(sim, "prod", "tracelogs?$select=level", token=tok)
        self.assertEqual(st, 401)

    def test_probe_fixture_matches_its_expectation(self):
        sim, data = self.serve(os.path.join("transport", "probe.json"))
        for env, want in data["expected_probe"].items():
            unreadable = []
            for s in sorted(dvsim.TABLES_BY_SET):
                st, raw, _ = self.fetch(sim, env, s + "?$top=1")
                self.assertIn(st, (200, 403))
                if st == 403:
                    self.assertEqual(json.loads(raw)["error"]["code"], "0x80040220")
                    unreadable.append(s)
            self.assertEqual(unreadable, want["unreadable"])


class TestGenerator(unittest.TestCase):
    def gen(self, out, *args):
        p = subprocess.run([sys.executable, os.path.join(HERE, "gen.py"), "--out", out] +
                           list(args), capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            return json.load(f)

    def test_deterministic_and_loadable(self):
        with tempfile.TemporaryDirectory() as d:
            args = ["--envs", "3", "--mailboxes", "40", "--alerts", "60", "--workflows", "30",
                    "--steps", "30", "--act-ratio", "0.1", "--mailbox-alert-ratio", "0.05",
                    "--seed", "7"]
            a = self.gen(os.path.join(d, "a.json"), *args)
            b = self.gen(os.path.join(d, "b.json"), *args)
            self.assertEqual(a, b)
            c = self.gen(os.path.join(d, "c.json"), *(args[:-1] + ["8"]))
            self.assertNotEqual(a["environments"], c["environments"])
            self.assertEqual([e["name"] for e in a["environments"]],
                             ["env000", "env001", "env002"])
            sim = dvsim.Simulator()
            sim.load_file(os.path.join(d, "a.json"))
            self.assertEqual(len(sim.envs["env001"].tables["mailboxes"].rows), 40)
            self.assertEqual(len(sim.envs["env001"].tables["workflows"].rows) > 30, True)

    def test_expected_matches_oracle_on_loaded_scenario(self):
        with tempfile.TemporaryDirectory() as d:
            for extra in ([], ["--full-evidence"]):
                out = os.path.join(d, "g.json")
                data = self.gen(out, "--envs", "2", "--mailboxes", "100", "--alerts", "200",
                                "--workflows", "40", "--steps", "40", "--decoy-ratio", "0.8",
                                "--act-ratio", "0.05", "--mailbox-alert-ratio", "0.1",
                                "--expected", os.path.join(d, "e.json"), *extra)
                sim = dvsim.Simulator()
                sim.load_file(out)
                now = time.time()
                got = []
                for env in sim.envs.values():
                    got += oracle.findings(env, now, counts=not extra)
                key = lambda e: (e["environment"], e["source"], e["alert"])  # noqa: E731
                self.assertEqual(sorted(got, key=key), sorted(data["expected"], key=key))
                verdicts = {e["verdict"] for e in data["expected"]}
                self.assertEqual(verdicts, {"confirmed", "suspected", "unexplained"})
                self.assertIn("mailbox", {e["source"] for e in data["expected"]})
                with open(os.path.join(d, "e.json")) as f:
                    self.assertEqual(json.load(f)["expected"], data["expected"])

    def test_dvsim_serves_generated_scenario(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "g.json")
            self.gen(out, "--envs", "2", "--mailboxes", "20", "--alerts", "30")
            sim = dvsim.Simulator()
            sim.load_file(out)
            server = dvsim.start_in_thread(sim)
            try:
                env = sim.envs["env001"]
                conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
                form = "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s" % (
                    env.client_id, env.client_secret,
                    quote("http://127.0.0.1:%d/env001/.default" % sim.port, safe=""))
                conn.request("POST", "/%s/oauth2/v2.0/token" % env.tenant, form,
                             {"Content-Type": "application/x-www-form-urlencoded"})
                tok = json.loads(conn.getresponse().read())["access_token"]
                conn.request("GET", "/env001/api/data/v9.2/tracelogs?$select=level&"
                             "$filter=level%20eq%202", headers={"Authorization": "Bearer " + tok})
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                self.assertEqual(len(json.loads(r.read())["value"]), 30)
                conn.close()
            finally:
                server.shutdown()
                server.server_close()


class TestLargeOrganization(unittest.TestCase):
    """gen.py's large-organization knobs (issue 15) and what changed (issue 16)."""

    ARGS = ["--mailboxes", "60", "--alerts", "120", "--workflows", "12", "--steps", "12",
            "--suspects", "7", "--traces", "400", "--trace-failures", "0.5",
            "--success-exceptiondetails", "null", "--trace-bytes", "2048", "--text-pool", "3",
            "--multibyte", "--assemblies", "2", "--recent-changes", "1", "--seed", "5"]

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dvsim-gen-")
        cls.path = os.path.join(cls.tmp, "org.json")
        p = subprocess.run([sys.executable, os.path.join(HERE, "gen.py"), "--out", cls.path] +
                           cls.ARGS, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise AssertionError(p.stderr)
        with open(cls.path, encoding="utf-8") as f:
            cls.doc = json.load(f)
        cls.sim = dvsim.Simulator()
        cls.sim.load_file(cls.path)
        cls.env = cls.sim.envs["env"]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def rows(self, set_name):
        return list(self.env.tables[set_name].rows.values())

    def test_exact_number_of_suspects(self):
        email = [e for e in self.doc["expected"] if e["kind"] == "email"]
        self.assertTrue(email)
        self.assertEqual({len(e["culprits"]) for e in email}, {7})

    def test_long_stack_traces_shared_through_texts(self):
        texts = self.doc["texts"]
        self.assertLessEqual(len(texts), 3 * len(self.rows("plugintypes")))
        for text in texts.values():
            size = len(text.encode())
            self.assertTrue(1500 <= size <= 2048, size)
            lines = text.split("\r\n")
            self.assertRegex(lines[0], r"^(System|Microsoft)\.[\w.`\[\], =]+: \S")
            self.assertTrue(all(line.startswith(("   at ", " ---> ", "   --- End"))
                                for line in lines[1:]), lines)
            self.assertGreater(len(lines), 8)
        raw = self.doc["environments"][0]["tables"]["plugintracelogs"]
        refs = [r["exceptiondetails"] for r in raw if isinstance(r.get("exceptiondetails"), dict)]
        self.assertGreater(len(refs), 150)
        loaded = [r for r in self.rows("plugintracelogs") if len(r.get("exceptiondetails") or "")
                  > 1000]
        self.assertEqual(len(loaded), len(refs))
        self.assertLessEqual(len({id(r["exceptiondetails"]) for r in loaded}), len(texts))

    def test_runs_that_did_not_fail(self):
        traces = self.rows("plugintracelogs")
        ok = [r for r in traces if r.get("exceptiondetails") is None]
        self.assertGreater(len(ok), 100)
        self.assertEqual({r["messagename"] for r in ok}, {"Create"})
        self.assertLessEqual({r["mode"] for r in ok}, {0, 1})

    def test_multibyte_text(self):
        names = [r.get("name") or "" for s in ("mailboxes", "workflows",
                                               "sdkmessageprocessingsteps")
                 for r in self.rows(s)]
        self.assertTrue(any(any(ord(c) > 127 for c in n) for n in names))
        self.assertTrue(any(ord(c) > 0xFFFF for t in self.doc["texts"].values() for c in t) or
                        any(ord(c) > 127 for t in self.doc["texts"].values() for c in t))

    def test_assemblies_and_recent_changes(self):
        asms = {a["pluginassemblyid"]: a for a in self.rows("pluginassemblies")}
        self.assertEqual(len(asms), 2)
        self.assertTrue(all(t["_pluginassemblyid_value"] in asms
                            for t in self.rows("plugintypes")))
        first = min(r["createdon"] for r in self.rows("tracelogs") if r["level"] == 2)
        wfs = {w["workflowid"]: w for w in self.rows("workflows")}
        suspects = {c for e in self.doc["expected"] for c in e["culprits"]}
        changed = 0
        for cid in suspects:
            if cid in wfs:
                act = wfs[wfs[cid]["_activeworkflowid_value"]]
                self.assertEqual(act["createdon"], wfs[cid]["modifiedon"])
                changed += first - 7201 <= act["createdon"] <= first - 59
            else:
                step = self.env.tables["sdkmessageprocessingsteps"].rows[cid]
                asm = asms[self.env.tables["plugintypes"].rows[step["_plugintypeid_value"]]
                           ["_pluginassemblyid_value"]]
                changed += any(first - 7201 <= t <= first - 59
                               for t in (step["modifiedon"], asm["modifiedon"]))
        self.assertEqual(changed, 7)

    def test_expected_matches_the_loaded_scenario(self):
        got = oracle.findings(self.env, time.time(), counts=True)
        key = lambda e: (e["source"], e["alert"])  # noqa: E731
        self.assertEqual(sorted(got, key=key), sorted(self.doc["expected"], key=key))

    def test_default_output_has_none_of_it(self):
        out = os.path.join(self.tmp, "plain.json")
        subprocess.run([sys.executable, os.path.join(HERE, "gen.py"), "--out", out],
                       check=True, capture_output=True, timeout=60)
        with open(out) as f:
            doc = json.load(f)
        self.assertNotIn("texts", doc)
        tables = doc["environments"][0]["tables"]
        self.assertNotIn("pluginassemblies", tables)
        self.assertTrue(all(r["exceptiondetails"] in ("",) or r["exceptiondetails"].startswith(
            "Unhandled exception") for r in tables["plugintracelogs"]))
        self.assertTrue(all(ord(c) < 128 for m in tables["mailboxes"] for c in m["name"]))

    def test_help_says_what_each_knob_does(self):
        p = subprocess.run([sys.executable, os.path.join(HERE, "gen.py"), "--help"],
                           capture_output=True, text=True, timeout=30)
        for knob in ("--suspects", "--traces", "--trace-failures", "--success-exceptiondetails",
                     "--trace-bytes", "--text-pool", "--multibyte", "--assemblies",
                     "--recent-changes"):
            self.assertIn(knob, p.stdout)


class TestSchemaH(unittest.TestCase):
    """daemon/dataverse/schema.h names what s3mond selects; the service (and dvsim) must
    know every column, navigation property and entity set in it."""

    def defines(self):
        path = os.path.join(os.path.dirname(os.path.dirname(HERE)), "daemon", "dataverse", "schema.h")
        with open(path) as f:
            text = f.read().replace("\\\n", " ")
        out = {}
        for m in re.finditer(r'^#define\s+(DV_\w+)\s+(.*)$', text, re.M):
            strings = re.findall(r'"([^"]*)"', m.group(2))
            if strings:
                out[m.group(1)] = strings if m.group(1) == "DV_PROBE_SETS" else "".join(strings)
        return out

    def test_every_select_and_expand_is_accepted(self):
        d = self.defines()
        self.assertEqual(d["DV_API_PATH"], "/api/data/v9.2/")
        for s in d["DV_PROBE_SETS"]:
            self.assertIn(s, dvsim.TABLES_BY_SET)
        sim = dvsim.Simulator()
        sim.load_file(os.path.join(FIXTURES, "realistic.json"))
        env = sim.envs["prod"]
        pairs = [k[len("DV_SELECT_"):] for k in d if k.startswith("DV_SELECT_")]
        self.assertGreaterEqual(len(pairs), 6)
        for name in pairs:
            with self.subTest(select=name):
                set_name = d["DV_SET_" + name]
                schema = dvsim.TABLES_BY_SET[set_name]
                q = "$select=" + quote(d["DV_SELECT_" + name], safe=",")
                if "DV_EXPAND_" + name in d:
                    q += "&$expand=" + quote(d["DV_EXPAND_" + name], safe=",()=$")
                body, _h = dvsim.run_collection(sim, env, schema, q, {}, "h", False, "/p")
                self.assertTrue(body["value"])
                cols = d["DV_SELECT_" + name].split(",")
                for row in body["value"]:
                    self.assertLessEqual(set(cols), set(row))
        self.assertEqual(d["DV_ANNOTATION_LOOKUP_NAME"], "@Microsoft.Dynamics.CRM.lookuplogicalname")


class TestCli(unittest.TestCase):
    def run_cli(self, *args, timeout=20):
        return subprocess.run([sys.executable, os.path.join(HERE, "dvsim.py")] + list(args),
                              capture_output=True, text=True, timeout=timeout)

    def test_help(self):
        p = self.run_cli("--help")
        self.assertEqual(p.returncode, 0)
        for word in ("--scenario", "--port-file", "--token-lifetime", "Faults",
                     "/_admin/stats", "now-5m", "retry_after", "truncated", "Examples",
                     "--tls", "--env-hosts", "--info-file", "--latency", "--latency-jitter",
                     "--idle-close", "tls_handshakes", "pluginassemblies", "$top is ignored",
                     "/deactivate", "/upload", "plugin_trace_log", "$text"):
            self.assertIn(word, p.stdout)

    @contextlib.contextmanager
    def serving(self, ready_file, *args):
        """dvsim.py ARGS as a process, once it has written ready_file; killed
        at the end if it is still running."""
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "dvsim.py")] + list(args))
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(ready_file) and time.monotonic() < deadline:
                time.sleep(0.02)
            yield p
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    def health_then_shutdown(self, p, conn):
        """/_admin/health's answer; then POST /_admin/shutdown ends the process (0)."""
        conn.request("GET", "/_admin/health")
        health = json.loads(conn.getresponse().read())
        conn.request("POST", "/_admin/shutdown")
        conn.getresponse().read()
        conn.close()
        self.assertEqual(p.wait(timeout=10), 0)
        return health

    def test_info_file_over_https_with_env_hosts(self):
        with tempfile.TemporaryDirectory() as d:
            info_path = os.path.join(d, "info.json")
            with self.serving(info_path, "--tls", os.path.join(d, "tls"), "--env-hosts",
                              "--info-file", info_path, "--latency", "10ms", "--idle-close",
                              "240", "--quiet", "--scenario",
                              os.path.join(FIXTURES, "multi.json")) as p:
                with open(info_path) as f:
                    info = json.load(f)
                self.assertEqual(info["ca_file"], os.path.join(d, "tls", "ca.pem"))
                self.assertEqual([e["address"] for e in info["environments"].values()],
                                 ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
                ctx = ssl.create_default_context(cafile=info["ca_file"])
                conn = http.client.HTTPSConnection("127.0.0.1", info["port"], timeout=10,
                                                   context=ctx)
                self.assertEqual(self.health_then_shutdown(p, conn)["info"], info)

    def test_env_hosts_refuses_ipv6(self):
        p = self.run_cli("--host", "::1", "--env-hosts")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--env-hosts", p.stderr)

    def test_bad_scenario_exits_2(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"environments": [{"name": "e", "tenant": "t", "client_id": CID,
                                         "client_secret": "s",
                                         "tables": {"tracelogs": [{"bogus": 1}]}}]}, f)
        try:
            p = self.run_cli("--scenario", f.name, "--check")
            self.assertEqual(p.returncode, 2)
            self.assertIn("bogus", p.stderr)
        finally:
            os.unlink(f.name)

    def test_sigterm_ipv6_and_log(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        with tempfile.TemporaryDirectory() as d:
            pf, log = os.path.join(d, "port"), os.path.join(d, "log")
            with self.serving(pf, "--host", "::1", "--port-file", pf, "--log", log,
                              "--quiet") as p:
                with open(pf) as f:
                    port = int(f.read())
                try:
                    conn = http.client.HTTPConnection("::1", port, timeout=5)
                    conn.request("GET", "/_admin/health")
                    self.assertEqual(conn.getresponse().status, 200)
                    conn.close()
                except OSError as e:
                    self.skipTest("IPv6 loopback unusable: %s" % e)
                p.terminate()
                self.assertEqual(p.wait(timeout=10), 0)
                with open(log) as f:
                    self.assertIn("/_admin/health", f.read())

    def test_port_file_serve_and_shutdown(self):
        with tempfile.TemporaryDirectory() as d:
            pf = os.path.join(d, "port")
            with self.serving(pf, "--port", "0", "--port-file", pf, "--quiet") as p:
                with open(pf) as f:
                    port = int(f.read())
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                self.assertEqual(self.health_then_shutdown(p, conn)["environments"], ["org"])


# ---- production's shape: HTTPS, a host per environment, latency, idle close ----

def form_token(conn, env, scope_url):
    form = "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s" % (
        env.client_id, quote(env.client_secret, safe=""), quote(scope_url + "/.default", safe=""))
    conn.request("POST", "/%s/oauth2/v2.0/token" % env.tenant, form,
                 {"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    body = json.loads(r.read())
    if r.status != 200:
        raise AssertionError(body)
    return body["access_token"]


class Served(unittest.TestCase):
    """scenario() served with the given start_in_thread() options."""
    options = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dvsim-test-")
        cls.sim = dvsim.Simulator()
        cls.sim.load(scenario(), "test")
        opts = dict(cls.options)
        if opts.pop("tls", False):
            opts["tls"] = os.path.join(cls.tmp, "tls")
        cls.server = dvsim.start_in_thread(cls.sim, **opts)
        cls.port = cls.sim.port
        cls.ctx = (ssl.create_default_context(cafile=cls.sim.ca_file) if cls.sim.ca_file
                   else None)

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def connect(self, host="127.0.0.1", timeout=20):
        if self.ctx is None:
            return http.client.HTTPConnection(host, self.port, timeout=timeout)
        return http.client.HTTPSConnection(host, self.port, timeout=timeout, context=self.ctx)

    def token(self, name):
        conn = self.connect()
        try:
            return form_token(conn, self.sim.envs[name], self.sim.env_url(name))
        finally:
            conn.close()

    def admin(self, method, path, body=None):
        conn = self.connect()
        try:
            conn.request(method, "/_admin" + path, json.dumps(body) if body is not None else None)
            r = conn.getresponse()
            data = json.loads(r.read())
            self.assertLess(r.status, 300, data)
            return data
        finally:
            conn.close()

    def get(self, conn, path, token, prefer=None):
        h = {"Authorization": "Bearer " + token}
        if prefer:
            h["Prefer"] = prefer
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        return r, r.read()


class TestNetwork(Served):
    options = {"tls": True, "env_hosts": True}

    def test_info_and_distinct_hosts(self):
        info = self.sim.info()
        p = self.port
        self.assertEqual(info["port"], p)
        self.assertEqual(info["authority"], "https://127.0.0.1:%d" % p)
        self.assertEqual(info["admin"], "https://127.0.0.1:%d/_admin" % p)
        self.assertTrue(os.path.isfile(info["ca_file"]))
        envs = info["environments"]
        self.assertEqual(list(envs)[:2], ["prod", "test"])
        self.assertEqual((envs["prod"]["address"], envs["test"]["address"]),
                         ("127.0.0.2", "127.0.0.3"))
        self.assertEqual(envs["prod"]["url"], "https://127.0.0.2:%d" % p)
        self.assertEqual((envs["prod"]["tenant"], envs["prod"]["client_id"]), (TENANT, CID))
        self.assertEqual(self.admin("GET", "/health")["info"], self.sim.info())

    def test_env_addresses_in_load_order(self):
        got = [dvsim.env_address(i) for i in (0, 1, 252, 253, 254, 506, 507)]
        self.assertEqual(got, ["127.0.0.2", "127.0.0.3", "127.0.0.254", "127.0.1.1",
                               "127.0.1.2", "127.0.1.254", "127.0.2.1"])

    def test_certificate_names_are_checked(self):
        for name, addr in (("prod", "127.0.0.2"), ("test", "127.0.0.3")):
            for server_name in (addr, "%s.dvsim.test" % name):
                with socket.create_connection((addr, self.port), timeout=10) as raw:
                    with self.ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                        sans = tls.getpeercert()["subjectAltName"]
                        self.assertIn(("IP Address", addr), sans)
                        self.assertIn(("DNS", "%s.dvsim.test" % name), sans)
                        self.assertEqual(tls.selected_alpn_protocol(), None)
        # another host's name, a name nobody has, a client without the CA
        for server_name, ctx in (("127.0.0.3", self.ctx), ("nobody.dvsim.test", self.ctx),
                                 ("127.0.0.2", ssl.create_default_context())):
            with self.subTest(server_name=server_name):
                with socket.create_connection(("127.0.0.2", self.port), timeout=10) as raw:
                    with self.assertRaises(ssl.SSLCertVerificationError):
                        ctx.wrap_socket(raw, server_hostname=server_name)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with self.ctx.wrap_socket(raw, server_hostname="login.dvsim.test") as tls:
                self.assertIn(("IP Address", "127.0.0.1"), tls.getpeercert()["subjectAltName"])

    def test_tls_versions_and_alpn(self):
        ctx = ssl.create_default_context(cafile=self.sim.ca_file)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.2", self.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.2") as tls:
                self.assertEqual(tls.selected_alpn_protocol(), "http/1.1")
                self.assertIn(tls.version(), ("TLSv1.2", "TLSv1.3"))
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(self.sim.ca_file)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                old.minimum_version = ssl.TLSVersion.TLSv1
                old.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError):
            self.skipTest("this OpenSSL cannot even offer TLS 1.1")
        with socket.create_connection(("127.0.0.2", self.port), timeout=10) as raw:
            with self.assertRaises(ssl.SSLError):
                old.wrap_socket(raw, server_hostname="127.0.0.2")

    def test_curl_verifies_the_certificate(self):
        curl = shutil.which("curl")
        if not curl:
            self.skipTest("no curl")
        tok = self.token("prod")
        url = self.sim.env_url("prod") + "/api/data/v9.2/mailboxes?$select=name"

        def run(*args):
            return subprocess.run([curl, "-sS", "-g", "-o", "-", "-w", "\n%{http_code}",
                                   "-H", "Authorization: Bearer " + tok] + list(args),
                                  capture_output=True, text=True, timeout=30)
        p = run("--cacert", self.sim.ca_file, url)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.endswith("\n200"), p.stdout)
        self.assertEqual(len(json.loads(p.stdout.rsplit("\n", 1)[0])["value"]), 2)
        p = run("--cacert", self.sim.ca_file, "--resolve",
                "prod.dvsim.test:%d:127.0.0.2" % self.port,
                "https://prod.dvsim.test:%d/api/data/v9.2/WhoAmI" % self.port)
        self.assertTrue(p.stdout.endswith("\n200"), (p.stdout, p.stderr))
        p = run(url)                                     # no CA: refused
        self.assertEqual(p.returncode, 60, p.stderr)
        p = run("--cacert", self.sim.ca_file, "--resolve",  # a name not in the certificate
                "other.dvsim.test:%d:127.0.0.2" % self.port,
                "https://other.dvsim.test:%d/api/data/v9.2/WhoAmI" % self.port)
        self.assertEqual(p.returncode, 60, p.stderr)

    def test_env_host_serves_only_its_environment(self):
        prod, test = self.token("prod"), self.token("test")
        conn = self.connect("127.0.0.2")
        try:
            r, data = self.get(conn, "/api/data/v9.2/mailboxes?$select=name", prod)
            self.assertEqual(r.status, 200, data)
            body = json.loads(data)
            self.assertEqual(len(body["value"]), 2)
            self.assertTrue(body["@odata.context"].startswith(
                "https://127.0.0.2:%d/api/data/v9.2/$metadata#mailboxes" % self.port))
            r, data = self.get(conn, "/api/data/v9.2/mailboxes?$select=name", test)
            self.assertEqual(r.status, 401)
            r, data = self.get(conn, "/api/data/v9.2/tracelogs?$select=level", prod,
                               "odata.maxpagesize=5")
            link = json.loads(data)["@odata.nextLink"]
            self.assertTrue(link.startswith("https://127.0.0.2:%d/api/data/v9.2/tracelogs?"
                                            % self.port), link)
            for path in ("/prod/api/data/v9.2/mailboxes", "/_admin/health",
                         "/%s/oauth2/v2.0/token" % TENANT):
                r, data = self.get(conn, path, prod)
                self.assertEqual(r.status, 404, path)
        finally:
            conn.close()
        conn = self.connect("127.0.0.3")
        try:
            r, data = self.get(conn, "/api/data/v9.2/mailboxes?$select=name", test)
            self.assertEqual([m["name"] for m in json.loads(data)["value"]], ["Test box"])
        finally:
            conn.close()
        conn = self.connect()       # the path-prefixed URLs keep working on the shared host
        try:
            r, data = self.get(conn, "/prod/api/data/v9.2/mailboxes?$select=name", prod)
            self.assertEqual(r.status, 200)
        finally:
            conn.close()

    def test_environment_loaded_later_gets_the_next_address(self):
        res = self.admin("POST", "/scenario", {"environments": [
            {"name": "late", "tenant": "late.example", "client_id": CID,
             "client_secret": "late", "tables": {"mailboxes": [{"name": "Late box"}]}}]})
        self.assertEqual(res["environments"], ["late"])
        info = self.sim.info()["environments"]["late"]
        self.assertEqual(info["address"], "127.0.0.%d" % (1 + len(self.sim.envs)))
        conn = self.connect(info["address"])
        try:
            r, data = self.get(conn, "/api/data/v9.2/mailboxes?$select=name", self.token("late"))
            self.assertEqual(json.loads(data)["value"][0]["name"], "Late box")
        finally:
            conn.close()

    def test_connection_and_handshake_counts(self):
        prod, test = self.token("prod"), self.token("test")
        self.admin("POST", "/stats/reset")
        for _ in range(3):
            conn = self.connect("127.0.0.2")
            for _ in range(4):
                r, data = self.get(conn, "/api/data/v9.2/WhoAmI", prod)
                self.assertEqual(r.status, 200)
            conn.close()
        conn = self.connect()       # the shared host: counted for the first environment
        for path in ("/test/api/data/v9.2/WhoAmI", "/test/api/data/v9.2/WhoAmI"):
            self.get(conn, path, test)
        conn.close()
        stats = self.admin("GET", "/stats")
        e = stats["environments"]
        self.assertEqual((e["prod"]["connections"], e["prod"]["tls_handshakes"],
                          e["prod"]["requests"], e["prod"]["requests_per_connection"]),
                         (3, 3, 12, 4.0))
        self.assertEqual((e["test"]["connections"], e["test"]["requests"]), (1, 2))
        # the stats request's own connection is in the total, no environment's
        self.assertGreaterEqual(stats["connections"], 5)
        self.assertGreaterEqual(stats["tls_handshakes"], 4)
        self.assertEqual(stats["tls_failures"], 0)
        self.assertEqual(stats["requests"], 14)


class TestPlainEnvHosts(Served):
    """--env-hosts without TLS, past 127.0.0.254."""
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dvsim-test-")
        cls.sim = dvsim.Simulator()
        cls.sim.load({"environments": [
            {"name": "e%03d" % i, "tenant": "t%03d.example" % i, "client_id": CID,
             "client_secret": "s", "tables": {"mailboxes": [{"name": "box %d" % i}]}}
            for i in range(256)]}, "many")
        cls.server = dvsim.start_in_thread(cls.sim, env_hosts=True)
        cls.port = cls.sim.port
        cls.ctx = None

    def test_many_hosts_one_port(self):
        info = self.sim.info()
        self.assertEqual(info["ca_file"], None)
        self.assertEqual(len({e["address"] for e in info["environments"].values()}), 256)
        for name in ("e000", "e252", "e253", "e255"):
            address = info["environments"][name]["address"]
            self.assertEqual(info["environments"][name]["url"],
                             "http://%s:%d" % (address, self.port))
            conn = self.connect(address)
            r, data = self.get(conn, "/api/data/v9.2/mailboxes?$select=name", self.token(name))
            conn.close()
            self.assertEqual(json.loads(data)["value"][0]["name"], "box %d" % int(name[1:]))
        self.assertEqual(info["environments"]["e253"]["address"], "127.0.1.1")


class TestLatency(Served):
    LATENCY = 0.25
    options = {"tls": True, "env_hosts": True, "latency": "250ms"}

    def timed(self, conn, path, token):
        t = time.monotonic()
        r, _data = self.get(conn, path, token)
        self.assertEqual(r.status, 200)
        return time.monotonic() - t

    def test_new_connection_pays_tcp_and_tls(self):
        tok = self.token("prod")
        conn = self.connect("127.0.0.2")
        try:
            t = time.monotonic()
            conn.connect()
            handshake = time.monotonic() - t
            first = handshake + self.timed(conn, "/api/data/v9.2/WhoAmI", tok)
            second = self.timed(conn, "/api/data/v9.2/WhoAmI", tok)
        finally:
            conn.close()
        # lower bounds only: request + TCP + TLS round trips, then one per request
        self.assertGreaterEqual(first, 3 * self.LATENCY)
        self.assertGreaterEqual(second, self.LATENCY)
        self.assertGreater(first, second)

    def test_admin_is_not_delayed(self):
        tok = self.token("prod")
        done = []

        def slow():
            conn = self.connect("127.0.0.2")
            self.get(conn, "/api/data/v9.2/WhoAmI", tok)
            conn.close()
            done.append("api")
        th = threading.Thread(target=slow)
        th.start()
        self.admin("GET", "/health")
        done.append("admin")
        th.join(30)
        self.assertEqual(done, ["admin", "api"])


class TestJitter(Served):
    options = {"latency": 0.2, "latency_jitter": "100ms"}

    def test_jitter_keeps_a_floor(self):
        tok = self.token("prod")
        conn = self.connect()
        try:
            self.get(conn, "/prod/api/data/v9.2/WhoAmI", tok)
            for _ in range(4):
                t = time.monotonic()
                self.get(conn, "/prod/api/data/v9.2/WhoAmI", tok)
                self.assertGreaterEqual(time.monotonic() - t, 0.1)
        finally:
            conn.close()


class TestIdleClose(Served):
    options = {"tls": True, "env_hosts": True, "idle_close": 0.3}

    def test_idle_connection_closed_and_seen_by_client(self):
        tok = self.token("prod")
        self.admin("POST", "/stats/reset")
        conn = self.connect("127.0.0.2")
        r, _data = self.get(conn, "/api/data/v9.2/WhoAmI", tok)
        self.assertEqual(r.status, 200)
        sock = conn.sock
        # the server ends it (close_notify, FIN): the client reads end of stream
        readable, _w, _x = select.select([sock], [], [], 10)
        self.assertEqual(readable, [sock])
        self.assertEqual(sock.recv(100), b"")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
            self.get(conn, "/api/data/v9.2/WhoAmI", tok)
        conn.close()
        conn = self.connect("127.0.0.2")        # a client reconnects
        r, _data = self.get(conn, "/api/data/v9.2/WhoAmI", tok)
        self.assertEqual(r.status, 200)
        conn.close()
        self.assertEqual(self.admin("GET", "/stats")["environments"]["prod"]["connections"], 2)

    def test_busy_connection_stays(self):
        tok = self.token("prod")
        conn = self.connect("127.0.0.2")
        try:
            sock = None
            for _ in range(5):
                r, _data = self.get(conn, "/api/data/v9.2/WhoAmI", tok)
                self.assertEqual(r.status, 200)
                sock = sock or conn.sock
                self.assertIs(conn.sock, sock)
                time.sleep(0.05)
        finally:
            conn.close()


class TestDefaultKeepsIdleConnections(Served):
    def test_idle_half_second_is_fine(self):
        tok = self.token("prod")
        conn = self.connect()
        try:
            self.get(conn, "/prod/api/data/v9.2/WhoAmI", tok)
            sock = conn.sock
            readable, _w, _x = select.select([sock], [], [], 0.5)
            self.assertEqual(readable, [])
            r, _data = self.get(conn, "/prod/api/data/v9.2/WhoAmI", tok)
            self.assertEqual(r.status, 200)
            self.assertIs(conn.sock, sock)
        finally:
            conn.close()


# ---- plug-in assemblies, nested $expand, what changed ---------------------------

STEPS_EXPAND = ("plugintypeid($select=typename;$expand=pluginassemblyid($select=name,version,"
                "modifiedon))")


class TestAssemblies(Base):
    def test_nested_expand_as_the_service_takes_it(self):
        body = self.ok("sdkmessageprocessingsteps?" + self.q(
            select="name,modifiedon", expand=STEPS_EXPAND, filter="mode eq 0"))
        row = body["value"][0]
        asm = row["plugintypeid"]["pluginassemblyid"]
        self.assertEqual((asm["name"], asm["version"], asm["pluginassemblyid"]),
                         ("Contoso.Email", "1.4.1.0", ASM))
        self.assertRegex(asm["modifiedon"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertNotIn("@odata.etag", asm)
        self.assertTrue(body["@odata.context"].endswith(
            "#sdkmessageprocessingsteps(name,modifiedon,plugintypeid(typename,pluginassemblyid("
            "name,version,modifiedon)))"), body["@odata.context"])
        row = self.ok("sdkmessageprocessingsteps(%s)?" % STEP1 + self.q(
            select="name", expand=STEPS_EXPAND))
        self.assertEqual(row["plugintypeid"]["pluginassemblyid"]["version"], "1.4.1.0")
        body = self.ok("plugintypes?" + self.q(select="typename,_pluginassemblyid_value",
                                               expand="pluginassemblyid($select=name)"))
        self.assertEqual(body["value"][0]["_pluginassemblyid_value"], ASM)
        body = self.ok("pluginassemblies?" + self.q(
            select="name,version,isolationmode,sourcetype,culture,modifiedon,createdon"))
        self.assertEqual(body["value"][0]["isolationmode"], 2)

    def test_strict_about_what_it_refuses(self):
        for expand, contains in (
                ("plugintypeid($expand=pluginassembly)",
                 "property named 'pluginassembly' on type 'Microsoft.Dynamics.CRM.plugintype'"),
                ("plugintypeid($expand=pluginassemblyid($select=nosuch))",
                 "property named 'nosuch' on type 'Microsoft.Dynamics.CRM.pluginassembly'"),
                ("plugintypeid($expand=pluginassemblyid($select=password))", "password"),
                ("plugintypeid($expand=pluginassemblyid($top=1))", "$top"),
                ("plugintypeid($expand=pluginassemblyid($filter=name eq 'x'))", "$filter"),
                ("plugintypeid($select=typename,$expand=pluginassemblyid)", None),
                ("plugintypeid($expand=pluginassemblyid($expand=nosuch))",
                 "property named 'nosuch' on type 'Microsoft.Dynamics.CRM.pluginassembly'")):
            with self.subTest(expand=expand):
                self.bad("sdkmessageprocessingsteps?" + self.q(select="name", expand=expand),
                         contains=contains)
        deep = "parentworkflowid"
        for _ in range(14):
            deep = "parentworkflowid($expand=%s)" % deep
        self.ok("workflows?" + self.q(select="name", expand=deep))          # 15 expands
        self.bad("workflows?" + self.q(select="name", expand="parentworkflowid($expand=%s)"
                                       % deep), code="0x8004430D",
                 contains="Number of link entities in query exceeded maximum limit.")

    def test_read_privilege_of_expanded_tables(self):
        self.admin("PATCH", "/_admin/prod", {"deny_read": ["pluginassemblies"]})
        try:
            body = self.bad("sdkmessageprocessingsteps?" + self.q(
                select="name", expand=STEPS_EXPAND), status=403, code="0x80040220")
            self.assertIn("prvReadPluginAssembly", body["error"]["message"])
            self.bad("pluginassemblies?$select=name", status=403, code="0x80040220")
            self.bad("plugintypes?" + self.q(select="name",
                                             filter="pluginassemblyid/name eq 'x'"),
                     status=403, code="0x80040220")
            self.ok("sdkmessageprocessingsteps?" + self.q(
                select="name", expand="plugintypeid($select=typename)"))
        finally:
            self.admin("PATCH", "/_admin/prod", {"deny_read": []})

    def test_dangling_assembly_is_a_load_error(self):
        sim = dvsim.Simulator()
        with self.assertRaisesRegex(dvsim.ScenarioError, "_pluginassemblyid_value"):
            sim.load({"environments": [{"name": "e", "tenant": "t", "client_id": CID,
                                        "client_secret": "s", "tables": {"plugintypes": [
                                            {"typename": "x", "_pluginassemblyid_value": ASM}]}}]})


class TestTopAndPageSize(Base):
    def pages(self, first, prefer):
        rows, url, n = [], first, 0
        while url:
            u = urlsplit(url)
            r, data = self.get(u.path + "?" + u.query, prefer)
            self.assertEqual(r.status, 200, data)
            body = json.loads(data)
            rows += body["value"]
            url = body.get("@odata.nextLink")
            n += 1
            self.assertLess(n, 50)
        return rows, n, r

    def test_top_is_ignored_with_maxpagesize(self):
        first = "/prod/api/data/v9.2/tracelogs?" + self.q(select="tracelogid", top="3")
        r, data = self.get(first, "odata.maxpagesize=5")
        body = json.loads(data)
        self.assertEqual(len(body["value"]), 5)
        self.assertIn("@odata.nextLink", body)
        self.assertEqual(r.getheader("Preference-Applied"), "odata.maxpagesize=5")
        rows, n, _r = self.pages(first, "odata.maxpagesize=5")
        self.assertEqual((len(rows), n), (24, 5))
        self.assertEqual(len({x["tracelogid"] for x in rows}), 24)
        rows, n, _r = self.pages(first.replace("top=3", "top=50"), "odata.maxpagesize=10")
        self.assertEqual((len(rows), n), (24, 3))

    def test_top_alone_limits_without_nextlink(self):
        rows, n, r = self.pages("/prod/api/data/v9.2/tracelogs?$select=level&$top=3", None)
        self.assertEqual((len(rows), n), (3, 1))
        self.assertIsNone(r.getheader("Preference-Applied"))
        # a preference the service ignores (over 5000) leaves $top in force
        rows, n, r = self.pages("/prod/api/data/v9.2/tracelogs?$select=level&$top=3",
                                "odata.maxpagesize=6000")
        self.assertEqual((len(rows), n), (3, 1))
        self.assertIsNone(r.getheader("Preference-Applied"))


class TestAdminChanges(Base):
    def wf(self, key):
        return self.admin("GET", "/_admin/prod/workflows/%s" % key)

    def change(self, path, body=None, status=200):
        r, data = self.request("POST", "/_admin/prod/" + path, body)
        self.assertEqual(r.status, status, data)
        return json.loads(data)

    def activations(self, wid):
        return [w for w in self.admin("GET", "/_admin/prod/workflows")["value"]
                if w.get("_parentworkflowid_value") == wid and w["type"] == 2]

    def test_workflow_lifecycle(self):
        t0 = time.time()
        res = self.change("workflows/%s/deactivate" % WF, {"at": "now-7m"})
        self.assertIn({"set": "workflows", "id": WF_ACT, "op": "deleted"}, res["changed"])
        self.assertIn({"set": "workflows", "id": WF, "op": "updated"}, res["changed"])
        wf = res["row"]
        self.assertEqual((wf["statecode"], wf["statuscode"]), (0, 1))
        self.assertIsNone(wf["_activeworkflowid_value"])
        self.assertAlmostEqual(dvsim.parse_iso(wf["modifiedon"]), t0 - 420, delta=3)
        self.assertEqual(self.activations(WF), [])
        self.change("workflows/%s/deactivate" % WF, status=400)
        # the Web API sees it (modifiedon delta)
        body = self.ok("workflows?" + self.q(select="name,statecode", filter="modifiedon gt %s"
                                             % dvsim.fmt_time(t0 - 600)))
        self.assertIn(WF, [w["workflowid"] for w in body["value"]])

        res = self.change("workflows/%s/activate" % WF)
        acts = self.activations(WF)
        self.assertEqual(len(acts), 1)
        act = acts[0]
        self.assertEqual(res["row"]["_activeworkflowid_value"], act["workflowid"])
        self.assertEqual((act["statecode"], act["mode"], act["primaryentity"], act["name"]),
                         (1, 1, "email", "Set email category"))
        self.assertEqual(act["createdon"], act["modifiedon"])
        self.assertGreaterEqual(dvsim.parse_iso(act["createdon"]), int(t0))

        res = self.change("workflows/%s/background" % WF)
        self.assertEqual((res["row"]["mode"], res["row"]["statecode"]), (0, 1))
        acts2 = self.activations(WF)
        self.assertEqual(len(acts2), 1)
        self.assertNotEqual(acts2[0]["workflowid"], act["workflowid"])
        self.assertEqual(acts2[0]["mode"], 0)
        self.change("workflows/%s/background" % WF, status=400)
        self.change("workflows/%s/realtime" % WF)

        # an incomplete session keeps its activation row
        running = self.activations(WF)[0]["workflowid"]
        self.admin("POST", "/_admin/prod/processsessions",
                   {"_processid_value": running, "statecode": 0, "statuscode": 2})
        self.change("workflows/%s/deactivate" % WF)
        self.assertEqual([a["workflowid"] for a in self.activations(WF)], [running])

        res = self.change("workflows/%s/delete" % WF)
        self.assertIsNone(res["row"])
        r, _data = self.request("GET", "/_admin/prod/workflows/%s" % WF)
        self.assertEqual(r.status, 404)
        self.assertEqual(self.activations(WF), [])

    def test_steps(self):
        before = self.admin("GET", "/_admin/prod/sdkmessageprocessingsteps/%s" % STEP1)
        res = self.change("sdkmessageprocessingsteps/%s/asynchronous" % STEP1)
        self.assertEqual((res["row"]["mode"], res["row"]["stage"]), (1, 40))
        self.assertGreater(res["row"]["versionnumber"], before["versionnumber"])
        self.change("sdkmessageprocessingsteps/%s/asynchronous" % STEP1, status=400)
        self.change("sdkmessageprocessingsteps/%s/synchronous" % STEP1)
        res = self.change("sdkmessageprocessingsteps/%s/disable" % STEP1, {"at": "now-1m"})
        self.assertEqual((res["row"]["statecode"], res["row"]["statuscode"]), (1, 2))
        self.assertAlmostEqual(dvsim.parse_iso(res["row"]["modifiedon"]), time.time() - 60,
                               delta=3)
        self.change("sdkmessageprocessingsteps/%s/enable" % STEP1)
        self.change("sdkmessageprocessingsteps/%s/delete" % STEP2)
        r, _data = self.request("GET", "/_admin/prod/sdkmessageprocessingsteps/%s" % STEP2)
        self.assertEqual(r.status, 404)

    def test_assembly_upload_leaves_the_step(self):
        step = self.admin("GET", "/_admin/prod/sdkmessageprocessingsteps/%s" % STEP1)
        t0 = time.time()
        res = self.change("pluginassemblies/%s/upload" % ASM)
        self.assertEqual(res["row"]["version"], "1.4.1.1")
        self.assertGreaterEqual(dvsim.parse_iso(res["row"]["modifiedon"]), int(t0))
        res = self.change("pluginassemblies/%s/upload" % ASM, {"version": "2.0.0.0",
                                                               "at": "now-7m"})
        self.assertEqual((res["row"]["version"], res["row"]["major"], res["row"]["minor"]),
                         ("2.0.0.0", 2, 0))
        self.assertEqual(res["changed"], [{"set": "pluginassemblies", "id": ASM,
                                           "op": "updated"}])
        self.assertEqual(self.admin("GET", "/_admin/prod/sdkmessageprocessingsteps/%s" % STEP1),
                         step)
        body = self.ok("sdkmessageprocessingsteps(%s)?" % STEP1 + self.q(
            select="modifiedon", expand=STEPS_EXPAND))
        asm = body["plugintypeid"]["pluginassemblyid"]
        self.assertEqual(asm["version"], "2.0.0.0")
        self.assertAlmostEqual(dvsim.parse_iso(asm["modifiedon"]), t0 - 420, delta=3)
        self.change("pluginassemblies/%s/upload" % ASM, {"version": "two"}, status=400)

    def test_refusals(self):
        self.change("workflows/%s/frobnicate" % WF, status=400)
        self.change("mailboxes/%s/disable" % MB1, status=400)
        self.change("workflows/%s/activate" % WF.replace("1", "9"), status=404)
        self.change("workflows/%s/deactivate" % WF_ACT, status=400)     # an activation row
        self.change("sdkmessageprocessingsteps/%s/disable" % STEP1, {"when": "now"},
                    status=400)
        self.change("sdkmessageprocessingsteps/%s/disable" % STEP1, {"at": "yesterday"},
                    status=400)


# ---- scenario additions: shared texts, trace logging "All" ---------------------

class TestScenarioExtras(unittest.TestCase):
    def test_shared_texts(self):
        data = scenario()
        trace = "System.NullReferenceException: x\r\n   at A.B()" * 100
        data["texts"] = {"t1": trace}
        data["environments"][0]["tables"]["plugintracelogs"] = [
            {"pluginstepid": STEP1, "messagename": "Create", "primaryentity": "email",
             "mode": 0, "exceptiondetails": {"$text": "t1"}, "createdon": "now-%dm" % i}
            for i in range(3)]
        sim = dvsim.Simulator()
        sim.load(data, "texts")
        rows = list(sim.envs["prod"].tables["plugintracelogs"].rows.values())
        self.assertEqual([r["exceptiondetails"] for r in rows], [trace] * 3)
        self.assertTrue(all(r["exceptiondetails"] is rows[0]["exceptiondetails"] for r in rows))
        for bad in ({"$text": "t2"}, {"$text": "t1", "x": 1}):
            data["environments"][0]["tables"]["plugintracelogs"][0]["exceptiondetails"] = bad
            with self.assertRaisesRegex(dvsim.ScenarioError, r"plugintracelogs\[0\].*\$text"):
                dvsim.Simulator().load(data, "texts")
        data["texts"] = {"t1": 5}
        with self.assertRaises(dvsim.ScenarioError):
            dvsim.Simulator().load(data, "texts")

    def test_trace_logging_all_adds_runs_that_did_not_fail(self):
        plain = dvsim.Simulator()
        plain.load(scenario(), "plain")
        now = time.time()
        want = oracle.findings(plain.envs["prod"], now, counts=True)
        for details in ("", None):
            data = scenario()
            data["environments"][0]["plugin_trace_log"] = {
                "setting": "All", "runs_per_step": 4, "within": "1h",
                "exceptiondetails": details}
            sim = dvsim.Simulator()
            sim.load(data, "all")
            rows = [r for r in sim.envs["prod"].tables["plugintracelogs"].rows.values()
                    if r.get("exceptiondetails") != "System.InvalidPluginExecutionException: boom"]
            self.assertEqual(len(rows), 8)       # two enabled steps, four runs each
            self.assertEqual({r.get("exceptiondetails") for r in rows}, {details})
            self.assertEqual({r["pluginstepid"] for r in rows}, {STEP1, STEP2})
            self.assertEqual({r["mode"] for r in rows}, {0, 1})
            self.assertTrue(all(now - 3600 <= r["createdon"] <= now + 1 for r in rows))
            self.assertEqual(oracle.findings(sim.envs["prod"], now, counts=True), want)
        data = scenario()
        data["environments"][0]["plugin_trace_log"] = {"setting": "Exception"}
        sim = dvsim.Simulator()
        sim.load(data, "exc")
        self.assertEqual(len(sim.envs["prod"].tables["plugintracelogs"].rows), 1)
        for bad in ({"setting": "Verbose"}, {"setting": "All", "exceptiondetails": "x"},
                    {"setting": "All", "runs_per_step": -1}, {"nosuch": 1}):
            data["environments"][0]["plugin_trace_log"] = bad
            with self.assertRaises(dvsim.ScenarioError):
                dvsim.Simulator().load(data, "bad")


if __name__ == "__main__":
    unittest.main()
