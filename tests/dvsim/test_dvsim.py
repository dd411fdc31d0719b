#!/usr/bin/env python3
# Tests for dvsim: it must answer like Dataverse, reject what Dataverse rejects,
# page exactly once through a result, and obey its admin API. unittest + http.client.
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import unittest
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
             "plugintypes": [{"plugintypeid": PT, "typename": "Contoso.Plugins.EmailCreate",
                              "name": "Contoso.Plugins.EmailCreate"}],
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
                     "/_admin/stats", "now-5m", "retry_after", "truncated", "Examples"):
            self.assertIn(word, p.stdout)

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
            p = subprocess.Popen([sys.executable, os.path.join(HERE, "dvsim.py"), "--host", "::1",
                                  "--port-file", pf, "--log", log, "--quiet"])
            try:
                deadline = time.monotonic() + 10
                while not os.path.exists(pf) and time.monotonic() < deadline:
                    time.sleep(0.02)
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
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def test_port_file_serve_and_shutdown(self):
        with tempfile.TemporaryDirectory() as d:
            pf = os.path.join(d, "port")
            p = subprocess.Popen([sys.executable, os.path.join(HERE, "dvsim.py"), "--port", "0",
                                  "--port-file", pf, "--quiet"])
            try:
                deadline = time.monotonic() + 10
                while not os.path.exists(pf) and time.monotonic() < deadline:
                    time.sleep(0.02)
                with open(pf) as f:
                    port = int(f.read())
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/_admin/health")
                self.assertEqual(json.loads(conn.getresponse().read())["environments"], ["org"])
                conn.request("POST", "/_admin/shutdown")
                conn.getresponse().read()
                conn.close()
                self.assertEqual(p.wait(timeout=10), 0)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    unittest.main()
