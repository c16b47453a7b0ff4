#!/usr/bin/env python3
"""Tests of the ServiceNow simulator against the documented behaviour
(/work/shared/SERVICENOW.md, ServiceNow's Table API docs).

Run from the repository root:  python3 tests/sim/test_snow_sim.py

Each test class starts its own simulator as a subprocess on port 0 with a
temporary data directory and waits for its first stdout line; nothing
waits by sleeping.
"""

import base64
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from urllib.parse import parse_qs, quote, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "snow_sim.py")
sys.path.insert(0, HERE)

import snow_html  # noqa: E402
import testca  # noqa: E402
import snow_query  # noqa: E402

ADMIN = ("admin", "admin")
INTEGRATION = ("imperai.integration", "integration-secret")
READONLY = ("readonly", "readonly")
CLIENT = {"client_id": "imperai-client", "client_secret": "imperai-client-secret"}
DATE_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
DROPPED = (ConnectionError, http.client.HTTPException)


def fmt(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(epoch)))


class Reply:
    def __init__(self, resp, body):
        self.status = resp.status
        self.msg = resp.msg
        self.body = body

    def header(self, name):
        return self.msg.get(name)

    def cookies(self):
        return dict(c.split(";")[0].split("=", 1) for c in self.msg.get_all("Set-Cookie") or [])

    def json(self):
        return json.loads(self.body)

    @property
    def result(self):
        return self.json()["result"]


class Sim:
    """One simulator process."""

    def __init__(self, *args, data_dir=None):
        self.own_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="snowsim-test-")
        self.args = list(args)
        self.proc = None

    def start(self):
        self.port_file = os.path.join(self.dir, "port")
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, SIM, "--port", "0", "--data", os.path.join(self.dir, "data"),
             "--port-file", self.port_file] + self.args,
            stdout=subprocess.PIPE, stderr=self.stderr)
        self.first_line = self.proc.stdout.readline().decode()
        m = re.fullmatch(r"snow_sim listening on https?://127\.0\.0\.1:(\d+)\n", self.first_line)
        if not m:
            raise RuntimeError("bad first line %r" % self.first_line)
        self.port = int(m.group(1))
        return self

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(20)
        self.proc.stdout.close()
        self.stderr.close()
        return rc

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.stop(signal.SIGKILL)
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ HTTP

    def request(self, method, path, body=None, auth=ADMIN, headers=None, conn=None,
                timeout=15, form=None):
        hdrs = {"Accept": "application/json"}
        if auth is not None:
            token = base64.b64encode(("%s:%s" % auth).encode()).decode()
            hdrs["Authorization"] = "Basic " + token
        data = None
        if form is not None:
            data = "&".join("%s=%s" % (k, quote(v)) for k, v in form.items()).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return Reply(resp, resp.read())
        finally:
            if own:
                conn.close()

    def bearer(self, method, path, token, body=None):
        return self.request(method, path, body, auth=None,
                            headers={"Authorization": "Bearer " + token})

    def ctl(self, method, path, body=None):
        r = self.request(method, path, body, auth=None)
        if r.status != 200:
            raise AssertionError("%s %s -> %d %r" % (method, path, r.status, r.body))
        return r.json()

    def create(self, table="incident", auth=ADMIN, **fields):
        r = self.request("POST", "/api/now/table/" + table, fields, auth=auth)
        if r.status != 201:
            raise AssertionError("POST %s -> %d %r" % (table, r.status, r.body))
        return r.result

    def get(self, table, sys_id, params="", auth=ADMIN):
        r = self.request("GET", "/api/now/table/%s/%s?%s" % (table, sys_id, params), auth=auth)
        return r.result if r.status == 200 else r

    def patch(self, table, sys_id, fields, auth=ADMIN, headers=None, params=""):
        return self.request("PATCH", "/api/now/table/%s/%s?%s" % (table, sys_id, params),
                            fields, auth=auth, headers=headers)

    def list(self, table, query="", params="", auth=ADMIN, version=""):
        path = "/api/now%s/table/%s?sysparm_query=%s%s" % (
            "/" + version if version else "", table, quote(query), params)
        return self.request("GET", path, auth=auth)

    def numbers(self, query, table="incident", params=""):
        r = self.list(table, query, "&sysparm_fields=number" + params)
        assert r.status == 200, r.body
        return [row["number"] for row in r.result]


class SimTestCase(unittest.TestCase):
    """A simulator shared by the tests of one class; run-time knobs are put
    back to their defaults before every test."""

    sim_args = ()

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim(*cls.sim_args).start()

    @classmethod
    def tearDownClass(cls):
        cls.sim.cleanup()

    def setUp(self):
        self.sim.ctl("POST", "/sim/faults", {})
        self.sim.ctl("POST", "/sim/ratelimit", {"limit": 0})
        self.sim.ctl("POST", "/sim/clock", {"reset": True})
        self.sim.ctl("POST", "/sim/settings", {
            "unknown_field_mode": "ignore", "client_credentials": False, "token_ttl": 1800,
            "acl_hide_rate": 0.0, "row_acl": True, "bump_on_noop": False,
            "unordered": "insertion", "commit_lag": 0, "field_acl": {},
            "reference_input": "lookup"})

    def tag(self):
        return "t" + uuid.uuid4().hex[:12]

    def assertError(self, reply, status, message, detail=None):
        self.assertEqual(reply.status, status, reply.body)
        body = reply.json()
        self.assertEqual(body["status"], "failure")
        self.assertEqual(body["error"]["message"], message)
        if detail is not None:
            self.assertEqual(body["error"]["detail"], detail)
        return body


# ====================================================================== units

class EncodedQueryParseTest(unittest.TestCase):
    def test_or_binds_to_the_previous_term(self):
        q = snow_query.parse("a=1^b=2^ORc=3")
        self.assertEqual([[t.field for t in clause] for clause in q.groups[0]],
                         [["a"], ["b", "c"]])

    def test_nq_starts_a_new_top_level_group(self):
        q = snow_query.parse("a=1^b=2^NQc=3^ORd=4")
        self.assertEqual(len(q.groups), 2)
        self.assertEqual([[t.field for t in c] for c in q.groups[1]], [["c", "d"]])

    def test_operators_are_recognised(self):
        for text, op, value in [("aIN1,2", "IN", "1,2"), ("aNOT IN1", "NOT IN", "1"),
                                ("aNOT LIKEx", "NOT LIKE", "x"), ("a!=x", "!=", "x"),
                                ("a<=3", "<=", "3"), ("aISEMPTY", "ISEMPTY", ""),
                                ("aBETWEEN1@2", "BETWEEN", "1@2"), ("aSTARTSWITHx", "STARTSWITH", "x"),
                                ("b.c=x", "=", "x")]:
            term = snow_query.parse(text).groups[0][0][0]
            self.assertEqual((term.op, term.value), (op, value), text)

    def test_chained_orderby_and_escaped_caret(self):
        q = snow_query.parse("a=x^^y^ORDERBYb^ORDERBYDESCc")
        self.assertEqual(q.groups[0][0][0].value, "x^y")
        self.assertEqual(q.order, [("b", False), ("c", True)])

    def test_date_generate_values_become_dates(self):
        q = snow_query.parse("sys_updated_on>=javascript:gs.dateGenerate('2025-01-02','10:00:00')")
        self.assertEqual(q.groups[0][0][0].value, "2025-01-02 10:00:00")


class SanitizerTest(unittest.TestCase):
    def test_removes_scripts_handlers_style_comments_and_data_attributes(self):
        out = snow_html.sanitize('<p onclick="x()" style="color:red" data-rev="3">Hi'
                                 '<!-- rev 3 --></p><script>alert(1)</script><style>p{}</style>')
        self.assertEqual(out, "<p>Hi</p>")

    def test_keeps_https_links_and_drops_other_schemes(self):
        out = snow_html.sanitize('<a href="https://imper.ai/s/1" target="_blank">Send</a>'
                                 '<a href="javascript:alert(1)">x</a><a href=" jav&#x09;ascript:y">z</a>'
                                 '<img src="data:image/png;base64,AA" onerror="x">')
        self.assertEqual(out, '<a href="https://imper.ai/s/1" target="_blank">Send</a>'
                              "<a>x</a><a>z</a><img>")

    def test_is_strict_about_what_cannot_carry_a_revision(self):
        # the daemon must not rely on any of these to recognise its writes
        out = snow_html.sanitize('<p><span style="x" data-rev="1.2" title="t">a</span>'
                                 '<!-- imperai-snow ref 1.2 --><small data-x="y">b</small></p>')
        self.assertEqual(out, '<p><span title="t">a</span><small>b</small></p>')

    def test_the_daemons_fields_survive_unchanged_with_their_revision_last(self):
        # every field render.c writes (tests/data/render, golden files)
        data = os.path.join(HERE, "..", "data", "render")
        names = sorted(n for n in os.listdir(data) if n.startswith("field_"))
        self.assertGreater(len(names), 10)
        for name in names:
            with open(os.path.join(data, name), encoding="utf-8") as f:
                field = f.read()
            with self.subTest(field=name):
                self.assertEqual(snow_html.sanitize(field), field)
                text = re.sub(r"<[^>]*>", " ", snow_html.sanitize(field)).split()
                self.assertEqual(text[-3:-1], ["imperai-snow", "ref"])
                self.assertRegex(text[-1], r"^\d+\.\d+$")
                self.assertTrue(field.endswith("</small></p>"))
                self.assertNotIn("imper.ai Verification", field)

    def test_output_is_escaped_balanced_and_stable(self):
        out = snow_html.sanitize("<div><b>a &lt; b</b><iframe src=x>in</iframe>")
        self.assertEqual(out, "<div><b>a &lt; b</b></div>")
        self.assertEqual(snow_html.sanitize(out), out)


# ====================================================================== process

class StartupTest(unittest.TestCase):
    def test_first_stdout_line_and_port_file(self):
        sim = Sim().start()
        try:
            self.assertEqual(sim.first_line, "snow_sim listening on http://127.0.0.1:%d\n" % sim.port)
            with open(sim.port_file) as f:
                self.assertEqual(int(f.read()), sim.port)
            self.assertEqual(sim.ctl("GET", "/sim/health"), {"ok": True})
            self.assertEqual(sim.stop(), 0)  # SIGTERM exits cleanly
        finally:
            sim.cleanup()

    def test_refuses_to_bind_anything_but_loopback(self):
        d = tempfile.mkdtemp()
        try:
            for host in ("0.0.0.0", "::", "192.0.2.1"):
                p = subprocess.run([sys.executable, SIM, "--port", "0", "--data", d, "--host", host],
                                   capture_output=True, timeout=20)
                self.assertEqual(p.returncode, 2)
                self.assertEqual(p.stdout, b"")
                self.assertIn(b"loopback", p.stderr)
        finally:
            shutil.rmtree(d)

    def test_listening_socket_is_bound_to_127_0_0_1(self):
        if not os.path.exists("/proc/net/tcp"):
            self.skipTest("needs Linux /proc/net/tcp")
        sim = Sim().start()
        try:
            with open("/proc/net/tcp") as f:
                listening = [line.split()[1] for line in f.readlines()[1:]
                             if line.split()[3] == "0A"]  # TCP_LISTEN
            ours = [a for a in listening if int(a.split(":")[1], 16) == sim.port]
            self.assertEqual(ours, ["0100007F:%04X" % sim.port])
        finally:
            sim.cleanup()

    def test_defaults_match_the_documented_behaviour(self):
        sim = Sim().start()
        try:
            settings = sim.ctl("GET", "/sim/settings")
            self.assertEqual((settings["unknown_field_mode"], settings["client_credentials"],
                              settings["token_ttl"], settings["bump_on_noop"]),
                             ("ignore", False, 1800, False))
            self.assertEqual(sim.ctl("GET", "/sim/ratelimit")["limit"], 0)
            faults = sim.ctl("GET", "/sim/faults")
            self.assertFalse(any(faults[k] for k in faults if k.endswith("rate")))
            rec = sim.create(short_description="noop")
            got = sim.patch("incident", rec["sys_id"], {"short_description": "noop"}).result
            self.assertEqual(got["sys_mod_count"], "0")
        finally:
            sim.cleanup()

    def test_numbers_start_at_10001_per_table(self):
        sim = Sim().start()
        try:
            inc = sim.create(short_description="first")
            ritm = sim.create("sc_req_item", short_description="first")
            task = sim.create("sc_task", short_description="first", request_item=ritm["sys_id"])
            self.assertEqual((inc["number"], ritm["number"], task["number"]),
                             ("INC0010001", "RITM0010001", "SCTASK0010001"))
            self.assertEqual(sim.create(short_description="second")["number"], "INC0010002")
        finally:
            sim.cleanup()


class PersistenceTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="snowsim-persist-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def _write_some(self, sim):
        rec = sim.create(short_description="survives", caller_id="abel.tuter")
        sim.patch("incident", rec["sys_id"], {"work_notes": "noted", "category": "software"})
        return rec

    def _check_after_restart(self, sim, rec):
        got = sim.get("incident", rec["sys_id"], "sysparm_display_value=all")
        self.assertEqual(got["category"]["value"], "software")
        self.assertEqual(got["sys_mod_count"]["value"], "1")
        self.assertIn("noted", got["work_notes"]["display_value"])
        self.assertEqual(sim.create(short_description="next")["number"], "INC0010002")
        writes = sim.ctl("GET", "/sim/writes?table=incident&sys_id=" + rec["sys_id"])
        self.assertEqual([w["method"] for w in writes], ["POST", "PATCH"])

    def test_a_column_created_through_the_dictionary_survives_a_restart(self):
        sim = Sim("--no-verification-field", data_dir=self.dir).start()
        sim.create("sys_dictionary", name="incident", element="u_extra", internal_type="html",
                   column_label="Extra")
        rec = sim.create(short_description="x", u_extra="<p>kept</p>")
        sim.stop(signal.SIGKILL)
        sim = Sim("--no-verification-field", data_dir=self.dir).start()
        try:
            self.assertEqual(sim.get("incident", rec["sys_id"])["u_extra"], "<p>kept</p>")
            rows = sim.list("sys_dictionary", "name=incident^element=u_extra").result
            self.assertEqual([x["internal_type"] for x in rows], ["html"])
        finally:
            sim.cleanup()

    def test_state_survives_sigterm_restart(self):
        sim = Sim(data_dir=self.dir).start()
        rec = self._write_some(sim)
        self.assertEqual(sim.stop(), 0)
        sim = Sim(data_dir=self.dir).start()
        try:
            self._check_after_restart(sim, rec)
        finally:
            sim.cleanup()

    def test_restart_after_the_log_was_folded_into_a_snapshot(self):
        sim = Sim(data_dir=self.dir).start()
        made = sim.ctl("POST", "/sim/tickets", {"count": 3000, "fields": {
            "short_description": "bulk " + "x" * 600}})["tickets"]  # > 4 MiB: compaction
        rec = self._write_some(sim)
        data = os.path.join(self.dir, "data")
        self.assertLess(os.path.getsize(os.path.join(data, "wal.jsonl")), 64 << 10)
        self.assertGreater(os.path.getsize(os.path.join(data, "state.json")), 4 << 20)
        sim.stop(signal.SIGKILL)
        sim = Sim(data_dir=self.dir).start()
        try:
            self.assertEqual(sim.list("incident", "short_descriptionSTARTSWITHbulk",
                                      "&sysparm_limit=1").header("X-Total-Count"), "3000")
            self.assertEqual(made[0]["number"], "INC0010001")
            self.assertEqual(sim.get("incident", rec["sys_id"])["category"], "software")
            self.assertEqual(sim.create(short_description="next")["number"], "INC0013002")
        finally:
            sim.cleanup()

    def test_a_torn_last_log_line_is_ignored(self):
        import snow_store
        with open(os.path.join(HERE, "snow_seed.json")) as f:
            seed = json.load(f)
        data = os.path.join(self.dir, "data")
        store = snow_store.Store(data, snow_store.build_schema(seed))
        store.open(seed, time.time())
        with store.lock:
            store.put("sys_user_group", snow_store.stamp({"name": "Kept"}, "admin", time.time()))
            store.commit()
        with open(store.wal_path, "ab") as f:
            f.write(b'{"seq": 99, "ops": [["put", "sys_user_group", {"na')
        store._wal.close()  # crash: no clean close, no snapshot
        again = snow_store.Store(data, snow_store.build_schema(seed))
        again.open(seed, time.time())
        names = [r["name"] for r in again.rows("sys_user_group")]
        self.assertIn("Kept", names)
        self.assertEqual(again.seq, 1)
        again.close()

    def test_answered_writes_survive_sigkill(self):
        sim = Sim(data_dir=self.dir).start()
        rec = self._write_some(sim)
        sim.stop(signal.SIGKILL)
        sim = Sim(data_dir=self.dir).start()
        try:
            self._check_after_restart(sim, rec)
        finally:
            sim.cleanup()


# ====================================================================== reading

class ReadTest(SimTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.T = "rd" + uuid.uuid4().hex[:10]
        sim, T = cls.sim, cls.T
        spec = [("alpha printer", "software", "1", "abel.tuter"),
                ("beta laptop", "hardware", "2", "beth.anglin"),
                ("gamma vpn", "network", "3", "abel.tuter"),
                ("delta mail", "software", "4", "charlie.whitherspoon"),
                ("epsilon db", "database", "5", "david.loo")]
        cls.recs = [sim.create(short_description="%s %s" % (T, d), category=c, priority=p,
                               caller_id=u) for d, c, p, u in spec]
        cls.num = [r["number"] for r in cls.recs]
        # Outside the tagged set: a wrongly bound ^OR would let it in.
        sim.create(short_description="other " + T, category="network")

    def q(self, query, **kw):
        return self.sim.numbers("short_descriptionSTARTSWITH%s^%s" % (self.T, query), **kw)

    def pick(self, *idx):
        return sorted(self.num[i] for i in idx)

    def test_every_value_is_a_string_and_system_fields_are_set(self):
        rec = self.sim.get("incident", self.recs[0]["sys_id"], "sysparm_exclude_reference_link=true")
        for name, value in rec.items():
            self.assertIsInstance(value, str, name)
        self.assertRegex(rec["sys_id"], r"^[0-9a-f]{32}$")
        self.assertRegex(rec["number"], r"^INC\d{7}$")
        for f in ("sys_created_on", "sys_updated_on", "opened_at"):
            self.assertRegex(rec[f], DATE_RE)
        self.assertEqual((rec["sys_mod_count"], rec["sys_created_by"], rec["sys_updated_by"]),
                         ("0", "admin", "admin"))
        self.assertEqual((rec["active"], rec["state"], rec["work_notes"]), ("true", "1", ""))

    def test_reference_shapes(self):
        sid = self.recs[0]["sys_id"]
        abel = self.sim.list("sys_user", "user_name=abel.tuter").result[0]["sys_id"]
        link = "http://127.0.0.1:%d/api/now/table/sys_user/%s" % (self.sim.port, abel)
        fields = "sysparm_fields=caller_id,assigned_to"
        self.assertEqual(self.sim.get("incident", sid, fields),
                         {"caller_id": {"link": link, "value": abel}, "assigned_to": ""})
        self.assertEqual(self.sim.get("incident", sid, fields + "&sysparm_exclude_reference_link=true"),
                         {"caller_id": abel, "assigned_to": ""})
        self.assertEqual(self.sim.get("incident", sid, fields + "&sysparm_display_value=true"),
                         {"caller_id": {"display_value": "Abel Tuter", "link": link},
                          "assigned_to": ""})
        self.assertEqual(self.sim.get("incident", sid, fields + "&sysparm_display_value=true"
                                      "&sysparm_exclude_reference_link=true"),
                         {"caller_id": "Abel Tuter", "assigned_to": ""})
        self.assertEqual(self.sim.get("incident", sid, fields + "&sysparm_display_value=all"),
                         {"caller_id": {"display_value": "Abel Tuter", "value": abel, "link": link},
                          "assigned_to": {"display_value": "", "value": ""}})

    def test_display_value_all_wraps_every_field(self):
        rec = self.sim.get("incident", self.recs[0]["sys_id"], "sysparm_display_value=all")
        for name, value in rec.items():
            self.assertIsInstance(value, dict, name)
            self.assertIsInstance(value["display_value"], str, name)
            self.assertIsInstance(value["value"], str, name)
        self.assertEqual(rec["state"], {"display_value": "New", "value": "1"})
        self.assertEqual(rec["category"], {"display_value": "Software", "value": "software"})

    def test_dot_walked_fields(self):
        rec = self.sim.get("incident", self.recs[0]["sys_id"],
                           "sysparm_fields=number,caller_id.email,caller_id.name,caller_id.user_name")
        self.assertEqual(rec, {"number": self.num[0], "caller_id.email": "abel.tuter@example.com",
                               "caller_id.name": "Abel Tuter", "caller_id.user_name": "abel.tuter"})
        ritm = self.sim.create("sc_req_item", requested_for="beth.anglin", short_description="x")
        got = self.sim.get("sc_req_item", ritm["sys_id"], "sysparm_fields=requested_for.email")
        self.assertEqual(got, {"requested_for.email": "beth.anglin@example.com"})

    def test_unknown_names_in_sysparm_fields_are_ignored(self):
        rec = self.sim.get("incident", self.recs[0]["sys_id"],
                           "sysparm_fields=number,no_such_field,caller_id.no_such")
        self.assertEqual(rec, {"number": self.num[0]})

    def test_each_operator(self):
        cases = {
            "category=software": (0, 3), "category!=software": (1, 2, 4),
            "categoryINhardware,network": (1, 2), "categoryNOT INsoftware,database": (1, 2),
            "short_descriptionLIKEprinter": (0,), "short_descriptionNOT LIKEprinter": (1, 2, 3, 4),
            "short_descriptionENDSWITHmail": (3,), "priority<3": (0, 1), "priority<=3": (0, 1, 2),
            "priority>3": (3, 4), "priority>=3": (2, 3, 4), "priorityBETWEEN2@4": (1, 2, 3),
            "assigned_toISEMPTY": (0, 1, 2, 3, 4), "assigned_toISNOTEMPTY": (),
            "caller_id.user_name=abel.tuter": (0, 2),
        }
        for query, idx in cases.items():
            self.assertEqual(sorted(self.q(query)), self.pick(*idx), query)

    def test_or_binds_to_the_previous_term(self):
        self.assertEqual(sorted(self.q("category=hardware^ORcategory=network")), self.pick(1, 2))

    def test_nq_is_a_top_level_or_of_whole_groups(self):
        T = "short_descriptionSTARTSWITH" + self.T
        got = self.sim.numbers("%s^category=software^NQ%s^priority=5" % (T, T))
        self.assertEqual(sorted(got), self.pick(0, 3, 4))
        got = self.sim.numbers("%s^category=software^NQcategory=network^short_descriptionLIKEzzz" % T)
        self.assertEqual(sorted(got), self.pick(0, 3))

    def test_chained_order_by(self):
        self.assertEqual(self.q("ORDERBYcategory^ORDERBYDESCpriority"),
                         [self.num[i] for i in (4, 1, 2, 3, 0)])

    def test_unknown_query_field_is_ignored_or_returns_no_rows(self):
        self.assertEqual(sorted(self.q("no_such_field=1")), sorted(self.num))
        self.sim.ctl("POST", "/sim/settings", {"unknown_field_mode": "empty"})
        self.assertEqual(self.q("no_such_field=1"), [])

    def test_rows_without_orderby_may_come_in_any_order(self):
        insertion = self.q("")
        self.sim.ctl("POST", "/sim/settings", {"unordered": "shuffle"})
        orders = [self.q("") for _ in range(3)]
        self.assertTrue(all(sorted(o) == sorted(insertion) for o in orders))
        self.assertTrue(any(o != insertion for o in orders))

    def test_name_value_pairs_filter_without_sysparm_query(self):
        r = self.sim.request("GET", "/api/now/table/incident?number=%s&sysparm_fields=number"
                             % self.num[2])
        self.assertEqual(r.result, [{"number": self.num[2]}])

    def _links(self, reply):
        out = {}
        for part in reply.header("Link").split(","):
            m = re.fullmatch(r'<([^>]+)>;rel="(\w+)"', part.strip())
            params = parse_qs(urlsplit(m.group(1)).query)
            out[m.group(2)] = (int(params["sysparm_offset"][0]), int(params["sysparm_limit"][0]),
                               params["sysparm_query"][0])
        return out

    def test_offset_limit_total_count_and_link(self):
        query = "short_descriptionSTARTSWITH%s^ORDERBYnumber" % self.T
        r = self.sim.list("incident", query, "&sysparm_fields=number&sysparm_limit=2&sysparm_offset=2")
        self.assertEqual([x["number"] for x in r.result], self.num[2:4])
        self.assertEqual(r.header("X-Total-Count"), "5")
        self.assertEqual(self._links(r), {"first": (0, 2, query), "prev": (0, 2, query),
                                          "next": (4, 2, query), "last": (4, 2, query)})
        first = self._links(self.sim.list("incident", query, "&sysparm_limit=2"))
        self.assertNotIn("prev", first)
        last = self._links(self.sim.list("incident", query, "&sysparm_limit=2&sysparm_offset=4"))
        self.assertNotIn("next", last)

    def test_default_limit_is_10000(self):
        r = self.sim.list("incident", "numberSTARTSWITHINC")
        self.assertEqual(self._links(r)["first"][1], 10000)

    def test_no_count_and_suppress_pagination_header(self):
        r = self.sim.list("incident", "numberSTARTSWITHINC",
                          "&sysparm_no_count=true&sysparm_suppress_pagination_header=true")
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("X-Total-Count"))
        self.assertIsNone(r.header("Link"))

    def test_v1_answers_404_on_no_rows_v2_and_unversioned_200(self):
        r = self.sim.list("incident", "number=NOPE", version="v1")
        self.assertError(r, 404, "No Record found")
        self.assertEqual(len(self.sim.list("incident", "number=" + self.num[0], version="v1").result), 1)
        for version in ("v2", ""):
            r = self.sim.list("incident", "number=NOPE", version=version)
            self.assertEqual((r.status, r.json()), (200, {"result": []}))

    def test_limit_is_applied_before_row_acls(self):
        # readonly's seeded row ACL hides category=database; that row sorts first.
        query = "short_descriptionSTARTSWITH%s^ORDERBYcategory" % self.T
        r = self.sim.list("incident", query, "&sysparm_limit=2&sysparm_fields=number", auth=READONLY)
        self.assertEqual([x["number"] for x in r.result], [self.num[1]])
        self.assertEqual(r.header("X-Total-Count"), "5")
        self.assertIn("next", self._links(r))
        self.sim.ctl("POST", "/sim/settings", {"row_acl": False})
        r = self.sim.list("incident", query, "&sysparm_limit=2", auth=READONLY)
        self.assertEqual(len(r.result), 2)
        self.sim.ctl("POST", "/sim/settings", {"acl_hide_rate": 1.0})
        r = self.sim.list("incident", query, "&sysparm_limit=2", auth=READONLY)
        self.assertEqual((r.result, r.header("X-Total-Count")), ([], "5"))
        self.assertEqual(len(self.sim.list("incident", query, "&sysparm_limit=2").result), 2)

    def test_row_hidden_by_acl_is_a_404_for_single_get(self):
        r = self.sim.get("incident", self.recs[4]["sys_id"], auth=READONLY)
        self.assertError(r, 404, "No Record found",
                         "Record doesn't exist or ACL restricts the record retrieval")

    def test_missing_record_404_and_invalid_table_400(self):
        r = self.sim.get("incident", "0" * 32)
        self.assertError(r, 404, "No Record found",
                         "Record doesn't exist or ACL restricts the record retrieval")
        r = self.sim.list("u_no_such_table")
        self.assertError(r, 400, "Invalid table u_no_such_table")

    def test_keyset_paging_sees_every_record_while_records_change(self):
        """The poll of SERVICENOW.md: sys_updated_on>T ^NQ sys_updated_on=T^sys_id>S.
        Offset paging over the same changes skips a record."""
        T = self.tag()
        base = int(time.time()) - 7200
        self.sim.ctl("POST", "/sim/clock", {"set": base})
        made = self.sim.ctl("POST", "/sim/tickets", {"table": "incident", "count": 12,
                                                     "fields": {"short_description": T}})["tickets"]
        ids = {t["sys_id"] for t in made}
        filt = "short_descriptionSTARTSWITH" + T
        order = "^ORDERBYsys_updated_on^ORDERBYsys_id"
        fields = "&sysparm_fields=sys_id,sys_updated_on&sysparm_limit=5"

        def page(query):
            return self.sim.list("incident", query + order, fields).result

        seen, mark = [], (fmt(base - 60), "")
        rows = page("%s^sys_updated_on>=%s" % (filt, mark[0]))
        while rows:
            seen += [r["sys_id"] for r in rows]
            if len(seen) == 5:  # records change between pages, one of them not yet seen
                self.sim.ctl("POST", "/sim/clock", {"advance": 5})
                unseen = sorted(ids - set(seen))[0]
                for sid in (seen[0], seen[1], unseen):
                    self.sim.patch("incident", sid, {"description": "changed"})
            mark = (rows[-1]["sys_updated_on"], rows[-1]["sys_id"])
            rows = page("%s^sys_updated_on>%s^NQ%s^sys_updated_on=%s^sys_id>%s"
                        % (filt, mark[0], filt, mark[0], mark[1]))
        self.assertEqual(set(seen), ids)
        # Offset paging on the same ordering drifts: moving rows shift the rest.
        offset_seen, offset = [], 0
        while True:
            if offset == 5:
                self.sim.ctl("POST", "/sim/clock", {"advance": 5})
                for sid in offset_seen[:2]:
                    self.sim.patch("incident", sid, {"description": "again"})
            rows = self.sim.list("incident", filt + order, fields + "&sysparm_offset=%d" % offset).result
            if not rows:
                break
            offset_seen += [r["sys_id"] for r in rows]
            offset += 5
        self.assertNotEqual(set(offset_seen), ids)


# ====================================================================== writing

class WriteTest(SimTestCase):
    def test_post_answers_201_with_location(self):
        r = self.sim.request("POST", "/api/now/table/incident", {"short_description": "x"})
        self.assertEqual(r.status, 201)
        self.assertEqual(r.header("Location"), "http://127.0.0.1:%d/api/now/table/incident/%s"
                         % (self.sim.port, r.result["sys_id"]))

    def test_work_note_appends_a_journal_row_and_reads_back_empty(self):
        rec = self.sim.create(short_description="journal")
        r = self.sim.patch("incident", rec["sys_id"], {"work_notes": "checked identity"})
        self.assertEqual(r.status, 200)
        self.assertEqual((r.result["work_notes"], r.result["sys_mod_count"]), ("", "1"))
        rows = self.sim.list("sys_journal_field", "element_id=" + rec["sys_id"]).result
        self.assertEqual(len(rows), 1)
        row = rows[0]
        self.assertEqual((row["element"], row["element_id"], row["name"], row["value"],
                          row["sys_created_by"]),
                         ("work_notes", rec["sys_id"], "incident", "checked identity", "admin"))
        self.assertRegex(row["sys_created_on"], DATE_RE)
        self.assertEqual(self.sim.get("incident", rec["sys_id"])["work_notes"], "")

    def test_journal_history_with_display_value_is_newest_first(self):
        base = int(time.time()) - 3600
        self.sim.ctl("POST", "/sim/clock", {"set": base})
        rec = self.sim.create(short_description="history")
        self.sim.patch("incident", rec["sys_id"], {"work_notes": "first"})
        self.sim.ctl("POST", "/sim/clock", {"advance": 60})
        self.sim.patch("incident", rec["sys_id"], {"work_notes": "second", "comments": "hello"},
                       auth=INTEGRATION)
        got = self.sim.get("incident", rec["sys_id"], "sysparm_display_value=true")
        t1, t2 = self.sim.list("sys_journal_field", "element_id=%s^element=work_notes^ORDERBY"
                               "sys_created_on" % rec["sys_id"]).result
        self.assertEqual(got["work_notes"],
                         "%s - imper.ai Integration (Work notes)\nsecond\n\n"
                         "%s - System Administrator (Work notes)\nfirst\n\n"
                         % (t2["sys_created_on"], t1["sys_created_on"]))
        self.assertNotEqual(t1["sys_created_on"], t2["sys_created_on"])
        self.assertEqual(got["comments"], "%s - imper.ai Integration (Additional comments)\n"
                                          "hello\n\n" % t2["sys_created_on"])

    def test_real_change_advances_mod_count_and_updated_on(self):
        base = int(time.time()) - 3600
        self.sim.ctl("POST", "/sim/clock", {"set": base})
        rec = self.sim.create(short_description="before")
        self.sim.ctl("POST", "/sim/clock", {"advance": 30})
        got = self.sim.patch("incident", rec["sys_id"], {"short_description": "after"},
                             auth=INTEGRATION).result
        self.assertEqual(got["sys_mod_count"], "1")
        self.assertGreater(got["sys_updated_on"], rec["sys_updated_on"])
        self.assertEqual(got["sys_updated_by"], "imperai.integration")
        self.assertEqual(got["sys_created_on"], rec["sys_created_on"])

    def test_patch_that_changes_nothing_does_not_bump(self):
        rec = self.sim.create(short_description="same", category="software")
        self.sim.ctl("POST", "/sim/clock", {"advance": 30})
        got = self.sim.patch("incident", rec["sys_id"],
                             {"short_description": "same", "category": "software"}).result
        self.assertEqual((got["sys_mod_count"], got["sys_updated_on"]),
                         (rec["sys_mod_count"], rec["sys_updated_on"]))
        methods = [w["method"] for w in self.sim.ctl("GET", "/sim/writes?sys_id=" + rec["sys_id"])]
        self.assertEqual(methods, ["POST"])
        self.sim.ctl("POST", "/sim/settings", {"bump_on_noop": True})
        got = self.sim.patch("incident", rec["sys_id"], {"short_description": "same"}).result
        self.assertEqual(got["sys_mod_count"], "1")

    def test_unknown_and_system_fields_are_ignored_with_200(self):
        rec = self.sim.create(short_description="guarded")
        r = self.sim.patch("incident", rec["sys_id"], {
            "u_no_such": "x", "sys_mod_count": "99", "sys_created_by": "mallory",
            "sys_id": "0" * 32, "sys_updated_on": "2000-01-01 00:00:00"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.result, self.sim.get("incident", rec["sys_id"]))
        self.assertEqual(r.result["sys_mod_count"], "0")
        self.assertNotIn("u_no_such", r.result)

    def test_resolve_or_close_without_close_fields_is_a_403_data_policy(self):
        rec = self.sim.create(short_description="resolve me")
        for state in ("6", "7"):
            r = self.sim.patch("incident", rec["sys_id"], {"state": state})
            body = self.assertError(r, 403, "Operation Failed")
            self.assertTrue(body["error"]["detail"].startswith("Data Policy Exception:"))
            self.assertIn("Close code", body["error"]["detail"])
            self.assertIn("Close notes", body["error"]["detail"])
        r = self.sim.patch("incident", rec["sys_id"], {"state": "6", "close_code": "Solution provided"})
        self.assertEqual(r.status, 403)
        self.assertEqual(self.sim.get("incident", rec["sys_id"])["sys_mod_count"], "0")

    def test_state_active_and_resolution_stamps_follow_the_state(self):
        rec = self.sim.create(short_description="lifecycle")
        got = self.sim.patch("incident", rec["sys_id"], {
            "state": "6", "close_code": "Solution provided", "close_notes": "verified"},
            params="sysparm_exclude_reference_link=true").result
        self.assertEqual((got["state"], got["incident_state"], got["active"]), ("6", "6", "true"))
        self.assertRegex(got["resolved_at"], DATE_RE)
        self.assertRegex(got["resolved_by"], r"^[0-9a-f]{32}$")
        self.assertEqual(got["closed_at"], "")
        got = self.sim.patch("incident", rec["sys_id"], {"state": "7"}).result
        self.assertEqual((got["state"], got["incident_state"], got["active"]), ("7", "7", "false"))
        self.assertRegex(got["closed_at"], DATE_RE)
        other = self.sim.create(short_description="cancel")
        got = self.sim.patch("incident", other["sys_id"], {"incident_state": "8"}).result
        self.assertEqual((got["state"], got["active"]), ("8", "false"))
        ritm = self.sim.create("sc_req_item", short_description="ritm")
        got = self.sim.patch("sc_req_item", ritm["sys_id"], {"state": "3"}).result
        self.assertEqual(got["active"], "false")

    def test_html_field_is_sanitized_on_write(self):
        rec = self.sim.create(short_description="html")
        dirty = ('<p style="x" data-rev="4" onmouseover="steal()">imper.ai - '
                 '<a href="https://imper.ai/send/abc" onclick="x()">Send Verification link</a>'
                 '<!-- rev:4 --><script>steal()</script><a href="javascript:steal()">bad</a></p>')
        got = self.sim.patch("incident", rec["sys_id"], {"u_imperai_verification": dirty}).result
        self.assertEqual(got["u_imperai_verification"],
                         '<p>imper.ai - <a href="https://imper.ai/send/abc">Send Verification link'
                         "</a><a>bad</a></p>")

    def test_x_no_response_body_suppresses_the_body(self):
        rec = self.sim.create(short_description="quiet")
        r = self.sim.patch("incident", rec["sys_id"], {"short_description": "quieter"},
                           headers={"X-no-response-body": "true"})
        self.assertEqual((r.status, r.body), (200, b""))
        self.assertEqual(self.sim.get("incident", rec["sys_id"])["short_description"], "quieter")

    def test_put_updates_like_patch_and_delete_answers_204(self):
        rec = self.sim.create(short_description="put", category="software")
        r = self.sim.request("PUT", "/api/now/table/incident/" + rec["sys_id"],
                             {"short_description": "put2"})
        self.assertEqual((r.status, r.result["category"], r.result["short_description"]),
                         (200, "software", "put2"))
        r = self.sim.request("DELETE", "/api/now/table/incident/" + rec["sys_id"])
        self.assertEqual((r.status, r.body), (204, b""))
        self.assertEqual(self.sim.get("incident", rec["sys_id"]).status, 404)

    def test_patch_of_missing_record_is_404(self):
        r = self.sim.patch("incident", "f" * 32, {"short_description": "x"})
        self.assertError(r, 404, "No Record found")

    def test_invalid_json_is_a_400(self):
        r = self.sim.request("POST", "/api/now/table/incident", b"{not json")
        self.assertError(r, 400, "Exception while reading request")

    def test_user_without_itil_cannot_write(self):
        rec = self.sim.create(short_description="ro")
        r = self.sim.patch("incident", rec["sys_id"], {"short_description": "changed"}, auth=READONLY)
        self.assertError(r, 403, "User Not Authorized", "Failed API level ACL Validation")
        r = self.sim.request("POST", "/api/now/table/incident", {"short_description": "x"},
                             auth=READONLY)
        self.assertEqual(r.status, 403)
        self.assertEqual(self.sim.get("incident", rec["sys_id"], auth=READONLY)["short_description"], "ro")
        self.assertEqual(self.sim.patch("incident", rec["sys_id"], {"work_notes": "ok"},
                                        auth=INTEGRATION).status, 200)

    def test_reference_written_by_name_is_stored_as_sys_id(self):
        rec = self.sim.create(short_description="ref", caller_id="Beth Anglin",
                              assignment_group="Service Desk")
        got = self.sim.get("incident", rec["sys_id"], "sysparm_display_value=all")
        self.assertRegex(got["caller_id"]["value"], r"^[0-9a-f]{32}$")
        self.assertEqual(got["caller_id"]["display_value"], "Beth Anglin")
        self.assertEqual(got["assignment_group"]["display_value"], "Service Desk")

    def test_dictionary_declares_the_html_verification_field(self):
        for table in ("incident", "sc_req_item"):
            rows = self.sim.list("sys_dictionary",
                                 "name=%s^element=u_imperai_verification" % table).result
            self.assertEqual(len(rows), 1, table)
            self.assertEqual((rows[0]["internal_type"], rows[0]["column_label"]),
                             ("html", "imper.ai Verification"))
        rows = self.sim.list("sys_dictionary", "name=incident^element=work_notes").result
        self.assertEqual(rows[0]["internal_type"], "journal_input")

    def test_roles_are_rows_of_sys_user_has_role_and_users_have_a_time_zone(self):
        q = "user.user_name=imperai.integration^state=active"
        rows = self.sim.list("sys_user_has_role", q, "&sysparm_fields=role,role.name,inherited"
                                                     "&sysparm_exclude_reference_link=true").result
        self.assertEqual(sorted(x["role.name"] for x in rows), ["itil", "rest_api_explorer"])
        self.assertTrue(all(re.fullmatch(r"[0-9a-f]{32}", x["role"]) for x in rows))
        self.assertEqual(self.sim.list("sys_user_role", "name=itil").result[0]["name"], "itil")
        users = self.sim.list("sys_user", "user_nameINimperai.integration,readonly,admin",
                              "&sysparm_fields=user_name,time_zone").result
        self.assertEqual({u["user_name"]: u["time_zone"] for u in users},
                         {"imperai.integration": "GMT", "readonly": "America/Los_Angeles",
                          "admin": ""})

    def test_choices_include_custom_categories_and_subcategories(self):
        rows = self.sim.list("sys_choice", "name=incident^element=category^inactive=false").result
        labels = {r["value"]: r["label"] for r in rows}
        for value in ("inquiry", "software", "hardware", "network", "database"):
            self.assertIn(value, labels)
        self.assertEqual((labels["password_reset"], labels["account_access"]),
                         ("Password Reset", "Account Access"))
        rows = self.sim.list("sys_choice", "name=incident^element=subcategory"
                                           "^dependent_value=password_reset").result
        self.assertEqual(sorted(r["value"] for r in rows), ["forgotten_password", "locked_account"])
        self.assertTrue(self.sim.list("sys_choice", "name=incident^element=close_code").result)

    def test_concurrent_writes_are_serialized(self):
        rec = self.sim.create(short_description="busy")
        errors = []

        def note(i):
            r = self.sim.patch("incident", rec["sys_id"], {"work_notes": "note %d" % i})
            if r.status != 200:
                errors.append(r.status)
        threads = [threading.Thread(target=note, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(self.sim.get("incident", rec["sys_id"])["sys_mod_count"], "16")
        self.assertEqual(len(self.sim.ctl("GET", "/sim/journal?table=incident&sys_id="
                                          + rec["sys_id"])), 16)

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        try:
            rec = self.sim.request("POST", "/api/now/table/incident", {"short_description": "ka"},
                                   conn=conn).result
            for _ in range(5):
                r = self.sim.request("GET", "/api/now/table/incident/" + rec["sys_id"], conn=conn)
                self.assertEqual(r.status, 200)
            r = self.sim.request("GET", "/api/now/table/nope", conn=conn)
            self.assertEqual(r.status, 400)
            self.assertEqual(self.sim.request("GET", "/sim/health", conn=conn).status, 200)
        finally:
            conn.close()


class DictionaryInsertTest(SimTestCase):
    """imperai-snowctl setup --create-field creates the field this way."""
    sim_args = ("--no-verification-field",)

    FIELD = {"name": "incident", "element": "u_imperai_verification",
             "column_label": "imper.ai Verification", "internal_type": "html",
             "max_length": 65000}

    def test_dictionary_insert_needs_admin_then_creates_a_column_that_keeps_writes(self):
        r = self.sim.request("POST", "/api/now/table/sys_dictionary", self.FIELD, auth=INTEGRATION)
        self.assertError(r, 403, "User Not Authorized")
        rec = self.sim.create(short_description="before the field")
        self.sim.create("sys_dictionary", **self.FIELD)
        rows = self.sim.list("sys_dictionary", "name=incident^element=u_imperai_verification").result
        self.assertEqual([(x["internal_type"], x["max_length"]) for x in rows], [("html", "65000")])
        r = self.sim.patch("incident", rec["sys_id"],
                           {"u_imperai_verification": "<p>ok<script>x</script></p>"},
                           auth=INTEGRATION)
        self.assertEqual(r.result["u_imperai_verification"], "<p>ok</p>")
        self.assertEqual(r.result["sys_mod_count"], "1")


class NoVerificationFieldTest(SimTestCase):
    sim_args = ("--no-verification-field",)

    def test_writes_to_the_missing_field_are_silently_ignored(self):
        rec = self.sim.create(short_description="nofield")
        self.assertNotIn("u_imperai_verification", rec)
        r = self.sim.patch("incident", rec["sys_id"], {"u_imperai_verification": "<p>x</p>"})
        self.assertEqual((r.status, r.result["sys_mod_count"]), (200, "0"))
        self.assertEqual(self.sim.list("sys_dictionary",
                                       "name=incident^element=u_imperai_verification").result, [])
        self.assertEqual(len(self.sim.list("sys_dictionary",
                                           "name=sc_req_item^element=u_imperai_verification").result), 1)


# ====================================================================== auth

class AuthTest(SimTestCase):
    def token(self, **form):
        body = dict(CLIENT, grant_type="password", username=INTEGRATION[0], password=INTEGRATION[1])
        body.update(form)
        return self.sim.request("POST", "/oauth_token.do", auth=None, form=body)

    def test_missing_or_wrong_credentials_401(self):
        for auth in (None, ("admin", "wrong"), ("nobody", "x")):
            r = self.sim.request("GET", "/api/now/table/incident", auth=auth)
            self.assertError(r, 401, "User Not Authenticated", "Required to provide Auth information")
            self.assertEqual(r.header("WWW-Authenticate"), 'BASIC realm="Service-now"')

    def test_password_grant_returns_a_bearer_token_that_works(self):
        r = self.token()
        self.assertEqual(r.status, 200)
        tok = r.json()
        self.assertEqual((tok["token_type"], tok["expires_in"]), ("Bearer", 1799))
        self.assertTrue(tok["access_token"] and tok["refresh_token"] and "scope" in tok)
        rec = self.sim.create(short_description="oauth")
        r = self.sim.bearer("PATCH", "/api/now/table/incident/" + rec["sys_id"],
                            tok["access_token"], {"work_notes": "via oauth"})
        self.assertEqual((r.status, r.result["sys_updated_by"]), (200, "imperai.integration"))

    def test_access_token_expires_and_refresh_grant_renews_it(self):
        tok = self.token().json()
        self.sim.ctl("POST", "/sim/clock", {"advance": 1801})
        r = self.sim.bearer("GET", "/api/now/table/incident?sysparm_limit=1", tok["access_token"])
        self.assertError(r, 401, "User Not Authenticated")
        r = self.sim.request("POST", "/oauth_token.do", auth=None, form=dict(
            CLIENT, grant_type="refresh_token", refresh_token=tok["refresh_token"]))
        self.assertEqual(r.status, 200)
        new = r.json()["access_token"]
        self.assertNotEqual(new, tok["access_token"])
        self.assertEqual(self.sim.bearer("GET", "/api/now/table/incident?sysparm_limit=1", new).status, 200)

    def test_token_lifetime_is_configurable(self):
        self.sim.ctl("POST", "/sim/settings", {"token_ttl": 60})
        tok = self.token().json()
        self.assertEqual(tok["expires_in"], 59)
        self.sim.ctl("POST", "/sim/clock", {"advance": 61})
        self.assertEqual(self.sim.bearer("GET", "/api/now/table/incident", tok["access_token"]).status, 401)

    def test_oauth_failures_answer_the_real_error(self):
        expected = {"error_description": "access_denied", "error": "server_error"}
        for form in ({"client_secret": "wrong"}, {"password": "wrong"},
                     {"grant_type": "refresh_token", "refresh_token": "bogus"}):
            r = self.token(**form)
            self.assertEqual((r.status, r.json()), (401, expected), form)

    def test_client_credentials_grant_is_switchable_and_has_no_refresh_token(self):
        form = dict(CLIENT, grant_type="client_credentials")
        r = self.sim.request("POST", "/oauth_token.do", auth=None, form=form)
        self.assertEqual((r.status, r.json()),
                         (401, {"error_description": "access_denied", "error": "server_error"}))
        self.sim.ctl("POST", "/sim/settings", {"client_credentials": True})
        r = self.sim.request("POST", "/oauth_token.do", auth=None, form=form)
        self.assertEqual(r.status, 200)
        self.assertNotIn("refresh_token", r.json())
        rec = self.sim.create(short_description="cc")
        r = self.sim.bearer("PATCH", "/api/now/table/incident/" + rec["sys_id"],
                            r.json()["access_token"], {"short_description": "cc2"})
        self.assertEqual(r.status, 200)

    def test_session_cookies_are_set_and_reused(self):
        self.sim.ctl("POST", "/sim/stats/reset")
        first = None
        for _ in range(3):
            r = self.sim.request("GET", "/api/now/table/incident?sysparm_limit=1")
            cookies = r.cookies()
            self.assertTrue({"JSESSIONID", "glide_user_route", "glide_session_store"} <= set(cookies))
            first = first or cookies
        self.assertEqual(self.sim.ctl("GET", "/sim/stats")["sessions_created"], 3)
        jar = "; ".join("%s=%s" % kv for kv in first.items())
        for auth in (ADMIN, None):  # with credentials, or with the cookie alone
            r = self.sim.request("GET", "/api/now/table/incident?sysparm_limit=1", auth=auth,
                                 headers={"Cookie": jar})
            self.assertEqual(r.status, 200)
            self.assertEqual(r.cookies(), {})
        self.assertEqual(self.sim.ctl("GET", "/sim/stats")["sessions_created"], 3)
        self.sim.ctl("POST", "/sim/clock", {"advance": 1801})  # idle session expired
        r = self.sim.request("GET", "/api/now/table/incident", auth=None, headers={"Cookie": jar})
        self.assertEqual(r.status, 401)


# ====================================================================== rate limits

class RateLimitTest(SimTestCase):
    def get(self, auth=INTEGRATION):
        return self.sim.request("GET", "/api/now/table/incident?sysparm_limit=1", auth=auth)

    def test_headers_and_429_over_the_limit(self):
        self.sim.ctl("POST", "/sim/ratelimit", {"limit": 3, "lag": 0})
        now = self.sim.ctl("GET", "/sim/clock")["now"]
        for _ in range(3):
            r = self.get()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-RateLimit-Limit"), "3")
            self.assertEqual(int(r.header("X-RateLimit-Reset")), (int(now) // 3600 + 1) * 3600)
            self.assertRegex(r.header("X-RateLimit-Rule"), r"^[0-9a-f]{32}$")
            self.assertIsNone(r.header("X-RateLimit-Remaining"))
        r = self.get()
        self.assertError(r, 429, "Rate limit exceeded",
                         "Rate limit of 3 requests per hour for Table API exceeded")
        self.assertTrue(0 < int(r.header("Retry-After")) <= 3600)
        self.assertEqual(self.get(auth=ADMIN).status, 200)  # counted per user

    def test_enforcement_lags_until_counts_are_committed(self):
        self.sim.ctl("POST", "/sim/ratelimit", {"limit": 3, "lag": 30})
        self.sim.ctl("POST", "/sim/clock", {"set": (int(time.time()) // 3600) * 3600 + 60})
        statuses = [self.get().status for _ in range(6)]
        self.assertEqual(statuses, [200] * 6)  # over the limit, not yet committed
        self.sim.ctl("POST", "/sim/clock", {"advance": 30})
        self.assertEqual(self.get().status, 429)

    def test_window_resets_at_the_next_hour(self):
        self.sim.ctl("POST", "/sim/ratelimit", {"limit": 1, "lag": 0})
        self.assertEqual(self.get().status, 200)
        r = self.get()
        self.assertEqual(r.status, 429)
        self.sim.ctl("POST", "/sim/clock", {"advance": int(r.header("Retry-After"))})
        self.assertEqual(self.get().status, 200)


# ====================================================================== faults

class FaultTest(SimTestCase):
    def setUp(self):
        super().setUp()
        self.rec = self.sim.create(short_description="fault target")
        self.path = "/api/now/table/incident/" + self.rec["sys_id"]

    def faults(self, **cfg):
        return self.sim.ctl("POST", "/sim/faults", cfg)

    def writes(self):
        return self.sim.ctl("GET", "/sim/writes?table=incident&sys_id=" + self.rec["sys_id"])

    def test_added_latency(self):
        self.faults(latency_ms=200, jitter_ms=20)
        start = time.monotonic()
        self.assertEqual(self.sim.request("GET", self.path).status, 200)
        self.assertGreaterEqual(time.monotonic() - start, 0.17)

    def test_error_answers_do_not_apply_the_write(self):
        self.faults(error_rate=1.0, error_codes=[503])
        r = self.sim.patch("incident", self.rec["sys_id"], {"short_description": "x"})
        self.assertEqual(r.status, 503)
        self.assertTrue(r.header("Content-Type").startswith("text/html"))
        self.faults(error_rate=1.0, error_codes=[500])
        r = self.sim.patch("incident", self.rec["sys_id"], {"short_description": "x"})
        self.assertEqual(r.json()["status"], "failure")
        self.assertEqual(len(self.writes()), 1)

    def test_429_bursts_with_retry_after(self):
        rng = random.Random(1)
        self.assertLess(rng.random(), 0.2)   # the seeded first draw starts a burst
        self.assertGreater(rng.random(), 0.2)  # the draw after the burst does not
        self.faults(rate_429=0.2, burst_429=3, retry_after=7, seed=1)
        replies = [self.sim.request("GET", self.path) for _ in range(4)]
        self.assertEqual([r.status for r in replies], [429, 429, 429, 200])
        self.assertEqual(replies[0].header("Retry-After"), "7")
        self.assertEqual(replies[0].json()["error"]["message"], "Rate limit exceeded")

    def test_html_answer_of_a_hibernating_instance(self):
        self.faults(html_rate=1.0)
        r = self.sim.request("GET", self.path)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/html"))
        self.assertIn(b"hibernating", r.body)

    def test_reset_before_processing_loses_the_write(self):
        self.faults(reset_rate=1.0, methods=["PATCH"])
        with self.assertRaises(DROPPED):
            self.sim.patch("incident", self.rec["sys_id"], {"short_description": "lost"})
        self.assertEqual([w["method"] for w in self.writes()], ["POST"])
        self.assertEqual(self.sim.get("incident", self.rec["sys_id"])["short_description"],
                         "fault target")

    def test_apply_then_drop_applies_the_write_without_answering(self):
        self.faults(apply_then_drop_rate=1.0, methods=["PATCH"])
        with self.assertRaises(DROPPED):
            self.sim.patch("incident", self.rec["sys_id"],
                           {"u_imperai_verification": "<p>rev 1</p>", "work_notes": "link ready"})
        writes = self.writes()
        self.assertEqual([w["method"] for w in writes], ["POST", "PATCH"])
        self.assertEqual(writes[1]["fields"], {"u_imperai_verification": "<p>rev 1</p>",
                                               "work_notes": "link ready"})
        self.assertEqual(writes[1]["mod_count"], 1)
        self.assertEqual(self.sim.get("incident", self.rec["sys_id"])["u_imperai_verification"],
                         "<p>rev 1</p>")
        self.assertEqual(self.sim.ctl("GET", "/sim/stats")["faults"]["apply_then_drop"], 1)

    def test_slow_answer_outlasts_the_client_timeout_but_the_write_lands(self):
        self.faults(slow_rate=1.0, slow_ms=3000, methods=["PATCH"])
        with self.assertRaises(socket.timeout):
            self.sim.request("PATCH", self.path, {"short_description": "slow"}, timeout=0.5)
        self.assertEqual(self.writes()[-1]["fields"], {"short_description": "slow"})

    def test_slow_body_trickles_a_complete_answer(self):
        self.faults(slow_body_rate=1.0, slow_body_ms=400)
        start = time.monotonic()
        r = self.sim.request("GET", self.path)
        self.assertGreaterEqual(time.monotonic() - start, 0.3)
        self.assertEqual(r.result["sys_id"], self.rec["sys_id"])

    def test_malformed_json_answer(self):
        self.faults(malformed_rate=1.0)
        r = self.sim.request("GET", self.path)
        self.assertEqual(r.status, 200)
        with self.assertRaises(ValueError):
            json.loads(r.body)

    def test_faults_restricted_by_method_and_path_prefix(self):
        self.faults(error_rate=1.0, error_codes=[500], methods=["PATCH"],
                    path_prefix="/api/now/table/incident")
        self.assertEqual(self.sim.request("GET", self.path).status, 200)
        ritm = self.sim.create("sc_req_item", short_description="r")
        self.assertEqual(self.sim.patch("sc_req_item", ritm["sys_id"], {"stage": "x"}).status, 200)
        self.assertEqual(self.sim.patch("incident", self.rec["sys_id"], {"stage": "x"}).status, 500)

    def test_seeded_faults_repeat(self):
        def run():
            self.faults(error_rate=0.5, error_codes=[500, 503], seed=42)
            return [self.sim.request("GET", self.path).status for _ in range(20)]
        first = run()
        self.assertEqual(run(), first)
        self.assertTrue({200, 500} <= set(first) or {200, 503} <= set(first))

    def test_faults_spare_control_api_and_oauth_unless_asked(self):
        self.faults(error_rate=1.0, error_codes=[500])
        form = dict(CLIENT, grant_type="password", username=INTEGRATION[0], password=INTEGRATION[1])
        self.assertEqual(self.sim.request("GET", "/sim/health", auth=None).status, 200)
        self.assertEqual(self.sim.request("POST", "/oauth_token.do", auth=None, form=form).status, 200)
        self.faults(error_rate=1.0, error_codes=[500], include_oauth=True)
        self.assertEqual(self.sim.request("POST", "/oauth_token.do", auth=None, form=form).status, 500)

    def test_fault_config_round_trips_and_rejects_unknown_keys(self):
        cfg = self.faults(latency_ms=5, methods=["patch"])
        self.assertEqual(self.sim.ctl("GET", "/sim/faults"), cfg)
        self.assertEqual((cfg["methods"], cfg["error_rate"], cfg["apply_then_drop_rate"]),
                         (["PATCH"], 0.0, 0.0))
        r = self.sim.request("POST", "/sim/faults", {"eror_rate": 1}, auth=None)
        self.assertEqual(r.status, 400)

    def test_client_errors_hit_one_path_and_count_retries(self):
        self.faults(client_error_rate=1.0, client_error_codes=[403],
                    client_error_path="/api/now/table/incident")
        listing = "/api/now/table/incident?sysparm_limit=1"
        r = self.sim.request("GET", listing)
        self.assertEqual((r.status, r.json()["error"]["message"]), (403, "User Not Authorized"))
        self.assertEqual(self.sim.request("GET", self.path).status, 200)  # another path
        self.assertEqual(self.sim.patch("incident", self.rec["sys_id"],
                                        {"short_description": "y"}).status, 200)  # PATCH
        stats = self.sim.ctl("GET", "/sim/stats")
        self.assertEqual((stats["faults"]["client_error"], stats.get("client_error_repeats", 0)),
                         (1, 0))
        self.sim.request("GET", listing)  # the same request at once: a retry
        self.assertEqual(self.sim.ctl("GET", "/sim/stats")["client_error_repeats"], 1)
        r = self.sim.request("POST", "/sim/faults", {"client_error_codes": [500]}, auth=None)
        self.assertEqual(r.status, 400)

    def test_faults_set_on_the_command_line(self):
        sim = Sim("--faults", '{"error_rate": 1.0, "error_codes": [502]}',
                  "--fault", "methods=[\"GET\"]").start()
        try:
            self.assertEqual(sim.request("GET", "/api/now/table/incident").status, 502)
            self.assertEqual(sim.ctl("GET", "/sim/faults")["methods"], ["GET"])
        finally:
            sim.cleanup()


# ====================================================================== control API

class ScriptTest(SimTestCase):
    """/sim/script: raw answers for the next matching requests, recorded."""

    def setUp(self):
        super().setUp()
        self.sim.ctl("POST", "/sim/script", {"clear": True})

    def test_scripted_answers_come_in_order_then_the_real_one(self):
        rec = self.sim.create(short_description="scripted")
        self.sim.ctl("POST", "/sim/script", {"method": "GET", "path": "/api/now/table/incident",
                                             "answers": [
            {"status": 200, "body": "{\"result\":[{", "headers": [["Link", "<http://x/>"]]},
            {"status": 200, "body_b64": base64.b64encode(b"\xff\x00").decode()},
            {"size": 300000, "prefix": "{\"result\":[", "suffix": "]}", "fill": " "},
            {"pass": True}]})
        r = self.sim.request("GET", "/api/now/table/incident?sysparm_limit=1")
        self.assertEqual((r.status, r.body, r.header("Link")), (200, b'{"result":[{', "<http://x/>"))
        self.assertEqual(self.sim.request("GET", "/api/now/table/incident").body, b"\xff\x00")
        r = self.sim.request("GET", "/api/now/table/incident")
        self.assertEqual((len(r.body), r.json()), (300013, {"result": []}))
        r = self.sim.request("GET", "/api/now/table/incident?sysparm_query=sys_id=" + rec["sys_id"])
        self.assertEqual([x["sys_id"] for x in r.result], [rec["sys_id"]])
        state = self.sim.ctl("GET", "/sim/script")
        self.assertEqual(state["rules"], [])
        self.assertEqual([s["target"] for s in state["seen"]][0],
                         "/api/now/table/incident?sysparm_limit=1")
        self.assertIn(["Authorization", "Basic YWRtaW46YWRtaW4="], state["seen"][0]["headers"])

    def test_apply_processes_the_request_and_answers_the_script(self):
        rec = self.sim.create(short_description="apply")
        self.sim.ctl("POST", "/sim/script", {"method": "PATCH", "path_prefix": "/api/now/table/",
                                             "answers": [{"status": 502, "apply": True}]})
        r = self.sim.patch("incident", rec["sys_id"], {"short_description": "applied"})
        self.assertEqual((r.status, r.body), (502, b""))
        self.assertEqual(self.sim.get("incident", rec["sys_id"])["short_description"], "applied")
        self.assertEqual(self.sim.ctl("GET", "/sim/script")["seen"][0]["body"],
                         '{"short_description": "applied"}')

    def test_a_bad_rule_is_refused_naming_the_key(self):
        for rule, word in (({"path": "/x", "answers": [{"stauts": 200}]}, "stauts"),
                           ({"path": "/x", "answers": []}, "answers"),
                           ({"answers": [{}]}, "path"),
                           ({"path": "/x", "answers": [{"body": "a", "size": 3}]}, "at most one")):
            r = self.sim.request("POST", "/sim/script", rule, auth=None)
            self.assertEqual(r.status, 400, rule)
            self.assertIn(word, r.json()["error"])


class ControlTest(SimTestCase):
    def test_stats_count_per_template_and_status(self):
        rec = self.sim.create(short_description="stats")
        self.sim.ctl("POST", "/sim/stats/reset")
        self.sim.request("GET", "/api/now/table/incident?sysparm_limit=1")
        self.sim.request("GET", "/api/now/v2/table/incident/" + rec["sys_id"])
        self.sim.patch("incident", rec["sys_id"], {"work_notes": "x"})
        self.sim.patch("incident", rec["sys_id"], {"work_notes": "y"}, auth=None)
        stats = self.sim.ctl("GET", "/sim/stats")
        self.assertEqual(stats["requests"], {"GET /api/now/table/incident": 1,
                                             "GET /api/now/v2/table/incident/{sys_id}": 1,
                                             "PATCH /api/now/table/incident/{sys_id}": 2})
        self.assertEqual(stats["by_status"], {"200": 3, "401": 1})
        self.assertEqual(stats["total"], 4)
        stats = self.sim.ctl("POST", "/sim/stats/reset")
        self.assertEqual((stats["requests"], stats["total"], stats["sessions_created"]), ({}, 0, 0))

    def test_bulk_ticket_creation_is_fast(self):
        T = self.tag()
        start = time.monotonic()
        out = self.sim.ctl("POST", "/sim/tickets", {"table": "incident", "count": 5000,
                                                    "caller": "abel.tuter",
                                                    "fields": {"short_description": T,
                                                               "category": "password_reset"}})
        self.assertLess(time.monotonic() - start, 2.0)
        tickets = out["tickets"]
        self.assertEqual(len({t["number"] for t in tickets}), 5000)
        self.assertTrue(all(re.fullmatch(r"INC\d{7}", t["number"]) for t in tickets))
        r = self.sim.list("incident", "short_descriptionSTARTSWITH" + T,
                          "&sysparm_limit=1&sysparm_fields=caller_id.user_name,category")
        self.assertEqual(r.header("X-Total-Count"), "5000")
        self.assertEqual(r.result, [{"caller_id.user_name": "abel.tuter", "category": "password_reset"}])

    def test_update_is_an_agent_edit_outside_faults_and_stats(self):
        rec = self.sim.create(short_description="edit me")
        self.sim.ctl("POST", "/sim/faults", {"error_rate": 1.0})
        self.sim.ctl("POST", "/sim/stats/reset")
        out = self.sim.ctl("POST", "/sim/update", {"sys_id": rec["sys_id"], "user": "itil.agent",
                                                   "fields": {"caller_id": "beth.anglin",
                                                              "work_notes": "called back"}})
        self.sim.ctl("POST", "/sim/faults", {})
        self.assertEqual(out["result"]["sys_mod_count"], "1")
        self.assertEqual(self.sim.ctl("GET", "/sim/stats")["total"], 0)
        last = self.sim.ctl("GET", "/sim/writes?sys_id=" + rec["sys_id"])[-1]
        self.assertEqual((last["method"], last["user"], last["fields"]["work_notes"]),
                         ("PATCH", "itil.agent", "called back"))
        self.assertEqual(self.sim.get("incident", rec["sys_id"],
                                      "sysparm_fields=caller_id.user_name")["caller_id.user_name"],
                         "beth.anglin")
        r = self.sim.request("POST", "/sim/update", {"sys_id": rec["sys_id"],
                                                     "fields": {"state": "6"}}, auth=None)
        self.assertEqual(r.status, 403)  # close fields are mandatory, as in the form
        r = self.sim.request("POST", "/sim/update", {"sys_id": "0" * 32, "fields": {}}, auth=None)
        self.assertEqual(r.status, 404)

    def test_clock_drives_record_timestamps(self):
        state = self.sim.ctl("POST", "/sim/clock", {"set": 1764000000})
        self.assertEqual(int(state["now"]), 1764000000)
        rec = self.sim.create(short_description="clock")
        self.assertEqual(rec["sys_created_on"], fmt(1764000000))
        state = self.sim.ctl("POST", "/sim/clock", {"advance": 3600})
        self.assertEqual(int(state["now"]), 1764003600)
        rec = self.sim.patch("incident", rec["sys_id"], {"short_description": "later"}).result
        self.assertEqual(rec["sys_updated_on"], fmt(1764003600))

    def test_dump_holds_tables_journal_and_users(self):
        rec = self.sim.create(short_description="dump", work_notes="dumped")
        dump = self.sim.ctl("GET", "/sim/dump")
        self.assertIn(rec["sys_id"], {r["sys_id"] for r in dump["tables"]["incident"]})
        self.assertIn("dumped", [j["value"] for j in dump["journal"]])
        users = {u["user_name"]: u for u in dump["users"]}
        self.assertEqual(users["imperai.integration"]["roles"], ["itil", "rest_api_explorer"])

    def test_journal_endpoint_lists_entries_oldest_first(self):
        rec = self.sim.create(short_description="j")
        for text in ("one", "two"):
            self.sim.patch("incident", rec["sys_id"], {"work_notes": text}, auth=INTEGRATION)
        got = self.sim.ctl("GET", "/sim/journal?table=incident&sys_id=" + rec["sys_id"])
        self.assertEqual([(e["element"], e["value"], e["sys_created_by"]) for e in got],
                         [("work_notes", "one", "imperai.integration"),
                          ("work_notes", "two", "imperai.integration")])
        self.assertLessEqual(got[0]["created_ms"], got[1]["created_ms"])
        self.assertLess(abs(got[1]["created_ms"] / 1000 - time.time()), 60)
        self.assertRegex(got[0]["sys_created_on"], DATE_RE)

    def test_writes_endpoint_lists_applied_writes_in_order(self):
        rec = self.sim.create(short_description="w", category="software")
        self.sim.patch("incident", rec["sys_id"], {"category": "hardware", "work_notes": "moved"})
        ws = self.sim.ctl("GET", "/sim/writes?table=incident&sys_id=" + rec["sys_id"])
        self.assertEqual([(w["method"], w["mod_count"], w["number"]) for w in ws],
                         [("POST", 0, rec["number"]), ("PATCH", 1, rec["number"])])
        self.assertEqual(ws[1]["fields"], {"category": "hardware", "work_notes": "moved"})
        self.assertEqual(ws[0]["fields"]["short_description"], "w")
        self.assertLessEqual(ws[0]["at_ms"], ws[1]["at_ms"])
        everything = self.sim.ctl("GET", "/sim/writes?table=incident")
        self.assertGreaterEqual(len(everything), 2)

    def test_settings_reject_unknown_keys(self):
        r = self.sim.request("POST", "/sim/settings", {"no_such": 1}, auth=None)
        self.assertEqual(r.status, 400)
        self.assertEqual(self.sim.ctl("GET", "/sim/settings")["unknown_field_mode"], "ignore")


# ====================================================================== a real instance's ways

class RealInstanceTest(SimTestCase):
    """Switchable behaviours of real instances the daemon must survive:
    commit lag, field ACLs, a proxy's HTML page, references stored as given."""

    def group_sys_id(self, name):
        r = self.sim.list("sys_user_group", "name=" + name, "&sysparm_fields=sys_id")
        return r.result[0]["sys_id"]

    def test_commit_lag_shows_a_new_row_late_with_its_earlier_updated_on(self):
        T = self.tag()
        self.sim.ctl("POST", "/sim/settings", {"commit_lag": 8})
        t0 = self.sim.ctl("GET", "/sim/clock")["now"]
        made = self.sim.ctl("POST", "/sim/tickets", {"count": 2, "fields": {"short_description": T}})
        self.assertEqual(self.sim.numbers("short_description=" + T), [])
        hidden = self.sim.get("incident", made["tickets"][0]["sys_id"])
        self.assertEqual(hidden.status, 404)
        self.sim.ctl("POST", "/sim/clock", {"advance": 9})
        r = self.sim.list("incident", "short_description=" + T, "&sysparm_fields=sys_updated_on")
        self.assertEqual(len(r.result), 2)
        self.assertLessEqual(r.result[0]["sys_updated_on"], fmt(t0 + 1))

    def test_commit_lag_keeps_the_previous_version_of_an_agent_edit_visible(self):
        rec = self.sim.create(short_description="before")
        self.sim.ctl("POST", "/sim/settings", {"commit_lag": 5})
        self.sim.ctl("POST", "/sim/update", {"sys_id": rec["sys_id"],
                                             "fields": {"short_description": "after"}})
        self.assertEqual(self.sim.get("incident", rec["sys_id"])["short_description"], "before")
        self.sim.ctl("POST", "/sim/clock", {"advance": 6})
        got = self.sim.get("incident", rec["sys_id"])
        self.assertEqual((got["short_description"], got["sys_mod_count"]), ("after", "1"))

    def test_commit_lag_spares_the_writers_own_patch(self):
        rec = self.sim.create(short_description="mine")
        self.sim.ctl("POST", "/sim/settings", {"commit_lag": 30})
        r = self.sim.patch("incident", rec["sys_id"], {"short_description": "patched"},
                           auth=INTEGRATION)
        self.assertEqual(r.status, 200)
        self.assertEqual(self.sim.get("incident", rec["sys_id"])["short_description"], "patched")

    def test_field_acl_blanks_dot_walked_requester_fields(self):
        rec = self.sim.create(short_description="acl", caller_id="abel.tuter")
        self.sim.ctl("POST", "/sim/settings", {"field_acl": {"imperai.integration": [
            "sys_user.name", "sys_user.email", "sys_user.user_name"]}})
        fields = "sysparm_fields=caller_id,caller_id.name,caller_id.email,caller_id.user_name"
        got = self.sim.get("incident", rec["sys_id"], fields, auth=INTEGRATION)
        self.assertEqual((got["caller_id.name"], got["caller_id.email"],
                          got["caller_id.user_name"]), ("", "", ""))
        self.assertRegex(got["caller_id"]["value"], "^[0-9a-f]{32}$")  # the reference stays
        admin = self.sim.get("incident", rec["sys_id"], fields)
        self.assertEqual(admin["caller_id.email"], "abel.tuter@example.com")
        r = self.sim.list("incident", "sys_id=" + rec["sys_id"],
                          "&sysparm_display_value=all&sysparm_fields=caller_id.email",
                          auth=INTEGRATION)
        self.assertEqual(r.result[0]["caller_id.email"], {"display_value": "", "value": ""})

    def test_field_acl_setting_is_checked(self):
        r = self.sim.request("POST", "/sim/settings", {"field_acl": {"x": ["no_table_dot"]}},
                             auth=None)
        self.assertEqual(r.status, 400)

    def test_proxy_answers_the_next_record_gets_with_html_unprocessed(self):
        rec = self.sim.create(short_description="proxy")
        path = "/api/now/table/incident/" + rec["sys_id"]
        self.sim.ctl("POST", "/sim/faults", {"proxy_count": 2, "proxy_status": 400})
        self.sim.ctl("POST", "/sim/stats/reset")
        listed = self.sim.list("incident", "sys_id=" + rec["sys_id"])
        self.assertEqual(listed.status, 200)  # a list is not a single record
        for _ in range(2):
            r = self.sim.request("GET", path)
            self.assertEqual(r.status, 400)
            self.assertTrue(r.header("Content-Type").startswith("text/html"))
            self.assertIn(b"400 Bad Request", r.body)
        self.assertEqual(self.sim.request("GET", path).status, 200)
        self.assertEqual(self.sim.patch("incident", rec["sys_id"], {"work_notes": "x"}).status,
                         200)
        self.assertEqual(self.sim.ctl("GET", "/sim/stats")["faults"], {"proxy_html": 2})

    def test_proxy_rate_may_hit_writes_too(self):
        rec = self.sim.create(short_description="proxy write")
        self.sim.ctl("POST", "/sim/faults", {"proxy_rate": 1.0, "proxy_methods": ["PATCH"],
                                             "proxy_status": 403})
        r = self.sim.patch("incident", rec["sys_id"], {"short_description": "changed"})
        self.assertEqual(r.status, 403)
        self.assertTrue(r.header("Content-Type").startswith("text/html"))
        self.sim.ctl("POST", "/sim/faults", {})
        self.assertEqual(self.sim.get("incident", rec["sys_id"])["short_description"], "proxy write")

    def test_reference_by_name_stored_as_given_displays_empty(self):
        rec = self.sim.create(short_description="ref")
        self.sim.ctl("POST", "/sim/settings", {"reference_input": "as_given"})
        self.sim.patch("incident", rec["sys_id"], {"assignment_group": "Service Desk Security"})
        got = self.sim.get("incident", rec["sys_id"],
                           "sysparm_display_value=all&sysparm_fields=assignment_group,"
                           "assignment_group.name")
        self.assertEqual(got["assignment_group"]["value"], "Service Desk Security")
        self.assertEqual(got["assignment_group"]["display_value"], "")
        self.assertEqual(got["assignment_group.name"]["value"], "")

    def test_input_display_value_resolves_a_reference_name(self):
        rec = self.sim.create(short_description="ref dv")
        self.sim.ctl("POST", "/sim/settings", {"reference_input": "as_given"})
        r = self.sim.patch("incident", rec["sys_id"], {"assignment_group": "Service Desk Security"},
                           params="sysparm_input_display_value=true")
        self.assertEqual(r.result["assignment_group"]["value"],
                         self.group_sys_id("Service Desk Security"))
        self.sim.patch("incident", rec["sys_id"],
                       {"assignment_group": self.group_sys_id("Service Desk")})
        got = self.sim.get("incident", rec["sys_id"], "sysparm_display_value=true")
        self.assertEqual(got["assignment_group"]["display_value"], "Service Desk")


class RealInstanceFlagsTest(unittest.TestCase):
    def test_command_line_switches_the_behaviours(self):
        sim = Sim("--commit-lag", "8", "--reference-input", "as_given", "--field-acl",
                  "imperai.integration=sys_user.name,sys_user.email",
                  "--fault", "proxy_count=3").start()
        try:
            settings = sim.ctl("GET", "/sim/settings")
            self.assertEqual((settings["commit_lag"], settings["reference_input"],
                              settings["field_acl"]),
                             (8, "as_given",
                              {"imperai.integration": ["sys_user.name", "sys_user.email"]}))
            self.assertEqual(sim.ctl("GET", "/sim/faults")["proxy_count"], 3)
        finally:
            sim.cleanup()


# ====================================================================== agent view

class AgentViewTest(SimTestCase):
    def page(self, path):
        r = self.sim.request("GET", path, auth=None)
        return r.status, r.body.decode()

    def test_list_links_every_ticket(self):
        inc = self.sim.create(short_description="agent list")
        ritm = self.sim.create("sc_req_item", short_description="agent ritm")
        status, html = self.page("/")
        self.assertEqual(status, 200)
        self.assertIn('href="/incident.do?sys_id=%s">%s<' % (inc["sys_id"], inc["number"]), html)
        self.assertIn('href="/sc_req_item.do?sys_id=%s">%s<' % (ritm["sys_id"], ritm["number"]), html)

    def test_form_shows_the_sanitized_field_state_and_history(self):
        base = int(time.time()) - 3600
        self.sim.ctl("POST", "/sim/clock", {"set": base})
        rec = self.sim.create(short_description="Locked out <b>", caller_id="abel.tuter",
                              category="password_reset", subcategory="locked_account",
                              work_notes="older note")
        self.sim.ctl("POST", "/sim/clock", {"advance": 60})
        self.sim.patch("incident", rec["sys_id"], {
            "work_notes": "newer note",
            "u_imperai_verification": '<p>imper.ai - <a href="https://imper.ai/s/1">Send '
                                      'Verification link</a></p><script>x()</script>'})
        status, html = self.page("/incident.do?sys_id=" + rec["sys_id"])
        self.assertEqual(status, 200)
        field = re.search(r'<div id="imperai-verification"[^>]*>(.*?)</div>', html, re.S).group(1)
        self.assertEqual(field, '<p>imper.ai - <a href="https://imper.ai/s/1">Send Verification '
                                'link</a></p>')
        self.assertNotIn("<script", html)
        self.assertRegex(html, r'<td id="state">New</td>')
        self.assertRegex(html, r'<td id="caller">Abel Tuter</td>')
        self.assertRegex(html, r'<td id="category">Password Reset</td>')
        self.assertRegex(html, r'<td id="subcategory">Locked Account</td>')
        self.assertIn("Locked out &lt;b&gt;", html)
        self.assertIn("imper.ai Verification", html)
        notes = re.search(r'<div id="work-notes">(.*?)</div></div></div>', html, re.S).group(1)
        self.assertLess(notes.index("newer note"), notes.index("older note"))

    def test_requested_item_form_and_nav_to(self):
        ritm = self.sim.create("sc_req_item", short_description="ritm form",
                               requested_for="beth.anglin")
        status, html = self.page("/sc_req_item.do?sys_id=" + ritm["sys_id"])
        self.assertEqual(status, 200)
        self.assertIn('<td id="caller">Beth Anglin</td>', html)
        self.assertIn('id="imperai-verification"', html)
        r = self.sim.request("GET", "/nav_to.do?uri=" + quote("sc_req_item.do?sys_id=" + ritm["sys_id"]),
                             auth=None)
        self.assertEqual((r.status, r.header("Location")), (302, "/sc_req_item.do?sys_id=" + ritm["sys_id"]))
        self.assertEqual(self.page("/incident.do?sys_id=" + "0" * 32)[0], 404)


class TlsTest(unittest.TestCase):
    """--tls: HTTPS with a certificate of a CA made here; handshakes counted
    full or resumed, a plain-HTTP client counted as a failed handshake."""

    def setUp(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed")
        self.certs = tempfile.mkdtemp(prefix="snowsim-tls-")
        self.addCleanup(shutil.rmtree, self.certs, True)
        ca, cert, key = testca.make_ca_and_cert(self.certs)
        self.ctx = ssl.create_default_context(cafile=ca)
        self.sim = Sim("--no-fsync", "--tls", "--tls-cert", cert, "--tls-key", key).start()
        self.addCleanup(self.sim.cleanup)

    def get(self, path, session=None):
        raw = socket.create_connection(("127.0.0.1", self.sim.port), timeout=10)
        with self.ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                       % path).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n\r\n", 1)[1], s.session, s.session_reused

    def test_https_with_full_and_resumed_handshakes_counted(self):
        self.assertTrue(self.sim.first_line.startswith("snow_sim listening on https://"))
        body, session, reused = self.get("/sim/health")
        self.assertEqual(json.loads(body), {"ok": True})
        self.assertFalse(reused)
        _, _, reused = self.get("/sim/health", session)
        self.assertTrue(reused)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError)):
            self.sim.request("GET", "/sim/health", auth=None)
        stats = json.loads(self.get("/sim/stats")[0])
        self.assertEqual((stats["tls_full"], stats["tls_resumed"], stats["tls_failed"]),
                         (2, 1, 1), stats)
        self.assertEqual(stats["connections"], 4)

    def test_tls_without_a_certificate_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, SIM, "--port", "0", "--data", d, "--tls"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--tls needs --tls-cert and --tls-key", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
